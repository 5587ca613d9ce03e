//! The executor function: nano runs to the end in one invocation; micro runs one task and
//! hands the run to a fresh invocation of itself.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use dagy_core::{BackendKind, ExecutionMode};
use dagy_engine::{Budget, Executor, RunOptions, StepOutcome};
use dagy_store::now_ms;

use crate::FunctionError;
use crate::dispatch::Dispatcher;

/// Time kept back from the invocation's deadline to record state before Lambda stops it.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(10);

/// When this invocation must stop working: its deadline less [`DEADLINE_MARGIN`]. A deadline
/// that has already passed when the invocation starts cannot be Lambda's (some emulators send
/// the timeout's length instead of an epoch time): it is ignored with a warning, and the tier
/// budget alone bounds the work.
pub fn invocation_deadline(deadline_ms: u64, now_ms: u64) -> Option<tokio::time::Instant> {
    if deadline_ms <= now_ms {
        tracing::warn!(
            deadline_ms,
            now_ms,
            "the invocation's deadline is already past; ignoring it"
        );
        return None;
    }
    let remaining = Duration::from_millis(deadline_ms - now_ms);
    Some(tokio::time::Instant::now() + remaining.saturating_sub(DEADLINE_MARGIN))
}

/// The executor's event: which run to work on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorEvent {
    /// The run.
    pub run_id: String,
}

/// Runs the executor's part of a run and says what it did.
pub async fn handle(
    executor: &Executor,
    dispatcher: &Arc<dyn Dispatcher>,
    event: ExecutorEvent,
    deadline_ms: u64,
) -> Result<Value, FunctionError> {
    let run = executor.store().get_run(&event.run_id).await?;
    let mode = run
        .plan
        .as_ref()
        .map_or(ExecutionMode::WholeFlow, |p| p.mode);
    let options = RunOptions {
        budget: Budget::for_mode(mode),
        deadline: invocation_deadline(deadline_ms, now_ms()),
        ..RunOptions::default()
    };
    let outcome = match mode {
        ExecutionMode::WholeFlow => executor.run(&event.run_id, &options).await?,
        ExecutionMode::TaskPerInvocation => executor.step(&event.run_id, &options).await?,
        other => {
            return Err(FunctionError::WrongFunction(format!(
                "run {} executes as {other:?}, not on the executor function",
                event.run_id
            )));
        }
    };
    let answer = match &outcome {
        StepOutcome::Continue { ran, status } => {
            dispatcher
                .dispatch(BackendKind::Lambda, &event.run_id)
                .await?;
            json!({"run_id": event.run_id, "outcome": "continue", "ran": ran, "task_status": status})
        }
        StepOutcome::Finished(status) => {
            json!({"run_id": event.run_id, "outcome": "finished", "status": status})
        }
        StepOutcome::Busy { owner, .. } => {
            json!({"run_id": event.run_id, "outcome": "busy", "held_by": owner})
        }
        StepOutcome::Superseded => json!({"run_id": event.run_id, "outcome": "superseded"}),
    };
    tracing::info!(
        run_id = event.run_id,
        outcome = answer["outcome"].as_str().unwrap_or_default(),
        "executor invocation done"
    );
    Ok(answer)
}
