//! FlowSpec to Amazon States Language, by the seed's rules.
//!
//! - Tasks are grouped by dependency level; a level of one task is a Task state, a level of
//!   several is a Parallel state with one branch per task; levels are chained by `Next`.
//! - `retries` -> `Retry.MaxAttempts`; the first retry delay -> `IntervalSeconds` (an integer,
//!   the fraction truncated); `retry_jitter_factor` set -> `BackoffRate` 2.0, else 1.0;
//!   `timeout_seconds` -> `TimeoutSeconds` (rounded up: ASL takes whole seconds). That retrier
//!   matches `States.ALL` and comes last; before it, one that never retries the task-executor's
//!   final errors ([`TASK_FAILED_ERROR`], [`RUN_STOPPED_ERROR`]: a non-retryable handler error,
//!   a cancelled run), and one that retries Lambda's own transient errors (throttling, service
//!   faults) a few times whatever the task's `retries`, as AWS advises for Lambda tasks.
//! - Every error is caught (`States.ALL`) and routed to `HandleTaskFailure`, which records the
//!   failure through the task-executor and ends in a Fail state. A branch cannot jump out of a
//!   Parallel state, so the Catch of tasks inside branches is on the Parallel state.
//! - After the last level, `RecordSuccess` records the run's success, then `Succeeded`.
//! - Task states pass only `{run_id, task_id}` to the task-executor and keep their input
//!   (`ResultPath: null`): outputs stay in the run store, so data never grows the state.
//!
//! What the rules lose is reported by [`crate::plan::asl_losses`] (and so by `dagy plan`).

use serde::Serialize;

use crate::flow::TaskSpec;
use crate::graph::Flow;

/// The state that records a failure and ends the execution as failed.
pub const HANDLE_TASK_FAILURE: &str = "HandleTaskFailure";
/// The Fail state after it.
pub const FAILED: &str = "Failed";
/// The state that records success.
pub const RECORD_SUCCESS: &str = "RecordSuccess";
/// The Succeed state after it.
pub const SUCCEEDED: &str = "Succeeded";
/// The error a failed run's execution ends with.
pub const RUN_FAILED_ERROR: &str = "DagyRunFailed";
/// The task-executor's error for an attempt that failed and may be tried again.
pub const ATTEMPT_FAILED_ERROR: &str = "DagyAttemptFailed";
/// The task-executor's error for a task that failed for good: no retry can help.
pub const TASK_FAILED_ERROR: &str = "DagyTaskFailed";
/// The task-executor's error when the run was cancelled or has ended: nothing ran.
pub const RUN_STOPPED_ERROR: &str = "DagyRunStopped";
/// Lambda's own transient errors, retried whatever the task's `retries`.
pub const LAMBDA_TRANSIENT_ERRORS: [&str; 4] = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
];
/// How often a Lambda transient error is retried.
pub const LAMBDA_TRANSIENT_ATTEMPTS: u64 = 3;

/// The largest `MaxAttempts`, `IntervalSeconds` and `TimeoutSeconds` ASL accepts.
pub const ASL_MAX_INTEGER: u64 = 99_999_999;

/// The `IntervalSeconds` of a task's retrier: its first retry delay (a list's first value, a
/// closure's value for the first retry), the fraction truncated, at least 1 (ASL's minimum).
pub fn interval_seconds(task: &TaskSpec) -> u64 {
    let first = task
        .retry_delay_seconds
        .as_ref()
        .map_or(0.0, |d| d.seconds_before_retry(1));
    let whole = if first.is_finite() {
        first.trunc().max(0.0)
    } else {
        0.0
    };
    (whole as u64).clamp(1, ASL_MAX_INTEGER)
}

/// The most events a Standard workflow's execution history may hold.
pub const MAX_HISTORY_EVENTS: usize = 25_000;

/// How many history events an execution of `flow`'s state machine writes: when every task
/// succeeds at once, and when every task uses all its retries. A Lambda Task state writes 5
/// events per attempt (entered, scheduled, started, succeeded or failed, exited), a Parallel
/// state 4 around its branches, the execution 2, the success recorder 5 and the Succeed state 2.
pub fn expected_history_events(flow: &Flow) -> (usize, usize) {
    let parallels = flow.levels().iter().filter(|l| l.len() > 1).count();
    let fixed = 2 + 5 + 2 + 4 * parallels;
    let tasks = flow.tasks().len();
    let attempts: usize = flow.tasks().iter().map(|t| 1 + t.retries as usize).sum();
    (fixed + 5 * tasks, fixed + 5 * attempts)
}

