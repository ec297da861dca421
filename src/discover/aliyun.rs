//! The Alibaba Cloud ECS provider: the instance metadata service's paths, its token headers,
//! its `eth0`/`eth1`... naming, and the reading of each ENI's directory under `macs/`.
//! May import the discover session, parsers and types, and `crate::config` (the address rules).

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnetwork::{Ipv4Network, Ipv6Network};
use macaddr::MacAddr6;

use super::http::{Dir, Session, TokenScheme};
use super::parse::{
    parse_eni_id, parse_list, parse_mac, parse_netmask, parse_public_v4, parse_v4, parse_v4_net,
    parse_v6, parse_v6_net,
};
use super::{
    checks, mac_listing, region, DiscoverError, Instance, Listed, MetadataEni, NatEip, Provider,
    MACS_PATH,
};
use crate::model::mac_text;

/// The ECS instance metadata service.
pub(crate) const DEFAULT_ENDPOINT: &str = "http://100.100.100.200";
/// The largest token lifetime the metadata service accepts, in seconds.
const MAX_TOKEN_TTL: u32 = 21600;

const TOKEN: TokenScheme = TokenScheme {
    path: "/latest/api/token",
    ttl_header: "X-aliyun-ecs-metadata-token-ttl-seconds",
    header: "X-aliyun-ecs-metadata-token",
    max_ttl: MAX_TOKEN_TTL,
};
const MAC_PATH: &str = "/latest/meta-data/mac";
const EIPV4_PATH: &str = "/latest/meta-data/eipv4";
const REGION_PATH: &str = "/latest/meta-data/region-id";
/// ECS only (EC2 has `placement/region`).
pub(crate) const PROBE_PATH: &str = REGION_PATH;

/// Alibaba Cloud ECS.
pub(crate) struct Aliyun;

impl Provider for Aliyun {
    fn token_scheme(&self) -> TokenScheme {
        TOKEN
    }

    fn read(&self, session: &mut Session) -> Result<Instance, DiscoverError> {
        let macs = mac_listing(session)?;

        let primary_mac = parse_mac(session.get_required(MAC_PATH)?.trim(), MAC_PATH)?;
        let primary = macs
            .iter()
            .position(|(_, mac)| *mac == primary_mac)
            .ok_or_else(|| DiscoverError::Inconsistent {
                path: MAC_PATH.to_string(),
                reason: format!(
                    "the primary MAC {} is not among the ENIs listed in {MACS_PATH}",
                    mac_text(primary_mac)
                ),
            })?;

        let eip = match session.get(EIPV4_PATH)? {
            Some(text) if !text.trim().is_empty() => {
                Some(parse_public_v4(text.trim(), EIPV4_PATH)?)
            }
            _ => None,
        };
        let region = region(session, REGION_PATH)?;

        let mut enis = Vec::with_capacity(macs.len());
        for (text, mac) in &macs {
            enis.push(read_eni(session, text, *mac)?);
        }
        // The EIP of the primary ENI maps to its primary private IP (NAT mode).
        if let (Some(address), Some(eni)) = (eip, enis.get_mut(primary)) {
            if let Some(private_ip) = eni.private_ips.first().copied() {
                eni.eips.push(NatEip {
                    address,
                    private_ip,
                });
            }
        }
        Ok(Instance {
            region,
            enis,
            primary,
        })
    }

    fn address_path(&self, mac: MacAddr6, what: Listed) -> String {
        let dir = format!("{MACS_PATH}{}/", mac_text(mac));
        match what {
            Listed::PrivateIp => format!("{dir}private-ipv4s"),
            Listed::Ipv6 => format!("{dir}ipv6s"),
            Listed::Eip => EIPV4_PATH.to_string(),
        }
    }
}

fn inconsistent(path: String, reason: String) -> DiscoverError {
    DiscoverError::Inconsistent { path, reason }
}

