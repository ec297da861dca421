//! `eniroute discover` against mock metadata services (tiny_http on 127.0.0.1, port 0): Alibaba
//! Cloud ECS and AWS EC2 (IMDSv2), serving only documented formats; each fixture says where its
//! format is documented. A path the mock does not serve is a 404 with an HTML body, as both
//! services answer.
//!
//! Mock data uses only private (192.168.0.0/16, 172.16.0.0/12) and documentation
//! (2001:db8::/32, 203.0.113.0/24) addresses.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eniroute::discover::{
    discover, to_toml, write_atomic, DiscoverError, DiscoverOptions, Discovered, DiscoveredEni,
    ProviderChoice, ProviderKind,
};
use proptest::prelude::*;

const TOKEN: &str = "/latest/api/token";
const MACS: &str = "/latest/meta-data/network/interfaces/macs/";

// ---------------------------------------------------------------------------------------------
// The mock metadata service
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum TokenMode {
    /// `PUT /latest/api/token` is 404: an old service without security-hardening mode.
    Absent,
    /// Tokens are issued and checked when sent, but reads without one are allowed.
    Optional,
    /// Security-hardening mode enforced: reads without a valid token are 403.
    Required,
}

#[derive(Debug, Clone)]
struct Logged {
    method: String,
    path: String,
    token: Option<String>,
    ttl: Option<String>,
}

struct State {
    routes: HashMap<String, (u16, Vec<u8>)>,
    token_mode: TokenMode,
    /// Answer every token request with this status instead.
    token_status: Option<u16>,
    valid_tokens: HashSet<String>,
    issued: u32,
    /// After this many reads, every token issued so far becomes invalid (once).
    expire_tokens_after_reads: Option<u32>,
    /// Every token is rejected with 401.
    reject_all_tokens: bool,
    /// The first N requests get a 503.
    fail_first: u32,
    /// Every request gets this status.
    status_everywhere: Option<u16>,
    /// Accept requests and never answer them.
    hang: bool,
    reads: u32,
    log: Vec<Logged>,
    /// The token and TTL header names (Alibaba's or AWS's).
    headers: (&'static str, &'static str),
    /// The status of a read without a token when one is required (ECS 403, IMDSv2 401).
    missing_token_status: u16,
    /// The next N reads get 429 with this Retry-After (seconds).
    throttle: Option<(u32, u64)>,
    /// Every answer waits this long first.
    delay: Option<Duration>,
}

/// The 404 page both services send (IMDS sends this XHTML page; ECS an HTML one).
const NOT_FOUND_HTML: &str = "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n<!DOCTYPE html>\n\
<html><head><title>404 - Not Found</title></head><body><h1>404 - Not Found</h1></body></html>\n";

