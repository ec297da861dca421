//! The expressions of the table's rules: each `model::nft` match and statement as the nf_tables
//! expressions nft itself generates for it (registers, byte orders), and back. A rule whose
//! expressions are not exactly a sequence eniroute makes decodes to None.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use netlink_packet_core::{DefaultNla, Emitable, NlaBuffer, NlasIterator, NLA_F_NESTED};

use crate::model::nft::{NftAction, NftMatch, NftRule};

// Attribute numbers from linux/netfilter/nf_tables.h.
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
/// NFT_REG_VERDICT and NFT_REG_1 (the 16-byte register nft uses).
const REG_VERDICT: u32 = 0;
const REG_1: u32 = 1;
const NFT_RETURN: i32 = -5;
const IFNAMSIZ: usize = 16;
// meta keys (NFTA_META_DREG 1, KEY 2, SREG 3).
const META_MARK: u32 = 3;
const META_IIFNAME: u32 = 6;
const META_OIFNAME: u32 = 7;
const META_NFPROTO: u32 = 15;
// ct keys (NFTA_CT_DREG 1, KEY 2, SREG 4).
const CT_STATE: u32 = 0;
const CT_MARK: u32 = 3;
/// NF_CT_STATE_BIT(IP_CT_NEW).
const CT_STATE_NEW: u32 = 1 << 3;
/// NFT_FIB_RESULT_ADDRTYPE, NFTA_FIB_F_DADDR, RTN_LOCAL.
const FIB_ADDRTYPE: u32 = 3;
const FIB_F_DADDR: u32 = 1 << 1;
const RTN_LOCAL: u32 = 2;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_NAT_SNAT: u32 = 0;
const NF_NAT_RANGE_MAP_IPS: u32 = 1;
const CMP_EQ: u32 = 0;
const CMP_NEQ: u32 = 1;

/// One expression as the kernel holds it: its name and its data attributes (type, value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expr {
    pub(crate) name: String,
    pub(crate) attrs: Vec<(u16, Vec<u8>)>,
}

impl Expr {
    fn new(name: &str, attrs: Vec<(u16, Vec<u8>)>) -> Expr {
        Expr {
            name: name.to_string(),
            attrs,
        }
    }

    fn get(&self, kind: u16) -> Option<&[u8]> {
        self.attrs
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| v.as_slice())
    }

    fn u32(&self, kind: u16) -> Option<u32> {
        let v: [u8; 4] = self.get(kind)?.try_into().ok()?;
        Some(u32::from_be_bytes(v))
    }

    /// The value of a nested NFTA_DATA_VALUE attribute.
    fn data(&self, kind: u16) -> Option<Vec<u8>> {
        let nested = self.get(kind)?;
        nlas(nested)
            .into_iter()
            .find(|(k, _)| *k == NFTA_DATA_VALUE)
            .map(|(_, v)| v)
    }
}

fn be(n: u32) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

/// A data value nest (NFTA_DATA_VALUE inside).
fn value(bytes: &[u8]) -> Vec<u8> {
    emit(&[DefaultNla::new(NFTA_DATA_VALUE, bytes.to_vec())])
}

/// Emitted attributes.
pub(crate) fn emit(attrs: &[DefaultNla]) -> Vec<u8> {
    let mut buf = vec![0u8; attrs.as_ref().buffer_len()];
    attrs.as_ref().emit(&mut buf);
    buf
}

/// A nested attribute.
pub(crate) fn nest(kind: u16, children: &[DefaultNla]) -> DefaultNla {
    DefaultNla::new(kind | NLA_F_NESTED, emit(children))
}

/// Attributes of a buffer as (type without flags, value); malformed tails are ignored.
pub(crate) fn nlas(buf: &[u8]) -> Vec<(u16, Vec<u8>)> {
    NlasIterator::new(buf)
        .filter_map(Result::ok)
        .map(|b: NlaBuffer<&[u8]>| (b.kind() & !NLA_F_NESTED & 0x3fff, b.value().to_vec()))
        .collect()
}

fn meta_load(key: u32) -> Expr {
    Expr::new("meta", vec![(2, be(key)), (1, be(REG_1))])
}

fn ct_load(key: u32) -> Expr {
    Expr::new("ct", vec![(2, be(key)), (1, be(REG_1))])
}

