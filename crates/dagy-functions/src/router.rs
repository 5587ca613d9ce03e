//! The router: one entry point for HTTP API requests, EventBridge schedules and direct
//! invocations. Each is turned into one operation; every operation answers with a status and a
//! JSON body, and never runs a flow itself.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use dagy_core::{
    BackendKind, Flow, FlowSpec, HandlerCatalog, PlanRequest, RuntimeTier, Settings, TierInputs,
};
use dagy_engine::{
    Executor, HandlerRegistry, NewRunRequest, ROUTER_OWNER, RunEnd, STATE_MACHINE_OWNER,
    SWEEP_OWNER,
};
use dagy_store::{
    DeploymentRecord, EnvironmentRecord, RunRecord, RunStatus, RunStore, StoreError, now_ms,
};

use crate::FunctionError;
use crate::dispatch::{Dispatcher, Execution, backend_of};
use crate::http::{self, Request, Response, ScheduledEvent};

/// Runs the sweep looks at per invocation.
pub const SWEEP_BATCH: usize = 100;
/// A Lambda-tier run that lapsed this long after its creation is timed out instead of resumed.
pub const LAMBDA_RUN_MAX_AGE_MS: u64 = 24 * 3600 * 1000;
/// Page size of a runs listing when the client names none.
pub const DEFAULT_PAGE: usize = 20;
/// Why the sweep ends a Lambda run nobody resumed.
const LAPSED: &str = "the run's executor stopped and it was not resumed within a day";

/// The router's state: the store, the registered backends and how to reach them, and the names
/// of the handlers the executors know. It holds no handlers: it never runs a task.
pub struct Router {
    store: Arc<dyn RunStore>,
    settings: Settings,
    dispatcher: Arc<dyn Dispatcher>,
    catalog: Arc<dyn HandlerCatalog + Send + Sync>,
    /// Writes the router's records (new runs, runs ended as their execution did); its registry
    /// is empty.
    recorder: Executor,
}

/// `POST /deployments/{name}/runs`, a schedule's input, or `{"action": "trigger"}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerBody {
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    runtime_tier: Option<String>,
    #[serde(default)]
    backend: Option<String>,
    #[serde(default)]
    idempotency_key: Option<String>,
    /// A custom Fargate size for an ECS run, instead of the tier's: `{cpu, memory_mb}`.
    #[serde(default)]
    resources: Option<ResourcesBody>,
}

/// A custom Fargate size, checked against AWS's valid combinations.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourcesBody {
    cpu: u32,
    memory_mb: u32,
}

/// `PUT /deployments/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeploymentBody {
    flow: Value,
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    default_runtime_tier: Option<String>,
    #[serde(default)]
    backend: Option<String>,
}

/// `PUT /environments/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvironmentBody {
    #[serde(default)]
    default_runtime_tier: Option<String>,
}

/// `POST /plan`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanBody {
    flow: Value,
    #[serde(default)]
    runtime_tier: Option<String>,
    #[serde(default)]
    deployment_tier: Option<String>,
    #[serde(default)]
    environment_tier: Option<String>,
    #[serde(default)]
    backend: Option<String>,
}

fn parse<T: for<'de> Deserialize<'de>>(value: Value) -> Result<T, Response> {
    serde_json::from_value(value).map_err(|e| Response::error(400, "bad_request", e.to_string()))
}

fn tier(value: Option<&str>, field: &str) -> Result<Option<RuntimeTier>, Response> {
    value
        .map(|v| {
            v.parse::<RuntimeTier>()
                .map_err(|e| Response::error(422, "unknown_name", format!("{field}: {e}")))
        })
        .transpose()
}

fn backend(value: Option<&str>) -> Result<Option<BackendKind>, Response> {
    value
        .map(|v| {
            v.parse::<BackendKind>()
                .map_err(|e| Response::error(422, "unknown_name", format!("backend: {e}")))
        })
        .transpose()
}

fn core_error(e: &dagy_core::Error) -> Response {
    let mut r = Response::error(422, e.code(), e.to_string());
    if !e.problems().is_empty() {
        r.body["error"]["problems"] = json!(e.problems());
    }
    r
}

