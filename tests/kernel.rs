//! Kernel tests (root): apply/plan/status/flush against real network namespaces, observed
//! with iproute2 as an independent witness.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use eniroute::plan::Desired;

const PROTO: &str = "225";

fn desired(v: &Vpc) -> Desired {
    // The plan as eniroute computes it for the links of the guest.
    let cfg = v.cfg.clone();
    let links = eniroute::kernel::netns::run_in_netns(Some(&v.guest.name), move || async move {
        use eniroute::kernel::Kernel as _;
        let k = eniroute::kernel::Netlink::connect(225).unwrap();
        k.links().await.unwrap()
    })
    .unwrap();
    eniroute::plan::desired(&cfg, Some(&links))
}

fn proto_of(v: &serde_json::Value) -> String {
    match v["protocol"].as_str() {
        Some("0xe1") => PROTO.into(),
        Some(s) => s.into(),
        None => v["protocol"].to_string(),
    }
}

/// Rules tagged with eniroute's protocol, as `priority from table suppress` strings.
fn owned_rules(ns: &Netns, v6: bool) -> BTreeSet<String> {
    let args: &[&str] = if v6 { &["-6", "rule"] } else { &["rule"] };
    let j = ns.ip_json(args);
    j.as_array()
        .unwrap()
        .iter()
        .filter(|r| proto_of(r) == PROTO)
        .map(|r| {
            let src = match (r["src"].as_str(), r["srclen"].as_u64()) {
                (Some("all"), _) | (None, _) => "all".to_string(),
                (Some(s), Some(l)) => format!("{s}/{l}"),
                (Some(s), None) => format!("{s}/{}", if v6 { 128 } else { 32 }),
            };
            format!(
                "{} {} {} {}",
                r["priority"],
                src,
                r["table"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or(r["table"].to_string()),
                r["suppress_prefixlen"]
            )
        })
        .collect()
}

fn expected_rules(d: &Desired, v6: bool) -> BTreeSet<String> {
    use eniroute::model::Family;
    d.rules
        .iter()
        .filter(|r| (r.family == Family::V6) == v6)
        .map(|r| {
            format!(
                "{} {} {} {}",
                r.priority,
                r.from
                    .map(|f| format!("{}/{}", f.ip(), f.prefix()))
                    .unwrap_or("all".into()),
                if r.table == 254 {
                    "main".to_string()
                } else {
                    r.table.to_string()
                },
                r.suppress_prefixlength
                    .map(|n| n.to_string())
                    .unwrap_or("null".into())
            )
        })
        .collect()
}

/// Routes tagged with eniroute's protocol, as `table dst gateway dev metric` strings.
fn owned_routes(ns: &Netns, v6: bool) -> BTreeSet<String> {
    let args: &[&str] = if v6 {
        &["-6", "route", "show", "table", "all"]
    } else {
        &["-4", "route", "show", "table", "all"]
    };
    let j = ns.ip_json(args);
    let mut out = BTreeSet::new();
    for r in j
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| proto_of(r) == PROTO)
    {
        let dst = match r["dst"].as_str().unwrap() {
            "default" => {
                if v6 {
                    "::/0".to_string()
                } else {
                    "0.0.0.0/0".to_string()
                }
            }
            d if d.contains('/') => d.to_string(),
            d => format!("{d}/{}", if v6 { 128 } else { 32 }),
        };
        let hops: Vec<String> = match r["nexthops"].as_array() {
            Some(h) => h
                .iter()
                .map(|n| {
                    format!(
                        "{}@{}w{}",
                        n["gateway"].as_str().unwrap_or("-"),
                        n["dev"].as_str().unwrap(),
                        n["weight"].as_u64().unwrap_or(1)
                    )
                })
                .collect(),
            None => vec![format!(
                "{}@{}w1",
                r["gateway"].as_str().unwrap_or("-"),
                r["dev"].as_str().unwrap()
            )],
        };
        out.insert(format!(
            "{} {} {} m{}",
            r["table"]
                .as_str()
                .map(String::from)
                .unwrap_or(r["table"].to_string()),
            dst,
            hops.join(","),
            r["metric"].as_u64().unwrap_or(0)
        ));
    }
    out
}

fn expected_routes(d: &Desired, v6: bool) -> BTreeSet<String> {
    use eniroute::model::Family;
    d.routes
        .iter()
        .filter(|r| (r.family() == Family::V6) == v6)
        .map(|r| {
            let hops: Vec<String> = r
                .nexthops
                .iter()
                .map(|n| {
                    format!(
                        "{}@{}w{}",
                        n.gateway.map(|g| g.to_string()).unwrap_or("-".into()),
                        n.iface.name,
                        n.weight
                    )
                })
                .collect();
            format!(
                "{} {}/{} {} m{}",
                r.table,
                r.dst.ip(),
                r.dst.prefix(),
                hops.join(","),
                r.metric
            )
        })
        .collect()
}

