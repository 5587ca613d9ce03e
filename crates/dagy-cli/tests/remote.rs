//! `dagy deploy`, `trigger`, `status` and `cancel` against the router running under
//! cargo-lambda's emulator (the Lambda Invoke API, SigV4-signed by the SDK), with moto's
//! DynamoDB behind it: a flow is deployed, a nano run triggered and read back completed, a
//! finished run's cancel is refused with the router's own error, mistakes exit 1.

#[path = "../../dagy-store-dynamodb/tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Emulator {
    port: u16,
    child: Child,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("pkill").args(["-TERM", "-P", &pid]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn path_with_venv() -> String {
    let venv = std::env::var("DAGY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/dagy/venv")
        });
    format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

async fn start(table: &str) -> Emulator {
    let moto = support::endpoint();
    let store = dagy_store_dynamodb::DynamoStore::new(support::client_for(&moto), table);
    store.create_table().await.expect("table");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let env = [
        format!("DAGY_TABLE_NAME={table}"),
        "DAGY_EXECUTOR_FUNCTION=dagy-executor".into(),
        format!("AWS_ENDPOINT_URL_DYNAMODB={moto}"),
        format!("AWS_ENDPOINT_URL_LAMBDA=http://127.0.0.1:{port}"),
        "AWS_ACCESS_KEY_ID=test".into(),
        "AWS_SECRET_ACCESS_KEY=test".into(),
        "AWS_REGION=us-east-1".into(),
        "AWS_EC2_METADATA_DISABLED=true".into(),
    ]
    .join(",");
    let log = std::fs::File::create(std::env::temp_dir().join(format!("dagy-remote-{port}.log")))
        .expect("log");
    let child = Command::new("cargo")
        .args([
            "lambda",
            "watch",
            "-A",
            "127.0.0.1",
            "-P",
            &port.to_string(),
        ])
        .args(["--ignore-changes", "--concurrency", "2", "--env-var", &env])
        .current_dir(workspace())
        .env("PATH", path_with_venv())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("cargo lambda watch (installed by scripts/test.sh)");
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the emulator did not listen");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Emulator { port, child }
}

fn dagy(emulator: &Emulator, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dagy"))
        .args(args)
        .env("DAGY_ROUTER_FUNCTION", "dagy-router")
        .env(
            "AWS_ENDPOINT_URL_LAMBDA",
            format!("http://127.0.0.1:{}", emulator.port),
        )
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("dagy")
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_trigger_status_and_cancel_go_through_the_routers_routes() {
    let emulator = start(&format!("dagy-remote-{}", std::process::id())).await;
    let hello = workspace().join("examples/flows/hello.json");
    let hello = hello.to_str().expect("path");

    let deployed = json_of(&dagy(
        &emulator,
        &["deploy", hello, "--name", "hello", "--tier", "nano"],
    ));
    assert_eq!(deployed["name"], "hello", "{deployed}");

    let accepted = json_of(&dagy(
        &emulator,
        &["trigger", "hello", "--params", r#"{"greeting": "hi"}"#],
    ));
    assert_eq!(accepted["tier"], "nano", "{accepted}");
    let run_id = accepted["run_id"].as_str().expect("run id").to_string();

    let deadline = Instant::now() + Duration::from_secs(90);
    let run = loop {
        let run = json_of(&dagy(&emulator, &["status", &run_id]));
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
