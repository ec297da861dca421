//! One test per validation rule of DESIGN §2/§3: a valid base config with exactly one thing
//! changed is rejected, with a message naming the rule, at the offending line. A few rules (and
//! syntax errors, unknown keys, usage errors) also go through the binary: exit 65 (64 for usage),
//! the file and line on stderr, nothing changed.
//!
//! Addresses: private 192.168.0.0/16 and documentation ranges (198.51.100.0/24, 203.0.113.0/24,
//! 2001:db8::/32) only.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use eniroute::config::{load_str, Loaded, Problem};

/// A valid config using every mode, prefixes, IPv6, nat `private_ip`, a multi-eip EIP with a
/// gateway of its own, and failover egress. Lines that would otherwise repeat carry a comment
/// naming their ENI, so every edit below hits exactly one line.
const BASE: &str = r#"region = "cn-beijing"

[routing]
table_base = 20000
rule_priority = 20000
protocol = 225
rp_filter = "loose"

[[eni]]
name = "eth0"
mac = "00:16:3e:00:00:01"
primary = true
cidr = "192.168.0.0/24"      # eth0
gateway = "192.168.0.253"    # eth0
private_ips = ["192.168.0.10"]

[[eni.eip]]
address = "203.0.113.10"

[[eni]]
name = "eth1"
mac = "00:16:3e:00:00:02"
interface = "eth1"
cidr = "192.168.0.0/24"      # eth1
gateway = "192.168.0.253"    # eth1
private_ips = ["192.168.0.20", "192.168.0.21"]
prefixes = ["192.168.0.48/28"]
ipv6 = ["2001:db8:1::20"]
ipv6_cidr = "2001:db8:1::/64"
ipv6_gateway = "fe80::1"

[[eni.eip]]
address = "203.0.113.20"

[[eni.eip]]
address = "203.0.113.21"
private_ip = "192.168.0.21"

[[eni]]
name = "eth2"
mac = "00:16:3e:00:00:03"
mode = "multi-eip"
cidr = "192.168.2.0/24"
gateway = "192.168.2.253"
private_ips = ["192.168.2.30"]

[[eni.eip]]
address = "198.51.100.40"

[[eni.eip]]
address = "198.51.100.50"
prefix = 28
gateway = "198.51.100.49"

[[eni]]
name = "eth3"
interface = "eth3"
mode = "cut-through"

[[eni.eip]]
address = "198.51.100.130"
prefix = 25
gateway = "198.51.100.129"

[egress]
strategy = "failover"

[[egress.via]]
eni = "eth1"
source = "203.0.113.21"

[[egress.via]]
eni = "eth0"
"#;

const PATH: &str = "rules.toml";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// BASE with each `(old, new)` applied; `old` must occur exactly once.
#[track_caller]
fn edit(edits: &[(&str, &str)]) -> String {
    edit_text(BASE, edits)
}

#[track_caller]
fn edit_text(text: &str, edits: &[(&str, &str)]) -> String {
    let mut t = text.to_string();
    for (old, new) in edits {
        assert_eq!(
            t.matches(old).count(),
            1,
            "edit anchor {old:?} must occur exactly once in:\n{t}"
        );
        t = t.replacen(old, new, 1);
    }
    t
}

/// The 1-based line of the only line containing `needle`.
#[track_caller]
fn line_of(text: &str, needle: &str) -> usize {
    let hits: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "{needle:?} must be on exactly one line: {hits:?}"
    );
    hits[0]
}

/// The 1-based line of the `n`th (0-based) line containing `needle`.
#[track_caller]
fn nth_line_of(text: &str, needle: &str, n: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .nth(n)
        .unwrap_or_else(|| panic!("no occurrence {n} of {needle:?}"))
}

/// The line of the `[[eni]]` header of the ENI named `name` (the line before its `name`).
#[track_caller]
fn eni_header(text: &str, name: &str) -> usize {
    let l = line_of(text, &format!("name = \"{name}\""));
    assert_eq!(text.lines().nth(l - 2), Some("[[eni]]"));
    l - 1
}

/// The line of the `[[eni.eip]]` header of the EIP with `address`.
#[track_caller]
fn eip_header(text: &str, address: &str) -> usize {
    let l = line_of(text, &format!("address = \"{address}\""));
    assert_eq!(text.lines().nth(l - 2), Some("[[eni.eip]]"));
    l - 1
}

#[track_caller]
fn accepts(text: &str) -> Loaded {
    match load_str(text, PATH) {
        Ok(l) => l,
        Err(e) => panic!("expected a valid config, got:\n{e}\n---\n{text}"),
    }
}

#[track_caller]
fn problems(text: &str) -> Vec<Problem> {
    match load_str(text, PATH) {
        Ok(_) => panic!("expected the config to be rejected:\n{text}"),
        Err(e) => {
            assert_eq!(e.path, PATH);
            assert!(!e.problems.is_empty());
            e.problems
        }
    }
}

/// Rejected, and one problem contains `msg` at `line`.
#[track_caller]
fn rejects(text: &str, msg: &str, line: usize) -> Vec<Problem> {
    let ps = problems(text);
    assert!(
        ps.iter().any(|p| p.message.contains(msg) && p.line == line),
        "expected a problem containing {msg:?} at line {line}, got:\n{ps:#?}\n---\n{}",
        numbered(text)
    );
    ps
}

/// Rejected with exactly one problem, containing `msg`, at `line`.
#[track_caller]
fn rejects_only(text: &str, msg: &str, line: usize) -> Problem {
    let ps = rejects(text, msg, line);
    assert_eq!(ps.len(), 1, "expected exactly one problem, got:\n{ps:#?}");
    ps.into_iter().next().unwrap()
}

fn numbered(text: &str) -> String {
    text.lines()
        .enumerate()
        .map(|(i, l)| format!("{:3} | {l}\n", i + 1))
        .collect()
}

// --- the binary ------------------------------------------------------------------------------

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory of its own for one test.
fn scratch_dir(tag: &str) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("config_rules-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn eniroute(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eniroute"))
        .args(args)
        .env_remove("ENIROUTE_CONFIG")
        .env("NO_COLOR", "1")
        .output()
        .expect("run eniroute")
}

fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// `eniroute -c <file> validate` on `text`: (exit code, stdout, stderr, the file's path).
/// Asserts that validation changed nothing in the file's directory.
fn validate_bin(tag: &str, text: &str) -> (i32, String, String, String) {
    let dir = scratch_dir(tag);
    let file = dir.join("eniroute.toml");
    std::fs::write(&file, text).unwrap();
    let before = listing(&dir);
    let path = file.to_str().unwrap().to_string();
    let out = eniroute(&["-c", &path, "validate"]);
    assert_eq!(
        listing(&dir),
        before,
        "validate changed files next to the config"
    );
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        path,
    )
}

/// The binary rejects `text` with exit 65, naming the file and `line` (and `msg`) on stderr,
/// printing nothing on stdout and changing nothing.
#[track_caller]
fn bin_rejects(tag: &str, text: &str, msg: &str, line: usize) -> String {
    let (code, stdout, stderr, path) = validate_bin(tag, text);
    assert_eq!(code, 65, "exit code; stderr:\n{stderr}");
    assert!(stdout.is_empty(), "stdout should be empty: {stdout}");
    assert!(
        stderr.contains(&format!("{path}:{line}:")),
        "stderr should name {path}:{line}:\n{stderr}"
    );
    assert!(
        stderr.contains(msg),
        "stderr should contain {msg:?}:\n{stderr}"
    );
    stderr
}

// ---------------------------------------------------------------------------------------------
// The base itself, the examples
// ---------------------------------------------------------------------------------------------

#[test]
fn base_config_is_valid() {
    let l = accepts(BASE);
    assert_eq!(l.config.enis.len(), 4);
    assert!(
        l.warnings.iter().all(|w| w.note),
        "no warnings expected in the base: {:?}",
        l.warnings
    );
}

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/examples");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    assert!(
        v.len() >= 5,
        "expected the example configs in {}",
        dir.display()
    );
    v
}

#[test]
fn every_example_loads() {
    for p in examples() {
        let text = std::fs::read_to_string(&p).unwrap();
        if let Err(e) = load_str(&text, &p.display().to_string()) {
            panic!("{} is rejected:\n{e}", p.display());
        }
    }
}

