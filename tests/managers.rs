//! eniroute next to real network managers: systemd-networkd and NetworkManager run under a
//! real systemd (a throw-away `systemd-nspawn --volatile=yes --private-network` container on
//! the host's /usr, as tests/boot_files.rs boots it) with two veth pairs as ENIs. Each driver
//! (tests/managers/*.sh) applies eniroute, runs the matrix's actions of the README section
//! "Living with network managers" and measures, with the kernel's own lookups (`ip route get
//! ... from SRC`, polled for 1 s), whether every source still routes right; the expectations
//! below are what was measured, so a manager or eniroute that changes behaviour fails here.
//!
//! Needs root, systemd-nspawn (systemd-container), systemd-networkd (systemd), NetworkManager
//! (network-manager) and iproute2; a test whose tool is missing says so loudly and returns.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;
#[path = "common/nspawn.rs"]
mod nspawn;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

const CONFIG: &str = r#"[[eni]]
name = "eni1"
mac = "00:16:3e:7e:00:01"
cidr = "192.168.77.0/24"
gateway = "192.168.77.253"
private_ips = ["192.168.77.21", "192.168.77.22"]

[[eni]]
name = "eni2"
mac = "00:16:3e:7e:00:02"
cidr = "192.168.78.0/24"
gateway = "192.168.78.253"
private_ips = ["192.168.78.21", "192.168.78.22"]
"#;

/// Boot a container into `driver` with the shared helpers, the config and `extra` files (name
/// under /eniroute-probe, content); returns (driver.txt, matrix.txt, the whole report).
fn boot(test: &str, driver: &str, extra: &[(&str, String)]) -> Option<(String, String, String)> {
    let nspawn = nspawn::require_root_nspawn(test)?;
    let mut files = vec![
        ("driver", read(&repo().join("tests/managers").join(driver))),
        ("lib.sh", read(&repo().join("tests/managers/lib.sh"))),
        ("eniroute.toml", CONFIG.to_string()),
        (
            "80-eniroute.conf",
            read(&repo().join("configs/networkd/80-eniroute.conf")),
        ),
    ];
    files.extend(extra.iter().map(|(n, c)| (*n, c.clone())));
    let b = nspawn::Boot::new(test, &files);
    let (status, report) = b.run(&nspawn);
    let driver = b.out("driver.txt");
    let matrix = b.out("matrix.txt");
    eprintln!("{report}");
    assert!(status, "the container did not run the driver:\n{report}");
    Some((driver, matrix, report))
}

/// The measured result of `manager | setup | action`.
fn measured<'a>(matrix: &'a str, setup: &str, action: &str) -> &'a str {
    matrix
        .lines()
        .filter_map(|l| l.strip_prefix("MEASURED "))
        .map(|l| l.splitn(4, " | ").collect::<Vec<_>>())
        .find(|f| f.len() == 4 && f[1] == setup && f[2] == action)
        .map(|f| f[3])
        .unwrap_or_else(|| panic!("nothing measured for {setup} / {action}:\n{matrix}"))
}

fn no_failures(driver: &str, report: &str) {
    let fails: Vec<&str> = driver.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(fails.is_empty(), "{}\n{report}", fails.join("\n"));
    assert!(
        driver.lines().any(|l| l.starts_with("ok ")),
        "the driver checked nothing:\n{report}"
    );
}

