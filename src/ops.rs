//! The imperative shell: plan, apply, status and flush against one network namespace.
//!
//! Each operation runs on a thread inside the target namespace (`kernel::netns`), opens one
//! netlink connection there, and combines the pure parts (plan, reconcile) with the kernel.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::exit::{self, ExitCode};
use crate::host::{HostError, Saved, State};
use crate::kernel::netns::{run_in_netns, NetnsError};
use crate::kernel::sysctl::SysctlError;
use crate::kernel::{Kernel, KernelError, Netlink};
use crate::model::sysctl_name;
use crate::model::Config;
use crate::model::Family;
use crate::model::{Change, HostLink, Sysctl};
use crate::plan::{self, Desired, Missing};
use crate::reconcile::{self, Conflict};

/// Where lookups for verification are aimed: any outside address; nothing is sent.
const PROBE_V4: [Ipv4Addr; 3] = [
    Ipv4Addr::new(8, 8, 8, 8),
    Ipv4Addr::new(1, 1, 1, 1),
    Ipv4Addr::new(9, 9, 9, 9),
];
const PROBE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8888);

/// Why an operation failed, and so its exit code.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("{0}")]
    Netns(NetnsError),
    #[error("{}", missing_text(.0))]
    Missing(Vec<Missing>),
    #[error("{0}")]
    Host(#[from] HostError),
    #[error("refusing to change anything: {}", conflict_text(.0))]
    Conflicts(Vec<Conflict>),
    #[error("{0}")]
    Kernel(#[from] KernelError),
    #[error("{0}")]
    Sysctl(#[from] SysctlError),
    /// apply failed and was rolled back (the report says what happened).
    #[error("{message}")]
    RolledBack {
        message: String,
        report: Box<ApplyReport>,
    },
}

impl ExitCode for OpError {
    fn exit_code(&self) -> i32 {
        match self {
            OpError::Netns(NetnsError::NotFound { .. }) | OpError::Missing(_) => exit::NOT_FOUND,
            OpError::Host(e) => e.exit_code(),
            _ => exit::FAILED,
        }
    }
}

fn missing_text(m: &[Missing]) -> String {
    m.iter()
        .map(|m| {
            let mut id = Vec::new();
            if let Some(mac) = &m.mac {
                id.push(format!("mac {mac}"));
            }
            if let Some(i) = &m.interface {
                id.push(format!("interface {i}"));
            }
            format!(
                "ENI {:?} ({}) not found: {}",
                m.eni,
                id.join(", "),
                m.reason
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn conflict_text(c: &[Conflict]) -> String {
    c.iter()
        .map(|c| c.message.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A sysctl that differs from what is wanted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SysctlChange {
    pub path: String,
    pub name: String,
    pub old: String,
    pub new: String,
}

/// Compare wanted values with the kernel's; only differences are returned.
fn sysctl_diff(k: &impl Kernel, wanted: &[Sysctl]) -> Result<Vec<SysctlChange>, SysctlError> {
    let mut out = Vec::new();
    for s in wanted {
        let old = k.sysctl_read(&s.path)?;
        if old != s.value {
            out.push(SysctlChange {
                path: s.path.clone(),
                name: s.name(),
                old,
                new: s.value.clone(),
            });
        }
    }
    Ok(out)
}

/// The target of an operation.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub netns: Option<String>,
}

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

/// One verified source.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Verdict {
    pub eni: String,
    /// None: unbound traffic ([egress]).
    pub source: Option<IpAddr>,
    pub expected: String,
    pub seen: String,
    pub ok: bool,
}

/// What `apply` did.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    pub plan: PlanReport,
    pub applied: Vec<Change>,
    pub rolled_back: bool,
    pub verification: Vec<Verdict>,
}

/// Options of apply.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Wait this long for ENIs that are not there yet.
    pub wait: Option<Duration>,
}

/// Run `f(kernel)` inside the target namespace with a connection tagged `proto`.
fn with_kernel<R, F>(target: &Target, proto: u8, f: F) -> Result<R, OpError>
where
    R: Send + 'static,
    F: for<'k> FnOnce(
            &'k Netlink,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<R, OpError>> + 'k>,
        > + Send
        + 'static,
{
    run_in_netns(target.netns.as_deref(), move || async move {
        let k = Netlink::connect(proto)?;
        f(&k).await
    })
    .map_err(OpError::Netns)?
}

/// Links, waiting up to `wait` (listening to link events) until every ENI is found.
async fn links_when_ready(
    k: &impl Kernel,
    cfg: &Config,
    wait: Option<Duration>,
) -> Result<Vec<HostLink>, OpError> {
    let missing = |links: &[HostLink]| plan::desired(cfg, Some(links)).missing;
    let Some(wait) = wait else {
        let links = k.links().await?;
        let m = missing(&links);
        return if m.is_empty() {
            Ok(links)
        } else {
            Err(OpError::Missing(m))
        };
    };
    let deadline = Instant::now() + wait;
    // Subscribe before the first dump so that no event falls between the two.
    k.link_event(Duration::ZERO).await?;
    loop {
        let links = k.links().await?;
        let m = missing(&links);
        if m.is_empty() {
            return Ok(links);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(OpError::Missing(m));
        }
        k.link_event(left).await?;
    }
}

struct Computed {
    desired: Desired,
    links: Vec<HostLink>,
    changes: Vec<Change>,
    sysctls: Vec<SysctlChange>,
    restores: Vec<SysctlChange>,
    saved: Saved,
}

async fn compute(k: &impl Kernel, cfg: &Config, links: Vec<HostLink>) -> Result<Computed, OpError> {
    let desired = plan::desired(cfg, Some(&links));
    if !desired.missing.is_empty() {
        return Err(OpError::Missing(desired.missing));
    }
    let observed = k.observe(links).await?;
    let changes = reconcile::reconcile(&desired, &observed).map_err(OpError::Conflicts)?;
    let links = observed.links;
    let sysctls = sysctl_diff(k, &desired.sysctls)?;
    let saved = State::current()?.saved();
    let mut restores = Vec::new();
    for (path, value) in &saved.values {
        if desired.sysctls.iter().any(|s| &s.path == path) {
            continue;
        }
        // A sysctl of an interface that is gone cannot (and need not) be restored.
        if let Ok(cur) = k.sysctl_read(path) {
            if &cur != value {
                restores.push(SysctlChange {
                    path: path.clone(),
                    name: sysctl_name(path),
                    old: cur,
                    new: value.clone(),
                });
            }
        }
    }
    Ok(Computed {
        desired,
        links,
        changes,
        sysctls,
        restores,
        saved,
    })
}

/// The links of the target namespace (for `render --netns`).
pub fn host_links(target: &Target) -> Result<Vec<HostLink>, OpError> {
    with_kernel(target, 0, |k| Box::pin(async move { Ok(k.links().await?) }))
}

/// `plan`: what apply would change. Needs no privilege and takes no lock.
pub fn plan(cfg: &Config, target: &Target) -> Result<PlanReport, OpError> {
    let cfg = cfg.clone();
    with_kernel(target, cfg.routing.protocol, move |k| {
        Box::pin(async move {
            let links = links_when_ready(k, &cfg, None).await?;
            let c = compute(k, &cfg, links).await?;
            Ok(PlanReport {
                changes: c.changes,
                sysctls: c.sysctls,
                restores: c.restores,
                notes: c.desired.notes,
            })
        })
    })
}

/// Apply changes phase by phase; returns what was applied, or that and the error.
async fn converge(
    k: &impl Kernel,
    changes: &[Change],
) -> Result<Vec<Change>, (Vec<Change>, KernelError)> {
    let mut applied = Vec::new();
    for phase in crate::model::phases(changes) {
        let (done, err) = k.apply_batch(phase).await;
        applied.extend(
            phase
                .iter()
                .zip(done)
                .filter(|(_, ok)| *ok)
                .map(|(c, _)| c.clone()),
        );
        if let Some(e) = err {
            return Err((applied, e));
        }
    }
    Ok(applied)
}

/// Undo applied changes, newest first. Returns the errors met (it goes on after one).
async fn undo(k: &impl Kernel, applied: &[Change], sysctls: &[SysctlChange]) -> Vec<String> {
    let mut errors = Vec::new();
    for s in sysctls.iter().rev() {
        if let Err(e) = k.sysctl_write(&s.path, &s.old) {
            errors.push(e.to_string());
        }
    }
    for c in applied.iter().rev() {
        if let Err(e) = k.apply(&c.inverse()).await {
            errors.push(format!("undoing {c}: {e}"));
        }
    }
    errors
}

/// Ask the kernel how each source (and unbound traffic) would leave.
async fn verify(k: &impl Kernel, d: &Desired, links: &[HostLink]) -> Result<Vec<Verdict>, OpError> {
    let name = |i: Option<u32>| {
        i.and_then(|i| links.iter().find(|l| l.index == i))
            .map(|l| l.name.clone())
            .unwrap_or_else(|| "nowhere".into())
    };
    let covered = |ip: IpAddr| {
        d.routes
            .iter()
            .any(|r| r.dst.prefix() > 0 && r.dst.contains(ip))
    };
    let probe4 = PROBE_V4
        .iter()
        .map(|a| IpAddr::V4(*a))
        .find(|a| !covered(*a))
        .unwrap_or(IpAddr::V4(PROBE_V4[0]));
    let probe = |f: Family| match f {
        Family::V4 => probe4,
        Family::V6 => IpAddr::V6(PROBE_V6),
    };
    let mut out = Vec::new();
    // Lookups are plain requests, not dumps: they go to the kernel in batches.
    let queries: Vec<_> = d
        .checks
        .iter()
        .map(|c| (Some(c.source), probe(Family::of(&c.source))))
        .collect();
    let lookups = k.route_get_many(&queries).await;
    for (c, lookup) in d.checks.iter().zip(lookups) {
        let expected = format!("dev {} via {}", c.iface.name, c.gateway);
        let (seen, ok) = match lookup {
            Ok(l) => {
                let gw = l
                    .gateway
                    .map(|g| g.to_string())
                    .unwrap_or_else(|| "none".into());
                let ok = l.oif == Some(c.iface.index) && l.gateway == Some(c.gateway);
                (format!("dev {} via {gw}", name(l.oif)), ok)
            }
            Err(e) => (
                format!(
                    "no route ({})",
                    e.errno().map(errno_text).unwrap_or_else(|| e.to_string())
                ),
                false,
            ),
        };
        out.push(Verdict {
            eni: c.eni.clone(),
            source: Some(c.source),
            expected,
            seen,
            ok,
        });
    }
    for e in &d.egress_checks {
        let names: Vec<&str> = e.ifaces.iter().map(|i| i.name.as_str()).collect();
        let expected = format!("dev {}", names.join(" | "));
        let (seen, ok) = match k.route_get(None, probe(e.family)).await {
            Ok(l) => (
                format!("dev {}", name(l.oif)),
                l.oif
                    .map(|o| e.ifaces.iter().any(|i| i.index == o))
                    .unwrap_or(false),
            ),
            Err(err) => (format!("no route ({err})"), false),
        };
        out.push(Verdict {
            eni: "egress".into(),
            source: None,
            expected,
            seen,
            ok,
        });
    }
    Ok(out)
}

fn errno_text(n: i32) -> String {
    std::io::Error::from_raw_os_error(n).to_string()
}

/// `apply`: converge, verify, and roll back everything on failure.
pub fn apply(cfg: &Config, target: &Target, opts: &ApplyOptions) -> Result<ApplyReport, OpError> {
    let cfg = cfg.clone();
    let opts = opts.clone();
    with_kernel(target, cfg.routing.protocol, move |k| {
        Box::pin(async move {
            let state = State::current()?;
            let _lock = state.lock()?;
            let links = links_when_ready(k, &cfg, opts.wait).await?;
            let c = compute(k, &cfg, links).await?;
            let plan = PlanReport {
                changes: c.changes.clone(),
                sysctls: c.sysctls.clone(),
                restores: c.restores.clone(),
                notes: c.desired.notes.clone(),
            };
            let mut report = ApplyReport {
                plan,
                applied: Vec::new(),
                rolled_back: false,
                verification: Vec::new(),
            };
            let fail = |mut report: ApplyReport, message: String| {
                report.rolled_back = true;
                OpError::RolledBack {
                    message,
                    report: Box::new(report),
                }
            };

            // Netlink changes.
            match converge(k, &c.changes).await {
                Ok(applied) => report.applied = applied,
                Err((applied, e)) => {
                    let errs = undo(k, &applied, &[]).await;
                    return Err(fail(
                        report,
                        rollback_message(&e.to_string(), applied.len(), &errs),
                    ));
                }
            }
            // Sysctls: write, remembering each original the first time eniroute changes it.
            let mut saved = c.saved.clone();
            let mut written: Vec<SysctlChange> = Vec::new();
            for s in c.sysctls.iter().chain(&c.restores) {
                if let Err(e) = k.sysctl_write(&s.path, &s.new) {
                    let errs = undo(k, &report.applied, &written).await;
                    let n = report.applied.len();
                    return Err(fail(report, rollback_message(&e.to_string(), n, &errs)));
                }
                written.push(s.clone());
            }
            for s in &c.sysctls {
                saved
                    .values
                    .entry(s.path.clone())
                    .or_insert_with(|| s.old.clone());
            }
            for s in &c.restores {
                saved.values.remove(&s.path);
            }
            // Forget saved values of sysctls no longer wanted whose interface is gone.
            let wanted: Vec<&str> = c.desired.sysctls.iter().map(|s| s.path.as_str()).collect();
            saved
                .values
                .retain(|p, _| wanted.contains(&p.as_str()) || k.sysctl_read(p).is_ok());

            // Verification: the kernel's own lookups must agree with the plan.
            if cfg.routing.verify {
                report.verification = verify(k, &c.desired, &c.links).await?;
                let bad: Vec<String> = report
                    .verification
                    .iter()
                    .filter(|v| !v.ok)
                    .map(|v| match v.source {
                        Some(s) => format!(
                            "eni {:?}: from {s}: expected {}, kernel says {}",
                            v.eni, v.expected, v.seen
                        ),
                        None => format!(
                            "unbound traffic: expected {}, kernel says {}",
                            v.expected, v.seen
                        ),
                    })
                    .collect();
                if !bad.is_empty() {
                    let errs = undo(k, &report.applied, &written).await;
                    let n = report.applied.len();
                    return Err(fail(
                        report,
                        rollback_message(
                            &format!("verification failed: {}", bad.join("; ")),
                            n,
                            &errs,
                        ),
                    ));
                }
            }
            if let Err(e) = state.store(&saved) {
                let errs = undo(k, &report.applied, &written).await;
                let n = report.applied.len();
                return Err(fail(report, rollback_message(&e.to_string(), n, &errs)));
            }
            Ok(report)
        })
    })
}

fn rollback_message(cause: &str, undone: usize, errors: &[String]) -> String {
    if errors.is_empty() {
        format!("{cause}; rolled back {undone} change(s): the host is as before")
    } else {
        format!(
            "{cause}; rollback of {undone} change(s) met {} error(s): {}",
            errors.len(),
            errors.join("; ")
        )
    }
}

/// What `flush` removed.
#[derive(Debug, Clone, Serialize)]
pub struct FlushReport {
    pub removed: Vec<Change>,
    pub restored: Vec<SysctlChange>,
    pub errors: Vec<String>,
}

/// `flush`: remove every object tagged `proto` and restore the saved sysctls. Best effort: it
/// goes on after an error and reports them all.
pub fn flush(proto: u8, target: &Target) -> Result<FlushReport, OpError> {
    with_kernel(target, proto, move |k| {
        Box::pin(async move {
            let state = State::current()?;
            let _lock = state.lock()?;
            let observed = k.observe(k.links().await?).await?;
            let changes = reconcile::flush(&observed);
            let mut report = FlushReport {
                removed: Vec::new(),
                restored: Vec::new(),
                errors: Vec::new(),
            };
            for phase in crate::model::phases(&changes) {
                let (done, _) = k.apply_batch(phase).await;
                for (c, ok) in phase.iter().zip(done) {
                    if ok {
                        report.removed.push(c.clone());
                    } else if let Err(e) = k.apply(c).await {
                        // Retried once alone: removing an address may already have taken
                        // routes or secondary addresses with it (ENOENT, ESRCH and
                        // EADDRNOTAVAIL then mean "already gone").
                        if !matches!(e.errno(), Some(2) | Some(3) | Some(99)) {
                            report.errors.push(e.to_string());
                        }
                    } else {
                        report.removed.push(c.clone());
                    }
                }
            }
            let mut saved = state.saved();
            let values = std::mem::take(&mut saved.values);
            for (path, value) in values {
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
            Ok(report)
        })
    })
}

/// Per-ENI status.
#[derive(Debug, Clone, Serialize)]
pub struct EniStatus {
    pub name: String,
    pub mode: crate::model::Mode,
    pub interface: Option<String>,
    pub found: bool,
    pub reason: Option<String>,
    pub addresses: Vec<String>,
    pub tables: Vec<u32>,
    pub rules: Vec<String>,
    pub verification: Vec<Verdict>,
}

/// What `status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub protocol: u8,
    pub enis: Vec<EniStatus>,
    pub egress: Vec<Verdict>,
    pub owned: Owned,
    pub pending_changes: usize,
    /// Foreign objects in the way of the plan (apply would refuse).
    pub conflicts: Vec<Conflict>,
}

/// Counts of the objects eniroute owns.
#[derive(Debug, Clone, Serialize)]
pub struct Owned {
    pub addresses: usize,
    pub routes: usize,
    pub rules: usize,
}

impl StatusReport {
    pub fn healthy(&self) -> bool {
        self.enis
            .iter()
            .all(|e| e.found && e.verification.iter().all(|v| v.ok))
            && self.egress.iter().all(|v| v.ok)
            && self.pending_changes == 0
            && self.conflicts.is_empty()
    }
}

/// `status`: what eniroute owns now, per ENI, and whether each source routes right.
pub fn status(cfg: &Config, target: &Target) -> Result<StatusReport, OpError> {
    let cfg = cfg.clone();
    with_kernel(target, cfg.routing.protocol, move |k| {
        Box::pin(async move {
            let observed = k.observe(k.links().await?).await?;
            let d = plan::desired(&cfg, Some(&observed.links));
            let (pending, conflicts) = if d.missing.is_empty() {
                match reconcile::reconcile(&d, &observed) {
                    Ok(c) => (c.len(), Vec::new()),
                    Err(conflicts) => (0, conflicts),
                }
            } else {
                (0, Vec::new())
            };
            let verdicts = verify(k, &d, &observed.links).await?;
            let mut enis = Vec::new();
            for ep in &d.enis {
                let missing = d.missing.iter().find(|m| m.eni == ep.name);
                let addresses = observed
                    .addresses
                    .iter()
                    .map(|a| (a, true))
                    .chain(observed.foreign_addresses.iter().map(|a| (a, false)))
                    .filter(|(a, _)| ep.found && a.iface.index == ep.iface.index)
                    .map(|(a, own)| {
                        format!(
                            "{}/{}{}",
                            a.addr,
                            a.prefix_len,
                            if own { "" } else { " (not eniroute's)" }
                        )
                    })
                    .collect();
                let rules = observed
                    .rules
                    .iter()
                    .filter(|r| ep.tables.contains(&r.table))
                    .map(|r| r.to_string())
                    .collect();
                enis.push(EniStatus {
                    name: ep.name.clone(),
                    mode: ep.mode,
                    interface: ep.found.then(|| ep.iface.name.clone()),
                    found: ep.found,
                    reason: missing.map(|m| m.reason.clone()),
                    addresses,
                    tables: ep.tables.clone(),
                    rules,
                    verification: if ep.found {
                        verdicts
                            .iter()
                            .filter(|v| v.source.is_some() && v.eni == ep.name)
                            .cloned()
                            .collect()
                    } else {
                        Vec::new()
                    },
                });
            }
            Ok(StatusReport {
                protocol: cfg.routing.protocol,
                enis,
                egress: verdicts
                    .into_iter()
                    .filter(|v| v.source.is_none())
                    .collect(),
                owned: Owned {
                    addresses: observed.addresses.len(),
                    routes: observed.routes.len(),
                    rules: observed.rules.len(),
                },
                pending_changes: pending,
                conflicts,
            })
        })
    })
}
