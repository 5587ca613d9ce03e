//! The core's one error type, and the problems found in a flow.

use std::fmt;

use serde::Serialize;

/// What can go wrong in the core: a flow that cannot be read or is invalid, a plan that is
/// refused, a configuration that is incomplete. Every message says what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The document is not JSON.
    #[error("the flow is not valid JSON: {message} at line {line}, column {column}")]
    Syntax {
        /// What the JSON parser found.
        message: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
    /// The document is JSON but not a valid flow; every problem found is listed.
    #[error("{}", Problems(.0))]
    InvalidFlow(Vec<Problem>),
    /// The flow is valid but cannot run where it was sent.
    #[error("{0}")]
    Refused(Refusal),
    /// An environment variable is missing or has a value that cannot be used.
    #[error("{variable}: {message}")]
    Config {
        /// The variable to set or fix.
        variable: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A Fargate cpu/memory pair that AWS does not accept.
    #[error("{0}")]
    InvalidFargateSize(String),
    /// A name that is not one of the known values (tier, backend, ...).
    #[error("unknown {kind} \"{value}\"; expected one of: {expected}")]
    UnknownName {
        /// What kind of name it was.
        kind: &'static str,
        /// The value given.
        value: String,
        /// The accepted values, comma-separated.
        expected: String,
    },
}

impl Error {
    /// A short, stable code for APIs and scripts (`invalid_flow`, `plan_refused`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Syntax { .. } => "malformed_json",
            Error::InvalidFlow(_) => "invalid_flow",
            Error::Refused(_) => "plan_refused",
            Error::Config { .. } => "configuration",
            Error::InvalidFargateSize(_) => "invalid_fargate_size",
            Error::UnknownName { .. } => "unknown_name",
        }
    }

    /// The problems of an invalid flow (empty for other errors).
    pub fn problems(&self) -> &[Problem] {
        match self {
            Error::InvalidFlow(problems) => problems,
            _ => &[],
        }
    }
}

/// The kind of a [`Problem`], for programs that match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A field this version does not know (a typo, usually).
    UnknownField,
    /// A required field is absent.
    MissingField,
    /// A value of the wrong JSON type.
    WrongType,
    /// `spec_version` is not one this build understands.
    UnsupportedVersion,
    /// A number that is negative, not finite, zero where zero means nothing, or out of range.
    InvalidNumber,
    /// A tier name that does not exist.
    UnknownTier,
    /// The flow has no tasks.
    EmptyFlow,
    /// A task id or name that breaks the naming rules.
    InvalidName,
    /// Two tasks share an id.
    DuplicateId,
    /// A dependency names no task, or names the same task twice.
    InvalidDependency,
    /// The dependencies loop.
    Cycle,
    /// The handler is not registered, or a `lambda:` handler names nothing.
    UnknownHandler,
    /// The flow's parameters are larger, or nest deeper, than a run can store.
    InvalidParameters,
    /// A task's `args` nest deeper than a task's input may.
    InvalidArgs,
}

/// One problem in a flow, located by its JSON path and, inside a task, by the task's id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// What kind of problem this is.
    pub kind: ProblemKind,
    /// The JSON path of the offending value, e.g. `tasks[2].retries`.
    pub path: String,
    /// The id of the task it belongs to, when it belongs to one that has an id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.task {
            Some(task) => write!(f, "{} (task \"{task}\"): {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "the flow is invalid ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for problem in self.0 {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

/// Why a flow cannot run on the tier and backend chosen for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refusal {
    /// The reason, naming the limit and the value that breaks it.
    pub reason: String,
    /// What the user can change to make it run.
    pub remedy: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused: {}; {}", self.reason, self.remedy)
    }
}
