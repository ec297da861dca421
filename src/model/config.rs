//! The validated configuration: what `config` produces from the TOML (DESIGN §3) and every
//! later layer reads. Plain values with the allocation the validator made (uplink tables).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use macaddr::MacAddr6;
use serde::Serialize;

use super::mode::Mode;
use super::objects::ser_mac;

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    pub region: Option<String>,
    pub routing: Routing,
    pub enis: Vec<Eni>,
    pub egress: Option<Egress>,
    /// `[containers]` (None when the section is absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub containers: Option<Containers>,
}

/// `[routing]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Routing {
    pub table_base: u32,
    pub rule_priority: u32,
    pub protocol: u8,
    pub rp_filter: RpFilter,
    pub arp_isolation: bool,
    pub verify: bool,
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            table_base: 20000,
            rule_priority: 20000,
            protocol: 225,
            rp_filter: RpFilter::Loose,
            arp_isolation: true,
            verify: true,
        }
    }
}

/// `routing.rp_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RpFilter {
    Loose,
    Strict,
    Off,
    Keep,
}

impl RpFilter {
    /// The sysctl value, or None for `keep`.
    pub fn sysctl_value(self) -> Option<u8> {
        match self {
            RpFilter::Off => Some(0),
            RpFilter::Strict => Some(1),
            RpFilter::Loose => Some(2),
            RpFilter::Keep => None,
        }
    }
}

/// One `[[eni]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Eni {
    pub name: String,
    #[serde(serialize_with = "ser_mac")]
    pub mac: Option<MacAddr6>,
    pub interface: Option<String>,
    pub id: Option<String>,
    pub primary: bool,
    pub mode: Mode,
    pub cidr: Option<Ipv4Network>,
    pub gateway: Option<Ipv4Addr>,
    pub private_ips: Vec<Ipv4Addr>,
    pub prefixes: Vec<Ipv4Network>,
    /// The IPv6 entries of `prefixes` (inside `ipv6_cidr`): routed as sources, not addresses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ipv6_prefixes: Vec<Ipv6Network>,
    pub ipv6: Vec<Ipv6Addr>,
    pub ipv6_cidr: Option<Ipv6Network>,
    pub ipv6_gateway: Option<Ipv6Addr>,
    pub eips: Vec<Eip>,
    /// The IPv4 uplinks in table order ([`Eni::uplink_gateways`]), with the tables the
    /// validator allocated.
    #[serde(skip)]
    pub uplinks: Vec<UplinkTable>,
    /// The ENI's first table number (its first uplink's), which the IPv6 uplink shares.
    #[serde(skip)]
    pub first_table: u32,
    /// The line of the `[[eni]]` table, for messages.
    #[serde(skip)]
    pub line: usize,
}

impl Eni {
    /// The interface name to use when the link is not found on the host.
    pub fn fallback_ifname(&self) -> &str {
        self.interface.as_deref().unwrap_or(&self.name)
    }

    /// The IPv4 gateways of this ENI's uplinks, in table order: the ENI's own gateway first,
    /// then each EIP gateway not seen before, in the order the EIPs are declared. Appending an
    /// EIP therefore never renumbers an existing uplink.
    pub fn uplink_gateways(&self) -> Vec<Ipv4Addr> {
        let mut out: Vec<Ipv4Addr> = Vec::new();
        if self.mode.needs_subnet() {
            out.extend(self.gateway);
        }
        for eip in &self.eips {
            if let Some(gw) = eip.gateway {
                if !out.contains(&gw) {
                    out.push(gw);
                }
            }
        }
        out
    }
}

/// One IPv4 uplink of an ENI with the table the validator allocated for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UplinkTable {
    pub gateway: Ipv4Addr,
    pub table: u32,
}

/// One `[[eni.eip]]`, with defaults resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Eip {
    pub address: Ipv4Addr,
    pub id: Option<String>,
    /// nat: the private IP it maps to (resolved default: the ENI's primary private IP).
    pub private_ip: Option<Ipv4Addr>,
    /// cut-through / multi-eip: the netmask length (default 32).
    pub prefix: u8,
    /// cut-through / multi-eip: the uplink gateway (multi-eip default: the ENI's gateway).
    pub gateway: Option<Ipv4Addr>,
}

/// `[egress]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Egress {
    pub strategy: Strategy,
    pub hash: Hash,
    pub via: Vec<Via>,
}

/// `egress.strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    Failover,
    Balance,
}

/// `egress.hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hash {
    L3,
    L4,
}

/// `[[egress.via]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Via {
    pub eni: String,
    pub source: Option<IpAddr>,
    pub weight: u16,
}

/// `[containers]`: connection marks so that forwarded replies and container egress leave the
/// ENI their connection belongs to (DESIGN §4, layer P+150 and the table `inet eniroute`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Containers {
    pub return_path: bool,
    /// The fwmark bits eniroute may use (never 0).
    pub mark_mask: u32,
    /// One mark per ENI with an uplink, in ENI order, allocated by the validator
    /// (`layout::eni_mark`).
    pub marks: Vec<EniMark>,
    pub egress: Vec<ContainerEgress>,
}

/// The mark of one ENI and the table its marked packets look up (its first uplink's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EniMark {
    pub eni: String,
    pub mark: u32,
    pub table: u32,
}

/// One `[[containers.egress]]`, with the default source resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerEgress {
    pub network: IpNetwork,
    pub eni: String,
    pub source: IpAddr,
}
