//! The executor on the DynamoDB store, against moto's server over loopback: a run completes,
//! five executors started at once run each task once, and transient faults (rejected
//! connections, lost answers, cut connections) are retried with nothing lost or doubled.

use dagy_testkit as support;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use dagy_core::{FlowBuilder, FlowSpec};
use dagy_engine::{Executor, HandlerRegistry, NewRunRequest, RunOptions, StepOutcome};
use dagy_store::{RunStatus, RunStore, TaskStatus};
use dagy_store_dynamodb::DynamoStore;

/// A chain of `count` tasks, each adding 1 to its upstream.
fn chain(n: usize) -> FlowSpec {
    dagy_handlers::chain(n, "count", json!({"add": 1}))
}

/// Example handlers plus `count`, which logs each call and sums like `sum`.
fn registry(log: Arc<Mutex<Vec<String>>>) -> Arc<HandlerRegistry> {
    let mut registry = dagy_handlers::registry();
    registry.register("count", move |ctx, input: Value| {
        let log = log.clone();
        async move {
            log.lock().expect("log").push(ctx.task_id.clone());
            tokio::time::sleep(Duration::from_millis(5)).await;
            let upstream: i64 = input["upstream"]
                .as_object()
                .map(|m| m.values().filter_map(Value::as_i64).sum())
                .unwrap_or(0);
            Ok(json!(upstream + input["args"]["add"].as_i64().unwrap_or(0)))
        }
    });
    Arc::new(registry)
}

async fn start(
    store: &Arc<DynamoStore>,
    spec: FlowSpec,
    registry: &Arc<HandlerRegistry>,
) -> String {
    let flow = spec.validate(None).expect("valid");
    Executor::new(store.clone(), registry.clone())
        .create_run(&flow, NewRunRequest::default())
        .await
        .expect("create")
        .run
        .run_id
}

#[tokio::test]
async fn a_flow_runs_to_completion_on_dynamodb() {
    let store = Arc::new(support::fresh_store("engine").await);
    let log = Arc::new(Mutex::new(Vec::new()));
    let registry = registry(log.clone());
    let spec = FlowBuilder::new("mixed")
        .parameter("day", "mon")
        .task("a", "count", |t| t.args(json!({"add": 2})))
        .task("flaky", "flaky", |t| {
            t.args(json!({"failures": 1})).retries(1).depends_on(["a"])
        })
        .task("bad", "fail", |t| t.args(json!({"message": "no"})))
        .task("after_bad", "echo", |t| t.depends_on(["bad"]))
        .build();
    let id = start(&store, spec, &registry).await;
    let exec = Executor::new(store.clone(), registry);
    let outcome = exec.run(&id, &RunOptions::default()).await.expect("run");
    assert_eq!(outcome, StepOutcome::Finished(RunStatus::Failed));
    let snap = store.load_run(&id).await.expect("load");
    let status: Vec<(&str, TaskStatus, u32)> = snap
        .tasks
        .iter()
        .map(|t| (t.task_id.as_str(), t.status, t.attempts))
        .collect();
    assert_eq!(
        status,
        [
            ("a", TaskStatus::Completed, 1),
            ("flaky", TaskStatus::Completed, 2),
            ("bad", TaskStatus::Failed, 1),
            ("after_bad", TaskStatus::Skipped, 0),
        ]
    );
    assert_eq!(snap.tasks[0].output_value(), Some(json!(2)));
    let flaky_out = snap.tasks[1].output_value().expect("output");
    assert_eq!(flaky_out["parameters"], json!({"day": "mon"}));
    assert_eq!(flaky_out["upstream"], json!({"a": 2}));
    assert_eq!(snap.run.error.as_deref(), Some("task bad failed: no"));
    assert!(snap.run.lease.is_none(), "a finished run holds no lease");
    let lapsed = store.find_lapsed_runs(u64::MAX, 100).await.expect("query");
    assert!(
        lapsed.iter().all(|r| r.run_id != id),
        "a final run leaves the lapsed index"
    );
}

