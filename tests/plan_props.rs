//! Property tests of the planner over random valid configs.
//!
//! A generator builds random *valid* configurations (1-6 ENIs in every mode, private IPs in
//! random /24 or /16 vSwitches that ENIs may share, prefixes, public EIPs alone or in EIP
//! subnets with their own gateway, IPv6, optional [routing] and [egress]) as TOML text and runs
//! them through `load_str`. Then:
//!
//! - the planner never panics, without a host view and with a random set of host links, and
//!   finds exactly the ENIs whose links are there;
//! - after aggregation, every rule's source prefix covers only true sources of its own uplink
//!   (never another uplink's, never a non-source), and every true source is covered;
//! - appending an ENI, or an EIP to a multi-eip ENI, keeps every existing uplink's table and
//!   every existing route and rule;
//! - rule actions are the plan's tables or main; priorities are exactly P, P+100, P+200, P+300;
//!   no table is 0 or 253-255.
//!
//! Addresses: vSwitches in 192.168.0.0/16 and 10.0.0.0/8, loose private IPs in 172.16.0.0/12,
//! IPv6 in 2001:db8::/32; EIPs from public ranges.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use eniroute::config::load_str;
use eniroute::model::layout::MAIN_TABLE;
use eniroute::model::Family;
use eniroute::model::HostLink;
use eniroute::model::{Config, Mode};
use eniroute::plan::{desired as plan, Desired};
use ipnet::{IpNet, Ipv4Net};
use ipnetwork::IpNetwork;
use macaddr::MacAddr6;
use proptest::prelude::*;
use proptest::{collection::vec, option};

// ---------------------------------------------------------------------------------------------
// Specs: what proptest generates (plain numbers, so they shrink)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GMode {
    Nat,
    Multi,
    Cut,
}

#[derive(Debug, Clone)]
struct EipSpec {
    seed: u32,
    /// nat: ignored; multi-eip: 0 = the ENI's gateway (/32), 1 = a new EIP subnet, 2 = an
    /// existing EIP subnet; cut-through: 0 = /32 with a gateway of its own, 1 new, 2 existing.
    pool: u8,
    /// nat: write `private_ip` even where it is the default.
    explicit: bool,
}

#[derive(Debug, Clone)]
struct EniSpec {
    mode: GMode,
    /// 0: mac only, 1: interface only, 2: both.
    ident: u8,
    /// Share the vSwitch of an earlier ENI.
    share: bool,
    /// A /16 vSwitch (else /24).
    wide: bool,
    net: u32,
    hosts: Vec<u32>,
    prefixes: Vec<(u8, u32)>,
    v6: Option<(Vec<u32>, bool)>,
    eips: Vec<EipSpec>,
    ct_private: bool,
    ct_subnet: bool,
    primary: bool,
    quota: Option<u32>,
}

#[derive(Debug, Clone)]
struct EgressSpec {
    balance: bool,
    hash: Option<bool>,
    vias: Vec<(u32, Option<u16>, Option<u32>)>,
}

#[derive(Debug, Clone)]
struct RoutingSpec {
    base_kind: u8,
    base_seed: u32,
    priority: u32,
    protocol: u8,
    rp: u8,
    arp: bool,
    verify: bool,
}

#[derive(Debug, Clone)]
struct Spec {
    enis: Vec<EniSpec>,
    egress: Option<EgressSpec>,
    routing: Option<RoutingSpec>,
    region: u8,
}

fn eip_spec() -> impl Strategy<Value = EipSpec> {
    (any::<u32>(), 0u8..3, any::<bool>()).prop_map(|(seed, pool, explicit)| EipSpec {
        seed,
        pool,
        explicit,
    })
}

fn eni_spec() -> impl Strategy<Value = EniSpec> {
    (
        prop_oneof![3 => Just(GMode::Nat), 2 => Just(GMode::Multi), 1 => Just(GMode::Cut)],
        0u8..3,
        any::<bool>(),
        any::<bool>(),
        any::<u32>(),
        vec(any::<u32>(), 1..=4),
        vec((0u8..7, any::<u32>()), 0..=2),
        option::of((vec(any::<u32>(), 1..=3), any::<bool>())),
        vec(eip_spec(), 0..=5),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        option::of(10u32..=20),
    )
        .prop_map(
            |(
                mode,
                ident,
                share,
                wide,
                net,
                hosts,
                prefixes,
                v6,
                eips,
                (ctp, cts, primary),
                quota,
            )| {
                EniSpec {
                    mode,
                    ident,
                    share,
                    wide,
                    net,
                    hosts,
                    prefixes,
                    v6,
                    eips,
                    ct_private: ctp,
                    ct_subnet: cts,
                    primary,
                    quota,
                }
            },
        )
}

fn egress_spec() -> impl Strategy<Value = EgressSpec> {
    (
        any::<bool>(),
        option::of(any::<bool>()),
        vec(
            (
                any::<u32>(),
                option::of(1u16..=256),
                option::of(any::<u32>()),
            ),
            1..=4,
        ),
    )
        .prop_map(|(balance, hash, vias)| EgressSpec {
            balance,
            hash,
            vias,
        })
}

fn routing_spec() -> impl Strategy<Value = RoutingSpec> {
    (
        0u8..3,
        any::<u32>(),
        1u32..=32465,
        5u8..=255,
        0u8..4,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(base_kind, base_seed, priority, protocol, rp, arp, verify)| RoutingSpec {
                base_kind,
                base_seed,
                priority,
                protocol,
                rp,
                arp,
                verify,
            },
        )
}

/// 2-7 ENI specs: the configs use the first 1-6; the last one is the ENI appended.
fn spec() -> impl Strategy<Value = Spec> {
    (
        vec(eni_spec(), 2..=7),
        option::of(egress_spec()),
        option::of(routing_spec()),
        0u8..4,
    )
        .prop_map(|(enis, egress, routing, region)| Spec {
            enis,
            egress,
            routing,
            region,
        })
}

// ---------------------------------------------------------------------------------------------
// The model: a concrete config, rendered as TOML
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct GEip {
    address: Ipv4Addr,
    private_ip: Option<Ipv4Addr>,
    prefix: Option<u8>,
    gateway: Option<Ipv4Addr>,
}

