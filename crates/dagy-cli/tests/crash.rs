//! Crash and resume, with real processes: `dagy run --store dynamodb` against moto's server is
//! killed with SIGKILL in the middle of task k; a second `dagy run --resume` takes the run over
//! once the dead executor's lease lapses. The tasks append their id to a file, so the file is
//! the witness: every task exactly once, the killed task at most twice, and the run completes.

#[path = "../../dagy-store-dynamodb/tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn dagy(table: &str) -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin!("dagy"));
    cmd.env("AWS_ENDPOINT_URL", support::endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("DAGY_TABLE_NAME", table)
        .env_remove("DAGY_ECS_CLUSTER_ARN")
        .env_remove("DAGY_SFN_ROLE_ARN")
        .env_remove("DAGY_AUTO_TIER");
    cmd
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn kill_during_task(k: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let witness = dir.path().join("witness.txt");
    let tasks: Vec<Value> = (1..=10)
        .map(|i| {
            let mut t = json!({
                "id": format!("t{i}"),
                "handler": "append",
                "args": {"path": witness.to_str(), "line": format!("t{i}"), "sleep": 0.3}
            });
            if i > 1 {
                t["depends_on"] = json!([format!("t{}", i - 1)]);
            }
            t
        })
        .collect();
    let flow_path = dir.path().join("flow.json");
    let flow = json!({"spec_version": 1, "name": "crash", "tasks": tasks});
    std::fs::write(&flow_path, flow.to_string()).expect("write flow");
    let table = format!("dagy-crash-{k}-{}", std::process::id());
    let run_id = format!("crash-{k}");

    let created = dagy(&table)
        .args(["table", "create"])
        .output()
        .expect("table create");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );

    let mut first = dagy(&table)
        .args(["run", "--store", "dynamodb", "--tier", "nano", "--quiet"])
        .args(["--lease-ttl", "1", "--run-id", &run_id])
        .arg(&flow_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the first executor");
    let deadline = Instant::now() + Duration::from_secs(60);
    while lines(&witness).len() < k {
        assert!(Instant::now() < deadline, "task {k} never started");
        assert!(
            first.try_wait().expect("poll").is_none(),
            "the first executor ended early"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    first.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix
    first.wait().expect("reap");
    assert_eq!(lines(&witness).len(), k, "killed inside task {k}");

    let resumed = dagy(&table)
        .args(["run", "--store", "dynamodb", "--json", "--quiet"])
        .args(["--resume", &run_id])
        .output()
        .expect("resume");
    assert!(
        resumed.status.success(),
        "resume failed: {}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let record: Value = serde_json::from_slice(&resumed.stdout).expect("run JSON");
    assert_eq!(record["status"], "completed");

    let written = lines(&witness);
    for i in 1..=10 {
        let id = format!("t{i}");
        let times = written.iter().filter(|l| **l == id).count();
        if i == k {
            assert!(
                (1..=2).contains(&times),
                "killed task {id} ran {times} times: {written:?}"
            );
        } else {
            assert_eq!(times, 1, "task {id} ran {times} times: {written:?}");
        }
    }
    let killed = &record["tasks"][k - 1];
    assert_eq!(killed["status"], "completed");
    assert_eq!(
        killed["attempts"], 2,
        "the interrupted attempt and its restart"
    );
}

#[test]
fn killed_in_the_first_task_resumes_from_it() {
    kill_during_task(1);
}

#[test]
fn killed_in_the_middle_resumes_without_repeating_completed_tasks() {
    kill_during_task(5);
}

#[test]
fn killed_in_the_last_task_resumes_and_completes() {
    kill_during_task(10);
}
