//! `apply` as one reusable pass (the watch daemon runs it too): converge the kernel, save each
//! sysctl's original durably *before* changing it (write-ahead), write the sysctls, verify,
//! record the state — and on any failure or interruption undo everything done, newest first.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::converge::{
    compute, converge, inverse, links_when_ready, restore_foreign, undo, Computed, WaitProgress,
};
use super::sysctls::{self, SysctlChange};
use super::verify::verify;
use super::{OpError, PlanReport, Verdict};
use crate::host::{HostError, Saved, State};
use crate::kernel::sysctl::SysctlError;
use crate::kernel::{failpoint, Kernel, KernelError};
use crate::model::{Change, Config, Observed};

/// Told after each netlink batch of apply: the changes the kernel accepted, how many requests
/// the batch sent, and how long it took (`-v`, `-vv`).
pub type BatchTrace = Arc<dyn Fn(&[Change], usize, Duration) + Send + Sync>;

/// Options of apply.
#[derive(Clone, Default)]
pub struct ApplyOptions {
    /// Wait this long for ENIs that are not there yet.
    pub wait: Option<Duration>,
    /// Set (by a signal handler) to stop: the pass sends nothing more and rolls back.
    pub interrupted: Option<Arc<AtomicBool>>,
    /// Progress of the wait (`--wait`).
    pub progress: Option<WaitProgress>,
    /// Each batch as it is made.
    pub trace: Option<BatchTrace>,
    /// Do not read the other nftables tables' marks (watch's heals: the scan is for a new
    /// config, a reload or a resync).
    pub skip_mark_scan: bool,
}

impl std::fmt::Debug for ApplyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyOptions")
            .field("wait", &self.wait)
            .field("interrupted", &self.interrupted)
            .field("progress", &self.progress.as_ref().map(|_| "callback"))
            .field("trace", &self.trace.as_ref().map(|_| "callback"))
            .field("skip_mark_scan", &self.skip_mark_scan)
            .finish()
    }
}

impl ApplyOptions {
    pub(super) fn interrupted(&self) -> bool {
        (self.interrupted.as_ref()).is_some_and(|f| f.load(Ordering::SeqCst))
    }
}

/// What `apply` did.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    pub plan: PlanReport,
    pub applied: Vec<Change>,
    pub rolled_back: bool,
    pub verification: Vec<Verdict>,
}

/// Why a pass failed after it had started changing things.
#[derive(Debug)]
pub enum Cause {
    Kernel(KernelError),
    Sysctl(SysctlError),
    /// The kernel's lookups disagree with the plan (the report's verification says where).
    Verification,
    State(HostError),
    /// A signal asked the pass to stop.
    Interrupted,
    /// `apply --try`: not confirmed within `window` (or `interrupted` by a signal first); the
    /// pass had succeeded. `drifted`: the kernel's owned objects had changed during the window,
    /// so the rollback converged back to those owned before the pass instead of inverting it.
    NotConfirmed {
        window: Duration,
        interrupted: bool,
        drifted: bool,
    },
}

/// A failed apply, rolled back: the cause, what was undone and what the undo met.
#[derive(Debug)]
pub struct Failure {
    pub cause: Cause,
    pub undone: usize,
    pub undo_errors: Vec<String>,
    pub report: ApplyReport,
}

/// One pass in progress: what it has done so far, so that it can be undone.
pub(super) struct Pass<'a, K: Kernel> {
    k: &'a K,
    state: &'a State,
    c: Computed,
    report: ApplyReport,
    written: Vec<SysctlChange>,
    /// The saved originals were rewritten by this pass (put the old set back on failure).
    stored: bool,
}

/// One apply pass against `k`, with the namespace's `state`. The caller holds the lock.
pub async fn apply_once(
    k: &impl Kernel,
    state: &State,
    cfg: &Config,
    opts: &ApplyOptions,
) -> Result<ApplyReport, OpError> {
    Ok(apply_pass(k, state, cfg, opts).await?.report)
}

