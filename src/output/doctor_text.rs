//! The wording of `doctor`: for each finding what was seen, why it breaks routing and the fix;
//! text for people, JSON for programs; and the one-line warnings `apply` prints.

use serde_json::json;

use super::{print_json_ok, Format, Out};
use crate::doctor::{Finding, Report, Skipped};

/// Where the package installs the networkd drop-in (configs/networkd/ in the source).
const NETWORKD_DROPIN: &str = "/usr/lib/systemd/networkd.conf.d/80-eniroute.conf";
/// The NetworkManager dispatcher hook (configs/networkmanager/ in the source).
const NM_HOOK: &str = "/usr/share/eniroute/hooks/networkmanager/90-eniroute";
/// The ifupdown hook (configs/ifupdown/ in the source).
const IFUP_HOOK: &str = "/usr/share/eniroute/hooks/ifupdown/eniroute";

/// (short id, what was seen, why it breaks routing, the fix).
fn words(f: &Finding) -> (&'static str, String, String, String) {
    match f {
        Finding::NetworkdForeign { seen, rules, rules_file, routes, routes_file } => {
            let kinds = match (rules, routes) {
                (true, true) => "ManageForeignRoutingPolicyRules=yes and ManageForeignRoutes=yes",
                (true, false) => "ManageForeignRoutingPolicyRules=yes",
                _ => "ManageForeignRoutes=yes",
            };
            let from = |f: &Option<std::path::PathBuf>| {
                f.as_ref().map(|p| p.display().to_string()).unwrap_or("the compiled-in default".into())
            };
            ("networkd-foreign", format!("systemd-networkd is {seen} with {kinds} (rules: {}; routes: {})", from(rules_file), from(routes_file)),
             "on every reconfigure, reload of a link or restart networkd deletes every rule and route it did not make: all of eniroute's rules (every ENI's, not only the reconfigured one's) and its table routes".into(),
             format!("install {NETWORKD_DROPIN} (ManageForeignRoutingPolicyRules=no, ManageForeignRoutes=no; no later drop-in may set them back), then: systemctl restart systemd-networkd && eniroute apply"))
        }
        Finding::NetworkdManagesEni { eni, ifname, file, keep_configuration, unchecked } => (
            "networkd-manages-eni",
            format!("{} configures ENI {eni} ({ifname}){}{}", file.display(),
                keep_configuration.as_ref().map(|k| format!(", KeepConfiguration={k}")).unwrap_or_default(),
                if unchecked.is_empty() { String::new() } else { format!(" (its [Match] {} not checked)", unchecked.join(", ")) }),
            "`networkctl reconfigure` and DHCP events re-set the link's addresses: eniroute's addresses go, and with a link's last IPv4 address the kernel drops every route through it".into(),
            format!("run `eniroute watch` (it heals within milliseconds); or add KeepConfiguration=static in {}.d/eniroute.conf ([Network]); or Unmanaged=yes ([Link]) if eniroute alone configures {ifname}", file.display())),
        Finding::NmManagesEni { eni, ifname, source } => (
            "networkmanager-manages-eni",
            format!("NetworkManager manages ENI {eni} ({ifname}) (per {})", source.display()),
            "`nmcli connection up`, `device reapply` and DHCP renewals replace the link's addresses with the profile's: eniroute's addresses and the routes through them go".into(),
            format!("run `eniroute watch`; or install the dispatcher hook {NM_HOOK} in /etc/NetworkManager/dispatcher.d/; or make it unmanaged: [keyfile] unmanaged-devices=interface-name:{ifname} in /etc/NetworkManager/conf.d/eniroute.conf")),
        Finding::NmCloudSetup { link } => (
            "nm-cloud-setup",
            format!("nm-cloud-setup is enabled ({})", link.display()),
            "it re-applies the ENIs' addresses from the metadata and adds policy rules of its own (priority 30400+, after eniroute's) on its own schedule: a second policy router for the same sources".into(),
            "systemctl disable --now nm-cloud-setup.timer nm-cloud-setup.service".into()),
        Finding::Ec2NetUtils { path } => (
            "amazon-ec2-net-utils",
            format!("amazon-ec2-net-utils is installed ({})", path.display()),
            "it installs per-ENI policy rules (priority 10000+, before eniroute's layers) and route tables of its own on every hotplug and DHCP event, for the same sources as eniroute: its rules win".into(),
            "remove it (dnf remove amazon-ec2-net-utils / apt-get purge amazon-ec2-net-utils), or let it route and do not declare those ENIs in eniroute".into()),
        Finding::MultiNicUtil { path } => (
            "multi-nic-util",
            format!("Alibaba Cloud multi-nic-util is installed ({})", path.display()),
            "it configures secondary ENIs and their routes itself when they appear, competing with eniroute for the same interfaces".into(),
            "systemctl disable --now eni.service and remove the package (or its udev rule)".into()),
        Finding::IfupdownManagesEni { eni, ifname, file } => (
            "ifupdown-manages-eni",
            format!("ifupdown configures ENI {eni} ({ifname}) in {}", file.display()),
            "`ifdown/ifup` and `systemctl restart networking` remove the link's addresses and with them every route through it".into(),
            format!("run `eniroute watch`; or install the hook {IFUP_HOOK} as /etc/network/if-up.d/eniroute")),
        Finding::CloudInitRules { rules, file, before_eniroute } => (
            "cloud-init-policy-routing",
            format!("cloud-init's policy routing{}{}", if rules.is_empty() { String::new() } else { format!(": {}", rules.join("; ")) },
                file.as_ref().map(|f| format!(" (in {})", f.display())).unwrap_or_default()),
            if *before_eniroute {
                "its rules (EC2: table 100+n per NIC) route the same sources as eniroute and come before eniroute's layers, so they win; it re-adds them at every boot".into()
            } else {
                "its rules (EC2: table 100+n per NIC) route the same sources as eniroute; today eniroute's layers come first, but a lower rule_priority or a change of theirs reverses that".into()
            },
            "stop cloud-init configuring the secondary NICs: /etc/cloud/cloud.cfg.d/99-eniroute.cfg with datasource: Ec2: apply_full_imds_network_config: false (example: /usr/share/doc/eniroute/examples/cloud-init/user-data-no-policy-routing.yaml), then remove its rules (ip rule del ...)".into()),
        Finding::ForeignRuleInWindow { rule, first, last } => (
            "foreign-rule-in-window",
            format!("a foreign rule `{rule}` lies in eniroute's priority window {first}-{last}"),
            "rules there interleave with eniroute's layers and can send its sources to another table".into(),
            format!("move it out (ip rule del {rule}; add it back outside {first}-{last}) or set routing.rule_priority elsewhere")),
        Finding::ForeignFwmarkRule { rule, mark, mask } => (
            "foreign-fwmark-rule",
            format!("a foreign rule `{rule}` with fwmark {mark:#x}/{mask:#x} comes before eniroute's source rules"),
            "packets carrying that mark are routed by that rule, not by eniroute, whatever their source: replies from an ENI's address that get the mark leave by the other rule's table".into(),
            format!("check that the tool owning mark {mark:#x}/{mask:#x} (kube-proxy, Calico, Cilium, the VPC CNI, WireGuard) never marks replies from the ENIs' addresses, or move its rule after eniroute's window")),
        Finding::ForeignRuleTable { rule, table } => (
            "foreign-rule-on-table",
            format!("a foreign rule `{rule}` looks up eniroute's table {table}"),
            "eniroute rewrites that table to its own routes, so that rule's traffic takes eniroute's uplink".into(),
            format!("ip rule del {rule}, or set routing.table_base clear of the tables other tools use")),
        Finding::StrictRpFilter { eni, ifname } => (
            "strict-rp-filter",
            format!("rp_filter is 1 (strict) on ENI {eni} ({ifname}) and routing.rp_filter = \"keep\""),
            "strict reverse-path filtering drops packets that arrive on an ENI whose sender the main table reaches through another interface (the very traffic source routing is for)".into(),
            format!("set routing.rp_filter = \"loose\" (the default), or sysctl -w net.ipv4.conf.{ifname}.rp_filter=2 net.ipv4.conf.all.rp_filter=2")),
        Finding::Ipv6Disabled { eni, ifname, sysctl } => (
            "ipv6-disabled",
            format!("IPv6 is disabled on ENI {eni} ({ifname}) ({sysctl} is not 0), but the ENI declares ipv6 addresses"),
            "eniroute cannot add the IPv6 addresses, routes or rules: apply fails for this ENI".into(),
            format!("sysctl -w net.ipv6.conf.{ifname}.disable_ipv6=0 (and drop ipv6.disable=1 from the kernel command line if set)")),
        Finding::ForeignMarkRule { rule, bits, mark_mask } => (
            "foreign-mark-on-mask",
            format!("a foreign rule `{rule}` selects on fwmark bits {bits:#x}, inside containers.mark_mask = {mark_mask:#x}"),
            "eniroute marks connections with those bits: the other rule misroutes eniroute's marked packets and eniroute's marks overwrite the other tool's, so apply refuses to run while it is there".into(),
            format!("set containers.mark_mask to bits that tool leaves free (mark_mask & {bits:#x} = 0), or move the tool's mark elsewhere; then eniroute apply")),
        Finding::ForeignNftMark { chain, bits, mark_mask } => (
            "foreign-nft-mark-on-mask",
            format!("nftables chain {chain} (not eniroute's) reads or writes mark bits {bits:#x}, inside containers.mark_mask = {mark_mask:#x}"),
            "the two would overwrite or misread each other's connection and packet marks, so replies would leave the wrong ENI; apply refuses to run while it is there".into(),
            format!("set containers.mark_mask to bits that chain leaves free (mark_mask & {bits:#x} = 0; `nft list chain {chain}` shows its marks); then eniroute apply")),
        Finding::NetfilterMissing { feature, seen } => (
            if feature == "nf_tables" { "no-nf-tables" } else { "no-conntrack" },
            format!("[containers] needs {feature}, and {seen}"),
            "eniroute marks connections in its nftables table `inet eniroute` (ct mark): without it apply cannot make the table and fails, and forwarded replies and container egress leave the wrong ENI".into(),
            format!("boot a kernel with {} (Debian/Ubuntu kernels have it; on a minimal kernel install the modules package), then: modprobe {}",
                if feature == "nf_tables" { "CONFIG_NF_TABLES, CONFIG_NFT_CT and CONFIG_NFT_NAT" } else { "CONFIG_NF_CONNTRACK and CONFIG_NFT_CT" },
                if feature == "nf_tables" { "nf_tables" } else { "nf_conntrack" })),
        Finding::OldKernel { release } => (
            "old-kernel",
            format!("kernel {release} is older than 5.18"),
            "it does not keep protocol tags on addresses (IFA_PROTO), so eniroute cannot tell its addresses from the host's".into(),
            "run a kernel >= 5.18".into()),
        Finding::NoWatch { managers } => (
            "no-watch",
            format!("{} can remove addresses, and no `eniroute watch` serves this namespace (looked for its process in /proc)", managers.join(", ")),
            "without a watch daemon nothing puts eniroute's addresses and routes back after the manager acts".into(),
            format!("systemctl enable --now eniroute-watch.service; or the hooks {NM_HOOK} / {IFUP_HOOK} that run `eniroute apply --lock-timeout 30s` on up events")),
    }
}

