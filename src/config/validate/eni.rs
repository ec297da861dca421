//! One `[[eni]]`: its identity (name, mac, interface), mode and primary flag, vSwitch subnet,
//! private IPs, prefixes and IPv6. Its EIPs are `eip.rs`. Every mode decision asks a
//! [`Mode`] capability. May import the raw types, the shared address rules and `crate::model`.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use ipnetwork::{Ipv4Network, Ipv6Network};
use macaddr::MacAddr6;

use super::{count_word, modes_where, Validator};
use crate::config::raw::{RawEni, S};
use crate::config::rules::{self, PrefixFault, PrivateIpFault};
use crate::model::valid_ifname;
use crate::model::{mac_text, Eni, Mode};

/// Why a /0 subnet cannot be an ENI's: its on-link route is the uplink table's default route.
const WHOLE_SPACE: &str = "a subnet of the whole address space would put the on-link route where \
    the uplink's default route goes (the kernel refuses the second); give the vSwitch's prefix";

/// The ENI being validated: what every part of its validation needs to word a message.
pub(super) struct EniCtx<'a> {
    pub(super) raw: &'a RawEni,
    /// `eni "name": `, the prefix of every message about it.
    pub(super) ctx: String,
    pub(super) name: String,
    /// The whole `[[eni]]` table.
    pub(super) span: Range<usize>,
    pub(super) mode: Mode,
    pub(super) primary: bool,
}

/// The ENI's IPv4 subnet as far as it parsed.
#[derive(Clone, Copy)]
pub(super) struct Subnet {
    pub(super) cidr: Option<Ipv4Network>,
    pub(super) gateway: Option<Ipv4Addr>,
}

struct V6 {
    addresses: Vec<Ipv6Addr>,
    cidr: Option<Ipv6Network>,
    gateway: Option<Ipv6Addr>,
}

impl Validator {
    pub(super) fn eni(&mut self, se: &S<RawEni>, region: Option<&S<String>>) -> Option<Eni> {
        let e = se.get_ref();
        let before = self.problem_count();
        let name = e.name.get_ref().clone();
        let ctx = format!("eni {name:?}: ");
        let mac = self.identity(e, &ctx);
        // An unknown mode: its own error only, not the checks of a mode the user did not mean.
        let mode = self.mode(e, &ctx)?;
        let x = EniCtx {
            raw: e,
            ctx,
            name,
            span: se.span(),
            mode,
            primary: e.is_primary(),
        };
        self.primary(&x);
        let subnet = self.subnet(&x);
        let private_ips = self.private_ips(&x, subnet);
        let prefixes = self.prefixes(&x, subnet, &private_ips);
        let v6 = self.ipv6(&x);
        let ipv6_prefixes = self.ipv6_prefixes(&x, &v6);
        let eips = self.eips(&x, subnet, &private_ips, &prefixes, region);
        if self.problem_count() > before {
            return None;
        }
        Some(Eni {
            name: x.name,
            mac,
            interface: e.interface.as_ref().map(|i| i.get_ref().clone()),
            id: e.id.clone(),
            primary: x.primary,
            mode,
            cidr: subnet.cidr,
            gateway: subnet.gateway,
            private_ips,
            prefixes: prefixes.into_iter().map(|(n, _)| n).collect(),
            ipv6_prefixes,
            ipv6: v6.addresses,
            ipv6_cidr: v6.cidr,
            ipv6_gateway: v6.gateway,
            eips,
            uplinks: Vec::new(),
            first_table: 0,
            line: self.line(&x.span),
        })
    }

    /// `name`, `mac` and `interface`: how the ENI is labelled and found.
    fn identity(&mut self, e: &RawEni, ctx: &str) -> Option<MacAddr6> {
        if !valid_label(e.name.get_ref()) {
            self.err(
                &e.name.span(),
                format!("{ctx}name must be 1-64 characters of letters, digits, '-', '_' or '.'"),
            );
        }
        let mac = e.mac.as_ref().and_then(|m| {
            let mac = self.parse(
                ctx,
                "mac",
                m,
                |s| s.parse::<MacAddr6>().ok(),
                "a MAC address",
            )?;
            if !rules::unicast_mac(mac) {
                self.err(
                    &m.span(),
                    format!("{ctx}mac {} is not a unicast MAC address", mac_text(mac)),
                );
            }
            Some(mac)
        });
        if let Some(i) = &e.interface {
            if !valid_ifname(i.get_ref()) {
                self.err(
                    &i.span(),
                    format!(
                        "{ctx}interface {:?} is not a valid Linux interface name (1-15 characters, \
                         no '/', ':' or white space)",
                        i.get_ref()
                    ),
                );
            }
        }
        if e.mac.is_none() && e.interface.is_none() {
            self.err(
                &e.name.span(),
                format!("{ctx}needs `mac` or `interface` (or both) to find its interface"),
            );
        }
        mac
    }

