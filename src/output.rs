//! Output: every word eniroute prints — text for people (stdout; messages and warnings on
//! stderr) or JSON for programs — including the wording of the shell's errors. May import
//! everything below cli.

use std::fmt;

use clap::ValueEnum;
use serde::Serialize;

use crate::config::{ConfigError, Warning};
use crate::host::Holder;
use crate::model::Rule;
use crate::ops::{Cause, EniStatus, Failure, OpError, Owned, StatusAddress};
use crate::plan::Missing;
use crate::reconcile::Conflict;

/// `-o text|json`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Text,
    Json,
}

/// Where and how much to print.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub format: Format,
    pub verbose: u8,
    pub quiet: bool,
}

impl Out {
    pub fn new(format: Format, verbose: u8, quiet: bool) -> Self {
        Out {
            format,
            verbose,
            quiet,
        }
    }

    /// A result line for people (text mode only; silenced by -q).
    pub fn info(&self, msg: &str) {
        if self.format == Format::Text && !self.quiet {
            println!("{msg}");
        }
    }

    /// Progress detail on stderr, shown with -v.
    pub fn detail(&self, msg: &str) {
        if self.verbose > 0 && !self.quiet {
            eprintln!("{msg}");
        }
    }

    /// Warnings and notes always go to stderr (unless -q), in both formats.
    pub fn warnings(&self, path: &str, warnings: &[Warning]) {
        if self.quiet {
            return;
        }
        for w in warnings {
            let kind = if w.note { "note" } else { "warning" };
            if w.line > 0 {
                eprintln!("{kind}: {path}:{}: {}", w.line, w.message);
            } else {
                eprintln!("{kind}: {path}: {}", w.message);
            }
        }
    }

    pub fn warn(&self, msg: &str) {
        if !self.quiet {
            eprintln!("warning: {msg}");
        }
    }

    /// An error: stderr in text mode; a JSON object on stdout in JSON mode.
    pub fn error(&self, msg: &str) {
        match self.format {
            Format::Text => eprintln!("error: {msg}"),
            Format::Json => print_json(&serde_json::json!({ "error": msg })),
        }
    }

    /// An invalid config: every problem.
    pub fn config_error(&self, e: &ConfigError) {
        match self.format {
            Format::Text => {
                eprintln!("error: invalid configuration {}", e.path);
                for line in e.to_string().lines() {
                    eprintln!("  {line}");
                }
            }
            Format::Json => print_json(&serde_json::json!({
                "valid": false,
                "path": e.path,
                "problems": e.problems,
            })),
        }
    }
}

/// Print a value as pretty JSON on stdout.
pub fn print_json<T: Serialize>(v: &T) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: cannot encode JSON: {e}"),
    }
}

use crate::model::Change;
use crate::ops::SysctlChange;
use crate::ops::{ApplyReport, ContainersStatus, FlushReport, PlanReport, StatusReport, Verdict};

fn change_line(c: &Change) -> String {
    format!("{} {c}", c.sign())
}

fn sysctl_line(s: &SysctlChange) -> String {
    format!("~ sysctl {} {} -> {}", s.name, s.old, s.new)
}

fn counts(changes: &[Change]) -> (usize, usize, usize) {
    let add = changes.iter().filter(|c| c.sign() == '+').count();
    let change = changes.iter().filter(|c| c.sign() == '~').count();
    let del = changes.iter().filter(|c| c.sign() == '-').count();
    (add, change, del)
}

/// `plan` output.
pub fn plan(out: &Out, r: &PlanReport) {
    if out.format == Format::Json {
        return print_json(&serde_json::json!({ "changes_pending": !r.is_empty(), "plan": r }));
    }
    for n in &r.notes {
        out.detail(&format!("note: {n}"));
    }
    for c in &r.changes {
        out.info(&change_line(c));
    }
    for s in r.sysctls.iter().chain(&r.restores) {
        out.info(&sysctl_line(s));
    }
    if r.is_empty() {
        out.info("No changes: the kernel matches the configuration.");
    } else {
        let (a, c, d) = counts(&r.changes);
        out.info(&format!(
            "Plan: {a} to add, {c} to change, {d} to remove, {} sysctl(s) to set.",
            r.sysctls.len() + r.restores.len()
        ));
    }
}

fn verdict_line(v: &Verdict) -> String {
    let what = match (v.source, v.mark) {
        (Some(s), _) => format!("from {s}"),
        (None, Some(m)) => format!("mark {m:#x}"),
        (None, None) => "unbound".to_string(),
    };
    if v.ok {
        format!("  ok    {:<10} {what}: {}", v.eni, v.seen)
    } else {
        format!(
            "  WRONG {:<10} {what}: expected {}, kernel says {}",
            v.eni, v.expected, v.seen
        )
    }
}

