//! The only module that talks rtnetlink: dumps, changes, route lookups and namespace entry.
//!
//! One [`Kernel`] is one netlink connection (with strict checking) in one network namespace;
//! it must be created on a thread that has entered that namespace ([`netns::run_in_netns`]).
//! Dumps are serialized on the connection; changes may be in flight concurrently.

pub mod netns;
pub mod sim;

use std::collections::HashMap;
use std::net::IpAddr;

use futures::stream::{self, StreamExt};
use ipnetwork::IpNetwork;
use macaddr::MacAddr6;
use netlink_packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressProtocol,
    AddressScope,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteNextHop,
    RouteNextHopFlags, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use tokio::sync::Mutex;

use crate::plan::HostLink;
use crate::reconcile::Change;
use crate::state::{Address, Family, Iface, NextHop, Route, Rule, Scope};

/// How many change requests may be in flight at once on the connection.
pub const MAX_IN_FLIGHT: usize = 64;

/// Errors of the kernel layer: each names the object and the errno.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("cannot open a netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("{what}: {source}")]
    Request {
        what: String,
        source: std::io::Error,
    },
    #[error("{what}: the netlink connection failed")]
    Connection { what: String },
    #[error("{what}: unexpected answer from the kernel")]
    Unexpected { what: String },
}

