//! The functions under cargo-lambda's runtime emulator (what `sam local invoke` does), against
//! moto's DynamoDB over loopback, with no mock in the path: every sample event in `events/` is
//! invoked with `cargo lambda invoke`; a trigger starts a micro run whose executor invokes itself
//! through the Lambda Invoke API until the run completes; a cancel stops a micro run at its next
//! task boundary.
//!
//! The emulator runs an `Event` (asynchronous) invocation synchronously, one at a time, so an
//! executor invoking itself would wait on itself. Lambda answers such an invocation with 202 at
//! once and runs it later; [`async_invoke_proxy`] does the same in front of the emulator, and the
//! functions reach it through `AWS_ENDPOINT_URL_LAMBDA`.

use dagy_testkit as support;
use dagy_testkit::{Emulator, EmulatorOptions, workspace};
use support::emulator::path_with_venv;
use support::http::read_request;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Sends a request to the emulator and returns its raw answer.
async fn forward(port: u16, head: &str, body: &[u8]) -> Vec<u8> {
    let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            .to_vec();
    };
    let mut head: String = head
        .lines()
        .filter(|l| {
            let lower = l.to_ascii_lowercase();
            !lower.starts_with("connection:")
                && !lower.starts_with("x-amz-invocation-type:")
                && !l.is_empty()
        })
        .map(|l| format!("{l}\r\n"))
        .collect();
    head.push_str("connection: close\r\n\r\n");
    let _ = upstream.write_all(head.as_bytes()).await;
    let _ = upstream.write_all(body).await;
    let mut answer = Vec::new();
    let _ = upstream.read_to_end(&mut answer).await;
    answer
}

/// Lambda's asynchronous invocation: an `Event` request is answered 202 at once and then run
/// on the emulator; any other request's client is handed back to be answered.
async fn event_invocation(
    mut client: TcpStream,
    head: &str,
    body: &[u8],
    emulator_port: u16,
) -> Option<TcpStream> {
    let asynchronous = support::http::header(head, "x-amz-invocation-type")
        .is_some_and(|t| t.eq_ignore_ascii_case("event"));
    if !asynchronous {
        return Some(client);
    }
    let _ = client
        .write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .await;
    drop(client);
    forward(emulator_port, head, body).await;
    None
}

/// The Lambda Invoke API in front of the emulator, with Lambda's asynchronous semantics.
async fn async_invoke_proxy(emulator_port: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Some((head, body)) = read_request(&mut client).await else {
                    return;
                };
                let Some(mut client) = event_invocation(client, &head, &body, emulator_port).await
                else {
                    return;
                };
                let answer = forward(emulator_port, &head, &body).await;
                let _ = client.write_all(&answer).await;
            });
        }
    });
    port
}

/// The emulator on a free port, its functions on `table` at the shared moto, with an
/// asynchronous-invocation proxy in front for the executor's self-invocations.
async fn start(table: &str) -> Emulator {
    start_on(
        EmulatorOptions::new(table, &support::endpoint()),
        Vec::new(),
    )
    .await
}

/// The emulator as `options` say, with `extra` variables (`NAME=value`) besides the usual ones,
/// and the asynchronous-invocation proxy as its functions' Lambda endpoint.
async fn start_on(mut options: EmulatorOptions, extra: Vec<String>) -> Emulator {
    let proxy = async_invoke_proxy(options.port).await;
    options.lambda = Some(format!("http://127.0.0.1:{proxy}"));
    // Several instances per function, as Lambda runs a Parallel state's branches side by side.
    options.concurrency = 4;
    options.extra = extra;
    Emulator::start(options).await
}

/// `cargo lambda invoke FUNCTION --data-file FILE`, as a user would.
fn invoke_file(emulator: &Emulator, function: &str, file: &Path) -> Value {
    let out = Command::new("cargo")
        .args([
            "lambda",
            "invoke",
            function,
            "--invoke-address",
            "127.0.0.1",
        ])
        .args(["--invoke-port", &emulator.port.to_string(), "--data-file"])
        .arg(file)
        .current_dir(workspace())
        .env("PATH", path_with_venv())
        .output()
        .expect("cargo lambda invoke");
    assert!(
        out.status.success(),
        "invoking {function} with {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON answer")
}

