//! Configuration: the TOML schema of DESIGN §3, and its validation into a typed model.
//!
//! Parsing happens in two steps. serde reads the file into "raw" types that keep every value's
//! span (so each message names its line) and rejects unknown keys; validation then checks every
//! rule of DESIGN §2/§3, collecting all problems rather than stopping at the first one.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::path::Path;

use ipnetwork::{Ipv4Network, Ipv6Network};
use macaddr::MacAddr6;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::exit::{self, ExitCode};
use crate::model::layout::{self, Layer, MAIN_RULE_PRIORITY, MAX_ENIS, MAX_RULE_PRIORITY};
use crate::model::{
    Config, Egress, Eip, Eni, Hash, Mode, Routing, RpFilter, Strategy, UplinkTable, Via,
    DEFAULT_MULTI_EIP_QUOTA, MULTI_EIP_REGIONS,
};

/// Default path of the configuration file.
pub const DEFAULT_PATH: &str = "/etc/eniroute/eniroute.toml";

// ---------------------------------------------------------------------------------------------
// Errors and warnings
// ---------------------------------------------------------------------------------------------

/// One problem found in the file, at a line and column (1-based; 0 = the whole file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// An invalid configuration: every problem found, with the file it is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct ConfigError {
    pub path: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if p.line == 0 {
                write!(f, "{}: {}", self.path, p.message)?;
            } else {
                write!(f, "{}:{}:{}: {}", self.path, p.line, p.column, p.message)?;
            }
        }
        Ok(())
    }
}

/// A warning or note: never fails validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub line: usize,
    pub message: String,
    /// A note (information, e.g. a mode's known limits) rather than a warning.
    pub note: bool,
}

/// A loaded, valid configuration with the warnings its validation produced.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: String,
    pub config: Config,
    pub warnings: Vec<Warning>,
}

/// Why a file could not be loaded at all.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(#[from] ConfigError),
}

impl ExitCode for LoadError {
    fn exit_code(&self) -> i32 {
        // An unreadable file is still reported as a config error (exit 65).
        match self {
            LoadError::Read { .. } | LoadError::Invalid(_) => exit::CONFIG,
        }
    }
}

/// Read and validate the file at `path`.
pub fn load_file(path: &Path) -> Result<Loaded, LoadError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: shown.clone(),
        source,
    })?;
    Ok(load_str(&text, &shown)?)
}

/// Validate configuration text; `path` is only used in messages.
pub fn load_str(text: &str, path: &str) -> Result<Loaded, ConfigError> {
    let lines = LineIndex::new(text);
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map(|s| lines.position(s.start)).unwrap_or((0, 0));
        let mut message = e.message().trim_end().to_string();
        if line > 0 {
            if let Some(src) = text.lines().nth(line - 1) {
                message.push_str(&format!("\n  {line} | {src}"));
            }
        }
        ConfigError {
            path: path.to_string(),
            problems: vec![Problem {
                line,
                column,
                message,
            }],
        }
    })?;
    let mut v = Validator {
        lines,
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    let config = v.config(raw);
    if v.problems.is_empty() {
        if let Some(config) = config {
            return Ok(Loaded {
                path: path.to_string(),
                config,
                warnings: v.warnings,
            });
        }
    }
    v.problems.sort_by_key(|p| (p.line, p.column));
    v.problems.dedup();
    Err(ConfigError {
        path: path.to_string(),
        problems: v.problems,
    })
}

// ---------------------------------------------------------------------------------------------
// Raw serde types: every value keeps its span
// ---------------------------------------------------------------------------------------------

