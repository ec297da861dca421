//! The codec against bytes captured from a real kernel (6.18) and iproute2 (6.15), not against
//! itself: a round trip through our own emitter and parser cannot catch a mistake made on both
//! sides. The scripts and their full output are in tests/fixtures/netlink/ (run.sh, run2.sh).
//!
//! Setup, in a scratch namespace NS (run.sh):
//!   ip netns add NS
//!   ip -n NS link add e1 address 02:00:00:00:00:01 type veth peer name e2 address 02:00:00:00:00:02
//!   ip -n NS link set lo up; ip -n NS link set e1 up; ip -n NS link set e2 up
//!   ip -n NS addr add 192.168.10.21/24 dev e1; ip -n NS addr add 192.168.11.21/24 dev e2
//!   ip -n NS -6 addr add 2001:db8:10::21/64 dev e1 nodad
//! which gives e2 index 2 and e1 index 3. Each object below was then added with
//!   strace -f -e trace=sendmsg -xx -s 4096 ip -n NS <command>
//! and the request's payload (after the 16-byte netlink header, which strace decodes) is the
//! `IP_*` constant. The kernel's own messages (`KERNEL_*`, whole netlink messages) are the
//! answers to RTM_GETRULE/RTM_GETROUTE/RTM_GETADDR dumps read with a raw AF_NETLINK socket
//! (`ip netns exec NS python3 dump.py`), keeping those tagged protocol 225.

use netlink_packet_core::{Emitable, NetlinkMessage, NetlinkPayload, ParseableParametrized};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::route::{RouteAttribute, RouteMessage};
use netlink_packet_route::rule::{RuleAttribute, RuleMessage};
use netlink_packet_route::RouteNetlinkMessage;

use super::*;

const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const RTM_NEWRULE: u16 = 32;

// `ip rule add from 192.168.10.22 lookup 20002 priority 20200 proto 225`
const IP_RULE_FROM: &str =
    "02002000000000010000000008000200c0a80a1608000f00224e000008000600e84e000005001500e1000000";
const KERNEL_RULE_FROM: &str = "4400000020000200010000004f66000002002000fc0000010000000008000f00224e000008000e00ffffffff05001500e100000008000600e84e000008000200c0a80a16";
// `ip rule add lookup main suppress_prefixlength 0 priority 20100 proto 225`
const IP_RULE_MAIN: &str =
    "02000000fe0000010000000008000e000000000008000600844e000005001500e1000000";
const KERNEL_RULE_MAIN: &str = "3c00000020000200010000004f66000002000000fe0000010000000008000f00fe00000008000e000000000005001500e100000008000600844e0000";
// `ip -6 rule add from 2001:db8:10::21 lookup 20002 priority 20200 proto 225`
const IP_RULE_V6: &str = "0a00800000000001000000001400020020010db800100000000000000000002108000f00224e000008000600e84e000005001500e1000000";
const KERNEL_RULE_V6: &str = "5000000020000200010000004f6600000a008000fc0000010000000008000f00224e000008000e00ffffffff05001500e100000008000600e84e00001400020020010db8001000000000000000000021";
// `ip rule add fwmark 0x800/0x3c00 lookup 20002 priority 20150 proto 225` (run5.sh, out5.txt)
const IP_RULE_FWMARK: &str = "02000000000000010000000008000a000008000008001000003c000008000f00224e000008000600b64e000005001500e1000000";
const KERNEL_RULE_FWMARK: &str = "4c0000002000020001000000c206000002000000fc0000010000000008000f00224e000008000e00ffffffff05001500e100000008000600b64e000008000a000008000008001000003c0000";
// `ip route add default via 192.168.10.253 dev e1 onlink metric 3 table 20002 proto 225 src 192.168.10.21`
const IP_ROUTE_DEFAULT: &str = "0200000000e100010400000008000500c0a80afd080006000300000008000f00224e000008000700c0a80a150800040003000000";
const KERNEL_ROUTE_DEFAULT: &str = "4400000018000200010000004f66000002000000fce100010400000008000f00224e0000080006000300000008000700c0a80a1508000500c0a80afd0800040003000000";
// `ip route add 10.9.0.0/16 table 20300 proto 225 nexthop via 192.168.10.253 dev e1 weight 1 nexthop via 192.168.11.253 dev e2 weight 3`
const IP_ROUTE_MULTIPATH: &str = "0210000000e1000100000000080001000a09000008000f004c4f000024000900100000000300000008000500c0a80afd100000020200000008000500c0a80bfd";
const KERNEL_ROUTE_MULTIPATH: &str = "5000000018000200010000004f66000002100000fce100010000000008000f004c4f0000080001000a09000024000900100000000300000008000500c0a80afd100000020200000008000500c0a80bfd";
// `ip -6 route add 2001:db8:20::/64 via fe80::1 dev e1 table 20002 proto 225 metric 1024`
const IP_ROUTE_V6: &str = "0a40000000e10001000000001400010020010db800200000000000000000000014000500fe80000000000000000000000000000108000f00224e000008000600000400000800040003000000";
const KERNEL_ROUTE_V6: &str = "8800000018000200010000004f6600000a400000fce100010000000008000f00224e00001400010020010db8002000000000000000000000080006000004000014000500fe800000000000000000000000000001080004000300000024000c0000000000000000000000000000000000000000000000000000000000000000000500140000000000";
// `ip route add 192.168.10.0/24 dev e1 scope link table 20002 proto 225`
const IP_ROUTE_LINK: &str =
    "0218000000e1fd010000000008000100c0a80a0008000f00224e00000800040003000000";
