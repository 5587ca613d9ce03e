//! The router with the real ECS dispatcher against moto's ECS, EC2 and CloudWatch Logs, on the
//! memory store: a trigger of a Fargate tier starts one worker task of the tier's size; a
//! cancel sends StopTask; a run whose worker task stopped without recording it ends when read,
//! with the task's reason; a run's log comes back in pages, following new events.

use dagy_testkit::{client, unique};

use std::sync::Arc;

use serde_json::{Value, json};

use dagy_backend_ecs::EcsBackend;
use dagy_core::{EcsSettings, Settings};
use dagy_functions::dispatch::{Dispatchers, EcsDispatcher};
use dagy_functions::router::Router;
use dagy_store::{MemoryStore, RunStatus, RunStore};

struct Env {
    store: Arc<MemoryStore>,
    router: Router,
    settings: EcsSettings,
}

async fn env() -> Env {
    let settings = dagy_testkit::ecs::cluster("dagy-worker:latest").await;
    let store = Arc::new(MemoryStore::new());
    let backend = dagy_testkit::ecs::backend(&settings, "dagy-runs");
    let dispatchers =
        Dispatchers::new(None, None).with_ecs(EcsDispatcher::new(backend, store.clone()));
    let router = Router::new(
        store.clone(),
        Settings {
            ecs: Some(settings.clone()),
            ..Settings::default()
        },
        Arc::new(dispatchers),
        Arc::new(dagy_handlers::registry()),
    );
    Env {
        store,
        router,
        settings,
    }
}

async fn action(env: &Env, event: Value) -> Value {
    env.router.handle(event).await
}

async fn trigger(env: &Env, tier: &str) -> String {
    let name = unique("etl");
    let flow = json!({"spec_version": 1, "name": "etl", "tasks": [
        {"id": "extract", "handler": "echo"},
        {"id": "load", "handler": "echo", "depends_on": ["extract"]}
    ]});
    let answer = action(
        env,
        json!({"action": "put_deployment", "name": name, "flow": flow, "default_runtime_tier": tier}),
    )
    .await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let answer = action(env, json!({"action": "trigger", "deployment": name})).await;
    assert_eq!(answer["statusCode"], 202, "{answer}");
    assert_eq!(
        (answer["backend"].as_str(), answer["tier"].as_str()),
        (Some("ecs_fargate"), Some(tier)),
        "{answer}"
    );
    answer["run_id"].as_str().expect("run id").to_string()
}

async fn task_of(env: &Env, run_id: &str) -> aws_sdk_ecs::types::Task {
    let ecs: aws_sdk_ecs::Client = client!(aws_sdk_ecs);
    let listed = ecs
        .list_tasks()
        .cluster(&env.settings.cluster_arn)
        .started_by(run_id)
        .send()
        .await
        .expect("listed");
    assert_eq!(listed.task_arns().len(), 1, "one task per run");
    ecs.describe_tasks()
        .cluster(&env.settings.cluster_arn)
        .tasks(&listed.task_arns()[0])
        .send()
        .await
        .expect("described")
        .tasks()[0]
        .clone()
}

/// Asserts that the run ended failed with an error that mentions `reason`.
async fn assert_failed_with(store: &dyn RunStore, run_id: &str, reason: &str) {
    let run = store.get_run(run_id).await.expect("run");
    assert_eq!(run.status, RunStatus::Failed);
    assert!(
        run.error.as_deref().is_some_and(|e| e.contains(reason)),
        "{:?}",
        run.error
    );
}

#[tokio::test]
async fn a_fargate_tier_starts_one_task_of_its_size_and_a_cancel_stops_it() {
    let env = env().await;
    let run_id = trigger(&env, "medium").await;
    let task = task_of(&env, &run_id).await;
    let overrides = task.overrides().expect("overrides");
    assert_eq!(
        (overrides.cpu(), overrides.memory()),
        (Some("1024"), Some("2048"))
    );

    let answer = action(&env, json!({"action": "cancel", "run_id": run_id})).await;
    assert_eq!(
        answer["statusCode"], 200,
        "a run no worker picked up is cancelled at once: {answer}"
    );
    let stopped = task_of(&env, &run_id).await;
    assert_eq!(stopped.last_status(), Some("STOPPED"), "StopTask was sent");
    assert_eq!(
        env.store.get_run(&run_id).await.expect("run").status,
        RunStatus::Cancelled
    );
}

