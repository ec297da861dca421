//! Apply at scale, against iproute2 as the yardstick (issue #3, performance part).
//!
//! A network namespace holds 16 veth ENIs (eth0..eth15, each with its own MAC; peers up in a
//! second namespace) x 30 scattered private IPs (every 4th address of one /24 vSwitch per ENI,
//! so nothing aggregates), all nat mode, eth0 primary: 16 link-ups, 480 addresses, 32 routes,
//! 961 rules and 48 sysctls. Every figure is the median of several runs of the release binary
//! as a child process (wall clock from spawn to reap):
//!
//! 1. cold `eniroute apply` (verification on and off), each in a fresh namespace pair, against
//!    `ip -batch` loading `eniroute render --format ip` (the same objects, without sysctls) into
//!    another fresh pair;
//! 2. the no-op re-apply on the converged namespace against dumping it with `ip` (three
//!    processes: `rule`, `route show table all`, `addr`; and one `ip -batch` of the three);
//! 3. the peak RSS of the cold apply (`ru_maxrss` of the child, read with
//!    `getrusage(RUSAGE_CHILDREN)` in a wrapper process whose only child is the measured one).
//!
//! Root only (it creates network namespaces); without root it prints why and exits 0. Every
//! namespace (and eniroute's per-namespace state under /run/eniroute) is removed on drop, also
//! when the bench panics. `ENIROUTE_BENCH_RUNS` sets the number of runs (default 7).
//!
//! `cargo bench --bench apply`

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::resource::{getrusage, UsageWho};

mod common;

use common::{config, sh, Host, Series, TempFiles, ENIS, IPS_PER_ENI};

const BIN: &str = env!("CARGO_BIN_EXE_eniroute");
/// Set in the environment of the wrapper process (see [`wrapper`]).
const WRAP_ENV: &str = "ENIROUTE_BENCH_WRAP";

// Targets of issue #3.
const COLD_RATIO_TARGET: f64 = 1.5;
const NOOP_RATIO_TARGET: f64 = 3.0;
const RSS_TARGET_MIB: f64 = 15.0;

fn main() {
    if std::env::var_os(WRAP_ENV).is_some() {
        wrapper();
        return;
    }
    if let Some(runs) = common::runs("apply", 7) {
        run(runs);
    }
}

// ---------------------------------------------------------------------------------------------
// The wrapper: run one command, report its wall time, peak RSS and exit code.
// ---------------------------------------------------------------------------------------------

/// `ENIROUTE_BENCH_WRAP=1 <this exe> PROG ARGS...`: spawn PROG (stdout to /dev/null, stderr
/// inherited), reap it, print `<nanoseconds> <ru_maxrss KiB> <exit code>`. Its only child is
/// PROG, so RUSAGE_CHILDREN is exactly PROG's peak RSS.
fn wrapper() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let start = Instant::now();
    let status = Command::new(&args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    let elapsed = start.elapsed();
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).expect("getrusage");
    println!(
        "{} {} {}",
        elapsed.as_nanos(),
        usage.max_rss(),
        status.code().unwrap_or(-1)
    );
}

/// One measured child process.
struct Sample {
    wall: Duration,
    maxrss_kib: u64,
}

/// Run `args` through the wrapper; panic (with its stderr) unless it exits 0.
fn measure(args: &[&str]) -> Sample {
    let out = Command::new(std::env::current_exe().expect("current_exe"))
        .env(WRAP_ENV, "1")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run the wrapper");
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<i64> = text
        .split_whitespace()
        .map(|s| s.parse().expect("wrapper output"))
        .collect();
    assert!(
        out.status.success() && f.len() == 3 && f[2] == 0,
        "{args:?} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Sample {
        wall: Duration::from_nanos(f[0] as u64),
        maxrss_kib: f[1] as u64,
    }
}

// ---------------------------------------------------------------------------------------------
// The bench
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Results {
    cold: Series,
    cold_noverify: Series,
    ip_batch: Series,
    noop: Series,
    noop_noverify: Series,
    dumps3: Series,
    dumps1: Series,
    plan: Series,
    validate: Series,
    rss_mib: Series,
    ip_rss_mib: Series,
}

fn settle() {
    // Let the kernel finish tearing down the previous namespaces (a workqueue) and the
    // setup's own work before the clock starts.
    std::thread::sleep(Duration::from_millis(150));
}

