//! The sysctls eniroute manages — the only ones it ever writes, and so the only ones its saved
//! state may name — and their paths below /proc/sys.

use serde::{Deserialize, Serialize};

use super::objects::Family;

/// A sysctl knob eniroute sets (DESIGN §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Knob {
    RpFilter,
    ArpIgnore,
    ArpAnnounce,
    IgnoreRoutesWithLinkdown,
    /// Namespace-wide: net.ipv{4,6}.fib_multipath_hash_policy.
    FibMultipathHashPolicy,
}

impl Knob {
    const ALL: [Knob; 5] = [
        Knob::RpFilter,
        Knob::ArpIgnore,
        Knob::ArpAnnounce,
        Knob::IgnoreRoutesWithLinkdown,
        Knob::FibMultipathHashPolicy,
    ];

    /// The file name below /proc/sys/net/ipv{4,6}[/conf/IFACE].
    pub fn file(self) -> &'static str {
        match self {
            Knob::RpFilter => "rp_filter",
            Knob::ArpIgnore => "arp_ignore",
            Knob::ArpAnnounce => "arp_announce",
            Knob::IgnoreRoutesWithLinkdown => "ignore_routes_with_linkdown",
            Knob::FibMultipathHashPolicy => "fib_multipath_hash_policy",
        }
    }

    /// Whether the knob is per interface (net/ipv4/conf/IFACE/...).
    pub fn per_interface(self) -> bool {
        match self {
            Knob::RpFilter
            | Knob::ArpIgnore
            | Knob::ArpAnnounce
            | Knob::IgnoreRoutesWithLinkdown => true,
            Knob::FibMultipathHashPolicy => false,
        }
    }
}

fn fam(f: Family) -> &'static str {
    match f {
        Family::V4 => "ipv4",
        Family::V6 => "ipv6",
    }
}

/// Which sysctl: the knob, its family and (for per-interface knobs) the interface name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SysctlKey {
    pub family: Family,
    pub knob: Knob,
    pub iface: Option<String>,
}

impl SysctlKey {
    /// The path below /proc/sys.
    pub fn path(&self) -> String {
        match &self.iface {
            Some(i) => format!("net/{}/conf/{i}/{}", fam(self.family), self.knob.file()),
            None => format!("net/{}/{}", fam(self.family), self.knob.file()),
        }
    }

    /// The key of a path eniroute could have made; None for any other path (so nothing read
    /// back from saved state can name a file outside the managed sysctls).
    pub fn parse(path: &str) -> Option<SysctlKey> {
        let parts: Vec<&str> = path.split('/').collect();
        let family = |s: &str| match s {
            "ipv4" => Some(Family::V4),
            "ipv6" => Some(Family::V6),
            _ => None,
        };
        let knob = |s: &str| Knob::ALL.into_iter().find(|k| k.file() == s);
        let key = match parts.as_slice() {
            ["net", f, "conf", i, k] => SysctlKey {
                family: family(f)?,
                knob: knob(k).filter(|k| k.per_interface())?,
                iface: Some(i.to_string()).filter(|i| valid_ifname(i)),
            },
            ["net", f, k] => SysctlKey {
                family: family(f)?,
                knob: knob(k).filter(|k| !k.per_interface())?,
                iface: None,
            },
            _ => return None,
        };
        (key.iface.is_some() == key.knob.per_interface()).then_some(key)
    }
}

/// A name the kernel accepts for an interface (IFNAMSIZ - 1 bytes, no '/', ':' or space).
pub fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && !s
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}

/// A sysctl under /proc/sys, e.g. `net/ipv4/conf/eth1/rp_filter`, with the value wanted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Sysctl {
    /// Path below /proc/sys, components separated by '/'.
    pub path: String,
    pub value: String,
}

impl Sysctl {
    /// A per-interface sysctl.
    pub fn conf(family: Family, ifname: &str, knob: Knob, value: impl ToString) -> Sysctl {
        Sysctl::of(
            SysctlKey {
                family,
                knob,
                iface: Some(ifname.to_string()),
            },
            value,
        )
    }

    /// A namespace-wide sysctl.
    pub fn global(family: Family, knob: Knob, value: impl ToString) -> Sysctl {
        Sysctl::of(
            SysctlKey {
                family,
                knob,
                iface: None,
            },
            value,
        )
    }

    fn of(key: SysctlKey, value: impl ToString) -> Sysctl {
        Sysctl {
            path: key.path(),
            value: value.to_string(),
        }
    }

    /// The sysctl(8) name of this sysctl.
    pub fn name(&self) -> String {
        sysctl_name(&self.path)
    }
}

/// The sysctl(8) name of a path below /proc/sys: components joined by '.', a '.' inside a
/// component shown as '/'.
pub fn sysctl_name(path: &str) -> String {
    path.split('/')
        .map(|c| c.replace('.', "/"))
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip_and_nothing_else_parses() {
        for p in [
            "net/ipv4/conf/eth1/rp_filter",
            "net/ipv6/conf/ens6/ignore_routes_with_linkdown",
            "net/ipv4/fib_multipath_hash_policy",
        ] {
            assert_eq!(SysctlKey::parse(p).map(|k| k.path()).as_deref(), Some(p));
        }
        for p in [
            "net/../../../../tmp/x",
            "net/ipv4/conf/../rp_filter",
            "net/ipv4/conf/eth1/forwarding",
            "net/ipv4/rp_filter",
            "net/ipv4/conf/eth1/fib_multipath_hash_policy",
            "kernel/core_pattern",
        ] {
            assert_eq!(SysctlKey::parse(p), None, "{p}");
        }
    }
}