fn read_eni(
    session: &mut Session,
    listed: &str,
    mac: MacAddr6,
) -> Result<MetadataEni, DiscoverError> {
    let mut d = Dir::new(session, format!("{MACS_PATH}{listed}/"));
    let (text, path) = d.required("network-interface-id")?;
    let id = parse_eni_id(text.trim(), &path)?;
    let (cidr, gateway) = read_subnet(&mut d)?;
    let private_ips = read_private_ips(&mut d, cidr, gateway)?;
    let (text, path) = d.optional("ipv4-prefixes")?;
    let prefixes = parse_list(&text, &path, parse_v4_net)?;
    checks::prefixes(&path, &prefixes, cidr, gateway, &private_ips)?;
    let (ipv6, ipv6_cidr, ipv6_gateway) = read_ipv6(&mut d)?;
    Ok(MetadataEni {
        mac,
        id,
        cidr,
        gateway,
        private_ips,
        prefixes,
        ipv6_prefixes: Vec::new(),
        ipv6,
        ipv6_cidr,
        ipv6_gateway,
        eips: Vec::new(),
    })
}

/// `vswitch-cidr-block`, `netmask` (which must agree) and `gateway`.
fn read_subnet(d: &mut Dir<'_>) -> Result<(Ipv4Network, Ipv4Addr), DiscoverError> {
    let (text, path) = d.required("vswitch-cidr-block")?;
    let cidr = parse_v4_net(text.trim(), &path)?;

    let (text, path) = d.required("netmask")?;
    let prefix = parse_netmask(text.trim(), &path)?;
    if prefix != cidr.prefix() {
        return Err(inconsistent(
            path,
            format!("netmask /{prefix} disagrees with vswitch-cidr-block {cidr}"),
        ));
    }

    let (text, path) = d.required("gateway")?;
    let gateway = parse_v4(text.trim(), &path)?;
    checks::gateway(&path, cidr, gateway)?;
    Ok((cidr, gateway))
}

/// `primary-ip-address` first, then the rest of `private-ipv4s`.
fn read_private_ips(
    d: &mut Dir<'_>,
    cidr: Ipv4Network,
    gateway: Ipv4Addr,
) -> Result<Vec<Ipv4Addr>, DiscoverError> {
    let (text, path) = d.required("primary-ip-address")?;
    let primary_ip = parse_v4(text.trim(), &path)?;

    let (text, path) = d.required("private-ipv4s")?;
    let listed: Vec<Ipv4Addr> = parse_list(&text, &path, parse_v4)?;
    if !listed.contains(&primary_ip) {
        return Err(inconsistent(
            path,
            format!("does not contain primary-ip-address {primary_ip}"),
        ));
    }
    let mut private_ips = vec![primary_ip];
    private_ips.extend(listed.into_iter().filter(|ip| *ip != primary_ip));
    checks::private_ips(&path, &private_ips, cidr, gateway)?;
    Ok(private_ips)
}

type V6 = (Vec<Ipv6Addr>, Option<Ipv6Network>, Option<Ipv6Addr>);

/// `ipv6s` (absent or empty: none); with addresses, `vswitch-ipv6-cidr-block` and
/// `ipv6-gateway`.
fn read_ipv6(d: &mut Dir<'_>) -> Result<V6, DiscoverError> {
    let (text, path) = d.optional("ipv6s")?;
    let ipv6: Vec<Ipv6Addr> = parse_list(&text, &path, parse_v6)?;
    checks::ipv6(&path, &ipv6, None)?;
    if ipv6.is_empty() {
        return Ok((ipv6, None, None));
    }
    let (text, cidr_path) = d.required("vswitch-ipv6-cidr-block")?;
    let net = parse_v6_net(text.trim(), &cidr_path)?;
    checks::ipv6(&path, &ipv6, Some(net))?;
    let (text, path) = d.required("ipv6-gateway")?;
    let gw = parse_v6(text.trim(), &path)?;
    checks::ipv6_gateway(&path, gw, net)?;
    Ok((ipv6, Some(net), Some(gw)))
}
