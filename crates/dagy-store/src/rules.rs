//! The store's conditions as pure functions over records: one place for every rule of
//! [`RunStore`](crate::RunStore), shared by the stores that hold records themselves (memory,
//! SQLite). Each function checks its conditions before it changes anything, so an error leaves
//! the records as they were. The DynamoDB store states the same rules as condition expressions;
//! the conformance suite holds all stores to them.

use crate::record::{
    AttemptOutcome, AttemptSpan, AttemptStart, Lease, RunRecord, TaskErrorRecord, TaskRecord,
    TaskStatus,
};
use crate::{DISPATCH_GRACE_MS, RunStatus, StoreError};

/// Fails unless `lease` still holds `run` and the run is not final.
pub fn fence(run: &RunRecord, lease: &Lease) -> Result<(), StoreError> {
    if run.lease.as_ref().map(|l| (l.token, l.owner.as_str()))
        != Some((lease.token, lease.owner.as_str()))
    {
        return Err(StoreError::LeaseLost {
            run_id: lease.run_id.clone(),
        });
    }
    not_final(run)
}

fn not_final(run: &RunRecord) -> Result<(), StoreError> {
    if run.status.is_final() {
        return Err(StoreError::RunFinished {
            run_id: run.run_id.clone(),
            status: run.status,
        });
    }
    Ok(())
}

fn take(run: &mut RunRecord, lease: &Lease, now_ms: u64) {
    run.lease = Some(lease.clone());
    run.wake_at_ms = lease.expires_at_ms;
    if run.status == RunStatus::Pending {
        run.status = RunStatus::Running;
        run.started_at_ms = Some(now_ms);
    }
}

/// [`RunStore::acquire_lease`](crate::RunStore::acquire_lease) on `run`; `next_token` is the
/// run's token counter, bumped when the lease is taken.
pub fn acquire(
    run: &mut RunRecord,
    next_token: &mut u64,
    owner: &str,
    now_ms: u64,
    ttl_ms: u64,
) -> Result<Lease, StoreError> {
    not_final(run)?;
    if let Some(held) = &run.lease
        && held.owner != owner
        && held.expires_at_ms > now_ms
    {
        return Err(StoreError::LeaseHeld {
            run_id: run.run_id.clone(),
            owner: held.owner.clone(),
            expires_at_ms: held.expires_at_ms,
        });
    }
    let lease = Lease {
        run_id: run.run_id.clone(),
        owner: owner.to_string(),
        token: *next_token,
        expires_at_ms: now_ms.saturating_add(ttl_ms),
        worker: None,
    };
    *next_token += 1;
    take(run, &lease, now_ms);
    Ok(lease)
}

/// [`RunStore::join_lease`](crate::RunStore::join_lease) on `run`.
pub fn join(
    run: &mut RunRecord,
    next_token: &mut u64,
    owner: &str,
    worker: &str,
    now_ms: u64,
    ttl_ms: u64,
) -> Result<Lease, StoreError> {
    not_final(run)?;
    let wanted = now_ms.saturating_add(ttl_ms);
    let (token, expires_at_ms) = match &run.lease {
        Some(held) if held.owner == owner => (held.token, held.expires_at_ms.max(wanted)),
        Some(held) if held.expires_at_ms > now_ms => {
            return Err(StoreError::LeaseHeld {
                run_id: run.run_id.clone(),
                owner: held.owner.clone(),
                expires_at_ms: held.expires_at_ms,
            });
        }
        _ => {
            *next_token += 1;
            (*next_token - 1, wanted)
        }
    };
    let shared = Lease {
        run_id: run.run_id.clone(),
        owner: owner.to_string(),
        token,
        expires_at_ms,
        worker: None,
    };
    take(run, &shared, now_ms);
    Ok(Lease {
        worker: Some(worker.to_string()),
        ..shared
    })
}

/// [`RunStore::renew_lease`](crate::RunStore::renew_lease) on `run`.
pub fn renew(
    run: &mut RunRecord,
    lease: &Lease,
    now_ms: u64,
    ttl_ms: u64,
) -> Result<Lease, StoreError> {
    fence(run, lease)?;
    let renewed = Lease {
        expires_at_ms: now_ms.saturating_add(ttl_ms),
        ..lease.clone()
    };
    run.lease = Some(renewed.clone());
    run.wake_at_ms = renewed.expires_at_ms;
    Ok(renewed)
}

/// [`RunStore::release_lease`](crate::RunStore::release_lease) on `run`: frees it if `lease`
/// is still its lease, and does nothing otherwise.
pub fn release(run: &mut RunRecord, lease: &Lease, now_ms: u64) {
    if run.lease.as_ref().map(|l| l.token) == Some(lease.token) {
        free(run, now_ms);
    }
}

/// Drops the run's lease and lets the sweep look at it after the dispatch grace.
pub fn free(run: &mut RunRecord, now_ms: u64) {
    run.lease = None;
    run.wake_at_ms = now_ms.saturating_add(DISPATCH_GRACE_MS);
}

/// Whether the task's current attempt was started under this lease by its attempt owner.
fn is_mine(task: &TaskRecord, lease: &Lease) -> bool {
    task.lease_token == Some(lease.token) && task.owner.as_deref() == Some(lease.attempt_owner())
}

