//! The nftables table eniroute owns, `inet eniroute`, as plain data (DESIGN §4): chains and
//! rules made of the few matches and statements eniroute uses, with their `nft` syntax.
//! The kernel layer turns it into nfnetlink messages and back; [`mark_overlaps`] says which
//! foreign uses of marks collide with eniroute's. Imports only model's objects.

use std::fmt;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::Serialize;

use super::objects::Rule;

/// The family and name of the table.
pub const NFT_FAMILY: &str = "inet";
pub const NFT_TABLE: &str = "eniroute";

/// The whole table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NftTable {
    pub chains: Vec<NftChain>,
}

/// Where a base chain hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NftHook {
    Prerouting,
    Output,
    Postrouting,
}

/// The chain type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NftChainType {
    Filter,
    /// Re-routes locally generated packets whose mark changed.
    Route,
    Nat,
}

/// A base chain with its rules, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NftChain {
    pub name: String,
    pub kind: NftChainType,
    pub hook: NftHook,
    pub priority: i32,
    pub rules: Vec<NftRule>,
}

/// One rule: every match must hold, then the statement runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NftRule {
    pub matches: Vec<NftMatch>,
    /// A `counter` before the statement (status reads it).
    pub counter: bool,
    pub action: NftAction,
}

/// The matches eniroute uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NftMatch {
    /// `iifname "eth1"`.
    IifName(String),
    /// `oifname "eth1"`.
    OifName(String),
    /// `ct state new`.
    CtStateNew,
    /// `fib daddr type local`.
    FibDaddrLocal,
    /// `ct mark & mask == mark`.
    CtMark { mark: u32, mask: u32 },
    /// `ip saddr N` / `ip6 saddr N` (with the implied `meta nfproto`).
    Saddr(IpNetwork),
}

/// The statements eniroute uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NftAction {
    /// `ct mark set ct mark & ~mask | mark`: bits outside the mask are kept.
    SetCtMark { mark: u32, mask: u32 },
    /// `meta mark set meta mark & ~mask | mark`.
    SetMetaMark { mark: u32, mask: u32 },
    /// `return` (leave this chain; the packet goes on).
    Return,
    /// `snat ip to A` / `snat ip6 to A`.
    Snat(IpAddr),
}

impl fmt::Display for NftMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NftMatch::IifName(n) => write!(f, "iifname {n:?}"),
            NftMatch::OifName(n) => write!(f, "oifname {n:?}"),
            NftMatch::CtStateNew => f.write_str("ct state new"),
            NftMatch::FibDaddrLocal => f.write_str("fib daddr type local"),
            NftMatch::CtMark { mark, mask } => write!(f, "ct mark & {mask:#010x} == {mark:#010x}"),
            NftMatch::Saddr(n @ IpNetwork::V4(_)) => write!(f, "ip saddr {n}"),
            NftMatch::Saddr(n @ IpNetwork::V6(_)) => write!(f, "ip6 saddr {n}"),
        }
    }
}

impl fmt::Display for NftAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NftAction::SetCtMark { mark, mask } => {
                write!(
                    f,
                    "ct mark set ct mark & {:#010x} | {mark:#010x}",
                    keep(*mark, *mask)
                )
            }
            NftAction::SetMetaMark { mark, mask } => {
                write!(
                    f,
                    "meta mark set meta mark & {:#010x} | {mark:#010x}",
                    keep(*mark, *mask)
                )
            }
            NftAction::Return => f.write_str("return"),
            NftAction::Snat(a @ IpAddr::V4(_)) => write!(f, "snat ip to {a}"),
            NftAction::Snat(a @ IpAddr::V6(_)) => write!(f, "snat ip6 to {a}"),
        }
    }
}

/// The and-mask nft lists for a mark statement: `(x & keep) | mark` equals `(x & !mask) | mark`
/// for a mark inside the mask. (The kernel holds `(x & !mask) ^ mark`.)
pub fn keep(mark: u32, mask: u32) -> u32 {
    !mask | mark
}

impl fmt::Display for NftRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for m in &self.matches {
            write!(f, "{m} ")?;
        }
        if self.counter {
            f.write_str("counter ")?;
        }
        write!(f, "{}", self.action)
    }
}

