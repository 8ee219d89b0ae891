//! The feedback loop's facts: `AccuracyMeasured` events, one per (model, version, kind), with the
//! override rate humans gave that slice over a window, its 95% interval and sample; and the read
//! model holding the latest of each, which review policies read at submission.
//!
//! Only items decided by humans count: auto-approved items never feed the estimate that allowed
//! them (sampled items, which are still reviewed, keep it honest), nor do expiries.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::rows::ItemRow;
use super::{Z_95, in_window, rate, wilson};
use crate::event::RecordedEvent;
use crate::item::Name;

/// The stream the measurements are appended to.
pub const ACCURACY_STREAM: &str = "analytics-accuracy";

/// Their event type.
pub const ACCURACY_MEASURED: &str = "AccuracyMeasured";

/// A slice's measured override rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccuracyMeasured {
    pub model: String,
    pub model_version: String,
    pub kind: String,
    /// The decisions counted: `[window_since, window_until)`.
    #[serde(with = "crate::time::rfc3339")]
    pub window_since: DateTime<Utc>,
    #[serde(with = "crate::time::rfc3339")]
    pub window_until: DateTime<Utc>,
    /// Items decided by humans in the window.
    pub decided: u64,
    /// Of which edited or rejected.
    pub overridden: u64,
    pub override_rate: f64,
    pub override_rate_low: f64,
    pub override_rate_high: f64,
    #[serde(with = "crate::time::rfc3339")]
    pub measured_at: DateTime<Utc>,
}

impl AccuracyMeasured {
    /// Whether it counts the same decisions as `other` (a new measurement would say nothing new).
    pub fn same_counts(&self, other: &AccuracyMeasured) -> bool {
        self.decided == other.decided && self.overridden == other.overridden
    }
}

/// The measurement of every (model, version, kind) with human decisions in `[since, until)`.
pub fn measure(
    rows: &[ItemRow],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<AccuracyMeasured> {
    let mut counts: BTreeMap<(&str, &str, &str), (u64, u64)> = BTreeMap::new();
    for row in rows {
        let (Some(at), Some(overridden)) = (row.decided_at, row.overridden()) else {
            continue;
        };
        if !in_window(at, Some(since), Some(until)) {
            continue;
        }
        let entry = counts
            .entry((&row.model, &row.model_version, &row.kind))
            .or_default();
        entry.0 += 1;
        entry.1 += u64::from(overridden);
    }
    counts
        .into_iter()
        .map(|((model, model_version, kind), (decided, overridden))| {
            let (low, high) = wilson(overridden, decided, Z_95);
            AccuracyMeasured {
                model: model.to_owned(),
                model_version: model_version.to_owned(),
                kind: kind.to_owned(),
                window_since: since,
                window_until: until,
                decided,
                overridden,
                override_rate: rate(overridden, decided),
                override_rate_low: low,
                override_rate_high: high,
                measured_at: now,
            }
        })
        .collect()
}

/// A slice: model, version, kind.
pub type Slice = (Name, Name, Name);

/// The latest measurement of each slice, with its event's id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Accuracy {
    latest: BTreeMap<Slice, (Uuid, AccuracyMeasured)>,
}

impl Accuracy {
    /// Applies an event of any stream; only `AccuracyMeasured` of [`ACCURACY_STREAM`] counts.
    pub fn apply(&mut self, event: &RecordedEvent) -> Result<(), serde_json::Error> {
        if event.stream != ACCURACY_STREAM || event.event_type != ACCURACY_MEASURED {
            return Ok(());
        }
        let measured: AccuracyMeasured = serde_json::from_str(&event.data)?;
        let slice = (
            measured.model.as_str().into(),
            measured.model_version.as_str().into(),
            measured.kind.as_str().into(),
        );
        self.latest.insert(slice, (event.id, measured));
        Ok(())
    }

    /// The latest measurement of a slice.
    pub fn latest(
        &self,
        model: &str,
        model_version: &str,
        kind: &str,
    ) -> Option<&(Uuid, AccuracyMeasured)> {
        self.latest
            .get(&(model.into(), model_version.into(), kind.into()))
    }

    /// Every slice's latest measurement, in slice order.
    pub fn all(&self) -> impl Iterator<Item = &(Uuid, AccuracyMeasured)> {
        self.latest.values()
    }
}
