//! The `dagy` binary, run for real: validate, plan, graph and run, their output and exit codes.
//! Each command gets a clean environment, so a developer's DAGY_* variables cannot change it.

use std::path::PathBuf;

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/flows")
}

fn example(name: &str) -> String {
    examples().join(name).to_string_lossy().into_owned()
}

/// The embedded store's folder for these tests, under the target directory.
fn dagy_home() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dagy-home")
}

fn dagy() -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin!("dagy"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DAGY_HOME", dagy_home());
    cmd
}

fn json_of(output: &[u8]) -> Value {
    serde_json::from_slice(output).expect("JSON output")
}

fn write_temp(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), text).expect("write");
    file
}

#[test]
fn every_example_flow_validates() {
    let mut count = 0;
    for entry in std::fs::read_dir(examples()).expect("examples") {
        let path = entry.expect("entry").path();
        dagy()
            .arg("validate")
            .arg(&path)
            .assert()
            .success()
            .stdout(predicate::str::starts_with("ok: flow"));
        count += 1;
    }
    assert!(count >= 9, "only {count} examples");
}

#[test]
fn validate_lists_every_problem_and_exits_1() {
    let flow = write_temp(
        r#"{"spec_version": 1, "name": "bad", "tasks": [
            {"id": "a", "handler": "echo", "retires": 2},
            {"id": "a", "handler": "nope", "depends_on": ["ghost"]}
        ]}"#,
    );
    dagy()
        .arg("validate")
        .arg(flow.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("4 problems"))
        .stderr(predicate::str::contains(
            "tasks[0].retires (task \"a\"): unknown field \"retires\"; did you mean \"retries\"?",
        ))
        .stderr(predicate::str::contains("is already used by tasks[0]"))
        .stderr(predicate::str::contains(
            "handler \"nope\" is not registered",
        ))
        .stderr(predicate::str::contains("depends on \"ghost\""));
}

#[test]
fn validate_json_gives_codes_and_problems() {
    let flow = write_temp(
        r#"{"spec_version": 1, "name": "c", "tasks": [
        {"id": "a", "handler": "echo", "depends_on": ["b"]},
        {"id": "b", "handler": "echo", "depends_on": ["a"]}]}"#,
    );
    let out = dagy()
        .args(["validate", "--json"])
        .arg(flow.path())
        .assert()
        .code(1);
    let body = json_of(&out.get_output().stdout);
    assert_eq!(body["error"]["code"], "invalid_flow");
    assert_eq!(body["error"]["problems"][0]["kind"], "cycle");
    let message = body["error"]["problems"][0]["message"]
        .as_str()
        .expect("message");
    assert!(message.contains("a -> b -> a"), "{message}");
}

#[test]
fn malformed_json_reports_line_and_column() {
    let flow = write_temp("{\n  \"spec_version\": 1,\n  \"name\": \"x\" \"tasks\": []\n}");
    dagy()
        .arg("validate")
        .arg(flow.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("line 3, column"));
}

#[test]
fn a_missing_file_is_named() {
    dagy()
        .args(["validate", "/nonexistent/flow.json"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "cannot read /nonexistent/flow.json",
        ));
}

#[test]
fn standard_input_is_read_with_a_dash() {
    dagy()
        .args(["validate", "-"])
        .write_stdin(
            r#"{"spec_version": 1, "name": "s", "tasks": [{"id": "a", "handler": "echo"}]}"#,
        )
        .assert()
        .success()
        .stdout("ok: flow \"s\" is valid (1 task, 1 level)\n");
}

fn plan_json(args: &[&str], env: &[(&str, &str)]) -> Value {
    let mut cmd = dagy();
    cmd.arg("plan").args(args).arg("--json");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.assert().success();
    json_of(&out.get_output().stdout)
}

const ECS: (&str, &str) = (
    "DAGY_ECS_CLUSTER_ARN",
    "arn:aws:ecs:us-east-1:123456789012:cluster/dagy",
);