#[test]
fn every_example_validates_with_the_binary() {
    for p in examples() {
        let path = p.to_str().unwrap();
        let out = eniroute(&["-c", path, "validate"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
    }
}

// ---------------------------------------------------------------------------------------------
// Syntax, unknown keys, several problems, usage
// ---------------------------------------------------------------------------------------------

#[test]
fn syntax_error_shows_the_offending_line() {
    // An unterminated string.
    let text = edit(&[("gateway = \"192.168.2.253\"", "gateway = \"192.168.2.253")]);
    let ps = problems(&text);
    assert_eq!(ps.len(), 1, "{ps:#?}");
    let l = line_of(&text, "gateway = \"192.168.2.253");
    assert_eq!(ps[0].line, l, "{ps:#?}");
    // The problem carries the line it points at, to be drawn under it.
    let src = text.lines().nth(ps[0].line - 1).unwrap();
    assert_eq!(ps[0].excerpts[0].text(), src, "{ps:#?}");

    let text = edit(&[("name = \"eth2\"", "name = \"eth2\" \"eth9\"")]);
    let l = line_of(&text, "\"eth9\"");
    let ps = problems(&text);
    assert_eq!(ps.len(), 1, "{ps:#?}");
    let x = &ps[0].excerpts[0];
    assert_eq!(
        (ps[0].line, x.text()),
        (l, "name = \"eth2\" \"eth9\""),
        "{ps:#?}"
    );
    assert!(ps[0].column > 1);
}

#[test]
fn syntax_error_through_the_binary() {
    let text = edit(&[("protocol = 225", "protocol = = 225")]);
    let l = line_of(&text, "protocol = = 225");
    let stderr = bin_rejects("syntax", &text, "protocol = = 225", l);
    assert!(
        stderr.contains(&format!("{l} | protocol = = 225")),
        "{stderr}"
    );
}

#[test]
fn wrong_value_type_is_reported_at_its_line() {
    let text = edit(&[("mac = \"00:16:3e:00:00:03\"", "mac = 3")]);
    rejects_only(&text, "expected a string", line_of(&text, "mac = 3"));
    let text = edit(&[("primary = true", "primary = \"yes\"")]);
    rejects_only(
        &text,
        "expected a boolean",
        line_of(&text, "primary = \"yes\""),
    );
}

#[test]
fn unknown_keys_are_errors_at_their_line() {
    let cases: &[(&str, &str, &str)] = &[
        ("top level", "region = \"cn-beijing\"", "regoin = \"x\""),
        ("[routing]", "protocol = 225", "table = 5"),
        (
            "[[eni]]",
            "mac = \"00:16:3e:00:00:03\"",
            "gatway = \"192.168.2.1\"",
        ),
        ("[[eni.eip]]", "address = \"198.51.100.40\"", "netmask = 24"),
        ("[egress]", "strategy = \"failover\"", "mode = \"x\""),
        ("[[egress.via]]", "eni = \"eth0\"", "metric = 5"),
    ];
    for (table, anchor, bogus) in cases {
        let text = edit(&[(anchor, &format!("{anchor}\n{bogus}"))]);
        let key = bogus.split(' ').next().unwrap();
        let l = line_of(&text, bogus);
        let p = rejects_only(&text, &format!("unknown field `{key}`"), l);
        // The line, the caret under the key.
        let x = &p.excerpts[0];
        assert_eq!(x.text(), *bogus, "{table}: {p:?}");
        assert_eq!(&x.text()[x.mark.clone()], key, "{table}: {p:?}");
    }
}

#[test]
fn unknown_key_through_the_binary() {
    let text = edit(&[(
        "address = \"198.51.100.40\"",
        "address = \"198.51.100.40\"\nnetmask = 24",
    )]);
    bin_rejects(
        "unknown-key",
        &text,
        "unknown field `netmask`",
        line_of(&text, "netmask = 24"),
    );
    let text = edit(&[("[egress]", "[egress]\nstrategi = \"balance\"")]);
    bin_rejects(
        "unknown-key-egress",
        &text,
        "unknown field `strategi`",
        line_of(&text, "strategi"),
    );
}

/// Problems in different ENIs and in [egress] are all reported, each at its own line.
#[test]
fn several_problems_are_all_reported() {
    let text = edit(&[
        ("mac = \"00:16:3e:00:00:01\"", "mac = \"00:16:3e:00:00:zz\""),
        ("address = \"198.51.100.40\"", "address = \"10.1.2.3\""),
        ("mode = \"cut-through\"", "mode = \"cut-thru\""),
        ("eni = \"eth0\"", "eni = \"eth0\"\nweight = 2"),
    ]);
    let ps = problems(&text);
    let want = [
        ("is not a MAC address", line_of(&text, "00:16:3e:00:00:zz")),
        ("is not a public address", line_of(&text, "10.1.2.3")),
        (
            "is not one of nat, cut-through, multi-eip",
            line_of(&text, "cut-thru"),
        ),
        ("`weight` applies only to", line_of(&text, "weight = 2")),
    ];
    for (msg, line) in want {
        assert!(
            ps.iter().any(|p| p.message.contains(msg) && p.line == line),
            "missing {msg:?} at {line}: {ps:#?}"
        );
    }
    // Sorted by line.
    assert!(ps.windows(2).all(|w| w[0].line <= w[1].line), "{ps:#?}");

    let (code, _, stderr, path) = validate_bin("several", &text);
    assert_eq!(code, 65);
    for line in [
        line_of(&text, "00:16:3e:00:00:zz"),
        line_of(&text, "10.1.2.3"),
        line_of(&text, "weight = 2"),
    ] {
        assert!(stderr.contains(&format!("{path}:{line}:")), "{stderr}");
    }
}

/// Two bad numbers in [routing] are both reported.
#[test]
fn several_routing_problems_are_all_reported() {
    let text = edit(&[
        ("rule_priority = 20000", "rule_priority = 0"),
        ("protocol = 225", "protocol = 3"),
        ("rp_filter = \"loose\"", "rp_filter = \"lose\""),
    ]);
    rejects(
        &text,
        "routing.rule_priority = 0",
        line_of(&text, "rule_priority"),
    );
    rejects(
        &text,
        "routing.protocol = 3",
        line_of(&text, "protocol = 3"),
    );
    rejects(&text, "rp_filter = \"lose\"", line_of(&text, "rp_filter"));
}

#[test]
fn usage_errors_exit_64_and_help_exits_0() {
    let out = eniroute(&["--bogus"]);
    assert_eq!(out.status.code(), Some(64), "--bogus");
    assert!(!out.stderr.is_empty());
    let out = eniroute(&["-c", "/nonexistent/eniroute.toml", "validate", "extra"]);
    assert_eq!(out.status.code(), Some(64), "validate extra");
    let out = eniroute(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(64), "unknown verb");
    let out = eniroute(&["--help"]);
    assert_eq!(out.status.code(), Some(0), "--help");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("validate"), "{help}");
    let out = eniroute(&["validate", "--help"]);
    assert_eq!(out.status.code(), Some(0), "validate --help");
}

#[test]
fn missing_config_is_exit_66_with_where_a_config_comes_from() {
    for verb in ["validate", "plan", "render", "status"] {
        let out = eniroute(&["-c", "/nonexistent/eniroute.toml", verb]);
        assert_eq!(out.status.code(), Some(66), "{verb}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("/nonexistent/eniroute.toml"), "{err}");
        assert!(
            err.contains("-c FILE") && err.contains("eniroute discover"),
            "{err}"
        );
    }
}

#[test]
fn config_that_is_not_a_regular_file_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let big = dir.path().join("big.toml");
    std::fs::write(&big, "#".repeat((1 << 20) + 1)).unwrap();
    let binary = dir.path().join("binary.toml");
    std::fs::write(&binary, b"region = \"\xff\"\n").unwrap();
    for (path, code, says) in [
        (fifo.as_path(), 66, "a FIFO, not a regular file"),
        (dir.path(), 66, "a directory, not a regular file"),
        (Path::new("/dev/zero"), 66, "a device, not a regular file"),
        (big.as_path(), 66, "at most 1 MiB"),
        (binary.as_path(), 65, "not UTF-8"),
    ] {
        // A plain open blocks on a FIFO without a writer: refused at once means quickly.
        let started = std::time::Instant::now();
        let out = eniroute(&["-c", path.to_str().unwrap(), "validate"]);
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{}: {err}", path.display());
        assert!(err.contains(says), "{}: {err}", path.display());
    }
}

#[test]
fn empty_file_has_nothing_to_route() {
    let ps = problems("");
    assert!(ps[0].message.contains("no [[eni]]"), "{ps:?}");
}

// ---------------------------------------------------------------------------------------------
// [[eni]]: identity
// ---------------------------------------------------------------------------------------------

#[test]
fn mac_or_interface_required() {
    let text = edit(&[("mac = \"00:16:3e:00:00:03\"\n", "")]);
    rejects_only(
        &text,
        "needs `mac` or `interface`",
        line_of(&text, "name = \"eth2\""),
    );
    // Either alone is enough.
    accepts(&edit(&[(
        "mac = \"00:16:3e:00:00:03\"",
        "interface = \"eth2\"",
    )]));
}

#[test]
fn mac_or_interface_through_the_binary() {
    let text = edit(&[("mac = \"00:16:3e:00:00:03\"\n", "")]);
    bin_rejects(
        "mac-or-interface",
        &text,
        "needs `mac` or `interface`",
        line_of(&text, "name = \"eth2\""),
    );
}

#[test]
fn bad_mac() {
    for bad in ["00:16:3e:00:00", "00:16:3e:00:00:zz", "0016.3e00.0001x", ""] {
        let text = edit(&[("mac = \"00:16:3e:00:00:01\"", &format!("mac = \"{bad}\""))]);
        rejects_only(
            &text,
            "is not a MAC address",
            line_of(&text, &format!("mac = \"{bad}\"")),
        );
    }
}

#[test]
fn multicast_or_nil_mac() {
    for bad in [
        "01:00:5e:00:00:01",
        "ff:ff:ff:ff:ff:ff",
        "00:00:00:00:00:00",
    ] {
        let text = edit(&[("mac = \"00:16:3e:00:00:01\"", &format!("mac = \"{bad}\""))]);
        rejects_only(
            &text,
            "is not a unicast MAC address",
            line_of(&text, &format!("mac = \"{bad}\"")),
        );
    }
}

#[test]
fn bad_interface_name() {
    for bad in ["eth1:0", "a/b", "eth 1", "", "sixteen-chars-xx", ".."] {
        let text = edit(&[("interface = \"eth1\"", &format!("interface = \"{bad}\""))]);
        rejects_only(
            &text,
            "is not a valid Linux interface name",
            line_of(&text, &format!("interface = \"{bad}\"")),
        );
    }
    // 15 characters is the limit.
    accepts(&edit(&[(
        "interface = \"eth1\"",
        "interface = \"fifteen-chars-x\"",
    )]));
}

#[test]
fn bad_eni_name() {
    for bad in ["", "eth 0", "eth/0"] {
        let text = edit(&[("name = \"eth2\"", &format!("name = \"{bad}\""))]);
        rejects_only(
            &text,
            "name must be 1-64 characters",
            line_of(&text, &format!("name = \"{bad}\"")),
        );
    }
}

#[test]
fn duplicate_name() {
    let text = edit(&[("name = \"eth3\"", "name = \"eth2\"")]);
    let first = nth_line_of(&text, "name = \"eth2\"", 0);
    let second = nth_line_of(&text, "name = \"eth2\"", 1);
    let p = rejects_only(&text, "eni name \"eth2\" appears twice", second);
    assert!(p.message.contains(&format!("line {first}")), "{p:?}");
}

#[test]
fn duplicate_mac() {
    let text = edit(&[("mac = \"00:16:3e:00:00:03\"", "mac = \"00:16:3E:00:00:01\"")]);
    let p = rejects_only(
        &text,
        "mac 00:16:3e:00:00:01 appears twice",
        line_of(&text, "00:16:3E:00:00:01"),
    );
    assert!(p.message.contains("eth0"), "{p:?}");
}

#[test]
fn duplicate_interface() {
    let text = edit(&[(
        "mac = \"00:16:3e:00:00:03\"",
        "mac = \"00:16:3e:00:00:03\"\ninterface = \"eth1\"",
    )]);
    rejects_only(
        &text,
        "interface \"eth1\" appears twice",
        nth_line_of(&text, "interface = \"eth1\"", 1),
    );
}

#[test]
fn duplicate_private_ip_across_enis() {
    let text = edit(&[(
        "private_ips = [\"192.168.0.20\", \"192.168.0.21\"]",
        "private_ips = [\"192.168.0.10\", \"192.168.0.21\"]",
    )]);
    let p = rejects_only(
        &text,
        "private IP 192.168.0.10 appears twice",
        line_of(&text, "private_ips = [\"192.168.0.10\", "),
    );
    assert!(p.message.contains("eth0"), "{p:?}");
}

#[test]
fn duplicate_private_ip_in_one_eni() {
    let text = edit(&[(
        "private_ips = [\"192.168.0.20\", \"192.168.0.21\"]",
        "private_ips = [\"192.168.0.20\", \"192.168.0.21\", \"192.168.0.20\"]",
    )]);
    rejects_only(
        &text,
        "private IP 192.168.0.20 appears twice",
        line_of(&text, "private_ips = [\"192.168.0.20\", "),
    );
}

#[test]
fn duplicate_eip() {
    let text = edit(&[("address = \"198.51.100.40\"", "address = \"203.0.113.10\"")]);
    let p = rejects_only(
        &text,
        "EIP 203.0.113.10 appears twice",
        nth_line_of(&text, "address = \"203.0.113.10\"", 1),
    );
    assert!(p.message.contains("eth0"), "{p:?}");
}

#[test]
fn duplicate_eip_through_the_binary() {
    let text = edit(&[("address = \"198.51.100.40\"", "address = \"203.0.113.10\"")]);
    bin_rejects(
        "dup-eip",
        &text,
        "EIP 203.0.113.10 appears twice",
        nth_line_of(&text, "address = \"203.0.113.10\"", 1),
    );
}

#[test]
fn duplicate_ipv6_across_enis() {
    let text = edit(&[(
        "private_ips = [\"192.168.2.30\"]",
        "private_ips = [\"192.168.2.30\"]\nipv6 = [\"2001:db8:1::20\"]\nipv6_cidr = \"2001:db8:1::/64\" # eth2\nipv6_gateway = \"fe80::1\" # eth2",
    )]);
    rejects_only(
        &text,
        "IPv6 address 2001:db8:1::20 appears twice",
        nth_line_of(&text, "ipv6 = [\"2001:db8:1::20\"]", 1),
    );
}

#[test]
fn eip_equal_to_a_private_ip_elsewhere_is_a_duplicate() {
    // An address is an address: a cut-through EIP may not be another ENI's (public) private IP.
    let text = edit(&[
        ("cidr = \"192.168.2.0/24\"", "cidr = \"198.51.100.0/28\""),
        ("gateway = \"192.168.2.253\"", "gateway = \"198.51.100.14\""),
        (
            "private_ips = [\"192.168.2.30\"]",
            "private_ips = [\"198.51.100.5\"]",
        ),
        (
            "address = \"198.51.100.40\"\n",
            "address = \"203.0.113.40\"\n",
        ),
        ("address = \"198.51.100.130\"", "address = \"198.51.100.5\""),
        (
            "prefix = 25\ngateway = \"198.51.100.129\"",
            "gateway = \"198.51.100.1\"",
        ),
    ]);
    rejects_only(
        &text,
        "EIP 198.51.100.5 appears twice",
        line_of(&text, "address = \"198.51.100.5\""),
    );
}

// ---------------------------------------------------------------------------------------------
// [[eni]]: primary and modes
// ---------------------------------------------------------------------------------------------

#[test]
fn two_primaries() {
    let text = edit(&[(
        "interface = \"eth1\"",
        "interface = \"eth1\"\nprimary = true # eth1",
    )]);
    // (eth1, now primary, also holds two EIPs: a second problem.)
    let ps = rejects(
        &text,
        "at most one ENI may be primary; eth0, eth1 are",
        eni_header(&text, "eth1"),
    );
    assert_eq!(ps.len(), 2, "{ps:#?}");
}

#[test]
fn primary_with_cut_through_or_multi_eip() {
    for (eni, anchor) in [
        ("cut-through", "mode = \"cut-through\""),
        ("multi-eip", "mode = \"multi-eip\""),
    ] {
        let text = edit(&[
            ("primary = true\n", ""),
            (anchor, &format!("{anchor}\nprimary = true")),
        ]);
        rejects_only(
            &text,
            &format!("the primary ENI supports only nat mode ({eni} is for secondary ENIs)"),
            line_of(&text, "primary = true"),
        );
    }
    // A primary ENI in (default) nat mode, or no primary at all, is fine.
    accepts(&edit(&[("primary = true\n", "")]));
}

#[test]
fn primary_with_cut_through_through_the_binary() {
    let text = edit(&[
        ("primary = true\n", ""),
        (
            "mode = \"cut-through\"",
            "mode = \"cut-through\"\nprimary = true",
        ),
    ]);
    bin_rejects(
        "primary-cut-through",
        &text,
        "the primary ENI supports only nat mode",
        line_of(&text, "primary = true"),
    );
}

#[test]
fn bad_mode() {
    let text = edit(&[("mode = \"multi-eip\"", "mode = \"multi_eip\"")]);
    rejects(
        &text,
        "mode = \"multi_eip\" is not one of nat, cut-through, multi-eip",
        line_of(&text, "multi_eip"),
    );
}

#[test]
fn cidr_and_gateway_required_for_nat() {
    let text = edit(&[("cidr = \"192.168.0.0/24\"      # eth1\n", "")]);
    rejects_only(&text, "nat mode requires `cidr`", eni_header(&text, "eth1"));
    let text = edit(&[("gateway = \"192.168.0.253\"    # eth1\n", "")]);
    rejects_only(
        &text,
        "nat mode requires `gateway`",
        eni_header(&text, "eth1"),
    );
}

#[test]
fn cidr_and_gateway_required_for_multi_eip() {
    let text = edit(&[("cidr = \"192.168.2.0/24\"\n", "")]);
    rejects_only(
        &text,
        "multi-eip mode requires `cidr`",
        eni_header(&text, "eth2"),
    );
    let text = edit(&[("gateway = \"192.168.2.253\"\n", "")]);
    rejects(
        &text,
        "multi-eip mode requires `gateway`",
        eni_header(&text, "eth2"),
    );
}

#[test]
fn cidr_must_be_a_network() {
    let text = edit(&[("cidr = \"192.168.2.0/24\"", "cidr = \"192.168.2.0\"")]);
    rejects_only(
        &text,
        "is not an IPv4 CIDR",
        line_of(&text, "cidr = \"192.168.2.0\""),
    );
    let text = edit(&[("cidr = \"192.168.2.0/24\"", "cidr = \"192.168.2.7/24\"")]);
    rejects_only(&text, "has host bits set", line_of(&text, "192.168.2.7/24"));
}

/// Configs the kernel could never take (issue #10): a /0 vSwitch (its on-link route collides
/// with the uplink's default route), and an IPv6 gateway that is the ENI's own address.
#[test]
fn kernel_impossible_subnets_and_gateways_are_config_errors() {
    let text = edit(&[
        ("cidr = \"192.168.2.0/24\"", "cidr = \"0.0.0.0/0\""),
        (
            "gateway = \"192.168.2.253\"",
            "gateway = \"192.168.2.253\" # zero",
        ),
    ]);
    let p = problems(&text);
    assert!(
        p.iter().any(|p| p
            .message
            .contains("cidr 0.0.0.0/0: a subnet of the whole address space")
            && p.line == line_of(&text, "0.0.0.0/0")),
        "{p:?}"
    );
    let text = edit(&[("ipv6_cidr = \"2001:db8:1::/64\"", "ipv6_cidr = \"::/0\"")]);
    rejects(
        &text,
        "ipv6_cidr ::/0: a subnet of the whole address space",
        line_of(&text, "::/0"),
    );
    let text = edit(&[(
        "ipv6_gateway = \"fe80::1\"",
        "ipv6_gateway = \"2001:db8:1::20\"",
    )]);
    rejects_only(
        &text,
        "ipv6_gateway 2001:db8:1::20 is one of this ENI's own IPv6 addresses",
        line_of(&text, "ipv6_gateway = \"2001:db8:1::20\""),
    );
}

#[test]
fn addresses_must_parse() {
    let text = edit(&[(
        "private_ips = [\"192.168.2.30\"]",
        "private_ips = [\"192.168.2.300\"]",
    )]);
    rejects(
        &text,
        "\"192.168.2.300\" is not an IPv4 address",
        line_of(&text, "192.168.2.300"),
    );
    let text = edit(&[("gateway = \"192.168.2.253\"", "gateway = \"gw\"")]);
    rejects(
        &text,
        "\"gw\" is not an IPv4 address",
        line_of(&text, "\"gw\""),
    );
    let text = edit(&[("address = \"203.0.113.20\"", "address = \"203.0.113\"")]);
    rejects_only(
        &text,
        "\"203.0.113\" is not an IPv4 address",
        line_of(&text, "\"203.0.113\""),
    );
    let text = edit(&[(
        "ipv6 = [\"2001:db8:1::20\"]",
        "ipv6 = [\"2001:db8:1::20::1\"]",
    )]);
    rejects_only(
        &text,
        "is not an IPv6 address",
        line_of(&text, "2001:db8:1::20::1"),
    );
}

#[test]
fn private_ip_outside_cidr() {
    let text = edit(&[(
        "private_ips = [\"192.168.2.30\"]",
        "private_ips = [\"192.168.3.30\"]",
    )]);
    rejects_only(
        &text,
        "private IP 192.168.3.30 is not inside cidr 192.168.2.0/24",
        line_of(&text, "192.168.3.30"),
    );
}

#[test]
fn private_ip_network_broadcast_or_gateway() {
    for bad in ["192.168.2.0", "192.168.2.255"] {
        let text = edit(&[(
            "private_ips = [\"192.168.2.30\"]",
            &format!("private_ips = [\"{bad}\"]"),
        )]);
        rejects_only(
            &text,
            "network or broadcast address",
            line_of(&text, &format!("private_ips = [\"{bad}\"]")),
        );
    }
    let text = edit(&[(
        "private_ips = [\"192.168.2.30\"]",
        "private_ips = [\"192.168.2.253\"]",
    )]);
    rejects_only(
        &text,
        "is the gateway's address",
        line_of(&text, "private_ips = [\"192.168.2.253\"]"),
    );
}

#[test]
fn private_ip_outside_cidr_through_the_binary() {
    let text = edit(&[(
        "private_ips = [\"192.168.2.30\"]",
        "private_ips = [\"192.168.3.30\"]",
    )]);
    bin_rejects(
        "private-ip-outside",
        &text,
        "is not inside cidr 192.168.2.0/24",
        line_of(&text, "192.168.3.30"),
    );
}

#[test]
fn gateway_outside_cidr() {
    let text = edit(&[("gateway = \"192.168.2.253\"", "gateway = \"192.168.3.253\"")]);
    rejects_only(
        &text,
        "gateway 192.168.3.253 is not inside cidr 192.168.2.0/24",
        line_of(&text, "192.168.3.253"),
    );
}

#[test]
fn nat_and_multi_eip_need_a_private_ip() {
    let text = edit(&[("private_ips = [\"192.168.2.30\"]", "private_ips = []")]);
    rejects_only(
        &text,
        "multi-eip mode requires at least one private IP",
        eni_header(&text, "eth2"),
    );
    let text = edit(&[("private_ips = [\"192.168.0.10\"]\n", "")]);
    rejects_only(
        &text,
        "nat mode requires at least one private IP",
        eni_header(&text, "eth0"),
    );
}

#[test]
fn cut_through_lists_at_most_one_private_ip() {
    accepts(&edit(&[(
        "mode = \"cut-through\"",
        "mode = \"cut-through\"\nprivate_ips = [\"192.168.3.5\"]",
    )]));
    let text = edit(&[(
        "mode = \"cut-through\"",
        "mode = \"cut-through\"\nprivate_ips = [\"192.168.3.5\", \"192.168.3.6\"]",
    )]);
    rejects_only(
        &text,
        "a cut-through ENI lists at most its one primary private IP",
        line_of(&text, "192.168.3.6"),
    );
}

#[test]
fn cut_through_exactly_one_eip() {
    let text = edit(&[(
        "[[eni.eip]]\naddress = \"198.51.100.130\"\nprefix = 25\ngateway = \"198.51.100.129\"\n",
        "",
    )]);
    rejects_only(
        &text,
        "a cut-through ENI holds exactly one EIP (it has 0)",
        eni_header(&text, "eth3"),
    );
    let text = edit(&[(
        "gateway = \"198.51.100.129\"\n",
        "gateway = \"198.51.100.129\"\n\n[[eni.eip]]\naddress = \"198.51.100.131\"\nprefix = 25 # 2\ngateway = \"198.51.100.129\" # 2\n",
    )]);
    rejects_only(
        &text,
        "a cut-through ENI holds exactly one EIP (it has 2)",
        eni_header(&text, "eth3"),
    );
}

#[test]
fn cut_through_eip_needs_gateway() {
    let text = edit(&[("prefix = 25\ngateway = \"198.51.100.129\"\n", "")]);
    rejects_only(
        &text,
        "a cut-through EIP requires `gateway`",
        eip_header(&text, "198.51.100.130"),
    );
}

#[test]
fn eip_gateway_inside_its_prefix() {
    let text = edit(&[("gateway = \"198.51.100.129\"", "gateway = \"198.51.100.1\"")]);
    rejects_only(
        &text,
        "gateway 198.51.100.1 is not inside 198.51.100.128/25",
        line_of(&text, "gateway = \"198.51.100.1\""),
    );
    let text = edit(&[(
        "gateway = \"198.51.100.129\"",
        "gateway = \"198.51.100.130\"",
    )]);
    rejects_only(
        &text,
        "the gateway is the EIP itself",
        line_of(&text, "gateway = \"198.51.100.130\""),
    );
}

#[test]
fn eip_prefix_in_range() {
    for bad in [0, 33, -1] {
        let text = edit(&[("prefix = 25", &format!("prefix = {bad}"))]);
        rejects_only(
            &text,
            &format!("eip.prefix = {bad} is out of range (1..=32)"),
            line_of(&text, &format!("prefix = {bad}")),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// prefixes
// ---------------------------------------------------------------------------------------------

#[test]
fn prefixes_not_in_cut_through() {
    let text = edit(&[(
        "mode = \"cut-through\"",
        "mode = \"cut-through\"\nprefixes = [\"192.168.3.16/28\"]",
    )]);
    rejects_only(
        &text,
        "`prefixes` is not allowed",
        line_of(&text, "192.168.3.16/28"),
    );
}

#[test]
fn prefix_outside_cidr() {
    for bad in ["192.168.5.48/28", "192.168.0.0/23"] {
        let text = edit(&[(
            "prefixes = [\"192.168.0.48/28\"]",
            &format!("prefixes = [\"{bad}\"]"),
        )]);
        rejects(
            &text,
            &format!("prefix {bad} is not inside cidr 192.168.0.0/24"),
            line_of(&text, bad),
        );
    }
}

#[test]
fn prefix_must_be_a_network() {
    let text = edit(&[(
        "prefixes = [\"192.168.0.48/28\"]",
        "prefixes = [\"192.168.0.49/28\"]",
    )]);
    rejects_only(
        &text,
        "has host bits set",
        line_of(&text, "192.168.0.49/28"),
    );
    let text = edit(&[(
        "prefixes = [\"192.168.0.48/28\"]",
        "prefixes = [\"192.168.0.48\"]",
    )]);
    rejects_only(
        &text,
        "is not an IPv4 prefix",
        line_of(&text, "\"192.168.0.48\""),
    );
}

#[test]
fn prefix_overlapping_own_private_ip_or_gateway_or_prefix() {
    let text = edit(&[(
        "prefixes = [\"192.168.0.48/28\"]",
        "prefixes = [\"192.168.0.16/28\"]",
    )]);
    rejects(
        &text,
        "prefix 192.168.0.16/28 overlaps private IP 192.168.0.2",
        line_of(&text, "192.168.0.16/28"),
    );
    let text = edit(&[(
        "prefixes = [\"192.168.0.48/28\"]",
        "prefixes = [\"192.168.0.248/29\"]",
    )]);
    rejects_only(
        &text,
        "prefix 192.168.0.248/29 contains the gateway 192.168.0.253",
        line_of(&text, "192.168.0.248/29"),
    );
    let text = edit(&[(
        "prefixes = [\"192.168.0.48/28\"]",
        "prefixes = [\"192.168.0.48/28\", \"192.168.0.56/29\"]",
    )]);
    rejects_only(
        &text,
        "prefix 192.168.0.56/29 overlaps prefix 192.168.0.48/28",
        line_of(&text, "192.168.0.56/29"),
    );
}

#[test]
fn prefix_overlapping_across_enis() {
    let text = edit(&[(
        "private_ips = [\"192.168.0.10\"]",
        "private_ips = [\"192.168.0.10\"]\nprefixes = [\"192.168.0.56/29\"]",
    )]);
    let ps = rejects(
        &text,
        "eni \"eth0\": prefix 192.168.0.56/29 overlaps prefix 192.168.0.48/28 of eni \"eth1\"",
        line_of(&text, "192.168.0.56/29"),
    );
    assert!(
        ps.iter().all(|p| p.message.contains("overlaps prefix")),
        "{ps:#?}"
    );
    // A prefix of one ENI may not contain another ENI's private IP either.
    let text = edit(&[(
        "prefixes = [\"192.168.0.48/28\"]",
        "prefixes = [\"192.168.0.8/29\"]",
    )]);
    rejects_only(
        &text,
        "eni \"eth1\": prefix 192.168.0.8/29 contains 192.168.0.10 of eni \"eth0\"",
        line_of(&text, "192.168.0.8/29"),
    );
}

/// A multi-eip ENI on a vSwitch with a public CIDR: its prefix contains its own EIP, which
/// leaves through a different uplink (the EIP's own gateway). Both `from` rules would sit at
/// the same priority, so which uplink the EIP's replies take depends on insertion order.
#[test]
fn prefix_containing_own_eip_is_rejected() {
    let text = edit(&[
        ("cidr = \"192.168.2.0/24\"", "cidr = \"198.51.100.0/26\""),
        ("gateway = \"192.168.2.253\"", "gateway = \"198.51.100.62\""),
        (
            "private_ips = [\"192.168.2.30\"]",
            "private_ips = [\"198.51.100.30\"]\nprefixes = [\"198.51.100.32/28\"]",
        ),
        (
            "address = \"198.51.100.40\"\n",
            "address = \"198.51.100.40\"\ngateway = \"198.51.100.1\" # own\n",
        ),
    ]);
    rejects(
        &text,
        "198.51.100.32/28",
        line_of(&text, "prefixes = [\"198.51.100.32/28\"]"),
    );
}

// ---------------------------------------------------------------------------------------------
// [[eni.eip]]
// ---------------------------------------------------------------------------------------------

#[test]
fn eip_must_be_public() {
    let cases = [
        ("10.1.2.3", "RFC 1918"),
        ("172.16.0.1", "RFC 1918"),
        ("192.168.9.9", "RFC 1918"),
        ("127.0.0.2", "loopback"),
        ("169.254.1.1", "link-local"),
        ("224.0.0.5", "multicast"),
        ("239.1.2.3", "multicast"),
        ("100.64.1.1", "shared address space"),
        ("100.127.255.254", "shared address space"),
        ("0.1.2.3", "0.0.0.0/8"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "broadcast"),
    ];
    for (bad, why) in cases {
        let text = edit(&[(
            "address = \"203.0.113.20\"",
            &format!("address = \"{bad}\""),
        )]);
        let p = rejects_only(
            &text,
            &format!("EIP {bad} is not a public address"),
            line_of(&text, &format!("address = \"{bad}\"")),
        );
        assert!(p.message.contains(why), "{bad}: {p:?}");
    }
    // Neighbours of the reserved ranges are public.
    for ok in [
        "100.128.0.1",
        "100.63.255.254",
        "172.32.0.1",
        "169.253.1.1",
        "11.0.0.1",
    ] {
        accepts(&edit(&[(
            "address = \"203.0.113.20\"",
            &format!("address = \"{ok}\""),
        )]));
    }
}

#[test]
fn eip_not_public_through_the_binary() {
    let text = edit(&[("address = \"198.51.100.40\"", "address = \"100.64.1.1\"")]);
    bin_rejects(
        "eip-not-public",
        &text,
        "EIP 100.64.1.1 is not a public address",
        line_of(&text, "100.64.1.1"),
    );
}

#[test]
fn nat_primary_eni_at_most_one_eip() {
    let text = edit(&[
        (
            "private_ips = [\"192.168.0.10\"]",
            "private_ips = [\"192.168.0.10\", \"192.168.0.11\"]",
        ),
        (
            "address = \"203.0.113.10\"\n",
            "address = \"203.0.113.10\"\n\n[[eni.eip]]\naddress = \"203.0.113.11\"\nprivate_ip = \"192.168.0.11\"\n",
        ),
    ]);
    rejects_only(
        &text,
        "the primary ENI holds at most one EIP",
        eip_header(&text, "203.0.113.11"),
    );
    // The same ENI as a secondary ENI may hold both.
    accepts(&edit_text(&text, &[("primary = true\n", "")]));
}

#[test]
fn nat_at_most_one_eip_per_private_ip() {
    let text = edit(&[("private_ip = \"192.168.0.21\"\n", "")]);
    rejects_only(
        &text,
        "nat mode maps at most one EIP per private IP; 203.0.113.20 and 203.0.113.21 both map to 192.168.0.20",
        eip_header(&text, "203.0.113.21"),
    );
    let text = edit(&[(
        "private_ip = \"192.168.0.21\"",
        "private_ip = \"192.168.0.20\"",
    )]);
    rejects_only(
        &text,
        "nat mode maps at most one EIP per private IP; 203.0.113.20 and 203.0.113.21 both map to 192.168.0.20",
        eip_header(&text, "203.0.113.21"),
    );
}

#[test]
fn nat_one_eip_per_private_ip_through_the_binary() {
    let text = edit(&[("private_ip = \"192.168.0.21\"\n", "")]);
    bin_rejects(
        "nat-one-eip",
        &text,
        "nat mode maps at most one EIP per private IP; 203.0.113.20 and 203.0.113.21 both map to 192.168.0.20",
        eip_header(&text, "203.0.113.21"),
    );
}

/// With an earlier EIP of the ENI invalid, the "both map to" problem must still point at the
/// second EIP that maps to the private IP.
#[test]
fn nat_one_eip_per_private_ip_line_after_an_invalid_eip() {
    let text = edit(&[
        (
            "address = \"203.0.113.20\"\n",
            "address = \"10.9.9.9\"\n\n[[eni.eip]]\naddress = \"203.0.113.20\"\n",
        ),
        ("private_ip = \"192.168.0.21\"\n", ""),
    ]);
    rejects(&text, "is not a public address", line_of(&text, "10.9.9.9"));
    rejects(
        &text,
        "203.0.113.20 and 203.0.113.21 both map to 192.168.0.20",
        eip_header(&text, "203.0.113.21"),
    );
}

#[test]
fn nat_private_ip_must_be_the_enis() {
    let text = edit(&[(
        "private_ip = \"192.168.0.21\"",
        "private_ip = \"192.168.0.10\"",
    )]);
    rejects_only(
        &text,
        "private_ip 192.168.0.10 is not one of this ENI's private_ips",
        line_of(&text, "private_ip = \"192.168.0.10\""),
    );
}

#[test]
fn private_ip_not_allowed_outside_nat() {
    let text = edit(&[(
        "address = \"198.51.100.40\"\n",
        "address = \"198.51.100.40\"\nprivate_ip = \"192.168.2.30\"\n",
    )]);
    rejects_only(
        &text,
        "EIP 198.51.100.40: `private_ip` applies only to nat mode",
        line_of(&text, "private_ip = \"192.168.2.30\""),
    );
    let text = edit(&[(
        "address = \"198.51.100.130\"\n",
        "address = \"198.51.100.130\"\nprivate_ip = \"192.168.3.5\"\n",
    )]);
    rejects_only(
        &text,
        "`private_ip` applies only to nat mode",
        line_of(&text, "private_ip = \"192.168.3.5\""),
    );
}

#[test]
fn prefix_and_gateway_not_allowed_in_nat_eip() {
    let text = edit(&[(
        "address = \"203.0.113.20\"\n",
        "address = \"203.0.113.20\"\nprefix = 24 # nat\n",
    )]);
    rejects_only(
        &text,
        "EIP 203.0.113.20: `prefix` applies only to cut-through and multi-eip",
        line_of(&text, "prefix = 24 # nat"),
    );
    let text = edit(&[(
        "address = \"203.0.113.20\"\n",
        "address = \"203.0.113.20\"\ngateway = \"203.0.113.1\" # nat\n",
    )]);
    rejects_only(
        &text,
        "EIP 203.0.113.20: `gateway` applies only to cut-through and multi-eip",
        line_of(&text, "gateway = \"203.0.113.1\""),
    );
}

/// The multi-eip ENI eth2 with `n` EIPs (the first is 198.51.100.40) and optional extra lines.
fn multi_eip(n: usize, extra: &str) -> String {
    let mut eips = String::new();
    for i in 0..n {
        eips.push_str(&format!(
            "\n[[eni.eip]]\naddress = \"198.51.100.{}\"\n",
            40 + i
        ));
    }
    edit(&[
        (
            "private_ips = [\"192.168.2.30\"]\n",
            &format!("private_ips = [\"192.168.2.30\"]\n{extra}"),
        ),
        (
            "\n[[eni.eip]]\naddress = \"198.51.100.40\"\n\n[[eni.eip]]\naddress = \"198.51.100.50\"\nprefix = 28\ngateway = \"198.51.100.49\"\n",
            &eips,
        ),
    ])
}

#[test]
fn multi_eip_at_most_ten_eips() {
    accepts(&multi_eip(10, ""));
    let text = multi_eip(11, "");
    rejects_only(
        &text,
        "a multi-eip ENI holds at most 10 EIPs",
        eip_header(&text, "198.51.100.50"),
    );
}

#[test]
fn eip_quota_raises_the_limit() {
    accepts(&multi_eip(11, "eip_quota = 11\n"));
    accepts(&multi_eip(20, "eip_quota = 20\n"));
    let text = multi_eip(12, "eip_quota = 11\n");
    rejects_only(
        &text,
        "a multi-eip ENI holds at most 11 EIPs",
        eip_header(&text, "198.51.100.51"),
    );
    let text = multi_eip(1, "eip_quota = 0\n");
    rejects_only(
        &text,
        "eip_quota = 0 is out of range",
        line_of(&text, "eip_quota"),
    );
}

#[test]
fn eip_quota_outside_multi_eip() {
    let text = edit(&[(
        "private_ips = [\"192.168.0.10\"]",
        "private_ips = [\"192.168.0.10\"]\neip_quota = 20",
    )]);
    rejects_only(
        &text,
        "`eip_quota` applies only to multi-eip mode",
        line_of(&text, "eip_quota = 20"),
    );
}

// ---------------------------------------------------------------------------------------------
// IPv6
// ---------------------------------------------------------------------------------------------

#[test]
fn ipv6_needs_cidr_and_gateway() {
    let text = edit(&[("ipv6_cidr = \"2001:db8:1::/64\"\n", "")]);
    rejects_only(
        &text,
        "`ipv6_cidr` is required when `ipv6` is set",
        eni_header(&text, "eth1"),
    );
    let text = edit(&[("ipv6_gateway = \"fe80::1\"\n", "")]);
    rejects_only(
        &text,
        "`ipv6_gateway` is required when `ipv6` is set",
        eni_header(&text, "eth1"),
    );
}

#[test]
fn ipv6_outside_ipv6_cidr() {
    let text = edit(&[("ipv6 = [\"2001:db8:1::20\"]", "ipv6 = [\"2001:db8:2::20\"]")]);
    rejects_only(
        &text,
        "IPv6 address 2001:db8:2::20 is not inside ipv6_cidr 2001:db8:1::/64",
        line_of(&text, "2001:db8:2::20"),
    );
}

#[test]
fn ipv6_cidr_or_gateway_without_addresses() {
    let text = edit(&[("ipv6 = [\"2001:db8:1::20\"]\n", "")]);
    rejects_only(
        &text,
        "need IPv6 addresses in `ipv6`",
        line_of(&text, "ipv6_cidr"),
    );
}

#[test]
fn ipv6_gateway_link_local_or_inside_cidr() {
    accepts(&edit(&[(
        "ipv6_gateway = \"fe80::1\"",
        "ipv6_gateway = \"2001:db8:1::1\"",
    )]));
    let text = edit(&[(
        "ipv6_gateway = \"fe80::1\"",
        "ipv6_gateway = \"2001:db8:9::1\"",
    )]);
    rejects_only(
        &text,
        "ipv6_gateway 2001:db8:9::1 is neither link-local nor inside ipv6_cidr",
        line_of(&text, "2001:db8:9::1"),
    );
}

// ---------------------------------------------------------------------------------------------
// [egress]
// ---------------------------------------------------------------------------------------------

#[test]
fn egress_via_unknown_eni() {
    let text = edit(&[("eni = \"eth0\"", "eni = \"eth9\"")]);
    rejects_only(
        &text,
        "via eni \"eth9\" is not a declared ENI",
        line_of(&text, "eni = \"eth9\""),
    );
}

#[test]
fn egress_via_unknown_eni_through_the_binary() {
    let text = edit(&[("eni = \"eth0\"", "eni = \"eth9\"")]);
    bin_rejects(
        "egress-unknown",
        &text,
        "via eni \"eth9\" is not a declared ENI",
        line_of(&text, "eni = \"eth9\""),
    );
}

#[test]
fn egress_source_must_belong_to_the_eni() {
    // eth0's private IP via eth1; a cut-through ENI's private IP (not in the OS); an IPv6
    // address of another ENI.
    let text = edit(&[("source = \"203.0.113.21\"", "source = \"192.168.0.10\"")]);
    rejects_only(
        &text,
        "source 192.168.0.10 is not a usable address of eni \"eth1\"",
        line_of(&text, "source = \"192.168.0.10\""),
    );
    let text = edit(&[
        (
            "mode = \"cut-through\"",
            "mode = \"cut-through\"\nprivate_ips = [\"192.168.3.5\"]",
        ),
        ("eni = \"eth0\"", "eni = \"eth3\"\nsource = \"192.168.3.5\""),
    ]);
    rejects_only(
        &text,
        "source 192.168.3.5 is not a usable address of eni \"eth3\"",
        line_of(&text, "source = \"192.168.3.5\""),
    );
    let text = edit(&[(
        "eni = \"eth0\"",
        "eni = \"eth0\"\nsource = \"2001:db8:1::20\"",
    )]);
    rejects_only(
        &text,
        "source 2001:db8:1::20 is not a usable address of eni \"eth0\"",
        line_of(&text, "source = \"2001:db8:1::20\""),
    );
    // Its own private IP, nat EIP, IPv6 address and a cut-through EIP are all fine.
    for ok in ["192.168.0.20", "203.0.113.20", "2001:db8:1::20"] {
        accepts(&edit(&[(
            "source = \"203.0.113.21\"",
            &format!("source = \"{ok}\""),
        )]));
    }
    accepts(&edit(&[(
        "eni = \"eth0\"",
        "eni = \"eth3\"\nsource = \"198.51.100.130\"",
    )]));
    let text = edit(&[("source = \"203.0.113.21\"", "source = \"nope\"")]);
    rejects_only(&text, "is not an IP address", line_of(&text, "\"nope\""));
}

#[test]
fn egress_source_with_balance() {
    let text = edit(&[("strategy = \"failover\"", "strategy = \"balance\"")]);
    rejects_only(
        &text,
        "via \"eth1\": `source` applies only to strategy = \"failover\"",
        line_of(&text, "source = "),
    );
}

#[test]
fn egress_weight_with_failover() {
    let text = edit(&[("eni = \"eth0\"", "eni = \"eth0\"\nweight = 2")]);
    rejects_only(
        &text,
        "via \"eth0\": `weight` applies only to strategy = \"balance\"",
        line_of(&text, "weight = 2"),
    );
}

/// BASE with balance egress over eth0 and eth1 (no source).
fn balance(eth0_weight: &str) -> String {
    edit(&[
        ("strategy = \"failover\"", "strategy = \"balance\""),
        ("source = \"203.0.113.21\"\n", ""),
        ("eni = \"eth0\"", &format!("eni = \"eth0\"\n{eth0_weight}")),
    ])
}

#[test]
fn egress_weight_in_range() {
    accepts(&balance("weight = 1"));
    accepts(&balance("weight = 256"));
    for bad in [0, 257, -1, 65536] {
        let text = balance(&format!("weight = {bad}"));
        rejects_only(
            &text,
            &format!("via.weight = {bad} is out of range (1..=256)"),
            line_of(&text, &format!("weight = {bad}")),
        );
    }
}

#[test]
fn egress_weight_through_the_binary() {
    let text = balance("weight = 257");
    bin_rejects(
        "weight",
        &text,
        "via.weight = 257 is out of range (1..=256)",
        line_of(&text, "weight = 257"),
    );
}

#[test]
fn egress_hash_with_failover() {
    let text = edit(&[(
        "strategy = \"failover\"",
        "strategy = \"failover\"\nhash = \"l3\"",
    )]);
    rejects_only(
        &text,
        "`hash` applies only to strategy = \"balance\"",
        line_of(&text, "hash = \"l3\""),
    );
    accepts(&balance("").replace(
        "strategy = \"balance\"",
        "strategy = \"balance\"\nhash = \"l3\"",
    ));
    let text = balance("").replace(
        "strategy = \"balance\"",
        "strategy = \"balance\"\nhash = \"l7\"",
    );
    rejects_only(
        &text,
        "hash = \"l7\" is not one of l3, l4",
        line_of(&text, "l7"),
    );
}

#[test]
fn egress_bad_strategy() {
    let text = edit(&[("strategy = \"failover\"", "strategy = \"ecmp\"")]);
    rejects(
        &text,
        "strategy = \"ecmp\" is not one of failover, balance",
        line_of(&text, "ecmp"),
    );
}

#[test]
fn egress_empty_via_list() {
    let text = edit(&[(
        "\n[[egress.via]]\neni = \"eth1\"\nsource = \"203.0.113.21\"\n\n[[egress.via]]\neni = \"eth0\"\n",
        "",
    )]);
    rejects_only(
        &text,
        "at least one [[egress.via]] is required",
        line_of(&text, "[egress]"),
    );
}

#[test]
fn egress_duplicate_via() {
    let text = edit(&[("eni = \"eth0\"", "eni = \"eth1\"")]);
    let first = nth_line_of(&text, "eni = \"eth1\"", 0);
    let p = rejects_only(
        &text,
        "eni \"eth1\" is listed twice",
        nth_line_of(&text, "eni = \"eth1\"", 1),
    );
    assert!(p.message.contains(&format!("line {first}")), "{p:?}");
}

// ---------------------------------------------------------------------------------------------
// [routing]: tables, priorities, protocol
// ---------------------------------------------------------------------------------------------

#[test]
fn table_base_making_a_reserved_table() {
    // ENI tables are table_base + k + 1 (+ 100 per extra uplink); the egress table is table_base.
    let cases: &[(u32, &str)] = &[
        (252, "eni \"eth0\"'s uplink table 0 would be table 253"),
        (251, "eni \"eth1\"'s uplink table 0 would be table 253"),
        (250, "eni \"eth3\"'s uplink table 0 would be table 254"),
        (253, "the egress table would be table 253"),
        (254, "the egress table would be table 254"),
        (255, "the egress table would be table 255"),
        // eth2's second uplink (the EIP with its own gateway): 150 + 3 + 100.
        (150, "eni \"eth2\"'s uplink table 1 would be table 253"),
    ];
    for (base, msg) in cases {
        let text = edit(&[("table_base = 20000", &format!("table_base = {base}"))]);
        let ps = rejects(&text, msg, line_of(&text, "table_base"));
        assert!(
            ps.iter().all(|p| p.message.contains("reserved")),
            "{base}: {ps:#?}"
        );
    }
    // Just clear of them.
    for base in [1_u32, 256, 149, 153, u32::MAX - 103] {
        accepts(&edit(&[(
            "table_base = 20000",
            &format!("table_base = {base}"),
        )]));
    }
}

#[test]
fn table_base_zero_or_overflowing() {
    let text = edit(&[("table_base = 20000", "table_base = 0")]);
    rejects_only(
        &text,
        "table_base = 0 is out of range",
        line_of(&text, "table_base"),
    );
    let text = edit(&[("table_base = 20000", "table_base = -1")]);
    rejects_only(
        &text,
        "table_base = -1 is out of range",
        line_of(&text, "table_base"),
    );
    let text = edit(&[("table_base = 20000", "table_base = 4294967296")]);
    rejects_only(&text, "out of range", line_of(&text, "table_base"));
    // Every ENI table overflows.
    let text = edit(&[("table_base = 20000", "table_base = 4294967295")]);
    let ps = rejects(
        &text,
        "eni \"eth0\"'s uplink table 0 does not fit a 32-bit table id",
        line_of(&text, "table_base"),
    );
    assert!(ps.len() >= 4, "{ps:#?}");
    // Only eth2's second uplink overflows.
    let text = edit(&[("table_base = 20000", "table_base = 4294967193")]);
    rejects_only(
        &text,
        "eni \"eth2\"'s uplink table 1 does not fit a 32-bit table id",
        line_of(&text, "table_base"),
    );
}

#[test]
fn table_base_through_the_binary() {
    let text = edit(&[("table_base = 20000", "table_base = 252")]);
    bin_rejects(
        "table-base",
        &text,
        "would be table 253, which is reserved",
        line_of(&text, "table_base"),
    );
}

#[test]
fn rule_priority_range() {
    // P + 300 must stay below the kernel's `lookup main` at 32766.
    accepts(&edit(&[("rule_priority = 20000", "rule_priority = 32465")]));
    accepts(&edit(&[("rule_priority = 20000", "rule_priority = 1")]));
    for bad in [32466_i64, 32766, 0, -5, 1 << 40] {
        let text = edit(&[("rule_priority = 20000", &format!("rule_priority = {bad}"))]);
        rejects_only(
            &text,
            &format!("routing.rule_priority = {bad} is out of range (1..=32465)"),
            line_of(&text, "rule_priority"),
        );
    }
}

#[test]
fn protocol_range() {
    accepts(&edit(&[("protocol = 225", "protocol = 5")]));
    accepts(&edit(&[("protocol = 225", "protocol = 255")]));
    for bad in [0, 1, 2, 3, 4, 256, -1] {
        let text = edit(&[("protocol = 225", &format!("protocol = {bad}"))]);
        rejects_only(
            &text,
            &format!("routing.protocol = {bad} is out of range (5..=255)"),
            line_of(&text, "protocol"),
        );
    }
}

#[test]
fn protocol_through_the_binary() {
    let text = edit(&[("protocol = 225", "protocol = 256")]);
    bin_rejects(
        "protocol",
        &text,
        "routing.protocol = 256 is out of range",
        line_of(&text, "protocol"),
    );
}

#[test]
fn bad_rp_filter() {
    let text = edit(&[("rp_filter = \"loose\"", "rp_filter = \"medium\"")]);
    rejects_only(
        &text,
        "rp_filter = \"medium\" is not one of loose, strict, off, keep",
        line_of(&text, "rp_filter"),
    );
}

#[test]
fn too_many_enis() {
    let mut text = String::new();
    for i in 0..100 {
        text.push_str(&format!(
            "[[eni]]\nname = \"e{i}\"\ninterface = \"e{i}\"\ncidr = \"192.168.{i}.0/24\"\ngateway = \"192.168.{i}.253\"\nprivate_ips = [\"192.168.{i}.10\"]\n\n"
        ));
    }
    rejects(&text, "at most 99 ENIs", eni_header(&text, "e99"));
    let upto99 = &text[..text.find("[[eni]]\nname = \"e99\"").unwrap()];
    accepts(upto99);
}

// ---------------------------------------------------------------------------------------------
// Warnings and notes
// ---------------------------------------------------------------------------------------------

#[test]
fn multi_eip_outside_its_regions_warns_but_validates() {
    for region in [
        "cn-beijing",
        "cn-zhangjiakou",
        "ap-southeast-1",
        "eu-central-1",
        "ap-south-1",
    ] {
        let l = accepts(&edit(&[(
            "region = \"cn-beijing\"",
            &format!("region = \"{region}\""),
        )]));
        assert!(
            l.warnings.iter().all(|w| w.note),
            "{region}: no warning expected: {:?}",
            l.warnings
        );
    }
    let text = edit(&[("region = \"cn-beijing\"", "region = \"cn-hangzhou\"")]);
    let l = accepts(&text);
    let w: Vec<_> = l.warnings.iter().filter(|w| !w.note).collect();
    assert_eq!(w.len(), 1, "{:?}", l.warnings);
    assert!(
        w[0].message.contains("eth2")
            && w[0].message.contains("multi-eip mode was offered only in")
            && w[0].message.contains("cn-hangzhou"),
        "{w:?}"
    );
    assert_eq!(w[0].line, 1);
    // No region at all: warned too, at the ENI.
    let text = edit(&[("region = \"cn-beijing\"\n", "")]);
    let l = accepts(&text);
    let w: Vec<_> = l.warnings.iter().filter(|w| !w.note).collect();
    assert_eq!(w.len(), 1, "{:?}", l.warnings);
    assert_eq!(w[0].line, eni_header(&text, "eth2"));

    // The binary: exit 0, the warning on stderr with the file and line.
    let text = edit(&[("region = \"cn-beijing\"", "region = \"cn-hangzhou\"")]);
    let (code, stdout, stderr, path) = validate_bin("region", &text);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("valid"), "{stdout}");
    assert!(
        stderr.contains("warning: eni \"eth2\": multi-eip mode")
            && stderr.contains(&format!(" --> {path}:1:")),
        "{stderr}"
    );
}

#[test]
fn nat_alg_note_for_secondary_nat_enis_with_eips_from_validate_only() {
    let l = accepts(BASE);
    let notes: Vec<_> = l.warnings.iter().filter(|w| w.note).collect();
    // eth0 (primary) and eth1 are nat with EIPs; eth2/eth3 are not nat. The primary supports
    // only nat, so advice to use another mode would be advice it cannot follow: no note.
    assert_eq!(notes.len(), 1, "{notes:?}");
    let w = notes[0];
    assert!(
        w.message.contains("eth1") && !w.message.contains("eth0"),
        "{w:?}"
    );
    assert!(
        w.message.contains("SIP") && w.message.contains("H.323"),
        "{w:?}"
    );
    assert_eq!(w.line, eni_header(BASE, "eth1"));

    let (code, _, stderr, path) = validate_bin("alg", BASE);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stderr.matches("ALG").count(), 1, "{stderr}");
    assert!(
        stderr.contains("note: eni \"eth1\": nat mode has no ALG")
            && stderr.contains(&format!(" --> {path}:{}:1", eni_header(BASE, "eth1"))),
        "{stderr}"
    );
    // plan (and apply) never print it: it was said by validate. (The config loads, then the
    // namespace is not found: exit 69.)
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), BASE).unwrap();
    for verb in ["plan", "apply"] {
        let out = eniroute(&[
            "-c",
            file.path().to_str().unwrap(),
            "--netns",
            "eniroute-no-such-ns",
            verb,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(69), "{verb}: {stderr}");
        assert!(!stderr.contains("ALG"), "{verb}: {stderr}");
    }
}

/// The messages that the validator builds from `Mode` capabilities, in full: they must read
/// exactly as they did when each mode was spelled out by hand.
#[test]
fn messages_built_from_mode_capabilities_are_exact() {
    #[track_caller]
    fn exact(text: &str, msg: &str) {
        let ps = problems(text);
        assert!(
            ps.iter().any(|p| p.message == msg),
            "expected exactly {msg:?}, got:\n{ps:#?}"
        );
    }
    exact(
        &edit(&[("mode = \"multi-eip\"", "mode = \"multi-eip\"\neip_quota = 1")]),
        "eni \"eth2\": a multi-eip ENI holds at most 1 EIPs (set `eip_quota` if your quota was raised)",
    );
    exact(
        &edit(&[(
            "private_ips = [\"192.168.0.10\"]",
            "private_ips = [\"192.168.0.10\"]\neip_quota = 2",
        )]),
        "eni \"eth0\": `eip_quota` applies only to multi-eip mode",
    );
    exact(
        &edit(&[(
            "mode = \"cut-through\"",
            "mode = \"cut-through\"\nprefixes = [\"198.51.100.0/28\"]",
        )]),
        "eni \"eth3\": a cut-through ENI has no usable private addresses: `prefixes` is not allowed",
    );
    exact(
        &edit(&[("mode = \"cut-through\"", "mode = \"bridged\"")]),
        "eni \"eth3\": mode = \"bridged\" is not one of nat, cut-through, multi-eip",
    );
    exact(
        &edit(&[("primary = true", "primary = true\nmode = \"multi-eip\"")]),
        "eni \"eth0\": the primary ENI supports only nat mode (multi-eip is for secondary ENIs)",
    );
    let l = accepts(BASE);
    assert!(
        l.warnings.iter().any(|w| w.message
            == "eni \"eth1\": nat mode has no ALG: H.323, SIP, DNS and RTSP through its EIPs \
                may break (use cut-through or multi-eip for them)"),
        "{:?}",
        l.warnings
    );
}

// ---------------------------------------------------------------------------------------------
// IPv6 prefixes (issue 14): `prefixes` takes IPv6 entries inside `ipv6_cidr`, routed as sources
// ---------------------------------------------------------------------------------------------

const V4_PREFIX: &str = r#"prefixes = ["192.168.0.48/28"]"#;

#[test]
fn ipv6_prefix_is_accepted_and_routed_as_a_source() {
    let text = edit(&[(
        V4_PREFIX,
        r#"prefixes = ["192.168.0.48/28", "2001:db8:1:0:8::/80"]"#,
    )]);
    let l = accepts(&text);
    let eth1 = l.config.enis.iter().find(|e| e.name == "eth1").unwrap();
    assert_eq!(eth1.prefixes.len(), 1);
    assert_eq!(
        eth1.ipv6_prefixes,
        vec!["2001:db8:1:0:8::/80".parse().unwrap()]
    );
    let desired = eniroute::plan::desired(&l.config, None);
    let script = eniroute::render::ip_script(&desired);
    assert!(
        script.contains("from 2001:db8:1:0:8::/80"),
        "the IPv6 prefix is a source:\n{script}"
    );
    assert!(script.contains("from 192.168.0.48/28"), "{script}");
}

#[test]
fn ipv6_prefix_outside_ipv6_cidr() {
    let text = edit(&[(V4_PREFIX, r#"prefixes = ["2001:db8:2::/80"]"#)]);
    rejects_only(
        &text,
        "prefix 2001:db8:2::/80 is not inside ipv6_cidr 2001:db8:1::/64",
        line_of(&text, "2001:db8:2::/80"),
    );
}

#[test]
fn ipv6_prefix_overlapping_an_ipv6_address() {
    let text = edit(&[(V4_PREFIX, r#"prefixes = ["2001:db8:1::/80"]"#)]);
    rejects_only(
        &text,
        "prefix 2001:db8:1::/80 overlaps IPv6 address 2001:db8:1::20",
        line_of(&text, "2001:db8:1::/80"),
    );
}

#[test]
fn ipv6_prefix_with_host_bits_and_without_ipv6_cidr() {
    let text = edit(&[(V4_PREFIX, r#"prefixes = ["2001:db8:1:0:8::1/80"]"#)]);
    rejects(
        &text,
        "has host bits set",
        line_of(&text, "2001:db8:1:0:8::1/80"),
    );
    // eth0 has no IPv6 at all: an IPv6 prefix there needs ipv6_cidr and ipv6_gateway.
    let text = edit(&[(
        "private_ips = [\"192.168.0.10\"]",
        "private_ips = [\"192.168.0.10\"]\nprefixes = [\"2001:db8:9::/80\"]",
    )]);
    rejects(&text, "`ipv6_cidr` is required", eni_header(&text, "eth0"));
}

/// A file that is not UTF-8 is a config error (65) at the line and column of the bad byte.
#[test]
fn invalid_utf8_names_its_line_and_column() {
    let dir = scratch_dir("utf8");
    let file = dir.join("eniroute.toml");
    let mut bytes = b"region = \"cn-beijing\"\n# caf\xc3\xa9 ok\nname = \"ab".to_vec();
    bytes.extend_from_slice(b"\xff\"\n");
    std::fs::write(&file, &bytes).unwrap();
    let path = file.to_str().unwrap().to_string();
    let out = eniroute(&["-c", &path, "validate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(
        stderr.contains("error: the file is not UTF-8 text")
            && stderr.contains(&format!(" --> {path}:3:11\n")),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ipv6_prefix_holding_another_enis_address_or_prefix() {
    // eth2 gets the IPv6 subnet of eth1 and a prefix holding eth1's address.
    let text = edit(&[(
        "name = \"eth2\"\nmac = \"00:16:3e:00:00:03\"",
        "name = \"eth2\"\nmac = \"00:16:3e:00:00:03\"\nprefixes = [\"2001:db8:1::/112\"]\n\
         ipv6 = [\"2001:db8:1::9:1\"]\nipv6_cidr = \"2001:db8:1::/64\"\nipv6_gateway = \"fe80::1\"",
    )]);
    let ps = problems(&text);
    assert!(
        ps.iter()
            .any(|p| p.message.contains("prefix 2001:db8:1::/112")),
        "{ps:#?}"
    );
}
