//! [containers] against real namespaces (root): the table `inet eniroute` made over netlink as
//! `nft` (the independent observer) lists it, a no-op re-apply, flush, marks in route lookups,
//! and the docker-style topology of issue 13 with a VPC that drops spoofed sources.

mod common;

use std::process::Command;

use common::*;

/// `nft ARGS` inside a namespace; panics on failure.
fn nft(ns: &Netns, args: &[&str]) -> String {
    let mut v = vec!["ip", "netns", "exec", &ns.name, "nft"];
    v.extend_from_slice(args);
    sh(&v)
}

/// Load an nft script into a namespace with `nft -f`.
fn nft_load(ns: &Netns, script: &str) {
    let dir = tempdir();
    let file = dir.path().join("load.nft");
    std::fs::write(&file, script).unwrap();
    nft(ns, &["-f", &file.to_string_lossy()]);
}

/// The rules of `nft list table inet eniroute`, one per line, counters' values dropped.
fn listed_rules(ns: &Netns) -> Vec<String> {
    let out = nft(ns, &["list", "table", "inet", "eniroute"]);
    let mut chain = String::new();
    let mut rules = Vec::new();
    for l in out.lines().map(str::trim) {
        if let Some(c) = l.strip_prefix("chain ") {
            chain = c.trim_end_matches(" {").to_string();
        } else if !(l.is_empty() || l.starts_with("type ") || l.starts_with("table ") || l == "}") {
            let words: Vec<&str> = l.split_whitespace().collect();
            let mut kept = Vec::new();
            let mut i = 0;
            while i < words.len() {
                if words[i] == "packets" || words[i] == "bytes" {
                    i += 2;
                    continue;
                }
                kept.push(words[i]);
                i += 1;
            }
            rules.push(format!("{chain} {}", kept.join(" ")));
        }
    }
    rules
}

/// The rules the render's nft section adds, as `chain rule`.
fn rendered_rules(v: &Vpc) -> Vec<String> {
    let out = v.expect(&["render"], 0);
    out.lines()
        .filter_map(|l| l.strip_prefix("add rule inet eniroute "))
        .map(String::from)
        .collect()
}

