//! Dagy's run-state store: the [`RunStore`] trait every executor writes through, the records it
//! keeps, and [`MemoryStore`], the embedded default.
//!
//! Every change is conditional, in the way a DynamoDB conditional write is:
//!
//! - a run moves forward only (`pending` -> `running` -> final);
//! - an executor holds a [`Lease`] on the run; acquiring one bumps its fencing token, and
//!   every task write names the token, so an executor that lost its lease changes nothing;
//! - an attempt starts only from `pending` or `retrying`, or from `running` under an older
//!   token (an executor that died mid-task): a completed task never runs again, and two
//!   executors never run one task under the same lease;
//! - starting an attempt fails once a cancel was requested, which is how cancellation is
//!   seen "between tasks and between attempts" without an extra read.
//!
//! The engine makes two writes per attempt (start, finish) and reads the run once per
//! session: the request budget the DynamoDB store is held to.

use async_trait::async_trait;

#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod memory;
mod record;
pub mod rules;
mod step;

pub use error::StoreError;
pub use memory::{MemoryStore, list_key};
pub use record::{
    AttemptOutcome, AttemptSpan, AttemptStart, DeploymentRecord, EnvironmentRecord, Lease, NewRun,
    PlanRecord, RunFilter, RunPage, RunRecord, RunReport, RunSnapshot, RunStatus, TaskErrorRecord,
    TaskRecord, TaskReport, TaskStatus,
};
pub use step::{Cursor, HandedOn, StepLinks, StepState, StepTask, StepView, Verdict, step_links};

/// The largest task output a store accepts by default: DynamoDB's item limit is 400 KB and the
/// task item carries its other attributes beside the output.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 350 * 1024;
/// The largest task error message a store accepts by default.
pub const DEFAULT_MAX_ERROR_BYTES: usize = 32 * 1024;

/// Sizes a store can hold; the engine checks them before writing, so an output that is too big
/// becomes a clear task error, never a truncated value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Serialized JSON bytes of one task output.
    pub max_output_bytes: usize,
    /// Bytes of one error message.
    pub max_error_bytes: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            max_error_bytes: DEFAULT_MAX_ERROR_BYTES,
        }
    }
}

/// How long a pending run may wait for its first executor before the sweep dispatches it again.
pub const DISPATCH_GRACE_MS: u64 = 60_000;

/// Checks what ending an attempt would write, before any store writes it: the status an attempt
/// may end with, and the sizes of the output and the error. Returns the task's status after the
/// write.
pub fn check_outcome(
    limits: StoreLimits,
    task_id: &str,
    outcome: &AttemptOutcome,
) -> Result<TaskStatus, StoreError> {
    match outcome {
        AttemptOutcome::Completed(output) => {
            let text = output.json();
            let depth = dagy_core::json::text_depth(text);
            if depth > dagy_core::json::MAX_OUTPUT_DEPTH {
                return Err(StoreError::TooDeep {
                    what: format!("the output of task {task_id}"),
                    depth,
                    limit: dagy_core::json::MAX_OUTPUT_DEPTH,
                });
            }
            if text.len() > limits.max_output_bytes {
                return Err(StoreError::TooLarge {
                    what: format!("the output of task {task_id}"),
                    bytes: text.len(),
                    limit: limits.max_output_bytes,
                });
            }
            Ok(TaskStatus::Completed)
        }
        AttemptOutcome::Retrying(error) => {
            check_error(limits, error)?;
            Ok(TaskStatus::Retrying)
        }
        AttemptOutcome::Finished(status, error) => {
            if !status.is_final() || *status == TaskStatus::Completed {
                return Err(StoreError::Invalid(format!(
                    "an attempt cannot finish a task as {status}"
                )));
            }
            check_error(limits, error)?;
            Ok(*status)
        }
    }
}

