//! The KurrentDB (formerly EventStoreDB) backend, with the `kurrentdb` client (ADR 0012): each
//! ledger stream is the KurrentDB stream `ledger-<name>`, its versions are KurrentDB's stream
//! revisions, its event ids KurrentDB's, and the global order is `$all` filtered by the prefix.
//!
//! Positions. `$all` positions are (commit, prepare) pairs with gaps, so the ordinal the
//! contract promises is computed by the reader: the count of ledger events before an event in
//! `$all`. This backend keeps an index from ordinal to `$all` position (and from event id to
//! ordinal), extended by reading `$all` forward from the last position it knows; every read of
//! the whole log, `head()` and each append's answer go through it. It costs about 50 bytes of
//! memory per event, and a read of the whole `$all` (filtered) when a server starts.
//!
//! Appends are an optimistic read-then-append loop: read the stream (its tip, to link and number
//! the new events by `log::stamp`, and its ids, for idempotency), check the caller's expected
//! version, then append with KurrentDB's own expected revision set to that tip; if another
//! writer got there first, read again. KurrentDB deduplicates ids per stream only, so an id
//! reused in another stream is refused only if the index already holds it (ADR 0010).
//!
//! Metadata. The event's data is stored as its exact JSON text; the rest of the envelope (schema
//! version, actor, causation and correlation ids, recorded time, `prev_hash`, hash) is the
//! event's custom metadata, as JSON. Every read recomputes the hash.
//!
//! Subscriptions poll `read_all` from their position (waking at once on this process's own
//! appends), rather than use KurrentDB's catch-up subscription: the same index and the same
//! checks serve both, and a lost connection is only a failed poll, retried.

use super::stamp::{self, Stored, StreamTip};
use super::{AppendResult, EventLog, ExpectedVersion, LogError, Subscription};
use async_trait::async_trait;
use foldhash::HashMap;
use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, CurrentRevision, Error as KurrentError,
    EventData, Position, ReadAllOptions, ReadStreamOptions, StreamPosition, StreamState,
    SubscriptionFilter,
};
use projections::event::{NewEvent, RecordedEvent};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// Every ledger stream's name in KurrentDB starts with this; `$all` is filtered by it.
pub const STREAM_PREFIX: &str = "ledger-";

/// The prefix of one ledger in a KurrentDB store (several ledgers, or test runs, may share one).
#[derive(Debug, Clone)]
struct Prefix(String);

/// How long one call to KurrentDB may take before it is `Unavailable`.
const DEADLINE: Duration = Duration::from_secs(10);

/// Events read from `$all` per call.
const PAGE: usize = 4096;

/// How often a caught-up subscription looks for other servers' appends.
const POLL: Duration = Duration::from_millis(200);

/// The log on KurrentDB. Cheap to share behind an `Arc`; its subscriptions share its state.
#[derive(Debug)]
pub struct KurrentLog(Arc<Inner>);

struct Inner {
    settings: ClientSettings,
    /// The prefix of this ledger's streams (`STREAM_PREFIX` unless given).
    prefix: Prefix,
    /// Rebuilt after the client's connection died (it does not recover by itself).
    client: Mutex<Client>,
    index: RwLock<Index>,
    /// Serializes extending the index, so that two readers do not read the same page twice.
    refreshing: tokio::sync::Mutex<()>,
    /// The head as this process last saw it: subscriptions wake when it moves.
    head: watch::Sender<u64>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("KurrentLog")
            .field("head", &*self.head.borrow())
            .finish_non_exhaustive()
    }
}

/// Ordinal to `$all` position, and id to ordinal.
#[derive(Debug, Default)]
struct Index {
    positions: Vec<Position>,
    ids: HashMap<Uuid, u64>,
    last_recorded_micros: i64,
}

/// The envelope fields stored as an event's custom metadata.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Metadata {
    schema_version: u32,
    actor: String,
    causation_id: Option<Uuid>,
    correlation_id: Option<Uuid>,
    recorded_at_micros: i64,
    prev_hash: String,
    hash: String,
}