fn cmp(op: u32, data: &[u8]) -> Expr {
    Expr::new("cmp", vec![(1, be(REG_1)), (2, be(op)), (3, value(data))])
}

/// reg1 = (reg1 & mask) ^ xor, over `len` bytes.
fn bitwise(len: u32, mask: &[u8], xor: &[u8]) -> Expr {
    let attrs = vec![
        (1, be(REG_1)),
        (2, be(REG_1)),
        (3, be(len)),
        (4, value(mask)),
        (5, value(xor)),
    ];
    Expr::new("bitwise", attrs)
}

fn ifname(name: &str) -> Vec<u8> {
    let mut v = name.as_bytes().to_vec();
    v.resize(IFNAMSIZ, 0);
    v
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The expressions of one match.
fn encode_match(m: &NftMatch, out: &mut Vec<Expr>) {
    let host = |n: u32| n.to_ne_bytes();
    match m {
        NftMatch::IifName(n) | NftMatch::OifName(n) => {
            let key = if matches!(m, NftMatch::IifName(_)) {
                META_IIFNAME
            } else {
                META_OIFNAME
            };
            out.push(meta_load(key));
            out.push(cmp(CMP_EQ, &ifname(n)));
        }
        NftMatch::CtStateNew => {
            out.push(ct_load(CT_STATE));
            out.push(bitwise(4, &host(CT_STATE_NEW), &host(0)));
            out.push(cmp(CMP_NEQ, &host(0)));
        }
        NftMatch::FibDaddrLocal => {
            let attrs = vec![(2, be(FIB_ADDRTYPE)), (3, be(FIB_F_DADDR)), (1, be(REG_1))];
            out.push(Expr::new("fib", attrs));
            out.push(cmp(CMP_EQ, &host(RTN_LOCAL)));
        }
        NftMatch::CtMark { mark, mask } => {
            out.push(ct_load(CT_MARK));
            out.push(bitwise(4, &host(*mask), &host(0)));
            out.push(cmp(CMP_EQ, &host(*mark)));
        }
        NftMatch::Saddr(n) => {
            let (proto, offset) = match n {
                IpNetwork::V4(_) => (NFPROTO_IPV4, 12),
                IpNetwork::V6(_) => (NFPROTO_IPV6, 8),
            };
            out.push(meta_load(META_NFPROTO));
            out.push(cmp(CMP_EQ, &[proto]));
            // As nft does: a byte-aligned prefix loads only its bytes; any other the whole
            // address, masked.
            let full = ip_bytes(n.network());
            let aligned = n.prefix() % 8 == 0;
            let len = if aligned {
                usize::from(n.prefix() / 8)
            } else {
                full.len()
            };
            let attrs = vec![
                (1, be(REG_1)),
                (2, be(NFT_PAYLOAD_NETWORK_HEADER)),
                (3, be(offset)),
                (4, be(len as u32)),
            ];
            out.push(Expr::new("payload", attrs));
            if !aligned {
                out.push(bitwise(len as u32, &ip_bytes(n.mask()), &vec![0; len]));
            }
            out.push(cmp(CMP_EQ, &full[..len]));
        }
    }
}

/// The expressions of one statement.
fn encode_action(a: &NftAction, out: &mut Vec<Expr>) {
    let host = |n: u32| n.to_ne_bytes();
    match a {
        NftAction::SetCtMark { mark, mask } | NftAction::SetMetaMark { mark, mask } => {
            let (load, name, set) = match a {
                NftAction::SetCtMark { .. } => (ct_load(CT_MARK), "ct", 4),
                _ => (meta_load(META_MARK), "meta", 3),
            };
            out.push(load);
            // (x & !mask) ^ mark: the mark's bits are clear before the xor, so it sets them.
            out.push(bitwise(4, &host(!*mask), &host(*mark)));
            let key = if name == "ct" { CT_MARK } else { META_MARK };
            out.push(Expr::new(name, vec![(2, be(key)), (set, be(REG_1))]));
        }
        NftAction::Return => {
            let verdict = emit(&[DefaultNla::new(
                NFTA_VERDICT_CODE,
                NFT_RETURN.to_be_bytes().to_vec(),
            )]);
            let data = emit(&[DefaultNla::new(NFTA_DATA_VERDICT | NLA_F_NESTED, verdict)]);
            out.push(Expr::new(
                "immediate",
                vec![(1, be(REG_VERDICT)), (2, data)],
            ));
        }
        NftAction::Snat(ip) => {
            let family = if ip.is_ipv4() {
                NFPROTO_IPV4
            } else {
                NFPROTO_IPV6
            };
            out.push(Expr::new(
                "immediate",
                vec![(1, be(REG_1)), (2, value(&ip_bytes(*ip)))],
            ));
            // As nft: both ends of the range in register 1, NF_NAT_RANGE_MAP_IPS.
            let attrs = vec![
                (1, be(NFT_NAT_SNAT)),
                (2, be(u32::from(family))),
                (3, be(REG_1)),
                (4, be(REG_1)),
                (7, be(NF_NAT_RANGE_MAP_IPS)),
            ];
            out.push(Expr::new("nat", attrs));
        }
    }
}

/// The expressions of a rule, in order.
pub(crate) fn encode(rule: &NftRule) -> Vec<Expr> {
    let mut out = Vec::new();
    for m in &rule.matches {
        encode_match(m, &mut out);
    }
    if rule.counter {
        out.push(Expr::new("counter", Vec::new()));
    }
    encode_action(&rule.action, &mut out);
    out
}

/// NFTA_RULE_EXPRESSIONS of a rule.
pub(crate) fn expressions_attr(kind: u16, rule: &NftRule) -> DefaultNla {
    let elems: Vec<DefaultNla> = encode(rule)
        .iter()
        .map(|e| {
            let data: Vec<DefaultNla> = e
                .attrs
                .iter()
                .map(|(k, v)| attr(&e.name, *k, v.clone()))
                .collect();
            nest(
                NFTA_LIST_ELEM,
                &[
                    DefaultNla::new(NFTA_EXPR_NAME, super::cstr(&e.name)),
                    nest(NFTA_EXPR_DATA, &data),
                ],
            )
        })
        .collect();
    nest(kind, &elems)
}

/// A data attribute: the data and verdict nests carry NLA_F_NESTED, as the kernel wants.
fn attr(expr: &str, kind: u16, v: Vec<u8>) -> DefaultNla {
    let nested = matches!(
        (expr, kind),
        ("cmp", 3) | ("bitwise", 4 | 5) | ("immediate", 2)
    );
    DefaultNla::new(if nested { kind | NLA_F_NESTED } else { kind }, v)
}

/// The expressions of a dumped NFTA_RULE_EXPRESSIONS value.
pub(crate) fn parse_expressions(buf: &[u8]) -> Vec<Expr> {
    nlas(buf)
        .into_iter()
        .filter(|(k, _)| *k == NFTA_LIST_ELEM)
        .map(|(_, elem)| {
            let parts = nlas(&elem);
            let name = super::attr_str(&parts, NFTA_EXPR_NAME).unwrap_or_default();
            let attrs = parts
                .iter()
                .find(|(k, _)| *k == NFTA_EXPR_DATA)
                .map(|(_, v)| nlas(v))
                .unwrap_or_default();
            Expr { name, attrs }
        })
        .collect()
}

/// Reads a rule's expressions back into the matches and statement eniroute makes.
struct Cursor<'a> {
    exprs: &'a [Expr],
    at: usize,
}