/// `apply` output.
pub fn applied(out: &Out, r: &ApplyReport) {
    if out.format == Format::Json {
        return print_json(&serde_json::json!({ "ok": true, "report": r }));
    }
    for c in &r.applied {
        out.info(&change_line(c));
    }
    for s in r.plan.sysctls.iter().chain(&r.plan.restores) {
        out.info(&sysctl_line(s));
    }
    if r.plan.is_empty() {
        out.info("No changes: the kernel matches the configuration.");
    } else {
        let (a, c, d) = counts(&r.applied);
        out.info(&format!(
            "Applied: {a} added, {c} changed, {d} removed, {} sysctl(s) set.",
            r.plan.sysctls.len() + r.plan.restores.len()
        ));
    }
    if !r.verification.is_empty() {
        let ok = r.verification.iter().filter(|v| v.ok).count();
        out.info(&format!(
            "Verified: {ok}/{} route lookups as planned.",
            r.verification.len()
        ));
        if out.verbose > 0 {
            for v in &r.verification {
                out.info(&verdict_line(v));
            }
        }
    }
}

/// A failed apply that was rolled back: the error and what was undone (one JSON object in
/// JSON mode; the disagreeing verdicts and the error on stderr in text mode).
pub fn rolled_back(out: &Out, f: &Failure) {
    let message = failure_text(f);
    let r = &f.report;
    match out.format {
        Format::Json => print_json(&serde_json::json!({
            "ok": false,
            "error": message,
            "rolled_back": true,
            "report": r,
        })),
        Format::Text => {
            for v in r.verification.iter().filter(|v| !v.ok) {
                eprintln!("{}", verdict_line(v));
            }
            eprintln!("error: {message}");
        }
    }
}

/// Said once when another eniroute holds the lock.
pub fn lock_waiting(out: &Out, holder: Option<&Holder>) {
    if out.quiet {
        return;
    }
    match holder {
        Some(h) => eprintln!("waiting for the lock held by {h}"),
        None => eprintln!("waiting for the lock held by another eniroute"),
    }
}