#[test]
fn each_tier_example_selects_its_tier() {
    let cases = [
        ("tier_nano.json", "nano", "flow"),
        ("tier_micro.json", "micro", "rule:default"),
        ("tier_small.json", "small", "flow"),
        ("tier_medium.json", "medium", "rule:duration"),
        ("tier_large.json", "large", "rule:duration"),
        ("tier_xlarge.json", "xlarge", "rule:resource"),
    ];
    for (file, tier, decided_by) in cases {
        let plan = plan_json(&[&example(file)], &[ECS]);
        assert_eq!(plan["tier"], tier, "{file}");
        assert_eq!(plan["decided_by"], decided_by, "{file}");
        assert!(plan["reason"].as_str().is_some_and(|r| !r.is_empty()));
    }
}

#[test]
fn a_fargate_tier_with_ecs_registered_runs_on_ecs_with_its_size() {
    let plan = plan_json(&[&example("tier_large.json")], &[ECS]);
    assert_eq!(plan["backend"], "ecs_fargate");
    assert_eq!(plan["mode"], "container");
    assert_eq!(
        plan["resources"],
        serde_json::json!({"cpu": 2048, "memory_mb": 4096})
    );
    assert_eq!(plan["fallback"], Value::Null);
}

#[test]
fn a_fargate_tier_without_ecs_falls_back_to_lambda_when_it_fits() {
    let plan = plan_json(&[&example("tier_small.json")], &[]);
    assert_eq!(plan["tier"], "small");
    assert_eq!(plan["backend"], "lambda");
    assert_eq!(plan["fallback"]["from"], "ecs_fargate");
}

#[test]
fn explicit_nano_for_a_two_hour_task_is_refused() {
    dagy()
        .args(["plan", &example("tier_large.json"), "--tier", "nano"])
        .env(ECS.0, ECS.1)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("timeout_seconds 7200"));
}

#[test]
fn step_functions_needs_its_role_variable() {
    dagy()
        .args(["plan", &example("etl.json"), "--backend", "step_functions"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("DAGY_SFN_ROLE_ARN"));
    dagy()
        .args(["plan", &example("etl.json"), "--backend", "step_functions"])
        .env("DAGY_SFN_ROLE_ARN", "arn:aws:iam::123456789012:role/sfn")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("DAGY_SFN_TASK_EXECUTOR_ARN"));
    let plan = plan_json(
        &[&example("etl.json"), "--backend", "step_functions"],
        &[
            ("DAGY_SFN_ROLE_ARN", "arn:aws:iam::123456789012:role/sfn"),
            (
                "DAGY_SFN_TASK_EXECUTOR_ARN",
                "arn:aws:lambda:us-east-1:123456789012:function:te",
            ),
        ],
    );
    assert_eq!(plan["backend"], "step_functions");
    let warnings = plan["warnings"].to_string();
    assert!(warnings.contains("IntervalSeconds"), "{warnings}");
}

#[test]
fn the_levels_of_tier_resolution_are_flags() {
    let plan = plan_json(
        &[&example("tier_large.json"), "--environment-tier", "medium"],
        &[ECS],
    );
    assert_eq!(
        (plan["tier"].as_str(), plan["decided_by"].as_str()),
        (Some("medium"), Some("environment"))
    );
    let plan = plan_json(
        &[
            &example("tier_large.json"),
            "--environment-tier",
            "medium",
            "--deployment-tier",
            "xlarge",
        ],
        &[ECS],
    );
    assert_eq!(plan["decided_by"], "deployment");
    let plan = plan_json(&[&example("etl.json")], &[("DAGY_AUTO_TIER", "off")]);
    assert_eq!(
        (plan["tier"].as_str(), plan["decided_by"].as_str()),
        (Some("nano"), Some("default"))
    );
}