#[derive(Debug, Clone)]
struct GEni {
    name: String,
    mac: Option<String>,
    interface: Option<String>,
    primary: bool,
    mode: GMode,
    write_mode: bool,
    cidr: Option<Ipv4Net>,
    gateway: Option<Ipv4Addr>,
    private_ips: Vec<Ipv4Addr>,
    prefixes: Vec<Ipv4Net>,
    ipv6: Vec<Ipv6Addr>,
    ipv6_cidr: Option<String>,
    ipv6_gateway: Option<Ipv6Addr>,
    quota: Option<u32>,
    eips: Vec<GEip>,
}

#[derive(Debug, Clone)]
struct GVia {
    eni: String,
    source: Option<IpAddr>,
    weight: Option<u16>,
}

#[derive(Debug, Clone)]
struct GEgress {
    balance: bool,
    hash: Option<bool>,
    vias: Vec<GVia>,
}

#[derive(Debug, Clone)]
struct Model {
    region: Option<&'static str>,
    routing: Option<RoutingSpec>,
    table_base: Option<u32>,
    enis: Vec<GEni>,
    egress: Option<GEgress>,
}

fn q<T: std::fmt::Display>(v: T) -> String {
    format!("\"{v}\"")
}

fn list<T: std::fmt::Display>(v: &[T]) -> String {
    let items: Vec<String> = v.iter().map(q).collect();
    format!("[{}]", items.join(", "))
}

impl Model {
    fn toml(&self) -> String {
        let mut s = String::new();
        if let Some(r) = self.region {
            writeln!(s, "region = {}", q(r)).unwrap();
        }
        if let Some(r) = &self.routing {
            s.push_str("\n[routing]\n");
            if let Some(b) = self.table_base {
                writeln!(s, "table_base = {b}").unwrap();
            }
            writeln!(s, "rule_priority = {}", r.priority).unwrap();
            writeln!(s, "protocol = {}", r.protocol).unwrap();
            let rp = ["loose", "strict", "off", "keep"][r.rp as usize % 4];
            writeln!(s, "rp_filter = {}", q(rp)).unwrap();
            writeln!(s, "arp_isolation = {}", r.arp).unwrap();
            writeln!(s, "verify = {}", r.verify).unwrap();
        }
        for e in &self.enis {
            s.push_str("\n[[eni]]\n");
            writeln!(s, "name = {}", q(&e.name)).unwrap();
            if let Some(m) = &e.mac {
                writeln!(s, "mac = {}", q(m)).unwrap();
            }
            if let Some(i) = &e.interface {
                writeln!(s, "interface = {}", q(i)).unwrap();
            }
            if e.primary {
                s.push_str("primary = true\n");
            }
            let mode = match e.mode {
                GMode::Nat => "nat",
                GMode::Multi => "multi-eip",
                GMode::Cut => "cut-through",
            };
            if e.write_mode || e.mode != GMode::Nat {
                writeln!(s, "mode = {}", q(mode)).unwrap();
            }
            if let Some(c) = e.cidr {
                writeln!(s, "cidr = {}", q(c)).unwrap();
            }
            if let Some(g) = e.gateway {
                writeln!(s, "gateway = {}", q(g)).unwrap();
            }
            if !e.private_ips.is_empty() {
                writeln!(s, "private_ips = {}", list(&e.private_ips)).unwrap();
            }
            if !e.prefixes.is_empty() {
                writeln!(s, "prefixes = {}", list(&e.prefixes)).unwrap();
            }
            if !e.ipv6.is_empty() {
                writeln!(s, "ipv6 = {}", list(&e.ipv6)).unwrap();
            }
            if let Some(c) = &e.ipv6_cidr {
                writeln!(s, "ipv6_cidr = {}", q(c)).unwrap();
            }
            if let Some(g) = e.ipv6_gateway {
                writeln!(s, "ipv6_gateway = {}", q(g)).unwrap();
            }
            if let Some(n) = e.quota {
                writeln!(s, "eip_quota = {n}").unwrap();
            }
            for x in &e.eips {
                s.push_str("\n[[eni.eip]]\n");
                writeln!(s, "address = {}", q(x.address)).unwrap();
                if let Some(p) = x.private_ip {
                    writeln!(s, "private_ip = {}", q(p)).unwrap();
                }
                if let Some(p) = x.prefix {
                    writeln!(s, "prefix = {p}").unwrap();
                }
                if let Some(g) = x.gateway {
                    writeln!(s, "gateway = {}", q(g)).unwrap();
                }
            }
        }
        if let Some(eg) = &self.egress {
            s.push_str("\n[egress]\n");
            let strategy = if eg.balance { "balance" } else { "failover" };
            writeln!(s, "strategy = {}", q(strategy)).unwrap();
            if let Some(h) = eg.hash {
                writeln!(s, "hash = {}", q(if h { "l4" } else { "l3" })).unwrap();
            }
            for v in &eg.vias {
                s.push_str("\n[[egress.via]]\n");
                writeln!(s, "eni = {}", q(&v.eni)).unwrap();
                if let Some(src) = v.source {
                    writeln!(s, "source = {}", q(src)).unwrap();
                }
                if let Some(w) = v.weight {
                    writeln!(s, "weight = {w}").unwrap();
                }
            }
        }
        s
    }

    /// The model with only its first `n` ENIs (egress must not name the others).
    fn first(&self, n: usize) -> Model {
        let mut m = self.clone();
        m.enis.truncate(n);
        m
    }
}

// ---------------------------------------------------------------------------------------------
// Building a valid model from a spec
// ---------------------------------------------------------------------------------------------

/// First octets of public IPv4 space (none of 0, 10, 100, 127, 169, 172, 192, 224+).
const PUBLIC_FIRST: &[u32] = &[
    1, 8, 39, 47, 59, 101, 106, 112, 114, 120, 121, 139, 182, 198, 203, 223,
];

fn mix(seed: u32, i: u32) -> u32 {
    // A small integer hash (so probing wanders rather than walks).
    let mut x = seed ^ i.wrapping_mul(0x9e37_79b9);
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

fn net(addr: u32, len: u8) -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::from(addr), len).unwrap().trunc()
}

#[derive(Default, Clone)]
struct Alloc {
    /// Every IPv4 address declared or used as a gateway.
    used: BTreeSet<u32>,
    /// Prefixes (inclusive ranges): no address may be allocated inside.
    ranges: Vec<(u32, u32)>,
    /// EIP subnets (net, gateway): only their own EIPs are allocated inside.
    pools: Vec<(Ipv4Net, Ipv4Addr)>,
    /// vSwitches (cidr, gateway).
    vswitches: Vec<(Ipv4Net, Ipv4Addr)>,
}

