//! Discover the config from the instance metadata service (issues 6 and 14).
//!
//! `eniroute discover` reads a cloud's instance metadata service — Alibaba Cloud ECS
//! (`aliyun`, `http://100.100.100.200`) or AWS EC2 (`aws`, IMDSv2 at `http://169.254.169.254`),
//! chosen by `--provider`, or from DMI and then by probing (`detect`) — and writes a commented
//! eniroute config describing the instance's ENIs: MAC, ENI id, subnet CIDR and gateway,
//! private IPs, IPv4 and IPv6 prefixes, IPv6 and the NAT-mode EIPs the metadata shows.
//!
//! It runs as a boot step and under `watch` (`refresh`), so it is deliberately strict and
//! bounded (`http`): session tokens first (plain reads only when the token endpoint does not
//! exist; a 401 renews the token once), timeouts, bounded retries with backoff (429 and 5xx
//! honour Retry-After), a request budget, a size cap on every answer; every value is parsed
//! strictly (`parse`) and every error names the metadata path it came from; a metadata outage
//! or an empty ENI listing is an error, never an empty config. The address rules (subnet,
//! gateway, prefixes, IPv6, no address twice) are the validator's own, from
//! `crate::config::rules`, applied once for every provider in `checks`.
//!
//! Each cloud is a `Provider`: its paths, token headers, ENI naming and value formats. The
//! session, the ENI order (primary first), the rules across ENIs and the TOML writer (`toml`)
//! are shared. To add a provider:
//! 1. `src/discover/<cloud>.rs`: a unit struct implementing `Provider` — its constants and
//!    paths, its `TokenScheme`, `read` (each value through `parse`, each address rule through
//!    `checks`), its ENI names and the paths of listed addresses;
//! 2. this file: `mod <cloud>;`, a [`ProviderKind`] variant (name, default endpoint, probe
//!    path) and its arm in `ProviderKind::provider`; `detect.rs`: its DMI strings;
//! 3. `tests/discover.rs` (or its own test file): a mock of that service serving only its
//!    documented formats, each fixture citing where the format is documented.
//!
//! May import `crate::config` (its address rules), `crate::model` and `crate::exit`.

mod aliyun;
mod aws;
mod checks;
mod detect;
mod http;
mod merge;
mod parse;
mod refresh;
mod source;
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

pub use self::merge::{merge, Merged};
pub use self::refresh::{Clock, Decision, RefreshPolicy, Refresher, SystemClock};
pub use self::source::{MetadataSource, SourceError, Tick};
pub use self::toml::{to_toml, write_atomic};

/// Default lifetime requested for the metadata session token, in seconds (6 hours; the
/// largest both services accept).
pub const DEFAULT_TOKEN_TTL: u32 = 21600;
/// Where `detect` reads the firmware's DMI strings.
pub const DMI_DIR: &str = "/sys/class/dmi/id";

/// Which metadata service to read (`--provider`, `[discover] provider`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderChoice {
    /// From DMI, then by probing each service with short timeouts.
    Auto,
    Is(ProviderKind),
}

impl std::str::FromStr for ProviderChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(ProviderChoice::Auto),
            "aliyun" => Ok(ProviderChoice::Is(ProviderKind::Aliyun)),
            "aws" => Ok(ProviderChoice::Is(ProviderKind::Aws)),
            other => Err(format!("unknown provider {other:?} (auto, aliyun or aws)")),
        }
    }
}

/// The clouds discover knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Aliyun,
    Aws,
}

impl ProviderKind {
    /// The `--provider` spelling.
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Aliyun => "aliyun",
            ProviderKind::Aws => "aws",
        }
    }

    /// The service's name, for the TOML header and messages.
    pub fn service(self) -> &'static str {
        match self {
            ProviderKind::Aliyun => "Alibaba Cloud ECS instance metadata service",
            ProviderKind::Aws => "AWS EC2 instance metadata service (IMDSv2)",
        }
    }

    /// The service's well-known address.
    pub fn default_endpoint(self) -> &'static str {
        match self {
            ProviderKind::Aliyun => aliyun::DEFAULT_ENDPOINT,
            ProviderKind::Aws => aws::DEFAULT_ENDPOINT,
        }
    }

    /// A path only this service has: a 200 there identifies it when probing.
    fn probe_path(self) -> &'static str {
        match self {
            ProviderKind::Aliyun => aliyun::PROBE_PATH,
            ProviderKind::Aws => aws::PROBE_PATH,
        }
    }

    fn provider(self) -> &'static dyn Provider {
        match self {
            ProviderKind::Aliyun => &aliyun::Aliyun,
            ProviderKind::Aws => &aws::Aws,
        }
    }
}

