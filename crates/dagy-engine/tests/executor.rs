//! The executor's behaviours: retries, delays, jitter, timeouts, budgets, cancellation, skips,
//! the one-task step of the micro tier, and resuming without repeating completed tasks.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use dagy_core::{FlowBuilder, FlowSpec};
use dagy_engine::{
    Budget, Event, Executor, HandlerRegistry, NewRunRequest, Observer, RunOptions, StepOutcome,
    TaskError,
};
use dagy_handlers::chain;
use dagy_store::{MemoryStore, RunSnapshot, RunStatus, RunStore, StoreLimits, TaskStatus};

struct Harness {
    store: Arc<MemoryStore>,
    executor: Executor,
    calls: Arc<Mutex<Vec<String>>>,
}

/// Example handlers plus `count`, which records each call and returns its input's args.
fn harness() -> Harness {
    harness_with(MemoryStore::new())
}

fn harness_with(store: MemoryStore) -> Harness {
    let store = Arc::new(store);
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut registry = counting_registry(calls.clone());
    registry.register("panic", |_ctx, _input| async move {
        if true {
            panic!("the handler blew up");
        }
        Ok(Value::Null)
    });
    registry.register("permanent", |_ctx, _input| async move {
        Err(TaskError::permanent("bad configuration"))
    });
    registry.register("deep", |_ctx, input: Value| async move {
        let levels = input["args"]["levels"].as_u64().unwrap_or(0);
        Ok((0..levels).fold(json!(1), |inner, _| json!([inner])))
    });
    registry.register("pass", |_ctx, input: Value| async move {
        let upstream = input["upstream"].as_object().cloned().unwrap_or_default();
        Ok(upstream.into_iter().next().map_or(Value::Null, |(_, v)| v))
    });
    registry.register("big", |_ctx, input: Value| async move {
        let bytes = input["args"]["bytes"].as_u64().unwrap_or(0) as usize;
        Ok(json!("x".repeat(bytes)))
    });
    let executor = Executor::new(store.clone(), Arc::new(registry));
    Harness {
        store,
        executor,
        calls,
    }
}

impl Harness {
    async fn start(&self, spec: FlowSpec) -> String {
        common::start_run(&self.executor, spec).await
    }

    async fn run(&self, spec: FlowSpec, options: &RunOptions) -> (StepOutcome, RunSnapshot) {
        let id = self.start(spec).await;
        let outcome = self.executor.run(&id, options).await.expect("run");
        (outcome, self.store.load_run(&id).await.expect("load"))
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("log").clone()
    }
}

/// Cancels `token` after `seconds` (of the test's clock).
fn fire_after(token: &tokio_util::sync::CancellationToken, seconds: u64) {
    let token = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        token.cancel();
    });
}

/// Asks the store to cancel run `run_id` after `after` (of the test's clock), as another
/// process would.
fn request_cancel_after(h: &Harness, run_id: &str, after: Duration) -> JoinHandle<()> {
    let (store, run_id) = (h.store.clone(), run_id.to_string());
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        store
            .request_cancel(&run_id, dagy_store::now_ms())
            .await
            .expect("cancel");
    })
}

fn status_of(snapshot: &RunSnapshot, id: &str) -> (TaskStatus, u32) {
    let t = snapshot
        .tasks
        .iter()
        .find(|t| t.task_id == id)
        .expect("task exists");
    (t.status, t.attempts)
}