const KERNEL_ROUTE_LINK: &str = "3400000018000200010000004f66000002180000fce1fd010000000008000f00224e000008000100c0a80a000800040003000000";
// `ip addr add 47.96.1.2/32 dev e1 noprefixroute proto 225`
const IP_ADDR_V4: &str =
    "0220000003000000080002002f60010205000b00e10000000800080000020000080001002f600102";
const KERNEL_ADDR_V4: &str = "5400000014000200010000004f6600000220800003000000080001002f600102080002002f600102070003006531000005000b00e1000000080008008002000014000600ffffffffffffffff4a3a01004a3a0100";
// `ip -6 addr add 2001:db8:10::22/64 dev e1 nodad proto 225`
const IP_ADDR_V6: &str = "0a400200030000001400020020010db800100000000000000000002205000b00e10000001400010020010db8001000000000000000000022";
const KERNEL_ADDR_V6: &str = "5000000014000200010000004f6600000a408200030000001400010020010db800100000000000000000002214000600ffffffffffffffff4b3a01004b3a0100080008008200000005000b00e1000000";

// `ip route get 8.8.8.8 from 192.168.10.21` with `from 192.168.10.21 lookup 20002` and
// `default via 192.168.10.253 dev e1 onlink table 20002` in place (run3.sh): the request's
// payload and the payload of the kernel's answer (strace -e trace=sendmsg,recvmsg).
const IP_ROUTE_GET: &str = "022020000000000000100000080001000808080808000200c0a80a15";
const KERNEL_ROUTE_GET: &str = "02202000fc0000010002000008000f00224e0000080001000808080808000200c0a80a15080004000300000008000500c0a80afd080019000000000024000c000200000000000000000000000000000000000000000000000000000000000000";

pub(crate) fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A whole netlink message as the kernel sent it.
pub(crate) fn kernel(s: &str) -> RouteNetlinkMessage {
    let bytes = hex(s);
    let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes).unwrap();
    assert_eq!(msg.header.length as usize, bytes.len());
    match msg.payload {
        NetlinkPayload::InnerMessage(m) => m,
        other => panic!("not an rtnetlink message: {other:?}"),
    }
}

fn request(s: &str, message_type: u16) -> RouteNetlinkMessage {
    RouteNetlinkMessage::parse_with_param(&hex(s)[..], message_type).unwrap()
}

fn emit(m: &impl Emitable) -> Vec<u8> {
    let mut buf = vec![0; m.buffer_len()];
    m.emit(&mut buf);
    buf
}

/// e2 is index 2, e1 index 3 in the capture.
fn iface(i: u32) -> Iface {
    let name = match i {
        2 => "e2",
        3 => "e1",
        _ => "?",
    };
    Iface {
        name: name.into(),
        index: i,
    }
}