impl KernelError {
    /// The errno of a refused request, if that is what this is.
    pub fn errno(&self) -> Option<i32> {
        match self {
            KernelError::Request { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// What the kernel holds that matters to eniroute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub links: Vec<HostLink>,
    /// Addresses carrying eniroute's protocol tag.
    pub addresses: Vec<Address>,
    /// Every other address (DHCP, static...): never changed.
    pub foreign_addresses: Vec<Address>,
    pub routes: Vec<Route>,
    pub foreign_routes: Vec<Route>,
    pub rules: Vec<Rule>,
    pub foreign_rules: Vec<Rule>,
}

/// The answer of a route lookup (RTM_GETROUTE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub oif: Option<u32>,
    pub gateway: Option<IpAddr>,
    pub table: Option<u32>,
}

/// A netlink connection in the current thread's network namespace.
pub struct Kernel {
    handle: rtnetlink::Handle,
    /// Held for the duration of each dump: two dumps at once on one socket fail with EBUSY.
    dump_lock: Mutex<()>,
    proto: u8,
}

impl Kernel {
    /// Open the connection; must run inside a tokio runtime on a namespace thread.
    pub fn connect(proto: u8) -> Result<Kernel, KernelError> {
        let (conn, handle, _) =
            rtnetlink::new_connection_with_strict_check().map_err(KernelError::Socket)?;
        tokio::spawn(conn);
        Ok(Kernel {
            handle,
            dump_lock: Mutex::new(()),
            proto,
        })
    }

    /// Send one request and collect its answers; a NACK becomes an error naming `what`.
    async fn request(
        &self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: impl FnOnce() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>, KernelError> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = flags;
        let mut handle = self.handle.clone();
        let mut responses = match handle.request(req) {
            Ok(r) => r,
            Err(_) => return Err(KernelError::Connection { what: what() }),
        };
        let mut out = Vec::new();
        while let Some(msg) = responses.next().await {
            match msg.payload {
                NetlinkPayload::InnerMessage(m) => out.push(m),
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    return Err(KernelError::Request {
                        what: what(),
                        source: e.to_io(),
                    })
                }
                _ => {}
            }
        }
        Ok(out)
    }

    async fn dump(
        &self,
        msg: RouteNetlinkMessage,
        what: &str,
    ) -> Result<Vec<RouteNetlinkMessage>, KernelError> {
        let _guard = self.dump_lock.lock().await;
        self.request(msg, NLM_F_REQUEST | NLM_F_DUMP, || {
            format!("dumping {what}")
        })
        .await
    }

    /// Every link: name, index, MAC, admin state.
    pub async fn links(&self) -> Result<Vec<HostLink>, KernelError> {
        let msgs = self
            .dump(
                RouteNetlinkMessage::GetLink(LinkMessage::default()),
                "links",
            )
            .await?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(host_link(&l)),
                _ => None,
            })
            .collect())
    }

    /// Dump addresses, routes (every table) and rules, IPv4 and IPv6 at once (one dump each),
    /// split by ownership. `links` is this run's link dump, reused rather than dumped again.
    pub async fn observe(&self, links: Vec<HostLink>) -> Result<Observed, KernelError> {
        let names: HashMap<u32, String> = links.iter().map(|l| (l.index, l.name.clone())).collect();
        let iface = |index: u32| Iface {
            name: names
                .get(&index)
                .cloned()
                .unwrap_or_else(|| format!("if{index}")),
            index,
        };
        let mut o = Observed {
            links: Vec::new(),
            ..Default::default()
        };
        let addrs = self
            .dump(
                RouteNetlinkMessage::GetAddress(AddressMessage::default()),
                "addresses",
            )
            .await?;
        for m in addrs {
            if let RouteNetlinkMessage::NewAddress(a) = m {
                if let Some((addr, proto)) = parse_address(&a, &iface) {
                    if proto == self.proto {
                        o.addresses.push(addr);
                    } else {
                        o.foreign_addresses.push(addr);
                    }
                }
            }
        }
        // Family unspecified: the kernel dumps IPv4 and IPv6 in one go.
        let routes = self
            .dump(
                RouteNetlinkMessage::GetRoute(RouteMessage::default()),
                "routes",
            )
            .await?;
        for m in routes {
            if let RouteNetlinkMessage::NewRoute(r) = m {
                if let Some((route, proto)) = parse_route(&r, &iface) {
                    if proto == self.proto {
                        o.routes.push(route);
                    } else {
                        o.foreign_routes.push(route);
                    }
                }
            }
        }
        let rules = self
            .dump(
                RouteNetlinkMessage::GetRule(RuleMessage::default()),
                "rules",
            )
            .await?;
        for m in rules {
            if let RouteNetlinkMessage::NewRule(r) = m {
                if let Some((rule, proto)) = parse_rule(&r) {
                    if proto == self.proto {
                        o.rules.push(rule);
                    } else {
                        o.foreign_rules.push(rule);
                    }
                }
            }
        }
        o.links = links;
        Ok(o)
    }

    /// Make one change.
    pub async fn apply(&self, change: &Change) -> Result<(), KernelError> {
        let ack = NLM_F_REQUEST | NLM_F_ACK;
        let what = || change.to_string();
        match change {
            Change::LinkUp(i) | Change::LinkDown(i) => {
                let mut m = LinkMessage::default();
                m.header.index = i.index;
                m.header.change_mask = LinkFlags::Up;
                if matches!(change, Change::LinkUp(_)) {
                    m.header.flags = LinkFlags::Up;
                }
                self.request(RouteNetlinkMessage::SetLink(m), ack, what)
                    .await?;
            }
            Change::AddAddress(a) => {
                let m = address_message(a, self.proto);
                self.request(
                    RouteNetlinkMessage::NewAddress(m),
                    ack | NLM_F_CREATE | NLM_F_EXCL,
                    what,
                )
                .await?;
            }
            Change::DelAddress(a) => {
                let m = address_message(a, self.proto);
                self.request(RouteNetlinkMessage::DelAddress(m), ack, what)
                    .await?;
            }
            Change::AddRoute(r) => {
                let m = route_message(r, self.proto);
                self.request(
                    RouteNetlinkMessage::NewRoute(m),
                    ack | NLM_F_CREATE | NLM_F_EXCL,
                    what,
                )
                .await?;
            }
            Change::ReplaceRoute { new, .. } => {
                let m = route_message(new, self.proto);
                self.request(
                    RouteNetlinkMessage::NewRoute(m),
                    ack | NLM_F_CREATE | NLM_F_REPLACE,
                    what,
                )
                .await?;
            }
            Change::DelRoute(r) => {
                let m = route_message(r, self.proto);
                self.request(RouteNetlinkMessage::DelRoute(m), ack, what)
                    .await?;
            }
            Change::AddRule(r) => {
                let m = rule_message(r, self.proto);
                self.request(
                    RouteNetlinkMessage::NewRule(m),
                    ack | NLM_F_CREATE | NLM_F_EXCL,
                    what,
                )
                .await?;
            }
            Change::DelRule(r) => {
                let m = rule_message(r, self.proto);
                self.request(RouteNetlinkMessage::DelRule(m), ack, what)
                    .await?;
            }
        }
        Ok(())
    }

    /// Make a batch of independent changes concurrently. Returns, in input order, which
    /// succeeded, and the first error (after every request in flight has finished).
    pub async fn apply_batch(&self, changes: &[Change]) -> (Vec<bool>, Option<KernelError>) {
        let results: Vec<(usize, Result<(), KernelError>)> =
            stream::iter(changes.iter().enumerate())
                .map(|(i, c)| async move { (i, self.apply(c).await) })
                .buffer_unordered(MAX_IN_FLIGHT)
                .collect()
                .await;
        let mut done = vec![false; changes.len()];
        let mut first: Option<(usize, KernelError)> = None;
        for (i, r) in results {
            match r {
                Ok(()) => done[i] = true,
                Err(e) => {
                    if first.as_ref().map(|(j, _)| i < *j).unwrap_or(true) {
                        first = Some((i, e));
                    }
                }
            }
        }
        (done, first.map(|(_, e)| e))
    }

    /// Ask the kernel which way a packet from `src` to `dst` would leave (`ip route get`).
    pub async fn route_get(&self, src: Option<IpAddr>, dst: IpAddr) -> Result<Lookup, KernelError> {
        let mut m = RouteMessage::default();
        m.header.address_family = match dst {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        m.header.destination_prefix_length = if dst.is_ipv4() { 32 } else { 128 };
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(dst)));
        if let Some(s) = src {
            m.header.source_prefix_length = if s.is_ipv4() { 32 } else { 128 };
            m.attributes
                .push(RouteAttribute::Source(RouteAddress::from(s)));
        }
        let what = || match src {
            Some(s) => format!("route lookup from {s} to {dst}"),
            None => format!("route lookup to {dst}"),
        };
        let answers = self
            .request(RouteNetlinkMessage::GetRoute(m), NLM_F_REQUEST, what)
            .await?;
        for a in answers {
            if let RouteNetlinkMessage::NewRoute(r) = a {
                let mut l = Lookup {
                    oif: None,
                    gateway: None,
                    table: Some(r.header.table as u32),
                };
                for attr in &r.attributes {
                    match attr {
                        RouteAttribute::Oif(i) => l.oif = Some(*i),
                        RouteAttribute::Gateway(g) => l.gateway = route_ip(g),
                        RouteAttribute::Table(t) => l.table = Some(*t),
                        _ => {}
                    }
                }
                return Ok(l);
            }
        }
        Err(KernelError::Unexpected { what: what() })
    }
}

