//! The kernel's side, judged: foreign rules in eniroute's window or on its tables, cloud-init's
//! policy rules, rp_filter and IPv6 sysctls of the ENIs, the kernel release; with [containers]
//! foreign marks on `mark_mask` and the netfilter features the table needs.

use super::{EniView, Facts, Finding, NftFacts, Skipped};
use crate::model::layout::{self, Layer};
use crate::model::nft::{mark_overlaps, MarkUse};
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
        out.extend(fwmark_rules(cfg, &k.foreign_rules));
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
/// by eniroute, whatever its source. With [containers], a rule on eniroute's mark bits is the
/// stronger [`Finding::ForeignMarkRule`] instead.
fn fwmark_rules(cfg: &Config, rules: &[Rule]) -> Vec<Finding> {
    let source_layer = Layer::Source.priority(cfg.routing.rule_priority);
    let on_mask = |r: &Rule| {
        cfg.containers
            .as_ref()
            .is_some_and(|c| !mark_overlaps(c.mark_mask, std::slice::from_ref(r), &[]).is_empty())
    };
    rules
        .iter()
        .filter(|r| r.priority < source_layer && !on_mask(r))
        .filter_map(|r| {
            let m = r.fwmark?;
            Some(Finding::ForeignFwmarkRule {
                rule: r.to_string(),
                mark: m.mark,
                mask: m.mask,
            })
        })
        .collect()
}

/// With [containers]: foreign fwmark rules and nftables rules on `mark_mask` (apply refuses
/// them), and a kernel without nf_tables or conntrack (apply cannot make the table).
pub(super) fn containers(f: &Facts, skipped: &mut Vec<Skipped>) -> Vec<Finding> {
    let Some(c) = f.cfg.and_then(|c| c.containers.as_ref()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let nft = f.kernel.as_ref().and_then(|k| k.nft.as_ref());
    if let Some(k) = &f.kernel {
        let marks = match nft {
            Some(NftFacts::Marks(m)) => m.as_slice(),
            _ => &[],
        };
        let mark_mask = c.mark_mask;
        out.extend(
            mark_overlaps(mark_mask, &k.foreign_rules, marks)
                .into_iter()
                .map(|x| match x.by {
                    MarkUse::Rule(r) => Finding::ForeignMarkRule {
                        rule: r.to_string(),
                        bits: x.bits,
                        mark_mask,
                    },
                    MarkUse::Nft(m) => Finding::ForeignNftMark {
                        chain: m.chain.clone(),
                        bits: x.bits,
                        mark_mask,
                    },
                }),
        );
    }
    match nft {
        Some(NftFacts::Absent) => out.push(Finding::NetfilterMissing {
            feature: "nf_tables".into(),
            seen: "the kernel has no nftables subsystem (an nfnetlink request for it failed, \
                   after the kernel's attempt to load the module)"
                .into(),
        }),
        Some(NftFacts::Marks(_)) => {}
        Some(NftFacts::Unreadable(error)) => {
            skipped.push(Skipped::Nftables {
                error: error.clone(),
            });
            module(f, "nf_tables", "nf_tables", &mut out, skipped);
        }
        None => module(f, "nf_tables", "nf_tables", &mut out, skipped),
    }
    // The files, not /proc/sys/net/netfilter: nf_conntrack may be unloaded until the table's
    // first ct expression makes the kernel load it.
    module(f, "conntrack", "nf_conntrack", &mut out, skipped);
    out
}

/// `feature` missing when the kernel lacks module `name`; skipped when that cannot be told.
fn module(f: &Facts, feature: &str, name: &str, out: &mut Vec<Finding>, sk: &mut Vec<Skipped>) {
    let release = f
        .host
        .kernel_release
        .as_deref()
        .unwrap_or("(unknown release)");
    let looked = format!(
        "{}: not there; {}: no module list",
        f.host.root.join("sys/module").join(name).display(),
        f.host.root.join("lib/modules").join(release).display()
    );
    match f.host.kernel_module(name) {
        Some(true) => {}
        Some(false) => out.push(Finding::NetfilterMissing {
            feature: feature.into(),
            seen: format!(
                "module {name} is not loaded, not built in and not in modules.dep of kernel \
                 {release}"
            ),
        }),
        None => sk.push(Skipped::KernelFeature {
            feature: feature.into(),
            looked,
        }),
    }
}
