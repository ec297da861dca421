//! The only module that talks to the kernel: rtnetlink (dumps, changes, route lookups, events),
//! sysctls under /proc/sys, network namespaces (entry and creation). May import only `model`.
//!
//! [`Kernel`] is the seam the shell (ops) is written against; [`Netlink`] (client.rs) is the
//! real one and the only netlink client: one connection in one network namespace, made on a
//! thread that has entered it ([`netns::run_in_netns`]). codec.rs turns `model` objects into
//! messages and back; events.rs subscribes to notifications; sim.rs builds the sandbox's
//! namespaces through the same client.

mod client;
mod codec;
pub mod events;
pub mod failpoint;
pub mod netns;
pub mod nft;
pub mod sim;
pub mod sysctl;

use std::net::IpAddr;
use std::time::Duration;

use sysctl::SysctlError;

use crate::model::nft::ForeignMark;
use crate::model::{Change, ForeignRoute, HostLink, Observed};

pub use client::Netlink;

/// Errors of the kernel layer: each names the object and the errno.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("cannot open a netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("{what}: {source}")]
    Request {
        what: String,
        source: std::io::Error,
    },
    #[error("{what}: the netlink connection failed")]
    Connection { what: String },
    #[error("{what}: unexpected answer from the kernel")]
    Unexpected { what: String },
}

impl KernelError {
    /// The errno of a refused request, if that is what this is.
    pub fn errno(&self) -> Option<i32> {
        match self {
            KernelError::Request { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// The answer of a route lookup (RTM_GETROUTE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub oif: Option<u32>,
    pub gateway: Option<IpAddr>,
    pub table: Option<u32>,
}

/// What the shell needs of the kernel. [`Netlink`] is the real one; tests of the shell use a
/// fake that holds the objects in memory.
#[allow(async_fn_in_trait)] // used with concrete types on one thread; no Send bound wanted
pub trait Kernel {
    /// Every link: name, index, MAC, admin state.
    async fn links(&self) -> Result<Vec<HostLink>, KernelError>;
    /// Addresses, routes and rules, split by ownership; `links` is this run's link dump.
    async fn observe(&self, links: Vec<HostLink>) -> Result<Observed, KernelError>;
    /// The rules of other nftables tables that read or write marks (empty without nf_tables).
    /// Not part of `observe`: on a host with thousands of nftables rules (kube-proxy) the dump
    /// costs tens of milliseconds, and only a config with `[containers]` needs it.
    async fn foreign_marks(&self) -> Result<Vec<ForeignMark>, KernelError>;
    /// Make one change.
    async fn apply(&self, change: &Change) -> Result<(), KernelError>;
    /// Put back a foreign route as it was (its own protocol) after the kernel dropped it.
    async fn restore_route(&self, route: &ForeignRoute) -> Result<(), KernelError>;
    /// Make independent changes; which succeeded (in input order) and the first error.
    async fn apply_batch(&self, changes: &[Change]) -> (Vec<bool>, Option<KernelError>);
    /// Route lookups (`ip route get`), one answer per lookup, in order.
    async fn route_get_many(
        &self,
        lookups: &[(Option<IpAddr>, IpAddr)],
    ) -> Vec<Result<Lookup, KernelError>>;
    /// Route lookups of packets carrying fwmark `mark` (RTA_MARK) to `dst`, from no bound
    /// source; one answer per lookup, in order.
    async fn route_get_marked_many(
        &self,
        lookups: &[(u32, IpAddr)],
    ) -> Vec<Result<Lookup, KernelError>>;
    /// Wait up to `timeout` for a link to appear or change; false when none did.
    async fn link_event(&self, timeout: Duration) -> Result<bool, KernelError>;
    /// A sysctl's value (trimmed); `path` is below /proc/sys.
    fn sysctl_read(&self, path: &str) -> Result<String, SysctlError>;
    /// Set a sysctl.
    fn sysctl_write(&self, path: &str, value: &str) -> Result<(), SysctlError>;

    /// One route lookup.
    async fn route_get(&self, src: Option<IpAddr>, dst: IpAddr) -> Result<Lookup, KernelError> {
        self.route_get_many(&[(src, dst)])
            .await
            .pop()
            .unwrap_or_else(|| {
                Err(KernelError::Unexpected {
                    what: lookup_what(src, dst),
                })
            })
    }
}

fn lookup_what(src: Option<IpAddr>, dst: IpAddr) -> String {
    match src {
        Some(s) => format!("route lookup from {s} to {dst}"),
        None => format!("route lookup to {dst}"),
    }
}
