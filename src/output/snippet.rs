//! Config problems, warnings and notes drawn with their lines (annotate-snippets, the renderer
//! of rustc and cargo): `file:line:column`, the line, a caret under the span, the hint as a
//! `help` footer. Colour only on a terminal without NO_COLOR. Imports only `crate::config`.

use std::io::IsTerminal;

use annotate_snippets::{AnnotationKind, Group, Level, Origin, Renderer, Snippet};

use crate::config::{ConfigError, Excerpt, Warning};

/// The width long lines are cut to (the sandbox's report fits 100 columns too).
const WIDTH: usize = 100;
/// The problems drawn at most; the summary counts them all, `-o json` lists them all.
const MAX_DRAWN: usize = 50;

/// How a message is headed.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Error,
    Warning,
    Note,
}

/// Colour: stderr is a terminal and NO_COLOR (no-color.org) is unset or empty.
pub(super) fn colour() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

/// Every problem of an invalid file, each drawn, then one summary line.
pub fn config_error_text(e: &ConfigError, colour: bool) -> String {
    let mut text = String::new();
    for p in e.problems.iter().take(MAX_DRAWN) {
        let at = (p.line > 0).then_some((p.line, p.column));
        text.push_str(&draw(
            Kind::Error,
            &e.path,
            &p.message,
            p.help.as_deref(),
            at,
            &p.excerpts,
            colour,
        ));
        text.push('\n');
    }
    let n = e.problems.len();
    let summary = format!(
        "invalid configuration {} ({n} problem{}{})",
        e.path,
        if n == 1 { "" } else { "s" },
        if n > MAX_DRAWN {
            format!("; the first {MAX_DRAWN} shown, `-o json` lists all")
        } else {
            String::new()
        }
    );
    text.push_str(
        &renderer(colour).render(&[Group::with_title(Level::ERROR.primary_title(summary))]),
    );
    text
}

/// A warning or note, drawn.
pub fn warning_text(path: &str, w: &Warning, colour: bool) -> String {
    let kind = if w.note { Kind::Note } else { Kind::Warning };
    let at = (w.line > 0).then_some((w.line, 0));
    draw(kind, path, &w.message, None, at, &w.excerpts, colour)
}

/// One message: its title, where it is, each excerpt with its mark, the help.
fn draw(
    kind: Kind,
    path: &str,
    message: &str,
    help: Option<&str>,
    at: Option<(usize, usize)>,
    excerpts: &[Excerpt],
    colour: bool,
) -> String {
    let level = match kind {
        Kind::Error => Level::ERROR,
        Kind::Warning => Level::WARNING,
        Kind::Note => Level::NOTE,
    };
    let mut group = Group::with_title(level.primary_title(message));
    if excerpts.is_empty() {
        // No line to show (a problem of the whole file, or of a file merged with metadata).
        group = group.element(match at {
            Some((line, column)) if column > 0 => Origin::path(path).line(line).char_column(column),
            Some((line, _)) => Origin::path(path).line(line),
            None => Origin::path(path),
        });
    }
    for x in excerpts {
        // Tabs drawn as one space each (annotate-snippets widens them, past the width): the
        // byte offsets of the line stay.
        let line = x.text().replace('\t', " ");
        group = group.element(
            Snippet::source(line)
                .path(path)
                .line_start(x.line)
                .annotation(
                    AnnotationKind::Primary
                        .span(x.mark.clone())
                        .label(x.label.as_deref()),
                ),
        );
    }
    if let Some(help) = help {
        group = group.element(Level::HELP.message(help));
    }
    renderer(colour).render(&[group])
}

fn renderer(colour: bool) -> Renderer {
    let r = if colour {
        Renderer::styled()
    } else {
        Renderer::plain()
    };
    r.term_width(WIDTH)
}
