//! nftables over nfnetlink (NETLINK_NETFILTER), for the one table eniroute owns, `inet
//! eniroute`: replaced or deleted in one atomic batch (BATCH_BEGIN .. END, so packets see the
//! old table or the new one, never none), and read back with its counters. No crate does this
//! without libnftnl (GPL) — see the README; framing is netlink-packet-core's. Imports `model`.

mod expr;

use std::io;

use netlink_packet_core::{
    DefaultNla, NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    NetlinkSerializable, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_sys::{Socket, SocketAddr};

use crate::model::nft::{
    ForeignMark, NftChain, NftChainType, NftCounter, NftHook, NftObserved, NftRule, NftTable,
    NFT_TABLE,
};

const NETLINK_NETFILTER: isize = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
const NFPROTO_INET: u8 = 1;
const NFPROTO_UNSPEC: u8 = 0;
// Attributes (linux/netfilter/nf_tables.h).
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NF_ACCEPT: u32 = 1;

/// One nfnetlink message: nfgenmsg (family, version 0, res_id) and attributes.
#[derive(Debug, Clone)]
struct NfMsg {
    message_type: u16,
    family: u8,
    res_id: u16,
    attrs: Vec<u8>,
}

impl NetlinkSerializable for NfMsg {
    fn message_type(&self) -> u16 {
        self.message_type
    }
    fn buffer_len(&self) -> usize {
        4 + self.attrs.len()
    }
    fn serialize(&self, buffer: &mut [u8]) {
        buffer[0] = self.family;
        buffer[1] = 0;
        buffer[2..4].copy_from_slice(&self.res_id.to_be_bytes());
        buffer[4..4 + self.attrs.len()].copy_from_slice(&self.attrs);
    }
}

impl NetlinkDeserializable for NfMsg {
    type Error = io::Error;
    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Self, io::Error> {
        let short = || io::Error::new(io::ErrorKind::InvalidData, "short nfnetlink message");
        let fam = *payload.first().ok_or_else(short)?;
        Ok(NfMsg {
            message_type: header.message_type,
            family: fam,
            res_id: 0,
            attrs: payload.get(4..).ok_or_else(short)?.to_vec(),
        })
    }
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn nft_msg(kind: u16, family: u8, attrs: &[DefaultNla]) -> NfMsg {
    NfMsg {
        message_type: (NFNL_SUBSYS_NFTABLES << 8) | kind,
        family,
        res_id: 0,
        attrs: expr::emit(attrs),
    }
}

fn batch_marker(kind: u16) -> NfMsg {
    NfMsg {
        message_type: kind,
        family: NFPROTO_UNSPEC,
        res_id: NFNL_SUBSYS_NFTABLES,
        attrs: Vec::new(),
    }
}

fn hook_number(h: NftHook) -> u32 {
    // NF_INET_PRE_ROUTING, NF_INET_LOCAL_OUT, NF_INET_POST_ROUTING.
    match h {
        NftHook::Prerouting => 0,
        NftHook::Output => 3,
        NftHook::Postrouting => 4,
    }
}

fn hook_of(n: u32) -> Option<NftHook> {
    [NftHook::Prerouting, NftHook::Output, NftHook::Postrouting]
        .into_iter()
        .find(|h| hook_number(*h) == n)
}

fn chain_type_of(s: &str) -> Option<NftChainType> {
    [NftChainType::Filter, NftChainType::Route, NftChainType::Nat]
        .into_iter()
        .find(|t| t.as_str() == s)
}

fn table_attr() -> DefaultNla {
    DefaultNla::new(NFTA_TABLE_NAME, cstr(NFT_TABLE))
}

fn chain_msg(c: &NftChain) -> NfMsg {
    let hook = expr::nest(
        NFTA_CHAIN_HOOK,
        &[
            DefaultNla::new(
                NFTA_HOOK_HOOKNUM,
                hook_number(c.hook).to_be_bytes().to_vec(),
            ),
            DefaultNla::new(NFTA_HOOK_PRIORITY, c.priority.to_be_bytes().to_vec()),
        ],
    );
    let attrs = [
        DefaultNla::new(NFTA_CHAIN_TABLE, cstr(NFT_TABLE)),
        DefaultNla::new(NFTA_CHAIN_NAME, cstr(&c.name)),
        hook,
        DefaultNla::new(NFTA_CHAIN_POLICY, NF_ACCEPT.to_be_bytes().to_vec()),
        DefaultNla::new(NFTA_CHAIN_TYPE, cstr(c.kind.as_str())),
    ];
    nft_msg(NFT_MSG_NEWCHAIN, NFPROTO_INET, &attrs)
}

fn rule_msg(chain: &str, r: &NftRule) -> NfMsg {
    let attrs = [
        DefaultNla::new(NFTA_RULE_TABLE, cstr(NFT_TABLE)),
        DefaultNla::new(NFTA_RULE_CHAIN, cstr(chain)),
        expr::expressions_attr(NFTA_RULE_EXPRESSIONS, r),
    ];
    nft_msg(NFT_MSG_NEWRULE, NFPROTO_INET, &attrs)
}

/// The messages of one transaction that leaves `new` as the whole table (None: no table),
/// whatever was there: create-if-missing then delete makes both cases one sequence.
fn transaction(new: Option<&NftTable>) -> Vec<(NfMsg, u16)> {
    let req = NLM_F_REQUEST | NLM_F_ACK;
    let create = req | NLM_F_CREATE;
    let mut out = vec![
        (batch_marker(NFNL_MSG_BATCH_BEGIN), NLM_F_REQUEST),
        (
            nft_msg(NFT_MSG_NEWTABLE, NFPROTO_INET, &[table_attr()]),
            create,
        ),
        (
            nft_msg(NFT_MSG_DELTABLE, NFPROTO_INET, &[table_attr()]),
            req,
        ),
    ];
    if let Some(t) = new {
        out.push((
            nft_msg(NFT_MSG_NEWTABLE, NFPROTO_INET, &[table_attr()]),
            create,
        ));
        out.extend(t.chains.iter().map(|c| (chain_msg(c), create)));
        for c in &t.chains {
            out.extend(
                c.rules
                    .iter()
                    .map(|r| (rule_msg(&c.name, r), create | NLM_F_APPEND)),
            );
        }
    }
    out.push((batch_marker(NFNL_MSG_BATCH_END), NLM_F_REQUEST));
    out
}

/// The bytes of a sequence of messages, numbered from `seq`.
fn frame(msgs: Vec<(NfMsg, u16)>, seq: u32) -> (Vec<u8>, Vec<u32>) {
    let mut buf = Vec::new();
    let mut acked = Vec::new();
    for (i, (m, flags)) in msgs.into_iter().enumerate() {
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = seq.wrapping_add(i as u32);
        if flags & NLM_F_ACK != 0 {
            acked.push(header.sequence_number);
        }
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(m));
        nl.finalize();
        let at = buf.len();
        buf.resize(at + nl.buffer_len(), 0);
        nl.serialize(&mut buf[at..]);
    }
    (buf, acked)
}

/// A socket in the current thread's network namespace.
fn socket() -> io::Result<Socket> {
    let mut s = Socket::new(NETLINK_NETFILTER)?;
    s.bind_auto()?;
    s.connect(&SocketAddr::new(0, 0))?;
    Ok(s)
}

/// Every message of one datagram.
fn messages(buf: &[u8]) -> io::Result<Vec<NetlinkMessage<NfMsg>>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        let bytes = buf
            .get(at..at + len.max(16))
            .ok_or_else(|| io::Error::other("truncated netlink message"))?;
        out.push(NetlinkMessage::<NfMsg>::deserialize(bytes).map_err(io::Error::other)?);
        at += (len + 3) & !3;
        if len == 0 {
            break;
        }
    }
    Ok(out)
}

