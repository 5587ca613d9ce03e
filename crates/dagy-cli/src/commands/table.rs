//! `dagy table create`: the DynamoDB table the store expects, for local work.

use std::process::ExitCode;

use anyhow::Context;

use dagy_store_dynamodb::DynamoStore;

/// Table subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TableCommand {
    /// Create the table named by DAGY_TABLE_NAME (on-demand, both indexes, TTL), as the SAM
    /// template declares it. An existing table is left as it is.
    Create,
}

/// Runs a table subcommand.
pub fn run(command: TableCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match command {
            TableCommand::Create => {
                let store = DynamoStore::from_env(&dagy_store_dynamodb::sdk_config().await)?;
                let created = store.create_table().await?;
                if created {
                    crate::output::out!("created table {}", store.table());
                } else {
                    crate::output::out!("table {} already exists; left as it is", store.table());
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}
