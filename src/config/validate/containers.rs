//! `[containers]`: return_path, the mark mask and the mark of each ENI inside it, and each
//! `[[containers.egress]]` network with its ENI and SNAT source. May import the raw types and
//! `crate::model`.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::Validator;
use crate::config::raw::{RawContainerEgress, RawContainers, S};
use crate::model::layout::{self, DEFAULT_MARK_MASK};
use crate::model::{ContainerEgress, Containers, Eni, EniMark};

/// The prefix of every message about `[containers]`.
const CTX: &str = "containers: ";
/// At most this many `[[containers.egress]]` (each is a few nftables rules).
pub(super) const MAX_CONTAINER_NETWORKS: usize = 256;

impl Validator {
    /// The whole section; run after `tables`, whose uplink tables the marks look up.
    pub(super) fn containers(&mut self, sc: &S<RawContainers>, enis: &[Eni]) -> Option<Containers> {
        let r = sc.get_ref();
        let before = self.problem_count();
        let mark_mask = match &r.mark_mask {
            Some(m) => self.mark_mask(m),
            None => Some(DEFAULT_MARK_MASK),
        };
        let marks = mark_mask
            .map(|mask| {
                self.marks(
                    mask,
                    enis,
                    r.mark_mask.as_ref().map_or(sc.span(), |m| m.span()),
                )
            })
            .unwrap_or_default();
        if let Some(extra) = r.egress.get(MAX_CONTAINER_NETWORKS) {
            self.err(
                &extra.span(),
                format!(
                    "{CTX}at most {MAX_CONTAINER_NETWORKS} [[containers.egress]] are supported"
                ),
            );
        }
        let mut egress: Vec<ContainerEgress> = Vec::new();
        for se in &r.egress {
            if let Some(e) = self.container_egress(se, enis, &egress) {
                egress.push(e);
            }
        }
        if self.problem_count() > before {
            return None;
        }
        Some(Containers {
            return_path: r.return_path.unwrap_or(true),
            mark_mask: mark_mask?,
            marks,
            egress,
        })
    }

    /// A non-zero 32-bit mask.
    fn mark_mask(&mut self, m: &S<i64>) -> Option<u32> {
        let n = *m.get_ref();
        match u32::try_from(n) {
            Ok(mask) if mask != 0 => Some(mask),
            _ => {
                self.err(
                    &m.span(),
                    format!(
                        "{CTX}mark_mask = {n:#x} is not a non-zero 32-bit mask (e.g. \
                         {DEFAULT_MARK_MASK:#x}, the default)"
                    ),
                );
                None
            }
        }
    }

    /// One mark per ENI with an uplink: ENI k gets the value k+1 inside the mask.
    fn marks(&mut self, mask: u32, enis: &[Eni], span: std::ops::Range<usize>) -> Vec<EniMark> {
        let mut out = Vec::new();
        for (k, e) in enis.iter().enumerate() {
            if e.uplinks.is_empty() && e.ipv6_gateway.is_none() {
                continue;
            }
            match layout::eni_mark(mask, k) {
                Some(mark) => out.push(EniMark {
                    eni: e.name.clone(),
                    mark,
                    table: e.first_table,
                }),
                None => {
                    self.err(
                        &span,
                        format!(
                            "{CTX}mark_mask = {mask:#x} has {} bit(s): it tells apart at most {} \
                             ENI(s), but eni {:?} is ENI number {}; widen the mask",
                            mask.count_ones(),
                            layout::marks_in(mask),
                            e.name,
                            k + 1
                        ),
                    );
                    break;
                }
            }
        }
        out
    }