fn host_link(l: &LinkMessage) -> HostLink {
    let mut name = String::new();
    let mut mac = None;
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => name = n.clone(),
            LinkAttribute::Address(b) if b.len() == 6 => {
                mac = Some(MacAddr6::new(b[0], b[1], b[2], b[3], b[4], b[5]))
            }
            _ => {}
        }
    }
    HostLink {
        name,
        index: l.header.index,
        mac,
        up: l.header.flags.contains(LinkFlags::Up),
    }
}

fn family_of(f: AddressFamily) -> Option<Family> {
    match f {
        AddressFamily::Inet => Some(Family::V4),
        AddressFamily::Inet6 => Some(Family::V6),
        _ => None,
    }
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

fn unspecified(f: Family) -> IpAddr {
    match f {
        Family::V4 => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        Family::V6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

/// An address message as eniroute state, with its protocol tag (0 when untagged).
pub fn parse_address(a: &AddressMessage, iface: &impl Fn(u32) -> Iface) -> Option<(Address, u8)> {
    family_of(a.header.family)?;
    let mut local = None;
    let mut address = None;
    let mut flags = a.header.flags.bits() as u32;
    let mut proto = 0u8;
    for attr in &a.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            AddressAttribute::Flags(f) => flags = f.bits(),
            AddressAttribute::Protocol(p) => proto = u8::from(*p),
            _ => {}
        }
    }
    let addr = local.or(address)?;
    let f = AddressFlags::from_bits_retain(flags);
    Some((
        Address {
            iface: iface(a.header.index),
            addr,
            prefix_len: a.header.prefix_len,
            noprefixroute: f.contains(AddressFlags::Noprefixroute),
            nodad: f.contains(AddressFlags::Nodad),
        },
        proto,
    ))
}

fn address_message(a: &Address, proto: u8) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = match a.addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    m.header.prefix_len = a.prefix_len;
    m.header.index = a.iface.index;
    m.header.scope = AddressScope::Universe;
    let mut flags = AddressFlags::empty();
    if a.noprefixroute {
        flags |= AddressFlags::Noprefixroute;
    }
    if a.nodad {
        flags |= AddressFlags::Nodad;
        m.header.flags = AddressHeaderFlags::Nodad;
    }
    if a.addr.is_ipv4() {
        m.attributes.push(AddressAttribute::Local(a.addr));
    }
    m.attributes.push(AddressAttribute::Address(a.addr));
    if !flags.is_empty() {
        m.attributes.push(AddressAttribute::Flags(flags));
    }
    m.attributes
        .push(AddressAttribute::Protocol(AddressProtocol::from(proto)));
    m
}

