//! Strict parsers for metadata values, shared by every provider: exact formats only (no
//! guessing), built on the std, macaddr and ipnetwork types, each error naming the metadata
//! path and showing the value. May import `crate::config` (its address rules) and the error type.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnetwork::{Ipv4Network, Ipv6Network};
use macaddr::MacAddr6;

use super::DiscoverError;
use crate::config::{self, rules};

pub(crate) fn invalid(path: &str, reason: &str, value: &str) -> DiscoverError {
    const MAX: usize = 120;
    let shown = match value.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", value.get(..cut).unwrap_or("")),
        None => value.to_string(),
    };
    DiscoverError::Invalid {
        path: path.to_string(),
        reason: reason.to_string(),
        value: shown,
    }
}

/// The MAC listing: one MAC per line, each ending in `/`. Returns (text as listed, MAC).
pub(crate) fn parse_mac_listing(
    text: &str,
    path: &str,
) -> Result<Vec<(String, MacAddr6)>, DiscoverError> {
    let mut out: Vec<(String, MacAddr6)> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let entry = line.strip_suffix('/').unwrap_or(line);
        let mac = parse_mac(entry, path)?;
        if out.iter().any(|(_, m)| *m == mac) {
            return Err(invalid(path, "MAC listed twice", entry));
        }
        out.push((entry.to_string(), mac));
    }
    Ok(out)
}

/// Strictly `xx:xx:xx:xx:xx:xx` (hex, either case).
pub(crate) fn parse_mac(text: &str, path: &str) -> Result<MacAddr6, DiscoverError> {
    let bad = || invalid(path, "malformed MAC address", text);
    let mut bytes = [0u8; 6];
    let mut parts = text.split(':');
    for b in bytes.iter_mut() {
        let part = parts.next().ok_or_else(bad)?;
        if part.len() != 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        *b = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    let mac = MacAddr6::from(bytes);
    if !rules::unicast_mac(mac) {
        return Err(invalid(path, "not a unicast MAC address", text));
    }
    Ok(mac)
}

pub(crate) fn parse_v4(text: &str, path: &str) -> Result<Ipv4Addr, DiscoverError> {
    text.parse()
        .map_err(|_| invalid(path, "malformed IPv4 address", text))
}

pub(crate) fn parse_v6(text: &str, path: &str) -> Result<Ipv6Addr, DiscoverError> {
    text.parse()
        .map_err(|_| invalid(path, "malformed IPv6 address", text))
}

/// A CIDR block `a.b.c.d/n` whose host bits are zero.
pub(crate) fn parse_v4_net(text: &str, path: &str) -> Result<Ipv4Network, DiscoverError> {
    let net = split_cidr(text, 32).and_then(|(addr, len)| Ipv4Network::new(addr, len).ok());
    let net = net.ok_or_else(|| invalid(path, "malformed IPv4 CIDR block", text))?;
    no_host_bits(net.network() == net.ip(), path, text)?;
    Ok(net)
}

/// A CIDR block `x:y::/n` whose host bits are zero.
pub(crate) fn parse_v6_net(text: &str, path: &str) -> Result<Ipv6Network, DiscoverError> {
    let net = split_cidr(text, 128).and_then(|(addr, len)| Ipv6Network::new(addr, len).ok());
    let net = net.ok_or_else(|| invalid(path, "malformed IPv6 CIDR block", text))?;
    no_host_bits(net.network() == net.ip(), path, text)?;
    Ok(net)
}

/// `address/length`, the length in strict decimal of at most `max`.
fn split_cidr<A: FromStr>(text: &str, max: u8) -> Option<(A, u8)> {
    let (addr, len) = text.split_once('/')?;
    Some((addr.parse().ok()?, parse_prefix_len(len, max)?))
}

fn no_host_bits(clear: bool, path: &str, text: &str) -> Result<(), DiscoverError> {
    if clear {
        Ok(())
    } else {
        Err(invalid(path, "CIDR block has host bits set", text))
    }
}

/// Decimal digits only (no sign, no leading zeros beyond "0"), at most `max`.
fn parse_prefix_len(text: &str, max: u8) -> Option<u8> {
    if text.is_empty()
        || text.len() > 3
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return None;
    }
    let n: u8 = text.parse().ok()?;
    (n <= max).then_some(n)
}

