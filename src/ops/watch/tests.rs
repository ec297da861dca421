//! The daemon's decisions and its loop, root-free: the pure policy (what matters, echoes,
//! backoff, heal summaries) and `watch_once` against the fake kernel with a scripted source.

use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::policy::{backoff, heals, Echoes, Fights, Interest, Key, MAX_BACKOFF};
use super::*;
use crate::config::load_str;
use crate::kernel::events::Event;
use crate::model::{Change, Family, HostLink};
use crate::ops::fake::Fake;
use crate::ops::tests::{block, state};

const CFG: &str = r#"
[[eni]]
name = "eth1"
interface = "eth1"
cidr = "192.168.10.0/24"
gateway = "192.168.10.253"
private_ips = ["192.168.10.21", "192.168.10.22"]
"#;

fn cfg() -> Config {
    load_str(CFG, "t.toml").unwrap().config
}

fn fake() -> Fake {
    let sysctls: Vec<(&str, &str)> = ["rp_filter", "arp_ignore", "arp_announce"]
        .iter()
        .map(|k| {
            let p: &'static str = Box::leak(format!("net/ipv4/conf/eth1/{k}").into_boxed_str());
            (p, "0")
        })
        .collect();
    Fake::with_links(&["eth1"], &sysctls)
}

fn interest() -> Interest {
    let (c, k) = (cfg(), fake());
    let links = k.state.borrow().links.clone();
    Interest::of(&c, &plan::desired(&c, Some(&links)))
}

fn rule_event(priority: u32, protocol: u8, removed: bool) -> Event {
    Event::Rule {
        family: Family::V4,
        table: 20001,
        priority,
        protocol,
        removed,
    }
}

#[test]
fn what_matters_is_eniroutes_losses_and_foreign_objects_in_its_way() {
    let i = interest();
    assert!(
        i.matters(&rule_event(20200, 225, true)),
        "an owned rule deleted"
    );
    assert!(
        !i.matters(&rule_event(20200, 225, false)),
        "an owned rule added: an echo"
    );
    assert!(
        i.matters(&rule_event(20200, 3, false)),
        "a foreign rule at its priority"
    );
    let route = |table, protocol, removed| Event::Route {
        family: Family::V4,
        table,
        protocol,
        removed,
    };
    assert!(i.matters(&route(20001, 225, true)));
    assert!(!i.matters(&route(20001, 225, false)));
    assert!(
        i.matters(&route(20001, 4, false)),
        "a foreign route in its table"
    );
    assert!(
        !i.matters(&route(1000, 4, false)),
        "a route in a foreign table"
    );
    assert!(
        !i.matters(&route(254, 225, true)),
        "the main table is not eniroute's"
    );
    let (link, addr) = (
        |index| Event::Link {
            index,
            removed: false,
        },
        |index| Event::Address {
            index,
            removed: true,
        },
    );
    assert!(
        i.matters(&link(2)) && i.matters(&addr(2)),
        "eth1 is index 2"
    );
    assert!(!i.matters(&link(9)) && !i.matters(&addr(9)));
    let waiting = Interest {
        missing: true,
        ..interest()
    };
    assert!(
        waiting.matters(&link(9)),
        "any new link may be the awaited ENI"
    );
    assert!(Interest::unknown().matters(&route(1000, 4, false)));
}

#[test]
fn its_own_changes_echo_back_and_are_ignored_once_each() {
    let (c, k) = (cfg(), fake());
    let links = k.state.borrow().links.clone();
    let d = plan::desired(&c, Some(&links));
    let applied = vec![
        Change::AddRule(d.rules[0].clone()),
        Change::DelRule(d.rules[0].clone()),
        Change::LinkUp(d.links_up[0].clone()),
    ];
    let mut e = Echoes::default();
    let now = Instant::now();
    e.expect(&applied, now);
    let r = d.rules[0].clone();
    let ev = |removed| Event::Rule {
        family: r.family,
        table: r.table,
        priority: r.priority,
        protocol: 225,
        removed,
    };
    let link = Event::Link {
        index: 2,
        removed: false,
    };
    // Two echoes of the rule expected; the third notification is someone else's.
    let left = e.absorb(vec![ev(false), link, link, ev(true), ev(true)], now);
    assert_eq!(left, vec![ev(true)]);
    // After the window, nothing is an echo.
    e.expect(&applied, now);
    let later = now + Duration::from_secs(2);
    assert_eq!(e.absorb(vec![link], later), vec![link]);
}