/// Checks a `settle_tasks` request: only `skipped`, `cancelled`, `timed_out` or `failed`, with
/// an error the store can hold.
pub fn check_settle(
    limits: StoreLimits,
    status: TaskStatus,
    error: &TaskErrorRecord,
) -> Result<(), StoreError> {
    if !matches!(
        status,
        TaskStatus::Skipped | TaskStatus::Cancelled | TaskStatus::TimedOut | TaskStatus::Failed
    ) {
        return Err(StoreError::Invalid(format!(
            "tasks can only be settled as skipped, cancelled, timed_out or failed, not {status}"
        )));
    }
    check_error(limits, error)
}

/// Checks a `create_run` request before anything is written: a pending run, a flow name and
/// parameters within the limits validation holds flows to (the trigger's parameters are merged
/// in after validation, so they are checked again here).
pub fn check_new_run(new: &NewRun) -> Result<(), StoreError> {
    let run = &new.run;
    if run.status != RunStatus::Pending {
        return Err(StoreError::Invalid(format!(
            "a new run must be pending, not {}",
            run.status
        )));
    }
    let limit = dagy_core::validate::MAX_FLOW_NAME_LEN;
    if run.flow_name.len() > limit {
        return Err(StoreError::TooLarge {
            what: "the flow name".into(),
            bytes: run.flow_name.len(),
            limit,
        });
    }
    let bytes = serde_json::to_string(&run.parameters).map_or(usize::MAX, |t| t.len());
    let limit = dagy_core::validate::MAX_PARAMETERS_BYTES;
    if bytes > limit {
        return Err(StoreError::TooLarge {
            what: "the run's parameters (as JSON)".into(),
            bytes,
            limit,
        });
    }
    let depth = dagy_core::json::depth(&serde_json::Value::Object(run.parameters.clone()));
    if depth > dagy_core::json::MAX_OUTPUT_DEPTH {
        return Err(StoreError::TooDeep {
            what: "the run's parameters".into(),
            depth,
            limit: dagy_core::json::MAX_OUTPUT_DEPTH,
        });
    }
    Ok(())
}

/// Checks a `finish_run` request: only a final status.
pub fn check_finish(status: RunStatus) -> Result<(), StoreError> {
    if status.is_final() {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "a run cannot finish as {status}"
        )))
    }
}

fn check_error(limits: StoreLimits, error: &TaskErrorRecord) -> Result<(), StoreError> {
    if error.message.len() > limits.max_error_bytes {
        return Err(StoreError::TooLarge {
            what: "the error message".into(),
            bytes: error.message.len(),
            limit: limits.max_error_bytes,
        });
    }
    Ok(())
}

/// Whether `create_run` made a new run or found the one its idempotency key already made.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    /// The run (new, or the existing one).
    pub run: RunRecord,
    /// `false` when the idempotency key had already been used.
    pub created: bool,
}

