//! Example task handlers, used by the example flows, the tests and the benchmarks.
//!
//! | handler | does |
//! |---|---|
//! | `echo` | returns its input (`{parameters, upstream, args}`) |
//! | `sum` | adds the numbers among its upstream outputs and `args.add` |
//! | `sleep` | waits `args.seconds` (fractional allowed), stopping early when cancelled |
//! | `fail` | fails with `args.message` |
//! | `flaky` | fails its first `args.failures` attempts of each run, then returns its input |
//! | `spin` | busy-loops `args.millis` on a blocking thread (stops when cancelled unless `args.ignore_cancel`) |
//! | `append` | appends `args.line` and a newline to the file `args.path`, then sleeps `args.sleep` seconds, stopping early when cancelled (for crash tests) |
//! | `alloc` | allocates `args.mb` MiB and writes every page, holds it `args.hold_seconds` (default 0.2), returns `{"mb": n}`: to show what a memory limit does (on a 1 GiB container, `{"mb": 2048}` is killed for memory) |

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use dagy_engine::{HandlerRegistry, TaskContext, TaskError, TaskResult};

/// A flow of `n` tasks `t1 -> t2 -> ... -> tn`, each running `handler` with `args`: the chain
/// the tests and benchmarks run.
pub fn chain(n: usize, handler: &str, args: Value) -> dagy_core::FlowSpec {
    let mut flow = dagy_core::FlowBuilder::new("chain");
    for i in 1..=n {
        let args = args.clone();
        flow = flow.task(format!("t{i}"), handler, move |t| {
            let t = t.args(args);
            if i == 1 {
                t
            } else {
                t.depends_on([format!("t{}", i - 1)])
            }
        });
    }
    flow.build()
}

/// A registry holding every example handler.
pub fn registry() -> HandlerRegistry {
    let mut registry = HandlerRegistry::new();
    register(&mut registry);
    registry
}

/// Adds the example handlers to `registry`.
pub fn register(registry: &mut HandlerRegistry) {
    registry
        .register("echo", |_ctx, input| async move { Ok(input) })
        .register("sum", |_ctx, input| async move { sum(&input) })
        .register("sleep", sleep)
        .register("fail", |_ctx, input| async move { fail(&input) })
        .register("flaky", |ctx, input| async move { flaky(&ctx, input) })
        .register_blocking("spin", spin)
        .register("append", append)
        .register_blocking("alloc", alloc);
}

fn args(input: &Value) -> &Value {
    &input["args"]
}

fn invalid(message: String) -> TaskError {
    TaskError::permanent(message).with_type("InvalidArgs")
}

fn number_arg(input: &Value, name: &str, default: Option<f64>) -> Result<f64, TaskError> {
    match args(input).get(name) {
        None | Some(Value::Null) => {
            default.ok_or_else(|| invalid(format!("args.{name} is required (a number)")))
        }
        Some(v) => v
            .as_f64()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .ok_or_else(|| invalid(format!("args.{name} must be a number >= 0, got {v}"))),
    }
}

/// Adds every number among the upstream outputs and `args.add`.
fn sum(input: &Value) -> TaskResult {
    let upstream: f64 = input["upstream"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_f64).sum())
        .unwrap_or(0.0);
    let add = match args(input).get("add") {
        None | Some(Value::Null) => 0.0,
        Some(v) => v
            .as_f64()
            .ok_or_else(|| invalid(format!("args.add must be a number, got {v}")))?,
    };
    let total = upstream + add;
    Ok(if total.fract() == 0.0 && total.abs() < 9.0e15 {
        json!(total as i64)
    } else {
        json!(total)
    })
}

async fn sleep(ctx: TaskContext, input: Value) -> TaskResult {
    let seconds = number_arg(&input, "seconds", None)?;
    let duration = Duration::try_from_secs_f64(seconds)
        .map_err(|_| invalid(format!("args.seconds {seconds} is too large")))?;
    tokio::select! {
        () = tokio::time::sleep(duration) => Ok(json!({"slept_seconds": seconds})),
        () = ctx.cancel.cancelled() => Err(TaskError::new("sleep was cancelled").with_type("Cancelled")),
    }
}

