//! The engine's side of a Step Functions execution: the state machine orders the tasks and
//! retries them; each Task state asks the task-executor to run one attempt of one task
//! ([`Executor::run_state_machine_task`]), and the last state records how the run ended
//! ([`Executor::end_state_machine_run`]).
//!
//! The task invocations of one execution run side by side, so they share the run's lease (one
//! owner, the executor's, and one fencing token), each as its own worker: an attempt belongs
//! to the invocation that started it, and a later invocation of the same task (Step Functions
//! retrying after a `TimeoutSeconds`) takes the task over and fences the older one out.

use std::time::Duration;

use tokio::time::Instant;

use dagy_store::{AttemptOutcome, RunStatus, StoreError, TaskErrorRecord, TaskStatus};

use crate::error::EngineError;
use crate::executor::{
    AttemptEnd, Claim, Executor, Opened, RunOptions, Session, StepOutcome, TaskEnd,
    too_often_interrupted,
};
use crate::registry::TaskError;
use crate::retry;

/// What one task invocation of a Step Functions execution did: the task-executor turns it into
/// its answer (success, or an error type a `Retry` or `Catch` matches).
#[derive(Debug, Clone, PartialEq)]
pub enum TaskInvocation {
    /// The task completed, in this invocation or an earlier one (it never runs twice).
    Completed,
    /// This attempt failed and the task may be tried again: Step Functions' `Retry` decides.
    Retryable(TaskErrorRecord),
    /// The task failed for good and is recorded so: no retry can help.
    Failed(TaskErrorRecord),
    /// Nothing ran: the run was cancelled or has ended, or another executor holds it.
    Stopped(String),
}

/// How a Step Functions execution ended, as its last state reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateMachineEnd {
    /// `RecordSuccess`: every level ran.
    Succeeded,
    /// `HandleTaskFailure`: a state failed; `error` and `cause` are what its `Catch` caught.
    Failed {
        /// The error name (`DagyTaskFailed`, `States.Timeout`, ...).
        error: String,
        /// Its cause (for a Lambda error, the function's error JSON).
        cause: String,
    },
}

/// The lease owner of every Step Functions execution's task invocations (each joins as its
/// own worker): give the task-executor's [`Executor`] this owner.
pub const STATE_MACHINE_OWNER: &str = "step-functions";

/// The error Step Functions reports when a state runs past its `TimeoutSeconds`.
pub const STATES_TIMEOUT: &str = "States.Timeout";

impl Executor {
    /// Runs one attempt of `task_id` for a Step Functions execution, as `worker` (the Lambda
    /// request id) under the run's shared lease. The lease lasts at least until the options'
    /// deadline. A completed task is not run again; a cancelled or ended run runs nothing.
    pub async fn run_state_machine_task(
        &self,
        run_id: &str,
        task_id: &str,
        worker: &str,
        options: &RunOptions,
    ) -> Result<TaskInvocation, EngineError> {
        let ttl = shared_ttl(self.lease_ttl(), options.deadline);
        let mut session =
            match Session::open(self, run_id, options, Claim::Shared { worker, ttl }).await? {
                Opened::Session(s) => s,
                Opened::Done(outcome) => return Ok(stopped(outcome)),
            };
        match session.one_attempt(task_id).await {
            // A later invocation of this task took it over: this one's answer no longer
            // matters to Step Functions, and nothing it would write is kept.
            Err(EngineError::Store(StoreError::LeaseLost { .. })) => Ok(TaskInvocation::Stopped(
                "another executor took the run over".into(),
            )),
            Err(EngineError::Store(StoreError::TaskConflict { task_id, .. })) => {
                Ok(TaskInvocation::Retryable(TaskErrorRecord {
                    error_type: "TaskTakenOver".into(),
                    message: format!(
                        "another invocation of task {task_id} started or took over this attempt"
                    ),
                }))
            }
            Err(EngineError::Store(StoreError::CancelRequested { .. })) => {
                Ok(TaskInvocation::Stopped("the run was cancelled".into()))
            }
            Err(EngineError::Store(StoreError::RunFinished { status, .. })) => Ok(
                TaskInvocation::Stopped(format!("the run already ended {status}")),
            ),
            other => other,
        }
    }

