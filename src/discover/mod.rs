//! Discover the config from the instance metadata service (issue 6).
//!
//! `eniroute discover` reads a cloud's instance metadata service (today Alibaba Cloud ECS, by
//! default `http://100.100.100.200`) and writes a commented eniroute config describing the
//! instance's ENIs: MAC, ENI id, vSwitch CIDR and gateway, private IPs, IPv4 prefixes, IPv6 and
//! the EIP of the primary ENI (NAT mode).
//!
//! It runs as a boot step, so it is deliberately strict and bounded (`http`): session tokens
//! first (plain reads only when the token endpoint does not exist; a 401 renews the token once),
//! timeouts, bounded retries with backoff, a size cap on every answer; every value is parsed
//! strictly (`parse`) and every error names the metadata path it came from; a metadata outage or
//! an empty ENI listing is an error, never an empty config. The address rules (subnet, gateway,
//! prefixes, IPv6, no address twice) are the validator's own, from `crate::config::rules`.
//!
//! Each cloud is a `Provider`: its paths, token headers, ENI naming and value formats. The
//! session, the ENI order (primary first), the rules across ENIs and the TOML writer (`toml`)
//! are shared. To add a provider:
//! 1. `src/discover/<cloud>.rs`: a unit struct implementing `Provider` — its constants and
//!    paths, its `TokenScheme`, `read` (each value through `parse`, each address rule through
//!    `crate::config::rules`), its ENI names and the paths of listed addresses;
//! 2. this file: `mod <cloud>;`, and choose it in [`discover`] (a `provider` field in
//!    [`DiscoverOptions`] once there are two);
//! 3. `toml.rs`: the header's wording, if the cloud shows more (or less) than ECS does;
//! 4. `tests/discover.rs`: a mock of that service serving only its documented formats.
//!
//! May import `crate::config` (its address rules), `crate::model` and `crate::exit`.

mod aliyun;
mod http;
mod parse;
mod toml;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use ipnetwork::{Ipv4Network, Ipv6Network};
use macaddr::MacAddr6;

use crate::config::rules::AddressBook;
use crate::exit::{self, ExitCode};
use http::{Session, TokenScheme};

pub use self::aliyun::{DEFAULT_ENDPOINT, DEFAULT_TOKEN_TTL};
pub use self::toml::{to_toml, write_atomic};

/// How to reach the metadata service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverOptions {
    /// Base URL of the metadata service (plain `http://`; a bare host gets `http://` prepended).
    pub endpoint: String,
    /// Lifetime requested for the session token, 1..=21600 seconds.
    pub token_ttl: u32,
    /// Timeout for establishing the TCP connection.
    pub connect_timeout: Duration,
    /// Timeout for sending a request and for receiving its response headers, and again for
    /// receiving its body.
    pub read_timeout: Duration,
    /// Extra tries after the first for connection errors, timeouts and 5xx answers
    /// (the default 2 means at most 3 tries per request).
    pub retries: u32,
}

impl Default for DiscoverOptions {
    fn default() -> Self {
        DiscoverOptions {
            endpoint: DEFAULT_ENDPOINT.to_string(),
            token_ttl: DEFAULT_TOKEN_TTL,
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(5),
            retries: 2,
        }
    }
}

/// What the metadata service says about the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// `meta-data/region-id` (`None` when the service does not have it).
    pub region: Option<String>,
    /// The ENIs: the primary first, then the others in the order of the MAC listing.
    pub enis: Vec<DiscoveredEni>,
    /// Whether the session-token (security-hardening) mode was used.
    pub hardened: bool,
    /// When the metadata was read.
    pub generated_at: SystemTime,
}

