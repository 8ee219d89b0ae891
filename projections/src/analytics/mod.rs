//! Analytics over the decisions: how often humans override the AI, by slice, with 95% Wilson
//! score intervals, and the other measures (`measures`: edit magnitude, review times, rejection
//! reasons, reviewer agreement, drift), all computed from item rows (`rows`), so that the CLI
//! report, the HTTP endpoints and the Parquet tables give the same numbers from the same code.
//!
//! Counted per item, once decided by humans: `approved` (as submitted or revised), `edited`
//! (edited and approved), `rejected`; the **override rate** is `(edited + rejected) / decided`.
//! Items decided on expiry (`expired`) or approved by a review policy (`auto_approved`) are
//! counted apart: no human judged them. An item falls in the window when its decision time is
//! in `[since, until)`.

use crate::item::Outcome;
use chrono::{DateTime, Datelike, Duration, Utc};
use serde::Serialize;
use std::borrow::Cow;
use std::collections::BTreeMap;

pub mod accuracy;
pub mod measures;
pub mod rows;

pub use rows::{ItemRow, RowFold};

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
    /// Approved automatically by a review policy (not in `decided`).
    pub auto_approved: u64,
}

/// The slice of `row` (decided at `at`, by `reviewer` when slicing by reviewer) along `by`,
/// borrowing the names the row holds.
pub fn keys_of<'a>(
    row: &'a ItemRow,
    by: &[Dimension],
    reviewer: &'a str,
    at: DateTime<Utc>,
) -> Vec<Cow<'a, str>> {
    by.iter()
        .map(|dimension| match dimension {
            Dimension::Model => Cow::Borrowed(row.model.as_str()),
            Dimension::ModelVersion => Cow::Borrowed(row.model_version.as_str()),
            Dimension::Kind => Cow::Borrowed(row.kind.as_str()),
            Dimension::Queue => Cow::Borrowed(row.queue.as_str()),
            Dimension::Reviewer => Cow::Borrowed(reviewer),
            Dimension::Day => Cow::Owned(at.date_naive().to_string()),
            Dimension::Week => {
                let monday = at.date_naive()
                    - Duration::days(i64::from(at.weekday().num_days_from_monday()));
                Cow::Owned(monday.to_string())
            }
        })
        .collect()
}

/// Whether `at` is in `[since, until)`.
pub fn in_window(
    at: DateTime<Utc>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> bool {
    !(since.is_some_and(|since| at < since) || until.is_some_and(|until| at >= until))
}

/// The decided items decided in `[since, until)`, grouped by their keys along `by`. Slicing by
/// reviewer puts an item in the slice of each reviewer who decided it (`each_reviewer`) or of the
/// first only.
pub fn groups<'a>(
    rows: impl Iterator<Item = &'a ItemRow>,
    by: &[Dimension],
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    each_reviewer: bool,
) -> BTreeMap<Vec<String>, Vec<&'a ItemRow>> {
    // Keyed by borrowed names while grouping (a row costs no string copy), owned at the end.
    let mut slices: std::collections::HashMap<Vec<Cow<'a, str>>, Vec<&'a ItemRow>> =
        std::collections::HashMap::new();
    let by_reviewer = by.contains(&Dimension::Reviewer);
    for row in rows {
        let Some(at) = row.decided_at else {
            continue;
        };
        if !in_window(at, since, until) {
            continue;
        }
        if !by_reviewer {
            slices
                .entry(keys_of(row, by, "", at))
                .or_default()
                .push(row);
            continue;
        }
        let reviewers: Vec<&'a str> = match row.reviewers.as_slice() {
            [] => vec!["(none)"],
            [first, ..] if !each_reviewer => vec![first.as_str()],
            names => names.iter().map(|name| name.as_str()).collect(),
        };
        for reviewer in reviewers {
            slices
                .entry(keys_of(row, by, reviewer, at))
                .or_default()
                .push(row);
        }
    }
    slices
        .into_iter()
        .map(|(keys, mut rows)| {
            // By item id: sums of floats over a slice are then the same whatever order the rows
            // came in (the board's, or a parallel fold's).
            rows.sort_unstable_by_key(|row| row.item_id);
            (keys.into_iter().map(Cow::into_owned).collect(), rows)
        })
        .collect()
}

