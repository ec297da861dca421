//! Root-free tests of the shell's cores against the fake kernel: convergence and idempotency,
//! rollback order and completeness, saved-sysctl bookkeeping, flush retries, waiting for ENIs.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::fake::{Fake, Fault};
use super::*;
use crate::config::load_str;
use crate::model::{Change, Family, HostLink, Knob};

/// The saved original of a per-interface IPv4 knob, by the name the link had when saved.
fn original(st: &State, iface: &str, knob: Knob) -> Option<String> {
    let saved = st.saved().unwrap();
    (saved.sysctls.iter())
        .find(|s| {
            s.family == Family::V4
                && s.knob == knob
                && s.link.as_ref().is_some_and(|l| l.name == iface)
        })
        .map(|s| s.value.clone())
}

pub(super) const CFG: &str = r#"
[[eni]]
name = "eth1"
interface = "eth1"
cidr = "192.168.10.0/24"
gateway = "192.168.10.253"
private_ips = ["192.168.10.21", "192.168.10.22"]

[[eni]]
name = "eth2"
interface = "eth2"
mode = "multi-eip"
cidr = "192.168.20.0/24"
gateway = "192.168.20.253"
private_ips = ["192.168.20.5"]
[[eni.eip]]
address = "47.96.1.2"
"#;

pub(super) fn cfg(text: &str) -> Config {
    load_str(text, "t.toml").unwrap().config
}

fn sysctls() -> Vec<(&'static str, &'static str)> {
    let mut v = Vec::new();
    for i in ["eth1", "eth2"] {
        for (k, val) in [
            ("rp_filter", "1"),
            ("arp_ignore", "0"),
            ("arp_announce", "0"),
        ] {
            let p: &'static str = Box::leak(format!("net/ipv4/conf/{i}/{k}").into_boxed_str());
            v.push((p, val));
        }
    }
    v
}

pub(super) fn fake() -> Fake {
    Fake::with_links(&["eth1", "eth2"], &sysctls())
}

pub(super) fn state() -> State {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "eniroute-ops-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    State::at(dir)
}

fn foreign(route: crate::model::Route) -> crate::model::ForeignRoute {
    crate::model::ForeignRoute { route, protocol: 4 }
}

/// A device route through the fake's eth1 (index 2).
fn eth1_route(table: u32, dst: &str, scope: crate::model::Scope) -> crate::model::Route {
    crate::model::Route {
        table,
        dst: dst.parse().unwrap(),
        metric: 0,
        scope,
        src: None,
        nexthops: vec![crate::model::NextHop {
            gateway: None,
            iface: crate::model::Iface {
                name: "eth1".into(),
                index: 2,
            },
            weight: 1,
            onlink: false,
        }],
    }
}

pub(super) fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

pub(super) fn apply(k: &Fake, st: &State, c: &Config) -> Result<ApplyReport, OpError> {
    block(apply_once(k, st, c, &ApplyOptions::default()))
}

#[test]
fn apply_converges_verifies_and_a_second_apply_changes_nothing() {
    let (k, st, c) = (fake(), state(), cfg(CFG));
    let r = apply(&k, &st, &c).unwrap();
    assert!(!r.applied.is_empty());
    assert!(!r.verification.is_empty() && r.verification.iter().all(|v| v.ok));
    assert_eq!(
        k.sysctls.borrow()["net/ipv4/conf/eth1/rp_filter"],
        "2",
        "loose rp_filter by default"
    );
    let before = k.log.borrow().len();
    let again = apply(&k, &st, &c).unwrap();
    assert!(again.plan.is_empty() && again.applied.is_empty());
    // Nothing but lookups: no batch, change or sysctl write.
    assert_eq!(k.log.borrow().len(), before);
    assert!(block(plan_once(&k, &st, &c)).unwrap().is_empty());
    st.remove();
}

