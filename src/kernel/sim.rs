//! Building blocks of the sandbox's simulation (`eniroute sandbox`): named network namespaces,
//! veth pairs, bridges, addresses, routes, static neighbours and sysctls, all over rtnetlink or
//! /proc/sys from a thread that entered the namespace. Nothing here runs `ip` or `sysctl`.
//!
//! The sandbox describes each namespace as a list of [`SimOp`]s and hands it to [`apply`],
//! which runs them in order on one netlink connection inside the namespace. Every error names
//! the namespace, the operation (as the equivalent `ip` command) and the errno.

use std::collections::HashMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Mutex;

use futures::TryStreamExt;
use ipnetwork::IpNetwork;
use macaddr::MacAddr6;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::neighbour::NeighbourState;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope,
};
use netlink_packet_route::rule::{RuleAttribute, RuleMessage};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use rtnetlink::{
    Handle, IpVersion, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

use super::netns::{netns_path, run_in_netns, NetnsError, NETNS_DIR};

/// Errors of the simulation builder. Each names the namespace and the object concerned.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("network namespace {name:?}: {op}: {source}")]
    Namespace {
        name: String,
        op: String,
        source: std::io::Error,
    },
    #[error("network namespace {ns:?}: `{op}`: {source}")]
    Netlink {
        ns: String,
        op: String,
        source: rtnetlink::Error,
    },
    #[error("network namespace {ns:?}: `{op}`: {message}")]
    Op {
        ns: String,
        op: String,
        message: String,
    },
    #[error("network namespace {ns:?}: sysctl {path} = {value}: {source}")]
    Sysctl {
        ns: String,
        path: String,
        value: String,
        source: std::io::Error,
    },
    #[error("network namespace {ns:?}: cannot open a netlink socket: {source}")]
    Connect { ns: String, source: std::io::Error },
    #[error(transparent)]
    Netns(#[from] NetnsError),
}

fn nix_io(e: nix::Error) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

/// Serializes namespace creation inside this process (the /run/netns mount setup is not atomic).
static NETNS_SETUP: Mutex<()> = Mutex::new(());

/// Make /run/netns exist and be a shared mount point, the way `ip netns add` does, so that
/// namespaces bound there are visible from every mount namespace.
fn prepare_netns_dir() -> Result<(), SimError> {
    let err = |op: &str, source: std::io::Error| SimError::Namespace {
        name: NETNS_DIR.to_string(),
        op: op.to_string(),
        source,
    };
    std::fs::create_dir_all(NETNS_DIR).map_err(|e| err("mkdir", e))?;
    let mut bound = false;
    loop {
        match mount::<str, str, str, str>(
            None,
            NETNS_DIR,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None,
        ) {
            Ok(()) => return Ok(()),
            Err(nix::Error::EINVAL) if !bound => {
                // Not a mount point yet: bind it onto itself, then make it shared.
                mount::<str, str, str, str>(
                    Some(NETNS_DIR),
                    NETNS_DIR,
                    Some("none"),
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None,
                )
                .map_err(|e| err("bind mount onto itself", nix_io(e)))?;
                bound = true;
            }
            Err(e) => return Err(err("make shared mount", nix_io(e))),
        }
    }
}

/// Create the named network namespace `name` (like `ip netns add NAME`): a new namespace,
/// bind-mounted at /run/netns/NAME. Fails if the name is taken.
pub fn create_netns(name: &str) -> Result<(), SimError> {
    let err = |op: &str, source: std::io::Error| SimError::Namespace {
        name: name.to_string(),
        op: op.to_string(),
        source,
    };
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(err(
            "invalid name",
            std::io::Error::from(std::io::ErrorKind::InvalidInput),
        ));
    }
    let _guard = NETNS_SETUP.lock().unwrap_or_else(|p| p.into_inner());
    prepare_netns_dir()?;
    let path = netns_path(name);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(&path)
        .map_err(|e| err(&format!("create {}", path.display()), e))?;
    let target = path.clone();
    let made = std::thread::Builder::new()
        .name("eniroute-netns-add".into())
        .spawn(move || -> Result<(), (String, std::io::Error)> {
            // unshare affects only this thread, which ends right after the bind mount.
            unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| ("unshare(CLONE_NEWNET)".to_string(), nix_io(e)))?;
            mount::<str, Path, str, str>(
                Some("/proc/thread-self/ns/net"),
                target.as_path(),
                Some("none"),
                MsFlags::MS_BIND,
                None,
            )
            .map_err(|e| (format!("bind mount onto {}", target.display()), nix_io(e)))
        })
        .map_err(|e| err("spawn thread", e))?
        .join();
    let result = match made {
        Ok(Ok(())) => Ok(()),
        Ok(Err((op, e))) => Err(err(&op, e)),
        Err(_) => Err(err(
            "namespace creation thread panicked",
            std::io::Error::other("panic"),
        )),
    };
    if result.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    result
}

