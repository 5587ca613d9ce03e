//! How fast the run page of a 1,700-task run renders, and how big it is.
//!
//! ```sh
//! cargo run --release -p dagy-ui --example render_large             # print the figures
//! cargo run --release -p dagy-ui --example render_large -- --serve 8421
//! ```
//!
//! The run is written through the store API as an executor writes it (every attempt, some
//! retried), then `/runs/{id}` is asked for through the router, store read included. With
//! `--serve PORT` the dashboard is then served on 127.0.0.1 over that run, a failed one, and a
//! run that keeps going (a task every few hundred milliseconds) to watch the page follow it.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use dagy_store::{AttemptOutcome, MemoryStore, RunStatus, TaskStatus, now_ms};
use serde_json::json;
use support::{Driver, done, error, flow, new_run};
use tower::ServiceExt;

const ROUNDS: usize = 20;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let serve_port = std::env::args()
        .skip_while(|a| a != "--serve")
        .nth(1)
        .map(|p| p.parse::<u16>())
        .transpose()?;

    let store = Arc::new(MemoryStore::new());
    let start = now_ms() - 3_600_000;
    let built = Instant::now();
    let attempts = support::run_large(&store, "warehouse-1700", start).await;
    println!(
        "wrote a 1,700-task run ({attempts} attempts) in {:.1} ms",
        built.elapsed().as_secs_f64() * 1e3
    );
    let dashboard = dagy_ui::Dashboard::new(
        store.clone(),
        "the in-memory store of this example".into(),
        "it is always reachable".into(),
    );

    for (what, uri) in [
        ("run page", "/runs/warehouse-1700"),
        (
            "timeline fragment (polled)",
            "/runs/warehouse-1700/timeline",
        ),
        ("run JSON (polled)", "/api/runs/warehouse-1700"),
        ("task panel", "/runs/warehouse-1700/task?id=clean_007"),
        ("runs list", "/"),
    ] {
        let mut times = Vec::with_capacity(ROUNDS);
        let mut size = 0;
        for _ in 0..ROUNDS {
            let request = Request::get(uri).body(Body::empty())?;
            let began = Instant::now();
            let response = dashboard.clone().router().oneshot(request).await?;
            let body = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
            times.push(began.elapsed());
            size = body.len();
        }
        times.sort();
        println!(
            "{what:<28} median {:>7.2} ms, slowest {:>7.2} ms, {:>8} bytes ({:.0} KiB)",
            times[ROUNDS / 2].as_secs_f64() * 1e3,
            times[ROUNDS - 1].as_secs_f64() * 1e3,
            size,
            size as f64 / 1024.0
        );
    }

    if let Some(port) = serve_port {
        failed_run(&store).await;
        tokio::spawn(live_run(store.clone()));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("serving on http://{}", listener.local_addr()?);
        dashboard.serve(listener).await?;
    }
    Ok(())
}

/// A small run that failed: a retried task, a failure, skipped dependents.
async fn failed_run(store: &MemoryStore) {
    let t = now_ms() - 600_000;
    let spec = flow(
        "nightly-report",
        &[
            ("fetch", &[]),
            ("parse", &["fetch"]),
            ("enrich", &["parse"]),
            ("score", &["parse"]),
            ("publish", &["enrich", "score"]),
        ],
    );
    let mut new = new_run("nightly-0042", spec, t);
    new.run.deployment = Some("nightly".into());
    let driver = Driver::start(store, new, t).await;
    driver
        .attempt("fetch", 1, t + 5, t + 900, done(json!({"bytes": 18_204})))
        .await;
    driver
        .attempt("parse", 1, t + 910, t + 1_400, done(json!({"rows": 812})))
        .await;
    driver
        .attempt(
            "score",
            1,
            t + 1_410,
            t + 2_100,
            done(json!({"mean": 0.71})),
        )
        .await;
    let flaky =
        || AttemptOutcome::Retrying(error("TaskFailed", "HTTP 503 from the enrichment API"));
    driver
        .attempt("enrich", 1, t + 1_410, t + 1_900, flaky())
        .await;
    driver
        .attempt("enrich", 2, t + 3_900, t + 4_300, flaky())
        .await;
    driver
        .attempt(
            "enrich",
            3,
            t + 8_300,
            t + 8_800,
            AttemptOutcome::Finished(
                TaskStatus::Failed,
                error("TaskFailed", "HTTP 503 from the enrichment API"),
            ),
        )
        .await;
    driver.skip(&["publish"], t + 8_801).await;
    driver
        .finish(
            RunStatus::Failed,
            Some("task enrich failed after 3 attempts"),
            t + 8_802,
        )
        .await;
}

/// A 60-task run that advances in real time until it completes.
async fn live_run(store: Arc<MemoryStore>) {
    let mut tasks: Vec<(String, Vec<String>)> = vec![("plan".into(), vec![])];
    for i in 0..24 {
        tasks.push((format!("fetch_{i:02}"), vec!["plan".into()]));
    }
    for i in 0..24 {
        tasks.push((format!("transform_{i:02}"), vec![format!("fetch_{i:02}")]));
    }
    tasks.push((
        "merge".into(),
        (0..24).map(|i| format!("transform_{i:02}")).collect(),
    ));
    for i in 0..10 {
        let dep = if i == 0 {
            "merge".to_string()
        } else {
            format!("publish_{:02}", i - 1)
        };
        tasks.push((format!("publish_{i:02}"), vec![dep]));
    }
    let refs: Vec<(&str, Vec<&str>)> = tasks
        .iter()
        .map(|(id, deps)| (id.as_str(), deps.iter().map(String::as_str).collect()))
        .collect();
    let shape: Vec<(&str, &[&str])> = refs.iter().map(|(id, d)| (*id, d.as_slice())).collect();
    let driver = Driver::start(
        &store,
        new_run("live-0001", flow("hourly-sync", &shape), now_ms()),
        now_ms(),
    )
    .await;
    for (i, (id, _)) in tasks.iter().enumerate() {
        let attempts = if i % 9 == 4 { 2 } else { 1 };
        for attempt in 1..=attempts {
            if driver.try_begin(id, attempt, now_ms()).await.is_err() {
                // Cancelled from the page: what is left will not run.
                let left: Vec<&str> = tasks[i..].iter().map(|(id, _)| id.as_str()).collect();
                driver
                    .settle(
                        &left,
                        TaskStatus::Cancelled,
                        "the run was cancelled",
                        now_ms(),
                    )
                    .await;
                driver
                    .finish(RunStatus::Cancelled, Some("cancelled on request"), now_ms())
                    .await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(300 + (i as u64 * 37) % 500)).await;
            let outcome = if attempt < attempts {
                AttemptOutcome::Retrying(error("TaskFailed", "throttled; will retry"))
            } else {
                done(json!({ "task": id, "rows": i * 100 }))
            };
            driver.end(id, attempt, outcome, now_ms()).await;
            if attempt < attempts {
                tokio::time::sleep(Duration::from_millis(800)).await;
            }
        }
    }
    driver.finish(RunStatus::Completed, None, now_ms()).await;
}
