//! The project's own `dagy` command (`my-flows`), run for real: its flow runs with the right
//! outputs, and a flow naming a handler the project does not register is refused by name.

use std::process::Command;

fn my_flows() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_my-flows"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("DAGY_ECS_CLUSTER_ARN")
        .env_remove("DAGY_SFN_ROLE_ARN")
        .env_remove("REPORT_TABLE")
        .env(
            "DAGY_HOME",
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dagy-home"),
        );
    cmd
}

#[test]
fn the_primes_flow_runs_through_the_projects_cli() {
    let reports = tempfile::tempdir().expect("tempdir");
    let out = my_flows()
        .args(["run", "flows/primes.json", "--json", "--quiet"])
        .env("REPORT_DIR", reports.path())
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).expect("run JSON");
    assert_eq!(record["status"], "completed");
    let tasks = record["tasks"].as_array().expect("tasks");
    let counts: Vec<u64> = tasks[..4]
        .iter()
        .map(|t| t["output"].as_u64().expect("a count"))
        .collect();
    assert_eq!(counts, [5133, 4459, 4256, 4136]);
    assert_eq!(tasks[4]["output"]["total"], 17_984);
    assert_eq!(
        tasks[5]["output"], "== primes below 200,000 ==",
        "the closure handler"
    );
    let run_id = record["run_id"].as_str().expect("run id");
    let report = std::fs::read_to_string(reports.path().join(format!("{run_id}.json")))
        .expect("the report was saved through the shared sink");
    assert!(report.contains("\"total\": 17984"), "{report}");
}

#[test]
fn validate_refuses_a_handler_the_project_does_not_register_and_names_those_it_does() {
    let flow = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(
        flow.path(),
        r#"{"spec_version": 1, "name": "f", "tasks": [{"id": "a", "handler": "echo"}]}"#,
    )
    .expect("write");
    let out = my_flows()
        .args(["validate"])
        .arg(flow.path())
        .output()
        .expect("validate");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("handler \"echo\" is not registered; registered handlers: banner, count_primes, save_report, summarize"),
        "{stderr}"
    );
}
