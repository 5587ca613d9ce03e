//! Semantic validation: names, numbers, handlers, and the dependency graph.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use serde_json::Value;

use crate::decode::{self, Decoded};
use crate::error::{Error, Problem, ProblemKind};
use crate::flow::{FlowSpec, LAMBDA_HANDLER_PREFIX, RetryDelay};
use crate::graph::{self, Flow};
use crate::positions::{IdIndex, PositionLists};

/// The longest task id accepted (leaves room for ASL state-name prefixes within 80 characters).
pub const MAX_TASK_ID_LEN: usize = 64;
/// The longest flow name accepted, in bytes (it is stored on every run and in its list keys).
pub const MAX_FLOW_NAME_LEN: usize = 256;
/// The most retries a task may have: each attempt keeps a span on the task's record, which
/// must stay well within a DynamoDB item (400 KB).
pub const MAX_RETRIES: u32 = 100;
/// The most seconds a `timeout_seconds` or a retry delay may be: a year, the longest a Step
/// Functions execution lasts. No run waits longer, so a longer value is a mistake.
pub const MAX_SECONDS: f64 = 365.0 * 86_400.0;
/// The largest `retry_jitter_factor`: a wait is `delay × (1 + U(−f, f))`, so past 1 some waits
/// would be negative.
pub const MAX_JITTER_FACTOR: f64 = 1.0;
/// The largest JSON text of a flow's (or a run's) `parameters`: they are stored on the run's
/// item, which DynamoDB holds to 400 KB.
pub const MAX_PARAMETERS_BYTES: usize = 128 * 1024;

/// The handlers a deployment can run, for the "handler not registered" check.
pub trait HandlerCatalog {
    /// Whether a handler of this name is registered.
    fn has_handler(&self, name: &str) -> bool;
    /// Every registered name, for the error message.
    fn handler_names(&self) -> Vec<String>;
}

impl<S: AsRef<str>> HandlerCatalog for Vec<S> {
    fn has_handler(&self, name: &str) -> bool {
        self.iter().any(|s| s.as_ref() == name)
    }
    fn handler_names(&self) -> Vec<String> {
        self.iter().map(|s| s.as_ref().to_string()).collect()
    }
}

impl<S: AsRef<str>, const N: usize> HandlerCatalog for [S; N] {
    fn has_handler(&self, name: &str) -> bool {
        self.iter().any(|s| s.as_ref() == name)
    }
    fn handler_names(&self) -> Vec<String> {
        self.iter().map(|s| s.as_ref().to_string()).collect()
    }
}

/// The handlers a deployment can run, by name, with the options each declares: what the router
/// checks flows against. It holds no handlers, so a binary that never runs tasks (the router)
/// needs none of their code.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    handlers: std::collections::BTreeMap<String, crate::TaskDefaults>,
}

impl Catalog {
    /// A catalog of these names, without declared options.
    ///
    /// ```
    /// use dagy_core::{Catalog, HandlerCatalog};
    /// let catalog = Catalog::from_names(["extract", "load"]);
    /// assert!(catalog.has_handler("load") && !catalog.has_handler("train"));
    /// ```
    pub fn from_names<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut catalog = Catalog::default();
        for name in names {
            catalog.insert(crate::TaskDefaults::named(name));
        }
        catalog
    }

    /// Adds (or replaces) a handler.
    pub fn insert(&mut self, defaults: crate::TaskDefaults) {
        self.handlers.insert(defaults.name.clone(), defaults);
    }

    /// The options a handler declares, when it is in the catalog.
    pub fn defaults(&self, name: &str) -> Option<&crate::TaskDefaults> {
        self.handlers.get(name)
    }
}

impl HandlerCatalog for Catalog {
    fn has_handler(&self, name: &str) -> bool {
        self.handlers.contains_key(name)
    }
    fn handler_names(&self) -> Vec<String> {
        self.handlers.keys().cloned().collect()
    }
}

impl FlowSpec {
    /// Checks the spec and returns the runnable [`Flow`], or every problem found.
    ///
    /// With a `catalog`, handler names not in it (other than `lambda:` handlers) are problems.
    pub fn validate(self, catalog: Option<&dyn HandlerCatalog>) -> Result<Flow, Error> {
        Flow::from_shared(Arc::new(self), catalog)
    }
}

