//! Handing a run to the backend that executes it.

use async_trait::async_trait;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use serde_json::json;

use std::sync::Arc;

use dagy_backend_ecs::{EcsBackend, TaskState};
use dagy_backend_sfn::{ExecutionState, StepFunctionsBackend};
use dagy_core::BackendKind;
use dagy_engine::{Executor, HandlerRegistry, ROUTER_OWNER, RunEnd, StateMachineEnd};
use dagy_store::{RunRecord, RunStore};

use crate::FunctionError;

/// The variable naming the executor function (name or ARN), which micro runs invoke again.
pub const EXECUTOR_FUNCTION_VAR: &str = "DAGY_EXECUTOR_FUNCTION";

/// Starts (or continues) a run on a backend. Dispatching the same run twice is harmless:
/// the executor's lease makes the second delivery do nothing.
#[async_trait]
pub trait Dispatcher: Send + Sync {
    /// The backends this dispatcher can start runs on.
    fn backends(&self) -> Vec<BackendKind>;

    /// Starts or continues `run_id` on `backend`.
    async fn dispatch(&self, backend: BackendKind, run_id: &str) -> Result<(), FunctionError>;

    /// Stops a cancelled run's work on its backend at once, when the backend can (a Step
    /// Functions execution is stopped; its last state never runs, so the caller ends the run).
    /// Returns whether it stopped something. Lambda and ECS runs stop by themselves at their
    /// next task boundary.
    async fn stop(&self, run: &RunRecord) -> Result<bool, FunctionError> {
        let _ = run;
        Ok(false)
    }

    /// A page of the run's log from `next`, for backends that keep one (ECS: CloudWatch Logs).
    async fn logs(&self, run: &RunRecord, next: Option<&str>) -> Result<LogPage, FunctionError> {
        let _ = next;
        Err(FunctionError::LogsUnavailable(backend_of(run)))
    }

    /// What the run's backend says of its execution, for backends that keep one (Step
    /// Functions, ECS); [`Execution::Unknown`] for the others.
    async fn execution(&self, run: &RunRecord) -> Result<Execution, FunctionError> {
        let _ = run;
        Ok(Execution::Unknown)
    }
}

pub use dagy_backend_ecs::LogPage;

/// A run's execution on its backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Execution {
    /// The backend keeps no execution to ask (Lambda: the run record is all there is).
    Unknown,
    /// None was started (the dispatch failed): dispatching again starts it.
    Missing,
    /// It runs.
    Running,
    /// It ended, and this is how: the run record may not say so yet (an execution stopped or
    /// timed out never runs its last state).
    Ended(StateMachineEnd),
    /// Its worker task stopped (ECS): if the run is not final, the worker died without
    /// recording it, and this says why.
    Stopped(String),
}

/// The backend a run was planned for (Lambda for runs without a plan).
pub fn backend_of(run: &RunRecord) -> BackendKind {
    run.plan.as_ref().map_or(BackendKind::Lambda, |p| p.backend)
}

/// Every dispatcher this deployment has, each reached by its backend.
#[derive(Default)]
pub struct Dispatchers {
    lambda: Option<LambdaDispatcher>,
    step_functions: Option<StepFunctionsDispatcher>,
    ecs: Option<EcsDispatcher>,
}

impl Dispatchers {
    /// Dispatchers for Lambda and, when given, Step Functions.
    pub fn new(
        lambda: Option<LambdaDispatcher>,
        step_functions: Option<StepFunctionsDispatcher>,
    ) -> Self {
        Dispatchers {
            lambda,
            step_functions,
            ecs: None,
        }
    }

    /// Adds the ECS Fargate dispatcher.
    pub fn with_ecs(mut self, ecs: EcsDispatcher) -> Self {
        self.ecs = Some(ecs);
        self
    }

    fn of(&self, backend: BackendKind) -> Option<&dyn Dispatcher> {
        match backend {
            BackendKind::Lambda => self.lambda.as_ref().map(|d| d as &dyn Dispatcher),
            BackendKind::StepFunctions => {
                self.step_functions.as_ref().map(|d| d as &dyn Dispatcher)
            }
            BackendKind::EcsFargate => self.ecs.as_ref().map(|d| d as &dyn Dispatcher),
        }
    }
}

#[async_trait]
impl Dispatcher for Dispatchers {
    fn backends(&self) -> Vec<BackendKind> {
        [
            BackendKind::Lambda,
            BackendKind::StepFunctions,
            BackendKind::EcsFargate,
        ]
        .into_iter()
        .filter(|b| self.of(*b).is_some())
        .collect()
    }

