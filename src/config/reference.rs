//! The configuration reference: every key the file accepts, with its values, default and
//! meaning. eniroute.toml(5) is generated from it, and its tests fail when the parser accepts
//! a key this table (or README's Configuration section) does not document, or the reverse.
//! Imports nothing of the crate.

/// One documented key.
pub struct Key {
    /// The TOML table it belongs to: "" (top level), "routing", "eni", "eni.eip", ...
    pub table: &'static str,
    pub key: &'static str,
    /// Its value: a type, or the allowed spellings.
    pub value: &'static str,
    /// The default, or whether it is required.
    pub default: &'static str,
    pub meaning: &'static str,
}

/// The tables in file order, each with a one-line summary.
pub const TABLES: &[(&str, &str)] = &[
    ("", "Top level."),
    (
        "routing",
        "Optional: numbers and sysctls of the routing eniroute programs.",
    ),
    ("eni", "One per ENI (array of tables)."),
    (
        "eni.eip",
        "The Elastic IPs of the ENI above it (array of tables).",
    ),
    (
        "egress",
        "Optional: where traffic that is not bound to a source leaves.",
    ),
    (
        "egress.via",
        "The uplinks of [egress], in order (array of tables).",
    ),
    (
        "discover",
        "Optional: take the ENIs from the instance metadata at apply/watch time.",
    ),
    (
        "containers",
        "Optional: containers, pods and VMs behind this host's bridges (conntrack marks, the nftables table inet eniroute).",
    ),
    (
        "containers.egress",
        "A local container network whose outbound traffic leaves one ENI (array of tables).",
    ),
];

const fn key(
    table: &'static str,
    key: &'static str,
    value: &'static str,
    default: &'static str,
    meaning: &'static str,
) -> Key {
    Key {
        table,
        key,
        value,
        default,
        meaning,
    }
}

/// Every key, grouped by table in the order of `TABLES`.
pub const KEYS: &[Key] = &[
    key("", "region", "string", "none", "The region id, used only for warnings: multi-eip was offered in cn-beijing, cn-zhangjiakou, ap-southeast-1, eu-central-1 and ap-south-1; elsewhere it is a warning, never an error."),
    key("routing", "table_base", "integer", "20000", "eniroute's route tables are table_base + k; every table avoids 0 and 253-255."),
    key("routing", "rule_priority", "integer", "20000", "Base P of the rule layers P, P+100, P+200, P+300; P+300 must stay below the kernel's lookup main rule at 32766."),
    key("routing", "protocol", "integer 5-255", "225", "The rtnetlink protocol tagging every route, rule and address eniroute adds; reconcile and flush touch only objects carrying it."),
    key("routing", "rp_filter", "loose | strict | off | keep", "loose", "Reverse-path filter of each managed ENI (keep leaves it alone)."),
    key("routing", "arp_isolation", "boolean", "true", "arp_ignore=1 and arp_announce=2 on managed ENIs: each ENI answers ARP only for its own addresses."),
    key("routing", "verify", "boolean", "true", "After apply, ask the kernel's own route lookup for every source and roll back if one leaves the wrong way."),
    key("eni", "name", "string", "required", "A unique label, used in output and in [egress]."),
    key("eni", "mac", "MAC address", "mac or interface", "How the interface is found; survives renames and ENI moves."),
    key("eni", "interface", "interface name", "mac or interface", "The interface by name; with mac too, both must agree on the host."),
    key("eni", "id", "string", "none", "The ENI id, informational."),
    key("eni", "primary", "boolean", "false", "At most one ENI is primary; the primary ENI supports only nat. No primary ENI is allowed."),
    key("eni", "mode", "nat | cut-through | multi-eip", "nat", "How the ENI's EIPs are associated (see MODES)."),
    key("eni", "cidr", "IPv4 CIDR (quoted)", "nat, multi-eip: required", "The vSwitch CIDR."),
    key("eni", "gateway", "IPv4 address", "nat, multi-eip: required", "The vSwitch gateway, inside cidr."),
    key("eni", "private_ips", "array of IPv4 addresses", "nat, multi-eip: at least one", "The ENI's private IPs, primary first, inside cidr; a cut-through ENI lists at most its primary private IP, which is not configured."),
    key("eni", "prefixes", "array of IPv4 CIDRs", "none", "IPv4 prefixes assigned to the ENI (inside cidr): routed as sources, not configured as addresses."),
    key("eni", "ipv6", "array of IPv6 addresses", "none", "IPv6 addresses (added without duplicate address detection)."),
    key("eni", "ipv6_cidr", "IPv6 CIDR", "with ipv6: required", "The vSwitch IPv6 CIDR."),
    key("eni", "ipv6_gateway", "IPv6 address", "with ipv6: required", "Link-local, or inside ipv6_cidr."),
    key("eni", "eip_quota", "integer", "10", "multi-eip only: a raised EIP quota."),
    key("eni.eip", "address", "IPv4 address", "required", "The public address (not RFC 1918, loopback, link-local, multicast, 0/8, 100.64/10, 240/4 or broadcast)."),
    key("eni.eip", "id", "string", "none", "The EIP id, informational."),
    key("eni.eip", "private_ip", "IPv4 address", "the primary private IP", "nat only: the private IP the EIP maps to; no two EIPs share one."),
    key("eni.eip", "prefix", "integer 0-32", "32", "cut-through and multi-eip: the EIP's netmask length."),
    key("eni.eip", "gateway", "IPv4 address", "cut-through: required; multi-eip: the ENI's gateway", "The gateway the EIP's traffic leaves through."),
    key("egress", "strategy", "failover | balance", "failover", "failover: the first usable via, in order (route priority); balance: ECMP over all of them."),
    key("egress", "hash", "l3 | l4", "l4", "balance only: net.ipv4.fib_multipath_hash_policy 0 or 1."),
    key("egress.via", "eni", "string", "required", "The name of a declared ENI."),
    key("egress.via", "source", "IPv4 address", "none", "failover only: originate from this EIP or private IP of that ENI (a nat EIP becomes its private IP)."),
    key("egress.via", "weight", "integer 1-256", "1", "balance only: the via's share of the ECMP route."),
    key("discover", "provider", "auto | aliyun | aws", "auto", "The metadata service: auto tells from the firmware's DMI strings, then by probing."),
    key("discover", "refresh", "duration", "60s", "watch: read the metadata again this often (jittered); a partial answer is never acted on."),
    key("discover", "exclude", "array of MACs, interface names or labels", "none", "ENIs eniroute must never manage."),
    key("discover", "endpoint", "http://IP[:port]", "the provider's", "Another metadata service address (an IP address: no name resolution)."),
    key("containers", "return_path", "boolean", "true", "A connection that arrives on an ENI is answered through that ENI, also when it is forwarded (docker -p, hostPort/NodePort): conntrack mark and a fwmark rule."),
    key("containers", "mark_mask", "integer", "0x3c00", "The fwmark bits eniroute may use (one value per ENI inside it); clear of kube-proxy, Calico, Istio, Weave, Tailscale and the AWS VPC CNI."),
    key("containers.egress", "network", "CIDR", "required", "The container network (IPv4 or IPv6); overlaps no ENI cidr."),
    key("containers.egress", "eni", "ENI name", "required", "The ENI its outbound traffic leaves through."),
    key("containers.egress", "source", "IP address", "the ENI's primary private IP", "SNAT to this OS-visible address of that ENI."),
];

