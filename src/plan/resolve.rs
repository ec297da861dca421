//! Finding each ENI's link on the host: by MAC, by name, or both (and then they must agree).

use super::Missing;
use crate::model::{mac_text, Config, HostLink, Iface};

/// Find each ENI's link. `None` = no host view (render): use the config's names.
pub(super) fn resolve(
    cfg: &Config,
    links: Option<&[HostLink]>,
) -> (Vec<(Iface, bool)>, Vec<Missing>) {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for e in &cfg.enis {
        let fallback = Iface {
            name: e.fallback_ifname().to_string(),
            index: 0,
        };
        let Some(links) = links else {
            out.push((fallback, false));
            continue;
        };
        let by_mac: Vec<&HostLink> = match e.mac {
            Some(m) => links.iter().filter(|l| l.mac == Some(m)).collect(),
            None => Vec::new(),
        };
        let by_name = e
            .interface
            .as_ref()
            .and_then(|n| links.iter().find(|l| &l.name == n));
        let found = match (e.mac, &e.interface) {
            (Some(_), Some(name)) => {
                match (by_mac.iter().find(|l| &l.name == name), by_mac.first()) {
                    (Some(l), _) => Ok(*l),
                    (None, Some(other)) => Err(format!(
                        "mac {} is on interface {}, not {name}",
                        e.mac.map(mac_text).unwrap_or_default(),
                        other.name
                    )),
                    (None, None) => Err(match by_name {
                        Some(l) => format!(
                            "interface {name} has mac {}, not {}",
                            l.mac.map(mac_text).unwrap_or("none".into()),
                            e.mac.map(mac_text).unwrap_or_default()
                        ),
                        None => format!("no interface has that mac or name ({})", host_macs(links)),
                    }),
                }
            }
            (Some(_), None) => by_mac
                .first()
                .copied()
                .ok_or_else(|| format!("no interface has that mac ({})", host_macs(links))),
            (None, _) => by_name.ok_or_else(|| "no interface has that name".to_string()),
        };
        match found {
            Ok(l) => out.push((
                Iface {
                    name: l.name.clone(),
                    index: l.index,
                },
                true,
            )),
            Err(reason) => {
                missing.push(Missing {
                    eni: e.name.clone(),
                    mac: e.mac.map(mac_text),
                    interface: e.interface.clone(),
                    reason,
                });
                out.push((fallback, false));
            }
        }
    }
    (out, missing)
}

/// "this host has eth0 00:16:3e:…, eth1 …" (at most 16, loopback and MAC-less links left out).
fn host_macs(links: &[HostLink]) -> String {
    let with_mac: Vec<String> = links
        .iter()
        .filter_map(|l| l.mac.filter(|m| !m.is_nil()).map(|m| (l, m)))
        .map(|(l, m)| format!("{} {}", l.name, mac_text(m)))
        .collect();
    if with_mac.is_empty() {
        return "this host has no interface with a MAC address".to_string();
    }
    let more = with_mac.len().saturating_sub(16);
    let mut shown = with_mac.into_iter().take(16).collect::<Vec<_>>().join(", ");
    if more > 0 {
        shown.push_str(&format!(" and {more} more"));
    }
    format!("this host has {shown}")
}