fn store_error(e: &StoreError) -> Response {
    match e {
        StoreError::NotFound { .. } => Response::error(404, "not_found", e.to_string()),
        StoreError::Invalid(_) => Response::error(409, "conflict", e.to_string()),
        StoreError::TooLarge { .. } | StoreError::TooDeep { .. } => {
            Response::error(413, "too_large", e.to_string())
        }
        StoreError::Corrupt(_) => Response::error(500, "store_corrupt", e.to_string()),
        _ => Response::error(503, "store_unavailable", e.to_string()),
    }
}

type Answer = Result<Response, Response>;

impl Router {
    /// A router over `store`, with the backends `settings` registers and `dispatcher` reaches;
    /// flows are checked against `catalog`'s handler names.
    pub fn new(
        store: Arc<dyn RunStore>,
        settings: Settings,
        dispatcher: Arc<dyn Dispatcher>,
        catalog: Arc<dyn HandlerCatalog + Send + Sync>,
    ) -> Self {
        let recorder =
            Executor::new(store.clone(), Arc::new(HandlerRegistry::new())).with_owner(ROUTER_OWNER);
        Router {
            store,
            settings,
            dispatcher,
            catalog,
            recorder,
        }
    }

    /// Handles any event the router function receives and returns what the function answers.
    pub async fn handle(&self, event: Value) -> Value {
        if http::is_http_event(&event) {
            let response = match serde_json::from_value::<Request>(event) {
                Ok(request) => self.http(&request).await,
                Err(e) => {
                    Response::error(400, "bad_event", format!("not an HTTP API 2.0 event: {e}"))
                }
            };
            return serde_json::to_value(response.to_event()).unwrap_or_else(
                |e| json!({"statusCode": 500, "body": format!("cannot encode the response: {e}")}),
            );
        }
        let response = if event.get("action").is_some() {
            self.action(event).await
        } else {
            self.schedule(event).await
        };
        // The HTTP status beside the body's own fields, under the name an HTTP answer gives it:
        // a run's answer has a `status` of its own.
        let mut body = response.body;
        if let Value::Object(map) = &mut body {
            map.insert("statusCode".into(), json!(response.status));
        }
        body
    }

    /// An HTTP API request.
    pub async fn http(&self, request: &Request) -> Response {
        let method = request
            .request_context
            .http
            .method
            .as_str()
            .to_ascii_uppercase();
        let segments = http::segments(request);
        let answer = match (method.as_str(), segments.as_slice()) {
            ("POST", ["deployments", name, "runs"]) => match http::json_body(request) {
                Ok(body) => self.trigger(name, body).await,
                Err(r) => Err(r),
            },
            ("GET", ["deployments", name, "runs"]) => {
                let limit = http::query(request, "limit");
                self.list_runs(name, limit.as_deref(), http::query(request, "next"))
                    .await
            }
            ("GET", ["runs", id]) => self.get_run(id).await,
            ("GET", ["runs", id, "logs"]) => self.logs(id, http::query(request, "next")).await,
            ("POST", ["runs", id, "cancel"]) => self.cancel(id).await,
            ("PUT", ["deployments", name]) => match http::json_body(request) {
                Ok(body) => self.put_deployment(name, body).await,
                Err(r) => Err(r),
            },
            ("GET", ["deployments", name]) => self.get_deployment(name).await,
            ("PUT", ["environments", name]) => match http::json_body(request) {
                Ok(body) => self.put_environment(name, body).await,
                Err(r) => Err(r),
            },
            ("GET", ["environments", name]) => self.get_environment(name).await,
            ("POST", ["plan"]) => match http::json_body(request) {
                Ok(body) => self.plan(body),
                Err(r) => Err(r),
            },
            ("GET", ["backends"]) => Ok(self.backends()),
            _ => Err(Response::error(
                404,
                "no_route",
                format!(
                    "no route for {method} {}",
                    request.raw_path.as_deref().unwrap_or_default()
                ),
            )),
        };
        answer.unwrap_or_else(|r| r)
    }

