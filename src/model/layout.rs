//! The one allocator of kernel numbers: route table ids, rule layer priorities and the limits
//! that keep them valid (DESIGN §4). The validator checks every number here; the planner takes
//! the allocation the validator made and never computes a number of its own.

/// The main routing table.
pub const MAIN_TABLE: u32 = 254;
/// Priority of the kernel's `lookup main` rule: eniroute's layers must come before it.
pub const MAIN_RULE_PRIORITY: u32 = 32766;
/// Tables per ENI stride: ENI k (0-based) owns `table_base + k + 1 + TABLE_STRIDE * j`.
const TABLE_STRIDE: u32 = 100;
/// At most this many ENIs (so ENI tables never run into the next stride).
pub const MAX_ENIS: usize = (TABLE_STRIDE - 1) as usize;
/// The metric the kernel gives an IPv6 route added without one.
pub const IPV6_DEFAULT_METRIC: u32 = 1024;
/// `routing.protocol` values 0..=4 are the kernel's own (unspec, redirect, kernel, boot, static).
pub const MIN_PROTOCOL: u8 = 5;

/// A rule layer: its priority is `rule_priority` + its offset (DESIGN §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// `from <source> lookup <uplink> suppress_prefixlength 0`.
    OwnSubnet,
    /// `lookup main suppress_prefixlength 0`.
    Main,
    /// `fwmark <mark>/<mask> lookup <uplink>` ([containers]).
    Mark,
    /// `from <source> lookup <uplink>`.
    Source,
    /// `lookup <egress table>` ([egress]).
    Egress,
}

impl Layer {
    /// The highest layer: every layer up to it must come before the main rule.
    pub const TOP: Layer = Layer::Egress;

    pub const fn offset(self) -> u32 {
        match self {
            Layer::OwnSubnet => 0,
            Layer::Main => 100,
            Layer::Mark => 150,
            Layer::Source => 200,
            Layer::Egress => 300,
        }
    }

    /// The priority of this layer above `rule_priority` (validated to fit).
    pub fn priority(self, rule_priority: u32) -> u32 {
        rule_priority.saturating_add(self.offset())
    }
}

/// The highest `rule_priority` whose top layer still comes before the main rule.
pub const MAX_RULE_PRIORITY: u32 = MAIN_RULE_PRIORITY - Layer::TOP.offset() - 1;

/// The egress table ([egress]): `table_base` itself.
pub fn egress_table(table_base: u32) -> u32 {
    table_base
}

/// The table of ENI `k`'s uplink `j`: `table_base + k + 1 + 100 * j`; None when it does not
/// fit 32 bits.
pub fn uplink_table(table_base: u32, k: usize, j: usize) -> Option<u32> {
    let k = u32::try_from(k).ok()?;
    let j = u32::try_from(j).ok()?;
    table_base
        .checked_add(k.checked_add(1)?)?
        .checked_add(TABLE_STRIDE.checked_mul(j)?)
}

/// Why a table id cannot be used, if it cannot: 0 and 253-255 are the kernel's.
pub fn reserved_table(t: u32) -> Option<&'static str> {
    match t {
        0 => Some("unspec"),
        253 => Some("default"),
        254 => Some("main"),
        255 => Some("local"),
        _ => None,
    }
}

/// The default `containers.mark_mask`: bits 10-13. Clear of kube-proxy (masquerade 0x4000, drop
/// 0x8000), Calico (0xffff0000), the AWS VPC CNI (0x80), Istio (0x10-0x40, 0x100, 0x200, 0x210,
/// 0x220), Weave (0x20000, 0x40000) and Tailscale (0xff0000). Cilium claims all 32 bits; with
/// it, set a mask its configuration leaves free. Four bits: 15 ENIs.
pub const DEFAULT_MARK_MASK: u32 = 0x0000_3c00;

/// How many ENIs a mask can tell apart: every non-zero value inside it (0 means unmarked).
pub fn marks_in(mask: u32) -> u64 {
    (1u64 << mask.count_ones()) - 1
}

/// The mark of ENI `k` (0-based): the value k+1 spread over the mask's bits, lowest first; None
/// when the mask has too few bits.
pub fn eni_mark(mask: u32, k: usize) -> Option<u32> {
    let mut value = u64::try_from(k).ok()?.checked_add(1)?;
    if value > marks_in(mask) {
        return None;
    }
    let mut mark = 0u32;
    for bit in (0..32).map(|b| 1u32 << b).filter(|b| mask & b != 0) {
        if value & 1 == 1 {
            mark |= bit;
        }
        value >>= 1;
    }
    Some(mark)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_fill_the_mask_lowest_bit_first() {
        assert_eq!(marks_in(DEFAULT_MARK_MASK), 15);
        assert_eq!(eni_mark(DEFAULT_MARK_MASK, 0), Some(0x400));
        assert_eq!(eni_mark(DEFAULT_MARK_MASK, 2), Some(0xc00));
        assert_eq!(eni_mark(DEFAULT_MARK_MASK, 14), Some(0x3c00));
        assert_eq!(eni_mark(DEFAULT_MARK_MASK, 15), None);
        // A mask with gaps: bits 0 and 8.
        assert_eq!(eni_mark(0x101, 1), Some(0x100));
        assert_eq!(eni_mark(0x101, 2), Some(0x101));
        assert_eq!(marks_in(u32::MAX), u64::from(u32::MAX));
    }

    #[test]
    fn tables_follow_the_documented_layout() {
        assert_eq!(uplink_table(20000, 0, 0), Some(20001));
        assert_eq!(uplink_table(20000, 2, 1), Some(20103));
        assert_eq!(uplink_table(u32::MAX - 1, 1, 0), None);
        assert_eq!(egress_table(20000), 20000);
        assert_eq!(reserved_table(254), Some("main"));
        assert_eq!(reserved_table(20001), None);
    }

    #[test]
    fn layers_fit_below_main() {
        assert_eq!(
            Layer::TOP.priority(MAX_RULE_PRIORITY),
            MAIN_RULE_PRIORITY - 1
        );
        assert_eq!(Layer::Source.priority(20000), 20200);
    }
}
