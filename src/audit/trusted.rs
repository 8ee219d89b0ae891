//! Checking a log against checkpoints an auditor saved earlier (`ledger audit verify
//! --trusted-checkpoint FILE…`): each must verify with the trusted key, and the log must still
//! hold that tree, extended (a consistency proof from it to the log's whole tree, checked step
//! by step). This is what catches an operator who rewrote the log and signed it again with the
//! ledger's own key: the log verifies on its own, but no longer extends what was published.

use super::Verifier;
use crate::log::EventLog;
use projections::audit::Audit;
use projections::merkle::verify_consistency;

/// The audit read model of the whole log, read from the start.
pub async fn audit_of_log(log: &dyn EventLog) -> anyhow::Result<Audit> {
    let mut audit = Audit::default();
    loop {
        let events = log.read_all(audit.tree.size(), 8192).await?;
        if events.is_empty() {
            return Ok(audit);
        }
        for event in &events {
            anyhow::ensure!(
                event.position == audit.tree.size(),
                "the log skips from position {} to {}",
                audit.tree.size(),
                event.position
            );
            audit.apply(event);
        }
    }
}

/// What one trusted checkpoint showed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TrustedCheck {
    /// Where the checkpoint came from (its file).
    pub source: String,
    pub tree_size: Option<u64>,
    /// `None` when the log extends it; otherwise why not.
    pub problem: Option<String>,
}

/// Checks each of `trusted` (a name and the signed note's text) against the log's tree.
pub fn check_trusted(
    audit: &Audit,
    verifier: &Verifier,
    trusted: &[(String, String)],
) -> Vec<TrustedCheck> {
    let size = audit.tree.size();
    let root = audit.root();
    trusted
        .iter()
        .map(|(source, note)| {
            let opened = match verifier.open(note) {
                Ok(opened) => opened,
                Err(problem) => {
                    return TrustedCheck {
                        source: source.clone(),
                        tree_size: None,
                        problem: Some(problem),
                    };
                }
            };
            let problem = if opened.tree_size > size {
                Some(format!(
                    "the log holds {size} events, fewer than the {} this checkpoint covers: events were removed",
                    opened.tree_size
                ))
            } else if opened.tree_size == 0 {
                None
            } else {
                // The proof from the trusted tree to the whole log, checked against the trusted
                // root: it holds only if the log's first events are exactly those of the trusted
                // tree.
                match audit.tree.consistency_proof(opened.tree_size, size) {
                    Ok(proof) => {
                        verify_consistency(opened.tree_size, size, &opened.root, &root, &proof)
                            .err()
                            .map(|_| {
                                format!(
                                    "the log does not extend this checkpoint: its first {} events are not the ones signed then (root {} now, {} then)",
                                    opened.tree_size,
                                    hex::encode(audit.tree.root_at(opened.tree_size).unwrap_or_default()),
                                    hex::encode(opened.root)
                                )
                            })
                    }
                    Err(error) => Some(error.to_string()),
                }
            };
            TrustedCheck {
                source: source.clone(),
                tree_size: Some(opened.tree_size),
                problem,
            }
        })
        .collect()
}

/// A stored checkpoint that does not hold.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckpointDamage {
    /// The position of the checkpoint's event.
    pub position: u64,
    pub tree_size: Option<u64>,
    pub reason: String,
}

impl std::fmt::Display for CheckpointDamage {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "checkpoint at position {}", self.position)?;
        if let Some(size) = self.tree_size {
            write!(formatter, " (tree size {size})")?;
        }
        write!(formatter, ": {}", self.reason)
    }
}

/// Checks the stored checkpoints (`(position, data)` of each event of the checkpoints stream, in
/// order) against `tree`, the Merkle tree recomputed from the log: each one's signature (with
/// `verifier`, when there is one), its fields against its note, its root against the root of the
/// log's first `tree_size` events, and its consistency with the one before (a proof checked step
/// by step). Returns how many held, or the first that does not.
pub fn check_checkpoints(
    tree: &impl projections::merkle::Tree,
    stored: &[(u64, String, String)],
    verifier: Option<&Verifier>,
) -> Result<usize, CheckpointDamage> {
    use projections::audit::{CHECKPOINT_SIGNED, CheckpointSigned};
    let mut previous: Option<(u64, [u8; 32])> = None;
    for (position, event_type, data) in stored {
        let damage = |tree_size: Option<u64>, reason: String| CheckpointDamage {
            position: *position,
            tree_size,
            reason,
        };
        if event_type != CHECKPOINT_SIGNED {
            return Err(damage(
                None,
                format!("the checkpoints stream holds a {event_type} event"),
            ));
        }
        let checkpoint: CheckpointSigned = serde_json::from_str(data)
            .map_err(|error| damage(None, format!("does not decode: {error}")))?;
        let size = checkpoint.tree_size;
        let (note_size, note_root) = match verifier {
            Some(verifier) => verifier
                .open_stored(&checkpoint)
                .map(|opened| (opened.tree_size, opened.root))
                .map_err(|reason| damage(Some(size), reason))?,
            None => {
                unsigned_fields(&checkpoint.note).map_err(|reason| damage(Some(size), reason))?
            }
        };
        if note_size != size || hex::encode(note_root) != checkpoint.root_hash {
            return Err(damage(
                Some(size),
                "the stored fields do not match the signed note".into(),
            ));
        }
        if size > *position {
            return Err(damage(
                Some(size),
                "it covers events stored after itself".into(),
            ));
        }
        let root = tree
            .root_at(size)
            .map_err(|error| damage(Some(size), error.to_string()))?;
        if root != note_root {
            return Err(damage(
                Some(size),
                format!(
                    "its root {} is not the root of the log's first {size} events ({}): the log was altered after it was signed",
                    hex::encode(note_root),
                    hex::encode(root)
                ),
            ));
        }
        if let Some((previous_size, previous_root)) = previous {
            if size <= previous_size {
                return Err(damage(
                    Some(size),
                    format!(
                        "its tree size is not larger than the previous checkpoint's ({previous_size})"
                    ),
                ));
            }
            let proof = tree
                .consistency_proof(previous_size, size)
                .map_err(|error| damage(Some(size), error.to_string()))?;
            verify_consistency(previous_size, size, &previous_root, &note_root, &proof).map_err(
                |_| {
                    damage(
                        Some(size),
                        format!("it is not consistent with the previous checkpoint (tree size {previous_size})"),
                    )
                },
            )?;
        }
        previous = Some((size, note_root));
    }
    Ok(stored.len())
}

/// The size and root a note's checkpoint states, without checking its signature (no key given).
fn unsigned_fields(note: &str) -> Result<(u64, [u8; 32]), String> {
    let parsed = signed_note::Note::from_bytes(note.as_bytes())
        .map_err(|error| format!("not a signed note: {error}"))?;
    let checkpoint = tlog_tiles::Checkpoint::from_bytes(parsed.text())
        .map_err(|error| format!("the note's text is not a checkpoint: {error}"))?;
    Ok((checkpoint.size(), checkpoint.hash().0))
}
