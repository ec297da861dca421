//! The refresh machinery of `watch` with `[discover]`: read the metadata every `refresh`
//! (jittered, so a fleet does not hit the service in step), within a request budget, backing
//! off on throttling and outages (honouring Retry-After), and never acting on a failed or
//! partial answer: the last good instance is kept and a warning returned. An ENI is dropped
//! only when the metadata and the host both say it is gone. Pure apart from the `Clock`;
//! the fetch is the caller's closure. May import the discover types.

use std::time::{Duration, Instant};

use macaddr::MacAddr6;

use super::{DiscoverError, DiscoverOptions, Discovered};

/// Where the refresher reads the time (a fake one in tests).
pub trait Clock {
    fn now(&self) -> Instant;
}

/// The monotonic clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// How often and how politely to read the metadata.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefreshPolicy {
    /// `[discover] refresh`.
    pub interval: Duration,
    /// Each wait is `interval` +- this fraction of it (0.0..=0.5).
    pub jitter: f64,
    /// The most requests one refresh may make (retries and token renewals count).
    pub budget: u32,
    /// The first wait after a failure; doubled after each further one, capped at `interval`.
    pub retry: Duration,
}

impl RefreshPolicy {
    pub fn new(interval: Duration) -> Self {
        RefreshPolicy {
            interval,
            jitter: 0.1,
            budget: 2048,
            retry: Duration::from_secs(5),
        }
    }

    /// The options of one refresh: `base` with this policy's request budget.
    pub fn options(&self, base: &DiscoverOptions) -> DiscoverOptions {
        DiscoverOptions {
            max_requests: self.budget,
            ..base.clone()
        }
    }
}

/// What one tick of the refresher means for the watch loop.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Not time yet: tick again at `next` (or on any other event).
    NotDue { next: Instant },
    /// The metadata says what it said before: nothing to do.
    Unchanged,
    /// A new instance to converge to (merge it with the file, validate, apply).
    Changed(Box<Discovered>),
    /// The read failed: keep the routing as it is (the last good instance), warn with
    /// `warning`, and try again at `retry_at`.
    Kept { warning: String, retry_at: Instant },
}

/// Reads the metadata on schedule and decides what the watch loop acts on.
pub struct Refresher<C: Clock> {
    policy: RefreshPolicy,
    clock: C,
    next: Instant,
    failures: u32,
    last_good: Option<Discovered>,
    rng: u64,
}

impl<C: Clock> Refresher<C> {
    /// `initial`: the instance the first apply used (the next refresh is one interval later);
    /// `None`: the first tick reads at once. `seed` varies the jitter between hosts.
    pub fn new(policy: RefreshPolicy, clock: C, initial: Option<Discovered>, seed: u64) -> Self {
        let now = clock.now();
        let mut r = Refresher {
            policy,
            clock,
            next: now,
            failures: 0,
            last_good: None,
            rng: seed | 1,
        };
        if let Some(d) = initial {
            r.last_good = Some(d);
            r.next = now + r.jittered();
        }
        r
    }

    /// The last good instance.
    pub fn current(&self) -> Option<&Discovered> {
        self.last_good.as_ref()
    }

    /// When the next read is due.
    pub fn next_due(&self) -> Instant {
        self.next
    }

    /// One tick: when due, read with `fetch` and decide. `host_macs`: the MACs of the links on
    /// the host now (an ENI the metadata stops listing is kept while the host still has it).
    pub fn tick(
        &mut self,
        fetch: impl FnOnce() -> Result<Discovered, DiscoverError>,
        host_macs: &[MacAddr6],
    ) -> Decision {
        let now = self.clock.now();
        if now < self.next {
            return Decision::NotDue { next: self.next };
        }
        match fetch() {
            Ok(fresh) => self.accept(fresh, host_macs, now),
            Err(e) => self.failed(&e, now),
        }
    }

