//! The task-executor's engine calls, as a Step Functions execution makes them: one attempt per
//! invocation, invocations side by side under one shared lease, and the execution's end.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use dagy_core::{FlowBuilder, FlowSpec};
use dagy_engine::{
    Executor, RunOptions, STATE_MACHINE_OWNER, StateMachineEnd, TaskError, TaskInvocation,
};
use dagy_store::{MemoryStore, RunSnapshot, RunStatus, RunStore, TaskStatus, now_ms};

struct Harness {
    store: Arc<MemoryStore>,
    executor: Executor,
    counted: Arc<AtomicU32>,
}

fn harness() -> Harness {
    let store = Arc::new(MemoryStore::new());
    let counted = Arc::new(AtomicU32::new(0));
    let mut registry = dagy_handlers::registry();
    let calls = counted.clone();
    registry.register("count", move |_ctx, input: Value| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(input["args"].clone())
        }
    });
    registry.register("permanent", |_ctx, _input| async move {
        Err(TaskError::permanent("bad configuration"))
    });
    let executor = Executor::new(store.clone(), Arc::new(registry)).with_owner(STATE_MACHINE_OWNER);
    Harness {
        store,
        executor,
        counted,
    }
}

impl Harness {
    async fn start(&self, spec: FlowSpec) -> String {
        common::start_run(&self.executor, spec).await
    }

    async fn invoke(&self, run_id: &str, task_id: &str, worker: &str) -> TaskInvocation {
        self.executor
            .run_state_machine_task(run_id, task_id, worker, &RunOptions::default())
            .await
            .expect("the invocation answers")
    }

    async fn end(&self, run_id: &str, end: StateMachineEnd) -> RunStatus {
        self.executor
            .end_state_machine_run(run_id, "recorder", &end)
            .await
            .expect("the end is recorded")
    }

    async fn snapshot(&self, run_id: &str) -> RunSnapshot {
        self.store.load_run(run_id).await.expect("load")
    }

    async fn task(&self, run_id: &str, task_id: &str) -> dagy_store::TaskRecord {
        self.snapshot(run_id)
            .await
            .tasks
            .into_iter()
            .find(|t| t.task_id == task_id)
            .expect("task")
    }
}

fn failed(error: &str, cause: &str) -> StateMachineEnd {
    StateMachineEnd::Failed {
        error: error.into(),
        cause: cause.into(),
    }
}

#[tokio::test]
async fn parallel_branches_run_side_by_side_and_the_run_completes() {
    let h = harness();
    let run = h
        .start(
            FlowBuilder::new("diamond")
                .task("a", "sum", |t| t.args(json!({"add": 1})))
                .task("b", "sum", |t| t.depends_on(["a"]).args(json!({"add": 10})))
                .task("c", "sum", |t| {
                    t.depends_on(["a"]).args(json!({"add": 100}))
                })
                .task("d", "sum", |t| t.depends_on(["b", "c"]))
                .build(),
        )
        .await;
    assert_eq!(h.invoke(&run, "a", "w1").await, TaskInvocation::Completed);
    let (b, c) = tokio::join!(h.invoke(&run, "b", "w2"), h.invoke(&run, "c", "w3"));
    assert_eq!(
        (b, c),
        (TaskInvocation::Completed, TaskInvocation::Completed)
    );
    assert_eq!(h.invoke(&run, "d", "w4").await, TaskInvocation::Completed);
    assert_eq!(
        h.end(&run, StateMachineEnd::Succeeded).await,
        RunStatus::Completed
    );

    let snapshot = h.snapshot(&run).await;
    assert_eq!(snapshot.run.status, RunStatus::Completed);
    assert_eq!(
        snapshot.tasks[3].output_value(),
        Some(json!(112)),
        "d read the outputs of b and c from the store"
    );
    assert!(snapshot.tasks.iter().all(|t| t.attempts == 1));
    assert_eq!(
        h.end(&run, failed("States.Timeout", "")).await,
        RunStatus::Completed,
        "a late end changes nothing"
    );
}