    /// Records how a Step Functions execution ended and ends the run: completed when every
    /// task completed; cancelled when a cancel was asked for; otherwise failed, with the tasks
    /// that did not finish settled (never-started ones skipped, running ones cancelled, or
    /// timed out when the execution's error was a `States.Timeout`). Returns the run's final
    /// status; ending a run that already ended changes nothing.
    pub async fn end_state_machine_run(
        &self,
        run_id: &str,
        worker: &str,
        end: &StateMachineEnd,
    ) -> Result<RunStatus, EngineError> {
        let options = RunOptions::default();
        let ttl = self.lease_ttl();
        let mut session =
            match Session::open(self, run_id, &options, Claim::Shared { worker, ttl }).await {
                Ok(Opened::Session(s)) => s,
                Ok(Opened::Done(StepOutcome::Finished(status)))
                | Err(EngineError::Store(StoreError::RunFinished { status, .. })) => {
                    return Ok(status);
                }
                Ok(Opened::Done(_)) => {
                    return Err(EngineError::Store(StoreError::LeaseHeld {
                        run_id: run_id.to_string(),
                        owner: "another executor".into(),
                        expires_at_ms: 0,
                    }));
                }
                Err(e) => return Err(e),
            };
        match session.record_end(end).await {
            Err(EngineError::Store(StoreError::RunFinished { status, .. })) => Ok(status),
            other => other,
        }
    }
}

/// A shared lease lasts as long as the invocation may (its deadline), plus the usual TTL.
fn shared_ttl(ttl: Duration, deadline: Option<Instant>) -> Duration {
    let remaining = deadline.map_or(Duration::ZERO, |d| {
        d.saturating_duration_since(Instant::now())
    });
    ttl + remaining
}

fn stopped(outcome: StepOutcome) -> TaskInvocation {
    TaskInvocation::Stopped(match outcome {
        StepOutcome::Finished(status) => format!("the run already ended {status}"),
        StepOutcome::Busy { owner, .. } => format!(
            "the run is held by {owner}, not by this state machine (was it started on another \
             backend?)"
        ),
        StepOutcome::Continue { .. } | StepOutcome::Superseded => {
            "another executor took the run over".into()
        }
    })
}