impl<'a> Cursor<'a> {
    /// The next expression if it has this name.
    fn take(&mut self, name: &str) -> Option<&'a Expr> {
        let e = self.exprs.get(self.at).filter(|e| e.name == name)?;
        self.at += 1;
        Some(e)
    }

    fn peek(&self) -> Option<&'a Expr> {
        self.exprs.get(self.at)
    }

    /// A `cmp` on register 1: (op, data).
    fn cmp(&mut self) -> Option<(u32, Vec<u8>)> {
        let e = self.take("cmp")?;
        (e.u32(1)? == REG_1).then_some(())?;
        Some((e.u32(2)?, e.data(3)?))
    }

    /// A `bitwise` on register 1: (mask, xor).
    fn bitwise(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        let e = self.take("bitwise")?;
        (e.u32(1)? == REG_1 && e.u32(2)? == REG_1 && e.u32(6).unwrap_or(0) == 0).then_some(())?;
        Some((e.data(4)?, e.data(5)?))
    }
}

fn host_u32(v: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(v.try_into().ok()?))
}

fn ifname_of(v: &[u8]) -> Option<String> {
    let end = v.iter().position(|b| *b == 0)?;
    String::from_utf8(v[..end].to_vec()).ok()
}

/// A mark load: `ct mark` or `meta mark` into register 1.
fn mark_load(e: &Expr) -> Option<&'static str> {
    (e.u32(1)? == REG_1 && e.u32(2)? == CT_MARK).then_some(())?; // META_MARK is 3 too
    match e.name.as_str() {
        "ct" => Some("ct"),
        "meta" => Some("meta"),
        _ => None,
    }
}