#[tokio::test(start_paused = true)]
async fn a_flaky_task_with_enough_retries_completes_on_attempt_3() {
    let h = harness();
    let spec = FlowBuilder::new("f")
        .task("flaky", "flaky", |t| {
            t.args(json!({"failures": 2})).retries(2)
        })
        .build();
    let (outcome, snap) = h.run(spec, &RunOptions::default()).await;
    assert_eq!(outcome, StepOutcome::Finished(RunStatus::Completed));
    assert_eq!(status_of(&snap, "flaky"), (TaskStatus::Completed, 3));
    assert_eq!(snap.tasks[0].failures, 2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_task_skips_its_dependents_while_an_independent_branch_completes() {
    let h = harness();
    let spec = FlowBuilder::new("f")
        .task("flaky", "flaky", |t| {
            t.args(json!({"failures": 2})).retries(1)
        })
        .task("after", "echo", |t| t.depends_on(["flaky"]))
        .task("after2", "echo", |t| t.depends_on(["after"]))
        .task("branch", "echo", |t| t)
        .task("branch2", "echo", |t| t.depends_on(["branch"]))
        .build();
    let (outcome, snap) = h.run(spec, &RunOptions::default()).await;
    assert_eq!(outcome, StepOutcome::Finished(RunStatus::Failed));
    assert_eq!(status_of(&snap, "flaky"), (TaskStatus::Failed, 2));
    assert_eq!(status_of(&snap, "after"), (TaskStatus::Skipped, 0));
    assert_eq!(status_of(&snap, "after2"), (TaskStatus::Skipped, 0));
    assert_eq!(status_of(&snap, "branch"), (TaskStatus::Completed, 1));
    assert_eq!(status_of(&snap, "branch2"), (TaskStatus::Completed, 1));
    let error = snap.run.error.expect("a failed run says why");
    assert!(error.starts_with("task flaky failed"), "{error}");
    let skipped = snap.tasks[1].error.as_ref().expect("skip reason");
    assert_eq!(skipped.message, "not run: upstream task flaky ended failed");
}

#[tokio::test(start_paused = true)]
async fn a_sleep_past_its_timeout_is_timed_out_within_the_timeout() {
    let h = harness();
    let spec = FlowBuilder::new("f")
        .task("slow", "sleep", |t| {
            t.args(json!({"seconds": 5})).timeout(1.0)
        })
        .build();
    let started = Instant::now();
    let (outcome, snap) = h.run(spec, &RunOptions::default()).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(outcome, StepOutcome::Finished(RunStatus::Failed));
    assert_eq!(status_of(&snap, "slow"), (TaskStatus::TimedOut, 1));
    let error = snap.tasks[0].error.as_ref().expect("error");
    assert_eq!(error.error_type, "TaskTimedOut");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_spin_that_ignores_cancellation_is_timed_out_too() {
    let h = harness();
    let spec = FlowBuilder::new("f")
        .task("spin", "spin", |t| {
            t.args(json!({"millis": 2000, "ignore_cancel": true}))
                .timeout(0.5)
        })
        .build();
    let started = std::time::Instant::now();
    let (_, snap) = h.run(spec, &RunOptions::default()).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status_of(&snap, "spin"), (TaskStatus::TimedOut, 1));
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_attempt_is_retried_like_a_failure() {
    let h = harness();
    let spec = FlowBuilder::new("f")
        .task("slow", "sleep", |t| {
            t.args(json!({"seconds": 5})).timeout(1.0).retries(2)
        })
        .build();
    let (_, snap) = h.run(spec, &RunOptions::default()).await;
    assert_eq!(status_of(&snap, "slow"), (TaskStatus::TimedOut, 3));
}

#[tokio::test(start_paused = true)]
async fn retry_delays_follow_the_list_and_repeat_its_last_value() {
    let h = harness();
    let spec = FlowBuilder::new("f")
        .task("flaky", "flaky", |t| {
            t.args(json!({"failures": 4}))
                .retries(4)
                .retry_delays([1.0, 2.0, 4.0])
        })
        .build();
    let started = Instant::now();
    let (_, snap) = h.run(spec, &RunOptions::default()).await;
    assert_eq!(status_of(&snap, "flaky"), (TaskStatus::Completed, 5));
    assert_eq!(started.elapsed(), Duration::from_secs(1 + 2 + 4 + 4));
}

#[tokio::test(start_paused = true)]
async fn a_fixed_delay_waits_the_same_before_each_retry() {
    let h = harness();
    let spec = FlowBuilder::new("f")
        .task("flaky", "flaky", |t| {
            t.args(json!({"failures": 2})).retries(2).retry_delay(1.5)
        })
        .build();
    let started = Instant::now();
    h.run(spec, &RunOptions::default()).await;
    assert_eq!(started.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn a_closure_delay_is_called_with_the_retry_number() {
    let h = harness();
    let spec = FlowBuilder::new("f")
        .task("flaky", "flaky", |t| {
            t.args(json!({"failures": 3}))
                .retries(3)
                .retry_delay_fn(|n| f64::from(n) * 10.0)
        })
        .build();
    let started = Instant::now();
    h.run(spec, &RunOptions::default()).await;
    assert_eq!(started.elapsed(), Duration::from_secs(10 + 20 + 30));
}

#[tokio::test(start_paused = true)]
async fn jitter_keeps_each_delay_within_its_factor() {
    for _ in 0..20 {
        let h = harness();
        let spec = FlowBuilder::new("f")
            .task("flaky", "flaky", |t| {
                t.args(json!({"failures": 1}))
                    .retries(1)
                    .retry_delay(10.0)
                    .jitter(0.5)
            })
            .build();
        let started = Instant::now();
        h.run(spec, &RunOptions::default()).await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(5) && waited <= Duration::from_secs(15),
            "{waited:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_skips_the_remaining_retries() {
    let h = harness();
    let spec = FlowBuilder::new("f")
        .task("p", "permanent", |t| t.retries(5))
        .build();
    let (_, snap) = h.run(spec, &RunOptions::default()).await;
    assert_eq!(status_of(&snap, "p"), (TaskStatus::Failed, 1));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_handler_is_a_task_failure_not_a_crash() {
    let h = harness();
    let spec = FlowBuilder::new("f")
        .task("p", "panic", |t| t.retries(1))
        .build();
    let (outcome, snap) = h.run(spec, &RunOptions::default()).await;
    assert_eq!(outcome, StepOutcome::Finished(RunStatus::Failed));
    let error = snap.tasks[0].error.as_ref().expect("error");
    assert_eq!(error.error_type, "HandlerPanicked");
    assert!(
        error.message.contains("the handler blew up"),
        "{}",
        error.message
    );
    assert_eq!(snap.tasks[0].attempts, 2);
}

#[tokio::test(start_paused = true)]
async fn an_unregistered_handler_fails_its_task_with_the_registered_names() {
    let h = harness();
    let spec = FlowBuilder::new("f")
        .task("x", "nope", |t| t.retries(3))
        .build();
    let (_, snap) = h.run(spec, &RunOptions::default()).await;
    let error = snap.tasks[0].error.as_ref().expect("error");
    assert_eq!(
        (error.error_type.as_str(), snap.tasks[0].attempts),
        ("HandlerNotFound", 1)
    );
    assert!(error.message.contains("echo"), "{}", error.message);
}

#[tokio::test(start_paused = true)]
async fn a_lambda_handler_without_a_lambda_client_is_a_clear_error() {
    let h = harness();
    let spec = FlowBuilder::new("f")
        .task("x", "lambda:other-fn", |t| t)
        .build();
    let (_, snap) = h.run(spec, &RunOptions::default()).await;
    let error = snap.tasks[0].error.as_ref().expect("error");
    assert!(
        error.message.contains("no Lambda client"),
        "{}",
        error.message
    );
}

#[tokio::test(start_paused = true)]
async fn each_task_gets_parameters_upstream_outputs_and_its_args() {
    let h = harness();
    let spec = FlowBuilder::new("f")
        .parameter("day", "mon")
        .parameter("region", "eu")
        .task("a", "sum", |t| t.args(json!({"add": 2})))
        .task("b", "sum", |t| t.args(json!({"add": 3})))
        .task("c", "echo", |t| {
            t.depends_on(["a", "b"]).args(json!({"k": 1}))
        })
        .build();
    let flow = spec.validate(None).expect("valid");
    let mut given = serde_json::Map::new();
    given.insert("day".into(), json!("tue"));
    let id = h
        .executor
        .create_run(
            &flow,
            NewRunRequest {
                parameters: given,
                ..NewRunRequest::default()
            },
        )
        .await
        .expect("create")
        .run
        .run_id;
    h.executor
        .run(&id, &RunOptions::default())
        .await
        .expect("run");
    let snap = h.store.load_run(&id).await.expect("load");
    assert_eq!(
        snap.tasks[2].output_value(),
        Some(json!({
            "parameters": {"day": "tue", "region": "eu"},
            "upstream": {"a": 2, "b": 3},
            "args": {"k": 1}
        }))
    );
}

#[tokio::test(start_paused = true)]
async fn an_output_over_the_store_limit_fails_the_task_and_says_so() {
    let h = harness_with(MemoryStore::with_limits(StoreLimits {
        max_output_bytes: 1000,
        ..StoreLimits::default()
    }));
    let spec = FlowBuilder::new("f")
        .task("big", "big", |t| t.args(json!({"bytes": 5000})).retries(2))
        .task("after", "echo", |t| t.depends_on(["big"]))
        .build();
    let (_, snap) = h.run(spec, &RunOptions::default()).await;
    let error = snap.tasks[0].error.as_ref().expect("error");
    assert_eq!(
        (error.error_type.as_str(), snap.tasks[0].attempts),
        ("OutputTooLarge", 1)
    );
    assert!(
        error
            .message
            .contains("5002 bytes, over the store's limit of 1000 bytes"),
        "{}",
        error.message
    );
    assert_eq!(snap.tasks[0].output, None, "nothing truncated is stored");
    assert_eq!(status_of(&snap, "after").0, TaskStatus::Skipped);
}

#[tokio::test(start_paused = true)]
async fn an_output_nested_past_the_limit_fails_the_task_as_output_too_deep() {
    let h = harness();
    let levels = dagy_core::json::MAX_OUTPUT_DEPTH + 1;
    let spec = FlowBuilder::new("f")
        .task("deep", "deep", move |t| {
            t.args(json!({"levels": levels})).retries(2)
        })
        .task("after", "echo", |t| t.depends_on(["deep"]))
        .build();
    let (outcome, snap) = h.run(spec, &RunOptions::default()).await;
    assert_eq!(outcome, StepOutcome::Finished(RunStatus::Failed));
    let error = snap.tasks[0].error.as_ref().expect("error");
    assert_eq!(
        (error.error_type.as_str(), snap.tasks[0].attempts),
        ("OutputTooDeep", 1),
        "permanent: a retry would return the same"
    );
    assert!(
        error.message.contains(&format!(
            "nests {levels} levels deep, over the limit of {} levels",
            dagy_core::json::MAX_OUTPUT_DEPTH
        )),
        "{}",
        error.message
    );
    assert_eq!(status_of(&snap, "after").0, TaskStatus::Skipped);
}

#[tokio::test(start_paused = true)]
async fn an_output_at_the_depth_limit_is_stored() {
    let h = harness();
    let levels = dagy_core::json::MAX_OUTPUT_DEPTH;
    let spec = FlowBuilder::new("f")
        .task("deep", "deep", move |t| t.args(json!({"levels": levels})))
        .build();
    let (outcome, snap) = h.run(spec, &RunOptions::default()).await;
    assert_eq!(outcome, StepOutcome::Finished(RunStatus::Completed));
    let output = snap.tasks[0].output_value().expect("output");
    assert_eq!(dagy_core::json::depth(&output), levels);
}

/// `echo` returns its whole input, so each task of an echo chain nests its upstream's output
/// two levels deeper: the chain ends failed, readable, at the first task past the limit.
#[tokio::test(start_paused = true)]
async fn an_echo_chain_past_the_depth_limit_ends_failed_at_the_first_task_too_deep() {
    let h = harness();
    let (outcome, snap) = h
        .run(chain(300, "echo", Value::Null), &RunOptions::default())
        .await;
    assert_eq!(outcome, StepOutcome::Finished(RunStatus::Failed));
    let first_bad = snap
        .tasks
        .iter()
        .position(|t| t.status != TaskStatus::Completed)
        .expect("a task past the limit");
    let error = snap.tasks[first_bad].error.as_ref().expect("error");
    assert_eq!(error.error_type, "OutputTooDeep");
    let last_good = snap.tasks[first_bad - 1].output_value().expect("output");
    assert!(dagy_core::json::depth(&last_good) <= dagy_core::json::MAX_OUTPUT_DEPTH);
    assert!(
        snap.tasks[first_bad + 1..]
            .iter()
            .all(|t| t.status == TaskStatus::Skipped)
    );
    assert!(
        snap.run
            .error
            .as_deref()
            .unwrap_or("")
            .contains("OutputTooDeep")
            || snap
                .run
                .error
                .as_deref()
                .unwrap_or("")
                .contains("levels deep"),
        "{:?}",
        snap.run.error
    );
}

/// A handler that passes its upstream's output on keeps the depth flat: any length works.
#[tokio::test(start_paused = true)]
async fn a_chain_passing_its_upstream_output_on_completes_at_any_length() {
    let h = harness();
    let mut spec = chain(2_000, "pass", Value::Null);
    spec.tasks[0].handler = "deep".into();
    spec.tasks[0].args = Some(json!({"levels": 100}).into());
    let (outcome, snap) = h.run(spec, &RunOptions::default()).await;
    assert_eq!(outcome, StepOutcome::Finished(RunStatus::Completed));
    assert_eq!(snap.tasks[0].output, snap.tasks[1_999].output);
}

#[tokio::test(start_paused = true)]
async fn an_error_message_over_the_limit_is_replaced_by_one_that_says_so() {
    let h = harness_with(MemoryStore::with_limits(StoreLimits {
        max_error_bytes: 2000,
        ..StoreLimits::default()
    }));
    let long = "e".repeat(10_000);
    let spec = FlowBuilder::new("f")
        .task("f", "fail", move |t| t.args(json!({"message": long})))
        .build();
    let (_, snap) = h.run(spec, &RunOptions::default()).await;
    let error = snap.tasks[0].error.as_ref().expect("error");
    assert!(
        error.message.starts_with(
            "the error message was 10000 bytes, over the store's limit of 2000 bytes; it began: eee"
        ),
        "{}",
        &error.message[..120]
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancel_during_task_2_of_5_leaves_tasks_3_to_5_cancelled_and_never_started() {
    let h = harness();
    let spec = chain(5, "count", json!({"sleep": 2.0}));
    let id = h.start(spec).await;
    // Task 2 runs from 2 s to 4 s.
    let canceller = request_cancel_after(&h, &id, Duration::from_secs(3));
    let outcome = h
        .executor
        .run(&id, &RunOptions::default())
        .await
        .expect("run");
    canceller.await.expect("canceller");
    assert_eq!(outcome, StepOutcome::Finished(RunStatus::Cancelled));
    let snap = h.store.load_run(&id).await.expect("load");
    assert_eq!(status_of(&snap, "t1").0, TaskStatus::Completed);
    assert_eq!(
        status_of(&snap, "t2").0,
        TaskStatus::Completed,
        "the task in flight finishes"
    );
    for t in ["t3", "t4", "t5"] {
        assert_eq!(status_of(&snap, t), (TaskStatus::Cancelled, 0), "{t}");
    }
    assert_eq!(h.calls(), ["t1", "t2"]);
}

#[tokio::test(start_paused = true)]
async fn a_local_cancel_stops_a_cooperative_task_and_cancels_the_rest() {
    let h = harness();
    let spec = chain(3, "sleep", json!({"seconds": 10}));
    let options = RunOptions::default();
    fire_after(&options.cancel, 15);
    let (outcome, snap) = h.run(spec, &options).await;
    assert_eq!(outcome, StepOutcome::Finished(RunStatus::Cancelled));
    assert_eq!(status_of(&snap, "t1").0, TaskStatus::Completed);
    assert_eq!(status_of(&snap, "t2"), (TaskStatus::Cancelled, 1));
    assert_eq!(status_of(&snap, "t3"), (TaskStatus::Cancelled, 0));
}

#[tokio::test(start_paused = true)]
async fn a_stop_lets_the_task_in_flight_finish_then_cancels_the_rest() {
    let h = harness();
    let spec = chain(3, "sleep", json!({"seconds": 10}));
    let options = RunOptions::default();
    fire_after(&options.stop, 15);
    let started = Instant::now();
    let (outcome, snap) = h.run(spec, &options).await;
    assert_eq!(outcome, StepOutcome::Finished(RunStatus::Cancelled));
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(20),
        "t2 ran to its end"
    );
    assert_eq!(status_of(&snap, "t2"), (TaskStatus::Completed, 1));
    assert_eq!(status_of(&snap, "t3"), (TaskStatus::Cancelled, 0));
    assert_eq!(snap.run.lease, None, "the lease is released");
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_handler_that_ignores_its_token_is_abandoned_after_the_grace() {
    let h = harness();
    let spec = chain(2, "count", json!({"sleep": 1000}));
    let options = RunOptions::default();
    fire_after(&options.cancel, 5);
    let started = Instant::now();
    let (outcome, snap) = h.run(spec, &options).await;
    assert_eq!(outcome, StepOutcome::Finished(RunStatus::Cancelled));
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(5) + dagy_engine::executor::CANCEL_GRACE
    );
    let (status, attempts) = status_of(&snap, "t1");
    assert_eq!((status, attempts), (TaskStatus::Cancelled, 1));
    assert!(
        snap.tasks[0]
            .error
            .as_ref()
            .expect("error")
            .message
            .contains("abandoned"),
        "{:?}",
        snap.tasks[0].error
    );
    assert_eq!(status_of(&snap, "t2"), (TaskStatus::Cancelled, 0));
}

/// A process that recorded a task cancelled and died before ending the run (a second Ctrl-C
/// in an older version): the resumed run ends cancelled, never completed.
#[tokio::test]
async fn a_resumed_run_with_a_cancelled_task_ends_cancelled() {
    let h = harness();
    let id = h.start(chain(4, "count", json!({}))).await;
    let store = h.store.clone();
    let lease = store
        .acquire_lease(&id, "dead", dagy_store::now_ms(), 50)
        .await
        .expect("lease");
    store
        .start_attempt(&lease, "t1", 1, dagy_store::now_ms())
        .await
        .expect("start");
    let error = dagy_store::TaskErrorRecord {
        error_type: "Cancelled".into(),
        message: "cancelled during attempt 1".into(),
    };
    store
        .finish_attempt(
            &lease,
            "t1",
            1,
            dagy_store::AttemptOutcome::Finished(TaskStatus::Cancelled, error),
            dagy_store::now_ms(),
        )
        .await
        .expect("finish");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let outcome = h
        .executor
        .run(&id, &RunOptions::default())
        .await
        .expect("resume");
    assert_eq!(outcome, StepOutcome::Finished(RunStatus::Cancelled));
    let snap = store.load_run(&id).await.expect("load");
    assert_eq!(snap.run.status, RunStatus::Cancelled);
    assert!(
        snap.tasks[1..]
            .iter()
            .all(|t| t.status == TaskStatus::Skipped)
    );
    assert!(h.calls().is_empty(), "nothing downstream of the cancel ran");
}

#[tokio::test(start_paused = true)]
async fn a_cancel_between_attempts_stops_the_retries() {
    let h = harness();
    let spec = FlowBuilder::new("f")
        .task("flaky", "flaky", |t| {
            t.args(json!({"failures": 5})).retries(5).retry_delay(10.0)
        })
        .build();
    let id = h.start(spec).await;
    request_cancel_after(&h, &id, Duration::from_secs(5));
    let outcome = h
        .executor
        .run(&id, &RunOptions::default())
        .await
        .expect("run");
    assert_eq!(outcome, StepOutcome::Finished(RunStatus::Cancelled));
    let snap = h.store.load_run(&id).await.expect("load");
    assert_eq!(status_of(&snap, "flaky"), (TaskStatus::Cancelled, 1));
}

#[tokio::test(start_paused = true)]
async fn the_nano_budget_ends_the_run_as_timed_out_and_marks_what_it_did_not_reach() {
    let h = harness();
    let spec = chain(4, "sleep", json!({"seconds": 1.5}));
    let options = RunOptions {
        budget: Budget::Flow(Duration::from_secs(2)),
        ..RunOptions::default()
    };
    let started = Instant::now();
    let (outcome, snap) = h.run(spec, &options).await;
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(outcome, StepOutcome::Finished(RunStatus::TimedOut));
    assert_eq!(status_of(&snap, "t1").0, TaskStatus::Completed);
    assert_eq!(status_of(&snap, "t2"), (TaskStatus::TimedOut, 1));
    assert_eq!(status_of(&snap, "t3"), (TaskStatus::TimedOut, 0));
    assert_eq!(status_of(&snap, "t4"), (TaskStatus::TimedOut, 0));
    let note = &snap.tasks[2].error.as_ref().expect("why").message;
    assert_eq!(note, "not run: the run's budget of 2 s ran out");
}

#[tokio::test(start_paused = true)]
async fn the_micro_budget_applies_to_each_task_with_its_retries() {
    let h = harness();
    let spec = FlowBuilder::new("f")
        .task("a", "sleep", |t| t.args(json!({"seconds": 3})))
        .task("b", "sleep", |t| {
            t.args(json!({"seconds": 3})).depends_on(["a"])
        })
        .task("c", "flaky", |t| {
            t.args(json!({"failures": 9}))
                .retries(9)
                .retry_delay(2.0)
                .depends_on(["b"])
        })
        .build();
    let options = RunOptions {
        budget: Budget::PerTask(Duration::from_secs(5)),
        ..RunOptions::default()
    };
    let (outcome, snap) = h.run(spec, &options).await;
    assert_eq!(outcome, StepOutcome::Finished(RunStatus::TimedOut));
    assert_eq!(status_of(&snap, "a").0, TaskStatus::Completed);
    assert_eq!(status_of(&snap, "b").0, TaskStatus::Completed);
    assert_eq!(status_of(&snap, "c").0, TaskStatus::TimedOut);
}

#[tokio::test(start_paused = true)]
async fn step_runs_exactly_one_task_per_call() {
    let h = harness();
    let id = h.start(chain(3, "count", json!({}))).await;
    let options = RunOptions::default();
    let mut ran = Vec::new();
    loop {
        match h.executor.step(&id, &options).await.expect("step") {
            StepOutcome::Continue { ran: task, status } => {
                assert_eq!(status, TaskStatus::Completed);
                ran.push(task);
                assert_eq!(h.calls().len(), ran.len(), "one task per step");
            }
            StepOutcome::Finished(status) => {
                assert_eq!(status, RunStatus::Completed);
                break;
            }
            other => panic!("nobody else works on the run, yet: {other:?}"),
        }
    }
    assert_eq!(
        ran,
        ["t1", "t2"],
        "the step that runs the last task finishes the run"
    );
    assert_eq!(h.calls(), ["t1", "t2", "t3"]);
    let again = h.executor.step(&id, &options).await.expect("step");
    assert_eq!(again, StepOutcome::Finished(RunStatus::Completed));
    assert_eq!(h.calls().len(), 3, "a finished run runs nothing");
}

/// Steps a run to its end; returns the store operations and the records read of each step,
/// and the outcome.
async fn step_to_the_end(h: &Harness, id: &str) -> (Vec<(u64, u64)>, RunStatus) {
    let options = RunOptions::default();
    let mut per_step = Vec::new();
    loop {
        let (requests, records) = (h.store.request_count(), h.store.records_read());
        let outcome = h.executor.step(id, &options).await.expect("step");
        per_step.push((
            h.store.request_count() - requests,
            h.store.records_read() - records,
        ));
        match outcome {
            StepOutcome::Continue { .. } => {}
            StepOutcome::Finished(status) => return (per_step, status),
            other => panic!("nobody else works on the run: {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_micro_step_costs_the_same_whatever_the_flows_size() {
    let h = harness();
    let short = h.start(chain(20, "count", json!({}))).await;
    let long = h.start(chain(2000, "count", json!({}))).await;
    let (short_steps, short_status) = step_to_the_end(&h, &short).await;
    let (long_steps, long_status) = step_to_the_end(&h, &long).await;
    assert_eq!(
        (short_status, long_status),
        (RunStatus::Completed, RunStatus::Completed)
    );
    assert_eq!(
        (short_steps.len(), long_steps.len()),
        (20, 2000),
        "one step per task, the last one ending the run"
    );
    let most = |steps: &[(u64, u64)]| {
        let requests = steps.iter().map(|s| s.0).max().unwrap_or(0);
        let records = steps.iter().map(|s| s.1).max().unwrap_or(0);
        (requests, records)
    };
    assert!(most(&short_steps).0 <= 6, "{short_steps:?}");
    assert_eq!(
        most(&long_steps),
        most(&short_steps),
        "a step of a 2,000-task run makes as many store operations, and reads as many records, \
         as one of a 20-task run"
    );
    assert!(
        most(&long_steps).1 <= 3,
        "the run, the task and its upstream: {long_steps:?}"
    );
}

/// `a`, then `bad` (fails at once) and `aside`; `after` depends on `bad`.
fn failing_after_a() -> FlowSpec {
    FlowBuilder::new("f")
        .task("a", "count", |t| t)
        .task("bad", "permanent", |t| t.depends_on(["a"]))
        .task("after", "count", |t| t.depends_on(["bad"]))
        .task("aside", "count", |t| t.depends_on(["a"]))
        .build()
}

#[tokio::test(start_paused = true)]
async fn micro_steps_skip_downstream_of_a_failure_and_end_the_run_failed() {
    let h = harness();
    let spec = failing_after_a();
    let id = h.start(spec).await;
    let (_, status) = step_to_the_end(&h, &id).await;
    assert_eq!(status, RunStatus::Failed);
    let snap = h.store.load_run(&id).await.expect("load");
    assert_eq!(status_of(&snap, "bad").0, TaskStatus::Failed);
    assert_eq!(status_of(&snap, "after").0, TaskStatus::Skipped);
    assert_eq!(status_of(&snap, "aside").0, TaskStatus::Completed);
    assert!(
        snap.run
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("task bad failed")),
        "{:?}",
        snap.run.error
    );
    let calls = h.calls();
    assert!(calls.contains(&"aside".to_string()) && !calls.contains(&"after".to_string()));
}

#[tokio::test(start_paused = true)]
async fn a_cancel_between_micro_steps_cancels_the_rest() {
    let h = harness();
    let id = h.start(chain(5, "count", json!({}))).await;
    let options = RunOptions::default();
    h.executor.step(&id, &options).await.expect("step 1");
    h.store
        .request_cancel(&id, dagy_store::now_ms())
        .await
        .expect("cancel");
    let outcome = h.executor.step(&id, &options).await.expect("step 2");
    assert_eq!(outcome, StepOutcome::Finished(RunStatus::Cancelled));
    let snap = h.store.load_run(&id).await.expect("load");
    assert_eq!(status_of(&snap, "t1").0, TaskStatus::Completed);
    for t in ["t2", "t3", "t4", "t5"] {
        assert_eq!(status_of(&snap, t).0, TaskStatus::Cancelled, "{t}");
    }
    assert_eq!(snap.run.lease, None);
}

#[tokio::test(start_paused = true)]
async fn a_resumed_run_re_runs_no_completed_task() {
    let h = harness();
    let id = h.start(chain(5, "count", json!({}))).await;
    let options = RunOptions::default();
    h.executor.step(&id, &options).await.expect("step 1");
    h.executor.step(&id, &options).await.expect("step 2");
    let other = Executor::new(
        h.executor.store().clone(),
        Arc::new(counting_registry(h.calls.clone())),
    );
    let outcome = other.run(&id, &options).await.expect("resume");
    assert_eq!(outcome, StepOutcome::Finished(RunStatus::Completed));
    assert_eq!(h.calls(), ["t1", "t2", "t3", "t4", "t5"]);
}

#[tokio::test(start_paused = true)]
async fn run_steps_runs_each_task_once_in_its_own_step_and_ends_the_run() {
    let recorder = Arc::new(Recorder::default());
    let mut h = harness();
    h.executor = h.executor.clone().with_observer(recorder.clone());
    let id = h.start(chain(5, "count", json!({}))).await;
    let outcome = h
        .executor
        .run_steps(&id, &RunOptions::default())
        .await
        .expect("run in steps");
    assert_eq!(outcome, StepOutcome::Finished(RunStatus::Completed));
    assert_eq!(h.calls(), ["t1", "t2", "t3", "t4", "t5"]);
    let events = recorder.0.lock().expect("events").clone();
    assert_eq!(events.iter().filter(|e| e.starts_with("start")).count(), 5);
    let snap = h.store.load_run(&id).await.expect("load");
    assert!(
        snap.tasks
            .iter()
            .all(|t| t.attempts == 1 && t.interruptions == 0)
    );
    assert_eq!(snap.run.lease, None, "the run's end releases the lease");
}

#[tokio::test(start_paused = true)]
async fn run_steps_skip_downstream_of_a_failure_and_end_the_run_failed() {
    let h = harness();
    let spec = failing_after_a();
    let id = h.start(spec).await;
    let outcome = h
        .executor
        .run_steps(&id, &RunOptions::default())
        .await
        .expect("run in steps");
    assert_eq!(outcome, StepOutcome::Finished(RunStatus::Failed));
    let snap = h.store.load_run(&id).await.expect("load");
    assert_eq!(status_of(&snap, "bad"), (TaskStatus::Failed, 1));
    assert_eq!(status_of(&snap, "after"), (TaskStatus::Skipped, 0));
    assert_eq!(status_of(&snap, "aside"), (TaskStatus::Completed, 1));
    assert_eq!(h.calls(), ["a", "aside"]);
}

#[tokio::test(start_paused = true)]
async fn a_cancel_asked_during_a_handed_on_step_cancels_the_rest_at_the_next_boundary() {
    let h = harness();
    let id = h.start(chain(5, "count", json!({"sleep": 1.0}))).await;
    request_cancel_after(&h, &id, Duration::from_millis(1500)); // inside t2
    let outcome = h
        .executor
        .run_steps(&id, &RunOptions::default())
        .await
        .expect("run in steps");
    assert_eq!(outcome, StepOutcome::Finished(RunStatus::Cancelled));
    assert_eq!(h.calls(), ["t1", "t2"], "no task starts after the cancel");
    let snap = h.store.load_run(&id).await.expect("load");
    assert_eq!(status_of(&snap, "t2"), (TaskStatus::Completed, 1));
    for t in ["t3", "t4", "t5"] {
        assert_eq!(status_of(&snap, t), (TaskStatus::Cancelled, 0), "{t}");
    }
}

#[tokio::test(start_paused = true)]
async fn run_steps_leave_a_run_another_owner_holds_alone() {
    let h = harness();
    let id = h.start(chain(3, "count", json!({}))).await;
    h.store
        .acquire_lease(&id, "someone-else", dagy_store::now_ms(), 60_000)
        .await
        .expect("lease");
    let outcome = h
        .executor
        .run_steps(&id, &RunOptions::default())
        .await
        .expect("try");
    assert!(
        matches!(&outcome, StepOutcome::Busy { owner, .. } if owner == "someone-else"),
        "{outcome:?}"
    );
    assert!(h.calls().is_empty());
}

/// The example handlers plus `count`, which logs each call's task id to `calls`, sleeps
/// `args.sleep` seconds if given, and returns its args.
fn counting_registry(calls: Arc<Mutex<Vec<String>>>) -> HandlerRegistry {
    let mut registry = dagy_handlers::registry();
    registry.register("count", move |ctx, input: Value| {
        let log = calls.clone();
        async move {
            log.lock().expect("log").push(ctx.task_id.clone());
            if let Some(seconds) = input["args"]["sleep"].as_f64() {
                tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
            }
            Ok(input["args"].clone())
        }
    });
    registry
}

/// Leases are measured on the wall clock (they are compared across machines), so this test
/// runs in real time with a short lease.
#[tokio::test]
async fn an_executor_that_dies_mid_task_is_taken_over_after_its_lease_lapses() {
    let h = harness();
    let id = h.start(chain(4, "count", json!({"sleep": 0.2}))).await;
    let ttl = Duration::from_millis(600);
    let dying = h.executor.clone().with_owner("dying").with_lease_ttl(ttl);
    let run_id = id.clone();
    let crashed = tokio::spawn(async move { dying.run(&run_id, &RunOptions::default()).await });
    tokio::time::sleep(Duration::from_millis(500)).await; // inside t3 (0.4 s to 0.6 s)
    crashed.abort(); // the process dies: no more writes, the lease stays until it lapses
    let _ = crashed.await;

    let successor = h
        .executor
        .clone()
        .with_owner("successor")
        .with_lease_ttl(ttl);
    let early = successor
        .run(&id, &RunOptions::default())
        .await
        .expect("try");
    assert!(
        matches!(&early, StepOutcome::Busy { owner, until_ms } if owner == "dying" && *until_ms > 0),
        "{early:?}"
    );
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    let outcome = successor
        .run(&id, &RunOptions::default())
        .await
        .expect("resume");
    assert_eq!(outcome, StepOutcome::Finished(RunStatus::Completed));
    assert_eq!(h.calls(), ["t1", "t2", "t3", "t3", "t4"]);
    let snap = h.store.load_run(&id).await.expect("load");
    let t3 = &snap.tasks[2];
    assert_eq!((t3.attempts, t3.interruptions, t3.failures), (2, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_executors_started_at_once_run_each_task_once() {
    let h = harness();
    let id = h.start(chain(6, "count", json!({"sleep": 0.01}))).await;
    let mut joins = Vec::new();
    for n in 0..5 {
        let exec = h.executor.clone().with_owner(format!("exec-{n}"));
        let id = id.clone();
        joins.push(tokio::spawn(async move {
            exec.run(&id, &RunOptions::default()).await
        }));
    }
    let mut finished = 0;
    for j in joins {
        match j.await.expect("join").expect("run") {
            StepOutcome::Finished(RunStatus::Completed) => finished += 1,
            StepOutcome::Busy { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(finished >= 1);
    assert_eq!(h.calls(), ["t1", "t2", "t3", "t4", "t5", "t6"]);
}

#[tokio::test(start_paused = true)]
async fn two_writes_per_task_on_the_memory_store() {
    let h = harness();
    let id = h.start(chain(50, "sum", json!({"add": 1}))).await;
    let before = h.store.request_count();
    h.executor
        .run(&id, &RunOptions::default())
        .await
        .expect("run");
    let requests = h.store.request_count() - before;
    // acquire + load + 2 per task + finish_run
    assert_eq!(requests, 3 + 2 * 50);
    let snap = h.store.load_run(&id).await.expect("load");
    assert_eq!(snap.tasks[49].output_value(), Some(json!(50)));
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Observer for Recorder {
    fn on_event(&self, event: &Event) {
        let line = match event {
            Event::AttemptStarted { task_id, attempt } => format!("start {task_id} {attempt}"),
            Event::Retrying { task_id, delay, .. } => {
                format!("retry {task_id} {}ms", delay.as_millis())
            }
            Event::TaskFinished {
                task_id, status, ..
            } => format!("end {task_id} {status}"),
            Event::RunFinished { status } => format!("run {status}"),
        };
        self.0.lock().expect("events").push(line);
    }
}

#[tokio::test(start_paused = true)]
async fn events_describe_the_run_in_order() {
    let recorder = Arc::new(Recorder::default());
    let mut h = harness();
    h.executor = h.executor.clone().with_observer(recorder.clone());
    let spec = FlowBuilder::new("f")
        .task("a", "flaky", |t| {
            t.args(json!({"failures": 1})).retries(1).retry_delay(0.25)
        })
        .task("b", "fail", |t| t.depends_on(["a"]))
        .task("c", "echo", |t| t.depends_on(["b"]))
        .build();
    h.run(spec, &RunOptions::default()).await;
    let events = recorder.0.lock().expect("events").clone();
    assert_eq!(
        events,
        [
            "start a 1",
            "retry a 250ms",
            "start a 2",
            "end a completed",
            "start b 1",
            "end b failed",
            "end c skipped",
            "run failed",
        ]
    );
}

/// A run one task into its work whose executor is gone: its lease (50 ms) has lapsed.
async fn abandoned_after_one_task(h: &Harness) -> String {
    let id = h.start(chain(3, "count", json!({}))).await;
    let dead = h
        .executor
        .clone()
        .with_owner("dead")
        .with_lease_ttl(Duration::from_millis(50));
    dead.step(&id, &RunOptions::default())
        .await
        .expect("one task");
    let lease = h
        .store
        .acquire_lease(&id, "dead", dagy_store::now_ms(), 50)
        .await
        .expect("the dead executor's last lease");
    h.store
        .start_attempt(&lease, "t2", 1, dagy_store::now_ms())
        .await
        .expect("t2 in flight when it died");
    tokio::time::sleep(Duration::from_millis(100)).await;
    id
}

#[tokio::test]
async fn end_run_ends_an_abandoned_run_failed_with_its_open_tasks_cancelled() {
    let h = harness();
    let id = abandoned_after_one_task(&h).await;
    let router = h.executor.clone().with_owner(dagy_engine::ROUTER_OWNER);
    let ended = router
        .end_run(
            &id,
            dagy_engine::RunEnd::Abandoned("OutOfMemoryError: killed"),
        )
        .await
        .expect("end");
    assert_eq!(ended, Some(RunStatus::Failed));
    let snap = h.store.load_run(&id).await.expect("load");
    assert_eq!(snap.run.error.as_deref(), Some("OutOfMemoryError: killed"));
    assert_eq!(status_of(&snap, "t1").0, TaskStatus::Completed, "kept");
    for t in ["t2", "t3"] {
        assert_eq!(status_of(&snap, t).0, TaskStatus::Cancelled, "{t}");
    }
    let again = router
        .end_run(&id, dagy_engine::RunEnd::Abandoned("again"))
        .await
        .expect("end again");
    assert_eq!(again, None, "an ended run is left as it is");
}

#[tokio::test]
async fn end_run_ends_an_abandoned_run_cancelled_when_a_cancel_was_asked() {
    let h = harness();
    let id = abandoned_after_one_task(&h).await;
    h.store
        .request_cancel(&id, dagy_store::now_ms())
        .await
        .expect("cancel");
    let ended = h
        .executor
        .end_run(&id, dagy_engine::RunEnd::Abandoned("stopped"))
        .await
        .expect("end");
    assert_eq!(ended, Some(RunStatus::Cancelled));
}

#[tokio::test]
async fn end_run_times_out_a_lapsed_run_and_leaves_a_held_one_alone() {
    let h = harness();
    let id = abandoned_after_one_task(&h).await;
    let sweep = h.executor.clone().with_owner(dagy_engine::SWEEP_OWNER);
    let lease = h
        .store
        .acquire_lease(&id, "live", dagy_store::now_ms(), 60_000)
        .await
        .expect("a live executor took it");
    let held = sweep
        .end_run(&id, dagy_engine::RunEnd::Lapsed("not resumed"))
        .await
        .expect("try");
    assert_eq!(held, None, "a live executor's run is left alone");
    h.store
        .release_lease(&lease, dagy_store::now_ms())
        .await
        .expect("release");
    let ended = sweep
        .end_run(&id, dagy_engine::RunEnd::Lapsed("not resumed"))
        .await
        .expect("end");
    assert_eq!(ended, Some(RunStatus::TimedOut));
    let snap = h.store.load_run(&id).await.expect("load");
    assert_eq!(status_of(&snap, "t3").0, TaskStatus::TimedOut);
    assert_eq!(
        snap.tasks[2].error.as_ref().map(|e| e.error_type.as_str()),
        Some("RunLapsed")
    );
}
