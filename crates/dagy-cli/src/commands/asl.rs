//! `dagy asl`.

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `dagy asl`.
#[derive(Debug, clap::Args)]
pub struct AslArgs {
    /// The FlowSpec JSON file (`-` for standard input).
    pub flow: PathBuf,
    /// The task-executor Lambda the Task states invoke.
    #[arg(long, env = "DAGY_SFN_TASK_EXECUTOR_ARN", value_name = "ARN")]
    pub task_executor_arn: String,
}

/// Prints the Step Functions definition; what the translation loses goes to standard error.
pub fn run(args: AslArgs, handlers: &dyn dagy_core::HandlerCatalog) -> anyhow::Result<ExitCode> {
    let flow = match super::load_flow(&args.flow, handlers)? {
        Ok(flow) => flow,
        Err(e) => return Ok(super::report(&e, false)),
    };
    for task in flow.tasks() {
        for loss in dagy_core::plan::asl_losses(task) {
            eprintln!("warning: {loss}");
        }
    }
    let definition = dagy_core::asl::translate(&flow, &args.task_executor_arn);
    crate::output::out!("{}", serde_json::to_string_pretty(&definition)?);
    Ok(ExitCode::SUCCESS)
}
