//! The behaviour every [`RunStore`] must have, as one suite that any implementation runs
//! (feature `conformance`). Each check uses fresh run ids, so one store (one table) serves all.

use serde_json::{Map, json};

use dagy_core::FlowBuilder;

use crate::{
    AttemptOutcome, AttemptStart, Cursor, DISPATCH_GRACE_MS, DeploymentRecord, EnvironmentRecord,
    Lease, NewRun, RunFilter, RunRecord, RunStatus, RunStore, StoreError, TaskErrorRecord,
    TaskStatus, Verdict,
};

const TTL: u64 = 10_000;
const T0: u64 = 1_700_000_000_000;

/// Runs every check against `store`; `prefix` keeps run ids apart between suites.
pub async fn run_all(store: &dyn RunStore, prefix: &str) {
    creating_a_run_writes_pending_tasks(store, prefix).await;
    an_idempotency_key_returns_the_first_run(store, prefix).await;
    a_run_id_cannot_be_created_twice(store, prefix).await;
    missing_runs_are_not_found(store, prefix).await;
    a_lease_excludes_other_owners_until_it_lapses(store, prefix).await;
    a_taken_over_lease_fences_the_old_owner(store, prefix).await;
    a_shared_lease_keeps_one_token_for_its_workers(store, prefix).await;
    workers_of_a_shared_lease_own_their_attempts(store, prefix).await;
    attempts_start_only_in_order(store, prefix).await;
    a_completed_task_never_starts_again(store, prefix).await;
    a_retrying_task_counts_failures(store, prefix).await;
    an_interrupted_attempt_restarts_under_a_new_lease(store, prefix).await;
    a_cancel_request_stops_the_next_attempt(store, prefix).await;
    cancelling_a_pending_run_cancels_it_at_once(store, prefix).await;
    settling_leaves_final_tasks_alone(store, prefix).await;
    a_finished_run_takes_no_lease(store, prefix).await;
    an_output_over_the_limit_is_refused_and_nothing_changes(store, prefix).await;
    a_deployments_runs_are_listed_newest_first_in_pages(store, prefix).await;
    recent_runs_are_filtered_newest_first(store, prefix).await;
    lapsed_runs_are_found_and_live_or_final_ones_are_not(store, prefix).await;
    deployments_and_environments_round_trip(store, prefix).await;
    a_step_reads_the_cursors_task_and_its_upstream_and_moves_on(store, prefix).await;
    a_steps_last_attempt_end_moves_the_cursor_with_it(store, prefix).await;
    a_handed_on_step_keeps_the_lease_and_starts_the_next_attempt(store, prefix).await;
    a_handed_on_step_starts_nothing_after_a_failure_or_a_cancel(store, prefix).await;
}

/// A new run `run_id` of the conformance flow (`a`, then `b`), with an idempotency key or not.
pub fn new_run(run_id: &str, key: Option<&str>) -> NewRun {
    let flow = FlowBuilder::new("conformance")
        .task("a", "echo", |t| t)
        .task("b", "echo", |t| t.depends_on(["a"]))
        .build();
    NewRun {
        run: RunRecord {
            run_id: run_id.to_string(),
            flow_name: flow.name.clone(),
            deployment: Some("conformance".into()),
            status: RunStatus::Pending,
            parameters: Map::new(),
            plan: None,
            idempotency_key: key.map(str::to_string),
            cancel_requested: false,
            lease: None,
            wake_at_ms: 0,
            error: None,
            created_at_ms: T0,
            started_at_ms: None,
            finished_at_ms: None,
        },
        flow: flow.validate(None).expect("the conformance flow is valid"),
    }
}

async fn created(store: &dyn RunStore, run_id: &str) -> Lease {
    store
        .create_run(new_run(run_id, None))
        .await
        .expect("create");
    store
        .acquire_lease(run_id, "owner-1", T0, TTL)
        .await
        .expect("acquire")
}

/// The conformance flow's cursor at `b`, which depends on `a`.
fn cursor_at_b() -> Cursor {
    Cursor {
        task_id: "b".into(),
        depends_on: vec!["a".into()],
    }
}

/// A run `run_id` under `owner-1`'s lease, its task `a` running attempt 1.
async fn running_a(store: &dyn RunStore, run_id: &str) -> Lease {
    let lease = created(store, run_id).await;
    store
        .start_attempt(&lease, "a", 1, T0)
        .await
        .expect("start a");
    lease
}

fn error(message: &str) -> TaskErrorRecord {
    TaskErrorRecord {
        error_type: "TaskFailed".into(),
        message: message.into(),
    }
}

async fn task_status(store: &dyn RunStore, run_id: &str, task: &str) -> (TaskStatus, u32) {
    let snapshot = store.load_run(run_id).await.expect("load");
    let t = snapshot
        .tasks
        .iter()
        .find(|t| t.task_id == task)
        .expect("task exists");
    (t.status, t.attempts)
}

