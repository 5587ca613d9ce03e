//! Records to DynamoDB items and back. Every attribute a condition reads is a top-level
//! attribute of its own; JSON values (outputs, parameters, the plan) are stored as JSON text.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use serde::de::DeserializeOwned;

use dagy_store::{
    AttemptSpan, Cursor, DeploymentRecord, EnvironmentRecord, Lease, RunRecord, RunStatus,
    StepState, StoreError, TaskErrorRecord, TaskRecord, TaskStatus,
};

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// Partition key of everything that belongs to one run.
pub fn run_pk(run_id: &str) -> String {
    format!("RUN#{run_id}")
}
/// Sort key of the run item.
pub const RUN_SK: &str = "RUN";
/// Sort key of a task item.
pub fn task_sk(task_id: &str) -> String {
    format!("TASK#{task_id}")
}
/// Sort key of the n-th chunk of a run's flow.
pub fn flow_sk(n: usize) -> String {
    format!("FLOW#{n:04}")
}
/// Partition key of an idempotency item.
pub fn idempotency_pk(key: &str) -> String {
    format!("IDEMPOTENCY#{key}")
}
/// Partition key of a deployment (and the by-deployment GSI key of its runs).
pub fn deployment_pk(name: &str) -> String {
    format!("DEPLOYMENT#{name}")
}
/// Partition key of an environment.
pub fn environment_pk(name: &str) -> String {
    format!("ENVIRONMENT#{name}")
}
/// The single partition key of the sparse lapsed-runs index: set on runs that are not final.
pub const ACTIVE: &str = "ACTIVE";

/// The largest item DynamoDB stores: 400 KB, attribute names and values together.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// An item's size as DynamoDB counts it (names and values in UTF-8; numbers at most 21 bytes),
/// for the attribute types Dagy writes.
pub fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    AttributeValue::S(text) => text.len(),
                    AttributeValue::N(number) => number.len().div_ceil(2) + 1,
                    AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
                    AttributeValue::B(bytes) => bytes.as_ref().len(),
                    // Not in the items checked before a write (a task's `history` list grows
                    // by updates only); counted generously.
                    _ => MAX_ITEM_BYTES,
                }
        })
        .sum()
}

/// Refuses an item over [`MAX_ITEM_BYTES`] before it is sent, naming what it holds.
pub fn check_size(item: &Item) -> Result<(), StoreError> {
    let bytes = item_size(item);
    if bytes <= MAX_ITEM_BYTES {
        return Ok(());
    }
    let kind = opt_s(item, "kind").unwrap_or_else(|| "an".into());
    Err(StoreError::TooLarge {
        what: format!("the {kind} item {}", opt_s(item, "sk").unwrap_or_default()),
        bytes,
        limit: MAX_ITEM_BYTES,
    })
}

/// The key (`pk`, `sk`) of an item.
pub fn key_of(item: &Item) -> Item {
    item.iter()
        .filter(|(name, _)| matches!(name.as_str(), "pk" | "sk"))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
pub fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
pub fn b(v: bool) -> AttributeValue {
    AttributeValue::Bool(v)
}

pub fn json<T: Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    serde_json::to_string(value)
        .map(AttributeValue::S)
        .map_err(|e| StoreError::Invalid(format!("cannot encode a value as JSON: {e}")))
}

fn corrupt(item: &Item, what: &str) -> StoreError {
    let pk = item
        .get("pk")
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default();
    StoreError::Corrupt(format!("item {pk} has a missing or malformed {what}"))
}

pub fn get_s(item: &Item, name: &str) -> Result<String, StoreError> {
    opt_s(item, name).ok_or_else(|| corrupt(item, name))
}
pub fn opt_s(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}
pub fn get_n(item: &Item, name: &str) -> Result<u64, StoreError> {
    opt_n(item, name).ok_or_else(|| corrupt(item, name))
}
pub fn opt_n(item: &Item, name: &str) -> Option<u64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}
pub fn opt_json<T: DeserializeOwned>(item: &Item, name: &str) -> Result<Option<T>, StoreError> {
    match opt_s(item, name) {
        None => Ok(None),
        Some(text) => dagy_core::json::from_str(&text)
            .map(Some)
            .map_err(|_| corrupt(item, name)),
    }
}
fn enum_value<T: DeserializeOwned>(item: &Item, name: &str) -> Result<T, StoreError> {
    let text = get_s(item, name)?;
    serde_json::from_value(serde_json::Value::String(text)).map_err(|_| corrupt(item, name))
}
fn opt_enum<T: DeserializeOwned>(item: &Item, name: &str) -> Result<Option<T>, StoreError> {
    match opt_s(item, name) {
        None => Ok(None),
        Some(text) => serde_json::from_value(serde_json::Value::String(text))
            .map(Some)
            .map_err(|_| corrupt(item, name)),
    }
}

