//! Dagy's ECS Fargate backend: the small, medium, large and xlarge tiers.
//!
//! - The `dagy-worker` task definition (the worker image, the execution and task roles, logs to
//!   the log group through `awslogs` with the stream prefix [`STREAM_PREFIX`]) is registered
//!   when it is absent or differs from the settings.
//! - [`EcsBackend::start`] runs one Fargate task per run: the tier's cpu and memory as task
//!   overrides, the run id and table in the container's environment, the subnets and security
//!   groups of the settings, `clientToken` and `startedBy` from the run id (a repeated start
//!   finds the run's task instead of starting another), tags naming the run. Start failures
//!   (`failures[]`, capacity, ENI limits, throttling) are retried with backoff and jitter, then
//!   reported with AWS's reason.
//! - [`EcsBackend::stop`] stops the run's task with a reason; [`EcsBackend::task`] says whether
//!   it runs or why it stopped (`stoppedReason`, exit code), so the sweep can end a run whose
//!   worker died without recording it.
//! - [`EcsBackend::logs`] reads the run's log stream from CloudWatch Logs, a page at a time.
//!
//! The clients come from the caller, configured from the environment (`AWS_ENDPOINT_URL`).

use std::time::Duration;

use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, Compatibility, ContainerDefinition, ContainerOverride,
    DesiredStatus, KeyValuePair, LaunchType, LogConfiguration, LogDriver, NetworkConfiguration,
    NetworkMode, Tag, TaskOverride,
};

use dagy_core::{EcsSettings, FargateSize};

/// The task definition family and container name of the worker.
pub const WORKER: &str = "dagy-worker";
/// The `awslogs` stream prefix: a run's stream is `dagy/dagy-worker/<task id>`.
pub const STREAM_PREFIX: &str = "dagy";
/// The variable that tells the worker which run to execute.
pub const RUN_ID_VAR: &str = "DAGY_RUN_ID";
/// The task-definition size, overridden per run by the tier's.
const DEFAULT_SIZE: FargateSize = FargateSize::SMALL;

/// What the backend could not do, with what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EcsError {
    /// A run id that cannot be a `startedBy` or `clientToken`.
    #[error("run id {0:?} cannot name an ECS task: use 1 to 36 letters, digits, '-' or '_'")]
    BadRunId(String),
    /// Fargate could not start the task, after the retries.
    #[error("Fargate could not start the run's task after {attempts} attempts: {reason}")]
    StartFailed {
        /// Attempts made.
        attempts: u32,
        /// AWS's reason, from the last attempt.
        reason: String,
    },
    /// The settings name no subnets: a Fargate task needs one.
    #[error("DAGY_ECS_SUBNETS is empty: a Fargate task needs at least one subnet")]
    NoSubnets,
    /// ECS or CloudWatch Logs refused or failed a request.
    #[error("{operation} failed: {message}")]
    Api {
        /// The operation.
        operation: &'static str,
        /// What it said.
        message: String,
    },
}

/// A run's task, as ECS describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    /// Provisioning, pending or running.
    Running {
        /// The task ARN.
        task_arn: String,
    },
    /// Stopped, and why.
    Stopped {
        /// The task ARN.
        task_arn: String,
        /// ECS's `stoppedReason`.
        reason: String,
        /// The worker container's exit code, when it had one.
        exit_code: Option<i32>,
    },
}

/// A page of a run's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPage {
    /// Lines, oldest first, each with its timestamp (milliseconds since the epoch).
    pub events: Vec<(i64, String)>,
    /// Pass back to read on from here (also when there was nothing new yet).
    pub next: Option<String>,
}

/// How start failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartRetry {
    /// Attempts in all.
    pub attempts: u32,
    /// The first wait; each next one doubles, with full jitter.
    pub base: Duration,
}

impl Default for StartRetry {
    fn default() -> Self {
        StartRetry {
            attempts: 5,
            base: Duration::from_secs(1),
        }
    }
}

/// Starts, stops and watches runs' Fargate tasks, and reads their logs.
#[derive(Debug, Clone)]
pub struct EcsBackend {
    ecs: aws_sdk_ecs::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    settings: EcsSettings,
    region: String,
    table: String,
    retry: StartRetry,
}

impl EcsBackend {
    /// A backend for `settings` in `region`; the worker reads runs from `table`.
    pub fn new(
        ecs: aws_sdk_ecs::Client,
        logs: aws_sdk_cloudwatchlogs::Client,
        settings: EcsSettings,
        region: &str,
        table: &str,
    ) -> Self {
        EcsBackend {
            ecs,
            logs,
            settings,
            region: region.to_string(),
            table: table.to_string(),
            retry: StartRetry::default(),
        }
    }

