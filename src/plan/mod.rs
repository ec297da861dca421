//! The planner: a pure function from a validated config and the links found on the host to the
//! desired kernel state (DESIGN §4). May import only `model`; no kernel access here.
//!
//! `resolve` finds each ENI's link, `eni` plans what one ENI contributes (addresses, uplink
//! tables and routes, source lookups, sysctls), `egress` the egress table, `rules` the rule
//! layers; `aggregate` merges sources into prefixes and `routes` builds routes as the kernel
//! reports them.

mod aggregate;
mod containers;
mod egress;
mod eni;
mod resolve;
mod routes;
mod rules;

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::Serialize;

pub use aggregate::aggregate;
use containers::plan_containers;
use egress::plan_egress;
use eni::plan_eni;
use resolve::resolve;
use rules::plan_rules;

use crate::model::layout;
use crate::model::nft::NftTable;
use crate::model::{Address, Config, Family, HostLink, Iface, Mode, Route, Rule, Strategy, Sysctl};

/// One uplink: an (interface, gateway) pair with its own route table and the sources that
/// must leave through it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Uplink {
    pub eni: String,
    pub family: Family,
    pub iface: Iface,
    pub gateway: IpAddr,
    pub table: u32,
    /// The sources, merged into the fewest prefixes that cover exactly them.
    pub sources: Vec<IpNetwork>,
}

/// What verification asks the kernel for one source: a packet from `source` to the outside
/// must leave through `iface` via `gateway`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceLookup {
    pub eni: String,
    pub source: IpAddr,
    pub iface: Iface,
    pub gateway: IpAddr,
}

/// What verification asks for unbound traffic when [egress] is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EgressLookup {
    pub family: Family,
    pub strategy: Strategy,
    /// failover: the first usable via; balance: any of them.
    pub ifaces: Vec<Iface>,
}

/// What verification asks for each marked ENI ([containers]): a packet with the ENI's mark
/// must leave through the ENI's first uplink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MarkLookup {
    pub eni: String,
    pub family: Family,
    pub mark: u32,
    pub iface: Iface,
    pub gateway: IpAddr,
}

/// An ENI whose interface was not found (or found inconsistently).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    pub eni: String,
    pub mac: Option<String>,
    pub interface: Option<String>,
    pub reason: String,
}

/// Per-ENI summary of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EniPlan {
    pub name: String,
    pub mode: Mode,
    pub iface: Iface,
    pub found: bool,
    pub tables: Vec<u32>,
}

/// The whole desired state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Desired {
    pub protocol: u8,
    pub enis: Vec<EniPlan>,
    pub uplinks: Vec<Uplink>,
    pub links_up: Vec<Iface>,
    pub addresses: Vec<Address>,
    pub routes: Vec<Route>,
    pub rules: Vec<Rule>,
    pub sysctls: Vec<Sysctl>,
    pub checks: Vec<SourceLookup>,
    pub egress_checks: Vec<EgressLookup>,
    pub missing: Vec<Missing>,
    pub notes: Vec<String>,
    /// The table `inet eniroute` ([containers]; None: eniroute owns no table).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nft: Option<NftTable>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mark_checks: Vec<MarkLookup>,
    /// The fwmark bits eniroute uses ([containers]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mark_mask: Option<u32>,
}

impl Desired {
    /// Every table number the plan uses.
    pub fn tables(&self) -> BTreeSet<u32> {
        self.routes.iter().map(|r| r.table).collect()
    }
}

/// Compute the desired state. `links` is what the host has (`None`: no host view; the
/// config's interface names are used and a note says so).
pub fn desired(cfg: &Config, links: Option<&[HostLink]>) -> Desired {
    let r = &cfg.routing;
    let (ifaces, missing) = resolve(cfg, links);
    let mut d = Desired {
        protocol: r.protocol,
        notes: notes(links.is_some(), missing.len()),
        missing,
        ..Desired::default()
    };
    for (e, (iface, found)) in cfg.enis.iter().zip(&ifaces) {
        plan_eni(&mut d, r, e, iface, *found);
    }
    if let Some(eg) = &cfg.egress {
        plan_egress(&mut d, cfg, eg, &ifaces);
    }
    plan_rules(&mut d, r.rule_priority, layout::egress_table(r.table_base));
    if let Some(c) = &cfg.containers {
        plan_containers(&mut d, cfg, c, &ifaces);
    }
    // One write per sysctl (an ENI may appear twice, e.g. ignore_routes_with_linkdown).
    let mut seen = BTreeSet::new();
    d.sysctls.retain(|s| seen.insert(s.path.clone()));
    d
}

fn notes(host_view: bool, missing: usize) -> Vec<String> {
    if !host_view {
        vec!["no host view: interface names are the config's (`interface`, else `name`)".into()]
    } else if missing > 0 {
        vec![format!(
            "{missing} ENI(s) not found on the host: their objects use the config's interface names"
        )]
    } else {
        Vec::new()
    }
}
