//! The only module that talks to the kernel: rtnetlink (dumps, changes, route lookups, events),
//! sysctls under /proc/sys, and namespace entry. May import only `model`.
//!
//! [`Kernel`] is the seam the shell (ops) is written against; [`Netlink`] is the real client:
//! one netlink connection (with strict checking) in one network namespace, created on a thread
//! that has entered that namespace ([`netns::run_in_netns`]). Dumps are serialized on the
//! connection; changes may be in flight concurrently.

pub mod netns;
pub mod sim;
pub mod sysctl;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use futures::StreamExt;
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
use netlink_sys::{AsyncSocket, SocketAddr};
use rtnetlink::proto::ConnectionHandle;
use tokio::sync::Mutex;

use sysctl::SysctlError;

use crate::model::{
    Address, Change, Family, HostLink, Iface, NextHop, Observed, Route, Rule, Scope,
};

/// How many requests go to the kernel in one `sendmsg`.
pub const BATCH: usize = 128;

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

/// The answer of a route lookup (RTM_GETROUTE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub oif: Option<u32>,
    pub gateway: Option<IpAddr>,
    pub table: Option<u32>,
}

/// What the shell needs of the kernel. [`Netlink`] is the real one; tests of the shell use a
/// fake that holds the objects in memory.
#[allow(async_fn_in_trait)] // used with concrete types on one thread; no Send bound wanted
pub trait Kernel {
    /// Every link: name, index, MAC, admin state.
    async fn links(&self) -> Result<Vec<HostLink>, KernelError>;
    /// Addresses, routes and rules, split by ownership; `links` is this run's link dump.
    async fn observe(&self, links: Vec<HostLink>) -> Result<Observed, KernelError>;
    /// Make one change.
    async fn apply(&self, change: &Change) -> Result<(), KernelError>;
    /// Make independent changes; which succeeded (in input order) and the first error.
    async fn apply_batch(&self, changes: &[Change]) -> (Vec<bool>, Option<KernelError>);
    /// Route lookups (`ip route get`), one answer per lookup, in order.
    async fn route_get_many(
        &self,
        lookups: &[(Option<IpAddr>, IpAddr)],
    ) -> Vec<Result<Lookup, KernelError>>;
    /// Wait up to `timeout` for a link to appear or change; false when none did.
    async fn link_event(&self, timeout: Duration) -> Result<bool, KernelError>;
    /// A sysctl's value (trimmed); `path` is below /proc/sys.
    fn sysctl_read(&self, path: &str) -> Result<String, SysctlError>;
    /// Set a sysctl.
    fn sysctl_write(&self, path: &str, value: &str) -> Result<(), SysctlError>;

    /// One route lookup.
    async fn route_get(&self, src: Option<IpAddr>, dst: IpAddr) -> Result<Lookup, KernelError> {
        self.route_get_many(&[(src, dst)])
            .await
            .pop()
            .unwrap_or_else(|| {
                Err(KernelError::Unexpected {
                    what: lookup_what(src, dst),
                })
            })
    }
}

/// A netlink connection in the current thread's network namespace.
pub struct Netlink {
    handle: ConnectionHandle<RouteNetlinkMessage>,
    /// Held for the duration of each dump: two dumps at once on one socket fail with EBUSY.
    dump_lock: Mutex<()>,
    proto: u8,
    /// The link-event subscription of [`Kernel::link_event`], made on its first call.
    link_events: Mutex<Option<LinkEvents>>,
}

/// A multicast subscription to link events, ended on drop.
struct LinkEvents {
    events: futures::channel::mpsc::UnboundedReceiver<(
        NetlinkMessage<RouteNetlinkMessage>,
        SocketAddr,
    )>,
    task: tokio::task::JoinHandle<()>,
}

