//! Golden tests: `render --format ip` of every example, reviewed line by line against
//! DESIGN §4 when accepted. A change to the planner shows up here as a snapshot diff.

use std::path::Path;

fn render(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("configs/examples")
        .join(name);
    let loaded = eniroute::config::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
    eniroute::render::ip_script(&eniroute::plan::desired(&loaded.config, None))
}

macro_rules! golden {
    ($test:ident, $file:literal) => {
        #[test]
        fn $test() {
            insta::assert_snapshot!(stringify!($test), render($file));
        }
    };
}

golden!(nat_secondary, "nat-secondary.toml");
golden!(cut_through, "cut-through.toml");
golden!(multi_eip, "multi-eip.toml");
golden!(egress_balance, "egress-balance.toml");
golden!(egress_failover, "egress-failover.toml");
golden!(ipv6, "ipv6.toml");
golden!(demo, "demo.toml");
golden!(containers, "containers.toml");

/// The JSON rendering carries the same objects.
#[test]
fn json_matches_ip_script() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/examples/egress-balance.toml");
    let loaded = eniroute::config::load_file(&path).unwrap();
    let d = eniroute::plan::desired(&loaded.config, None);
    let j: serde_json::Value = serde_json::from_str(&eniroute::render::json(&d)).unwrap();
    assert_eq!(j["rules"].as_array().unwrap().len(), d.rules.len());
    assert_eq!(j["routes"].as_array().unwrap().len(), d.routes.len());
    assert_eq!(j["protocol"], 225);
    assert_eq!(j["routes"][0]["table"], 20001);
}
