//! Live progress on standard error and the final table of `dagy run`.

use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use dagy_core::{Flow, Plan};
use dagy_engine::{Event, Observer};
use dagy_store::{RunSnapshot, TaskStatus};

/// Prints one line per event while a run goes on.
pub struct Progress {
    enabled: bool,
    colour: bool,
    started: Instant,
    out: Mutex<()>,
}

impl Progress {
    /// Progress lines when `enabled`; ANSI colour when `colour` (a terminal).
    pub fn new(enabled: bool, colour: bool) -> Self {
        Progress {
            enabled,
            colour,
            started: Instant::now(),
            out: Mutex::new(()),
        }
    }

    fn line(&self, text: &str) {
        if !self.enabled {
            return;
        }
        let _guard = self.out.lock();
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{text}");
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// A note from the command itself (waiting, cancelling).
    pub fn note(&self, text: &str) {
        let line = format!("  {} {text}", self.paint("33", "!"));
        self.line(&line);
    }

    /// What is about to run, and where it would run.
    pub fn header(&self, flow: &Flow, plan: &Plan) {
        self.line(&format!(
            "running {} ({} tasks) as tier {} ({}): {}",
            self.paint("1", flow.name()),
            flow.tasks().len(),
            plan.tier,
            plan.decided_by,
            plan.reason
        ));
    }

    /// The final table.
    pub fn summary(&self, snapshot: &RunSnapshot) {
        let run = &snapshot.run;
        let width = snapshot
            .tasks
            .iter()
            .map(|t| t.task_id.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<width$}  {:<10}  {:>8}  {:>10}  error",
            "task", "status", "attempts", "duration"
        );
        for t in &snapshot.tasks {
            let duration = t
                .duration_ms()
                .map_or("-".to_string(), |ms| format!("{ms} ms"));
            let error = t.error.as_ref().map_or(String::new(), |e| {
                let first = e.message.lines().next().unwrap_or("");
                let mut shown: String = first.chars().take(80).collect();
                if shown.len() < e.message.len() {
                    shown.push('…');
                }
                format!("{}: {shown}", e.error_type)
            });
            let status = format!("{:<10}", t.status.as_str());
            let _ = writeln!(
                out,
                "{:<width$}  {}  {:>8}  {:>10}  {error}",
                t.task_id,
                self.paint(status_colour(t.status), &status),
                t.attempts,
                duration
            );
        }
        let elapsed = match (run.started_at_ms, run.finished_at_ms) {
            (Some(s), Some(f)) => format!("{} ms", f.saturating_sub(s)),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "\nrun {} {} in {elapsed}{}",
            run.run_id,
            run.status,
            run.error
                .as_ref()
                .map_or(String::new(), |e| format!(": {e}"))
        );
    }
}

fn status_colour(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Completed => "32",
        TaskStatus::Failed | TaskStatus::TimedOut => "31",
        TaskStatus::Skipped | TaskStatus::Cancelled => "90",
        TaskStatus::Pending | TaskStatus::Running | TaskStatus::Retrying => "33",
    }
}

impl Observer for Progress {
    fn on_event(&self, event: &Event) {
        let at = format!("{:>7.2}s", self.started.elapsed().as_secs_f64());
        let text = match event {
            Event::AttemptStarted { task_id, attempt } => {
                format!(
                    "{at}  {} {task_id}  attempt {attempt}",
                    self.paint("36", "▸")
                )
            }
            Event::Retrying {
                task_id,
                attempt,
                error,
                delay,
            } => format!(
                "{at}  {} {task_id}  attempt {attempt} failed ({error}); retrying in {:.2} s",
                self.paint("33", "↻"),
                delay.as_secs_f64()
            ),
            Event::TaskFinished {
                task_id,
                status,
                attempts,
                elapsed,
                error,
            } => {
                let mark = match status {
                    TaskStatus::Completed => self.paint("32", "✓"),
                    TaskStatus::Skipped | TaskStatus::Cancelled => self.paint("90", "·"),
                    _ => self.paint("31", "✗"),
                };
                let detail = error.as_ref().map_or(String::new(), |e| format!(": {e}"));
                format!(
                    "{at}  {mark} {task_id}  {status} after {attempts} attempt{} in {} ms{detail}",
                    if *attempts == 1 { "" } else { "s" },
                    elapsed.as_millis()
                )
            }
            Event::RunFinished { status } => format!("{at}  run {status}"),
        };
        self.line(&text);
    }
}
