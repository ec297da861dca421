//! Discover the config from the ECS instance metadata service (issue 6).
//!
//! `eniroute discover` reads the Alibaba Cloud ECS instance metadata service (IMDS, by default
//! `http://100.100.100.200`) and writes a commented eniroute config describing the instance's
//! ENIs: MAC, ENI id, vSwitch CIDR and gateway, private IPs, IPv4 prefixes, IPv6 and the EIP of
//! the primary ENI (NAT mode).
//!
//! It runs as a boot step, so it is deliberately strict and bounded:
//!
//! * security-hardening mode first: a session token is fetched with `PUT /latest/api/token`
//!   and sent with every read; plain reads are used only when the token endpoint does not exist
//!   (404). A 401 on a read renews the token once and retries that read;
//! * connect and read timeouts, bounded retries with exponential backoff for connection errors,
//!   timeouts and 5xx answers, and a cap of [`MAX_RESPONSE_BYTES`] on every response;
//! * every value is parsed strictly, and every error names the metadata path it came from;
//! * a metadata outage or an empty ENI listing is an error, never an empty config.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnetwork::{Ipv4Network, Ipv6Network};

use crate::exit::{self, ExitCode};
use macaddr::MacAddr6;

/// The ECS instance metadata service.
pub const DEFAULT_ENDPOINT: &str = "http://100.100.100.200";
/// Default lifetime requested for the metadata session token, in seconds (6 hours).
pub const DEFAULT_TOKEN_TTL: u32 = 21600;
/// The largest token lifetime the metadata service accepts, in seconds.
pub const MAX_TOKEN_TTL: u32 = 21600;
/// Responses larger than this are an error.
pub const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

const TOKEN_PATH: &str = "/latest/api/token";
const TOKEN_TTL_HEADER: &str = "X-aliyun-ecs-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "X-aliyun-ecs-metadata-token";
const MACS_PATH: &str = "/latest/meta-data/network/interfaces/macs/";
const MAC_PATH: &str = "/latest/meta-data/mac";
const EIPV4_PATH: &str = "/latest/meta-data/eipv4";
const REGION_PATH: &str = "/latest/meta-data/region-id";

/// First backoff pause between tries; doubled after every failed try, capped at `MAX_BACKOFF`.
const BASE_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(4);
/// Longest token accepted from the metadata service.
const MAX_TOKEN_LEN: usize = 4096;

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
    let mut client = Client::new(opts)?;
    client.start_session()?;

    let listing = client.get_required(MACS_PATH)?;
    let macs = parse_mac_listing(&listing, MACS_PATH)?;
    if macs.is_empty() {
        return Err(DiscoverError::NoEnis {
            path: MACS_PATH.to_string(),
        });
    }

    let primary_mac = parse_mac(client.get_required(MAC_PATH)?.trim(), MAC_PATH)?;
    let primary_index = macs
        .iter()
        .position(|(_, mac)| *mac == primary_mac)
        .ok_or_else(|| DiscoverError::Inconsistent {
            path: MAC_PATH.to_string(),
            reason: format!(
                "the primary MAC {} is not among the ENIs listed in {MACS_PATH}",
                fmt_mac(&primary_mac)
            ),
        })?;

    let eip = match client.get(EIPV4_PATH)? {
        Some(text) if !text.trim().is_empty() => Some(parse_public_v4(text.trim(), EIPV4_PATH)?),
        _ => None,
    };
    let region = match client.get(REGION_PATH)? {
        Some(text) => Some(parse_region(text.trim(), REGION_PATH)?),
        None => None,
    };

    let mut raw = Vec::with_capacity(macs.len());
    for (text, mac) in &macs {
        raw.push(read_eni(&mut client, text, *mac)?);
    }

    let mut enis = Vec::with_capacity(raw.len());
    let mut next = 1usize;
    // The primary first, then the others in listing order.
    let order =
        std::iter::once(primary_index).chain((0..raw.len()).filter(|i| *i != primary_index));
    for index in order {
        let Some(r) = raw.get(index) else { continue };
        let primary = index == primary_index;
        let name = if primary {
            "eth0".to_string()
        } else {
            let n = format!("eth{next}");
            next += 1;
            n
        };
        enis.push(DiscoveredEni {
            name,
            mac: r.mac,
            id: r.id.clone(),
            primary,
            cidr: r.cidr,
            gateway: r.gateway,
            private_ips: r.private_ips.clone(),
            prefixes: r.prefixes.clone(),
            ipv6: r.ipv6.clone(),
            ipv6_cidr: r.ipv6_cidr,
            ipv6_gateway: r.ipv6_gateway,
            eip: if primary { eip } else { None },
        });
    }

    check_global_uniqueness(&enis, eip)?;

    Ok(Discovered {
        region,
        enis,
        hardened: client.token.is_some(),
        generated_at: SystemTime::now(),
    })
}