/// Make the table `new` (None: delete it) in one transaction; the kernel's first error.
pub(super) fn set_table(new: Option<&NftTable>) -> io::Result<()> {
    let s = socket()?;
    let (buf, mut waiting) = frame(transaction(new), 1);
    s.send(&buf, 0)?;
    let mut first: Option<io::Error> = None;
    while !waiting.is_empty() {
        let (data, _) = s.recv_from_full()?;
        for m in messages(&data)? {
            if let NetlinkPayload::Error(e) = &m.payload {
                waiting.retain(|s| *s != m.header.sequence_number);
                if e.code.is_some() && first.is_none() {
                    first = Some(e.to_io());
                }
            }
        }
        if first.is_some() {
            break;
        }
    }
    first.map_or(Ok(()), Err)
}

/// A dump (or, without NLM_F_DUMP, a get): every answer until DONE.
fn dump(kind: u16, attrs: &[DefaultNla], dump: bool) -> io::Result<Vec<NfMsg>> {
    dump_family(kind, NFPROTO_INET, attrs, dump)
}

fn dump_family(kind: u16, family: u8, attrs: &[DefaultNla], dump: bool) -> io::Result<Vec<NfMsg>> {
    let s = socket()?;
    let flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { NLM_F_ACK };
    let (buf, _) = frame(vec![(nft_msg(kind, family, attrs), flags)], 1);
    s.send(&buf, 0)?;
    let mut out = Vec::new();
    loop {
        let (data, _) = s.recv_from_full()?;
        for m in messages(&data)? {
            match m.payload {
                NetlinkPayload::InnerMessage(x) => out.push(x),
                NetlinkPayload::Error(e) => match e.code {
                    Some(_) => return Err(e.to_io()),
                    None => return Ok(out),
                },
                NetlinkPayload::Done(_) => return Ok(out),
                _ => {}
            }
        }
        if !dump && !out.is_empty() {
            return Ok(out);
        }
    }
}