/// Delete the named network namespace (like `ip netns delete NAME`): unmount and unlink.
/// The namespace itself goes away once nothing uses it any more.
pub fn delete_netns(name: &str) -> Result<(), SimError> {
    let path = netns_path(name);
    let err = |op: &str, source: std::io::Error| SimError::Namespace {
        name: name.to_string(),
        op: op.to_string(),
        source,
    };
    match umount2(&path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(err(&format!("umount {}", path.display()), nix_io(e))),
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err(&format!("unlink {}", path.display()), e)),
    }
}

/// Whether /run/netns/NAME exists.
pub fn netns_exists(name: &str) -> bool {
    netns_path(name).exists()
}

/// One step of building a namespace, shown as the equivalent `ip` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimOp {
    /// Write `value` to /proc/sys/`path` (e.g. `net/ipv4/ip_forward`).
    Sysctl { path: String, value: String },
    /// A veth pair: `name` here, `peer` (with `peer_mac`) moved into `peer_netns` (None = here).
    Veth {
        name: String,
        peer: String,
        peer_mac: Option<MacAddr6>,
        peer_netns: Option<String>,
    },
    /// A bridge, not calling netfilter for bridged frames.
    Bridge { name: String },
    /// Enslave `port` to `bridge`.
    Master { port: String, bridge: String },
    /// Set a link up.
    Up { name: String },
    /// Add an address; `noprefixroute` skips the connected route.
    Addr {
        dev: String,
        addr: IpAddr,
        prefix: u8,
        noprefixroute: bool,
    },
    /// A route in the main table: `via` a gateway, or on-link (scope link) when None.
    /// `dhcp` tags it `proto dhcp` (what a DHCP client leaves), else `proto static`.
    Route {
        dst: IpNetwork,
        via: Option<IpAddr>,
        dev: String,
        dhcp: bool,
    },
    /// A permanent neighbour entry (how the VPC knows which MAC holds which address).
    Neigh {
        dev: String,
        addr: IpAddr,
        mac: MacAddr6,
    },
}

impl fmt::Display for SimOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimOp::Sysctl { path, value } => {
                write!(f, "sysctl -w {}={value}", path.replace('/', "."))
            }
            SimOp::Veth {
                name,
                peer,
                peer_mac,
                peer_netns,
            } => {
                write!(f, "ip link add {name} type veth peer name {peer}")?;
                if let Some(mac) = peer_mac {
                    write!(f, " address {mac}")?;
                }
                if let Some(ns) = peer_netns {
                    write!(f, " netns {ns}")?;
                }
                Ok(())
            }
            SimOp::Bridge { name } => write!(f, "ip link add {name} type bridge"),
            SimOp::Master { port, bridge } => write!(f, "ip link set {port} master {bridge}"),
            SimOp::Up { name } => write!(f, "ip link set {name} up"),
            SimOp::Addr {
                dev,
                addr,
                prefix,
                noprefixroute,
            } => {
                write!(f, "ip addr add {addr}/{prefix} dev {dev}")?;
                if *noprefixroute {
                    f.write_str(" noprefixroute")?;
                }
                Ok(())
            }
            SimOp::Route {
                dst,
                via,
                dev,
                dhcp,
            } => {
                write!(f, "ip route add {dst}")?;
                match via {
                    Some(gw) => write!(f, " via {gw} dev {dev}")?,
                    None => write!(f, " dev {dev} scope link")?,
                }
                if *dhcp {
                    f.write_str(" proto dhcp")?;
                }
                Ok(())
            }
            SimOp::Neigh { dev, addr, mac } => {
                write!(
                    f,
                    "ip neigh add {addr} lladdr {mac} dev {dev} nud permanent"
                )
            }
        }
    }
}

