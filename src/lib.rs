//! eniroute: source-based policy routing for every ENI and Elastic IP of a multi-NIC Linux host.
//!
//! Functional core, imperative shell. The layers, each importing only those above it in this
//! list (the import graph has no cycles):
//!
//! | layer | what it is | may import |
//! |---|---|---|
//! | `exit` | exit codes and the `ExitCode` trait every error type implements | nothing |
//! | `model` | plain values: validated config, EIP modes and their capabilities, the allocator of table ids and rule priorities (`model::layout`), kernel objects, changes | nothing |
//! | `config` | TOML -> validated `model::Config`, every problem with its line | model, exit |
//! | `plan` | pure: config + host links -> desired state | model |
//! | `reconcile`, `render` | pure: desired x observed -> ordered changes; desired -> `ip -batch` script or JSON | model, plan |
//! | `kernel` | the only module that talks to the kernel: the `Kernel` trait and its `Netlink` client (rtnetlink dumps, batches, lookups, events), procfs sysctls, namespaces, the sandbox's link building | model |
//! | `host` | eniroute's files under /run/eniroute: per-namespace state dir, saved sysctls (write-ahead, keyed by MAC), lock, the watch daemon's status file, sweeping dead namespaces' state | exit, model |
//! | `ops` | the shell: `apply_once`, `flush_once`, `status_once`, `plan_once` and the `watch` daemon (ops/watch) against any `Kernel` | all of the above |
//! | `doctor` | what on the host would fight eniroute (network managers, foreign rules, sysctls), as data; reads files below a root | model, plan, kernel, ops |
//! | `output` | every word printed: text, JSON, the wording of the shell's errors | all of the above |
//! | `cli` | clap definitions and the wiring of each verb | everything |
//! | `manual` | man pages and shell completions generated from the clap definitions and the config reference | config |
//! | `discover` | instance metadata -> a config (cloud providers behind one trait) | config, model, exit |
//! | `sandbox` | the config's VPC simulated in namespaces, proven with packets; an oracle for the planner, so it never calls `plan` | config, model, kernel, host, exit |
//!
//! How to add
//! - **an EIP mode**: a variant of `model::Mode`; the compiler then stops at every capability
//!   in `model/mode.rs` (each an exhaustive `match`): answer each. Validator, planner and
//!   sandbox ask capabilities, never compare modes; add a capability there when a new decision
//!   appears. Then the spelling in `Mode::as_str`, an example in configs/examples/ with its
//!   golden snapshot (tests/render_golden.rs), and the sandbox's checks come from the config.
//! - **a cloud provider for discover**: see the header of `discover` (one file implementing
//!   its `Provider` trait, registered in one place, with a mock server test serving only the
//!   cloud's documented formats).
//! - **a verb**: a variant of `cli::Command`; the work as an `ops::*_once` core written against
//!   `kernel::Kernel` (tested with the fake in ops/fake.rs) and a thin wrapper in `ops/mod.rs`
//!   that enters the namespace; its report's wording in `output` (JSON through
//!   `output::print_json`, which adds the envelope; its `command` name in `cli::verb`); its
//!   errors carry their exit code (`exit::ExitCode`). The man page and completions follow
//!   from the clap definition by themselves.
//! - **a config key**: its field in `config/raw.rs`, its entry in `config/reference.rs` (the
//!   source of eniroute.toml(5) and of "did you mean") and a line in README's Configuration
//!   section; `config::reference`'s tests fail until all three agree.
//! - **a kernel object kind**: its value in `model`, its messages in the kernel codec, its
//!   ownership in `Kernel::observe`, its changes in `model::Change` and `reconcile`.
pub mod cli;
pub mod config;
pub mod discover;
pub mod doctor;
pub mod exit;
pub mod host;
pub mod kernel;
pub mod manual;
pub mod model;
pub mod ops;
pub mod output;
pub mod plan;
pub mod reconcile;
pub mod render;
pub mod sandbox;