fn run(runs: usize) {
    let started = Instant::now();
    let mut files = TempFiles(Vec::new());
    let cfg_on = files.add("verify.toml", &config(true));
    let cfg_off = files.add("noverify.toml", &config(false));

    // The ip script: render without a host view uses the config's interface names.
    let script = sh(&[BIN, "-c", &cfg_on, "-q", "render", "--format", "ip"]);
    let count = |p: &str| script.lines().filter(|l| l.starts_with(p)).count();
    let (n_links, n_addrs, n_routes, n_rules) = (
        count("link set"),
        count("address add"),
        count("route add"),
        count("rule add"),
    );
    let n_sysctls = count("# sysctl -w");
    assert_eq!(
        (n_links, n_addrs, n_routes, n_rules),
        (
            ENIS,
            ENIS * IPS_PER_ENI,
            2 * ENIS,
            2 * ENIS * IPS_PER_ENI + 1
        ),
        "unexpected render:\n{script}"
    );
    let script_path = files.add("render.ip", &script);
    let dumps_path = files.add("dumps.ip", "rule\nroute show table all\naddr\n");
    let want = (n_addrs, n_routes, n_rules);

    println!(
        "bench apply: {ENIS} veth ENIs x {IPS_PER_ENI} private IPs (nat): {n_links} link-ups, \
         {n_addrs} addresses, {n_routes} routes, {n_rules} rules, {n_sysctls} sysctls; {runs} runs"
    );
    let mut r = Results::default();
    for i in 0..runs {
        // 1a. eniroute, verification on: cold, then no-op, then the ip dumps of the result.
        {
            let h = Host::new(&format!("{i}-on"));
            settle();
            let s = measure(&[BIN, "--netns", &h.guest, "-c", &cfg_on, "apply", "-q"]);
            r.cold.push(s.wall);
            r.rss_mib.0.push(s.maxrss_kib as f64 / 1024.0);
            assert_eq!(h.owned(), want, "cold apply did not converge");
            if i == 0 {
                // The next apply really is a no-op.
                let o = Command::new(BIN)
                    .args(["--netns", &h.guest, "-c", &cfg_on, "plan"])
                    .arg("--detailed-exitcode")
                    .output()
                    .expect("plan");
                assert_eq!(o.status.code(), Some(0), "pending changes after apply");
            }
            settle();
            let s = measure(&[BIN, "--netns", &h.guest, "-c", &cfg_on, "apply", "-q"]);
            r.noop.push(s.wall);
            let s = measure(&[BIN, "--netns", &h.guest, "-c", &cfg_off, "apply", "-q"]);
            r.noop_noverify.push(s.wall);
            let s = measure(&[BIN, "--netns", &h.guest, "-c", &cfg_on, "plan", "-q"]);
            r.plan.push(s.wall);
            let s = measure(&[BIN, "-c", &cfg_on, "validate", "-q"]);
            r.validate.push(s.wall);
            let t = measure(&["ip", "-n", &h.guest, "rule"]).wall
                + measure(&["ip", "-n", &h.guest, "route", "show", "table", "all"]).wall
                + measure(&["ip", "-n", &h.guest, "addr"]).wall;
            r.dumps3.push(t);
            let s = measure(&["ip", "-n", &h.guest, "-batch", &dumps_path]);
            r.dumps1.push(s.wall);
        }
        // 1b. ip -batch of the same objects.
        {
            let h = Host::new(&format!("{i}-ip"));
            settle();
            let s = measure(&["ip", "-n", &h.guest, "-batch", &script_path]);
            r.ip_batch.push(s.wall);
            r.ip_rss_mib.0.push(s.maxrss_kib as f64 / 1024.0);
            assert_eq!(h.owned(), want, "ip -batch did not load everything");
        }
        // 1c. eniroute, verification off.
        {
            let h = Host::new(&format!("{i}-off"));
            settle();
            let s = measure(&[BIN, "--netns", &h.guest, "-c", &cfg_off, "apply", "-q"]);
            r.cold_noverify.push(s.wall);
            assert_eq!(h.owned(), want, "cold apply (verify off) did not converge");
        }
    }
    report(&r, runs);
    println!("(bench took {:.1} s)", started.elapsed().as_secs_f64());
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

fn report(r: &Results, runs: usize) {
    let row = |name: &str, s: &Series| {
        println!(
            "  {name:<44} {:>9.1} {:>9.1} {:>9.1}",
            s.median(),
            s.min(),
            s.max()
        );
    };
    println!();
    println!(
        "  {:<44} {:>9} {:>9} {:>9}",
        "wall clock, ms", "median", "min", "max"
    );
    row("cold apply (verify on)", &r.cold);
    row("cold apply (verify off)", &r.cold_noverify);
    row("ip -batch, same objects (no sysctls)", &r.ip_batch);
    row("no-op re-apply (verify on)", &r.noop);
    row("no-op re-apply (verify off)", &r.noop_noverify);
    row("ip rule; ip route show table all; ip addr", &r.dumps3);
    row("ip -batch of those three dumps", &r.dumps1);
    row("plan on the converged namespace", &r.plan);
    row("validate (process start + config parse)", &r.validate);
    println!();
    println!(
        "  {:<44} {:>9} {:>9} {:>9}",
        "peak RSS, MiB", "median", "min", "max"
    );
    row("cold apply (eniroute)", &r.rss_mib);
    row("ip -batch (ip)", &r.ip_rss_mib);

    let cold = r.cold.median() / r.ip_batch.median();
    let cold_off = r.cold_noverify.median() / r.ip_batch.median();
    let noop = r.noop.median() / r.dumps3.median();
    let noop1 = r.noop.median() / r.dumps1.median();
    let rss = r.rss_mib.median();
    println!();
    println!(
        "  {:<44} {:>9} {:>9} {:>9}",
        format!("medians of {runs} runs vs target"),
        "value",
        "target",
        ""
    );
    let line = |name: &str, v: String, t: String, ok: Option<bool>| {
        println!(
            "  {name:<44} {v:>9} {t:>9} {:>9}",
            ok.map(verdict).unwrap_or("")
        );
    };
    line(
        "cold apply / ip -batch",
        format!("{cold:.2}x"),
        format!("<={COLD_RATIO_TARGET}x"),
        Some(cold <= COLD_RATIO_TARGET),
    );
    line(
        "  (verify off) / ip -batch",
        format!("{cold_off:.2}x"),
        format!("<={COLD_RATIO_TARGET}x"),
        Some(cold_off <= COLD_RATIO_TARGET),
    );
    line(
        "no-op apply / ip dumps (3 processes)",
        format!("{noop:.2}x"),
        format!("<={NOOP_RATIO_TARGET}x"),
        Some(noop <= NOOP_RATIO_TARGET),
    );
    line(
        "  no-op apply / one ip -batch of the dumps",
        format!("{noop1:.2}x"),
        String::new(),
        None,
    );
    line(
        "peak RSS of the cold apply",
        format!("{rss:.1}MiB"),
        format!("<={RSS_TARGET_MIB}MiB"),
        Some(rss <= RSS_TARGET_MIB),
    );
}
