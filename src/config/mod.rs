//! Configuration: the TOML schema of DESIGN §3, and its validation into the typed model.
//!
//! Parsing happens in two steps. serde reads the file into the raw types of `raw` that keep
//! every value's span (so each message names its line) and reject unknown keys; `validate`
//! then checks every rule of DESIGN §2/§3, collecting all problems rather than stopping at the
//! first one. The address rules that discover shares live in `rules`.
//! May import `crate::model` and `crate::exit`; nothing else of the crate.

mod blocks;
mod keys;
mod raw;
pub mod reference;
pub(crate) mod rules;
mod span;
mod validate;

use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::Serialize;

use crate::exit::{self, ExitCode};
use crate::model::{Config, Routing};
use raw::{RawConfig, RawDiscoverOnly, RawRoutingOnly};
use span::LineIndex;
use validate::Validator;

pub use validate::{DiscoverSettings, Excluded, DEFAULT_REFRESH};

/// Default path of the configuration file.
pub const DEFAULT_PATH: &str = "/etc/eniroute/eniroute.toml";

// ---------------------------------------------------------------------------------------------
// Errors and warnings
// ---------------------------------------------------------------------------------------------

/// One problem found in the file, at a line and column (1-based, the column in characters;
/// 0 = the whole file), with the span of the file to show under it and a hint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// How to fix it ("quote addresses and CIDR values: cidr = \"10.0.0.0/24\"").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// What to underline (none: the whole file).
    #[serde(skip)]
    pub excerpts: Vec<Excerpt>,
}

impl Problem {
    /// A problem of the whole file (no line).
    pub fn whole_file(message: impl Into<String>) -> Self {
        Problem {
            message: message.into(),
            ..Problem::default()
        }
    }
}

/// A span of the file to show under a message: the line it starts on, and what to underline.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Excerpt {
    /// 1-based line, and column in characters, of the span's start.
    pub line: usize,
    pub column: usize,
    /// The file (shared by every excerpt of it) and the byte range of the line in it, without
    /// its end of line.
    pub source: std::sync::Arc<str>,
    pub line_range: std::ops::Range<usize>,
    /// The byte range of the line to underline (empty: a point).
    pub mark: std::ops::Range<usize>,
    /// A word under the mark.
    pub label: Option<String>,
}

impl Excerpt {
    /// The line's text.
    pub fn text(&self) -> &str {
        self.source.get(self.line_range.clone()).unwrap_or("")
    }
}

/// The line, not the whole file it is shared with.
impl fmt::Debug for Excerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Excerpt")
            .field("line", &self.line)
            .field("column", &self.column)
            .field("text", &self.text())
            .field("mark", &self.mark)
            .field("label", &self.label)
            .finish()
    }
}

/// An invalid configuration: every problem found, with the file it is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct ConfigError {
    pub path: String,
    pub problems: Vec<Problem>,
}

/// One line per problem, `file:line:column: message (help)`: for logs. People get the
/// problems drawn with their lines by `output`.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if p.line == 0 {
                write!(f, "{}: {}", self.path, p.message)?;
            } else {
                write!(f, "{}:{}:{}: {}", self.path, p.line, p.column, p.message)?;
            }
            if let Some(help) = &p.help {
                write!(f, " ({help})")?;
            }
        }
        Ok(())
    }
}

/// A warning or note: never fails validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub line: usize,
    pub message: String,
    /// A note (information, e.g. a mode's known limits) rather than a warning.
    pub note: bool,
    /// What to underline (none: the whole file).
    #[serde(skip)]
    pub excerpts: Vec<Excerpt>,
}

/// A loaded, valid configuration with the warnings its validation produced.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: String,
    pub config: Config,
    pub warnings: Vec<Warning>,
}

/// The largest config file eniroute reads.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Why a file could not be loaded at all.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// A FIFO, device, socket or directory: refused without reading (a FIFO would block).
    #[error("{path} is {kind}, not a regular file")]
    NotRegular { path: String, kind: &'static str },
    #[error("{path} is {size} bytes: a config file is at most 1 MiB")]
    TooLarge { path: String, size: u64 },
    #[error("{0}")]
    Invalid(#[from] ConfigError),
}

impl ExitCode for LoadError {
    fn exit_code(&self) -> i32 {
        match self {
            LoadError::Read { .. } | LoadError::NotRegular { .. } | LoadError::TooLarge { .. } => {
                exit::NO_INPUT
            }
            LoadError::Invalid(_) => exit::CONFIG,
        }
    }
}

/// Read and validate the file at `path`.
pub fn load_file(path: &Path) -> Result<Loaded, LoadError> {
    let shown = path.display().to_string();
    let text = read_text(path)?;
    Ok(load_str(&text, &shown)?)
}

/// The text of the config file at `path`: a regular file of at most 1 MiB, UTF-8. Every
/// reader of the config file goes through this (a FIFO would otherwise block).
pub fn read_text(path: &Path) -> Result<String, LoadError> {
    let shown = path.display().to_string();
    let bytes = read_bounded(path, &shown)?;
    Ok(decode(&bytes, &shown)?.to_string())
}

/// The file as UTF-8 text; else a config error at the line and column of the first bad byte,
/// the line shown with the byte replaced.
fn decode<'a>(bytes: &'a [u8], path: &str) -> Result<&'a str, ConfigError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let bad = e.valid_up_to();
        let shown = String::from_utf8_lossy(bytes);
        let problem = LineIndex::new(&shown).problem(
            &(bad..bad + 1),
            "the file is not UTF-8 text (an invalid byte here)",
        );
        ConfigError {
            path: path.to_string(),
            problems: vec![problem],
        }
    })
}

