//! Test fixtures for kernel tests: uniquely named network namespaces removed on drop, and a
//! small simulated VPC (one bridge holding every gateway) built from a config with iproute2,
//! the independent observer.
#![allow(dead_code)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use eniroute::config;
use eniroute::model::{Config, Mode};

pub const BIN: &str = env!("CARGO_BIN_EXE_eniroute");
/// An "Internet" address held by the VPC namespace.
pub const INTERNET: &str = "198.18.0.1";
pub const INTERNET6: &str = "2001:db8:ffff::1";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

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

/// A named network namespace, deleted on drop (even when the test fails).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(role: &str) -> Netns {
        let name = format!(
            "ert{}-{}-{role}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let out = Command::new("ip").args(["netns", "add", &name]).output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "these tests need root (CAP_SYS_ADMIN) and iproute2: cannot create network namespace {name}: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!("these tests need iproute2 (`ip`): {e}"),
        }
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ARGS...`; panics on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut v = vec!["ip", "-n", &self.name];
        v.extend_from_slice(args);
        sh(&v)
    }

    /// `ip -n NAME -j ARGS...` parsed.
    pub fn ip_json(&self, args: &[&str]) -> serde_json::Value {
        let mut v = vec!["-j"];
        v.extend_from_slice(args);
        let s = self.ip(&v);
        if s.trim().is_empty() {
            return serde_json::Value::Array(vec![]);
        }
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("bad JSON from ip {args:?}: {e}: {s}"))
    }

    /// Read a sysctl inside the namespace (via `ip netns exec`).
    pub fn sysctl(&self, path: &str) -> String {
        sh(&[
            "ip",
            "netns",
            "exec",
            &self.name,
            "cat",
            &format!("/proc/sys/{path}"),
        ])
        .trim()
        .to_string()
    }

    pub fn set_sysctl(&self, path: &str, value: &str) {
        sh(&[
            "ip",
            "netns",
            "exec",
            &self.name,
            "sh",
            "-c",
            &format!("echo {value} > /proc/sys/{path}"),
        ]);
    }

    /// Addresses (one line each, without their links' details), routes of every table and
    /// rules, IPv4 and IPv6, as iproute2 prints them.
    pub fn routing(&self) -> String {
        let mut s = String::new();
        for args in [
            vec!["-o", "addr"],
            vec!["-d", "route", "show", "table", "all"],
            vec!["-6", "-d", "route", "show", "table", "all"],
            vec!["-d", "rule"],
            vec!["-6", "-d", "rule"],
        ] {
            s.push_str(&self.ip(&args));
        }
        s
    }

    /// The full routing state ([`Netns::routing`]) and the links with their details.
    pub fn dump(&self) -> String {
        let s = self.routing() + &self.ip(&["-d", "link"]);
        // A link's first "up" attaches its default qdisc for good: kernel bookkeeping that a
        // rollback cannot (and need not) undo.
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace("qdisc noop", "qdisc noqueue")
    }

    /// `ip monitor` of these kinds (`all`, `link`, `rule`...) in the namespace, until stopped.
    pub fn monitor(&self, kinds: &[&str]) -> Monitor {
        let child = Command::new("ip")
            .args(["-n", &self.name, "monitor"])
            .args(kinds)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ip monitor");
        Monitor(Some(child))
    }

    /// TX packets of an interface.
    pub fn tx_packets(&self, ifname: &str) -> u64 {
        let v = self.ip_json(&["-s", "link", "show", "dev", ifname]);
        v[0]["stats64"]["tx"]["packets"].as_u64().unwrap_or(0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // eniroute's per-namespace state (/run/eniroute/netns-<cookie>) goes with it.
        if let Ok(Ok(dir)) = eniroute::kernel::netns::run_in_netns(Some(&self.name), || async {
            eniroute::host::State::current().map(|s| s.dir().to_path_buf())
        }) {
            let _ = std::fs::remove_dir_all(dir);
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Run eniroute with arguments.
pub fn eniroute(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run eniroute: {e}"))
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("configs/examples")
        .join(name)
}

pub fn load(path: &Path) -> Config {
    config::load_file(path)
        .unwrap_or_else(|e| panic!("{e}"))
        .config
}

/// A guest namespace with one veth per ENI (the config's MAC and name) and a "VPC"
/// namespace whose bridge holds every gateway and an Internet address. The guest starts as
/// DHCP would leave it: the primary ENI up with its primary private IP and the main default
/// route; every other ENI down and bare.
pub struct Vpc {
    pub guest: Netns,
    pub vpc: Netns,
    pub config: PathBuf,
    pub cfg: Config,
    /// The directory of a config written by [`Vpc::from_text`], removed with the Vpc.
    _dir: Option<tempfile::TempDir>,
}

impl Vpc {
    pub fn new(config: &Path) -> Vpc {
        Self::with_missing(config, &[])
    }

    /// A Vpc for a config given as text (kept in a directory of its own while the Vpc lives).
    pub fn from_text(text: &str) -> Vpc {
        let dir = tempdir();
        let path = dir.path().join("eniroute.toml");
        std::fs::write(&path, text).unwrap();
        Vpc {
            _dir: Some(dir),
            ..Self::new(&path)
        }
    }

    /// Like `new`, but without the veths of the ENIs named in `skip`.
    pub fn with_missing(config: &Path, skip: &[&str]) -> Vpc {
        let cfg = load(config);
        let guest = Netns::new("guest");
        let vpc = Netns::new("vpc");
        vpc.ip(&["link", "add", "br0", "type", "bridge"]);
        vpc.ip(&["link", "set", "br0", "up"]);
        vpc.ip(&["addr", "add", &format!("{INTERNET}/32"), "dev", "lo"]);
        vpc.ip(&["addr", "add", &format!("{INTERNET6}/128"), "dev", "lo"]);
        let mut gws: Vec<String> = Vec::new();
        for (k, e) in cfg.enis.iter().enumerate() {
            if let (Some(c), Some(g)) = (e.cidr, e.gateway) {
                gws.push(format!("{g}/{}", c.prefix()));
            }
            for x in &e.eips {
                if let Some(g) = x.gateway {
                    gws.push(format!("{g}/{}", x.prefix));
                }
            }
            if let (Some(c), Some(g)) = (e.ipv6_cidr, e.ipv6_gateway) {
                gws.push(format!(
                    "{g}/{}",
                    if g.is_unicast_link_local() {
                        64
                    } else {
                        c.prefix()
                    }
                ));
            }
            if !skip.contains(&e.name.as_str()) {
                add_eni(&guest, &vpc, e, k);
            }
        }
        gws.sort();
        gws.dedup();
        for g in &gws {
            vpc.ip(&["addr", "add", g, "dev", "br0", "nodad"]);
        }
        // DHCP state of the primary ENI (or the first one).
        let primary = cfg.enis.iter().find(|e| e.primary).or(cfg.enis.first());
        if let Some(p) = primary.filter(|p| !skip.contains(&p.name.as_str())) {
            if p.mode == Mode::Nat {
                let ifname = p.fallback_ifname();
                guest.ip(&["link", "set", ifname, "up"]);
                if let (Some(c), Some(ip)) = (p.cidr, p.private_ips.first()) {
                    guest.ip(&[
                        "addr",
                        "add",
                        &format!("{ip}/{}", c.prefix()),
                        "dev",
                        ifname,
                    ]);
                }
                if let Some(g) = p.gateway {
                    guest.ip(&[
                        "route",
                        "add",
                        "default",
                        "via",
                        &g.to_string(),
                        "dev",
                        ifname,
                    ]);
                }
            }
        }
        Vpc {
            guest,
            vpc,
            config: config.to_path_buf(),
            cfg,
            _dir: None,
        }
    }

    /// Add the veth of ENI `k` (hotplug).
    pub fn plug(&self, name: &str) {
        let (k, e) = self
            .cfg
            .enis
            .iter()
            .enumerate()
            .find(|(_, e)| e.name == name)
            .expect("no such ENI");
        add_eni(&self.guest, &self.vpc, e, k);
    }

    /// eniroute against the guest namespace with this config.
    pub fn run(&self, args: &[&str]) -> Output {
        let cfg = self.config.to_string_lossy().into_owned();
        let mut v = vec!["--netns", &self.guest.name, "-c", &cfg];
        v.extend_from_slice(args);
        eniroute(&v)
    }

    /// eniroute in the background, its output piped, its input empty (never a terminal).
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        let cfg = self.config.to_string_lossy().into_owned();
        Command::new(BIN)
            .args(["--netns", &self.guest.name, "-c", &cfg])
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run eniroute: {e}"))
    }

    /// eniroute, asserting the exit code.
    pub fn expect(&self, args: &[&str], code: i32) -> String {
        let o = self.run(args);
        assert_eq!(
            o.status.code(),
            Some(code),
            "eniroute {args:?}: {}",
            text(&o)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Send `n` UDP datagrams from `src` to the Internet host, inside the guest.
    pub fn send_from(&self, src: IpAddr, n: usize) {
        let dst: IpAddr = match src {
            IpAddr::V4(_) => INTERNET.parse().unwrap(),
            IpAddr::V6(_) => INTERNET6.parse().unwrap(),
        };
        send_udp(&self.guest.name, Some(src), dst, n);
    }
}

fn add_eni(guest: &Netns, vpc: &Netns, e: &eniroute::model::Eni, k: usize) {
    let ifname = e.fallback_ifname();
    let peer = format!("v{k}");
    let mut args = vec!["link", "add", ifname];
    let mac = e.mac.map(|m| m.to_string());
    if let Some(m) = &mac {
        args.extend(["address", m.as_str()]);
    }
    args.extend(["type", "veth", "peer", "name", &peer, "netns", &vpc.name]);
    guest.ip(&args);
    vpc.ip(&["link", "set", &peer, "master", "br0", "up"]);
}

/// Send UDP datagrams from a thread inside namespace `ns` (bound to `src` when given).
pub fn send_udp(ns: &str, src: Option<IpAddr>, dst: IpAddr, n: usize) {
    eniroute::kernel::netns::run_in_netns(Some(ns), move || async move {
        let bind: std::net::SocketAddr = match (src, dst) {
            (Some(s), _) => (s, 0).into(),
            (None, IpAddr::V4(_)) => "0.0.0.0:0".parse().unwrap(),
            (None, IpAddr::V6(_)) => "[::]:0".parse().unwrap(),
        };
        let sock = std::net::UdpSocket::bind(bind).expect("bind");
        for _ in 0..n {
            // A send may fail while the neighbour is resolved; the count still moves.
            let _ = sock.send_to(b"eniroute", (dst, 9));
        }
    })
    .expect("namespace thread");
    // Let the first datagrams leave once ARP/ND resolves.
    std::thread::sleep(std::time::Duration::from_millis(300));
}

/// A fresh directory under the system temp dir, removed when dropped (also on a failure).
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("eniroute-test-")
        .tempdir()
        .unwrap()
}

/// A running `ip monitor` (killed when dropped).
pub struct Monitor(Option<std::process::Child>);

impl Monitor {
    /// Stop it; what it printed.
    pub fn stop(mut self) -> String {
        let Some(mut child) = self.0.take() else {
            return String::new();
        };
        let _ = child.kill();
        let out = child.wait_with_output().expect("ip monitor's output");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Poll every 20 ms until `ok` or the deadline; how long it took.
pub fn within(
    limit: std::time::Duration,
    mut ok: impl FnMut() -> bool,
) -> Option<std::time::Duration> {
    let start = std::time::Instant::now();
    loop {
        if ok() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