fn attr_str(attrs: &[(u16, Vec<u8>)], kind: u16) -> Option<String> {
    let v = attrs.iter().find(|(k, _)| *k == kind)?;
    Some(
        String::from_utf8_lossy(&v.1)
            .trim_end_matches('\0')
            .to_string(),
    )
}

/// Every rule of every other table that reads or writes marks, with the bits; None when the
/// kernel has no nf_tables: no nfnetlink at all (the socket: EPROTONOSUPPORT), or nfnetlink
/// without the nftables subsystem, which the kernel tried to load on the request (EINVAL).
pub(super) fn foreign_marks() -> io::Result<Option<Vec<ForeignMark>>> {
    let rules = match dump_family(NFT_MSG_GETRULE, NFPROTO_UNSPEC, &[], true) {
        Err(e) if matches!(e.raw_os_error(), Some(EPROTONOSUPPORT | EINVAL)) => return Ok(None),
        other => other?,
    };
    let mut out = Vec::new();
    for m in rules {
        let a = expr::nlas(&m.attrs);
        let table = attr_str(&a, NFTA_RULE_TABLE).unwrap_or_default();
        if m.family == NFPROTO_INET && table == NFT_TABLE {
            continue;
        }
        let Some((_, e)) = a.iter().find(|(k, _)| *k == NFTA_RULE_EXPRESSIONS) else {
            continue;
        };
        let bits = expr::mark_bits(&expr::parse_expressions(e));
        if bits != 0 {
            let chain = attr_str(&a, NFTA_RULE_CHAIN).unwrap_or_default();
            out.push(ForeignMark {
                chain: format!("{} {table} {chain}", family_name(m.family)),
                bits,
            });
        }
    }
    Ok(Some(out))
}