/// A dotted-quad netmask with contiguous ones; returns its prefix length.
pub(crate) fn parse_netmask(text: &str, path: &str) -> Result<u8, DiscoverError> {
    let mask: Ipv4Addr = text
        .parse()
        .map_err(|_| invalid(path, "malformed netmask", text))?;
    let bits = u32::from(mask);
    let ones = bits.leading_ones();
    if ones + bits.trailing_zeros() != 32 {
        return Err(invalid(path, "netmask is not contiguous", text));
    }
    u8::try_from(ones).map_err(|_| invalid(path, "malformed netmask", text))
}

/// The EIP must be a public address (the rule of `config::not_public`).
pub(crate) fn parse_public_v4(text: &str, path: &str) -> Result<Ipv4Addr, DiscoverError> {
    let ip = parse_v4(text, path)?;
    if let Some(why) = config::not_public(ip) {
        return Err(invalid(
            path,
            &format!("the EIP is not a public address ({why})"),
            text,
        ));
    }
    Ok(ip)
}

/// A JSON array of strings, each parsed strictly; duplicates are an error.
pub(crate) fn parse_json_list<T: PartialEq>(
    text: &str,
    path: &str,
    parse: fn(&str, &str) -> Result<T, DiscoverError>,
) -> Result<Vec<T>, DiscoverError> {
    let items: Vec<String> = serde_json::from_str(text.trim()).map_err(|e| {
        invalid(
            path,
            &format!("malformed JSON array of strings ({e})"),
            text,
        )
    })?;
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        let value = parse(item.trim(), path)?;
        if out.contains(&value) {
            return Err(invalid(path, "value listed twice", item));
        }
        out.push(value);
    }
    Ok(out)
}

/// `eni-...`: ASCII letters, digits, `-` and `_`.
pub(crate) fn parse_eni_id(text: &str, path: &str) -> Result<String, DiscoverError> {
    if text.is_empty()
        || text.len() > 128
        || !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(invalid(path, "malformed ENI id", text));
    }
    Ok(text.to_string())
}

/// `cn-hangzhou`, `ap-southeast-1`...: lowercase ASCII letters, digits and `-`.
pub(crate) fn parse_region(text: &str, path: &str) -> Result<String, DiscoverError> {
    if text.is_empty()
        || text.len() > 64
        || !text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(invalid(path, "malformed region id", text));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_values() {
        assert!(parse_mac("00:16:3e:aa:bb:cc", "p").is_ok());
        assert!(parse_mac("00:16:3E:AA:BB:CC", "p").is_ok());
        for bad in [
            "00:16:3e:aa:bb",
            "00-16-3e-aa-bb-cc",
            "00:16:3e:aa:bb:cc:dd",
            "0:16:3e:aa:bb:cc",
            "+0:16:3e:aa:bb:cc",
            "",
        ] {
            assert!(parse_mac(bad, "p").is_err(), "{bad}");
        }
        assert_eq!(parse_netmask("255.255.255.0", "p").ok(), Some(24));
        assert_eq!(parse_netmask("0.0.0.0", "p").ok(), Some(0));
        assert!(parse_netmask("255.0.255.0", "p").is_err());
        assert!(parse_v4_net("192.168.1.0/24", "p").is_ok());
        for bad in [
            "192.168.1.1/24",
            "192.168.1.0/33",
            "192.168.1.0/024",
            "192.168.1.0",
            "192.168.1.0/+4",
            "192.168.1.0/",
        ] {
            assert!(parse_v4_net(bad, "p").is_err(), "{bad}");
        }
        assert!(parse_v6_net("2001:db8::/64", "p").is_ok());
        assert!(parse_v6_net("2001:db8::1/64", "p").is_err());
        assert!(parse_public_v4("203.0.113.7", "p").is_ok());
        assert!(parse_public_v4("192.168.0.1", "p").is_err());
        assert!(parse_region("cn-hangzhou", "p").is_ok());
        assert!(parse_region("cn hangzhou", "p").is_err());
    }
}
