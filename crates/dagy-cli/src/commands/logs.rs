//! `dagy logs RUN [--follow]`: an ECS Fargate run's log, from CloudWatch Logs.
//!
//! Against a deployed stack (`DAGY_API_URL` or `DAGY_ROUTER_FUNCTION` set) it pages
//! `GET /runs/{id}/logs` like the other remote commands. Otherwise it reads CloudWatch Logs
//! itself, with the ECS settings from the environment (`DAGY_ECS_CLUSTER_ARN`,
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
    let remote = std::env::var_os(super::remote::API_URL_VAR).is_some()
        || std::env::var_os(super::remote::ROUTER_FUNCTION_VAR).is_some();
    if remote {
        return follow_remote(args).await;
    }
    let config = dagy_store_dynamodb::sdk_config().await;
    let backend = ecs_backend(&config)?;
    let table = std::env::var(dagy_store_dynamodb::TABLE_NAME_VAR).unwrap_or_default();
    let store = if args.follow && !table.is_empty() {
        Some(dagy_store_dynamodb::DynamoStore::from_env(&config)?)
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

/// The ECS backend the deployment's `DAGY_ECS_*` settings describe: what reads a run's log.
pub fn ecs_backend(config: &aws_config::SdkConfig) -> anyhow::Result<EcsBackend> {
    let settings = dagy_core::Settings::from_env()?;
    let ecs = settings.ecs.context(
        "DAGY_ECS_CLUSTER_ARN is not set: logs are kept for ECS Fargate runs; set the DAGY_ECS_* \
         variables of the deployment",
    )?;
    let region = config
        .region()
        .map(ToString::to_string)
        .context("AWS_REGION is not set")?;
    let table = std::env::var(dagy_store_dynamodb::TABLE_NAME_VAR).unwrap_or_default();
    Ok(EcsBackend::new(
        aws_sdk_ecs::Client::new(config),
        aws_sdk_cloudwatchlogs::Client::new(config),
        ecs,
        &region,
        &table,
    ))
}

/// The dashboard's log panel for ECS Fargate runs: the last lines of the run's log stream.
pub struct EcsLogTail {
    backend: EcsBackend,
}

impl EcsLogTail {
    /// The most pages of a log read for one tail.
    const MAX_PAGES: usize = 20;

    /// Over the deployment's ECS settings.
    pub fn new(backend: EcsBackend) -> Self {
        EcsLogTail { backend }
    }
}

#[async_trait::async_trait]
impl dagy_ui::LogTail for EcsLogTail {
    async fn tail(&self, run: &dagy_store::RunRecord, lines: usize) -> Result<Vec<String>, String> {
        let mut kept = std::collections::VecDeque::with_capacity(lines);
        let mut next: Option<String> = None;
        for _ in 0..Self::MAX_PAGES {
            let page = self
                .backend
                .logs(&run.run_id, next.as_deref())
                .await
                .map_err(|e| e.to_string())?;
            for (_, line) in page.events {
                if kept.len() == lines {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
            match page.next {
                Some(token) if next.as_deref() != Some(token.as_str()) => next = Some(token),
                _ => break,
            }
        }
        Ok(kept.into())
    }
}

/// `dagy logs` through the stack's `GET /runs/{id}/logs` (and `GET /runs/{id}` to know when a
/// followed run ended).
async fn follow_remote(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let target = super::remote::Target {
        api_url: std::env::var(super::remote::API_URL_VAR).ok(),
        router: std::env::var(super::remote::ROUTER_FUNCTION_VAR)
            .unwrap_or_else(|_| "dagy-router".into()),
    };
    let mut next: Option<String> = None;
    let mut wait = MIN_WAIT;
    loop {
        let path = match &next {
            Some(token) => format!("/runs/{}/logs?next={}", args.run_id, encode(token)),
            None => format!("/runs/{}/logs", args.run_id),
        };
        let (status, body) = super::remote::request(&target, "GET", &path, None).await?;
        let got = match status {
            200 => {
                let events = body["events"].as_array().cloned().unwrap_or_default();
                for event in &events {
                    crate::output::out!("{}", event["message"].as_str().unwrap_or_default());
                }
                next = body["next"].as_str().map(str::to_string).or(next);
                !events.is_empty()
            }
            429 | 503 if args.follow => false,
            _ => {
                super::remote::print_refusal(status, &body);
                return Ok(ExitCode::from(1));
            }
        };
        if !args.follow {
            return Ok(ExitCode::SUCCESS);
        }
        if !got {
            let (_, run) =
                super::remote::request(&target, "GET", &format!("/runs/{}", args.run_id), None)
                    .await?;
            if matches!(
                run["status"].as_str(),
                Some("completed" | "failed" | "cancelled" | "timed_out")
            ) {
                return Ok(ExitCode::SUCCESS);
            }
        }
        wait = next_wait(wait, got);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_percent_encoded() {
        assert_eq!(encode("f/3713/s+x=="), "f%2F3713%2Fs%2Bx%3D%3D");
        assert_eq!(encode("plain-token_1.2~"), "plain-token_1.2~");
    }

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
