//! NetworkManager as it treats a link: its runtime device state (/run/NetworkManager/devices),
//! else its configuration (NetworkManager.conf(5): conf.d directories, [keyfile]
//! unmanaged-devices, [device*] managed=) and udev's NM_UNMANAGED. Pure but for reading files.

use std::path::{Path, PathBuf};

use macaddr::MacAddr6;

use super::ini::{self, Setting};
use super::networkd::LinkId;

/// NetworkManager's configuration directories, highest priority first.
const CONF_D: [&str; 3] = [
    "etc/NetworkManager/conf.d",
    "run/NetworkManager/conf.d",
    "usr/lib/NetworkManager/conf.d",
];

/// How NetworkManager treats one link, and the file that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NmView {
    pub managed: bool,
    pub source: PathBuf,
}

/// NetworkManager's view of a link: its runtime state file for the ifindex when NetworkManager
/// wrote one (the outcome), else the configuration, else udev's NM_UNMANAGED (the weakest),
/// else managed.
pub fn view(root: &Path, link: &LinkId, ifindex: u32) -> NmView {
    let state = root.join(format!("run/NetworkManager/devices/{ifindex}"));
    if let Some(text) = ini::read_small(&state) {
        let s = ini::parse(&text, &state);
        if let Some(m) = ini::last(&s, "device", "managed").and_then(|v| ini::boolean(&v.value)) {
            return NmView {
                managed: m,
                source: state,
            };
        }
    }
    if let Some(v) = conf_view(&conf(root), link) {
        return v;
    }
    // udev's NM_UNMANAGED is the weakest of the three
    let udev = root.join(format!("run/udev/data/n{ifindex}"));
    let unmanaged =
        ini::read_small(&udev).is_some_and(|t| t.lines().any(|l| l.trim() == "E:NM_UNMANAGED=1"));
    NmView {
        managed: !unmanaged,
        source: if unmanaged {
            udev
        } else {
            PathBuf::from("NetworkManager's default")
        },
    }
}

/// The configuration in NetworkManager's order (NetworkManager.conf(5)): /usr/lib's conf.d,
/// then /run's, then NetworkManager.conf, then /etc's, each directory by file name; a file in
/// /etc shadows the same name in /run and /usr/lib, one in /run shadows /usr/lib's (an empty
/// file shadows and adds nothing).
fn conf(root: &Path) -> Vec<Setting> {
    let dirs: Vec<String> = CONF_D.iter().map(|d| d.to_string()).collect();
    let winners = ini::collect(root, &dirs, ".conf");
    let from = |dir: &str| -> Vec<PathBuf> {
        winners
            .iter()
            .filter(|p| p.parent() == Some(root.join(dir).as_path()))
            .cloned()
            .collect()
    };
    let mut files = from(CONF_D[2]);
    files.extend(from(CONF_D[1]));
    files.push(root.join("etc/NetworkManager/NetworkManager.conf"));
    files.extend(from(CONF_D[0]));
    ini::load_files(&files)
}

/// What the configuration says, strongest first: the first `[device*]` section (in order of
/// appearance, the plain `[device]` last) that matches the link and sets `managed=`, then
/// `[keyfile] unmanaged-devices=`. None when it says nothing about the link.
fn conf_view(settings: &[Setting], link: &LinkId) -> Option<NmView> {
    let mut sections: Vec<&str> = Vec::new();
    for s in settings.iter().filter(|s| s.section.starts_with("device-")) {
        if !sections.contains(&s.section.as_str()) {
            sections.push(&s.section);
        }
    }
    sections.push("device");
    for sec in sections {
        let own: Vec<Setting> = settings
            .iter()
            .filter(|s| s.section == sec)
            .cloned()
            .collect();
        let hit = ini::last(&own, sec, "match-device").is_none_or(|m| spec_matches(&m.value, link));
        let managed =
            ini::last(&own, sec, "managed").and_then(|m| Some((ini::boolean(&m.value)?, m)));
        if let (true, Some((b, m))) = (hit, managed) {
            return Some(NmView {
                managed: b,
                source: m.file.clone(),
            });
        }
    }
    let s = ini::last(settings, "keyfile", "unmanaged-devices")?;
    spec_matches(&s.value, link).then(|| NmView {
        managed: false,
        source: s.file.clone(),
    })
}

/// A device spec list (`;` or `,` separated): `*`, `interface-name:GLOB` (`=` exact, `~`
/// glob), `mac:ADDR`, a bare MAC; a matching `except:` entry excludes the device (a list of only
/// `except:` entries matches every other device). Other kinds never match here.
fn spec_matches(list: &str, link: &LinkId) -> bool {
    let (mut hit, mut only_except, mut any) = (false, true, false);
    for spec in list
        .split([';', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        any = true;
        match spec.strip_prefix("except:") {
            // a matching except: entry excludes the device whatever else matches
            Some(s) if one_spec(s, link) => return false,
            Some(_) => {}
            None => {
                only_except = false;
                hit |= one_spec(spec, link);
            }
        }
    }
    hit || (any && only_except)
}

fn one_spec(spec: &str, link: &LinkId) -> bool {
    if spec == "*" {
        return true;
    }
    if let Some(name) = spec.strip_prefix("interface-name:") {
        return match name.strip_prefix('=') {
            Some(exact) => exact == link.name,
            None => glob::Pattern::new(name.strip_prefix('~').unwrap_or(name))
                .is_ok_and(|g| g.matches(link.name)),
        };
    }
    let mac = spec.strip_prefix("mac:").unwrap_or(spec);
    mac.parse::<MacAddr6>().is_ok_and(|m| Some(m) == link.mac)
}
