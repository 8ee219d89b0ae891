//! The feedback loop: review policies per kind (`ledger serve --review-policy FILE`), the job that
//! measures each slice's override rate and appends `AccuracyMeasured` events, and the routing of
//! a new item to review or to automatic approval from the latest measurement of its slice.
//!
//! The file is JSON:
//!
//! ```json
//! {"window_days": 30, "measure_every_seconds": 300,
//!  "policies": [
//!    {"kind": "lead_score", "target_override_rate": 0.05, "minimum_sample": 200,
//!     "sampling_rate": 0.1}
//!  ]}
//! ```
//!
//! A slice (model, version, kind) whose kind has a policy is **under sampling** while its latest
//! measurement counts at least `minimum_sample` human decisions and the upper bound of its
//! override rate's 95% Wilson interval is below `target_override_rate`. Under sampling a new item
//! is still reviewed with probability `sampling_rate` (drawn from its id, so a retried submission
//! draws the same); the others are approved at once with an `ItemAutoApproved` event naming the
//! policy and the measurement. High-risk items are always reviewed (the domain refuses otherwise).
//! A measurement whose upper bound reaches the target puts the slice back under full review from
//! the next submission. Estimates count human decisions only: the sampled items, never the
//! automatic approvals.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use projections::analytics::ItemRow;
use projections::analytics::accuracy::{
    ACCURACY_MEASURED, ACCURACY_STREAM, Accuracy, AccuracyMeasured, measure,
};
use projections::event::NewEvent;
use projections::item::{AutoApproval, Risk, Submission};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::lease::Lease;
use crate::log::{EventLog, ExpectedVersion};
use crate::projector::Projector;

/// One kind's policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewPolicy {
    pub kind: String,
    /// The override rate below which (upper bound of the interval) review may be sampled.
    pub target_override_rate: f64,
    /// Human decisions a measurement needs before sampling may start.
    pub minimum_sample: u64,
    /// The share of items still reviewed under sampling.
    pub sampling_rate: f64,
}

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default = "default_window_days")]
    window_days: u32,
    #[serde(default = "default_every")]
    measure_every_seconds: u64,
    policies: Vec<ReviewPolicy>,
}

fn default_window_days() -> u32 {
    30
}

fn default_every() -> u64 {
    300
}

/// Every configured policy, and how measurements are taken.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewPolicies {
    by_kind: HashMap<String, ReviewPolicy>,
    /// The decisions a measurement counts: the last `window`.
    pub window: chrono::Duration,
    /// How often the server measures.
    pub every: Duration,
}

impl Default for ReviewPolicies {
    /// No policy: every item is reviewed; slices are still measured (every 5 minutes, 30 days).
    fn default() -> Self {
        ReviewPolicies {
            by_kind: HashMap::new(),
            window: chrono::Duration::days(30),
            every: Duration::from_secs(300),
        }
    }
}

/// Where a new item goes, and why.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// No policy for its kind, no measurement, or not accurate enough: reviewed.
    Review,
    /// Its slice is under sampling and it was drawn for review (or it is high-risk).
    Sampled,
    /// Approved at once, on this evidence.
    AutoApprove(Arc<AutoApproval>),
}

impl ReviewPolicies {
    /// Policies from JSON text, checked: a policy that is silently ignored would be a hole in
    /// review, so any mistake is an error naming it.
    pub fn parse(text: &str) -> anyhow::Result<ReviewPolicies> {
        let file: PolicyFile = serde_json::from_str(text).context("reading review policies")?;
        anyhow::ensure!(
            (1..=3660).contains(&file.window_days),
            "window_days must be between 1 and 3660"
        );
        anyhow::ensure!(
            file.measure_every_seconds >= 1,
            "measure_every_seconds must be at least 1"
        );
        let mut by_kind = HashMap::new();
        for policy in file.policies {
            let kind = &policy.kind;
            anyhow::ensure!(
                (0.0..=1.0).contains(&policy.target_override_rate),
                "policy {kind:?}: target_override_rate must be within 0..=1"
            );
            anyhow::ensure!(
                (0.0..=1.0).contains(&policy.sampling_rate),
                "policy {kind:?}: sampling_rate must be within 0..=1"
            );
            anyhow::ensure!(
                policy.minimum_sample >= 1,
                "policy {kind:?}: minimum_sample must be at least 1"
            );
            if by_kind.insert(kind.clone(), policy.clone()).is_some() {
                anyhow::bail!("two review policies for kind {kind:?}");
            }
        }
        Ok(ReviewPolicies {
            by_kind,
            window: chrono::Duration::days(i64::from(file.window_days)),
            every: Duration::from_secs(file.measure_every_seconds),
        })
    }

    pub fn read_file(path: &Path) -> anyhow::Result<ReviewPolicies> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        ReviewPolicies::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    pub fn policy(&self, kind: &str) -> Option<&ReviewPolicy> {
        self.by_kind.get(kind)
    }

    /// Whether a measurement puts its slice under sampling by `policy`.
    pub fn sampling(policy: &ReviewPolicy, measured: &AccuracyMeasured) -> bool {
        measured.decided >= policy.minimum_sample
            && measured.override_rate_high < policy.target_override_rate
    }

