//! The rule layers of DESIGN §4, per family, at the priorities of the allocator
//! ([`crate::model::layout::Layer`]).

use super::{Desired, Uplink};
use crate::model::layout::{Layer, MAIN_TABLE};
use crate::model::{Family, Rule};

/// Add every family's rule layers for the uplinks (and egress lookups) already planned.
pub(super) fn plan_rules(d: &mut Desired, rule_priority: u32, egress_table: u32) {
    for family in [Family::V4, Family::V6] {
        let ups: Vec<&Uplink> = d.uplinks.iter().filter(|u| u.family == family).collect();
        if ups.is_empty() {
            continue;
        }
        let rule = |layer: Layer, from, table, suppress_prefixlength| Rule {
            family,
            priority: layer.priority(rule_priority),
            from,
            table,
            suppress_prefixlength,
            fwmark: None,
        };
        let per_source = |layer: Layer, suppress: Option<u32>| {
            (ups.iter()).flat_map(move |u| {
                (u.sources.iter()).map(move |s| rule(layer, Some(*s), u.table, suppress))
            })
        };
        let mut rules: Vec<Rule> = per_source(Layer::OwnSubnet, Some(0)).collect();
        rules.push(rule(Layer::Main, None, MAIN_TABLE, Some(0)));
        rules.extend(per_source(Layer::Source, None));
        if d.egress_checks.iter().any(|c| c.family == family) {
            rules.push(rule(Layer::Egress, None, egress_table, None));
        }
        d.rules.extend(rules);
    }
}
