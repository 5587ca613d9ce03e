//! The local executor: one task at a time, in topological order, every transition written
//! through the store before the next step starts.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use dagy_core::json::JsonText;
use dagy_core::{ExecutionMode, Flow, Plan, TaskSpec};
use dagy_store::{
    AttemptOutcome, AttemptStart, Created, Cursor, HandedOn, Lease, NewRun, PlanRecord, RunRecord,
    RunStatus, RunStore, StepState, StepTask, StepView, StoreError, TaskErrorRecord, TaskRecord,
    TaskStatus, Verdict, now_ms,
};

use crate::error::EngineError;
use crate::events::{Event, Observer};
use crate::registry::{Handler, HandlerRegistry, TaskContext, TaskError, TaskResult};
use crate::retry;
use crate::task_state::{TaskState, states_of};

/// How long one executor invocation may spend, the seed's tier budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// For the whole session (nano: 600 s).
    Flow(Duration),
    /// For each task, all its attempts and retry waits together (micro: 600 s).
    PerTask(Duration),
    /// No budget (ECS Fargate); tasks still have their own timeouts.
    Unlimited,
}

impl Budget {
    /// The budget a backend's execution mode runs under.
    pub fn for_mode(mode: ExecutionMode) -> Budget {
        let lambda = Duration::from_secs(dagy_core::tier::LAMBDA_TIER_BUDGET_SECONDS);
        match mode {
            ExecutionMode::WholeFlow => Budget::Flow(lambda),
            ExecutionMode::TaskPerInvocation | ExecutionMode::StateMachine => {
                Budget::PerTask(lambda)
            }
            ExecutionMode::Container => Budget::Unlimited,
        }
    }

    fn describe(self) -> String {
        match self {
            Budget::Flow(d) => format!("the run's budget of {} s ran out", d.as_secs_f64()),
            Budget::PerTask(d) => format!("the per-task budget of {} s ran out", d.as_secs_f64()),
            Budget::Unlimited => "the executor's deadline passed".into(),
        }
    }
}

/// Options of one executor session.
///
/// Two ways to stop a run, both recorded as a cancelled run with its unfinished tasks
/// cancelled: `stop` lets the task in flight finish, `cancel` cancels it too.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The tier's budget.
    pub budget: Budget,
    /// A hard stop (a Lambda invocation's deadline less a margin to record state).
    pub deadline: Option<Instant>,
    /// Cancelled to cancel the run now (a second Ctrl-C, SIGTERM): the handler in flight sees
    /// its [`TaskContext::cancel`] and is given [`CANCEL_GRACE`] to return before it is
    /// abandoned; then the task is recorded cancelled.
    pub cancel: CancellationToken,
    /// Cancelled to stop at the next task boundary (a first Ctrl-C): the task in flight runs to
    /// its end and is recorded as it ends; no attempt starts after it.
    pub stop: CancellationToken,
}

impl RunOptions {
    /// Whether the run is to stop at the next task boundary (`stop` or `cancel` fired).
    pub fn stopping(&self) -> bool {
        self.stop.is_cancelled() || self.cancel.is_cancelled()
    }

    async fn stopped(&self) {
        tokio::select! {
            () = self.stop.cancelled() => {}
            () = self.cancel.cancelled() => {}
        }
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            budget: Budget::Unlimited,
            deadline: None,
            cancel: CancellationToken::new(),
            stop: CancellationToken::new(),
        }
    }
}

/// How long a cancelled handler has to return before it is abandoned.
pub const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// What a session did.
#[derive(Debug, Clone, PartialEq)]
pub enum StepOutcome {
    /// One task was run (micro); more remain, for a fresh invocation.
    Continue {
        /// The task that ran.
        ran: String,
        /// How it ended.
        status: TaskStatus,
    },
    /// The run is in a final state (now, or already before this session).
    Finished(RunStatus),
    /// Another executor holds the run: this one did nothing (a duplicate delivery).
    Busy {
        /// Who holds it.
        owner: String,
        /// When its lease lapses unless renewed (Unix ms).
        until_ms: u64,
    },
    /// Another executor took the run over while this one worked (its lease lapsed, or two
    /// executors raced for it): this one stopped without writing more.
    Superseded,
}

/// How one micro step ended, inside the engine.
enum Stepped {
    /// As the step's caller sees it.
    Done(StepOutcome),
    /// The task ran, and the step's last write handed the lease on to the next step.
    HandedOn {
        ran: String,
        status: TaskStatus,
        next: Box<HandedOn>,
    },
}

impl Stepped {
    /// The next step to take at once, or the outcome to answer with.
    fn into_next(self) -> Result<Box<HandedOn>, StepOutcome> {
        match self {
            Stepped::HandedOn { next, .. } => Ok(next),
            Stepped::Done(outcome) => Err(outcome),
        }
    }

    /// The outcome to answer with: a handed-on step is one more task run.
    fn into_outcome(self) -> StepOutcome {
        match self {
            Stepped::HandedOn { ran, status, .. } => StepOutcome::Continue { ran, status },
            Stepped::Done(outcome) => outcome,
        }
    }
}

/// Why [`Executor::end_run`] ends a run from outside its executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd<'a> {
    /// Its worker could not start, or stopped without recording its end (an ECS task that
    /// failed to start, was killed, or ran out of memory): failed with this reason (cancelled,
    /// when a cancel was asked for), its unfinished tasks cancelled.
    Abandoned(&'a str),
    /// Its executor stopped and nobody resumed it in time (the sweep): timed out with this
    /// reason, its unfinished tasks timed out.
    Lapsed(&'a str),
}

/// The lease owner of the router's own writes (runs it ends).
pub const ROUTER_OWNER: &str = "dagy-router";
/// The lease owner of the sweep's writes.
pub const SWEEP_OWNER: &str = "dagy-sweep";

/// An attempt started again after this many interruptions fails the task instead.
pub const MAX_INTERRUPTIONS: u32 = 3;

/// The permanent error of a task whose `runner` (executor, invocation) stopped more than
/// [`MAX_INTERRUPTIONS`] times while running it; `None` while it may start again.
pub(crate) fn too_often_interrupted(interruptions: u32, runner: &str) -> Option<TaskError> {
    (interruptions > MAX_INTERRUPTIONS).then(|| {
        TaskError::permanent(format!(
            "its {runner} stopped {interruptions} times while running it (timed out, killed, or \
             out of memory); it is not started again"
        ))
        .with_type("TaskInterrupted")
    })
}

/// Runs flows through a [`RunStore`] with the handlers of a [`HandlerRegistry`].
#[derive(Clone)]
pub struct Executor {
    store: Arc<dyn RunStore>,
    registry: Arc<HandlerRegistry>,
    owner: String,
    lease_ttl: Duration,
    observer: Option<Arc<dyn Observer>>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("owner", &self.owner)
            .field("lease_ttl", &self.lease_ttl)
            .finish_non_exhaustive()
    }
}

