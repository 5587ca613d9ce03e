//! JSON to [`FlowSpec`], collecting every problem instead of stopping at the first.
//!
//! Serde's derive stops at the first error and cannot say "unknown field" and "wrong type"
//! in one pass, so the document is decoded by hand from a [`serde_json::Value`]. The result
//! is a best-effort spec plus the problems found; [`crate::validate`] adds the semantic ones.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::error::{Error, Problem, ProblemKind};
use crate::flow::{FlowSpec, RetryDelay, SPEC_VERSION, TaskSpec};
use crate::json::JsonText;
use crate::tier::RuntimeTier;

/// The fields a flow object may have.
pub const FLOW_FIELDS: &[&str] = &["spec_version", "name", "parameters", "tasks"];
/// The fields a task object may have.
pub const TASK_FIELDS: &[&str] = &[
    "id",
    "handler",
    "depends_on",
    "args",
    "retries",
    "retry_delay_seconds",
    "retry_jitter_factor",
    "timeout_seconds",
    "runtime_tier",
    "memory_mb",
];

/// Parses FlowSpec JSON text, reporting a syntax error with its line and column.
pub fn parse_json(text: &str) -> Result<Value, Error> {
    check_depth(text)?;
    crate::json::from_str(text).map_err(syntax_error)
}

/// Refuses a document nested deeper than Dagy reads ([`crate::json::MAX_DOCUMENT_DEPTH`]), so
/// that what is read can be read without serde_json's limit of 128 levels.
fn check_depth(text: &str) -> Result<(), Error> {
    let depth = crate::json::text_depth(text);
    if depth <= crate::json::MAX_DOCUMENT_DEPTH {
        return Ok(());
    }
    Err(Error::Syntax {
        message: format!(
            "it nests {depth} levels deep, more than the {} Dagy reads (a task's args may nest \
             {})",
            crate::json::MAX_DOCUMENT_DEPTH,
            crate::json::MAX_OUTPUT_DEPTH
        ),
        line: 1,
        column: 1,
    })
}

