//! Runtime tiers and the six-level tier resolution.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::graph::Flow;

/// The six runtime tiers, ordered from smallest to largest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeTier {
    /// The whole flow in one executor invocation; 600 s for the flow.
    Nano,
    /// Each task in its own executor invocation; 600 s per task.
    Micro,
    /// Fargate, 0.5 vCPU / 1 GB.
    Small,
    /// Fargate, 1 vCPU / 2 GB.
    Medium,
    /// Fargate, 2 vCPU / 4 GB.
    Large,
    /// Fargate, 4 vCPU / 12 GB.
    Xlarge,
}

/// The budget of a Lambda tier: the flow's for nano, each task's for micro.
pub const LAMBDA_TIER_BUDGET_SECONDS: u64 = 600;

impl RuntimeTier {
    /// Every tier, smallest first.
    pub const ALL: [RuntimeTier; 6] = [
        RuntimeTier::Nano,
        RuntimeTier::Micro,
        RuntimeTier::Small,
        RuntimeTier::Medium,
        RuntimeTier::Large,
        RuntimeTier::Xlarge,
    ];

    /// The tier's lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeTier::Nano => "nano",
            RuntimeTier::Micro => "micro",
            RuntimeTier::Small => "small",
            RuntimeTier::Medium => "medium",
            RuntimeTier::Large => "large",
            RuntimeTier::Xlarge => "xlarge",
        }
    }

    /// The dedicated compute of a Fargate tier (the seed's tier table); `None` for the shared
    /// Lambda tiers.
    pub fn fargate_resources(self) -> Option<crate::FargateSize> {
        let (cpu, memory_mb) = match self {
            RuntimeTier::Nano | RuntimeTier::Micro => return None,
            RuntimeTier::Small => return Some(crate::FargateSize::SMALL),
            RuntimeTier::Medium => (1024, 2048),
            RuntimeTier::Large => (2048, 4096),
            RuntimeTier::Xlarge => (4096, 12288),
        };
        Some(crate::FargateSize { cpu, memory_mb })
    }

    /// The Fargate size a run of this tier gets on ECS: its own, or the small tier's for a
    /// Lambda tier sent there.
    pub fn fargate_size(self) -> crate::FargateSize {
        self.fargate_resources()
            .unwrap_or(crate::FargateSize::SMALL)
    }

    /// Whether this tier runs on Lambda (nano, micro).
    pub fn is_lambda_tier(self) -> bool {
        matches!(self, RuntimeTier::Nano | RuntimeTier::Micro)
    }

    /// The tier's maximum duration in seconds (per flow for nano, per task for micro),
    /// `None` when unlimited.
    pub fn max_duration_seconds(self) -> Option<u64> {
        self.is_lambda_tier().then_some(LAMBDA_TIER_BUDGET_SECONDS)
    }
}

impl fmt::Display for RuntimeTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RuntimeTier {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        RuntimeTier::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| Error::UnknownName {
                kind: "runtime tier",
                value: s.to_string(),
                expected: RuntimeTier::ALL.map(RuntimeTier::as_str).join(", "),
            })
    }
}

/// Whether level 5 (the automatic rules) is consulted: `DAGY_AUTO_TIER`, `on` by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoTier {
    /// Rules pick a tier when nothing above them did (the default).
    #[default]
    On,
    /// Rules are skipped; level 6 (nano) answers.
    Off,
}

/// The tier answers of levels 1-3, and the automatic-selection switch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TierInputs {
    /// Level 1: `runtime_tier` in the trigger request.
    pub request: Option<RuntimeTier>,
    /// Level 2: the deployment's `default_runtime_tier`.
    pub deployment: Option<RuntimeTier>,
    /// Level 3: the environment's `default_runtime_tier`.
    pub environment: Option<RuntimeTier>,
    /// Whether level 5 runs.
    pub auto_tier: AutoTier,
}

