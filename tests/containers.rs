//! The worker's images on this machine's Docker, built offline by `scripts/worker-image.sh
//! --examples`: a flow with Python `exec:` tasks runs in `dagy-python-worker` on the host's
//! embedded store (its `DAGY_HOME` mounted), and a task allocating past the container's memory
//! limit gets the container killed for memory, as on Fargate.
//!
//! They need Docker (started when it does not answer, and stopped again) and take a minute
//! cold, so they are `#[ignore]`d in the workspace run; `scripts/test.sh` runs them in its
//! container step: `cargo test --workspace --test containers -- --ignored`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

use dagy_core::Flow;
use dagy_engine::{Executor, HandlerRegistry, NewRunRequest};
use dagy_exec::ExecManifest;
use dagy_store::{RunStatus, RunStore, TaskStatus};
use dagy_store_sqlite::{DATABASE_FILE, SqliteStore};
use dagy_testkit::docker::{DockerSession, PYTHON_IMAGE, WORKER_IMAGE};
use dagy_testkit::workspace;

/// Docker with the images built, or `None` (with the reason printed) when Docker cannot start.
fn docker() -> Option<DockerSession> {
    match DockerSession::start() {
        Ok(session) => {
            if let Err(e) = session.images() {
                panic!("{e}");
            }
            Some(session)
        }
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

/// A `DAGY_HOME` the container's user (65532) can write, with a run of `flow` in its store.
async fn home_with_run(flow: &str, registry: HandlerRegistry) -> (tempfile::TempDir, String) {
    let home = tempfile::tempdir().expect("home");
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let flow = Flow::from_json(flow, Some(&registry)).expect("a flow of declared handlers");
    let run_id = {
        let store = Arc::new(SqliteStore::open(&home.path().join(DATABASE_FILE)).expect("store"));
        Executor::new(store, Arc::new(registry))
            .create_run(&flow, NewRunRequest::default())
            .await
            .expect("run")
            .run
            .run_id
    };
    // The store is closed: only runs.db is left, for the container's user to write.
    for entry in std::fs::read_dir(home.path()).expect("home").flatten() {
        std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o666))
            .expect("chmod");
    }
    (home, run_id)
}

/// `docker run` of `image` on the run in `home`, with `extra` options.
fn run_args<'a>(home: &'a Path, run_id: &'a str, extra: &[&'a str], image: &'a str) -> Vec<String> {
    let mut args: Vec<String> = vec!["run".into(), "--network".into(), "host".into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend([
        "--label".into(),
        format!("dagy.run-id={run_id}"),
        "-v".into(),
        format!("{}:/dagy", home.display()),
        "-e".into(),
        "DAGY_HOME=/dagy".into(),
        "-e".into(),
        "DAGY_STORE=sqlite".into(),
        "-e".into(),
        format!("DAGY_RUN_ID={run_id}"),
        image.into(),
    ]);
    args
}

async fn load(home: &Path, run_id: &str) -> dagy_store::RunSnapshot {
    SqliteStore::open(&home.join(DATABASE_FILE))
        .expect("store")
        .load_run(run_id)
        .await
        .expect("the run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker; scripts/test.sh runs it in its container step"]
async fn a_python_flow_runs_in_the_example_image_on_the_hosts_embedded_store() {
    let Some(docker) = docker() else { return };
    let example = workspace().join("examples/python-worker");
    // The flow is checked against the image's manifest, as a deploy would.
    let manifest = ExecManifest::load(&example.join("handlers.toml")).expect("manifest");
    let mut registry = dagy_handlers::registry();
    manifest.register(&mut registry);
    let flow = std::fs::read_to_string(example.join("flow.json")).expect("flow");
    let (home, run_id) = home_with_run(&flow, registry).await;

    let args = run_args(home.path(), &run_id, &["--rm"], PYTHON_IMAGE);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = docker.docker(&args);
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the worker failed:\n{log}");

    let snapshot = load(home.path(), &run_id).await;
    assert_eq!(snapshot.run.status, RunStatus::Completed, "{log}");
    let output = |id: &str| -> Value {
        snapshot
            .tasks
            .iter()
            .find(|t| t.task_id == id)
            .and_then(dagy_store::TaskRecord::output_value)
            .unwrap_or(Value::Null)
    };
    assert_eq!(output("measure"), json!(42));
    let stats = output("stats");
    assert_eq!(
        (
            &stats["count"],
            &stats["sum"],
            &stats["min"],
            &stats["max"],
            &stats["median"]
        ),
        (&json!(9), &json!(73), &json!(1), &json!(42), &json!(4)),
        "{stats}"
    );
    let report = output("report");
    assert_eq!(report["title"], "Daily numbers");
    assert!(
        report["text"]
            .as_str()
            .is_some_and(|t| t.contains("stats: 9 numbers, sum 73")),
        "{report}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("py-stats: 9 numbers") && l.contains(&run_id)),
        "the Python task's stderr is in the worker's log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker; scripts/test.sh runs it in its container step"]
async fn a_task_past_the_memory_limit_gets_the_container_killed_for_memory() {
    let Some(docker) = docker() else { return };
    let inspect = docker.docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Config.User}} {{json .Config.Entrypoint}}",
        WORKER_IMAGE,
    ]);
    assert_eq!(
        String::from_utf8_lossy(&inspect.stdout).trim(),
        r#"65532:65532 ["/usr/local/bin/dagy-worker"]"#,
        "the layout of the repository's Dockerfile"
    );

    // Small's limits: 1 GiB (no swap) and half a CPU. 256 MiB fits.
    let limits = ["--memory", "1g", "--memory-swap", "1g", "--cpus", "0.5"];
    let flow = |mb: u32| {
        json!({"spec_version": 1, "name": "alloc", "tasks": [
            {"id": "alloc", "handler": "alloc", "args": {"mb": mb}}
        ]})
        .to_string()
    };
    let (home, run_id) = home_with_run(&flow(256), dagy_handlers::registry()).await;
    let mut extra = vec!["--rm"];
    extra.extend(limits);
    let args = run_args(home.path(), &run_id, &extra, WORKER_IMAGE);
    let out = docker.docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let snapshot = load(home.path(), &run_id).await;
    assert_eq!(snapshot.tasks[0].output_value(), Some(json!({"mb": 256})));

    // 2 GiB does not: the kernel kills the container, which Docker records.
    let (home, run_id) = home_with_run(&flow(2048), dagy_handlers::registry()).await;
    let name = format!("dagy-oom-{}", std::process::id());
    let mut extra = vec!["--name", name.as_str()];
    extra.extend(limits);
    let args = run_args(home.path(), &run_id, &extra, WORKER_IMAGE);
    let out = docker.docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let state = docker.docker(&[
        "inspect",
        "--format",
        "{{.State.OOMKilled}} {{.State.ExitCode}}",
        &name,
    ]);
    docker.docker(&["rm", "--force", &name]);
    assert_eq!(
        out.status.code(),
        Some(137),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(String::from_utf8_lossy(&state.stdout).trim(), "true 137");
    let snapshot = load(home.path(), &run_id).await;
    assert_eq!(
        snapshot.tasks[0].status,
        TaskStatus::Running,
        "the worker died inside the attempt; the backend ends the run with the reason"
    );
}