#[test]
fn a_refused_change_rolls_back_everything_newest_first() {
    let (k, st, c) = (fake(), state(), cfg(CFG));
    let before = k.snapshot();
    // The first rule fails: addresses and routes were already made.
    k.faults.borrow_mut().push(Fault::Change(
        "rule add priority 20200 from 192.168.20.5",
        17,
    ));
    let Err(OpError::RolledBack(f)) = apply(&k, &st, &c) else {
        panic!("apply should fail and roll back");
    };
    assert!(matches!(f.cause, Cause::Kernel(_)));
    assert!(f.undone > 0 && f.undo_errors.is_empty());
    assert!(f.report.rolled_back);
    assert_eq!(k.snapshot(), before, "the host is as before");
    // Undo ran in reverse: the last change made is the first one undone.
    let log = k.log.borrow();
    let made: Vec<&String> = log.iter().filter(|l| l.starts_with('+')).collect();
    let undone: Vec<&String> = log.iter().filter(|l| l.starts_with('-')).collect();
    assert_eq!(made.len(), undone.len());
    // The same object, made with `add` and undone with `del`.
    let object = |l: &str| l[1..].replacen(" add ", " ", 1).replacen(" del ", " ", 1);
    assert_eq!(object(made[made.len() - 1]), object(undone[0]));
    assert_eq!(object(made[0]), object(undone[undone.len() - 1]));
    assert!(!st.dir().join("sysctl.json").exists(), "nothing saved");
    st.remove();
}

#[test]
fn a_refused_sysctl_undoes_changes_and_the_sysctls_already_written() {
    let (k, st, c) = (fake(), state(), cfg(CFG));
    let before = k.snapshot();
    k.faults
        .borrow_mut()
        .push(Fault::SysctlWrite("net/ipv4/conf/eth2/arp_announce"));
    let Err(OpError::RolledBack(f)) = apply(&k, &st, &c) else {
        panic!("apply should fail and roll back");
    };
    assert!(matches!(f.cause, Cause::Sysctl(_)));
    assert_eq!(k.snapshot(), before);
    st.remove();
}

#[test]
fn a_verification_failure_rolls_back() {
    let (k, st, c) = (fake(), state(), cfg(CFG));
    // A foreign rule before eniroute's layers sends everything to a table of its own.
    k.state.borrow_mut().foreign_rules.push(crate::model::Rule {
        family: crate::model::Family::V4,
        priority: 100,
        from: None,
        table: 77,
        suppress_prefixlength: None,
        fwmark: None,
    });
    k.state.borrow_mut().foreign_routes.push(foreign(eth1_route(
        77,
        "0.0.0.0/1",
        crate::model::Scope::Universe,
    )));
    let before = k.snapshot();
    let Err(OpError::RolledBack(f)) = apply(&k, &st, &c) else {
        panic!("verification should fail");
    };
    assert!(matches!(f.cause, Cause::Verification));
    assert!(f.report.verification.iter().any(|v| !v.ok));
    assert_eq!(k.snapshot(), before);
    st.remove();
}

#[test]
fn originals_are_saved_once_and_restored_by_flush() {
    let (k, st, c) = (fake(), state(), cfg(CFG));
    apply(&k, &st, &c).unwrap();
    let saved = st.saved().unwrap();
    assert_eq!(original(&st, "eth1", Knob::RpFilter).as_deref(), Some("1"));
    // Drift, then apply again: the original stays the one from before eniroute.
    k.sysctls
        .borrow_mut()
        .insert("net/ipv4/conf/eth1/rp_filter".into(), "0".into());
    apply(&k, &st, &c).unwrap();
    assert_eq!(st.saved().unwrap(), saved);
    let r = block(flush_once(&k, &st)).unwrap();
    assert!(r.errors.is_empty());
    assert_eq!(r.restored.len(), 6);
    assert_eq!(k.sysctls.borrow()["net/ipv4/conf/eth1/rp_filter"], "1");
    assert!(!st.dir().join("sysctl.json").exists());
    let o = k.state.borrow();
    assert!(o.addresses.is_empty() && o.routes.is_empty() && o.rules.is_empty());
    drop(o);
    st.remove();
}