#[test]
fn a_bad_tier_name_is_a_usage_error() {
    dagy()
        .args(["plan", &example("etl.json"), "--tier", "huge"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "expected one of: nano, micro, small, medium, large, xlarge",
        ));
}

#[test]
fn a_refused_plan_in_json_is_an_error_object() {
    let out = dagy()
        .args([
            "plan",
            &example("tier_large.json"),
            "--tier",
            "micro",
            "--json",
        ])
        .assert()
        .code(1);
    let body = json_of(&out.get_output().stdout);
    assert_eq!(body["error"]["code"], "plan_refused");
}

#[test]
fn human_plan_output_reads_at_a_glance() {
    dagy()
        .args(["plan", &example("etl.json")])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "tier      micro   (decided by rule:default)",
        ))
        .stdout(predicate::str::contains(
            "backend   lambda   (one invocation per task)",
        ));
}

#[test]
fn graph_prints_one_edge_per_dependency() {
    let out = dagy()
        .args(["graph", &example("fan_out_fan_in.json")])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.starts_with("flowchart TD"));
    assert_eq!(text.matches("-->").count(), 4 + 4 + 1);
}

#[test]
fn run_completes_a_flow_and_prints_the_record() {
    let out = dagy()
        .args(["run", &example("fan_out_fan_in.json"), "--json", "--quiet"])
        .assert()
        .success();
    let record = json_of(&out.get_output().stdout);
    assert_eq!(record["status"], "completed");
    let tasks = record["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 7);
    assert_eq!(tasks[5]["id"], "join");
    assert_eq!(
        tasks[5]["output"],
        4 + 10 + 20 + 30 + 40,
        "sum of the branches"
    );
    assert!(
        tasks
            .iter()
            .all(|t| t["attempts"] == 1 && t["duration_ms"].is_u64())
    );
}

#[test]
fn run_exits_1_when_a_task_fails_and_shows_the_table() {
    let flow = write_temp(
        r#"{"spec_version": 1, "name": "f", "tasks": [
        {"id": "boom", "handler": "fail", "args": {"message": "disk full"}},
        {"id": "after", "handler": "echo", "depends_on": ["boom"]},
        {"id": "other", "handler": "echo"}]}"#,
    );
    dagy()
        .arg("run")
        .arg(flow.path())
        .args(["--tier", "nano"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("TaskFailed: disk full"))
        .stdout(predicate::str::is_match(r"after\s+skipped").expect("regex"))
        .stdout(predicate::str::is_match(r"other\s+completed").expect("regex"))
        .stderr(predicate::str::contains("✗ boom"));
}

#[test]
fn run_merges_params_over_the_defaults() {
    let out = dagy()
        .args([
            "run",
            &example("hello.json"),
            "--json",
            "--quiet",
            "--params",
            r#"{"greeting": "hi"}"#,
        ])
        .assert()
        .success();
    let record = json_of(&out.get_output().stdout);
    assert_eq!(record["tasks"][0]["output"]["parameters"]["greeting"], "hi");
    assert_eq!(record["tasks"][2]["output"], 42);
}

