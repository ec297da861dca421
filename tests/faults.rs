//! Fault injection (issue #10): apply is killed (aborted, as SIGKILL would: nothing cleaned up)
//! after every k-th netlink batch, after every k-th sysctl write, and between every pair of its
//! steps, on the largest example. After each kill the next apply heals to an empty plan, and
//! flush puts every sysctl back byte for byte and leaves the full routing dump as it was. Also:
//! SIGTERM in the middle of a pass rolls back and exits 1; a second signal changes nothing.
//!
//! The failpoints (`ENIROUTE_FAILPOINT`, src/ops/failpoint.rs) exist in debug builds only.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;

/// Every sysctl eniroute may touch in the namespace, by path.
fn sysctls(ns: &Netns) -> BTreeMap<String, String> {
    let files = "/proc/sys/net/ipv4/conf/*/rp_filter /proc/sys/net/ipv4/conf/*/arp_ignore \
                 /proc/sys/net/ipv4/conf/*/arp_announce \
                 /proc/sys/net/ipv4/conf/*/ignore_routes_with_linkdown \
                 /proc/sys/net/ipv6/conf/*/ignore_routes_with_linkdown \
                 /proc/sys/net/ipv4/fib_multipath_hash_policy \
                 /proc/sys/net/ipv6/fib_multipath_hash_policy";
    let out = sh(&[
        "ip",
        "netns",
        "exec",
        &ns.name,
        "sh",
        "-c",
        &format!("grep -H . {files}"),
    ]);
    out.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(p, v)| (p.to_string(), v.to_string()))
        .collect()
}

/// Set some sysctls away from eniroute's values, so that restoring them is visible; bring the
/// ENIs' links up first (apply would, and flush leaves links as they are) with IPv6 DAD off, so
/// that the dump does not change by itself while the test runs.
fn perturb(v: &Vpc) {
    for k in ["all", "default"] {
        v.guest
            .set_sysctl(&format!("net/ipv6/conf/{k}/accept_dad"), "0");
    }
    for e in &v.cfg.enis {
        let ifname = e.interface.clone().unwrap_or(e.name.clone());
        v.guest
            .set_sysctl(&format!("net/ipv6/conf/{ifname}/accept_dad"), "0");
        v.guest.ip(&["link", "set", &ifname, "up"]);
        v.guest
            .set_sysctl(&format!("net/ipv4/conf/{ifname}/rp_filter"), "1");
        v.guest
            .set_sysctl(&format!("net/ipv4/conf/{ifname}/arp_announce"), "1");
    }
    // An address that was tentative before DAD was turned off finishes DAD on its own.
    for _ in 0..100 {
        if !v.guest.dump().contains("tentative") {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("IPv6 DAD did not settle");
}

struct Trials {
    /// Applies started with a failpoint (the last of each point finishes: k was past the end).
    run: usize,
    healed: usize,
}

/// One kill at `spec`: true when the failpoint fired (apply did not finish), then the host is
/// healed by apply and put back by flush.
fn trial(v: &Vpc, spec: &str, before: &(String, BTreeMap<String, String>)) -> bool {
    let cfg = v.config.to_string_lossy().into_owned();
    let o = std::process::Command::new(BIN)
        .args(["--netns", &v.guest.name, "-c", &cfg, "apply"])
        .env("ENIROUTE_FAILPOINT", spec)
        .output()
        .unwrap();
    let fired = !o.status.success();
    if fired {
        assert_eq!(
            o.status.code(),
            None,
            "{spec}: killed by its failpoint: {}",
            text(&o)
        );
    }
    v.expect(&["apply"], 0);
    v.expect(&["plan", "--detailed-exitcode"], 0);
    v.expect(&["flush"], 0);
    assert_eq!(v.guest.dump(), before.0, "{spec}: the dump after flush");
    assert_eq!(sysctls(&v.guest), before.1, "{spec}: sysctls after flush");
    fired
}

/// A large config: a primary and 3 secondary ENIs with 100 scattered private IPs each (no two
/// siblings, so nothing aggregates): about 300 addresses and 600 rules, several `sendmsg`s each.
fn large_config() -> Vpc {
    let mut text = String::from(
        "[[eni]]\nname = \"eth0\"\nmac = \"00:16:3e:0f:00:00\"\nprimary = true\n\
         cidr = \"192.168.0.0/24\"\ngateway = \"192.168.0.253\"\nprivate_ips = [\"192.168.0.10\"]\n",
    );
    for k in 1..=3 {
        let ips: Vec<String> = (0..100)
            .map(|i| format!("\"10.{k}.{}.{}\"", i / 50, 4 + (i % 50) * 4))
            .collect();
        text.push_str(&format!(
            "\n[[eni]]\nname = \"eth{k}\"\nmac = \"00:16:3e:0f:00:0{k}\"\ninterface = \"eth{k}\"\n\
             cidr = \"10.{k}.0.0/16\"\ngateway = \"10.{k}.255.253\"\nprivate_ips = [{}]\n",
            ips.join(", ")
        ));
    }
    Vpc::from_text(&text)
}

#[test]
fn killed_at_every_batch_sysctl_write_and_step_is_healed_and_flushed_byte_for_byte() {
    let v = large_config();
    perturb(&v);
    let before = (v.guest.dump(), sysctls(&v.guest));
    let mut t = Trials { run: 0, healed: 0 };
    let mut per_point = Vec::new();
    for point in ["batch", "sysctl"] {
        for k in 1.. {
            t.run += 1;
            if !trial(&v, &format!("{point}:{k}"), &before) {
                // apply finished: k is past the last batch (or write) of this config.
                assert!(k > 2, "{point}: only {} reached", k - 1);
                per_point.push(format!("{} after a {point}", k - 1));
                break;
            }
            t.healed += 1;
        }
    }
    for step in [
        "computed",
        "converged",
        "saved-ahead",
        "written",
        "verified",
        "stored",
    ] {
        t.run += 1;
        assert!(
            trial(&v, &format!("{step}:1"), &before),
            "{step} never reached"
        );
        t.healed += 1;
    }
    per_point.push("6 between steps".into());
    println!(
        "fault injection: {} trials, {} kills ({}), {} healed by the next apply and flushed back",
        t.run,
        t.healed,
        per_point.join(", "),
        t.healed
    );
    assert!(t.healed >= 14, "{} kills", t.healed);
}

#[test]
fn sigterm_mid_apply_rolls_back_and_a_second_signal_changes_nothing() {
    let v = Vpc::new(&example("demo.toml"));
    perturb(&v);
    let before = (v.guest.dump(), sysctls(&v.guest));
    let cfg = v.config.to_string_lossy().into_owned();
    let child = std::process::Command::new(BIN)
        .args(["--netns", &v.guest.name, "-c", &cfg, "apply"])
        .env("ENIROUTE_FAILPOINT", "batch:2:pause")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    std::thread::sleep(Duration::from_millis(600));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("interrupted: rolled back") && err.contains("changes"),
        "{err}"
    );
    assert_eq!(v.guest.dump(), before.0);
    assert_eq!(sysctls(&v.guest), before.1);
    v.expect(&["apply"], 0);
}

/// `apply --try` in the background (stdin not a terminal), and its stderr once the window is
/// open (the line that says how to confirm).
fn try_in_background(v: &Vpc, window: &str) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = v.spawn(&["apply", "--try", window]);
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("confirm") {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
    }
    // The rest of stderr, read to its end in the background so that the child never blocks.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    (child, seen)
}

