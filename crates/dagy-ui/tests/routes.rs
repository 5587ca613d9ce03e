//! The dashboard's routes against a MemoryStore holding runs written as an executor writes them.

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use dagy_store::{
    AttemptOutcome, AttemptStart, Created, Cursor, DeploymentRecord, EnvironmentRecord, Lease,
    MemoryStore, NewRun, RunFilter, RunPage, RunRecord, RunStatus, RunStore, StepView, StoreError,
    StoreLimits, TaskErrorRecord, TaskStatus, Verdict,
};
use dagy_ui::{Dashboard, LogTail};
use serde_json::{Value, json};
use support::{Driver, done, error, flow, new_run};
use tower::ServiceExt;

/// 2026-11-30T10:00:00Z.
const T0: u64 = 1_796_032_800_000;

fn dashboard(store: Arc<MemoryStore>) -> Dashboard {
    Dashboard::new(store, "the test store".into(), "nothing to fix".into())
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

async fn send(dashboard: Dashboard, request: Request<Body>) -> Reply {
    let response = dashboard
        .router()
        .oneshot(request)
        .await
        .expect("the router answers");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("the body");
    Reply {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).expect("UTF-8"),
    }
}

async fn get(dashboard: Dashboard, uri: &str) -> Reply {
    send(
        dashboard,
        Request::get(uri).body(Body::empty()).expect("a request"),
    )
    .await
}

async fn post(dashboard: Dashboard, uri: &str) -> Reply {
    send(
        dashboard,
        Request::post(uri).body(Body::empty()).expect("a request"),
    )
    .await
}

/// `etl`: extract -> {clean (fails after a retry), load (running)} -> report (pending).
async fn etl_running(store: &MemoryStore, run_id: &str, created: u64) {
    let spec = flow(
        "etl",
        &[
            ("extract", &[]),
            ("clean", &["extract"]),
            ("load", &["extract"]),
            ("report", &["clean", "load"]),
        ],
    );
    let driver = Driver::start(store, new_run(run_id, spec, created), created).await;
    let t = created;
    driver
        .attempt("extract", 1, t + 10, t + 500, done(json!({"rows": 42})))
        .await;
    driver
        .attempt(
            "clean",
            1,
            t + 510,
            t + 700,
            AttemptOutcome::Retrying(error("TaskFailed", "bad row <7>")),
        )
        .await;
    driver
        .attempt(
            "clean",
            2,
            t + 2_700,
            t + 2_900,
            AttemptOutcome::Finished(TaskStatus::Failed, error("TaskFailed", "bad row <7>")),
        )
        .await;
    driver.begin("load", 1, t + 520).await;
}

/// A completed one-task run of `flow_name`.
async fn completed(store: &MemoryStore, run_id: &str, flow_name: &str, created: u64) {
    let driver = Driver::start(
        store,
        new_run(run_id, flow(flow_name, &[("only", &[])]), created),
        created,
    )
    .await;
    driver
        .attempt("only", 1, created + 1, created + 30, done(json!(1)))
        .await;
    driver
        .finish(RunStatus::Completed, None, created + 31)
        .await;
}

async fn three_runs() -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    completed(&store, "run-old", "nightly", T0 - 86_400_000).await;
    etl_running(&store, "run-live", T0).await;
    completed(&store, "run-new", "nightly", T0 + 60_000).await;
    store
}

// ---- the runs list ----

#[tokio::test]
async fn the_runs_list_shows_the_newest_run_first_with_its_tier_and_backend() {
    let store = three_runs().await;
    let reply = get(dashboard(store), "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    let new = reply.body.find("data-run-id=\"run-new\"").expect("run-new");
    let live = reply
        .body
        .find("data-run-id=\"run-live\"")
        .expect("run-live");
    let old = reply.body.find("data-run-id=\"run-old\"").expect("run-old");
    assert!(new < live && live < old, "newest first");
    assert!(reply.body.contains("micro · lambda"));
    assert!(
        reply
            .body
            .contains("<a href=\"/runs/run-live\"><code>run-live</code></a>")
    );
}

