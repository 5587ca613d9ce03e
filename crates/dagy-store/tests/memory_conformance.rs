//! The memory store passes the store conformance suite.

use dagy_store::MemoryStore;

#[tokio::test]
async fn memory_store_conforms() {
    let store = MemoryStore::new();
    dagy_store::conformance::run_all(&store, "memory").await;
}

#[tokio::test]
async fn a_taken_run_is_handed_back_whole_and_leaves_the_store() {
    use dagy_store::conformance::new_run;
    use dagy_store::{RunStore, StoreError};

    let store = MemoryStore::new();
    store
        .create_run(new_run("r1", Some("key-1")))
        .await
        .expect("create");
    let loaded = store.load_run("r1").await.expect("load");
    let taken = store.take_run("r1").expect("take");
    assert_eq!(
        (taken.run, taken.tasks, taken.flow),
        (loaded.run, loaded.tasks, loaded.flow)
    );
    assert!(matches!(
        store.load_run("r1").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.take_run("r1"),
        Err(StoreError::NotFound { .. })
    ));
    let again = store
        .create_run(new_run("r2", Some("key-1")))
        .await
        .expect("create");
    assert!(
        again.created,
        "the taken run's idempotency key is free again"
    );
}