/// Everything needed to write a new run of a flow.
#[derive(Debug, Clone, Default)]
pub struct NewRunRequest {
    /// The run id (a fresh one when `None`).
    pub run_id: Option<String>,
    /// Parameters given by the trigger, merged over the flow's defaults.
    pub parameters: Map<String, Value>,
    /// The router's decision.
    pub plan: Option<Plan>,
    /// The deployment, when started through one.
    pub deployment: Option<String>,
    /// Makes the trigger idempotent.
    pub idempotency_key: Option<String>,
}

/// The states of a run's task records in the declaration order of `specs`: as stores return
/// them (checked), or put in that order; the problem when a task has no record.
fn in_declaration_order(
    specs: &[TaskSpec],
    records: Vec<TaskRecord>,
) -> Result<Vec<TaskState>, String> {
    let in_order = records.len() == specs.len()
        && records
            .iter()
            .zip(specs)
            .all(|(record, spec)| record.task_id == spec.id);
    if in_order {
        return Ok(states_of(records));
    }
    let mut by_id: std::collections::HashMap<String, TaskRecord> = records
        .into_iter()
        .map(|t| (t.task_id.clone(), t))
        .collect();
    specs
        .iter()
        .map(|spec| {
            by_id
                .remove(&spec.id)
                .map(TaskState::from)
                .ok_or_else(|| format!("no record for task {}", spec.id))
        })
        .collect()
}

