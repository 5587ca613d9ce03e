//! `dagy ui`: the run dashboard on loopback, over the embedded store or a DynamoDB table.

use std::process::ExitCode;

use anyhow::Context;

use crate::commands::store::{self, StoreKind};

/// Arguments of `dagy ui`.
#[derive(Debug, clap::Args)]
pub struct UiArgs {
    /// The port to serve on (0: any free port).
    #[arg(long, default_value_t = 8421)]
    pub port: u16,
    /// The address to bind. Loopback by default: the dashboard has no login, and its Cancel
    /// button stops runs.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Whose runs to show: the embedded database, or the deployed table (DAGY_TABLE_NAME, with
    /// your AWS credentials).
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite)]
    pub store: StoreKind,
}

/// Runs `dagy ui` until Ctrl-C.
pub fn run(args: UiArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: UiArgs) -> anyhow::Result<ExitCode> {
    let opened = store::open_durable(args.store, "ui").await?;
    let dashboard = with_ecs_logs(dagy_ui::Dashboard::new(
        opened.store,
        opened.label.clone(),
        opened.hint,
    ))
    .await?;
    let listener = tokio::net::TcpListener::bind((args.host, args.port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}:{}; pick another with --port (0 takes any free port)",
                args.host, args.port
            )
        })?;
    let address = listener.local_addr()?;
    crate::output::out!("Dagy's dashboard: http://{address}/ ({})", opened.label);
    if !address.ip().is_loopback() {
        eprintln!(
            "warning: serving on {address}, reachable from other machines; anyone who reaches \
             it can see runs and cancel them"
        );
    }
    tokio::select! {
        served = dashboard.serve(listener) => served.context("the dashboard's server stopped")?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// The dashboard with a log panel for ECS Fargate runs, when the deployment's ECS settings
/// (`DAGY_ECS_*`) are set.
#[cfg(feature = "aws")]
async fn with_ecs_logs(dashboard: dagy_ui::Dashboard) -> anyhow::Result<dagy_ui::Dashboard> {
    if std::env::var_os("DAGY_ECS_CLUSTER_ARN").is_none() {
        return Ok(dashboard);
    }
    let config = dagy_store_dynamodb::sdk_config().await;
    let backend = crate::commands::logs::ecs_backend(&config)?;
    Ok(
        dashboard.with_logs(std::sync::Arc::new(crate::commands::logs::EcsLogTail::new(
            backend,
        ))),
    )
}

/// Without AWS support there are no ECS logs to show.
#[cfg(not(feature = "aws"))]
async fn with_ecs_logs(dashboard: dagy_ui::Dashboard) -> anyhow::Result<dagy_ui::Dashboard> {
    Ok(dashboard)
}
