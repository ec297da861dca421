//! Command line: argument parsing, exit codes, and the wiring of each verb.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, LoadError, Loaded};
use crate::exit::{self, ExitCode};
use crate::ops::{self, OpError, Target};
use crate::output::{self, Format};
use crate::plan;
use crate::render;

/// `eniroute --version`: the package version, the git commit and the build date (build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("ENIROUTE_GIT_COMMIT"),
    ", built ",
    env!("ENIROUTE_BUILD_DATE"),
    ")"
);

#[derive(Parser, Debug)]
#[command(
    name = "eniroute",
    version = VERSION,
    about = "Source-based policy routing for every ENI and Elastic IP of a multi-NIC Linux instance"
)]
struct Cli {
    /// Configuration file [default: /etc/eniroute/eniroute.toml; sandbox: the bundled demo]
    #[arg(
        short = 'c',
        long = "config",
        env = "ENIROUTE_CONFIG",
        global = true,
        value_name = "FILE"
    )]
    config: Option<PathBuf>,
    /// Run against the named network namespace (/run/netns/NAME)
    #[arg(long, global = true, value_name = "NAME")]
    netns: Option<String>,
    /// Output format (text for people, json for programs)
    #[arg(short = 'o', long = "output-format", global = true, value_enum, default_value_t = Format::Text, value_name = "FORMAT")]
    output: Format,
    /// More detail (repeatable)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Only errors
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// The configuration file: `-c`, else ENIROUTE_CONFIG, else the default path.
    fn config_path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH))
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check the config; touches nothing, needs no privilege
    Validate,
    /// The changes apply would make, as `ip`-style lines (+ add, - remove, ~ change)
    Plan {
        /// Exit 2 when changes are pending (0: none)
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// Converge the kernel to the config; verify; roll back everything on failure
    Apply {
        /// Wait this long for ENIs that are not there yet (e.g. 30s, 2m)
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        wait: Option<Duration>,
        /// Keep the new routing only if confirmed within DURATION (Enter on a terminal, or
        /// `eniroute confirm`); else roll it back (for changes made over SSH)
        #[arg(long = "try", value_name = "DURATION", value_parser = parse_try_window)]
        try_window: Option<Duration>,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// Keep the routing of a pending `apply --try`
    Confirm,
    /// Apply, then stay: re-converge within milliseconds of any change that matters; reload
    /// the config on SIGHUP; exit 0 on SIGTERM leaving the routing in place
    Watch {
        /// A full re-observe at least this often (for lost notifications and sysctl drift)
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5m")]
        resync: Duration,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// What eniroute owns now, per ENI, and whether each source routes right
    Status,
    /// Remove everything eniroute owns; restore the sysctls it changed
    Flush {
        #[command(flatten)]
        lock: LockArgs,
    },
    /// Write a config from the instance metadata service (Alibaba Cloud ECS, AWS EC2)
    Discover {
        /// Which metadata service: auto (from DMI, then by probing), aliyun or aws
        #[arg(long, value_name = "PROVIDER", default_value = "auto",
              value_parser = ["auto", "aliyun", "aws"])]
        provider: String,
        /// Metadata service base URL (default: the provider's well-known address)
        #[arg(long, value_name = "URL")]
        endpoint: Option<String>,
        /// Lifetime of the metadata token (security-hardening mode)
        #[arg(long, value_name = "SECONDS", default_value_t = crate::discover::DEFAULT_TOKEN_TTL)]
        token_ttl: u32,
        /// Write the config here (atomically, mode 0600) instead of standard output
        #[arg(long = "output", value_name = "FILE")]
        output_file: Option<PathBuf>,
    },
    /// Simulate the config's VPC in network namespaces and test it with real packets
    Sandbox {
        /// Keep the namespaces afterwards (prints how to enter them)
        #[arg(long)]
        keep: bool,
    },
    /// What on this host would fight eniroute, each with the fix; exit 1 when something would
    Doctor {
        /// Read the host's files below this directory instead of / (tests)
        #[arg(long, hide = true, value_name = "DIR", default_value = "/")]
        root: PathBuf,
    },
    /// The whole desired state (an `ip -batch` script, or JSON)
    Render {
        /// ip: an `ip -batch` script [default: ip; json with -o json]
        #[arg(long, value_enum)]
        format: Option<RenderFormat>,
    },
    /// A shell completion script (bash: source it, or install it as
    /// /usr/share/bash-completion/completions/eniroute)
    Completions {
        #[arg(value_enum)]
        shell: crate::manual::Shell,
    },
}

