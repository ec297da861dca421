//! Root-free tests of [containers] in the shell: the table is made once and a re-apply sends
//! nothing, a failed apply puts the previous table back, flush deletes it, marked lookups are
//! verified, and a foreign rule on eniroute's mark bits is refused before any change.

use super::fake::{Fake, Fault};
use super::tests::{apply, block, cfg, state};
use super::*;
use crate::model::nft::{ForeignMark, NftObserved};
use crate::model::{Change, Family, FwMark, Rule};

const CFG: &str = r#"
[[eni]]
name = "eth1"
interface = "eth1"
primary = true
cidr = "192.168.10.0/24"
gateway = "192.168.10.253"
private_ips = ["192.168.10.21"]

[[eni]]
name = "eth2"
interface = "eth2"
cidr = "192.168.20.0/24"
gateway = "192.168.20.253"
private_ips = ["192.168.20.5", "192.168.20.6"]

[containers]
[[containers.egress]]
network = "172.17.0.0/16"
eni = "eth2"
"#;

fn fake() -> Fake {
    let knobs = ["rp_filter", "arp_ignore", "arp_announce"];
    let paths: Vec<(String, &str)> = ["eth1", "eth2"]
        .iter()
        .flat_map(|i| {
            knobs
                .iter()
                .map(move |k| (format!("net/ipv4/conf/{i}/{k}"), "0"))
        })
        .collect();
    let refs: Vec<(&str, &str)> = paths.iter().map(|(p, v)| (p.as_str(), *v)).collect();
    Fake::with_links(&["eth1", "eth2"], &refs)
}

fn table_changes(changes: &[Change]) -> usize {
    changes
        .iter()
        .filter(|c| matches!(c, Change::SetTable { .. }))
        .count()
}

#[test]
fn the_table_is_made_once_verified_by_mark_and_a_reapply_sends_nothing() {
    let (k, st, c) = (fake(), state(), cfg(CFG));
    let r = apply(&k, &st, &c).unwrap();
    assert_eq!(table_changes(&r.applied), 1);
    assert!(k.state.borrow().nft.table.is_some());
    let marks: Vec<&Verdict> = r.verification.iter().filter(|v| v.mark.is_some()).collect();
    assert_eq!(marks.len(), 2, "one marked lookup per ENI");
    assert!(marks.iter().all(|v| v.ok), "{marks:?}");
    let before = k.log.borrow().len();
    let again = apply(&k, &st, &c).unwrap();
    assert!(again.applied.is_empty());
    assert_eq!(
        k.log.borrow().len(),
        before,
        "a no-op re-apply sends nothing"
    );
    // Flush deletes the table, with the rest.
    let f = block(flush_once(&k, &st)).unwrap();
    assert_eq!(table_changes(&f.removed), 1);
    assert_eq!(k.state.borrow().nft, NftObserved::default());
    assert!(k.state.borrow().rules.is_empty());
    st.remove();
}

#[test]
fn a_failed_apply_puts_the_previous_table_back() {
    let (k, st) = (fake(), state());
    apply(&k, &st, &cfg(CFG)).unwrap();
    let before = k.snapshot();
    // A changed config (another SNAT source, one private IP fewer) whose apply fails on
    // removing a rule, after the table was replaced.
    let changed = CFG
        .replace(
            "eni = \"eth2\"",
            "eni = \"eth2\"\nsource = \"192.168.20.6\"",
        )
        .replace("[\"192.168.20.5\", \"192.168.20.6\"]", "[\"192.168.20.6\"]");
    k.faults
        .borrow_mut()
        .push(Fault::Change("from 192.168.20.5 lookup", 1));
    let err = apply(&k, &st, &cfg(&changed));
    let Err(OpError::RolledBack(f)) = err else {
        panic!("{err:?}")
    };
    // The fake's log: the table replaced, then replaced back.
    let log = k.log.borrow();
    let tables: Vec<&String> = log.iter().filter(|l| l.starts_with("~ nftables")).collect();
    assert_eq!(tables.len(), 2, "{log:#?}");
    assert!(
        tables[0].contains("snat ip to 192.168.20.6")
            && tables[1].contains("snat ip to 192.168.20.5")
    );
    drop(log);
    assert!(f.undo_errors.is_empty());
    assert_eq!(
        k.snapshot(),
        before,
        "the previous table and every object are back"
    );
    st.remove();
}

#[test]
fn a_foreign_fwmark_rule_or_nft_mark_on_the_mask_is_a_conflict_before_any_change() {
    let (k, st, c) = (fake(), state(), cfg(CFG));
    k.state.borrow_mut().foreign_rules.push(Rule {
        family: Family::V4,
        priority: 100,
        from: None,
        table: 77,
        suppress_prefixlength: None,
        fwmark: Some(FwMark {
            mark: 0x800,
            mask: 0xc00,
        }),
    });
    let before = k.snapshot();
    let err = apply(&k, &st, &c);
    match err {
        Err(OpError::Conflicts(c)) => assert!(
            c[0].message.contains("overlap containers.mark_mask"),
            "{c:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(k.snapshot(), before);
    k.state.borrow_mut().foreign_rules.clear();
    k.state.borrow_mut().nft.foreign_marks.push(ForeignMark {
        chain: "ip kube-proxy mark-for-masquerade".into(),
        bits: 0x4000,
    });
    apply(&k, &st, &c).unwrap();
    k.state.borrow_mut().nft.foreign_marks.push(ForeignMark {
        chain: "ip filter x".into(),
        bits: u32::MAX,
    });
    assert!(matches!(
        block(plan_once(&k, &st, &c)),
        Err(OpError::Conflicts(_))
    ));
    st.remove();
}

#[test]
fn other_tables_marks_are_read_only_for_marking_configs_and_not_in_heals() {
    let (k, st, c) = (fake(), state(), cfg(CFG));
    // A mark on the mask that a heal would not see: only a scanning pass refuses.
    k.state.borrow_mut().nft.foreign_marks.push(ForeignMark {
        chain: "ip filter x".into(),
        bits: u32::MAX,
    });
    let heal = ApplyOptions {
        skip_mark_scan: true,
        ..Default::default()
    };
    assert!(block(apply_once(&k, &st, &c, &heal)).is_ok());
    let r = apply(&k, &st, &c);
    assert!(matches!(r, Err(OpError::Conflicts(_))), "{r:?}");
    // Without [containers] the marks are not eniroute's business: no scan, no conflict.
    let plain = cfg(super::tests::CFG);
    assert!(block(plan_once(&k, &st, &plain)).is_ok());
    st.remove();
}