/// Which level of the resolution chose the tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecidedBy {
    /// Level 1.
    Request,
    /// Level 2.
    Deployment,
    /// Level 3.
    Environment,
    /// Level 4: the highest task hint.
    Flow,
    /// Level 5: an automatic rule (or its `default` row, micro).
    Rule(RuleName),
    /// Level 6: nano, with automatic selection off.
    Default,
}

impl DecidedBy {
    /// The recorded form: `request`, `deployment`, `environment`, `flow`, `rule:<name>`, `default`.
    pub fn as_str(self) -> &'static str {
        match self {
            DecidedBy::Request => "request",
            DecidedBy::Deployment => "deployment",
            DecidedBy::Environment => "environment",
            DecidedBy::Flow => "flow",
            DecidedBy::Rule(RuleName::Resource) => "rule:resource",
            DecidedBy::Rule(RuleName::Duration) => "rule:duration",
            DecidedBy::Rule(RuleName::Complexity) => "rule:complexity",
            DecidedBy::Rule(RuleName::Default) => "rule:default",
            DecidedBy::Default => "default",
        }
    }
}

impl fmt::Display for DecidedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DecidedBy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The names of the automatic rules (the seed's "Rule" column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleName {
    /// Priority 100: memory >= 3 GB.
    Resource,
    /// Priorities 90 and 80: long timeouts.
    Duration,
    /// Priority 70: many tasks.
    Complexity,
    /// No rule matched: micro.
    Default,
}

/// Memory at or above which the resource rule selects xlarge: 3 GB.
pub const RESOURCE_RULE_MEMORY_MB: u64 = 3 * 1024;
/// A max task timeout above this selects large: 1 hour.
pub const LONG_TIMEOUT_SECONDS: f64 = 3600.0;
/// A max task timeout from this up to an hour (both inclusive) selects medium: 15 minutes.
pub const MEDIUM_TIMEOUT_SECONDS: f64 = 900.0;
/// A task count at or above this selects large.
pub const COMPLEX_FLOW_TASKS: usize = 50;

/// The properties of a flow that tier resolution and backend fit look at.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowProfile {
    /// Number of tasks.
    pub task_count: usize,
    /// The largest `memory_mb` and the task that asks for it.
    pub max_memory: Option<(u64, String)>,
    /// The largest `timeout_seconds` and its task.
    pub max_timeout: Option<(f64, String)>,
    /// The highest `runtime_tier` hint and its task.
    pub highest_hint: Option<(RuntimeTier, String)>,
}

impl FlowProfile {
    /// Measures a flow.
    pub fn of(flow: &Flow) -> FlowProfile {
        let mut profile = FlowProfile {
            task_count: flow.tasks().len(),
            max_memory: None,
            max_timeout: None,
            highest_hint: None,
        };
        for task in flow.tasks() {
            if let Some(mb) = task.memory_mb
                && profile.max_memory.as_ref().is_none_or(|(m, _)| mb > *m)
            {
                profile.max_memory = Some((mb, task.id.clone()));
            }
            if let Some(t) = task.timeout_seconds
                && profile.max_timeout.as_ref().is_none_or(|(m, _)| t > *m)
            {
                profile.max_timeout = Some((t, task.id.clone()));
            }
            if let Some(tier) = task.runtime_tier
                && profile.highest_hint.as_ref().is_none_or(|(h, _)| tier > *h)
            {
                profile.highest_hint = Some((tier, task.id.clone()));
            }
        }
        profile
    }
}

/// The tier chosen for a run, which level chose it, and why, in words.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierDecision {
    /// The tier.
    pub tier: RuntimeTier,
    /// The level that answered.
    pub decided_by: DecidedBy,
    /// A sentence a user can read.
    pub reason: String,
}

