//! The simulated instance and VPC a configuration describes, as data: which namespaces hold
//! which links and addresses ([`SimOp`] lists), the VPC's nftables ruleset, and the checks whose
//! expectations follow from the config.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use macaddr::MacAddr6;
use serde::Serialize;

use crate::config::valid_ifname;
use crate::kernel::sim::SimOp;
use crate::model::{Config, Mode, Strategy};

/// The TCP port every simulated service listens on.
pub const PORT: u16 = 8080;
/// The VPC's interface towards the Internet namespace.
pub const UPLINK: &str = "uplink";
/// The Internet namespace's interface towards the VPC.
pub const INET_IF: &str = "eth0";
/// How many extra addresses the Internet host holds for the unbound-egress check (so that an
/// address-only (l3) multipath hash spreads connections too).
pub const EXTRA_DESTINATIONS: u8 = 64;

/// The three namespaces of one sandbox run.
#[derive(Debug, Clone, Serialize)]
pub struct Names {
    pub guest: String,
    pub vpc: String,
    pub internet: String,
}

impl Names {
    pub fn all(&self) -> [&str; 3] {
        [&self.guest, &self.vpc, &self.internet]
    }
}

/// One ENI as simulated.
#[derive(Debug, Clone)]
pub struct SimEni {
    pub name: String,
    pub ifname: String,
    pub vpc_if: String,
    pub mac: MacAddr6,
    pub mode: Mode,
    /// The VPC interface that is its L3 attachment: the vSwitch bridge, or `vpc_if` for a
    /// cut-through ENI.
    pub attach: String,
}

/// One L2 segment of the VPC (a vSwitch): a bridge holding the gateway and a peer host.
#[derive(Debug, Clone)]
pub struct Segment {
    pub bridge: String,
    pub cidr: Ipv4Network,
    pub peer: Option<Ipv4Addr>,
    pub peer6: Option<Ipv6Addr>,
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
    /// true: from the Internet namespace; false: from the guest.
    pub from_internet: bool,
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
    pub enis: Vec<SimEni>,
    pub segments: Vec<Segment>,
    pub internet: Ipv4Addr,
    pub internet_net: Ipv4Network,
    pub internet6: Option<Ipv6Addr>,
    pub extra_destinations: Vec<Ipv4Addr>,
    /// Sysctls of the guest and the Internet, set before any link is moved in.
    pub guest_pre: Vec<SimOp>,
    pub internet_pre: Vec<SimOp>,
    pub guest_ops: Vec<SimOp>,
    pub vpc_ops: Vec<SimOp>,
    pub internet_ops: Vec<SimOp>,
    pub nft: String,
    pub checks: Vec<ConnCheck>,
    pub egress: Option<EgressCheck>,
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

fn host_net(ip: IpAddr) -> IpNetwork {
    IpNetwork::from(ip)
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
    // Every network the config declares, so the Internet side avoids them.
    let mut taken: Vec<IpNetwork> = Vec::new();
    let mut used: BTreeSet<IpAddr> = BTreeSet::new();
    for e in &config.enis {
        taken.extend(e.cidr.map(IpNetwork::V4));
        taken.extend(e.prefixes.iter().copied().map(IpNetwork::V4));
        taken.extend(e.ipv6_cidr.map(IpNetwork::V6));
        for ip in &e.private_ips {
            used.insert(IpAddr::V4(*ip));
            taken.push(host_net(IpAddr::V4(*ip)));
        }
        for ip in &e.ipv6 {
            used.insert(IpAddr::V6(*ip));
            taken.push(host_net(IpAddr::V6(*ip)));
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
    let internet_net =
        pick_internet(&taken).ok_or("no free /24 in 198.18.0.0/15 for the simulated Internet")?;
    let base = u32::from(internet_net.network());
    let uplink_ip = Ipv4Addr::from(base + 1);
    let internet = Ipv4Addr::from(base + 10);
    let extra_destinations: Vec<Ipv4Addr> = (0..EXTRA_DESTINATIONS)
        .map(|i| Ipv4Addr::from(base + 64 + u32::from(i)))
        .collect();
    let has_ipv6 = config.enis.iter().any(|e| !e.ipv6.is_empty());
    let internet6_net = if has_ipv6 {
        Some(pick_internet6(&taken).ok_or("no free IPv6 /64 for the simulated Internet")?)
    } else {
        None
    };

    // ENIs and their interface names.
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
            name: e.name.clone(),
            ifname,
            vpc_if: vpc_if.clone(),
            mac,
            mode: e.mode,
            attach: vpc_if,
        });
    }

