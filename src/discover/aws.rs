//! The AWS EC2 provider (IMDSv2): the session-token headers, the per-MAC keys under
//! `network/interfaces/macs/`, the primary ENI (device-number 0 on network-card 0), the subnet
//! router (the subnet's first host) and public IPv4 addresses as 1:1 NAT (nat-mode EIPs).
//! May import the discover session, parsers, checks and types, and `crate::model`.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnetwork::{Ipv4Network, Ipv6Network};
use macaddr::MacAddr6;

use super::http::{Dir, Session, TokenScheme};
use super::parse::{
    invalid, parse_eni_id, parse_list, parse_public_v4, parse_v4, parse_v4_net, parse_v6,
    parse_v6_net,
};
use super::{
    checks, mac_listing, region, DiscoverError, Instance, Listed, MetadataEni, NatEip, Provider,
    MACS_PATH,
};
use crate::model::mac_text;

/// The instance metadata service (IPv4 endpoint).
pub(crate) const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";
/// The largest token lifetime IMDSv2 accepts, in seconds.
const MAX_TOKEN_TTL: u32 = 21600;
const TOKEN: TokenScheme = TokenScheme {
    path: "/latest/api/token",
    ttl_header: "X-aws-ec2-metadata-token-ttl-seconds",
    header: "X-aws-ec2-metadata-token",
    max_ttl: MAX_TOKEN_TTL,
};
const REGION_PATH: &str = "/latest/meta-data/placement/region";
/// EC2 only (ECS has `region-id`).
pub(crate) const PROBE_PATH: &str = REGION_PATH;

/// AWS EC2.
pub(crate) struct Aws;

impl Provider for Aws {
    fn token_scheme(&self) -> TokenScheme {
        TOKEN
    }

    fn read(&self, session: &mut Session) -> Result<Instance, DiscoverError> {
        let macs = mac_listing(session)?;
        let region = region(session, REGION_PATH)?;
        let mut read = Vec::with_capacity(macs.len());
        for (text, mac) in &macs {
            read.push(read_eni(session, text, *mac)?);
        }
        // Attachment order: network card, then device number; each slot once.
        read.sort_by_key(|(slot, _)| *slot);
        if let Some(w) = read.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(DiscoverError::Inconsistent {
                path: MACS_PATH.to_string(),
                reason: format!(
                    "two ENIs claim device-number {} on network-card {}",
                    w[0].0 .1, w[0].0 .0
                ),
            });
        }
        let primary = read
            .iter()
            .position(|(slot, _)| *slot == (0, 0))
            .ok_or_else(|| DiscoverError::Inconsistent {
                path: MACS_PATH.to_string(),
                reason: "no ENI has device-number 0 on network-card 0 (the primary ENI)"
                    .to_string(),
            })?;
        Ok(Instance {
            region,
            enis: read.into_iter().map(|(_, e)| e).collect(),
            primary,
        })
    }

    fn address_path(&self, mac: MacAddr6, what: Listed) -> String {
        let dir = format!("{MACS_PATH}{}/", mac_text(mac));
        match what {
            Listed::PrivateIp => format!("{dir}local-ipv4s"),
            Listed::Ipv6 => format!("{dir}ipv6s"),
            Listed::Eip => format!("{dir}ipv4-associations/"),
        }
    }
}

/// (network card, device number), and the ENI.
fn read_eni(
    session: &mut Session,
    listed: &str,
    mac: MacAddr6,
) -> Result<((u32, u32), MetadataEni), DiscoverError> {
    let mut d = Dir::new(session, format!("{MACS_PATH}{listed}/"));
    let (text, path) = d.required("device-number")?;
    let device = parse_index(text.trim(), &path)?;
    // Only instance types with several network cards have the key.
    let (text, path) = d.optional("network-card")?;
    let card = match text.trim() {
        "" => 0,
        t => parse_index(t, &path)?,
    };
    let (text, path) = d.required("interface-id")?;
    let id = parse_eni_id(text.trim(), &path)?;
    let (text, path) = d.required("subnet-ipv4-cidr-block")?;
    let cidr = parse_v4_net(text.trim(), &path)?;
    let gateway = first_host_v4(cidr).ok_or_else(|| {
        invalid(
            &path,
            "subnet too small for a router and a host",
            text.trim(),
        )
    })?;
    let (text, path) = d.required("local-ipv4s")?;
    let private_ips = parse_list(&text, &path, parse_v4)?;
    if private_ips.is_empty() {
        return Err(invalid(&path, "no private IPv4 address", &text));
    }
    checks::private_ips(&path, &private_ips, cidr, gateway)?;
    let (text, path) = d.optional("ipv4-prefix")?;
    let prefixes = parse_list(&text, &path, parse_v4_net)?;
    checks::prefixes(&path, &prefixes, cidr, gateway, &private_ips)?;
    let v6 = read_ipv6(&mut d)?;
    let eips = read_eips(&mut d, &private_ips)?;
    let eni = MetadataEni {
        mac,
        id,
        cidr,
        gateway,
        private_ips,
        prefixes,
        ipv6_prefixes: v6.prefixes,
        ipv6: v6.addresses,
        ipv6_cidr: v6.cidr,
        ipv6_gateway: v6.gateway,
        eips,
    };
    Ok(((card, device), eni))
}