impl Flow {
    /// Parses FlowSpec JSON text and validates it.
    pub fn from_json(text: &str, catalog: Option<&dyn HandlerCatalog>) -> Result<Flow, Error> {
        finish(decode::decode_text(text)?, catalog)
    }

    /// Validates an already-parsed FlowSpec document.
    pub fn from_value(value: &Value, catalog: Option<&dyn HandlerCatalog>) -> Result<Flow, Error> {
        finish(decode::decode(value), catalog)
    }

    /// Validates a shared spec without copying it: the flow and whoever else holds the spec
    /// (a store, a run's snapshot) share one copy.
    pub fn from_shared(
        spec: Arc<FlowSpec>,
        catalog: Option<&dyn HandlerCatalog>,
    ) -> Result<Flow, Error> {
        check_and_build(spec, catalog, &BTreeSet::new(), Vec::new())
    }
}

fn finish(decoded: Decoded, catalog: Option<&dyn HandlerCatalog>) -> Result<Flow, Error> {
    let Decoded {
        spec,
        problems,
        tasks_without_id,
    } = decoded;
    check_and_build(Arc::new(spec), catalog, &tasks_without_id, problems)
}

/// Adds the semantic problems of `spec` to those already found; builds its graph when there
/// are none.
fn check_and_build(
    spec: Arc<FlowSpec>,
    catalog: Option<&dyn HandlerCatalog>,
    tasks_without_id: &BTreeSet<usize>,
    mut problems: Vec<Problem>,
) -> Result<Flow, Error> {
    let (index, dependencies) = check(&spec, catalog, tasks_without_id, &mut problems);
    if !problems.is_empty() {
        return Err(Error::InvalidFlow(problems));
    }
    graph::build(spec, index, dependencies).map_err(|cycle| Error::InvalidFlow(vec![cycle]))
}

fn push(problems: &mut Vec<Problem>, kind: ProblemKind, path: String, task: &str, message: String) {
    problems.push(Problem {
        kind,
        path,
        task: (!task.is_empty()).then(|| task.to_string()),
        message,
    });
}

/// Adds every problem of `spec` to `problems`. Paths are formatted only for problems found, so
/// a valid flow costs one map insert per task and one lookup per dependency. Returns the task
/// index by id and each task's dependencies as indices, which the graph is built from.
fn check(
    spec: &FlowSpec,
    catalog: Option<&dyn HandlerCatalog>,
    tasks_without_id: &BTreeSet<usize>,
    problems: &mut Vec<Problem>,
) -> (IdIndex, PositionLists) {
    check_flow_fields(spec, problems);
    let index = index_ids(spec, tasks_without_id, problems);
    let edges = spec.tasks.iter().map(|t| t.depends_on.len()).sum();
    let mut dependencies = PositionLists::with_capacity(spec.tasks.len(), edges);
    for (i, task) in spec.tasks.iter().enumerate() {
        let tid = if tasks_without_id.contains(&i) {
            ""
        } else {
            task.id.as_str()
        };
        check_handler(problems, i, tid, &task.handler, catalog);
        check_numbers(problems, i, tid, task);
        check_args(problems, i, tid, task);
        dependencies.push(resolve_dependencies(problems, i, tid, spec, &index));
    }
    (index, dependencies)
}

/// The flow's own fields: a name, parameters it can store, at least one task.
fn check_flow_fields(spec: &FlowSpec, problems: &mut Vec<Problem>) {
    if spec.name.trim().is_empty() && !problems.iter().any(|p| p.path == "name") {
        push(
            problems,
            ProblemKind::InvalidName,
            "name".into(),
            "",
            "the flow needs a non-empty name".into(),
        );
    }
    if spec.name.len() > MAX_FLOW_NAME_LEN {
        push(
            problems,
            ProblemKind::InvalidName,
            "name".into(),
            "",
            format!(
                "the flow name has {} bytes; at most {MAX_FLOW_NAME_LEN} are allowed",
                spec.name.len()
            ),
        );
    }
    if let Some(problem) = parameters_problem(&spec.parameters) {
        push(
            problems,
            ProblemKind::InvalidParameters,
            "parameters".into(),
            "",
            problem,
        );
    }
    if spec.tasks.is_empty() && !problems.iter().any(|p| p.path == "tasks") {
        push(
            problems,
            ProblemKind::EmptyFlow,
            "tasks".into(),
            "",
            "the flow has no tasks; add at least one".into(),
        );
    }
}