/// A route message as eniroute state, with its protocol. None for non-unicast routes.
pub fn parse_route(r: &RouteMessage, iface: &impl Fn(u32) -> Iface) -> Option<(Route, u8)> {
    let family = family_of(r.header.address_family)?;
    if r.header.kind != RouteType::Unicast {
        return None;
    }
    let mut dst = None;
    let mut table = r.header.table as u32;
    let mut metric = 0;
    let mut src = None;
    let mut gateway = None;
    let mut oif = None;
    let mut multipath = None;
    for a in &r.attributes {
        match a {
            RouteAttribute::Destination(d) => dst = route_ip(d),
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Priority(p) => metric = *p,
            RouteAttribute::PrefSource(s) => src = route_ip(s),
            RouteAttribute::Gateway(g) => gateway = route_ip(g),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::MultiPath(hops) => multipath = Some(hops),
            _ => {}
        }
    }
    let dst = IpNetwork::new(
        dst.unwrap_or(unspecified(family)),
        r.header.destination_prefix_length,
    )
    .ok()?;
    let nexthops = match multipath {
        Some(hops) => hops.iter().map(|h| nexthop(h, iface)).collect(),
        None => vec![NextHop {
            gateway,
            iface: iface(oif.unwrap_or(0)),
            weight: 1,
            onlink: r.header.flags.contains(RouteFlags::Onlink),
        }],
    };
    let scope = match r.header.scope {
        RouteScope::Universe => Scope::Universe,
        RouteScope::Link => Scope::Link,
        other => Scope::Other(u8::from(other)),
    };
    Some((
        Route {
            table,
            dst,
            metric,
            scope,
            src,
            nexthops,
        },
        u8::from(r.header.protocol),
    ))
}