struct V6 {
    addresses: Vec<Ipv6Addr>,
    prefixes: Vec<Ipv6Network>,
    cidr: Option<Ipv6Network>,
    gateway: Option<Ipv6Addr>,
}

/// `ipv6s` and `ipv6-prefix` (absent or empty: none); with either, the block of
/// `subnet-ipv6-cidr-blocks` holding them, whose first host is the router.
fn read_ipv6(d: &mut Dir<'_>) -> Result<V6, DiscoverError> {
    let (text, path) = d.optional("ipv6s")?;
    let addresses = parse_list(&text, &path, parse_v6)?;
    checks::ipv6(&path, &addresses, None)?;
    let (text, prefix_path) = d.optional("ipv6-prefix")?;
    let prefixes = parse_list(&text, &prefix_path, parse_v6_net)?;
    let Some(first) = addresses
        .first()
        .copied()
        .or(prefixes.first().map(|p| p.network()))
    else {
        return Ok(V6 {
            addresses,
            prefixes,
            cidr: None,
            gateway: None,
        });
    };
    let (text, blocks_path) = d.required("subnet-ipv6-cidr-blocks")?;
    let blocks = parse_list(&text, &blocks_path, parse_v6_net)?;
    let net = blocks
        .iter()
        .copied()
        .find(|b| b.contains(first))
        .ok_or_else(|| DiscoverError::Inconsistent {
            path: blocks_path.clone(),
            reason: format!("no IPv6 subnet block holds {first}"),
        })?;
    checks::ipv6(&path, &addresses, Some(net))?;
    let gateway = Ipv6Addr::from(u128::from(net.network()).saturating_add(1));
    checks::ipv6_prefixes(&prefix_path, &prefixes, net, &addresses, gateway)?;
    Ok(V6 {
        addresses,
        prefixes,
        cidr: Some(net),
        gateway: Some(gateway),
    })
}

/// `ipv4-associations/`: one entry per public IPv4 address, whose value is the private IP it
/// is mapped to (1:1 NAT). Without the listing, `public-ipv4s` with one address maps it to the
/// primary private IP (an auto-assigned public IP); several cannot be placed and are an error.
fn read_eips(d: &mut Dir<'_>, private_ips: &[Ipv4Addr]) -> Result<Vec<NatEip>, DiscoverError> {
    let (listing, path) = d.optional("ipv4-associations/")?;
    let mut eips = Vec::new();
    if listing.trim().is_empty() {
        let (text, path) = d.optional("public-ipv4s")?;
        let public = parse_list(&text, &path, parse_public_v4)?;
        match (public.as_slice(), private_ips.first()) {
            ([], _) => {}
            ([address], Some(private_ip)) => eips.push(NatEip {
                address: *address,
                private_ip: *private_ip,
            }),
            _ => {
                return Err(invalid(
                    &path,
                    "several public IPv4 addresses, and no ipv4-associations/ to place them",
                    &text,
                ))
            }
        }
    } else {
        for address in parse_list(&listing, &path, parse_public_v4)? {
            let (text, key_path) = d.required(&format!("ipv4-associations/{address}"))?;
            let private_ip = parse_v4(text.trim(), &key_path)?;
            eips.push(NatEip {
                address,
                private_ip,
            });
        }
    }
    checks::eips(&path, &eips, private_ips)?;
    Ok(eips)
}

/// The subnet's first host: the VPC router (AWS reserves the network address + 1 for it).
fn first_host_v4(net: Ipv4Network) -> Option<Ipv4Addr> {
    (net.prefix() <= 30).then(|| Ipv4Addr::from(u32::from(net.network()).saturating_add(1)))
}

/// `device-number`, `network-card`: a small decimal index.
fn parse_index(text: &str, path: &str) -> Result<u32, DiscoverError> {
    let ok = !text.is_empty()
        && text.len() <= 3
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    match text.parse::<u32>() {
        Ok(n) if ok => Ok(n),
        _ => Err(invalid(path, "malformed index", text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_is_the_first_host() {
        let net: Ipv4Network = "172.31.16.0/20".parse().unwrap();
        assert_eq!(first_host_v4(net), Some(Ipv4Addr::new(172, 31, 16, 1)));
        assert_eq!(first_host_v4("10.0.0.0/31".parse().unwrap()), None);
        assert!(parse_index("0", "p").is_ok());
        assert_eq!(parse_index("12", "p").ok(), Some(12));
        for bad in ["", "01", "-1", "1 ", "x", "1000"] {
            assert!(parse_index(bad, "p").is_err(), "{bad:?}");
        }
    }
}
