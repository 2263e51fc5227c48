//! The rollout itself: plan, per-VM state machine, scheduler, IP selection, verification.
//! Emits `Event`s, takes `Command`s; knows no terminal.

pub mod event;
pub mod ip;
