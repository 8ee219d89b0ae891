//! The measures beyond override rates, per slice of item rows: edit magnitude, times to first
//! claim and to decision (p50/p90/p99), rejection reasons, agreement between reviewers (Fleiss'
//! kappa) and drift (a two-proportion z-test of the latest window against the baseline before
//! it, Bonferroni-corrected over the slices tested).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::rows::{ItemRow, Verdict};
use super::{Dimension, Z_95, groups, rate, wilson};

/// The nearest-rank percentile `p` (in (0, 1]) of sorted `values`.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// p50, p90 and p99 of `values` (sorted here).
fn quantiles(mut values: Vec<f64>) -> [Option<f64>; 3] {
    values.sort_by(f64::total_cmp);
    [0.5, 0.9, 0.99].map(|p| percentile(&values, p))
}

/// How long items of a slice waited, in seconds: to the first claim (decided items that were
/// claimed), and to the decision (items decided by humans).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimesRow {
    #[serde(skip)]
    pub keys: Vec<String>,
    pub decided: u64,
    /// Decided items that had been claimed (expired ones may never have been).
    pub claimed: u64,
    pub time_to_claim_p50_s: Option<f64>,
    pub time_to_claim_p90_s: Option<f64>,
    pub time_to_claim_p99_s: Option<f64>,
    pub time_to_decision_p50_s: Option<f64>,
    pub time_to_decision_p90_s: Option<f64>,
    pub time_to_decision_p99_s: Option<f64>,
}

/// Times to first claim and to decision of the items decided in `[since, until)`, by slice.
pub fn review_times<'a>(
    rows: impl Iterator<Item = &'a ItemRow>,
    by: &[Dimension],
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Vec<TimesRow> {
    groups(rows, by, since, until, true)
        .into_iter()
        .map(|(keys, rows)| {
            let claim: Vec<f64> = rows.iter().filter_map(|row| row.time_to_claim()).collect();
            let claimed = claim.len() as u64;
            // Time to decision of what humans decided: expiries and automatic approvals say
            // nothing of how fast reviewers work.
            let decision: Vec<f64> = rows
                .iter()
                .filter(|row| row.human_decided())
                .filter_map(|row| row.time_to_decision())
                .collect();
            let [claim_50, claim_90, claim_99] = quantiles(claim);
            let [decision_50, decision_90, decision_99] = quantiles(decision);
            TimesRow {
                keys,
                decided: rows.len() as u64,
                claimed,
                time_to_claim_p50_s: claim_50,
                time_to_claim_p90_s: claim_90,
                time_to_claim_p99_s: claim_99,
                time_to_decision_p50_s: decision_50,
                time_to_decision_p90_s: decision_90,
                time_to_decision_p99_s: decision_99,
            }
        })
        .collect()
}

/// How much the humans changed the outputs they edited.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EditRow {
    #[serde(skip)]
    pub keys: Vec<String>,
    /// Items decided by humans.
    pub decided: u64,
    pub edited: u64,
    pub edit_magnitude_mean: Option<f64>,
    pub edit_magnitude_p50: Option<f64>,
    pub edit_magnitude_p90: Option<f64>,
    pub edit_magnitude_max: Option<f64>,
}

/// The edit magnitude of the items edited and approved in `[since, until)`, by slice.
pub fn edit_magnitudes<'a>(
    rows: impl Iterator<Item = &'a ItemRow>,
    by: &[Dimension],
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Vec<EditRow> {
    groups(rows, by, since, until, true)
        .into_iter()
        .map(|(keys, rows)| {
            let mut magnitudes: Vec<f64> =
                rows.iter().filter_map(|row| row.edit_magnitude).collect();
            magnitudes.sort_by(f64::total_cmp);
            let n = magnitudes.len();
            EditRow {
                keys,
                decided: rows.iter().filter(|row| row.human_decided()).count() as u64,
                edited: n as u64,
                edit_magnitude_mean: (n > 0).then(|| magnitudes.iter().sum::<f64>() / n as f64),
                edit_magnitude_p50: percentile(&magnitudes, 0.5),
                edit_magnitude_p90: percentile(&magnitudes, 0.9),
                edit_magnitude_max: magnitudes.last().copied(),
            }
        })
        .collect()
}

/// How often one reason was given, among a slice's rejections.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReasonRow {
    #[serde(skip)]
    pub keys: Vec<String>,
    pub reason: String,
    pub rejections: u64,
    /// This reason's rejections among all the slice's rejections.
    pub share: f64,
    pub share_low: f64,
    pub share_high: f64,
}

