//! The kernel's side, judged: foreign rules in eniroute's window or on its tables, cloud-init's
//! policy rules, rp_filter and IPv6 sysctls of the ENIs, the kernel release.

use super::{EniView, Facts, Finding};
use crate::model::layout::{self, Layer};
use crate::model::{Config, Rule};

/// cloud-init's EC2 network config routes secondary NIC n through table 100 + n.
const CLOUD_INIT_TABLES: std::ops::RangeInclusive<u32> = 101..=199;

/// The first kernel with address protocol tags (IFA_PROTO).
const ADDRESS_TAGS: (u32, u32) = (5, 18);

pub(super) fn check(f: &Facts, enis: &[EniView]) -> Vec<Finding> {
    let mut out = Vec::new();
    if let (Some(cfg), Some(k)) = (f.cfg, &f.kernel) {
        out.extend(cloud_init(f, cfg, &k.foreign_rules, enis));
        out.extend(foreign_rules(cfg, &k.foreign_rules));
        out.extend(fwmark_rules(cfg, &k.fwmark_rules));
        for e in enis {
            let rp = |p: &str| k.sysctl(p).and_then(|v| v.parse::<u8>().ok()).unwrap_or(0);
            let effective = rp("net/ipv4/conf/all/rp_filter")
                .max(rp(&format!("net/ipv4/conf/{}/rp_filter", e.ifname)));
            if cfg.routing.rp_filter.sysctl_value().is_none() && effective == 1 {
                out.push(Finding::StrictRpFilter {
                    eni: e.eni.clone(),
                    ifname: e.ifname.clone(),
                });
            }
            let v6 = format!("net/ipv6/conf/{}/disable_ipv6", e.ifname);
            if e.ipv6 && k.sysctl(&v6) != Some("0") {
                out.push(Finding::Ipv6Disabled {
                    eni: e.eni.clone(),
                    ifname: e.ifname.clone(),
                    sysctl: v6,
                });
            }
        }
    }
    if let Some(release) = &f.host.kernel_release {
        if release_version(release).is_some_and(|v| v < ADDRESS_TAGS) {
            out.push(Finding::OldKernel {
                release: release.clone(),
            });
        }
    }
    out
}

/// (major, minor) of a kernel release such as `6.1.0-18-amd64`.
fn release_version(r: &str) -> Option<(u32, u32)> {
    let mut it = r.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Rules from an ENI's source to a table 100+n, or cloud-init's netplan with routing-policy.
fn cloud_init(f: &Facts, cfg: &Config, rules: &[Rule], enis: &[EniView]) -> Option<Finding> {
    let hits: Vec<&Rule> = rules
        .iter()
        .filter(|r| CLOUD_INIT_TABLES.contains(&r.table))
        .filter(|r| {
            r.from.is_some_and(|from| {
                enis.iter()
                    .flat_map(|e| &e.sources)
                    .any(|s| s.contains(from.ip()) || from.contains(s.ip()))
            })
        })
        .collect();
    let before_eniroute = hits.iter().any(|r| r.priority < cfg.routing.rule_priority);
    let rel = "etc/netplan/50-cloud-init.yaml";
    let file = f
        .host
        .read(rel)
        .filter(|t| t.contains("routing-policy"))
        .map(|_| f.host.root.join(rel));
    (!hits.is_empty() || file.is_some()).then_some(Finding::CloudInitRules {
        rules: hits.iter().map(|r| r.to_string()).collect(),
        file,
        before_eniroute,
    })
}

/// Foreign rules in [rule_priority, rule_priority + top layer] or looking up eniroute's tables.
fn foreign_rules(cfg: &Config, rules: &[Rule]) -> Vec<Finding> {
    let first = cfg.routing.rule_priority;
    let last = Layer::TOP.priority(first);
    let mut tables: Vec<u32> = cfg
        .enis
        .iter()
        .flat_map(|e| e.uplinks.iter().map(|u| u.table).chain([e.first_table]))
        .collect();
    if cfg.egress.is_some() {
        tables.push(layout::egress_table(cfg.routing.table_base));
    }
    let mut out = Vec::new();
    for r in rules {
        if (first..=last).contains(&r.priority) {
            out.push(Finding::ForeignRuleInWindow {
                rule: r.to_string(),
                first,
                last,
            });
        } else if tables.contains(&r.table) {
            out.push(Finding::ForeignRuleTable {
                rule: r.to_string(),
                table: r.table,
            });
        }
    }
    out
}

/// Foreign fwmark rules that come before eniroute's source layer: a packet carrying the mark
/// (kube-proxy, Calico, Cilium, the AWS VPC CNI, WireGuard mark theirs) is routed by them, not
/// by eniroute, whatever its source. eniroute makes no mark rules without [containers].
fn fwmark_rules(cfg: &Config, rules: &[(Rule, u32, u32)]) -> Vec<Finding> {
    let source_layer = Layer::Source.priority(cfg.routing.rule_priority);
    rules
        .iter()
        .filter(|(r, _, _)| r.priority < source_layer)
        .map(|(r, mark, mask)| Finding::ForeignFwmarkRule {
            rule: r.to_string(),
            mark: *mark,
            mask: *mask,
        })
        .collect()
}
