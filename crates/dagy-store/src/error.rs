//! The store's one error type.

use crate::record::{RunStatus, TaskStatus};

/// Why a store operation did not happen. Conditional-write failures are ordinary outcomes the
/// executor acts on; only [`StoreError::Unavailable`] means the store could not be reached.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// No run has this id.
    #[error("run {run_id} not found")]
    NotFound {
        /// The id asked for.
        run_id: String,
    },
    /// Another executor holds the run.
    #[error(
        "run {run_id} is held by {owner} until {expires_at_ms} ms; it is being executed elsewhere"
    )]
    LeaseHeld {
        /// The run.
        run_id: String,
        /// The executor that holds it.
        owner: String,
        /// When its lease lapses unless renewed.
        expires_at_ms: u64,
    },
    /// This executor's lease was taken over; it must stop without writing.
    #[error("the lease on run {run_id} was taken over by another executor; this one stops")]
    LeaseLost {
        /// The run.
        run_id: String,
    },
    /// A cancel was requested for the run.
    #[error("run {run_id} was asked to cancel")]
    CancelRequested {
        /// The run.
        run_id: String,
    },
    /// The run is already in a final state.
    #[error("run {run_id} already finished as {status}")]
    RunFinished {
        /// The run.
        run_id: String,
        /// Its final status.
        status: RunStatus,
    },
    /// The task is not in the state the write expected (it ran elsewhere, or finished).
    #[error(
        "task {task_id} of run {run_id} is {status} (attempt {attempts}), not what this write expected"
    )]
    TaskConflict {
        /// The run.
        run_id: String,
        /// The task.
        task_id: String,
        /// Its status now.
        status: TaskStatus,
        /// Its attempts now.
        attempts: u32,
    },
    /// The run has no task of this id.
    #[error("run {run_id} has no task {task_id}")]
    UnknownTask {
        /// The run.
        run_id: String,
        /// The task id asked for.
        task_id: String,
    },
    /// A value is over the store's size limit; nothing was written.
    #[error("{what} is {bytes} bytes, over the store's limit of {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: String,
        /// Its size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// A value nests deeper than a store can read back; nothing was written.
    #[error("{what} nests {depth} levels deep, over the store's limit of {limit} levels")]
    TooDeep {
        /// What was too deep.
        what: String,
        /// Its depth.
        depth: usize,
        /// The limit.
        limit: usize,
    },
    /// A stored item cannot be read back (written by another version, or edited by hand).
    #[error("a stored item cannot be read: {0}")]
    Corrupt(String),
    /// The request itself is wrong (a new run that is not pending, for instance).
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// The store could not be reached or failed; retrying later may work.
    #[error("the run store is unavailable: {0}")]
    Unavailable(String),
}