    /// A direct invocation: `{"action": "...", ...}`, the same operations as the routes.
    pub async fn action(&self, event: Value) -> Response {
        let mut event = match event {
            Value::Object(map) => map,
            _ => {
                return Response::error(
                    400,
                    "bad_event",
                    "a direct invocation is a JSON object".into(),
                );
            }
        };
        let action = event
            .remove("action")
            .and_then(|a| a.as_str().map(str::to_string))
            .unwrap_or_default();
        let answer = match action.as_str() {
            "trigger" => match take(&mut event, "deployment") {
                Some(name) => self.trigger(&name, Value::Object(event)).await,
                None => Err(missing("deployment")),
            },
            "get_run" => match take(&mut event, "run_id") {
                Some(id) => self.get_run(&id).await,
                None => Err(missing("run_id")),
            },
            "logs" => match take(&mut event, "run_id") {
                Some(id) => self.logs(&id, take(&mut event, "next")).await,
                None => Err(missing("run_id")),
            },
            "cancel" => match take(&mut event, "run_id") {
                Some(id) => self.cancel(&id).await,
                None => Err(missing("run_id")),
            },
            "list_runs" => match take(&mut event, "deployment") {
                Some(name) => {
                    let limit = event.get("limit").map(|v| v.to_string());
                    let next = take(&mut event, "next");
                    self.list_runs(&name, limit.as_deref(), next).await
                }
                None => Err(missing("deployment")),
            },
            "put_deployment" => match take(&mut event, "name") {
                Some(name) => self.put_deployment(&name, Value::Object(event)).await,
                None => Err(missing("name")),
            },
            "get_deployment" => match take(&mut event, "name") {
                Some(name) => self.get_deployment(&name).await,
                None => Err(missing("name")),
            },
            "put_environment" => match take(&mut event, "name") {
                Some(name) => self.put_environment(&name, Value::Object(event)).await,
                None => Err(missing("name")),
            },
            "get_environment" => match take(&mut event, "name") {
                Some(name) => self.get_environment(&name).await,
                None => Err(missing("name")),
            },
            "plan" => self.plan(Value::Object(event)),
            "backends" => Ok(self.backends()),
            "sweep" => self.sweep().await,
            other => Err(Response::error(
                400,
                "unknown_action",
                format!(
                    "unknown action \"{other}\"; one of: trigger, get_run, logs, cancel, list_runs, \
                     put_deployment, get_deployment, put_environment, get_environment, plan, \
                     backends, sweep"
                ),
            )),
        };
        answer.unwrap_or_else(|r| r)
    }

    /// An EventBridge event: a rule's input `{"deployment": ..., "parameters": ...}`, or a
    /// scheduled-event envelope whose `detail` says the same. The event's `id` (or `time`)
    /// makes the trigger idempotent, so a schedule delivered twice starts one run.
    pub async fn schedule(&self, event: Value) -> Response {
        let (input, envelope_key) = if http::is_eventbridge_event(&event) {
            let envelope: ScheduledEvent = match serde_json::from_value(event) {
                Ok(envelope) => envelope,
                Err(e) => {
                    return Response::error(
                        400,
                        "bad_event",
                        format!("not an EventBridge event: {e}"),
                    );
                }
            };
            let key = envelope
                .id
                .or_else(|| envelope.time.map(|t| t.to_rfc3339()))
                .map(|id| format!("schedule:{id}"));
            let input = match envelope.detail {
                Value::Null => json!({}),
                detail => detail,
            };
            (input, key)
        } else {
            (event, None)
        };
        let Value::Object(mut input) = input else {
            return Response::error(
                400,
                "bad_event",
                "a schedule's input is a JSON object".into(),
            );
        };
        let Some(deployment) = input
            .remove("deployment")
            .and_then(|d| d.as_str().map(str::to_string))
        else {
            return Response::error(
                400,
                "bad_event",
                "not an HTTP request, a direct action, or a schedule naming a \"deployment\""
                    .into(),
            );
        };
        let time_key = input
            .remove("time")
            .and_then(|t| t.as_str().map(|t| format!("schedule:{deployment}:{t}")));
        if !input.contains_key("idempotency_key")
            && let Some(key) = envelope_key.or(time_key)
        {
            input.insert("idempotency_key".into(), json!(key));
        }
        self.trigger(&deployment, Value::Object(input))
            .await
            .unwrap_or_else(|r| r)
    }

