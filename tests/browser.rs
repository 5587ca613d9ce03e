//! The dashboard in a real browser. `dagy run` keeps its runs in a temporary `DAGY_HOME`,
//! `dagy ui --port 0` serves them, and headless Chromium, driven through chromedriver
//! (WebDriver), reads each page once its scripts have run: the runs list, a run's DAG with
//! each task's state, its timeline, the Cancel button of a live run, and the 404 page.
//!
//! Chromium and chromedriver are Debian's `chromium` and `chromium-driver`, which
//! `scripts/test.sh` installs (`ensure_chromium` in scripts/lib.sh exports their paths as
//! `DAGY_CHROMIUM` and `DAGY_CHROMEDRIVER`; otherwise they are looked up on `PATH`). Every
//! wait polls against a generous deadline: a busy 2-core machine is slow, not wrong.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use dagy_testkit::emulator::free_port;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// How long a page, a server or a run may take to show what a test waits for.
const WAIT: Duration = Duration::from_secs(90);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------------------------
// Processes the tests start, and stop by their id.

/// A process a test started, killed (with the process group it leads, when it leads one) and
/// reaped when dropped, so a failing test leaves nothing running.
struct Process {
    child: Child,
    /// Whether the child leads a process group of its own (its children are in it too).
    group: bool,
}

impl Process {
    fn spawn(command: &mut Command, what: &str) -> Process {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Process {
            child,
            group: false,
        }
    }

