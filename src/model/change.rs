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
    /// iproute2 syntax, without the sign, so that the line can be pasted after `ip`:
    /// `rule add priority 20200 from 192.168.10.22 lookup 20002` (an IPv6 rule starts with
    /// `-6`, which iproute2 needs when the rule names no address).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::LinkUp(i) => write!(f, "link set dev {} up", i.name),
            Change::LinkDown(i) => write!(f, "link set dev {} down", i.name),
            Change::AddAddress(a) => write!(f, "address add {a}"),
            Change::DelAddress(a) => write!(f, "address del {a}"),
            Change::AddRoute(r) => write!(f, "route add {r}"),
            Change::DelRoute(r) => write!(f, "route del {r}"),
            // A shell takes `# ...` as a comment: the line still pastes after `ip`.
            Change::ReplaceRoute { old, new } => write!(f, "route replace {new}  # was: {old}"),
            Change::AddRule(r) => write!(f, "{}rule add {r}", family_flag(r.family)),
            Change::DelRule(r) => write!(f, "{}rule del {r}", family_flag(r.family)),
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

impl Change {
    /// The object the change is about, in iproute2's words without a verb:
    /// `rule priority 20200 from 192.168.10.22 lookup 20002`, `route default via ... table N`.
    pub fn object(&self) -> String {
        match self {
            Change::LinkUp(i) | Change::LinkDown(i) => format!("link {}", i.name),
            Change::AddAddress(a) | Change::DelAddress(a) => format!("address {a}"),
            Change::AddRoute(r) | Change::DelRoute(r) | Change::ReplaceRoute { new: r, .. } => {
                format!("route {r}")
            }
            Change::AddRule(r) | Change::DelRule(r) => {
                format!("{}rule {r}", family_flag(r.family))
            }
            Change::SetTable { .. } => "nftables table inet eniroute".to_string(),
        }
    }
}

fn family_flag(f: super::Family) -> &'static str {
    match f {
        super::Family::V4 => "",
        super::Family::V6 => "-6 ",
    }
}

/// Group ordered changes into runs of one phase (each run may be applied concurrently).
pub fn phases(changes: &[Change]) -> Vec<&[Change]> {
    changes.chunk_by(|a, b| a.phase() == b.phase()).collect()
}
