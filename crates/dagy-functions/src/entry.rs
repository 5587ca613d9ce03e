//! The functions' entry points: a project's Lambda binary is one call to one of these.
//!
//! Each reads its configuration from the environment (`DAGY_TABLE_NAME`, the backend variables,
//! the AWS SDK's standard variables), makes the AWS SDK configuration once and every client from
//! it, and serves invocations until the Lambda runtime stops it.
//!
//! ```no_run
//! fn main() -> Result<(), lambda_runtime::Error> {
//!     let mut registry = dagy_engine::HandlerRegistry::new();
//!     registry.register("echo", |_ctx, input| async move { Ok(input) });
//!     dagy_functions::entry::run_executor(registry)
//! }
//! ```

use std::sync::Arc;

use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};
use serde_json::Value;

use dagy_core::HandlerCatalog;
use dagy_engine::{Executor, HandlerRegistry, STATE_MACHINE_OWNER, TracingObserver};
use dagy_store::RunStore;

use crate::dispatch::{
    Dispatcher, Dispatchers, EcsDispatcher, LambdaDispatcher, LambdaTaskInvoker,
    StepFunctionsDispatcher,
};
use crate::executor_fn::{self, ExecutorEvent};
use crate::router::Router;
use crate::task_executor;

/// Runs `serve` on a multi-threaded Tokio runtime made for it, with Lambda's log format.
fn serve<F: std::future::Future<Output = Result<(), Error>>>(serve: F) -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve)
}

/// `registry` with `lambda:<function>` tasks invoked through the Lambda API, and the `exec:`
/// handlers of a handler manifest when the function has one (a container image of your own).
fn with_lambda_invoker(
    mut registry: HandlerRegistry,
    config: &aws_config::SdkConfig,
) -> Result<Arc<HandlerRegistry>, Error> {
    registry.set_lambda_invoker(Arc::new(LambdaTaskInvoker::from_sdk_config(config)));
    let exec = dagy_exec::load_exec_handlers(&mut registry)?;
    if !exec.is_empty() {
        tracing::info!(handlers = ?exec, "command handlers registered");
    }
    Ok(Arc::new(registry))
}

/// The router function: HTTP API routes, schedules, direct actions, the sweep. It checks flows
/// against `catalog` (handler names; `registry.catalog()` gives one) and never runs a task.
///
/// Configuration: `DAGY_TABLE_NAME`, `DAGY_EXECUTOR_FUNCTION`, the backend variables
/// (`DAGY_SFN_ROLE_ARN` with `DAGY_SFN_TASK_EXECUTOR_ARN` registers Step Functions;
/// `DAGY_ECS_CLUSTER_ARN` with the other `DAGY_ECS_*` variables registers ECS Fargate). A
/// handler manifest (`DAGY_HANDLERS_FILE`, or `/etc/dagy/handlers.toml` when present) adds its
/// `exec:` handlers to the catalog: ship the worker image's manifest with the router to accept
/// flows that name them.
pub fn run_router(catalog: impl HandlerCatalog + Send + Sync + 'static) -> Result<(), Error> {
    serve(async move {
        let catalog = dagy_exec::with_exec_handlers(catalog)?;
        let config = dagy_store_dynamodb::sdk_config().await;
        let store = dagy_store_dynamodb::DynamoStore::from_env(&config)?;
        let table = store.table().to_string();
        let store: Arc<dyn RunStore> = Arc::new(store);
        let settings = dagy_core::Settings::from_env()?;
        let step_functions = match &settings.step_functions {
            Some(sfn) => Some(StepFunctionsDispatcher::from_settings(
                sfn,
                store.clone(),
                &config,
            )?),
            None => None,
        };
        let mut dispatchers =
            Dispatchers::new(Some(LambdaDispatcher::from_env(&config)?), step_functions);
        if let Some(ecs) = &settings.ecs {
            dispatchers = dispatchers.with_ecs(EcsDispatcher::from_settings(
                ecs,
                &table,
                store.clone(),
                &config,
            )?);
        }
        let router = Router::new(store, settings, Arc::new(dispatchers), Arc::new(catalog));
        let router = &router;
        lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
            Ok::<Value, Error>(router.handle(event.payload).await)
        }))
        .await
    })
}

/// The executor function of the nano and micro tiers: `{"run_id": "..."}` runs the run (nano)
/// or its next task (micro) with `registry`'s handlers.
///
/// Configuration: `DAGY_TABLE_NAME`, `DAGY_EXECUTOR_FUNCTION` (itself, for micro runs).
/// `lambda:<function>` tasks are invoked synchronously through the Lambda API.
pub fn run_executor(registry: HandlerRegistry) -> Result<(), Error> {
    serve(async move {
        let config = dagy_store_dynamodb::sdk_config().await;
        let store = Arc::new(dagy_store_dynamodb::DynamoStore::from_env(&config)?);
        let dispatcher: Arc<dyn Dispatcher> = Arc::new(LambdaDispatcher::from_env(&config)?);
        let registry = with_lambda_invoker(registry, &config)?;
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
    })
}

/// The task-executor function, called by every Task state of a Dagy state machine (its ARN is
/// `DAGY_SFN_TASK_EXECUTOR_ARN`): `{"run_id", "task_id"}` runs one attempt of one task with
/// `registry`'s handlers; `{"action": "record_failure" | "record_success", ...}` ends the run.
///
/// Configuration: `DAGY_TABLE_NAME`. `lambda:<function>` tasks are invoked through the Lambda API.
pub fn run_task_executor(registry: HandlerRegistry) -> Result<(), Error> {
    serve(async move {
        let config = dagy_store_dynamodb::sdk_config().await;
        let store = Arc::new(dagy_store_dynamodb::DynamoStore::from_env(&config)?);
        let registry = with_lambda_invoker(registry, &config)?;
        let executor = Executor::new(store, registry)
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
    })
}
