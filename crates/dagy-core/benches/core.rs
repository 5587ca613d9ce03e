//! Benchmarks of dagy-core's hot paths: validating and ordering a 100,000-task DAG (as a
//! [`FlowSpec`] and as JSON text) and the router's tier decision for a small flow.
//!
//! Run with `cargo bench -j2 -p dagy-core --bench core`. Goals: validation and ordering of
//! 100k tasks under 100 ms; a tier decision under 10 µs.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use dagy_core::{
    Flow, FlowBuilder, FlowProfile, FlowSpec, PlanRequest, RuntimeTier, Settings, TaskSpec,
    TierInputs, plan, resolve_tier,
};

/// Tasks in the large DAG.
const LARGE: usize = 100_000;
/// Most dependencies a task of the large DAG has.
const MAX_DEPS: u64 = 3;

/// Marsaglia's xorshift64: deterministic and dependency-free, plenty for shaping a test graph.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (`n > 0`); the modulo bias is irrelevant here.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A random DAG of `n` tasks: task `i` depends on up to [`MAX_DEPS`] distinct earlier tasks.
fn random_dag(n: usize, seed: u64) -> FlowSpec {
    let mut rng = XorShift(seed);
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let mut task = TaskSpec::new(format!("t{i}"), "echo");
        if i > 0 {
            let wanted = rng.below(MAX_DEPS + 1);
            for _ in 0..wanted {
                let dep = format!("t{}", rng.below(i as u64));
                if !task.depends_on.contains(&dep) {
                    task.depends_on.push(dep);
                }
            }
        }
        if i % 10 == 0 {
            task.timeout_seconds = Some(30.0);
        }
        tasks.push(task);
    }
    FlowSpec {
        spec_version: dagy_core::flow::SPEC_VERSION,
        name: "bench-100k".into(),
        parameters: serde_json::Map::new(),
        tasks,
    }
}

fn validate_and_order_100k(c: &mut Criterion) {
    let spec = random_dag(LARGE, 0x9E37_79B9_7F4A_7C15);
    let edges: usize = spec.tasks.iter().map(|t| t.depends_on.len()).sum();
    eprintln!("validate_and_order_100k: {LARGE} tasks, {edges} dependencies");
    let mut group = c.benchmark_group("large");
    group.sample_size(10);
    group.bench_function("validate_and_order_100k", |b| {
        b.iter_batched(
            || spec.clone(),
            |spec| {
                let flow = spec.validate(None).expect("the generated DAG is valid");
                black_box(flow.order().len());
                // Returned, so dropping the flow is not timed either.
                flow
            },
            BatchSize::PerIteration,
        );
    });

    let text = serde_json::to_string(&spec).expect("a spec without closures serializes");
    eprintln!("parse_validate_100k_json: {} bytes of JSON", text.len());
    group.bench_function("parse_validate_100k_json", |b| {
        b.iter_with_large_drop(|| {
            let flow = Flow::from_json(black_box(&text), None).expect("the JSON is a valid flow");
            black_box(flow.order().len());
            flow
        });
    });

    // One task depending on all the others: the check for a dependency listed twice must not
    // compare each dependency with every earlier one (6.8-9.2 s at 100,000 before it used a set).
    let mut fan_in = FlowBuilder::new("fan-in");
    for i in 0..LARGE {
        fan_in = fan_in.task(format!("t{i}"), "echo", |t| t);
    }
    let sink_deps: Vec<String> = (0..LARGE).map(|i| format!("t{i}")).collect();
    let fan_in = fan_in
        .task("sink", "echo", move |t| t.depends_on(sink_deps))
        .build();
    group.bench_function("validate_one_task_with_100k_dependencies", |b| {
        b.iter_batched(
            || fan_in.clone(),
            |spec| spec.validate(None).expect("valid"),
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

fn tier_decision(c: &mut Criterion) {
    let flow = FlowBuilder::new("small")
        .task("extract", "echo", |t| t.timeout(30.0))
        .task("clean", "echo", |t| {
            t.depends_on(["extract"]).memory_mb(512)
        })
        .task("enrich", "lambda:enricher", |t| t.depends_on(["extract"]))
        .task("join", "echo", |t| {
            t.depends_on(["clean", "enrich"]).retries(2)
        })
        .task("load", "echo", |t| t.depends_on(["join"]).timeout(120.0))
        .build()
        .validate(None)
        .expect("the small flow is valid");
    let request = PlanRequest::default();
    let settings = Settings::default();
    let profile = FlowProfile::of(&flow);
    let hinted = FlowProfile {
        highest_hint: Some((RuntimeTier::Medium, "load".into())),
        ..profile.clone()
    };
    let inputs = TierInputs::default();

    let mut group = c.benchmark_group("tier_decision");
    group.bench_function("plan_5_tasks", |b| {
        b.iter(|| plan(black_box(&flow), black_box(&request), black_box(&settings)));
    });
    group.bench_function("resolve_tier_rules", |b| {
        b.iter(|| resolve_tier(black_box(&profile), black_box(&inputs)));
    });
    group.bench_function("resolve_tier_hint", |b| {
        b.iter(|| resolve_tier(black_box(&hinted), black_box(&inputs)));
    });
    group.finish();
}

/// A flow whose state machine has exactly 25,000 states: levels of 1 to 4 tasks, each task
/// depending on one task of the level before, with retries and timeouts on every task.
fn flow_of_25000_states() -> dagy_core::Flow {
    let mut spec = FlowSpec {
        spec_version: dagy_core::flow::SPEC_VERSION,
        name: "asl-25000".into(),
        parameters: serde_json::Map::new(),
        tasks: Vec::new(),
    };
    let mut previous: Vec<String> = Vec::new();
    let mut states = dagy_core::plan::FIXED_STATES;
    let mut width = 1;
    while states < 25_000 {
        let room = 25_000 - states;
        // A level of w > 1 tasks adds w + 1 states (its Parallel state); of one task, 1.
        let w = if room > width && width > 1 { width } else { 1 };
        let level: Vec<String> = (0..w)
            .map(|i| format!("t{}", spec.tasks.len() + i))
            .collect();
        for (i, id) in level.iter().enumerate() {
            let mut task = TaskSpec::new(id.clone(), "echo");
            if let Some(dep) = previous.get(i % previous.len().max(1)) {
                task.depends_on = vec![dep.clone()];
            }
            task.retries = 2;
            task.retry_delay_seconds = Some(dagy_core::RetryDelay::Fixed(1.5));
            task.timeout_seconds = Some(60.0);
            spec.tasks.push(task);
        }
        states += if w > 1 { w + 1 } else { 1 };
        previous = level;
        width = width % 4 + 1;
    }
    let flow = spec.validate(None).expect("valid");
    assert_eq!(dagy_core::state_count(&flow), 25_000);
    flow
}

fn translate_25000_states(c: &mut Criterion) {
    let flow = flow_of_25000_states();
    let arn = "arn:aws:lambda:us-east-1:123456789012:function:dagy-task-executor";
    let mut group = c.benchmark_group("asl");
    group.sample_size(20);
    // Translation and the JSON text that CreateStateMachine takes.
    group.bench_function("translate_25000_states", |b| {
        b.iter(|| {
            let machine = dagy_core::asl::translate(std::hint::black_box(&flow), arn);
            serde_json::to_string(&machine).expect("serializable")
        });
    });
    group.finish();
}

criterion_group!(
    benches,
    validate_and_order_100k,
    tier_decision,
    translate_25000_states
);
criterion_main!(benches);
