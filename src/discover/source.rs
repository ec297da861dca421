//! The metadata as the source of the config (`[discover]`): one object the shell asks for the
//! config now (`apply`, `plan`...) and, in `watch`, on every tick. It chains the pieces: the
//! refresher's schedule and verdict, the merge of the file with the instance, and the
//! validator. May import `crate::config`, `crate::model` and the discover types.
//!
//! The hook of `watch` (the loop lives in the shell):
//! 1. at start and on SIGHUP: `MetadataSource::from_file(&text, &path)` — `None`: no
//!    `[discover]`, load the file as before; `Some(src)`: `src.load_now(&text, &path, &links)`
//!    gives the first config (an error there is exit 1 before anything changes);
//! 2. on every wake-up (its timer reaching the last `NotDue { next }`/`Kept { retry_at }`, a
//!    netlink burst, a resync): `src.tick(&text, &path, &links)` with the host's links now, and
//!    `Apply(loaded)` → converge to it; `Kept { warning, .. }` / `Invalid(e)` → report and keep
//!    the routing; `Unchanged` / `NotDue` → nothing. `tick` blocks on HTTP for up to the
//!    session's timeouts: call it from a plain thread (or `spawn_blocking`), never inside a
//!    namespace-entered netlink thread.

use std::time::Instant;

use macaddr::MacAddr6;

use super::refresh::{Decision, RefreshPolicy, Refresher, SystemClock};
use super::{discover, merge, DiscoverError, DiscoverOptions, Discovered, ProviderChoice};
use crate::config::{self, ConfigError, DiscoverSettings, Loaded};
use crate::model::HostLink;

/// What one tick of `watch` should do.
#[derive(Debug)]
pub enum Tick {
    /// Not time to read yet: tick again at `next`.
    NotDue { next: Instant },
    /// The metadata says what it said before: nothing to do.
    Unchanged,
    /// Converge to this config (the file merged with the new instance, validated).
    Apply(Box<Loaded>),
    /// The metadata could not be read: keep the routing, warn, tick again at `retry_at`.
    Kept { warning: String, retry_at: Instant },
    /// The new instance does not make a valid config with the file: keep the routing, report.
    Invalid(ConfigError),
}

/// The file's `[discover]` settings, the options of each read, and the refresher.
pub struct MetadataSource {
    settings: DiscoverSettings,
    opts: DiscoverOptions,
    refresher: Refresher<SystemClock>,
}

/// Why the config could not be had now.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("[discover]: {0}; nothing was changed")]
    Metadata(#[from] DiscoverError),
}

impl MetadataSource {
    /// `None` when the file has no `[discover]`.
    pub fn from_file(text: &str, path: &str) -> Result<Option<MetadataSource>, ConfigError> {
        let Some(settings) = config::discover_section(text, path)? else {
            return Ok(None);
        };
        let provider: ProviderChoice = settings.provider.parse().unwrap_or(ProviderChoice::Auto);
        let opts = DiscoverOptions {
            provider,
            endpoint: settings.endpoint.clone(),
            ..DiscoverOptions::default()
        };
        let policy = RefreshPolicy::new(settings.refresh);
        let seed = u64::from(std::process::id()) ^ 0x9e37_79b9_7f4a_7c15;
        let refresher = Refresher::new(policy, SystemClock, None, seed);
        Ok(Some(MetadataSource {
            settings,
            opts,
            refresher,
        }))
    }

    /// Read the metadata now and build the config: for `apply`, `plan`, `validate`, `status`
    /// and the first pass of `watch` (which then refreshes one interval later).
    pub fn load_now(
        &mut self,
        text: &str,
        path: &str,
        links: &[HostLink],
    ) -> Result<(Loaded, Vec<String>), SourceError> {
        let found = discover(&self.opts)?;
        let (loaded, excluded) = self.build(text, path, &found, links)?;
        let policy = RefreshPolicy::new(self.settings.refresh);
        let seed = u64::from(std::process::id());
        self.refresher = Refresher::new(policy, SystemClock, Some(found), seed);
        Ok((loaded, excluded))
    }

    /// When the next read is due.
    pub fn next_due(&self) -> std::time::Instant {
        self.refresher.next_due()
    }

    /// One tick of `watch` (see [`Tick`]); `links`: the host's links now.
    pub fn tick(&mut self, text: &str, path: &str, links: &[HostLink]) -> Tick {
        let opts = self.refresher_options();
        self.tick_with(text, path, links, || discover(&opts))
    }

    fn refresher_options(&self) -> DiscoverOptions {
        RefreshPolicy::new(self.settings.refresh).options(&self.opts)
    }

