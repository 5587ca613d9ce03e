//! The SQLite store passes the store conformance suite, and keeps its runs across openings.

use dagy_store::{AttemptOutcome, Cursor, RunFilter, RunStore, StoreError, TaskStatus};
use dagy_store_sqlite::SqliteStore;

#[tokio::test]
async fn sqlite_store_conforms() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("runs.db")).expect("open");
    dagy_store::conformance::run_all(&store, "sqlite").await;
}

#[tokio::test]
async fn runs_outlive_the_store_that_wrote_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nested").join("runs.db");
    let written = {
        let store = SqliteStore::open(&path).expect("open");
        dagy_store::conformance::run_all(&store, "reopen").await;
        store
            .recent_runs(&RunFilter::default(), 1000)
            .await
            .expect("list")
    };
    let reopened = SqliteStore::open(&path).expect("open again");
    let read = reopened
        .recent_runs(&RunFilter::default(), 1000)
        .await
        .expect("list");
    assert!(!read.is_empty());
    assert_eq!(read, written);
}

/// A write that fails half-way (here: the next task's stored spec is unreadable, found after the
/// step's end was written) is rolled back whole, and the store goes on working.
#[tokio::test]
async fn a_write_that_fails_half_way_is_rolled_back_and_the_store_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("runs.db");
    let store = SqliteStore::open(&path).expect("open");
    let new = dagy_store::conformance::new_run("half-way", None);
    store.create_run(new).await.expect("create");
    let now = dagy_store::now_ms();
    let lease = store
        .acquire_lease("half-way", "owner", now, 60_000)
        .await
        .expect("lease");
    store
        .start_attempt(&lease, "a", 1, now)
        .await
        .expect("start a");
    let raw = rusqlite::Connection::open(&path).expect("raw open");
    raw.execute("UPDATE tasks SET spec = 'not json' WHERE task_id = 'b'", [])
        .expect("spoil b's spec");
    let to_b = Cursor {
        task_id: "b".into(),
        depends_on: vec!["a".into()],
    };
    let done = || AttemptOutcome::Completed(serde_json::json!(1).into());
    let failed = store
        .finish_and_continue(&lease, "a", 1, done(), &to_b, None, now, 60_000)
        .await;
    assert!(
        matches!(&failed, Err(StoreError::Corrupt(m)) if m.contains("task b")),
        "{failed:?}"
    );
    let snapshot = store.load_run("half-way").await.expect("load");
    assert_eq!(
        (snapshot.tasks[0].status, snapshot.tasks[0].attempts),
        (TaskStatus::Running, 1),
        "a's end was rolled back with the rest"
    );
    store
        .finish_attempt(&lease, "a", 1, done(), now)
        .await
        .expect("the next transaction begins: the failed one was ended");
    let snapshot = store.load_run("half-way").await.expect("load");
    assert_eq!(snapshot.tasks[0].status, TaskStatus::Completed);
}

#[tokio::test]
async fn a_database_from_a_newer_dagy_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("runs.db");
    drop(SqliteStore::open(&path).expect("open"));
    let connection = rusqlite::Connection::open(&path).expect("raw open");
    connection
        .execute_batch("PRAGMA user_version = 99")
        .expect("bump");
    drop(connection);
    let error = SqliteStore::open(&path).expect_err("refused").to_string();
    assert!(error.contains("newer Dagy"), "{error}");
    assert!(error.contains("DAGY_HOME"), "{error}");
}

#[tokio::test]
async fn an_unwritable_place_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a folder").expect("write");
    let error = SqliteStore::open(&file.join("runs.db"))
        .expect_err("refused")
        .to_string();
    assert!(error.contains("cannot create the folder"), "{error}");
}

/// A database file made by an older Dagy: `sql` run on a fresh file.
fn old_database(sql: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("runs.db");
    let old = rusqlite::Connection::open(&path).expect("raw open");
    old.execute_batch(sql).expect("an old database");
    (dir, path)
}