fn family_name(f: u8) -> &'static str {
    match f {
        1 => "inet",
        2 => "ip",
        3 => "arp",
        5 => "netdev",
        7 => "bridge",
        10 => "ip6",
        _ => "unknown",
    }
}

/// The table `inet eniroute`, decoded (its foreign marks left empty: see `foreign_marks`).
pub(super) fn own_table() -> io::Result<NftObserved> {
    match dump(NFT_MSG_GETTABLE, &[table_attr()], false) {
        // No such table; or a kernel without nf_tables, which cannot hold one (no nfnetlink:
        // EPROTONOSUPPORT; nfnetlink without its nftables subsystem: EINVAL).
        Err(e) if matches!(e.raw_os_error(), Some(ENOENT | EPROTONOSUPPORT | EINVAL)) => {
            return Ok(NftObserved::default())
        }
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    let mut seen = NftObserved::default();
    let mut chains = Vec::new();
    for m in dump(NFT_MSG_GETCHAIN, &[], true)? {
        let a = expr::nlas(&m.attrs);
        if m.family != NFPROTO_INET || attr_str(&a, NFTA_CHAIN_TABLE).as_deref() != Some(NFT_TABLE)
        {
            continue;
        }
        match parse_chain(&a) {
            Some(c) => chains.push(c),
            None => seen.unknown = true,
        }
    }
    let rules = dump(
        NFT_MSG_GETRULE,
        &[DefaultNla::new(NFTA_RULE_TABLE, cstr(NFT_TABLE))],
        true,
    )?;
    for m in rules {
        let a = expr::nlas(&m.attrs);
        if m.family != NFPROTO_INET || attr_str(&a, NFTA_RULE_TABLE).as_deref() != Some(NFT_TABLE) {
            continue;
        }
        let chain = attr_str(&a, NFTA_RULE_CHAIN).unwrap_or_default();
        let exprs = a
            .iter()
            .find(|(k, _)| *k == NFTA_RULE_EXPRESSIONS)
            .map(|(_, v)| expr::parse_expressions(v));
        let decoded = exprs.as_deref().and_then(expr::decode);
        match (
            decoded,
            chains.iter_mut().find(|c: &&mut NftChain| c.name == chain),
        ) {
            (Some((rule, packets)), Some(c)) => {
                if let Some(p) = packets {
                    seen.counters.push(NftCounter {
                        chain: chain.clone(),
                        rule: rule.clone(),
                        packets: p,
                    });
                }
                c.rules.push(rule);
            }
            _ => seen.unknown = true,
        }
    }
    seen.table = Some(NftTable { chains });
    Ok(seen)
}

const ENOENT: i32 = 2;
const EINVAL: i32 = 22;
const EPROTONOSUPPORT: i32 = 93;

/// A base chain of the table; None for anything eniroute does not make.
fn parse_chain(a: &[(u16, Vec<u8>)]) -> Option<NftChain> {
    let name = attr_str(a, NFTA_CHAIN_NAME)?;
    let kind = chain_type_of(&attr_str(a, NFTA_CHAIN_TYPE)?)?;
    let hook = expr::nlas(&a.iter().find(|(k, _)| *k == NFTA_CHAIN_HOOK)?.1);
    let num = hook.iter().find(|(k, _)| *k == NFTA_HOOK_HOOKNUM)?;
    let prio = hook.iter().find(|(k, _)| *k == NFTA_HOOK_PRIORITY)?;
    let policy = a.iter().find(|(k, _)| *k == NFTA_CHAIN_POLICY)?;
    if policy.1.as_slice() != NF_ACCEPT.to_be_bytes() {
        return None;
    }
    Some(NftChain {
        name,
        kind,
        hook: hook_of(u32::from_be_bytes(num.1.as_slice().try_into().ok()?))?,
        priority: i32::from_be_bytes(prio.1.as_slice().try_into().ok()?),
        rules: Vec::new(),
    })
}
