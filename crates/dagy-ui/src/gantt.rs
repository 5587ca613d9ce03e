//! The run's timeline: one row per task that started, one bar per attempt, on a shared time
//! axis, so retries and the delays between them show as gaps in a row.

use dagy_store::{TaskRecord, TaskStatus};

use crate::time::format_duration;

/// One attempt's bar.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bar {
    /// The attempt's number, from 1.
    pub attempt: u32,
    /// When it started.
    pub start_ms: u64,
    /// When it ended, or the horizon for an attempt still open.
    pub end_ms: u64,
    /// How it ended, as a CSS class suffix: a task status (`retrying` for a failed attempt
    /// that another follows), `running` for one still going, `interrupted` for one whose
    /// executor died in it.
    pub result: &'static str,
    /// Left edge, pixels from the plot's left.
    pub x: f64,
    /// Width in pixels (at least [`MIN_BAR_PX`], so a 3 ms attempt is still seen).
    pub width: f64,
}

/// A task's row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    /// The task, by index in the run's tasks.
    pub task: usize,
    /// Its attempts, oldest first.
    pub bars: Vec<Bar>,
}

/// A labelled mark on the time axis.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tick {
    /// Pixels from the plot's left.
    pub x: f64,
    /// Time since the timeline's start, as the page writes durations: `500 ms`, `1.5 s`,
    /// `1m 30s`.
    pub label: String,
}

/// The timeline of a run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Timeline {
    /// The first attempt's start.
    pub start_ms: u64,
    /// The last attempt's end (or the horizon).
    pub end_ms: u64,
    /// Rows of the tasks that started, by first start then declaration order.
    pub rows: Vec<Row>,
    /// Axis marks.
    pub ticks: Vec<Tick>,
    /// Tasks with no attempt.
    pub not_started: usize,
}

/// The narrowest bar drawn.
pub(crate) const MIN_BAR_PX: f64 = 2.0;

/// Lays out `tasks` on a plot `plot_width` pixels wide. Attempts still open end at
/// `horizon_ms` (now for a live run, its end for a finished one); `live` tells a running attempt
/// from one whose executor died.
pub(crate) fn timeline(
    tasks: &[TaskRecord],
    horizon_ms: u64,
    live: bool,
    plot_width: f64,
) -> Timeline {
    let bar = |attempt, start_ms, ended: Option<u64>, result| Bar {
        attempt,
        start_ms,
        end_ms: ended.unwrap_or(horizon_ms).max(start_ms),
        result,
        x: 0.0,
        width: 0.0,
    };
    let mut rows: Vec<Row> = Vec::new();
    let mut not_started = 0;
    for (i, task) in tasks.iter().enumerate() {
        let bars: Vec<Bar> = if task.history.is_empty() {
            // A record written before attempts were kept: one bar for the whole task.
            task.started_at_ms
                .map(|s| {
                    let result = open_or(task.status, task.finished_at_ms, live);
                    bar(task.attempts.max(1), s, task.finished_at_ms, result)
                })
                .into_iter()
                .collect()
        } else {
            task.history
                .iter()
                .map(|span| {
                    let result = match span.status {
                        Some(status) => status.as_str(),
                        None => open_or(TaskStatus::Running, span.ended_at_ms, live),
                    };
                    bar(span.attempt, span.started_at_ms, span.ended_at_ms, result)
                })
                .collect()
        };
        if bars.is_empty() {
            not_started += 1;
        } else {
            rows.push(Row { task: i, bars });
        }
    }
    let first_start = |row: &Row| row.bars.iter().map(|b| b.start_ms).min();
    rows.sort_by_key(|row| (first_start(row).unwrap_or(u64::MAX), row.task));

    let start_ms = rows
        .iter()
        .filter_map(first_start)
        .min()
        .unwrap_or(horizon_ms);
    let end_ms = rows
        .iter()
        .flat_map(|r| r.bars.iter().map(|b| b.end_ms))
        .max()
        .unwrap_or(start_ms)
        .max(start_ms);
    let scale = plot_width / (end_ms - start_ms).max(1) as f64;
    for bar in rows.iter_mut().flat_map(|r| r.bars.iter_mut()) {
        bar.x = (bar.start_ms - start_ms) as f64 * scale;
        bar.width = ((bar.end_ms - bar.start_ms) as f64 * scale).max(MIN_BAR_PX);
    }
    Timeline {
        start_ms,
        end_ms,
        rows,
        ticks: ticks(end_ms - start_ms, scale),
        not_started,
    }
}

/// The result of an attempt recorded with `status` that may still be open.
fn open_or(status: TaskStatus, ended: Option<u64>, live: bool) -> &'static str {
    match (status, ended) {
        (TaskStatus::Running, None) if live => "running",
        (TaskStatus::Running, _) => "interrupted",
        (status, _) => status.as_str(),
    }
}

/// Steps the axis may use, in ms: the smallest that gives at most eight marks is chosen.
const STEPS: [u64; 27] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000,
    120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000,
    43_200_000, 86_400_000,
];