#[tokio::test]
async fn a_schema_1_database_is_migrated_and_keeps_its_runs() {
    // Schema 1: the flow in the runs row.
    let (_dir, path) = old_database(
        r#"CREATE TABLE runs (run_id TEXT PRIMARY KEY, record TEXT NOT NULL, flow TEXT NOT NULL,
             next_token INTEGER NOT NULL, cursor TEXT, first_cancelled TEXT, first_failed TEXT,
             status TEXT NOT NULL, flow_name TEXT NOT NULL, deployment TEXT,
             created_at_ms INTEGER NOT NULL, wake_at_ms INTEGER NOT NULL,
             idempotency_key TEXT UNIQUE);
           CREATE TABLE tasks (run_id TEXT NOT NULL, position INTEGER NOT NULL,
             task_id TEXT NOT NULL, spec TEXT NOT NULL, record TEXT NOT NULL, next TEXT,
             PRIMARY KEY (run_id, task_id));
           INSERT INTO runs VALUES ('old', '{"run_id":"old","flow_name":"f","status":"completed","created_at_ms":1}',
             '{"spec_version":1,"name":"f","tasks":[{"id":"a","handler":"echo"}]}', 2, NULL, NULL,
             NULL, 'completed', 'f', NULL, 1, 1, NULL);
           INSERT INTO tasks VALUES ('old', 0, 'a', '{"id":"a","handler":"echo"}',
             '{"task_id":"a","status":"completed"}', NULL);
           PRAGMA user_version = 1;"#,
    );
    let store = SqliteStore::open(&path).expect("open and migrate");
    let snapshot = store.load_run("old").await.expect("the old run");
    assert_eq!(snapshot.flow.tasks[0].id, "a");
    assert_eq!(snapshot.tasks.len(), 1);
    dagy_store::conformance::run_all(&store, "migrated").await;
}

#[tokio::test]
async fn a_schema_2_database_is_migrated_to_the_status_index_and_keeps_its_open_runs() {
    // Schema 2: open runs indexed by wake_at_ms.
    let (_dir, path) = old_database(
        r#"CREATE TABLE runs (run_id TEXT PRIMARY KEY, record TEXT NOT NULL,
             next_token INTEGER NOT NULL, cursor TEXT, first_cancelled TEXT, first_failed TEXT,
             status TEXT NOT NULL, flow_name TEXT NOT NULL, deployment TEXT,
             created_at_ms INTEGER NOT NULL, wake_at_ms INTEGER NOT NULL,
             idempotency_key TEXT UNIQUE);
           CREATE INDEX runs_active ON runs (wake_at_ms) WHERE status IN ('pending', 'running');
           CREATE TABLE tasks (run_id TEXT NOT NULL, position INTEGER NOT NULL,
             task_id TEXT NOT NULL, spec TEXT NOT NULL, record TEXT NOT NULL, next TEXT,
             PRIMARY KEY (run_id, task_id));
           CREATE TABLE flows (run_id TEXT PRIMARY KEY, flow TEXT NOT NULL);
           INSERT INTO runs VALUES ('waiting', '{"run_id":"waiting","flow_name":"f","status":"pending","created_at_ms":1,"wake_at_ms":5}',
             1, NULL, NULL, NULL, 'pending', 'f', NULL, 1, 5, NULL);
           INSERT INTO flows VALUES ('waiting', '{"spec_version":1,"name":"f","tasks":[{"id":"a","handler":"echo"}]}');
           INSERT INTO tasks VALUES ('waiting', 0, 'a', '{"id":"a","handler":"echo"}',
             '{"task_id":"a","status":"pending"}', NULL);
           PRAGMA user_version = 2;"#,
    );
    let store = SqliteStore::open(&path).expect("open and migrate");
    let lapsed = store.find_lapsed_runs(10, 10).await.expect("sweep");
    assert_eq!(lapsed.len(), 1, "the open run is still found: {lapsed:?}");
    assert_eq!(lapsed[0].run_id, "waiting");
    drop(store);
    let raw = rusqlite::Connection::open(&path).expect("raw open");
    let indexes: Vec<String> = raw
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'runs'")
        .expect("query")
        .query_map([], |row| row.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("names");
    assert!(indexes.contains(&"runs_open".to_string()), "{indexes:?}");
    assert!(!indexes.contains(&"runs_active".to_string()), "{indexes:?}");
    let version: i64 = raw
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .expect("version");
    assert_eq!(version, 3);
    drop(raw);
    let store = SqliteStore::open(&path).expect("open again");
    dagy_store::conformance::run_all(&store, "migrated-2").await;
}