/// Addresses as `dev addr/len` strings: all of them, or only eniroute's (tagged).
fn addresses(ns: &Netns, owned_only: bool) -> BTreeSet<String> {
    let j = ns.ip_json(&["addr"]);
    let mut out = BTreeSet::new();
    for l in j.as_array().unwrap() {
        for a in l["addr_info"].as_array().unwrap() {
            if !owned_only || proto_of(a) == PROTO {
                out.insert(format!(
                    "{} {}/{}",
                    l["ifname"].as_str().unwrap(),
                    a["local"].as_str().unwrap(),
                    a["prefixlen"]
                ));
            }
        }
    }
    out
}

fn owned_addresses(ns: &Netns) -> BTreeSet<String> {
    addresses(ns, true)
}

/// After apply, the kernel holds exactly the planned objects, and a datagram from each
/// source leaves through the ENI that owns it.
fn apply_and_check(example_name: &str) {
    let v = Vpc::new(&example(example_name));
    let out = v.expect(&["apply"], 0);
    assert!(out.contains("Verified:"), "{out}");
    let d = desired(&v);
    for v6 in [false, true] {
        assert_eq!(
            owned_rules(&v.guest, v6),
            expected_rules(&d, v6),
            "rules (v6={v6})"
        );
        assert_eq!(
            owned_routes(&v.guest, v6),
            expected_routes(&d, v6),
            "routes (v6={v6})"
        );
    }
    // Every desired address is on its link (eniroute's, or already there from "DHCP").
    let all = addresses(&v.guest, false);
    for a in &d.addresses {
        let s = format!("{} {}/{}", a.iface.name, a.addr, a.prefix_len);
        assert!(all.contains(&s), "address {s} missing; have {all:?}");
    }
    // Only planned addresses carry the tag.
    let planned: BTreeSet<String> = d
        .addresses
        .iter()
        .map(|a| format!("{} {}/{}", a.iface.name, a.addr, a.prefix_len))
        .collect();
    assert!(owned_addresses(&v.guest).is_subset(&planned));
    // Real packets: each source's datagrams leave through its uplink's interface.
    for c in &d.checks {
        let ifaces: Vec<String> = d.enis.iter().map(|e| e.iface.name.clone()).collect();
        let before: Vec<u64> = ifaces.iter().map(|i| v.guest.tx_packets(i)).collect();
        v.send_from(c.source, 20);
        let after: Vec<u64> = ifaces.iter().map(|i| v.guest.tx_packets(i)).collect();
        for (i, name) in ifaces.iter().enumerate() {
            let sent = after[i] - before[i];
            if *name == c.iface.name {
                assert!(
                    sent >= 20,
                    "{}: only {sent} packets from {} left through {name}",
                    example_name,
                    c.source
                );
            } else {
                assert!(
                    sent < 20,
                    "{}: {sent} packets from {} left through {name}, expected {}",
                    example_name,
                    c.source,
                    c.iface.name
                );
            }
        }
    }
    // The kernel's own lookup agrees, observed with iproute2.
    for c in &d.checks {
        let dst = if c.source.is_ipv4() {
            INTERNET
        } else {
            INTERNET6
        };
        let got = v
            .guest
            .ip(&["route", "get", dst, "from", &c.source.to_string()]);
        assert!(
            got.contains(&format!("dev {}", c.iface.name)),
            "route get from {}: {got}",
            c.source
        );
        assert!(
            got.contains(&format!("via {}", c.gateway)),
            "route get from {}: {got}",
            c.source
        );
    }
    // Sysctls.
    for s in &d.sysctls {
        assert_eq!(v.guest.sysctl(&s.path), s.value, "{}", s.name());
    }
    // Idempotent: plan shows nothing.
    v.expect(&["plan", "--detailed-exitcode"], 0);
}

#[test]
fn nat_secondary_apply() {
    apply_and_check("nat-secondary.toml");
}

#[test]
fn cut_through_apply() {
    apply_and_check("cut-through.toml");
}

#[test]
fn multi_eip_apply() {
    apply_and_check("multi-eip.toml");
}