/// How long a verb that changes the kernel waits for another eniroute.
#[derive(clap::Args, Debug, Clone, Copy)]
struct LockArgs {
    /// Wait this long for another eniroute's lock (0: fail at once)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    lock_timeout: Duration,
}

impl LockArgs {
    fn wait(self, out: output::Out, give_up: Option<Arc<AtomicBool>>) -> ops::LockWait {
        ops::LockWait {
            timeout: self.lock_timeout,
            waiting: Box::new(move |h| output::lock_waiting(&out, h)),
            give_up,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum RenderFormat {
    Ip,
    Json,
}

/// The clap definition of the command line (the man pages and completions are made from it).
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// Parse arguments and run; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    exit::OK
                }
                _ => exit::USAGE,
            };
            let _ = e.print();
            if let Some(hint) = usage_hint(&e) {
                eprintln!("{hint}");
            }
            return code;
        }
    };
    run(&cli)
}

/// A hint after clap's own message, for the mistakes people make.
fn usage_hint(e: &clap::Error) -> Option<&'static str> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(a)) => a.as_str(),
        _ => return None,
    };
    (e.kind() == ErrorKind::InvalidValue && arg.contains("--output-format")).then_some(
        "hint: -o is the output format (text or json); discover writes its config to a file \
         with --output FILE",
    )
}

/// A global flag that the verb cannot honour: refused (exit 64) rather than ignored.
fn refused_flag(cli: &Cli) -> Option<String> {
    let verb = match &cli.command {
        Command::Sandbox { .. } => "sandbox",
        Command::Discover { .. } => "discover",
        Command::Completions { .. } => "completions",
        Command::Render {
            format: Some(RenderFormat::Ip),
        } if cli.output == Format::Json => {
            return Some("render: --format ip and -o json disagree; give one of them".into());
        }
        _ => return None,
    };
    if cli.netns.is_some() {
        return Some(format!(
            "{verb} does not use --netns{}",
            if verb == "sandbox" {
                " (it builds namespaces of its own; see --keep)"
            } else {
                ""
            }
        ));
    }
    if cli.output == Format::Json && verb != "sandbox" {
        return Some(format!(
            "{verb} has no JSON output (-o json){}",
            if verb == "discover" {
                ": it writes a TOML config; check it with `eniroute -o json validate`"
            } else {
                ""
            }
        ));
    }
    None
}

/// The verb's name, as JSON's `command`.
fn verb(c: &Command) -> &'static str {
    match c {
        Command::Validate => "validate",
        Command::Plan { .. } => "plan",
        Command::Apply { .. } => "apply",
        Command::Confirm => "confirm",
        Command::Status => "status",
        Command::Flush { .. } => "flush",
        Command::Discover { .. } => "discover",
        Command::Sandbox { .. } => "sandbox",
        Command::Render { .. } => "render",
        Command::Completions { .. } => "completions",
        Command::Doctor { .. } => "doctor",
        Command::Watch { .. } => "watch",
    }
}

