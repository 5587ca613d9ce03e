//! The SQLite store passes the store conformance suite, and keeps its runs across openings.

use dagy_store::{RunFilter, RunStore};
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
