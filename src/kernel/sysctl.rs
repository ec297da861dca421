//! Sysctls under /proc/sys: read and write. Must run on a thread inside the target network
//! namespace: /proc/sys/net shows the namespace of the thread that opens it.

use std::fs;
use std::path::{Path, PathBuf};

use crate::model::sysctl_name;

const PROC_SYS: &str = "/proc/sys";

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
}

fn file(path: &str) -> PathBuf {
    Path::new(PROC_SYS).join(path)
}

/// The current value of a sysctl (trimmed).
pub fn read(path: &str) -> Result<String, SysctlError> {
    fs::read_to_string(file(path))
        .map(|s| s.trim().to_string())
        .map_err(|source| SysctlError::Read {
            name: sysctl_name(path),
            source,
        })
}

/// Write a sysctl.
pub fn write(path: &str, value: &str) -> Result<(), SysctlError> {
    fs::write(file(path), value).map_err(|source| SysctlError::Write {
        name: sysctl_name(path),
        value: value.to_string(),
        source,
    })
}