fn invoke(emulator: &Emulator, function: &str, event: &Value) -> Value {
    let file = tempfile_with(event);
    invoke_file(emulator, function, &file)
}

fn tempfile_with(event: &Value) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "dagy-event-{}-{}.json",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::write(&path, event.to_string()).expect("write event");
    path
}

fn event(name: &str, run_id: &str) -> Value {
    let text =
        std::fs::read_to_string(workspace().join("events").join(name)).expect("sample event");
    serde_json::from_str(&text.replace("RUN_ID", run_id)).expect("JSON event")
}

fn http_answer(answer: &Value) -> (u64, Value) {
    let status = answer["statusCode"].as_u64().expect("statusCode");
    let body = serde_json::from_str(answer["body"].as_str().expect("body")).expect("JSON body");
    (status, body)
}

async fn wait_for_run(emulator: &Emulator, run_id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, run) = http_answer(&invoke(
            emulator,
            "dagy-router",
            &event("http-get-run.json", run_id),
        ));
        assert_eq!(status, 200, "{run}");
        if done(&run) {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} did not get there: {run}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_event_runs_through_the_emulator_and_a_micro_run_completes() {
    let emulator = start(&format!("dagy-emulator-{}", std::process::id())).await;

    // Set-up routes first, then every HTTP route of the router.
    for (name, want) in [
        ("http-put-environment.json", 200),
        ("http-get-environment.json", 200),
        ("http-put-deployment.json", 200),
        ("http-get-deployment.json", 200),
        ("http-plan.json", 200),
        ("http-backends.json", 200),
    ] {
        let (status, body) = http_answer(&invoke_file(
            &emulator,
            "dagy-router",
            &workspace().join("events").join(name),
        ));
        assert_eq!(status, want, "{name}: {body}");
    }

    // The trigger: 202 at once, then the executor chain runs the micro run to the end.
    let (status, accepted) = http_answer(&invoke(
        &emulator,
        "dagy-router",
        &event("http-trigger-run.json", ""),
    ));
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(
        (accepted["tier"].as_str(), accepted["backend"].as_str()),
        (Some("micro"), Some("lambda"))
    );
    let run_id = accepted["run_id"].as_str().expect("run id").to_string();
    let run = wait_for_run(&emulator, &run_id, |r| {
        r["status"] == "completed" || r["status"] == "failed"
    })
    .await;
    assert_eq!(run["status"], "completed", "{run}");
    for task in run["tasks"].as_array().expect("tasks") {
        assert_eq!(
            (task["status"].as_str(), task["attempts"].as_u64()),
            (Some("completed"), Some(1)),
            "{task}"
        );
    }
    assert_eq!(run["tasks"][2]["output"], 42);
    assert_eq!(run["parameters"]["greeting"], "hi");

    // The same idempotency key: the same run.
    let (_, again) = http_answer(&invoke(
        &emulator,
        "dagy-router",
        &event("http-trigger-run.json", ""),
    ));
    assert_eq!(again["run_id"], run_id.as_str());

    let (status, body) = http_answer(&invoke(
        &emulator,
        "dagy-router",
        &event("http-run-logs.json", &run_id),
    ));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("logs_unavailable")),
        "a Lambda run keeps no log Dagy reads: {body}"
    );

    let (status, page) = http_answer(&invoke(
        &emulator,
        "dagy-router",
        &event("http-list-runs.json", ""),
    ));
    assert_eq!(status, 200);
    assert_eq!(page["runs"][0]["run_id"], run_id.as_str());
    let (status, body) = http_answer(&invoke(
        &emulator,
        "dagy-router",
        &event("http-cancel-run.json", &run_id),
    ));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("already_finished"))
    );

    // Schedules and direct actions.
    for name in [
        "schedule-input.json",
        "schedule-envelope.json",
        "action-trigger.json",
    ] {
        let answer = invoke(&emulator, "dagy-router", &event(name, ""));
        assert_eq!(answer["statusCode"], 202, "{name}: {answer}");
    }
    let answer = invoke(
        &emulator,
        "dagy-router",
        &event("action-get-run.json", &run_id),
    );
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let answer = invoke(&emulator, "dagy-router", &event("action-backends.json", ""));
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let answer = invoke(&emulator, "dagy-router", &event("action-sweep.json", ""));
    assert_eq!(answer["statusCode"], 200, "{answer}");
    assert_eq!(answer["failed"], json!([]));

    // The functions log JSON lines that carry the run id and task ids.
    let log = std::fs::read_to_string(&emulator.log).expect("emulator log");
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| {
            l.find('{')
                .and_then(|i| serde_json::from_str::<Value>(&l[i..]).ok())
        })
        .collect();
    let mentions = |key: &str, value: &str| {
        lines
            .iter()
            .any(|l| l.to_string().contains(&format!("\"{key}\":\"{value}\"")))
    };
    assert!(
        mentions("run_id", &run_id),
        "no JSON log line with run_id {run_id}:\n{log}"
    );
    assert!(
        mentions("task_id", "answer"),
        "no JSON log line with task_id answer"
    );

    // A `lambda:` task invokes another function through the Lambda API: here the router,
    // whose answer to an event that is not its own becomes the task's output.
    let flow = json!({"spec_version": 1, "name": "remote", "tasks": [
        {"id": "ask", "handler": "lambda:dagy-router", "args": {"note": "from a task"}}
    ]});
    let remote_id = deploy_and_trigger(&emulator, "remote", &flow, "nano");
    let remote = wait_for_run(&emulator, &remote_id, |r| {
        r["status"] == "completed" || r["status"] == "failed"
    })
    .await;
    assert_eq!(remote["status"], "completed", "{remote}");
    assert_eq!(
        remote["tasks"][0]["output"]["error"]["code"], "bad_event",
        "{remote}"
    );

    // The executor's own event on a finished run does nothing twice.
    let answer = invoke(&emulator, "dagy-executor", &event("executor.json", &run_id));
    assert_eq!(answer["outcome"], "finished", "{answer}");
}