/// Run `ops` in order inside the named namespace (None = the caller's).
pub fn apply(ns: Option<&str>, ops: Vec<SimOp>) -> Result<(), SimError> {
    let ns_name = ns.unwrap_or("(current)").to_string();
    run_in_netns(ns, move || async move {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|source| SimError::Connect {
                ns: ns_name.clone(),
                source,
            })?;
        tokio::spawn(conn);
        let mut ctx = Ctx {
            ns: ns_name,
            handle,
            index: HashMap::new(),
        };
        for op in &ops {
            ctx.run(op).await?;
        }
        Ok(())
    })?
}

struct Ctx {
    ns: String,
    handle: Handle,
    index: HashMap<String, u32>,
}

impl Ctx {
    fn nl(&self, op: &SimOp) -> impl Fn(rtnetlink::Error) -> SimError + '_ {
        let op = op.to_string();
        move |source| SimError::Netlink {
            ns: self.ns.clone(),
            op: op.clone(),
            source,
        }
    }

    fn op_err(&self, op: &SimOp, message: String) -> SimError {
        SimError::Op {
            ns: self.ns.clone(),
            op: op.to_string(),
            message,
        }
    }

    async fn ifindex(&mut self, op: &SimOp, name: &str) -> Result<u32, SimError> {
        if let Some(i) = self.index.get(name) {
            return Ok(*i);
        }
        let found = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_next()
            .await;
        match found {
            Ok(Some(msg)) => {
                self.index.insert(name.to_string(), msg.header.index);
                Ok(msg.header.index)
            }
            Ok(None) | Err(_) => Err(self.op_err(op, format!("no interface named {name:?}"))),
        }
    }

    async fn run(&mut self, op: &SimOp) -> Result<(), SimError> {
        match op {
            SimOp::Sysctl { path, value } => {
                let full = Path::new("/proc/sys").join(path);
                let write = || -> std::io::Result<()> {
                    let mut f = OpenOptions::new().write(true).open(&full)?;
                    f.write_all(value.as_bytes())
                };
                write().map_err(|source| SimError::Sysctl {
                    ns: self.ns.clone(),
                    path: path.replace('/', "."),
                    value: value.clone(),
                    source,
                })
            }
            SimOp::Veth {
                name,
                peer,
                peer_mac,
                peer_netns,
            } => {
                let ns_file = match peer_netns {
                    Some(p) => {
                        let path = netns_path(p);
                        Some(File::open(&path).map_err(|e| {
                            self.op_err(op, format!("cannot open {}: {e}", path.display()))
                        })?)
                    }
                    None => None,
                };
                let mut peer_msg = LinkMessageBuilder::<LinkUnspec>::new().name(peer.clone());
                if let Some(mac) = peer_mac {
                    peer_msg = peer_msg.address(mac.as_bytes().to_vec());
                }
                if let Some(f) = &ns_file {
                    peer_msg = peer_msg.setns_by_fd(f.as_raw_fd());
                }
                let msg = LinkVeth::new(name, peer)
                    .set_info_data(netlink_packet_route::link::InfoData::Veth(
                        netlink_packet_route::link::InfoVeth::Peer(peer_msg.build()),
                    ))
                    .build();
                let r = self.handle.link().add(msg).execute().await;
                drop(ns_file);
                r.map_err(self.nl(op))
            }
            SimOp::Bridge { name } => {
                let msg = LinkBridge::new(name)
                    .nf_call_iptables(false)
                    .nf_call_ip6tables(false)
                    .nf_call_arptables(false)
                    .build();
                self.handle
                    .link()
                    .add(msg)
                    .execute()
                    .await
                    .map_err(self.nl(op))
            }
            SimOp::Master { port, bridge } => {
                let p = self.ifindex(op, port).await?;
                let b = self.ifindex(op, bridge).await?;
                let msg = LinkUnspec::new_with_index(p).controller(b).build();
                self.handle
                    .link()
                    .set(msg)
                    .execute()
                    .await
                    .map_err(self.nl(op))
            }
            SimOp::Up { name } => {
                let i = self.ifindex(op, name).await?;
                let msg = LinkUnspec::new_with_index(i).up().build();
                self.handle
                    .link()
                    .set(msg)
                    .execute()
                    .await
                    .map_err(self.nl(op))
            }
            SimOp::Addr {
                dev,
                addr,
                prefix,
                noprefixroute,
            } => {
                let i = self.ifindex(op, dev).await?;
                let mut req = self.handle.address().add(i, *addr, *prefix);
                let mut flags = AddressFlags::empty();
                if addr.is_ipv6() {
                    flags |= AddressFlags::Nodad;
                }
                if *noprefixroute {
                    flags |= AddressFlags::Noprefixroute;
                }
                if !flags.is_empty() {
                    req.message_mut()
                        .attributes
                        .push(AddressAttribute::Flags(flags));
                }
                req.execute().await.map_err(self.nl(op))
            }
            SimOp::Route {
                dst,
                via,
                dev,
                dhcp,
            } => {
                let i = self.ifindex(op, dev).await?;
                let mut b = RouteMessageBuilder::<IpAddr>::new()
                    .destination_prefix(dst.network(), dst.prefix())
                    .map_err(|e| self.op_err(op, e.to_string()))?
                    .output_interface(i);
                match via {
                    Some(gw) => b = b.gateway(*gw).map_err(|e| self.op_err(op, e.to_string()))?,
                    None => b = b.scope(RouteScope::Link),
                }
                if *dhcp {
                    b = b.protocol(RouteProtocol::Dhcp);
                }
                self.handle
                    .route()
                    .add(b.build())
                    .execute()
                    .await
                    .map_err(self.nl(op))
            }
            SimOp::Neigh { dev, addr, mac } => {
                let i = self.ifindex(op, dev).await?;
                self.handle
                    .neighbours()
                    .add(i, *addr)
                    .link_layer_address(mac.as_bytes())
                    .state(NeighbourState::Permanent)
                    .execute()
                    .await
                    .map_err(self.nl(op))
            }
        }
    }
}

