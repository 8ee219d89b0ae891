//! Override rates from the review board: how often humans override the AI, by slice, with 95%
//! Wilson score intervals. A pure computation over items' states, so that the CLI report and
//! the HTTP endpoint give the same numbers from the same function.
//!
//! Counted per item, once decided by humans: `approved` (as submitted or revised), `edited`
//! (edited and approved), `rejected`; the **override rate** is `(edited + rejected) / decided`.
//! Items decided on expiry are counted apart (`expired`): no human judged them. An item falls in
//! the window when its decision time is in `[since, until)`.

use crate::item::{ItemState, Outcome};
use chrono::{DateTime, Datelike, Duration, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// The normal quantile of a two-sided 95% interval.
pub const Z_95: f64 = 1.96;

/// The Wilson score interval of `successes` out of `trials` at `z` (`(0, 1)` when there are none).
pub fn wilson(successes: u64, trials: u64, z: f64) -> (f64, f64) {
    if trials == 0 {
        return (0.0, 1.0);
    }
    let n = trials as f64;
    let p = successes as f64 / n;
    let z2 = z * z;
    let center = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// What rows are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Model,
    ModelVersion,
    Kind,
    Queue,
    /// Each reviewer who decided the item (an item decided by two counts for both).
    Reviewer,
    /// The day of the decision (UTC), `YYYY-MM-DD`.
    Day,
    /// The ISO week of the decision, named by its Monday, `YYYY-MM-DD`.
    Week,
}

impl Dimension {
    pub const ALL: [Dimension; 7] = [
        Dimension::Model,
        Dimension::ModelVersion,
        Dimension::Kind,
        Dimension::Queue,
        Dimension::Reviewer,
        Dimension::Day,
        Dimension::Week,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Dimension::Model => "model",
            Dimension::ModelVersion => "model_version",
            Dimension::Kind => "kind",
            Dimension::Queue => "queue",
            Dimension::Reviewer => "reviewer",
            Dimension::Day => "day",
            Dimension::Week => "week",
        }
    }

    /// The dimensions of a comma-separated list (`model,kind`); an empty list is no grouping.
    pub fn parse_list(text: &str) -> Result<Vec<Dimension>, String> {
        let mut dimensions = Vec::new();
        for name in text
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
        {
            let dimension = Dimension::ALL
                .into_iter()
                .find(|dimension| dimension.name() == name)
                .ok_or_else(|| {
                    format!(
                        "unknown dimension {name:?}: use {}",
                        Dimension::ALL.map(Dimension::name).join(", ")
                    )
                })?;
            if dimensions.contains(&dimension) {
                return Err(format!("dimension {name:?} is named twice"));
            }
            dimensions.push(dimension);
        }
        Ok(dimensions)
    }
}

/// One slice's counts and rate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverrideRow {
    /// The slice's value for each dimension asked for, in order.
    #[serde(skip)]
    pub keys: Vec<String>,
    pub decided: u64,
    pub approved: u64,
    pub edited: u64,
    pub rejected: u64,
    pub overridden: u64,
    pub override_rate: f64,
    pub override_rate_low: f64,
    pub override_rate_high: f64,
    /// Decided on expiry (not in `decided`).
    pub expired: u64,
}

/// Override rates of the items decided in `[since, until)`, grouped by `by`, rows in the order
/// of their keys.
pub fn override_rates<'a>(
    items: impl Iterator<Item = &'a ItemState>,
    by: &[Dimension],
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Vec<OverrideRow> {
    #[derive(Default)]
    struct Counts {
        approved: u64,
        edited: u64,
        rejected: u64,
        expired: u64,
    }
    let mut slices: BTreeMap<Vec<String>, Counts> = BTreeMap::new();
    for item in items {
        let Some(decision) = &item.decision else {
            continue;
        };
        let at = decision.decided_at;
        if since.is_some_and(|since| at < since) || until.is_some_and(|until| at >= until) {
            continue;
        }
        let reviewers: Vec<String> = if by.contains(&Dimension::Reviewer) {
            match decision.decided_by.as_slice() {
                [] => vec!["(none)".to_owned()],
                names => names.to_vec(),
            }
        } else {
            vec![String::new()]
        };
        for reviewer in reviewers {
            let keys = by
                .iter()
                .map(|dimension| match dimension {
                    Dimension::Model => item.model.name.to_string(),
                    Dimension::ModelVersion => item.model.version.to_string(),
                    Dimension::Kind => item.kind.to_string(),
                    Dimension::Queue => item.queue.to_string(),
                    Dimension::Reviewer => reviewer.clone(),
                    Dimension::Day => at.date_naive().to_string(),
                    Dimension::Week => {
                        let monday = at.date_naive()
                            - Duration::days(i64::from(at.weekday().num_days_from_monday()));
                        monday.to_string()
                    }
                })
                .collect();
            let counts = slices.entry(keys).or_default();
            match decision.outcome {
                Outcome::Approved => counts.approved += 1,
                Outcome::EditedAndApproved => counts.edited += 1,
                Outcome::Rejected => counts.rejected += 1,
                Outcome::ApprovedOnExpiry | Outcome::RejectedOnExpiry => counts.expired += 1,
            }
        }
    }
    slices
        .into_iter()
        .map(|(keys, counts)| {
            let decided = counts.approved + counts.edited + counts.rejected;
            let overridden = counts.edited + counts.rejected;
            let (low, high) = wilson(overridden, decided, Z_95);
            OverrideRow {
                keys,
                decided,
                approved: counts.approved,
                edited: counts.edited,
                rejected: counts.rejected,
                overridden,
                override_rate: if decided == 0 {
                    0.0
                } else {
                    overridden as f64 / decided as f64
                },
                override_rate_low: low,
                override_rate_high: high,
                expired: counts.expired,
            }
        })
        .collect()
}

/// A row as JSON: the slice's keys by dimension name, then the counts and rates.
pub fn row_json(by: &[Dimension], row: &OverrideRow) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    for (dimension, key) in by.iter().zip(&row.keys) {
        object.insert(dimension.name().to_owned(), key.clone().into());
    }
    if let Ok(serde_json::Value::Object(counts)) = serde_json::to_value(row) {
        object.extend(counts);
    }
    serde_json::Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_intervals_match_published_values() {
        // Wilson (1927) / Newcombe (1998) table values at z = 1.96.
        let close = |(low, high): (f64, f64), (want_low, want_high): (f64, f64)| {
            assert!((low - want_low).abs() < 5e-4, "{low} vs {want_low}");
            assert!((high - want_high).abs() < 5e-4, "{high} vs {want_high}");
        };
        close(wilson(0, 10, Z_95), (0.0, 0.2775));
        close(wilson(5, 10, Z_95), (0.2366, 0.7634));
        close(wilson(81, 263, Z_95), (0.2553, 0.3662));
        close(wilson(15, 148, Z_95), (0.0624, 0.1605));
        assert_eq!(wilson(0, 0, Z_95), (0.0, 1.0));
        let (low, high) = wilson(10, 10, Z_95);
        assert!(high == 1.0 && (low - 0.7225).abs() < 5e-4);
    }

    #[test]
    fn dimensions_parse_and_refuse() {
        assert_eq!(
            Dimension::parse_list("model, kind").unwrap(),
            vec![Dimension::Model, Dimension::Kind]
        );
        assert_eq!(Dimension::parse_list("").unwrap(), vec![]);
        assert!(Dimension::parse_list("model,model").is_err());
        assert!(Dimension::parse_list("colour").is_err());
    }
}
