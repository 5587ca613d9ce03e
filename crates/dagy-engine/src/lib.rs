//! Dagy's local executor: the engine behind the nano and micro tiers and inside the ECS worker.
//!
//! It runs a flow's tasks one at a time in topological order (the seed: no parallel tasks on
//! these backends), writing every transition through a [`RunStore`](dagy_store::RunStore)
//! before the next step starts, so a crash loses at most the task in flight and a restart
//! resumes from the last recorded task.
//!
//! ```
//! use std::sync::Arc;
//! use dagy_core::Flow;
//! use dagy_engine::{Executor, HandlerRegistry, NewRunRequest, RunOptions, StepOutcome};
//! use dagy_store::{MemoryStore, RunStatus};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let mut registry = HandlerRegistry::new();
//! registry.register("echo", |_ctx, input| async move { Ok(input) });
//! let flow = Flow::from_json(r#"{"spec_version": 1, "name": "hello",
//!     "tasks": [{"id": "hi", "handler": "echo", "args": "hello"}]}"#, Some(&registry))?;
//! let executor = Executor::new(Arc::new(MemoryStore::new()), Arc::new(registry));
//! let run = executor.create_run(&flow, NewRunRequest::default()).await?.run;
//! let outcome = executor.run(&run.run_id, &RunOptions::default()).await?;
//! assert_eq!(outcome, StepOutcome::Finished(RunStatus::Completed));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! - [`registry`]: handlers by name ([`HandlerRegistry`], [`TaskContext`], [`TaskError`]) and
//!   the state they share.
//! - [`task`]: typed handlers: arguments taken from the input by type, outputs serialized.
//! - [`executor`]: [`Executor::run`] (to the end, or resume), [`Executor::step`] (one task).
//! - [`state_machine`]: one task of a Step Functions execution
//!   ([`Executor::run_state_machine_task`]) and the execution's end
//!   ([`Executor::end_state_machine_run`]).
//! - [`retry`]: delays and jitter.
//! - [`events`]: progress for displays and logs.

mod error;
pub mod events;
pub mod executor;
pub mod registry;
pub mod retry;
pub mod state_machine;
pub mod task;
mod task_state;

pub use error::EngineError;
pub use events::{Event, Observer, TracingObserver};
pub use executor::{
    Budget, Executor, MAX_INTERRUPTIONS, NewRunRequest, ROUTER_OWNER, RunEnd, RunOptions,
    SWEEP_OWNER, StepOutcome, new_run_id,
};
pub use registry::{HandlerRegistry, LambdaInvoker, ResultExt, TaskContext, TaskError, TaskResult};
pub use state_machine::{STATE_MACHINE_OWNER, StateMachineEnd, TaskInvocation};
pub use task::{FromTaskInput, Input, IntoTaskOutput, Parameters, State, Task, Upstream};
