//! What the store keeps of a run: the run record, one record per task, and the lease.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use dagy_core::json::JsonText;
use dagy_core::{BackendKind, ExecutionMode, Flow, FlowSpec, Plan, RuntimeTier};

/// The states of a run. A run only moves forward: `pending` -> `running` -> one of the four
/// final states, or `pending` -> `cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Written, not yet picked up by an executor.
    Pending,
    /// An executor is working on it.
    Running,
    /// Every task completed.
    Completed,
    /// A task failed (or timed out) after its retries.
    Failed,
    /// The run's budget ran out.
    TimedOut,
    /// Cancelled on request.
    Cancelled,
}

impl RunStatus {
    /// Whether no more changes will happen.
    pub fn is_final(self) -> bool {
        !matches!(self, RunStatus::Pending | RunStatus::Running)
    }

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::TimedOut => "timed_out",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The states of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Not started.
    Pending,
    /// An attempt is running.
    Running,
    /// An attempt failed; another will start after the retry delay.
    Retrying,
    /// Finished with an output.
    Completed,
    /// Failed after its retries.
    Failed,
    /// Its last attempt, or the run's budget, ran out of time.
    TimedOut,
    /// Not run: the run was cancelled.
    Cancelled,
    /// Not run: a task it depends on did not complete.
    Skipped,
}

impl TaskStatus {
    /// Whether the task is done, one way or another.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            TaskStatus::Pending | TaskStatus::Running | TaskStatus::Retrying
        )
    }

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Retrying => "retrying",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::TimedOut => "timed_out",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::Skipped => "skipped",
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The router's decision, as recorded on the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRecord {
    /// The runtime tier.
    pub tier: RuntimeTier,
    /// The backend.
    pub backend: BackendKind,
    /// `request`, `deployment`, `environment`, `flow`, `rule:<name>` or `default`.
    pub decided_by: String,
    /// Why, in words.
    pub reason: String,
    /// Why the run fell back to Lambda, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// How the backend runs it.
    pub mode: ExecutionMode,
    /// The Fargate size of an ECS run: the tier's, or the trigger's own valid pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<dagy_core::FargateSize>,
}

impl From<&Plan> for PlanRecord {
    fn from(plan: &Plan) -> Self {
        PlanRecord {
            tier: plan.tier,
            backend: plan.backend,
            decided_by: plan.decided_by.as_str().to_string(),
            reason: plan.reason.clone(),
            fallback: plan.fallback.as_ref().map(|f| f.reason.clone()),
            mode: plan.mode,
            resources: plan.resources,
        }
    }
}

/// The executor that holds a run, and until when. Writes are fenced by `token`: acquiring a
/// lease increments it, so an executor that lost its lease can no longer change the run.
///
/// A lease is exclusive ([`RunStore::acquire_lease`](crate::RunStore::acquire_lease)) or
/// shared ([`RunStore::join_lease`](crate::RunStore::join_lease)): the task invocations of one
/// Step Functions execution run side by side under one owner and token, each as its own
/// `worker`, and an attempt belongs to the worker that started it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The run.
    pub run_id: String,
    /// Who holds it (an invocation's request id, a worker's task ARN, a process id).
    pub owner: String,
    /// The fencing token.
    pub token: u64,
    /// Milliseconds since the Unix epoch when it lapses unless renewed.
    pub expires_at_ms: u64,
    /// For a shared lease, the one joiner this copy belongs to; `None` for an exclusive lease,
    /// whose owner is its only worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

impl Lease {
    /// Who the attempts started under this lease belong to: the worker of a shared lease, the
    /// owner of an exclusive one.
    pub fn attempt_owner(&self) -> &str {
        self.worker.as_deref().unwrap_or(&self.owner)
    }
}