#[tokio::test]
async fn a_running_run_in_the_list_names_the_task_it_is_on() {
    let store = three_runs().await;
    let reply = get(dashboard(store), "/").await;
    assert!(
        reply
            .body
            .contains("<a href=\"/runs/run-live#task=load\"><code>load</code></a>"),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn the_list_filters_by_status_name_and_time() {
    let store = three_runs().await;
    let running = get(dashboard(store.clone()), "/?status=running").await;
    assert!(running.body.contains("run-live"));
    assert!(!running.body.contains("run-new"));

    let nightly = get(dashboard(store.clone()), "/?name=nightly&limit=1").await;
    assert!(nightly.body.contains("run-new"));
    assert!(!nightly.body.contains("run-old"), "limit 1");

    let window = get(
        dashboard(store),
        "/?since=2026-11-30T09:00&until=2026-11-30T10:00:30",
    )
    .await;
    assert!(window.body.contains("run-live"));
    assert!(!window.body.contains("data-run-id=\"run-new\""));
    assert!(!window.body.contains("data-run-id=\"run-old\""));
}

#[tokio::test]
async fn a_bad_filter_is_a_400_page_that_says_what_to_change() {
    let store = three_runs().await;
    for (uri, says) in [
        ("/?status=done", "status=\"done\" is not understood"),
        ("/?since=yesterday", "2026-11-30T10:00"),
        ("/?limit=0", "a whole number from 1 to 500"),
        ("/?limit=9999", "a whole number from 1 to 500"),
        ("/?since=2d&until=3d", "a time after `since`"),
    ] {
        let reply = get(dashboard(store.clone()), uri).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(reply.body.contains("Bad filter"), "{uri}");
        assert!(
            reply.body.contains(&says.replace('"', "&quot;")),
            "{uri}: {}",
            reply.body
        );
        assert!(
            reply.body.contains("<form class=\"filters\""),
            "the form to fix it"
        );
    }
}

#[tokio::test]
async fn a_bad_filter_keeps_what_was_typed_escaped_in_the_form() {
    let store = three_runs().await;
    let reply = get(dashboard(store), "/?since=%22%3E%3Cscript%3E").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(!reply.body.contains("<script>"));
    assert!(reply.body.contains("value=\"&quot;&gt;&lt;script&gt;\""));
}

#[tokio::test]
async fn the_runs_api_lists_with_the_same_filters() {
    let store = three_runs().await;
    let reply = get(dashboard(store.clone()), "/api/runs?name=nightly").await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    let ids: Vec<&str> = body["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["run_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["run-new", "run-old"]);
    assert_eq!(body["limit"], 50);

    let bad = get(dashboard(store), "/api/runs?limit=lots").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json()["error"]["code"], "bad_filter");
}

// ---- one run ----

#[tokio::test]
async fn each_graph_node_carries_its_tasks_state() {
    let store = three_runs().await;
    let reply = get(dashboard(store), "/runs/run-live").await;
    assert_eq!(reply.status, StatusCode::OK);
    for (task, status) in [
        ("extract", "completed"),
        ("clean", "failed"),
        ("load", "running"),
        ("report", "pending"),
    ] {
        let node = format!(
            "<g class=\"node status-{status}\" data-task-id=\"{task}\" data-status=\"{status}\""
        );
        assert!(reply.body.contains(&node), "{node}");
    }
}

#[tokio::test]
async fn the_run_page_has_the_timeline_plan_and_a_cancel_button_while_live() {
    let store = three_runs().await;
    let reply = get(dashboard(store), "/runs/run-live").await;
    let body = &reply.body;
    // Two bars for clean: a failed attempt that was retried, then its final failure.
    assert!(body.contains("class=\"row\" data-task-id=\"clean\""));
    assert!(body.contains("class=\"a-retrying\""));
    assert!(body.contains("class=\"a-failed\""));
    assert!(body.contains("class=\"a-running\""), "load is running");
    assert!(
        body.contains("the flow has 40 tasks, over nano&#39;s 25"),
        "the plan's reason"
    );
    assert!(body.contains("<code>rule:many_tasks</code>"));
    assert!(body.contains("action=\"/runs/run-live/cancel\""));
    assert!(body.contains("data-final=\"false\""));
    assert!(body.contains("1 completed · 1 running · 1 pending · 1 failed"));
}

#[tokio::test]
async fn a_finished_run_has_no_cancel_button() {
    let store = three_runs().await;
    let reply = get(dashboard(store), "/runs/run-new").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(!reply.body.contains("/cancel\""));
    assert!(reply.body.contains("data-final=\"true\""));
}

#[tokio::test]
async fn an_unknown_run_is_a_404_page_and_a_404_in_the_api() {
    let store = three_runs().await;
    let page = get(dashboard(store.clone()), "/runs/no-such-run").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(
        page.body
            .contains("No run has the id <code>no-such-run</code>")
    );
    let api = get(dashboard(store.clone()), "/api/runs/no-such-run").await;
    assert_eq!(api.status, StatusCode::NOT_FOUND);
    assert_eq!(api.json()["error"]["code"], "run_not_found");
    let elsewhere = get(dashboard(store), "/nothing/here").await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_run_api_answers_the_snapshot_clients_know() {
    let store = three_runs().await;
    let reply = get(dashboard(store.clone()), "/api/runs/run-live").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    let expected = store.load_run("run-live").await.expect("run").to_json();
    assert_eq!(reply.json(), expected);
}

#[tokio::test]
async fn posting_cancel_requests_it_and_the_page_then_shows_it() {
    let store = three_runs().await;
    let reply = post(dashboard(store.clone()), "/runs/run-live/cancel").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.headers[header::LOCATION], "/runs/run-live");
    let run = store.get_run("run-live").await.expect("run");
    assert!(run.cancel_requested);
    assert_eq!(
        run.status,
        RunStatus::Running,
        "it stops at its next boundary"
    );

    let page = get(dashboard(store), "/runs/run-live").await;
    assert!(
        page.body
            .contains("data-field=\"cancel\">cancel requested</span>")
    );
    assert!(page.body.contains("<button type=\"submit\" disabled>"));
}

#[tokio::test]
async fn cancelling_a_pending_run_cancels_it_at_once() {
    let store = Arc::new(MemoryStore::new());
    store
        .create_run(new_run("queued", flow("f", &[("a", &[])]), T0))
        .await
        .expect("create");
    let reply = post(dashboard(store.clone()), "/runs/queued/cancel").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let page = get(dashboard(store), "/runs/queued").await;
    assert!(page.body.contains("data-status=\"cancelled\""));
    assert!(page.body.contains("cancelled before it started"));
}

#[tokio::test]
async fn cancelling_a_finished_run_changes_nothing_and_shows_the_run() {
    let store = three_runs().await;
    let reply = post(dashboard(store.clone()), "/runs/run-new/cancel").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let run = store.get_run("run-new").await.expect("run");
    assert_eq!(run.status, RunStatus::Completed);
    assert!(!run.cancel_requested);
}

#[tokio::test]
async fn cancelling_an_unknown_run_is_a_404() {
    let store = three_runs().await;
    let reply = post(dashboard(store), "/runs/nope/cancel").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_cancel_posted_from_another_site_is_refused() {
    let store = three_runs().await;
    let request = Request::post("/runs/run-live/cancel")
        .header(header::HOST, "127.0.0.1:8421")
        .header(header::ORIGIN, "https://elsewhere.example")
        .body(Body::empty())
        .expect("a request");
    let reply = send(dashboard(store.clone()), request).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(
        !store
            .get_run("run-live")
            .await
            .expect("run")
            .cancel_requested
    );

    let same = Request::post("/runs/run-live/cancel")
        .header(header::HOST, "127.0.0.1:8421")
        .header(header::ORIGIN, "http://127.0.0.1:8421")
        .body(Body::empty())
        .expect("a request");
    assert_eq!(
        send(dashboard(store), same).await.status,
        StatusCode::SEE_OTHER
    );
}

// ---- fragments ----

#[tokio::test]
async fn the_task_panel_shows_attempts_the_error_and_the_wait_between_attempts() {
    let store = three_runs().await;
    let reply = get(dashboard(store.clone()), "/runs/run-live/task?id=clean").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply
            .body
            .contains("<h4>Error <code>TaskFailed</code></h4>")
    );
    assert!(reply.body.contains("bad row &lt;7&gt;"));
    assert!(reply.body.contains("<td>2.0 s</td>"), "the retry delay");
    assert!(
        reply
            .body
            .contains("<a href=\"#task=extract\" data-task-id=\"extract\">")
    );

    let output = get(dashboard(store.clone()), "/runs/run-live/task?id=extract").await;
    assert!(output.body.contains("&quot;rows&quot;: 42"));

    let missing = get(dashboard(store.clone()), "/runs/run-live/task?id=nope").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let no_id = get(dashboard(store), "/runs/run-live/task").await;
    assert_eq!(no_id.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_timeline_fragment_is_the_timeline_alone() {
    let store = three_runs().await;
    let reply = get(dashboard(store), "/runs/run-live/timeline").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply
            .body
            .starts_with("<p class=\"muted\">3 tasks started (4 attempts)")
    );
    assert!(!reply.body.contains("<html"));
}

struct FixedLogs;

#[async_trait]
impl LogTail for FixedLogs {
    async fn tail(&self, run: &RunRecord, lines: usize) -> Result<Vec<String>, String> {
        Ok(vec![
            format!("{} started", run.run_id),
            format!("asked for {lines} lines <ok>"),
        ])
    }
}

#[tokio::test]
async fn the_log_panel_shows_the_tail_or_says_logs_are_not_available() {
    let store = three_runs().await;
    let without = get(dashboard(store.clone()), "/runs/run-live/logs").await;
    assert!(
        without
            .body
            .contains("Logs are not available for this store.")
    );

    let with = dashboard(store).with_logs(Arc::new(FixedLogs));
    let reply = get(with, "/runs/run-live/logs").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.body,
        "<pre class=\"log\">run-live started\nasked for 200 lines &lt;ok&gt;\n</pre>"
    );
}

#[tokio::test]
async fn the_assets_are_served_from_the_binary() {
    let store = Arc::new(MemoryStore::new());
    let css = get(dashboard(store.clone()), "/assets/dagy.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers[header::CONTENT_TYPE]
            .to_str()
            .expect("type")
            .starts_with("text/css")
    );
    assert!(css.body.contains(".status-completed"));
    let js = get(dashboard(store), "/assets/dagy.js").await;
    assert!(js.body.contains("/api"));
}

// ---- escaping ----

#[tokio::test]
async fn names_errors_and_outputs_from_the_store_are_escaped_everywhere() {
    let store = Arc::new(MemoryStore::new());
    let mut new = new_run("x1", flow("ok", &[("a", &[])]), T0);
    new.run.flow_name = "<script>alert('flow')</script>".into();
    new.run.deployment = Some("<img src=x onerror=alert(1)>".into());
    let driver = Driver::start(&store, new, T0).await;
    driver
        .attempt(
            "a",
            1,
            T0 + 1,
            T0 + 2,
            done(json!({"x": "</pre><script>alert(2)</script>"})),
        )
        .await;
    driver
        .finish(RunStatus::Failed, Some("<b>boom</b>"), T0 + 3)
        .await;
    for uri in ["/", "/runs/x1", "/runs/x1/task?id=a", "/runs/x1/timeline"] {
        let reply = get(dashboard(store.clone()), uri).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}");
        assert!(!reply.body.contains("<script>alert"), "{uri}");
        assert!(!reply.body.contains("<img src=x"), "{uri}");
        assert!(!reply.body.contains("<b>boom"), "{uri}");
    }
    let page = get(dashboard(store), "/runs/x1").await;
    assert!(
        page.body
            .contains("&lt;script&gt;alert(&#39;flow&#39;)&lt;/script&gt;")
    );
    assert!(page.body.contains("&lt;b&gt;boom&lt;/b&gt;"));
}

