//! Kernel-layer tests (root) in throwaway namespaces: the events subscription sees what `ip`
//! changes (and reports an overrun as a resync), and `sim::owned_objects` lists exactly the
//! objects tagged with eniroute's protocol, the way `observe` splits them.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use eniroute::kernel::events::{Burst, Event, Events, Group};
use eniroute::kernel::netns::run_in_netns;
use eniroute::model::Family;

const WAIT: Duration = Duration::from_secs(2);
const DEBOUNCE: Duration = Duration::from_millis(50);

/// `ip -n NS` with `cmd`'s words.
fn ip(ns: &str, cmd: &str) {
    let mut v = vec!["ip", "-n", ns];
    v.extend(cmd.split_whitespace());
    sh(&v);
}

/// A namespace holding a veth pair e1/e2, both up, e1 with 192.168.10.21/24, then `cmds`.
/// Returns it and e1's index.
fn with_veth(role: &str, cmds: &[&str]) -> (Netns, u32) {
    let ns = Netns::new(role);
    for cmd in [
        "link add e1 type veth peer name e2",
        "link set e1 up",
        "link set e2 up",
        "addr add 192.168.10.21/24 dev e1",
    ]
    .iter()
    .chain(cmds)
    {
        ip(&ns.name, cmd);
    }
    let index = ns.ip_json(&["link", "show", "e1"])[0]["ifindex"]
        .as_u64()
        .unwrap() as u32;
    (ns, index)
}