/// `successes / trials`, 0 when there are none.
pub fn rate(successes: u64, trials: u64) -> f64 {
    if trials == 0 {
        0.0
    } else {
        successes as f64 / trials as f64
    }
}

/// Override rates of the items decided in `[since, until)`, grouped by `by`, rows in the order
/// of their keys.
pub fn override_rates<'a>(
    rows: impl Iterator<Item = &'a ItemRow>,
    by: &[Dimension],
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Vec<OverrideRow> {
    let mut tally = OverrideTally::new(by, since, until);
    for row in rows {
        tally.add(row);
    }
    tally.rows()
}

/// Where an FNV-1a hash starts (its offset basis).
pub const FNV1A_START: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a from `hash` on over `bytes`: a hash of a few bytes, cheap, for tables and shards this
/// process alone keys (no key comes from a client who could aim at collisions).
pub fn fnv1a(hash: u64, bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(hash, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// One slice's outcome counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct OutcomeCounts {
    approved: u64,
    edited: u64,
    rejected: u64,
    expired: u64,
    auto_approved: u64,
}

impl OutcomeCounts {
    fn add(&mut self, other: OutcomeCounts) {
        self.approved += other.approved;
        self.edited += other.edited;
        self.rejected += other.rejected;
        self.expired += other.expired;
        self.auto_approved += other.auto_approved;
    }
}

/// Override rates counted as rows go by, without keeping the rows: the slices' outcome counts
/// (what [`override_rates`] is made of), mergeable across workers that counted parts of the
/// log, since counts do not depend on the order rows come in. Slices as [`groups`] makes them
/// (each reviewer of an item counts it, when slicing by reviewer).
#[derive(Debug, Clone)]
pub struct OverrideTally {
    by: Vec<Dimension>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    /// By the hash of the slice's keys (looked up without making the keys' strings), then the
    /// keys themselves.
    slices: std::collections::HashMap<u64, Vec<(Vec<String>, OutcomeCounts)>>,
}

impl OverrideTally {
    pub fn new(
        by: &[Dimension],
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Self {
        OverrideTally {
            by: by.to_vec(),
            since,
            until,
            slices: std::collections::HashMap::new(),
        }
    }

    /// Counts one item's row.
    pub fn add(&mut self, row: &ItemRow) {
        let Some(at) = row.decided_at else {
            return;
        };
        if !in_window(at, self.since, self.until) {
            return;
        }
        let counts = OutcomeCounts {
            approved: u64::from(row.outcome == Some(Outcome::Approved)),
            edited: u64::from(row.outcome == Some(Outcome::EditedAndApproved)),
            rejected: u64::from(row.outcome == Some(Outcome::Rejected)),
            expired: u64::from(row.expired()),
            auto_approved: u64::from(row.outcome == Some(Outcome::AutoApproved)),
        };
        if !self.by.contains(&Dimension::Reviewer) {
            let keys = keys_of(row, &self.by, "", at);
            self.count(&keys, counts);
            return;
        }
        if row.reviewers.is_empty() {
            let keys = keys_of(row, &self.by, "(none)", at);
            self.count(&keys, counts);
        }
        for reviewer in &row.reviewers {
            let keys = keys_of(row, &self.by, reviewer.as_str(), at);
            self.count(&keys, counts);
        }
    }

    fn count(&mut self, keys: &[Cow<'_, str>], counts: OutcomeCounts) {
        // Over the keys, each ended by a byte no name holds.
        let hash = keys.iter().fold(FNV1A_START, |hash, key| {
            fnv1a(hash, key.bytes().chain([0xff]))
        });
        let bucket = self.slices.entry(hash).or_default();
        match bucket.iter_mut().find(|(known, _)| {
            known
                .iter()
                .map(String::as_str)
                .eq(keys.iter().map(|key| key.as_ref()))
        }) {
            Some((_, known)) => known.add(counts),
            None => bucket.push((keys.iter().map(|key| key.to_string()).collect(), counts)),
        }
    }

    /// Adds the counts of another tally of the same query.
    pub fn merge(&mut self, other: OverrideTally) {
        for (keys, counts) in other.slices.into_values().flatten() {
            let borrowed: Vec<Cow<'_, str>> =
                keys.iter().map(|key| Cow::Borrowed(key.as_str())).collect();
            self.count(&borrowed, counts);
        }
    }

    /// The override rates of the slices counted, in the order of their keys.
    pub fn rows(self) -> Vec<OverrideRow> {
        let mut slices: Vec<(Vec<String>, OutcomeCounts)> =
            self.slices.into_values().flatten().collect();
        slices.sort_unstable_by(|(left, _), (right, _)| left.cmp(right));
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
                    override_rate: rate(overridden, decided),
                    override_rate_low: low,
                    override_rate_high: high,
                    expired: counts.expired,
                    auto_approved: counts.auto_approved,
                }
            })
            .collect()
    }
}

