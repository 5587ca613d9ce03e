//! Typed handlers: what `#[dagy::task]` builds on.
//!
//! A handler function's arguments are taken from the task's input by type, each through
//! [`FromTaskInput`]:
//!
//! | argument type | taken from |
//! |---|---|
//! | any `T: Deserialize` | `input.args` |
//! | [`Parameters<T>`] | `input.parameters` (the run's parameters) |
//! | [`Upstream<T>`] | `input.upstream` (outputs by task id) |
//! | [`State<T>`] | the registry's shared state of type `T` |
//! | [`TaskContext`] | the attempt's context (ids, attempt number, cancel token, deadline) |
//! | [`Input`] | the whole input, as JSON |
//!
//! A value that does not match its type fails the task for good with `InvalidArgs` (or
//! `InvalidParameters`, `InvalidUpstream`), naming the field. The return value is any
//! `Result<T: Serialize, E: Into<TaskError>>` ([`IntoTaskOutput`]).

use std::future::Future;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use dagy_core::HasDefaults;

use crate::registry::{HandlerRegistry, TaskContext, TaskError, TaskResult};

/// A handler with a name and declared options: what `#[dagy::task]` generates, and what
/// [`HandlerRegistry::add`] takes.
pub trait Task: HasDefaults {
    /// Registers the handler in `registry` under its name.
    fn register(self, registry: &mut HandlerRegistry);
}

/// A handler argument taken from the task's input (see the [module docs](self)).
pub trait FromTaskInput: Sized {
    /// Takes the argument from the attempt's context and input.
    fn from_input(
        ctx: &TaskContext,
        input: &Value,
    ) -> impl Future<Output = Result<Self, TaskError>> + Send;
}

/// Decodes `value` as `T`; a mismatch is a permanent error of `error_type` naming the field.
fn decode<T: DeserializeOwned>(
    value: &Value,
    what: &str,
    error_type: &str,
) -> Result<T, TaskError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." || path.is_empty() {
            what.to_string()
        } else {
            format!("{what}.{path}")
        };
        TaskError::permanent(format!("{at}: {}", e.inner())).with_type(error_type)
    })
}

impl<T: DeserializeOwned + Send> FromTaskInput for T {
    async fn from_input(_ctx: &TaskContext, input: &Value) -> Result<Self, TaskError> {
        decode(&input["args"], "args", "InvalidArgs")
    }
}

/// The run's parameters, decoded as `T`.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameters<T>(pub T);

impl<T: DeserializeOwned + Send> FromTaskInput for Parameters<T> {
    async fn from_input(_ctx: &TaskContext, input: &Value) -> Result<Self, TaskError> {
        decode(&input["parameters"], "parameters", "InvalidParameters").map(Parameters)
    }
}

/// The upstream tasks' outputs by task id, decoded as `T` (a struct with a field per upstream
/// task, or a `HashMap<String, _>`).
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream<T>(pub T);

impl<T: DeserializeOwned + Send> FromTaskInput for Upstream<T> {
    async fn from_input(_ctx: &TaskContext, input: &Value) -> Result<Self, TaskError> {
        decode(&input["upstream"], "upstream", "InvalidUpstream").map(Upstream)
    }
}

/// The shared value of type `T` ([`HandlerRegistry::state`], [`HandlerRegistry::state_with`]).
#[derive(Debug)]
pub struct State<T>(pub Arc<T>);

impl<T: Send + Sync + 'static> FromTaskInput for State<T> {
    async fn from_input(ctx: &TaskContext, _input: &Value) -> Result<Self, TaskError> {
        ctx.state::<T>().await.map(State)
    }
}

impl FromTaskInput for TaskContext {
    async fn from_input(ctx: &TaskContext, _input: &Value) -> Result<Self, TaskError> {
        Ok(ctx.clone())
    }
}

/// The whole input, `{parameters, upstream, args}`, as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Input(pub Value);

impl FromTaskInput for Input {
    async fn from_input(_ctx: &TaskContext, input: &Value) -> Result<Self, TaskError> {
        Ok(Input(input.clone()))
    }
}

/// What a handler function may return: `Result<T, E>` with a serializable output and an error
/// that converts into a [`TaskError`].
pub trait IntoTaskOutput {
    /// The output as JSON, or the task's error.
    fn into_output(self) -> TaskResult;
}

