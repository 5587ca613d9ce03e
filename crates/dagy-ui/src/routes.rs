//! The HTTP side: each handler extracts its inputs, asks the store, and hands the records to a
//! render function. Store errors become pages (or JSON) with the right status, never a panic.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use dagy_store::{RunStatus, StoreError, TaskStatus, now_ms};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Dashboard;
use crate::error::Error;
use crate::escape::{Html, run_path};
use crate::filter::{Listing, RunsQuery};
use crate::render::{self, Chrome, RunRow, RunView};

/// How many running runs of a listing have their tasks read for the "now on" column.
const CURRENT_LOOKUPS: usize = 20;
/// How many log lines the log panel asks for.
const LOG_LINES: usize = 200;

type App = Arc<Dashboard>;

/// Every route of the dashboard.
pub(crate) fn router(app: App) -> Router {
    Router::new()
        .route("/", get(runs_page))
        .route("/runs/{run_id}", get(run_page))
        .route("/runs/{run_id}/cancel", post(cancel))
        .route("/runs/{run_id}/task", get(task_fragment))
        .route("/runs/{run_id}/timeline", get(timeline_fragment))
        .route("/runs/{run_id}/logs", get(logs_fragment))
        .route("/api/runs", get(api_runs))
        .route("/api/runs/{run_id}", get(api_run))
        .route(render::CSS_PATH, get(css))
        .route(render::JS_PATH, get(js))
        .fallback(no_such_page)
        .with_state(app)
}

impl Dashboard {
    fn chrome(&self) -> Chrome<'_> {
        Chrome {
            store_label: &self.store_label,
            store_hint: &self.store_hint,
        }
    }

    /// An error as a whole page.
    fn error_page(&self, error: &Error) -> Response {
        html(error.status(), render::error_page(self.chrome(), error))
    }

    /// An error as a fragment for the page's script to show in place.
    fn error_fragment(&self, error: &Error) -> Response {
        let body = match error {
            Error::Unavailable(_) => format!(
                "<p class=\"warn\">{} ({}). {}</p>",
                Html(&error.to_string()),
                Html(&self.store_label),
                Html(&self.store_hint)
            ),
            other => format!("<p class=\"warn\">{}</p>", Html(&other.to_string())),
        };
        html(error.status(), body)
    }

    /// An error as JSON: `{"error": {"code", "message", "store"?, "hint"?}}`.
    fn error_json(&self, error: &Error) -> Response {
        let mut body = json!({ "code": error.code(), "message": error.to_string() });
        if let Error::Unavailable(_) = error {
            body["store"] = json!(self.store_label);
            body["hint"] = json!(self.store_hint);
        }
        json_response(error.status(), &json!({ "error": body }))
    }

    /// The runs of `listing`, with the running tasks of the first running ones.
    async fn rows(&self, listing: &Listing) -> Result<Vec<RunRow>, Error> {
        let runs = self
            .store
            .recent_runs(&listing.filter, listing.limit)
            .await?;
        let mut rows = Vec::with_capacity(runs.len());
        let mut lookups = 0;
        for run in runs {
            let current = if run.status == RunStatus::Running && lookups < CURRENT_LOOKUPS {
                lookups += 1;
                // A run that vanished or cannot be read just shows no tasks here.
                self.store.load_run(&run.run_id).await.ok().map(|s| {
                    s.tasks
                        .into_iter()
                        .filter(|t| t.status == TaskStatus::Running)
                        .map(|t| t.task_id)
                        .collect()
                })
            } else {
                None
            };
            rows.push(RunRow { run, current });
        }
        Ok(rows)
    }
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        value.to_string(),
    )
        .into_response()
}

async fn runs_page(
    State(app): State<App>,
    query: Result<Query<RunsQuery>, QueryRejection>,
) -> Response {
    let now = now_ms();
    let query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => {
            return app.error_page(&Error::BadQuery(rejection.body_text()));
        }
    };
    let chrome = app.chrome();
    let listing = match query.listing(now) {
        Ok(listing) => listing,
        Err(e) => {
            return html(e.status(), render::runs_page(chrome, &query, Err(&e), now));
        }
    };
    match app.rows(&listing).await {
        Ok(rows) => html(
            StatusCode::OK,
            render::runs_page(chrome, &query, Ok((&rows, listing.limit)), now),
        ),
        Err(e) => app.error_page(&e),
    }
}

async fn run_page(State(app): State<App>, Path(run_id): Path<String>) -> Response {
    match app.store.load_run(&run_id).await {
        Ok(snapshot) => {
            let view = RunView {
                now_ms: now_ms(),
                has_logs: app.logs.is_some(),
            };
            html(
                StatusCode::OK,
                render::run_page(app.chrome(), &snapshot, view),
            )
        }
        Err(e) => app.error_page(&e.into()),
    }
}

/// Whether a state-changing request comes from the dashboard's own pages: its `Origin` (sent
/// by browsers with every POST) names the host it was sent to, or, without one, the browser
/// does not say it is cross-site. Requests from tools (curl, tests) send neither and pass.
pub(crate) fn same_origin(
    origin: Option<&str>,
    host: Option<&str>,
    fetch_site: Option<&str>,
) -> bool {
    match origin {
        Some(origin) => host.is_some_and(|host| {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .is_some_and(|o| o.eq_ignore_ascii_case(host))
        }),
        None => fetch_site.is_none_or(|site| site != "cross-site"),
    }
}