/// A new random run id: 32 hex digits.
pub fn new_run_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Executor {
    /// An executor with a random owner id and a 60 s lease.
    pub fn new(store: Arc<dyn RunStore>, registry: Arc<HandlerRegistry>) -> Self {
        Executor {
            store,
            registry,
            owner: format!(
                "executor-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            ),
            lease_ttl: Duration::from_secs(60),
            observer: None,
        }
    }

    /// Names the lease owner (a Lambda request id, an ECS task ARN).
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// Sets how long a lease lasts without renewal (renewed every third of it while working).
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl.max(Duration::from_millis(30));
        self
    }

    /// Sends progress events to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// How long a lease lasts without renewal.
    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    /// The store this executor writes to.
    pub fn store(&self) -> &Arc<dyn RunStore> {
        &self.store
    }

    /// Writes a new pending run of `flow` (or returns the run its idempotency key made).
    pub async fn create_run(
        &self,
        flow: &Flow,
        request: NewRunRequest,
    ) -> Result<Created, EngineError> {
        let mut parameters = flow.spec().parameters.clone();
        parameters.extend(request.parameters);
        let run = RunRecord {
            run_id: request.run_id.unwrap_or_else(new_run_id),
            flow_name: flow.name().to_string(),
            deployment: request.deployment,
            status: RunStatus::Pending,
            parameters,
            plan: request.plan.as_ref().map(PlanRecord::from),
            idempotency_key: request.idempotency_key,
            cancel_requested: false,
            lease: None,
            wake_at_ms: 0,
            error: None,
            created_at_ms: now_ms(),
            started_at_ms: None,
            finished_at_ms: None,
        };
        let new = NewRun {
            run,
            flow: flow.clone(),
        };
        Ok(self.store.create_run(new).await?)
    }

    /// Runs (or resumes) the run to its end: nano, the ECS worker, a resumed run.
    pub async fn run(
        &self,
        run_id: &str,
        options: &RunOptions,
    ) -> Result<StepOutcome, EngineError> {
        let driven = match Session::open(self, run_id, options, Claim::Exclusive).await {
            Ok(Opened::Session(mut session)) => session.run_to_end().await,
            Ok(Opened::Done(outcome)) => Ok(outcome),
            Err(e) => Err(e),
        };
        superseded_is_an_outcome(driven)
    }

    /// Runs exactly one ready task and says what is next: the micro tier, one task per
    /// invocation. The lease is released afterwards so the next invocation starts at once.
    pub async fn step(
        &self,
        run_id: &str,
        options: &RunOptions,
    ) -> Result<StepOutcome, EngineError> {
        let stepped = self.step_session(run_id, options, false).await;
        superseded_is_an_outcome(stepped.map(Stepped::into_outcome))
    }

    /// Runs the run to its end in micro steps, one task a step as [`Executor::step`] runs
    /// them, but each step hands the lease on to the next: a step's last write also reads the
    /// next step and starts its attempt ([`RunStore::finish_and_continue`]). What `dagy run`
    /// does on the micro tier; a Lambda invocation takes one [`Executor::step`] instead.
    pub async fn run_steps(
        &self,
        run_id: &str,
        options: &RunOptions,
    ) -> Result<StepOutcome, EngineError> {
        let mut handed: Option<Box<HandedOn>> = None;
        loop {
            let stepped = match handed.take() {
                Some(next) => {
                    let HandedOn {
                        lease,
                        view,
                        started,
                    } = *next;
                    self.step_at_cursor(lease, view, started, options, true)
                        .await
                }
                None => self.step_session(run_id, options, true).await,
            };
            match stepped.map(Stepped::into_next) {
                Ok(Ok(next)) => handed = Some(next),
                Ok(Err(StepOutcome::Continue { .. })) => {}
                Ok(Err(outcome)) => return Ok(outcome),
                // A store that hands on by taking the lease again may find it taken.
                Err(EngineError::Store(
                    e @ (StoreError::LeaseHeld { .. } | StoreError::RunFinished { .. }),
                )) => return Session::claim_refused(e),
                Err(e) => return superseded_is_an_outcome(Err(e)),
            }
        }
    }

    async fn step_session(
        &self,
        run_id: &str,
        options: &RunOptions,
        hand_on: bool,
    ) -> Result<Stepped, EngineError> {
        let taken = self
            .store
            .acquire_step(run_id, &self.owner, now_ms(), millis(self.lease_ttl))
            .await;
        let (lease, view) = match taken {
            Ok(taken) => taken,
            Err(e) => return Session::claim_refused(e).map(Stepped::Done),
        };
        match view {
            Some(view) => {
                self.step_at_cursor(lease, view, None, options, hand_on)
                    .await
            }
            // A run from before step state: one task, read whole.
            None => {
                let mut session = Session::load(self, lease, options).await?;
                let Some(index) = session.next_ready().await? else {
                    return Ok(Stepped::Done(StepOutcome::Finished(
                        session.finish().await?,
                    )));
                };
                let ran = session.flow.task(index).id.clone();
                if let Some(status) = session.run_task(index).await? {
                    return Ok(Stepped::Done(StepOutcome::Finished(status)));
                }
                if session.next_ready().await?.is_none() {
                    return Ok(Stepped::Done(StepOutcome::Finished(
                        session.finish().await?,
                    )));
                }
                let status = session.tasks[index].status;
                self.store.release_lease(&session.lease, now_ms()).await?;
                Ok(Stepped::Done(StepOutcome::Continue { ran, status }))
            }
        }
    }

    /// One micro step in constant work: the task at the run's cursor, read with its upstream
    /// records only, is run (or skipped when an upstream did not complete), then the cursor
    /// moves on in the same write as the task's end. That write releases the lease, or with
    /// `hand_on` keeps it and reads the next step ([`Stepped::HandedOn`]). `started` is the
    /// attempt the write before already started for this step's task. A run that ends with work
    /// left (cancelled, out of budget) is read whole once to settle the rest.
    async fn step_at_cursor(
        &self,
        lease: Lease,
        view: StepView,
        started: Option<(u32, AttemptStart)>,
        options: &RunOptions,
        hand_on: bool,
    ) -> Result<Stepped, EngineError> {
        let StepView { run, state, task } = view;
        let Some(step) = task else {
            let (status, why) = state.final_status();
            self.store.finish_run(&lease, status, why, now_ms()).await?;
            self.emit(Event::RunFinished { status });
            return Ok(Stepped::Done(StepOutcome::Finished(status)));
        };
        if run.cancel_requested || options.stopping() {
            return self
                .settle_whole(lease, options, TaskEnd::Cancelled)
                .await
                .map(Stepped::Done);
        }
        let ran = step.record.task_id.clone();
        let mut session = Session::for_step(self, options, lease, run, &step)?;
        session.advance_to = step.next.clone();
        session.hand_on = hand_on;
        session.started = started;
        let index = session.tasks.len() - 1;
        let blocked = session.tasks[..index]
            .iter()
            .position(|t| t.status != TaskStatus::Completed);
        let status = if session.tasks[index].status.is_final() {
            session.tasks[index].status
        } else if let Some(upstream) = blocked {
            session.skip_downstream_of(upstream, &[index]).await?;
            TaskStatus::Skipped
        } else {
            match session.attempts(index).await? {
                TaskEnd::Final(status) => status,
                ended => {
                    return self
                        .settle_whole(session.lease, options, ended)
                        .await
                        .map(Stepped::Done);
                }
            }
        };
        if let Some(next) = session.handed_on.take() {
            return Ok(Stepped::HandedOn { ran, status, next });
        }
        if session.advanced {
            return Ok(Stepped::Done(StepOutcome::Continue { ran, status }));
        }
        if options.stopping() {
            return self
                .settle_whole(session.lease, options, TaskEnd::Cancelled)
                .await
                .map(Stepped::Done);
        }
        let verdict = session.tasks[index].verdict(&ran);
        match &step.next {
            Some(next) => {
                self.store
                    .advance_cursor(&session.lease, &ran, Some(next), verdict.as_ref(), now_ms())
                    .await?;
                Ok(Stepped::Done(StepOutcome::Continue { ran, status }))
            }
            None => {
                let mut state = state;
                if let Some(verdict) = &verdict {
                    state.record(verdict);
                }
                let (status, why) = state.final_status();
                let status = session.end(status, why).await?;
                Ok(Stepped::Done(StepOutcome::Finished(status)))
            }
        }
    }

    /// A micro step that ends the run with work left (`ended`: cancelled, or out of budget):
    /// the run is read whole, once, to settle every task left.
    async fn settle_whole(
        &self,
        lease: Lease,
        options: &RunOptions,
        ended: TaskEnd,
    ) -> Result<StepOutcome, EngineError> {
        let mut whole = Session::load(self, lease, options).await?;
        let status = match ended {
            TaskEnd::BudgetExhausted => whole.time_out_rest().await?,
            _ => whole.cancel_rest().await?,
        };
        Ok(StepOutcome::Finished(status))
    }

    /// Ends a run its own executor can no longer end, as this executor's owner (name it with
    /// [`ROUTER_OWNER`] or [`SWEEP_OWNER`]): it takes the lease, settles every unfinished task
    /// and ends the run (see [`RunEnd`]). `None` when the run had ended already or a live
    /// executor holds it: then it is left as it is.
    pub async fn end_run(
        &self,
        run_id: &str,
        end: RunEnd<'_>,
    ) -> Result<Option<RunStatus>, EngineError> {
        let options = RunOptions::default();
        let mut session = match Session::open(self, run_id, &options, Claim::Exclusive).await? {
            Opened::Session(s) => s,
            Opened::Done(_) => return Ok(None),
        };
        let (status, tasks, error_type, why) = match end {
            RunEnd::Abandoned(why) if session.run.cancel_requested => (
                RunStatus::Cancelled,
                TaskStatus::Cancelled,
                "WorkerStopped",
                why,
            ),
            RunEnd::Abandoned(why) => (
                RunStatus::Failed,
                TaskStatus::Cancelled,
                "WorkerStopped",
                why,
            ),
            RunEnd::Lapsed(why) => (RunStatus::TimedOut, TaskStatus::TimedOut, "RunLapsed", why),
        };
        let error = TaskErrorRecord {
            error_type: error_type.into(),
            message: format!("not finished: {why}"),
        };
        session
            .close(status, tasks, error, why.to_string())
            .await
            .map(Some)
    }

    fn emit(&self, event: Event) {
        if let Some(observer) = &self.observer {
            observer.on_event(&event);
        }
    }
}

pub(crate) enum Opened<'a> {
    Session(Box<Session<'a>>),
    Done(StepOutcome),
}

