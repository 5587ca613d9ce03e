//! `#[dagy::task]` handlers at run time: typed arguments, outputs, errors, defaults and shared
//! state, run through the engine on the in-memory store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use dagy::store::{RunSnapshot, RunStatus, TaskStatus};
use dagy::{FlowBuilder, FlowSpec, HandlerRegistry, ResultExt, State, TaskError, Upstream};

#[derive(serde::Deserialize)]
struct Args {
    x: f64,
}

#[dagy::task(retries = 2, runtime_tier = "large", timeout_seconds = 30)]
async fn double(args: Args) -> Result<f64, TaskError> {
    Ok(args.x * 2.0)
}

#[dagy::task(name = "add_up")]
fn total(Upstream(up): Upstream<HashMap<String, f64>>) -> Result<f64, TaskError> {
    Ok(up.values().sum())
}

static ATTEMPTS: AtomicUsize = AtomicUsize::new(0);

/// Fails with an I/O error (through `?`) on its first attempt.
#[dagy::task(retries = 1)]
async fn io_then_ok() -> Result<&'static str, TaskError> {
    if ATTEMPTS.fetch_add(1, Ordering::SeqCst) == 0 {
        Err(std::io::Error::other("disk hiccup"))?;
    }
    Ok("fine")
}

#[dagy::task(retries = 5)]
async fn parse_number(args: String) -> Result<i64, TaskError> {
    args.parse::<i64>().permanent()
}

struct Client {
    name: String,
}

#[dagy::task]
async fn uses_client(State(client): State<Client>) -> Result<String, TaskError> {
    Ok(client.name.clone())
}

static BUILT: AtomicUsize = AtomicUsize::new(0);

fn registry() -> HandlerRegistry {
    let mut registry = HandlerRegistry::new();
    registry
        .add(double)
        .add(total)
        .add(io_then_ok)
        .add(parse_number)
        .add(uses_client);
    registry.state_with(|| async {
        BUILT.fetch_add(1, Ordering::SeqCst);
        Client { name: "s3".into() }
    });
    registry.register("closure", |_ctx, input| async move {
        Ok(json!({"got": input["args"]}))
    });
    registry
}

async fn run(flow: &FlowSpec) -> RunSnapshot {
    dagy::run_locally(flow, registry()).await.expect("runs")
}

#[tokio::test]
async fn typed_args_upstream_and_a_closure_produce_the_right_outputs() {
    let flow = FlowBuilder::new("sums")
        .task_of("a", &double, |t| t.args(json!({"x": 1.5})))
        .task_of("b", &double, |t| t.args(json!({"x": 2})))
        .task_of("sum", &total, |t| t.depends_on(["a", "b"]))
        .task("c", "closure", |t| t.args(json!("hi")).depends_on(["sum"]))
        .build();
    let snap = run(&flow).await;
    assert_eq!(snap.run.status, RunStatus::Completed);
    let outputs: Vec<_> = snap
        .tasks
        .iter()
        .map(dagy::store::TaskRecord::output_value)
        .collect();
    assert_eq!(
        outputs,
        [
            Some(json!(3.0)),
            Some(json!(4.0)),
            Some(json!(7.0)),
            Some(json!({"got": "hi"}))
        ]
    );
}

#[test]
fn the_attributes_options_are_the_defaults_of_a_built_task() {
    let flow = FlowBuilder::new("f")
        .task_of("a", &double, |t| t)
        .task_of("b", &double, |t| t.retries(0))
        .task_of("sum", &total, |t| t.depends_on(["a", "b"]))
        .build();
    let a = &flow.tasks[0];
    assert_eq!(a.handler, "double");
    assert_eq!((a.retries, a.timeout_seconds), (2, Some(30.0)));
    assert_eq!(a.runtime_tier, Some(dagy::RuntimeTier::Large));
    assert_eq!(flow.tasks[1].retries, 0, "the flow overrides a default");
    assert_eq!(flow.tasks[2].handler, "add_up", "the name option");
    let plan = dagy::core::plan(
        &flow.validate(None).expect("valid"),
        &dagy::core::PlanRequest::default(),
        &dagy::core::Settings::default(),
    );
    let plan = plan.expect("plan");
    assert_eq!(
        (plan.decided_by.as_str(), plan.tier),
        ("flow", dagy::RuntimeTier::Large),
        "the task's tier hint (level 4) came from the code"
    );
}

#[tokio::test]
async fn a_wrong_args_shape_fails_for_good_as_invalid_args_naming_the_field() {
    let flow = FlowBuilder::new("f")
        .task_of("a", &double, |t| t.args(json!({"x": "two"})))
        .build();
    let snap = run(&flow).await;
    let task = &snap.tasks[0];
    assert_eq!(
        (task.status, task.attempts),
        (TaskStatus::Failed, 1),
        "not retried"
    );
    let error = task.error.as_ref().expect("error");
    assert_eq!(error.error_type, "InvalidArgs");
    assert!(
        error.message.starts_with("args.x: invalid type"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn any_error_is_retryable_through_question_mark_and_permanent_is_not() {
    let flow = FlowBuilder::new("f")
        .task_of("io", &io_then_ok, |t| t)
        .task_of("bad", &parse_number, |t| t.args(json!("seven")))
        .build();
    let snap = run(&flow).await;
    assert_eq!(snap.tasks[0].status, TaskStatus::Completed);
    assert_eq!(snap.tasks[0].attempts, 2, "the I/O error was retried");
    assert_eq!(snap.tasks[1].status, TaskStatus::Failed);
    assert_eq!(
        snap.tasks[1].attempts, 1,
        "a permanent error skips its 5 retries"
    );
}

#[tokio::test]
async fn shared_state_is_built_once_for_every_task_of_the_process() {
    let mut flow = FlowBuilder::new("f");
    for i in 0..5 {
        flow = flow.task_of(format!("t{i}"), &uses_client, |t| t);
    }
    let snap = run(&flow.build()).await;
    assert!(
        snap.tasks
            .iter()
            .all(|t| t.output_value() == Some(json!("s3")))
    );
    assert_eq!(BUILT.load(Ordering::SeqCst), 1);
}

#[test]
fn the_function_stays_callable_for_unit_tests() {
    let out = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(double::run(Args { x: 4.0 }));
    assert_eq!(out, Ok(8.0));
    assert_eq!(
        total::run(Upstream(HashMap::from([("a".into(), 1.0)]))),
        Ok(1.0)
    );
}
