//! One module per subcommand.

pub mod asl;
pub mod docker;
pub mod graph;
pub mod inspect;
#[cfg(feature = "aws")]
pub mod logs;
pub mod plan;
#[cfg(feature = "aws")]
pub mod remote;
pub mod run;
pub mod runs;
pub mod store;
#[cfg(feature = "aws")]
pub mod table;
pub mod ui;
pub mod validate;

use std::process::ExitCode;

use serde_json::json;

/// Reports a core error: a JSON error object on standard output with `--json`, otherwise a
/// message on standard error; exit code 1.
pub fn report(error: &dagy_core::Error, as_json: bool) -> ExitCode {
    if as_json {
        let body = json!({"error": {
            "code": error.code(),
            "message": error.to_string(),
            "problems": error.problems(),
        }});
        crate::output::out!(
            "{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        );
    } else {
        eprintln!("error: {error}");
    }
    ExitCode::from(1)
}

/// Reads and validates a flow against the handlers this CLI was built with.
pub fn load_flow(
    path: &std::path::Path,
    handlers: &dyn dagy_core::HandlerCatalog,
) -> anyhow::Result<Result<dagy_core::Flow, dagy_core::Error>> {
    let text = crate::input::read_flow_text(path)?;
    Ok(dagy_core::Flow::from_json(&text, Some(handlers)))
}
