//! The router's operations and the executor function, on the memory store, with a dispatcher
//! that records what it was asked to start. (The same code runs under the Lambda emulator
//! against DynamoDB in the integration tests.)

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Value, json};

use dagy_core::{BackendKind, Settings};
use dagy_engine::Executor;
use dagy_functions::FunctionError;
use dagy_functions::dispatch::Dispatcher;
use dagy_functions::executor_fn::{self, ExecutorEvent};
use dagy_functions::router::Router;
use dagy_store::{MemoryStore, RunStore};

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

#[async_trait]
impl Dispatcher for Recorder {
    fn backends(&self) -> Vec<BackendKind> {
        vec![BackendKind::Lambda]
    }
    async fn dispatch(&self, _backend: BackendKind, run_id: &str) -> Result<(), FunctionError> {
        self.0.lock().expect("log").push(run_id.to_string());
        Ok(())
    }
}

struct Env {
    store: Arc<MemoryStore>,
    dispatched: Arc<Recorder>,
    router: Router,
}

fn env_with(settings: Settings) -> Env {
    let store = Arc::new(MemoryStore::new());
    let dispatched = Arc::new(Recorder::default());
    let router = Router::new(
        store.clone(),
        settings,
        dispatched.clone(),
        Arc::new(dagy_handlers::registry()),
    );
    Env {
        store,
        dispatched,
        router,
    }
}

fn env() -> Env {
    env_with(Settings::default())
}

fn http(method: &str, path: &str, body: Option<Value>) -> Value {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let params: serde_json::Map<String, Value> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "queryStringParameters": params,
        "requestContext": {"http": {"method": method, "path": path}},
        "body": body.map(|b| b.to_string()),
        "isBase64Encoded": false
    })
}

async fn call(env: &Env, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let out = env.router.handle(http(method, path, body)).await;
    let status = out["statusCode"].as_u64().expect("status") as u16;
    let body: Value = serde_json::from_str(out["body"].as_str().expect("body")).expect("JSON body");
    (status, body)
}

fn flow() -> Value {
    json!({"spec_version": 1, "name": "etl", "parameters": {"day": "mon"}, "tasks": [
        {"id": "a", "handler": "sum", "args": {"add": 1}},
        {"id": "b", "handler": "sum", "args": {"add": 2}, "depends_on": ["a"]},
        {"id": "c", "handler": "echo", "depends_on": ["b"]}
    ]})
}