/// One ENI as the metadata service describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredEni {
    /// The config label: `eth0` for the primary ENI, `eth1`, `eth2`... for the others.
    pub name: String,
    pub mac: MacAddr6,
    /// `network-interface-id`, e.g. `eni-bp1...`.
    pub id: String,
    /// The ENI whose MAC is `meta-data/mac`.
    pub primary: bool,
    /// `vswitch-cidr-block` (agrees with `netmask`).
    pub cidr: Ipv4Network,
    pub gateway: Ipv4Addr,
    /// `private-ipv4s`, `primary-ip-address` first.
    pub private_ips: Vec<Ipv4Addr>,
    /// `ipv4-prefixes` (empty when the service has none).
    pub prefixes: Vec<Ipv4Network>,
    /// `ipv6s` (empty when the ENI has no IPv6).
    pub ipv6: Vec<Ipv6Addr>,
    /// `vswitch-ipv6-cidr-block`, set when `ipv6` is not empty.
    pub ipv6_cidr: Option<Ipv6Network>,
    /// `ipv6-gateway`, set when `ipv6` is not empty.
    pub ipv6_gateway: Option<Ipv6Addr>,
    /// `meta-data/eipv4` for the primary ENI (NAT mode, mapped to the primary private IP).
    pub eip: Option<Ipv4Addr>,
}

/// Why discovery (or writing its result) failed. Metadata errors name the metadata path.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("invalid metadata endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("invalid discover option: {0}")]
    Option(String),
    #[error("metadata {path}: {url} did not answer in time (tries: {tries})")]
    Timeout {
        path: String,
        url: String,
        tries: u32,
    },
    #[error("metadata {path}: cannot reach {url}: {detail} (tries: {tries})")]
    Unreachable {
        path: String,
        url: String,
        tries: u32,
        detail: String,
    },
    #[error("metadata {path}: HTTP {status}{hint}")]
    Status {
        path: String,
        status: u16,
        hint: String,
    },
    #[error("metadata {path}: not found (HTTP 404)")]
    NotFound { path: String },
    #[error("metadata {path}: {detail}")]
    Unauthorized { path: String, detail: String },
    #[error("metadata {path}: response larger than {limit} bytes")]
    TooLarge { path: String, limit: u64 },
    #[error("metadata {path}: {reason}: {value:?}")]
    Invalid {
        path: String,
        reason: String,
        value: String,
    },
    #[error("metadata {path}: {reason}")]
    Inconsistent { path: String, reason: String },
    #[error("metadata {path}: the instance lists no ENIs; refusing to write an empty config")]
    NoEnis { path: String },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ExitCode for DiscoverError {
    fn exit_code(&self) -> i32 {
        match self {
            DiscoverError::Option(_) | DiscoverError::Endpoint { .. } => exit::USAGE,
            _ => exit::FAILED,
        }
    }
}

/// Read the instance metadata service and build the typed model of the instance.
pub fn discover(opts: &DiscoverOptions) -> Result<Discovered, DiscoverError> {
    discover_with(&aliyun::Aliyun, opts)
}

/// One cloud's instance metadata service.
trait Provider {
    /// How the service issues session tokens.
    fn token_scheme(&self) -> TokenScheme;

    /// Read the instance: every ENI in the service's listing order, which one is the primary,
    /// the region and the primary ENI's EIP. Values are parsed strictly and checked against the
    /// per-ENI address rules; every error names its metadata path.
    fn read(&self, session: &mut Session) -> Result<Instance, DiscoverError>;

    /// The config label of the primary ENI, or of the `n`-th other ENI (from 1).
    fn eni_name(&self, primary: bool, n: usize) -> String;

    /// The metadata path that lists an address of the ENI with `mac` (for errors found across
    /// ENIs, after reading).
    fn address_path(&self, mac: MacAddr6, what: Listed) -> String;
}

/// Which list of an ENI an address came from.
#[derive(Debug, Clone, Copy)]
enum Listed {
    PrivateIp,
    Ipv6,
    /// The primary ENI's EIP.
    Eip,
}

impl Listed {
    fn noun(self) -> &'static str {
        match self {
            Listed::PrivateIp => "private IP",
            Listed::Ipv6 => "IPv6 address",
            Listed::Eip => "EIP",
        }
    }
}

