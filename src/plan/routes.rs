//! The routes of eniroute's tables, built the way the kernel reports them back (so that a
//! converged kernel compares equal to the plan).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::{IpNetwork, Ipv4Network};

use crate::model::layout::IPV6_DEFAULT_METRIC;
use crate::model::{Iface, NextHop, Route, Scope};

pub(super) fn host(ip: IpAddr) -> IpNetwork {
    IpNetwork::from(ip)
}

pub(super) fn v4net(n: Ipv4Network) -> IpNetwork {
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

pub(super) fn link_route(table: u32, dst: IpNetwork, iface: &Iface) -> Route {
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

pub(super) fn default_route(
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