/// The run item of a new run.
pub fn run_item(run: &RunRecord, expires_at: u64) -> Result<Item, StoreError> {
    let mut item = Item::new();
    item.insert("pk".into(), s(run_pk(&run.run_id)));
    item.insert("sk".into(), s(RUN_SK));
    item.insert("kind".into(), s("run"));
    item.insert("run_id".into(), s(&run.run_id));
    item.insert("flow_name".into(), s(&run.flow_name));
    item.insert("status".into(), s(run.status.as_str()));
    item.insert("parameters".into(), json(&run.parameters)?);
    item.insert("cancel_requested".into(), b(run.cancel_requested));
    item.insert("lease_token".into(), n(0));
    item.insert("wake_at_ms".into(), n(run.wake_at_ms));
    item.insert("created_at_ms".into(), n(run.created_at_ms));
    item.insert("expires_at".into(), n(expires_at));
    item.insert("active_pk".into(), s(ACTIVE));
    item.insert("active_sk".into(), n(run.wake_at_ms));
    if let Some(d) = &run.deployment {
        item.insert("deployment".into(), s(d));
        item.insert("gsi1pk".into(), s(deployment_pk(d)));
        item.insert("gsi1sk".into(), s(dagy_store::list_key(run)));
    }
    if let Some(plan) = &run.plan {
        item.insert("plan".into(), json(plan)?);
    }
    if let Some(key) = &run.idempotency_key {
        item.insert("idempotency_key".into(), s(key));
    }
    Ok(item)
}

/// Every attribute [`run_record`] reads (and `pk`, which its errors name): what a listing of
/// runs projects.
pub const RUN_RECORD_ATTRIBUTES: &[&str] = &[
    "pk",
    "run_id",
    "flow_name",
    "deployment",
    "status",
    "parameters",
    "plan",
    "idempotency_key",
    "cancel_requested",
    "lease_owner",
    "lease_token",
    "lease_expires_at_ms",
    "wake_at_ms",
    "error",
    "created_at_ms",
    "started_at_ms",
    "finished_at_ms",
];

/// A run record from its item.
pub fn run_record(item: &Item) -> Result<RunRecord, StoreError> {
    let lease = match opt_s(item, "lease_owner") {
        Some(owner) => Some(Lease {
            run_id: get_s(item, "run_id")?,
            owner,
            token: get_n(item, "lease_token")?,
            expires_at_ms: opt_n(item, "lease_expires_at_ms").unwrap_or(0),
            worker: None,
        }),
        None => None,
    };
    Ok(RunRecord {
        run_id: get_s(item, "run_id")?,
        flow_name: get_s(item, "flow_name")?,
        deployment: opt_s(item, "deployment"),
        status: enum_value::<RunStatus>(item, "status")?,
        parameters: opt_json(item, "parameters")?.unwrap_or_default(),
        plan: opt_json(item, "plan")?,
        idempotency_key: opt_s(item, "idempotency_key"),
        cancel_requested: item
            .get("cancel_requested")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
        lease,
        wake_at_ms: opt_n(item, "wake_at_ms").unwrap_or(0),
        error: opt_s(item, "error"),
        created_at_ms: get_n(item, "created_at_ms")?,
        started_at_ms: opt_n(item, "started_at_ms"),
        finished_at_ms: opt_n(item, "finished_at_ms"),
    })
}

/// The item of a new, pending task.
pub fn task_item(run_id: &str, task_id: &str, expires_at: u64) -> Item {
    let mut item = Item::new();
    item.insert("pk".into(), s(run_pk(run_id)));
    item.insert("sk".into(), s(task_sk(task_id)));
    item.insert("kind".into(), s("task"));
    item.insert("task_id".into(), s(task_id));
    item.insert("status".into(), s(TaskStatus::Pending.as_str()));
    item.insert("attempts".into(), n(0));
    item.insert("failures".into(), n(0));
    item.insert("interruptions".into(), n(0));
    item.insert("expires_at".into(), n(expires_at));
    item
}