/// The name of a task's state: `Task-<id>` (task ids are at most 64 characters of
/// `A-Z a-z 0-9 _ - .`, so names stay within ASL's 80 and never meet the fixed states' names).
pub fn task_state_name(id: &str) -> String {
    format!("Task-{id}")
}

/// The name of level `n`'s Parallel state.
pub fn level_state_name(n: usize) -> String {
    format!("Level-{n}")
}

/// A state machine definition, typed; it serializes to ASL JSON with the fields in ASL's usual
/// order. [`translate`] makes one; `serde_json::to_string` gives the text `CreateStateMachine`
/// takes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StateMachine {
    #[serde(rename = "Comment")]
    comment: String,
    #[serde(rename = "StartAt")]
    start_at: String,
    #[serde(rename = "States")]
    states: States,
}

/// States in the order they were added.
#[derive(Debug, Clone, PartialEq, Default)]
struct States(Vec<(String, State)>);

impl Serialize for States {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, state) in &self.0 {
            map.serialize_entry(name, state)?;
        }
        map.end()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "Type")]
enum State {
    Task(TaskState),
    Parallel(ParallelState),
    Fail {
        #[serde(rename = "Error")]
        error: &'static str,
        #[serde(rename = "Cause")]
        cause: &'static str,
    },
    Succeed {},
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct TaskState {
    #[serde(rename = "Resource")]
    resource: &'static str,
    #[serde(rename = "Parameters")]
    parameters: Parameters,
    /// Always null: the state's input (the run id) passes on unchanged.
    #[serde(rename = "ResultPath")]
    result_path: Option<&'static str>,
    #[serde(rename = "TimeoutSeconds", skip_serializing_if = "Option::is_none")]
    timeout_seconds: Option<u64>,
    #[serde(rename = "Retry", skip_serializing_if = "Vec::is_empty")]
    retry: Vec<Retrier>,
    #[serde(rename = "Next", skip_serializing_if = "Option::is_none")]
    next: Option<String>,
    #[serde(rename = "End", skip_serializing_if = "Option::is_none")]
    end: Option<bool>,
    #[serde(rename = "Catch", skip_serializing_if = "Option::is_none")]
    catch: Option<[Catcher; 1]>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct ParallelState {
    #[serde(rename = "Comment")]
    comment: String,
    #[serde(rename = "Branches")]
    branches: Vec<Branch>,
    #[serde(rename = "ResultPath")]
    result_path: Option<&'static str>,
    #[serde(rename = "Next")]
    next: String,
    #[serde(rename = "Catch")]
    catch: [Catcher; 1],
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct Branch {
    #[serde(rename = "StartAt")]
    start_at: String,
    #[serde(rename = "States")]
    states: States,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct Parameters {
    #[serde(rename = "FunctionName")]
    function_name: String,
    #[serde(rename = "Payload")]
    payload: Payload,
}

/// What the task-executor receives: ids and an action, never data.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Payload {
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'static str>,
    #[serde(rename = "run_id.$")]
    run_id: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_id: Option<String>,
    #[serde(rename = "error.$", skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct Retrier {
    #[serde(rename = "ErrorEquals")]
    error_equals: Vec<&'static str>,
    #[serde(rename = "MaxAttempts")]
    max_attempts: u64,
    #[serde(rename = "IntervalSeconds", skip_serializing_if = "Option::is_none")]
    interval_seconds: Option<u64>,
    #[serde(rename = "BackoffRate", skip_serializing_if = "Option::is_none")]
    backoff_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct Catcher {
    #[serde(rename = "ErrorEquals")]
    error_equals: [&'static str; 1],
    #[serde(rename = "ResultPath")]
    result_path: &'static str,
    #[serde(rename = "Next")]
    next: &'static str,
}

const LAMBDA_INVOKE: &str = "arn:aws:states:::lambda:invoke";
const RUN_ID_PATH: &str = "$.run_id";

fn catch_all() -> [Catcher; 1] {
    [Catcher {
        error_equals: ["States.ALL"],
        result_path: "$.error",
        next: HANDLE_TASK_FAILURE,
    }]
}

fn invoke(function: &str, payload: Payload, next: Option<String>) -> TaskState {
    TaskState {
        resource: LAMBDA_INVOKE,
        parameters: Parameters {
            function_name: function.to_string(),
            payload,
        },
        result_path: None,
        timeout_seconds: None,
        retry: vec![lambda_transient_retrier()],
        next,
        end: None,
        catch: None,
    }
}

/// The state machine of `flow`, whose Task states invoke `task_executor_arn`. The execution's
/// input is `{"run_id": "..."}`.
pub fn translate(flow: &Flow, task_executor_arn: &str) -> StateMachine {
    let levels = flow.levels();
    let names: Vec<String> = levels
        .iter()
        .enumerate()
        .map(|(n, level)| match level {
            [single] => task_state_name(&flow.task(*single).id),
            _ => level_state_name(n),
        })
        .collect();
    let mut states = States(Vec::with_capacity(levels.len() + 4));
    for (n, level) in levels.iter().enumerate() {
        let next = names
            .get(n + 1)
            .map_or(RECORD_SUCCESS.to_string(), Clone::clone);
        let state = match level {
            [single] => {
                let mut state = task_state(flow.task(*single), task_executor_arn);
                state.next = Some(next);
                state.catch = Some(catch_all());
                State::Task(state)
            }
            tasks => State::Parallel(ParallelState {
                comment: format!("dependency level {n}: {} tasks", tasks.len()),
                branches: tasks
                    .iter()
                    .map(|&i| {
                        let task = flow.task(i);
                        let mut state = task_state(task, task_executor_arn);
                        state.end = Some(true);
                        let name = task_state_name(&task.id);
                        Branch {
                            start_at: name.clone(),
                            states: States(vec![(name, State::Task(state))]),
                        }
                    })
                    .collect(),
                result_path: None,
                next,
                catch: catch_all(),
            }),
        };
        states.0.push((names[n].clone(), state));
    }
    push_run_end_states(&mut states, task_executor_arn);
    StateMachine {
        comment: format!("Dagy flow {}", flow.name()),
        start_at: names
            .first()
            .map_or(RECORD_SUCCESS.to_string(), Clone::clone),
        states,
    }
}

/// The states that end a run: record the failure then fail, or record the success then succeed.
fn push_run_end_states(states: &mut States, task_executor_arn: &str) {
    let recorder = |action, error| Payload {
        action: Some(action),
        run_id: RUN_ID_PATH,
        task_id: None,
        error,
    };
    states.0.push((
        HANDLE_TASK_FAILURE.into(),
        State::Task(invoke(
            task_executor_arn,
            recorder("record_failure", Some("$.error")),
            Some(FAILED.into()),
        )),
    ));
    states.0.push((
        FAILED.into(),
        State::Fail {
            error: RUN_FAILED_ERROR,
            cause: "a task failed; the run record says which and why",
        },
    ));
    states.0.push((
        RECORD_SUCCESS.into(),
        State::Task(invoke(
            task_executor_arn,
            recorder("record_success", None),
            Some(SUCCEEDED.into()),
        )),
    ));
    states.0.push((SUCCEEDED.into(), State::Succeed {}));
}

/// One task's Task state, without its transition.
fn task_state(task: &TaskSpec, task_executor_arn: &str) -> TaskState {
    let payload = Payload {
        action: None,
        run_id: RUN_ID_PATH,
        task_id: Some(task.id.clone()),
        error: None,
    };
    let mut state = invoke(task_executor_arn, payload, None);
    state.timeout_seconds = task
        .timeout_seconds
        .map(|t| (t.ceil().max(1.0) as u64).min(ASL_MAX_INTEGER));
    state.retry.insert(
        0,
        Retrier {
            error_equals: vec![TASK_FAILED_ERROR, RUN_STOPPED_ERROR],
            max_attempts: 0,
            interval_seconds: None,
            backoff_rate: None,
        },
    );
    if task.retries > 0 {
        let jitter = task.retry_jitter_factor.is_some_and(|f| f > 0.0);
        state.retry.push(Retrier {
            error_equals: vec!["States.ALL"],
            max_attempts: u64::from(task.retries).min(ASL_MAX_INTEGER),
            interval_seconds: Some(interval_seconds(task)),
            backoff_rate: Some(if jitter { 2.0 } else { 1.0 }),
        });
    }
    state
}

/// Retries Lambda's own transient errors: every state that invokes the task-executor has it.
fn lambda_transient_retrier() -> Retrier {
    Retrier {
        error_equals: LAMBDA_TRANSIENT_ERRORS.to_vec(),
        max_attempts: LAMBDA_TRANSIENT_ATTEMPTS,
        interval_seconds: Some(1),
        backoff_rate: Some(2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FlowBuilder;
    use serde_json::{Map, Value, json};

    fn translate(flow: &Flow, arn: &str) -> Value {
        serde_json::to_value(super::translate(flow, arn)).expect("serializable")
    }

    const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:dagy-task-executor";

    fn diamond() -> Flow {
        FlowBuilder::new("diamond")
            .task("a", "echo", |t| t.retries(2).retry_delay(2.7).timeout(30.0))
            .task("b", "echo", |t| t.depends_on(["a"]).retries(1).jitter(0.3))
            .task("c", "echo", |t| t.depends_on(["a"]))
            .task("d", "echo", |t| t.depends_on(["b", "c"]).timeout(1.5))
            .build()
            .validate(None)
            .expect("valid")
    }

    #[test]
    fn levels_become_task_and_parallel_states_chained_by_next() {
        let asl = translate(&diamond(), ARN);
        assert_eq!(asl["StartAt"], "Task-a");
        assert_eq!(asl["States"]["Task-a"]["Next"], "Level-1");
        assert_eq!(asl["States"]["Level-1"]["Type"], "Parallel");
        assert_eq!(
            asl["States"]["Level-1"]["Branches"]
                .as_array()
                .map(Vec::len),
            Some(2)
        );
        assert_eq!(asl["States"]["Level-1"]["Next"], "Task-d");
        assert_eq!(asl["States"]["Task-d"]["Next"], RECORD_SUCCESS);
        assert_eq!(asl["States"][RECORD_SUCCESS]["Next"], SUCCEEDED);
    }

    #[test]
    fn retries_become_max_attempts_with_a_truncated_interval() {
        let asl = translate(&diamond(), ARN);
        let retry = &asl["States"]["Task-a"]["Retry"][2];
        assert_eq!(retry["MaxAttempts"], 2);
        assert_eq!(retry["IntervalSeconds"], 2, "2.7 is truncated to 2");
        assert_eq!(retry["BackoffRate"], 1.0, "no jitter: 1.0");
    }

    #[test]
    fn final_errors_are_never_retried_and_lambda_faults_always_are() {
        let flow = FlowBuilder::new("f")
            .task("once", "echo", |t| t)
            .task("thrice", "echo", |t| t.retries(2).depends_on(["once"]))
            .build()
            .validate(None)
            .expect("valid");
        let asl = translate(&flow, ARN);
        for name in ["Task-once", "Task-thrice"] {
            let retry = &asl["States"][name]["Retry"];
            assert_eq!(
                retry[0],
                json!({"ErrorEquals": [TASK_FAILED_ERROR, RUN_STOPPED_ERROR], "MaxAttempts": 0}),
                "{name}"
            );
            assert_eq!(
                retry[1]["ErrorEquals"],
                json!(LAMBDA_TRANSIENT_ERRORS),
                "{name}"
            );
        }
        assert_eq!(
            asl["States"]["Task-once"]["Retry"].as_array().map(Vec::len),
            Some(2),
            "no retries: no States.ALL retrier"
        );
        let last = &asl["States"]["Task-thrice"]["Retry"][2];
        assert_eq!(
            last["ErrorEquals"],
            json!(["States.ALL"]),
            "States.ALL comes last"
        );
        for recorder in [HANDLE_TASK_FAILURE, RECORD_SUCCESS] {
            assert_eq!(
                asl["States"][recorder]["Retry"][0]["ErrorEquals"],
                json!(LAMBDA_TRANSIENT_ERRORS),
                "{recorder}"
            );
        }
    }

    /// The retry interval of task `a`'s third Retry (its own errors) in a flow of `a` alone.
    fn first_interval(options: impl FnOnce(crate::TaskBuilder) -> crate::TaskBuilder) -> Value {
        let flow = FlowBuilder::new("f")
            .task("a", "echo", options)
            .build()
            .validate(None)
            .expect("valid");
        translate(&flow, ARN)["States"]["Task-a"]["Retry"][2]["IntervalSeconds"].clone()
    }

    #[test]
    fn jitter_sets_backoff_rate_two() {
        let asl = translate(&diamond(), ARN);
        let b = &asl["States"]["Level-1"]["Branches"][0]["States"]["Task-b"];
        assert_eq!(b["Retry"][2]["BackoffRate"], 2.0);
        assert_eq!(
            b["Retry"][2]["IntervalSeconds"], 1,
            "no delay: ASL's minimum, 1"
        );
    }

    #[test]
    fn a_list_delay_uses_its_first_value() {
        assert_eq!(
            first_interval(|t| t.retries(3).retry_delays([5.9, 10.0])),
            5
        );
    }

    #[test]
    fn a_closure_delay_uses_its_first_value() {
        assert_eq!(
            first_interval(|t| { t.retries(3).retry_delay_fn(|n| 3.0 * f64::from(n)) }),
            3
        );
    }

    #[test]
    fn a_sub_second_delay_becomes_the_minimum_interval() {
        assert_eq!(first_interval(|t| t.retries(1).retry_delay(0.4)), 1);
    }

    #[test]
    fn timeouts_become_whole_timeout_seconds() {
        let asl = translate(&diamond(), ARN);
        assert_eq!(asl["States"]["Task-a"]["TimeoutSeconds"], 30);
        assert_eq!(
            asl["States"]["Task-d"]["TimeoutSeconds"], 2,
            "1.5 s rounds up"
        );
        assert!(
            asl["States"]["Level-1"]["Branches"][1]["States"]["Task-c"]
                .get("TimeoutSeconds")
                .is_none()
        );
    }

    #[test]
    fn every_error_is_caught_on_the_state_that_can_jump() {
        let asl = translate(&diamond(), ARN);
        for name in ["Task-a", "Level-1", "Task-d"] {
            let catch = &asl["States"][name]["Catch"][0];
            assert_eq!(catch["ErrorEquals"], json!(["States.ALL"]), "{name}");
            assert_eq!(catch["Next"], HANDLE_TASK_FAILURE, "{name}");
        }
        let inside = &asl["States"]["Level-1"]["Branches"][0]["States"]["Task-b"];
        assert!(
            inside.get("Catch").is_none(),
            "a branch cannot jump out: the Parallel catches"
        );
        assert_eq!(asl["States"][HANDLE_TASK_FAILURE]["Next"], FAILED);
        assert_eq!(asl["States"][FAILED]["Type"], "Fail");
    }

    #[test]
    fn task_states_pass_only_ids_and_keep_their_input() {
        let asl = translate(&diamond(), ARN);
        let a = &asl["States"]["Task-a"];
        assert_eq!(a["Parameters"]["FunctionName"], ARN);
        assert_eq!(
            a["Parameters"]["Payload"],
            json!({"run_id.$": "$.run_id", "task_id": "a"})
        );
        assert_eq!(a["ResultPath"], Value::Null);
    }

    #[test]
    fn history_events_count_attempts_and_parallel_states() {
        // 4 tasks (a has 2 retries, b 1), one Parallel level.
        assert_eq!(
            expected_history_events(&diamond()),
            (9 + 4 + 20, 9 + 4 + 35)
        );
    }

    #[test]
    fn the_state_count_matches_the_plan_estimate() {
        let flow = diamond();
        let asl = translate(&flow, ARN);
        let top = asl["States"].as_object().map_or(0, Map::len);
        let in_branches: usize = asl["States"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
            .filter_map(|s| s["Branches"].as_array())
            .flatten()
            .map(|b| b["States"].as_object().map_or(0, Map::len))
            .sum();
        assert_eq!(top + in_branches, crate::plan::state_count(&flow));
    }
}