impl Alloc {
    fn in_ranges(&self, a: u32) -> bool {
        self.ranges.iter().any(|(l, h)| *l <= a && a <= *h)
            || self
                .pools
                .iter()
                .any(|(n, _)| n.contains(&Ipv4Addr::from(a)))
    }

    fn taken(&self, a: u32) -> bool {
        self.used.contains(&a) || self.in_ranges(a)
    }

    fn range_free(&self, lo: u32, hi: u32) -> bool {
        self.used.range(lo..=hi).next().is_none()
            && !self.ranges.iter().any(|(l, h)| *l <= hi && lo <= *h)
            && !self.pools.iter().any(|(n, _)| {
                let (l, h) = (u32::from(n.network()), u32::from(n.broadcast()));
                l <= hi && lo <= h
            })
    }

    /// A free host address of `n` (not its network or broadcast address).
    fn host_in(&mut self, n: Ipv4Net, seed: u32) -> Option<Ipv4Addr> {
        let first = u32::from(n.network()) + 1;
        let count = (1u64 << (32 - n.prefix_len())) - 2;
        for i in 0..count.min(4096) as u32 {
            let a = first + (seed.wrapping_add(i) as u64 % count) as u32;
            if !self.taken(a) {
                self.used.insert(a);
                return Some(Ipv4Addr::from(a));
            }
        }
        None
    }

    /// A free aligned block of length `len` inside `n`.
    fn block_in(&mut self, n: Ipv4Net, len: u8, seed: u32) -> Option<Ipv4Net> {
        let blocks = 1u64 << (len - n.prefix_len());
        let size = 1u64 << (32 - len);
        for i in 0..blocks.min(256) as u32 {
            let b = (seed.wrapping_add(i) as u64 % blocks) * size;
            let lo = u32::from(n.network()) + b as u32;
            let hi = lo + (size - 1) as u32;
            if self.range_free(lo, hi) {
                self.ranges.push((lo, hi));
                return Some(net(lo, len));
            }
        }
        None
    }

    /// A free public /32 outside every EIP subnet.
    fn public(&mut self, seed: u32) -> Ipv4Addr {
        for i in 0.. {
            let r = mix(seed, i);
            let first = PUBLIC_FIRST[(r % PUBLIC_FIRST.len() as u32) as usize];
            let low = mix(r, 7) & 0x00ff_ffff;
            let a = (first << 24) | low;
            let last = a & 0xff;
            if last == 0 || last == 255 || self.taken(a) {
                continue;
            }
            self.used.insert(a);
            return Ipv4Addr::from(a);
        }
        unreachable!()
    }

    /// A new EIP subnet (/24../29) with its gateway at the first host.
    fn new_pool(&mut self, seed: u32) -> usize {
        for i in 0.. {
            let r = mix(seed, 1000 + i);
            let len = 24 + (r % 6) as u8;
            let first = PUBLIC_FIRST[(mix(r, 3) % PUBLIC_FIRST.len() as u32) as usize];
            let n = net((first << 24) | (mix(r, 5) & 0x00ff_ffff), len);
            let (lo, hi) = (u32::from(n.network()), u32::from(n.broadcast()));
            if !self.range_free(lo, hi) {
                continue;
            }
            let gw = Ipv4Addr::from(lo + 1);
            self.used.insert(lo + 1);
            self.pools.push((n, gw));
            return self.pools.len() - 1;
        }
        unreachable!()
    }

    /// A free EIP inside pool `p`, if the pool has room.
    fn pool_host(&mut self, p: usize, seed: u32) -> Option<Ipv4Addr> {
        let (n, _) = self.pools[p];
        let first = u32::from(n.network()) + 1;
        let count = (1u64 << (32 - n.prefix_len())) - 2;
        for i in 0..count as u32 {
            let a = first + (seed.wrapping_add(i) as u64 % count) as u32;
            if !self.used.contains(&a) {
                self.used.insert(a);
                return Some(Ipv4Addr::from(a));
            }
        }
        None
    }

    /// A vSwitch: an earlier one (shared) or a new /24 in 192.168/16 or /16 in 10/8.
    fn vswitch(&mut self, share: bool, wide: bool, seed: u32) -> (Ipv4Net, Ipv4Addr) {
        if share && !self.vswitches.is_empty() {
            return self.vswitches[seed as usize % self.vswitches.len()];
        }
        for i in 0..256 {
            let x = (seed.wrapping_add(i) % 256) as u8;
            let (n, gw) = if wide {
                let n = net(u32::from(Ipv4Addr::new(10, x, 0, 0)), 16);
                let gw = if seed & 2 == 0 {
                    Ipv4Addr::new(10, x, 255, 253)
                } else {
                    Ipv4Addr::new(10, x, 0, 1)
                };
                (n, gw)
            } else {
                let n = net(u32::from(Ipv4Addr::new(192, 168, x, 0)), 24);
                let gw = if seed & 2 == 0 {
                    Ipv4Addr::new(192, 168, x, 253)
                } else {
                    Ipv4Addr::new(192, 168, x, 1)
                };
                (n, gw)
            };
            if self.vswitches.iter().any(|(m, _)| *m == n) {
                continue;
            }
            self.used.insert(u32::from(gw));
            self.vswitches.push((n, gw));
            return (n, gw);
        }
        panic!("out of vSwitches")
    }

    /// An EIP subnet per `pool` choice (1: new; 2: an existing one, if any).
    fn pick_pool(&mut self, pool: u8, seed: u32) -> usize {
        if pool == 2 && !self.pools.is_empty() {
            // An existing subnet with room left.
            for i in 0..self.pools.len() {
                let p = (seed as usize + i) % self.pools.len();
                let (n, _) = self.pools[p];
                let (lo, hi) = (u32::from(n.network()) + 1, u32::from(n.broadcast()) - 1);
                if self.used.range(lo..=hi).count() < (hi - lo + 1) as usize {
                    return p;
                }
            }
        }
        self.new_pool(seed)
    }

