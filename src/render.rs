//! `render`: the whole desired state as an `ip -batch` script or as JSON.

use crate::model::{Address, Family, Route, Rule};
use crate::plan::Desired;

/// `address add ...` line (protocol-tagged).
fn address_line(verb: &str, a: &Address, proto: u8) -> String {
    format!("address {verb} {a} proto {proto}")
}

/// `route add ...` line (protocol-tagged).
fn route_line(verb: &str, r: &Route, proto: u8) -> String {
    format!("route {verb} {}", r.to_ip(Some(proto)))
}

/// `rule add ...` line (protocol-tagged).
fn rule_line(verb: &str, r: &Rule, proto: u8) -> String {
    format!("rule {verb} {r} proto {proto}")
}

/// The desired state as a script for `ip -batch`. iproute2 cannot tell the family of a batch
/// line that names no address, so IPv6 rules come last, in a section meant for `ip -6 -batch`
/// (marked by a comment line; `render` explains it). Sysctls, which `ip` does not set, are
/// listed as comments.
pub fn ip_script(d: &Desired) -> String {
    let p = d.protocol;
    let mut out = Vec::new();
    out.push(format!(
        "# eniroute desired state; every object carries protocol {p}"
    ));
    for n in &d.notes {
        out.push(format!("# note: {n}"));
    }
    for m in &d.missing {
        out.push(format!("# missing: eni {:?}: {}", m.eni, m.reason));
    }
    for l in &d.links_up {
        out.push(format!("link set dev {} up", l.name));
    }
    for a in &d.addresses {
        out.push(address_line("add", a, p));
    }
    for fam in [Family::V4, Family::V6] {
        for r in d.routes.iter().filter(|r| r.family() == fam) {
            out.push(route_line("add", r, p));
        }
    }
    for r in d.rules.iter().filter(|r| r.family == Family::V4) {
        out.push(rule_line("add", r, p));
    }
    let v6: Vec<&Rule> = d.rules.iter().filter(|r| r.family == Family::V6).collect();
    if !v6.is_empty() {
        out.push(IPV6_SECTION.to_string());
        for r in v6 {
            out.push(rule_line("add", r, p));
        }
    }
    if !d.sysctls.is_empty() {
        out.push("# sysctls (not set by ip):".to_string());
        for s in &d.sysctls {
            out.push(format!("# sysctl -w {}={}", s.name(), s.value));
        }
    }
    if let Some(t) = &d.nft {
        out.push(NFT_SECTION.to_string());
        out.extend(t.nft_lines());
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

/// The comment line that starts the `ip -6 -batch` section of [`ip_script`].
pub const IPV6_SECTION: &str = "# --- IPv6 rules: load the lines below with `ip -6 -batch` ---";

/// The comment line that starts the `nft -f` section of [`ip_script`] ([containers]).
pub const NFT_SECTION: &str = "# --- nftables table: load the lines below with `nft -f` ---";

/// The desired state as pretty JSON.
pub fn json(d: &Desired) -> String {
    serde_json::to_string_pretty(d).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