/// `table` is a direct child of `parent`: its last name.
pub(super) fn child_name<'a>(table: &'a str, parent: &str) -> Option<&'a str> {
    if parent.is_empty() {
        return (!table.is_empty() && !table.contains('.')).then_some(table);
    }
    table.strip_prefix(parent)?.strip_prefix('.')
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::{KEYS, TABLES};

    /// The keys serde accepts in one table: it names them when it rejects an unknown one
    /// ("unknown field `x`, expected one of `a`, `b`").
    fn accepted(table: &str) -> BTreeSet<String> {
        let probe = match table {
            "" => "zz_unknown = 1\n".to_string(),
            "eni" => "[[eni]]\nzz_unknown = 1\n".to_string(),
            "eni.eip" => "[[eni]]\nname = \"a\"\n[[eni.eip]]\nzz_unknown = 1\n".to_string(),
            "egress.via" => "[egress]\n[[egress.via]]\nzz_unknown = 1\n".to_string(),
            "containers.egress" => {
                "[containers]\n[[containers.egress]]\nzz_unknown = 1\n".to_string()
            }
            t => format!("[{t}]\nzz_unknown = 1\n"),
        };
        let err = match toml::from_str::<super::super::raw::RawConfig>(&probe) {
            Ok(_) => panic!("{table}: the unknown key was accepted"),
            Err(e) => e.message().to_string(),
        };
        let (_, expected) = err
            .split_once("expected")
            .unwrap_or_else(|| panic!("{table}: serde named no keys: {err}"));
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|k| {
                !TABLES
                    .iter()
                    .any(|(t, _)| super::child_name(t, table) == Some(k))
            })
            .map(str::to_string)
            .collect()
    }

    fn documented(table: &str) -> BTreeSet<String> {
        KEYS.iter()
            .filter(|k| k.table == table)
            .map(|k| k.key.to_string())
            .collect()
    }

    #[test]
    fn every_accepted_key_is_documented_and_every_documented_key_accepted() {
        for (table, _) in TABLES {
            assert_eq!(
                accepted(table),
                documented(table),
                "[{table}]: the parser (left) and config/reference.rs (right) disagree: \
                 document the new key (or table: a new table shows up as a top-level key) \
                 here and in README's Configuration section"
            );
        }
    }

    #[test]
    fn readme_documents_every_key() {
        let readme = include_str!("../../README.md");
        let (_, section) = readme
            .split_once("\n## Configuration")
            .expect("README has a Configuration section");
        let section = section.split("\n## ").next().unwrap_or(section);
        for k in KEYS {
            assert!(
                section.contains(&format!("`{}`", k.key)),
                "README's Configuration section does not mention `{}` ([{}])",
                k.key,
                k.table
            );
        }
    }
}
