//! An index of IPv4 blocks (prefixes and addresses as /32) that answers "which indexed block
//! overlaps this one" in O(prefix length + log n), so that overlap rules stay n·log n on
//! configs with many prefixes. CIDR blocks either nest or are disjoint: an overlapping block
//! is an ancestor (found by masking) or a descendant (found by a range of starts).

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

type Key = (u32, u8);

fn key(n: Ipv4Network) -> Key {
    (u32::from(n.network()), n.prefix())
}

fn net((start, len): Key) -> Option<Ipv4Network> {
    Ipv4Network::new(Ipv4Addr::from(start), len).ok()
}

/// Blocks with the holders of each (a block may be held more than once).
pub(crate) struct Blocks<T> {
    holders: HashMap<Key, Vec<T>>,
    starts: BTreeMap<Key, ()>,
}

impl<T> Blocks<T> {
    pub(crate) fn new() -> Self {
        Blocks {
            holders: HashMap::new(),
            starts: BTreeMap::new(),
        }
    }

    pub(crate) fn insert(&mut self, n: Ipv4Network, holder: T) {
        let k = key(n);
        self.holders.entry(k).or_default().push(holder);
        self.starts.insert(k, ());
    }

    /// The first indexed block overlapping `n` (ancestors from the widest, then descendants
    /// by address) whose holder satisfies `keep`.
    pub(crate) fn overlapping(
        &self,
        n: Ipv4Network,
        keep: impl Fn(&T) -> bool,
    ) -> Option<(Ipv4Network, &T)> {
        let (start, len) = key(n);
        let end = u32::from(n.broadcast());
        let ancestors = (0..=len).map(|l| {
            let mask = u32::MAX.checked_shl(32 - u32::from(l)).unwrap_or(0);
            (start & mask, l)
        });
        // A /32 has no descendants (and the range would be empty-reversed: a panic).
        let descendants = (len < 32)
            .then(|| self.starts.range((start, len + 1)..=(end, 32)))
            .into_iter()
            .flatten()
            .map(|(k, _)| *k);
        ancestors.chain(descendants).find_map(|k| {
            let h = self.holders.get(&k)?.iter().find(|h| keep(h))?;
            Some((net(k)?, h))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Ipv4Network {
        s.parse().unwrap()
    }

    #[test]
    fn finds_ancestors_descendants_and_equals_but_not_neighbours() {
        let mut b = Blocks::new();
        b.insert(n("10.0.0.0/8"), "a");
        b.insert(n("192.168.0.48/28"), "b");
        b.insert(n("192.168.0.50/32"), "c");
        b.insert(n("192.168.0.48/28"), "d");
        assert_eq!(
            b.overlapping(n("10.1.2.3/32"), |_| true).map(|x| *x.1),
            Some("a")
        );
        assert_eq!(
            b.overlapping(n("192.168.0.0/24"), |_| true).map(|x| *x.1),
            Some("b")
        );
        assert_eq!(
            b.overlapping(n("192.168.0.48/28"), |h| *h == "d")
                .map(|x| *x.1),
            Some("d")
        );
        assert_eq!(
            b.overlapping(n("192.168.0.48/28"), |h| *h == "c")
                .map(|x| *x.1),
            Some("c")
        );
        assert!(b.overlapping(n("192.168.0.64/28"), |_| true).is_none());
        assert!(b.overlapping(n("0.0.0.0/0"), |_| true).is_some());
        assert_eq!(
            b.overlapping(n("192.168.0.50/32"), |_| true).map(|x| *x.1),
            Some("b")
        );
        assert!(b.overlapping(n("255.255.255.255/32"), |_| true).is_none());
    }
}
