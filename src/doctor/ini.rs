//! systemd-style configuration files (systemd.syntax(7)): the INI dialect and the precedence of
//! the directories and drop-ins systemd reads. Pure but for reading files below a root.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Files larger than this are not read (a config file never is; a device would never end).
const MAX_FILE: u64 = 1 << 20;

/// One assignment: `[section] key=value`, and the file it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub section: String,
    pub key: String,
    pub value: String,
    pub file: PathBuf,
}

/// Parse systemd's INI dialect: `[Section]` headers, `Key=Value` lines (whitespace around `=`
/// trimmed), comments starting with `#` or `;`, and lines continued by a trailing backslash
/// (a comment inside a continuation is skipped). Lines outside a section are ignored.
pub fn parse(text: &str, file: &Path) -> Vec<Setting> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if !pending.is_empty() && (line.starts_with('#') || line.starts_with(';')) {
            continue;
        }
        if let Some(cont) = line.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        let full = std::mem::take(&mut pending) + line;
        let full = full.trim();
        if full.is_empty() || full.starts_with('#') || full.starts_with(';') {
            continue;
        }
        if let Some(name) = full.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = name.trim().to_string();
            continue;
        }
        if let (Some((k, v)), false) = (full.split_once('='), section.is_empty()) {
            out.push(Setting {
                section: section.clone(),
                key: k.trim().to_string(),
                value: v.trim().to_string(),
                file: file.to_path_buf(),
            });
        }
    }
    out
}

/// systemd's boolean spellings (parse_boolean): None for anything else (systemd then ignores
/// the assignment).
pub fn boolean(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => Some(true),
        "0" | "no" | "n" | "false" | "f" | "off" => Some(false),
        _ => None,
    }
}

/// A file's text when it is a readable regular file of at most 1 MiB (following symlinks).
pub fn read_small(path: &Path) -> Option<String> {
    let meta = fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_FILE {
        return None;
    }
    fs::read_to_string(path).ok()
}

/// A file masked the systemd way: a symlink to /dev/null, or empty.
fn masked(path: &Path) -> bool {
    fs::read_link(path).is_ok_and(|t| t == Path::new("/dev/null"))
        || fs::metadata(path).is_ok_and(|m| m.len() == 0)
}

/// The files named `*.suffix` in `dirs` (relative to `root`, highest priority first), the way
/// systemd collects unit files and drop-ins: one per file name — the one in the highest
/// priority directory — sorted by file name regardless of directory, masked ones left out.
pub fn collect(root: &Path, dirs: &[String], suffix: &str) -> Vec<PathBuf> {
    let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in dirs {
        let Ok(entries) = fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries.flatten().take(10_000) {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(suffix) && !name.starts_with('.') {
                by_name.entry(name).or_insert_with(|| e.path());
            }
        }
    }
    by_name.into_values().filter(|p| !masked(p)).collect()
}

/// Every assignment systemd reads for the main file `name` in `dirs` (highest priority first):
/// the first main file found, then its drop-ins `name.d/*.conf` from all the directories in
/// [`collect`] order. Later assignments override earlier ones.
pub fn load_main_with_dropins(root: &Path, dirs: &[&str], name: &str) -> Vec<Setting> {
    let mut out = Vec::new();
    if let Some(main) = dirs
        .iter()
        .map(|d| root.join(d).join(name))
        .find(|p| p.exists())
    {
        out.extend(
            read_small(&main)
                .map(|t| parse(&t, &main))
                .unwrap_or_default(),
        );
    }
    let dropin_dirs: Vec<String> = dirs.iter().map(|d| format!("{d}/{name}.d")).collect();
    out.extend(load_files(&collect(root, &dropin_dirs, ".conf")));
    out
}

/// The assignments of `files`, in order.
pub fn load_files(files: &[PathBuf]) -> Vec<Setting> {
    files
        .iter()
        .filter_map(|f| read_small(f).map(|t| parse(&t, f)))
        .flatten()
        .collect()
}

/// The effective value of a single-valued setting: the last assignment wins, an empty one
/// resets to the default (None). With the file of that assignment.
pub fn last<'a>(settings: &'a [Setting], section: &str, key: &str) -> Option<&'a Setting> {
    let hit = settings
        .iter()
        .rev()
        .find(|s| s.section == section && s.key == key)?;
    (!hit.value.is_empty()).then_some(hit)
}

/// A list-valued setting: assignments append, an empty one clears what came before.
pub fn list(settings: &[Setting], section: &str, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    for s in settings
        .iter()
        .filter(|s| s.section == section && s.key == key)
    {
        if s.value.is_empty() {
            out.clear();
        }
        out.extend(s.value.split_whitespace().map(str::to_string));
    }
    out
}
