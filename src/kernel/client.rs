//! The netlink client: one rtnetlink connection (strict checking, forwarded acks) in the
//! network namespace of the thread that opened it. Batches changes and lookups ([`BATCH`] per
//! `sendmsg`), serializes dumps, waits for link events. May import only `model`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use futures::StreamExt;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::route::{RouteAttribute, RouteMessage};
use netlink_packet_route::rule::RuleMessage;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{AsyncSocket, SocketAddr};
use rtnetlink::proto::ConnectionHandle;
use tokio::sync::Mutex;

use super::codec::{
    change_message, host_link, lookup_answer, lookup_message, parse_address, parse_route,
    parse_rule, restore_message,
};
use super::events::{Burst, Events, Group};
use super::sysctl::{self, SysctlError};
use super::{lookup_what, Kernel, KernelError, Lookup};
use crate::model::nft;
use crate::model::{Change, ForeignRoute, HostLink, Iface, Observed, Rule};

/// Make a change of the table `inet eniroute` in one nfnetlink transaction.
fn set_table(change: &Change) -> Result<(), KernelError> {
    let Change::SetTable { new, .. } = change else {
        return Err(KernelError::Unexpected {
            what: change.to_string(),
        });
    };
    let r = super::nft::set_table(new.as_ref());
    super::failpoint::hit("batch");
    r.map_err(|source| KernelError::Request {
        what: format!("{} {}", change.sign(), change),
        source,
    })
}

/// How many requests go to the kernel in one `sendmsg`.
const BATCH: usize = 128;

/// How long a burst of link events must be quiet before [`Kernel::link_event`] returns.
const LINK_DEBOUNCE: Duration = Duration::from_millis(20);