struct Mock {
    url: String,
    state: Arc<Mutex<State>>,
    server: Arc<tiny_http::Server>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Mock {
    fn new(routes: HashMap<String, (u16, Vec<u8>)>, token_mode: TokenMode) -> Mock {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind mock"));
        let addr = server.server_addr().to_ip().expect("ip listener");
        let state = Arc::new(Mutex::new(State {
            routes,
            token_mode,
            token_status: None,
            valid_tokens: HashSet::new(),
            issued: 0,
            expire_tokens_after_reads: None,
            reject_all_tokens: false,
            fail_first: 0,
            status_everywhere: None,
            hang: false,
            reads: 0,
            log: Vec::new(),
            headers: (
                "X-aliyun-ecs-metadata-token",
                "X-aliyun-ecs-metadata-token-ttl-seconds",
            ),
            missing_token_status: 403,
            throttle: None,
            delay: None,
        }));
        let (srv, st) = (Arc::clone(&server), Arc::clone(&state));
        let thread = thread::spawn(move || {
            let mut held = Vec::new(); // requests that are never answered
            for req in srv.incoming_requests() {
                let (status, body, retry_after, delay) = {
                    let mut s = st.lock().expect("mock state");
                    if s.hang {
                        held.push(req);
                        continue;
                    }
                    let (status, body, retry_after) = handle(&mut s, &req);
                    (status, body, retry_after, s.delay)
                };
                if let Some(d) = delay {
                    thread::sleep(d);
                }
                let mut resp = tiny_http::Response::from_data(body).with_status_code(status);
                if let Some(secs) = retry_after {
                    let h = tiny_http::Header::from_bytes("Retry-After", secs.to_string())
                        .expect("header");
                    resp = resp.with_header(h);
                }
                let _ = req.respond(resp);
            }
        });
        Mock {
            url: format!("http://{addr}"),
            state,
            server,
            thread: Some(thread),
        }
    }

    /// An IMDSv2 mock: AWS's token headers, 401 for a read without a token.
    fn aws(routes: HashMap<String, (u16, Vec<u8>)>, token_mode: TokenMode) -> Mock {
        let m = Mock::new(routes, token_mode);
        m.with(|s| {
            s.headers = (
                "X-aws-ec2-metadata-token",
                "X-aws-ec2-metadata-token-ttl-seconds",
            );
            s.missing_token_status = 401;
        });
        m
    }

    fn aws_opts(&self) -> DiscoverOptions {
        DiscoverOptions {
            provider: ProviderChoice::Is(ProviderKind::Aws),
            ..self.opts()
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().expect("mock state"))
    }

    fn log(&self) -> Vec<Logged> {
        self.with(|s| s.log.clone())
    }

    fn count(&self, method: &str, path: &str) -> usize {
        self.log()
            .iter()
            .filter(|l| l.method == method && l.path == path)
            .count()
    }

    fn opts(&self) -> DiscoverOptions {
        DiscoverOptions {
            provider: ProviderChoice::Is(ProviderKind::Aliyun),
            endpoint: Some(self.url.clone()),
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(2),
            ..DiscoverOptions::default()
        }
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn header(req: &tiny_http::Request, name: &str) -> Option<String> {
    req.headers()
        .iter()
        .find(|h| h.field.to_string().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str().to_string())
}

fn handle(s: &mut State, req: &tiny_http::Request) -> (u16, Vec<u8>, Option<u64>) {
    let (status, body) = answer(s, req);
    if let Some((n, secs)) = s.throttle.filter(|(n, _)| *n > 0) {
        s.throttle = Some((n - 1, secs));
        return (429, Vec::new(), Some(secs));
    }
    let body = if status == 404 {
        NOT_FOUND_HTML.as_bytes().to_vec()
    } else {
        body
    };
    (status, body, None)
}

fn answer(s: &mut State, req: &tiny_http::Request) -> (u16, Vec<u8>) {
    let method = req.method().as_str().to_string();
    let path = req.url().to_string();
    let token = header(req, s.headers.0);
    let ttl = header(req, s.headers.1);
    s.log.push(Logged {
        method: method.clone(),
        path: path.clone(),
        token: token.clone(),
        ttl: ttl.clone(),
    });
    if s.fail_first > 0 {
        s.fail_first -= 1;
        return (503, b"busy".to_vec());
    }
    if let Some(status) = s.status_everywhere {
        return (status, b"error".to_vec());
    }
    if path == TOKEN {
        if method != "PUT" {
            return (405, Vec::new());
        }
        if s.token_mode == TokenMode::Absent {
            return (404, Vec::new());
        }
        if let Some(status) = s.token_status {
            return (status, Vec::new());
        }
        match ttl.as_deref().and_then(|t| t.parse::<u32>().ok()) {
            Some(t) if (1..=21600).contains(&t) => {}
            _ => return (400, b"bad ttl".to_vec()),
        }
        s.issued += 1;
        let token = format!("tok-{}-AbC", s.issued);
        s.valid_tokens.insert(token.clone());
        return (200, token.into_bytes());
    }
    if method != "GET" {
        return (405, Vec::new());
    }
    s.reads += 1;
    if let Some(n) = s.expire_tokens_after_reads {
        if s.reads > n {
            s.valid_tokens.clear();
            s.expire_tokens_after_reads = None;
        }
    }
    match &token {
        Some(t) if s.reject_all_tokens || !s.valid_tokens.contains(t) => {
            return (401, b"invalid token".to_vec())
        }
        None if s.token_mode == TokenMode::Required => {
            return (s.missing_token_status, b"token required".to_vec())
        }
        _ => {}
    }
    match s.routes.get(&path) {
        Some((status, body)) => (*status, body.clone()),
        None => (404, b"Not Found".to_vec()),
    }
}

// ---------------------------------------------------------------------------------------------
// Fixture: three ENIs, listed out of order; the second listed is the primary
// ---------------------------------------------------------------------------------------------

const MAC_PRIMARY: &str = "00:16:3e:00:00:01";
const MAC_V6: &str = "00:16:3e:00:00:02";
const MAC_THIRD: &str = "00:16:3e:00:00:03";

fn put(routes: &mut HashMap<String, (u16, Vec<u8>)>, path: &str, body: &str) {
    routes.insert(path.to_string(), (200, body.as_bytes().to_vec()));
}

fn eni_path(mac: &str, key: &str) -> String {
    format!("{MACS}{mac}/{key}")
}

fn three_enis() -> HashMap<String, (u16, Vec<u8>)> {
    let mut r = HashMap::new();
    put(
        &mut r,
        MACS,
        &format!("{MAC_V6}/\n{MAC_PRIMARY}/\n{MAC_THIRD}/\n"),
    );
    put(&mut r, "/latest/meta-data/mac", MAC_PRIMARY);
    put(&mut r, "/latest/meta-data/eipv4", "203.0.113.10");
    put(&mut r, "/latest/meta-data/region-id", "cn-beijing");

    let m = MAC_PRIMARY;
    put(
        &mut r,
        &eni_path(m, "network-interface-id"),
        "eni-primary0001",
    );
    put(&mut r, &eni_path(m, "primary-ip-address"), "192.168.0.10");
    // JSON with quotes, as Alibaba's instance-metadata table shows `private-ipv4s`
    // (`["192.168.XX.XX"]`, alibabacloud.com/help/ecs/user-guide/instance-metadata-items).
    // The primary private IP is not first here: discover must put it first.
    put(
        &mut r,
        &eni_path(m, "private-ipv4s"),
        r#"["192.168.0.11","192.168.0.10"]"#,
    );
    put(&mut r, &eni_path(m, "netmask"), "255.255.255.0");
    put(&mut r, &eni_path(m, "gateway"), "192.168.0.253");
    put(&mut r, &eni_path(m, "vswitch-cidr-block"), "192.168.0.0/24");
    // ipv4-prefixes and ipv6s: 404 (absent)

    let m = MAC_V6;
    put(
        &mut r,
        &eni_path(m, "network-interface-id"),
        "eni-second0002",
    );
    put(&mut r, &eni_path(m, "primary-ip-address"), "192.168.1.20");
    put(
        &mut r,
        &eni_path(m, "private-ipv4s"),
        "[\"192.168.1.20\", \"192.168.1.21\"]\n",
    );
    put(&mut r, &eni_path(m, "netmask"), "255.255.255.0\n");
    put(&mut r, &eni_path(m, "gateway"), "192.168.1.253");
    put(&mut r, &eni_path(m, "vswitch-cidr-block"), "192.168.1.0/24");
    // A bare CIDR (issue 14's table of the service's answers).
    put(&mut r, &eni_path(m, "ipv4-prefixes"), "192.168.1.48/28");
    // Brackets without quotes: cloud-init's Alibaba fixture
    // (tests/unittests/sources/test_aliyun.py, `"ipv6s": "[2408:xxxxxx]"`) and issue 14
    // (`[2408:4321:180:1701:94c7:bc38:3bfa:e4e]`).
    put(
        &mut r,
        &eni_path(m, "ipv6s"),
        "[2001:db8:1::20,2001:db8:1::21]",
    );
    put(&mut r, &eni_path(m, "ipv6-gateway"), "2001:db8:1::1");
    put(
        &mut r,
        &eni_path(m, "vswitch-ipv6-cidr-block"),
        "2001:db8:1::/64",
    );

    let m = MAC_THIRD;
    put(
        &mut r,
        &eni_path(m, "network-interface-id"),
        "eni-third0003",
    );
    put(&mut r, &eni_path(m, "primary-ip-address"), "192.168.2.30");
    put(&mut r, &eni_path(m, "private-ipv4s"), r#"["192.168.2.30"]"#);
    put(&mut r, &eni_path(m, "netmask"), "255.255.255.128");
    put(&mut r, &eni_path(m, "gateway"), "192.168.2.125");
    put(&mut r, &eni_path(m, "vswitch-cidr-block"), "192.168.2.0/25");
    // No prefixes: an empty body; no IPv6: `[]` (issue 14: empty, `[]` or 404).
    put(&mut r, &eni_path(m, "ipv4-prefixes"), "");
    put(&mut r, &eni_path(m, "ipv6s"), "[]");
    r
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().expect("v4")
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().expect("v6")
}

fn assert_fixture(d: &Discovered) {
    assert_eq!(d.region.as_deref(), Some("cn-beijing"));
    let names: Vec<&str> = d.enis.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["eth0", "eth1", "eth2"]);
    let e = &d.enis[0];
    assert!(e.primary);
    assert_eq!(e.id, "eni-primary0001");
    assert_eq!(e.private_ips, [v4("192.168.0.10"), v4("192.168.0.11")]);
    let eips: Vec<(Ipv4Addr, Ipv4Addr)> =
        e.eips.iter().map(|x| (x.address, x.private_ip)).collect();
    assert_eq!(eips, [(v4("203.0.113.10"), v4("192.168.0.10"))]);
    assert!(e.prefixes.is_empty() && e.ipv6.is_empty());
    let e = &d.enis[1];
    assert!(!e.primary);
    assert_eq!(e.id, "eni-second0002");
    assert_eq!(e.ipv6, [v6("2001:db8:1::20"), v6("2001:db8:1::21")]);
    assert_eq!(e.ipv6_gateway, Some(v6("2001:db8:1::1")));
    assert!(e.eips.is_empty());
    let e = &d.enis[2];
    assert_eq!(e.id, "eni-third0003");
    assert_eq!(e.cidr.to_string(), "192.168.2.0/25");
    assert!(e.prefixes.is_empty() && e.ipv6.is_empty() && e.ipv6_cidr.is_none());
}

fn expect_err(opts: &DiscoverOptions) -> DiscoverError {
    match discover(opts) {
        Ok(d) => panic!("expected an error, discovered {d:?}"),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------------------
// Modes: plain, token, renewal
// ---------------------------------------------------------------------------------------------

#[test]
fn plain_mode_when_token_endpoint_is_404() {
    let mock = Mock::new(three_enis(), TokenMode::Absent);
    let d = discover(&mock.opts()).expect("discover");
    assert!(!d.hardened);
    assert_fixture(&d);
    assert_eq!(mock.count("PUT", TOKEN), 1, "token endpoint asked once");
    assert!(mock.log().iter().all(|l| l.token.is_none()));
}

#[test]
fn token_mode_sends_the_token_on_every_read() {
    let mock = Mock::new(three_enis(), TokenMode::Required);
    let opts = DiscoverOptions {
        token_ttl: 300,
        ..mock.opts()
    };
    let d = discover(&opts).expect("discover");
    assert!(d.hardened);
    assert_fixture(&d);
    let log = mock.log();
    assert_eq!(log[0].method, "PUT");
    assert_eq!(log[0].path, TOKEN);
    assert_eq!(log[0].ttl.as_deref(), Some("300"));
    let gets: Vec<&Logged> = log.iter().filter(|l| l.method == "GET").collect();
    assert!(gets.len() > 20, "read every key: {}", gets.len());
    assert!(gets.iter().all(|l| l.token.as_deref() == Some("tok-1-AbC")));
    // Keys of ENIs without IPv6 are not asked for.
    assert_eq!(mock.count("GET", &eni_path(MAC_PRIMARY, "ipv6-gateway")), 0);
}

#[test]
fn default_token_ttl_is_21600() {
    let mock = Mock::new(three_enis(), TokenMode::Optional);
    discover(&mock.opts()).expect("discover");
    assert_eq!(mock.log()[0].ttl.as_deref(), Some("21600"));
}

#[test]
fn expired_token_is_renewed_once_mid_run() {
    let mock = Mock::new(three_enis(), TokenMode::Required);
    mock.with(|s| s.expire_tokens_after_reads = Some(7));
    let d = discover(&mock.opts()).expect("discover");
    assert_fixture(&d);
    assert_eq!(mock.count("PUT", TOKEN), 2, "one renewal");
    let log = mock.log();
    let last = log.last().expect("log");
    assert_eq!(last.token.as_deref(), Some("tok-2-AbC"));
    // The read that got the 401 was retried with the new token.
    let unauthorized = &log[8];
    assert_eq!(unauthorized.token.as_deref(), Some("tok-1-AbC"));
    assert_eq!(log[9].method, "PUT");
    assert_eq!(log[10].path, unauthorized.path);
    assert_eq!(log[10].token.as_deref(), Some("tok-2-AbC"));
}

#[test]
fn persistent_401_is_an_error_after_one_renewal() {
    let mock = Mock::new(three_enis(), TokenMode::Required);
    mock.with(|s| s.reject_all_tokens = true);
    let err = expect_err(&mock.opts());
    assert!(matches!(err, DiscoverError::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains(MACS), "{err}");
    assert_eq!(mock.count("PUT", TOKEN), 2);
}

#[test]
fn forbidden_token_endpoint_is_not_a_fallback_to_plain_reads() {
    let mock = Mock::new(three_enis(), TokenMode::Required);
    mock.with(|s| s.token_status = Some(403));
    let err = expect_err(&mock.opts());
    assert!(
        matches!(err, DiscoverError::Status { status: 403, ref path, .. } if path == TOKEN),
        "{err:?}"
    );
    assert_eq!(mock.count("GET", MACS), 0);
}

#[test]
fn invalid_token_ttl_is_rejected_before_any_request() {
    let mock = Mock::new(three_enis(), TokenMode::Optional);
    for ttl in [0, 21601] {
        let opts = DiscoverOptions {
            token_ttl: ttl,
            ..mock.opts()
        };
        assert!(matches!(expect_err(&opts), DiscoverError::Option(_)));
    }
    assert!(mock.log().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Absent and malformed values
// ---------------------------------------------------------------------------------------------

#[test]
fn ipv6s_404_means_no_ipv6() {
    let mut routes = three_enis();
    routes.remove(&eni_path(MAC_V6, "ipv6s"));
    let mock = Mock::new(routes, TokenMode::Optional);
    let d = discover(&mock.opts()).expect("discover");
    let e = &d.enis[1];
    assert!(e.ipv6.is_empty() && e.ipv6_cidr.is_none() && e.ipv6_gateway.is_none());
    assert_eq!(mock.count("GET", &eni_path(MAC_V6, "ipv6-gateway")), 0);
    let text = to_toml(&d);
    let t: toml::Table = toml::from_str(&text).expect("toml");
    let eni = &t["eni"].as_array().expect("eni")[1];
    for key in ["ipv6", "ipv6_cidr", "ipv6_gateway"] {
        assert!(eni.get(key).is_none(), "{key} in {text}");
    }
}

#[test]
fn eipv4_404_means_no_eip() {
    let mut routes = three_enis();
    routes.remove("/latest/meta-data/eipv4");
    let mock = Mock::new(routes, TokenMode::Optional);
    let d = discover(&mock.opts()).expect("discover");
    assert!(d.enis.iter().all(|e| e.eips.is_empty()));
    let t: toml::Table = toml::from_str(&to_toml(&d)).expect("toml");
    assert!(t["eni"][0].get("eip").is_none());
}

#[test]
fn malformed_private_ipv4s_json_names_the_path() {
    let mut routes = three_enis();
    let path = eni_path(MAC_THIRD, "private-ipv4s");
    put(&mut routes, &path, r#"["192.168.2.30","#);
    let mock = Mock::new(routes, TokenMode::Optional);
    let err = expect_err(&mock.opts());
    assert!(
        matches!(err, DiscoverError::Invalid { path: ref p, .. } if *p == path),
        "{err:?}"
    );
    assert!(err.to_string().contains(&path), "{err}");
}

#[test]
fn malformed_values_are_errors_naming_the_path() {
    let cases = [
        (MACS.to_string(), "00:16:3e:00:00:01/\nnot-a-mac/\n"),
        ("/latest/meta-data/mac".to_string(), "00:16:3e:00:00"),
        (eni_path(MAC_V6, "gateway"), "192.168.1.999"),
        (eni_path(MAC_V6, "netmask"), "255.0.255.0"),
        (eni_path(MAC_V6, "vswitch-cidr-block"), "192.168.1.7/24"),
        (eni_path(MAC_V6, "ipv4-prefixes"), r#"["192.168.1.48/33"]"#),
        (eni_path(MAC_V6, "ipv6s"), r#"["2001:db8:1::zz"]"#),
        (eni_path(MAC_V6, "ipv6s"), r#"{"a":1}"#),
        (eni_path(MAC_V6, "vswitch-ipv6-cidr-block"), "2001:db8:1::"),
        (eni_path(MAC_V6, "network-interface-id"), "eni x\ny"),
        ("/latest/meta-data/eipv4".to_string(), "192.168.7.7"),
        ("/latest/meta-data/region-id".to_string(), "cn beijing"),
    ];
    for (path, body) in cases {
        let mut routes = three_enis();
        put(&mut routes, &path, body);
        let mock = Mock::new(routes, TokenMode::Optional);
        let err = expect_err(&mock.opts());
        assert!(err.to_string().contains(&path), "{path}: {err}");
    }
}

#[test]
fn inconsistent_values_are_errors_naming_the_path() {
    let cases = [
        // netmask disagrees with vswitch-cidr-block
        (eni_path(MAC_V6, "netmask"), "255.255.0.0", "netmask"),
        // gateway outside the vSwitch
        (eni_path(MAC_V6, "gateway"), "192.168.9.1", "gateway"),
        // private IP outside the vSwitch
        (
            eni_path(MAC_V6, "private-ipv4s"),
            r#"["192.168.1.20","10.0.0.1"]"#,
            "private-ipv4s",
        ),
        // primary IP not among the private IPs
        (
            eni_path(MAC_V6, "private-ipv4s"),
            r#"["192.168.1.21"]"#,
            "private-ipv4s",
        ),
        // prefix outside the vSwitch
        (
            eni_path(MAC_V6, "ipv4-prefixes"),
            r#"["192.168.5.0/28"]"#,
            "ipv4-prefixes",
        ),
        // IPv6 address outside the IPv6 vSwitch
        (eni_path(MAC_V6, "ipv6s"), r#"["2001:db8:2::1"]"#, "ipv6s"),
        // the same private IP on two ENIs
        (
            eni_path(MAC_THIRD, "vswitch-cidr-block"),
            "192.168.1.0/24",
            "x",
        ),
        // the primary MAC is not listed
        (
            "/latest/meta-data/mac".to_string(),
            "00:16:3e:00:00:09",
            "mac",
        ),
    ];
    for (path, body, what) in cases {
        let mut routes = three_enis();
        put(&mut routes, &path, body);
        if what == "x" {
            // Make ENI 3 a second holder of 192.168.1.21 in a consistent way.
            put(
                &mut routes,
                &eni_path(MAC_THIRD, "netmask"),
                "255.255.255.0",
            );
            put(
                &mut routes,
                &eni_path(MAC_THIRD, "gateway"),
                "192.168.1.253",
            );
            put(
                &mut routes,
                &eni_path(MAC_THIRD, "primary-ip-address"),
                "192.168.1.21",
            );
            put(
                &mut routes,
                &eni_path(MAC_THIRD, "private-ipv4s"),
                r#"["192.168.1.21"]"#,
            );
        }
        let mock = Mock::new(routes, TokenMode::Optional);
        let err = expect_err(&mock.opts());
        let msg = err.to_string();
        assert!(msg.contains("/latest/meta-data/"), "{what}: {msg}");
        if what != "x" {
            assert!(msg.contains(&path), "{what}: {msg}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Outages: never an empty config
// ---------------------------------------------------------------------------------------------

#[test]
fn empty_mac_listing_is_an_error() {
    for listing in ["", "\n", "  \n\n"] {
        let mut routes = three_enis();
        put(&mut routes, MACS, listing);
        let mock = Mock::new(routes, TokenMode::Optional);
        let err = expect_err(&mock.opts());
        assert!(matches!(err, DiscoverError::NoEnis { .. }), "{err:?}");
        assert!(err.to_string().contains(MACS));
    }
}

#[test]
fn missing_mac_listing_is_an_error() {
    let mut routes = three_enis();
    routes.remove(MACS);
    let mock = Mock::new(routes, TokenMode::Optional);
    let err = expect_err(&mock.opts());
    assert!(
        matches!(err, DiscoverError::NotFound { ref path } if path == MACS),
        "{err:?}"
    );
}

#[test]
fn server_errors_everywhere_fail_after_bounded_retries() {
    let mock = Mock::new(three_enis(), TokenMode::Optional);
    mock.with(|s| s.status_everywhere = Some(500));
    let start = Instant::now();
    let err = expect_err(&mock.opts());
    assert!(
        matches!(err, DiscoverError::Status { status: 500, ref path, .. } if path == TOKEN),
        "{err:?}"
    );
    assert_eq!(mock.count("PUT", TOKEN), 3, "1 try + 2 retries");
    assert_eq!(mock.log().len(), 3, "nothing else asked");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn server_errors_on_reads_fail_in_plain_mode_too() {
    let mut routes = three_enis();
    routes.insert(MACS.to_string(), (502, Vec::new()));
    let mock = Mock::new(routes, TokenMode::Absent);
    let err = expect_err(&mock.opts());
    assert!(
        matches!(err, DiscoverError::Status { status: 502, ref path, .. } if path == MACS),
        "{err:?}"
    );
    assert_eq!(mock.count("GET", MACS), 3);
}

#[test]
fn transient_server_errors_are_retried() {
    let mock = Mock::new(three_enis(), TokenMode::Required);
    mock.with(|s| s.fail_first = 2);
    let d = discover(&mock.opts()).expect("discover");
    assert_fixture(&d);
    assert_eq!(mock.count("PUT", TOKEN), 3);
}

#[test]
fn server_that_never_answers_times_out() {
    let mock = Mock::new(three_enis(), TokenMode::Optional);
    mock.with(|s| s.hang = true);
    let opts = DiscoverOptions {
        connect_timeout: Duration::from_millis(500),
        read_timeout: Duration::from_millis(300),
        retries: 1,
        ..mock.opts()
    };
    let start = Instant::now();
    let err = expect_err(&opts);
    let elapsed = start.elapsed();
    assert!(
        matches!(err, DiscoverError::Timeout { ref path, tries: 2, .. } if path == TOKEN),
        "{err:?}"
    );
    assert!(err.to_string().contains(TOKEN));
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
}

#[test]
fn connection_refused_is_an_error() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let opts = DiscoverOptions {
        provider: ProviderChoice::Is(ProviderKind::Aliyun),
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        connect_timeout: Duration::from_millis(500),
        read_timeout: Duration::from_millis(500),
        retries: 1,
        ..DiscoverOptions::default()
    };
    let err = expect_err(&opts);
    assert!(
        matches!(err, DiscoverError::Unreachable { tries: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(TOKEN));
}

#[test]
fn oversized_response_is_an_error() {
    let mut routes = three_enis();
    let mut listing = String::new();
    while listing.len() <= 70 * 1024 {
        listing.push_str("00:16:3e:00:00:01/\n");
    }
    put(&mut routes, MACS, &listing);
    let mock = Mock::new(routes, TokenMode::Optional);
    let err = expect_err(&mock.opts());
    assert!(
        matches!(err, DiscoverError::TooLarge { ref path, limit: 65536 } if path == MACS),
        "{err:?}"
    );
    assert!(err.to_string().contains(MACS));
}

#[test]
fn bad_endpoints_are_rejected() {
    for endpoint in [
        "https://100.100.100.200",
        "ftp://x",
        "http://",
        "http://a b",
        "",
    ] {
        let opts = DiscoverOptions {
            endpoint: Some(endpoint.to_string()),
            ..DiscoverOptions::default()
        };
        assert!(
            matches!(expect_err(&opts), DiscoverError::Endpoint { .. }),
            "{endpoint}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The TOML output
// ---------------------------------------------------------------------------------------------

fn strs(v: &toml::Value) -> Vec<&str> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_str().expect("string"))
        .collect()
}

fn keys(v: &toml::Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_table()
        .expect("table")
        .keys()
        .map(|k| k.as_str())
        .collect();
    k.sort_unstable();
    k
}

#[test]
fn three_enis_round_trip_through_toml() {
    let mock = Mock::new(three_enis(), TokenMode::Required);
    let d = discover(&mock.opts()).expect("discover");
    let text = to_toml(&d);
    let t: toml::Table = toml::from_str(&text).expect("valid TOML");

    assert_eq!(t["region"].as_str(), Some("cn-beijing"));
    let mut top: Vec<&str> = t.keys().map(|k| k.as_str()).collect();
    top.sort_unstable();
    assert_eq!(top, ["eni", "region"]);
    let enis = t["eni"].as_array().expect("eni array");
    assert_eq!(enis.len(), 3);

    let e = &enis[0];
    assert_eq!(
        keys(e),
        [
            "cidr",
            "eip",
            "gateway",
            "id",
            "mac",
            "mode",
            "name",
            "primary",
            "private_ips"
        ]
    );
    assert_eq!(e["name"].as_str(), Some("eth0"));
    assert_eq!(e["mac"].as_str(), Some(MAC_PRIMARY));
    assert_eq!(e["id"].as_str(), Some("eni-primary0001"));
    assert_eq!(e["primary"].as_bool(), Some(true));
    assert_eq!(e["mode"].as_str(), Some("nat"));
    assert_eq!(e["cidr"].as_str(), Some("192.168.0.0/24"));
    assert_eq!(e["gateway"].as_str(), Some("192.168.0.253"));
    assert_eq!(strs(&e["private_ips"]), ["192.168.0.10", "192.168.0.11"]);
    let eips = e["eip"].as_array().expect("eip array");
    assert_eq!(eips.len(), 1);
    assert_eq!(keys(&eips[0]), ["address", "private_ip"]);
    assert_eq!(eips[0]["address"].as_str(), Some("203.0.113.10"));
    assert_eq!(eips[0]["private_ip"].as_str(), Some("192.168.0.10"));

    let e = &enis[1];
    assert_eq!(
        keys(e),
        [
            "cidr",
            "gateway",
            "id",
            "ipv6",
            "ipv6_cidr",
            "ipv6_gateway",
            "mac",
            "mode",
            "name",
            "prefixes",
            "private_ips"
        ]
    );
    assert_eq!(e["name"].as_str(), Some("eth1"));
    assert_eq!(e["mac"].as_str(), Some(MAC_V6));
    assert_eq!(e["id"].as_str(), Some("eni-second0002"));
    assert_eq!(e["mode"].as_str(), Some("nat"));
    assert_eq!(e["cidr"].as_str(), Some("192.168.1.0/24"));
    assert_eq!(e["gateway"].as_str(), Some("192.168.1.253"));
    assert_eq!(strs(&e["private_ips"]), ["192.168.1.20", "192.168.1.21"]);
    assert_eq!(strs(&e["prefixes"]), ["192.168.1.48/28"]);
    assert_eq!(strs(&e["ipv6"]), ["2001:db8:1::20", "2001:db8:1::21"]);
    assert_eq!(e["ipv6_cidr"].as_str(), Some("2001:db8:1::/64"));
    assert_eq!(e["ipv6_gateway"].as_str(), Some("2001:db8:1::1"));

    let e = &enis[2];
    assert_eq!(
        keys(e),
        [
            "cidr",
            "gateway",
            "id",
            "mac",
            "mode",
            "name",
            "private_ips"
        ]
    );
    assert_eq!(e["name"].as_str(), Some("eth2"));
    assert_eq!(e["mac"].as_str(), Some(MAC_THIRD));
    assert_eq!(e["id"].as_str(), Some("eni-third0003"));
    assert_eq!(e["cidr"].as_str(), Some("192.168.2.0/25"));
    assert_eq!(e["gateway"].as_str(), Some("192.168.2.125"));
    assert_eq!(strs(&e["private_ips"]), ["192.168.2.30"]);

    // Comments: the header, one per ENI with its id, and an EIP example per secondary ENI.
    assert!(text.starts_with('#'));
    assert!(text.contains("generated from the Alibaba Cloud ECS instance metadata service."));
    assert!(text.contains("#   provider:  aliyun"));
    assert!(text.contains(&format!("#   endpoint:  {}", mock.url)));
    assert!(text.contains("#   generated: 2"));
    assert!(text.contains("security-hardening mode"));
    assert!(text.contains("# ENI eni-primary0001 (primary ENI)\n[[eni]]"));
    assert!(text.contains("# ENI eni-second0002\n[[eni]]"));
    assert!(text.contains("# ENI eni-third0003\n[[eni]]"));
    assert_eq!(text.matches("# [[eni.eip]]\n").count(), 2);
    assert!(text.contains("cut-through") && text.contains("multi-eip"));
}

#[test]
fn three_enis_output_validates_as_a_config() {
    let mock = Mock::new(three_enis(), TokenMode::Absent);
    let d = discover(&mock.opts()).expect("discover");
    let text = to_toml(&d);
    let loaded = match eniroute::config::load_str(&text, "discovered.toml") {
        Ok(l) => l,
        Err(e) => panic!("discovered config does not validate:\n{e}\n---\n{text}"),
    };
    let c = &loaded.config;
    assert_eq!(c.region.as_deref(), Some("cn-beijing"));
    assert_eq!(c.enis.len(), 3);
    for (got, want) in c.enis.iter().zip(&d.enis) {
        assert_eq!(got.name, want.name);
        assert_eq!(got.mac, Some(want.mac));
        assert_eq!(got.id.as_deref(), Some(want.id.as_str()));
        assert_eq!(got.primary, want.primary);
        assert_eq!(got.cidr, Some(want.cidr));
        assert_eq!(got.gateway, Some(want.gateway));
        assert_eq!(got.private_ips, want.private_ips);
        assert_eq!(got.prefixes, want.prefixes);
        assert_eq!(got.ipv6, want.ipv6);
        assert_eq!(got.ipv6_cidr, want.ipv6_cidr);
        assert_eq!(got.ipv6_gateway, want.ipv6_gateway);
        let eips: Vec<Ipv4Addr> = got.eips.iter().map(|e| e.address).collect();
        let want_eips: Vec<Ipv4Addr> = want.eips.iter().map(|e| e.address).collect();
        assert_eq!(eips, want_eips);
    }
}

#[test]
fn filled_in_eip_example_validates_and_unfilled_does_not() {
    let mock = Mock::new(three_enis(), TokenMode::Absent);
    let d = discover(&mock.opts()).expect("discover");
    let text = to_toml(&d);
    let example =
        "# [[eni.eip]]\n# address = \"<public EIP address>\"\n# private_ip = \"192.168.1.20\"\n";
    assert!(text.contains(example), "{text}");

    let filled = text.replacen(
        example,
        "[[eni.eip]]\naddress = \"203.0.113.20\"\nprivate_ip = \"192.168.1.20\"\n",
        1,
    );
    let loaded = eniroute::config::load_str(&filled, "filled.toml")
        .unwrap_or_else(|e| panic!("{e}\n---\n{filled}"));
    assert_eq!(loaded.config.enis[1].eips[0].address, v4("203.0.113.20"));

    let unfilled = text.replacen(
        example,
        "[[eni.eip]]\naddress = \"<public EIP address>\"\nprivate_ip = \"192.168.1.20\"\n",
        1,
    );
    assert!(eniroute::config::load_str(&unfilled, "unfilled.toml").is_err());
}

fn sample(id: String, region: Option<String>, generated_at: SystemTime) -> Discovered {
    Discovered {
        provider: ProviderKind::Aliyun,
        endpoint: "http://127.0.0.1".to_string(),
        region,
        enis: vec![DiscoveredEni {
            name: "eth0".to_string(),
            mac: macaddr::MacAddr6::new(0x00, 0x16, 0x3e, 0, 0, 1),
            id,
            primary: true,
            cidr: "192.168.0.0/24".parse().expect("cidr"),
            gateway: v4("192.168.0.253"),
            private_ips: vec![v4("192.168.0.10")],
            prefixes: vec![],
            ipv6_prefixes: vec![],
            ipv6: vec![],
            ipv6_cidr: None,
            ipv6_gateway: None,
            eips: vec![],
        }],
        hardened: false,
        generated_at,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever strings end up in the model, the output is TOML that reads back the same.
    #[test]
    fn to_toml_quotes_everything(id in any::<String>(), region in proptest::option::of(any::<String>()), endpoint in any::<String>()) {
        let mut d = sample(id.clone(), region.clone(), SystemTime::now());
        d.endpoint = endpoint;
        let text = to_toml(&d);
        let t: toml::Table = toml::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(t.get("region").and_then(|r| r.as_str()), region.as_deref());
        let eni = &t["eni"].as_array().expect("eni")[0];
        if id.is_empty() {
            prop_assert!(eni.get("id").is_none());
        } else {
            prop_assert_eq!(eni["id"].as_str(), Some(id.as_str()));
        }
    }
}

#[test]
fn to_toml_survives_odd_times() {
    for t in [
        UNIX_EPOCH,
        UNIX_EPOCH - Duration::from_secs(1),
        UNIX_EPOCH + Duration::from_secs(400_000_000_000),
    ] {
        let text = to_toml(&sample("eni-x".into(), None, t));
        assert!(toml::from_str::<toml::Table>(&text).is_ok());
    }
    let text = to_toml(&sample("eni-x".into(), None, UNIX_EPOCH));
    assert!(text.contains("1970-01-01T00:00:00Z"));
}

// ---------------------------------------------------------------------------------------------
// write_atomic
// ---------------------------------------------------------------------------------------------

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("eniroute-discover-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn write_atomic_writes_0600_and_replaces() {
    let dir = scratch("write");
    let path = dir.join("eniroute.toml");
    std::fs::write(&path, "old").expect("old file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");

    write_atomic(&path, "region = \"cn-beijing\"\n").expect("write");
    assert_eq!(
        std::fs::read_to_string(&path).expect("read"),
        "region = \"cn-beijing\"\n"
    );
    assert_eq!(mode(&path), 0o600);
    let names: Vec<String> = std::fs::read_dir(&dir)
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["eniroute.toml"], "no temporary files left behind");

    // Missing parent directories are created.
    let nested = dir.join("etc/eniroute/eniroute.toml");
    write_atomic(&nested, "x = 1\n").expect("nested");
    assert_eq!(mode(&nested), 0o600);

    // A directory is not a file.
    let err = write_atomic(&dir, "x").expect_err("directory");
    assert!(matches!(err, DiscoverError::Write { .. }));
    assert!(err.to_string().contains(&dir.display().to_string()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn discovered_output_written_and_read_back() {
    let mock = Mock::new(three_enis(), TokenMode::Optional);
    let d = discover(&mock.opts()).expect("discover");
    let text = to_toml(&d);
    let dir = scratch("roundtrip");
    let path = dir.join("eniroute.toml");
    write_atomic(&path, &text).expect("write");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `discover` verb end to end: prints or writes (0600) a config that validates; an
/// unreachable service is exit 1 with nothing written; a bad endpoint is a usage error.
#[test]
fn discover_verb_writes_a_valid_config() {
    use std::os::unix::fs::PermissionsExt;
    let bin = env!("CARGO_BIN_EXE_eniroute");
    let mock = Mock::new(three_enis(), TokenMode::Absent);
    let dir = std::env::temp_dir().join(format!("eniroute-discover-verb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("eniroute.toml");
    let out = std::process::Command::new(bin)
        .args([
            "discover",
            "--provider",
            "aliyun",
            "--endpoint",
            &mock.url,
            "--output",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let ok = std::process::Command::new(bin)
        .arg("-c")
        .arg(&file)
        .arg("validate")
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let printed = std::process::Command::new(bin)
        .args(["discover", "--provider", "aliyun", "--endpoint", &mock.url])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&printed.stdout).contains("[[eni]]"));

    let gone = dir.join("never.toml");
    let down = std::process::Command::new(bin)
        .args([
            "discover",
            "--provider",
            "aliyun",
            "--endpoint",
            "http://127.0.0.1:9",
            "--output",
        ])
        .arg(&gone)
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
    assert!(!gone.exists());
    let bad = std::process::Command::new(bin)
        .args(["discover", "--endpoint", "ftp://example"])
        .output()
        .unwrap();
    assert_eq!(
        bad.status.code(),
        Some(64),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The address rules come from the validator (config::rules), but discover words them in the
/// metadata's terms: the full messages, as they read before the rules were shared.
#[test]
fn address_rule_messages_are_exact() {
    let p = |key: &str| eni_path(MAC_V6, key);
    let cases = [
        (
            p("private-ipv4s"),
            r#"["192.168.1.20","192.168.1.253"]"#,
            "private IP 192.168.1.253 is the gateway",
        ),
        (
            p("private-ipv4s"),
            r#"["192.168.1.20","192.168.1.255"]"#,
            "private IP 192.168.1.255 is the network or broadcast address of 192.168.1.0/24",
        ),
        (
            p("ipv4-prefixes"),
            r#"["192.168.1.240/28"]"#,
            "prefix 192.168.1.240/28 contains the gateway 192.168.1.253",
        ),
        (
            p("ipv4-prefixes"),
            r#"["192.168.1.48/28","192.168.1.32/27"]"#,
            "prefix 192.168.1.32/27 overlaps prefix 192.168.1.48/28",
        ),
        (
            p("ipv6s"),
            r#"["fe80::5"]"#,
            "IPv6 address fe80::5 is not a global unicast address",
        ),
        (
            p("ipv6-gateway"),
            "2001:db8:9::1",
            "the IPv6 gateway 2001:db8:9::1 is neither link-local nor inside the IPv6 subnet \
             2001:db8:1::/64",
        ),
    ];
    for (path, body, reason) in cases {
        let mut routes = three_enis();
        put(&mut routes, &path, body);
        let mock = Mock::new(routes, TokenMode::Optional);
        let err = expect_err(&mock.opts());
        assert_eq!(err.to_string(), format!("metadata {path}: {reason}"));
    }

    // Across ENIs: the same IPv6 address on two ENIs, and the EIP as another ENI's private IP.
    let mut routes = three_enis();
    put(
        &mut routes,
        &eni_path(MAC_THIRD, "ipv6s"),
        r#"["2001:db8:1::21"]"#,
    );
    put(
        &mut routes,
        &eni_path(MAC_THIRD, "vswitch-ipv6-cidr-block"),
        "2001:db8:1::/64",
    );
    put(&mut routes, &eni_path(MAC_THIRD, "ipv6-gateway"), "fe80::1");
    let mock = Mock::new(routes, TokenMode::Optional);
    assert_eq!(
        expect_err(&mock.opts()).to_string(),
        format!(
            "metadata {}: IPv6 address 2001:db8:1::21 is listed by more than one ENI",
            eni_path(MAC_THIRD, "ipv6s")
        )
    );

    let mut routes = three_enis();
    for (key, value) in [
        ("vswitch-cidr-block", "203.0.113.0/24"),
        ("netmask", "255.255.255.0"),
        ("gateway", "203.0.113.1"),
        ("primary-ip-address", "203.0.113.10"),
        ("private-ipv4s", r#"["203.0.113.10"]"#),
    ] {
        put(&mut routes, &eni_path(MAC_THIRD, key), value);
    }
    let mock = Mock::new(routes, TokenMode::Optional);
    assert_eq!(
        expect_err(&mock.opts()).to_string(),
        "metadata /latest/meta-data/eipv4: the EIP 203.0.113.10 is listed twice, or is also a \
         private IP of an ENI"
    );
}

// ---------------------------------------------------------------------------------------------
// Alibaba: one test per documented list form (issue 14's table)
// ---------------------------------------------------------------------------------------------

/// Serve `body` (or a 404 when `None`) at `key` of the IPv6 ENI and discover.
fn ecs_with(key: &str, body: Option<&str>) -> Result<Discovered, DiscoverError> {
    let mut routes = three_enis();
    match body {
        Some(b) => put(&mut routes, &eni_path(MAC_V6, key), b),
        None => {
            routes.remove(&eni_path(MAC_V6, key));
        }
    }
    let mock = Mock::new(routes, TokenMode::Required);
    discover(&mock.opts())
}

fn ecs_v6_eni(key: &str, body: Option<&str>) -> DiscoveredEni {
    let d = ecs_with(key, body).unwrap_or_else(|e| panic!("{key} = {body:?}: {e}"));
    // Whatever the form, the output validates.
    let text = to_toml(&d);
    if let Err(e) = eniroute::config::load_str(&text, "discovered") {
        panic!("{e}\n{text}");
    }
    d.enis
        .into_iter()
        .find(|e| e.id == "eni-second0002")
        .expect("eni 2")
}

macro_rules! ecs_form {
    ($test:ident, $key:expr, $body:expr, $check:expr) => {
        #[test]
        fn $test() {
            let body: Option<&str> = $body;
            let e = ecs_v6_eni($key, body);
            let check: fn(&DiscoveredEni) -> bool = $check;
            assert!(check(&e), "{} = {:?}: {e:?}", $key, body);
        }
    };
}

// issue 14: `[2408:4321:180:1701:94c7:bc38:3bfa:e4e]` (one address, brackets, no quotes).
ecs_form!(
    ecs_ipv6s_one_bracketed_unquoted,
    "ipv6s",
    Some("[2001:db8:1::20]"),
    |e| e.ipv6 == [v6("2001:db8:1::20")]
);
// issue 14: `[a,b]`; cloud-init test_aliyun.py `"[2408:xxxxxx]"`.
ecs_form!(
    ecs_ipv6s_two_bracketed_unquoted,
    "ipv6s",
    Some("[2001:db8:1::20, 2001:db8:1::21]\n"),
    |e| e.ipv6 == [v6("2001:db8:1::20"), v6("2001:db8:1::21")]
);
// The JSON form the project's older fixtures served (still accepted).
ecs_form!(
    ecs_ipv6s_json_quoted,
    "ipv6s",
    Some(r#"["2001:db8:1::21"]"#),
    |e| e.ipv6 == [v6("2001:db8:1::21")]
);
// No IPv6: an empty body, `[]` or a 404 (HTML page) — then no ipv6_cidr/gateway either.
ecs_form!(ecs_ipv6s_empty_body, "ipv6s", Some(""), |e| e
    .ipv6
    .is_empty()
    && e.ipv6_cidr.is_none());
ecs_form!(ecs_ipv6s_empty_brackets, "ipv6s", Some("[]"), |e| e
    .ipv6
    .is_empty()
    && e.ipv6_gateway.is_none());
ecs_form!(ecs_ipv6s_404_html, "ipv6s", None, |e| e.ipv6.is_empty());
// issue 14: `ipv4-prefixes` is a bare CIDR `192.168.4.48/28`, one per line for several.
ecs_form!(
    ecs_ipv4_prefixes_bare,
    "ipv4-prefixes",
    Some("192.168.1.48/28"),
    |e| e.prefixes == ["192.168.1.48/28".parse().unwrap()]
);
ecs_form!(
    ecs_ipv4_prefixes_one_per_line,
    "ipv4-prefixes",
    Some("192.168.1.48/28\n192.168.1.64/28\n"),
    |e| e.prefixes.len() == 2
);
ecs_form!(
    ecs_ipv4_prefixes_empty_body,
    "ipv4-prefixes",
    Some(""),
    |e| e.prefixes.is_empty()
);
ecs_form!(
    ecs_ipv4_prefixes_empty_brackets,
    "ipv4-prefixes",
    Some("[]"),
    |e| e.prefixes.is_empty()
);
ecs_form!(ecs_ipv4_prefixes_404_html, "ipv4-prefixes", None, |e| e
    .prefixes
    .is_empty());
// Alibaba's table: `private-ipv4s` = `["192.168.XX.XX"]`; NetworkManager-ci's Aliyun mock
// (features/scenarios/cloud.feature, nm-cloud-setup) serves a bare address.
ecs_form!(
    ecs_private_ipv4s_json,
    "private-ipv4s",
    Some(r#"["192.168.1.20","192.168.1.21"]"#),
    |e| e.private_ips.len() == 2
);
ecs_form!(
    ecs_private_ipv4s_bare,
    "private-ipv4s",
    Some("192.168.1.20"),
    |e| e.private_ips == [v4("192.168.1.20")]
);

/// Garbage stays an error naming the path and quoting the raw value.
#[test]
fn ecs_garbage_lists_are_errors_quoting_the_value() {
    for (key, body) in [
        ("ipv6s", "[2001:db8:1::20"),
        ("ipv6s", "2001:db8:1::20 2001:db8:1::21"),
        ("ipv6s", "[2001:db8:1::20,,2001:db8:1::21]"),
        ("ipv4-prefixes", "192.168.1.48/28,192.168.1.64/28"),
        ("ipv4-prefixes", "<html><body>oops</body></html>"),
        ("private-ipv4s", "[\"192.168.1.20\""),
    ] {
        let err = ecs_with(key, Some(body)).expect_err(body).to_string();
        let path = eni_path(MAC_V6, key);
        assert!(err.starts_with(&format!("metadata {path}: ")), "{err}");
        let excerpt: String = body.chars().take(10).collect();
        assert!(
            err.contains(&format!("{excerpt:?}").trim_end_matches('"').to_string()),
            "quotes {body:?}: {err}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// AWS EC2 (IMDSv2)
// ---------------------------------------------------------------------------------------------

const AWS_PRIMARY: &str = "0a:07:84:3d:6e:38";
const AWS_SECOND: &str = "0a:75:69:92:e2:16";

/// Two ENIs in the shape of cloud-init's EC2 fixtures (tests/unittests/sources/test_ec2.py:
/// NIC1_MD_IPV4_IPV6_MULTI_IP and NIC2_MD — lists joined by newlines, `ipv4-associations`
/// mapping each public IP to its private IP, `"ipv6s": ""` for none), with documentation
/// addresses; plus `ipv4-prefix` / `ipv6-prefix` (one CIDR per line, AWS's instance metadata
/// categories) and `placement/region`. Listed secondary first: device-number decides.
fn aws_two_enis() -> HashMap<String, (u16, Vec<u8>)> {
    let mut r = HashMap::new();
    put(&mut r, MACS, &format!("{AWS_SECOND}/\n{AWS_PRIMARY}/\n"));
    put(&mut r, "/latest/meta-data/placement/region", "us-east-2");
    let v6s = "2001:db8:292:100:c187:593c:4349:136\n2001:db8:292:100:f153:12a3:c37c:11f9";
    let primary = [
        ("device-number", "0"),
        ("interface-id", "eni-0d6335689899ce9cc"),
        ("local-ipv4s", "172.31.44.13\n172.31.45.70"),
        ("subnet-ipv4-cidr-block", "172.31.32.0/20"),
        ("ipv4-prefix", "172.31.40.16/28"),
        ("ipv6s", v6s),
        ("subnet-ipv6-cidr-blocks", "2001:db8:292:100::/64"),
        ("ipv6-prefix", "2001:db8:292:100:8::/80"),
        ("public-ipv4s", "203.0.113.181"),
        ("ipv4-associations/", "203.0.113.181"),
        ("ipv4-associations/203.0.113.181", "172.31.44.13"),
    ];
    let second = [
        ("device-number", "1"),
        ("network-card", "0"),
        ("interface-id", "eni-043cdce36ded5e79f"),
        ("local-ipv4s", "172.31.47.221"),
        ("subnet-ipv4-cidr-block", "172.31.32.0/20"),
        ("ipv6s", ""),
        ("public-ipv4s", ""),
    ];
    for (mac, keys) in [(AWS_PRIMARY, &primary[..]), (AWS_SECOND, &second[..])] {
        for (key, value) in keys {
            put(&mut r, &eni_path(mac, key), value);
        }
    }
    r
}

fn aws_ok(opts: &DiscoverOptions) -> Discovered {
    let d = discover(opts).unwrap_or_else(|e| panic!("discover: {e}"));
    let text = to_toml(&d);
    if let Err(e) = eniroute::config::load_str(&text, "discovered") {
        panic!("the discovered config does not validate: {e}\n{text}");
    }
    d
}

#[test]
fn aws_imdsv2_reads_every_documented_key() {
    let mock = Mock::aws(aws_two_enis(), TokenMode::Required);
    let d = aws_ok(&mock.aws_opts());
    assert_eq!(d.provider, ProviderKind::Aws);
    assert!(d.hardened);
    assert_eq!(d.region.as_deref(), Some("us-east-2"));
    let e = &d.enis[0];
    assert!(e.primary && e.name == "eth0" && e.id == "eni-0d6335689899ce9cc");
    assert_eq!(e.gateway, v4("172.31.32.1"), "the subnet's first host");
    assert_eq!(e.private_ips, [v4("172.31.44.13"), v4("172.31.45.70")]);
    assert_eq!(e.prefixes, ["172.31.40.16/28".parse().unwrap()]);
    assert_eq!(e.ipv6.len(), 2);
    assert_eq!(e.ipv6_gateway, Some(v6("2001:db8:292:100::1")));
    assert_eq!(
        e.ipv6_prefixes,
        ["2001:db8:292:100:8::/80".parse().unwrap()]
    );
    let eips: Vec<_> = e.eips.iter().map(|x| (x.address, x.private_ip)).collect();
    assert_eq!(eips, [(v4("203.0.113.181"), v4("172.31.44.13"))]);
    let e = &d.enis[1];
    assert!(!e.primary && e.name == "eth1");
    assert!(e.ipv6.is_empty() && e.eips.is_empty() && e.ipv6_cidr.is_none());
    // Every read carried the IMDSv2 token; the token request its TTL header.
    let log = mock.log();
    assert_eq!(
        (log[0].method.as_str(), log[0].path.as_str()),
        ("PUT", TOKEN)
    );
    assert_eq!(log[0].ttl.as_deref(), Some("21600"));
    assert!(log[1..]
        .iter()
        .all(|l| l.token.as_deref() == Some("tok-1-AbC")));
    let text = to_toml(&d);
    assert!(
        text.contains("AWS EC2 instance metadata service (IMDSv2)")
            && text.contains("provider:  aws")
    );
    assert!(
        text.contains("prefixes = [\"172.31.40.16/28\", \"2001:db8:292:100:8::/80\"]"),
        "{text}"
    );
}

#[test]
fn aws_expired_token_is_renewed_on_401() {
    let mock = Mock::aws(aws_two_enis(), TokenMode::Required);
    mock.with(|s| s.expire_tokens_after_reads = Some(4));
    let d = aws_ok(&mock.aws_opts());
    assert_eq!(d.enis.len(), 2);
    assert_eq!(mock.count("PUT", TOKEN), 2, "renewed once");
}

#[test]
fn aws_throttling_honours_retry_after() {
    let mock = Mock::aws(aws_two_enis(), TokenMode::Required);
    mock.with(|s| s.throttle = Some((2, 1)));
    let start = Instant::now();
    aws_ok(&mock.aws_opts());
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "waited Retry-After twice"
    );
    // A Retry-After longer than a request may wait ends the read as Throttled at once.
    let mock = Mock::aws(aws_two_enis(), TokenMode::Required);
    mock.with(|s| s.throttle = Some((1, 120)));
    let start = Instant::now();
    let err = expect_err(&mock.aws_opts());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(120)), "{err}");
    assert!(err.to_string().contains(TOKEN), "{err}");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn aws_slow_answers_within_the_timeout_are_fine() {
    let mock = Mock::aws(aws_two_enis(), TokenMode::Optional);
    mock.with(|s| s.delay = Some(Duration::from_millis(150)));
    let d = aws_ok(&mock.aws_opts());
    assert_eq!(d.enis.len(), 2);
}

#[test]
fn aws_request_budget_is_enforced() {
    let mock = Mock::aws(aws_two_enis(), TokenMode::Optional);
    let opts = DiscoverOptions {
        max_requests: 5,
        ..mock.aws_opts()
    };
    assert!(matches!(
        expect_err(&opts),
        DiscoverError::Budget { budget: 5, .. }
    ));
    assert_eq!(mock.log().len(), 5);
}

#[test]
fn aws_primary_is_device_0_on_network_card_0() {
    let mut routes = aws_two_enis();
    // The second ENI sits on network card 1 as its device 0: still not the primary.
    put(&mut routes, &eni_path(AWS_SECOND, "device-number"), "0");
    put(&mut routes, &eni_path(AWS_SECOND, "network-card"), "1");
    let mock = Mock::aws(routes, TokenMode::Optional);
    let d = aws_ok(&mock.aws_opts());
    assert_eq!(d.enis[0].id, "eni-0d6335689899ce9cc");
    assert!(d.enis[0].primary && !d.enis[1].primary);

    let mut routes = aws_two_enis();
    put(&mut routes, &eni_path(AWS_PRIMARY, "device-number"), "2");
    let mock = Mock::aws(routes, TokenMode::Optional);
    let err = expect_err(&mock.aws_opts()).to_string();
    assert!(
        err.contains("no ENI has device-number 0 on network-card 0"),
        "{err}"
    );
}

#[test]
fn aws_public_ipv4s_without_associations() {
    // One public IP and no ipv4-associations/: the auto-assigned public IP of the primary IP.
    let mut routes = aws_two_enis();
    routes.remove(&eni_path(AWS_PRIMARY, "ipv4-associations/"));
    let mock = Mock::aws(routes.clone(), TokenMode::Optional);
    let d = aws_ok(&mock.aws_opts());
    assert_eq!(d.enis[0].eips[0].private_ip, v4("172.31.44.13"));
    // Several cannot be placed: an error naming public-ipv4s.
    put(
        &mut routes,
        &eni_path(AWS_PRIMARY, "public-ipv4s"),
        "203.0.113.181\n203.0.113.182",
    );
    let mock = Mock::aws(routes, TokenMode::Optional);
    let err = expect_err(&mock.aws_opts()).to_string();
    assert!(
        err.contains(&eni_path(AWS_PRIMARY, "public-ipv4s")),
        "{err}"
    );
}

#[test]
fn aws_malformed_values_name_the_path() {
    for (key, body) in [
        ("local-ipv4s", "172.31.44.13 172.31.45.70"),
        ("device-number", "00"),
        ("subnet-ipv4-cidr-block", "172.31.32.1/20"),
        ("ipv4-associations/203.0.113.181", "10.9.9.9"),
        ("ipv6-prefix", "2001:db8:292:101::/80"),
    ] {
        let mut routes = aws_two_enis();
        put(&mut routes, &eni_path(AWS_PRIMARY, key), body);
        let mock = Mock::aws(routes, TokenMode::Optional);
        let err = expect_err(&mock.aws_opts()).to_string();
        assert!(
            err.contains(&eni_path(AWS_PRIMARY, key.split('/').next().unwrap())),
            "{key}: {err}"
        );
    }
}

/// `auto`: DMI decides without a request; silent DMI falls back to probing (the AWS mock
/// answers only AWS's probe path); a cloud that matches neither is an error.
#[test]
fn auto_detects_from_dmi_then_by_probing() {
    let mock = Mock::aws(aws_two_enis(), TokenMode::Required);
    let dmi = scratch("dmi-aws");
    std::fs::write(dmi.join("sys_vendor"), "Amazon EC2\n").unwrap();
    let opts = DiscoverOptions {
        provider: ProviderChoice::Auto,
        dmi_dir: dmi.clone(),
        ..mock.opts()
    };
    assert_eq!(aws_ok(&opts).provider, ProviderKind::Aws);
    assert_eq!(
        mock.count("GET", "/latest/meta-data/region-id"),
        0,
        "no probing"
    );

    let empty = scratch("dmi-none");
    let opts = DiscoverOptions {
        provider: ProviderChoice::Auto,
        dmi_dir: empty.clone(),
        probe_timeout: Duration::from_millis(500),
        ..mock.opts()
    };
    assert_eq!(aws_ok(&opts).provider, ProviderKind::Aws);

    let ecs = Mock::new(three_enis(), TokenMode::Optional);
    let opts = DiscoverOptions {
        provider: ProviderChoice::Auto,
        dmi_dir: empty.clone(),
        ..ecs.opts()
    };
    assert_eq!(aws_ok(&opts).provider, ProviderKind::Aliyun);

    let nobody = Mock::new(HashMap::new(), TokenMode::Absent);
    let opts = DiscoverOptions {
        provider: ProviderChoice::Auto,
        dmi_dir: empty.clone(),
        ..nobody.opts()
    };
    assert!(matches!(expect_err(&opts), DiscoverError::UnknownCloud(_)));
    let _ = std::fs::remove_dir_all(dmi);
    let _ = std::fs::remove_dir_all(empty);
}

#[test]
fn discover_verb_with_provider_aws() {
    let mock = Mock::aws(aws_two_enis(), TokenMode::Required);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eniroute"))
        .args(["discover", "--provider", "aws", "--endpoint", &mock.url])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("mac = \"0a:07:84:3d:6e:38\"") && text.contains("primary = true"));
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_eniroute"))
        .args(["discover", "--provider", "gcp"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(64));
}

/// configs/cloud-init/user-data-metadata.yaml: its config has a valid [discover] section and,
/// merged with an instance, validates — a host needs no per-instance file.
#[test]
fn metadata_user_data_config_merges_into_a_valid_config() {
    let yaml = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("configs/cloud-init/user-data-metadata.yaml"),
    )
    .unwrap();
    let body: String = yaml
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("content: |"))
        .skip(1)
        .take_while(|l| l.starts_with("      ") || l.is_empty())
        .map(|l| format!("{}\n", l.get(6..).unwrap_or("")))
        .collect();
    let settings = eniroute::config::discover_section(&body, "user-data")
        .unwrap()
        .expect("[discover]");
    assert_eq!(settings.refresh, Duration::from_secs(60));
    let mock = Mock::new(three_enis(), TokenMode::Required);
    let found = discover(&mock.opts()).unwrap();
    let merged =
        eniroute::discover::merge(&body, "user-data", &found, &settings, &|_| None).unwrap();
    let l = eniroute::config::load_str(&merged.text, "merged")
        .unwrap_or_else(|e| panic!("{e}\n{}", merged.text));
    assert_eq!(l.config.enis.len(), 3);
}

/// Requests are paced (AWS limits each ENI to 1024 packets per second to the service).
#[test]
fn aws_requests_are_paced() {
    let mock = Mock::aws(aws_two_enis(), TokenMode::Required);
    let opts = DiscoverOptions {
        request_gap: Duration::from_millis(20),
        ..mock.aws_opts()
    };
    let start = Instant::now();
    aws_ok(&opts);
    let n = mock.log().len() as u32;
    assert!(n > 20, "{n} requests");
    assert!(
        start.elapsed() >= Duration::from_millis(20) * (n - 1),
        "{:?}",
        start.elapsed()
    );
}
