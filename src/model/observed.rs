//! What was observed of the kernel, as one value (the objects of `objects`, the nftables table
//! of `nft`).

use super::nft::NftObserved;
use super::objects::{Address, ForeignRoute, HostLink, Route, Rule};

/// What the kernel holds that matters to eniroute, split by ownership: an object is eniroute's
/// when it carries eniroute's protocol tag (and, for rules, has a shape eniroute makes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub links: Vec<HostLink>,
    /// Addresses carrying eniroute's protocol tag.
    pub addresses: Vec<Address>,
    /// Every other address (DHCP, static...): never changed.
    pub foreign_addresses: Vec<Address>,
    pub routes: Vec<Route>,
    pub foreign_routes: Vec<ForeignRoute>,
    pub rules: Vec<Rule>,
    pub foreign_rules: Vec<Rule>,
    /// The table `inet eniroute` (owned wholly).
    pub nft: NftObserved,
}
