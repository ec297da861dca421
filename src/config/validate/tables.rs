//! Table allocation: every ENI's uplink tables and the egress table from `routing.table_base`
//! ([`layout`]), each clear of the reserved ids. May import the raw types and `crate::model`.

use super::Validator;
use crate::config::raw::{RawRouting, S};
use crate::model::layout;
use crate::model::{Eni, Routing, UplinkTable};

impl Validator {
    /// Allocate every ENI's uplink tables ([`layout::uplink_table`]); each one must avoid
    /// 0 and 253-255 and fit 32 bits, like the egress table.
    pub(super) fn tables(
        &mut self,
        routing: &Routing,
        enis: &mut [Eni],
        raw: Option<&S<RawRouting>>,
    ) {
        let span = raw
            .and_then(|r| r.get_ref().table_base.as_ref().map(|t| t.span()))
            .or_else(|| raw.map(|r| r.span()))
            .unwrap_or(0..0);
        let base = routing.table_base;
        let mut check = |what: String, t: Option<u32>| -> Option<u32> {
            match t {
                None => self.err(
                    &span,
                    format!("routing.table_base = {base}: {what} does not fit a 32-bit table id"),
                ),
                Some(t) if layout::reserved_table(t).is_some() => self.err(
                    &span,
                    format!(
                        "routing.table_base = {base}: {what} would be table {t}, which is reserved \
                         (0, 253 default, 254 main, 255 local)"
                    ),
                ),
                Some(t) => return Some(t),
            }
            None
        };
        check("the egress table".into(), Some(layout::egress_table(base)));
        for (k, e) in enis.iter_mut().enumerate() {
            let gateways = e.uplink_gateways();
            // Every table is checked (and every problem reported), for at least one uplink.
            let tables: Vec<Option<u32>> = (0..gateways.len().max(1))
                .map(|j| {
                    check(
                        format!("eni {:?}'s uplink table {}", e.name, j),
                        layout::uplink_table(base, k, j),
                    )
                })
                .collect();
            e.first_table = tables.first().copied().flatten().unwrap_or_default();
            e.uplinks = gateways
                .into_iter()
                .zip(tables)
                .filter_map(|(gateway, t)| t.map(|table| UplinkTable { gateway, table }))
                .collect();
        }
    }
}
