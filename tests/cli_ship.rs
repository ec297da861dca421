//! The command line an operator meets first: `--version`, `completions`, and the refusals of
//! flags that would otherwise be ignored. Root-free.

use std::process::{Command, Output};

mod common;
use common::Netns;

fn eniroute(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eniroute"))
        .args(args)
        .env_remove("ENIROUTE_CONFIG")
        .output()
        .expect("run eniroute")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn version_shows_the_commit_and_the_build_date() {
    let o = eniroute(&["--version"]);
    assert_eq!(o.status.code(), Some(0));
    let v = stdout(&o);
    let rest = v
        .strip_prefix(&format!("eniroute {} (commit ", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("{v}"));
    let (commit, date) = rest
        .trim_end()
        .trim_end_matches(')')
        .split_once(", built ")
        .expect(&v);
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{commit}"
    );
    // YYYY-MM-DD
    let d: Vec<&str> = date.split('-').collect();
    assert!(
        d.len() == 3 && d[0].len() == 4 && d[1].len() == 2 && d[2].len() == 2,
        "{date}"
    );
}

#[test]
fn completions_print_a_script_per_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _eniroute"),
        ("zsh", "#compdef eniroute"),
        ("fish", "complete -c eniroute"),
    ] {
        let o = eniroute(&["completions", shell]);
        assert_eq!(o.status.code(), Some(0), "{shell}: {}", stderr(&o));
        let script = stdout(&o);
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        assert!(script.contains("validate"), "{shell}");
    }
    let o = eniroute(&["completions", "powershell"]);
    assert_eq!(o.status.code(), Some(64));
}

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/configs/examples/nat-secondary.toml"
);

#[test]
fn flags_a_verb_cannot_honour_are_refused_with_exit_64() {
    for (args, says) in [
        (
            &["-o", "json", "discover"][..],
            "discover has no JSON output",
        ),
        (
            &["--netns", "doesnotexist", "sandbox"][..],
            "sandbox does not use --netns",
        ),
        (
            &["--netns", "x", "discover"][..],
            "discover does not use --netns",
        ),
        (&["-o", "json", "completions", "bash"][..], "no JSON output"),
        (
            &["-o", "json", "-c", EXAMPLE, "render", "--format", "ip"][..],
            "disagree",
        ),
    ] {
        let o = eniroute(args);
        assert_eq!(o.status.code(), Some(64), "{args:?}: {}", stderr(&o));
        assert!(
            format!("{}{}", stdout(&o), stderr(&o)).contains(says),
            "{args:?}"
        );
    }
}

#[test]
fn discover_dash_o_file_points_at_output() {
    let o = eniroute(&["discover", "-o", "/tmp/eniroute.toml"]);
    assert_eq!(o.status.code(), Some(64));
    let err = stderr(&o);
    assert!(err.contains("--output FILE"), "{err}");
}

#[test]
fn render_honours_dash_o_json() {
    let o = eniroute(&["-o", "json", "-c", EXAMPLE, "render"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("render -o json is JSON");
    assert!(v.is_object());
    let ip = eniroute(&["-c", EXAMPLE, "render"]);
    assert!(
        stdout(&ip).lines().any(|l| l.starts_with("rule add")),
        "ip script by default"
    );
}

/// Root: the sandbox builds namespaces. -q prints nothing when every check passed.
#[test]
fn sandbox_quiet_prints_nothing_when_it_passes_and_the_report_fits_100_columns() {
    let o = eniroute(&["-q", "sandbox"]);
    assert_eq!(o.status.code(), Some(0), "needs root: {}", stderr(&o));
    assert_eq!(stdout(&o), "", "-q sandbox printed its report");
    let loud = eniroute(&["sandbox"]);
    assert_eq!(loud.status.code(), Some(0), "{}", stderr(&loud));
    let report = stdout(&loud);
    assert!(
        report.contains("CHECK") && report.contains("AFTER APPLY"),
        "{report}"
    );
    for line in report.lines() {
        assert!(
            line.chars().count() <= 100,
            "wider than 100 columns: {line}"
        );
    }
}

/// validate on a config text: (exit code, stderr).
fn validate_text(text: &str) -> (Option<i32>, String) {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), text).expect("write config");
    let o = eniroute(&["-c", file.path().to_str().expect("UTF-8 path"), "validate"]);
    (o.status.code(), stderr(&o))
}

