#![doc = include_str!("../../../docs/dynamodb.md")]

mod item;
mod store;

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};

use dagy_store::StoreLimits;

/// The variable naming the table.
pub const TABLE_NAME_VAR: &str = "DAGY_TABLE_NAME";
/// The variable setting how many days finished runs are kept.
pub const RETENTION_DAYS_VAR: &str = "DAGY_RUN_RETENTION_DAYS";
/// Days a finished run is kept when `DAGY_RUN_RETENTION_DAYS` is unset.
pub const DEFAULT_RETENTION_DAYS: u64 = 30;
/// The GSI listing a deployment's runs.
pub const BY_DEPLOYMENT_INDEX: &str = "by-deployment";
/// The sparse GSI of runs that are not final, by when the sweep should look at them.
pub const LAPSED_INDEX: &str = "lapsed";
/// The TTL attribute.
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// What can go wrong setting the store up (operations report [`dagy_store::StoreError`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A variable is missing or unusable (`dagy_core::Error::Config` names it and what to set).
    #[error(transparent)]
    Settings(#[from] dagy_core::Error),
    /// DynamoDB refused or failed a table operation.
    #[error("DynamoDB {operation} failed: {message}")]
    Aws {
        /// The operation.
        operation: &'static str,
        /// The SDK's message with its context.
        message: String,
    },
}

/// The run store on DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    retention: Duration,
    limits: StoreLimits,
}

/// The SDK configuration Dagy uses: the default provider chain (so `AWS_ENDPOINT_URL*`,
/// `AWS_REGION` and credentials come from the environment), standard retries with up to five
/// attempts for throttling and transient faults, and bounded attempt times.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(retry_config())
        .timeout_config(timeout_config())
        .load()
        .await
}

/// Standard retries, up to five attempts: throttling, 5xx answers and dropped connections are
/// retried with exponential backoff and jitter.
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard().with_max_attempts(5)
}

/// A 3 s connect timeout and a 10 s limit per attempt, so a hung connection is retried.
pub fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(10))
        .build()
}

impl DynamoStore {
    /// A store on `table` through `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
            retention: Duration::from_secs(DEFAULT_RETENTION_DAYS * 86_400),
            limits: StoreLimits::default(),
        }
    }

    /// The store named by `DAGY_TABLE_NAME`, retention from `DAGY_RUN_RETENTION_DAYS`, on a
    /// client made from `config` (the binary's one [`sdk_config`]).
    pub fn from_env(config: &aws_config::SdkConfig) -> Result<Self, Error> {
        let table = std::env::var(TABLE_NAME_VAR)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| dagy_core::Error::Config {
                variable: TABLE_NAME_VAR.into(),
                message: "set it to the DynamoDB table that holds Dagy's runs \
                          (`dagy table create` makes one for local work)"
                    .into(),
            })?;
        let days = match std::env::var(RETENTION_DAYS_VAR) {
            Err(_) => DEFAULT_RETENTION_DAYS,
            Ok(v) if v.trim().is_empty() => DEFAULT_RETENTION_DAYS,
            Ok(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|d| *d > 0)
                .ok_or_else(|| dagy_core::Error::Config {
                    variable: RETENTION_DAYS_VAR.into(),
                    message: format!("must be a whole number of days > 0, got \"{v}\""),
                })?,
        };
        Ok(DynamoStore::new(Client::new(config), table).with_retention_days(days))
    }

    /// Keeps finished runs this many days.
    pub fn with_retention_days(mut self, days: u64) -> Self {
        self.retention = Duration::from_secs(days.max(1) * 86_400);
        self
    }

    /// Uses other size limits (tests).
    pub fn with_limits(mut self, limits: StoreLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table with the schema the template declares (on-demand, both GSIs, TTL) and
    /// waits until it is active. An existing table is left as it is.
    pub async fn create_table(&self) -> Result<bool, Error> {
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(|e| aws_error("CreateTable", &e))
        };
        let attribute = |name: &str, kind: ScalarAttributeType| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(kind)
                .build()
                .map_err(|e| aws_error("CreateTable", &e))
        };
        let index = |name: &str, pk: &str, sk: &str| -> Result<GlobalSecondaryIndex, Error> {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(pk, KeyType::Hash)?)
                .key_schema(key(sk, KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .map_err(|e| aws_error("CreateTable", &e))
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .attribute_definitions(attribute("pk", ScalarAttributeType::S)?)
            .attribute_definitions(attribute("sk", ScalarAttributeType::S)?)
            .attribute_definitions(attribute("gsi1pk", ScalarAttributeType::S)?)
            .attribute_definitions(attribute("gsi1sk", ScalarAttributeType::S)?)
            .attribute_definitions(attribute("active_pk", ScalarAttributeType::S)?)
            .attribute_definitions(attribute("active_sk", ScalarAttributeType::N)?)
            .global_secondary_indexes(index(BY_DEPLOYMENT_INDEX, "gsi1pk", "gsi1sk")?)
            .global_secondary_indexes(index(LAPSED_INDEX, "active_pk", "active_sk")?)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) =>
            {
                return Ok(false);
            }
            Err(e) => return Err(aws_error("CreateTable", &e)),
        }
        self.wait_until_active().await?;
        self.enable_ttl().await?;
        Ok(true)
    }

    /// Waits (up to a minute) until the table is active.
    async fn wait_until_active(&self) -> Result<(), Error> {
        for _ in 0..120 {
            let described = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| aws_error("DescribeTable", &e))?;
            let active = described
                .table()
                .and_then(|t| t.table_status())
                .is_some_and(|s| s.as_str() == "ACTIVE");
            if active {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Ok(())
    }

    /// Turns on expiry by the TTL attribute.
    async fn enable_ttl(&self) -> Result<(), Error> {
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(TTL_ATTRIBUTE)
                    .enabled(true)
                    .build()
                    .map_err(|e| aws_error("UpdateTimeToLive", &e))?,
            )
            .send()
            .await
            .map_err(|e| aws_error("UpdateTimeToLive", &e))?;
        Ok(())
    }
}

fn aws_error(operation: &'static str, e: &(dyn std::error::Error + 'static)) -> Error {
    Error::Aws {
        operation,
        message: DisplayErrorContext(e).to_string(),
    }
}