/// A JSON syntax error, with its line and column apart from its message.
fn syntax_error(e: serde_json::Error) -> Error {
    Error::Syntax {
        message: strip_position(&e.to_string()),
        line: e.line(),
        column: e.column(),
    }
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Decodes and validates the shape of a FlowSpec document, without the graph checks.
pub fn decode_flow_spec(value: &Value) -> Result<FlowSpec, Error> {
    let decoded = decode(value);
    if decoded.problems.is_empty() {
        Ok(decoded.spec)
    } else {
        Err(Error::InvalidFlow(decoded.problems))
    }
}

/// Decodes one task of a flow, with the checks and messages of [`decode_flow_spec`].
pub fn decode_task_spec(value: &Value) -> Result<TaskSpec, Error> {
    let mut d = Decoder::default();
    let (task, _) = d.task(0, value.clone());
    if d.problems.is_empty() {
        Ok(task)
    } else {
        Err(Error::InvalidFlow(d.problems))
    }
}

/// A spec decoded as far as possible, with what was wrong in it.
pub(crate) struct Decoded {
    pub spec: FlowSpec,
    pub problems: Vec<Problem>,
    /// Indices of tasks whose id could not be read: graph checks ignore them.
    pub tasks_without_id: BTreeSet<usize>,
}

pub(crate) fn decode(value: &Value) -> Decoded {
    let Some(root) = value.as_object() else {
        return not_an_object(type_name(value));
    };
    let tasks = match root.get("tasks") {
        None => TasksField::Missing,
        Some(Value::Array(items)) => {
            let mut list = TaskList::default();
            for item in items {
                list.push(item.clone());
            }
            TasksField::List(list)
        }
        Some(other) => TasksField::Other(type_name(other)),
    };
    decode_root(root, tasks)
}

/// Parses and decodes FlowSpec text in one pass. Each task is decoded as soon as it is read and
/// its JSON dropped, so a flow of 100,000 tasks is never held as one [`Value`] tree (which costs
/// more memory than the flow itself).
pub(crate) fn decode_text(text: &str) -> Result<Decoded, Error> {
    if !text.trim_start().starts_with('{') {
        // Not an object (or not JSON): the same problem, or syntax error, as from a `Value`.
        return Ok(decode(&parse_json(text)?));
    }
    check_depth(text)?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    // Safe: the depth was bounded above, so the recursion is too.
    deserializer.disable_recursion_limit();
    let (root, tasks) = serde::Deserializer::deserialize_map(&mut deserializer, RootVisitor)
        .and_then(|root| deserializer.end().map(|()| root))
        .map_err(syntax_error)?;
    Ok(decode_root(&root, tasks))
}

/// A spec with nothing read yet.
fn empty_spec() -> FlowSpec {
    FlowSpec {
        spec_version: SPEC_VERSION,
        name: String::new(),
        parameters: Map::new(),
        tasks: Vec::new(),
    }
}

/// The decoded spec of a document whose root is not an object, with that problem.
fn not_an_object(type_name: &str) -> Decoded {
    let mut d = Decoder::default();
    d.push(
        ProblemKind::WrongType,
        "flow",
        None,
        format!("a flow must be a JSON object with spec_version, name and tasks, got {type_name}"),
    );
    d.finish(empty_spec(), BTreeSet::new())
}

/// A flow's `tasks` field, as read.
enum TasksField {
    Missing,
    List(TaskList),
    /// Not a list: the JSON type it is.
    Other(&'static str),
}

/// Tasks decoded one at a time, with their problems.
#[derive(Default)]
struct TaskList {
    decoder: Decoder,
    tasks: Vec<TaskSpec>,
    without_id: BTreeSet<usize>,
}

impl TaskList {
    fn push(&mut self, item: Value) {
        let index = self.tasks.len();
        let (task, has_id) = self.decoder.task(index, item);
        if !has_id {
            self.without_id.insert(index);
        }
        self.tasks.push(task);
    }
}

/// The flow's fields but `tasks`, then its tasks: every problem, in the document's field order.
fn decode_root(root: &Map<String, Value>, tasks: TasksField) -> Decoded {
    let mut d = Decoder::default();
    let mut spec = empty_spec();
    d.unknown_fields(root, FLOW_FIELDS, "", None);
    match root.get("spec_version") {
        None => d.push(
            ProblemKind::MissingField,
            "spec_version",
            None,
            format!("add \"spec_version\": {SPEC_VERSION}"),
        ),
        Some(v) if v.as_u64() == Some(SPEC_VERSION) => {}
        Some(v) => d.push(
            ProblemKind::UnsupportedVersion,
            "spec_version",
            None,
            format!("this Dagy reads spec_version {SPEC_VERSION} only, got {v}"),
        ),
    }
    if let Some(name) = d.required_string(root, "name", "name", None) {
        spec.name = name;
    }
    match root.get("parameters") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => spec.parameters = map.clone(),
        Some(other) => d.push(
            ProblemKind::WrongType,
            "parameters",
            None,
            format!(
                "parameters must be an object of default values, got {}",
                type_name(other)
            ),
        ),
    }
    let mut without_id = BTreeSet::new();
    match tasks {
        TasksField::Missing => d.push(
            ProblemKind::MissingField,
            "tasks",
            None,
            "add a \"tasks\" list with at least one task".into(),
        ),
        TasksField::List(list) => {
            d.problems.extend(list.decoder.problems);
            spec.tasks = list.tasks;
            without_id = list.without_id;
        }
        TasksField::Other(type_name) => d.push(
            ProblemKind::WrongType,
            "tasks",
            None,
            format!("tasks must be a list of task objects, got {type_name}"),
        ),
    }
    d.finish(spec, without_id)
}

/// Reads a flow object: its `tasks` through [`TasksVisitor`], its other fields as values.
struct RootVisitor;

impl<'de> serde::de::Visitor<'de> for RootVisitor {
    type Value = (Map<String, Value>, TasksField);

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a flow object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut root = Map::new();
        let mut tasks = TasksField::Missing;
        while let Some(key) = map.next_key::<String>()? {
            if key == "tasks" {
                tasks = map.next_value_seed(TasksVisitor)?;
                // Keep the key, so the field order of problems and of `unknown_fields` holds.
                root.insert(key, Value::Null);
            } else {
                root.insert(key, map.next_value()?);
            }
        }
        Ok((root, tasks))
    }
}

/// Reads a flow's `tasks`: a list decoded task by task, or what else it is.
struct TasksVisitor;