impl Session<'_> {
    /// Why `task_id` (at `index`) must not run in this invocation, if it must not: the run was
    /// cancelled, the task already ended, or an upstream task has not completed.
    fn refusal(&self, index: usize, task_id: &str) -> Option<TaskInvocation> {
        if self.run.cancel_requested {
            return Some(TaskInvocation::Stopped("the run was cancelled".into()));
        }
        let record = &self.tasks[index];
        match record.status {
            TaskStatus::Completed => return Some(TaskInvocation::Completed),
            status if status.is_final() => {
                return Some(TaskInvocation::Failed(
                    record
                        .error
                        .as_deref()
                        .cloned()
                        .unwrap_or_else(|| TaskErrorRecord {
                            error_type: "TaskEnded".into(),
                            message: format!("task {task_id} already ended {status}"),
                        }),
                ));
            }
            _ => {}
        }
        let upstream = self
            .flow
            .dependencies(index)
            .iter()
            .find(|&&d| self.tasks[d].status != TaskStatus::Completed)?;
        Some(TaskInvocation::Failed(TaskErrorRecord {
            error_type: "UpstreamNotCompleted".into(),
            message: format!(
                "task {task_id} cannot run: its upstream task {} is {}",
                self.flow.task(*upstream).id,
                self.tasks[*upstream].status
            ),
        }))
    }

    /// One attempt of one task; retries are the state machine's.
    async fn one_attempt(&mut self, task_id: &str) -> Result<TaskInvocation, EngineError> {
        let run_id = self.run.run_id.clone();
        let Some(index) = self.flow.index_of(task_id) else {
            return Ok(TaskInvocation::Failed(TaskErrorRecord {
                error_type: "UnknownTask".into(),
                message: format!(
                    "run {run_id}'s flow has no task {task_id}: the state machine does not match \
                     the run's flow"
                ),
            }));
        };
        if let Some(refused) = self.refusal(index, task_id) {
            return Ok(refused);
        }
        let spec = self.flow.task(index).clone();
        let started_at = Instant::now();
        let Some(attempt) = self.begin_attempt(index).await? else {
            return Ok(TaskInvocation::Stopped("the run was cancelled".into()));
        };
        if let Some(error) = too_often_interrupted(self.tasks[index].interruptions, "invocation") {
            self.record_final(index, attempt, TaskStatus::Failed, error, started_at)
                .await?;
            return Ok(self.failed_invocation(index, TaskStatus::Failed));
        }

        let task_deadline = retry::attempt_deadline(spec.timeout_seconds);
        let budget_deadline = self.options.deadline;
        let end = self
            .wait_for_attempt(index, &spec, attempt, task_deadline, budget_deadline)
            .await?;
        let error = match end {
            AttemptEnd::Returned(Ok(output)) => {
                return self
                    .output_invocation(index, attempt, output, started_at)
                    .await;
            }
            AttemptEnd::LeaseLost => {
                return Err(StoreError::LeaseLost { run_id }.into());
            }
            AttemptEnd::BudgetExhausted => {
                let error = TaskError::permanent(format!(
                    "the task-executor's invocation reached its deadline during attempt \
                     {attempt}; give the function a longer timeout or the task a shorter \
                     timeout_seconds"
                ))
                .with_type("BudgetExhausted");
                self.record_final(index, attempt, TaskStatus::TimedOut, error, started_at)
                    .await?;
                return Ok(self.failed_invocation(index, TaskStatus::TimedOut));
            }
            AttemptEnd::TimedOut => self.timed_out(index, attempt),
            AttemptEnd::Returned(Err(error)) => error,
        };
        if let Some(status) = self.final_after(index, &error) {
            self.record_final(index, attempt, status, error, started_at)
                .await?;
            return Ok(self.failed_invocation(index, status));
        }
        let record = self.fit_error(&error);
        self.write_attempt_end(task_id, attempt, AttemptOutcome::Retrying(record.clone()))
            .await?;
        Ok(TaskInvocation::Retryable(record))
    }

    /// Records an attempt's output: completed, or failed when the output cannot be stored
    /// (too large, too deep).
    async fn output_invocation(
        &mut self,
        index: usize,
        attempt: u32,
        output: serde_json::Value,
        started_at: Instant,
    ) -> Result<TaskInvocation, EngineError> {
        let end = self
            .record_output(index, attempt, output, started_at)
            .await?;
        Ok(match end {
            TaskEnd::Final(TaskStatus::Completed) => TaskInvocation::Completed,
            _ => TaskInvocation::Failed(self.tasks[index].error.as_deref().cloned().unwrap_or(
                TaskErrorRecord {
                    error_type: "TaskFailed".into(),
                    message: "the output could not be recorded".into(),
                },
            )),
        })
    }

    /// What the task-executor answers for a task that ended `status` without completing.
    fn failed_invocation(&self, index: usize, status: TaskStatus) -> TaskInvocation {
        TaskInvocation::Failed(self.tasks[index].error.as_deref().cloned().unwrap_or(
            TaskErrorRecord {
                error_type: "TaskFailed".into(),
                message: format!("the task ended {status}"),
            },
        ))
    }

    async fn record_end(&mut self, end: &StateMachineEnd) -> Result<RunStatus, EngineError> {
        match end {
            StateMachineEnd::Succeeded => self.record_success().await,
            StateMachineEnd::Failed { error, cause } => self.record_failure(error, cause).await,
        }
    }

    /// The state machine succeeded: the run completes, or fails naming the tasks that never
    /// ran when its definition did not match the flow.
    async fn record_success(&mut self) -> Result<RunStatus, EngineError> {
        let open: Vec<String> = self
            .unfinished()
            .into_iter()
            .map(|i| self.flow.task(i).id.clone())
            .collect();
        if open.is_empty() {
            return self.finish().await;
        }
        let message = format!(
            "the state machine succeeded but tasks {} never ran: its definition does not \
             match the run's flow; deploy the flow again",
            open.join(", ")
        );
        let rest = self.unfinished();
        self.settle(
            &rest,
            TaskStatus::Skipped,
            TaskErrorRecord {
                error_type: "NotRun".into(),
                message: message.clone(),
            },
        )
        .await?;
        self.end(RunStatus::Failed, Some(message)).await
    }

    /// The state machine failed with `error` and `cause`: the run is cancelled if that was
    /// asked for, else failed, each unfinished task settled by what it was doing.
    async fn record_failure(&mut self, error: &str, cause: &str) -> Result<RunStatus, EngineError> {
        if self.run.cancel_requested {
            return self.cancel_rest().await;
        }
        let why = describe_cause(error, cause);
        let stopped_by = |what: &str| TaskErrorRecord {
            error_type: error.to_string(),
            message: format!("{what} when the execution failed: {why}"),
        };
        let rest = self.unfinished();
        let (mut never, mut running, mut retrying, mut timed_out) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in rest {
            match self.tasks[i].status {
                TaskStatus::Running
                    if error == STATES_TIMEOUT && self.flow.task(i).timeout_seconds.is_some() =>
                {
                    timed_out.push(i);
                }
                TaskStatus::Running => running.push(i),
                TaskStatus::Retrying => retrying.push(i),
                _ => never.push(i),
            }
        }
        self.settle(&timed_out, TaskStatus::TimedOut, stopped_by("timed out"))
            .await?;
        self.settle(&retrying, TaskStatus::Failed, stopped_by("not retried"))
            .await?;
        self.settle(&running, TaskStatus::Cancelled, stopped_by("stopped"))
            .await?;
        self.settle(&never, TaskStatus::Skipped, stopped_by("not run"))
            .await?;
        let first_bad = self.flow.order().iter().copied().find(|&i| {
            matches!(
                self.tasks[i].status,
                TaskStatus::Failed | TaskStatus::TimedOut
            )
        });
        let message = match first_bad {
            Some(i) => {
                let t = &self.tasks[i];
                let id = &self.flow.task(i).id;
                format!("task {id} {}: {}", t.status, t.error_message())
            }
            None => format!("the Step Functions execution failed: {why}"),
        };
        self.end(RunStatus::Failed, Some(message)).await
    }
}