fn ticks(span_ms: u64, scale: f64) -> Vec<Tick> {
    let step = STEPS
        .into_iter()
        .find(|s| span_ms / s <= 8)
        .unwrap_or_else(|| span_ms.div_ceil(8 * 86_400_000).max(1) * 86_400_000);
    (0..=span_ms / step)
        .map(|k| Tick {
            x: (k * step) as f64 * scale,
            label: format_duration(k * step),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dagy_store::AttemptSpan;

    fn span(attempt: u32, start: u64, end: Option<u64>, status: Option<TaskStatus>) -> AttemptSpan {
        AttemptSpan {
            attempt,
            started_at_ms: start,
            ended_at_ms: end,
            status,
        }
    }

    fn task(id: &str, history: Vec<AttemptSpan>) -> TaskRecord {
        TaskRecord {
            attempts: history.len() as u32,
            started_at_ms: history.first().map(|s| s.started_at_ms),
            history,
            ..TaskRecord::pending(id)
        }
    }

    #[test]
    fn each_attempt_is_a_bar_and_the_retry_delay_a_gap() {
        let tasks = [task(
            "flaky",
            vec![
                span(1, 1_000, Some(1_200), Some(TaskStatus::Retrying)),
                span(2, 1_700, Some(2_000), Some(TaskStatus::Completed)),
            ],
        )];
        let t = timeline(&tasks, 5_000, false, 1_000.0);
        assert_eq!((t.start_ms, t.end_ms), (1_000, 2_000));
        let bars = &t.rows[0].bars;
        assert_eq!(bars.len(), 2);
        assert_eq!(
            (bars[0].x, bars[0].width, bars[0].result),
            (0.0, 200.0, "retrying")
        );
        assert_eq!(
            (bars[1].x, bars[1].width, bars[1].result),
            (700.0, 300.0, "completed")
        );
        assert!(
            bars[1].x > bars[0].x + bars[0].width,
            "the delay shows as a gap"
        );
    }

    #[test]
    fn rows_follow_first_start_and_unstarted_tasks_are_counted() {
        let tasks = [
            task(
                "late",
                vec![span(1, 500, Some(600), Some(TaskStatus::Completed))],
            ),
            task("never", vec![]),
            task(
                "early",
                vec![span(1, 100, Some(400), Some(TaskStatus::Completed))],
            ),
        ];
        let t = timeline(&tasks, 1_000, false, 100.0);
        let order: Vec<usize> = t.rows.iter().map(|r| r.task).collect();
        assert_eq!(order, vec![2, 0]);
        assert_eq!(t.not_started, 1);
    }

    #[test]
    fn an_open_attempt_runs_to_the_horizon_while_the_run_is_live() {
        let tasks = [task("t", vec![span(1, 0, None, None)])];
        let live = timeline(&tasks, 2_000, true, 100.0);
        assert_eq!(live.end_ms, 2_000);
        assert_eq!(live.rows[0].bars[0].result, "running");
        assert_eq!(live.rows[0].bars[0].width, 100.0);
        let dead = timeline(&tasks, 2_000, false, 100.0);
        assert_eq!(dead.rows[0].bars[0].result, "interrupted");
    }

    #[test]
    fn a_very_short_attempt_is_still_visible() {
        let tasks = [
            task(
                "long",
                vec![span(1, 0, Some(1_000_000), Some(TaskStatus::Completed))],
            ),
            task(
                "blip",
                vec![span(1, 10, Some(11), Some(TaskStatus::Failed))],
            ),
        ];
        let t = timeline(&tasks, 0, false, 1_000.0);
        assert_eq!(t.rows[1].bars[0].width, MIN_BAR_PX);
    }

    #[test]
    fn a_record_without_history_is_one_bar_from_start_to_end() {
        let mut old = TaskRecord::pending("old");
        old.status = TaskStatus::Completed;
        old.attempts = 2;
        old.started_at_ms = Some(10);
        old.finished_at_ms = Some(20);
        let t = timeline(&[old], 100, false, 10.0);
        assert_eq!(t.rows[0].bars.len(), 1);
        assert_eq!(t.rows[0].bars[0].result, "completed");
    }

    #[test]
    fn no_attempts_make_an_empty_timeline() {
        let t = timeline(&[task("a", vec![])], 42, true, 100.0);
        assert!(t.rows.is_empty());
        assert_eq!((t.start_ms, t.end_ms), (42, 42));
        assert_eq!(t.ticks.len(), 1);
    }

    #[test]
    fn the_axis_has_at_most_nine_round_marks() {
        for span_ms in [
            0,
            7,
            999,
            1_000,
            61_000,
            3_600_000,
            90_000_000,
            400 * 86_400_000,
        ] {
            let ticks = ticks(span_ms, 1.0);
            assert!(ticks.len() <= 9, "{span_ms}: {}", ticks.len());
            assert_eq!(ticks[0].label, "0 ms");
        }
        let labels: Vec<String> = ticks(60_000, 1.0).into_iter().map(|t| t.label).collect();
        assert_eq!(
            labels,
            [
                "0 ms", "10.0 s", "20.0 s", "30.0 s", "40.0 s", "50.0 s", "1m 00s"
            ]
        );
    }

    #[test]
    fn marks_read_as_the_pages_durations() {
        let labels =
            |span_ms| -> Vec<String> { ticks(span_ms, 1.0).into_iter().map(|t| t.label).collect() };
        assert_eq!(
            labels(2_700),
            ["0 ms", "500 ms", "1.0 s", "1.5 s", "2.0 s", "2.5 s"]
        );
        assert_eq!(labels(5_400_000)[1], "15m 00s");
        assert!(labels(90_000_000).iter().all(|l| l.contains(' ')));
    }
}
