//! Output: every word eniroute prints — text for people (stdout; messages and warnings on
//! stderr) or JSON for programs — including the wording of the shell's errors. May import
//! everything below cli.

use std::fmt;

mod journal;
use journal::Level;

use clap::ValueEnum;
use serde::Serialize;

use crate::config::{ConfigError, Warning};
use crate::host::Holder;
use crate::model::Rule;
use crate::ops::{Cause, EniStatus, Failure, OpError, Owned, StatusAddress};
use crate::plan::Missing;
use crate::reconcile::Conflict;

mod doctor_text;
pub use doctor_text::{doctor, doctor_warnings};
mod snippet;
pub use snippet::{config_error_text, warning_text};

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
            journal::say(Level::Info, msg);
        }
    }

    /// Warnings and notes always go to stderr (unless -q), in both formats.
    pub fn warnings(&self, path: &str, warnings: &[Warning]) {
        if self.quiet {
            return;
        }
        let colour = snippet::colour();
        for w in warnings {
            let level = if w.note { Level::Info } else { Level::Warning };
            journal::say(level, &snippet::warning_text(path, w, colour));
        }
    }

    pub fn warn(&self, msg: &str) {
        if !self.quiet {
            journal::say(Level::Warning, &format!("warning: {msg}"));
        }
    }

    /// An error: stderr in text mode; a JSON object on stdout in JSON mode.
    pub fn error(&self, msg: &str) {
        match self.format {
            Format::Text => journal::say(Level::Err, &format!("error: {msg}")),
            Format::Json => print_json(&serde_json::json!({ "error": msg })),
        }
    }

    /// An invalid config: every problem.
    pub fn config_error(&self, e: &ConfigError) {
        match self.format {
            Format::Text => journal::say(
                Level::Err,
                &snippet::config_error_text(e, snippet::colour()),
            ),
            Format::Json => print_json(&serde_json::json!({
                "ok": false,
                "valid": false,
                "path": e.path,
                "problems": e.problems,
            })),
        }
    }
}

/// A config file that could not be read at all (exit 66); a missing one says where a config
/// comes from.
pub fn config_unreadable(out: &Out, e: &crate::config::LoadError) {
    out.error(&e.to_string());
    let missing = matches!(e, crate::config::LoadError::Read { source, .. }
        if source.kind() == std::io::ErrorKind::NotFound);
    if missing && !out.quiet && out.format == Format::Text {
        journal::say(
            Level::Err,
            &format!(
            "hint: write the config there (annotated examples: /usr/share/doc/eniroute/examples/), \
             name another with -c FILE, or generate it on the instance: \
             eniroute discover --output {}",
            crate::config::DEFAULT_PATH
        ),
        );
    }
}

/// After render: each ENI found by MAC only that is not on this host is named by its label
/// in the script, which `ip -batch` cannot load: say so, with the fix.
pub fn render_unresolved(
    out: &Out,
    cfg: &crate::model::Config,
    d: &crate::plan::Desired,
    host_view: bool,
) {
    for e in cfg.enis.iter().filter(|e| e.interface.is_none()) {
        let missing = d.missing.iter().find(|m| m.eni == e.name);
        if host_view && missing.is_none() {
            continue;
        }
        let why = match missing {
            Some(m) => m.reason.clone(),
            None => "this host's interfaces could not be listed".to_string(),
        };
        out.warn(&format!(
            "eni {:?} (mac {}): not resolved ({why}); the script names it {:?}, which `ip -batch` \
             cannot load: render on the instance that has it, or add interface = \"...\" to the config",
            e.name,
            e.mac.map(crate::model::mac_text).unwrap_or_default(),
            e.fallback_ifname()
        ));
    }
}

/// The version of eniroute's JSON output: raised when a field changes meaning or goes away
/// (new fields do not raise it).
pub const JSON_SCHEMA: u32 = 1;

static COMMAND: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// The verb whose JSON this process prints (set once by the command line).
pub fn set_command(verb: &'static str) {
    let _ = COMMAND.set(verb);
}

/// Every JSON document eniroute prints: the envelope, then the verb's own fields.
#[derive(Serialize)]
struct Envelope<'a> {
    eniroute: &'static str,
    schema: u32,
    command: &'a str,
    ok: bool,
    #[serde(flatten)]
    data: serde_json::Map<String, serde_json::Value>,
}

