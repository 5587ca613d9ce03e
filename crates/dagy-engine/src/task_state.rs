//! What a session knows of each task of its run.

use dagy_core::json::JsonText;
use dagy_store::{TaskErrorRecord, TaskRecord, TaskStatus, Verdict};

/// What a session keeps of one task: what decides its next attempt, its downstream tasks'
/// inputs and the run's end. The store keeps the rest of the record (the timeline, the owner,
/// the lease), so a session over 100,000 tasks holds 40 bytes a task beside their outputs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TaskState {
    pub(crate) status: TaskStatus,
    /// Attempts started so far.
    pub(crate) attempts: u32,
    /// Attempts that failed or timed out.
    pub(crate) failures: u32,
    /// Attempts cut short because their executor died.
    pub(crate) interruptions: u32,
    pub(crate) output: Option<JsonText>,
    pub(crate) error: Option<Box<TaskErrorRecord>>,
}

impl TaskState {
    /// The verdict on the run of task `task_id` in this state (`None` unless it ended otherwise
    /// than completed).
    pub(crate) fn verdict(&self, task_id: &str) -> Option<Verdict> {
        Verdict::of_end(task_id, self.status, self.error.as_deref())
    }

    /// The message of its error, or nothing.
    pub(crate) fn error_message(&self) -> &str {
        self.error.as_ref().map_or("", |e| e.message.as_str())
    }
}

impl From<TaskRecord> for TaskState {
    fn from(record: TaskRecord) -> TaskState {
        TaskState {
            status: record.status,
            attempts: record.attempts,
            failures: record.failures,
            interruptions: record.interruptions,
            output: record.output,
            error: record.error,
        }
    }
}

/// The states of `records`, in their order. Built into a new buffer, so the records' buffer
/// (four times the size) is freed, not kept as spare room.
pub(crate) fn states_of(records: Vec<TaskRecord>) -> Vec<TaskState> {
    let mut states = Vec::with_capacity(records.len());
    states.extend(records.into_iter().map(TaskState::from));
    states
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_small_and_keeps_what_decides_the_run() {
        assert!(std::mem::size_of::<TaskState>() <= 40);
        let mut record = TaskRecord::pending("a");
        record.status = TaskStatus::Failed;
        record.attempts = 3;
        record.failures = 2;
        record.error = Some(Box::new(TaskErrorRecord {
            error_type: "TaskFailed".into(),
            message: "boom".into(),
        }));
        let states = states_of(vec![record.clone(), TaskRecord::pending("b")]);
        assert_eq!(states.capacity(), 2, "exactly as many as records");
        let a = &states[0];
        assert_eq!(
            (a.status, a.attempts, a.failures),
            (TaskStatus::Failed, 3, 2)
        );
        assert_eq!(a.error_message(), "boom");
        assert_eq!(a.verdict("a"), Verdict::of(&record));
        assert_eq!(
            states[1].verdict("b"),
            Verdict::of(&TaskRecord::pending("b"))
        );
    }
}