#[test]
fn egress_balance_apply() {
    apply_and_check("egress-balance.toml");
    let v = Vpc::new(&example("egress-balance.toml"));
    v.expect(&["apply"], 0);
    let j = v.guest.ip_json(&["route", "show", "table", "20000"]);
    let hops = j[0]["nexthops"]
        .as_array()
        .expect("a multipath default in the egress table");
    let got: BTreeSet<(String, u64)> = hops
        .iter()
        .map(|h| {
            (
                h["dev"].as_str().unwrap().to_string(),
                h["weight"].as_u64().unwrap_or(1),
            )
        })
        .collect();
    assert_eq!(
        got,
        BTreeSet::from([("eth0".into(), 1), ("eth1".into(), 2)])
    );
    assert_eq!(v.guest.sysctl("net/ipv4/fib_multipath_hash_policy"), "1");
    // Unbound traffic is spread: both ENIs carry some of 64 flows.
    let before = (v.guest.tx_packets("eth0"), v.guest.tx_packets("eth1"));
    for _ in 0..64 {
        send_udp(&v.guest.name, None, INTERNET.parse().unwrap(), 1);
    }
    let after = (v.guest.tx_packets("eth0"), v.guest.tx_packets("eth1"));
    assert!(
        after.0 - before.0 >= 3 && after.1 - before.1 >= 3,
        "flows not balanced: {before:?} -> {after:?}"
    );
}

#[test]
fn egress_failover_apply() {
    apply_and_check("egress-failover.toml");
    let v = Vpc::new(&example("egress-failover.toml"));
    v.expect(&["apply"], 0);
    let got = v.guest.ip(&["route", "get", INTERNET]);
    assert!(
        got.contains("dev eth1"),
        "unbound traffic should take the first via: {got}"
    );
    assert!(
        got.contains("src 192.168.50.21"),
        "failover source should be the EIP's private IP: {got}"
    );
    assert_eq!(
        v.guest
            .sysctl("net/ipv4/conf/eth1/ignore_routes_with_linkdown"),
        "1"
    );
    // The first via loses its link: traffic fails over to the second.
    v.vpc.ip(&["link", "set", "v1", "down"]);
    std::thread::sleep(Duration::from_millis(200));
    let got = v.guest.ip(&["route", "get", INTERNET]);
    assert!(
        got.contains("dev eth0"),
        "with eth1 down, unbound traffic should fail over: {got}"
    );
}

#[test]
fn ipv6_apply() {
    apply_and_check("ipv6.toml");
    let v = Vpc::new(&example("ipv6.toml"));
    v.expect(&["apply"], 0);
    let rules = v.guest.ip(&["-6", "rule"]);
    for p in ["20000:", "20100:", "20200:", "20300:"] {
        assert!(rules.contains(p), "IPv6 rule layer {p} missing: {rules}");
    }
    let t = v.guest.ip(&["-6", "route", "show", "table", "20002"]);
    assert!(t.contains("default via fe80::1 dev eth1"), "{t}");
}

/// A second apply makes no netlink change at all (watched with `ip monitor`).
#[test]
fn second_apply_changes_nothing() {
    let v = Vpc::new(&example("nat-secondary.toml"));
    v.expect(&["apply"], 0);
    let mon = v.guest.monitor(&["link", "address", "route", "rule"]);
    std::thread::sleep(Duration::from_millis(300));
    let out = v.expect(&["apply"], 0);
    assert!(out.contains("No changes"), "{out}");
    std::thread::sleep(Duration::from_millis(300));
    let events = mon.stop();
    assert!(
        events.trim().is_empty(),
        "a no-op apply changed the kernel:\n{events}"
    );
    v.expect(&["plan", "--detailed-exitcode"], 0);
}

/// Objects without the tag — even at eniroute's priorities and in its tables — are never
/// touched by apply or flush.
#[test]
fn foreign_objects_are_untouched() {
    let v = Vpc::new(&example("nat-secondary.toml"));
    let g = &v.guest;
    g.ip(&["link", "set", "eth1", "up"]);
    g.ip(&[
        "rule",
        "add",
        "priority",
        "20200",
        "from",
        "10.77.0.0/16",
        "lookup",
        "20002",
    ]);
    g.ip(&[
        "rule",
        "add",
        "priority",
        "20000",
        "from",
        "192.168.10.22",
        "lookup",
        "100",
    ]);
    g.ip(&[
        "route",
        "add",
        "10.99.0.0/16",
        "dev",
        "eth1",
        "table",
        "20002",
    ]);
    g.ip(&["addr", "add", "192.168.10.99/24", "dev", "eth1"]);
    let foreign = || {
        (
            g.ip(&["rule", "show", "priority", "20200"])
                + &g.ip(&["rule", "show", "priority", "20000"]),
            g.ip(&["route", "show", "table", "20002", "10.99.0.0/16"]),
            g.ip(&["addr", "show", "dev", "eth1", "to", "192.168.10.99/32"]),
        )
    };
    let before = foreign();
    assert!(before.0.contains("10.77.0.0/16") && before.1.contains("10.99.0.0/16"));
    v.expect(&["apply"], 0);
    let during = foreign();
    assert!(
        during.0.contains("from 10.77.0.0/16 lookup 20002"),
        "{}",
        during.0
    );
    assert!(
        during.0.contains("from 192.168.10.22 lookup 100"),
        "{}",
        during.0
    );
    assert_eq!(during.1, before.1);
    assert_eq!(during.2, before.2);
    v.expect(&["flush"], 0);
    assert_eq!(foreign(), before);
    assert!(
        owned_rules(g, false).is_empty()
            && owned_routes(g, false).is_empty()
            && owned_addresses(g).is_empty()
    );
}

