//! Man pages and shell completions, generated from the clap definitions (clap_mangen,
//! clap_complete) and from the config reference, so they cannot drift from the program.
//! May import `config` (its reference table); the clap `Command` is handed in by `cli`.

use std::io;
use std::path::{Path, PathBuf};

use clap::Command;
use roff::{bold, italic, roman, Roff};

use crate::config::reference::{KEYS, TABLES};

/// `eniroute completions SHELL`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl Shell {
    /// Where a package installs the script (the shells' vendor directories).
    fn installed_as(self) -> &'static str {
        match self {
            Shell::Bash => "bash-completion/completions/eniroute",
            Shell::Zsh => "zsh/vendor-completions/_eniroute",
            Shell::Fish => "fish/vendor_completions.d/eniroute.fish",
        }
    }
}

/// The completion script of one shell.
pub fn completion(shell: Shell, mut cmd: Command) -> Vec<u8> {
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut buf = Vec::new();
    clap_complete::generate(generator, &mut cmd, "eniroute", &mut buf);
    buf
}

/// Write the man pages and completion scripts under `dir` (man/, completions/ in the layout
/// of /usr/share); returns the files written.
pub fn write_assets(cmd: Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = vec![
        (dir.join("man/man8/eniroute.8"), eniroute_8(cmd.clone())?),
        (dir.join("man/man5/eniroute.toml.5"), eniroute_toml_5()),
    ];
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        files.push((
            dir.join(shell.installed_as()),
            completion(shell, cmd.clone()),
        ));
    }
    for (path, bytes) in &files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, bytes)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

/// Roff text without the apostrophe preamble every rendering starts with (kept once, at the
/// top of the page).
fn body(rendered: Vec<u8>) -> String {
    let preamble = Roff::new().render();
    let text = String::from_utf8_lossy(&rendered).into_owned();
    text.strip_prefix(&preamble)
        .map(str::to_string)
        .unwrap_or(text)
}

fn man(cmd: Command, section: &str) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd)
        .section(section)
        .date(env!("ENIROUTE_BUILD_DATE"))
        .source(concat!("eniroute ", env!("CARGO_PKG_VERSION")))
        .manual(if section == "8" {
            "System Administration"
        } else {
            "File Formats"
        })
}

/// eniroute(8): the global options, then every verb with its own options.
pub fn eniroute_8(cmd: Command) -> io::Result<Vec<u8>> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let page = man(cmd.clone(), "8");
    let mut out = Vec::new();
    page.render_title(&mut out)?;
    let mut rest = Vec::new();
    page.render_name_section(&mut rest)?;
    page.render_synopsis_section(&mut rest)?;
    page.render_description_section(&mut rest)?;
    page.render_options_section(&mut rest)?;
    let mut text = String::from_utf8_lossy(&out).into_owned();
    text.push_str(&body(rest));
    text.push_str(&body(commands(&cmd)?));
    text.push_str(&body(trailer_8().render().into_bytes()));
    Ok(text.into_bytes())
}

/// COMMANDS: each visible verb's usage, description and options (globals are listed once).
fn commands(cmd: &Command) -> io::Result<Vec<u8>> {
    let mut roff = Roff::new();
    roff.control("SH", ["COMMANDS"]);
    let mut text = body(roff.render().into_bytes());
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let own: Vec<clap::Arg> = sub
            .get_arguments()
            .filter(|a| !a.is_global_set() && !a.is_hide_set())
            .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
            .cloned()
            .collect();
        let mut usage = format!("eniroute {}", sub.get_name());
        if own.iter().any(|a| !a.is_positional()) {
            usage.push_str(" [OPTIONS]");
        }
        for a in own.iter().filter(|a| a.is_positional()) {
            let name = a.get_id().as_str().to_uppercase();
            usage.push_str(&format!(" <{name}>"));
        }
        let mut head = Roff::new();
        head.control("SS", [usage.as_str()]);
        if let Some(about) = sub.get_long_about().or_else(|| sub.get_about()) {
            head.text([roman(about.to_string())]);
        }
        text.push_str(&body(head.render().into_bytes()));
        if !own.is_empty() {
            let bare = Command::new(sub.get_name().to_string())
                .disable_help_flag(true)
                .disable_version_flag(true)
                .args(own);
            let mut opts = Vec::new();
            man(bare, "8").render_options_section(&mut opts)?;
            let opts = body(opts);
            // The verb's options sit under its .SS heading, not under a section of their own.
            text.push_str(opts.strip_prefix(".SH OPTIONS\n").unwrap_or(&opts));
        }
    }
    Ok(text.into_bytes())
}