#[test]
fn networkd_doctor_and_matrix() {
    const TEST: &str = "networkd_doctor_and_matrix";
    if nspawn::tool("/usr/lib/systemd/systemd-networkd").is_none() {
        return nspawn::skipped(
            TEST,
            "systemd-networkd is not installed (Debian package systemd)",
        );
    }
    let Some((driver, matrix, report)) = boot(TEST, "networkd.sh", &[]) else {
        return;
    };
    no_failures(&driver, &report);
    let kept = |setup: &str, action: &str| {
        let r = measured(&matrix, setup, action);
        assert!(r.starts_with("kept"), "{setup} / {action}: {r}\n{report}");
    };
    let lost = |setup: &str, action: &str| {
        let r = measured(&matrix, setup, action);
        assert!(
            r.starts_with("LOST"),
            "{setup} / {action} was expected to lose state: {r}\n{report}"
        );
        r
    };
    // networkd's defaults: a reconfigure deletes every foreign rule (eni2's too)
    let r = lost("defaults", "networkctl reconfigure eni1");
    assert!(
        r.starts_with("LOST: rules=0 "),
        "defaults / reconfigure: {r}"
    );
    kept("defaults", "networkctl reload");
    kept("defaults", "networkctl forcerenew eni1");
    kept("defaults", "systemctl restart systemd-networkd");
    // down/up: networkd's defaults keep the rules there; the kernel drops eni1's routes
    let r = lost("defaults", "networkctl down eni1 && networkctl up eni1");
    assert!(r.starts_with("LOST: rules=8 "), "defaults / down-up: {r}");
    // with the shipped drop-in the rules stay, but a reconfigure still re-sets eni1's
    // addresses: eniroute's goes, and the kernel drops the table routes through eni1
    let r = lost("drop-in", "networkctl reconfigure eni1");
    assert!(
        r.starts_with("LOST: rules=8 "),
        "drop-in / reconfigure keeps the rules: {r}"
    );
    kept("drop-in", "networkctl reload");
    kept("drop-in", "networkctl forcerenew eni1");
    kept("drop-in", "systemctl restart systemd-networkd");
    // a link set down loses its routes whoever set it down (the kernel's doing)
    let r = lost("drop-in", "networkctl down eni1 && networkctl up eni1");
    assert!(r.starts_with("LOST: rules=8 "), "drop-in / down-up: {r}");
    kept(
        "drop-in + KeepConfiguration=static",
        "networkctl reconfigure eni1",
    );
    // the watch daemon heals everything the drop-in alone lets networkd take
    for action in [
        "networkctl reconfigure eni1",
        "networkctl reload",
        "networkctl forcerenew eni1",
        "systemctl restart systemd-networkd",
        "networkctl down eni1 && networkctl up eni1",
    ] {
        kept("drop-in + watch", action);
    }
}

#[test]
fn networkmanager_doctor_and_matrix() {
    const TEST: &str = "networkmanager_doctor_and_matrix";
    if nspawn::tool("NetworkManager").is_none() || nspawn::tool("nmcli").is_none() {
        return nspawn::skipped(
            TEST,
            "NetworkManager is not installed (Debian package network-manager)",
        );
    }
    let hook = read(&repo().join("configs/networkmanager/90-eniroute"));
    let Some((driver, matrix, report)) = boot(TEST, "nm.sh", &[("90-eniroute", hook)]) else {
        return;
    };
    no_failures(&driver, &report);
    let lost = |action: &str| {
        let r = measured(&matrix, "no hook", action);
        assert!(
            r.starts_with("LOST: rules=8 "),
            "no hook / {action} (rules kept, state lost): {r}\n{report}"
        );
        r
    };
    // without a hook: `connection up` replaces eni1's addresses (eniroute's goes, and the
    // table routes through eni1 with it), `device reapply` drops eniroute's address only,
    // `networking off/on` takes every address and route; the rules stay
    let r = lost("nmcli connection up eni1");
    assert!(r.contains("eniroute-addresses=1 "), "{r}");
    let r = lost("nmcli device reapply eni1");
    assert!(r.contains("eniroute-addresses=1 "), "{r}");
    let r = lost("nmcli networking off; nmcli networking on");
    assert!(r.contains("routes=0 eniroute-addresses=0 "), "{r}");
    // the shipped dispatcher hook puts everything back within the 1 s deadline
    for action in [
        "nmcli connection up eni1",
        "nmcli device reapply eni1",
        "nmcli networking off; nmcli networking on",
    ] {
        for setup in ["dispatcher hook", "watch daemon"] {
            let r = measured(&matrix, setup, action);
            assert!(r.starts_with("kept"), "{setup} / {action}: {r}\n{report}");
        }
    }
}

