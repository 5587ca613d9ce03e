//! The executor function of the nano and micro tiers: `{"run_id": "..."}`.
//! Configuration: `DAGY_TABLE_NAME`, `DAGY_EXECUTOR_FUNCTION` (itself, for micro runs).
//! `lambda:<function>` tasks are invoked synchronously through the Lambda API.

use std::sync::Arc;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::Value;

use dagy_engine::{Executor, TracingObserver};
use dagy_functions::dispatch::{Dispatcher, LambdaDispatcher, LambdaTaskInvoker};
use dagy_functions::executor_fn::{self, ExecutorEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let store = Arc::new(dagy_store_dynamodb::DynamoStore::from_env().await?);
    let dispatcher: Arc<dyn Dispatcher> = Arc::new(LambdaDispatcher::from_env().await?);
    let mut registry = dagy_handlers::registry();
    let config = dagy_store_dynamodb::sdk_config().await;
    registry.set_lambda_invoker(Arc::new(LambdaTaskInvoker::new(
        aws_sdk_lambda::Client::new(&config),
    )));
    let registry = Arc::new(registry);
    let (store, dispatcher, registry) = (&store, &dispatcher, &registry);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let owner = format!("lambda:{}", event.context.request_id);
        let executor = Executor::new(store.clone(), registry.clone())
            .with_owner(owner)
            .with_observer(Arc::new(TracingObserver));
        let parsed: ExecutorEvent =
            serde_json::from_value(event.payload).map_err(|e| Diagnostic {
                error_type: "BadEvent".into(),
                error_message: format!("the executor takes {{\"run_id\": \"...\"}}: {e}"),
            })?;
        executor_fn::handle(&executor, dispatcher, parsed, event.context.deadline)
            .await
            .map_err(|e| Diagnostic {
                error_type: "ExecutorFailed".into(),
                error_message: e.to_string(),
            })
    }))
    .await
}