/// How a session holds its run.
pub(crate) enum Claim<'w> {
    /// Alone: the local executor, the ECS worker.
    Exclusive,
    /// Beside the other task invocations of one Step Functions execution, as `worker`.
    Shared { worker: &'w str, ttl: Duration },
}

/// One executor's hold on one run.
pub(crate) struct Session<'a> {
    pub(crate) exec: &'a Executor,
    pub(crate) options: &'a RunOptions,
    pub(crate) lease: Lease,
    renewed_at: Instant,
    pub(crate) flow: Flow,
    pub(crate) run: RunRecord,
    /// Each task's state, in the flow's declaration order.
    pub(crate) tasks: Vec<TaskState>,
    budget_deadline: Option<Instant>,
    /// Every task before this position in the run order is final: the scan for the next
    /// ready task starts here, so a run costs O(tasks), not O(tasks²).
    cursor: usize,
    /// In a micro step with a task after this one: the cursor to move to with the task's last
    /// attempt end (one write, which also releases the lease).
    advance_to: Option<Cursor>,
    /// Whether that write was made: the step is over.
    advanced: bool,
    /// Whether that write keeps the lease and reads the next step
    /// ([`Executor::run_steps`]), which it leaves in `handed_on`.
    hand_on: bool,
    handed_on: Option<Box<HandedOn>>,
    /// The attempt the last step's write started for this step's task, taken by the
    /// task's first [`Session::begin_attempt`].
    started: Option<(u32, AttemptStart)>,
    /// The lease renewal beat and the attempt deadline, kept for the whole session: timers
    /// made afresh for each attempt woke the runtime's parked thread (a system call and a
    /// context switch per task).
    timers: Timers,
}

/// A session's timers: see [`Session::timers`].
struct Timers {
    beat: tokio::time::Interval,
    stop_at: Pin<Box<tokio::time::Sleep>>,
}

impl Timers {
    fn new(period: Duration) -> Timers {
        let mut beat = tokio::time::interval_at(Instant::now() + period, period);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Timers {
            beat,
            stop_at: Box::pin(tokio::time::sleep_until(far_future())),
        }
    }
}

/// Longer than any deadline.
const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// An instant no deadline reaches.
fn far_future() -> Instant {
    Instant::now() + CENTURY
}

/// How an attempt's wait ended.
pub(crate) enum AttemptEnd {
    Returned(TaskResult),
    TimedOut,
    BudgetExhausted,
    LeaseLost,
}

/// What to do after a task's attempts.
pub(crate) enum TaskEnd {
    Final(TaskStatus),
    Cancelled,
    BudgetExhausted,
}

impl<'a> Session<'a> {
    /// Takes the run's lease as `claim` says, or the outcome that ends the step without it
    /// (held by another owner, or the run is final).
    async fn claim(
        exec: &Executor,
        run_id: &str,
        claim: Claim<'_>,
    ) -> Result<Result<Lease, StepOutcome>, EngineError> {
        let taken = match claim {
            Claim::Exclusive => {
                exec.store
                    .acquire_lease(run_id, &exec.owner, now_ms(), millis(exec.lease_ttl))
                    .await
            }
            Claim::Shared { worker, ttl } => {
                exec.store
                    .join_lease(run_id, &exec.owner, worker, now_ms(), millis(ttl))
                    .await
            }
        };
        match taken {
            Ok(lease) => Ok(Ok(lease)),
            Err(e) => Session::claim_refused(e).map(Err),
        }
    }

    /// The outcome of a step whose claim on the run was refused: held by another owner, or
    /// the run is final; any other error is one.
    fn claim_refused(e: StoreError) -> Result<StepOutcome, EngineError> {
        match e {
            StoreError::LeaseHeld {
                owner,
                expires_at_ms,
                ..
            } => Ok(StepOutcome::Busy {
                owner,
                until_ms: expires_at_ms,
            }),
            StoreError::RunFinished { status, .. } => Ok(StepOutcome::Finished(status)),
            e => Err(e.into()),
        }
    }

