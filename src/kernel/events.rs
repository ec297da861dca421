//! Multicast subscriptions to rtnetlink notifications — links, IPv4/IPv6 addresses, routes and
//! rules — read in debounced bursts; what `watch` and [`super::Kernel::link_event`] wait on.
//! Reads its own socket so that an overrun (ENOBUFS) is seen. May import only `model`.

use std::time::Duration;

use netlink_packet_core::{NetlinkBuffer, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::route::{RouteAttribute, RouteMessage};
use netlink_packet_route::rule::{RuleAttribute, RuleMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket};
use rtnetlink::MulticastGroup;
use tokio::time::{timeout, Instant};

use super::codec::family_of;
use super::KernelError;
use crate::model::Family;

/// Room for one datagram: the kernel sends at most one page-sized batch of notifications.
const RECV_BUFFER: usize = 64 * 1024;

/// The socket's receive queue: room for the notifications of thousands of objects changed at
/// once (deleting 961 rules queues about 1 MiB), so that a burst does not overrun it.
const RECV_QUEUE: nix::libc::c_int = 8 << 20;

/// A burst ends after `debounce` without news, or at the latest this many debounces after
/// its first event, so that a storm of changes cannot keep the caller waiting for ever.
const MAX_BURST_DEBOUNCES: u32 = 50;

/// A multicast group to subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Link,
    Ipv4Address,
    Ipv6Address,
    Ipv4Route,
    Ipv6Route,
    Ipv4Rule,
    Ipv6Rule,
}

impl Group {
    /// Every group eniroute's objects and the ENIs live in.
    pub const ALL: [Group; 7] = [
        Group::Link,
        Group::Ipv4Address,
        Group::Ipv6Address,
        Group::Ipv4Route,
        Group::Ipv6Route,
        Group::Ipv4Rule,
        Group::Ipv6Rule,
    ];

    fn number(self) -> u32 {
        let g = match self {
            Group::Link => MulticastGroup::Link,
            Group::Ipv4Address => MulticastGroup::Ipv4Ifaddr,
            Group::Ipv6Address => MulticastGroup::Ipv6Ifaddr,
            Group::Ipv4Route => MulticastGroup::Ipv4Route,
            Group::Ipv6Route => MulticastGroup::Ipv6Route,
            Group::Ipv4Rule => MulticastGroup::Ipv4Rule,
            Group::Ipv6Rule => MulticastGroup::Ipv6Rule,
        };
        g as u32
    }
}

/// One notification: what kind of object changed, and whether it went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Link {
        index: u32,
        removed: bool,
    },
    Address {
        index: u32,
        removed: bool,
    },
    Route {
        family: Family,
        table: u32,
        protocol: u8,
        removed: bool,
    },
    Rule {
        family: Family,
        table: u32,
        priority: u32,
        protocol: u8,
        removed: bool,
    },
}

/// What one wait brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Burst {
    /// Nothing within the timeout.
    Quiet,
    /// Notifications, in the order the kernel sent them.
    Events(Vec<Event>),
    /// The kernel dropped notifications (the socket overran: ENOBUFS): what changed is not
    /// known, the caller must dump everything again.
    Resync,
}

/// A subscription, ended on drop. Must be made on a thread inside the namespace to watch,
/// within a tokio runtime.
pub struct Events {
    socket: TokioSocket,
    buf: Vec<u8>,
}

impl Events {
    /// Join `groups` on a new netlink socket.
    pub fn subscribe(groups: &[Group]) -> Result<Events, KernelError> {
        let mut socket = TokioSocket::new(NETLINK_ROUTE).map_err(KernelError::Socket)?;
        let s = socket.socket_mut();
        s.bind(&SocketAddr::new(0, 0))
            .map_err(KernelError::Socket)?;
        grow_receive_queue(s);
        for g in groups {
            s.add_membership(g.number()).map_err(KernelError::Socket)?;
        }
        Ok(Events {
            socket,
            buf: Vec::with_capacity(RECV_BUFFER),
        })
    }

