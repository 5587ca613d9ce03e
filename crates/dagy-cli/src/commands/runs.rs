//! `dagy runs`: the recent runs in the embedded store (or a DynamoDB table), newest first.

use std::process::ExitCode;

use anyhow::Context;

use crate::commands::store::{self, StoreKind};

/// Arguments of `dagy runs`.
#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    /// Only runs with this status (pending, running, completed, failed, timed_out, cancelled).
    #[arg(long)]
    pub status: Option<String>,
    /// Only runs of this flow or deployment.
    #[arg(long)]
    pub name: Option<String>,
    /// Only runs started at or after this time: 2026-11-30, 2026-11-30T14:05, or 2h / 3d ago.
    #[arg(long)]
    pub since: Option<String>,
    /// Only runs started before this time (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// How many runs, at most.
    #[arg(long)]
    pub limit: Option<String>,
    /// Print the runs as JSON.
    #[arg(long)]
    pub json: bool,
    /// Where the runs are.
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite)]
    pub store: StoreKind,
}

/// Runs `dagy runs`.
pub fn run(args: RunsArgs) -> anyhow::Result<ExitCode> {
    let query = dagy_ui::RunsQuery {
        status: args.status,
        name: args.name,
        since: args.since,
        until: args.until,
        limit: args.limit,
    };
    let listing = match query.listing(dagy_store::now_ms()) {
        Ok(listing) => listing,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let opened = store::open_durable(args.store, "runs").await?;
        let runs = opened
            .store
            .recent_runs(&listing.filter, listing.limit)
            .await
            .with_context(|| format!("{}: {}", opened.label, opened.hint))?;
        if args.json {
            crate::output::out!("{}", serde_json::to_string_pretty(&runs)?);
        } else {
            print_table(&runs, dagy_store::now_ms());
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn print_table(runs: &[dagy_store::RunRecord], now_ms: u64) {
    crate::output::out!(
        "{:<38} {:<24} {:<10} {:<22} {:<19} {:>9}",
        "RUN",
        "FLOW",
        "STATUS",
        "TIER / BACKEND",
        "CREATED (UTC)",
        "DURATION"
    );
    for run in runs {
        let name = run.deployment.as_deref().unwrap_or(&run.flow_name);
        let placement = run
            .plan
            .as_ref()
            .map_or("-".to_string(), |p| format!("{} / {}", p.tier, p.backend));
        let duration = run.started_at_ms.map_or("-".to_string(), |start| {
            let end = run.finished_at_ms.unwrap_or(now_ms);
            dagy_ui::format_duration(end.saturating_sub(start))
        });
        crate::output::out!(
            "{:<38} {:<24} {:<10} {:<22} {:<19} {:>9}",
            run.run_id,
            name,
            run.status,
            placement,
            dagy_ui::format_utc(run.created_at_ms),
            duration
        );
    }
}
