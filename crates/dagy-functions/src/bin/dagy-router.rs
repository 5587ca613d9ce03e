//! The router function: HTTP API routes, schedules, direct actions, the sweep.
//! Configuration: `DAGY_TABLE_NAME`, `DAGY_EXECUTOR_FUNCTION`, the backend variables.

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

use dagy_functions::dispatch::LambdaDispatcher;
use dagy_functions::router::Router;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let store = dagy_store_dynamodb::DynamoStore::from_env().await?;
    let router = Router::new(
        Arc::new(store),
        dagy_core::Settings::from_env()?,
        Arc::new(LambdaDispatcher::from_env().await?),
        Arc::new(dagy_handlers::registry()),
    );
    let router = &router;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(router.handle(event.payload).await)
    }))
    .await
}
