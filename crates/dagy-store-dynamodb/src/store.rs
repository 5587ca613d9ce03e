//! [`RunStore`] on DynamoDB: every state change a conditional write.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, ConditionCheck, DeleteRequest, KeysAndAttributes, Put,
    PutRequest, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
    WriteRequest,
};

use dagy_store::{
    AttemptOutcome, AttemptStart, Created, Cursor, DISPATCH_GRACE_MS, DeploymentRecord,
    EnvironmentRecord, Lease, NewRun, RunFilter, RunPage, RunRecord, RunSnapshot, RunStatus,
    RunStore, StepTask, StepView, StoreError, StoreLimits, TaskErrorRecord, TaskRecord, TaskStatus,
    Verdict,
};

use crate::DynamoStore;
use crate::item::{self, ACTIVE, Item, RUN_SK, b, n, s};

/// Flow JSON is cut into pieces of at most this many bytes, one item each.
const FLOW_CHUNK_BYTES: usize = 300 * 1024;
/// TransactWriteItems takes at most 100 actions; one is the run's condition check.
const TRANSACTION_TASKS: usize = 99;
/// BatchWriteItem takes at most 25 requests.
const BATCH_ITEMS: usize = 25;
/// Keys per BatchGetItem request (DynamoDB's limit).
const BATCH_GET_ITEMS: usize = 100;
/// How many times `join_lease` tries again when the lease changes hands under it.
const JOIN_ROUNDS: u32 = 4;
/// Gives a task that will not run its final status and the reason.
const SETTLE_UPDATE: &str = "SET #st = :st, error_type = :et, error_message = :em, \
                             finished_at_ms = :now, expires_at = :exp";
/// ...but only a task that is not final already.
const SETTLE_CONDITION: &str = "#st IN (:pending, :running, :retrying)";
/// The most pages (of up to 1 MB read each) one `recent_runs` scans.
const RECENT_SCAN_PAGES: usize = 32;
/// Everything a run writes expires after this many seconds at the latest (Step Functions'
/// longest run is a year).
const ABANDONED_SECONDS: u64 = 400 * 86_400;

/// A failed request as a store error: DynamoDB refusing the request itself
/// (`ValidationException`, e.g. an item over 400 KB) is the caller's to fix, anything else
/// means the store could not be reached or failed.
fn unavailable<E, R>(operation: &str, e: &SdkError<E, R>) -> StoreError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    if let Some(service) = e.as_service_error()
        && service.code() == Some("ValidationException")
    {
        return StoreError::Invalid(format!(
            "DynamoDB refused {operation}: {}",
            service.message().unwrap_or("no reason given")
        ));
    }
    StoreError::Unavailable(format!("{operation}: {}", DisplayErrorContext(e)))
}

fn built<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T, StoreError> {
    r.map_err(|e| StoreError::Invalid(format!("cannot build a DynamoDB request: {e}")))
}

fn run_key(run_id: &str) -> [(String, AttributeValue); 2] {
    [
        ("pk".into(), s(item::run_pk(run_id))),
        ("sk".into(), s(RUN_SK)),
    ]
}

fn task_key(run_id: &str, task_id: &str) -> [(String, AttributeValue); 2] {
    [
        ("pk".into(), s(item::run_pk(run_id))),
        ("sk".into(), s(item::task_sk(task_id))),
    ]
}

/// The reason a transaction's action at `index` failed, if it was its condition.
fn failed_condition(reasons: &[CancellationReason], index: usize) -> Option<Option<&Item>> {
    reasons
        .get(index)
        .filter(|r| r.code() == Some("ConditionalCheckFailed"))
        .map(|r| r.item())
}

fn transaction_reasons(
    e: &SdkError<TransactWriteItemsError, impl std::fmt::Debug>,
) -> Option<&[CancellationReason]> {
    match e.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(t)) => {
            Some(t.cancellation_reasons())
        }
        _ => None,
    }
}

fn update_condition_item(
    e: &SdkError<UpdateItemError, impl std::fmt::Debug>,
) -> Option<Option<&Item>> {
    match e.as_service_error() {
        Some(UpdateItemError::ConditionalCheckFailedException(c)) => Some(c.item()),
        _ => None,
    }
}

/// `#st`: the `status` attribute (a reserved word in DynamoDB expressions).
const STATUS: (&str, &str) = ("#st", "status");
/// `#err`: the `error` attribute (a reserved word too).
const ERROR: (&str, &str) = ("#err", "error");
/// `cursor` is one of DynamoDB's reserved words.
const CURSOR: (&str, &str) = ("#cur", "cursor");
/// `#h`: a task's attempt spans.
const HISTORY: (&str, &str) = ("#h", item::HISTORY);

/// A `finish_attempt` request, checked: what ending the attempt writes.
struct AttemptEnd<'a> {
    lease: &'a Lease,
    task_id: &'a str,
    attempt: u32,
    outcome: &'a AttemptOutcome,
    /// The task's status after it.
    status: TaskStatus,
    now_ms: u64,
}

impl<'a> AttemptEnd<'a> {
    /// Checks `outcome` against the store's limits; what ending the attempt writes.
    fn checked(
        limits: StoreLimits,
        lease: &'a Lease,
        task_id: &'a str,
        attempt: u32,
        outcome: &'a AttemptOutcome,
        now_ms: u64,
    ) -> Result<AttemptEnd<'a>, StoreError> {
        let status = dagy_store::check_outcome(limits, task_id, outcome)?;
        Ok(AttemptEnd {
            lease,
            task_id,
            attempt,
            outcome,
            status,
            now_ms,
        })
    }
}

/// What a conditional update of a run item did.
enum Updated {
    /// It was applied: the item as it is now.
    Applied(Item),
    /// Its condition failed: the item as it was (`None`: there is no run item).
    Refused(Option<Item>),
}

/// What a lease take-over did.
enum Taken {
    /// `owner` holds the lease now, with this fencing token; the run item as it is now.
    Token(u64, Box<Item>),
    /// The run is final or another owner's lease is live: the run as it is.
    Refused(Box<RunRecord>),
}

/// The run a refused update found, or `NotFound` when there is no run item.
fn existing_run(run_id: &str, old: Option<Item>) -> Result<RunRecord, StoreError> {
    match old {
        Some(old) => item::run_record(&old),
        None => Err(StoreError::NotFound {
            run_id: run_id.to_string(),
        }),
    }
}

/// Why a lease could not be had on `run`: it is final, or someone else holds it.
fn lease_refusal(run: RunRecord) -> StoreError {
    if run.status.is_final() {
        return StoreError::RunFinished {
            run_id: run.run_id,
            status: run.status,
        };
    }
    let (owner, expires_at_ms) = run
        .lease
        .map_or((String::new(), 0), |held| (held.owner, held.expires_at_ms));
    StoreError::LeaseHeld {
        run_id: run.run_id,
        owner,
        expires_at_ms,
    }
}

fn run_status(status: RunStatus) -> AttributeValue {
    s(status.as_str())
}

fn task_status(status: TaskStatus) -> AttributeValue {
    s(status.as_str())
}

impl DynamoStore {
    fn expires_after_finish(&self, now_ms: u64) -> u64 {
        now_ms / 1000 + self.retention.as_secs()
    }

