//! The namespace lock: two eniroute processes on one namespace never interleave. A waiter
//! polls up to its timeout and can say who holds the lock (the holder writes its pid, command
//! and start time into the file). The lock file is opened without following symlinks and
//! without blocking, and must be a regular file.

use std::fmt;
use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{HostError, State};

/// How often a waiter tries again.
const POLL: Duration = Duration::from_millis(50);

/// Who holds the lock, as the holder wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// e.g. `eniroute apply`.
    pub command: String,
    /// Seconds since the epoch when it took the lock.
    pub since: u64,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = UNIX_EPOCH + Duration::from_secs(self.since);
        let stamp = humantime::format_rfc3339_seconds(t).to_string();
        let clock = stamp.get(11..19).unwrap_or(&stamp);
        write!(f, "PID {} ({}, since {clock} UTC)", self.pid, self.command)
    }
}

impl Holder {
    fn parse(text: &str) -> Option<Holder> {
        let mut lines = text.lines();
        let pid = lines.next()?.trim().parse().ok()?;
        let command: String = lines.next()?.chars().take(64).collect();
        let since = lines.next()?.trim().parse().ok()?;
        Some(Holder {
            pid,
            command,
            since,
        })
    }
}

/// The lock of a namespace, held until dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl State {
    /// Take the namespace's lock for `command`, waiting up to `timeout` while another
    /// eniroute holds it. `waiting` is called once, with the holder, when it has to wait;
    /// `give_up` is asked at every poll (a signal, say) and ends the wait.
    pub fn lock(
        &self,
        command: &str,
        timeout: Duration,
        waiting: &mut dyn FnMut(Option<&Holder>),
        give_up: &dyn Fn() -> bool,
    ) -> Result<Lock, HostError> {
        let path = self.dir.join("lock");
        let shown = path.display().to_string();
        let fail = |reason: String| HostError::Lock {
            path: shown.clone(),
            reason,
        };
        self.ensure_dir().map_err(|e| fail(e.to_string()))?;
        let mut f = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| fail(e.to_string()))?;
        if !f.metadata().map_err(|e| fail(e.to_string()))?.is_file() {
            return Err(fail("it is not a regular file".into()));
        }
        let deadline = Instant::now() + timeout;
        let mut told = false;
        loop {
            match f.try_lock() {
                Ok(()) => break,
                Err(TryLockError::Error(e)) => return Err(fail(e.to_string())),
                Err(TryLockError::WouldBlock) => {}
            }
            let holder = read_holder(&mut f);
            if Instant::now() >= deadline || give_up() {
                return Err(HostError::Locked {
                    path: shown,
                    holder,
                });
            }
            if !told {
                waiting(holder.as_ref());
                told = true;
            }
            std::thread::sleep(POLL.min(deadline.saturating_duration_since(Instant::now())));
        }
        write_holder(&mut f, command).map_err(|e| fail(e.to_string()))?;
        Ok(Lock { _file: f })
    }
}

fn read_holder(f: &mut File) -> Option<Holder> {
    let mut text = String::new();
    f.rewind().ok()?;
    f.take(256).read_to_string(&mut text).ok()?;
    Holder::parse(&text)
}

fn write_holder(f: &mut File, command: &str) -> std::io::Result<()> {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    f.set_len(0)?;
    f.rewind()?;
    write!(f, "{}\n{command}\n{since}\n", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(tag: &str) -> State {
        let d = std::env::temp_dir().join(format!("eniroute-lock-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        State::at(d)
    }

    fn take(st: &State, timeout: Duration) -> (Result<Lock, HostError>, Vec<Option<Holder>>) {
        let mut seen = Vec::new();
        let r = st.lock(
            "eniroute test",
            timeout,
            &mut |h| seen.push(h.cloned()),
            &|| false,
        );
        (r, seen)
    }

    #[test]
    fn a_waiter_names_the_holder_once_and_gets_the_lock_when_it_is_released() {
        let st = state("wait");
        let (held, _) = take(&st, Duration::ZERO);
        let held = held.unwrap();
        let (r, seen) = take(&st, Duration::ZERO);
        let Err(HostError::Locked { holder, .. }) = r else {
            panic!("the lock is held");
        };
        let h = holder.unwrap();
        assert_eq!(
            (h.pid, h.command.as_str()),
            (std::process::id(), "eniroute test")
        );
        assert!(
            seen.is_empty(),
            "a timeout of 0 fails at once without waiting"
        );
        let st2 = st.clone();
        let t = std::thread::spawn(move || take(&st2, Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(200));
        drop(held);
        let (r, seen) = t.join().unwrap();
        assert!(r.is_ok());
        assert_eq!(seen.len(), 1, "told once");
        st.remove();
    }

    #[test]
    fn a_fifo_or_a_symlink_at_the_lock_path_fails_at_once() {
        let st = state("fifo");
        st.ensure_dir().unwrap();
        let p = st.dir().join("lock");
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let t = Instant::now();
        assert!(matches!(
            take(&st, Duration::from_secs(5)).0,
            Err(HostError::Lock { .. })
        ));
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", &p).unwrap();
        assert!(matches!(
            take(&st, Duration::from_secs(5)).0,
            Err(HostError::Lock { .. })
        ));
        assert!(t.elapsed() < Duration::from_secs(2));
        st.remove();
    }
}