/// Every rule, route and address in the namespace tagged with `protocol`, described one per
/// line (empty when eniroute left nothing behind).
pub fn owned_objects(ns: &str, protocol: u8) -> Result<Vec<String>, SimError> {
    let ns_name = ns.to_string();
    run_in_netns(Some(ns), move || async move {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|source| SimError::Connect {
                ns: ns_name.clone(),
                source,
            })?;
        tokio::spawn(conn);
        let nl = |what: &str| {
            let ns = ns_name.clone();
            let what = what.to_string();
            move |source| SimError::Netlink {
                ns: ns.clone(),
                op: what.clone(),
                source,
            }
        };
        let mut names: HashMap<u32, String> = HashMap::new();
        let mut links = handle.link().get().execute();
        while let Some(l) = links.try_next().await.map_err(nl("ip link show"))? {
            for a in &l.attributes {
                if let LinkAttribute::IfName(n) = a {
                    names.insert(l.header.index, n.clone());
                }
            }
        }
        let mut out = Vec::new();
        for v in [IpVersion::V4, IpVersion::V6] {
            let shown = if v == IpVersion::V4 { "-4" } else { "-6" };
            let mut rules = handle.rule().get(v.clone()).execute();
            while let Some(r) = rules
                .try_next()
                .await
                .map_err(nl(&format!("ip {shown} rule show")))?
            {
                if rule_protocol(&r) == Some(protocol) {
                    out.push(format!("rule {}", describe_rule(&r)));
                }
            }
            let req = match v {
                IpVersion::V4 => RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
                IpVersion::V6 => RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
            };
            let mut routes = handle.route().get(req).execute();
            while let Some(r) = routes
                .try_next()
                .await
                .map_err(nl(&format!("ip {shown} route show table all")))?
            {
                if u8::from(r.header.protocol) == protocol {
                    out.push(format!("route {}", describe_route(&r, &names)));
                }
            }
        }
        let mut addrs = handle.address().get().execute();
        while let Some(a) = addrs.try_next().await.map_err(nl("ip addr show"))? {
            if address_protocol(&a) == Some(protocol) {
                out.push(format!("address {}", describe_address(&a, &names)));
            }
        }
        Ok(out)
    })?
}