impl LinkEvents {
    fn subscribe() -> Result<LinkEvents, KernelError> {
        let (conn, _handle, events) =
            rtnetlink::new_multicast_connection(&[rtnetlink::MulticastGroup::Link])
                .map_err(KernelError::Socket)?;
        Ok(LinkEvents {
            events,
            task: tokio::spawn(conn),
        })
    }

    /// Wait up to `timeout` for an event, then drain the rest of its burst. False when none
    /// came (or the subscription ended: the caller then polls by dumping).
    async fn next(&mut self, timeout: Duration) -> bool {
        match tokio::time::timeout(timeout, self.events.next()).await {
            Ok(Some(_)) => {
                while let Ok(Some(_)) =
                    tokio::time::timeout(Duration::from_millis(20), self.events.next()).await
                {
                }
                true
            }
            Ok(None) => {
                tokio::time::sleep(timeout.min(Duration::from_millis(200))).await;
                false
            }
            Err(_) => false,
        }
    }
}

impl Drop for LinkEvents {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the kernel answered to one message of a batch.
type Answer = Result<Vec<RouteNetlinkMessage>, std::io::Error>;

impl Netlink {
    /// Open the connection; must run inside a tokio runtime on a namespace thread. Strict
    /// checking makes the kernel honour dump filters and reject attributes it does not know;
    /// forwarded acks let a batch tell each message's success from its neighbours'.
    pub fn connect(proto: u8) -> Result<Netlink, KernelError> {
        let (mut conn, handle, _) = rtnetlink::proto::new_connection::<RouteNetlinkMessage>(
            rtnetlink::sys::protocols::NETLINK_ROUTE,
        )
        .map_err(KernelError::Socket)?;
        conn.socket_mut()
            .socket_mut()
            .set_netlink_get_strict_chk(true)
            .map_err(KernelError::Socket)?;
        conn.set_forward_ack(true);
        tokio::spawn(conn);
        Ok(Netlink {
            handle,
            dump_lock: Mutex::new(()),
            proto,
            link_events: Mutex::new(None),
        })
    }

