//! The task panel: one task's attempts, error, duration and output.

use dagy_core::TaskSpec;
use dagy_store::{RunSnapshot, TaskRecord};
use serde_json::Value;

use super::{attempt_badge, badge, w};
use crate::escape::Html;
use crate::time::{format_duration, format_utc, format_utc_time};

/// The most bytes of an output the panel shows.
pub(crate) const OUTPUT_PREVIEW_BYTES: usize = 4 * 1024;

/// The panel for `task` of `snapshot`, with its spec when the flow has it.
pub(crate) fn task_fragment(
    snapshot: &RunSnapshot,
    task: &TaskRecord,
    spec: Option<&TaskSpec>,
    now_ms: u64,
) -> String {
    let mut out = String::with_capacity(2_048);
    w!(
        out,
        "<div class=\"task-detail\" data-task-id=\"{}\"><h3><code>{}</code> {}</h3><dl class=\"kv\">",
        Html(&task.task_id),
        Html(&task.task_id),
        badge(task.status.as_str(), None)
    );
    if let Some(spec) = spec {
        w!(
            out,
            "<dt>handler</dt><dd><code>{}</code></dd>",
            Html(&spec.handler)
        );
        if !spec.depends_on.is_empty() {
            out.push_str("<dt>depends on</dt><dd>");
            for (i, dep) in spec.depends_on.iter().enumerate() {
                let sep = if i == 0 { "" } else { ", " };
                w!(
                    out,
                    "{sep}<a href=\"#task={}\" data-task-id=\"{}\">{}</a>",
                    crate::escape::url(dep),
                    Html(dep),
                    Html(dep)
                );
            }
            out.push_str("</dd>");
        }
        let timeout = spec
            .timeout_seconds
            .map_or(String::new(), |t| format!(", timeout {t} s"));
        w!(out, "<dt>retries</dt><dd>{}{timeout}</dd>", spec.retries);
    }
    w!(
        out,
        "<dt>attempts</dt><dd>{} ({} failed, {} interrupted)</dd>",
        task.attempts,
        task.failures,
        task.interruptions
    );
    if let Some(started) = task.started_at_ms {
        w!(out, "<dt>started</dt><dd>{} UTC</dd>", format_utc(started));
    }
    let duration = match (task.started_at_ms, task.finished_at_ms) {
        (Some(s), Some(f)) => Some(format_duration(f.saturating_sub(s))),
        (Some(s), None) if !snapshot.run.status.is_final() => {
            Some(format!("{}…", format_duration(now_ms.saturating_sub(s))))
        }
        _ => None,
    };
    if let Some(duration) = duration {
        w!(out, "<dt>duration</dt><dd>{duration}</dd>");
    }
    out.push_str("</dl>");

    if !task.history.is_empty() {
        out.push_str(
            "<table class=\"attempts\"><thead><tr><th>#</th><th>started (UTC)</th>\
             <th>took</th><th>waited</th><th>result</th></tr></thead><tbody>",
        );
        let mut previous_end: Option<u64> = None;
        for span in &task.history {
            let took = span.ended_at_ms.map_or_else(
                || "…".to_string(),
                |e| format_duration(e.saturating_sub(span.started_at_ms)),
            );
            let waited = previous_end.map_or_else(String::new, |e| {
                format_duration(span.started_at_ms.saturating_sub(e))
            });
            let result = span.status.map_or(
                if span.ended_at_ms.is_none() {
                    "running"
                } else {
                    "ended"
                },
                |s| s.as_str(),
            );
            w!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{took}</td><td>{waited}</td><td>{}</td></tr>",
                span.attempt,
                format_utc_time(span.started_at_ms),
                attempt_badge(result)
            );
            previous_end = span.ended_at_ms;
        }
        out.push_str("</tbody></table>");
    }

    if let Some(error) = &task.error {
        w!(
            out,
            "<h4>Error <code>{}</code></h4><pre class=\"err\">{}</pre>",
            Html(&error.error_type),
            Html(&error.message)
        );
    }
    if let Some(output) = task.output_value() {
        let (text, total) = preview(&output, OUTPUT_PREVIEW_BYTES);
        let note = total.map_or(String::new(), |n| {
            format!(" <small>(first {OUTPUT_PREVIEW_BYTES} of {n} bytes)</small>")
        });
        w!(
            out,
            "<h4>Output{note}</h4><pre class=\"out\">{}</pre>",
            Html(&text)
        );
    }
    out.push_str("</div>");
    out
}