    /// An EIP for a multi-eip ENI (`pool` as in EipSpec).
    fn multi_eip(&mut self, x: &EipSpec) -> GEip {
        if x.pool == 0 {
            return GEip {
                address: self.public(x.seed),
                private_ip: None,
                prefix: None,
                gateway: None,
            };
        }
        loop {
            let p = self.pick_pool(x.pool, x.seed);
            if let Some(a) = self.pool_host(p, x.seed) {
                let (n, gw) = self.pools[p];
                return GEip {
                    address: a,
                    private_ip: None,
                    prefix: Some(n.prefix_len()),
                    gateway: Some(gw),
                };
            }
        }
    }

    fn cut_through_eip(&mut self, x: &EipSpec) -> GEip {
        if x.pool == 0 {
            let address = self.public(x.seed);
            let gw = self.public(mix(x.seed, 99));
            return GEip {
                address,
                private_ip: None,
                prefix: if x.explicit { Some(32) } else { None },
                gateway: Some(gw),
            };
        }
        self.multi_eip(x)
    }
}

fn build_eni(k: usize, s: &EniSpec, a: &mut Alloc) -> GEni {
    let name = if s.net & 1 == 0 {
        format!("eth{k}")
    } else {
        format!("eni-{k}.x")
    };
    let mac = format!(
        "00:16:3e:{:02x}:{:02x}:{:02x}",
        (s.net >> 8) & 0xff,
        (s.net >> 16) & 0xff,
        k
    );
    let (mac, interface) = match s.ident {
        0 => (Some(mac), None),
        1 => (None, Some(format!("eth{k}"))),
        _ => (Some(mac), Some(format!("eth{k}"))),
    };
    let mut e = GEni {
        name,
        mac,
        interface,
        primary: k == 0 && s.mode == GMode::Nat && s.primary,
        mode: s.mode,
        write_mode: s.net & 4 != 0,
        cidr: None,
        gateway: None,
        private_ips: Vec::new(),
        prefixes: Vec::new(),
        ipv6: Vec::new(),
        ipv6_cidr: None,
        ipv6_gateway: None,
        quota: None,
        eips: Vec::new(),
    };
    match s.mode {
        GMode::Nat | GMode::Multi => {
            let (cidr, gw) = a.vswitch(s.share, s.wide, s.net >> 3);
            e.cidr = Some(cidr);
            e.gateway = Some(gw);
            // Dense: consecutive addresses, so that aggregation has siblings to merge.
            let dense = s.net & 8 != 0;
            for (i, h) in s.hosts.iter().enumerate() {
                let seed = if dense {
                    s.hosts[0].wrapping_add(i as u32)
                } else {
                    *h
                };
                if let Some(ip) = a.host_in(cidr, seed) {
                    e.private_ips.push(ip);
                }
            }
            assert!(!e.private_ips.is_empty(), "vSwitch {cidr} is full");
            for (len, seed) in &s.prefixes {
                let len = if cidr.prefix_len() <= 16 {
                    24 + len
                } else {
                    28 + len % 3
                };
                if let Some(p) = a.block_in(cidr, len, *seed) {
                    e.prefixes.push(p);
                }
            }
        }
        GMode::Cut => {
            if s.ct_subnet {
                let (cidr, gw) = a.vswitch(s.share, s.wide, s.net >> 3);
                e.cidr = Some(cidr);
                e.gateway = Some(gw);
                if s.ct_private {
                    e.private_ips.extend(a.host_in(cidr, s.hosts[0]));
                }
            } else if s.ct_private {
                let loose = net(u32::from(Ipv4Addr::new(172, 16, 0, 0)), 12);
                e.private_ips.extend(a.host_in(loose, s.hosts[0]));
            }
        }
    }
    if let Some((seeds, link_local)) = &s.v6 {
        let c = format!("2001:db8:{k:x}::");
        e.ipv6_cidr = Some(format!("{c}/64"));
        e.ipv6_gateway = Some(if *link_local {
            "fe80::1".parse().unwrap()
        } else {
            format!("{c}1").parse().unwrap()
        });
        for seed in seeds {
            let ip: Ipv6Addr = format!("{c}{:x}", 2 + seed % 0xfff0).parse().unwrap();
            if !e.ipv6.contains(&ip) {
                e.ipv6.push(ip);
            }
        }
    }
    match s.mode {
        GMode::Nat => {
            let most = if e.primary { 1 } else { e.private_ips.len() };
            for (i, x) in s.eips.iter().take(most).enumerate() {
                let address = a.public(x.seed);
                let private_ip = (x.explicit || i > 0).then(|| e.private_ips[i]);
                e.eips.push(GEip {
                    address,
                    private_ip,
                    prefix: None,
                    gateway: None,
                });
            }
        }
        GMode::Multi => {
            for x in &s.eips {
                let eip = a.multi_eip(x);
                e.eips.push(eip);
            }
            e.quota = s.quota;
        }
        GMode::Cut => {
            let x = s.eips.first().cloned().unwrap_or(EipSpec {
                seed: s.net,
                pool: (s.net % 3) as u8,
                explicit: false,
            });
            let eip = a.cut_through_eip(&x);
            e.eips.push(eip);
        }
    }
    e
}

/// The whole model: every ENI of the spec (the configs under test use the first `base`).
fn build(spec: &Spec, base: usize) -> (Model, Alloc) {
    let mut a = Alloc::default();
    let enis: Vec<GEni> = spec
        .enis
        .iter()
        .enumerate()
        .map(|(k, s)| build_eni(k, s, &mut a))
        .collect();
    let egress = spec.egress.as_ref().map(|eg| {
        let mut vias: Vec<GVia> = Vec::new();
        for (idx, w, src) in &eg.vias {
            let e = &enis[*idx as usize % base];
            if vias.iter().any(|v| v.eni == e.name) {
                continue;
            }
            let source = match (eg.balance, src) {
                (false, Some(seed)) => {
                    let mut usable: Vec<IpAddr> = Vec::new();
                    if e.mode != GMode::Cut {
                        usable.extend(e.private_ips.iter().map(|ip| IpAddr::V4(*ip)));
                    }
                    usable.extend(e.eips.iter().map(|x| IpAddr::V4(x.address)));
                    usable.extend(e.ipv6.iter().map(|ip| IpAddr::V6(*ip)));
                    Some(usable[*seed as usize % usable.len()])
                }
                _ => None,
            };
            vias.push(GVia {
                eni: e.name.clone(),
                source,
                weight: if eg.balance { *w } else { None },
            });
        }
        GEgress {
            balance: eg.balance,
            hash: if eg.balance { eg.hash } else { None },
            vias,
        }
    });
    let table_base = spec.routing.as_ref().and_then(|r| match r.base_kind {
        // Low: tables stay below 253 until +100 per uplink jumps over them.
        0 => Some(1 + r.base_seed % 40),
        1 => Some(256 + r.base_seed % 1_000_000),
        _ if r.base_seed & 1 == 0 => None,
        _ => Some(u32::MAX - 1000 - r.base_seed % 100_000),
    });
    let region = [
        Some("cn-beijing"),
        Some("cn-hangzhou"),
        Some("ap-south-1"),
        None,
    ][spec.region as usize % 4];
    (
        Model {
            region,
            routing: spec.routing.clone(),
            table_base,
            enis,
            egress,
        },
        a,
    )
}

