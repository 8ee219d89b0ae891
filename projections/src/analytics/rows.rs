//! The analytics tables: one row per item ([`ItemRow`]), per event ([`EventRow`]) and per
//! reviewer's judgment of the AI's output ([`VerdictRow`]), folded from item states, and
//! [`RowFold`], which folds them from the log's events in one pass keeping only unfinished items.
//!
//! Every measure (`analytics::measures`) is computed from item rows, whether the rows come from
//! the server's review board or from a streaming pass over the log, so that the CLI, the HTTP API
//! and the Parquet files (`docs/analytics-tables.md`) cannot disagree.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::item::{ItemEvent, ItemState, ItemStatus, Name, Outcome, Risk};

/// A reviewer's judgment of the AI's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Approved the output as the AI (or its submitter) wrote it.
    Accept,
    /// Edited or rejected it.
    Override,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Override => "override",
        }
    }
}

/// One reviewer's verdict on one item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerdictRow {
    pub reviewer: Name,
    pub verdict: Verdict,
    pub at: DateTime<Utc>,
}

/// One item as the analytics see it: a row of `items.parquet`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemRow {
    pub item_id: Uuid,
    pub queue: Name,
    pub kind: Name,
    pub model: Name,
    pub model_version: Name,
    pub confidence: Option<f64>,
    pub risk: Risk,
    pub priority: i32,
    pub submitted_by: Name,
    pub status: ItemStatus,
    pub outcome: Option<Outcome>,
    /// Who decided it: the approvers in order, or the rejecter.
    pub reviewers: Vec<Name>,
    pub reject_reason: Option<String>,
    /// Normalized edit distance between the AI's output and the human's version, in [0, 1].
    pub edit_magnitude: Option<f64>,
    pub revisions: u32,
    pub change_requests: u32,
    pub escalations: u32,
    pub approvals: u32,
    pub required_approvals: u32,
    pub submitted_at: DateTime<Utc>,
    pub first_claimed_at: Option<DateTime<Utc>>,
    pub decided_at: Option<DateTime<Utc>>,
    pub verdicts: Vec<VerdictRow>,
}

impl ItemRow {
    /// The row of a submitted item.
    pub fn of(item: &ItemState) -> ItemRow {
        ItemRow::of_item(item, true)
    }

