//! eniroute: source-based policy routing for every ENI and Elastic IP of a multi-NIC Linux host.
pub mod cli;
pub mod config;
pub mod discover;
pub mod kernel;
pub mod plan;
pub mod render;