#[track_caller]
fn load(m: &Model) -> Config {
    let text = m.toml();
    match load_str(&text, "generated.toml") {
        Ok(l) => l.config,
        Err(e) => panic!("the generator made an invalid config:\n{e}\n---\n{text}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Invariants of one plan
// ---------------------------------------------------------------------------------------------

type UplinkKey = (String, Family, IpAddr);

fn ipnet(n: &IpNetwork) -> IpNet {
    IpNet::new(n.network(), n.prefix()).unwrap()
}

fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

fn size(n: &IpNet) -> u128 {
    let bits = n.max_prefix_len() - n.prefix_len();
    1u128.checked_shl(bits as u32).unwrap_or(u128::MAX)
}

/// |a ∩ b| for two CIDR blocks (nested or disjoint).
fn overlap(a: &IpNet, b: &IpNet) -> u128 {
    if a.contains(b) {
        size(b)
    } else if b.contains(a) {
        size(a)
    } else {
        0
    }
}

/// Each uplink's true sources, straight from the config (DESIGN §4).
fn true_sources(cfg: &Config) -> BTreeMap<UplinkKey, Vec<IpNet>> {
    let mut m: BTreeMap<UplinkKey, Vec<IpNet>> = BTreeMap::new();
    for e in &cfg.enis {
        if e.mode != Mode::CutThrough {
            let gw = IpAddr::V4(e.gateway.expect("nat/multi-eip have a gateway"));
            let v = m.entry((e.name.clone(), Family::V4, gw)).or_default();
            v.extend(e.private_ips.iter().map(|ip| host_net(IpAddr::V4(*ip))));
            v.extend(
                e.prefixes
                    .iter()
                    .map(|p| IpNet::new(IpAddr::V4(p.network()), p.prefix()).unwrap()),
            );
        }
        if e.mode != Mode::Nat {
            for x in &e.eips {
                let gw = IpAddr::V4(x.gateway.or(e.gateway).expect("an EIP gateway"));
                m.entry((e.name.clone(), Family::V4, gw))
                    .or_default()
                    .push(host_net(IpAddr::V4(x.address)));
            }
        }
        if !e.ipv6.is_empty() {
            let gw = IpAddr::V6(e.ipv6_gateway.expect("ipv6 has a gateway"));
            m.entry((e.name.clone(), Family::V6, gw))
                .or_default()
                .extend(e.ipv6.iter().map(|ip| host_net(IpAddr::V6(*ip))));
        }
    }
    m
}

fn last_addr(n: &IpNet) -> IpAddr {
    n.broadcast()
}

fn covered_by_union(addr: IpAddr, set: &[IpNet]) -> bool {
    set.iter().any(|t| t.contains(&addr))
}

/// Everything the plan must satisfy for `cfg`.
fn check_plan(cfg: &Config, d: &Desired) -> Result<(), TestCaseError> {
    let truth = true_sources(cfg);
    let p = cfg.routing.rule_priority;
    let base = cfg.routing.table_base;

    // Uplinks are exactly the config's (eni, family, gateway) pairs, each with its own table.
    let keys: BTreeSet<UplinkKey> = d
        .uplinks
        .iter()
        .map(|u| (u.eni.clone(), u.family, u.gateway))
        .collect();
    prop_assert_eq!(keys.len(), d.uplinks.len(), "an uplink appears twice");
    prop_assert_eq!(
        &keys,
        &truth.keys().cloned().collect::<BTreeSet<_>>(),
        "uplinks differ from the config's"
    );
    let tables: BTreeSet<(Family, u32)> = d.uplinks.iter().map(|u| (u.family, u.table)).collect();
    prop_assert_eq!(
        tables.len(),
        d.uplinks.len(),
        "two uplinks of a family share a table"
    );
    let by_table: BTreeMap<(Family, u32), UplinkKey> = d
        .uplinks
        .iter()
        .map(|u| ((u.family, u.table), (u.eni.clone(), u.family, u.gateway)))
        .collect();

    // Tables: never 0 or 253-255; rules act on a plan table or main.
    let plan_tables = d.tables();
    for t in &plan_tables {
        prop_assert!(*t != 0 && !(253..=255).contains(t), "route table {}", t);
    }
    for u in &d.uplinks {
        prop_assert!(u.table != 0 && !(253..=255).contains(&u.table));
        prop_assert!(u.table != base, "an uplink uses the egress table");
        prop_assert!(
            plan_tables.contains(&u.table),
            "uplink table {} has no routes",
            u.table
        );
    }
    for r in &d.rules {
        prop_assert!(
            r.table == MAIN_TABLE || plan_tables.contains(&r.table),
            "rule {} acts on a table without routes",
            r
        );
        prop_assert!(r.table != 0 && !(253..=255).contains(&r.table) || r.table == MAIN_TABLE);
    }

    // Priorities: exactly the four layers; [containers]' fwmark rules at P+0 and P+150, each
    // mark once per layer, on an uplink table of its family, selecting nothing else.
    for r in d.rules.iter().filter(|r| r.fwmark.is_none()) {
        prop_assert!(
            [p, p + 100, p + 200, p + 300].contains(&r.priority),
            "rule priority {} (P = {})",
            r.priority,
            p
        );
    }
    for r in d.rules.iter().filter(|r| r.fwmark.is_some()) {
        prop_assert!(
            cfg.containers.is_some(),
            "fwmark rule {} without [containers]",
            r
        );
        let suppress = if r.priority == p { Some(0) } else { None };
        prop_assert!(
            r.priority == p || r.priority == p + 150,
            "fwmark rule {}",
            r
        );
        prop_assert!(
            r.from.is_none() && r.suppress_prefixlength == suppress,
            "fwmark rule {}",
            r
        );
        prop_assert!(
            by_table.contains_key(&(r.family, r.table)),
            "fwmark rule {} off an uplink",
            r
        );
        let twins = d
            .rules
            .iter()
            .filter(|x| x.family == r.family && x.fwmark == r.fwmark);
        prop_assert_eq!(twins.count(), 2, "fwmark rule {} once per layer", r);
    }
    for family in [Family::V4, Family::V6] {
        let has_uplinks = d.uplinks.iter().any(|u| u.family == family);
        let fam: Vec<_> = (d.rules.iter())
            .filter(|r| r.family == family && r.fwmark.is_none())
            .collect();
        if !has_uplinks {
            prop_assert!(fam.is_empty(), "rules for a family without uplinks");
            continue;
        }
        let main: Vec<_> = fam.iter().filter(|r| r.priority == p + 100).collect();
        prop_assert_eq!(main.len(), 1);
        prop_assert!(main[0].from.is_none() && main[0].table == MAIN_TABLE);
        prop_assert_eq!(main[0].suppress_prefixlength, Some(0));
        let own: Vec<_> = fam
            .iter()
            .filter(|r| r.priority == p)
            .map(|r| (r.from, r.table, r.suppress_prefixlength))
            .collect();
        let src: Vec<_> = fam
            .iter()
            .filter(|r| r.priority == p + 200)
            .map(|r| (r.from, r.table, r.suppress_prefixlength))
            .collect();
        prop_assert!(!src.is_empty());
        prop_assert_eq!(own.len(), src.len());
        for ((f0, t0, s0), (f2, t2, s2)) in own.iter().zip(&src) {
            prop_assert!(f0.is_some() && f0 == f2 && t0 == t2);
            prop_assert_eq!(*s0, Some(0));
            prop_assert_eq!(*s2, None);
        }
        let egress: Vec<_> = fam.iter().filter(|r| r.priority == p + 300).collect();
        let has_egress = d.egress_checks.iter().any(|c| c.family == family);
        prop_assert_eq!(egress.len(), usize::from(has_egress));
        if let Some(r) = egress.first() {
            prop_assert!(r.from.is_none() && r.table == base && r.suppress_prefixlength.is_none());
        }
    }
    if cfg.egress.is_some() {
        prop_assert!(d.egress_checks.iter().any(|c| c.family == Family::V4));
    } else {
        prop_assert!(d.egress_checks.is_empty());
    }

    // Sources: every `from` prefix covers only true sources of its own uplink...
    let mut covered: BTreeMap<UplinkKey, Vec<IpNet>> = BTreeMap::new();
    for r in &d.rules {
        let Some(from) = &r.from else { continue };
        let s = ipnet(from);
        let key = by_table
            .get(&(r.family, r.table))
            .ok_or_else(|| TestCaseError::fail(format!("rule {r} names no uplink")))?;
        let mine = &truth[key];
        prop_assert!(
            covered_by_union(s.network(), mine) && covered_by_union(last_addr(&s), mine),
            "rule {} covers an endpoint that is not a source of {:?}",
            r,
            key
        );
        let inside: u128 = mine.iter().map(|t| overlap(&s, t)).sum();
        prop_assert_eq!(
            inside,
            size(&s),
            "rule {} covers addresses that are not sources of {:?}",
            r,
            key
        );
        for (other, theirs) in &truth {
            if other == key || other.1 != r.family {
                continue;
            }
            for t in theirs {
                prop_assert_eq!(
                    overlap(&s, t),
                    0,
                    "rule {} of {:?} covers {} of {:?}",
                    r,
                    key,
                    t,
                    other
                );
            }
        }
        if r.priority == p + 200 {
            covered.entry(key.clone()).or_default().push(s);
        }
    }
    // ...and every true source is covered.
    for (key, mine) in &truth {
        let rules = covered.get(key).cloned().unwrap_or_default();
        for t in mine {
            prop_assert!(
                rules.iter().any(|s| s.contains(t)),
                "source {} of {:?} has no rule",
                t,
                key
            );
        }
    }
    // The uplinks' own source lists agree with their rules.
    for u in &d.uplinks {
        let key = (u.eni.clone(), u.family, u.gateway);
        let mut a: Vec<IpNet> = u.sources.iter().map(ipnet).collect();
        let mut b = covered.get(&key).cloned().unwrap_or_default();
        a.sort();
        b.sort();
        prop_assert_eq!(a, b);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Host links
// ---------------------------------------------------------------------------------------------

/// Per ENI: 0 absent, 1 exact, 2 mac matches but the name does not, 3 the name matches but the
/// mac does not. Plus unrelated links. Returns the links and, per ENI, the link it should use.
fn links_for(
    cfg: &Config,
    choice: &[(u8, bool)],
    extra: usize,
) -> (Vec<HostLink>, Vec<Option<u32>>) {
    let mut links = Vec::new();
    let mut expect = Vec::new();
    let mut index = 2u32;
    for (k, e) in cfg.enis.iter().enumerate() {
        let (c, up) = choice.get(k).copied().unwrap_or((0, false));
        let name = e.interface.clone().unwrap_or_else(|| e.name.clone());
        let other_mac = Some(MacAddr6::new(0x02, 0, 0, 0, 0, k as u8));
        let (link, found) = match c {
            1 => (Some((name, e.mac.or(other_mac))), true),
            2 => (
                e.mac.map(|m| (format!("renamed{k}"), Some(m))),
                e.mac.is_some() && e.interface.is_none(),
            ),
            3 => (
                Some((name, other_mac)),
                e.mac.is_none() && e.interface.is_some(),
            ),
            _ => (None, false),
        };
        let mut got = None;
        if let Some((name, mac)) = link {
            index += 1;
            links.push(HostLink {
                name,
                index,
                mac,
                up,
            });
            if found {
                got = Some(index);
            }
        }
        expect.push(got);
    }
    for i in 0..extra {
        index += 1;
        links.push(HostLink {
            name: format!("dummy{i}"),
            index,
            mac: Some(MacAddr6::new(0x02, 0xff, 0, 0, 0, i as u8)),
            up: i % 2 == 0,
        });
    }
    links.push(HostLink {
        name: "lo".into(),
        index: 1,
        mac: None,
        up: true,
    });
    (links, expect)
}

// ---------------------------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------------------------

fn config() -> ProptestConfig {
    ProptestConfig {
        // PROPTEST_CASES=N for a longer run.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(128),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Build the config's ENIs as veth links in a fresh namespace, apply with the real client,
/// and check that a second pass plans nothing.
fn apply_in_namespace(cfg: &Config) -> Result<(), String> {
    let ns = common::Netns::new("prop");
    for (k, e) in cfg.enis.iter().enumerate() {
        let name = e.interface.clone().unwrap_or(format!("e{k}"));
        let peer = format!("peer{k}");
        ns.ip(&["link", "add", &name, "type", "veth", "peer", "name", &peer]);
        if let Some(m) = e.mac {
            ns.ip(&[
                "link",
                "set",
                &name,
                "address",
                &eniroute::model::mac_text(m),
            ]);
        }
        ns.ip(&["link", "set", &peer, "up"]);
    }
    let (cfg, dir) = (cfg.clone(), common::tempdir());
    eniroute::kernel::netns::run_in_netns(Some(&ns.name), move || async move {
        use eniroute::ops::{apply_once, plan_once, ApplyOptions};
        let k =
            eniroute::kernel::Netlink::connect(cfg.routing.protocol).map_err(|e| e.to_string())?;
        let st = eniroute::host::State::at(dir.path());
        apply_once(&k, &st, &cfg, &ApplyOptions::default())
            .await
            .map_err(|e| format!("apply: {e}"))?;
        let again = plan_once(&k, &st, &cfg).await.map_err(|e| e.to_string())?;
        if !again.is_empty() {
            return Err(format!("a second pass still plans {:?}", again.changes));
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?
}

fn kernel_config() -> ProptestConfig {
    ProptestConfig {
        // Each case builds a namespace: fewer cases than the pure properties.
        cases: std::env::var("PROPTEST_KERNEL_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(24),
        ..config()
    }
}

proptest! {
    #![proptest_config(kernel_config())]

    /// Every config that validates, the kernel accepts: applied in a namespace (root), it
    /// converges and verifies, and a second pass changes nothing.
    #[test]
    fn every_valid_config_applies(spec in spec(), n in 1usize..=6) {
        let base = n.min(spec.enis.len() - 1);
        let (model, _) = build(&spec, base);
        let cfg = load(&model.first(base));
        if let Err(e) = apply_in_namespace(&cfg) {
            prop_assert!(false, "{e}\n---\n{}", model.first(base).toml());
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// Generated configs are valid, and the planner's output satisfies every invariant without
    /// a host view.
    #[test]
    fn plan_invariants_without_host_view(spec in spec(), n in 1usize..=6) {
        let base = n.min(spec.enis.len() - 1);
        let (model, _) = build(&spec, base);
        let cfg = load(&model.first(base));
        prop_assert_eq!(cfg.enis.len(), base);
        let d = plan(&cfg, None);
        prop_assert_eq!(d.enis.len(), base);
        prop_assert!(d.missing.is_empty());
        check_plan(&cfg, &d)?;
    }

    /// With a random set of host links: no panic, the right ENIs are found (on the right link),
    /// the others reported missing, and the same invariants hold.
    #[test]
    fn plan_with_random_links(
        spec in spec(),
        choice in vec((0u8..4, any::<bool>()), 7),
        extra in 0usize..3,
    ) {
        let base = spec.enis.len() - 1;
        let (model, _) = build(&spec, base);
        let cfg = load(&model.first(base));
        let (links, expect) = links_for(&cfg, &choice, extra);
        let d = plan(&cfg, Some(&links));
        prop_assert_eq!(d.enis.len(), base);
        for (ep, want) in d.enis.iter().zip(&expect) {
            match want {
                Some(index) => {
                    prop_assert!(ep.found, "eni {} should be found", ep.name);
                    prop_assert_eq!(ep.iface.index, *index);
                }
                None => prop_assert!(!ep.found, "eni {} should be missing", ep.name),
            }
        }
        let missing: BTreeSet<&str> = d.missing.iter().map(|m| m.eni.as_str()).collect();
        let not_found: BTreeSet<&str> =
            d.enis.iter().filter(|e| !e.found).map(|e| e.name.as_str()).collect();
        prop_assert_eq!(missing, not_found);
        check_plan(&cfg, &d)?;
        // Tables do not depend on the host.
        let none = plan(&cfg, None);
        let t1: Vec<_> = d.uplinks.iter().map(|u| (u.eni.clone(), u.family, u.gateway, u.table)).collect();
        let t0: Vec<_> = none.uplinks.iter().map(|u| (u.eni.clone(), u.family, u.gateway, u.table)).collect();
        prop_assert_eq!(t1, t0);
    }

    /// Appending an ENI keeps every existing uplink's table and every existing route and rule.
    #[test]
    fn appending_an_eni_changes_nothing_existing(spec in spec()) {
        let base = spec.enis.len() - 1;
        let (model, _) = build(&spec, base);
        let before = load(&model.first(base));
        let after = load(&model);
        prop_assert_eq!(after.enis.len(), base + 1);
        let d0 = plan(&before, None);
        let d1 = plan(&after, None);
        check_plan(&after, &d1)?;
        assert_kept(&d0, &d1)?;
    }

    /// Appending an EIP to a multi-eip ENI (on its own gateway, an existing EIP subnet or a new
    /// one) keeps every existing uplink's table and every existing route and rule.
    #[test]
    fn appending_a_multi_eip_eip_changes_nothing_existing(
        spec in spec(),
        pick in any::<u32>(),
        extra in eip_spec(),
    ) {
        let mut spec = spec;
        let base = spec.enis.len() - 1;
        // At least one multi-eip ENI: the picked one.
        let k = pick as usize % base;
        spec.enis[k].mode = GMode::Multi;
        let (mut model, mut alloc) = build(&spec, base);
        model.enis.truncate(base);
        let before = load(&model);
        let eip = alloc.multi_eip(&extra);
        model.enis[k].eips.push(eip);
        let after = load(&model);
        prop_assert_eq!(after.enis[k].eips.len(), before.enis[k].eips.len() + 1);
        let d0 = plan(&before, None);
        let d1 = plan(&after, None);
        check_plan(&after, &d1)?;
        assert_kept(&d0, &d1)?;
    }
}

fn assert_kept(d0: &Desired, d1: &Desired) -> Result<(), TestCaseError> {
    for u in &d0.uplinks {
        let same = d1
            .uplinks
            .iter()
            .find(|v| v.eni == u.eni && v.family == u.family && v.gateway == u.gateway);
        let Some(v) = same else {
            return Err(TestCaseError::fail(format!("uplink {u:?} disappeared")));
        };
        prop_assert_eq!(
            v.table,
            u.table,
            "uplink {} {} renumbered",
            u.eni,
            u.gateway
        );
    }
    for r in &d0.routes {
        prop_assert!(d1.routes.contains(r), "route {} changed or disappeared", r);
    }
    // Rules of uplinks whose sources did not change stay too.
    let changed: BTreeSet<u32> = d0
        .uplinks
        .iter()
        .filter(|u| {
            d1.uplinks
                .iter()
                .any(|v| v.table == u.table && v.family == u.family && v.sources != u.sources)
        })
        .map(|u| u.table)
        .collect();
    for r in &d0.rules {
        if r.from.is_some() && changed.contains(&r.table) {
            continue;
        }
        prop_assert!(d1.rules.contains(r), "rule {} changed or disappeared", r);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Fixed cases
// ---------------------------------------------------------------------------------------------

#[test]
fn aggregate_never_covers_a_non_source() {
    use eniroute::plan::aggregate;
    let n = |s: &str| -> IpNetwork { s.parse().unwrap() };
    // Siblings merge; non-siblings do not, however close.
    assert_eq!(
        aggregate(&[n("192.168.0.20/32"), n("192.168.0.21/32")]),
        vec![n("192.168.0.20/31")]
    );
    assert_eq!(
        aggregate(&[n("192.168.0.21/32"), n("192.168.0.22/32")]).len(),
        2
    );
    // Three of a /30 stay three addresses' worth: never the /30.
    let three = aggregate(&[
        n("192.168.0.20/32"),
        n("192.168.0.21/32"),
        n("192.168.0.22/32"),
    ]);
    assert!(!three.contains(&n("192.168.0.20/30")), "{three:?}");
    let total: u128 = three.iter().map(|x| size(&ipnet(x))).sum();
    assert_eq!(total, 3);
    // A prefix absorbs the addresses inside it.
    assert_eq!(
        aggregate(&[n("192.168.0.48/28"), n("192.168.0.50/32")]),
        vec![n("192.168.0.48/28")]
    );
    // IPv6 too.
    assert_eq!(
        aggregate(&[n("2001:db8::2/128"), n("2001:db8::3/128")]),
        vec![n("2001:db8::2/127")]
    );
}

/// Failover egress with `source` = a multi-eip EIP that has a gateway of its own: unbound
/// traffic given that source must leave through the EIP's uplink (DESIGN §4: "each EIP -> the
/// uplink of its gateway"), as its replies do, not through the ENI's vSwitch gateway.
#[test]
fn egress_source_eip_leaves_through_its_own_gateway() {
    let text = r#"
region = "cn-beijing"

[[eni]]
name = "eth2"
mac = "00:16:3e:00:00:03"
mode = "multi-eip"
cidr = "192.168.2.0/24"
gateway = "192.168.2.253"
private_ips = ["192.168.2.30"]

[[eni.eip]]
address = "198.51.100.50"
prefix = 28
gateway = "198.51.100.49"

[egress]
strategy = "failover"

[[egress.via]]
eni = "eth2"
source = "198.51.100.50"
"#;
    let cfg = load_str(text, "t.toml").unwrap().config;
    let d = plan(&cfg, None);
    let egress: Vec<_> = d
        .routes
        .iter()
        .filter(|r| r.table == cfg.routing.table_base)
        .collect();
    assert_eq!(egress.len(), 1, "{egress:?}");
    let src: IpAddr = "198.51.100.50".parse().unwrap();
    let gw: IpAddr = "198.51.100.49".parse().unwrap();
    assert_eq!(egress[0].src, Some(src));
    assert_eq!(
        egress[0].nexthops[0].gateway,
        Some(gw),
        "egress route {} sends the EIP's traffic via the vSwitch gateway",
        egress[0]
    );
}

/// A fixed config through the same invariants (a readable failure if the generator is broken).
#[test]
fn example_configs_satisfy_the_invariants() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/examples");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let cfg = load_str(&text, &p.display().to_string()).unwrap().config;
        let d = plan(&cfg, None);
        if let Err(e) = check_plan(&cfg, &d) {
            panic!("{}: {e}", p.display());
        }
    }
}

/// The checker has teeth: a plan tampered with in each way the properties forbid fails it.
#[test]
fn check_plan_rejects_tampered_plans() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/examples/demo.toml"),
    )
    .unwrap();
    let cfg = load_str(&text, "demo.toml").unwrap().config;
    let good = plan(&cfg, None);
    check_plan(&cfg, &good).unwrap();
    let from_rule = good
        .rules
        .iter()
        .position(|r| {
            r.from.is_some_and(|f| f.is_ipv4()) && r.priority == cfg.routing.rule_priority + 200
        })
        .unwrap();

    // A source widened to its /24: covers other ENIs' addresses and non-sources.
    let mut d = good.clone();
    let f = d.rules[from_rule].from.unwrap();
    d.rules[from_rule].from = Some(IpNetwork::new(f.network(), 24).unwrap());
    assert!(check_plan(&cfg, &d).is_err(), "widened source");
    // A source moved to another uplink's table.
    let mut d = good.clone();
    let other = d
        .uplinks
        .iter()
        .find(|u| u.family == Family::V4 && u.table != d.rules[from_rule].table)
        .unwrap()
        .table;
    d.rules[from_rule].table = other;
    assert!(check_plan(&cfg, &d).is_err(), "source in the wrong table");
    // A source dropped.
    let mut d = good.clone();
    let dropped = d.rules.remove(from_rule);
    d.rules.retain(|r| r.from != dropped.from);
    assert!(check_plan(&cfg, &d).is_err(), "dropped source");
    // A priority off the layers.
    let mut d = good.clone();
    d.rules[from_rule].priority += 1;
    assert!(check_plan(&cfg, &d).is_err(), "priority");
    // A reserved table.
    let mut d = good.clone();
    d.routes[0].table = 253;
    assert!(check_plan(&cfg, &d).is_err(), "reserved table");
    // A rule acting on a table without routes.
    let mut d = good.clone();
    d.rules[from_rule].table = 77;
    assert!(check_plan(&cfg, &d).is_err(), "rule on an unknown table");
}
