//! Dagy's persistent embedded run store: one SQLite database file (`$DAGY_HOME/runs.db` by
//! default), in WAL mode, that `dagy run`, `dagy status`, `dagy cancel`, `dagy runs` and
//! `dagy ui` share.
//!
//! Every operation is one `BEGIN IMMEDIATE` transaction that reads the rows it needs, applies
//! the store's rules ([`dagy_store::rules`], the same functions the memory store uses) and
//! writes back. SQLite serializes writers across processes, so two executors of one run, in
//! two processes, see each other's leases and attempts exactly as they would on DynamoDB; a
//! process killed at any point loses nothing that was committed.
//!
//! Rows (see `docs/` for the DynamoDB layout this mirrors): `runs` (the run record as JSON, the
//! fencing-token counter and the micro-step state, with the columns listings filter on),
//! `flows` (each run's flow, apart so a lease write does not rewrite it), `tasks` (per task:
//! its spec, its record as JSON and the cursor after it), `deployments` and `environments`.
//!
//! ```
//! # async fn demo() -> Result<(), dagy_store::StoreError> {
//! use dagy_store::{RunFilter, RunStore};
//! let dir = tempfile::tempdir().map_err(|e| dagy_store::StoreError::Unavailable(e.to_string()))?;
//! let store = dagy_store_sqlite::SqliteStore::open(&dir.path().join("runs.db"))?;
//! assert!(store.recent_runs(&RunFilter::default(), 10).await?.is_empty());
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use dagy_core::{Flow, TaskSpec};
use dagy_store::{
    AttemptOutcome, AttemptStart, Created, Cursor, DISPATCH_GRACE_MS, DeploymentRecord,
    EnvironmentRecord, HandedOn, Lease, NewRun, RunFilter, RunPage, RunRecord, RunSnapshot,
    RunStatus, RunStore, StepState, StepTask, StepView, StoreError, StoreLimits, TaskErrorRecord,
    TaskRecord, TaskStatus, Verdict, list_key, rules,
};

/// The variable naming Dagy's local folder (default `~/.dagy`), where `runs.db` lives.
pub const DAGY_HOME_VAR: &str = "DAGY_HOME";

/// The database's file name in `DAGY_HOME`.
pub const DATABASE_FILE: &str = "runs.db";

/// How long an operation waits for another process's write to end before it gives up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The schema; `user_version` says which one a file has.
const SCHEMA_VERSION: i64 = 3;
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    run_id          TEXT PRIMARY KEY,
    record          TEXT NOT NULL,
    next_token      INTEGER NOT NULL,
    cursor          TEXT,
    first_cancelled TEXT,
    first_failed    TEXT,
    status          TEXT NOT NULL,
    flow_name       TEXT NOT NULL,
    deployment      TEXT,
    created_at_ms   INTEGER NOT NULL,
    wake_at_ms      INTEGER NOT NULL,
    idempotency_key TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS runs_newest ON runs (created_at_ms DESC, run_id DESC);
