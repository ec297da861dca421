//! eniroute's own state on the host, all of it under /run/eniroute/: one directory per network
//! namespace holding the saved sysctls and the lock. No kernel objects here (those carry their
//! ownership themselves); imports only `exit`.

use std::collections::BTreeMap;
use std::fs::{self, File, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::exit::{self, ExitCode};

/// Where eniroute keeps its per-namespace state.
const RUN_DIR: &str = "/run/eniroute";

/// Errors of the host state.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot save eniroute state in {path}: {source}")]
    State {
        path: String,
        source: std::io::Error,
    },
    #[error("another eniroute holds the lock {0}")]
    Locked(String),
    #[error("cannot take the lock {path}: {source}")]
    Lock {
        path: String,
        source: std::io::Error,
    },
}

impl ExitCode for HostError {
    fn exit_code(&self) -> i32 {
        match self {
            HostError::Locked(_) => exit::LOCKED,
            HostError::State { .. } | HostError::Lock { .. } => exit::FAILED,
        }
    }
}

/// The state directory of one network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    dir: PathBuf,
}

/// The lock of a namespace, held until dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl State {
    /// The current thread's namespace: /run/eniroute/netns-<id>, where the id is the
    /// namespace's cookie (unique for the boot), so a namespace never inherits the state of an
    /// earlier one. Must be called on a thread inside the namespace.
    pub fn current() -> Result<State, HostError> {
        let id = current_netns_id().map_err(|source| HostError::State {
            path: "the network namespace's cookie".into(),
            source,
        })?;
        Ok(State::at(Path::new(RUN_DIR).join(format!("netns-{id}"))))
    }

    /// A state directory at `dir` (tests).
    pub fn at(dir: impl Into<PathBuf>) -> State {
        State { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Remove the whole directory (a namespace about to be deleted leaves nothing behind).
    pub fn remove(&self) {
        let _ = fs::remove_dir_all(&self.dir);
    }

    fn saved_path(&self) -> PathBuf {
        self.dir.join("sysctl.json")
    }

    /// The saved sysctls (a missing or unreadable file is an empty set: nothing to restore).
    pub fn saved(&self) -> Saved {
        fs::read(self.saved_path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Save atomically; an empty set removes the file.
    pub fn store(&self, saved: &Saved) -> Result<(), HostError> {
        let path = self.saved_path();
        let err = |source| HostError::State {
            path: path.display().to_string(),
            source,
        };
        if saved.values.is_empty() {
            return match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(err(e)),
                _ => Ok(()),
            };
        }
        fs::create_dir_all(&self.dir).map_err(err)?;
        let tmp = self.dir.join("sysctl.json.tmp");
        let body = serde_json::to_vec_pretty(saved).map_err(|e| err(e.into()))?;
        let mut f = File::create(&tmp).map_err(err)?;
        f.write_all(&body).map_err(err)?;
        f.sync_all().map_err(err)?;
        fs::rename(&tmp, &path).map_err(err)
    }

    /// Take the namespace's lock (two eniroute processes never interleave).
    pub fn lock(&self) -> Result<Lock, HostError> {
        let path = self.dir.join("lock");
        let shown = path.display().to_string();
        let err = |source| HostError::Lock {
            path: shown.clone(),
            source,
        };
        fs::create_dir_all(&self.dir).map_err(err)?;
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(err)?;
        match f.try_lock() {
            Ok(()) => Ok(Lock { _file: f }),
            Err(TryLockError::WouldBlock) => Err(HostError::Locked(shown)),
            Err(TryLockError::Error(e)) => Err(err(e)),
        }
    }
}

/// Values found before eniroute's first change, by sysctl path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub values: BTreeMap<String, String>,
}

/// SO_NETNS_COOKIE (asm-generic value; Linux 5.14+).
const SO_NETNS_COOKIE: nix::libc::c_int = 71;

/// A stable identity of the current thread's network namespace, unique for the whole boot:
/// the kernel's namespace cookie (never reused, unlike the namespace's inode number, which a
/// new namespace may get once the old one is gone). Falls back to `ino-<inode>` on kernels
/// older than 5.14.
fn current_netns_id() -> std::io::Result<String> {
    use std::os::fd::AsRawFd;
    let sock = std::os::unix::net::UnixDatagram::unbound()?;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as nix::libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cookie`, a live u64, and the fd is
    // owned by `sock` for the duration of the call.
    let rc = unsafe {
        nix::libc::getsockopt(
            sock.as_raw_fd(),
            nix::libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc == 0 && len as usize == std::mem::size_of::<u64>() {
        return Ok(format!("cookie-{cookie}"));
    }
    use std::os::unix::fs::MetadataExt;
    Ok(format!(
        "ino-{}",
        std::fs::metadata("/proc/thread-self/ns/net")?.ino()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_sysctls_round_trip_and_empty_removes_the_file() {
        let dir = std::env::temp_dir().join(format!("eniroute-host-{}", std::process::id()));
        let st = State::at(&dir);
        assert_eq!(st.saved(), Saved::default());
        let mut s = Saved::default();
        s.values
            .insert("net/ipv4/conf/eth1/rp_filter".into(), "1".into());
        st.store(&s).unwrap();
        assert_eq!(st.saved(), s);
        st.store(&Saved::default()).unwrap();
        assert!(!st.saved_path().exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_second_lock_is_refused_while_the_first_is_held() {
        let dir = std::env::temp_dir().join(format!("eniroute-lock-{}", std::process::id()));
        let st = State::at(&dir);
        let held = st.lock().unwrap();
        assert!(matches!(st.lock(), Err(HostError::Locked(_))));
        drop(held);
        assert!(st.lock().is_ok());
        let _ = fs::remove_dir_all(&dir);
    }
}
