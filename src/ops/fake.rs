//! A fake kernel for root-free tests of the shell: links, addresses, routes, rules and sysctls
//! in memory, a small FIB for route lookups, injected failures, and a log of every request.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::kernel::sysctl::SysctlError;
use crate::kernel::{Kernel, KernelError, Lookup};
use crate::model::nft::ForeignMark;
use crate::model::{Change, Family, ForeignRoute, HostLink, Observed, Route, Rule};

/// A failure to inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Refuse a change whose `ip` line contains this text, with this errno.
    Change(&'static str, i32),
    /// Refuse writing the sysctl with this path.
    SysctlWrite(&'static str),
}

/// Called before each sysctl write, with its path.
pub type SysctlHook = Box<dyn Fn(&str)>;

#[derive(Default)]
pub struct Fake {
    pub state: RefCell<Observed>,
    pub sysctls: RefCell<BTreeMap<String, String>>,
    pub faults: RefCell<Vec<Fault>>,
    /// Links that appear, one per link event (hotplug).
    pub late_links: RefCell<Vec<HostLink>>,
    /// Every request, in order: `batch N`, `+ <change>`, `sysctl <path>=<value>`.
    pub log: RefCell<Vec<String>>,
    /// Called before each sysctl write, with its path.
    pub on_sysctl_write: RefCell<Option<SysctlHook>>,
    /// Set the flag when batch N (1-based) is sent, as a signal would.
    pub interrupt_at_batch: RefCell<Option<(usize, std::sync::Arc<std::sync::atomic::AtomicBool>)>>,
}

fn refused(what: String, errno: i32) -> KernelError {
    KernelError::Request {
        what,
        source: std::io::Error::from_raw_os_error(errno),
    }
}

impl Fake {
    /// A host with these links (index = position + 2, up) and sysctls.
    pub fn with_links(names: &[&str], sysctls: &[(&str, &str)]) -> Fake {
        let links = names
            .iter()
            .enumerate()
            .map(|(i, n)| HostLink {
                name: n.to_string(),
                index: i as u32 + 2,
                mac: Some(macaddr::MacAddr6::new(2, 0, 0, 0, 0, i as u8 + 2)),
                up: true,
            })
            .collect();
        let f = Fake::default();
        f.state.borrow_mut().links = links;
        *f.sysctls.borrow_mut() = sysctls
            .iter()
            .map(|(p, v)| (p.to_string(), v.to_string()))
            .collect();
        f
    }

    /// The kernel's objects, for comparing before and after.
    pub fn snapshot(&self) -> (Observed, BTreeMap<String, String>) {
        (self.state.borrow().clone(), self.sysctls.borrow().clone())
    }

    fn fault_for(&self, c: &Change) -> Option<i32> {
        let line = c.to_string();
        self.faults.borrow().iter().find_map(|f| match f {
            Fault::Change(text, errno) if line.contains(text) => Some(*errno),
            _ => None,
        })
    }

    fn make(&self, c: &Change) -> Result<(), KernelError> {
        if let Some(errno) = self.fault_for(c) {
            return Err(refused(c.to_string(), errno));
        }
        let mut s = self.state.borrow_mut();
        let gone = || refused(c.to_string(), 2);
        fn remove<T: PartialEq>(v: &mut Vec<T>, x: &T) -> bool {
            let n = v.len();
            v.retain(|o| o != x);
            v.len() != n
        }
        match c {
            Change::LinkUp(i) | Change::LinkDown(i) => {
                let l = s
                    .links
                    .iter_mut()
                    .find(|l| l.index == i.index)
                    .ok_or_else(gone)?;
                l.up = matches!(c, Change::LinkUp(_));
            }
            Change::AddAddress(a) => s.addresses.push(a.clone()),
            Change::DelAddress(a) => {
                remove(&mut s.addresses, a).then_some(()).ok_or_else(gone)?;
                drop_routes_without_ipv4(&mut s, a.iface.index);
            }
            Change::AddRoute(r) => s.routes.push(r.clone()),
            Change::DelRoute(r) => remove(&mut s.routes, r).then_some(()).ok_or_else(gone)?,
            Change::ReplaceRoute { old, new } => {
                remove(&mut s.routes, old);
                s.routes.push(new.clone());
            }
            Change::AddRule(r) => s.rules.push(r.clone()),
            Change::DelRule(r) => remove(&mut s.rules, r).then_some(()).ok_or_else(gone)?,
            // A new table starts its counters at zero; other tables' marks stay.
            Change::SetTable { new, .. } => {
                s.nft.table = new.clone();
                s.nft.unknown = false;
                s.nft.counters.clear();
            }
        }
        drop(s);
        self.log.borrow_mut().push(format!("{} {c}", c.sign()));
        Ok(())
    }

    /// The FIB: rules by priority, each looking up the most specific route of its table
    /// (honouring suppress_prefixlength); the first hit decides.
    fn lookup(&self, src: Option<IpAddr>, dst: IpAddr, mark: u32) -> Option<Lookup> {
        let s = self.state.borrow();
        let mut rules: Vec<&Rule> = s.rules.iter().chain(&s.foreign_rules).collect();
        rules.sort_by_key(|r| r.priority);
        let foreign = s.foreign_routes.iter().map(|f| &f.route);
        let routes: Vec<&Route> = s.routes.iter().chain(foreign).collect();
        rules.into_iter().find_map(|rule| {
            if let Some(m) = rule.fwmark {
                (mark & m.mask == m.mark).then_some(())?;
            }
            if let Some(from) = rule.from {
                src.filter(|s| from.contains(*s))?;
            }
            let best = (routes.iter())
                .filter(|r| r.table == rule.table && r.dst.contains(dst))
                .max_by_key(|r| r.dst.prefix())?;
            if rule
                .suppress_prefixlength
                .is_some_and(|n| best.dst.prefix() as u32 <= n)
            {
                return None;
            }
            let hop = best.nexthops.first()?;
            Some(Lookup {
                oif: Some(hop.iface.index),
                gateway: hop.gateway,
                table: Some(best.table),
            })
        })
    }
}

/// The kernel's way: once a link has no IPv4 address, every route through it goes, in every
/// table, silently.
fn drop_routes_without_ipv4(s: &mut Observed, index: u32) {
    let has_v4 = (s.addresses.iter().chain(&s.foreign_addresses))
        .any(|a| a.iface.index == index && a.addr.is_ipv4());
    if has_v4 {
        return;
    }
    let through =
        |r: &Route| r.family() == Family::V4 && r.nexthops.iter().any(|n| n.iface.index == index);
    s.routes.retain(|r| !through(r));
    s.foreign_routes.retain(|f| !through(&f.route));
}

impl Kernel for Fake {
    async fn links(&self) -> Result<Vec<HostLink>, KernelError> {
        Ok(self.state.borrow().links.clone())
    }

    async fn observe(&self, links: Vec<HostLink>) -> Result<Observed, KernelError> {
        let mut o = self.state.borrow().clone();
        o.links = links;
        // As the real client: marks are read on their own.
        o.nft.foreign_marks.clear();
        Ok(o)
    }

    async fn foreign_marks(&self) -> Result<Vec<ForeignMark>, KernelError> {
        Ok(self.state.borrow().nft.foreign_marks.clone())
    }

    async fn apply(&self, change: &Change) -> Result<(), KernelError> {
        self.make(change)
    }

    async fn restore_route(&self, r: &ForeignRoute) -> Result<(), KernelError> {
        self.log
            .borrow_mut()
            .push(format!("restore {} proto {}", r.route, r.protocol));
        self.state.borrow_mut().foreign_routes.push(r.clone());
        Ok(())
    }

    async fn apply_batch(&self, changes: &[Change]) -> (Vec<bool>, Option<KernelError>) {
        self.log
            .borrow_mut()
            .push(format!("batch {}", changes.len()));
        let sent = self
            .log
            .borrow()
            .iter()
            .filter(|l| l.starts_with("batch"))
            .count();
        if let Some((n, flag)) = &*self.interrupt_at_batch.borrow() {
            if *n == sent {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let mut first = None;
        let done = changes
            .iter()
            .map(|c| match self.make(c) {
                Ok(()) => true,
                Err(e) => {
                    first.get_or_insert(e);
                    false
                }
            })
            .collect();
        (done, first)
    }

    async fn route_get_marked_many(
        &self,
        lookups: &[(u32, IpAddr)],
    ) -> Vec<Result<Lookup, KernelError>> {
        (lookups.iter())
            .map(|(mark, dst)| {
                self.lookup(None, *dst, *mark).ok_or_else(|| {
                    refused(format!("route lookup to {dst} with mark {mark:#x}"), 101)
                })
            })
            .collect()
    }

    async fn route_get_many(
        &self,
        lookups: &[(Option<IpAddr>, IpAddr)],
    ) -> Vec<Result<Lookup, KernelError>> {
        lookups
            .iter()
            .map(|(src, dst)| {
                self.lookup(*src, *dst, 0)
                    .ok_or_else(|| refused(format!("route lookup to {dst}"), 101))
            })
            .collect()
    }

    async fn link_event(&self, _timeout: Duration) -> Result<bool, KernelError> {
        let next = self.late_links.borrow_mut().pop();
        Ok(match next {
            Some(l) => {
                self.state.borrow_mut().links.push(l);
                true
            }
            None => false,
        })
    }

    fn sysctl_read(&self, path: &str) -> Result<String, SysctlError> {
        self.sysctls
            .borrow()
            .get(path)
            .cloned()
            .ok_or_else(|| SysctlError::Read {
                name: path.to_string(),
                source: std::io::Error::from_raw_os_error(2),
            })
    }

    fn sysctl_write(&self, path: &str, value: &str) -> Result<(), SysctlError> {
        if let Some(hook) = &*self.on_sysctl_write.borrow() {
            hook(path);
        }
        let refuse =
            (self.faults.borrow().iter()).any(|f| matches!(f, Fault::SysctlWrite(p) if *p == path));
        if refuse {
            return Err(SysctlError::Write {
                name: path.to_string(),
                value: value.to_string(),
                source: std::io::Error::from_raw_os_error(13),
            });
        }
        self.log.borrow_mut().push(format!("sysctl {path}={value}"));
        let mut s = self.sysctls.borrow_mut();
        match s.get_mut(path) {
            Some(v) => {
                *v = value.to_string();
                Ok(())
            }
            None => Err(SysctlError::Write {
                name: path.to_string(),
                value: value.to_string(),
                source: std::io::Error::from_raw_os_error(2),
            }),
        }
    }
}
