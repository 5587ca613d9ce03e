//! The example user project (`examples/user-project`, package `my-flows`) deployed as a user
//! deploys it: its own `router` and `executor` functions under cargo-lambda's emulator, with
//! moto's DynamoDB behind them, driven by its own CLI. Its flow is deployed and triggered, runs
//! the project's handlers on Lambda (nano: the emulator runs an asynchronous invocation in line,
//! so the micro path's self-invocations are tested with a proxy in `functions_emulator.rs`), and its last task writes a report into DynamoDB through the
//! client the registry shares.

use std::process::Output;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use dagy_testkit::{self as support, Emulator, EmulatorOptions, workspace};

fn project() -> std::path::PathBuf {
    workspace().join("examples/user-project")
}

/// The project's CLI (`my-flows`, built with its `aws` feature) aimed at the emulator's router.
fn my_flows(emulator: &Emulator, args: &[&str]) -> Output {
    emulator
        .cli("my-flows", "router")
        .args(args)
        .current_dir(project())
        .output()
        .expect("run my-flows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projects_functions_run_its_flow_and_its_task_writes_to_dynamodb() {
    let table = support::unique("dagy-user-project");
    let mut options = EmulatorOptions::new(&table, &support::endpoint());
    options.package_dir = project();
    options.executor_function = "executor".into();
    options.features = Some("aws".into());
    options.extra = vec![format!("REPORT_TABLE={table}")];
    let emulator = Emulator::start(options).await;
    emulator.warm_up("router", r#"{"action": "backends"}"#);

    let deployed = support::json_stdout(&my_flows(
        &emulator,
        &[
            "deploy",
            "flows/primes.json",
            "--name",
            "primes",
            "--tier",
            "nano",
        ],
    ));
    assert_eq!(deployed["name"], "primes", "{deployed}");
    let accepted = support::json_stdout(&my_flows(&emulator, &["trigger", "primes"]));
    let run_id = accepted["run_id"].as_str().expect("run id").to_string();

    let deadline = Instant::now() + Duration::from_secs(300);
    let run = loop {
        let run = support::json_stdout(&my_flows(&emulator, &["status", &run_id]));
        if matches!(run["status"].as_str(), Some("completed" | "failed")) {
            break run;
        }
        assert!(
            Instant::now() < deadline,
            "the run did not finish: {run}; see {}",
            emulator.log.display()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(run["status"], "completed", "{run}");
    let summary = run["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .find(|t| t["id"] == "summary")
        .expect("the summary task");
    assert_eq!(summary["output"]["total"], 17984, "{summary}");

    let found = support::client_for(&support::endpoint())
        .query()
        .table_name(&table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(format!("REPORT#{run_id}")))
        .send()
        .await
        .expect("query the report");
    let text = found
        .items()
        .first()
        .and_then(|item| item.get("report"))
        .and_then(|v| v.as_s().ok())
        .expect("the report task wrote its item");
    assert!(text.contains("17984"), "{text}");
}