impl<'de> serde::de::DeserializeSeed<'de> for TasksVisitor {
    type Value = TasksField;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<TasksField, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TasksVisitor {
    type Value = TasksField;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of tasks")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<TasksField, A::Error> {
        let mut list = TaskList::default();
        while let Some(item) = seq.next_element::<Value>()? {
            list.push(item);
        }
        Ok(TasksField::List(list))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<TasksField, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(TasksField::Other("an object"))
    }

    fn visit_str<E>(self, _: &str) -> Result<TasksField, E> {
        Ok(TasksField::Other("a string"))
    }

    fn visit_bool<E>(self, _: bool) -> Result<TasksField, E> {
        Ok(TasksField::Other("a boolean"))
    }

    fn visit_i64<E>(self, _: i64) -> Result<TasksField, E> {
        Ok(TasksField::Other("a number"))
    }

    fn visit_u64<E>(self, _: u64) -> Result<TasksField, E> {
        Ok(TasksField::Other("a number"))
    }

    fn visit_f64<E>(self, _: f64) -> Result<TasksField, E> {
        Ok(TasksField::Other("a number"))
    }

    fn visit_unit<E>(self) -> Result<TasksField, E> {
        Ok(TasksField::Other("null"))
    }
}

#[derive(Default)]
struct Decoder {
    problems: Vec<Problem>,
}

impl Decoder {
    fn finish(self, spec: FlowSpec, tasks_without_id: BTreeSet<usize>) -> Decoded {
        Decoded {
            spec,
            problems: self.problems,
            tasks_without_id,
        }
    }

    fn push(&mut self, kind: ProblemKind, path: &str, task: Option<&str>, message: String) {
        self.problems.push(Problem {
            kind,
            path: path.to_string(),
            task: task.map(str::to_string),
            message,
        });
    }

    fn unknown_fields(
        &mut self,
        object: &Map<String, Value>,
        known: &[&str],
        prefix: &str,
        task: Option<&str>,
    ) {
        for key in object.keys() {
            if known.contains(&key.as_str()) {
                continue;
            }
            let hint = match closest(key, known) {
                Some(near) => format!("; did you mean \"{near}\"?"),
                None => format!("; known fields: {}", known.join(", ")),
            };
            self.push(
                ProblemKind::UnknownField,
                &field_path(prefix, key),
                task,
                format!("unknown field {}{hint}", quoted(key)),
            );
        }
    }

    fn required_string(
        &mut self,
        object: &Map<String, Value>,
        field: &str,
        path: &str,
        task: Option<&str>,
    ) -> Option<String> {
        match object.get(field) {
            Some(Value::String(s)) => Some(s.clone()),
            None => {
                self.push(
                    ProblemKind::MissingField,
                    path,
                    task,
                    format!("\"{field}\" is required"),
                );
                None
            }
            Some(other) => {
                self.push(
                    ProblemKind::WrongType,
                    path,
                    task,
                    format!("{field} must be a string, got {}", type_name(other)),
                );
                None
            }
        }
    }

    /// Decodes one task; the flag says whether its id could be read.
    fn task(&mut self, index: usize, value: Value) -> (TaskSpec, bool) {
        let at = format!("tasks[{index}]");
        let mut task = TaskSpec::new("", "");
        let mut object = match value {
            Value::Object(object) => object,
            other => {
                self.push(
                    ProblemKind::WrongType,
                    &at,
                    None,
                    format!(
                        "each task must be an object with id and handler, got {}",
                        type_name(&other)
                    ),
                );
                return (task, false);
            }
        };
        let id = self.required_string(&object, "id", &format!("{at}.id"), None);
        let has_id = id.is_some();
        task.id = id.unwrap_or_default();
        let tid = has_id.then_some(task.id.as_str()).map(str::to_string);
        let tid = tid.as_deref();
        let field = |name: &str| format!("{at}.{name}");

        self.unknown_fields(&object, TASK_FIELDS, &format!("{at}."), tid);
        if let Some(handler) = self.required_string(&object, "handler", &field("handler"), tid) {
            task.handler = handler;
        }
        task.depends_on = self.dependencies(&object, &at, tid);
        if let Some(retries) = self.retries(&object, &at, tid) {
            task.retries = retries;
        }
        task.retry_delay_seconds = self.retry_delay(&object, &at, tid);
        task.retry_jitter_factor = self.optional_f64(&object, "retry_jitter_factor", &at, tid);
        task.timeout_seconds = self.optional_f64(&object, "timeout_seconds", &at, tid);
        task.runtime_tier = self.runtime_tier(&object, &at, tid);
        task.memory_mb = self.memory_mb(&object, &at, tid);
        // Kept as text (see `JsonText`): the parsed value is dropped with the task's JSON.
        task.args = object
            .remove("args")
            .filter(|args| !args.is_null())
            .map(JsonText::from);
        (task, has_id)
    }

