//! Local Fargate: `dagy run --tier small --backend docker` runs the ECS tier in a container of
//! the worker image (built offline by scripts/worker-image.sh), with the tier's limits, on the
//! embedded store mounted into it. A task that allocates more than the tier's memory fails the
//! run with ECS's out-of-memory reason. Needs Docker: the suite starts `dockerd` when it does
//! not answer (scripts/lib.sh, ensure_docker), and fails, not skips, when Docker cannot start.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dagy_testkit as support;
use dagy_testkit::docker::{DockerSession, WORKER_IMAGE};
use serde_json::{Value, json};

fn session() -> DockerSession {
    let session = DockerSession::start().unwrap_or_else(|e| panic!("{e}"));
    session.images().unwrap_or_else(|e| panic!("{e}"));
    session
}

fn dagy(home: &Path) -> Command {
    let mut cmd = Command::new(support::binary("dagy"));
    cmd.env("DAGY_HOME", home)
        .env("DAGY_ECS_WORKER_IMAGE", WORKER_IMAGE)
        .env_remove("DAGY_ROUTER_FUNCTION")
        .env_remove("DAGY_API_URL")
        .env_remove("DAGY_ECS_CLUSTER_ARN");
    cmd
}

fn write_flow(dir: &Path, flow: &Value) -> std::path::PathBuf {
    let path = dir.join("flow.json");
    std::fs::write(&path, flow.to_string()).expect("write the flow");
    path
}