// ---- an unreachable store ----

/// A store whose every call fails as an unreachable store's does.
struct DownStore;

fn down<T>() -> Result<T, StoreError> {
    Err(StoreError::Unavailable(
        "connection refused (os error 111)".into(),
    ))
}

#[async_trait]
impl RunStore for DownStore {
    fn limits(&self) -> StoreLimits {
        StoreLimits::default()
    }
    async fn create_run(&self, _: NewRun) -> Result<Created, StoreError> {
        down()
    }
    async fn get_run(&self, _: &str) -> Result<RunRecord, StoreError> {
        down()
    }
    async fn load_run(&self, _: &str) -> Result<dagy_store::RunSnapshot, StoreError> {
        down()
    }
    async fn acquire_lease(&self, _: &str, _: &str, _: u64, _: u64) -> Result<Lease, StoreError> {
        down()
    }
    async fn join_lease(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: u64,
        _: u64,
    ) -> Result<Lease, StoreError> {
        down()
    }
    async fn renew_lease(&self, _: &Lease, _: u64, _: u64) -> Result<Lease, StoreError> {
        down()
    }
    async fn release_lease(&self, _: &Lease, _: u64) -> Result<(), StoreError> {
        down()
    }
    async fn load_step(&self, _: &str) -> Result<Option<StepView>, StoreError> {
        down()
    }
    async fn advance_cursor(
        &self,
        _: &Lease,
        _: &str,
        _: Option<&Cursor>,
        _: Option<&Verdict>,
        _: u64,
    ) -> Result<(), StoreError> {
        down()
    }
    async fn start_attempt(
        &self,
        _: &Lease,
        _: &str,
        _: u32,
        _: u64,
    ) -> Result<AttemptStart, StoreError> {
        down()
    }
    async fn finish_attempt(
        &self,
        _: &Lease,
        _: &str,
        _: u32,
        _: AttemptOutcome,
        _: u64,
    ) -> Result<(), StoreError> {
        down()
    }
    async fn settle_tasks(
        &self,
        _: &Lease,
        _: &[String],
        _: TaskStatus,
        _: TaskErrorRecord,
        _: u64,
    ) -> Result<(), StoreError> {
        down()
    }
    async fn finish_run(
        &self,
        _: &Lease,
        _: RunStatus,
        _: Option<String>,
        _: u64,
    ) -> Result<RunRecord, StoreError> {
        down()
    }
    async fn list_runs(&self, _: &str, _: usize, _: Option<&str>) -> Result<RunPage, StoreError> {
        down()
    }
    async fn recent_runs(&self, _: &RunFilter, _: usize) -> Result<Vec<RunRecord>, StoreError> {
        down()
    }
    async fn find_lapsed_runs(&self, _: u64, _: usize) -> Result<Vec<RunRecord>, StoreError> {
        down()
    }
    async fn put_deployment(&self, _: DeploymentRecord) -> Result<DeploymentRecord, StoreError> {
        down()
    }
    async fn get_deployment(&self, _: &str) -> Result<Option<DeploymentRecord>, StoreError> {
        down()
    }
    async fn put_environment(&self, _: EnvironmentRecord) -> Result<EnvironmentRecord, StoreError> {
        down()
    }
    async fn get_environment(&self, _: &str) -> Result<Option<EnvironmentRecord>, StoreError> {
        down()
    }
    async fn request_cancel(&self, _: &str, _: u64) -> Result<RunRecord, StoreError> {
        down()
    }
}

