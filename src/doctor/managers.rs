//! The network managers and cloud helpers of the host, judged: systemd-networkd, NetworkManager
//! (and nm-cloud-setup), ifupdown, amazon-ec2-net-utils, Alibaba's multi-nic-util, and whether
//! a watch daemon heals what they remove.

use super::networkd::{self, LinkId};
use super::{nm, EniView, Facts, Finding};

/// Files that only amazon-ec2-net-utils installs (v2: setup-policy-routes and its units; v1:
/// the ec2net scripts).
const EC2_NET_UTILS: [&str; 5] = [
    "usr/bin/setup-policy-routes",
    "usr/lib/systemd/system/policy-routes@.service",
    "lib/systemd/system/policy-routes@.service",
    "etc/sysconfig/network-scripts/ec2net-functions",
    "usr/sbin/ec2ifup",
];

/// Files of Alibaba Cloud's multi-nic-util (its eni service and udev rule).
const MULTI_NIC_UTIL: [&str; 4] = [
    "usr/sbin/multi-nic-util",
    "etc/udev/rules.d/99-eni.rules",
    "usr/lib/systemd/system/eni.service",
    "etc/systemd/system/eni.service",
];

/// Where the shipped NetworkManager dispatcher hook and ifupdown hook are installed.
const NM_HOOK: &str = "etc/NetworkManager/dispatcher.d/90-eniroute";
const IFUP_HOOK: &str = "etc/network/if-up.d/eniroute";

/// Findings about the managers, and the "no watch" finding when one removes addresses and
/// nothing heals.
pub(super) fn check(f: &Facts, enis: &[EniView]) -> Vec<Finding> {
    // (finding, removes eniroute's addresses with nothing to put them back)
    let mut found = networkd(f, enis);
    found.extend(networkmanager(f, enis));
    // ifupdown and the cloud helpers act in the host's namespace only (ifup, udev, timers).
    let host = f.netns.is_none();
    if host {
        found.extend(ifupdown(f, enis));
    }
    let removers: Vec<String> = found
        .iter()
        .filter(|(_, removes)| *removes)
        .filter_map(|(finding, _)| match finding {
            Finding::NetworkdManagesEni { ifname, .. } => {
                Some(format!("systemd-networkd ({ifname})"))
            }
            Finding::NmManagesEni { ifname, .. } => Some(format!("NetworkManager ({ifname})")),
            Finding::IfupdownManagesEni { ifname, .. } => Some(format!("ifupdown ({ifname})")),
            _ => None,
        })
        .collect();
    let mut out: Vec<Finding> = found.into_iter().map(|(finding, _)| finding).collect();
    if host {
        out.extend(helpers(f));
    }
    if !removers.is_empty() && f.host.watchers(f.netns).is_empty() {
        out.push(Finding::NoWatch { managers: removers });
    }
    out
}

fn networkd(f: &Facts, enis: &[EniView]) -> Vec<(Finding, bool)> {
    let mut out = Vec::new();
    let Some(seen) = networkd_active(f) else {
        return out;
    };
    let c = &f.host.networkd_conf;
    if c.foreign_rules.on || c.foreign_routes.on {
        let finding = Finding::NetworkdForeign {
            seen,
            rules: c.foreign_rules.on,
            rules_file: c.foreign_rules.file.clone(),
            routes: c.foreign_routes.on,
            routes_file: c.foreign_routes.file.clone(),
        };
        out.push((finding, false));
    }
    for e in enis {
        let link = LinkId::from_sysfs(&f.host.root, &e.ifname, e.mac);
        let Some(m) = networkd::network_for(&f.host.root, &link).filter(|m| !m.unmanaged) else {
            continue;
        };
        // Measured: with KeepConfiguration=static (or yes) a reconfigure keeps eniroute's
        // addresses and routes (tests/managers.rs).
        let keeps = matches!(m.keep_configuration.as_deref(), Some("static" | "yes"));
        let finding = Finding::NetworkdManagesEni {
            eni: e.eni.clone(),
            ifname: e.ifname.clone(),
            file: m.file,
            keep_configuration: m.keep_configuration,
            unchecked: m.unchecked,
        };
        out.push((finding, !keeps));
    }
    out
}

/// The shipped dispatcher hook re-applies after NetworkManager's up events (measured: within
/// 100 ms), so with it NetworkManager needs no watch daemon.
fn networkmanager(f: &Facts, enis: &[EniView]) -> Vec<(Finding, bool)> {
    if !nm_active(f) {
        return Vec::new();
    }
    let no_hook = f.host.first_existing(&[NM_HOOK]).is_none();
    enis.iter()
        .filter_map(|e| {
            let link = LinkId::from_sysfs(&f.host.root, &e.ifname, e.mac);
            let v = nm::view(&f.host.root, &link, e.ifindex);
            v.managed.then(|| {
                let finding = Finding::NmManagesEni {
                    eni: e.eni.clone(),
                    ifname: e.ifname.clone(),
                    source: v.source,
                };
                (finding, no_hook)
            })
        })
        .collect()
}

fn ifupdown(f: &Facts, enis: &[EniView]) -> Vec<(Finding, bool)> {
    let no_hook = f.host.first_existing(&[IFUP_HOOK]).is_none();
    enis.iter()
        .filter_map(|e| {
            let (_, file) = f.host.ifupdown.iter().find(|(n, _)| *n == e.ifname)?;
            let finding = Finding::IfupdownManagesEni {
                eni: e.eni.clone(),
                ifname: e.ifname.clone(),
                file: file.clone(),
            };
            Some((finding, no_hook))
        })
        .collect()
}

/// How systemd-networkd was seen: its process in the target's namespace; for the host's own
/// namespace also its runtime state (when /proc hides other processes, as under
/// eniroute.service's ProtectProc=invisible) or the link that enables it (units start in the
/// host's namespace: for a `--netns` target only a process there counts).
fn networkd_active(f: &Facts) -> Option<String> {
    if let Some(p) = f.host.process_in("systemd-networkd", f.target_ns) {
        return Some(format!("running (pid {})", p.pid));
    }
    if f.netns.is_some() {
        return None;
    }
    if let Some(state) = f.host.first_existing(&["run/systemd/netif/state"]) {
        return Some(format!("running this boot ({})", state.display()));
    }
    f.host
        .enabled("systemd-networkd.service")
        .map(|l| format!("enabled ({})", l.display()))
}

/// NetworkManager's process in the target's namespace, else (for the host's own namespace)
/// the link that enables it.
fn nm_active(f: &Facts) -> bool {
    f.host.process_in("NetworkManager", f.target_ns).is_some()
        || (f.netns.is_none() && f.host.enabled("NetworkManager.service").is_some())
}

/// nm-cloud-setup, amazon-ec2-net-utils, multi-nic-util.
fn helpers(f: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(link) = ["nm-cloud-setup.timer", "nm-cloud-setup.service"]
        .iter()
        .find_map(|u| f.host.enabled(u))
    {
        out.push(Finding::NmCloudSetup {
            link: link.to_path_buf(),
        });
    }
    if let Some(path) = f.host.first_existing(&EC2_NET_UTILS) {
        out.push(Finding::Ec2NetUtils { path });
    }
    if let Some(path) = f.host.first_existing(&MULTI_NIC_UTIL) {
        out.push(Finding::MultiNicUtil { path });
    }
    out
}
