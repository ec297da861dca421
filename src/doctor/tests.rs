//! doctor against fixture trees: the precedence of systemd's directories and drop-ins
//! (networkd.conf(5), systemd.syntax(7): "the main configuration file is loaded from one of the
//! listed directories in order of priority, only the first file found is used"; drop-ins "are
//! sorted by their filename in lexicographic order, regardless of in which of the
//! subdirectories they reside"; a same-named file in a higher-priority directory replaces it,
//! a symlink to /dev/null masks it), .network [Match] (systemd.network(5)), NetworkManager's
//! device specs (NetworkManager.conf(5)), and each finding.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use super::host::{self, HostFacts};
use super::networkd::{self, LinkId};
use super::*;
use crate::model::nft::ForeignMark;
use crate::model::{Family, HostLink};

fn put(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

fn tree() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

const NO: &str = "[Network]\nManageForeignRoutingPolicyRules=no\nManageForeignRoutes=no\n";

#[test]
fn ini_dialect_comments_continuations_sections() {
    let s = ini::parse(
        "# c\nKey=outside\n[A]\n x = 1 \n; c\nL=a \\\n# skipped\n b\n[B]\nK=\n",
        Path::new("f"),
    );
    let kv: Vec<_> = s
        .iter()
        .map(|s| (s.section.as_str(), s.key.as_str(), s.value.as_str()))
        .collect();
    assert_eq!(kv, [("A", "x", "1"), ("A", "L", "a  b"), ("B", "K", "")]);
    assert_eq!(ini::boolean("On"), Some(true));
    assert_eq!(ini::boolean("0"), Some(false));
    assert_eq!(ini::boolean("maybe"), None);
}

#[test]
fn networkd_defaults_to_managing_foreign_state() {
    let t = tree();
    let c = networkd::conf(t.path());
    assert!(c.foreign_rules.on && c.foreign_routes.on);
    assert_eq!(c.foreign_rules.file, None);
}

#[test]
fn networkd_main_file_first_found_only() {
    let t = tree();
    // the vendor file says no, but /etc has a main file of its own: only that one is read
    put(t.path(), "usr/lib/systemd/networkd.conf", NO);
    put(
        t.path(),
        "etc/systemd/networkd.conf",
        "[Network]\n#ManageForeignRoutes=no\n",
    );
    assert!(networkd::conf(t.path()).foreign_rules.on);
    fs::remove_file(t.path().join("etc/systemd/networkd.conf")).unwrap();
    let c = networkd::conf(t.path());
    assert!(!c.foreign_rules.on && !c.foreign_routes.on);
    assert!(c
        .foreign_rules
        .file
        .unwrap()
        .ends_with("usr/lib/systemd/networkd.conf"));
}

#[test]
fn networkd_dropins_sort_by_name_across_directories() {
    let t = tree();
    put(
        t.path(),
        "etc/systemd/networkd.conf",
        "[Network]\nManageForeignRoutes=no\n",
    );
    put(
        t.path(),
        "usr/lib/systemd/networkd.conf.d/80-eniroute.conf",
        NO,
    );
    let c = networkd::conf(t.path());
    assert!(!c.foreign_rules.on && !c.foreign_routes.on);
    // a later name wins whatever its directory
    put(
        t.path(),
        "run/systemd/networkd.conf.d/90-admin.conf",
        "[Network]\nManageForeignRoutingPolicyRules=yes\n",
    );
    let c = networkd::conf(t.path());
    assert!(c.foreign_rules.on && !c.foreign_routes.on);
    assert!(c.foreign_rules.file.unwrap().ends_with("90-admin.conf"));
    // an earlier name loses even in /etc
    fs::remove_file(t.path().join("run/systemd/networkd.conf.d/90-admin.conf")).unwrap();
    put(
        t.path(),
        "etc/systemd/networkd.conf.d/10-early.conf",
        "[Network]\nManageForeignRoutingPolicyRules=yes\n",
    );
    assert!(!networkd::conf(t.path()).foreign_rules.on);
}

#[test]
fn networkd_same_name_masking_empty_and_invalid_values() {
    let t = tree();
    put(
        t.path(),
        "usr/lib/systemd/networkd.conf.d/80-eniroute.conf",
        NO,
    );
    // the same name in /etc replaces the vendor file
    put(
        t.path(),
        "etc/systemd/networkd.conf.d/80-eniroute.conf",
        "[Network]\nManageForeignRoutes=no\n",
    );
    let c = networkd::conf(t.path());
    assert!(c.foreign_rules.on && !c.foreign_routes.on);
    // a symlink to /dev/null masks it: back to the default
    fs::remove_file(
        t.path()
            .join("etc/systemd/networkd.conf.d/80-eniroute.conf"),
    )
    .unwrap();
    symlink(
        "/dev/null",
        t.path()
            .join("etc/systemd/networkd.conf.d/80-eniroute.conf"),
    )
    .unwrap();
    assert!(networkd::conf(t.path()).foreign_routes.on);
    // an empty assignment resets; an invalid one is ignored
    fs::remove_file(
        t.path()
            .join("etc/systemd/networkd.conf.d/80-eniroute.conf"),
    )
    .unwrap();
    put(t.path(), "etc/systemd/networkd.conf.d/80-eniroute.conf", "[Network]\nManageForeignRoutes=no\nManageForeignRoutes=\nManageForeignRoutingPolicyRules=no\nManageForeignRoutingPolicyRules=perhaps\n");
    let c = networkd::conf(t.path());
    assert!(c.foreign_routes.on && !c.foreign_rules.on);
    // a key in another section is not networkd's
    put(
        t.path(),
        "etc/systemd/networkd.conf.d/80-eniroute.conf",
        "[DHCPv4]\nManageForeignRoutes=no\n",
    );
    assert!(networkd::conf(t.path()).foreign_routes.on);
}

const MAC: &str = "00:16:3e:7e:00:01";

fn link(name: &str) -> LinkId<'_> {
    LinkId {
        name,
        mac: MAC.parse().ok(),
        kind: Some("ether".into()),
        driver: Some("virtio_net".into()),
    }
}

