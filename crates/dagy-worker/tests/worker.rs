//! The `dagy-worker` binary against moto's DynamoDB over loopback: it runs a run to its end;
//! a SIGTERM in the middle (what ECS sends on StopTask) stops it at the task boundary with the
//! run recorded as cancelled, completed tasks kept, no task left open, inside ECS's 30 s grace.

use dagy_testkit as support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use dagy_engine::{Executor, NewRunRequest};
use dagy_store::{RunStatus, RunStore, TaskStatus};
use dagy_store_dynamodb::DynamoStore;

struct Setup {
    store: Arc<DynamoStore>,
    table: String,
}

async fn setup(name: &str) -> Setup {
    let store = support::fresh_store(name).await;
    let table = store.table().to_string();
    Setup {
        store: Arc::new(store),
        table,
    }
}

async fn new_run(setup: &Setup, tasks: usize, seconds: f64) -> String {
    let spec = dagy_handlers::chain(tasks, "sleep", json!({"seconds": seconds}));
    let flow = spec.validate(None).expect("flow");
    Executor::new(setup.store.clone(), Arc::new(dagy_handlers::registry()))
        .create_run(&flow, NewRunRequest::default())
        .await
        .expect("run")
        .run
        .run_id
}

fn worker(setup: &Setup, run_id: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dagy-worker"));
    support::with_test_credentials(&mut command)
        .env("DAGY_RUN_ID", run_id)
        .env("DAGY_TABLE_NAME", &setup.table)
        .env("AWS_ENDPOINT_URL_DYNAMODB", support::endpoint())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_runs_a_run_to_its_end() {
    let setup = setup("worker-end").await;
    let run_id = new_run(&setup, 3, 0.05).await;
    let out = worker(&setup, &run_id).output().expect("dagy-worker");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let snapshot = setup.store.load_run(&run_id).await.expect("load");
    assert_eq!(snapshot.run.status, RunStatus::Completed);
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        log.lines()
            .any(|l| l.starts_with('{') && l.contains(&run_id)),
        "JSON log lines name the run:\n{log}"
    );

    // A second worker on the finished run does nothing.
    let again = worker(&setup, &run_id).output().expect("dagy-worker");
    assert!(again.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_stops_the_worker_at_a_task_boundary_with_the_run_cancelled() {
    let setup = setup("worker-term").await;
    let run_id = new_run(&setup, 5, 1.0).await;
    let mut child = worker(&setup, &run_id).spawn().expect("dagy-worker");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let snapshot = setup.store.load_run(&run_id).await.expect("load");
        if snapshot.tasks[1].status == TaskStatus::Completed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker did not get to task 2"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("the worker exits");
    let took = sent.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "inside ECS's grace: {took:?}"
    );
    assert_eq!(status.code(), Some(1), "the run did not complete");

    let snapshot = setup.store.load_run(&run_id).await.expect("load");
    assert_eq!(snapshot.run.status, RunStatus::Cancelled);
    let statuses: Vec<TaskStatus> = snapshot.tasks.iter().map(|t| t.status).collect();
    assert!(
        statuses.iter().all(|s| s.is_final()),
        "no task left open: {statuses:?}"
    );
    assert_eq!(
        &statuses[..2],
        [TaskStatus::Completed, TaskStatus::Completed]
    );
    assert!(
        snapshot.tasks[..2].iter().all(|t| t.output.is_some()),
        "completed tasks keep their outputs"
    );
    assert!(
        statuses[2..]
            .iter()
            .all(|s| *s == TaskStatus::Cancelled || *s == TaskStatus::Completed),
        "{statuses:?}"
    );
    assert!(statuses.contains(&TaskStatus::Cancelled));
}
