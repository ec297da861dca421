//! systemd-networkd's configuration as networkd reads it: networkd.conf with its drop-ins
//! (networkd.conf(5)) and the .network files that match a link (systemd.network(5)), with
//! systemd's directory precedence (systemd.syntax(7)). Pure but for reading files below a root.

use std::path::{Path, PathBuf};

use macaddr::MacAddr6;

use super::ini::{self, Setting};

/// Where networkd.conf lives, highest priority first (networkd.conf(5)).
const CONF_DIRS: [&str; 4] = [
    "etc/systemd",
    "run/systemd",
    "usr/local/lib/systemd",
    "usr/lib/systemd",
];

/// Where .network files live, highest priority first (systemd.network(5); /lib for
/// distributions without the merged /usr).
const NETWORK_DIRS: [&str; 5] = [
    "etc/systemd/network",
    "run/systemd/network",
    "usr/local/lib/systemd/network",
    "usr/lib/systemd/network",
    "lib/systemd/network",
];

/// One `Manage*=` setting of networkd.conf's [Network] section in effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manage {
    /// networkd removes foreign objects of this kind.
    pub on: bool,
    /// The file of the assignment in effect; None = the compiled-in default (yes).
    pub file: Option<PathBuf>,
}

/// What networkd.conf says about foreign state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkdConf {
    pub foreign_rules: Manage,
    pub foreign_routes: Manage,
}

/// networkd.conf and its drop-ins under `root`, resolved.
pub fn conf(root: &Path) -> NetworkdConf {
    let settings = ini::load_main_with_dropins(root, &CONF_DIRS, "networkd.conf");
    NetworkdConf {
        foreign_rules: manage(&settings, "ManageForeignRoutingPolicyRules"),
        foreign_routes: manage(&settings, "ManageForeignRoutes"),
    }
}

/// A boolean `[Network]` key: the last valid assignment wins (an invalid one is ignored, as
/// networkd does; an empty one resets to the default, yes).
fn manage(settings: &[Setting], key: &str) -> Manage {
    let mut m = Manage {
        on: true,
        file: None,
    };
    for s in settings
        .iter()
        .filter(|s| s.section == "Network" && s.key == key)
    {
        if s.value.is_empty() {
            m = Manage {
                on: true,
                file: None,
            };
        } else if let Some(b) = ini::boolean(&s.value) {
            m = Manage {
                on: b,
                file: Some(s.file.clone()),
            };
        }
    }
    m
}

/// A link as a [Match] section sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkId<'a> {
    pub name: &'a str,
    pub mac: Option<MacAddr6>,
    /// networkd's link type (`Type=`): udev's DEVTYPE, else "ether"/"loopback"/... from the
    /// ARPHRD type; None when unknown (then Type= is not checked).
    pub kind: Option<String>,
    /// The kernel driver (`Driver=`), when sysfs shows one.
    pub driver: Option<String>,
}

impl LinkId<'_> {
    /// A link's type and driver from sysfs below `root`.
    pub fn from_sysfs<'a>(root: &Path, name: &'a str, mac: Option<MacAddr6>) -> LinkId<'a> {
        let dir = root.join("sys/class/net").join(name);
        let devtype = ini::read_small(&dir.join("uevent")).and_then(|u| {
            u.lines()
                .find_map(|l| l.strip_prefix("DEVTYPE=").map(|v| v.trim().to_string()))
        });
        let arphrd = ini::read_small(&dir.join("type")).map(|t| match t.trim() {
            "1" => "ether".to_string(),
            "772" => "loopback".to_string(),
            "65534" => "none".to_string(),
            other => format!("arphrd-{other}"),
        });
        let driver = std::fs::read_link(dir.join("device/driver"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        LinkId {
            name,
            mac,
            kind: devtype.or(arphrd),
            driver,
        }
    }
}

