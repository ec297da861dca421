//! Teardown on Ctrl-C: every live sandbox registers its namespaces (and temporary files); a
//! SIGINT/SIGTERM handler wakes a watcher thread that deletes them, then exits 128 + signal.
//! Imports only kernel::sim (and the sandbox's own state cleanup).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, Once};

use nix::sys::signal::Signal;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

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

/// A watcher thread that waits for SIGINT or SIGTERM (signal-hook's self-pipe: the handler
/// does nothing but wake it), installed once.
fn install() {
    INSTALL.call_once(|| {
        let Ok(mut signals) = Signals::new([SIGINT, SIGTERM]) else {
            return;
        };
        let _ = std::thread::Builder::new()
            .name("sandbox-signals".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    watch(sig);
                }
            });
    });
}

fn watch(sig: i32) {
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