#[test]
fn network_files_match_by_mac_and_name_globs() {
    let t = tree();
    assert_eq!(networkd::network_for(t.path(), &link("eth1")), None);
    put(
        t.path(),
        "usr/lib/systemd/network/10-other.network",
        "[Match]\nName=en*\n",
    );
    put(
        t.path(),
        "usr/lib/systemd/network/20-mac.network",
        "[Match]\nMACAddress=00-16-3E-7E-00-01 00:16:3e:00:00:09\n",
    );
    let m = networkd::network_for(t.path(), &link("eth1")).unwrap();
    assert!(m.file.ends_with("20-mac.network"));
    // an earlier file name is tried first; `!` inverts the list
    put(
        t.path(),
        "run/systemd/network/05-all-but-lo.network",
        "[Match]\nName=!lo\nType=ether\n[Network]\nKeepConfiguration=static\n",
    );
    let m = networkd::network_for(t.path(), &link("eth1")).unwrap();
    assert!(m.file.ends_with("05-all-but-lo.network"));
    assert_eq!(m.keep_configuration.as_deref(), Some("static"));
    assert!(
        m.unchecked.is_empty(),
        "Type=ether is checked against the link"
    );
    assert!(networkd::network_for(t.path(), &link("lo"))
        .is_some_and(|m| m.file.ends_with("20-mac.network")));
}

#[test]
fn network_file_same_name_in_etc_and_dropins() {
    let t = tree();
    put(
        t.path(),
        "usr/lib/systemd/network/50-eni.network",
        "[Match]\nName=eth*\n",
    );
    // /etc's file of the same name replaces the vendor's: it matches something else
    put(
        t.path(),
        "etc/systemd/network/50-eni.network",
        "[Match]\nName=wl*\n",
    );
    assert_eq!(networkd::network_for(t.path(), &link("eth1")), None);
    fs::remove_file(t.path().join("etc/systemd/network/50-eni.network")).unwrap();
    // a drop-in makes the link unmanaged
    put(
        t.path(),
        "etc/systemd/network/50-eni.network.d/eniroute.conf",
        "[Link]\nUnmanaged=yes\n",
    );
    assert!(
        networkd::network_for(t.path(), &link("eth1"))
            .unwrap()
            .unmanaged
    );
    // a masked .network is not applied
    fs::remove_file(t.path().join("usr/lib/systemd/network/50-eni.network")).unwrap();
    symlink(
        "/dev/null",
        t.path().join("usr/lib/systemd/network/50-eni.network"),
    )
    .unwrap();
    assert_eq!(networkd::network_for(t.path(), &link("eth1")), None);
}

