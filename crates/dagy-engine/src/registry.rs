//! Handlers: the Rust functions tasks name, and how a task reaches another Lambda function.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use dagy_core::HandlerCatalog;

/// What a handler knows about the attempt it serves.
#[derive(Debug, Clone)]
pub struct TaskContext {
    /// The run.
    pub run_id: String,
    /// The task.
    pub task_id: String,
    /// The attempt number, from 1.
    pub attempt: u32,
    /// Cancelled when the attempt times out or the run is cancelled: long handlers should
    /// watch it (`cancel.cancelled().await`, or `is_cancelled()` in a loop).
    pub cancel: CancellationToken,
    /// When the attempt will be stopped, if it has a limit.
    pub deadline: Option<tokio::time::Instant>,
}

/// A handler's failure: a stable type (Step Functions' `ErrorEquals` matches on it), a message,
/// and whether another attempt could help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct TaskError {
    /// E.g. `TaskFailed`; stable, so retry and catch rules can match it.
    pub error_type: String,
    /// What went wrong.
    pub message: String,
    /// `false` skips the remaining retries (bad arguments will not get better).
    pub retryable: bool,
}

impl TaskError {
    /// A failure worth retrying, of type `TaskFailed`.
    pub fn new(message: impl Into<String>) -> Self {
        TaskError {
            error_type: "TaskFailed".into(),
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure no retry can fix (of type `TaskFailedPermanently` unless renamed).
    pub fn permanent(message: impl Into<String>) -> Self {
        TaskError {
            error_type: "TaskFailedPermanently".into(),
            message: message.into(),
            retryable: false,
        }
    }

    /// The same error with another type.
    pub fn with_type(mut self, error_type: impl Into<String>) -> Self {
        self.error_type = error_type.into();
        self
    }
}

/// The result of a handler.
pub type TaskResult = Result<Value, TaskError>;
/// The future an async handler returns.
pub type BoxTaskFuture = Pin<Box<dyn Future<Output = TaskResult> + Send + 'static>>;

type AsyncHandler = Arc<dyn Fn(TaskContext, Value) -> BoxTaskFuture + Send + Sync>;
type BlockingHandler = Arc<dyn Fn(TaskContext, Value) -> TaskResult + Send + Sync>;

/// A registered handler.
#[derive(Clone)]
pub(crate) enum Handler {
    /// Runs on the async runtime.
    Async(AsyncHandler),
    /// Runs on a blocking thread (CPU-bound work).
    Blocking(BlockingHandler),
}

/// Calls another Lambda function for `lambda:<name>` handlers (the functions crate provides one
/// on aws-sdk-lambda).
#[async_trait]
pub trait LambdaInvoker: Send + Sync {
    /// Invokes `function` synchronously with `input` and returns its JSON result.
    async fn invoke(&self, function: &str, input: Value) -> TaskResult;
}

/// Handlers by name.
#[derive(Clone, Default)]
pub struct HandlerRegistry {
    handlers: HashMap<String, Handler>,
    lambda: Option<Arc<dyn LambdaInvoker>>,
}

impl fmt::Debug for HandlerRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.handlers.keys().collect();
        names.sort();
        f.debug_struct("HandlerRegistry")
            .field("handlers", &names)
            .field("lambda", &self.lambda.is_some())
            .finish()
    }
}

impl HandlerRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers an async handler.
    ///
    /// ```
    /// use dagy_engine::{HandlerRegistry, TaskContext};
    /// use serde_json::Value;
    ///
    /// let mut registry = HandlerRegistry::new();
    /// registry.register("echo", |_ctx: TaskContext, input: Value| async move { Ok(input) });
    /// ```
    pub fn register<F, Fut>(&mut self, name: impl Into<String>, handler: F) -> &mut Self
    where
        F: Fn(TaskContext, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = TaskResult> + Send + 'static,
    {
        let handler: AsyncHandler = Arc::new(move |ctx, input| Box::pin(handler(ctx, input)));
        self.handlers.insert(name.into(), Handler::Async(handler));
        self
    }

    /// Registers a blocking (CPU-bound) handler; it runs on a blocking thread, and a timeout
    /// stops waiting for it (and cancels `ctx.cancel`, which it should check).
    pub fn register_blocking<F>(&mut self, name: impl Into<String>, handler: F) -> &mut Self
    where
        F: Fn(TaskContext, Value) -> TaskResult + Send + Sync + 'static,
    {
        self.handlers
            .insert(name.into(), Handler::Blocking(Arc::new(handler)));
        self
    }

    /// Sets what `lambda:<function>` handlers call.
    pub fn set_lambda_invoker(&mut self, invoker: Arc<dyn LambdaInvoker>) -> &mut Self {
        self.lambda = Some(invoker);
        self
    }

    pub(crate) fn get(&self, name: &str) -> Option<Handler> {
        self.handlers.get(name).cloned()
    }

    pub(crate) fn lambda_invoker(&self) -> Option<Arc<dyn LambdaInvoker>> {
        self.lambda.clone()
    }
}

impl HandlerCatalog for HandlerRegistry {
    fn has_handler(&self, name: &str) -> bool {
        self.handlers.contains_key(name)
    }
    fn handler_names(&self) -> Vec<String> {
        self.handlers.keys().cloned().collect()
    }
}