/// Each task's position by id; bad and duplicate ids are problems (the first use keeps the id).
fn index_ids(
    spec: &FlowSpec,
    tasks_without_id: &BTreeSet<usize>,
    problems: &mut Vec<Problem>,
) -> IdIndex {
    let id_at = |i: usize| spec.tasks[i].id.as_str();
    let mut index = IdIndex::with_capacity(spec.tasks.len());
    for (i, task) in spec.tasks.iter().enumerate() {
        if tasks_without_id.contains(&i) {
            continue;
        }
        if let Some(reason) = id_problem(&task.id) {
            push(
                problems,
                ProblemKind::InvalidName,
                format!("tasks[{i}].id"),
                &task.id,
                reason,
            );
        }
        if let Err(first) = index.insert(&task.id, i, id_at) {
            push(
                problems,
                ProblemKind::DuplicateId,
                format!("tasks[{i}].id"),
                &task.id,
                format!(
                    "id \"{}\" is already used by tasks[{first}]; ids must be unique",
                    task.id
                ),
            );
        }
    }
    index
}

/// Task `i`'s dependencies as positions; a dependency listed twice or naming no task is a
/// problem (a set finds repeats, so one task may list 100,000 dependencies).
fn resolve_dependencies(
    problems: &mut Vec<Problem>,
    i: usize,
    tid: &str,
    spec: &FlowSpec,
    index: &IdIndex,
) -> Vec<usize> {
    let task = &spec.tasks[i];
    let mut resolved = Vec::with_capacity(task.depends_on.len());
    let mut listed: HashSet<&str> = HashSet::with_capacity(task.depends_on.len());
    for (j, dep) in task.depends_on.iter().enumerate() {
        let path = || format!("tasks[{i}].depends_on[{j}]");
        if !listed.insert(dep.as_str()) {
            push(
                problems,
                ProblemKind::InvalidDependency,
                path(),
                tid,
                format!("\"{dep}\" is listed twice; list each dependency once"),
            );
        } else if let Some(d) = index.get(dep, |p| spec.tasks[p].id.as_str()) {
            resolved.push(d);
        } else {
            push(
                problems,
                ProblemKind::InvalidDependency,
                path(),
                tid,
                format!("depends on \"{dep}\", which is not a task of this flow"),
            );
        }
    }
    resolved
}

/// Why a run's parameters cannot be stored, if they cannot: their JSON text is over
/// [`MAX_PARAMETERS_BYTES`], or they nest deeper than [`crate::json::MAX_OUTPUT_DEPTH`].
pub fn parameters_problem(parameters: &serde_json::Map<String, Value>) -> Option<String> {
    let bytes = serde_json::to_string(parameters).map_or(usize::MAX, |t| t.len());
    if bytes > MAX_PARAMETERS_BYTES {
        return Some(format!(
            "the parameters are {bytes} bytes of JSON; at most {MAX_PARAMETERS_BYTES} are \
             allowed: pass large data by reference (an S3 key, say)"
        ));
    }
    let depth = crate::json::depth(&Value::Object(parameters.clone()));
    (depth > crate::json::MAX_OUTPUT_DEPTH).then(|| {
        format!(
            "the parameters nest {depth} levels deep; at most {} are allowed",
            crate::json::MAX_OUTPUT_DEPTH
        )
    })
}