/// `error: message`, with a Lambda error's JSON cause unpacked to its message.
fn describe_cause(error: &str, cause: &str) -> String {
    let message = serde_json::from_str::<serde_json::Value>(cause)
        .ok()
        .and_then(|v| {
            v.get("errorMessage")
                .and_then(|m| m.as_str())
                .map(String::from)
        })
        .unwrap_or_else(|| cause.to_string());
    if message.is_empty() {
        error.to_string()
    } else {
        format!("{error}: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lambda_cause_is_unpacked_to_its_message() {
        assert_eq!(
            describe_cause(
                "DagyTaskFailed",
                r#"{"errorType":"DagyTaskFailed","errorMessage":"task a failed: boom"}"#
            ),
            "DagyTaskFailed: task a failed: boom"
        );
        assert_eq!(
            describe_cause("States.Timeout", ""),
            "States.Timeout",
            "no cause: the error alone"
        );
        assert_eq!(describe_cause("X", "plain"), "X: plain");
    }

    #[test]
    fn a_shared_lease_lasts_the_invocation() {
        let deadline = Instant::now() + Duration::from_secs(100);
        let ttl = shared_ttl(Duration::from_secs(60), Some(deadline));
        assert!(ttl > Duration::from_secs(159) && ttl <= Duration::from_secs(160));
        assert_eq!(
            shared_ttl(Duration::from_secs(60), None),
            Duration::from_secs(60)
        );
    }
}
