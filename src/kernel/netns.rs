//! Network namespaces: entry (every netlink socket is created on a dedicated OS thread that has
//! called `setns` first, never on a shared tokio worker: a socket belongs to the namespace of the
//! thread that created it) and creation/deletion of named ones, like `ip netns add/delete`.
//! Imports nothing of the crate.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

/// Where named namespaces live (`ip netns add NAME` bind-mounts them here).
pub const NETNS_DIR: &str = "/run/netns";

/// Path of a named network namespace.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

/// Errors of namespace entry.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespace {name:?} not found at {path}: {source}")]
    NotFound {
        name: String,
        path: String,
        source: std::io::Error,
    },
    #[error("cannot enter network namespace {name:?}: {source}")]
    Setns { name: String, source: nix::Error },
    #[error("cannot start a thread for network namespace work: {0}")]
    Thread(std::io::Error),
    #[error("cannot build the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("the namespace worker thread panicked")]
    Panicked,
    /// Creating or deleting a named namespace (`op` says which step) failed.
    #[error("network namespace {name:?}: {op}: {source}")]
    Setup {
        name: String,
        op: String,
        source: std::io::Error,
    },
}

fn setup_error(name: &str, op: &str, source: std::io::Error) -> NetnsError {
    NetnsError::Setup {
        name: name.to_string(),
        op: op.to_string(),
        source,
    }
}

/// Run `f` on a fresh OS thread inside the network namespace `netns` (None = the caller's),
/// with a current-thread tokio runtime owned by that thread. Sockets created inside `f`
/// belong to that namespace.
pub fn run_in_netns<F, Fut, R>(netns: Option<&str>, f: F) -> Result<R, NetnsError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = R>,
    R: Send + 'static,
{
    let ns_file = match netns {
        Some(name) => {
            let path = netns_path(name);
            Some((
                name.to_string(),
                File::open(&path).map_err(|source| NetnsError::NotFound {
                    name: name.to_string(),
                    path: path.display().to_string(),
                    source,
                })?,
            ))
        }
        None => None,
    };
    let handle = std::thread::Builder::new()
        .name("eniroute-netns".into())
        .spawn(move || -> Result<R, NetnsError> {
            if let Some((name, file)) = ns_file {
                setns(&file, CloneFlags::CLONE_NEWNET)
                    .map_err(|source| NetnsError::Setns { name, source })?;
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(NetnsError::Runtime)?;
            Ok(rt.block_on(f()))
        })
        .map_err(NetnsError::Thread)?;
    handle.join().map_err(|_| NetnsError::Panicked)?
}

fn nix_io(e: nix::Error) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

/// Serializes namespace creation inside this process (the /run/netns mount setup is not atomic).
static NETNS_SETUP: Mutex<()> = Mutex::new(());

/// Make /run/netns exist and be a shared mount point, the way `ip netns add` does, so that
/// namespaces bound there are visible from every mount namespace.
fn prepare_netns_dir() -> Result<(), NetnsError> {
    let err = |op: &str, source| setup_error(NETNS_DIR, op, source);
    std::fs::create_dir_all(NETNS_DIR).map_err(|e| err("mkdir", e))?;
    let mut bound = false;
    loop {
        match mount::<str, str, str, str>(
            None,
            NETNS_DIR,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None,
        ) {
            Ok(()) => return Ok(()),
            Err(nix::Error::EINVAL) if !bound => {
                // Not a mount point yet: bind it onto itself, then make it shared.
                mount::<str, str, str, str>(
                    Some(NETNS_DIR),
                    NETNS_DIR,
                    Some("none"),
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None,
                )
                .map_err(|e| err("bind mount onto itself", nix_io(e)))?;
                bound = true;
            }
            Err(e) => return Err(err("make shared mount", nix_io(e))),
        }
    }
}

/// Create the named network namespace `name` (like `ip netns add NAME`): a new namespace,
/// bind-mounted at /run/netns/NAME. Fails if the name is taken.
pub fn create_netns(name: &str) -> Result<(), NetnsError> {
    let err = |op: &str, source| setup_error(name, op, source);
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(err(
            "invalid name",
            std::io::Error::from(std::io::ErrorKind::InvalidInput),
        ));
    }
    let _guard = NETNS_SETUP.lock().unwrap_or_else(|p| p.into_inner());
    prepare_netns_dir()?;
    let path = netns_path(name);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(&path)
        .map_err(|e| err(&format!("create {}", path.display()), e))?;
    let target = path.clone();
    let made = std::thread::Builder::new()
        .name("eniroute-netns-add".into())
        .spawn(move || -> Result<(), (String, std::io::Error)> {
            // unshare affects only this thread, which ends right after the bind mount.
            unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| ("unshare(CLONE_NEWNET)".to_string(), nix_io(e)))?;
            mount::<str, Path, str, str>(
                Some("/proc/thread-self/ns/net"),
                target.as_path(),
                Some("none"),
                MsFlags::MS_BIND,
                None,
            )
            .map_err(|e| (format!("bind mount onto {}", target.display()), nix_io(e)))
        })
        .map_err(|e| err("spawn thread", e))?
        .join();
    let result = match made {
        Ok(Ok(())) => Ok(()),
        Ok(Err((op, e))) => Err(err(&op, e)),
        Err(_) => Err(err(
            "namespace creation thread panicked",
            std::io::Error::other("panic"),
        )),
    };
    if result.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    result
}

/// Delete the named network namespace (like `ip netns delete NAME`): unmount and unlink.
/// The namespace itself goes away once nothing uses it any more.
pub fn delete_netns(name: &str) -> Result<(), NetnsError> {
    let path = netns_path(name);
    let err = |op: &str, source| setup_error(name, op, source);
    match umount2(&path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(err(&format!("umount {}", path.display()), nix_io(e))),
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err(&format!("unlink {}", path.display()), e)),
    }
}

/// Whether /run/netns/NAME exists.
pub fn netns_exists(name: &str) -> bool {
    netns_path(name).exists()
}