/// Deploys `flow` as `name` with `tier` through the router, triggers it, returns the run id.
fn deploy_and_trigger(emulator: &Emulator, name: &str, flow: &Value, tier: &str) -> String {
    let answer = invoke(
        emulator,
        "dagy-router",
        &json!({"action": "put_deployment", "name": name, "flow": flow, "default_runtime_tier": tier}),
    );
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let answer = invoke(
        emulator,
        "dagy-router",
        &json!({"action": "trigger", "deployment": name}),
    );
    answer["run_id"].as_str().expect("run id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_stops_a_micro_run_at_its_next_task_boundary() {
    let emulator = start(&format!("dagy-emulator-cancel-{}", std::process::id())).await;
    let tasks: Vec<Value> = (1..=5)
        .map(|i| {
            let mut t =
                json!({"id": format!("t{i}"), "handler": "sleep", "args": {"seconds": 1.0}});
            if i > 1 {
                t["depends_on"] = json!([format!("t{}", i - 1)]);
            }
            t
        })
        .collect();
    let flow = json!({"spec_version": 1, "name": "slow", "tasks": tasks});
    let run_id = deploy_and_trigger(&emulator, "slow", &flow, "micro");
    wait_for_run(&emulator, &run_id, |r| {
        r["tasks"][0]["status"] == "completed"
    })
    .await;
    let (status, body) = http_answer(&invoke(
        &emulator,
        "dagy-router",
        &event("http-cancel-run.json", &run_id),
    ));
    assert_eq!(status, 202, "{body}");
    let run = wait_for_run(&emulator, &run_id, |r| {
        r["status"] == "cancelled" || r["status"] == "completed"
    })
    .await;
    assert_eq!(run["status"], "cancelled", "{run}");
    assert_eq!(run["tasks"][0]["status"], "completed");
    // The task in flight when the cancel came finishes; no task starts after it.
    let tasks = run["tasks"].as_array().expect("tasks");
    let first_cancelled = tasks
        .iter()
        .position(|t| t["status"] == "cancelled")
        .expect("some task was cancelled");
    for (i, task) in tasks.iter().enumerate() {
        if i < first_cancelled {
            assert_eq!(task["status"], "completed", "{run}");
        } else {
            assert_eq!(
                (task["status"].as_str(), task["attempts"].as_u64()),
                (Some("cancelled"), Some(0)),
                "{run}"
            );
        }
    }
    assert!(first_cancelled <= 3, "the cancel took effect late: {run}");
}

/// Invokes the task-executor with `event` and checks that it fails with `error_type`;
/// returns its answer.
async fn refused_with(emulator: &Emulator, event: &Value, error_type: &str) -> Value {
    let (status, answer) = invoke_api(emulator, "dagy-task-executor", event).await;
    assert_eq!(
        (status, answer["errorType"].as_str()),
        (500, Some(error_type)),
        "{answer}"
    );
    answer
}

/// Calls the emulator's Lambda Invoke API (as Step Functions calls the task-executor) and
/// returns the HTTP status with the JSON answer: a function error is a 500 with
/// `{errorType, errorMessage}`.
async fn invoke_api(emulator: &Emulator, function: &str, event: &Value) -> (u16, Value) {
    let body = event.to_string();
    let head = format!(
        "POST /2015-03-31/functions/{function}/invocations HTTP/1.1\r\nhost: 127.0.0.1\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    let raw = forward(emulator.port, &head, body.as_bytes()).await;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, serde_json::from_str(body).expect("a JSON answer"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_executor_runs_one_task_per_invocation_and_ends_the_run() {
    let table = format!("dagy-emulator-sfn-{}", std::process::id());
    let emulator = start(&table).await;
    let store = std::sync::Arc::new(dagy_store_dynamodb::DynamoStore::new(
        support::client_for(&support::endpoint()),
        &table,
    ));
    let executor =
        dagy_engine::Executor::new(store, std::sync::Arc::new(dagy_handlers::registry()));
    let new_run = |flow: &str| {
        let flow = dagy_core::Flow::from_json(flow, None).expect("flow");
        let executor = executor.clone();
        async move {
            executor
                .create_run(&flow, dagy_engine::NewRunRequest::default())
                .await
                .expect("run")
                .run
                .run_id
        }
    };
    let hello =
        std::fs::read_to_string(workspace().join("examples/flows/hello.json")).expect("hello");

    // A run whose state machine succeeds: each Task state's invocation, then RecordSuccess.
    let run_id = new_run(&hello).await;
    for task in ["greet", "count"] {
        let (status, answer) = invoke_api(
            &emulator,
            "dagy-task-executor",
            &json!({"run_id": run_id, "task_id": task}),
        )
        .await;
        assert_eq!(status, 200, "{task}: {answer}");
        assert_eq!(answer["status"], "completed");
    }
    let answer = invoke(
        &emulator,
        "dagy-task-executor",
        &event("task-executor.json", &run_id),
    );
    assert_eq!(
        answer,
        json!({"run_id": run_id, "task_id": "answer", "status": "completed"})
    );
    let answer = invoke(
        &emulator,
        "dagy-task-executor",
        &event("task-executor-record-success.json", &run_id),
    );
    assert_eq!(answer["status"], "completed", "{answer}");
    let run = wait_for_run(&emulator, &run_id, |r| r["status"] != "running").await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        run["tasks"][2]["output"], 42,
        "answer read count's output from the store"
    );

    // A failing task: an error type the Retry and Catch match, then HandleTaskFailure.
    let failing = json!({"spec_version": 1, "name": "failing", "tasks": [
        {"id": "boom", "handler": "fail"},
        {"id": "after", "handler": "echo", "depends_on": ["boom"]}
    ]});
    let run_id = new_run(&failing.to_string()).await;
    let answer = refused_with(
        &emulator,
        &json!({"run_id": run_id, "task_id": "boom"}),
        "DagyTaskFailed",
    )
    .await;
    assert!(
        answer["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("the fail handler failed")),
        "{answer}"
    );
    let answer = invoke(
        &emulator,
        "dagy-task-executor",
        &event("task-executor-record-failure.json", &run_id),
    );
    assert_eq!(answer["status"], "failed", "{answer}");
    let run = wait_for_run(&emulator, &run_id, |r| r["status"] != "running").await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["tasks"][0]["status"], "failed");
    assert_eq!(run["tasks"][1]["status"], "skipped");

    // A cancelled run: the task-executor runs nothing and says so with its own error type.
    let run_id = new_run(&hello).await;
    let (status, _) = http_answer(&invoke(
        &emulator,
        "dagy-router",
        &event("http-cancel-run.json", &run_id),
    ));
    assert_eq!(status, 200);
    refused_with(
        &emulator,
        &json!({"run_id": run_id, "task_id": "greet"}),
        "DagyRunStopped",
    )
    .await;

    // A malformed event is named, never a crash.
    refused_with(&emulator, &json!({"run_id": run_id}), "DagyBadEvent").await;

    let log = std::fs::read_to_string(&emulator.log).expect("emulator log");
    assert!(
        log.lines()
            .any(|l| l.contains("\"task_id\":\"boom\"") && l.contains("\"level\"")),
        "the task-executor logs JSON lines with the task id:\n{log}"
    );
}

/// What moto's Step Functions interpreter calls as "Lambda" (it sends every request to
/// `localhost:$MOTO_PORT`): Invoke API requests go to the emulator, by function name (an ARN,
/// percent-encoded or not, becomes its function name), with Lambda's answers (a function
/// error is a 200 with `X-Amz-Function-Error`; an `Event` invocation a 202); every other
/// request goes on to moto.
async fn lambda_front(emulator_port: u16, moto_port: Arc<AtomicU16>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let moto_port = moto_port.clone();
            tokio::spawn(async move {
                let Some((head, body)) = read_request(&mut client).await else {
                    return;
                };
                let path = head
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                let function = path
                    .strip_prefix("/2015-03-31/functions/")
                    .and_then(|rest| rest.strip_suffix("/invocations"))
                    .map(|f| {
                        let f = f.replace("%3A", ":").replace("%3a", ":");
                        let name = f.split_once("function:").map_or(f.as_str(), |(_, n)| n);
                        name.split(':').next().unwrap_or(name).to_string()
                    });
                let Some(function) = function else {
                    let answer = forward(moto_port.load(Ordering::SeqCst), &head, &body).await;
                    let _ = client.write_all(&answer).await;
                    return;
                };
                let head = head.replacen(
                    &path,
                    &format!("/2015-03-31/functions/{function}/invocations"),
                    1,
                );
                let Some(mut client) = event_invocation(client, &head, &body, emulator_port).await
                else {
                    return;
                };
                let answer = forward(emulator_port, &head, &body).await;
                let text = String::from_utf8_lossy(&answer).to_string();
                let (status_line, rest) = text.split_once("\r\n").unwrap_or_default();
                let body = rest.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                let failed = !status_line.contains(" 200 ");
                let mut reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                    body.len()
                );
                if failed {
                    reply.push_str("x-amz-function-error: Unhandled\r\n");
                }
                reply.push_str("\r\n");
                reply.push_str(body);
                let _ = client.write_all(reply.as_bytes()).await;
            });
        }
    });
    port
}

