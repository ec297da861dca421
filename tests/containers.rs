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