fn table_exists(ns: &Netns) -> bool {
    Command::new("ip")
        .args([
            "netns", "exec", &ns.name, "nft", "list", "table", "inet", "eniroute",
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn apply_makes_the_table_nft_lists_then_nothing_to_do_then_flush_deletes_it() {
    let v = Vpc::new(&example("containers.toml"));
    assert!(!table_exists(&v.guest));
    v.expect(&["apply"], 0);
    assert_eq!(listed_rules(&v.guest), rendered_rules(&v));
    let chains = nft(&v.guest, &["list", "table", "inet", "eniroute"]);
    assert!(
        chains.contains("type filter hook prerouting priority mangle; policy accept;"),
        "{chains}"
    );
    assert!(
        chains.contains("type route hook output priority mangle; policy accept;"),
        "{chains}"
    );
    assert!(
        chains.contains("type nat hook postrouting priority srcnat - 1; policy accept;"),
        "{chains}"
    );
    // The mark layer, in the kernel.
    let rules = v.guest.ip(&["rule"]);
    assert!(
        rules.contains("20150:\tfrom all fwmark 0x800/0x3c00 lookup 20002 proto 225"),
        "{rules}"
    );
    // Nothing left to do.
    let plan = v.expect(&["plan", "--detailed-exitcode"], 0);
    assert!(!plan.contains("nftables"), "{plan}");
    v.expect(&["flush"], 0);
    assert!(!table_exists(&v.guest));
    assert!(!v.guest.ip(&["rule"]).contains("fwmark"));
}

/// Issue 13's host: containers.toml's two ENIs on one vSwitch, a docker0-like bridge with a
/// container namespace behind it, a published port (DNAT of 192.168.10.22:8080 to the
/// container's :80) and a masquerade in a FOREIGN table made with `nft`, and a VPC whose ENI
/// ports drop any source that is not that ENI's (netdev ingress, like the sandbox's).
struct Docker {
    v: Vpc,
    container: Netns,
}

const CONTAINER: &str = "172.17.0.2";
const PUBLISHED: &str = "192.168.10.22";
const FOREIGN_TABLE: &str = "table ip dockerlike {
  chain pre { type nat hook prerouting priority dstnat; policy accept;
    ip daddr 192.168.10.22 tcp dport 8080 dnat to 172.17.0.2:80
  }
  chain post { type nat hook postrouting priority srcnat; policy accept;
    ip saddr 172.17.0.0/16 oifname != \"docker0\" masquerade
  }
}
";

fn docker() -> Docker {
    let v = Vpc::new(&example("containers.toml"));
    let (g, vpc) = (&v.guest, &v.vpc);
    let c = Netns::new("ctr");
    g.ip(&["link", "add", "docker0", "type", "bridge"]);
    g.ip(&["addr", "add", "172.17.0.1/16", "dev", "docker0"]);
    g.ip(&["link", "set", "docker0", "up"]);
    g.ip(&[
        "link", "add", "vethc", "type", "veth", "peer", "name", "ceth0", "netns", &c.name,
    ]);
    g.ip(&["link", "set", "vethc", "master", "docker0", "up"]);
    c.ip(&["addr", "add", "172.17.0.2/16", "dev", "ceth0"]);
    c.ip(&["link", "set", "ceth0", "up"]);
    c.ip(&["route", "add", "default", "via", "172.17.0.1"]);
    g.set_sysctl("net/ipv4/ip_forward", "1");
    // The host as the issue found it: the secondary ENI up with its address (DHCP or an
    // operator), each ENI answering ARP only for its own addresses.
    g.ip(&["link", "set", "eth1", "up"]);
    g.ip(&["addr", "add", "192.168.10.22/24", "dev", "eth1"]);
    for i in ["eth0", "eth1"] {
        g.set_sysctl(&format!("net/ipv4/conf/{i}/arp_ignore"), "1");
    }
    nft_load(g, FOREIGN_TABLE);
    // The VPC's anti-spoofing on each ENI's port (v0 = eth0, v1 = eth1).
    let vpc_rules = "table netdev vpc {
  chain v0 { type filter hook ingress device \"v0\" priority 0; policy accept;
    meta protocol ip ip saddr != 192.168.10.10 counter drop
  }
  chain v1 { type filter hook ingress device \"v1\" priority 0; policy accept;
    meta protocol ip ip saddr != { 192.168.10.21, 192.168.10.22 } counter drop
  }
}
";
    // A VPC knows which ENI holds each private IP; it learns nothing from ARP.
    for (ip, mac) in [
        ("192.168.10.10", "00:16:3e:10:00:01"),
        ("192.168.10.21", "00:16:3e:10:00:02"),
        ("192.168.10.22", "00:16:3e:10:00:02"),
    ] {
        vpc.ip(&[
            "neigh",
            "replace",
            ip,
            "lladdr",
            mac,
            "dev",
            "br0",
            "nud",
            "permanent",
        ]);
    }
    nft_load(vpc, vpc_rules);
    Docker { v, container: c }
}

/// A TCP server in `ns` on `addr` answering each connection with the peer's address, for
/// `n` connections, on a thread of its own.
fn serve(ns: &str, addr: &str, n: usize) -> std::thread::JoinHandle<()> {
    let (ns, addr) = (ns.to_string(), addr.to_string());
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        eniroute::kernel::netns::run_in_netns(Some(&ns), move || async move {
            use std::io::Write;
            let l = std::net::TcpListener::bind(&addr).expect("bind");
            tx.send(()).unwrap();
            for _ in 0..n {
                let Ok((mut s, peer)) = l.accept() else {
                    return;
                };
                let _ = s.write_all(peer.ip().to_string().as_bytes());
            }
        })
        .unwrap();
    });
    rx.recv().unwrap();
    h
}

/// Connect from `ns` to `addr` (2 s timeout): what the server said, or None.
fn ask(ns: &str, addr: &str) -> Option<String> {
    ask_from(ns, None, addr)
}

/// [`ask`] from a bound source address.
fn ask_from(ns: &str, src: Option<&str>, addr: &str) -> Option<String> {
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let src: Option<std::net::SocketAddr> = src.map(|s| format!("{s}:0").parse().unwrap());
    eniroute::kernel::netns::run_in_netns(Some(ns), move || async move {
        use std::io::Read;
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
        if let Some(s) = src {
            sock.bind(&s.into()).ok()?;
        }
        sock.connect_timeout(&addr.into(), std::time::Duration::from_secs(2))
            .ok()?;
        let mut s: std::net::TcpStream = sock.into();
        s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    })
    .unwrap()
}

