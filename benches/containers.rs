//! Data plane with `[containers]` (issue #13): UDP packets per second through a published port
//! (a DNAT of 192.168.10.22:9000 on the secondary ENI eth1 to a container behind a docker0-like
//! bridge), answered by an echo in the container, with and without `return_path` on the same
//! host, side by side. Without it the echoes leave through eth0 (the VPC here does not drop
//! them, so both paths deliver); with it they pass the table `inet eniroute` and the fwmark
//! rule and leave through eth1. Target: with / without >= 0.9.
//!
//! One flow (one conntrack entry), the client in the VPC namespace bound to 198.18.0.1, sending
//! as fast as it can for `ENIROUTE_BENCH_SECS` (default 3) per run, `ENIROUTE_BENCH_RUNS`
//! (default 5) alternating runs each; the median of each. Root only (it creates network
//! namespaces); without root it prints why and exits 0.
//!
//! `cargo bench --bench containers`

mod common;

use std::net::UdpSocket;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{runs, sh, Series};

const BIN: &str = env!("CARGO_BIN_EXE_eniroute");
const RATIO_TARGET: f64 = 0.9;

const BASE: &str = r#"
[[eni]]
name = "eth0"
mac = "00:16:3e:10:00:01"
primary = true
cidr = "192.168.10.0/24"
gateway = "192.168.10.253"
private_ips = ["192.168.10.10"]

[[eni]]
name = "eth1"
mac = "00:16:3e:10:00:02"
cidr = "192.168.10.0/24"
gateway = "192.168.10.253"
private_ips = ["192.168.10.21", "192.168.10.22"]
"#;

/// Network namespaces removed on drop.
struct Spaces(Vec<String>);

impl Drop for Spaces {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn ip(ns: &str, args: &str) {
    let mut v = vec!["ip", "-n", ns];
    v.extend(args.split_whitespace());
    sh(&v);
}

fn nft_file(ns: &str, text: &str, dir: &std::path::Path) {
    let f = dir.join(format!("{ns}.nft"));
    std::fs::write(&f, text).expect("write");
    sh(&["ip", "netns", "exec", ns, "nft", "-f", &f.to_string_lossy()]);
}

/// guest (eth0, eth1, docker0), vpc (br0 with the gateway, the client), ctr (the container).
fn topology(dir: &std::path::Path) -> Spaces {
    let id = std::process::id();
    let (g, v, c) = (
        format!("erb{id}-g"),
        format!("erb{id}-v"),
        format!("erb{id}-c"),
    );
    let spaces = Spaces(vec![g.clone(), v.clone(), c.clone()]);
    for n in &spaces.0 {
        sh(&["ip", "netns", "add", n]);
        ip(n, "link set lo up");
    }
    ip(&v, "link add br0 type bridge");
    ip(&v, "link set br0 up");
    ip(&v, "addr add 192.168.10.253/24 dev br0");
    ip(&v, "addr add 198.18.0.1/32 dev lo");
    for (k, mac) in ["00:16:3e:10:00:01", "00:16:3e:10:00:02"]
        .iter()
        .enumerate()
    {
        ip(
            &g,
            &format!("link add eth{k} address {mac} type veth peer name v{k} netns {v}"),
        );
        ip(&v, &format!("link set v{k} master br0 up"));
        ip(&g, &format!("link set eth{k} up"));
    }
    ip(
        &v,
        "neigh replace 192.168.10.22 lladdr 00:16:3e:10:00:02 dev br0 nud permanent",
    );
    ip(
        &v,
        "neigh replace 192.168.10.10 lladdr 00:16:3e:10:00:01 dev br0 nud permanent",
    );
    ip(&g, "addr add 192.168.10.10/24 dev eth0");
    ip(&g, "route add default via 192.168.10.253 dev eth0");
    ip(&g, "link add docker0 type bridge");
    ip(&g, "addr add 172.17.0.1/16 dev docker0");
    ip(&g, "link set docker0 up");
    ip(
        &g,
        &format!("link add vethc type veth peer name ceth0 netns {c}"),
    );
    ip(&g, "link set vethc master docker0 up");
    ip(&c, "addr add 172.17.0.2/16 dev ceth0");
    ip(&c, "link set ceth0 up");
    ip(&c, "route add default via 172.17.0.1");
    sh(&[
        "ip",
        "netns",
        "exec",
        &g,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ]);
    nft_file(
        &g,
        "table ip dockerlike {\n  chain pre { type nat hook prerouting priority dstnat; policy accept;\n    \
         ip daddr 192.168.10.22 udp dport 9000 dnat to 172.17.0.2:9000\n  }\n}\n",
        dir,
    );
    spaces
}

/// The container's echo, for as long as the bench runs.
fn echo(ns: String, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let _ = eniroute::kernel::netns::run_in_netns(Some(&ns), move || async move {
            let s = UdpSocket::bind("172.17.0.2:9000").expect("bind echo");
            s.set_read_timeout(Some(Duration::from_millis(200))).ok();
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, peer)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(&buf[..n], peer);
                }
            }
        });
    });
}

