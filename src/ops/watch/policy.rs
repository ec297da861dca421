//! The watch daemon's decisions, as pure functions of events, changes and time: which
//! notification can matter, which are the echoes of its own changes, how long to back off
//! from an object another program keeps undoing, and what a heal did per ENI.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::kernel::events::Event;
use crate::model::{Change, Config, Family, HostLink};
use crate::plan::Desired;

/// What the daemon cares about, from the config and the last plan.
#[derive(Debug, Clone, Default)]
pub struct Interest {
    pub protocol: u8,
    /// Link indexes of the managed ENIs.
    pub indexes: BTreeSet<u32>,
    /// eniroute's route tables and rule priorities.
    pub tables: BTreeSet<u32>,
    pub priorities: BTreeSet<u32>,
    /// Some ENI is not there yet: every new link may be it.
    pub missing: bool,
    /// Not known yet (before the first plan): everything matters.
    pub unknown: bool,
}

impl Interest {
    /// Before anything is known.
    pub fn unknown() -> Interest {
        Interest {
            unknown: true,
            ..Interest::default()
        }
    }

    /// From the plan of the links the last pass saw.
    pub fn of(cfg: &Config, desired: &Desired) -> Interest {
        Interest {
            protocol: cfg.routing.protocol,
            indexes: desired
                .enis
                .iter()
                .filter(|e| e.found)
                .map(|e| e.iface.index)
                .collect(),
            tables: desired.tables(),
            priorities: desired.rules.iter().map(|r| r.priority).collect(),
            missing: !desired.missing.is_empty(),
            unknown: false,
        }
    }

    /// Can this notification mean eniroute's routing is no longer right?
    pub fn matters(&self, e: &Event) -> bool {
        if self.unknown {
            return true;
        }
        match *e {
            // A managed ENI changed (the kernel drops routes silently on link down), or a
            // link appeared while an ENI is awaited (or a managed one was replaced).
            Event::Link { index, removed } => {
                self.indexes.contains(&index) || (!removed && self.missing)
            }
            // Removing a link's last address drops its routes without RTM_DELROUTE.
            Event::Address { index, .. } => self.indexes.contains(&index),
            Event::Route {
                table,
                protocol,
                removed,
                ..
            } => {
                let ours = protocol == self.protocol;
                self.tables.contains(&table) && (ours == removed)
            }
            Event::Rule {
                table,
                priority,
                protocol,
                removed,
                ..
            } => {
                let ours = protocol == self.protocol;
                if ours {
                    removed
                } else {
                    !removed
                        && (self.tables.contains(&table) || self.priorities.contains(&priority))
                }
            }
        }
    }
}

/// The object an event or a change is about, coarsely enough that an event can name the
/// object a heal re-added (notifications carry no source address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Link(u32),
    Address(u32),
    Route(Family, u32),
    Rule(Family, u32, u32),
    /// The table `inet eniroute` (no notification is subscribed for it: resyncs heal it).
    Nft,
}

impl Key {
    pub fn of_event(e: &Event) -> Key {
        match *e {
            Event::Link { index, .. } => Key::Link(index),
            Event::Address { index, .. } => Key::Address(index),
            Event::Route { family, table, .. } => Key::Route(family, table),
            Event::Rule {
                family,
                table,
                priority,
                ..
            } => Key::Rule(family, table, priority),
        }
    }

    pub fn of_change(c: &Change) -> Key {
        match c {
            Change::LinkUp(i) | Change::LinkDown(i) => Key::Link(i.index),
            Change::AddAddress(a) | Change::DelAddress(a) => Key::Address(a.iface.index),
            Change::AddRoute(r) | Change::DelRoute(r) | Change::ReplaceRoute { new: r, .. } => {
                Key::Route(r.family(), r.table)
            }
            Change::AddRule(r) | Change::DelRule(r) => Key::Rule(r.family, r.table, r.priority),
            Change::SetTable { .. } => Key::Nft,
        }
    }
}

