//! Getting started: `init` writes a deploy.toml from what a cluster has, `import-tf` from the
//! original Terraform/OpenTofu setup. Both fill a [`Draft`] and render it the same way.

pub mod discover;
pub mod draft;
mod hcl_value;
pub mod terraform;

pub use draft::{Draft, VmDraft};