async fn cancel(
    State(app): State<App>,
    Path(run_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let origin = get("origin");
    if !same_origin(origin, get("host"), get("sec-fetch-site")) {
        return app.error_page(&Error::CrossOrigin {
            origin: origin.unwrap_or("unknown").to_string(),
        });
    }
    match app.store.request_cancel(&run_id, now_ms()).await {
        // A run that finished meanwhile has nothing to cancel: its page says how it ended.
        Ok(_) | Err(StoreError::RunFinished { .. }) => {
            Redirect::to(&run_path(&run_id)).into_response()
        }
        Err(e) => app.error_page(&e.into()),
    }
}

/// The task panel's query: `?id=<task id>` (a query value, since a task id may be `..`).
#[derive(Debug, Deserialize)]
struct TaskQuery {
    id: String,
}

async fn task_fragment(
    State(app): State<App>,
    Path(run_id): Path<String>,
    query: Result<Query<TaskQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(TaskQuery { id })) = query else {
        return app.error_fragment(&Error::BadQuery(
            "the task panel needs ?id=<task id>".into(),
        ));
    };
    let snapshot = match app.store.load_run(&run_id).await {
        Ok(snapshot) => snapshot,
        Err(e) => return app.error_fragment(&e.into()),
    };
    let Some(task) = snapshot.tasks.iter().find(|t| t.task_id == id) else {
        return app.error_fragment(&Error::TaskNotFound {
            run_id,
            task_id: id,
        });
    };
    let spec = snapshot.flow.tasks.iter().find(|t| t.id == id);
    html(
        StatusCode::OK,
        render::task_fragment(&snapshot, task, spec, now_ms()),
    )
}

async fn timeline_fragment(State(app): State<App>, Path(run_id): Path<String>) -> Response {
    match app.store.load_run(&run_id).await {
        Ok(snapshot) => html(
            StatusCode::OK,
            render::timeline_fragment(&snapshot, now_ms()),
        ),
        Err(e) => app.error_fragment(&e.into()),
    }
}

async fn logs_fragment(State(app): State<App>, Path(run_id): Path<String>) -> Response {
    let Some(logs) = &app.logs else {
        return html(StatusCode::OK, render::logs_fragment(None));
    };
    match app.store.get_run(&run_id).await {
        Ok(run) => {
            let tail = logs.tail(&run, LOG_LINES).await;
            html(StatusCode::OK, render::logs_fragment(Some(tail)))
        }
        Err(e) => app.error_fragment(&e.into()),
    }
}

async fn api_runs(
    State(app): State<App>,
    query: Result<Query<RunsQuery>, QueryRejection>,
) -> Response {
    let listing = query
        .map_err(|rejection| Error::BadQuery(rejection.body_text()))
        .and_then(|Query(query)| query.listing(now_ms()));
    let listing = match listing {
        Ok(listing) => listing,
        Err(e) => return app.error_json(&e),
    };
    match app.store.recent_runs(&listing.filter, listing.limit).await {
        Ok(runs) => json_response(
            StatusCode::OK,
            &json!({ "runs": runs, "limit": listing.limit }),
        ),
        Err(e) => app.error_json(&e.into()),
    }
}

async fn api_run(State(app): State<App>, Path(run_id): Path<String>) -> Response {
    match app.store.load_run(&run_id).await {
        Ok(snapshot) => json_response(StatusCode::OK, &snapshot.to_json()),
        Err(e) => app.error_json(&e.into()),
    }
}

async fn no_such_page(State(app): State<App>, uri: Uri) -> Response {
    let error = Error::NoSuchPage {
        path: uri.path().to_string(),
    };
    if uri.path().starts_with("/api/") {
        app.error_json(&error)
    } else {
        app.error_page(&error)
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

async fn css() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../assets/dagy.css"),
    )
}

async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../assets/dagy.js"),
    )
}

#[cfg(test)]
mod tests {
    use super::same_origin;

    #[test]
    fn a_post_from_the_dashboards_own_page_is_same_origin() {
        assert!(same_origin(
            Some("http://127.0.0.1:8421"),
            Some("127.0.0.1:8421"),
            Some("same-origin")
        ));
        assert!(same_origin(
            Some("http://LOCALHOST:1"),
            Some("localhost:1"),
            None
        ));
    }

    #[test]
    fn a_post_from_another_site_is_refused() {
        assert!(!same_origin(
            Some("https://evil.example"),
            Some("127.0.0.1:8421"),
            Some("cross-site")
        ));
        assert!(!same_origin(Some("null"), Some("127.0.0.1:8421"), None));
        assert!(!same_origin(Some("http://127.0.0.1:8421"), None, None));
        assert!(!same_origin(
            None,
            Some("127.0.0.1:8421"),
            Some("cross-site")
        ));
    }

    #[test]
    fn a_request_from_a_tool_without_browser_headers_passes() {
        assert!(same_origin(None, None, None));
    }
}