    /// A condition check that the lease still fences the run and the run is running.
    fn run_check(
        &self,
        lease: &Lease,
        not_cancelled: bool,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut condition =
            "lease_token = :token AND lease_owner = :me AND #st = :running".to_string();
        if not_cancelled {
            condition.push_str(" AND cancel_requested = :false");
        }
        let mut check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(run_key(&lease.run_id).into_iter().collect()))
            .condition_expression(condition)
            .expression_attribute_names(STATUS.0, STATUS.1)
            .expression_attribute_values(":token", n(lease.token))
            .expression_attribute_values(":me", s(&lease.owner))
            .expression_attribute_values(":running", run_status(RunStatus::Running))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if not_cancelled {
            check = check.expression_attribute_values(":false", b(false));
        }
        Ok(TransactWriteItem::builder()
            .condition_check(built(check.build())?)
            .build())
    }

    /// Why the run check failed, from the run item it returned (or a fresh read).
    async fn run_refusal(&self, lease: &Lease, old: Option<&Item>) -> StoreError {
        let run = match old {
            Some(item) => item::run_record(item),
            None => self.get_run(&lease.run_id).await,
        };
        match run {
            Err(e) => e,
            Ok(run) if run.status.is_final() => StoreError::RunFinished {
                run_id: run.run_id,
                status: run.status,
            },
            Ok(run)
                if run.lease.as_ref().map(|l| (l.token, l.owner.as_str()))
                    != Some((lease.token, lease.owner.as_str())) =>
            {
                StoreError::LeaseLost { run_id: run.run_id }
            }
            Ok(run) if run.cancel_requested => StoreError::CancelRequested { run_id: run.run_id },
            Ok(run) => StoreError::Unavailable(format!(
                "run {} refused a write for no reason it shows (status {})",
                run.run_id, run.status
            )),
        }
    }

    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<(), SdkError<TransactWriteItemsError, aws_sdk_dynamodb::config::http::HttpResponse>>
    {
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map(|_| ())
    }

    async fn batch_put(&self, items: Vec<Item>) -> Result<(), StoreError> {
        for chunk in items.chunks(BATCH_ITEMS) {
            let mut requests: Vec<WriteRequest> = Vec::with_capacity(chunk.len());
            for item in chunk {
                let put = built(PutRequest::builder().set_item(Some(item.clone())).build())?;
                requests.push(WriteRequest::builder().put_request(put).build());
            }
            let mut delay = Duration::from_millis(25);
            for round in 0.. {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(|e| unavailable("BatchWriteItem", &e))?;
                requests = out
                    .unprocessed_items()
                    .and_then(|m| m.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
                if round >= 8 {
                    return Err(StoreError::Unavailable(format!(
                        "BatchWriteItem left {} items unprocessed after {round} rounds",
                        requests.len()
                    )));
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
        Ok(())
    }

    /// The run an idempotency key made, if it made one.
    async fn run_of_key(&self, key: &str) -> Result<Option<Created>, StoreError> {
        let Some(existing) = self
            .get_item(item::idempotency_pk(key), "IDEMPOTENCY")
            .await?
        else {
            return Ok(None);
        };
        let run_id = item::get_s(&existing, "run_id")?;
        Ok(Some(Created {
            run: self.get_run(&run_id).await?,
            created: false,
        }))
    }

    /// Deletes items by key, best effort: the clean-up after a `create_run` that failed, whose
    /// own error is the one to report. Items left behind expire by TTL.
    async fn delete_quietly(&self, keys: Vec<Item>) {
        for chunk in keys.chunks(BATCH_ITEMS) {
            let mut requests = Vec::with_capacity(chunk.len());
            for key in chunk {
                match DeleteRequest::builder().set_key(Some(key.clone())).build() {
                    Ok(delete) => {
                        requests.push(WriteRequest::builder().delete_request(delete).build())
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot build a clean-up request");
                        return;
                    }
                }
            }
            if let Err(e) = self
                .client
                .batch_write_item()
                .request_items(&self.table, requests)
                .send()
                .await
            {
                tracing::warn!(error = %DisplayErrorContext(&e), "clean-up after a failed create_run failed");
                return;
            }
        }
    }

    /// A transaction action that writes `item` only if no item has its key yet.
    fn put_new(&self, item: Item) -> Result<TransactWriteItem, StoreError> {
        let put = built(
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build(),
        )?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// A micro step's view of the run whose item is `found`: its step state and the task at
    /// its cursor, read with its upstream tasks in one BatchGetItem.
    async fn step_view(&self, run_id: &str, found: &Item) -> Result<Option<StepView>, StoreError> {
        let run = item::run_record(found)?;
        let Some(state) = item::step_state(found)? else {
            return Ok(None);
        };
        let Some(cursor) = &state.cursor else {
            return Ok(Some(StepView {
                run,
                state,
                task: None,
            }));
        };
        let mut wanted = vec![cursor.task_id.clone()];
        wanted.extend(cursor.depends_on.iter().cloned());
        let mut found = self.get_tasks(run_id, &wanted).await?;
        let missing =
            |id: &str| StoreError::Corrupt(format!("run {run_id} misses the item of task {id}"));
        let task_item = found
            .remove(&cursor.task_id)
            .ok_or_else(|| missing(&cursor.task_id))?;
        let spec = item::opt_json(&task_item, "spec")?.ok_or_else(|| missing(&cursor.task_id))?;
        let next = item::opt_json::<Option<Cursor>>(&task_item, "next")?.flatten();
        let record = item::task_record(&task_item)?;
        let mut upstream = Vec::with_capacity(cursor.depends_on.len());
        for id in &cursor.depends_on {
            let upstream_item = found.get(id).ok_or_else(|| missing(id))?;
            upstream.push(item::task_record(upstream_item)?);
        }
        let task = Some(StepTask {
            spec,
            record,
            next,
            upstream,
        });
        Ok(Some(StepView { run, state, task }))
    }

    /// The items of a run's tasks `ids`, by task id, read with BatchGetItem (strongly
    /// consistent; unprocessed keys are asked for again).
    async fn get_tasks(
        &self,
        run_id: &str,
        ids: &[String],
    ) -> Result<HashMap<String, Item>, StoreError> {
        let mut found = HashMap::with_capacity(ids.len());
        let mut unique: Vec<&String> = ids.iter().collect();
        unique.sort();
        unique.dedup();
        for chunk in unique.chunks(BATCH_GET_ITEMS) {
            let keys: Vec<Item> = chunk
                .iter()
                .map(|id| {
                    Item::from([
                        ("pk".to_string(), s(item::run_pk(run_id))),
                        ("sk".to_string(), s(item::task_sk(id))),
                    ])
                })
                .collect();
            let mut pending = Some(built(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build(),
            )?);
            while let Some(request) = pending.take() {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| unavailable("BatchGetItem", &e))?;
                for got in out
                    .responses()
                    .and_then(|r| r.get(&self.table))
                    .into_iter()
                    .flatten()
                {
                    found.insert(item::get_s(got, "task_id")?, got.clone());
                }
                pending = out
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.table))
                    .filter(|k| !k.keys().is_empty())
                    .cloned();
            }
        }
        Ok(found)
    }

    async fn get_item(&self, pk: String, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", &e))?;
        Ok(out.item().cloned())
    }

    /// Updates one task under the run check; `expect` tells whether a refused task write
    /// already holds what this write meant to do (a retried request whose answer was lost).
    async fn task_write(
        &self,
        lease: &Lease,
        task_id: &str,
        not_cancelled: bool,
        update: Update,
        expect: impl Fn(&TaskRecord) -> bool,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let items = vec![
            self.run_check(lease, not_cancelled)?,
            TransactWriteItem::builder().update(update).build(),
        ];
        let e = match self.transact(items).await {
            Ok(()) => return Ok(None),
            Err(e) => e,
        };
        let Some(reasons) = transaction_reasons(&e) else {
            return Err(unavailable("TransactWriteItems", &e));
        };
        if let Some(old) = failed_condition(reasons, 0) {
            return Err(self.run_refusal(lease, old).await);
        }
        if let Some(old) = failed_condition(reasons, 1) {
            let Some(old) = old else {
                return Err(StoreError::UnknownTask {
                    run_id: lease.run_id.clone(),
                    task_id: task_id.to_string(),
                });
            };
            let task = item::task_record(old)?;
            if expect(&task) {
                return Ok(None);
            }
            return Ok(Some(task));
        }
        Err(unavailable("TransactWriteItems", &e))
    }

    fn task_update(
        &self,
        lease: &Lease,
        task_id: &str,
    ) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
        Update::builder()
            .table_name(&self.table)
            .set_key(Some(task_key(&lease.run_id, task_id).into_iter().collect()))
            .expression_attribute_names(STATUS.0, STATUS.1)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
    }

    /// The task update that ends an attempt, when the task runs it under the lease as its
    /// attempt owner; with `span`, it also closes the attempt's span at that index of the
    /// task's history (its end and the status after it, set in place), and only if that
    /// element is this attempt's.
    fn end_update(&self, end: &AttemptEnd, span: Option<usize>) -> Result<Update, StoreError> {
        let (close, guard) = match span {
            Some(i) => (
                format!(", #h[{i}].ended_at_ms = :now, #h[{i}].#st = :st"),
                format!(" AND #h[{i}].attempt = :attempt"),
            ),
            None => Default::default(),
        };
        let mut u = self
            .task_update(end.lease, end.task_id)
            .condition_expression(format!(
                "#st = :running AND attempts = :attempt AND lease_token = :token \
                 AND attempt_owner = :me{guard}"
            ))
            .expression_attribute_values(":running", task_status(TaskStatus::Running))
            .expression_attribute_values(":attempt", n(u64::from(end.attempt)))
            .expression_attribute_values(":token", n(end.lease.token))
            .expression_attribute_values(":me", s(end.lease.attempt_owner()))
            .expression_attribute_values(":st", task_status(end.status));
        let ends_task = end.status.is_final();
        if span.is_some() {
            u = u.expression_attribute_names(HISTORY.0, HISTORY.1);
        }
        if span.is_some() || ends_task {
            u = u.expression_attribute_values(":now", n(end.now_ms));
        }
        if ends_task {
            u = u.expression_attribute_values(":exp", n(self.expires_after_finish(end.now_ms)));
        }
        let set = match end.outcome {
            AttemptOutcome::Completed(output) => {
                u = u
                    .expression_attribute_names("#out", "output")
                    .expression_attribute_values(":out", s(output.json()));
                format!(
                    "SET #st = :st, #out = :out, finished_at_ms = :now, expires_at = :exp{close} \
                     REMOVE error_type, error_message"
                )
            }
            AttemptOutcome::Retrying(error) | AttemptOutcome::Finished(_, error) => {
                u = u
                    .expression_attribute_values(":et", s(&error.error_type))
                    .expression_attribute_values(":em", s(&error.message))
                    .expression_attribute_values(":one", n(1));
                let finished = if ends_task {
                    ", finished_at_ms = :now, expires_at = :exp"
                } else {
                    ""
                };
                format!(
                    "SET #st = :st, error_type = :et, error_message = :em{finished}{close} \
                     ADD failures :one"
                )
            }
        };
        built(u.update_expression(set).build())
    }

    /// The lease take-over: makes `owner` the holder until `expires_at_ms` and bumps the fencing
    /// token, when the run is pending or running and its lease has lapsed (or, with `or_mine`,
    /// is `owner`'s already).
    async fn take_lease(
        &self,
        run_id: &str,
        owner: &str,
        now_ms: u64,
        expires_at_ms: u64,
        or_mine: bool,
    ) -> Result<Taken, StoreError> {
        let free = if or_mine {
            "(attribute_not_exists(lease_owner) OR lease_owner = :me OR lease_expires_at_ms <= :now)"
        } else {
            "(attribute_not_exists(lease_owner) OR lease_expires_at_ms <= :now)"
        };
        let taken = self
            .update_run(
                run_id,
                "SET lease_owner = :me, lease_expires_at_ms = :exp, #st = :running, \
                 started_at_ms = if_not_exists(started_at_ms, :now), wake_at_ms = :exp, \
                 active_sk = :exp ADD lease_token :one",
                &format!("attribute_exists(pk) AND #st IN (:pending, :running) AND {free}"),
                &[STATUS],
                vec![
                    (":me", s(owner)),
                    (":exp", n(expires_at_ms)),
                    (":now", n(now_ms)),
                    (":one", n(1)),
                    (":pending", run_status(RunStatus::Pending)),
                    (":running", run_status(RunStatus::Running)),
                ],
            )
            .await?;
        match taken {
            Updated::Applied(new) => Ok(Taken::Token(
                item::get_n(&new, "lease_token")?,
                Box::new(new),
            )),
            Updated::Refused(old) => Ok(Taken::Refused(Box::new(existing_run(run_id, old)?))),
        }
    }

    /// One conditional update of a run item. `names` are the attribute names the expressions
    /// use by placeholder (`#st`...), `values` their values.
    async fn update_run(
        &self,
        run_id: &str,
        update: &str,
        condition: &str,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<Updated, StoreError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(run_key(run_id).into_iter().collect()))
            .update_expression(update)
            .condition_expression(condition)
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (placeholder, name) in names {
            request = request.expression_attribute_names(*placeholder, *name);
        }
        for (k, v) in values {
            request = request.expression_attribute_values(k, v);
        }
        match request.send().await {
            Ok(out) => Ok(Updated::Applied(
                out.attributes().cloned().unwrap_or_default(),
            )),
            Err(e) => match update_condition_item(&e) {
                Some(old) => Ok(Updated::Refused(old.cloned())),
                None => Err(unavailable("UpdateItem", &e)),
            },
        }
    }

    /// The values of [`SETTLE_UPDATE`] and [`SETTLE_CONDITION`].
    fn settle_values(
        &self,
        status: &TaskStatus,
        error: &TaskErrorRecord,
        now_ms: u64,
    ) -> HashMap<String, AttributeValue> {
        [
            (":st", task_status(*status)),
            (":et", s(&error.error_type)),
            (":em", s(&error.message)),
            (":now", n(now_ms)),
            (":exp", n(self.expires_after_finish(now_ms))),
            (":pending", task_status(TaskStatus::Pending)),
            (":running", task_status(TaskStatus::Running)),
            (":retrying", task_status(TaskStatus::Retrying)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    async fn settle_without_lease(
        &self,
        run_id: &str,
        task_ids: &[String],
        status: TaskStatus,
        error: &TaskErrorRecord,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        for id in task_ids {
            let update = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(task_key(run_id, id).into_iter().collect()))
                .update_expression(SETTLE_UPDATE)
                .condition_expression(SETTLE_CONDITION)
                .expression_attribute_names(STATUS.0, STATUS.1)
                .set_expression_attribute_values(Some(self.settle_values(&status, error, now_ms)))
                .send()
                .await;
            match update {
                Ok(_) => {}
                Err(e) if update_condition_item(&e).is_some() => {}
                Err(e) => return Err(unavailable("UpdateItem", &e)),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl RunStore for DynamoStore {
    fn limits(&self) -> StoreLimits {
        self.limits
    }

    async fn create_run(&self, new: NewRun) -> Result<Created, StoreError> {
        dagy_store::check_new_run(&new)?;
        let mut run = new.run;
        if let Some(key) = &run.idempotency_key
            && let Some(existing) = self.run_of_key(key).await?
        {
            return Ok(existing);
        }
        run.wake_at_ms = run.created_at_ms.saturating_add(DISPATCH_GRACE_MS);
        let abandoned = run.created_at_ms / 1000 + ABANDONED_SECONDS;
        let (items, mut run_item) = new_run_items(&run, &new.flow, abandoned)?;
        // Tells this call's write from another's: a retry whose first try landed finds it.
        let create_token = format!("{:016x}", rand_token());
        run_item.insert("create_token".into(), s(&create_token));
        // Nothing is written unless every item fits, and an existing run's items are never
        // overwritten by the task and flow items written ahead of the run item.
        for candidate in items.iter().chain([&run_item]) {
            item::check_size(candidate)?;
        }
        if self
            .get_item(item::run_pk(&run.run_id), RUN_SK)
            .await?
            .is_some()
        {
            return Err(StoreError::Invalid(format!(
                "run {} already exists",
                run.run_id
            )));
        }
        let written: Vec<Item> = items.iter().map(item::key_of).collect();
        if let Err(e) = self.batch_put(items).await {
            self.delete_quietly(written).await;
            return Err(e);
        }
        let mut actions = vec![self.put_new(run_item)?];
        if let Some(key) = &run.idempotency_key {
            let mut key_item = Item::new();
            key_item.insert("pk".into(), s(item::idempotency_pk(key)));
            key_item.insert("sk".into(), s("IDEMPOTENCY"));
            key_item.insert("kind".into(), s("idempotency"));
            key_item.insert("run_id".into(), s(&run.run_id));
            key_item.insert("expires_at".into(), n(abandoned));
            actions.push(self.put_new(key_item)?);
        }
        let Err(e) = self.transact(actions).await else {
            return Ok(Created { run, created: true });
        };
        if let Some(reasons) = transaction_reasons(&e) {
            if failed_condition(reasons, 1).is_some()
                && let Some(key) = &run.idempotency_key
            {
                // Another trigger with the same key won the race: its run is the answer.
                return self
                    .run_of_key(key)
                    .await?
                    .ok_or_else(|| StoreError::Unavailable("idempotency item vanished".into()));
            }
            if failed_condition(reasons, 0).is_some() {
                // A retried request whose first try landed finds its own run.
                let existing = self.get_item(item::run_pk(&run.run_id), RUN_SK).await?;
                if let Some(existing) = existing
                    && item::opt_s(&existing, "create_token").as_deref()
                        == Some(create_token.as_str())
                {
                    return Ok(Created {
                        run: item::run_record(&existing)?,
                        created: true,
                    });
                }
                return Err(StoreError::Invalid(format!(
                    "run {} already exists",
                    run.run_id
                )));
            }
        }
        // Neither item was written: take the task and flow items back.
        self.delete_quietly(written).await;
        Err(unavailable("TransactWriteItems", &e))
    }

    async fn get_run(&self, run_id: &str) -> Result<RunRecord, StoreError> {
        match self.get_item(item::run_pk(run_id), RUN_SK).await? {
            Some(found) => item::run_record(&found),
            None => Err(StoreError::NotFound {
                run_id: run_id.to_string(),
            }),
        }
    }

    async fn load_run(&self, run_id: &str) -> Result<RunSnapshot, StoreError> {
        let mut run = None;
        let mut chunks: Vec<(String, String)> = Vec::new();
        let mut tasks: HashMap<String, TaskRecord> = HashMap::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(item::run_pk(run_id)))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| unavailable("Query", &e))?;
            for found in out.items() {
                let sk = item::get_s(found, "sk")?;
                if sk == RUN_SK {
                    run = Some(item::run_record(found)?);
                } else if sk.starts_with("FLOW#") {
                    chunks.push((sk, item::get_s(found, "chunk")?));
                } else if sk.starts_with("TASK#") {
                    let task = item::task_record(found)?;
                    tasks.insert(task.task_id.clone(), task);
                }
            }
            match out.last_evaluated_key() {
                Some(key) => start = Some(key.clone()),
                None => break,
            }
        }
        let run = run.ok_or_else(|| StoreError::NotFound {
            run_id: run_id.to_string(),
        })?;
        chunks.sort();
        let text: String = chunks.into_iter().map(|(_, c)| c).collect();
        let flow: dagy_core::FlowSpec = dagy_core::json::from_str(&text).map_err(|e| {
            StoreError::Corrupt(format!("run {run_id}'s stored flow cannot be read: {e}"))
        })?;
        let mut ordered = Vec::with_capacity(flow.tasks.len());
        for spec in &flow.tasks {
            let task = tasks.remove(&spec.id).ok_or_else(|| {
                StoreError::Corrupt(format!("run {run_id} misses the item of task {}", spec.id))
            })?;
            ordered.push(task);
        }
        Ok(RunSnapshot {
            run,
            flow: std::sync::Arc::new(flow),
            tasks: ordered,
        })
    }

    async fn acquire_lease(
        &self,
        run_id: &str,
        owner: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<Lease, StoreError> {
        let expires = now_ms.saturating_add(ttl_ms);
        match self
            .take_lease(run_id, owner, now_ms, expires, true)
            .await?
        {
            Taken::Token(token, _) => Ok(Lease {
                run_id: run_id.to_string(),
                owner: owner.to_string(),
                token,
                expires_at_ms: expires,
                worker: None,
            }),
            Taken::Refused(run) => Err(lease_refusal(*run)),
        }
    }

    async fn join_lease(
        &self,
        run_id: &str,
        owner: &str,
        worker: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<Lease, StoreError> {
        let wanted = now_ms.saturating_add(ttl_ms);
        let joined = |token: u64, expires_at_ms: u64| Lease {
            run_id: run_id.to_string(),
            owner: owner.to_string(),
            token,
            expires_at_ms,
            worker: Some(worker.to_string()),
        };
        // Two workers may find the lease free at once: the one that loses the take-over finds
        // its own owner in the lease and joins on the next round.
        for _ in 0..JOIN_ROUNDS {
            let extended = self
                .update_run(
                    run_id,
                    "SET lease_expires_at_ms = :exp, wake_at_ms = :exp, active_sk = :exp",
                    "lease_owner = :me AND #st = :running AND lease_expires_at_ms < :exp",
                    &[STATUS],
                    vec![
                        (":me", s(owner)),
                        (":exp", n(wanted)),
                        (":running", run_status(RunStatus::Running)),
                    ],
                )
                .await?;
            let old = match extended {
                Updated::Applied(new) => {
                    return Ok(joined(item::get_n(&new, "lease_token")?, wanted));
                }
                Updated::Refused(old) => existing_run(run_id, old)?,
            };
            if old.status.is_final() {
                return Err(lease_refusal(old));
            }
            if let Some(held) = &old.lease
                && held.owner == owner
                && old.status == RunStatus::Running
            {
                // Ours already, and it lasts longer than this worker needs.
                return Ok(joined(held.token, held.expires_at_ms));
            }
            match self
                .take_lease(run_id, owner, now_ms, wanted, false)
                .await?
            {
                Taken::Token(token, _) => return Ok(joined(token, wanted)),
                Taken::Refused(run) => {
                    let ours = run.lease.as_ref().is_none_or(|held| held.owner == owner);
                    if run.status.is_final() || !ours {
                        return Err(lease_refusal(*run));
                    }
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "run {run_id}: the lease changed hands {JOIN_ROUNDS} times while joining it; try again"
        )))
    }

    async fn renew_lease(
        &self,
        lease: &Lease,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<Lease, StoreError> {
        let expires = now_ms.saturating_add(ttl_ms);
        let result = self
            .update_run(
                &lease.run_id,
                "SET lease_expires_at_ms = :exp, wake_at_ms = :exp, active_sk = :exp",
                "lease_token = :token AND lease_owner = :me AND #st = :running",
                &[STATUS],
                vec![
                    (":exp", n(expires)),
                    (":token", n(lease.token)),
                    (":me", s(&lease.owner)),
                    (":running", run_status(RunStatus::Running)),
                ],
            )
            .await?;
        match result {
            Updated::Applied(_) => Ok(Lease {
                expires_at_ms: expires,
                ..lease.clone()
            }),
            Updated::Refused(old) => Err(self.run_refusal(lease, old.as_ref()).await),
        }
    }

    async fn release_lease(&self, lease: &Lease, now_ms: u64) -> Result<(), StoreError> {
        let wake = now_ms.saturating_add(DISPATCH_GRACE_MS);
        // A lease that is no longer ours has nothing to release: the refusal is the answer.
        self.update_run(
            &lease.run_id,
            "REMOVE lease_owner SET lease_expires_at_ms = :zero, wake_at_ms = :wake, active_sk = :wake",
            "lease_token = :token AND lease_owner = :me AND #st = :running",
            &[STATUS],
            vec![
                (":zero", n(0)),
                (":wake", n(wake)),
                (":token", n(lease.token)),
                (":me", s(&lease.owner)),
                (":running", run_status(RunStatus::Running)),
            ],
        )
        .await
        .map(|_| ())
    }

    async fn load_step(&self, run_id: &str) -> Result<Option<StepView>, StoreError> {
        match self.get_item(item::run_pk(run_id), RUN_SK).await? {
            Some(found) => self.step_view(run_id, &found).await,
            None => Err(StoreError::NotFound {
                run_id: run_id.to_string(),
            }),
        }
    }

    async fn acquire_step(
        &self,
        run_id: &str,
        owner: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<(Lease, Option<StepView>), StoreError> {
        let expires = now_ms.saturating_add(ttl_ms);
        match self
            .take_lease(run_id, owner, now_ms, expires, true)
            .await?
        {
            Taken::Token(token, run_item) => {
                let lease = Lease {
                    run_id: run_id.to_string(),
                    owner: owner.to_string(),
                    token,
                    expires_at_ms: expires,
                    worker: None,
                };
                // The take-over answers with the run item: the step reads only its tasks.
                let view = self.step_view(run_id, &run_item).await?;
                Ok((lease, view))
            }
            Taken::Refused(run) => Err(lease_refusal(*run)),
        }
    }

    async fn advance_cursor(
        &self,
        lease: &Lease,
        from: &str,
        to: Option<&Cursor>,
        verdict: Option<&Verdict>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let (update, values) = cursor_move(lease, to, verdict, now_ms)?;
        let result = self
            .update_run(
                &lease.run_id,
                &update,
                CURSOR_MOVE_CONDITION,
                &[STATUS, CURSOR],
                values,
            )
            .await?;
        match result {
            Updated::Applied(_) => Ok(()),
            Updated::Refused(_) => {
                tracing::warn!(
                    run_id = lease.run_id,
                    from,
                    "the cursor did not move: the lease was lost"
                );
                Err(StoreError::LeaseLost {
                    run_id: lease.run_id.clone(),
                })
            }
        }
    }

    async fn start_attempt(
        &self,
        lease: &Lease,
        task_id: &str,
        attempt: u32,
        now_ms: u64,
    ) -> Result<AttemptStart, StoreError> {
        let prev = u64::from(attempt.saturating_sub(1));
        let update = |interrupted: bool| -> Result<Update, StoreError> {
            // The attempt's span is appended here; the condition on `attempts` lets exactly one
            // write per attempt number land, so a retried request never appends twice.
            let (set, condition) = if interrupted {
                (
                    "SET #st = :running, attempts = :attempt, lease_token = :token, attempt_owner = :me, \
                     started_at_ms = if_not_exists(started_at_ms, :now), \
                     #h = list_append(if_not_exists(#h, :none), :span) ADD interruptions :one",
                    "attempts = :prev AND #st = :running AND \
                     (lease_token <> :token OR attempt_owner <> :me)",
                )
            } else {
                (
                    "SET #st = :running, attempts = :attempt, lease_token = :token, attempt_owner = :me, \
                     started_at_ms = if_not_exists(started_at_ms, :now), \
                     #h = list_append(if_not_exists(#h, :none), :span)",
                    "attempts = :prev AND #st IN (:pending, :retrying)",
                )
            };
            let mut u = self
                .task_update(lease, task_id)
                .update_expression(set)
                .condition_expression(condition)
                .expression_attribute_names(HISTORY.0, HISTORY.1)
                .expression_attribute_values(":none", AttributeValue::L(Vec::new()))
                .expression_attribute_values(
                    ":span",
                    AttributeValue::L(vec![item::open_span(attempt, now_ms)]),
                )
                .expression_attribute_values(":running", task_status(TaskStatus::Running))
                .expression_attribute_values(":attempt", n(u64::from(attempt)))
                .expression_attribute_values(":token", n(lease.token))
                .expression_attribute_values(":me", s(lease.attempt_owner()))
                .expression_attribute_values(":now", n(now_ms))
                .expression_attribute_values(":prev", n(prev));
            u = if interrupted {
                u.expression_attribute_values(":one", n(1))
            } else {
                u.expression_attribute_values(":pending", task_status(TaskStatus::Pending))
                    .expression_attribute_values(":retrying", task_status(TaskStatus::Retrying))
            };
            built(u.build())
        };
        let mine = |t: &TaskRecord| {
            t.lease_token == Some(lease.token) && t.owner.as_deref() == Some(lease.attempt_owner())
        };
        let landed =
            |t: &TaskRecord| t.status == TaskStatus::Running && t.attempts == attempt && mine(t);
        let conflict = |t: TaskRecord| StoreError::TaskConflict {
            run_id: lease.run_id.clone(),
            task_id: task_id.to_string(),
            status: t.status,
            attempts: t.attempts,
        };
        match self
            .task_write(lease, task_id, true, update(false)?, landed)
            .await?
        {
            None => Ok(AttemptStart { interrupted: false }),
            Some(task)
                if task.status == TaskStatus::Running
                    && task.attempts == attempt - 1
                    && !mine(&task) =>
            {
                match self
                    .task_write(lease, task_id, true, update(true)?, landed)
                    .await?
                {
                    None => Ok(AttemptStart { interrupted: true }),
                    Some(task) => Err(conflict(task)),
                }
            }
            Some(task) => Err(conflict(task)),
        }
    }

    async fn finish_attempt(
        &self,
        lease: &Lease,
        task_id: &str,
        attempt: u32,
        outcome: AttemptOutcome,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let end = AttemptEnd::checked(self.limits, lease, task_id, attempt, &outcome, now_ms)?;
        let mine = |t: &TaskRecord| {
            t.attempts == attempt
                && t.lease_token == Some(lease.token)
                && t.owner.as_deref() == Some(lease.attempt_owner())
        };
        let landed = |t: &TaskRecord| t.status == end.status && mine(t);
        let conflict = |t: TaskRecord| StoreError::TaskConflict {
            run_id: lease.run_id.clone(),
            task_id: task_id.to_string(),
            status: t.status,
            attempts: t.attempts,
        };
        // Attempt n's span is element n - 1 of a history kept since the task's first attempt.
        let span = usize::try_from(attempt.saturating_sub(1)).ok();
        let update = self.end_update(&end, span)?;
        match self
            .task_write(lease, task_id, false, update, landed)
            .await?
        {
            None => Ok(()),
            Some(task) if task.status == TaskStatus::Running && mine(&task) => {
                // Only the span's guard failed: the history misses earlier attempts (the task
                // started before spans were kept). Close the span where it is, if it has one
                // (the last, as the stores' rule has it), at the cost of this second request.
                let span = task
                    .history
                    .last()
                    .filter(|s| s.attempt == attempt)
                    .map(|_| task.history.len() - 1);
                let update = self.end_update(&end, span)?;
                match self
                    .task_write(lease, task_id, false, update, landed)
                    .await?
                {
                    None => Ok(()),
                    Some(task) => Err(conflict(task)),
                }
            }
            Some(task) => Err(conflict(task)),
        }
    }

    /// One `TransactWriteItems` when the step's end lands as written: the attempt's end on
    /// the task item and the cursor move on the run item (whose lease condition fences both).
    /// Any refusal writes nothing, and the two calls then give the precise answer (a retried
    /// request that already landed, a history without spans, a lost lease).
    async fn finish_and_advance(
        &self,
        lease: &Lease,
        task_id: &str,
        attempt: u32,
        outcome: AttemptOutcome,
        to: Option<&Cursor>,
        verdict: Option<&Verdict>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let end = AttemptEnd::checked(self.limits, lease, task_id, attempt, &outcome, now_ms)?;
        let span = usize::try_from(attempt.saturating_sub(1)).ok();
        let task_update = self.end_update(&end, span)?;
        let (update, values) = cursor_move(lease, to, verdict, now_ms)?;
        let mut run_update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(run_key(&lease.run_id).into_iter().collect()))
            .update_expression(update)
            .condition_expression(CURSOR_MOVE_CONDITION);
        for (placeholder, name) in [STATUS, CURSOR] {
            run_update = run_update.expression_attribute_names(placeholder, name);
        }
        for (k, v) in values {
            run_update = run_update.expression_attribute_values(k, v);
        }
        let items = vec![
            TransactWriteItem::builder()
                .update(built(run_update.build())?)
                .build(),
            TransactWriteItem::builder().update(task_update).build(),
        ];
        match self.transact(items).await {
            Ok(()) => Ok(()),
            Err(e) if transaction_reasons(&e).is_some() => {
                self.finish_attempt(lease, task_id, attempt, outcome.clone(), now_ms)
                    .await?;
                self.advance_cursor(lease, task_id, to, verdict, now_ms)
                    .await
            }
            Err(e) => Err(unavailable("TransactWriteItems", &e)),
        }
    }

    async fn settle_tasks(
        &self,
        lease: &Lease,
        task_ids: &[String],
        status: TaskStatus,
        error: TaskErrorRecord,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        dagy_store::check_settle(self.limits, status, &error)?;
        for chunk in task_ids.chunks(TRANSACTION_TASKS) {
            let mut actions = vec![self.run_check(lease, false)?];
            for id in chunk {
                let update = self
                    .task_update(lease, id)
                    .update_expression(SETTLE_UPDATE)
                    .condition_expression(SETTLE_CONDITION)
                    .set_expression_attribute_values(Some(
                        self.settle_values(&status, &error, now_ms),
                    ));
                actions.push(
                    TransactWriteItem::builder()
                        .update(built(update.build())?)
                        .build(),
                );
            }
            if let Err(e) = self.transact(actions).await {
                let Some(reasons) = transaction_reasons(&e) else {
                    return Err(unavailable("TransactWriteItems", &e));
                };
                if let Some(old) = failed_condition(reasons, 0) {
                    return Err(self.run_refusal(lease, old).await);
                }
                // Some task was final already: settle this chunk one task at a time, which
                // leaves final tasks as they are.
                self.settle_without_lease(&lease.run_id, chunk, status, &error, now_ms)
                    .await?;
            }
        }
        Ok(())
    }

    async fn finish_run(
        &self,
        lease: &Lease,
        status: RunStatus,
        error: Option<String>,
        now_ms: u64,
    ) -> Result<RunRecord, StoreError> {
        dagy_store::check_finish(status)?;
        let expires = self.expires_after_finish(now_ms);
        let mut values = vec![
            (":st", run_status(status)),
            (":now", n(now_ms)),
            (":exp", n(expires)),
            (":token", n(lease.token)),
            (":me", s(&lease.owner)),
            (":running", run_status(RunStatus::Running)),
        ];
        let set_error = match &error {
            Some(message) => {
                values.push((":err", s(message)));
                ", #err = :err"
            }
            None => "",
        };
        let update = format!(
            "SET #st = :st, finished_at_ms = :now, expires_at = :exp{set_error} \
             REMOVE lease_owner, active_pk, active_sk"
        );
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(run_key(&lease.run_id).into_iter().collect()))
            .update_expression(update)
            .condition_expression("lease_token = :token AND lease_owner = :me AND #st = :running")
            .expression_attribute_names(STATUS.0, STATUS.1)
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if error.is_some() {
            request = request.expression_attribute_names("#err", "error");
        }
        for (k, v) in values {
            request = request.expression_attribute_values(k, v);
        }
        let new = match request.send().await {
            Ok(out) => out.attributes().cloned().unwrap_or_default(),
            Err(e) => match update_condition_item(&e) {
                Some(old) => {
                    // A retried request whose first try landed finds the run already final
                    // under our token with our status.
                    if let Some(old) = old
                        && let Ok(run) = item::run_record(old)
                        && run.status == status
                        && item::opt_n(old, "lease_token") == Some(lease.token)
                    {
                        return Ok(run);
                    }
                    return Err(self.run_refusal(lease, old).await);
                }
                None => return Err(unavailable("UpdateItem", &e)),
            },
        };
        let chunks = item::opt_n(&new, "flow_chunks").unwrap_or(0);
        for i in 0..chunks {
            let ttl = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(item::run_pk(&lease.run_id)))
                .key("sk", s(item::flow_sk(i as usize)))
                .update_expression("SET expires_at = :exp")
                .expression_attribute_values(":exp", n(expires))
                .send()
                .await;
            if let Err(e) = ttl {
                tracing::warn!(run_id = lease.run_id, error = %DisplayErrorContext(&e), "could not shorten a flow chunk's TTL; it expires with its 400-day default");
            }
        }
        item::run_record(&new)
    }

    async fn list_runs(
        &self,
        deployment: &str,
        limit: usize,
        next: Option<&str>,
    ) -> Result<RunPage, StoreError> {
        let limit = limit.clamp(1, 1000);
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(crate::BY_DEPLOYMENT_INDEX)
            .key_condition_expression(if next.is_some() {
                "gsi1pk = :d AND gsi1sk < :after"
            } else {
                "gsi1pk = :d"
            })
            .expression_attribute_values(":d", s(item::deployment_pk(deployment)))
            .scan_index_forward(false)
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX));
        if let Some(after) = next {
            query = query.expression_attribute_values(":after", s(after));
        }
        let out = query.send().await.map_err(|e| unavailable("Query", &e))?;
        let mut runs = out
            .items()
            .iter()
            .map(item::run_record)
            .collect::<Result<Vec<_>, _>>()?;
        let more =
            runs.len() > limit || (runs.len() == limit && out.last_evaluated_key().is_some());
        runs.truncate(limit);
        let next = if more {
            runs.last().map(dagy_store::list_key)
        } else {
            None
        };
        Ok(RunPage { runs, next })
    }

    /// A paginated `Scan` of the whole table: DynamoDB keeps no order across the runs of every
    /// flow. Each page (up to 1 MB read) is filtered on the server to the run items
    /// (`sk = RUN`) that pass `filter`, projected to what a run record needs, and merged into
    /// the newest `limit` found so far. So a listing costs the whole table's size in reads,
    /// whatever the filter or `limit`: 128 read units per 1 MB page (eventually consistent),
    /// one request after the other, for at most 32 pages (`RECENT_SCAN_PAGES`); a larger table
    /// is listed from the part scanned, with a warning. Fine for `dagy runs` and a dashboard;
    /// a deployment's runs are cheaper through [`RunStore::list_runs`].
    async fn recent_runs(
        &self,
        filter: &RunFilter,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (condition, values) = recent_filter(filter);
        let projection: Vec<String> = item::RUN_RECORD_ATTRIBUTES
            .iter()
            .map(|a| format!("#{a}"))
            .collect();
        let mut newest: Vec<(String, RunRecord)> = Vec::new();
        let mut start: Option<Item> = None;
        for page in 1..=RECENT_SCAN_PAGES {
            let mut scan = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression(&condition)
                .projection_expression(projection.join(", "))
                .set_exclusive_start_key(start.take());
            for a in item::RUN_RECORD_ATTRIBUTES {
                scan = scan.expression_attribute_names(format!("#{a}"), *a);
            }
            for (k, v) in &values {
                scan = scan.expression_attribute_values(*k, v.clone());
            }
            let out = scan.send().await.map_err(|e| unavailable("Scan", &e))?;
            for found in out.items() {
                let run = item::run_record(found)?;
                if filter.matches(&run) {
                    newest.push((dagy_store::list_key(&run), run));
                }
            }
            newest.sort_unstable_by(|a, b| b.0.cmp(&a.0));
            newest.truncate(limit);
            match out.last_evaluated_key() {
                Some(key) => start = Some(key.clone()),
                None => break,
            }
            if page == RECENT_SCAN_PAGES {
                tracing::warn!(
                    table = self.table,
                    pages = page,
                    "recent_runs stopped scanning: runs in the rest of the table are not listed"
                );
            }
        }
        Ok(newest.into_iter().map(|(_, run)| run).collect())
    }

    async fn find_lapsed_runs(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(crate::LAPSED_INDEX)
            .key_condition_expression("active_pk = :active AND active_sk <= :now")
            .expression_attribute_values(":active", s(ACTIVE))
            .expression_attribute_values(":now", n(now_ms))
            .limit(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000))
            .send()
            .await
            .map_err(|e| unavailable("Query", &e))?;
        out.items()
            .iter()
            .map(item::run_record)
            .filter(|r| r.as_ref().map_or(true, |r| !r.status.is_final()))
            .collect()
    }

    async fn put_deployment(
        &self,
        mut deployment: DeploymentRecord,
    ) -> Result<DeploymentRecord, StoreError> {
        let current = self
            .get_item(item::deployment_pk(&deployment.name), "DEPLOYMENT")
            .await?;
        let version = current
            .as_ref()
            .and_then(|c| item::opt_n(c, "version"))
            .unwrap_or(0);
        deployment.version = version + 1;
        let body = item::deployment_item(&deployment)?;
        let size: usize = body
            .get("flow")
            .and_then(|v| v.as_s().ok())
            .map_or(0, String::len);
        if size > FLOW_CHUNK_BYTES {
            return Err(StoreError::TooLarge {
                what: format!("the flow of deployment {}", deployment.name),
                bytes: size,
                limit: FLOW_CHUNK_BYTES,
            });
        }
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(body));
        put = if version == 0 {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("version = :v")
                .expression_attribute_values(":v", n(version))
        };
        match put.send().await {
            Ok(_) => Ok(deployment),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::Invalid(format!(
                    "deployment {} was changed by someone else at the same time; read it again and retry",
                    deployment.name
                )))
            }
            Err(e) => Err(unavailable("PutItem", &e)),
        }
    }

    async fn get_deployment(&self, name: &str) -> Result<Option<DeploymentRecord>, StoreError> {
        self.get_item(item::deployment_pk(name), "DEPLOYMENT")
            .await?
            .map(|i| item::deployment_record(&i))
            .transpose()
    }

    async fn put_environment(
        &self,
        environment: EnvironmentRecord,
    ) -> Result<EnvironmentRecord, StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item::environment_item(&environment)))
            .send()
            .await
            .map_err(|e| unavailable("PutItem", &e))?;
        Ok(environment)
    }

    async fn get_environment(&self, name: &str) -> Result<Option<EnvironmentRecord>, StoreError> {
        self.get_item(item::environment_pk(name), "ENVIRONMENT")
            .await?
            .map(|i| item::environment_record(&i))
            .transpose()
    }

    async fn request_cancel(&self, run_id: &str, now_ms: u64) -> Result<RunRecord, StoreError> {
        let flagged = self
            .update_run(
                run_id,
                "SET cancel_requested = :true",
                "attribute_exists(pk) AND #st IN (:pending, :running)",
                &[STATUS],
                vec![
                    (":true", b(true)),
                    (":pending", run_status(RunStatus::Pending)),
                    (":running", run_status(RunStatus::Running)),
                ],
            )
            .await?;
        let run = match flagged {
            Updated::Applied(new) => item::run_record(&new)?,
            Updated::Refused(old) => return existing_run(run_id, old),
        };
        if run.status != RunStatus::Pending {
            return Ok(run);
        }
        // Nobody picked the run up: cancel it now, unless an executor takes it meanwhile
        // (then it sees the flag at its first task).
        let cancelled = self
            .update_run(
                run_id,
                "SET #st = :cancelled, finished_at_ms = :now, expires_at = :exp, #err = :err \
                 REMOVE active_pk, active_sk",
                "#st = :pending",
                &[STATUS, ERROR],
                vec![
                    (":cancelled", run_status(RunStatus::Cancelled)),
                    (":now", n(now_ms)),
                    (":exp", n(self.expires_after_finish(now_ms))),
                    (":err", s("cancelled before it started")),
                    (":pending", run_status(RunStatus::Pending)),
                ],
            )
            .await?;
        match cancelled {
            Updated::Applied(new) => {
                let snapshot = self.load_run(run_id).await?;
                let ids: Vec<String> = snapshot.tasks.iter().map(|t| t.task_id.clone()).collect();
                let error = TaskErrorRecord {
                    error_type: "Cancelled".into(),
                    message: "not run: the run was cancelled before it started".into(),
                };
                self.settle_without_lease(run_id, &ids, TaskStatus::Cancelled, &error, now_ms)
                    .await?;
                item::run_record(&new)
            }
            Updated::Refused(_) => self.get_run(run_id).await,
        }
    }
}

