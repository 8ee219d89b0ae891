//! Compliance bundles: a self-contained JSON file of events (in their canonical bytes), their
//! inclusion proofs, the checkpoint they lead to, its verifier key, and a summary a person can
//! read. `ledger audit export` writes one; `ledger audit verify-bundle` (here) and
//! `tools/verify_bundle.py` (without this code) verify one offline.
//!
//! Verifying a bundle: the checkpoint's signature with the key (the one given, else the one in
//! the bundle, said loudly); then, for every event: the SHA-256 of its canonical bytes, its leaf
//! hash, every step of its inclusion proof up to the checkpoint's root, and each field shown
//! beside the bytes equal to the field decoded from them; finally the summary equal to the one
//! recomputed from the verified events.

use super::Verifier;
use super::record::{CheckpointView, DecisionSummary, ProvenEvent};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use projections::audit::Audit;
use projections::event::{RecordedEvent, decode_payload, sha256};
use projections::merkle::{leaf_hash, verify_inclusion};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The bundle format's name and version, its first field.
pub const FORMAT: &str = "approval-ledger-bundle/1";

/// What a bundle covers and says, for a person to read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum Summary {
    /// One item's decision.
    Item { decision: Value },
    /// Every event recorded in `[from, to)`, and the decisions among them.
    Range {
        from: String,
        to: String,
        events: usize,
        decisions: Vec<Value>,
    },
}

/// A compliance bundle.
#[derive(Debug, Clone, Serialize)]
pub struct Bundle {
    pub format: &'static str,
    pub summary: Summary,
    /// The key that verifies the checkpoint: compare it with the one the ledger's operator
    /// published (`ledger audit public-key`) before trusting it.
    pub verifier_key: String,
    pub checkpoint: CheckpointView,
    pub events: Vec<ProvenEvent>,
    /// How to verify this file.
    pub how_to_verify: &'static str,
}

pub const HOW_TO_VERIFY: &str = "ledger audit verify-bundle FILE --key KEY, or python3 tools/verify_bundle.py FILE --key KEY (Python's hashlib and the cryptography package): checks the checkpoint's Ed25519 signature, each event's SHA-256 and inclusion proof, each shown field against the canonical bytes, and the summary against the events.";

/// The decisions among `events` (from `ItemDecided` events), for a range's summary.
fn decisions(events: &[RecordedEvent]) -> Vec<Value> {
    events
        .iter()
        .filter(|event| event.event_type == "ItemDecided")
        .filter_map(|event| {
            let data: Value = serde_json::from_str(&event.data).ok()?;
            Some(serde_json::json!({
                "item_id": event.stream.strip_prefix("item-").unwrap_or(&event.stream),
                "position": event.position,
                "outcome": data.get("outcome"),
                "decided_by": data.get("decided_by"),
                "decided_at": data.get("decided_at"),
            }))
        })
        .collect()
}

/// A bundle of `events` proven under `audit`'s latest checkpoint, which must cover them all.
pub fn make(
    summary: Summary,
    events: &[RecordedEvent],
    audit: &Audit,
    verifier_key: &str,
) -> anyhow::Result<Bundle> {
    let latest = audit
        .latest()
        .ok_or_else(|| anyhow::anyhow!("the ledger has no checkpoint yet: run `ledger audit checkpoint` (or wait for the server's next one) and export again"))?;
    let tree_size = latest.checkpoint.tree_size;
    if let Some(newer) = events.iter().find(|event| event.position >= tree_size) {
        anyhow::bail!(
            "event {} (position {}) is newer than the latest checkpoint (tree size {tree_size}): run `ledger audit checkpoint` (or wait for the server's next one) and export again",
            newer.id,
            newer.position
        );
    }
    Ok(Bundle {
        format: FORMAT,
        summary,
        verifier_key: verifier_key.to_owned(),
        checkpoint: CheckpointView::from(latest),
        events: events
            .iter()
            .map(|event| ProvenEvent::new(event, &audit.tree, Some(tree_size)))
            .collect(),
        how_to_verify: HOW_TO_VERIFY,
    })
}

/// The bundle of one item's events.
pub fn of_item(
    events: &[RecordedEvent],
    audit: &Audit,
    verifier_key: &str,
) -> anyhow::Result<Bundle> {
    anyhow::ensure!(!events.is_empty(), "no such item");
    let decision = serde_json::to_value(DecisionSummary::of(events))?;
    make(Summary::Item { decision }, events, audit, verifier_key)
}

/// The bundle of the events recorded in `[from, to)`.
pub fn of_range(
    events: &[RecordedEvent],
    from: &str,
    to: &str,
    audit: &Audit,
    verifier_key: &str,
) -> anyhow::Result<Bundle> {
    let summary = Summary::Range {
        from: from.to_owned(),
        to: to.to_owned(),
        events: events.len(),
        decisions: decisions(events),
    };
    make(summary, events, audit, verifier_key)
}

/// What verifying a bundle found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleReport {
    pub events: usize,
    pub tree_size: u64,
    pub origin: String,
    /// The key the checkpoint verified with, and whether it was given (else the bundle's own).
    pub verifier_key: String,
    pub key_given: bool,
}

