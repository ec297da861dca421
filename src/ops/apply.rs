//! `apply` as one reusable pass (the watch daemon runs it too): converge the kernel, write the
//! sysctls remembering each original, verify, save the state — and on any failure undo
//! everything done, newest first.

use std::time::Duration;

use serde::Serialize;

use super::converge::{compute, converge, links_when_ready, undo, Computed};
use super::verify::verify;
use super::{OpError, PlanReport, SysctlChange, Verdict};
use crate::host::{HostError, Saved, State};
use crate::kernel::sysctl::SysctlError;
use crate::kernel::{Kernel, KernelError};
use crate::model::{Change, Config};

/// Options of apply.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Wait this long for ENIs that are not there yet.
    pub wait: Option<Duration>,
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
}

/// A failed apply, rolled back: the cause, what was undone and what the undo met.
#[derive(Debug)]
pub struct Failure {
    pub cause: Cause,
    pub undone: usize,
    pub undo_errors: Vec<String>,
    pub report: ApplyReport,
}

/// One apply pass against `k`, with the namespace's `state`. The caller holds the lock.
pub async fn apply_once(
    k: &impl Kernel,
    state: &State,
    cfg: &Config,
    opts: &ApplyOptions,
) -> Result<ApplyReport, OpError> {
    let links = links_when_ready(k, cfg, opts.wait).await?;
    let c = compute(k, state, cfg, links).await?;
    let mut report = ApplyReport {
        plan: c.plan_report(),
        applied: Vec::new(),
        rolled_back: false,
        verification: Vec::new(),
    };
    let (applied, err) = converge(k, &c.changes).await;
    if let Some(e) = err {
        // The report lists no change as applied: all of them were undone.
        return Err(roll_back(k, report, &applied, &[], Cause::Kernel(e)).await);
    }
    report.applied = applied;
    let written = match write_sysctls(k, &c).await {
        Ok(w) => w,
        Err((written, e)) => {
            let applied = report.applied.clone();
            return Err(roll_back(k, report, &applied, &written, Cause::Sysctl(e)).await);
        }
    };
    let saved = remember(k, &c);
    if cfg.routing.verify {
        report.verification = verify(k, &c.desired, &c.links).await;
        if report.verification.iter().any(|v| !v.ok) {
            let applied = report.applied.clone();
            return Err(roll_back(k, report, &applied, &written, Cause::Verification).await);
        }
    }
    if let Err(e) = state.store(&saved) {
        let applied = report.applied.clone();
        return Err(roll_back(k, report, &applied, &written, Cause::State(e)).await);
    }
    Ok(report)
}

/// Write the sysctls to set and to restore; on an error, those written so far and the error.
async fn write_sysctls(
    k: &impl Kernel,
    c: &Computed,
) -> Result<Vec<SysctlChange>, (Vec<SysctlChange>, SysctlError)> {
    let mut written = Vec::new();
    for s in c.sysctls.iter().chain(&c.restores) {
        if let Err(e) = k.sysctl_write(&s.path, &s.new) {
            return Err((written, e));
        }
        written.push(s.clone());
    }
    Ok(written)
}

/// The saved originals after this pass: each sysctl's value from before eniroute's first
/// change is kept (never overwritten); restored ones are forgotten, and so are those no longer
/// wanted whose interface is gone.
fn remember(k: &impl Kernel, c: &Computed) -> Saved {
    let mut saved = c.saved.clone();
    for s in &c.sysctls {
        saved
            .values
            .entry(s.path.clone())
            .or_insert_with(|| s.old.clone());
    }
    for s in &c.restores {
        saved.values.remove(&s.path);
    }
    let wanted: Vec<&str> = c.desired.sysctls.iter().map(|s| s.path.as_str()).collect();
    saved
        .values
        .retain(|p, _| wanted.contains(&p.as_str()) || k.sysctl_read(p).is_ok());
    saved
}

/// Undo `applied` and `written`, and say why.
async fn roll_back(
    k: &impl Kernel,
    mut report: ApplyReport,
    applied: &[Change],
    written: &[SysctlChange],
    cause: Cause,
) -> OpError {
    let undo_errors = undo(k, applied, written).await;
    report.rolled_back = true;
    OpError::RolledBack(Box::new(Failure {
        cause,
        undone: applied.len(),
        undo_errors,
        report,
    }))
}
