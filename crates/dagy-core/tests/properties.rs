//! Property tests of dagy-core's FlowSpec decoding, validation and DAG.
//!
//! - Decoding and validation never panic: on arbitrary JSON values, arbitrary (and mangled JSON)
//!   text, and "almost valid" flows whose fields mix valid and invalid values.
//! - Every error is a syntax error or an invalid flow with at least one located problem.
//! - A valid flow's run order holds every task once, after its dependencies, and each task's
//!   level is one more than its deepest dependency's.
//! - A DAG with one back-edge fails with exactly one cycle problem naming a real cycle.
//! - `FlowSpec` -> JSON -> `FlowSpec` is the identity.
//! - JSON at any depth Dagy stores reads back equal; deeper JSON is refused, never a panic.
//! - A number no run can honour (a delay or timeout over a year, a jitter factor over 1) is
//!   refused at its path, with the limit named.
//!
//! Each property runs 256 cases by default; set `PROPTEST_CASES` to change that.

use std::collections::{BTreeSet, HashMap, HashSet};

use dagy_core::backend::vars;
use dagy_core::flow::SPEC_VERSION;
use dagy_core::validate::{MAX_JITTER_FACTOR, MAX_SECONDS};
use dagy_core::{
    BackendKind, Error, Flow, FlowSpec, PlanRequest, ProblemKind, RetryDelay, RuntimeTier,
    Settings, TaskSpec, TierInputs, plan,
};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm};
use serde_json::{Map, Value, json};

// ------------------------------------------------------------------------------------------
// Checks shared by the properties.
// ------------------------------------------------------------------------------------------

/// Every error from decoding or validating a flow is a syntax error, or an invalid flow with
/// at least one problem, each located by a non-empty path.
fn check_error(err: &Error) -> Result<(), TestCaseError> {
    match err {
        // serde_json counts lines from 1 (columns from 0 at the start of a line).
        Error::Syntax { line, message, .. } => {
            prop_assert!(*line >= 1 && !message.is_empty(), "{err:?}");
        }
        Error::InvalidFlow(problems) => {
            prop_assert!(!problems.is_empty(), "an invalid flow without problems");
            for problem in problems {
                prop_assert!(
                    !problem.path.is_empty(),
                    "a problem without a path: {problem:?}"
                );
                prop_assert!(!problem.message.is_empty(), "a problem without a message");
            }
        }
        other => prop_assert!(false, "unexpected error variant: {other:?}"),
    }
    // Rendering the error must not panic either.
    prop_assert!(!err.to_string().is_empty());
    Ok(())
}

/// The DAG invariants of a validated flow, and planning it does not panic.
fn check_flow(flow: &Flow) -> Result<(), TestCaseError> {
    let n = flow.tasks().len();
    prop_assert!(n > 0, "a valid flow has tasks");

    // The order is a permutation of the task indices.
    let order = flow.order();
    prop_assert_eq!(order.len(), n);
    let mut position = vec![usize::MAX; n];
    for (p, &i) in order.iter().enumerate() {
        prop_assert!(i < n, "index {} out of range", i);
        prop_assert_eq!(
            position[i],
            usize::MAX,
            "task {} appears twice in the order",
            i
        );
        position[i] = p;
    }

    let mut ids = HashSet::new();
    for (i, task) in flow.tasks().iter().enumerate() {
        prop_assert!(ids.insert(task.id.as_str()), "duplicate id {}", task.id);
        prop_assert_eq!(flow.index_of(&task.id), Some(i));
        // The dependencies are exactly the ones the spec names.
        let named: Vec<Option<usize>> = task.depends_on.iter().map(|d| flow.index_of(d)).collect();
        let resolved: Vec<Option<usize>> = flow.dependencies(i).iter().copied().map(Some).collect();
        prop_assert_eq!(named, resolved, "dependencies of {}", task.id);
        // Every dependency runs first, and the level is 1 + the deepest dependency's.
        let mut expected_level = 0;
        for &d in flow.dependencies(i) {
            prop_assert!(
                position[d] < position[i],
                "{} runs before its dependency {}",
                task.id,
                flow.task(d).id
            );
            prop_assert!(flow.dependents(d).contains(&i));
            expected_level = expected_level.max(flow.level_of(d) + 1);
        }
        prop_assert_eq!(flow.level_of(i), expected_level, "level of {}", task.id);
    }

    // The levels group every task once, in declaration order, at its level.
    let mut seen = 0;
    for (level, members) in flow.levels().iter().enumerate() {
        prop_assert!(!members.is_empty(), "level {} is empty", level);
        prop_assert!(members.windows(2).all(|w| w[0] < w[1]));
        for &i in members {
            prop_assert_eq!(flow.level_of(i), level);
        }
        seen += members.len();
    }
    prop_assert_eq!(seen, n);

    plan_every_way(flow);
    Ok(())
}

/// Settings with every backend registered.
fn all_backends() -> Settings {
    Settings::from_lookup(|name| match name {
        vars::SFN_ROLE_ARN | vars::SFN_TASK_EXECUTOR_ARN | vars::ECS_CLUSTER_ARN => {
            Some("arn:aws:iam::123456789012:role/x".to_string())
        }
        _ => None,
    })
    .expect("complete settings")
}

