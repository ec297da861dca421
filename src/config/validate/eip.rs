//! An ENI's `[[eni.eip]]`s and `eip_quota`: each EIP's address, prefix, gateway and private IP,
//! then the mode's limits, its ALG note and its region warning. Every mode decision asks a
//! [`Mode`] capability. May import the raw types, the shared rules and `crate::model`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::ops::Range;

use ipnetwork::Ipv4Network;

use super::eni::{EniCtx, Subnet};
use super::{count_word, modes_where, Validator};
use crate::config::not_public;
use crate::config::raw::{RawEip, S};
use crate::model::{Eip, EipGateway, EipLimit, Mode, DEFAULT_MULTI_EIP_QUOTA};

impl Validator {
    /// Every EIP of the ENI, and the rules on them as a set.
    pub(super) fn eips(
        &mut self,
        x: &EniCtx<'_>,
        subnet: Subnet,
        private_ips: &[Ipv4Addr],
        prefixes: &[(Ipv4Network, Range<usize>)],
        region: Option<&S<String>>,
    ) -> Vec<Eip> {
        let quota = self.eip_quota(x);
        let mut eips: Vec<Eip> = Vec::new();
        let mut spans = Vec::new();
        for se in &x.raw.eip {
            if let Some(eip) = self.eip(x, se, private_ips, subnet.gateway) {
                eips.push(eip);
                spans.push(se.span());
            }
        }
        for (n, span) in prefixes {
            if let Some(eip) = eips.iter().find(|eip| n.contains(eip.address)) {
                self.err(
                    span,
                    format!(
                        "{}prefix {n} contains EIP {} of this ENI",
                        x.ctx, eip.address
                    ),
                );
            }
        }
        self.eip_count(x, quota);
        if x.mode.eip_maps_to_private_ip() {
            self.one_eip_per_private_ip(x, &eips, &spans);
        }
        // Not for the primary ENI: it supports only nat, so the advice could not be followed.
        // One note for all of them, once every ENI is read (`alg_note`).
        if x.mode.lacks_alg() && !eips.is_empty() && !x.raw.is_primary() {
            self.lacks_alg
                .push((x.mode, x.name.clone(), x.span.clone()));
        }
        self.region_warning(x, region);
        eips
    }

    /// One note naming every secondary ENI whose mode has no ALG and that has EIPs, each ENI
    /// marked.
    pub(super) fn alg_note(&mut self) {
        let found = std::mem::take(&mut self.lacks_alg);
        if found.is_empty() {
            return;
        }
        let names: Vec<String> = found.iter().map(|(_, n, _)| format!("eni {n:?}")).collect();
        let modes: BTreeSet<&str> = found.iter().map(|(m, _, _)| m.as_str()).collect();
        let modes: Vec<&str> = modes.into_iter().collect();
        let message = format!(
            "{}: {} mode has no ALG: H.323, SIP, DNS and RTSP through {} EIPs may break \
             (use {} for them)",
            names.join(", "),
            modes.join(" and "),
            if names.len() == 1 { "its" } else { "their" },
            modes_where(|m| !m.lacks_alg(), " or ")
        );
        let spans: Vec<Range<usize>> = found.iter().map(|(_, _, s)| s.clone()).collect();
        self.warning(&spans, message, true);
        if let Some(w) = self.warnings.last_mut() {
            for (x, (mode, name, _)) in w.excerpts.iter_mut().zip(&found) {
                x.label = Some(format!("{name}: {mode}, with EIPs"));
            }
        }
    }

    /// `eip_quota`: only where the mode has a quota; the default otherwise.
    fn eip_quota(&mut self, x: &EniCtx<'_>) -> u32 {
        let ctx = x.ctx.as_str();
        match &x.raw.eip_quota {
            Some(q) if x.mode.has_eip_quota() => self
                .int_in(ctx, "eip_quota", q, 1, 1000)
                .map(|n| n as u32)
                .unwrap_or(DEFAULT_MULTI_EIP_QUOTA),
            Some(q) => {
                self.err(
                    &q.span(),
                    format!(
                        "{ctx}`eip_quota` applies only to {} mode",
                        modes_where(Mode::has_eip_quota, " and ")
                    ),
                );
                DEFAULT_MULTI_EIP_QUOTA
            }
            None => DEFAULT_MULTI_EIP_QUOTA,
        }
    }

