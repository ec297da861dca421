//! [egress]: where traffic that is not bound to a source leaves — failover by route priority
//! (metrics) or ECMP balance — in the egress table, with its sysctls and its lookup.

use std::net::IpAddr;

use super::routes::default_route;
use super::{Desired, EgressLookup};
use crate::model::layout;
use crate::model::{
    Config, Egress, Eni, Family, Hash, Iface, Knob, NextHop, Strategy, Sysctl, Via,
};

/// One usable via of a family.
struct Hop {
    iface: Iface,
    gateway: IpAddr,
    weight: u16,
    /// failover: originate from this address.
    src: Option<IpAddr>,
}

/// Add the egress routes, sysctls and lookups of every family with a usable via.
pub(super) fn plan_egress(d: &mut Desired, cfg: &Config, eg: &Egress, ifaces: &[(Iface, bool)]) {
    let table = layout::egress_table(cfg.routing.table_base);
    for family in [Family::V4, Family::V6] {
        let hops: Vec<Hop> = (eg.via.iter())
            .filter_map(|v| {
                let k = cfg.enis.iter().position(|e| e.name == v.eni)?;
                hop(&cfg.enis[k], &ifaces[k].0, v, family)
            })
            .collect();
        let Some(first) = hops.first() else {
            continue;
        };
        match eg.strategy {
            Strategy::Failover => {
                for (i, h) in hops.iter().enumerate() {
                    let metric = i as u32 + 1;
                    d.routes
                        .push(default_route(table, h.gateway, &h.iface, metric, h.src));
                }
            }
            Strategy::Balance => {
                let mut route = default_route(table, first.gateway, &first.iface, 0, None);
                route.nexthops = (hops.iter())
                    .map(|h| NextHop {
                        gateway: Some(h.gateway),
                        iface: h.iface.clone(),
                        // A weight means something only between hops: the kernel keeps none
                        // for a single one (and a plan with one would never converge).
                        weight: if hops.len() > 1 { h.weight } else { 1 },
                        onlink: family == Family::V4,
                    })
                    .collect();
                d.routes.push(route);
                d.sysctls.push(hash_policy(family, eg.hash));
            }
        }
        for h in &hops {
            let s = Sysctl::conf(family, &h.iface.name, Knob::IgnoreRoutesWithLinkdown, 1);
            d.sysctls.push(s);
        }
        d.egress_checks.push(EgressLookup {
            family,
            strategy: eg.strategy,
            ifaces: hops.into_iter().map(|h| h.iface).collect(),
        });
    }
}

/// The via through ENI `e` for `family`, when the ENI has a gateway of that family.
fn hop(e: &Eni, iface: &Iface, v: &Via, family: Family) -> Option<Hop> {
    // A source EIP leaves through the uplink of its own gateway (DESIGN §4).
    let eip_gw = v.source.and_then(|s| {
        (e.eips.iter())
            .find(|x| IpAddr::V4(x.address) == s)
            .and_then(|x| x.gateway)
    });
    let gateway = match family {
        Family::V4 => eip_gw
            .or_else(|| e.uplink_gateways().first().copied())
            .map(IpAddr::V4),
        Family::V6 => e
            .ipv6_gateway
            .filter(|_| !e.ipv6.is_empty())
            .map(IpAddr::V6),
    }?;
    // An EIP that is not in the OS: originate from the private IP it maps to.
    let src = (v.source)
        .filter(|s| Family::of(s) == family)
        .map(|s| match s {
            IpAddr::V4(a) if !e.mode.eip_in_os() => (e.eips.iter())
                .find(|x| x.address == a)
                .and_then(|x| x.private_ip)
                .map(IpAddr::V4)
                .unwrap_or(s),
            other => other,
        });
    Some(Hop {
        iface: iface.clone(),
        gateway,
        weight: v.weight,
        src,
    })
}

/// net.ipv{4,6}.fib_multipath_hash_policy for `hash`.
fn hash_policy(family: Family, hash: Hash) -> Sysctl {
    let policy = match hash {
        Hash::L3 => 0,
        Hash::L4 => 1,
    };
    Sysctl::global(family, Knob::FibMultipathHashPolicy, policy)
}
