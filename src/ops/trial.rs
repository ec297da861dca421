//! `apply --try` (like `netplan try`): apply, then keep the routing only if confirmed within a
//! window (Enter, or `eniroute confirm` sending SIGUSR1), else roll back with apply's own
//! rollback; and `confirm` itself. May import what ops may; wording lives in output.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::apply::{apply_pass, ApplyOptions, ApplyReport, Cause, Pass};
use super::OpError;
use crate::host::{PendingTry, State, TryOutcome};
use crate::kernel::Kernel;
use crate::model::{Change, Config, Observed};
use crate::plan::Desired;
use crate::reconcile;

/// The shortest and longest window of `apply --try`.
pub const MIN_WINDOW: Duration = Duration::from_secs(1);
pub const MAX_WINDOW: Duration = Duration::from_secs(3600);

/// Told once, with the pending try, when the window opens.
pub type OnWindow = Box<dyn Fn(&PendingTry) + Send + Sync>;

/// Options of `apply --try`.
pub struct TryOptions {
    pub window: Duration,
    /// Set (SIGUSR1 from `eniroute confirm`, or Enter) to keep the routing.
    pub confirmed: Arc<AtomicBool>,
    /// Recorded in the pending file.
    pub netns: Option<String>,
    pub config: String,
    pub on_window: Option<OnWindow>,
}

/// A confirmed try: what it applied, and the pending try it was (None: nothing to confirm, the
/// kernel already matched the config).
#[derive(Debug, Clone, Serialize)]
pub struct TryReport {
    pub report: ApplyReport,
    pub confirmed: Option<PendingTry>,
}

/// How the window ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Confirmed,
    Expired,
    Interrupted,
}

fn epoch_secs() -> u64 {
    (SystemTime::now().duration_since(UNIX_EPOCH)).map_or(0, |d| d.as_secs())
}

/// `apply --try` against `k`; the caller holds the lock, for the whole window.
pub async fn try_once(
    k: &impl Kernel,
    state: &State,
    cfg: &Config,
    opts: &ApplyOptions,
    t: &TryOptions,
) -> Result<TryReport, OpError> {
    let pass = apply_pass(k, state, cfg, opts).await?;
    let r = pass.report();
    if r.plan.is_empty() {
        // Nothing changed: nothing to keep or to roll back.
        let report = r.clone();
        return Ok(TryReport {
            report,
            confirmed: None,
        });
    }
    let after = match observe_now(k).await {
        Ok(a) => a,
        Err(e) => return Err(pass.roll_back_all(Cause::Kernel(e)).await),
    };
    let since = epoch_secs();
    let pending = PendingTry {
        pid: std::process::id(),
        since,
        deadline: since + t.window.as_secs(),
        netns: t.netns.clone(),
        config: t.config.clone(),
        changes: r.applied.len(),
        sysctls: r.plan.sysctls.len() + r.plan.restores.len(),
    };
    if let Err(e) = state.store_pending(&pending) {
        return Err(pass.roll_back_all(Cause::State(e)).await);
    }
    if let Some(tell) = &t.on_window {
        tell(&pending);
    }
    let decision = wait(Instant::now() + t.window, &t.confirmed, &|| {
        opts.interrupted()
    })
    .await;
    let pid = pending.pid;
    if decision == Decision::Confirmed {
        let report = pass.report().clone();
        // The routing stays whatever the file says; a failure to record it is not worth a rollback.
        let _ = state.finish_try(pid, TryOutcome::Kept, epoch_secs());
        return Ok(TryReport {
            report,
            confirmed: Some(pending),
        });
    }
    let failure = roll_back(k, pass, &after, t.window, decision).await;
    let _ = state.finish_try(pid, TryOutcome::RolledBack, epoch_secs());
    Err(failure)
}

/// Poll (every 50 ms) until confirmed, interrupted, or `deadline`; a confirmation beats the
/// others when both are there.
async fn wait(
    deadline: Instant,
    confirmed: &AtomicBool,
    interrupted: &dyn Fn() -> bool,
) -> Decision {
    loop {
        if confirmed.load(Ordering::SeqCst) {
            return Decision::Confirmed;
        }
        if interrupted() {
            return Decision::Interrupted;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Decision::Expired;
        }
        tokio::time::sleep(left.min(Duration::from_millis(50))).await;
    }
}