/// Plans the flow with each tier request and each backend; only panics matter here.
fn plan_every_way(flow: &Flow) {
    let settings = [Settings::default(), all_backends()];
    for settings in &settings {
        let _ = plan(flow, &PlanRequest::default(), settings);
        for tier in RuntimeTier::ALL {
            for backend in std::iter::once(None).chain(BackendKind::ALL.map(Some)) {
                let request = PlanRequest {
                    tiers: TierInputs {
                        request: Some(tier),
                        ..TierInputs::default()
                    },
                    backend,
                };
                match plan(flow, &request, settings) {
                    Ok(p) => drop(p),
                    Err(e) => drop(e.to_string()),
                }
            }
        }
    }
}

/// Checks any outcome of decoding and validating.
/// Every problem of an outcome, in order, as (kind, path, message); none for a valid flow.
fn problems_of(outcome: &Result<Flow, Error>) -> Vec<(ProblemKind, String, String)> {
    match outcome {
        Ok(_) => Vec::new(),
        Err(e) => e
            .problems()
            .iter()
            .map(|p| (p.kind, p.path.clone(), p.message.clone()))
            .collect(),
    }
}

fn check_outcome(outcome: &Result<Flow, Error>) -> Result<(), TestCaseError> {
    match outcome {
        Ok(flow) => check_flow(flow),
        Err(err) => check_error(err),
    }
}

/// 256 cases unless `PROPTEST_CASES` says otherwise (`ProptestConfig::default()` reads the
/// `PROPTEST_*` variables). The default ChaCha generator is slow in an unoptimised test build
/// and dominated the run time, so xorshift is used unless `PROPTEST_RNG_ALGORITHM` is set.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_RNG_ALGORITHM").is_none() {
        config.rng_algorithm = RngAlgorithm::XorShift;
    }
    config
}

// ------------------------------------------------------------------------------------------
// Arbitrary JSON and text.
// ------------------------------------------------------------------------------------------

const FLOW_KEYS: &[&str] = dagy_core::decode::FLOW_FIELDS;
const TASK_KEYS: &[&str] = dagy_core::decode::TASK_FIELDS;

fn arb_number(floats: BoxedStrategy<f64>) -> impl Strategy<Value = Value> {
    prop_oneof![
        (-3i64..=3).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Non-finite floats become null, as serde_json has no number for them.
        floats.prop_map(Value::from),
    ]
}

/// Floats with at most 10 significant digits: serde_json reads their shortest text back
/// exactly even without its `float_roundtrip` feature (see `any_float_survives_a_round_trip`).
fn short_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        (0u32..5000).prop_map(f64::from),
        (0u32..1000).prop_map(|n| f64::from(n) / 8.0),
        (0u64..10_000_000_000).prop_map(|n| n as f64 / 1000.0),
    ]
}

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(TASK_KEYS).prop_map(str::to_string),
        Just("lambda:f".to_string()),
        "[a-z.:_ -]{0,8}",
        any::<String>(),
    ]
}

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(FLOW_KEYS).prop_map(str::to_string),
        3 => prop::sample::select(TASK_KEYS).prop_map(str::to_string),
        1 => arb_string(),
    ]
}

/// Any JSON value, at most 5 levels deep, objects keyed mostly by FlowSpec field names.
fn arb_json() -> impl Strategy<Value = Value> {
    arb_json_with(any::<f64>().boxed())
}

/// [`arb_json`] with only [`short_f64`] floats, for exact round trips.
fn arb_json_short_floats() -> impl Strategy<Value = Value> {
    arb_json_with(prop_oneof![short_f64(), short_f64().prop_map(|f| -f)].boxed())
}

fn arb_json_with(floats: BoxedStrategy<f64>) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        arb_number(floats),
        arb_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((arb_key(), inner), 0..8)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// One edit of a text, at a position relative to its length: delete or insert a character, or
/// cut the text short.
#[derive(Debug, Clone)]
enum Edit {
    Delete(prop::sample::Index),
    Insert(prop::sample::Index, char),
    Truncate(prop::sample::Index),
}

fn arb_edit() -> impl Strategy<Value = Edit> {
    let chars = prop_oneof![
        prop::sample::select(vec![
            '{', '}', '[', ']', '"', ',', ':', '\\', '-', '1', 'e', ' '
        ]),
        any::<char>(),
    ];
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Edit::Delete),
        (any::<prop::sample::Index>(), chars).prop_map(|(i, c)| Edit::Insert(i, c)),
        any::<prop::sample::Index>().prop_map(Edit::Truncate),
    ]
}

fn apply_edits(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for edit in edits {
        match edit {
            Edit::Delete(at) if !chars.is_empty() => {
                chars.remove(at.index(chars.len()));
            }
            Edit::Insert(at, c) => chars.insert(at.index(chars.len() + 1), *c),
            Edit::Truncate(at) if !chars.is_empty() => chars.truncate(at.index(chars.len())),
            _ => {}
        }
    }
    chars.into_iter().collect()
}

// ------------------------------------------------------------------------------------------
// "Almost valid" flows: every field a mix of valid and invalid values.
// ------------------------------------------------------------------------------------------

/// How a generated flow is shaped: how often a field is corrupted (per mille), whether ids are
/// unique, and whether dependencies point only at earlier tasks (no cycles).
#[derive(Debug, Clone, Copy)]
struct Knobs {
    corrupt_per_mille: u32,
    unique_ids: bool,
    forward_deps: bool,
}

fn arb_knobs() -> impl Strategy<Value = Knobs> {
    (
        prop::sample::select(vec![0u32, 0, 2, 10, 50, 300]),
        prop::bool::weighted(0.7),
        prop::bool::weighted(0.7),
    )
        .prop_map(|(corrupt_per_mille, unique_ids, forward_deps)| Knobs {
            corrupt_per_mille,
            unique_ids,
            forward_deps,
        })
}