#[test]
fn ifupdown_doctor_and_matrix() {
    const TEST: &str = "ifupdown_doctor_and_matrix";
    if nspawn::tool("ifup").is_none() {
        return nspawn::skipped(TEST, "ifupdown is not installed (Debian package ifupdown)");
    }
    let hook = read(&repo().join("configs/ifupdown/eniroute"));
    let Some((driver, matrix, report)) = boot(TEST, "ifupdown.sh", &[("eniroute-ifup", hook)])
    else {
        return;
    };
    no_failures(&driver, &report);
    for action in ["ifdown eni1; ifup eni1", "systemctl restart networking"] {
        let r = measured(&matrix, "no hook", action);
        assert!(r.starts_with("LOST"), "no hook / {action}: {r}\n{report}");
        let r = measured(&matrix, "if-up.d hook", action);
        assert!(
            r.starts_with("kept"),
            "if-up.d hook / {action}: {r}\n{report}"
        );
    }
}

/// The shipped hooks parse as POSIX sh (`sh -n`, and dash's stricter parser when installed),
/// and run `eniroute apply` with a lock timeout on up events only: each is run with the
/// binary replaced by a recorder.
#[test]
fn hooks_parse_and_apply_on_up_events_only() {
    let dir = std::env::temp_dir().join(format!("eniroute-hooks-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let record = dir.join("calls");
    let recorder = dir.join("eniroute");
    fs::write(
        &recorder,
        format!("#!/bin/sh\necho \"$*\" >> {}\n", record.display()),
    )
    .unwrap();
    let config = dir.join("eniroute.toml");
    fs::write(&config, "").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&recorder, fs::Permissions::from_mode(0o755)).unwrap();
    let hooks = [
        (
            "configs/networkmanager/90-eniroute",
            vec![
                (vec!["eni1", "up"], true),
                (vec!["eni1", "reapply"], true),
                (vec!["eni1", "down"], false),
                (vec!["eni1", "pre-up"], false),
            ],
            vec![],
        ),
        (
            "configs/ifupdown/eniroute",
            vec![(vec![], true)],
            vec![("IFACE", "eni1"), ("MODE", "start"), ("PHASE", "post-up")],
        ),
        (
            "configs/ifupdown/eniroute",
            vec![(vec![], false)],
            vec![("IFACE", "lo"), ("MODE", "start"), ("PHASE", "post-up")],
        ),
        (
            "configs/ifupdown/eniroute",
            vec![(vec![], false)],
            vec![("IFACE", "eni1"), ("MODE", "stop"), ("PHASE", "post-down")],
        ),
    ];
    for (path, runs, env) in hooks {
        let text = read(&repo().join(path));
        for shell in ["sh", "dash"] {
            if nspawn::tool(shell).is_some() {
                let out = Command::new(shell)
                    .arg("-n")
                    .arg(repo().join(path))
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{shell} -n {path}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let hook = dir.join("hook");
        let patched = text
            .replace(
                "ENIROUTE=/usr/bin/eniroute",
                &format!("ENIROUTE={}", recorder.display()),
            )
            .replace(
                "CONFIG=/etc/eniroute/eniroute.toml",
                &format!("CONFIG={}", config.display()),
            );
        assert_ne!(patched, text, "{path} no longer sets ENIROUTE= and CONFIG=");
        fs::write(&hook, patched).unwrap();
        for (args, applies) in runs {
            let _ = fs::remove_file(&record);
            let status = Command::new("/bin/sh")
                .arg(&hook)
                .args(&args)
                .envs(env.iter().copied())
                .env("PATH", "/nonexistent") // no systemctl: no watch daemon to defer to
                .stdin(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "{path} {args:?} {env:?}: {status}");
            let calls = fs::read_to_string(&record).unwrap_or_default();
            let want = format!("-q -c {} apply --lock-timeout 20s\n", config.display());
            assert_eq!(
                calls,
                if applies { want } else { String::new() },
                "{path} {args:?} {env:?}"
            );
        }
    }
    let _ = fs::remove_dir_all(&dir);
}

/// doctor reads the kernel's rules of a namespace: a foreign fwmark rule before eniroute's
/// source layer, one inside its window, one on its table and cloud-init's shape (from an ENI's
/// address to table 101) are each named, and the namespace is clean once they are gone. The
/// host's files are left out (`--root` an empty directory).
#[test]
fn doctor_reads_the_kernels_foreign_rules() {
    let vpc = common::Vpc::new(&common::example("nat-secondary.toml"));
    let root_dir = common::tempdir();
    let root = root_dir.path();
    let root_s = root.to_string_lossy().into_owned();
    let doctor = || {
        let out = vpc.run(&["-o", "json", "doctor", "--root", &root_s]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("doctor -o json: {e}: {}", common::text(&out)));
        let ids: Vec<String> = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_string())
            .collect();
        (out.status.code(), ids)
    };
    assert_eq!(doctor(), (Some(0), vec![]), "a fresh namespace is clean");
    let g = &vpc.guest;
    g.ip(&[
        "rule",
        "add",
        "priority",
        "100",
        "fwmark",
        "0x4000/0xc000",
        "lookup",
        "7",
    ]);
    g.ip(&["rule", "add", "priority", "20050", "lookup", "8"]);
    g.ip(&[
        "rule",
        "add",
        "priority",
        "5000",
        "from",
        "10.9.0.0/16",
        "lookup",
        "20002",
    ]);
    g.ip(&[
        "rule",
        "add",
        "priority",
        "1000",
        "from",
        "192.168.10.10",
        "lookup",
        "101",
    ]);
    let (code, mut ids) = doctor();
    ids.sort();
    assert_eq!(code, Some(1));
    assert_eq!(
        ids,
        [
            "cloud-init-policy-routing",
            "foreign-fwmark-rule",
            "foreign-rule-in-window",
            "foreign-rule-on-table"
        ]
    );
    for p in ["100", "20050", "5000", "1000"] {
        g.ip(&["rule", "del", "priority", p]);
    }
    assert_eq!(doctor(), (Some(0), vec![]));
    // a namespace that does not exist is exit 69, as for every verb
    let out = common::eniroute(&[
        "--netns",
        "eniroute-no-such-ns",
        "doctor",
        "--root",
        &root_s,
    ]);
    assert_eq!(out.status.code(), Some(69), "{}", common::text(&out));
}

/// doctor needs no privilege for what it reads: run as nobody (setpriv) against a fixture
/// tree, with and without a config file.
#[test]
fn doctor_needs_no_privilege() {
    const TEST: &str = "doctor_needs_no_privilege";
    let Some(setpriv) = nspawn::tool("setpriv") else {
        return nspawn::skipped(TEST, "setpriv is not installed (Debian package util-linux)");
    };
    let root_dir = common::tempdir();
    let root = root_dir.path();
    let as_nobody = |args: &[&str]| {
        Command::new(&setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_eniroute"))
            .args(args)
            .output()
            .unwrap()
    };
    let rs = root.to_string_lossy().into_owned();
    let config = common::example("nat-secondary.toml");
    let cfg = config.to_string_lossy().into_owned();
    let chmod = || {
        Command::new("chmod")
            .args(["-R", "a+rX", &rs])
            .status()
            .unwrap();
    };
    chmod();
    let out = as_nobody(&["-c", &cfg, "doctor", "--root", &rs]);
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out));
    // [containers]: nfnetlink refuses to read without CAP_NET_ADMIN; doctor says what it
    // skipped instead of failing or reporting a missing nf_tables
    let containers = common::example("containers.toml");
    let ccfg = containers.to_string_lossy().into_owned();
    let out = as_nobody(&["-c", &ccfg, "-v", "doctor", "--root", &rs]);
    let t = common::text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("CAP_NET_ADMIN"), "{t}");
    assert!(!t.contains("no-nf-tables"), "{t}");
    // networkd running with its defaults
    fs::create_dir_all(root.join("proc/42")).unwrap();
    fs::write(root.join("proc/42/comm"), "systemd-network\n").unwrap();
    fs::write(
        root.join("proc/42/cmdline"),
        "/usr/lib/systemd/systemd-networkd\0",
    )
    .unwrap();
    chmod();
    for args in [
        vec!["-c", cfg.as_str(), "doctor", "--root", rs.as_str()],
        vec![
            "-c",
            "/nonexistent/eniroute.toml",
            "-v",
            "doctor",
            "--root",
            rs.as_str(),
        ],
    ] {
        let out = as_nobody(&args);
        let t = common::text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {t}");
        assert!(t.contains("[networkd-foreign]"), "{args:?}: {t}");
    }
    let out = as_nobody(&[
        "-c",
        "/nonexistent/eniroute.toml",
        "-v",
        "doctor",
        "--root",
        &rs,
    ]);
    assert!(
        common::text(&out).contains("not found: only the host-wide checks ran"),
        "{}",
        common::text(&out)
    );
}