/// Whether `name` is 1 to `max_len` ASCII letters, digits, `-` and `_`: what a run id must be
/// to name an ECS task (`startedBy`, 36) or a Step Functions execution (80).
pub fn is_plain_name(name: &str, max_len: usize) -> bool {
    !name.is_empty()
        && name.len() <= max_len
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn id_problem(id: &str) -> Option<String> {
    if id.is_empty() {
        return Some("a task id cannot be empty".into());
    }
    if id.len() > MAX_TASK_ID_LEN {
        return Some(format!(
            "a task id has at most {MAX_TASK_ID_LEN} characters, this one has {}",
            id.len()
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Some(format!(
            "a task id may use letters, digits, '_', '-' and '.', not {c:?}"
        ));
    }
    None
}

fn check_handler(
    problems: &mut Vec<Problem>,
    i: usize,
    tid: &str,
    handler: &str,
    catalog: Option<&dyn HandlerCatalog>,
) {
    if let Some(message) = handler_problem(handler, catalog) {
        push(
            problems,
            ProblemKind::UnknownHandler,
            format!("tasks[{i}].handler"),
            tid,
            message,
        );
    }
}

/// What is wrong with a task's handler name: a `lambda:` name that is not a function name or
/// ARN, an empty name, or a name `catalog` does not register.
fn handler_problem(handler: &str, catalog: Option<&dyn HandlerCatalog>) -> Option<String> {
    if let Some(function) = handler.strip_prefix(LAMBDA_HANDLER_PREFIX) {
        let valid = !function.is_empty()
            && function.len() <= 170
            && function.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.' | '/' | '$')
            });
        return (!valid).then(|| {
            format!(
                "\"{handler}\" must be lambda:<function name or ARN> (letters, digits, - _ : .)"
            )
        });
    }
    if handler.is_empty() {
        return Some(
            "the handler cannot be empty; name a registered handler or lambda:<function>".into(),
        );
    }
    let catalog = catalog?;
    if catalog.has_handler(handler) {
        return None;
    }
    let mut names = catalog.handler_names();
    names.sort();
    Some(format!(
        "handler \"{handler}\" is not registered; registered handlers: {} (or use lambda:<function>)",
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    ))
}

/// A task's `args` nest at most [`crate::json::MAX_OUTPUT_DEPTH`] levels: an attempt's input
/// holds them, and everything Dagy reads back is held to that depth.
fn check_args(problems: &mut Vec<Problem>, i: usize, tid: &str, task: &crate::TaskSpec) {
    let Some(args) = &task.args else { return };
    let depth = crate::json::text_depth(args.json());
    if depth > crate::json::MAX_OUTPUT_DEPTH {
        push(
            problems,
            ProblemKind::InvalidArgs,
            format!("tasks[{i}].args"),
            tid,
            format!(
                "args nest {depth} levels deep; at most {} are allowed",
                crate::json::MAX_OUTPUT_DEPTH
            ),
        );
    }
}

fn check_numbers(problems: &mut Vec<Problem>, i: usize, tid: &str, task: &crate::TaskSpec) {
    let at = || format!("tasks[{i}]");
    let in_range =
        |problems: &mut Vec<Problem>, field: &dyn Fn() -> String, value: f64, max: f64| {
            let why = if !value.is_finite() || value < 0.0 {
                format!("must be a finite number >= 0, got {value}")
            } else if value > max {
                format!("is {value}; at most {max} is allowed")
            } else {
                return;
            };
            let field = field();
            push(
                problems,
                ProblemKind::InvalidNumber,
                format!("{}.{field}", at()),
                tid,
                format!("{field} {why}"),
            );
        };
    let seconds = |problems: &mut Vec<Problem>, field: &dyn Fn() -> String, value: f64| {
        in_range(problems, field, value, MAX_SECONDS);
    };
    match &task.retry_delay_seconds {
        Some(RetryDelay::Fixed(s)) => seconds(problems, &|| "retry_delay_seconds".into(), *s),
        Some(RetryDelay::PerAttempt(list)) => {
            if list.is_empty() {
                push(
                    problems,
                    ProblemKind::InvalidNumber,
                    format!("{}.retry_delay_seconds", at()),
                    tid,
                    "retry_delay_seconds is an empty list; give at least one delay or a number"
                        .into(),
                );
            }
            for (j, s) in list.iter().enumerate() {
                seconds(problems, &|| format!("retry_delay_seconds[{j}]"), *s);
            }
        }
        Some(RetryDelay::Computed(_)) | None => {}
    }
    if let Some(f) = task.retry_jitter_factor {
        in_range(
            problems,
            &|| "retry_jitter_factor".into(),
            f,
            MAX_JITTER_FACTOR,
        );
    }
    if let Some(t) = task.timeout_seconds {
        if !t.is_finite() || t <= 0.0 {
            push(
                problems,
                ProblemKind::InvalidNumber,
                format!("{}.timeout_seconds", at()),
                tid,
                format!("timeout_seconds must be a finite number > 0, got {t}"),
            );
        } else {
            seconds(problems, &|| "timeout_seconds".into(), t);
        }
    }
    if task.memory_mb == Some(0) {
        push(
            problems,
            ProblemKind::InvalidNumber,
            format!("{}.memory_mb", at()),
            tid,
            "memory_mb must be > 0; omit it when the task has no particular need".into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FlowBuilder;
    use serde_json::json;

    fn problems_of(v: Value) -> Vec<Problem> {
        Flow::from_value(&v, None)
            .err()
            .map(|e| e.problems().to_vec())
            .unwrap_or_default()
    }

    fn flow_with(tasks: Value) -> Value {
        json!({"spec_version": 1, "name": "f", "tasks": tasks})
    }

    fn kinds(p: &[Problem]) -> Vec<ProblemKind> {
        p.iter().map(|p| p.kind).collect()
    }

    #[test]
    fn an_empty_flow_is_refused() {
        assert_eq!(
            kinds(&problems_of(flow_with(json!([])))),
            [ProblemKind::EmptyFlow]
        );
    }

    #[test]
    fn args_deeper_than_an_input_may_nest_are_refused_from_json_and_from_rust() {
        let deep = |levels: usize| -> Value {
            let mut value = json!(1);
            for _ in 0..levels {
                value = json!([value]);
            }
            value
        };
        let limit = crate::json::MAX_OUTPUT_DEPTH;
        let ok = flow_with(json!([{"id": "a", "handler": "echo", "args": deep(limit)}]));
        assert_eq!(problems_of(ok), []);
        let text = serde_json::to_string(&flow_with(json!([
            {"id": "a", "handler": "echo", "args": deep(limit + 1)}
        ])))
        .expect("writes");
        let err = Flow::from_json(&text, None).expect_err("too deep");
        assert!(err.to_string().contains("tasks[0].args"), "{err}");
        assert!(err.to_string().contains("nest 513 levels deep"), "{err}");
        let past = "[".repeat(600) + &"]".repeat(600);
        let text = format!(
            r#"{{"spec_version": 1, "name": "f", "tasks": [{{"id": "a", "handler": "echo", "args": {past}}}]}}"#
        );
        let err = Flow::from_json(&text, None).expect_err("past what Dagy reads");
        assert!(err.to_string().contains("nests 603 levels deep"), "{err}");
        let built = crate::FlowBuilder::new("f")
            .task("a", "echo", |t| t.args(deep(limit + 1)))
            .build();
        assert!(built.validate(None).is_err());
    }

    #[test]
    fn duplicate_ids_name_the_first_use() {
        let p = problems_of(flow_with(json!([
            {"id": "a", "handler": "echo"}, {"id": "a", "handler": "echo"}
        ])));
        assert_eq!(kinds(&p), [ProblemKind::DuplicateId]);
        assert_eq!(p[0].path, "tasks[1].id");
        assert!(p[0].message.contains("tasks[0]"));
    }

    #[test]
    fn unknown_and_repeated_dependencies_are_reported() {
        let p = problems_of(flow_with(json!([
            {"id": "a", "handler": "echo"},
            {"id": "b", "handler": "echo", "depends_on": ["a", "a", "ghost"]}
        ])));
        assert_eq!(
            kinds(&p),
            [
                ProblemKind::InvalidDependency,
                ProblemKind::InvalidDependency
            ]
        );
        assert_eq!(p[0].path, "tasks[1].depends_on[1]");
        assert!(p[1].message.contains("\"ghost\""));
        assert_eq!(p[1].task.as_deref(), Some("b"));
    }

    #[test]
    fn a_cycle_is_printed_as_a_path() {
        let p = problems_of(flow_with(json!([
            {"id": "start", "handler": "echo"},
            {"id": "a", "handler": "echo", "depends_on": ["start", "c"]},
            {"id": "b", "handler": "echo", "depends_on": ["a"]},
            {"id": "c", "handler": "echo", "depends_on": ["b"]}
        ])));
        assert_eq!(kinds(&p), [ProblemKind::Cycle]);
        assert!(
            p[0].message.contains("a -> b -> c -> a"),
            "{}",
            p[0].message
        );
    }

    #[test]
    fn a_task_depending_on_itself_is_a_cycle() {
        let p = problems_of(flow_with(
            json!([{"id": "a", "handler": "echo", "depends_on": ["a"]}]),
        ));
        assert_eq!(kinds(&p), [ProblemKind::Cycle]);
        assert!(p[0].message.contains("a -> a"), "{}", p[0].message);
    }

    #[test]
    fn negative_and_non_finite_numbers_are_refused_from_the_builder() {
        let spec = FlowBuilder::new("f")
            .task("a", "echo", |t| {
                t.retry_delay(-1.0).jitter(f64::NAN).timeout(0.0)
            })
            .task("b", "echo", |t| {
                t.retry_delays([1.0, f64::INFINITY]).memory_mb(0)
            })
            .build();
        let err = spec.validate(None).expect_err("invalid numbers");
        let paths: Vec<_> = err.problems().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "tasks[0].retry_delay_seconds",
                "tasks[0].retry_jitter_factor",
                "tasks[0].timeout_seconds",
                "tasks[1].retry_delay_seconds[1]",
                "tasks[1].memory_mb",
            ]
        );
        assert!(
            err.problems()
                .iter()
                .all(|p| p.kind == ProblemKind::InvalidNumber)
        );
    }

    #[test]
    fn an_empty_delay_list_is_refused() {
        let p = problems_of(flow_with(
            json!([{"id": "a", "handler": "echo", "retry_delay_seconds": []}]),
        ));
        assert_eq!(kinds(&p), [ProblemKind::InvalidNumber]);
    }

    #[test]
    fn unregistered_handlers_are_named_with_the_registered_ones() {
        let catalog = ["echo", "sum"];
        let err = Flow::from_value(
            &flow_with(json!([
                {"id": "a", "handler": "ech0"},
                {"id": "b", "handler": "lambda:arn:aws:lambda:us-east-1:123456789012:function:f"},
                {"id": "c", "handler": "lambda:"}
            ])),
            Some(&catalog),
        )
        .expect_err("unknown handler");
        let p = err.problems();
        assert_eq!(
            kinds(p),
            [ProblemKind::UnknownHandler, ProblemKind::UnknownHandler]
        );
        assert!(
            p[0].message.contains("registered handlers: echo, sum"),
            "{}",
            p[0].message
        );
        assert_eq!(p[1].path, "tasks[2].handler");
    }

    #[test]
    fn task_ids_follow_the_naming_rules() {
        let long = "x".repeat(MAX_TASK_ID_LEN + 1);
        let p = problems_of(flow_with(json!([
            {"id": "has space", "handler": "echo"},
            {"id": long, "handler": "echo"},
            {"id": "", "handler": "echo"}
        ])));
        assert_eq!(kinds(&p), [ProblemKind::InvalidName; 3]);
    }

    #[test]
    fn shape_and_graph_problems_are_reported_together() {
        let p = problems_of(json!({
            "spec_version": 1, "name": "f",
            "tasks": [
                {"id": "a", "handler": "echo", "retries": "3"},
                {"id": "a", "handler": "echo", "depends_on": ["zzz"]}
            ]
        }));
        assert_eq!(
            kinds(&p),
            [
                ProblemKind::WrongType,
                ProblemKind::DuplicateId,
                ProblemKind::InvalidDependency
            ]
        );
    }

    #[test]
    fn an_error_message_lists_every_problem() {
        let err = Flow::from_value(
            &flow_with(json!([{"id": "a", "handler": "echo", "timeout_seconds": -5}])),
            None,
        )
        .expect_err("invalid");
        let text = err.to_string();
        assert!(
            text.starts_with("the flow is invalid (1 problem):"),
            "{text}"
        );
        assert!(text.contains("tasks[0].timeout_seconds (task \"a\"): timeout_seconds must be a finite number > 0, got -5"), "{text}");
    }
}