/// Resolves the tier: the first of the six levels that answers wins.
pub fn resolve_tier(profile: &FlowProfile, inputs: &TierInputs) -> TierDecision {
    let decision = |tier, decided_by, reason: String| TierDecision {
        tier,
        decided_by,
        reason,
    };
    if let Some(tier) = inputs.request {
        return decision(
            tier,
            DecidedBy::Request,
            format!("the trigger request asked for runtime_tier {tier}"),
        );
    }
    if let Some(tier) = inputs.deployment {
        return decision(
            tier,
            DecidedBy::Deployment,
            format!("the deployment's default_runtime_tier is {tier}"),
        );
    }
    if let Some(tier) = inputs.environment {
        return decision(
            tier,
            DecidedBy::Environment,
            format!("the environment's default_runtime_tier is {tier}"),
        );
    }
    if let Some((tier, task)) = &profile.highest_hint {
        return decision(
            *tier,
            DecidedBy::Flow,
            format!("task \"{task}\" asks for runtime_tier {tier}, the highest hint in the flow"),
        );
    }
    if inputs.auto_tier == AutoTier::Off {
        return decision(
            RuntimeTier::Nano,
            DecidedBy::Default,
            "nothing chose a tier and automatic selection is off (DAGY_AUTO_TIER=off): nano".into(),
        );
    }
    apply_rules(profile)
}

/// Level 5: the automatic rules in priority order, then, if the chosen dedicated tier has
/// less memory than a task asks for, the smallest dedicated tier that has enough.
pub fn apply_rules(profile: &FlowProfile) -> TierDecision {
    let mut decision = first_rule(profile);
    if let Some((mb, task)) = &profile.max_memory
        && decision
            .tier
            .fargate_resources()
            .is_some_and(|s| u64::from(s.memory_mb) < *mb)
        && let Some(bigger) = RuntimeTier::ALL.into_iter().find(|t| {
            t.fargate_resources()
                .is_some_and(|s| u64::from(s.memory_mb) >= *mb)
        })
    {
        decision.reason = format!(
            "{}; task \"{task}\" needs memory_mb {mb}, more than {} has, so {bigger}, the smallest tier with enough",
            decision.reason, decision.tier
        );
        decision.tier = bigger;
    }
    decision
}