    async fn dispatch(&self, backend: BackendKind, run_id: &str) -> Result<(), FunctionError> {
        match self.of(backend) {
            Some(d) => d.dispatch(backend, run_id).await,
            None => Err(FunctionError::BackendUnavailable(backend)),
        }
    }

    async fn stop(&self, run: &RunRecord) -> Result<bool, FunctionError> {
        match self.of(backend_of(run)) {
            Some(d) => d.stop(run).await,
            None => Ok(false),
        }
    }

    async fn execution(&self, run: &RunRecord) -> Result<Execution, FunctionError> {
        match self.of(backend_of(run)) {
            Some(d) => d.execution(run).await,
            None => Ok(Execution::Unknown),
        }
    }

    async fn logs(&self, run: &RunRecord, next: Option<&str>) -> Result<LogPage, FunctionError> {
        match self.of(backend_of(run)) {
            Some(d) => d.logs(run, next).await,
            None => Err(FunctionError::LogsUnavailable(backend_of(run))),
        }
    }
}

/// Dispatches ECS Fargate runs: one worker task per run, sized by the run's tier. A start that
/// still fails after the backend's retries fails the run with AWS's reason.
pub struct EcsDispatcher {
    backend: EcsBackend,
    store: Arc<dyn RunStore>,
}

impl EcsDispatcher {
    /// A dispatcher reading runs from `store` and starting them through `backend`.
    pub fn new(backend: EcsBackend, store: Arc<dyn RunStore>) -> Self {
        EcsDispatcher { backend, store }
    }

    /// The dispatcher of the environment's ECS settings and AWS settings; the worker reads
    /// runs from `table`.
    pub fn from_settings(
        settings: &dagy_core::EcsSettings,
        table: &str,
        store: Arc<dyn RunStore>,
        config: &aws_config::SdkConfig,
    ) -> Result<Self, FunctionError> {
        let region = region_of(config, "the ECS cluster")?;
        let backend = EcsBackend::new(
            aws_sdk_ecs::Client::new(config),
            aws_sdk_cloudwatchlogs::Client::new(config),
            settings.clone(),
            &region,
            table,
        );
        Ok(EcsDispatcher::new(backend, store))
    }
}

/// The region of `config`, which `what` lives in (an error naming `AWS_REGION` when unset).
fn region_of(config: &aws_config::SdkConfig, what: &str) -> Result<String, FunctionError> {
    config.region().map(ToString::to_string).ok_or_else(|| {
        dagy_core::Error::Config {
            variable: "AWS_REGION".into(),
            message: format!("set it to the region of {what}"),
        }
        .into()
    })
}

fn ecs_error(e: dagy_backend_ecs::EcsError) -> FunctionError {
    FunctionError::Dispatch(e.to_string())
}

#[async_trait]
impl Dispatcher for EcsDispatcher {
    fn backends(&self) -> Vec<BackendKind> {
        vec![BackendKind::EcsFargate]
    }

    async fn dispatch(&self, backend: BackendKind, run_id: &str) -> Result<(), FunctionError> {
        if backend != BackendKind::EcsFargate {
            return Err(FunctionError::BackendUnavailable(backend));
        }
        let run = self.store.get_run(run_id).await?;
        let size = run
            .plan
            .as_ref()
            .map_or(dagy_core::FargateSize::SMALL, |p| {
                p.resources.unwrap_or_else(|| p.tier.fargate_size())
            });
        match self.backend.start(run_id, size).await {
            Ok(_) => Ok(()),
            Err(e @ dagy_backend_ecs::EcsError::StartFailed { .. }) => {
                let why = e.to_string();
                tracing::error!(run_id, reason = why, "the run's worker could not start");
                let recorder = Executor::new(self.store.clone(), Arc::new(HandlerRegistry::new()))
                    .with_owner(ROUTER_OWNER);
                recorder.end_run(run_id, RunEnd::Abandoned(&why)).await?;
                Ok(())
            }
            Err(e) => Err(ecs_error(e)),
        }
    }

    async fn stop(&self, run: &RunRecord) -> Result<bool, FunctionError> {
        // The worker records the cancel itself (SIGTERM: it stops at the next task boundary).
        self.backend
            .stop(&run.run_id, "Dagy: the run was cancelled on request")
            .await
            .map_err(ecs_error)?;
        Ok(false)
    }

    async fn execution(&self, run: &RunRecord) -> Result<Execution, FunctionError> {
        Ok(
            match self.backend.task(&run.run_id).await.map_err(ecs_error)? {
                None => Execution::Missing,
                Some(TaskState::Running { .. }) => Execution::Running,
                Some(TaskState::Stopped {
                    reason, exit_code, ..
                }) => Execution::Stopped(dagy_core::fargate::worker_stopped(&reason, exit_code)),
            },
        )
    }