fn trailer_8() -> Roff {
    let mut r = Roff::new();
    r.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in [
        ("0", "ok (plan: no changes)"),
        (
            "1",
            "failed; after a failed apply the host is as before (everything was rolled back)",
        ),
        ("2", "plan --detailed-exitcode: changes pending"),
        ("64", "usage error"),
        ("65", "invalid configuration (nothing was changed)"),
        ("66", "configuration file missing or unreadable"),
        (
            "69",
            "an ENI (after --wait) or the --netns namespace was not found",
        ),
        (
            "75",
            "another eniroute holds the lock (after --lock-timeout)",
        ),
    ] {
        r.control("TP", [])
            .text([bold(code)])
            .text([roman(meaning)]);
    }
    r.control("SH", ["FILES"]);
    for (file, meaning) in [
        (
            "/etc/eniroute/eniroute.toml",
            "the configuration, see eniroute.toml(5)",
        ),
        (
            "/run/eniroute/",
            "the lock and the saved sysctl values, per network namespace",
        ),
        (
            "/usr/share/doc/eniroute/examples/",
            "annotated example configurations",
        ),
    ] {
        r.control("TP", [])
            .text([italic(file)])
            .text([roman(meaning)]);
    }
    r.control("SH", ["ENVIRONMENT"]);
    r.control("TP", [])
        .text([bold("ENIROUTE_CONFIG")])
        .text([roman("the configuration file when -c is not given")]);
    r.control("SH", ["SEE ALSO"]);
    r.text([roman(
        "eniroute.toml(5), ip(8), ip-rule(8), ip-route(8), systemd.service(5); \
         the units eniroute.service, eniroute-watch.service and eniroute-reapply@.service",
    )]);
    r
}

/// eniroute.toml(5): every key of the config reference, table by table.
pub fn eniroute_toml_5() -> Vec<u8> {
    let mut r = Roff::new();
    r.control(
        "TH",
        [
            "ENIROUTE.TOML",
            "5",
            env!("ENIROUTE_BUILD_DATE"),
            concat!("eniroute ", env!("CARGO_PKG_VERSION")),
            "File Formats",
        ],
    );
    r.control("SH", ["NAME"]);
    r.text([roman("eniroute.toml - the configuration of eniroute(8)")]);
    r.control("SH", ["DESCRIPTION"]);
    r.text([roman(
        "One TOML file (default /etc/eniroute/eniroute.toml; -c FILE or ENIROUTE_CONFIG) \
         declares the instance's ENIs, their private IPs, their Elastic IPs and each ENI's \
         association mode. Unknown keys are errors; every problem is reported at once with its \
         file, line and column (exit 65). The file must be a regular file of at most 1 MiB. \
         Quote every address and CIDR (\"192.168.10.0/24\").",
    )]);
    for (table, summary) in TABLES {
        let heading = match *table {
            "" => "TOP LEVEL".to_string(),
            t if t.contains('.') || t == "eni" => format!("[[{t}]]"),
            t => format!("[{t}]"),
        };
        r.control("SH", [heading.as_str()]);
        r.text([roman(*summary)]);
        for k in KEYS.iter().filter(|k| k.table == *table) {
            r.control("TP", []);
            r.text([bold(k.key), roman(" = "), italic(k.value)]);
            r.text([roman(format!("{}{}", k.meaning, default_note(k.default)))]);
        }
    }
    r.control("SH", ["MODES"]);
    r.text([roman(
        "nat: the VPC maps each EIP to one private IP; the EIP is not in the guest OS (no ALG: \
         H.323, SIP, DNS and RTSP break). cut-through: secondary ENIs only; the one EIP is the \
         ENI's address. multi-eip: secondary ENIs only; up to 10 EIPs (eip_quota) configured \
         as static addresses.",
    )]);
    r.control("SH", ["EXAMPLES"]);
    r.text([roman("/usr/share/doc/eniroute/examples/")]);
    r.control("SH", ["SEE ALSO"]);
    r.text([roman("eniroute(8)")]);
    r.render().into_bytes()
}

/// " (default: 20000)", " (required)", or nothing for "none".
fn default_note(default: &str) -> String {
    match default {
        "none" => String::new(),
        d if d.contains("required") || d.contains(" or ") || d.contains("at least") => {
            format!(" ({d})")
        }
        d => format!(" (default: {d})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_8() -> String {
        let bytes = eniroute_8(crate::cli::command()).expect("render eniroute(8)");
        String::from_utf8(bytes).expect("UTF-8")
    }

    #[test]
    fn eniroute_8_has_every_verb_and_every_option() {
        let page = page_8();
        let cmd = crate::cli::command();
        // roff escapes "-" as "\-".
        let has = |s: &str| page.contains(&s.replace('-', "\\-"));
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            if let Some(long) = arg.get_long() {
                assert!(has(&format!("--{long}")), "global option --{long} missing");
            }
        }
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            assert!(
                has(&format!("eniroute {}", sub.get_name())),
                "{}",
                sub.get_name()
            );
            for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
                if let Some(long) = arg.get_long() {
                    assert!(has(&format!("--{long}")), "{} --{long}", sub.get_name());
                }
            }
        }
        assert_eq!(page.matches(".TH ").count(), 1, "one title");
        assert!(page.contains(".SH \"EXIT STATUS\"") || page.contains(".SH EXIT STATUS"));
    }

    #[test]
    fn eniroute_toml_5_has_every_key() {
        let page = String::from_utf8(eniroute_toml_5()).expect("UTF-8");
        for k in KEYS {
            assert!(page.contains(&format!("\\fB{}\\fR", k.key)), "{}", k.key);
        }
    }

    #[test]
    fn completions_know_every_verb() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let script =
                String::from_utf8(completion(shell, crate::cli::command())).expect("UTF-8");
            for verb in [
                "validate", "plan", "apply", "status", "flush", "render", "sandbox",
            ] {
                assert!(script.contains(verb), "{shell:?}: {verb}");
            }
        }
    }
}
