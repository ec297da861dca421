//! Sysctls: read, compare, write; the value eniroute found before its first change is saved
//! under /run/eniroute/<namespace>/ so that flush (or an apply that no longer wants it) puts it
//! back. Must run on a thread inside the target network namespace: /proc/sys/net shows the
//! namespace of the thread that opens it.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::state::Sysctl;

const PROC_SYS: &str = "/proc/sys";
/// Where eniroute keeps its per-namespace state (saved sysctls, the lock).
pub const RUN_DIR: &str = "/run/eniroute";

#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error("cannot read sysctl {name}: {source}")]
    Read {
        name: String,
        source: std::io::Error,
    },
    #[error("cannot write sysctl {name} = {value}: {source}")]
    Write {
        name: String,
        value: String,
        source: std::io::Error,
    },
    #[error("cannot save eniroute state in {path}: {source}")]
    State {
        path: String,
        source: std::io::Error,
    },
}

/// A sysctl that differs from what is wanted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SysctlChange {
    pub path: String,
    pub name: String,
    pub old: String,
    pub new: String,
}

fn file(path: &str) -> PathBuf {
    Path::new(PROC_SYS).join(path)
}

/// The sysctl(8) name of a path below /proc/sys.
pub fn display_name(path: &str) -> String {
    Sysctl {
        path: path.to_string(),
        value: String::new(),
    }
    .name()
}

/// The current value of a sysctl (trimmed).
pub fn read(path: &str) -> Result<String, SysctlError> {
    fs::read_to_string(file(path))
        .map(|s| s.trim().to_string())
        .map_err(|source| SysctlError::Read {
            name: display_name(path),
            source,
        })
}

/// Write a sysctl.
pub fn write(path: &str, value: &str) -> Result<(), SysctlError> {
    fs::write(file(path), value).map_err(|source| SysctlError::Write {
        name: display_name(path),
        value: value.to_string(),
        source,
    })
}

/// Compare wanted values with the kernel's; only differences are returned.
pub fn diff(wanted: &[Sysctl]) -> Result<Vec<SysctlChange>, SysctlError> {
    let mut out = Vec::new();
    for s in wanted {
        let old = read(&s.path)?;
        if old != s.value {
            out.push(SysctlChange {
                path: s.path.clone(),
                name: s.name(),
                old,
                new: s.value.clone(),
            });
        }
    }
    Ok(out)
}

/// The directory of this network namespace's state: /run/eniroute/netns-<id>, where the id is
/// the namespace's cookie (unique for the boot), so a namespace never inherits the state of
/// an earlier one. Must be called on a thread inside the namespace.
pub fn state_dir() -> Result<PathBuf, SysctlError> {
    let id = crate::kernel::netns::current_netns_id().map_err(|source| SysctlError::State {
        path: "the network namespace's cookie".into(),
        source,
    })?;
    Ok(Path::new(RUN_DIR).join(format!("netns-{id}")))
}

/// Values found before eniroute's first change, by sysctl path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub values: BTreeMap<String, String>,
}

impl Saved {
    fn path(dir: &Path) -> PathBuf {
        dir.join("sysctl.json")
    }

    /// Load (a missing or unreadable file is an empty set: nothing to restore).
    pub fn load(dir: &Path) -> Saved {
        fs::read(Self::path(dir))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Save atomically; an empty set removes the file.
    pub fn store(&self, dir: &Path) -> Result<(), SysctlError> {
        let path = Self::path(dir);
        let err = |source| SysctlError::State {
            path: path.display().to_string(),
            source,
        };
        if self.values.is_empty() {
            return match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(err(e)),
                _ => Ok(()),
            };
        }
        fs::create_dir_all(dir).map_err(err)?;
        let tmp = dir.join("sysctl.json.tmp");
        let body = serde_json::to_vec_pretty(self).map_err(|e| err(e.into()))?;
        let mut f = fs::File::create(&tmp).map_err(err)?;
        f.write_all(&body).map_err(err)?;
        f.sync_all().map_err(err)?;
        fs::rename(&tmp, &path).map_err(err)
    }
}
