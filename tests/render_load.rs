//! `render --format ip` of every example loads with `ip -batch` (its IPv6 rule section with
//! `ip -6 -batch`) into a fresh network namespace whose veth links carry the example's names.
//! Root only: the namespace is created and removed by the test.

mod common;

use common::{eniroute, example, load, text, Netns};
use std::io::Write;
use std::process::{Command, Stdio};

fn batch(ns: &Netns, family: Option<&str>, script: &str) {
    let mut args = vec!["-n", ns.name.as_str()];
    args.extend(family);
    args.extend(["-batch", "-"]);
    let mut child = Command::new("ip")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ip");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "ip -batch failed: {}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn loads(name: &str) {
    let path = example(name);
    let cfg = load(&path);
    let o = eniroute(&[
        "-c",
        path.to_str().unwrap(),
        "-q",
        "render",
        "--format",
        "ip",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let script = String::from_utf8(o.stdout).unwrap();
    let (v4, v6) = match script.split_once(eniroute::render::IPV6_SECTION) {
        Some((a, b)) => (a.to_string(), b.to_string()),
        None => (script.clone(), String::new()),
    };
    let ns = Netns::new("render");
    for (k, e) in cfg.enis.iter().enumerate() {
        ns.ip(&[
            "link",
            "add",
            e.fallback_ifname(),
            "type",
            "veth",
            "peer",
            "name",
            &format!("peer{k}"),
        ]);
    }
    batch(&ns, None, &v4);
    if !v6.trim().is_empty() {
        batch(&ns, Some("-6"), &v6);
    }
    // Every object carries the tag: count them back.
    let rules = ns.ip(&["rule"]) + &ns.ip(&["-6", "rule"]);
    let tagged = rules.lines().filter(|l| l.contains("proto 225")).count();
    let want = script.lines().filter(|l| l.starts_with("rule add")).count();
    assert_eq!(tagged, want, "{rules}");
    let routes = ns.ip(&["-4", "route", "show", "table", "all", "proto", "225"])
        + &ns.ip(&["-6", "route", "show", "table", "all", "proto", "225"]);
    let want = script
        .lines()
        .filter(|l| l.starts_with("route add"))
        .count();
    assert_eq!(
        routes
            .lines()
            .filter(|l| !l.starts_with(char::is_whitespace))
            .count(),
        want,
        "{routes}"
    );
    let addrs = ns.ip(&["addr"]);
    let want = script
        .lines()
        .filter(|l| l.starts_with("address add"))
        .count();
    assert_eq!(addrs.matches("proto 0xe1").count(), want, "{addrs}");
}

#[test]
fn nat_secondary_loads() {
    loads("nat-secondary.toml");
}
#[test]
fn cut_through_loads() {
    loads("cut-through.toml");
}
#[test]
fn multi_eip_loads() {
    loads("multi-eip.toml");
}
#[test]
fn egress_balance_loads() {
    loads("egress-balance.toml");
}
#[test]
fn egress_failover_loads() {
    loads("egress-failover.toml");
}
#[test]
fn ipv6_loads() {
    loads("ipv6.toml");
}
#[test]
fn demo_loads() {
    loads("demo.toml");
}