/// The server-side filter of a `recent_runs` scan: run items passing `filter`, in the names
/// (`#status`...) the scan's projection gives them; [`RunFilter::matches`] has the last word.
fn recent_filter(filter: &RunFilter) -> (String, Vec<(&'static str, AttributeValue)>) {
    let mut condition = String::from("sk = :run");
    let mut values = vec![(":run", s(RUN_SK))];
    if let Some(status) = filter.status {
        condition.push_str(" AND #status = :status");
        values.push((":status", run_status(status)));
    }
    if let Some(name) = &filter.name {
        condition.push_str(" AND (#flow_name = :name OR #deployment = :name)");
        values.push((":name", s(name)));
    }
    if let Some(since) = filter.since_ms {
        condition.push_str(" AND #created_at_ms >= :since");
        values.push((":since", n(since)));
    }
    if let Some(until) = filter.until_ms {
        condition.push_str(" AND #created_at_ms < :until");
        values.push((":until", n(until)));
    }
    (condition, values)
}

/// A random number for tokens, from the standard library's randomly seeded hasher.
fn rand_token() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// The condition of a cursor move: the run is running under this lease.
const CURSOR_MOVE_CONDITION: &str = "lease_token = :token AND lease_owner = :me AND #st = :running";

/// The update that moves a run's cursor to `to`, records `verdict` when the run has none of its
/// kind yet, and releases the lease, with its values (`#st` and `#cur` named).
type CursorMove = (String, Vec<(&'static str, AttributeValue)>);

fn cursor_move(
    lease: &Lease,
    to: Option<&Cursor>,
    verdict: Option<&Verdict>,
    now_ms: u64,
) -> Result<CursorMove, StoreError> {
    let wake = now_ms.saturating_add(DISPATCH_GRACE_MS);
    let mut update = String::from(
        "REMOVE lease_owner SET #cur = :to, lease_expires_at_ms = :zero, \
         wake_at_ms = :wake, active_sk = :wake",
    );
    let mut values = vec![
        (":to", item::json(&to)?),
        (":zero", n(0)),
        (":wake", n(wake)),
        (":token", n(lease.token)),
        (":me", s(&lease.owner)),
        (":running", run_status(RunStatus::Running)),
    ];
    match verdict {
        Some(Verdict::Cancelled(why)) => {
            update.push_str(", first_cancelled = if_not_exists(first_cancelled, :why)");
            values.push((":why", s(why)));
        }
        Some(Verdict::Failed(why)) => {
            update.push_str(", first_failed = if_not_exists(first_failed, :why)");
            values.push((":why", s(why)));
        }
        None => {}
    }
    Ok((update, values))
}

/// The items of a new run: one per task and one per chunk of its flow's JSON, and the run item
/// (which names how many chunks there are).
fn new_run_items(
    run: &RunRecord,
    flow: &dagy_core::Flow,
    abandoned: u64,
) -> Result<(Vec<Item>, Item), StoreError> {
    let flow_json = serde_json::to_string(flow.spec())
        .map_err(|e| StoreError::Invalid(format!("the flow cannot be stored: {e}")))?;
    let dagy_store::StepLinks { first, next } = dagy_store::step_links(flow);
    let cursor = |index: Option<usize>| index.map(|i| Cursor::at(flow.task(i)));
    let mut items: Vec<Item> = Vec::with_capacity(flow.tasks().len() + 1);
    for (task, next) in flow.tasks().iter().zip(next) {
        let mut task_item = item::task_item(&run.run_id, &task.id, abandoned);
        task_item.insert("spec".into(), item::json(task)?);
        task_item.insert("next".into(), item::json(&cursor(next))?);
        items.push(task_item);
    }
    let chunks = chunk_text(&flow_json, FLOW_CHUNK_BYTES);
    for (i, chunk) in chunks.iter().enumerate() {
        let mut flow_item = Item::new();
        flow_item.insert("pk".into(), s(item::run_pk(&run.run_id)));
        flow_item.insert("sk".into(), s(item::flow_sk(i)));
        flow_item.insert("kind".into(), s("flow"));
        flow_item.insert("chunk".into(), s(*chunk));
        flow_item.insert("expires_at".into(), n(abandoned));
        items.push(flow_item);
    }
    let mut run_item = item::run_item(run, abandoned)?;
    run_item.insert("flow_chunks".into(), n(chunks.len() as u64));
    run_item.insert("cursor".into(), item::json(&cursor(first))?);
    Ok((items, run_item))
}

/// Splits text into pieces of at most `max` bytes, at character boundaries.
fn chunk_text(text: &str, max: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, tail) = rest.split_at(cut);
        pieces.push(piece);
        rest = tail;
    }
    pieces.push(rest);
    pieces
}

#[cfg(test)]
mod tests {
    use super::chunk_text;

    #[test]
    fn chunks_respect_the_size_and_char_boundaries() {
        let text = "aé".repeat(1000);
        let pieces = chunk_text(&text, 7);
        assert!(pieces.iter().all(|p| p.len() <= 7));
        assert_eq!(pieces.concat(), text);
        assert_eq!(chunk_text("", 7), [""]);
    }
}
