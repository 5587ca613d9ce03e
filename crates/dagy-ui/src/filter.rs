//! The runs list's filters: the query parameters as sent, and the [`RunFilter`] they mean.

use dagy_store::{RunFilter, RunStatus};
use serde::Deserialize;

use crate::error::Error;
use crate::time::{INSTANT_FORMS, parse_instant};

/// How many runs a listing shows when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 50;
/// The most runs one listing shows.
pub const MAX_LIMIT: usize = 500;

/// Every run status, in the order the filter form lists them.
pub(crate) const RUN_STATUSES: [RunStatus; 6] = [
    RunStatus::Pending,
    RunStatus::Running,
    RunStatus::Completed,
    RunStatus::Failed,
    RunStatus::TimedOut,
    RunStatus::Cancelled,
];

/// The query parameters of `/` and `/api/runs`, as text; an empty value means "any" (what an
/// empty form field sends).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunsQuery {
    /// A run status, or `all`.
    pub status: Option<String>,
    /// A flow or deployment name.
    pub name: Option<String>,
    /// Runs created at or after this time.
    pub since: Option<String>,
    /// Runs created before this time.
    pub until: Option<String>,
    /// How many runs, at most.
    pub limit: Option<String>,
}

/// A listing to ask the store for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Which runs.
    pub filter: RunFilter,
    /// How many, at most.
    pub limit: usize,
}

/// `value` when it is given and not blank.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl RunsQuery {
    /// Reads the filters; relative times count back from `now_ms`. A value that cannot be read
    /// is an [`Error::BadFilter`] that names the parameter and what it accepts.
    pub fn listing(&self, now_ms: u64) -> Result<Listing, Error> {
        let status = match given(&self.status) {
            None | Some("all") => None,
            Some(text) => Some(
                RUN_STATUSES
                    .into_iter()
                    .find(|s| s.as_str() == text)
                    .ok_or_else(|| Error::BadFilter {
                        param: "status",
                        value: text.to_string(),
                        expected: format!(
                            "one of {} (or leave it empty for all)",
                            RUN_STATUSES.map(RunStatus::as_str).join(", ")
                        ),
                    })?,
            ),
        };
        let instant = |param: &'static str, value: &Option<String>| {
            given(value)
                .map(|text| {
                    parse_instant(text, now_ms).ok_or_else(|| Error::BadFilter {
                        param,
                        value: text.to_string(),
                        expected: INSTANT_FORMS.to_string(),
                    })
                })
                .transpose()
        };
        let since_ms = instant("since", &self.since)?;
        let until_ms = instant("until", &self.until)?;
        if let (Some(since), Some(until)) = (since_ms, until_ms)
            && since >= until
        {
            return Err(Error::BadFilter {
                param: "until",
                value: given(&self.until).unwrap_or_default().to_string(),
                expected: "a time after `since`, or swap the two".into(),
            });
        }
        let limit = match given(&self.limit) {
            None => DEFAULT_LIMIT,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| Error::BadFilter {
                    param: "limit",
                    value: text.to_string(),
                    expected: format!("a whole number from 1 to {MAX_LIMIT}"),
                })?,
        };
        Ok(Listing {
            filter: RunFilter {
                status,
                name: given(&self.name).map(str::to_string),
                since_ms,
                until_ms,
            },
            limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_996_800_000;

    fn query(pairs: &[(&str, &str)]) -> RunsQuery {
        let mut q = RunsQuery::default();
        for (k, v) in pairs {
            let v = Some((*v).to_string());
            match *k {
                "status" => q.status = v,
                "name" => q.name = v,
                "since" => q.since = v,
                "until" => q.until = v,
                "limit" => q.limit = v,
                _ => unreachable!(),
            }
        }
        q
    }

    fn bad_param(pairs: &[(&str, &str)]) -> &'static str {
        match query(pairs).listing(NOW) {
            Err(Error::BadFilter { param, .. }) => param,
            other => panic!("expected a bad filter, got {other:?}"),
        }
    }

    #[test]
    fn no_filters_list_the_newest_fifty_of_any_run() {
        let listing = query(&[]).listing(NOW).expect("listing");
        assert_eq!(listing.filter, RunFilter::default());
        assert_eq!(listing.limit, DEFAULT_LIMIT);
    }

    #[test]
    fn empty_fields_from_the_form_mean_any() {
        let q = query(&[
            ("status", ""),
            ("name", "  "),
            ("since", ""),
            ("until", ""),
            ("limit", ""),
        ]);
        assert_eq!(
            q.listing(NOW).expect("listing").filter,
            RunFilter::default()
        );
        let all = query(&[("status", "all")]).listing(NOW).expect("listing");
        assert_eq!(all.filter.status, None);
    }

    #[test]
    fn every_filter_is_read() {
        let listing = query(&[
            ("status", "timed_out"),
            ("name", "etl"),
            ("since", "2d"),
            ("until", "2026-11-30"),
            ("limit", "500"),
        ])
        .listing(NOW + 3_600_000)
        .expect("listing");
        assert_eq!(listing.filter.status, Some(RunStatus::TimedOut));
        assert_eq!(listing.filter.name.as_deref(), Some("etl"));
        assert_eq!(
            listing.filter.since_ms,
            Some(NOW + 3_600_000 - 2 * 86_400_000)
        );
        assert_eq!(listing.filter.until_ms, Some(NOW));
        assert_eq!(listing.limit, 500);
    }

    #[test]
    fn an_unknown_status_is_a_bad_filter_that_lists_the_statuses() {
        let err = query(&[("status", "done")])
            .listing(NOW)
            .expect_err("a bad status");
        assert!(err.to_string().contains("completed"), "{err}");
        assert_eq!(bad_param(&[("status", "done")]), "status");
    }

    #[test]
    fn a_limit_outside_one_to_five_hundred_is_a_bad_filter() {
        for limit in ["0", "501", "-1", "ten", "1e3"] {
            assert_eq!(bad_param(&[("limit", limit)]), "limit", "{limit}");
        }
    }

    #[test]
    fn an_unreadable_time_is_a_bad_filter_naming_its_parameter() {
        assert_eq!(bad_param(&[("since", "yesterday")]), "since");
        assert_eq!(bad_param(&[("until", "2026-02-30")]), "until");
    }

    #[test]
    fn since_after_until_is_a_bad_filter() {
        assert_eq!(
            bad_param(&[("since", "2026-11-30"), ("until", "2026-11-29")]),
            "until"
        );
    }
}
