//! The codec: eniroute's kernel objects (`model`) to and from rtnetlink messages. Pure
//! functions, no I/O; the client ([`super::client`]) sends what these build and hands back
//! what the kernel answered. May import only `model` (and the netlink packet crates).

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use macaddr::MacAddr6;
use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressProtocol,
    AddressScope,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteNextHop,
    RouteNextHopFlags, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::Lookup;
use crate::model::{
    Address, Change, Family, ForeignRoute, FwMark, HostLink, Iface, NextHop, Route, Rule, Scope,
};

/// The request that makes one change, with its flags; `proto` tags what eniroute adds. None
/// for the nftables table, which is not rtnetlink's (kernel/nft.rs).
pub(super) fn change_message(change: &Change, proto: u8) -> Option<(RouteNetlinkMessage, u16)> {
    let ack = NLM_F_REQUEST | NLM_F_ACK;
    let create = ack | NLM_F_CREATE | NLM_F_EXCL;
    let p = proto;
    Some(match change {
        Change::SetTable { .. } => return None,
        Change::LinkUp(i) | Change::LinkDown(i) => {
            let mut m = LinkMessage::default();
            m.header.index = i.index;
            m.header.change_mask = LinkFlags::Up;
            if matches!(change, Change::LinkUp(_)) {
                m.header.flags = LinkFlags::Up;
            }
            (RouteNetlinkMessage::SetLink(m), ack)
        }
        Change::AddAddress(a) => (
            RouteNetlinkMessage::NewAddress(address_message(a, p)),
            create,
        ),
        Change::DelAddress(a) => (RouteNetlinkMessage::DelAddress(address_message(a, p)), ack),
        Change::AddRoute(r) => (RouteNetlinkMessage::NewRoute(route_message(r, p)), create),
        Change::ReplaceRoute { new, .. } => (
            RouteNetlinkMessage::NewRoute(route_message(new, p)),
            ack | NLM_F_CREATE | NLM_F_REPLACE,
        ),
        Change::DelRoute(r) => (RouteNetlinkMessage::DelRoute(route_message(r, p)), ack),
        // Without NLM_F_EXCL: the kernel then skips its duplicate check, a walk of every rule
        // per add (961 rules re-added: 12.5 -> 9.8 ms in benches/watch.rs). The add follows a
        // fresh dump under the lock; a duplicate only a concurrent identical add can make is
        // deleted by the next reconcile (it deletes duplicates of owned rules).
        Change::AddRule(r) => (
            RouteNetlinkMessage::NewRule(rule_message(r, p)),
            ack | NLM_F_CREATE,
        ),
        Change::DelRule(r) => (RouteNetlinkMessage::DelRule(rule_message(r, p)), ack),
    })
}

/// The request that puts a foreign route back with its own protocol.
pub(super) fn restore_message(r: &ForeignRoute) -> (RouteNetlinkMessage, u16) {
    let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
    (
        RouteNetlinkMessage::NewRoute(route_message(&r.route, r.protocol)),
        flags,
    )
}

pub(super) fn lookup_message(src: Option<IpAddr>, dst: IpAddr) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = match dst {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    m.header.destination_prefix_length = if dst.is_ipv4() { 32 } else { 128 };
    // Without RTM_F_LOOKUP_TABLE IPv4 reports table main whatever rule matched; IPv6 always
    // reports the right table and, with strict checking, refuses the flag (EINVAL).
    if dst.is_ipv4() {
        m.header.flags = RouteFlags::LookupTable;
    }
    m.attributes
        .push(RouteAttribute::Destination(RouteAddress::from(dst)));
    if let Some(s) = src {
        m.header.source_prefix_length = if s.is_ipv4() { 32 } else { 128 };
        m.attributes
            .push(RouteAttribute::Source(RouteAddress::from(s)));
    }
    m
}

pub(super) fn lookup_answer(r: &RouteMessage) -> Lookup {
    let mut l = Lookup {
        oif: None,
        gateway: None,
        table: Some(r.header.table as u32),
    };
    for attr in &r.attributes {
        match attr {
            RouteAttribute::Oif(i) => l.oif = Some(*i),
            RouteAttribute::Gateway(g) => l.gateway = route_ip(g),
            RouteAttribute::Table(t) => l.table = Some(*t),
            _ => {}
        }
    }
    l
}

pub(super) fn host_link(l: &LinkMessage) -> HostLink {
    let mut name = String::new();
    let mut mac = None;
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => name = n.clone(),
            LinkAttribute::Address(b) if b.len() == 6 => {
                mac = Some(MacAddr6::new(b[0], b[1], b[2], b[3], b[4], b[5]))
            }
            _ => {}
        }
    }
    HostLink {
        name,
        index: l.header.index,
        mac,
        up: l.header.flags.contains(LinkFlags::Up),
    }
}