fn fail(input: &Value) -> TaskResult {
    let message = args(input)
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("the fail handler failed, as asked");
    Err(TaskError::new(message))
}

fn flaky(ctx: &TaskContext, input: Value) -> TaskResult {
    let failures = number_arg(&input, "failures", Some(1.0))?;
    if f64::from(ctx.attempt) <= failures {
        return Err(TaskError::new(format!(
            "flaky: attempt {} fails on purpose ({} of {failures})",
            ctx.attempt, ctx.attempt
        )));
    }
    Ok(input)
}

async fn append(ctx: TaskContext, input: Value) -> TaskResult {
    use tokio::io::AsyncWriteExt;
    let path = args(&input)
        .get("path")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("args.path is required (a file path)".into()))?
        .to_string();
    let line = args(&input)
        .get("line")
        .and_then(Value::as_str)
        .unwrap_or(&ctx.task_id)
        .to_string();
    let pause = number_arg(&input, "sleep", Some(0.0))?;
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .await
        .map_err(|e| TaskError::new(format!("cannot open {path}: {e}")))?;
    file.write_all(format!("{line}\n").as_bytes())
        .await
        .map_err(|e| TaskError::new(format!("cannot write {path}: {e}")))?;
    file.sync_all()
        .await
        .map_err(|e| TaskError::new(format!("cannot sync {path}: {e}")))?;
    if pause > 0.0 {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs_f64(pause)) => {}
            () = ctx.cancel.cancelled() => {
                return Err(TaskError::new("append was cancelled in its pause").with_type("Cancelled"));
            }
        }
    }
    Ok(json!({"appended": line}))
}

/// The memory `alloc` takes in one piece; the cancel is checked between pieces.
const ALLOC_CHUNK: usize = 1 << 20;
/// The page size whose every page `alloc` writes (4 KiB on x86_64 and most arm64 kernels; a
/// larger page is still written, more than once).
const PAGE: usize = 4096;

fn alloc(ctx: TaskContext, input: Value) -> TaskResult {
    let mb = number_arg(&input, "mb", None)?;
    if mb.fract() != 0.0 || mb > 1_048_576.0 {
        return Err(invalid(format!(
            "args.mb must be a whole number of MiB up to 1048576, got {mb}"
        )));
    }
    let hold = number_arg(&input, "hold_seconds", Some(0.2))?;
    let hold = Duration::try_from_secs_f64(hold)
        .map_err(|_| invalid(format!("args.hold_seconds {hold} is too large")))?;
    let chunks = mb as usize;
    let mut held: Vec<Vec<u8>> = Vec::new();
    held.try_reserve_exact(chunks)
        .map_err(|e| TaskError::new(format!("alloc: cannot allocate {chunks} MiB: {e}")))?;
    for _ in 0..chunks {
        if ctx.cancel.is_cancelled() {
            return Err(TaskError::new("alloc was cancelled").with_type("Cancelled"));
        }
        let mut chunk: Vec<u8> = Vec::new();
        chunk
            .try_reserve_exact(ALLOC_CHUNK)
            .map_err(|e| TaskError::new(format!("alloc: cannot allocate {chunks} MiB: {e}")))?;
        chunk.resize(ALLOC_CHUNK, 0);
        // Freshly mapped pages cost nothing until written: write one byte in every page.
        for page in chunk.iter_mut().step_by(PAGE) {
            *page = 1;
        }
        held.push(std::hint::black_box(chunk));
    }
    let until = Instant::now() + hold;
    while Instant::now() < until && !ctx.cancel.is_cancelled() {
        std::thread::sleep(Duration::from_millis(10).min(until - Instant::now()));
    }
    drop(std::hint::black_box(held));
    Ok(json!({"mb": chunks}))
}

