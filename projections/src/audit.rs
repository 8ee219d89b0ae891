//! The audit read model: the Merkle tree over every event of the log, and the signed checkpoints
//! stored in the log's `audit-checkpoints` stream. A pure fold like the others: the shell signs
//! checkpoints and checks signatures; this keeps what was stored, in order.

use crate::event::{Hash, RecordedEvent};
use crate::merkle::MerkleTree;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The stream the signed checkpoints are appended to, one event per checkpoint.
pub const CHECKPOINTS_STREAM: &str = "audit-checkpoints";

/// The type of a checkpoint's event.
pub const CHECKPOINT_SIGNED: &str = "CheckpointSigned";

/// A signed checkpoint as stored: the C2SP signed note, and its fields for readers. The note is
/// the checkpoint; verifiers parse the fields out of it and check they agree with these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointSigned {
    /// The log's name: the checkpoint's first line and the signing key's name.
    pub origin: String,
    /// How many events (leaves) the checkpoint covers: positions `0..tree_size`.
    pub tree_size: u64,
    /// The Merkle root of those events, lowercase hex.
    pub root_hash: String,
    /// The signed note (`tlog-checkpoint` body, a blank line, the signature lines).
    pub note: String,
}

/// A checkpoint as the read model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The position of its event in the log.
    pub position: u64,
    pub recorded_at: DateTime<Utc>,
    pub checkpoint: CheckpointSigned,
}

/// The tree and the checkpoints, as of some position of the log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Audit {
    pub tree: MerkleTree,
    checkpoints: Vec<StoredCheckpoint>,
    /// The position of the last event that is not a checkpoint: a new checkpoint is due only
    /// when such an event is not yet covered (checkpoints do not checkpoint each other forever).
    last_activity: Option<u64>,
    /// The version of the checkpoints stream's last event (what the next checkpoint expects).
    stream_version: Option<u64>,
}

impl Audit {
    /// Applies the next event of the log (in position order, every event).
    pub fn apply(&mut self, event: &RecordedEvent) {
        debug_assert_eq!(event.position, self.tree.size());
        self.tree.push_event(&event.hash);
        if event.stream != CHECKPOINTS_STREAM {
            self.last_activity = Some(event.position);
            return;
        }
        self.stream_version = Some(event.version);
        if event.event_type != CHECKPOINT_SIGNED {
            return;
        }
        // A checkpoint that does not decode is kept out of the list; `ledger verify` names it.
        if let Ok(checkpoint) = serde_json::from_str::<CheckpointSigned>(&event.data) {
            self.checkpoints.push(StoredCheckpoint {
                position: event.position,
                recorded_at: event.recorded_at,
                checkpoint,
            });
        }
    }

    /// Every stored checkpoint, oldest first.
    pub fn checkpoints(&self) -> &[StoredCheckpoint] {
        &self.checkpoints
    }

    /// The most recent checkpoint.
    pub fn latest(&self) -> Option<&StoredCheckpoint> {
        self.checkpoints.last()
    }

    /// The checkpoint of exactly this tree size, if one was stored.
    pub fn checkpoint_of_size(&self, tree_size: u64) -> Option<&StoredCheckpoint> {
        self.checkpoints
            .binary_search_by_key(&tree_size, |stored| stored.checkpoint.tree_size)
            .ok()
            .map(|index| &self.checkpoints[index])
    }

    /// How many events that are not checkpoints the latest checkpoint leaves uncovered.
    pub fn uncovered(&self) -> u64 {
        let covered = self
            .latest()
            .map_or(0, |latest| latest.checkpoint.tree_size);
        match self.last_activity {
            Some(last) if last >= covered => self.tree.size() - covered,
            _ => 0,
        }
    }

    /// The version of the checkpoints stream's last event, `None` before the first.
    pub fn stream_version(&self) -> Option<u64> {
        self.stream_version
    }

    /// The Merkle root of the whole log as applied.
    pub fn root(&self) -> Hash {
        self.tree.root()
    }
}