/// A field that is valid, or (with the knob's probability) invalid; `None` leaves it out.
fn field(
    knobs: Knobs,
    valid: impl Strategy<Value = Option<Value>> + 'static,
    invalid: impl Strategy<Value = Option<Value>> + 'static,
) -> BoxedStrategy<Option<Value>> {
    let p = f64::from(knobs.corrupt_per_mille) / 1000.0;
    (prop::bool::weighted(p), valid, invalid)
        .prop_map(|(corrupt, valid, invalid)| if corrupt { invalid } else { valid })
        .boxed()
}

fn opt_values(list: Vec<Option<Value>>) -> impl Strategy<Value = Option<Value>> {
    prop::sample::select(list)
}

fn non_negative_f64() -> impl Strategy<Value = f64> {
    prop_oneof![short_f64(), 0.0f64..1e6]
}

/// The raw parts of one task, turned into a JSON object by [`task_value`].
#[derive(Debug, Clone)]
struct RawTask {
    /// Not an object at all: this value stands for the task.
    shape: Option<Value>,
    /// `None`: the generated id; `Some(None)`: no id; `Some(Some(v))`: `v` as the id.
    id: Option<Option<Value>>,
    /// Raw picks of the tasks this one depends on (reduced modulo the task count).
    deps: Vec<usize>,
    /// A corrupted `depends_on` that replaces the generated one.
    deps_override: Option<Value>,
    /// The other fields; `None` leaves a field out.
    fields: Vec<(&'static str, Option<Value>)>,
    /// An unknown field.
    unknown: Option<(String, Value)>,
}

/// The id of task `i` under the knobs: unique (`t<i>`) or from a small alphabet.
fn id_of(knobs: Knobs, i: usize) -> String {
    if knobs.unique_ids {
        format!("t{i}")
    } else {
        ["a", "b", "c", "d", "e"][i % 5].to_string()
    }
}

fn arb_raw_task(knobs: Knobs) -> impl Strategy<Value = RawTask> {
    // Some(bad) replaces the generated id; Some(None) leaves the id out.
    let id = (
        prop::bool::weighted(f64::from(knobs.corrupt_per_mille) / 1000.0),
        opt_values(vec![
            None,
            Some(json!("")),
            Some(json!("has space")),
            Some(json!("x".repeat(65))),
            Some(json!("ü")),
            Some(json!(5)),
            Some(Value::Null),
        ]),
    )
        .prop_map(|(corrupt, bad)| corrupt.then_some(bad));
    let handler = field(
        knobs,
        opt_values(vec![
            Some(json!("echo")),
            Some(json!("lambda:fn-1")),
            Some(json!(
                "lambda:arn:aws:lambda:us-east-1:123456789012:function:f"
            )),
        ]),
        opt_values(vec![
            None,
            Some(json!("")),
            Some(json!("lambda:")),
            Some(json!("lambda:bad fn")),
            Some(json!(3)),
        ]),
    );
    let deps_override = field(
        knobs,
        Just(None),
        opt_values(vec![
            Some(json!("a")),
            Some(json!({"a": 1})),
            Some(json!(["a", 3, null])),
            Some(json!(["ghost"])),
            Some(json!(["a", "a"])),
        ]),
    );
    let retries = field(
        knobs,
        opt_values(vec![
            None,
            Some(json!(0)),
            Some(json!(3)),
            Some(json!(dagy_core::validate::MAX_RETRIES)),
            Some(json!(dagy_core::validate::MAX_RETRIES + 1)),
        ]),
        opt_values(vec![
            Some(json!(-1)),
            Some(json!(1.5)),
            Some(json!("3")),
            Some(json!(u64::from(u32::MAX) + 1)),
            Some(Value::Null),
        ]),
    );
    let delay = field(
        knobs,
        prop_oneof![
            Just(None),
            non_negative_f64().prop_map(|s| Some(json!(s))),
            prop::collection::vec(non_negative_f64(), 1..4).prop_map(|l| Some(json!(l))),
            Just(Some(Value::Null)),
        ],
        opt_values(vec![
            Some(json!(-1)),
            Some(json!([])),
            Some(json!([1, "x"])),
            Some(json!([-2.5])),
            Some(json!("5")),
            Some(json!({})),
        ]),
    );
    let jitter = field(
        knobs,
        prop_oneof![Just(None), (0.0f64..1.0).prop_map(|f| Some(json!(f)))],
        opt_values(vec![
            Some(json!(-0.1)),
            Some(json!("0.2")),
            Some(json!([0.1])),
        ]),
    );
    let timeout = field(
        knobs,
        prop_oneof![
            Just(None),
            (1u32..7200).prop_map(|t| Some(json!(t))),
            (0.5f64..5000.0).prop_map(|t| Some(json!(t))),
        ],
        opt_values(vec![
            Some(json!(0)),
            Some(json!(-5)),
            Some(json!("10")),
            Some(json!(true)),
        ]),
    );
    let tier = field(
        knobs,
        prop_oneof![
            Just(None),
            prop::sample::select(RuntimeTier::ALL.to_vec()).prop_map(|t| Some(json!(t.as_str()))),
        ],
        opt_values(vec![
            Some(json!("huge")),
            Some(json!("Small")),
            Some(json!(3)),
            Some(json!("")),
        ]),
    );
    let memory = field(
        knobs,
        prop_oneof![
            Just(None),
            (1u64..20_000).prop_map(|m| Some(json!(m))),
            Just(Some(json!(u64::MAX))),
        ],
        opt_values(vec![
            Some(json!(0)),
            Some(json!(-1)),
            Some(json!(1.5)),
            Some(json!("128")),
            Some(json!(1e6)),
        ]),
    );
    let args = prop_oneof![
        3 => Just(None),
        1 => arb_json().prop_map(Some),
    ];
    let unknown = field(
        knobs,
        Just(None),
        (
            prop::sample::select(vec!["retires", "colour", "", "idd", "Handler"]),
            prop::sample::select(vec![json!(2), json!("red"), json!(null), json!({"a": []})]),
        )
            .prop_map(|(k, v)| Some(json!({ k: v }))),
    );
    let shape = field(
        knobs,
        Just(None),
        opt_values(vec![Some(json!(7)), Some(json!("task")), Some(json!([]))]),
    );
    (
        (shape, id, handler),
        prop::collection::vec(any::<usize>(), 0..4),
        deps_override,
        (retries, delay, jitter, timeout, tier, memory, args),
        unknown,
    )
        .prop_map(
            |(
                (shape, id, handler),
                deps,
                deps_override,
                (retries, delay, jitter, timeout, tier, memory, args),
                unknown,
            )| RawTask {
                shape,
                id,
                deps,
                deps_override,
                fields: vec![
                    ("handler", handler),
                    ("retries", retries),
                    ("retry_delay_seconds", delay),
                    ("retry_jitter_factor", jitter),
                    ("timeout_seconds", timeout),
                    ("runtime_tier", tier),
                    ("memory_mb", memory),
                    ("args", args),
                ],
                unknown: unknown.and_then(|o| {
                    o.as_object()
                        .and_then(|m| m.iter().next().map(|(k, v)| (k.clone(), v.clone())))
                }),
            },
        )
}

/// Turns the raw parts of task `i` of `n` into JSON.
fn task_value(knobs: Knobs, i: usize, n: usize, raw: RawTask) -> Value {
    if let Some(shape) = raw.shape {
        return shape;
    }
    let mut task = Map::new();
    // The generated id, a corrupted one, or none at all.
    match raw.id {
        None => {
            task.insert("id".into(), json!(id_of(knobs, i)));
        }
        Some(Some(bad)) => {
            task.insert("id".into(), bad);
        }
        Some(None) => {}
    }
    match raw.deps_override {
        Some(deps) => {
            task.insert("depends_on".into(), deps);
        }
        None => {
            let mut deps: Vec<String> = Vec::new();
            for d in raw.deps {
                let target = if knobs.forward_deps {
                    if i == 0 {
                        continue;
                    }
                    d % i
                } else {
                    d % n
                };
                let id = id_of(knobs, target);
                if !deps.contains(&id) {
                    deps.push(id);
                }
            }
            if !deps.is_empty() {
                task.insert("depends_on".into(), json!(deps));
            }
        }
    }
    for (name, value) in raw.fields {
        if let Some(value) = value {
            task.insert(name.into(), value);
        }
    }
    if let Some((k, v)) = raw.unknown {
        task.insert(k, v);
    }
    Value::Object(task)
}

fn arb_almost_valid_flow() -> impl Strategy<Value = Value> {
    arb_knobs().prop_flat_map(|knobs| {
        let version = field(
            knobs,
            Just(Some(json!(SPEC_VERSION))),
            opt_values(vec![
                None,
                Some(json!(2)),
                Some(json!("1")),
                Some(json!(1.0)),
                Some(json!(-1)),
                Some(Value::Null),
            ]),
        );
        let name = field(
            knobs,
            prop_oneof![
                Just(Some(json!("flow"))),
                "[a-z][a-z -]{0,10}".prop_map(|s| Some(json!(s)))
            ],
            opt_values(vec![
                None,
                Some(json!("")),
                Some(json!("   ")),
                Some(json!(7)),
            ]),
        );
        let parameters = field(
            knobs,
            prop_oneof![
                Just(None),
                Just(Some(json!({}))),
                Just(Some(Value::Null)),
                arb_json().prop_map(|v| Some(json!({"p": v}))),
            ],
            opt_values(vec![Some(json!([1])), Some(json!("p=1"))]),
        );
        let tasks_shape = field(
            knobs,
            Just(None),
            opt_values(vec![
                Some(Value::Null),
                Some(json!("tasks")),
                Some(json!({"id": "a"})),
            ]),
        );
        let unknown = field(
            knobs,
            Just(None),
            opt_values(vec![
                Some(json!("colour")),
                Some(json!("task")),
                Some(json!("")),
            ]),
        );
        let count = prop_oneof![1 => Just(0usize), 9 => 1usize..30];
        (
            version,
            name,
            parameters,
            tasks_shape,
            unknown,
            count.prop_flat_map(move |n| prop::collection::vec(arb_raw_task(knobs), n)),
        )
            .prop_map(
                move |(version, name, parameters, tasks_shape, unknown, raw)| {
                    let mut flow = Map::new();
                    for (key, value) in [
                        ("spec_version", version),
                        ("name", name),
                        ("parameters", parameters),
                    ] {
                        if let Some(value) = value {
                            flow.insert(key.into(), value);
                        }
                    }
                    let n = raw.len();
                    let tasks = match tasks_shape {
                        Some(shape) => shape,
                        None => Value::Array(
                            raw.into_iter()
                                .enumerate()
                                .map(|(i, r)| task_value(knobs, i, n, r))
                                .collect(),
                        ),
                    };
                    flow.insert("tasks".into(), tasks);
                    if let Some(Value::String(key)) = unknown {
                        flow.insert(key, json!(true));
                    }
                    Value::Object(flow)
                },
            )
    })
}

// ------------------------------------------------------------------------------------------
// Valid DAGs, and valid specs for the round trip.
// ------------------------------------------------------------------------------------------

/// A DAG in topological index space, declared in a shuffled order.
#[derive(Debug, Clone)]
struct Dag {
    /// Unique, valid ids, by topological index.
    ids: Vec<String>,
    /// `deps[i]`: the topological indices task `i` depends on (all `< i`, distinct).
    deps: Vec<Vec<usize>>,
    /// The declaration order: a permutation of the topological indices.
    declared: Vec<usize>,
}

impl Dag {
    /// The spec, every task with default options.
    fn spec(&self) -> FlowSpec {
        FlowSpec {
            spec_version: SPEC_VERSION,
            name: "dag".into(),
            parameters: Map::new(),
            tasks: self
                .declared
                .iter()
                .map(|&t| {
                    let mut task = TaskSpec::new(self.ids[t].clone(), "echo");
                    task.depends_on = self.deps[t].iter().map(|&d| self.ids[d].clone()).collect();
                    task
                })
                .collect(),
        }
    }

