//! Test support for Dagy's integration tests and benchmarks, one crate instead of a file each
//! test includes: a DynamoDB-compatible server ([`moto`]), clients with production's settings,
//! a fresh table per test, unique names, an ECS cluster on moto ([`ecs`]), cargo-lambda's
//! emulator ([`emulator`]), Docker and the worker images ([`docker`]), the workspace's
//! binaries, and a proxy that injects faults.

use dagy_store_dynamodb::DynamoStore;

pub mod docker;
pub mod ecs;
pub mod emulator;
pub mod http;
pub mod moto;
pub use emulator::{Emulator, EmulatorOptions, workspace};
pub use moto::endpoint;

/// An SDK client of any AWS service crate for the test server ([`endpoint`]), or for the
/// endpoint given second, with dummy credentials: `client!(aws_sdk_ecs)`,
/// `client!(aws_sdk_ecs, &url)`.
#[macro_export]
macro_rules! client {
    ($krate:ident) => {
        $crate::client!($krate, $crate::endpoint())
    };
    ($krate:ident, $endpoint:expr) => {{
        use $krate::config::{BehaviorVersion, Credentials, Region};
        $krate::Client::from_conf(
            $krate::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new("test", "test", None, None, "dagy-tests"))
                .endpoint_url($endpoint)
                .build(),
        )
    }};
}

/// `name` made unique to this process and moment, for tables, clusters and functions that
/// tests share a server with.
pub fn unique(name: &str) -> String {
    format!("{name}-{}-{:08x}", std::process::id(), rand_u32())
}

/// Gives a process the test server's dummy credentials and region, and no instance metadata
/// lookups, as every spawned binary of a test needs.
pub fn with_test_credentials(command: &mut std::process::Command) -> &mut std::process::Command {
    command
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
}

/// The JSON a command printed on stdout, after checking that it succeeded.
pub fn json_stdout(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// A binary of the workspace's (`dagy`, `dagy-worker`, `my-flows`...), from the target directory
/// the running test was built into: `cargo test --workspace` builds them all first.
pub fn binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build --workspace --features my-flows/aws)",
        path.display()
    );
    path
}

/// An SDK client for the server at `url`: production's retry and timeout settings, dummy
/// credentials, and the endpoint set as `AWS_ENDPOINT_URL` would set it.
pub fn client_for(url: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "dagy-tests",
        ))
        .endpoint_url(url)
        .retry_config(dagy_store_dynamodb::retry_config())
        .timeout_config(dagy_store_dynamodb::timeout_config())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// A store on a new table of its own.
pub async fn fresh_store(name: &str) -> DynamoStore {
    let url = endpoint();
    let table = format!("dagy-test-{name}-{:08x}", rand_u32());
    let store = DynamoStore::new(client_for(&url), table);
    store.create_table().await.expect("create table");
    store
}

/// A number that differs between calls and processes.
fn rand_u32() -> u32 {
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    nanos ^ std::process::id().rotate_left(16) ^ call.rotate_left(24)
}

/// A TCP proxy in front of `upstream` that injects transient faults, connection by connection:
/// the first two connections get `503 Service Unavailable`; every third connection after that
/// forwards its request but loses the answer (the write happened, the client never hears of it);
/// the others forward normally but are cut after a few answers, so faults keep coming during a
/// run. Returns the proxy's URL and a counter of faults injected.
pub async fn chaos_proxy(
    upstream: &str,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    let upstream = upstream.trim_start_matches("http://").to_string();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let faults = Arc::new(AtomicUsize::new(0));
    let counter = faults.clone();
    tokio::spawn(async move {
        let mut index = 0usize;
        while let Ok((mut client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            let faults = counter.clone();
            let i = index;
            index += 1;
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut back = vec![0u8; 64 * 1024];
                if i < 2 {
                    let _ = client.read(&mut buf).await;
                    faults.fetch_add(1, Ordering::Relaxed);
                    let _ = client
                        .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                    return;
                }
                let Ok(mut server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let lose_answer = i % 3 == 2;
                let mut answers = 0;
                loop {
                    tokio::select! {
                        r = client.read(&mut buf) => match r {
                            Ok(0) | Err(_) => return,
                            Ok(k) => if server.write_all(&buf[..k]).await.is_err() { return },
                        },
                        r = server.read(&mut back) => match r {
                            Ok(0) | Err(_) => return,
                            Ok(k) => {
                                if lose_answer {
                                    faults.fetch_add(1, Ordering::Relaxed);
                                    return; // the server did the work; the answer is lost
                                }
                                if client.write_all(&back[..k]).await.is_err() { return }
                                answers += 1;
                                if answers >= 6 {
                                    faults.fetch_add(1, Ordering::Relaxed);
                                    return; // cut the connection: the next request reconnects
                                }
                            }
                        },
                    }
                }
            });
        }
    });
    (url, faults)
}

/// What passed through a [`counting_proxy`]: API requests (one `x-amz-target` header each) and
/// the bytes of the answers.
#[derive(Debug, Default)]
pub struct Traffic {
    /// Requests forwarded.
    pub requests: std::sync::atomic::AtomicU64,
    /// Bytes the server answered with, headers included.
    pub response_bytes: std::sync::atomic::AtomicU64,
}

impl Traffic {
    /// Requests and response bytes so far.
    pub fn totals(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.requests.load(Relaxed),
            self.response_bytes.load(Relaxed),
        )
    }
}

/// A TCP proxy in front of `upstream` that forwards everything and counts what passes: the
/// figures DynamoDB bills and a step waits for. Returns its URL and the counters.
pub async fn counting_proxy(upstream: &str) -> (String, std::sync::Arc<Traffic>) {
    use std::sync::Arc;
    use std::sync::atomic::Ordering::Relaxed;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    let upstream = upstream.trim_start_matches("http://").to_string();
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the proxy");
    let url = format!(
        "http://{}",
        listener.local_addr().expect("the proxy's address")
    );
    let traffic = Arc::new(Traffic::default());
    let counters = traffic.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                continue;
            };
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            let up = counters.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                // The end of the previous read, so a header split across reads still counts.
                let mut tail: Vec<u8> = Vec::new();
                while let Ok(n) = client_read.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut seen = std::mem::take(&mut tail);
                    seen.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&seen).to_ascii_lowercase();
                    let found = text.matches("\r\nx-amz-target:").count();
                    up.requests.fetch_add(found as u64, Relaxed);
                    // One byte short of the 15-byte marker: a whole marker is never kept.
                    tail = seen[seen.len().saturating_sub(14)..].to_vec();
                    if server_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            let down = counters.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = server_read.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    down.response_bytes.fetch_add(n as u64, Relaxed);
                    if client_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (url, traffic)
}