/// How long the notifications of a pass's own changes are expected.
const ECHO_WINDOW: Duration = Duration::from_secs(1);

/// The notifications the daemon's own changes will cause, to be recognised and ignored.
#[derive(Debug, Default)]
pub struct Echoes {
    /// By object and direction (true: a removal).
    expected: HashMap<(Key, bool), usize>,
    /// Links it set up: every notification of theirs within the window is an echo.
    links: BTreeSet<u32>,
    until: Option<Instant>,
}

impl Echoes {
    /// Expect the echoes of `applied`, made at `now`.
    pub fn expect(&mut self, applied: &[Change], now: Instant) {
        self.expected.clear();
        self.links.clear();
        for c in applied {
            match Key::of_change(c) {
                Key::Link(i) => {
                    self.links.insert(i);
                }
                k => *self.expected.entry((k, c.sign() == '-')).or_default() += 1,
            }
        }
        self.until = Some(now + ECHO_WINDOW);
    }

    /// The events that are not echoes of the daemon's own changes.
    pub fn absorb(&mut self, events: Vec<Event>, now: Instant) -> Vec<Event> {
        if self.until.is_none_or(|u| now > u) {
            self.expected.clear();
            self.links.clear();
            return events;
        }
        events
            .into_iter()
            .filter(|e| {
                let key = Key::of_event(e);
                if matches!(key, Key::Link(i) if self.links.contains(&i)) {
                    return false;
                }
                match self.expected.get_mut(&(key, removed(e))) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        false
                    }
                    _ => true,
                }
            })
            .collect()
    }
}

fn removed(e: &Event) -> bool {
    match *e {
        Event::Link { removed, .. }
        | Event::Address { removed, .. }
        | Event::Route { removed, .. }
        | Event::Rule { removed, .. } => removed,
    }
}

/// First delay of a repeated heal; doubled at each repeat up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(50);
/// The longest the daemon waits before undoing another program's change again.
pub const MAX_BACKOFF: Duration = Duration::from_secs(4);
/// A heal of the same object within this long of the end of its backoff is a repeat.
const FIGHT_MEMORY: Duration = Duration::from_secs(1);
/// At most one warning per object in this long.
const WARN_WINDOW: Duration = Duration::from_secs(60);
/// Repeats before a fight is warned about.
const WARN_AFTER: u32 = 3;

/// The delay before heal number `repeats` of an object in a row: the first two are immediate
/// (a network manager's reconfigure may well remove things twice), then 50 ms doubling.
pub fn backoff(repeats: u32) -> Duration {
    if repeats <= 2 {
        return Duration::ZERO;
    }
    let shift = (repeats - 3).min(16);
    (BASE_BACKOFF * (1u32 << shift)).min(MAX_BACKOFF)
}

#[derive(Debug, Clone)]
struct Fight {
    repeats: u32,
    last: Instant,
    warned: Option<Instant>,
    object: String,
}

impl Fight {
    /// Is a heal at `now` another round of this fight?
    fn ongoing(&self, now: Instant) -> bool {
        now.duration_since(self.last) < backoff(self.repeats + 1) + FIGHT_MEMORY
    }
}

/// A warning: another program keeps undoing `object`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FightWarning {
    pub object: String,
    pub repeats: u32,
    pub delay: Duration,
}

/// Objects other programs keep undoing, and when the daemon may heal them again.
#[derive(Debug, Default)]
pub struct Fights {
    by_key: BTreeMap<Key, Fight>,
}

