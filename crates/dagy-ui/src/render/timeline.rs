//! The timeline as SVG: a row per task that started, a bar per attempt.

use dagy_store::RunSnapshot;

use super::{attempt_result, clip, w};
use crate::escape::Html;
use crate::gantt::{Timeline, timeline};
use crate::time::{format_duration, format_utc};

/// Width of the task-id column.
const LABEL_W: f64 = 190.0;
/// Width of the time plot.
const PLOT_W: f64 = 960.0;
/// Height of one row.
const ROW_H: u32 = 16;
/// Height of the axis above the rows.
const AXIS_H: u32 = 18;

/// The timeline section's content for `snapshot` at `now_ms`: a summary line and the SVG.
/// The page's script fetches it again while the run is live.
pub(crate) fn timeline_fragment(snapshot: &RunSnapshot, now_ms: u64) -> String {
    let run = &snapshot.run;
    let live = !run.status.is_final();
    let horizon = if live {
        now_ms
    } else {
        run.finished_at_ms.unwrap_or(now_ms)
    };
    let t = timeline(&snapshot.tasks, horizon, live, PLOT_W);
    let mut out = String::with_capacity(t.rows.len() * 260 + 1_024);
    if t.rows.is_empty() {
        out.push_str("<p class=\"muted\">No task has started yet.</p>");
        return out;
    }
    let attempts: usize = t.rows.iter().map(|r| r.bars.len()).sum();
    w!(
        out,
        "<p class=\"muted\">{} task{} started ({} attempt{}), {} not started · from {} UTC, {}</p>",
        t.rows.len(),
        plural(t.rows.len()),
        attempts,
        plural(attempts),
        t.not_started,
        format_utc(t.start_ms),
        format_duration(t.end_ms - t.start_ms)
    );
    svg(&mut out, snapshot, &t);
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn svg(out: &mut String, snapshot: &RunSnapshot, t: &Timeline) {
    let width = LABEL_W + PLOT_W + 30.0;
    let height = AXIS_H + t.rows.len() as u32 * ROW_H + 4;
    w!(
        out,
        "<svg class=\"gantt\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" \
         height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" \
         aria-label=\"Each task's attempts over time\"><g class=\"axis\">"
    );
    for tick in &t.ticks {
        let x = LABEL_W + tick.x;
        w!(
            out,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{AXIS_H}\" y2=\"{height}\"/>\
             <text x=\"{x:.1}\" y=\"12\">{}</text>",
            tick.label
        );
    }
    out.push_str("</g>");
    for (r, row) in t.rows.iter().enumerate() {
        let Some(task) = snapshot.tasks.get(row.task) else {
            continue;
        };
        let (label, _) = clip(&task.task_id, 28);
        w!(
            out,
            "<g class=\"row\" data-task-id=\"{}\" transform=\"translate(0 {})\">\
             <text x=\"4\" y=\"12\">{}</text>",
            Html(&task.task_id),
            AXIS_H + r as u32 * ROW_H,
            Html(&label)
        );
        if let (Some(first), Some(last)) = (row.bars.first(), row.bars.last())
            && row.bars.len() > 1
        {
            w!(
                out,
                "<line class=\"wait\" x1=\"{:.1}\" x2=\"{:.1}\" y1=\"8\" y2=\"8\"/>",
                LABEL_W + first.x,
                LABEL_W + last.x
            );
        }
        for bar in &row.bars {
            w!(
                out,
                "<rect class=\"a-{}\" x=\"{:.0}\" y=\"3\" width=\"{:.1}\" height=\"10\">\
                 <title>#{} {} · {}</title></rect>",
                bar.result,
                LABEL_W + bar.x,
                bar.width,
                bar.attempt,
                attempt_result(bar.result),
                format_duration(bar.end_ms - bar.start_ms)
            );
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>");
}