    /// How many EIPs the ENI may hold ([`Mode::eip_limit`]).
    fn eip_count(&mut self, x: &EniCtx<'_>, quota: u32) {
        let (eips, ctx, mode) = (&x.raw.eip, x.ctx.as_str(), x.mode);
        let limit = mode.eip_limit(x.primary, quota);
        match limit {
            EipLimit::AtMost(most) => {
                let Some(extra) = eips.get(most as usize) else {
                    return;
                };
                let message = if x.primary && limit != mode.eip_limit(false, quota) {
                    format!(
                        "{ctx}the primary ENI holds at most {} EIP ({mode} mode)",
                        count_word(most as usize)
                    )
                } else {
                    let hint = if mode.has_eip_quota() {
                        " (set `eip_quota` if your quota was raised)"
                    } else {
                        ""
                    };
                    format!("{ctx}a {mode} ENI holds at most {most} EIPs{hint}")
                };
                self.err(&extra.span(), message);
            }
            EipLimit::Exactly(n) if eips.len() != n as usize => self.err(
                &x.span,
                format!(
                    "{ctx}a {mode} ENI holds exactly {} EIP (it has {})",
                    count_word(n as usize),
                    eips.len()
                ),
            ),
            EipLimit::Exactly(_) | EipLimit::OnePerPrivateIp => {}
        }
    }

    /// Each EIP maps to a distinct private IP.
    fn one_eip_per_private_ip(&mut self, x: &EniCtx<'_>, eips: &[Eip], spans: &[Range<usize>]) {
        let mut by_private: BTreeMap<Ipv4Addr, Vec<(Ipv4Addr, &Range<usize>)>> = BTreeMap::new();
        for (eip, span) in eips.iter().zip(spans) {
            if let Some(p) = eip.private_ip {
                by_private.entry(p).or_default().push((eip.address, span));
            }
        }
        for (p, list) in by_private {
            if let Some((_, span)) = list.get(1) {
                let names: Vec<String> = list.iter().map(|(a, _)| a.to_string()).collect();
                self.err(
                    span,
                    format!(
                        "{}{} mode maps at most one EIP per private IP; {} both map to {p}",
                        x.ctx,
                        x.mode,
                        names.join(" and ")
                    ),
                );
            }
        }
    }

    /// A mode offered only in some regions is a warning elsewhere, never an error.
    fn region_warning(&mut self, x: &EniCtx<'_>, region: Option<&S<String>>) {
        let Some(regions) = x.mode.regions() else {
            return;
        };
        let name = region.map(|r| r.get_ref().as_str());
        if name.map(|r| regions.contains(&r)).unwrap_or(false) {
            return;
        }
        let span = region.map(|r| r.span()).unwrap_or(x.span.clone());
        let where_ = name
            .map(|r| format!("region {r:?}"))
            .unwrap_or("an undeclared region".into());
        self.warn(
            &span,
            format!(
                "{}{} mode was offered only in {}; check that {where_} supports it",
                x.ctx,
                x.mode,
                regions.join(", ")
            ),
        );
    }

    /// One `[[eni.eip]]`.
    fn eip(
        &mut self,
        x: &EniCtx<'_>,
        se: &S<RawEip>,
        private_ips: &[Ipv4Addr],
        eni_gateway: Option<Ipv4Addr>,
    ) -> Option<Eip> {
        let (r, ctx) = (se.get_ref(), x.ctx.as_str());
        let before = self.problem_count();
        let address = self.v4(ctx, "eip.address", &r.address);
        if let Some(a) = address {
            if let Some(why) = not_public(a) {
                self.err(
                    &r.address.span(),
                    format!("{ctx}EIP {a} is not a public address ({why})"),
                );
            }
        }
        let shown = address
            .map(|a| a.to_string())
            .unwrap_or_else(|| r.address.get_ref().clone());
        let prefix = self.eip_prefix(x, r, &shown);
        let gateway = self.eip_gateway(x, se, &shown, eni_gateway);
        if let (Some(a), Some(gw), Some(g)) = (address, gateway, &r.gateway) {
            self.eip_gateway_reachable(ctx, a, prefix, gw, &g.span());
        }
        let private_ip = self.eip_private_ip(x, r, &shown, private_ips);
        if self.problem_count() > before {
            return None;
        }
        Some(Eip {
            address: address?,
            id: r.id.clone(),
            private_ip,
            prefix,
            gateway,
        })
    }

