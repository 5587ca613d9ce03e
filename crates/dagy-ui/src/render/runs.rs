//! The runs list: the filter form and a table of runs, newest first.

use dagy_store::{RunRecord, RunStatus};

use super::{Chrome, badge, page, w};
use crate::error::Error;
use crate::escape::{Html, run_path, url};
use crate::filter::{MAX_LIMIT, RUN_STATUSES, RunsQuery};
use crate::time::{format_duration, format_utc};

/// How many task ids the "now on" column names before it counts the rest.
const CURRENT_SHOWN: usize = 3;

/// A row of the list.
#[derive(Debug, Clone)]
pub(crate) struct RunRow {
    /// The run.
    pub run: RunRecord,
    /// For a running run whose tasks were read, the tasks running now.
    pub current: Option<Vec<String>>,
}

/// The runs page: the form filled in from `query`, then `rows`, or the problem with the query
/// (the 400 page).
pub(crate) fn runs_page(
    chrome: Chrome<'_>,
    query: &RunsQuery,
    rows: Result<(&[RunRow], usize), &Error>,
    now_ms: u64,
) -> String {
    let mut body = String::with_capacity(4_096);
    form(&mut body, query);
    match rows {
        Err(error) => w!(
            body,
            "<section class=\"panel problem\"><h1>Bad filter <small>400</small></h1><p>{}</p>\
             <p><a href=\"/\">Clear the filters</a></p></section>",
            Html(&error.to_string())
        ),
        Ok((rows, limit)) => table(&mut body, rows, limit, now_ms),
    }
    page(chrome, "Runs", &body)
}

fn form(body: &mut String, query: &RunsQuery) {
    let value = |v: &Option<String>| Html(v.as_deref().unwrap_or_default()).to_string();
    let status = query.status.as_deref().unwrap_or_default();
    body.push_str(
        "<form class=\"filters\" method=\"get\" action=\"/\"><label>status <select name=\"status\">\
         <option value=\"\">all</option>",
    );
    for s in RUN_STATUSES {
        w!(
            body,
            "<option value=\"{0}\"{1}>{0}</option>",
            s.as_str(),
            if s.as_str() == status {
                " selected"
            } else {
                ""
            }
        );
    }
    w!(
        body,
        "</select></label>\
         <label>flow or deployment <input name=\"name\" value=\"{}\" placeholder=\"any\" size=\"16\"></label>\
         <label>since <input name=\"since\" value=\"{}\" placeholder=\"2026-11-30 or 2d\" size=\"16\"></label>\
         <label>until <input name=\"until\" value=\"{}\" placeholder=\"2026-11-30T10:00\" size=\"16\"></label>\
         <label>limit <input name=\"limit\" value=\"{}\" placeholder=\"50\" size=\"4\" \
         title=\"1 to {MAX_LIMIT}\"></label>\
         <button type=\"submit\">Filter</button> <a href=\"/\">clear</a>\
         <span class=\"muted\">times are UTC</span></form>",
        value(&query.name),
        value(&query.since),
        value(&query.until),
        value(&query.limit)
    );
}

fn table(body: &mut String, rows: &[RunRow], limit: usize, now_ms: u64) {
    if rows.is_empty() {
        body.push_str("<p class=\"muted\">No run matches.</p>");
        return;
    }
    w!(
        body,
        "<p class=\"muted\">{} run{}, newest first{}.</p>",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        if rows.len() == limit {
            format!(" (the newest {limit}: raise limit or narrow the filter for more)")
        } else {
            String::new()
        }
    );
    body.push_str(
        "<table class=\"runs\"><thead><tr><th>run</th><th>flow / deployment</th><th>status</th>\
         <th>tier · backend</th><th>started (UTC)</th><th>duration</th><th>now on</th></tr>\
         </thead><tbody>",
    );
    for row in rows {
        let run = &row.run;
        let path = run_path(&run.run_id);
        w!(
            body,
            "<tr data-run-id=\"{}\" data-status=\"{}\"><td><a href=\"{}\"><code>{}</code></a></td><td>{}",
            Html(&run.run_id),
            run.status,
            Html(&path),
            Html(&run.run_id),
            Html(&run.flow_name)
        );
        if let Some(deployment) = &run.deployment {
            w!(body, " <small class=\"muted\">{}</small>", Html(deployment));
        }
        w!(body, "</td><td>{}", badge(run.status.as_str(), None));
        if run.cancel_requested && !run.status.is_final() {
            body.push_str(" <span class=\"badge cancel\">cancelling</span>");
        }
        body.push_str("</td><td>");
        match &run.plan {
            Some(plan) => w!(body, "{} · {}", plan.tier, plan.backend),
            None => body.push_str("<span class=\"muted\">—</span>"),
        }
        match run.started_at_ms {
            Some(s) => w!(body, "</td><td>{}", format_utc(s)),
            None => w!(
                body,
                "</td><td><span class=\"muted\">created {}</span>",
                format_utc(run.created_at_ms)
            ),
        }
        w!(body, "</td><td>{}</td><td>", duration(run, now_ms));
        if let Some(current) = &row.current {
            for (i, task) in current.iter().take(CURRENT_SHOWN).enumerate() {
                w!(
                    body,
                    "{}<a href=\"{}#task={}\"><code>{}</code></a>",
                    if i == 0 { "" } else { ", " },
                    Html(&path),
                    url(task),
                    Html(task)
                );
            }
            if current.len() > CURRENT_SHOWN {
                w!(body, " +{} more", current.len() - CURRENT_SHOWN);
            }
        }
        body.push_str("</td></tr>");
    }
    body.push_str("</tbody></table>");
}

/// A finished run's duration, or a running one's so far (with an ellipsis).
fn duration(run: &RunRecord, now_ms: u64) -> String {
    match (run.started_at_ms, run.finished_at_ms) {
        (Some(s), Some(f)) => format_duration(f.saturating_sub(s)),
        (Some(s), None) if run.status == RunStatus::Running => {
            format!("{}…", format_duration(now_ms.saturating_sub(s)))
        }
        _ => "<span class=\"muted\">—</span>".into(),
    }
}