    /// The row of a submitted item, its edit magnitude left out unless `edit_magnitude` (an edit
    /// distance costs more than the rest of the row together).
    pub fn of_item(item: &ItemState, with_edit_magnitude: bool) -> ItemRow {
        let decision = item.decision.as_deref();
        let edit_magnitude = match (decision, item.edits.last()) {
            (Some(decision), Some(_))
                if with_edit_magnitude && decision.outcome == Outcome::EditedAndApproved =>
            {
                // The AI's side is the submitter's revision the reviewers edited.
                let ai = item
                    .revisions
                    .iter()
                    .rfind(|revision| revision.revision == decision.revision)
                    .or(item.revisions.last());
                match (ai, &decision.final_output) {
                    (Some(ai), Some(human)) => {
                        Some(edit_magnitude(ai.output.as_str(), human.as_str()))
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        ItemRow {
            item_id: item.id,
            queue: item.queue.clone(),
            kind: item.kind.clone(),
            model: item.model.name.clone(),
            model_version: item.model.version.clone(),
            confidence: item.confidence,
            risk: item.risk,
            priority: item.priority,
            submitted_by: item.submitted_by.clone(),
            status: item.status,
            outcome: decision.map(|decision| decision.outcome),
            reviewers: decision
                .map(|decision| {
                    decision
                        .decided_by
                        .iter()
                        .map(|name| Name::from(name.as_str()))
                        .collect()
                })
                .unwrap_or_default(),
            reject_reason: item
                .rejection
                .as_ref()
                .map(|rejection| rejection.reason.clone()),
            edit_magnitude,
            revisions: item.revision,
            change_requests: item.change_requests.len() as u32,
            escalations: item.escalations.len() as u32,
            approvals: item.approvals.len() as u32,
            required_approvals: item.required_approvals,
            submitted_at: item.submitted_at,
            first_claimed_at: item.first_claimed_at,
            decided_at: decision.map(|decision| decision.decided_at),
            verdicts: verdicts_of(item),
        }
    }

    /// Decided by reviewers: not on expiry, not automatically.
    pub fn human_decided(&self) -> bool {
        matches!(
            self.outcome,
            Some(Outcome::Approved | Outcome::EditedAndApproved | Outcome::Rejected)
        )
    }

    /// Edited or rejected; `None` unless [`ItemRow::human_decided`].
    pub fn overridden(&self) -> Option<bool> {
        self.human_decided()
            .then(|| self.outcome != Some(Outcome::Approved))
    }

    pub fn expired(&self) -> bool {
        matches!(
            self.outcome,
            Some(Outcome::ApprovedOnExpiry | Outcome::RejectedOnExpiry)
        )
    }

    pub fn withdrawn(&self) -> bool {
        self.status == ItemStatus::Withdrawn
    }

    pub fn time_to_claim(&self) -> Option<f64> {
        self.first_claimed_at
            .map(|at| seconds(at - self.submitted_at))
    }

    pub fn time_to_decision(&self) -> Option<f64> {
        self.decided_at.map(|at| seconds(at - self.submitted_at))
    }
}

fn seconds(duration: chrono::Duration) -> f64 {
    duration.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6
}

/// The reviewers' verdicts on the AI's output, first per reviewer, in time order: approvals of
/// content no reviewer edited accept it; edits and the rejection override it.
fn verdicts_of(item: &ItemState) -> Vec<VerdictRow> {
    let mut all: Vec<VerdictRow> = Vec::new();
    if item.output_edited_by.is_none() {
        all.extend(item.approvals.iter().map(|approval| VerdictRow {
            reviewer: approval.reviewer.clone(),
            verdict: Verdict::Accept,
            at: approval.at,
        }));
    }
    all.extend(item.edits.iter().map(|edit| VerdictRow {
        reviewer: edit.reviewer.as_str().into(),
        verdict: Verdict::Override,
        at: edit.at,
    }));
    if let Some(rejection) = &item.rejection {
        all.push(VerdictRow {
            reviewer: rejection.reviewer.as_str().into(),
            verdict: Verdict::Override,
            at: rejection.at,
        });
    }
    all.sort_by_key(|verdict| verdict.at);
    let mut seen = HashSet::new();
    all.retain(|verdict| seen.insert(verdict.reviewer.clone()));
    all
}

/// The normalized edit distance between two outputs (JSON texts), in [0, 1]: between two
/// strings, the Levenshtein distance over characters divided by the longer length; otherwise
/// the mean over the union of their leaves (by JSON path) of each leaf's distance: strings as
/// above, numbers by their relative difference, anything else 0 when equal and 1 when not
/// (a leaf on one side only counts 1).
pub fn edit_magnitude(before: &str, after: &str) -> f64 {
    let (Ok(before), Ok(after)) = (
        serde_json::from_str::<Value>(before),
        serde_json::from_str::<Value>(after),
    ) else {
        return text_distance(before, after);
    };
    let mut left = BTreeMap::new();
    let mut right = BTreeMap::new();
    leaves(&before, String::new(), &mut left);
    leaves(&after, String::new(), &mut right);
    let paths: std::collections::BTreeSet<&String> = left.keys().chain(right.keys()).collect();
    if paths.is_empty() {
        return 0.0;
    }
    let total: f64 = paths
        .iter()
        .map(|path| leaf_distance(left.get(*path).copied(), right.get(*path).copied()))
        .sum();
    total / paths.len() as f64
}

fn leaves<'a>(value: &'a Value, path: String, into: &mut BTreeMap<String, &'a Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, value) in map {
                leaves(
                    value,
                    format!("{path}/{}", key.replace('~', "~0").replace('/', "~1")),
                    into,
                );
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (index, value) in items.iter().enumerate() {
                leaves(value, format!("{path}/{index}"), into);
            }
        }
        leaf => {
            into.insert(path, leaf);
        }
    }
}

fn leaf_distance(left: Option<&Value>, right: Option<&Value>) -> f64 {
    match (left, right) {
        (Some(Value::String(left)), Some(Value::String(right))) => text_distance(left, right),
        (Some(Value::Number(left)), Some(Value::Number(right))) => {
            let (left, right) = (left.as_f64().unwrap_or(0.0), right.as_f64().unwrap_or(0.0));
            let scale = left.abs().max(right.abs());
            if scale == 0.0 {
                0.0
            } else {
                ((left - right).abs() / scale).min(1.0)
            }
        }
        (Some(left), Some(right)) if left == right => 0.0,
        _ => 1.0,
    }
}

/// The Levenshtein distance over characters divided by the longer length (0 for two empty
/// strings). A common prefix and suffix change no distance, so they are cut before the
/// quadratic part: a reviewer's edit usually changes a few words of a long text.
fn text_distance(left: &str, right: &str) -> f64 {
    let longer = left.chars().count().max(right.chars().count());
    if longer == 0 {
        return 0.0;
    }
    let prefix: usize = left
        .chars()
        .zip(right.chars())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a.len_utf8())
        .sum();
    let (left, right) = (&left[prefix..], &right[prefix..]);
    let suffix: usize = left
        .chars()
        .rev()
        .zip(right.chars().rev())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a.len_utf8())
        .sum();
    let (left, right) = (&left[..left.len() - suffix], &right[..right.len() - suffix]);
    strsim::levenshtein(left, right) as f64 / longer as f64
}