    fn accept(&mut self, mut fresh: Discovered, host_macs: &[MacAddr6], now: Instant) -> Decision {
        self.failures = 0;
        self.next = now + self.jittered();
        if let Some(last) = &self.last_good {
            // Gone from the metadata but still on the host: a partial answer, not a removal.
            let held = last.enis.iter().filter(|e| {
                host_macs.contains(&e.mac) && !fresh.enis.iter().any(|f| f.mac == e.mac)
            });
            let held: Vec<_> = held
                .cloned()
                .map(|mut e| {
                    e.primary = false;
                    e
                })
                .collect();
            fresh.enis.extend(held);
            if same_instance(last, &fresh) {
                return Decision::Unchanged;
            }
        }
        self.last_good = Some(fresh.clone());
        Decision::Changed(Box::new(fresh))
    }

    fn failed(&mut self, e: &DiscoverError, now: Instant) -> Decision {
        self.failures = self.failures.saturating_add(1);
        let exp = self.failures.saturating_sub(1).min(16);
        let backoff = self
            .policy
            .retry
            .saturating_mul(1u32 << exp)
            .min(self.policy.interval);
        let wait = backoff.max(e.retry_after().unwrap_or(Duration::ZERO));
        self.next = now + wait;
        let kept = if self.last_good.is_some() {
            "keeping the routing of the last good answer"
        } else {
            "no good answer yet: nothing is changed"
        };
        Decision::Kept {
            warning: format!("{e}; {kept}; next try in {}s", wait.as_secs()),
            retry_at: self.next,
        }
    }

    /// `interval` +- `jitter` of it (xorshift: no crate, deterministic per seed).
    fn jittered(&mut self) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let unit = (self.rng % 10_001) as f64 / 10_000.0; // 0..=1
        let j = self.policy.jitter.clamp(0.0, 0.5);
        self.policy.interval.mul_f64(1.0 - j + 2.0 * j * unit)
    }
}

