//! The review dataset (`ledger export dataset`): one JSON line per decided item, with what the
//! model was given, what it answered, what the humans decided and why, for evaluating or
//! fine-tuning the next model. An edit is also a preference pair: the human's version chosen over
//! the AI's.

use chrono::{DateTime, Utc};
use projections::item::{ItemState, Outcome};
use serde::Serialize;

/// A preference pair: `chosen` (the human's version) over `rejected` (the AI's), given `prompt`.
#[derive(Debug, Clone, Serialize)]
pub struct Preference<'a> {
    pub prompt: &'a projections::json::JsonText,
    pub chosen: &'a projections::json::JsonText,
    pub rejected: &'a projections::json::JsonText,
}

/// One decided item.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetRecord<'a> {
    pub item_id: uuid::Uuid,
    pub queue: &'a str,
    pub kind: &'a str,
    pub model: &'a str,
    pub model_version: &'a str,
    pub confidence: Option<f64>,
    #[serde(with = "projections::time::rfc3339")]
    pub submitted_at: DateTime<Utc>,
    #[serde(with = "projections::time::rfc3339")]
    pub decided_at: DateTime<Utc>,
    /// `approved`, `edited_and_approved`, `rejected`, `approved_on_expiry`, `rejected_on_expiry`.
    pub decision: Outcome,
    pub reviewers: &'a [String],
    /// What the model was given.
    pub context: &'a projections::json::JsonText,
    /// The AI's output last put up for review.
    pub ai_output: &'a projections::json::JsonText,
    /// The output that took effect (`null` when rejected).
    pub final_output: Option<&'a projections::json::JsonText>,
    /// The rejection's reason.
    pub reason: Option<&'a str>,
    /// The humans' notes: edit notes, change requests' instructions, comments, in that order.
    pub notes: Vec<&'a str>,
    /// How many times the submitter revised the output after a change request.
    pub revisions: usize,
    /// For an edited item: the human's version chosen over the AI's.
    pub preference: Option<Preference<'a>>,
}

/// The record of `item`, if it was decided and falls in `[since, until)` by decision time.
pub fn record(
    item: &ItemState,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Option<DatasetRecord<'_>> {
    let decision = item.decision.as_deref()?;
    let at = decision.decided_at;
    if since.is_some_and(|since| at < since) || until.is_some_and(|until| at >= until) {
        return None;
    }
    let ai_output = item
        .revisions
        .last()
        .map(|revision| &revision.output)
        .unwrap_or(&item.output);
    let final_output = decision.final_output.as_ref();
    let preference = match (decision.outcome, final_output) {
        (Outcome::EditedAndApproved, Some(chosen)) => Some(Preference {
            prompt: &item.context,
            chosen,
            rejected: ai_output,
        }),
        _ => None,
    };
    let notes = item
        .edits
        .iter()
        .filter_map(|edit| edit.note.as_deref())
        .chain(
            item.change_requests
                .iter()
                .map(|request| request.instructions.as_str()),
        )
        .chain(item.comments.iter().map(|comment| comment.text.as_str()))
        .collect();
    Some(DatasetRecord {
        item_id: item.id,
        queue: &item.queue,
        kind: &item.kind,
        model: &item.model.name,
        model_version: &item.model.version,
        confidence: item.confidence,
        submitted_at: item.submitted_at,
        decided_at: at,
        decision: decision.outcome,
        reviewers: &decision.decided_by,
        context: &item.context,
        ai_output,
        final_output,
        reason: item
            .rejection
            .as_deref()
            .map(|rejection| rejection.reason.as_str()),
        notes,
        revisions: item.revisions.len().saturating_sub(1),
        preference,
    })
}
