//! Attempt spans on the DynamoDB store, where they are a list on the task item: a task whose
//! item kept no spans (it started before they were kept) still finishes, and keeps the spans of
//! the attempts that start afterwards.

use dagy_testkit as support;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Map, json};

use dagy_core::FlowBuilder;
use dagy_store::{
    AttemptOutcome, NewRun, RunRecord, RunStatus, RunStore, TaskErrorRecord, TaskStatus,
};
use dagy_store_dynamodb::DynamoStore;

const T0: u64 = 1_700_000_000_000;

async fn running_run(store: &DynamoStore, run_id: &str) -> dagy_store::Lease {
    let flow = FlowBuilder::new("spans").task("a", "echo", |t| t).build();
    let run = RunRecord {
        run_id: run_id.into(),
        flow_name: flow.name.clone(),
        deployment: None,
        status: RunStatus::Pending,
        parameters: Map::new(),
        plan: None,
        idempotency_key: None,
        cancel_requested: false,
        lease: None,
        wake_at_ms: 0,
        error: None,
        created_at_ms: T0,
        started_at_ms: None,
        finished_at_ms: None,
    };
    store
        .create_run(NewRun {
            run,
            flow: flow.validate(None).expect("a valid flow"),
        })
        .await
        .expect("create");
    store
        .acquire_lease(run_id, "owner", T0, 60_000)
        .await
        .expect("lease")
}

/// What an older version left on the item of a task it started: no `history`.
async fn forget_spans(store: &DynamoStore, run_id: &str, task_id: &str) {
    support::client_for(&support::endpoint())
        .update_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(format!("RUN#{run_id}")))
        .key("sk", AttributeValue::S(format!("TASK#{task_id}")))
        .update_expression("REMOVE history")
        .send()
        .await
        .expect("remove history");
}

async fn spans(
    store: &DynamoStore,
    run_id: &str,
) -> Vec<(u32, u64, Option<u64>, Option<TaskStatus>)> {
    let snapshot = store.load_run(run_id).await.expect("load");
    snapshot.tasks[0]
        .history
        .iter()
        .map(|s| (s.attempt, s.started_at_ms, s.ended_at_ms, s.status))
        .collect()
}

#[tokio::test]
async fn a_task_started_before_spans_were_kept_finishes_and_keeps_its_later_spans() {
    let store = support::fresh_store("history").await;
    let lease = running_run(&store, "legacy").await;
    store
        .start_attempt(&lease, "a", 1, T0)
        .await
        .expect("start 1");
    forget_spans(&store, "legacy", "a").await;
    let failed = TaskErrorRecord {
        error_type: "TaskFailed".into(),
        message: "boom".into(),
    };
    store
        .finish_attempt(&lease, "a", 1, AttemptOutcome::Retrying(failed), T0 + 1)
        .await
        .expect("finish the attempt that kept no span");
    assert_eq!(spans(&store, "legacy").await, []);

    store
        .start_attempt(&lease, "a", 2, T0 + 2)
        .await
        .expect("start 2");
    let done = AttemptOutcome::Completed(json!(2).into());
    store
        .finish_attempt(&lease, "a", 2, done.clone(), T0 + 3)
        .await
        .expect("finish 2: its span is element 0, not 1");
    store
        .finish_attempt(&lease, "a", 2, done, T0 + 4)
        .await
        .expect("the same request again is a no-op");
    assert_eq!(
        spans(&store, "legacy").await,
        [(2, T0 + 2, Some(T0 + 3), Some(TaskStatus::Completed))]
    );
}

#[tokio::test]
async fn a_retried_start_or_finish_records_one_span() {
    let store = support::fresh_store("history").await;
    let lease = running_run(&store, "retried").await;
    for _ in 0..2 {
        store
            .start_attempt(&lease, "a", 1, T0)
            .await
            .expect("start 1");
    }
    for at in [T0 + 1, T0 + 2] {
        store
            .finish_attempt(
                &lease,
                "a",
                1,
                AttemptOutcome::Completed(json!(1).into()),
                at,
            )
            .await
            .expect("finish 1");
    }
    assert_eq!(
        spans(&store, "retried").await,
        [(1, T0, Some(T0 + 1), Some(TaskStatus::Completed))]
    );
}