#[test]
fn backoff_doubles_from_the_second_repeat_and_is_capped() {
    assert_eq!(backoff(1), Duration::ZERO);
    assert_eq!(backoff(2), Duration::ZERO);
    assert_eq!(backoff(3), Duration::from_millis(50));
    assert_eq!(backoff(4), Duration::from_millis(100));
    assert_eq!(backoff(9), Duration::from_millis(3200));
    assert_eq!(backoff(10), MAX_BACKOFF);
    assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
}

#[test]
fn a_fought_object_waits_its_backoff_while_others_are_served_at_once() {
    let (c, k) = (cfg(), fake());
    let links = k.state.borrow().links.clone();
    let d = plan::desired(&c, Some(&links));
    let rule = d.rules[0].clone();
    let heal = vec![Change::AddRule(rule.clone())];
    let mut f = Fights::default();
    let t0 = Instant::now();
    let ev = rule_event(rule.priority, 225, true);
    let ev = match ev {
        Event::Rule {
            family,
            priority,
            protocol,
            removed,
            ..
        } => Event::Rule {
            family,
            table: rule.table,
            priority,
            protocol,
            removed,
        },
        e => e,
    };
    assert_eq!(f.earliest(&[ev], t0), t0, "never healed: at once");
    let mut warnings = Vec::new();
    for n in 0..6 {
        warnings.extend(f.record(&heal, t0 + Duration::from_millis(10 * n)));
    }
    assert_eq!(warnings.len(), 1, "one warning per window: {warnings:?}");
    assert!(warnings[0].object.contains(&rule.priority.to_string()));
    let now = t0 + Duration::from_millis(50);
    assert!(f.earliest(&[ev], now) > now, "six heals in a row: back off");
    let other = Event::Address {
        index: 2,
        removed: true,
    };
    assert_eq!(f.earliest(&[ev, other], now), now, "anything else: at once");
    // Quiet for a second past the backoff ends the fight.
    let quiet = t0 + Duration::from_secs(2);
    assert_eq!(f.earliest(&[ev], quiet), quiet);
    assert_eq!(Key::of_event(&ev), Key::of_change(&heal[0]));
}

#[test]
fn a_heal_is_summarised_per_interface() {
    let (c, k) = (cfg(), fake());
    let links: Vec<HostLink> = k.state.borrow().links.clone();
    let d = plan::desired(&c, Some(&links));
    let mut applied: Vec<Change> = d.rules.iter().cloned().map(Change::AddRule).collect();
    applied.push(Change::AddRoute(d.routes[0].clone()));
    applied.push(Change::AddAddress(d.addresses[0].clone()));
    let h = heals(&applied, &d, &links);
    let eth1 = h.iter().find(|h| h.iface == "eth1").unwrap();
    assert_eq!((eth1.routes, eth1.addresses), (1, 1));
    // `lookup main suppress_prefixlength 0` belongs to no one ENI.
    let shared = h.iter().find(|h| h.iface != "eth1").unwrap();
    assert_eq!(eth1.rules + shared.rules, d.rules.len());
    assert_eq!(shared.rules, 1);
}

/// One step of a script: what another program does to the kernel, and what wakes the loop.
type Step = (fn(&Fake), Wake);

/// A scripted source: each step changes the fake kernel (as another program would), then
/// wakes the loop; when the script ends, it stops.
struct Script<'a> {
    k: &'a Fake,
    steps: VecDeque<Step>,
    waits: Vec<Duration>,
}

