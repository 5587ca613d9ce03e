//! Handing a run to the backend that executes it.

use async_trait::async_trait;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use serde_json::json;

use dagy_core::BackendKind;

use crate::FunctionError;

/// The variable naming the executor function (name or ARN), which micro runs invoke again.
pub const EXECUTOR_FUNCTION_VAR: &str = "DAGY_EXECUTOR_FUNCTION";

/// Starts (or continues) a run on a backend. Dispatching the same run twice is harmless:
/// the executor's lease makes the second delivery do nothing.
#[async_trait]
pub trait Dispatcher: Send + Sync {
    /// The backends this dispatcher can start runs on.
    fn backends(&self) -> Vec<BackendKind>;

    /// Starts or continues `run_id` on `backend`.
    async fn dispatch(&self, backend: BackendKind, run_id: &str) -> Result<(), FunctionError>;
}

/// Dispatches Lambda runs by invoking the executor function asynchronously
/// (`InvocationType=Event`), with `{"run_id": ...}` as its event.
#[derive(Debug, Clone)]
pub struct LambdaDispatcher {
    client: aws_sdk_lambda::Client,
    function: String,
}

impl LambdaDispatcher {
    /// A dispatcher invoking `function` through `client`.
    pub fn new(client: aws_sdk_lambda::Client, function: impl Into<String>) -> Self {
        LambdaDispatcher {
            client,
            function: function.into(),
        }
    }

    /// The dispatcher of the environment: `DAGY_EXECUTOR_FUNCTION` and the AWS settings
    /// (`AWS_ENDPOINT_URL_LAMBDA` points it at a local emulator).
    pub async fn from_env() -> Result<Self, FunctionError> {
        let function = std::env::var(EXECUTOR_FUNCTION_VAR)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| FunctionError::Config {
                variable: EXECUTOR_FUNCTION_VAR,
                message: "set it to the executor Lambda's name or ARN".into(),
            })?;
        let config = dagy_store_dynamodb::sdk_config().await;
        Ok(LambdaDispatcher::new(
            aws_sdk_lambda::Client::new(&config),
            function,
        ))
    }
}

#[async_trait]
impl Dispatcher for LambdaDispatcher {
    fn backends(&self) -> Vec<BackendKind> {
        vec![BackendKind::Lambda]
    }

    async fn dispatch(&self, backend: BackendKind, run_id: &str) -> Result<(), FunctionError> {
        if backend != BackendKind::Lambda {
            return Err(FunctionError::BackendUnavailable(backend));
        }
        let payload = json!({ "run_id": run_id }).to_string();
        self.client
            .invoke()
            .function_name(&self.function)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|e| {
                FunctionError::Dispatch(format!(
                    "invoking {} for run {run_id}: {}",
                    self.function,
                    aws_sdk_lambda::error::DisplayErrorContext(&e)
                ))
            })?;
        Ok(())
    }
}

/// Runs `lambda:<function>` tasks: a synchronous invoke with the task's input as the event.
/// The function's JSON answer is the task's output; a function error becomes a task error of
/// the function's own `errorType`, so retry and catch rules can match it.
#[derive(Debug, Clone)]
pub struct LambdaTaskInvoker {
    client: aws_sdk_lambda::Client,
}

impl LambdaTaskInvoker {
    /// An invoker through `client`.
    pub fn new(client: aws_sdk_lambda::Client) -> Self {
        LambdaTaskInvoker { client }
    }
}

#[async_trait]
impl dagy_engine::LambdaInvoker for LambdaTaskInvoker {
    async fn invoke(&self, function: &str, input: serde_json::Value) -> dagy_engine::TaskResult {
        use dagy_engine::TaskError;
        let out = self
            .client
            .invoke()
            .function_name(function)
            .invocation_type(InvocationType::RequestResponse)
            .payload(Blob::new(input.to_string()))
            .send()
            .await
            .map_err(|e| {
                TaskError::new(format!(
                    "invoking {function}: {}",
                    aws_sdk_lambda::error::DisplayErrorContext(&e)
                ))
                .with_type("LambdaInvokeFailed")
            })?;
        let bytes = out
            .payload()
            .map(|b| b.as_ref().to_vec())
            .unwrap_or_default();
        let answer: serde_json::Value = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| {
                TaskError::new(format!(
                    "{function} answered with something that is not JSON: {e}"
                ))
                .with_type("LambdaBadAnswer")
            })?
        };
        if let Some(kind) = out.function_error() {
            let error_type = answer["errorType"].as_str().unwrap_or(kind).to_string();
            let message = answer["errorMessage"]
                .as_str()
                .unwrap_or("the function failed without a message");
            return Err(TaskError::new(format!("{function}: {message}")).with_type(error_type));
        }
        Ok(answer)
    }
}
