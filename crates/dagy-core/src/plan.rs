//! The router's decision for one run: tier, backend, how it executes, and why.

use serde::{Deserialize, Serialize};

use crate::backend::{BackendKind, Settings};
use crate::error::{Error, Refusal};
use crate::fargate::FargateSize;
use crate::flow::RetryDelay;
use crate::graph::Flow;
use crate::tier::{
    DecidedBy, FlowProfile, LAMBDA_TIER_BUDGET_SECONDS, RuntimeTier, TierInputs, resolve_tier,
};

/// What asks for a run: the tier answers of levels 1-3 and an optional backend by name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanRequest {
    /// Tier levels 1-3 and the automatic switch.
    pub tiers: TierInputs,
    /// A backend asked for by name (otherwise Step Functions is reached only as the fallback of
    /// a dedicated tier when ECS is not registered and the flow does not fit Lambda).
    pub backend: Option<BackendKind>,
}

/// How a backend runs the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionMode {
    /// Every task in one executor invocation (nano).
    WholeFlow,
    /// One task per executor invocation, chained (micro, and Lambda fallbacks).
    TaskPerInvocation,
    /// One Fargate task runs the flow sequentially.
    Container,
    /// A Step Functions state machine; each task in a task-executor invocation.
    StateMachine,
}

/// Why a run goes to Lambda although its tier names another backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fallback {
    /// The backend the tier maps to.
    pub from: BackendKind,
    /// Why it was not used.
    pub reason: String,
}

/// The decision for one run, as recorded on it and printed by `dagy plan`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The runtime tier.
    pub tier: RuntimeTier,
    /// The backend that runs it.
    pub backend: BackendKind,
    /// The level that chose the tier.
    pub decided_by: DecidedBy,
    /// Why, in words.
    pub reason: String,
    /// Set when the run falls back to Lambda.
    pub fallback: Option<Fallback>,
    /// How the backend runs it.
    pub mode: ExecutionMode,
    /// The Fargate size, for container runs.
    pub resources: Option<FargateSize>,
    /// Things the user should know that do not stop the run.
    pub warnings: Vec<String>,
}

/// The most states a Step Functions state machine may have.
pub const MAX_STATE_MACHINE_STATES: usize = 25_000;
/// States the translation adds besides tasks and Parallel states: the failure handler, its Fail
/// state, the success recorder and the Succeed state.
pub const FIXED_STATES: usize = 4;

/// How many states the Step Functions translation makes of a flow: one Task state per task,
/// one Parallel state per level with several tasks, and [`FIXED_STATES`].
pub fn state_count(flow: &Flow) -> usize {
    let parallels = flow.levels().iter().filter(|l| l.len() > 1).count();
    flow.tasks().len() + parallels + FIXED_STATES
}

/// Decides tier and backend for a run of `flow`, or refuses it before anything starts.
pub fn plan(flow: &Flow, request: &PlanRequest, settings: &Settings) -> Result<Plan, Error> {
    let profile = FlowProfile::of(flow);
    let mut tiers = request.tiers;
    tiers.auto_tier = settings.auto_tier;
    let decision = resolve_tier(&profile, &tiers);
    let mut plan = Plan {
        tier: decision.tier,
        backend: BackendKind::Lambda,
        decided_by: decision.decided_by,
        reason: decision.reason,
        fallback: None,
        mode: ExecutionMode::TaskPerInvocation,
        resources: None,
        warnings: Vec::new(),
    };

    match request.backend {
        Some(backend) => fit_requested(flow, backend, settings, &mut plan)?,
        None => fit_default(flow, settings, &mut plan)?,
    }
    Ok(plan)
}