fn down_dashboard() -> Dashboard {
    Dashboard::new(
        Arc::new(DownStore),
        "DynamoDB table dagy-runs in eu-west-1".into(),
        "Check your AWS credentials and region, or run `dagy table create`.".into(),
    )
}

#[tokio::test]
async fn an_unreachable_store_is_a_503_page_naming_the_store_and_the_fix() {
    for uri in ["/", "/runs/r1"] {
        let reply = get(down_dashboard(), uri).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert!(
            reply.body.contains("DynamoDB table dagy-runs in eu-west-1"),
            "{uri}"
        );
        assert!(reply.body.contains("run `dagy table create`"), "{uri}");
        assert!(reply.body.contains("connection refused"), "{uri}");
    }
    let cancel = post(down_dashboard(), "/runs/r1/cancel").await;
    assert_eq!(cancel.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn an_unreachable_store_is_a_503_in_the_api_with_the_store_and_the_fix() {
    let reply = get(down_dashboard(), "/api/runs/r1").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    let error = &reply.json()["error"];
    assert_eq!(error["code"], "store_unavailable");
    assert_eq!(error["store"], "DynamoDB table dagy-runs in eu-west-1");
    let list = get(down_dashboard(), "/api/runs").await;
    assert_eq!(list.status, StatusCode::SERVICE_UNAVAILABLE);
}

// ---- a large run ----

#[tokio::test]
async fn a_run_of_1700_tasks_renders_every_node_with_its_state() {
    let store = Arc::new(MemoryStore::new());
    support::run_large(&store, "big", T0).await;
    let reply = get(dashboard(store), "/runs/big").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.body.matches("data-status=\"completed\"").count(),
        1_700
    );
    assert!(
        reply.body.contains("1700 tasks · 104 levels"),
        "levels of the shape"
    );
    assert_eq!(reply.body.matches("class=\"a-retrying\"").count(), 34);
}
