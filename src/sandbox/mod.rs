//! `eniroute sandbox`: simulate the config's instance, VPC and Internet in network namespaces,
//! apply it with the eniroute binary, and prove with real TCP, before and after, that every address
//! works. An oracle for the planner: imports config, model, kernel and host; never plan/reconcile.

mod cleanup;
mod probe;
mod report;
mod topology;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::config::{self, ConfigError, LoadError};
use crate::exit::{self, ExitCode};
use crate::kernel::netns::run_in_netns;
use crate::kernel::sim::{self, SimError};
use crate::model::{Config, Strategy};

pub use report::{Check, Outcome, SandboxReport, Step, Timings};
pub use topology::{Kind, Names};

use probe::{Probe, ProbeResult, Reply};
use topology::{ConnCheck, EgressCheck, Expect, Origin, Topology, PORT};

/// The bundled demo configuration (`eniroute sandbox` without `-c`).
pub const DEMO_CONFIG: &str = include_str!("../../configs/examples/demo.toml");

/// Options of one sandbox run.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// The config to simulate; None = the bundled demo.
    pub config: Option<PathBuf>,
    /// Keep the namespaces (with the config applied) instead of removing them.
    pub keep: bool,
    /// The eniroute binary run for apply/plan/flush.
    pub exe: PathBuf,
    /// Namespace name prefix; None = `ers-<pid>-<counter>`.
    pub ns_prefix: Option<String>,
    /// How many unbound connections the egress check opens.
    pub unbound_connections: usize,
    /// Timeout of each connect, and of each answer.
    pub timeout: Duration,
    /// Timeout of each eniroute step.
    pub step_timeout: Duration,
}

impl SandboxOptions {
    /// Defaults: the bundled demo, this executable, 64 unbound connections, 1.2 s timeouts.
    pub fn new(config: Option<PathBuf>, keep: bool) -> Self {
        SandboxOptions {
            config,
            keep,
            exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("eniroute")),
            ns_prefix: None,
            unbound_connections: 64,
            timeout: Duration::from_millis(1200),
            step_timeout: Duration::from_secs(120),
        }
    }
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions::new(None, false)
    }
}

