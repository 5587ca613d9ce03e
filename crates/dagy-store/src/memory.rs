//! The embedded store: every rule of the trait, held in process memory.

use dagy_core::positions::IdIndex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use crate::error::StoreError;
use crate::record::{
    AttemptOutcome, AttemptStart, DeploymentRecord, EnvironmentRecord, Lease, NewRun, RunFilter,
    RunPage, RunRecord, RunSnapshot, RunStatus, TaskErrorRecord, TaskRecord, TaskStatus,
};
use crate::{
    Created, Cursor, DISPATCH_GRACE_MS, RunStore, StepState, StepTask, StepView, StoreLimits,
    Verdict, rules,
};

/// Runs kept in memory: the default store of `dagy run` and of unit tests. It enforces the same
/// conditions and size limits as the DynamoDB store, and counts the writes made to it.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    limits: StoreLimits,
    requests: AtomicU64,
    records_read: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    runs: HashMap<String, Entry>,
    idempotency: HashMap<String, String>,
    deployments: HashMap<String, DeploymentRecord>,
    environments: HashMap<String, EnvironmentRecord>,
}

#[derive(Debug)]
struct Entry {
    snapshot: RunSnapshot,
    /// Each task's position in `snapshot.tasks`, by its id there.
    task_index: IdIndex,
    next_token: u64,
    /// The step state, and the task after each task in run order (by task index): cursors
    /// are made from the flow when a step reads them.
    steps: StepState,
    next: Vec<Option<usize>>,
}

impl MemoryStore {
    /// An empty store with the default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store with other limits.
    pub fn with_limits(limits: StoreLimits) -> Self {
        MemoryStore {
            limits,
            ..Self::default()
        }
    }

    /// How many run and task records reads have returned so far: what a DynamoDB store would
    /// send back as items, for tests and benchmarks of how much a step reads.
    pub fn records_read(&self) -> u64 {
        self.records_read.load(Ordering::Relaxed)
    }

    fn count_read(&self, records: usize) {
        self.records_read
            .fetch_add(records as u64, Ordering::Relaxed);
    }

    /// How many store operations were made so far (reads and writes), for benchmarks.
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Removes a run and hands back its record, without a copy: for a process done with it
    /// (`dagy run --store memory` prints it, then exits). [`RunStore::load_run`] copies.
    pub fn take_run(&self, run_id: &str) -> Result<RunSnapshot, StoreError> {
        let mut state = self.lock();
        let entry = state
            .runs
            .remove(run_id)
            .ok_or_else(|| StoreError::NotFound {
                run_id: run_id.to_string(),
            })?;
        if let Some(key) = &entry.snapshot.run.idempotency_key {
            state.idempotency.remove(key);
        }
        Ok(entry.snapshot)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        // A panic while holding the lock cannot leave a half-written entry: every operation
        // checks its conditions before it changes anything, so the data is still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn entry(&mut self, run_id: &str) -> Result<&mut Entry, StoreError> {
        self.runs
            .get_mut(run_id)
            .ok_or_else(|| StoreError::NotFound {
                run_id: run_id.to_string(),
            })
    }

    /// The entry, if `lease` still fences it.
    fn fenced(&mut self, lease: &Lease) -> Result<&mut Entry, StoreError> {
        let entry = self.entry(&lease.run_id)?;
        rules::fence(&entry.snapshot.run, lease)?;
        Ok(entry)
    }
}

impl Entry {
    /// The run and one of its tasks, both writable.
    fn run_and_task(&mut self, task_id: &str) -> Result<(&RunRecord, &mut TaskRecord), StoreError> {
        let index = self.index_of(task_id)?;
        Ok((&self.snapshot.run, &mut self.snapshot.tasks[index]))
    }

    /// The position of the task with this id, if the run has it.
    fn position(&self, task_id: &str) -> Option<usize> {
        let tasks = &self.snapshot.tasks;
        self.task_index.get(task_id, |i| tasks[i].task_id.as_str())
    }

    fn index_of(&self, task_id: &str) -> Result<usize, StoreError> {
        self.position(task_id)
            .ok_or_else(|| StoreError::UnknownTask {
                run_id: self.snapshot.run.run_id.clone(),
                task_id: task_id.to_string(),
            })
    }

    fn task_mut(&mut self, task_id: &str) -> Result<&mut TaskRecord, StoreError> {
        let index = self.index_of(task_id)?;
        Ok(&mut self.snapshot.tasks[index])
    }
}

#[async_trait]
impl RunStore for MemoryStore {
    fn limits(&self) -> StoreLimits {
        self.limits
    }

