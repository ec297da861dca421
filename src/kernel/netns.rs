//! Network-namespace entry: every netlink socket is created on a dedicated OS thread that has
//! called `setns` first, never on a shared tokio worker (a socket belongs to the namespace of the
//! thread that created it, and a worker thread must never change namespace).

use std::fs::File;
use std::path::PathBuf;

use nix::sched::{setns, CloneFlags};

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
