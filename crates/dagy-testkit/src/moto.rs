//! A moto server for the tests: the suite's script (`scripts/test.sh`) starts one and exports
//! `AWS_ENDPOINT_URL`; run alone (`cargo test`), the tests start `moto_server` themselves, found
//! in `$DAGY_VENV/bin`, `~/.cache/dagy/venv/bin` or on `PATH`, on a free loopback port.
//! It needs nothing but std.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

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

/// Waits (up to 30 s) until moto accepts connections on `port`.
fn wait_until_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not listen within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The endpoint of a running moto server (DynamoDB, Step Functions, ECS, CloudWatch Logs),
/// started on first use if needed.
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
            wait_until_listening(port);
            Server {
                url,
                _child: Some(guard),
            }
        })
        .url
        .clone()
}

/// A moto server of one test's own, stopped when dropped (and, should the test process die, by
/// a watchdog): for tests that need moto started with particular variables (`MOTO_PORT`).
pub struct OwnServer {
    /// Its endpoint.
    pub url: String,
    /// Its port.
    pub port: u16,
    child: Child,
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a moto server on a free loopback port with `env` set, and waits until it listens.
pub fn spawn_own(env: &[(&str, String)]) -> OwnServer {
    let port = free_port();
    let binary = moto_binary();
    let child = Command::new(&binary)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}); run scripts/test.sh, which installs moto[server]",
                binary.display()
            )
        });
    let watchdog = format!(
        "while kill -0 {parent} 2>/dev/null && kill -0 {moto} 2>/dev/null; do sleep 0.5; done; \
         kill {moto} 2>/dev/null",
        parent = std::process::id(),
        moto = child.id()
    );
    let _ = Command::new("sh")
        .args(["-c", &watchdog])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    wait_until_listening(port);
    OwnServer {
        url: format!("http://127.0.0.1:{port}"),
        port,
        child,
    }
}

/// One EC2 query-API call to moto (tests need only a default subnet and security group, not
/// the whole EC2 SDK); returns every value of `<field>` in the answer.
pub fn ec2_values(action: &str, field: &str) -> Vec<String> {
    use std::io::{Read, Write};
    let url = endpoint();
    let host = url.trim_start_matches("http://");
    let body = format!("Action={action}&Version=2016-11-15");
    let request = format!(
        "POST / HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/x-www-form-urlencoded\r\n\
         authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(host).expect("moto");
    stream.write_all(request.as_bytes()).expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let (open, close) = (format!("<{field}>"), format!("</{field}>"));
    answer
        .split(&open)
        .skip(1)
        .filter_map(|rest| rest.split(&close).next().map(str::to_string))
        .collect()
}