    /// Where `submission` goes, given the latest measurements.
    pub fn route(&self, accuracy: &Accuracy, submission: &Submission) -> Route {
        let Some(policy) = self.policy(&submission.kind) else {
            return Route::Review;
        };
        let Some((measurement_id, measured)) = accuracy.latest(
            &submission.model.name,
            &submission.model.version,
            &submission.kind,
        ) else {
            return Route::Review;
        };
        if !Self::sampling(policy, measured) {
            return Route::Review;
        }
        if submission.risk == Risk::High || draw(submission.item_id) < policy.sampling_rate {
            return Route::Sampled;
        }
        Route::AutoApprove(Arc::new(AutoApproval {
            policy: policy.kind.clone(),
            measurement_id: *measurement_id,
            override_rate: measured.override_rate,
            override_rate_high: measured.override_rate_high,
            sample: measured.decided,
            target: policy.target_override_rate,
            sampling_rate: policy.sampling_rate,
        }))
    }
}

/// A number in [0, 1) drawn from an item's id: the same for a retried submission, uniform over ids.
pub fn draw(item_id: Uuid) -> f64 {
    let digest = Sha256::digest(item_id.as_bytes());
    let bits = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Measures every slice over the window ending `now` and appends one `AccuracyMeasured` per
/// slice whose counts changed since its latest measurement. Returns what it appended.
pub async fn publish(
    log: &dyn EventLog,
    rows: &[ItemRow],
    accuracy: &Accuracy,
    window: chrono::Duration,
    now: DateTime<Utc>,
    actor: &str,
) -> anyhow::Result<Vec<AccuracyMeasured>> {
    // Decisions up to and including `now`.
    let until = now + chrono::Duration::microseconds(1);
    let fresh: Vec<AccuracyMeasured> = measure(rows, until - window, until, now)
        .into_iter()
        .filter(|measured| {
            accuracy
                .latest(&measured.model, &measured.model_version, &measured.kind)
                .is_none_or(|(_, latest)| !latest.same_counts(measured))
        })
        .collect();
    if fresh.is_empty() {
        return Ok(fresh);
    }
    let events = fresh
        .iter()
        .map(|measured| {
            Ok(NewEvent {
                id: Uuid::now_v7(),
                event_type: ACCURACY_MEASURED.to_owned(),
                schema_version: 1,
                data: serde_json::value::to_raw_value(measured)?,
                actor: actor.to_owned(),
                causation_id: None,
                correlation_id: None,
            })
        })
        .collect::<Result<Vec<_>, serde_json::Error>>()?;
    log.append(ACCURACY_STREAM, ExpectedVersion::Any, events)
        .await
        .context("appending the measurements")?;
    for measured in &fresh {
        tracing::info!(
            model = %measured.model,
            version = %measured.model_version,
            kind = %measured.kind,
            decided = measured.decided,
            override_rate = measured.override_rate,
            high = measured.override_rate_high,
            "measured a slice's accuracy"
        );
    }
    Ok(fresh)
}

/// Measures from the server's read models, as the job and `POST /v1/analytics/accuracy` do.
pub async fn publish_from(
    log: &dyn EventLog,
    projector: &Projector,
    policies: &ReviewPolicies,
    now: DateTime<Utc>,
    actor: &str,
) -> anyhow::Result<Vec<AccuracyMeasured>> {
    let (rows, accuracy) = {
        let models = projector.read();
        (
            crate::analytics::rows_of_board(&models.board, false),
            models.accuracy.clone(),
        )
    };
    publish(log, &rows, &accuracy, policies.window, now, actor).await
}

/// Runs the measurement job until the process ends, every `policies.every`, on the server that
/// holds `lease`.
pub async fn run(
    log: Arc<dyn EventLog>,
    projector: Projector,
    clock: crate::clock::Clock,
    policies: Arc<ReviewPolicies>,
    lease: Lease,
) {
    loop {
        tokio::time::sleep(policies.every).await;
        if !projector.is_following() {
            return;
        }
        if !lease.hold(log.as_ref()).await {
            continue;
        }
        if let Err(error) =
            publish_from(log.as_ref(), &projector, &policies, clock.now(), "system").await
        {
            tracing::warn!(%error, "could not measure accuracy; will retry");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_refuse_mistakes() {
        let policies = ReviewPolicies::parse(
            r#"{"window_days": 7, "policies": [{"kind": "k", "target_override_rate": 0.1,
                "minimum_sample": 30, "sampling_rate": 0.25}]}"#,
        )
        .unwrap();
        assert_eq!(policies.window, chrono::Duration::days(7));
        assert_eq!(policies.policy("k").unwrap().minimum_sample, 30);
        for bad in [
            r#"{"policies": [{"kind": "k", "target_override_rate": 1.5, "minimum_sample": 1, "sampling_rate": 0.1}]}"#,
            r#"{"policies": [{"kind": "k", "target_override_rate": 0.1, "minimum_sample": 0, "sampling_rate": 0.1}]}"#,
            r#"{"policies": [{"kind": "k", "target_override_rate": 0.1, "minimum_sample": 1, "sampling_rate": 0.1, "colour": 1}]}"#,
            r#"{"policies": [{"kind": "k", "target_override_rate": 0.1, "minimum_sample": 1, "sampling_rate": 0.1},
                             {"kind": "k", "target_override_rate": 0.2, "minimum_sample": 1, "sampling_rate": 0.1}]}"#,
        ] {
            assert!(ReviewPolicies::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn draws_are_uniform_enough_and_stable() {
        let ids: Vec<Uuid> = (0..10_000u128).map(Uuid::from_u128).collect();
        let below = ids.iter().filter(|id| draw(**id) < 0.25).count();
        assert!((2_300..2_700).contains(&below), "{below}");
        assert_eq!(draw(ids[7]), draw(ids[7]));
    }
}
