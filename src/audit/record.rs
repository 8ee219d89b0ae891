//! Decision records and proven events: events with their canonical bytes and inclusion proofs
//! under a checkpoint, and the summary of an item's decision (the AI's output, the decision, the
//! human's edit as a diff). The HTTP record (`GET /v1/items/{id}/record`) and compliance bundles
//! (`ledger audit export`) are both made here.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use projections::audit::{Audit, StoredCheckpoint};
use projections::event::RecordedEvent;
use projections::merkle::{MerkleTree, leaf_hash};
use serde::Serialize;
use serde_json::Value;

/// One event, its canonical bytes, and the proof that it is in the checkpoint's tree.
#[derive(Debug, Clone, Serialize)]
pub struct ProvenEvent {
    pub position: u64,
    pub stream: String,
    pub version: u64,
    pub id: uuid::Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: u32,
    #[serde(with = "projections::time::rfc3339")]
    pub recorded_at: chrono::DateTime<chrono::Utc>,
    pub actor: String,
    pub causation_id: Option<uuid::Uuid>,
    pub correlation_id: Option<uuid::Uuid>,
    /// The event's data (the JSON text the log holds, as a value).
    pub data: Box<serde_json::value::RawValue>,
    /// SHA-256 of `canonical`, hex.
    pub event_hash: String,
    /// SHA-256(0x00 || event hash), hex: the Merkle leaf.
    pub leaf_hash: String,
    /// The canonical payload (`docs/ledger-format.md`), base64: what the hashes are of.
    pub canonical: String,
    /// The audit path to the checkpoint's root (hex, from the leaf's sibling up); `null` when the
    /// event came after the checkpoint.
    pub inclusion_proof: Option<Vec<String>>,
}

impl ProvenEvent {
    /// `event` with its proof in `tree` up to `tree_size` (none when it is not covered).
    pub fn new(event: &RecordedEvent, tree: &MerkleTree, tree_size: Option<u64>) -> ProvenEvent {
        let inclusion_proof = tree_size
            .filter(|&size| event.position < size)
            .and_then(|size| tree.inclusion_proof(event.position, size).ok())
            .map(|path| path.iter().map(hex::encode).collect());
        ProvenEvent {
            position: event.position,
            stream: event.stream.clone(),
            version: event.version,
            id: event.id,
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            recorded_at: event.recorded_at,
            actor: event.actor.clone(),
            causation_id: event.causation_id,
            correlation_id: event.correlation_id,
            // The log holds JSON text (checked when it was appended and by every verifier).
            data: serde_json::value::RawValue::from_string(event.data.clone())
                .unwrap_or_else(|_| serde_json::value::to_raw_value(&Value::Null).expect("null")),
            event_hash: hex::encode(event.hash),
            leaf_hash: hex::encode(leaf_hash(&event.hash)),
            canonical: BASE64.encode(event.canonical_bytes()),
            inclusion_proof,
        }
    }
}

/// A checkpoint as records and bundles carry it.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointView {
    pub origin: String,
    pub tree_size: u64,
    pub root_hash: String,
    /// The signed note: what a verifier checks.
    pub note: String,
    /// Where the checkpoint's own event is in the log, and when it was stored.
    pub position: u64,
    #[serde(with = "projections::time::rfc3339")]
    pub recorded_at: chrono::DateTime<chrono::Utc>,
}

impl From<&StoredCheckpoint> for CheckpointView {
    fn from(stored: &StoredCheckpoint) -> CheckpointView {
        CheckpointView {
            origin: stored.checkpoint.origin.clone(),
            tree_size: stored.checkpoint.tree_size,
            root_hash: stored.checkpoint.root_hash.clone(),
            note: stored.checkpoint.note.clone(),
            position: stored.position,
            recorded_at: stored.recorded_at,
        }
    }
}

/// What an item's events say was decided, for a person to read.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DecisionSummary {
    pub item_id: Option<String>,
    pub queue: Option<String>,
    pub kind: Option<String>,
    pub submitted_by: Option<String>,
    /// The AI's output last put up for review (as submitted, or as the submitter revised it).
    pub ai_output: Option<Value>,
    /// `approved`, `edited_and_approved`, `rejected`, `approved_on_expiry`, `rejected_on_expiry`;
    /// `null` while undecided (or withdrawn).
    pub outcome: Option<String>,
    pub decided_by: Vec<String>,
    pub decided_at: Option<String>,
    /// The output that took effect (the edited one if a human edited it).
    pub final_output: Option<Value>,
    /// Whether the output that took effect differs from the AI's.
    pub edited: bool,
    /// The human's edit against the AI's output, as a unified diff of the pretty-printed JSON
    /// (derived from `ai_output` and `final_output`, for reading).
    pub edit_diff: Option<String>,
    pub withdrawn: bool,
}

