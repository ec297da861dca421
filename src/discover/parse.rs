//! Strict parsers for metadata values, shared by every provider: exact formats only (no
//! guessing), built on the std, macaddr and ipnetwork types, each error naming the metadata
//! path and showing the value. May import `crate::config` (its address rules) and the error type.

use std::net::{Ipv4Addr, Ipv6Addr};

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

/// Strictly `xx:xx:xx:xx:xx:xx` (hex, either case): macaddr parses it, after a check of that
/// shape (macaddr also takes `-` and `.` separators, and separators left out).
pub(crate) fn parse_mac(text: &str, path: &str) -> Result<MacAddr6, DiscoverError> {
    let colons = text.len() == 17
        && [2, 5, 8, 11, 14]
            .iter()
            .all(|&i| text.as_bytes()[i] == b':');
    let mac = colons
        .then(|| text.parse::<MacAddr6>().ok())
        .flatten()
        .ok_or_else(|| invalid(path, "malformed MAC address", text))?;
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
    let net: Option<Ipv4Network> = prefix_len_written(text)
        .then(|| text.parse().ok())
        .flatten();
    let net = net.ok_or_else(|| invalid(path, "malformed IPv4 CIDR block", text))?;
    no_host_bits(net.network() == net.ip(), path, text)?;
    Ok(net)
}

/// A CIDR block `x:y::/n` whose host bits are zero.
pub(crate) fn parse_v6_net(text: &str, path: &str) -> Result<Ipv6Network, DiscoverError> {
    let net: Option<Ipv6Network> = prefix_len_written(text)
        .then(|| text.parse().ok())
        .flatten();
    let net = net.ok_or_else(|| invalid(path, "malformed IPv6 CIDR block", text))?;
    no_host_bits(net.network() == net.ip(), path, text)?;
    Ok(net)
}

/// The metadata's own form, checked before ipnetwork parses it: an explicit `/length` in plain
/// decimal (ipnetwork also takes no length, a netmask, a sign or leading zeros).
fn prefix_len_written(text: &str) -> bool {
    let Some((_, len)) = text.split_once('/') else {
        return false;
    };
    (1..=3).contains(&len.len())
        && len.bytes().all(|b| b.is_ascii_digit())
        && (len == "0" || !len.starts_with('0'))
}

fn no_host_bits(clear: bool, path: &str, text: &str) -> Result<(), DiscoverError> {
    if clear {
        Ok(())
    } else {
        Err(invalid(path, "CIDR block has host bits set", text))
    }
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

/// A list value in any form a metadata service documents, each item parsed strictly;
/// duplicates are an error. Accepted: an empty body, `[]`, a JSON array of strings
/// (`["a","b"]`), a bracketed comma list without quotes (`[a,b]`, Alibaba's `ipv6s`), a bare
/// value (`a`) and one value per line (AWS, and Alibaba's `ipv4-prefixes`). Anything else
/// (half a bracket, empty items, stray quotes, several values on one line) is an error that
/// names `path` and quotes the raw value.
pub(crate) fn parse_list<T: PartialEq>(
    text: &str,
    path: &str,
    parse: fn(&str, &str) -> Result<T, DiscoverError>,
) -> Result<Vec<T>, DiscoverError> {
    let items = split_list(text.trim(), path, text)?;
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        let value = parse(item, path)?;
        if out.contains(&value) {
            return Err(invalid(path, "value listed twice", item));
        }
        out.push(value);
    }
    Ok(out)
}

/// The items of a list value (see [`parse_list`]), trimmed, none empty.
fn split_list(body: &str, path: &str, raw: &str) -> Result<Vec<String>, DiscoverError> {
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let Some(open) = body.strip_prefix('[') else {
        if body.starts_with(']') || body.ends_with(']') {
            return Err(invalid(path, "malformed list (unbalanced brackets)", raw));
        }
        return bare_items(body.lines(), path, raw);
    };
    let inner = open
        .strip_suffix(']')
        .ok_or_else(|| invalid(path, "malformed list (no closing bracket)", raw))?
        .trim();
    if inner.is_empty() {
        return Ok(Vec::new());
    }
    if inner.contains('"') {
        let items: Vec<String> = serde_json::from_str(body)
            .map_err(|e| invalid(path, &format!("malformed JSON array of strings ({e})"), raw))?;
        return items
            .iter()
            .map(|i| match i.trim() {
                "" => Err(invalid(path, "empty item in the list", raw)),
                t => Ok(t.to_string()),
            })
            .collect();
    }
    bare_items(inner.split(','), path, raw)
}