    pub(crate) async fn open(
        exec: &'a Executor,
        run_id: &str,
        options: &'a RunOptions,
        claim: Claim<'_>,
    ) -> Result<Opened<'a>, EngineError> {
        match Self::claim(exec, run_id, claim).await? {
            Ok(lease) => Ok(Opened::Session(Box::new(
                Self::load(exec, lease, options).await?,
            ))),
            Err(outcome) => Ok(Opened::Done(outcome)),
        }
    }

    /// The whole run under `lease`: its flow and every task's record.
    async fn load(
        exec: &'a Executor,
        lease: Lease,
        options: &'a RunOptions,
    ) -> Result<Session<'a>, EngineError> {
        let run_id = lease.run_id.clone();
        let snapshot = exec.store.load_run(&run_id).await?;
        // The records become states before the graph is built: the two are never held at once.
        let tasks = in_declaration_order(&snapshot.flow.tasks, snapshot.tasks);
        let flow = match Flow::from_shared(snapshot.flow, None) {
            Ok(flow) => flow,
            Err(e) => {
                let message = e.to_string();
                exec.store
                    .finish_run(&lease, RunStatus::Failed, Some(message.clone()), now_ms())
                    .await?;
                return Err(EngineError::InvalidStoredFlow { run_id, message });
            }
        };
        let tasks = tasks.map_err(|message| EngineError::CorruptRun {
            run_id: run_id.clone(),
            message,
        })?;
        Ok(Self::with(exec, options, lease, flow, snapshot.run, tasks))
    }

    /// A session over `flow` (the whole run's, or one step's part of it) and its tasks'
    /// states, in the flow's declaration order.
    fn with(
        exec: &'a Executor,
        options: &'a RunOptions,
        lease: Lease,
        flow: Flow,
        run: RunRecord,
        tasks: Vec<TaskState>,
    ) -> Session<'a> {
        let budget_deadline = match options.budget {
            Budget::Flow(d) => Some(Instant::now() + d),
            _ => None,
        };
        // A shared lease is not renewed: each worker joined it for as long as it may run, so
        // its first beat is past any deadline.
        let beat = if lease.worker.is_some() {
            CENTURY
        } else {
            exec.lease_ttl / 3
        };
        Session {
            exec,
            options,
            lease,
            renewed_at: Instant::now(),
            flow,
            run,
            tasks,
            budget_deadline,
            cursor: 0,
            advance_to: None,
            advanced: false,
            hand_on: false,
            handed_on: None,
            started: None,
            timers: Timers::new(beat),
        }
    }

    /// The session of one micro step: a flow of the task at the cursor and its upstream
    /// tasks (those first, as roots), with their records.
    fn for_step(
        exec: &'a Executor,
        options: &'a RunOptions,
        lease: Lease,
        run: RunRecord,
        step: &StepTask,
    ) -> Result<Session<'a>, EngineError> {
        let mut spec = dagy_core::FlowSpec {
            spec_version: dagy_core::flow::SPEC_VERSION,
            name: run.flow_name.clone(),
            parameters: serde_json::Map::new(),
            tasks: Vec::with_capacity(step.upstream.len() + 1),
        };
        for upstream in &step.upstream {
            spec.tasks
                .push(TaskSpec::new(upstream.task_id.clone(), "upstream"));
        }
        spec.tasks.push(step.spec.clone());
        let flow = spec.validate(None).map_err(|e| EngineError::CorruptRun {
            run_id: run.run_id.clone(),
            message: format!("task {}'s stored spec is not valid: {e}", step.spec.id),
        })?;
        let records = step.upstream.iter().chain([&step.record]);
        let tasks = records.cloned().map(TaskState::from).collect();
        Ok(Self::with(exec, options, lease, flow, run, tasks))
    }

    /// Runs task after task until the run ends.
    async fn run_to_end(&mut self) -> Result<StepOutcome, EngineError> {
        loop {
            if let Some(status) = self.advance().await? {
                return Ok(StepOutcome::Finished(status));
            }
        }
    }

    /// Runs the next ready task, or finishes the run when none is left.
    async fn advance(&mut self) -> Result<Option<RunStatus>, EngineError> {
        match self.next_ready().await? {
            None => Ok(Some(self.finish().await?)),
            Some(index) => self.run_task(index).await,
        }
    }

    /// The first unfinished task in run order, after skipping any whose upstream did not
    /// complete (a resumed run may have stopped between a failure and its skips).
    async fn next_ready(&mut self) -> Result<Option<usize>, EngineError> {
        while let Some(&index) = self.flow.order().get(self.cursor) {
            if self.tasks[index].status.is_final() {
                self.cursor += 1;
                continue;
            }
            let blocked = self
                .flow
                .dependencies(index)
                .iter()
                .find(|&&d| self.tasks[d].status != TaskStatus::Completed)
                .copied();
            match blocked {
                None => return Ok(Some(index)),
                Some(upstream) => self.skip_downstream_of(upstream, &[index]).await?,
            }
        }
        Ok(None)
    }

    /// Runs every attempt of one task; `Some(status)` when the run ended with it.
    async fn run_task(&mut self, index: usize) -> Result<Option<RunStatus>, EngineError> {
        match self.attempts(index).await? {
            TaskEnd::Final(status) => {
                if status != TaskStatus::Completed {
                    let failed = self.flow.task(index).id.clone();
                    let downstream = self.flow.downstream(index);
                    self.skip_downstream_of(index, &downstream).await?;
                    tracing::debug!(
                        task_id = failed,
                        skipped = downstream.len(),
                        "downstream skipped"
                    );
                }
                if self.options.stopping() {
                    return Ok(Some(self.cancel_rest().await?));
                }
                Ok(None)
            }
            TaskEnd::Cancelled => Ok(Some(self.cancel_rest().await?)),
            TaskEnd::BudgetExhausted => Ok(Some(self.time_out_rest().await?)),
        }
    }

    /// Runs the attempts of one task until it ends, the run stops, or the budget runs out.
    async fn attempts(&mut self, index: usize) -> Result<TaskEnd, EngineError> {
        let spec = self.flow.task(index).clone();
        let task_started = Instant::now();
        let budget_deadline = match self.options.budget {
            Budget::PerTask(d) => Some(task_started + d),
            _ => self.budget_deadline,
        };
        let budget_deadline = earliest(budget_deadline, self.options.deadline);
        loop {
            if self.options.stopping() {
                return Ok(TaskEnd::Cancelled);
            }
            if budget_deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(TaskEnd::BudgetExhausted);
            }
            let Some(attempt) = self.begin_attempt(index).await? else {
                return Ok(TaskEnd::Cancelled);
            };
            if let Some(error) = too_often_interrupted(self.tasks[index].interruptions, "executor")
            {
                return self
                    .record_final(index, attempt, TaskStatus::Failed, error, task_started)
                    .await;
            }
            let task_deadline = retry::attempt_deadline(spec.timeout_seconds);
            let end = self
                .wait_for_attempt(index, &spec, attempt, task_deadline, budget_deadline)
                .await?;
            let error = match self
                .record_attempt_end(index, attempt, end, task_started)
                .await?
            {
                Ok(task_end) => return Ok(task_end),
                Err(error) => error,
            };
            if let Some(task_end) = self
                .retry_or_fail(index, attempt, error, task_started, budget_deadline)
                .await?
            {
                return Ok(task_end);
            }
        }
    }

    /// Writes the start of the task's next attempt and returns its number; `None` when a
    /// cancel was requested.
    pub(crate) async fn begin_attempt(&mut self, index: usize) -> Result<Option<u32>, EngineError> {
        self.renew_if_due().await?;
        let attempt = self.tasks[index].attempts + 1;
        let task_id = self.flow.task(index).id.clone();
        let prestarted = self.started.take().filter(|&(n, _)| n == attempt);
        let started = match prestarted {
            Some((_, started)) => started,
            None => match self
                .exec
                .store
                .start_attempt(&self.lease, &task_id, attempt, now_ms())
                .await
            {
                Ok(started) => started,
                Err(StoreError::CancelRequested { .. }) => return Ok(None),
                Err(e) => return Err(e.into()),
            },
        };
        let task = &mut self.tasks[index];
        task.status = TaskStatus::Running;
        task.attempts = attempt;
        if started.interrupted {
            task.interruptions += 1;
        }
        self.exec.emit(Event::AttemptStarted { task_id, attempt });
        Ok(Some(attempt))
    }

    /// Records how an attempt ended when that ends the task (an output, the budget, a cancel),
    /// and returns the failure otherwise.
    async fn record_attempt_end(
        &mut self,
        index: usize,
        attempt: u32,
        end: AttemptEnd,
        task_started: Instant,
    ) -> Result<Result<TaskEnd, TaskError>, EngineError> {
        let error = match end {
            AttemptEnd::Returned(Ok(output)) => {
                return self
                    .record_output(index, attempt, output, task_started)
                    .await
                    .map(Ok);
            }
            AttemptEnd::LeaseLost => {
                return Err(StoreError::LeaseLost {
                    run_id: self.run.run_id.clone(),
                }
                .into());
            }
            AttemptEnd::BudgetExhausted => {
                let error = TaskError::permanent(format!(
                    "{} during attempt {attempt}",
                    self.options.budget.describe()
                ))
                .with_type("BudgetExhausted");
                self.record_final(index, attempt, TaskStatus::TimedOut, error, task_started)
                    .await?;
                return Ok(Ok(TaskEnd::BudgetExhausted));
            }
            AttemptEnd::TimedOut => self.timed_out(index, attempt),
            AttemptEnd::Returned(Err(error)) => error,
        };
        if self.options.cancel.is_cancelled() {
            let error = TaskError::permanent(format!(
                "cancelled during attempt {attempt}: {}",
                error.message
            ))
            .with_type("Cancelled");
            self.record_final(index, attempt, TaskStatus::Cancelled, error, task_started)
                .await?;
            return Ok(Ok(TaskEnd::Cancelled));
        }
        Ok(Err(error))
    }

    /// The error of an attempt that ran past the task's `timeout_seconds`.
    pub(crate) fn timed_out(&self, index: usize, attempt: u32) -> TaskError {
        TaskError::new(format!(
            "attempt {attempt} ran past timeout_seconds {}",
            self.flow.task(index).timeout_seconds.unwrap_or_default()
        ))
        .with_type("TaskTimedOut")
    }

    /// The status a task ends with after an attempt failed with `error`, when that ends it: a
    /// permanent error, or no retries left (timed out for a timeout, failed otherwise). `None`:
    /// it is retried.
    pub(crate) fn final_after(&self, index: usize, error: &TaskError) -> Option<TaskStatus> {
        let failures = self.tasks[index].failures + 1;
        if error.retryable && failures <= self.flow.task(index).retries {
            return None;
        }
        Some(if error.error_type == "TaskTimedOut" {
            TaskStatus::TimedOut
        } else {
            TaskStatus::Failed
        })
    }

    /// After a failed attempt: fails the task for good (a permanent error, no retries left), or
    /// records it retrying and waits out its delay. `None`: start the next attempt.
    async fn retry_or_fail(
        &mut self,
        index: usize,
        attempt: u32,
        error: TaskError,
        task_started: Instant,
        budget_deadline: Option<Instant>,
    ) -> Result<Option<TaskEnd>, EngineError> {
        let spec = self.flow.task(index).clone();
        let failures = self.tasks[index].failures + 1;
        if let Some(status) = self.final_after(index, &error) {
            return self
                .record_final(index, attempt, status, error, task_started)
                .await
                .map(Some);
        }
        let delay = retry::retry_delay(&spec, failures, retry::random_unit());
        let record = self.fit_error(&error);
        self.write_attempt_end(&spec.id, attempt, AttemptOutcome::Retrying(record))
            .await?;
        let task = &mut self.tasks[index];
        task.status = TaskStatus::Retrying;
        task.failures = failures;
        self.exec.emit(Event::Retrying {
            task_id: spec.id.clone(),
            attempt,
            error: error.to_string(),
            delay,
        });
        let wake = Instant::now() + delay;
        if budget_deadline.is_some_and(|d| wake >= d) {
            return Ok(Some(TaskEnd::BudgetExhausted));
        }
        tokio::select! {
            () = tokio::time::sleep_until(wake) => Ok(None),
            () = self.options.stopped() => Ok(Some(TaskEnd::Cancelled)),
        }
    }

    /// Starts the handler and waits for it, its timeout, the budget, or a lost lease,
    /// renewing the lease while it runs.
    pub(crate) async fn wait_for_attempt(
        &mut self,
        index: usize,
        spec: &TaskSpec,
        attempt: u32,
        task_deadline: Option<Instant>,
        budget_deadline: Option<Instant>,
    ) -> Result<AttemptEnd, EngineError> {
        let deadline = earliest(task_deadline, budget_deadline);
        let by_budget = match (task_deadline, budget_deadline) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(t), Some(b)) => b < t,
        };
        let ctx = TaskContext {
            cancel: self.options.cancel.child_token(),
            deadline,
            ..TaskContext::new(self.run.run_id.clone(), spec.id.clone(), attempt)
        }
        .with_state(self.exec.registry.shared_state());
        let input = self.input_of(index);
        let mut handle = self.spawn_handler(spec, ctx.clone(), input);
        let stop_at = deadline.unwrap_or_else(far_future);
        if self.timers.stop_at.deadline() != stop_at {
            self.timers.stop_at.as_mut().reset(stop_at);
        }
        loop {
            tokio::select! {
                joined = &mut handle => {
                    return Ok(AttemptEnd::Returned(joined.unwrap_or_else(|e| Err(join_error(e)))));
                }
                () = self.options.cancel.cancelled() => {
                    // The handler saw its own token fire with this one; give it a moment.
                    let joined = match tokio::time::timeout(CANCEL_GRACE, &mut handle).await {
                        Ok(joined) => joined.unwrap_or_else(|e| Err(join_error(e))),
                        Err(_) => {
                            handle.abort();
                            Err(TaskError::new(format!(
                                "the handler did not stop within {} s of the cancel; it was abandoned",
                                CANCEL_GRACE.as_secs()
                            ))
                            .with_type("Cancelled"))
                        }
                    };
                    return Ok(AttemptEnd::Returned(joined));
                }
                () = self.timers.stop_at.as_mut() => {
                    ctx.cancel.cancel();
                    handle.abort();
                    return Ok(if by_budget { AttemptEnd::BudgetExhausted } else { AttemptEnd::TimedOut });
                }
                _ = self.timers.beat.tick() => {
                    match self.exec.store.renew_lease(&self.lease, now_ms(), millis(self.exec.lease_ttl)).await {
                        Ok(lease) => {
                            self.lease = lease;
                            self.renewed_at = Instant::now();
                        }
                        Err(StoreError::LeaseLost { .. }) => {
                            ctx.cancel.cancel();
                            handle.abort();
                            return Ok(AttemptEnd::LeaseLost);
                        }
                        Err(e) => tracing::warn!(error = %e, "lease renewal failed; retrying at the next beat"),
                    }
                }
            }
        }
    }

    fn spawn_handler(
        &self,
        spec: &TaskSpec,
        ctx: TaskContext,
        input: Value,
    ) -> JoinHandle<TaskResult> {
        if let Some(function) = spec.lambda_function() {
            let function = function.to_string();
            return match self.exec.registry.lambda_invoker() {
                Some(invoker) => {
                    tokio::spawn(async move { invoker.invoke(&function, input).await })
                }
                None => ready(Err(TaskError::permanent(format!(
                    "task {} calls lambda:{function}, but this executor has no Lambda client; \
                     run it on AWS (or give the registry a LambdaInvoker)",
                    spec.id
                ))
                .with_type("HandlerNotFound"))),
            };
        }
        match self.exec.registry.get(&spec.handler) {
            Some(Handler::Async(f)) => tokio::spawn(f(ctx, input)),
            Some(Handler::Blocking(f)) => tokio::task::spawn_blocking(move || f(ctx, input)),
            None => {
                let mut names =
                    dagy_core::HandlerCatalog::handler_names(self.exec.registry.as_ref());
                names.sort();
                ready(Err(TaskError::permanent(format!(
                    "handler \"{}\" is not registered in this executor (registered: {})",
                    spec.handler,
                    names.join(", ")
                ))
                .with_type("HandlerNotFound")))
            }
        }
    }

    /// `{parameters, upstream: {id: output}, args}`.
    fn input_of(&self, index: usize) -> Value {
        let upstream: Map<String, Value> = self
            .flow
            .dependencies(index)
            .iter()
            .map(|&d| {
                let output = self.tasks[d].output.as_ref();
                let output = output.map_or(Value::Null, JsonText::to_value);
                (self.flow.task(d).id.clone(), output)
            })
            .collect();
        json!({
            "parameters": self.run.parameters,
            "upstream": upstream,
            "args": self.flow.task(index).args.as_ref().map(JsonText::to_value),
        })
    }

    /// Writes how attempt `attempt` of task `id` ended, under this session's lease. The last
    /// attempt of a micro step's task also moves the run's cursor on (see
    /// [`Session::advance_to`]), in the same write where the store can; not when a stop was
    /// asked for during the attempt: the step then settles the run under its lease.
    pub(crate) async fn write_attempt_end(
        &mut self,
        id: &str,
        attempt: u32,
        outcome: AttemptOutcome,
    ) -> Result<(), EngineError> {
        let ends_step = !matches!(outcome, AttemptOutcome::Retrying(_)) && !self.options.stopping();
        let store = &self.exec.store;
        match self.advance_to.take_if(|_| ends_step) {
            Some(to) => {
                let verdict = match &outcome {
                    AttemptOutcome::Finished(status, error) => {
                        Verdict::of_end(id, *status, Some(error))
                    }
                    _ => None,
                };
                if self.hand_on {
                    let next = store
                        .finish_and_continue(
                            &self.lease,
                            id,
                            attempt,
                            outcome,
                            &to,
                            verdict.as_ref(),
                            now_ms(),
                            millis(self.exec.lease_ttl),
                        )
                        .await?;
                    self.handed_on = Some(Box::new(next));
                } else {
                    store
                        .finish_and_advance(
                            &self.lease,
                            id,
                            attempt,
                            outcome,
                            Some(&to),
                            verdict.as_ref(),
                            now_ms(),
                        )
                        .await?;
                }
                self.advanced = true;
            }
            None => {
                store
                    .finish_attempt(&self.lease, id, attempt, outcome, now_ms())
                    .await?;
            }
        }
        Ok(())
    }

    pub(crate) async fn record_output(
        &mut self,
        index: usize,
        attempt: u32,
        output: Value,
        started: Instant,
    ) -> Result<TaskEnd, EngineError> {
        let depth = dagy_core::json::depth(&output);
        if depth > dagy_core::json::MAX_OUTPUT_DEPTH {
            let error = TaskError::permanent(format!(
                "the output nests {depth} levels deep, over the limit of {} levels; return a \
                 flatter value (a handler that returns its whole input nests its upstream's \
                 output one level deeper each task: return the part downstream tasks need)",
                dagy_core::json::MAX_OUTPUT_DEPTH
            ))
            .with_type("OutputTooDeep");
            return self
                .record_final(index, attempt, TaskStatus::Failed, error, started)
                .await;
        }
        // Written once: its length is checked, and the text is what the store keeps.
        let output = JsonText::from(output);
        let limit = self.exec.store.limits().max_output_bytes;
        let bytes = output.json().len();
        if bytes > limit {
            let error = TaskError::permanent(format!(
                "the output is {bytes} bytes, over the store's limit of {limit} bytes; write large \
                 data elsewhere (S3, say) and return a reference to it"
            ))
            .with_type("OutputTooLarge");
            return self
                .record_final(index, attempt, TaskStatus::Failed, error, started)
                .await;
        }
        let id = self.flow.task(index).id.clone();
        self.write_attempt_end(&id, attempt, AttemptOutcome::Completed(output.clone()))
            .await?;
        let task = &mut self.tasks[index];
        task.status = TaskStatus::Completed;
        task.output = Some(output);
        self.exec.emit(Event::TaskFinished {
            task_id: id,
            status: TaskStatus::Completed,
            attempts: attempt,
            elapsed: started.elapsed(),
            error: None,
        });
        Ok(TaskEnd::Final(TaskStatus::Completed))
    }

    pub(crate) async fn record_final(
        &mut self,
        index: usize,
        attempt: u32,
        status: TaskStatus,
        error: TaskError,
        started: Instant,
    ) -> Result<TaskEnd, EngineError> {
        let id = self.flow.task(index).id.clone();
        let record = self.fit_error(&error);
        self.write_attempt_end(
            &id,
            attempt,
            AttemptOutcome::Finished(status, record.clone()),
        )
        .await?;
        let task = &mut self.tasks[index];
        task.status = status;
        task.failures += 1;
        task.error = Some(Box::new(record));
        self.exec.emit(Event::TaskFinished {
            task_id: id,
            status,
            attempts: attempt,
            elapsed: started.elapsed(),
            error: Some(error.to_string()),
        });
        Ok(TaskEnd::Final(status))
    }

    /// An error record the store can hold: a message over the limit is replaced by one that
    /// says so and quotes its beginning, never cut silently.
    pub(crate) fn fit_error(&self, error: &TaskError) -> TaskErrorRecord {
        let limit = self.exec.store.limits().max_error_bytes;
        let message = if error.message.len() <= limit {
            error.message.clone()
        } else {
            let mut end = 1024.min(limit / 2);
            while !error.message.is_char_boundary(end) {
                end -= 1;
            }
            format!(
                "the error message was {} bytes, over the store's limit of {limit} bytes; it began: {}",
                error.message.len(),
                &error.message[..end]
            )
        };
        TaskErrorRecord {
            error_type: error.error_type.clone(),
            message,
        }
    }

    pub(crate) async fn settle(
        &mut self,
        indices: &[usize],
        status: TaskStatus,
        error: TaskErrorRecord,
    ) -> Result<(), EngineError> {
        let open: Vec<usize> = indices
            .iter()
            .copied()
            .filter(|&i| !self.tasks[i].status.is_final())
            .collect();
        if open.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = open.iter().map(|&i| self.flow.task(i).id.clone()).collect();
        self.exec
            .store
            .settle_tasks(&self.lease, &ids, status, error.clone(), now_ms())
            .await?;
        for (&i, id) in open.iter().zip(ids) {
            self.tasks[i].status = status;
            self.tasks[i].error = Some(Box::new(error.clone()));
            self.exec.emit(Event::TaskFinished {
                task_id: id,
                status,
                attempts: self.tasks[i].attempts,
                elapsed: Duration::ZERO,
                error: Some(error.message.clone()),
            });
        }
        Ok(())
    }

    pub(crate) async fn skip_downstream_of(
        &mut self,
        upstream: usize,
        indices: &[usize],
    ) -> Result<(), EngineError> {
        let name = self.flow.task(upstream).id.clone();
        let status = self.tasks[upstream].status;
        let error = TaskErrorRecord {
            error_type: "UpstreamFailed".into(),
            message: format!("not run: upstream task {name} ended {status}"),
        };
        self.settle(indices, TaskStatus::Skipped, error).await
    }

    pub(crate) fn unfinished(&self) -> Vec<usize> {
        (0..self.tasks.len())
            .filter(|&i| !self.tasks[i].status.is_final())
            .collect()
    }

    /// The one way a run ends with work left: every unfinished task is settled as `tasks`
    /// with `error`, then the run ends as `status` with `why`. Cancels, budgets, abandoned and
    /// lapsed runs all end through it.
    pub(crate) async fn close(
        &mut self,
        status: RunStatus,
        tasks: TaskStatus,
        error: TaskErrorRecord,
        why: String,
    ) -> Result<RunStatus, EngineError> {
        let rest = self.unfinished();
        self.settle(&rest, tasks, error).await?;
        self.end(status, Some(why)).await
    }

    pub(crate) async fn cancel_rest(&mut self) -> Result<RunStatus, EngineError> {
        let error = TaskErrorRecord {
            error_type: "Cancelled".into(),
            message: "not run: the run was cancelled".into(),
        };
        self.close(
            RunStatus::Cancelled,
            TaskStatus::Cancelled,
            error,
            "cancelled on request".into(),
        )
        .await
    }

    async fn time_out_rest(&mut self) -> Result<RunStatus, EngineError> {
        let why = self.options.budget.describe();
        let error = TaskErrorRecord {
            error_type: "BudgetExhausted".into(),
            message: format!("not run: {why}"),
        };
        self.close(RunStatus::TimedOut, TaskStatus::TimedOut, error, why)
            .await
    }

    /// Ends the run by what its tasks did (see [`final_status`]).
    pub(crate) async fn finish(&mut self) -> Result<RunStatus, EngineError> {
        let (status, message) = final_status(&self.flow, &self.tasks);
        self.end(status, message).await
    }

    pub(crate) async fn end(
        &mut self,
        status: RunStatus,
        error: Option<String>,
    ) -> Result<RunStatus, EngineError> {
        self.run = self
            .exec
            .store
            .finish_run(&self.lease, status, error, now_ms())
            .await?;
        self.exec.emit(Event::RunFinished { status });
        Ok(status)
    }

    async fn renew_if_due(&mut self) -> Result<(), EngineError> {
        if self.renewed_at.elapsed() >= self.exec.lease_ttl / 3 {
            self.lease = self
                .exec
                .store
                .renew_lease(&self.lease, now_ms(), millis(self.exec.lease_ttl))
                .await?;
            self.renewed_at = Instant::now();
        }
        Ok(())
    }
}

