//! The task-executor function: the Lambda that every Task state of a Dagy state machine calls
//! (its ARN is `DAGY_SFN_TASK_EXECUTOR_ARN`).
//!
//! - `{"run_id", "task_id"}` runs one attempt of the task, reading its upstream outputs from the
//!   store and writing its own there. It answers `{"run_id", "task_id", "status": "completed"}`,
//!   or fails with an error type the state's `Retry` and `Catch` match:
//!   [`ATTEMPT_FAILED_ERROR`] (the attempt failed; retried by the task's retrier),
//!   [`TASK_FAILED_ERROR`] (failed for good; never retried) or [`RUN_STOPPED_ERROR`] (the run
//!   was cancelled or has ended; never retried).
//! - `{"action": "record_failure", "run_id", "error": {"Error", "Cause"}}`, from
//!   `HandleTaskFailure`, ends the run failed (or cancelled, when a cancel was asked for).
//! - `{"action": "record_success", "run_id"}`, from `RecordSuccess`, ends it completed.

use serde::Deserialize;
use serde_json::{Value, json};

use dagy_core::asl::{ATTEMPT_FAILED_ERROR, RUN_STOPPED_ERROR, TASK_FAILED_ERROR};
use dagy_engine::{Executor, RunOptions, StateMachineEnd, TaskInvocation};

use crate::executor_fn::invocation_deadline;

/// The error type of an event the task-executor cannot read.
pub const BAD_EVENT_ERROR: &str = "DagyBadEvent";
/// The error type when the store or the engine failed (Step Functions may retry it).
pub const EXECUTOR_ERROR: &str = "DagyExecutorError";

/// The task-executor's event, as the state machine sends it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskExecutorEvent {
    /// The run (the execution's input).
    pub run_id: String,
    /// The task to run; absent for the actions.
    #[serde(default)]
    pub task_id: Option<String>,
    /// `record_failure` or `record_success`; absent to run a task.
    #[serde(default)]
    pub action: Option<String>,
    /// What the failing state's `Catch` caught (`record_failure` only).
    #[serde(default)]
    pub error: Option<CaughtError>,
}

/// A Step Functions error as a `Catch` with `ResultPath` passes it on.
#[derive(Debug, Clone, Deserialize)]
pub struct CaughtError {
    /// The error name.
    #[serde(rename = "Error")]
    pub error: String,
    /// Its cause; Step Functions leaves it out for some errors.
    #[serde(rename = "Cause", default)]
    pub cause: Option<String>,
}

/// What the task-executor was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskRequest {
    /// Run one attempt of a task.
    RunTask {
        /// The run.
        run_id: String,
        /// The task.
        task_id: String,
    },
    /// End the run as the execution ended.
    End {
        /// The run.
        run_id: String,
        /// How.
        end: StateMachineEnd,
    },
}

/// A task-executor failure: what Lambda reports as the function error, and so what a `Retry`
/// or `Catch` sees as `Error` (the type) and inside `Cause` (the message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct TaskFailure {
    /// The error type.
    pub error_type: &'static str,
    /// What happened.
    pub message: String,
}

impl TaskFailure {
    fn new(error_type: &'static str, message: impl Into<String>) -> Self {
        TaskFailure {
            error_type,
            message: message.into(),
        }
    }
}

/// Reads an event: a task to run, or an action. Every mistake is named.
pub fn parse_event(payload: Value) -> Result<TaskRequest, TaskFailure> {
    let usage = "the task-executor takes {\"run_id\", \"task_id\"}, {\"action\": \"record_failure\", \
                 \"run_id\", \"error\": {\"Error\", \"Cause\"}} or {\"action\": \"record_success\", \"run_id\"}";
    let event: TaskExecutorEvent = serde_json::from_value(payload)
        .map_err(|e| TaskFailure::new(BAD_EVENT_ERROR, format!("{e}; {usage}")))?;
    let run_id = event.run_id;
    match (event.action.as_deref(), event.task_id, event.error) {
        (None, Some(task_id), None) => Ok(TaskRequest::RunTask { run_id, task_id }),
        (None, None, _) => Err(TaskFailure::new(
            BAD_EVENT_ERROR,
            format!("task_id is missing; {usage}"),
        )),
        (Some("record_success"), None, None) => Ok(TaskRequest::End {
            run_id,
            end: StateMachineEnd::Succeeded,
        }),
        (Some("record_failure"), None, Some(caught)) => Ok(TaskRequest::End {
            run_id,
            end: StateMachineEnd::Failed {
                error: caught.error,
                cause: caught.cause.unwrap_or_default(),
            },
        }),
        (Some("record_failure"), None, None) => Err(TaskFailure::new(
            BAD_EVENT_ERROR,
            format!("record_failure needs the caught error in \"error\"; {usage}"),
        )),
        (Some(action @ ("record_success" | "record_failure")), _, _) => Err(TaskFailure::new(
            BAD_EVENT_ERROR,
            format!(
                "{action} takes only run_id{}; {usage}",
                if action == "record_failure" {
                    " and error"
                } else {
                    ""
                }
            ),
        )),
        (None, Some(_), Some(_)) => Err(TaskFailure::new(
            BAD_EVENT_ERROR,
            format!("\"error\" belongs to record_failure only; {usage}"),
        )),
        (Some(other), _, _) => Err(TaskFailure::new(
            BAD_EVENT_ERROR,
            format!("unknown action {other:?}; {usage}"),
        )),
    }
}

