//! `[discover]` (DESIGN §3): the metadata provider, the refresh interval of `watch`, and the
//! MACs or interface names never managed. May import the raw types and `crate::model`.

use std::time::Duration;

use macaddr::MacAddr6;

use super::Validator;
use crate::config::raw::{RawDiscover, S};
use crate::model::{mac_text, valid_ifname};

const CTX: &str = "[discover]: ";
/// `refresh` bounds: often enough to matter, rarely enough to stay inside the services'
/// request limits.
const MIN_REFRESH: Duration = Duration::from_secs(10);
const MAX_REFRESH: Duration = Duration::from_secs(24 * 3600);
/// The default `refresh`.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(60);
const MAX_EXCLUDE: usize = 64;

/// A valid `[discover]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverSettings {
    /// `auto`, `aliyun` or `aws`.
    pub provider: String,
    pub refresh: Duration,
    /// MACs or interface names that are never managed.
    pub exclude: Vec<Excluded>,
    /// The metadata service's base URL, when the file names one.
    pub endpoint: Option<String>,
}

/// One `exclude` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Excluded {
    Mac(MacAddr6),
    /// An interface name (or an ENI's `name` label).
    Name(String),
}

impl Validator {
    pub(in crate::config) fn discover(&mut self, d: &S<RawDiscover>) -> Option<DiscoverSettings> {
        let d = d.get_ref();
        let before = self.problem_count();
        let provider = d
            .provider
            .as_ref()
            .map(|p| p.get_ref().as_str())
            .unwrap_or("auto");
        if let Some(p) = d
            .provider
            .as_ref()
            .filter(|_| !["auto", "aliyun", "aws"].contains(&provider))
        {
            self.err(
                &p.span(),
                format!("{CTX}provider = {provider:?} is not one of auto, aliyun, aws"),
            );
        }
        let refresh = d
            .refresh
            .as_ref()
            .and_then(|r| self.refresh(r))
            .unwrap_or(DEFAULT_REFRESH);
        let mut exclude: Vec<Excluded> = Vec::new();
        for x in &d.exclude {
            let text = x.get_ref().trim();
            let entry = match text.parse::<MacAddr6>() {
                Ok(mac) if text.contains(':') => Excluded::Mac(mac),
                _ if valid_ifname(text) => Excluded::Name(text.to_string()),
                _ => {
                    self.err(
                        &x.span(),
                        format!("{CTX}exclude entry {text:?} is neither a MAC address nor an interface name"),
                    );
                    continue;
                }
            };
            if exclude.contains(&entry) {
                self.err(&x.span(), format!("{CTX}exclude lists {text:?} twice"));
            }
            exclude.push(entry);
        }
        if let Some(x) = d.exclude.get(MAX_EXCLUDE) {
            self.err(
                &x.span(),
                format!("{CTX}at most {MAX_EXCLUDE} exclude entries"),
            );
        }
        let endpoint = d.endpoint.as_ref().map(|e| e.get_ref().trim().to_string());
        if let Some(e) = d
            .endpoint
            .as_ref()
            .filter(|e| !e.get_ref().trim().starts_with("http://"))
        {
            self.err(&e.span(), format!("{CTX}endpoint must be an http:// URL"));
        }
        (self.problem_count() == before).then(|| DiscoverSettings {
            provider: provider.to_string(),
            refresh,
            exclude,
            endpoint,
        })
    }

    fn refresh(&mut self, r: &S<String>) -> Option<Duration> {
        let text = r.get_ref().trim();
        let Ok(d) = humantime::parse_duration(text) else {
            self.err(
                &r.span(),
                format!("{CTX}refresh = {text:?} is not a duration (e.g. 60s, 5m)"),
            );
            return None;
        };
        if d < MIN_REFRESH || d > MAX_REFRESH {
            self.err(
                &r.span(),
                format!("{CTX}refresh = {text:?} is out of range (10s..=24h)"),
            );
            return None;
        }
        Some(d)
    }
}

impl Excluded {
    /// Whether this entry names the ENI with `mac`, config label `name`, host interface `ifname`.
    pub fn matches(&self, mac: MacAddr6, name: &str, ifname: Option<&str>) -> bool {
        match self {
            Excluded::Mac(m) => *m == mac,
            Excluded::Name(n) => n == name || Some(n.as_str()) == ifname,
        }
    }
}

impl std::fmt::Display for Excluded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Excluded::Mac(m) => f.write_str(&mac_text(*m)),
            Excluded::Name(n) => f.write_str(n),
        }
    }
}