/// A run, without its tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Unique id.
    pub run_id: String,
    /// The flow's name.
    pub flow_name: String,
    /// The deployment it belongs to, when started through one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// Where it is.
    pub status: RunStatus,
    /// The flow's parameter defaults merged with the trigger's.
    #[serde(default)]
    pub parameters: Map<String, Value>,
    /// The decision that sent it where it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanRecord>,
    /// The key that makes a trigger idempotent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Set by a cancel request; executors stop at the next task boundary.
    #[serde(default)]
    pub cancel_requested: bool,
    /// The current lease; `None` when no executor holds the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// When the sweep should look at the run if no executor has touched it by then: the lease's
    /// expiry while one is held, the dispatch grace after creation or a release. Meaningless
    /// once the run is final.
    #[serde(default)]
    pub wake_at_ms: u64,
    /// Why the run did not complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Creation time, ms since the epoch.
    pub created_at_ms: u64,
    /// When an executor first started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
    /// When it reached a final state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<u64>,
}

/// A task error as recorded: a stable type (for Step Functions' `ErrorEquals`) and a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskErrorRecord {
    /// E.g. `TaskFailed`, `TaskTimedOut`, `OutputTooLarge`, `HandlerNotFound`.
    pub error_type: String,
    /// What happened.
    pub message: String,
}

/// One task of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The task's id in the flow.
    pub task_id: String,
    /// Where it is.
    pub status: TaskStatus,
    /// Attempts started so far.
    #[serde(default)]
    pub attempts: u32,
    /// Attempts that failed or timed out (the retry budget counts these).
    #[serde(default)]
    pub failures: u32,
    /// Attempts cut short because their executor died; re-run without using a retry.
    #[serde(default)]
    pub interruptions: u32,
    /// The lease token the current attempt started under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_token: Option<u64>,
    /// The executor that started the current attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// When the first attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
    /// When it reached a final state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<u64>,
    /// The output, once completed, as JSON text ([`JsonText::to_value`] parses it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<JsonText>,
    /// The last error (boxed: most tasks have none, and a run holds a record per task).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Box<TaskErrorRecord>>,
    /// Each attempt's start and end, oldest first: the timeline of retries and their delays.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<AttemptSpan>,
}

/// One attempt of a task, as the run's timeline shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptSpan {
    /// The attempt's number, from 1.
    pub attempt: u32,
    /// When it started, ms since the epoch.
    pub started_at_ms: u64,
    /// When it ended; `None` while it runs (or when its executor died in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at_ms: Option<u64>,
    /// The task's status after it: `completed`, `retrying`, `failed`, `timed_out`...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TaskStatus>,
}

impl TaskRecord {
    /// A task that has not started.
    pub fn pending(task_id: impl Into<String>) -> Self {
        TaskRecord {
            task_id: task_id.into(),
            status: TaskStatus::Pending,
            attempts: 0,
            failures: 0,
            interruptions: 0,
            lease_token: None,
            owner: None,
            started_at_ms: None,
            finished_at_ms: None,
            output: None,
            error: None,
            history: Vec::new(),
        }
    }

    /// The output, parsed.
    pub fn output_value(&self) -> Option<Value> {
        self.output.as_ref().map(JsonText::to_value)
    }

    /// Time from the first start to the end, when both are known.
    pub fn duration_ms(&self) -> Option<u64> {
        Some(self.finished_at_ms?.saturating_sub(self.started_at_ms?))
    }
}

/// What a run is created with.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// The run record; its status must be `pending`.
    pub run: RunRecord,
    /// The flow it runs, validated (its spec is kept so any executor can resume it).
    pub flow: Flow,
}

/// A run as read back: the record, its flow and every task in flow order.
#[derive(Debug, Clone)]
pub struct RunSnapshot {
    /// The run record.
    pub run: RunRecord,
    /// The flow, shared with the store that holds it (the memory store) or decoded once.
    pub flow: Arc<FlowSpec>,
    /// The tasks, in the flow's declaration order.
    pub tasks: Vec<TaskRecord>,
}

impl RunSnapshot {
    /// The run as clients see it (`dagy run --json`, `GET /runs/{id}`): status, plan,
    /// parameters, times, and per task its status, attempts, duration, output and error.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.report()).unwrap_or(Value::Null)
    }

    /// What [`RunSnapshot::to_json`] holds, borrowed, to be serialized without building a
    /// [`Value`] tree (`dagy run --json` of 100,000 tasks writes it straight out).
    pub fn report(&self) -> RunReport<'_> {
        let run = &self.run;
        RunReport {
            run_id: &run.run_id,
            flow: &run.flow_name,
            deployment: run.deployment.as_deref(),
            status: run.status,
            error: run.error.as_deref(),
            cancel_requested: run.cancel_requested,
            plan: run.plan.as_ref(),
            parameters: &run.parameters,
            created_at_ms: run.created_at_ms,
            started_at_ms: run.started_at_ms,
            finished_at_ms: run.finished_at_ms,
            duration_ms: run
                .finished_at_ms
                .zip(run.started_at_ms)
                .map(|(f, s)| f.saturating_sub(s)),
            tasks: self.tasks.iter().map(TaskReport).collect(),
        }
    }
}