    /// Wait up to `wait` for a notification, then gather the rest of its burst: until
    /// `debounce` passes without news (or [`MAX_BURST_DEBOUNCES`] debounces in all).
    pub async fn next_burst(
        &mut self,
        wait: Duration,
        debounce: Duration,
    ) -> Result<Burst, KernelError> {
        let Ok(first) = timeout(wait, self.recv()).await else {
            return Ok(Burst::Quiet);
        };
        let mut events = Vec::new();
        let mut overrun = false;
        let mut absorb = |got: Option<Vec<Event>>| match got {
            Some(mut e) => events.append(&mut e),
            None => overrun = true,
        };
        absorb(first?);
        let end = Instant::now() + debounce * MAX_BURST_DEBOUNCES;
        loop {
            let left = end.saturating_duration_since(Instant::now()).min(debounce);
            if left.is_zero() {
                break;
            }
            if !self.readable_within(left) {
                break;
            }
            absorb(self.recv().await?);
        }
        Ok(if overrun {
            Burst::Resync
        } else {
            Burst::Events(events)
        })
    }

    /// Whether a datagram is there within `wait`, to the microsecond: tokio's timers tick in
    /// milliseconds (a 1 ms timeout took 2.3 ms here, in every heal). Blocks the thread for at
    /// most `wait`, which is a debounce: short, and only while a burst is being gathered.
    fn readable_within(&self, wait: Duration) -> bool {
        use nix::poll::{ppoll, PollFd, PollFlags};
        use nix::sys::time::TimeSpec;
        use std::os::fd::AsFd;
        let mut fds = [PollFd::new(
            self.socket.socket_ref().as_fd(),
            PollFlags::POLLIN,
        )];
        // EINTR (a signal): end the burst; the caller sees the signal next.
        matches!(ppoll(&mut fds, Some(TimeSpec::from_duration(wait)), None), Ok(n) if n > 0)
    }

    /// One datagram's events; None when the socket overran.
    async fn recv(&mut self) -> Result<Option<Vec<Event>>, KernelError> {
        self.buf.clear();
        self.buf.reserve(RECV_BUFFER);
        match self.socket.recv(&mut self.buf).await {
            Ok(()) => Ok(Some(parse_datagram(&self.buf))),
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOBUFS) => Ok(None),
            Err(source) => Err(KernelError::Request {
                what: "reading netlink notifications".into(),
                source,
            }),
        }
    }
}

/// SO_RCVBUFFORCE (CAP_NET_ADMIN: beyond net.core.rmem_max), else SO_RCVBUF (capped by it).
/// A smaller queue only means an overrun sooner, which is handled (a full resync).
fn grow_receive_queue(s: &netlink_sys::Socket) {
    use std::os::fd::AsRawFd;
    let size = RECV_QUEUE;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live c_int; the fd is owned
    // by `s` for the duration of the call.
    let rc = unsafe {
        nix::libc::setsockopt(
            s.as_raw_fd(),
            nix::libc::SOL_SOCKET,
            nix::libc::SO_RCVBUFFORCE,
            (&size as *const nix::libc::c_int).cast(),
            std::mem::size_of::<nix::libc::c_int>() as nix::libc::socklen_t,
        )
    };
    if rc != 0 {
        let _ = s.set_rx_buf_sz(size);
    }
}

/// The events of one datagram (which may hold several netlink messages). Messages that do not
/// parse or are of other kinds are skipped.
pub(super) fn parse_datagram(mut buf: &[u8]) -> Vec<Event> {
    let mut out = Vec::new();
    while let Ok(header) = NetlinkBuffer::new_checked(buf) {
        let len = header.length() as usize;
        if len == 0 || len > buf.len() {
            break;
        }
        if let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[..len]) {
            if let NetlinkPayload::InnerMessage(m) = msg.payload {
                out.extend(event(&m));
            }
        }
        // Messages are 4-byte aligned within a datagram.
        buf = buf.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    out
}

fn event(m: &RouteNetlinkMessage) -> Option<Event> {
    use RouteNetlinkMessage as M;
    Some(match m {
        M::NewLink(l) | M::DelLink(l) => Event::Link {
            index: l.header.index,
            removed: matches!(m, M::DelLink(_)),
        },
        M::NewAddress(a) | M::DelAddress(a) => Event::Address {
            index: a.header.index,
            removed: matches!(m, M::DelAddress(_)),
        },
        M::NewRoute(r) | M::DelRoute(r) => route_event(r, matches!(m, M::DelRoute(_)))?,
        M::NewRule(r) | M::DelRule(r) => rule_event(r, matches!(m, M::DelRule(_)))?,
        _ => return None,
    })
}

