//! [containers] in the sandbox, docker-style: a bridge in the guest with a container namespace
//! behind it, a port published (DNAT) on a secondary ENI's private IP and a masquerade of the
//! container network, both in a FOREIGN nftables table of the guest (as docker makes them); and
//! the checks that both kinds of connection leave the ENI they belong to. From the config alone.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ipnetwork::{IpNetwork, Ipv4Network};

use super::{
    addr, default_route, overlaps, seen_as, sysctl, up, ConnCheck, Expect, Kind, Names, Origin,
    Segment, PORT,
};
use crate::kernel::sim::SimOp;
use crate::model::{Config, Eni};

/// The port published on the ENI's private IP (and its EIPs); the container listens on PORT.
pub const PUBLISHED_PORT: u16 = 8081;
/// The guest's bridge (docker0's role), its port towards the container, the container's link.
const BRIDGE: &str = "ctr0";
const GUEST_VETH: &str = "vethctr0";
const CONTAINER_IF: &str = "eth0";

/// What the rest of the topology gives this part.
pub(super) struct At<'a> {
    pub segments: &'a [Segment],
    /// Networks the config declares (the container network must avoid them when it is ours).
    pub taken: &'a [IpNetwork],
    pub internet: Ipv4Addr,
}

/// The container side of the simulation.
#[derive(Debug, Clone)]
pub struct ContainerSide {
    /// The container namespace's sysctls and lo, before its link is moved in.
    pub pre: Vec<SimOp>,
    /// The guest's bridge and veth (its peer moved into the container), and forwarding on.
    pub guest_ops: Vec<SimOp>,
    /// The container's address and default route.
    pub ops: Vec<SimOp>,
    /// The guest's foreign nftables table: the published port's DNAT and the masquerade.
    pub guest_ruleset: String,
}

/// The container side of `config` (None without [containers]); its published-port and
/// container-egress checks go into `checks`.
pub(super) fn build(
    config: &Config,
    names: &Names,
    at: &At,
    notes: &mut Vec<String>,
    checks: &mut Vec<ConnCheck>,
) -> Result<Option<ContainerSide>, String> {
    let (Some(c), Some(ns)) = (&config.containers, &names.container) else {
        return Ok(None);
    };
    let egress = c
        .egress
        .iter()
        .find(|e| matches!(e.network, IpNetwork::V4(n) if n.prefix() <= 30));
    let network = match egress.map(|e| e.network) {
        Some(IpNetwork::V4(n)) => n,
        _ => {
            let n = free_network(at.taken)
                .ok_or("no free /16 in 172.17.0.0-172.31.255.255 for the container network")?;
            notes.push(format!(
                "no IPv4 [[containers.egress]] network of at most /30: the container sits on \
                 {n}, which eniroute does not route; only the published port is checked"
            ));
            n
        }
    };
    let host = |k: u32| {
        network
            .nth(k)
            .ok_or_else(|| format!("container network {network} has no host {k}"))
    };
    let (gateway, address) = (host(1)?, host(2)?);
    let publish = published_eni(config, egress.map(|e| e.eni.as_str()));
    match publish {
        // Replies of forwarded connections are what return_path routes; without it eniroute
        // promises nothing for them (the DNAT stays: the host is docker's as it would be).
        Some(_) if !c.return_path => notes.push(
            "[containers] return_path = false: replies of the published port are not \
             eniroute's to route; the published-port checks are skipped"
                .into(),
        ),
        Some((e, ip)) => checks.extend(published(e, ip, at, address)),
        None => notes.push(
            "[containers]: no secondary ENI with a private IP to publish a port on: the \
             published-port checks are skipped"
                .into(),
        ),
    }
    if let Some(eg) = egress {
        checks.extend(container_egress(config, &eg.eni, eg.source, at, address));
    }
    Ok(Some(ContainerSide {
        pre: vec![up("lo")],
        guest_ops: bridge_ops(ns, gateway, network.prefix()),
        ops: vec![
            addr(CONTAINER_IF, IpAddr::V4(address), network.prefix()),
            up(CONTAINER_IF),
            default_route(IpAddr::V4(gateway), CONTAINER_IF, false)?,
        ],
        guest_ruleset: guest_ruleset(publish.map(|(_, ip)| ip), network, address),
    }))
}