/// Run a parsed command line.
fn run(cli: &Cli) -> i32 {
    output::set_command(verb(&cli.command));
    let out = output::Out::new(cli.output, cli.verbose, cli.quiet);
    if let Some(msg) = refused_flag(cli) {
        out.error(&msg);
        return exit::USAGE;
    }
    match &cli.command {
        Command::Validate => validate(cli, &out),
        Command::Render { format } => {
            let json = *format == Some(RenderFormat::Json) || cli.output == Format::Json;
            render(
                cli,
                &out,
                if json {
                    RenderFormat::Json
                } else {
                    RenderFormat::Ip
                },
            )
        }
        Command::Discover {
            provider,
            endpoint,
            token_ttl,
            output_file,
        } => discover(
            &out,
            (provider, endpoint.as_deref()),
            *token_ttl,
            output_file.as_deref(),
        ),
        Command::Sandbox { keep } => sandbox(cli, &out, *keep),
        Command::Plan { detailed_exitcode } => with_config(cli, &out, |l, t| {
            let report = ops::plan(&l.config, t)?;
            output::plan(&out, &report);
            Ok(if *detailed_exitcode && !report.is_empty() {
                exit::CHANGES
            } else {
                exit::OK
            })
        }),
        Command::Doctor { root } => doctor(cli, &out, root),
        Command::Apply {
            wait,
            try_window,
            lock,
        } => with_config(cli, &out, |l, t| {
            apply(&out, l, t, *wait, *try_window, *lock)
        }),
        Command::Confirm => {
            let target = Target {
                netns: cli.netns.clone(),
            };
            match ops::confirm(&target) {
                Ok(c) => {
                    output::confirmed(&out, &c);
                    exit::OK
                }
                Err(e) => fail(&out, &e),
            }
        }
        Command::Status => with_config(cli, &out, |l, t| {
            let report = ops::status(&l.config, t)?;
            output::status(&out, &report);
            Ok(if report.healthy() {
                exit::OK
            } else {
                exit::FAILED
            })
        }),
        Command::Flush { lock } => flush(cli, &out, *lock),
        Command::Watch { resync, lock } => watch(cli, &out, *resync, *lock),
        Command::Completions { shell } => {
            use std::io::Write;
            let script = crate::manual::completion(*shell, command());
            match std::io::stdout().write_all(&script) {
                Ok(()) => exit::OK,
                Err(e) => {
                    out.error(&format!("cannot write the completion script: {e}"));
                    exit::FAILED
                }
            }
        }
    }
}

/// `apply`, or `apply --try`.
fn apply(
    out: &output::Out,
    l: &Loaded,
    t: &Target,
    wait: Option<Duration>,
    try_window: Option<Duration>,
    lock: LockArgs,
) -> Result<i32, OpError> {
    // Once per apply: what on the host will undo what it is about to do (-q silences the
    // warnings, so the checks are skipped too).
    if !out.quiet {
        let root = std::path::Path::new("/");
        // (a missing namespace is apply's own error, reported next)
        if let Ok(found) = crate::doctor::inspect(Some(&l.config), &l.path, root, t) {
            output::doctor_warnings(out, &found);
        }
    }
    // SIGTERM, SIGINT and SIGHUP stop the pass, which then rolls back (a second signal
    // changes nothing until the rollback ends).
    let interrupted = stop_on_signals();
    let opts = ops::ApplyOptions {
        wait,
        interrupted: Some(interrupted.clone()),
        progress: Some(output::wait_progress(out)),
        trace: output::batch_trace(out),
        skip_mark_scan: false,
    };
    let lock = lock.wait(*out, Some(interrupted));
    let Some(window) = try_window else {
        let report = ops::apply(&l.config, t, &opts, lock)?;
        output::applied(out, &report);
        return Ok(exit::OK);
    };
    // SIGUSR1 is `eniroute confirm`; Enter counts only once the window is open.
    let confirmed = Arc::new(AtomicBool::new(false));
    let _ = signal_hook::flag::register(signal_hook::consts::SIGUSR1, confirmed.clone());
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let on_enter = confirmed.clone();
    let t_opts = ops::TryOptions {
        window,
        confirmed,
        netns: t.netns.clone(),
        config: l.path.clone(),
        // Listening first, then the prompt: an Enter typed after the prompt always counts.
        on_window: Some(Box::new(move |p| {
            if tty {
                confirm_on_enter(on_enter.clone());
            }
            output::try_window(p, window, tty);
        })),
    };
    let report = ops::apply_try(&l.config, t, &opts, t_opts, lock)?;
    output::tried(out, &report);
    Ok(exit::OK)
}