const ENI: &str = "[[eni]]\nname = \"eth1\"\ninterface = \"eth1\"\nprimary = true\n\
                   cidr = \"192.168.10.0/24\"\ngateway = \"192.168.10.253\"\n\
                   private_ips = [\"192.168.10.21\"]\n";

#[test]
fn config_errors_that_help() {
    // Every unknown key at once, each with a suggestion.
    let text = ENI.replace("cidr", "cdir").replace("gateway", "gatway");
    let (code, err) = validate_text(&text);
    assert_eq!(code, Some(65), "{err}");
    assert!(
        err.contains("`cdir` in [[eni]]; did you mean `cidr`?"),
        "{err}"
    );
    assert!(
        err.contains("`gatway` in [[eni]]; did you mean `gateway`?"),
        "{err}"
    );
    // An unquoted CIDR.
    let (code, err) = validate_text(&ENI.replace("\"192.168.10.0/24\"", "192.168.10.0/24"));
    assert_eq!(code, Some(65), "{err}");
    assert!(
        err.contains("quote addresses and CIDR values: cidr = \"192.168.10.0/24\""),
        "{err}"
    );
    // An unknown mode is one error (not also the errors of nat, its fallback).
    let text = ENI.replace("primary = true\n", "mode = \"cut-thru\"\n");
    let (code, err) = validate_text(&text);
    assert_eq!(code, Some(65), "{err}");
    assert_eq!(err.matches("eni \"eth1\"").count(), 1, "{err}");
    assert!(err.contains("did you mean \"cut-through\"?"), "{err}");
    // No primary ENI: valid, with a warning.
    let (code, err) = validate_text(&ENI.replace("primary = true\n", ""));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("warning:") && err.contains("no ENI has primary = true"),
        "{err}"
    );
}

/// Root: a namespace holding an interface with a known MAC under a name the config never says.
#[test]
fn render_names_mac_only_enis_by_the_host_interface_or_says_it_cannot() {
    let ns = Netns::new("s");
    ns.ip(&[
        "link",
        "add",
        "ens5",
        "address",
        "00:16:3e:aa:bb:01",
        "type",
        "veth",
        "peer",
        "name",
        "ens5p",
        "address",
        "00:16:3e:aa:bb:02",
    ]);
    let ns = ns.name.clone();
    let config = |mac: &str| {
        format!(
            "[[eni]]\nname = \"web\"\nmac = \"{mac}\"\nprimary = true\ncidr = \"192.168.10.0/24\"\n\
             gateway = \"192.168.10.253\"\nprivate_ips = [\"192.168.10.21\"]\n"
        )
    };
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let path = file.path().to_str().expect("UTF-8").to_string();

    std::fs::write(&path, config("00:16:3e:aa:bb:01")).expect("write");
    let o = eniroute(&["--netns", &ns, "-c", &path, "render"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("link set dev ens5 up"),
        "{}",
        stdout(&o)
    );
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));

    std::fs::write(&path, config("00:16:3e:aa:bb:99")).expect("write");
    let o = eniroute(&["--netns", &ns, "-c", &path, "render"]);
    let err = stderr(&o);
    assert!(
        err.contains("eni \"web\" (mac 00:16:3e:aa:bb:99): not resolved"),
        "{err}"
    );
    assert!(
        err.contains("ens5 00:16:3e:aa:bb:01"),
        "lists the host's MACs: {err}"
    );
    assert!(err.contains("ip -batch"), "{err}");
}