/// The guest's side: forwarding on, the bridge with the container network's gateway address,
/// and the veth whose peer goes into the container namespace `ns`.
fn bridge_ops(ns: &str, gateway: Ipv4Addr, prefix: u8) -> Vec<SimOp> {
    vec![
        sysctl("net/ipv4/ip_forward", "1"),
        SimOp::Bridge {
            name: BRIDGE.into(),
        },
        addr(BRIDGE, IpAddr::V4(gateway), prefix),
        up(BRIDGE),
        SimOp::Veth {
            name: GUEST_VETH.into(),
            peer: CONTAINER_IF.into(),
            peer_mac: None,
            peer_netns: Some(ns.to_string()),
        },
        SimOp::Master {
            port: GUEST_VETH.into(),
            bridge: BRIDGE.into(),
        },
        up(GUEST_VETH),
    ]
}

/// docker's 172.17.0.0/16, or the first of 172.18-31 that overlaps nothing declared.
fn free_network(taken: &[IpNetwork]) -> Option<Ipv4Network> {
    (17u8..32)
        .filter_map(|b| Ipv4Network::new(Ipv4Addr::new(172, b, 0, 0), 16).ok())
        .find(|n| !taken.iter().any(|t| overlaps(&IpNetwork::V4(*n), t)))
}

/// The ENI whose private IP the port is published on, and that IP: the egress ENI when it is a
/// secondary one, else the first secondary ENI with private IPs on a vSwitch.
fn published_eni<'a>(config: &'a Config, egress_eni: Option<&str>) -> Option<(&'a Eni, Ipv4Addr)> {
    let usable = |e: &&Eni| !e.primary && e.mode.uses_private_ips() && e.cidr.is_some();
    let mut cands = config.enis.iter().filter(usable);
    let e = match cands.clone().find(|e| Some(e.name.as_str()) == egress_eni) {
        Some(e) => e,
        None => cands.next()?,
    };
    Some((e, *e.private_ips.first()?))
}

/// Clients reaching the published port: the Internet through each nat EIP mapped to `ip`, and
/// the peer host on the ENI's vSwitch. The container answers with the client it saw.
fn published(e: &Eni, ip: Ipv4Addr, at: &At, container: Ipv4Addr) -> Vec<ConnCheck> {
    let mut out = Vec::new();
    let check = |from, bind, target: IpAddr, subject: String, seen: IpAddr| ConnCheck {
        kind: Kind::Published,
        subject,
        eni: e.name.clone(),
        from,
        bind,
        target: SocketAddr::new(target, PUBLISHED_PORT),
        expect: Expect::Answer(seen),
    };
    if e.mode.eip_maps_to_private_ip() {
        for eip in e.eips.iter().filter(|x| x.private_ip == Some(ip)) {
            let subject = format!(
                "Internet -> {}:{PUBLISHED_PORT} ({} EIP) -> container {container}",
                eip.address, e.name
            );
            let inet = IpAddr::V4(at.internet);
            out.push(check(
                Origin::Internet,
                None,
                IpAddr::V4(eip.address),
                subject,
                inet,
            ));
        }
    }
    if let Some(peer) = peer_of(e, at) {
        let subject = format!(
            "peer {peer} -> {ip}:{PUBLISHED_PORT} ({}) -> container",
            e.name
        );
        let p = IpAddr::V4(peer);
        out.push(check(Origin::Vpc, Some(p), IpAddr::V4(ip), subject, p));
    }
    out
}

/// The peer host on the vSwitch of an ENI's private IPs.
fn peer_of(e: &Eni, at: &At) -> Option<Ipv4Addr> {
    let cidr = e.cidr?;
    at.segments.iter().find(|s| s.cidr == cidr)?.peer
}

/// The container connecting out: to the Internet (when `source` has a public address) and to
/// the peer on the egress ENI's vSwitch, seen as `source` (or its EIP).
fn container_egress(
    config: &Config,
    eni: &str,
    source: IpAddr,
    at: &At,
    container: Ipv4Addr,
) -> Vec<ConnCheck> {
    let Some(e) = config.enis.iter().find(|e| e.name == eni) else {
        return Vec::new();
    };
    let check = |target: IpAddr, subject: String, seen: IpAddr| ConnCheck {
        kind: Kind::ContainerEgress,
        subject,
        eni: e.name.clone(),
        from: Origin::Container,
        bind: None,
        target: SocketAddr::new(target, PORT),
        expect: Expect::Answer(seen),
    };
    let mut out = Vec::new();
    if let Some(public) = seen_as(config, source) {
        let subject = format!("container {container} -> Internet (egress {eni})");
        out.push(check(IpAddr::V4(at.internet), subject, public));
    }
    let on_vswitch = e.cidr.is_some_and(|c| match source {
        IpAddr::V4(s) => c.contains(s) || e.mode.eip_in_os(),
        IpAddr::V6(_) => false,
    });
    if let Some(peer) = peer_of(e, at).filter(|_| on_vswitch) {
        let subject = format!("container {container} -> peer {peer} (egress {eni})");
        out.push(check(IpAddr::V4(peer), subject, source));
    }
    out
}