pub(super) fn family_of(f: AddressFamily) -> Option<Family> {
    match f {
        AddressFamily::Inet => Some(Family::V4),
        AddressFamily::Inet6 => Some(Family::V6),
        _ => None,
    }
}

pub(super) fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

fn unspecified(f: Family) -> IpAddr {
    match f {
        Family::V4 => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        Family::V6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

/// An address message as eniroute state, with its protocol tag (0 when untagged).
pub(super) fn parse_address(
    a: &AddressMessage,
    iface: &impl Fn(u32) -> Iface,
) -> Option<(Address, u8)> {
    family_of(a.header.family)?;
    let mut local = None;
    let mut address = None;
    let mut flags = a.header.flags.bits() as u32;
    let mut proto = 0u8;
    for attr in &a.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            AddressAttribute::Flags(f) => flags = f.bits(),
            AddressAttribute::Protocol(p) => proto = u8::from(*p),
            _ => {}
        }
    }
    let addr = local.or(address)?;
    let f = AddressFlags::from_bits_retain(flags);
    Some((
        Address {
            iface: iface(a.header.index),
            addr,
            prefix_len: a.header.prefix_len,
            noprefixroute: f.contains(AddressFlags::Noprefixroute),
            nodad: f.contains(AddressFlags::Nodad),
        },
        proto,
    ))
}

fn address_message(a: &Address, proto: u8) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = match a.addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    m.header.prefix_len = a.prefix_len;
    m.header.index = a.iface.index;
    m.header.scope = AddressScope::Universe;
    let mut flags = AddressFlags::empty();
    if a.noprefixroute {
        flags |= AddressFlags::Noprefixroute;
    }
    if a.nodad {
        flags |= AddressFlags::Nodad;
        m.header.flags = AddressHeaderFlags::Nodad;
    }
    if a.addr.is_ipv4() {
        m.attributes.push(AddressAttribute::Local(a.addr));
    }
    m.attributes.push(AddressAttribute::Address(a.addr));
    if !flags.is_empty() {
        m.attributes.push(AddressAttribute::Flags(flags));
    }
    m.attributes
        .push(AddressAttribute::Protocol(AddressProtocol::from(proto)));
    m
}

/// A route message as eniroute state, with its protocol. None for non-unicast routes.
pub(super) fn parse_route(r: &RouteMessage, iface: &impl Fn(u32) -> Iface) -> Option<(Route, u8)> {
    let family = family_of(r.header.address_family)?;
    if r.header.kind != RouteType::Unicast {
        return None;
    }
    let mut dst = None;
    let mut table = r.header.table as u32;
    let mut metric = 0;
    let mut src = None;
    let mut gateway = None;
    let mut oif = None;
    let mut multipath = None;
    for a in &r.attributes {
        match a {
            RouteAttribute::Destination(d) => dst = route_ip(d),
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Priority(p) => metric = *p,
            RouteAttribute::PrefSource(s) => src = route_ip(s),
            RouteAttribute::Gateway(g) => gateway = route_ip(g),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::MultiPath(hops) => multipath = Some(hops),
            _ => {}
        }
    }
    let dst = IpNetwork::new(
        dst.unwrap_or(unspecified(family)),
        r.header.destination_prefix_length,
    )
    .ok()?;
    let nexthops = match multipath {
        Some(hops) => hops.iter().map(|h| nexthop(h, iface)).collect(),
        None => vec![NextHop {
            gateway,
            iface: iface(oif.unwrap_or(0)),
            weight: 1,
            onlink: r.header.flags.contains(RouteFlags::Onlink),
        }],
    };
    let scope = match r.header.scope {
        RouteScope::Universe => Scope::Universe,
        RouteScope::Link => Scope::Link,
        other => Scope::Other(u8::from(other)),
    };
    Some((
        Route {
            table,
            dst,
            metric,
            scope,
            src,
            nexthops,
        },
        u8::from(r.header.protocol),
    ))
}

fn nexthop(h: &RouteNextHop, iface: &impl Fn(u32) -> Iface) -> NextHop {
    let gateway = h.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(g) => route_ip(g),
        _ => None,
    });
    NextHop {
        gateway,
        iface: iface(h.interface_index),
        weight: h.hops as u16 + 1,
        onlink: h.flags.contains(RouteNextHopFlags::Onlink),
    }
}