/// The text of a regular file of at most `MAX_FILE_BYTES`. Opened non-blocking, so a FIFO is
/// refused at once instead of waiting for a writer; the type is checked on the open file.
fn read_bounded(path: &Path, shown: &str) -> Result<Vec<u8>, LoadError> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let read_err = |source| LoadError::Read {
        path: shown.to_string(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    let t = meta.file_type();
    let kind = if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_char_device() || t.is_block_device() {
        Some("a device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        None
    };
    if let Some(kind) = kind {
        return Err(LoadError::NotRegular {
            path: shown.to_string(),
            kind,
        });
    }
    let too_large = |size| LoadError::TooLarge {
        path: shown.to_string(),
        size,
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large(meta.len()));
    }
    // The size can grow between fstat and read: read one byte more than allowed to notice.
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Validate configuration text; `path` is only used in messages.
pub fn load_str(text: &str, path: &str) -> Result<Loaded, ConfigError> {
    let lines = LineIndex::new(text);
    let invalid = |problems| ConfigError {
        path: path.to_string(),
        problems,
    };
    if let Some(unknown) = keys::unknown_keys(text).filter(|u| !u.is_empty()) {
        let problems = unknown
            .into_iter()
            .map(|u| lines.problem(&u.span, u.message))
            .collect();
        return Err(invalid(problems));
    }
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let message = e.message().trim_end().to_string();
        invalid(vec![match e.span() {
            Some(span) => lines.syntax_error(&span, message),
            None => Problem::whole_file(message),
        }])
    })?;
    let mut v = Validator::new(lines);
    let config = v.config(raw);
    match v.finish(config) {
        Ok((config, warnings)) => Ok(Loaded {
            path: path.to_string(),
            config,
            warnings,
        }),
        Err(problems) => Err(invalid(problems)),
    }
}

/// The file's `[discover]` section, validated (`None`: the file has none, or does not parse —
/// `load_str` then says why). Read on its own, before the merge with the metadata: the
/// `[[eni]]` entries may still be partial then.
pub fn discover_section(text: &str, path: &str) -> Result<Option<DiscoverSettings>, ConfigError> {
    // A file that does not parse is reported by `load_str`, with its line quoted.
    let Ok(raw) = toml::from_str::<RawDiscoverOnly>(text) else {
        return Ok(None);
    };
    let Some(d) = raw.discover else {
        return Ok(None);
    };
    let mut v = Validator::new(LineIndex::new(text));
    let settings = v.discover(&d);
    v.finish_part(settings)
        .map(Some)
        .map_err(|problems| ConfigError {
            path: path.to_string(),
            problems,
        })
}

/// Only the file's `[routing]` section, validated: what `flush` needs, also from a file whose
/// `[[eni]]` entries are completed by the metadata (`[discover]`). A file that does not parse
/// is reported by `load_str`.
pub fn routing_section(text: &str, path: &str) -> Result<Routing, ConfigError> {
    let raw: RawRoutingOnly = match toml::from_str(text) {
        Ok(r) => r,
        Err(_) => return load_str(text, path).map(|l| l.config.routing),
    };
    let Some(r) = raw.routing else {
        return Ok(Routing::default());
    };
    let mut v = Validator::new(LineIndex::new(text));
    let routing = v.routing(r.get_ref());
    v.finish_part(routing).map_err(|problems| ConfigError {
        path: path.to_string(),
        problems,
    })
}

/// Why an address cannot be an EIP, if it cannot.
pub fn not_public(a: Ipv4Addr) -> Option<&'static str> {
    let o = a.octets();
    if a.is_private() {
        Some("RFC 1918 private range")
    } else if a.is_loopback() {
        Some("loopback")
    } else if a.is_link_local() {
        Some("link-local")
    } else if a.is_multicast() {
        Some("multicast")
    } else if a.is_unspecified() || o[0] == 0 {
        Some("'this network' range 0.0.0.0/8")
    } else if a.is_broadcast() {
        Some("broadcast")
    } else if o[0] == 100 && (64..128).contains(&o[1]) {
        Some("shared address space 100.64.0.0/10")
    } else if o[0] >= 240 {
        Some("reserved range 240.0.0.0/4")
    } else {
        None
    }
}
