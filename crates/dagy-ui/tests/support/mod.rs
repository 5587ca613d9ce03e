//! Runs written through the store API, as an executor would write them, for the route tests
//! and the render benchmark.

#![allow(dead_code)]

use dagy_core::{BackendKind, ExecutionMode, FlowSpec, RuntimeTier, TaskSpec};
use dagy_store::{
    AttemptOutcome, Lease, MemoryStore, NewRun, PlanRecord, RunRecord, RunStatus, RunStore,
    StoreError, TaskErrorRecord, TaskStatus,
};
use serde_json::json;

/// A flow of `tasks`, each `(id, dependencies)`.
pub fn flow(name: &str, tasks: &[(&str, &[&str])]) -> FlowSpec {
    FlowSpec {
        spec_version: dagy_core::flow::SPEC_VERSION,
        name: name.into(),
        parameters: Default::default(),
        tasks: tasks
            .iter()
            .map(|(id, deps)| {
                let mut task = TaskSpec::new(*id, "noop");
                task.depends_on = deps.iter().map(|d| d.to_string()).collect();
                task
            })
            .collect(),
    }
}

/// A micro-tier Lambda plan, with its reason.
pub fn plan() -> PlanRecord {
    PlanRecord {
        tier: RuntimeTier::Micro,
        backend: BackendKind::Lambda,
        decided_by: "rule:many_tasks".into(),
        reason: "the flow has 40 tasks, over nano's 25".into(),
        fallback: None,
        mode: ExecutionMode::TaskPerInvocation,
        resources: None,
    }
}

/// The record of a new pending run.
pub fn new_run(run_id: &str, flow: FlowSpec, created_at_ms: u64) -> NewRun {
    NewRun {
        run: RunRecord {
            run_id: run_id.into(),
            flow_name: flow.name.clone(),
            deployment: None,
            status: RunStatus::Pending,
            parameters: Default::default(),
            plan: Some(plan()),
            idempotency_key: None,
            cancel_requested: false,
            lease: None,
            wake_at_ms: 0,
            error: None,
            created_at_ms,
            started_at_ms: None,
            finished_at_ms: None,
        },
        flow: flow.validate(None).expect("a valid flow"),
    }
}

/// Writes a run's progress as its executor would: attempts under a lease, at given times.
pub struct Driver<'a> {
    /// The store written to.
    pub store: &'a MemoryStore,
    /// The executor's lease.
    pub lease: Lease,
}

