//! Dagy's run dashboard: the recent runs, and for each run its DAG coloured by task status, a
//! timeline of every attempt, the plan that chose its tier, a log tail and a cancel button,
//! served as HTML (with a small script that follows a live run) over any
//! [`RunStore`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use dagy_store::MemoryStore;
//!
//! # async fn example() -> std::io::Result<()> {
//! let dashboard = dagy_ui::Dashboard::new(
//!     Arc::new(MemoryStore::new()),
//!     "the in-memory store".into(),
//!     "it is always reachable".into(),
//! );
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8421").await?;
//! println!("Dagy's dashboard: http://{}", listener.local_addr()?);
//! dashboard.serve(listener).await
//! # }
//! ```
//!
//! Pages: `/` (the runs, filtered by `status`, `name`, `since`, `until`, `limit`),
//! `/runs/{run_id}` (one run), `POST /runs/{run_id}/cancel`. JSON: `/api/runs` (same filters)
//! and `/api/runs/{run_id}` (`RunSnapshot::to_json`). The page's script polls the JSON while a
//! run is live and fetches the fragments `/runs/{run_id}/timeline`, `/runs/{run_id}/task?id=`
//! and `/runs/{run_id}/logs`.

use std::sync::Arc;

use async_trait::async_trait;
use dagy_store::{RunRecord, RunStore};

mod error;
mod escape;
mod filter;
mod gantt;
mod layout;
mod render;
mod routes;
mod time;

pub use error::Error;
pub use filter::{DEFAULT_LIMIT, Listing, MAX_LIMIT, RunsQuery};
pub use time::{format_duration, format_utc};

/// Reads the last lines a run's executor logged (the CLI reads ECS runs' from CloudWatch Logs).
#[async_trait]
pub trait LogTail: Send + Sync {
    /// Up to `lines` of `run`'s latest log lines, oldest first; `Err` says why they cannot be
    /// read (shown in the log panel as it is).
    async fn tail(&self, run: &RunRecord, lines: usize) -> Result<Vec<String>, String>;
}

/// The dashboard over one run store; turn it into a [`Router`](axum::Router) or
/// [`serve`](Dashboard::serve) it.
#[derive(Clone)]
pub struct Dashboard {
    store: Arc<dyn RunStore>,
    store_label: String,
    store_hint: String,
    logs: Option<Arc<dyn LogTail>>,
}

impl Dashboard {
    /// A dashboard over `store`. `store_label` names it on every page (`SQLite at
    /// /home/u/.dagy/runs.db`); `store_hint` tells the user how to fix it when it cannot be
    /// reached (shown on the 503 page).
    pub fn new(store: Arc<dyn RunStore>, store_label: String, store_hint: String) -> Self {
        Dashboard {
            store,
            store_label,
            store_hint,
            logs: None,
        }
    }

    /// Shows each run's log tail from `logs`; without it the log panel says logs are not
    /// available for this store.
    pub fn with_logs(mut self, logs: Arc<dyn LogTail>) -> Self {
        self.logs = Some(logs);
        self
    }

    /// The dashboard's routes, to serve or to nest in another router.
    pub fn router(self) -> axum::Router {
        routes::router(Arc::new(self))
    }

    /// Serves the dashboard on `listener` until the process ends or accepting fails.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router()).await
    }
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("store_label", &self.store_label)
            .field("logs", &self.logs.is_some())
            .finish_non_exhaustive()
    }
}
