//! The imperative shell: plan, apply, status and flush against one network namespace.
//! May import model, config, plan, reconcile, kernel and host; never output or cli (wording
//! lives in output).
//!
//! Each verb enters the target namespace on a thread of its own (`kernel::netns`), opens one
//! [`Netlink`] client and the namespace's [`State`] there, and runs a core written against the
//! [`Kernel`] trait — so the cores (`apply_once`, `flush_once`, ...) also run against a fake.

mod apply;
mod converge;
#[cfg(test)]
mod fake;
mod flush;
mod status;
mod sysctls;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_containers;
mod trial;
mod verify;
mod watch;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use apply::{apply_once, ApplyOptions, ApplyReport, BatchTrace, Cause, Failure};
pub use converge::{plan_once, PlanReport, WaitProgress};
pub use flush::{flush_once, FlushReport};
pub use status::{
    status_once, ContainersStatus, EniStatus, MarkedCount, Owned, StatusAddress, StatusReport,
};
pub use sysctls::SysctlChange;
pub use trial::{Confirmed, TryOptions, TryReport, MAX_WINDOW, MIN_WINDOW};
pub use verify::Verdict;
pub use watch::{FightWarning, Heal, ResyncWhy, WatchEvent, WatchOptions, MAX_BACKOFF};

use crate::exit::{self, ExitCode};
use crate::host::{Holder, HostError, Lock, State};
use crate::kernel::netns::{netns_path, run_in_netns, NetnsError};
use crate::kernel::sysctl::SysctlError;
use crate::kernel::{Kernel, KernelError, Netlink};
use crate::model::{Config, HostLink};
use crate::plan::Missing;
use crate::reconcile::Conflict;

/// Why an operation failed, and so its exit code. Its wording is in `output`.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    Netns(NetnsError),
    Missing(Vec<Missing>),
    Host(#[from] HostError),
    Conflicts(Vec<Conflict>),
    Kernel(#[from] KernelError),
    Sysctl(#[from] SysctlError),
    /// apply failed and was rolled back (the report says what happened).
    RolledBack(Box<Failure>),
    /// The verb changes the kernel and the process may not.
    NotPermitted {
        verb: &'static str,
    },
    /// The target namespace was deleted while the verb ran (whatever error that caused).
    NetnsGone {
        name: String,
    },
    /// watch or `apply --try` cannot listen for its signals, or confirm cannot signal.
    Signal(std::io::Error),
    /// `apply --try`: a watch daemon serves the namespace and would undo the try.
    WatchRunning {
        pid: u32,
    },
    /// `confirm`: no `apply --try` is waiting in the namespace.
    NoPendingTry,
    /// `confirm`: the try's window had closed; it rolled back.
    TooLate {
        pid: u32,
    },
    /// `confirm`: the try did not say how it ended.
    TryUnanswered {
        pid: u32,
    },
}

impl ExitCode for OpError {
    fn exit_code(&self) -> i32 {
        match self {
            OpError::Netns(NetnsError::NotFound { .. })
            | OpError::Missing(_)
            | OpError::NetnsGone { .. }
            | OpError::NoPendingTry => exit::NOT_FOUND,
            OpError::Host(e) => e.exit_code(),
            _ => exit::FAILED,
        }
    }
}

/// The target of an operation.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub netns: Option<String>,
}

/// Told once, with the holder, when the lock is held by another eniroute.
pub type OnLockWait = Box<dyn FnMut(Option<&Holder>) + Send>;

/// How a verb that changes the kernel waits for another eniroute's lock.
pub struct LockWait {
    /// How long to wait (0: fail at once).
    pub timeout: Duration,
    /// Told once, with the holder, when the lock is held.
    pub waiting: OnLockWait,
    /// Set (by a signal handler) to stop waiting.
    pub give_up: Option<Arc<AtomicBool>>,
}

impl LockWait {
    /// Take `state`'s lock for `command`.
    fn take(mut self, state: &State, command: &str) -> Result<Lock, HostError> {
        let give_up = self.give_up.clone();
        let stop = move || give_up.as_ref().is_some_and(|f| f.load(Ordering::SeqCst));
        state.lock(command, self.timeout, &mut *self.waiting, &stop)
    }
}

/// A core that runs against the kernel and the namespace's state.
type Core<R> = Box<
    dyn for<'k> FnOnce(
            &'k Netlink,
            &'k State,
        ) -> Pin<Box<dyn Future<Output = Result<R, OpError>> + 'k>>
        + Send,
>;

/// Run `core` inside the target namespace with a client tagged `proto` and its state.
fn run<R: Send + 'static>(target: &Target, proto: u8, core: Core<R>) -> Result<R, OpError> {
    let result = run_in_netns(target.netns.as_deref(), move || async move {
        let k = Netlink::connect(proto)?;
        let state = State::current()?;
        // Directories of namespaces that are gone would stay for ever (cookies are not reused).
        state.sweep();
        core(&k, &state).await
    })
    .map_err(OpError::Netns)?;
    match (&result, &target.netns) {
        // Whatever failed, a namespace deleted under the run is the cause to report.
        (Err(e), Some(name)) if !matches!(e, OpError::Netns(_)) && !netns_path(name).exists() => {
            Err(OpError::NetnsGone { name: name.clone() })
        }
        _ => result,
    }
}