/// The cloud-init example turns off what competes with eniroute: cloud-init's own secondary-NIC
/// policy routing (its EC2 datasource's `apply_full_imds_network_config`, read from
/// /etc/cloud/cloud.cfg.d) and networkd's deletion of foreign state (the same two settings as
/// the shipped drop-in). Its schema is checked with every configs/cloud-init/*.yaml by
/// tests/boot_files.rs.
#[test]
fn cloud_init_example_disables_competing_policy_routing() {
    let yaml = read(&repo().join("configs/cloud-init/user-data-no-policy-routing.yaml"));
    assert!(yaml.starts_with("#cloud-config\n"));
    for want in [
        "path: /etc/cloud/cloud.cfg.d/99-eniroute.cfg",
        "apply_full_imds_network_config: false",
        "path: /etc/systemd/networkd.conf.d/80-eniroute.conf",
        "nm-cloud-setup.timer",
    ] {
        assert!(yaml.contains(want), "the example lacks `{want}`");
    }
    let dropin = read(&repo().join("configs/networkd/80-eniroute.conf"));
    for line in dropin
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(
            yaml.lines().any(|y| y.trim() == line),
            "the example's networkd drop-in lacks `{line}` of configs/networkd/80-eniroute.conf"
        );
    }
}

/// A network manager counts only where it runs: a process called NetworkManager (a copy of
/// `sleep` under that name) in the guest's namespace makes doctor --netns name the ENIs it
/// would manage there; in another namespace it does not count, nor does a NetworkManager
/// unit merely enabled on the host (it would start in the host's namespace).
#[test]
fn doctor_counts_a_manager_only_in_the_namespace_it_runs_in() {
    let vpc = common::Vpc::new(&common::example("nat-secondary.toml"));
    let other = common::Netns::new("nm-other");
    let dir = common::tempdir();
    let fake = dir.path().join("NetworkManager");
    fs::copy("/bin/sleep", &fake).unwrap();
    // The host's own files (/ as the root): only what runs in the guest's namespace counts.
    let ids = || {
        let out = vpc.run(&["-o", "json", "doctor"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("doctor -o json: {e}: {}", common::text(&out)));
        let mut ids: Vec<String> = (v["findings"].as_array().unwrap().iter())
            .map(|f| f["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    let nm_in = |ns: &str| {
        struct Kill(std::process::Child);
        impl Drop for Kill {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(&fake)
            .arg("60")
            .spawn()
            .unwrap();
        // Until /proc shows it under its name.
        for _ in 0..100 {
            let comm = fs::read_to_string(format!("/proc/{}/comm", child.id()));
            if comm.is_ok_and(|c| c.trim() == "NetworkManager") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Kill(child)
    };
    let before = ids();
    assert!(
        !before.iter().any(|i| i.starts_with("networkmanager")),
        "{before:?}"
    );
    {
        let _nm = nm_in(&other.name);
        assert_eq!(ids(), before, "a NetworkManager in another namespace");
    }
    let _nm = nm_in(&vpc.guest.name);
    let with = ids();
    assert!(
        with.contains(&"networkmanager-manages-eni".to_string())
            && with.contains(&"no-watch".to_string()),
        "{with:?}"
    );
}
