//! `dagy-worker`: the ECS Fargate container's entry point (image `dagy-worker`).
//!
//! It runs the run named by `DAGY_RUN_ID` from the table `DAGY_TABLE_NAME` to its end with the
//! local executor (tasks one at a time), holding and renewing the run's lease. On SIGTERM (ECS
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
use dagy_functions::dispatch::LambdaTaskInvoker;
use dagy_store::RunStatus;

/// The variable naming the run.
const RUN_ID_VAR: &str = "DAGY_RUN_ID";

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
    let run_id = std::env::var(RUN_ID_VAR)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .with_context(|| format!("{RUN_ID_VAR} is not set: the router sets it on the task"))?;
    let config = dagy_store_dynamodb::sdk_config().await;
    let store = Arc::new(dagy_store_dynamodb::DynamoStore::from_env(&config)?);
    registry.set_lambda_invoker(Arc::new(LambdaTaskInvoker::from_sdk_config(&config)));
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
