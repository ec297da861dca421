//! Unknown keys, all of them at once, each with its line and a "did you mean" (strsim) from
//! the keys the config reference documents for its table. Runs before serde, which would stop
//! at the first one. Imports only `reference` of the crate.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::reference::{child_name, KEYS, TABLES};

/// An unknown key: where it is (byte span of the key) and what to say.
pub(super) struct Unknown {
    pub(super) span: std::ops::Range<usize>,
    pub(super) message: String,
}

/// Every key of `text` that no table of the reference has. None when the text is not TOML
/// (serde then reports the syntax error).
pub(super) fn unknown_keys(text: &str) -> Option<Vec<Unknown>> {
    let root = DeTable::parse(text).ok()?;
    let mut found = Vec::new();
    walk(root.get_ref(), "", &mut found);
    found.sort_by_key(|u| u.span.start);
    Some(found)
}

fn walk(table: &DeTable<'_>, path: &str, found: &mut Vec<Unknown>) {
    for (key, value) in table {
        let name: &str = key.get_ref();
        let child = if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        };
        if TABLES.iter().any(|(t, _)| *t == child) {
            for t in tables_in(value) {
                walk(t, &child, found);
            }
        } else if !KEYS.iter().any(|k| k.table == path && k.key == name) {
            found.push(Unknown {
                span: key.span(),
                message: message(path, name),
            });
        }
    }
}

/// A table, or each table of an array of tables.
fn tables_in<'a, 'i>(value: &'a Spanned<DeValue<'i>>) -> Vec<&'a DeTable<'i>> {
    match value.get_ref() {
        DeValue::Table(t) => vec![t],
        DeValue::Array(items) => items
            .iter()
            .filter_map(|i| match i.get_ref() {
                DeValue::Table(t) => Some(t),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn message(path: &str, name: &str) -> String {
    let known: Vec<&str> = KEYS
        .iter()
        .filter(|k| k.table == path)
        .map(|k| k.key)
        .chain(TABLES.iter().filter_map(|(t, _)| child_name(t, path)))
        .collect();
    let shown: String = name.chars().take(40).collect();
    let table = match path {
        "" => "at the top level".to_string(),
        "eni" | "eni.eip" | "egress.via" | "containers.egress" => format!("in [[{path}]]"),
        p => format!("in [{p}]"),
    };
    match closest(name, known.iter().copied()) {
        Some(k) => format!("unknown field `{shown}` {table}; did you mean `{k}`?"),
        None => format!(
            "unknown field `{shown}` {table}; the keys here are: {}",
            known.join(", ")
        ),
    }
}

/// The known name closest to `given` ("did you mean"): at most 2 edits, or a third of its
/// length for long names; the nearest, then the first in order, when several are.
pub(super) fn closest<'a>(
    given: &str,
    known: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (strsim::damerau_levenshtein(given, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min()
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::unknown_keys;

    #[test]
    fn every_unknown_key_at_once_with_a_suggestion() {
        let text = "regoin = \"x\"\n[[eni]]\nname = \"a\"\ncdir = \"10.0.0.0/24\"\ngatway = \"10.0.0.1\"\n\
                    [[eni.eip]]\naddress = \"1.2.3.4\"\nzzzzzzzz = 1\n";
        let found = unknown_keys(text).expect("TOML");
        let msgs: Vec<&str> = found.iter().map(|u| u.message.as_str()).collect();
        assert_eq!(msgs.len(), 4, "{msgs:#?}");
        assert!(msgs[0].contains("`regoin` at the top level; did you mean `region`?"));
        assert!(
            msgs[1].contains("`cdir` in [[eni]]; did you mean `cidr`?"),
            "{}",
            msgs[1]
        );
        assert!(msgs[2].contains("did you mean `gateway`?"));
        assert!(
            msgs[3].contains("the keys here are: address, id, private_ip"),
            "{}",
            msgs[3]
        );
    }

    #[test]
    fn documented_keys_and_tables_are_known() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/configs/examples/demo.toml"
        ))
        .expect("demo.toml");
        assert!(unknown_keys(&text).expect("TOML").is_empty());
    }
}