    async fn trigger(&self, name: &str, body: Value) -> Answer {
        let body: TriggerBody = parse(body)?;
        let deployment = self
            .store
            .get_deployment(name)
            .await
            .map_err(|e| store_error(&e))?
            .ok_or_else(|| {
                Response::error(404, "not_found", format!("no deployment named {name}"))
            })?;
        let environment = self.environment_of(&deployment).await?;
        let flow = deployment
            .flow
            .clone()
            .validate(Some(self.catalog.as_ref()))
            .map_err(|e| core_error(&e))?;
        let request = PlanRequest {
            tiers: TierInputs {
                request: tier(body.runtime_tier.as_deref(), "runtime_tier")?,
                deployment: deployment.default_runtime_tier,
                environment: environment.and_then(|e| e.default_runtime_tier),
                auto_tier: self.settings.auto_tier,
            },
            backend: backend(body.backend.as_deref())?.or(deployment.backend),
        };
        let mut plan =
            dagy_core::plan(&flow, &request, &self.settings).map_err(|e| core_error(&e))?;
        if let Some(custom) = &body.resources {
            plan.resources = Some(custom_size(&flow, &plan, custom)?);
        }
        if !self.dispatcher.backends().contains(&plan.backend) {
            return Err(Response::error(
                422,
                "backend_unavailable",
                format!(
                    "the plan chose backend {}, which this router cannot start runs on yet; \
                     ask for another backend or tier",
                    plan.backend
                ),
            ));
        }
        let executor = &self.recorder;
        let created = executor
            .create_run(
                &flow,
                NewRunRequest {
                    run_id: None,
                    parameters: body.parameters,
                    plan: Some(plan.clone()),
                    deployment: Some(name.to_string()),
                    idempotency_key: body.idempotency_key,
                },
            )
            .await
            .map_err(|e| match e {
                dagy_engine::EngineError::Store(s) => store_error(&s),
                other => Response::error(503, "engine", other.to_string()),
            })?;
        let run = created.run;
        if created.created {
            // A failed dispatch leaves the run pending: the sweep dispatches it again.
            if let Err(e) = self.dispatcher.dispatch(plan.backend, &run.run_id).await {
                tracing::warn!(run_id = run.run_id, error = %e, "dispatch failed; the sweep will retry");
            }
        }
        Ok(accepted(&run, created.created))
    }

    /// The environment a deployment names, if it names one (422 when it does not exist).
    async fn environment_of(
        &self,
        deployment: &dagy_store::DeploymentRecord,
    ) -> Result<Option<dagy_store::EnvironmentRecord>, Response> {
        let Some(env) = &deployment.environment else {
            return Ok(None);
        };
        let name = &deployment.name;
        let found = self
            .store
            .get_environment(env)
            .await
            .map_err(|e| store_error(&e))?;
        found.map(Some).ok_or_else(|| {
            Response::error(
                422,
                "unknown_environment",
                format!(
                    "deployment {name} names environment {env}, which does not exist; PUT \
                     /environments/{env} first"
                ),
            )
        })
    }

    async fn get_run(&self, id: &str) -> Answer {
        let run = self.store.get_run(id).await.map_err(|e| store_error(&e))?;
        if let Err(e) = self.catch_up(&run).await {
            tracing::warn!(run_id = id, error = %e, "could not compare the run with its execution");
        }
        let snapshot = self.store.load_run(id).await.map_err(|e| store_error(&e))?;
        Ok(Response::json(200, snapshot.to_json()))
    }