    async fn create_run(&self, new: NewRun) -> Result<Created, StoreError> {
        crate::check_new_run(&new)?;
        let mut state = self.lock();
        if let Some(key) = &new.run.idempotency_key
            && let Some(existing) = state.idempotency.get(key).cloned()
        {
            let run = state.entry(&existing)?.snapshot.run.clone();
            return Ok(Created {
                run,
                created: false,
            });
        }
        if state.runs.contains_key(&new.run.run_id) {
            return Err(StoreError::Invalid(format!(
                "run {} already exists",
                new.run.run_id
            )));
        }
        let tasks: Vec<TaskRecord> = new
            .flow
            .tasks()
            .iter()
            .map(|t| TaskRecord::pending(t.id.clone()))
            .collect();
        let mut task_index = IdIndex::with_capacity(tasks.len());
        for (i, task) in tasks.iter().enumerate() {
            // A validated flow's ids are unique: nothing is refused.
            let _ = task_index.insert(&task.task_id, i, |p| tasks[p].task_id.as_str());
        }
        if let Some(key) = &new.run.idempotency_key {
            state
                .idempotency
                .insert(key.clone(), new.run.run_id.clone());
        }
        let crate::StepLinks { first, next } = crate::step_links(&new.flow);
        let first = first.map(|index| Cursor::at(new.flow.task(index)));
        let mut run = new.run;
        run.wake_at_ms = run.created_at_ms.saturating_add(DISPATCH_GRACE_MS);
        let new_run = run.clone();
        state.runs.insert(
            run.run_id.clone(),
            Entry {
                snapshot: RunSnapshot {
                    run: new_run,
                    flow: new.flow.shared_spec().clone(),
                    tasks,
                },
                task_index,
                next_token: 1,
                steps: StepState {
                    cursor: first,
                    ..StepState::default()
                },
                next,
            },
        );
        Ok(Created { run, created: true })
    }

    async fn get_run(&self, run_id: &str) -> Result<RunRecord, StoreError> {
        Ok(self.lock().entry(run_id)?.snapshot.run.clone())
    }

    async fn load_run(&self, run_id: &str) -> Result<RunSnapshot, StoreError> {
        let snapshot = self.lock().entry(run_id)?.snapshot.clone();
        self.count_read(1 + snapshot.tasks.len());
        Ok(snapshot)
    }