/// The event a bundle entry holds, decoded from its canonical bytes, after checking that every
/// field shown beside the bytes is the decoded one.
fn check_event(
    shown: ProvenEventIn,
    tree_size: u64,
    root: &[u8; 32],
) -> Result<RecordedEvent, String> {
    let canonical = BASE64
        .decode(&shown.canonical)
        .map_err(|_| "canonical bytes are not base64".to_owned())?;
    let hash = sha256(&canonical);
    if hex::encode(hash) != shown.event_hash {
        return Err("event_hash is not the SHA-256 of its canonical bytes".into());
    }
    if hex::encode(leaf_hash(&hash)) != shown.leaf_hash {
        return Err("leaf_hash is not SHA-256(0x00 || event hash)".into());
    }
    let fields = decode_payload(&canonical)
        .map_err(|error| format!("canonical bytes do not decode: {error}"))?;
    let event = fields.to_recorded(shown.position, hash);
    let data_shown = shown.data.get();
    let matches = event.stream == shown.stream
        && event.version == shown.version
        && event.id == shown.id
        && event.event_type == shown.event_type
        && event.schema_version == shown.schema_version
        && event.recorded_at == shown.recorded_at
        && event.actor == shown.actor
        && event.causation_id == shown.causation_id
        && event.correlation_id == shown.correlation_id
        && event.data == data_shown;
    if !matches {
        return Err("a field shown beside the canonical bytes is not the one they hold".into());
    }
    let proof = shown
        .inclusion_proof
        .ok_or("no inclusion proof")?
        .iter()
        .map(|hash| {
            hex::decode(hash)
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .ok_or_else(|| "a proof hash is not 64 hex digits".to_owned())
        })
        .collect::<Result<Vec<_>, _>>()?;
    verify_inclusion(&leaf_hash(&hash), shown.position, tree_size, &proof, root).map_err(
        |error| format!("the inclusion proof does not lead to the checkpoint's root ({error})"),
    )?;
    Ok(event)
}

/// A bundle as read back: events keep their data as the exact text of the file.
#[derive(Deserialize)]
struct BundleIn {
    format: String,
    verifier_key: Option<String>,
    checkpoint: Value,
    summary: Value,
    events: Vec<ProvenEventIn>,
}

/// A bundle's event as read back (the fields a verifier compares).
#[derive(Deserialize)]
struct ProvenEventIn {
    position: u64,
    stream: String,
    version: u64,
    id: uuid::Uuid,
    #[serde(rename = "type")]
    event_type: String,
    schema_version: u32,
    #[serde(with = "projections::time::rfc3339")]
    recorded_at: chrono::DateTime<chrono::Utc>,
    actor: String,
    causation_id: Option<uuid::Uuid>,
    correlation_id: Option<uuid::Uuid>,
    data: Box<serde_json::value::RawValue>,
    event_hash: String,
    leaf_hash: String,
    canonical: String,
    inclusion_proof: Option<Vec<String>>,
}

/// Verifies a bundle's text, with the verifier key `key` if given (else the bundle's own).
pub fn verify(text: &str, key: Option<&str>) -> Result<BundleReport, String> {
    let bundle: BundleIn =
        serde_json::from_str(text).map_err(|error| format!("not a bundle: {error}"))?;
    if bundle.format != FORMAT {
        return Err(format!("not a bundle of format {FORMAT}"));
    }
    let key_given = key.is_some();
    let key = match key {
        Some(key) => key.to_owned(),
        None => bundle
            .verifier_key
            .clone()
            .ok_or("the bundle has no verifier_key and none was given")?,
    };
    let verifier = Verifier::parse(&key).map_err(|error| error.to_string())?;
    let checkpoint = &bundle.checkpoint;
    let note = checkpoint
        .get("note")
        .and_then(Value::as_str)
        .ok_or("the checkpoint has no note")?;
    let opened = verifier
        .open(note)
        .map_err(|problem| format!("checkpoint: {problem}"))?;
    if checkpoint.get("tree_size").and_then(Value::as_u64) != Some(opened.tree_size)
        || checkpoint.get("root_hash").and_then(Value::as_str)
            != Some(hex::encode(opened.root).as_str())
    {
        return Err("checkpoint: the fields shown are not the ones signed".into());
    }
    let mut events = Vec::with_capacity(bundle.events.len());
    for (index, shown) in bundle.events.into_iter().enumerate() {
        let position = shown.position;
        let event = check_event(shown, opened.tree_size, &opened.root)
            .map_err(|problem| format!("event {index} (position {position}): {problem}"))?;
        events.push(event);
    }
    let summary: Summary =
        serde_json::from_value(bundle.summary).map_err(|error| format!("summary: {error}"))?;
    let recomputed = match &summary {
        Summary::Item { .. } => Summary::Item {
            decision: serde_json::to_value(DecisionSummary::of(&events))
                .map_err(|error| error.to_string())?,
        },
        Summary::Range { from, to, .. } => Summary::Range {
            from: from.clone(),
            to: to.clone(),
            events: events.len(),
            decisions: decisions(&events),
        },
    };
    if summary != recomputed {
        return Err("summary: it does not say what the verified events say".into());
    }
    Ok(BundleReport {
        events: events.len(),
        tree_size: opened.tree_size,
        origin: opened.origin,
        verifier_key: key,
        key_given,
    })
}
