//! The raw serde form of the TOML file (DESIGN §3): every value keeps its span, so each message
//! names its line, and unknown keys are rejected. Nothing here judges a value; `validate` does.
//! Imports only serde and toml.

use serde::Deserialize;
use toml::Spanned;

pub(super) type S<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) region: Option<S<String>>,
    pub(super) routing: Option<S<RawRouting>>,
    #[serde(default)]
    pub(super) eni: Vec<S<RawEni>>,
    pub(super) egress: Option<S<RawEgress>>,
    pub(super) discover: Option<S<RawDiscover>>,
    pub(super) containers: Option<S<RawContainers>>,
}

/// Only the `[discover]` table of a file (every other key ignored): read before the merge with
/// the metadata, when the `[[eni]]` entries may still be partial.
#[derive(Deserialize)]
pub(super) struct RawDiscoverOnly {
    pub(super) discover: Option<S<RawDiscover>>,
}

/// Only the `[routing]` table (for `flush`, which needs nothing else of a file).
#[derive(Deserialize)]
pub(super) struct RawRoutingOnly {
    pub(super) routing: Option<S<RawRouting>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDiscover {
    pub(super) provider: Option<S<String>>,
    pub(super) refresh: Option<S<String>>,
    #[serde(default)]
    pub(super) exclude: Vec<S<String>>,
    /// Beyond DESIGN §3: the metadata service's base URL (default: the provider's own).
    pub(super) endpoint: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRouting {
    pub(super) table_base: Option<S<i64>>,
    pub(super) rule_priority: Option<S<i64>>,
    pub(super) protocol: Option<S<i64>>,
    pub(super) rp_filter: Option<S<String>>,
    pub(super) arp_isolation: Option<bool>,
    pub(super) verify: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEni {
    pub(super) name: S<String>,
    pub(super) mac: Option<S<String>>,
    pub(super) interface: Option<S<String>>,
    pub(super) id: Option<String>,
    pub(super) primary: Option<S<bool>>,
    pub(super) mode: Option<S<String>>,
    pub(super) cidr: Option<S<String>>,
    pub(super) gateway: Option<S<String>>,
    #[serde(default)]
    pub(super) private_ips: Vec<S<String>>,
    #[serde(default)]
    pub(super) prefixes: Vec<S<String>>,
    #[serde(default)]
    pub(super) ipv6: Vec<S<String>>,
    pub(super) ipv6_cidr: Option<S<String>>,
    pub(super) ipv6_gateway: Option<S<String>>,
    /// multi-eip only: a raised EIP quota (default 10).
    pub(super) eip_quota: Option<S<i64>>,
    #[serde(default)]
    pub(super) eip: Vec<S<RawEip>>,
}

impl RawEni {
    /// `primary = true`.
    pub(super) fn is_primary(&self) -> bool {
        self.primary.as_ref().map(|p| *p.get_ref()).unwrap_or(false)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEip {
    pub(super) address: S<String>,
    pub(super) id: Option<String>,
    pub(super) private_ip: Option<S<String>>,
    pub(super) prefix: Option<S<i64>>,
    pub(super) gateway: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEgress {
    pub(super) strategy: Option<S<String>>,
    pub(super) hash: Option<S<String>>,
    #[serde(default)]
    pub(super) via: Vec<S<RawVia>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVia {
    pub(super) eni: S<String>,
    pub(super) source: Option<S<String>>,
    pub(super) weight: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawContainers {
    pub(super) return_path: Option<bool>,
    pub(super) mark_mask: Option<S<i64>>,
    #[serde(default)]
    pub(super) egress: Vec<S<RawContainerEgress>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawContainerEgress {
    pub(super) network: S<String>,
    pub(super) eni: S<String>,
    pub(super) source: Option<S<String>>,
}
