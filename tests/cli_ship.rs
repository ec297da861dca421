//! The command line an operator meets first: `--version`, `completions`, and the refusals of
//! flags that would otherwise be ignored. Root-free.

use std::process::{Command, Output};

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
