//! What the engine's test suites share.

use dagy_core::{Flow, FlowSpec};
use dagy_engine::{Executor, NewRunRequest};

/// Creates a run of `spec` (which must be valid) and returns its id.
pub async fn start_run(executor: &Executor, spec: FlowSpec) -> String {
    let flow: Flow = spec.validate(None).expect("a valid flow");
    executor
        .create_run(&flow, NewRunRequest::default())
        .await
        .expect("create the run")
        .run
        .run_id
}