/// Echoes per second received by the client in `secs`.
fn run(vpc: &str, secs: u64) -> f64 {
    eniroute::kernel::netns::run_in_netns(Some(vpc), move || async move {
        let s = UdpSocket::bind("198.18.0.1:5000").expect("bind client");
        s.connect("192.168.10.22:9000").expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(100))).ok();
        let got = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let rx = s.try_clone().expect("clone");
        let (g, d) = (got.clone(), done.clone());
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !d.load(Ordering::Relaxed) {
                if rx.recv(&mut buf).is_ok() {
                    g.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let start = Instant::now();
        // Paced in bursts so the echo is not simply overrun: 32 in flight at most.
        let mut sent = 0u64;
        while start.elapsed() < Duration::from_secs(secs) {
            if sent.saturating_sub(got.load(Ordering::Relaxed)) < 32 {
                let _ = s.send(b"eniroute-bench");
                sent += 1;
            } else {
                std::thread::yield_now();
            }
            if sent.is_multiple_of(4096)
                && got.load(Ordering::Relaxed) == 0
                && start.elapsed() > Duration::from_millis(500)
            {
                // Lost ones never come back: let the window move on.
                sent = got.load(Ordering::Relaxed);
            }
        }
        let n = got.load(Ordering::Relaxed);
        done.store(true, Ordering::Relaxed);
        let _ = reader.join();
        n as f64 / secs as f64
    })
    .expect("client thread")
}

fn apply(guest: &str, cfg: &std::path::Path) {
    let o = Command::new(BIN)
        .args(["--netns", guest, "-c", &cfg.to_string_lossy(), "apply"])
        .output()
        .expect("run eniroute");
    assert!(
        o.status.success(),
        "apply: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn main() {
    let Some(runs) = runs("containers", 5) else {
        return;
    };
    let secs = (std::env::var("ENIROUTE_BENCH_SECS").ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    // Removed on drop, even when the bench panics.
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let spaces = topology(dir);
    let (guest, vpc, ctr) = (&spaces.0[0], &spaces.0[1], &spaces.0[2]);
    let with = dir.join("with.toml");
    let without = dir.join("without.toml");
    std::fs::write(&with, format!("{BASE}\n[containers]\nreturn_path = true\n")).expect("write");
    std::fs::write(&without, BASE).expect("write");
    let stop = Arc::new(AtomicBool::new(false));
    echo(ctr.clone(), stop.clone());
    std::thread::sleep(Duration::from_millis(200));
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        apply(guest, &without);
        off.push(run(vpc, secs));
        apply(guest, &with);
        on.push(run(vpc, secs));
    }
    stop.store(true, Ordering::Relaxed);
    let (on, off) = (Series(on).median(), Series(off).median());
    let ratio = on / off;
    println!("published port, UDP echo through DNAT, 1 flow, median of {runs} x {secs} s:");
    println!("  without return_path: {off:>10.0} echoes/s (replies leave eth0)");
    println!("  with    return_path: {on:>10.0} echoes/s (replies leave eth1)");
    println!(
        "  ratio {ratio:.3} (target >= {RATIO_TARGET}): {}",
        if ratio >= RATIO_TARGET {
            "met"
        } else {
            "NOT met"
        }
    );
}