    /// A page of the run's log: `{run_id, events: [{timestamp, message}], next}`; pass `next`
    /// back to read on (it is there also when nothing new was logged yet).
    async fn logs(&self, id: &str, next: Option<String>) -> Answer {
        let run = self.store.get_run(id).await.map_err(|e| store_error(&e))?;
        match self.dispatcher.logs(&run, next.as_deref()).await {
            Ok(page) => Ok(Response::json(
                200,
                json!({
                    "run_id": id,
                    "events": page.events.iter().map(|(t, m)| json!({"timestamp": t, "message": m})).collect::<Vec<_>>(),
                    "next": page.next,
                }),
            )),
            Err(e @ FunctionError::LogsUnavailable(_)) => {
                Err(Response::error(422, "logs_unavailable", e.to_string()))
            }
            Err(e) => Err(Response::error(503, "logs", e.to_string())),
        }
    }

    /// Brings a run that is not final in step with its backend's execution, when that ended
    /// without recording it (a Step Functions execution stopped or timed out). Returns what
    /// the backend said of the execution.
    async fn catch_up(&self, run: &RunRecord) -> Result<Execution, FunctionError> {
        if run.status.is_final() || backend_of(run) == BackendKind::Lambda {
            return Ok(Execution::Unknown);
        }
        let execution = self.dispatcher.execution(run).await?;
        if let Execution::Stopped(why) = &execution {
            self.recorder
                .end_run(&run.run_id, RunEnd::Abandoned(why))
                .await?;
            tracing::warn!(
                run_id = run.run_id,
                why,
                "the run's worker stopped without recording it"
            );
            return Ok(execution);
        }
        let Execution::Ended(end) = &execution else {
            return Ok(execution);
        };
        let status = self
            .recorder
            .clone()
            .with_owner(STATE_MACHINE_OWNER)
            .end_state_machine_run(&run.run_id, "router", end)
            .await?;
        tracing::info!(run_id = run.run_id, status = %status, "run ended as its execution did");
        Ok(execution)
    }

    async fn cancel(&self, id: &str) -> Answer {
        let run = self
            .store
            .request_cancel(id, now_ms())
            .await
            .map_err(|e| store_error(&e))?;
        if run.status.is_final() && !run.cancel_requested {
            return Err(Response::error(
                409,
                "already_finished",
                format!("run {id} already finished as {}", run.status),
            ));
        }
        let mut run = run;
        // A backend that can stop the run at once (Step Functions) does, even for a run the
        // cancel already ended (no task had started); its last state never runs, so a run
        // still open is ended here.
        if run.cancel_requested {
            match self.dispatcher.stop(&run).await {
                Ok(true) if !run.status.is_final() => {
                    let stopped = dagy_engine::StateMachineEnd::Failed {
                        error: "DagyCancelled".into(),
                        cause: "the execution was stopped: the run was cancelled on request".into(),
                    };
                    if let Err(e) = self
                        .recorder
                        .clone()
                        .with_owner(STATE_MACHINE_OWNER)
                        .end_state_machine_run(id, "router", &stopped)
                        .await
                    {
                        tracing::warn!(run_id = id, error = %e, "stopped; the run ends at its next read");
                    }
                    run = self.store.get_run(id).await.map_err(|e| store_error(&e))?;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(run_id = id, error = %e, "could not stop the execution; it stops at its next task");
                }
            }
        }
        let status = if run.status == RunStatus::Cancelled {
            200
        } else {
            202
        };
        Ok(Response::json(
            status,
            json!({"run_id": run.run_id, "status": run.status, "cancel_requested": run.cancel_requested}),
        ))
    }

