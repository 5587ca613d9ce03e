//! A run's page: its header, DAG, timeline, task panel, plan and log tail.

use std::collections::HashMap;

use dagy_store::{PlanRecord, RunSnapshot, TaskStatus};

use super::dag::{MAX_EDGES, dag_svg};
use super::timeline::timeline_fragment;
use super::{Chrome, badge, page, w};
use crate::escape::{Html, run_path};
use crate::layout::{DAG_GEOMETRY, graph_of, lay_out};
use crate::time::{format_duration, format_utc};

/// Task statuses in the order the header counts them.
const COUNT_ORDER: [TaskStatus; 8] = [
    TaskStatus::Completed,
    TaskStatus::Running,
    TaskStatus::Retrying,
    TaskStatus::Pending,
    TaskStatus::Failed,
    TaskStatus::TimedOut,
    TaskStatus::Skipped,
    TaskStatus::Cancelled,
];

/// What the run page shows beside the records.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunView {
    /// Now, for the durations of what is still running.
    pub now_ms: u64,
    /// Whether a log tail is configured.
    pub has_logs: bool,
}

/// The whole page of one run.
pub(crate) fn run_page(chrome: Chrome<'_>, snapshot: &RunSnapshot, view: RunView) -> String {
    let run = &snapshot.run;
    let path = run_path(&run.run_id);
    let is_final = run.status.is_final();
    let mut body = String::with_capacity(snapshot.tasks.len() * 500 + 8_192);
    w!(
        body,
        "<div class=\"run\" data-run-id=\"{}\" data-run-path=\"{}\" data-final=\"{}\">",
        Html(&run.run_id),
        Html(&path),
        is_final
    );
    header(&mut body, snapshot, view.now_ms, &path);

    // The graph, and the task panel beside it.
    let ids: Vec<&str> = snapshot.flow.tasks.iter().map(|t| t.id.as_str()).collect();
    let by_id: HashMap<&str, TaskStatus> = snapshot
        .tasks
        .iter()
        .map(|t| (t.task_id.as_str(), t.status))
        .collect();
    let statuses: Vec<TaskStatus> = ids
        .iter()
        .map(|id| by_id.get(id).copied().unwrap_or(TaskStatus::Pending))
        .collect();
    let graph = graph_of(&snapshot.flow);
    let layout = lay_out(&graph.levels, ids.len(), &DAG_GEOMETRY);
    w!(
        body,
        "<div class=\"split\"><section class=\"panel graph\"><h2>Graph <small>{} tasks · {} levels · \
         {} edges</small></h2>",
        ids.len(),
        graph.levels.len(),
        graph.edges.len()
    );
    legend(&mut body);
    if let Some(problem) = &graph.problem {
        w!(
            body,
            "<p class=\"warn\">The stored flow does not validate, so it is shown without levels \
             or edges: {}</p>",
            Html(problem)
        );
    }
    if graph.edges.len() > MAX_EDGES {
        w!(
            body,
            "<p class=\"warn\">Only the first {MAX_EDGES} of {} edges are drawn.</p>",
            graph.edges.len()
        );
    }
    w!(
        body,
        "<div class=\"scroll\" id=\"dag\">{}</div></section>\
         <aside class=\"panel side\"><h2>Task</h2><div id=\"task-panel\" data-src=\"{}/task\">\
         <p class=\"muted\">Click a task in the graph or the timeline to see its attempts, \
         error and output.</p></div></aside></div>",
        dag_svg(&graph, &layout, &ids, &statuses),
        Html(&path)
    );

    w!(
        body,
        "<section class=\"panel\"><h2>Timeline <small>one row per task, one bar per attempt\
         </small></h2><div class=\"scroll\" id=\"timeline\" data-src=\"{}/timeline\">{}</div></section>",
        Html(&path),
        timeline_fragment(snapshot, view.now_ms)
    );

    body.push_str("<div class=\"pair\"><section class=\"panel\"><h2>Plan</h2>");
    plan(&mut body, run.plan.as_ref());
    w!(
        body,
        "</section><section class=\"panel\"><h2>Logs <small><a href=\"{0}/logs\">open</a></small>\
         </h2><div id=\"logs\" data-src=\"{0}/logs\">{1}</div></section></div>",
        Html(&path),
        if view.has_logs {
            "<p class=\"muted\">Loading the log tail…</p>"
        } else {
            NO_LOGS
        }
    );
    if !run.parameters.is_empty() {
        let params = serde_json::to_string_pretty(&run.parameters).unwrap_or_default();
        w!(
            body,
            "<details class=\"panel\"><summary>Parameters</summary><pre class=\"out\">{}</pre></details>",
            Html(&params)
        );
    }
    body.push_str("</div>");
    page(chrome, &format!("{} {}", run.flow_name, run.run_id), &body)
}

