//! Command line: argument parsing, exit codes, and the wiring of each verb.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, LoadError, Loaded};
use crate::output::{self, Format};
use crate::plan;
use crate::render;

/// Exit codes (DESIGN §5).
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const CHANGES: i32 = 2;
    pub const USAGE: i32 = 64;
    pub const CONFIG: i32 = 65;
    pub const NOT_FOUND: i32 = 69;
    pub const LOCKED: i32 = 75;
}

#[derive(Parser, Debug)]
#[command(
    name = "eniroute",
    version,
    about = "Source-based policy routing for every ENI and Elastic IP of a multi-NIC Linux instance"
)]
pub struct Cli {
    /// Configuration file
    #[arg(short = 'c', long = "config", env = "ENIROUTE_CONFIG", global = true,
          default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Run against the named network namespace (/run/netns/NAME)
    #[arg(long, global = true, value_name = "NAME")]
    pub netns: Option<String>,
    /// Output format
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// More detail (repeatable)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check the config; touches nothing, needs no privilege
    Validate,
    /// The whole desired state (an `ip -batch` script, or JSON)
    Render {
        #[arg(long, value_enum, default_value_t = RenderFormat::Ip)]
        format: RenderFormat,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenderFormat {
    Ip,
    Json,
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
            return code;
        }
    };
    run(&cli)
}

/// Run a parsed command line.
pub fn run(cli: &Cli) -> i32 {
    let out = output::Out::new(cli.output, cli.verbose, cli.quiet);
    match &cli.command {
        Command::Validate => validate(cli, &out),
        Command::Render { format } => {
            let loaded = match load(cli, &out) {
                Ok(l) => l,
                Err(code) => return code,
            };
            let desired = plan::plan(&loaded.config, None);
            match format {
                RenderFormat::Ip => print!("{}", render::ip_script(&desired)),
                RenderFormat::Json => println!("{}", render::json(&desired)),
            }
            exit::OK
        }
    }
}

/// Load and validate the config, reporting problems and warnings. Err = the exit code.
pub fn load(cli: &Cli, out: &output::Out) -> Result<Loaded, i32> {
    match config::load_file(&cli.config) {
        Ok(l) => {
            out.warnings(&l.path, &l.warnings);
            Ok(l)
        }
        Err(LoadError::Read { path, source }) => {
            out.error(&format!("cannot read {path}: {source}"));
            Err(exit::CONFIG)
        }
        Err(LoadError::Invalid(e)) => {
            out.config_error(&e);
            Err(exit::CONFIG)
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