    async fn list_runs(&self, name: &str, limit: Option<&str>, next: Option<String>) -> Answer {
        let limit = match limit {
            None => DEFAULT_PAGE,
            Some(l) => l
                .trim_matches('"')
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| {
                    Response::error(
                        400,
                        "bad_request",
                        format!("limit must be 1 to 1000, got {l}"),
                    )
                })?,
        };
        let page = self
            .store
            .list_runs(name, limit, next.as_deref())
            .await
            .map_err(|e| store_error(&e))?;
        Ok(Response::json(200, json!(page)))
    }

    async fn put_deployment(&self, name: &str, body: Value) -> Answer {
        check_name(name)?;
        let body: DeploymentBody = parse(body)?;
        let flow: Flow = Flow::from_value(&body.flow, Some(self.catalog.as_ref()))
            .map_err(|e| core_error(&e))?;
        let record = DeploymentRecord {
            name: name.to_string(),
            flow: FlowSpec::clone(flow.spec()),
            environment: body.environment,
            default_runtime_tier: tier(
                body.default_runtime_tier.as_deref(),
                "default_runtime_tier",
            )?,
            backend: backend(body.backend.as_deref())?,
            version: 0,
            updated_at_ms: now_ms(),
        };
        let saved = self
            .store
            .put_deployment(record)
            .await
            .map_err(|e| store_error(&e))?;
        Ok(Response::json(200, deployment_json(&saved)))
    }

    async fn get_deployment(&self, name: &str) -> Answer {
        match self
            .store
            .get_deployment(name)
            .await
            .map_err(|e| store_error(&e))?
        {
            Some(d) => Ok(Response::json(200, deployment_json(&d))),
            None => Err(Response::error(
                404,
                "not_found",
                format!("no deployment named {name}"),
            )),
        }
    }

    async fn put_environment(&self, name: &str, body: Value) -> Answer {
        check_name(name)?;
        let body: EnvironmentBody = parse(body)?;
        let record = EnvironmentRecord {
            name: name.to_string(),
            default_runtime_tier: tier(
                body.default_runtime_tier.as_deref(),
                "default_runtime_tier",
            )?,
            updated_at_ms: now_ms(),
        };
        let saved = self
            .store
            .put_environment(record)
            .await
            .map_err(|e| store_error(&e))?;
        Ok(Response::json(200, json!(saved)))
    }

    async fn get_environment(&self, name: &str) -> Answer {
        match self
            .store
            .get_environment(name)
            .await
            .map_err(|e| store_error(&e))?
        {
            Some(e) => Ok(Response::json(200, json!(e))),
            None => Err(Response::error(
                404,
                "not_found",
                format!("no environment named {name}"),
            )),
        }
    }

    fn plan(&self, body: Value) -> Answer {
        let body: PlanBody = parse(body)?;
        let flow = Flow::from_value(&body.flow, Some(self.catalog.as_ref()))
            .map_err(|e| core_error(&e))?;
        let request = PlanRequest {
            tiers: TierInputs {
                request: tier(body.runtime_tier.as_deref(), "runtime_tier")?,
                deployment: tier(body.deployment_tier.as_deref(), "deployment_tier")?,
                environment: tier(body.environment_tier.as_deref(), "environment_tier")?,
                auto_tier: self.settings.auto_tier,
            },
            backend: backend(body.backend.as_deref())?,
        };
        let plan = dagy_core::plan(&flow, &request, &self.settings).map_err(|e| core_error(&e))?;
        let mut out = json!(plan);
        out["flow"] = json!(flow.name());
        Ok(Response::json(200, out))
    }

    fn backends(&self) -> Response {
        let available = self.dispatcher.backends();
        let list: Vec<Value> = self
            .settings
            .registered()
            .into_iter()
            .map(|b| {
                json!({
                    "backend": b,
                    "capabilities": b.capabilities(),
                    "dispatch": available.contains(&b),
                })
            })
            .collect();
        Response::json(
            200,
            json!({"backends": list, "auto_tier": self.settings.auto_tier}),
        )
    }

    /// Finds runs whose lease lapsed (or that nobody picked up) and dispatches them again, so
    /// an executor resumes them; a Lambda-tier run lapsed for more than a day is timed out.
    async fn sweep(&self) -> Answer {
        let now = now_ms();
        let lapsed = self
            .store
            .find_lapsed_runs(now, SWEEP_BATCH)
            .await
            .map_err(|e| store_error(&e))?;
        let mut resumed = Vec::new();
        let mut timed_out = Vec::new();
        let mut failed = Vec::new();
        let mut ended = Vec::new();
        let mut running = Vec::new();
        for run in lapsed {
            let backend = backend_of(&run);
            // An execution that ended without recording it ends its run; one that runs is
            // left alone (between its tasks no invocation holds the lease); one that never
            // started is started.
            match self.catch_up(&run).await {
                Ok(Execution::Ended(_) | Execution::Stopped(_)) => {
                    ended.push(run.run_id);
                    continue;
                }
                Ok(Execution::Running) => {
                    running.push(run.run_id);
                    continue;
                }
                Ok(Execution::Missing | Execution::Unknown) => {}
                Err(e) => {
                    failed.push(json!({"run_id": run.run_id, "error": e.to_string()}));
                    continue;
                }
            }
            if now.saturating_sub(run.created_at_ms) > LAMBDA_RUN_MAX_AGE_MS
                && backend == BackendKind::Lambda
            {
                let sweeper = self.recorder.clone().with_owner(SWEEP_OWNER);
                match sweeper.end_run(&run.run_id, RunEnd::Lapsed(LAPSED)).await {
                    Ok(Some(_)) => timed_out.push(run.run_id),
                    Ok(None) => {} // resumed or ended meanwhile
                    Err(e) => failed.push(json!({"run_id": run.run_id, "error": e.to_string()})),
                }
                continue;
            }
            match self.dispatcher.dispatch(backend, &run.run_id).await {
                Ok(()) => resumed.push(run.run_id),
                Err(e) => failed.push(json!({"run_id": run.run_id, "error": e.to_string()})),
            }
        }
        Ok(Response::json(
            200,
            json!({"resumed": resumed, "timed_out": timed_out, "ended": ended, "running": running, "failed": failed}),
        ))
    }
}

