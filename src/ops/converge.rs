//! What every converging verb shares: find the ENIs' links (waiting for late ones), compute
//! the changes and sysctl differences, make changes phase by phase, and undo them.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::sysctls::{self, SysctlChange};
use super::OpError;
use crate::host::{Saved, State};
use crate::kernel::{Kernel, KernelError};
use crate::model::{phases, Change, Config, ForeignRoute, HostLink, Observed, Route};
use crate::plan::{self, Desired};
use crate::reconcile;

/// What `plan` found.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    pub changes: Vec<Change>,
    pub sysctls: Vec<SysctlChange>,
    /// Sysctls eniroute changed earlier that the config no longer wants: put back.
    pub restores: Vec<SysctlChange>,
    pub notes: Vec<String>,
}

impl PlanReport {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.sysctls.is_empty() && self.restores.is_empty()
    }
}

/// Told while apply waits for ENIs (at least once a second): the ENIs still missing, how
/// long it has waited, the limit; and once more with nothing missing when they all came.
pub type WaitProgress =
    std::sync::Arc<dyn Fn(&[crate::plan::Missing], Duration, Duration) + Send + Sync>;

/// The links, waiting up to `wait` (listening to link events) until every ENI is found.
pub(super) async fn links_when_ready(
    k: &impl Kernel,
    cfg: &Config,
    wait: Option<Duration>,
    progress: Option<&WaitProgress>,
) -> Result<Vec<HostLink>, OpError> {
    let missing = |links: &[HostLink]| plan::desired(cfg, Some(links)).missing;
    let started = Instant::now();
    let deadline = wait.map(|w| started + w);
    if deadline.is_some() {
        // Subscribe before the first dump so that no event falls between the two.
        k.link_event(Duration::ZERO).await?;
    }
    let mut waited = false;
    loop {
        let links = k.links().await?;
        let m = missing(&links);
        let total = wait.unwrap_or_default();
        if m.is_empty() {
            if let (true, Some(tell)) = (waited, progress) {
                tell(&[], started.elapsed(), total);
            }
            return Ok(links);
        }
        let left = deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or_default();
        if left.is_zero() {
            return Err(OpError::Missing(m));
        }
        waited = true;
        // With someone to tell, wake at least once a second (a link event wakes sooner).
        let nap = match progress {
            Some(tell) => {
                tell(&m, started.elapsed(), total);
                left.min(Duration::from_secs(1))
            }
            None => left,
        };
        k.link_event(nap).await?;
    }
}

/// The desired state and the way from the kernel's to it.
pub(super) struct Computed {
    pub desired: Desired,
    /// Everything observed before the pass: its links, other programs' routes (to put back
    /// any the kernel drops with the pass's addresses), the owned objects (`apply --try` may
    /// converge back to them).
    pub before: Observed,
    pub changes: Vec<Change>,
    pub sysctls: Vec<SysctlChange>,
    pub restores: Vec<SysctlChange>,
    pub saved: Saved,
}

impl Computed {
    pub fn plan_report(&self) -> PlanReport {
        PlanReport {
            changes: self.changes.clone(),
            sysctls: self.sysctls.clone(),
            restores: self.restores.clone(),
            notes: self.desired.notes.clone(),
        }
    }
}

/// What is in the kernel for `desired`: [`Kernel::observe`], and the other nftables tables'
/// marks when `desired` marks connections and `marks` asks for them (reconcile refuses marks
/// that overlap eniroute's).
pub(super) async fn observe(
    k: &impl Kernel,
    links: Vec<HostLink>,
    desired: &Desired,
    marks: bool,
) -> Result<Observed, KernelError> {
    let mut observed = k.observe(links).await?;
    if marks && desired.mark_mask.is_some() {
        observed.nft.foreign_marks = k.foreign_marks().await?;
    }
    Ok(observed)
}

