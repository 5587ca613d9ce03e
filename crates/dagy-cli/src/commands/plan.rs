//! `dagy plan`.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;

use dagy_core::{BackendKind, ExecutionMode, Plan, PlanRequest, RuntimeTier, Settings, TierInputs};

/// Arguments of `dagy plan`. Backends are registered from this process's environment
/// (DAGY_SFN_ROLE_ARN, DAGY_ECS_CLUSTER_ARN, ...), as the router's would be.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The FlowSpec JSON file (`-` for standard input).
    pub flow: PathBuf,
    /// Level 1: the tier a trigger request asks for.
    #[arg(long, value_parser = parse_tier)]
    pub tier: Option<RuntimeTier>,
    /// Level 2: the deployment's default_runtime_tier.
    #[arg(long, value_parser = parse_tier)]
    pub deployment_tier: Option<RuntimeTier>,
    /// Level 3: the environment's default_runtime_tier.
    #[arg(long, value_parser = parse_tier)]
    pub environment_tier: Option<RuntimeTier>,
    /// A backend asked for by name (step_functions is only reached this way).
    #[arg(long, value_parser = parse_backend)]
    pub backend: Option<BackendKind>,
    /// Print the decision as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_tier(s: &str) -> Result<RuntimeTier, String> {
    s.parse().map_err(|e: dagy_core::Error| e.to_string())
}

fn parse_backend(s: &str) -> Result<BackendKind, String> {
    s.parse().map_err(|e: dagy_core::Error| e.to_string())
}

/// Prints the decision; exit 1 when the flow is invalid or refused.
pub fn run(args: PlanArgs, handlers: &dyn dagy_core::HandlerCatalog) -> anyhow::Result<ExitCode> {
    let flow = match super::load_flow(&args.flow, handlers)? {
        Ok(flow) => flow,
        Err(e) => return Ok(super::report(&e, args.json)),
    };
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => return Ok(super::report(&e, args.json)),
    };
    let request = PlanRequest {
        tiers: TierInputs {
            request: args.tier,
            deployment: args.deployment_tier,
            environment: args.environment_tier,
            auto_tier: settings.auto_tier,
        },
        backend: args.backend,
    };
    let plan = match dagy_core::plan(&flow, &request, &settings) {
        Ok(plan) => plan,
        Err(e) => return Ok(super::report(&e, args.json)),
    };
    if args.json {
        let mut body = serde_json::to_value(&plan)?;
        body["flow"] = json!(flow.name());
        body["fallback"] = plan.fallback.as_ref().map_or(json!(null), |f| json!(f));
        crate::output::out!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        print_human(flow.name(), flow.tasks().len(), flow.levels().len(), &plan);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_human(name: &str, tasks: usize, levels: usize, plan: &Plan) {
    let mode = match plan.mode {
        ExecutionMode::WholeFlow => "the whole flow in one invocation",
        ExecutionMode::TaskPerInvocation => "one invocation per task",
        ExecutionMode::Container => "one Fargate task runs the flow",
        ExecutionMode::StateMachine => "a state machine; one task-executor invocation per task",
    };
    crate::output::out!("flow      {name} ({tasks} tasks, {levels} levels)");
    crate::output::out!("tier      {}   (decided by {})", plan.tier, plan.decided_by);
    crate::output::out!("reason    {}", plan.reason);
    crate::output::out!("backend   {}   ({mode})", plan.backend);
    if let Some(size) = plan.resources {
        crate::output::out!("size      {size}");
    }
    match &plan.fallback {
        Some(f) => crate::output::out!("fallback  from {}: {}", f.from, f.reason),
        None => crate::output::out!("fallback  -"),
    }
    if plan.warnings.is_empty() {
        crate::output::out!("warnings  none");
    } else {
        crate::output::out!("warnings");
        for w in &plan.warnings {
            crate::output::out!("  - {w}");
        }
    }
}