    /// Retries start failures this way instead.
    pub fn with_start_retry(mut self, retry: StartRetry) -> Self {
        self.retry = retry;
        self
    }

    /// The worker's task definition as the settings want it; returns its ARN, registering a
    /// new revision only when the current one differs.
    pub async fn ensure_task_definition(&self) -> Result<String, EcsError> {
        match self
            .ecs
            .describe_task_definition()
            .task_definition(WORKER)
            .send()
            .await
        {
            Ok(out) => {
                if let Some(current) = out.task_definition()
                    && self.is_current(current)
                    && let Some(arn) = current.task_definition_arn()
                {
                    return Ok(arn.to_string());
                }
            }
            Err(e) if is_client_error(&e) => {}
            Err(e) => return Err(api("DescribeTaskDefinition", &e)),
        }
        let log = LogConfiguration::builder()
            .log_driver(LogDriver::Awslogs)
            .options("awslogs-group", &self.settings.log_group)
            .options("awslogs-region", &self.region)
            .options("awslogs-stream-prefix", STREAM_PREFIX)
            .options("awslogs-create-group", "true")
            .build()
            .map_err(|e| build_error("RegisterTaskDefinition", &e))?;
        let container = ContainerDefinition::builder()
            .name(WORKER)
            .image(&self.settings.worker_image)
            .essential(true)
            .memory(i32::try_from(DEFAULT_SIZE.memory_mb).unwrap_or(1024))
            .environment(kv("DAGY_TABLE_NAME", &self.table))
            .log_configuration(log)
            .build();
        let out = self
            .ecs
            .register_task_definition()
            .family(WORKER)
            .requires_compatibilities(Compatibility::Fargate)
            .network_mode(NetworkMode::Awsvpc)
            .cpu(DEFAULT_SIZE.cpu.to_string())
            .memory(DEFAULT_SIZE.memory_mb.to_string())
            .set_execution_role_arn(self.settings.execution_role_arn.clone())
            .set_task_role_arn(self.settings.task_role_arn.clone())
            .container_definitions(container)
            .send()
            .await
            .map_err(|e| api("RegisterTaskDefinition", &e))?;
        let arn = out
            .task_definition()
            .and_then(|d| d.task_definition_arn())
            .ok_or_else(|| EcsError::Api {
                operation: "RegisterTaskDefinition",
                message: "the answer carries no task definition ARN".into(),
            })?;
        tracing::info!(task_definition = arn, "worker task definition registered");
        Ok(arn.to_string())
    }

    fn is_current(&self, current: &aws_sdk_ecs::types::TaskDefinition) -> bool {
        let Some(container) = current
            .container_definitions()
            .iter()
            .find(|c| c.name() == Some(WORKER))
        else {
            return false;
        };
        let log_group = container
            .log_configuration()
            .and_then(|l| l.options())
            .and_then(|o| o.get("awslogs-group"));
        let table = container
            .environment()
            .iter()
            .find(|kv| kv.name() == Some("DAGY_TABLE_NAME"))
            .and_then(|kv| kv.value());
        container.image() == Some(self.settings.worker_image.as_str())
            && current.execution_role_arn() == self.settings.execution_role_arn.as_deref()
            && current.task_role_arn() == self.settings.task_role_arn.as_deref()
            && log_group.map(String::as_str) == Some(self.settings.log_group.as_str())
            && table == Some(self.table.as_str())
    }

