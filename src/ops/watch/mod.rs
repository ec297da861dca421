//! `watch`: converge as apply does, then stay — re-converge within milliseconds of any
//! notification that can matter, back off from another program that keeps undoing an object,
//! resync in full every `--resync` and after a socket overrun, reload the config on SIGHUP,
//! stop on SIGTERM/SIGINT leaving the routing in place. May import what `ops` may.
//!
//! The loop ([`watch_once`]) is written against [`Kernel`] and a [`Source`] of wake-ups (the
//! real one, [`Live`], is the namespace's rtnetlink notifications plus the signals), so it
//! runs against the fake too. Its decisions are the pure functions of `policy`.

mod policy;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::signal::unix::{signal, Signal, SignalKind};

use policy::{Echoes, Fights, Interest};
pub use policy::{FightWarning, Heal, MAX_BACKOFF};

use super::{apply_once, ApplyOptions, ApplyReport, OpError};
use crate::config::{self, LoadError, Loaded};
use crate::host::{Holder, HostError, State, WatchStatus};
use crate::kernel::events::{Burst, Event, Events, Group};
use crate::kernel::{Kernel, KernelError};
use crate::model::Config;
use crate::plan::{self, Missing};

/// A burst of notifications ends after this long without news.
const DEBOUNCE: Duration = Duration::from_millis(1);
/// Without systemd's watchdog, the loop has no timer but the resync.
const NEVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// What woke the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    Quiet,
    Events(Vec<Event>),
    /// Notifications were lost (ENOBUFS): observe everything again.
    Overrun,
    Reload,
    Stop,
}

/// Where the loop waits.
#[allow(async_fn_in_trait)] // one thread, concrete types
pub trait Source {
    async fn wait(&mut self, timeout: Duration) -> Result<Wake, KernelError>;
}

/// The namespace's notifications (every group eniroute's objects live in) and the signals.
pub struct Live {
    events: Events,
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Live {
    /// Subscribe; on a thread inside the namespace, within its runtime.
    pub fn subscribe() -> Result<Live, OpError> {
        let sig = |k| signal(k).map_err(OpError::Signal);
        Ok(Live {
            events: Events::subscribe(&Group::ALL)?,
            term: sig(SignalKind::terminate())?,
            int: sig(SignalKind::interrupt())?,
            hup: sig(SignalKind::hangup())?,
        })
    }
}

impl Source for Live {
    async fn wait(&mut self, timeout: Duration) -> Result<Wake, KernelError> {
        tokio::select! {
            b = self.events.next_burst(timeout, DEBOUNCE) => Ok(match b? {
                Burst::Quiet => Wake::Quiet,
                Burst::Events(e) => Wake::Events(e),
                Burst::Resync => Wake::Overrun,
            }),
            _ = self.term.recv() => Ok(Wake::Stop),
            _ = self.int.recv() => Ok(Wake::Stop),
            _ = self.hup.recv() => Ok(Wake::Reload),
        }
    }
}

/// How the daemon runs.
pub struct WatchOptions {
    /// A full observe at least this often.
    pub resync: Duration,
    /// How long each pass waits for another eniroute's lock.
    pub lock_timeout: Duration,
    /// Say `Alive` this often (systemd's watchdog), if set.
    pub keepalive: Option<Duration>,
    /// Say `Ready` by then even while ENIs are still awaited.
    pub ready_grace: Duration,
    pub config_path: PathBuf,
    /// Set by SIGTERM/SIGINT (also ends a wait for the lock).
    pub stop: Arc<AtomicBool>,
    /// Set by SIGHUP.
    pub reload: Arc<AtomicBool>,
    /// A config handed over by the `[discover]` refresher (the file merged with new instance
    /// metadata), taken at the next reload wake-up instead of re-reading the file.
    pub pending: Arc<std::sync::Mutex<Option<Loaded>>>,
}

/// Why a full resync runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncWhy {
    Timer,
    Overrun,
}

