//! The simulated instance and VPC a config describes, as data: which namespaces hold which links
//! and addresses ([`SimOp`] lists), the VPC's nftables ruleset, and the checks whose expectations
//! follow from the config alone (containers.rs: the [containers] side). May import model,
//! config and kernel::sim's ops; never plan.

mod containers;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use macaddr::MacAddr6;
use serde::Serialize;

use crate::kernel::sim::SimOp;
use crate::model::valid_ifname;
use crate::model::{Config, Eip, Eni, Mode, Strategy};

/// The TCP port every simulated service listens on.
pub const PORT: u16 = 8080;
/// The VPC's interface towards the Internet namespace.
const UPLINK: &str = "uplink";
/// The Internet namespace's interface towards the VPC.
const INET_IF: &str = "eth0";
/// How many extra addresses the Internet host holds for the unbound-egress check (so that an
/// address-only (l3) multipath hash spreads connections too).
const EXTRA_DESTINATIONS: u8 = 64;

/// The namespaces of one sandbox run (a container's only with [containers]).
#[derive(Debug, Clone, Serialize)]
pub struct Names {
    pub guest: String,
    pub vpc: String,
    pub internet: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

impl Names {
    pub fn all(&self) -> Vec<&str> {
        let mut v = vec![self.guest.as_str(), &self.vpc, &self.internet];
        v.extend(self.container.as_deref());
        v
    }
}

/// The namespace a probe connects from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    Guest,
    Internet,
    /// The VPC namespace, bound to a vSwitch peer host's address.
    Vpc,
    /// The container behind the guest's bridge.
    Container,
}

/// One ENI as simulated.
#[derive(Debug, Clone)]
struct SimEni {
    ifname: String,
    vpc_if: String,
    mac: MacAddr6,
    /// The VPC interface that is its L3 attachment: the vSwitch bridge, or `vpc_if` for an ENI
    /// without a vSwitch of its own (cut-through).
    attach: String,
}

/// One L2 segment of the VPC (a vSwitch): a bridge holding the gateway and a peer host.
#[derive(Debug, Clone)]
struct Segment {
    bridge: String,
    cidr: Ipv4Network,
    peer: Option<Ipv4Addr>,
    peer6: Option<Ipv6Addr>,
}

/// What kind of check a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The Internet host connects to an EIP (or public IPv6 address).
    Inbound,
    /// The guest connects to the Internet host from a bound source address.
    Outbound,
    /// The guest connects to the peer host on the source's own vSwitch.
    Vswitch,
    /// The guest opens many connections without binding a source.
    Egress,
    /// A client connects to a port published (DNAT) to the container ([containers]).
    Published,
    /// The container connects out ([[containers.egress]]).
    ContainerEgress,
    /// A step run with the eniroute binary (apply, plan, flush).
    Step,
}

/// What a connection check expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The answer (an address) must be exactly this.
    Answer(IpAddr),
    /// The connection must not get an answer.
    NoPath,
}

/// A connection check: from which namespace, bound to what, to where.
#[derive(Debug, Clone)]
pub struct ConnCheck {
    pub kind: Kind,
    pub subject: String,
    pub eni: String,
    pub from: Origin,
    pub bind: Option<IpAddr>,
    pub target: SocketAddr,
    pub expect: Expect,
}

/// The unbound-egress check.
#[derive(Debug, Clone)]
pub struct EgressCheck {
    pub strategy: Strategy,
    /// (ENI name, weight) in config order.
    pub via: Vec<(String, u16)>,
    /// failover with a `source`: the address the Internet host must see.
    pub failover_seen: Option<IpAddr>,
    /// Public address (as seen by the Internet host) -> ENI name.
    pub public_to_eni: BTreeMap<IpAddr, String>,
}

/// Everything the sandbox builds for one config.
#[derive(Debug, Clone)]
pub struct Topology {
    pub names: Names,
    /// The Internet host's address.
    pub internet_host: Ipv4Addr,
    /// More addresses of the Internet host: the destinations of the unbound connections.
    pub extra_destinations: Vec<Ipv4Addr>,
    /// Sysctls of the guest and the Internet, set before any link is moved in.
    pub guest_pre: Vec<SimOp>,
    pub internet_pre: Vec<SimOp>,
    pub guest_ops: Vec<SimOp>,
    pub vpc_ops: Vec<SimOp>,
    pub internet_ops: Vec<SimOp>,
    /// The VPC's nftables ruleset.
    pub ruleset: String,
    /// [containers]: the container namespace, the guest's bridge and its foreign table.
    pub containers: Option<containers::ContainerSide>,
    pub conn_checks: Vec<ConnCheck>,
    pub egress_check: Option<EgressCheck>,
    pub has_ipv6: bool,
    pub notes: Vec<String>,
}

fn sysctl(path: &str, value: &str) -> SimOp {
    SimOp::Sysctl {
        path: path.to_string(),
        value: value.to_string(),
    }
}

fn up(name: &str) -> SimOp {
    SimOp::Up {
        name: name.to_string(),
    }
}

fn addr(dev: &str, addr: IpAddr, prefix: u8) -> SimOp {
    SimOp::Addr {
        dev: dev.to_string(),
        addr,
        prefix,
        noprefixroute: false,
    }
}

fn route(dst: IpNetwork, via: Option<IpAddr>, dev: &str) -> SimOp {
    SimOp::Route {
        dst,
        via,
        dev: dev.to_string(),
        dhcp: false,
    }
}