CREATE INDEX IF NOT EXISTS runs_by_deployment ON runs (deployment, created_at_ms DESC);
CREATE INDEX IF NOT EXISTS runs_open ON runs (status) WHERE status IN ('pending', 'running');
CREATE TABLE IF NOT EXISTS tasks (
    run_id   TEXT NOT NULL REFERENCES runs (run_id),
    position INTEGER NOT NULL,
    task_id  TEXT NOT NULL,
    spec     TEXT NOT NULL,
    record   TEXT NOT NULL,
    next     TEXT,
    PRIMARY KEY (run_id, task_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS tasks_in_order ON tasks (run_id, position);
CREATE TABLE IF NOT EXISTS flows (
    run_id TEXT PRIMARY KEY REFERENCES runs (run_id),
    flow   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deployments (name TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS environments (name TEXT PRIMARY KEY, record TEXT NOT NULL);
";

/// Schema 1 kept each run's flow in its `runs` row, so every lease write rewrote the whole flow:
/// schema 2 keeps it in `flows`.
const MIGRATE_1_TO_2: &str = "
CREATE TABLE flows (run_id TEXT PRIMARY KEY REFERENCES runs (run_id), flow TEXT NOT NULL);
INSERT INTO flows (run_id, flow) SELECT run_id, flow FROM runs;
ALTER TABLE runs DROP COLUMN flow;
";

/// Schema 2 indexed open runs by `wake_at_ms`, which every lease write moves: two of a micro
/// step's six written pages were that index. Schema 3 indexes open runs by status, which a run
/// changes three times in its life; the sweep filters the few open runs by time.
const MIGRATE_2_TO_3: &str = "DROP INDEX IF EXISTS runs_active;";

/// `$DAGY_HOME/runs.db`, with `DAGY_HOME` defaulting to `~/.dagy`.
pub fn default_path() -> Result<PathBuf, StoreError> {
    let home = match std::env::var_os(DAGY_HOME_VAR).filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .map(|home| PathBuf::from(home).join(".dagy"))
            .ok_or_else(|| {
                StoreError::Unavailable(format!(
                    "neither {DAGY_HOME_VAR} nor HOME is set: set {DAGY_HOME_VAR} to the folder \
                     where Dagy should keep its runs"
                ))
            })?,
    };
    Ok(home.join(DATABASE_FILE))
}

/// Runs kept in a SQLite database file.
#[derive(Debug)]
pub struct SqliteStore {
    connection: Mutex<Connection>,
    path: PathBuf,
    limits: StoreLimits,
}

impl SqliteStore {
    /// Opens (creating it and its folder when missing) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let cannot = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::Unavailable(format!(
                "cannot {what} the run database {}: {e}; check the folder's permissions, or \
                 set {DAGY_HOME_VAR} to another folder",
                path.display()
            ))
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| cannot("create the folder of", &e))?;
        }
        let connection = Connection::open(path).map_err(|e| cannot("open", &e))?;
        connection
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| cannot("configure", &e))?;
        // WAL: readers never block the writer; NORMAL: a commit survives a killed process
        // (only a power cut can lose the last commits).
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                 PRAGMA temp_store = MEMORY;",
            )
            .map_err(|e| cannot("configure", &e))?;
        // Every statement the store runs stays prepared for the connection's life.
        connection.set_prepared_statement_cache_capacity(64);
        let version: i64 = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|e| cannot("read", &e))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Unavailable(format!(
                "the run database {} was written by a newer Dagy (schema {version}, this one \
                 knows {SCHEMA_VERSION}): upgrade dagy, or set {DAGY_HOME_VAR} to another folder",
                path.display()
            )));
        }
        let migration = match version {
            1 => format!("{MIGRATE_1_TO_2} {MIGRATE_2_TO_3}"),
            2 => MIGRATE_2_TO_3.to_string(),
            _ => String::new(),
        };
        connection
            .execute_batch(&format!(
                "BEGIN IMMEDIATE; {migration} {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; \
                 COMMIT;"
            ))
            .map_err(|e| cannot("set up", &e))?;
        Ok(SqliteStore {
            connection: Mutex::new(connection),
            path: path.to_path_buf(),
            limits: StoreLimits::default(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // Every operation is a transaction: a panic in one rolls it back, so the connection
        // is still usable.
        self.connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `work` in one write transaction, committed when it succeeds.
    fn write<T>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let connection = self.lock();
        let tx = Open::begin(&connection, "BEGIN IMMEDIATE").map_err(|e| self.failed(&e))?;
        let value = work(&connection)?;
        tx.commit().map_err(|e| self.failed(&e))?;
        Ok(value)
    }

    /// Records how an attempt ended, inside `tx`: the run's row and the task's record are
    /// returned for what may follow in the same transaction.
    #[allow(clippy::too_many_arguments)]
    fn end_attempt(
        tx: &Connection,
        lease: &Lease,
        task_id: &str,
        attempt: u32,
        outcome: AttemptOutcome,
        intended: TaskStatus,
        now_ms: u64,
    ) -> Result<(RunRow, TaskRecord), StoreError> {
        let row = read_run(tx, &lease.run_id)?;
        rules::fence(&row.run, lease)?;
        let mut task = read_task(tx, &lease.run_id, task_id)?;
        rules::finish_attempt(
            &row.run, &mut task, lease, attempt, outcome, intended, now_ms,
        )?;
        write_task(tx, &lease.run_id, &task)?;
        Ok((row, task))
    }

    /// Runs `work` in one read transaction (a consistent snapshot).
    fn read<T>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let connection = self.lock();
        let _tx = Open::begin(&connection, "BEGIN DEFERRED").map_err(|e| self.failed(&e))?;
        work(&connection)
    }

    fn failed(&self, e: &rusqlite::Error) -> StoreError {
        failed(&self.path, e)
    }
}

