//! Engine overhead per task on the in-memory store: a 10,000-task chain of `sum` (each adds 1
//! to its upstream) and a 1,000-task fan-out/fan-in. The handler does almost nothing, so the
//! time per task is the engine's own: store writes, input assembly, spawning, bookkeeping.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

use dagy_core::{Flow, FlowBuilder};
use dagy_engine::{Executor, HandlerRegistry, NewRunRequest, RunOptions, StepOutcome};
use dagy_store::{MemoryStore, RunStatus};

fn fan_out_fan_in(width: usize) -> Flow {
    let mut b = FlowBuilder::new("fan").task("source", "sum", |t| t.args(json!({"add": 1})));
    let mut branches = Vec::with_capacity(width);
    for i in 0..width {
        let id = format!("b{i}");
        b = b.task(id.clone(), "sum", |t| t.depends_on(["source"]));
        branches.push(id);
    }
    b = b.task("join", "sum", move |t| t.depends_on(branches));
    b.build().validate(None).expect("valid fan")
}

/// Total time of `iters` full runs of `flow`, each on a fresh store, run creation excluded.
fn time_runs(
    rt: &tokio::runtime::Runtime,
    registry: &Arc<HandlerRegistry>,
    flow: &Flow,
    iters: u64,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let executor = Executor::new(Arc::new(MemoryStore::new()), registry.clone());
        let run_id = rt
            .block_on(executor.create_run(flow, NewRunRequest::default()))
            .expect("create")
            .run
            .run_id;
        let started = Instant::now();
        let outcome = rt
            .block_on(executor.run(&run_id, &RunOptions::default()))
            .expect("run");
        total += started.elapsed();
        assert_eq!(outcome, StepOutcome::Finished(RunStatus::Completed));
    }
    total
}

fn engine(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let registry = Arc::new(dagy_handlers::registry());
    let mut group = c.benchmark_group("engine");
    group.sample_size(10);

    let chain = dagy_handlers::chain(10_000, "sum", json!({"add": 1}))
        .validate(None)
        .expect("valid chain");
    group.bench_function("chain_10000_sum", |b| {
        b.iter_custom(|iters| time_runs(&rt, &registry, &chain, iters));
    });
    let fan = fan_out_fan_in(1_000);
    group.bench_function("fan_out_fan_in_1000", |b| {
        b.iter_custom(|iters| time_runs(&rt, &registry, &fan, iters));
    });
    group.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
