//! `flush`: remove every object eniroute owns and restore the sysctls it changed. Best effort:
//! it goes on after an error and reports them all.

use serde::Serialize;

use super::{OpError, SysctlChange};
use crate::host::State;
use crate::kernel::Kernel;
use crate::model::{phases, sysctl_name, Change};
use crate::reconcile;

/// What `flush` removed.
#[derive(Debug, Clone, Serialize)]
pub struct FlushReport {
    pub removed: Vec<Change>,
    pub restored: Vec<SysctlChange>,
    pub errors: Vec<String>,
}

/// errnos that, on a retried removal, mean "already gone": removing an address may take
/// routes or secondary addresses with it (ENOENT, ESRCH, EADDRNOTAVAIL).
const ALREADY_GONE: [i32; 3] = [2, 3, 99];

/// One flush pass against `k`, with the namespace's `state`. The caller holds the lock.
pub async fn flush_once(k: &impl Kernel, state: &State) -> Result<FlushReport, OpError> {
    let observed = k.observe(k.links().await?).await?;
    let mut report = FlushReport {
        removed: Vec::new(),
        restored: Vec::new(),
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
    restore_sysctls(k, state, &mut report)?;
    Ok(report)
}

/// Put back every saved sysctl; those that cannot be written stay saved.
fn restore_sysctls(
    k: &impl Kernel,
    state: &State,
    report: &mut FlushReport,
) -> Result<(), OpError> {
    let mut saved = state.saved();
    for (path, value) in std::mem::take(&mut saved.values) {
        match k.sysctl_read(&path) {
            Ok(cur) if cur == value => {}
            Ok(cur) => match k.sysctl_write(&path, &value) {
                Ok(()) => report.restored.push(SysctlChange {
                    name: sysctl_name(&path),
                    path,
                    old: cur,
                    new: value,
                }),
                Err(e) => {
                    report.errors.push(e.to_string());
                    saved.values.insert(path, value);
                }
            },
            // The interface is gone: nothing to restore.
            Err(_) => {}
        }
    }
    state.store(&saved)?;
    Ok(())
}
