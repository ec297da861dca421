//! The three EIP association modes (DESIGN §2) and every decision that depends on the mode, each
//! as one capability with an exhaustive `match`. Validator, planner and sandbox ask these; none
//! compares modes. Adding a variant fails to compile here, exactly where a decision is needed.

use std::fmt;

use serde::Serialize;

/// The EIP association mode of an ENI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Nat,
    CutThrough,
    MultiEip,
}

/// Regions where multi-EIP mode was offered (DESIGN §2).
pub const MULTI_EIP_REGIONS: &[&str] = &[
    "cn-beijing",
    "cn-zhangjiakou",
    "ap-southeast-1",
    "eu-central-1",
    "ap-south-1",
];

/// Default number of EIPs a multi-eip ENI may hold.
pub const DEFAULT_MULTI_EIP_QUOTA: u32 = 10;

/// How an EIP of the mode gets its uplink gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EipGateway {
    /// The EIP is not in the OS: `gateway` is not allowed.
    NotAllowed,
    /// `gateway` must be given (the EIP's own subnet).
    Required,
    /// `gateway` may be given; the ENI's gateway otherwise.
    DefaultsToEni,
}

/// How many EIPs an ENI of the mode may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EipLimit {
    /// At most one per private IP (each maps to a distinct private IP).
    OnePerPrivateIp,
    AtMost(u32),
    Exactly(u32),
}

impl Mode {
    /// The mode of an ENI that declares none (DESIGN §3).
    pub const DEFAULT: Mode = Mode::Nat;

    /// Every mode, in documentation order.
    pub const ALL: [Mode; 3] = [Mode::Nat, Mode::CutThrough, Mode::MultiEip];

    /// The TOML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Nat => "nat",
            Mode::CutThrough => "cut-through",
            Mode::MultiEip => "multi-eip",
        }
    }

    /// Parse the TOML spelling.
    pub fn parse(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Whether the EIP is an address of the guest OS (configured, routed as a source).
    pub fn eip_in_os(self) -> bool {
        match self {
            Mode::Nat => false,
            Mode::CutThrough | Mode::MultiEip => true,
        }
    }

    /// Whether the ENI's private IPs (and `prefixes`) are configured and routed.
    pub fn uses_private_ips(self) -> bool {
        match self {
            Mode::Nat | Mode::MultiEip => true,
            Mode::CutThrough => false,
        }
    }

    /// Whether the ENI needs its vSwitch `cidr` and `gateway`, and so has its own uplink.
    pub fn needs_subnet(self) -> bool {
        match self {
            Mode::Nat | Mode::MultiEip => true,
            Mode::CutThrough => false,
        }
    }

    /// How many entries `private_ips` may have: (at least, at most).
    pub fn private_ip_count(self) -> (usize, Option<usize>) {
        match self {
            Mode::Nat | Mode::MultiEip => (1, None),
            // The primary private IP may be listed, but it is not configured in the OS.
            Mode::CutThrough => (0, Some(1)),
        }
    }

    /// How an EIP gets its uplink gateway.
    pub fn eip_gateway(self) -> EipGateway {
        match self {
            Mode::Nat => EipGateway::NotAllowed,
            Mode::CutThrough => EipGateway::Required,
            Mode::MultiEip => EipGateway::DefaultsToEni,
        }
    }

    /// Whether an EIP maps to one of the ENI's private IPs (`eip.private_ip`).
    pub fn eip_maps_to_private_ip(self) -> bool {
        match self {
            Mode::Nat => true,
            Mode::CutThrough | Mode::MultiEip => false,
        }
    }

    /// How many EIPs the ENI may hold. `quota` is the declared multi-eip quota.
    pub fn eip_limit(self, primary: bool, quota: u32) -> EipLimit {
        match self {
            Mode::Nat if primary => EipLimit::AtMost(1),
            Mode::Nat => EipLimit::OnePerPrivateIp,
            Mode::CutThrough => EipLimit::Exactly(1),
            Mode::MultiEip => EipLimit::AtMost(quota),
        }
    }

    /// Whether `eip_quota` (a raised EIP quota) can be declared.
    pub fn has_eip_quota(self) -> bool {
        match self {
            Mode::MultiEip => true,
            Mode::Nat | Mode::CutThrough => false,
        }
    }

    /// Whether the primary ENI may use the mode.
    pub fn allowed_on_primary(self) -> bool {
        match self {
            Mode::Nat => true,
            Mode::CutThrough | Mode::MultiEip => false,
        }
    }

    /// The regions the mode was offered in, when it was not offered everywhere.
    pub fn regions(self) -> Option<&'static [&'static str]> {
        match self {
            Mode::MultiEip => Some(MULTI_EIP_REGIONS),
            Mode::Nat | Mode::CutThrough => None,
        }
    }

    /// Whether the mode lacks application-level gateways (H.323, SIP, DNS, RTSP break).
    pub fn lacks_alg(self) -> bool {
        match self {
            Mode::Nat => true,
            Mode::CutThrough | Mode::MultiEip => false,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelling_round_trips() {
        for m in Mode::ALL {
            assert_eq!(Mode::parse(m.as_str()), Some(m));
        }
        assert_eq!(Mode::parse("Nat"), None);
    }

    #[test]
    fn modes_differ_where_the_design_says() {
        // DESIGN §2: only nat hides the EIP and is allowed on the primary.
        assert!(!Mode::Nat.eip_in_os() && Mode::Nat.allowed_on_primary());
        assert!(Mode::CutThrough.eip_in_os() && !Mode::CutThrough.uses_private_ips());
        assert_eq!(Mode::CutThrough.eip_limit(false, 10), EipLimit::Exactly(1));
        assert_eq!(Mode::MultiEip.eip_limit(false, 12), EipLimit::AtMost(12));
        assert_eq!(Mode::Nat.eip_limit(true, 10), EipLimit::AtMost(1));
    }
}