/// What the daemon tells its caller (who words it and tells systemd).
#[derive(Debug)]
pub enum WatchEvent<'a> {
    /// The first convergence (or a convergence after a config reload).
    Converged(&'a ApplyReport),
    /// Still waiting for ENIs past the grace time: ready as far as systemd goes.
    ReadyWaiting,
    Healed {
        heals: &'a [Heal],
        sysctls: usize,
        total: u64,
    },
    Waiting(&'a [Missing]),
    Fight(&'a FightWarning),
    PassFailed {
        error: &'a OpError,
        retry: Duration,
    },
    LockWait(Option<&'a Holder>),
    Resync(ResyncWhy),
    Reloaded(&'a Loaded),
    ReloadFailed(&'a LoadError),
    /// A reload of a `[discover]` config needs a restart (the metadata is read at start).
    ReloadDiscover,
    /// A reload that changes `routing.protocol` needs a restart.
    ReloadProtocol {
        old: u8,
        new: u8,
    },
    StatusFile(&'a HostError),
    Alive,
    Stopping,
}

/// Told every [`WatchEvent`].
pub type OnWatch<'a> = &'a mut dyn FnMut(&WatchEvent);

/// The daemon's state between wake-ups.
struct Daemon<'a, K: Kernel, S: Source> {
    k: &'a K,
    state: &'a State,
    src: &'a mut S,
    opts: &'a WatchOptions,
    on: OnWatch<'a>,
    cfg: Config,
    interest: Interest,
    echoes: Echoes,
    fights: Fights,
    status: WatchStatus,
    /// Converged at least once since the start or the last reload.
    converged: bool,
    ever_converged: bool,
    /// The next pass reads the other nftables tables' marks (the first pass, after a reload,
    /// at a resync); heals between do not.
    scan_marks: bool,
    /// The ENIs last reported missing.
    waiting: Vec<String>,
    failures: u32,
    due: Option<Instant>,
    next_resync: Instant,
    next_alive: Option<Instant>,
    ready_by: Option<Instant>,
}

/// Run the daemon until SIGTERM/SIGINT. Fails only when the first pass cannot start (the
/// lock stays held past its timeout) or fails for a reason other than missing ENIs.
pub async fn watch_once<K: Kernel, S: Source>(
    k: &K,
    state: &State,
    cfg: Config,
    src: &mut S,
    opts: &WatchOptions,
    on: OnWatch<'_>,
) -> Result<(), OpError> {
    let now = Instant::now();
    let mut d = Daemon {
        k,
        state,
        src,
        opts,
        on,
        cfg,
        interest: Interest::unknown(),
        echoes: Echoes::default(),
        fights: Fights::default(),
        status: WatchStatus {
            pid: std::process::id(),
            since: epoch_secs(),
            heals: 0,
            last_heal: None,
        },
        converged: false,
        ever_converged: false,
        scan_marks: true,
        waiting: Vec::new(),
        failures: 0,
        due: Some(now),
        next_resync: now + opts.resync,
        next_alive: opts.keepalive.map(|_| now),
        ready_by: Some(now + opts.ready_grace),
    };
    // Shown by `status` from the start, also while ENIs are awaited.
    if let Err(e) = state.store_watch(&d.status) {
        (d.on)(&WatchEvent::StatusFile(&e));
    }
    let result = d.run().await;
    (d.on)(&WatchEvent::Stopping);
    state.remove_watch();
    result
}

fn epoch_secs() -> u64 {
    (SystemTime::now().duration_since(UNIX_EPOCH)).map_or(0, |d| d.as_secs())
}

impl<K: Kernel, S: Source> Daemon<'_, K, S> {
    async fn run(&mut self) -> Result<(), OpError> {
        loop {
            if self.opts.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            if self.opts.reload.swap(false, Ordering::SeqCst) {
                self.reload();
            }
            let now = Instant::now();
            if self.due.is_some_and(|d| d <= now) {
                self.due = None;
                self.pass().await?;
                continue;
            }
            if now >= self.next_resync {
                (self.on)(&WatchEvent::Resync(ResyncWhy::Timer));
                self.scan_marks = true;
                self.due = Some(now);
                continue;
            }
            self.timers(now);
            let timeout = self.next_wake().saturating_duration_since(now);
            match self.src.wait(timeout).await? {
                Wake::Quiet => {}
                Wake::Events(events) => self.events(events),
                Wake::Overrun => {
                    (self.on)(&WatchEvent::Resync(ResyncWhy::Overrun));
                    self.scan_marks = true;
                    self.due = Some(Instant::now());
                }
                Wake::Reload => self.opts.reload.store(true, Ordering::SeqCst),
                Wake::Stop => self.opts.stop.store(true, Ordering::SeqCst),
            }
        }
    }

    /// The watchdog and the readiness grace.
    fn timers(&mut self, now: Instant) {
        if let (Some(at), Some(every)) = (self.next_alive, self.opts.keepalive) {
            if at <= now {
                (self.on)(&WatchEvent::Alive);
                self.next_alive = Some(now + every);
            }
        }
        if self.ready_by.is_some_and(|r| r <= now) {
            self.ready_by = None;
            (self.on)(&WatchEvent::ReadyWaiting);
        }
    }

    fn next_wake(&self) -> Instant {
        let far = Instant::now() + NEVER;
        [
            self.due,
            Some(self.next_resync),
            self.next_alive,
            self.ready_by,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(far)
    }

    /// Notifications: ignore the echoes and what cannot matter; schedule a pass for the rest
    /// (at once, or when the backoff of the objects they are about ends).
    fn events(&mut self, events: Vec<Event>) {
        let now = Instant::now();
        let relevant: Vec<Event> = (self.echoes.absorb(events, now).into_iter())
            .filter(|e| self.interest.matters(e))
            .collect();
        if relevant.is_empty() {
            return;
        }
        let at = self.fights.earliest(&relevant, now);
        self.due = Some(self.due.map_or(at, |d| d.min(at)));
    }

    fn reload(&mut self) {
        let pending = (self.opts.pending.lock()).map_or(None, |mut p| p.take());
        if let Some(l) = pending {
            return self.take_config(l);
        }
        // A `[discover]` file is only half the config (the metadata completes it, read by the
        // cli's loader at start): re-reading the file alone could drop discovered ENIs.
        let path = &self.opts.config_path;
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let shown = path.display().to_string();
        if matches!(config::discover_section(&text, &shown), Ok(Some(_))) {
            (self.on)(&WatchEvent::ReloadDiscover);
            return;
        }
        match config::load_file(path) {
            Ok(l) => self.take_config(l),
            Err(e) => (self.on)(&WatchEvent::ReloadFailed(&e)),
        }
    }

    /// Converge to a new config from the next pass on.
    fn take_config(&mut self, l: Loaded) {
        if l.config.routing.protocol != self.cfg.routing.protocol {
            return (self.on)(&WatchEvent::ReloadProtocol {
                old: self.cfg.routing.protocol,
                new: l.config.routing.protocol,
            });
        }
        (self.on)(&WatchEvent::Reloaded(&l));
        self.cfg = l.config;
        self.converged = false;
        self.scan_marks = true;
        self.interest = Interest::unknown();
        self.due = Some(Instant::now());
    }

    /// One converging pass under the lock.
    async fn pass(&mut self) -> Result<(), OpError> {
        let on = &mut *self.on;
        let stop = self.opts.stop.clone();
        let mut waiting = |h: Option<&Holder>| on(&WatchEvent::LockWait(h));
        let lock = self.state.lock(
            "eniroute watch",
            self.opts.lock_timeout,
            &mut waiting,
            &move || stop.load(Ordering::SeqCst),
        );
        let result = match lock {
            Ok(_lock) => {
                let opts = ApplyOptions {
                    skip_mark_scan: !self.scan_marks,
                    ..ApplyOptions::default()
                };
                apply_once(self.k, self.state, &self.cfg, &opts).await
            }
            Err(e) => Err(OpError::Host(e)),
        };
        let now = Instant::now();
        self.next_resync = now + self.opts.resync;
        let links = self.k.links().await.unwrap_or_default();
        let desired = plan::desired(&self.cfg, Some(&links));
        self.interest = Interest::of(&self.cfg, &desired);
        match result {
            Ok(report) => {
                self.failures = 0;
                self.scan_marks = false;
                self.waiting.clear();
                self.converged_pass(&report, &desired, &links, now);
                Ok(())
            }
            Err(OpError::Missing(m)) => {
                self.interest.missing = true;
                let names: Vec<String> = m.iter().map(|m| m.eni.clone()).collect();
                if names != self.waiting {
                    (self.on)(&WatchEvent::Waiting(&m));
                    self.waiting = names;
                }
                Ok(())
            }
            Err(e) if !self.ever_converged && !self.opts.stop.load(Ordering::SeqCst) => Err(e),
            Err(_) if self.opts.stop.load(Ordering::SeqCst) => Ok(()),
            Err(e) => {
                self.failures += 1;
                let retry = policy::backoff(self.failures + 1).max(policy::backoff(2));
                (self.on)(&WatchEvent::PassFailed { error: &e, retry });
                self.due = Some(now + retry);
                Ok(())
            }
        }
    }

    /// After a pass that converged: expect its echoes; report the first convergence or the
    /// heal, and the fights it revealed; keep the status file.
    fn converged_pass(
        &mut self,
        report: &ApplyReport,
        desired: &plan::Desired,
        links: &[crate::model::HostLink],
        now: Instant,
    ) {
        self.echoes.expect(&report.applied, now);
        let sysctls = report.plan.sysctls.len() + report.plan.restores.len();
        if !self.converged {
            self.converged = true;
            self.ever_converged = true;
            self.ready_by = None;
            (self.on)(&WatchEvent::Converged(report));
        } else if !report.applied.is_empty() || sysctls > 0 {
            let heals = policy::heals(&report.applied, desired, links);
            self.status.heals += 1;
            let names: Vec<&str> = heals.iter().map(|h| h.iface.as_str()).collect();
            let what = if names.is_empty() {
                "sysctls".to_string()
            } else {
                names.join(", ")
            };
            self.status.last_heal = Some((epoch_secs(), what));
            (self.on)(&WatchEvent::Healed {
                heals: &heals,
                sysctls,
                total: self.status.heals,
            });
            for w in self.fights.record(&report.applied, now) {
                (self.on)(&WatchEvent::Fight(&w));
            }
        } else {
            return;
        }
        if let Err(e) = self.state.store_watch(&self.status) {
            (self.on)(&WatchEvent::StatusFile(&e));
        }
    }
}