impl NftHook {
    pub fn as_str(self) -> &'static str {
        match self {
            NftHook::Prerouting => "prerouting",
            NftHook::Output => "output",
            NftHook::Postrouting => "postrouting",
        }
    }
}

impl NftChainType {
    pub fn as_str(self) -> &'static str {
        match self {
            NftChainType::Filter => "filter",
            NftChainType::Route => "route",
            NftChainType::Nat => "nat",
        }
    }
}

impl NftTable {
    /// The table as an `nft -f` script that creates it from nothing.
    pub fn nft_lines(&self) -> Vec<String> {
        let t = format!("{NFT_FAMILY} {NFT_TABLE}");
        let mut out = vec![format!("add table {t}")];
        for c in &self.chains {
            out.push(format!(
                "add chain {t} {} {{ type {} hook {} priority {}; policy accept; }}",
                c.name,
                c.kind.as_str(),
                c.hook.as_str(),
                c.priority
            ));
        }
        for c in &self.chains {
            for r in &c.rules {
                out.push(format!("add rule {t} {} {r}", c.name));
            }
        }
        out
    }
}

/// The line that deletes the table.
pub fn nft_delete_line() -> String {
    format!("delete table {NFT_FAMILY} {NFT_TABLE}")
}

/// What the kernel holds of the table.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct NftObserved {
    /// None: there is no table `inet eniroute`.
    pub table: Option<NftTable>,
    /// Some chain or rule of the table is not one eniroute makes (apply replaces the table).
    pub unknown: bool,
    /// Each rule with a counter, with its chain and packets.
    pub counters: Vec<NftCounter>,
    /// Rules of other tables that read or write packet or connection marks.
    pub foreign_marks: Vec<ForeignMark>,
}

impl NftObserved {
    /// Whether the kernel's table is exactly `want` (None: no table), and nothing of it is
    /// unknown to eniroute.
    pub fn holds(&self, want: &Option<NftTable>) -> bool {
        !self.unknown && &self.table == want
    }
}

/// A rule of another nftables table and the mark bits it reads or writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForeignMark {
    /// `family table chain`.
    pub chain: String,
    pub bits: u32,
}

/// Another component's use of eniroute's mark bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkUse<'a> {
    /// A foreign rule with an fwmark selector.
    Rule(&'a Rule),
    /// A rule of another nftables table that reads or writes marks.
    Nft(&'a ForeignMark),
}

/// One foreign use of marks and the bits of `mark_mask` it touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkOverlap<'a> {
    pub by: MarkUse<'a>,
    pub bits: u32,
}

/// Which foreign rules (`fwmark X/M`: the bits X | M) and foreign nftables rules (the bits
/// they read or write) overlap `mark_mask`: marks would be overwritten or misread. apply
/// refuses these (a conflict); doctor reports them.
pub fn mark_overlaps<'a>(
    mark_mask: u32,
    foreign_rules: &'a [Rule],
    nft: &'a [ForeignMark],
) -> Vec<MarkOverlap<'a>> {
    let rules = foreign_rules.iter().filter_map(|r| {
        let m = r.fwmark?;
        let bits = (m.mark | m.mask) & mark_mask;
        (bits != 0).then_some(MarkOverlap {
            by: MarkUse::Rule(r),
            bits,
        })
    });
    let tables = nft.iter().filter_map(|f| {
        let bits = f.bits & mark_mask;
        (bits != 0).then_some(MarkOverlap {
            by: MarkUse::Nft(f),
            bits,
        })
    });
    rules.chain(tables).collect()
}

/// A rule's counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NftCounter {
    pub chain: String,
    pub rule: NftRule,
    pub packets: u64,
}

/// The `nft` lines of a change of the table from `old` to `new` (None: no table).
pub fn nft_change_lines(old: Option<&NftTable>, new: Option<&NftTable>) -> Vec<String> {
    let mut out = Vec::new();
    if old.is_some() {
        out.push(nft_delete_line());
    }
    if let Some(t) = new {
        out.extend(t.nft_lines());
    }
    out
}