#[test]
fn run_refuses_params_that_are_not_an_object() {
    dagy()
        .args(["run", &example("hello.json"), "--params", "[1]"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--params must be a JSON object"));
}

#[test]
fn run_tier_takes_lambda_tiers_here_and_ecs_tiers_in_docker() {
    dagy()
        .args(["run", &example("hello.json"), "--tier", "large"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("takes nano or micro"))
        .stderr(predicate::str::contains("--backend docker"));
    dagy()
        .args([
            "run",
            &example("hello.json"),
            "--tier",
            "nano",
            "--backend",
            "docker",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "use --tier small, medium, large or xlarge",
        ));
    dagy()
        .args([
            "run",
            &example("hello.json"),
            "--tier",
            "small",
            "--backend",
            "docker",
        ])
        .args(["--store", "memory"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("leave out --store memory"));
}

/// Runs a three-task flow whose second task sleeps 2 s, sends `signals` SIGINTs (50 ms apart)
/// once it has started, and returns the exit code, what was printed on stderr, and the record.
fn interrupted_run(signals: usize) -> (Option<i32>, String, Value) {
    let flow = write_temp(
        r#"{"spec_version": 1, "name": "slow", "tasks": [
        {"id": "one", "handler": "sleep", "args": {"seconds": 0.2}},
        {"id": "two", "handler": "sleep", "args": {"seconds": 2}, "depends_on": ["one"]},
        {"id": "three", "handler": "echo", "depends_on": ["two"]}]}"#,
    );
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin!("dagy"))
        .env("DAGY_HOME", dagy_home())
        .arg("run")
        .arg(flow.path())
        .args(["--json", "--tier", "nano"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start");
    // Wait until the progress shows task two running, then interrupt.
    let mut stderr_pipe = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut stderr_pipe, &mut line).expect("read stderr");
        assert!(n > 0, "dagy ended before task two started: {seen}");
        seen.push_str(&line);
        if line.contains("two  attempt 1") {
            break;
        }
    }
    for i in 0..signals {
        if i > 0 {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let sent = std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr_pipe, &mut rest).expect("read stderr");
    let out = child.wait_with_output().expect("wait");
    (out.status.code(), seen + &rest, json_of(&out.stdout))
}

#[test]
fn a_sigint_lets_the_task_in_flight_finish_then_cancels_the_rest_and_says_so() {
    let (code, stderr, record) = interrupted_run(1);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("the task in flight finishes"), "{stderr}");
    assert_eq!(record["status"], "cancelled");
    assert_eq!(record["tasks"][0]["status"], "completed");
    assert_eq!(
        record["tasks"][1]["status"], "completed",
        "the task in flight finished"
    );
    assert_eq!(record["tasks"][2]["status"], "cancelled");
    assert_eq!(record["tasks"][2]["attempts"], 0);
}

#[test]
fn a_second_sigint_cancels_the_task_in_flight_records_the_run_and_exits_130() {
    let (code, stderr, record) = interrupted_run(2);
    assert_eq!(code, Some(130));
    assert!(stderr.contains("cancelling the task in flight"), "{stderr}");
    assert_eq!(record["status"], "cancelled");
    assert_eq!(record["tasks"][0]["status"], "completed");
    assert_eq!(
        record["tasks"][1]["status"], "cancelled",
        "sleep honours cancellation"
    );
    assert_eq!(record["tasks"][2]["status"], "cancelled");
    assert_eq!(record["tasks"][2]["attempts"], 0);
}

#[test]
fn asl_prints_a_definition_that_invokes_the_task_executor() {
    let arn = "arn:aws:lambda:us-east-1:123456789012:function:dagy-task-executor";
    let out = dagy()
        .args(["asl", &example("fan_out_fan_in.json")])
        .env("DAGY_SFN_TASK_EXECUTOR_ARN", arn)
        .assert()
        .success();
    let asl = json_of(&out.get_output().stdout);
    assert_eq!(asl["StartAt"], "Task-source");
    assert_eq!(asl["States"]["Level-1"]["Type"], "Parallel");
    assert_eq!(
        asl["States"]["Level-1"]["Branches"]
            .as_array()
            .map(Vec::len),
        Some(4)
    );
    assert_eq!(
        asl["States"]["Task-source"]["Parameters"]["FunctionName"],
        arn
    );
}

#[test]
fn asl_warns_what_the_translation_loses_and_needs_the_task_executor() {
    dagy()
        .args([
            "asl",
            &example("etl.json"),
            "--task-executor-arn",
            "arn:aws:lambda:us-east-1:1:function:te",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "the delay list [0.1, 0.5, 2.0] becomes a fixed IntervalSeconds 1",
        ));
    dagy()
        .args(["asl", &example("etl.json")])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--task-executor-arn"));
}

/// Values that used to crash `dagy run` (exit 101, "overflow when adding duration to instant")
/// after `validate` accepted them: now refused by both, naming the limit.
#[test]
fn numbers_no_run_can_honour_are_refused_with_their_limit() {
    let cases = [
        (
            r#""retry_delay_seconds": 1e300, "retries": 1"#,
            "retry_delay_seconds",
        ),
        (
            r#""retry_delay_seconds": [0, 1e300], "retries": 2"#,
            "retry_delay_seconds[1]",
        ),
        (
            r#""retry_delay_seconds": 0.01, "retry_jitter_factor": 1e308, "retries": 1"#,
            "retry_jitter_factor",
        ),
        (r#""timeout_seconds": 1e300"#, "timeout_seconds"),
        (
            r#""timeout_seconds": 9.3e18, "runtime_tier": "large""#,
            "timeout_seconds",
        ),
    ];
    for (fields, path) in cases {
        let flow = write_temp(&format!(
            r#"{{"spec_version": 1, "name": "f", "tasks": [{{"id": "a", "handler": "fail", {fields}}}]}}"#
        ));
        let file = flow.path().to_str().expect("utf-8 path");
        for command in ["validate", "run"] {
            dagy()
                .args([command, file])
                .assert()
                .code(1)
                .stderr(predicate::str::contains(format!("tasks[0].{path}")))
                .stderr(predicate::str::contains("at most"));
        }
    }
}

#[test]
fn a_flow_name_or_parameters_too_large_to_store_are_refused_by_validate() {
    let name = "n".repeat(300);
    let blob = "x".repeat(200 * 1024);
    for (flow, says) in [
        (
            format!(
                r#"{{"spec_version": 1, "name": "{name}", "tasks": [{{"id": "a", "handler": "echo"}}]}}"#
            ),
            "at most 256",
        ),
        (
            format!(
                r#"{{"spec_version": 1, "name": "f", "parameters": {{"blob": "{blob}"}}, "tasks": [{{"id": "a", "handler": "echo"}}]}}"#
            ),
            "at most 131072",
        ),
    ] {
        let file = write_temp(&flow);
        dagy()
            .args(["validate", file.path().to_str().expect("utf-8 path")])
            .assert()
            .code(1)
            .stderr(predicate::str::contains(says));
    }
}

/// `dagy run ARGS` on a pseudo-terminal (util-linux `script`), as a user at a terminal sees it.
fn on_a_terminal(args: &str) -> String {
    let binary = assert_cmd::cargo::cargo_bin!("dagy");
    let out = std::process::Command::new("script")
        .args([
            "-qec",
            &format!("{} run {args}", binary.display()),
            "/dev/null",
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DAGY_HOME", dagy_home())
        .env("TERM", "xterm")
        .output()
        .expect("util-linux script");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn on_a_terminal_a_large_run_shows_a_bar_and_a_summary_not_a_line_per_task() {
    let tasks: Vec<String> = (0..60)
        .map(|i| {
            let deps = if i == 0 {
                String::new()
            } else {
                format!(r#", "depends_on": ["t{}"]"#, i - 1)
            };
            format!(r#"{{"id": "t{i}", "handler": "sum", "args": {{"add": 1}}{deps}}}"#)
        })
        .collect();
    let flow = write_temp(&format!(
        r#"{{"spec_version": 1, "name": "sixty", "tasks": [{}]}}"#,
        tasks.join(", ")
    ));
    let path = flow.path().display().to_string();
    let shown = on_a_terminal(&format!("{path} --tier micro"));
    assert!(shown.contains("/60 "), "a bar counts the tasks: {shown}");
    assert!(
        shown.contains("60 completed tasks not listed"),
        "a summary instead of 60 rows: {shown}"
    );
    assert!(!shown.contains("attempt 1"), "no line per attempt: {shown}");
    let verbose = on_a_terminal(&format!("{path} --tier micro --verbose"));
    assert_eq!(verbose.matches("attempt 1").count(), 60, "{verbose}");
}
