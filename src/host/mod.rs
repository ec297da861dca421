//! eniroute's own state on the host, all of it under /run/eniroute/: one directory per network
//! namespace holding the saved sysctls and the lock. No kernel objects here (those carry their
//! ownership themselves); imports only `exit` and `model`.

mod lock;
mod saved;
mod sweep;
mod trial;
mod watch;

use std::fs;
use std::path::{Path, PathBuf};

use crate::exit::{self, ExitCode};

pub use lock::{Holder, Lock};
pub use saved::{LinkKey, Saved, SavedSysctl};
pub use trial::{PendingTry, TryOutcome, TryResult};
pub use watch::WatchStatus;

/// Where eniroute keeps its per-namespace state.
const RUN_DIR: &str = "/run/eniroute";

/// Errors of the host state.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot use eniroute state {path}: {source}")]
    State {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "eniroute's saved sysctls {path} cannot be used ({reason}); the file is kept for \
         inspection. It lists the values eniroute found before changing them: put those back by \
         hand (or accept the current values), then remove the file (rm {path}) and run again"
    )]
    Corrupt { path: String, reason: String },
    #[error("another eniroute holds the lock {path}{}", holder.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Locked {
        path: String,
        holder: Option<Holder>,
    },
    #[error("cannot take the lock {path}: {reason}")]
    Lock { path: String, reason: String },
}

impl ExitCode for HostError {
    fn exit_code(&self) -> i32 {
        match self {
            HostError::Locked { .. } => exit::LOCKED,
            HostError::State { .. } | HostError::Corrupt { .. } | HostError::Lock { .. } => {
                exit::FAILED
            }
        }
    }
}

/// The state directory of one network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    dir: PathBuf,
    /// The namespace's inode, recorded in the directory for [`State::sweep`].
    netns_ino: Option<u64>,
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
        use std::os::unix::fs::MetadataExt;
        let ino = fs::metadata("/proc/thread-self/ns/net")
            .map(|m| m.ino())
            .ok();
        Ok(State {
            dir: Path::new(RUN_DIR).join(format!("netns-{id}")),
            netns_ino: ino,
        })
    }

    /// Remove the state of namespaces that are gone (best effort); what was removed.
    pub fn sweep(&self) -> Vec<String> {
        sweep::sweep(Path::new(RUN_DIR), self.netns_ino)
    }

    /// A state directory at `dir` (tests).
    pub fn at(dir: impl Into<PathBuf>) -> State {
        State {
            dir: dir.into(),
            netns_ino: None,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Remove the whole directory (a namespace about to be deleted leaves nothing behind).
    pub fn remove(&self) {
        let _ = fs::remove_dir_all(&self.dir);
    }

    /// Write the file `name` of the directory atomically (a temporary file renamed over it), so
    /// that a reader never sees half of it: the status files of watch and of a try, which
    /// live only as long as their process.
    fn write_atomic(&self, name: &str, body: &[u8]) -> Result<(), HostError> {
        self.write_file(name, body, false)
    }

    /// [`State::write_atomic`], and durable: the file fsync'd before the rename, the directory
    /// after it, so that a crash leaves the old file or the new one (the saved originals).
    fn write_durable(&self, name: &str, body: &[u8]) -> Result<(), HostError> {
        self.write_file(name, body, true)
    }

    fn write_file(&self, name: &str, body: &[u8], durable: bool) -> Result<(), HostError> {
        use std::io::Write;
        let path = self.dir.join(name);
        let fail = |source| HostError::State {
            path: path.display().to_string(),
            source,
        };
        self.ensure_dir().map_err(fail)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(fail)?;
        tmp.write_all(body).map_err(fail)?;
        if durable {
            tmp.as_file().sync_all().map_err(fail)?;
        }
        tmp.persist(&path).map_err(|e| fail(e.error))?;
        if durable {
            // The rename is durable only once the directory is.
            fs::File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(fail)?;
        }
        Ok(())
    }

    /// The directory, created (mode 0700) if it is not there.
    fn ensure_dir(&self) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let identity = self.dir.join(sweep::IDENTITY);
        match self.netns_ino {
            Some(ino) if !identity.exists() => fs::write(identity, format!("{ino}\n")),
            _ => Ok(()),
        }
    }
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

/// The status files of watch and of a try: `key=value` lines, each value one line of at
/// most this many characters.
const MAX_VALUE: usize = 512;

/// The value of `key` in a status file.
fn value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

/// `s` as one status-file value: no newline, at most [`MAX_VALUE`] characters.
fn clean(s: &str) -> String {
    s.chars().filter(|c| *c != '\n').take(MAX_VALUE).collect()
}

/// Whether `pid` is a live eniroute (a dead one, or a pid reused by another program, is not).
fn is_eniroute(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "eniroute")
}