/// Set `flag` when a line is typed on the terminal from now on: what was typed before the
/// window opened is discarded (an early Enter must not confirm a routing not yet seen).
fn confirm_on_enter(flag: Arc<AtomicBool>) {
    use std::io::BufRead;
    let _ = nix::sys::termios::tcflush(std::io::stdin(), nix::sys::termios::FlushArg::TCIFLUSH);
    // The thread stays blocked on the terminal until the process ends; a read error or end of
    // input confirms nothing.
    let _ = std::thread::Builder::new()
        .name("eniroute-enter".into())
        .spawn(move || {
            let mut line = String::new();
            if matches!(std::io::stdin().lock().read_line(&mut line), Ok(n) if n > 0) {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        });
}

/// `--try`'s window: a duration between [`ops::MIN_WINDOW`] and [`ops::MAX_WINDOW`].
fn parse_try_window(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < ops::MIN_WINDOW || d > ops::MAX_WINDOW {
        return Err(format!(
            "the window must be between {} and {}",
            humantime::format_duration(ops::MIN_WINDOW),
            humantime::format_duration(ops::MAX_WINDOW)
        ));
    }
    Ok(d)
}

/// `watch`: the daemon. Tells systemd READY=1 after the first convergence, STATUS= lines,
/// and WATCHDOG=1 when the unit sets WatchdogSec=.
fn watch(cli: &Cli, out: &output::Out, resync: Duration, lock: LockArgs) -> i32 {
    use sd_notify::NotifyState;
    // Flags first, so that a signal from now on never kills the process.
    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for sig in [SIGTERM, SIGINT] {
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    let _ = signal_hook::flag::register(SIGHUP, reload.clone());
    let opts = ops::WatchOptions {
        resync: resync.max(Duration::from_secs(1)),
        lock_timeout: lock.lock_timeout,
        // systemd wants a ping at least every WatchdogSec: send one every half of it.
        keepalive: sd_notify::watchdog_enabled().map(|d| d / 2),
        ready_grace: Duration::from_secs(60),
        config_path: cli.config_path(),
        stop: stop.clone(),
        reload,
        pending: Arc::new(std::sync::Mutex::new(None)),
    };
    let o = *out;
    let on = Box::new(move |e: &ops::WatchEvent| {
        let status = output::watch_event(&o, e);
        let mut states = Vec::new();
        if matches!(
            e,
            ops::WatchEvent::Converged(_) | ops::WatchEvent::ReadyWaiting
        ) {
            states.push(NotifyState::Ready);
        }
        if matches!(e, ops::WatchEvent::Alive) {
            states.push(NotifyState::Watchdog);
        }
        if matches!(e, ops::WatchEvent::Stopping) {
            states.push(NotifyState::Stopping);
        }
        if let Some(s) = &status {
            states.push(NotifyState::Status(s));
        }
        if !states.is_empty() {
            let _ = sd_notify::notify(&states);
        }
    });
    let (loaded, source) = match load_with_source(cli, out) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let target = Target {
        netns: cli.netns.clone(),
    };
    if let Some(source) = source {
        refresh_metadata(cli, *out, source, &target, &opts.pending, stop);
    }
    match ops::watch(&loaded.config, &target, opts, on) {
        Ok(()) => exit::OK,
        Err(e) => fail(out, &e),
    }
}

/// `[discover]` under watch: on a thread of its own (in this namespace, where the metadata
/// service is reachable), read the metadata every `refresh` (jittered, backing off on
/// failures, never acting on a partial or failed answer: the refresher keeps the last good
/// one) and hand each new valid config to the daemon, woken with SIGHUP.
fn refresh_metadata(
    cli: &Cli,
    out: output::Out,
    mut source: crate::discover::MetadataSource,
    target: &Target,
    pending: &Arc<std::sync::Mutex<Option<Loaded>>>,
    stop: Arc<AtomicBool>,
) {
    use crate::discover::Tick;
    let (path, target, pending) = (cli.config_path(), target.clone(), pending.clone());
    let shown = path.display().to_string();
    let spawned = std::thread::Builder::new()
        .name("eniroute-metadata".into())
        .spawn(move || {
            let sleep_until = |t: std::time::Instant| {
                std::thread::sleep(t.saturating_duration_since(std::time::Instant::now()))
            };
            loop {
                // Read the file and the links only when the metadata is due.
                sleep_until(source.next_due());
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let text = config::read_text(&path).unwrap_or_default();
                let links = ops::host_links(&target).unwrap_or_default();
                match source.tick(&text, &shown, &links) {
                    Tick::NotDue { .. } => {}
                    Tick::Unchanged => {}
                    Tick::Apply(loaded) => {
                        if let Ok(mut p) = pending.lock() {
                            *p = Some(*loaded);
                        }
                        let me = nix::unistd::getpid();
                        let _ = nix::sys::signal::kill(me, nix::sys::signal::Signal::SIGHUP);
                    }
                    Tick::Kept { warning, retry_at } => {
                        out.warn(&format!(
                            "[discover]: {warning}; the routing stays as it is"
                        ));
                        sleep_until(retry_at);
                    }
                    Tick::Invalid(e) => out.config_error(&e),
                }
            }
        });
    if let Err(e) = spawned {
        out.warn(&format!(
            "[discover]: cannot start the metadata refresh: {e}"
        ));
    }
}

fn render(cli: &Cli, out: &output::Out, format: RenderFormat) -> i32 {
    let loaded = match load(cli, out) {
        Ok(l) => l,
        Err(code) => return code,
    };
    // The links of this host (or of --netns) give the real interface names, found by MAC;
    // without them the config's names are used, and render says which ENIs that makes
    // unloadable.
    let target = Target {
        netns: cli.netns.clone(),
    };
    let links = match ops::host_links(&target) {
        Ok(l) => Some(l),
        Err(e) if cli.netns.is_some() => return fail(out, &e),
        Err(e) => {
            out.warn(&format!("cannot list this host's interfaces ({e})"));
            None
        }
    };
    let desired = plan::desired(&loaded.config, links.as_deref());
    output::render_unresolved(out, &loaded.config, &desired, links.is_some());
    match format {
        RenderFormat::Ip => print!("{}", render::ip_script(&desired)),
        RenderFormat::Json => output::print_json(&desired),
    }
    exit::OK
}

fn doctor(cli: &Cli, out: &output::Out, root: &std::path::Path) -> i32 {
    // Without a config file the host-wide checks still run (the report says so).
    let loaded = if cli.config_path().exists() {
        match load(cli, out) {
            Ok(l) => Some(l),
            Err(code) => return code,
        }
    } else {
        None
    };
    let target = Target {
        netns: cli.netns.clone(),
    };
    let path = cli.config_path().display().to_string();
    let report =
        match crate::doctor::inspect(loaded.as_ref().map(|l| &l.config), &path, root, &target) {
            Ok(r) => r,
            Err(e) => return fail(out, &e),
        };
    output::doctor(out, &report);
    if report.clean() {
        exit::OK
    } else {
        exit::FAILED
    }
}

fn flush(cli: &Cli, out: &output::Out, lock: LockArgs) -> i32 {
    // flush needs only the protocol tag: without a config file it uses the default.
    let default = crate::model::Routing::default().protocol;
    let proto = if cli.config_path().exists() {
        match flush_protocol(cli, out) {
            Ok(p) => p,
            Err(code) => return code,
        }
    } else {
        out.warn(&format!(
            "{} not found: flushing objects tagged with the default protocol {default}",
            cli.config_path().display(),
        ));
        default
    };
    let target = Target {
        netns: cli.netns.clone(),
    };
    match ops::flush(proto, &target, lock.wait(*out, Some(stop_on_signals()))) {
        Ok(r) => {
            output::flushed(out, &r);
            if r.errors.is_empty() {
                exit::OK
            } else {
                exit::FAILED
            }
        }
        Err(e) => fail(out, &e),
    }
}

/// The protocol tag flush removes: from the whole file, or — with `[discover]` — from its
/// `[routing]` alone (flush never needs the metadata).
fn flush_protocol(cli: &Cli, out: &output::Out) -> Result<u8, i32> {
    let path = cli.config_path();
    let shown = path.display().to_string();
    // A file that cannot be read is reported by load (exit 66).
    let text = config::read_text(&path).unwrap_or_default();
    match config::discover_section(&text, &shown) {
        Ok(Some(_)) => config::routing_section(&text, &shown)
            .map(|r| r.protocol)
            .map_err(|e| {
                out.config_error(&e);
                exit::CONFIG
            }),
        _ => load(cli, out).map(|l| l.config.routing.protocol),
    }
}

fn discover(
    out: &output::Out,
    (provider, endpoint): (&str, Option<&str>),
    token_ttl: u32,
    file: Option<&std::path::Path>,
) -> i32 {
    use crate::discover::{self, DiscoverOptions};
    let provider = match provider.parse::<discover::ProviderChoice>() {
        Ok(p) => p,
        Err(e) => {
            out.error(&e);
            return exit::USAGE;
        }
    };
    let opts = DiscoverOptions {
        provider,
        endpoint: endpoint.map(str::to_string),
        token_ttl,
        ..DiscoverOptions::default()
    };
    let found = match discover::discover(&opts) {
        Ok(d) => d,
        Err(e) => {
            out.error(&e.to_string());
            return e.exit_code();
        }
    };
    let text = discover::to_toml(&found);
    // The safety net of a boot step: never print or write a config that does not validate.
    if let Err(e) = config::load_str(&text, "the discovered config") {
        out.error(&format!("discover produced an invalid config (a bug): {e}"));
        return exit::FAILED;
    }
    match file {
        None => print!("{text}"),
        Some(path) => {
            if let Err(e) = discover::write_atomic(path, &text) {
                out.error(&e.to_string());
                return exit::FAILED;
            }
            out.info(&format!(
                "wrote {} ({} ENI(s)); check it with: eniroute -c {} validate",
                path.display(),
                found.enis.len(),
                path.display()
            ));
        }
    }
    exit::OK
}

fn sandbox(cli: &Cli, out: &output::Out, keep: bool) -> i32 {
    use crate::sandbox::{self, SandboxOptions};
    let opts = SandboxOptions::new(cli.config.clone(), keep);
    match sandbox::run(&opts) {
        Ok(report) => {
            // -q: only a failed run's report (which names what failed).
            match out.format {
                Format::Json => output::print_json_ok(report.passed(), &report),
                Format::Text if out.quiet && report.passed() => {}
                Format::Text => print!("{}", report.render_text()),
            }
            if report.passed() {
                exit::OK
            } else {
                exit::FAILED
            }
        }
        Err(e) => {
            out.error(&e.to_string());
            e.exit_code()
        }
    }
}

/// A duration: `30s`, `2m`, `1m30s`; a bare number is seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30s, 2m, 1m30s)"))
}

/// A flag set by SIGTERM, SIGINT and SIGHUP instead of their default action.
fn stop_on_signals() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [SIGTERM, SIGINT, SIGHUP] {
        // Registration fails only for forbidden signals; these three are allowed.
        let _ = signal_hook::flag::register(sig, flag.clone());
    }
    flag
}