fn rule_protocol(r: &RuleMessage) -> Option<u8> {
    r.attributes.iter().find_map(|a| match a {
        RuleAttribute::Protocol(p) => Some(u8::from(*p)),
        _ => None,
    })
}

fn describe_rule(r: &RuleMessage) -> String {
    let mut s = String::new();
    let mut table = u32::from(r.header.table);
    for a in &r.attributes {
        match a {
            RuleAttribute::Priority(p) => s.insert_str(0, &format!("{p}:")),
            RuleAttribute::Source(ip) => s.push_str(&format!(" from {ip}/{}", r.header.src_len)),
            RuleAttribute::Destination(ip) => s.push_str(&format!(" to {ip}/{}", r.header.dst_len)),
            RuleAttribute::Table(t) => table = *t,
            RuleAttribute::SuppressPrefixLen(n) if *n != u32::MAX => {
                s.push_str(&format!(" suppress_prefixlength {n}"))
            }
            _ => {}
        }
    }
    s.push_str(&format!(" lookup {table}"));
    s
}

fn route_addr(a: &RouteAddress) -> String {
    match a {
        RouteAddress::Inet(v4) => v4.to_string(),
        RouteAddress::Inet6(v6) => v6.to_string(),
        other => format!("{other:?}"),
    }
}

fn describe_route(r: &RouteMessage, names: &HashMap<u32, String>) -> String {
    let mut dst = String::from("default");
    let mut rest = String::new();
    let mut table = u32::from(r.header.table);
    for a in &r.attributes {
        match a {
            RouteAttribute::Destination(d) => {
                dst = format!("{}/{}", route_addr(d), r.header.destination_prefix_length)
            }
            RouteAttribute::Gateway(g) => rest.push_str(&format!(" via {}", route_addr(g))),
            RouteAttribute::Oif(i) => rest.push_str(&format!(
                " dev {}",
                names.get(i).cloned().unwrap_or_else(|| format!("if{i}"))
            )),
            RouteAttribute::MultiPath(hops) => {
                rest.push_str(&format!(" ({} nexthops)", hops.len()))
            }
            RouteAttribute::Table(t) => table = *t,
            _ => {}
        }
    }
    format!("{dst}{rest} table {table}")
}

fn address_protocol(a: &AddressMessage) -> Option<u8> {
    a.attributes.iter().find_map(|x| match x {
        AddressAttribute::Protocol(p) => Some(u8::from(*p)),
        _ => None,
    })
}

fn describe_address(a: &AddressMessage, names: &HashMap<u32, String>) -> String {
    let ip = a.attributes.iter().find_map(|x| match x {
        AddressAttribute::Address(ip) => Some(ip.to_string()),
        _ => None,
    });
    format!(
        "{}/{} dev {}",
        ip.unwrap_or_else(|| "?".into()),
        a.header.prefix_len,
        names
            .get(&a.header.index)
            .cloned()
            .unwrap_or_else(|| format!("if{}", a.header.index))
    )
}
