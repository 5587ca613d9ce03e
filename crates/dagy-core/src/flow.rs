//! The FlowSpec contract: what a flow is, as JSON (`spec_version: 1`) and as Rust values.
//!
//! A [`FlowSpec`] is only a description; it may be invalid. Turn it into a
//! [`Flow`](crate::Flow) with [`FlowSpec::validate`] (or parse JSON with
//! [`Flow::from_json`](crate::Flow::from_json)) before running or planning it.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::json::JsonText;
use crate::tier::RuntimeTier;

/// The only FlowSpec version this build understands.
pub const SPEC_VERSION: u64 = 1;

/// A flow: a named DAG of tasks and the default values of its parameters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowSpec {
    /// Always [`SPEC_VERSION`].
    pub spec_version: u64,
    /// The flow's name, shown in runs and logs.
    pub name: String,
    /// Default parameter values; a trigger's parameters are merged over them.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub parameters: Map<String, Value>,
    /// The tasks, in the order the author wrote them (ties in the run order follow it).
    pub tasks: Vec<TaskSpec>,
}

/// One task of a flow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskSpec {
    /// Unique within the flow: 1 to 64 characters of `A-Z a-z 0-9 _ - .`.
    pub id: String,
    /// A handler registered in Rust code, or `lambda:<function name or ARN>`.
    pub handler: String,
    /// Ids of the tasks whose outputs this task needs; they run first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// A JSON value handed to the handler as `input.args` (`None`: `null`), kept as text: every
    /// tier holds the whole flow, and text takes a fraction of a parsed value's memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<JsonText>,
    /// How many times a failed attempt is tried again (0: never).
    #[serde(skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// The wait before each retry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_delay_seconds: Option<RetryDelay>,
    /// Randomises each delay by a factor in `[1 - f, 1 + f]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_jitter_factor: Option<f64>,
    /// Per-attempt time limit in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    /// A hint: the tier this task would like the flow to run on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_tier: Option<RuntimeTier>,
    /// The memory this task needs, in MB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The prefix of a handler that invokes another Lambda function.
pub const LAMBDA_HANDLER_PREFIX: &str = "lambda:";

impl TaskSpec {
    /// A task with the given id and handler and every option at its default.
    pub fn new(id: impl Into<String>, handler: impl Into<String>) -> Self {
        TaskSpec {
            id: id.into(),
            handler: handler.into(),
            depends_on: Vec::new(),
            args: None,
            retries: 0,
            retry_delay_seconds: None,
            retry_jitter_factor: None,
            timeout_seconds: None,
            runtime_tier: None,
            memory_mb: None,
        }
    }

    /// The Lambda function this task invokes, when its handler is `lambda:<name>`.
    pub fn lambda_function(&self) -> Option<&str> {
        self.handler.strip_prefix(LAMBDA_HANDLER_PREFIX)
    }
}

/// A closure that gives the delay in seconds before retry number `n` (1 for the first retry).
pub type DelayFn = Arc<dyn Fn(u32) -> f64 + Send + Sync>;

/// How long to wait before a retry.
#[derive(Clone)]
pub enum RetryDelay {
    /// The same delay before every retry.
    Fixed(f64),
    /// One delay per retry; the last is repeated for later retries.
    PerAttempt(Vec<f64>),
    /// Computed by a closure (Rust builder API only; it cannot be written as JSON).
    Computed(DelayFn),
}

impl RetryDelay {
    /// The delay in seconds before retry number `retry` (1-based), before jitter.
    pub fn seconds_before_retry(&self, retry: u32) -> f64 {
        match self {
            RetryDelay::Fixed(s) => *s,
            RetryDelay::PerAttempt(list) => {
                let index = (retry.max(1) as usize - 1).min(list.len().saturating_sub(1));
                list.get(index).copied().unwrap_or(0.0)
            }
            RetryDelay::Computed(f) => f(retry.max(1)),
        }
    }
}

impl fmt::Debug for RetryDelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryDelay::Fixed(s) => f.debug_tuple("Fixed").field(s).finish(),
            RetryDelay::PerAttempt(l) => f.debug_tuple("PerAttempt").field(l).finish(),
            RetryDelay::Computed(_) => f.write_str("Computed(<closure>)"),
        }
    }
}

impl PartialEq for RetryDelay {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (RetryDelay::Fixed(a), RetryDelay::Fixed(b)) => a == b,
            (RetryDelay::PerAttempt(a), RetryDelay::PerAttempt(b)) => a == b,
            (RetryDelay::Computed(a), RetryDelay::Computed(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Serialize for RetryDelay {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            RetryDelay::Fixed(s) => serializer.serialize_f64(*s),
            RetryDelay::PerAttempt(list) => list.serialize(serializer),
            RetryDelay::Computed(_) => Err(serde::ser::Error::custom(
                "a retry delay computed by a closure cannot be written as JSON; \
                 use a number or a list of numbers instead",
            )),
        }
    }
}

impl<'de> Deserialize<'de> for FlowSpec {
    /// Decodes through [`crate::decode`], so serde users get the same checks and messages.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        crate::decode::decode_flow_spec(&value).map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for TaskSpec {
    /// Decodes through [`crate::decode::decode_task_spec`], as a flow's task is decoded.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        crate::decode::decode_task_spec(&value).map_err(serde::de::Error::custom)
    }
}