    fn tick_with(
        &mut self,
        text: &str,
        path: &str,
        links: &[HostLink],
        fetch: impl FnOnce() -> Result<Discovered, DiscoverError>,
    ) -> Tick {
        let macs: Vec<MacAddr6> = links.iter().filter_map(|l| l.mac).collect();
        match self.refresher.tick(fetch, &macs) {
            Decision::NotDue { next } => Tick::NotDue { next },
            Decision::Unchanged => Tick::Unchanged,
            Decision::Kept { warning, retry_at } => Tick::Kept { warning, retry_at },
            Decision::Changed(found) => match self.build(text, path, &found, links) {
                Ok((loaded, _)) => Tick::Apply(Box::new(loaded)),
                Err(e) => Tick::Invalid(e),
            },
        }
    }

    /// The file merged with `found`, validated; and the ENIs `exclude` left out.
    fn build(
        &self,
        text: &str,
        path: &str,
        found: &Discovered,
        links: &[HostLink],
    ) -> Result<(Loaded, Vec<String>), ConfigError> {
        let ifname_of = |mac: MacAddr6| {
            (links.iter())
                .find(|l| l.mac == Some(mac))
                .map(|l| l.name.clone())
        };
        let merged = merge(text, path, found, &self.settings, &ifname_of)?;
        let label = format!("{path} + {} metadata", found.provider.name());
        let loaded = config::load_str(&merged.text, &label).map_err(unmerged)?;
        Ok((loaded, merged.excluded))
    }
}

/// The merged text is nobody's file: its line numbers would mislead. Each problem quotes the
/// (bounded) merged line it is about instead.
fn unmerged(mut e: ConfigError) -> ConfigError {
    for p in &mut e.problems {
        if let Some(x) = p.excerpts.first() {
            let quoted: String = x.text().trim().chars().take(120).collect();
            p.message = format!(
                "{} (at `{quoted}` of the file merged with the metadata)",
                p.message
            );
        }
        p.line = 0;
        p.column = 0;
        p.excerpts.clear();
    }
    e
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::discover::{test_eni, ProviderKind};

    const FILE: &str = "[discover]\nprovider = \"aws\"\nrefresh = \"10s\"\n";

    fn found(ips: &[&str]) -> Discovered {
        Discovered {
            provider: ProviderKind::Aws,
            endpoint: "http://127.0.0.1:1".to_string(),
            region: None,
            enis: vec![test_eni(0, "192.168.7", ips)],
            hardened: true,
            generated_at: SystemTime::now(),
        }
    }

    #[test]
    fn ticks_apply_new_instances_and_keep_the_routing_on_failure() {
        let mut src = MetadataSource::from_file(FILE, "f.toml").unwrap().unwrap();
        // The first tick (no load_now before it) reads at once.
        let t = src.tick_with(FILE, "f.toml", &[], || Ok(found(&["192.168.7.10"])));
        let Tick::Apply(l) = t else { panic!("{t:?}") };
        assert_eq!(l.config.enis[0].private_ips.len(), 1);
        assert!(matches!(
            src.tick_with(FILE, "f.toml", &[], || Ok(found(&[]))),
            Tick::NotDue { .. }
        ));
        // Force the schedule: a failure keeps the routing.
        src.refresher = Refresher::new(
            RefreshPolicy::new(src.settings.refresh),
            SystemClock,
            None,
            7,
        );
        let outage = || {
            Err(DiscoverError::Status {
                path: "/latest/api/token".into(),
                status: 503,
                hint: String::new(),
            })
        };
        let t = src.tick_with(FILE, "f.toml", &[], outage);
        assert!(matches!(t, Tick::Kept { .. }), "{t:?}");
        // An instance that makes no valid config (a private IP that is the gateway) is
        // reported, not applied.
        src.refresher = Refresher::new(
            RefreshPolicy::new(src.settings.refresh),
            SystemClock,
            None,
            7,
        );
        let t = src.tick_with(FILE, "f.toml", &[], || Ok(found(&["192.168.7.1"])));
        let Tick::Invalid(e) = t else { panic!("{t:?}") };
        let p = &e.problems[0];
        assert_eq!(p.line, 0, "no line of a text nobody sees");
        assert!(
            p.message.contains("the gateway") && p.message.contains("192.168.7.1"),
            "{e}"
        );
        assert!(
            p.message.contains("of the file merged with the metadata)"),
            "{e}"
        );
        assert!(MetadataSource::from_file("region = \"x\"\n", "f")
            .unwrap()
            .is_none());
    }
}
