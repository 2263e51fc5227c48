//! A VM's state as the screen shows it: the phase it works in, or a side state. The theme, the
//! keymap and the model all point down to it.

use crate::engine::event::{Phase, VmState};

/// A VM's state as the screen shows it: the phase it works in, or a side state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateKind {
    Queued,
    Cloning,
    Configuring,
    Booting,
    AwaitingAgent,
    AwaitingIp,
    IpFound,
    Verifying,
    /// The `on_verified` hook runs.
    Provisioning,
    Verified,
    Paused,
    Failed,
    /// Verified, but its `on_verified` hook failed.
    HookFailed,
    Skipped,
    Aborted,
}

impl StateKind {
    pub const COUNT: usize = 15;
    pub const ALL: [StateKind; StateKind::COUNT] = [
        StateKind::Queued,
        StateKind::Cloning,
        StateKind::Configuring,
        StateKind::Booting,
        StateKind::AwaitingAgent,
        StateKind::AwaitingIp,
        StateKind::IpFound,
        StateKind::Verifying,
        StateKind::Provisioning,
        StateKind::Verified,
        StateKind::Paused,
        StateKind::Failed,
        StateKind::HookFailed,
        StateKind::Skipped,
        StateKind::Aborted,
    ];

    pub fn of(state: &VmState) -> Self {
        match state {
            VmState::Active { phase } => Self::of_phase(*phase),
            VmState::Paused { .. } => StateKind::Paused,
            VmState::Failed { .. } => StateKind::Failed,
            VmState::Skipped { .. } => StateKind::Skipped,
            VmState::Aborted { .. } => StateKind::Aborted,
            VmState::HookFailed { .. } => StateKind::HookFailed,
        }
    }

    pub fn of_phase(phase: Phase) -> Self {
        match phase {
            Phase::Queued => StateKind::Queued,
            Phase::Cloning => StateKind::Cloning,
            Phase::Configuring => StateKind::Configuring,
            Phase::Booting => StateKind::Booting,
            Phase::AwaitingAgent => StateKind::AwaitingAgent,
            Phase::AwaitingIp => StateKind::AwaitingIp,
            Phase::IpFound => StateKind::IpFound,
            Phase::Verifying => StateKind::Verifying,
            Phase::Provisioning => StateKind::Provisioning,
            Phase::Verified => StateKind::Verified,
        }
    }

    /// The word shown for it (`Phase::as_str` for phases: `IP-found` keeps the mission's spelling).
    pub fn label(self) -> &'static str {
        match self {
            StateKind::Queued => Phase::Queued.as_str(),
            StateKind::Cloning => Phase::Cloning.as_str(),
            StateKind::Configuring => Phase::Configuring.as_str(),
            StateKind::Booting => Phase::Booting.as_str(),
            StateKind::AwaitingAgent => Phase::AwaitingAgent.as_str(),
            StateKind::AwaitingIp => Phase::AwaitingIp.as_str(),
            StateKind::IpFound => Phase::IpFound.as_str(),
            StateKind::Verifying => Phase::Verifying.as_str(),
            StateKind::Provisioning => Phase::Provisioning.as_str(),
            StateKind::Verified => Phase::Verified.as_str(),
            StateKind::Paused => "paused",
            StateKind::Failed => "failed",
            StateKind::HookFailed => "hook-failed",
            StateKind::Skipped => "skipped",
            StateKind::Aborted => "aborted",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Working on something right now (the spinner turns).
    pub fn is_busy(self) -> bool {
        matches!(
            self,
            StateKind::Cloning
                | StateKind::Configuring
                | StateKind::Booting
                | StateKind::AwaitingAgent
                | StateKind::AwaitingIp
                | StateKind::IpFound
                | StateKind::Verifying
                | StateKind::Provisioning
        )
    }

    /// Nothing more happens without a command.
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            StateKind::Verified
                | StateKind::Failed
                | StateKind::HookFailed
                | StateKind::Skipped
                | StateKind::Aborted
        )
    }
}

/// The phase of a busy (or verified/queued) kind.
pub fn phase_of(kind: StateKind) -> Phase {
    match kind {
        StateKind::Cloning => Phase::Cloning,
        StateKind::Configuring => Phase::Configuring,
        StateKind::Booting => Phase::Booting,
        StateKind::AwaitingAgent => Phase::AwaitingAgent,
        StateKind::AwaitingIp => Phase::AwaitingIp,
        StateKind::IpFound => Phase::IpFound,
        StateKind::Verifying => Phase::Verifying,
        StateKind::Provisioning => Phase::Provisioning,
        StateKind::Verified => Phase::Verified,
        _ => Phase::Queued,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_words_are_the_missions() {
        let words: Vec<&str> = [
            StateKind::Cloning,
            StateKind::Booting,
            StateKind::AwaitingAgent,
            StateKind::IpFound,
            StateKind::Verified,
        ]
        .iter()
        .map(|k| k.label())
        .collect();
        assert_eq!(
            words,
            [
                "cloning",
                "booting",
                "awaiting-agent",
                "IP-found",
                "verified"
            ]
        );
        for (i, kind) in StateKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
    }
}
