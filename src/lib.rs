//! pve-rollout: roll out fleets of VMs on Proxmox VE and prove each one healthy.
//!
//! Layers (arrows point down only): `main -> {ui, headless} -> engine -> pve`; `report` is used by
//! engine, ui and headless; `sim` is a black box that only speaks HTTP and imports none of them.
//! `config` reads deploy.toml and builds the client's settings; `demo` points the same config and
//! client at the simulator; `testing` is test support (hidden from the docs). The subcommands
//! live in the binary (`src/cli/`).

pub mod config;
pub mod demo;
pub mod engine;
pub mod headless;
pub mod onboard;
pub mod pve;
pub mod report;
pub mod sim;
#[doc(hidden)]
pub mod testing;
pub mod ui;