/// One match, or the statement, at the cursor.
fn decode_step(c: &mut Cursor<'_>) -> Option<Step> {
    let e = c.peek()?;
    let key = e.u32(2);
    let load = e.u32(1) == Some(REG_1);
    if e.name == "meta" && load && matches!(key, Some(META_IIFNAME | META_OIFNAME)) {
        c.take("meta")?;
        let (op, data) = c.cmp()?;
        (op == CMP_EQ).then_some(())?;
        let n = ifname_of(&data)?;
        return Some(Step::Match(if key == Some(META_IIFNAME) {
            NftMatch::IifName(n)
        } else {
            NftMatch::OifName(n)
        }));
    }
    if e.name == "meta" && load && key == Some(META_NFPROTO) {
        return decode_saddr(c).map(Step::Match);
    }
    if e.name == "ct" && load && key == Some(CT_STATE) {
        c.take("ct")?;
        let (mask, xor) = c.bitwise()?;
        let (op, data) = c.cmp()?;
        let ok = host_u32(&mask)? == CT_STATE_NEW
            && host_u32(&xor)? == 0
            && op == CMP_NEQ
            && host_u32(&data)? == 0;
        return ok.then_some(Step::Match(NftMatch::CtStateNew));
    }
    if e.name == "fib" {
        c.take("fib")?;
        let ok = e.u32(1)? == REG_1 && e.u32(2)? == FIB_ADDRTYPE && e.u32(3)? == FIB_F_DADDR;
        let (op, data) = c.cmp()?;
        return (ok && op == CMP_EQ && host_u32(&data)? == RTN_LOCAL)
            .then_some(Step::Match(NftMatch::FibDaddrLocal));
    }
    if let Some(kind) = mark_load(e) {
        return decode_mark(c, kind);
    }
    decode_tail(c)
}

/// `ct mark & mask == mark`, or a mark statement.
fn decode_mark(c: &mut Cursor<'_>, kind: &str) -> Option<Step> {
    c.take(kind)?;
    let (and, xor) = c.bitwise()?;
    let (and, xor) = (host_u32(&and)?, host_u32(&xor)?);
    if kind == "ct" && xor == 0 {
        if let Some((op, data)) = c.cmp() {
            return (op == CMP_EQ).then_some(Step::Match(NftMatch::CtMark {
                mark: host_u32(&data)?,
                mask: and,
            }));
        }
    }
    let set = c.take(kind)?;
    let sreg = if kind == "ct" { 4 } else { 3 };
    (set.u32(sreg)? == REG_1 && set.u32(2)? == CT_MARK && xor & and == 0).then_some(())?;
    let mask = !and;
    Some(Step::Action(match kind {
        "ct" => NftAction::SetCtMark { mark: xor, mask },
        _ => NftAction::SetMetaMark { mark: xor, mask },
    }))
}

/// `meta nfproto` + `payload` (+ `bitwise`) + `cmp`: a source network.
fn decode_saddr(c: &mut Cursor<'_>) -> Option<NftMatch> {
    c.take("meta")?;
    let (_, proto) = c.cmp()?;
    let p = c.take("payload")?;
    let (offset, size) = match proto.as_slice() {
        [NFPROTO_IPV4] => (12, 4),
        [NFPROTO_IPV6] => (8, 16),
        _ => return None,
    };
    let len = p.u32(4)? as usize;
    let ok = p.u32(1)? == REG_1
        && p.u32(2)? == NFT_PAYLOAD_NETWORK_HEADER
        && p.u32(3)? == offset
        && (1..=size).contains(&len);
    ok.then_some(())?;
    let mask = match c.peek().map(|e| e.name.as_str()) {
        Some("bitwise") => Some(c.bitwise()?.0),
        _ => None,
    };
    let (op, mut addr) = c.cmp()?;
    (op == CMP_EQ && addr.len() == len).then_some(())?;
    let prefix: u32 = mask.map_or(len as u32 * 8, |m| m.iter().map(|b| b.count_ones()).sum());
    addr.resize(size, 0);
    let ip: IpAddr = match size {
        4 => <[u8; 4]>::try_from(addr.as_slice()).ok()?.into(),
        _ => <[u8; 16]>::try_from(addr.as_slice()).ok()?.into(),
    };
    IpNetwork::new(ip, u8::try_from(prefix).ok()?)
        .ok()
        .map(NftMatch::Saddr)
}

