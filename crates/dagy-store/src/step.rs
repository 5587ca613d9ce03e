//! Micro steps in constant work. A run keeps a cursor into its fixed run order, and each task
//! the cursor that follows it, so one step reads the run, the task at the cursor and that task's
//! upstream records, never the whole run. The first task that did not complete decides the
//! final status, recorded on the run as the cursor passes it.

use dagy_core::{Flow, TaskSpec};
use serde::{Deserialize, Serialize};

use crate::{AttemptStart, Lease, RunRecord, RunStatus, TaskErrorRecord, TaskRecord, TaskStatus};

/// A position in a run's order: the task there and the tasks it depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The task at this position.
    pub task_id: String,
    /// Its dependencies, whose records a step reads with it.
    pub depends_on: Vec<String>,
}

impl Cursor {
    /// The cursor at `task`.
    pub fn at(task: &TaskSpec) -> Cursor {
        Cursor {
            task_id: task.id.clone(),
            depends_on: task.depends_on.clone(),
        }
    }
}

/// How a task that did not complete bears on its run's final status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A task was cancelled: the run ends cancelled; the message says which.
    Cancelled(String),
    /// A task failed, timed out or was skipped: the run ends failed, unless one was cancelled.
    Failed(String),
}

impl Verdict {
    /// The verdict of a task that ended `record.status`; `None` when it completed.
    pub fn of(record: &TaskRecord) -> Option<Verdict> {
        Verdict::of_end(&record.task_id, record.status, record.error.as_deref())
    }

    /// The verdict of task `task_id` ending `status` with `error`; `None` when it completed.
    pub fn of_end(
        task_id: &str,
        status: TaskStatus,
        error: Option<&TaskErrorRecord>,
    ) -> Option<Verdict> {
        let why = error.map_or("", |e| e.message.as_str());
        let message = format!("task {task_id} {status}: {why}");
        match status {
            TaskStatus::Completed => None,
            TaskStatus::Cancelled => Some(Verdict::Cancelled(message)),
            _ => Some(Verdict::Failed(message)),
        }
    }
}

/// The step state a run carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepState {
    /// The next task in run order to look at; `None` past the last one.
    pub cursor: Option<Cursor>,
    /// The first cancelled task the cursor passed.
    pub first_cancelled: Option<String>,
    /// The first task the cursor passed that failed, timed out or was skipped.
    pub first_failed: Option<String>,
}

impl StepState {
    /// Records `verdict` unless one of its kind was recorded before (the first one decides).
    pub fn record(&mut self, verdict: &Verdict) {
        match verdict {
            Verdict::Cancelled(why) => self.first_cancelled.get_or_insert_with(|| why.clone()),
            Verdict::Failed(why) => self.first_failed.get_or_insert_with(|| why.clone()),
        };
    }

    /// Moves the cursor from `from` (the task just settled) to `to` and records `verdict`; a
    /// cursor already past `from` (a retried write) is left as it is.
    pub fn advance(&mut self, from: &str, to: Option<&Cursor>, verdict: Option<&Verdict>) {
        if self.cursor.as_ref().map(|c| c.task_id.as_str()) == Some(from) {
            self.cursor = to.cloned();
            if let Some(verdict) = verdict {
                self.record(verdict);
            }
        }
    }

    /// The status the run ends with once the cursor is past its last task, and why: cancelled
    /// when a task was cancelled, failed when one failed, completed otherwise (the rule of
    /// `dagy_engine::final_status`).
    pub fn final_status(&self) -> (RunStatus, Option<String>) {
        if let Some(why) = &self.first_cancelled {
            return (RunStatus::Cancelled, Some(why.clone()));
        }
        if let Some(why) = &self.first_failed {
            return (RunStatus::Failed, Some(why.clone()));
        }
        (RunStatus::Completed, None)
    }
}

/// The task at a run's cursor, with what running it needs.
#[derive(Debug, Clone)]
pub struct StepTask {
    /// Its spec.
    pub spec: TaskSpec,
    /// Its record.
    pub record: TaskRecord,
    /// The cursor after it; `None` when it is the last task.
    pub next: Option<Cursor>,
    /// The records of the tasks it depends on, in `spec.depends_on` order.
    pub upstream: Vec<TaskRecord>,
}

/// What one micro step reads.
#[derive(Debug, Clone)]
pub struct StepView {
    /// The run.
    pub run: RunRecord,
    /// Its step state.
    pub state: StepState,
    /// The task at the cursor; `None` when the cursor is past the last task.
    pub task: Option<StepTask>,
}

impl StepView {
    /// The attempt the task at the cursor would start now, if it can run: the run has no
    /// cancel asked for, the task is not final, and every task it depends on completed.
    /// `None` otherwise (the step then skips, settles or ends instead).
    pub fn next_attempt(&self) -> Option<u32> {
        let step = self.task.as_ref()?;
        let runnable = !self.run.cancel_requested
            && !step.record.status.is_final()
            && step
                .upstream
                .iter()
                .all(|u| u.status == TaskStatus::Completed);
        runnable.then_some(step.record.attempts + 1)
    }
}

/// The next micro step, handed on under the lease the last one held:
/// [`RunStore::finish_and_continue`](crate::RunStore::finish_and_continue)'s answer.
#[derive(Debug, Clone)]
pub struct HandedOn {
    /// The lease to take the step under.
    pub lease: Lease,
    /// What the step reads, as it was before `started`.
    pub view: StepView,
    /// The attempt already started for the step's task (its number, and what the start
    /// found), when [`StepView::next_attempt`] said it could run.
    pub started: Option<(u32, AttemptStart)>,
}

/// Where a new run's cursor goes, as task indices in declaration order ([`Cursor::at`] makes
/// the cursor at one).
#[derive(Debug, Clone)]
pub struct StepLinks {
    /// The first task in run order (`None` for a flow without tasks).
    pub first: Option<usize>,
    /// For each task, the task after it in run order (`None` after the last).
    pub next: Vec<Option<usize>>,
}

/// The step links of a new run of `flow`.
pub fn step_links(flow: &Flow) -> StepLinks {
    let order = flow.order();
    let mut next = vec![None; order.len()];
    for pair in order.windows(2) {
        next[pair[0]] = Some(pair[1]);
    }
    StepLinks {
        first: order.first().copied(),
        next,
    }
}
