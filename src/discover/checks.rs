//! The per-ENI address rules every provider applies to what it read, worded for the metadata
//! (each error names the metadata path): the validator's own rules, from `crate::config::rules`,
//! so discover never writes a config that would not validate.
//! May import `crate::config::rules` and the discover types.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnetwork::{Ipv4Network, Ipv6Network};

use super::{DiscoverError, NatEip};
use crate::config::rules::{self, PrefixFault, PrefixSite, PrivateIpFault};

fn inconsistent(path: &str, reason: String) -> DiscoverError {
    DiscoverError::Inconsistent {
        path: path.to_string(),
        reason,
    }
}

/// The gateway lies inside the subnet and is usable as its router.
pub(crate) fn gateway(path: &str, cidr: Ipv4Network, gw: Ipv4Addr) -> Result<(), DiscoverError> {
    if rules::gateway_inside(cidr, gw) {
        Ok(())
    } else {
        Err(inconsistent(
            path,
            format!("gateway {gw} is outside the subnet {cidr}"),
        ))
    }
}

/// Each private IP lies inside the subnet, is neither its network nor broadcast address, nor
/// the gateway.
pub(crate) fn private_ips(
    path: &str,
    ips: &[Ipv4Addr],
    cidr: Ipv4Network,
    gw: Ipv4Addr,
) -> Result<(), DiscoverError> {
    for ip in ips {
        let Some(fault) = rules::private_ip_faults(*ip, Some(cidr), Some(gw))
            .first()
            .copied()
        else {
            continue;
        };
        let reason = match fault {
            PrivateIpFault::OutsideCidr => format!("private IP {ip} is outside the subnet {cidr}"),
            PrivateIpFault::NetworkOrBroadcast => {
                format!("private IP {ip} is the network or broadcast address of {cidr}")
            }
            PrivateIpFault::IsGateway => format!("private IP {ip} is the gateway"),
        };
        return Err(inconsistent(path, reason));
    }
    Ok(())
}

/// IPv4 prefixes: inside the subnet, clear of the private IPs, the gateway and each other.
pub(crate) fn prefixes(
    path: &str,
    prefixes: &[Ipv4Network],
    cidr: Ipv4Network,
    gw: Ipv4Addr,
    private_ips: &[Ipv4Addr],
) -> Result<(), DiscoverError> {
    for (i, n) in prefixes.iter().enumerate() {
        let site = PrefixSite {
            cidr: Some(cidr),
            gateway: Some(gw),
            private_ips,
            earlier: prefixes.get(..i).unwrap_or_default(),
        };
        let Some(fault) = rules::prefix_faults(*n, &site).first().copied() else {
            continue;
        };
        let reason = match fault {
            PrefixFault::OutsideCidr => format!("prefix {n} is not inside the subnet {cidr}"),
            PrefixFault::OverlapsPrivateIp(ip) => format!("prefix {n} overlaps private IP {ip}"),
            PrefixFault::ContainsGateway(gw) => format!("prefix {n} contains the gateway {gw}"),
            PrefixFault::OverlapsPrefix(o) => format!("prefix {n} overlaps prefix {o}"),
        };
        return Err(inconsistent(path, reason));
    }
    Ok(())
}

/// IPv6 addresses are global unicast (never `::`) and inside the IPv6 subnet.
pub(crate) fn ipv6(
    path: &str,
    ips: &[Ipv6Addr],
    net: Option<Ipv6Network>,
) -> Result<(), DiscoverError> {
    if let Some(ip) = ips
        .iter()
        .find(|ip| !rules::ipv6_global(**ip) || ip.is_unspecified())
    {
        return Err(inconsistent(
            path,
            format!("IPv6 address {ip} is not a global unicast address"),
        ));
    }
    if let Some(net) = net {
        if let Some(ip) = ips.iter().find(|ip| !net.contains(**ip)) {
            return Err(inconsistent(
                path,
                format!("IPv6 address {ip} is outside the IPv6 subnet {net}"),
            ));
        }
    }
    Ok(())
}

/// The IPv6 gateway is link-local or inside the IPv6 subnet.
pub(crate) fn ipv6_gateway(
    path: &str,
    gw: Ipv6Addr,
    net: Ipv6Network,
) -> Result<(), DiscoverError> {
    if rules::ipv6_gateway_usable(gw, Some(net)) {
        Ok(())
    } else {
        Err(inconsistent(
            path,
            format!("the IPv6 gateway {gw} is neither link-local nor inside the IPv6 subnet {net}"),
        ))
    }
}

/// IPv6 prefixes: inside the IPv6 subnet, clear of its addresses, its gateway and each other.
pub(crate) fn ipv6_prefixes(
    path: &str,
    prefixes: &[Ipv6Network],
    net: Ipv6Network,
    ips: &[Ipv6Addr],
    gw: Ipv6Addr,
) -> Result<(), DiscoverError> {
    for (i, n) in prefixes.iter().enumerate() {
        let reason = if !net.contains(n.network()) || n.prefix() < net.prefix() {
            format!("prefix {n} is not inside the IPv6 subnet {net}")
        } else if let Some(ip) = ips.iter().find(|ip| n.contains(**ip)) {
            format!("prefix {n} overlaps IPv6 address {ip}")
        } else if n.contains(gw) {
            format!("prefix {n} contains the IPv6 gateway {gw}")
        } else if let Some(o) = prefixes
            .get(..i)
            .unwrap_or_default()
            .iter()
            .find(|o| o.overlaps(*n))
        {
            format!("prefix {n} overlaps prefix {o}")
        } else {
            continue;
        };
        return Err(inconsistent(path, reason));
    }
    Ok(())
}

/// Each EIP maps to one of the ENI's private IPs, and no two to the same one (nat mode).
pub(crate) fn eips(
    path: &str,
    eips: &[NatEip],
    private_ips: &[Ipv4Addr],
) -> Result<(), DiscoverError> {
    for (i, e) in eips.iter().enumerate() {
        if !private_ips.contains(&e.private_ip) {
            return Err(inconsistent(
                path,
                format!(
                    "the EIP {} maps to {}, which is not a private IP of this ENI",
                    e.address, e.private_ip
                ),
            ));
        }
        let earlier = eips.get(..i).unwrap_or_default();
        if let Some(o) = earlier.iter().find(|o| o.private_ip == e.private_ip) {
            return Err(inconsistent(
                path,
                format!(
                    "the EIPs {} and {} both map to the private IP {}",
                    o.address, e.address, e.private_ip
                ),
            ));
        }
    }
    Ok(())
}