fn route_event(r: &RouteMessage, removed: bool) -> Option<Event> {
    let table = r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Table(t) => Some(*t),
        _ => None,
    });
    Some(Event::Route {
        family: family_of(r.header.address_family)?,
        table: table.unwrap_or(u32::from(r.header.table)),
        protocol: u8::from(r.header.protocol),
        removed,
    })
}

fn rule_event(r: &RuleMessage, removed: bool) -> Option<Event> {
    let mut table = u32::from(r.header.table);
    let (mut priority, mut protocol) = (0, 0);
    for a in &r.attributes {
        match a {
            RuleAttribute::Table(t) => table = *t,
            RuleAttribute::Priority(p) => priority = *p,
            RuleAttribute::Protocol(p) => protocol = u8::from(*p),
            _ => {}
        }
    }
    Some(Event::Rule {
        family: family_of(r.header.family)?,
        table,
        priority,
        protocol,
        removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::codec::captured::hex;

    // `ip -n NS rule del priority 20200` of `from 192.168.10.22 lookup 20002 proto 225`, read as
    // a multicast notification with a raw socket bound to the IPv4 rule group (see
    // tests/fixtures/netlink/run2.sh and monitor.py).
    const DEL_RULE: &str = "4400000021000000312e0f6b7402000002002000fc0000010000000008000f00224e000008000e00ffffffff05001500e100000008000600e84e000008000200c0a80a16";
    // RTM_NEWROUTE and RTM_NEWADDR as the kernel sends them (dump answers of run.sh; a
    // notification carries the same message): `default via 192.168.10.253 dev e1 onlink
    // table 20002 proto 225` and `47.96.1.2/32 dev e1 noprefixroute proto 225`.
    const NEW_ROUTE: &str = "4400000018000200010000004f66000002000000fce100010400000008000f00224e0000080006000300000008000700c0a80a1508000500c0a80afd0800040003000000";
    const NEW_ADDR: &str = "5400000014000200010000004f6600000220800003000000080001002f600102080002002f600102070003006531000005000b00e1000000080008008002000014000600ffffffffffffffff4a3a01004a3a0100";

    #[test]
    fn a_deleted_rule_notification_names_its_table_and_protocol() {
        assert_eq!(
            parse_datagram(&hex(DEL_RULE)),
            vec![Event::Rule {
                family: Family::V4,
                table: 20002,
                priority: 20200,
                protocol: 225,
                removed: true,
            }]
        );
    }

    #[test]
    fn a_link_notification_names_its_index() {
        // `ip -n NS link set e2 up`: the first RTM_NEWLINK notification for e2 (index 2).
        let bytes = hex(include_str!("../../tests/fixtures/netlink/link_e2_up.hex"));
        assert_eq!(
            parse_datagram(&bytes),
            vec![Event::Link {
                index: 2,
                removed: false
            }]
        );
    }

    #[test]
    fn a_datagram_may_carry_several_messages() {
        let mut bytes = hex(NEW_ROUTE);
        bytes.extend(hex(NEW_ADDR));
        assert_eq!(
            parse_datagram(&bytes),
            vec![
                Event::Route {
                    family: Family::V4,
                    table: 20002,
                    protocol: 225,
                    removed: false,
                },
                Event::Address {
                    index: 3,
                    removed: false
                },
            ]
        );
    }

    #[test]
    fn truncated_or_foreign_bytes_give_no_events() {
        assert!(parse_datagram(&[]).is_empty());
        assert!(parse_datagram(&[1, 2, 3]).is_empty());
        let whole = hex(DEL_RULE);
        assert!(parse_datagram(&whole[..whole.len() - 4]).is_empty());
        // NLMSG_DONE (type 3) is not an event.
        let done = [20, 0, 0, 0, 3, 0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(parse_datagram(&done).is_empty());
    }

    #[test]
    fn every_group_is_a_distinct_rtnetlink_group() {
        let mut n: Vec<u32> = Group::ALL.iter().map(|g| g.number()).collect();
        // RTNLGRP_LINK, IPV4_IFADDR, IPV4_ROUTE, IPV4_RULE, IPV6_IFADDR, IPV6_ROUTE, IPV6_RULE
        n.sort();
        assert_eq!(n, vec![1, 5, 7, 8, 9, 11, 19]);
    }
}