/// The status a run whose tasks are all final ends with, and why: `cancelled` when any task was
/// cancelled, `failed` when any failed, timed out or was skipped, `completed` only when every
/// task completed. The message names the first task, in run order, that decided it.
pub(crate) fn final_status(flow: &Flow, tasks: &[TaskState]) -> (RunStatus, Option<String>) {
    let mut state = StepState::default();
    let verdicts = flow.order().iter();
    for verdict in verdicts.filter_map(|&i| tasks[i].verdict(&flow.task(i).id)) {
        state.record(&verdict);
    }
    state.final_status()
}

/// A lost lease, or a task found in another executor's hands, ends this executor's work
/// without an error: the run goes on elsewhere.
fn superseded_is_an_outcome(
    result: Result<StepOutcome, EngineError>,
) -> Result<StepOutcome, EngineError> {
    match result {
        Err(EngineError::Store(StoreError::LeaseLost { run_id }))
        | Err(EngineError::Store(StoreError::TaskConflict { run_id, .. })) => {
            tracing::warn!(run_id, "another executor took the run over; this one stops");
            Ok(StepOutcome::Superseded)
        }
        other => other,
    }
}

fn ready(result: TaskResult) -> JoinHandle<TaskResult> {
    tokio::spawn(async move { result })
}

fn join_error(e: tokio::task::JoinError) -> TaskError {
    if e.is_panic() {
        let payload = e.into_panic();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        TaskError::new(format!("the handler panicked: {message}")).with_type("HandlerPanicked")
    } else {
        TaskError::new("the handler was stopped before it returned").with_type("HandlerAborted")
    }
}

pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
