//! Config problems, warnings and notes drawn with their lines (issue 15, "Hand-written code that
//! a crate does better"): annotate-snippets' rustc-style text, a caret under the exact span —
//! the key for an unknown key, the value for a bad value —, the hint as a `help` footer. Plain
//! text is pinned (insta snapshots in tests/snapshots/); odd input (multi-byte characters,
//! tabs, CRLF, a span at the end of the file, an empty file, very long lines) never panics and
//! stays bounded.

use eniroute::config::{load_str, Loaded};
use eniroute::output::{config_error_text, warning_text};

const PATH: &str = "eniroute.toml";

/// A valid file of one ENI; the tests change one line of it.
const ONE: &str = "region = \"cn-beijing\"\n\n[[eni]]\nname = \"eth1\"\ninterface = \"eth1\"\n\
                   primary = true\ncidr = \"192.168.10.0/24\"\ngateway = \"192.168.10.253\"\n\
                   private_ips = [\"192.168.10.21\"]\n";

/// The problems of `text`, drawn without colour.
#[track_caller]
fn drawn(text: &str) -> String {
    match load_str(text, PATH) {
        Ok(_) => panic!("expected the config to be rejected:\n{text}"),
        Err(e) => config_error_text(&e, false),
    }
}

#[track_caller]
fn accepts(text: &str) -> Loaded {
    load_str(text, PATH).unwrap_or_else(|e| panic!("expected valid, got:\n{e}"))
}

#[test]
fn unknown_keys_all_at_once_caret_under_the_key_with_did_you_mean() {
    let text = ONE.replace("cidr", "cdir").replace("gateway", "gatway");
    insta::assert_snapshot!("unknown_keys", drawn(&text));
}

#[test]
fn unquoted_cidr_caret_under_the_value_and_the_fix_as_help() {
    let text = ONE.replace("cidr = \"192.168.10.0/24\"", "cidr=192.168.10.0/24");
    let out = drawn(&text);
    insta::assert_snapshot!("unquoted_cidr", out);
    assert!(out.contains("help: quote addresses and CIDR values: cidr = \"192.168.10.0/24\""));
}

#[test]
fn bad_values_inside_an_array_and_an_inline_table() {
    // A bad address inside an array: the caret under that element only.
    let text = ONE.replace(
        "private_ips = [\"192.168.10.21\"]",
        "private_ips = [\"192.168.10.21\", \"192.168.10.300\"]\neip = [{ address = \"10.1.2.3\" }]",
    );
    insta::assert_snapshot!("array_and_inline_table", drawn(&text));
    // An unquoted address inside an array: the element, and the fix.
    let text = ONE.replace("[\"192.168.10.21\"]", "[192.168.10.21]");
    let out = drawn(&text);
    insta::assert_snapshot!("unquoted_in_array", out);
}

#[test]
fn multi_byte_characters_and_tabs_keep_the_caret_under_the_value() {
    // The column counts characters; the caret is under the value however the line is drawn.
    let text = ONE.replace("name = \"eth1\"", "name =\t\"日本-ü\"");
    let out = drawn(&text);
    insta::assert_snapshot!("multi_byte", out);
    assert!(out.contains(&format!("{PATH}:4:8")), "{out}");
}

#[test]
fn a_span_at_the_end_of_the_file_and_an_empty_file() {
    // An unterminated string on the last line, no newline after it: TOML stops at the end.
    let text = ONE
        .trim_end()
        .replace("[\"192.168.10.21\"]", "[\"192.168.10.21");
    insta::assert_snapshot!("at_eof", drawn(&text));
    let out = drawn("");
    insta::assert_snapshot!("empty_file", out);
    // CRLF line ends: no CR shown, the same columns.
    let crlf = ONE.replace("cidr", "cdir").replace('\n', "\r\n");
    let out = drawn(&crlf);
    assert!(!out.contains('\r'), "{out:?}");
    assert!(out.contains(&format!("{PATH}:7:1")), "{out}");
}