/// `default via <gateway> dev <dev>`; `dhcp`: tagged as a DHCP client leaves it.
fn default_route(gateway: IpAddr, dev: &str, dhcp: bool) -> Result<SimOp, String> {
    let any = match gateway {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    Ok(SimOp::Route {
        dst: IpNetwork::new(any, 0).map_err(|e| format!("{e}"))?,
        via: Some(gateway),
        dev: dev.to_string(),
        dhcp,
    })
}

/// The Internet side: the first benchmark-range (198.18.0.0/15) /24 overlapping nothing the
/// config declares.
fn pick_internet(taken: &[IpNetwork]) -> Option<Ipv4Network> {
    (0u16..512)
        .map(|i| {
            let [hi, lo] = i.to_be_bytes();
            Ipv4Addr::new(198, 18 + hi, lo, 0)
        })
        .chain(std::iter::once(Ipv4Addr::new(192, 0, 2, 0)))
        .filter_map(|a| Ipv4Network::new(a, 24).ok())
        .find(|n| !taken.iter().any(|t| overlaps(&IpNetwork::V4(*n), t)))
}

fn pick_internet6(taken: &[IpNetwork]) -> Option<Ipv6Network> {
    (0u16..256)
        .filter_map(|i| Ipv6Network::new(Ipv6Addr::new(0x2001, 2, i, 0, 0, 0, 0, 0), 64).ok())
        .find(|n| !taken.iter().any(|t| overlaps(&IpNetwork::V6(*n), t)))
}

fn overlaps(a: &IpNetwork, b: &IpNetwork) -> bool {
    match (a, b) {
        (IpNetwork::V4(x), IpNetwork::V4(y)) => x.overlaps(*y),
        (IpNetwork::V6(x), IpNetwork::V6(y)) => x.overlaps(*y),
        _ => false,
    }
}

/// The highest free host address of `net` not in `used` (the vSwitch's peer host).
fn free_v4(net: Ipv4Network, used: &BTreeSet<IpAddr>) -> Option<Ipv4Addr> {
    if net.prefix() >= 31 {
        return None;
    }
    let lo = u32::from(net.network()) + 1;
    let hi = u32::from(net.broadcast()).checked_sub(1)?;
    (lo..=hi)
        .rev()
        .take(4096)
        .map(Ipv4Addr::from)
        .find(|a| !used.contains(&IpAddr::V4(*a)))
}

fn free_v6(net: Ipv6Network, used: &BTreeSet<IpAddr>) -> Option<Ipv6Addr> {
    let base = u128::from(net.network());
    (0u128..256)
        .map(|k| 0xfffe - k)
        .chain(1..256)
        .filter_map(|k| base.checked_add(k).map(Ipv6Addr::from))
        .find(|a| net.contains(*a) && !used.contains(&IpAddr::V6(*a)))
}

fn vpc_port_name(k: usize, ifname: &str) -> String {
    let mut s = format!("e{k}-{ifname}");
    s.truncate(15);
    s
}

/// Build the topology of `config` for the namespaces `names`.
pub fn build(config: &Config, names: Names) -> Result<Topology, String> {
    let mut notes = Vec::new();
    let Declared { taken, mut used } = declared(config);
    let internet = InternetSide::pick(config, &taken)?;
    let mut enis = sim_enis(config)?;
    let segments = segments(config, &mut enis, &mut used, &mut notes);

    let mut vpc_ops = vpc_sysctls();
    vpc_ops.extend(vpc_links(&segments, &enis, &names));
    vpc_ops.extend(vpc_addressing(
        config,
        &enis,
        &segments,
        &mut used,
        internet.uplink,
    ));
    let mut internet_ops = internet.internet_ops()?;
    if let Some(v6) = &internet.v6 {
        vpc_ops.push(addr(UPLINK, IpAddr::V6(v6.uplink), 64));
        internet_ops.extend(v6.internet_ops()?);
    }
    let guest_ops = guest_ops(config, &enis)?;

    let ruleset = nft_ruleset(config, &enis);
    let internet6 = internet.v6.as_ref().map(|v6| v6.host);
    let (mut conn_checks, egress_check) =
        config_checks(config, &segments, internet.host, internet6);
    let at = containers::At {
        segments: &segments,
        taken: &taken,
        internet: internet.host,
    };
    let containers = containers::build(config, &names, &at, &mut notes, &mut conn_checks)?;
    Ok(Topology {
        names,
        internet_host: internet.host,
        extra_destinations: internet.extra_destinations,
        guest_pre: guest_sysctls(),
        internet_pre: internet_sysctls(),
        guest_ops,
        vpc_ops,
        internet_ops,
        ruleset,
        containers,
        conn_checks,
        egress_check,
        has_ipv6: internet6.is_some(),
        notes,
    })
}

/// What the config declares: the networks the simulated Internet must avoid, and the addresses
/// no simulated host (vSwitch peer, router) may take.
struct Declared {
    taken: Vec<IpNetwork>,
    used: BTreeSet<IpAddr>,
}

fn declared(config: &Config) -> Declared {
    let mut taken: Vec<IpNetwork> = Vec::new();
    let mut used: BTreeSet<IpAddr> = BTreeSet::new();
    for e in &config.enis {
        taken.extend(e.cidr.map(IpNetwork::V4));
        taken.extend(e.prefixes.iter().copied().map(IpNetwork::V4));
        taken.extend(e.ipv6_cidr.map(IpNetwork::V6));
        for ip in &e.private_ips {
            used.insert(IpAddr::V4(*ip));
            taken.push(IpNetwork::from(IpAddr::V4(*ip)));
        }
        for ip in &e.ipv6 {
            used.insert(IpAddr::V6(*ip));
            taken.push(IpNetwork::from(IpAddr::V6(*ip)));
        }
        used.extend(e.gateway.map(IpAddr::V4));
        used.extend(e.ipv6_gateway.map(IpAddr::V6));
        for eip in &e.eips {
            used.insert(IpAddr::V4(eip.address));
            used.extend(eip.gateway.map(IpAddr::V4));
            if let Ok(n) = Ipv4Network::new(eip.address, eip.prefix) {
                taken.push(IpNetwork::V4(n));
            }
        }
        for p in &e.prefixes {
            // The peer host must not sit inside a routed prefix.
            for a in p.iter().take(4096) {
                used.insert(IpAddr::V4(a));
            }
        }
    }
    Declared { taken, used }
}

/// The Internet namespace's addresses and the VPC's address towards it.
struct InternetSide {
    /// The VPC's address on [`UPLINK`] (the Internet host's gateway).
    uplink: Ipv4Addr,
    host: Ipv4Addr,
    extra_destinations: Vec<Ipv4Addr>,
    /// Only when some ENI has IPv6.
    v6: Option<InternetSide6>,
}

struct InternetSide6 {
    uplink: Ipv6Addr,
    host: Ipv6Addr,
}

impl InternetSide {
    fn pick(config: &Config, taken: &[IpNetwork]) -> Result<InternetSide, String> {
        let net = pick_internet(taken)
            .ok_or("no free /24 in 198.18.0.0/15 for the simulated Internet")?;
        let base = u32::from(net.network());
        let v6 = if config.enis.iter().any(|e| !e.ipv6.is_empty()) {
            let net6 =
                pick_internet6(taken).ok_or("no free IPv6 /64 for the simulated Internet")?;
            let base6 = u128::from(net6.network());
            Some(InternetSide6 {
                uplink: Ipv6Addr::from(base6 + 1),
                host: Ipv6Addr::from(base6 + 0x10),
            })
        } else {
            None
        };
        Ok(InternetSide {
            uplink: Ipv4Addr::from(base + 1),
            host: Ipv4Addr::from(base + 10),
            extra_destinations: (0..EXTRA_DESTINATIONS)
                .map(|i| Ipv4Addr::from(base + 64 + u32::from(i)))
                .collect(),
            v6,
        })
    }

    /// The Internet host's link, IPv4 addresses and default route.
    fn internet_ops(&self) -> Result<Vec<SimOp>, String> {
        let mut ops = vec![up(INET_IF), addr(INET_IF, IpAddr::V4(self.host), 24)];
        for d in &self.extra_destinations {
            ops.push(addr(INET_IF, IpAddr::V4(*d), 24));
        }
        ops.push(default_route(IpAddr::V4(self.uplink), INET_IF, false)?);
        Ok(ops)
    }
}

impl InternetSide6 {
    /// The Internet host's IPv6 address and default route.
    fn internet_ops(&self) -> Result<Vec<SimOp>, String> {
        Ok(vec![
            addr(INET_IF, IpAddr::V6(self.host), 64),
            default_route(IpAddr::V6(self.uplink), INET_IF, false)?,
        ])
    }
}

/// The guest's ENIs: interface names (the config's, or `eni<k>` when that is not usable) and
/// MACs (the config's, or a locally administered one).
fn sim_enis(config: &Config) -> Result<Vec<SimEni>, String> {
    let mut enis = Vec::new();
    let mut ifnames = BTreeSet::new();
    for (k, e) in config.enis.iter().enumerate() {
        let mut ifname = e.fallback_ifname().to_string();
        if !valid_ifname(&ifname) || ifname == "lo" || ifnames.contains(&ifname) {
            if e.mac.is_none() {
                return Err(format!(
                    "eni {:?}: its name is not a usable interface name and it has no `mac` \
                     to be found by",
                    e.name
                ));
            }
            ifname = format!("eni{k}");
        }
        ifnames.insert(ifname.clone());
        let mac = e.mac.unwrap_or_else(|| {
            // A locally administered unicast MAC.
            MacAddr6::new(0x02, 0xe5, 0x00, 0x00, (k >> 8) as u8, k as u8)
        });
        let vpc_if = vpc_port_name(k, &ifname);
        enis.push(SimEni {
            ifname,
            vpc_if: vpc_if.clone(),
            mac,
            attach: vpc_if,
        });
    }
    Ok(enis)
}

/// The vSwitches: ENIs with a subnet of their own and the same cidr share one bridge (their
/// attachment), with a peer host on a free address.
fn segments(
    config: &Config,
    enis: &mut [SimEni],
    used: &mut BTreeSet<IpAddr>,
    notes: &mut Vec<String>,
) -> Vec<Segment> {
    let mut segments: Vec<Segment> = Vec::new();
    for (e, se) in config.enis.iter().zip(enis.iter_mut()) {
        if !e.mode.needs_subnet() {
            continue;
        }
        let Some(cidr) = e.cidr else { continue };
        let j = match segments.iter().position(|s| s.cidr == cidr) {
            Some(j) => j,
            None => {
                let peer = free_v4(cidr, used);
                if let Some(p) = peer {
                    used.insert(IpAddr::V4(p));
                } else {
                    notes.push(format!(
                        "vSwitch {cidr} has no free address for a peer host: its same-vSwitch \
                         checks are skipped"
                    ));
                }
                segments.push(Segment {
                    bridge: format!("vsw{}", segments.len()),
                    cidr,
                    peer,
                    peer6: None,
                });
                segments.len() - 1
            }
        };
        se.attach = segments[j].bridge.clone();
        if let Some(c6) = e.ipv6_cidr {
            if segments[j].peer6.is_none() {
                let p6 = free_v6(c6, used);
                if let Some(p) = p6 {
                    used.insert(IpAddr::V6(p));
                }
                segments[j].peer6 = p6;
            }
        }
    }
    segments
}

/// The guest's sysctls (and lo), before any ENI is moved in.
fn guest_sysctls() -> Vec<SimOp> {
    vec![
        sysctl("net/ipv4/ip_forward", "0"),
        // Strict reverse-path filtering, as RHEL-family images (Alibaba Cloud Linux, CentOS)
        // ship it: eniroute's per-ENI rp_filter must cope with it.
        sysctl("net/ipv4/conf/all/rp_filter", "1"),
        sysctl("net/ipv4/conf/default/rp_filter", "1"),
        sysctl("net/ipv4/conf/all/arp_ignore", "0"),
        sysctl("net/ipv4/conf/default/arp_ignore", "0"),
        sysctl("net/ipv4/conf/all/arp_announce", "0"),
        sysctl("net/ipv4/conf/default/arp_announce", "0"),
        up("lo"),
    ]
}

/// The VPC router's sysctls (and lo).
fn vpc_sysctls() -> Vec<SimOp> {
    vec![
        sysctl("net/ipv4/ip_forward", "1"),
        sysctl("net/ipv4/conf/all/rp_filter", "0"),
        sysctl("net/ipv4/conf/default/rp_filter", "0"),
        sysctl("net/ipv4/conf/all/send_redirects", "0"),
        sysctl("net/ipv4/conf/default/send_redirects", "0"),
        sysctl("net/ipv6/conf/all/accept_dad", "0"),
        sysctl("net/ipv6/conf/default/accept_dad", "0"),
        sysctl("net/ipv6/conf/all/forwarding", "1"),
        up("lo"),
    ]
}

/// The Internet host's sysctls (and lo), before its link is moved in.
fn internet_sysctls() -> Vec<SimOp> {
    vec![
        sysctl("net/ipv4/conf/all/rp_filter", "0"),
        sysctl("net/ipv4/conf/default/rp_filter", "0"),
        sysctl("net/ipv6/conf/all/accept_dad", "0"),
        sysctl("net/ipv6/conf/default/accept_dad", "0"),
        up("lo"),
    ]
}

/// The VPC's links: a bridge per vSwitch, a veth per ENI (its peer moved into the guest, on the
/// bridge of its vSwitch), and the uplink veth to the Internet namespace.
fn vpc_links(segments: &[Segment], enis: &[SimEni], names: &Names) -> Vec<SimOp> {
    let mut ops = Vec::new();
    for s in segments {
        ops.push(SimOp::Bridge {
            name: s.bridge.clone(),
        });
    }
    for se in enis {
        ops.push(SimOp::Veth {
            name: se.vpc_if.clone(),
            peer: se.ifname.clone(),
            peer_mac: Some(se.mac),
            peer_netns: Some(names.guest.clone()),
        });
        if se.attach != se.vpc_if {
            ops.push(SimOp::Master {
                port: se.vpc_if.clone(),
                bridge: se.attach.clone(),
            });
        }
        ops.push(up(&se.vpc_if));
    }
    ops.push(SimOp::Veth {
        name: UPLINK.into(),
        peer: INET_IF.into(),
        peer_mac: None,
        peer_netns: Some(names.internet.clone()),
    });
    ops.push(up(UPLINK));
    for s in segments {
        ops.push(up(&s.bridge));
    }
    ops
}

/// The VPC router's addresses, routes and neighbours, one of each per (interface, address).
#[derive(Default)]
struct VpcAddressing {
    /// (interface, address, prefix length).
    addrs: BTreeSet<(String, IpAddr, u8)>,
    /// EIPs in the OS, routed to the attachment of their ENI: (interface, EIP).
    routed_eips: Vec<(String, Ipv4Addr)>,
    /// (interface, address, MAC): which ENI holds which address.
    neighs: BTreeSet<(String, IpAddr, [u8; 6])>,
}

/// Router addresses: each vSwitch's gateways (cidr prefix) and its peer host; EIP gateways
/// outside the vSwitch as /32 on the ENI's attachment. Then the uplink, the routes to EIPs in
/// the OS, the neighbours, and each prefix routed to its ENI's primary private IP.
fn vpc_addressing(
    config: &Config,
    enis: &[SimEni],
    segments: &[Segment],
    used: &mut BTreeSet<IpAddr>,
    uplink: Ipv4Addr,
) -> Vec<SimOp> {
    let mut addressing = VpcAddressing::default();
    for (e, se) in config.enis.iter().zip(enis) {
        addressing.add_eni_v4(e, se);
        addressing.add_eni_v6(e, se, segments, used);
    }
    for s in segments {
        if let Some(p) = s.peer {
            addressing
                .addrs
                .insert((s.bridge.clone(), IpAddr::V4(p), s.cidr.prefix()));
        }
    }
    let mut ops = addressing.address_ops(segments);
    ops.push(addr(UPLINK, IpAddr::V4(uplink), 24));
    for (dev, eip) in &addressing.routed_eips {
        ops.push(route(IpNetwork::V4(Ipv4Network::from(*eip)), None, dev));
    }
    for (dev, a, mac) in &addressing.neighs {
        ops.push(SimOp::Neigh {
            dev: dev.clone(),
            addr: *a,
            mac: MacAddr6::from(*mac),
        });
    }
    for (e, se) in config.enis.iter().zip(enis) {
        if let Some(first) = e.private_ips.first() {
            for p in &e.prefixes {
                ops.push(route(
                    IpNetwork::V4(*p),
                    Some(IpAddr::V4(*first)),
                    &se.attach,
                ));
            }
        }
    }
    ops
}

impl VpcAddressing {
    /// The ENI's IPv4 side: its vSwitch gateway, its private IPs in use, and its EIPs in the OS
    /// (with their gateways when outside the vSwitch).
    fn add_eni_v4(&mut self, e: &Eni, se: &SimEni) {
        let mac = se.mac.into_array();
        if let (Some(cidr), Some(gw)) = (e.cidr, e.gateway) {
            if e.mode.needs_subnet() {
                self.addrs
                    .insert((se.attach.clone(), IpAddr::V4(gw), cidr.prefix()));
            }
        }
        if e.mode.uses_private_ips() {
            for ip in &e.private_ips {
                self.neighs
                    .insert((se.attach.clone(), IpAddr::V4(*ip), mac));
            }
        }
        if !e.mode.eip_in_os() {
            return;
        }
        for eip in &e.eips {
            if let Some(gw) = eip.gateway {
                let inside = e.mode.needs_subnet() && e.cidr.is_some_and(|c| c.contains(gw));
                if !inside {
                    self.addrs.insert((se.attach.clone(), IpAddr::V4(gw), 32));
                }
            }
            self.routed_eips.push((se.attach.clone(), eip.address));
            self.neighs
                .insert((se.attach.clone(), IpAddr::V4(eip.address), mac));
        }
    }

    /// The ENI's IPv6 side: the gateway (link-local or global), the ENI's addresses, and the
    /// vSwitch peer's address (or, without a vSwitch, one for a connected route to the cidr).
    fn add_eni_v6(
        &mut self,
        e: &Eni,
        se: &SimEni,
        segments: &[Segment],
        used: &mut BTreeSet<IpAddr>,
    ) {
        let (Some(c6), Some(gw6)) = (e.ipv6_cidr, e.ipv6_gateway) else {
            return;
        };
        let prefix = if gw6.is_unicast_link_local() {
            64
        } else {
            c6.prefix()
        };
        self.addrs
            .insert((se.attach.clone(), IpAddr::V6(gw6), prefix));
        for ip in &e.ipv6 {
            self.neighs
                .insert((se.attach.clone(), IpAddr::V6(*ip), se.mac.into_array()));
        }
        if let Some(seg) = segments.iter().find(|s| s.bridge == se.attach) {
            if let Some(p6) = seg.peer6 {
                self.addrs
                    .insert((se.attach.clone(), IpAddr::V6(p6), c6.prefix()));
            }
        } else if let Some(p6) = free_v6(c6, used) {
            // A cut-through link with IPv6: a connected route for the ENI's IPv6 cidr.
            used.insert(IpAddr::V6(p6));
            self.addrs
                .insert((se.attach.clone(), IpAddr::V6(p6), c6.prefix()));
        }
    }

    /// The router addresses, gateways first (they become the primary address of their subnet),
    /// then the peer hosts.
    fn address_ops(&self, segments: &[Segment]) -> Vec<SimOp> {
        let peers: BTreeSet<IpAddr> = segments
            .iter()
            .flat_map(|s| {
                s.peer
                    .map(IpAddr::V4)
                    .into_iter()
                    .chain(s.peer6.map(IpAddr::V6))
            })
            .collect();
        let mut ordered: Vec<&(String, IpAddr, u8)> = self.addrs.iter().collect();
        ordered.sort_by_key(|(_, a, _)| peers.contains(a));
        ordered
            .into_iter()
            .map(|(dev, a, p)| addr(dev, *a, *p))
            .collect()
    }
}

/// The guest as DHCP leaves it: every ENI up with its primary address, and the primary ENI's
/// default route.
fn guest_ops(config: &Config, enis: &[SimEni]) -> Result<Vec<SimOp>, String> {
    let mut ops: Vec<SimOp> = enis.iter().map(|se| up(&se.ifname)).collect();
    for (e, se) in config.enis.iter().zip(enis) {
        if let Some((a, prefix)) = dhcp_address(e) {
            ops.push(addr(&se.ifname, a, prefix));
        }
    }
    if let Some((e, se)) = config.enis.iter().zip(enis).find(|(e, _)| e.primary) {
        if let Some(gw) = e.gateway {
            ops.push(default_route(IpAddr::V4(gw), &se.ifname, true)?);
        }
    }
    Ok(ops)
}

/// The address DHCP configures on an ENI: its primary private IP, or, when the mode does not use
/// private IPs (cut-through), its EIP, which is the ENI's address.
fn dhcp_address(e: &Eni) -> Option<(IpAddr, u8)> {
    if e.mode.uses_private_ips() {
        let (first, cidr) = (e.private_ips.first()?, e.cidr?);
        Some((IpAddr::V4(*first), cidr.prefix()))
    } else {
        let eip = e.eips.first()?;
        Some((IpAddr::V4(eip.address), eip.prefix))
    }
}

/// The VPC's nftables ruleset: per-port anti-spoofing, 1:1 NAT of the EIPs not in the OS, and
/// "no EIP, no Internet".
fn nft_ruleset(config: &Config, enis: &[SimEni]) -> String {
    let mut s = String::from("table netdev eniroute_sandbox {\n");
    for (k, (e, se)) in config.enis.iter().zip(enis).enumerate() {
        s.push_str(&port_chain(k, e, se));
    }
    s.push_str("}\n");
    s.push_str(&nat_table(config));
    s
}

/// One ENI port's ingress chain: only the ENI's own addresses may leave it.
fn port_chain(k: usize, e: &Eni, se: &SimEni) -> String {
    let mut v4: Vec<String> = Vec::new();
    if e.mode.uses_private_ips() {
        v4.extend(e.private_ips.iter().map(|a| a.to_string()));
        v4.extend(e.prefixes.iter().map(|p| p.to_string()));
    }
    if e.mode.eip_in_os() {
        v4.extend(e.eips.iter().map(|x| x.address.to_string()));
    }
    let mut v6: Vec<String> = vec!["fe80::/10".into(), "::".into()];
    v6.extend(e.ipv6.iter().map(|a| a.to_string()));
    let mut s = format!(
        "  chain port{k} {{\n    # ENI {:?} ({}): only its own addresses may leave it\n    \
         type filter hook ingress device \"{}\" priority 0; policy accept;\n    \
         meta protocol arp accept\n",
        e.name, e.mode, se.vpc_if
    );
    if !v4.is_empty() {
        s.push_str(&format!(
            "    meta protocol ip ip saddr {{ {} }} accept\n",
            v4.join(", ")
        ));
    }
    s.push_str(&format!(
        "    meta protocol ip6 ip6 saddr {{ {} }} accept\n",
        v6.join(", ")
    ));
    s.push_str("    meta protocol { ip, ip6 } counter drop comment \"anti-spoofing\"\n  }\n");
    s
}

/// The VPC's IPv4 table: EIPs not in the OS translated 1:1 to their private IP, EIPs in the OS
/// routed; nothing else reaches or leaves the Internet.
fn nat_table(config: &Config) -> String {
    let mut dnat = Vec::new();
    let mut snat = Vec::new();
    let mut inet_ok: Vec<String> = Vec::new();
    let mut routed: Vec<String> = Vec::new();
    for e in &config.enis {
        for eip in &e.eips {
            if e.mode.eip_in_os() {
                inet_ok.push(eip.address.to_string());
                routed.push(eip.address.to_string());
            } else if let Some(p) = eip.private_ip {
                dnat.push(format!(
                    "    iifname \"{UPLINK}\" ip daddr {} dnat to {p}\n",
                    eip.address
                ));
                snat.push(format!(
                    "    oifname \"{UPLINK}\" ip saddr {p} snat to {}\n",
                    eip.address
                ));
                inet_ok.push(p.to_string());
            }
        }
    }
    let mut s = String::from("table ip eniroute_sandbox {\n");
    s.push_str(
        "  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n",
    );
    dnat.iter().for_each(|l| s.push_str(l));
    s.push_str("  }\n");
    s.push_str(
        "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n",
    );
    snat.iter().for_each(|l| s.push_str(l));
    s.push_str("  }\n");
    s.push_str("  chain forward {\n    type filter hook forward priority filter; policy accept;\n");
    s.push_str("    ct state established,related accept\n");
    if !inet_ok.is_empty() {
        s.push_str(&format!(
            "    oifname \"{UPLINK}\" ip saddr {{ {} }} accept\n",
            inet_ok.join(", ")
        ));
    }
    s.push_str(&format!(
        "    oifname \"{UPLINK}\" counter drop comment \"no EIP: no Internet path\"\n"
    ));
    s.push_str(&format!("    iifname \"{UPLINK}\" ct status dnat accept\n"));
    if !routed.is_empty() {
        s.push_str(&format!(
            "    iifname \"{UPLINK}\" ip daddr {{ {} }} accept\n",
            routed.join(", ")
        ));
    }
    s.push_str(&format!(
        "    iifname \"{UPLINK}\" counter drop comment \"not an EIP\"\n  }}\n}}\n"
    ));
    s
}

/// Where the VPC delivers a packet sent to `eip`: to the EIP itself when the mode puts it in the
/// OS (routed), else to the private IP it is translated to (None: mapped to none).
fn eip_reaches(mode: Mode, eip: &Eip) -> Option<IpAddr> {
    if mode.eip_in_os() {
        Some(IpAddr::V4(eip.address))
    } else {
        eip.private_ip.map(IpAddr::V4)
    }
}

/// The connection checks, in report order (all inbound, then all outbound, then all vswitch),
/// and the unbound-egress check.
fn config_checks(
    config: &Config,
    segments: &[Segment],
    internet: Ipv4Addr,
    internet6: Option<Ipv6Addr>,
) -> (Vec<ConnCheck>, Option<EgressCheck>) {
    let mut all = ConnChecks::default();
    for e in &config.enis {
        // The vSwitch of the ENI's private IPs.
        let seg = e
            .cidr
            .filter(|_| e.mode.uses_private_ips())
            .and_then(|c| segments.iter().find(|s| s.cidr == c));
        all.add_eni_v4(e, seg, SocketAddr::new(IpAddr::V4(internet), PORT));
        if let Some(i6) = internet6 {
            all.add_eni_v6(e, seg, SocketAddr::new(IpAddr::V6(i6), PORT));
        }
    }
    let egress = config
        .egress
        .as_ref()
        .map(|eg| egress_check(config, eg, public_to_eni(config, internet6.is_some())));
    let mut out = all.inbound;
    out.extend(all.outbound);
    out.extend(all.vswitch);
    (out, egress)
}

/// Connection checks by kind, in config order within each.
#[derive(Default)]
struct ConnChecks {
    inbound: Vec<ConnCheck>,
    outbound: Vec<ConnCheck>,
    vswitch: Vec<ConnCheck>,
}

impl ConnChecks {
    /// IPv4: the Internet to every EIP; every source (private IP in use, EIP in the OS) to the
    /// Internet, seen as its EIP or without a path; every private IP to its vSwitch peer.
    fn add_eni_v4(&mut self, e: &Eni, seg: Option<&Segment>, inet: SocketAddr) {
        for eip in &e.eips {
            if let Some(answer) = eip_reaches(e.mode, eip) {
                let subject = format!("Internet -> {} ({} {} EIP)", eip.address, e.name, e.mode);
                self.add_inbound(e, subject, IpAddr::V4(eip.address), answer);
            }
        }
        if e.mode.uses_private_ips() {
            for ip in &e.private_ips {
                let eip = if e.mode.eip_maps_to_private_ip() {
                    e.eips.iter().find(|x| x.private_ip == Some(*ip))
                } else {
                    None
                };
                let expect = match eip {
                    Some(x) => Expect::Answer(IpAddr::V4(x.address)),
                    None => Expect::NoPath,
                };
                let subject = format!("{ip} ({}) -> Internet", e.name);
                self.add_outbound(e, subject, IpAddr::V4(*ip), inet, expect);
            }
        }
        if e.mode.eip_in_os() {
            for eip in &e.eips {
                let a = IpAddr::V4(eip.address);
                let subject = format!("{} ({} EIP) -> Internet", eip.address, e.name);
                self.add_outbound(e, subject, a, inet, Expect::Answer(a));
            }
        }
        if let Some(peer) = seg.and_then(|s| s.peer) {
            for ip in &e.private_ips {
                self.add_vswitch(e, IpAddr::V4(*ip), IpAddr::V4(peer));
            }
        }
    }

    /// IPv6: public addresses, routed without NAT, inbound, outbound and to the vSwitch peer.
    fn add_eni_v6(&mut self, e: &Eni, seg: Option<&Segment>, inet6: SocketAddr) {
        for ip in &e.ipv6 {
            let a = IpAddr::V6(*ip);
            let subject = format!("Internet -> {ip} ({} IPv6)", e.name);
            self.add_inbound(e, subject, a, a);
            let subject = format!("{ip} ({}) -> Internet", e.name);
            self.add_outbound(e, subject, a, inet6, Expect::Answer(a));
            if let Some(p6) = seg.and_then(|s| s.peer6) {
                self.add_vswitch(e, a, IpAddr::V6(p6));
            }
        }
    }

    /// From the Internet host to `target`, which must reach `answer` in the guest.
    fn add_inbound(&mut self, e: &Eni, subject: String, target: IpAddr, answer: IpAddr) {
        self.inbound.push(ConnCheck {
            kind: Kind::Inbound,
            subject,
            eni: e.name.clone(),
            from: Origin::Internet,
            bind: None,
            target: SocketAddr::new(target, PORT),
            expect: Expect::Answer(answer),
        });
    }

    /// From the guest, bound to `bind`, to the Internet host.
    fn add_outbound(
        &mut self,
        e: &Eni,
        subject: String,
        bind: IpAddr,
        internet: SocketAddr,
        expect: Expect,
    ) {
        self.outbound.push(ConnCheck {
            kind: Kind::Outbound,
            subject,
            eni: e.name.clone(),
            from: Origin::Guest,
            bind: Some(bind),
            target: internet,
            expect,
        });
    }

    /// From the guest, bound to `from`, to the peer host on its vSwitch, which must see `from`.
    fn add_vswitch(&mut self, e: &Eni, from: IpAddr, peer: IpAddr) {
        self.vswitch.push(ConnCheck {
            kind: Kind::Vswitch,
            subject: format!("{from} ({}) -> peer {peer}", e.name),
            eni: e.name.clone(),
            from: Origin::Guest,
            bind: Some(from),
            target: SocketAddr::new(peer, PORT),
            expect: Expect::Answer(from),
        });
    }
}

/// Every public address the Internet host may see (EIPs, and IPv6 addresses when the Internet
/// has IPv6) -> the ENI that holds it.
fn public_to_eni(config: &Config, ipv6: bool) -> BTreeMap<IpAddr, String> {
    let mut out = BTreeMap::new();
    for e in &config.enis {
        for eip in &e.eips {
            out.insert(IpAddr::V4(eip.address), e.name.clone());
        }
        if ipv6 {
            for ip in &e.ipv6 {
                out.insert(IpAddr::V6(*ip), e.name.clone());
            }
        }
    }
    out
}

/// The unbound-egress check of `[egress]`.
fn egress_check(
    config: &Config,
    eg: &crate::model::Egress,
    public_to_eni: BTreeMap<IpAddr, String>,
) -> EgressCheck {
    let failover_seen = match eg.strategy {
        Strategy::Failover => eg
            .via
            .first()
            .and_then(|v| v.source)
            .and_then(|src| seen_as(config, src)),
        Strategy::Balance => None,
    };
    EgressCheck {
        strategy: eg.strategy,
        via: eg.via.iter().map(|v| (v.eni.clone(), v.weight)).collect(),
        failover_seen,
        public_to_eni,
    }
}

/// The address the Internet host sees for a source: an EIP as itself, a private source as the
/// EIP it maps to (None: it maps to none).
fn seen_as(config: &Config, src: IpAddr) -> Option<IpAddr> {
    config.enis.iter().find_map(|e| {
        if e.eips.iter().any(|x| IpAddr::V4(x.address) == src) {
            Some(src)
        } else {
            e.eips
                .iter()
                .find(|x| x.private_ip.map(IpAddr::V4) == Some(src))
                .map(|x| IpAddr::V4(x.address))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[[eni]]
name = "eth0"
mac = "00:16:3e:00:00:01"
primary = true
cidr = "198.18.0.0/24"
gateway = "198.18.0.253"
private_ips = ["198.18.0.10", "198.18.0.11"]
[[eni.eip]]
address = "203.0.113.10"

[[eni]]
name = "eth1"
mac = "00:16:3e:00:00:02"
mode = "cut-through"
[[eni.eip]]
address = "198.51.100.130"
prefix = 25
gateway = "198.51.100.129"
"#;

    /// The topology of a config, with test namespace names.
    pub(super) fn topology(toml: &str) -> Result<Topology, String> {
        let loaded = crate::config::load_str(toml, "t.toml").map_err(|e| e.to_string())?;
        let names = Names {
            guest: "t-guest".into(),
            vpc: "t-vpc".into(),
            internet: "t-inet".into(),
            container: loaded
                .config
                .containers
                .as_ref()
                .map(|_| "t-ctr".to_string()),
        };
        build(&loaded.config, names)
    }

    fn subjects(t: &Topology, kind: Kind) -> Vec<(&str, &Expect)> {
        t.conn_checks
            .iter()
            .filter(|c| c.kind == kind)
            .map(|c| (c.subject.as_str(), &c.expect))
            .collect()
    }

    #[test]
    fn the_internet_avoids_every_declared_network() {
        let t = topology(CONFIG).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.internet_host, Ipv4Addr::new(198, 18, 1, 10));
        assert_eq!(t.extra_destinations.len(), usize::from(EXTRA_DESTINATIONS));
        assert!(!t.has_ipv6);
    }

    #[test]
    fn expectations_follow_the_modes() {
        let t = topology(CONFIG).unwrap_or_else(|e| panic!("{e}"));
        // Inbound first, then outbound, then vswitch.
        let kinds: Vec<Kind> = t.conn_checks.iter().map(|c| c.kind).collect();
        let mut sorted = kinds.clone();
        sorted.sort_by_key(|k| *k as u8);
        assert_eq!(kinds, sorted);
        let nat = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));
        let cut = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 130));
        // A nat EIP reaches its private IP; a cut-through EIP is the guest's own address.
        assert_eq!(
            subjects(&t, Kind::Inbound),
            [
                (
                    "Internet -> 203.0.113.10 (eth0 nat EIP)",
                    &Expect::Answer(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 10)))
                ),
                (
                    "Internet -> 198.51.100.130 (eth1 cut-through EIP)",
                    &Expect::Answer(cut)
                ),
            ]
        );
        // A private IP without an EIP has no Internet path.
        assert_eq!(
            subjects(&t, Kind::Outbound),
            [
                ("198.18.0.10 (eth0) -> Internet", &Expect::Answer(nat)),
                ("198.18.0.11 (eth0) -> Internet", &Expect::NoPath),
                (
                    "198.51.100.130 (eth1 EIP) -> Internet",
                    &Expect::Answer(cut)
                ),
            ]
        );
        assert_eq!(subjects(&t, Kind::Vswitch).len(), 2);
        // The VPC translates the nat EIP and routes the cut-through one.
        assert!(t
            .ruleset
            .contains("ip daddr 203.0.113.10 dnat to 198.18.0.10"));
        assert!(t
            .ruleset
            .contains("iifname \"uplink\" ip daddr { 198.51.100.130 } accept"));
    }

    #[test]
    fn the_guest_starts_as_dhcp_leaves_it() {
        let t = topology(CONFIG).unwrap_or_else(|e| panic!("{e}"));
        let addrs: Vec<(String, IpAddr, u8)> = t
            .guest_ops
            .iter()
            .filter_map(|op| match op {
                SimOp::Addr {
                    dev, addr, prefix, ..
                } => Some((dev.clone(), *addr, *prefix)),
                _ => None,
            })
            .collect();
        assert_eq!(
            addrs,
            [
                ("eth0".into(), IpAddr::V4(Ipv4Addr::new(198, 18, 0, 10)), 24),
                (
                    "eth1".into(),
                    IpAddr::V4(Ipv4Addr::new(198, 51, 100, 130)),
                    25
                ),
            ]
        );
        // A cut-through ENI has no vSwitch: its VPC port is not on a bridge.
        let masters = t
            .vpc_ops
            .iter()
            .filter(|op| matches!(op, SimOp::Master { .. }))
            .count();
        assert_eq!(masters, 1);
    }

    #[test]
    fn an_unusable_name_needs_a_mac() {
        let toml = CONFIG.replace("mac = \"00:16:3e:00:00:02\"", "interface = \"lo\"");
        let err = topology(&toml).err().unwrap_or_default();
        assert!(
            err.contains("eni \"eth1\"") && err.contains("no `mac`"),
            "{err}"
        );
    }
}
