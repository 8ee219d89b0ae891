//! The event log: the semantics every backend provides (`EventLog`), and the embedded file backend.
//!
//! Semantics, shared by every backend and checked by one conformance suite (`tests/it/log.rs`):
//! - streams with per-stream versions and a global position; an append call is atomic;
//! - optimistic concurrency through `ExpectedVersion`; a mismatch is `LogError::Conflict`
//!   carrying the stream's current version;
//! - idempotent by event id: re-appending stored ids answers the first result and stores nothing;
//! - reads of one stream from a version, of the whole log from a position, and a subscription that
//!   catches up and then follows live appends without a gap or a duplicate.

mod file;
mod health;
mod lock;
pub mod segment;

pub use file::{FileLog, FileLogOptions};
pub use health::LogHealth;
pub use lock::DirectoryLock;

use async_trait::async_trait;
use projections::event::{NewEvent, RecordedEvent};

/// What the caller expects a stream's version to be before its append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Whatever the stream holds, or nothing.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have exactly this version.
    Exact(u64),
}

/// Where an append put its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    /// Global position of the first event of the call.
    pub first_position: u64,
    /// Global position of the last event of the call.
    pub last_position: u64,
    /// The stream's version after the call (the version of its last event).
    pub stream_version: u64,
    /// True when every event id was stored already and nothing new was written.
    pub deduplicated: bool,
}

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The stream is not at the version the caller expected.
    #[error("stream {stream} is at version {current:?}, not the expected {expected:?}")]
    Conflict {
        stream: String,
        expected: ExpectedVersion,
        /// The stream's current version, `None` when it does not exist.
        current: Option<u64>,
    },
    /// Some ids of the call are stored already (or stored in another stream), but not all of them
    /// as one earlier call: a retry must resend exactly what it sent.
    #[error("event id {id} is stored already, but not as part of this same append")]
    DuplicateEventId { id: uuid::Uuid },
    /// The append is malformed (no events, a name too long, data too large, repeated ids).
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    /// A record on disk is damaged.
    #[error("damaged record in {segment} at offset {offset}: {reason}")]
    Corrupt {
        segment: String,
        offset: u64,
        reason: String,
    },
    /// A write or fsync failed earlier; the log refuses writes until it is reopened, because after
    /// a failed fsync the kernel may have dropped dirty pages it reported as written.
    #[error("the log stopped accepting writes after an I/O failure: {0}")]
    Poisoned(String),
    /// The log cannot take writes for now (the next segment file could not be created); nothing
    /// of this append was written, and a later append retries. See `LogHealth::WritesPaused`.
    #[error("the log refuses writes for now (nothing was written; retry later): {0}")]
    WritesPaused(String),
    /// The log's writer is gone (the log is shutting down).
    #[error("the log is closed")]
    Closed,
    /// An I/O error.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl LogError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        LogError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Every event of `stream`, in version order (empty when the stream does not exist).
pub async fn read_whole_stream(
    log: &dyn EventLog,
    stream: &str,
) -> Result<Vec<RecordedEvent>, LogError> {
    let mut events = Vec::new();
    loop {
        let batch = log.read_stream(stream, events.len() as u64, 1024).await?;
        if batch.is_empty() {
            return Ok(events);
        }
        events.extend(batch);
    }
}

/// A catch-up-then-live subscription to the whole log.
#[async_trait]
pub trait Subscription: Send {
    /// The next event in global order; waits for a live append once caught up.
    async fn next(&mut self) -> Result<RecordedEvent, LogError>;

    /// Events already read and waiting (up to `max`), without waiting for more: lets a consumer
    /// apply a burst in one step. The default has none.
    fn drain_ready(&mut self, _max: usize) -> Vec<RecordedEvent> {
        Vec::new()
    }
}

/// The event log's semantics, whatever the backend.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends `events` to `stream` atomically if the stream is at `expected`.
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, LogError>;

    /// Up to `max` events of `stream`, from version `from_version` on.
    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, LogError>;

    /// Up to `max` events of the whole log, from global position `from_position` on.
    async fn read_all(
        &self,
        from_position: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, LogError>;

    /// The position the next appended event will get (the number of events stored).
    fn head(&self) -> u64;

    /// The version of the stream's last event, `None` when the stream does not exist.
    fn stream_version(&self, stream: &str) -> Option<u64>;

    /// Every event from `from_position` on, then each live append as it is acknowledged.
    fn subscribe(&self, from_position: u64) -> Box<dyn Subscription>;

    /// Whether the log takes appends now, and if not, why and for how long (until a retry works,
    /// or until it is reopened). `/healthz` and `/readyz` answer from this. The default is for a
    /// backend that has no state of its own to report: its appends say what went wrong.
    fn health(&self) -> LogHealth {
        LogHealth::Writable
    }

    /// How many writes (batches of appends) have failed since the log was opened, whether they
    /// paused or poisoned it.
    fn write_failures(&self) -> u64 {
        0
    }
}