fn sorted<T: std::fmt::Debug>(attrs: &[T]) -> Vec<String> {
    let mut v: Vec<String> = attrs.iter().map(|a| format!("{a:?}")).collect();
    v.sort();
    v
}

/// A rule request as the kernel reads it: FRA_TABLE, when present, overrides the header's
/// table (`frh_get_table`); attribute order does not matter.
fn rule_view(m: &RuleMessage) -> (String, Vec<String>) {
    let mut m = m.clone();
    let table = m
        .attributes
        .iter()
        .find_map(|a| match a {
            RuleAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(m.header.table as u32);
    m.header.table = 0;
    m.attributes
        .retain(|a| !matches!(a, RuleAttribute::Table(_)));
    m.attributes.push(RuleAttribute::Table(table));
    (format!("{:?}", m.header), sorted(&m.attributes))
}

/// The same for a route request (`rtm_to_fib_config`: RTA_TABLE overrides rtm_table).
fn route_view(m: &RouteMessage) -> (String, Vec<String>) {
    let mut m = m.clone();
    let table = m
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(m.header.table as u32);
    m.header.table = 0;
    m.attributes
        .retain(|a| !matches!(a, RouteAttribute::Table(_)));
    m.attributes.push(RouteAttribute::Table(table));
    (format!("{:?}", m.header), sorted(&m.attributes))
}

/// An address request as the kernel reads it: IFA_FLAGS, when present, replaces the header's
/// 8-bit flags; for IPv6 an IFA_LOCAL equal to IFA_ADDRESS says nothing more
/// (`extract_addr`).
fn address_view(m: &AddressMessage) -> (String, Vec<String>) {
    let mut m = m.clone();
    let flags = m
        .attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Flags(f) => Some(f.bits()),
            _ => None,
        })
        .unwrap_or(m.header.flags.bits() as u32);
    m.attributes
        .retain(|a| !matches!(a, AddressAttribute::Flags(_)));
    m.attributes
        .push(AddressAttribute::Flags(AddressFlags::from_bits_retain(
            flags,
        )));
    if m.header.family == AddressFamily::Inet6 {
        let address = m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        });
        m.attributes
            .retain(|a| !matches!(a, AddressAttribute::Local(ip) if Some(*ip) == address));
    }
    (format!("{:?}", m.header), sorted(&m.attributes))
}

fn new_rule(m: RouteNetlinkMessage) -> RuleMessage {
    match m {
        RouteNetlinkMessage::NewRule(r) => r,
        other => panic!("not a rule: {other:?}"),
    }
}

fn new_route(m: RouteNetlinkMessage) -> RouteMessage {
    match m {
        RouteNetlinkMessage::NewRoute(r) => r,
        other => panic!("not a route: {other:?}"),
    }
}

fn new_address(m: RouteNetlinkMessage) -> AddressMessage {
    match m {
        RouteNetlinkMessage::NewAddress(a) => a,
        other => panic!("not an address: {other:?}"),
    }
}

/// Our request for `rule` says what iproute2's says: the fixed header byte for byte, the
/// attributes as the kernel reads them.
fn assert_rule_request(rule: &Rule, iproute2: &str) {
    let ours = emit(&rule_message(rule, 225));
    let theirs = hex(iproute2);
    assert_eq!(ours[..12], theirs[..12], "fib_rule_hdr");
    let ours = new_rule(RouteNetlinkMessage::parse_with_param(&ours[..], RTM_NEWRULE).unwrap());
    assert_eq!(
        rule_view(&ours),
        rule_view(&new_rule(request(iproute2, RTM_NEWRULE)))
    );
}

fn assert_route_request(route: &Route, iproute2: &str) {
    let ours = emit(&route_message(route, 225));
    let theirs = hex(iproute2);
    assert_eq!(ours[..12], theirs[..12], "rtmsg");
    let ours = new_route(RouteNetlinkMessage::parse_with_param(&ours[..], RTM_NEWROUTE).unwrap());
    assert_eq!(
        route_view(&ours),
        route_view(&new_route(request(iproute2, RTM_NEWROUTE)))
    );
}