/// An open transaction, rolled back when dropped uncommitted (an error, or a panic). Its
/// `BEGIN`, `COMMIT` and `ROLLBACK` are cached statements: a micro step commits once, and
/// preparing them afresh each time (what `rusqlite::Transaction` does) cost a tenth of it.
struct Open<'c> {
    connection: &'c Connection,
    committed: bool,
}

impl<'c> Open<'c> {
    fn begin(connection: &'c Connection, begin: &str) -> rusqlite::Result<Open<'c>> {
        run(connection, begin)?;
        Ok(Open {
            connection,
            committed: false,
        })
    }

    fn commit(mut self) -> rusqlite::Result<()> {
        run(self.connection, "COMMIT")?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        // A failed COMMIT may have ended the transaction already.
        if !self.committed && !self.connection.is_autocommit() {
            let _ = run(self.connection, "ROLLBACK");
        }
    }
}

/// Runs one statement without parameters, prepared once for the connection's life.
fn run(connection: &Connection, sql: &str) -> rusqlite::Result<()> {
    connection.prepare_cached(sql)?.execute([])?;
    Ok(())
}

fn failed(path: &Path, e: &rusqlite::Error) -> StoreError {
    let hint = match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            "; another process kept it locked for too long: try again"
        }
        Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::PermissionDenied) => {
            "; the file or its folder is not writable"
        }
        Some(rusqlite::ErrorCode::DiskFull) => "; the disk is full",
        _ => "",
    };
    StoreError::Unavailable(format!("the run database {}: {e}{hint}", path.display()))
}

/// A database error inside a transaction (the path is added by the caller's context).
fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("the run database: {e}"))
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Invalid(format!("cannot encode: {e}")))
}

/// Decodes a stored record; `what` names it in the error (written only then).
fn decode<T: DeserializeOwned>(text: &str, what: impl FnOnce() -> String) -> Result<T, StoreError> {
    dagy_core::json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{}: {e}", what())))
}

fn decode_opt<T: DeserializeOwned>(
    text: Option<String>,
    what: impl FnOnce() -> String,
) -> Result<Option<T>, StoreError> {
    text.map(|t| decode(&t, what)).transpose()
}

/// A run's row, decoded.
struct RunRow {
    run: RunRecord,
    next_token: u64,
    steps: StepState,
    /// The status as read: a write that keeps it leaves the `runs_open` index alone.
    read_status: RunStatus,
}

fn read_run(tx: &Connection, run_id: &str) -> Result<RunRow, StoreError> {
    let what = || format!("run {run_id}");
    let decoded = tx
        .prepare_cached(
            "SELECT record, next_token, cursor, first_cancelled, first_failed
             FROM runs WHERE run_id = ?1",
        )
        .map_err(db)?
        .query_row([run_id], |row| {
            let record: String = row.get(0)?;
            let next_token: i64 = row.get(1)?;
            let cursor: Option<String> = row.get(2)?;
            Ok((|| {
                let run: RunRecord = decode(&record, what)?;
                Ok(RunRow {
                    read_status: run.status,
                    run,
                    next_token: u64::try_from(next_token).unwrap_or(0),
                    steps: StepState {
                        cursor: decode_opt(cursor, || format!("the cursor of {}", what()))?,
                        first_cancelled: row.get(3).map_err(db)?,
                        first_failed: row.get(4).map_err(db)?,
                    },
                })
            })())
        })
        .optional()
        .map_err(db)?;
    decoded.ok_or_else(|| StoreError::NotFound {
        run_id: run_id.to_string(),
    })?
}

