//! `apply` with `[discover]`, end to end in namespaces (root): the ENIs come from a mock ECS
//! metadata service on 127.0.0.1 (plain reads, documented forms), the file only extends one ENI
//! with what the metadata cannot show (its mode and EIP) and excludes another, which stays
//! untouched. The host needs no per-instance file.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::{text, within, Netns, Vpc};

const MACS: &str = "/latest/meta-data/network/interfaces/macs/";
const MAC0: &str = "00:16:3e:0e:00:01";
const MAC1: &str = "00:16:3e:0e:00:02";
const MAC2: &str = "00:16:3e:0e:00:03";

/// A plain-mode ECS metadata service: fixed routes, HTML 404 for the rest.
struct Ecs {
    url: String,
    server: Arc<tiny_http::Server>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Ecs {
    fn new(routes: HashMap<String, String>) -> Ecs {
        Ecs::shared(
            Arc::new(Mutex::new(routes)),
            Arc::new(AtomicBool::new(false)),
        )
    }

    /// Routes the test may change while it runs; `failing` makes every answer a 500.
    fn shared(routes: Arc<Mutex<HashMap<String, String>>>, failing: Arc<AtomicBool>) -> Ecs {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind"));
        let addr = server.server_addr().to_ip().expect("ip");
        let srv = Arc::clone(&server);
        let thread = thread::spawn(move || {
            for req in srv.incoming_requests() {
                let found = routes.lock().unwrap().get(req.url()).cloned();
                let (status, body) = match found {
                    _ if failing.load(Ordering::SeqCst) => (500, "internal error".to_string()),
                    Some(b) if req.method().as_str() == "GET" => (200, b),
                    _ => (
                        404,
                        "<html><body><h1>404 Not Found</h1></body></html>".to_string(),
                    ),
                };
                let _ =
                    req.respond(tiny_http::Response::from_string(body).with_status_code(status));
            }
        });
        Ecs {
            url: format!("http://{addr}"),
            server,
            thread: Some(thread),
        }
    }
}

impl Drop for Ecs {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Three ENIs in the forms ECS documents (issue 14's table): JSON `private-ipv4s`, a bare
/// `ipv4-prefixes` CIDR, empty bodies for none.
fn routes() -> HashMap<String, String> {
    let mut r = HashMap::new();
    let mut put = |k: String, v: &str| {
        r.insert(k, v.to_string());
    };
    put(MACS.to_string(), &format!("{MAC1}/\n{MAC0}/\n{MAC2}/\n"));
    put("/latest/meta-data/mac".into(), MAC0);
    put("/latest/meta-data/region-id".into(), "cn-beijing");
    for (mac, id, net, ips, prefixes) in [
        (MAC0, "eni-e2e0", "192.168.50", r#"["192.168.50.10"]"#, ""),
        (
            MAC1,
            "eni-e2e1",
            "192.168.51",
            r#"["192.168.51.20","192.168.51.21"]"#,
            "192.168.51.48/28",
        ),
        (MAC2, "eni-e2e2", "192.168.52", r#"["192.168.52.30"]"#, ""),
    ] {
        let p = |k: &str| format!("{MACS}{mac}/{k}");
        put(p("network-interface-id"), id);
        put(p("vswitch-cidr-block"), &format!("{net}.0/24"));
        put(p("netmask"), "255.255.255.0");
        put(p("gateway"), &format!("{net}.253"));
        let first = ips
            .trim_matches(|c| "[]\"".contains(c))
            .split('"')
            .next()
            .unwrap_or("");
        put(p("primary-ip-address"), first);
        put(p("private-ipv4s"), ips);
        put(p("ipv4-prefixes"), prefixes);
        put(p("ipv6s"), "");
    }
    r
}

/// The host's shape (for the simulated VPC only: eniroute never reads this file).
const SHAPE: &str = r#"
[[eni]]
name = "eth0"
mac = "00:16:3e:0e:00:01"
primary = true
cidr = "192.168.50.0/24"
gateway = "192.168.50.253"
private_ips = ["192.168.50.10"]

[[eni]]
name = "eth1"
mac = "00:16:3e:0e:00:02"
cidr = "192.168.51.0/24"
gateway = "192.168.51.253"
private_ips = ["192.168.51.20"]

[[eni]]
name = "eth2"
mac = "00:16:3e:0e:00:03"
cidr = "192.168.52.0/24"
gateway = "192.168.52.253"
private_ips = ["192.168.52.30"]
"#;

#[test]
fn apply_with_discover_manages_the_metadata_enis_and_never_the_excluded_one() {
    let dir = tempfile::tempdir().unwrap();
    let vpc = Vpc::from_text(SHAPE);
    let ecs = Ecs::new(routes());
    let file = dir.path().join("eniroute.toml");
    std::fs::write(
        &file,
        format!(
            r#"[discover]
provider = "aliyun"
endpoint = "{}"
exclude = ["{MAC2}"]

# What the metadata cannot show: eth1 holds its EIP as a static address (multi-eip).
[[eni]]
mac = "{MAC1}"
name = "eth1"
mode = "multi-eip"

[[eni.eip]]
address = "203.0.113.77"
"#,
            ecs.url
        ),
    )
    .unwrap();
    let g = &vpc.guest;
    let rp_before = g.sysctl("net/ipv4/conf/eth2/rp_filter");
    let addr_before = g.ip(&["-o", "addr", "show", "dev", "eth2"]);

    let cfg = file.to_string_lossy().into_owned();
    let o = common::eniroute(&["--netns", &g.name, "-c", &cfg, "apply"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("not managing eth2"), "{}", text(&o));

    let rules = g.ip(&["rule", "show"]);
    // .20 and .21 aggregate into one /31 source.
    for source in [
        "192.168.50.10",
        "192.168.51.20/31",
        "192.168.51.48/28",
        "203.0.113.77",
    ] {
        assert!(
            rules.contains(&format!("from {source} ")),
            "rule for {source}:\n{rules}"
        );
    }
    let eth1 = g.ip(&["-o", "addr", "show", "dev", "eth1"]);
    assert!(
        eth1.contains("203.0.113.77/32") && eth1.contains("192.168.51.21/24"),
        "{eth1}"
    );
    // The excluded ENI: no rule, address or sysctl of eniroute's; its link left down.
    assert!(!rules.contains("192.168.52."), "{rules}");
    assert_eq!(g.ip(&["-o", "addr", "show", "dev", "eth2"]), addr_before);
    assert_eq!(g.sysctl("net/ipv4/conf/eth2/rp_filter"), rp_before);
    assert!(g
        .ip(&["-o", "link", "show", "dev", "eth2"])
        .contains("state DOWN"));

    // The metadata down: apply fails, exit 1, and the routing stays as it was.
    drop(ecs);
    let before = g.ip(&["rule", "show"]);
    let o = common::eniroute(&["--netns", &g.name, "-c", &cfg, "apply"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("nothing was changed"), "{}", text(&o));
    assert_eq!(g.ip(&["rule", "show"]), before);

    // flush needs no metadata: it removes everything eniroute owns even while the service is down.
    let o = common::eniroute(&["--netns", &g.name, "-c", &cfg, "flush"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rules = g.ip(&["rule", "show"]);
    assert!(!rules.contains("proto 225"), "{rules}");
    let _keep: &Netns = &vpc.vpc;
}

/// `watch` with `[discover]`: a private IP assigned in the console (added to the metadata) is
/// configured within one refresh, with no restart; while the metadata fails the routing stays
/// as it was; the excluded ENI stays untouched throughout.
#[test]
fn watch_with_discover_follows_the_metadata_and_keeps_the_routing_while_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let vpc = Vpc::from_text(SHAPE);
    let routes = Arc::new(Mutex::new(routes()));
    let failing = Arc::new(AtomicBool::new(false));
    let ecs = Ecs::shared(routes.clone(), failing.clone());
    let file = dir.path().join("eniroute.toml");
    std::fs::write(
        &file,
        format!(
            "[discover]\nprovider = \"aliyun\"\nendpoint = \"{}\"\nrefresh = \"10s\"\nexclude = [\"{MAC2}\"]\n",
            ecs.url
        ),
    )
    .unwrap();
    let g = &vpc.guest;
    let cfg = file.to_string_lossy().into_owned();
    let mut daemon = std::process::Command::new(common::BIN)
        .args(["--netns", &g.name, "-c", &cfg, "watch"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let rules = || g.ip(&["rule", "show"]);
    assert!(
        within(Duration::from_secs(10), || rules()
            .contains("from 192.168.51.20/31 "))
        .is_some(),
        "{}",
        rules()
    );

    // The metadata fails for more than a refresh: nothing changes.
    failing.store(true, Ordering::SeqCst);
    let before = rules();
    std::thread::sleep(Duration::from_secs(13));
    assert_eq!(rules(), before);
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon is alive");

    // A secondary private IP assigned in the console appears within one refresh.
    routes.lock().unwrap().insert(
        format!("{MACS}{MAC1}/private-ipv4s"),
        r#"["192.168.51.20","192.168.51.21","192.168.51.40"]"#.into(),
    );
    failing.store(false, Ordering::SeqCst);
    let eth1 = || g.ip(&["-o", "addr", "show", "dev", "eth1"]);
    assert!(
        within(Duration::from_secs(20), || eth1()
            .contains("192.168.51.40/24"))
        .is_some(),
        "{}",
        eth1()
    );
    assert!(
        within(Duration::from_secs(2), || rules()
            .contains("from 192.168.51.40 "))
        .is_some(),
        "{}",
        rules()
    );
    assert!(
        !rules().contains("192.168.52."),
        "the excluded ENI: {}",
        rules()
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let o = daemon.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("[discover]:") && err.contains("the routing stays"),
        "{err}"
    );
    drop(ecs);
}
