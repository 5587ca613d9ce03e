//! The crate's one error type: why a handler manifest cannot be used.
//!
//! A failing process is not an error of this type: it is the task's
//! [`TaskError`](dagy_engine::TaskError), recorded on the run.

use std::fmt;
use std::path::PathBuf;

/// Why a handler manifest cannot be used. Each message names the file, and the entry and field
/// at fault, and says what to change.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The file cannot be read.
    #[error(
        "cannot read the handler manifest {}: {source}; check the path (DAGY_HANDLERS_FILE) and \
         the file's permissions",
        path.display()
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The text is not TOML.
    #[error("the handler manifest {origin} is not valid TOML: {message}")]
    Syntax {
        /// The file, or `(text)`.
        origin: String,
        /// The parser's message, with the line and column.
        message: String,
    },
    /// The TOML does not describe valid entries.
    #[error("the handler manifest {origin} is not valid:\n{}", list(problems))]
    Invalid {
        /// The file, or `(text)`.
        origin: String,
        /// Every problem, in the file's order.
        problems: Vec<ManifestProblem>,
    },
}

fn list(problems: &[ManifestProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One thing wrong in a manifest: where (`handlers.<name>.<field>`) and what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestProblem {
    /// The TOML path of the entry or field, e.g. `handlers.py-stats.argv[0]`.
    pub path: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl ManifestProblem {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ManifestProblem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ManifestProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}
