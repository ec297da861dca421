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

/// The inodes of every network namespace that is alive now.
pub(super) fn live_namespaces() -> HashSet<u64> {
    let mut live = HashSet::new();
    let link = |p: &Path| fs::read_link(p).ok().and_then(|t| net_inode(t.to_str()?));
    for pid in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let dir = pid.path();
        if !pid
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        // A thread may be in another namespace than its process (eniroute's own are).
        for task in fs::read_dir(dir.join("task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            live.extend(link(&task.path().join("ns/net")));
        }
        for fd in fs::read_dir(dir.join("fd")).into_iter().flatten().flatten() {
            live.extend(link(&fd.path()));
        }
    }
    // Bind mounts: field 4 of mountinfo is the mount's root, `net:[N]` for an nsfs mount.
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    live.extend(
        mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(3))
            .filter_map(net_inode),
    );
    live
}

/// Remove every `netns-*` directory under `run_dir` whose recorded namespace is not in `live`
/// and whose lock nobody holds. Directories without a record (older versions) are kept.
pub(super) fn sweep(run_dir: &Path, live: &HashSet<u64>) -> Vec<String> {
    let mut removed = Vec::new();
    for entry in fs::read_dir(run_dir).into_iter().flatten().flatten() {
        let dir = entry.path();
        let named = entry.file_name().to_string_lossy().starts_with("netns-");
        let ino = fs::read_to_string(dir.join(IDENTITY))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        let Some(ino) = ino.filter(|i| named && !live.contains(i)) else {
            continue;
        };
        // A process in the middle of a run holds the lock: leave it be.
        let held = File::open(dir.join("lock")).is_ok_and(|f| f.try_lock().is_err());
        if !held && fs::remove_dir_all(&dir).is_ok() {
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
        let live: HashSet<u64> = [22].into();
        let removed = sweep(&root, &live);
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
        assert!(
            !live_namespaces().is_empty(),
            "this process's namespace is alive"
        );
        let _ = fs::remove_dir_all(&root);
    }
}