/// The guest's foreign table, as `docker run -p IP:8081:8080` leaves it: a DNAT of the published
/// port on the published private IP, and the masquerade of the container network.
fn guest_ruleset(published: Option<Ipv4Addr>, network: Ipv4Network, container: Ipv4Addr) -> String {
    let mut s = String::from(
        "table ip sandbox_docker {\n  chain prerouting {\n    \
         type nat hook prerouting priority dstnat; policy accept;\n",
    );
    if let Some(ip) = published {
        s.push_str(&format!(
            "    ip daddr {ip} tcp dport {PUBLISHED_PORT} dnat to {container}:{PORT}\n"
        ));
    }
    s.push_str(&format!(
        "  }}\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy \
         accept;\n    ip saddr {network} oifname != \"{BRIDGE}\" masquerade\n  }}\n}}\n"
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::super::Topology;
    use super::*;

    fn topology(path: &str, edit: impl Fn(String) -> String) -> Topology {
        let text = edit(std::fs::read_to_string(path).unwrap());
        super::super::tests::topology(&text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn checks(t: &Topology) -> Vec<(Kind, Origin, String, Expect)> {
        t.conn_checks
            .iter()
            .filter(|c| matches!(c.kind, Kind::Published | Kind::ContainerEgress))
            .map(|c| (c.kind, c.from, c.target.to_string(), c.expect.clone()))
            .collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const EIP: &str = "configs/examples/containers-eip.toml";

    #[test]
    fn published_port_and_container_egress_from_the_config() {
        let t = topology(EIP, |s| s);
        let inet = t.internet_host.to_string();
        assert_eq!(
            checks(&t),
            [
                // the Internet through the EIP of the published private IP; the vSwitch peer
                (
                    Kind::Published,
                    Origin::Internet,
                    "203.0.113.31:8081".into(),
                    Expect::Answer(ip(&inet))
                ),
                (
                    Kind::Published,
                    Origin::Vpc,
                    "192.168.30.21:8081".into(),
                    Expect::Answer(ip("192.168.30.254"))
                ),
                // egress seen as the source's EIP, and as the source on the vSwitch
                (
                    Kind::ContainerEgress,
                    Origin::Container,
                    format!("{inet}:8080"),
                    Expect::Answer(ip("203.0.113.32"))
                ),
                (
                    Kind::ContainerEgress,
                    Origin::Container,
                    "192.168.30.254:8080".into(),
                    Expect::Answer(ip("192.168.30.22"))
                ),
            ]
        );
        let c = t.containers.as_ref().unwrap();
        assert!(c
            .guest_ruleset
            .contains("ip daddr 192.168.30.21 tcp dport 8081 dnat to 172.17.0.2:8080"));
        assert!(c
            .guest_ruleset
            .contains("ip saddr 172.17.0.0/16 oifname != \"ctr0\" masquerade"));
        assert!(c.ops.iter().any(|op| op.to_string().contains("172.17.0.2")));
    }

    #[test]
    fn without_eips_or_egress_the_checks_that_remain() {
        // containers.toml: no EIPs, so no Internet checks; the peer ones stay
        let t = topology("configs/examples/containers.toml", |s| s);
        let kinds: Vec<(Kind, Origin)> = checks(&t).iter().map(|c| (c.0, c.1)).collect();
        assert_eq!(
            kinds,
            [
                (Kind::Published, Origin::Vpc),
                (Kind::ContainerEgress, Origin::Container)
            ]
        );
        // no [[containers.egress]]: a free network of our own, published port only, said so
        let t = topology(EIP, |s| {
            s[..s.rfind("[[containers.egress]]").unwrap()].to_string()
        });
        let kinds: Vec<Kind> = checks(&t).iter().map(|c| c.0).collect();
        assert_eq!(kinds, [Kind::Published, Kind::Published]);
        assert!(t
            .notes
            .iter()
            .any(|n| n.contains("only the published port")));
        assert!(t
            .containers
            .as_ref()
            .unwrap()
            .guest_ruleset
            .contains("172.17.0.0/16"));
        // return_path = false: eniroute does not route the published port's replies
        let t = topology(EIP, |s| {
            s.replace("return_path = true", "return_path = false")
        });
        let kinds: Vec<Kind> = checks(&t).iter().map(|c| c.0).collect();
        assert_eq!(kinds, [Kind::ContainerEgress, Kind::ContainerEgress]);
        assert!(t.notes.iter().any(|n| n.contains("return_path = false")));
    }
}