fn route_message(r: &Route, proto: u8) -> RouteMessage {
    let mut m = RouteMessage::default();
    let h = &mut m.header;
    h.address_family = match r.family() {
        Family::V4 => AddressFamily::Inet,
        Family::V6 => AddressFamily::Inet6,
    };
    h.destination_prefix_length = r.dst.prefix();
    h.protocol = RouteProtocol::from(proto);
    h.kind = RouteType::Unicast;
    h.scope = match r.scope {
        Scope::Universe => RouteScope::Universe,
        Scope::Link => RouteScope::Link,
        Scope::Other(n) => RouteScope::from(n),
    };
    if r.table < 256 {
        h.table = r.table as u8;
    } else {
        h.table = RouteHeader::RT_TABLE_UNSPEC;
    }
    m.attributes.push(RouteAttribute::Table(r.table));
    if r.dst.prefix() > 0 {
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(r.dst.ip())));
    }
    if r.metric != 0 {
        m.attributes.push(RouteAttribute::Priority(r.metric));
    }
    if let Some(s) = r.src {
        m.attributes
            .push(RouteAttribute::PrefSource(RouteAddress::from(s)));
    }
    match r.nexthops.as_slice() {
        [nh] => {
            if let Some(g) = nh.gateway {
                m.attributes
                    .push(RouteAttribute::Gateway(RouteAddress::from(g)));
            }
            if nh.iface.index != 0 {
                m.attributes.push(RouteAttribute::Oif(nh.iface.index));
            }
            if nh.onlink {
                m.header.flags |= RouteFlags::Onlink;
            }
        }
        hops => m.attributes.push(RouteAttribute::MultiPath(
            hops.iter().map(nexthop_entry).collect(),
        )),
    }
    m
}

/// One RTA_MULTIPATH entry; rtnh_hops is the weight minus one.
fn nexthop_entry(nh: &NextHop) -> RouteNextHop {
    let mut h = RouteNextHop::default();
    h.interface_index = nh.iface.index;
    h.hops = (nh.weight.clamp(1, 256) - 1) as u8;
    if nh.onlink {
        h.flags |= RouteNextHopFlags::Onlink;
    }
    if let Some(g) = nh.gateway {
        h.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(g)));
    }
    h
}

/// An fwmark selector before the kernel's attributes fill it (the mask defaults to all ones).
const UNSET_MARK: FwMark = FwMark {
    mark: 0,
    mask: u32::MAX,
};

/// A rule message as eniroute state, with its protocol. None for rules eniroute could not
/// have made (other actions or selectors): they are foreign whatever their tag.
pub(super) fn parse_rule(r: &RuleMessage) -> Option<(Rule, u8)> {
    let family = family_of(r.header.family)?;
    let mut rule = Rule {
        family,
        priority: 0,
        from: None,
        table: r.header.table as u32,
        suppress_prefixlength: None,
        fwmark: None,
    };
    let mut proto = 0;
    let mut extra =
        r.header.action != RuleAction::ToTable || r.header.dst_len != 0 || r.header.tos != 0;
    for a in &r.attributes {
        match a {
            RuleAttribute::Priority(p) => rule.priority = *p,
            RuleAttribute::Source(s) => rule.from = IpNetwork::new(*s, r.header.src_len).ok(),
            RuleAttribute::Table(t) => rule.table = *t,
            // The kernel reports "unset" as -1.
            RuleAttribute::SuppressPrefixLen(n) if *n != u32::MAX => {
                rule.suppress_prefixlength = Some(*n)
            }
            RuleAttribute::SuppressPrefixLen(_) => {}
            RuleAttribute::Protocol(p) => proto = u8::from(*p),
            // The kernel reports the mask with any mark (default all ones).
            RuleAttribute::FwMark(m) => rule.fwmark.get_or_insert(UNSET_MARK).mark = *m,
            RuleAttribute::FwMask(k) => rule.fwmark.get_or_insert(UNSET_MARK).mask = *k,
            // Attributes the kernel always reports and eniroute never sets differently.
            RuleAttribute::Other(_) => {}
            _ => extra = true,
        }
    }
    // A rule with selectors or an action eniroute never sets is not eniroute's, whatever its tag.
    Some((rule, if extra { 0 } else { proto }))
}

