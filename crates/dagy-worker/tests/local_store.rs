//! The `dagy-worker` binary on the embedded store (`DAGY_STORE=sqlite`, `DAGY_HOME`) with a
//! handler manifest (`DAGY_HANDLERS_FILE`): what a local container runs. No AWS in the path.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use serde_json::json;

use dagy_core::Flow;
use dagy_engine::{Executor, NewRunRequest};
use dagy_exec::ExecManifest;
use dagy_store::{RunStatus, RunStore};
use dagy_store_sqlite::{DATABASE_FILE, SqliteStore};

const MANIFEST: &str = r#"
[handlers.double]
argv = ["/bin/sh", "-c", "echo 'doubling' >&2; sed 's/.*\"count\": *\\([0-9]*\\).*/\\1/' | awk '{print $1 * 2}'"]
[handlers.double.env]
LC_ALL = "C"
"#;

/// A run of `count (sum) -> double (exec)` created in the SQLite store under `home`.
async fn new_run(home: &Path, manifest: &ExecManifest) -> String {
    let mut registry = dagy_handlers::registry();
    manifest.register(&mut registry);
    let flow = Flow::from_json(
        r#"{"spec_version": 1, "name": "local", "tasks": [
            {"id": "count", "handler": "sum", "args": {"add": 21}},
            {"id": "double", "handler": "exec:double", "depends_on": ["count"]}
        ]}"#,
        Some(&registry),
    )
    .expect("flow");
    let store = Arc::new(SqliteStore::open(&home.join(DATABASE_FILE)).expect("store"));
    Executor::new(store, Arc::new(registry))
        .create_run(&flow, NewRunRequest::default())
        .await
        .expect("run")
        .run
        .run_id
}

fn worker(home: &Path, run_id: &str, manifest: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dagy-worker"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DAGY_STORE", "sqlite")
        .env("DAGY_HOME", home)
        .env("DAGY_RUN_ID", run_id)
        .env("DAGY_HANDLERS_FILE", manifest);
    command
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_runs_a_local_run_with_command_handlers() {
    let home = tempfile::tempdir().expect("home");
    let manifest_path = home.path().join("handlers.toml");
    std::fs::write(&manifest_path, MANIFEST).expect("manifest");
    let manifest = ExecManifest::load(&manifest_path).expect("valid");
    let run_id = new_run(home.path(), &manifest).await;

    let out = worker(home.path(), &run_id, &manifest_path)
        .output()
        .expect("dagy-worker");
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    let store = SqliteStore::open(&home.path().join(DATABASE_FILE)).expect("store");
    let snapshot = store.load_run(&run_id).await.expect("load");
    assert_eq!(snapshot.run.status, RunStatus::Completed, "{log}");
    assert_eq!(snapshot.tasks[1].output_value(), Some(json!(42)));
    assert!(
        log.lines()
            .any(|l| l.contains("command handlers registered") && l.contains("exec:double")),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("doubling")
            && l.contains("\"stream\":\"stderr\"")
            && l.contains(&run_id)),
        "the process's stderr is in the run's log:\n{log}"
    );
}

#[test]
fn a_bad_store_or_manifest_stops_the_worker_with_what_to_change() {
    let home = tempfile::tempdir().expect("home");
    let manifest = home.path().join("handlers.toml");
    std::fs::write(&manifest, "[handlers.x]\nargv = \"python3 x.py\"\n").expect("manifest");

    let out = worker(home.path(), "r1", &manifest)
        .env("DAGY_STORE", "postgres")
        .output()
        .expect("dagy-worker");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("DAGY_STORE=\\\"postgres\\\" is not a store"),
        "{}",
        text(&out)
    );

    let out = worker(home.path(), "r1", &manifest)
        .output()
        .expect("dagy-worker");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("handlers.x.argv: must be an array of strings"),
        "{}",
        text(&out)
    );

    let out = worker(home.path(), "r1", &home.path().join("missing.toml"))
        .output()
        .expect("dagy-worker");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("missing.toml"), "{}", text(&out));
}
