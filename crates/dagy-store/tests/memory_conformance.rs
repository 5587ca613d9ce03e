//! The memory store passes the store conformance suite.

use dagy_store::MemoryStore;

#[tokio::test]
async fn memory_store_conforms() {
    let store = MemoryStore::new();
    dagy_store::conformance::run_all(&store, "memory").await;
}