impl Source for Script<'_> {
    async fn wait(&mut self, timeout: Duration) -> Result<Wake, KernelError> {
        self.waits.push(timeout);
        Ok(match self.steps.pop_front() {
            Some((change, wake)) => {
                change(self.k);
                wake
            }
            None => Wake::Stop,
        })
    }
}

fn options(path: &str) -> WatchOptions {
    WatchOptions {
        resync: Duration::from_secs(300),
        lock_timeout: Duration::ZERO,
        keepalive: None,
        ready_grace: Duration::from_secs(60),
        config_path: path.into(),
        stop: Arc::new(AtomicBool::new(false)),
        reload: Arc::new(AtomicBool::new(false)),
        pending: Arc::new(std::sync::Mutex::new(None)),
    }
}

/// Run the loop through `steps`; what it said, and how long it waited each time.
fn run(
    k: &Fake,
    st: &State,
    steps: Vec<Step>,
    opts: &WatchOptions,
) -> (Vec<String>, Vec<Duration>) {
    let mut src = Script {
        k,
        steps: steps.into(),
        waits: Vec::new(),
    };
    let mut seen = Vec::new();
    let mut on = |e: &WatchEvent| seen.push(format!("{e:?}"));
    block(watch_once(k, st, cfg(), &mut src, opts, &mut on)).unwrap();
    (seen, src.waits)
}

fn delete_rules(k: &Fake) {
    k.state.borrow_mut().rules.clear();
}

#[test]
fn the_loop_converges_heals_a_loss_ignores_echoes_and_stops() {
    let (k, st) = (fake(), state());
    let echo = Event::Rule {
        family: Family::V4,
        table: 20001,
        priority: 20200,
        protocol: 225,
        removed: false,
    };
    let steps: Vec<Step> = vec![
        (|_| {}, Wake::Events(vec![echo])),
        (
            delete_rules,
            Wake::Events(vec![rule_event(20200, 225, true)]),
        ),
        (|_| {}, Wake::Quiet),
    ];
    let (seen, waits) = run(&k, &st, steps, &options("/nonexistent"));
    // Idle, the only timer is the resync.
    assert!(
        waits.iter().all(|w| *w > Duration::from_secs(200)),
        "{waits:?}"
    );
    let kinds: Vec<&str> = seen
        .iter()
        .map(|s| s.split([' ', '(']).next().unwrap())
        .collect();
    assert_eq!(kinds, ["Converged", "Healed", "Stopping"], "{seen:#?}");
    assert!(
        seen[1].contains(r#"iface: "eth1", rules: 4"#),
        "{}",
        seen[1]
    );
    assert!(!k.state.borrow().rules.is_empty(), "rules re-added");
    assert_eq!(st.watch(), None, "the status file goes with the daemon");
    st.remove();
}

#[test]
fn an_overrun_resyncs_and_a_bad_reload_keeps_the_config() {
    let (k, st) = (fake(), state());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eniroute.toml");
    std::fs::write(&path, "[[eni]]\nname = 1\n").unwrap();
    let opts = options(path.to_str().unwrap());
    let steps: Vec<Step> = vec![
        (delete_rules, Wake::Overrun),
        (|_| {}, Wake::Reload),
        (
            delete_rules,
            Wake::Events(vec![rule_event(20000, 225, true)]),
        ),
        (
            delete_rules,
            Wake::Events(vec![rule_event(20000, 225, true)]),
        ),
    ];
    let (seen, waits) = run(&k, &st, steps, &opts);
    assert!(
        seen.iter().any(|s| s.starts_with("Resync(Overrun)")),
        "{seen:#?}"
    );
    assert!(
        seen.iter().any(|s| s.starts_with("ReloadFailed")),
        "{seen:#?}"
    );
    assert!(seen.iter().any(|s| s.starts_with("Healed")), "{seen:#?}");
    // The third loss of the same rules in a row waits its backoff.
    let last = *waits.last().unwrap();
    assert!(last <= backoff(3) && last > Duration::ZERO, "{waits:?}");
    st.remove();
}