impl<T: Serialize, E: Into<TaskError>> IntoTaskOutput for Result<T, E> {
    fn into_output(self) -> TaskResult {
        let output = self.map_err(Into::into)?;
        serde_json::to_value(output).map_err(|e| {
            TaskError::permanent(format!("the output cannot be written as JSON: {e}"))
                .with_type("InvalidOutput")
        })
    }
}

/// Runs a plain (not `async`) handler function on a blocking thread, as CPU-bound work should.
pub async fn run_blocking<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, TaskError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        let message = if e.is_panic() {
            "the handler panicked"
        } else {
            "the handler was stopped before it returned"
        };
        TaskError::new(message).with_type("HandlerPanicked")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Args {
        x: f64,
        #[serde(default)]
        nested: Option<Inner>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Inner {
        n: u32,
    }

    fn ctx() -> TaskContext {
        TaskContext::new("r", "t", 1)
    }

    #[tokio::test]
    async fn args_come_from_input_args() {
        let input = json!({"args": {"x": 2.5}, "parameters": {}, "upstream": {}});
        let args = Args::from_input(&ctx(), &input).await.expect("args");
        assert_eq!(
            args,
            Args {
                x: 2.5,
                nested: None
            }
        );
    }

    #[tokio::test]
    async fn a_wrong_args_shape_is_a_permanent_invalid_args_error_naming_the_field() {
        let input = json!({"args": {"x": 1, "nested": {"n": "three"}}});
        let err = Args::from_input(&ctx(), &input).await.expect_err("bad");
        assert_eq!(err.error_type, "InvalidArgs");
        assert!(!err.retryable);
        assert!(
            err.message.starts_with("args.nested.n: invalid type"),
            "{}",
            err.message
        );
        let missing = Args::from_input(&ctx(), &json!({"args": {}}))
            .await
            .expect_err("bad");
        assert!(
            missing.message.contains("missing field `x`"),
            "{}",
            missing.message
        );
    }

    #[tokio::test]
    async fn parameters_and_upstream_are_typed_where_asked() {
        let input = json!({"parameters": {"day": "2026-11-29"}, "upstream": {"a": 1, "b": 2}});
        let Parameters(p) =
            Parameters::<std::collections::HashMap<String, String>>::from_input(&ctx(), &input)
                .await
                .expect("parameters");
        assert_eq!(p["day"], "2026-11-29");
        let Upstream(u) =
            Upstream::<std::collections::BTreeMap<String, i64>>::from_input(&ctx(), &input)
                .await
                .expect("upstream");
        assert_eq!(u.values().sum::<i64>(), 3);
        let bad = Upstream::<Vec<i64>>::from_input(&ctx(), &input).await;
        assert_eq!(bad.expect_err("a map").error_type, "InvalidUpstream");
    }

    #[tokio::test]
    async fn shared_state_is_built_once_and_shared() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static BUILT: AtomicUsize = AtomicUsize::new(0);
        let mut registry = HandlerRegistry::new();
        registry.state_with(|| async {
            BUILT.fetch_add(1, Ordering::SeqCst);
            String::from("client")
        });
        let ctx = ctx().with_state(registry.shared_state());
        let State(a) = State::<String>::from_input(&ctx, &Value::Null)
            .await
            .expect("a");
        let State(b) = State::<String>::from_input(&ctx.clone(), &Value::Null)
            .await
            .expect("b");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(BUILT.load(Ordering::SeqCst), 1);
        let missing = State::<u64>::from_input(&ctx, &Value::Null).await;
        let err = missing.expect_err("none");
        assert_eq!(err.error_type, "StateMissing");
        assert!(err.message.contains("u64"), "{}", err.message);
    }

    #[test]
    fn outputs_serialize_and_errors_convert() {
        let ok: Result<Vec<u8>, TaskError> = Ok(vec![1, 2]);
        assert_eq!(ok.into_output(), Ok(json!([1, 2])));
        let io: Result<(), std::io::Error> = Err(std::io::Error::other("disk full"));
        let err = io.into_output().expect_err("error");
        assert!(err.retryable && err.message.contains("disk full"));
    }
}