/// The step state on a run item; `None` for a run created before step state existed.
pub fn step_state(item: &Item) -> Result<Option<StepState>, StoreError> {
    if !item.contains_key("cursor") {
        return Ok(None);
    }
    Ok(Some(StepState {
        cursor: opt_json::<Option<Cursor>>(item, "cursor")?.flatten(),
        first_cancelled: opt_s(item, "first_cancelled"),
        first_failed: opt_s(item, "first_failed"),
    }))
}

/// A task record from its item.
pub fn task_record(item: &Item) -> Result<TaskRecord, StoreError> {
    let error = opt_s(item, "error_type").map(|error_type| TaskErrorRecord {
        error_type,
        message: opt_s(item, "error_message").unwrap_or_default(),
    });
    Ok(TaskRecord {
        task_id: get_s(item, "task_id")?,
        status: enum_value::<TaskStatus>(item, "status")?,
        attempts: u32::try_from(get_n(item, "attempts")?).unwrap_or(u32::MAX),
        failures: u32::try_from(opt_n(item, "failures").unwrap_or(0)).unwrap_or(u32::MAX),
        interruptions: u32::try_from(opt_n(item, "interruptions").unwrap_or(0)).unwrap_or(u32::MAX),
        lease_token: opt_n(item, "lease_token"),
        owner: opt_s(item, "attempt_owner"),
        started_at_ms: opt_n(item, "started_at_ms"),
        finished_at_ms: opt_n(item, "finished_at_ms"),
        output: opt_json(item, "output")?,
        error: error.map(Box::new),
        history: history(item)?,
    })
}

/// The attribute holding a task's attempt spans: a list of maps, oldest first.
pub const HISTORY: &str = "history";

/// The span of an attempt that starts at `started_at_ms`: one element of [`HISTORY`]. Its end
/// (`ended_at_ms`, `status`) is set in place when the attempt finishes.
pub fn open_span(attempt: u32, started_at_ms: u64) -> AttributeValue {
    AttributeValue::M(Item::from([
        ("attempt".to_string(), n(u64::from(attempt))),
        ("started_at_ms".to_string(), n(started_at_ms)),
    ]))
}

/// A task's attempt spans; none on a task item written before spans were kept.
fn history(item: &Item) -> Result<Vec<AttemptSpan>, StoreError> {
    let Some(list) = item.get(HISTORY) else {
        return Ok(Vec::new());
    };
    let malformed = || corrupt(item, HISTORY);
    let list = list.as_l().map_err(|_| malformed())?;
    list.iter()
        .map(|element| {
            let span = element.as_m().map_err(|_| malformed())?;
            let status = match opt_s(span, "status") {
                None => None,
                Some(text) => Some(
                    serde_json::from_value(serde_json::Value::String(text))
                        .map_err(|_| malformed())?,
                ),
            };
            Ok(AttemptSpan {
                attempt: opt_n(span, "attempt")
                    .and_then(|a| u32::try_from(a).ok())
                    .ok_or_else(malformed)?,
                started_at_ms: opt_n(span, "started_at_ms").ok_or_else(malformed)?,
                ended_at_ms: opt_n(span, "ended_at_ms"),
                status,
            })
        })
        .collect()
}

/// A deployment's item.
pub fn deployment_item(d: &DeploymentRecord) -> Result<Item, StoreError> {
    let mut item = Item::new();
    item.insert("pk".into(), s(deployment_pk(&d.name)));
    item.insert("sk".into(), s("DEPLOYMENT"));
    item.insert("kind".into(), s("deployment"));
    item.insert("name".into(), s(&d.name));
    item.insert("flow".into(), json(&d.flow)?);
    item.insert("version".into(), n(d.version));
    item.insert("updated_at_ms".into(), n(d.updated_at_ms));
    if let Some(e) = &d.environment {
        item.insert("environment".into(), s(e));
    }
    if let Some(t) = d.default_runtime_tier {
        item.insert("default_runtime_tier".into(), s(t.as_str()));
    }
    if let Some(b) = d.backend {
        item.insert("backend".into(), s(b.as_str()));
    }
    Ok(item)
}

