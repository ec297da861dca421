//! `status` as data: what eniroute owns now, per ENI, whether each source routes right, and
//! what a plan would still change. Its wording (text and JSON) is in `output`.

use super::sysctls::{self, SysctlChange};
use super::verify::{verify, Verdict};
use super::OpError;
use crate::host::State;
use crate::kernel::Kernel;
use crate::model::nft::{NftAction, NftMatch};
use crate::model::{Address, Config, Mode, Observed, Rule};
use crate::plan::{self, Desired, EniPlan};
use crate::reconcile::{self, Conflict};

/// An address on an ENI's link, eniroute's or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusAddress {
    pub address: Address,
    pub owned: bool,
}

/// Per-ENI status.
#[derive(Debug, Clone)]
pub struct EniStatus {
    pub name: String,
    pub mode: Mode,
    pub interface: Option<String>,
    pub found: bool,
    pub reason: Option<String>,
    pub addresses: Vec<StatusAddress>,
    pub tables: Vec<u32>,
    pub rules: Vec<Rule>,
    pub verification: Vec<Verdict>,
}

/// Counts of the objects eniroute owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub addresses: usize,
    pub routes: usize,
    pub rules: usize,
}

/// What `status` shows.
#[derive(Debug, Clone)]
pub struct StatusReport {
    pub protocol: u8,
    pub enis: Vec<EniStatus>,
    pub egress: Vec<Verdict>,
    pub owned: Owned,
    /// Kernel changes and sysctl writes a plan would make.
    pub pending_changes: usize,
    /// Sysctls that differ from the plan (no netlink event tells of these), and saved
    /// originals the plan no longer wants that are not back yet.
    pub sysctl_drift: Vec<SysctlChange>,
    /// Foreign objects in the way of the plan (apply would refuse).
    pub conflicts: Vec<Conflict>,
    /// The watch daemon serving the namespace, if one runs.
    pub watch: Option<crate::host::WatchStatus>,
    /// An `apply --try` waiting for its confirmation in the namespace.
    pub pending_try: Option<crate::host::PendingTry>,
    /// The table `inet eniroute` and its counters ([containers]).
    pub containers: Option<ContainersStatus>,
}

/// The table `inet eniroute` as the kernel holds it, and what its counters say.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ContainersStatus {
    pub present: bool,
    /// Present and exactly the plan's.
    pub as_planned: bool,
    /// Connections that arrived on each ENI and were marked for it (return_path).
    pub marked: Vec<MarkedCount>,
    /// New connections from each container network, marked for its ENI.
    pub egress: Vec<MarkedCount>,
}

/// One counter of the table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MarkedCount {
    /// The ENI's name, or the container network.
    pub what: String,
    pub mark: u32,
    pub connections: u64,
}

/// The table's state and counters, when the config has [containers].
fn containers_status(cfg: &Config, d: &Desired, o: &Observed) -> Option<ContainersStatus> {
    let c = cfg.containers.as_ref()?;
    let mut marked = Vec::new();
    let mut egress = Vec::new();
    for n in &o.nft.counters {
        let NftAction::SetCtMark { mark, .. } = n.rule.action else {
            continue;
        };
        let connections = n.packets;
        let eni = c
            .marks
            .iter()
            .find(|m| m.mark == mark)
            .map(|m| m.eni.clone());
        for m in &n.rule.matches {
            match (m, &eni) {
                (NftMatch::IifName(_), Some(e)) => marked.push(MarkedCount {
                    what: e.clone(),
                    mark,
                    connections,
                }),
                (NftMatch::Saddr(net), _) => egress.push(MarkedCount {
                    what: net.to_string(),
                    mark,
                    connections,
                }),
                _ => {}
            }
        }
    }
    Some(ContainersStatus {
        present: o.nft.table.is_some(),
        as_planned: o.nft.holds(&d.nft),
        marked,
        egress,
    })
}

impl StatusReport {
    pub fn healthy(&self) -> bool {
        self.enis
            .iter()
            .all(|e| e.found && e.verification.iter().all(|v| v.ok))
            && self.egress.iter().all(|v| v.ok)
            && self.pending_changes == 0
            && self.conflicts.is_empty()
            && self.containers.as_ref().is_none_or(|c| c.as_planned)
    }
}

/// One status pass against `k`.
pub async fn status_once(
    k: &impl Kernel,
    state: &State,
    cfg: &Config,
) -> Result<StatusReport, OpError> {
    let links = k.links().await?;
    let d = plan::desired(cfg, Some(&links));
    let observed = super::converge::observe(k, links, &d, true).await?;
    let sysctl_drift = if d.missing.is_empty() {
        let mut drift = sysctls::diff(k, &d.sysctls)?;
        drift.extend(sysctls::restores(
            k,
            &observed.links,
            &d.sysctls,
            &state.saved()?,
        ));
        drift
    } else {
        Vec::new()
    };
    let (pending_changes, conflicts) = if d.missing.is_empty() {
        match reconcile::reconcile(&d, &observed) {
            Ok(c) => (c.len(), Vec::new()),
            Err(conflicts) => (0, conflicts),
        }
    } else {
        (0, Vec::new())
    };
    let verdicts = verify(k, &d, &observed.links).await;
    let (egress, per_source): (Vec<Verdict>, Vec<Verdict>) =
        verdicts.into_iter().partition(Verdict::is_egress);
    Ok(StatusReport {
        protocol: cfg.routing.protocol,
        enis: d
            .enis
            .iter()
            .map(|ep| eni_status(ep, &d, &observed, &per_source))
            .collect(),
        egress,
        owned: Owned {
            addresses: observed.addresses.len(),
            routes: observed.routes.len(),
            rules: observed.rules.len(),
        },
        pending_changes: pending_changes + sysctl_drift.len(),
        sysctl_drift,
        conflicts,
        watch: None,
        pending_try: None,
        containers: containers_status(cfg, &d, &observed),
    })
}

fn eni_status(ep: &EniPlan, d: &Desired, observed: &Observed, verdicts: &[Verdict]) -> EniStatus {
    let on_link = |a: &&Address| ep.found && a.iface.index == ep.iface.index;
    let addresses = (observed.addresses.iter().filter(on_link))
        .map(|a| (a, true))
        .chain(
            observed
                .foreign_addresses
                .iter()
                .filter(on_link)
                .map(|a| (a, false)),
        )
        .map(|(a, owned)| StatusAddress {
            address: a.clone(),
            owned,
        })
        .collect();
    EniStatus {
        name: ep.name.clone(),
        mode: ep.mode,
        interface: ep.found.then(|| ep.iface.name.clone()),
        found: ep.found,
        reason: d
            .missing
            .iter()
            .find(|m| m.eni == ep.name)
            .map(|m| m.reason.clone()),
        addresses,
        tables: ep.tables.clone(),
        rules: (observed.rules.iter())
            .filter(|r| ep.tables.contains(&r.table))
            .cloned()
            .collect(),
        verification: if ep.found {
            verdicts
                .iter()
                .filter(|v| v.eni == ep.name)
                .cloned()
                .collect()
        } else {
            Vec::new()
        },
    }
}
