//! The dashboard's one error type, and the HTTP status each error answers with.

use axum::http::StatusCode;
use dagy_store::StoreError;

/// Why a dashboard request could not be answered with what it asked for.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A filter's value cannot be read; `expected` says what to write instead.
    #[error("{param}={value:?} is not understood: use {expected}")]
    BadFilter {
        /// The query parameter.
        param: &'static str,
        /// What it was given.
        value: String,
        /// What it accepts.
        expected: String,
    },
    /// The query string itself cannot be read.
    #[error("the query string cannot be read: {0}")]
    BadQuery(String),
    /// No run has this id.
    #[error("no run has the id {run_id:?}")]
    RunNotFound {
        /// The id asked for.
        run_id: String,
    },
    /// The run has no task with this id.
    #[error("run {run_id} has no task {task_id:?}")]
    TaskNotFound {
        /// The run.
        run_id: String,
        /// The id asked for.
        task_id: String,
    },
    /// No page has this address.
    #[error("there is no page at {path}")]
    NoSuchPage {
        /// The path asked for.
        path: String,
    },
    /// A state-changing request came from another site's page.
    #[error(
        "this request came from another origin ({origin}); the dashboard only takes changes \
         from its own pages"
    )]
    CrossOrigin {
        /// The `Origin` header sent.
        origin: String,
    },
    /// The store could not be reached.
    #[error("the run store cannot be reached: {0}")]
    Unavailable(String),
    /// The store answered with an error the dashboard does not expect on a read.
    #[error("the run store failed: {0}")]
    Store(StoreError),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { run_id } => Error::RunNotFound { run_id },
            StoreError::Unavailable(detail) => Error::Unavailable(detail),
            other => Error::Store(other),
        }
    }
}

impl Error {
    /// The HTTP status it answers with.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Error::BadFilter { .. } | Error::BadQuery(_) => StatusCode::BAD_REQUEST,
            Error::RunNotFound { .. } | Error::TaskNotFound { .. } | Error::NoSuchPage { .. } => {
                StatusCode::NOT_FOUND
            }
            Error::CrossOrigin { .. } => StatusCode::FORBIDDEN,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable code for the JSON API.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Error::BadFilter { .. } => "bad_filter",
            Error::BadQuery(_) => "bad_query",
            Error::RunNotFound { .. } => "run_not_found",
            Error::TaskNotFound { .. } => "task_not_found",
            Error::NoSuchPage { .. } => "no_such_page",
            Error::CrossOrigin { .. } => "cross_origin",
            Error::Unavailable(_) => "store_unavailable",
            Error::Store(_) => "store_error",
        }
    }

    /// A short title for the error page.
    pub(crate) fn title(&self) -> &'static str {
        match self {
            Error::BadFilter { .. } | Error::BadQuery(_) => "Bad filter",
            Error::RunNotFound { .. } => "Run not found",
            Error::TaskNotFound { .. } => "Task not found",
            Error::NoSuchPage { .. } => "Page not found",
            Error::CrossOrigin { .. } => "Refused",
            Error::Unavailable(_) => "Run store unreachable",
            Error::Store(_) => "Run store error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_run_is_a_404_and_an_unreachable_store_a_503() {
        let missing: Error = StoreError::NotFound {
            run_id: "r1".into(),
        }
        .into();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        let down: Error = StoreError::Unavailable("timeout".into()).into();
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
        let corrupt: Error = StoreError::Corrupt("bad item".into()).into();
        assert_eq!(corrupt.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn a_bad_filter_says_what_to_write() {
        let e = Error::BadFilter {
            param: "limit",
            value: "lots".into(),
            expected: "a whole number from 1 to 500".into(),
        };
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            e.to_string(),
            "limit=\"lots\" is not understood: use a whole number from 1 to 500"
        );
    }
}