#[tokio::test]
async fn five_executors_started_at_once_run_each_task_once() {
    let store = Arc::new(support::fresh_store("dupes").await);
    let log = Arc::new(Mutex::new(Vec::new()));
    let registry = registry(log.clone());
    let id = start(&store, chain(8), &registry).await;
    let mut joins = Vec::new();
    for n in 0..5 {
        let exec = Executor::new(store.clone(), registry.clone()).with_owner(format!("exec-{n}"));
        let id = id.clone();
        joins.push(tokio::spawn(async move {
            exec.run(&id, &RunOptions::default()).await
        }));
    }
    let mut outcomes = Vec::new();
    for j in joins {
        let outcome = j.await.expect("join").expect("run");
        assert!(
            matches!(
                outcome,
                StepOutcome::Finished(_) | StepOutcome::Busy { .. } | StepOutcome::Superseded
            ),
            "{outcome:?}"
        );
        outcomes.push(outcome);
    }
    assert!(
        outcomes.contains(&StepOutcome::Finished(RunStatus::Completed)),
        "{outcomes:?}"
    );
    let calls = log.lock().expect("log").clone();
    let expected: Vec<String> = (1..=8).map(|i| format!("t{i}")).collect();
    assert_eq!(calls, expected, "each task ran exactly once");
    let snap = store.load_run(&id).await.expect("load");
    assert_eq!(snap.tasks[7].output_value(), Some(json!(8)));
}

#[tokio::test]
async fn transient_faults_are_retried_and_nothing_is_lost_or_doubled() {
    let (proxy, faults) = support::chaos_proxy(&support::endpoint()).await;
    let client = support::client_for(&proxy);
    let store = Arc::new(DynamoStore::new(
        client,
        format!("dagy-test-chaos-{}", std::process::id()),
    ));
    store
        .create_table()
        .await
        .expect("create table through faults");
    let log = Arc::new(Mutex::new(Vec::new()));
    let registry = registry(log.clone());
    let id = start(&store, chain(12), &registry).await;
    let exec = Executor::new(store.clone(), registry);
    let outcome = exec
        .run(&id, &RunOptions::default())
        .await
        .expect("run through faults");
    assert_eq!(outcome, StepOutcome::Finished(RunStatus::Completed));
    let snap = store.load_run(&id).await.expect("load");
    assert!(
        snap.tasks
            .iter()
            .all(|t| t.status == TaskStatus::Completed && t.attempts == 1)
    );
    assert_eq!(snap.tasks[11].output_value(), Some(json!(12)));
    let calls = log.lock().expect("log").clone();
    assert_eq!(calls.len(), 12, "no task ran twice: {calls:?}");
    let injected = faults.load(Ordering::Relaxed);
    assert!(injected >= 5, "the proxy injected only {injected} faults");
}

#[tokio::test]
async fn an_idempotency_key_makes_one_run() {
    let store = Arc::new(support::fresh_store("idem").await);
    let registry = registry(Arc::new(Mutex::new(Vec::new())));
    let flow = chain(2).validate(None).expect("valid");
    let exec = Executor::new(store.clone(), registry);
    let request = || NewRunRequest {
        idempotency_key: Some("nightly-2026-11-24".into()),
        deployment: Some("nightly".into()),
        ..NewRunRequest::default()
    };
    let first = exec.create_run(&flow, request()).await.expect("first");
    let second = exec.create_run(&flow, request()).await.expect("second");
    assert!(first.created && !second.created);
    assert_eq!(first.run.run_id, second.run.run_id);
    let page = store.list_runs("nightly", 10, None).await.expect("list");
    assert_eq!(page.runs.len(), 1);
}

#[tokio::test]
async fn a_large_flow_is_stored_in_chunks_and_read_back_whole() {
    let store = Arc::new(support::fresh_store("chunks").await);
    let registry = registry(Arc::new(Mutex::new(Vec::new())));
    let big = json!("x".repeat(1000));
    let mut b = FlowBuilder::new("wide");
    for i in 0..400 {
        let big = big.clone();
        b = b.task(format!("task-{i:04}"), "echo", move |t| {
            t.args(json!({"padding": big}))
        });
    }
    let spec = b.build();
    let id = start(&store, spec.clone(), &registry).await;
    let snap = store.load_run(&id).await.expect("load");
    assert_eq!(
        *snap.flow, spec,
        "the flow survives chunking (over 300 KB of JSON)"
    );
    assert_eq!(snap.tasks.len(), 400);
}