impl KurrentLog {
    /// Connects to KurrentDB at `url` (`kurrentdb://…`, `esdb://…`, `esdb+discover://…`) and
    /// reads the ledger's events in `$all` to build the index.
    pub async fn connect(url: &str) -> anyhow::Result<KurrentLog> {
        KurrentLog::connect_with_prefix(url, STREAM_PREFIX).await
    }

    /// [`KurrentLog::connect`] for a ledger whose streams start with `prefix` (the conformance
    /// suite runs each time on fresh streams of a long-lived server this way).
    pub async fn connect_with_prefix(url: &str, prefix: &str) -> anyhow::Result<KurrentLog> {
        anyhow::ensure!(!prefix.is_empty(), "the stream prefix must not be empty");
        // The client installs aws-lc-rs as the process's TLS provider unless one is installed:
        // install ring first, as every other client of the process uses (`crate::tls`).
        crate::tls::install_crypto_provider();
        let settings: ClientSettings =
            url.parse()
                .map_err(|error: kurrentdb::ClientSettingsParseError| {
                    anyhow::anyhow!("not a KurrentDB URL: {}", error.message())
                })?;
        let client = Client::new(settings.clone())
            .map_err(|error| anyhow::anyhow!("starting the KurrentDB client: {error}"))?;
        let log = Inner {
            settings,
            prefix: Prefix(prefix.to_owned()),
            client: Mutex::new(client),
            index: RwLock::default(),
            refreshing: tokio::sync::Mutex::new(()),
            head: watch::channel(0).0,
        };
        let head = log
            .refresh()
            .await
            .map_err(|error| anyhow::anyhow!("reading the ledger's events from $all: {error}"))?;
        tracing::info!(events = head, "KurrentDB log indexed");
        Ok(KurrentLog(Arc::new(log)))
    }
}

impl Inner {
    fn client(&self) -> Client {
        self.client.lock().expect("client lock").clone()
    }

    /// `error` as the contract's error; a client whose connection died is replaced.
    fn classify(&self, error: KurrentError) -> LogError {
        match error {
            KurrentError::ServerError(message) => LogError::Unavailable(message),
            KurrentError::NotLeaderException(leader) => LogError::Unavailable(format!(
                "not the leader (the leader is {}:{})",
                leader.host, leader.port
            )),
            KurrentError::DeadlineExceeded => {
                LogError::Unavailable("KurrentDB did not answer in time".into())
            }
            error @ (KurrentError::GrpcConnectionError(_) | KurrentError::ConnectionClosed) => {
                match Client::new(self.settings.clone()) {
                    Ok(client) => *self.client.lock().expect("client lock") = client,
                    Err(error) => tracing::warn!(%error, "could not restart the KurrentDB client"),
                }
                LogError::Unavailable(error.to_string())
            }
            KurrentError::Grpc { code, message } if matches!(i32::from(code), 1 | 8 | 10 | 14) => {
                LogError::Unavailable(message)
            }
            other => LogError::Store(other.to_string()),
        }
    }

    /// Reads `$all` after `after` (from the start if `None`), up to `max` ledger events.
    async fn read_all_after(
        &self,
        after: Option<Position>,
        max: usize,
    ) -> Result<Vec<kurrentdb::RecordedEvent>, LogError> {
        let options = ReadAllOptions::default()
            .position(match after {
                Some(position) => StreamPosition::Position(position),
                None => StreamPosition::Start,
            })
            .forwards()
            .filter(SubscriptionFilter::on_stream_name().add_prefix(&self.prefix.0))
            .max_count(max)
            .deadline(DEADLINE);
        let mut read = self
            .client()
            .read_all(&options)
            .await
            .map_err(|error| self.classify(error))?;
        let mut events = Vec::new();
        while let Some(resolved) = read.next().await.map_err(|error| self.classify(error))? {
            let Some(event) = original(resolved) else {
                continue;
            };
            // Whether a read from a position includes the event at it is not documented: read
            // from the last known position and keep what comes after it.
            if after.is_none_or(|after| event.position > after) {
                events.push(event);
            }
        }
        Ok(events)
    }