    /// The RunTask request of `run_id`'s worker: the current task definition, the run's
    /// size, its id as client token, `startedBy` and tag, and its environment.
    async fn run_task_request(
        &self,
        run_id: &str,
        size: FargateSize,
    ) -> Result<aws_sdk_ecs::operation::run_task::builders::RunTaskFluentBuilder, EcsError> {
        let task_definition = self.ensure_task_definition().await?;
        let network = AwsVpcConfiguration::builder()
            .set_subnets(Some(self.settings.subnets.clone()))
            .set_security_groups(Some(self.settings.security_groups.clone()))
            .assign_public_ip(AssignPublicIp::Enabled)
            .build()
            .map_err(|e| build_error("RunTask", &e))?;
        let overrides = TaskOverride::builder()
            .cpu(size.cpu.to_string())
            .memory(size.memory_mb.to_string())
            .container_overrides(
                ContainerOverride::builder()
                    .name(WORKER)
                    .environment(kv(RUN_ID_VAR, run_id))
                    .environment(kv("DAGY_TABLE_NAME", &self.table))
                    .build(),
            )
            .build();
        Ok(self
            .ecs
            .run_task()
            .cluster(&self.settings.cluster_arn)
            .task_definition(task_definition)
            .launch_type(LaunchType::Fargate)
            .count(1)
            .client_token(run_id)
            .started_by(run_id)
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(network)
                    .build(),
            )
            .overrides(overrides)
            .tags(tag("dagy:run-id", run_id))
            .tags(tag("dagy:component", WORKER)))
    }

    /// Starts run `run_id`'s worker task with `size`, or finds the one it already has.
    /// Returns the task ARN.
    pub async fn start(&self, run_id: &str, size: FargateSize) -> Result<String, EcsError> {
        check_run_id(run_id)?;
        if self.settings.subnets.is_empty() {
            return Err(EcsError::NoSubnets);
        }
        if let Some(TaskState::Running { task_arn }) = self.task(run_id).await? {
            return Ok(task_arn);
        }
        let request = self.run_task_request(run_id, size).await?;
        let mut reason = String::new();
        for attempt in 1..=self.retry.attempts.max(1) {
            if attempt > 1 {
                tokio::time::sleep(backoff(self.retry.base, attempt - 1)).await;
            }
            match request.clone().send().await {
                Ok(out) => {
                    if let Some(task_arn) = out.tasks().first().and_then(|t| t.task_arn()) {
                        tracing::info!(
                            run_id,
                            task_arn,
                            cpu = size.cpu,
                            memory_mb = size.memory_mb,
                            "worker task started"
                        );
                        return Ok(task_arn.to_string());
                    }
                    reason = failures_of(&out);
                }
                Err(e) if is_client_error(&e) && !is_retryable(&e) => {
                    return Err(api("RunTask", &e));
                }
                Err(e) => reason = describe(&e),
            }
            tracing::warn!(
                run_id,
                attempt,
                reason,
                "Fargate did not start the worker; retrying"
            );
        }
        Err(EcsError::StartFailed {
            attempts: self.retry.attempts.max(1),
            reason,
        })
    }

    /// The run's newest task, running or stopped; `None` when it has none.
    pub async fn task(&self, run_id: &str) -> Result<Option<TaskState>, EcsError> {
        check_run_id(run_id)?;
        let mut arns = Vec::new();
        for status in [DesiredStatus::Running, DesiredStatus::Stopped] {
            let out = self
                .ecs
                .list_tasks()
                .cluster(&self.settings.cluster_arn)
                .started_by(run_id)
                .desired_status(status)
                .send()
                .await
                .map_err(|e| api("ListTasks", &e))?;
            arns.extend(out.task_arns().iter().cloned());
        }
        if arns.is_empty() {
            return Ok(None);
        }
        let out = self
            .ecs
            .describe_tasks()
            .cluster(&self.settings.cluster_arn)
            .set_tasks(Some(arns))
            .send()
            .await
            .map_err(|e| api("DescribeTasks", &e))?;
        let newest = out
            .tasks()
            .iter()
            .filter(|t| t.started_by() == Some(run_id))
            .max_by_key(|t| t.created_at().map(|d| d.as_nanos()).unwrap_or(0));
        Ok(newest.map(|t| {
            let task_arn = t.task_arn().unwrap_or_default().to_string();
            if t.last_status() == Some("STOPPED") {
                TaskState::Stopped {
                    task_arn,
                    reason: t.stopped_reason().unwrap_or("stopped").to_string(),
                    exit_code: t
                        .containers()
                        .iter()
                        .find(|c| c.name() == Some(WORKER))
                        .and_then(|c| c.exit_code()),
                }
            } else {
                TaskState::Running { task_arn }
            }
        }))
    }

    /// Stops the run's task, if it has one running. Returns whether one was stopped.
    pub async fn stop(&self, run_id: &str, reason: &str) -> Result<bool, EcsError> {
        let Some(TaskState::Running { task_arn }) = self.task(run_id).await? else {
            return Ok(false);
        };
        self.ecs
            .stop_task()
            .cluster(&self.settings.cluster_arn)
            .task(&task_arn)
            .reason(reason)
            .send()
            .await
            .map_err(|e| api("StopTask", &e))?;
        tracing::info!(run_id, task_arn, "worker task stopped");
        Ok(true)
    }

    /// The log stream of a task: `dagy/dagy-worker/<task id>`.
    pub fn log_stream(task_arn: &str) -> String {
        let id = task_arn.rsplit('/').next().unwrap_or(task_arn);
        format!("{STREAM_PREFIX}/{WORKER}/{id}")
    }

    /// A page of the run's log, oldest first, from `next` (the start when `None`). A run
    /// without a task or a stream yet has an empty page.
    pub async fn logs(&self, run_id: &str, next: Option<&str>) -> Result<LogPage, EcsError> {
        let task_arn = match self.task(run_id).await? {
            None => {
                return Ok(LogPage {
                    events: Vec::new(),
                    next: next.map(str::to_string),
                });
            }
            Some(TaskState::Running { task_arn } | TaskState::Stopped { task_arn, .. }) => task_arn,
        };
        let mut request = self
            .logs
            .get_log_events()
            .log_group_name(&self.settings.log_group)
            .log_stream_name(Self::log_stream(&task_arn))
            .start_from_head(true);
        if let Some(token) = next {
            request = request.next_token(token);
        }
        match request.send().await {
            Ok(out) => Ok(LogPage {
                events: out
                    .events()
                    .iter()
                    .map(|e| {
                        (
                            e.timestamp().unwrap_or_default(),
                            e.message().unwrap_or_default().to_string(),
                        )
                    })
                    .collect(),
                next: out
                    .next_forward_token()
                    .map(str::to_string)
                    .or_else(|| next.map(str::to_string)),
            }),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(LogPage {
                events: Vec::new(),
                next: next.map(str::to_string),
            }),
            Err(e) => Err(EcsError::Api {
                operation: "GetLogEvents",
                message: aws_sdk_cloudwatchlogs::error::DisplayErrorContext(&e).to_string(),
            }),
        }
    }
}

