//! The engine's one error type.

use dagy_store::StoreError;

/// Why the executor could not carry a run on. Task failures are not errors: they are recorded
/// on the run. These are the cases where the executor itself must stop.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// The store refused or failed an operation the executor cannot do without.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored flow is not valid (it was written by something other than Dagy's router).
    #[error("run {run_id} holds a flow that is not valid: {message}")]
    InvalidStoredFlow {
        /// The run.
        run_id: String,
        /// The validation error.
        message: String,
    },
    /// The store holds a task the flow does not have, or misses one it has.
    #[error("run {run_id}: its task records do not match its flow ({message})")]
    CorruptRun {
        /// The run.
        run_id: String,
        /// What does not match.
        message: String,
    },
}