/// Builds a [`FlowSpec`] in Rust: the same contract as the JSON, plus closure delays.
///
/// ```
/// use dagy_core::{FlowBuilder, RuntimeTier};
///
/// let spec = FlowBuilder::new("etl")
///     .parameter("day", "2026-11-24")
///     .task("extract", "echo", |t| t.retries(2).retry_delay(1.5).timeout(30.0))
///     .task("load", "echo", |t| t.depends_on(["extract"]).tier(RuntimeTier::Small))
///     .build();
/// let flow = spec.validate(None).expect("a valid flow");
/// assert_eq!(flow.order_ids(), ["extract", "load"]);
/// ```
#[derive(Debug, Clone)]
pub struct FlowBuilder {
    spec: FlowSpec,
}

impl FlowBuilder {
    /// Starts a flow with the given name.
    pub fn new(name: impl Into<String>) -> Self {
        FlowBuilder {
            spec: FlowSpec {
                spec_version: SPEC_VERSION,
                name: name.into(),
                parameters: Map::new(),
                tasks: Vec::new(),
            },
        }
    }

    /// Sets a parameter's default value.
    pub fn parameter(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.spec.parameters.insert(name.into(), value.into());
        self
    }

    /// Adds a task, configured by `configure`.
    pub fn task(
        mut self,
        id: impl Into<String>,
        handler: impl Into<String>,
        configure: impl FnOnce(TaskBuilder) -> TaskBuilder,
    ) -> Self {
        let task = configure(TaskBuilder(TaskSpec::new(id, handler))).0;
        self.spec.tasks.push(task);
        self
    }

    /// Adds a task that runs `handler` (a `#[dagy::task]`), starting from the options the handler
    /// declares; `configure` adds dependencies and args, and may override any of them.
    ///
    /// ```
    /// use dagy_core::{FlowBuilder, HasDefaults, RuntimeTier, TaskDefaults};
    ///
    /// struct Train; // what `#[dagy::task(runtime_tier = "large", retries = 2)]` declares
    /// impl HasDefaults for Train {
    ///     fn defaults(&self) -> TaskDefaults {
    ///         TaskDefaults { runtime_tier: Some(RuntimeTier::Large), retries: Some(2), ..TaskDefaults::named("train") }
    ///     }
    /// }
    /// let spec = FlowBuilder::new("ml").task_of("fit", &Train, |t| t.retries(5)).build();
    /// assert_eq!(spec.tasks[0].handler, "train");
    /// assert_eq!(spec.tasks[0].runtime_tier, Some(RuntimeTier::Large));
    /// assert_eq!(spec.tasks[0].retries, 5, "the flow overrides the handler's default");
    /// ```
    pub fn task_of(
        mut self,
        id: impl Into<String>,
        handler: &impl HasDefaults,
        configure: impl FnOnce(TaskBuilder) -> TaskBuilder,
    ) -> Self {
        let defaults = handler.defaults();
        let mut task = TaskSpec::new(id, defaults.name.clone());
        defaults.apply(&mut task);
        self.spec.tasks.push(configure(TaskBuilder(task)).0);
        self
    }

    /// The finished (not yet validated) spec.
    pub fn build(self) -> FlowSpec {
        self.spec
    }
}

/// A handler's name and the task options it declares (`#[dagy::task(retries = 2, ...)]`): a
/// flow built with [`FlowBuilder::task_of`] starts from them, so the per-task tier hint (level 4
/// of tier resolution) can come from the code, as the seed's `@task(runtime_tier="large")` does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskDefaults {
    /// The name the handler is registered under.
    pub name: String,
    /// The tier hint.
    pub runtime_tier: Option<RuntimeTier>,
    /// Retries after a failed attempt.
    pub retries: Option<u32>,
    /// The wait before each retry.
    pub retry_delay_seconds: Option<RetryDelay>,
    /// The jitter factor of each wait.
    pub retry_jitter_factor: Option<f64>,
    /// The per-attempt timeout in seconds.
    pub timeout_seconds: Option<f64>,
    /// The memory the task needs, in MB.
    pub memory_mb: Option<u64>,
}

impl TaskDefaults {
    /// No options, only a name.
    pub fn named(name: impl Into<String>) -> Self {
        TaskDefaults {
            name: name.into(),
            ..TaskDefaults::default()
        }
    }

