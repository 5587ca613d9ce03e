//! Progress events, for live displays and logs.

use std::time::Duration;

use dagy_store::{RunStatus, TaskStatus};

/// Something that happened in a run, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An attempt started.
    AttemptStarted {
        /// The task.
        task_id: String,
        /// The attempt number, from 1.
        attempt: u32,
    },
    /// An attempt failed and the task will be retried after `delay`.
    Retrying {
        /// The task.
        task_id: String,
        /// The attempt that failed.
        attempt: u32,
        /// Why.
        error: String,
        /// The wait before the next attempt.
        delay: Duration,
    },
    /// A task reached its final status.
    TaskFinished {
        /// The task.
        task_id: String,
        /// Its final status.
        status: TaskStatus,
        /// Attempts it took.
        attempts: u32,
        /// Time from its first attempt to its end in this session (zero if it never ran).
        elapsed: Duration,
        /// The last error, for tasks that did not complete.
        error: Option<String>,
    },
    /// The run reached its final status.
    RunFinished {
        /// The status.
        status: RunStatus,
    },
}

/// Receives [`Event`]s. Implementations must be quick: they are called inline.
pub trait Observer: Send + Sync {
    /// Called once per event.
    fn on_event(&self, event: &Event);
}

/// An observer that logs each event through `tracing`, with run and task ids as fields.
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingObserver;

impl Observer for TracingObserver {
    fn on_event(&self, event: &Event) {
        match event {
            Event::AttemptStarted { task_id, attempt } => {
                tracing::info!(task_id, attempt, "attempt started");
            }
            Event::Retrying {
                task_id,
                attempt,
                error,
                delay,
            } => tracing::warn!(
                task_id,
                attempt,
                error,
                delay_ms = delay.as_millis() as u64,
                "retrying"
            ),
            Event::TaskFinished {
                task_id,
                status,
                attempts,
                elapsed,
                error,
            } => tracing::info!(
                task_id,
                status = status.as_str(),
                attempts,
                elapsed_ms = elapsed.as_millis() as u64,
                error = error.as_deref(),
                "task finished"
            ),
            Event::RunFinished { status } => {
                tracing::info!(status = status.as_str(), "run finished")
            }
        }
    }
}
