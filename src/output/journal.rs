//! Lines on stderr with their syslog priority: when stderr is the journal (systemd sets
//! JOURNAL_STREAM to its "device:inode"), each line starts with sd-daemon(3)'s "<N>" prefix,
//! so `journalctl -p warning -u eniroute` shows exactly the warnings and errors. Imports nothing.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// syslog(3) priorities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Level {
    Err = 3,
    Warning = 4,
    Info = 6,
}

/// A progress line is on the terminal without its newline: the next message clears it first.
pub(super) static LINE_OPEN: AtomicBool = AtomicBool::new(false);

/// Rewrite the open progress line of a terminal.
pub(super) fn progress(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[K{text}");
    let _ = err.flush();
    LINE_OPEN.store(true, Ordering::SeqCst);
}

/// Write `text` (each of its lines) to stderr at `level`.
pub(super) fn say(level: Level, text: &str) {
    if LINE_OPEN.swap(false, Ordering::SeqCst) {
        eprint!("\r\x1b[K");
    }
    let prefix = if to_journal() {
        format!("<{}>", level as u8)
    } else {
        String::new()
    };
    let mut err = std::io::stderr().lock();
    for line in text.lines() {
        // A closed stderr is not worth failing for.
        let _ = writeln!(err, "{prefix}{line}");
    }
}

fn to_journal() -> bool {
    static CACHED: OnceLock<bool> = OnceLock::new();
    *CACHED.get_or_init(|| {
        let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
            return false;
        };
        match nix::sys::stat::fstat(std::io::stderr()) {
            Ok(st) => is_stream(&stream, st.st_dev, st.st_ino),
            Err(_) => false,
        }
    })
}

/// JOURNAL_STREAM ("device:inode", systemd.exec(5)) names this file: a child whose stderr was
/// redirected elsewhere inherits the variable but must not use the prefixes.
fn is_stream(env: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = env.split_once(':') else {
        return false;
    };
    d.parse() == Ok(dev) && i.parse() == Ok(ino)
}

#[cfg(test)]
mod tests {
    use super::is_stream;

    #[test]
    fn journal_stream_must_name_stderr() {
        assert!(is_stream("8:12345", 8, 12345));
        assert!(!is_stream("8:12345", 8, 12346));
        assert!(!is_stream("8", 8, 12345));
        assert!(!is_stream("", 0, 0));
    }
}