/// Writes the run record (and the columns derived from it) and its step state. The status
/// column is written only when it changed, so the `runs_open` index is left alone otherwise.
fn write_run(tx: &Connection, row: &RunRow) -> Result<(), StoreError> {
    const KEEP_STATUS: &str = "UPDATE runs SET record = ?2, next_token = ?3, cursor = ?4,
             first_cancelled = ?5, first_failed = ?6, wake_at_ms = ?7
         WHERE run_id = ?1";
    const NEW_STATUS: &str = "UPDATE runs SET record = ?2, next_token = ?3, cursor = ?4,
             first_cancelled = ?5, first_failed = ?6, wake_at_ms = ?7, status = ?8
         WHERE run_id = ?1";
    let run = &row.run;
    let record = encode(run)?;
    let cursor = row.steps.cursor.as_ref().map(encode).transpose()?;
    let next_token = i64::try_from(row.next_token).unwrap_or(i64::MAX);
    let wake_at_ms = i64::try_from(run.wake_at_ms).unwrap_or(i64::MAX);
    let status = run.status.to_string();
    let mut values: Vec<&dyn rusqlite::ToSql> = vec![
        &run.run_id,
        &record,
        &next_token,
        &cursor,
        &row.steps.first_cancelled,
        &row.steps.first_failed,
        &wake_at_ms,
    ];
    let sql = if run.status == row.read_status {
        KEEP_STATUS
    } else {
        values.push(&status);
        NEW_STATUS
    };
    tx.prepare_cached(sql)
        .map_err(db)?
        .execute(values.as_slice())
        .map_err(db)?;
    Ok(())
}

fn read_task(tx: &Connection, run_id: &str, task_id: &str) -> Result<TaskRecord, StoreError> {
    let record: Option<String> = tx
        .prepare_cached("SELECT record FROM tasks WHERE run_id = ?1 AND task_id = ?2")
        .map_err(db)?
        .query_row([run_id, task_id], |row| row.get(0))
        .optional()
        .map_err(db)?;
    let record = record.ok_or_else(|| StoreError::UnknownTask {
        run_id: run_id.to_string(),
        task_id: task_id.to_string(),
    })?;
    decode(&record, || format!("task {task_id} of run {run_id}"))
}

fn write_task(tx: &Connection, run_id: &str, task: &TaskRecord) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE tasks SET record = ?3 WHERE run_id = ?1 AND task_id = ?2")
        .map_err(db)?
        .execute(params![run_id, task.task_id, encode(task)?])
        .map_err(db)?;
    Ok(())
}

fn all_tasks(tx: &Connection, run_id: &str) -> Result<Vec<TaskRecord>, StoreError> {
    let mut statement = tx
        .prepare_cached("SELECT record FROM tasks WHERE run_id = ?1 ORDER BY position")
        .map_err(db)?;
    let rows = statement
        .query_map([run_id], |row| row.get::<_, String>(0))
        .map_err(db)?;
    rows.map(|text| decode(&text.map_err(db)?, || format!("a task of run {run_id}")))
        .collect()
}

/// Runs matching an SQL condition on the `runs` table, decoded.
fn query_runs(
    tx: &Connection,
    condition: &str,
    values: &[&dyn rusqlite::ToSql],
) -> Result<Vec<RunRecord>, StoreError> {
    let mut statement = tx
        .prepare(&format!("SELECT record FROM runs WHERE {condition}"))
        .map_err(db)?;
    let rows = statement
        .query_map(values, |row| row.get::<_, String>(0))
        .map_err(db)?;
    rows.map(|text| decode(&text.map_err(db)?, || "a run".into()))
        .collect()
}

fn as_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The task rows of a new run: position, id, spec, record, next cursor.
type NewTaskRow = (i64, String, String, String, Option<String>);

