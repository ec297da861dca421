//! `[routing]`: table base, rule priority, protocol, rp_filter and the two switches, each
//! checked against the kernel field it fills. May import the raw types and `crate::model`.

use super::Validator;
use crate::config::raw::{RawRouting, S};
use crate::model::layout::{Layer, MAIN_RULE_PRIORITY, MAX_RULE_PRIORITY, MIN_PROTOCOL};
use crate::model::{Routing, RpFilter};

impl Validator {
    pub(in crate::config) fn routing(&mut self, r: &RawRouting) -> Option<Routing> {
        let d = Routing::default();
        // Every field is checked (all problems are reported), then any failure fails all.
        let table_base = match &r.table_base {
            Some(v) => self
                .int_in("routing.", "table_base", v, 1, u32::MAX as i64)
                .map(|n| n as u32),
            None => Some(d.table_base),
        };
        let rule_priority = match &r.rule_priority {
            Some(v) => self.rule_priority(v),
            None => Some(d.rule_priority),
        };
        let protocol = match &r.protocol {
            Some(v) => self.protocol(v),
            None => Some(d.protocol),
        };
        let rp_filter = match &r.rp_filter {
            Some(v) => self.rp_filter(v),
            None => Some(d.rp_filter),
        };
        Some(Routing {
            table_base: table_base?,
            rule_priority: rule_priority?,
            protocol: protocol?,
            rp_filter: rp_filter?,
            arp_isolation: r.arp_isolation.unwrap_or(d.arp_isolation),
            verify: r.verify.unwrap_or(d.verify),
        })
    }

    /// Every rule layer must come before the kernel's `lookup main` rule.
    fn rule_priority(&mut self, v: &S<i64>) -> Option<u32> {
        let hi = MAX_RULE_PRIORITY as i64;
        let n = *v.get_ref();
        if (1..=hi).contains(&n) {
            return Some(n as u32);
        }
        self.err(
            &v.span(),
            format!(
                "routing.rule_priority = {n} is out of range (1..={hi}): every layer up \
                 to priority + {} must come before the kernel's \
                 `lookup main` rule at {MAIN_RULE_PRIORITY}",
                Layer::TOP.offset()
            ),
        );
        None
    }

    /// An rtnetlink protocol that is not one of the kernel's own.
    fn protocol(&mut self, v: &S<i64>) -> Option<u8> {
        let n = *v.get_ref();
        if (i64::from(MIN_PROTOCOL)..=255).contains(&n) {
            return Some(n as u8);
        }
        self.err(
            &v.span(),
            format!(
                "routing.protocol = {n} is out of range ({MIN_PROTOCOL}..=255): 0-{} are the \
                 kernel's own (unspec, redirect, kernel, boot, static)",
                MIN_PROTOCOL - 1
            ),
        );
        None
    }

    fn rp_filter(&mut self, v: &S<String>) -> Option<RpFilter> {
        match v.get_ref().as_str() {
            "loose" => Some(RpFilter::Loose),
            "strict" => Some(RpFilter::Strict),
            "off" => Some(RpFilter::Off),
            "keep" => Some(RpFilter::Keep),
            other => {
                self.err(
                    &v.span(),
                    format!("routing.rp_filter = {other:?} is not one of loose, strict, off, keep"),
                );
                None
            }
        }
    }
}
