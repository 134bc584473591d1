//! The task states of PROTOCOL.md §2 (`progress` in the provider's task answers) and the rules
//! on them that more than one crate needs: the worker stores and schedules by them, the client
//! tells its user what to do next from them.
//!
//! ```
//! use sealtune_protocol::task::TaskState;
//! let s: TaskState = "Delivered".parse().unwrap();
//! assert!(s.is_delivered() && !s.is_pending());
//! ```

use std::str::FromStr;

/// A rule on states (`TaskState::is_pending`…): the one definition every user (Rust or SQL) takes.
pub type StatePredicate = fn(TaskState) -> bool;

/// The states of PROTOCOL.md §2, in order, plus `Failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum TaskState {
    /// Accepted, queued.
    Init,
    /// Fetching, counting, checking.
    SettingUp,
    /// Ready to train.
    SetUp,
    /// The script runs.
    Training,
    /// The script finished; the output waits to be sealed.
    Trained,
    /// Sealing, storing, announcing on chain.
    Delivering,
    /// On chain; waiting for the customer's acknowledgement.
    Delivered,
    /// Acknowledged; settlement in flight.
    UserAcknowledged,
    /// Settled.
    Finished,
    /// Failed (reason in `fail_reason` and the log).
    Failed,
}

impl TaskState {
    /// Every state.
    pub const ALL: [TaskState; 10] = [
        TaskState::Init,
        TaskState::SettingUp,
        TaskState::SetUp,
        TaskState::Training,
        TaskState::Trained,
        TaskState::Delivering,
        TaskState::Delivered,
        TaskState::UserAcknowledged,
        TaskState::Finished,
        TaskState::Failed,
    ];
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Init => "Init",
            TaskState::SettingUp => "SettingUp",
            TaskState::SetUp => "SetUp",
            TaskState::Training => "Training",
            TaskState::Trained => "Trained",
            TaskState::Delivering => "Delivering",
            TaskState::Delivered => "Delivered",
            TaskState::UserAcknowledged => "UserAcknowledged",
            TaskState::Finished => "Finished",
            TaskState::Failed => "Failed",
        }
    }
    /// Not yet settled or failed (a customer has at most one such task).
    pub fn is_unfinished(self) -> bool {
        !self.is_ended()
    }
    /// Settled or failed: nothing more happens but retention.
    pub fn is_ended(self) -> bool {
        matches!(self, TaskState::Finished | TaskState::Failed)
    }
    /// Queued or running in the training lane (counts toward `/v1/task/pending` and the queue
    /// limit).
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            TaskState::Init
                | TaskState::SettingUp
                | TaskState::SetUp
                | TaskState::Training
                | TaskState::Trained
                | TaskState::Delivering
        )
    }
    /// The customer may still cancel (training has not started).
    pub fn is_cancellable(self) -> bool {
        matches!(
            self,
            TaskState::Init | TaskState::SettingUp | TaskState::SetUp
        )
    }
    /// On chain and not settled yet: the settle lane's tasks.
    pub fn is_settling(self) -> bool {
        matches!(self, TaskState::Delivered | TaskState::UserAcknowledged)
    }
    /// The sealed model is on chain: the customer may download it.
    pub fn is_delivered(self) -> bool {
        self.is_settling() || self == TaskState::Finished
    }
    /// Sealed (or being sealed) under the TEE signer and not settled yet: a change of signer
    /// concerns these tasks.
    pub fn is_sealed_unsettled(self) -> bool {
        self == TaskState::Delivering || self.is_settling()
    }
    /// The states for which `pred` holds, in order.
    pub fn matching(pred: StatePredicate) -> Vec<TaskState> {
        TaskState::ALL.into_iter().filter(|s| pred(*s)).collect()
    }
}

/// A `progress` text that names no state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown task state `{0}`")]
pub struct UnknownState(pub String);

impl FromStr for TaskState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, UnknownState> {
        TaskState::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for s in TaskState::ALL {
            assert_eq!(s.as_str().parse::<TaskState>(), Ok(s));
        }
        assert_eq!(
            "delivered".parse::<TaskState>(),
            Err(UnknownState("delivered".into()))
        );
    }

    #[test]
    fn every_state_is_pending_delivered_or_ended_but_one() {
        for s in TaskState::ALL {
            let groups = [s.is_pending(), s.is_delivered(), s.is_ended()];
            let n = groups.iter().filter(|g| **g).count();
            // Finished is both delivered and ended; every other state is in exactly one group.
            assert_eq!(n, if s == TaskState::Finished { 2 } else { 1 }, "{s}");
        }
    }
}
