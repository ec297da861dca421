//! Verification: ask the kernel (RTM_GETROUTE) how a packet from each source, and unbound
//! traffic, would leave, and compare with the plan (DESIGN §5).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use crate::kernel::{Kernel, KernelError, Lookup};
use crate::model::{Family, HostLink, Iface};
use crate::plan::Desired;

/// Where lookups for verification are aimed: any outside address; nothing is sent.
const PROBE_V4: [Ipv4Addr; 3] = [
    Ipv4Addr::new(8, 8, 8, 8),
    Ipv4Addr::new(1, 1, 1, 1),
    Ipv4Addr::new(9, 9, 9, 9),
];
const PROBE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8888);

/// One verified source.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Verdict {
    pub eni: String,
    /// None: unbound traffic ([egress]).
    pub source: Option<IpAddr>,
    pub expected: String,
    pub seen: String,
    /// The route table the kernel's lookup ended in (RTM_F_LOOKUP_TABLE; IPv4 only).
    pub table: Option<u32>,
    pub ok: bool,
    /// A lookup of a packet with this fwmark ([containers]); `source` is then None.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mark: Option<u32>,
}

impl Verdict {
    /// Unbound traffic ([egress]) rather than one ENI's source or mark.
    pub fn is_egress(&self) -> bool {
        self.source.is_none() && self.mark.is_none()
    }
}

/// The outside address a lookup of family `f` is aimed at: one no desired route covers.
fn probe_target(d: &Desired, f: Family) -> IpAddr {
    let covered = |ip: IpAddr| {
        d.routes
            .iter()
            .any(|r| r.dst.prefix() > 0 && r.dst.contains(ip))
    };
    match f {
        Family::V4 => PROBE_V4
            .iter()
            .map(|a| IpAddr::V4(*a))
            .find(|a| !covered(*a))
            .unwrap_or(IpAddr::V4(PROBE_V4[0])),
        Family::V6 => IpAddr::V6(PROBE_V6),
    }
}

fn errno_text(n: i32) -> String {
    std::io::Error::from_raw_os_error(n).to_string()
}

/// What the kernel said of a lookup that must leave through `iface` via `gateway`, and
/// whether it does.
fn via_verdict(
    lookup: Result<Lookup, KernelError>,
    iface: &Iface,
    gateway: IpAddr,
    name: &dyn Fn(Option<u32>) -> String,
) -> (String, bool, Option<u32>) {
    match lookup {
        Ok(l) => {
            let gw = l
                .gateway
                .map(|g| g.to_string())
                .unwrap_or_else(|| "none".into());
            let ok = l.oif == Some(iface.index) && l.gateway == Some(gateway);
            (format!("dev {} via {gw}", name(l.oif)), ok, l.table)
        }
        Err(e) => (
            format!(
                "no route ({})",
                e.errno().map(errno_text).unwrap_or_else(|| e.to_string())
            ),
            false,
            None,
        ),
    }
}

/// Ask the kernel how each source (and unbound traffic) would leave.
pub(super) async fn verify(k: &impl Kernel, d: &Desired, links: &[HostLink]) -> Vec<Verdict> {
    let name = |i: Option<u32>| {
        i.and_then(|i| links.iter().find(|l| l.index == i))
            .map(|l| l.name.clone())
            .unwrap_or_else(|| "nowhere".into())
    };
    // Lookups are plain requests, not dumps: they go to the kernel in batches.
    let queries: Vec<_> = d
        .checks
        .iter()
        .map(|c| (Some(c.source), probe_target(d, Family::of(&c.source))))
        .collect();
    let lookups = k.route_get_many(&queries).await;
    let mut out = Vec::new();
    for (c, lookup) in d.checks.iter().zip(lookups) {
        let (seen, ok, table) = via_verdict(lookup, &c.iface, c.gateway, &name);
        out.push(Verdict {
            eni: c.eni.clone(),
            source: Some(c.source),
            expected: format!("dev {} via {}", c.iface.name, c.gateway),
            seen,
            table,
            ok,
            mark: None,
        });
    }
    out.extend(verify_marks(k, d, &name).await);
    for e in &d.egress_checks {
        let names: Vec<&str> = e.ifaces.iter().map(|i| i.name.as_str()).collect();
        let (seen, ok, table) = match k.route_get(None, probe_target(d, e.family)).await {
            Ok(l) => (
                format!("dev {}", name(l.oif)),
                l.oif
                    .map(|o| e.ifaces.iter().any(|i| i.index == o))
                    .unwrap_or(false),
                l.table,
            ),
            Err(err) => (format!("no route ({err})"), false, None),
        };
        out.push(Verdict {
            eni: "egress".into(),
            source: None,
            expected: format!("dev {}", names.join(" | ")),
            seen,
            table,
            ok,
            mark: None,
        });
    }
    out
}

/// A packet carrying each ENI's mark must leave through that ENI's uplink ([containers]).
async fn verify_marks(
    k: &impl Kernel,
    d: &Desired,
    name: &dyn Fn(Option<u32>) -> String,
) -> Vec<Verdict> {
    let queries: Vec<(u32, IpAddr)> = (d.mark_checks.iter())
        .map(|c| (c.mark, probe_target(d, c.family)))
        .collect();
    let lookups = k.route_get_marked_many(&queries).await;
    let mut out = Vec::new();
    for (c, lookup) in d.mark_checks.iter().zip(lookups) {
        let (seen, ok, table) = via_verdict(lookup, &c.iface, c.gateway, name);
        out.push(Verdict {
            eni: c.eni.clone(),
            source: None,
            expected: format!("dev {} via {}", c.iface.name, c.gateway),
            seen,
            ok,
            table,
            mark: Some(c.mark),
        });
    }
    out
}
