//! `dagy logs RUN [--follow]`: an ECS Fargate run's log, from CloudWatch Logs.
//!
//! It reads the ECS settings from the environment (`DAGY_ECS_CLUSTER_ARN`,
//! `DAGY_ECS_LOG_GROUP`, ...) and the AWS settings (`AWS_ENDPOINT_URL` for a local server).
//! With `--follow` it keeps polling, waiting longer while nothing new comes (and after
//! `ThrottlingException`), until the run is final (read from `DAGY_TABLE_NAME`) and its log
//! has nothing more, or Ctrl-C.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use dagy_backend_ecs::{EcsBackend, EcsError};
use dagy_store::RunStore;

/// Arguments of `dagy logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The run.
    pub run_id: String,
    /// Keep printing new lines until the run ends.
    #[arg(short, long)]
    pub follow: bool,
}

/// The shortest wait between polls.
pub const MIN_WAIT: Duration = Duration::from_millis(500);
/// The longest.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

/// The wait before the next poll: back to [`MIN_WAIT`] after new lines, doubled (up to
/// [`MAX_WAIT`]) after an empty poll or a throttled one.
pub fn next_wait(current: Duration, got_lines: bool) -> Duration {
    if got_lines {
        MIN_WAIT
    } else {
        (current * 2).clamp(MIN_WAIT, MAX_WAIT)
    }
}

/// Runs `dagy logs`.
pub fn run(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(follow(args))
}

async fn follow(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let settings = dagy_core::Settings::from_env()?;
    let ecs = settings.ecs.context(
        "DAGY_ECS_CLUSTER_ARN is not set: logs are kept for ECS Fargate runs; set the DAGY_ECS_* \
         variables of the deployment",
    )?;
    let config = dagy_store_dynamodb::sdk_config().await;
    let region = config
        .region()
        .map(ToString::to_string)
        .context("AWS_REGION is not set")?;
    let table = std::env::var(dagy_store_dynamodb::TABLE_NAME_VAR).unwrap_or_default();
    let backend = EcsBackend::new(
        aws_sdk_ecs::Client::new(&config),
        aws_sdk_cloudwatchlogs::Client::new(&config),
        ecs,
        &region,
        &table,
    );
    let store = if args.follow && !table.is_empty() {
        Some(dagy_store_dynamodb::DynamoStore::from_env().await?)
    } else {
        None
    };
    let mut next: Option<String> = None;
    let mut wait = MIN_WAIT;
    let stdout = std::io::stdout();
    loop {
        let got = match backend.logs(&args.run_id, next.as_deref()).await {
            Ok(page) => {
                let mut out = stdout.lock();
                for (_, line) in &page.events {
                    writeln!(out, "{line}")?;
                }
                out.flush()?;
                next = page.next.or(next);
                !page.events.is_empty()
            }
            Err(EcsError::Api { message, .. }) if args.follow && message.contains("Throttling") => {
                eprintln!("(throttled by CloudWatch Logs; slowing down)");
                false
            }
            Err(e) => return Err(e.into()),
        };
        if !args.follow {
            return Ok(ExitCode::SUCCESS);
        }
        if !got
            && let Some(store) = &store
            && store.get_run(&args.run_id).await?.status.is_final()
        {
            return Ok(ExitCode::SUCCESS);
        }
        wait = next_wait(wait, got);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_while_quiet_and_reset_on_new_lines() {
        let mut wait = MIN_WAIT;
        let mut seen = Vec::new();
        for _ in 0..8 {
            wait = next_wait(wait, false);
            seen.push(wait);
        }
        assert!(seen.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*seen.last().expect("waits"), MAX_WAIT);
        assert_eq!(next_wait(MAX_WAIT, true), MIN_WAIT);
    }
}