/// An item event as far as the rows of decisions read it (override rates, drift, calibration):
/// an `ItemSubmitted` without its output, context and hashes, which serde_json skims over
/// without checking, copying or parsing them (they are most of a submission's bytes, and
/// parsing them was a fifth of reading a log for its override rates); any other event whole.
/// `json` is the stored data, not yet checked as UTF-8: what is read is checked.
pub fn decision_event_of_json(
    event_type: &str,
    json: &[u8],
) -> Result<ItemEvent, crate::item::EventDecodingError> {
    use crate::item::{EventDecodingError, ItemSubmitted, ModelIdentity};
    /// The fields of [`ItemSubmitted`] a decision's row reads; the others are left unread.
    #[derive(serde::Deserialize)]
    struct SubmittedFacts {
        item_id: Uuid,
        queue: String,
        kind: String,
        model: ModelIdentity,
        revision: u32,
        confidence: Option<f64>,
        risk: Risk,
        priority: i32,
        #[serde(default, with = "crate::time::rfc3339_option")]
        due_at: Option<DateTime<Utc>>,
        required_approvals: u32,
        submitted_by: String,
        #[serde(with = "crate::time::rfc3339")]
        submitted_at: DateTime<Utc>,
    }
    if event_type != "ItemSubmitted" {
        return ItemEvent::from_type_and_slice(event_type, json);
    }
    let facts: SubmittedFacts =
        serde_json::from_slice(json).map_err(|source| EventDecodingError::MalformedData {
            event_type: "ItemSubmitted",
            source: std::sync::Arc::new(source),
        })?;
    Ok(ItemEvent::ItemSubmitted(ItemSubmitted {
        item_id: facts.item_id,
        queue: facts.queue,
        kind: facts.kind,
        model: facts.model,
        revision: facts.revision,
        output: Default::default(),
        output_hash: Default::default(),
        context: Default::default(),
        confidence: facts.confidence,
        risk: facts.risk,
        priority: facts.priority,
        due_at: facts.due_at,
        required_approvals: facts.required_approvals,
        on_expiry: None,
        callback_url: None,
        submitted_by: facts.submitted_by,
        submitted_at: facts.submitted_at,
        request_fingerprint: None,
    }))
}

/// One event of the log: a row of `events.parquet`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRow {
    pub position: u64,
    /// The stream, unless it is the item's (`item-<item_id>`): ten million of those would be as
    /// many allocations for a name the item id already gives.
    pub stream: Option<String>,
    pub item_id: Option<Uuid>,
    pub event_type: Name,
    /// Who caused it (the envelope's actor).
    pub actor: Name,
    /// When it happened: an item event's own time, else when it was recorded.
    pub at: DateTime<Utc>,
    pub queue: Option<Name>,
    pub kind: Option<Name>,
}

/// Folds item rows from the log's item events in log order, holding only the items not yet
/// closed: an item's row is made when it is decided or withdrawn (later events, comments only,
/// change nothing the row holds) and its state dropped. A later event of a closed item meets an
/// empty state, which it leaves unsubmitted, so it is dropped too; [`RowFold::keeping_slices`]
/// keeps each closed item's queue and kind, for the rows of those events in the events table.
#[derive(Debug, Default)]
pub struct RowFold {
    /// Boxed: a table of whole states would copy every open state each time it grows (a log
    /// written in time order holds many items open at once).
    open: HashMap<Uuid, Box<ItemState>>,
    /// Closed items' queue and kind, when kept.
    closed: Option<ClosedSlices>,
    rows: Vec<ItemRow>,
    /// Whether rows leave out the edit magnitude.
    without_edit_magnitude: bool,
}

/// Closed items' queue and kind: each item names its pair by index, so that an entry of the
/// table is 20 bytes rather than two names' 48 (a ledger has few queues and kinds, and millions
/// of items; the pairs are few enough to be found by a walk).
#[derive(Debug, Default)]
struct ClosedSlices {
    items: HashMap<Uuid, u32>,
    slices: Vec<(Name, Name)>,
}

impl ClosedSlices {
    fn get(&self, item_id: Uuid) -> Option<(Name, Name)> {
        let &index = self.items.get(&item_id)?;
        Some(self.slices[index as usize].clone())
    }