fn skipped_text(s: &Skipped) -> String {
    match s {
        Skipped::NoConfig { path } => format!("{path} not found: only the host-wide checks ran (no ENIs to look at)"),
        Skipped::NoContainers => "nf_tables, conntrack and marks on containers.mark_mask: no [containers] section; nothing to check".into(),
        Skipped::Nftables { error } => format!("{error} (nfnetlink wants CAP_NET_ADMIN, even to read): marks on containers.mark_mask were checked in ip rules only"),
        Skipped::KernelFeature { feature, looked } => format!("whether the kernel has {feature} could not be told ({looked})"),
        Skipped::Kernel { error } => format!("the kernel's rules and sysctls could not be read: {error}"),
        Skipped::EniNotFound { eni } => format!("ENI {eni} is not on this host: its checks did not run"),
    }
}

/// `doctor` output.
pub fn doctor(out: &Out, r: &Report) {
    if out.format == Format::Json {
        let findings: Vec<_> = r.findings.iter().map(|f| {
            let (id, saw, why, fix) = words(f);
            json!({ "id": id, "breaks_routing": f.breaks(), "saw": saw, "why": why, "fix": fix, "data": f })
        }).collect();
        let skipped: Vec<_> = r
            .skipped
            .iter()
            .map(|s| json!({ "what": skipped_text(s), "data": s }))
            .collect();
        return print_json_ok(
            r.clean(),
            &json!({ "clean": r.clean(), "findings": findings, "skipped": skipped }),
        );
    }
    for f in &r.findings {
        let (id, saw, why, fix) = words(f);
        let kind = if f.breaks() { "BREAKS" } else { "risk" };
        out.info(&format!(
            "{kind} [{id}] {saw}\n    why: {why}\n    fix: {fix}"
        ));
    }
    for s in &r.skipped {
        out.detail(&format!("skipped: {}", skipped_text(s)));
    }
    let breaking = r.findings.iter().filter(|f| f.breaks()).count();
    out.info(&match r.findings.len() {
        0 => "doctor: nothing on this host fights eniroute.".to_string(),
        n => format!("doctor: {n} finding(s), {breaking} that break routing."),
    });
}

