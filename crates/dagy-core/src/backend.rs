//! Execution backends, their capabilities (the seed's reference table), and their registration
//! from the environment.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};

use crate::error::Error;
use crate::tier::AutoTier;

/// The three execution backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// The executor Lambda (nano, micro): always registered.
    Lambda,
    /// A state machine per deployment; only when asked for by name.
    StepFunctions,
    /// A Fargate task per run (small to xlarge).
    EcsFargate,
}

impl BackendKind {
    /// Every backend.
    pub const ALL: [BackendKind; 3] = [
        BackendKind::Lambda,
        BackendKind::StepFunctions,
        BackendKind::EcsFargate,
    ];

    /// The snake_case name used in requests and records.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Lambda => "lambda",
            BackendKind::StepFunctions => "step_functions",
            BackendKind::EcsFargate => "ecs_fargate",
        }
    }

    /// The environment variable that registers this backend (none for Lambda).
    pub fn enabling_variable(self) -> Option<&'static str> {
        match self {
            BackendKind::Lambda => None,
            BackendKind::StepFunctions => Some(vars::SFN_ROLE_ARN),
            BackendKind::EcsFargate => Some(vars::ECS_CLUSTER_ARN),
        }
    }

    /// This backend's row of the capability table.
    pub fn capabilities(self) -> Capabilities {
        match self {
            BackendKind::Lambda => Capabilities {
                max_duration_seconds: Limit::At(900),
                max_memory_mb: Limit::At(10_240),
                max_tasks: Limit::Unlimited,
                supports_parallel: false,
                supports_native_retry: false,
                supports_cancel: true,
                supports_streaming_logs: false,
            },
            BackendKind::StepFunctions => Capabilities {
                max_duration_seconds: Limit::At(31_536_000),
                max_memory_mb: Limit::DependsOnCompute,
                max_tasks: Limit::At(25_000),
                supports_parallel: true,
                supports_native_retry: true,
                supports_cancel: true,
                supports_streaming_logs: false,
            },
            BackendKind::EcsFargate => Capabilities {
                max_duration_seconds: Limit::Unlimited,
                max_memory_mb: Limit::At(122_880),
                max_tasks: Limit::Unlimited,
                supports_parallel: false,
                supports_native_retry: false,
                supports_cancel: true,
                supports_streaming_logs: true,
            },
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        BackendKind::ALL
            .into_iter()
            .find(|b| b.as_str() == s)
            .ok_or_else(|| Error::UnknownName {
                kind: "backend",
                value: s.to_string(),
                expected: BackendKind::ALL.map(BackendKind::as_str).join(", "),
            })
    }
}

/// A limit in the capability table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A number.
    At(u64),
    /// No limit.
    Unlimited,
    /// Set by the compute that runs each task (Step Functions memory: the task-executor's).
    DependsOnCompute,
}

impl Limit {
    /// Whether `value` is within the limit (`DependsOnCompute` is checked elsewhere).
    pub fn allows(self, value: u64) -> bool {
        match self {
            Limit::At(max) => value <= max,
            Limit::Unlimited | Limit::DependsOnCompute => true,
        }
    }
}

impl Serialize for Limit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Limit::At(n) => s.serialize_u64(*n),
            Limit::Unlimited => s.serialize_str("unlimited"),
            Limit::DependsOnCompute => s.serialize_str("depends_on_compute"),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::At(n) => write!(f, "{n}"),
            Limit::Unlimited => f.write_str("unlimited"),
            Limit::DependsOnCompute => f.write_str("depends on compute"),
        }
    }
}

/// One column of the seed's "Backend Capabilities Reference".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// The longest a run may take.
    pub max_duration_seconds: Limit,
    /// The most memory one task can have.
    pub max_memory_mb: Limit,
    /// The most tasks (states) a flow may have.
    pub max_tasks: Limit,
    /// Whether independent tasks run at the same time.
    pub supports_parallel: bool,
    /// Whether the backend itself retries (otherwise Dagy's executor does).
    pub supports_native_retry: bool,
    /// Whether a run can be cancelled.
    pub supports_cancel: bool,
    /// Whether logs can be followed while the run goes on.
    pub supports_streaming_logs: bool,
}