fn assert_address_request(address: &Address, iproute2: &str) {
    let ours = emit(&address_message(address, 225));
    let theirs = hex(iproute2);
    assert_eq!(ours[..8], theirs[..8], "ifaddrmsg");
    let ours = new_address(RouteNetlinkMessage::parse_with_param(&ours[..], RTM_NEWADDR).unwrap());
    assert_eq!(
        address_view(&ours),
        address_view(&new_address(request(iproute2, RTM_NEWADDR)))
    );
}

fn rule_from() -> Rule {
    Rule {
        family: Family::V4,
        priority: 20200,
        from: Some("192.168.10.22/32".parse().unwrap()),
        table: 20002,
        suppress_prefixlength: None,
        fwmark: None,
    }
}

fn rule_main() -> Rule {
    Rule {
        family: Family::V4,
        priority: 20100,
        from: None,
        table: 254,
        suppress_prefixlength: Some(0),
        fwmark: None,
    }
}

fn rule_v6() -> Rule {
    Rule {
        family: Family::V6,
        priority: 20200,
        from: Some("2001:db8:10::21/128".parse().unwrap()),
        table: 20002,
        suppress_prefixlength: None,
        fwmark: None,
    }
}

fn rule_fwmark() -> Rule {
    Rule {
        family: Family::V4,
        priority: 20150,
        from: None,
        table: 20002,
        suppress_prefixlength: None,
        fwmark: Some(FwMark {
            mark: 0x800,
            mask: 0x3c00,
        }),
    }
}

fn hop(gw: &str, index: u32, weight: u16, onlink: bool) -> NextHop {
    NextHop {
        gateway: Some(gw.parse().unwrap()),
        iface: iface(index),
        weight,
        onlink,
    }
}

fn route_default() -> Route {
    Route {
        table: 20002,
        dst: "0.0.0.0/0".parse().unwrap(),
        metric: 3,
        scope: Scope::Universe,
        src: Some("192.168.10.21".parse().unwrap()),
        nexthops: vec![hop("192.168.10.253", 3, 1, true)],
    }
}

fn route_multipath() -> Route {
    Route {
        table: 20300,
        dst: "10.9.0.0/16".parse().unwrap(),
        metric: 0,
        scope: Scope::Universe,
        src: None,
        nexthops: vec![
            hop("192.168.10.253", 3, 1, false),
            hop("192.168.11.253", 2, 3, false),
        ],
    }
}

fn route_v6() -> Route {
    Route {
        table: 20002,
        dst: "2001:db8:20::/64".parse().unwrap(),
        metric: 1024,
        scope: Scope::Universe,
        src: None,
        nexthops: vec![hop("fe80::1", 3, 1, false)],
    }
}

fn route_link() -> Route {
    Route {
        table: 20002,
        dst: "192.168.10.0/24".parse().unwrap(),
        metric: 0,
        scope: Scope::Link,
        src: None,
        nexthops: vec![NextHop {
            gateway: None,
            iface: iface(3),
            weight: 1,
            onlink: false,
        }],
    }
}

fn address_v4() -> Address {
    Address {
        iface: iface(3),
        addr: "47.96.1.2".parse().unwrap(),
        prefix_len: 32,
        noprefixroute: true,
        nodad: false,
    }
}

fn address_v6() -> Address {
    Address {
        iface: iface(3),
        addr: "2001:db8:10::22".parse().unwrap(),
        prefix_len: 64,
        noprefixroute: false,
        nodad: true,
    }
}

#[test]
fn kernel_rule_with_table_above_255_reports_252_and_the_table_attribute() {
    let m = new_rule(kernel(KERNEL_RULE_FROM));
    assert_eq!(m.header.table, 252, "RT_TABLE_COMPAT in the header");
    // FRA_SUPPRESS_PREFIXLEN is always reported; unset is u32::MAX.
    assert!(m
        .attributes
        .contains(&RuleAttribute::SuppressPrefixLen(u32::MAX)));
    assert_eq!(parse_rule(&m), Some((rule_from(), 225)));
}

#[test]
fn kernel_rules_main_suppress_and_ipv6_parse_with_their_protocol() {
    let main = new_rule(kernel(KERNEL_RULE_MAIN));
    assert_eq!(parse_rule(&main), Some((rule_main(), 225)));
    let v6 = new_rule(kernel(KERNEL_RULE_V6));
    assert_eq!(parse_rule(&v6), Some((rule_v6(), 225)));
}