    async fn acquire_lease(
        &self,
        run_id: &str,
        owner: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<Lease, StoreError> {
        let mut state = self.lock();
        let entry = state.entry(run_id)?;
        rules::acquire(
            &mut entry.snapshot.run,
            &mut entry.next_token,
            owner,
            now_ms,
            ttl_ms,
        )
    }

    async fn join_lease(
        &self,
        run_id: &str,
        owner: &str,
        worker: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<Lease, StoreError> {
        let mut state = self.lock();
        let entry = state.entry(run_id)?;
        rules::join(
            &mut entry.snapshot.run,
            &mut entry.next_token,
            owner,
            worker,
            now_ms,
            ttl_ms,
        )
    }

    async fn renew_lease(
        &self,
        lease: &Lease,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<Lease, StoreError> {
        let mut state = self.lock();
        rules::renew(
            &mut state.entry(&lease.run_id)?.snapshot.run,
            lease,
            now_ms,
            ttl_ms,
        )
    }

    async fn release_lease(&self, lease: &Lease, now_ms: u64) -> Result<(), StoreError> {
        let mut state = self.lock();
        rules::release(&mut state.entry(&lease.run_id)?.snapshot.run, lease, now_ms);
        Ok(())
    }

    async fn load_step(&self, run_id: &str) -> Result<Option<StepView>, StoreError> {
        let mut state = self.lock();
        let entry = state.entry(run_id)?;
        let record_of = |id: &str| -> Result<(usize, TaskRecord), StoreError> {
            let index = entry
                .position(id)
                .ok_or_else(|| StoreError::Corrupt(format!("run {run_id} has no task {id}")))?;
            Ok((index, entry.snapshot.tasks[index].clone()))
        };
        let task = match &entry.steps.cursor {
            None => None,
            Some(cursor) => {
                let (index, record) = record_of(&cursor.task_id)?;
                let upstream = cursor
                    .depends_on
                    .iter()
                    .map(|d| record_of(d).map(|(_, r)| r))
                    .collect::<Result<_, _>>()?;
                Some(StepTask {
                    spec: entry.snapshot.flow.tasks[index].clone(),
                    record,
                    next: entry.next[index].map(|i| Cursor::at(&entry.snapshot.flow.tasks[i])),
                    upstream,
                })
            }
        };
        let view = StepView {
            run: entry.snapshot.run.clone(),
            state: entry.steps.clone(),
            task,
        };
        drop(state);
        self.count_read(1 + view.task.as_ref().map_or(0, |t| 1 + t.upstream.len()));
        Ok(Some(view))
    }

    async fn advance_cursor(
        &self,
        lease: &Lease,
        from: &str,
        to: Option<&Cursor>,
        verdict: Option<&Verdict>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        let entry = state.fenced(lease)?;
        entry.steps.advance(from, to, verdict);
        rules::free(&mut entry.snapshot.run, now_ms);
        Ok(())
    }

    async fn start_attempt(
        &self,
        lease: &Lease,
        task_id: &str,
        attempt: u32,
        now_ms: u64,
    ) -> Result<AttemptStart, StoreError> {
        let mut state = self.lock();
        let entry = state.entry(&lease.run_id)?;
        let (run, task) = entry.run_and_task(task_id)?;
        rules::start_attempt(run, task, lease, attempt, now_ms)
    }

    async fn finish_attempt(
        &self,
        lease: &Lease,
        task_id: &str,
        attempt: u32,
        outcome: AttemptOutcome,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let intended = crate::check_outcome(self.limits, task_id, &outcome)?;
        let mut state = self.lock();
        let entry = state.entry(&lease.run_id)?;
        let (run, task) = entry.run_and_task(task_id)?;
        rules::finish_attempt(run, task, lease, attempt, outcome, intended, now_ms)
    }

    async fn settle_tasks(
        &self,
        lease: &Lease,
        task_ids: &[String],
        status: TaskStatus,
        error: TaskErrorRecord,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        crate::check_settle(self.limits, status, &error)?;
        let mut state = self.lock();
        let entry = state.fenced(lease)?;
        for id in task_ids {
            rules::settle(entry.task_mut(id)?, status, &error, now_ms);
        }
        Ok(())
    }

    async fn finish_run(
        &self,
        lease: &Lease,
        status: RunStatus,
        error: Option<String>,
        now_ms: u64,
    ) -> Result<RunRecord, StoreError> {
        let mut state = self.lock();
        let run = &mut state.entry(&lease.run_id)?.snapshot.run;
        rules::finish_run(run, lease, status, error, now_ms)
    }

    async fn list_runs(
        &self,
        deployment: &str,
        limit: usize,
        next: Option<&str>,
    ) -> Result<RunPage, StoreError> {
        let state = self.lock();
        let mut runs: Vec<&RunRecord> = state
            .runs
            .values()
            .map(|e| &e.snapshot.run)
            .filter(|r| r.deployment.as_deref() == Some(deployment))
            .collect();
        runs.sort_by_key(|r| std::cmp::Reverse(list_key(r)));
        let start = match next {
            None => 0,
            Some(token) => runs
                .iter()
                .position(|r| list_key(r).as_str() < token)
                .unwrap_or(runs.len()),
        };
        let page: Vec<RunRecord> = runs
            .iter()
            .skip(start)
            .take(limit.max(1))
            .map(|r| (*r).clone())
            .collect();
        let more = start + page.len() < runs.len();
        let next = if more {
            page.last().map(list_key)
        } else {
            None
        };
        Ok(RunPage { runs: page, next })
    }

    async fn recent_runs(
        &self,
        filter: &RunFilter,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let state = self.lock();
        let mut runs: Vec<&RunRecord> = state
            .runs
            .values()
            .map(|e| &e.snapshot.run)
            .filter(|r| filter.matches(r))
            .collect();
        runs.sort_by_key(|r| std::cmp::Reverse(list_key(r)));
        Ok(runs.into_iter().take(limit).cloned().collect())
    }

    async fn find_lapsed_runs(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let state = self.lock();
        let mut lapsed: Vec<RunRecord> = state
            .runs
            .values()
            .map(|e| &e.snapshot.run)
            .filter(|r| !r.status.is_final() && r.wake_at_ms <= now_ms)
            .cloned()
            .collect();
        lapsed.sort_by_key(|r| (r.wake_at_ms, r.run_id.clone()));
        lapsed.truncate(limit);
        Ok(lapsed)
    }

    async fn put_deployment(
        &self,
        mut deployment: DeploymentRecord,
    ) -> Result<DeploymentRecord, StoreError> {
        let mut state = self.lock();
        let version = state
            .deployments
            .get(&deployment.name)
            .map_or(0, |d| d.version);
        deployment.version = version + 1;
        state
            .deployments
            .insert(deployment.name.clone(), deployment.clone());
        Ok(deployment)
    }

    async fn get_deployment(&self, name: &str) -> Result<Option<DeploymentRecord>, StoreError> {
        Ok(self.lock().deployments.get(name).cloned())
    }

    async fn put_environment(
        &self,
        environment: EnvironmentRecord,
    ) -> Result<EnvironmentRecord, StoreError> {
        let mut state = self.lock();
        state
            .environments
            .insert(environment.name.clone(), environment.clone());
        Ok(environment)
    }

    async fn get_environment(&self, name: &str) -> Result<Option<EnvironmentRecord>, StoreError> {
        Ok(self.lock().environments.get(name).cloned())
    }

    async fn request_cancel(&self, run_id: &str, now_ms: u64) -> Result<RunRecord, StoreError> {
        let mut state = self.lock();
        let entry = state.entry(run_id)?;
        let snapshot = &mut entry.snapshot;
        if rules::request_cancel(&mut snapshot.run, now_ms) {
            for task in &mut snapshot.tasks {
                rules::cancel_pending_task(task, now_ms);
            }
        }
        Ok(snapshot.run.clone())
    }
}

/// The order of a deployment's run list (newest first) and its page token: the creation time,
/// zero-padded so it sorts as text, then the run id. The DynamoDB store's GSI sort key is the same.
pub fn list_key(run: &RunRecord) -> String {
    format!("{:020}#{}", run.created_at_ms, run.run_id)
}
