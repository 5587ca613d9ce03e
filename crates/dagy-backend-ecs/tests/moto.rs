//! The ECS backend against moto's server (ECS, EC2's default VPC, CloudWatch Logs) over
//! loopback: the RunTask of each tier carries its cpu and memory, a repeated start finds the
//! run's task, the task definition is registered once per change, a stop sends StopTask and
//! the stopped task is reported with its reason, logs come back in order and follow new events.

use dagy_testkit::client;

use std::time::Duration;

use dagy_backend_ecs::{EcsBackend, EcsError, StartRetry, TaskState, WORKER};
use dagy_core::{EcsSettings, RuntimeTier};

fn ecs_client() -> aws_sdk_ecs::Client {
    client!(aws_sdk_ecs)
}

fn logs_client() -> aws_sdk_cloudwatchlogs::Client {
    client!(aws_sdk_cloudwatchlogs)
}

async fn backend(image: &str) -> (EcsBackend, EcsSettings) {
    let settings = dagy_testkit::ecs::cluster(image).await;
    let backend = EcsBackend::new(
        ecs_client(),
        logs_client(),
        settings.clone(),
        "us-east-1",
        "dagy-runs",
    )
    .with_start_retry(StartRetry {
        attempts: 2,
        base: Duration::from_millis(10),
    });
    (backend, settings)
}

fn run_id(n: u32) -> String {
    format!("{:024x}{n:08x}", u128::from(std::process::id()))
}

#[tokio::test]
async fn each_tier_starts_one_task_with_its_size_and_the_run_in_its_environment() {
    let (backend, settings) = backend("dagy-worker:test").await;
    for (n, tier) in [
        RuntimeTier::Small,
        RuntimeTier::Medium,
        RuntimeTier::Large,
        RuntimeTier::Xlarge,
    ]
    .into_iter()
    .enumerate()
    {
        let size = tier.fargate_resources().expect("a Fargate tier");
        let id = run_id(n as u32);
        let arn = backend.start(&id, size).await.expect("started");
        let again = backend.start(&id, size).await.expect("a repeated start");
        assert_eq!(again, arn, "{tier}: a repeated start finds the run's task");
        let described = ecs_client()
            .describe_tasks()
            .cluster(&settings.cluster_arn)
            .tasks(&arn)
            .include(aws_sdk_ecs::types::TaskField::Tags)
            .send()
            .await
            .expect("described");
        let task = &described.tasks()[0];
        let overrides = task.overrides().expect("overrides");
        assert_eq!(
            (overrides.cpu(), overrides.memory()),
            (
                Some(size.cpu.to_string().as_str()),
                Some(size.memory_mb.to_string().as_str())
            ),
            "{tier}"
        );
        let env = overrides.container_overrides()[0].environment();
        assert!(
            env.iter()
                .any(|kv| kv.name() == Some("DAGY_RUN_ID") && kv.value() == Some(id.as_str())),
            "{tier}: {env:?}"
        );
        assert_eq!(task.started_by(), Some(id.as_str()));
        assert_eq!(
            task.launch_type(),
            Some(&aws_sdk_ecs::types::LaunchType::Fargate)
        );
        let tags = task.tags();
        assert!(
            tags.iter()
                .any(|t| t.key() == Some("dagy:run-id") && t.value() == Some(id.as_str())),
            "{tags:?}"
        );
    }
    // One task per run, each counted by its own `startedBy` (the tests share one moto, whose
    // cluster-wide listing has shown another test's task).
    for n in 0..4 {
        let listed = ecs_client()
            .list_tasks()
            .cluster(&settings.cluster_arn)
            .started_by(run_id(n))
            .send()
            .await
            .expect("listed");
        assert_eq!(listed.task_arns().len(), 1, "one task for run {n}");
    }
}

#[tokio::test]
async fn the_task_definition_is_registered_once_per_change() {
    let (backend, _) = backend("dagy-worker:one").await;
    let first = backend.ensure_task_definition().await.expect("registered");
    assert_eq!(
        backend.ensure_task_definition().await.expect("unchanged"),
        first,
        "no new revision when nothing changed"
    );
    let described = ecs_client()
        .describe_task_definition()
        .task_definition(WORKER)
        .send()
        .await
        .expect("described");
    let definition = described.task_definition().expect("definition");
    let container = &definition.container_definitions()[0];
    let log = container.log_configuration().expect("awslogs");
    assert_eq!(log.log_driver().as_str(), "awslogs");
    assert_eq!(
        log.options()
            .and_then(|o| o.get("awslogs-stream-prefix"))
            .map(String::as_str),
        Some("dagy")
    );
    assert_eq!(
        definition.execution_role_arn(),
        Some("arn:aws:iam::123456789012:role/dagy-ecs-execution")
    );

    let (changed, _) = backend_with_image("dagy-worker:two").await;
    let second = changed
        .ensure_task_definition()
        .await
        .expect("re-registered");
    assert_ne!(second, first, "a new image is a new revision");
}

