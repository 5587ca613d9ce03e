//! `dagy graph`.

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `dagy graph`.
#[derive(Debug, clap::Args)]
pub struct GraphArgs {
    /// The FlowSpec JSON file (`-` for standard input).
    pub flow: PathBuf,
}

/// Prints the Mermaid flowchart.
pub fn run(args: GraphArgs, handlers: &dyn dagy_core::HandlerCatalog) -> anyhow::Result<ExitCode> {
    match super::load_flow(&args.flow, handlers)? {
        Ok(flow) => {
            print!("{}", flow.to_mermaid());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(super::report(&e, false)),
    }
}