    /// The tasks `target` depends on, directly or not, and `target` itself.
    fn ancestors_and_self(&self, target: usize) -> Vec<usize> {
        let mut marked = BTreeSet::from([target]);
        let mut stack = vec![target];
        while let Some(t) = stack.pop() {
            for &d in &self.deps[t] {
                if marked.insert(d) {
                    stack.push(d);
                }
            }
        }
        marked.into_iter().collect()
    }
}

fn arb_dag(max_tasks: usize) -> impl Strategy<Value = Dag> {
    (1..=max_tasks, "[A-Za-z_-]{0,6}")
        .prop_flat_map(|(n, prefix)| {
            (
                Just(prefix),
                prop::collection::vec(prop::collection::vec(any::<usize>(), 0..=3), n),
                prop::collection::vec("[a-z]{0,3}", n),
                Just((0..n).collect::<Vec<usize>>()).prop_shuffle(),
            )
        })
        .prop_map(|(prefix, raw, suffixes, declared)| {
            // prefix (no digits, no '.') + index + '.' + suffix: unique, 1 to 64 characters.
            let ids = suffixes
                .iter()
                .enumerate()
                .map(|(i, s)| format!("{prefix}{i}.{s}"))
                .collect();
            let deps = raw
                .into_iter()
                .enumerate()
                .map(|(i, picks)| {
                    let mut deps: Vec<usize> = Vec::new();
                    if i > 0 {
                        for p in picks {
                            if !deps.contains(&(p % i)) {
                                deps.push(p % i);
                            }
                        }
                    }
                    deps
                })
                .collect();
            Dag {
                ids,
                deps,
                declared,
            }
        })
}

/// Which floats a generated valid spec holds.
#[derive(Debug, Clone, Copy)]
enum Floats {
    /// [`short_f64`] only.
    Short,
    /// Any finite float, tiny and huge magnitudes included.
    Any,
}

impl Floats {
    /// Seconds validation accepts: up to [`MAX_SECONDS`], the limit itself included.
    fn seconds(self) -> BoxedStrategy<f64> {
        self.non_negative().prop_map(|f| f.min(MAX_SECONDS)).boxed()
    }