fn header(body: &mut String, snapshot: &RunSnapshot, now_ms: u64, path: &str) {
    let run = &snapshot.run;
    w!(
        body,
        "<section class=\"run-head\"><h1>{} <small>run <code>{}</code></small></h1><div class=\"facts\">{}",
        Html(&run.flow_name),
        Html(&run.run_id),
        badge(run.status.as_str(), Some("status"))
    );
    w!(
        body,
        "<span class=\"badge cancel\" data-field=\"cancel\"{}>cancel requested</span>",
        if run.cancel_requested { "" } else { " hidden" }
    );
    if let Some(deployment) = &run.deployment {
        w!(body, "<span>deployment <b>{}</b></span>", Html(deployment));
    }
    if let Some(plan) = &run.plan {
        w!(body, "<span>{} · {}</span>", plan.tier, plan.backend);
    }
    w!(
        body,
        "<span>created {} UTC</span>",
        format_utc(run.created_at_ms)
    );
    if let Some(started) = run.started_at_ms {
        w!(body, "<span>started {} UTC</span>", format_utc(started));
    }
    let duration = match (run.started_at_ms, run.finished_at_ms) {
        (Some(s), Some(f)) => format_duration(f.saturating_sub(s)),
        (Some(s), None) => format!("{}…", format_duration(now_ms.saturating_sub(s))),
        _ => String::new(),
    };
    w!(
        body,
        "<span data-field=\"duration\" data-started=\"{}\">{duration}</span>\
         <span class=\"counts\" data-field=\"counts\">{}</span></div>",
        run.started_at_ms.unwrap_or(0),
        counts(snapshot.tasks.iter().map(|t| t.status))
    );
    w!(
        body,
        "<p class=\"run-error\" data-field=\"error\"{}>{}</p>",
        if run.error.is_some() { "" } else { " hidden" },
        Html(run.error.as_deref().unwrap_or_default())
    );
    if !run.status.is_final() {
        w!(
            body,
            "<form class=\"cancel-form\" method=\"post\" action=\"{}/cancel\" \
             data-confirm=\"Cancel this run? It stops at its next task boundary.\">\
             <button type=\"submit\"{}>{}</button></form>",
            Html(path),
            if run.cancel_requested {
                " disabled"
            } else {
                ""
            },
            if run.cancel_requested {
                "Cancel requested: the run stops at its next task boundary"
            } else {
                "Cancel run"
            }
        );
    }
    body.push_str("</section>");
}

/// `1650 completed · 3 running · 47 pending`, in [`COUNT_ORDER`]; the page's script writes the
/// same text from the JSON.
pub(crate) fn counts(statuses: impl Iterator<Item = TaskStatus>) -> String {
    let mut n = [0usize; COUNT_ORDER.len()];
    for status in statuses {
        if let Some(i) = COUNT_ORDER.iter().position(|s| *s == status) {
            n[i] += 1;
        }
    }
    COUNT_ORDER
        .iter()
        .zip(n)
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| format!("{n} {}", s.as_str().replace('_', " ")))
        .collect::<Vec<_>>()
        .join(" · ")
}

fn legend(body: &mut String) {
    body.push_str("<div class=\"legend\">");
    for status in COUNT_ORDER {
        body.push_str(&badge(status.as_str(), None));
    }
    body.push_str("</div>");
}

fn plan(body: &mut String, plan: Option<&PlanRecord>) {
    let Some(plan) = plan else {
        body.push_str(
            "<p class=\"muted\">No plan is recorded: the run was started here, not through the \
             router.</p>",
        );
        return;
    };
    w!(
        body,
        "<dl class=\"kv\"><dt>tier</dt><dd><b>{}</b></dd><dt>backend</dt><dd>{}</dd>\
         <dt>decided by</dt><dd><code>{}</code></dd><dt>why this tier</dt><dd>{}</dd>",
        plan.tier,
        plan.backend,
        Html(&plan.decided_by),
        Html(&plan.reason)
    );
    if let Some(fallback) = &plan.fallback {
        w!(body, "<dt>fallback</dt><dd>{}</dd>", Html(fallback));
    }
    let mode = serde_json::to_value(plan.mode)
        .ok()
        .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
        .unwrap_or_default();
    w!(body, "<dt>mode</dt><dd>{mode}</dd>");
    if let Some(size) = plan.resources {
        w!(body, "<dt>Fargate size</dt><dd>{size}</dd>");
    }
    body.push_str("</dl>");
}

/// What the log panel says when the dashboard has no log tail.
const NO_LOGS: &str = "<p class=\"muted\">Logs are not available for this store.</p>";

/// The log panel's content: `None` without a log tail, else what the tail returned.
pub(crate) fn logs_fragment(tail: Option<Result<Vec<String>, String>>) -> String {
    match tail {
        None => NO_LOGS.to_string(),
        Some(Err(reason)) => format!(
            "<p class=\"muted\">The logs cannot be read: {}</p>",
            Html(&reason)
        ),
        Some(Ok(lines)) if lines.is_empty() => "<p class=\"muted\">No log lines yet.</p>".into(),
        Some(Ok(lines)) => {
            let mut out = String::from("<pre class=\"log\">");
            for line in &lines {
                w!(out, "{}\n", Html(line));
            }
            out.push_str("</pre>");
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_list_each_status_present_in_a_fixed_order() {
        let statuses = [
            TaskStatus::Pending,
            TaskStatus::Completed,
            TaskStatus::TimedOut,
            TaskStatus::Completed,
        ];
        assert_eq!(
            counts(statuses.into_iter()),
            "2 completed · 1 pending · 1 timed out"
        );
        assert_eq!(counts(std::iter::empty()), "");
    }

    #[test]
    fn log_lines_are_escaped() {
        let html = logs_fragment(Some(Ok(vec!["<b>x</b> & y".into()])));
        assert_eq!(
            html,
            "<pre class=\"log\">&lt;b&gt;x&lt;/b&gt; &amp; y\n</pre>"
        );
    }

    #[test]
    fn without_a_log_tail_the_panel_says_logs_are_not_available() {
        assert!(logs_fragment(None).contains("not available for this store"));
        assert!(logs_fragment(Some(Err("<denied>".into()))).contains("&lt;denied&gt;"));
    }
}
