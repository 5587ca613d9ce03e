//! Dagy runs DAG flows (tasks with dependencies, retries and timeouts) serverless on AWS. This
//! crate is the one dependency a project adds: write tasks, register them, and make each of the
//! project's binaries one call.
//!
//! ```
//! use dagy::{FlowBuilder, HandlerRegistry, TaskError};
//!
//! #[derive(serde::Deserialize)]
//! struct Args { x: f64 }
//!
//! /// Doubles `args.x`; retried twice when it fails.
//! #[dagy::task(retries = 2)]
//! async fn double(args: Args) -> Result<f64, TaskError> {
//!     Ok(args.x * 2.0)
//! }
//!
//! /// CPU-bound work is a plain `fn`: it runs on a blocking thread.
//! #[dagy::task(runtime_tier = "large", memory_mb = 4096)]
//! fn total(dagy::Upstream(up): dagy::Upstream<std::collections::HashMap<String, f64>>) -> Result<f64, TaskError> {
//!     Ok(up.values().sum())
//! }
//!
//! fn registry() -> HandlerRegistry {
//!     let mut registry = HandlerRegistry::new();
//!     registry.add(double).add(total); // registered as "double" and "total"
//!     registry.register("hello", |_ctx, _input| async { Ok("hello".into()) }); // a closure
//!     registry
//! }
//!
//! // The flow takes each handler's options as its task's defaults.
//! let flow = FlowBuilder::new("sums")
//!     .task_of("a", &double, |t| t.args(serde_json::json!({"x": 1.5})))
//!     .task_of("b", &double, |t| t.args(serde_json::json!({"x": 2})))
//!     .task_of("sum", &total, |t| t.depends_on(["a", "b"]))
//!     .build();
//! assert_eq!(flow.tasks[0].retries, 2);
//! # let outcome = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
//! #     .block_on(dagy::run_locally(&flow, registry())).unwrap();
//! # assert_eq!(outcome.tasks[2].output_value(), Some(serde_json::json!(7.0)));
//! ```
//!
//! Each binary of the project is one line:
//!
//! | binary | `main` |
//! |---|---|
//! | the `dagy` CLI over your handlers | `fn main() -> ExitCode { dagy::cli::main(registry()) }` |
//! | the router function | `fn main() -> Result<(), dagy::lambda::Error> { dagy::lambda::run_router(registry().catalog()) }` |
//! | the executor function | `fn main() -> Result<(), dagy::lambda::Error> { dagy::lambda::run_executor(registry()) }` |
//! | the task-executor function | `fn main() -> Result<(), dagy::lambda::Error> { dagy::lambda::run_task_executor(registry()) }` |
//! | the ECS worker | `fn main() -> ExitCode { dagy::worker::run(registry()) }` |
//!
//! `dagy::lambda` and `dagy::worker` come with the `aws` feature, which also gives the CLI
//! `--store dynamodb`, `deploy`, `trigger`, `status`, `cancel`, `logs` and `table`. Without it
//! nothing of the AWS SDK is built: local runs compile in a fraction of the time.
//!
//! # Writing tasks
//!
//! [`macro@task`] turns an `async fn` (or a plain `fn`, run on a blocking thread) into a handler.
//! Its arguments come from the task's input by type ([`task`](mod@task) lists them): any
//! `Deserialize` type is `input.args`; [`Parameters`], [`Upstream`], [`State`], [`TaskContext`]
//! and [`Input`] take the rest. It returns `Result<T, E>` with `T: Serialize`; any error
//! converts into a retryable [`TaskError`] (so `?` works), and [`ResultExt::permanent`] or
//! [`TaskError::permanent`] say that no retry can help. A wrong `args` shape fails the task
//! for good as `InvalidArgs`, naming the field.
//!
//! Options, each optional: `name` (default: the function's name), `runtime_tier`, `retries`,
//! `retry_delay_seconds` (a number or a list), `retry_jitter_factor`, `timeout_seconds`,
//! `memory_mb`. They are the defaults of every task built with [`FlowBuilder::task_of`], so the
//! per-task tier hint of tier resolution can come from the code.
//!
//! Shared state (an SDK client, a connection pool) is built once per process and handed to
//! every task: [`HandlerRegistry::state`] for a value, [`HandlerRegistry::state_with`] for one
//! built asynchronously on first use; a task takes it as a [`State<T>`] argument.

// The attribute's expansion names `::dagy`; this makes that path work inside the crate too.
extern crate self as dagy;

use std::sync::Arc;

