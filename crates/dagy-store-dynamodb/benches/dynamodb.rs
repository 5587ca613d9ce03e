//! Requests and latency per task on the DynamoDB store, against moto's server on loopback.
//! Prints figures; it is not a timed test. Run: `cargo bench -p dagy-store-dynamodb --bench dynamodb`.
//!
//! Every HTTP request the SDK sends is counted by an interceptor, retries included, so the
//! figure is what DynamoDB would bill.

use dagy_testkit as support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use serde_json::json;

use dagy_engine::{Executor, NewRunRequest, RunOptions};
use dagy_store_dynamodb::DynamoStore;

#[derive(Debug, Default)]
struct Counter(Arc<AtomicU64>);

impl Intercept for Counter {
    fn name(&self) -> &'static str {
        "request-counter"
    }
    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let url = support::endpoint();
        let count = Arc::new(AtomicU64::new(0));
        let base = support::client_for(&url);
        let config = base
            .config()
            .to_builder()
            .interceptor(Counter(count.clone()))
            .build();
        let client = aws_sdk_dynamodb::Client::from_conf(config);
        let store = Arc::new(DynamoStore::new(
            client,
            format!("dagy-bench-{}", std::process::id()),
        ));
        store.create_table().await.expect("table");
        let executor = Executor::new(store.clone(), Arc::new(dagy_handlers::registry()));

        println!("DynamoDB store on moto ({url}), sequential chain of `sum` tasks");
        println!(
            "{:>6} {:>12} {:>14} {:>16} {:>14}",
            "tasks", "create reqs", "run reqs", "reqs per task", "ms per task"
        );
        for n in [10usize, 100, 300] {
            let flow = dagy_handlers::chain(n, "sum", json!({"add": 1}))
                .validate(None)
                .expect("valid");
            let before = count.load(Ordering::Relaxed);
            let run_id = executor
                .create_run(&flow, NewRunRequest::default())
                .await
                .expect("create")
                .run
                .run_id;
            let created = count.load(Ordering::Relaxed);
            let started = Instant::now();
            executor
                .run(&run_id, &RunOptions::default())
                .await
                .expect("run");
            let elapsed = started.elapsed();
            let run_requests = count.load(Ordering::Relaxed) - created;
            println!(
                "{n:>6} {:>12} {run_requests:>14} {:>16.2} {:>14.2}",
                created - before,
                run_requests as f64 / n as f64,
                elapsed.as_secs_f64() * 1000.0 / n as f64
            );
        }
    });
}