/// How many items the table holds under `RUN#<run_id>`.
async fn items_of_run(store: &DynamoStore, run_id: &str) -> usize {
    let client = support::client_for(&support::endpoint());
    let out = client
        .query()
        .table_name(store.table())
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(
            ":pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("RUN#{run_id}")),
        )
        .send()
        .await
        .expect("query");
    out.items().len()
}

/// `echo` nests its upstream's output two levels deeper per task: 70 tasks pass serde_json's
/// default limit of 128 levels. Whatever the store accepted reads back, on both paths.
#[tokio::test]
async fn outputs_nested_past_json_defaults_read_back_on_both_paths() {
    let store = Arc::new(support::fresh_store("deep").await);
    let registry = Arc::new(dagy_handlers::registry());
    let executor = Executor::new(store.clone(), registry.clone());
    let spec = dagy_handlers::chain(70, "echo", Value::Null);

    let whole = start(&store, spec.clone(), &registry).await;
    let outcome = executor.run(&whole, &RunOptions::default()).await;
    assert_eq!(
        outcome.expect("run"),
        StepOutcome::Finished(RunStatus::Completed)
    );
    let snap = store.load_run(&whole).await.expect("reads back");
    let last = snap.tasks[69].output_value().expect("output");
    assert!(
        dagy_core::json::depth(&last) > 128,
        "{}",
        dagy_core::json::depth(&last)
    );

    let stepped = start(&store, spec, &registry).await;
    let mut steps = 0;
    loop {
        steps += 1;
        match executor
            .step(&stepped, &RunOptions::default())
            .await
            .expect("step")
        {
            StepOutcome::Continue { .. } => {}
            StepOutcome::Finished(status) => {
                assert_eq!(status, RunStatus::Completed);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(steps, 70, "a step per task, none stuck");
    let again = store.load_run(&stepped).await.expect("reads back");
    assert_eq!(again.tasks[69].output, snap.tasks[69].output);
}

/// Past the depth limit the task fails as `OutputTooDeep`, and the run stays readable.
#[tokio::test]
async fn an_echo_chain_past_the_depth_limit_fails_readably_on_dynamodb() {
    let store = Arc::new(support::fresh_store("too-deep").await);
    let registry = Arc::new(dagy_handlers::registry());
    let id = start(
        &store,
        dagy_handlers::chain(300, "echo", Value::Null),
        &registry,
    )
    .await;
    let outcome = Executor::new(store.clone(), registry)
        .run(&id, &RunOptions::default())
        .await
        .expect("run");
    assert_eq!(outcome, StepOutcome::Finished(RunStatus::Failed));
    let snap = store.load_run(&id).await.expect("reads back");
    let bad = snap
        .tasks
        .iter()
        .find(|t| t.status == TaskStatus::Failed)
        .expect("a failed task");
    assert_eq!(
        bad.error.as_ref().expect("error").error_type,
        "OutputTooDeep"
    );
}

/// 500 KB of parameters, or a 500 KB flow name, is refused with the limit before anything is
/// written: no flow chunks or task items are left without a run.
#[tokio::test]
async fn oversized_runs_are_refused_with_the_limit_and_leave_nothing_behind() {
    use dagy_store::{NewRun, RunRecord, StoreError};
    let store = Arc::new(support::fresh_store("oversized").await);
    let spec = chain(3);
    let mut parameters = serde_json::Map::new();
    parameters.insert("blob".into(), json!("x".repeat(500 * 1024)));
    let cases = [
        ("big-params", "chain".to_string(), parameters),
        ("big-name", "n".repeat(500 * 1024), serde_json::Map::new()),
    ];
    for (run_id, flow_name, parameters) in cases {
        let run = RunRecord {
            run_id: run_id.into(),
            flow_name,
            deployment: None,
            status: RunStatus::Pending,
            parameters,
            plan: None,
            idempotency_key: None,
            cancel_requested: false,
            lease: None,
            wake_at_ms: 0,
            error: None,
            created_at_ms: dagy_store::now_ms(),
            started_at_ms: None,
            finished_at_ms: None,
        };
        let err = store
            .create_run(NewRun {
                run,
                flow: spec.clone().validate(None).expect("a valid chain"),
            })
            .await
            .expect_err("too large");
        assert!(
            matches!(err, StoreError::TooLarge { .. }),
            "{run_id}: {err:?}"
        );
        let message = err.to_string();
        assert!(message.contains("over the store's limit"), "{message}");
        assert!(!message.contains("unavailable"), "{message}");
        assert_eq!(
            items_of_run(&store, run_id).await,
            0,
            "{run_id}: nothing left"
        );
    }
}

/// A new run given the id of an existing one is refused, and the existing run's task items
/// (written ahead of the run item) are never overwritten.
#[tokio::test]
async fn a_run_id_in_use_is_refused_and_the_existing_run_is_kept() {
    let store = Arc::new(support::fresh_store("reused-id").await);
    let registry = registry(Arc::new(Mutex::new(Vec::new())));
    let executor = Executor::new(store.clone(), registry);
    let flow = chain(3).validate(None).expect("valid");
    let request = || NewRunRequest {
        run_id: Some("same-id".into()),
        ..NewRunRequest::default()
    };
    executor.create_run(&flow, request()).await.expect("first");
    let outcome = executor.run("same-id", &RunOptions::default()).await;
    assert_eq!(
        outcome.expect("run"),
        StepOutcome::Finished(RunStatus::Completed)
    );
    let err = executor
        .create_run(&flow, request())
        .await
        .expect_err("in use");
    assert!(err.to_string().contains("already exists"), "{err}");
    let snap = store.load_run("same-id").await.expect("load");
    assert_eq!(snap.run.status, RunStatus::Completed);
    assert!(snap.tasks.iter().all(|t| t.status == TaskStatus::Completed));
    assert_eq!(snap.tasks[2].output_value(), Some(json!(3)));
}

/// Steps a run to its end; returns the DynamoDB requests and response bytes of each step.
async fn traffic_per_step(
    executor: &Executor,
    traffic: &support::Traffic,
    run_id: &str,
) -> Vec<(u64, u64)> {
    let mut per_step = Vec::new();
    loop {
        let (requests, bytes) = traffic.totals();
        let outcome = executor
            .step(run_id, &RunOptions::default())
            .await
            .expect("step");
        let (after_requests, after_bytes) = traffic.totals();
        per_step.push((after_requests - requests, after_bytes - bytes));
        match outcome {
            StepOutcome::Continue { .. } => {}
            StepOutcome::Finished(status) => {
                assert_eq!(status, RunStatus::Completed);
                return per_step;
            }
            other => panic!("nobody else works on the run: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_micro_step_reads_and_writes_the_same_whatever_the_flows_size() {
    let (url, traffic) = support::counting_proxy(&support::endpoint()).await;
    let table = support::fresh_store("steps").await.table().to_string();
    let store = Arc::new(DynamoStore::new(support::client_for(&url), &table));
    let registry = Arc::new(dagy_handlers::registry());
    let executor = Executor::new(store.clone(), registry.clone());
    let mut per_task = Vec::new();
    for n in [20, 200] {
        let spec = dagy_handlers::chain(n, "sum", json!({"add": 1}));
        let run_id = start(&store, spec, &registry).await;
        let steps = traffic_per_step(&executor, &traffic, &run_id).await;
        assert_eq!(steps.len(), n, "one step per task");
        let most = steps.iter().map(|s| s.0).max().unwrap_or(0);
        assert!(most <= 6, "at most 6 requests a step: {steps:?}");
        let bytes: u64 = steps.iter().map(|s| s.1).sum();
        let requests: u64 = steps.iter().map(|s| s.0).sum();
        eprintln!(
            "{n}-task chain: {:.2} requests and {:.0} response bytes per step, {most} requests at most",
            requests as f64 / n as f64,
            bytes as f64 / n as f64
        );
        per_task.push(bytes as f64 / n as f64);
    }
    assert!(
        per_task[1] <= per_task[0] * 1.5,
        "response bytes per step, 20 tasks then 200: {per_task:?}"
    );
}