/// How to reach the metadata service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverOptions {
    /// Which service to read.
    pub provider: ProviderChoice,
    /// Base URL of the metadata service (plain `http://`; a bare host gets `http://` prepended);
    /// `None`: the provider's well-known address.
    pub endpoint: Option<String>,
    /// The DMI directory `auto` reads (`/sys/class/dmi/id`; tests point it elsewhere).
    pub dmi_dir: PathBuf,
    /// Connect and read timeout of each probe when `auto` cannot tell the cloud from DMI.
    pub probe_timeout: Duration,
    /// The most requests one discovery may make (retries and token renewals count).
    pub max_requests: u32,
    /// The least time between two requests: stays far below AWS's limit of 1024 packets per
    /// second per ENI to the metadata service (and ECS's throttling).
    pub request_gap: Duration,
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
            provider: ProviderChoice::Auto,
            endpoint: None,
            dmi_dir: PathBuf::from(DMI_DIR),
            probe_timeout: Duration::from_secs(1),
            max_requests: 2048,
            request_gap: Duration::from_millis(5),
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
    /// Which service answered.
    pub provider: ProviderKind,
    /// The base URL it was read from.
    pub endpoint: String,
    /// The region (`None` when the service does not have it).
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
    /// The subnet (`vswitch-cidr-block`; AWS `subnet-ipv4-cidr-block`).
    pub cidr: Ipv4Network,
    /// The subnet's router (Alibaba `gateway`; AWS: the subnet's first host).
    pub gateway: Ipv4Addr,
    /// The private IPs, the primary private IP first.
    pub private_ips: Vec<Ipv4Addr>,
    /// IPv4 prefixes (empty when the service has none).
    pub prefixes: Vec<Ipv4Network>,
    /// IPv6 prefixes (AWS `ipv6-prefix`; empty when none).
    pub ipv6_prefixes: Vec<Ipv6Network>,
    /// IPv6 addresses (empty when the ENI has no IPv6).
    pub ipv6: Vec<Ipv6Addr>,
    /// The IPv6 subnet, set when `ipv6` or `ipv6_prefixes` is not empty.
    pub ipv6_cidr: Option<Ipv6Network>,
    /// The IPv6 router, set with `ipv6_cidr`.
    pub ipv6_gateway: Option<Ipv6Addr>,
    /// The public IPv4 addresses the metadata maps to this ENI's private IPs (1:1 NAT, so
    /// nat-mode EIPs).
    pub eips: Vec<NatEip>,
}

/// A public IPv4 address mapped 1:1 to a private IP (a nat-mode EIP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatEip {
    pub address: Ipv4Addr,
    pub private_ip: Ipv4Addr,
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
    #[error("metadata {path}: throttled (HTTP {status}), retry after {}s", retry_after.as_secs())]
    Throttled {
        path: String,
        status: u16,
        retry_after: Duration,
    },
    #[error("metadata {path}: the request budget of {budget} requests is spent")]
    Budget { path: String, budget: u32 },
    #[error("cannot tell which cloud this is: {0}; name it with --provider aliyun|aws")]
    UnknownCloud(String),
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

impl DiscoverError {
    /// How long the service asked to be left alone (429/503 with Retry-After).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DiscoverError::Throttled { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

/// Read the instance metadata service and build the typed model of the instance.
pub fn discover(opts: &DiscoverOptions) -> Result<Discovered, DiscoverError> {
    if let Some(e) = &opts.endpoint {
        http::normalize_endpoint(e)?;
    }
    let kind = match opts.provider {
        ProviderChoice::Is(kind) => kind,
        ProviderChoice::Auto => detect::detect(opts)?,
    };
    discover_with(kind, opts)
}

/// One cloud's instance metadata service.
trait Provider: Sync {
    /// How the service issues session tokens.
    fn token_scheme(&self) -> TokenScheme;

    /// Read the instance: every ENI in the provider's order, which one is the primary, the
    /// region and each ENI's EIPs. Values are parsed strictly and checked against the per-ENI
    /// address rules; every error names its metadata path.
    fn read(&self, session: &mut Session) -> Result<Instance, DiscoverError>;

    /// The config label of the primary ENI, or of the `n`-th other ENI (from 1): `eth0`,
    /// `eth1`... unless the cloud names them otherwise.
    fn eni_name(&self, primary: bool, n: usize) -> String {
        if primary {
            "eth0".to_string()
        } else {
            format!("eth{n}")
        }
    }