    /// A jitter factor validation accepts: in `[0, MAX_JITTER_FACTOR]`, tiny values included.
    fn jitter(self) -> BoxedStrategy<f64> {
        self.non_negative()
            .prop_map(|f| {
                if f <= MAX_JITTER_FACTOR {
                    f
                } else {
                    MAX_JITTER_FACTOR / f
                }
            })
            .boxed()
    }

    fn non_negative(self) -> BoxedStrategy<f64> {
        match self {
            Floats::Short => short_f64().boxed(),
            Floats::Any => prop_oneof![
                short_f64(),
                any::<f64>().prop_map(|f| if f.is_finite() { f.abs() } else { 1.0 }),
            ]
            .boxed(),
        }
    }

    fn json(self) -> BoxedStrategy<Value> {
        match self {
            Floats::Short => arb_json_short_floats().boxed(),
            Floats::Any => arb_json().boxed(),
        }
    }
}

fn arb_retry_delay(floats: Floats) -> impl Strategy<Value = Option<RetryDelay>> {
    prop_oneof![
        Just(None),
        floats.seconds().prop_map(|s| Some(RetryDelay::Fixed(s))),
        prop::collection::vec(floats.seconds(), 1..5).prop_map(|l| Some(RetryDelay::PerAttempt(l))),
    ]
}

/// The options of one task of a generated valid spec.
#[derive(Debug, Clone)]
struct TaskOptions {
    handler: String,
    args: Value,
    retries: u32,
    delay: Option<RetryDelay>,
    jitter: Option<f64>,
    timeout: Option<f64>,
    tier: Option<RuntimeTier>,
    memory: Option<u64>,
}

impl TaskOptions {
    fn apply(&self, task: &mut TaskSpec) {
        task.handler = self.handler.clone();
        task.args = (!self.args.is_null()).then(|| self.args.clone().into());
        task.retries = self.retries;
        task.retry_delay_seconds = self.delay.clone();
        task.retry_jitter_factor = self.jitter;
        task.timeout_seconds = self.timeout;
        task.runtime_tier = self.tier;
        task.memory_mb = self.memory;
    }
}

fn arb_task_options(floats: Floats) -> impl Strategy<Value = TaskOptions> {
    (
        prop_oneof![
            Just("echo".to_string()),
            "[a-z_]{1,12}",
            "lambda:[A-Za-z0-9_-]{1,20}",
            any::<String>().prop_filter("non-empty and not lambda:", |s| {
                !s.is_empty() && !s.starts_with("lambda:")
            }),
        ],
        prop_oneof![3 => Just(Value::Null), 1 => floats.json()],
        prop_oneof![Just(0u32), 1u32..10, 0..=dagy_core::validate::MAX_RETRIES],
        arb_retry_delay(floats),
        prop::option::of(floats.jitter()),
        prop::option::of(floats.seconds().prop_map(|t| if t > 0.0 { t } else { 1.0 })),
        prop::option::of(prop::sample::select(RuntimeTier::ALL.to_vec())),
        prop::option::of(1u64..=u64::MAX),
    )
        .prop_map(
            |(handler, args, retries, delay, jitter, timeout, tier, memory)| TaskOptions {
                handler,
                args,
                retries,
                delay,
                jitter,
                timeout,
                tier,
                memory,
            },
        )
}

/// A valid spec with every option exercised (no closure delays: they have no JSON form).
fn arb_valid_spec(floats: Floats) -> impl Strategy<Value = FlowSpec> {
    arb_dag(25).prop_flat_map(move |dag| {
        let n = dag.ids.len();
        (
            Just(dag),
            "[^\\s][^\\n]{0,15}|flow",
            prop_oneof![
                2 => Just(Map::new()),
                1 => prop::collection::vec(("[a-z_]{1,8}", floats.json()), 1..4)
                    .prop_map(|pairs| pairs.into_iter().collect::<Map<String, Value>>()),
            ],
            prop::collection::vec(arb_task_options(floats), n),
        )
            .prop_map(|(dag, name, parameters, options)| {
                let mut spec = dag.spec();
                spec.name = name;
                spec.parameters = parameters;
                for (task, options) in spec.tasks.iter_mut().zip(&options) {
                    options.apply(task);
                }
                spec
            })
    })
}

/// A DAG plus one back-edge: `ancestor` is made to depend on `target`, which already depends
/// on `ancestor` (or is it: a self-dependency). Returns the spec and its dependency edges.
fn arb_cyclic_spec() -> impl Strategy<Value = (FlowSpec, HashSet<(String, String)>)> {
    (
        arb_dag(30),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(mut dag, pick_target, pick_ancestor)| {
            let target = pick_target.index(dag.ids.len());
            let candidates = dag.ancestors_and_self(target);
            let ancestor = candidates[pick_ancestor.index(candidates.len())];
            dag.deps[ancestor].push(target);
            let spec = dag.spec();
            let edges = spec
                .tasks
                .iter()
                .flat_map(|t| t.depends_on.iter().map(|d| (d.clone(), t.id.clone())))
                .collect();
            (spec, edges)
        })
}

/// The task ids of the cycle printed in a cycle problem's message: `a -> b -> a`.
fn cycle_path(message: &str) -> Option<Vec<String>> {
    let start = message.find("cycle: ")? + "cycle: ".len();
    let rest = &message[start..];
    let end = rest.find(';')?;
    Some(rest[..end].split(" -> ").map(str::to_string).collect())
}

// ------------------------------------------------------------------------------------------
// The properties.
// ------------------------------------------------------------------------------------------

/// A field set to a number past its limit, as `(field, JSON value, path suffix)`.
fn arb_out_of_range() -> impl Strategy<Value = (&'static str, Value, &'static str)> {
    let past = |limit: f64| {
        prop_oneof![
            Just(limit * 2.0),
            Just(1e300),
            Just(f64::MAX),
            (limit * (1.0 + 1e-9))..1e308,
        ]
    };
    prop_oneof![
        past(MAX_SECONDS).prop_map(|v| ("retry_delay_seconds", json!(v), "retry_delay_seconds")),
        past(MAX_SECONDS).prop_map(|v| (
            "retry_delay_seconds",
            json!([0, v]),
            "retry_delay_seconds[1]"
        )),
        past(MAX_SECONDS).prop_map(|v| ("timeout_seconds", json!(v), "timeout_seconds")),
        past(MAX_JITTER_FACTOR).prop_map(|v| (
            "retry_jitter_factor",
            json!(v),
            "retry_jitter_factor"
        )),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Depth is measured alike on the text and on the value, and whatever nests no deeper than
    /// Dagy reads comes back equal (what a store accepted always reads back); deeper is an
    /// error, never a panic.
    #[test]
    fn any_value_at_any_depth_reads_back_or_is_refused(value in arb_json(), wraps in 0usize..700) {
        use dagy_core::json::{MAX_DOCUMENT_DEPTH, depth, from_str, text_depth};
        let nested = (0..wraps).fold(value, |inner, i| {
            if i % 2 == 0 { json!([inner]) } else { json!({"k": inner}) }
        });
        let text = nested.to_string();
        prop_assert_eq!(text_depth(&text), depth(&nested));
        let back = from_str::<Value>(&text);
        if depth(&nested) <= MAX_DOCUMENT_DEPTH {
            prop_assert_eq!(back.expect("reads back"), nested);
        } else {
            prop_assert!(back.is_err());
        }
    }

    /// A delay, timeout or jitter factor past its limit is one problem at its path that names
    /// the limit; validation never accepts what the engine cannot wait for.
    #[test]
    fn numbers_past_their_limits_are_refused_naming_the_limit(
        (field, value, path) in arb_out_of_range(),
    ) {
        let flow = json!({"spec_version": 1, "name": "f", "tasks": [
            {"id": "a", "handler": "echo", "retry_jitter_factor": 0.5, field: value}
        ]});
        let err = Flow::from_value(&flow, None).expect_err("out of range");
        let problems = err.problems();
        prop_assert_eq!(problems.len(), 1, "{}", err);
        prop_assert_eq!(&problems[0].path, &format!("tasks[0].{path}"));
        prop_assert!(problems[0].message.contains("at most"), "{}", problems[0].message);
    }

    /// Any JSON value: no panic, and a well-formed outcome.
    #[test]
    fn any_json_value_is_decoded_without_panic(value in arb_json()) {
        check_outcome(&Flow::from_value(&value, None))?;
        // The same value as a flow's task list reaches the task decoder.
        let wrapped = json!({"spec_version": 1, "name": "f", "tasks": [value.clone()]});
        check_outcome(&Flow::from_value(&wrapped, None))?;
        // As the flow's `tasks`, and as a whole document: the streaming text decoder finds the
        // same problems, with the same words, as the decoder of a parsed value.
        let as_tasks = json!({"spec_version": 1, "name": "f", "tasks": value.clone()});
        for document in [&value, &wrapped, &as_tasks] {
            let text = serde_json::to_string(document).expect("a Value serializes");
            prop_assert_eq!(
                problems_of(&Flow::from_value(document, None)),
                problems_of(&Flow::from_json(&text, None))
            );
        }
    }

    /// Any text: no panic, and a well-formed outcome.
    #[test]
    fn any_text_is_parsed_without_panic(text in any::<String>()) {
        check_outcome(&Flow::from_json(&text, None))?;
    }

    /// JSON text of a flow-like document, edited a little: no panic, a well-formed outcome.
    #[test]
    fn mangled_flow_text_is_parsed_without_panic(
        value in arb_almost_valid_flow(),
        edits in prop::collection::vec(arb_edit(), 0..4),
    ) {
        let text = serde_json::to_string(&value).expect("a Value serializes");
        check_outcome(&Flow::from_json(&apply_edits(&text, &edits), None))?;
    }

    /// Almost valid flows: no panic, well-formed outcome, and the text and value paths agree.
    #[test]
    fn almost_valid_flows_are_validated_without_panic(value in arb_almost_valid_flow()) {
        let outcome = Flow::from_value(&value, None);
        check_outcome(&outcome)?;
        // Through text, the same problems are found (messages may differ in a float's last
        // digit: serde_json reads floats lossily without its `float_roundtrip` feature).
        let text = serde_json::to_string_pretty(&value).expect("a Value serializes");
        let from_text = Flow::from_json(&text, None);
        let located = |r: &Result<Flow, Error>| -> Option<Vec<(ProblemKind, String)>> {
            r.as_ref().err().map(|e| e.problems().iter().map(|p| (p.kind, p.path.clone())).collect())
        };
        prop_assert_eq!(located(&outcome), located(&from_text));
        // A catalog only adds problems.
        let catalog = ["echo"];
        check_outcome(&Flow::from_value(&value, Some(&catalog)))?;
    }

    /// A random DAG, declared in any order, validates, and its order and levels are right.
    #[test]
    fn a_valid_dag_is_ordered_and_levelled(dag in arb_dag(40)) {
        let spec = dag.spec();
        let flow = spec.clone().validate(None).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(flow.spec(), &spec);
        check_flow(&flow)?;
        // The same DAG through JSON gives the same order.
        let text = serde_json::to_string(&spec).expect("serializable");
        let parsed = Flow::from_json(&text, None).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed.order(), flow.order());
    }

    /// One back-edge: exactly one problem, a cycle, whose printed path is a real cycle.
    #[test]
    fn a_back_edge_is_reported_as_a_real_cycle((spec, edges) in arb_cyclic_spec()) {
        let err = spec.clone().validate(None).expect_err("a cycle is invalid");
        let problems = err.problems();
        prop_assert_eq!(problems.len(), 1, "{}", err);
        let problem = &problems[0];
        prop_assert_eq!(problem.kind, ProblemKind::Cycle);
        let path = cycle_path(&problem.message);
        prop_assert!(path.is_some(), "no path in {:?}", problem.message);
        let path = path.unwrap_or_default();
        prop_assert!(path.len() >= 2, "{:?}", path);
        prop_assert_eq!(path.first(), path.last(), "the path does not close: {:?}", path);
        for pair in path.windows(2) {
            prop_assert!(
                edges.contains(&(pair[0].clone(), pair[1].clone())),
                "{} -> {} is not an edge (path {:?})", pair[0], pair[1], path
            );
        }
        // A simple cycle: no task twice but the closing one.
        let inner: HashSet<&String> = path[1..].iter().collect();
        prop_assert_eq!(inner.len(), path.len() - 1, "{:?}", path);
        // The problem points at the first task of the path.
        let index: HashMap<&str, usize> =
            spec.tasks.iter().enumerate().map(|(i, t)| (t.id.as_str(), i)).collect();
        let first = &path[0];
        prop_assert_eq!(problem.task.as_deref(), Some(first.as_str()));
        prop_assert_eq!(&problem.path, &format!("tasks[{}].depends_on", index[first.as_str()]));
        // The JSON path reports the same.
        let text = serde_json::to_string(&spec).expect("serializable");
        prop_assert_eq!(Flow::from_json(&text, None).err(), Some(err));
    }

    /// FlowSpec -> JSON -> FlowSpec is the identity for valid specs (floats of at most 10
    /// significant digits).
    #[test]
    fn a_valid_spec_survives_a_json_round_trip(spec in arb_valid_spec(Floats::Short)) {
        check_round_trip(spec)?;
    }

    /// The same with any finite float (the workspace turns on serde_json's `float_roundtrip`;
    /// without it about 3 floats in 10 came back 1 ulp off).
    #[test]
    fn a_valid_spec_with_any_float_survives_a_json_round_trip(
        spec in arb_valid_spec(Floats::Any),
    ) {
        check_round_trip(spec)?;
    }
}

fn check_round_trip(spec: FlowSpec) -> Result<(), TestCaseError> {
    let text = serde_json::to_string(&spec).expect("a spec without closures serializes");
    let back: FlowSpec =
        serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
    prop_assert_eq!(&back, &spec, "{}", text);
    let flow = spec
        .validate(None)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    check_flow(&flow)
}

// ------------------------------------------------------------------------------------------
// Regression tests for the two issues the properties above found (both fixed).
// ------------------------------------------------------------------------------------------

/// A top-level field named "" is reported with the empty path (found by the properties).
#[test]
fn an_unknown_field_named_empty_has_a_path() {
    let err = Flow::from_json(
        r#"{"spec_version": 1, "name": "f", "tasks": [{"id": "a", "handler": "echo"}], "": 1}"#,
        None,
    )
    .expect_err("an unknown field is a problem");
    let problem = &err.problems()[0];
    assert_eq!(problem.kind, ProblemKind::UnknownField);
    assert!(!problem.path.is_empty(), "{problem:?}");
}

/// A float written by `serde_json::to_string` is read back 1 ulp off (found by the round trip).
#[test]
fn any_float_survives_a_round_trip() {
    let spec = dagy_core::FlowBuilder::new("f")
        .task("a", "echo", |t| t.retry_delays([103752.08979958663]))
        .build();
    let text = serde_json::to_string(&spec).expect("serializable");
    let back: FlowSpec = serde_json::from_str(&text).expect("valid");
    assert_eq!(back, spec, "{text}");
}

// ------------------------------------------------------------------------------------------
// Automatic selection gives a runnable plan whenever some registered tier can run the flow.
// ------------------------------------------------------------------------------------------

/// Settings registering ECS and Step Functions as asked.
fn registered(ecs: bool, sfn: bool) -> Settings {
    Settings::from_lookup(|name| match name {
        vars::ECS_CLUSTER_ARN if ecs => Some("arn:aws:ecs:us-east-1:123456789012:cluster/c".into()),
        vars::SFN_ROLE_ARN | vars::SFN_TASK_EXECUTOR_ARN if sfn => {
            Some("arn:aws:iam::123456789012:role/x".into())
        }
        _ => None,
    })
    .expect("complete settings")
}

/// Whether any tier, on any registered backend (or its own), can run the flow.
fn some_tier_runs(flow: &Flow, settings: &Settings) -> bool {
    RuntimeTier::ALL.into_iter().any(|tier| {
        std::iter::once(None)
            .chain(BackendKind::ALL.map(Some))
            .any(|backend| {
                let request = PlanRequest {
                    tiers: TierInputs {
                        request: Some(tier),
                        ..TierInputs::default()
                    },
                    backend,
                };
                plan(flow, &request, settings).is_ok()
            })
    })
}

/// Timeouts and memory around every boundary the rules and the backends draw.
fn arb_sized_flow() -> impl Strategy<Value = Flow> {
    let timeouts = prop::sample::select(vec![
        None,
        Some(30.0),
        Some(600.0),
        Some(600.5),
        Some(700.0),
        Some(899.0),
        Some(900.0),
        Some(901.0),
        Some(3600.0),
        Some(3601.0),
    ]);
    let memory = prop::sample::select(vec![
        None,
        Some(512),
        Some(1024),
        Some(1500),
        Some(2500),
        Some(3072),
        Some(5000),
        Some(10_240),
        Some(11_000),
        Some(12_288),
        Some(20_000),
    ]);
    (1usize..=60).prop_flat_map(move |n| {
        prop::collection::vec((timeouts.clone(), memory.clone()), n).prop_map(|sizes| {
            let mut builder = dagy_core::FlowBuilder::new("sized");
            for (i, (timeout, memory)) in sizes.into_iter().enumerate() {
                builder = builder.task(format!("t{i}"), "echo", |t| {
                    let t = if i > 0 {
                        t.depends_on([format!("t{}", i - 1)])
                    } else {
                        t
                    };
                    let t = match timeout {
                        Some(s) => t.timeout(s),
                        None => t,
                    };
                    match memory {
                        Some(mb) => t.memory_mb(mb),
                        None => t,
                    }
                });
            }
            builder.build().validate(None).expect("a valid flow")
        })
    })
}

proptest! {
    #![proptest_config(config())]

    /// No automatic plan is refused while a registered tier could run the flow; and whatever
    /// it picks, its reason says why.
    #[test]
    fn automatic_selection_never_refuses_a_flow_some_registered_tier_runs(
        flow in arb_sized_flow(),
        ecs in any::<bool>(),
        sfn in any::<bool>(),
    ) {
        let settings = registered(ecs, sfn);
        let automatic = plan(&flow, &PlanRequest::default(), &settings);
        if some_tier_runs(&flow, &settings) {
            prop_assert!(automatic.is_ok(), "refused: {:?}", automatic.err().map(|e| e.to_string()));
        }
        if let Err(e) = &automatic
            && !ecs
        {
            prop_assert!(e.to_string().contains(vars::ECS_CLUSTER_ARN), "{e}");
        }
    }
}