async fn creating_a_run_writes_pending_tasks(store: &dyn RunStore, prefix: &str) {
    let id = format!("{prefix}-create");
    let c = store.create_run(new_run(&id, None)).await.expect("create");
    assert!(c.created);
    let snapshot = store.load_run(&id).await.expect("load");
    assert_eq!(snapshot.run.status, RunStatus::Pending);
    assert_eq!(snapshot.flow.tasks.len(), 2);
    let ids: Vec<_> = snapshot.tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(ids, ["a", "b"], "tasks come back in flow order");
    assert!(
        snapshot
            .tasks
            .iter()
            .all(|t| t.status == TaskStatus::Pending)
    );
}

async fn an_idempotency_key_returns_the_first_run(store: &dyn RunStore, prefix: &str) {
    let key = format!("{prefix}-key");
    let first = store
        .create_run(new_run(&format!("{prefix}-idem-1"), Some(&key)))
        .await
        .expect("first");
    let second = store
        .create_run(new_run(&format!("{prefix}-idem-2"), Some(&key)))
        .await
        .expect("second");
    assert!(first.created && !second.created);
    assert_eq!(second.run.run_id, first.run.run_id);
    let missing = store.get_run(&format!("{prefix}-idem-2")).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
}

async fn a_run_id_cannot_be_created_twice(store: &dyn RunStore, prefix: &str) {
    let id = format!("{prefix}-twice");
    store.create_run(new_run(&id, None)).await.expect("first");
    let again = store.create_run(new_run(&id, None)).await;
    assert!(matches!(again, Err(StoreError::Invalid(_))), "{again:?}");
}

