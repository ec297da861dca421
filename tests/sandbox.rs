//! End-to-end tests of `eniroute sandbox`: real namespaces, a simulated VPC, real TCP.
//! They need root (network namespaces); without it they fail loudly, never pass silently.

use std::path::{Path, PathBuf};
use std::process::Command;

use eniroute::sandbox::{self, Kind, SandboxOptions, SandboxReport};

mod common;
use common::example;

fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?")
        .to_string();
    assert!(
        euid == "0",
        "the sandbox tests create network namespaces and need root (euid is {euid}); \
         run them with sudo -E cargo test --test sandbox"
    );
}

fn options(tag: &str, config: Option<PathBuf>) -> SandboxOptions {
    let mut o = SandboxOptions::new(config, false);
    o.exe = PathBuf::from(env!("CARGO_BIN_EXE_eniroute"));
    o.ns_prefix = Some(format!("erst-{}-{tag}", std::process::id()));
    o
}

fn run(opts: &SandboxOptions) -> SandboxReport {
    require_root();
    match sandbox::run(opts) {
        Ok(r) => r,
        Err(e) => panic!("the sandbox could not run: {e}"),
    }
}

fn assert_gone(r: &SandboxReport) {
    for ns in r.namespaces.all() {
        assert!(
            !Path::new("/run/netns").join(ns).exists(),
            "namespace {ns} is still there after the run"
        );
    }
}

fn before_of<'a>(r: &'a SandboxReport, name_part: &str) -> &'a sandbox::Outcome {
    let c = r
        .checks
        .iter()
        .find(|c| c.name.contains(name_part))
        .unwrap_or_else(|| panic!("no check named like {name_part:?}:\n{}", r.render_text()));
    c.before
        .as_ref()
        .unwrap_or_else(|| panic!("check {:?} has no before-apply outcome", c.name))
}

/// Before apply, only the primary ENI works: the sandbox demonstrably fails where it must.
/// (A bogus eniroute path makes apply fail: this test does not depend on apply.)
#[test]
fn demo_before_apply_fails_where_it_must_and_failed_run_tears_down() {
    let mut o = options("bogus", None);
    o.exe = PathBuf::from("/nonexistent/eniroute");
    let r = run(&o);
    println!("{}", r.render_text());

    // The primary ENI works out of the box.
    assert!(before_of(&r, "-> 203.0.113.10 (").ok, "{}", r.render_text());
    assert!(
        before_of(&r, "192.168.0.10 (eth0) -> Internet").ok,
        "{}",
        r.render_text()
    );
    // Every secondary ENI's EIP does not.
    for eip in [
        "-> 203.0.113.11 (",
        "-> 203.0.113.12 (",
        "-> 198.51.100.20 (",
        "-> 198.51.100.21 (",
        "-> 198.51.100.130 (",
    ] {
        let inbound = r
            .checks
            .iter()
            .find(|c| c.kind == Kind::Inbound && c.name.contains(eip))
            .unwrap_or_else(|| panic!("no inbound check for {eip}"));
        assert!(
            !inbound.before.as_ref().is_some_and(|o| o.ok),
            "inbound {eip} should fail before apply:\n{}",
            r.render_text()
        );
    }
    // eth1's primary private IP leaves through eth0 and is dropped by anti-spoofing, both to the
    // Internet and to the peer on the shared vSwitch.
    assert!(!before_of(&r, "192.168.0.11 (eth1) -> Internet").ok);
    assert!(!before_of(&r, "192.168.0.11 (eth1) -> peer").ok);
    // The multi-eip private IP has no Internet path, with or without eniroute.
    assert!(before_of(&r, "192.168.20.10 (eth2) -> Internet").ok);
    // Balance over eth0 and eth1 does not happen without eniroute.
    let egress = r
        .checks
        .iter()
        .find(|c| c.kind == Kind::Egress)
        .expect("an egress check");
    assert!(!egress.before.as_ref().is_some_and(|o| o.ok));

    // The failed apply is reported with the reason, and the run fails.
    let apply = r
        .steps
        .iter()
        .find(|s| s.name == "apply")
        .expect("apply step");
    assert!(!apply.ok);
    assert!(apply.stderr.contains("cannot run"), "{}", apply.stderr);
    assert!(!r.passed());
    assert!(r.render_text().contains("FAIL"));
    assert_gone(&r);
}

/// The bundled demo passes every after-apply check, and its namespaces are removed.
#[test]
fn demo_passes_after_apply() {
    let r = run(&options("demo", None));
    println!("{}", r.render_text());
    assert!(
        r.passed(),
        "the demo must pass after apply:\n{}",
        r.render_text()
    );
    // And the before column shows the problem eniroute solves.
    assert!(r
        .checks
        .iter()
        .any(|c| c.before.as_ref().is_some_and(|o| !o.ok)));
    assert_gone(&r);
}