#[tokio::test]
async fn a_run_whose_worker_died_ends_failed_with_the_tasks_reason() {
    let env = env().await;
    let run_id = trigger(&env, "small").await;
    let task = task_of(&env, &run_id).await;
    let ecs: aws_sdk_ecs::Client = client!(aws_sdk_ecs);
    ecs.stop_task()
        .cluster(&env.settings.cluster_arn)
        .task(task.task_arn().expect("arn"))
        .reason("OutOfMemoryError: Container killed due to memory usage")
        .send()
        .await
        .expect("stopped");
    let answer = action(&env, json!({"action": "get_run", "run_id": run_id})).await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
    assert_failed_with(env.store.as_ref(), &run_id, "OutOfMemoryError").await;
    let snapshot = env.store.load_run(&run_id).await.expect("load");
    assert!(
        snapshot.tasks.iter().all(|t| t.status.is_final()),
        "no task left open"
    );
}

#[tokio::test]
async fn a_runs_log_comes_back_in_pages_that_follow_new_events() {
    let env = env().await;
    let run_id = trigger(&env, "small").await;
    let task = task_of(&env, &run_id).await;
    let stream = EcsBackend::log_stream(task.task_arn().expect("arn"));
    dagy_testkit::ecs::log_stream(&env.settings.log_group, &stream).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let log_group = env.settings.log_group.clone();
    let put = |lines: Vec<(i64, &'static str)>| {
        let (group, stream) = (log_group.clone(), stream.clone());
        async move { dagy_testkit::ecs::put_lines(&group, &stream, &lines).await }
    };
    put(vec![
        (now, "run started"),
        (now + 1, "task extract completed"),
    ])
    .await;
    let first = action(&env, json!({"action": "logs", "run_id": run_id})).await;
    assert_eq!(first["statusCode"], 200, "{first}");
    let messages = |page: &Value| -> Vec<String> {
        page["events"]
            .as_array()
            .map(|e| {
                e.iter()
                    .filter_map(|e| e["message"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(messages(&first), ["run started", "task extract completed"]);
    put(vec![(now + 2, "task load completed")]).await;
    let next = first["next"].as_str().expect("a next token");
    let second = action(
        &env,
        json!({"action": "logs", "run_id": run_id, "next": next}),
    )
    .await;
    assert_eq!(messages(&second), ["task load completed"], "{second}");
}

#[tokio::test]
async fn a_custom_size_is_checked_and_sent() {
    let env = env().await;
    let name = unique("custom");
    let flow = json!({"spec_version": 1, "name": "big", "tasks": [{"id": "crunch", "handler": "echo", "memory_mb": 6000}]});
    let answer = action(
        &env,
        json!({"action": "put_deployment", "name": name, "flow": flow, "default_runtime_tier": "xlarge"}),
    )
    .await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let trigger_with = |resources: Value| {
        let name = name.clone();
        let env = &env;
        async move {
            action(
                env,
                json!({"action": "trigger", "deployment": name, "resources": resources}),
            )
            .await
        }
    };
    let bad = trigger_with(json!({"cpu": 256, "memory_mb": 4096})).await;
    assert_eq!(bad["statusCode"], 400, "{bad}");
    assert!(
        bad["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not go with 0.25 vCPU")),
        "{bad}"
    );
    let small = trigger_with(json!({"cpu": 2048, "memory_mb": 4096})).await;
    assert_eq!(
        (
            small["statusCode"].as_u64(),
            small["error"]["code"].as_str()
        ),
        (Some(422), Some("resources_too_small")),
        "{small}"
    );
    let ok = trigger_with(json!({"cpu": 2048, "memory_mb": 8192})).await;
    assert_eq!(ok["statusCode"], 202, "{ok}");
    let task = task_of(&env, ok["run_id"].as_str().expect("run id")).await;
    let overrides = task.overrides().expect("overrides");
    assert_eq!(
        (overrides.cpu(), overrides.memory()),
        (Some("2048"), Some("8192"))
    );
}

/// A stand-in for ECS that answers every RunTask with a capacity failure (moto never does):
/// ListTasks finds nothing, the task definition registers, RunTask returns `failures[]`.
async fn ecs_without_capacity() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let run_tasks = Arc::new(AtomicUsize::new(0));
    let counter = run_tasks.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let Some((head, _)) = dagy_testkit::http::read_request(&mut socket).await else {
                    return;
                };
                let target = dagy_testkit::http::header(&head, "x-amz-target").unwrap_or_default();
                let (status, body) = match target.rsplit('.').next().unwrap_or_default() {
                    "ListTasks" => (200, json!({"taskArns": []})),
                    "DescribeTaskDefinition" => (
                        400,
                        json!({"__type": "ClientException", "message": "Unable to describe task definition."}),
                    ),
                    "RegisterTaskDefinition" => (
                        200,
                        json!({"taskDefinition": {"taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/dagy-worker:1"}}),
                    ),
                    "RunTask" => {
                        counter.fetch_add(1, Ordering::SeqCst);
                        (
                            200,
                            json!({"tasks": [], "failures": [{"arn": "arn:aws:ecs:us-east-1:123456789012:container-instance/x", "reason": "Capacity is unavailable at this time. Please try again later or in a different availability zone"}]}),
                        )
                    }
                    other => (
                        400,
                        json!({"__type": "ClientException", "message": format!("not here: {other}")}),
                    ),
                };
                dagy_testkit::http::reply(
                    &mut socket,
                    status,
                    "application/x-amz-json-1.1",
                    &body.to_string(),
                )
                .await;
            });
        }
    });
    (url, run_tasks)
}

