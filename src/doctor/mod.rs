//! `doctor`: what on this host would fight eniroute (network managers, competing policy
//! routing, foreign rules, sysctls, kernel features), as data: each [`Finding`] carries what was
//! seen; its wording (why it breaks routing, the fix) is in `output`. May import model, plan,
//! kernel and ops (the target and its errors); reads files below a root (`--root`, for tests).
//!
//! How to add a finding: a variant of [`Finding`] (with [`Finding::breaks`]), a check in
//! checks.rs or managers.rs written against [`HostFacts`]/[`KernelFacts`] with a fixture test,
//! and its three sentences in output/doctor_text.rs.

mod checks;
mod host;
mod ini;
mod managers;
mod networkd;
mod nm;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use macaddr::MacAddr6;
use serde::Serialize;

use crate::kernel::netns::{run_in_netns, NetnsError};
use crate::kernel::{Kernel, KernelError, Netlink};
use crate::model::nft::ForeignMark;
use crate::model::{Config, HostLink, Rule};
use crate::ops::{OpError, Target};
use crate::plan;

pub use host::HostFacts;

/// One thing that would fight eniroute, with what was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Finding {
    /// systemd-networkd runs (or is enabled) and removes foreign rules and/or routes.
    NetworkdForeign {
        seen: String,
        rules: bool,
        rules_file: Option<PathBuf>,
        routes: bool,
        routes_file: Option<PathBuf>,
    },
    /// A .network file makes systemd-networkd configure an ENI.
    NetworkdManagesEni {
        eni: String,
        ifname: String,
        file: PathBuf,
        keep_configuration: Option<String>,
        unchecked: Vec<String>,
    },
    /// NetworkManager runs and manages an ENI.
    NmManagesEni {
        eni: String,
        ifname: String,
        source: PathBuf,
    },
    /// nm-cloud-setup is enabled: it adds policy rules and addresses from the metadata.
    NmCloudSetup { link: PathBuf },
    /// amazon-ec2-net-utils is installed: per-ENI policy routing of its own.
    Ec2NetUtils { path: PathBuf },
    /// Alibaba's multi-nic-util is installed: per-ENI routing of its own.
    MultiNicUtil { path: PathBuf },
    /// ifupdown configures an ENI (an `iface` stanza).
    IfupdownManagesEni {
        eni: String,
        ifname: String,
        file: PathBuf,
    },
    /// cloud-init's policy routing (EC2: tables 100+n) for an ENI's sources.
    CloudInitRules {
        rules: Vec<String>,
        file: Option<PathBuf>,
        /// Some of those rules come before eniroute's layers (they win for its sources).
        before_eniroute: bool,
    },
    /// A foreign rule inside eniroute's priority window.
    ForeignRuleInWindow { rule: String, first: u32, last: u32 },
    /// A foreign fwmark rule before eniroute's source layer: marked traffic skips eniroute.
    ForeignFwmarkRule { rule: String, mark: u32, mask: u32 },
    /// A foreign rule that looks up one of eniroute's tables.
    ForeignRuleTable { rule: String, table: u32 },
    /// rp_filter is strict on an ENI and `rp_filter = "keep"` leaves it so.
    StrictRpFilter { eni: String, ifname: String },
    /// IPv6 is disabled on an ENI that declares `ipv6` addresses.
    Ipv6Disabled {
        eni: String,
        ifname: String,
        sysctl: String,
    },
    /// [containers]: a foreign fwmark rule reads bits of `mark_mask` (apply refuses it).
    ForeignMarkRule {
        rule: String,
        bits: u32,
        mark_mask: u32,
    },
    /// [containers]: a rule of another nftables table reads or writes bits of `mark_mask`.
    ForeignNftMark {
        chain: String,
        bits: u32,
        mark_mask: u32,
    },
    /// [containers]: the kernel lacks what the table `inet eniroute` needs.
    NetfilterMissing {
        /// `nf_tables` or `conntrack`.
        feature: String,
        /// How it was seen to be missing.
        seen: String,
    },
    /// The kernel predates address protocol tags (IFA_PROTO, Linux 5.18).
    OldKernel { release: String },
    /// A manager that removes addresses is active and no `eniroute watch` serves the namespace.
    NoWatch { managers: Vec<String> },
}