async fn backend_with_image(image: &str) -> (EcsBackend, EcsSettings) {
    backend(image).await
}

#[tokio::test]
async fn a_stop_sends_stop_task_and_the_stopped_task_says_why() {
    let (backend, _) = backend("dagy-worker:test").await;
    let id = run_id(100);
    assert_eq!(backend.task(&id).await.expect("read"), None);
    assert!(!backend.stop(&id, "nothing").await.expect("nothing to stop"));
    let arn = backend
        .start(&id, RuntimeTier::Small.fargate_resources().expect("size"))
        .await
        .expect("started");
    assert!(matches!(
        backend.task(&id).await.expect("read"),
        Some(TaskState::Running { ref task_arn }) if *task_arn == arn
    ));
    assert!(
        backend
            .stop(&id, "Dagy: the run was cancelled")
            .await
            .expect("stopped")
    );
    match backend.task(&id).await.expect("read") {
        Some(TaskState::Stopped {
            task_arn, reason, ..
        }) => {
            assert_eq!(task_arn, arn);
            assert!(reason.contains("cancelled"), "{reason}");
        }
        other => panic!("expected a stopped task, got {other:?}"),
    }
}

#[tokio::test]
async fn refusals_name_what_to_change() {
    let (backend, mut settings) = backend("dagy-worker:test").await;
    assert!(matches!(
        backend
            .start(
                "not a run id!",
                RuntimeTier::Small.fargate_resources().expect("size")
            )
            .await,
        Err(EcsError::BadRunId(_))
    ));
    settings.subnets.clear();
    let no_subnets = EcsBackend::new(
        ecs_client(),
        logs_client(),
        settings.clone(),
        "us-east-1",
        "t",
    );
    assert_eq!(
        no_subnets
            .start(
                &run_id(200),
                RuntimeTier::Small.fargate_resources().expect("size")
            )
            .await,
        Err(EcsError::NoSubnets)
    );
    settings.cluster_arn = "arn:aws:ecs:us-east-1:123456789012:cluster/no-such-cluster".into();
    settings.subnets = vec!["subnet-1".into()];
    let missing = EcsBackend::new(ecs_client(), logs_client(), settings, "us-east-1", "t");
    let refused = missing
        .start(
            &run_id(201),
            RuntimeTier::Small.fargate_resources().expect("size"),
        )
        .await;
    assert!(
        matches!(&refused, Err(EcsError::Api { operation: "ListTasks" | "RunTask", message }) if message.contains("Cluster")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn logs_come_back_in_order_and_follow_new_events() {
    let (backend, settings) = backend("dagy-worker:test").await;
    let id = run_id(300);
    let empty = backend.logs(&id, None).await.expect("no task yet");
    assert!(empty.events.is_empty());
    let arn = backend
        .start(&id, RuntimeTier::Small.fargate_resources().expect("size"))
        .await
        .expect("started");
    let stream = EcsBackend::log_stream(&arn);
    dagy_testkit::ecs::log_stream(&settings.log_group, &stream).await;
    let put = |lines: Vec<(i64, &'static str)>| {
        let (group, stream) = (settings.log_group.clone(), stream.clone());
        async move { dagy_testkit::ecs::put_lines(&group, &stream, &lines).await }
    };
    let now = i64::try_from(dagy_core_now()).unwrap_or(0);
    put(vec![
        (now, "task extract started"),
        (now + 1, "task extract completed"),
    ])
    .await;
    let page = backend.logs(&id, None).await.expect("first page");
    let lines: Vec<_> = page.events.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(lines, ["task extract started", "task extract completed"]);
    put(vec![(now + 2, "task load started")]).await;
    let more = backend
        .logs(&id, page.next.as_deref())
        .await
        .expect("next page");
    let lines: Vec<_> = more.events.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(lines, ["task load started"], "only what is new");
}

fn dagy_core_now() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}