#[test]
fn a_sysctl_no_longer_wanted_is_put_back() {
    let (k, st, c) = (fake(), state(), cfg(CFG));
    apply(&k, &st, &c).unwrap();
    let keep = cfg(&format!("[routing]\nrp_filter = \"keep\"\n{CFG}"));
    let plan = block(plan_once(&k, &st, &keep)).unwrap();
    assert_eq!(plan.restores.len(), 2, "{plan:?}");
    apply(&k, &st, &keep).unwrap();
    assert_eq!(k.sysctls.borrow()["net/ipv4/conf/eth2/rp_filter"], "1");
    assert_eq!(original(&st, "eth2", Knob::RpFilter), None);
    st.remove();
}

#[test]
fn flush_counts_already_gone_objects_and_reports_real_errors() {
    let (k, st, c) = (fake(), state(), cfg(CFG));
    apply(&k, &st, &c).unwrap();
    // One rule refuses removal with EPERM; everything else still goes.
    k.faults.borrow_mut().push(Fault::Change(
        "rule del priority 20000 from 192.168.20.5",
        1,
    ));
    let r = block(flush_once(&k, &st)).unwrap();
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    assert_eq!(k.state.borrow().rules.len(), 1);
    assert!(k.state.borrow().addresses.is_empty());
    st.remove();
}

#[test]
fn a_late_eni_is_waited_for_and_a_missing_one_is_exit_69() {
    let (k, st, c) = (Fake::with_links(&["eth1"], &sysctls()), state(), cfg(CFG));
    let Err(e) = apply(&k, &st, &c) else {
        panic!("eth2 is missing");
    };
    assert!(matches!(e, OpError::Missing(_)));
    assert_eq!(e.exit_code(), exit::NOT_FOUND);
    k.late_links.borrow_mut().push(HostLink {
        name: "eth2".into(),
        index: 9,
        mac: None,
        up: false,
    });
    let opts = ApplyOptions {
        wait: Some(std::time::Duration::from_secs(5)),
        ..Default::default()
    };
    let r = block(apply_once(&k, &st, &c, &opts)).unwrap();
    assert!(r.applied.contains(&Change::LinkUp(crate::model::Iface {
        name: "eth2".into(),
        index: 9
    })));
    st.remove();
}

#[test]
fn every_original_is_saved_before_its_sysctl_is_written() {
    let (k, st, c) = (fake(), state(), cfg(CFG));
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let (st2, seen2) = (st.clone(), seen.clone());
    *k.on_sysctl_write.borrow_mut() = Some(Box::new(move |path: &str| {
        // What a kill right now would leave on disk.
        let saved = st2.saved().unwrap();
        let iface = path.split('/').nth(3).unwrap_or_default().to_string();
        let has = saved.sysctls.iter().any(|s| {
            s.link.as_ref().is_some_and(|l| l.name == iface) && path.ends_with(s.knob.file())
        });
        seen2.borrow_mut().push((path.to_string(), has));
    }));
    apply(&k, &st, &c).unwrap();
    let seen = seen.borrow();
    assert_eq!(seen.len(), 6);
    assert!(seen.iter().all(|(_, has)| *has), "{seen:?}");
    st.remove();
}

#[test]
fn a_renamed_interface_keeps_its_saved_originals() {
    let (k, st, c) = (fake(), state(), cfg(CFG));
    apply(&k, &st, &c).unwrap();
    // eth1 becomes ens6 (same MAC): flush restores the sysctls of ens6.
    for l in k
        .state
        .borrow_mut()
        .links
        .iter_mut()
        .filter(|l| l.name == "eth1")
    {
        l.name = "ens6".into();
    }
    let moved: Vec<(String, String)> = (k.sysctls.borrow().iter())
        .filter(|(p, _)| p.contains("/eth1/"))
        .map(|(p, v)| (p.replace("/eth1/", "/ens6/"), v.clone()))
        .collect();
    k.sysctls.borrow_mut().retain(|p, _| !p.contains("/eth1/"));
    k.sysctls.borrow_mut().extend(moved);
    let r = block(flush_once(&k, &st)).unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(k.sysctls.borrow()["net/ipv4/conf/ens6/rp_filter"], "1");
    assert_eq!(k.sysctls.borrow()["net/ipv4/conf/ens6/arp_announce"], "0");
    st.remove();
}

