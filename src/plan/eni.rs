//! What one ENI contributes to the plan: its addresses, its uplinks (tables, routes, sources),
//! the lookups that verify its sources, and its sysctls.

use std::net::IpAddr;

use ipnetwork::{IpNetwork, Ipv4Network};

use super::aggregate::aggregate;
use super::routes::{default_route, host, link_route, v4net};
use super::{Desired, EniPlan, SourceLookup, Uplink};
use crate::model::{Address, Eni, Family, Iface, Knob, Route, Routing, Sysctl};

/// Add ENI `e`, found (or not) as `iface`, to the plan.
pub(super) fn plan_eni(d: &mut Desired, r: &Routing, e: &Eni, iface: &Iface, found: bool) {
    d.links_up.push(iface.clone());
    d.addresses.extend(addresses(e, iface));
    let (uplinks, routes) = uplinks(e, iface);
    d.checks.extend(source_lookups(e, iface, &uplinks));
    let mut tables: Vec<u32> = uplinks.iter().map(|u| u.table).collect();
    tables.dedup();
    d.enis.push(EniPlan {
        name: e.name.clone(),
        mode: e.mode,
        iface: iface.clone(),
        found,
        tables,
    });
    d.uplinks.extend(uplinks);
    d.routes.extend(routes);
    d.sysctls.extend(sysctls(r, iface));
}

/// The addresses the OS holds: the primary private IP first (so it becomes the primary
/// address), then the other private IPs, the OS-visible EIPs and the IPv6 addresses.
fn addresses(e: &Eni, iface: &Iface) -> Vec<Address> {
    let addr = |addr: IpAddr, prefix_len: u8, noprefixroute: bool, nodad: bool| Address {
        iface: iface.clone(),
        addr,
        prefix_len,
        noprefixroute,
        nodad,
    };
    let mut out = Vec::new();
    if let Some(cidr) = e.cidr.filter(|_| e.mode.uses_private_ips()) {
        out.extend(
            (e.private_ips.iter()).map(|ip| addr(IpAddr::V4(*ip), cidr.prefix(), false, false)),
        );
    }
    if e.mode.eip_in_os() {
        out.extend((e.eips.iter()).map(|x| addr(IpAddr::V4(x.address), x.prefix, true, false)));
    }
    if let Some(cidr) = e.ipv6_cidr {
        out.extend((e.ipv6.iter()).map(|ip| addr(IpAddr::V6(*ip), cidr.prefix(), false, true)));
    }
    out
}

/// The on-link subnets of an IPv4 uplink: the ENI's own (first uplink) and its EIPs' subnets,
/// and the gateway as a host route when no subnet holds it.
fn subnets(e: &Eni, own: bool, gw: std::net::Ipv4Addr) -> Vec<Ipv4Network> {
    let mut subnets: Vec<Ipv4Network> = Vec::new();
    if own {
        subnets.extend(e.cidr);
    }
    let eip_nets = (e.eips.iter())
        .filter(|x| x.gateway == Some(gw) && x.prefix < 32)
        .filter_map(|x| Ipv4Network::new(x.address, x.prefix).ok())
        .filter_map(|n| Ipv4Network::new(n.network(), n.prefix()).ok());
    for n in eip_nets {
        if !subnets.contains(&n) {
            subnets.push(n);
        }
    }
    if !subnets.iter().any(|n| n.contains(gw)) {
        subnets.push(Ipv4Network::from(gw));
    }
    subnets
}

/// The uplinks of one ENI with their tables' routes, in the tables the validator allocated.
fn uplinks(e: &Eni, iface: &Iface) -> (Vec<Uplink>, Vec<Route>) {
    let mut uplinks = Vec::new();
    let mut routes = Vec::new();
    for (j, u) in e.uplinks.iter().enumerate() {
        let (gw, table) = (u.gateway, u.table);
        let own = j == 0 && e.mode.needs_subnet();
        for n in subnets(e, own, gw) {
            routes.push(link_route(table, v4net(n), iface));
        }
        routes.push(default_route(table, IpAddr::V4(gw), iface, 0, None));
        let mut sources: Vec<IpNetwork> = Vec::new();
        if own {
            sources.extend(e.private_ips.iter().map(|ip| host(IpAddr::V4(*ip))));
            sources.extend(e.prefixes.iter().map(|p| v4net(*p)));
        }
        if e.mode.eip_in_os() {
            let eips = e.eips.iter().filter(|x| x.gateway == Some(gw));
            sources.extend(eips.map(|x| host(IpAddr::V4(x.address))));
        }
        uplinks.push(Uplink {
            eni: e.name.clone(),
            family: Family::V4,
            iface: iface.clone(),
            gateway: IpAddr::V4(gw),
            table,
            sources: aggregate(&sources),
        });
    }
    // IPv6 shares the ENI's first table number (IPv6 tables are a separate namespace).
    let v6_sources = !(e.ipv6.is_empty() && e.ipv6_prefixes.is_empty());
    if let (Some(cidr), Some(gw), true) = (e.ipv6_cidr, e.ipv6_gateway, v6_sources) {
        let table = e.first_table;
        routes.push(link_route(table, IpNetwork::V6(cidr), iface));
        routes.push(default_route(table, IpAddr::V6(gw), iface, 0, None));
        let mut sources: Vec<IpNetwork> = e.ipv6.iter().map(|a| host(IpAddr::V6(*a))).collect();
        sources.extend(e.ipv6_prefixes.iter().map(|p| IpNetwork::V6(*p)));
        uplinks.push(Uplink {
            eni: e.name.clone(),
            family: Family::V6,
            iface: iface.clone(),
            gateway: IpAddr::V6(gw),
            table,
            sources: aggregate(&sources),
        });
    }
    (uplinks, routes)
}

/// Verification: every address the OS holds as a source must leave through its uplink.
fn source_lookups(e: &Eni, iface: &Iface, uplinks: &[Uplink]) -> Vec<SourceLookup> {
    let mut out = Vec::new();
    for u in uplinks {
        let local: Vec<IpAddr> = match u.family {
            Family::V4 => {
                let mut v: Vec<IpAddr> = Vec::new();
                if e.mode.uses_private_ips() && e.gateway.map(IpAddr::V4) == Some(u.gateway) {
                    v.extend(e.private_ips.iter().map(|a| IpAddr::V4(*a)));
                }
                if e.mode.eip_in_os() {
                    let eips = e.eips.iter();
                    v.extend(
                        eips.filter(|x| x.gateway.map(IpAddr::V4) == Some(u.gateway))
                            .map(|x| IpAddr::V4(x.address)),
                    );
                }
                v
            }
            Family::V6 => e.ipv6.iter().map(|a| IpAddr::V6(*a)).collect(),
        };
        out.extend(local.into_iter().map(|source| SourceLookup {
            eni: e.name.clone(),
            source,
            iface: iface.clone(),
            gateway: u.gateway,
        }));
    }
    out
}

/// The sysctls of a managed ENI: rp_filter and ARP isolation.
fn sysctls(r: &Routing, iface: &Iface) -> Vec<Sysctl> {
    let mut out = Vec::new();
    if let Some(v) = r.rp_filter.sysctl_value() {
        out.push(Sysctl::conf(Family::V4, &iface.name, Knob::RpFilter, v));
    }
    if r.arp_isolation {
        out.push(Sysctl::conf(Family::V4, &iface.name, Knob::ArpIgnore, 1));
        out.push(Sysctl::conf(Family::V4, &iface.name, Knob::ArpAnnounce, 2));
    }
    out
}