/// The environment variables the backends are configured by (the seed's tables).
pub mod vars {
    /// Registers Step Functions: the role the state machines run as.
    pub const SFN_ROLE_ARN: &str = "DAGY_SFN_ROLE_ARN";
    /// The task-executor Lambda that Task states invoke.
    pub const SFN_TASK_EXECUTOR_ARN: &str = "DAGY_SFN_TASK_EXECUTOR_ARN";
    /// Registers ECS Fargate: the cluster runs are started in.
    pub const ECS_CLUSTER_ARN: &str = "DAGY_ECS_CLUSTER_ARN";
    /// The task execution role (image pulls, logs).
    pub const ECS_EXECUTION_ROLE_ARN: &str = "DAGY_ECS_EXECUTION_ROLE_ARN";
    /// The task role (what the worker's code may do).
    pub const ECS_TASK_ROLE_ARN: &str = "DAGY_ECS_TASK_ROLE_ARN";
    /// The worker image.
    pub const ECS_WORKER_IMAGE: &str = "DAGY_ECS_WORKER_IMAGE";
    /// Comma-separated subnet ids.
    pub const ECS_SUBNETS: &str = "DAGY_ECS_SUBNETS";
    /// Comma-separated security group ids.
    pub const ECS_SECURITY_GROUPS: &str = "DAGY_ECS_SECURITY_GROUPS";
    /// The CloudWatch log group of the worker.
    pub const ECS_LOG_GROUP: &str = "DAGY_ECS_LOG_GROUP";
    /// `on` (default) or `off`: whether the automatic tier rules run.
    pub const AUTO_TIER: &str = "DAGY_AUTO_TIER";
}

/// The worker image when `DAGY_ECS_WORKER_IMAGE` is unset.
pub const DEFAULT_WORKER_IMAGE: &str = "dagy-worker:latest";
/// The log group when `DAGY_ECS_LOG_GROUP` is unset.
pub const DEFAULT_LOG_GROUP: &str = "/ecs/dagy-worker";

/// Step Functions settings, present when the backend is registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepFunctionsSettings {
    /// `DAGY_SFN_ROLE_ARN`.
    pub role_arn: String,
    /// `DAGY_SFN_TASK_EXECUTOR_ARN`.
    pub task_executor_arn: String,
}

/// ECS Fargate settings, present when the backend is registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EcsSettings {
    /// `DAGY_ECS_CLUSTER_ARN`.
    pub cluster_arn: String,
    /// `DAGY_ECS_EXECUTION_ROLE_ARN`.
    pub execution_role_arn: Option<String>,
    /// `DAGY_ECS_TASK_ROLE_ARN`.
    pub task_role_arn: Option<String>,
    /// `DAGY_ECS_WORKER_IMAGE`, default `dagy-worker:latest`.
    pub worker_image: String,
    /// `DAGY_ECS_SUBNETS`.
    pub subnets: Vec<String>,
    /// `DAGY_ECS_SECURITY_GROUPS`.
    pub security_groups: Vec<String>,
    /// `DAGY_ECS_LOG_GROUP`, default `/ecs/dagy-worker`.
    pub log_group: String,
}

/// What the environment registers: the router's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Settings {
    /// Registered when `DAGY_SFN_ROLE_ARN` is set.
    pub step_functions: Option<StepFunctionsSettings>,
    /// Registered when `DAGY_ECS_CLUSTER_ARN` is set.
    pub ecs: Option<EcsSettings>,
    /// `DAGY_AUTO_TIER`.
    pub auto_tier: AutoTier,
}

