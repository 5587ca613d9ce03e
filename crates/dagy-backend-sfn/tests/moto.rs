//! The backend against moto's Step Functions API over loopback: state machines are created and
//! updated with the flow, executions are named by run id (a repeated start is the same
//! execution), stopped, and read back.

use dagy_testkit::{client, unique};

use dagy_backend_sfn::{ExecutionState, StepFunctionsBackend};
use dagy_core::Flow;

const ROLE: &str = "arn:aws:iam::123456789012:role/dagy-sfn";
const TASK_EXECUTOR: &str = "arn:aws:lambda:us-east-1:123456789012:function:dagy-task-executor";

fn client() -> aws_sdk_sfn::Client {
    client!(aws_sdk_sfn)
}

fn backend() -> StepFunctionsBackend {
    StepFunctionsBackend::new(client(), "us-east-1", ROLE, TASK_EXECUTOR).expect("backend")
}

fn flow(tasks: &str) -> Flow {
    Flow::from_json(
        &format!(r#"{{"spec_version": 1, "name": "f", "tasks": {tasks}}}"#),
        None,
    )
    .expect("flow")
}

async fn definition_of(name: &str) -> serde_json::Value {
    let b = backend();
    let out = client()
        .describe_state_machine()
        .state_machine_arn(b.state_machine_arn(name))
        .send()
        .await
        .expect("described");
    serde_json::from_str(out.definition()).expect("JSON definition")
}

#[tokio::test]
async fn a_deployment_gets_one_state_machine_updated_with_its_flow() {
    let b = backend();
    let name = StepFunctionsBackend::state_machine_name(&unique("deploy"));
    let first = flow(r#"[{"id": "a", "handler": "echo"}]"#);
    let arn = b.deploy(&name, &first).await.expect("created");
    assert_eq!(arn, b.state_machine_arn(&name));
    let want: serde_json::Value =
        serde_json::from_str(&b.definition(&first).expect("definition")).expect("JSON");
    assert_eq!(definition_of(&name).await, want);

    let second = flow(
        r#"[{"id": "a", "handler": "echo"}, {"id": "b", "handler": "echo", "depends_on": ["a"]}]"#,
    );
    b.deploy(&name, &second).await.expect("updated");
    let now = definition_of(&name).await;
    assert!(now["States"].get("Task-b").is_some(), "{now}");

    let listed = client().list_state_machines().send().await.expect("listed");
    let same_name = listed
        .state_machines()
        .iter()
        .filter(|m| m.name() == name)
        .count();
    assert_eq!(same_name, 1, "one state machine per deployment");
}

#[tokio::test]
async fn a_run_is_one_execution_named_by_its_id_and_can_be_stopped() {
    let b = backend();
    let name = StepFunctionsBackend::state_machine_name(&unique("runs"));
    let f = flow(r#"[{"id": "a", "handler": "echo"}]"#);
    let run_id = format!("{:032x}", u128::from(std::process::id()) << 64 | 7);
    let arn = b.start(&name, &f, &run_id).await.expect("started");
    assert_eq!(arn, b.execution_arn(&name, &run_id));
    let again = b.start(&name, &f, &run_id).await.expect("a repeated start");
    assert_eq!(again, arn, "the same run is the same execution");

    let described = client()
        .describe_execution()
        .execution_arn(&arn)
        .send()
        .await
        .expect("described");
    let input: serde_json::Value =
        serde_json::from_str(described.input().unwrap_or_default()).expect("JSON input");
    assert_eq!(input, serde_json::json!({"run_id": run_id}), "ids only");
    assert_eq!(
        b.execution(&name, &run_id).await.expect("read"),
        Some(ExecutionState::Running)
    );

    b.stop(&name, &run_id, "cancelled on request")
        .await
        .expect("stopped");
    match b.execution(&name, &run_id).await.expect("read") {
        Some(ExecutionState::Ended { status, .. }) => assert_eq!(status, "ABORTED"),
        other => panic!("expected an aborted execution, got {other:?}"),
    }
    b.stop(&name, &run_id, "again")
        .await
        .expect("stopping twice is harmless");

    assert_eq!(
        b.execution(&name, "no-such-run").await.expect("read"),
        None,
        "a run without an execution"
    );
    b.stop(&name, "no-such-run", "nothing")
        .await
        .expect("nothing to stop");
    assert!(matches!(
        b.start(&name, &f, "not a name").await,
        Err(dagy_backend_sfn::SfnError::BadRunId(_))
    ));
}
