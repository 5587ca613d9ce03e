//! `dagy status RUN` and `dagy cancel RUN`: on the embedded store by default, on a DynamoDB
//! table, or on a deployed stack through its API.

use std::process::ExitCode;

use anyhow::Context;

use dagy_store::StoreError;

use crate::commands::store::{self, StoreKind};

/// Where `status` and `cancel` find the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// The embedded database `dagy run` writes (`$DAGY_HOME/runs.db`).
    Sqlite,
    /// The DynamoDB table named by DAGY_TABLE_NAME, read directly.
    Dynamodb,
    /// A deployed stack, through its API (DAGY_API_URL, or the router function
    /// DAGY_ROUTER_FUNCTION).
    Stack,
}

/// `dagy status RUN` and `dagy cancel RUN`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The run.
    pub run_id: String,
    /// Where the run is. Default: the stack when DAGY_API_URL or DAGY_ROUTER_FUNCTION is set,
    /// the embedded database otherwise.
    #[arg(long, value_enum)]
    pub store: Option<Source>,
    #[cfg(feature = "aws")]
    #[command(flatten)]
    pub target: crate::commands::remote::Target,
}

impl RunArgs {
    fn source(&self) -> Source {
        if let Some(source) = self.store {
            return source;
        }
        let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
        if cfg!(feature = "aws") && (set("DAGY_API_URL") || set("DAGY_ROUTER_FUNCTION")) {
            Source::Stack
        } else {
            Source::Sqlite
        }
    }
}

/// Runs `dagy status`: the run and its tasks as JSON (the shape of `GET /runs/{id}`).
pub fn status(args: RunArgs) -> anyhow::Result<ExitCode> {
    on_run(args, false)
}

/// Runs `dagy cancel`: asks the run to stop at its next task boundary (a run no executor has
/// picked up is cancelled at once), then prints it.
pub fn cancel(args: RunArgs) -> anyhow::Result<ExitCode> {
    on_run(args, true)
}

fn on_run(args: RunArgs, cancel: bool) -> anyhow::Result<ExitCode> {
    let kind = match args.source() {
        Source::Sqlite => StoreKind::Sqlite,
        Source::Dynamodb => StoreKind::Dynamodb,
        #[cfg(feature = "aws")]
        Source::Stack => {
            let remote = crate::commands::remote::RunArgs {
                run_id: args.run_id,
                target: args.target,
            };
            return if cancel {
                crate::commands::remote::cancel(remote)
            } else {
                crate::commands::remote::status(remote)
            };
        }
        #[cfg(not(feature = "aws"))]
        Source::Stack => anyhow::bail!(
            "--store stack needs AWS support, which this build left out: turn on the `aws` feature"
        ),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let opened = store::open_durable(kind, if cancel { "cancel" } else { "status" }).await?;
        let store = opened.store;
        let found = async {
            if cancel {
                store
                    .request_cancel(&args.run_id, dagy_store::now_ms())
                    .await?;
            }
            store.load_run(&args.run_id).await
        }
        .await;
        match found {
            Ok(snapshot) => {
                crate::output::json(&snapshot.report());
                Ok(ExitCode::SUCCESS)
            }
            Err(StoreError::NotFound { run_id }) => {
                eprintln!(
                    "error: no run {run_id} in {}; `dagy runs` lists the runs there",
                    opened.label
                );
                Ok(ExitCode::from(1))
            }
            Err(e) => {
                Err(anyhow::Error::new(e).context(format!("{}: {}", opened.label, opened.hint)))
            }
        }
    })
}