    /// `mode` (default nat).
    fn mode(&mut self, e: &RawEni, ctx: &str) -> Option<Mode> {
        let Some(m) = &e.mode else {
            return Some(Mode::DEFAULT);
        };
        let mode = Mode::parse(m.get_ref());
        if mode.is_none() {
            let given = m.get_ref().as_str();
            let known = modes_where(|_| true, ", ");
            let close = crate::config::keys::closest(given, Mode::ALL.map(Mode::as_str))
                .map(|k| format!("; did you mean {k:?}?"))
                .unwrap_or_default();
            self.err(
                &m.span(),
                format!("{ctx}mode = {given:?} is not one of {known}{close}"),
            );
        }
        mode
    }

    /// `primary = true` only with a mode the primary ENI supports.
    fn primary(&mut self, x: &EniCtx<'_>) {
        if x.primary && !x.mode.allowed_on_primary() {
            let span = x
                .raw
                .primary
                .as_ref()
                .map(|p| p.span())
                .unwrap_or(x.span.clone());
            self.err(
                &span,
                format!(
                    "{}the primary ENI supports only {} mode ({} is for secondary ENIs)",
                    x.ctx,
                    modes_where(Mode::allowed_on_primary, " or "),
                    x.mode
                ),
            );
        }
    }

    /// `cidr` and `gateway`: required when the mode needs the vSwitch subnet.
    fn subnet(&mut self, x: &EniCtx<'_>) -> Subnet {
        let (e, ctx) = (x.raw, x.ctx.as_str());
        let cidr = e.cidr.as_ref().and_then(|c| {
            let n = self.parse(ctx, "cidr", c, parse_v4_net, "an IPv4 CIDR (a.b.c.d/len)")?;
            if n.prefix() == 0 {
                self.err(&c.span(), format!("{ctx}cidr {n}: {WHOLE_SPACE}"));
            }
            if n.network() != n.ip() {
                self.err(
                    &c.span(),
                    format!(
                        "{ctx}cidr {n} has host bits set (did you mean {}/{}?)",
                        n.network(),
                        n.prefix()
                    ),
                );
            }
            Some(n)
        });
        let gateway = e.gateway.as_ref().and_then(|g| self.v4(ctx, "gateway", g));
        if x.mode.needs_subnet() {
            let mode = x.mode;
            if e.cidr.is_none() {
                self.err(
                    &x.span,
                    format!("{ctx}{mode} mode requires `cidr` (the vSwitch CIDR)"),
                );
            }
            if e.gateway.is_none() {
                self.err(
                    &x.span,
                    format!("{ctx}{mode} mode requires `gateway` (the vSwitch gateway)"),
                );
            }
        }
        if let (Some(g), Some(gw), Some(net)) = (&e.gateway, gateway, cidr) {
            if !rules::gateway_inside(net, gw) {
                self.err(
                    &g.span(),
                    format!("{ctx}gateway {gw} is not inside cidr {net}"),
                );
            }
        }
        Subnet { cidr, gateway }
    }

