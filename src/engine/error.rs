//! Typed errors of the engine. A VM's failure is not an `EngineError`: it stays local to the VM
//! (its state becomes `Failed` with a reason); these are the errors that stop a whole rollout.

use crate::pve::PveError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Talking to Proxmox failed before the rollout could start (connection, TLS, auth).
    #[error("{0}")]
    Api(#[from] PveError),
    /// Preflight found problems; nothing was created.
    #[error("preflight found {} problem(s), nothing was created:\n{}", .0.len(), bullet_list(.0))]
    Preflight(Vec<String>),
    /// The journal of an earlier run cannot be read (or this run's cannot be written).
    #[error(transparent)]
    Journal(#[from] super::journal::JournalError),
    /// Writing the summary files failed.
    #[error("writing the outputs to {dir}: {source}")]
    Output {
        dir: String,
        #[source]
        source: std::io::Error,
    },
}

impl EngineError {
    /// The process exit code: 3 = cannot reach/authenticate or preflight failed, 1 = the outputs
    /// could not be written.
    pub fn exit_code(&self) -> i32 {
        match self {
            EngineError::Api(_) | EngineError::Preflight(_) | EngineError::Journal(_) => 3,
            EngineError::Output { .. } => 1,
        }
    }
}

fn bullet_list(items: &[String]) -> String {
    items
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}