/// A deployment from its item.
pub fn deployment_record(item: &Item) -> Result<DeploymentRecord, StoreError> {
    Ok(DeploymentRecord {
        name: get_s(item, "name")?,
        flow: opt_json(item, "flow")?.ok_or_else(|| corrupt(item, "flow"))?,
        environment: opt_s(item, "environment"),
        default_runtime_tier: opt_enum(item, "default_runtime_tier")?,
        backend: opt_enum(item, "backend")?,
        version: get_n(item, "version")?,
        updated_at_ms: opt_n(item, "updated_at_ms").unwrap_or(0),
    })
}

/// An environment's item.
pub fn environment_item(e: &EnvironmentRecord) -> Item {
    let mut item = Item::new();
    item.insert("pk".into(), s(environment_pk(&e.name)));
    item.insert("sk".into(), s("ENVIRONMENT"));
    item.insert("kind".into(), s("environment"));
    item.insert("name".into(), s(&e.name));
    item.insert("updated_at_ms".into(), n(e.updated_at_ms));
    if let Some(t) = e.default_runtime_tier {
        item.insert("default_runtime_tier".into(), s(t.as_str()));
    }
    item
}

/// An environment from its item.
pub fn environment_record(item: &Item) -> Result<EnvironmentRecord, StoreError> {
    Ok(EnvironmentRecord {
        name: get_s(item, "name")?,
        default_runtime_tier: opt_enum(item, "default_runtime_tier")?,
        updated_at_ms: opt_n(item, "updated_at_ms").unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_run_item() -> Item {
        let run = RunRecord {
            run_id: "r1".into(),
            flow_name: "etl".into(),
            deployment: Some("nightly".into()),
            status: RunStatus::Failed,
            parameters: serde_json::Map::from_iter([("day".to_string(), serde_json::json!(3))]),
            plan: None,
            idempotency_key: Some("k".into()),
            cancel_requested: true,
            lease: None,
            wake_at_ms: 7,
            error: None,
            created_at_ms: 1,
            started_at_ms: None,
            finished_at_ms: None,
        };
        let mut item = run_item(&run, 99).expect("item");
        for (name, value) in [
            ("lease_owner", s("me")),
            ("lease_token", n(4)),
            ("lease_expires_at_ms", n(8)),
            ("error", s("boom")),
            ("started_at_ms", n(2)),
            ("finished_at_ms", n(3)),
            ("flow_chunks", n(1)),
            ("cursor", s("null")),
        ] {
            item.insert(name.into(), value);
        }
        item
    }

    #[test]
    fn a_run_projected_to_its_record_attributes_reads_back_whole() {
        let item = full_run_item();
        let projected: Item = item
            .iter()
            .filter(|(name, _)| RUN_RECORD_ATTRIBUTES.contains(&name.as_str()))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        assert!(projected.len() < item.len());
        assert_eq!(
            run_record(&projected).expect("projected"),
            run_record(&item).expect("whole")
        );
    }

    #[test]
    fn a_task_reads_its_spans_and_none_when_it_kept_none() {
        let mut item = task_item("r1", "a", 99);
        assert_eq!(task_record(&item).expect("task").history, []);
        let AttributeValue::M(mut closed) = open_span(1, 10) else {
            unreachable!()
        };
        closed.insert("ended_at_ms".into(), n(12));
        closed.insert("status".into(), s("retrying"));
        item.insert(
            HISTORY.into(),
            AttributeValue::L(vec![AttributeValue::M(closed), open_span(2, 20)]),
        );
        let spans = task_record(&item).expect("task").history;
        let spans: Vec<_> = spans
            .iter()
            .map(|s| (s.attempt, s.started_at_ms, s.ended_at_ms, s.status))
            .collect();
        assert_eq!(
            spans,
            [
                (1, 10, Some(12), Some(TaskStatus::Retrying)),
                (2, 20, None, None)
            ]
        );
        item.insert(HISTORY.into(), AttributeValue::L(vec![s("not a span")]));
        assert!(matches!(task_record(&item), Err(StoreError::Corrupt(_))));
    }
}