    /// Sets on `task` every option these defaults declare.
    pub fn apply(&self, task: &mut TaskSpec) {
        if let Some(tier) = self.runtime_tier {
            task.runtime_tier = Some(tier);
        }
        if let Some(retries) = self.retries {
            task.retries = retries;
        }
        if let Some(delay) = &self.retry_delay_seconds {
            task.retry_delay_seconds = Some(delay.clone());
        }
        if let Some(f) = self.retry_jitter_factor {
            task.retry_jitter_factor = Some(f);
        }
        if let Some(t) = self.timeout_seconds {
            task.timeout_seconds = Some(t);
        }
        if let Some(mb) = self.memory_mb {
            task.memory_mb = Some(mb);
        }
    }
}

/// A handler that declares its name and task options (what `#[dagy::task]` generates).
pub trait HasDefaults {
    /// Its name and options.
    fn defaults(&self) -> TaskDefaults;
}

/// Configures one task inside [`FlowBuilder::task`].
#[derive(Debug, Clone)]
pub struct TaskBuilder(TaskSpec);

impl TaskBuilder {
    /// Adds dependencies.
    pub fn depends_on<I, S>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.0.depends_on.extend(ids.into_iter().map(Into::into));
        self
    }
    /// Sets the handler's `args` (`null` clears them).
    pub fn args(mut self, args: Value) -> Self {
        self.0.args = (!args.is_null()).then(|| JsonText::from(args));
        self
    }
    /// Sets how many times a failed attempt is retried.
    pub fn retries(mut self, retries: u32) -> Self {
        self.0.retries = retries;
        self
    }
    /// A fixed delay in seconds before each retry.
    pub fn retry_delay(mut self, seconds: f64) -> Self {
        self.0.retry_delay_seconds = Some(RetryDelay::Fixed(seconds));
        self
    }
    /// One delay per retry, the last repeated.
    pub fn retry_delays(mut self, seconds: impl Into<Vec<f64>>) -> Self {
        self.0.retry_delay_seconds = Some(RetryDelay::PerAttempt(seconds.into()));
        self
    }
    /// A delay computed from the retry number (1 for the first retry).
    pub fn retry_delay_fn(mut self, f: impl Fn(u32) -> f64 + Send + Sync + 'static) -> Self {
        self.0.retry_delay_seconds = Some(RetryDelay::Computed(Arc::new(f)));
        self
    }
    /// Sets the jitter factor applied to each delay.
    pub fn jitter(mut self, factor: f64) -> Self {
        self.0.retry_jitter_factor = Some(factor);
        self
    }
    /// Sets the per-attempt timeout in seconds.
    pub fn timeout(mut self, seconds: f64) -> Self {
        self.0.timeout_seconds = Some(seconds);
        self
    }
    /// Sets the runtime tier hint.
    pub fn tier(mut self, tier: RuntimeTier) -> Self {
        self.0.runtime_tier = Some(tier);
        self
    }
    /// Sets the memory the task needs, in MB.
    pub fn memory_mb(mut self, mb: u64) -> Self {
        self.0.memory_mb = Some(mb);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_attempt_delay_repeats_the_last_value() {
        let d = RetryDelay::PerAttempt(vec![1.0, 2.0, 4.0]);
        let got: Vec<f64> = (1..=5).map(|n| d.seconds_before_retry(n)).collect();
        assert_eq!(got, [1.0, 2.0, 4.0, 4.0, 4.0]);
    }

    #[test]
    fn computed_delay_receives_the_retry_number() {
        let d = RetryDelay::Computed(Arc::new(|n| f64::from(n) * 10.0));
        assert_eq!(d.seconds_before_retry(3), 30.0);
    }

    #[test]
    fn a_closure_delay_refuses_to_serialize_with_an_explanation() {
        let spec = FlowBuilder::new("f")
            .task("a", "echo", |t| t.retry_delay_fn(|_| 1.0))
            .build();
        let err = serde_json::to_string(&spec).expect_err("closures have no JSON form");
        assert!(
            err.to_string().contains("cannot be written as JSON"),
            "{err}"
        );
    }

    #[test]
    fn builder_and_json_produce_the_same_spec() {
        let built = FlowBuilder::new("etl")
            .parameter("day", "2026-11-24")
            .task("extract", "echo", |t| {
                t.retries(2)
                    .retry_delays([1.0, 5.0])
                    .jitter(0.2)
                    .timeout(30.0)
            })
            .task("load", "lambda:loader", |t| {
                t.depends_on(["extract"])
                    .args(serde_json::json!({"table": "sales"}))
                    .tier(RuntimeTier::Small)
                    .memory_mb(2048)
            })
            .build();
        let json = serde_json::to_string(&built).expect("serializable");
        let parsed: FlowSpec = serde_json::from_str(&json).expect("round trip");
        assert_eq!(parsed, built);
    }
}
