//! `dagy validate`.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;

/// Arguments of `dagy validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The FlowSpec JSON file (`-` for standard input).
    pub flow: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Validates the flow; exit 1 with every problem when it is invalid.
pub fn run(
    args: ValidateArgs,
    handlers: &dyn dagy_core::HandlerCatalog,
) -> anyhow::Result<ExitCode> {
    let flow = match super::load_flow(&args.flow, handlers)? {
        Ok(flow) => flow,
        Err(e) => return Ok(super::report(&e, args.json)),
    };
    let (tasks, levels) = (flow.tasks().len(), flow.levels().len());
    if args.json {
        crate::output::out!(
            "{}",
            json!({"valid": true, "flow": flow.name(), "tasks": tasks, "levels": levels})
        );
    } else {
        crate::output::out!(
            "ok: flow \"{}\" is valid ({tasks} task{}, {levels} level{})",
            flow.name(),
            if tasks == 1 { "" } else { "s" },
            if levels == 1 { "" } else { "s" }
        );
    }
    Ok(ExitCode::SUCCESS)
}
