//! The router with the real ECS dispatcher against moto's ECS, EC2 and CloudWatch Logs, on the
//! memory store: a trigger of a Fargate tier starts one worker task of the tier's size; a
//! cancel sends StopTask; a run whose worker task stopped without recording it ends when read,
//! with the task's reason; a run's log comes back in pages, following new events.

#[path = "../../dagy-store-dynamodb/tests/support/moto.rs"]
mod moto;

use std::sync::Arc;

use serde_json::{Value, json};

use dagy_backend_ecs::EcsBackend;
use dagy_core::{EcsSettings, Settings};
use dagy_functions::dispatch::{Dispatchers, EcsDispatcher};
use dagy_functions::router::Router;
use dagy_store::{MemoryStore, RunStatus, RunStore};

macro_rules! client {
    ($krate:ident) => {{
        use $krate::config::{BehaviorVersion, Credentials, Region};
        $krate::Client::from_conf(
            $krate::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new("test", "test", None, None, "dagy-tests"))
                .endpoint_url(moto::endpoint())
                .build(),
        )
    }};
}

fn unique(name: &str) -> String {
    format!(
        "{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    )
}

struct Env {
    store: Arc<MemoryStore>,
    router: Router,
    settings: EcsSettings,
}

async fn env() -> Env {
    let ecs: aws_sdk_ecs::Client = client!(aws_sdk_ecs);
    let cluster = ecs
        .create_cluster()
        .cluster_name(unique("dagy"))
        .send()
        .await
        .expect("cluster");
    let settings = EcsSettings {
        cluster_arn: cluster
            .cluster()
            .and_then(|c| c.cluster_arn())
            .expect("arn")
            .into(),
        execution_role_arn: Some("arn:aws:iam::123456789012:role/dagy-ecs-execution".into()),
        task_role_arn: None,
        worker_image: "dagy-worker:latest".into(),
        subnets: moto::ec2_values("DescribeSubnets", "subnetId")
            .into_iter()
            .take(1)
            .collect(),
        security_groups: moto::ec2_values("DescribeSecurityGroups", "groupId")
            .into_iter()
            .take(1)
            .collect(),
        log_group: format!("/ecs/{}", unique("dagy-worker")),
    };
    let store = Arc::new(MemoryStore::new());
    let backend = EcsBackend::new(
        ecs,
        client!(aws_sdk_cloudwatchlogs),
        settings.clone(),
        "us-east-1",
        "dagy-runs",
    );
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
    assert_eq!(answer["status"], 200, "{answer}");
    let answer = action(env, json!({"action": "trigger", "deployment": name})).await;
    assert_eq!(answer["status"], 202, "{answer}");
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
        answer["status"], 200,
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
    assert_eq!(answer["status"], 200, "{answer}");
    let run = env.store.get_run(&run_id).await.expect("run");
    assert_eq!(run.status, RunStatus::Failed);
    assert!(
        run.error
            .as_deref()
            .is_some_and(|e| e.contains("OutOfMemoryError")),
        "{:?}",
        run.error
    );
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
    let logs: aws_sdk_cloudwatchlogs::Client = client!(aws_sdk_cloudwatchlogs);
    let stream = EcsBackend::log_stream(task.task_arn().expect("arn"));
    let _ = logs
        .create_log_group()
        .log_group_name(&env.settings.log_group)
        .send()
        .await;
    logs.create_log_stream()
        .log_group_name(&env.settings.log_group)
        .log_stream_name(&stream)
        .send()
        .await
        .expect("stream");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let put = |lines: &[(i64, &str)]| {
        let request = logs
            .put_log_events()
            .log_group_name(&env.settings.log_group)
            .log_stream_name(&stream)
            .set_log_events(Some(
                lines
                    .iter()
                    .map(|(t, m)| {
                        aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                            .timestamp(*t)
                            .message(*m)
                            .build()
                            .expect("event")
                    })
                    .collect(),
            ));
        async move { request.send().await.expect("put") }
    };
    put(&[(now, "run started"), (now + 1, "task extract completed")]).await;
    let first = action(&env, json!({"action": "logs", "run_id": run_id})).await;
    assert_eq!(first["status"], 200, "{first}");
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
    put(&[(now + 2, "task load completed")]).await;
    let next = first["next"].as_str().expect("a next token");
    let second = action(
        &env,
        json!({"action": "logs", "run_id": run_id, "next": next}),
    )
    .await;
    assert_eq!(messages(&second), ["task load completed"], "{second}");
}
