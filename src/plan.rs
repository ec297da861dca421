//! The planner: a pure function from a validated config and the links found on the host to the
//! desired kernel state (DESIGN §4). No kernel access here.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use ipnetwork::{IpNetwork, Ipv4Network};
use serde::Serialize;

use crate::model::layout::{self, Layer, IPV6_DEFAULT_METRIC, MAIN_TABLE};
use crate::model::{
    mac_text, Address, Config, Eni, Family, Hash, HostLink, Iface, Mode, NextHop, Route, Rule,
    Scope, Strategy, Sysctl,
};

/// One uplink: an (interface, gateway) pair with its own route table and the sources that
/// must leave through it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Uplink {
    pub eni: String,
    pub family: Family,
    pub iface: Iface,
    pub gateway: IpAddr,
    pub table: u32,
    /// The sources, merged into the fewest prefixes that cover exactly them.
    pub sources: Vec<IpNetwork>,
}

/// What verification asks the kernel for one source: a packet from `source` to the outside
/// must leave through `iface` via `gateway`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceLookup {
    pub eni: String,
    pub source: IpAddr,
    pub iface: Iface,
    pub gateway: IpAddr,
}

/// What verification asks for unbound traffic when [egress] is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EgressLookup {
    pub family: Family,
    pub strategy: Strategy,
    /// failover: the first usable via; balance: any of them.
    pub ifaces: Vec<Iface>,
}

/// An ENI whose interface was not found (or found inconsistently).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    pub eni: String,
    pub mac: Option<String>,
    pub interface: Option<String>,
    pub reason: String,
}

/// Per-ENI summary of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EniPlan {
    pub name: String,
    pub mode: Mode,
    pub iface: Iface,
    pub found: bool,
    pub tables: Vec<u32>,
}

/// The whole desired state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Desired {
    pub protocol: u8,
    pub enis: Vec<EniPlan>,
    pub uplinks: Vec<Uplink>,
    pub links_up: Vec<Iface>,
    pub addresses: Vec<Address>,
    pub routes: Vec<Route>,
    pub rules: Vec<Rule>,
    pub sysctls: Vec<Sysctl>,
    pub checks: Vec<SourceLookup>,
    pub egress_checks: Vec<EgressLookup>,
    pub missing: Vec<Missing>,
    pub notes: Vec<String>,
}

impl Desired {
    /// Every table number the plan uses.
    pub fn tables(&self) -> BTreeSet<u32> {
        self.routes.iter().map(|r| r.table).collect()
    }
}

/// Find each ENI's link. `None` = no host view (render): use the config's names.
fn resolve(cfg: &Config, links: Option<&[HostLink]>) -> (Vec<(Iface, bool)>, Vec<Missing>) {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for e in &cfg.enis {
        let fallback = Iface {
            name: e.fallback_ifname().to_string(),
            index: 0,
        };
        let Some(links) = links else {
            out.push((fallback, false));
            continue;
        };
        let by_mac: Vec<&HostLink> = match e.mac {
            Some(m) => links.iter().filter(|l| l.mac == Some(m)).collect(),
            None => Vec::new(),
        };
        let by_name = e
            .interface
            .as_ref()
            .and_then(|n| links.iter().find(|l| &l.name == n));
        let found = match (e.mac, &e.interface) {
            (Some(_), Some(name)) => {
                match (by_mac.iter().find(|l| &l.name == name), by_mac.first()) {
                    (Some(l), _) => Ok(*l),
                    (None, Some(other)) => Err(format!(
                        "mac {} is on interface {}, not {name}",
                        e.mac.map(mac_text).unwrap_or_default(),
                        other.name
                    )),
                    (None, None) => Err(match by_name {
                        Some(l) => format!(
                            "interface {name} has mac {}, not {}",
                            l.mac.map(mac_text).unwrap_or("none".into()),
                            e.mac.map(mac_text).unwrap_or_default()
                        ),
                        None => "no interface has that mac or name".to_string(),
                    }),
                }
            }
            (Some(_), None) => by_mac
                .first()
                .copied()
                .ok_or_else(|| "no interface has that mac".to_string()),
            (None, _) => by_name.ok_or_else(|| "no interface has that name".to_string()),
        };
        match found {
            Ok(l) => out.push((
                Iface {
                    name: l.name.clone(),
                    index: l.index,
                },
                true,
            )),
            Err(reason) => {
                missing.push(Missing {
                    eni: e.name.clone(),
                    mac: e.mac.map(mac_text),
                    interface: e.interface.clone(),
                    reason,
                });
                out.push((fallback, false));
            }
        }
    }
    (out, missing)
}