/// Load the config, then run `f` against the target; map errors to exit codes.
fn with_config(
    cli: &Cli,
    out: &output::Out,
    f: impl FnOnce(&Loaded, &Target) -> Result<i32, OpError>,
) -> i32 {
    let loaded = match load(cli, out) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let target = Target {
        netns: cli.netns.clone(),
    };
    match f(&loaded, &target) {
        Ok(code) => code,
        Err(e) => fail(out, &e),
    }
}

fn fail(out: &output::Out, e: &OpError) -> i32 {
    output::op_error(out, e);
    e.exit_code()
}

/// Load and validate the config, reporting problems and warnings. Err = the exit code.
fn load(cli: &Cli, out: &output::Out) -> Result<Loaded, i32> {
    load_with_source(cli, out).map(|(l, _)| l)
}

/// [`load`], and the metadata source when the file has `[discover]` (watch refreshes it).
fn load_with_source(
    cli: &Cli,
    out: &output::Out,
) -> Result<(Loaded, Option<crate::discover::MetadataSource>), i32> {
    let (loaded, source) = load_maybe_discovered(cli, out)?;
    match loaded {
        Ok(l) => {
            // Notes (a mode's known limits) belong to validate; warnings to all.
            let notes = matches!(cli.command, Command::Validate);
            let shown: Vec<_> = l
                .warnings
                .iter()
                .filter(|w| notes || !w.note)
                .cloned()
                .collect();
            out.warnings(&l.path, &shown);
            Ok((l, source))
        }
        Err(e) => {
            match &e {
                LoadError::Invalid(c) => out.config_error(c),
                _ => output::config_unreadable(out, &e),
            }
            Err(e.exit_code())
        }
    }
}