#[tokio::test]
async fn each_invocation_is_one_attempt_and_the_state_machine_retries() {
    let h = harness();
    let run = h
        .start(
            FlowBuilder::new("flaky")
                .task("f", "flaky", |t| t.retries(2).args(json!({"failures": 2})))
                .build(),
        )
        .await;
    for attempt in 1..=2 {
        let answer = h.invoke(&run, "f", &format!("w{attempt}")).await;
        assert!(
            matches!(&answer, TaskInvocation::Retryable(e) if e.message.contains("fails on purpose")),
            "attempt {attempt}: {answer:?}"
        );
        assert_eq!(h.task(&run, "f").await.status, TaskStatus::Retrying);
    }
    assert_eq!(h.invoke(&run, "f", "w3").await, TaskInvocation::Completed);
    let f = h.task(&run, "f").await;
    assert_eq!(
        (f.status, f.attempts, f.failures),
        (TaskStatus::Completed, 3, 2)
    );
}

#[tokio::test]
async fn the_last_attempt_fails_the_task_and_the_end_skips_the_rest() {
    let h = harness();
    let run = h
        .start(
            FlowBuilder::new("failing")
                .task("a", "fail", |t| {
                    t.retries(1).args(json!({"message": "boom"}))
                })
                .task("b", "echo", |t| t.depends_on(["a"]))
                .build(),
        )
        .await;
    assert!(matches!(
        h.invoke(&run, "a", "w1").await,
        TaskInvocation::Retryable(_)
    ));
    let last = h.invoke(&run, "a", "w2").await;
    assert!(
        matches!(&last, TaskInvocation::Failed(e) if e.message == "boom"),
        "{last:?}"
    );
    assert_eq!(h.task(&run, "a").await.status, TaskStatus::Failed);
    let again = h.invoke(&run, "a", "w3").await;
    assert!(
        matches!(again, TaskInvocation::Failed(_)),
        "a failed task never runs again: {again:?}"
    );
    let cause = r#"{"errorType":"DagyTaskFailed","errorMessage":"task a failed: boom"}"#;
    assert_eq!(
        h.end(&run, failed("DagyTaskFailed", cause)).await,
        RunStatus::Failed
    );
    let snapshot = h.snapshot(&run).await;
    assert_eq!(snapshot.run.error.as_deref(), Some("task a failed: boom"));
    assert_eq!(snapshot.tasks[1].status, TaskStatus::Skipped);
}

#[tokio::test]
async fn a_permanent_error_fails_the_task_on_its_first_attempt() {
    let h = harness();
    let run = h
        .start(
            FlowBuilder::new("permanent")
                .task("p", "permanent", |t| t.retries(5))
                .build(),
        )
        .await;
    let answer = h.invoke(&run, "p", "w1").await;
    assert!(
        matches!(&answer, TaskInvocation::Failed(e) if e.message == "bad configuration"),
        "{answer:?}"
    );
    assert_eq!(h.task(&run, "p").await.attempts, 1);
}

#[tokio::test]
async fn a_completed_task_is_never_run_again() {
    let h = harness();
    let run = h
        .start(
            FlowBuilder::new("once")
                .task("c", "count", |t| t.args(json!("hello")))
                .build(),
        )
        .await;
    assert_eq!(h.invoke(&run, "c", "w1").await, TaskInvocation::Completed);
    assert_eq!(h.invoke(&run, "c", "w2").await, TaskInvocation::Completed);
    assert_eq!(h.counted.load(Ordering::SeqCst), 1);
    assert_eq!(h.task(&run, "c").await.output_value(), Some(json!("hello")));
}

#[tokio::test]
async fn a_cancelled_run_runs_nothing_and_ends_cancelled() {
    let h = harness();
    let run = h.start(dagy_handlers::chain(3, "count", json!(1))).await;
    assert_eq!(h.invoke(&run, "t1", "w1").await, TaskInvocation::Completed);
    h.store
        .request_cancel(&run, now_ms())
        .await
        .expect("cancel");
    let answer = h.invoke(&run, "t2", "w2").await;
    assert!(matches!(answer, TaskInvocation::Stopped(_)), "{answer:?}");
    assert_eq!(h.counted.load(Ordering::SeqCst), 1);
    let cause = r#"{"errorType":"DagyRunStopped","errorMessage":"the run was cancelled"}"#;
    assert_eq!(
        h.end(&run, failed("DagyRunStopped", cause)).await,
        RunStatus::Cancelled
    );
    let snapshot = h.snapshot(&run).await;
    assert_eq!(snapshot.tasks[0].status, TaskStatus::Completed);
    assert!(
        snapshot.tasks[1..]
            .iter()
            .all(|t| t.status == TaskStatus::Cancelled)
    );
}