/// The desired state, what is in the kernel, and the way between. `marks`: see [`observe`].
pub(super) async fn compute(
    k: &impl Kernel,
    state: &State,
    cfg: &Config,
    links: Vec<HostLink>,
    marks: bool,
) -> Result<Computed, OpError> {
    let desired = plan::desired(cfg, Some(&links));
    if !desired.missing.is_empty() {
        return Err(OpError::Missing(desired.missing));
    }
    let observed = observe(k, links, &desired, marks).await?;
    let changes = reconcile::reconcile(&desired, &observed).map_err(OpError::Conflicts)?;
    let sysctls = sysctls::diff(k, &desired.sysctls)?;
    let saved = state.saved()?;
    let restores = sysctls::restores(k, &observed.links, &desired.sysctls, &saved);
    Ok(Computed {
        desired,
        before: observed,
        changes,
        sysctls,
        restores,
        saved,
    })
}

/// `plan`: the changes apply would make.
pub async fn plan_once(
    k: &impl Kernel,
    state: &State,
    cfg: &Config,
) -> Result<PlanReport, OpError> {
    let links = links_when_ready(k, cfg, None, None).await?;
    Ok(compute(k, state, cfg, links, true).await?.plan_report())
}

/// Make changes phase by phase; what was applied, and the error that stopped it. Before each
/// batch it asks `stop` (a signal, say): then it sends nothing more.
pub(super) async fn converge(
    k: &impl Kernel,
    changes: &[Change],
    stop: &dyn Fn() -> bool,
    traced: &dyn Fn(&[Change], usize, std::time::Duration),
) -> (Vec<Change>, Option<KernelError>) {
    let mut applied = Vec::new();
    for phase in phases(changes) {
        if stop() {
            break;
        }
        let started = Instant::now();
        let (done, err) = k.apply_batch(phase).await;
        let before = applied.len();
        applied.extend(
            phase
                .iter()
                .zip(done)
                .filter(|(_, ok)| *ok)
                .map(|(c, _)| c.clone()),
        );
        traced(&applied[before..], phase.len(), started.elapsed());
        if err.is_some() {
            return (applied, err);
        }
    }
    (applied, None)
}

/// What undoes `applied`: each change's inverse, newest first.
pub(super) fn inverse(applied: &[Change]) -> Vec<Change> {
    applied.iter().rev().map(Change::inverse).collect()
}

/// Undo: put the written sysctls back (newest first), then make `changes` (the [`inverse`] of
/// the applied ones, or another way back), one at a time. Returns the errors met (it goes on
/// after one).
pub(super) async fn undo(
    k: &impl Kernel,
    changes: &[Change],
    sysctls: &[SysctlChange],
) -> Vec<String> {
    let mut errors = Vec::new();
    for s in sysctls.iter().rev() {
        if let Err(e) = k.sysctl_write(&s.path, &s.old) {
            errors.push(e.to_string());
        }
    }
    for c in changes {
        if let Err(e) = k.apply(c).await {
            errors.push(format!("undoing with {c}: {e}"));
        }
    }
    errors
}

/// Put back the foreign routes of `before` that are gone now. Removing a link's last IPv4
/// address makes the kernel drop every route through the link, in every table, without an
/// RTM_DELROUTE: eniroute removing its own addresses must not take other programs' routes with
/// it. Returns the routes put back and those that could not be (a gateway reachable only
/// through eniroute's addresses), with why.
pub(super) async fn restore_foreign(
    k: &impl Kernel,
    before: &[ForeignRoute],
) -> Result<(Vec<Route>, Vec<(Route, KernelError)>), KernelError> {
    let now = k.observe(k.links().await?).await?;
    let mut gone: Vec<&ForeignRoute> = (before.iter())
        .filter(|f| f.restorable() && !now.foreign_routes.contains(f))
        .collect();
    // Link routes first: a gateway route may need one to reach its gateway.
    gone.sort_by_key(|f| f.route.nexthops.iter().any(|n| n.gateway.is_some()));
    let (mut restored, mut failed) = (Vec::new(), Vec::new());
    for f in gone {
        match k.restore_route(f).await {
            Ok(()) => restored.push(f.route.clone()),
            Err(e) => failed.push((f.route.clone(), e)),
        }
    }
    Ok((restored, failed))
}
