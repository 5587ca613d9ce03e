//! Dagy's Lambda functions, as library code the thin binaries call:
//!
//! - [`router::Router`]: API Gateway HTTP API routes, EventBridge schedules, direct actions and
//!   the sweep. It writes the run and dispatches it; it never runs a flow.
//! - [`executor_fn`]: the executor function of the nano and micro tiers.
//! - [`task_executor`]: the task-executor function, one task of a Step Functions execution per
//!   invocation, and the execution's end.
//! - [`entry`]: the entry points a function's `main` calls ([`entry::run_router`],
//!   [`entry::run_executor`], [`entry::run_task_executor`]).
//! - [`dispatch`]: how a run reaches its backend ([`dispatch::LambdaDispatcher`] invokes the
//!   executor asynchronously).
//!
//! The binaries (`dagy-router`, `dagy-executor`, `dagy-task-executor`) read their configuration from the environment
//! (`DAGY_TABLE_NAME`, `DAGY_EXECUTOR_FUNCTION`, the backend variables) and the AWS SDK's
//! standard variables, so under a local emulator they talk to local servers through
//! `AWS_ENDPOINT_URL*` with no code of their own for it.

pub mod dispatch;
pub mod entry;
pub mod executor_fn;
pub mod http;
pub mod router;
pub mod task_executor;

use dagy_core::BackendKind;

/// What a function invocation can fail with (a client's bad input is an HTTP answer, not this).
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    /// A variable is missing or unusable (`dagy_core::Error::Config` names it and what to set).
    #[error(transparent)]
    Settings(#[from] dagy_core::Error),
    /// The backend cannot be reached by this deployment.
    #[error("backend {0} cannot start runs from this function")]
    BackendUnavailable(BackendKind),
    /// The run's backend keeps no log Dagy can read.
    #[error(
        "runs on {0} keep no log Dagy can read; see the function's CloudWatch log group (ECS Fargate runs have GET /runs/{{id}}/logs)"
    )]
    LogsUnavailable(BackendKind),
    /// Invoking the next executor failed.
    #[error("dispatch failed: {0}")]
    Dispatch(String),
    /// The event was sent to the wrong function.
    #[error("{0}")]
    WrongFunction(String),
    /// The run store failed.
    #[error(transparent)]
    Store(#[from] dagy_store::StoreError),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] dagy_engine::EngineError),
}