    /// A task's `depends_on`: the ids it names (an entry that is not a string is a problem).
    fn dependencies(
        &mut self,
        object: &Map<String, Value>,
        at: &str,
        tid: Option<&str>,
    ) -> Vec<String> {
        let mut depends_on = Vec::new();
        match object.get("depends_on") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                // Exactly as many as named: a growing Vec keeps room for four.
                depends_on.reserve_exact(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => depends_on.push(s.clone()),
                        other => self.push(
                            ProblemKind::WrongType,
                            &format!("{at}.depends_on[{i}]"),
                            tid,
                            format!(
                                "a dependency must be a task id string, got {}",
                                type_name(other)
                            ),
                        ),
                    }
                }
            }
            Some(other) => self.push(
                ProblemKind::WrongType,
                &format!("{at}.depends_on"),
                tid,
                format!(
                    "depends_on must be a list of task ids, got {}",
                    type_name(other)
                ),
            ),
        }
        depends_on
    }

    /// A task's `retries`, when present and valid.
    fn retries(&mut self, object: &Map<String, Value>, at: &str, tid: Option<&str>) -> Option<u32> {
        let v = object.get("retries")?;
        let retries = v
            .as_u64()
            .filter(|&n| n <= u64::from(crate::validate::MAX_RETRIES))
            .and_then(|n| u32::try_from(n).ok());
        if retries.is_none() {
            self.push(
                number_kind(v),
                &format!("{at}.retries"),
                tid,
                format!(
                    "retries must be a whole number from 0 to {}, got {v}",
                    crate::validate::MAX_RETRIES
                ),
            );
        }
        retries
    }

    /// A task's `retry_delay_seconds`: one delay, or one per attempt.
    fn retry_delay(
        &mut self,
        object: &Map<String, Value>,
        at: &str,
        tid: Option<&str>,
    ) -> Option<RetryDelay> {
        match object.get("retry_delay_seconds") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64().map(RetryDelay::Fixed),
            Some(Value::Array(items)) => {
                let mut delays = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item.as_f64() {
                        Some(s) => delays.push(s),
                        None => self.push(
                            ProblemKind::WrongType,
                            &format!("{at}.retry_delay_seconds[{i}]"),
                            tid,
                            format!(
                                "each delay must be a number of seconds, got {}",
                                type_name(item)
                            ),
                        ),
                    }
                }
                Some(RetryDelay::PerAttempt(delays))
            }
            Some(other) => {
                self.push(
                    ProblemKind::WrongType,
                    &format!("{at}.retry_delay_seconds"),
                    tid,
                    format!(
                        "retry_delay_seconds must be a number or a list of numbers, got {}",
                        type_name(other)
                    ),
                );
                None
            }
        }
    }

    /// A task's `runtime_tier`, when present and a known tier name.
    fn runtime_tier(
        &mut self,
        object: &Map<String, Value>,
        at: &str,
        tid: Option<&str>,
    ) -> Option<RuntimeTier> {
        let problem = match object.get("runtime_tier") {
            None | Some(Value::Null) => return None,
            Some(Value::String(s)) => match s.parse::<RuntimeTier>() {
                Ok(tier) => return Some(tier),
                Err(e) => (ProblemKind::UnknownTier, e.to_string()),
            },
            Some(other) => (
                ProblemKind::WrongType,
                format!(
                    "runtime_tier must be a tier name string, got {}",
                    type_name(other)
                ),
            ),
        };
        self.push(problem.0, &format!("{at}.runtime_tier"), tid, problem.1);
        None
    }

    /// A task's `memory_mb`, when present and a whole number.
    fn memory_mb(
        &mut self,
        object: &Map<String, Value>,
        at: &str,
        tid: Option<&str>,
    ) -> Option<u64> {
        let v = object.get("memory_mb").filter(|v| !v.is_null())?;
        let mb = v.as_u64();
        if mb.is_none() {
            self.push(
                number_kind(v),
                &format!("{at}.memory_mb"),
                tid,
                format!("memory_mb must be a whole number of megabytes, got {v}"),
            );
        }
        mb
    }

    fn optional_f64(
        &mut self,
        object: &Map<String, Value>,
        name: &str,
        at: &str,
        tid: Option<&str>,
    ) -> Option<f64> {
        match object.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(other) => {
                self.push(
                    ProblemKind::WrongType,
                    &format!("{at}.{name}"),
                    tid,
                    format!("{name} must be a number, got {}", type_name(other)),
                );
                None
            }
        }
    }
}

