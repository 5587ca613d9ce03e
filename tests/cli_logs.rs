//! `dagy logs` against moto (ECS, CloudWatch Logs, DynamoDB) over loopback: it prints an ECS
//! run's log; with `--follow` it prints new lines as they come and exits once the run is final.

use dagy_testkit as support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;

use dagy_backend_ecs::EcsBackend;
use dagy_engine::{Executor, NewRunRequest};
use dagy_store::{RunStatus, RunStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_prints_an_ecs_runs_log_and_follows_it_until_the_run_ends() {
    let store = Arc::new(support::fresh_store("logs").await);
    let flow = dagy_handlers::chain(1, "echo", json!(null))
        .validate(None)
        .expect("flow");
    let run_id = Executor::new(store.clone(), Arc::new(dagy_handlers::registry()))
        .create_run(&flow, NewRunRequest::default())
        .await
        .expect("run")
        .run
        .run_id;

    let settings = dagy_testkit::ecs::cluster("dagy-worker:latest").await;
    let backend = dagy_testkit::ecs::backend(&settings, store.table());
    let task_arn = backend
        .start(
            &run_id,
            dagy_core::FargateSize {
                cpu: 512,
                memory_mb: 1024,
            },
        )
        .await
        .expect("started");
    let stream = EcsBackend::log_stream(&task_arn);
    support::ecs::log_stream(&settings.log_group, &stream).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    support::ecs::put_lines(
        &settings.log_group,
        &stream,
        &[(now, "line one"), (now + 1, "line two")],
    )
    .await;

    let dagy = |follow: bool| {
        let mut command = Command::new(support::binary("dagy"));
        command.arg("logs").arg(&run_id);
        if follow {
            command.arg("--follow");
        }
        support::with_test_credentials(&mut command)
            .env("DAGY_ECS_CLUSTER_ARN", &settings.cluster_arn)
            .env("DAGY_ECS_LOG_GROUP", &settings.log_group)
            .env("DAGY_ECS_SUBNETS", settings.subnets.join(","))
            .env("DAGY_TABLE_NAME", store.table())
            .env("AWS_ENDPOINT_URL", support::endpoint())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    };
    let out = dagy(false).output().expect("dagy logs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "line one\nline two\n");

    // --follow: new lines as they come, then an exit once the run is final.
    let mut child = dagy(true).spawn().expect("dagy logs --follow");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let wait_for = |seen: &mut Vec<String>, want: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !seen.iter().any(|l| l == want) {
            assert!(
                Instant::now() < deadline,
                "never printed {want:?}: {seen:?}"
            );
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
                seen.push(line);
            }
        }
    };
    wait_for(&mut seen, "line two");
    support::ecs::put_lines(&settings.log_group, &stream, &[(now + 2, "line three")]).await;
    wait_for(&mut seen, "line three");
    assert_eq!(
        seen,
        ["line one", "line two", "line three"],
        "in order, once each"
    );

    let lease = store
        .acquire_lease(&run_id, "test", dagy_store::now_ms(), 60_000)
        .await
        .expect("lease");
    store
        .finish_run(&lease, RunStatus::Completed, None, dagy_store::now_ms())
        .await
        .expect("finished");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "--follow did not stop after the run ended"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