/// Fits the plan to the backend the request asked for, which must be registered.
fn fit_requested(
    flow: &Flow,
    backend: BackendKind,
    settings: &Settings,
    plan: &mut Plan,
) -> Result<(), Error> {
    if !settings.is_registered(backend) {
        let variable = backend.enabling_variable().unwrap_or_default();
        return refuse(
            format!("backend {backend} was asked for but is not registered"),
            format!("set {variable} in the router's environment, or ask for another backend"),
        );
    }
    plan.backend = backend;
    match backend {
        BackendKind::Lambda => {
            if !plan.tier.is_lambda_tier() {
                plan.warnings.push(format!(
                    "backend lambda was asked for: the run uses one invocation per task, \
                     not tier {}'s dedicated {}",
                    plan.tier,
                    plan.tier
                        .fargate_resources()
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                ));
            }
            fit_lambda(flow, plan)
        }
        BackendKind::StepFunctions => fit_step_functions(flow, plan),
        BackendKind::EcsFargate => {
            if plan.tier.is_lambda_tier() {
                plan.warnings.push(format!(
                    "backend ecs_fargate needs a Fargate size; tier {} has none, so the run uses small",
                    plan.tier
                ));
                plan.tier = RuntimeTier::Small;
            }
            fit_ecs(flow, plan)
        }
    }
}

/// Fits the plan to the tier's own backend: lambda for lambda tiers, ecs_fargate for the
/// others, or lambda one task per invocation when ECS is not registered and the flow fits.
fn fit_default(flow: &Flow, settings: &Settings, plan: &mut Plan) -> Result<(), Error> {
    if plan.tier.is_lambda_tier() {
        return fit_lambda(flow, plan);
    }
    if settings.is_registered(BackendKind::EcsFargate) {
        plan.backend = BackendKind::EcsFargate;
        return fit_ecs(flow, plan);
    }
    let reason = format!(
        "tier {} runs on ecs_fargate, which is not registered ({} is not set)",
        plan.tier,
        crate::backend::vars::ECS_CLUSTER_ARN
    );
    let lambda_refusal = match fit_lambda(flow, plan) {
        Ok(()) => {
            plan.fallback = Some(Fallback {
                from: BackendKind::EcsFargate,
                reason: format!(
                    "{reason}; the flow fits lambda, so it runs there one task per invocation"
                ),
            });
            return Ok(());
        }
        Err(Error::Refused(r)) => r,
        Err(other) => return Err(other),
    };
    if settings.is_registered(BackendKind::StepFunctions) {
        let mut on_sfn = plan.clone();
        on_sfn.backend = BackendKind::StepFunctions;
        if fit_step_functions(flow, &mut on_sfn).is_ok() {
            *plan = on_sfn;
            plan.fallback = Some(Fallback {
                from: BackendKind::EcsFargate,
                reason: format!(
                    "{reason}, and the flow does not fit lambda ({}); step_functions is registered \
                     and runs it",
                    lambda_refusal.reason
                ),
            });
            return Ok(());
        }
    }
    refuse(
        format!(
            "{reason}, and the flow does not fit lambda: {}",
            lambda_refusal.reason
        ),
        format!(
            "set {} to an ECS cluster ARN to run it on Fargate",
            crate::backend::vars::ECS_CLUSTER_ARN
        ),
    )
}

fn refuse<T>(reason: String, remedy: String) -> Result<T, Error> {
    Err(Error::Refused(Refusal { reason, remedy }))
}

