//! Validation of the raw file into the model: the [`Validator`] core (problems, warnings and
//! notes at a span; the parse helpers) and [`Validator::config`], which runs each concern's
//! module in order. May import the config's raw types and rules, and `crate::model`.

mod containers;
mod cross;
mod discover;
mod egress;
mod eip;
mod eni;
mod routing;
mod tables;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use super::raw::{RawConfig, S};
use super::{LineIndex, Problem, Warning};
use crate::model::layout::MAX_ENIS;
use crate::model::{Config, Mode, Routing};

pub use discover::{DiscoverSettings, Excluded, DEFAULT_REFRESH};

/// Collects every problem, warning and note of one file.
pub(super) struct Validator {
    lines: LineIndex,
    problems: Vec<Problem>,
    warnings: Vec<Warning>,
    /// The secondary ENIs with EIPs whose mode has no ALG: one note for all (`alg_note`).
    lacks_alg: Vec<(Mode, String, Range<usize>)>,
}

impl Validator {
    pub(super) fn new(lines: LineIndex) -> Self {
        Validator {
            lines,
            problems: Vec::new(),
            warnings: Vec::new(),
            lacks_alg: Vec::new(),
        }
    }

    /// The valid config with its warnings, or every problem (sorted by position).
    pub(super) fn finish(
        mut self,
        config: Option<Config>,
    ) -> Result<(Config, Vec<Warning>), Vec<Problem>> {
        if self.problems.is_empty() {
            if let Some(config) = config {
                return Ok((config, self.warnings));
            }
        }
        self.problems.sort_by_key(|p| (p.line, p.column));
        self.problems.dedup();
        Err(self.problems)
    }

    /// A validated part of a file, or its problems.
    pub(super) fn finish_part<T>(mut self, part: Option<T>) -> Result<T, Vec<Problem>> {
        match part {
            Some(p) if self.problems.is_empty() => Ok(p),
            _ => {
                self.problems.sort_by_key(|p| (p.line, p.column));
                Err(self.problems)
            }
        }
    }

    fn line(&self, span: &Range<usize>) -> usize {
        self.lines.position(span.start).0
    }

    /// How many problems were found so far (to tell whether a part added any).
    fn problem_count(&self) -> usize {
        self.problems.len()
    }

    fn err(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let problem = self.lines.problem(span, message);
        self.problems.push(problem);
    }

    /// A problem of the whole file (no line).
    fn err_file(&mut self, message: impl Into<String>) {
        self.problems.push(Problem::whole_file(message));
    }

    fn warn(&mut self, span: &Range<usize>, message: impl Into<String>) {
        self.warning(std::slice::from_ref(span), message.into(), false);
    }

    /// A warning or note at the first span, every span shown under it.
    fn warning(&mut self, spans: &[Range<usize>], message: String, note: bool) {
        let line = spans.first().map_or(0, |s| self.line(s));
        let excerpts = spans.iter().map(|s| self.lines.excerpt(s)).collect();
        self.warnings.push(Warning {
            line,
            message,
            note,
            excerpts,
        });
    }

    /// Parse a spanned string with `parse`, reporting `expected` on failure.
    fn parse<T>(
        &mut self,
        ctx: &str,
        key: &str,
        v: &S<String>,
        parse: impl FnOnce(&str) -> Option<T>,
        expected: &str,
    ) -> Option<T> {
        let r = parse(v.get_ref().trim());
        if r.is_none() {
            self.err(
                &v.span(),
                format!("{ctx}{key} = {:?} is not {expected}", v.get_ref()),
            );
        }
        r
    }

    fn v4(&mut self, ctx: &str, key: &str, v: &S<String>) -> Option<Ipv4Addr> {
        self.parse(ctx, key, v, |s| s.parse().ok(), "an IPv4 address")
    }

    fn v6(&mut self, ctx: &str, key: &str, v: &S<String>) -> Option<Ipv6Addr> {
        self.parse(ctx, key, v, |s| s.parse().ok(), "an IPv6 address")
    }

    fn int_in(&mut self, ctx: &str, key: &str, v: &S<i64>, lo: i64, hi: i64) -> Option<i64> {
        let n = *v.get_ref();
        if n < lo || n > hi {
            self.err(
                &v.span(),
                format!("{ctx}{key} = {n} is out of range ({lo}..={hi})"),
            );
            None
        } else {
            Some(n)
        }
    }

    /// The whole file: routing, every ENI, the rules across ENIs, egress, then the tables.
    pub(super) fn config(&mut self, raw: RawConfig) -> Option<Config> {
        let routing = match &raw.routing {
            Some(r) => self.routing(r.get_ref()),
            None => Some(Routing::default()),
        };
        let region = raw.region.as_ref().map(|r| r.get_ref().clone());
        if let Some(d) = &raw.discover {
            self.discover(d);
        }

        if raw.eni.is_empty() {
            self.err_file("no [[eni]] is declared: there is nothing to route");
        }
        if let Some(extra) = raw.eni.get(MAX_ENIS) {
            self.err(
                &extra.span(),
                format!("at most {MAX_ENIS} ENIs are supported (table allocation)"),
            );
        }

        let mut enis = Vec::new();
        let mut ok = true;
        for e in &raw.eni {
            match self.eni(e, raw.region.as_ref()) {
                Some(eni) => enis.push(eni),
                None => ok = false,
            }
        }
        self.cross_eni(&raw.eni, &enis, ok);
        self.alg_note();

        let egress = match &raw.egress {
            Some(e) => self.egress(e, &enis, ok),
            None => None,
        };

        let routing = routing?;
        if ok {
            self.tables(&routing, &mut enis, raw.routing.as_ref());
        }
        if !ok || (raw.egress.is_some() && egress.is_none()) {
            return None;
        }
        let containers = match &raw.containers {
            Some(c) => Some(self.containers(c, &enis)?),
            None => None,
        };
        Some(Config {
            region,
            routing,
            enis,
            egress,
            containers,
        })
    }
}

/// The modes with a capability, joined for a message ("cut-through and multi-eip").
fn modes_where(has: impl Fn(Mode) -> bool, sep: &str) -> String {
    let names: Vec<&str> = Mode::ALL
        .into_iter()
        .filter(|m| has(*m))
        .map(Mode::as_str)
        .collect();
    names.join(sep)
}

/// A count in words for the small numbers messages use ("one"), digits otherwise.
fn count_word(n: usize) -> String {
    match n {
        1 => "one".to_string(),
        n => n.to_string(),
    }
}
