//! One kernel change and its algebra: the phase it runs in, its inverse, its sign and its
//! `ip`-style line. Produced by reconcile, made by the kernel layer, undone by rollback.

use std::fmt;

use serde::Serialize;

use super::nft::{nft_change_lines, NftTable};
use super::objects::{Address, Iface, Route, Rule};

/// One kernel change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    LinkUp(Iface),
    LinkDown(Iface),
    AddAddress(Address),
    DelAddress(Address),
    AddRoute(Route),
    ReplaceRoute {
        old: Route,
        new: Route,
    },
    DelRoute(Route),
    AddRule(Rule),
    DelRule(Rule),
    /// The table `inet eniroute` from `old` to `new` (None: no table), in one transaction.
    SetTable {
        old: Option<NftTable>,
        new: Option<NftTable>,
    },
}

impl Change {
    /// Changes of one phase are independent and may be made concurrently; phases run in
    /// order: links, addresses, link routes, gateway routes, rules; then removals.
    pub fn phase(&self) -> u8 {
        match self {
            Change::LinkUp(_) | Change::LinkDown(_) => 0,
            Change::AddAddress(_) => 1,
            Change::AddRoute(r) | Change::ReplaceRoute { new: r, .. } => {
                if r.nexthops.iter().any(|n| n.gateway.is_some()) {
                    3
                } else {
                    2
                }
            }
            Change::AddRule(_) => 4,
            Change::SetTable { new: Some(_), .. } => 4,
            Change::DelRule(_) | Change::SetTable { new: None, .. } => 5,
            Change::DelRoute(_) => 6,
            Change::DelAddress(_) => 7,
        }
    }

    /// The change that undoes this one.
    pub fn inverse(&self) -> Change {
        match self.clone() {
            Change::LinkUp(i) => Change::LinkDown(i),
            Change::LinkDown(i) => Change::LinkUp(i),
            Change::AddAddress(a) => Change::DelAddress(a),
            Change::DelAddress(a) => Change::AddAddress(a),
            Change::AddRoute(r) => Change::DelRoute(r),
            Change::ReplaceRoute { old, new } => Change::ReplaceRoute { old: new, new: old },
            Change::DelRoute(r) => Change::AddRoute(r),
            Change::AddRule(r) => Change::DelRule(r),
            Change::DelRule(r) => Change::AddRule(r),
            Change::SetTable { old, new } => Change::SetTable { old: new, new: old },
        }
    }

    /// '+' add, '-' remove, '~' change in place.
    pub fn sign(&self) -> char {
        match self {
            Change::LinkUp(_)
            | Change::AddAddress(_)
            | Change::AddRoute(_)
            | Change::AddRule(_) => '+',
            Change::LinkDown(_)
            | Change::DelAddress(_)
            | Change::DelRoute(_)
            | Change::DelRule(_) => '-',
            Change::ReplaceRoute { .. } => '~',
            Change::SetTable { old: None, .. } => '+',
            Change::SetTable { new: None, .. } => '-',
            Change::SetTable { .. } => '~',
        }
    }
}

impl fmt::Display for Change {
    /// `ip`-style, without the sign: `rule 20200 from 192.168.10.22 lookup 20002`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::LinkUp(i) => write!(f, "link set dev {} up", i.name),
            Change::LinkDown(i) => write!(f, "link set dev {} down", i.name),
            Change::AddAddress(a) | Change::DelAddress(a) => write!(f, "address {a}"),
            Change::AddRoute(r) | Change::DelRoute(r) => write!(f, "route {r}"),
            Change::ReplaceRoute { old, new } => write!(f, "route {new} (was: {old})"),
            Change::AddRule(r) | Change::DelRule(r) => {
                let s = r.to_string();
                write!(f, "rule {}", s.strip_prefix("priority ").unwrap_or(&s))
            }
            Change::SetTable { old, new } => {
                f.write_str("nftables table inet eniroute, as `nft` lines:")?;
                for line in nft_change_lines(old.as_ref(), new.as_ref()) {
                    write!(f, "\n    {line}")?;
                }
                Ok(())
            }
        }
    }
}

/// Group ordered changes into runs of one phase (each run may be applied concurrently).
pub fn phases(changes: &[Change]) -> Vec<&[Change]> {
    changes.chunk_by(|a, b| a.phase() == b.phase()).collect()
}
