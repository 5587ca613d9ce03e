//! The router with the real Step Functions dispatcher against moto's Step Functions API (its
//! interpreter off, so executions stay running until something stops them), on the memory
//! store: a trigger starts an execution named by the run id; a run whose execution was
//! stopped outside Dagy ends when it is read; the sweep ends such runs, leaves running ones
//! alone and starts executions that are missing.

use dagy_testkit::moto;

use std::sync::Arc;

use serde_json::{Map, Value, json};

use dagy_backend_sfn::StepFunctionsBackend;
use dagy_core::{Settings, StepFunctionsSettings};
use dagy_functions::dispatch::{Dispatchers, StepFunctionsDispatcher};
use dagy_functions::router::Router;
use dagy_store::{MemoryStore, NewRun, RunRecord, RunStatus, RunStore};

const ROLE: &str = "arn:aws:iam::123456789012:role/dagy-sfn";
const TASK_EXECUTOR: &str = "arn:aws:lambda:us-east-1:123456789012:function:dagy-task-executor";

fn sfn_client() -> aws_sdk_sfn::Client {
    use aws_sdk_sfn::config::{BehaviorVersion, Credentials, Region};
    aws_sdk_sfn::Client::from_conf(
        aws_sdk_sfn::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "dagy-tests"))
            .endpoint_url(moto::endpoint())
            .build(),
    )
}

fn router(store: Arc<MemoryStore>) -> Router {
    let backend =
        StepFunctionsBackend::new(sfn_client(), "us-east-1", ROLE, TASK_EXECUTOR).expect("backend");
    let dispatchers = Dispatchers::new(
        None,
        Some(StepFunctionsDispatcher::new(backend, store.clone())),
    );
    let settings = Settings {
        step_functions: Some(StepFunctionsSettings {
            role_arn: ROLE.into(),
            task_executor_arn: TASK_EXECUTOR.into(),
        }),
        ..Settings::default()
    };
    Router::new(
        store,
        settings,
        Arc::new(dispatchers),
        Arc::new(dagy_handlers::registry()),
    )
}

async fn action(router: &Router, event: Value) -> Value {
    router.handle(event).await
}

