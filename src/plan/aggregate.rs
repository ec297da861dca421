//! Merging sources into the fewest prefixes that cover exactly them (never a non-source):
//! the rule count stays low when an ENI holds neighbouring addresses.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

/// A prefix as (family width, first address as a number, prefix length).
type Block = (u8, u128, u8);

fn block(n: &IpNetwork) -> Block {
    match n.network() {
        IpAddr::V4(a) => (32, u32::from(a) as u128, n.prefix()),
        IpAddr::V6(a) => (128, u128::from(a), n.prefix()),
    }
}

fn network((bits, start, len): Block) -> Option<IpNetwork> {
    let ip = match bits {
        32 => IpAddr::V4(u32::try_from(start).ok()?.into()),
        _ => IpAddr::V6(start.into()),
    };
    IpNetwork::new(ip, len).ok()
}

/// The host bits of a prefix of length `len` in a family `bits` wide.
fn hostmask(bits: u8, len: u8) -> u128 {
    match bits.saturating_sub(len) {
        n if n >= 128 => u128::MAX,
        n => (1u128 << n) - 1,
    }
}

/// Whether `a` holds `b` (both aligned blocks).
fn holds(a: Block, b: Block) -> bool {
    a.0 == b.0 && a.2 <= b.2 && b.1 >= a.1 && b.1 - a.1 <= hostmask(a.0, a.2)
}

/// Two adjacent blocks of one length whose union is the aligned block one bit shorter.
fn buddies(a: Block, b: Block) -> Option<Block> {
    if a.0 != b.0 || a.2 != b.2 || a.2 == 0 {
        return None;
    }
    let parent = hostmask(a.0, a.2 - 1);
    let aligned = a.1 & parent == 0;
    (aligned && a.1.checked_add(hostmask(a.0, a.2) + 1) == Some(b.1)).then_some((a.0, a.1, a.2 - 1))
}

/// Merge addresses and prefixes into the fewest prefixes covering exactly them, in address
/// order (IPv4 first).
pub fn aggregate(sources: &[IpNetwork]) -> Vec<IpNetwork> {
    let mut blocks: Vec<Block> = sources.iter().map(block).collect();
    blocks.sort_unstable();
    let mut merged: Vec<Block> = Vec::with_capacity(blocks.len());
    for b in blocks {
        if merged.last().is_some_and(|&top| holds(top, b)) {
            continue;
        }
        merged.push(b);
        // A new block may complete its buddy, and the result the buddy before it.
        while merged.len() >= 2 {
            let (a, b) = (merged[merged.len() - 2], merged[merged.len() - 1]);
            let Some(parent) = buddies(a, b) else { break };
            merged.truncate(merged.len() - 2);
            merged.push(parent);
        }
    }
    merged.into_iter().filter_map(network).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn aggregate_merges_only_exact_siblings() {
        assert_eq!(aggregate(&[n("10.0.0.21/32"), n("10.0.0.22/32")]).len(), 2);
        assert_eq!(
            aggregate(&[n("10.0.0.20/32"), n("10.0.0.21/32")]),
            vec![n("10.0.0.20/31")]
        );
        assert_eq!(
            aggregate(&[n("10.0.0.48/28"), n("10.0.0.50/32")]),
            vec![n("10.0.0.48/28")]
        );
    }

    #[test]
    fn merges_cascade_and_duplicates_collapse() {
        let four = [
            "10.0.0.4/32",
            "10.0.0.5/32",
            "10.0.0.6/32",
            "10.0.0.7/32",
            "10.0.0.5/32",
        ];
        let four: Vec<IpNetwork> = four.iter().map(|s| n(s)).collect();
        assert_eq!(aggregate(&four), vec![n("10.0.0.4/30")]);
        assert_eq!(
            aggregate(&[n("0.0.0.0/1"), n("128.0.0.0/1")]),
            vec![n("0.0.0.0/0")]
        );
        assert_eq!(aggregate(&[n("::/1"), n("8000::/1")]), vec![n("::/0")]);
    }
}
