//! The DynamoDB store passes the same conformance suite as the memory store, against moto's
//! DynamoDB-compatible server over loopback.

use dagy_testkit as support;

#[tokio::test]
async fn dynamodb_store_conforms() {
    let store = support::fresh_store("conformance").await;
    dagy_store::conformance::run_all(&store, "dynamodb").await;
}
