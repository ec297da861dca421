//! Test-only failpoints: `ENIROUTE_FAILPOINT=<point>:<k>[:pause]` makes the k-th time the pass
//! reaches `<point>` abort the process (as a SIGKILL would: nothing cleaned up), or pause 2 s
//! (for a test to send a signal at a known moment). Compiled into debug builds only — the
//! test builds; release and packaged binaries have none.
//!
//! Points: `batch` (after each `sendmsg` of changes, up to 128 of them), `sysctl` (after a
//! sysctl write), and the steps of an apply pass: `computed`, `converged`, `saved-ahead`,
//! `written`, `verified`, `stored`.

#[cfg(debug_assertions)]
mod imp {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    static HITS: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

    /// The pass reached `point` (counted per point for `batch` and `sysctl`).
    pub fn hit(point: &str) {
        let Ok(spec) = std::env::var("ENIROUTE_FAILPOINT") else {
            return;
        };
        let n = match point {
            "batch" => HITS[0].fetch_add(1, Ordering::SeqCst) + 1,
            "sysctl" => HITS[1].fetch_add(1, Ordering::SeqCst) + 1,
            _ => 1,
        };
        let mut parts = spec.split(':');
        let (Some(p), Some(k)) = (parts.next(), parts.next()) else {
            return;
        };
        if p != point || k.parse::<usize>().ok() != Some(n) {
            return;
        }
        match parts.next() {
            Some("pause") => std::thread::sleep(Duration::from_secs(2)),
            _ => std::process::abort(),
        }
    }
}

#[cfg(not(debug_assertions))]
mod imp {
    #[inline(always)]
    pub fn hit(_point: &str) {}
}

pub use imp::hit;