/// Roll the pass back: its inverse when the kernel's owned objects are still those it left
/// (`after`); when something changed them during the window, converge back to the owned
/// objects of before the pass (inverting blindly would fail on what is gone, and leave what
/// was added). The sysctls and saved originals go back either way.
async fn roll_back<K: Kernel>(
    k: &K,
    pass: Pass<'_, K>,
    after: &Observed,
    window: Duration,
    decision: Decision,
) -> OpError {
    let now = observe_now(k).await.ok();
    let way_back = now
        .as_ref()
        .filter(|now| drifted(now, after))
        .and_then(|now| back_to(pass.before(), now, &pass.report().applied).ok());
    let cause = Cause::NotConfirmed {
        window,
        interrupted: decision == Decision::Interrupted,
        drifted: way_back.is_some(),
    };
    match way_back {
        Some(changes) => pass.roll_back(cause, changes).await,
        None => pass.roll_back_all(cause).await,
    }
}

/// Everything in the kernel now.
async fn observe_now(k: &impl Kernel) -> Result<Observed, crate::kernel::KernelError> {
    k.observe(k.links().await?).await
}

/// The same objects, in whatever order the dumps gave them.
fn same<T: Ord + Clone>(a: &[T], b: &[T]) -> bool {
    let sorted = |v: &[T]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    a.len() == b.len() && sorted(a) == sorted(b)
}

/// Whether eniroute's own objects (or its links' up state) differ between `now` and `after`.
fn drifted(now: &Observed, after: &Observed) -> bool {
    let ups = |o: &Observed| o.links.iter().map(|l| (l.index, l.up)).collect::<Vec<_>>();
    !(same(&now.addresses, &after.addresses)
        && same(&now.routes, &after.routes)
        && same(&now.rules, &after.rules)
        && now.nft.table == after.nft.table
        && same(&ups(now), &ups(after)))
}

/// The changes from `now` back to the objects eniroute owned `before`, with reconcile (the
/// before state as the desired one), and the links the pass set up put down again.
fn back_to(
    before: &Observed,
    now: &Observed,
    applied: &[Change],
) -> Result<Vec<Change>, Vec<reconcile::Conflict>> {
    let desired = Desired {
        addresses: before.addresses.clone(),
        routes: before.routes.clone(),
        rules: before.rules.clone(),
        nft: before.nft.table.clone(),
        ..Desired::default()
    };
    let mut changes = reconcile::reconcile(&desired, now)?;
    // Last, as the inverse would: a link down drops its routes.
    let was_down = |i: u32| (before.links.iter()).any(|l| l.index == i && !l.up);
    let is_up = |i: u32| (now.links.iter()).any(|l| l.index == i && l.up);
    changes.extend(
        (applied.iter())
            .filter_map(|c| match c {
                Change::LinkUp(i) if was_down(i.index) && is_up(i.index) => Some(i),
                _ => None,
            })
            .map(|i| Change::LinkDown(i.clone())),
    );
    Ok(changes)
}

/// What `eniroute confirm` confirmed.
#[derive(Debug, Clone, Serialize)]
pub struct Confirmed {
    pub pending: PendingTry,
}

/// How long confirm waits for the try to end once signalled (keeping is quick; a rollback
/// that had begun takes a pass).
const CONFIRM_WAIT: Duration = Duration::from_secs(60);

