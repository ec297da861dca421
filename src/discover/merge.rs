//! Metadata-driven config (DESIGN §3 `[discover]`): the file merged with what the metadata
//! says, as one TOML document the validator then checks like any file. Pure: the caller reads
//! the metadata and the host's links. May import `crate::config` and the discover types.
//!
//! - Every ENI the metadata lists is managed, unless `exclude` names its MAC, its label or
//!   its host interface.
//! - An `[[eni]]` of the file with the same `mac` extends or overrides it key by key (modes and
//!   EIPs the metadata does not show). Its `eip` list replaces the metadata's; a mode other
//!   than nat drops the metadata's (nat) EIPs.
//! - An `[[eni]]` of the file that the metadata does not list is kept when it is complete (it
//!   has a `cidr`, or a mode without one); a partial one is an error, as is one that is
//!   excluded.
//! - A discovered ENI whose label a file entry already uses gets the next free `ethN`.

use macaddr::MacAddr6;
use toml::{Table, Value};

use super::{to_toml, Discovered};
use crate::config::{ConfigError, DiscoverSettings, Problem};
use crate::model::mac_text;

/// The merged config text, and what the merge left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub text: String,
    /// `name (mac)` of each discovered ENI left out by `exclude`.
    pub excluded: Vec<String>,
}

/// Merge the file's text with the discovered instance. `ifname_of` gives the host interface of a
/// MAC (for `exclude` by interface name); `path` names the file in errors.
pub fn merge(
    file_text: &str,
    path: &str,
    found: &Discovered,
    settings: &DiscoverSettings,
    ifname_of: &dyn Fn(MacAddr6) -> Option<String>,
) -> Result<Merged, ConfigError> {
    let fail = |message: String| ConfigError {
        path: path.to_string(),
        problems: vec![Problem::whole_file(message)],
    };
    let mut file: Table = file_text
        .parse()
        .map_err(|e: toml::de::Error| fail(e.message().trim_end().to_string()))?;
    let discovered: Table = to_toml(found)
        .parse()
        .map_err(|e: toml::de::Error| fail(format!("discover wrote invalid TOML (a bug): {e}")))?;
    let mut own = own_enis(&mut file).map_err(fail)?;
    let excluded_by = |mac: MacAddr6, name: &str| {
        let ifname = ifname_of(mac);
        settings
            .exclude
            .iter()
            .any(|x| x.matches(mac, name, ifname.as_deref()))
    };

    let mut merged: Vec<Table> = Vec::new();
    let mut fresh: Vec<usize> = Vec::new();
    let mut excluded = Vec::new();
    for eni in discovered_enis(&discovered) {
        let (Some(mac), Some(name)) = (table_mac(&eni), table_str(&eni, "name")) else {
            continue;
        };
        let matching = own
            .iter_mut()
            .find(|t| t.as_ref().and_then(table_mac) == Some(mac));
        let over = matching.and_then(Option::take);
        if excluded_by(mac, &name) {
            if let Some(o) = over {
                let label = table_str(&o, "name").unwrap_or_default();
                return Err(fail(format!(
                    "eni {label:?} (mac {}) is declared and also excluded in [discover]",
                    mac_text(mac)
                )));
            }
            excluded.push(format!("{name} ({})", mac_text(mac)));
            continue;
        }
        match over {
            Some(o) => merged.push(overlay(eni, o)),
            None => {
                fresh.push(merged.len());
                merged.push(eni);
            }
        }
    }
    for o in own.into_iter().flatten() {
        merged.push(kept_entry(o, &excluded_by).map_err(fail)?);
    }
    relabel(&mut merged, &fresh);

    if !file.contains_key("region") {
        if let Some(r) = discovered.get("region") {
            file.insert("region".to_string(), r.clone());
        }
    }
    file.insert(
        "eni".to_string(),
        Value::Array(merged.into_iter().map(Value::Table).collect()),
    );
    let text =
        toml::to_string(&file).map_err(|e| fail(format!("cannot write the merged config: {e}")))?;
    Ok(Merged { text, excluded })
}

/// The file's own `[[eni]]` tables, taken out of it (each taken again when it is merged).
fn own_enis(file: &mut Table) -> Result<Vec<Option<Table>>, String> {
    let not_tables = || "`eni` must be an array of tables ([[eni]])".to_string();
    match file.remove("eni") {
        None => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .into_iter()
            .map(|v| match v {
                Value::Table(t) => Ok(Some(t)),
                _ => Err(not_tables()),
            })
            .collect(),
        Some(_) => Err(not_tables()),
    }
}