/// Under systemd, stderr is the journal and JOURNAL_STREAM names it: lines carry their
/// syslog priority (sd-daemon(3) prefixes). Here a file plays the journal's stream.
#[test]
fn messages_carry_journal_priorities_when_stderr_is_the_journal() {
    use std::os::unix::fs::MetadataExt;
    let run = |args: &[&str], stream: &dyn Fn(&std::fs::Metadata) -> String| {
        let log = tempfile::NamedTempFile::new().expect("temp file");
        let meta = log.as_file().metadata().expect("stat");
        let status = Command::new(env!("CARGO_BIN_EXE_eniroute"))
            .args(args)
            .env_remove("ENIROUTE_CONFIG")
            .env("JOURNAL_STREAM", stream(&meta))
            .stderr(log.reopen().expect("reopen"))
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run eniroute");
        (
            status.code(),
            std::fs::read_to_string(log.path()).expect("read log"),
        )
    };
    let this = |m: &std::fs::Metadata| format!("{}:{}", m.dev(), m.ino());
    let other = |m: &std::fs::Metadata| format!("{}:{}", m.dev(), m.ino() + 1);

    let (code, log) = run(&["-c", "/nonexistent/eniroute.toml", "validate"], &this);
    assert_eq!(code, Some(66));
    assert!(
        log.starts_with("<3>error: cannot read /nonexistent/eniroute.toml"),
        "{log}"
    );
    assert!(
        log.lines().all(|l| l.starts_with('<')),
        "every line has a priority: {log}"
    );

    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), ENI.replace("primary = true\n", "")).expect("write");
    let (code, log) = run(
        &["-c", file.path().to_str().expect("UTF-8"), "validate"],
        &this,
    );
    assert_eq!(code, Some(0), "{log}");
    assert!(log.starts_with("<4>warning: "), "{log}");

    // Inherited by a process whose stderr is elsewhere: no prefixes.
    let (_, log) = run(&["-c", "/nonexistent/eniroute.toml", "validate"], &other);
    assert!(log.starts_with("error: cannot read"), "{log}");
}

/// Every verb's JSON is one object with the same envelope, failures included.
#[test]
fn json_documents_share_one_envelope() {
    let doc = |args: &[&str], code: i32| -> serde_json::Value {
        let o = eniroute(args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
        let text = stdout(&o);
        let j: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{args:?}: not one JSON document: {e}"));
        assert_eq!(j["eniroute"], env!("CARGO_PKG_VERSION"));
        assert_eq!(j["schema"], 1);
        assert_eq!(j["ok"], code == 0, "{args:?}");
        // The envelope comes first, in this order (the parsed Value sorts keys: read the text).
        let first: Vec<&str> = text
            .lines()
            .skip(1)
            .take(4)
            .map(|l| l.trim().split('"').nth(1).unwrap_or(""))
            .collect();
        assert_eq!(first, ["eniroute", "schema", "command", "ok"], "{args:?}");
        j
    };
    let v = doc(&["-o", "json", "-c", EXAMPLE, "validate"], 0);
    assert_eq!(v["command"], "validate");
    assert_eq!(v["valid"], true);
    let r = doc(&["-o", "json", "-c", EXAMPLE, "render"], 0);
    assert_eq!(r["command"], "render");
    assert!(r["rules"].as_array().is_some_and(|a| !a.is_empty()));
    let missing = doc(&["-o", "json", "-c", "/nonexistent.toml", "plan"], 66);
    assert_eq!(missing["command"], "plan");
    assert!(missing["error"]
        .as_str()
        .is_some_and(|e| e.contains("/nonexistent.toml")));
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), "regoin = 1\n").expect("write");
    let bad = doc(
        &[
            "-o",
            "json",
            "-c",
            file.path().to_str().expect("UTF-8"),
            "validate",
        ],
        65,
    );
    assert_eq!(bad["valid"], false);
    assert_eq!(bad["problems"][0]["line"], 1);
}