/// Polls the run through the router until `done`.
async fn run_when(emulator: &Emulator, run_id: &str, done: impl Fn(&Value) -> bool) -> Value {
    wait_for_run(emulator, run_id, done).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_functions_runs_execute_on_motos_interpreter_through_the_task_executor() {
    // moto, its Lambda calls sent through the front to the emulator's task-executor.
    let emulator_port = support::emulator::free_port();
    let moto_port = Arc::new(AtomicU16::new(0));
    let front = lambda_front(emulator_port, moto_port.clone()).await;
    let moto = support::moto::spawn_own(&[("MOTO_PORT", front.to_string())]);
    moto_port.store(moto.port, Ordering::SeqCst);
    let config = ureq_post(
        &format!("{}/moto-api/config", moto.url),
        &json!({"stepfunctions": {"execute_state_machine": true}}),
    );
    assert!(config.starts_with("HTTP/1.1 20"), "{config}");
    let mut options = EmulatorOptions::new(&format!("dagy-sfn-{}", std::process::id()), &moto.url);
    options.port = emulator_port;
    let emulator = start_on(
        options,
        vec![
            format!("AWS_ENDPOINT_URL_SFN={}", moto.url),
            "DAGY_SFN_ROLE_ARN=arn:aws:iam::123456789012:role/dagy-sfn".into(),
            "DAGY_SFN_TASK_EXECUTOR_ARN=arn:aws:lambda:us-east-1:123456789012:function:dagy-task-executor"
                .into(),
        ],
    )
    .await;
    let deploy = |name: &str, flow: Value| {
        invoke(
            &emulator,
            "dagy-router",
            &json!({"action": "put_deployment", "name": name, "flow": flow, "backend": "step_functions"}),
        )
    };
    let trigger = |name: &str| {
        let answer = invoke(
            &emulator,
            "dagy-router",
            &json!({"action": "trigger", "deployment": name}),
        );
        assert_eq!(answer["statusCode"], 202, "{answer}");
        assert_eq!(answer["backend"], "step_functions", "{answer}");
        answer["run_id"].as_str().expect("run id").to_string()
    };
    let sfn = aws_sdk_sfn::Client::from_conf(
        aws_sdk_sfn::Config::builder()
            .behavior_version(aws_sdk_sfn::config::BehaviorVersion::latest())
            .region(aws_sdk_sfn::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sfn::config::Credentials::new(
                "test",
                "test",
                None,
                None,
                "dagy-tests",
            ))
            .endpoint_url(&moto.url)
            .build(),
    );
    let execution_status = |machine: &str, run_id: &str| {
        let arn =
            format!("arn:aws:states:us-east-1:123456789012:execution:dagy-{machine}:{run_id}");
        let sfn = sfn.clone();
        async move {
            sfn.describe_execution()
                .execution_arn(arn)
                .send()
                .await
                .map(|o| o.status().as_str().to_string())
                .unwrap_or_else(|e| format!("{e:?}"))
        }
    };

    // A diamond with a flaky task: the parallel level runs, the flaky task is retried by the
    // state machine, the run completes through RecordSuccess.
    let answer = deploy(
        "sfn-diamond",
        json!({"spec_version": 1, "name": "diamond", "tasks": [
            {"id": "a", "handler": "sum", "args": {"add": 1}},
            {"id": "b", "handler": "flaky", "depends_on": ["a"], "retries": 2, "retry_delay_seconds": 1, "args": {"failures": 1}},
            {"id": "c", "handler": "sum", "depends_on": ["a"], "args": {"add": 100}},
            {"id": "d", "handler": "sum", "depends_on": ["c"], "args": {"add": 1}}
        ]}),
    );
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let run_id = trigger("sfn-diamond");
    let run = run_when(&emulator, &run_id, |r| {
        r["status"] != "running" && r["status"] != "pending"
    })
    .await;
    assert_eq!(run["status"], "completed", "{run}");
    let attempts: Vec<_> = run["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| {
            (
                t["status"].as_str().unwrap_or_default().to_string(),
                t["attempts"].as_u64(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [
            ("completed".to_string(), Some(1)),
            ("completed".to_string(), Some(2)),
            ("completed".to_string(), Some(1)),
            ("completed".to_string(), Some(1)),
        ],
        "{run}"
    );
    assert_eq!(run["tasks"][3]["output"], 102);
    assert_eq!(execution_status("sfn-diamond", &run_id).await, "SUCCEEDED");

    // A failing task: caught, HandleTaskFailure ends the run failed, the execution fails.
    deploy(
        "sfn-failing",
        json!({"spec_version": 1, "name": "failing", "tasks": [
            {"id": "boom", "handler": "fail", "args": {"message": "no luck"}},
            {"id": "after", "handler": "echo", "depends_on": ["boom"]}
        ]}),
    );
    let run_id = trigger("sfn-failing");
    let run = run_when(&emulator, &run_id, |r| {
        r["status"] != "running" && r["status"] != "pending"
    })
    .await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["tasks"][0]["status"], "failed");
    assert_eq!(run["tasks"][1]["status"], "skipped");
    assert!(
        run["error"].as_str().is_some_and(|e| e.contains("no luck")),
        "{run}"
    );
    assert_eq!(execution_status("sfn-failing", &run_id).await, "FAILED");

    // A task past its timeout: stopped by TimeoutSeconds (or by the task-executor's own
    // timeout, whichever comes first), the run fails with the task timed out.
    deploy(
        "sfn-timeout",
        json!({"spec_version": 1, "name": "timeout", "tasks": [
            {"id": "stuck", "handler": "sleep", "timeout_seconds": 1, "args": {"seconds": 30}},
            {"id": "after", "handler": "echo", "depends_on": ["stuck"]}
        ]}),
    );
    let run_id = trigger("sfn-timeout");
    let run = run_when(&emulator, &run_id, |r| {
        r["status"] != "running" && r["status"] != "pending"
    })
    .await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(
        (
            run["tasks"][0]["status"].as_str(),
            run["tasks"][1]["status"].as_str()
        ),
        (Some("timed_out"), Some("skipped")),
        "{run}"
    );
    assert_eq!(execution_status("sfn-timeout", &run_id).await, "FAILED");

    // A cancel stops the execution and ends the run at once.
    deploy(
        "sfn-slow",
        json!({"spec_version": 1, "name": "slow", "tasks": [
            {"id": "nap", "handler": "sleep", "args": {"seconds": 5}},
            {"id": "after", "handler": "echo", "depends_on": ["nap"]}
        ]}),
    );
    let run_id = trigger("sfn-slow");
    run_when(&emulator, &run_id, |r| r["tasks"][0]["status"] == "running").await;
    let (status, body) = http_answer(&invoke(
        &emulator,
        "dagy-router",
        &event("http-cancel-run.json", &run_id),
    ));
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("cancelled")),
        "{body}"
    );
    // AWS aborts the execution at once (the lifecycle test in dagy-backend-sfn sees ABORTED);
    // moto's interpreter lets the state in flight finish, whose task-executor then answers
    // DagyRunStopped, so the execution ends through HandleTaskFailure instead. Either way it
    // ends, and the run stays cancelled.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = execution_status("sfn-slow", &run_id).await;
        if status == "ABORTED" || status == "FAILED" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the execution did not end: {status}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let run = run_when(&emulator, &run_id, |r| r["status"] != "running").await;
    assert_eq!(run["status"], "cancelled", "{run}");
    assert_eq!(
        (
            run["tasks"][0]["status"].as_str(),
            run["tasks"][1]["status"].as_str()
        ),
        (Some("cancelled"), Some("cancelled")),
        "the task in flight was not recorded after the cancel: {run}"
    );
}