#[tokio::test]
async fn a_start_that_keeps_failing_is_retried_then_fails_the_run_with_awss_reason() {
    use std::sync::atomic::Ordering;
    let (url, run_tasks) = ecs_without_capacity().await;
    let settings = EcsSettings {
        cluster_arn: "arn:aws:ecs:us-east-1:123456789012:cluster/dagy".into(),
        execution_role_arn: None,
        task_role_arn: None,
        worker_image: "dagy-worker:latest".into(),
        subnets: vec!["subnet-1".into()],
        security_groups: Vec::new(),
        log_group: "/ecs/dagy-worker".into(),
    };
    let store = Arc::new(MemoryStore::new());
    let backend = EcsBackend::new(
        client!(aws_sdk_ecs, &url),
        client!(aws_sdk_cloudwatchlogs),
        settings.clone(),
        "us-east-1",
        "t",
    )
    .with_start_retry(dagy_backend_ecs::StartRetry {
        attempts: 3,
        base: std::time::Duration::from_millis(20),
    });
    let router = Router::new(
        store.clone(),
        Settings {
            ecs: Some(settings),
            ..Settings::default()
        },
        Arc::new(Dispatchers::new(None, None).with_ecs(EcsDispatcher::new(backend, store.clone()))),
        Arc::new(dagy_handlers::registry()),
    );
    let env = Env {
        store: store.clone(),
        router,
        settings: EcsSettings {
            cluster_arn: String::new(),
            execution_role_arn: None,
            task_role_arn: None,
            worker_image: String::new(),
            subnets: Vec::new(),
            security_groups: Vec::new(),
            log_group: String::new(),
        },
    };
    let run_id = trigger(&env, "small").await;
    assert_eq!(run_tasks.load(Ordering::SeqCst), 3, "three attempts");
    assert_failed_with(store.as_ref(), &run_id, "Capacity is unavailable").await;
}