/// The .network file networkd applies to a link, and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkMatch {
    pub file: PathBuf,
    /// `[Link] Unmanaged=yes`: networkd leaves the link alone.
    pub unmanaged: bool,
    /// `[Network] KeepConfiguration=` in effect, if set.
    pub keep_configuration: Option<String>,
    /// [Match] keys this check cannot evaluate (Driver=, Path=, ...): assumed to match.
    pub unchecked: Vec<String>,
}

/// The first .network file (in file-name order, the order networkd tries them) whose [Match]
/// section matches `link`, with its drop-ins applied.
pub fn network_for(root: &Path, link: &LinkId) -> Option<NetworkMatch> {
    let dirs: Vec<String> = NETWORK_DIRS.iter().map(|d| d.to_string()).collect();
    for file in ini::collect(root, &dirs, ".network") {
        let name = file.file_name()?.to_string_lossy().into_owned();
        let dropin_dirs: Vec<String> = NETWORK_DIRS
            .iter()
            .map(|d| format!("{d}/{name}.d"))
            .collect();
        let mut settings = ini::load_files(std::slice::from_ref(&file));
        settings.extend(ini::load_files(&ini::collect(root, &dropin_dirs, ".conf")));
        if let Some(unchecked) = matches(&settings, link) {
            let unmanaged = ini::last(&settings, "Link", "Unmanaged")
                .and_then(|s| ini::boolean(&s.value))
                .unwrap_or(false);
            let keep =
                ini::last(&settings, "Network", "KeepConfiguration").map(|s| s.value.clone());
            return Some(NetworkMatch {
                file,
                unmanaged,
                keep_configuration: keep,
                unchecked,
            });
        }
    }
    None
}

/// Whether the [Match] section matches the link: Some(keys not evaluated) when it does. An
/// empty [Match] matches every link (networkd warns, but applies it).
fn matches(settings: &[Setting], link: &LinkId) -> Option<Vec<String>> {
    let mut unchecked = Vec::new();
    let mut keys: Vec<&str> = settings
        .iter()
        .filter(|s| s.section == "Match")
        .map(|s| s.key.as_str())
        .collect();
    keys.dedup();
    for key in keys {
        let values = ini::list(settings, "Match", key);
        let known = |v: &Option<String>| v.as_deref().map(|x| globs_match(&values, x));
        let ok = match key {
            "Name" | "OriginalName" => globs_match(&values, link.name),
            "MACAddress" | "PermanentMACAddress" => macs_match(&values, link.mac),
            // An ENI is never a Wi-Fi interface.
            "WLANInterfaceType" | "SSID" | "BSSID" => false,
            "Type" if link.kind.is_some() => known(&link.kind).unwrap_or(true),
            "Driver" if link.driver.is_some() => known(&link.driver).unwrap_or(true),
            other => {
                unchecked.push(other.to_string());
                true
            }
        };
        if !ok {
            return None;
        }
    }
    Some(unchecked)
}

/// A whitespace-separated list of shell globs; a leading `!` inverts the whole list. An empty
/// list matches everything.
fn globs_match(values: &[String], name: &str) -> bool {
    let Some(first) = values.first() else {
        return true;
    };
    let (invert, first) = match first.strip_prefix('!') {
        Some(rest) => (true, rest.to_string()),
        None => (false, first.clone()),
    };
    let any = std::iter::once(&first)
        .chain(values.iter().skip(1))
        .filter(|p| !p.is_empty())
        .any(|p| glob::Pattern::new(p).is_ok_and(|g| g.matches(name)));
    any != invert
}

/// A list of MAC addresses (any case; `:` `-` or `.` separated as systemd accepts).
fn macs_match(values: &[String], mac: Option<MacAddr6>) -> bool {
    if values.is_empty() {
        return true;
    }
    let Some(mac) = mac else {
        return false;
    };
    values
        .iter()
        .filter_map(|v| v.replace('-', ":").parse::<MacAddr6>().ok())
        .any(|m| m == mac)
}