/// Subscribe to `groups` inside `ns`, run `change` (`ip` commands), and return the burst that
/// followed.
fn burst_after(ns: &Netns, groups: &'static [Group], change: &'static [&'static str]) -> Burst {
    let name = ns.name.clone();
    run_in_netns(Some(&ns.name), move || async move {
        let mut events = Events::subscribe(groups).unwrap();
        for cmd in change {
            ip(&name, cmd);
        }
        events.next_burst(WAIT, DEBOUNCE).await.unwrap()
    })
    .unwrap()
}

/// A rule tagged with eniroute's protocol.
fn rule(family: Family, table: u32, priority: u32, removed: bool) -> Event {
    Event::Rule {
        family,
        table,
        priority,
        protocol: 225,
        removed,
    }
}

/// A route tagged with eniroute's protocol.
fn route(family: Family, table: u32, removed: bool) -> Event {
    Event::Route {
        family,
        table,
        protocol: 225,
        removed,
    }
}

fn events(b: Burst) -> Vec<Event> {
    match b {
        Burst::Events(e) => e,
        other => panic!("expected events, got {other:?}"),
    }
}

#[test]
fn nothing_happening_is_quiet() {
    let ns = Netns::new("evquiet");
    let b = run_in_netns(Some(&ns.name), || async {
        let mut events = Events::subscribe(&Group::ALL).unwrap();
        events
            .next_burst(Duration::from_millis(200), DEBOUNCE)
            .await
            .unwrap()
    })
    .unwrap();
    assert_eq!(b, Burst::Quiet);
}

#[test]
fn links_addresses_routes_and_rules_are_seen_in_one_burst() {
    let ns = Netns::new("evall");
    let got = events(burst_after(
        &ns,
        &Group::ALL,
        &[
            "link add e1 type veth peer name e2",
            "link set e1 up",
            "addr add 192.168.10.21/24 dev e1 proto 225",
            "rule add from 192.168.10.21 lookup 20002 priority 20200 proto 225",
            "-6 rule add lookup main priority 20100 proto 225",
            "route add default via 192.168.10.253 dev e1 onlink table 20002 proto 225",
        ],
    ));
    let index: u32 = ns.ip_json(&["link", "show", "e1"])[0]["ifindex"]
        .as_u64()
        .unwrap() as u32;
    for want in [
        Event::Link {
            index,
            removed: false,
        },
        Event::Address {
            index,
            removed: false,
        },
        rule(Family::V4, 20002, 20200, false),
        rule(Family::V6, 254, 20100, false),
        route(Family::V4, 20002, false),
    ] {
        assert!(got.contains(&want), "{want:?} not in {got:?}");
    }
}

#[test]
fn only_the_subscribed_groups_are_heard() {
    let ns = Netns::new("evgroup");
    ip(&ns.name, "link add e1 type veth peer name e2");
    let got = events(burst_after(
        &ns,
        &[Group::Ipv4Rule],
        &[
            "link set e1 up",
            "rule add lookup 20002 priority 20200 proto 225",
            "rule del priority 20200",
        ],
    ));
    let added = rule(Family::V4, 20002, 20200, false);
    assert_eq!(got, vec![added, rule(Family::V4, 20002, 20200, true)]);
}

#[test]
fn an_overrun_socket_asks_for_a_resync() {
    let ns = Netns::new("evover");
    let name = ns.name.clone();
    let b = run_in_netns(Some(&ns.name), move || async move {
        let mut events = Events::subscribe(&[Group::Ipv4Route]).unwrap();
        // Far more notifications than the receive queue holds (8 MiB, about 10,000 of them),
        // none read meanwhile. Routes, since the kernel adds them fast.
        let batch: String = (0..60000)
            .map(|i| {
                format!(
                    "route add unreachable 10.{}.{}.0/24 table 30000 proto 225\n",
                    i / 256,
                    i % 256
                )
            })
            .collect();
        let mut child = Command::new("ip")
            .args(["-n", &name, "-batch", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(batch.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
        events.next_burst(WAIT, DEBOUNCE).await.unwrap()
    })
    .unwrap();
    assert_eq!(b, Burst::Resync);
}

#[test]
fn owned_objects_lists_exactly_what_carries_the_protocol() {
    let (ns, _) = with_veth(
        "owned",
        &[
            "addr add 47.96.1.2/32 dev e1 noprefixroute proto 225",
            "rule add from 192.168.10.22 lookup 20002 priority 20200 proto 225",
            "rule add from 192.168.10.23 lookup 20002 priority 20201",
            "-6 rule add lookup main suppress_prefixlength 0 priority 20100 proto 225",
            "route add default via 192.168.10.253 dev e1 table 20002 proto 225",
            "route add 10.0.0.0/8 via 192.168.10.253 dev e1 table 20002",
        ],
    );
    let mut got = eniroute::kernel::sim::owned_objects(&ns.name, 225).unwrap();
    got.sort();
    assert_eq!(
        got,
        vec![
            "address 47.96.1.2/32 dev e1 noprefixroute",
            "route default via 192.168.10.253 dev e1 table 20002",
            "rule -6 priority 20100 lookup main suppress_prefixlength 0",
            "rule priority 20200 from 192.168.10.22 lookup 20002",
        ]
    );
    assert!(eniroute::kernel::sim::owned_objects(&ns.name, 226)
        .unwrap()
        .is_empty());
}

#[test]
fn lookups_report_the_table_that_matched_for_both_families() {
    use eniroute::kernel::{Kernel as _, Lookup, Netlink};
    let (ns, index) = with_veth(
        "lookup",
        &[
            "-6 addr add 2001:db8:10::21/64 dev e1 nodad",
            "rule add from 192.168.10.21 lookup 20002 priority 20200",
            "-6 rule add from 2001:db8:10::21 lookup 20002 priority 20200",
            "route add default via 192.168.10.253 dev e1 onlink table 20002",
            "-6 route add default via fe80::1 dev e1 table 20002",
        ],
    );
    let got = run_in_netns(Some(&ns.name), || async {
        let k = Netlink::connect(225).unwrap();
        k.route_get_many(&[
            (
                Some("192.168.10.21".parse().unwrap()),
                "8.8.8.8".parse().unwrap(),
            ),
            (
                Some("2001:db8:10::21".parse().unwrap()),
                "2001:4860::8888".parse().unwrap(),
            ),
        ])
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect::<Vec<Lookup>>()
    })
    .unwrap();
    let want = |gw: &str| Lookup {
        oif: Some(index),
        gateway: Some(gw.parse().unwrap()),
        table: Some(20002),
    };
    assert_eq!(got, vec![want("192.168.10.253"), want("fe80::1")]);
}