/// Every line drawn from the file (the gutter ones, not the messages) fits 120 columns.
fn source_lines_fit(out: &str) -> bool {
    use unicode_width::UnicodeWidthStr;
    // In terminal columns: combining marks take none, wide characters two.
    out.lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit() || c == ' '))
        .all(|l| l.width() <= 120)
}

#[test]
fn very_long_lines_are_cut_to_the_width_around_the_caret() {
    let pad = "x".repeat(50_000);
    let text = ONE.replace(
        "gateway = \"192.168.10.253\"",
        &format!("gateway = \"192.168.10.999\" # {pad}"),
    );
    let out = drawn(&text);
    assert!(source_lines_fit(&out), "{out}");
    assert!(out.contains("^^^^"), "{out}");
    // The key far right on its line: the window moves to it.
    let out = drawn(&format!("{ONE}{}bogus = 1\n", " ".repeat(50_000)));
    assert!(source_lines_fit(&out), "{out}");
    assert!(out.contains(&format!("{PATH}:10:50001")), "{out}");
    assert!(out.contains("unknown field"), "{out}");
}

#[test]
fn hostile_bytes_are_shown_harmlessly() {
    // Control characters and terminal escapes in a value and in a quoted key: no ESC reaches
    // the terminal, plain text has no colour codes at all.
    let text = ONE.replace(
        "name = \"eth1\"",
        "name = \"e\\u001b[31mth1\"\n\"k\\u001bey\" = 1",
    );
    let out = drawn(&text);
    assert!(!out.contains('\x1b'), "{out:?}");
    // With colour: styled (ANSI) output, still no escape from the file.
    let e = load_str(&ONE.replace("cidr", "cdir"), PATH).unwrap_err();
    assert!(config_error_text(&e, true).contains("\x1b["));
}

#[test]
fn warnings_and_notes_are_drawn_at_their_level() {
    let text = ONE.replace("primary = true\n", "");
    let l = accepts(&text);
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    insta::assert_snapshot!("warning", warning_text(PATH, &l.warnings[0], false));
}

/// Two secondary nat ENIs with EIPs and a primary: ONE note naming both (never the primary),
/// each marked.
#[test]
fn one_alg_note_names_every_secondary_nat_eni_with_eips() {
    let eni = |name: &str, n: u8| {
        format!(
            "\n[[eni]]\nname = \"{name}\"\ninterface = \"{name}\"\ncidr = \"192.168.{n}.0/24\"\n\
             gateway = \"192.168.{n}.253\"\nprivate_ips = [\"192.168.{n}.10\"]\n\n\
             [[eni.eip]]\naddress = \"203.0.113.{n}\"\n"
        )
    };
    let text = format!(
        "{}\n[[eni.eip]]\naddress = \"203.0.113.1\"\n{}{}",
        ONE,
        eni("web", 20),
        eni("db", 30)
    );
    let l = accepts(&text);
    let notes: Vec<_> = l.warnings.iter().filter(|w| w.note).collect();
    assert_eq!(notes.len(), 1, "{notes:#?}");
    let n = notes[0];
    assert!(
        n.message
            .starts_with("eni \"web\", eni \"db\": nat mode has no ALG: H.323, SIP"),
        "{n:?}"
    );
    assert!(
        !n.message.contains("eth1"),
        "the primary is never named: {n:?}"
    );
    assert_eq!(n.excerpts.len(), 2);
    insta::assert_snapshot!("alg_note", warning_text(PATH, n, false));
}

/// A file of many problems: the first 50 drawn, all counted.
#[test]
fn many_problems_are_counted_and_the_first_ones_drawn() {
    let keys: String = (0..300).map(|i| format!("bogus{i} = 1\n")).collect();
    let e = load_str(&format!("{keys}{ONE}"), PATH).unwrap_err();
    assert_eq!(e.problems.len(), 300);
    let out = config_error_text(&e, false);
    assert_eq!(out.matches("unknown field `bogus").count(), 50, "{out}");
    assert!(out.ends_with(&format!(
        "error: invalid configuration {PATH} (300 problems; the first 50 shown, `-o json` lists all)"
    )), "{out}");
}