#[test]
fn apply_try_keeps_the_routing_only_when_confirmed() {
    let v = Vpc::new(&example("demo.toml"));
    perturb(&v);
    let before = (v.guest.dump(), sysctls(&v.guest));
    // Confirmed from another shell: the routing stays.
    let (child, seen) = try_in_background(&v, "30s");
    assert!(
        seen.contains(&format!("eniroute --netns {} confirm", v.guest.name))
            && seen.contains("within 30s"),
        "{seen}"
    );
    let status = v.run(&["status"]);
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(
        shown.contains(&format!("try: eniroute apply --try (PID {}", child.id())),
        "{shown}"
    );
    let confirmed = v.expect(&["confirm"], 0);
    assert!(confirmed.contains("keeps its routing"), "{confirmed}");
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Confirmed"));
    assert_ne!(v.guest.dump(), before.0);
    v.expect(&["plan", "--detailed-exitcode"], 0);
    v.expect(&["flush"], 0);
    assert_eq!((v.guest.dump(), sysctls(&v.guest)), before);

    // Not confirmed: rolled back when the window closes, the host byte for byte as before.
    let (child, _) = try_in_background(&v, "1s");
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(v.guest.dump(), before.0);
    assert_eq!(sysctls(&v.guest), before.1);
    // Too late now: nothing waits.
    let late = v.run(&["confirm"]);
    assert_eq!(late.status.code(), Some(69), "{}", text(&late));
    assert!(text(&late).contains("no `eniroute apply --try` is waiting"));
}

#[test]
fn apply_try_says_why_it_rolled_back_and_enter_on_a_terminal_confirms() {
    let v = Vpc::new(&example("demo.toml"));
    perturb(&v);
    let before = v.guest.dump();
    let o = v.run(&["apply", "--try", "1s"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("not confirmed within 1s; rolled back")
            && err.contains("the host is as before"),
        "{err}"
    );
    assert_eq!(v.guest.dump(), before);
    // A window out of bounds is a usage error.
    assert_eq!(v.run(&["apply", "--try", "2h"]).status.code(), Some(64));
    // Enter on a terminal (a pty from util-linux `script`), typed once the prompt is there.
    let cmd = format!(
        "{BIN} --netns {} -c {} apply --try 30s",
        v.guest.name,
        v.config.display()
    );
    let mut script = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("util-linux `script` (Debian package bsdutils) gives the test a terminal");
    let mut terminal = std::io::BufReader::new(script.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("press Enter") {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut terminal, &mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
    }
    assert!(seen.contains("press Enter"), "{seen}");
    std::io::Write::write_all(script.stdin.as_mut().unwrap(), b"\n").unwrap();
    std::io::Read::read_to_string(&mut terminal, &mut seen).unwrap();
    let status = script.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{seen}");
    assert!(seen.contains("Confirmed"), "{seen}");
    v.expect(&["plan", "--detailed-exitcode"], 0);
}