impl<'a> Driver<'a> {
    /// Creates `new` and takes its lease at `now_ms` (the run is running from then).
    pub async fn start(store: &'a MemoryStore, new: NewRun, now_ms: u64) -> Driver<'a> {
        let run_id = new.run.run_id.clone();
        store.create_run(new).await.expect("create the run");
        let lease = store
            .acquire_lease(&run_id, "executor-1", now_ms, 3_600_000)
            .await
            .expect("take the lease");
        Driver { store, lease }
    }

    /// Starts attempt `attempt` of `task` at `at_ms`.
    pub async fn begin(&self, task: &str, attempt: u32, at_ms: u64) {
        self.try_begin(task, attempt, at_ms)
            .await
            .expect("start the attempt");
    }

    /// Starts attempt `attempt` of `task` at `at_ms`, or says why not (a cancel request).
    pub async fn try_begin(&self, task: &str, attempt: u32, at_ms: u64) -> Result<(), StoreError> {
        self.store
            .start_attempt(&self.lease, task, attempt, at_ms)
            .await
            .map(|_| ())
    }

    /// Ends attempt `attempt` of `task` at `at_ms`.
    pub async fn end(&self, task: &str, attempt: u32, outcome: AttemptOutcome, at_ms: u64) {
        self.store
            .finish_attempt(&self.lease, task, attempt, outcome, at_ms)
            .await
            .expect("finish the attempt");
    }

    /// One attempt from `from_ms` to `to_ms`.
    pub async fn attempt(
        &self,
        task: &str,
        attempt: u32,
        from_ms: u64,
        to_ms: u64,
        outcome: AttemptOutcome,
    ) {
        self.begin(task, attempt, from_ms).await;
        self.end(task, attempt, outcome, to_ms).await;
    }

    /// Settles tasks that will not run as `skipped`.
    pub async fn skip(&self, tasks: &[&str], at_ms: u64) {
        self.settle(tasks, TaskStatus::Skipped, "upstream failed", at_ms)
            .await;
    }

    /// Gives tasks that will not run their final `status`.
    pub async fn settle(&self, tasks: &[&str], status: TaskStatus, why: &str, at_ms: u64) {
        let ids: Vec<String> = tasks.iter().map(|t| t.to_string()).collect();
        self.store
            .settle_tasks(&self.lease, &ids, status, error("NotRun", why), at_ms)
            .await
            .expect("settle");
    }

    /// Ends the run.
    pub async fn finish(&self, status: RunStatus, error: Option<&str>, at_ms: u64) {
        self.store
            .finish_run(&self.lease, status, error.map(str::to_string), at_ms)
            .await
            .expect("finish the run");
    }
}

/// A task error.
pub fn error(error_type: &str, message: &str) -> TaskErrorRecord {
    TaskErrorRecord {
        error_type: error_type.into(),
        message: message.into(),
    }
}

/// A completed attempt's outcome.
pub fn done(output: serde_json::Value) -> AttemptOutcome {
    AttemptOutcome::Completed(output.into())
}

/// The shape of a large real flow, 1,700 tasks: a start, a 400-wide fan-out, a second
/// 400-wide level with cross links, a 400-way fan-in, a 98-task chain, then two more 400-wide
/// levels.
pub fn large_flow() -> FlowSpec {
    let mut tasks: Vec<(String, Vec<String>)> = vec![("start".into(), vec![])];
    for i in 0..400 {
        tasks.push((format!("extract_{i:03}"), vec!["start".into()]));
    }
    for i in 0..400 {
        let mut deps = vec![format!("extract_{i:03}")];
        if i % 2 == 0 {
            deps.push(format!("extract_{:03}", (i + 1) % 400));
        }
        tasks.push((format!("clean_{i:03}"), deps));
    }
    tasks.push((
        "join".into(),
        (0..400).map(|i| format!("clean_{i:03}")).collect(),
    ));
    let mut previous = "join".to_string();
    for i in 0..98 {
        let id = format!("chain_{i:02}");
        tasks.push((id.clone(), vec![previous]));
        previous = id;
    }
    for i in 0..400 {
        tasks.push((format!("shard_{i:03}"), vec![previous.clone()]));
    }
    for i in 0..400 {
        tasks.push((
            format!("report_{i:03}"),
            vec![
                format!("shard_{i:03}"),
                format!("shard_{:03}", (i + 1) % 400),
            ],
        ));
    }
    let mut spec = flow("warehouse", &[]);
    spec.tasks = tasks
        .into_iter()
        .map(|(id, deps)| {
            let mut task = TaskSpec::new(id, "noop");
            task.depends_on = deps;
            task.retries = 2;
            task
        })
        .collect();
    spec
}

/// Runs [`large_flow`] to completion in `store` as run `run_id`: every task in declaration
/// order (a topological order for this flow), every 50th with a failed first attempt and a
/// retry 500 ms later. Returns the number of attempts written.
pub async fn run_large(store: &MemoryStore, run_id: &str, start_ms: u64) -> usize {
    let spec = large_flow();
    let ids: Vec<String> = spec.tasks.iter().map(|t| t.id.clone()).collect();
    let driver = Driver::start(store, new_run(run_id, spec, start_ms), start_ms).await;
    let mut now = start_ms + 10;
    let mut attempts = 0;
    for (i, id) in ids.iter().enumerate() {
        if i % 50 == 7 {
            let failed = AttemptOutcome::Retrying(error("TaskFailed", "connection reset by peer"));
            driver.attempt(id, 1, now, now + 40, failed).await;
            now += 540;
            attempts += 1;
            driver
                .attempt(
                    id,
                    2,
                    now,
                    now + 60,
                    done(json!({"rows": i, "retried": true})),
                )
                .await;
        } else {
            driver
                .attempt(
                    id,
                    1,
                    now,
                    now + 25 + (i as u64 % 7) * 5,
                    done(json!({"rows": i})),
                )
                .await;
        }
        attempts += 1;
        now += 20;
    }
    driver.finish(RunStatus::Completed, None, now + 5).await;
    attempts
}