fn drops(ns: &Netns) -> String {
    let out = nft(ns, &["list", "table", "netdev", "vpc"]);
    out.lines()
        .filter(|l| l.contains("drop"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn docker_published_port_answers_and_container_egress_leaves_the_chosen_eni_as_its_source() {
    let d = docker();
    let (v, c) = (&d.v, &d.container);
    let inbound = format!("{PUBLISHED}:8080");
    let internet = format!("{INTERNET}:7000");
    // Before: the published port's replies leave eth0 and the VPC drops them (the issue);
    // container egress is masqueraded to eth0's address.
    let _srv = serve(&c.name, &format!("{CONTAINER}:80"), 8);
    let _net = serve(&v.vpc.name, &internet, 4);
    assert_eq!(
        ask_from(&v.vpc.name, Some(INTERNET), &inbound),
        None,
        "before apply the reply is dropped"
    );
    assert!(drops(&v.vpc).contains("drop"), "{}", drops(&v.vpc));
    assert_eq!(ask(&c.name, &internet).as_deref(), Some("192.168.10.10"));
    let foreign_before = nft(&v.guest, &["list", "table", "ip", "dockerlike"]);
    v.expect(&["apply"], 0);
    // After: the reply leaves eth1 (its connection's ENI); egress leaves eth1 as .22, ahead of
    // the masquerade.
    // From the Internet, and from the vSwitch itself (the gateway's own address).
    assert_eq!(
        ask_from(&v.vpc.name, Some(INTERNET), &inbound).as_deref(),
        Some(INTERNET)
    );
    assert_eq!(
        ask(&v.vpc.name, &inbound).as_deref(),
        Some("192.168.10.253")
    );
    assert_eq!(ask(&c.name, &internet).as_deref(), Some("192.168.10.22"));
    let route = v.guest.ip(&["route", "get", INTERNET, "mark", "0x800"]);
    assert!(route.contains("dev eth1"), "{route}");
    v.expect(&["plan", "--detailed-exitcode"], 0);
    let status = v.expect(&["status"], 0);
    assert!(
        status.contains("nftables table inet eniroute: present, as planned"),
        "{status}"
    );
    assert!(
        status.contains("eni eth1 (mark 0x800): 2 connection(s) marked on arrival"),
        "{status}"
    );
    assert!(
        status.contains("container network 172.17.0.0/16 (mark 0x800): 1 connection(s) marked"),
        "{status}"
    );
    assert_eq!(
        nft(&v.guest, &["list", "table", "ip", "dockerlike"]),
        foreign_before
    );
}

#[test]
fn flush_leaves_the_foreign_table_and_every_foreign_object_as_they_were() {
    let d = docker();
    let v = &d.v;
    let before = (v.guest.routing(), nft(&v.guest, &["list", "ruleset"]));
    v.expect(&["apply"], 0);
    assert!(table_exists(&v.guest));
    v.expect(&["flush"], 0);
    let after = (v.guest.routing(), nft(&v.guest, &["list", "ruleset"]));
    assert_eq!(after.1, before.1, "nft ruleset");
    assert_eq!(after.0, before.0, "addresses, routes, rules");
}

#[test]
fn a_kill_at_any_batch_of_apply_is_healed_by_the_next_apply() {
    let d = docker();
    let v = &d.v;
    let mut killed = 0;
    for k in 1.. {
        let cfg = v.config.to_string_lossy().into_owned();
        let o = Command::new(BIN)
            .args(["--netns", &v.guest.name, "-c", &cfg, "apply"])
            .env("ENIROUTE_FAILPOINT", format!("batch:{k}"))
            .output()
            .unwrap();
        if o.status.success() {
            break;
        }
        killed += 1;
        v.expect(&["apply"], 0);
        v.expect(&["plan", "--detailed-exitcode"], 0);
        assert_eq!(listed_rules(&v.guest), rendered_rules(v));
        v.expect(&["flush"], 0);
        assert!(!table_exists(&v.guest), "batch {k}");
    }
    assert!(
        killed >= 3,
        "the apply has several batches, the table's among them: {killed}"
    );
}

/// A foreign nftables rule on eniroute's mark bits is refused before any change.
#[test]
fn a_foreign_nft_mark_on_the_mask_is_a_conflict_and_nothing_changes() {
    let v = Vpc::new(&example("containers.toml"));
    nft_load(&v.guest, "table ip other {\n chain p { type filter hook prerouting priority 0; meta mark set meta mark | 0x800\n }\n}\n");
    let before = v.guest.dump();
    let o = v.run(&["apply"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("ip other p"), "{}", text(&o));
    assert_eq!(v.guest.dump(), before);
    assert!(!table_exists(&v.guest));
    // kube-proxy's bits are clear of the default mask.
    nft(&v.guest, &["flush", "table", "ip", "other"]);
    nft_load(&v.guest, "table ip other {\n chain p { type filter hook prerouting priority 0; meta mark set meta mark | 0x4000\n }\n}\n");
    v.expect(&["apply"], 0);
}

/// IPv6: the marks, an IPv6 container network SNATed to the ENI's IPv6 address, marked
/// lookups; the table nft lists is the rendered one and a re-apply changes nothing.
#[test]
fn ipv6_container_network_and_marks() {
    let mut text = std::fs::read_to_string(example("ipv6.toml")).unwrap();
    text.push_str(
        "\n[containers]\n[[containers.egress]]\nnetwork = \"fd00:17::/64\"\neni = \"eth1\"\nsource = \"2001:db8:60::21\"\n",
    );
    let v = Vpc::from_text(&text);
    v.expect(&["apply"], 0);
    assert_eq!(listed_rules(&v.guest), rendered_rules(&v));
    let rules = listed_rules(&v.guest);
    assert!(
        rules.contains(
            &"postrouting ip6 saddr fd00:17::/64 oifname \"eth1\" snat ip6 to 2001:db8:60::21"
                .to_string()
        ),
        "{rules:#?}"
    );
    let v6 = v.guest.ip(&["-6", "rule"]);
    assert!(
        v6.contains("fwmark 0x800/0x3c00 lookup 20002 proto 225"),
        "{v6}"
    );
    let got = v
        .guest
        .ip(&["-6", "route", "get", INTERNET6, "mark", "0x800"]);
    assert!(got.contains("dev eth1"), "{got}");
    v.expect(&["plan", "--detailed-exitcode"], 0);
    v.expect(&["flush"], 0);
    assert!(!table_exists(&v.guest));
}

/// The table made by `nft -f` from render's nft lines is the table eniroute plans: nft and
/// eniroute encode each match and statement the same way (eniroute decodes what the kernel
/// holds, whoever wrote it), so plan has nothing to change in it.
#[test]
fn nft_loading_the_rendered_lines_gives_the_planned_table() {
    let v = Vpc::new(&example("containers.toml"));
    let render = v.expect(&["render"], 0);
    let script: String = render
        .lines()
        .skip_while(|l| !l.starts_with("# --- nftables"))
        .skip(1)
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(script.contains("add table inet eniroute"));
    nft_load(&v.guest, &script);
    let plan = v.expect(&["plan"], 0);
    assert!(!plan.contains("nftables"), "{plan}");
    assert!(plan.contains("fwmark"), "the rest is still to do: {plan}");
}

/// doctor with [containers] on a real namespace: a foreign `ip rule` on fwmark 0x400/0x400 and
/// a foreign nftables chain setting `meta mark set 0x800`, both inside the default mark_mask
/// 0x3c00, are each reported (breaking routing, exit 1); clean once they are removed. The
/// host's files are left out (`--root` an empty directory).
#[test]
fn doctor_reports_foreign_marks_on_the_mark_mask_then_is_clean() {
    let v = Vpc::new(&example("containers.toml"));
    let root = tempdir();
    let root_s = root.path().to_string_lossy().into_owned();
    let doctor = || {
        let out = v.run(&["-o", "json", "doctor", "--root", &root_s]);
        let j: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("doctor -o json: {e}: {}", text(&out)));
        let mut ids: Vec<(String, bool)> = j["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let id = f["id"].as_str().unwrap().to_string();
                (id, f["breaks_routing"].as_bool().unwrap())
            })
            .collect();
        ids.sort();
        let skipped = j["skipped"].to_string();
        assert!(!skipped.contains("no [containers]"), "{skipped}");
        (out.status.code(), ids)
    };
    assert_eq!(doctor(), (Some(0), vec![]), "a fresh namespace is clean");
    v.guest
        .ip(&["rule", "add", "fwmark", "0x400/0x400", "lookup", "100"]);
    nft_load(
        &v.guest,
        "table ip other {\n chain p { type filter hook prerouting priority 0; meta mark set 0x800\n }\n}\n",
    );
    assert_eq!(
        doctor(),
        (
            Some(1),
            vec![
                ("foreign-mark-on-mask".to_string(), true),
                ("foreign-nft-mark-on-mask".to_string(), true)
            ]
        )
    );
    let words = v.run(&["doctor", "--root", &root_s]);
    let said = text(&words);
    assert!(said.contains("fwmark bits 0x400"), "{said}");
    assert!(said.contains("ip other p"), "{said}");
    v.guest
        .ip(&["rule", "del", "fwmark", "0x400/0x400", "lookup", "100"]);
    nft(&v.guest, &["delete", "table", "ip", "other"]);
    assert_eq!(doctor(), (Some(0), vec![]));
}