#[test]
fn networkmanager_runtime_state_udev_and_conf() {
    let t = tree();
    let v = nm::view(t.path(), &link("eth1"), 3);
    assert!(
        v.managed,
        "NetworkManager manages ethernet devices by default"
    );
    put(
        t.path(),
        "etc/NetworkManager/conf.d/eni.conf",
        "[keyfile]\nunmanaged-devices=interface-name:eth*;mac:00:16:3e:00:00:09\n",
    );
    assert!(!nm::view(t.path(), &link("eth1"), 3).managed);
    put(
        t.path(),
        "etc/NetworkManager/conf.d/eni.conf",
        "[keyfile]\nunmanaged-devices=*,except:interface-name:eth1\n",
    );
    assert!(nm::view(t.path(), &link("eth1"), 3).managed);
    assert!(!nm::view(t.path(), &link("eth2"), 4).managed);
    put(
        t.path(),
        "etc/NetworkManager/conf.d/eni.conf",
        &format!("[device-eni]\nmatch-device=mac:{MAC}\nmanaged=0\n"),
    );
    assert!(!nm::view(t.path(), &link("eth1"), 3).managed);
    fs::remove_file(t.path().join("etc/NetworkManager/conf.d/eni.conf")).unwrap();
    put(t.path(), "run/udev/data/n3", "I:1\nE:NM_UNMANAGED=1\n");
    assert!(!nm::view(t.path(), &link("eth1"), 3).managed);
    // the configuration is stronger than udev's hint; the first matching [device-*] wins
    put(t.path(), "etc/NetworkManager/conf.d/eni.conf", "[device-a]\nmatch-device=interface-name:eth*\nmanaged=1\n[device-b]\nmatch-device=interface-name:eth1\nmanaged=0\n");
    assert!(nm::view(t.path(), &link("eth1"), 3).managed);
    fs::remove_file(t.path().join("etc/NetworkManager/conf.d/eni.conf")).unwrap();
    // NetworkManager's own runtime record wins over everything
    put(
        t.path(),
        "run/NetworkManager/devices/3",
        "[device]\nmanaged=true\n",
    );
    let v = nm::view(t.path(), &link("eth1"), 3);
    assert!(v.managed && v.source.ends_with("run/NetworkManager/devices/3"));
}

// ---------------------------------------------------------------------------------------------
// findings

const CONFIG: &str = r#"
[routing]
rp_filter = "keep"
[[eni]]
name = "eth1"
mac = "00:16:3e:7e:00:01"
cidr = "192.168.77.0/24"
gateway = "192.168.77.253"
private_ips = ["192.168.77.21"]
ipv6 = ["2001:db8:77::21"]
ipv6_cidr = "2001:db8:77::/64"
ipv6_gateway = "fe80::1"
"#;

fn config() -> Config {
    crate::config::load_str(CONFIG, "test.toml").unwrap().config
}

fn kernel() -> KernelFacts {
    KernelFacts {
        links: vec![HostLink {
            name: "eth1".into(),
            index: 3,
            mac: MAC.parse().ok(),
            up: true,
        }],
        foreign_rules: Vec::new(),
        nft: None,
        sysctls: vec![
            ("net/ipv4/conf/all/rp_filter".into(), "0".into()),
            ("net/ipv4/conf/eth1/rp_filter".into(), "2".into()),
            ("net/ipv6/conf/eth1/disable_ipv6".into(), "0".into()),
        ],
    }
}

fn findings(root: &Path, cfg: &Config, k: KernelFacts) -> Vec<Finding> {
    let f = Facts {
        cfg: Some(cfg),
        netns: None,
        target_ns: None,
        host: host::gather(root),
        kernel: Some(k),
    };
    check(&f).findings
}

fn kinds(f: &[Finding]) -> Vec<&'static str> {
    f.iter()
        .map(|f| match f {
            Finding::NetworkdForeign { .. } => "networkd-foreign",
            Finding::NetworkdManagesEni { .. } => "networkd-manages",
            Finding::NmManagesEni { .. } => "nm-manages",
            Finding::NmCloudSetup { .. } => "nm-cloud-setup",
            Finding::Ec2NetUtils { .. } => "ec2-net-utils",
            Finding::MultiNicUtil { .. } => "multi-nic-util",
            Finding::IfupdownManagesEni { .. } => "ifupdown",
            Finding::CloudInitRules { .. } => "cloud-init",
            Finding::ForeignRuleInWindow { .. } => "window",
            Finding::ForeignRuleTable { .. } => "table",
            Finding::ForeignFwmarkRule { .. } => "fwmark",
            Finding::StrictRpFilter { .. } => "rp-filter",
            Finding::Ipv6Disabled { .. } => "ipv6",
            Finding::ForeignMarkRule { .. } => "mark-rule",
            Finding::ForeignNftMark { .. } => "nft-mark",
            Finding::NetfilterMissing { feature, .. } if feature == "nf_tables" => "no-nf-tables",
            Finding::NetfilterMissing { .. } => "no-conntrack",
            Finding::OldKernel { .. } => "old-kernel",
            Finding::NoWatch { .. } => "no-watch",
        })
        .collect()
}

fn process(root: &Path, pid: u32, comm: &str, args: &[&str]) {
    put(root, &format!("proc/{pid}/comm"), &format!("{comm}\n"));
    put(
        root,
        &format!("proc/{pid}/cmdline"),
        &args.iter().map(|a| format!("{a}\0")).collect::<String>(),
    );
}

