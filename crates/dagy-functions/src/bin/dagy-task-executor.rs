//! The task-executor function, called by every Task state of a Dagy state machine (its ARN is
//! `DAGY_SFN_TASK_EXECUTOR_ARN`): `{"run_id", "task_id"}` runs one attempt of one task;
//! `{"action": "record_failure" | "record_success", ...}` ends the run.
//! Configuration: `DAGY_TABLE_NAME`. `lambda:<function>` tasks are invoked through the Lambda API.

use std::sync::Arc;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::Value;

use dagy_engine::{Executor, STATE_MACHINE_OWNER, TracingObserver};
use dagy_functions::dispatch::LambdaTaskInvoker;
use dagy_functions::task_executor;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let store = Arc::new(dagy_store_dynamodb::DynamoStore::from_env().await?);
    let mut registry = dagy_handlers::registry();
    let config = dagy_store_dynamodb::sdk_config().await;
    registry.set_lambda_invoker(Arc::new(LambdaTaskInvoker::new(
        aws_sdk_lambda::Client::new(&config),
    )));
    let executor = Executor::new(store, Arc::new(registry))
        .with_owner(STATE_MACHINE_OWNER)
        .with_observer(Arc::new(TracingObserver));
    let executor = &executor;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        task_executor::handle(
            executor,
            event.payload,
            &event.context.request_id,
            event.context.deadline,
        )
        .await
        .map_err(|failure| Diagnostic {
            error_type: failure.error_type.to_string(),
            error_message: failure.message,
        })
    }))
    .await
}