#[tokio::test]
async fn a_task_past_its_timeout_is_retryable_then_timed_out() {
    let h = harness();
    let run = h
        .start(
            FlowBuilder::new("slow")
                .task("s", "sleep", |t| {
                    t.retries(1).timeout(0.1).args(json!({"seconds": 5}))
                })
                .build(),
        )
        .await;
    let first = h.invoke(&run, "s", "w1").await;
    assert!(
        matches!(&first, TaskInvocation::Retryable(e) if e.error_type == "TaskTimedOut"),
        "{first:?}"
    );
    assert!(matches!(
        h.invoke(&run, "s", "w2").await,
        TaskInvocation::Failed(_)
    ));
    assert_eq!(h.task(&run, "s").await.status, TaskStatus::TimedOut);
}

#[tokio::test]
async fn a_later_invocation_takes_a_running_task_over_and_fences_the_first() {
    let h = Arc::new(harness());
    let run = h
        .start(
            FlowBuilder::new("takeover")
                .task("s", "sleep", |t| t.retries(1).args(json!({"seconds": 0.5})))
                .build(),
        )
        .await;
    let first = {
        let (h, run) = (h.clone(), run.clone());
        tokio::spawn(async move { h.invoke(&run, "s", "w1").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.task(&run, "s").await.owner.as_deref(), Some("w1"));
    // Step Functions gave up on w1 (its TimeoutSeconds) and retries: w2 takes the task over.
    assert_eq!(h.invoke(&run, "s", "w2").await, TaskInvocation::Completed);
    let late = first.await.expect("joined");
    assert!(
        !matches!(late, TaskInvocation::Completed),
        "the first invocation's result is not recorded: {late:?}"
    );
    let s = h.task(&run, "s").await;
    assert_eq!(
        (s.status, s.attempts, s.interruptions),
        (TaskStatus::Completed, 2, 1)
    );
    assert_eq!(s.owner.as_deref(), Some("w2"));
}

#[tokio::test]
async fn a_timeout_of_the_execution_times_out_the_running_task_and_cancels_its_siblings() {
    let h = Arc::new(harness());
    let run = h
        .start(
            FlowBuilder::new("level")
                .task("slow", "sleep", |t| {
                    t.timeout(60.0).args(json!({"seconds": 0.4}))
                })
                .task("other", "sleep", |t| t.args(json!({"seconds": 0.4})))
                .task("after", "echo", |t| t.depends_on(["slow", "other"]))
                .build(),
        )
        .await;
    let running: Vec<_> = ["slow", "other"]
        .into_iter()
        .map(|task| {
            let (h, run) = (h.clone(), run.clone());
            tokio::spawn(async move { h.invoke(&run, task, task).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        h.end(&run, failed("States.Timeout", "")).await,
        RunStatus::Failed
    );
    for handle in running {
        let late = handle.await.expect("joined");
        assert!(matches!(late, TaskInvocation::Stopped(_)), "{late:?}");
    }
    let snapshot = h.snapshot(&run).await;
    let statuses: Vec<_> = snapshot.tasks.iter().map(|t| t.status).collect();
    assert_eq!(
        statuses,
        [
            TaskStatus::TimedOut,
            TaskStatus::Cancelled,
            TaskStatus::Skipped
        ]
    );
    assert_eq!(
        snapshot.run.error.as_deref(),
        Some("task slow timed_out: timed out when the execution failed: States.Timeout")
    );
}

#[tokio::test]
async fn a_run_held_by_another_backend_or_a_wrong_task_runs_nothing() {
    let h = harness();
    let run = h.start(dagy_handlers::chain(1, "count", json!(1))).await;
    let unknown = h.invoke(&run, "nope", "w1").await;
    assert!(
        matches!(&unknown, TaskInvocation::Failed(e) if e.error_type == "UnknownTask"),
        "{unknown:?}"
    );
    let other = h.start(dagy_handlers::chain(1, "count", json!(1))).await;
    h.store
        .acquire_lease(&other, "executor-1", now_ms(), 60_000)
        .await
        .expect("a local executor holds it");
    let busy = h.invoke(&other, "t1", "w1").await;
    assert!(
        matches!(&busy, TaskInvocation::Stopped(why) if why.contains("executor-1")),
        "{busy:?}"
    );
    assert_eq!(h.counted.load(Ordering::SeqCst), 0);
}
