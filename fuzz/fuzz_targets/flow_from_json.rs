//! Fuzz target: arbitrary bytes as FlowSpec JSON text.
//!
//! Feeds the input (when it is UTF-8) to `Flow::from_json`; a flow that validates is planned
//! under every tier request and backend. Decoding, validating and planning must never panic,
//! and a validated flow's order, levels and number limits must hold, so those are asserted too.

#![no_main]

use dagy_core::backend::vars;
use dagy_core::{BackendKind, Error, Flow, PlanRequest, RuntimeTier, Settings, TierInputs, plan};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Flow::from_json(text, None) {
        Ok(flow) => {
            check_flow(&flow);
            plan_every_way(&flow);
        }
        Err(err) => {
            assert!(
                matches!(err, Error::Syntax { .. } | Error::InvalidFlow(_)),
                "unexpected error variant: {err:?}"
            );
            if let Error::InvalidFlow(problems) = &err {
                assert!(!problems.is_empty(), "an invalid flow without problems");
            }
            // Rendering the error must not panic.
            let _ = err.to_string();
        }
    }
});

/// Every task once in the order, after its dependencies; levels are 1 + the deepest dependency.
fn check_flow(flow: &Flow) {
    let n = flow.tasks().len();
    let mut position = vec![usize::MAX; n];
    for (p, &i) in flow.order().iter().enumerate() {
        assert_eq!(position[i], usize::MAX, "task {i} twice in the order");
        position[i] = p;
    }
    assert_eq!(flow.order().len(), n);
    for i in 0..n {
        let mut level = 0;
        for &d in flow.dependencies(i) {
            assert!(position[d] < position[i], "dependency {d} runs after {i}");
            level = level.max(flow.level_of(d) + 1);
        }
        assert_eq!(flow.level_of(i), level, "level of task {i}");
    }
    for task in flow.tasks() {
        within_limits(task);
    }
    let _ = flow.to_mermaid();
}

/// What validation accepts, the engine can wait for: every delay and timeout is at most a year
/// (so adding it to an instant cannot overflow), and the jitter factor at most 1.
fn within_limits(task: &dagy_core::TaskSpec) {
    use dagy_core::RetryDelay;
    use dagy_core::validate::{MAX_JITTER_FACTOR, MAX_SECONDS};
    let mut seconds: Vec<f64> = task.timeout_seconds.into_iter().collect();
    match &task.retry_delay_seconds {
        Some(RetryDelay::Fixed(s)) => seconds.push(*s),
        Some(RetryDelay::PerAttempt(list)) => seconds.extend(list),
        _ => {}
    }
    for s in seconds {
        assert!((0.0..=MAX_SECONDS).contains(&s), "{s} s accepted");
        let wait = std::time::Duration::from_secs_f64(s * (1.0 + MAX_JITTER_FACTOR));
        assert!(std::time::Instant::now().checked_add(wait).is_some());
    }
    if let Some(f) = task.retry_jitter_factor {
        assert!((0.0..=MAX_JITTER_FACTOR).contains(&f), "jitter {f} accepted");
    }
}

fn plan_every_way(flow: &Flow) {
    let registered = Settings::from_lookup(|name| match name {
        vars::SFN_ROLE_ARN | vars::SFN_TASK_EXECUTOR_ARN | vars::ECS_CLUSTER_ARN => {
            Some("arn:aws:iam::123456789012:role/fuzz".to_string())
        }
        _ => None,
    })
    .expect("complete settings");
    for settings in [Settings::default(), registered] {
        let tiers = std::iter::once(None).chain(RuntimeTier::ALL.map(Some));
        for tier in tiers {
            let backends = std::iter::once(None).chain(BackendKind::ALL.map(Some));
            for backend in backends {
                let request = PlanRequest {
                    tiers: TierInputs {
                        request: tier,
                        ..TierInputs::default()
                    },
                    backend,
                };
                if let Err(err) = plan(flow, &request, &settings) {
                    let _ = err.to_string();
                }
            }
        }
    }
}