fn fit_lambda(flow: &Flow, plan: &mut Plan) -> Result<(), Error> {
    plan.backend = BackendKind::Lambda;
    plan.mode = if plan.tier == RuntimeTier::Nano {
        ExecutionMode::WholeFlow
    } else {
        ExecutionMode::TaskPerInvocation
    };
    let budget = LAMBDA_TIER_BUDGET_SECONDS as f64;
    let max_memory = BackendKind::Lambda.capabilities().max_memory_mb;
    let mut total_timeout = 0.0;
    for task in flow.tasks() {
        if let Some(t) = task.timeout_seconds {
            total_timeout += t;
            if t > budget {
                return refuse(
                    format!(
                        "task \"{}\" has timeout_seconds {t}, over the {budget} s a task may run on lambda \
                         (tier {}; Lambda itself stops at 900 s)",
                        task.id, plan.tier
                    ),
                    "choose a tier from small to xlarge (ECS Fargate) or lower timeout_seconds"
                        .into(),
                );
            }
        }
        if let Some(mb) = task.memory_mb
            && !max_memory.allows(mb)
        {
            return refuse(
                format!(
                    "task \"{}\" needs memory_mb {mb}, over lambda's {max_memory} MB",
                    task.id
                ),
                "choose a tier from small to xlarge (ECS Fargate) or lower memory_mb".into(),
            );
        }
    }
    if plan.mode == ExecutionMode::WholeFlow && total_timeout > budget {
        plan.warnings.push(format!(
            "the task timeouts add up to {total_timeout} s, over nano's {budget} s budget for the whole \
             flow; a run that reaches it ends as timed out (micro gives each task {budget} s)"
        ));
    }
    Ok(())
}

fn fit_ecs(flow: &Flow, plan: &mut Plan) -> Result<(), Error> {
    plan.mode = ExecutionMode::Container;
    let size = plan.tier.fargate_size();
    plan.resources = Some(size);
    for task in flow.tasks() {
        if let Some(mb) = task.memory_mb
            && mb > u64::from(size.memory_mb)
        {
            let bigger = RuntimeTier::ALL.into_iter().find(|t| {
                t.fargate_resources()
                    .is_some_and(|s| u64::from(s.memory_mb) >= mb)
            });
            return refuse(
                format!(
                    "task \"{}\" needs memory_mb {mb}, but tier {} gives {} MB",
                    task.id, plan.tier, size.memory_mb
                ),
                match bigger {
                    Some(t) => format!("ask for runtime_tier {t} or more, or lower memory_mb"),
                    None => "no tier has that much memory; lower memory_mb".into(),
                },
            );
        }
    }
    Ok(())
}

fn fit_step_functions(flow: &Flow, plan: &mut Plan) -> Result<(), Error> {
    plan.mode = ExecutionMode::StateMachine;
    let states = state_count(flow);
    if states > MAX_STATE_MACHINE_STATES {
        return refuse(
            format!(
                "the flow makes {states} states, over Step Functions' {MAX_STATE_MACHINE_STATES}"
            ),
            "split the flow, or run it on a tier from small to xlarge without backend step_functions"
                .into(),
        );
    }
    let lambda_max = 900.0;
    let lambda_memory = BackendKind::Lambda.capabilities().max_memory_mb;
    for task in flow.tasks() {
        if let Some(mb) = task.memory_mb
            && !lambda_memory.allows(mb)
        {
            return refuse(
                format!(
                    "task \"{}\" needs memory_mb {mb}; on step_functions each task runs in the \
                     task-executor Lambda, which has at most {lambda_memory} MB",
                    task.id
                ),
                "lower memory_mb, or run the flow on a tier from small to xlarge".into(),
            );
        }
        if let Some(t) = task.timeout_seconds
            && t > lambda_max
        {
            return refuse(
                format!(
                    "task \"{}\" has timeout_seconds {t}; on step_functions each task runs in the \
                     task-executor Lambda, which stops at {lambda_max} s",
                    task.id
                ),
                "lower timeout_seconds, or run the flow on a tier from small to xlarge".into(),
            );
        }
        plan.warnings.extend(asl_losses(task));
    }
    let (expected, worst) = crate::asl::expected_history_events(flow);
    let limit = crate::asl::MAX_HISTORY_EVENTS;
    if expected > limit {
        plan.warnings.push(format!(
            "an execution writes about {expected} history events, over Step Functions' {limit}; \
             it will fail: split the flow or run it on a tier from small to xlarge"
        ));
    } else if worst > limit {
        plan.warnings.push(format!(
            "with every retry used, an execution writes up to {worst} history events, over Step \
             Functions' {limit} (about {expected} when nothing fails)"
        ));
    }
    Ok(())
}