#[test]
fn an_interrupted_apply_sends_nothing_more_and_rolls_back() {
    let (k, st, c) = (fake(), state(), cfg(CFG));
    let before = k.snapshot();
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The signal arrives while the second batch is in flight.
    *k.interrupt_at_batch.borrow_mut() = Some((2, flag.clone()));
    let opts = ApplyOptions {
        interrupted: Some(flag),
        ..Default::default()
    };
    let Err(OpError::RolledBack(f)) = block(apply_once(&k, &st, &c, &opts)) else {
        panic!("the pass should stop");
    };
    assert!(matches!(f.cause, Cause::Interrupted));
    assert_eq!(k.snapshot(), before);
    let batches = k
        .log
        .borrow()
        .iter()
        .filter(|l| l.starts_with("batch"))
        .count();
    assert_eq!(batches, 2, "no batch after the signal");
    assert!(k.log.borrow().iter().all(|l| !l.starts_with("sysctl")));
    st.remove();
}

#[test]
fn a_corrupt_saved_state_stops_apply_and_flush() {
    let (k, st, c) = (fake(), state(), cfg(CFG));
    std::fs::create_dir_all(st.dir()).unwrap();
    std::fs::write(st.dir().join("sysctl.json"), "{garbage").unwrap();
    let e = apply(&k, &st, &c).unwrap_err();
    assert!(
        matches!(e, OpError::Host(crate::host::HostError::Corrupt { .. })),
        "{e:?}"
    );
    assert_eq!(e.exit_code(), exit::FAILED);
    assert!(block(flush_once(&k, &st)).is_err());
    assert!(st.dir().join("sysctl.json").exists());
    assert!(k.log.borrow().is_empty(), "nothing was changed");
    st.remove();
}

#[test]
fn status_reports_sysctl_drift_as_plan_would_fix_it() {
    let (k, st, c) = (fake(), state(), cfg(CFG));
    apply(&k, &st, &c).unwrap();
    let ok = block(status_once(&k, &st, &c)).unwrap();
    assert!(ok.healthy() && ok.sysctl_drift.is_empty());
    k.sysctls
        .borrow_mut()
        .insert("net/ipv4/conf/eth1/rp_filter".into(), "1".into());
    let r = block(status_once(&k, &st, &c)).unwrap();
    assert!(!r.healthy());
    assert_eq!(r.pending_changes, 1);
    assert_eq!(r.sysctl_drift[0].path, "net/ipv4/conf/eth1/rp_filter");
    assert_eq!(
        (
            r.sysctl_drift[0].old.as_str(),
            r.sysctl_drift[0].new.as_str()
        ),
        ("1", "2")
    );
    st.remove();
}

#[test]
fn flush_puts_back_foreign_routes_the_kernel_drops_with_eniroutes_addresses() {
    let (k, st, c) = (fake(), state(), cfg(CFG));
    apply(&k, &st, &c).unwrap();
    // Another program's route through eth1, whose only IPv4 addresses are eniroute's.
    let theirs = foreign(eth1_route(100, "5.6.7.0/24", crate::model::Scope::Link));
    k.state.borrow_mut().foreign_routes.push(theirs.clone());
    let r = block(flush_once(&k, &st)).unwrap();
    assert_eq!(r.restored_routes, vec![theirs.route.clone()]);
    assert!(r.warnings.is_empty() && r.errors.is_empty());
    assert_eq!(k.state.borrow().foreign_routes, vec![theirs]);
    assert!(k
        .log
        .borrow()
        .iter()
        .any(|l| l.starts_with("restore 5.6.7.0/24") && l.ends_with("proto 4")));
    st.remove();
}