/// Root: an ENI that is not there makes status say so in its one summary line, never "in sync".
#[test]
fn status_with_a_missing_eni_is_not_healthy_and_says_why() {
    let guard = Netns::new("m");
    let ns = guard.name.clone();
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(
        file.path(),
        ENI.replace("interface = \"eth1\"", "mac = \"00:16:3e:aa:bb:77\""),
    )
    .expect("write");
    let o = eniroute(&[
        "--netns",
        &ns,
        "-c",
        file.path().to_str().expect("UTF-8"),
        "status",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let text = stdout(&o);
    let summary = text.lines().last().unwrap_or("");
    assert!(
        summary.starts_with("Not healthy: ENI(s) missing: eth1"),
        "{text}"
    );
    assert!(!text.contains("in sync"), "{text}");
}

/// Root: `apply --wait` says what it waits for: one line, and one when the ENIs came, when
/// stderr is a log; a line rewritten each second on a terminal (util-linux `script` gives one).
#[test]
fn apply_wait_reports_progress() {
    let guard = Netns::new("w");
    let ns = guard.name.clone();
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let config = ENI.replace("interface = \"eth1\"", "mac = \"00:16:3e:aa:bb:55\"");
    std::fs::write(file.path(), config).expect("write");
    let path = file.path().to_str().expect("UTF-8").to_string();

    // Not a terminal, and the ENI never comes: one line, then the error (exit 69).
    let o = eniroute(&["--netns", &ns, "-c", &path, "apply", "--wait", "2"]);
    assert_eq!(o.status.code(), Some(69), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(
        err.matches("waiting for ENI eth1 (mac 00:16:3e:aa:bb:55): up to 2s")
            .count(),
        1,
        "{err}"
    );

    // On a terminal: the line counts the seconds.
    let cmd = format!(
        "{} --netns {ns} -c {path} apply --wait 3",
        env!("CARGO_BIN_EXE_eniroute")
    );
    let o = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .expect("script (util-linux)");
    let tty = stdout(&o);
    assert!(
        tty.contains("waiting for ENI eth1 (mac 00:16:3e:aa:bb:55): 1s of 3s"),
        "{tty}"
    );
    assert!(tty.contains("2s of 3s"), "{tty}");

    // The ENI arrives during the wait: the pass goes on and says after how long.
    let child = Command::new(env!("CARGO_BIN_EXE_eniroute"))
        .args(["--netns", &ns, "-c", &path, "apply", "--wait", "10"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("apply");
    std::thread::sleep(std::time::Duration::from_millis(700));
    let o = Command::new("ip")
        .args([
            "-n",
            &ns,
            "link",
            "add",
            "eth1",
            "address",
            "00:16:3e:aa:bb:55",
            "type",
            "veth",
        ])
        .output()
        .expect("ip");
    assert!(o.status.success(), "{}", stderr(&o));
    let o = child.wait_with_output().expect("wait");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("every ENI is there after "), "{err}");
}

/// Root: -v shows each change as the kernel accepts it, -vv also each netlink batch.
#[test]
fn verbose_levels_of_apply() {
    let ns = Netns::new("v");
    ns.ip(&[
        "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p",
    ]);
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), ENI).expect("write");
    let path = file.path().to_str().expect("UTF-8");
    let run = |args: &[&str]| {
        let mut all = vec!["--netns", ns.name.as_str(), "-c", path];
        all.extend_from_slice(args);
        let o = eniroute(&all);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        stderr(&o)
    };
    let quiet = run(&["apply"]);
    assert!(!quiet.contains("applied +"), "{quiet}");
    run(&["flush"]);
    let v = run(&["-v", "apply"]);
    assert!(
        v.contains("applied + rule add priority 20200 from 192.168.10.21 lookup"),
        "{v}"
    );
    assert!(!v.contains("netlink batch"), "{v}");
    run(&["flush"]);
    let vv = run(&["-vv", "apply"]);
    assert!(vv.contains("netlink batch: ") && vv.contains(" ms"), "{vv}");
    assert!(vv.contains("applied + "), "{vv}");
}

/// Root: every `+` line of plan, without its sign, is accepted by `ip -batch` (iproute2's
/// own syntax, the independent witness).
#[test]
fn plan_lines_paste_after_ip() {
    let ns = Netns::new("p");
    ns.ip(&[
        "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p",
    ]);
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), ENI).expect("write");
    let o = eniroute(&[
        "--netns",
        &ns.name,
        "-c",
        file.path().to_str().expect("UTF-8"),
        "plan",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let plan = stdout(&o);
    let lines: Vec<&str> = plan.lines().filter_map(|l| l.strip_prefix("+ ")).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("rule add priority 20000 from")),
        "{plan}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("route add default via")),
        "{plan}"
    );
    let script = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(script.path(), lines.join("\n")).expect("write the script");
    let ip = Command::new("ip")
        .args(["-n", &ns.name, "-batch"])
        .arg(script.path())
        .output()
        .expect("ip");
    assert!(
        ip.status.success(),
        "ip -batch refused the plan: {}\n{plan}",
        stderr(&ip)
    );
}