/// Print one JSON document on stdout; `ok` is the value's own `ok` field, else whether it has
/// no `error`.
pub fn print_json<T: Serialize>(v: &T) {
    emit_json(None, v)
}

/// Print one JSON document whose `ok` the caller knows (status: healthy; sandbox: passed).
pub fn print_json_ok<T: Serialize>(ok: bool, v: &T) {
    emit_json(Some(ok), v)
}

/// The one function every JSON document goes through (README: "JSON output").
fn emit_json<T: Serialize>(ok: Option<bool>, v: &T) {
    let encoded = serde_json::to_value(v).and_then(|value| {
        let mut data = match value {
            serde_json::Value::Object(m) => m,
            other => serde_json::Map::from_iter([("data".to_string(), other)]),
        };
        let own_ok = match data.remove("ok") {
            Some(serde_json::Value::Bool(b)) => Some(b),
            _ => None,
        };
        let ok = ok.or(own_ok).unwrap_or_else(|| !data.contains_key("error"));
        serde_json::to_string_pretty(&Envelope {
            eniroute: env!("CARGO_PKG_VERSION"),
            schema: JSON_SCHEMA,
            command: COMMAND.get().copied().unwrap_or("eniroute"),
            ok,
            data,
        })
    });
    match encoded {
        Ok(s) => println!("{s}"),
        Err(e) => journal::say(Level::Err, &format!("error: cannot encode JSON: {e}")),
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

/// `apply --try`: the window opens. Said on stderr even with -q or -o json (it asks the
/// operator for something, and the answer decides what the host keeps).
pub fn try_window(p: &crate::host::PendingTry, window: std::time::Duration, tty: bool) {
    let how = if tty {
        "press Enter here, or run `eniroute confirm`"
    } else {
        "run `eniroute confirm`"
    };
    let netns = p
        .netns
        .as_ref()
        .map(|n| format!(" --netns {n}"))
        .unwrap_or_default();
    let how = how.replace("eniroute confirm", &format!("eniroute{netns} confirm"));
    journal::say(
        Level::Info,
        &format!(
            "applied {} change(s) and {} sysctl(s): {how} within {} to keep them, or they are \
             rolled back",
            p.changes,
            p.sysctls,
            humantime::format_duration(window)
        ),
    );
}

/// `apply --try`, confirmed (or nothing to try).
pub fn tried(out: &Out, r: &crate::ops::TryReport) {
    if out.format == Format::Json {
        return print_json(&serde_json::json!({
            "ok": true,
            "report": r.report,
            "confirmed": r.confirmed.is_some(),
        }));
    }
    applied(out, &r.report);
    if r.confirmed.is_some() {
        out.info("Confirmed: the new routing stays.");
    }
}

/// `confirm`: the try kept its routing.
pub fn confirmed(out: &Out, c: &crate::ops::Confirmed) {
    if out.format == Format::Json {
        return print_json(&serde_json::json!({ "ok": true, "try": c.pending }));
    }
    out.info(&format!(
        "Confirmed: eniroute apply --try (pid {}, {}) keeps its routing.",
        c.pending.pid, c.pending.config
    ));
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
                journal::say(Level::Err, &verdict_line(v));
            }
            journal::say(Level::Err, &format!("error: {message}"));
        }
    }
}

/// `apply --wait` progress on stderr: on a terminal one line rewritten in place each second
/// ("waiting for ENI web (mac …): 3s of 30s"); otherwise (a log, the journal) one line when
/// the wait starts and one when it ends. The failure itself is the error of the pass.
pub fn wait_progress(out: &Out) -> crate::ops::WaitProgress {
    use std::io::IsTerminal;
    let out = *out;
    let tty = std::io::stderr().is_terminal();
    let started = std::sync::atomic::AtomicBool::new(false);
    std::sync::Arc::new(move |missing, waited, total| {
        if out.quiet {
            return;
        }
        let secs = |d: std::time::Duration| d.as_secs();
        let first = !started.swap(true, std::sync::atomic::Ordering::SeqCst);
        if missing.is_empty() {
            journal::say(
                Level::Info,
                &format!("every ENI is there after {:.1}s", waited.as_secs_f64()),
            );
            return;
        }
        let names: Vec<String> = missing
            .iter()
            .map(|m| match (&m.mac, &m.interface) {
                (Some(mac), _) => format!("{} (mac {mac})", m.eni),
                (None, Some(i)) => format!("{} (interface {i})", m.eni),
                (None, None) => m.eni.clone(),
            })
            .collect();
        let what = format!("waiting for ENI {}", names.join(", "));
        if tty {
            journal::progress(&format!("{what}: {}s of {}s", secs(waited), secs(total)));
        } else if first {
            journal::say(Level::Info, &format!("{what}: up to {}s", secs(total)));
        }
    })
}