    async fn logs(&self, run: &RunRecord, next: Option<&str>) -> Result<LogPage, FunctionError> {
        self.backend
            .logs(&run.run_id, next)
            .await
            .map_err(ecs_error)
    }
}

/// Dispatches Step Functions runs: the deployment's state machine is created or updated with
/// the run's flow, then an execution named by the run id starts (a repeated dispatch finds it).
pub struct StepFunctionsDispatcher {
    backend: StepFunctionsBackend,
    store: Arc<dyn RunStore>,
}

impl StepFunctionsDispatcher {
    /// A dispatcher reading runs from `store` and starting them through `backend`.
    pub fn new(backend: StepFunctionsBackend, store: Arc<dyn RunStore>) -> Self {
        StepFunctionsDispatcher { backend, store }
    }

    /// The dispatcher of the environment's Step Functions settings (`DAGY_SFN_ROLE_ARN`,
    /// `DAGY_SFN_TASK_EXECUTOR_ARN`) and AWS settings (`AWS_ENDPOINT_URL_SFN` or
    /// `AWS_ENDPOINT_URL` point it at a local server).
    pub fn from_settings(
        settings: &dagy_core::StepFunctionsSettings,
        store: Arc<dyn RunStore>,
        config: &aws_config::SdkConfig,
    ) -> Result<Self, FunctionError> {
        let region = region_of(config, "the state machines")?;
        let backend = StepFunctionsBackend::new(
            aws_sdk_sfn::Client::new(config),
            &region,
            &settings.role_arn,
            &settings.task_executor_arn,
        )
        .map_err(|e| dagy_core::Error::Config {
            variable: dagy_core::backend::vars::SFN_ROLE_ARN.into(),
            message: e.to_string(),
        })?;
        Ok(StepFunctionsDispatcher::new(backend, store))
    }

    /// The state machine of a run: its deployment's, or its flow's for a run without one.
    pub fn state_machine_of(run: &RunRecord) -> String {
        StepFunctionsBackend::state_machine_name(
            run.deployment.as_deref().unwrap_or(&run.flow_name),
        )
    }
}

fn sfn_error(e: dagy_backend_sfn::SfnError) -> FunctionError {
    FunctionError::Dispatch(e.to_string())
}

#[async_trait]
impl Dispatcher for StepFunctionsDispatcher {
    fn backends(&self) -> Vec<BackendKind> {
        vec![BackendKind::StepFunctions]
    }

    async fn dispatch(&self, backend: BackendKind, run_id: &str) -> Result<(), FunctionError> {
        if backend != BackendKind::StepFunctions {
            return Err(FunctionError::BackendUnavailable(backend));
        }
        let snapshot = self.store.load_run(run_id).await?;
        let flow = dagy_core::Flow::from_shared(snapshot.flow, None).map_err(|e| {
            FunctionError::Dispatch(format!("run {run_id} holds a flow that is not valid: {e}"))
        })?;
        let machine = Self::state_machine_of(&snapshot.run);
        self.backend
            .start(&machine, &flow, run_id)
            .await
            .map_err(sfn_error)?;
        Ok(())
    }

    async fn stop(&self, run: &RunRecord) -> Result<bool, FunctionError> {
        self.backend
            .stop(
                &Self::state_machine_of(run),
                &run.run_id,
                "the run was cancelled on request",
            )
            .await
            .map_err(sfn_error)?;
        Ok(true)
    }

    async fn execution(&self, run: &RunRecord) -> Result<Execution, FunctionError> {
        let state = self
            .backend
            .execution(&Self::state_machine_of(run), &run.run_id)
            .await
            .map_err(sfn_error)?;
        Ok(match state {
            None => Execution::Missing,
            Some(ExecutionState::Running) => Execution::Running,
            Some(ExecutionState::Succeeded) => Execution::Ended(StateMachineEnd::Succeeded),
            Some(ExecutionState::Ended {
                status,
                error,
                cause,
            }) => Execution::Ended(StateMachineEnd::Failed {
                error: if error.is_empty() {
                    format!("execution {status}")
                } else {
                    error
                },
                cause,
            }),
        })
    }
}

/// Dispatches Lambda runs by invoking the executor function asynchronously
/// (`InvocationType=Event`), with `{"run_id": ...}` as its event.
#[derive(Debug, Clone)]
pub struct LambdaDispatcher {
    client: aws_sdk_lambda::Client,
    function: String,
}

impl LambdaDispatcher {
    /// A dispatcher invoking `function` through `client`.
    pub fn new(client: aws_sdk_lambda::Client, function: impl Into<String>) -> Self {
        LambdaDispatcher {
            client,
            function: function.into(),
        }
    }

