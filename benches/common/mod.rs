//! What the benches share: the 16-ENI x 30-IP namespace pair (removed on drop), its config,
//! running commands, and series of figures.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Whether bench `name` runs, and with how many runs (`ENIROUTE_BENCH_RUNS`, else `default`).
/// `cargo bench` passes --bench; `cargo test --benches` (or --all-targets) does not: then this
/// is a test run, and the bench has nothing to check quickly. `cargo bench -- FILTER` runs it
/// only when the filter names it. It needs root (network namespaces).
pub fn runs(name: &str, default: usize) -> Option<usize> {
    use std::os::unix::fs::MetadataExt as _;
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("bench {name}: skipped (not run by `cargo bench`)");
        return None;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
        return None;
    }
    // /proc/self belongs to the effective user.
    let euid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1);
    if euid != 0 {
        println!("bench {name}: skipped (needs root to create network namespaces)");
        return None;
    }
    let runs = std::env::var("ENIROUTE_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default);
    Some(runs)
}

pub const ENIS: usize = 16;
pub const IPS_PER_ENI: usize = 30;
/// Private IPs are .4, .8, ..., .120: no two are siblings, so no rule aggregates.
pub const IP_STEP: usize = 4;

/// Run a command; panic with its output if it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Namespaces
// ---------------------------------------------------------------------------------------------

/// A guest namespace with the 16 veth ENIs, and the namespace of their peers. Both are
/// deleted on drop (also during a panic), with eniroute's state directory of the guest.
pub struct Host {
    pub guest: String,
    pub peers: String,
    pub state_dir: Option<PathBuf>,
}

impl Host {
    pub fn new(tag: &str) -> Host {
        let base = format!("erbench{}-{tag}", std::process::id());
        let mut h = Host {
            guest: format!("{base}-g"),
            peers: format!("{base}-p"),
            state_dir: None,
        };
        // Leftovers of a killed earlier bench with the same pid: start clean.
        h.delete();
        sh(&["ip", "netns", "add", &h.guest]);
        sh(&["ip", "netns", "add", &h.peers]);
        // eniroute's state directory of this namespace (named after its cookie), asked of
        // eniroute itself from inside the namespace, so that drop removes it.
        let ns = h.guest.clone();
        let dir = eniroute::kernel::netns::run_in_netns(Some(&ns), || async {
            eniroute::host::State::current().map(|s| s.dir().to_path_buf())
        })
        .expect("enter the namespace")
        .expect("state dir");
        h.state_dir = Some(dir);
        let mut guest = String::from("link set lo up\n");
        let mut peers = String::from("link set lo up\n");
        for k in 0..ENIS {
            writeln!(
                guest,
                "link add eth{k} address {} type veth peer name p{k} netns {}",
                mac(k),
                h.peers
            )
            .unwrap();
            writeln!(peers, "link set p{k} up").unwrap();
        }
        ip_batch(&h.guest, &guest);
        ip_batch(&h.peers, &peers);
        h.assert_bare();
        h
    }

    /// Nothing of eniroute's is there yet: a cold run really starts from scratch.
    pub fn assert_bare(&self) {
        let rules = sh(&["ip", "-n", &self.guest, "rule"]);
        assert_eq!(rules.lines().count(), 3, "not a fresh namespace: {rules}");
        let addrs = sh(&["ip", "-n", &self.guest, "-4", "addr"]);
        assert_eq!(addrs.matches("inet ").count(), 1, "{addrs}"); // 127.0.0.1
        let routes = sh(&["ip", "-n", &self.guest, "route", "show", "table", "all"]);
        assert!(!routes.contains("proto 225"), "{routes}");
        let dir = self.state_dir.as_ref().expect("state dir");
        assert!(!dir.join("sysctl.json").exists());
    }

    /// Count what carries eniroute's tag: (addresses, routes, rules).
    pub fn owned(&self) -> (usize, usize, usize) {
        let g = &self.guest;
        let addrs = sh(&["ip", "-n", g, "addr"]).matches("proto 0xe1").count();
        let routes = sh(&[
            "ip", "-n", g, "route", "show", "table", "all", "proto", "225",
        ])
        .lines()
        .count();
        let rules = sh(&["ip", "-n", g, "rule"])
            .lines()
            .filter(|l| l.contains("proto 225"))
            .count();
        (addrs, routes, rules)
    }

    pub fn delete(&self) {
        for ns in [&self.guest, &self.peers] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        if let Some(d) = &self.state_dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.delete();
    }
}

pub fn ip_batch(ns: &str, script: &str) {
    let path = std::env::temp_dir().join(format!("erbench{}-setup.ip", std::process::id()));
    std::fs::write(&path, script).expect("write script");
    let r = Command::new("ip")
        .args(["-n", ns, "-batch"])
        .arg(&path)
        .output();
    let _ = std::fs::remove_file(&path);
    let out = r.expect("ip");
    assert!(
        out.status.success(),
        "ip -batch failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// The config
// ---------------------------------------------------------------------------------------------

pub fn mac(k: usize) -> String {
    format!("02:16:3e:00:00:{:02x}", k + 1)
}

pub fn config(verify: bool) -> String {
    let mut s = String::new();
    writeln!(s, "[routing]\nverify = {verify}\n").unwrap();
    for k in 0..ENIS {
        let ips: Vec<String> = (1..=IPS_PER_ENI)
            .map(|i| format!("\"192.168.{k}.{}\"", i * IP_STEP))
            .collect();
        writeln!(
            s,
            "[[eni]]\nname = \"eth{k}\"\nmac = \"{}\"\ninterface = \"eth{k}\"\nprimary = {}\n\
             mode = \"nat\"\ncidr = \"192.168.{k}.0/24\"\ngateway = \"192.168.{k}.253\"\n\
             private_ips = [{}]\n",
            mac(k),
            k == 0,
            ips.join(", ")
        )
        .unwrap();
    }
    s
}

/// Temporary files removed on drop.
pub struct TempFiles(pub Vec<PathBuf>);

impl TempFiles {
    pub fn add(&mut self, name: &str, body: &str) -> String {
        let path = std::env::temp_dir().join(format!("erbench{}-{name}", std::process::id()));
        std::fs::write(&path, body).expect("write temp file");
        self.0.push(path.clone());
        path.to_string_lossy().into_owned()
    }
}

impl Drop for TempFiles {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[derive(Default)]
pub struct Series(pub Vec<f64>);

impl Series {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d.as_secs_f64() * 1e3);
    }
    pub fn median(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    }
    pub fn min(&self) -> f64 {
        self.0.iter().copied().fold(f64::INFINITY, f64::min)
    }
    pub fn max(&self) -> f64 {
        self.0.iter().copied().fold(0.0, f64::max)
    }
}