/// `counter`, `return`, `snat`.
fn decode_tail(c: &mut Cursor<'_>) -> Option<Step> {
    if let Some(e) = c.take("counter") {
        let packets = e
            .get(2)
            .and_then(|v| Some(u64::from_be_bytes(v.try_into().ok()?)))
            .unwrap_or(0);
        return Some(Step::Counter(packets));
    }
    let e = c.take("immediate")?;
    if e.u32(1)? == REG_VERDICT {
        let verdict = nlas(e.get(2)?)
            .into_iter()
            .find(|(k, _)| *k == NFTA_DATA_VERDICT)?
            .1;
        let code = nlas(&verdict)
            .into_iter()
            .find(|(k, _)| *k == NFTA_VERDICT_CODE)?
            .1;
        let code = i32::from_be_bytes(code.as_slice().try_into().ok()?);
        return (code == NFT_RETURN).then_some(Step::Action(NftAction::Return));
    }
    let addr = e.data(2)?;
    let nat = c.take("nat")?;
    let ok =
        nat.u32(1)? == NFT_NAT_SNAT && nat.u32(3)? == REG_1 && nat.u32(4).unwrap_or(REG_1) == REG_1;
    let ip: IpAddr = match (nat.u32(2)?, addr.len()) {
        (2, 4) => <[u8; 4]>::try_from(addr.as_slice()).ok()?.into(),
        (10, 16) => <[u8; 16]>::try_from(addr.as_slice()).ok()?.into(),
        _ => return None,
    };
    ok.then_some(Step::Action(NftAction::Snat(ip)))
}

enum Step {
    Match(NftMatch),
    Counter(u64),
    Action(NftAction),
}

/// A rule from its expressions, with its counter's packets; None for anything eniroute would
/// not have made.
pub(crate) fn decode(exprs: &[Expr]) -> Option<(NftRule, Option<u64>)> {
    let mut c = Cursor { exprs, at: 0 };
    let mut matches = Vec::new();
    let mut counter = None;
    while let Some(step) = decode_step(&mut c) {
        match step {
            Step::Match(m) if counter.is_none() => matches.push(m),
            Step::Counter(p) if counter.is_none() => counter = Some(p),
            Step::Action(action) if c.at == exprs.len() => {
                let rule = NftRule {
                    matches,
                    counter: counter.is_some(),
                    action,
                };
                return Some((rule, counter));
            }
            _ => return None,
        }
    }
    None
}