/// The findings against the test config and kernel, by kind.
fn expect(root: &Path, want: &[&str]) {
    assert_eq!(kinds(&findings(root, &config(), kernel())), want);
}

fn networkd_runs(root: &Path) {
    process(
        root,
        42,
        "systemd-network",
        &["/usr/lib/systemd/systemd-networkd"],
    );
}

#[test]
fn a_clean_host_has_no_findings() {
    let t = tree();
    put(t.path(), "proc/sys/kernel/osrelease", "6.12.0-1-amd64\n");
    assert_eq!(findings(t.path(), &config(), kernel()), []);
}

#[test]
fn networkd_running_with_defaults_then_with_the_shipped_dropin() {
    let t = tree();
    networkd_runs(t.path());
    let f = findings(t.path(), &config(), kernel());
    assert_eq!(kinds(&f), ["networkd-foreign"]);
    assert!(f[0].breaks());
    let shipped = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/configs/networkd/80-eniroute.conf"
    ))
    .unwrap();
    put(
        t.path(),
        "usr/lib/systemd/networkd.conf.d/80-eniroute.conf",
        &shipped,
    );
    assert_eq!(findings(t.path(), &config(), kernel()), []);
    // enabled but not running counts too
    fs::remove_dir_all(t.path().join("proc/42")).unwrap();
    fs::remove_file(
        t.path()
            .join("usr/lib/systemd/networkd.conf.d/80-eniroute.conf"),
    )
    .unwrap();
    fs::create_dir_all(t.path().join("etc/systemd/system/multi-user.target.wants")).unwrap();
    symlink(
        "/lib/systemd/system/systemd-networkd.service",
        t.path()
            .join("etc/systemd/system/multi-user.target.wants/systemd-networkd.service"),
    )
    .unwrap();
    expect(t.path(), &["networkd-foreign"]);
    // with /proc hiding other processes: networkd's runtime state
    let t = tree();
    put(t.path(), "run/systemd/netif/state", "OPER_STATE=routable\n");
    expect(t.path(), &["networkd-foreign"]);
}

#[test]
fn a_network_file_on_an_eni_without_watch_and_with_watch() {
    let t = tree();
    networkd_runs(t.path());
    put(t.path(), "etc/systemd/networkd.conf.d/80-eniroute.conf", NO);
    put(
        t.path(),
        "etc/systemd/network/10-eth1.network",
        &format!("[Match]\nMACAddress={MAC}\n[Network]\nDHCP=yes\n"),
    );
    let f = findings(t.path(), &config(), kernel());
    assert_eq!(kinds(&f), ["networkd-manages", "no-watch"]);
    assert!(!f[0].breaks() && f[1].breaks());
    // a watch daemon for another namespace does not count; one for this one does
    process(
        t.path(),
        77,
        "eniroute",
        &["/usr/bin/eniroute", "--netns", "other", "watch"],
    );
    expect(t.path(), &["networkd-manages", "no-watch"]);
    process(
        t.path(),
        78,
        "eniroute",
        &["/usr/bin/eniroute", "watch", "--resync", "5m"],
    );
    expect(t.path(), &["networkd-manages"]);
    // KeepConfiguration=static keeps eniroute's state through a reconfigure: no watch needed
    fs::remove_dir_all(t.path().join("proc/78")).unwrap();
    expect(t.path(), &["networkd-manages", "no-watch"]);
    put(
        t.path(),
        "etc/systemd/network/10-eth1.network.d/keep.conf",
        "[Network]\nKeepConfiguration=static\n",
    );
    expect(t.path(), &["networkd-manages"]);
}

#[test]
fn networkmanager_and_its_cloud_setup() {
    let t = tree();
    process(
        t.path(),
        50,
        "NetworkManager",
        &["/usr/sbin/NetworkManager", "--no-daemon"],
    );
    expect(t.path(), &["nm-manages", "no-watch"]);
    put(
        t.path(),
        "etc/NetworkManager/conf.d/eniroute.conf",
        "[keyfile]\nunmanaged-devices=interface-name:eth1\n",
    );
    assert_eq!(findings(t.path(), &config(), kernel()), []);
    // managed, but the shipped dispatcher hook re-applies after NetworkManager's up events
    fs::remove_file(t.path().join("etc/NetworkManager/conf.d/eniroute.conf")).unwrap();
    put(
        t.path(),
        "etc/NetworkManager/dispatcher.d/90-eniroute",
        "#!/bin/sh\n",
    );
    expect(t.path(), &["nm-manages"]);
    put(
        t.path(),
        "etc/NetworkManager/conf.d/eniroute.conf",
        "[keyfile]\nunmanaged-devices=interface-name:eth1\n",
    );
    fs::create_dir_all(t.path().join("etc/systemd/system/timers.target.wants")).unwrap();
    symlink(
        "/usr/lib/systemd/system/nm-cloud-setup.timer",
        t.path()
            .join("etc/systemd/system/timers.target.wants/nm-cloud-setup.timer"),
    )
    .unwrap();
    expect(t.path(), &["nm-cloud-setup"]);
}

