//! The shell's sysctl bookkeeping: what differs from the plan, what to put back, and the saved
//! originals — keyed by the link's MAC (or index), resolved to the link's current name when
//! read or restored.

use serde::Serialize;

use crate::host::{LinkKey, Saved, SavedSysctl};
use crate::kernel::sysctl::SysctlError;
use crate::kernel::Kernel;
use crate::model::{mac_text, sysctl_name, HostLink, Sysctl, SysctlKey};

/// A sysctl that differs from what is wanted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SysctlChange {
    pub path: String,
    pub name: String,
    pub old: String,
    pub new: String,
}

impl SysctlChange {
    fn new(path: String, old: String, new: String) -> SysctlChange {
        SysctlChange {
            name: sysctl_name(&path),
            path,
            old,
            new,
        }
    }
}

/// The key under which the link named `name` is saved.
fn link_key(links: &[HostLink], name: &str) -> Option<LinkKey> {
    let l = links.iter().find(|l| l.name == name)?;
    Some(LinkKey {
        mac: l.mac.map(mac_text),
        index: l.index,
        name: l.name.clone(),
    })
}

/// The link a saved key names now: by MAC (the same index first), by index when it has no
/// MAC, by name only for entries migrated from the first format.
fn resolve<'a>(links: &'a [HostLink], key: &LinkKey) -> Option<&'a HostLink> {
    let mac = |l: &&HostLink| l.mac.map(mac_text) == key.mac;
    match &key.mac {
        Some(_) => (links.iter().filter(mac)).min_by_key(|l| l.index != key.index),
        None if key.index == 0 => links.iter().find(|l| l.name == key.name),
        None => links
            .iter()
            .find(|l| l.index == key.index && l.mac.is_none()),
    }
}

/// Where a saved sysctl is now; None when its link is gone.
fn path_now(s: &SavedSysctl, links: &[HostLink]) -> Option<String> {
    let iface = match &s.link {
        Some(k) => Some(resolve(links, k)?.name.clone()),
        None => None,
    };
    Some(
        SysctlKey {
            family: s.family,
            knob: s.knob,
            iface,
        }
        .path(),
    )
}

/// Compare wanted values with the kernel's; only differences are returned.
pub(super) fn diff(k: &impl Kernel, wanted: &[Sysctl]) -> Result<Vec<SysctlChange>, SysctlError> {
    let mut out = Vec::new();
    for s in wanted {
        let old = k.sysctl_read(&s.path)?;
        if old != s.value {
            out.push(SysctlChange::new(s.path.clone(), old, s.value.clone()));
        }
    }
    Ok(out)
}

/// Saved sysctls the plan no longer wants, where they differ from the original. A sysctl of
/// a link that is gone cannot (and need not) be restored.
pub(super) fn restores(
    k: &impl Kernel,
    links: &[HostLink],
    wanted: &[Sysctl],
    saved: &Saved,
) -> Vec<SysctlChange> {
    (saved.sysctls.iter())
        .filter_map(|s| {
            let path = path_now(s, links)?;
            if wanted.iter().any(|w| w.path == path) {
                return None;
            }
            let cur = k.sysctl_read(&path).ok()?;
            (cur != s.value).then(|| SysctlChange::new(path, cur, s.value.clone()))
        })
        .collect()
}

/// `saved` with the original of every sysctl about to change remembered (never overwritten).
pub(super) fn ahead(saved: &Saved, changes: &[SysctlChange], links: &[HostLink]) -> Saved {
    let mut out = saved.clone();
    for c in changes {
        let Some(key) = SysctlKey::parse(&c.path) else {
            continue;
        };
        let link = match &key.iface {
            Some(name) => match link_key(links, name) {
                Some(l) => Some(l),
                None => continue,
            },
            None => None,
        };
        out.remember(key.family, key.knob, link, &c.old);
    }
    out
}

/// `saved` after a pass: restored originals are forgotten, and so are those of links that are
/// gone.
pub(super) fn after(saved: &Saved, restored: &[SysctlChange], links: &[HostLink]) -> Saved {
    let mut out = saved.clone();
    out.sysctls
        .retain(|s| path_now(s, links).is_some_and(|p| !restored.iter().any(|r| r.path == p)));
    out
}

/// Put back every saved sysctl (flush); those that cannot be written stay saved.
pub(super) fn restore_all(
    k: &impl Kernel,
    links: &[HostLink],
    saved: &Saved,
    errors: &mut Vec<String>,
) -> (Vec<SysctlChange>, Saved) {
    let mut restored = Vec::new();
    let mut kept = Saved::default();
    for s in &saved.sysctls {
        // The link is gone: nothing to restore.
        let Some(path) = path_now(s, links) else {
            continue;
        };
        match k.sysctl_read(&path) {
            Ok(cur) if cur == s.value => {}
            Ok(cur) => match k.sysctl_write(&path, &s.value) {
                Ok(()) => restored.push(SysctlChange::new(path, cur, s.value.clone())),
                Err(e) => {
                    errors.push(e.to_string());
                    kept.sysctls.push(s.clone());
                }
            },
            Err(_) => {}
        }
    }
    (restored, kept)
}