/// What a provider read, before naming and the rules across ENIs.
struct Instance {
    region: Option<String>,
    /// In the service's listing order.
    enis: Vec<MetadataEni>,
    /// Index of the primary ENI in `enis`.
    primary: usize,
    eip: Option<Ipv4Addr>,
}

/// One ENI as a provider read it.
struct MetadataEni {
    mac: MacAddr6,
    id: String,
    cidr: Ipv4Network,
    gateway: Ipv4Addr,
    private_ips: Vec<Ipv4Addr>,
    prefixes: Vec<Ipv4Network>,
    ipv6: Vec<Ipv6Addr>,
    ipv6_cidr: Option<Ipv6Network>,
    ipv6_gateway: Option<Ipv6Addr>,
}

fn discover_with(
    provider: &dyn Provider,
    opts: &DiscoverOptions,
) -> Result<Discovered, DiscoverError> {
    let mut session = Session::open(opts, provider.token_scheme())?;
    let instance = provider.read(&mut session)?;
    let enis = name_enis(provider, instance.enis, instance.primary, instance.eip);
    check_global_uniqueness(provider, &enis, instance.eip)?;
    Ok(Discovered {
        region: instance.region,
        enis,
        hardened: session.hardened(),
        generated_at: SystemTime::now(),
    })
}

/// The primary first, then the others in listing order, each with its provider's name.
fn name_enis(
    provider: &dyn Provider,
    read: Vec<MetadataEni>,
    primary_index: usize,
    eip: Option<Ipv4Addr>,
) -> Vec<DiscoveredEni> {
    let mut slots: Vec<Option<MetadataEni>> = read.into_iter().map(Some).collect();
    let mut order = Vec::with_capacity(slots.len());
    if let Some(primary) = slots.get_mut(primary_index).and_then(Option::take) {
        order.push((true, primary));
    }
    order.extend(slots.into_iter().flatten().map(|e| (false, e)));
    let mut next = 1usize;
    let mut enis = Vec::with_capacity(order.len());
    for (primary, r) in order {
        let name = provider.eni_name(primary, next);
        if !primary {
            next += 1;
        }
        enis.push(DiscoveredEni {
            name,
            mac: r.mac,
            id: r.id,
            primary,
            cidr: r.cidr,
            gateway: r.gateway,
            private_ips: r.private_ips,
            prefixes: r.prefixes,
            ipv6: r.ipv6,
            ipv6_cidr: r.ipv6_cidr,
            ipv6_gateway: r.ipv6_gateway,
            eip: if primary { eip } else { None },
        });
    }
    enis
}

/// No address may appear twice across the instance (the validator's rule: the config would not
/// validate).
fn check_global_uniqueness(
    provider: &dyn Provider,
    enis: &[DiscoveredEni],
    eip: Option<Ipv4Addr>,
) -> Result<(), DiscoverError> {
    let mut book: AddressBook<()> = AddressBook::new();
    for eni in enis {
        let v4 = eni
            .private_ips
            .iter()
            .map(|ip| (IpAddr::V4(*ip), Listed::PrivateIp));
        let v6 = eni.ipv6.iter().map(|ip| (IpAddr::V6(*ip), Listed::Ipv6));
        let claims = v4.chain(v6);
        for (ip, what) in claims {
            if book.claim(ip, ()).is_some() {
                let reason = format!("{} {ip} is listed by more than one ENI", what.noun());
                return Err(DiscoverError::Inconsistent {
                    path: provider.address_path(eni.mac, what),
                    reason,
                });
            }
        }
    }
    let primary = enis.iter().find(|e| e.primary);
    if let (Some(eip), Some(primary)) = (eip, primary) {
        if book.claim(IpAddr::V4(eip), ()).is_some() {
            return Err(DiscoverError::Inconsistent {
                path: provider.address_path(primary.mac, Listed::Eip),
                reason: format!("the EIP {eip} is also a private IP of an ENI"),
            });
        }
    }
    Ok(())
}
