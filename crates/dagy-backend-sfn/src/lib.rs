//! Dagy's Step Functions backend.
//!
//! - One state machine per deployment, named `dagy-<deployment>`, whose definition is
//!   [`dagy_core::asl::translate`] of the flow with Task states calling the task-executor.
//!   Every start first updates it to the run's flow (one request; nothing changes when the flow
//!   did not). Two runs of different versions of one deployment started in the same instant
//!   could both start on the later definition: the task-executor then finds tasks the run's
//!   flow does not have, or tasks that never ran, and fails the run saying so; it never runs
//!   a task out of order, since upstream outputs come from the run's own records. (Publishing
//!   a version per start would close that gap, but moto cannot start executions on versions.)
//! - An execution per run, named by the run id with input `{"run_id": ...}`: starting the same
//!   run twice finds the first execution.
//! - [`StepFunctionsBackend::stop`] stops it (cancellation);
//!   [`StepFunctionsBackend::execution`] says how it is doing, so a reader can bring the run
//!   record in step with an execution that ended without recording it (stopped, timed out).
//!
//! The client comes from the caller, configured from the environment: `AWS_ENDPOINT_URL` (or
//! `AWS_ENDPOINT_URL_SFN`) points it at a local server with no code of its own for it.

use aws_sdk_sfn::Client;
use aws_sdk_sfn::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::json;

use dagy_core::Flow;
use dagy_core::plan::{MAX_STATE_MACHINE_STATES, state_count};

/// Step Functions' longest state machine and execution name.
pub const MAX_NAME_LEN: usize = 80;
/// Every state machine Dagy creates starts with this.
pub const STATE_MACHINE_PREFIX: &str = "dagy-";

/// What the backend could not do, with what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SfnError {
    /// `DAGY_SFN_ROLE_ARN` is not an IAM role ARN.
    #[error("DAGY_SFN_ROLE_ARN {0:?} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")]
    BadRoleArn(String),
    /// The flow needs more states than a state machine may have.
    #[error(
        "the flow needs {states} states, over Step Functions' limit of {limit}; split it or run it on ECS Fargate"
    )]
    TooManyStates {
        /// States the flow needs.
        states: usize,
        /// The limit.
        limit: usize,
    },
    /// A run id that cannot name an execution.
    #[error("run id {0:?} cannot name an execution: use 1 to 80 letters, digits, '-' or '_'")]
    BadRunId(String),
    /// Step Functions refused or failed a request.
    #[error("Step Functions {operation} failed: {message}")]
    Api {
        /// The operation.
        operation: &'static str,
        /// What it said.
        message: String,
    },
}

/// How an execution is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutionState {
    /// Still running.
    Running,
    /// Ended well.
    Succeeded,
    /// Ended otherwise (`FAILED`, `TIMED_OUT`, `ABORTED`): the status and what Step Functions
    /// says of it.
    Ended {
        /// `FAILED`, `TIMED_OUT` or `ABORTED`.
        status: String,
        /// The error, when there is one.
        error: String,
        /// Its cause.
        cause: String,
    },
}

/// Where the backend's resources are: ARNs are built, not looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ArnScope {
    partition: String,
    region: String,
    account: String,
}

/// Creates and updates state machines and starts, stops and reads executions.
#[derive(Debug, Clone)]
pub struct StepFunctionsBackend {
    client: Client,
    role_arn: String,
    task_executor_arn: String,
    scope: ArnScope,
}

impl StepFunctionsBackend {
    /// A backend in `region` whose state machines run as `role_arn` (their account is the
    /// role's) and call `task_executor_arn`.
    pub fn new(
        client: Client,
        region: &str,
        role_arn: &str,
        task_executor_arn: &str,
    ) -> Result<Self, SfnError> {
        let parts: Vec<&str> = role_arn.split(':').collect();
        let scope = match parts.as_slice() {
            ["arn", partition, "iam", "", account, resource]
                if !partition.is_empty()
                    && account.len() == 12
                    && account.chars().all(|c| c.is_ascii_digit())
                    && resource.starts_with("role/") =>
            {
                ArnScope {
                    partition: (*partition).to_string(),
                    region: region.to_string(),
                    account: (*account).to_string(),
                }
            }
            _ => return Err(SfnError::BadRoleArn(role_arn.to_string())),
        };
        Ok(StepFunctionsBackend {
            client,
            role_arn: role_arn.to_string(),
            task_executor_arn: task_executor_arn.to_string(),
            scope,
        })
    }