    /// Extends the index to the end of `$all`; the head.
    async fn refresh(&self) -> Result<u64, LogError> {
        let _one_at_a_time = self.refreshing.lock().await;
        loop {
            let after = self
                .index
                .read()
                .expect("index lock")
                .positions
                .last()
                .copied();
            let events = self.read_all_after(after, PAGE).await?;
            let done = events.len() < PAGE;
            {
                let mut index = self.index.write().expect("index lock");
                for event in &events {
                    let ordinal = index.positions.len() as u64;
                    index.positions.push(event.position);
                    index.ids.insert(event.id, ordinal);
                    if let Ok(metadata) = serde_json::from_slice::<Metadata>(&event.custom_metadata)
                    {
                        index.last_recorded_micros =
                            index.last_recorded_micros.max(metadata.recorded_at_micros);
                    }
                }
            }
            if done {
                let head = self.index.read().expect("index lock").positions.len() as u64;
                self.head.send_if_modified(|known| {
                    let moved = head > *known;
                    *known = (*known).max(head);
                    moved
                });
                return Ok(head);
            }
        }
    }

    /// Every event of `stream` in KurrentDB, decoded (empty if it does not exist).
    async fn read_stream_events(
        &self,
        stream: &str,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<kurrentdb::RecordedEvent>, LogError> {
        let options = ReadStreamOptions::default()
            .position(StreamPosition::Position(from_version))
            .forwards()
            .max_count(max)
            .deadline(DEADLINE);
        let mut read = match self
            .client()
            .read_stream(format!("{}{stream}", self.prefix.0), &options)
            .await
        {
            Ok(read) => read,
            Err(KurrentError::ResourceNotFound) => return Ok(Vec::new()),
            Err(error) => return Err(self.classify(error)),
        };
        let mut events = Vec::new();
        loop {
            match read.next().await {
                Ok(Some(resolved)) => events.extend(original(resolved)),
                Ok(None) | Err(KurrentError::ResourceNotFound) => return Ok(events),
                Err(error) => return Err(self.classify(error)),
            }
        }
    }

    /// The ordinal of `$all` position `position`, from the index.
    fn ordinal_of(&self, position: Position) -> Option<u64> {
        let index = self.index.read().expect("index lock");
        index
            .positions
            .binary_search(&position)
            .ok()
            .map(|ordinal| ordinal as u64)
    }
}

/// The event a read gave, owned: the link itself for a link event, as `get_original_event` has
/// it (the ledger writes no links).
fn original(resolved: kurrentdb::ResolvedEvent) -> Option<kurrentdb::RecordedEvent> {
    resolved.link.or(resolved.event)
}

/// A KurrentDB event as a ledger event at `ordinal`, its hash checked.
fn decode(
    prefix: &Prefix,
    event: &kurrentdb::RecordedEvent,
    ordinal: u64,
) -> Result<RecordedEvent, LogError> {
    let stream = event
        .stream_id()
        .strip_prefix(prefix.0.as_str())
        .ok_or_else(|| LogError::Store(format!("{} is not a ledger stream", event.stream_id())))?;
    let metadata: Metadata = serde_json::from_slice(&event.custom_metadata).map_err(|error| {
        LogError::Store(format!(
            "the metadata of {} revision {} is not the ledger's: {error}",
            event.stream_id(),
            event.revision
        ))
    })?;
    let hash_of = |text: &str| -> Result<[u8; 32], LogError> {
        hex::decode(text)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| LogError::Store(format!("a stored hash is not 32 hex bytes: {text}")))
    };
    let recorded = RecordedEvent {
        position: ordinal,
        stream: stream.to_owned(),
        version: event.revision,
        id: event.id,
        event_type: event.event_type.clone(),
        schema_version: metadata.schema_version,
        recorded_at: chrono::DateTime::from_timestamp_micros(metadata.recorded_at_micros)
            .ok_or_else(|| LogError::Store("a recorded time out of range".into()))?,
        actor: metadata.actor,
        causation_id: metadata.causation_id,
        correlation_id: metadata.correlation_id,
        data: String::from_utf8(event.data.to_vec())
            .map_err(|_| LogError::Store("event data is not UTF-8".into()))?,
        prev_hash: hash_of(&metadata.prev_hash)?,
        hash: hash_of(&metadata.hash)?,
    };
    if recorded.computed_hash() != recorded.hash {
        return Err(LogError::Store(format!(
            "the event at {} version {} does not match its hash",
            recorded.stream, recorded.version
        )));
    }
    Ok(recorded)
}

