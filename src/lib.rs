//! pve-rollout: roll out fleets of VMs on Proxmox VE and prove each one healthy.
//!
//! Layers (arrows point down only): `main -> {ui, headless} -> engine -> pve`; `report` is used by
//! engine, ui and headless; `sim` is a black box that only speaks HTTP and imports none of them.

pub mod config;
pub mod demo;
pub mod engine;
pub mod headless;
pub mod onboard;
pub mod pve;
pub mod report;
pub mod sim;
pub mod ui;