/// What `apply` prints first: one line per finding that will break routing.
pub fn doctor_warnings(out: &Out, r: &Report) {
    for f in r.findings.iter().filter(|f| f.breaks()) {
        let (id, saw, _, _) = words(f);
        out.warn(&format!("{saw} [{id}; see `eniroute doctor`]"));
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// One of each finding.
    fn every_finding() -> Vec<Finding> {
        let p = || PathBuf::from("/etc/x");
        let (eni, ifname) = (String::from("eth1"), String::from("eth1"));
        vec![
            Finding::NetworkdForeign {
                seen: "running (pid 1)".into(),
                rules: true,
                rules_file: None,
                routes: false,
                routes_file: Some(p()),
            },
            Finding::NetworkdManagesEni {
                eni: eni.clone(),
                ifname: ifname.clone(),
                file: p(),
                keep_configuration: None,
                unchecked: vec!["Kind".into()],
            },
            Finding::NmManagesEni {
                eni: eni.clone(),
                ifname: ifname.clone(),
                source: p(),
            },
            Finding::NmCloudSetup { link: p() },
            Finding::Ec2NetUtils { path: p() },
            Finding::MultiNicUtil { path: p() },
            Finding::IfupdownManagesEni {
                eni: eni.clone(),
                ifname: ifname.clone(),
                file: p(),
            },
            Finding::CloudInitRules {
                rules: vec!["priority 1 lookup 101".into()],
                file: None,
                before_eniroute: true,
            },
            Finding::ForeignRuleInWindow {
                rule: "priority 20050 lookup 7".into(),
                first: 20000,
                last: 20300,
            },
            Finding::ForeignRuleTable {
                rule: "priority 5 lookup 20001".into(),
                table: 20001,
            },
            Finding::StrictRpFilter {
                eni: eni.clone(),
                ifname: ifname.clone(),
            },
            Finding::Ipv6Disabled {
                eni,
                ifname,
                sysctl: "net/ipv6/conf/eth1/disable_ipv6".into(),
            },
            Finding::ForeignMarkRule {
                rule: "priority 100 fwmark 0x400/0x400 lookup 100".into(),
                bits: 0x400,
                mark_mask: 0x3c00,
            },
            Finding::ForeignNftMark {
                chain: "ip other p".into(),
                bits: 0x800,
                mark_mask: 0x3c00,
            },
            Finding::NetfilterMissing {
                feature: "nf_tables".into(),
                seen: "the kernel has no nftables subsystem".into(),
            },
            Finding::NetfilterMissing {
                feature: "conntrack".into(),
                seen: "module nf_conntrack is not loaded".into(),
            },
            Finding::OldKernel {
                release: "5.15.0".into(),
            },
            Finding::NoWatch {
                managers: vec!["NetworkManager (eth1)".into()],
            },
        ]
    }

    #[test]
    fn every_finding_says_what_why_and_fix_under_its_own_id() {
        let all = every_finding();
        let mut ids: Vec<&str> = all.iter().map(|f| words(f).0).collect();
        for f in &all {
            let (id, saw, why, fix) = words(f);
            assert!(
                !saw.is_empty() && !why.is_empty() && !fix.is_empty(),
                "{id}"
            );
            assert!(
                !saw.contains('\n') && !fix.contains('\n'),
                "{id}: one line each"
            );
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), all.len(), "ids are unique");
        // the fix for networkd names the shipped drop-in
        assert!(words(&all[0]).3.contains(NETWORKD_DROPIN));
    }
}