/// A JSON value kept as text: a task's `args`, a task record's `output`.
pub use dagy_core::json::JsonText;
pub use dagy_core::{
    Catalog, Flow, FlowBuilder, FlowSpec, HandlerCatalog, HasDefaults, RetryDelay, RuntimeTier,
    TaskBuilder, TaskDefaults, TaskSpec,
};
pub use dagy_engine::{
    HandlerRegistry, Input, Parameters, ResultExt, State, Task, TaskContext, TaskError, TaskResult,
    Upstream,
};
/// Makes a function a task handler: `#[dagy::task(retries = 2)] async fn f(args: A) -> Result<T, TaskError>`.
/// See the [crate docs](crate#writing-tasks).
pub use dagy_macros::task;
/// The JSON values tasks take and return.
pub use serde_json;

/// Typed task arguments and outputs: what [`macro@task`] expands to.
pub mod task {
    pub use dagy_engine::task::*;
}

/// The pure core: flows, validation, tiers, plans, the Step Functions translation.
pub mod core {
    pub use dagy_core::*;
}

/// The engine: the executor behind every tier, for tests and custom hosts.
pub mod engine {
    pub use dagy_engine::*;
}

/// The run store: its trait, its records, the in-memory store.
pub mod store {
    pub use dagy_store::*;
}

/// The `dagy` command line.
pub mod cli {
    /// The whole `dagy` command (validate, plan, graph, asl, run; with the `aws` feature also
    /// deploy, trigger, status, cancel, logs, table) over `registry`'s handlers.
    ///
    /// ```no_run
    /// fn main() -> std::process::ExitCode {
    ///     let mut registry = dagy::HandlerRegistry::new();
    ///     registry.register("hello", |_ctx, _input| async { Ok("hello".into()) });
    ///     dagy::cli::main(registry)
    /// }
    /// ```
    pub fn main(registry: crate::HandlerRegistry) -> std::process::ExitCode {
        dagy_cli::main(registry)
    }
}

/// The Lambda functions (with the `aws` feature): each entry point serves invocations until
/// the runtime stops it.
#[cfg(feature = "aws")]
pub mod lambda {
    /// What an entry point fails with at start-up (a missing variable, a store it cannot reach).
    pub use lambda_runtime::Error;

    /// The router function. It checks flows against `catalog` (handler names; give it
    /// `registry().catalog()`), plus the `exec:` handlers of a handler manifest when it has one
    /// (`DAGY_HANDLERS_FILE`), and never runs a task.
    pub fn run_router(
        catalog: impl crate::HandlerCatalog + Send + Sync + 'static,
    ) -> Result<(), Error> {
        dagy_functions::entry::run_router(catalog)
    }

    /// The executor function (nano and micro tiers), over `registry`'s handlers.
    pub fn run_executor(registry: crate::HandlerRegistry) -> Result<(), Error> {
        dagy_functions::entry::run_executor(registry)
    }

    /// The task-executor function (Step Functions tasks), over `registry`'s handlers.
    pub fn run_task_executor(registry: crate::HandlerRegistry) -> Result<(), Error> {
        dagy_functions::entry::run_task_executor(registry)
    }
}

/// The ECS Fargate worker (with the `aws` feature).
#[cfg(feature = "aws")]
pub mod worker {
    /// Runs the run named by `DAGY_RUN_ID` over `registry`'s handlers; SIGTERM (a cancel) stops
    /// it at the next task boundary. Exit codes: 0 completed, 1 ended otherwise, 2 could not run.
    pub fn run(registry: crate::HandlerRegistry) -> std::process::ExitCode {
        dagy_worker::run(registry)
    }
}

/// Runs `flow` to its end in this process on an in-memory store, with `registry`'s handlers,
/// and returns the final run and tasks: for a project's tests.
pub async fn run_locally(
    flow: &FlowSpec,
    registry: HandlerRegistry,
) -> Result<dagy_store::RunSnapshot, RunLocallyError> {
    use dagy_store::RunStore;
    let flow = flow.clone().validate(Some(&registry))?;
    let store = Arc::new(dagy_store::MemoryStore::new());
    let executor = dagy_engine::Executor::new(store.clone(), Arc::new(registry));
    let run = executor
        .create_run(&flow, dagy_engine::NewRunRequest::default())
        .await?
        .run;
    executor
        .run(&run.run_id, &dagy_engine::RunOptions::default())
        .await?;
    Ok(store.load_run(&run.run_id).await?)
}

/// Why [`run_locally`] could not run a flow to its end.
#[derive(Debug, thiserror::Error)]
pub enum RunLocallyError {
    /// The flow is invalid (every problem is listed).
    #[error(transparent)]
    InvalidFlow(#[from] dagy_core::Error),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] dagy_engine::EngineError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] dagy_store::StoreError),
}