/// Every example config passes after apply.
#[test]
fn every_example_config_passes_after_apply() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no example configs in {}", dir.display());
    // All at once: each run has its own namespaces, and mostly waits on timeouts.
    let reports: Vec<SandboxReport> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .iter()
            .enumerate()
            .map(|(i, f)| s.spawn(move || run(&options(&format!("ex{i}"), Some(f.clone())))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("sandbox run panicked"))
            .collect()
    });
    let mut failed = Vec::new();
    for (f, r) in files.iter().zip(&reports) {
        println!("{}", r.render_text());
        assert_gone(r);
        if !r.passed() {
            failed.push(format!("{}:\n{}", f.display(), r.render_text()));
        }
    }
    assert!(
        failed.is_empty(),
        "{} example config(s) fail in the sandbox:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// The container rows (published port, container egress) of a report.
fn container_rows(r: &SandboxReport) -> Vec<&sandbox::Check> {
    r.checks
        .iter()
        .filter(|c| matches!(c.kind, Kind::Published | Kind::ContainerEgress))
        .collect()
}

/// [containers] in the sandbox (issue 13): a container behind the guest's bridge, its port
/// published (a foreign DNAT) on eth1's private IP and its network in [[containers.egress]].
/// With the VPC's anti-spoofing, each container check fails before apply (replies and egress
/// leave eth0) and holds after: the Internet through eth1's EIP and the vSwitch peer reach the
/// container, and its egress is seen as eth1's .22 (and that address's EIP).
#[test]
fn containers_published_port_and_egress_fail_before_and_pass_after_apply() {
    let r = run(&options("ctr", Some(example("containers-eip.toml"))));
    println!("{}", r.render_text());
    assert!(r.passed(), "{}", r.render_text());
    assert!(r.namespaces.container.is_some());
    let rows = container_rows(&r);
    let kinds: Vec<Kind> = rows.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [
            Kind::Published,
            Kind::Published,
            Kind::ContainerEgress,
            Kind::ContainerEgress
        ],
        "{}",
        r.render_text()
    );
    for c in &rows {
        assert!(
            c.before.as_ref().is_some_and(|o| !o.ok),
            "{} must fail before apply:\n{}",
            c.name,
            r.render_text()
        );
        assert!(c.after.as_ref().is_some_and(|o| o.ok), "{}", c.name);
    }
    // Before apply the container's egress was docker's masquerade to eth0's address.
    let egress = rows[2].before.as_ref().unwrap();
    assert!(egress.seen.contains("203.0.113.30"), "{egress:?}");
    assert_gone(&r);
}

