//! The model: plain values that every layer shares and none owns — the validated config, the
//! EIP modes and their capabilities, the allocator of kernel numbers, the kernel objects and
//! the changes between them. Imports nothing of the crate; does no I/O.

mod change;
mod config;
pub mod layout;
mod mode;
pub mod nft;
mod objects;
mod observed;
mod sysctl;

pub use change::{phases, Change};
pub use config::{
    Config, ContainerEgress, Containers, Egress, Eip, Eni, EniMark, Hash, Routing, RpFilter,
    Strategy, UplinkTable, Via,
};
pub use mode::{EipGateway, EipLimit, Mode, DEFAULT_MULTI_EIP_QUOTA, MULTI_EIP_REGIONS};
pub use objects::{
    mac_text, Address, Family, ForeignRoute, FwMark, HostLink, Iface, NextHop, Route, Rule, Scope,
};
pub use observed::Observed;
pub use sysctl::{sysctl_name, valid_ifname, Knob, Sysctl, SysctlKey};
