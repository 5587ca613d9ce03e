//! The dashboard's HTML, as pure functions of the records: no I/O here. Every string that
//! comes from a flow, a run, a task or a store goes through [`Html`].

mod dag;
mod run;
mod runs;
mod task;
mod timeline;

pub(crate) use run::{RunView, logs_fragment, run_page};
pub(crate) use runs::{RunRow, runs_page};
pub(crate) use task::task_fragment;
pub(crate) use timeline::timeline_fragment;

use crate::error::Error;
use crate::escape::Html;

/// Appends formatted text to a `String` (which cannot fail).
macro_rules! w {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = write!($out, $($arg)*);
    }};
}
pub(crate) use w;

/// What every page shows around its content.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chrome<'a> {
    /// Which store the dashboard reads, e.g. `SQLite at /home/u/.dagy/runs.db`.
    pub store_label: &'a str,
    /// How to fix the store when it cannot be reached.
    pub store_hint: &'a str,
}

/// A whole page: the top bar, then `body`.
pub(crate) fn page(chrome: Chrome<'_>, title: &str, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 1_024);
    w!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Dagy</title>\
         <link rel=\"stylesheet\" href=\"{CSS_PATH}\"><script src=\"{JS_PATH}\" defer></script>\
         </head><body><header class=\"top\"><a class=\"brand\" href=\"/\">Dagy</a>\
         <nav><a href=\"/\">Runs</a></nav><span class=\"store\" title=\"The run store\">{}</span>\
         </header><main>",
        Html(title),
        Html(chrome.store_label)
    );
    out.push_str(body);
    out.push_str("</main></body></html>\n");
    out
}

/// Where the stylesheet is served.
pub(crate) const CSS_PATH: &str = "/assets/dagy.css";
/// Where the script is served.
pub(crate) const JS_PATH: &str = "/assets/dagy.js";

/// The page for an error: what happened and what to do about it.
pub(crate) fn error_page(chrome: Chrome<'_>, error: &Error) -> String {
    let mut body = String::new();
    w!(
        body,
        "<section class=\"panel problem\"><h1>{} <small>{}</small></h1>",
        Html(error.title()),
        error.status().as_u16()
    );
    match error {
        Error::Unavailable(detail) => w!(
            body,
            "<p>The dashboard cannot reach its run store: <strong>{}</strong>.</p>\
             <pre class=\"err\">{}</pre><p class=\"hint\">{}</p>\
             <p><a href=\"\">Try again</a></p>",
            Html(chrome.store_label),
            Html(detail),
            Html(chrome.store_hint)
        ),
        Error::RunNotFound { run_id } => w!(
            body,
            "<p>No run has the id <code>{}</code> in {}.</p>\
             <p><a href=\"/\">See the recent runs</a></p>",
            Html(run_id),
            Html(chrome.store_label)
        ),
        other => w!(
            body,
            "<p>{}</p><p><a href=\"/\">Back to the runs</a></p>",
            Html(&other.to_string())
        ),
    }
    body.push_str("</section>");
    page(chrome, error.title(), &body)
}

/// A status as a coloured badge; `field` names it for the page's script.
pub(crate) fn badge(status: &str, field: Option<&str>) -> String {
    let field = field.map_or(String::new(), |f| format!(" data-field=\"{f}\""));
    format!(
        "<span class=\"badge status-{0}\"{field}>{1}</span>",
        Html(status),
        Html(&status.replace('_', " "))
    )
}

/// How an attempt that ended as `result` (a task status, `running`, `interrupted`, `ended`)
/// reads: an attempt another followed was recorded as `retrying`, which the page counts as a
/// failure, so it reads "failed, retried".
pub(crate) fn attempt_result(result: &str) -> String {
    match result {
        "retrying" => "failed, retried".into(),
        other => other.replace('_', " "),
    }
}

/// An attempt's result as a badge coloured by `result` (amber for a retried failure).
pub(crate) fn attempt_badge(result: &str) -> String {
    format!(
        "<span class=\"badge status-{}\">{}</span>",
        Html(result),
        Html(&attempt_result(result))
    )
}

/// Text cut to `max` characters, with an ellipsis when cut.
pub(crate) fn clip(text: &str, max: usize) -> (std::borrow::Cow<'_, str>, bool) {
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((i, _)) if text[i..].chars().nth(1).is_some() => {
            (format!("{}…", &text[..i]).into(), true)
        }
        _ => (text.into(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME: Chrome<'static> = Chrome {
        store_label: "SQLite at /tmp/<runs>.db",
        store_hint: "check that the file exists & is readable",
    };

    #[test]
    fn an_unreachable_store_page_names_the_store_and_the_fix() {
        let html = error_page(CHROME, &Error::Unavailable("disk <gone>".into()));
        assert!(html.contains("SQLite at /tmp/&lt;runs&gt;.db"));
        assert!(html.contains("check that the file exists &amp; is readable"));
        assert!(html.contains("disk &lt;gone&gt;"));
        assert!(!html.contains("<gone>"));
    }

    #[test]
    fn a_not_found_page_escapes_the_run_id() {
        let html = error_page(
            CHROME,
            &Error::RunNotFound {
                run_id: "<img src=x>".into(),
            },
        );
        assert!(html.contains("&lt;img src=x&gt;"));
        assert!(!html.contains("<img"));
    }

    #[test]
    fn a_badge_reads_as_words() {
        assert_eq!(
            badge("timed_out", Some("status")),
            "<span class=\"badge status-timed_out\" data-field=\"status\">timed out</span>"
        );
    }

    #[test]
    fn clip_cuts_long_text_at_a_character_boundary() {
        assert_eq!(clip("short", 10), ("short".into(), false));
        assert_eq!(clip("exactly10!", 10), ("exactly10!".into(), false));
        assert_eq!(clip("ééééééééééé", 5), ("éééé…".into(), true));
        assert_eq!(clip("", 3), ("".into(), false));
    }

    #[test]
    fn a_retried_attempt_reads_as_a_failure() {
        assert_eq!(attempt_result("retrying"), "failed, retried");
        assert_eq!(attempt_result("timed_out"), "timed out");
        assert_eq!(
            attempt_badge("retrying"),
            "<span class=\"badge status-retrying\">failed, retried</span>"
        );
    }
}