    fn insert(&mut self, item_id: Uuid, slice: &(Name, Name)) {
        let index = match self.slices.iter().position(|known| known == slice) {
            Some(index) => index,
            None => {
                self.slices.push(slice.clone());
                self.slices.len() - 1
            }
        };
        let index = u32::try_from(index).expect("fewer than 2^32 slices");
        self.items.insert(item_id, index);
    }
}

impl RowFold {
    /// A fold that answers the queue and kind of every item event, closed items' included.
    pub fn keeping_slices() -> RowFold {
        RowFold {
            closed: Some(ClosedSlices::default()),
            ..RowFold::default()
        }
    }

    /// Applies one item event; returns the item's queue and kind as of it (for the event row;
    /// `None` for a closed item's unless the fold keeps slices).
    pub fn apply(&mut self, item_id: Uuid, event: &ItemEvent) -> Option<(Name, Name)> {
        if let Some(slice) = self.closed.as_ref().and_then(|closed| closed.get(item_id)) {
            return Some(slice);
        }
        let state = self.open.entry(item_id).or_default();
        state.apply(event);
        if !state.is_submitted() {
            self.open.remove(&item_id);
            return None;
        }
        let slice = (state.queue.clone(), state.kind.clone());
        if state.is_closed() {
            let state = self.open.remove(&item_id).expect("the item is open");
            self.rows
                .push(ItemRow::of_item(&state, !self.without_edit_magnitude));
            if let Some(closed) = &mut self.closed {
                closed.insert(item_id, &slice);
            }
        }
        Some(slice)
    }

    /// Rows without the edit magnitude, for measures that do not read it.
    pub fn without_edit_magnitude(mut self) -> RowFold {
        self.without_edit_magnitude = true;
        self
    }

    /// The rows made so far (of items closed since the last call), taken out of the fold.
    pub fn take_rows(&mut self) -> Vec<ItemRow> {
        std::mem::take(&mut self.rows)
    }

    /// Room for `rows` rows made without growing (growth copies every row made so far).
    pub fn reserve(&mut self, rows: usize) {
        self.rows.reserve(rows);
    }

    /// Room for `items` closed items' slices, when kept, without growing: growing the table
    /// rehashes every entry into fresh pages, which showed as a tenth of an export's time.
    pub fn reserve_closed(&mut self, items: usize) {
        if let Some(closed) = &mut self.closed {
            closed.items.reserve(items);
        }
    }

    /// The rows of every item, in no particular order (the measures group and sort what they
    /// sum, so that any order gives the same numbers to the last bit).
    pub fn finish(mut self) -> Vec<ItemRow> {
        let edit_magnitude = !self.without_edit_magnitude;
        self.rows.extend(
            self.open
                .values()
                .map(|item| ItemRow::of_item(item, edit_magnitude)),
        );
        self.rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_magnitude_of_text_and_json() {
        assert_eq!(edit_magnitude(r#""abc""#, r#""abc""#), 0.0);
        assert!((edit_magnitude(r#""kitten""#, r#""sitting""#) - 3.0 / 7.0).abs() < 1e-12);
        assert_eq!(edit_magnitude(r#""""#, r#""abc""#), 1.0);
        // Two leaves, one changed entirely.
        let before = r#"{"subject": "Hi", "body": "abcd"}"#;
        let after = r#"{"subject": "Hi", "body": "wxyz"}"#;
        assert!((edit_magnitude(before, after) - 0.5).abs() < 1e-12);
        // A number by its relative difference; a leaf added counts 1.
        assert!((edit_magnitude(r#"{"score": 80}"#, r#"{"score": 60}"#) - 0.25).abs() < 1e-12);
        let added = edit_magnitude(r#"{"a": 1}"#, r#"{"a": 1, "b": true}"#);
        assert!((added - 0.5).abs() < 1e-12);
        // Not JSON: compared as text.
        assert!(edit_magnitude("ab", "ac") > 0.0);
        // Cutting the common ends changes no distance, with characters of any width.
        for (left, right) in [
            ("the quick brown fox", "the quick red fox"),
            ("aaaa", "aa"),
            ("abcabc", "abc"),
            ("héllo wörld", "hello world"),
            ("日本語のテキスト", "日本のテキスト"),
            ("", "xyz"),
            ("same", "same"),
        ] {
            let whole = 1.0 - strsim::normalized_levenshtein(left, right);
            assert!(
                (text_distance(left, right) - whole).abs() < 1e-12,
                "{left} / {right}"
            );
        }
    }
}