fn rule_message(r: &Rule, proto: u8) -> RuleMessage {
    let mut m = RuleMessage::default();
    m.header.family = match r.family {
        Family::V4 => AddressFamily::Inet,
        Family::V6 => AddressFamily::Inet6,
    };
    // Never leave the action Unspec: the kernel would treat the rule as a blackhole.
    m.header.action = RuleAction::ToTable;
    m.header.table = if r.table < 256 { r.table as u8 } else { 0 };
    m.attributes.push(RuleAttribute::Table(r.table));
    m.attributes.push(RuleAttribute::Priority(r.priority));
    if let Some(from) = r.from {
        m.header.src_len = from.prefix();
        m.attributes.push(RuleAttribute::Source(from.network()));
    }
    if let Some(n) = r.suppress_prefixlength {
        m.attributes.push(RuleAttribute::SuppressPrefixLen(n));
    }
    if let Some(f) = r.fwmark {
        m.attributes.push(RuleAttribute::FwMark(f.mark));
        m.attributes.push(RuleAttribute::FwMask(f.mask));
    }
    m.attributes
        .push(RuleAttribute::Protocol(RouteProtocol::from(proto)));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(i: u32) -> Iface {
        Iface {
            name: format!("eth{i}"),
            index: i,
        }
    }

    fn roundtrip(r: &Route) -> Route {
        let mut m = route_message(r, 225);
        // What the kernel reports that a request does not carry.
        m.header.kind = RouteType::Unicast;
        let (back, proto) = parse_route(&m, &iface).unwrap();
        assert_eq!(proto, 225);
        back
    }

    #[test]
    fn routes_survive_message_roundtrip() {
        let single = Route {
            table: 20002,
            dst: "0.0.0.0/0".parse().unwrap(),
            metric: 3,
            scope: Scope::Universe,
            src: Some("192.168.0.5".parse().unwrap()),
            nexthops: vec![NextHop {
                gateway: Some("192.168.0.253".parse().unwrap()),
                iface: iface(2),
                weight: 1,
                onlink: true,
            }],
        };
        assert_eq!(roundtrip(&single), single);
        let mut multi = single.clone();
        multi.src = None;
        multi.nexthops.push(NextHop {
            gateway: Some("192.168.1.253".parse().unwrap()),
            iface: iface(3),
            weight: 256,
            onlink: true,
        });
        assert_eq!(roundtrip(&multi), multi);
        let link = Route {
            table: 7,
            dst: "2001:db8::/64".parse().unwrap(),
            metric: 1024,
            scope: Scope::Universe,
            src: None,
            nexthops: vec![NextHop {
                gateway: None,
                iface: iface(2),
                weight: 1,
                onlink: false,
            }],
        };
        assert_eq!(roundtrip(&link), link);
    }

    #[test]
    fn rules_are_to_table_and_roundtrip() {
        let r = Rule {
            family: Family::V4,
            priority: 20000,
            from: Some("192.168.0.0/31".parse().unwrap()),
            table: 20001,
            suppress_prefixlength: Some(0),
            fwmark: None,
        };
        let m = rule_message(&r, 225);
        assert_eq!(m.header.action, RuleAction::ToTable);
        assert_eq!(parse_rule(&m), Some((r, 225)));
    }

    #[test]
    fn fwmark_rules_give_their_mark_and_mask() {
        let mut m = rule_message(
            &Rule {
                family: Family::V4,
                priority: 100,
                from: None,
                table: 7,
                suppress_prefixlength: None,
                fwmark: None,
            },
            0,
        );
        let mark = |m: &RuleMessage| parse_rule(m).and_then(|(r, _)| r.fwmark);
        assert_eq!(mark(&m), None);
        // `ip rule add fwmark 0x4000`: no mask attribute means all ones
        m.attributes.push(RuleAttribute::FwMark(0x4000));
        assert_eq!(
            mark(&m),
            Some(FwMark {
                mark: 0x4000,
                mask: u32::MAX
            })
        );
        m.attributes.push(RuleAttribute::FwMask(0xc000));
        assert_eq!(
            mark(&m),
            Some(FwMark {
                mark: 0x4000,
                mask: 0xc000
            })
        );
    }

    #[test]
    fn foreign_shaped_rules_are_not_owned() {
        let r = Rule {
            family: Family::V4,
            priority: 20000,
            from: None,
            table: 20001,
            suppress_prefixlength: None,
            fwmark: None,
        };
        let mut m = rule_message(&r, 225);
        m.attributes.push(RuleAttribute::Iifname("eth0".into()));
        assert_eq!(parse_rule(&m).map(|(_, p)| p), Some(0));
        // A mark is a selector eniroute sets now ([containers]): parsed, owned.
        let mut m = rule_message(&r, 225);
        m.attributes.push(RuleAttribute::FwMark(0x400));
        let (seen, p) = parse_rule(&m).unwrap();
        assert_eq!(p, 225);
        assert_eq!(
            seen.fwmark,
            Some(FwMark {
                mark: 0x400,
                mask: u32::MAX
            })
        );
    }

    #[test]
    fn addresses_roundtrip_with_flags_and_tag() {
        let a = Address {
            iface: iface(4),
            addr: "203.0.113.9".parse().unwrap(),
            prefix_len: 32,
            noprefixroute: true,
            nodad: false,
        };
        let m = address_message(&a, 225);
        assert_eq!(parse_address(&m, &iface), Some((a, 225)));
    }
}

#[cfg(test)]
pub(super) mod captured;
