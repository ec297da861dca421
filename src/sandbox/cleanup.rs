//! Teardown on Ctrl-C: every live sandbox registers its namespaces (and temporary files); a
//! SIGINT/SIGTERM handler wakes a watcher thread that deletes them, then exits 128 + signal.
//! Imports only kernel::sim (and the sandbox's own state cleanup).

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Mutex, Once};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::kernel::sim;

/// What to remove for one sandbox.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub namespaces: Vec<String>,
    pub files: Vec<PathBuf>,
    /// Keep the namespaces (--keep): only tell the user where they are.
    pub keep: bool,
    /// A running eniroute child to stop.
    pub child: Option<u32>,
}

static REGISTRY: Mutex<BTreeMap<u64, Entry>> = Mutex::new(BTreeMap::new());
static NEXT: AtomicU64 = AtomicU64::new(1);
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
static INSTALL: Once = Once::new();
/// Set once a signal started the teardown: the process then ends with 128 + signal.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// After a signal, the watcher tears down and exits the process: a run that returns meanwhile
/// (its child was stopped, its namespaces vanished) must not exit first with its own code.
pub fn wait_if_interrupted() {
    while INTERRUPTED.load(Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A registration; removes itself from the registry when dropped (the caller tears down).
pub struct Guard {
    id: u64,
}

impl Guard {
    pub fn update(&self, f: impl FnOnce(&mut Entry)) {
        let mut reg = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = reg.get_mut(&self.id) {
            f(e);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut reg = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
        reg.remove(&self.id);
    }
}

/// Register a sandbox for teardown on SIGINT/SIGTERM (installing the handler once).
pub fn register(entry: Entry) -> Guard {
    install();
    let id = NEXT.fetch_add(1, Ordering::SeqCst);
    REGISTRY
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, entry);
    Guard { id }
}

extern "C" fn on_signal(sig: i32) {
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: `fd` is the write end of the pipe made in `install`, never closed.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let _ = nix::unistd::write(fd, &[sig as u8]);
    }
}

fn install() {
    INSTALL.call_once(|| {
        let Ok((rd, wr)) = nix::unistd::pipe() else {
            return;
        };
        WAKE_FD.store(wr.as_raw_fd(), Ordering::SeqCst);
        std::mem::forget(wr);
        let spawned = std::thread::Builder::new()
            .name("sandbox-signals".into())
            .spawn(move || watch(rd));
        if spawned.is_err() {
            return;
        }
        let action = SigAction::new(
            SigHandler::Handler(on_signal),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        for sig in [Signal::SIGINT, Signal::SIGTERM] {
            // SAFETY: the handler only writes one byte to a pipe (async-signal-safe).
            let _ = unsafe { sigaction(sig, &action) };
        }
    });
}

fn watch(rd: OwnedFd) {
    // SAFETY: we own `rd`; File takes it over.
    let mut f = unsafe { std::fs::File::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(rd)) };
    let mut b = [0u8; 1];
    loop {
        match f.read(&mut b) {
            Ok(1) => break,
            Ok(_) => return,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
    let sig = i32::from(b[0]);
    INTERRUPTED.store(true, Ordering::SeqCst);
    let entries: Vec<Entry> = {
        let mut reg = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *reg).into_values().collect()
    };
    for e in &entries {
        if let Some(pid) = e.child {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        if e.keep {
            eprintln!(
                "eniroute sandbox: interrupted; namespaces kept (--keep): {}",
                e.namespaces.join(", ")
            );
            for ns in &e.namespaces {
                eprintln!("  enter: ip netns exec {ns} bash    delete: ip netns delete {ns}");
            }
            continue;
        }
        for ns in &e.namespaces {
            super::forget_state(ns);
            if let Err(err) = sim::delete_netns(ns) {
                eprintln!("eniroute sandbox: {err}");
            }
        }
        for f in &e.files {
            let _ = std::fs::remove_file(f);
        }
        if let Some(dir) = e.files.first().and_then(|f| f.parent()) {
            let _ = std::fs::remove_dir(dir);
        }
        if !e.namespaces.is_empty() {
            eprintln!(
                "eniroute sandbox: interrupted; removed {}",
                e.namespaces.join(", ")
            );
        }
    }
    std::process::exit(128 + sig);
}