/// The path of `key` under `prefix` (`tasks[0].` or empty): `tasks[0].name`, or with a key
/// that is not a plain name (empty, spaces, dots), bracket notation: `tasks[0]["a b"]`, `[""]`.
fn field_path(prefix: &str, key: &str) -> String {
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        format!("{prefix}{key}")
    } else {
        format!("{}[{}]", prefix.trim_end_matches('.'), quoted(key))
    }
}

fn quoted(key: &str) -> String {
    serde_json::to_string(key).unwrap_or_else(|_| format!("{key:?}"))
}

/// A number in the wrong range is an invalid number; anything else is the wrong type.
fn number_kind(v: &Value) -> ProblemKind {
    if v.is_number() {
        ProblemKind::InvalidNumber
    } else {
        ProblemKind::WrongType
    }
}

/// How a JSON value's type is named in messages ("a string", "a list", ...).
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The known name nearest to `word`, when it is near enough to be a likely typo.
fn closest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = if ca == *cb {
                previous
            } else {
                1 + previous.min(row[j]).min(current)
            };
            previous = current;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(v: Value) -> Vec<Problem> {
        decode(&v).problems
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let err = parse_json("{\n  \"name\": \"x\",\n  oops\n}").expect_err("not JSON");
        match err {
            Error::Syntax { line, column, .. } => assert_eq!((line, column), (3, 3)),
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn unknown_fields_are_named_with_their_path_and_a_suggestion() {
        let p = problems(json!({
            "spec_version": 1, "name": "f", "colour": "red",
            "tasks": [{"id": "a", "handler": "echo", "retires": 2}]
        }));
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].path, "colour");
        assert_eq!(p[1].path, "tasks[0].retires");
        assert_eq!(p[1].task.as_deref(), Some("a"));
        assert!(
            p[1].message.contains("did you mean \"retries\""),
            "{}",
            p[1].message
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let p = problems(json!({
            "name": 3,
            "tasks": [
                {"id": "a", "handler": "echo", "retries": -1, "runtime_tier": "huge"},
                {"handler": "echo", "timeout_seconds": "10"},
                7
            ]
        }));
        let kinds: Vec<_> = p.iter().map(|p| (p.kind, p.path.as_str())).collect();
        assert_eq!(
            kinds,
            [
                (ProblemKind::MissingField, "spec_version"),
                (ProblemKind::WrongType, "name"),
                (ProblemKind::InvalidNumber, "tasks[0].retries"),
                (ProblemKind::UnknownTier, "tasks[0].runtime_tier"),
                (ProblemKind::MissingField, "tasks[1].id"),
                (ProblemKind::WrongType, "tasks[1].timeout_seconds"),
                (ProblemKind::WrongType, "tasks[2]"),
            ]
        );
    }

    #[test]
    fn odd_field_names_get_bracket_paths_never_empty_ones() {
        let p = problems(json!({
            "spec_version": 1, "name": "f", "": 1, "a b": 2,
            "tasks": [{"id": "a", "handler": "echo", "x.y": 3}]
        }));
        let paths: Vec<_> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["[\"\"]", "[\"a b\"]", "tasks[0][\"x.y\"]"]);
        assert_eq!(
            p[0].message,
            "unknown field \"\"; known fields: spec_version, name, parameters, tasks"
        );
    }

    #[test]
    fn an_unsupported_spec_version_is_refused() {
        let p = problems(json!({"spec_version": 2, "name": "f", "tasks": []}));
        assert_eq!(p[0].kind, ProblemKind::UnsupportedVersion);
    }

    #[test]
    fn a_non_object_document_is_a_wrong_type() {
        let p = problems(json!([1, 2]));
        assert_eq!(p[0].kind, ProblemKind::WrongType);
        assert_eq!(p[0].path, "flow");
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("retires", "retries"), 2);
        assert_eq!(edit_distance("handler", "handler"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
