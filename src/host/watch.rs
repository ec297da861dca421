//! The watch daemon's status file (`watch` in the namespace's state directory): who serves the
//! namespace, since when, how many heals and the last one. Written atomically (a temporary
//! file renamed over it), so `status` never reads half of it; removed when the daemon exits.

use std::fs;

use super::{clean, is_eniroute, value, HostError, State};

/// What a watch daemon says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchStatus {
    pub pid: u32,
    /// Seconds since the epoch when it started.
    pub since: u64,
    pub heals: u64,
    /// Seconds since the epoch of the last heal, and its summary line.
    pub last_heal: Option<(u64, String)>,
}

impl WatchStatus {
    fn render(&self) -> String {
        let mut s = format!(
            "pid={}\nsince={}\nheals={}\n",
            self.pid, self.since, self.heals
        );
        if let Some((at, line)) = &self.last_heal {
            let line = clean(line);
            s.push_str(&format!("last_heal={at}\nlast_heal_summary={line}\n"));
        }
        s
    }

    fn parse(text: &str) -> Option<WatchStatus> {
        let get = |key: &str| value(text, key);
        let last = get("last_heal").and_then(|a| a.trim().parse().ok());
        Some(WatchStatus {
            pid: get("pid")?.trim().parse().ok()?,
            since: get("since")?.trim().parse().ok()?,
            heals: get("heals")?.trim().parse().ok()?,
            last_heal: last.map(|at| {
                let line = get("last_heal_summary").unwrap_or_default();
                (at, clean(line))
            }),
        })
    }
}

impl State {
    /// Write the daemon's status (atomically: a temporary file renamed over the old one).
    pub fn store_watch(&self, status: &WatchStatus) -> Result<(), HostError> {
        self.write_atomic("watch", status.render().as_bytes())
    }

    /// The status of the daemon serving this namespace, if one is running (a file left by
    /// a daemon that is gone, e.g. killed, is ignored).
    pub fn watch(&self) -> Option<WatchStatus> {
        let text = fs::read_to_string(self.dir.join("watch")).ok()?;
        WatchStatus::parse(&text).filter(|s| is_eniroute(s.pid))
    }

    /// Remove the daemon's status file (it exits).
    pub fn remove_watch(&self) {
        let _ = fs::remove_file(self.dir.join("watch"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_round_trips_and_a_dead_daemon_is_not_shown() {
        let dir = tempfile::tempdir().unwrap();
        let st = State::at(dir.path());
        let s = WatchStatus {
            pid: std::process::id(),
            since: 1_700_000_000,
            heals: 3,
            last_heal: Some((1_700_000_100, "healed eth1: 1 rule re-added\nx".into())),
        };
        st.store_watch(&s).unwrap();
        let text = fs::read_to_string(dir.path().join("watch")).unwrap();
        let back = WatchStatus::parse(&text).unwrap();
        assert_eq!(back.heals, 3);
        assert_eq!(
            back.last_heal,
            Some((1_700_000_100, "healed eth1: 1 rule re-addedx".into()))
        );
        // The test binary is not called eniroute: its status counts as a daemon gone.
        assert_eq!(st.watch(), None);
        st.remove_watch();
        assert!(!dir.path().join("watch").exists());
        assert_eq!(WatchStatus::parse("pid=x\n"), None);
    }
}
