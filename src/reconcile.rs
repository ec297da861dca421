//! Reconcile: desired x observed -> the ordered changes that converge the kernel. Pure.
//!
//! Only objects carrying eniroute's protocol tag are ever changed or removed. Foreign objects
//! are read only to skip addresses that are already there (DHCP) and to refuse conflicts (a
//! foreign route holding the place of a desired one) before anything changes.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::model::nft::{self, MarkUse};
use crate::model::{Address, Change, Observed, Route, Rule};
use crate::plan::Desired;

/// A foreign object in the way of the desired state: nothing is changed while there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub message: String,
}

/// The changes that turn `observed` into `desired`, in apply order; or the conflicts.
pub fn reconcile(desired: &Desired, observed: &Observed) -> Result<Vec<Change>, Vec<Conflict>> {
    let mut changes = links(desired, observed);
    let mut conflicts = Vec::new();
    addresses(desired, observed, &mut changes, &mut conflicts);
    routes(desired, observed, &mut changes, &mut conflicts);
    rules(desired, observed, &mut changes);
    changes.extend(table(desired, observed));
    marks(desired, observed, &mut conflicts);
    if !conflicts.is_empty() {
        return Err(conflicts);
    }
    changes.sort_by_key(Change::phase);
    Ok(changes)
}

/// Links: set up the ENIs' links that are down.
fn links(desired: &Desired, observed: &Observed) -> Vec<Change> {
    (desired.links_up.iter())
        .filter(|i| (observed.links.iter()).any(|l| l.index == i.index && i.index != 0 && !l.up))
        .map(|i| Change::LinkUp(i.clone()))
        .collect()
}

/// Addresses: ensure present (one already there, any tag, is left alone); owned ones no longer
/// wanted go, newest first.
fn addresses(d: &Desired, o: &Observed, changes: &mut Vec<Change>, conflicts: &mut Vec<Conflict>) {
    for a in &d.addresses {
        let same_link = |x: &&Address| x.iface.index == a.iface.index && x.addr == a.addr;
        if o.addresses.iter().any(|x| same_link(&x))
            || o.foreign_addresses.iter().any(|x| same_link(&x))
        {
            continue;
        }
        if let Some(x) = o.foreign_addresses.iter().find(|x| x.addr == a.addr) {
            conflicts.push(Conflict {
                message: format!(
                    "address {} is already on {} (not eniroute's); it cannot also go on {}",
                    a.addr, x.iface.name, a.iface.name
                ),
            });
            continue;
        }
        changes.push(Change::AddAddress(a.clone()));
    }
    for a in o.addresses.iter().rev() {
        let kept = (d.addresses.iter()).any(|x| x.iface.index == a.iface.index && x.addr == a.addr);
        if !kept {
            changes.push(Change::DelAddress(a.clone()));
        }
    }
}

/// Routes, by key (family, table, destination, metric): add, replace in place, or remove; a
/// foreign route holding a desired route's key is a conflict.
fn routes(d: &Desired, o: &Observed, changes: &mut Vec<Change>, conflicts: &mut Vec<Conflict>) {
    let owned: HashMap<_, &Route> = o.routes.iter().map(|r| (r.key(), r)).collect();
    let foreign: HashMap<_, &Route> = (o.foreign_routes.iter())
        .map(|f| (f.route.key(), &f.route))
        .collect();
    let mut wanted = HashSet::new();
    for r in &d.routes {
        wanted.insert(r.key());
        if let Some(f) = foreign.get(&r.key()) {
            conflicts.push(Conflict {
                message: format!(
                    "table {} already holds a route that is not eniroute's: `{}`; eniroute would add `route add {}` (remove it, or move eniroute with routing.table_base)",
                    r.table,
                    f,
                    r.to_ip(Some(d.protocol))
                ),
            });
            continue;
        }
        match owned.get(&r.key()) {
            Some(x) if *x == r => {}
            Some(x) => changes.push(Change::ReplaceRoute {
                old: (*x).clone(),
                new: r.clone(),
            }),
            None => changes.push(Change::AddRoute(r.clone())),
        }
    }
    for r in &o.routes {
        if !wanted.contains(&r.key()) {
            changes.push(Change::DelRoute(r.clone()));
        }
    }
}

/// Rules cannot be replaced: add the missing, delete the stale (and duplicates).
fn rules(d: &Desired, o: &Observed, changes: &mut Vec<Change>) {
    let mut present: HashSet<&Rule> = HashSet::new();
    let desired: HashSet<&Rule> = d.rules.iter().collect();
    let mut dels = Vec::new();
    for r in &o.rules {
        if desired.contains(r) && present.insert(r) {
            continue;
        }
        dels.push(Change::DelRule(r.clone()));
    }
    for r in &d.rules {
        if !present.contains(r) {
            changes.push(Change::AddRule(r.clone()));
        }
    }
    changes.extend(dels);
}

/// The table `inet eniroute`, as a unit: nothing when the kernel's is the desired one.
fn table(d: &Desired, o: &Observed) -> Option<Change> {
    (!o.nft.holds(&d.nft)).then(|| Change::SetTable {
        old: o.nft.table.clone(),
        new: d.nft.clone(),
    })
}

/// Another component using eniroute's mark bits (`nft::mark_overlaps`): marks would be
/// overwritten or misread.
fn marks(d: &Desired, o: &Observed, conflicts: &mut Vec<Conflict>) {
    let Some(mask) = d.mark_mask else { return };
    for x in nft::mark_overlaps(mask, &o.foreign_rules, &o.nft.foreign_marks) {
        let bits = x.bits;
        let message = match x.by {
            MarkUse::Rule(r) => format!(
                "the rule `{r}` (not eniroute's) uses fwmark bits {bits:#x}, which overlap \
                 containers.mark_mask = {mask:#x}; pick a mark_mask clear of them"
            ),
            MarkUse::Nft(f) => format!(
                "nftables chain {} (not eniroute's) reads or writes mark bits {bits:#x}, which \
                 overlap containers.mark_mask = {mask:#x}; pick a mark_mask clear of them",
                f.chain
            ),
        };
        conflicts.push(Conflict { message });
    }
}

