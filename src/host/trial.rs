//! `apply --try`'s files in the namespace's state directory: `try` while a try waits for its
//! confirmation (who, until when, what it applied), and `try.last`, how the last try ended
//! (so that `eniroute confirm` can say whether the routing was kept). Both written atomically.

use std::fs;

use super::{clean, is_eniroute, value, HostError, State};

/// A try waiting for `eniroute confirm` (or Enter on its terminal).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PendingTry {
    pub pid: u32,
    /// Seconds since the epoch when the window opened, and when it closes.
    pub since: u64,
    pub deadline: u64,
    /// The --netns of the try (None: the host's namespace).
    pub netns: Option<String>,
    /// The config it applied.
    pub config: String,
    /// How many changes and sysctls it made (what a rollback would undo).
    pub changes: usize,
    pub sysctls: usize,
}

/// How a try ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TryOutcome {
    Kept,
    RolledBack,
}

impl TryOutcome {
    /// Its word in the file (as in JSON).
    fn as_str(self) -> &'static str {
        match self {
            TryOutcome::Kept => "kept",
            TryOutcome::RolledBack => "rolled-back",
        }
    }
}

/// The end of one try: its pid, outcome and when (seconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TryResult {
    pub pid: u32,
    pub outcome: TryOutcome,
    pub at: u64,
}

const PENDING: &str = "try";
const LAST: &str = "try.last";

impl PendingTry {
    fn render(&self) -> String {
        format!(
            "pid={}\nsince={}\ndeadline={}\nnetns={}\nconfig={}\nchanges={}\nsysctls={}\n",
            self.pid,
            self.since,
            self.deadline,
            clean(self.netns.as_deref().unwrap_or("")),
            clean(&self.config),
            self.changes,
            self.sysctls
        )
    }

    fn parse(text: &str) -> Option<PendingTry> {
        let num = |k| value(text, k)?.trim().parse().ok();
        let netns = value(text, "netns").unwrap_or_default();
        Some(PendingTry {
            pid: num("pid")? as u32,
            since: num("since")?,
            deadline: num("deadline")?,
            netns: (!netns.is_empty()).then(|| clean(netns)),
            config: clean(value(text, "config").unwrap_or_default()),
            changes: num("changes")? as usize,
            sysctls: num("sysctls")? as usize,
        })
    }
}

impl State {
    /// Record the pending try (atomically).
    pub fn store_pending(&self, t: &PendingTry) -> Result<(), HostError> {
        self.write_atomic(PENDING, t.render().as_bytes())
    }

    /// The pending try of this namespace, if its process is alive; a file left by a process
    /// that is gone (killed, or one that cannot be read) is removed.
    /// A file that cannot be read (no privilege: the directory is root's, mode 0700) is an
    /// error, not "no try".
    pub fn pending(&self) -> Result<Option<PendingTry>, HostError> {
        self.pending_if(is_eniroute)
    }

    fn pending_if(&self, alive: fn(u32) -> bool) -> Result<Option<PendingTry>, HostError> {
        let path = self.dir.join(PENDING);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(HostError::State {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        match PendingTry::parse(&text) {
            Some(t) if alive(t.pid) => Ok(Some(t)),
            _ => {
                let _ = fs::remove_file(&path);
                Ok(None)
            }
        }
    }

    /// The try ends: record how (first, so that whoever sees the pending file gone can read
    /// it), then remove the pending file.
    pub fn finish_try(&self, pid: u32, outcome: TryOutcome, at: u64) -> Result<(), HostError> {
        let word = outcome.as_str();
        let written = self.write_atomic(
            LAST,
            format!("pid={pid}\noutcome={word}\nat={at}\n").as_bytes(),
        );
        let _ = fs::remove_file(self.dir.join(PENDING));
        written
    }

    /// How the last try ended, if it was `pid`'s.
    pub fn try_result(&self, pid: u32) -> Option<TryResult> {
        let text = fs::read_to_string(self.dir.join(LAST)).ok()?;
        let word = value(&text, "outcome")?.trim();
        let outcome = [TryOutcome::Kept, TryOutcome::RolledBack]
            .into_iter()
            .find(|o| o.as_str() == word)?;
        let r = TryResult {
            pid: value(&text, "pid")?.trim().parse().ok()?,
            outcome,
            at: value(&text, "at")?.trim().parse().ok()?,
        };
        (r.pid == pid).then_some(r)
    }

    /// Whether the pending file is still there (the try has not ended).
    pub fn try_pending_file(&self) -> bool {
        self.dir.join(PENDING).exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pid: u32) -> PendingTry {
        PendingTry {
            pid,
            since: 1_700_000_000,
            deadline: 1_700_000_120,
            netns: Some("blue\nx".into()),
            config: "/etc/eniroute/eniroute.toml".into(),
            changes: 12,
            sysctls: 3,
        }
    }

    #[test]
    fn a_pending_try_round_trips_and_a_stale_one_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let st = State::at(dir.path());
        st.store_pending(&sample(42)).unwrap();
        let back = st.pending_if(|_| true).unwrap().unwrap();
        assert_eq!(back.netns.as_deref(), Some("bluex"), "one line per value");
        assert_eq!((back.pid, back.changes, back.sysctls), (42, 12, 3));
        assert!(st.try_pending_file());
        // The test binary is not called eniroute: its pid counts as gone, and the file goes.
        st.store_pending(&sample(std::process::id())).unwrap();
        assert_eq!(st.pending().unwrap(), None);
        assert!(!st.try_pending_file(), "a stale file is removed");
        fs::write(dir.path().join(PENDING), "pid=x\n").unwrap();
        assert_eq!(st.pending_if(|_| true).unwrap(), None, "garbage: removed");
        assert!(!st.try_pending_file());
    }

    #[test]
    fn finishing_records_the_outcome_before_removing_the_pending_file() {
        let dir = tempfile::tempdir().unwrap();
        let st = State::at(dir.path());
        st.store_pending(&sample(7)).unwrap();
        st.finish_try(7, TryOutcome::RolledBack, 9).unwrap();
        assert!(!st.try_pending_file());
        let r = st.try_result(7).unwrap();
        assert_eq!((r.outcome, r.at), (TryOutcome::RolledBack, 9));
        assert_eq!(
            st.try_result(8),
            None,
            "another try's result is not this one's"
        );
        st.finish_try(8, TryOutcome::Kept, 10).unwrap();
        assert_eq!(st.try_result(8).unwrap().outcome, TryOutcome::Kept);
    }
}
