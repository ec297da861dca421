//! eniroute: source-based policy routing for every ENI and Elastic IP of a multi-NIC Linux host.
//!
//! Functional core, imperative shell: `config` (TOML -> validated model), `plan` (model + host
//! links -> desired state), `reconcile` (desired x observed -> changes) are pure; `kernel` is the
//! only module that talks rtnetlink; `cli` wires the verbs.
pub mod cli;
pub mod config;
pub mod discover;
pub mod exit;
pub mod host;
pub mod kernel;
pub mod model;
pub mod ops;
pub mod output;
pub mod plan;
pub mod reconcile;
pub mod render;
pub mod sandbox;
