//! Retry delays and jitter.

use std::time::Duration;

use dagy_core::TaskSpec;

/// The wait before retry number `retry` (1 for the first) of `task`, with its jitter applied:
/// `delay × (1 + U(−f, f))`, never below zero. `unit` is the random draw, in `[-1, 1]`.
pub fn retry_delay(task: &TaskSpec, retry: u32, unit: f64) -> Duration {
    let base = task
        .retry_delay_seconds
        .as_ref()
        .map_or(0.0, |d| d.seconds_before_retry(retry));
    let factor = task.retry_jitter_factor.unwrap_or(0.0);
    seconds(jittered(base, factor, unit))
}

/// `delay × (1 + factor × unit)`, clamped at zero; `unit` is in `[-1, 1]`.
pub fn jittered(delay: f64, factor: f64, unit: f64) -> f64 {
    let value = delay * (1.0 + factor * unit.clamp(-1.0, 1.0));
    if value.is_finite() {
        value.max(0.0)
    } else {
        0.0
    }
}

/// Seconds as a duration; non-finite or negative values become zero, and anything over
/// [`MAX_SECONDS`](dagy_core::validate::MAX_SECONDS) (a year, the most validation accepts)
/// becomes a year, so that `Instant::now() + seconds(s)` never overflows, whatever a delay
/// closure returns.
pub fn seconds(s: f64) -> Duration {
    if !s.is_finite() || s <= 0.0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(s.min(dagy_core::validate::MAX_SECONDS))
}

/// When an attempt of a task with `timeout_seconds` starting now must end.
pub fn attempt_deadline(timeout_seconds: Option<f64>) -> Option<tokio::time::Instant> {
    timeout_seconds.map(|s| tokio::time::Instant::now() + seconds(s))
}

/// A uniform draw in `[-1, 1]`.
pub fn random_unit() -> f64 {
    rand::random_range(-1.0..=1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dagy_core::FlowBuilder;

    fn task(configure: impl FnOnce(dagy_core::TaskBuilder) -> dagy_core::TaskBuilder) -> TaskSpec {
        FlowBuilder::new("f")
            .task("t", "echo", configure)
            .build()
            .tasks
            .remove(0)
    }

    #[test]
    fn no_delay_means_retry_at_once() {
        assert_eq!(retry_delay(&task(|t| t.retries(2)), 1, 0.7), Duration::ZERO);
    }

    #[test]
    fn a_fixed_delay_is_used_for_every_retry() {
        let t = task(|t| t.retry_delay(1.5));
        assert_eq!(retry_delay(&t, 1, 0.0), Duration::from_millis(1500));
        assert_eq!(retry_delay(&t, 4, 0.0), Duration::from_millis(1500));
    }

    #[test]
    fn a_list_gives_one_delay_per_retry_then_repeats_the_last() {
        let t = task(|t| t.retry_delays([1.0, 2.0, 4.0]));
        let got: Vec<u64> = (1..=5).map(|n| retry_delay(&t, n, 0.0).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 4, 4]);
    }

    #[test]
    fn a_closure_computes_the_delay_from_the_retry_number() {
        let t = task(|t| t.retry_delay_fn(|n| 0.5 * f64::from(n)));
        assert_eq!(retry_delay(&t, 3, 0.0), Duration::from_millis(1500));
    }

    #[test]
    fn jitter_stays_within_its_factor() {
        assert_eq!(jittered(10.0, 0.2, -1.0), 8.0);
        assert_eq!(jittered(10.0, 0.2, 1.0), 12.0);
        for _ in 0..10_000 {
            let d = jittered(10.0, 0.2, random_unit());
            assert!((8.0..=12.0).contains(&d), "{d}");
        }
    }

    #[test]
    fn jitter_never_goes_below_zero() {
        assert_eq!(jittered(10.0, 3.0, -1.0), 0.0);
        assert_eq!(jittered(f64::INFINITY, 0.1, 0.0), 0.0);
    }

    #[test]
    fn odd_seconds_become_safe_durations() {
        assert_eq!(seconds(-1.0), Duration::ZERO);
        assert_eq!(seconds(f64::NAN), Duration::ZERO);
        let year = Duration::from_secs(365 * 86_400);
        assert_eq!(seconds(1e300), year);
        assert_eq!(seconds(f64::MAX), year);
    }

    #[test]
    fn a_huge_delay_from_a_closure_or_jitter_still_gives_a_reachable_instant() {
        let t = task(|t| t.retry_delay_fn(|_| 1e300));
        let later = tokio::time::Instant::now() + retry_delay(&t, 1, 1.0);
        assert!(later > tokio::time::Instant::now());
        let jittered = seconds(jittered(0.01, 1e308, 1.0));
        assert_eq!(jittered, Duration::from_secs(365 * 86_400));
    }
}
