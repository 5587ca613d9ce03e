//! `exec:` handlers with real processes: input on stdin, output on stdout or in `DAGY_OUTPUT`,
//! exit codes and their retryability, timeouts and cancels that stop the whole process group,
//! and flows run by the engine on them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use dagy_core::Flow;
use dagy_engine::{Executor, HandlerRegistry, NewRunRequest, RunOptions, StepOutcome, TaskContext};
use dagy_exec::run::{self, run_entry};
use dagy_exec::{ExecEntry, ExecManifest, ManifestLocation};
use dagy_store::{MemoryStore, RunStatus, RunStore, TaskStatus};

/// An entry that runs `script` with `/bin/sh -c`.
fn sh(name: &str, script: &str) -> ExecEntry {
    ExecEntry {
        name: name.into(),
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        cwd: None,
        env: Default::default(),
        timeout_seconds: None,
    }
}

fn input() -> Value {
    json!({"parameters": {"day": "2026-11-30"}, "upstream": {"a": [1, 2, 3]}, "args": {"mb": 1}})
}

fn ctx() -> TaskContext {
    TaskContext::new("run-1", "task-1", 1)
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Whether process `pid` still runs (a zombie does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        })
        .unwrap_or(false)
}

/// Waits until `path` holds a pid, and returns it.
async fn pid_in(path: &Path) -> u32 {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return pid;
        }
        assert!(
            Instant::now() < until,
            "no pid written to {}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn gone(pid: u32) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        if Instant::now() > until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

#[tokio::test]
async fn the_input_arrives_on_stdin_and_stdout_is_the_output() {
    let out = run_entry(&sh("cat", "cat"), ctx(), input()).await;
    assert_eq!(out, Ok(input()));
}

#[tokio::test]
async fn the_process_gets_its_environment_and_working_directory() {
    let dir = scratch();
    let mut entry = sh(
        "env",
        r#"printf '{"cwd": "%s", "greeting": "%s", "task": "%s", "attempt": %s, "run": "%s"}' "$(pwd)" "$GREETING" "$DAGY_TASK_ID" "$DAGY_ATTEMPT" "$DAGY_RUN_ID""#,
    );
    entry.cwd = Some(dir.path().to_path_buf());
    entry.env.insert("GREETING".into(), "hello".into());
    let out = run_entry(&entry, ctx(), input()).await.expect("ran");
    let cwd = dir.path().canonicalize().expect("dir");
    assert_eq!(
        out,
        json!({"cwd": cwd.to_str(), "greeting": "hello", "task": "task-1", "attempt": 1, "run": "run-1"})
    );
}

#[tokio::test]
async fn a_dagy_output_file_is_the_output_and_stdout_is_then_free() {
    let entry = sh(
        "file",
        r#"echo "some progress, not JSON"; echo '{"from": "file"}' > "$DAGY_OUTPUT""#,
    );
    assert_eq!(
        run_entry(&entry, ctx(), input()).await,
        Ok(json!({"from": "file"}))
    );
}

#[tokio::test]
async fn stdout_that_is_not_json_fails_the_task_for_good() {
    let err = run_entry(&sh("chatty", "echo hello there"), ctx(), input())
        .await
        .expect_err("not JSON");
    assert_eq!(err.error_type, run::OUTPUT_ERROR);
    assert!(!err.retryable);
    assert!(
        err.message.contains("exec:chatty: stdout is not JSON")
            && err.message.contains("hello there"),
        "{}",
        err.message
    );
    let silent = run_entry(&sh("silent", "true"), ctx(), input())
        .await
        .expect_err("nothing");
    assert!(
        silent.message.contains("printed nothing"),
        "{}",
        silent.message
    );
}

#[tokio::test]
async fn a_non_zero_exit_is_a_retryable_error_carrying_the_end_of_stderr() {
    let entry = sh(
        "fails",
        "for i in $(seq 1 500); do echo \"line $i\" >&2; done; exit 3",
    );
    let err = run_entry(&entry, ctx(), input()).await.expect_err("exit 3");
    assert_eq!(err.error_type, run::FAILED_ERROR);
    assert!(err.retryable);
    assert!(
        err.message
            .starts_with("exec:fails: exited with code 3; stderr ends:\n"),
        "{}",
        err.message
    );
    assert!(
        err.message.ends_with("line 499\nline 500"),
        "{}",
        err.message
    );
    assert!(
        !err.message.contains("line 1\n"),
        "only the tail: {}",
        err.message
    );
    assert!(err.message.len() < run::STDERR_TAIL_BYTES + 200);
}

#[tokio::test]
async fn exit_75_is_retried_and_exit_65_is_not() {
    let temp = run_entry(&sh("t", "echo busy >&2; exit 75"), ctx(), input())
        .await
        .expect_err("75");
    assert_eq!(
        (temp.error_type.as_str(), temp.retryable),
        (run::TEMPFAIL_ERROR, true)
    );
    let data = run_entry(&sh("d", "echo 'row 3 is bad' >&2; exit 65"), ctx(), input())
        .await
        .expect_err("65");
    assert_eq!(
        (data.error_type.as_str(), data.retryable),
        (run::PERMANENT_ERROR, false)
    );
    assert!(data.message.ends_with("row 3 is bad"), "{}", data.message);
}

#[tokio::test]
async fn a_missing_program_fails_for_good() {
    let entry = ExecEntry {
        argv: vec!["/nonexistent/program".into()],
        ..sh("missing", "")
    };
    let err = run_entry(&entry, ctx(), input())
        .await
        .expect_err("missing");
    assert_eq!(
        (err.error_type.as_str(), err.retryable),
        (run::SPAWN_ERROR, false)
    );
    assert!(
        err.message.contains("/nonexistent/program"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn the_entry_timeout_kills_the_whole_process_group() {
    let dir = scratch();
    let pidfile = dir.path().join("child.pid");
    let mut entry = sh(
        "slow",
        &format!(
            "sleep 60 & echo $! > {}; echo started >&2; wait",
            pidfile.display()
        ),
    );
    entry.timeout_seconds = Some(0.5);
    let started = Instant::now();
    let err = run_entry(&entry, ctx(), input())
        .await
        .expect_err("timed out");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        (err.error_type.as_str(), err.retryable),
        (run::TIMED_OUT_ERROR, true)
    );
    assert!(
        err.message.contains("0.5 s") && err.message.ends_with("started"),
        "{}",
        err.message
    );
    let child = pid_in(&pidfile).await;
    assert!(
        gone(child).await,
        "the background sleep {child} was left running"
    );
}

#[tokio::test]
async fn a_cancel_sends_sigterm_to_the_group() {
    let dir = scratch();
    let marker = dir.path().join("term");
    let entry = sh(
        "graceful",
        &format!(
            "trap 'echo cleaned up > {}; exit 0' TERM; sleep 60 & wait",
            marker.display()
        ),
    );
    let ctx = ctx();
    let cancel = ctx.cancel.clone();
    let run = tokio::spawn(async move { run_entry(&entry, ctx, input()).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    cancel.cancel();
    let err = run.await.expect("joined").expect_err("cancelled");
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(err.error_type, run::CANCELLED_ERROR);
    assert!(
        err.message.contains("SIGTERM and exited"),
        "{}",
        err.message
    );
    assert_eq!(
        std::fs::read_to_string(&marker).expect("trap ran").trim(),
        "cleaned up"
    );
}

#[tokio::test]
async fn a_cancel_kills_a_group_that_ignores_sigterm_after_the_grace() {
    let dir = scratch();
    let pidfile = dir.path().join("child.pid");
    let entry = sh(
        "stubborn",
        &format!(
            "trap '' TERM; sleep 60 & echo $! > {}; wait",
            pidfile.display()
        ),
    );
    let ctx = ctx();
    let cancel = ctx.cancel.clone();
    let run = tokio::spawn(async move { run_entry(&entry, ctx, input()).await });
    let child = pid_in(&pidfile).await;
    let sent = Instant::now();
    cancel.cancel();
    let err = run.await.expect("joined").expect_err("cancelled");
    let took = sent.elapsed();
    assert!(
        took >= run::term_grace() && took < run::term_grace() + Duration::from_secs(2),
        "{took:?}"
    );
    assert!(err.message.contains("was killed"), "{}", err.message);
    assert!(
        gone(child).await,
        "the background sleep {child} was left running"
    );
}

#[tokio::test]
async fn children_left_behind_after_the_exit_are_killed() {
    let dir = scratch();
    let pidfile = dir.path().join("child.pid");
    // The background sleep keeps stdout open: the handler must not wait for it.
    let entry = sh(
        "leaves",
        &format!("sleep 60 & echo $! > {}; echo '[1]'", pidfile.display()),
    );
    let started = Instant::now();
    assert_eq!(run_entry(&entry, ctx(), input()).await, Ok(json!([1])));
    assert!(started.elapsed() < Duration::from_secs(5));
    let child = pid_in(&pidfile).await;
    assert!(
        gone(child).await,
        "the background sleep {child} was left running"
    );
}

fn manifest_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("handlers.toml");
    std::fs::write(&path, text).expect("write manifest");
    path
}

#[tokio::test]
async fn the_manifest_file_is_optional_at_the_default_path_and_required_when_named() {
    let dir = scratch();
    let absent = ManifestLocation {
        path: dir.path().join("none.toml"),
        required: false,
    };
    assert_eq!(absent.load().expect("no manifest"), None);
    let named = ManifestLocation {
        required: true,
        ..absent
    };
    let err = named.load().expect_err("named and missing");
    assert!(err.to_string().contains("none.toml"), "{err}");
    let path = manifest_file(dir.path(), "[handlers.x]\nargv = [\"cat\"]\n");
    let loaded = ManifestLocation {
        path: path.clone(),
        required: true,
    }
    .load()
    .expect("reads")
    .expect("some");
    assert_eq!(loaded.origin(), Some(path.as_path()));
    let bad = manifest_file(dir.path(), "[handlers.x]\nargv = \"cat input\"\n");
    let err = ExecManifest::load(&bad).expect_err("invalid");
    let text = err.to_string();
    assert!(
        text.contains(&bad.display().to_string())
            && text.contains("handlers.x.argv: must be an array"),
        "{text}"
    );
}

/// A flow on the engine: a Rust task feeds two `exec:` tasks; the flow is checked against the
/// manifest's names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_runs_exec_tasks_with_their_upstream_outputs() {
    let manifest = ExecManifest::parse(
        r#"
        [handlers.total]
        argv = ["/bin/sh", "-c", "tr -d '\\n' | sed 's/.*\"numbers\":\\[\\([0-9,]*\\)\\].*/\\1/' | tr ',' '\\n' | awk '{s += $1} END {print s}'"]
        [handlers.fails-once]
        argv = ["/bin/sh", "-c", "if [ \"$DAGY_ATTEMPT\" = 1 ]; then echo 'try again' >&2; exit 75; fi; echo '\"ok\"'"]
        "#,
    )
    .expect("manifest");
    let mut registry = HandlerRegistry::new();
    registry.register("numbers", |_ctx, _input| async { Ok(json!([1, 2, 3, 4])) });
    manifest.register(&mut registry);

    let undeclared =
        r#"{"spec_version": 1, "name": "f", "tasks": [{"id": "t", "handler": "exec:rm-rf"}]}"#;
    let err = Flow::from_json(undeclared, Some(&registry)).expect_err("undeclared");
    assert!(err.to_string().contains("exec:rm-rf"), "{err}");

    let flow = Flow::from_json(
        r#"{"spec_version": 1, "name": "exec", "tasks": [
            {"id": "numbers", "handler": "numbers"},
            {"id": "total", "handler": "exec:total", "depends_on": ["numbers"]},
            {"id": "flaky", "handler": "exec:fails-once", "depends_on": ["total"], "retries": 1}
        ]}"#,
        Some(&registry),
    )
    .expect("valid flow");
    let store = Arc::new(MemoryStore::new());
    let executor = Executor::new(store.clone(), Arc::new(registry));
    let run = executor
        .create_run(&flow, NewRunRequest::default())
        .await
        .expect("run")
        .run;
    let outcome = executor
        .run(&run.run_id, &RunOptions::default())
        .await
        .expect("ran");
    let snapshot = store.load_run(&run.run_id).await.expect("load");
    assert_eq!(
        outcome,
        StepOutcome::Finished(RunStatus::Completed),
        "{snapshot:#?}"
    );
    assert_eq!(snapshot.tasks[1].output_value(), Some(json!(10)));
    assert_eq!(snapshot.tasks[2].output_value(), Some(json!("ok")));
    assert_eq!(snapshot.tasks[2].attempts, 2);
}

/// The engine's own timeout drops the handler: the process group dies with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_timeout_kills_the_process_group() {
    let dir = scratch();
    let pidfile = dir.path().join("child.pid");
    let manifest = ExecManifest::from_entries(vec![sh(
        "slow",
        &format!("sleep 60 & echo $! > {}; wait", pidfile.display()),
    )]);
    let mut registry = HandlerRegistry::new();
    manifest.register(&mut registry);
    let flow = Flow::from_json(
        r#"{"spec_version": 1, "name": "slow", "tasks": [{"id": "t", "handler": "exec:slow", "timeout_seconds": 1}]}"#,
        Some(&registry),
    )
    .expect("flow");
    let store = Arc::new(MemoryStore::new());
    let executor = Executor::new(store.clone(), Arc::new(registry));
    let run = executor
        .create_run(&flow, NewRunRequest::default())
        .await
        .expect("run")
        .run;
    let started = Instant::now();
    executor
        .run(&run.run_id, &RunOptions::default())
        .await
        .expect("ran");
    assert!(started.elapsed() < Duration::from_secs(10));
    let snapshot = store.load_run(&run.run_id).await.expect("load");
    assert_eq!(snapshot.tasks[0].status, TaskStatus::TimedOut);
    let child = pid_in(&pidfile).await;
    assert!(
        gone(child).await,
        "the background sleep {child} was left running"
    );
}

#[tokio::test]
async fn a_python_task_reads_its_input_and_prints_its_output() {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no python3 on this machine");
        return;
    }
    let entry = ExecEntry {
        argv: vec![
            "python3".into(),
            "-c".into(),
            "import json, sys\n\
             task = json.load(sys.stdin)\n\
             print('summing', file=sys.stderr)\n\
             print(json.dumps({'sum': sum(task['upstream']['a']), 'day': task['parameters']['day']}))"
                .into(),
        ],
        ..sh("py", "")
    };
    assert_eq!(
        run_entry(&entry, ctx(), input()).await,
        Ok(json!({"sum": 6, "day": "2026-11-30"}))
    );
}