/// A trigger's own Fargate size, checked: a valid pair, for an ECS run, and enough for every
/// task's `memory_mb`.
fn custom_size(
    flow: &Flow,
    plan: &dagy_core::Plan,
    custom: &ResourcesBody,
) -> Result<dagy_core::FargateSize, Response> {
    let size = dagy_core::FargateSize::new(custom.cpu, custom.memory_mb)
        .map_err(|e| Response::error(400, "bad_request", e.to_string()))?;
    if plan.backend != BackendKind::EcsFargate {
        return Err(Response::error(
            422,
            "resources_not_applicable",
            format!(
                "resources size an ECS Fargate run, but this run goes to {}; ask for a small, \
                 medium, large or xlarge tier",
                plan.backend
            ),
        ));
    }
    if let Some(task) = flow
        .tasks()
        .iter()
        .find(|t| t.memory_mb.is_some_and(|mb| mb > u64::from(size.memory_mb)))
    {
        return Err(Response::error(
            422,
            "resources_too_small",
            format!(
                "task {} asks for {} MB, more than the {} MB asked for the run",
                task.id,
                task.memory_mb.unwrap_or_default(),
                size.memory_mb
            ),
        ));
    }
    Ok(size)
}

/// The 202 answer to a trigger: the run and the decision it records.
fn accepted(run: &RunRecord, created: bool) -> Response {
    let record = run.plan.as_ref();
    Response::json(
        202,
        json!({
            "run_id": run.run_id,
            "status": run.status,
            "created": created,
            "tier": record.map(|p| p.tier),
            "backend": record.map(|p| p.backend),
            "decided_by": record.map(|p| p.decided_by.clone()),
            "reason": record.map(|p| p.reason.clone()),
            "fallback": record.and_then(|p| p.fallback.clone()),
        }),
    )
}

fn take(event: &mut Map<String, Value>, key: &str) -> Option<String> {
    event
        .remove(key)
        .and_then(|v| v.as_str().map(str::to_string))
}

fn missing(field: &str) -> Response {
    Response::error(400, "bad_request", format!("the action needs \"{field}\""))
}

fn check_name(name: &str) -> Result<(), Response> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Response::error(
            400,
            "bad_name",
            format!("\"{name}\": names use 1 to 128 letters, digits, '-', '_' or '.'"),
        ))
    }
}

fn deployment_json(d: &DeploymentRecord) -> Value {
    json!({
        "name": d.name,
        "flow": d.flow,
        "environment": d.environment,
        "default_runtime_tier": d.default_runtime_tier,
        "backend": d.backend,
        "version": d.version,
        "updated_at_ms": d.updated_at_ms,
    })
}