#[test]
#[ignore = "needs Docker and the worker image: scripts/test.sh runs it in its containers step"]
fn a_chain_on_small_runs_in_a_container_with_one_gib_and_half_a_cpu() {
    let docker = session();
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path().join("home");
    let flow = write_flow(
        dir.path(),
        &json!({"spec_version": 1, "name": "local-fargate", "tasks": [
            {"id": "first", "handler": "sleep", "args": {"seconds": 2}},
            {"id": "second", "handler": "sum", "args": {"add": 6}, "depends_on": ["first"]},
            {"id": "third", "handler": "echo", "depends_on": ["second"]}
        ]}),
    );
    let run = dagy(&home)
        .args([
            "run",
            "--tier",
            "small",
            "--backend",
            "docker",
            "--json",
            "--quiet",
        ])
        .args(["--run-id", "in-a-container"])
        .arg(&flow)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dagy run");
    // While it runs, the container carries the run's label and the small tier's limits.
    let deadline = Instant::now() + Duration::from_secs(120);
    let limits = loop {
        let out = docker.docker(&[
            "ps",
            "--filter",
            "label=dagy.run-id=in-a-container",
            "--format",
            "{{.ID}}",
        ]);
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !id.is_empty() {
            let inspected = docker.docker(&[
                "inspect",
                "--format",
                "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}",
                &id,
            ]);
            break String::from_utf8_lossy(&inspected.stdout)
                .trim()
                .to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no container for the run appeared"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(limits, "1073741824 500000000", "1 GiB and 0.5 CPU");
    let out = run.wait_with_output().expect("wait for dagy run");
    let record: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["tasks"][1]["output"], json!(6), "{record}");
    assert_eq!(record["plan"]["tier"], "small", "{record}");
    assert_eq!(record["plan"]["resources"]["memory_mb"], 1024, "{record}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("worker started"),
        "the worker's log streams: {stderr}"
    );
    let left = docker.docker(&[
        "ps",
        "-a",
        "--filter",
        "label=dagy.run-id=in-a-container",
        "-q",
    ]);
    assert!(
        left.stdout.is_empty(),
        "the container is removed after the run"
    );
}

#[test]
#[ignore = "needs Docker and the worker image: scripts/test.sh runs it in its containers step"]
fn a_task_allocating_two_gb_on_small_fails_the_run_out_of_memory() {
    let _docker = session();
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path().join("home");
    let flow = write_flow(
        dir.path(),
        &json!({"spec_version": 1, "name": "too-big", "tasks": [
            {"id": "alloc", "handler": "alloc", "args": {"mb": 2048}},
            {"id": "after", "handler": "echo", "depends_on": ["alloc"]}
        ]}),
    );
    let out = dagy(&home)
        .args([
            "run",
            "--tier",
            "small",
            "--backend",
            "docker",
            "--json",
            "--quiet",
        ])
        .arg(&flow)
        .output()
        .expect("dagy run");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(record["status"], "failed", "{record}");
    let error = record["error"].as_str().unwrap_or_default();
    assert!(error.contains("OutOfMemoryError"), "{record}");
    assert!(error.contains("exit code 137"), "{record}");
    let status = dagy(&home)
        .args(["status", record["run_id"].as_str().unwrap_or_default()])
        .output()
        .expect("dagy status");
    assert!(
        status.status.success(),
        "the run is kept in the embedded store"
    );
}

#[test]
#[ignore = "needs Docker and the worker image: scripts/test.sh runs it in its containers step"]
fn dagy_cancel_from_another_terminal_stops_the_container_and_the_run_ends_cancelled() {
    let docker = session();
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path().join("home");
    let tasks: Vec<Value> = (1..=30)
        .map(|i| {
            let mut task =
                json!({"id": format!("t{i}"), "handler": "sleep", "args": {"seconds": 1}});
            if i > 1 {
                task["depends_on"] = json!([format!("t{}", i - 1)]);
            }
            task
        })
        .collect();
    let flow = write_flow(
        dir.path(),
        &json!({"spec_version": 1, "name": "to-cancel", "tasks": tasks}),
    );
    let run = dagy(&home)
        .args([
            "run",
            "--tier",
            "small",
            "--backend",
            "docker",
            "--json",
            "--quiet",
        ])
        .args(["--run-id", "cancel-me"])
        .arg(&flow)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dagy run");
    // Wait until the container has completed a task, then cancel from "another terminal".
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = dagy(&home)
            .args(["status", "cancel-me"])
            .output()
            .expect("dagy status");
        let record: Value = serde_json::from_slice(&status.stdout).unwrap_or(Value::Null);
        let done = record["tasks"]
            .as_array()
            .is_some_and(|tasks| tasks.iter().any(|t| t["status"] == "completed"));
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no task completed in the container"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let cancelled = dagy(&home)
        .args(["cancel", "cancel-me"])
        .output()
        .expect("dagy cancel");
    assert!(
        cancelled.status.success(),
        "{}",
        String::from_utf8_lossy(&cancelled.stderr)
    );
    let out = run.wait_with_output().expect("wait for dagy run");
    let record: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(
        out.status.code(),
        Some(1),
        "a cancelled run is not a success"
    );
    assert_eq!(record["status"], "cancelled", "{record}");
    let completed = record["tasks"].as_array().map_or(0, |t| {
        t.iter().filter(|t| t["status"] == "completed").count()
    });
    assert!(
        completed < 30,
        "it stopped early: {completed} tasks completed"
    );
    let left = docker.docker(&["ps", "-a", "--filter", "label=dagy.run-id=cancel-me", "-q"]);
    assert!(left.stdout.is_empty(), "the container is gone");
}

#[test]
#[ignore = "needs Docker and the worker image: scripts/test.sh runs it in its containers step"]
fn a_run_on_dynamodb_runs_in_a_container_that_reaches_the_table_over_the_host_network() {
    let _docker = session();
    let dir = tempfile::tempdir().expect("temp dir");
    let table = support::unique("docker-dynamodb");
    let on_moto = |cmd: &mut Command| {
        support::with_test_credentials(cmd)
            .env("AWS_ENDPOINT_URL", support::endpoint())
            .env("DAGY_TABLE_NAME", &table);
    };
    let mut create = dagy(&dir.path().join("home"));
    on_moto(&mut create);
    let created = create
        .args(["table", "create"])
        .output()
        .expect("table create");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let flow = write_flow(
        dir.path(),
        &json!({"spec_version": 1, "name": "on-dynamodb", "tasks": [
            {"id": "a", "handler": "sum", "args": {"add": 2}},
            {"id": "b", "handler": "sum", "args": {"add": 3}, "depends_on": ["a"]}
        ]}),
    );
    let mut run = dagy(&dir.path().join("home"));
    on_moto(&mut run);
    let out = run
        .args([
            "run",
            "--tier",
            "small",
            "--backend",
            "docker",
            "--store",
            "dynamodb",
        ])
        .args(["--json", "--quiet"])
        .arg(&flow)
        .output()
        .expect("dagy run");
    let record: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["tasks"][1]["output"], json!(5), "{record}");
    assert!(
        !dir.path().join("home").join("runs.db").exists(),
        "nothing went to the embedded store"
    );
}
