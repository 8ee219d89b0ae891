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