impl DecisionSummary {
    /// The summary of an item's events (in version order). Only fields of the events are used,
    /// so a verifier recomputes it from the verified events (`tools/verify_bundle.py` does).
    pub fn of(events: &[RecordedEvent]) -> DecisionSummary {
        let mut summary = DecisionSummary::default();
        for event in events {
            let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
                continue;
            };
            let text = |key: &str| data.get(key).and_then(Value::as_str).map(str::to_owned);
            match event.event_type.as_str() {
                "ItemSubmitted" => {
                    summary.item_id = text("item_id");
                    summary.queue = text("queue");
                    summary.kind = text("kind");
                    summary.submitted_by = text("submitted_by");
                    summary.ai_output = data.get("output").cloned();
                }
                "OutputRevised" => summary.ai_output = data.get("output").cloned(),
                "ItemWithdrawn" => summary.withdrawn = true,
                "ItemDecided" => {
                    summary.outcome = text("outcome");
                    summary.decided_by = data
                        .get("decided_by")
                        .and_then(Value::as_array)
                        .map(|names| {
                            names
                                .iter()
                                .filter_map(|name| name.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default();
                    summary.decided_at = text("decided_at");
                    summary.final_output =
                        data.get("final_output").cloned().filter(|v| !v.is_null());
                }
                _ => {}
            }
        }
        if let (Some(ai), Some(final_output)) = (&summary.ai_output, &summary.final_output)
            && ai != final_output
        {
            summary.edited = true;
            summary.edit_diff = Some(edit_diff(ai, final_output));
        }
        summary
    }
}

/// A unified diff, line by line, of the two values pretty-printed.
pub fn edit_diff(before: &Value, after: &Value) -> String {
    let before = serde_json::to_string_pretty(before).unwrap_or_default() + "\n";
    let after = serde_json::to_string_pretty(after).unwrap_or_default() + "\n";
    similar::TextDiff::from_lines(&before, &after)
        .unified_diff()
        .context_radius(3)
        .header("ai_output", "final_output")
        .to_string()
}

/// An item's decision record: a compliance bundle of the item's events (the same format as
/// `ledger audit export --item`, so the same verifiers check it), with the events newer than
/// the latest checkpoint included without a proof (`inclusion_proof: null`).
#[derive(Debug, Clone, Serialize)]
pub struct ItemRecord {
    pub format: &'static str,
    pub item_id: uuid::Uuid,
    pub summary: super::bundle::Summary,
    /// The key that verifies the checkpoint (compare it with the key you were given).
    pub verifier_key: String,
    /// The checkpoint the proofs lead to: the latest when the record was made.
    pub checkpoint: Option<CheckpointView>,
    pub events: Vec<ProvenEvent>,
    /// How many of the events the checkpoint covers (the others are newer than it; ask again
    /// after the next checkpoint).
    pub proven: usize,
    pub how_to_verify: &'static str,
}

impl ItemRecord {
    /// The record of an item whose events are `events`, with proofs in `audit`'s tree under its
    /// latest checkpoint.
    pub fn new(
        item_id: uuid::Uuid,
        events: &[RecordedEvent],
        audit: &Audit,
        verifier_key: &str,
    ) -> ItemRecord {
        let latest = audit.latest();
        let tree_size = latest.map(|stored| stored.checkpoint.tree_size);
        let decision =
            serde_json::to_value(DecisionSummary::of(events)).expect("a summary serializes");
        let events: Vec<ProvenEvent> = events
            .iter()
            .map(|event| ProvenEvent::new(event, &audit.tree, tree_size))
            .collect();
        ItemRecord {
            format: super::bundle::FORMAT,
            item_id,
            summary: super::bundle::Summary::Item { decision },
            verifier_key: verifier_key.to_owned(),
            checkpoint: latest.map(CheckpointView::from),
            proven: events
                .iter()
                .filter(|event| event.inclusion_proof.is_some())
                .count(),
            events,
            how_to_verify: super::bundle::HOW_TO_VERIFY,
        }
    }
}