    /// `prefix`: only where the EIP is an address of the OS; 32 by default.
    fn eip_prefix(&mut self, x: &EniCtx<'_>, r: &RawEip, shown: &str) -> u8 {
        let ctx = x.ctx.as_str();
        match &r.prefix {
            Some(p) if !x.mode.eip_in_os() => {
                self.err(
                    &p.span(),
                    format!(
                        "{ctx}EIP {shown}: `prefix` applies only to {} (a {} EIP is not in the OS)",
                        modes_where(Mode::eip_in_os, " and "),
                        x.mode
                    ),
                );
                32
            }
            Some(p) => self.int_in(ctx, "eip.prefix", p, 1, 32).unwrap_or(32) as u8,
            None => 32,
        }
    }

    /// `gateway`, as the mode's [`EipGateway`] says.
    fn eip_gateway(
        &mut self,
        x: &EniCtx<'_>,
        se: &S<RawEip>,
        shown: &str,
        eni_gateway: Option<Ipv4Addr>,
    ) -> Option<Ipv4Addr> {
        let ctx = x.ctx.as_str();
        match (&se.get_ref().gateway, x.mode.eip_gateway()) {
            (Some(g), EipGateway::NotAllowed) => {
                let modes = modes_where(|m| m.eip_gateway() != EipGateway::NotAllowed, " and ");
                self.err(
                    &g.span(),
                    format!("{ctx}EIP {shown}: `gateway` applies only to {modes}"),
                );
                None
            }
            (Some(g), _) => self.v4(ctx, "eip.gateway", g),
            (None, EipGateway::Required) => {
                self.err(
                    &se.span(),
                    format!("{ctx}EIP {shown}: a {} EIP requires `gateway`", x.mode),
                );
                None
            }
            (None, EipGateway::DefaultsToEni) => eni_gateway,
            (None, EipGateway::NotAllowed) => None,
        }
    }

    /// A declared EIP gateway is not the EIP, and lies inside the EIP's prefix.
    fn eip_gateway_reachable(
        &mut self,
        ctx: &str,
        a: Ipv4Addr,
        prefix: u8,
        gw: Ipv4Addr,
        span: &Range<usize>,
    ) {
        if gw == a {
            self.err(span, format!("{ctx}EIP {a}: the gateway is the EIP itself"));
        } else if prefix < 32 {
            let net = Ipv4Network::new(a, prefix).ok();
            if let Some(net) = net.filter(|n| !n.contains(gw)) {
                self.err(
                    span,
                    format!(
                        "{ctx}EIP {a}: gateway {gw} is not inside {}/{}",
                        net.network(),
                        prefix
                    ),
                );
            }
        }
    }

    /// `private_ip`: one of the ENI's, where the mode maps EIPs to private IPs (default: the
    /// primary private IP).
    fn eip_private_ip(
        &mut self,
        x: &EniCtx<'_>,
        r: &RawEip,
        shown: &str,
        private_ips: &[Ipv4Addr],
    ) -> Option<Ipv4Addr> {
        let ctx = x.ctx.as_str();
        let maps = x.mode.eip_maps_to_private_ip();
        match &r.private_ip {
            Some(p) if maps => {
                let ip = self.v4(ctx, "eip.private_ip", p)?;
                if !private_ips.contains(&ip) {
                    self.err(
                        &p.span(),
                        format!(
                            "{ctx}EIP {shown}: private_ip {ip} is not one of this ENI's \
                             private_ips"
                        ),
                    );
                }
                Some(ip)
            }
            Some(p) => {
                self.err(
                    &p.span(),
                    format!(
                        "{ctx}EIP {shown}: `private_ip` applies only to {} mode",
                        modes_where(Mode::eip_maps_to_private_ip, " and ")
                    ),
                );
                None
            }
            None if maps => private_ips.first().copied(),
            None => None,
        }
    }
}
