//! Crash, resume and cancel, with real processes, on both stores that outlive a process: the
//! embedded SQLite database and DynamoDB (moto's server). `dagy run` is killed with SIGKILL in
//! the middle of task k; a second `dagy run --resume` takes the run over once the dead
//! executor's lease lapses. The tasks append their id to a file, so the file is the witness:
//! every task exactly once, the killed task at most twice, and the run completes.

use dagy_testkit as support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Where a test's runs are kept.
#[derive(Clone, Copy, PartialEq)]
enum Store {
    Sqlite,
    Dynamodb,
}

/// A test's store: its own SQLite folder, or its own table on moto.
struct Place {
    store: Store,
    home: PathBuf,
    table: String,
}

impl Place {
    /// `dagy` on this place's store: `dagy(...).args(["run", ...])` gets `--store` added by
    /// [`Place::run`].
    fn dagy(&self) -> Command {
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin!("dagy"));
        support::with_test_credentials(&mut cmd)
            .env("AWS_ENDPOINT_URL", support::endpoint())
            .env("DAGY_TABLE_NAME", &self.table)
            .env("DAGY_HOME", &self.home)
            .env_remove("DAGY_ROUTER_FUNCTION")
            .env_remove("DAGY_API_URL")
            .env_remove("DAGY_ECS_CLUSTER_ARN")
            .env_remove("DAGY_SFN_ROLE_ARN")
            .env_remove("DAGY_AUTO_TIER");
        cmd
    }

    /// `dagy SUBCOMMAND --store STORE`.
    fn command(&self, subcommand: &str) -> Command {
        let mut cmd = self.dagy();
        cmd.args([
            subcommand,
            "--store",
            match self.store {
                Store::Sqlite => "sqlite",
                Store::Dynamodb => "dynamodb",
            },
        ]);
        cmd
    }

    /// `dagy run --store STORE`.
    fn run(&self) -> Command {
        self.command("run")
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A 10-task chain of `append` tasks pausing `pause` seconds each, written to a new folder,
/// and a fresh store: (folder, witness file, flow file, store).
fn append_chain(
    store: Store,
    name: &str,
    pause: f64,
) -> (tempfile::TempDir, PathBuf, PathBuf, Place) {
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
    let place = Place {
        store,
        home: dir.path().join("dagy-home"),
        table: format!("dagy-{name}-{}", std::process::id()),
    };
    if store == Store::Dynamodb {
        let created = place
            .dagy()
            .args(["table", "create"])
            .output()
            .expect("table create");
        assert!(
            created.status.success(),
            "{}",
            String::from_utf8_lossy(&created.stderr)
        );
    }
    (dir, witness, flow_path, place)
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

/// Kills `dagy run --tier TIER` inside task `k` of the chain, resumes it, and checks the
/// witness: micro steps hand the lease on from task to task, nano runs in one session.
fn kill_during_task(store: Store, k: usize, tier: &str) {
    let (_dir, witness, flow_path, place) = append_chain(store, &format!("crash-{tier}-{k}"), 0.3);
    let run_id = format!("crash-{tier}-{k}");

    let mut first = place
        .run()
        .args(["--tier", tier, "--quiet"])
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

    let resumed = place
        .run()
        .args(["--json", "--quiet"])
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
    kill_during_task(Store::Dynamodb, 1, "nano");
}

#[test]
fn killed_in_the_middle_resumes_without_repeating_completed_tasks() {
    kill_during_task(Store::Dynamodb, 5, "nano");
}

#[test]
fn killed_in_the_last_task_resumes_and_completes() {
    kill_during_task(Store::Dynamodb, 10, "nano");
}

#[test]
fn on_sqlite_a_kill_9_loses_nothing_committed_and_the_run_resumes() {
    kill_during_task(Store::Sqlite, 5, "nano");
}

/// Micro steps on SQLite: each step's end, the cursor's move and the next task's start are one
/// transaction; a kill between two of them leaves the run where the last commit put it.
#[test]
fn on_sqlite_a_micro_run_killed_mid_chain_resumes_without_repeating_completed_tasks() {
    kill_during_task(Store::Sqlite, 5, "micro");
}

/// The same on DynamoDB, where a step's hand-on is a lease release and a new lease.
#[test]
fn on_dynamodb_a_micro_run_killed_mid_chain_resumes_without_repeating_completed_tasks() {
    kill_during_task(Store::Dynamodb, 4, "micro");
}

/// Runs the chain on `tier` until task 3 has started, then sends `signals` SIGINTs 50 ms apart;
/// returns the exit code, and the run record a `--resume` finds right after (no lease to wait
/// for).
fn interrupt_in_task_3(
    store: Store,
    tier: &str,
    name: &str,
    signals: usize,
) -> (Option<i32>, Value, Vec<String>) {
    let (_dir, witness, flow_path, place) = append_chain(store, name, 1.0);
    let mut run = place
        .run()
        .args(["--tier", tier, "--quiet"])
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
    let resumed = place
        .run()
        .args(["--json", "--quiet", "--resume", name])
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
    let (code, record, started) = interrupt_in_task_3(Store::Dynamodb, "nano", "one-sigint", 1);
    one_interrupt_finished_task_3_and_cancelled_the_rest(code, &record, &started);
}

#[test]
fn on_sqlite_one_interrupt_of_micro_steps_lets_the_task_finish_and_cancels_the_rest() {
    let (code, record, started) = interrupt_in_task_3(Store::Sqlite, "micro", "micro-sigint", 1);
    one_interrupt_finished_task_3_and_cancelled_the_rest(code, &record, &started);
}

fn one_interrupt_finished_task_3_and_cancelled_the_rest(
    code: Option<i32>,
    record: &Value,
    started: &[String],
) {
    assert_eq!(code, Some(1));
    assert_eq!(record["status"], "cancelled");
    let mut expected = vec!["completed"; 3];
    expected.extend(["cancelled"; 7]);
    assert_eq!(statuses(record), expected);
    assert_eq!(
        started,
        ["t1", "t2", "t3"],
        "nothing started after the interrupt"
    );
}

#[test]
fn two_quick_interrupts_cancel_the_task_in_flight_and_record_the_run_cancelled() {
    let (code, record, started) = interrupt_in_task_3(Store::Dynamodb, "nano", "two-sigints", 2);
    assert_eq!(code, Some(130));
    assert_eq!(record["status"], "cancelled", "never completed: {record}");
    let mut expected = vec!["completed"; 2];
    expected.extend(["cancelled"; 8]);
    assert_eq!(statuses(&record), expected);
    assert_eq!(started, ["t1", "t2", "t3"]);
}

/// The embedded store across processes: `dagy status` and `dagy cancel` from another process
/// see and stop a run in flight.
#[test]
fn on_sqlite_status_and_cancel_from_another_process_reach_a_run_in_flight() {
    let (_dir, witness, flow_path, place) = append_chain(Store::Sqlite, "cancel-elsewhere", 0.5);
    let mut run = place
        .run()
        .args(["--quiet", "--json", "--run-id", "elsewhere"])
        .arg(&flow_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    wait_for_starts(&mut run, &witness, 2);
    let status = place
        .command("status")
        .arg("elsewhere")
        .output()
        .expect("status");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let seen: Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    assert_eq!(seen["status"], "running", "{seen}");
    let cancel = place
        .command("cancel")
        .arg("elsewhere")
        .output()
        .expect("cancel");
    assert!(
        cancel.status.success(),
        "{}",
        String::from_utf8_lossy(&cancel.stderr)
    );
    let answer: Value = serde_json::from_slice(&cancel.stdout).expect("cancel JSON");
    assert_eq!(answer["cancel_requested"], true, "{answer}");
    let out = run.wait_with_output().expect("reap");
    assert_eq!(
        out.status.code(),
        Some(1),
        "a cancelled run is not a success"
    );
    let record: Value = serde_json::from_slice(&out.stdout).expect("run JSON");
    assert_eq!(record["status"], "cancelled", "{record}");
    let started = lines(&witness).len();
    assert!(
        (2..=3).contains(&started),
        "it stopped at a task boundary: {started} tasks started"
    );
}

/// Two `dagy run --resume` of one run at once, in two processes, on the embedded store: each
/// remaining task runs once, and both end reporting the completed run.
#[test]
fn on_sqlite_two_resumes_at_once_run_each_remaining_task_once() {
    two_resumes_at_once("nano");
}

/// The same with micro steps: the step that holds the lease hands it on to its next step, and
/// the other resume waits for it.
#[test]
fn on_sqlite_two_resumes_of_micro_steps_at_once_run_each_remaining_task_once() {
    two_resumes_at_once("micro");
}

fn two_resumes_at_once(tier: &str) {
    let (_dir, witness, flow_path, place) =
        append_chain(Store::Sqlite, &format!("two-resumes-{tier}"), 0.1);
    let mut first = place
        .run()
        .args([
            "--tier",
            tier,
            "--quiet",
            "--lease-ttl",
            "1",
            "--run-id",
            "twice",
        ])
        .arg(&flow_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    wait_for_starts(&mut first, &witness, 3);
    first.kill().expect("SIGKILL");
    first.wait().expect("reap");
    let resumes: Vec<_> = (0..2)
        .map(|_| {
            place
                .run()
                .args(["--json", "--quiet", "--lease-ttl", "1", "--resume", "twice"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("resume")
        })
        .collect();
    for resume in resumes {
        let out = resume.wait_with_output().expect("reap");
        let record: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(record["status"], "completed", "{record}");
    }
    let written = lines(&witness);
    for i in 1..=10 {
        let id = format!("t{i}");
        let times = written.iter().filter(|l| **l == id).count();
        let most = if i == 3 { 2 } else { 1 };
        assert!(
            (1..=most).contains(&times),
            "task {id} ran {times} times: {written:?}"
        );
    }
}