/// The first automatic rule that matches.
fn first_rule(profile: &FlowProfile) -> TierDecision {
    let rule = |tier, name, reason: String| TierDecision {
        tier,
        decided_by: DecidedBy::Rule(name),
        reason,
    };
    if let Some((mb, task)) = &profile.max_memory
        && *mb >= RESOURCE_RULE_MEMORY_MB
    {
        return rule(
            RuntimeTier::Xlarge,
            RuleName::Resource,
            format!(
                "rule resource (priority 100): max task memory {mb} MB (task \"{task}\") >= {RESOURCE_RULE_MEMORY_MB} MB"
            ),
        );
    }
    if let Some((t, task)) = &profile.max_timeout {
        if *t > LONG_TIMEOUT_SECONDS {
            return rule(
                RuntimeTier::Large,
                RuleName::Duration,
                format!(
                    "rule duration (priority 90): max task timeout {t} s (task \"{task}\") > {LONG_TIMEOUT_SECONDS} s"
                ),
            );
        }
        if *t >= MEDIUM_TIMEOUT_SECONDS {
            return rule(
                RuntimeTier::Medium,
                RuleName::Duration,
                format!(
                    "rule duration (priority 80): max task timeout {t} s (task \"{task}\") is from {MEDIUM_TIMEOUT_SECONDS} s to {LONG_TIMEOUT_SECONDS} s"
                ),
            );
        }
        let lambda_limit = LAMBDA_TIER_BUDGET_SECONDS as f64;
        if *t > lambda_limit {
            return rule(
                RuntimeTier::Small,
                RuleName::Duration,
                format!(
                    "rule duration (priority 80): max task timeout {t} s (task \"{task}\") is over the {lambda_limit} s a lambda tier gives a task and under {MEDIUM_TIMEOUT_SECONDS} s: small, the smallest dedicated tier"
                ),
            );
        }
    }
    if profile.task_count >= COMPLEX_FLOW_TASKS {
        return rule(
            RuntimeTier::Large,
            RuleName::Complexity,
            format!(
                "rule complexity (priority 70): {} tasks >= {COMPLEX_FLOW_TASKS}",
                profile.task_count
            ),
        );
    }
    rule(
        RuntimeTier::Micro,
        RuleName::Default,
        format!(
            "no rule matched (max memory {}, max timeout {}, {} tasks): the default rule picks micro",
            profile
                .max_memory
                .as_ref()
                .map_or("unset".to_string(), |(m, _)| format!("{m} MB")),
            profile
                .max_timeout
                .as_ref()
                .map_or("unset".to_string(), |(t, _)| format!("{t} s")),
            profile.task_count
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> FlowProfile {
        FlowProfile {
            task_count: 3,
            max_memory: None,
            max_timeout: None,
            highest_hint: None,
        }
    }

    fn with_memory(mb: u64) -> FlowProfile {
        FlowProfile {
            max_memory: Some((mb, "m".into())),
            ..profile()
        }
    }

    fn with_timeout(t: f64) -> FlowProfile {
        FlowProfile {
            max_timeout: Some((t, "t".into())),
            ..profile()
        }
    }

    fn all_levels() -> TierInputs {
        TierInputs {
            request: Some(RuntimeTier::Small),
            deployment: Some(RuntimeTier::Medium),
            environment: Some(RuntimeTier::Large),
            auto_tier: AutoTier::On,
        }
    }

    fn auto() -> TierInputs {
        TierInputs::default()
    }

    #[test]
    fn level_1_the_request_wins_over_everything() {
        let p = FlowProfile {
            highest_hint: Some((RuntimeTier::Xlarge, "x".into())),
            ..with_memory(8192)
        };
        let d = resolve_tier(&p, &all_levels());
        assert_eq!(
            (d.tier, d.decided_by),
            (RuntimeTier::Small, DecidedBy::Request)
        );
        assert_eq!(d.reason, "the trigger request asked for runtime_tier small");
    }

    #[test]
    fn level_2_the_deployment_answers_when_the_request_is_silent() {
        let inputs = TierInputs {
            request: None,
            ..all_levels()
        };
        let d = resolve_tier(&profile(), &inputs);
        assert_eq!(
            (d.tier, d.decided_by),
            (RuntimeTier::Medium, DecidedBy::Deployment)
        );
    }

    #[test]
    fn level_3_the_environment_answers_next() {
        let inputs = TierInputs {
            request: None,
            deployment: None,
            ..all_levels()
        };
        let d = resolve_tier(&profile(), &inputs);
        assert_eq!(
            (d.tier, d.decided_by),
            (RuntimeTier::Large, DecidedBy::Environment)
        );
    }

    #[test]
    fn level_4_the_highest_task_hint_beats_the_rules() {
        let p = FlowProfile {
            highest_hint: Some((RuntimeTier::Small, "train".into())),
            ..with_memory(8192)
        };
        let d = resolve_tier(&p, &auto());
        assert_eq!(
            (d.tier, d.decided_by),
            (RuntimeTier::Small, DecidedBy::Flow)
        );
        assert!(d.reason.contains("task \"train\""), "{}", d.reason);
    }

    #[test]
    fn rule_100_memory_of_3_gb_selects_xlarge() {
        let d = resolve_tier(&with_memory(3072), &auto());
        assert_eq!(
            (d.tier, d.decided_by),
            (RuntimeTier::Xlarge, DecidedBy::Rule(RuleName::Resource))
        );
        assert!(d.reason.contains("3072 MB"), "{}", d.reason);
        assert_eq!(
            resolve_tier(&with_memory(3071), &auto()).tier,
            RuntimeTier::Micro
        );
    }

    #[test]
    fn rule_100_outranks_rule_90() {
        let p = FlowProfile {
            max_timeout: Some((7200.0, "t".into())),
            ..with_memory(4096)
        };
        assert_eq!(resolve_tier(&p, &auto()).tier, RuntimeTier::Xlarge);
    }

    #[test]
    fn rule_90_timeout_over_an_hour_selects_large() {
        let d = resolve_tier(&with_timeout(7200.0), &auto());
        assert_eq!(
            (d.tier, d.decided_by.as_str()),
            (RuntimeTier::Large, "rule:duration")
        );
        assert_eq!(
            d.reason,
            "rule duration (priority 90): max task timeout 7200 s (task \"t\") > 3600 s"
        );
    }

    #[test]
    fn rule_80_timeout_from_15_minutes_to_an_hour_inclusive_selects_medium() {
        for t in [900.0, 900.5, 3600.0] {
            assert_eq!(
                resolve_tier(&with_timeout(t), &auto()).tier,
                RuntimeTier::Medium,
                "{t}"
            );
        }
        assert_eq!(
            resolve_tier(&with_timeout(3600.5), &auto()).tier,
            RuntimeTier::Large
        );
    }

    #[test]
    fn a_timeout_past_what_lambda_tiers_give_selects_small_and_says_why() {
        for t in [600.5, 700.0, 899.9] {
            let d = resolve_tier(&with_timeout(t), &auto());
            assert_eq!(d.tier, RuntimeTier::Small, "{t}");
            assert!(d.reason.contains("smallest dedicated tier"), "{}", d.reason);
        }
        assert_eq!(
            resolve_tier(&with_timeout(600.0), &auto()).tier,
            RuntimeTier::Micro
        );
    }

    #[test]
    fn a_rules_tier_without_the_memory_a_task_needs_becomes_the_smallest_that_has_it() {
        let p = FlowProfile {
            max_memory: Some((2500, "big".into())),
            max_timeout: Some((1000.0, "long".into())),
            ..profile()
        };
        let d = resolve_tier(&p, &auto());
        assert_eq!(d.tier, RuntimeTier::Large);
        assert!(d.reason.contains("needs memory_mb 2500"), "{}", d.reason);
    }

    #[test]
    fn rule_70_fifty_tasks_select_large() {
        let p = FlowProfile {
            task_count: 50,
            ..profile()
        };
        let d = resolve_tier(&p, &auto());
        assert_eq!(
            (d.tier, d.decided_by.as_str()),
            (RuntimeTier::Large, "rule:complexity")
        );
        let p = FlowProfile {
            task_count: 49,
            ..profile()
        };
        assert_eq!(resolve_tier(&p, &auto()).tier, RuntimeTier::Micro);
    }

    #[test]
    fn rule_80_outranks_rule_70() {
        let p = FlowProfile {
            task_count: 80,
            ..with_timeout(1000.0)
        };
        assert_eq!(resolve_tier(&p, &auto()).tier, RuntimeTier::Medium);
    }

    #[test]
    fn the_default_rule_selects_micro() {
        let d = resolve_tier(&profile(), &auto());
        assert_eq!(
            (d.tier, d.decided_by.as_str()),
            (RuntimeTier::Micro, "rule:default")
        );
    }

    #[test]
    fn level_6_nano_only_when_automatic_selection_is_off() {
        let inputs = TierInputs {
            auto_tier: AutoTier::Off,
            ..auto()
        };
        let d = resolve_tier(&with_memory(8192), &inputs);
        assert_eq!(
            (d.tier, d.decided_by),
            (RuntimeTier::Nano, DecidedBy::Default)
        );
        assert!(d.reason.contains("DAGY_AUTO_TIER=off"));
    }

    #[test]
    fn tiers_parse_and_order() {
        assert_eq!(
            "xlarge".parse::<RuntimeTier>().ok(),
            Some(RuntimeTier::Xlarge)
        );
        let err = "huge".parse::<RuntimeTier>().expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "unknown runtime tier \"huge\"; expected one of: nano, micro, small, medium, large, xlarge"
        );
        assert!(RuntimeTier::Nano < RuntimeTier::Micro && RuntimeTier::Large < RuntimeTier::Xlarge);
    }
}