/// The packet or connection mark bits a rule reads or writes (0: none). A masked use
/// (`mark & M == V`, `mark set mark & M ^ X`) touches its mask's bits; an unmasked one
/// (`mark == V`, `mark set V`) touches all 32.
pub(crate) fn mark_bits(exprs: &[Expr]) -> u32 {
    let is_mark = |e: &Expr| matches!(e.name.as_str(), "meta" | "ct") && e.u32(2) == Some(CT_MARK);
    let sreg = |e: &Expr| e.u32(if e.name == "ct" { 4 } else { 3 });
    let mut bits = 0u32;
    let mut i = 0;
    while i < exprs.len() {
        let e = &exprs[i];
        i += 1;
        if !is_mark(e) {
            continue;
        }
        if sreg(e).is_some() {
            // A set whose value was not a masked load of the mark: every bit is written.
            bits = u32::MAX;
            continue;
        }
        let next = exprs.get(i);
        match next.map(|n| n.name.as_str()) {
            Some("bitwise") => {
                let n = &exprs[i];
                let mask = n.data(4).as_deref().and_then(host_u32).unwrap_or(u32::MAX);
                let xor = n.data(5).as_deref().and_then(host_u32).unwrap_or(0);
                let set = exprs.get(i + 1).filter(|s| is_mark(s) && sreg(s).is_some());
                bits |= if set.is_some() { !mask | xor } else { mask };
                i += if set.is_some() { 2 } else { 1 };
            }
            _ => bits = u32::MAX,
        }
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::nft::{NftAction, NftMatch, NftRule};

    fn rule(matches: Vec<NftMatch>, counter: bool, action: NftAction) -> NftRule {
        NftRule {
            matches,
            counter,
            action,
        }
    }

    /// Every match and statement survives encode -> the kernel's attribute nesting -> decode.
    #[test]
    fn rules_decode_from_their_own_expressions() {
        let rules = [
            rule(
                vec![
                    NftMatch::IifName("eth1".into()),
                    NftMatch::CtStateNew,
                    NftMatch::FibDaddrLocal,
                ],
                true,
                NftAction::SetCtMark {
                    mark: 0x800,
                    mask: 0x3c00,
                },
            ),
            rule(
                vec![NftMatch::IifName("eth1".into())],
                false,
                NftAction::Return,
            ),
            rule(
                vec![NftMatch::CtMark {
                    mark: 0x400,
                    mask: 0x3c00,
                }],
                false,
                NftAction::SetMetaMark {
                    mark: 0x400,
                    mask: 0x3c00,
                },
            ),
            rule(
                vec![
                    NftMatch::Saddr("172.17.0.0/16".parse().unwrap()),
                    NftMatch::OifName("eth1".into()),
                ],
                false,
                NftAction::Snat("192.168.1.22".parse().unwrap()),
            ),
            rule(
                vec![
                    NftMatch::Saddr("fd00:17::/64".parse().unwrap()),
                    NftMatch::Saddr("10.0.0.1/32".parse().unwrap()),
                    NftMatch::Saddr("10.16.0.0/12".parse().unwrap()),
                ],
                false,
                NftAction::Snat("2001:db8::1".parse().unwrap()),
            ),
        ];
        for r in rules {
            let DefaultNlaView(bytes) = DefaultNlaView::of(&expressions_attr(4, &r));
            let exprs = parse_expressions(&bytes);
            assert_eq!(
                decode(&exprs),
                Some((r.clone(), r.counter.then_some(0))),
                "{r}"
            );
            // Our own statements touch exactly the mask; matches read it.
            assert_eq!(mark_bits(&exprs) & !0x3c00, 0, "{r}");
        }
    }

    /// Something eniroute would not make (a verdict other than return) decodes to None.
    #[test]
    fn foreign_expressions_do_not_decode() {
        let mut exprs = encode(&rule(vec![], false, NftAction::Return));
        exprs[0].attrs[1] = (
            2,
            emit(&[DefaultNla::new(
                NFTA_DATA_VERDICT | NLA_F_NESTED,
                emit(&[DefaultNla::new(
                    NFTA_VERDICT_CODE,
                    1i32.to_be_bytes().to_vec(),
                )]),
            )]),
        );
        assert_eq!(decode(&exprs), None);
        assert_eq!(decode(&[]), None);
    }

    /// kube-proxy's `meta mark set mark or 0x4000` and a `mark and 0x8000 == 0x8000` match.
    #[test]
    fn mark_bits_of_masked_uses() {
        let host = |n: u32| n.to_ne_bytes();
        let set = vec![
            meta_load(META_MARK),
            bitwise(4, &host(!0x4000), &host(0x4000)),
            Expr::new("meta", vec![(2, be(META_MARK)), (3, be(REG_1))]),
        ];
        assert_eq!(mark_bits(&set), 0x4000);
        let test = vec![
            meta_load(META_MARK),
            bitwise(4, &host(0x8000), &host(0)),
            cmp(CMP_EQ, &host(0x8000)),
        ];
        assert_eq!(mark_bits(&test), 0x8000);
        let exact = vec![meta_load(META_MARK), cmp(CMP_EQ, &host(1))];
        assert_eq!(mark_bits(&exact), u32::MAX);
    }

    /// The value of an emitted attribute (what the kernel would store and dump).
    struct DefaultNlaView(Vec<u8>);
    impl DefaultNlaView {
        fn of(n: &DefaultNla) -> Self {
            use netlink_packet_core::Nla;
            let mut v = vec![0; n.value_len()];
            n.emit_value(&mut v);
            DefaultNlaView(v)
        }
    }
}