/// Render the discovered instance as a commented eniroute config.
pub fn to_toml(d: &Discovered, endpoint: &str) -> String {
    let mut out = String::new();
    let mode = if d.hardened {
        "security-hardening mode, session token"
    } else {
        "plain reads: the service has no token endpoint"
    };
    let _ = writeln!(
        out,
        "# eniroute configuration, generated from the ECS instance metadata service."
    );
    let _ = writeln!(out, "#   generated: {}", format_utc(d.generated_at));
    let _ = writeln!(out, "#   endpoint:  {} ({mode})", comment_safe(endpoint));
    let _ = writeln!(
        out,
        "#   by:        eniroute {} `eniroute discover`",
        env!("CARGO_PKG_VERSION")
    );
    out.push_str(concat!(
        "#\n",
        "# ENIs are found by `mac`; `name` is only the label used in eniroute's output and in\n",
        "# [egress]. The metadata shows each ENI's addresses and the Elastic IP of the primary\n",
        "# ENI (NAT mode) only. Elastic IPs associated with secondary ENIs, and the cut-through\n",
        "# and multi-eip modes, are not visible in the metadata: fill in the commented\n",
        "# [[eni.eip]] blocks below. Then run `eniroute validate` and `eniroute plan`.\n",
        "\n",
    ));

    if let Some(region) = &d.region {
        let _ = writeln!(out, "region = {}", quote(region));
        out.push('\n');
    }

    for eni in &d.enis {
        if eni.primary {
            let _ = writeln!(out, "# ENI {} (primary ENI)", comment_safe(&eni.id));
        } else {
            let _ = writeln!(out, "# ENI {}", comment_safe(&eni.id));
        }
        out.push_str("[[eni]]\n");
        let _ = writeln!(out, "name = {}", quote(&eni.name));
        let _ = writeln!(out, "mac = {}", quote(&fmt_mac(&eni.mac)));
        if !eni.id.is_empty() {
            let _ = writeln!(out, "id = {}", quote(&eni.id));
        }
        if eni.primary {
            out.push_str("primary = true\n");
        }
        out.push_str("mode = \"nat\"\n");
        let _ = writeln!(out, "cidr = {}", quote(&eni.cidr.to_string()));
        let _ = writeln!(out, "gateway = {}", quote(&eni.gateway.to_string()));
        let _ = writeln!(out, "private_ips = {}", quote_list(&eni.private_ips));
        if !eni.prefixes.is_empty() {
            let _ = writeln!(out, "prefixes = {}", quote_list(&eni.prefixes));
        }
        if !eni.ipv6.is_empty() {
            let _ = writeln!(out, "ipv6 = {}", quote_list(&eni.ipv6));
            if let Some(cidr) = &eni.ipv6_cidr {
                let _ = writeln!(out, "ipv6_cidr = {}", quote(&cidr.to_string()));
            }
            if let Some(gw) = &eni.ipv6_gateway {
                let _ = writeln!(out, "ipv6_gateway = {}", quote(&gw.to_string()));
            }
        }
        out.push('\n');

        match (eni.primary, eni.eip) {
            (true, Some(eip)) => {
                out.push_str(
                    "# The primary ENI's Elastic IP (NAT mode: the VPC maps it to the primary\n\
                     # private IP; it is not configured in the guest OS).\n",
                );
                out.push_str("[[eni.eip]]\n");
                let _ = writeln!(out, "address = {}", quote(&eip.to_string()));
                if let Some(first) = eni.private_ips.first() {
                    let _ = writeln!(out, "private_ip = {}", quote(&first.to_string()));
                }
                out.push('\n');
            }
            (true, None) => {
                out.push_str("# The metadata shows no Elastic IP on the primary ENI.\n\n");
            }
            (false, _) => {
                out.push_str(&secondary_eip_example(eni));
            }
        }
    }

    out.push_str(concat!(
        "# Optional: where traffic that is not bound to a source address leaves.\n",
        "# [egress]\n",
        "# strategy = \"failover\"     # failover (first usable via, in order) | balance (ECMP)\n",
        "# [[egress.via]]\n",
        "# eni = \"eth0\"\n",
    ));
    out
}

