//! Exit codes (DESIGN §5) and the trait by which every layer's error carries its own, so that
//! the command line maps nothing by hand. Imports nothing of the crate.

pub const OK: i32 = 0;
pub const FAILED: i32 = 1;
pub const CHANGES: i32 = 2;
pub const USAGE: i32 = 64;
pub const CONFIG: i32 = 65;
/// The config file is missing, unreadable, not a regular file, or too large.
pub const NO_INPUT: i32 = 66;
pub const NOT_FOUND: i32 = 69;
pub const LOCKED: i32 = 75;

/// An error that knows the exit code it ends the process with.
pub trait ExitCode {
    fn exit_code(&self) -> i32;
}