fn discovered_enis(t: &Table) -> Vec<Table> {
    match t.get("eni") {
        Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_table().cloned()).collect(),
        _ => Vec::new(),
    }
}

fn table_str(t: &Table, key: &str) -> Option<String> {
    t.get(key).and_then(Value::as_str).map(str::to_string)
}

fn table_mac(t: &Table) -> Option<MacAddr6> {
    table_str(t, "mac").and_then(|m| m.parse().ok())
}

/// The discovered ENI with the file's keys on top.
fn overlay(mut eni: Table, file: Table) -> Table {
    let mode = file.get("mode").and_then(Value::as_str).unwrap_or("nat");
    if mode != "nat" && !file.contains_key("eip") {
        eni.remove("eip");
    }
    for (k, v) in file {
        eni.insert(k, v);
    }
    eni
}

/// A file entry the metadata does not list: kept when complete and not excluded.
fn kept_entry(o: Table, excluded_by: &dyn Fn(MacAddr6, &str) -> bool) -> Result<Table, String> {
    let label = table_str(&o, "name").unwrap_or_default();
    if let Some(mac) = table_mac(&o) {
        if excluded_by(mac, &label) {
            return Err(format!(
                "eni {label:?} (mac {}) is declared and also excluded in [discover]",
                mac_text(mac)
            ));
        }
    }
    let mode = o.get("mode").and_then(Value::as_str).unwrap_or("nat");
    if mode != "cut-through" && !o.contains_key("cidr") {
        let mac = table_str(&o, "mac").unwrap_or_else(|| "(none)".to_string());
        return Err(format!(
            "eni {label:?}: the metadata lists no ENI with mac {mac}, and the entry has no \
             `cidr` of its own (is the ENI attached?)"
        ));
    }
    Ok(o)
}