/// Write `text` to `path` atomically: a temporary file in the same directory (mode 0600),
/// fsync, rename over `path`, then fsync the directory. Missing parent directories are created.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), DiscoverError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let werr = |source: io::Error| DiscoverError::Write {
        path: path.to_path_buf(),
        source,
    };
    let Some(file_name) = path.file_name() else {
        return Err(werr(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file path",
        )));
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(werr)?;
    if path.is_dir() {
        return Err(werr(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is a directory",
        )));
    }

    let mut tmp_name = OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);

    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(werr)?;
    let result = (|| {
        // The umask can only clear bits, but be explicit.
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    drop(file);
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(werr(e));
    }
    // Make the rename durable. Some filesystems refuse fsync on a directory: best effort.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// HTTP client
// ---------------------------------------------------------------------------------------------

struct Client {
    agent: ureq::Agent,
    base: String,
    ttl: u32,
    tries: u32,
    /// `None` = plain mode (the token endpoint does not exist).
    token: Option<String>,
}

/// The outcome of one request after retries: a status, and the body when the status is 200.
struct Answer {
    status: u16,
    body: String,
}

#[derive(Clone, Copy)]
enum Method {
    Get,
    Put,
}

impl Client {
    fn new(opts: &DiscoverOptions) -> Result<Self, DiscoverError> {
        let base = normalize_endpoint(&opts.endpoint)?;
        if opts.token_ttl == 0 || opts.token_ttl > MAX_TOKEN_TTL {
            return Err(DiscoverError::Option(format!(
                "token TTL {} is out of range 1..={MAX_TOKEN_TTL} seconds",
                opts.token_ttl
            )));
        }
        if opts.connect_timeout.is_zero() || opts.read_timeout.is_zero() {
            return Err(DiscoverError::Option(
                "timeouts must be greater than zero".to_string(),
            ));
        }
        let read = Some(opts.read_timeout);
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(format!("eniroute/{}", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(opts.connect_timeout))
            .timeout_send_request(read)
            .timeout_send_body(read)
            .timeout_recv_response(read)
            .timeout_recv_body(read)
            .build();
        Ok(Client {
            agent: config.into(),
            base,
            ttl: opts.token_ttl,
            tries: opts.retries.saturating_add(1),
            token: None,
        })
    }

    /// Security-hardening mode first: get a token, or fall back to plain reads on a 404.
    fn start_session(&mut self) -> Result<(), DiscoverError> {
        self.token = self.fetch_token()?;
        Ok(())
    }

    /// `Some(token)`, or `None` when the token endpoint does not exist.
    fn fetch_token(&self) -> Result<Option<String>, DiscoverError> {
        let ttl = self.ttl.to_string();
        let answer = self.exchange(Method::Put, TOKEN_PATH, Some((TOKEN_TTL_HEADER, &ttl)))?;
        match answer.status {
            200 => {
                let token = answer.body.trim();
                if token.is_empty()
                    || token.len() > MAX_TOKEN_LEN
                    || !token.bytes().all(|b| b.is_ascii_graphic())
                {
                    return Err(invalid(TOKEN_PATH, "malformed session token", token));
                }
                Ok(Some(token.to_string()))
            }
            404 => Ok(None),
            status => Err(status_error(TOKEN_PATH, status)),
        }
    }

    /// GET a metadata path: `Some(body)` on 200, `None` on 404, an error otherwise.
    fn get(&mut self, path: &str) -> Result<Option<String>, DiscoverError> {
        let mut renewed = false;
        loop {
            let answer = match &self.token {
                Some(t) => self.exchange(Method::Get, path, Some((TOKEN_HEADER, t)))?,
                None => self.exchange(Method::Get, path, None)?,
            };
            match answer.status {
                200 => return Ok(Some(answer.body)),
                404 => return Ok(None),
                401 if self.token.is_some() && !renewed => {
                    // The token expired or was revoked: renew it once and retry this read.
                    renewed = true;
                    match self.fetch_token()? {
                        Some(t) => self.token = Some(t),
                        None => {
                            return Err(DiscoverError::Unauthorized {
                                path: path.to_string(),
                                detail: format!(
                                    "HTTP 401 and the token endpoint {TOKEN_PATH} disappeared"
                                ),
                            })
                        }
                    }
                }
                401 => {
                    let detail = if self.token.is_some() {
                        "HTTP 401: the metadata service rejected a freshly renewed token"
                    } else {
                        "HTTP 401: the metadata service wants a token, but it has no token endpoint"
                    };
                    return Err(DiscoverError::Unauthorized {
                        path: path.to_string(),
                        detail: detail.to_string(),
                    });
                }
                status => return Err(status_error(path, status)),
            }
        }
    }

    /// GET a metadata path that must exist.
    fn get_required(&mut self, path: &str) -> Result<String, DiscoverError> {
        self.get(path)?.ok_or_else(|| DiscoverError::NotFound {
            path: path.to_string(),
        })
    }

    /// One request with bounded retries and backoff for transport errors and 5xx answers.
    fn exchange(
        &self,
        method: Method,
        path: &str,
        header: Option<(&str, &str)>,
    ) -> Result<Answer, DiscoverError> {
        let url = format!("{}{}", self.base, path);
        let mut last: Option<DiscoverError> = None;
        for attempt in 0..self.tries {
            if attempt > 0 {
                std::thread::sleep(backoff(attempt));
            }
            let result = match method {
                Method::Get => {
                    let mut req = self.agent.get(&url);
                    if let Some((name, value)) = header {
                        req = req.header(name, value);
                    }
                    req.call()
                }
                Method::Put => {
                    let mut req = self.agent.put(&url);
                    if let Some((name, value)) = header {
                        req = req.header(name, value);
                    }
                    req.send_empty()
                }
            };
            let response = match result {
                Ok(r) => r,
                Err(e) => {
                    last = Some(self.transport_error(path, &url, e)?);
                    continue;
                }
            };
            let status = response.status().as_u16();
            if status >= 500 {
                last = Some(status_error(path, status));
                continue;
            }
            if status != 200 {
                return Ok(Answer {
                    status,
                    body: String::new(),
                });
            }
            let bytes = match response
                .into_body()
                .with_config()
                .limit(MAX_RESPONSE_BYTES)
                .read_to_vec()
            {
                Ok(b) => b,
                Err(ureq::Error::BodyExceedsLimit(limit)) => {
                    return Err(DiscoverError::TooLarge {
                        path: path.to_string(),
                        limit,
                    })
                }
                Err(e) => {
                    last = Some(self.transport_error(path, &url, e)?);
                    continue;
                }
            };
            let body = String::from_utf8(bytes).map_err(|e| {
                invalid(
                    path,
                    "response is not UTF-8",
                    &String::from_utf8_lossy(e.as_bytes()),
                )
            })?;
            return Ok(Answer { status, body });
        }
        Err(last.unwrap_or_else(|| DiscoverError::Unreachable {
            path: path.to_string(),
            url,
            tries: self.tries,
            detail: "no try was made".to_string(),
        }))
    }

    /// Retryable transport errors become `Ok(error to remember)`; permanent ones `Err`.
    fn transport_error(
        &self,
        path: &str,
        url: &str,
        e: ureq::Error,
    ) -> Result<DiscoverError, DiscoverError> {
        match e {
            ureq::Error::Timeout(_) => Ok(DiscoverError::Timeout {
                path: path.to_string(),
                url: url.to_string(),
                tries: self.tries,
            }),
            ureq::Error::Io(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::Protocol(_)
            | ureq::Error::BodyStalled => Ok(DiscoverError::Unreachable {
                path: path.to_string(),
                url: url.to_string(),
                tries: self.tries,
                detail: e.to_string(),
            }),
            ureq::Error::BodyExceedsLimit(limit) => Err(DiscoverError::TooLarge {
                path: path.to_string(),
                limit,
            }),
            ureq::Error::LargeResponseHeader(..) => Err(DiscoverError::TooLarge {
                path: path.to_string(),
                limit: MAX_RESPONSE_BYTES,
            }),
            other => Err(DiscoverError::Unreachable {
                path: path.to_string(),
                url: url.to_string(),
                tries: 1,
                detail: other.to_string(),
            }),
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX);
    BASE_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

fn status_error(path: &str, status: u16) -> DiscoverError {
    let hint = match status {
        403 => " (forbidden: is a token required, or is access to the metadata service blocked?)",
        _ => "",
    };
    DiscoverError::Status {
        path: path.to_string(),
        status,
        hint: hint.to_string(),
    }
}

fn normalize_endpoint(endpoint: &str) -> Result<String, DiscoverError> {
    let err = |reason: &str| DiscoverError::Endpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let e = endpoint.trim();
    if e.is_empty() {
        return Err(err("empty"));
    }
    if e.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err("contains whitespace or control characters"));
    }
    if e.contains('?') || e.contains('#') {
        return Err(err("must not contain a query or fragment"));
    }
    let with_scheme = match e.split_once("://") {
        None => format!("http://{e}"),
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("http") => e.to_string(),
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
            return Err(err(
                "https is not supported: the metadata service speaks plain HTTP",
            ))
        }
        Some(_) => return Err(err("the scheme must be http://")),
    };
    let rest = with_scheme.get("http://".len()..).unwrap_or("");
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() {
        return Err(err("no host"));
    }
    Ok(with_scheme.trim_end_matches('/').to_string())
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

struct RawEni {
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

fn read_eni(client: &mut Client, mac_text: &str, mac: MacAddr6) -> Result<RawEni, DiscoverError> {
    let dir = format!("{MACS_PATH}{mac_text}/");
    let p = |key: &str| format!("{dir}{key}");

    let path = p("network-interface-id");
    let id = parse_eni_id(client.get_required(&path)?.trim(), &path)?;

    let path = p("vswitch-cidr-block");
    let cidr = parse_v4_net(client.get_required(&path)?.trim(), &path)?;

    let path = p("netmask");
    let prefix = parse_netmask(client.get_required(&path)?.trim(), &path)?;
    if prefix != cidr.prefix() {
        return Err(DiscoverError::Inconsistent {
            path,
            reason: format!("netmask /{prefix} disagrees with vswitch-cidr-block {cidr}"),
        });
    }

    let path = p("gateway");
    let gateway = parse_v4(client.get_required(&path)?.trim(), &path)?;
    if !cidr.contains(gateway) {
        return Err(DiscoverError::Inconsistent {
            path,
            reason: format!("gateway {gateway} is outside vswitch-cidr-block {cidr}"),
        });
    }

    let path = p("primary-ip-address");
    let primary_ip = parse_v4(client.get_required(&path)?.trim(), &path)?;

    let path = p("private-ipv4s");
    let listed: Vec<Ipv4Addr> = parse_json_list(&client.get_required(&path)?, &path, parse_v4)?;
    if !listed.contains(&primary_ip) {
        return Err(DiscoverError::Inconsistent {
            path,
            reason: format!("does not contain primary-ip-address {primary_ip}"),
        });
    }
    let mut private_ips = vec![primary_ip];
    private_ips.extend(listed.into_iter().filter(|ip| *ip != primary_ip));
    for ip in &private_ips {
        if !cidr.contains(*ip) {
            return Err(DiscoverError::Inconsistent {
                path,
                reason: format!("private IP {ip} is outside vswitch-cidr-block {cidr}"),
            });
        }
        if cidr.prefix() < 31 && (*ip == cidr.network() || *ip == cidr.broadcast()) {
            return Err(DiscoverError::Inconsistent {
                path,
                reason: format!("private IP {ip} is the network or broadcast address of {cidr}"),
            });
        }
        if *ip == gateway {
            return Err(DiscoverError::Inconsistent {
                path,
                reason: format!("private IP {ip} is the gateway"),
            });
        }
    }

    let path = p("ipv4-prefixes");
    let prefixes: Vec<Ipv4Network> = match client.get(&path)? {
        Some(text) => parse_json_list(&text, &path, parse_v4_net)?,
        None => Vec::new(),
    };
    for (i, n) in prefixes.iter().enumerate() {
        let reason = if !(cidr.contains(n.network()) && cidr.contains(n.broadcast())) {
            format!("prefix {n} is not inside vswitch-cidr-block {cidr}")
        } else if let Some(ip) = private_ips.iter().find(|ip| n.contains(**ip)) {
            format!("prefix {n} overlaps private IP {ip}")
        } else if n.contains(gateway) {
            format!("prefix {n} contains the gateway {gateway}")
        } else if let Some(o) = prefixes.iter().take(i).find(|o| o.overlaps(*n)) {
            format!("prefix {n} overlaps prefix {o}")
        } else {
            continue;
        };
        return Err(DiscoverError::Inconsistent { path, reason });
    }

    let path = p("ipv6s");
    let ipv6: Vec<Ipv6Addr> = match client.get(&path)? {
        Some(text) => parse_json_list(&text, &path, parse_v6)?,
        None => Vec::new(),
    };
    if let Some(ip) = ipv6.iter().find(|ip| {
        ip.is_unicast_link_local() || ip.is_multicast() || ip.is_loopback() || ip.is_unspecified()
    }) {
        return Err(DiscoverError::Inconsistent {
            path,
            reason: format!("IPv6 address {ip} is not a global unicast address"),
        });
    }
    let (ipv6_cidr, ipv6_gateway) = if ipv6.is_empty() {
        (None, None)
    } else {
        let path = p("vswitch-ipv6-cidr-block");
        let net = parse_v6_net(client.get_required(&path)?.trim(), &path)?;
        if let Some(ip) = ipv6.iter().find(|ip| !net.contains(**ip)) {
            return Err(DiscoverError::Inconsistent {
                path: p("ipv6s"),
                reason: format!("IPv6 address {ip} is outside vswitch-ipv6-cidr-block {net}"),
            });
        }
        let path = p("ipv6-gateway");
        let gw = parse_v6(client.get_required(&path)?.trim(), &path)?;
        if !(gw.is_unicast_link_local() || net.contains(gw)) {
            return Err(DiscoverError::Inconsistent {
                path,
                reason: format!(
                    "ipv6-gateway {gw} is neither link-local nor inside vswitch-ipv6-cidr-block {net}"
                ),
            });
        }
        (Some(net), Some(gw))
    };

    Ok(RawEni {
        mac,
        id,
        cidr,
        gateway,
        private_ips,
        prefixes,
        ipv6,
        ipv6_cidr,
        ipv6_gateway,
    })
}

/// No address may appear twice across the instance (the config would not validate).
fn check_global_uniqueness(
    enis: &[DiscoveredEni],
    eip: Option<Ipv4Addr>,
) -> Result<(), DiscoverError> {
    let mut seen4 = HashSet::new();
    let mut seen6 = HashSet::new();
    for eni in enis {
        let dir = format!("{MACS_PATH}{}/", fmt_mac(&eni.mac));
        for ip in &eni.private_ips {
            if !seen4.insert(*ip) {
                return Err(DiscoverError::Inconsistent {
                    path: format!("{dir}private-ipv4s"),
                    reason: format!("private IP {ip} is listed by more than one ENI"),
                });
            }
        }
        for ip in &eni.ipv6 {
            if !seen6.insert(*ip) {
                return Err(DiscoverError::Inconsistent {
                    path: format!("{dir}ipv6s"),
                    reason: format!("IPv6 address {ip} is listed by more than one ENI"),
                });
            }
        }
    }
    if let Some(eip) = eip {
        if seen4.contains(&eip) {
            return Err(DiscoverError::Inconsistent {
                path: EIPV4_PATH.to_string(),
                reason: format!("the EIP {eip} is also a private IP of an ENI"),
            });
        }
    }
    Ok(())
}

fn invalid(path: &str, reason: &str, value: &str) -> DiscoverError {
    const MAX: usize = 120;
    let shown = match value.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", value.get(..cut).unwrap_or("")),
        None => value.to_string(),
    };
    DiscoverError::Invalid {
        path: path.to_string(),
        reason: reason.to_string(),
        value: shown,
    }
}

/// The MAC listing: one MAC per line, each ending in `/`. Returns (text as listed, MAC).
fn parse_mac_listing(text: &str, path: &str) -> Result<Vec<(String, MacAddr6)>, DiscoverError> {
    let mut out: Vec<(String, MacAddr6)> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let entry = line.strip_suffix('/').unwrap_or(line);
        let mac = parse_mac(entry, path)?;
        if out.iter().any(|(_, m)| *m == mac) {
            return Err(invalid(path, "MAC listed twice", entry));
        }
        out.push((entry.to_string(), mac));
    }
    Ok(out)
}

/// Strictly `xx:xx:xx:xx:xx:xx` (hex, either case).
fn parse_mac(text: &str, path: &str) -> Result<MacAddr6, DiscoverError> {
    let bad = || invalid(path, "malformed MAC address", text);
    let mut bytes = [0u8; 6];
    let mut parts = text.split(':');
    for b in bytes.iter_mut() {
        let part = parts.next().ok_or_else(bad)?;
        if part.len() != 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        *b = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    let mac = MacAddr6::from(bytes);
    if mac.is_nil() || mac.is_multicast() {
        return Err(invalid(path, "not a unicast MAC address", text));
    }
    Ok(mac)
}

fn parse_v4(text: &str, path: &str) -> Result<Ipv4Addr, DiscoverError> {
    text.parse()
        .map_err(|_| invalid(path, "malformed IPv4 address", text))
}

fn parse_v6(text: &str, path: &str) -> Result<Ipv6Addr, DiscoverError> {
    text.parse()
        .map_err(|_| invalid(path, "malformed IPv6 address", text))
}

/// A CIDR block `a.b.c.d/n` whose host bits are zero.
fn parse_v4_net(text: &str, path: &str) -> Result<Ipv4Network, DiscoverError> {
    let Some((addr, len)) = text.split_once('/') else {
        return Err(invalid(path, "malformed IPv4 CIDR block", text));
    };
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| invalid(path, "malformed IPv4 CIDR block", text))?;
    let len = parse_prefix_len(len, 32)
        .ok_or_else(|| invalid(path, "malformed IPv4 CIDR block", text))?;
    let net = Ipv4Network::new(addr, len)
        .map_err(|_| invalid(path, "malformed IPv4 CIDR block", text))?;
    if net.network() != addr {
        return Err(invalid(path, "CIDR block has host bits set", text));
    }
    Ok(net)
}

fn parse_v6_net(text: &str, path: &str) -> Result<Ipv6Network, DiscoverError> {
    let Some((addr, len)) = text.split_once('/') else {
        return Err(invalid(path, "malformed IPv6 CIDR block", text));
    };
    let addr: Ipv6Addr = addr
        .parse()
        .map_err(|_| invalid(path, "malformed IPv6 CIDR block", text))?;
    let len = parse_prefix_len(len, 128)
        .ok_or_else(|| invalid(path, "malformed IPv6 CIDR block", text))?;
    let net = Ipv6Network::new(addr, len)
        .map_err(|_| invalid(path, "malformed IPv6 CIDR block", text))?;
    if net.network() != addr {
        return Err(invalid(path, "CIDR block has host bits set", text));
    }
    Ok(net)
}

/// Decimal digits only (no sign, no leading zeros beyond "0"), at most `max`.
fn parse_prefix_len(text: &str, max: u8) -> Option<u8> {
    if text.is_empty()
        || text.len() > 3
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return None;
    }
    let n: u8 = text.parse().ok()?;
    (n <= max).then_some(n)
}

/// A dotted-quad netmask with contiguous ones; returns its prefix length.
fn parse_netmask(text: &str, path: &str) -> Result<u8, DiscoverError> {
    let mask: Ipv4Addr = text
        .parse()
        .map_err(|_| invalid(path, "malformed netmask", text))?;
    let bits = u32::from(mask);
    let ones = bits.leading_ones();
    if ones + bits.trailing_zeros() != 32 {
        return Err(invalid(path, "netmask is not contiguous", text));
    }
    u8::try_from(ones).map_err(|_| invalid(path, "malformed netmask", text))
}

/// The EIP must be a public address (the rule of `config::not_public`).
fn parse_public_v4(text: &str, path: &str) -> Result<Ipv4Addr, DiscoverError> {
    let ip = parse_v4(text, path)?;
    if let Some(why) = crate::config::not_public(ip) {
        return Err(invalid(
            path,
            &format!("the EIP is not a public address ({why})"),
            text,
        ));
    }
    Ok(ip)
}

/// A JSON array of strings, each parsed strictly; duplicates are an error.
fn parse_json_list<T: PartialEq>(
    text: &str,
    path: &str,
    parse: fn(&str, &str) -> Result<T, DiscoverError>,
) -> Result<Vec<T>, DiscoverError> {
    let items: Vec<String> = serde_json::from_str(text.trim()).map_err(|e| {
        invalid(
            path,
            &format!("malformed JSON array of strings ({e})"),
            text,
        )
    })?;
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        let value = parse(item.trim(), path)?;
        if out.contains(&value) {
            return Err(invalid(path, "value listed twice", item));
        }
        out.push(value);
    }
    Ok(out)
}