/// containers-eip.toml with return_path = false, in a directory of its own.
fn without_return_path() -> (tempfile::TempDir, std::path::PathBuf) {
    let text = std::fs::read_to_string(example("containers-eip.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let norp = dir.path().join("norp.toml");
    let text = text.replace("return_path = true", "return_path = false");
    std::fs::write(&norp, text).unwrap();
    (dir, norp)
}

/// The published-port checks see the reply path itself: an eniroute that applies the same
/// config with return_path = false (a wrapper swaps the config file) routes everything else,
/// and the container's replies still leave the wrong ENI.
#[test]
fn containers_without_return_path_the_published_port_fails_after_apply() {
    let (dir, norp) = without_return_path();
    // The sandbox runs `EXE --netns NS -c CONFIG ARGS...`.
    let wrapper = dir.path().join("eniroute-norp");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nns=$2\nshift 4\nexec {} --netns \"$ns\" -c {} \"$@\"\n",
            env!("CARGO_BIN_EXE_eniroute"),
            norp.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut o = options("norp", Some(example("containers-eip.toml")));
    o.exe = wrapper;
    let r = run(&o);
    println!("{}", r.render_text());
    assert!(r.steps.iter().all(|s| s.ok), "{}", r.render_text());
    assert!(!r.passed());
    for c in container_rows(&r) {
        let after = c.after.as_ref().is_some_and(|o| o.ok);
        assert_eq!(
            after,
            c.kind == Kind::ContainerEgress,
            "{}:\n{}",
            c.name,
            r.render_text()
        );
    }
    // Everything that is not the published port holds.
    let failed: Vec<&str> = r
        .checks
        .iter()
        .filter(|c| !c.after.as_ref().is_some_and(|o| o.ok))
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_gone(&r);
}

/// A config with return_path = false makes no published-port promise: those checks are not
/// run (a note says why), and the container's egress still must hold.
#[test]
fn containers_with_return_path_false_checks_egress_only() {
    let (_dir, norp) = without_return_path();
    let r = run(&options("norp2", Some(norp)));
    println!("{}", r.render_text());
    assert!(r.passed(), "{}", r.render_text());
    let kinds: Vec<Kind> = container_rows(&r).iter().map(|c| c.kind).collect();
    assert_eq!(kinds, [Kind::ContainerEgress, Kind::ContainerEgress]);
    assert!(r.notes.iter().any(|n| n.contains("return_path = false")));
    assert_gone(&r);
}

/// --keep leaves the three namespaces, with the instance as the config describes it; an
/// independent observer (iproute2) sees the ENIs with their MACs.
#[test]
fn keep_leaves_the_namespaces() {
    require_root();
    let mut o = options("keep", None);
    o.keep = true;
    o.exe = PathBuf::from("/nonexistent/eniroute");
    let r = run(&o);
    let names = r.namespaces.clone();
    let cleanup = || {
        for ns in [&names.guest, &names.vpc, &names.internet] {
            let _ = eniroute::kernel::sim::delete_netns(ns);
        }
        let file = Path::new(&r.config_file);
        let _ = std::fs::remove_file(file);
        if let Some(dir) = file.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    };
    let present = [&names.guest, &names.vpc, &names.internet]
        .iter()
        .all(|ns| Path::new("/run/netns").join(ns).exists());
    let links = Command::new("ip")
        .args(["-n", &names.guest, "-j", "link", "show"])
        .output();
    let addrs = Command::new("ip")
        .args(["-n", &names.guest, "-4", "-o", "addr", "show"])
        .output();
    cleanup();
    assert!(r.kept, "{}", r.render_text());
    assert!(present, "--keep must leave the namespaces");
    assert!(r
        .render_text()
        .contains(&format!("ip netns exec {} bash", names.guest)));
    let links = links.expect("ip -j link");
    let text = String::from_utf8_lossy(&links.stdout);
    for (ifname, mac) in [
        ("eth0", "00:16:3e:0d:e0:00"),
        ("eth1", "00:16:3e:0d:e0:01"),
        ("eth2", "00:16:3e:0d:e0:02"),
        ("eth3", "00:16:3e:0d:e0:03"),
    ] {
        assert!(
            text.contains(&format!("\"ifname\":\"{ifname}\"")) && text.contains(mac),
            "guest link {ifname} with {mac} missing: {text}"
        );
    }
    // What DHCP leaves: primary private IPs and the cut-through EIP, nothing else.
    let addrs = String::from_utf8_lossy(&addrs.expect("ip addr").stdout).to_string();
    for want in [
        "192.168.0.10/24",
        "192.168.0.11/24",
        "192.168.20.10/24",
        "198.51.100.130/25",
    ] {
        assert!(addrs.contains(want), "guest lacks {want}: {addrs}");
    }
    assert!(!addrs.contains("192.168.0.12"), "{addrs}");
    assert!(!addrs.contains("198.51.100.20"), "{addrs}");
}

/// Objects tagged with eniroute's protocol (225) in the namespace, as iproute2 reports them.
fn tagged_by_iproute2(ns: &str) -> Vec<String> {
    let mut out = Vec::new();
    for args in [
        &["-4", "-j", "rule"][..],
        &["-6", "-j", "rule"][..],
        &["-4", "-j", "route", "show", "table", "all"][..],
        &["-6", "-j", "route", "show", "table", "all"][..],
    ] {
        let o = Command::new("ip")
            .args(["-n", ns])
            .args(args)
            .output()
            .expect("ip (iproute2) runs");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        for x in v.as_array().into_iter().flatten() {
            if x["protocol"] == "225" {
                out.push(format!("{args:?}: {x}"));
            }
        }
    }
    let o = Command::new("ip")
        .args(["-n", ns, "-j", "addr"])
        .output()
        .expect("ip (iproute2) runs");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    for l in v.as_array().into_iter().flatten() {
        for a in l["addr_info"].as_array().into_iter().flatten() {
            if a["protocol"] == "0xe1" || a["protocol"] == "225" {
                out.push(format!("addr: {a}"));
            }
        }
    }
    out
}

/// --keep leaves the instance configured; iproute2, as an independent observer, sees eniroute's
/// objects, and none after `eniroute flush`.
#[test]
fn keep_leaves_the_instance_configured_and_flush_empties_it() {
    let mut o = options("keepapplied", None);
    o.keep = true;
    let r = run(&o);
    let guest = r.namespaces.guest.clone();
    let applied = tagged_by_iproute2(&guest);
    let flush = Command::new(env!("CARGO_BIN_EXE_eniroute"))
        .args(["--netns", &guest, "-c", &r.config_file, "flush"])
        .output();
    let flushed = tagged_by_iproute2(&guest);
    for ns in [
        &r.namespaces.guest,
        &r.namespaces.vpc,
        &r.namespaces.internet,
    ] {
        let _ = eniroute::kernel::sim::delete_netns(ns);
    }
    let file = Path::new(&r.config_file);
    let _ = std::fs::remove_file(file);
    if let Some(dir) = file.parent() {
        let _ = std::fs::remove_dir(dir);
    }
    assert!(r.passed(), "{}", r.render_text());
    assert!(r.kept);
    assert!(
        applied.iter().any(|x| x.contains("rule"))
            && applied.iter().any(|x| x.contains("route"))
            && applied.iter().any(|x| x.starts_with("addr")),
        "the kept instance should be configured: {applied:#?}"
    );
    let flush = flush.expect("eniroute flush runs");
    assert!(flush.status.success(), "{flush:?}");
    assert!(flushed.is_empty(), "left after flush: {flushed:#?}");
}

/// An eniroute that does nothing (exits 0 for every step) fails the sandbox: the after-apply
/// checks see the same broken routing as before.
#[test]
fn a_no_op_eniroute_fails_the_sandbox() {
    let mut o = options("noop", None);
    o.exe = PathBuf::from("/bin/true");
    let r = run(&o);
    println!("{}", r.render_text());
    assert!(r.steps.iter().all(|s| s.ok), "{}", r.render_text());
    assert!(!r.passed(), "{}", r.render_text());
    let inbound = r
        .checks
        .iter()
        .find(|c| c.name.contains("-> 203.0.113.11 ("))
        .expect("inbound check of eth1's EIP");
    assert!(!inbound.after.as_ref().is_some_and(|o| o.ok));
    assert_gone(&r);
}

/// A namespace that exists already is an error, and is never deleted by the sandbox.
#[test]
fn an_existing_namespace_is_left_alone() {
    require_root();
    let o = options("taken", None);
    let prefix = o.ns_prefix.clone().expect("prefix");
    let vpc = format!("{prefix}-vpc");
    eniroute::kernel::sim::create_netns(&vpc).unwrap_or_else(|e| panic!("{e}"));
    let result = sandbox::run(&o);
    let still_there = Path::new("/run/netns").join(&vpc).exists();
    let guest_left = Path::new("/run/netns")
        .join(format!("{prefix}-guest"))
        .exists();
    let _ = eniroute::kernel::sim::delete_netns(&vpc);
    let err = match result {
        Ok(r) => panic!("the run should fail:\n{}", r.render_text()),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&vpc), "{err}");
    assert!(
        still_there,
        "the sandbox deleted a namespace it did not create"
    );
    assert!(
        !guest_left,
        "the sandbox left its own guest namespace behind"
    );
}

/// The JSON report carries every check with both phases.
#[test]
fn report_serializes_to_json() {
    let mut o = options("json", None);
    o.exe = PathBuf::from("/nonexistent/eniroute");
    let r = run(&o);
    let v = serde_json::to_value(&r).expect("report serializes");
    assert_eq!(v["passed"], serde_json::Value::Bool(false));
    let checks = v["checks"].as_array().expect("checks array");
    assert!(checks.len() >= 15, "{v}");
    assert!(checks
        .iter()
        .any(|c| c["kind"] == "inbound" && c["before"]["ok"] == false));
    assert!(v["steps"][0]["stderr"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    assert_gone(&r);
}

/// The bundled demo is a valid config.
#[test]
fn demo_config_is_valid() {
    let loaded = eniroute::config::load_str(sandbox::DEMO_CONFIG, "demo.toml")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.config.enis.len(), 4);
    assert!(loaded
        .warnings
        .iter()
        .all(|w| !w.message.contains("was offered only")));
}

/// Ctrl-C in the middle of a run tears the simulation down and exits 130.
#[test]
fn interrupted_run_removes_its_namespaces() {
    require_root();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_eniroute"))
        .arg("sandbox")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("eniroute sandbox");
    let prefix = format!("ers-{}-", child.id());
    let mine = || -> Vec<String> {
        std::fs::read_dir("/run/netns")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default()
    };
    // Wait until the simulation exists (it takes well under a second to build).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while mine().len() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(mine().len(), 3, "the sandbox never built its namespaces");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130));
    assert!(mine().is_empty(), "left behind: {:?}", mine());
}
