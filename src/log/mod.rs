//! The event log: the contract every backend honours (`EventLog`), what is common to all of them
//! (`stamp`), and the backends: the embedded file log (the default), an in-memory log, and logs
//! on PostgreSQL and KurrentDB.
//!
//! The contract, checked by one conformance suite on every backend (`tests/it/log.rs`; written
//! down with what each backend does in `docs/adr/0010-log-contract.md`):
//! - streams with per-stream versions 0, 1, 2, … without a gap; an append call is atomic;
//! - a global order: every event has a **position**, its ordinal in one total order of the whole
//!   log that every reader sees identically, 0, 1, 2, … without a gap. A reader that has read
//!   through position p never later learns of an event before p: positions are handed out so
//!   that an event becomes readable only after every event before it. The position is the
//!   cursor: `read_all(p)` and `subscribe(p)` resume exactly at p. (On engines whose own
//!   positions have gaps, KurrentDB's `$all`, the backend counts the ledger's events to give the
//!   ordinal, and keeps the engine's position as its own cursor.)
//! - optimistic concurrency through `ExpectedVersion`; a mismatch is `LogError::Conflict`
//!   carrying the stream's current version;
//! - idempotent by event id within a stream: re-appending stored ids to their stream answers the
//!   first result and stores nothing; an id stored in another stream is `DuplicateEventId` on
//!   every backend that can see all ids at once (all but KurrentDB, which deduplicates per stream);
//! - versions, `prev_hash` links, recorded times and event hashes are computed by `stamp`, the
//!   same for every backend; readers check links and hashes;
//! - an acknowledged append is stored durably; a store that cannot answer is
//!   `LogError::Unavailable` (nothing was acknowledged, a retry with the same ids is safe);
//! - a subscription catches up and then follows live appends without a gap or a duplicate.

mod file;
mod follow;
mod health;
mod kurrent;
mod lock;
mod memory;
mod pg_tls;
mod postgres;
pub mod segment;
pub mod stamp;

pub use file::{FileLog, FileLogOptions};
pub use health::LogHealth;
pub use kurrent::KurrentLog;
pub use lock::DirectoryLock;
pub use memory::MemoryLog;
pub use postgres::{PostgresLog, PostgresOptions};

use async_trait::async_trait;
use projections::event::{NewEvent, RecordedEvent};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a server's log lives: `--store URL` (or `LEDGER_STORE`), or else the data directory.
/// The only place besides the backends that knows them by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// The embedded file log in this directory (the default: `--data-dir`).
    File(PathBuf),
    /// A log in this process's memory (`memory:`), gone when it ends: for trying things out.
    Memory,
    /// PostgreSQL (`postgres://user@host:port/db` or `postgresql://…`).
    Postgres(String),
    /// KurrentDB, formerly EventStoreDB (`kurrentdb://…`, `esdb://…`, `esdb+discover://…`).
    Kurrent(String),
}

impl Store {
    /// The store `url` names, or the file log in `data_dir` when there is none.
    pub fn parse(url: Option<&str>, data_dir: &Path) -> Result<Store, String> {
        let Some(url) = url.map(str::trim).filter(|url| !url.is_empty()) else {
            return Ok(Store::File(data_dir.to_owned()));
        };
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        match scheme.to_ascii_lowercase().as_str() {
            "memory" => Ok(Store::Memory),
            "file" => Ok(Store::File(PathBuf::from(
                url["file:".len()..].trim_start_matches("//"),
            ))),
            "postgres" | "postgresql" => Ok(Store::Postgres(url.to_owned())),
            "kurrentdb" | "kurrent" | "esdb" | "esdb+discover" | "kurrentdb+discover" => {
                Ok(Store::Kurrent(url.to_owned()))
            }
            _ => Err(format!(
                "unknown store {url:?}: use postgres://…, kurrentdb://… (or esdb://…), memory: or file:DIR"
            )),
        }
    }

    /// The data directory of a file store.
    pub fn data_dir(&self) -> Option<&Path> {
        match self {
            Store::File(dir) => Some(dir),
            _ => None,
        }
    }