/// `eni-...`: ASCII letters, digits, `-` and `_`.
fn parse_eni_id(text: &str, path: &str) -> Result<String, DiscoverError> {
    if text.is_empty()
        || text.len() > 128
        || !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(invalid(path, "malformed ENI id", text));
    }
    Ok(text.to_string())
}

/// `cn-hangzhou`, `ap-southeast-1`...: lowercase ASCII letters, digits and `-`.
fn parse_region(text: &str, path: &str) -> Result<String, DiscoverError> {
    if text.is_empty()
        || text.len() > 64
        || !text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(invalid(path, "malformed region id", text));
    }
    Ok(text.to_string())
}

// ---------------------------------------------------------------------------------------------
// TOML rendering helpers
// ---------------------------------------------------------------------------------------------

fn secondary_eip_example(eni: &DiscoveredEni) -> String {
    let private_ip = eni
        .private_ips
        .first()
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "<a private IP of this ENI>".to_string());
    let mut s = String::new();
    s.push_str(concat!(
        "# Elastic IPs of this ENI are not in the metadata. To declare one, uncomment and fill in\n",
        "# a block per EIP. The mode (above) is how the EIPs are associated with this ENI:\n",
        "#   nat (default)  the VPC maps each EIP to one private IP; private_ip says which\n",
        "#                  (default: the first of private_ips). Not visible in the guest OS.\n",
        "#   cut-through    set mode = \"cut-through\": the one EIP becomes the ENI's own\n",
        "#                  address; give its gateway (and prefix, default 32); private_ips\n",
        "#                  may list only the primary private IP. No private_ip line.\n",
        "#   multi-eip      set mode = \"multi-eip\": up to 10 EIPs, each configured as a static\n",
        "#                  address (prefix default 32, gateway default this ENI's gateway).\n",
        "#                  No private_ip line.\n",
        "# [[eni.eip]]\n",
        "# address = \"<public EIP address>\"\n",
    ));
    let _ = writeln!(s, "# private_ip = {}", quote(&private_ip));
    s.push('\n');
    s
}