impl Fights {
    /// Record a heal that re-made `changes` at `now`; warnings due (one per object per window).
    pub fn record(&mut self, changes: &[Change], now: Instant) -> Vec<FightWarning> {
        self.by_key.retain(|_, f| f.ongoing(now));
        let mut warnings = Vec::new();
        let mut seen = BTreeSet::new();
        for c in changes {
            let key = Key::of_change(c);
            if !seen.insert(key) {
                continue;
            }
            let f = self.by_key.entry(key).or_insert(Fight {
                repeats: 0,
                last: now,
                warned: None,
                object: String::new(),
            });
            f.repeats += 1;
            f.last = now;
            f.object = c.object();
            let quiet = f
                .warned
                .is_none_or(|w| now.duration_since(w) >= WARN_WINDOW);
            if f.repeats >= WARN_AFTER && quiet {
                f.warned = Some(now);
                warnings.push(FightWarning {
                    object: f.object.clone(),
                    repeats: f.repeats,
                    delay: backoff(f.repeats + 1),
                });
            }
        }
        warnings
    }

    /// When a pass for `events` may run: at once if any of them is about an object not in
    /// a fight (everything else keeps being served), else when the earliest backoff ends.
    pub fn earliest(&self, events: &[Event], now: Instant) -> Instant {
        let mut at: Option<Instant> = None;
        for e in events {
            let Some(f) = self.by_key.get(&Key::of_event(e)) else {
                return now;
            };
            if !f.ongoing(now) {
                return now;
            }
            let t = f.last + backoff(f.repeats + 1);
            at = Some(at.map_or(t, |a| a.min(t)));
        }
        at.unwrap_or(now).max(now)
    }
}

/// Where a heal of the objects of no one ENI (`lookup main suppress_prefixlength 0`, the
/// egress table's rule) is reported.
const SHARED: &str = "(all ENIs)";

/// What one heal did on one ENI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Heal {
    /// The ENI's interface (or the table's, for rules).
    pub iface: String,
    pub rules: usize,
    pub routes: usize,
    pub addresses: usize,
    pub link_up: bool,
    /// Objects removed (stale ones, or foreign ones in the way).
    pub removed: usize,
}

/// A heal's changes, per interface (rules by their table's uplink), in interface order.
pub fn heals(applied: &[Change], desired: &Desired, links: &[HostLink]) -> Vec<Heal> {
    let by_table: BTreeMap<u32, &str> = (desired.uplinks.iter())
        .map(|u| (u.table, u.iface.name.as_str()))
        .collect();
    let name_of = |index: u32, fallback: &str| {
        (links.iter().find(|l| l.index == index)).map_or(fallback.to_string(), |l| l.name.clone())
    };
    let mut out: BTreeMap<String, Heal> = BTreeMap::new();
    for c in applied {
        let iface = match c {
            Change::LinkUp(i) | Change::LinkDown(i) => name_of(i.index, &i.name),
            Change::AddAddress(a) | Change::DelAddress(a) => name_of(a.iface.index, &a.iface.name),
            Change::AddRoute(r) | Change::DelRoute(r) | Change::ReplaceRoute { new: r, .. } => {
                match r.nexthops.first() {
                    Some(h) => name_of(h.iface.index, &h.iface.name),
                    None => by_table.get(&r.table).unwrap_or(&SHARED).to_string(),
                }
            }
            Change::AddRule(r) | Change::DelRule(r) => {
                by_table.get(&r.table).unwrap_or(&SHARED).to_string()
            }
            Change::SetTable { .. } => SHARED.to_string(),
        };
        let h = out.entry(iface.clone()).or_insert_with(|| Heal {
            iface,
            ..Heal::default()
        });
        match c {
            Change::LinkUp(_) => h.link_up = true,
            Change::AddAddress(_) => h.addresses += 1,
            Change::AddRoute(_) | Change::ReplaceRoute { .. } => h.routes += 1,
            Change::AddRule(_) => h.rules += 1,
            Change::LinkDown(_)
            | Change::DelAddress(_)
            | Change::DelRoute(_)
            | Change::DelRule(_) => h.removed += 1,
            Change::SetTable { new, .. } => {
                if new.is_some() {
                    h.rules += 1
                } else {
                    h.removed += 1
                }
            }
        }
    }
    out.into_values().collect()
}
