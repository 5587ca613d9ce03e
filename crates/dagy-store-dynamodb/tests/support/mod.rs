//! Test support: a DynamoDB-compatible server and a fresh table per test.
//!
//! The suite's script (`scripts/test.sh`) starts moto's server once and exports
//! `AWS_ENDPOINT_URL`; run alone (`cargo test`), the tests start `moto_server` themselves, found
//! in `$DAGY_VENV/bin`, `~/.cache/dagy/venv/bin` or on `PATH`, on a free loopback port.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dagy_store_dynamodb::DynamoStore;

struct Server {
    url: String,
    _child: Option<ChildGuard>,
}

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

static SERVER: OnceLock<Server> = OnceLock::new();

fn moto_binary() -> PathBuf {
    let mut candidates = Vec::new();
    if let Ok(venv) = std::env::var("DAGY_VENV") {
        candidates.push(PathBuf::from(venv).join("bin/moto_server"));
    }
    if let Ok(home) = std::env::var("HOME") {
        candidates.push(PathBuf::from(home).join(".cache/dagy/venv/bin/moto_server"));
    }
    candidates
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("moto_server"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The endpoint of a running DynamoDB-compatible server, started on first use if needed.
pub fn endpoint() -> String {
    SERVER
        .get_or_init(|| {
            if let Ok(url) = std::env::var("AWS_ENDPOINT_URL") {
                return Server { url, _child: None };
            }
            let port = free_port();
            let binary = moto_binary();
            // A watchdog shell stops moto when this test process exits: statics are never
            // dropped, so a guard alone would leave the server running.
            let script = format!(
                "\"$0\" -H 127.0.0.1 -p {port} >/dev/null 2>&1 & m=$!; \
                 while kill -0 {parent} 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 0.5; done; \
                 kill $m 2>/dev/null",
                parent = std::process::id()
            );
            let child = Command::new("sh")
                .args(["-c", &script])
                .arg(&binary)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot start {} ({e}); run scripts/test.sh, which installs moto[server] \
                         into ~/.cache/dagy/venv, or set AWS_ENDPOINT_URL to a running server",
                        binary.display()
                    )
                });
            let guard = ChildGuard(child);
            let url = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(30);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "moto_server did not listen within 30 s"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            Server {
                url,
                _child: Some(guard),
            }
        })
        .url
        .clone()
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

fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
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
