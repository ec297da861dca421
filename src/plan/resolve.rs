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
                        None => "no interface has that mac or name".to_string(),
                    }),
                }
            }
            (Some(_), None) => by_mac
                .first()
                .copied()
                .ok_or_else(|| "no interface has that mac".to_string()),
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