    /// The store for logs and messages, without a password.
    pub fn describe(&self) -> String {
        match self {
            Store::File(dir) => format!("file log in {}", dir.display()),
            Store::Memory => "memory (nothing is kept after the process ends)".to_owned(),
            Store::Postgres(url) | Store::Kurrent(url) => redact_password(url),
        }
    }
}

/// `url` with the password of its userinfo, if any, replaced by `***`.
pub fn redact_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Opens the log `store` names, for `purpose` (named in the file log's lock).
pub async fn open(store: &Store, purpose: &str) -> anyhow::Result<Arc<dyn EventLog>> {
    Ok(match store {
        Store::File(dir) => Arc::new(FileLog::open(dir, FileLogOptions::default(), purpose)?),
        Store::Memory => Arc::new(MemoryLog::new()),
        Store::Postgres(url) => {
            Arc::new(PostgresLog::connect(url, PostgresOptions::default()).await?)
        }
        Store::Kurrent(url) => Arc::new(KurrentLog::connect(url).await?),
    })
}

/// Opens the log `store` names for reading only: the file log without its lock (beside a running
/// server); other stores as `open` does (they have no lock).
pub async fn open_read_only(store: &Store) -> anyhow::Result<Arc<dyn EventLog>> {
    match store {
        Store::File(dir) => Ok(Arc::new(FileLog::open_read_only(dir)?)),
        other => open(other, "read").await,
    }
}

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
    /// The store cannot be reached, or did not answer in time: nothing of the call was
    /// acknowledged, and retrying (with the same event ids) is safe. The HTTP API answers it
    /// with 503 and `Retry-After`.
    #[error("the store is unavailable (nothing was acknowledged; retry later): {0}")]
    Unavailable(String),
    /// The store answered, but not as the ledger expects of it (a schema it does not know, a
    /// stored event that does not decode).
    #[error("the store is not as the ledger expects: {0}")]
    Store(String),
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
    const PAGE: usize = 1024;
    let mut events = Vec::new();
    loop {
        let batch = log.read_stream(stream, events.len() as u64, PAGE).await?;
        let last_page = batch.len() < PAGE;
        events.extend(batch);
        // A short page is the end: no second read (a round trip to a database) to learn it.
        if last_page {
            return Ok(events);
        }
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

    /// The position the next appended event will get (the number of events stored): every
    /// append acknowledged before the call, on any server of the store, is below it.
    async fn head(&self) -> Result<u64, LogError>;

    /// The version of the stream's last event, `None` when the stream does not exist.
    async fn stream_version(&self, stream: &str) -> Result<Option<u64>, LogError>;

    /// A head known without asking the store, for a backend whose `head()` is a round trip:
    /// every append this process acknowledged is below it (other servers' may not be). `None`
    /// where `head()` is as cheap (the file and in-memory logs).
    fn head_hint(&self) -> Option<u64> {
        None
    }

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

    /// The backend's name, for logs, `/healthz` and metrics: `file`, `memory`, `postgres`,
    /// `kurrentdb`.
    fn backend(&self) -> &'static str;

    /// How many streams the log holds, where the backend knows it without a query.
    fn stream_count(&self) -> Option<usize> {
        None
    }

    /// Takes or renews the lease `name` for `holder` for `ttl`: true while `holder` holds it.
    /// Background jobs that must run once per store, not once per server (timers, callback
    /// deliveries), run only while their server holds the lease. The default is for a backend
    /// that one server owns alone (the file log, behind its directory lock; the in-memory log):
    /// its server always holds every lease.
    async fn lease(
        &self,
        _name: &str,
        _holder: &str,
        _ttl: std::time::Duration,
    ) -> Result<bool, LogError> {
        Ok(true)
    }

    /// A secret every server of the store shares (`name`: the callback key): the one stored, or
    /// `candidate` if none was and it is stored now. `None` when the backend keeps no secrets
    /// (the file log's server keeps its key in the data directory instead).
    async fn shared_secret(
        &self,
        _name: &str,
        _candidate: &[u8],
    ) -> Result<Option<Vec<u8>>, LogError> {
        Ok(None)
    }
}
