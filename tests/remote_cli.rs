//! `dagy deploy`, `trigger`, `status` and `cancel` against the router running under
//! cargo-lambda's emulator (the Lambda Invoke API, SigV4-signed by the SDK), with moto's
//! DynamoDB behind it: a flow is deployed, a nano run triggered and read back completed, a
//! finished run's cancel is refused with the router's own error, mistakes exit 1.

use dagy_testkit as support;
use dagy_testkit::{Emulator, EmulatorOptions, workspace};

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The emulator serving the functions on `table` at the shared moto, the router warmed up.
async fn start(table: &str) -> Emulator {
    let emulator = Emulator::start(EmulatorOptions::new(table, &support::endpoint())).await;
    emulator.warm_up("dagy-router", r#"{"action": "backends"}"#);
    emulator
}

fn dagy(emulator: &Emulator, args: &[&str]) -> Output {
    emulator
        .cli("dagy", "dagy-router")
        .args(args)
        .output()
        .expect("dagy")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_trigger_status_and_cancel_go_through_the_routers_routes() {
    let emulator = start(&format!("dagy-remote-{}", std::process::id())).await;
    let hello = workspace().join("examples/flows/hello.json");
    let hello = hello.to_str().expect("path");

    let deployed = support::json_stdout(&dagy(
        &emulator,
        &["deploy", hello, "--name", "hello", "--tier", "nano"],
    ));
    assert_eq!(deployed["name"], "hello", "{deployed}");

    let accepted = support::json_stdout(&dagy(
        &emulator,
        &["trigger", "hello", "--params", r#"{"greeting": "hi"}"#],
    ));
    assert_eq!(accepted["tier"], "nano", "{accepted}");
    let run_id = accepted["run_id"].as_str().expect("run id").to_string();

    let deadline = Instant::now() + Duration::from_secs(90);
    let run = loop {
        let run = support::json_stdout(&dagy(&emulator, &["status", &run_id]));
        if run["status"] == "completed" || run["status"] == "failed" {
            break run;
        }
        assert!(Instant::now() < deadline, "the run did not finish: {run}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["parameters"]["greeting"], "hi");

    let refused = dagy(&emulator, &["cancel", &run_id]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("already finished") && stderr.contains("409"),
        "{stderr}"
    );

    let missing = dagy(&emulator, &["status", "no-such-run"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));

    let bad = dagy(&emulator, &["trigger", "hello", "--params", "[1]"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--params must be a JSON object"));
}

/// A stand-in for the HTTP API on loopback (no API Gateway emulator works offline here): it
/// keeps each request's head (to see its SigV4 `authorization`), turns the request into the
/// payload 2.0 event API Gateway would send, invokes the router through the emulator's Invoke
/// API, and answers with the router's status and body.
async fn api_stand_in(emulator: u16) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let Some((head, body)) = support::http::read_request(&mut client).await else {
                    return;
                };
                seen.lock().expect("heads").push(head.clone());
                let (method, path) = support::http::method_and_path(&head);
                let body = String::from_utf8_lossy(&body).to_string();
                let event = serde_json::json!({
                    "version": "2.0", "routeKey": "$default", "rawPath": path,
                    "rawQueryString": "", "headers": {"content-type": "application/json"},
                    "requestContext": {"http": {"method": method, "path": path}},
                    "body": if body.is_empty() { Value::Null } else { Value::String(body) },
                    "isBase64Encoded": false
                });
                let answer = tokio::task::spawn_blocking(move || invoke_router(emulator, &event))
                    .await
                    .expect("joined");
                let status = answer["statusCode"].as_u64().unwrap_or(502);
                let body = answer["body"].as_str().unwrap_or_default().to_string();
                support::http::reply(&mut client, status, "application/json", &body).await;
            });
        }
    });
    (port, heads)
}

/// The router's answer to `event`, through the emulator's Invoke API.
fn invoke_router(port: u16, event: &Value) -> Value {
    use std::io::{Read, Write};
    let body = event.to_string();
    let request = format!(
        "POST /2015-03-31/functions/dagy-router/invocations HTTP/1.1\r\nhost: 127.0.0.1\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("emulator");
    stream.write_all(request.as_bytes()).expect("write");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_api_url_requests_go_over_http_signed_with_sigv4() {
    let emulator = start(&format!("dagy-remote-http-{}", std::process::id())).await;
    let (api, heads) = api_stand_in(emulator.port).await;
    let api = format!("http://127.0.0.1:{api}");
    let hello = workspace().join("examples/flows/hello.json");
    let with_api = |args: &[&str]| {
        Command::new(support::binary("dagy"))
            .args(args)
            .env("DAGY_API_URL", &api)
            .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "eu-west-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .expect("dagy")
    };
    let deployed = support::json_stdout(&with_api(&[
        "deploy",
        hello.to_str().expect("path"),
        "--name",
        "hello-http",
        "--tier",
        "nano",
    ]));
    assert_eq!(deployed["name"], "hello-http", "{deployed}");
    let missing = with_api(&["status", "no-such-run"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));

    // A Lambda run keeps no log Dagy reads: the route's own refusal, signed like the rest.
    let logs = with_api(&["logs", "no-such-run"]);
    assert_eq!(logs.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&logs.stderr).contains("404"),
        "{}",
        String::from_utf8_lossy(&logs.stderr)
    );

    let heads = heads.lock().expect("heads").clone();
    assert_eq!(heads.len(), 3, "{heads:?}");
    assert!(
        heads[0].starts_with("PUT /deployments/hello-http "),
        "{}",
        heads[0]
    );
    for head in &heads {
        let auth = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
            .unwrap_or_else(|| panic!("an unsigned request: {head}"));
        assert!(
            auth.contains("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
                && auth.contains("/eu-west-1/execute-api/aws4_request")
                && auth.contains("SignedHeaders=")
                && auth.contains("Signature="),
            "{auth}"
        );
        assert!(head.to_ascii_lowercase().contains("x-amz-date:"), "{head}");
    }
}