    // Segments: ENIs with the same cidr share one bridge.
    let mut segments: Vec<Segment> = Vec::new();
    for (k, e) in config.enis.iter().enumerate() {
        if e.mode == Mode::CutThrough {
            continue;
        }
        let Some(cidr) = e.cidr else { continue };
        let j = match segments.iter().position(|s| s.cidr == cidr) {
            Some(j) => j,
            None => {
                let peer = free_v4(cidr, &used);
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
        enis[k].attach = segments[j].bridge.clone();
        if let Some(c6) = e.ipv6_cidr {
            if segments[j].peer6.is_none() {
                let p6 = free_v6(c6, &used);
                if let Some(p) = p6 {
                    used.insert(IpAddr::V6(p));
                }
                segments[j].peer6 = p6;
            }
        }
    }

    // --- sysctls ---
    let guest_pre = vec![
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
    ];
    let mut vpc_ops = vec![
        sysctl("net/ipv4/ip_forward", "1"),
        sysctl("net/ipv4/conf/all/rp_filter", "0"),
        sysctl("net/ipv4/conf/default/rp_filter", "0"),
        sysctl("net/ipv4/conf/all/send_redirects", "0"),
        sysctl("net/ipv4/conf/default/send_redirects", "0"),
        sysctl("net/ipv6/conf/all/accept_dad", "0"),
        sysctl("net/ipv6/conf/default/accept_dad", "0"),
        sysctl("net/ipv6/conf/all/forwarding", "1"),
        up("lo"),
    ];
    let internet_pre = vec![
        sysctl("net/ipv4/conf/all/rp_filter", "0"),
        sysctl("net/ipv4/conf/default/rp_filter", "0"),
        sysctl("net/ipv6/conf/all/accept_dad", "0"),
        sysctl("net/ipv6/conf/default/accept_dad", "0"),
        up("lo"),
    ];

    let mut guest_ops = Vec::new();
    let mut internet_ops = Vec::new();

    // --- VPC: bridges, ENI ports, uplink ---
    for s in &segments {
        vpc_ops.push(SimOp::Bridge {
            name: s.bridge.clone(),
        });
    }
    for se in &enis {
        vpc_ops.push(SimOp::Veth {
            name: se.vpc_if.clone(),
            peer: se.ifname.clone(),
            peer_mac: Some(se.mac),
            peer_netns: Some(names.guest.clone()),
        });
        if se.attach != se.vpc_if {
            vpc_ops.push(SimOp::Master {
                port: se.vpc_if.clone(),
                bridge: se.attach.clone(),
            });
        }
        vpc_ops.push(up(&se.vpc_if));
    }
    vpc_ops.push(SimOp::Veth {
        name: UPLINK.into(),
        peer: INET_IF.into(),
        peer_mac: None,
        peer_netns: Some(names.internet.clone()),
    });
    vpc_ops.push(up(UPLINK));
    for s in &segments {
        vpc_ops.push(up(&s.bridge));
    }

    // Router addresses: each vSwitch's gateways (cidr prefix) and its peer host; EIP gateways
    // outside the vSwitch as /32 on the ENI's attachment. One address per (interface, address).
    let mut router_addrs: BTreeSet<(String, IpAddr, u8)> = BTreeSet::new();
    let mut routed_eips: Vec<(String, Ipv4Addr, MacAddr6)> = Vec::new();
    let mut neighs: BTreeSet<(String, IpAddr, [u8; 6])> = BTreeSet::new();
    for (e, se) in config.enis.iter().zip(&enis) {
        if let (Some(cidr), Some(gw)) = (e.cidr, e.gateway) {
            if e.mode != Mode::CutThrough {
                router_addrs.insert((se.attach.clone(), IpAddr::V4(gw), cidr.prefix()));
            }
        }
        if e.mode.uses_private_ips() {
            for ip in &e.private_ips {
                neighs.insert((se.attach.clone(), IpAddr::V4(*ip), se.mac.into_array()));
            }
        }
        for eip in &e.eips {
            if e.mode == Mode::Nat {
                continue;
            }
            if let Some(gw) = eip.gateway {
                let inside = e.mode != Mode::CutThrough && e.cidr.is_some_and(|c| c.contains(gw));
                if !inside {
                    router_addrs.insert((se.attach.clone(), IpAddr::V4(gw), 32));
                }
            }
            routed_eips.push((se.attach.clone(), eip.address, se.mac));
            neighs.insert((
                se.attach.clone(),
                IpAddr::V4(eip.address),
                se.mac.into_array(),
            ));
        }
        // IPv6: the gateway (link-local or global) and the ENI's addresses.
        if let (Some(c6), Some(gw6)) = (e.ipv6_cidr, e.ipv6_gateway) {
            let prefix = if gw6.is_unicast_link_local() {
                64
            } else {
                c6.prefix()
            };
            router_addrs.insert((se.attach.clone(), IpAddr::V6(gw6), prefix));
            for ip in &e.ipv6 {
                neighs.insert((se.attach.clone(), IpAddr::V6(*ip), se.mac.into_array()));
            }
            if let Some(seg) = segments.iter().find(|s| s.bridge == se.attach) {
                if let Some(p6) = seg.peer6 {
                    router_addrs.insert((se.attach.clone(), IpAddr::V6(p6), c6.prefix()));
                }
            } else {
                // A cut-through link with IPv6: a connected route for the ENI's IPv6 cidr.
                if let Some(p6) = free_v6(c6, &used) {
                    used.insert(IpAddr::V6(p6));
                    router_addrs.insert((se.attach.clone(), IpAddr::V6(p6), c6.prefix()));
                }
            }
        }
    }
    for s in &segments {
        if let Some(p) = s.peer {
            router_addrs.insert((s.bridge.clone(), IpAddr::V4(p), s.cidr.prefix()));
        }
    }
    // Gateways first (they become the primary address of their subnet), then the rest.
    let mut ordered: Vec<&(String, IpAddr, u8)> = router_addrs.iter().collect();
    let peers: BTreeSet<IpAddr> = segments
        .iter()
        .flat_map(|s| {
            s.peer
                .map(IpAddr::V4)
                .into_iter()
                .chain(s.peer6.map(IpAddr::V6))
        })
        .collect();
    ordered.sort_by_key(|(_, a, _)| peers.contains(a));
    for (dev, a, p) in ordered {
        vpc_ops.push(addr(dev, *a, *p));
    }
    vpc_ops.push(addr(UPLINK, IpAddr::V4(uplink_ip), 24));
    for (dev, eip, _) in &routed_eips {
        vpc_ops.push(SimOp::Route {
            dst: IpNetwork::V4(Ipv4Network::from(*eip)),
            via: None,
            dev: dev.clone(),
            dhcp: false,
        });
    }
    for (dev, a, mac) in &neighs {
        vpc_ops.push(SimOp::Neigh {
            dev: dev.clone(),
            addr: *a,
            mac: MacAddr6::from(*mac),
        });
    }
    // Prefixes are routed to their ENI's primary private IP.
    for e in &config.enis {
        if let Some(first) = e.private_ips.first() {
            for p in &e.prefixes {
                let dev = enis
                    .iter()
                    .find(|s| s.name == e.name)
                    .map(|s| s.attach.clone())
                    .unwrap_or_default();
                vpc_ops.push(SimOp::Route {
                    dst: IpNetwork::V4(*p),
                    via: Some(IpAddr::V4(*first)),
                    dev,
                    dhcp: false,
                });
            }
        }
    }

    // --- Internet ---
    internet_ops.push(up(INET_IF));
    internet_ops.push(addr(INET_IF, IpAddr::V4(internet), 24));
    for d in &extra_destinations {
        internet_ops.push(addr(INET_IF, IpAddr::V4(*d), 24));
    }
    internet_ops.push(SimOp::Route {
        dst: "0.0.0.0/0".parse().map_err(|e| format!("{e}"))?,
        via: Some(IpAddr::V4(uplink_ip)),
        dev: INET_IF.into(),
        dhcp: false,
    });
    let mut internet6 = None;
    if let Some(n6) = internet6_net {
        let base6 = u128::from(n6.network());
        let up6 = Ipv6Addr::from(base6 + 1);
        let host6 = Ipv6Addr::from(base6 + 0x10);
        internet6 = Some(host6);
        vpc_ops.push(addr(UPLINK, IpAddr::V6(up6), 64));
        internet_ops.push(addr(INET_IF, IpAddr::V6(host6), 64));
        internet_ops.push(SimOp::Route {
            dst: "::/0".parse().map_err(|e| format!("{e}"))?,
            via: Some(IpAddr::V6(up6)),
            dev: INET_IF.into(),
            dhcp: false,
        });
    }

    // --- Guest: what DHCP leaves ---
    for se in &enis {
        guest_ops.push(up(&se.ifname));
    }
    for (e, se) in config.enis.iter().zip(&enis) {
        match e.mode {
            Mode::Nat | Mode::MultiEip => {
                if let (Some(first), Some(cidr)) = (e.private_ips.first(), e.cidr) {
                    guest_ops.push(addr(&se.ifname, IpAddr::V4(*first), cidr.prefix()));
                }
            }
            Mode::CutThrough => {
                if let Some(eip) = e.eips.first() {
                    guest_ops.push(addr(&se.ifname, IpAddr::V4(eip.address), eip.prefix));
                }
            }
        }
    }
    if let Some((e, se)) = config.enis.iter().zip(&enis).find(|(e, _)| e.primary) {
        if let Some(gw) = e.gateway {
            guest_ops.push(SimOp::Route {
                dst: "0.0.0.0/0".parse().map_err(|e| format!("{e}"))?,
                via: Some(IpAddr::V4(gw)),
                dev: se.ifname.clone(),
                dhcp: true,
            });
        }
    }

    let nft = nft_ruleset(config, &enis);
    let (checks, egress) = checks(config, &segments, internet, internet6);
    Ok(Topology {
        names,
        enis,
        segments,
        internet,
        internet_net,
        internet6,
        extra_destinations,
        guest_pre,
        internet_pre,
        guest_ops,
        vpc_ops,
        internet_ops,
        nft,
        checks,
        egress,
        has_ipv6,
        notes,
    })
}

/// The VPC's nftables ruleset: per-port anti-spoofing, 1:1 NAT of nat EIPs, and "no EIP, no
/// Internet".
fn nft_ruleset(config: &Config, enis: &[SimEni]) -> String {
    let mut s = String::new();
    s.push_str("table netdev eniroute_sandbox {\n");
    for (k, (e, se)) in config.enis.iter().zip(enis).enumerate() {
        let mut v4: Vec<String> = Vec::new();
        if e.mode.uses_private_ips() {
            v4.extend(e.private_ips.iter().map(|a| a.to_string()));
            v4.extend(e.prefixes.iter().map(|p| p.to_string()));
        }
        if e.mode != Mode::Nat {
            v4.extend(e.eips.iter().map(|x| x.address.to_string()));
        }
        let mut v6: Vec<String> = vec!["fe80::/10".into(), "::".into()];
        v6.extend(e.ipv6.iter().map(|a| a.to_string()));
        s.push_str(&format!(
            "  chain port{k} {{\n    # ENI {:?} ({}): only its own addresses may leave it\n    \
             type filter hook ingress device \"{}\" priority 0; policy accept;\n    \
             meta protocol arp accept\n",
            e.name, e.mode, se.vpc_if
        ));
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
    }
    s.push_str("}\n");

    let mut dnat = Vec::new();
    let mut snat = Vec::new();
    let mut inet_ok: Vec<String> = Vec::new();
    let mut routed: Vec<String> = Vec::new();
    for e in &config.enis {
        for eip in &e.eips {
            match e.mode {
                Mode::Nat => {
                    if let Some(p) = eip.private_ip {
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
                Mode::MultiEip | Mode::CutThrough => {
                    inet_ok.push(eip.address.to_string());
                    routed.push(eip.address.to_string());
                }
            }
        }
    }
    s.push_str("table ip eniroute_sandbox {\n");
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

fn checks(
    config: &Config,
    segments: &[Segment],
    internet: Ipv4Addr,
    internet6: Option<Ipv6Addr>,
) -> (Vec<ConnCheck>, Option<EgressCheck>) {
    let inet = SocketAddr::new(IpAddr::V4(internet), PORT);
    let mut inbound = Vec::new();
    let mut outbound = Vec::new();
    let mut vswitch = Vec::new();
    let mut public_to_eni = BTreeMap::new();
    for e in &config.enis {
        // Inbound to every EIP.
        for eip in &e.eips {
            let answer = match e.mode {
                Mode::Nat => eip.private_ip.map(IpAddr::V4),
                _ => Some(IpAddr::V4(eip.address)),
            };
            public_to_eni.insert(IpAddr::V4(eip.address), e.name.clone());
            if let Some(answer) = answer {
                inbound.push(ConnCheck {
                    kind: Kind::Inbound,
                    subject: format!("Internet -> {} ({} {} EIP)", eip.address, e.name, e.mode),
                    eni: e.name.clone(),
                    from_internet: true,
                    bind: None,
                    target: SocketAddr::new(IpAddr::V4(eip.address), PORT),
                    expect: Expect::Answer(answer),
                });
            }
        }
        // Outbound from every source.
        if e.mode.uses_private_ips() {
            for ip in &e.private_ips {
                let eip = if e.mode == Mode::Nat {
                    e.eips.iter().find(|x| x.private_ip == Some(*ip))
                } else {
                    None
                };
                let expect = match eip {
                    Some(x) => Expect::Answer(IpAddr::V4(x.address)),
                    None => Expect::NoPath,
                };
                outbound.push(ConnCheck {
                    kind: Kind::Outbound,
                    subject: format!("{ip} ({}) -> Internet", e.name),
                    eni: e.name.clone(),
                    from_internet: false,
                    bind: Some(IpAddr::V4(*ip)),
                    target: inet,
                    expect,
                });
            }
        }
        if e.mode != Mode::Nat {
            for eip in &e.eips {
                outbound.push(ConnCheck {
                    kind: Kind::Outbound,
                    subject: format!("{} ({} EIP) -> Internet", eip.address, e.name),
                    eni: e.name.clone(),
                    from_internet: false,
                    bind: Some(IpAddr::V4(eip.address)),
                    target: inet,
                    expect: Expect::Answer(IpAddr::V4(eip.address)),
                });
            }
        }
        // The same vSwitch.
        let seg = e
            .cidr
            .filter(|_| e.mode.uses_private_ips())
            .and_then(|c| segments.iter().find(|s| s.cidr == c));
        if let Some(seg) = seg {
            if let Some(peer) = seg.peer {
                for ip in &e.private_ips {
                    vswitch.push(ConnCheck {
                        kind: Kind::Vswitch,
                        subject: format!("{ip} ({}) -> peer {peer}", e.name),
                        eni: e.name.clone(),
                        from_internet: false,
                        bind: Some(IpAddr::V4(*ip)),
                        target: SocketAddr::new(IpAddr::V4(peer), PORT),
                        expect: Expect::Answer(IpAddr::V4(*ip)),
                    });
                }
            }
        }
        // IPv6: public addresses, routed without NAT.
        if let Some(i6) = internet6 {
            for ip in &e.ipv6 {
                let a = IpAddr::V6(*ip);
                public_to_eni.insert(a, e.name.clone());
                inbound.push(ConnCheck {
                    kind: Kind::Inbound,
                    subject: format!("Internet -> {ip} ({} IPv6)", e.name),
                    eni: e.name.clone(),
                    from_internet: true,
                    bind: None,
                    target: SocketAddr::new(a, PORT),
                    expect: Expect::Answer(a),
                });
                outbound.push(ConnCheck {
                    kind: Kind::Outbound,
                    subject: format!("{ip} ({}) -> Internet", e.name),
                    eni: e.name.clone(),
                    from_internet: false,
                    bind: Some(a),
                    target: SocketAddr::new(IpAddr::V6(i6), PORT),
                    expect: Expect::Answer(a),
                });
                let peer6 = seg.and_then(|s| s.peer6);
                if let Some(p6) = peer6 {
                    vswitch.push(ConnCheck {
                        kind: Kind::Vswitch,
                        subject: format!("{ip} ({}) -> peer {p6}", e.name),
                        eni: e.name.clone(),
                        from_internet: false,
                        bind: Some(a),
                        target: SocketAddr::new(IpAddr::V6(p6), PORT),
                        expect: Expect::Answer(a),
                    });
                }
            }
        }
    }
    let egress = config.egress.as_ref().map(|eg| {
        let failover_seen = match eg.strategy {
            Strategy::Failover => eg.via.first().and_then(|v| v.source).and_then(|src| {
                // A private source is seen as its NAT EIP; an EIP as itself.
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
            }),
            Strategy::Balance => None,
        };
        EgressCheck {
            strategy: eg.strategy,
            via: eg.via.iter().map(|v| (v.eni.clone(), v.weight)).collect(),
            failover_seen,
            public_to_eni: public_to_eni.clone(),
        }
    });
    let mut all = inbound;
    all.extend(outbound);
    all.extend(vswitch);
    (all, egress)
}