    /// `private_ips`: inside the subnet, as many as the mode allows.
    fn private_ips(&mut self, x: &EniCtx<'_>, subnet: Subnet) -> Vec<Ipv4Addr> {
        let (e, ctx) = (x.raw, x.ctx.as_str());
        let mut out = Vec::new();
        for p in &e.private_ips {
            let Some(ip) = self.v4(ctx, "private_ips", p) else {
                continue;
            };
            for fault in rules::private_ip_faults(ip, subnet.cidr, subnet.gateway) {
                let net = subnet.cidr.map(|n| n.to_string()).unwrap_or_default();
                let why = match fault {
                    PrivateIpFault::OutsideCidr => format!("is not inside cidr {net}"),
                    PrivateIpFault::NetworkOrBroadcast => {
                        format!("is the network or broadcast address of {net}")
                    }
                    PrivateIpFault::IsGateway => "is the gateway's address".to_string(),
                };
                self.err(&p.span(), format!("{ctx}private IP {ip} {why}"));
            }
            out.push(ip);
        }
        let (least, most) = x.mode.private_ip_count();
        let mode = x.mode;
        if e.private_ips.len() < least {
            self.err(
                &x.span,
                format!(
                    "{ctx}{mode} mode requires at least {} private IP in `private_ips`",
                    count_word(least)
                ),
            );
        } else if let Some((most, extra)) =
            most.and_then(|m| e.private_ips.get(m).map(|extra| (m, extra)))
        {
            self.err(
                &extra.span(),
                format!(
                    "{ctx}a {mode} ENI lists at most its {} primary private IP (it is not \
                     configured in the OS)",
                    count_word(most)
                ),
            );
        }
        out
    }

    /// `prefixes`: inside the subnet, clear of its addresses and of each other.
    fn prefixes(
        &mut self,
        x: &EniCtx<'_>,
        subnet: Subnet,
        private_ips: &[Ipv4Addr],
    ) -> Vec<(Ipv4Network, Range<usize>)> {
        let ctx = x.ctx.as_str();
        let mut nets: Vec<Ipv4Network> = Vec::new();
        let mut spans = Vec::new();
        for p in x.raw.prefixes.iter().filter(|p| !is_v6_text(p.get_ref())) {
            let Some(n) = self.parse(
                ctx,
                "prefixes",
                p,
                parse_v4_net,
                "an IPv4 prefix (a.b.c.d/len)",
            ) else {
                continue;
            };
            if n.network() != n.ip() {
                self.err(&p.span(), format!("{ctx}prefix {n} has host bits set"));
            }
            if !x.mode.uses_private_ips() {
                self.err(
                    &p.span(),
                    format!(
                        "{ctx}a {} ENI has no usable private addresses: `prefixes` is not allowed",
                        x.mode
                    ),
                );
            }
            nets.push(n);
            spans.push(p.span());
        }
        let faults = rules::all_prefix_faults(&nets, subnet.cidr, subnet.gateway, private_ips);
        for ((n, span), faults) in nets.iter().zip(&spans).zip(faults) {
            for fault in faults {
                let why = match fault {
                    PrefixFault::OutsideCidr => format!(
                        "is not inside cidr {}",
                        subnet.cidr.map(|c| c.to_string()).unwrap_or_default()
                    ),
                    PrefixFault::OverlapsPrivateIp(ip) => format!("overlaps private IP {ip}"),
                    PrefixFault::ContainsGateway(gw) => format!("contains the gateway {gw}"),
                    PrefixFault::OverlapsPrefix(o) => format!("overlaps prefix {o}"),
                };
                self.err(span, format!("{ctx}prefix {n} {why}"));
            }
        }
        nets.into_iter().zip(spans).collect()
    }

    /// The IPv6 entries of `prefixes`: inside `ipv6_cidr`, clear of the ENI's IPv6 addresses,
    /// its IPv6 gateway and each other.
    fn ipv6_prefixes(&mut self, x: &EniCtx<'_>, v6: &V6) -> Vec<Ipv6Network> {
        let ctx = x.ctx.as_str();
        let mut nets: Vec<Ipv6Network> = Vec::new();
        for p in x.raw.prefixes.iter().filter(|p| is_v6_text(p.get_ref())) {
            let what = "an IPv6 prefix (x:y::/len)";
            let Some(n) = self.parse(ctx, "prefixes", p, parse_v6_net, what) else {
                continue;
            };
            let fault = if n.network() != n.ip() {
                Some("has host bits set".to_string())
            } else if !x.mode.uses_private_ips() {
                Some(format!(
                    "is not allowed: a {} ENI has no usable private addresses",
                    x.mode
                ))
            } else if let Some(cidr) = v6
                .cidr
                .filter(|c| !c.contains(n.network()) || c.prefix() > n.prefix())
            {
                Some(format!("is not inside ipv6_cidr {cidr}"))
            } else if v6.cidr.is_none() {
                Some("needs `ipv6_cidr` and `ipv6_gateway`".to_string())
            } else if let Some(ip) = v6.addresses.iter().find(|ip| n.contains(**ip)) {
                Some(format!("overlaps IPv6 address {ip}"))
            } else if let Some(gw) = v6.gateway.filter(|gw| n.contains(*gw)) {
                Some(format!("contains the IPv6 gateway {gw}"))
            } else {
                nets.iter()
                    .find(|o| o.overlaps(n))
                    .map(|o| format!("overlaps prefix {o}"))
            };
            if let Some(why) = fault {
                self.err(&p.span(), format!("{ctx}prefix {n} {why}"));
            }
            nets.push(n);
        }
        nets
    }