/// Everything eniroute owns, removed (for flush): rules, then routes, then addresses.
pub fn flush(observed: &Observed) -> Vec<Change> {
    // The table first: no connection is marked any more once the rules go.
    let mut changes: Vec<Change> = Vec::new();
    if observed.nft.table.is_some() {
        changes.push(Change::SetTable {
            old: observed.nft.table.clone(),
            new: None,
        });
    }
    changes.extend(observed.rules.iter().cloned().map(Change::DelRule));
    changes.extend(observed.routes.iter().cloned().map(Change::DelRoute));
    // Newest first: secondaries before the primary whose removal would take them along.
    changes.extend(
        observed
            .addresses
            .iter()
            .rev()
            .cloned()
            .map(Change::DelAddress),
    );
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use crate::model::HostLink;
    use crate::plan::desired;

    const CFG: &str = r#"
[[eni]]
name = "eth1"
interface = "eth1"
cidr = "192.168.10.0/24"
gateway = "192.168.10.253"
private_ips = ["192.168.10.21", "192.168.10.22"]
"#;

    fn setup() -> (Desired, Observed) {
        let cfg = load_str(CFG, "t.toml").unwrap().config;
        let links = vec![HostLink {
            name: "eth1".into(),
            index: 7,
            mac: None,
            up: true,
        }];
        let d = desired(&cfg, Some(&links));
        let o = Observed {
            links,
            ..Default::default()
        };
        (d, o)
    }

    fn converged(d: &Desired, mut o: Observed) -> Observed {
        o.addresses = d.addresses.clone();
        o.routes = d.routes.clone();
        o.rules = d.rules.clone();
        o
    }

    #[test]
    fn empty_kernel_gets_everything_in_dependency_order() {
        let (d, o) = setup();
        let c = reconcile(&d, &o).unwrap();
        assert_eq!(c.len(), d.addresses.len() + d.routes.len() + d.rules.len());
        let phases: Vec<u8> = c.iter().map(Change::phase).collect();
        assert!(phases.windows(2).all(|w| w[0] <= w[1]), "{phases:?}");
        assert!(matches!(c[0], Change::AddAddress(_)));
        assert!(matches!(c.last(), Some(Change::AddRule(_))));
    }

    #[test]
    fn equal_state_makes_no_change() {
        let (d, o) = setup();
        let o = converged(&d, o);
        assert!(reconcile(&d, &o).unwrap().is_empty());
    }

    #[test]
    fn stale_owned_objects_are_removed_after_adds() {
        let (d, o) = setup();
        let mut o = converged(&d, o);
        let mut stale = o.rules[0].clone();
        stale.priority += 1;
        o.rules.push(stale.clone());
        let mut addr = o.addresses[0].clone();
        addr.addr = "192.168.10.99".parse().unwrap();
        o.addresses.push(addr.clone());
        let c = reconcile(&d, &o).unwrap();
        assert_eq!(c, vec![Change::DelRule(stale), Change::DelAddress(addr)]);
    }

    #[test]
    fn changed_route_is_replaced_in_place() {
        let (d, o) = setup();
        let mut o = converged(&d, o);
        let i = o.routes.iter().position(|r| r.dst.prefix() == 0).unwrap();
        let old = o.routes[i].clone();
        o.routes[i].nexthops[0].onlink = false;
        let c = reconcile(&d, &o).unwrap();
        assert_eq!(
            c,
            vec![Change::ReplaceRoute {
                old: o.routes[i].clone(),
                new: old
            }]
        );
    }

    #[test]
    fn foreign_objects_are_never_removed_and_block_their_place() {
        let (d, mut o) = setup();
        o.foreign_rules = d.rules.clone();
        o.foreign_addresses = d.addresses.clone();
        let c = reconcile(&d, &o).unwrap();
        // Foreign rules do not count as ours: ours are added; foreign addresses are kept.
        assert!(c
            .iter()
            .all(|c| !matches!(c, Change::DelRule(_) | Change::DelAddress(_))));
        assert!(c.iter().all(|c| !matches!(c, Change::AddAddress(_))));
        o.foreign_routes = vec![crate::model::ForeignRoute {
            route: d.routes[1].clone(),
            protocol: 4,
        }];
        let err = reconcile(&d, &o).unwrap_err();
        assert_eq!(err.len(), 1);
        assert!(
            err[0].message.contains("not eniroute's"),
            "{}",
            err[0].message
        );
    }

    #[test]
    fn inverse_undoes() {
        let (d, _) = setup();
        let c = Change::AddRoute(d.routes[0].clone());
        assert_eq!(c.inverse().inverse(), c);
        assert_eq!(c.inverse(), Change::DelRoute(d.routes[0].clone()));
    }

    #[test]
    fn flush_removes_only_owned_rules_routes_addresses_in_order() {
        let (d, o) = setup();
        let mut o = converged(&d, o);
        o.foreign_rules = d.rules.clone();
        let c = flush(&o);
        assert_eq!(c.len(), d.rules.len() + d.routes.len() + d.addresses.len());
        let phases: Vec<u8> = c.iter().map(Change::phase).collect();
        assert!(phases.windows(2).all(|w| w[0] <= w[1]));
    }
}
