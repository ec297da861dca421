//! The sandbox's result: every check with its expectation and what was seen before and after
//! `eniroute apply`, the eniroute steps run, and timings. Rendered as a table or as JSON.

use serde::Serialize;

use super::topology::{Kind, Names};

/// What one check saw in one phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub ok: bool,
    pub seen: String,
}

impl Outcome {
    pub fn ok(seen: impl Into<String>) -> Self {
        Outcome {
            ok: true,
            seen: seen.into(),
        }
    }

    pub fn fail(seen: impl Into<String>) -> Self {
        Outcome {
            ok: false,
            seen: seen.into(),
        }
    }
}

/// One row of the matrix.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub kind: Kind,
    pub name: String,
    /// The ENI the check is about (None for steps).
    pub eni: Option<String>,
    pub expected: String,
    /// Before apply (None: not run in that phase, e.g. steps).
    pub before: Option<Outcome>,
    /// After apply (None: not run, e.g. because apply failed).
    pub after: Option<Outcome>,
}

/// One run of the eniroute binary.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: String,
    pub command: Vec<String>,
    pub exit_code: Option<i32>,
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
    pub duration_ms: u64,
}

/// How long each phase took, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub setup_ms: u64,
    pub before_ms: u64,
    pub apply_ms: u64,
    pub after_ms: u64,
    pub flush_ms: u64,
    pub teardown_ms: u64,
    pub total_ms: u64,
}

/// The result of one sandbox run.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxReport {
    /// The config simulated: its path, or "bundled demo".
    pub config: String,
    pub namespaces: Names,
    /// The Internet host's address.
    pub internet_host: String,
    pub checks: Vec<Check>,
    pub steps: Vec<Step>,
    pub notes: Vec<String>,
    /// The namespaces were kept (--keep).
    pub kept: bool,
    /// The config file the eniroute steps used (kept with --keep).
    pub config_file: String,
    pub timings: Timings,
    /// Overall verdict: every after-apply expectation holds.
    pub passed: bool,
}

impl SandboxReport {
    /// Every after-apply expectation holds and every eniroute step succeeded.
    pub fn passed(&self) -> bool {
        self.steps.iter().all(|s| s.ok)
            && !self.steps.is_empty()
            && self
                .checks
                .iter()
                .all(|c| c.after.as_ref().is_some_and(|o| o.ok))
    }

    /// The checks that failed after apply (or were not run).
    pub fn failures(&self) -> Vec<&Check> {
        self.checks
            .iter()
            .filter(|c| !c.after.as_ref().is_some_and(|o| o.ok))
            .collect()
    }

    /// A readable table: check, expected, before, after.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("eniroute sandbox: {}\n", self.config));
        out.push_str(&format!(
            "  guest {}   VPC {}   Internet {} (host {})\n\n",
            self.namespaces.guest,
            self.namespaces.vpc,
            self.namespaces.internet,
            self.internet_host
        ));
        let cell = |o: &Option<Outcome>, kind: Kind| match o {
            None => "-".to_string(),
            Some(o) if o.ok && kind == Kind::Egress => format!("ok ({})", o.seen),
            Some(o) if o.ok => "ok".to_string(),
            Some(o) => format!("FAIL: {}", o.seen),
        };
        let rows: Vec<[String; 4]> = self
            .checks
            .iter()
            .map(|c| {
                [
                    format!("{:<8} {}", kind_label(c.kind), c.name),
                    c.expected.clone(),
                    cell(&c.before, c.kind),
                    match (&c.after, c.kind) {
                        (None, Kind::Step) => "not run".to_string(),
                        (None, _) => "not run".to_string(),
                        (a, k) => cell(a, k),
                    },
                ]
            })
            .collect();
        let header = [
            "CHECK".to_string(),
            "EXPECTED".to_string(),
            "BEFORE APPLY".to_string(),
            "AFTER APPLY".to_string(),
        ];
        let mut w = [0usize; 3];
        for r in rows.iter().chain(std::iter::once(&header)) {
            for i in 0..3 {
                w[i] = w[i].max(r[i].chars().count());
            }
        }
        for r in std::iter::once(&header).chain(rows.iter()) {
            out.push_str(&format!(
                "{:<w0$}  {:<w1$}  {:<w2$}  {}\n",
                r[0],
                r[1],
                r[2],
                r[3],
                w0 = w[0],
                w1 = w[1],
                w2 = w[2]
            ));
        }
        for s in self.steps.iter().filter(|s| !s.ok) {
            out.push_str(&format!(
                "\nstep {:?} failed (exit {}): {}\n",
                s.name,
                s.exit_code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "none".into()),
                s.command.join(" ")
            ));
            for (label, text) in [("stderr", &s.stderr), ("stdout", &s.stdout)] {
                if !text.trim().is_empty() {
                    out.push_str(&format!("  {label}:\n"));
                    for l in text.lines().take(40) {
                        out.push_str(&format!("    {l}\n"));
                    }
                }
            }
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                out.push_str(&format!("note: {n}\n"));
            }
        }
        let matrix: Vec<&Check> = self
            .checks
            .iter()
            .filter(|c| c.kind != Kind::Step)
            .collect();
        let before_failed = matrix
            .iter()
            .filter(|c| c.before.as_ref().is_some_and(|o| !o.ok))
            .count();
        let failures = self.failures();
        out.push('\n');
        if self.passed() {
            out.push_str(&format!(
                "PASS: all {} checks hold after apply ({} of {} failed before apply, without \
                 eniroute's routing)\n",
                self.checks.len(),
                before_failed,
                matrix.len()
            ));
        } else if self.steps.iter().any(|s| s.name == "apply" && !s.ok) {
            out.push_str("FAIL: eniroute apply failed; the after-apply checks were not run\n");
        } else {
            out.push_str(&format!(
                "FAIL: {} of {} checks do not hold after apply: {}\n",
                failures.len(),
                self.checks.len(),
                failures
                    .iter()
                    .map(|c| c.name.as_str())
                    .take(6)
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        let t = &self.timings;
        out.push_str(&format!(
            "time: setup {}, before {}, apply {}, after {}, flush {}, teardown {}, total {}\n",
            secs(t.setup_ms),
            secs(t.before_ms),
            secs(t.apply_ms),
            secs(t.after_ms),
            secs(t.flush_ms),
            secs(t.teardown_ms),
            secs(t.total_ms)
        ));
        if self.kept {
            out.push_str(&format!(
                "\nThe namespaces are kept (--keep), with the config applied ({}).\n",
                self.config_file
            ));
            for (role, ns) in [
                ("the instance", &self.namespaces.guest),
                ("the VPC router", &self.namespaces.vpc),
                ("the Internet host", &self.namespaces.internet),
            ] {
                out.push_str(&format!("  {role:<18} ip netns exec {ns} bash\n"));
            }
            out.push_str(&format!(
                "  remove them with: ip netns delete {} ; ip netns delete {} ; ip netns delete {}\n",
                self.namespaces.guest, self.namespaces.vpc, self.namespaces.internet
            ));
        }
        out
    }
}

fn kind_label(k: Kind) -> &'static str {
    match k {
        Kind::Inbound => "inbound",
        Kind::Outbound => "outbound",
        Kind::Vswitch => "vswitch",
        Kind::Egress => "egress",
        Kind::Step => "step",
    }
}

fn secs(ms: u64) -> String {
    format!("{:.2}s", ms as f64 / 1000.0)
}