/// Why the sandbox could not run at all (a failing check is not an error: see the report).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{0}")]
    Config(#[from] LoadError),
    #[error("the bundled demo config is invalid: {0}")]
    Demo(ConfigError),
    #[error(
        "nft (nftables) is not installed; the simulated VPC needs it for NAT and \
         anti-spoofing: apt-get install nftables"
    )]
    NftMissing,
    #[error("network namespace {ns:?}: nft -f (the VPC ruleset) failed: {message}")]
    Nft { ns: String, message: String },
    #[error("cannot simulate this config: {0}")]
    Topology(String),
    #[error(
        "{0}\n(the sandbox creates network namespaces: it needs root, CAP_SYS_ADMIN and \
         CAP_NET_ADMIN; try sudo)"
    )]
    NotPermitted(SimError),
    #[error("{0}")]
    Sim(#[from] SimError),
    #[error("{0}")]
    Probe(String),
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl ExitCode for SandboxError {
    fn exit_code(&self) -> i32 {
        match self {
            SandboxError::Config(e) => e.exit_code(),
            SandboxError::Demo(_) => exit::CONFIG,
            _ => exit::FAILED,
        }
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Find the `nft` binary (PATH, then the sbin directories sudo may leave out of PATH).
fn find_nft() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in ["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin", "/bin"] {
        dirs.push(PathBuf::from(d));
    }
    dirs.into_iter()
        .map(|d| d.join("nft"))
        .find(|p| p.is_file())
}

/// Run the sandbox. `Err` only when it cannot run at all; check results are in the report.
pub fn run(opts: &SandboxOptions) -> Result<SandboxReport, SandboxError> {
    let started = Instant::now();
    let (config, shown) = load(opts)?;
    let nft = find_nft().ok_or(SandboxError::NftMissing)?;
    let prefix = opts.ns_prefix.clone().unwrap_or_else(|| {
        format!(
            "ers-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        )
    });
    let names = Names {
        guest: format!("{prefix}-guest"),
        vpc: format!("{prefix}-vpc"),
        internet: format!("{prefix}-inet"),
        container: config.containers.as_ref().map(|_| format!("{prefix}-ctr")),
    };
    let topo = topology::build(&config, names).map_err(SandboxError::Topology)?;
    let (config_file, temp_files) = child_config(opts, &prefix)?;

    let guard = cleanup::register(cleanup::Entry {
        namespaces: Vec::new(),
        files: temp_files.clone(),
        keep: opts.keep,
        child: None,
    });
    let mut ctx = Run {
        opts,
        protocol: config.routing.protocol,
        topo: &topo,
        config_file: &config_file,
        guard: &guard,
        nft: &nft,
        created: Vec::new(),
    };
    let result = ctx.go(shown, started);
    cleanup::wait_if_interrupted();

    // Teardown (servers were stopped when `go` returned).
    let t = Instant::now();
    let keep = opts.keep && result.is_ok();
    let teardown_errors = if keep {
        Vec::new()
    } else {
        teardown(&ctx.created, &temp_files)
    };
    drop(guard);
    let mut report = result?;
    report.timings.teardown_ms = ms(t.elapsed());
    report.timings.total_ms = ms(started.elapsed());
    report.kept = keep;
    report.notes.extend(teardown_errors);
    report.passed = report.passed();
    Ok(report)
}

/// The config to simulate, and how the report names it.
fn load(opts: &SandboxOptions) -> Result<(Config, String), SandboxError> {
    Ok(match &opts.config {
        Some(p) => (config::load_file(p)?.config, p.display().to_string()),
        None => (
            config::load_str(DEMO_CONFIG, "configs/examples/demo.toml")
                .map_err(SandboxError::Demo)?
                .config,
            "bundled demo config (configs/examples/demo.toml)".to_string(),
        ),
    })
}

/// The config file the eniroute child reads, and the temporary files made for it (the demo,
/// written out).
fn child_config(
    opts: &SandboxOptions,
    prefix: &str,
) -> Result<(PathBuf, Vec<PathBuf>), SandboxError> {
    if let Some(p) = &opts.config {
        return Ok((p.clone(), Vec::new()));
    }
    // A private directory of a random name (mkdtemp: mode 0700, never an existing path), and
    // the file created new in it without following symlinks: nothing another user planted in
    // /tmp can redirect root's write.
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| SandboxError::Io { path, source }
    };
    let tmp = std::env::temp_dir();
    let dir = tempfile::Builder::new()
        .prefix(&format!("eniroute-sandbox-{prefix}-"))
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir_in(&tmp)
        .map_err(io(&tmp))?
        .keep();
    let file = dir.join("demo.toml");
    let mut f = std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&file)
        .map_err(io(&file))?;
    f.write_all(DEMO_CONFIG.as_bytes()).map_err(io(&file))?;
    Ok((file.clone(), vec![file]))
}

/// Delete the namespaces this run created (never one that was there before) and its temporary
/// files; the errors, as report notes.
fn teardown(created: &[String], temp_files: &[PathBuf]) -> Vec<String> {
    let mut errors = Vec::new();
    for ns in created {
        forget_state(ns);
        if let Err(e) = sim::delete_netns(ns) {
            errors.push(format!("teardown: {e}"));
        }
    }
    for f in temp_files {
        let _ = std::fs::remove_file(f);
        if let Some(d) = f.parent() {
            let _ = std::fs::remove_dir(d);
        }
    }
    errors
}

/// One sandbox run in progress.
struct Run<'a> {
    opts: &'a SandboxOptions,
    /// `routing.protocol`: what "nothing left after flush" looks for.
    protocol: u8,
    topo: &'a Topology,
    config_file: &'a Path,
    guard: &'a cleanup::Guard,
    nft: &'a Path,
    created: Vec<String>,
}

/// The report rows of the eniroute steps, and the steps themselves.
#[derive(Default)]
struct StepRows {
    rows: Vec<Check>,
    steps: Vec<Step>,
}

