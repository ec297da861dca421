//! Config fuzzing (issue #10): random mutations of every bundled example — bytes flipped,
//! inserted and deleted, lines dropped, duplicated and swapped, values replaced by hostile
//! ones — go through validation, and those that validate through the planner and render.
//! Nothing may panic. Inputs are bounded (at most a few KiB over the example), so each run is
//! bounded in time and memory. `PROPTEST_CASES=N` runs longer (default 512 per property).

use std::path::Path;

use proptest::prelude::*;

fn examples() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/examples");
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    v.sort();
    v
}

/// Values an attacker or a typo might put anywhere.
const HOSTILE: &[&str] = &[
    "\"\"",
    "\"0.0.0.0/0\"",
    "\"::/0\"",
    "\"255.255.255.255\"",
    "-1",
    "4294967296",
    "99999999999999999999",
    "1e308",
    "nan",
    "true",
    "[]",
    "[[]]",
    "{}",
    "\"\\u0000\"",
    "\"eth0/../..\"",
    "\"ff:ff:ff:ff:ff:ff\"",
    "\"fe80::1%eth0\"",
    "\"10.0.0.1/33\"",
    "\"::ffff:10.0.0.1\"",
    "\"multi-eip\"",
    "\"cut-through\"",
    "0",
    "65535",
    "\"x\"",
];

#[derive(Debug, Clone)]
enum Mutation {
    FlipByte(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    DropLine(usize),
    DupLine(usize),
    SwapLines(usize, usize),
    Hostile(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::FlipByte(i, b)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<usize>().prop_map(Mutation::DropLine),
        any::<usize>().prop_map(Mutation::DupLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(l, h)| Mutation::Hostile(l, h)),
    ]
}

fn apply(text: &str, m: &Mutation) -> Vec<u8> {
    let mut b = text.as_bytes().to_vec();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let n = lines.len().max(1);
    match m {
        Mutation::FlipByte(i, x) if !b.is_empty() => {
            let i = i % b.len();
            b[i] ^= x | 1;
            return b;
        }
        Mutation::Insert(i, x) => {
            let i = i % (b.len() + 1);
            b.splice(i..i, x.iter().copied());
            return b;
        }
        Mutation::Delete(i, k) if !b.is_empty() => {
            let i = i % b.len();
            b.drain(i..(i + k).min(b.len()));
            return b;
        }
        Mutation::DropLine(i) if !lines.is_empty() => {
            lines.remove(i % n);
        }
        Mutation::DupLine(i) if !lines.is_empty() => {
            let l = lines[i % n].clone();
            lines.insert(i % n, l);
        }
        Mutation::SwapLines(a, c) if !lines.is_empty() => lines.swap(a % n, c % n),
        Mutation::Hostile(l, h) if !lines.is_empty() => {
            let line = &mut lines[l % n];
            if let Some((key, _)) = line.split_once('=') {
                *line = format!("{key}= {}", HOSTILE[h % HOSTILE.len()]);
            }
        }
        _ => {}
    }
    lines.join("\n").into_bytes()
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(512),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// No mutation of any example makes validation, planning or rendering panic; a file that
    /// is not UTF-8 is rejected with a position, as the file loader does.
    #[test]
    fn mutated_examples_never_panic(
        which in any::<usize>(),
        muts in proptest::collection::vec(mutation(), 1..6),
    ) {
        let all = examples();
        let mut text = all[which % all.len()].clone().into_bytes();
        for m in &muts {
            text = apply(&String::from_utf8_lossy(&text), m);
        }
        let Ok(s) = std::str::from_utf8(&text) else {
            return Ok(());
        };
        match eniroute::config::load_str(s, "fuzz.toml") {
            Ok(loaded) => {
                let d = eniroute::plan::desired(&loaded.config, None);
                let _ = eniroute::render::ip_script(&d);
                let _ = eniroute::render::json(&d);
                for w in &loaded.warnings {
                    let _ = eniroute::output::warning_text("fuzz.toml", w, true);
                }
            }
            // The problems drawn with their lines, carets on any span of any input.
            Err(e) => {
                let drawn = eniroute::output::config_error_text(&e, false);
                prop_assert!(drawn.contains("invalid configuration fuzz.toml"), "{drawn}");
            }
        }
    }
}

#[test]
fn hostile_values_in_every_key_of_every_example_are_errors_or_valid_never_panics() {
    let mut inputs = 0;
    for text in examples() {
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some((key, _)) = line.split_once('=') else {
                continue;
            };
            for h in HOSTILE {
                let mut l = lines.clone();
                let new = format!("{key}= {h}");
                l[i] = &new;
                if let Err(e) = eniroute::config::load_str(&l.join("\n"), "hostile.toml") {
                    let _ = eniroute::output::config_error_text(&e, false);
                }
                inputs += 1;
            }
        }
    }
    assert!(inputs > 1000, "{inputs} inputs");
}
