//! The kernel objects eniroute manages, as plain values: what the planner wants, what the kernel
//! dump shows, and what reconcile compares. No kernel access here.

use std::fmt;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use macaddr::MacAddr6;
use serde::{Deserialize, Serialize};

/// Address family of a rule or route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// An interface as eniroute refers to it: by name (for people) and index (for the kernel;
/// 0 when the link is not known, e.g. `render` without a host).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Iface {
    pub name: String,
    pub index: u32,
}

/// An interface address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Address {
    pub iface: Iface,
    pub addr: IpAddr,
    pub prefix_len: u8,
    /// IFA_F_NOPREFIXROUTE: the subnet lives only in the uplink table (EIPs).
    pub noprefixroute: bool,
    /// IFA_F_NODAD (IPv6): a VPC has no duplicates to detect, and DAD would delay the address.
    pub nodad: bool,
}

impl Address {
    /// What identifies the address in the kernel.
    pub fn key(&self) -> (u32, &str, IpAddr, u8) {
        (
            self.iface.index,
            &self.iface.name,
            self.addr,
            self.prefix_len,
        )
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} dev {}",
            self.addr, self.prefix_len, self.iface.name
        )?;
        if self.noprefixroute {
            f.write_str(" noprefixroute")?;
        }
        if self.nodad {
            f.write_str(" nodad")?;
        }
        Ok(())
    }
}

/// One next hop of a route.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct NextHop {
    pub gateway: Option<IpAddr>,
    pub iface: Iface,
    /// 1..=256 (multipath weight; 1 for single-path routes).
    pub weight: u16,
    /// RTNH_F_ONLINK: the gateway is on the link even if no route says so.
    pub onlink: bool,
}

/// Route scope (only the two eniroute uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Universe,
    Link,
    /// Anything else found in a dump.
    Other(u8),
}

/// A unicast route in one table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Route {
    pub table: u32,
    pub dst: IpNetwork,
    pub metric: u32,
    pub scope: Scope,
    pub src: Option<IpAddr>,
    /// One entry for a single-path route, several for ECMP.
    pub nexthops: Vec<NextHop>,
}

impl Route {
    pub fn family(&self) -> Family {
        Family::of(&self.dst.ip())
    }

    /// What identifies the route in the kernel (the rest can be replaced in place).
    pub fn key(&self) -> (Family, u32, IpNetwork, u32) {
        (self.family(), self.table, self.dst, self.metric)
    }
}

fn fmt_dst(dst: &IpNetwork) -> String {
    if dst.prefix() == 0 {
        match dst {
            IpNetwork::V4(_) => "default".into(),
            IpNetwork::V6(_) => "::/0".into(),
        }
    } else {
        format!("{}/{}", dst.ip(), dst.prefix())
    }
}

impl fmt::Display for Route {
    /// `ip route` syntax (without the leading verb).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_ip(f, None)
    }
}

impl Route {
    /// `ip route` syntax with an optional `proto`, which iproute2 wants before any `nexthop`.
    pub fn to_ip(&self, proto: Option<u8>) -> String {
        struct W<'a>(&'a Route, Option<u8>);
        impl fmt::Display for W<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.write_ip(f, self.1)
            }
        }
        W(self, proto).to_string()
    }

    fn write_ip(&self, f: &mut fmt::Formatter<'_>, proto: Option<u8>) -> fmt::Result {
        f.write_str(&fmt_dst(&self.dst))?;
        let one = |f: &mut fmt::Formatter<'_>, nh: &NextHop| -> fmt::Result {
            if let Some(gw) = nh.gateway {
                write!(f, " via {gw}")?;
            }
            write!(f, " dev {}", nh.iface.name)
        };
        if let [nh] = self.nexthops.as_slice() {
            one(f, nh)?;
        }
        write!(f, " table {}", self.table)?;
        if self.metric != 0 {
            write!(f, " metric {}", self.metric)?;
        }
        match self.scope {
            Scope::Link => f.write_str(" scope link")?,
            Scope::Other(n) => write!(f, " scope {n}")?,
            Scope::Universe => {}
        }
        if let Some(src) = self.src {
            write!(f, " src {src}")?;
        }
        if let Some(p) = proto {
            write!(f, " proto {p}")?;
        }
        match self.nexthops.as_slice() {
            [nh] => {
                if nh.onlink {
                    f.write_str(" onlink")?;
                }
            }
            many => {
                for nh in many {
                    f.write_str(" nexthop")?;
                    one(f, nh)?;
                    write!(f, " weight {}", nh.weight)?;
                    if nh.onlink {
                        f.write_str(" onlink")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A policy routing rule (always action "to table").
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Rule {
    pub family: Family,
    pub priority: u32,
    pub from: Option<IpNetwork>,
    pub table: u32,
    pub suppress_prefixlength: Option<u32>,
    /// `fwmark <mark>/<mask>` (layer Mark, [containers]).
    pub fwmark: Option<FwMark>,
}

/// A rule's fwmark selector: packets whose mark, masked, equals `mark`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct FwMark {
    pub mark: u32,
    pub mask: u32,
}

impl fmt::Display for Rule {
    /// `ip rule` syntax (without the leading verb).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "priority {}", self.priority)?;
        if let Some(from) = self.from {
            if (from.is_ipv4() && from.prefix() == 32) || (from.is_ipv6() && from.prefix() == 128) {
                write!(f, " from {}", from.ip())?;
            } else {
                write!(f, " from {}/{}", from.ip(), from.prefix())?;
            }
        }
        if let Some(m) = self.fwmark {
            write!(f, " fwmark {:#x}/{:#x}", m.mark, m.mask)?;
        }
        match self.table {
            254 => f.write_str(" lookup main")?,
            t => write!(f, " lookup {t}")?,
        }
        if let Some(n) = self.suppress_prefixlength {
            write!(f, " suppress_prefixlength {n}")?;
        }
        Ok(())
    }
}

/// A network interface found on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostLink {
    pub name: String,
    pub index: u32,
    #[serde(serialize_with = "ser_mac")]
    pub mac: Option<MacAddr6>,
    pub up: bool,
}

/// A route that is not eniroute's, with its protocol (to put it back as it was when the kernel
/// drops it with eniroute's addresses).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ForeignRoute {
    pub route: Route,
    pub protocol: u8,
}

/// The routes the kernel maintains itself (RTPROT_KERNEL: prefix routes of addresses).
pub const KERNEL_PROTOCOL: u8 = 2;
/// The local table (routes to the host's own addresses), the kernel's too.
pub const LOCAL_TABLE: u32 = 255;

impl ForeignRoute {
    /// Whether putting the route back is eniroute's business: the kernel re-creates its own
    /// routes with their addresses.
    pub fn restorable(&self) -> bool {
        self.protocol != KERNEL_PROTOCOL && self.route.table != LOCAL_TABLE
    }
}

/// A MAC as iproute2 prints it (lower case): the one MAC formatter of the crate.
pub fn mac_text(m: MacAddr6) -> String {
    m.to_string().to_lowercase()
}

/// Serialize an optional MAC with [`mac_text`].
pub(crate) fn ser_mac<S: serde::Serializer>(m: &Option<MacAddr6>, s: S) -> Result<S::Ok, S::Error> {
    match m {
        Some(m) => s.serialize_str(&mac_text(*m)),
        None => s.serialize_none(),
    }
}