/// Unquoted items: each one token (no blanks, brackets, quotes or commas inside).
fn bare_items<'a>(
    parts: impl Iterator<Item = &'a str>,
    path: &str,
    raw: &str,
) -> Result<Vec<String>, DiscoverError> {
    let mut out = Vec::new();
    for part in parts {
        let item = part.trim();
        if item.is_empty() {
            return Err(invalid(path, "empty item in the list", raw));
        }
        let odd = |c: char| c.is_whitespace() || c.is_control() || "[]\",".contains(c);
        if item.chars().any(odd) {
            return Err(invalid(path, "malformed list item", raw));
        }
        out.push(item.to_string());
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
            "00:16:3e:aa:bb:c",
            "0016.3eaa.bbcc",
            "00163eaabbcc",
            "00:16:3e:aa:bb:cc\n",
            ":00:16:3e:aa:bbcc",
            "00:16:3e:aa:bb:\u{e9}",
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
            "192.168.1.0/255.255.255.0",
            "192.168.1.0/24/24",
            "192.168.01.0/24",
            " 192.168.1.0/24",
        ] {
            assert!(parse_v4_net(bad, "p").is_err(), "{bad}");
        }
        assert!(parse_v6_net("2001:db8::/64", "p").is_ok());
        assert!(parse_v6_net("2001:db8::1/64", "p").is_err());
        assert!(parse_v6_net("2001:db8::", "p").is_err());
        assert!(parse_v6_net("2001:db8::/0129", "p").is_err());
        assert!(parse_v6_net("::/0", "p").is_ok());
        assert!(parse_v4_net("0.0.0.0/0", "p").is_ok());
        // Unicast only: a multicast MAC is refused after the crate read it.
        assert!(parse_mac("01:00:5e:00:00:01", "p").is_err());
        assert!(parse_public_v4("203.0.113.7", "p").is_ok());
        assert!(parse_public_v4("192.168.0.1", "p").is_err());
        assert!(parse_region("cn-hangzhou", "p").is_ok());
        assert!(parse_region("cn hangzhou", "p").is_err());
    }

    fn v6s(text: &str) -> Result<Vec<Ipv6Addr>, DiscoverError> {
        parse_list(text, "macs/x/ipv6s", parse_v6)
    }

    /// Every list form the services document: Alibaba's instance-metadata table
    /// (`private-ipv4s` = `["192.168.XX.XX"]`), cloud-init's Alibaba fixture
    /// (tests/unittests/sources/test_aliyun.py: `"ipv6s": "[2408:xxxxxx]"`, bracketed, no
    /// quotes), issue 14's table (`[2408:4321:180:1701:94c7:bc38:3bfa:e4e]`, a bare
    /// `192.168.4.48/28`), cloud-init's EC2 fixture (test_ec2.py: lists joined by newlines,
    /// `"ipv6s": ""` for none).
    #[test]
    fn every_documented_list_form() {
        let one = vec!["2408:4321:180:1701:94c7:bc38:3bfa:e4e"
            .parse::<Ipv6Addr>()
            .unwrap()];
        assert_eq!(v6s("[2408:4321:180:1701:94c7:bc38:3bfa:e4e]").unwrap(), one);
        assert_eq!(v6s("2408:4321:180:1701:94c7:bc38:3bfa:e4e\n").unwrap(), one);
        assert_eq!(
            v6s(r#"["2408:4321:180:1701:94c7:bc38:3bfa:e4e"]"#).unwrap(),
            one
        );
        let two = "[2408:4321:180:1701::1, 2408:4321:180:1701::2]";
        assert_eq!(v6s(two).unwrap().len(), 2);
        let lines = "2600:1f16:292:100:c187:593c:4349:136\n2600:1f16:292:100:f153:12a3:c37c:11f9\n";
        assert_eq!(v6s(lines).unwrap().len(), 2);
        for empty in ["", "\n", "[]", "[ ]", " [] \n"] {
            assert!(v6s(empty).unwrap().is_empty(), "{empty:?}");
        }
        let nets = parse_list("192.168.4.48/28", "p", parse_v4_net).unwrap();
        assert_eq!(
            nets,
            vec!["192.168.4.48/28".parse::<Ipv4Network>().unwrap()]
        );
        let ips = parse_list(r#"["192.168.0.1","192.168.0.2"]"#, "p", parse_v4).unwrap();
        assert_eq!(ips.len(), 2);
        assert_eq!(parse_list("192.168.0.1", "p", parse_v4).unwrap().len(), 1);
    }

    #[test]
    fn garbage_lists_name_the_path_and_quote_the_value() {
        for bad in [
            "[2408::1",
            "2408::1]",
            "[2408::1,]",
            "[,2408::1]",
            "[2408::1 2408::2]",
            "2408::1 2408::2",
            "2408::1,2408::2",
            "2408::1\n\n2408::2",
            r#"["2408::1",]"#,
            r#"[""]"#,
            r#"{"a":1}"#,
            "<html><body>404 Not Found</body></html>",
            "[2408::1, 2408::1]",
            "[2408::zz]",
        ] {
            let e = v6s(bad).expect_err(bad).to_string();
            assert!(e.starts_with("metadata macs/x/ipv6s: "), "{bad:?}: {e}");
            assert!(e.contains('"'), "{bad:?} quotes the value: {e}");
        }
        let long = format!("[{}]", "x".repeat(500));
        let e = v6s(&long).expect_err("long").to_string();
        assert!(e.len() < 300 && e.ends_with("...\""), "{e}");
    }
}
