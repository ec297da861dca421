//! `[egress]`: the strategy, hash and vias, each via naming a declared ENI with a gateway and
//! (failover) a source that belongs to it. May import the raw types and `crate::model`.

use std::collections::HashMap;
use std::net::IpAddr;

use super::Validator;
use crate::config::raw::{RawEgress, RawVia, S};

/// The prefix of every message about `[egress]`.
const CTX: &str = "egress: ";
use crate::model::{Egress, Eni, Hash, Strategy, Via};

impl Validator {
    pub(super) fn egress(
        &mut self,
        se: &S<RawEgress>,
        enis: &[Eni],
        enis_valid: bool,
    ) -> Option<Egress> {
        let r = se.get_ref();
        let before = self.problem_count();
        let (strategy, hash) = self.strategy(r);
        if r.via.is_empty() {
            self.err(
                &se.span(),
                format!("{CTX}at least one [[egress.via]] is required"),
            );
        }
        let mut via = Vec::new();
        let mut used: HashMap<String, usize> = HashMap::new();
        for sv in &r.via {
            let v = sv.get_ref();
            let name = v.eni.get_ref().clone();
            let line = self.line(&v.eni.span());
            if let Some(first) = used.insert(name.clone(), line) {
                self.err(
                    &v.eni.span(),
                    format!("{CTX}eni {name:?} is listed twice (first at line {first})"),
                );
            }
            via.push(self.via(v, strategy, enis, enis_valid));
        }
        if self.problem_count() > before {
            return None;
        }
        Some(Egress {
            strategy,
            hash,
            via,
        })
    }

    /// `strategy` (default failover) and `hash` (balance only; default l4).
    fn strategy(&mut self, r: &RawEgress) -> (Strategy, Hash) {
        let strategy = match &r.strategy {
            None => Strategy::Failover,
            Some(s) => match s.get_ref().as_str() {
                "failover" => Strategy::Failover,
                "balance" => Strategy::Balance,
                other => {
                    self.err(
                        &s.span(),
                        format!("{CTX}strategy = {other:?} is not one of failover, balance"),
                    );
                    Strategy::Failover
                }
            },
        };
        let Some(h) = &r.hash else {
            return (strategy, Hash::L4);
        };
        if strategy != Strategy::Balance {
            self.err(
                &h.span(),
                format!("{CTX}`hash` applies only to strategy = \"balance\""),
            );
        }
        let hash = match h.get_ref().as_str() {
            "l3" => Hash::L3,
            "l4" => Hash::L4,
            other => {
                self.err(
                    &h.span(),
                    format!("{CTX}hash = {other:?} is not one of l3, l4"),
                );
                Hash::L4
            }
        };
        (strategy, hash)
    }

    /// One `[[egress.via]]`: a declared ENI with a gateway; `weight` or `source` as the
    /// strategy allows.
    fn via(&mut self, v: &RawVia, strategy: Strategy, enis: &[Eni], enis_valid: bool) -> Via {
        let name = v.eni.get_ref().clone();
        let eni = enis.iter().find(|e| e.name == name);
        if eni.is_none() && enis_valid {
            self.err(
                &v.eni.span(),
                format!("{CTX}via eni {name:?} is not a declared ENI"),
            );
        }
        if let Some(e) = eni.filter(|e| e.uplink_gateways().is_empty()) {
            self.err(
                &v.eni.span(),
                format!("{CTX}eni {:?} has no gateway to send through", e.name),
            );
        }
        let weight = match &v.weight {
            Some(w) => {
                if strategy != Strategy::Balance {
                    self.err(
                        &w.span(),
                        format!(
                            "{CTX}via {name:?}: `weight` applies only to strategy = \"balance\""
                        ),
                    );
                }
                self.int_in(CTX, "via.weight", w, 1, 256).unwrap_or(1) as u16
            }
            None => 1,
        };
        let source = v.source.as_ref().and_then(|s| {
            if strategy != Strategy::Failover {
                self.err(
                    &s.span(),
                    format!("{CTX}via {name:?}: `source` applies only to strategy = \"failover\""),
                );
            }
            let ip = self.parse(
                CTX,
                "via.source",
                s,
                |t| t.parse::<IpAddr>().ok(),
                "an IP address",
            )?;
            if let Some(e) = eni.filter(|e| !source_belongs(e, ip)) {
                self.err(
                    &s.span(),
                    format!(
                        "{CTX}via {name:?}: source {ip} is not a usable address of eni {:?} (its \
                         private IPs, IPv6 addresses or EIPs)",
                        e.name
                    ),
                );
            }
            Some(ip)
        });
        Via {
            eni: name,
            source,
            weight,
        }
    }
}

/// Whether `ip` can be a `source` of egress via `e`.
fn source_belongs(e: &Eni, ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            (e.mode.uses_private_ips() && e.private_ips.contains(&v4))
                || e.eips.iter().any(|x| x.address == v4)
        }
        IpAddr::V6(v6) => e.ipv6.contains(&v6),
    }
}