    /// Send one request and collect its answers; a NACK becomes an error naming `what`.
    async fn request(
        &self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: impl FnOnce() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>, KernelError> {
        let answer = match self.exchange(vec![(msg, flags)]).await {
            Ok(mut answers) => answers.pop(),
            Err(()) => return Err(KernelError::Connection { what: what() }),
        };
        match answer {
            Some(Ok(out)) => Ok(out),
            Some(Err(source)) => Err(KernelError::Request {
                what: what(),
                source,
            }),
            None => Err(KernelError::Unexpected { what: what() }),
        }
    }

    /// Send several messages in one `sendmsg` and sort the answers back to their messages
    /// (by sequence number: netlink-proto numbers a batch consecutively, and every message
    /// of ours is answered, by data, an ack or an error). Err = the connection is gone.
    async fn exchange(&self, msgs: Vec<(RouteNetlinkMessage, u16)>) -> Result<Vec<Answer>, ()> {
        let n = msgs.len();
        let batch = msgs.into_iter().map(|(m, flags)| {
            let mut req = NetlinkMessage::from(m);
            req.header.flags = flags;
            req
        });
        let mut responses = self
            .handle
            .request_batch(batch, SocketAddr::new(0, 0))
            .map_err(|_| ())?;
        let mut got: Vec<(u32, NetlinkPayload<RouteNetlinkMessage>)> = Vec::new();
        while let Some(msg) = responses.next().await {
            got.push((msg.header.sequence_number, msg.payload));
        }
        let base = got.iter().map(|(seq, _)| *seq).min().unwrap_or(0);
        let mut answers: Vec<Answer> = (0..n).map(|_| Ok(Vec::new())).collect();
        for (seq, payload) in got {
            let Some(slot) = answers.get_mut(seq.wrapping_sub(base) as usize) else {
                continue;
            };
            match payload {
                NetlinkPayload::InnerMessage(m) => {
                    if let Ok(v) = slot {
                        v.push(m)
                    }
                }
                NetlinkPayload::Error(e) if e.code.is_some() => *slot = Err(e.to_io()),
                _ => {}
            }
        }
        Ok(answers)
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

    /// The request that makes one change, with its flags.
    fn change_message(&self, change: &Change) -> (RouteNetlinkMessage, u16) {
        let ack = NLM_F_REQUEST | NLM_F_ACK;
        let create = ack | NLM_F_CREATE | NLM_F_EXCL;
        let p = self.proto;
        match change {
            Change::LinkUp(i) | Change::LinkDown(i) => {
                let mut m = LinkMessage::default();
                m.header.index = i.index;
                m.header.change_mask = LinkFlags::Up;
                if matches!(change, Change::LinkUp(_)) {
                    m.header.flags = LinkFlags::Up;
                }
                (RouteNetlinkMessage::SetLink(m), ack)
            }
            Change::AddAddress(a) => (
                RouteNetlinkMessage::NewAddress(address_message(a, p)),
                create,
            ),
            Change::DelAddress(a) => (RouteNetlinkMessage::DelAddress(address_message(a, p)), ack),
            Change::AddRoute(r) => (RouteNetlinkMessage::NewRoute(route_message(r, p)), create),
            Change::ReplaceRoute { new, .. } => (
                RouteNetlinkMessage::NewRoute(route_message(new, p)),
                ack | NLM_F_CREATE | NLM_F_REPLACE,
            ),
            Change::DelRoute(r) => (RouteNetlinkMessage::DelRoute(route_message(r, p)), ack),
            Change::AddRule(r) => (RouteNetlinkMessage::NewRule(rule_message(r, p)), create),
            Change::DelRule(r) => (RouteNetlinkMessage::DelRule(rule_message(r, p)), ack),
        }
    }

    /// Split parsed objects into eniroute's (tagged with its protocol) and the others.
    fn by_owner<T>(&self, objects: impl Iterator<Item = (T, u8)>) -> (Vec<T>, Vec<T>) {
        let (mine, theirs): (Vec<_>, Vec<_>) = objects.partition(|(_, p)| *p == self.proto);
        (
            mine.into_iter().map(|(o, _)| o).collect(),
            theirs.into_iter().map(|(o, _)| o).collect(),
        )
    }
}

impl Kernel for Netlink {
    /// Every link: name, index, MAC, admin state.
    async fn links(&self) -> Result<Vec<HostLink>, KernelError> {
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
    async fn observe(&self, links: Vec<HostLink>) -> Result<Observed, KernelError> {
        let names: HashMap<u32, String> = links.iter().map(|l| (l.index, l.name.clone())).collect();
        let iface = |index: u32| Iface {
            name: names
                .get(&index)
                .cloned()
                .unwrap_or_else(|| format!("if{index}")),
            index,
        };
        let addrs = self
            .dump(
                RouteNetlinkMessage::GetAddress(AddressMessage::default()),
                "addresses",
            )
            .await?;
        let (addresses, foreign_addresses) = self.by_owner(addrs.iter().filter_map(|m| match m {
            RouteNetlinkMessage::NewAddress(a) => parse_address(a, &iface),
            _ => None,
        }));
        // Family unspecified: the kernel dumps IPv4 and IPv6 in one go.
        let routes = self
            .dump(
                RouteNetlinkMessage::GetRoute(RouteMessage::default()),
                "routes",
            )
            .await?;
        let (routes, foreign_routes) = self.by_owner(routes.iter().filter_map(|m| match m {
            RouteNetlinkMessage::NewRoute(r) => parse_route(r, &iface),
            _ => None,
        }));
        let rules = self
            .dump(
                RouteNetlinkMessage::GetRule(RuleMessage::default()),
                "rules",
            )
            .await?;
        let (rules, foreign_rules) = self.by_owner(rules.iter().filter_map(|m| match m {
            RouteNetlinkMessage::NewRule(r) => parse_rule(r),
            _ => None,
        }));
        Ok(Observed {
            links,
            addresses,
            foreign_addresses,
            routes,
            foreign_routes,
            rules,
            foreign_rules,
        })
    }

    /// Make one change.
    async fn apply(&self, change: &Change) -> Result<(), KernelError> {
        let (m, flags) = self.change_message(change);
        self.request(m, flags, || change.to_string())
            .await
            .map(|_| ())
    }

    /// Make independent changes, [`BATCH`] messages per `sendmsg`. Returns, in input order,
    /// which succeeded, and the error of the first that failed (the kernel goes on with the
    /// rest of a batch after an error).
    async fn apply_batch(&self, changes: &[Change]) -> (Vec<bool>, Option<KernelError>) {
        let mut done = Vec::with_capacity(changes.len());
        let mut first = None;
        for chunk in changes.chunks(BATCH) {
            let msgs = chunk.iter().map(|c| self.change_message(c)).collect();
            let Ok(answers) = self.exchange(msgs).await else {
                done.resize(changes.len(), false);
                let what = chunk.first().map(|c| c.to_string()).unwrap_or_default();
                return (done, first.or(Some(KernelError::Connection { what })));
            };
            for (c, a) in chunk.iter().zip(answers) {
                done.push(a.is_ok());
                if let (Err(source), None) = (a, &first) {
                    first = Some(KernelError::Request {
                        what: c.to_string(),
                        source,
                    });
                }
            }
        }
        (done, first)
    }

    /// Many route lookups, [`BATCH`] per `sendmsg`; one answer per lookup, in order.
    async fn route_get_many(
        &self,
        lookups: &[(Option<IpAddr>, IpAddr)],
    ) -> Vec<Result<Lookup, KernelError>> {
        let mut out = Vec::with_capacity(lookups.len());
        for chunk in lookups.chunks(BATCH) {
            let msgs = chunk
                .iter()
                .map(|(src, dst)| {
                    (
                        RouteNetlinkMessage::GetRoute(lookup_message(*src, *dst)),
                        NLM_F_REQUEST,
                    )
                })
                .collect();
            match self.exchange(msgs).await {
                Ok(answers) => {
                    for ((src, dst), a) in chunk.iter().zip(answers) {
                        let what = || lookup_what(*src, *dst);
                        out.push(match a {
                            Ok(msgs) => msgs
                                .iter()
                                .find_map(|m| match m {
                                    RouteNetlinkMessage::NewRoute(r) => Some(lookup_answer(r)),
                                    _ => None,
                                })
                                .ok_or_else(|| KernelError::Unexpected { what: what() }),
                            Err(source) => Err(KernelError::Request {
                                what: what(),
                                source,
                            }),
                        });
                    }
                }
                Err(()) => out.extend(chunk.iter().map(|(src, dst)| {
                    Err(KernelError::Connection {
                        what: lookup_what(*src, *dst),
                    })
                })),
            }
        }
        out
    }

    async fn link_event(&self, timeout: Duration) -> Result<bool, KernelError> {
        let mut sub = self.link_events.lock().await;
        if sub.is_none() {
            *sub = Some(LinkEvents::subscribe()?);
        }
        let Some(events) = sub.as_mut() else {
            return Ok(false);
        };
        Ok(events.next(timeout).await)
    }

    fn sysctl_read(&self, path: &str) -> Result<String, SysctlError> {
        sysctl::read(path)
    }

    fn sysctl_write(&self, path: &str, value: &str) -> Result<(), SysctlError> {
        sysctl::write(path, value)
    }
}

fn lookup_what(src: Option<IpAddr>, dst: IpAddr) -> String {
    match src {
        Some(s) => format!("route lookup from {s} to {dst}"),
        None => format!("route lookup to {dst}"),
    }
}

fn lookup_message(src: Option<IpAddr>, dst: IpAddr) -> RouteMessage {
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
    m
}

fn lookup_answer(r: &RouteMessage) -> Lookup {
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
    l
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