/// `-v`: each change on stderr as the kernel accepts it; `-vv`: also each netlink batch with
/// its size and time. None without -v.
pub fn batch_trace(out: &Out) -> Option<crate::ops::BatchTrace> {
    if out.verbose == 0 || out.quiet {
        return None;
    }
    let level = out.verbose;
    Some(std::sync::Arc::new(move |done: &[Change], sent, took| {
        if level > 1 {
            journal::say(
                Level::Info,
                &format!(
                    "netlink batch: {sent} request(s), {} accepted, {:.2} ms",
                    done.len(),
                    took.as_secs_f64() * 1000.0
                ),
            );
        }
        for c in done {
            journal::say(Level::Info, &format!("applied {}", change_line(c)));
        }
    }))
}

/// Said once when another eniroute holds the lock.
pub fn lock_waiting(out: &Out, holder: Option<&Holder>) {
    if out.quiet {
        return;
    }
    match holder {
        Some(h) => journal::say(Level::Info, &format!("waiting for the lock held by {h}")),
        None => journal::say(Level::Info, "waiting for the lock held by another eniroute"),
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
            OpError::Signal(e) => write!(f, "cannot listen for or send signals: {e}"),
            OpError::WatchRunning { pid } => write!(
                f,
                "eniroute watch (pid {pid}) serves this namespace and would put its own config back \
                 during the try: stop it first (systemctl stop eniroute-watch leaves the routing \
                 in place), and start it again once the try is confirmed"
            ),
            OpError::NoPendingTry => f.write_str(
                "no `eniroute apply --try` is waiting for a confirmation in this namespace",
            ),
            OpError::TooLate { pid } => write!(
                f,
                "too late: the try (pid {pid}) had already rolled back the routing"
            ),
            OpError::TryUnanswered { pid } => write!(
                f,
                "the try (pid {pid}) did not say whether it kept the routing: see `eniroute status`"
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
/// A verification failure as a few lines: per wrong lookup the source, what the kernel chose
/// and in which table; then, once per kind of winner, where to look.
fn verification_failure(verdicts: &[Verdict]) -> String {
    let bad: Vec<&Verdict> = verdicts.iter().filter(|v| !v.ok).collect();
    let mut text = format!(
        "verification failed: {} of {} route lookups disagree with the plan:",
        bad.len(),
        verdicts.len()
    );
    let mut hints: Vec<&str> = Vec::new();
    for v in bad {
        let from = match v.source {
            Some(s) => format!("eni {:?}: from {s}", v.eni),
            None => "unbound traffic".to_string(),
        };
        let table = match v.table {
            Some(254) => " (table main)".to_string(),
            Some(t) => format!(" (table {t})"),
            None => String::new(),
        };
        text.push_str(&format!(
            "\n  {from}: expected {}, kernel says {}{table}",
            v.expected, v.seen
        ));
        let hint = match v.table {
            Some(254) => {
                "hint: a route in table main more specific than default won (a VPN's \
                 0.0.0.0/1?): see `ip route show table main`"
            }
            Some(_) => "hint: a rule before eniroute's chose that table: see `ip rule show`",
            None => "hint: see `ip rule show` and `ip route get 8.8.8.8 from <source>`",
        };
        if !hints.contains(&hint) {
            hints.push(hint);
        }
    }
    for h in hints {
        text.push_str(&format!("\n  {h}"));
    }
    text
}

fn failure_text(f: &Failure) -> String {
    let cause = match &f.cause {
        Cause::Interrupted if f.undo_errors.is_empty() => {
            return format!("interrupted: rolled back {} changes", f.undone);
        }
        Cause::Interrupted => "interrupted".to_string(),
        Cause::Kernel(e) => e.to_string(),
        Cause::Sysctl(e) => e.to_string(),
        Cause::State(e) => e.to_string(),
        Cause::Verification => verification_failure(&f.report.verification),
        Cause::NotConfirmed {
            window,
            interrupted,
            drifted,
        } => format!(
            "{} within {}{}",
            if *interrupted {
                "interrupted before a confirmation"
            } else {
                "not confirmed"
            },
            humantime::format_duration(*window),
            if *drifted {
                " (the routing had changed meanwhile: converged back to what eniroute owned before)"
            } else {
                ""
            }
        ),
    };
    // A cause of several lines gets the outcome on a line of its own.
    let sep = if cause.contains('\n') { "\n" } else { "; " };
    if f.undo_errors.is_empty() {
        format!(
            "{cause}{sep}rolled back {} change(s): the host is as before",
            f.undone
        )
    } else {
        format!(
            "{cause}{sep}rollback of {} change(s) met {} error(s): {}",
            f.undone,
            f.undo_errors.len(),
            f.undo_errors.join("; ")
        )
    }
}

/// `flush` output.
pub fn flushed(out: &Out, r: &FlushReport) {
    if out.format == Format::Json {
        return print_json_ok(r.errors.is_empty(), r);
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
        journal::say(Level::Err, &format!("error: {e}"));
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
        return print_json_ok(
            r.healthy(),
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
        // iproute2's syntax, as in plan: the line pastes after `ip`.
        for rule in &e.rules {
            out.info(&format!("  {}", Change::AddRule(rule.clone())));
        }
        for v in &e.verification {
            out.info(&verdict_line(v));
        }
    }
    if !r.egress.is_empty() {
        out.info("egress (traffic not bound to a source):");
        for v in &r.egress {
            out.info(&verdict_line(v));
        }
    }
    if let Some(c) = &r.containers {
        containers_status(out, c);
    }
    for s in &r.sysctl_drift {
        out.info(&sysctl_line(s));
    }
    out.info(&format!(
        "Owned (protocol {}): {} address(es), {} route(s), {} rule(s).",
        r.protocol, r.owned.addresses, r.owned.routes, r.owned.rules,
    ));
    out.info(&watch_line(r.watch.as_ref()));
    if let Some(t) = &r.pending_try {
        out.info(&format!(
            "try: eniroute apply --try (PID {}, {}) waits for `eniroute confirm` until {} UTC; \
             unconfirmed, its {} change(s) are rolled back.",
            t.pid,
            t.config,
            clock(t.deadline),
            t.changes
        ));
    }
    out.info(&status_summary(r));
}

/// The one verdict line of `status`: healthy, or every reason it is not.
fn status_summary(r: &StatusReport) -> String {
    let missing: Vec<&str> = r
        .enis
        .iter()
        .filter(|e| !e.found)
        .map(|e| e.name.as_str())
        .collect();
    let wrong = r
        .enis
        .iter()
        .flat_map(|e| &e.verification)
        .chain(&r.egress)
        .filter(|v| !v.ok)
        .count();
    let mut why = Vec::new();
    if !missing.is_empty() {
        why.push(format!("ENI(s) missing: {}", missing.join(", ")));
    }
    if wrong > 0 {
        why.push(format!("{wrong} route lookup(s) not as planned"));
    }
    if r.pending_changes > 0 {
        why.push(format!(
            "{} change(s) pending (see plan)",
            r.pending_changes
        ));
    }
    if !r.conflicts.is_empty() {
        why.push(format!(
            "{} conflict(s) with foreign objects (see plan)",
            r.conflicts.len()
        ));
    }
    if why.is_empty() && r.healthy() {
        "Healthy: in sync with the config; every source routes through its ENI.".to_string()
    } else {
        format!("Not healthy: {}.", why.join("; "))
    }
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
    watch: Option<WatchJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending_try: Option<&'a crate::host::PendingTry>,
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
    addresses: Vec<StatusAddressJson<'a>>,
    tables: &'a [u32],
    rules: &'a [Rule],
    verification: &'a [Verdict],
}

/// An address of an ENI: its fields, and whether eniroute added it (structured, not a
/// preformatted "192.168.10.10/24 (not eniroute's)").
#[derive(Serialize)]
struct StatusAddressJson<'a> {
    #[serde(flatten)]
    address: &'a crate::model::Address,
    owned: bool,
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
            watch: r.watch.as_ref().map(WatchJson::of),
            pending_try: r.pending_try.as_ref(),
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
            addresses: (e.addresses.iter())
                .map(|a| StatusAddressJson {
                    address: &a.address,
                    owned: a.owned,
                })
                .collect(),
            tables: &e.tables,
            rules: &e.rules,
            verification: &e.verification,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// watch

use crate::host::WatchStatus;
use crate::ops::{Heal, ResyncWhy, WatchEvent};

/// A time of day in UTC, `HH:MM:SS`, from seconds since the epoch.
fn clock(secs: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    let stamp = humantime::format_rfc3339_seconds(t).to_string();
    stamp.get(11..19).unwrap_or(&stamp).to_string()
}

/// `status`'s line about the watch daemon.
fn watch_line(w: Option<&WatchStatus>) -> String {
    let Some(w) = w else {
        return "watch: no eniroute watch daemon serves this namespace.".to_string();
    };
    let last = match &w.last_heal {
        Some((at, what)) => format!(", last at {} UTC ({what})", clock(*at)),
        None => String::new(),
    };
    format!(
        "watch: served by PID {} since {} UTC; {} heal(s){last}.",
        w.pid,
        clock(w.since),
        w.heals
    )
}

/// The watch daemon in `status -o json`.
#[derive(Serialize)]
struct WatchJson<'a> {
    pid: u32,
    since: u64,
    heals: u64,
    last_heal: Option<u64>,
    last_healed: Option<&'a str>,
}

impl<'a> WatchJson<'a> {
    fn of(w: &'a WatchStatus) -> Self {
        WatchJson {
            pid: w.pid,
            since: w.since,
            heals: w.heals,
            last_heal: w.last_heal.as_ref().map(|(t, _)| *t),
            last_healed: w.last_heal.as_ref().map(|(_, s)| s.as_str()),
        }
    }
}

/// One daemon log line on stderr, through [`journal::say`] (with its `<N>` priority when
/// stderr is the journal); warnings and errors say so, as the other verbs print them.
fn log(out: &Out, level: Level, msg: &str) {
    if out.quiet && level != Level::Err {
        return;
    }
    match level {
        Level::Err => journal::say(level, &format!("error: {msg}")),
        Level::Warning => journal::say(level, &format!("warning: {msg}")),
        Level::Info => journal::say(level, msg),
    }
}

/// What one heal did on one interface: `healed eth1: 3 rules, 2 routes re-added (removed by
/// another program)`.
pub fn heal_line(h: &Heal) -> String {
    let plural = |n: usize, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    let mut made = Vec::new();
    for (n, what) in [
        (h.rules, "rule"),
        (h.routes, "route"),
        (h.addresses, "address"),
    ] {
        if n > 0 {
            made.push(plural(n, what).replace("addresss", "addresses"));
        }
    }
    let mut parts = Vec::new();
    if h.link_up {
        parts.push("link set up (it was down)".to_string());
    }
    if !made.is_empty() {
        parts.push(format!(
            "{} re-added (removed by another program)",
            made.join(", ")
        ));
    }
    if h.removed > 0 {
        parts.push(format!("{} removed", plural(h.removed, "object")));
    }
    format!("healed {}: {}", h.iface, parts.join("; "))
}

/// The systemd STATUS= line and the log of one daemon event.
pub fn watch_event(out: &Out, e: &WatchEvent) -> Option<String> {
    use WatchEvent as W;
    match e {
        W::Converged(r) => {
            let n = r.applied.len();
            let msg = format!(
                "converged: {n} change(s), {} sysctl(s); watching for changes",
                r.plan.sysctls.len() + r.plan.restores.len()
            );
            log(out, Level::Info, &msg);
            Some(format!("converged ({n} change(s)); watching"))
        }
        W::ReadyWaiting => Some("still waiting for ENIs (see the log)".into()),
        W::Healed {
            heals,
            sysctls,
            total,
        } => {
            for h in heals.iter() {
                log(out, Level::Info, &heal_line(h));
            }
            if *sysctls > 0 {
                log(
                    out,
                    Level::Info,
                    &format!("healed: {sysctls} sysctl(s) set again (changed by another program)"),
                );
            }
            Some(format!("watching; {total} heal(s)"))
        }
        W::Waiting(m) => {
            log(
                out,
                Level::Warning,
                &format!("waiting: {}", missing_text(m)),
            );
            Some(format!("waiting for {} ENI(s)", m.len()))
        }
        W::Fight(w) => {
            log(
                out,
                Level::Warning,
                &format!(
                    "another program keeps undoing {} ({} times in a row): backing off, next heal \
                     in {} at the earliest",
                    w.object,
                    w.repeats,
                    humantime::format_duration(w.delay)
                ),
            );
            None
        }
        W::PassFailed { error, retry } => {
            log(
                out,
                Level::Err,
                &format!(
                    "{error}; trying again in {}",
                    humantime::format_duration(*retry)
                ),
            );
            Some("degraded: the last pass failed (see the log)".into())
        }
        W::LockWait(h) => {
            let who = h.map_or("another eniroute".to_string(), |h| h.to_string());
            log(
                out,
                Level::Info,
                &format!("waiting for the lock held by {who}"),
            );
            None
        }
        W::Resync(why) => {
            let why = match why {
                ResyncWhy::Timer => "periodic full resync",
                ResyncWhy::Overrun => "notifications were lost (socket overrun): full resync",
            };
            if out.verbose > 0 || matches!(e, W::Resync(ResyncWhy::Overrun)) {
                log(out, Level::Info, why);
            }
            None
        }
        W::Reloaded(l) => {
            out.warnings(
                &l.path,
                &l.warnings
                    .iter()
                    .filter(|w| !w.note)
                    .cloned()
                    .collect::<Vec<_>>(),
            );
            log(out, Level::Info, &format!("reloaded {}", l.path));
            Some("reloaded; converging".into())
        }
        W::ReloadFailed(err) => {
            let mut msg = format!("reload refused, keeping the running config: {err}");
            if let crate::config::LoadError::Invalid(c) = err {
                msg = format!(
                    "reload refused, keeping the running config: invalid {}",
                    c.path
                );
                for line in c.to_string().lines() {
                    msg.push_str(&format!("; {line}"));
                }
            }
            log(out, Level::Err, &msg);
            None
        }
        W::ReloadDiscover => {
            log(
                out,
                Level::Err,
                "reload refused, keeping the running config: a config with [discover] is \
                 completed from the instance metadata at start only; restart instead \
                 (systemctl restart eniroute-watch: the routing stays in place meanwhile)",
            );
            None
        }
        W::ReloadProtocol { old, new } => {
            log(
                out,
                Level::Err,
                &format!(
                    "reload refused, keeping the running config: routing.protocol changes from \
                     {old} to {new}, which needs a restart (systemctl restart eniroute-watch)"
                ),
            );
            None
        }
        W::StatusFile(err) => {
            log(out, Level::Warning, &err.to_string());
            None
        }
        W::Alive => None,
        W::Stopping => {
            log(
                out,
                Level::Info,
                "stopping; the routing stays in place (eniroute flush removes it)",
            );
            Some("stopping".into())
        }
    }
}

#[cfg(test)]
mod watch_tests {
    use super::*;

    #[test]
    fn a_heal_is_one_line_naming_the_eni_and_what_was_put_back() {
        let h = Heal {
            iface: "eth1".into(),
            rules: 3,
            routes: 2,
            ..Heal::default()
        };
        assert_eq!(
            heal_line(&h),
            "healed eth1: 3 rules, 2 routes re-added (removed by another program)"
        );
        let h = Heal {
            iface: "eth2".into(),
            addresses: 1,
            link_up: true,
            removed: 2,
            ..Heal::default()
        };
        assert_eq!(
            heal_line(&h),
            "healed eth2: link set up (it was down); 1 address re-added (removed by another \
             program); 2 objects removed"
        );
    }

    #[test]
    fn status_names_the_daemon_or_its_absence() {
        assert!(watch_line(None).contains("no eniroute watch daemon"));
        let w = WatchStatus {
            pid: 812,
            since: 0,
            heals: 3,
            last_heal: Some((3600, "eth1".into())),
        };
        assert_eq!(
            watch_line(Some(&w)),
            "watch: served by PID 812 since 00:00:00 UTC; 3 heal(s), last at 01:00:00 UTC (eth1)."
        );
    }
}