/// Where runs live. Times are milliseconds since the Unix epoch, passed in by the caller so that
/// every condition is evaluated against one clock.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// What this store can hold.
    fn limits(&self) -> StoreLimits;

    /// Writes a new pending run and one pending record per task. With an idempotency key that a
    /// run already has, returns that run instead and writes nothing.
    async fn create_run(&self, new: NewRun) -> Result<Created, StoreError>;

    /// Reads the run record only.
    async fn get_run(&self, run_id: &str) -> Result<RunRecord, StoreError>;

    /// Reads the run, its flow and all its tasks.
    async fn load_run(&self, run_id: &str) -> Result<RunSnapshot, StoreError>;

    /// Takes the run's lease for `owner` until `now_ms + ttl_ms`, if it is free, lapsed, or
    /// already `owner`'s; bumps the fencing token and moves a pending run to running.
    /// Fails with [`StoreError::LeaseHeld`] or [`StoreError::RunFinished`].
    async fn acquire_lease(
        &self,
        run_id: &str,
        owner: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<Lease, StoreError>;

    /// Joins the run's shared lease as `worker`: while `owner` holds the lease (live or
    /// lapsed) the token stays the same and the expiry moves to `now_ms + ttl_ms` if that is
    /// later; a free or lapsed lease of another owner is taken (the token bumps), and a pending
    /// run moves to running. Many workers of one owner can hold it at once; each attempt stays
    /// its starter's. Fails like [`RunStore::acquire_lease`] when another owner's lease is live.
    async fn join_lease(
        &self,
        run_id: &str,
        owner: &str,
        worker: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<Lease, StoreError>;

    /// Extends a held lease. Fails with [`StoreError::LeaseLost`] once another executor took it.
    async fn renew_lease(
        &self,
        lease: &Lease,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<Lease, StoreError>;

    /// Frees the run for the next executor at once (the run stays running); the sweep looks
    /// at it again after [`DISPATCH_GRACE_MS`] if nobody takes it.
    async fn release_lease(&self, lease: &Lease, now_ms: u64) -> Result<(), StoreError>;

    /// What one micro step needs, in constant work: the run, its step state, and the task at
    /// its cursor with its spec, its record, the cursor after it and its upstream records.
    /// `None` for a run without step state (created before it existed): read it whole.
    async fn load_step(&self, run_id: &str) -> Result<Option<StepView>, StoreError>;

    /// [`RunStore::acquire_lease`] and [`RunStore::load_step`] together: a store whose lease
    /// write answers with the run reads only the step's tasks after it.
    async fn acquire_step(
        &self,
        run_id: &str,
        owner: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<(Lease, Option<StepView>), StoreError> {
        let lease = self.acquire_lease(run_id, owner, now_ms, ttl_ms).await?;
        let view = self.load_step(run_id).await?;
        Ok((lease, view))
    }

    /// Moves the run's cursor from `from` (the task just settled) to `to`, records `verdict`
    /// when the run has none of its kind yet, and releases the lease, in one write. Fails with
    /// `LeaseLost` when the lease is no longer `lease`.
    async fn advance_cursor(
        &self,
        lease: &Lease,
        from: &str,
        to: Option<&Cursor>,
        verdict: Option<&Verdict>,
        now_ms: u64,
    ) -> Result<(), StoreError>;

    /// Starts attempt number `attempt` of a task (one more than its recorded attempts), under
    /// the lease and only if no cancel was requested. A task still `running` under an older
    /// token, or under another worker of a shared lease, was interrupted: the new attempt
    /// counts an interruption, not a failure, and the old attempt's writes are refused from
    /// then on. Starting the same attempt again as the same attempt owner is a no-op that
    /// succeeds, so a request retried after a lost answer is safe.
    async fn start_attempt(
        &self,
        lease: &Lease,
        task_id: &str,
        attempt: u32,
        now_ms: u64,
    ) -> Result<AttemptStart, StoreError>;

    /// Records how attempt `attempt` ended; the task must be running that attempt under the
    /// lease, started by this lease's [`Lease::attempt_owner`]. Recording the same end twice under the same lease succeeds (a retried request).
    async fn finish_attempt(
        &self,
        lease: &Lease,
        task_id: &str,
        attempt: u32,
        outcome: AttemptOutcome,
        now_ms: u64,
    ) -> Result<(), StoreError>;

    /// Records a task's last attempt end and moves the cursor past the task, as
    /// [`finish_attempt`](RunStore::finish_attempt) then
    /// [`advance_cursor`](RunStore::advance_cursor) from `task_id` would: a micro step's
    /// last write. A store that can make both one write (one transaction) does; otherwise
    /// a crash between the two leaves the task final at the cursor, which the next step moves
    /// past.
    #[allow(clippy::too_many_arguments)]
    async fn finish_and_advance(
        &self,
        lease: &Lease,
        task_id: &str,
        attempt: u32,
        outcome: AttemptOutcome,
        to: Option<&Cursor>,
        verdict: Option<&Verdict>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.finish_attempt(lease, task_id, attempt, outcome, now_ms)
            .await?;
        self.advance_cursor(lease, task_id, to, verdict, now_ms)
            .await
    }

    /// A micro step's last write when the same executor takes the next step at once:
    /// [`finish_and_advance`](RunStore::finish_and_advance) to `to`, but the lease is kept
    /// (renewed until `now_ms + ttl_ms`), the next step is read, and its task's attempt is
    /// started when [`StepView::next_attempt`] says it can run. A store that can make all of
    /// it one write (one transaction) does; otherwise the lease is released and taken again,
    /// and another executor may take it in between ([`StoreError::LeaseHeld`]).
    #[allow(clippy::too_many_arguments)]
    async fn finish_and_continue(
        &self,
        lease: &Lease,
        task_id: &str,
        attempt: u32,
        outcome: AttemptOutcome,
        to: &Cursor,
        verdict: Option<&Verdict>,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<HandedOn, StoreError> {
        let run_id = &lease.run_id;
        self.finish_and_advance(lease, task_id, attempt, outcome, Some(to), verdict, now_ms)
            .await?;
        let (lease, view) = self
            .acquire_step(run_id, &lease.owner, now_ms, ttl_ms)
            .await?;
        let view = view.ok_or_else(|| {
            StoreError::Corrupt(format!("run {run_id} lost its step state mid-run"))
        })?;
        // A start refused or failed here is not an error: the step starts the attempt itself
        // and meets the refusal there (a start retried by its owner is a no-op).
        let started = match (view.next_attempt(), &view.task) {
            (Some(attempt), Some(step)) => self
                .start_attempt(&lease, &step.spec.id, attempt, now_ms)
                .await
                .ok()
                .map(|start| (attempt, start)),
            _ => None,
        };
        Ok(HandedOn {
            lease,
            view,
            started,
        })
    }

    /// Gives tasks that will not run (again) their final status (`skipped`, `cancelled`,
    /// `timed_out`, or `failed` for a task whose retries someone else gave up on).
    /// Tasks already final are left as they are.
    async fn settle_tasks(
        &self,
        lease: &Lease,
        task_ids: &[String],
        status: TaskStatus,
        error: TaskErrorRecord,
        now_ms: u64,
    ) -> Result<(), StoreError>;

    /// Moves the run to a final status and ends the lease.
    async fn finish_run(
        &self,
        lease: &Lease,
        status: RunStatus,
        error: Option<String>,
        now_ms: u64,
    ) -> Result<RunRecord, StoreError>;

    /// Runs of a deployment, newest first, `limit` at a time; `next` continues a listing.
    async fn list_runs(
        &self,
        deployment: &str,
        limit: usize,
        next: Option<&str>,
    ) -> Result<RunPage, StoreError>;

    /// The newest runs of any flow or deployment that pass `filter`, newest first, at most
    /// `limit`: what `dagy runs` and the dashboard list.
    async fn recent_runs(
        &self,
        filter: &RunFilter,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError>;

    /// Runs that are not final and whose lease lapsed before `now_ms` (or that no executor
    /// picked up within the dispatch grace), oldest first: what the sweep resumes or ends.
    async fn find_lapsed_runs(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError>;

    /// Creates or replaces a deployment; returns it with its new version.
    async fn put_deployment(
        &self,
        deployment: DeploymentRecord,
    ) -> Result<DeploymentRecord, StoreError>;

    /// Reads a deployment.
    async fn get_deployment(&self, name: &str) -> Result<Option<DeploymentRecord>, StoreError>;

    /// Creates or replaces an environment.
    async fn put_environment(
        &self,
        environment: EnvironmentRecord,
    ) -> Result<EnvironmentRecord, StoreError>;

    /// Reads an environment.
    async fn get_environment(&self, name: &str) -> Result<Option<EnvironmentRecord>, StoreError>;

    /// Asks for the run to stop. A run no executor has picked up is cancelled at once; a running
    /// one stops at its next task boundary. Returns the run as it now is.
    async fn request_cancel(&self, run_id: &str, now_ms: u64) -> Result<RunRecord, StoreError>;
}

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