/// The reasons of the rejections in `[since, until)`, by slice, the most frequent first.
pub fn rejection_reasons<'a>(
    rows: impl Iterator<Item = &'a ItemRow>,
    by: &[Dimension],
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Vec<ReasonRow> {
    let mut answer = Vec::new();
    for (keys, rows) in groups(rows, by, since, until, true) {
        let mut reasons: BTreeMap<&str, u64> = BTreeMap::new();
        for row in &rows {
            if row.outcome == Some(crate::item::Outcome::Rejected)
                && let Some(reason) = &row.reject_reason
            {
                *reasons.entry(reason.as_str()).or_default() += 1;
            }
        }
        let total: u64 = reasons.values().sum();
        let mut reasons: Vec<(&str, u64)> = reasons.into_iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        answer.extend(reasons.into_iter().map(|(reason, count)| {
            let (low, high) = wilson(count, total, Z_95);
            ReasonRow {
                keys: keys.clone(),
                reason: reason.to_owned(),
                rejections: count,
                share: rate(count, total),
                share_low: low,
                share_high: high,
            }
        }));
    }
    answer
}

/// Agreement between reviewers who judged the same items.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgreementRow {
    #[serde(skip)]
    pub keys: Vec<String>,
    /// Items with verdicts from at least two reviewers.
    pub items: u64,
    /// Their verdicts.
    pub ratings: u64,
    /// The share of agreeing pairs of verdicts on the same item.
    pub observed_agreement: Option<f64>,
    /// The agreement expected by chance from how often each verdict is given.
    pub expected_agreement: Option<f64>,
    /// Fleiss' kappa: 1 is full agreement, 0 no more than chance; `None` without items, or when
    /// every verdict is the same (chance agreement is then 1).
    pub kappa: Option<f64>,
}

/// Fleiss' kappa, for items rated by varying numbers of raters, from each item's count of
/// verdicts per category (Fleiss 1971, with each item's agreement over its own pairs).
pub fn fleiss_kappa(counts: &[[u64; 2]]) -> (Option<f64>, Option<f64>, Option<f64>) {
    let rated: Vec<&[u64; 2]> = counts
        .iter()
        .filter(|counts| counts.iter().sum::<u64>() >= 2)
        .collect();
    if rated.is_empty() {
        return (None, None, None);
    }
    let mut agreement = 0.0;
    let mut totals = [0u64; 2];
    for counts in &rated {
        let n = counts.iter().sum::<u64>() as f64;
        let pairs: f64 = counts.iter().map(|&c| c as f64 * (c as f64 - 1.0)).sum();
        agreement += pairs / (n * (n - 1.0));
        totals[0] += counts[0];
        totals[1] += counts[1];
    }
    let observed = agreement / rated.len() as f64;
    let all = (totals[0] + totals[1]) as f64;
    let expected: f64 = totals.iter().map(|&t| (t as f64 / all).powi(2)).sum();
    let kappa = (expected < 1.0).then(|| (observed - expected) / (1.0 - expected));
    (Some(observed), Some(expected), kappa)
}

/// Reviewer agreement on the AI's outputs (accept or override) over the items decided in
/// `[since, until)` that at least two reviewers judged, by slice (not by reviewer).
pub fn agreement<'a>(
    rows: impl Iterator<Item = &'a ItemRow>,
    by: &[Dimension],
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Vec<AgreementRow> {
    groups(rows, by, since, until, false)
        .into_iter()
        .map(|(keys, rows)| {
            let counts: Vec<[u64; 2]> = rows
                .iter()
                .filter(|row| row.verdicts.len() >= 2)
                .map(|row| {
                    let accept = row
                        .verdicts
                        .iter()
                        .filter(|verdict| verdict.verdict == Verdict::Accept)
                        .count() as u64;
                    [accept, row.verdicts.len() as u64 - accept]
                })
                .collect();
            let (observed, expected, kappa) = fleiss_kappa(&counts);
            AgreementRow {
                keys,
                items: counts.len() as u64,
                ratings: counts.iter().flatten().sum(),
                observed_agreement: observed,
                expected_agreement: expected,
                kappa,
            }
        })
        .collect()
}

/// One slice's latest window against its baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftRow {
    #[serde(skip)]
    pub keys: Vec<String>,
    pub baseline_decided: u64,
    pub baseline_override_rate: f64,
    pub baseline_override_rate_low: f64,
    pub baseline_override_rate_high: f64,
    pub latest_decided: u64,
    pub latest_override_rate: f64,
    pub latest_override_rate_low: f64,
    pub latest_override_rate_high: f64,
    /// The two-proportion z statistic (pooled), latest minus baseline; `None` when not tested.
    pub z: Option<f64>,
    /// Its two-sided p-value.
    pub p_value: Option<f64>,
    /// Whether the p-value is below the significance level divided by the slices tested.
    pub drifted: bool,
}

/// The drift of every slice: what the test compared and what it found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drift {
    pub test: &'static str,
    pub baseline_since: Option<DateTime<Utc>>,
    /// Where the baseline ends and the latest window starts.
    pub window_since: DateTime<Utc>,
    pub window_until: DateTime<Utc>,
    pub significance: f64,
    /// Both sides need this many decided items for a slice to be tested.
    pub minimum_sample: u64,
    pub slices_tested: u64,
    #[serde(skip)]
    pub rows: Vec<DriftRow>,
}