/// A netlink connection in the current thread's network namespace.
pub struct Netlink {
    handle: ConnectionHandle<RouteNetlinkMessage>,
    /// Held for the duration of each dump: two dumps at once on one socket fail with EBUSY.
    dump_lock: Mutex<()>,
    proto: u8,
    /// The link-event subscription of [`Kernel::link_event`], made on its first call.
    link_events: Mutex<Option<Events>>,
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
    pub(super) async fn request(
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

    /// Dump, parse each answer with `parse` (object and protocol tag), and split the objects
    /// into eniroute's (tagged with its protocol) and the others.
    async fn dump_split<T>(
        &self,
        msg: RouteNetlinkMessage,
        what: &str,
        parse: impl Fn(&RouteNetlinkMessage) -> Option<(T, u8)>,
    ) -> Result<(Vec<T>, Vec<(T, u8)>), KernelError> {
        let msgs = self.dump(msg, what).await?;
        let (mine, theirs): (Vec<_>, Vec<_>) = msgs
            .iter()
            .filter_map(parse)
            .partition(|(_, p)| *p == self.proto);
        Ok((mine.into_iter().map(|(o, _)| o).collect(), theirs))
    }

    /// The rules that are not eniroute's (with their fwmark selectors): one rule dump, for
    /// doctor, which needs neither addresses nor routes.
    pub async fn foreign_rules(&self) -> Result<Vec<Rule>, KernelError> {
        let msgs = self
            .dump(
                RouteNetlinkMessage::GetRule(RuleMessage::default()),
                "rules",
            )
            .await?;
        Ok(msgs
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRule(r) => parse_rule(r),
                _ => None,
            })
            .filter(|(_, proto)| *proto != self.proto)
            .map(|(rule, _)| rule)
            .collect())
    }

    /// Route lookups (`queries`), [`BATCH`] per `sendmsg`; one answer per query, in order;
    /// `what(i)` names query i in errors.
    async fn lookup_batch(
        &self,
        queries: Vec<RouteMessage>,
        what: impl Fn(usize) -> String,
    ) -> Vec<Result<Lookup, KernelError>> {
        let mut out = Vec::with_capacity(queries.len());
        for (n, chunk) in queries.chunks(BATCH).enumerate() {
            let base = n * BATCH;
            let msgs = (chunk.iter())
                .map(|m| (RouteNetlinkMessage::GetRoute(m.clone()), NLM_F_REQUEST))
                .collect();
            let Ok(answers) = self.exchange(msgs).await else {
                out.extend((0..chunk.len()).map(|i| {
                    Err(KernelError::Connection {
                        what: what(base + i),
                    })
                }));
                continue;
            };
            for (i, a) in answers.into_iter().enumerate() {
                out.push(match a {
                    Ok(msgs) => (msgs.iter())
                        .find_map(|m| match m {
                            RouteNetlinkMessage::NewRoute(r) => Some(lookup_answer(r)),
                            _ => None,
                        })
                        .ok_or_else(|| KernelError::Unexpected {
                            what: what(base + i),
                        }),
                    Err(source) => Err(KernelError::Request {
                        what: what(base + i),
                        source,
                    }),
                });
            }
        }
        out
    }

    /// Send rtnetlink changes, [`BATCH`] per `sendmsg`, pushing whether each succeeded onto
    /// `done` and the first error into `first`. False when the connection is gone.
    async fn send_batched(
        &self,
        changes: &[Change],
        done: &mut Vec<bool>,
        first: &mut Option<KernelError>,
    ) -> bool {
        for chunk in changes.chunks(BATCH) {
            let msgs = chunk
                .iter()
                .filter_map(|c| change_message(c, self.proto))
                .collect();
            let Ok(answers) = self.exchange(msgs).await else {
                let what = chunk.first().map(|c| c.to_string()).unwrap_or_default();
                first.get_or_insert(KernelError::Connection { what });
                return false;
            };
            super::failpoint::hit("batch");
            for (c, a) in chunk.iter().zip(answers) {
                done.push(a.is_ok());
                if let (Err(source), None) = (a, &first) {
                    *first = Some(KernelError::Request {
                        what: c.to_string(),
                        source,
                    });
                }
            }
        }
        true
    }

    /// The rules of other nftables tables that read or write marks (for doctor); None when the
    /// kernel has no nf_tables. nfnetlink needs CAP_NET_ADMIN even to read (EPERM without).
    pub fn nft_foreign_marks(&self) -> Result<Option<Vec<nft::ForeignMark>>, KernelError> {
        super::nft::foreign_marks().map_err(|source| KernelError::Request {
            what: "reading the nftables rules of other tables".into(),
            source,
        })
    }

    /// [`Netlink::dump_split`] where the foreign objects' tags do not matter.
    async fn dump_owned<T>(
        &self,
        msg: RouteNetlinkMessage,
        what: &str,
        parse: impl Fn(&RouteNetlinkMessage) -> Option<(T, u8)>,
    ) -> Result<(Vec<T>, Vec<T>), KernelError> {
        let (mine, theirs) = self.dump_split(msg, what, parse).await?;
        Ok((mine, theirs.into_iter().map(|(o, _)| o).collect()))
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
        let (addresses, foreign_addresses) = self
            .dump_owned(
                RouteNetlinkMessage::GetAddress(AddressMessage::default()),
                "addresses",
                |m| match m {
                    RouteNetlinkMessage::NewAddress(a) => parse_address(a, &iface),
                    _ => None,
                },
            )
            .await?;
        // Family unspecified: the kernel dumps IPv4 and IPv6 in one go. Foreign routes keep
        // their protocol (to be put back as they were).
        let (routes, foreign_routes) = self
            .dump_split(
                RouteNetlinkMessage::GetRoute(RouteMessage::default()),
                "routes",
                |m| match m {
                    RouteNetlinkMessage::NewRoute(r) => parse_route(r, &iface),
                    _ => None,
                },
            )
            .await?;
        let foreign_routes = foreign_routes
            .into_iter()
            .map(|(route, protocol)| ForeignRoute { route, protocol })
            .collect();
        let (rules, foreign_rules) = self
            .dump_owned(
                RouteNetlinkMessage::GetRule(RuleMessage::default()),
                "rules",
                |m| match m {
                    RouteNetlinkMessage::NewRule(r) => parse_rule(r),
                    _ => None,
                },
            )
            .await?;
        Ok(Observed {
            links,
            addresses,
            foreign_addresses,
            routes,
            foreign_routes,
            rules,
            foreign_rules,
            nft: super::nft::own_table().map_err(|source| KernelError::Request {
                what: format!("reading nftables table {}", nft::NFT_TABLE),
                source,
            })?,
        })
    }

    async fn foreign_marks(&self) -> Result<Vec<nft::ForeignMark>, KernelError> {
        Ok(self.nft_foreign_marks()?.unwrap_or_default())
    }

    async fn restore_route(&self, r: &ForeignRoute) -> Result<(), KernelError> {
        let (msg, flags) = restore_message(r);
        self.request(msg, flags, || format!("restoring route {}", r.route))
            .await
            .map(|_| ())
    }

    /// Make one change.
    async fn apply(&self, change: &Change) -> Result<(), KernelError> {
        let Some((m, flags)) = change_message(change, self.proto) else {
            return set_table(change);
        };
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
        // The table is a transaction of its own (nfnetlink); what comes before and after it
        // goes in rtnetlink batches, in the same order.
        for part in changes.split_inclusive(|c| matches!(c, Change::SetTable { .. })) {
            let (table, rest) = match part.split_last() {
                Some((t @ Change::SetTable { .. }, rest)) => (Some(t), rest),
                _ => (None, part),
            };
            if !self.send_batched(rest, &mut done, &mut first).await {
                done.resize(changes.len(), false);
                return (done, first);
            }
            if let Some(t) = table {
                let r = self.apply(t).await;
                done.push(r.is_ok());
                if let (Err(e), None) = (r, &first) {
                    first = Some(e);
                }
            }
        }
        (done, first)
    }

    async fn route_get_marked_many(
        &self,
        lookups: &[(u32, IpAddr)],
    ) -> Vec<Result<Lookup, KernelError>> {
        let queries = (lookups.iter())
            .map(|(mark, dst)| {
                let mut m = lookup_message(None, *dst);
                m.attributes.push(RouteAttribute::Mark(*mark));
                m
            })
            .collect();
        self.lookup_batch(queries, |i| {
            let (mark, dst) = lookups[i];
            format!("route lookup to {dst} with mark {mark:#x}")
        })
        .await
    }

    /// Many route lookups, [`BATCH`] per `sendmsg`; one answer per lookup, in order.
    async fn route_get_many(
        &self,
        lookups: &[(Option<IpAddr>, IpAddr)],
    ) -> Vec<Result<Lookup, KernelError>> {
        let queries = (lookups.iter())
            .map(|(src, dst)| lookup_message(*src, *dst))
            .collect();
        self.lookup_batch(queries, |i| lookup_what(lookups[i].0, lookups[i].1))
            .await
    }

    /// Waits on a multicast subscription to the link group, made on the first call. An
    /// overrun (ENOBUFS) counts as an event: something changed, the caller dumps again.
    async fn link_event(&self, timeout: Duration) -> Result<bool, KernelError> {
        let mut sub = self.link_events.lock().await;
        if sub.is_none() {
            *sub = Some(Events::subscribe(&[Group::Link])?);
        }
        let Some(events) = sub.as_mut() else {
            return Ok(false);
        };
        match events.next_burst(timeout, LINK_DEBOUNCE).await {
            Ok(Burst::Quiet) => Ok(false),
            Ok(Burst::Events(_)) | Ok(Burst::Resync) => Ok(true),
            // The subscription broke: drop it (the next call subscribes again) and let the
            // caller poll by dumping.
            Err(_) => {
                *sub = None;
                tokio::time::sleep(timeout.min(Duration::from_millis(200))).await;
                Ok(false)
            }
        }
    }

    fn sysctl_read(&self, path: &str) -> Result<String, SysctlError> {
        sysctl::read(path)
    }

    fn sysctl_write(&self, path: &str, value: &str) -> Result<(), SysctlError> {
        sysctl::write(path, value)
    }
}
