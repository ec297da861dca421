//! `[containers]` and `[[containers.egress]]` validation (DESIGN §3): defaults, the marks
//! allocated inside the mask, and one rejected config per rule, at its line.

use std::net::IpAddr;

use eniroute::config::load_str;
use eniroute::model::layout::DEFAULT_MARK_MASK;

const BASE: &str = r#"
[[eni]]
name = "eth0"
interface = "eth0"
primary = true
cidr = "192.168.0.0/24"
gateway = "192.168.0.253"
private_ips = ["192.168.0.10"]
ipv6 = ["2001:db8:1::10"]
ipv6_cidr = "2001:db8:1::/64"
ipv6_gateway = "fe80::1"

[[eni]]
name = "eth1"
interface = "eth1"
cidr = "192.168.1.0/24"
gateway = "192.168.1.253"
private_ips = ["192.168.1.21", "192.168.1.22"]

[[eni]]
name = "eth2"
interface = "eth2"
mode = "multi-eip"
cidr = "192.168.2.0/24"
gateway = "192.168.2.253"
private_ips = ["192.168.2.30"]

[[eni.eip]]
address = "198.51.100.40"

[containers]
"#;

fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

#[track_caller]
fn rejected(text: &str, needle: &str, line_has: &str) {
    let err = match load_str(text, "c.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    };
    let p = err
        .problems
        .iter()
        .find(|p| p.message.contains(needle))
        .unwrap_or_else(|| panic!("no problem mentions {needle:?}: {err}"));
    let line = text.lines().nth(p.line - 1).unwrap_or_default();
    assert!(line.contains(line_has), "{err} points at {line:?}");
}

#[test]
fn defaults_give_each_eni_a_mark_inside_the_default_mask() {
    let c = load_str(&with(""), "c.toml").unwrap().config;
    let k = c.containers.expect("[containers]");
    assert!(k.return_path);
    assert_eq!(k.mark_mask, DEFAULT_MARK_MASK);
    let marks: Vec<(&str, u32, u32)> = k
        .marks
        .iter()
        .map(|m| (m.eni.as_str(), m.mark, m.table))
        .collect();
    assert_eq!(
        marks,
        [
            ("eth0", 0x400, 20001),
            ("eth1", 0x800, 20002),
            ("eth2", 0xc00, 20003)
        ]
    );
    // No marks outside the mask, none equal (0 is "unmarked").
    assert!(k
        .marks
        .iter()
        .all(|m| m.mark & !k.mark_mask == 0 && m.mark != 0));
}

#[test]
fn default_mask_is_clear_of_the_documented_marks_of_other_components() {
    // kube-proxy masquerade/drop bits, Calico's default mask, the AWS VPC CNI's connmark,
    // Istio's, Weave's, Tailscale's.
    for other in [
        0x4000u32,
        0x8000,
        0xffff_0000,
        0x80,
        0x100,
        0x200,
        0x210,
        0x220,
        0x40,
        0x2_0000,
        0x4_0000,
        0xff_0000,
    ] {
        assert_eq!(DEFAULT_MARK_MASK & other, 0, "{other:#x}");
    }
}

#[test]
fn egress_source_defaults_to_the_primary_private_ip_and_eips_in_the_os_are_allowed() {
    let text = with(
        r#"return_path = false
[[containers.egress]]
network = "172.17.0.0/16"
eni = "eth1"
[[containers.egress]]
network = "172.18.0.0/16"
eni = "eth2"
source = "198.51.100.40"
[[containers.egress]]
network = "fd00:17::/64"
eni = "eth0"
"#,
    );
    let k = load_str(&text, "c.toml")
        .unwrap()
        .config
        .containers
        .unwrap();
    assert!(!k.return_path);
    let got: Vec<(String, &str, IpAddr)> = k
        .egress
        .iter()
        .map(|e| (e.network.to_string(), e.eni.as_str(), e.source))
        .collect();
    assert_eq!(
        got,
        [
            (
                "172.17.0.0/16".into(),
                "eth1",
                "192.168.1.21".parse().unwrap()
            ),
            (
                "172.18.0.0/16".into(),
                "eth2",
                "198.51.100.40".parse().unwrap()
            ),
            (
                "fd00:17::/64".into(),
                "eth0",
                "2001:db8:1::10".parse().unwrap()
            ),
        ]
    );
}

#[test]
fn a_mask_too_small_for_the_enis_is_rejected_with_the_count() {
    rejected(&with("mark_mask = 0x1\n"), "at most 1 ENI(s)", "mark_mask");
    rejected(
        &with("mark_mask = 0x10000\n"),
        "eni \"eth1\" is ENI number 2",
        "mark_mask",
    );
    rejected(
        &with("mark_mask = 0\n"),
        "not a non-zero 32-bit mask",
        "mark_mask",
    );
    rejected(
        &with("mark_mask = 0x100000000\n"),
        "not a non-zero 32-bit mask",
        "mark_mask",
    );
    // Two bits tell three ENIs apart.
    assert!(load_str(&with("mark_mask = 0x3000\n"), "c.toml").is_ok());
}

#[test]
fn egress_rules_are_enforced_at_their_line() {
    let e = |body: &str| with(&format!("[[containers.egress]]\n{body}"));
    rejected(
        &e("network = \"192.168.1.0/25\"\neni = \"eth1\"\n"),
        "overlaps 192.168.1.0/24",
        "network",
    );
    rejected(
        &e("network = \"10.0.0.0/8\"\neni = \"eth9\"\n"),
        "not a declared ENI",
        "eth9",
    );
    rejected(
        &e("network = \"10.0.0.1/8\"\neni = \"eth1\"\n"),
        "no host bits",
        "network",
    );
    rejected(
        &e("network = \"::/0\"\neni = \"eth0\"\n"),
        "not /0",
        "network",
    );
    rejected(
        &e("network = \"10.0.0.0/8\"\neni = \"eth1\"\nsource = \"192.168.0.10\"\n"),
        "not an address of eni \"eth1\"",
        "source",
    );
    rejected(
        &e("network = \"10.0.0.0/8\"\neni = \"eth1\"\nsource = \"2001:db8:1::10\"\n"),
        "not of the family",
        "source",
    );
    rejected(
        &e("network = \"fd00::/64\"\neni = \"eth1\"\n"),
        "no gateway",
        "eth1",
    );
    rejected(
        &e("network = \"10.0.0.0/8\"\neni = \"eth1\"\nport = 1\n"),
        "unknown field",
        "port",
    );
    let twice = e("network = \"10.0.0.0/8\"\neni = \"eth1\"\n[[containers.egress]]\nnetwork = \"10.1.0.0/16\"\neni = \"eth0\"\n");
    rejected(&twice, "overlaps egress network 10.0.0.0/8", "10.1.0.0/16");
    rejected(&with("masquerade = true\n"), "unknown field", "masquerade");
}

#[test]
fn a_nat_eip_is_not_a_source_it_is_not_in_the_os() {
    let text = BASE.replace(
        "private_ips = [\"192.168.1.21\", \"192.168.1.22\"]\n",
        "private_ips = [\"192.168.1.21\", \"192.168.1.22\"]\n[[eni.eip]]\naddress = \"203.0.113.5\"\n",
    );
    let text = format!("{text}[[containers.egress]]\nnetwork = \"10.0.0.0/8\"\neni = \"eth1\"\nsource = \"203.0.113.5\"\n");
    rejected(&text, "not an address of eni", "source");
}

#[test]
fn the_example_validates() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/examples/containers.toml");
    let c = eniroute::config::load_file(&path)
        .unwrap()
        .config
        .containers
        .unwrap();
    assert_eq!(c.egress[0].source.to_string(), "192.168.10.22");
}