/// The file, or — with a `[discover]` section — the file merged with the instance metadata read
/// now (DESIGN §3). A metadata failure is exit 1 and changes nothing. `Err` = the exit code.
type MaybeDiscovered = (
    Result<Loaded, LoadError>,
    Option<crate::discover::MetadataSource>,
);

fn load_maybe_discovered(cli: &Cli, out: &output::Out) -> Result<MaybeDiscovered, i32> {
    use crate::discover::{MetadataSource, SourceError};
    let path = cli.config_path();
    let shown = path.display().to_string();
    let text = match config::read_text(&path) {
        Ok(t) => t,
        Err(e) => return Ok((Err(e), None)),
    };
    let mut source = match MetadataSource::from_file(&text, &shown) {
        Ok(Some(s)) => s,
        Ok(None) => {
            let loaded = config::load_str(&text, &shown).map_err(LoadError::Invalid);
            return Ok((loaded, None));
        }
        Err(e) => return Ok((Err(LoadError::Invalid(e)), None)),
    };
    let target = Target {
        netns: cli.netns.clone(),
    };
    let links = ops::host_links(&target).unwrap_or_else(|e| {
        out.warn(&format!(
            "cannot list the host's links ({e}): exclude matches MACs and labels only"
        ));
        Vec::new()
    });
    match source.load_now(&text, &shown, &links) {
        Ok((loaded, excluded)) => {
            for x in &excluded {
                out.info(&format!("[discover]: not managing {x} (excluded)"));
            }
            Ok((Ok(loaded), Some(source)))
        }
        Err(SourceError::Config(e)) => Ok((Err(LoadError::Invalid(e)), None)),
        Err(e @ SourceError::Metadata(_)) => {
            out.error(&format!("{shown}: {e}"));
            Err(exit::FAILED)
        }
    }
}

fn validate(cli: &Cli, out: &output::Out) -> i32 {
    let loaded = match load(cli, out) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let c = &loaded.config;
    let eips: usize = c.enis.iter().map(|e| e.eips.len()).sum();
    match out.format {
        Format::Json => output::print_json(&serde_json::json!({
            "valid": true,
            "path": loaded.path,
            "warnings": loaded.warnings,
            "config": c,
        })),
        Format::Text => out.info(&format!(
            "{}: valid ({} ENI{}, {} EIP{}{})",
            loaded.path,
            c.enis.len(),
            if c.enis.len() == 1 { "" } else { "s" },
            eips,
            if eips == 1 { "" } else { "s" },
            match &c.egress {
                Some(e) => format!(", egress {:?} over {}", e.strategy, e.via.len()).to_lowercase(),
                None => String::new(),
            }
        )),
    }
    exit::OK
}