/// One confidence bucket of a calibration: items decided by humans whose stated confidence was
/// in `[low, high)` (the last bucket includes 1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationBucket {
    pub confidence_low: f64,
    pub confidence_high: f64,
    pub decided: u64,
    /// The mean confidence the AI stated in the bucket.
    pub mean_confidence: f64,
    /// The share the humans let through unchanged (approved as is): the AI's measured accuracy.
    pub accuracy: f64,
    pub override_rate: f64,
    pub override_rate_low: f64,
    pub override_rate_high: f64,
}

/// How well the AI's stated confidence predicts that humans accept its output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    /// Items decided by humans with a stated confidence.
    pub decided: u64,
    /// The expected calibration error: the mean over items of |accuracy − mean confidence| of
    /// their bucket (0 is perfectly calibrated).
    pub expected_calibration_error: f64,
    pub buckets: Vec<CalibrationBucket>,
}

/// The calibration of the items decided by humans in `[since, until)` that stated a confidence,
/// in `buckets` equal-width buckets of confidence.
pub fn calibration<'a>(
    rows: impl Iterator<Item = &'a ItemRow>,
    buckets: usize,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Calibration {
    let buckets = buckets.clamp(1, 100);
    // (decided, overridden, sum of confidence) per bucket, summed in item id order.
    let mut counts = vec![(0u64, 0u64, 0f64); buckets];
    let mut rows: Vec<&ItemRow> = rows.collect();
    rows.sort_unstable_by_key(|row| row.item_id);
    for row in rows {
        let (Some(at), Some(confidence), Some(overridden)) =
            (row.decided_at, row.confidence, row.overridden())
        else {
            continue;
        };
        if !in_window(at, since, until) {
            continue;
        }
        let confidence = confidence.clamp(0.0, 1.0);
        let bucket = ((confidence * buckets as f64) as usize).min(buckets - 1);
        let entry = &mut counts[bucket];
        entry.0 += 1;
        entry.1 += u64::from(overridden);
        entry.2 += confidence;
    }
    let decided: u64 = counts.iter().map(|(decided, ..)| decided).sum();
    let mut error = 0.0;
    let buckets = counts
        .into_iter()
        .enumerate()
        .map(|(index, (n, overridden, confidence_sum))| {
            let (low, high) = wilson(overridden, n, Z_95);
            let override_rate = rate(overridden, n);
            let mean_confidence = if n == 0 {
                0.0
            } else {
                confidence_sum / n as f64
            };
            let accuracy = if n == 0 { 0.0 } else { 1.0 - override_rate };
            if decided > 0 {
                error += n as f64 / decided as f64 * (accuracy - mean_confidence).abs();
            }
            CalibrationBucket {
                confidence_low: index as f64 / buckets as f64,
                confidence_high: (index + 1) as f64 / buckets as f64,
                decided: n,
                mean_confidence,
                accuracy,
                override_rate,
                override_rate_low: low,
                override_rate_high: high,
            }
        })
        .collect();
    Calibration {
        decided,
        expected_calibration_error: error,
        buckets,
    }
}

/// The calibration of each slice along `by` (a slice by reviewer takes the items' first
/// decider), slices in the order of their keys.
pub fn calibration_by<'a>(
    rows: impl Iterator<Item = &'a ItemRow>,
    by: &[Dimension],
    buckets: usize,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Vec<(Vec<String>, Calibration)> {
    groups(rows, by, since, until, false)
        .into_iter()
        .map(|(keys, rows)| (keys, calibration(rows.into_iter(), buckets, None, None)))
        .filter(|(_, calibration)| calibration.decided > 0)
        .collect()
}

