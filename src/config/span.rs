//! Spans of the config file to lines, character columns and excerpts (the line, what to
//! underline), and the unquoted-address hint; any offset is clamped and moved to a character
//! boundary. Imports only the config's own types.

use std::ops::Range;
use std::sync::Arc;

use super::{Excerpt, Problem};

/// How much of a span is underlined at most, in bytes: half the drawing's width of 100
/// columns, so that a long value's mark never widens its line past it.
const MAX_MARK: usize = 50;

/// The config text and where its lines start.
pub(super) struct LineIndex {
    text: Arc<str>,
    starts: Vec<usize>,
}

impl LineIndex {
    pub(super) fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex {
            text: Arc::from(text),
            starts,
        }
    }

    /// 1-based (line, column in characters) of a byte offset (clamped to the text).
    pub(super) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = floor(&self.text, offset);
        let idx = match self.starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.starts.get(idx).copied().unwrap_or(0).min(offset);
        let column = self.text[start..offset].chars().count() + 1;
        (idx + 1, column)
    }

    /// A problem at `span`, its line shown under it.
    pub(super) fn problem(&self, span: &Range<usize>, message: impl Into<String>) -> Problem {
        let (line, column) = self.position(span.start);
        Problem {
            line,
            column,
            message: message.into(),
            help: None,
            excerpts: vec![self.excerpt(span)],
        }
    }

    /// The line of `span`'s start, and the part of `span` on it to underline. A span over
    /// several lines is cut to its first (the header of a table, the start of a value).
    pub(super) fn excerpt(&self, span: &Range<usize>) -> Excerpt {
        let text = &*self.text;
        let start = floor(text, span.start);
        let (line, column) = self.position(start);
        let line_start = self.starts.get(line - 1).copied().unwrap_or(0).min(start);
        let mut line_end = text[line_start..]
            .find('\n')
            .map_or(text.len(), |i| line_start + i);
        if text[line_start..line_end].ends_with('\r') {
            line_end -= 1;
        }
        let start = start.min(line_end);
        let end = ceil(text, span.end.clamp(start, line_end));
        let end = floor(text, end.min(start + MAX_MARK)).max(start);
        Excerpt {
            line,
            column,
            source: self.text.clone(),
            line_range: line_start..line_end,
            mark: start - line_start..end - line_start,
            label: None,
        }
    }

    /// TOML's own error at `span`; an address written bare is said so, TOML's words under it,
    /// with the fix.
    pub(super) fn syntax_error(&self, span: &Range<usize>, message: String) -> Problem {
        match unquoted_address(&self.text, span.start) {
            Some((token, help)) => {
                let mut p = self.problem(&token, "an address or CIDR must be a quoted string");
                if let Some(x) = p.excerpts.first_mut() {
                    x.label = Some(message);
                }
                p.help = Some(help);
                p
            }
            None => self.problem(span, message),
        }
    }
}

/// The largest character boundary at or before `i` (within the text).
fn floor(text: &str, i: usize) -> usize {
    let mut i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The smallest character boundary at or after `i` (within the text).
fn ceil(text: &str, i: usize) -> usize {
    let mut i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// `cidr = 192.168.10.0/24`, `private_ips = [192.168.10.21]`: an address or CIDR written
/// without quotes where TOML stopped (it reads it as a number, or cannot read it). The span of
/// the bare address, and the fix: the key and the address quoted, or the address alone.
fn unquoted_address(text: &str, offset: usize) -> Option<(Range<usize>, String)> {
    let bare = |c: char| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '/');
    let offset = floor(text, offset);
    let start = text[..offset]
        .char_indices()
        .rev()
        .take_while(|(_, c)| bare(*c))
        .last()
        .map_or(offset, |(i, _)| i);
    let end = text[offset..]
        .char_indices()
        .find(|(_, c)| !bare(*c))
        .map_or(text.len(), |(i, _)| offset + i);
    let token = &text[start..end];
    // Inside a string (an unterminated one, say): not a bare value.
    let quoted = text[..start].ends_with(['"', '\'']) || text[end..].starts_with(['"', '\'']);
    let looks_like_address = !quoted
        && (3..=64).contains(&token.len())
        && token.starts_with(|c: char| c.is_ascii_hexdigit())
        && token.contains(|c: char| c.is_ascii_digit())
        && token.contains(['.', ':', '/'])
        && token.parse::<f64>().is_err();
    if !looks_like_address {
        return None;
    }
    // The key when the line is just `key = <address>`.
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let before = text[line_start..start].trim_end();
    let key = before
        .strip_suffix('=')
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    let fix = match key {
        Some(k) => format!("{k} = \"{token}\""),
        None => format!("\"{token}\""),
    };
    Some((
        start..end,
        format!("quote addresses and CIDR values: {fix}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_characters_and_clamp() {
        let li = LineIndex::new("a = \"é\"\nb = 1\n");
        assert_eq!(li.position(0), (1, 1));
        // After the two-byte é: column 7 of characters, not 8 of bytes.
        assert_eq!(li.position(7), (1, 7));
        // Inside é: its start.
        assert_eq!(li.position(6), (1, 6));
        assert_eq!(li.position(8), (1, 8));
        assert_eq!(li.position(9), (2, 1));
        assert_eq!(li.position(10_000), (3, 1));
        assert_eq!(LineIndex::new("").position(5), (1, 1));
    }

    #[test]
    fn excerpts_are_one_line_on_character_boundaries() {
        let li = LineIndex::new("[[eni]]\r\nname = \"ü\"\r\n");
        // A span over several lines: its first, without the CR.
        let x = li.excerpt(&(0..20));
        assert_eq!((x.line, x.text(), x.mark.clone()), (1, "[[eni]]", 0..7));
        // A span inside a multi-byte character is widened to it.
        let x = li.excerpt(&(17..18));
        assert_eq!(&x.text()[x.mark.clone()], "ü");
        // At the end of the file: an empty last line, a point.
        let x = li.excerpt(&(22..22));
        assert_eq!((x.line, x.text(), x.mark.clone()), (3, "", 0..0));
        // Past the end, reversed: clamped.
        #[allow(clippy::reversed_empty_ranges)]
        let x = li.excerpt(&(500..3));
        assert_eq!((x.line, x.mark.clone()), (3, 0..0));
        // A long span: its first MAX_MARK bytes underlined.
        let long = format!("k = \"{}\"", "x".repeat(10_000));
        let x = LineIndex::new(&long).excerpt(&(4..long.len()));
        assert_eq!(x.mark, 4..4 + MAX_MARK);
    }

    #[test]
    fn the_bare_address_and_its_fix() {
        let text = "cidr=10.0.0.0/24\nprivate_ips = [192.168.0.1]\nx = 1.5e3\n";
        let (span, help) = unquoted_address(text, 9).unwrap();
        assert_eq!(
            (&text[span], help.as_str()),
            (
                "10.0.0.0/24",
                "quote addresses and CIDR values: cidr = \"10.0.0.0/24\""
            )
        );
        let (span, help) = unquoted_address(text, 35).unwrap();
        assert_eq!(&text[span], "192.168.0.1");
        assert!(help.ends_with(": \"192.168.0.1\""), "{help}");
        assert!(unquoted_address(text, 50).is_none());
    }
}
