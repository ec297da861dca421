//! The only module that talks rtnetlink: dumps, changes, route lookups and namespace entry.
pub mod netns;