async fn deploy(env: &Env) {
    let (status, body) = call(
        env,
        "PUT",
        "/deployments/etl",
        Some(json!({"flow": flow()})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_trigger_writes_the_run_dispatches_it_and_answers_202() {
    let env = env();
    deploy(&env).await;
    let (status, body) = call(
        &env,
        "POST",
        "/deployments/etl/runs",
        Some(json!({"parameters": {"day": "tue"}})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body["status"], "pending",
        "the router never runs the flow itself"
    );
    assert_eq!(
        (body["tier"].as_str(), body["backend"].as_str()),
        (Some("micro"), Some("lambda"))
    );
    assert_eq!(body["decided_by"], "rule:default");
    let run_id = body["run_id"].as_str().expect("run id").to_string();
    assert_eq!(
        *env.dispatched.0.lock().expect("log"),
        std::slice::from_ref(&run_id)
    );
    let run = env.store.get_run(&run_id).await.expect("stored");
    assert_eq!(run.parameters["day"], "tue");
    assert_eq!(run.deployment.as_deref(), Some("etl"));
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_same_run_and_dispatches_once() {
    let env = env();
    deploy(&env).await;
    let body = json!({"idempotency_key": "nightly-2026-11-24"});
    let (_, first) = call(&env, "POST", "/deployments/etl/runs", Some(body.clone())).await;
    let (status, second) = call(&env, "POST", "/deployments/etl/runs", Some(body)).await;
    assert_eq!(status, 202);
    assert_eq!(first["run_id"], second["run_id"]);
    assert_eq!(second["created"], false);
    assert_eq!(env.dispatched.0.lock().expect("log").len(), 1);
}

#[tokio::test]
async fn tier_levels_come_from_request_deployment_and_environment() {
    let env = env();
    let (s, _) = call(
        &env,
        "PUT",
        "/environments/prod",
        Some(json!({"default_runtime_tier": "nano"})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, b) = call(
        &env,
        "PUT",
        "/deployments/etl",
        Some(json!({"flow": flow(), "environment": "prod"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (_, b) = call(&env, "POST", "/deployments/etl/runs", None).await;
    assert_eq!(
        (b["tier"].as_str(), b["decided_by"].as_str()),
        (Some("nano"), Some("environment"))
    );
    let (_, b) = call(
        &env,
        "POST",
        "/deployments/etl/runs",
        Some(json!({"runtime_tier": "micro"})),
    )
    .await;
    assert_eq!(
        (b["tier"].as_str(), b["decided_by"].as_str()),
        (Some("micro"), Some("request"))
    );
}

#[tokio::test]
async fn bad_input_gets_4xx_with_an_error_object_never_5xx() {
    let env = env();
    deploy(&env).await;
    let cases: Vec<(&str, &str, Option<Value>, u16, &str)> = vec![
        ("POST", "/deployments/nope/runs", None, 404, "not_found"),
        (
            "POST",
            "/deployments/etl/runs",
            Some(json!({"runtime_tier": "huge"})),
            422,
            "unknown_name",
        ),
        (
            "POST",
            "/deployments/etl/runs",
            Some(json!({"paramaters": {}})),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/deployments/etl/runs",
            Some(json!({"runtime_tier": "nano", "backend": "step_functions"})),
            422,
            "plan_refused",
        ),
        (
            "PUT",
            "/deployments/bad",
            Some(json!({"flow": {"spec_version": 1, "name": "x", "tasks": []}})),
            422,
            "invalid_flow",
        ),
        (
            "PUT",
            "/deployments/has space",
            Some(json!({"flow": flow()})),
            400,
            "bad_name",
        ),
        ("GET", "/runs/missing", None, 404, "not_found"),
        (
            "GET",
            "/deployments/etl/runs?limit=0",
            None,
            400,
            "bad_request",
        ),
        ("DELETE", "/deployments/etl", None, 404, "no_route"),
        ("GET", "/nowhere", None, 404, "no_route"),
    ];
    for (method, path, body, want, code) in cases {
        let (status, b) = call(&env, method, path, body).await;
        assert_eq!(
            (status, b["error"]["code"].as_str()),
            (want, Some(code)),
            "{method} {path}: {b}"
        );
        assert!(
            b["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let mut raw = http("POST", "/deployments/etl/runs", None);
    raw["body"] = json!("{not json");
    let out = env.router.handle(raw).await;
    assert_eq!(out["statusCode"], 400);
    let mut big = http("POST", "/plan", None);
    big["body"] = json!("x".repeat(2 * 1024 * 1024));
    assert_eq!(env.router.handle(big).await["statusCode"], 413);
}

#[tokio::test]
async fn an_invalid_flow_lists_its_problems() {
    let env = env();
    let bad = json!({"spec_version": 1, "name": "x", "tasks": [{"id": "a", "handler": "nope"}]});
    let (status, body) = call(&env, "PUT", "/deployments/x", Some(json!({"flow": bad}))).await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["problems"][0]["path"], "tasks[0].handler");
}

#[tokio::test]
async fn runs_are_read_listed_and_cancelled() {
    let env = env();
    deploy(&env).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, b) = call(&env, "POST", "/deployments/etl/runs", None).await;
        ids.push(b["run_id"].as_str().expect("id").to_string());
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let (s, page) = call(&env, "GET", "/deployments/etl/runs?limit=2", None).await;
    assert_eq!(s, 200);
    assert_eq!(page["runs"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["runs"][0]["run_id"], ids[2].as_str(), "newest first");
    let next = page["next"].as_str().expect("a next page");
    let (_, rest) = call(
        &env,
        "GET",
        &format!("/deployments/etl/runs?limit=2&next={next}"),
        None,
    )
    .await;
    assert_eq!(rest["runs"][0]["run_id"], ids[0].as_str());
    assert_eq!(rest["next"], Value::Null);

    let (s, run) = call(&env, "GET", &format!("/runs/{}", ids[0]), None).await;
    assert_eq!(s, 200);
    assert_eq!(run["tasks"].as_array().map(Vec::len), Some(3));
    let (s, c) = call(&env, "POST", &format!("/runs/{}/cancel", ids[0]), None).await;
    assert_eq!(
        (s, c["status"].as_str()),
        (200, Some("cancelled")),
        "a pending run is cancelled at once"
    );
}

#[tokio::test]
async fn plan_and_backends_answer_without_running_anything() {
    let env = env_with(
        Settings::from_lookup(|k| {
            (k == "DAGY_ECS_CLUSTER_ARN").then(|| "arn:aws:ecs:us-east-1:1:cluster/d".into())
        })
        .expect("settings"),
    );
    let (s, plan) = call(
        &env,
        "POST",
        "/plan",
        Some(json!({"flow": flow(), "runtime_tier": "large"})),
    )
    .await;
    assert_eq!(s, 200, "{plan}");
    assert_eq!(
        (plan["tier"].as_str(), plan["backend"].as_str()),
        (Some("large"), Some("ecs_fargate"))
    );
    let (_, b) = call(&env, "GET", "/backends", None).await;
    let names: Vec<&str> = b["backends"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|x| x["backend"].as_str())
        .collect();
    assert_eq!(names, ["lambda", "ecs_fargate"]);
    assert_eq!(b["backends"][1]["capabilities"]["max_memory_mb"], 122_880);
    assert_eq!(
        b["backends"][1]["dispatch"], false,
        "no ECS dispatcher in this build yet"
    );
    deploy(&env).await;
    let (s, r) = call(
        &env,
        "POST",
        "/deployments/etl/runs",
        Some(json!({"runtime_tier": "large"})),
    )
    .await;
    assert_eq!(
        (s, r["error"]["code"].as_str()),
        (422, Some("backend_unavailable"))
    );
    assert!(env.dispatched.0.lock().expect("log").is_empty());
}

#[tokio::test]
async fn a_schedule_triggers_its_deployment_once_per_event() {
    let env = env();
    deploy(&env).await;
    let input =
        json!({"deployment": "etl", "parameters": {"day": "wed"}, "time": "2026-11-24T02:00:00Z"});
    let first = env.router.handle(input.clone()).await;
    assert_eq!(first["statusCode"], 202, "{first}");
    let again = env.router.handle(input).await;
    assert_eq!(
        again["run_id"], first["run_id"],
        "a duplicate delivery makes no second run"
    );
    let envelope = json!({
        "version": "0", "id": "a1b2", "detail-type": "Scheduled Event", "source": "aws.events",
        "time": "2026-11-24T03:00:00Z", "resources": ["arn:aws:events:us-east-1:1:rule/etl"],
        "detail": {"deployment": "etl"}
    });
    let third = env.router.handle(envelope).await;
    assert_eq!(third["statusCode"], 202, "{third}");
    assert_ne!(third["run_id"], first["run_id"]);
    let nothing = env.router.handle(json!({"hello": "world"})).await;
    assert_eq!(nothing["statusCode"], 400);
}

#[tokio::test]
async fn direct_actions_do_what_the_routes_do() {
    let env = env();
    let out = env
        .router
        .handle(json!({"action": "put_deployment", "name": "etl", "flow": flow()}))
        .await;
    assert_eq!(out["statusCode"], 200, "{out}");
    let out = env
        .router
        .handle(json!({"action": "trigger", "deployment": "etl"}))
        .await;
    assert_eq!(out["statusCode"], 202, "{out}");
    assert!(out["status"].is_string(), "the run's status is kept: {out}");
    let id = out["run_id"].as_str().expect("id").to_string();
    let out = env
        .router
        .handle(json!({"action": "get_run", "run_id": id}))
        .await;
    assert_eq!(out["statusCode"], 200);
    assert_eq!(
        (out["run_id"].as_str(), out["status"].as_str()),
        (Some(id.as_str()), Some("pending")),
        "the run's own status, not the HTTP code: {out}"
    );
    let out = env.router.handle(json!({"action": "frobnicate"})).await;
    assert_eq!(
        (out["statusCode"].as_u64(), out["error"]["code"].as_str()),
        (Some(400), Some("unknown_action"))
    );
}

#[tokio::test]
async fn the_sweep_redispatches_runs_nobody_picked_up() {
    let env = env();
    deploy(&env).await;
    let (_, b) = call(&env, "POST", "/deployments/etl/runs", None).await;
    let out = env.router.handle(json!({"action": "sweep"})).await;
    assert_eq!(
        out["resumed"],
        json!([]),
        "within the dispatch grace nothing has lapsed"
    );
    let run_id = b["run_id"].as_str().expect("id");
    let lapsed = env
        .store
        .find_lapsed_runs(u64::MAX, 10)
        .await
        .expect("query");
    assert_eq!(lapsed.len(), 1);
    assert_eq!(lapsed[0].run_id, run_id);
}

/// Drives micro runs to the end: each dispatch is an executor invocation.
struct Loop {
    executor: Executor,
    queue: Mutex<Vec<String>>,
}

#[async_trait]
impl Dispatcher for Loop {
    fn backends(&self) -> Vec<BackendKind> {
        vec![BackendKind::Lambda]
    }
    async fn dispatch(&self, _backend: BackendKind, run_id: &str) -> Result<(), FunctionError> {
        self.queue.lock().expect("queue").push(run_id.to_string());
        Ok(())
    }
}

#[tokio::test]
async fn a_micro_run_goes_one_task_per_invocation_until_it_finishes() {
    let store = Arc::new(MemoryStore::new());
    let registry = Arc::new(dagy_handlers::registry());
    let looper = Arc::new(Loop {
        executor: Executor::new(store.clone(), registry.clone()),
        queue: Mutex::new(Vec::new()),
    });
    let dispatcher: Arc<dyn Dispatcher> = looper.clone();
    let router = Router::new(
        store.clone(),
        Settings::default(),
        dispatcher.clone(),
        registry,
    );
    router
        .handle(json!({"action": "put_deployment", "name": "etl", "flow": flow()}))
        .await;
    let out = router
        .handle(json!({"action": "trigger", "deployment": "etl"}))
        .await;
    let run_id = out["run_id"].as_str().expect("id").to_string();
    let mut invocations = Vec::new();
    loop {
        let next = looper.queue.lock().expect("queue").pop();
        let Some(next) = next else { break };
        let answer = executor_fn::handle(
            &looper.executor,
            &dispatcher,
            ExecutorEvent { run_id: next },
            dagy_store::now_ms() + 900_000,
        )
        .await
        .expect("invocation");
        invocations.push(answer["outcome"].as_str().unwrap_or_default().to_string());
        assert!(invocations.len() < 10, "the chain must end");
    }
    assert_eq!(invocations, ["continue", "continue", "finished"]);
    let snap = store.load_run(&run_id).await.expect("load");
    assert_eq!(snap.run.status, dagy_store::RunStatus::Completed);
    assert_eq!(snap.tasks[1].output_value(), Some(json!(3)));
}

#[tokio::test(start_paused = true)]
async fn the_invocation_deadline_keeps_a_margin_and_ignores_a_past_one() {
    use dagy_functions::executor_fn::{DEADLINE_MARGIN, invocation_deadline};
    let now = 1_800_000_000_000;
    let start = tokio::time::Instant::now();
    let deadline = invocation_deadline(now + 60_000, now).expect("a real deadline");
    assert_eq!(
        deadline - start,
        std::time::Duration::from_secs(60) - DEADLINE_MARGIN
    );
    assert_eq!(
        invocation_deadline(600_000, now),
        None,
        "a duration is not an epoch time"
    );
}
