//! `flush`: remove every object eniroute owns and restore the sysctls it changed. Best effort:
//! it goes on after an error and reports them all.

use serde::Serialize;

use super::converge::restore_foreign;
use super::sysctls::{self, SysctlChange};
use super::OpError;
use crate::host::State;
use crate::kernel::Kernel;
use crate::model::{phases, Change, Route};
use crate::reconcile;

/// What `flush` removed.
#[derive(Debug, Clone, Serialize)]
pub struct FlushReport {
    pub removed: Vec<Change>,
    pub restored: Vec<SysctlChange>,
    /// Other programs' routes the kernel dropped with eniroute's addresses, put back.
    pub restored_routes: Vec<Route>,
    /// Those that could not be put back (their gateway was reachable only through eniroute's
    /// addresses), with why.
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
}

/// errnos that, on a retried removal, mean "already gone": removing an address may take
/// routes or secondary addresses with it (ENOENT, ESRCH, EADDRNOTAVAIL).
const ALREADY_GONE: [i32; 3] = [2, 3, 99];

/// One flush pass against `k`, with the namespace's `state`. The caller holds the lock.
pub async fn flush_once(k: &impl Kernel, state: &State) -> Result<FlushReport, OpError> {
    let observed = k.observe(k.links().await?).await?;
    let saved = state.saved()?;
    let mut report = FlushReport {
        removed: Vec::new(),
        restored: Vec::new(),
        restored_routes: Vec::new(),
        warnings: Vec::new(),
        errors: Vec::new(),
    };
    for phase in phases(&reconcile::flush(&observed)) {
        let (done, _) = k.apply_batch(phase).await;
        for (c, ok) in phase.iter().zip(done) {
            if ok {
                report.removed.push(c.clone());
                continue;
            }
            // Retried once alone.
            match k.apply(c).await {
                Ok(()) => report.removed.push(c.clone()),
                Err(e) if e.errno().is_some_and(|n| ALREADY_GONE.contains(&n)) => {}
                Err(e) => report.errors.push(e.to_string()),
            }
        }
    }
    if (report.removed.iter()).any(|c| matches!(c, Change::DelAddress(_))) {
        let (restored, failed) = restore_foreign(k, &observed.foreign_routes).await?;
        report.restored_routes = restored;
        report.warnings = (failed.iter())
            .map(|(r, e)| {
                format!("cannot put back route {r} (dropped by the kernel with eniroute's addresses): {e}")
            })
            .collect();
    }
    let (restored, kept) = sysctls::restore_all(k, &observed.links, &saved, &mut report.errors);
    report.restored = restored;
    state.store(&kept)?;
    Ok(report)
}