/// Discovered-only ENIs whose label a file entry uses get the next free `ethN`.
fn relabel(enis: &mut [Table], fresh: &[usize]) {
    let taken = |enis: &[Table], name: &str, me: usize| {
        enis.iter()
            .enumerate()
            .any(|(i, t)| i != me && table_str(t, "name").as_deref() == Some(name))
    };
    for &i in fresh {
        let Some(name) = enis.get(i).and_then(|t| table_str(t, "name")) else {
            continue;
        };
        if !taken(enis, &name, i) {
            continue;
        }
        let free = (1..=enis.len() + 1)
            .map(|n| format!("eth{n}"))
            .find(|n| !taken(enis, n, i));
        if let (Some(free), Some(t)) = (free, enis.get_mut(i)) {
            t.insert("name".to_string(), Value::String(free));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::config::{discover_section, load_str, Excluded};
    use crate::discover::{test_eni, DiscoveredEni, NatEip, ProviderKind};
    use crate::model::Mode;

    fn eni(n: u8) -> DiscoveredEni {
        test_eni(n, "172.31.16", &[&format!("172.31.16.{}", 10 + n)])
    }

    fn found() -> Discovered {
        let mut e0 = eni(0);
        e0.eips.push(NatEip {
            address: "203.0.113.5".parse().unwrap(),
            private_ip: "172.31.16.10".parse().unwrap(),
        });
        Discovered {
            provider: ProviderKind::Aws,
            endpoint: "http://127.0.0.1:1".to_string(),
            region: Some("us-east-2".to_string()),
            enis: vec![e0, eni(1), eni(2)],
            hardened: true,
            generated_at: SystemTime::now(),
        }
    }

    fn run(
        file: &str,
        ifname_of: &dyn Fn(MacAddr6) -> Option<String>,
    ) -> Result<Merged, ConfigError> {
        let settings = discover_section(file, "f.toml")
            .unwrap()
            .expect("[discover]");
        merge(file, "f.toml", &found(), &settings, ifname_of)
    }

    fn no_links(_: MacAddr6) -> Option<String> {
        None
    }

    #[test]
    fn discovered_enis_with_file_overrides_validate() {
        let file = r#"
[discover]
provider = "aws"
refresh = "2m"

[[eni]]
name = "wan"
mac = "02:00:00:00:00:02"
mode = "multi-eip"
private_ips = ["172.31.16.12"]

[[eni.eip]]
address = "198.51.100.7"
"#;
        let m = run(file, &no_links).unwrap();
        let l = load_str(&m.text, "merged").unwrap_or_else(|e| panic!("{e}\n{}", m.text));
        let names: Vec<&str> = l.config.enis.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["eth0", "eth1", "wan"]);
        let wan = &l.config.enis[2];
        assert_eq!(wan.mode, Mode::MultiEip);
        assert_eq!(wan.eips[0].address.to_string(), "198.51.100.7");
        assert_eq!(
            wan.cidr.map(|c| c.to_string()).as_deref(),
            Some("172.31.16.0/24"),
            "from the metadata"
        );
        assert_eq!(
            l.config.enis[0].eips.len(),
            1,
            "the metadata's EIP on the primary"
        );
        assert_eq!(l.config.region.as_deref(), Some("us-east-2"));
        let s = discover_section(&m.text, "merged").unwrap().unwrap();
        assert_eq!(s.refresh, Duration::from_secs(120));
    }

    #[test]
    fn exclude_by_mac_label_or_interface() {
        let by_mac = "[discover]\nexclude = [\"02:00:00:00:00:01\"]\n";
        let m = run(by_mac, &no_links).unwrap();
        assert_eq!(m.excluded, ["eth1 (02:00:00:00:00:01)"]);
        assert!(
            !m.text.contains("mac = \"02:00:00:00:00:01\""),
            "{}",
            m.text
        );
        let ifname =
            |mac: MacAddr6| (mac == MacAddr6::new(2, 0, 0, 0, 0, 2)).then(|| "ens7".to_string());
        let by_ifname = "[discover]\nexclude = [\"ens7\"]\n";
        let m = run(by_ifname, &ifname).unwrap();
        assert_eq!(m.excluded, ["eth2 (02:00:00:00:00:02)"]);
        let l = load_str(&m.text, "merged").unwrap();
        assert_eq!(l.config.enis.len(), 2);
    }

    #[test]
    fn contradictions_and_partial_strays_are_errors() {
        let both = "[discover]\nexclude = [\"02:00:00:00:00:01\"]\n[[eni]]\nname = \"x\"\nmac = \"02:00:00:00:00:01\"\nmode = \"nat\"\n";
        let e = run(both, &no_links).unwrap_err().to_string();
        assert!(e.contains("declared and also excluded"), "{e}");
        let stray =
            "[discover]\n[[eni]]\nname = \"x\"\nmac = \"02:00:00:00:00:09\"\nmode = \"nat\"\n";
        let e = run(stray, &no_links).unwrap_err().to_string();
        assert!(e.contains("lists no ENI with mac 02:00:00:00:00:09"), "{e}");
    }

    #[test]
    fn a_file_label_taken_by_another_mac_relabels_the_discovered_eni() {
        let file = "[discover]\n[[eni]]\nname = \"eth1\"\nmac = \"02:00:00:00:00:02\"\n";
        let m = run(file, &no_links).unwrap();
        let l = load_str(&m.text, "merged").unwrap_or_else(|e| panic!("{e}\n{}", m.text));
        let mut labels: Vec<(String, String)> = l
            .config
            .enis
            .iter()
            .map(|e| (e.name.clone(), crate::model::mac_text(e.mac.unwrap())))
            .collect();
        labels.sort();
        assert_eq!(
            labels,
            [
                ("eth0".to_string(), "02:00:00:00:00:00".to_string()),
                ("eth1".to_string(), "02:00:00:00:00:02".to_string()),
                ("eth2".to_string(), "02:00:00:00:00:01".to_string()),
            ]
        );
    }

    #[test]
    fn discover_section_is_validated_with_lines() {
        let bad = "[discover]\nprovider = \"gcp\"\nrefresh = \"1s\"\nexclude = [\"not a name!\"]\n";
        let e = discover_section(bad, "f.toml").unwrap_err();
        let lines: Vec<usize> = e.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [2, 3, 4], "{e}");
        let ok = discover_section(
            "[discover]\nexclude = [\"00:16:3E:00:00:99\", \"eth9\"]\n",
            "f",
        )
        .unwrap()
        .unwrap();
        assert_eq!(ok.provider, "auto");
        assert!(matches!(ok.exclude[0], Excluded::Mac(_)));
        assert_eq!(ok.exclude[1], Excluded::Name("eth9".to_string()));
        assert_eq!(discover_section("region = \"x\"\n", "f").unwrap(), None);
    }
}