fn deployment() -> String {
    format!(
        "sfn-api-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    )
}

fn machine(deployment: &str) -> String {
    StepFunctionsBackend::state_machine_name(deployment)
}

fn execution_arn(deployment: &str, run_id: &str) -> String {
    format!(
        "arn:aws:states:us-east-1:123456789012:execution:{}:{run_id}",
        machine(deployment)
    )
}

async fn execution_status(deployment: &str, run_id: &str) -> String {
    sfn_client()
        .describe_execution()
        .execution_arn(execution_arn(deployment, run_id))
        .send()
        .await
        .map(|o| o.status().as_str().to_string())
        .unwrap_or_else(|e| format!("{e:?}"))
}

async fn setup(router: &Router, name: &str) {
    let flow = json!({"spec_version": 1, "name": "two", "tasks": [
        {"id": "a", "handler": "echo"},
        {"id": "b", "handler": "echo", "depends_on": ["a"]}
    ]});
    let answer = action(
        router,
        json!({"action": "put_deployment", "name": name, "flow": flow, "backend": "step_functions"}),
    )
    .await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
}

async fn trigger(router: &Router, name: &str) -> String {
    let answer = action(router, json!({"action": "trigger", "deployment": name})).await;
    assert_eq!(answer["statusCode"], 202, "{answer}");
    assert_eq!(answer["backend"], "step_functions", "{answer}");
    answer["run_id"].as_str().expect("run id").to_string()
}

#[tokio::test]
async fn a_trigger_starts_an_execution_and_reads_follow_it() {
    let store = Arc::new(MemoryStore::new());
    let router = router(store.clone());
    let name = deployment();
    setup(&router, &name).await;
    let run_id = trigger(&router, &name).await;
    assert_eq!(execution_status(&name, &run_id).await, "RUNNING");

    let answer = action(&router, json!({"action": "get_run", "run_id": run_id})).await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
    assert!(
        !store.get_run(&run_id).await.expect("run").status.is_final(),
        "a running execution leaves the run as it is"
    );

    // Stopped outside Dagy (the console, a script): the next read ends the run.
    sfn_client()
        .stop_execution()
        .execution_arn(execution_arn(&name, &run_id))
        .error("Operator")
        .cause("stopped by hand")
        .send()
        .await
        .expect("stopped");
    let run = store.get_run(&run_id).await.expect("run");
    assert!(!run.status.is_final(), "nothing has read it yet");
    action(&router, json!({"action": "get_run", "run_id": run_id})).await;
    let run = store.get_run(&run_id).await.expect("run");
    assert_eq!(run.status, RunStatus::Failed);
    // AWS reports the stop's error and cause; moto only the status.
    assert!(
        run.error
            .as_deref()
            .is_some_and(|e| e.contains("Operator: stopped by hand") || e.contains("ABORTED")),
        "{:?}",
        run.error
    );
    let snapshot = store.load_run(&run_id).await.expect("load");
    assert!(snapshot.tasks.iter().all(|t| t.status.is_final()));
}

#[tokio::test]
async fn a_cancel_stops_the_execution_and_ends_the_run() {
    let store = Arc::new(MemoryStore::new());
    let router = router(store.clone());
    let name = deployment();
    setup(&router, &name).await;
    let run_id = trigger(&router, &name).await;
    let answer = action(&router, json!({"action": "cancel", "run_id": run_id})).await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
    assert_eq!(
        store.get_run(&run_id).await.expect("run").status,
        RunStatus::Cancelled
    );
    assert_eq!(execution_status(&name, &run_id).await, "ABORTED");
}

#[tokio::test]
async fn the_sweep_ends_stopped_executions_leaves_running_ones_and_starts_missing_ones() {
    let store = Arc::new(MemoryStore::new());
    let router = router(store.clone());
    let name = deployment();
    setup(&router, &name).await;
    let running = trigger(&router, &name).await;
    let stopped = trigger(&router, &name).await;
    sfn_client()
        .stop_execution()
        .execution_arn(execution_arn(&name, &stopped))
        .send()
        .await
        .expect("stopped");

    // A run whose dispatch never happened (the router died after writing it), an hour old.
    let template = store.load_run(&running).await.expect("load");
    let hour_ago = dagy_store::now_ms() - 3_600_000;
    let missing = format!("{:032x}", u128::from(hour_ago));
    store
        .create_run(NewRun {
            run: RunRecord {
                run_id: missing.clone(),
                status: RunStatus::Pending,
                lease: None,
                idempotency_key: None,
                created_at_ms: hour_ago,
                started_at_ms: None,
                finished_at_ms: None,
                parameters: Map::new(),
                ..template.run.clone()
            },
            flow: dagy_core::Flow::from_shared(template.flow.clone(), None).expect("a valid flow"),
        })
        .await
        .expect("created");
    // Make the two started runs due for the sweep too (their grace has not passed yet).
    for id in [&running, &stopped] {
        let lease = store
            .join_lease(id, dagy_engine::STATE_MACHINE_OWNER, "test", hour_ago, 1)
            .await
            .expect("an old lease");
        assert_eq!(lease.expires_at_ms, hour_ago + 1);
    }

    let answer = action(&router, json!({"action": "sweep"})).await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let has = |list: &str, id: &str| {
        answer[list]
            .as_array()
            .is_some_and(|l| l.iter().any(|v| v == id))
    };
    assert!(has("running", &running), "{answer}");
    assert!(has("ended", &stopped), "{answer}");
    assert!(has("resumed", &missing), "{answer}");
    assert_eq!(
        store.get_run(&stopped).await.expect("run").status,
        RunStatus::Failed
    );
    assert!(
        !store
            .get_run(&running)
            .await
            .expect("run")
            .status
            .is_final()
    );
    assert_eq!(execution_status(&name, &missing).await, "RUNNING");
}
