//! The address rules of DESIGN §3, once: what may be an ENI's gateway, private IP, prefix and
//! IPv6 address, and that no address appears twice. Pure functions over typed values that return
//! what is wrong; each caller words it (the validator with lines, discover with metadata paths).
//! Imports only ipnetwork and macaddr.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::{Ipv4Network, Ipv6Network};
use macaddr::MacAddr6;

use super::blocks::Blocks;

/// Whether a MAC can identify an interface (not all-zero, not multicast).
pub(crate) fn unicast_mac(mac: MacAddr6) -> bool {
    !(mac.is_nil() || mac.is_multicast())
}

/// Whether an ENI's gateway lies inside its vSwitch CIDR.
pub(crate) fn gateway_inside(cidr: Ipv4Network, gateway: Ipv4Addr) -> bool {
    cidr.contains(gateway)
}

/// Why an address cannot be one of an ENI's private IPs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrivateIpFault {
    OutsideCidr,
    NetworkOrBroadcast,
    IsGateway,
}

/// Every reason `ip` cannot be a private IP of an ENI with this `cidr` and `gateway`, in the
/// order they are reported.
pub(crate) fn private_ip_faults(
    ip: Ipv4Addr,
    cidr: Option<Ipv4Network>,
    gateway: Option<Ipv4Addr>,
) -> Vec<PrivateIpFault> {
    let mut out = Vec::new();
    if let Some(net) = cidr {
        if !net.contains(ip) {
            out.push(PrivateIpFault::OutsideCidr);
        } else if net.prefix() < 31 && (ip == net.network() || ip == net.broadcast()) {
            out.push(PrivateIpFault::NetworkOrBroadcast);
        }
    }
    if Some(ip) == gateway {
        out.push(PrivateIpFault::IsGateway);
    }
    out
}

/// Why a network cannot be one of an ENI's IPv4 `prefixes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrefixFault {
    OutsideCidr,
    OverlapsPrivateIp(Ipv4Addr),
    ContainsGateway(Ipv4Addr),
    OverlapsPrefix(Ipv4Network),
}

/// The ENI a prefix is checked against: its subnet, its private IPs and its earlier prefixes.
pub(crate) struct PrefixSite<'a> {
    pub(crate) cidr: Option<Ipv4Network>,
    pub(crate) gateway: Option<Ipv4Addr>,
    pub(crate) private_ips: &'a [Ipv4Addr],
    pub(crate) earlier: &'a [Ipv4Network],
}

/// Every reason `n` cannot be a prefix of the ENI, in the order they are reported.
pub(crate) fn prefix_faults(n: Ipv4Network, site: &PrefixSite<'_>) -> Vec<PrefixFault> {
    let ip = site.private_ips.iter().find(|ip| n.contains(**ip)).copied();
    let earlier = site.earlier.iter().find(|o| o.overlaps(n)).copied();
    faults(n, site.cidr, site.gateway, ip, earlier)
}

/// [`prefix_faults`] of every prefix of an ENI in declaration order (each against the ones
/// before it), in n·log n: for configs with many prefixes.
pub(crate) fn all_prefix_faults(
    prefixes: &[Ipv4Network],
    cidr: Option<Ipv4Network>,
    gateway: Option<Ipv4Addr>,
    private_ips: &[Ipv4Addr],
) -> Vec<Vec<PrefixFault>> {
    let mut ips = Blocks::new();
    for ip in private_ips {
        ips.insert(Ipv4Network::from(*ip), ());
    }
    let mut earlier = Blocks::new();
    let mut out = Vec::with_capacity(prefixes.len());
    for n in prefixes {
        let ip = ips.overlapping(*n, |_| true).map(|(b, _)| b.ip());
        let before = earlier.overlapping(*n, |_| true).map(|(b, _)| b);
        out.push(faults(*n, cidr, gateway, ip, before));
        earlier.insert(*n, ());
    }
    out
}

fn faults(
    n: Ipv4Network,
    cidr: Option<Ipv4Network>,
    gateway: Option<Ipv4Addr>,
    private_ip: Option<Ipv4Addr>,
    earlier: Option<Ipv4Network>,
) -> Vec<PrefixFault> {
    let mut out = Vec::new();
    if let Some(net) = cidr {
        if !(net.contains(n.network()) && net.contains(n.broadcast())) {
            out.push(PrefixFault::OutsideCidr);
        }
    }
    out.extend(private_ip.map(PrefixFault::OverlapsPrivateIp));
    if let Some(gw) = gateway.filter(|gw| n.contains(*gw)) {
        out.push(PrefixFault::ContainsGateway(gw));
    }
    out.extend(earlier.map(PrefixFault::OverlapsPrefix));
    out
}