#[test]
fn cloud_helpers_and_ifupdown() {
    let t = tree();
    put(t.path(), "usr/bin/setup-policy-routes", "#!/bin/sh\n");
    put(t.path(), "etc/udev/rules.d/99-eni.rules", "\n");
    expect(t.path(), &["ec2-net-utils", "multi-nic-util"]);
    let t = tree();
    put(
        t.path(),
        "etc/network/interfaces",
        "auto lo\niface lo inet loopback\nsource /etc/network/interfaces.d/*\n",
    );
    put(
        t.path(),
        "etc/network/interfaces.d/eth1",
        "allow-hotplug eth1\niface eth1 inet dhcp\n",
    );
    // the file alone is not ifupdown
    assert_eq!(findings(t.path(), &config(), kernel()), []);
    put(t.path(), "sbin/ifup", "");
    expect(t.path(), &["ifupdown", "no-watch"]);
}

fn rule(priority: u32, from: Option<&str>, table: u32) -> Rule {
    Rule {
        family: Family::V4,
        priority,
        from: from.map(|f| f.parse().unwrap()),
        table,
        suppress_prefixlength: None,
        fwmark: None,
    }
}

#[test]
fn foreign_rules_cloud_init_window_and_tables() {
    let t = tree();
    let mut k = kernel();
    k.foreign_rules = vec![
        rule(0, None, 255),
        rule(32766, None, 254),
        rule(10001, Some("192.168.77.21/32"), 101),
        rule(20150, None, 7),
        rule(5000, Some("10.0.0.0/8"), 20001),
        rule(5001, Some("10.9.0.0/16"), 150),
    ];
    let f = findings(t.path(), &config(), k);
    assert_eq!(kinds(&f), ["cloud-init", "window", "table"]);
    assert!(
        f[0].breaks(),
        "priority 10001 comes before eniroute's 20000"
    );
    let Finding::CloudInitRules { rules, .. } = &f[0] else {
        unreachable!()
    };
    assert_eq!(rules, &["priority 10001 from 192.168.77.21 lookup 101"]);
    let t = tree();
    put(t.path(), "etc/netplan/50-cloud-init.yaml", "network:\n  ethernets:\n    eth1:\n      routing-policy:\n      - from: 192.168.77.21\n        table: 101\n");
    expect(t.path(), &["cloud-init"]);
}

#[test]
fn sysctls_and_kernel_release() {
    let t = tree();
    let mut k = kernel();
    k.sysctls = vec![
        ("net/ipv4/conf/all/rp_filter".into(), "1".into()),
        ("net/ipv4/conf/eth1/rp_filter".into(), "0".into()),
        ("net/ipv6/conf/eth1/disable_ipv6".into(), "1".into()),
    ];
    put(t.path(), "proc/sys/kernel/osrelease", "5.15.0-91-generic\n");
    assert_eq!(
        kinds(&findings(t.path(), &config(), k.clone())),
        ["rp-filter", "ipv6", "old-kernel"]
    );
    // rp_filter only matters with "keep" (otherwise apply sets it); no IPv6 sysctl = no IPv6
    let mut cfg = config();
    cfg.routing.rp_filter = crate::model::RpFilter::Loose;
    k.sysctls.truncate(1);
    put(t.path(), "proc/sys/kernel/osrelease", "5.18.0\n");
    assert_eq!(kinds(&findings(t.path(), &cfg, k)), ["ipv6"]);
}

#[test]
fn without_a_config_only_host_wide_checks_run() {
    let t = tree();
    networkd_runs(t.path());
    let f = Facts {
        cfg: None,
        netns: None,
        target_ns: None,
        host: host::gather(t.path()),
        kernel: Some(kernel()),
    };
    assert_eq!(kinds(&check(&f).findings), ["networkd-foreign"]);
}

#[test]
fn for_another_namespace_only_a_manager_running_there_counts() {
    let t = tree();
    networkd_runs(t.path());
    let (here, elsewhere) = ((7, 100), (7, 200));
    let facts = |netns: Option<&'static str>, manager_ns| {
        let mut host = host::gather(t.path());
        host.processes[0].net_ns = manager_ns;
        Facts {
            cfg: None,
            netns,
            target_ns: Some(here),
            host,
            kernel: Some(kernel()),
        }
    };
    let seen = |f: Facts| kinds(&check(&f).findings);
    let none = Vec::<&str>::new();
    assert_eq!(seen(facts(Some("blue"), Some(elsewhere))), none);
    assert_eq!(seen(facts(Some("blue"), Some(here))), ["networkd-foreign"]);
    // A namespace that cannot be told counts (no privilege to read /proc/PID/ns).
    assert_eq!(seen(facts(Some("blue"), None)), ["networkd-foreign"]);
    // A networkd in a container's namespace manages none of the host's links.
    assert_eq!(seen(facts(None, Some(elsewhere))), none);
    // Enabled, it starts in the host's namespace: that counts for the host only.
    put(
        t.path(),
        "etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
        "",
    );
    assert_eq!(seen(facts(None, Some(elsewhere))), ["networkd-foreign"]);
    assert_eq!(seen(facts(Some("blue"), Some(elsewhere))), none);
}