fn nexthop(h: &RouteNextHop, iface: &impl Fn(u32) -> Iface) -> NextHop {
    let gateway = h.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(g) => route_ip(g),
        _ => None,
    });
    NextHop {
        gateway,
        iface: iface(h.interface_index),
        weight: h.hops as u16 + 1,
        onlink: h.flags.contains(RouteNextHopFlags::Onlink),
    }
}

fn route_message(r: &Route, proto: u8) -> RouteMessage {
    let mut m = RouteMessage::default();
    let h = &mut m.header;
    h.address_family = match r.family() {
        Family::V4 => AddressFamily::Inet,
        Family::V6 => AddressFamily::Inet6,
    };
    h.destination_prefix_length = r.dst.prefix();
    h.protocol = RouteProtocol::from(proto);
    h.kind = RouteType::Unicast;
    h.scope = match r.scope {
        Scope::Universe => RouteScope::Universe,
        Scope::Link => RouteScope::Link,
        Scope::Other(n) => RouteScope::from(n),
    };
    if r.table < 256 {
        h.table = r.table as u8;
    } else {
        h.table = RouteHeader::RT_TABLE_UNSPEC;
    }
    m.attributes.push(RouteAttribute::Table(r.table));
    if r.dst.prefix() > 0 {
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(r.dst.ip())));
    }
    if r.metric != 0 {
        m.attributes.push(RouteAttribute::Priority(r.metric));
    }
    if let Some(s) = r.src {
        m.attributes
            .push(RouteAttribute::PrefSource(RouteAddress::from(s)));
    }
    match r.nexthops.as_slice() {
        [nh] => {
            if let Some(g) = nh.gateway {
                m.attributes
                    .push(RouteAttribute::Gateway(RouteAddress::from(g)));
            }
            if nh.iface.index != 0 {
                m.attributes.push(RouteAttribute::Oif(nh.iface.index));
            }
            if nh.onlink {
                m.header.flags |= RouteFlags::Onlink;
            }
        }
        hops => {
            let hops = hops
                .iter()
                .map(|nh| {
                    let mut h = RouteNextHop::default();
                    h.interface_index = nh.iface.index;
                    h.hops = (nh.weight.clamp(1, 256) - 1) as u8;
                    if nh.onlink {
                        h.flags |= RouteNextHopFlags::Onlink;
                    }
                    if let Some(g) = nh.gateway {
                        h.attributes
                            .push(RouteAttribute::Gateway(RouteAddress::from(g)));
                    }
                    h
                })
                .collect();
            m.attributes.push(RouteAttribute::MultiPath(hops));
        }
    }
    m
}

/// A rule message as eniroute state, with its protocol. None for rules eniroute could not
/// have made (other actions or selectors): they are foreign whatever their tag.
pub fn parse_rule(r: &RuleMessage) -> Option<(Rule, u8)> {
    let family = family_of(r.header.family)?;
    let mut rule = Rule {
        family,
        priority: 0,
        from: None,
        table: r.header.table as u32,
        suppress_prefixlength: None,
    };
    let mut proto = 0;
    let mut extra =
        r.header.action != RuleAction::ToTable || r.header.dst_len != 0 || r.header.tos != 0;
    for a in &r.attributes {
        match a {
            RuleAttribute::Priority(p) => rule.priority = *p,
            RuleAttribute::Source(s) => rule.from = IpNetwork::new(*s, r.header.src_len).ok(),
            RuleAttribute::Table(t) => rule.table = *t,
            // The kernel reports "unset" as -1.
            RuleAttribute::SuppressPrefixLen(n) if *n != u32::MAX => {
                rule.suppress_prefixlength = Some(*n)
            }
            RuleAttribute::SuppressPrefixLen(_) => {}
            RuleAttribute::Protocol(p) => proto = u8::from(*p),
            // Attributes the kernel always reports and eniroute never sets differently.
            RuleAttribute::Other(_) => {}
            _ => extra = true,
        }
    }
    // A rule with selectors or an action eniroute never sets is not eniroute's, whatever its tag.
    Some((rule, if extra { 0 } else { proto }))
}