impl Settings {
    /// Reads the settings through `lookup` (e.g. `|k| std::env::var(k).ok()`).
    ///
    /// A variable set to the empty string counts as unset, as CloudFormation writes optional
    /// values that way. A registered backend missing a required companion is an error naming it.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, Error> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let list = |name: &str| {
            get(name)
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let step_functions = match get(vars::SFN_ROLE_ARN) {
            None => None,
            Some(role_arn) => {
                let task_executor_arn =
                    get(vars::SFN_TASK_EXECUTOR_ARN).ok_or_else(|| Error::Config {
                        variable: vars::SFN_TASK_EXECUTOR_ARN.into(),
                        message: format!(
                            "must be set to the task-executor Lambda's ARN when {} is set \
                         (or unset {} to turn Step Functions off)",
                            vars::SFN_ROLE_ARN,
                            vars::SFN_ROLE_ARN
                        ),
                    })?;
                Some(StepFunctionsSettings {
                    role_arn,
                    task_executor_arn,
                })
            }
        };
        let ecs = get(vars::ECS_CLUSTER_ARN).map(|cluster_arn| EcsSettings {
            cluster_arn,
            execution_role_arn: get(vars::ECS_EXECUTION_ROLE_ARN),
            task_role_arn: get(vars::ECS_TASK_ROLE_ARN),
            worker_image: get(vars::ECS_WORKER_IMAGE)
                .unwrap_or_else(|| DEFAULT_WORKER_IMAGE.into()),
            subnets: list(vars::ECS_SUBNETS),
            security_groups: list(vars::ECS_SECURITY_GROUPS),
            log_group: get(vars::ECS_LOG_GROUP).unwrap_or_else(|| DEFAULT_LOG_GROUP.into()),
        });
        let auto_tier = match get(vars::AUTO_TIER).as_deref() {
            None | Some("on") => AutoTier::On,
            Some("off") => AutoTier::Off,
            Some(other) => {
                return Err(Error::Config {
                    variable: vars::AUTO_TIER.into(),
                    message: format!("must be \"on\" or \"off\", got \"{other}\""),
                });
            }
        };
        Ok(Settings {
            step_functions,
            ecs,
            auto_tier,
        })
    }

    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Settings, Error> {
        Settings::from_lookup(|k| std::env::var(k).ok())
    }

    /// Whether a backend is registered. Lambda always is.
    pub fn is_registered(&self, backend: BackendKind) -> bool {
        match backend {
            BackendKind::Lambda => true,
            BackendKind::StepFunctions => self.step_functions.is_some(),
            BackendKind::EcsFargate => self.ecs.is_some(),
        }
    }

    /// The registered backends, Lambda first.
    pub fn registered(&self) -> Vec<BackendKind> {
        BackendKind::ALL
            .into_iter()
            .filter(|b| self.is_registered(*b))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, Error> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn only_lambda_is_registered_by_default() {
        let s = settings(&[]).expect("empty environment is fine");
        assert_eq!(s.registered(), [BackendKind::Lambda]);
        assert_eq!(s.auto_tier, AutoTier::On);
    }

    #[test]
    fn the_sfn_role_registers_step_functions() {
        let s = settings(&[
            ("DAGY_SFN_ROLE_ARN", "arn:aws:iam::1:role/sfn"),
            (
                "DAGY_SFN_TASK_EXECUTOR_ARN",
                "arn:aws:lambda:us-east-1:1:function:te",
            ),
        ])
        .expect("complete");
        assert_eq!(
            s.registered(),
            [BackendKind::Lambda, BackendKind::StepFunctions]
        );
    }

    #[test]
    fn the_sfn_role_without_the_task_executor_is_an_error_naming_it() {
        let err =
            settings(&[("DAGY_SFN_ROLE_ARN", "arn:aws:iam::1:role/sfn")]).expect_err("incomplete");
        match &err {
            Error::Config { variable, .. } => assert_eq!(variable, "DAGY_SFN_TASK_EXECUTOR_ARN"),
            other => panic!("expected a config error, got {other:?}"),
        }
        assert!(
            err.to_string()
                .starts_with("DAGY_SFN_TASK_EXECUTOR_ARN: must be set")
        );
    }

    #[test]
    fn the_task_executor_alone_registers_nothing() {
        let s = settings(&[("DAGY_SFN_TASK_EXECUTOR_ARN", "arn:x")]).expect("fine");
        assert!(!s.is_registered(BackendKind::StepFunctions));
    }

    #[test]
    fn ecs_takes_the_seed_defaults() {
        let s = settings(&[(
            "DAGY_ECS_CLUSTER_ARN",
            "arn:aws:ecs:us-east-1:1:cluster/dagy",
        )])
        .expect("ok");
        let ecs = s.ecs.expect("registered");
        assert_eq!(ecs.worker_image, "dagy-worker:latest");
        assert_eq!(ecs.log_group, "/ecs/dagy-worker");
        assert!(ecs.subnets.is_empty() && ecs.security_groups.is_empty());
        assert_eq!(ecs.execution_role_arn, None);
    }

    #[test]
    fn ecs_lists_are_comma_separated_and_trimmed() {
        let s = settings(&[
            ("DAGY_ECS_CLUSTER_ARN", "c"),
            ("DAGY_ECS_SUBNETS", "subnet-1, subnet-2,,"),
            ("DAGY_ECS_SECURITY_GROUPS", "sg-1"),
            (
                "DAGY_ECS_WORKER_IMAGE",
                "123.dkr.ecr.us-east-1.amazonaws.com/dagy-worker:v2",
            ),
        ])
        .expect("ok");
        let ecs = s.ecs.expect("registered");
        assert_eq!(ecs.subnets, ["subnet-1", "subnet-2"]);
        assert_eq!(ecs.security_groups, ["sg-1"]);
        assert!(ecs.worker_image.ends_with(":v2"));
    }

    #[test]
    fn empty_values_count_as_unset() {
        let s = settings(&[("DAGY_ECS_CLUSTER_ARN", ""), ("DAGY_SFN_ROLE_ARN", " ")]).expect("ok");
        assert_eq!(s.registered(), [BackendKind::Lambda]);
    }

    #[test]
    fn auto_tier_accepts_on_and_off_only() {
        assert_eq!(
            settings(&[("DAGY_AUTO_TIER", "off")])
                .expect("ok")
                .auto_tier,
            AutoTier::Off
        );
        let err = settings(&[("DAGY_AUTO_TIER", "maybe")]).expect_err("bad value");
        assert!(err.to_string().contains("DAGY_AUTO_TIER"));
    }

    #[test]
    fn the_capability_table_matches_the_seed() {
        let l = BackendKind::Lambda.capabilities();
        let s = BackendKind::StepFunctions.capabilities();
        let e = BackendKind::EcsFargate.capabilities();
        assert_eq!(
            (
                l.max_duration_seconds,
                s.max_duration_seconds,
                e.max_duration_seconds
            ),
            (Limit::At(900), Limit::At(31_536_000), Limit::Unlimited)
        );
        assert_eq!(
            (l.max_memory_mb, s.max_memory_mb, e.max_memory_mb),
            (
                Limit::At(10_240),
                Limit::DependsOnCompute,
                Limit::At(122_880)
            )
        );
        assert_eq!(
            (l.max_tasks, s.max_tasks, e.max_tasks),
            (Limit::Unlimited, Limit::At(25_000), Limit::Unlimited)
        );
        assert_eq!(
            (
                l.supports_parallel,
                s.supports_parallel,
                e.supports_parallel
            ),
            (false, true, false)
        );
        assert_eq!(
            (
                l.supports_native_retry,
                s.supports_native_retry,
                e.supports_native_retry
            ),
            (false, true, false)
        );
        assert!(l.supports_cancel && s.supports_cancel && e.supports_cancel);
        assert_eq!(
            (
                l.supports_streaming_logs,
                s.supports_streaming_logs,
                e.supports_streaming_logs
            ),
            (false, false, true)
        );
    }

    #[test]
    fn backend_names_parse() {
        assert_eq!(
            "step_functions".parse::<BackendKind>().ok(),
            Some(BackendKind::StepFunctions)
        );
        assert!("fargate".parse::<BackendKind>().is_err());
    }
}