/// A foreign route holding one of eniroute's routes' places is refused before any change.
#[test]
fn conflict_is_refused_before_any_change() {
    let v = Vpc::new(&example("nat-secondary.toml"));
    v.guest.ip(&["link", "set", "eth1", "up"]);
    v.guest
        .ip(&["route", "add", "default", "dev", "eth1", "table", "20002"]);
    let before = v.guest.dump();
    let o = v.run(&["apply"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("table 20002 already holds a route that is not eniroute's"),
        "{err}"
    );
    assert_eq!(v.guest.dump(), before);
    let status = v.expect(&["status"], 1);
    assert!(
        status.contains("1 conflict(s) with foreign objects"),
        "{status}"
    );
}

/// The kernel refuses an object midway (IPv6 disabled on eth1): everything already made is
/// undone and the namespace is exactly as before.
#[test]
fn kernel_refusal_rolls_back() {
    let v = Vpc::new(&example("ipv6.toml"));
    v.guest.set_sysctl("net/ipv6/conf/eth1/disable_ipv6", "1");
    let sysctls = (
        v.guest.sysctl("net/ipv4/conf/eth1/rp_filter"),
        v.guest.sysctl("net/ipv4/conf/eth0/arp_ignore"),
    );
    let before = v.guest.dump();
    let o = v.run(&["apply"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("2001:db8:60::2") && err.contains("rolled back"),
        "{err}"
    );
    assert_eq!(v.guest.dump(), before);
    assert_eq!(
        (
            v.guest.sysctl("net/ipv4/conf/eth1/rp_filter"),
            v.guest.sysctl("net/ipv4/conf/eth0/arp_ignore")
        ),
        sysctls
    );
}

/// Verification disagrees (a VPN-style split default in main wins over eniroute's tables):
/// apply rolls back everything, sysctls included, and exits 1.
#[test]
fn verification_failure_rolls_back() {
    let v = Vpc::new(&example("nat-secondary.toml"));
    for half in ["0.0.0.0/1", "128.0.0.0/1"] {
        v.guest
            .ip(&["route", "add", half, "via", "192.168.10.253", "dev", "eth0"]);
    }
    let before = v.guest.dump();
    let rp = v.guest.sysctl("net/ipv4/conf/eth1/rp_filter");
    let o = v.run(&["apply"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("verification failed") && err.contains("from 192.168.10.21"),
        "{err}"
    );
    // A few readable lines: the lookup that won names its table, with where to look.
    assert!(
        err.contains("(table main)") && err.contains("ip route show table main"),
        "{err}"
    );
    assert_eq!(err.matches("hint: ").count(), 1, "{err}");
    // The failure's own lines (other warnings, e.g. doctor's, are not its business).
    let failure = err
        .split_once("error: verification failed")
        .map_or("", |(_, f)| f);
    assert!(failure.lines().all(|l| l.chars().count() <= 140), "{err}");
    assert_eq!(v.guest.dump(), before);
    assert_eq!(v.guest.sysctl("net/ipv4/conf/eth1/rp_filter"), rp);
}

/// Rollback and flush put back the foreign routes the kernel drops when eniroute's addresses
/// were a link's only IPv4 addresses (no RTM_DELROUTE tells of it): the full dump is the same.
#[test]
fn foreign_routes_dropped_with_eniroutes_addresses_come_back() {
    let v = Vpc::new(&example("nat-secondary.toml"));
    let has_v4 = |v: &Vpc| {
        v.guest.ip_json(&["-4", "addr", "show", "dev", "eth1"])[0]["addr_info"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    };
    assert!(
        !has_v4(&v),
        "the test needs eth1 without an IPv4 address of its own"
    );
    v.guest.ip(&["link", "set", "eth1", "up"]);
    v.guest.ip(&[
        "route",
        "add",
        "5.6.7.0/24",
        "dev",
        "eth1",
        "table",
        "100",
        "proto",
        "static",
    ]);
    v.guest.ip(&[
        "route",
        "add",
        "5.6.8.0/24",
        "via",
        "5.6.7.1",
        "dev",
        "eth1",
        "table",
        "100",
    ]);
    // A VPN-style split default makes verification fail: apply rolls back.
    for half in ["0.0.0.0/1", "128.0.0.0/1"] {
        v.guest
            .ip(&["route", "add", half, "via", "192.168.10.253", "dev", "eth0"]);
    }
    let before = v.guest.dump();
    let o = v.run(&["apply"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(v.guest.dump(), before, "{}", text(&o));
    // Without the split default apply works; flush then leaves the host as it was.
    for half in ["0.0.0.0/1", "128.0.0.0/1"] {
        v.guest.ip(&["route", "del", half]);
    }
    let before = v.guest.dump();
    v.expect(&["apply"], 0);
    let out = v.expect(&["flush"], 0);
    assert!(
        out.contains("+ route 5.6.7.0/24 dev eth1 table 100"),
        "{out}"
    );
    assert_eq!(v.guest.dump(), before);
}

/// The originals are saved by MAC: after eth1 is renamed ens6, flush puts back ens6's.
#[test]
fn a_renamed_interface_keeps_its_saved_originals() {
    let v = Vpc::new(&example("nat-secondary.toml"));
    v.guest.set_sysctl("net/ipv4/conf/eth1/rp_filter", "1");
    v.guest.set_sysctl("net/ipv4/conf/eth1/arp_announce", "1");
    v.expect(&["apply"], 0);
    assert_eq!(v.guest.sysctl("net/ipv4/conf/eth1/rp_filter"), "2");
    v.guest.ip(&["link", "set", "eth1", "down"]);
    v.guest.ip(&["link", "set", "eth1", "name", "ens6"]);
    v.expect(&["flush"], 0);
    assert_eq!(v.guest.sysctl("net/ipv4/conf/ens6/rp_filter"), "1");
    assert_eq!(v.guest.sysctl("net/ipv4/conf/ens6/arp_announce"), "1");
}

/// A corrupt saved-state file stops flush (exit 1) with what to do, and is kept.
#[test]
fn a_corrupt_saved_state_is_refused_loudly_and_kept() {
    let v = Vpc::new(&example("nat-secondary.toml"));
    v.expect(&["apply"], 0);
    let dir = eniroute::kernel::netns::run_in_netns(Some(&v.guest.name), || async {
        eniroute::host::State::current()
            .unwrap()
            .dir()
            .to_path_buf()
    })
    .unwrap();
    let file = dir.join("sysctl.json");
    std::fs::write(&file, "{ this is not json").unwrap();
    let o = v.run(&["flush"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot be used") && err.contains("rm "),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "{ this is not json"
    );
}

/// Two applies at once: both succeed in turn or one exits 75; the end state is right.
#[test]
fn concurrent_applies() {
    let v = Vpc::new(&example("multi-eip.toml"));
    let cfg = v.config.to_string_lossy().into_owned();
    let spawn = || {
        Command::new(BIN)
            .args(["--netns", &v.guest.name, "-c", &cfg, "apply"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    for o in [&a, &b] {
        assert!(matches!(o.status.code(), Some(0) | Some(75)), "{}", text(o));
    }
    assert!(a.status.code() == Some(0) || b.status.code() == Some(0));
    v.expect(&["plan", "--detailed-exitcode"], 0);
}

/// A held lock makes apply exit 75 without changing anything (with --lock-timeout 0; the
/// default waits, see `apply_waits_for_the_lock`).
#[test]
fn locked_namespace_exits_75() {
    let v = Vpc::new(&example("nat-secondary.toml"));
    let dir = eniroute::kernel::netns::run_in_netns(Some(&v.guest.name), || async {
        eniroute::host::State::current()
            .map(|s| s.dir().to_path_buf())
            .unwrap()
    })
    .unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    let f = std::fs::File::create(dir.join("lock")).unwrap();
    f.lock().unwrap();
    let before = v.guest.dump();
    let o = v.run(&["apply", "--lock-timeout", "0"]);
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    assert_eq!(v.guest.dump(), before);
    drop(f);
    v.expect(&["apply"], 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// apply waits for another eniroute's lock (saying so once) and goes on when it is released;
/// past --lock-timeout it exits 75.
#[test]
fn apply_waits_for_the_lock() {
    let v = Vpc::new(&example("nat-secondary.toml"));
    let held = eniroute::kernel::netns::run_in_netns(Some(&v.guest.name), || async {
        let st = eniroute::host::State::current().unwrap();
        st.lock("eniroute test", Duration::ZERO, &mut |_| {}, &|| false)
            .unwrap()
    })
    .unwrap();
    let o = v.run(&["apply", "--lock-timeout", "1s"]);
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.matches("waiting for the lock held by PID").count(),
        1,
        "{err}"
    );
    assert!(err.contains("eniroute test"), "{err}");
    let cfg = v.config.to_string_lossy().into_owned();
    let child = std::process::Command::new(common::BIN)
        .args([
            "--netns",
            &v.guest.name,
            "-c",
            &cfg,
            "apply",
            "--lock-timeout",
            "20s",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    drop(held);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    v.expect(&["plan", "--detailed-exitcode"], 0);
}

/// An apply killed midway is healed by the next one.
#[test]
fn killed_apply_is_healed() {
    let v = Vpc::new(&example("egress-balance.toml"));
    let cfg = v.config.to_string_lossy().into_owned();
    for delay_ms in [1u64, 5, 20] {
        let mut child = Command::new(BIN)
            .args(["--netns", &v.guest.name, "-c", &cfg, "apply"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        v.expect(&["apply"], 0);
        v.expect(&["plan", "--detailed-exitcode"], 0);
        v.expect(&["flush"], 0);
    }
}

/// An invalid config makes no netlink request (and exits 65 before the namespace is even
/// looked at).
#[test]
fn invalid_config_touches_nothing() {
    let v = Vpc::new(&example("nat-secondary.toml"));
    let dir = tempdir();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[eni]]\nname = \"eth1\"\nmac = \"zz\"\n").unwrap();
    let mon = v.guest.monitor(&["all"]);
    std::thread::sleep(Duration::from_millis(200));
    let before = v.guest.dump();
    for verb in ["apply", "plan", "flush", "status"] {
        let o = eniroute(&["--netns", &v.guest.name, "-c", bad.to_str().unwrap(), verb]);
        assert_eq!(o.status.code(), Some(65), "{verb}: {}", text(&o));
    }
    let o = eniroute(&[
        "--netns",
        "no-such-namespace-eniroute",
        "-c",
        bad.to_str().unwrap(),
        "apply",
    ]);
    assert_eq!(o.status.code(), Some(65), "{}", text(&o));
    std::thread::sleep(Duration::from_millis(200));
    assert!(mon.stop().trim().is_empty());
    assert_eq!(v.guest.dump(), before);
}

/// flush after apply leaves no tagged object and restores every sysctl; twice is fine.
#[test]
fn flush_restores_everything() {
    let v = Vpc::new(&example("ipv6.toml"));
    v.guest.set_sysctl("net/ipv4/conf/eth1/rp_filter", "1");
    let paths = [
        "net/ipv4/conf/eth0/rp_filter",
        "net/ipv4/conf/eth1/rp_filter",
        "net/ipv4/conf/eth1/arp_ignore",
        "net/ipv4/conf/eth1/arp_announce",
        "net/ipv4/conf/eth1/ignore_routes_with_linkdown",
        "net/ipv6/conf/eth1/ignore_routes_with_linkdown",
    ];
    let before: Vec<String> = paths.iter().map(|p| v.guest.sysctl(p)).collect();
    v.expect(&["apply"], 0);
    assert_eq!(v.guest.sysctl("net/ipv4/conf/eth1/rp_filter"), "2");
    let out = v.expect(&["flush"], 0);
    assert!(out.contains("Flushed:"), "{out}");
    assert!(owned_rules(&v.guest, false).is_empty() && owned_rules(&v.guest, true).is_empty());
    assert!(owned_routes(&v.guest, false).is_empty() && owned_routes(&v.guest, true).is_empty());
    assert!(owned_addresses(&v.guest).is_empty());
    let after: Vec<String> = paths.iter().map(|p| v.guest.sysctl(p)).collect();
    assert_eq!(after, before);
    let out = v.expect(&["flush"], 0);
    assert!(out.contains("0 object(s) removed"), "{out}");
}

/// status: per ENI, its objects and verification; exit 0 when healthy, 1 when not.
#[test]
fn status_reports_per_eni() {
    let v = Vpc::new(&example("multi-eip.toml"));
    let before = v.expect(&["status"], 1);
    assert!(
        before.contains("Not healthy: ") && before.contains("change(s) pending"),
        "{before}"
    );
    assert!(!before.contains("Healthy: in sync"), "{before}");
    v.expect(&["apply"], 0);
    let out = v.expect(&["status"], 0);
    assert!(out.contains("\n  rule add priority 20200 from "), "{out}");
    assert_eq!(
        out.lines().last(),
        Some("Healthy: in sync with the config; every source routes through its ENI."),
        "{out}"
    );
    assert!(
        out.contains("eni eth1 (eth1, multi-eip): tables [20002, 20102]"),
        "{out}"
    );
    assert!(
        out.contains("ok    eth1       from 203.0.113.50: dev eth1 via 203.0.113.49"),
        "{out}"
    );
    let j: serde_json::Value =
        serde_json::from_str(&v.expect(&["-o", "json", "status"], 0)).unwrap();
    assert_eq!(j["healthy"], true);
    // Objects are structured, never preformatted strings.
    let eni = &j["status"]["enis"][1];
    assert!(eni["addresses"][0]["owned"].is_boolean(), "{eni}");
    assert!(eni["rules"][0]["priority"].is_u64(), "{eni}");
    assert!(eni["rules"][0]["table"].is_u64(), "{eni}");
    assert_eq!(
        j["status"]["enis"][1]["verification"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

/// status sees sysctl drift (no netlink event tells of it) exactly as plan would fix it.
#[test]
fn status_reports_sysctl_drift() {
    let v = Vpc::new(&example("nat-secondary.toml"));
    v.expect(&["apply"], 0);
    v.expect(&["status"], 0);
    v.guest.set_sysctl("net/ipv4/conf/eth1/rp_filter", "1");
    v.expect(&["plan", "--detailed-exitcode"], 2);
    let out = v.expect(&["status"], 1);
    assert!(
        out.contains("~ sysctl net.ipv4.conf.eth1.rp_filter 1 -> 2"),
        "{out}"
    );
    let j: serde_json::Value =
        serde_json::from_str(&v.expect(&["-o", "json", "status"], 1)).unwrap();
    assert_eq!(j["healthy"], false);
    assert_eq!(
        j["status"]["sysctl_drift"][0]["name"],
        "net.ipv4.conf.eth1.rp_filter"
    );
    v.expect(&["apply"], 0);
    v.expect(&["status"], 0);
}

/// A missing ENI: exit 69 naming it by name and MAC, nothing changed; --wait picks up a
/// hot-plugged ENI (the veth appears 2 s after apply starts).
#[test]
fn missing_eni_and_hotplug() {
    let v = Vpc::with_missing(&example("nat-secondary.toml"), &["eth1"]);
    let before = v.guest.dump();
    let o = v.run(&["apply"]);
    assert_eq!(o.status.code(), Some(69), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("\"eth1\"") && err.contains("00:16:3e:10:00:02"),
        "{err}"
    );
    assert_eq!(v.guest.dump(), before);
    let o = v.run(&["apply", "--wait", "1s"]);
    assert_eq!(o.status.code(), Some(69), "{}", text(&o));

    let child = v.spawn(&["apply", "--wait", "15s"]);
    std::thread::sleep(Duration::from_secs(2));
    v.plug("eth1");
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    v.expect(&["plan", "--detailed-exitcode"], 0);
}

/// Exit codes not covered elsewhere: 2 (changes pending), 69 (no such namespace), 64 (usage).
#[test]
fn exit_codes() {
    let v = Vpc::new(&example("cut-through.toml"));
    v.expect(&["plan", "--detailed-exitcode"], 2);
    v.expect(&["plan"], 0);
    let ex = example("cut-through.toml");
    let o = eniroute(&[
        "--netns",
        "no-such-namespace-eniroute",
        "-c",
        ex.to_str().unwrap(),
        "apply",
    ]);
    assert_eq!(o.status.code(), Some(69), "{}", text(&o));
    let o = eniroute(&["apply", "--wait", "soon"]);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    let o = eniroute(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
}

/// Without CAP_NET_ADMIN, apply and flush say what they need before touching anything (the
/// lock included).
#[test]
fn unprivileged_apply_and_flush_say_they_need_root() {
    let ex = example("nat-secondary.toml");
    for verb in ["apply", "flush"] {
        let o = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .args([BIN, "-c", ex.to_str().unwrap(), verb])
            .output()
            .expect("setpriv (util-linux)");
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!(
                "{verb} changes the kernel's routing and needs root or CAP_NET_ADMIN"
            )),
            "{err}"
        );
        assert!(!err.contains("lock"), "{err}");
    }
}

/// A namespace deleted while apply runs (here: while it waits for the lock) is exit 69,
/// "namespace gone", not whatever error that caused.
#[test]
fn namespace_deleted_during_a_run_is_69() {
    let ns = Netns::new("vanish");
    let held = eniroute::kernel::netns::run_in_netns(Some(&ns.name), || async {
        let st = eniroute::host::State::current().unwrap();
        st.lock("eniroute test", Duration::ZERO, &mut |_| {}, &|| false)
            .unwrap()
    })
    .unwrap();
    let ex = example("nat-secondary.toml");
    let child = Command::new(BIN)
        .args(["--netns", &ns.name, "-c", ex.to_str().unwrap()])
        .args(["apply", "--lock-timeout", "2s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    sh(&["ip", "netns", "del", &ns.name]);
    let o = child.wait_with_output().unwrap();
    drop(held);
    assert_eq!(o.status.code(), Some(69), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("namespace gone"),
        "{}",
        text(&o)
    );
}

/// The state directory of a namespace that is gone is removed by the next run elsewhere.
#[test]
fn state_of_a_deleted_namespace_is_swept() {
    let gone = Netns::new("gone");
    let o = eniroute(&["--netns", &gone.name, "flush"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let dir = eniroute::kernel::netns::run_in_netns(Some(&gone.name), || async {
        eniroute::host::State::current()
            .unwrap()
            .dir()
            .to_path_buf()
    })
    .unwrap();
    assert!(
        dir.join("netns").exists(),
        "the directory records its namespace"
    );
    sh(&["ip", "netns", "del", &gone.name]);
    let other = Netns::new("other");
    let o = eniroute(&["--netns", &other.name, "flush"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!dir.exists(), "{} outlived its namespace", dir.display());
}

/// A changed config converges: stale owned objects go, new ones come, in place.
#[test]
fn config_change_converges() {
    let dir = tempdir();
    let path = dir.path().join("c.toml");
    let base = std::fs::read_to_string(example("nat-secondary.toml")).unwrap();
    std::fs::write(&path, &base).unwrap();
    let v = Vpc::new(&path);
    v.expect(&["apply"], 0);
    // Drop the second private IP (and its EIP), move the rule base.
    let changed = base
        .replace("private_ips = [\"192.168.10.21\", \"192.168.10.22\"]", "private_ips = [\"192.168.10.21\"]")
        .replace("[[eni.eip]]\naddress = \"203.0.113.22\"\nprivate_ip = \"192.168.10.22\"           # each EIP maps to a distinct private IP\n", "")
        .replace("region = \"cn-hangzhou\"", "region = \"cn-hangzhou\"\n[routing]\nrule_priority = 21000");
    assert_ne!(changed, base);
    std::fs::write(&path, &changed).unwrap();
    let plan = v.expect(&["plan"], 0);
    assert!(
        plan.contains("- address del 192.168.10.22/24 dev eth1"),
        "{plan}"
    );
    assert!(
        plan.contains("+ rule add priority 21200 from 192.168.10.21 lookup 20002"),
        "{plan}"
    );
    assert!(
        plan.contains("- rule del priority 20200 from 192.168.10.21 lookup 20002"),
        "{plan}"
    );
    v.expect(&["apply"], 0);
    v.expect(&["plan", "--detailed-exitcode"], 0);
    let rules = v.guest.ip(&["rule"]);
    assert!(
        !rules.contains("20200:") && rules.contains("21200:"),
        "{rules}"
    );
    let _: Option<IpAddr> = None;
}

/// ENIs are found by MAC whatever the OS calls them: render --netns and apply use the real
/// name; a config that also names the interface must agree with the host.
#[test]
fn eni_found_by_mac_after_rename() {
    let v = Vpc::new(&example("multi-eip.toml"));
    v.guest.ip(&["link", "set", "eth1", "name", "ens5"]);
    let script = v.expect(&["-q", "render"], 0);
    assert!(
        script.contains("address add 192.168.31.20/24 dev ens5"),
        "{script}"
    );
    assert!(!script.contains("dev eth1"), "{script}");
    v.expect(&["apply"], 0);
    let got = v
        .guest
        .ip(&["route", "get", INTERNET, "from", "198.51.100.40"]);
    assert!(got.contains("dev ens5"), "{got}");
    v.expect(&["flush"], 0);
}

/// `-o json`: every verb prints exactly one JSON document on stdout, failures included.
#[test]
fn json_output_is_one_document() {
    let v = Vpc::new(&example("egress-failover.toml"));
    let json = |args: &[&str], code: i32| -> serde_json::Value {
        let mut a = vec!["-o", "json"];
        a.extend_from_slice(args);
        let out = v.expect(&a, code);
        let j: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{args:?}: not one JSON document: {e}\n{out}"));
        // The envelope every verb's document starts with (README: JSON output).
        assert_eq!(j["eniroute"], env!("CARGO_PKG_VERSION"), "{args:?}");
        assert_eq!(j["schema"], 1, "{args:?}");
        assert_eq!(j["command"], args[0], "{args:?}");
        assert_eq!(j["ok"], code == 0 || code == 2, "{args:?}");
        j
    };
    let plan = json(&["plan", "--detailed-exitcode"], 2);
    assert_eq!(plan["changes_pending"], true);
    let applied = json(&["apply"], 0);
    assert_eq!(applied["ok"], true);
    assert!(applied["report"]["verification"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["ok"] == true));
    let status = json(&["status"], 0);
    assert_eq!(status["healthy"], true);
    let flushed = json(&["flush"], 0);
    assert!(!flushed["removed"].as_array().unwrap().is_empty());
    // A rolled-back apply: one object with the error and the report.
    for half in ["0.0.0.0/1", "128.0.0.0/1"] {
        v.guest
            .ip(&["route", "add", half, "via", "192.168.50.253", "dev", "eth0"]);
    }
    let failed = json(&["apply"], 1);
    assert_eq!(failed["ok"], false);
    assert_eq!(failed["rolled_back"], true);
    assert!(failed["error"]
        .as_str()
        .unwrap()
        .contains("verification failed"));
}