/// [`apply_once`], returning the succeeded pass itself, which can still be rolled back.
pub(super) async fn apply_pass<'a, K: Kernel>(
    k: &'a K,
    state: &'a State,
    cfg: &Config,
    opts: &ApplyOptions,
) -> Result<Pass<'a, K>, OpError> {
    let links = links_when_ready(k, cfg, opts.wait, opts.progress.as_ref()).await?;
    let c = compute(k, state, cfg, links, !opts.skip_mark_scan).await?;
    failpoint::hit("computed");
    let plan = c.plan_report();
    let mut pass = Pass {
        k,
        state,
        c,
        report: ApplyReport {
            plan,
            applied: Vec::new(),
            rolled_back: false,
            verification: Vec::new(),
        },
        written: Vec::new(),
        stored: false,
    };
    let traced = |done: &[Change], sent: usize, took: Duration| {
        if let Some(t) = &opts.trace {
            t(done, sent, took);
        }
    };
    let (applied, err) = converge(k, &pass.c.changes, &|| opts.interrupted(), &traced).await;
    pass.report.applied = applied;
    if let Some(e) = err {
        return Err(pass.fail(Cause::Kernel(e)).await);
    }
    if opts.interrupted() || pass.report.applied.len() < pass.c.changes.len() {
        return Err(pass.fail(Cause::Interrupted).await);
    }
    failpoint::hit("converged");
    // Write-ahead: every original is durable before its sysctl changes.
    let ahead = sysctls::ahead(&pass.c.saved, &pass.c.sysctls, &pass.c.before.links);
    if let Err(e) = pass.store(&ahead) {
        return Err(pass.fail(Cause::State(e)).await);
    }
    failpoint::hit("saved-ahead");
    if let Err(e) = pass.write_sysctls(opts) {
        return Err(pass.fail(e).await);
    }
    failpoint::hit("written");
    if cfg.routing.verify {
        pass.report.verification = verify(k, &pass.c.desired, &pass.c.before.links).await;
        if pass.report.verification.iter().any(|v| !v.ok) {
            return Err(pass.fail(Cause::Verification).await);
        }
    }
    failpoint::hit("verified");
    let after = sysctls::after(&ahead, &pass.c.restores, &pass.c.before.links);
    if after != ahead {
        if let Err(e) = pass.store(&after) {
            return Err(pass.fail(Cause::State(e)).await);
        }
    }
    failpoint::hit("stored");
    Ok(pass)
}

impl<K: Kernel> Pass<'_, K> {
    /// Store `saved` when it differs from what the pass started with.
    fn store(&mut self, saved: &Saved) -> Result<(), HostError> {
        if saved == &self.c.saved && !self.stored {
            return Ok(());
        }
        self.stored = true;
        self.state.store(saved)
    }

    /// Write the sysctls to set and to restore, stopping at an error or an interruption.
    fn write_sysctls(&mut self, opts: &ApplyOptions) -> Result<(), Cause> {
        for s in self.c.sysctls.iter().chain(&self.c.restores) {
            if opts.interrupted() {
                return Err(Cause::Interrupted);
            }
            self.k
                .sysctl_write(&s.path, &s.new)
                .map_err(Cause::Sysctl)?;
            self.written.push(s.clone());
            failpoint::hit("sysctl");
        }
        Ok(())
    }

    /// What the pass did, so far.
    pub(super) fn report(&self) -> &ApplyReport {
        &self.report
    }

    /// The kernel's objects and links before the pass.
    pub(super) fn before(&self) -> &Observed {
        &self.c.before
    }

    /// Undo everything, put the saved originals back as they were, and say why.
    async fn fail(self, cause: Cause) -> OpError {
        self.roll_back_all(cause).await
    }

    /// Roll back with the inverse of everything the pass applied.
    pub(super) async fn roll_back_all(self, cause: Cause) -> OpError {
        let changes = inverse(&self.report.applied);
        self.roll_back(cause, changes).await
    }

    /// Roll back with `changes` (the inverse of what the pass applied, or a way back to the
    /// objects owned before it), the sysctls written, the saved originals; and say why.
    pub(super) async fn roll_back(mut self, cause: Cause, changes: Vec<Change>) -> OpError {
        let mut undo_errors = undo(self.k, &changes, &self.written).await;
        // Removing eniroute's addresses may have made the kernel drop other programs' routes.
        if (changes.iter()).any(|c| matches!(c, Change::DelAddress(_))) {
            match restore_foreign(self.k, &self.c.before.foreign_routes).await {
                Ok((_, failed)) => undo_errors.extend(
                    (failed.iter()).map(|(r, e)| format!("cannot put back route {r}: {e}")),
                ),
                Err(e) => undo_errors.push(e.to_string()),
            }
        }
        if self.stored {
            if let Err(e) = self.state.store(&self.c.saved) {
                undo_errors.push(e.to_string());
            }
        }
        let undone = changes.len();
        if matches!(cause, Cause::Kernel(_)) {
            // The report lists no change as applied: all of them were undone.
            self.report.applied.clear();
        }
        self.report.rolled_back = true;
        OpError::RolledBack(Box::new(Failure {
            cause,
            undone,
            undo_errors,
            report: self.report,
        }))
    }
}