impl StepRows {
    fn push(&mut self, row: Check, step: Step) {
        self.rows.push(row);
        self.steps.push(step);
    }
}

impl Run<'_> {
    /// The phases of a run: build, check before apply, apply and plan, check after, flush.
    fn go(&mut self, shown: String, started: Instant) -> Result<SandboxReport, SandboxError> {
        self.create_namespaces()?;
        self.configure()?;
        let _servers = self.start_servers()?;
        let mut timings = Timings {
            setup_ms: ms(started.elapsed()),
            ..Timings::default()
        };

        let t = Instant::now();
        let before = self.matrix(10000)?;
        timings.before_ms = ms(t.elapsed());
        let mut checks = self.rows(&before);

        let t = Instant::now();
        let mut steps = StepRows::default();
        let applied = self.apply_and_plan(&mut steps);
        timings.apply_ms = ms(t.elapsed());

        let t = Instant::now();
        if applied {
            let after = self.matrix(11000)?;
            for (row, o) in checks.iter_mut().zip(after) {
                row.after = Some(o);
            }
        }
        timings.after_ms = ms(t.elapsed());

        let t = Instant::now();
        if applied {
            self.flush(&mut steps);
        }
        timings.flush_ms = ms(t.elapsed());

        checks.extend(steps.rows);
        let mut notes = self.topo.notes.clone();
        if !applied {
            notes.push("apply failed: the after-apply checks were not run".into());
        }
        Ok(SandboxReport {
            config: shown,
            namespaces: self.topo.names.clone(),
            internet_host: self.topo.internet_host.to_string(),
            checks,
            steps: steps.steps,
            notes,
            kept: false,
            config_file: self.config_file.display().to_string(),
            timings,
            passed: false,
        })
    }

    /// Create the three namespaces, registering each for teardown as soon as it exists.
    fn create_namespaces(&mut self) -> Result<(), SandboxError> {
        for ns in self.topo.names.all() {
            let made = sim::create_netns(ns);
            if made.is_ok() {
                // A new namespace may reuse a dead one's inode: drop any state eniroute left
                // under that inode, so the run starts from a truly fresh instance.
                forget_state(ns);
                self.created.push(ns.to_string());
                self.guard.update(|e| e.namespaces.push(ns.to_string()));
            }
            made.map_err(|e| match &e {
                SimError::Namespace { source, .. }
                    if source.raw_os_error() == Some(nix::libc::EPERM)
                        || source.raw_os_error() == Some(nix::libc::EACCES) =>
                {
                    SandboxError::NotPermitted(e)
                }
                _ => SandboxError::Sim(e),
            })?;
        }
        Ok(())
    }

    /// Links, addresses, routes and sysctls of the three namespaces, and the VPC's ruleset.
    fn configure(&self) -> Result<(), SandboxError> {
        let topo = self.topo;
        let names = &topo.names;
        sim::apply(Some(&names.guest), topo.guest_pre.clone())?;
        sim::apply(Some(&names.internet), topo.internet_pre.clone())?;
        let container = topo.containers.as_ref().zip(names.container.as_deref());
        if let Some((c, ns)) = container {
            sim::apply(Some(ns), c.pre.clone())?;
        }
        sim::apply(Some(&names.vpc), topo.vpc_ops.clone())?;
        sim::apply(Some(&names.guest), topo.guest_ops.clone())?;
        sim::apply(Some(&names.internet), topo.internet_ops.clone())?;
        self.load_nft(&names.vpc, &topo.ruleset)?;
        if let Some((c, ns)) = container {
            sim::apply(Some(&names.guest), c.guest_ops.clone())?;
            sim::apply(Some(ns), c.ops.clone())?;
            // docker's own table: foreign to eniroute, which must never touch it
            self.load_nft(&names.guest, &c.guest_ruleset)?;
        }
        Ok(())
    }

    /// The servers answering the probes, in every namespace; they stop when dropped.
    fn start_servers(&self) -> Result<Vec<probe::Server>, SandboxError> {
        let names = &self.topo.names;
        let mut binds = vec![SocketAddr::from(([0, 0, 0, 0], PORT))];
        if self.topo.has_ipv6 {
            binds.push(SocketAddr::from(([0u16; 8], PORT)));
        }
        let mut servers = vec![
            probe::serve(&names.internet, binds.clone(), Reply::PeerAddr),
            probe::serve(&names.vpc, binds.clone(), Reply::PeerAddr),
            probe::serve(&names.guest, binds, Reply::LocalAddr),
        ];
        if let Some(ns) = &names.container {
            // The published port's server: it answers with the client it saw.
            let any = vec![SocketAddr::from(([0, 0, 0, 0], PORT))];
            servers.push(probe::serve(ns, any, Reply::PeerAddr));
        }
        servers
            .into_iter()
            .collect::<Result<Vec<_>, String>>()
            .map_err(SandboxError::Probe)
    }

    /// `eniroute apply`, then, when it succeeded, `plan --detailed-exitcode` (which must find
    /// nothing to change). Whether apply succeeded.
    fn apply_and_plan(&self, steps: &mut StepRows) -> bool {
        let apply = self.step("apply", &["apply"]);
        let applied = apply.ok;
        steps.push(step_row("eniroute apply", "exit 0", &apply, None), apply);
        if !applied {
            return false;
        }
        let plan = self.step("plan", &["plan", "--detailed-exitcode"]);
        let seen = (!plan.ok && plan.exit_code == Some(2)).then(|| {
            format!(
                "exit 2: changes pending after apply: {}",
                first_lines(&plan.stdout, 3)
            )
        });
        let row = step_row(
            "eniroute plan --detailed-exitcode",
            "exit 0 (nothing to change)",
            &plan,
            seen,
        );
        steps.push(row, plan);
        true
    }

    /// `eniroute flush`, which must leave nothing tagged with eniroute's protocol; with `keep`,
    /// apply again so the kept instance is configured.
    fn flush(&self, steps: &mut StepRows) {
        let protocol = self.protocol;
        let flush = self.step("flush", &["flush"]);
        let flushed = flush.ok;
        steps.push(step_row("eniroute flush", "exit 0", &flush, None), flush);
        let left = if flushed {
            match sim::owned_objects(&self.topo.names.guest, protocol) {
                Ok(v) if v.is_empty() => Outcome::ok("nothing left"),
                Ok(v) => Outcome::fail(format!("{} left: {}", v.len(), v.join("; "))),
                Err(e) => Outcome::fail(format!("cannot list: {e}")),
            }
        } else {
            Outcome::fail("flush failed")
        };
        steps.rows.push(Check {
            kind: Kind::Step,
            name: format!("nothing tagged protocol {protocol} left after flush"),
            eni: None,
            expected: "none left".into(),
            before: None,
            after: Some(left),
        });
        if self.opts.keep {
            // Leave the kept instance configured, for the user to explore.
            let again = self.step("apply (again, for --keep)", &["apply"]);
            steps.steps.push(again);
        }
    }
    /// `nft -f -` with `ruleset` in namespace `ns`.
    fn load_nft(&self, ns: &str, ruleset: &str) -> Result<(), SandboxError> {
        let ns = ns.to_string();
        let nft = self.nft.to_path_buf();
        let ruleset = ruleset.to_string();
        let out = run_in_netns(Some(&ns), move || async move {
            // A child process starts in the network namespace of the thread that forks it.
            let mut child = Command::new(&nft)
                .args(["-f", "-"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot run {}: {e}", nft.display()))?;
            if let Some(mut stdin) = child.stdin.take() {
                use std::io::Write;
                stdin
                    .write_all(ruleset.as_bytes())
                    .map_err(|e| format!("writing the ruleset: {e}"))?;
            }
            let out = child
                .wait_with_output()
                .map_err(|e| format!("waiting for nft: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{}\n{}",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    ruleset
                ))
            }
        })
        .map_err(|e| SandboxError::Nft {
            ns: ns.clone(),
            message: e.to_string(),
        })?;
        out.map_err(|message| SandboxError::Nft { ns, message })
    }

    /// Run the whole connection matrix once; one outcome per row of `rows` (connection checks,
    /// then the egress check).
    fn matrix(&self, sport_base: u16) -> Result<Vec<Outcome>, SandboxError> {
        let topo = self.topo;
        let plan = self.probe_plan(sport_base);
        let results = self.probe_all(&plan)?;
        let mut by_check: Vec<Option<ProbeResult>> = vec![None; topo.conn_checks.len()];
        let mut unbound = Vec::new();
        for (origin, (_, checks)) in &plan.by {
            let res = results.get(origin).map(Vec::as_slice).unwrap_or(&[]);
            for (i, r) in checks.iter().zip(res) {
                match i.and_then(|i| by_check.get_mut(i)) {
                    Some(slot) => *slot = Some(r.clone()),
                    None => unbound.push(r.clone()),
                }
            }
        }
        let mut out: Vec<Outcome> = topo
            .conn_checks
            .iter()
            .zip(by_check)
            .map(|(c, r)| match r {
                Some(r) => judge(c, &r),
                None => Outcome::fail("not run"),
            })
            .collect();
        if let Some(eg) = &topo.egress_check {
            out.push(judge_egress(eg, &unbound));
        }
        Ok(out)
    }

    /// The probes of one matrix run: each connection check from its namespace, then (with an
    /// egress check) the unbound connections from the guest, on fixed source ports from
    /// `sport_base`.
    fn probe_plan(&self, sport_base: u16) -> ProbePlan {
        let topo = self.topo;
        let mut plan = ProbePlan::default();
        for (i, c) in topo.conn_checks.iter().enumerate() {
            let p = Probe {
                bind: c.bind,
                sport: 0,
                target: c.target,
            };
            plan.push(c.from, p, Some(i));
        }
        if topo.egress_check.is_some() {
            let destinations = topo.extra_destinations.iter().cycle();
            for (k, dst) in (0..self.opts.unbound_connections).zip(destinations) {
                let p = Probe {
                    bind: None,
                    sport: sport_base.saturating_add(u16::try_from(k).unwrap_or(u16::MAX)),
                    target: SocketAddr::new(IpAddr::V4(*dst), PORT),
                };
                plan.push(Origin::Guest, p, None);
            }
        }
        plan
    }

    /// The namespace probes from `o` connect from.
    fn namespace(&self, o: Origin) -> Option<&str> {
        let names = &self.topo.names;
        match o {
            Origin::Guest => Some(&names.guest),
            Origin::Internet => Some(&names.internet),
            Origin::Vpc => Some(&names.vpc),
            Origin::Container => names.container.as_deref(),
        }
    }

    /// Make every origin's probes at once (a thread per namespace); the results by origin.
    fn probe_all(
        &self,
        plan: &ProbePlan,
    ) -> Result<BTreeMap<Origin, Vec<ProbeResult>>, SandboxError> {
        let timeout = self.opts.timeout;
        let joined: Vec<(Origin, Result<Vec<ProbeResult>, String>)> = std::thread::scope(|s| {
            let handles: Vec<_> = plan
                .by
                .iter()
                .map(|(o, (probes, _))| {
                    let ns = self.namespace(*o);
                    let h = std::thread::Builder::new()
                        .name("sandbox-probes".into())
                        .spawn_scoped(s, move || match ns {
                            Some(ns) => probe::connect_all(ns, probes.clone(), timeout),
                            None => Err(format!("no namespace for the {o:?} probes")),
                        });
                    (*o, h)
                })
                .collect();
            handles
                .into_iter()
                .map(|(o, h)| {
                    let r = match h {
                        Ok(h) => h
                            .join()
                            .unwrap_or_else(|_| Err("a probe thread panicked".into())),
                        Err(e) => Err(format!("cannot start a probe thread: {e}")),
                    };
                    (o, r)
                })
                .collect()
        });
        joined
            .into_iter()
            .map(|(o, r)| r.map(|v| (o, v)).map_err(SandboxError::Probe))
            .collect()
    }

    /// The matrix rows with their before-apply outcomes.
    fn rows(&self, before: &[Outcome]) -> Vec<Check> {
        let mut rows: Vec<Check> = self
            .topo
            .conn_checks
            .iter()
            .zip(before)
            .map(|(c, o)| Check {
                kind: c.kind,
                name: c.subject.clone(),
                eni: Some(c.eni.clone()),
                expected: expected(c),
                before: Some(o.clone()),
                after: None,
            })
            .collect();
        if let Some(eg) = &self.topo.egress_check {
            let n = self.opts.unbound_connections;
            let (name, expected) = egress_row(eg, n);
            rows.push(Check {
                kind: Kind::Egress,
                name,
                eni: None,
                expected,
                before: before.get(self.topo.conn_checks.len()).cloned(),
                after: None,
            });
        }
        rows
    }

    /// Run `exe --netns GUEST -c CONFIG <args>`, with a timeout.
    fn step(&self, name: &str, args: &[&str]) -> Step {
        let t = Instant::now();
        let mut command: Vec<String> = vec![
            self.opts.exe.display().to_string(),
            "--netns".into(),
            self.topo.names.guest.clone(),
            "-c".into(),
            self.config_file.display().to_string(),
        ];
        command.extend(args.iter().map(|a| a.to_string()));
        let mut step = Step {
            name: name.to_string(),
            command: command.clone(),
            exit_code: None,
            ok: false,
            stdout: String::new(),
            stderr: String::new(),
            duration_ms: 0,
        };
        let child = Command::new(&self.opts.exe)
            .args(command.iter().skip(1))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                step.stderr = format!("cannot run {}: {e}", self.opts.exe.display());
                step.duration_ms = ms(t.elapsed());
                return step;
            }
        };
        self.guard.update(|e| e.child = Some(child.id()));
        let out_t = read_in_background(child.stdout.take());
        let err_t = read_in_background(child.stderr.take());
        let status = self.wait(&mut child);
        self.guard.update(|e| e.child = None);
        step.stdout = out_t.and_then(|t| t.join().ok()).unwrap_or_default();
        step.stderr = err_t.and_then(|t| t.join().ok()).unwrap_or_default();
        match status {
            Some(st) => {
                step.exit_code = st.code();
                step.ok = st.success();
            }
            None => {
                step.stderr.push_str(&format!(
                    "\n(killed after {}s)",
                    self.opts.step_timeout.as_secs()
                ));
            }
        }
        step.duration_ms = ms(t.elapsed());
        step
    }

    /// Wait for a step's child up to the step timeout; kill it then (None).
    fn wait(&self, child: &mut Child) -> Option<ExitStatus> {
        let deadline = Instant::now() + self.opts.step_timeout;
        loop {
            match child.try_wait() {
                Ok(Some(st)) => return Some(st),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(_) => return None,
            }
        }
    }
}

