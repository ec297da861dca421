//! Removing the state directories of network namespaces that are gone. A directory is keyed
//! by the namespace's cookie, which is never reused, so nothing else would ever remove it; it
//! also records the namespace's inode, and a namespace is alive while a process is in it, a
//! file descriptor holds it, or a bind mount (nsfs) keeps it.

use std::collections::HashSet;
use std::fs::{self, File};
use std::path::Path;

/// The file in a state directory that names its namespace's inode.
pub(super) const IDENTITY: &str = "netns";

/// The inode in a `net:[4026531992]` link or mount root.
fn net_inode(s: &str) -> Option<u64> {
    s.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// The namespaces some thread is in, or some bind mount (nsfs) keeps: cheap to list.
fn entered_or_mounted() -> HashSet<u64> {
    let mut live = HashSet::new();
    for pid in processes() {
        // A thread may be in another namespace than its process (eniroute's own are).
        for task in fs::read_dir(pid.join("task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            live.extend(link(&task.path().join("ns/net")));
        }
    }
    // Field 4 of mountinfo is the mount's root: `net:[N]` for an nsfs mount.
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    live.extend(
        mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(3))
            .filter_map(net_inode),
    );
    live
}

/// The namespaces held by an open file descriptor: dearer (every fd of every process), so
/// asked only about the candidates left.
fn held_open(candidates: &HashSet<u64>) -> HashSet<u64> {
    let mut held = HashSet::new();
    for pid in processes() {
        for fd in fs::read_dir(pid.join("fd")).into_iter().flatten().flatten() {
            held.extend(link(&fd.path()).filter(|i| candidates.contains(i)));
        }
    }
    held
}

fn processes() -> impl Iterator<Item = std::path::PathBuf> {
    (fs::read_dir("/proc").into_iter().flatten().flatten())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .map(|e| e.path())
}

fn link(p: &Path) -> Option<u64> {
    fs::read_link(p).ok().and_then(|t| net_inode(t.to_str()?))
}

/// The state directories under `run_dir` that record a namespace other than `current`.
fn recorded(run_dir: &Path, current: Option<u64>) -> Vec<(std::path::PathBuf, u64)> {
    (fs::read_dir(run_dir).into_iter().flatten().flatten())
        .filter(|e| e.file_name().to_string_lossy().starts_with("netns-"))
        .filter_map(|e| {
            let ino = fs::read_to_string(e.path().join(IDENTITY)).ok()?;
            Some((e.path(), ino.trim().parse::<u64>().ok()?))
        })
        .filter(|(_, ino)| Some(*ino) != current)
        .collect()
}

/// Remove every `netns-*` directory under `run_dir` whose recorded namespace is gone and
/// whose lock nobody holds. Directories without a record (older versions) are kept. Nothing
/// is scanned when no other namespace has a directory (the usual host).
pub(super) fn sweep(run_dir: &Path, current: Option<u64>) -> Vec<String> {
    let mut dirs = recorded(run_dir, current);
    if dirs.is_empty() {
        return Vec::new();
    }
    let live = entered_or_mounted();
    dirs.retain(|(_, ino)| !live.contains(ino));
    let held = held_open(&dirs.iter().map(|(_, i)| *i).collect());
    let mut removed = Vec::new();
    for (dir, ino) in dirs.into_iter().filter(|(_, i)| !held.contains(i)) {
        // A process in the middle of a run holds the lock: leave it be.
        let locked = File::open(dir.join("lock")).is_ok_and(|f| f.try_lock().is_err());
        if !locked && fs::remove_dir_all(&dir).is_ok() {
            removed.push(format!("{} (namespace {ino})", dir.display()));
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dead_recorded_unlocked_namespaces_are_swept() {
        let root = std::env::temp_dir().join(format!("eniroute-sweep-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let mk = |name: &str, ino: Option<u64>| {
            let d = root.join(name);
            fs::create_dir_all(&d).unwrap();
            if let Some(i) = ino {
                fs::write(d.join(IDENTITY), format!("{i}\n")).unwrap();
            }
            d
        };
        mk("netns-cookie-1", Some(11));
        mk("netns-cookie-2", Some(22));
        mk("netns-cookie-3", None);
        let locked = mk("netns-cookie-4", Some(44));
        let lock = File::create(locked.join("lock")).unwrap();
        lock.lock().unwrap();
        mk("other", Some(55));
        // 11 and 44 are no namespace's inode; 22 is "the current one", never swept.
        let removed = sweep(&root, Some(22));
        assert_eq!(removed.len(), 1, "{removed:?}");
        assert!(!root.join("netns-cookie-1").exists());
        for kept in [
            "netns-cookie-2",
            "netns-cookie-3",
            "netns-cookie-4",
            "other",
        ] {
            assert!(root.join(kept).exists(), "{kept}");
        }
        assert_eq!(net_inode("net:[4026531992]"), Some(4026531992));
        let mine = link(Path::new("/proc/thread-self/ns/net")).unwrap();
        assert!(
            entered_or_mounted().contains(&mine),
            "this thread's namespace is alive"
        );
        assert!(sweep(&root, Some(22)).is_empty(), "nothing left to sweep");
        let _ = fs::remove_dir_all(&root);
    }
}