#[test]
fn host_facts_read_processes_and_units() {
    let t = tree();
    process(t.path(), 9, "NetworkManager", &["/usr/sbin/NetworkManager"]);
    put(t.path(), "proc/self/comm", "x\n");
    let h: HostFacts = host::gather(t.path());
    assert_eq!(h.processes.len(), 1);
    assert_eq!(h.process_in("NetworkManager", None).map(|p| p.pid), Some(9));
    assert_eq!(h.kernel_release, None);
}

#[test]
fn network_files_for_other_kinds_of_links_do_not_match() {
    let t = tree();
    // what systemd ships in /usr/lib/systemd/network (80-wifi-adhoc.network, 80-container-ve.network)
    put(
        t.path(),
        "usr/lib/systemd/network/80-wifi-adhoc.network",
        "[Match]\nType=wlan\nWLANInterfaceType=ad-hoc\n",
    );
    put(
        t.path(),
        "usr/lib/systemd/network/80-container-ve.network",
        "[Match]\nName=ve-*\nDriver=veth\n",
    );
    put(
        t.path(),
        "usr/lib/systemd/network/90-virtio.network",
        "[Match]\nDriver=virtio*\nVirtualization=vm\n",
    );
    let m = networkd::network_for(t.path(), &link("eth1")).unwrap();
    assert!(m.file.ends_with("90-virtio.network"));
    assert_eq!(m.unchecked, ["Virtualization"]);
    // the link's type and driver come from sysfs
    put(
        t.path(),
        "sys/class/net/eth1/uevent",
        "INTERFACE=eth1\nIFINDEX=3\n",
    );
    put(t.path(), "sys/class/net/eth1/type", "1\n");
    fs::create_dir_all(t.path().join("sys/bus/virtio/drivers/virtio_net")).unwrap();
    fs::create_dir_all(t.path().join("sys/class/net/eth1/device")).unwrap();
    symlink(
        "../../../../bus/virtio/drivers/virtio_net",
        t.path().join("sys/class/net/eth1/device/driver"),
    )
    .unwrap();
    let l = LinkId::from_sysfs(t.path(), "eth1", None);
    assert_eq!(
        (l.kind.as_deref(), l.driver.as_deref()),
        (Some("ether"), Some("virtio_net"))
    );
    put(t.path(), "sys/class/net/wl0/uevent", "DEVTYPE=wlan\n");
    assert_eq!(
        LinkId::from_sysfs(t.path(), "wl0", None).kind.as_deref(),
        Some("wlan")
    );
}

fn marked(priority: u32, table: u32, mark: u32, mask: u32) -> Rule {
    Rule {
        fwmark: Some(crate::model::FwMark { mark, mask }),
        ..rule(priority, None, table)
    }
}

#[test]
fn foreign_fwmark_rules_before_the_source_layer() {
    let t = tree();
    let mut k = kernel();
    k.foreign_rules = vec![
        marked(100, 7, 0x4000, 0xc000),
        // after eniroute's source layer (20200): eniroute's rules win
        marked(20500, 8, 0x1, u32::MAX),
    ];
    let f = findings(t.path(), &config(), k);
    assert_eq!(kinds(&f), ["fwmark"]);
    assert!(!f[0].breaks());
    let Finding::ForeignFwmarkRule { mark, mask, .. } = &f[0] else {
        unreachable!()
    };
    assert_eq!((*mark, *mask), (0x4000, 0xc000));
}

// ---------------------------------------------------------------------------------------------
// [containers]

/// The test config with [containers] (`extra` inside the section).
fn containers_config(extra: &str) -> Config {
    let text = format!("{CONFIG}\n[containers]\n{extra}\n");
    crate::config::load_str(&text, "test.toml").unwrap().config
}

/// A fixture tree whose kernel lists nf_tables and nf_conntrack as loadable modules.
fn netfilter_tree() -> tempfile::TempDir {
    let t = tree();
    put(t.path(), "proc/sys/kernel/osrelease", "6.12.0-1-amd64\n");
    put(
        t.path(),
        "lib/modules/6.12.0-1-amd64/modules.dep",
        "kernel/net/netfilter/nf_tables.ko.xz: kernel/net/netfilter/nfnetlink.ko.xz\n\
         kernel/net/netfilter/nf_conntrack.ko.xz: kernel/net/netfilter/nf_defrag_ipv4.ko.xz\n",
    );
    t
}