/// [`run`], holding the namespace's lock (taken for `command`) around `core`.
fn run_locked<R: Send + 'static>(
    target: &Target,
    proto: u8,
    lock: LockWait,
    command: &'static str,
    core: Core<R>,
) -> Result<R, OpError> {
    run(
        target,
        proto,
        Box::new(move |k, st| {
            Box::pin(async move {
                let _lock = lock.take(st, command)?;
                core(k, st).await
            })
        }),
    )
}

/// The links of the target namespace (for `render --netns`).
pub fn host_links(target: &Target) -> Result<Vec<HostLink>, OpError> {
    run(
        target,
        0,
        Box::new(|k, _| Box::pin(async move { Ok(k.links().await?) })),
    )
}

/// `plan`: what apply would change. Needs no privilege and takes no lock.
pub fn plan(cfg: &Config, target: &Target) -> Result<PlanReport, OpError> {
    let cfg = cfg.clone();
    run(
        target,
        cfg.routing.protocol,
        Box::new(move |k, st| Box::pin(async move { plan_once(k, st, &cfg).await })),
    )
}

/// CAP_NET_ADMIN, the capability every change to routing needs.
const CAP_NET_ADMIN: u32 = 12;

/// Refuse, before touching anything (the lock included), a verb that changes the kernel when
/// the process lacks CAP_NET_ADMIN.
fn require_net_admin(verb: &'static str) -> Result<(), OpError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = (status.lines())
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
    match eff {
        Some(caps) if caps & (1 << CAP_NET_ADMIN) == 0 => Err(OpError::NotPermitted { verb }),
        // Unknown (no procfs): let the kernel decide.
        _ => Ok(()),
    }
}

/// `apply`: converge, verify, and roll back everything on failure.
pub fn apply(
    cfg: &Config,
    target: &Target,
    opts: &ApplyOptions,
    lock: LockWait,
) -> Result<ApplyReport, OpError> {
    require_net_admin("apply")?;
    let (cfg, opts) = (cfg.clone(), opts.clone());
    let proto = cfg.routing.protocol;
    run_locked(
        target,
        proto,
        lock,
        "eniroute apply",
        Box::new(move |k, st| Box::pin(async move { apply_once(k, st, &cfg, &opts).await })),
    )
}

/// `apply --try`: apply, then keep the routing only if confirmed within the window (the lock
/// is held for the whole window, so no other apply or flush runs meanwhile).
pub fn apply_try(
    cfg: &Config,
    target: &Target,
    opts: &ApplyOptions,
    t: TryOptions,
    lock: LockWait,
) -> Result<TryReport, OpError> {
    require_net_admin("apply")?;
    let (cfg, opts) = (cfg.clone(), opts.clone());
    let proto = cfg.routing.protocol;
    run_locked(
        target,
        proto,
        lock,
        "eniroute apply --try",
        Box::new(move |k, st| {
            Box::pin(async move {
                if let Some(w) = st.watch() {
                    return Err(OpError::WatchRunning { pid: w.pid });
                }
                trial::try_once(k, st, &cfg, &opts, &t).await
            })
        }),
    )
}

/// `confirm`: keep the routing of the namespace's pending `apply --try`.
pub fn confirm(target: &Target) -> Result<Confirmed, OpError> {
    run(
        target,
        0,
        Box::new(|_, st| Box::pin(async move { trial::confirm_in(st) })),
    )
}

/// `flush`: remove every object tagged `proto` and restore the saved sysctls.
pub fn flush(proto: u8, target: &Target, lock: LockWait) -> Result<FlushReport, OpError> {
    require_net_admin("flush")?;
    run_locked(
        target,
        proto,
        lock,
        "eniroute flush",
        Box::new(|k, st| Box::pin(flush_once(k, st))),
    )
}

/// `status`: what eniroute owns now, per ENI, and whether each source routes right.
pub fn status(cfg: &Config, target: &Target) -> Result<StatusReport, OpError> {
    let cfg = cfg.clone();
    run(
        target,
        cfg.routing.protocol,
        Box::new(move |k, st| {
            Box::pin(async move {
                let mut report = status_once(k, st, &cfg).await?;
                report.watch = st.watch();
                // (one that cannot be read is not status's business: status reads the kernel)
                report.pending_try = st.pending().ok().flatten();
                Ok(report)
            })
        }),
    )
}

/// `watch`: converge, then keep the routing right until SIGTERM/SIGINT. The lock is taken
/// for each pass only, so `apply` and `flush` can still run meanwhile.
pub fn watch(
    cfg: &Config,
    target: &Target,
    opts: WatchOptions,
    mut on: Box<dyn FnMut(&WatchEvent) + Send>,
) -> Result<(), OpError> {
    require_net_admin("watch")?;
    let cfg = cfg.clone();
    run(
        target,
        cfg.routing.protocol,
        Box::new(move |k, st| {
            Box::pin(async move {
                // Subscribed before the first pass, so that no change falls between the two.
                let mut live = watch::Live::subscribe()?;
                watch::watch_once(k, st, cfg, &mut live, &opts, &mut *on).await
            })
        }),
    )
}
