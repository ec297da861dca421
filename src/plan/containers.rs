//! `[containers]`: the fwmark rule layer (P+150) per marked ENI and family, the owned nftables
//! table that marks connections and SNATs container networks, and the marked route lookups
//! that verification asks. May import only `model`.

use std::net::IpAddr;

use super::{Desired, MarkLookup};
use crate::model::layout::Layer;
use crate::model::nft::{NftAction, NftChain, NftChainType, NftHook, NftMatch, NftRule, NftTable};
use crate::model::{Config, Containers, EniMark, Family, FwMark, Iface, Rule};

/// nft's `mangle` priority: before DNAT (-100), so the mark is set on the ENI's address.
const MANGLE: i32 = -150;
/// Just before nft's `srcnat` (100), where docker's and kube-proxy's masquerade run: the first
/// NAT binding of a connection wins.
const BEFORE_SRCNAT: i32 = 99;

/// Plan the rules, the table and the lookups of `[containers]`.
pub(super) fn plan_containers(
    d: &mut Desired,
    cfg: &Config,
    c: &Containers,
    ifaces: &[(Iface, bool)],
) {
    let iface_of = |eni: &str| {
        cfg.enis
            .iter()
            .position(|e| e.name == eni)
            .and_then(|k| ifaces.get(k))
            .map(|(i, _)| i.clone())
    };
    let used: Vec<&EniMark> = c
        .marks
        .iter()
        .filter(|m| c.return_path || c.egress.iter().any(|e| e.eni == m.eni))
        .collect();
    for m in &used {
        let Some(e) = cfg.enis.iter().find(|e| e.name == m.eni) else {
            continue;
        };
        let Some(iface) = iface_of(&m.eni) else {
            continue;
        };
        let gateways = [
            e.uplinks.first().map(|u| IpAddr::V4(u.gateway)),
            e.ipv6_gateway.map(IpAddr::V6),
        ];
        for gateway in gateways.into_iter().flatten() {
            let family = Family::of(&gateway);
            // As for sources: the ENI's own subnet first (P+0, so that a client on the vSwitch
            // is answered through the ENI too), then everything else (P+150).
            for (layer, suppress) in [(Layer::OwnSubnet, Some(0)), (Layer::Mark, None)] {
                d.rules.push(Rule {
                    family,
                    priority: layer.priority(cfg.routing.rule_priority),
                    from: None,
                    table: m.table,
                    suppress_prefixlength: suppress,
                    fwmark: Some(FwMark {
                        mark: m.mark,
                        mask: c.mark_mask,
                    }),
                });
            }
            d.mark_checks.push(MarkLookup {
                eni: m.eni.clone(),
                family,
                mark: m.mark,
                iface: iface.clone(),
                gateway,
            });
        }
    }
    let eni_ifaces: Vec<(Iface, u32)> = c
        .marks
        .iter()
        .filter_map(|m| iface_of(&m.eni).map(|i| (i, m.mark)))
        .collect();
    d.mark_mask = Some(c.mark_mask);
    d.nft = Some(table(c, &eni_ifaces, &used, &iface_of));
}

/// The table: mark in prerouting (and restore), restore in output, SNAT in postrouting.
fn table(
    c: &Containers,
    eni_ifaces: &[(Iface, u32)],
    used: &[&EniMark],
    iface_of: &dyn Fn(&str) -> Option<Iface>,
) -> NftTable {
    let mask = c.mark_mask;
    let restore: Vec<NftRule> = used
        .iter()
        .map(|m| {
            let matched = vec![NftMatch::CtMark { mark: m.mark, mask }];
            nft_rule(
                matched,
                false,
                NftAction::SetMetaMark { mark: m.mark, mask },
            )
        })
        .collect();
    let mut pre = marking(c, eni_ifaces);
    pre.extend(restore.iter().cloned());
    let mut chains = vec![chain(
        "prerouting",
        NftChainType::Filter,
        NftHook::Prerouting,
        MANGLE,
        pre,
    )];
    if c.return_path {
        chains.push(chain(
            "output",
            NftChainType::Route,
            NftHook::Output,
            MANGLE,
            restore,
        ));
    }
    let snat: Vec<NftRule> = c
        .egress
        .iter()
        .filter_map(|e| {
            let oif = iface_of(&e.eni)?;
            let m = vec![NftMatch::Saddr(e.network), NftMatch::OifName(oif.name)];
            Some(nft_rule(m, false, NftAction::Snat(e.source)))
        })
        .collect();
    if !snat.is_empty() {
        chains.push(chain(
            "postrouting",
            NftChainType::Nat,
            NftHook::Postrouting,
            BEFORE_SRCNAT,
            snat,
        ));
    }
    NftTable { chains }
}

/// Prerouting's marking: new connections to a local address through an ENI (return_path),
/// a return for the rest of an ENI's packets, and new connections of each egress network.
fn marking(c: &Containers, eni_ifaces: &[(Iface, u32)]) -> Vec<NftRule> {
    let set_ct = |mark| NftAction::SetCtMark {
        mark,
        mask: c.mark_mask,
    };
    let mut pre = Vec::new();
    if c.return_path {
        for (i, mark) in eni_ifaces {
            let m = vec![
                NftMatch::IifName(i.name.clone()),
                NftMatch::CtStateNew,
                NftMatch::FibDaddrLocal,
            ];
            pre.push(nft_rule(m, true, set_ct(*mark)));
        }
    }
    // Packets arriving on an ENI keep their routing; the rest is other interfaces' traffic.
    for (i, _) in eni_ifaces {
        pre.push(nft_rule(
            vec![NftMatch::IifName(i.name.clone())],
            false,
            NftAction::Return,
        ));
    }
    let mark_of = |eni: &str| c.marks.iter().find(|m| m.eni == eni).map(|m| m.mark);
    for e in &c.egress {
        if let Some(mark) = mark_of(&e.eni) {
            let m = vec![NftMatch::Saddr(e.network), NftMatch::CtStateNew];
            pre.push(nft_rule(m, true, set_ct(mark)));
        }
    }
    pre
}

fn nft_rule(matches: Vec<NftMatch>, counter: bool, action: NftAction) -> NftRule {
    NftRule {
        matches,
        counter,
        action,
    }
}

fn chain(
    name: &str,
    kind: NftChainType,
    hook: NftHook,
    priority: i32,
    rules: Vec<NftRule>,
) -> NftChain {
    NftChain {
        name: name.to_string(),
        kind,
        hook,
        priority,
        rules,
    }
}