fn report(root: &Path, cfg: &Config, k: KernelFacts) -> Report {
    check(&Facts {
        cfg: Some(cfg),
        netns: None,
        target_ns: None,
        host: host::gather(root),
        kernel: Some(k),
    })
}

fn nft(marks: &[(&str, u32)]) -> Option<NftFacts> {
    Some(NftFacts::Marks(
        marks
            .iter()
            .map(|(chain, bits)| ForeignMark {
                chain: chain.to_string(),
                bits: *bits,
            })
            .collect(),
    ))
}

#[test]
fn without_containers_the_containers_checks_are_skipped_truthfully() {
    let t = netfilter_tree();
    let mut k = kernel();
    // a rule and a chain on the default mask's bits: no [containers], no mark finding
    k.foreign_rules = vec![marked(30000, 100, 0x400, 0x400)];
    k.nft = nft(&[("ip other p", 0x800)]);
    let r = report(t.path(), &config(), k);
    assert_eq!(r.findings, []);
    assert_eq!(r.skipped, [Skipped::NoContainers]);
    let with = report(t.path(), &containers_config(""), kernel());
    assert!(!with.skipped.contains(&Skipped::NoContainers));
}

#[test]
fn foreign_fwmark_rules_on_the_mark_mask_and_its_edges() {
    let t = netfilter_tree();
    let cfg = containers_config(""); // default mask 0x3c00 (bits 10-13)
    let mut k = kernel();
    k.nft = nft(&[]);
    k.foreign_rules = vec![
        // inside the mask: mark and mask
        marked(30000, 100, 0x400, 0x400),
        // the lowest and highest bit of the mask, by the mask alone
        marked(30001, 101, 0, 0x400),
        marked(30002, 102, 0, 0x2000),
        // `fwmark 0x1` (no mask: all ones) reads every bit, the mask's too
        marked(30003, 103, 0x1, u32::MAX),
        // just outside: bit 9 and bit 14 (kube-proxy's 0x4000), mask 0 (matches everything)
        marked(30004, 104, 0x200, 0x200),
        marked(30005, 105, 0x4000, 0x4000),
        marked(30006, 106, 0, 0),
        // no mark at all
        rule(30007, None, 107),
    ];
    let r = report(t.path(), &cfg, k);
    assert_eq!(kinds(&r.findings), ["mark-rule"; 4]);
    assert!(r.findings.iter().all(Finding::breaks));
    let bits: Vec<u32> = r
        .findings
        .iter()
        .map(|f| match f {
            Finding::ForeignMarkRule {
                bits, mark_mask, ..
            } => {
                assert_eq!(*mark_mask, 0x3c00);
                *bits
            }
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(bits, [0x400, 0x400, 0x2000, 0x3c00]);
    // another mask moves the edge: 0x4000 overlaps now, 0x400 no longer
    let cfg = containers_config("mark_mask = 0xc000");
    let mut k = kernel();
    k.nft = nft(&[]);
    k.foreign_rules = vec![
        marked(30000, 100, 0x400, 0x400),
        marked(30005, 105, 0x4000, 0x4000),
    ];
    assert_eq!(kinds(&report(t.path(), &cfg, k).findings), ["mark-rule"]);
}

#[test]
fn a_mark_rule_before_the_source_layer_is_reported_once_as_on_the_mask() {
    let t = netfilter_tree();
    let mut k = kernel();
    k.nft = nft(&[]);
    k.foreign_rules = vec![marked(100, 7, 0x400, 0x400), marked(101, 7, 0x4000, 0xc000)];
    let f = report(t.path(), &containers_config(""), k).findings;
    // the first on the mask (breaking), the second clear of it (the risk of any mark rule)
    assert_eq!(kinds(&f), ["fwmark", "mark-rule"]);
}

#[test]
fn foreign_nft_marks_on_the_mark_mask_and_its_edges() {
    let t = netfilter_tree();
    let mut k = kernel();
    k.nft = nft(&[
        ("ip other p", 0x800),
        ("ip kube-proxy mark-for-masquerade", 0x4000),
        ("inet calico x", 0xffff_0000),
        ("ip6 mangle all", u32::MAX),
        ("ip low bit9", 0x200),
    ]);
    let f = report(t.path(), &containers_config(""), k).findings;
    assert_eq!(kinds(&f), ["nft-mark", "nft-mark"]);
    assert!(f.iter().all(Finding::breaks));
    let Finding::ForeignNftMark { chain, bits, .. } = &f[1] else {
        unreachable!()
    };
    assert_eq!((chain.as_str(), *bits), ("ip6 mangle all", 0x3c00));
}

#[test]
fn nf_tables_absent_unreadable_or_told_by_the_module_lists() {
    let t = netfilter_tree();
    let cfg = containers_config("");
    // the kernel answered as one without nf_tables
    let mut k = kernel();
    k.nft = Some(NftFacts::Absent);
    let r = report(t.path(), &cfg, k.clone());
    assert_eq!(kinds(&r.findings), ["no-nf-tables"]);
    assert!(r.findings[0].breaks());
    // unreadable (no CAP_NET_ADMIN): the module list says it is there, the check is skipped
    k.nft = Some(NftFacts::Unreadable("EPERM".into()));
    let r = report(t.path(), &cfg, k.clone());
    assert_eq!(r.findings, []);
    assert!(matches!(r.skipped[..], [Skipped::Nftables { .. }]));
    // unreadable, and the module list lacks it: missing
    put(
        t.path(),
        "lib/modules/6.12.0-1-amd64/modules.dep",
        "kernel/net/netfilter/nf_conntrack.ko.zst:\n",
    );
    assert_eq!(
        kinds(&report(t.path(), &cfg, k.clone()).findings),
        ["no-nf-tables"]
    );
    // built in counts; and so does sys/module (loaded)
    put(
        t.path(),
        "lib/modules/6.12.0-1-amd64/modules.builtin",
        "kernel/net/netfilter/nf_tables.ko\n",
    );
    assert_eq!(report(t.path(), &cfg, k.clone()).findings, []);
    fs::remove_file(t.path().join("lib/modules/6.12.0-1-amd64/modules.builtin")).unwrap();
    fs::create_dir_all(t.path().join("sys/module/nf_tables")).unwrap();
    assert_eq!(report(t.path(), &cfg, k).findings, []);
}

#[test]
fn conntrack_missing_present_or_unknown() {
    let t = netfilter_tree();
    let cfg = containers_config("");
    let mut k = kernel();
    k.nft = nft(&[]);
    assert_eq!(report(t.path(), &cfg, k.clone()).findings, []);
    // a module list without nf_conntrack: missing
    put(
        t.path(),
        "lib/modules/6.12.0-1-amd64/modules.dep",
        "kernel/net/netfilter/nf_tables.ko:\nkernel/net/netfilter/nf_conntrack_ftp.ko:\n",
    );
    let r = report(t.path(), &cfg, k.clone());
    assert_eq!(kinds(&r.findings), ["no-conntrack"]);
    assert!(r.findings[0].breaks());
    // loaded (or built in with its parameters): sys/module shows it
    fs::create_dir_all(t.path().join("sys/module/nf_conntrack")).unwrap();
    assert_eq!(report(t.path(), &cfg, k.clone()).findings, []);
    // no module list and not in sys/module (a fixture, a kernel without /lib/modules):
    // cannot tell, so skipped rather than a finding
    let bare = tree();
    put(bare.path(), "proc/sys/kernel/osrelease", "6.12.0-1-amd64\n");
    let r = report(bare.path(), &cfg, k);
    assert_eq!(r.findings, []);
    assert!(r
        .skipped
        .iter()
        .any(|s| matches!(s, Skipped::KernelFeature { feature, .. } if feature == "conntrack")));
}

#[test]
fn networkmanager_conf_order_and_shadowing() {
    let t = tree();
    let unmanaged = "[keyfile]\nunmanaged-devices=interface-name:eth1\n";
    let managed = "[keyfile]\nunmanaged-devices=interface-name:none\n";
    // /usr/lib's conf.d is read before NetworkManager.conf, which wins
    put(
        t.path(),
        "usr/lib/NetworkManager/conf.d/90-vendor.conf",
        unmanaged,
    );
    put(t.path(), "etc/NetworkManager/NetworkManager.conf", managed);
    assert!(nm::view(t.path(), &link("eth1"), 3).managed);
    // /etc's conf.d comes after NetworkManager.conf, whatever the names
    put(
        t.path(),
        "etc/NetworkManager/conf.d/00-admin.conf",
        unmanaged,
    );
    assert!(!nm::view(t.path(), &link("eth1"), 3).managed);
    // an empty file in /etc shadows /usr/lib's of the same name
    fs::remove_file(t.path().join("etc/NetworkManager/conf.d/00-admin.conf")).unwrap();
    fs::remove_file(t.path().join("etc/NetworkManager/NetworkManager.conf")).unwrap();
    assert!(!nm::view(t.path(), &link("eth1"), 3).managed);
    put(t.path(), "etc/NetworkManager/conf.d/90-vendor.conf", "");
    assert!(nm::view(t.path(), &link("eth1"), 3).managed);
}