/// README's example of `validate` on a bad file ("Validation") is what validate prints.
#[test]
fn the_readme_example_is_true() {
    let bad = "region = \"cn-hangzhou\"\n\n[[eni]]\nname = \"eth0\"\ninterface = \"eth0\"\n\
               primary = true\ncidr = \"192.168.10.0/24\"\ngateway = \"192.168.10.253\"\n\
               private_ips = [\"192.168.10.10\"]\n\n[[eni]]\nname = \"eth1\"\n\
               interface = \"eth1\"\ncidr = \"192.168.10.0/24\"\ngateway = \"192.168.10.253\"\n\
               private_ips = [\"192.168.10.21\"]\n\
               eip = [{ address = \"198.51.100.21\" }, { address = \"198.51.100.22\" }]\n\n\
               [[eni]]\nname = \"eth2\"\ninterface = \"eth2\"\ncidr = \"192.168.20.0/24\"\n\
               gateway = \"192.168.9.253\"\nprivate_ips = [\"192.168.20.10\"]\n";
    let e = load_str(bad, "bad.toml").unwrap_err();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let shown = readme
        .split_once("the exit code is 65.")
        .and_then(|(_, rest)| rest.split_once("```\n"))
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .map(|(block, _)| block)
        .expect("README's validation example");
    assert_eq!(config_error_text(&e, false), shown);
}

/// Through the binary: colour on a terminal (a pty from util-linux `script`), none with
/// NO_COLOR set, none into a pipe.
#[test]
fn colour_only_on_a_terminal_without_no_color() {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), ONE.replace("cidr", "cdir")).expect("write");
    let cmd = format!(
        "{} -c {} validate",
        env!("CARGO_BIN_EXE_eniroute"),
        file.path().display()
    );
    let run = |no_color: Option<&str>| {
        let mut c = std::process::Command::new("script");
        c.args(["-qec", &cmd, "/dev/null"]).env_remove("NO_COLOR");
        if let Some(v) = no_color {
            c.env("NO_COLOR", v);
        }
        let o = c
            .output()
            .expect("util-linux `script` (Debian package bsdutils) gives the test a terminal");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let tty = run(None);
    assert!(
        tty.contains("\x1b[") && tty.contains("did you mean `cidr`?"),
        "{tty:?}"
    );
    let plain = run(Some("1"));
    assert!(
        !plain.contains('\x1b') && plain.contains("^^^^"),
        "{plain:?}"
    );
    // An empty NO_COLOR does not count (no-color.org).
    assert!(run(Some("")).contains("\x1b["));
    let piped = std::process::Command::new(env!("CARGO_BIN_EXE_eniroute"))
        .args(["-c", &file.path().display().to_string(), "validate"])
        .env_remove("NO_COLOR")
        .output()
        .expect("run eniroute");
    let err = String::from_utf8_lossy(&piped.stderr);
    assert!(!err.contains('\x1b') && err.contains("^^^^"), "{err:?}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// Any text (multi-byte, control characters, CR, tabs, long) put anywhere in a valid file:
    /// drawing its problems never panics, and the lines drawn from the file stay bounded.
    #[test]
    fn any_text_anywhere_draws_bounded(
        at in 0usize..400,
        junk in "(\\PC|[\\t\\r\\n\\u{0}-\\u{1f}\"=\\[\\]{}#.:/0-9a-f]){0,300}",
        repeat in 1usize..60,
    ) {
        let mut text = ONE.to_string();
        let mut at = at.min(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.insert_str(at, &junk.repeat(repeat));
        match load_str(&text, PATH) {
            Ok(l) => {
                for w in &l.warnings {
                    let _ = warning_text(PATH, w, true);
                }
            }
            Err(e) => {
                let out = config_error_text(&e, false);
                proptest::prop_assert!(out.contains("invalid configuration"), "{}", out);
                proptest::prop_assert!(source_lines_fit(&out), "{}", out);
            }
        }
    }
}