#[test]
fn rule_requests_match_iproute2() {
    assert_rule_request(&rule_from(), IP_RULE_FROM);
    assert_rule_request(&rule_main(), IP_RULE_MAIN);
    assert_rule_request(&rule_v6(), IP_RULE_V6);
    assert_rule_request(&rule_fwmark(), IP_RULE_FWMARK);
}

#[test]
fn kernel_fwmark_rule_parses_as_eniroutes_mark_layer() {
    let m = new_rule(kernel(KERNEL_RULE_FWMARK));
    assert!(m.attributes.contains(&RuleAttribute::FwMask(0x3c00)));
    assert_eq!(parse_rule(&m), Some((rule_fwmark(), 225)));
}

#[test]
fn kernel_routes_parse_onlink_metric_src_and_big_table() {
    let m = new_route(kernel(KERNEL_ROUTE_DEFAULT));
    assert_eq!(m.header.table, 252, "RT_TABLE_COMPAT in the header");
    assert_eq!(parse_route(&m, &iface), Some((route_default(), 225)));
    let link = new_route(kernel(KERNEL_ROUTE_LINK));
    assert_eq!(parse_route(&link, &iface), Some((route_link(), 225)));
}

#[test]
fn kernel_multipath_and_ipv6_routes_parse() {
    // rtnh_hops is weight - 1: the capture has hops 0 and 2 for weights 1 and 3.
    let multi = new_route(kernel(KERNEL_ROUTE_MULTIPATH));
    assert_eq!(parse_route(&multi, &iface), Some((route_multipath(), 225)));
    // The kernel adds RTA_CACHEINFO and RTA_PREF to IPv6 routes; they do not matter here.
    let v6 = new_route(kernel(KERNEL_ROUTE_V6));
    assert_eq!(parse_route(&v6, &iface), Some((route_v6(), 225)));
}

#[test]
fn route_requests_match_iproute2() {
    assert_route_request(&route_default(), IP_ROUTE_DEFAULT);
    assert_route_request(&route_multipath(), IP_ROUTE_MULTIPATH);
    assert_route_request(&route_v6(), IP_ROUTE_V6);
    assert_route_request(&route_link(), IP_ROUTE_LINK);
}

#[test]
fn kernel_addresses_parse_flags_and_ifa_proto() {
    let v4 = new_address(kernel(KERNEL_ADDR_V4));
    assert_eq!(parse_address(&v4, &iface), Some((address_v4(), 225)));
    // The header's flags (0x82: nodad, permanent) and IFA_FLAGS agree; IFA_FLAGS wins.
    let v6 = new_address(kernel(KERNEL_ADDR_V6));
    assert_eq!(parse_address(&v6, &iface), Some((address_v6(), 225)));
}

#[test]
fn address_requests_match_iproute2() {
    assert_address_request(&address_v4(), IP_ADDR_V4);
    assert_address_request(&address_v6(), IP_ADDR_V6);
}

#[test]
fn kernel_link_message_gives_name_index_mac_and_state() {
    // `ip -n NS link set e1 up`, then RTM_GETLINK for e1's index with a raw socket (run2.sh).
    let m = match kernel(include_str!("../../../tests/fixtures/netlink/link_e1.hex")) {
        RouteNetlinkMessage::NewLink(l) => l,
        other => panic!("not a link: {other:?}"),
    };
    let l = host_link(&m);
    assert_eq!(l.name, "e1");
    assert_eq!(l.index, 3);
    assert_eq!(l.mac, Some(MacAddr6::new(2, 0, 0, 0, 0, 1)));
    assert!(l.up);
}

#[test]
fn lookup_request_is_iproute2s_byte_for_byte() {
    let ours = lookup_message(
        Some("192.168.10.21".parse().unwrap()),
        "8.8.8.8".parse().unwrap(),
    );
    assert_eq!(emit(&ours), hex(IP_ROUTE_GET));
}

#[test]
fn lookup_answer_names_the_table_that_matched() {
    let m = new_route(request(KERNEL_ROUTE_GET, RTM_NEWROUTE));
    assert_eq!(
        lookup_answer(&m),
        Lookup {
            oif: Some(3),
            gateway: Some("192.168.10.253".parse().unwrap()),
            table: Some(20002),
        }
    );
}