/// The test's name, as the answer states it.
pub const DRIFT_TEST: &str = "two-sided two-proportion z-test (pooled), Bonferroni-corrected";

/// Slices whose override rate in the latest `window` (ending at `until`, or just after the last
/// decision) differs from their baseline (the decisions from `since` to the window's start).
pub fn drift<'a>(
    rows: impl Iterator<Item = &'a ItemRow> + Clone,
    by: &[Dimension],
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    window: Duration,
    minimum_sample: u64,
    significance: f64,
) -> Drift {
    let end = until.unwrap_or_else(|| {
        rows.clone()
            .filter(|row| row.human_decided())
            .filter_map(|row| row.decided_at)
            .max()
            .map_or(DateTime::UNIX_EPOCH, |last| {
                last + Duration::microseconds(1)
            })
    });
    let start = end - window;
    let count = |slice: &[&ItemRow]| {
        let decided = slice.iter().filter(|row| row.human_decided()).count() as u64;
        let overridden = slice
            .iter()
            .filter(|row| row.overridden() == Some(true))
            .count() as u64;
        (decided, overridden)
    };
    let baseline = groups(rows.clone(), by, since, Some(start), true);
    let latest = groups(rows, by, Some(start), Some(end), true);
    let keys: std::collections::BTreeSet<&Vec<String>> =
        baseline.keys().chain(latest.keys()).collect();
    let mut answer: Vec<DriftRow> = keys
        .into_iter()
        .map(|keys| {
            let (n0, x0) = baseline.get(keys).map_or((0, 0), |slice| count(slice));
            let (n1, x1) = latest.get(keys).map_or((0, 0), |slice| count(slice));
            let (low0, high0) = wilson(x0, n0, Z_95);
            let (low1, high1) = wilson(x1, n1, Z_95);
            let tested = n0 >= minimum_sample && n1 >= minimum_sample;
            let (z, p_value) = if tested {
                let pooled = (x0 + x1) as f64 / (n0 + n1) as f64;
                let error = (pooled * (1.0 - pooled) * (1.0 / n0 as f64 + 1.0 / n1 as f64)).sqrt();
                let z = if error == 0.0 {
                    0.0
                } else {
                    (rate(x1, n1) - rate(x0, n0)) / error
                };
                (
                    Some(z),
                    Some(libm::erfc(z.abs() / std::f64::consts::SQRT_2)),
                )
            } else {
                (None, None)
            };
            DriftRow {
                keys: keys.clone(),
                baseline_decided: n0,
                baseline_override_rate: rate(x0, n0),
                baseline_override_rate_low: low0,
                baseline_override_rate_high: high0,
                latest_decided: n1,
                latest_override_rate: rate(x1, n1),
                latest_override_rate_low: low1,
                latest_override_rate_high: high1,
                z,
                p_value,
                drifted: false,
            }
        })
        .collect();
    let tested = answer.iter().filter(|row| row.p_value.is_some()).count() as u64;
    for row in &mut answer {
        row.drifted = row
            .p_value
            .is_some_and(|p| p < significance / tested.max(1) as f64);
    }
    Drift {
        test: DRIFT_TEST,
        baseline_since: since,
        window_since: start,
        window_until: end,
        significance,
        minimum_sample,
        slices_tested: tested,
        rows: answer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleiss_kappa_of_known_tables() {
        // Full agreement on mixed verdicts: kappa 1.
        let (observed, _, kappa) = fleiss_kappa(&[[2, 0], [0, 2], [2, 0], [0, 2]]);
        assert_eq!(observed, Some(1.0));
        assert!((kappa.unwrap() - 1.0).abs() < 1e-12);
        // Every item split: observed 0, expected 0.5, kappa -1.
        let (observed, expected, kappa) = fleiss_kappa(&[[1, 1], [1, 1]]);
        assert_eq!((observed, expected), (Some(0.0), Some(0.5)));
        assert!((kappa.unwrap() + 1.0).abs() < 1e-12);
        // Everyone always accepts: agreement is certain by chance, kappa undefined.
        assert_eq!(fleiss_kappa(&[[2, 0], [3, 0]]).2, None);
        // Items with fewer than two ratings are left out.
        assert_eq!(fleiss_kappa(&[[1, 0]]), (None, None, None));
        // Three raters: P_i = (3·2 + 0)/6 = 1 and (2·1 + 0)/6 = 1/3; P̄ = 2/3;
        // p = (5/6, 1/6); P_e = 26/36; kappa = (2/3 − 26/36)/(10/36) = −0.2.
        let (_, _, kappa) = fleiss_kappa(&[[3, 0], [2, 1]]);
        assert!((kappa.unwrap() + 0.2).abs() < 1e-12);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), Some(50.0));
        assert_eq!(percentile(&values, 0.9), Some(90.0));
        assert_eq!(percentile(&values, 0.99), Some(99.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