/// Handles one event as invocation `request_id` with deadline `deadline_ms` (milliseconds since
/// the epoch). `executor` must have the owner [`dagy_engine::STATE_MACHINE_OWNER`].
pub async fn handle(
    executor: &Executor,
    payload: Value,
    request_id: &str,
    deadline_ms: u64,
) -> Result<Value, TaskFailure> {
    let worker = format!("lambda:{request_id}");
    match parse_event(payload)? {
        TaskRequest::RunTask { run_id, task_id } => {
            let options = RunOptions {
                deadline: invocation_deadline(deadline_ms, dagy_store::now_ms()),
                ..RunOptions::default()
            };
            let outcome = executor
                .run_state_machine_task(&run_id, &task_id, &worker, &options)
                .await
                .map_err(|e| TaskFailure::new(EXECUTOR_ERROR, e.to_string()))?;
            tracing::info!(run_id, task_id, outcome = ?outcome, "task invocation done");
            match outcome {
                TaskInvocation::Completed => {
                    Ok(json!({"run_id": run_id, "task_id": task_id, "status": "completed"}))
                }
                TaskInvocation::Retryable(e) => Err(TaskFailure::new(
                    ATTEMPT_FAILED_ERROR,
                    format!("task {task_id}: {}: {}", e.error_type, e.message),
                )),
                TaskInvocation::Failed(e) => Err(TaskFailure::new(
                    TASK_FAILED_ERROR,
                    format!("task {task_id}: {}: {}", e.error_type, e.message),
                )),
                TaskInvocation::Stopped(why) => Err(TaskFailure::new(
                    RUN_STOPPED_ERROR,
                    format!("task {task_id} not run: {why}"),
                )),
            }
        }
        TaskRequest::End { run_id, end } => {
            let status = executor
                .end_state_machine_run(&run_id, &worker, &end)
                .await
                .map_err(|e| TaskFailure::new(EXECUTOR_ERROR, e.to_string()))?;
            tracing::info!(run_id, status = %status, "run ended by its state machine");
            Ok(json!({"run_id": run_id, "status": status}))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(payload: Value) -> String {
        match parse_event(payload) {
            Err(f) if f.error_type == BAD_EVENT_ERROR => f.message,
            other => panic!("expected a bad event, got {other:?}"),
        }
    }

    #[test]
    fn the_three_forms_are_read() {
        assert_eq!(
            parse_event(json!({"run_id": "r", "task_id": "t"})),
            Ok(TaskRequest::RunTask {
                run_id: "r".into(),
                task_id: "t".into()
            })
        );
        assert_eq!(
            parse_event(json!({"action": "record_success", "run_id": "r"})),
            Ok(TaskRequest::End {
                run_id: "r".into(),
                end: StateMachineEnd::Succeeded
            })
        );
        assert_eq!(
            parse_event(json!({"action": "record_failure", "run_id": "r",
                "error": {"Error": "States.Timeout"}})),
            Ok(TaskRequest::End {
                run_id: "r".into(),
                end: StateMachineEnd::Failed {
                    error: "States.Timeout".into(),
                    cause: String::new()
                }
            })
        );
    }

    #[test]
    fn mistakes_are_named() {
        assert!(bad(json!({"task_id": "t"})).contains("missing field `run_id`"));
        assert!(bad(json!({"run_id": "r"})).contains("task_id is missing"));
        assert!(
            bad(json!({"run_id": "r", "task_id": "t", "extra": 1}))
                .contains("unknown field `extra`")
        );
        assert!(bad(json!({"action": "record_failure", "run_id": "r"})).contains("caught error"));
        assert!(
            bad(json!({"action": "launch", "run_id": "r"})).contains("unknown action \"launch\"")
        );
        assert!(
            bad(json!({"action": "record_success", "run_id": "r", "task_id": "t"}))
                .contains("takes only run_id")
        );
        assert!(bad(json!([1, 2])).contains("the task-executor takes"));
        assert!(bad(json!({"run_id": 5, "task_id": "t"})).contains("invalid type"));
    }
}