#[async_trait]
impl EventLog for KurrentLog {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, LogError> {
        self.0.append(stream, expected, events).await
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        self.0.read_stream(stream, from_version, max).await
    }

    async fn read_all(
        &self,
        from_position: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        self.0.read_all(from_position, max).await
    }

    async fn head(&self) -> Result<u64, LogError> {
        self.0.refresh().await
    }

    async fn stream_version(&self, stream: &str) -> Result<Option<u64>, LogError> {
        self.0.stream_version(stream).await
    }

    fn subscribe(&self, from_position: u64) -> Box<dyn Subscription> {
        Box::new(super::follow::Follow::new(
            self.0.clone(),
            self.0.head.subscribe(),
            Some(POLL),
            from_position,
        ))
    }

    fn backend(&self) -> &'static str {
        "kurrentdb"
    }
}

/// The operations of the log, on the state its subscriptions share.
impl Inner {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, LogError> {
        stamp::check_append(stream, &events)?;
        let ids: Vec<Uuid> = events.iter().map(|event| event.id).collect();
        loop {
            // The stream as it is now: its tip, and where each of its ids is.
            let stored = self.read_stream_events(stream, 0, usize::MAX).await?;
            self.refresh().await?;
            let tip = match stored.last() {
                Some(last) => {
                    let decoded = decode(&self.prefix, last, 0)?;
                    Some(StreamTip {
                        version: decoded.version,
                        hash: decoded.hash,
                    })
                }
                None => None,
            };
            let here: HashMap<Uuid, (Position, u64)> = stored
                .iter()
                .map(|event| (event.id, (event.position, event.revision)))
                .collect();
            let lookup = |id: &Uuid| {
                Ok(match here.get(id) {
                    Some((position, version)) => match self.ordinal_of(*position) {
                        Some(ordinal) => Stored::Here(ordinal, *version),
                        None => Stored::Elsewhere,
                    },
                    None if self.index.read().expect("index lock").ids.contains_key(id) => {
                        Stored::Elsewhere
                    }
                    None => Stored::No,
                })
            };
            if let Some(result) = stamp::deduplicate(&events, lookup)? {
                return Ok(result);
            }
            stamp::check_expected(stream, expected, tip.map(|tip| tip.version))?;
            let recorded_at = stamp::recorded_at_micros(
                chrono::Utc::now(),
                self.index.read().expect("index lock").last_recorded_micros,
            );
            let mut data = Vec::with_capacity(events.len());
            let mut failed = None;
            stamp::stamp(
                stream,
                tip,
                0,
                recorded_at,
                events.clone(),
                &mut Vec::new(),
                |recorded, _| {
                    let metadata = Metadata {
                        schema_version: recorded.schema_version,
                        actor: recorded.actor,
                        causation_id: recorded.causation_id,
                        correlation_id: recorded.correlation_id,
                        recorded_at_micros: recorded_at,
                        prev_hash: hex::encode(recorded.prev_hash),
                        hash: hex::encode(recorded.hash),
                    };
                    let raw = serde_json::value::RawValue::from_string(recorded.data)
                        .expect("event data is JSON by construction");
                    match EventData::json(&recorded.event_type, &raw) {
                        Ok(event) => data.push(
                            event.id(recorded.id).metadata(
                                serde_json::to_vec(&metadata)
                                    .expect("metadata serializes")
                                    .into(),
                            ),
                        ),
                        Err(error) => failed = Some(error.to_string()),
                    }
                },
            );
            if let Some(reason) = failed {
                return Err(LogError::InvalidAppend(reason));
            }
            let state = match tip {
                Some(tip) => StreamState::StreamRevision(tip.version),
                None => StreamState::NoStream,
            };
            let options = AppendToStreamOptions::default()
                .stream_state(state)
                .deadline(DEADLINE);
            match self
                .client()
                .append_to_stream(format!("{}{stream}", self.prefix.0), &options, data)
                .await
            {
                Ok(written) => {
                    let head = self.refresh().await?;
                    let index = self.index.read().expect("index lock");
                    let first = index.ids.get(&ids[0]).copied();
                    let last = index.ids.get(&ids[ids.len() - 1]).copied();
                    drop(index);
                    let (Some(first_position), Some(last_position)) = (first, last) else {
                        return Err(LogError::Store(format!(
                            "the append was acknowledged but its events are not in $all (head {head})"
                        )));
                    };
                    return Ok(AppendResult {
                        first_position,
                        last_position,
                        stream_version: written.next_expected_version,
                        deduplicated: false,
                    });
                }
                // Another writer appended since the read: read again (the caller's expected
                // version is checked again, against the new tip).
                Err(KurrentError::WrongExpectedVersion { current, .. }) => {
                    tracing::debug!(stream, ?current, "raced another writer; reading again");
                    if matches!(current, CurrentRevision::NoStream) && tip.is_some() {
                        return Err(LogError::Store(format!("{stream} was deleted")));
                    }
                }
                Err(error) => return Err(self.classify(error)),
            }
        }
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        let events = self.read_stream_events(stream, from_version, max).await?;
        if events
            .iter()
            .any(|event| self.ordinal_of(event.position).is_none())
        {
            self.refresh().await?;
        }
        let decoded = events
            .iter()
            .map(|event| {
                let ordinal = self
                    .ordinal_of(event.position)
                    .ok_or_else(|| LogError::Store(format!("{} is not in $all", event.id)))?;
                decode(&self.prefix, event, ordinal)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(first) = decoded.first() {
            stamp::check_links(
                Some(StreamTip {
                    version: first.version,
                    hash: first.hash,
                }),
                &decoded[1..],
            )
            .map_err(LogError::Store)?;
        }
        Ok(decoded)
    }

    async fn read_all(
        &self,
        from_position: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        let head = self.refresh().await?;
        if from_position >= head || max == 0 {
            return Ok(Vec::new());
        }
        let after = from_position
            .checked_sub(1)
            .map(|before| self.index.read().expect("index lock").positions[before as usize]);
        let count = max.min((head - from_position) as usize);
        let events = self.read_all_after(after, count).await?;
        let index_positions: Vec<Position> = {
            let index = self.index.read().expect("index lock");
            index.positions[from_position as usize..from_position as usize + events.len()].to_vec()
        };
        events
            .iter()
            .zip(index_positions)
            .enumerate()
            .map(|(offset, (event, position))| {
                if event.position != position {
                    return Err(LogError::Store(format!(
                        "$all changed under the ledger at ordinal {}",
                        from_position + offset as u64
                    )));
                }
                decode(&self.prefix, event, from_position + offset as u64)
            })
            .collect()
    }

    async fn stream_version(&self, stream: &str) -> Result<Option<u64>, LogError> {
        let options = ReadStreamOptions::default()
            .position(StreamPosition::End)
            .max_count(1)
            .deadline(DEADLINE);
        let mut read = match self
            .client()
            .read_stream(format!("{}{stream}", self.prefix.0), &options)
            .await
        {
            Ok(read) => read,
            Err(KurrentError::ResourceNotFound) => return Ok(None),
            Err(error) => return Err(self.classify(error)),
        };
        match read.next().await {
            Ok(Some(resolved)) => Ok(Some(resolved.get_original_event().revision)),
            Ok(None) | Err(KurrentError::ResourceNotFound) => Ok(None),
            Err(error) => Err(self.classify(error)),
        }
    }
}

/// Subscriptions (`follow::Follow`) read pages through the index; they wake at once on this
/// process's appends, and every `POLL` for other servers'.
#[async_trait]
impl super::follow::Pages for Inner {
    async fn page(&self, position: u64) -> Result<Vec<RecordedEvent>, LogError> {
        self.read_all(position, super::follow::PAGE).await
    }

    fn name(&self) -> &'static str {
        "KurrentDB"
    }
}