/// A row as JSON: the slice's keys by dimension name, then the row's own fields.
pub fn row_json(by: &[Dimension], keys: &[String], row: &impl Serialize) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    for (dimension, key) in by.iter().zip(keys) {
        object.insert(dimension.name().to_owned(), key.clone().into());
    }
    if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(row) {
        object.extend(fields);
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
    fn a_tally_merged_from_parts_in_any_order_gives_the_rates_of_all_rows() {
        use crate::item::{Decision, ItemState};
        let outcomes = [
            Outcome::Approved,
            Outcome::EditedAndApproved,
            Outcome::Rejected,
            Outcome::ApprovedOnExpiry,
            Outcome::AutoApproved,
        ];
        let rows: Vec<ItemRow> = (0..60u32)
            .map(|n| {
                let mut item = ItemState {
                    kind: ["reply", "score", "clause"][n as usize % 3].into(),
                    ..ItemState::default()
                };
                item.model.name = ["a", "b"][n as usize % 2].into();
                item.decision = (n % 7 != 0).then(|| {
                    Box::new(Decision {
                        outcome: outcomes[n as usize % 5],
                        decided_by: ["rita", "sam", "kai"][..1 + n as usize % 3]
                            .iter()
                            .map(|name| name.to_string())
                            .collect(),
                        revision: 1,
                        output_hash: Default::default(),
                        final_output: None,
                        decided_at: DateTime::UNIX_EPOCH + Duration::days(i64::from(n)),
                    })
                });
                ItemRow::of(&item)
            })
            .collect();
        for by in ["model,kind", "reviewer,week", ""] {
            let by = Dimension::parse_list(by).unwrap();
            let since = Some(DateTime::UNIX_EPOCH + Duration::days(3));
            let whole = override_rates(rows.iter(), &by, since, None);
            assert!(!whole.is_empty());
            let mut first = OverrideTally::new(&by, since, None);
            let mut second = OverrideTally::new(&by, since, None);
            for (index, row) in rows.iter().rev().enumerate() {
                if index % 3 == 0 {
                    first.add(row)
                } else {
                    second.add(row)
                }
            }
            second.merge(first);
            assert_eq!(second.rows(), whole);
            // The counts are the rows': each decided row in the window once per reviewer slice.
            let decided: u64 = whole
                .iter()
                .map(|row| row.decided + row.expired + row.auto_approved)
                .sum();
            let expected: u64 = rows
                .iter()
                .filter(|row| row.decided_at.is_some_and(|at| Some(at) >= since))
                .map(|row| {
                    if by.contains(&Dimension::Reviewer) {
                        row.reviewers.len() as u64
                    } else {
                        1
                    }
                })
                .sum();
            assert_eq!(decided, expected);
        }
    }

    #[test]
    fn calibration_of_a_perfectly_and_a_badly_calibrated_ai() {
        use crate::item::{Decision, ItemState};
        let decided = |confidence: f64, overridden: bool| {
            let mut item = ItemState {
                confidence: Some(confidence),
                ..ItemState::default()
            };
            item.decision = Some(Box::new(Decision {
                outcome: if overridden {
                    Outcome::Rejected
                } else {
                    Outcome::Approved
                },
                decided_by: vec!["rita".into()],
                revision: 1,
                output_hash: Default::default(),
                final_output: None,
                decided_at: DateTime::UNIX_EPOCH,
            }));
            item
        };
        // Said 0.75, right three times in four; said 0.25, right once in four: calibrated.
        let calibrated: Vec<ItemState> =
            [(0.75, false), (0.75, false), (0.75, false), (0.75, true)]
                .into_iter()
                .chain([(0.25, true), (0.25, true), (0.25, true), (0.25, false)])
                .map(|(confidence, overridden)| decided(confidence, overridden))
                .collect();
        let calibrated: Vec<ItemRow> = calibrated.iter().map(ItemRow::of).collect();
        let result = calibration(calibrated.iter(), 4, None, None);
        assert_eq!(result.decided, 8);
        assert!(result.expected_calibration_error.abs() < 1e-12);
        assert_eq!(result.buckets[3].decided, 4);
        assert_eq!(result.buckets[3].override_rate, 0.25);
        // Said 0.95 and was overridden every other time: off by 0.45.
        let overconfident: Vec<ItemState> = (0..10).map(|n| decided(0.95, n % 2 == 0)).collect();
        let overconfident: Vec<ItemRow> = overconfident.iter().map(ItemRow::of).collect();
        let result = calibration(overconfident.iter(), 10, None, None);
        assert!((result.expected_calibration_error - 0.45).abs() < 1e-9);
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
