//! `dagy-worker`: the ECS Fargate container's entry point (image `dagy-worker`).
//!
//! It runs the run named by `DAGY_RUN_ID` to its end with the local executor (tasks one at a
//! time), holding and renewing the run's lease. The run is read from the DynamoDB table
//! `DAGY_TABLE_NAME`, or, with `DAGY_STORE=sqlite`, from the embedded store
//! `$DAGY_HOME/runs.db` (a container with the host's `DAGY_HOME` mounted runs a local run).
//! Besides the handlers compiled in, it registers the `exec:` command handlers of the image's
//! handler manifest (`/etc/dagy/handlers.toml`, or `DAGY_HANDLERS_FILE`; see `dagy_exec`).
//! [`WorkerConfig::from_lookup`] reads all of that. On SIGTERM (ECS
//! `StopTask`: a cancel) or SIGINT it stops at the next task boundary and records the run as
//! cancelled, well within ECS's 30-second grace: the task in flight sees its cancellation
//! token. A second worker on the same run finds the lease held and exits. Logs are JSON lines
//! on standard output (the `awslogs` driver sends them to CloudWatch Logs), level from
//! `RUST_LOG` (default `info`).
//!
//! Exit codes: 0 when the run completed (or was already final), 1 when it ended otherwise,
//! 2 when the worker could not work (configuration, store).
//!
//! A project's worker binary is one call: `fn main() -> ExitCode { dagy_worker::run(registry()) }`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use dagy_engine::{Budget, Executor, HandlerRegistry, RunOptions, StepOutcome, TracingObserver};
use dagy_exec::{ExecError, ManifestLocation};
use dagy_functions::dispatch::LambdaTaskInvoker;
use dagy_store::{RunStatus, RunStore, StoreError};

/// The variable naming the run.
pub const RUN_ID_VAR: &str = "DAGY_RUN_ID";
/// The variable choosing the store: `dynamodb` (the default) or `sqlite`.
pub const STORE_VAR: &str = "DAGY_STORE";

/// Why the worker cannot start work.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// No run to work on.
    #[error(
        "{RUN_ID_VAR} is not set: the router (or whatever starts the container) sets it to the run's id"
    )]
    MissingRunId,
    /// `DAGY_STORE` names no store the worker has.
    #[error(
        "{STORE_VAR}={0:?} is not a store the worker has: use dynamodb (the default, with \
         DAGY_TABLE_NAME) or sqlite (the embedded store in $DAGY_HOME/runs.db)"
    )]
    UnknownStore(String),
    /// The handler manifest cannot be used.
    #[error(transparent)]
    Handlers(#[from] ExecError),
    /// The store cannot be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where the worker keeps runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// The DynamoDB table `DAGY_TABLE_NAME` (ECS Fargate).
    DynamoDb,
    /// The embedded SQLite store, `$DAGY_HOME/runs.db` (a local container).
    Sqlite,
}

/// The worker's configuration, read in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// The run (`DAGY_RUN_ID`).
    pub run_id: String,
    /// The store (`DAGY_STORE`); the store's own variables are read when it is opened
    /// (`DAGY_TABLE_NAME`, `DAGY_RUN_RETENTION_DAYS`; `DAGY_HOME`).
    pub store: StoreKind,
    /// The handler manifest (`DAGY_HANDLERS_FILE`, or the default path).
    pub handlers: ManifestLocation,
}

impl WorkerConfig {
    /// Reads the configuration from `lookup` (an environment); empty values count as unset.
    ///
    /// ```
    /// use dagy_worker::{StoreKind, WorkerConfig};
    /// let config = WorkerConfig::from_lookup(|k| match k {
    ///     "DAGY_RUN_ID" => Some("r1".into()),
    ///     "DAGY_STORE" => Some("sqlite".into()),
    ///     _ => None,
    /// })?;
    /// assert_eq!((config.run_id.as_str(), config.store), ("r1", StoreKind::Sqlite));
    /// # Ok::<(), dagy_worker::WorkerError>(())
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, WorkerError> {
        let set = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let run_id = set(RUN_ID_VAR).ok_or(WorkerError::MissingRunId)?;
        let store = match set(STORE_VAR)
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("dynamodb") => StoreKind::DynamoDb,
            Some("sqlite") => StoreKind::Sqlite,
            Some(other) => return Err(WorkerError::UnknownStore(other.to_string())),
        };
        Ok(WorkerConfig {
            run_id,
            store,
            handlers: ManifestLocation::from_lookup(&lookup),
        })
    }

    /// From the process's environment.
    pub fn from_env() -> Result<Self, WorkerError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }
}

/// Runs the run named by `DAGY_RUN_ID` with `registry`'s handlers, and says how it ended as
/// the process's exit code.
pub fn run(registry: HandlerRegistry) -> ExitCode {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_current_span(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(work(registry)) {
        Ok(RunStatus::Completed) => ExitCode::SUCCESS,
        Ok(status) => {
            tracing::warn!(status = %status, "the run did not complete");
            ExitCode::from(1)
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "the worker could not run");
            ExitCode::from(2)
        }
    }
}

async fn work(mut registry: HandlerRegistry) -> anyhow::Result<RunStatus> {
    let config = WorkerConfig::from_env()?;
    let run_id = config.run_id;
    if let Some(manifest) = config.handlers.load()? {
        manifest.register(&mut registry);
        let names: Vec<String> = manifest
            .entries()
            .iter()
            .map(|e| e.handler_name())
            .collect();
        tracing::info!(manifest = %config.handlers.path.display(), handlers = ?names, "command handlers registered");
    }
    let store: Arc<dyn RunStore> = match config.store {
        StoreKind::DynamoDb => {
            let sdk = dagy_store_dynamodb::sdk_config().await;
            registry.set_lambda_invoker(Arc::new(LambdaTaskInvoker::from_sdk_config(&sdk)));
            Arc::new(dagy_store_dynamodb::DynamoStore::from_env(&sdk)?)
        }
        StoreKind::Sqlite => {
            let path = dagy_store_sqlite::default_path().map_err(WorkerError::from)?;
            tracing::info!(path = %path.display(), "embedded store");
            Arc::new(dagy_store_sqlite::SqliteStore::open(&path).map_err(WorkerError::from)?)
        }
    };
    let owner = format!("ecs-worker:{}:{}", hostname(), std::process::id());
    let executor = Executor::new(store, Arc::new(registry))
        .with_owner(owner)
        .with_observer(Arc::new(TracingObserver));

    let cancel = CancellationToken::new();
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::warn!("SIGTERM: stopping at the next task boundary"),
            _ = int.recv() => tracing::warn!("SIGINT: stopping at the next task boundary"),
        }
        on_signal.cancel();
    });

    let options = RunOptions {
        budget: Budget::Unlimited,
        deadline: None,
        cancel,
        ..RunOptions::default()
    };
    tracing::info!(run_id, "worker started");
    let outcome = executor
        .run(&run_id, &options)
        .await
        .with_context(|| format!("run {run_id}"))?;
    tracing::info!(run_id, outcome = ?outcome, "worker done");
    Ok(match outcome {
        StepOutcome::Finished(status) => status,
        StepOutcome::Busy { owner, .. } => {
            tracing::warn!(
                run_id,
                owner,
                "another executor holds the run; nothing to do"
            );
            RunStatus::Running
        }
        StepOutcome::Superseded | StepOutcome::Continue { .. } => RunStatus::Running,
    })
}

/// The container's host name (the ECS task's), for the lease owner.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