/// The probes of one matrix run, by the namespace they connect from, each with the connection
/// check it answers (None: one of the guest's unbound connections of the egress check).
#[derive(Default)]
struct ProbePlan {
    by: BTreeMap<Origin, (Vec<Probe>, Vec<Option<usize>>)>,
}

impl ProbePlan {
    fn push(&mut self, from: Origin, p: Probe, check: Option<usize>) {
        let (probes, checks) = self.by.entry(from).or_default();
        probes.push(p);
        checks.push(check);
    }
}

/// A connection check's "expected" column.
fn expected(c: &ConnCheck) -> String {
    match c.expect {
        Expect::Answer(a) => match c.kind {
            Kind::Inbound => format!("reaches {a}"),
            Kind::Published => format!("container sees {a}"),
            _ => format!("seen as {a}"),
        },
        Expect::NoPath => "no Internet path (no EIP)".into(),
    }
}

/// The egress check's name and "expected" column, for `n` unbound connections.
fn egress_row(eg: &EgressCheck, n: usize) -> (String, String) {
    match eg.strategy {
        Strategy::Balance => (
            format!("{n} unbound connections (balance)"),
            format!(
                "spread by weight over {}",
                eg.via
                    .iter()
                    .map(|(e, w)| format!("{e}:{w}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        ),
        Strategy::Failover => (
            format!("{n} unbound connections (failover)"),
            match (eg.via.first(), eg.failover_seen) {
                (Some((e, _)), Some(a)) => format!("all via {e}, seen as {a}"),
                (Some((e, _)), None) => format!("all via {e}"),
                (None, _) => "-".into(),
            },
        ),
    }
}

/// Remove eniroute's per-namespace state (/run/eniroute/netns-<id>) of a sandbox namespace
/// about to be deleted, so that sandbox runs leave nothing behind in /run.
fn forget_state(ns: &str) {
    if let Ok(Ok(state)) = run_in_netns(Some(ns), || async { crate::host::State::current() }) {
        state.remove();
    }
}
/// Read a child's pipe to the end on a thread (so a chatty child never blocks on a full pipe).
fn read_in_background<R: Read + Send + 'static>(
    pipe: Option<R>,
) -> Option<std::thread::JoinHandle<String>> {
    let mut pipe = pipe?;
    std::thread::Builder::new()
        .name("sandbox-pipe".into())
        .spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        })
        .ok()
}

fn first_lines(s: &str, n: usize) -> String {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .take(n)
        .collect::<Vec<_>>()
        .join(" | ")
}

fn step_row(name: &str, expected: &str, step: &Step, seen: Option<String>) -> Check {
    let outcome = if step.ok {
        Outcome::ok("exit 0")
    } else {
        let why = seen.unwrap_or_else(|| {
            let code = step
                .exit_code
                .map(|c| format!("exit {c}"))
                .unwrap_or_else(|| "no exit status".into());
            let detail = first_lines(&step.stderr, 2);
            if detail.is_empty() {
                code
            } else {
                format!("{code}: {detail}")
            }
        });
        Outcome::fail(why)
    };
    Check {
        kind: Kind::Step,
        name: name.to_string(),
        eni: None,
        expected: expected.to_string(),
        before: None,
        after: Some(outcome),
    }
}

/// Judge one connection check.
fn judge(c: &ConnCheck, r: &ProbeResult) -> Outcome {
    match (&c.expect, r) {
        (Expect::Answer(want), ProbeResult::Answer(_)) => {
            if r.addr() == Some(*want) {
                Outcome::ok(r.describe())
            } else {
                Outcome::fail(r.describe())
            }
        }
        (Expect::Answer(_), _) => Outcome::fail(r.describe()),
        (Expect::NoPath, ProbeResult::NoConnection(e) | ProbeResult::NoAnswer(e)) => {
            Outcome::ok(format!("no path ({e})"))
        }
        (Expect::NoPath, _) => Outcome::fail(r.describe()),
    }
}

/// Judge the unbound connections: which ENI each left through, from the address the Internet
/// host saw.
fn judge_egress(eg: &EgressCheck, results: &[ProbeResult]) -> Outcome {
    let tally = EgressTally::count(eg, results);
    let seen = tally.describe(eg);
    if tally.holds(eg) {
        Outcome::ok(seen)
    } else {
        Outcome::fail(seen)
    }
}

/// The unbound connections, counted by where the Internet host saw them come from.
struct EgressTally {
    n: usize,
    /// Seen as a public address of this ENI.
    per_eni: BTreeMap<String, usize>,
    /// Seen as an address of no ENI.
    other: BTreeMap<String, usize>,
    /// Failed, by reason.
    failed: BTreeMap<String, usize>,
    /// By the address seen.
    seen_addrs: BTreeMap<IpAddr, usize>,
}

impl EgressTally {
    fn count(eg: &EgressCheck, results: &[ProbeResult]) -> EgressTally {
        let mut t = EgressTally {
            n: results.len(),
            per_eni: BTreeMap::new(),
            other: BTreeMap::new(),
            failed: BTreeMap::new(),
            seen_addrs: BTreeMap::new(),
        };
        for r in results {
            match r.addr() {
                Some(a) => {
                    *t.seen_addrs.entry(a).or_default() += 1;
                    match eg.public_to_eni.get(&a) {
                        Some(e) => *t.per_eni.entry(e.clone()).or_default() += 1,
                        None => *t.other.entry(a.to_string()).or_default() += 1,
                    }
                }
                None => *t.failed.entry(r.describe()).or_default() += 1,
            }
        }
        t
    }

    fn on(&self, eni: &str) -> usize {
        self.per_eni.get(eni).copied().unwrap_or(0)
    }

    /// Per via, then ENIs that are no via, addresses of no ENI, failures.
    fn describe(&self, eg: &EgressCheck) -> String {
        let mut parts: Vec<String> = eg
            .via
            .iter()
            .map(|(e, _)| format!("{e} {}", self.on(e)))
            .collect();
        for (e, c) in &self.per_eni {
            if !eg.via.iter().any(|(v, _)| v == e) {
                parts.push(format!("{e} {c} (not a via)"));
            }
        }
        for (a, c) in &self.other {
            parts.push(format!("{c} seen as {a} (no ENI)"));
        }
        for (why, c) in &self.failed {
            parts.push(format!("{c} failed: {why}"));
        }
        parts.join(", ")
    }

    /// failover: every connection via the first via (seen as its `source`, when given);
    /// balance: every connection via some via, each via getting roughly its weight's share.
    fn holds(&self, eg: &EgressCheck) -> bool {
        let n = self.n;
        match eg.strategy {
            Strategy::Failover => {
                let first = eg.via.first().map(|(e, _)| e.clone()).unwrap_or_default();
                let all_first = self.on(&first) == n;
                let right_addr = match eg.failover_seen {
                    Some(a) => self.seen_addrs.get(&a).copied().unwrap_or(0) == n,
                    None => true,
                };
                n > 0 && all_first && right_addr
            }
            Strategy::Balance => {
                let total: u32 = eg.via.iter().map(|(_, w)| u32::from(*w)).sum();
                let in_via: usize = eg.via.iter().map(|(e, _)| self.on(e)).sum();
                let spread = eg.via.iter().all(|(e, w)| {
                    let expected = n as f64 * f64::from(*w) / f64::from(total.max(1));
                    let got = self.on(e) as f64;
                    expected < 4.0 || got >= (expected / 3.0).max(1.0)
                });
                let failed_n: usize = self.failed.values().sum();
                let other_n: usize = self.other.values().sum();
                n > 0 && failed_n == 0 && other_n == 0 && in_via == n && spread
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    /// The demo config goes into a fresh private directory of a random name: a directory or a
    /// symlink planted at any predictable path cannot redirect the write (issue #10, item 15).
    #[test]
    fn the_demo_config_is_written_into_a_fresh_private_directory() {
        let opts = SandboxOptions::new(None, false);
        let planted = std::env::temp_dir().join("eniroute-sandbox-t1");
        let _ = std::fs::remove_dir_all(&planted);
        std::fs::create_dir_all(&planted).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", planted.join("demo.toml")).unwrap();
        let (a, _) = child_config(&opts, "t1").unwrap();
        let (b, _) = child_config(&opts, "t1").unwrap();
        assert_ne!(a.parent(), b.parent());
        assert_ne!(a.parent(), Some(planted.as_path()));
        let dir = std::fs::metadata(a.parent().unwrap()).unwrap();
        assert_eq!(dir.permissions().mode() & 0o777, 0o700);
        let file = std::fs::symlink_metadata(&a).unwrap();
        assert!(file.is_file() && file.mode() & 0o077 == 0);
        assert_eq!(std::fs::read_to_string(&a).unwrap(), DEMO_CONFIG);
        let errors = teardown(&[], &[a.clone(), b.clone()]);
        assert!(errors.is_empty() && !a.exists() && !b.exists());
        std::fs::remove_dir_all(&planted).unwrap();
    }
}