/// `value` as indented JSON cut to `max` bytes (at a character boundary); the second value is
/// the whole text's size when it was cut.
pub(crate) fn preview(value: &Value, max: usize) -> (String, Option<usize>) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    if text.len() <= max {
        return (text, None);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let total = text.len();
    let mut cut = text;
    cut.truncate(end);
    cut.push('…');
    (cut, Some(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dagy_core::FlowBuilder;
    use dagy_store::{AttemptSpan, RunRecord, RunStatus, TaskErrorRecord, TaskStatus};
    use serde_json::json;

    fn snapshot(status: RunStatus) -> RunSnapshot {
        RunSnapshot {
            run: RunRecord {
                run_id: "r".into(),
                flow_name: "f".into(),
                deployment: None,
                status,
                parameters: Default::default(),
                plan: None,
                idempotency_key: None,
                cancel_requested: false,
                lease: None,
                wake_at_ms: 0,
                error: None,
                created_at_ms: 0,
                started_at_ms: Some(0),
                finished_at_ms: None,
            },
            flow: FlowBuilder::new("f").build().into(),
            tasks: vec![],
        }
    }

    #[test]
    fn a_preview_keeps_small_outputs_whole() {
        let (text, total) = preview(&json!({"rows": 3}), 100);
        assert_eq!(text, "{\n  \"rows\": 3\n}");
        assert_eq!(total, None);
    }

    #[test]
    fn a_preview_cuts_a_large_output_at_a_character_boundary() {
        let value = json!("ééééééééééééééééééééé");
        let (text, total) = preview(&value, 10);
        assert!(text.ends_with('…'));
        assert!(text.len() <= 10 + '…'.len_utf8());
        assert_eq!(total, Some(value.to_string().len()));
    }

    #[test]
    fn the_panel_lists_attempts_with_the_wait_between_them_and_escapes_the_error() {
        let mut task = TaskRecord::pending("flaky");
        task.status = TaskStatus::Failed;
        task.attempts = 2;
        task.failures = 2;
        task.started_at_ms = Some(1_000);
        task.finished_at_ms = Some(4_000);
        task.error = Some(Box::new(TaskErrorRecord {
            error_type: "TaskFailed".into(),
            message: "<script>alert('x')</script>".into(),
        }));
        task.history = vec![
            AttemptSpan {
                attempt: 1,
                started_at_ms: 1_000,
                ended_at_ms: Some(1_500),
                status: Some(TaskStatus::Retrying),
            },
            AttemptSpan {
                attempt: 2,
                started_at_ms: 3_500,
                ended_at_ms: Some(4_000),
                status: Some(TaskStatus::Failed),
            },
        ];
        let html = task_fragment(&snapshot(RunStatus::Failed), &task, None, 9_000);
        assert!(
            html.contains("<td>2.0 s</td>"),
            "the 2 s retry delay: {html}"
        );
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("<dt>duration</dt><dd>3.0 s</dd>"));
        assert!(
            html.contains("<span class=\"badge status-retrying\">failed, retried</span>"),
            "the first attempt failed and was retried: {html}"
        );
        assert!(!html.contains(">retrying<"));
    }

    #[test]
    fn the_panel_escapes_the_output() {
        let mut task = TaskRecord::pending("t");
        task.status = TaskStatus::Completed;
        task.output = Some(json!({"html": "</pre><b>bold</b>"}).into());
        let html = task_fragment(&snapshot(RunStatus::Completed), &task, None, 0);
        assert!(html.contains("&lt;/pre&gt;&lt;b&gt;bold&lt;/b&gt;"));
        assert!(!html.contains("<b>"));
    }
}