/// `confirm` in the namespace of `state`: signal the pending try and wait for its outcome.
pub fn confirm_in(state: &State) -> Result<Confirmed, OpError> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let pending = state.pending()?.ok_or(OpError::NoPendingTry)?;
    let pid = Pid::from_raw(pending.pid as i32);
    kill(pid, Signal::SIGUSR1).map_err(|e| OpError::Signal(e.into()))?;
    let started = Instant::now();
    // Until the try has recorded its outcome and removed its file (or died).
    while state.try_pending_file() && kill(pid, None).is_ok() {
        if started.elapsed() > CONFIRM_WAIT {
            return Err(OpError::TryUnanswered { pid: pending.pid });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    match state.try_result(pending.pid).map(|r| r.outcome) {
        Some(TryOutcome::Kept) => Ok(Confirmed { pending }),
        Some(TryOutcome::RolledBack) => Err(OpError::TooLate { pid: pending.pid }),
        None => Err(OpError::TryUnanswered { pid: pending.pid }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::tests::{block, cfg, fake, state, CFG};

    fn options(window: Duration, confirmed: bool) -> TryOptions {
        TryOptions {
            window,
            confirmed: Arc::new(AtomicBool::new(confirmed)),
            netns: None,
            config: "t.toml".into(),
            on_window: None,
        }
    }

    #[test]
    fn a_confirmed_try_keeps_the_routing() {
        let (k, st, c) = (fake(), state(), cfg(CFG));
        let before = k.snapshot();
        let t = options(Duration::from_secs(60), true);
        let r = block(try_once(&k, &st, &c, &ApplyOptions::default(), &t)).unwrap();
        let pending = r.confirmed.expect("confirmed");
        assert_eq!(pending.changes, r.report.applied.len());
        assert_ne!(k.snapshot(), before, "the routing stays");
        assert!(!st.try_pending_file());
        let outcome = st.try_result(pending.pid).map(|r| r.outcome);
        assert_eq!(outcome, Some(TryOutcome::Kept));
        // Nothing left to try: no window opens, nothing is confirmed.
        let again = block(try_once(&k, &st, &c, &ApplyOptions::default(), &t)).unwrap();
        assert!(again.confirmed.is_none() && again.report.plan.is_empty());
        st.remove();
    }

    #[test]
    fn an_unconfirmed_try_rolls_everything_back_when_the_window_closes() {
        let (k, st, c) = (fake(), state(), cfg(CFG));
        let before = k.snapshot();
        let t = options(Duration::from_millis(60), false);
        let Err(OpError::RolledBack(f)) =
            block(try_once(&k, &st, &c, &ApplyOptions::default(), &t))
        else {
            panic!("an unconfirmed try rolls back");
        };
        let Cause::NotConfirmed {
            interrupted,
            drifted,
            ..
        } = f.cause
        else {
            panic!("cause: {:?}", f.cause);
        };
        assert!(!interrupted && !drifted);
        assert!(f.undo_errors.is_empty(), "{:?}", f.undo_errors);
        assert_eq!(
            k.snapshot(),
            before,
            "routes, rules, addresses and sysctls as before"
        );
        assert!(!st.try_pending_file());
        st.remove();
    }

    #[test]
    fn a_try_whose_routing_changed_meanwhile_converges_back_to_before() {
        let (k, st, c) = (fake(), state(), cfg(CFG));
        let before = k.snapshot();
        let t = options(Duration::from_millis(300), false);
        let meddle = async {
            // Once the window is open, another program deletes one of eniroute's rules and
            // one of its routes.
            while !st.try_pending_file() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let mut s = k.state.borrow_mut();
            s.rules.pop().expect("an owned rule");
            s.routes.pop().expect("an owned route");
        };
        let opts = ApplyOptions::default();
        let (result, ()) = block(async { tokio::join!(try_once(&k, &st, &c, &opts, &t), meddle) });
        let Err(OpError::RolledBack(f)) = result else {
            panic!("an unconfirmed try rolls back");
        };
        assert!(matches!(f.cause, Cause::NotConfirmed { drifted: true, .. }));
        assert!(
            f.undo_errors.is_empty(),
            "nothing undone twice: {:?}",
            f.undo_errors
        );
        assert_eq!(k.snapshot(), before);
        st.remove();
    }

    #[test]
    fn a_signal_during_the_window_rolls_back_at_once() {
        let (k, st, c) = (fake(), state(), cfg(CFG));
        let before = k.snapshot();
        let flag = Arc::new(AtomicBool::new(false));
        let opts = ApplyOptions {
            interrupted: Some(flag.clone()),
            ..Default::default()
        };
        let t = options(Duration::from_secs(3600), false);
        let signal = async {
            while !st.try_pending_file() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            flag.store(true, Ordering::SeqCst);
        };
        let started = Instant::now();
        let (result, ()) = block(async { tokio::join!(try_once(&k, &st, &c, &opts, &t), signal) });
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not the whole window"
        );
        let Err(OpError::RolledBack(f)) = result else {
            panic!("an interrupted try rolls back");
        };
        assert!(matches!(
            f.cause,
            Cause::NotConfirmed {
                interrupted: true,
                ..
            }
        ));
        assert_eq!(k.snapshot(), before);
        st.remove();
    }

    #[test]
    fn confirm_without_a_pending_try_says_so() {
        let st = state();
        assert!(matches!(confirm_in(&st), Err(OpError::NoPendingTry)));
    }
}