type S<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    region: Option<S<String>>,
    routing: Option<S<RawRouting>>,
    #[serde(default)]
    eni: Vec<S<RawEni>>,
    egress: Option<S<RawEgress>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouting {
    table_base: Option<S<i64>>,
    rule_priority: Option<S<i64>>,
    protocol: Option<S<i64>>,
    rp_filter: Option<S<String>>,
    arp_isolation: Option<bool>,
    verify: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEni {
    name: S<String>,
    mac: Option<S<String>>,
    interface: Option<S<String>>,
    id: Option<String>,
    primary: Option<S<bool>>,
    mode: Option<S<String>>,
    cidr: Option<S<String>>,
    gateway: Option<S<String>>,
    #[serde(default)]
    private_ips: Vec<S<String>>,
    #[serde(default)]
    prefixes: Vec<S<String>>,
    #[serde(default)]
    ipv6: Vec<S<String>>,
    ipv6_cidr: Option<S<String>>,
    ipv6_gateway: Option<S<String>>,
    /// multi-eip only: a raised EIP quota (default 10).
    eip_quota: Option<S<i64>>,
    #[serde(default)]
    eip: Vec<S<RawEip>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEip {
    address: S<String>,
    id: Option<String>,
    private_ip: Option<S<String>>,
    prefix: Option<S<i64>>,
    gateway: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEgress {
    strategy: Option<S<String>>,
    hash: Option<S<String>>,
    #[serde(default)]
    via: Vec<S<RawVia>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVia {
    eni: S<String>,
    source: Option<S<String>>,
    weight: Option<S<i64>>,
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    /// 1-based (line, column) of a byte offset.
    fn position(&self, offset: usize) -> (usize, usize) {
        let idx = match self.starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        (idx + 1, offset - self.starts[idx] + 1)
    }
}

struct Validator {
    lines: LineIndex,
    problems: Vec<Problem>,
    warnings: Vec<Warning>,
}

/// Where each address was declared: for the "appears twice" rule.
struct Seen {
    what: &'static str,
    eni: String,
    line: usize,
}

impl Validator {
    fn line(&self, span: &Range<usize>) -> usize {
        self.lines.position(span.start).0
    }

    fn err(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let (line, column) = self.lines.position(span.start);
        self.problems.push(Problem {
            line,
            column,
            message: message.into(),
        });
    }

    fn warn(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let line = self.line(span);
        self.warnings.push(Warning {
            line,
            message: message.into(),
            note: false,
        });
    }

    fn note(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let line = self.line(span);
        self.warnings.push(Warning {
            line,
            message: message.into(),
            note: true,
        });
    }

    /// Parse a spanned string with `parse`, reporting `what` on failure.
    fn parse<T>(
        &mut self,
        ctx: &str,
        key: &str,
        v: &S<String>,
        parse: impl FnOnce(&str) -> Option<T>,
        expected: &str,
    ) -> Option<T> {
        let r = parse(v.get_ref().trim());
        if r.is_none() {
            self.err(
                &v.span(),
                format!("{ctx}{key} = {:?} is not {expected}", v.get_ref()),
            );
        }
        r
    }

    fn v4(&mut self, ctx: &str, key: &str, v: &S<String>) -> Option<Ipv4Addr> {
        self.parse(ctx, key, v, |s| s.parse().ok(), "an IPv4 address")
    }

    fn v6(&mut self, ctx: &str, key: &str, v: &S<String>) -> Option<Ipv6Addr> {
        self.parse(ctx, key, v, |s| s.parse().ok(), "an IPv6 address")
    }

    fn int_in(&mut self, ctx: &str, key: &str, v: &S<i64>, lo: i64, hi: i64) -> Option<i64> {
        let n = *v.get_ref();
        if n < lo || n > hi {
            self.err(
                &v.span(),
                format!("{ctx}{key} = {n} is out of range ({lo}..={hi})"),
            );
            None
        } else {
            Some(n)
        }
    }

    fn config(&mut self, raw: RawConfig) -> Option<Config> {
        let routing = match &raw.routing {
            Some(r) => self.routing(r.get_ref()),
            None => Some(Routing::default()),
        };
        let region = raw.region.as_ref().map(|r| r.get_ref().clone());

        if raw.eni.is_empty() {
            self.problems.push(Problem {
                line: 0,
                column: 0,
                message: "no [[eni]] is declared: there is nothing to route".into(),
            });
        }
        if raw.eni.len() > MAX_ENIS {
            let span = raw.eni[MAX_ENIS].span();
            self.err(
                &span,
                format!("at most {MAX_ENIS} ENIs are supported (table allocation)"),
            );
        }

        let mut enis = Vec::new();
        let mut ok = true;
        for e in &raw.eni {
            match self.eni(e, region.as_deref(), raw.region.as_ref()) {
                Some(eni) => enis.push(eni),
                None => ok = false,
            }
        }
        self.cross_eni(&raw.eni, &enis, ok);

        let egress = match &raw.egress {
            Some(e) => self.egress(e, &enis, ok),
            None => None,
        };

        let routing = routing?;
        if ok {
            self.tables(&routing, &mut enis, raw.routing.as_ref());
        }
        if !ok || (raw.egress.is_some() && egress.is_none()) {
            return None;
        }
        Some(Config {
            region,
            routing,
            enis,
            egress,
        })
    }

    fn routing(&mut self, r: &RawRouting) -> Option<Routing> {
        let d = Routing::default();
        let ctx = "routing.";
        // Every field is checked (all problems are reported), then any failure fails all.
        let table_base = match &r.table_base {
            Some(v) => self
                .int_in(ctx, "table_base", v, 1, u32::MAX as i64)
                .map(|n| n as u32),
            None => Some(d.table_base),
        };
        let rule_priority = match &r.rule_priority {
            Some(v) => {
                let hi = MAX_RULE_PRIORITY as i64;
                let n = *v.get_ref();
                if (1..=hi).contains(&n) {
                    Some(n as u32)
                } else {
                    self.err(
                        &v.span(),
                        format!(
                            "routing.rule_priority = {n} is out of range (1..={hi}): every layer up \
                             to priority + {} must come before the kernel's \
                             `lookup main` rule at {MAIN_RULE_PRIORITY}",
                            Layer::TOP.offset()
                        ),
                    );
                    None
                }
            }
            None => Some(d.rule_priority),
        };
        let protocol = match &r.protocol {
            Some(v) => {
                let n = *v.get_ref();
                if (5..=255).contains(&n) {
                    Some(n as u8)
                } else {
                    self.err(
                        &v.span(),
                        format!(
                            "routing.protocol = {n} is out of range (5..=255): 0-4 are the \
                             kernel's own (unspec, redirect, kernel, boot, static)"
                        ),
                    );
                    None
                }
            }
            None => Some(d.protocol),
        };
        let rp_filter = match &r.rp_filter {
            Some(v) => match v.get_ref().as_str() {
                "loose" => Some(RpFilter::Loose),
                "strict" => Some(RpFilter::Strict),
                "off" => Some(RpFilter::Off),
                "keep" => Some(RpFilter::Keep),
                other => {
                    self.err(
                        &v.span(),
                        format!(
                            "routing.rp_filter = {other:?} is not one of loose, strict, off, keep"
                        ),
                    );
                    None
                }
            },
            None => Some(d.rp_filter),
        };
        Some(Routing {
            table_base: table_base?,
            rule_priority: rule_priority?,
            protocol: protocol?,
            rp_filter: rp_filter?,
            arp_isolation: r.arp_isolation.unwrap_or(d.arp_isolation),
            verify: r.verify.unwrap_or(d.verify),
        })
    }

    fn eni(
        &mut self,
        se: &S<RawEni>,
        region: Option<&str>,
        region_span: Option<&S<String>>,
    ) -> Option<Eni> {
        let e = se.get_ref();
        let name = e.name.get_ref().clone();
        let ctx = format!("eni {name:?}: ");
        let ctx = ctx.as_str();
        let espan = se.span();
        let before = self.problems.len();

        if !valid_label(&name) {
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
            if mac.is_nil() || mac.is_multicast() {
                self.err(
                    &m.span(),
                    format!(
                        "{ctx}mac {} is not a unicast MAC address",
                        mac.to_string().to_lowercase()
                    ),
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

        let mode = match &e.mode {
            None => Mode::Nat,
            Some(m) => match m.get_ref().as_str() {
                "nat" => Mode::Nat,
                "cut-through" => Mode::CutThrough,
                "multi-eip" => Mode::MultiEip,
                other => {
                    self.err(
                        &m.span(),
                        format!("{ctx}mode = {other:?} is not one of nat, cut-through, multi-eip"),
                    );
                    Mode::Nat
                }
            },
        };
        let primary = e.primary.as_ref().map(|p| *p.get_ref()).unwrap_or(false);
        if primary && mode != Mode::Nat {
            let span = e
                .primary
                .as_ref()
                .map(|p| p.span())
                .unwrap_or(espan.clone());
            self.err(
                &span,
                format!(
                    "{ctx}the primary ENI supports only nat mode ({mode} is for secondary ENIs)"
                ),
            );
        }

        let cidr = e.cidr.as_ref().and_then(|c| {
            self.parse(
                ctx,
                "cidr",
                c,
                |s| s.parse::<Ipv4Network>().ok().filter(|_| s.contains('/')),
                "an IPv4 CIDR (a.b.c.d/len)",
            )
        });
        if let (Some(c), Some(n)) = (&e.cidr, cidr) {
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
        }
        let gateway = e.gateway.as_ref().and_then(|g| self.v4(ctx, "gateway", g));
        let needs_subnet = mode != Mode::CutThrough;
        if needs_subnet {
            if e.cidr.is_none() {
                self.err(
                    &espan,
                    format!("{ctx}{mode} mode requires `cidr` (the vSwitch CIDR)"),
                );
            }
            if e.gateway.is_none() {
                self.err(
                    &espan,
                    format!("{ctx}{mode} mode requires `gateway` (the vSwitch gateway)"),
                );
            }
        }
        if let (Some(g), Some(gw), Some(net)) = (&e.gateway, gateway, cidr) {
            if !net.contains(gw) {
                self.err(
                    &g.span(),
                    format!("{ctx}gateway {gw} is not inside cidr {net}"),
                );
            }
        }

        let mut private_ips = Vec::new();
        for p in &e.private_ips {
            if let Some(ip) = self.v4(ctx, "private_ips", p) {
                if let Some(net) = cidr {
                    if !net.contains(ip) {
                        self.err(
                            &p.span(),
                            format!("{ctx}private IP {ip} is not inside cidr {net}"),
                        );
                    } else if net.prefix() < 31 && (ip == net.network() || ip == net.broadcast()) {
                        self.err(
                            &p.span(),
                            format!(
                                "{ctx}private IP {ip} is the network or broadcast address of {net}"
                            ),
                        );
                    }
                }
                if Some(ip) == gateway {
                    self.err(
                        &p.span(),
                        format!("{ctx}private IP {ip} is the gateway's address"),
                    );
                }
                private_ips.push(ip);
            }
        }
        match mode {
            Mode::Nat | Mode::MultiEip if e.private_ips.is_empty() => self.err(
                &espan,
                format!("{ctx}{mode} mode requires at least one private IP in `private_ips`"),
            ),
            Mode::CutThrough if e.private_ips.len() > 1 => self.err(
                &e.private_ips[1].span(),
                format!(
                    "{ctx}a cut-through ENI lists at most its one primary private IP (it is not \
                     configured in the OS)"
                ),
            ),
            _ => {}
        }

        let mut prefixes = Vec::new();
        let mut prefix_spans = Vec::new();
        for p in &e.prefixes {
            let Some(n) = self.parse(
                ctx,
                "prefixes",
                p,
                |s| s.parse::<Ipv4Network>().ok().filter(|_| s.contains('/')),
                "an IPv4 prefix (a.b.c.d/len)",
            ) else {
                continue;
            };
            if n.network() != n.ip() {
                self.err(&p.span(), format!("{ctx}prefix {n} has host bits set"));
            }
            if mode == Mode::CutThrough {
                self.err(
                    &p.span(),
                    format!("{ctx}a cut-through ENI has no usable private addresses: `prefixes` is not allowed"),
                );
            }
            if let Some(net) = cidr {
                if !(net.contains(n.network()) && net.contains(n.broadcast())) {
                    self.err(
                        &p.span(),
                        format!("{ctx}prefix {n} is not inside cidr {net}"),
                    );
                }
            }
            if let Some(ip) = private_ips.iter().find(|ip| n.contains(**ip)) {
                self.err(
                    &p.span(),
                    format!("{ctx}prefix {n} overlaps private IP {ip}"),
                );
            }
            if let Some(gw) = gateway.filter(|gw| n.contains(*gw)) {
                self.err(
                    &p.span(),
                    format!("{ctx}prefix {n} contains the gateway {gw}"),
                );
            }
            if let Some(o) = prefixes.iter().find(|o: &&Ipv4Network| o.overlaps(n)) {
                self.err(&p.span(), format!("{ctx}prefix {n} overlaps prefix {o}"));
            }
            prefixes.push(n);
            prefix_spans.push(p.span());
        }

        // IPv6
        let ipv6_cidr = e.ipv6_cidr.as_ref().and_then(|c| {
            self.parse(
                ctx,
                "ipv6_cidr",
                c,
                |s| s.parse::<Ipv6Network>().ok().filter(|_| s.contains('/')),
                "an IPv6 CIDR",
            )
        });
        let ipv6_gateway = e
            .ipv6_gateway
            .as_ref()
            .and_then(|g| self.v6(ctx, "ipv6_gateway", g));
        let mut ipv6 = Vec::new();
        for a in &e.ipv6 {
            if let Some(ip) = self.v6(ctx, "ipv6", a) {
                if let Some(net) = ipv6_cidr {
                    if !net.contains(ip) {
                        self.err(
                            &a.span(),
                            format!("{ctx}IPv6 address {ip} is not inside ipv6_cidr {net}"),
                        );
                    }
                }
                if ip.is_unicast_link_local() || ip.is_multicast() || ip.is_loopback() {
                    self.err(
                        &a.span(),
                        format!("{ctx}IPv6 address {ip} is not a global unicast address"),
                    );
                }
                ipv6.push(ip);
            }
        }
        if !e.ipv6.is_empty() {
            if e.ipv6_cidr.is_none() {
                self.err(
                    &espan,
                    format!("{ctx}`ipv6_cidr` is required when `ipv6` is set"),
                );
            }
            if e.ipv6_gateway.is_none() {
                self.err(
                    &espan,
                    format!("{ctx}`ipv6_gateway` is required when `ipv6` is set"),
                );
            }
        } else if let Some(k) = e.ipv6_cidr.as_ref().or(e.ipv6_gateway.as_ref()) {
            self.err(
                &k.span(),
                format!("{ctx}`ipv6_cidr` and `ipv6_gateway` need IPv6 addresses in `ipv6`"),
            );
        }
        if let (Some(g), Some(gw)) = (&e.ipv6_gateway, ipv6_gateway) {
            let in_cidr = ipv6_cidr.map(|n| n.contains(gw)).unwrap_or(false);
            if !(gw.is_unicast_link_local() || in_cidr) {
                self.err(
                    &g.span(),
                    format!("{ctx}ipv6_gateway {gw} is neither link-local nor inside ipv6_cidr"),
                );
            }
        }

        // EIPs
        let quota = match (&e.eip_quota, mode) {
            (Some(q), Mode::MultiEip) => self
                .int_in(ctx, "eip_quota", q, 1, 1000)
                .map(|n| n as u32)
                .unwrap_or(DEFAULT_MULTI_EIP_QUOTA),
            (Some(q), _) => {
                self.err(
                    &q.span(),
                    format!("{ctx}`eip_quota` applies only to multi-eip mode"),
                );
                DEFAULT_MULTI_EIP_QUOTA
            }
            (None, _) => DEFAULT_MULTI_EIP_QUOTA,
        };
        let mut eips = Vec::new();
        let mut eip_spans = Vec::new();
        for se in &e.eip {
            if let Some(eip) = self.eip(ctx, se, mode, &private_ips, gateway) {
                eips.push(eip);
                eip_spans.push(se.span());
            }
        }
        for (n, span) in prefixes.iter().zip(&prefix_spans) {
            if let Some(x) = eips.iter().find(|x| n.contains(x.address)) {
                self.err(
                    span,
                    format!("{ctx}prefix {n} contains EIP {} of this ENI", x.address),
                );
            }
        }
        match mode {
            Mode::Nat if primary && e.eip.len() > 1 => self.err(
                &e.eip[1].span(),
                format!("{ctx}the primary ENI holds at most one EIP (nat mode)"),
            ),
            Mode::CutThrough if e.eip.len() != 1 => self.err(
                &espan,
                format!(
                    "{ctx}a cut-through ENI holds exactly one EIP (it has {})",
                    e.eip.len()
                ),
            ),
            Mode::MultiEip if e.eip.len() > quota as usize => self.err(
                &e.eip[quota as usize].span(),
                format!(
                    "{ctx}a multi-eip ENI holds at most {quota} EIPs (set `eip_quota` if your \
                     quota was raised)"
                ),
            ),
            _ => {}
        }
        if mode == Mode::Nat {
            // at most one EIP per private IP
            let mut by_private: BTreeMap<Ipv4Addr, Vec<(Ipv4Addr, Range<usize>)>> = BTreeMap::new();
            for (eip, span) in eips.iter().zip(&eip_spans) {
                if let Some(p) = eip.private_ip {
                    by_private
                        .entry(p)
                        .or_default()
                        .push((eip.address, span.clone()));
                }
            }
            for (p, list) in by_private {
                if let Some((_, span)) = list.get(1) {
                    let names: Vec<String> = list.iter().map(|(a, _)| a.to_string()).collect();
                    self.err(
                        span,
                        format!(
                            "{ctx}nat mode maps at most one EIP per private IP; {} both map to {p}",
                            names.join(" and ")
                        ),
                    );
                }
            }
            if !eips.is_empty() {
                self.note(
                    &espan,
                    format!(
                        "eni {name:?}: nat mode has no ALG: H.323, SIP, DNS and RTSP through its \
                         EIPs may break (use cut-through or multi-eip for them)"
                    ),
                );
            }
        }
        if mode == Mode::MultiEip
            && !region
                .map(|r| MULTI_EIP_REGIONS.contains(&r))
                .unwrap_or(false)
        {
            let span = region_span.map(|r| r.span()).unwrap_or(espan.clone());
            let where_ = region
                .map(|r| format!("region {r:?}"))
                .unwrap_or("an undeclared region".into());
            self.warn(
                &span,
                format!(
                    "eni {name:?}: multi-eip mode was offered only in {}; check that {where_} supports it",
                    MULTI_EIP_REGIONS.join(", ")
                ),
            );
        }

        if self.problems.len() > before {
            return None;
        }
        Some(Eni {
            name,
            mac,
            interface: e.interface.as_ref().map(|i| i.get_ref().clone()),
            id: e.id.clone(),
            primary,
            mode,
            cidr,
            gateway,
            private_ips,
            prefixes,
            ipv6,
            ipv6_cidr,
            ipv6_gateway,
            eips,
            uplinks: Vec::new(),
            first_table: 0,
            line: self.line(&espan),
        })
    }

    fn eip(
        &mut self,
        ctx: &str,
        se: &S<RawEip>,
        mode: Mode,
        private_ips: &[Ipv4Addr],
        eni_gateway: Option<Ipv4Addr>,
    ) -> Option<Eip> {
        let r = se.get_ref();
        let before = self.problems.len();
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
        let prefix = match (&r.prefix, mode) {
            (Some(p), Mode::Nat) => {
                self.err(
                    &p.span(),
                    format!("{ctx}EIP {shown}: `prefix` applies only to cut-through and multi-eip (a nat EIP is not in the OS)"),
                );
                32
            }
            (Some(p), _) => self.int_in(ctx, "eip.prefix", p, 1, 32).unwrap_or(32) as u8,
            (None, _) => 32,
        };
        let gateway = match (&r.gateway, mode) {
            (Some(g), Mode::Nat) => {
                self.err(
                    &g.span(),
                    format!(
                        "{ctx}EIP {shown}: `gateway` applies only to cut-through and multi-eip"
                    ),
                );
                None
            }
            (Some(g), _) => self.v4(ctx, "eip.gateway", g),
            (None, Mode::CutThrough) => {
                self.err(
                    &se.span(),
                    format!("{ctx}EIP {shown}: a cut-through EIP requires `gateway`"),
                );
                None
            }
            (None, Mode::MultiEip) => eni_gateway,
            (None, Mode::Nat) => None,
        };
        if let (Some(a), Some(gw), Some(g)) = (address, gateway, &r.gateway) {
            if gw == a {
                self.err(
                    &g.span(),
                    format!("{ctx}EIP {a}: the gateway is the EIP itself"),
                );
            } else if prefix < 32 {
                let net = Ipv4Network::new(a, prefix).ok();
                if let Some(net) = net.filter(|n| !n.contains(gw)) {
                    self.err(
                        &g.span(),
                        format!(
                            "{ctx}EIP {a}: gateway {gw} is not inside {}/{}",
                            net.network(),
                            prefix
                        ),
                    );
                }
            }
        }
        let private_ip = match (&r.private_ip, mode) {
            (Some(p), Mode::Nat) => {
                let ip = self.v4(ctx, "eip.private_ip", p);
                if let Some(ip) = ip {
                    if !private_ips.contains(&ip) {
                        self.err(
                            &p.span(),
                            format!("{ctx}EIP {shown}: private_ip {ip} is not one of this ENI's private_ips"),
                        );
                    }
                }
                ip
            }
            (Some(p), _) => {
                self.err(
                    &p.span(),
                    format!("{ctx}EIP {shown}: `private_ip` applies only to nat mode"),
                );
                None
            }
            (None, Mode::Nat) => private_ips.first().copied(),
            (None, _) => None,
        };
        if self.problems.len() > before {
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

    /// Rules across ENIs: one primary, no name/MAC/interface/address/EIP twice.
    fn cross_eni(&mut self, raw: &[S<RawEni>], enis: &[Eni], all_valid: bool) {
        let primaries: Vec<&S<RawEni>> = raw
            .iter()
            .filter(|e| {
                e.get_ref()
                    .primary
                    .as_ref()
                    .map(|p| *p.get_ref())
                    .unwrap_or(false)
            })
            .collect();
        if primaries.len() > 1 {
            let names: Vec<String> = primaries
                .iter()
                .map(|e| e.get_ref().name.get_ref().clone())
                .collect();
            self.err(
                &primaries[1].span(),
                format!("at most one ENI may be primary; {} are", names.join(", ")),
            );
        }
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut macs: HashMap<String, (String, usize)> = HashMap::new();
        let mut ifnames: HashMap<String, (String, usize)> = HashMap::new();
        for e in raw {
            let r = e.get_ref();
            let name = r.name.get_ref().clone();
            let line = self.line(&r.name.span());
            if let Some(first) = names.insert(name.clone(), line) {
                self.err(
                    &r.name.span(),
                    format!("eni name {name:?} appears twice (first at line {first})"),
                );
            }
            if let Some(m) = &r.mac {
                if let Ok(mac) = m.get_ref().trim().parse::<MacAddr6>() {
                    let key = mac.to_string().to_lowercase();
                    if let Some((other, l)) = macs.insert(key.clone(), (name.clone(), line)) {
                        self.err(&m.span(), format!("eni {name:?}: mac {key} appears twice (also eni {other:?}, line {l})"));
                    }
                }
            }
            if let Some(i) = &r.interface {
                if let Some((other, l)) = ifnames.insert(i.get_ref().clone(), (name.clone(), line))
                {
                    self.err(&i.span(), format!("eni {name:?}: interface {:?} appears twice (also eni {other:?}, line {l})", i.get_ref()));
                }
            }
        }
        if !all_valid {
            return;
        }
        // Addresses: every private IP, prefix, IPv6 address and EIP is unique across the file.
        let mut seen: HashMap<IpAddr, Seen> = HashMap::new();
        let mut prefix_owner: Vec<(Ipv4Network, String)> = Vec::new();
        for (e, re) in enis.iter().zip(raw) {
            let r = re.get_ref();
            let mut record =
                |v: &mut Validator, ip: IpAddr, what: &'static str, span: Range<usize>| {
                    let line = v.line(&span);
                    if let Some(s) = seen.get(&ip) {
                        let msg = format!(
                            "eni {:?}: {what} {ip} appears twice (also {} of eni {:?}, line {})",
                            e.name, s.what, s.eni, s.line
                        );
                        v.err(&span, msg);
                    } else {
                        seen.insert(
                            ip,
                            Seen {
                                what,
                                eni: e.name.clone(),
                                line,
                            },
                        );
                    }
                };
            for (ip, s) in e.private_ips.iter().zip(&r.private_ips) {
                record(self, IpAddr::V4(*ip), "private IP", s.span());
            }
            for (ip, s) in e.ipv6.iter().zip(&r.ipv6) {
                record(self, IpAddr::V6(*ip), "IPv6 address", s.span());
            }
            for (eip, s) in e.eips.iter().zip(&r.eip) {
                record(
                    self,
                    IpAddr::V4(eip.address),
                    "EIP",
                    s.get_ref().address.span(),
                );
            }
            for p in &e.prefixes {
                prefix_owner.push((*p, e.name.clone()));
            }
        }
        for (e, re) in enis.iter().zip(raw) {
            for (p, s) in e.prefixes.iter().zip(&re.get_ref().prefixes) {
                if let Some((ip, owner)) = seen
                    .iter()
                    .find_map(|(ip, s)| match ip {
                        IpAddr::V4(v4) if p.contains(*v4) => Some((*v4, s.eni.clone())),
                        _ => None,
                    })
                    .filter(|(_, owner)| owner != &e.name)
                {
                    self.err(
                        &s.span(),
                        format!(
                            "eni {:?}: prefix {p} contains {ip} of eni {owner:?}",
                            e.name
                        ),
                    );
                }
                if let Some((o, owner)) = prefix_owner
                    .iter()
                    .find(|(o, owner)| owner != &e.name && o.overlaps(*p))
                {
                    self.err(
                        &s.span(),
                        format!(
                            "eni {:?}: prefix {p} overlaps prefix {o} of eni {owner:?}",
                            e.name
                        ),
                    );
                }
            }
        }
    }

    fn egress(&mut self, se: &S<RawEgress>, enis: &[Eni], enis_valid: bool) -> Option<Egress> {
        let r = se.get_ref();
        let before = self.problems.len();
        let ctx = "egress: ";
        let strategy = match &r.strategy {
            None => Strategy::Failover,
            Some(s) => match s.get_ref().as_str() {
                "failover" => Strategy::Failover,
                "balance" => Strategy::Balance,
                other => {
                    self.err(
                        &s.span(),
                        format!("{ctx}strategy = {other:?} is not one of failover, balance"),
                    );
                    Strategy::Failover
                }
            },
        };
        let hash = match &r.hash {
            None => Hash::L4,
            Some(h) => {
                if strategy != Strategy::Balance {
                    self.err(
                        &h.span(),
                        format!("{ctx}`hash` applies only to strategy = \"balance\""),
                    );
                }
                match h.get_ref().as_str() {
                    "l3" => Hash::L3,
                    "l4" => Hash::L4,
                    other => {
                        self.err(
                            &h.span(),
                            format!("{ctx}hash = {other:?} is not one of l3, l4"),
                        );
                        Hash::L4
                    }
                }
            }
        };
        if r.via.is_empty() {
            self.err(
                &se.span(),
                format!("{ctx}at least one [[egress.via]] is required"),
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
                    format!("{ctx}eni {name:?} is listed twice (first at line {first})"),
                );
            }
            let eni = enis.iter().find(|e| e.name == name);
            if eni.is_none() && enis_valid {
                self.err(
                    &v.eni.span(),
                    format!("{ctx}via eni {name:?} is not a declared ENI"),
                );
            }
            if let Some(e) = eni {
                if e.uplink_gateways().is_empty() {
                    self.err(
                        &v.eni.span(),
                        format!("{ctx}eni {name:?} has no gateway to send through"),
                    );
                }
            }
            let weight = match &v.weight {
                Some(w) => {
                    if strategy != Strategy::Balance {
                        self.err(&w.span(), format!("{ctx}via {name:?}: `weight` applies only to strategy = \"balance\""));
                    }
                    self.int_in(ctx, "via.weight", w, 1, 256).unwrap_or(1) as u16
                }
                None => 1,
            };
            let source = v.source.as_ref().and_then(|s| {
                if strategy != Strategy::Failover {
                    self.err(&s.span(), format!("{ctx}via {name:?}: `source` applies only to strategy = \"failover\""));
                }
                let ip = self.parse(ctx, "via.source", s, |t| t.parse::<IpAddr>().ok(), "an IP address")?;
                if let Some(e) = eni {
                    if !source_belongs(e, ip) {
                        self.err(&s.span(), format!("{ctx}via {name:?}: source {ip} is not a usable address of eni {name:?} (its private IPs, IPv6 addresses or EIPs)"));
                    }
                }
                Some(ip)
            });
            via.push(Via {
                eni: name,
                source,
                weight,
            });
        }
        if self.problems.len() > before {
            return None;
        }
        Some(Egress {
            strategy,
            hash,
            via,
        })
    }

    /// Allocate every ENI's uplink tables ([`layout::uplink_table`]); each one must avoid
    /// 0 and 253-255 and fit 32 bits, like the egress table.
    fn tables(&mut self, routing: &Routing, enis: &mut [Eni], raw: Option<&S<RawRouting>>) {
        let span = raw
            .and_then(|r| r.get_ref().table_base.as_ref().map(|t| t.span()))
            .or_else(|| raw.map(|r| r.span()))
            .unwrap_or(0..0);
        let base = routing.table_base;
        let mut check = |what: String, t: Option<u32>| -> Option<u32> {
            match t {
                None => self.err(
                    &span,
                    format!("routing.table_base = {base}: {what} does not fit a 32-bit table id"),
                ),
                Some(t) if layout::reserved_table(t).is_some() => self.err(
                    &span,
                    format!(
                        "routing.table_base = {base}: {what} would be table {t}, which is reserved \
                         (0, 253 default, 254 main, 255 local)"
                    ),
                ),
                Some(t) => return Some(t),
            }
            None
        };
        check("the egress table".into(), Some(layout::egress_table(base)));
        for (k, e) in enis.iter_mut().enumerate() {
            let gateways = e.uplink_gateways();
            // Every table is checked (and every problem reported), for at least one uplink.
            let tables: Vec<Option<u32>> = (0..gateways.len().max(1))
                .map(|j| {
                    check(
                        format!("eni {:?}'s uplink table {}", e.name, j),
                        layout::uplink_table(base, k, j),
                    )
                })
                .collect();
            e.first_table = tables.first().copied().flatten().unwrap_or_default();
            e.uplinks = gateways
                .into_iter()
                .zip(tables)
                .filter_map(|(gateway, t)| t.map(|table| UplinkTable { gateway, table }))
                .collect();
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

/// Why an address cannot be an EIP, if it cannot.
pub fn not_public(a: Ipv4Addr) -> Option<&'static str> {
    let o = a.octets();
    if a.is_private() {
        Some("RFC 1918 private range")
    } else if a.is_loopback() {
        Some("loopback")
    } else if a.is_link_local() {
        Some("link-local")
    } else if a.is_multicast() {
        Some("multicast")
    } else if a.is_unspecified() || o[0] == 0 {
        Some("'this network' range 0.0.0.0/8")
    } else if a.is_broadcast() {
        Some("broadcast")
    } else if o[0] == 100 && (64..128).contains(&o[1]) {
        Some("shared address space 100.64.0.0/10")
    } else if o[0] >= 240 {
        Some("reserved range 240.0.0.0/4")
    } else {
        None
    }
}

fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// A name the kernel accepts for an interface (IFNAMSIZ - 1 bytes, no '/', ':' or space).
pub fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && !s
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}