impl Finding {
    /// Whether it will break routing (apply warns about these); the others are risks.
    pub fn breaks(&self) -> bool {
        match self {
            Finding::CloudInitRules {
                before_eniroute, ..
            } => *before_eniroute,
            Finding::NetworkdManagesEni { .. }
            | Finding::NmManagesEni { .. }
            | Finding::IfupdownManagesEni { .. }
            | Finding::NmCloudSetup { .. }
            | Finding::ForeignFwmarkRule { .. }
            | Finding::MultiNicUtil { .. } => false,
            _ => true,
        }
    }
}

/// A check that could not run, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "check", rename_all = "kebab-case")]
pub enum Skipped {
    /// No config file: only host-wide checks ran.
    NoConfig { path: String },
    /// nf_tables/conntrack and mark overlaps matter with [containers], which the config lacks.
    NoContainers,
    /// The nftables rules of other tables could not be read (nfnetlink wants CAP_NET_ADMIN).
    Nftables { error: String },
    /// Whether the kernel has `feature` could not be told from /sys/module or its module lists.
    KernelFeature { feature: String, looked: String },
    /// The kernel's rules and sysctls could not be read.
    Kernel { error: String },
    /// An ENI of the config is not on the host.
    EniNotFound { eni: String },
}

/// What doctor found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub skipped: Vec<Skipped>,
}

impl Report {
    pub fn clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// An ENI of the config as doctor sees it on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EniView {
    pub eni: String,
    pub ifname: String,
    pub ifindex: u32,
    pub mac: Option<MacAddr6>,
    pub ipv6: bool,
    /// The sources eniroute routes for this ENI.
    pub sources: Vec<ipnetwork::IpNetwork>,
}

/// What the kernel of the target namespace shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelFacts {
    pub links: Vec<HostLink>,
    /// Rules that are not eniroute's, with their fwmark selectors.
    pub foreign_rules: Vec<Rule>,
    /// nftables, read only when the config has [containers] (None: not read).
    pub nft: Option<NftFacts>,
    /// (sysctl path below /proc/sys, value) for the ENIs' rp_filter and disable_ipv6.
    pub sysctls: Vec<(String, String)>,
}

/// What the kernel showed of nftables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NftFacts {
    /// The kernel has no nf_tables (the nfnetlink request for it failed as without it).
    Absent,
    /// The rules of other tables that read or write marks.
    Marks(Vec<ForeignMark>),
    /// Could not be read (the error).
    Unreadable(String),
}

impl KernelFacts {
    pub fn sysctl(&self, path: &str) -> Option<&str> {
        self.sysctls
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, v)| v.as_str())
    }
}

/// Everything doctor judges.
pub struct Facts<'a> {
    pub cfg: Option<&'a Config>,
    pub netns: Option<&'a str>,
    /// The target's network namespace, when it can be told: a network manager counts only
    /// when it runs there.
    pub target_ns: Option<host::NsId>,
    pub host: HostFacts,
    pub kernel: Option<KernelFacts>,
}

/// Run every check: host files below `root`, the kernel of `target`. `config_path` names a
/// missing config (then only host-wide checks run). Fails only when the target namespace does
/// not exist (exit 69); other kernel errors skip the kernel's checks and say so.
pub fn inspect(
    cfg: Option<&Config>,
    config_path: &str,
    root: &Path,
    target: &Target,
) -> Result<Report, OpError> {
    let mut skipped = Vec::new();
    if cfg.is_none() {
        skipped.push(Skipped::NoConfig {
            path: config_path.to_string(),
        });
    }
    let kernel = match kernel_facts(cfg, target) {
        Ok(k) => Some(k),
        Err(e @ OpError::Netns(NetnsError::NotFound { .. })) => return Err(e),
        Err(e) => {
            skipped.push(Skipped::Kernel {
                error: e.to_string(),
            });
            None
        }
    };
    let facts = Facts {
        cfg,
        netns: target.netns.as_deref(),
        target_ns: host::ns_id(&match &target.netns {
            Some(name) => crate::kernel::netns::netns_path(name),
            None => std::path::PathBuf::from("/proc/self/ns/net"),
        }),
        host: host::gather(root),
        kernel,
    };
    let mut report = check(&facts);
    skipped.extend(report.skipped);
    report.skipped = skipped;
    Ok(report)
}