fn rule_message(r: &Rule, proto: u8) -> RuleMessage {
    let mut m = RuleMessage::default();
    m.header.family = match r.family {
        Family::V4 => AddressFamily::Inet,
        Family::V6 => AddressFamily::Inet6,
    };
    // Never leave the action Unspec: the kernel would treat the rule as a blackhole.
    m.header.action = RuleAction::ToTable;
    m.header.table = if r.table < 256 { r.table as u8 } else { 0 };
    m.attributes.push(RuleAttribute::Table(r.table));
    m.attributes.push(RuleAttribute::Priority(r.priority));
    if let Some(from) = r.from {
        m.header.src_len = from.prefix();
        m.attributes.push(RuleAttribute::Source(from.network()));
    }
    if let Some(n) = r.suppress_prefixlength {
        m.attributes.push(RuleAttribute::SuppressPrefixLen(n));
    }
    m.attributes
        .push(RuleAttribute::Protocol(RouteProtocol::from(proto)));
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Scope;

    fn iface(i: u32) -> Iface {
        Iface {
            name: format!("eth{i}"),
            index: i,
        }
    }

    fn roundtrip(r: &Route) -> Route {
        let mut m = route_message(r, 225);
        // What the kernel reports that a request does not carry.
        m.header.kind = RouteType::Unicast;
        let (back, proto) = parse_route(&m, &iface).unwrap();
        assert_eq!(proto, 225);
        back
    }

    #[test]
    fn routes_survive_message_roundtrip() {
        let single = Route {
            table: 20002,
            dst: "0.0.0.0/0".parse().unwrap(),
            metric: 3,
            scope: Scope::Universe,
            src: Some("192.168.0.5".parse().unwrap()),
            nexthops: vec![NextHop {
                gateway: Some("192.168.0.253".parse().unwrap()),
                iface: iface(2),
                weight: 1,
                onlink: true,
            }],
        };
        assert_eq!(roundtrip(&single), single);
        let mut multi = single.clone();
        multi.src = None;
        multi.nexthops.push(NextHop {
            gateway: Some("192.168.1.253".parse().unwrap()),
            iface: iface(3),
            weight: 256,
            onlink: true,
        });
        assert_eq!(roundtrip(&multi), multi);
        let link = Route {
            table: 7,
            dst: "2001:db8::/64".parse().unwrap(),
            metric: 1024,
            scope: Scope::Universe,
            src: None,
            nexthops: vec![NextHop {
                gateway: None,
                iface: iface(2),
                weight: 1,
                onlink: false,
            }],
        };
        assert_eq!(roundtrip(&link), link);
    }

    #[test]
    fn rules_are_to_table_and_roundtrip() {
        let r = Rule {
            family: Family::V4,
            priority: 20000,
            from: Some("192.168.0.0/31".parse().unwrap()),
            table: 20001,
            suppress_prefixlength: Some(0),
        };
        let m = rule_message(&r, 225);
        assert_eq!(m.header.action, RuleAction::ToTable);
        assert_eq!(parse_rule(&m), Some((r, 225)));
    }

    #[test]
    fn foreign_shaped_rules_are_not_owned() {
        let r = Rule {
            family: Family::V4,
            priority: 20000,
            from: None,
            table: 20001,
            suppress_prefixlength: None,
        };
        let mut m = rule_message(&r, 225);
        m.attributes.push(RuleAttribute::FwMark(1));
        assert_eq!(parse_rule(&m).map(|(_, p)| p), Some(0));
    }

    #[test]
    fn addresses_roundtrip_with_flags_and_tag() {
        let a = Address {
            iface: iface(4),
            addr: "203.0.113.9".parse().unwrap(),
            prefix_len: 32,
            noprefixroute: true,
            nodad: false,
        };
        let m = address_message(&a, 225);
        assert_eq!(parse_address(&m, &iface), Some((a, 225)));
    }
}
