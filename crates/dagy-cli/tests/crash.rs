//! Crash and resume, with real processes: `dagy run --store dynamodb` against moto's server is
//! killed with SIGKILL in the middle of task k; a second `dagy run --resume` takes the run over
//! once the dead executor's lease lapses. The tasks append their id to a file, so the file is
//! the witness: every task exactly once, the killed task at most twice, and the run completes.

use dagy_testkit as support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn dagy(table: &str) -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin!("dagy"));
    support::with_test_credentials(&mut cmd)
        .env("AWS_ENDPOINT_URL", support::endpoint())
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

/// A 10-task chain of `append` tasks pausing `pause` seconds each, written to a new folder,
/// and a fresh table: (folder, witness file, flow file, table).
fn append_chain(name: &str, pause: f64) -> (tempfile::TempDir, PathBuf, PathBuf, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let witness = dir.path().join("witness.txt");
    let tasks: Vec<Value> = (1..=10)
        .map(|i| {
            let mut t = json!({
                "id": format!("t{i}"),
                "handler": "append",
                "args": {"path": witness.to_str(), "line": format!("t{i}"), "sleep": pause}
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
    let table = format!("dagy-{name}-{}", std::process::id());
    let created = dagy(&table)
        .args(["table", "create"])
        .output()
        .expect("table create");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    (dir, witness, flow_path, table)
}

/// Waits until the witness shows `k` task starts, while `child` still runs.
fn wait_for_starts(child: &mut std::process::Child, witness: &Path, k: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while lines(witness).len() < k {
        assert!(Instant::now() < deadline, "task {k} never started");
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the executor ended early"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn interrupt(child: &std::process::Child) {
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(sent.success());
}

fn kill_during_task(k: usize) {
    let (_dir, witness, flow_path, table) = append_chain(&format!("crash-{k}"), 0.3);
    let run_id = format!("crash-{k}");

    let mut first = dagy(&table)
        .args(["run", "--store", "dynamodb", "--tier", "nano", "--quiet"])
        .args(["--lease-ttl", "1", "--run-id", &run_id])
        .arg(&flow_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the first executor");
    wait_for_starts(&mut first, &witness, k);
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

/// Runs the chain until task 3 has started, then sends `signals` SIGINTs 50 ms apart; returns
/// the exit code, and the run record a `--resume` finds right after (no lease to wait for).
fn interrupt_in_task_3(name: &str, signals: usize) -> (Option<i32>, Value, Vec<String>) {
    let (_dir, witness, flow_path, table) = append_chain(name, 1.0);
    let mut run = dagy(&table)
        .args(["run", "--store", "dynamodb", "--tier", "nano", "--quiet"])
        .args(["--lease-ttl", "30", "--run-id", name])
        .arg(&flow_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    wait_for_starts(&mut run, &witness, 3);
    for i in 0..signals {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
        interrupt(&run);
    }
    let code = run.wait().expect("reap").code();
    let started = Instant::now();
    let resumed = dagy(&table)
        .args([
            "run", "--store", "dynamodb", "--json", "--quiet", "--resume", name,
        ])
        .output()
        .expect("resume");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the resume waited for a lease of 30 s: it was not released"
    );
    let record: Value = serde_json::from_slice(&resumed.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&resumed.stderr)));
    assert_eq!(
        resumed.status.code(),
        Some(1),
        "a cancelled run is not a success"
    );
    (code, record, lines(&witness))
}

fn statuses(record: &Value) -> Vec<String> {
    record["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["status"].as_str().unwrap_or("?").to_string())
        .collect()
}

#[test]
fn one_interrupt_lets_the_task_in_flight_finish_and_records_the_run_cancelled() {
    let (code, record, started) = interrupt_in_task_3("one-sigint", 1);
    assert_eq!(code, Some(1));
    assert_eq!(record["status"], "cancelled");
    let mut expected = vec!["completed"; 3];
    expected.extend(["cancelled"; 7]);
    assert_eq!(statuses(&record), expected);
    assert_eq!(
        started,
        ["t1", "t2", "t3"],
        "nothing started after the interrupt"
    );
}

#[test]
fn two_quick_interrupts_cancel_the_task_in_flight_and_record_the_run_cancelled() {
    let (code, record, started) = interrupt_in_task_3("two-sigints", 2);
    assert_eq!(code, Some(130));
    assert_eq!(record["status"], "cancelled", "never completed: {record}");
    let mut expected = vec!["completed"; 2];
    expected.extend(["cancelled"; 8]);
    assert_eq!(statuses(&record), expected);
    assert_eq!(started, ["t1", "t2", "t3"]);
}