async fn missing_runs_are_not_found(store: &dyn RunStore, prefix: &str) {
    let id = format!("{prefix}-nothing");
    assert!(matches!(
        store.get_run(&id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.load_run(&id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.acquire_lease(&id, "o", T0, TTL).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn a_lease_excludes_other_owners_until_it_lapses(store: &dyn RunStore, prefix: &str) {
    let id = format!("{prefix}-lease");
    let lease = created(store, &id).await;
    assert_eq!(
        store.get_run(&id).await.expect("get").status,
        RunStatus::Running
    );
    let other = store.acquire_lease(&id, "owner-2", T0 + 1, TTL).await;
    assert!(
        matches!(other, Err(StoreError::LeaseHeld { ref owner, .. }) if owner == "owner-1"),
        "{other:?}"
    );
    let same = store
        .acquire_lease(&id, "owner-1", T0 + 1, TTL)
        .await
        .expect("re-entrant");
    assert!(same.token > lease.token);
    let renewed = store.renew_lease(&same, T0 + 2, TTL).await.expect("renew");
    assert_eq!(renewed.expires_at_ms, T0 + 2 + TTL);
    let late = store
        .acquire_lease(&id, "owner-2", T0 + 2 + TTL + 1, TTL)
        .await
        .expect("lapsed lease is taken over");
    assert_eq!(late.owner, "owner-2");
}

async fn a_taken_over_lease_fences_the_old_owner(store: &dyn RunStore, prefix: &str) {
    let id = format!("{prefix}-fence");
    let old = created(store, &id).await;
    store.release_lease(&old, T0).await.expect("release");
    let new = store
        .acquire_lease(&id, "owner-2", T0 + 1, TTL)
        .await
        .expect("free after release");
    assert!(matches!(
        store.start_attempt(&old, "a", 1, T0 + 2).await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(matches!(
        store.renew_lease(&old, T0 + 2, TTL).await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(matches!(
        store
            .finish_run(&old, RunStatus::Completed, None, T0 + 2)
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
    store
        .start_attempt(&new, "a", 1, T0 + 3)
        .await
        .expect("new owner writes");
}

async fn a_shared_lease_keeps_one_token_for_its_workers(store: &dyn RunStore, prefix: &str) {
    let id = format!("{prefix}-shared");
    store.create_run(new_run(&id, None)).await.expect("create");
    let first = store
        .join_lease(&id, "sfn", "w1", T0, TTL)
        .await
        .expect("the first worker takes the free lease");
    assert_eq!(first.attempt_owner(), "w1");
    let run = store.get_run(&id).await.expect("get");
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!(run.lease.as_ref().map(|l| l.owner.as_str()), Some("sfn"));

    let shorter = store
        .join_lease(&id, "sfn", "w2", T0 + 1, TTL / 2)
        .await
        .expect("a second worker joins");
    assert_eq!(shorter.token, first.token, "joining keeps the token");
    assert_eq!(
        shorter.expires_at_ms,
        T0 + TTL,
        "joining never shortens the lease"
    );
    let longer = store
        .join_lease(&id, "sfn", "w3", T0 + 2, 2 * TTL)
        .await
        .expect("a third worker joins");
    assert_eq!(longer.token, first.token);
    assert_eq!(longer.expires_at_ms, T0 + 2 + 2 * TTL);

    for other in [
        store.acquire_lease(&id, "executor", T0 + 3, TTL).await,
        store.join_lease(&id, "other", "w", T0 + 3, TTL).await,
    ] {
        assert!(
            matches!(other, Err(StoreError::LeaseHeld { ref owner, .. }) if owner == "sfn"),
            "{other:?}"
        );
    }
    let lapsed = store
        .join_lease(&id, "sfn", "w4", T0 + 10 * TTL, TTL)
        .await
        .expect("its own lapsed lease is joined again");
    assert_eq!(
        lapsed.token, first.token,
        "lapsing alone does not fence the owner"
    );

    store
        .finish_run(
            &lapsed,
            RunStatus::Failed,
            Some("stopped".into()),
            T0 + 10 * TTL,
        )
        .await
        .expect("any worker of the shared lease ends the run");
    let after = store.join_lease(&id, "sfn", "w5", T0 + 10 * TTL, TTL).await;
    assert!(
        matches!(
            after,
            Err(StoreError::RunFinished {
                status: RunStatus::Failed,
                ..
            })
        ),
        "{after:?}"
    );
}

async fn workers_of_a_shared_lease_own_their_attempts(store: &dyn RunStore, prefix: &str) {
    let id = format!("{prefix}-workers");
    store.create_run(new_run(&id, None)).await.expect("create");
    let w1 = store
        .join_lease(&id, "sfn", "w1", T0, TTL)
        .await
        .expect("w1");
    let w2 = store
        .join_lease(&id, "sfn", "w2", T0, TTL)
        .await
        .expect("w2");
    store
        .start_attempt(&w1, "a", 1, T0)
        .await
        .expect("w1 starts a");
    let again = store.start_attempt(&w1, "a", 1, T0).await;
    assert!(
        matches!(again, Ok(AttemptStart { interrupted: false })),
        "the same worker starting again is a retried request: {again:?}"
    );
    let duplicate = store.start_attempt(&w2, "a", 1, T0).await;
    assert!(
        matches!(duplicate, Err(StoreError::TaskConflict { .. })),
        "a duplicate worker does not run the same attempt: {duplicate:?}"
    );
    let taken = store
        .start_attempt(&w2, "a", 2, T0 + 1)
        .await
        .expect("a later invocation takes the task over");
    assert!(taken.interrupted);
    let late = store
        .finish_attempt(
            &w1,
            "a",
            1,
            AttemptOutcome::Completed(json!("late").into()),
            T0 + 2,
        )
        .await;
    assert!(
        matches!(late, Err(StoreError::TaskConflict { .. })),
        "the interrupted worker's result is refused: {late:?}"
    );
    let result = AttemptOutcome::Completed(json!("w2").into());
    store
        .finish_attempt(&w2, "a", 2, result.clone(), T0 + 3)
        .await
        .expect("w2 records its result");
    store
        .finish_attempt(&w2, "a", 2, result, T0 + 3)
        .await
        .expect("recording it twice is a retried request");
    let snapshot = store.load_run(&id).await.expect("load");
    let a = &snapshot.tasks[0];
    assert_eq!(
        (a.status, a.attempts, a.interruptions),
        (TaskStatus::Completed, 2, 1)
    );
    assert_eq!(a.output_value(), Some(json!("w2")));
    assert_eq!(a.owner.as_deref(), Some("w2"));
    a_shared_leases_retrying_task_settles_as_failed(store, &id, &w1, &w2).await;
}

/// Under a shared lease, a task one worker left retrying is settled by another as failed.
async fn a_shared_leases_retrying_task_settles_as_failed(
    store: &dyn RunStore,
    id: &str,
    w1: &Lease,
    w2: &Lease,
) {
    store
        .start_attempt(w1, "b", 1, T0 + 4)
        .await
        .expect("start b");
    store
        .finish_attempt(w1, "b", 1, AttemptOutcome::Retrying(error("flaky")), T0 + 5)
        .await
        .expect("b retrying");
    store
        .settle_tasks(
            w2,
            &["b".to_string()],
            TaskStatus::Failed,
            error("gave up"),
            T0 + 6,
        )
        .await
        .expect("a task whose retries were given up on settles as failed");
    assert_eq!(task_status(store, id, "b").await, (TaskStatus::Failed, 1));
}

async fn attempts_start_only_in_order(store: &dyn RunStore, prefix: &str) {
    let id = format!("{prefix}-order");
    let lease = created(store, &id).await;
    let skipped_ahead = store.start_attempt(&lease, "a", 2, T0).await;
    assert!(
        matches!(skipped_ahead, Err(StoreError::TaskConflict { .. })),
        "{skipped_ahead:?}"
    );
    let started = store
        .start_attempt(&lease, "a", 1, T0)
        .await
        .expect("attempt 1");
    assert!(!started.interrupted);
    assert_eq!(task_status(store, &id, "a").await, (TaskStatus::Running, 1));
    let again = store.start_attempt(&lease, "a", 1, T0).await;
    assert!(
        matches!(again, Ok(AttemptStart { interrupted: false })),
        "the same start under the same lease is idempotent (a retried request): {again:?}"
    );
    let next_one = store.start_attempt(&lease, "a", 3, T0).await;
    assert!(
        matches!(next_one, Err(StoreError::TaskConflict { .. })),
        "{next_one:?}"
    );
    let unknown = store.start_attempt(&lease, "zzz", 1, T0).await;
    assert!(
        matches!(unknown, Err(StoreError::UnknownTask { .. })),
        "{unknown:?}"
    );
}

async fn a_completed_task_never_starts_again(store: &dyn RunStore, prefix: &str) {
    let id = format!("{prefix}-done");
    let lease = created(store, &id).await;
    store
        .start_attempt(&lease, "a", 1, T0)
        .await
        .expect("start");
    store
        .finish_attempt(
            &lease,
            "a",
            1,
            AttemptOutcome::Completed(json!({"n": 1}).into()),
            T0 + 5,
        )
        .await
        .expect("finish");
    store
        .finish_attempt(
            &lease,
            "a",
            1,
            AttemptOutcome::Completed(json!({"n": 1}).into()),
            T0 + 5,
        )
        .await
        .expect("finishing twice the same way is idempotent (a retried request)");
    let different = store
        .finish_attempt(
            &lease,
            "a",
            1,
            AttemptOutcome::Retrying(error("late")),
            T0 + 5,
        )
        .await;
    assert!(
        matches!(different, Err(StoreError::TaskConflict { .. })),
        "{different:?}"
    );
    let again = store.start_attempt(&lease, "a", 2, T0 + 6).await;
    assert!(
        matches!(
            again,
            Err(StoreError::TaskConflict {
                status: TaskStatus::Completed,
                ..
            })
        ),
        "{again:?}"
    );
    let takeover = {
        store.release_lease(&lease, T0).await.expect("release");
        store
            .acquire_lease(&id, "owner-2", T0 + 7, TTL)
            .await
            .expect("acquire")
    };
    let still = store.start_attempt(&takeover, "a", 2, T0 + 8).await;
    assert!(
        matches!(still, Err(StoreError::TaskConflict { .. })),
        "{still:?}"
    );
    let snapshot = store.load_run(&id).await.expect("load");
    assert_eq!(snapshot.tasks[0].output_value(), Some(json!({"n": 1})));
    assert_eq!(snapshot.tasks[0].duration_ms(), Some(5));
}

async fn a_retrying_task_counts_failures(store: &dyn RunStore, prefix: &str) {
    let id = format!("{prefix}-retry");
    let lease = created(store, &id).await;
    store
        .start_attempt(&lease, "a", 1, T0)
        .await
        .expect("start 1");
    store
        .finish_attempt(
            &lease,
            "a",
            1,
            AttemptOutcome::Retrying(error("boom")),
            T0 + 1,
        )
        .await
        .expect("retrying");
    assert_eq!(
        task_status(store, &id, "a").await,
        (TaskStatus::Retrying, 1)
    );
    let wrong = store
        .finish_attempt(
            &lease,
            "a",
            1,
            AttemptOutcome::Completed(json!(1).into()),
            T0 + 2,
        )
        .await;
    assert!(
        matches!(wrong, Err(StoreError::TaskConflict { .. })),
        "{wrong:?}"
    );
    store
        .start_attempt(&lease, "a", 2, T0 + 3)
        .await
        .expect("start 2");
    store
        .finish_attempt(
            &lease,
            "a",
            2,
            AttemptOutcome::Finished(TaskStatus::Failed, error("boom again")),
            T0 + 4,
        )
        .await
        .expect("failed");
    let snapshot = store.load_run(&id).await.expect("load");
    let a = &snapshot.tasks[0];
    assert_eq!(
        (a.status, a.attempts, a.failures),
        (TaskStatus::Failed, 2, 2)
    );
    assert_eq!(
        a.error.as_ref().map(|e| e.message.as_str()),
        Some("boom again")
    );
    let timeline: Vec<_> = a
        .history
        .iter()
        .map(|s| (s.attempt, s.started_at_ms, s.ended_at_ms, s.status))
        .collect();
    assert_eq!(
        timeline,
        [
            (1, T0, Some(T0 + 1), Some(TaskStatus::Retrying)),
            (2, T0 + 3, Some(T0 + 4), Some(TaskStatus::Failed)),
        ],
        "each attempt's span, the retry's delay between them"
    );
}

async fn an_interrupted_attempt_restarts_under_a_new_lease(store: &dyn RunStore, prefix: &str) {
    let id = format!("{prefix}-interrupt");
    let dead = created(store, &id).await;
    store
        .start_attempt(&dead, "a", 1, T0)
        .await
        .expect("start under the dying executor");
    let next = store
        .acquire_lease(&id, "owner-2", T0 + TTL + 1, TTL)
        .await
        .expect("lapsed");
    let restarted = store
        .start_attempt(&next, "a", 2, T0 + TTL + 2)
        .await
        .expect("restart");
    assert!(restarted.interrupted);
    let snapshot = store.load_run(&id).await.expect("load");
    let a = &snapshot.tasks[0];
    assert_eq!((a.attempts, a.interruptions, a.failures), (2, 1, 0));
    let late = store
        .finish_attempt(
            &dead,
            "a",
            1,
            AttemptOutcome::Completed(json!("late").into()),
            T0 + TTL + 3,
        )
        .await;
    assert!(
        matches!(late, Err(StoreError::LeaseLost { .. })),
        "{late:?}"
    );
}

async fn a_cancel_request_stops_the_next_attempt(store: &dyn RunStore, prefix: &str) {
    let id = format!("{prefix}-cancel");
    let lease = created(store, &id).await;
    let run = store.request_cancel(&id, T0 + 1).await.expect("cancel");
    assert!(run.cancel_requested);
    assert_eq!(
        run.status,
        RunStatus::Running,
        "a running run stops at its next boundary"
    );
    let start = store.start_attempt(&lease, "a", 1, T0 + 2).await;
    assert!(
        matches!(start, Err(StoreError::CancelRequested { .. })),
        "{start:?}"
    );
    store
        .settle_tasks(
            &lease,
            &["a".into(), "b".into()],
            TaskStatus::Cancelled,
            error("cancelled"),
            T0 + 3,
        )
        .await
        .expect("settle");
    let run = store
        .finish_run(
            &lease,
            RunStatus::Cancelled,
            Some("cancelled on request".into()),
            T0 + 3,
        )
        .await
        .expect("finish");
    assert_eq!(run.status, RunStatus::Cancelled);
    assert_eq!(task_status(store, &id, "b").await.0, TaskStatus::Cancelled);
}

async fn cancelling_a_pending_run_cancels_it_at_once(store: &dyn RunStore, prefix: &str) {
    let id = format!("{prefix}-cancel-pending");
    store.create_run(new_run(&id, None)).await.expect("create");
    let run = store.request_cancel(&id, T0).await.expect("cancel");
    assert_eq!(run.status, RunStatus::Cancelled);
    assert_eq!(task_status(store, &id, "a").await.0, TaskStatus::Cancelled);
    let lease = store.acquire_lease(&id, "late", T0 + 1, TTL).await;
    assert!(
        matches!(lease, Err(StoreError::RunFinished { .. })),
        "{lease:?}"
    );
}

async fn settling_leaves_final_tasks_alone(store: &dyn RunStore, prefix: &str) {
    let id = format!("{prefix}-settle");
    let lease = created(store, &id).await;
    store
        .start_attempt(&lease, "a", 1, T0)
        .await
        .expect("start");
    store
        .finish_attempt(
            &lease,
            "a",
            1,
            AttemptOutcome::Completed(json!(1).into()),
            T0 + 1,
        )
        .await
        .expect("finish");
    store
        .settle_tasks(
            &lease,
            &["a".into(), "b".into()],
            TaskStatus::Skipped,
            error("upstream failed"),
            T0 + 2,
        )
        .await
        .expect("settle");
    assert_eq!(task_status(store, &id, "a").await.0, TaskStatus::Completed);
    assert_eq!(task_status(store, &id, "b").await.0, TaskStatus::Skipped);
    let bad = store
        .settle_tasks(
            &lease,
            &["b".into()],
            TaskStatus::Completed,
            error("no"),
            T0 + 3,
        )
        .await;
    assert!(matches!(bad, Err(StoreError::Invalid(_))), "{bad:?}");
}

async fn a_finished_run_takes_no_lease(store: &dyn RunStore, prefix: &str) {
    let id = format!("{prefix}-final");
    let lease = created(store, &id).await;
    store
        .finish_run(&lease, RunStatus::Completed, None, T0 + 1)
        .await
        .expect("finish");
    let again = store.acquire_lease(&id, "owner-2", T0 + 2, TTL).await;
    assert!(
        matches!(
            again,
            Err(StoreError::RunFinished {
                status: RunStatus::Completed,
                ..
            })
        ),
        "{again:?}"
    );
    let backwards = store
        .finish_run(&lease, RunStatus::Failed, None, T0 + 3)
        .await;
    assert!(backwards.is_err(), "a final run never changes status");
    let run = store.get_run(&id).await.expect("get");
    assert_eq!(
        (run.status, run.finished_at_ms),
        (RunStatus::Completed, Some(T0 + 1))
    );
}

async fn an_output_over_the_limit_is_refused_and_nothing_changes(
    store: &dyn RunStore,
    prefix: &str,
) {
    let id = format!("{prefix}-big");
    let lease = created(store, &id).await;
    store
        .start_attempt(&lease, "a", 1, T0)
        .await
        .expect("start");
    let limit = store.limits().max_output_bytes;
    let big = json!("x".repeat(limit + 1));
    let result = store
        .finish_attempt(
            &lease,
            "a",
            1,
            AttemptOutcome::Completed(big.into()),
            T0 + 1,
        )
        .await;
    match result {
        Err(StoreError::TooLarge {
            bytes, limit: l, ..
        }) => {
            assert_eq!(l, limit);
            assert!(bytes > limit);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(task_status(store, &id, "a").await, (TaskStatus::Running, 1));
}

async fn a_deployments_runs_are_listed_newest_first_in_pages(store: &dyn RunStore, prefix: &str) {
    let deployment = format!("{prefix}-listing");
    for i in 0..7u64 {
        let mut new = new_run(&format!("{prefix}-list-{i}"), None);
        new.run.deployment = Some(deployment.clone());
        new.run.created_at_ms = T0 + i * 1000;
        store.create_run(new).await.expect("create");
    }
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store
            .list_runs(&deployment, 3, next.as_deref())
            .await
            .expect("list");
        pages += 1;
        assert!(page.runs.len() <= 3);
        seen.extend(page.runs.into_iter().map(|r| r.run_id));
        next = page.next;
        if next.is_none() {
            break;
        }
        assert!(pages < 10, "pagination must end");
    }
    let expected: Vec<String> = (0..7).rev().map(|i| format!("{prefix}-list-{i}")).collect();
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);
    let none = store
        .list_runs(&format!("{prefix}-no-such"), 3, None)
        .await
        .expect("list");
    assert!(none.runs.is_empty() && none.next.is_none());
}

async fn recent_runs_are_filtered_newest_first(store: &dyn RunStore, prefix: &str) {
    let deployment = format!("{prefix}-recent");
    for i in 0..4u64 {
        let mut new = new_run(&format!("{prefix}-recent-{i}"), None);
        new.run.deployment = Some(deployment.clone());
        new.run.created_at_ms = T0 + i * 1000;
        store.create_run(new).await.expect("create");
    }
    store
        .request_cancel(&format!("{prefix}-recent-2"), T0 + 5000)
        .await
        .expect("cancel");
    let ids = |runs: Vec<RunRecord>| runs.into_iter().map(|r| r.run_id).collect::<Vec<_>>();
    let mut filter = RunFilter {
        name: Some(deployment.clone()),
        ..RunFilter::default()
    };
    let all = store.recent_runs(&filter, 10).await.expect("list");
    let expected: Vec<String> = (0..4)
        .rev()
        .map(|i| format!("{prefix}-recent-{i}"))
        .collect();
    assert_eq!(ids(all), expected);
    assert_eq!(
        ids(store.recent_runs(&filter, 2).await.expect("list")),
        expected[..2]
    );
    filter.status = Some(RunStatus::Cancelled);
    assert_eq!(
        ids(store.recent_runs(&filter, 10).await.expect("list")),
        [format!("{prefix}-recent-2")]
    );
    filter.status = None;
    filter.since_ms = Some(T0 + 1000);
    filter.until_ms = Some(T0 + 3000);
    assert_eq!(
        ids(store.recent_runs(&filter, 10).await.expect("list")),
        [format!("{prefix}-recent-2"), format!("{prefix}-recent-1")]
    );
}

async fn lapsed_runs_are_found_and_live_or_final_ones_are_not(store: &dyn RunStore, prefix: &str) {
    let never_picked = format!("{prefix}-lapse-pending");
    store
        .create_run(new_run(&never_picked, None))
        .await
        .expect("create");
    let died = format!("{prefix}-lapse-died");
    created(store, &died).await;
    let alive = format!("{prefix}-lapse-alive");
    store
        .create_run(new_run(&alive, None))
        .await
        .expect("create");
    store
        .acquire_lease(&alive, "owner-1", T0, 10 * DISPATCH_GRACE_MS)
        .await
        .expect("acquire");
    let done = format!("{prefix}-lapse-done");
    let lease = created(store, &done).await;
    store
        .finish_run(&lease, RunStatus::Completed, None, T0 + 1)
        .await
        .expect("finish");

    let ids =
        |runs: Vec<RunRecord>| -> Vec<String> { runs.into_iter().map(|r| r.run_id).collect() };
    let early = ids(store.find_lapsed_runs(T0 + 1, 1000).await.expect("query"));
    assert!(
        !early.contains(&never_picked) && !early.contains(&died),
        "{early:?}"
    );
    let later = ids(store
        .find_lapsed_runs(T0 + DISPATCH_GRACE_MS + TTL, 1000)
        .await
        .expect("query"));
    assert!(
        later.contains(&never_picked),
        "a run nobody picked up is found: {later:?}"
    );
    assert!(
        later.contains(&died),
        "a run whose lease lapsed is found: {later:?}"
    );
    assert!(!later.contains(&alive), "a live lease is not lapsed");
    assert!(!later.contains(&done), "a final run is never lapsed");
    let one = store
        .find_lapsed_runs(T0 + DISPATCH_GRACE_MS + TTL, 1)
        .await
        .expect("query");
    assert_eq!(one.len(), 1);
}

async fn deployments_and_environments_round_trip(store: &dyn RunStore, prefix: &str) {
    let name = format!("{prefix}-deploy");
    assert_eq!(store.get_deployment(&name).await.expect("get"), None);
    let flow = new_run("unused", None).flow.into_spec();
    let deployment = DeploymentRecord {
        name: name.clone(),
        flow,
        environment: Some(format!("{prefix}-env")),
        default_runtime_tier: Some(dagy_core::RuntimeTier::Small),
        backend: None,
        version: 0,
        updated_at_ms: T0,
    };
    let first = store.put_deployment(deployment.clone()).await.expect("put");
    let second = store.put_deployment(deployment).await.expect("put again");
    assert_eq!((first.version, second.version), (1, 2));
    let read = store
        .get_deployment(&name)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(read, second);
    let env = EnvironmentRecord {
        name: format!("{prefix}-env"),
        default_runtime_tier: Some(dagy_core::RuntimeTier::Medium),
        updated_at_ms: T0,
    };
    store.put_environment(env.clone()).await.expect("put env");
    assert_eq!(
        store.get_environment(&env.name).await.expect("get env"),
        Some(env)
    );
    assert_eq!(
        store
            .get_environment(&format!("{prefix}-none"))
            .await
            .expect("get"),
        None
    );
}

/// `finish_and_advance`: the task ends, the cursor moves past it with the verdict and the lease
/// is released; under a stale lease nothing is written.
async fn a_steps_last_attempt_end_moves_the_cursor_with_it(store: &dyn RunStore, prefix: &str) {
    let id = format!("{prefix}-step-end");
    let lease = running_a(store, &id).await;
    let second = cursor_at_b();
    let error = TaskErrorRecord {
        error_type: "Boom".into(),
        message: "boom".into(),
    };
    let failed = Verdict::Failed("task a failed: boom".into());
    let ended = AttemptOutcome::Finished(TaskStatus::Failed, error.clone());
    let stale = Lease {
        token: lease.token + 1,
        ..lease.clone()
    };
    let refused = store
        .finish_and_advance(
            &stale,
            "a",
            1,
            ended.clone(),
            Some(&second),
            Some(&failed),
            T0 + 1,
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::LeaseLost { .. })),
        "a stale lease writes nothing: {refused:?}"
    );
    let view = store.load_step(&id).await.expect("load").expect("state");
    assert_eq!(
        view.task.expect("still at a").record.status,
        TaskStatus::Running
    );

    store
        .finish_and_advance(&lease, "a", 1, ended, Some(&second), Some(&failed), T0 + 1)
        .await
        .expect("finish a and move on");
    let run = store.get_run(&id).await.expect("run");
    assert_eq!(run.lease, None, "the step's end releases the lease");
    let view = store.load_step(&id).await.expect("load").expect("state");
    let at = view.task.expect("the cursor is at b");
    assert_eq!(at.spec.id, "b");
    assert_eq!(at.upstream[0].status, TaskStatus::Failed);
    assert_eq!(at.upstream[0].error, Some(Box::new(error)));
    assert_eq!(
        view.state.final_status(),
        (RunStatus::Failed, Some("task a failed: boom".into()))
    );
}

async fn a_step_reads_the_cursors_task_and_its_upstream_and_moves_on(
    store: &dyn RunStore,
    prefix: &str,
) {
    let id = format!("{prefix}-steps");
    let lease = created(store, &id).await;
    let view = store
        .load_step(&id)
        .await
        .expect("load")
        .expect("a new run has step state");
    let first = view.task.expect("the cursor is at the first task");
    assert_eq!(first.spec.id, "a");
    assert_eq!(first.record.status, TaskStatus::Pending);
    assert!(first.upstream.is_empty());
    let second = cursor_at_b();
    assert_eq!(first.next, Some(second.clone()));
    assert_eq!(view.state.final_status(), (RunStatus::Completed, None));

    store
        .start_attempt(&lease, "a", 1, T0)
        .await
        .expect("start a");
    store
        .finish_attempt(
            &lease,
            "a",
            1,
            AttemptOutcome::Completed(json!({"n": 1}).into()),
            T0 + 1,
        )
        .await
        .expect("finish a");
    store
        .advance_cursor(&lease, "a", Some(&second), None, T0 + 2)
        .await
        .expect("advance");
    let after = store.get_run(&id).await.expect("run");
    assert_eq!(after.lease, None, "advancing releases the lease");
    assert_eq!(after.wake_at_ms, T0 + 2 + DISPATCH_GRACE_MS);
    let stale = store
        .advance_cursor(&lease, "a", Some(&second), None, T0 + 3)
        .await;
    assert!(
        matches!(stale, Err(StoreError::LeaseLost { .. })),
        "a released lease moves nothing: {stale:?}"
    );

    let lease = store
        .acquire_lease(&id, "owner-2", T0 + 4, TTL)
        .await
        .expect("next step's lease");
    let view = store.load_step(&id).await.expect("load").expect("state");
    let step = view.task.expect("the cursor is at b");
    assert_eq!(step.spec.id, "b");
    assert_eq!(step.spec.depends_on, ["a"]);
    assert_eq!(step.next, None, "b is the last task");
    assert_eq!(step.upstream.len(), 1);
    assert_eq!(step.upstream[0].output_value(), Some(json!({"n": 1})));

    let failed = Verdict::Failed("task b failed: boom".into());
    store
        .advance_cursor(&lease, "b", None, Some(&failed), T0 + 5)
        .await
        .expect("advance to the end");
    let view = store.load_step(&id).await.expect("load").expect("state");
    assert!(view.task.is_none(), "the cursor is past the last task");
    assert_eq!(
        view.state.final_status(),
        (RunStatus::Failed, Some("task b failed: boom".into()))
    );
    let missing = store.load_step(&format!("{prefix}-no-such-run")).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
}

/// `finish_and_continue`: the task ends, the cursor moves on, the lease stays this owner's and
/// the next task's attempt is started; under a stale lease nothing is written.
async fn a_handed_on_step_keeps_the_lease_and_starts_the_next_attempt(
    store: &dyn RunStore,
    prefix: &str,
) {
    let id = format!("{prefix}-hand-on");
    let lease = running_a(store, &id).await;
    let second = cursor_at_b();
    let done = AttemptOutcome::Completed(json!({"n": 1}).into());
    let stale = Lease {
        token: lease.token + 1,
        ..lease.clone()
    };
    let refused = store
        .finish_and_continue(&stale, "a", 1, done.clone(), &second, None, T0 + 1, TTL)
        .await;
    assert!(
        matches!(refused, Err(StoreError::LeaseLost { .. })),
        "a stale lease writes nothing: {refused:?}"
    );
    assert_eq!(task_status(store, &id, "a").await, (TaskStatus::Running, 1));

    let handed = store
        .finish_and_continue(&lease, "a", 1, done, &second, None, T0 + 1, TTL)
        .await
        .expect("finish a and hand on");
    assert_eq!(handed.lease.owner, "owner-1");
    assert_eq!(
        handed.lease.expires_at_ms,
        T0 + 1 + TTL,
        "the lease is renewed"
    );
    let run = store.get_run(&id).await.expect("run");
    assert_eq!(run.lease.as_ref(), Some(&handed.lease), "the lease is held");
    let step = handed.view.task.expect("the cursor is at b");
    assert_eq!(step.spec.id, "b");
    assert_eq!(
        step.record.status,
        TaskStatus::Pending,
        "read before the start"
    );
    assert_eq!(step.upstream[0].output_value(), Some(json!({"n": 1})));
    assert_eq!(
        handed.started,
        Some((1, AttemptStart { interrupted: false }))
    );
    assert_eq!(task_status(store, &id, "b").await, (TaskStatus::Running, 1));
    store
        .finish_attempt(
            &handed.lease,
            "b",
            1,
            AttemptOutcome::Completed(json!(2).into()),
            T0 + 2,
        )
        .await
        .expect("b's attempt is the handed lease's");
    assert_eq!(
        task_status(store, &id, "b").await,
        (TaskStatus::Completed, 1)
    );
}

/// `finish_and_continue` starts the next task only when it can run: not after its upstream
/// failed (the verdict is recorded), nor once a cancel was asked for.
async fn a_handed_on_step_starts_nothing_after_a_failure_or_a_cancel(
    store: &dyn RunStore,
    prefix: &str,
) {
    let second = cursor_at_b();
    let id = format!("{prefix}-hand-on-failed");
    let lease = running_a(store, &id).await;
    let failed = Verdict::Failed("task a failed: boom".into());
    let ended = AttemptOutcome::Finished(TaskStatus::Failed, error("boom"));
    let handed = store
        .finish_and_continue(&lease, "a", 1, ended, &second, Some(&failed), T0 + 1, TTL)
        .await
        .expect("finish a and hand on");
    assert_eq!(handed.started, None, "b's upstream failed");
    assert_eq!(handed.view.next_attempt(), None);
    assert_eq!(task_status(store, &id, "b").await, (TaskStatus::Pending, 0));
    assert_eq!(
        handed.view.state.final_status(),
        (RunStatus::Failed, Some("task a failed: boom".into()))
    );

    let id = format!("{prefix}-hand-on-cancelled");
    let lease = running_a(store, &id).await;
    store.request_cancel(&id, T0 + 1).await.expect("cancel");
    let done = AttemptOutcome::Completed(json!(1).into());
    let handed = store
        .finish_and_continue(&lease, "a", 1, done, &second, None, T0 + 2, TTL)
        .await
        .expect("finish a and hand on");
    assert_eq!(handed.started, None, "a cancel was asked for");
    assert!(handed.view.run.cancel_requested);
    assert_eq!(task_status(store, &id, "b").await, (TaskStatus::Pending, 0));
}