/// Why a RunTask answer started no task: its failures, or a sentence saying it gave none.
fn failures_of(out: &aws_sdk_ecs::operation::run_task::RunTaskOutput) -> String {
    let reason = out
        .failures()
        .iter()
        .map(|f| {
            format!(
                "{}{}",
                f.reason().unwrap_or("unknown failure"),
                f.detail().map(|d| format!(" ({d})")).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    if reason.is_empty() {
        "RunTask started no task and gave no reason".into()
    } else {
        reason
    }
}

fn kv(name: &str, value: &str) -> KeyValuePair {
    KeyValuePair::builder().name(name).value(value).build()
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

fn check_run_id(run_id: &str) -> Result<(), EcsError> {
    if dagy_core::validate::is_plain_name(run_id, 36) {
        Ok(())
    } else {
        Err(EcsError::BadRunId(run_id.to_string()))
    }
}

/// Exponential backoff with full jitter: a random wait up to `base * 2^(retry - 1)`.
fn backoff(base: Duration, retry: u32) -> Duration {
    let cap = base.saturating_mul(1 << retry.saturating_sub(1).min(10));
    cap.mul_f64(rand::random::<f64>())
}

fn is_client_error<E, R>(e: &SdkError<E, R>) -> bool {
    matches!(e, SdkError::ServiceError(_))
}

fn is_retryable<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    let code = e.as_service_error().and_then(ProvideErrorMetadata::code);
    matches!(
        code,
        Some("ThrottlingException" | "ServerException" | "LimitExceededException")
    )
}

fn describe<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    e: &SdkError<E, R>,
) -> String {
    match e.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("error"),
            service.message().unwrap_or("no message")
        ),
        None => aws_sdk_ecs::error::DisplayErrorContext(e).to_string(),
    }
}

fn api<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    operation: &'static str,
    e: &SdkError<E, R>,
) -> EcsError {
    EcsError::Api {
        operation,
        message: describe(e),
    }
}

fn build_error(operation: &'static str, e: &aws_sdk_ecs::error::BuildError) -> EcsError {
    EcsError::Api {
        operation,
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_must_fit_started_by() {
        assert!(check_run_id("0123456789abcdef0123456789abcdef").is_ok());
        for bad in ["", "a b", &"x".repeat(37)] {
            assert!(check_run_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff_grows_and_stays_under_its_cap() {
        let base = Duration::from_millis(100);
        for retry in 1..=6 {
            let cap = base * (1 << (retry - 1));
            for _ in 0..50 {
                assert!(backoff(base, retry) <= cap);
            }
        }
        assert!(backoff(base, 40) <= base * 1024, "the exponent is capped");
    }

    #[test]
    fn a_tasks_stream_is_named_by_prefix_container_and_task_id() {
        assert_eq!(
            EcsBackend::log_stream("arn:aws:ecs:us-east-1:123456789012:task/dagy/0f1e2d"),
            "dagy/dagy-worker/0f1e2d"
        );
    }
}