    /// The metadata path that lists an address of the ENI with `mac` (for errors found across
    /// ENIs, after reading).
    fn address_path(&self, mac: MacAddr6, what: Listed) -> String;
}

/// Both services list the ENIs here, one `<mac>/` per line, each a directory of keys.
const MACS_PATH: &str = "/latest/meta-data/network/interfaces/macs/";
/// More ENIs than any instance type attaches: a bound on the requests one listing may cause.
const MAX_ENIS: usize = 128;

/// The ENI listing: (MAC as listed, MAC), at least one, at most `MAX_ENIS`.
fn mac_listing(session: &mut Session) -> Result<Vec<(String, MacAddr6)>, DiscoverError> {
    let listing = session.get_required(MACS_PATH)?;
    let macs = parse::parse_mac_listing(&listing, MACS_PATH)?;
    if macs.is_empty() {
        return Err(DiscoverError::NoEnis {
            path: MACS_PATH.to_string(),
        });
    }
    if macs.len() > MAX_ENIS {
        let why = "more ENIs than any instance has";
        return Err(parse::invalid(MACS_PATH, why, &listing));
    }
    Ok(macs)
}

/// The region at `path` (`None` when the service does not have it).
fn region(session: &mut Session, path: &str) -> Result<Option<String>, DiscoverError> {
    match session.get(path)? {
        Some(text) => Ok(Some(parse::parse_region(text.trim(), path)?)),
        None => Ok(None),
    }
}

/// Which list of an ENI an address came from.
#[derive(Debug, Clone, Copy)]
enum Listed {
    PrivateIp,
    Ipv6,
    /// A public IPv4 address mapped to the ENI.
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
    /// In the provider's order (Alibaba: the listing; AWS: network card, device number).
    enis: Vec<MetadataEni>,
    /// Index of the primary ENI in `enis`.
    primary: usize,
}

/// One ENI as a provider read it.
struct MetadataEni {
    mac: MacAddr6,
    id: String,
    cidr: Ipv4Network,
    gateway: Ipv4Addr,
    private_ips: Vec<Ipv4Addr>,
    prefixes: Vec<Ipv4Network>,
    ipv6_prefixes: Vec<Ipv6Network>,
    ipv6: Vec<Ipv6Addr>,
    ipv6_cidr: Option<Ipv6Network>,
    ipv6_gateway: Option<Ipv6Addr>,
    eips: Vec<NatEip>,
}

fn discover_with(kind: ProviderKind, opts: &DiscoverOptions) -> Result<Discovered, DiscoverError> {
    let provider = kind.provider();
    let endpoint = opts.endpoint.as_deref().unwrap_or(kind.default_endpoint());
    let mut session = Session::open(opts, endpoint, provider.token_scheme())?;
    let instance = provider.read(&mut session)?;
    let enis = name_enis(provider, instance.enis, instance.primary);
    check_global_uniqueness(provider, &enis)?;
    Ok(Discovered {
        provider: kind,
        endpoint: endpoint.to_string(),
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
            ipv6_prefixes: r.ipv6_prefixes,
            ipv6: r.ipv6,
            ipv6_cidr: r.ipv6_cidr,
            ipv6_gateway: r.ipv6_gateway,
            eips: r.eips,
        });
    }
    enis
}

/// No address may appear twice across the instance (the validator's rule: the config would not
/// validate), and no public address is also a private one.
fn check_global_uniqueness(
    provider: &dyn Provider,
    enis: &[DiscoveredEni],
) -> Result<(), DiscoverError> {
    let mut book: AddressBook<()> = AddressBook::new();
    for eni in enis {
        let v4 = eni
            .private_ips
            .iter()
            .map(|ip| (IpAddr::V4(*ip), Listed::PrivateIp));
        let v6 = eni.ipv6.iter().map(|ip| (IpAddr::V6(*ip), Listed::Ipv6));
        for (ip, what) in v4.chain(v6) {
            if book.claim(ip, ()).is_some() {
                let reason = format!("{} {ip} is listed by more than one ENI", what.noun());
                return Err(DiscoverError::Inconsistent {
                    path: provider.address_path(eni.mac, what),
                    reason,
                });
            }
        }
    }
    for eni in enis {
        for eip in &eni.eips {
            if book.claim(IpAddr::V4(eip.address), ()).is_some() {
                return Err(DiscoverError::Inconsistent {
                    path: provider.address_path(eni.mac, Listed::Eip),
                    reason: format!(
                        "the EIP {} is listed twice, or is also a private IP of an ENI",
                        eip.address
                    ),
                });
            }
        }
    }
    Ok(())
}

/// A discovered ENI for unit tests: `eth{n}`, MAC `02:00:00:00:00:0n`, in `{net}.0/24` with the
/// router at `.1`, holding `ips`; the primary when `n` is 0.
#[cfg(test)]
pub(crate) fn test_eni(n: u8, net: &str, ips: &[&str]) -> DiscoveredEni {
    let parse = |s: String| s.parse().unwrap_or_else(|_| panic!("{s}"));
    DiscoveredEni {
        name: format!("eth{n}"),
        mac: MacAddr6::new(0x02, 0, 0, 0, 0, n),
        id: format!("eni-{n}"),
        primary: n == 0,
        cidr: format!("{net}.0/24")
            .parse()
            .unwrap_or_else(|_| panic!("{net}")),
        gateway: parse(format!("{net}.1")),
        private_ips: ips.iter().map(|i| parse(i.to_string())).collect(),
        prefixes: vec![],
        ipv6_prefixes: vec![],
        ipv6: vec![],
        ipv6_cidr: None,
        ipv6_gateway: None,
        eips: vec![],
    }
}
