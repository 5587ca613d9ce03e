//! cargo-lambda's runtime emulator (`cargo lambda watch`) serving the workspace's functions,
//! started and stopped by the test that needs it.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The workspace's root directory.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The virtual environment `scripts/test.sh` installs the Python tools into (`DAGY_VENV`, by
/// default `~/.cache/dagy/venv`).
pub fn venv() -> PathBuf {
    std::env::var("DAGY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/dagy/venv")
        })
}

/// `PATH` with the virtual environment's `bin` first.
pub fn path_with_venv() -> String {
    format!(
        "{}:{}",
        venv().join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// How to start the emulator.
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    /// The port it listens on.
    pub port: u16,
    /// The DynamoDB table the functions use (`DAGY_TABLE_NAME`).
    pub table: String,
    /// The DynamoDB endpoint (`AWS_ENDPOINT_URL_DYNAMODB`).
    pub dynamodb: String,
    /// The Lambda endpoint the functions invoke each other through
    /// (`AWS_ENDPOINT_URL_LAMBDA`); by default the emulator itself.
    pub lambda: Option<String>,
    /// Instances per function.
    pub concurrency: u8,
    /// The package whose binaries it serves, as functions named after them: the workspace's
    /// (`dagy-router`, `dagy-executor`, `dagy-task-executor`) by default.
    pub package_dir: PathBuf,
    /// The executor function's name (`DAGY_EXECUTOR_FUNCTION`).
    pub executor_function: String,
    /// Cargo features the functions need (`--features`).
    pub features: Option<String>,
    /// More variables, as `NAME=value`.
    pub extra: Vec<String>,
}

impl EmulatorOptions {
    /// The emulator on a free port, its functions on `table` at `dynamodb`.
    pub fn new(table: &str, dynamodb: &str) -> Self {
        EmulatorOptions {
            port: free_port(),
            table: table.into(),
            dynamodb: dynamodb.into(),
            lambda: None,
            concurrency: 2,
            package_dir: workspace(),
            executor_function: "dagy-executor".into(),
            features: None,
            extra: Vec::new(),
        }
    }
}

/// A running emulator; dropping it stops the functions it started, then the emulator.
#[derive(Debug)]
pub struct Emulator {
    /// The port it listens on (the Lambda Invoke API).
    pub port: u16,
    /// Where its output (and the functions' logs) go.
    pub log: PathBuf,
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

impl Emulator {
    /// Creates the table, starts `cargo lambda watch` and waits until it listens (it builds the
    /// functions on their first call, so warm them up with [`Emulator::warm_up`]).
    pub async fn start(options: EmulatorOptions) -> Emulator {
        let store = dagy_store_dynamodb::DynamoStore::new(
            crate::client_for(&options.dynamodb),
            &options.table,
        );
        store.create_table().await.expect("create the table");
        let port = options.port;
        let lambda = options
            .lambda
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{port}"));
        let mut env = vec![
            format!("DAGY_TABLE_NAME={}", options.table),
            format!("DAGY_EXECUTOR_FUNCTION={}", options.executor_function),
            format!("AWS_ENDPOINT_URL_DYNAMODB={}", options.dynamodb),
            format!("AWS_ENDPOINT_URL_LAMBDA={lambda}"),
            "AWS_ACCESS_KEY_ID=test".into(),
            "AWS_SECRET_ACCESS_KEY=test".into(),
            "AWS_REGION=us-east-1".into(),
            "AWS_EC2_METADATA_DISABLED=true".into(),
            "AWS_LAMBDA_LOG_FORMAT=JSON".into(),
            "AWS_LAMBDA_LOG_LEVEL=INFO".into(),
        ];
        env.extend(options.extra.iter().cloned());
        let log = std::env::temp_dir().join(format!("dagy-emulator-{port}.log"));
        let file = std::fs::File::create(&log).expect("the emulator's log file");
        let mut command = Command::new("cargo");
        command.args([
            "lambda",
            "watch",
            "-A",
            "127.0.0.1",
            "-P",
            &port.to_string(),
        ]);
        if let Some(features) = &options.features {
            command.args(["--features", features]);
        }
        let child = command
            .args(["--concurrency", &options.concurrency.to_string()])
            .args(["--ignore-changes", "--env-var", &env.join(",")])
            .current_dir(&options.package_dir)
            .env("PATH", path_with_venv())
            .stdout(file.try_clone().expect("the emulator's log file"))
            .stderr(file)
            .spawn()
            .expect("start cargo lambda watch (installed by scripts/test.sh)");
        let emulator = Emulator { port, log, child };
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the emulator did not listen within 120 s; see {}",
                emulator.log.display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        emulator
    }

    /// `binary` (a CLI over the workspace's or a project's handlers) aimed at this emulator's
    /// `router` function through the Lambda Invoke API, with the test credentials.
    pub fn cli(&self, binary: &str, router: &str) -> Command {
        let mut command = Command::new(crate::binary(binary));
        crate::with_test_credentials(&mut command)
            .env("DAGY_ROUTER_FUNCTION", router)
            .env("AWS_ENDPOINT_URL_LAMBDA", self.url())
            .env_remove("DAGY_API_URL");
        command
    }

    /// The emulator's URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits for `function`'s first answer to `event`: the emulator builds a function on its
    /// first call, which can take longer than the SDK's timeout per attempt.
    pub fn warm_up(&self, function: &str, event: &str) {
        use std::io::{Read, Write};
        let request = format!(
            "POST /2015-03-31/functions/{function}/invocations HTTP/1.1\r\nhost: 127.0.0.1\r\n\
             content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n\
             {event}",
            event.len()
        );
        let mut stream =
            std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("reach the emulator");
        stream
            .set_read_timeout(Some(Duration::from_secs(300)))
            .expect("set a timeout");
        stream.write_all(request.as_bytes()).expect("send");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "{function} did not start: {answer}; see {}",
            self.log.display()
        );
    }
}
