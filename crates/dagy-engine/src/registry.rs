//! Handlers: the Rust functions tasks name, and how a task reaches another Lambda function.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use dagy_core::{Catalog, HandlerCatalog, TaskDefaults};

use crate::task::Task;

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
    pub(crate) state: SharedState,
}

impl TaskContext {
    /// A context for attempt `attempt` of `task_id` in `run_id`, without a deadline or shared
    /// state: what a unit test of a handler needs.
    pub fn new(run_id: impl Into<String>, task_id: impl Into<String>, attempt: u32) -> Self {
        TaskContext {
            run_id: run_id.into(),
            task_id: task_id.into(),
            attempt,
            cancel: CancellationToken::new(),
            deadline: None,
            state: SharedState::default(),
        }
    }

    pub(crate) fn with_state(mut self, state: SharedState) -> Self {
        self.state = state;
        self
    }

    /// The shared value of type `T` the registry holds ([`HandlerRegistry::state`],
    /// [`HandlerRegistry::state_with`]), built on first use and then the same for every task
    /// this process runs.
    pub async fn state<T: Send + Sync + 'static>(&self) -> Result<Arc<T>, TaskError> {
        self.state.get::<T>().await
    }
}

type StateValue = Arc<dyn Any + Send + Sync>;
type StateInit = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = StateValue> + Send>> + Send + Sync>;

/// One shared value: built by `init` the first time a handler asks for it.
struct StateSlot {
    value: tokio::sync::OnceCell<StateValue>,
    init: StateInit,
}

/// The values shared by every handler of a process, by type.
#[derive(Clone, Default)]
pub(crate) struct SharedState {
    slots: Arc<HashMap<TypeId, Arc<StateSlot>>>,
}

impl fmt::Debug for SharedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedState")
            .field("types", &self.slots.len())
            .finish()
    }
}

impl SharedState {
    async fn get<T: Send + Sync + 'static>(&self) -> Result<Arc<T>, TaskError> {
        let missing = || {
            TaskError::permanent(format!(
                "no shared state of type {} is registered; add it with registry.state(...) or \
                 registry.state_with(...)",
                std::any::type_name::<T>()
            ))
            .with_type("StateMissing")
        };
        let slot = self.slots.get(&TypeId::of::<T>()).ok_or_else(missing)?;
        let value = slot.value.get_or_init(|| (slot.init)()).await;
        value.clone().downcast::<T>().map_err(|_| missing())
    }
}

/// A handler's failure: a stable type (Step Functions' `ErrorEquals` matches on it), a message,
/// and whether another attempt could help.
///
/// Any error converts into a retryable `TaskError`, so `?` works in a handler that returns
/// `Result<_, TaskError>`; [`ResultExt::permanent`] marks one that no retry can fix. (Like
/// `anyhow::Error`, `TaskError` does not implement `std::error::Error` itself: that is what
/// lets every error convert into it.)
///
/// ```
/// use dagy_engine::{ResultExt, TaskError};
///
/// fn parse(text: &str) -> Result<i64, TaskError> {
///     let n: i64 = text.trim().parse()?; // a ParseIntError becomes a retryable TaskError
///     let checked = u8::try_from(n).permanent()?; // a value out of range will not get better
///     Ok(i64::from(checked))
/// }
/// assert!(parse("x").unwrap_err().retryable);
/// assert!(!parse("300").unwrap_err().retryable);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for TaskError {
    /// A retryable `TaskFailed` error with the error's message and its causes.
    fn from(error: E) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        TaskError::new(message)
    }
}

/// Marks a result's error as permanent: `.permanent()?` fails the task without retries.
pub trait ResultExt<T> {
    /// The error as a permanent [`TaskError`] (of type `TaskFailedPermanently`).
    fn permanent(self) -> Result<T, TaskError>;
}

impl<T, E: Into<TaskError>> ResultExt<T> for Result<T, E> {
    fn permanent(self) -> Result<T, TaskError> {
        self.map_err(|e| {
            let mut error = e.into();
            if error.retryable {
                error.retryable = false;
                if error.error_type == "TaskFailed" {
                    error.error_type = "TaskFailedPermanently".into();
                }
            }
            error
        })
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

/// Handlers by name, the options each declares, and the state they share.
#[derive(Clone, Default)]
pub struct HandlerRegistry {
    handlers: HashMap<String, Handler>,
    defaults: HashMap<String, TaskDefaults>,
    lambda: Option<Arc<dyn LambdaInvoker>>,
    state: SharedState,
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
        let name = name.into();
        self.defaults.remove(&name);
        self.handlers.insert(name, Handler::Async(handler));
        self
    }

    /// Registers a blocking (CPU-bound) handler; it runs on a blocking thread, and a timeout
    /// stops waiting for it (and cancels `ctx.cancel`, which it should check).
    pub fn register_blocking<F>(&mut self, name: impl Into<String>, handler: F) -> &mut Self
    where
        F: Fn(TaskContext, Value) -> TaskResult + Send + Sync + 'static,
    {
        let name = name.into();
        self.defaults.remove(&name);
        self.handlers
            .insert(name, Handler::Blocking(Arc::new(handler)));
        self
    }

    /// Registers a `#[dagy::task]` handler under its name, with the options it declares.
    pub fn add(&mut self, task: impl Task) -> &mut Self {
        let defaults = task.defaults();
        task.register(self);
        self.defaults.insert(defaults.name.clone(), defaults);
        self
    }

    /// Shares `value` with every handler of this process: they get it with
    /// [`TaskContext::state`] or a `State<T>` argument.
    pub fn state<T: Send + Sync + 'static>(&mut self, value: T) -> &mut Self {
        let value: StateValue = Arc::new(value);
        self.state_slot::<T>(Arc::new(move || {
            let value = value.clone();
            Box::pin(async move { value })
        }))
    }

    /// Shares a value built by `init` the first time a handler asks for it, once per process (an
    /// SDK client whose configuration is loaded asynchronously, a connection pool), so a Lambda
    /// function builds it on its first invocation and reuses it after.
    ///
    /// ```
    /// use dagy_engine::{HandlerRegistry, TaskContext};
    ///
    /// struct Pool { size: usize }
    /// let mut registry = HandlerRegistry::new();
    /// registry.state_with(|| async { Pool { size: 4 } });
    /// registry.register("size", |ctx: TaskContext, _input| async move {
    ///     let pool = ctx.state::<Pool>().await?;
    ///     Ok(serde_json::json!(pool.size))
    /// });
    /// ```
    pub fn state_with<T, F, Fut>(&mut self, init: F) -> &mut Self
    where
        T: Send + Sync + 'static,
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let init = Arc::new(init);
        self.state_slot::<T>(Arc::new(move || {
            let init = init.clone();
            Box::pin(async move { Arc::new(init().await) as StateValue })
        }))
    }

    fn state_slot<T: 'static>(&mut self, init: StateInit) -> &mut Self {
        let slot = StateSlot {
            value: tokio::sync::OnceCell::new(),
            init,
        };
        Arc::make_mut(&mut self.state.slots).insert(TypeId::of::<T>(), Arc::new(slot));
        self
    }

    pub(crate) fn shared_state(&self) -> SharedState {
        self.state.clone()
    }

    /// The names and declared options of every handler: what a router checks flows against.
    pub fn catalog(&self) -> Catalog {
        let mut catalog = Catalog::default();
        for name in self.handlers.keys() {
            catalog.insert(
                self.defaults
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| TaskDefaults::named(name.clone())),
            );
        }
        catalog
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