/// A failed operation: the wording of its error, and the rolled-back report when there is one.
pub fn op_error(out: &Out, e: &OpError) {
    match e {
        OpError::RolledBack(f) => rolled_back(out, f),
        _ => out.error(&e.to_string()),
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpError::Netns(e) => write!(f, "{e}"),
            OpError::Missing(m) => f.write_str(&missing_text(m)),
            OpError::Host(e) => write!(f, "{e}"),
            OpError::Conflicts(c) => write!(f, "refusing to change anything: {}", conflict_text(c)),
            OpError::Kernel(e) => write!(f, "{e}"),
            OpError::Sysctl(e) => write!(f, "{e}"),
            OpError::RolledBack(failure) => f.write_str(&failure_text(failure)),
            OpError::NetnsGone { name } => {
                write!(
                    f,
                    "network namespace {name:?} was deleted during the run (namespace gone)"
                )
            }
            OpError::NotPermitted { verb } => write!(
                f,
                "{verb} changes the kernel's routing and needs root or CAP_NET_ADMIN (try sudo)"
            ),
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

/// Why apply failed, and what its rollback did.
fn failure_text(f: &Failure) -> String {
    let cause = match &f.cause {
        Cause::Interrupted if f.undo_errors.is_empty() => {
            return format!("interrupted: rolled back {} changes", f.undone);
        }
        Cause::Interrupted => "interrupted".to_string(),
        Cause::Kernel(e) => e.to_string(),
        Cause::Sysctl(e) => e.to_string(),
        Cause::State(e) => e.to_string(),
        Cause::Verification => {
            let bad: Vec<String> = (f.report.verification.iter())
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
            format!("verification failed: {}", bad.join("; "))
        }
    };
    if f.undo_errors.is_empty() {
        format!(
            "{cause}; rolled back {} change(s): the host is as before",
            f.undone
        )
    } else {
        format!(
            "{cause}; rollback of {} change(s) met {} error(s): {}",
            f.undone,
            f.undo_errors.len(),
            f.undo_errors.join("; ")
        )
    }
}

/// `flush` output.
pub fn flushed(out: &Out, r: &FlushReport) {
    if out.format == Format::Json {
        return print_json(r);
    }
    for c in &r.removed {
        out.info(&change_line(c));
    }
    for s in &r.restored {
        out.info(&sysctl_line(s));
    }
    for route in &r.restored_routes {
        out.info(&format!(
            "+ route {route} (put back: the kernel dropped it with eniroute's addresses)"
        ));
    }
    for w in &r.warnings {
        out.warn(w);
    }
    for e in &r.errors {
        eprintln!("error: {e}");
    }
    out.info(&format!(
        "Flushed: {} object(s) removed, {} sysctl(s) restored.",
        r.removed.len(),
        r.restored.len()
    ));
}

/// `status` output.
pub fn status(out: &Out, r: &StatusReport) {
    if out.format == Format::Json {
        return print_json(
            &serde_json::json!({ "healthy": r.healthy(), "status": StatusJson::of(r) }),
        );
    }
    for e in &r.enis {
        let head = match (&e.interface, &e.reason) {
            (Some(i), _) => format!("eni {} ({}, {}): tables {:?}", e.name, i, e.mode, e.tables),
            (None, reason) => format!(
                "eni {} ({}): MISSING{}",
                e.name,
                e.mode,
                reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
        };
        out.info(&head);
        if !e.addresses.is_empty() {
            let addrs: Vec<String> = e.addresses.iter().map(address_text).collect();
            out.info(&format!("  addresses: {}", addrs.join(", ")));
        }
        for rule in &e.rules {
            out.info(&format!("  rule {rule}"));
        }
        for v in &e.verification {
            out.info(&verdict_line(v));
        }
    }
    for v in &r.egress {
        out.info(&verdict_line(v));
    }
    if let Some(c) = &r.containers {
        containers_status(out, c);
    }
    for s in &r.sysctl_drift {
        out.info(&sysctl_line(s));
    }
    out.info(&format!(
        "Owned (protocol {}): {} address(es), {} route(s), {} rule(s); {}",
        r.protocol,
        r.owned.addresses,
        r.owned.routes,
        r.owned.rules,
        match (r.pending_changes, r.conflicts.len()) {
            (0, 0) => "in sync with the config.".to_string(),
            (_, 0) => format!("{} change(s) pending (see plan).", r.pending_changes),
            (_, n) => format!("{n} conflict(s) with foreign objects (see plan)."),
        }
    ));
}

/// The table `inet eniroute` and its counters, in `status`.
fn containers_status(out: &Out, c: &ContainersStatus) {
    let state = match (c.present, c.as_planned) {
        (true, true) => "present, as planned",
        (true, false) => "present, DIFFERS from the plan",
        (false, _) => "MISSING",
    };
    out.info(&format!("nftables table inet eniroute: {state}"));
    for m in &c.marked {
        out.info(&format!(
            "  eni {} (mark {:#x}): {} connection(s) marked on arrival",
            m.what, m.mark, m.connections
        ));
    }
    for m in &c.egress {
        out.info(&format!(
            "  container network {} (mark {:#x}): {} connection(s) marked",
            m.what, m.mark, m.connections
        ));
    }
}

/// An ENI's address as status shows it: `192.168.10.10/24`, marked when it is not eniroute's.
fn address_text(a: &StatusAddress) -> String {
    format!(
        "{}/{}{}",
        a.address.addr,
        a.address.prefix_len,
        if a.owned { "" } else { " (not eniroute's)" }
    )
}

/// The JSON document of `status`.
#[derive(Serialize)]
struct StatusJson<'a> {
    protocol: u8,
    enis: Vec<EniStatusJson<'a>>,
    egress: &'a [Verdict],
    owned: OwnedJson,
    pending_changes: usize,
    sysctl_drift: &'a [SysctlChange],
    conflicts: &'a [Conflict],
    #[serde(skip_serializing_if = "Option::is_none")]
    containers: Option<&'a ContainersStatus>,
}

#[derive(Serialize)]
struct EniStatusJson<'a> {
    name: &'a str,
    mode: crate::model::Mode,
    interface: Option<&'a str>,
    found: bool,
    reason: Option<&'a str>,
    addresses: Vec<String>,
    tables: &'a [u32],
    rules: Vec<String>,
    verification: &'a [Verdict],
}

#[derive(Serialize)]
struct OwnedJson {
    addresses: usize,
    routes: usize,
    rules: usize,
}

impl<'a> StatusJson<'a> {
    fn of(r: &'a StatusReport) -> Self {
        let Owned {
            addresses,
            routes,
            rules,
        } = r.owned;
        StatusJson {
            protocol: r.protocol,
            enis: r.enis.iter().map(EniStatusJson::of).collect(),
            egress: &r.egress,
            owned: OwnedJson {
                addresses,
                routes,
                rules,
            },
            pending_changes: r.pending_changes,
            sysctl_drift: &r.sysctl_drift,
            conflicts: &r.conflicts,
            containers: r.containers.as_ref(),
        }
    }
}

impl<'a> EniStatusJson<'a> {
    fn of(e: &'a EniStatus) -> Self {
        EniStatusJson {
            name: &e.name,
            mode: e.mode,
            interface: e.interface.as_deref(),
            found: e.found,
            reason: e.reason.as_deref(),
            addresses: e.addresses.iter().map(address_text).collect(),
            tables: &e.tables,
            rules: e.rules.iter().map(Rule::to_string).collect(),
            verification: &e.verification,
        }
    }
}
