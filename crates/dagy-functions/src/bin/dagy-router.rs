//! The router function: HTTP API routes, schedules, direct actions, the sweep.
//! Configuration: `DAGY_TABLE_NAME`, `DAGY_EXECUTOR_FUNCTION`, the backend variables
//! (`DAGY_SFN_ROLE_ARN` with `DAGY_SFN_TASK_EXECUTOR_ARN` registers Step Functions;
//! `DAGY_ECS_CLUSTER_ARN` with the other `DAGY_ECS_*` variables registers ECS Fargate).

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

use dagy_functions::dispatch::{
    Dispatchers, EcsDispatcher, LambdaDispatcher, StepFunctionsDispatcher,
};
use dagy_functions::router::Router;
use dagy_store::RunStore;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let store: Arc<dyn RunStore> = Arc::new(dagy_store_dynamodb::DynamoStore::from_env().await?);
    let settings = dagy_core::Settings::from_env()?;
    let step_functions = match &settings.step_functions {
        Some(sfn) => Some(StepFunctionsDispatcher::from_settings(sfn, store.clone()).await?),
        None => None,
    };
    let mut dispatchers =
        Dispatchers::new(Some(LambdaDispatcher::from_env().await?), step_functions);
    if let Some(ecs) = &settings.ecs {
        let table = std::env::var(dagy_store_dynamodb::TABLE_NAME_VAR)?;
        dispatchers =
            dispatchers.with_ecs(EcsDispatcher::from_settings(ecs, &table, store.clone()).await?);
    }
    let router = Router::new(
        store,
        settings,
        Arc::new(dispatchers),
        Arc::new(dagy_handlers::registry()),
    );
    let router = &router;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(router.handle(event.payload).await)
    }))
    .await
}
