//! The sandbox's result: every check with its expectation and what was seen before and after
//! `eniroute apply`, the eniroute steps run, and timings. Rendered as a table or as JSON.
//! Plain data: imports only the sandbox's topology (for `Kind` and `Names`).

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

/// The text report fits a terminal of this width.
const REPORT_COLUMNS: u16 = 100;

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
    fn failures(&self) -> Vec<&Check> {
        self.checks
            .iter()
            .filter(|c| !c.after.as_ref().is_some_and(|o| o.ok))
            .collect()
    }

    /// A readable table: check, expected, before, after.
    pub fn render_text(&self) -> String {
        let mut out = self.text_header();
        out.push_str(&self.text_table());
        out.push_str(&self.text_failed_steps());
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                out.push_str(&wrapped(&format!("note: {n}")));
            }
        }
        out.push('\n');
        out.push_str(&wrapped(self.text_verdict().trim_end()));
        out.push_str(&wrapped(self.text_timings().trim_end()));
        if self.kept {
            out.push_str(&self.text_kept());
        }
        out
    }

    /// What was simulated, and where.
    fn text_header(&self) -> String {
        let container = match &self.namespaces.container {
            Some(c) => format!("\n  container {c} (behind the guest's bridge)"),
            None => String::new(),
        };
        let mut out = wrapped(&format!("eniroute sandbox: {}", self.config));
        out.push_str(&format!(
            "  guest {}   VPC {}\n  Internet {} (host {}){container}\n\n",
            self.namespaces.guest,
            self.namespaces.vpc,
            self.namespaces.internet,
            self.internet_host
        ));
        out
    }

    /// One line per check (a cell too wide wraps onto the next lines), in columns.
    fn text_table(&self) -> String {
        let rows: Vec<[String; 4]> = self
            .checks
            .iter()
            .map(|c| {
                [
                    format!("{:<8} {}", kind_label(c.kind), c.name),
                    c.expected.clone(),
                    cell(&c.before, c.kind),
                    match &c.after {
                        None => "not run".to_string(),
                        after => cell(after, c.kind),
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
        // What was checked is read first: it keeps its width (up to 44 columns); comfy-table
        // wraps the other cells so that the report fits a 100-column terminal.
        let check_width = rows
            .iter()
            .chain(std::iter::once(&header))
            .map(|r| r[0].chars().count())
            .max()
            .unwrap_or(0);
        let mut table = comfy_table::Table::new();
        table
            .load_style(comfy_table::presets::NOTHING)
            .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
            .set_width(REPORT_COLUMNS)
            .set_header(header)
            .add_rows(rows);
        for i in 0..4 {
            if let Some(c) = table.column_mut(i) {
                // No left padding, two spaces between columns.
                c.set_padding((0, if i == 3 { 0 } else { 2 }));
                if i == 0 {
                    let w = u16::try_from(check_width.min(44)).unwrap_or(44);
                    c.set_constraint(comfy_table::ColumnConstraint::LowerBoundary(
                        comfy_table::Width::Fixed(w + 2),
                    ));
                }
            }
        }
        let mut out = String::new();
        for line in table.lines() {
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Each failed eniroute step with its command and (the start of) its output.
    fn text_failed_steps(&self) -> String {
        let mut out = String::new();
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
        out
    }

    /// PASS (with how many matrix checks failed before apply) or FAIL (with why).
    fn text_verdict(&self) -> String {
        if self.passed() {
            let matrix: Vec<&Check> = self
                .checks
                .iter()
                .filter(|c| c.kind != Kind::Step)
                .collect();
            let before_failed = matrix
                .iter()
                .filter(|c| c.before.as_ref().is_some_and(|o| !o.ok))
                .count();
            format!(
                "PASS: all {} checks hold after apply ({} of {} failed before apply, without \
                 eniroute's routing)\n",
                self.checks.len(),
                before_failed,
                matrix.len()
            )
        } else if self.steps.iter().any(|s| s.name == "apply" && !s.ok) {
            "FAIL: eniroute apply failed; the after-apply checks were not run\n".to_string()
        } else {
            let failures = self.failures();
            format!(
                "FAIL: {} of {} checks do not hold after apply: {}\n",
                failures.len(),
                self.checks.len(),
                failures
                    .iter()
                    .map(|c| c.name.as_str())
                    .take(6)
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        }
    }

    /// How long each phase took.
    fn text_timings(&self) -> String {
        let t = &self.timings;
        format!(
            "time: setup {}, before {}, apply {}, after {}, flush {}, teardown {}, total {}\n",
            secs(t.setup_ms),
            secs(t.before_ms),
            secs(t.apply_ms),
            secs(t.after_ms),
            secs(t.flush_ms),
            secs(t.teardown_ms),
            secs(t.total_ms)
        )
    }

    /// With --keep: how to enter the kept namespaces, and how to remove them.
    fn text_kept(&self) -> String {
        let mut out = format!(
            "\nThe namespaces are kept (--keep), with the config applied ({}).\n",
            self.config_file
        );
        let n = &self.namespaces;
        let mut roles = vec![
            ("the instance", &n.guest),
            ("the VPC router", &n.vpc),
            ("the Internet host", &n.internet),
        ];
        roles.extend(n.container.as_ref().map(|c| ("the container", c)));
        for (role, ns) in &roles {
            out.push_str(&format!("  {role:<18} ip netns exec {ns} bash\n"));
        }
        let delete: Vec<String> = roles
            .iter()
            .map(|(_, ns)| format!("ip netns delete {ns}"))
            .collect();
        out.push_str("  ");
        out.push_str(&wrapped(&format!(
            "remove them with: {}",
            delete.join(" ; ")
        )));
        out
    }
}

/// A before or after cell: "-" when not run in that phase, "ok" (with what the egress check
/// saw), or "FAIL: " and what was seen.
fn cell(o: &Option<Outcome>, kind: Kind) -> String {
    match o {
        None => "-".to_string(),
        Some(o) if o.ok && kind == Kind::Egress => format!("ok ({})", o.seen),
        Some(o) if o.ok => "ok".to_string(),
        Some(o) => format!("FAIL: {}", o.seen),
    }
}

fn kind_label(k: Kind) -> &'static str {
    match k {
        Kind::Inbound => "inbound",
        Kind::Outbound => "outbound",
        Kind::Vswitch => "vswitch",
        Kind::Egress => "egress",
        Kind::Published => "publish",
        Kind::ContainerEgress => "ctr-out",
        Kind::Step => "step",
    }
}

/// `text` wrapped at word boundaries to [`REPORT_COLUMNS`] (a one-cell table: comfy-table
/// wraps cells), continuation lines indented by two spaces.
fn wrapped(text: &str) -> String {
    let mut table = comfy_table::Table::new();
    table
        .load_style(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
        .set_width(REPORT_COLUMNS - 2)
        .add_row([text]);
    if let Some(c) = table.column_mut(0) {
        c.set_padding((0, 0));
    }
    let mut out = String::new();
    for (i, line) in table.lines().enumerate() {
        out.push_str(if i == 0 { "" } else { "  " });
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn secs(ms: u64) -> String {
    format!("{:.2}s", ms as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, ok: bool) -> Step {
        Step {
            name: name.into(),
            command: vec!["eniroute".into(), name.into()],
            exit_code: Some(if ok { 0 } else { 1 }),
            ok,
            stdout: String::new(),
            stderr: if ok {
                String::new()
            } else {
                "it broke\n".into()
            },
            duration_ms: 12,
        }
    }

    fn row(kind: Kind, name: &str, before: Option<Outcome>, after: Option<Outcome>) -> Check {
        Check {
            kind,
            name: name.into(),
            eni: None,
            expected: "seen as 203.0.113.1".into(),
            before,
            after,
        }
    }

    fn report() -> SandboxReport {
        SandboxReport {
            config: "c.toml".into(),
            namespaces: Names {
                guest: "t-guest".into(),
                vpc: "t-vpc".into(),
                internet: "t-inet".into(),
                container: None,
            },
            internet_host: "198.18.0.10".into(),
            checks: vec![
                row(
                    Kind::Inbound,
                    "Internet -> 203.0.113.1 (eth1 nat EIP)",
                    Some(Outcome::fail("no connection (timeout)")),
                    Some(Outcome::ok("answered 192.168.0.11")),
                ),
                row(
                    Kind::Egress,
                    "64 unbound connections (balance)",
                    Some(Outcome::fail("eth0 64, eth1 0")),
                    Some(Outcome::ok("eth0 30, eth1 34")),
                ),
                row(
                    Kind::Step,
                    "eniroute apply",
                    None,
                    Some(Outcome::ok("exit 0")),
                ),
            ],
            steps: vec![step("apply", true), step("flush", true)],
            notes: Vec::new(),
            kept: false,
            config_file: "/tmp/demo.toml".into(),
            timings: Timings::default(),
            passed: true,
        }
    }

    #[test]
    fn table_columns_line_up_and_egress_shows_its_spread() {
        let text = report().render_text();
        assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
        let table: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("CHECK"))
            .take_while(|l| !l.is_empty())
            .collect();
        // Each row starts a line with its kind; wide cells wrap onto the next lines, and no
        // line is wider than 100 columns.
        let rows: Vec<&&str> = table
            .iter()
            .filter(|l| {
                ["CHECK", "inbound", "egress", "step"]
                    .iter()
                    .any(|k| l.starts_with(k))
            })
            .collect();
        assert_eq!(rows.len(), 4, "{text}");
        assert!(table.iter().all(|l| l.chars().count() <= 100), "{text}");
        // The EXPECTED column starts at the same place on every row.
        let starts: Vec<_> = rows
            .iter()
            .map(|l| l.find("EXPECTED").or_else(|| l.find("seen as")))
            .collect();
        assert!(
            starts.iter().all(|s| s.is_some() && *s == starts[0]),
            "{text}"
        );
        let words: Vec<&str> = text.split_whitespace().collect();
        assert!(words.join(" ").contains("ok (eth0 30, eth1"), "{text}");
        assert!(text.contains("PASS: all 3 checks hold after apply (2 of 2 failed before"));
        assert!(!text.contains("ip netns exec"), "{text}");
    }

    #[test]
    fn failures_are_named_and_failed_steps_show_their_output() {
        let mut r = report();
        r.checks[0].after = Some(Outcome::fail("answered 192.168.0.12"));
        r.steps.push(step("plan", false));
        r.checks.push(row(Kind::Vswitch, "not run row", None, None));
        let text = r.render_text();
        assert!(!r.passed());
        // The cell may wrap: compare its words.
        assert!(text.contains("FAIL: answered"), "{text}");
        assert!(text.contains("192.168.0.12"), "{text}");
        assert!(text.contains("not run"), "{text}");
        assert!(
            text.contains("step \"plan\" failed (exit 1): eniroute plan"),
            "{text}"
        );
        assert!(text.contains("    it broke"), "{text}");
        assert!(
            text.contains("FAIL: 2 of 4 checks do not hold after apply: Internet -> 203.0.113.1"),
            "{text}"
        );
    }

    #[test]
    fn a_failed_apply_and_kept_namespaces_are_explained() {
        let mut r = report();
        r.steps = vec![step("apply", false)];
        r.kept = true;
        r.notes
            .push("apply failed: the after-apply checks were not run".into());
        let text = r.render_text();
        assert!(text.contains("FAIL: eniroute apply failed"), "{text}");
        assert!(text.contains("note: apply failed"), "{text}");
        assert!(text.contains("ip netns exec t-guest bash"), "{text}");
        assert!(
            text.contains("ip netns delete t-guest ; ip netns delete t-vpc"),
            "{text}"
        );
    }

    #[test]
    fn container_rows_and_a_long_failure_stay_within_100_columns() {
        let mut r = report();
        r.namespaces.container = Some("erst-123456-containers-ctr".into());
        let long = "peer 192.168.30.254 -> 192.168.30.21:8081 (eth1) -> container";
        for kind in [Kind::Published, Kind::ContainerEgress] {
            r.checks.push(row(
                kind,
                long,
                Some(Outcome::fail("no connection (timeout)")),
                Some(Outcome::fail("no connection (timeout)")),
            ));
        }
        r.notes.push(format!("{long}; {long}"));
        r.kept = true;
        let text = r.render_text();
        assert!(!r.passed());
        assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
        assert!(text.contains("publish  peer 192.168.30.254"), "{text}");
        assert!(text.contains("ctr-out  peer 192.168.30.254"), "{text}");
        assert!(
            text.contains("container erst-123456-containers-ctr"),
            "{text}"
        );
        // wrapped onto further lines: compare words
        let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            words.contains("ip netns delete erst-123456-containers-ctr"),
            "{text}"
        );
        // the verdict names the failures
        assert!(words.contains(&format!("apply: {long}; {long}")), "{text}");
    }
}