    /// `ipv6`, `ipv6_cidr` and `ipv6_gateway`: all three or none.
    fn ipv6(&mut self, x: &EniCtx<'_>) -> V6 {
        let (e, ctx) = (x.raw, x.ctx.as_str());
        let cidr = e
            .ipv6_cidr
            .as_ref()
            .and_then(|c| self.parse(ctx, "ipv6_cidr", c, parse_v6_net, "an IPv6 CIDR"));
        if let (Some(c), Some(n)) = (&e.ipv6_cidr, cidr.filter(|n| n.prefix() == 0)) {
            self.err(&c.span(), format!("{ctx}ipv6_cidr {n}: {WHOLE_SPACE}"));
        }
        let gateway = e
            .ipv6_gateway
            .as_ref()
            .and_then(|g| self.v6(ctx, "ipv6_gateway", g));
        let mut addresses = Vec::new();
        for a in &e.ipv6 {
            let Some(ip) = self.v6(ctx, "ipv6", a) else {
                continue;
            };
            if let Some(net) = cidr.filter(|n| !n.contains(ip)) {
                self.err(
                    &a.span(),
                    format!("{ctx}IPv6 address {ip} is not inside ipv6_cidr {net}"),
                );
            }
            if !rules::ipv6_global(ip) {
                self.err(
                    &a.span(),
                    format!("{ctx}IPv6 address {ip} is not a global unicast address"),
                );
            }
            addresses.push(ip);
        }
        self.ipv6_keys(x);
        if let (Some(g), Some(gw)) = (&e.ipv6_gateway, gateway) {
            if addresses.contains(&gw) {
                self.err(
                    &g.span(),
                    format!("{ctx}ipv6_gateway {gw} is one of this ENI's own IPv6 addresses"),
                );
            } else if !rules::ipv6_gateway_usable(gw, cidr) {
                self.err(
                    &g.span(),
                    format!("{ctx}ipv6_gateway {gw} is neither link-local nor inside ipv6_cidr"),
                );
            }
        }
        V6 {
            addresses,
            cidr,
            gateway,
        }
    }

    /// `ipv6_cidr` and `ipv6_gateway` are required with `ipv6`, and meaningless without it.
    fn ipv6_keys(&mut self, x: &EniCtx<'_>) {
        let (e, ctx) = (x.raw, x.ctx.as_str());
        let v6_prefixes = e.prefixes.iter().any(|p| is_v6_text(p.get_ref()));
        if !e.ipv6.is_empty() || v6_prefixes {
            if e.ipv6_cidr.is_none() {
                self.err(
                    &x.span,
                    format!("{ctx}`ipv6_cidr` is required when `ipv6` is set"),
                );
            }
            if e.ipv6_gateway.is_none() {
                self.err(
                    &x.span,
                    format!("{ctx}`ipv6_gateway` is required when `ipv6` is set"),
                );
            }
        } else if let Some(k) = e.ipv6_cidr.as_ref().or(e.ipv6_gateway.as_ref()) {
            self.err(
                &k.span(),
                format!(
                    "{ctx}`ipv6_cidr` and `ipv6_gateway` need IPv6 addresses in `ipv6` or IPv6 \
                     `prefixes`"
                ),
            );
        }
    }
}

/// An entry of `prefixes` meant as IPv6 (the family is told by the text, so a typo in an
/// IPv6 prefix is reported as such).
pub(super) fn is_v6_text(s: &str) -> bool {
    s.contains(':')
}

/// `a.b.c.d/len` (the length is not optional).
fn parse_v4_net(s: &str) -> Option<Ipv4Network> {
    s.parse::<Ipv4Network>().ok().filter(|_| s.contains('/'))
}

fn parse_v6_net(s: &str) -> Option<Ipv6Network> {
    s.parse::<Ipv6Network>().ok().filter(|_| s.contains('/'))
}

/// An ENI's `name`: 1-64 letters, digits, '-', '_' or '.'.
fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}
