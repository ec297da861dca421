//! Build script: the git commit and build date that `eniroute --version` shows.
//! Works from a clean clone and from a source tarball without .git (commit "unknown"); a set
//! SOURCE_DATE_EPOCH (reproducible builds, Debian) fixes the date.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let commit = own_repository()
        .then(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .flatten()
        .unwrap_or_else(|| "unknown".into());
    // Rebuild when HEAD moves: HEAD itself (a branch switch), the branch it names, packed refs.
    if commit != "unknown" {
        let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watched.push(branch);
        }
        for name in watched {
            if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
                if Path::new(&path).exists() {
                    println!("cargo:rerun-if-changed={path}");
                }
            }
        }
    }
    let date = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap_or_else(SystemTime::now);
    let day = humantime::format_rfc3339_seconds(date).to_string();
    let day = day.get(..10).unwrap_or(&day).to_string();
    println!("cargo:rustc-env=ENIROUTE_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=ENIROUTE_BUILD_DATE={day}");
}

/// Whether the source tree is the top of a git work tree (not a tarball unpacked inside some
/// other repository).
fn own_repository() -> bool {
    let (Some(top), Ok(dir)) = (
        git(&["rev-parse", "--show-toplevel"]),
        std::env::var("CARGO_MANIFEST_DIR"),
    ) else {
        return false;
    };
    match (
        Path::new(&top).canonicalize(),
        Path::new(&dir).canonicalize(),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// One line of git's output, or None when git or the repository is absent.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}