/// A TOML basic string with every needed escape, by the toml crate's own serializer.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn quote_list<T: ToString>(items: &[T]) -> String {
    let parts: Vec<String> = items.iter().map(|i| quote(&i.to_string())).collect();
    format!("[{}]", parts.join(", "))
}

/// TOML comments may not contain control characters other than tab.
fn comment_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn fmt_mac(mac: &MacAddr6) -> String {
    let b = mac.as_bytes();
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4], b[5]
    )
}

/// `YYYY-MM-DDTHH:MM:SSZ` (UTC), without panicking on any `SystemTime`.
fn format_utc(t: SystemTime) -> String {
    let Ok(since) = t.duration_since(UNIX_EPOCH) else {
        return "(unknown time)".to_string();
    };
    let secs = since.as_secs();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days, for days >= 0.
    let z = days.saturating_add(719_468);
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe.saturating_add(era.saturating_mul(400)) + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_251_199); // 2024-02-29T23:59:59Z
        assert_eq!(format_utc(t), "2024-02-29T23:59:59Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(format_utc(t), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn strict_values() {
        assert!(parse_mac("00:16:3e:aa:bb:cc", "p").is_ok());
        assert!(parse_mac("00:16:3E:AA:BB:CC", "p").is_ok());
        for bad in [
            "00:16:3e:aa:bb",
            "00-16-3e-aa-bb-cc",
            "00:16:3e:aa:bb:cc:dd",
            "0:16:3e:aa:bb:cc",
            "+0:16:3e:aa:bb:cc",
            "",
        ] {
            assert!(parse_mac(bad, "p").is_err(), "{bad}");
        }
        assert_eq!(parse_netmask("255.255.255.0", "p").ok(), Some(24));
        assert_eq!(parse_netmask("0.0.0.0", "p").ok(), Some(0));
        assert!(parse_netmask("255.0.255.0", "p").is_err());
        assert!(parse_v4_net("192.168.1.0/24", "p").is_ok());
        for bad in [
            "192.168.1.1/24",
            "192.168.1.0/33",
            "192.168.1.0/024",
            "192.168.1.0",
            "192.168.1.0/+4",
            "192.168.1.0/",
        ] {
            assert!(parse_v4_net(bad, "p").is_err(), "{bad}");
        }
        assert!(parse_v6_net("2001:db8::/64", "p").is_ok());
        assert!(parse_v6_net("2001:db8::1/64", "p").is_err());
        assert!(parse_public_v4("203.0.113.7", "p").is_ok());
        assert!(parse_public_v4("192.168.0.1", "p").is_err());
        assert!(parse_region("cn-hangzhou", "p").is_ok());
        assert!(parse_region("cn hangzhou", "p").is_err());
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            normalize_endpoint("http://100.100.100.200/")
                .ok()
                .as_deref(),
            Some("http://100.100.100.200")
        );
        assert_eq!(
            normalize_endpoint("127.0.0.1:8080").ok().as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert!(normalize_endpoint("https://x").is_err());
        assert!(normalize_endpoint("ftp://x").is_err());
        assert!(normalize_endpoint("http://").is_err());
        assert!(normalize_endpoint("http://a b").is_err());
    }

    #[test]
    fn backoff_is_bounded() {
        assert_eq!(backoff(1), BASE_BACKOFF);
        assert_eq!(backoff(2), BASE_BACKOFF * 2);
        assert_eq!(backoff(100), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