    /// Started in a process group of its own, so that what it starts (Chromium's processes,
    /// for chromedriver) is stopped with it.
    fn spawn_group(command: &mut Command, what: &str) -> Process {
        use std::os::unix::process::CommandExt;
        let mut process = Process::spawn(command.process_group(0), what);
        process.group = true;
        process
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.group {
            // The group's id is the child's pid: `kill -KILL -- -PID` stops the group it leads.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it gives a value, or panics after [`WAIT`] with what `last` says.
async fn wait_for<T>(
    what: &str,
    mut check: impl FnMut() -> Option<T>,
    last: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {} s waiting for {what}; last seen: {}",
            WAIT.as_secs(),
            last()
        );
        tokio::time::sleep(POLL).await;
    }
}

// ---------------------------------------------------------------------------------------------
// dagy: the CLI on a DAGY_HOME of the test's own, and its dashboard.

/// `dagy` with a clean environment (no developer's DAGY_* or AWS variables) on `home`.
fn dagy(home: &Path) -> Command {
    let mut command = Command::new(dagy_testkit::binary("dagy"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("DAGY_HOME", home);
    command
}

fn output(command: &mut Command) -> Output {
    command.output().expect("run dagy")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "dagy printed no JSON ({e}); stdout: {}; stderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `dagy status RUN_ID` on `home`, which must find the run.
fn status(home: &Path, run_id: &str) -> Value {
    let out = output(dagy(home).args(["status", run_id]));
    assert!(
        out.status.success(),
        "dagy status {run_id} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_of(&out)
}

/// A flow file (JSON) in `dir`.
fn write_flow(dir: &Path, name: &str, flow: &Value) -> PathBuf {
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, flow.to_string()).expect("write the flow");
    path
}

/// `dagy ui --port 0` on `home`, serving until dropped.
struct Dashboard {
    url: String,
    _process: Process,
}

impl Dashboard {
    fn start(home: &Path) -> Dashboard {
        let mut process = Process::spawn(
            dagy(home)
                .args(["ui", "--port", "0"])
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
            "dagy ui",
        );
        // Its first line: `Dagy's dashboard: http://127.0.0.1:PORT/ (SQLite at ...)`.
        let stdout = process.child.stdout.take().expect("dagy ui's stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let line = receiver
            .recv_timeout(WAIT)
            .expect("dagy ui printed its URL in time");
        let url = line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in dagy ui's first line: {line:?}"))
            .trim_end_matches('/')
            .to_string();
        Dashboard {
            url,
            _process: process,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Chromium through chromedriver.

/// A tool's path: `$variable` (set by scripts/lib.sh's ensure_chromium), else `name` on PATH.
/// A missing tool fails the test: passing without a browser would prove nothing.
fn tool(variable: &str, name: &str) -> PathBuf {
    let found = std::env::var_os(variable)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|dir| dir.join(name))
                .find(|path| path.is_file())
        });
    match found {
        Some(path) if path.is_file() => path,
        _ => panic!(
            "{name} is missing (neither at ${variable} nor on PATH): run scripts/test.sh, which \
             installs Debian's chromium and chromium-driver (or, as root, `apt-get install \
             chromium chromium-driver`)"
        ),
    }
}

/// Headless Chromium, and the chromedriver that drives it.
struct Browser {
    client: Client,
    // Dropped after the client: chromedriver and, in its process group, Chromium.
    _driver: Process,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        let chromium = tool("DAGY_CHROMIUM", "chromium");
        let chromedriver = tool("DAGY_CHROMEDRIVER", "chromedriver");
        let port = free_port();
        let profile = tempfile::tempdir().expect("a profile folder");
        let log = profile.path().join("chromedriver.log");
        // chromedriver listens on loopback and, by default, accepts local clients only.
        let mut driver = Process::spawn_group(
            Command::new(&chromedriver)
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            "chromedriver",
        );
        let driver_log = || std::fs::read_to_string(&log).unwrap_or_default();
        wait_for(
            "chromedriver to listen",
            || {
                if let Some(status) = driver.exited() {
                    panic!("chromedriver exited ({status}); its log:\n{}", driver_log());
                }
                std::net::TcpStream::connect(("127.0.0.1", port))
                    .ok()
                    .map(|_| ())
            },
            driver_log,
        )
        .await;
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().join("chromium").display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let session = tokio::time::timeout(
            WAIT,
            ClientBuilder::new(connector)
                .capabilities(capabilities)
                .connect(&format!("http://127.0.0.1:{port}")),
        )
        .await;
        let client = match session {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => panic!(
                "Chromium did not start: {e}; chromedriver's log:\n{}",
                driver_log()
            ),
            Err(_) => panic!(
                "Chromium did not start within {} s; chromedriver's log:\n{}",
                WAIT.as_secs(),
                driver_log()
            ),
        };
        Browser {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("cannot load {url}: {e}"));
    }

    /// Runs `script` (the body of a function) in the page and returns what it returns.
    async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("the page's script failed: {e}"))
    }

    /// Polls the page with `script` until `ready` accepts what it returns (a navigation in
    /// between is waited out), or panics after [`WAIT`] with the last value.
    async fn wait_for_page(
        &self,
        what: &str,
        script: &str,
        ready: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + WAIT;
        let mut last = Value::Null;
        loop {
            // A script may fail while the page navigates: look again.
            if let Ok(value) = self.client.execute(script, vec![]).await {
                if ready(&value) {
                    return value;
                }
                last = value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {} s waiting for the page to show {what}; last seen: {last:#}",
                WAIT.as_secs()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Ends the session, which closes Chromium; chromedriver is stopped when dropped.
    async fn close(self) {
        let Browser {
            client,
            _driver,
            _profile,
        } = self;
        let _ = tokio::time::timeout(Duration::from_secs(30), client.close()).await;
    }
}

/// What a run page shows, read from its DOM: the header's status, whether the run is final,
/// the cancel badge and button, each DAG node's `data-status`, each timeline row's bars (their
/// classes, `a-<result>`), and `window.dagyMarker`, which a reload would clear.
const RUN_PAGE: &str = r#"
    var run = document.querySelector('.run[data-run-id]');
    if (!run || document.readyState !== 'complete') return null;
    var nodes = {};
    document.querySelectorAll('#dag .node').forEach(function (n) {
        nodes[n.getAttribute('data-task-id')] = n.getAttribute('data-status');
    });
    var rows = {};
    document.querySelectorAll('#timeline .row').forEach(function (r) {
        rows[r.getAttribute('data-task-id')] = Array.prototype.map.call(
            r.querySelectorAll('rect'), function (b) { return b.getAttribute('class'); });
    });
    var status = run.querySelector('[data-field="status"]');
    var cancel = run.querySelector('[data-field="cancel"]');
    var button = run.querySelector('.cancel-form button');
    return {
        path: location.pathname,
        run_id: run.getAttribute('data-run-id'),
        final: run.getAttribute('data-final') === 'true',
        status: status ? status.textContent : null,
        cancel_shown: !!cancel && !cancel.hidden,
        button: button ? { text: button.textContent, disabled: button.disabled } : null,
        nodes: nodes,
        rows: rows,
        marker: window.dagyMarker || null
    };
"#;

fn node_status<'a>(page: &'a Value, task: &str) -> Option<&'a str> {
    page["nodes"][task].as_str()
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_run_is_listed_and_its_page_shows_each_tasks_state_and_attempts() {
    let home = tempfile::tempdir().expect("an empty DAGY_HOME");
    let flows = tempfile::tempdir().expect("a folder for the flow");
    let flow = write_flow(
        flows.path(),
        "mixed",
        &json!({
            "spec_version": 1,
            "name": "browser-mixed",
            "tasks": [
                {"id": "fetch", "handler": "echo", "args": {"rows": 3}},
                {"id": "flaky_source", "handler": "flaky", "args": {"failures": 1},
                 "retries": 2, "retry_delay_seconds": 0.1},
                {"id": "parse", "handler": "fail", "depends_on": ["fetch", "flaky_source"],
                 "args": {"message": "row 7 does not parse"}},
                {"id": "report", "handler": "echo", "depends_on": ["parse"]}
            ]
        }),
    );
    let out = output(dagy(home.path()).arg("run").arg(&flow).arg("--json"));
    assert_eq!(
        out.status.code(),
        Some(1),
        "a run that failed exits 1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record = json_of(&out);
    let run_id = record["run_id"].as_str().expect("the run's id").to_string();
    assert_eq!(record["status"], "failed", "{record:#}");

    // A later process finds the run in $DAGY_HOME/runs.db.
    let found = status(home.path(), &run_id);
    assert_eq!(found["run_id"], run_id.as_str());
    assert_eq!(found["status"], "failed");

    let ui = Dashboard::start(home.path());
    let browser = Browser::start().await;

    // The runs list names the run, with its status, and links to its page.
    browser.goto(&format!("{}/", ui.url)).await;
    let row_selector = format!("tr[data-run-id=\"{run_id}\"]");
    let row = browser
        .client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(&row_selector))
        .await
        .unwrap_or_else(|e| panic!("the runs list has no row for {run_id}: {e}"));
    assert_eq!(
        row.attr("data-status")
            .await
            .expect("the row's status")
            .as_deref(),
        Some("failed")
    );
    let text = row.text().await.expect("the row's text");
    assert!(text.contains(&run_id), "{text}");
    assert!(text.contains("browser-mixed"), "{text}");
    assert!(text.contains("failed"), "{text}");
    row.find(Locator::Css("a"))
        .await
        .expect("the row's link")
        .click()
        .await
        .expect("follow the run's link");

    // Its page, once rendered: each task with its state, and the attempts on the timeline.
    let path = format!("/runs/{run_id}");
    let page = browser
        .wait_for_page("the run page with its four tasks", RUN_PAGE, |page| {
            page["path"] == path.as_str() && page["nodes"].as_object().is_some_and(|n| n.len() == 4)
        })
        .await;
    assert_eq!(page["run_id"], run_id.as_str());
    assert_eq!(page["status"], "failed");
    assert_eq!(page["final"], true);
    assert_eq!(
        page["button"],
        Value::Null,
        "a finished run has no Cancel button"
    );
    for (task, expected) in [
        ("fetch", "completed"),
        ("flaky_source", "completed"),
        ("parse", "failed"),
        ("report", "skipped"),
    ] {
        assert_eq!(node_status(&page, task), Some(expected), "{task}: {page:#}");
    }
    let rows = &page["rows"];
    assert_eq!(rows["fetch"], json!(["a-completed"]), "{page:#}");
    assert_eq!(
        rows["flaky_source"],
        json!(["a-retrying", "a-completed"]),
        "a retried task shows both attempts, the first one retried: {page:#}"
    );
    assert_eq!(rows["parse"], json!(["a-failed"]), "{page:#}");
    assert_eq!(
        rows["report"],
        Value::Null,
        "a skipped task never started: {page:#}"
    );
    let summary = browser
        .eval("return document.querySelector('#timeline p').textContent;")
        .await;
    assert!(
        summary
            .as_str()
            .is_some_and(|s| s.starts_with("3 tasks started (4 attempts), 1 not started")),
        "{summary}"
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_on_a_live_run_page_is_recorded_and_the_page_follows_the_run_to_its_end() {
    let home = tempfile::tempdir().expect("an empty DAGY_HOME");
    let flows = tempfile::tempdir().expect("a folder for the flow");
    // A chain of 1 s steps, far longer than the test needs.
    let tasks: Vec<Value> = (1..=60)
        .map(|i| {
            let mut task = json!({"id": format!("step_{i:02}"), "handler": "sleep",
                                  "args": {"seconds": 1}});
            if i > 1 {
                task["depends_on"] = json!([format!("step_{:02}", i - 1)]);
            }
            task
        })
        .collect();
    let flow = write_flow(
        flows.path(),
        "slow",
        &json!({"spec_version": 1, "name": "browser-slow-chain", "tasks": tasks}),
    );
    let ui = Dashboard::start(home.path());
    let browser = Browser::start().await;
    let mut run = Process::spawn(
        dagy(home.path())
            .arg("run")
            .arg(&flow)
            .arg("--json")
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
        "dagy run",
    );
    let run_id = wait_for(
        "dagy runs to list the run",
        || {
            // Before the run's first write there may be no database yet: look again.
            let out = output(dagy(home.path()).args(["runs", "--json"]));
            let runs: Value = serde_json::from_slice(&out.stdout).ok()?;
            runs.get(0)?["run_id"].as_str().map(str::to_string)
        },
        || "no run yet".into(),
    )
    .await;

    // The page shows a task running, and follows the run by itself: a task that was not
    // running when the page loaded starts, with no reload (the page's marker stays).
    browser.goto(&format!("{}/runs/{run_id}", ui.url)).await;
    let loaded = browser
        .wait_for_page("the run page", RUN_PAGE, |page| !page.is_null())
        .await;
    browser
        .eval("window.dagyMarker = 'first load'; return null;")
        .await;
    let was_running = |task: &str| node_status(&loaded, task) == Some("running");
    let page = browser
        .wait_for_page(
            "a task start running after the page loaded",
            RUN_PAGE,
            |page| {
                page["nodes"].as_object().is_some_and(|nodes| {
                    nodes
                        .iter()
                        .any(|(task, status)| status == "running" && !was_running(task))
                })
            },
        )
        .await;
    assert_eq!(
        page["marker"], "first load",
        "the page was reloaded: {page:#}"
    );
    assert_eq!(page["status"], "running", "{page:#}");
    assert_eq!(page["cancel_shown"], false, "{page:#}");

    // Cancel: the button asks for confirmation, then posts and comes back to the run page.
    browser
        .client
        .find(Locator::Css(".cancel-form button"))
        .await
        .expect("the Cancel button")
        .click()
        .await
        .expect("press Cancel");
    let deadline = Instant::now() + WAIT;
    while let Err(e) = browser.client.accept_alert().await {
        assert!(Instant::now() < deadline, "no confirmation dialog: {e}");
        tokio::time::sleep(POLL).await;
    }
    let recorded = wait_for(
        "dagy status to show the cancel request",
        || {
            let run = status(home.path(), &run_id);
            (run["cancel_requested"] == true).then_some(run)
        },
        || status(home.path(), &run_id).to_string(),
    )
    .await;
    assert_eq!(recorded["cancel_requested"], true);

    // The page the form led to follows the run to its end without a reload.
    browser
        .wait_for_page("the run page after the cancel", RUN_PAGE, |page| {
            page.is_object() && page["marker"].is_null()
        })
        .await;
    browser
        .eval("window.dagyMarker = 'after cancel'; return null;")
        .await;
    let page = browser
        .wait_for_page("the run cancelled", RUN_PAGE, |page| {
            page["status"] == "cancelled" && page["final"] == true
        })
        .await;
    assert_eq!(
        page["marker"], "after cancel",
        "the page was reloaded: {page:#}"
    );
    assert_eq!(page["cancel_shown"], true, "{page:#}");
    assert_eq!(
        page["button"],
        Value::Null,
        "a finished run has no Cancel button: {page:#}"
    );
    let statuses: Vec<&str> = page["nodes"]
        .as_object()
        .expect("the nodes")
        .values()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(statuses.len(), 60);
    assert_eq!(node_status(&page, "step_01"), Some("completed"), "{page:#}");
    assert_eq!(node_status(&page, "step_60"), Some("cancelled"), "{page:#}");
    assert!(
        statuses
            .iter()
            .all(|s| matches!(*s, "completed" | "cancelled")),
        "every task completed or was cancelled: {page:#}"
    );

    // The run itself ended cancelled, long before its 60 steps.
    let exit = wait_for(
        "dagy run to end",
        || run.exited(),
        || "still running".into(),
    )
    .await;
    assert_eq!(exit.code(), Some(1), "a cancelled run exits 1");
    let ended = status(home.path(), &run_id);
    assert_eq!(ended["status"], "cancelled", "{ended:#}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_run_id_gets_a_404_page() {
    let home = tempfile::tempdir().expect("an empty DAGY_HOME");
    let ui = Dashboard::start(home.path());
    let browser = Browser::start().await;
    let url = format!("{}/runs/no-such-run", ui.url);
    browser.goto(&url).await;
    let title = browser.client.title().await.expect("the page's title");
    assert!(title.starts_with("Run not found"), "{title}");
    let heading = browser
        .client
        .find(Locator::Css("main h1"))
        .await
        .expect("the page's heading")
        .text()
        .await
        .expect("its text");
    assert!(
        heading.contains("Run not found") && heading.contains("404"),
        "{heading}"
    );
    let text = browser
        .client
        .find(Locator::Css("main"))
        .await
        .expect("the page")
        .text()
        .await
        .expect("its text");
    assert!(text.contains("No run has the id no-such-run"), "{text}");
    // The status the browser got, as its own fetch sees it.
    let code = browser
        .client
        .execute_async(
            "var done = arguments[arguments.length - 1];
             fetch(location.href).then(function (r) { done(r.status); });",
            vec![],
        )
        .await
        .expect("fetch the page again");
    assert_eq!(code, 404);
    browser
        .client
        .find(Locator::Css("main a[href=\"/\"]"))
        .await
        .expect("a link back to the runs");
    browser.close().await;
}