    /// One `[[containers.egress]]`.
    fn container_egress(
        &mut self,
        se: &S<RawContainerEgress>,
        enis: &[Eni],
        earlier: &[ContainerEgress],
    ) -> Option<ContainerEgress> {
        let r = se.get_ref();
        let network = self.parse(
            CTX,
            "egress.network",
            &r.network,
            |s| {
                s.parse::<IpNetwork>()
                    .ok()
                    .filter(|n| n.network() == n.ip() && n.prefix() > 0)
            },
            "a network (CIDR with no host bits, not /0)",
        )?;
        let name = r.eni.get_ref();
        let Some(eni) = enis.iter().find(|e| &e.name == name) else {
            self.err(
                &r.eni.span(),
                format!("{CTX}egress eni {name:?} is not a declared ENI"),
            );
            return None;
        };
        let has_uplink = match network {
            IpNetwork::V4(_) => !eni.uplinks.is_empty(),
            IpNetwork::V6(_) => eni.ipv6_gateway.is_some(),
        };
        if !has_uplink {
            self.err(
                &r.eni.span(),
                format!("{CTX}eni {name:?} has no gateway for network {network} to leave through"),
            );
            return None;
        }
        self.network_is_free(&r.network, network, enis, earlier)?;
        let source = match &r.source {
            Some(s) => {
                let ip =
                    self.parse(CTX, "egress.source", s, |t| t.parse().ok(), "an IP address")?;
                self.source_fits(s, network, eni, ip)?
            }
            None => self.default_source(&r.eni, network, eni)?,
        };
        Some(ContainerEgress {
            network,
            eni: eni.name.clone(),
            source,
        })
    }

    /// The network overlaps no ENI subnet, prefix or earlier container network.
    fn network_is_free(
        &mut self,
        at: &S<String>,
        network: IpNetwork,
        enis: &[Eni],
        earlier: &[ContainerEgress],
    ) -> Option<()> {
        for e in enis {
            let own = e
                .cidr
                .map(IpNetwork::V4)
                .into_iter()
                .chain(e.prefixes.iter().copied().map(IpNetwork::V4))
                .chain(e.ipv6_cidr.map(IpNetwork::V6));
            for n in own {
                if overlaps(network, n) {
                    self.err(
                        &at.span(),
                        format!(
                            "{CTX}egress network {network} overlaps {n} of eni {:?}",
                            e.name
                        ),
                    );
                    return None;
                }
            }
        }
        if let Some(x) = earlier.iter().find(|x| overlaps(network, x.network)) {
            self.err(
                &at.span(),
                format!(
                    "{CTX}egress network {network} overlaps egress network {}",
                    x.network
                ),
            );
            return None;
        }
        Some(())
    }

    /// An explicit source: same family as the network, an OS-visible address of the ENI.
    fn source_fits(
        &mut self,
        s: &S<String>,
        network: IpNetwork,
        eni: &Eni,
        ip: IpAddr,
    ) -> Option<IpAddr> {
        if network.is_ipv4() != ip.is_ipv4() {
            self.err(
                &s.span(),
                format!("{CTX}egress source {ip} is not of the family of network {network}"),
            );
            return None;
        }
        if !os_addresses(eni).contains(&ip) {
            self.err(
                &s.span(),
                format!(
                    "{CTX}egress source {ip} is not an address of eni {:?} in the OS (its private \
                     IPs, IPv6 addresses, or the EIPs of a cut-through or multi-eip ENI)",
                    eni.name
                ),
            );
            return None;
        }
        Some(ip)
    }

    /// The ENI's first OS-visible address of the network's family.
    fn default_source(&mut self, at: &S<String>, network: IpNetwork, eni: &Eni) -> Option<IpAddr> {
        let found = os_addresses(eni)
            .into_iter()
            .find(|ip| ip.is_ipv4() == network.is_ipv4());
        if found.is_none() {
            self.err(
                &at.span(),
                format!(
                    "{CTX}eni {:?} has no {} address to SNAT network {network} to",
                    eni.name,
                    if network.is_ipv4() { "IPv4" } else { "IPv6" }
                ),
            );
        }
        found
    }
}

/// The ENI's addresses in the OS, the primary private IP first.
fn os_addresses(e: &Eni) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    if e.mode.uses_private_ips() {
        out.extend(e.private_ips.iter().copied().map(IpAddr::V4));
    }
    if e.mode.eip_in_os() {
        out.extend(e.eips.iter().map(|x| IpAddr::V4(x.address)));
    }
    out.extend(e.ipv6.iter().copied().map(IpAddr::V6));
    out
}

/// Whether two networks of one family share an address.
fn overlaps(a: IpNetwork, b: IpNetwork) -> bool {
    a.is_ipv4() == b.is_ipv4() && (a.contains(b.network()) || b.contains(a.network()))
}