fn new_task_rows(flow: &Flow) -> Result<(Option<Cursor>, Vec<NewTaskRow>), StoreError> {
    let dagy_store::StepLinks { first, next } = dagy_store::step_links(flow);
    let cursor = |index: Option<usize>| index.map(|i| Cursor::at(flow.task(i)));
    let rows = flow
        .tasks()
        .iter()
        .zip(next)
        .enumerate()
        .map(|(position, (spec, after))| {
            Ok((
                i64::try_from(position).unwrap_or(i64::MAX),
                spec.id.clone(),
                encode(spec)?,
                encode(&TaskRecord::pending(spec.id.clone()))?,
                cursor(after).as_ref().map(encode).transpose()?,
            ))
        })
        .collect::<Result<_, StoreError>>()?;
    Ok((cursor(first), rows))
}

#[async_trait]
impl RunStore for SqliteStore {
    fn limits(&self) -> StoreLimits {
        self.limits
    }

    async fn create_run(&self, new: NewRun) -> Result<Created, StoreError> {
        dagy_store::check_new_run(&new)?;
        let (first, task_rows) = new_task_rows(&new.flow)?;
        let flow = encode(new.flow.spec())?;
        let mut run = new.run;
        run.wake_at_ms = run.created_at_ms.saturating_add(DISPATCH_GRACE_MS);
        self.write(|tx| {
            if let Some(key) = &run.idempotency_key {
                let existing: Option<String> = tx
                    .prepare_cached("SELECT record FROM runs WHERE idempotency_key = ?1")
                    .map_err(db)?
                    .query_row([key], |row| row.get(0))
                    .optional()
                    .map_err(db)?;
                if let Some(record) = existing {
                    return Ok(Created {
                        run: decode(&record, || "a run".into())?,
                        created: false,
                    });
                }
            }
            let exists: bool = tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM runs WHERE run_id = ?1)")
                .map_err(db)?
                .query_row([&run.run_id], |row| row.get(0))
                .map_err(db)?;
            if exists {
                return Err(StoreError::Invalid(format!(
                    "run {} already exists",
                    run.run_id
                )));
            }
            tx.prepare_cached(
                "INSERT INTO runs (run_id, record, next_token, cursor, status, flow_name,
                     deployment, created_at_ms, wake_at_ms, idempotency_key)
                 VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .map_err(db)?
            .execute(params![
                run.run_id,
                encode(&run)?,
                first.as_ref().map(encode).transpose()?,
                run.status.to_string(),
                run.flow_name,
                run.deployment,
                as_i64(run.created_at_ms),
                as_i64(run.wake_at_ms),
                run.idempotency_key,
            ])
            .map_err(db)?;
            tx.prepare_cached("INSERT INTO flows (run_id, flow) VALUES (?1, ?2)")
                .map_err(db)?
                .execute(params![run.run_id, flow])
                .map_err(db)?;
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO tasks (run_id, position, task_id, spec, record, next)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(db)?;
            for (position, task_id, spec, record, next) in &task_rows {
                insert
                    .execute(params![run.run_id, position, task_id, spec, record, next])
                    .map_err(db)?;
            }
            Ok(Created {
                run: run.clone(),
                created: true,
            })
        })
    }

    async fn get_run(&self, run_id: &str) -> Result<RunRecord, StoreError> {
        self.read(|tx| Ok(read_run(tx, run_id)?.run))
    }

    async fn load_run(&self, run_id: &str) -> Result<RunSnapshot, StoreError> {
        self.read(|tx| {
            let run = read_run(tx, run_id)?.run;
            let flow: String = tx
                .query_row(
                    "SELECT flow FROM flows WHERE run_id = ?1",
                    [run_id],
                    |row| row.get(0),
                )
                .map_err(db)?;
            Ok(RunSnapshot {
                run,
                flow: std::sync::Arc::new(decode(&flow, || format!("the flow of run {run_id}"))?),
                tasks: all_tasks(tx, run_id)?,
            })
        })
    }

    async fn acquire_lease(
        &self,
        run_id: &str,
        owner: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<Lease, StoreError> {
        self.write(|tx| {
            let mut row = read_run(tx, run_id)?;
            let lease = rules::acquire(&mut row.run, &mut row.next_token, owner, now_ms, ttl_ms)?;
            write_run(tx, &row)?;
            Ok(lease)
        })
    }

    async fn join_lease(
        &self,
        run_id: &str,
        owner: &str,
        worker: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<Lease, StoreError> {
        self.write(|tx| {
            let mut row = read_run(tx, run_id)?;
            let lease = rules::join(
                &mut row.run,
                &mut row.next_token,
                owner,
                worker,
                now_ms,
                ttl_ms,
            )?;
            write_run(tx, &row)?;
            Ok(lease)
        })
    }

    async fn renew_lease(
        &self,
        lease: &Lease,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<Lease, StoreError> {
        self.write(|tx| {
            let mut row = read_run(tx, &lease.run_id)?;
            let renewed = rules::renew(&mut row.run, lease, now_ms, ttl_ms)?;
            write_run(tx, &row)?;
            Ok(renewed)
        })
    }

    async fn release_lease(&self, lease: &Lease, now_ms: u64) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut row = read_run(tx, &lease.run_id)?;
            rules::release(&mut row.run, lease, now_ms);
            write_run(tx, &row)
        })
    }

    async fn load_step(&self, run_id: &str) -> Result<Option<StepView>, StoreError> {
        self.read(|tx| Ok(Some(step_view(tx, read_run(tx, run_id)?, None)?)))
    }

    async fn acquire_step(
        &self,
        run_id: &str,
        owner: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<(Lease, Option<StepView>), StoreError> {
        // One transaction for both: the lease write and the step's reads.
        self.write(|tx| {
            let mut row = read_run(tx, run_id)?;
            let lease = rules::acquire(&mut row.run, &mut row.next_token, owner, now_ms, ttl_ms)?;
            write_run(tx, &row)?;
            Ok((lease, Some(step_view(tx, row, None)?)))
        })
    }

    async fn advance_cursor(
        &self,
        lease: &Lease,
        from: &str,
        to: Option<&Cursor>,
        verdict: Option<&Verdict>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut row = read_run(tx, &lease.run_id)?;
            rules::fence(&row.run, lease)?;
            row.steps.advance(from, to, verdict);
            rules::free(&mut row.run, now_ms);
            write_run(tx, &row)
        })
    }

    async fn start_attempt(
        &self,
        lease: &Lease,
        task_id: &str,
        attempt: u32,
        now_ms: u64,
    ) -> Result<AttemptStart, StoreError> {
        self.write(|tx| {
            let row = read_run(tx, &lease.run_id)?;
            rules::fence(&row.run, lease)?;
            let mut task = read_task(tx, &lease.run_id, task_id)?;
            let start = rules::start_attempt(&row.run, &mut task, lease, attempt, now_ms)?;
            write_task(tx, &lease.run_id, &task)?;
            Ok(start)
        })
    }

    async fn finish_attempt(
        &self,
        lease: &Lease,
        task_id: &str,
        attempt: u32,
        outcome: AttemptOutcome,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let intended = dagy_store::check_outcome(self.limits, task_id, &outcome)?;
        self.write(|tx| {
            Self::end_attempt(tx, lease, task_id, attempt, outcome, intended, now_ms).map(drop)
        })
    }

    /// One transaction: a micro step's end is one commit, not two.
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
        let intended = dagy_store::check_outcome(self.limits, task_id, &outcome)?;
        self.write(|tx| {
            let (mut row, _) =
                Self::end_attempt(tx, lease, task_id, attempt, outcome, intended, now_ms)?;
            row.steps.advance(task_id, to, verdict);
            rules::free(&mut row.run, now_ms);
            write_run(tx, &row)
        })
    }

    /// One transaction: the step's end, the cursor's move, the lease kept, the next step read
    /// and its attempt started: a chain of micro steps commits once a step.
    async fn finish_and_continue(
        &self,
        lease: &Lease,
        task_id: &str,
        attempt: u32,
        outcome: AttemptOutcome,
        to: &Cursor,
        verdict: Option<&Verdict>,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<HandedOn, StoreError> {
        let intended = dagy_store::check_outcome(self.limits, task_id, &outcome)?;
        self.write(|tx| {
            let (mut row, finished) =
                Self::end_attempt(tx, lease, task_id, attempt, outcome, intended, now_ms)?;
            row.steps.advance(task_id, Some(to), verdict);
            let lease = rules::renew(&mut row.run, lease, now_ms, ttl_ms)?;
            write_run(tx, &row)?;
            let view = step_view(tx, row, Some(&finished))?;
            // A start the rules refuse leaves the record as it was and is not an error here:
            // the step starts the attempt itself and meets the refusal there.
            let started = match (view.next_attempt(), &view.task) {
                (Some(attempt), Some(step)) => {
                    let mut record = step.record.clone();
                    match rules::start_attempt(&view.run, &mut record, &lease, attempt, now_ms) {
                        Ok(start) => {
                            write_task(tx, &lease.run_id, &record)?;
                            Some((attempt, start))
                        }
                        Err(_) => None,
                    }
                }
                _ => None,
            };
            Ok(HandedOn {
                lease,
                view,
                started,
            })
        })
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
        self.write(|tx| {
            let row = read_run(tx, &lease.run_id)?;
            rules::fence(&row.run, lease)?;
            for id in task_ids {
                let mut task = read_task(tx, &lease.run_id, id)?;
                if rules::settle(&mut task, status, &error, now_ms) {
                    write_task(tx, &lease.run_id, &task)?;
                }
            }
            Ok(())
        })
    }

    async fn finish_run(
        &self,
        lease: &Lease,
        status: RunStatus,
        error: Option<String>,
        now_ms: u64,
    ) -> Result<RunRecord, StoreError> {
        self.write(|tx| {
            let mut row = read_run(tx, &lease.run_id)?;
            let run = rules::finish_run(&mut row.run, lease, status, error, now_ms)?;
            write_run(tx, &row)?;
            Ok(run)
        })
    }

    async fn list_runs(
        &self,
        deployment: &str,
        limit: usize,
        next: Option<&str>,
    ) -> Result<RunPage, StoreError> {
        let limit = limit.clamp(1, 1000);
        let fetch = as_i64(limit as u64 + 1);
        let mut runs = self.read(|tx| {
            query_runs(
                tx,
                "deployment = ?1 AND printf('%020d#%s', created_at_ms, run_id) < ?2
                 ORDER BY created_at_ms DESC, run_id DESC LIMIT ?3",
                &[&deployment, &next.unwrap_or("~"), &fetch],
            )
        })?;
        let more = runs.len() > limit;
        runs.truncate(limit);
        let next = if more {
            runs.last().map(list_key)
        } else {
            None
        };
        Ok(RunPage { runs, next })
    }

    async fn recent_runs(
        &self,
        filter: &RunFilter,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let status = filter.status.map(|s| s.to_string());
        let since = filter.since_ms.map(as_i64);
        let until = filter.until_ms.map(as_i64);
        let limit = as_i64(limit as u64);
        let runs = self.read(|tx| {
            query_runs(
                tx,
                "(?1 IS NULL OR status = ?1)
                 AND (?2 IS NULL OR flow_name = ?2 OR deployment = ?2)
                 AND (?3 IS NULL OR created_at_ms >= ?3)
                 AND (?4 IS NULL OR created_at_ms < ?4)
                 ORDER BY created_at_ms DESC, run_id DESC LIMIT ?5",
                &[&status, &filter.name, &since, &until, &limit],
            )
        })?;
        Ok(runs.into_iter().filter(|r| filter.matches(r)).collect())
    }

    async fn find_lapsed_runs(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let limit = as_i64(limit as u64);
        self.read(|tx| {
            query_runs(
                tx,
                "status IN ('pending', 'running') AND wake_at_ms <= ?1
                 ORDER BY wake_at_ms, run_id LIMIT ?2",
                &[&as_i64(now_ms), &limit],
            )
        })
    }

    async fn put_deployment(
        &self,
        mut deployment: DeploymentRecord,
    ) -> Result<DeploymentRecord, StoreError> {
        self.write(|tx| {
            let version = get_named::<DeploymentRecord>(tx, "deployments", &deployment.name)?
                .map_or(0, |d| d.version);
            deployment.version = version + 1;
            put_named(tx, "deployments", &deployment.name, &deployment)?;
            Ok(deployment)
        })
    }

    async fn get_deployment(&self, name: &str) -> Result<Option<DeploymentRecord>, StoreError> {
        self.read(|tx| get_named(tx, "deployments", name))
    }

    async fn put_environment(
        &self,
        environment: EnvironmentRecord,
    ) -> Result<EnvironmentRecord, StoreError> {
        self.write(|tx| {
            put_named(tx, "environments", &environment.name, &environment)?;
            Ok(environment)
        })
    }

    async fn get_environment(&self, name: &str) -> Result<Option<EnvironmentRecord>, StoreError> {
        self.read(|tx| get_named(tx, "environments", name))
    }

    async fn request_cancel(&self, run_id: &str, now_ms: u64) -> Result<RunRecord, StoreError> {
        self.write(|tx| {
            let mut row = read_run(tx, run_id)?;
            if rules::request_cancel(&mut row.run, now_ms) {
                for mut task in all_tasks(tx, run_id)? {
                    rules::cancel_pending_task(&mut task, now_ms);
                    write_task(tx, run_id, &task)?;
                }
            }
            write_run(tx, &row)?;
            Ok(row.run)
        })
    }
}

