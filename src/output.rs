//! Output: text for people (stdout; messages and warnings on stderr) or JSON for programs.

use clap::ValueEnum;
use serde::Serialize;

use crate::config::{ConfigError, Warning};

/// `-o text|json`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Text,
    Json,
}

/// Where and how much to print.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub format: Format,
    pub verbose: u8,
    pub quiet: bool,
}

impl Out {
    pub fn new(format: Format, verbose: u8, quiet: bool) -> Self {
        Out {
            format,
            verbose,
            quiet,
        }
    }

    /// A result line for people (text mode only; silenced by -q).
    pub fn info(&self, msg: &str) {
        if self.format == Format::Text && !self.quiet {
            println!("{msg}");
        }
    }

    /// Progress detail on stderr, shown with -v.
    pub fn detail(&self, msg: &str) {
        if self.verbose > 0 && !self.quiet {
            eprintln!("{msg}");
        }
    }

    /// Warnings and notes always go to stderr (unless -q), in both formats.
    pub fn warnings(&self, path: &str, warnings: &[Warning]) {
        if self.quiet {
            return;
        }
        for w in warnings {
            let kind = if w.note { "note" } else { "warning" };
            if w.line > 0 {
                eprintln!("{kind}: {path}:{}: {}", w.line, w.message);
            } else {
                eprintln!("{kind}: {path}: {}", w.message);
            }
        }
    }

    pub fn warn(&self, msg: &str) {
        if !self.quiet {
            eprintln!("warning: {msg}");
        }
    }

    /// An error: stderr in text mode; a JSON object on stdout in JSON mode.
    pub fn error(&self, msg: &str) {
        match self.format {
            Format::Text => eprintln!("error: {msg}"),
            Format::Json => print_json(&serde_json::json!({ "error": msg })),
        }
    }

    /// An invalid config: every problem.
    pub fn config_error(&self, e: &ConfigError) {
        match self.format {
            Format::Text => {
                eprintln!("error: invalid configuration {}", e.path);
                for line in e.to_string().lines() {
                    eprintln!("  {line}");
                }
            }
            Format::Json => print_json(&serde_json::json!({
                "valid": false,
                "path": e.path,
                "problems": e.problems,
            })),
        }
    }
}

/// Print a value as pretty JSON on stdout.
pub fn print_json<T: Serialize>(v: &T) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: cannot encode JSON: {e}"),
    }
}
