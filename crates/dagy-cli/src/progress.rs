//! Live progress on standard error and the final table of `dagy run`.
//!
//! On a terminal a run shows one live bar with its counts by state, and only what needs a
//! reader's eye (retries, failures, notes) as lines above it. Otherwise (a pipe, a log file,
//! or `--verbose`) every attempt and every task's end is a line.

use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use dagy_core::{Flow, Plan};
use dagy_engine::{Event, Observer};
use dagy_store::{RunSnapshot, TaskStatus};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A flow with more tasks than this gets a summary instead of a row per task on a terminal.
const TABLE_ROWS: usize = 50;

/// How a run's progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// Nothing until the end (`--quiet`).
    Quiet,
    /// One line per attempt and per task's end (`--verbose`, or not a terminal).
    Lines,
    /// A live bar with counts by state, on a terminal.
    Bar,
}

/// Counts of finished tasks by state, for the bar.
#[derive(Debug, Default)]
struct Counts {
    completed: u64,
    failed: u64,
    skipped: u64,
    cancelled: u64,
    retries: u64,
}

/// Shows a run's progress as [`Display`] says.
pub struct Progress {
    display: Display,
    colour: bool,
    started: Instant,
    out: Mutex<()>,
    bar: ProgressBar,
    counts: Mutex<Counts>,
}

impl Progress {
    /// Progress shown as `display`; ANSI colour when `colour` (a terminal).
    pub fn new(display: Display, colour: bool) -> Self {
        let bar = if display == Display::Bar {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} {msg}  {prefix}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar
        } else {
            ProgressBar::hidden()
        };
        Progress {
            display,
            colour,
            started: Instant::now(),
            out: Mutex::new(()),
            bar,
            counts: Mutex::new(Counts::default()),
        }
    }

    fn line(&self, text: &str) {
        match self.display {
            Display::Quiet => {}
            Display::Bar => self.bar.suspend(|| eprintln!("{text}")),
            Display::Lines => {
                let _guard = self.out.lock();
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{text}");
            }
        }
    }

    /// Counts a finished task and redraws the bar's message.
    fn count(&self, status: TaskStatus, retry: bool) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if retry {
            counts.retries += 1;
        } else {
            match status {
                TaskStatus::Completed => counts.completed += 1,
                TaskStatus::Skipped => counts.skipped += 1,
                TaskStatus::Cancelled => counts.cancelled += 1,
                _ => counts.failed += 1,
            }
            self.bar.inc(1);
        }
        let mut parts = vec![format!("{} completed", counts.completed)];
        for (n, what) in [
            (counts.failed, "failed"),
            (counts.skipped, "skipped"),
            (counts.cancelled, "cancelled"),
            (counts.retries, "retries"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        self.bar.set_message(parts.join(" · "));
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
        self.bar.set_length(flow.tasks().len() as u64);
        self.line(&format!(
            "running {} ({} tasks) as tier {} ({}): {}",
            self.paint("1", flow.name()),
            flow.tasks().len(),
            plan.tier,
            plan.decided_by,
            plan.reason
        ));
    }

    /// The final table: a row per task, or on a terminal for a large flow the counts by state
    /// and a row per task that did not complete.
    pub fn summary(&self, snapshot: &RunSnapshot) {
        self.bar.finish_and_clear();
        let run = &snapshot.run;
        let every_row = self.display != Display::Bar || snapshot.tasks.len() <= TABLE_ROWS;
        let width = snapshot
            .tasks
            .iter()
            .map(|t| t.task_id.len())
            .max()
            .unwrap_or(4)
            .max(4);
        // Buffered: one write for the table, not one per task (standard output is line-buffered).
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let _ = writeln!(out);
        let listed = snapshot
            .tasks
            .iter()
            .any(|t| every_row || t.status != TaskStatus::Completed);
        if listed {
            let _ = writeln!(
                out,
                "{:<width$}  {:<10}  {:>8}  {:>10}  error",
                "task", "status", "attempts", "duration"
            );
        }
        let mut hidden = 0usize;
        for t in &snapshot.tasks {
            if !every_row && t.status == TaskStatus::Completed {
                hidden += 1;
                continue;
            }
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
        if hidden > 0 {
            let _ = writeln!(
                out,
                "({hidden} completed tasks not listed; `dagy run --verbose`, `--json` or a pipe lists them)"
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
        let _ = out.flush();
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
        if self.display == Display::Quiet {
            return;
        }
        if self.display == Display::Bar {
            match event {
                Event::AttemptStarted { task_id, .. } => {
                    self.bar.set_prefix(task_id.clone());
                    return;
                }
                Event::TaskFinished { status, .. } => {
                    self.count(*status, false);
                    if matches!(status, TaskStatus::Completed | TaskStatus::Skipped) {
                        return;
                    }
                }
                Event::Retrying { .. } => self.count(TaskStatus::Retrying, true),
                Event::RunFinished { .. } => return,
            }
        }
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