/// What the ASL translation cannot keep of a task's settings, one sentence each.
pub fn asl_losses(task: &crate::TaskSpec) -> Vec<String> {
    let mut losses = Vec::new();
    let id = &task.id;
    match &task.retry_delay_seconds {
        Some(RetryDelay::PerAttempt(list)) if list.len() > 1 => losses.push(format!(
            "task \"{id}\": the delay list {list:?} becomes a fixed IntervalSeconds {} on step_functions",
            crate::asl::interval_seconds(task)
        )),
        Some(RetryDelay::Computed(_)) => losses.push(format!(
            "task \"{id}\": the computed delay becomes a fixed IntervalSeconds {} (its first value) on step_functions",
            crate::asl::interval_seconds(task)
        )),
        _ => {}
    }
    let first_delay = task
        .retry_delay_seconds
        .as_ref()
        .map(|d| d.seconds_before_retry(1));
    if task.retries > 0
        && let Some(d) = first_delay
        && d.is_finite()
        && d != crate::asl::interval_seconds(task) as f64
    {
        losses.push(format!(
            "task \"{id}\": retry delay {d} s becomes IntervalSeconds {} on step_functions (whole seconds, at least 1)",
            crate::asl::interval_seconds(task)
        ));
    }
    if let Some(f) = task.retry_jitter_factor
        && f > 0.0
    {
        losses.push(format!(
            "task \"{id}\": retry_jitter_factor {f} becomes BackoffRate 2.0 (exponential backoff) on step_functions"
        ));
    }
    if let Some(t) = task.timeout_seconds
        && t.fract() != 0.0
    {
        losses.push(format!(
            "task \"{id}\": timeout {t} s is rounded up to TimeoutSeconds {} on step_functions",
            t.ceil()
        ));
    }
    losses
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FlowBuilder;
    use crate::tier::AutoTier;

    fn settings_with(ecs: bool, sfn: bool) -> Settings {
        let mut pairs = Vec::new();
        if ecs {
            pairs.push((
                "DAGY_ECS_CLUSTER_ARN",
                "arn:aws:ecs:us-east-1:1:cluster/dagy",
            ));
        }
        if sfn {
            pairs.push(("DAGY_SFN_ROLE_ARN", "arn:aws:iam::1:role/sfn"));
            pairs.push((
                "DAGY_SFN_TASK_EXECUTOR_ARN",
                "arn:aws:lambda:us-east-1:1:function:te",
            ));
        }
        Settings::from_lookup(|k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
        .expect("valid settings")
    }

    fn flow(timeout: f64, memory: u64) -> Flow {
        FlowBuilder::new("f")
            .task("a", "echo", |t| t.timeout(timeout).memory_mb(memory))
            .task("b", "echo", |t| t.depends_on(["a"]))
            .build()
            .validate(None)
            .expect("valid")
    }

    fn request(tier: Option<RuntimeTier>, backend: Option<BackendKind>) -> PlanRequest {
        PlanRequest {
            tiers: TierInputs {
                request: tier,
                ..TierInputs::default()
            },
            backend,
        }
    }

    fn refusal(result: Result<Plan, Error>) -> Refusal {
        match result {
            Err(Error::Refused(r)) => r,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn micro_runs_on_lambda_one_task_per_invocation() {
        let p = plan(
            &flow(60.0, 512),
            &request(None, None),
            &settings_with(false, false),
        )
        .expect("plan");
        assert_eq!(
            (p.tier, p.backend, p.mode),
            (
                RuntimeTier::Micro,
                BackendKind::Lambda,
                ExecutionMode::TaskPerInvocation
            )
        );
        assert_eq!(p.decided_by.as_str(), "rule:default");
    }

    #[test]
    fn nano_runs_the_whole_flow_in_one_invocation() {
        let p = plan(
            &flow(60.0, 512),
            &request(Some(RuntimeTier::Nano), None),
            &settings_with(false, false),
        )
        .expect("plan");
        assert_eq!(p.mode, ExecutionMode::WholeFlow);
    }

    #[test]
    fn fargate_tiers_run_on_ecs_when_registered_with_the_tier_size() {
        let p = plan(
            &flow(7200.0, 512),
            &request(None, None),
            &settings_with(true, false),
        )
        .expect("plan");
        assert_eq!(
            (p.tier, p.backend),
            (RuntimeTier::Large, BackendKind::EcsFargate)
        );
        assert_eq!(
            p.resources,
            Some(FargateSize {
                cpu: 2048,
                memory_mb: 4096
            })
        );
        assert!(p.fallback.is_none());
    }

    #[test]
    fn an_unregistered_ecs_falls_back_to_lambda_when_the_flow_fits() {
        let p = plan(
            &flow(60.0, 512),
            &request(Some(RuntimeTier::Medium), None),
            &settings_with(false, false),
        )
        .expect("plan");
        assert_eq!(
            (p.tier, p.backend),
            (RuntimeTier::Medium, BackendKind::Lambda)
        );
        let fallback = p.fallback.expect("recorded");
        assert_eq!(fallback.from, BackendKind::EcsFargate);
        assert!(
            fallback.reason.contains("DAGY_ECS_CLUSTER_ARN is not set"),
            "{}",
            fallback.reason
        );
    }

    #[test]
    fn an_unregistered_ecs_refuses_a_flow_that_does_not_fit_lambda() {
        let r = refusal(plan(
            &flow(7200.0, 512),
            &request(None, None),
            &settings_with(false, false),
        ));
        assert!(r.remedy.contains("DAGY_ECS_CLUSTER_ARN"), "{}", r.remedy);
        assert!(r.reason.contains("timeout_seconds 7200"), "{}", r.reason);
    }

    #[test]
    fn explicit_nano_with_a_two_hour_task_is_refused() {
        let r = refusal(plan(
            &flow(7200.0, 512),
            &request(Some(RuntimeTier::Nano), None),
            &settings_with(true, false),
        ));
        assert!(
            r.reason.contains("task \"a\" has timeout_seconds 7200"),
            "{}",
            r.reason
        );
        assert!(r.remedy.contains("small to xlarge"));
    }

    #[test]
    fn lambda_refuses_memory_over_10_gb() {
        let r = refusal(plan(
            &flow(60.0, 10_241),
            &request(Some(RuntimeTier::Micro), None),
            &settings_with(false, false),
        ));
        assert!(r.reason.contains("10240 MB"), "{}", r.reason);
    }

    #[test]
    fn nano_warns_when_timeouts_exceed_the_flow_budget() {
        let f = FlowBuilder::new("f")
            .task("a", "echo", |t| t.timeout(400.0))
            .task("b", "echo", |t| t.timeout(400.0))
            .build()
            .validate(None)
            .expect("valid");
        let p = plan(
            &f,
            &request(Some(RuntimeTier::Nano), None),
            &settings_with(false, false),
        )
        .expect("plan");
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].contains("800 s"), "{}", p.warnings[0]);
    }

    #[test]
    fn ecs_refuses_a_task_bigger_than_the_tier_and_names_a_tier_that_fits() {
        let r = refusal(plan(
            &flow(60.0, 8192),
            &request(Some(RuntimeTier::Large), None),
            &settings_with(true, false),
        ));
        assert!(
            r.reason.contains("tier large gives 4096 MB"),
            "{}",
            r.reason
        );
        assert!(r.remedy.contains("runtime_tier xlarge"), "{}", r.remedy);
    }

    #[test]
    fn step_functions_must_be_registered_to_be_asked_for() {
        let r = refusal(plan(
            &flow(60.0, 512),
            &request(None, Some(BackendKind::StepFunctions)),
            &settings_with(false, false),
        ));
        assert!(r.remedy.contains("DAGY_SFN_ROLE_ARN"));
    }

    #[test]
    fn step_functions_when_asked_and_registered() {
        let p = plan(
            &flow(60.0, 512),
            &request(None, Some(BackendKind::StepFunctions)),
            &settings_with(false, true),
        )
        .expect("plan");
        assert_eq!(
            (p.backend, p.mode),
            (BackendKind::StepFunctions, ExecutionMode::StateMachine)
        );
    }

    #[test]
    fn step_functions_refuses_more_than_25000_states() {
        let mut b = FlowBuilder::new("big");
        for i in 0..MAX_STATE_MACHINE_STATES {
            b = b.task(format!("t{i}"), "echo", |t| t);
        }
        let f = b.build().validate(None).expect("valid");
        assert_eq!(state_count(&f), MAX_STATE_MACHINE_STATES + 1 + FIXED_STATES);
        let r = refusal(plan(
            &f,
            &request(None, Some(BackendKind::StepFunctions)),
            &settings_with(false, true),
        ));
        assert!(r.reason.contains("25005 states"), "{}", r.reason);
    }

    #[test]
    fn step_functions_reports_what_the_translation_loses() {
        let f = FlowBuilder::new("f")
            .task("a", "echo", |t| {
                t.retries(3)
                    .retry_delays([2.7, 10.0])
                    .jitter(0.5)
                    .timeout(1.5)
            })
            .build()
            .validate(None)
            .expect("valid");
        let p = plan(
            &f,
            &request(None, Some(BackendKind::StepFunctions)),
            &settings_with(false, true),
        )
        .expect("plan");
        let text = p.warnings.join("\n");
        assert!(text.contains("becomes a fixed IntervalSeconds 2"), "{text}");
        assert!(
            text.contains("retry delay 2.7 s becomes IntervalSeconds 2"),
            "{text}"
        );
        assert!(text.contains("BackoffRate 2.0"), "{text}");
        assert!(text.contains("rounded up to TimeoutSeconds 2"), "{text}");
    }

    #[test]
    fn step_functions_warns_when_the_history_would_outgrow_its_limit() {
        let mut b = FlowBuilder::new("wide");
        for i in 0..5_000 {
            b = b.task(format!("t{i}"), "echo", |t| t);
        }
        let f = b.build().validate(None).expect("valid");
        let p = plan(
            &f,
            &request(None, Some(BackendKind::StepFunctions)),
            &settings_with(false, true),
        )
        .expect("5,005 states fit");
        assert!(
            p.warnings
                .iter()
                .any(|w| w.contains("history events, over Step Functions' 25000")),
            "{:?}",
            p.warnings
        );
        let mut b = FlowBuilder::new("retrying");
        for i in 0..1_000 {
            b = b.task(format!("t{i}"), "echo", |t| t.retries(5));
        }
        let f = b.build().validate(None).expect("valid");
        let p = plan(
            &f,
            &request(None, Some(BackendKind::StepFunctions)),
            &settings_with(false, true),
        )
        .expect("plan");
        assert!(
            p.warnings
                .iter()
                .any(|w| w.contains("with every retry used")),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn ecs_asked_for_with_a_lambda_tier_uses_small() {
        let p = plan(
            &flow(60.0, 512),
            &request(None, Some(BackendKind::EcsFargate)),
            &settings_with(true, false),
        )
        .expect("plan");
        assert_eq!(
            (p.tier, p.backend),
            (RuntimeTier::Small, BackendKind::EcsFargate)
        );
        assert_eq!(p.warnings.len(), 1);
    }

    #[test]
    fn the_environment_switch_turns_automatic_selection_off() {
        let mut s = settings_with(false, false);
        s.auto_tier = AutoTier::Off;
        let p = plan(&flow(60.0, 512), &request(None, None), &s).expect("plan");
        assert_eq!(
            (p.tier, p.decided_by),
            (RuntimeTier::Nano, DecidedBy::Default)
        );
    }
}