/// The same ENIs with the same addresses (the read time and token mode aside).
fn same_instance(a: &Discovered, b: &Discovered) -> bool {
    a.provider == b.provider && a.region == b.region && a.enis == b.enis
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::SystemTime;

    use super::*;
    use crate::discover::{test_eni, DiscoveredEni, ProviderKind};

    #[derive(Clone)]
    struct Fake(Rc<Cell<Instant>>);

    impl Clock for Fake {
        fn now(&self) -> Instant {
            self.0.get()
        }
    }

    impl Fake {
        fn advance(&self, d: Duration) {
            self.0.set(self.0.get() + d);
        }
    }

    fn eni(n: u8, ips: &[&str]) -> DiscoveredEni {
        test_eni(n, "192.168.0", ips)
    }

    fn instance(enis: Vec<DiscoveredEni>) -> Discovered {
        Discovered {
            provider: ProviderKind::Aws,
            endpoint: "http://127.0.0.1:1".to_string(),
            region: None,
            enis,
            hardened: true,
            generated_at: SystemTime::now(),
        }
    }

    fn outage() -> DiscoverError {
        DiscoverError::Status {
            path: "/latest/meta-data/network/interfaces/macs/".to_string(),
            status: 500,
            hint: String::new(),
        }
    }

    fn refresher(initial: Option<Discovered>) -> (Refresher<Fake>, Fake) {
        let clock = Fake(Rc::new(Cell::new(Instant::now())));
        let policy = RefreshPolicy::new(Duration::from_secs(60));
        (Refresher::new(policy, clock.clone(), initial, 42), clock)
    }

    #[test]
    fn reads_every_interval_with_jitter_and_reports_changes() {
        let first = instance(vec![eni(0, &["192.168.0.10"])]);
        let (mut r, clock) = refresher(Some(first.clone()));
        let wait = r.next_due() - clock.now();
        assert!(
            wait >= Duration::from_secs(54) && wait <= Duration::from_secs(66),
            "{wait:?}"
        );
        let mut called = false;
        let d = r.tick(
            || {
                called = true;
                Ok(first.clone())
            },
            &[],
        );
        assert!(
            matches!(d, Decision::NotDue { .. }) && !called,
            "not due: no request"
        );
        clock.advance(Duration::from_secs(67));
        assert_eq!(r.tick(|| Ok(first.clone()), &[]), Decision::Unchanged);
        // A secondary private IP assigned in the console: changed within one refresh.
        clock.advance(Duration::from_secs(67));
        let more = instance(vec![eni(0, &["192.168.0.10", "192.168.0.11"])]);
        match r.tick(|| Ok(more.clone()), &[]) {
            Decision::Changed(d) => assert_eq!(d.enis[0].private_ips.len(), 2),
            other => panic!("{other:?}"),
        }
        assert_eq!(r.current().unwrap().enis[0].private_ips.len(), 2);
        // The jitter differs between ticks.
        let waits: Vec<Duration> = (0..5)
            .map(|_| {
                clock.advance(Duration::from_secs(67));
                r.tick(|| Ok(more.clone()), &[]);
                r.next_due() - clock.now()
            })
            .collect();
        assert!(waits.windows(2).any(|w| w[0] != w[1]), "{waits:?}");
    }

    #[test]
    fn failures_keep_the_last_good_answer_and_back_off() {
        let good = instance(vec![eni(0, &["192.168.0.10"])]);
        let (mut r, clock) = refresher(Some(good.clone()));
        clock.advance(Duration::from_secs(70));
        let mut retries = Vec::new();
        for _ in 0..5 {
            match r.tick(|| Err(outage()), &[]) {
                Decision::Kept { warning, retry_at } => {
                    assert!(
                        warning.contains("HTTP 500") && warning.contains("last good"),
                        "{warning}"
                    );
                    retries.push(retry_at - clock.now());
                    clock.advance(retry_at - clock.now());
                }
                other => panic!("{other:?}"),
            }
        }
        let secs: Vec<u64> = retries.iter().map(Duration::as_secs).collect();
        assert_eq!(
            secs,
            vec![5, 10, 20, 40, 60],
            "exponential, capped at the interval"
        );
        assert_eq!(r.current(), Some(&good), "the last good answer is kept");
        // Recovery with the same answer: nothing to do.
        assert_eq!(r.tick(|| Ok(good.clone()), &[]), Decision::Unchanged);
    }

    #[test]
    fn retry_after_is_honoured() {
        let (mut r, clock) = refresher(None);
        let throttled = DiscoverError::Throttled {
            path: "/latest/api/token".to_string(),
            status: 429,
            retry_after: Duration::from_secs(30),
        };
        match r.tick(|| Err(throttled), &[]) {
            Decision::Kept { retry_at, warning } => {
                assert_eq!(retry_at - clock.now(), Duration::from_secs(30));
                assert!(warning.contains("nothing is changed"), "{warning}");
            }
            other => panic!("{other:?}"),
        }
        assert!(r.current().is_none());
    }

    #[test]
    fn an_eni_is_removed_only_when_metadata_and_host_agree() {
        let both = instance(vec![eni(0, &["192.168.0.10"]), eni(1, &["192.168.0.20"])]);
        let only_primary = instance(vec![eni(0, &["192.168.0.10"])]);
        let (mut r, clock) = refresher(Some(both.clone()));
        let eth1 = eni(1, &[]).mac;
        clock.advance(Duration::from_secs(70));
        // The metadata stops listing eth1, but the host still has it: kept, nothing changes.
        assert_eq!(
            r.tick(|| Ok(only_primary.clone()), &[eth1]),
            Decision::Unchanged
        );
        assert_eq!(r.current().unwrap().enis.len(), 2);
        // The host lost it too: removed.
        clock.advance(Duration::from_secs(70));
        match r.tick(|| Ok(only_primary.clone()), &[]) {
            Decision::Changed(d) => assert_eq!(d.enis.len(), 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_budget_reaches_the_options() {
        let p = RefreshPolicy::new(Duration::from_secs(60));
        let o = p.options(&DiscoverOptions {
            max_requests: 1,
            ..DiscoverOptions::default()
        });
        assert_eq!(o.max_requests, 2048);
    }
}