/// A run as clients see it: see [`RunSnapshot::report`].
#[derive(Debug, Serialize)]
pub struct RunReport<'a> {
    run_id: &'a str,
    flow: &'a str,
    deployment: Option<&'a str>,
    status: RunStatus,
    error: Option<&'a str>,
    cancel_requested: bool,
    plan: Option<&'a PlanRecord>,
    parameters: &'a Map<String, Value>,
    created_at_ms: u64,
    started_at_ms: Option<u64>,
    finished_at_ms: Option<u64>,
    duration_ms: Option<u64>,
    tasks: Vec<TaskReport<'a>>,
}

/// A task as clients see it, in a [`RunReport`].
#[derive(Debug)]
pub struct TaskReport<'a>(&'a TaskRecord);

impl Serialize for TaskReport<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let t = self.0;
        let mut map = serializer.serialize_map(Some(7))?;
        map.serialize_entry("id", &t.task_id)?;
        map.serialize_entry("status", &t.status)?;
        map.serialize_entry("attempts", &t.attempts)?;
        map.serialize_entry("duration_ms", &t.duration_ms())?;
        map.serialize_entry("output", &t.output)?;
        map.serialize_entry("error", &t.error)?;
        map.serialize_entry("history", &t.history)?;
        map.end()
    }
}

/// How an attempt ended, as the executor reports it to the store.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    /// Completed with this output.
    Completed(JsonText),
    /// Failed; another attempt follows.
    Retrying(TaskErrorRecord),
    /// Failed or timed out for good: the task's final status and error.
    Finished(TaskStatus, TaskErrorRecord),
}

/// A page of runs, newest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunPage {
    /// The runs on this page.
    pub runs: Vec<RunRecord>,
    /// Pass back to get the next page; `None` on the last page.
    pub next: Option<String>,
}

/// Which runs [`RunStore::recent_runs`](crate::RunStore::recent_runs) lists: every condition
/// given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// Only runs of this flow or of this deployment.
    pub name: Option<String>,
    /// Only runs created at or after this time, ms since the epoch.
    pub since_ms: Option<u64>,
    /// Only runs created before this time, ms since the epoch.
    pub until_ms: Option<u64>,
}

impl RunFilter {
    /// Whether `run` passes the filter.
    pub fn matches(&self, run: &RunRecord) -> bool {
        self.status.is_none_or(|s| run.status == s)
            && self
                .name
                .as_deref()
                .is_none_or(|n| run.flow_name == n || run.deployment.as_deref() == Some(n))
            && self.since_ms.is_none_or(|t| run.created_at_ms >= t)
            && self.until_ms.is_none_or(|t| run.created_at_ms < t)
    }
}

/// What starting an attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptStart {
    /// The task was `running` under an older lease: its executor died mid-attempt.
    pub interrupted: bool,
}

/// A deployment: a flow that can be triggered by name, and its defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    /// Unique name.
    pub name: String,
    /// The flow it runs.
    pub flow: FlowSpec,
    /// The environment whose defaults apply.
    pub environment: Option<String>,
    /// Level 2 of tier resolution.
    pub default_runtime_tier: Option<RuntimeTier>,
    /// A backend asked for by name (Step Functions is only reached this way).
    pub backend: Option<BackendKind>,
    /// Bumped on every put.
    pub version: u64,
    /// Last change, ms since the epoch.
    pub updated_at_ms: u64,
}

/// An environment: defaults shared by deployments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentRecord {
    /// Unique name.
    pub name: String,
    /// Level 3 of tier resolution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_runtime_tier: Option<RuntimeTier>,
    /// Last change, ms since the epoch.
    #[serde(default)]
    pub updated_at_ms: u64,
}
