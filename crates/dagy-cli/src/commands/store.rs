//! Which run store a command uses, and opening it: the one place `--store` is read.

use std::sync::Arc;

use anyhow::bail;

use dagy_store::{MemoryStore, RunSnapshot, RunStore, StoreError};

/// Where run state is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// The embedded database, `$DAGY_HOME/runs.db` (`DAGY_HOME` defaults to `~/.dagy`):
    /// runs outlive the process, and `dagy status`, `cancel`, `runs` and `ui` see them.
    Sqlite,
    /// This process's memory: gone when it exits.
    Memory,
    /// The DynamoDB table named by DAGY_TABLE_NAME (AWS_ENDPOINT_URL for a local server).
    Dynamodb,
}

/// An opened store, with what to tell a user about it.
pub struct OpenStore {
    /// The store.
    pub store: Arc<dyn RunStore>,
    /// Which store it is, e.g. "SQLite at /home/me/.dagy/runs.db".
    pub label: String,
    /// What to do when it cannot be reached.
    pub hint: String,
    /// Whether its runs outlive this process (and can be resumed).
    pub durable: bool,
    /// The same store when it is this process's memory.
    memory: Option<Arc<MemoryStore>>,
}

impl OpenStore {
    /// A run's record once the command is done with it: read from the store, or taken out of
    /// a memory store (which goes with the process) rather than copied.
    pub async fn last_look(&self, run_id: &str) -> Result<RunSnapshot, StoreError> {
        match &self.memory {
            Some(memory) => memory.take_run(run_id),
            None => self.store.load_run(run_id).await,
        }
    }
}

/// Opens the store `kind` names.
pub async fn open(kind: StoreKind) -> anyhow::Result<OpenStore> {
    Ok(match kind {
        StoreKind::Sqlite => {
            let path = dagy_store_sqlite::default_path()?;
            let store = dagy_store_sqlite::SqliteStore::open(&path)?;
            OpenStore {
                store: Arc::new(store),
                label: format!("SQLite at {}", path.display()),
                hint: format!(
                    "check that {} is readable and writable, or set {} to another folder",
                    path.display(),
                    dagy_store_sqlite::DAGY_HOME_VAR
                ),
                durable: true,
                memory: None,
            }
        }
        StoreKind::Memory => {
            let memory = Arc::new(MemoryStore::new());
            OpenStore {
                store: memory.clone(),
                label: "memory".into(),
                hint: "runs in memory are gone when the process exits".into(),
                durable: false,
                memory: Some(memory),
            }
        }
        #[cfg(feature = "aws")]
        StoreKind::Dynamodb => {
            let config = dagy_store_dynamodb::sdk_config().await;
            let store = dagy_store_dynamodb::DynamoStore::from_env(&config)?;
            let table = std::env::var(dagy_store_dynamodb::TABLE_NAME_VAR).unwrap_or_default();
            OpenStore {
                store: Arc::new(store),
                label: format!("DynamoDB table {table}"),
                hint: format!(
                    "check {} and your AWS credentials and region (AWS_PROFILE, AWS_REGION; \
                     AWS_ENDPOINT_URL for a local server)",
                    dagy_store_dynamodb::TABLE_NAME_VAR
                ),
                durable: true,
                memory: None,
            }
        }
        #[cfg(not(feature = "aws"))]
        StoreKind::Dynamodb => bail!(
            "--store dynamodb needs DynamoDB support, which this build left out: turn on the \
             `aws` feature (dagy = {{ ..., features = [\"aws\"] }})"
        ),
    })
}

/// Opens a store that outlives this process, for commands that read runs made by others.
pub async fn open_durable(kind: StoreKind, command: &str) -> anyhow::Result<OpenStore> {
    if kind == StoreKind::Memory {
        bail!(
            "`dagy {command}` reads runs other processes made: use --store sqlite (the default) \
             or --store dynamodb"
        );
    }
    open(kind).await
}