/// Judge the facts (pure).
pub fn check(f: &Facts) -> Report {
    let mut skipped = Vec::new();
    if f.cfg.is_some_and(|c| c.containers.is_none()) {
        skipped.push(Skipped::NoContainers);
    }
    let enis = match (f.cfg, &f.kernel) {
        (Some(cfg), Some(k)) => eni_views(cfg, &k.links, &mut skipped),
        _ => Vec::new(),
    };
    let mut findings = managers::check(f, &enis);
    findings.extend(checks::check(f, &enis));
    findings.extend(checks::containers(f, &mut skipped));
    Report { findings, skipped }
}

/// The config's ENIs found on the host, with their sources.
fn eni_views(cfg: &Config, links: &[HostLink], skipped: &mut Vec<Skipped>) -> Vec<EniView> {
    let d = plan::desired(cfg, Some(links));
    let mut out = Vec::new();
    for (e, p) in cfg.enis.iter().zip(&d.enis) {
        if !p.found {
            skipped.push(Skipped::EniNotFound {
                eni: e.name.clone(),
            });
            continue;
        }
        let sources = d
            .uplinks
            .iter()
            .filter(|u| u.eni == e.name)
            .flat_map(|u| u.sources.iter().copied())
            .collect();
        out.push(EniView {
            eni: e.name.clone(),
            ifname: p.iface.name.clone(),
            ifindex: p.iface.index,
            mac: links
                .iter()
                .find(|l| l.index == p.iface.index)
                .and_then(|l| l.mac),
            ipv6: !e.ipv6.is_empty(),
            sources,
        });
    }
    out
}

/// Links, foreign rules and the ENIs' sysctls of the target namespace (a dump needs no
/// privilege; entering a named namespace does).
fn kernel_facts(cfg: Option<&Config>, target: &Target) -> Result<KernelFacts, OpError> {
    let proto = cfg.map(|c| c.routing.protocol).unwrap_or(225);
    let containers = cfg.is_some_and(|c| c.containers.is_some());
    let cfg = cfg.cloned();
    run_in_netns(target.netns.as_deref(), move || async move {
        let k = Netlink::connect(proto)?;
        let links = k.links().await?;
        // links and one rule dump: cheap enough for every apply (no address or route dump)
        let rules = k.foreign_rules().await?;
        let mut sysctls = Vec::new();
        let mut paths = vec!["net/ipv4/conf/all/rp_filter".to_string()];
        if let Some(cfg) = &cfg {
            for p in plan::desired(cfg, Some(&links))
                .enis
                .iter()
                .filter(|p| p.found)
            {
                paths.push(format!("net/ipv4/conf/{}/rp_filter", p.iface.name));
                paths.push(format!("net/ipv6/conf/{}/disable_ipv6", p.iface.name));
            }
        }
        for p in paths {
            if let Ok(v) = k.sysctl_read(&p) {
                sysctls.push((p, v));
            }
        }
        // nfnetlink only with [containers]: it wants CAP_NET_ADMIN, and the marks of other
        // tables matter only then
        let nft = containers.then(|| match k.nft_foreign_marks() {
            Ok(Some(marks)) => NftFacts::Marks(marks),
            Ok(None) => NftFacts::Absent,
            Err(e) => NftFacts::Unreadable(e.to_string()),
        });
        Ok::<_, KernelError>(KernelFacts {
            links,
            foreign_rules: rules,
            nft,
            sysctls,
        })
    })
    .map_err(OpError::Netns)?
    .map_err(OpError::Kernel)
}