/// Whether an IPv6 address can be an ENI's address (global unicast).
pub(crate) fn ipv6_global(ip: Ipv6Addr) -> bool {
    !(ip.is_unicast_link_local() || ip.is_multicast() || ip.is_loopback())
}

/// Whether an IPv6 gateway is reachable: link-local, or inside the ENI's IPv6 CIDR.
pub(crate) fn ipv6_gateway_usable(gateway: Ipv6Addr, cidr: Option<Ipv6Network>) -> bool {
    gateway.is_unicast_link_local() || cidr.map(|n| n.contains(gateway)).unwrap_or(false)
}

/// "No address appears twice": the first holder of every address, in the order claimed.
pub(crate) struct AddressBook<H> {
    index: HashMap<IpAddr, usize>,
    holders: Vec<(IpAddr, H)>,
}

impl<H> AddressBook<H> {
    pub(crate) fn new() -> Self {
        AddressBook {
            index: HashMap::new(),
            holders: Vec::new(),
        }
    }

    /// Record `holder` as the holder of `ip`; if `ip` was already claimed, keep the first
    /// holder and return it.
    pub(crate) fn claim(&mut self, ip: IpAddr, holder: H) -> Option<&H> {
        match self.index.get(&ip) {
            Some(&i) => self.holders.get(i).map(|(_, h)| h),
            None => {
                self.index.insert(ip, self.holders.len());
                self.holders.push((ip, holder));
                None
            }
        }
    }

    /// Every claimed address with its holder, in the order claimed.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &(IpAddr, H)> {
        self.holders.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Network {
        s.parse().unwrap()
    }

    #[test]
    fn private_ip_faults_in_order() {
        let cidr = Some(net("192.168.1.0/24"));
        let gw = Some(Ipv4Addr::new(192, 168, 1, 1));
        assert!(private_ip_faults(Ipv4Addr::new(192, 168, 1, 9), cidr, gw).is_empty());
        assert_eq!(
            private_ip_faults(Ipv4Addr::new(192, 168, 1, 255), cidr, gw),
            [PrivateIpFault::NetworkOrBroadcast]
        );
        assert_eq!(
            private_ip_faults(Ipv4Addr::new(192, 168, 1, 1), cidr, gw),
            [PrivateIpFault::IsGateway]
        );
        assert_eq!(
            private_ip_faults(
                Ipv4Addr::new(10, 0, 0, 1),
                cidr,
                Some(Ipv4Addr::new(10, 0, 0, 1))
            ),
            [PrivateIpFault::OutsideCidr, PrivateIpFault::IsGateway]
        );
        // A /31 has no network or broadcast address.
        let p2p = Some(net("192.168.1.0/31"));
        assert!(private_ip_faults(Ipv4Addr::new(192, 168, 1, 0), p2p, None).is_empty());
    }

    #[test]
    fn prefix_faults_in_order() {
        let ips = [Ipv4Addr::new(192, 168, 1, 20)];
        let earlier = [net("192.168.1.32/28")];
        let site = PrefixSite {
            cidr: Some(net("192.168.1.0/24")),
            gateway: Some(Ipv4Addr::new(192, 168, 1, 253)),
            private_ips: &ips,
            earlier: &earlier,
        };
        assert!(prefix_faults(net("192.168.1.48/28"), &site).is_empty());
        assert_eq!(
            prefix_faults(net("192.168.1.0/26"), &site),
            [
                PrefixFault::OverlapsPrivateIp(ips[0]),
                PrefixFault::OverlapsPrefix(earlier[0])
            ]
        );
        assert_eq!(
            prefix_faults(net("192.168.0.0/23"), &site)[0],
            PrefixFault::OutsideCidr
        );
    }

    #[test]
    fn address_book_keeps_the_first_holder() {
        let mut book = AddressBook::new();
        let a = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1));
        assert_eq!(book.claim(a, "eth0"), None);
        assert_eq!(book.claim(a, "eth1"), Some(&"eth0"));
        assert_eq!(book.iter().count(), 1);
    }
}