fn conflict(run_id: &str, task: &TaskRecord) -> StoreError {
    StoreError::TaskConflict {
        run_id: run_id.to_string(),
        task_id: task.task_id.clone(),
        status: task.status,
        attempts: task.attempts,
    }
}

/// [`RunStore::start_attempt`](crate::RunStore::start_attempt) on a run and one of its tasks.
pub fn start_attempt(
    run: &RunRecord,
    task: &mut TaskRecord,
    lease: &Lease,
    attempt: u32,
    now_ms: u64,
) -> Result<AttemptStart, StoreError> {
    fence(run, lease)?;
    if run.cancel_requested {
        return Err(StoreError::CancelRequested {
            run_id: lease.run_id.clone(),
        });
    }
    let mine = is_mine(task, lease);
    if task.status == TaskStatus::Running && task.attempts == attempt && mine {
        return Ok(AttemptStart { interrupted: false });
    }
    let interrupted = task.status == TaskStatus::Running && !mine;
    let startable = matches!(task.status, TaskStatus::Pending | TaskStatus::Retrying);
    if !(startable || interrupted) || task.attempts + 1 != attempt {
        return Err(conflict(&lease.run_id, task));
    }
    if interrupted {
        task.interruptions += 1;
    }
    task.status = TaskStatus::Running;
    task.attempts = attempt;
    task.lease_token = Some(lease.token);
    task.owner = Some(lease.attempt_owner().to_string());
    task.started_at_ms.get_or_insert(now_ms);
    // Most tasks run once: room for one span, not the four a first push reserves.
    task.history.reserve_exact(1);
    task.history.push(AttemptSpan {
        attempt,
        started_at_ms: now_ms,
        ended_at_ms: None,
        status: None,
    });
    Ok(AttemptStart { interrupted })
}

/// [`RunStore::finish_attempt`](crate::RunStore::finish_attempt) on a run and one of its tasks;
/// `intended` is the status [`check_outcome`](crate::check_outcome) found for `outcome`.
pub fn finish_attempt(
    run: &RunRecord,
    task: &mut TaskRecord,
    lease: &Lease,
    attempt: u32,
    outcome: AttemptOutcome,
    intended: TaskStatus,
    now_ms: u64,
) -> Result<(), StoreError> {
    fence(run, lease)?;
    let mine = is_mine(task, lease);
    if task.status == intended && task.attempts == attempt && mine {
        return Ok(());
    }
    if task.status != TaskStatus::Running || task.attempts != attempt || !mine {
        return Err(conflict(&lease.run_id, task));
    }
    match outcome {
        AttemptOutcome::Completed(output) => {
            task.output = Some(output);
            task.error = None;
            task.finished_at_ms = Some(now_ms);
        }
        AttemptOutcome::Retrying(error) => {
            task.failures += 1;
            task.error = Some(Box::new(error));
        }
        AttemptOutcome::Finished(_, error) => {
            task.failures += 1;
            task.error = Some(Box::new(error));
            task.finished_at_ms = Some(now_ms);
        }
    }
    task.status = intended;
    if let Some(span) = task.history.last_mut().filter(|s| s.attempt == attempt) {
        span.ended_at_ms = Some(now_ms);
        span.status = Some(intended);
    }
    Ok(())
}

/// [`RunStore::settle_tasks`](crate::RunStore::settle_tasks) on one task: a task already final
/// stays as it is. Returns whether it changed.
pub fn settle(
    task: &mut TaskRecord,
    status: TaskStatus,
    error: &TaskErrorRecord,
    now_ms: u64,
) -> bool {
    if task.status.is_final() {
        return false;
    }
    task.status = status;
    task.error = Some(Box::new(error.clone()));
    task.finished_at_ms = Some(now_ms);
    true
}

/// [`RunStore::finish_run`](crate::RunStore::finish_run) on `run`.
pub fn finish_run(
    run: &mut RunRecord,
    lease: &Lease,
    status: RunStatus,
    error: Option<String>,
    now_ms: u64,
) -> Result<RunRecord, StoreError> {
    crate::check_finish(status)?;
    fence(run, lease)?;
    run.status = status;
    run.error = error;
    run.finished_at_ms = Some(now_ms);
    run.lease = None;
    Ok(run.clone())
}

/// [`RunStore::request_cancel`](crate::RunStore::request_cancel) on `run`. Returns whether the
/// run was cancelled at once (it was pending): its tasks are then cancelled with
/// [`cancel_pending_task`].
pub fn request_cancel(run: &mut RunRecord, now_ms: u64) -> bool {
    if run.status.is_final() {
        return false;
    }
    run.cancel_requested = true;
    if run.status != RunStatus::Pending {
        return false;
    }
    run.status = RunStatus::Cancelled;
    run.finished_at_ms = Some(now_ms);
    run.error = Some("cancelled before it started".into());
    true
}

/// A task of a run cancelled before it started.
pub fn cancel_pending_task(task: &mut TaskRecord, now_ms: u64) {
    task.status = TaskStatus::Cancelled;
    task.finished_at_ms = Some(now_ms);
}