/// A one-shot HTTP POST with a JSON body; returns the raw answer.
fn ureq_post(url: &str, body: &Value) -> String {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').map_or((rest, "/"), |(h, p)| (h, p));
    let mut stream = std::net::TcpStream::connect(host).expect("connect");
    let body = body.to_string();
    let request = format!(
        "POST /{path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

/// Runs `definition` with aws-local-stepfunctions (`scripts/sfn-local`), its Task states calling
/// the emulator's Invoke API; returns `{status, output, error, cause, events}`.
fn run_locally(emulator: &Emulator, definition: &Value, input: &Value) -> Value {
    let dir = workspace().join("scripts/sfn-local");
    if !dir.join("node_modules/aws-local-stepfunctions").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&dir)
            .status()
            .expect("npm (Node.js) is needed for aws-local-stepfunctions");
        assert!(status.success(), "npm ci in scripts/sfn-local failed");
    }
    let file = tempfile_with(definition);
    let out = Command::new("node")
        .arg(dir.join("run.mjs"))
        .arg("--definition")
        .arg(&file)
        .args(["--input", &input.to_string()])
        .args([
            "--invoke-url",
            &format!("http://127.0.0.1:{}", emulator.port),
        ])
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "run.mjs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_machines_run_by_aws_local_stepfunctions_drive_the_task_executor() {
    let table = format!("dagy-sfn-local-{}", std::process::id());
    let emulator = start(&table).await;
    let store = std::sync::Arc::new(dagy_store_dynamodb::DynamoStore::new(
        support::client_for(&support::endpoint()),
        &table,
    ));
    let executor = dagy_engine::Executor::new(
        store.clone(),
        std::sync::Arc::new(dagy_handlers::registry()),
    );
    const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:dagy-task-executor";
    let execute = |flow: Value| {
        let executor = executor.clone();
        let store = store.clone();
        let emulator = &emulator;
        async move {
            let flow = dagy_core::Flow::from_value(&flow, None).expect("flow");
            let run_id = executor
                .create_run(&flow, dagy_engine::NewRunRequest::default())
                .await
                .expect("run")
                .run
                .run_id;
            let definition =
                serde_json::to_value(dagy_core::asl::translate(&flow, ARN)).expect("ASL");
            let result = run_locally(emulator, &definition, &json!({"run_id": run_id}));
            let snapshot = dagy_store::RunStore::load_run(store.as_ref(), &run_id)
                .await
                .expect("load");
            (result, snapshot)
        }
    };
    let task = |snapshot: &dagy_store::RunSnapshot, id: &str| {
        snapshot
            .tasks
            .iter()
            .find(|t| t.task_id == id)
            .cloned()
            .expect("task")
    };

    // A parallel level: both branches run at the same time; the run completes.
    let (result, snapshot) = execute(json!({"spec_version": 1, "name": "diamond", "tasks": [
        {"id": "a", "handler": "sum", "args": {"add": 1}},
        {"id": "b", "handler": "sleep", "depends_on": ["a"], "args": {"seconds": 1}},
        {"id": "c", "handler": "sleep", "depends_on": ["a"], "args": {"seconds": 1}},
        {"id": "d", "handler": "sum", "depends_on": ["b", "c"], "args": {"add": 1}}
    ]}))
    .await;
    assert_eq!(result["status"], "SUCCEEDED", "{result}");
    assert_eq!(snapshot.run.status, dagy_store::RunStatus::Completed);
    let (b, c) = (task(&snapshot, "b"), task(&snapshot, "c"));
    let span = |t: &dagy_store::TaskRecord| {
        (
            t.started_at_ms.expect("started"),
            t.finished_at_ms.expect("finished"),
        )
    };
    let ((b0, b1), (c0, c1)) = (span(&b), span(&c));
    assert!(
        b0 < c1 && c0 < b1,
        "the branches overlapped: b {b0}..{b1}, c {c0}..{c1}"
    );
    assert_eq!(
        task(&snapshot, "d").output_value(),
        Some(json!(1)),
        "sleep outputs add nothing"
    );

    // A flaky task, retried by the state machine after its IntervalSeconds.
    let (result, snapshot) = execute(json!({"spec_version": 1, "name": "flaky", "tasks": [
        {"id": "f", "handler": "flaky", "retries": 2, "retry_delay_seconds": 1, "args": {"failures": 2}}
    ]}))
    .await;
    assert_eq!(result["status"], "SUCCEEDED", "{result}");
    let f = task(&snapshot, "f");
    assert_eq!((f.attempts, f.failures), (3, 2));
    let events = result["events"].as_array().expect("events");
    let at = |kind: &str| -> Vec<u64> {
        events
            .iter()
            .filter(|e| e["type"] == kind && e["state"] == "Task-f")
            .filter_map(|e| e["at"].as_u64())
            .collect()
    };
    let (failed, retried) = (at("StateFailed"), at("StateRetried"));
    assert_eq!((failed.len(), retried.len()), (2, 2), "{result}");
    for (f, r) in failed.iter().zip(&retried) {
        assert!(
            r - f >= 990,
            "each retry waited IntervalSeconds: {f} -> {r}"
        );
    }

    // A failing task: caught, HandleTaskFailure records it, the execution fails.
    let (result, snapshot) = execute(json!({"spec_version": 1, "name": "failing", "tasks": [
        {"id": "boom", "handler": "fail", "retries": 3, "args": {"message": "no luck"}},
        {"id": "after", "handler": "echo", "depends_on": ["boom"]}
    ]}))
    .await;
    assert_eq!(
        (result["status"].as_str(), result["error"].as_str()),
        (Some("FAILED"), Some("DagyRunFailed")),
        "{result}"
    );
    assert_eq!(snapshot.run.status, dagy_store::RunStatus::Failed);
    let boom = task(&snapshot, "boom");
    assert_eq!(
        (boom.status, boom.attempts),
        (dagy_store::TaskStatus::Failed, 4)
    );
    assert_eq!(
        task(&snapshot, "after").status,
        dagy_store::TaskStatus::Skipped
    );
    assert!(
        events_of(&result).contains(&"HandleTaskFailure".to_string()),
        "{result}"
    );

    // A slow task stopped by its timeout.
    let (result, snapshot) = execute(json!({"spec_version": 1, "name": "slow", "tasks": [
        {"id": "slow", "handler": "sleep", "timeout_seconds": 1, "args": {"seconds": 30}}
    ]}))
    .await;
    assert_eq!(result["status"], "FAILED", "{result}");
    assert_eq!(snapshot.run.status, dagy_store::RunStatus::Failed);
    assert_eq!(
        task(&snapshot, "slow").status,
        dagy_store::TaskStatus::TimedOut
    );
}

/// The states an execution entered, in order.
fn events_of(result: &Value) -> Vec<String> {
    result["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|e| e["type"] == "StateEntered")
                .filter_map(|e| e["state"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