    /// The dispatcher of the environment: `DAGY_EXECUTOR_FUNCTION` and the AWS settings
    /// (`AWS_ENDPOINT_URL_LAMBDA` points it at a local emulator).
    pub fn from_env(config: &aws_config::SdkConfig) -> Result<Self, FunctionError> {
        let function = std::env::var(EXECUTOR_FUNCTION_VAR)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| dagy_core::Error::Config {
                variable: EXECUTOR_FUNCTION_VAR.into(),
                message: "set it to the executor Lambda's name or ARN".into(),
            })?;
        Ok(LambdaDispatcher::new(
            aws_sdk_lambda::Client::new(config),
            function,
        ))
    }
}

#[async_trait]
impl Dispatcher for LambdaDispatcher {
    fn backends(&self) -> Vec<BackendKind> {
        vec![BackendKind::Lambda]
    }

    async fn dispatch(&self, backend: BackendKind, run_id: &str) -> Result<(), FunctionError> {
        if backend != BackendKind::Lambda {
            return Err(FunctionError::BackendUnavailable(backend));
        }
        let payload = json!({ "run_id": run_id }).to_string();
        self.client
            .invoke()
            .function_name(&self.function)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|e| {
                FunctionError::Dispatch(format!(
                    "invoking {} for run {run_id}: {}",
                    self.function,
                    aws_sdk_lambda::error::DisplayErrorContext(&e)
                ))
            })?;
        Ok(())
    }
}

/// Runs `lambda:<function>` tasks: a synchronous invoke with the task's input as the event.
/// The function's JSON answer is the task's output; a function error becomes a task error of
/// the function's own `errorType`, so retry and catch rules can match it.
#[derive(Debug, Clone)]
pub struct LambdaTaskInvoker {
    client: aws_sdk_lambda::Client,
}

/// The longest a synchronous invoke can last: Lambda's 15-minute limit, plus a margin.
pub const LAMBDA_TASK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15 * 60 + 30);

impl LambdaTaskInvoker {
    /// An invoker through `client`, as it is configured.
    pub fn new(client: aws_sdk_lambda::Client) -> Self {
        LambdaTaskInvoker { client }
    }

    /// An invoker over `config` with what a synchronous invoke needs: no SDK retries (an invoke
    /// whose answer was lost may have run, and running it again is the task's retry policy to
    /// decide, not the SDK's) and time limits past Lambda's 15 minutes (a shorter read timeout
    /// would give up on a function that is still running, then start it again). The task's own
    /// `timeout_seconds` still ends the attempt earlier.
    pub fn from_sdk_config(config: &aws_config::SdkConfig) -> Self {
        use aws_config::retry::RetryConfig;
        use aws_config::timeout::TimeoutConfig;
        let lambda = aws_sdk_lambda::config::Builder::from(config)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(std::time::Duration::from_secs(5))
                    .read_timeout(LAMBDA_TASK_TIMEOUT)
                    .operation_attempt_timeout(LAMBDA_TASK_TIMEOUT)
                    .operation_timeout(LAMBDA_TASK_TIMEOUT)
                    .build(),
            )
            .build();
        LambdaTaskInvoker::new(aws_sdk_lambda::Client::from_conf(lambda))
    }
}

#[async_trait]
impl dagy_engine::LambdaInvoker for LambdaTaskInvoker {
    async fn invoke(&self, function: &str, input: serde_json::Value) -> dagy_engine::TaskResult {
        use dagy_engine::TaskError;
        let out = self
            .client
            .invoke()
            .function_name(function)
            .invocation_type(InvocationType::RequestResponse)
            .payload(Blob::new(input.to_string()))
            .send()
            .await
            .map_err(|e| {
                TaskError::new(format!(
                    "invoking {function}: {}",
                    aws_sdk_lambda::error::DisplayErrorContext(&e)
                ))
                .with_type("LambdaInvokeFailed")
            })?;
        let bytes = out
            .payload()
            .map(|b| b.as_ref().to_vec())
            .unwrap_or_default();
        let answer: serde_json::Value = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            dagy_core::json::from_slice(&bytes).map_err(|e| {
                TaskError::new(format!(
                    "{function} answered with something that is not JSON: {e}"
                ))
                .with_type("LambdaBadAnswer")
            })?
        };
        if let Some(kind) = out.function_error() {
            let error_type = answer["errorType"].as_str().unwrap_or(kind).to_string();
            let message = answer["errorMessage"]
                .as_str()
                .unwrap_or("the function failed without a message");
            return Err(TaskError::new(format!("{function}: {message}")).with_type(error_type));
        }
        Ok(answer)
    }
}