    /// The state machine of a deployment: `dagy-<deployment>`, shortened with a hash to fit
    /// [`MAX_NAME_LEN`].
    pub fn state_machine_name(deployment: &str) -> String {
        let name = format!("{STATE_MACHINE_PREFIX}{deployment}");
        if name.len() <= MAX_NAME_LEN {
            return name;
        }
        let hash = format!("{:016x}", fnv1a(deployment.as_bytes()));
        let keep = MAX_NAME_LEN - hash.len() - 1;
        let mut cut = keep;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}-{hash}", &name[..cut])
    }

    /// The ARN of a state machine.
    pub fn state_machine_arn(&self, name: &str) -> String {
        let ArnScope {
            partition,
            region,
            account,
        } = &self.scope;
        format!("arn:{partition}:states:{region}:{account}:stateMachine:{name}")
    }

    /// The ARN of a run's execution.
    pub fn execution_arn(&self, state_machine: &str, run_id: &str) -> String {
        let ArnScope {
            partition,
            region,
            account,
        } = &self.scope;
        format!("arn:{partition}:states:{region}:{account}:execution:{state_machine}:{run_id}")
    }

    /// The definition of `flow`'s state machine, as Step Functions takes it.
    pub fn definition(&self, flow: &Flow) -> Result<String, SfnError> {
        let states = state_count(flow);
        if states > MAX_STATE_MACHINE_STATES {
            return Err(SfnError::TooManyStates {
                states,
                limit: MAX_STATE_MACHINE_STATES,
            });
        }
        serde_json::to_string(&dagy_core::asl::translate(flow, &self.task_executor_arn)).map_err(
            |e| SfnError::Api {
                operation: "CreateStateMachine",
                message: format!("the definition cannot be encoded: {e}"),
            },
        )
    }

    /// Creates the state machine `name` for `flow`, or updates it to `flow`; returns its ARN.
    pub async fn deploy(&self, name: &str, flow: &Flow) -> Result<String, SfnError> {
        let definition = self.definition(flow)?;
        let arn = self.state_machine_arn(name);
        // Updating is the common case (the machine exists); creating races with other routers,
        // so a lost race updates instead.
        for _ in 0..2 {
            match self
                .client
                .update_state_machine()
                .state_machine_arn(&arn)
                .definition(&definition)
                .role_arn(&self.role_arn)
                .send()
                .await
            {
                Ok(_) => return Ok(arn),
                Err(e) if code(&e) == Some("StateMachineDoesNotExist") => {}
                Err(e) => return Err(api("UpdateStateMachine", &e)),
            }
            match self
                .client
                .create_state_machine()
                .name(name)
                .definition(&definition)
                .role_arn(&self.role_arn)
                .send()
                .await
            {
                Ok(out) => {
                    tracing::info!(state_machine = name, "state machine created");
                    return Ok(out.state_machine_arn().to_string());
                }
                Err(e) if code(&e) == Some("StateMachineAlreadyExists") => continue,
                Err(e) => return Err(api("CreateStateMachine", &e)),
            }
        }
        Err(SfnError::Api {
            operation: "CreateStateMachine",
            message: format!("state machine {name} kept appearing and vanishing; try again"),
        })
    }

    /// Starts run `run_id` of `flow` on the state machine `name` (deployed first). Starting a
    /// run that already has its execution starts nothing and returns that execution's ARN.
    pub async fn start(&self, name: &str, flow: &Flow, run_id: &str) -> Result<String, SfnError> {
        check_run_id(run_id)?;
        let machine = self.deploy(name, flow).await?;
        let input = json!({ "run_id": run_id }).to_string();
        match self
            .client
            .start_execution()
            .state_machine_arn(&machine)
            .name(run_id)
            .input(input)
            .send()
            .await
        {
            Ok(out) => {
                tracing::info!(run_id, state_machine = name, "execution started");
                Ok(out.execution_arn().to_string())
            }
            Err(e) if code(&e) == Some("ExecutionAlreadyExists") => {
                Ok(self.execution_arn(name, run_id))
            }
            Err(e) => Err(api("StartExecution", &e)),
        }
    }

    /// Stops run `run_id`'s execution on `name`. An execution that ended or never started is
    /// left as it is.
    pub async fn stop(&self, name: &str, run_id: &str, cause: &str) -> Result<(), SfnError> {
        check_run_id(run_id)?;
        match self
            .client
            .stop_execution()
            .execution_arn(self.execution_arn(name, run_id))
            .error("DagyCancelled")
            .cause(cause)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some("ExecutionDoesNotExist") => Ok(()),
            Err(e) => Err(api("StopExecution", &e)),
        }
    }

    /// How run `run_id`'s execution on `name` is doing; `None` when it has none.
    pub async fn execution(
        &self,
        name: &str,
        run_id: &str,
    ) -> Result<Option<ExecutionState>, SfnError> {
        check_run_id(run_id)?;
        let out = match self
            .client
            .describe_execution()
            .execution_arn(self.execution_arn(name, run_id))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if code(&e) == Some("ExecutionDoesNotExist") => return Ok(None),
            Err(e) => return Err(api("DescribeExecution", &e)),
        };
        Ok(Some(match out.status() {
            ExecutionStatus::Running | ExecutionStatus::PendingRedrive => ExecutionState::Running,
            ExecutionStatus::Succeeded => ExecutionState::Succeeded,
            other => ExecutionState::Ended {
                status: other.as_str().to_string(),
                error: out.error().unwrap_or_default().to_string(),
                cause: out.cause().unwrap_or_default().to_string(),
            },
        }))
    }
}