/// What a micro step reads of the run in `row`: the run, its step state and the task at its
/// cursor.
/// The step at the run's cursor. `known` is a task record this transaction just wrote (most
/// often the next task's one upstream): it is not read back.
fn step_view(
    tx: &Connection,
    row: RunRow,
    known: Option<&TaskRecord>,
) -> Result<StepView, StoreError> {
    let task = match &row.steps.cursor {
        None => None,
        Some(cursor) => Some(step_task(tx, &row.run.run_id, cursor, known)?),
    };
    Ok(StepView {
        run: row.run,
        state: row.steps,
        task,
    })
}

/// The task at `cursor` with its spec, the cursor after it and its upstream records.
fn step_task(
    tx: &Connection,
    run_id: &str,
    cursor: &Cursor,
    known: Option<&TaskRecord>,
) -> Result<StepTask, StoreError> {
    let found: Option<(String, String, Option<String>)> = tx
        .prepare_cached("SELECT spec, record, next FROM tasks WHERE run_id = ?1 AND task_id = ?2")
        .map_err(db)?
        .query_row([run_id, &cursor.task_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()
        .map_err(db)?;
    let what = || format!("task {} of run {run_id}", cursor.task_id);
    let (spec, record, next) = found
        .ok_or_else(|| StoreError::Corrupt(format!("the cursor names a missing {}", what())))?;
    let upstream = cursor
        .depends_on
        .iter()
        .map(|id| match known.filter(|k| k.task_id == *id) {
            Some(record) => Ok(record.clone()),
            None => read_task(tx, run_id, id),
        })
        .collect::<Result<_, _>>()?;
    Ok(StepTask {
        spec: decode::<TaskSpec>(&spec, what)?,
        record: decode(&record, what)?,
        next: decode_opt(next, what)?,
        upstream,
    })
}

fn get_named<T: DeserializeOwned>(
    tx: &Connection,
    table: &str,
    name: &str,
) -> Result<Option<T>, StoreError> {
    let record: Option<String> = tx
        .query_row(
            &format!("SELECT record FROM {table} WHERE name = ?1"),
            [name],
            |row| row.get(0),
        )
        .optional()
        .map_err(db)?;
    decode_opt(record, || format!("{name} in {table}"))
}

fn put_named<T: Serialize>(
    tx: &Connection,
    table: &str,
    name: &str,
    record: &T,
) -> Result<(), StoreError> {
    tx.execute(
        &format!(
            "INSERT INTO {table} (name, record) VALUES (?1, ?2)
                  ON CONFLICT (name) DO UPDATE SET record = excluded.record"
        ),
        params![name, encode(record)?],
    )
    .map_err(db)?;
    Ok(())
}