/// Merge addresses into the fewest prefixes covering exactly them (never a non-source).
pub fn aggregate(sources: &[IpNetwork]) -> Vec<IpNetwork> {
    let nets: Vec<IpNet> = sources
        .iter()
        .filter_map(|n| match n {
            IpNetwork::V4(n) => Ipv4Net::new(n.network(), n.prefix()).ok().map(IpNet::V4),
            IpNetwork::V6(n) => Ipv6Net::new(n.network(), n.prefix()).ok().map(IpNet::V6),
        })
        .collect();
    IpNet::aggregate(&nets)
        .into_iter()
        .filter_map(|n| IpNetwork::new(n.network(), n.prefix_len()).ok())
        .collect()
}

fn host(ip: IpAddr) -> IpNetwork {
    IpNetwork::from(ip)
}

fn v4net(n: Ipv4Network) -> IpNetwork {
    IpNetwork::V4(n)
}

/// The default route's destination (0.0.0.0/0 or ::/0) of the gateway's family.
fn default_dst(gateway: IpAddr) -> IpNetwork {
    let any = match gateway {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    // A /0 always exists; the fallback only spares an unwrap.
    IpNetwork::new(any, 0).unwrap_or(IpNetwork::from(any))
}

fn single(gateway: Option<IpAddr>, iface: &Iface, onlink: bool) -> Vec<NextHop> {
    vec![NextHop {
        gateway,
        iface: iface.clone(),
        weight: 1,
        onlink,
    }]
}

fn link_route(table: u32, dst: IpNetwork, iface: &Iface) -> Route {
    // IPv6 routes have no scope of their own and get metric 1024 when none is given: say so,
    // so that the desired route equals what the kernel reports back.
    let (metric, scope) = match dst {
        IpNetwork::V4(_) => (0, Scope::Link),
        IpNetwork::V6(_) => (IPV6_DEFAULT_METRIC, Scope::Universe),
    };
    Route {
        table,
        dst,
        metric,
        scope,
        src: None,
        nexthops: single(None, iface, false),
    }
}

fn default_route(
    table: u32,
    gateway: IpAddr,
    iface: &Iface,
    metric: u32,
    src: Option<IpAddr>,
) -> Route {
    let (dst, onlink, metric) = match gateway {
        IpAddr::V4(_) => (default_dst(gateway), true, metric),
        IpAddr::V6(_) if metric == 0 => (default_dst(gateway), false, IPV6_DEFAULT_METRIC),
        IpAddr::V6(_) => (default_dst(gateway), false, metric),
    };
    Route {
        table,
        dst,
        metric,
        scope: Scope::Universe,
        src,
        nexthops: single(Some(gateway), iface, onlink),
    }
}

/// The uplinks of one ENI with their tables' routes.
fn eni_uplinks(e: &Eni, iface: &Iface) -> (Vec<Uplink>, Vec<Route>) {
    let mut uplinks = Vec::new();
    let mut routes = Vec::new();
    for (j, u) in e.uplinks.iter().enumerate() {
        let (gw, table) = (u.gateway, u.table);
        let own = j == 0 && e.mode.needs_subnet();
        let eips: Vec<_> = e.eips.iter().filter(|x| x.gateway == Some(gw)).collect();
        // On-link subnets of this uplink.
        let mut subnets: Vec<Ipv4Network> = Vec::new();
        if own {
            subnets.extend(e.cidr);
        }
        for x in &eips {
            if x.prefix < 32 {
                if let Ok(n) = Ipv4Network::new(x.address, x.prefix) {
                    if let Ok(n) = Ipv4Network::new(n.network(), n.prefix()) {
                        if !subnets.contains(&n) {
                            subnets.push(n);
                        }
                    }
                }
            }
        }
        if !subnets.iter().any(|n| n.contains(gw)) {
            subnets.push(Ipv4Network::from(gw));
        }
        for n in &subnets {
            routes.push(link_route(table, v4net(*n), iface));
        }
        routes.push(default_route(table, IpAddr::V4(gw), iface, 0, None));

        let mut sources: Vec<IpNetwork> = Vec::new();
        if own {
            sources.extend(e.private_ips.iter().map(|ip| host(IpAddr::V4(*ip))));
            sources.extend(e.prefixes.iter().map(|p| v4net(*p)));
        }
        if e.mode.eip_in_os() {
            sources.extend(eips.iter().map(|x| host(IpAddr::V4(x.address))));
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
    if let (Some(cidr), Some(gw)) = (e.ipv6_cidr, e.ipv6_gateway) {
        let table = e.first_table;
        if !e.ipv6.is_empty() {
            routes.push(link_route(table, IpNetwork::V6(cidr), iface));
            routes.push(default_route(table, IpAddr::V6(gw), iface, 0, None));
            let sources: Vec<IpNetwork> = e.ipv6.iter().map(|a| host(IpAddr::V6(*a))).collect();
            uplinks.push(Uplink {
                eni: e.name.clone(),
                family: Family::V6,
                iface: iface.clone(),
                gateway: IpAddr::V6(gw),
                table,
                sources: aggregate(&sources),
            });
        }
    }
    (uplinks, routes)
}

/// Compute the desired state. `links` is what the host has (`None`: no host view; the
/// config's interface names are used and a note says so).
pub fn desired(cfg: &Config, links: Option<&[HostLink]>) -> Desired {
    let r = &cfg.routing;
    let (ifaces, missing) = resolve(cfg, links);
    let mut notes = Vec::new();
    if links.is_none() {
        notes.push(
            "no host view: interface names are the config's (`interface`, else `name`)".to_string(),
        );
    } else if !missing.is_empty() {
        notes.push(format!(
            "{} ENI(s) not found on the host: their objects use the config's interface names",
            missing.len()
        ));
    }

    let mut d = Desired {
        protocol: r.protocol,
        enis: Vec::new(),
        uplinks: Vec::new(),
        links_up: Vec::new(),
        addresses: Vec::new(),
        routes: Vec::new(),
        rules: Vec::new(),
        sysctls: Vec::new(),
        checks: Vec::new(),
        egress_checks: Vec::new(),
        missing,
        notes,
    };

    for (e, (iface, found)) in cfg.enis.iter().zip(&ifaces) {
        d.links_up.push(iface.clone());
        // Addresses: the primary private IP first, so it becomes the primary address.
        if e.mode.uses_private_ips() {
            if let Some(cidr) = e.cidr {
                for ip in &e.private_ips {
                    d.addresses.push(Address {
                        iface: iface.clone(),
                        addr: IpAddr::V4(*ip),
                        prefix_len: cidr.prefix(),
                        noprefixroute: false,
                        nodad: false,
                    });
                }
            }
        }
        if e.mode.eip_in_os() {
            for x in &e.eips {
                d.addresses.push(Address {
                    iface: iface.clone(),
                    addr: IpAddr::V4(x.address),
                    prefix_len: x.prefix,
                    noprefixroute: true,
                    nodad: false,
                });
            }
        }
        if let Some(cidr) = e.ipv6_cidr {
            for ip in &e.ipv6 {
                d.addresses.push(Address {
                    iface: iface.clone(),
                    addr: IpAddr::V6(*ip),
                    prefix_len: cidr.prefix(),
                    noprefixroute: false,
                    nodad: true,
                });
            }
        }

        let (uplinks, routes) = eni_uplinks(e, iface);
        // Verification: every address the OS holds as a source.
        for u in &uplinks {
            let local: Vec<IpAddr> = match u.family {
                Family::V4 => {
                    let mut v: Vec<IpAddr> = Vec::new();
                    if e.mode.uses_private_ips()
                        && u.gateway == IpAddr::V4(e.gateway.unwrap_or(Ipv4Addr::UNSPECIFIED))
                    {
                        v.extend(e.private_ips.iter().map(|a| IpAddr::V4(*a)));
                    }
                    if e.mode.eip_in_os() {
                        v.extend(
                            e.eips
                                .iter()
                                .filter(|x| x.gateway.map(IpAddr::V4) == Some(u.gateway))
                                .map(|x| IpAddr::V4(x.address)),
                        );
                    }
                    v
                }
                Family::V6 => e.ipv6.iter().map(|a| IpAddr::V6(*a)).collect(),
            };
            for source in local {
                d.checks.push(SourceLookup {
                    eni: e.name.clone(),
                    source,
                    iface: iface.clone(),
                    gateway: u.gateway,
                });
            }
        }
        let mut tables: Vec<u32> = uplinks.iter().map(|u| u.table).collect();
        tables.dedup();
        d.enis.push(EniPlan {
            name: e.name.clone(),
            mode: e.mode,
            iface: iface.clone(),
            found: *found,
            tables,
        });
        d.uplinks.extend(uplinks);
        d.routes.extend(routes);

        // Sysctls per managed ENI.
        if let Some(v) = r.rp_filter.sysctl_value() {
            d.sysctls
                .push(Sysctl::conf(Family::V4, &iface.name, "rp_filter", v));
        }
        if r.arp_isolation {
            d.sysctls
                .push(Sysctl::conf(Family::V4, &iface.name, "arp_ignore", 1));
            d.sysctls
                .push(Sysctl::conf(Family::V4, &iface.name, "arp_announce", 2));
        }
    }

    // Egress.
    let egress_table = layout::egress_table(r.table_base);
    if let Some(eg) = &cfg.egress {
        for family in [Family::V4, Family::V6] {
            let mut hops: Vec<(Iface, IpAddr, u16, Option<IpAddr>)> = Vec::new();
            for v in &eg.via {
                let Some(k) = cfg.enis.iter().position(|e| e.name == v.eni) else {
                    continue;
                };
                let e = &cfg.enis[k];
                let iface = &ifaces[k].0;
                // A source EIP leaves through the uplink of its own gateway (DESIGN §4).
                let eip_gw = v.source.and_then(|s| {
                    e.eips
                        .iter()
                        .find(|x| IpAddr::V4(x.address) == s)
                        .and_then(|x| x.gateway)
                });
                let gw = match family {
                    Family::V4 => eip_gw
                        .or_else(|| e.uplink_gateways().first().copied())
                        .map(IpAddr::V4),
                    Family::V6 => e
                        .ipv6_gateway
                        .filter(|_| !e.ipv6.is_empty())
                        .map(IpAddr::V6),
                };
                let Some(gw) = gw else { continue };
                // A nat EIP is not in the OS: originate from the private IP it maps to.
                let src = v
                    .source
                    .filter(|s| Family::of(s) == family)
                    .map(|s| match s {
                        IpAddr::V4(a) if !e.mode.eip_in_os() => e
                            .eips
                            .iter()
                            .find(|x| x.address == a)
                            .and_then(|x| x.private_ip)
                            .map(IpAddr::V4)
                            .unwrap_or(s),
                        other => other,
                    });
                hops.push((iface.clone(), gw, v.weight, src));
            }
            if hops.is_empty() {
                continue;
            }
            match eg.strategy {
                Strategy::Failover => {
                    for (i, (iface, gw, _, src)) in hops.iter().enumerate() {
                        d.routes
                            .push(default_route(egress_table, *gw, iface, i as u32 + 1, *src));
                    }
                }
                Strategy::Balance => {
                    let mut route = default_route(egress_table, hops[0].1, &hops[0].0, 0, None);
                    route.nexthops = hops
                        .iter()
                        .map(|(iface, gw, w, _)| NextHop {
                            gateway: Some(*gw),
                            iface: iface.clone(),
                            weight: *w,
                            onlink: family == Family::V4,
                        })
                        .collect();
                    d.routes.push(route);
                    let policy = match eg.hash {
                        Hash::L3 => 0,
                        Hash::L4 => 1,
                    };
                    let fam = if family == Family::V4 { "ipv4" } else { "ipv6" };
                    d.sysctls.push(Sysctl {
                        path: format!("net/{fam}/fib_multipath_hash_policy"),
                        value: policy.to_string(),
                    });
                }
            }
            for (iface, ..) in &hops {
                d.sysctls.push(Sysctl::conf(
                    family,
                    &iface.name,
                    "ignore_routes_with_linkdown",
                    1,
                ));
            }
            d.egress_checks.push(EgressLookup {
                family,
                strategy: eg.strategy,
                ifaces: hops.into_iter().map(|h| h.0).collect(),
            });
        }
    }

    // Rule layers, per family.
    let p = r.rule_priority;
    for family in [Family::V4, Family::V6] {
        let ups: Vec<&Uplink> = d.uplinks.iter().filter(|u| u.family == family).collect();
        if ups.is_empty() {
            continue;
        }
        let per_source = |layer: Layer, suppress: Option<u32>| {
            ups.iter().flat_map(move |u| {
                u.sources.iter().map(move |s| Rule {
                    family,
                    priority: layer.priority(p),
                    from: Some(*s),
                    table: u.table,
                    suppress_prefixlength: suppress,
                })
            })
        };
        let mut rules: Vec<Rule> = per_source(Layer::OwnSubnet, Some(0)).collect();
        rules.push(Rule {
            family,
            priority: Layer::Main.priority(p),
            from: None,
            table: MAIN_TABLE,
            suppress_prefixlength: Some(0),
        });
        rules.extend(per_source(Layer::Source, None));
        if d.egress_checks.iter().any(|c| c.family == family) {
            rules.push(Rule {
                family,
                priority: Layer::Egress.priority(p),
                from: None,
                table: egress_table,
                suppress_prefixlength: None,
            });
        }
        d.rules.extend(rules);
    }

    // One write per sysctl (an ENI may appear twice, e.g. ignore_routes_with_linkdown).
    let mut seen = BTreeSet::new();
    d.sysctls.retain(|s| seen.insert(s.path.clone()));
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn aggregate_merges_only_exact_siblings() {
        assert_eq!(aggregate(&[n("10.0.0.21/32"), n("10.0.0.22/32")]).len(), 2);
        assert_eq!(
            aggregate(&[n("10.0.0.20/32"), n("10.0.0.21/32")]),
            vec![n("10.0.0.20/31")]
        );
        assert_eq!(
            aggregate(&[n("10.0.0.48/28"), n("10.0.0.50/32")]),
            vec![n("10.0.0.48/28")]
        );
    }
}