fn check_run_id(run_id: &str) -> Result<(), SfnError> {
    if dagy_core::validate::is_plain_name(run_id, MAX_NAME_LEN) {
        Ok(())
    } else {
        Err(SfnError::BadRunId(run_id.to_string()))
    }
}

fn code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    e.as_service_error().and_then(ProvideErrorMetadata::code)
}

fn api<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    operation: &'static str,
    e: &SdkError<E, R>,
) -> SfnError {
    let message = match e.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("error"),
            service.message().unwrap_or("no message")
        ),
        None => aws_sdk_sfn::error::DisplayErrorContext(e).to_string(),
    };
    SfnError::Api { operation, message }
}

/// FNV-1a, 64 bits: a stable short hash for shortened names.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(role: &str) -> Result<StepFunctionsBackend, SfnError> {
        let config = aws_sdk_sfn::Config::builder()
            .behavior_version(aws_sdk_sfn::config::BehaviorVersion::latest())
            .region(aws_sdk_sfn::config::Region::new("eu-west-1"))
            .build();
        StepFunctionsBackend::new(
            Client::from_conf(config),
            "eu-west-1",
            role,
            "arn:aws:lambda:eu-west-1:123456789012:function:dagy-task-executor",
        )
    }

    #[test]
    fn arns_come_from_the_roles_account_and_the_region() {
        let b = backend("arn:aws:iam::123456789012:role/dagy-sfn").expect("a role ARN");
        assert_eq!(
            b.state_machine_arn("dagy-etl"),
            "arn:aws:states:eu-west-1:123456789012:stateMachine:dagy-etl"
        );
        assert_eq!(
            b.execution_arn("dagy-etl", "r1"),
            "arn:aws:states:eu-west-1:123456789012:execution:dagy-etl:r1"
        );
        let china = backend("arn:aws-cn:iam::123456789012:role/x").expect("another partition");
        assert!(
            china
                .state_machine_arn("m")
                .starts_with("arn:aws-cn:states:")
        );
    }

    #[test]
    fn a_role_arn_that_is_not_one_is_refused() {
        for bad in [
            "",
            "dagy-sfn",
            "arn:aws:iam::12345:role/x",
            "arn:aws:iam::123456789012:user/x",
            "arn:aws:lambda:us-east-1:123456789012:function:f",
        ] {
            assert_eq!(
                backend(bad).err(),
                Some(SfnError::BadRoleArn(bad.to_string())),
                "{bad}"
            );
        }
    }

    #[test]
    fn names_fit_step_functions() {
        assert_eq!(StepFunctionsBackend::state_machine_name("etl"), "dagy-etl");
        let long = "d".repeat(128);
        let name = StepFunctionsBackend::state_machine_name(&long);
        assert_eq!(name.len(), MAX_NAME_LEN);
        assert_ne!(
            name,
            StepFunctionsBackend::state_machine_name(&"d".repeat(127)),
            "shortened names stay distinct"
        );
    }

    #[test]
    fn run_ids_must_name_an_execution() {
        assert!(check_run_id("0123456789abcdef0123456789abcdef").is_ok());
        for bad in ["", "a b", "a/b", &"x".repeat(81)] {
            assert!(check_run_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_flow_over_the_state_limit_is_refused_before_any_request() {
        let b = backend("arn:aws:iam::123456789012:role/dagy-sfn").expect("role");
        let mut builder = dagy_core::FlowBuilder::new("wide");
        for i in 0..MAX_STATE_MACHINE_STATES {
            builder = builder.task(format!("t{i}"), "echo", |t| t);
        }
        let flow = builder.build().validate(None).expect("valid");
        assert!(matches!(
            b.definition(&flow),
            Err(SfnError::TooManyStates { .. })
        ));
    }
}