fn spin(ctx: TaskContext, input: Value) -> TaskResult {
    let millis = number_arg(&input, "millis", None)?;
    let ignore_cancel = args(&input)
        .get("ignore_cancel")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let until = Instant::now() + Duration::from_secs_f64(millis / 1000.0);
    let mut spins: u64 = 0;
    while Instant::now() < until {
        spins = spins.wrapping_add(1);
        std::hint::black_box(spins);
        if !ignore_cancel && spins.is_multiple_of(4096) && ctx.cancel.is_cancelled() {
            return Err(TaskError::new("spin was cancelled").with_type("Cancelled"));
        }
    }
    Ok(json!({"spun_millis": millis, "spins": spins}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(attempt: u32) -> TaskContext {
        TaskContext::new("r", "t", attempt)
    }

    #[test]
    fn sum_adds_upstream_numbers_and_args_add() {
        let input = json!({"upstream": {"a": 2, "b": 3.5, "c": "text"}, "args": {"add": 1}});
        assert_eq!(sum(&input), Ok(json!(6.5)));
        assert_eq!(
            sum(&json!({"upstream": {"a": 41}, "args": {"add": 1}})),
            Ok(json!(42))
        );
        assert_eq!(sum(&json!({"upstream": {}, "args": null})), Ok(json!(0)));
    }

    #[test]
    fn sum_refuses_a_non_numeric_add() {
        let err = sum(&json!({"args": {"add": "one"}})).expect_err("bad args");
        assert_eq!(err.error_type, "InvalidArgs");
        assert!(!err.retryable);
    }

    #[test]
    fn flaky_fails_its_first_attempts_only() {
        let input = json!({"args": {"failures": 2}});
        assert!(flaky(&ctx(1), input.clone()).is_err());
        assert!(flaky(&ctx(2), input.clone()).is_err());
        assert_eq!(flaky(&ctx(3), input.clone()), Ok(input));
    }

    #[test]
    fn fail_uses_the_given_message() {
        let err = fail(&json!({"args": {"message": "disk full"}})).expect_err("fails");
        assert_eq!(err.message, "disk full");
        assert!(err.retryable);
    }

    #[test]
    fn spin_stops_when_cancelled() {
        let c = ctx(1);
        c.cancel.cancel();
        let err = spin(c, json!({"args": {"millis": 10_000}})).expect_err("cancelled");
        assert_eq!(err.error_type, "Cancelled");
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_waits_the_given_seconds() {
        let start = tokio::time::Instant::now();
        let out = sleep(ctx(1), json!({"args": {"seconds": 1.5}})).await;
        assert_eq!(out, Ok(json!({"slept_seconds": 1.5})));
        assert_eq!(start.elapsed(), Duration::from_millis(1500));
    }

    #[tokio::test]
    async fn append_adds_one_line_per_call() {
        let path = std::env::temp_dir().join(format!("dagy-append-{}", std::process::id()));
        let input = json!({"args": {"path": path.to_str(), "line": "one"}});
        append(ctx(1), input.clone()).await.expect("first");
        append(ctx(1), input).await.expect("second");
        let text = std::fs::read_to_string(&path).expect("written");
        let _ = std::fs::remove_file(&path);
        assert_eq!(text, "one\none\n");
    }

    #[test]
    fn alloc_makes_what_it_asks_for_resident() {
        let peak_mib = || {
            std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| {
                    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?.to_string();
                    line.split_whitespace().nth(1)?.parse::<u64>().ok()
                })
                .map_or(0, |kib| kib / 1024)
        };
        let out = alloc(ctx(1), json!({"args": {"mb": 96, "hold_seconds": 0}})).expect("alloc");
        assert_eq!(out, json!({"mb": 96}));
        assert!(peak_mib() >= 96, "peak RSS {} MiB", peak_mib());
        let err = alloc(ctx(1), json!({"args": {"mb": 1.5}})).expect_err("whole MiB");
        assert_eq!(err.error_type, "InvalidArgs");
        assert!(
            alloc(ctx(1), json!({"args": {}})).is_err(),
            "mb is required"
        );
    }

    #[tokio::test]
    async fn sleep_requires_a_non_negative_number() {
        let err = sleep(ctx(1), json!({"args": {"seconds": -1}}))
            .await
            .expect_err("bad");
        assert!(err.message.contains("args.seconds"), "{}", err.message);
    }
}
