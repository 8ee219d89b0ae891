//! The PostgreSQL backend: the log in one table of an existing database, shared by any number of
//! `ledger serve` processes (ADR 0011).
//!
//! The global order. Positions are handed out under a row lock on the one-row table
//! `ledger_head`: an append transaction locks it (`SELECT … FOR UPDATE`), writes its events at the
//! positions after the head, moves the head and commits. PostgreSQL releases a transaction's locks
//! only after its commit is visible, so the next appender starts after the previous one's events
//! are readable: events become visible in position order, and a reader that has read position p
//! never later finds an event before p. This is the bug Marten 9.16.1 fixed the hard way (a reader
//! skipping an event whose transaction committed late), excluded by construction. Positions are
//! dense (the Merkle tree of audit needs ordinals), and the database enforces it: every row names
//! the position and stream version before it, and a trigger requires those rows to exist.
//!
//! The cost is that appends to one database are serialized. Each server therefore sends its
//! concurrent appends through one writer task that takes all that queued while the previous
//! transaction ran and writes them in one transaction (group commit, as the file log does with
//! its fsync): the lock is taken once per batch, not once per append.
//!
//! Concurrency and idempotency have exactly the file log's semantics (the checks are
//! `log::stamp`'s, run under the head lock), and the database enforces them as well:
//! `UNIQUE (stream, version)`, `UNIQUE (id)`, and the trigger above, so that two servers
//! cannot store two events at one version or one id twice, whatever happens; another trigger
//! refuses every update and delete.
//!
//! Live subscriptions wake on `LISTEN ledger_events` (each commit notifies its new head), and
//! poll as a fallback; a lost connection is reconnected and the subscription resumes from its
//! position, without a gap (positions are dense) or a duplicate (it asks from the next one).

use super::stamp::{self, Stored, StreamTip};
use super::{AppendResult, EventLog, ExpectedVersion, LogError, Subscription};
use anyhow::Context as _;
use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use foldhash::{HashMap, HashSet};
use futures_util::StreamExt;
use projections::event::{NewEvent, RecordedEvent};
use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::types::ToSql;
use tokio_postgres_rustls::MakeRustlsConnect;
use uuid::Uuid;

/// The schema, by version: each entry is applied once, in order, in one transaction with its
/// record in `ledger_migrations`. Never edit an entry that shipped; add the next.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        r#"
CREATE TABLE ledger_events (
    position           bigint  PRIMARY KEY CHECK (position >= 0),
    -- The position before this one (the trigger below checks it is stored).
    prev_position      bigint  CHECK ((position = 0 AND prev_position IS NULL)
                                      OR prev_position = position - 1),
    stream             text    NOT NULL,
    version            bigint  NOT NULL CHECK (version >= 0),
    -- The version before this one in the stream (the trigger below checks it is stored).
    prev_version       bigint  CHECK ((version = 0 AND prev_version IS NULL)
                                      OR prev_version = version - 1),
    id                 uuid    NOT NULL UNIQUE,
    event_type         text    NOT NULL,
    schema_version     integer NOT NULL,
    recorded_at_micros bigint  NOT NULL,
    actor              text    NOT NULL,
    causation_id       uuid,
    correlation_id     uuid,
    data               text    NOT NULL,
    prev_hash          bytea   NOT NULL CHECK (length(prev_hash) = 32),
    hash               bytea   NOT NULL CHECK (length(hash) = 32),
    UNIQUE (stream, version)
);
-- Positions and stream versions are dense: every inserted row's previous position, and its
-- previous version in its stream, is stored. Checked once per statement, over the statement's
-- rows (foreign keys did the same row by row, locking each referenced row: 40% of the append
-- rate at 256 appenders).
CREATE FUNCTION ledger_events_dense() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM inserted AS i WHERE i.position > 0 AND NOT EXISTS
                 (SELECT 1 FROM ledger_events AS e WHERE e.position = i.position - 1)) THEN
        RAISE EXCEPTION 'ledger_events: a position follows a gap' USING ERRCODE = '23503';
    END IF;
    IF EXISTS (SELECT 1 FROM inserted AS i WHERE i.version > 0 AND NOT EXISTS
                 (SELECT 1 FROM ledger_events AS e
                   WHERE e.stream = i.stream AND e.version = i.version - 1)) THEN
        RAISE EXCEPTION 'ledger_events: a stream version follows a gap' USING ERRCODE = '23503';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER ledger_events_dense AFTER INSERT ON ledger_events
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION ledger_events_dense();
-- Append-only: stored events are never changed or removed.
CREATE FUNCTION ledger_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_events is append-only' USING ERRCODE = '42501';
END
$$;
CREATE TRIGGER ledger_events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON ledger_events
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_events_append_only();
-- One row: the position the next event gets, and the last recorded time (never goes back).
CREATE TABLE ledger_head (
    singleton            boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    next_position        bigint  NOT NULL,
    last_recorded_micros bigint  NOT NULL
);
INSERT INTO ledger_head VALUES (true, 0, -9223372036854775808);
-- Which server runs each background job (timers, callback deliveries), until when.
CREATE TABLE ledger_leases (
    name       text        PRIMARY KEY,
    holder     text        NOT NULL,
    expires_at timestamptz NOT NULL
);
-- Secrets every server of the store shares (the callback key).
CREATE TABLE ledger_secrets (
    name  text  PRIMARY KEY,
    value bytea NOT NULL
);
"#,
    ),
    (
        2,
        r#"
-- The density trigger's two checks look each previous row up in an index, whatever the
-- table's statistics: PL/pgSQL keeps a generic plan per session, and one made while the table
-- was new and small joined the whole table (a hash anti-join over a scan of it), 18 ms a batch
-- and growing on a fresh database until autovacuum analyzed it. Applies only while the
-- trigger runs.
ALTER FUNCTION ledger_events_dense() SET enable_seqscan = off;
ALTER FUNCTION ledger_events_dense() SET enable_hashjoin = off;
ALTER FUNCTION ledger_events_dense() SET enable_mergejoin = off;
"#,
    ),
];

/// The advisory lock key that serializes migrations between servers starting at once.
const MIGRATION_LOCK: i64 = 0x6c65_6467_6572; // "ledger"

/// The channel commits notify their new head on.
const CHANNEL: &str = "ledger_events";

/// The columns of an event, in the order reads select them.
const EVENT_COLUMNS: &str = "position, stream, version, id, event_type, schema_version, \
     recorded_at_micros, actor, causation_id, correlation_id, data, prev_hash, hash";

/// Tunables of the PostgreSQL backend.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Connections in the pool (the writer takes one per batch; reads the others).
    pub pool_size: usize,
    /// A batch stops taking queued appends past this many events…
    pub max_batch_events: usize,
    /// …or this many bytes of data.
    pub max_batch_bytes: usize,
    /// How long any one operation may take before it is `Unavailable` (a connection, a query,
    /// a batch's transaction).
    pub timeout: Duration,
    /// How often a caught-up subscription looks for new events when no notification came (the
    /// fallback for a lost notification or a listener reconnecting).
    pub poll: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            pool_size: 16,
            max_batch_events: 4096,
            max_batch_bytes: 8 * 1024 * 1024,
            timeout: Duration::from_secs(10),
            poll: Duration::from_millis(500),
        }
    }
}

/// The log on PostgreSQL. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct PostgresLog {
    inner: Arc<Inner>,
    requests: mpsc::UnboundedSender<AppendRequest>,
}

struct Inner {
    pool: Pool,
    /// The writer's connections, apart from the readers' so that they live on its thread.
    write_pool: Pool,
    options: PostgresOptions,
    /// The highest head this process knows of: moved by its own commits and by notifications
    /// of other servers' commits; subscriptions wake when it moves.
    head_hint: watch::Sender<u64>,
    /// The batches this process committed last, for its subscriptions: events this server wrote
    /// need not be read back from the database (with one server, none are).
    recent: std::sync::Mutex<Recent>,
    /// The head after this process's last acknowledged append (`EventLog::head_hint`).
    own_head: std::sync::atomic::AtomicU64,
}

/// This process's last committed batches: (first position, events), oldest first, bounded by
/// the bytes of their data. Another server's batches fall between them; a subscription reads
/// those from the database.
#[derive(Debug, Default)]
struct Recent {
    batches: VecDeque<(u64, Arc<Vec<RecordedEvent>>)>,
    bytes: usize,
    /// The first position of the batch this process is committing, from the moment its
    /// positions are taken until it is in `batches` (or failed): a subscription waits for it
    /// rather than read it back from the database when its commit's notification comes first.
    committing: Option<u64>,
}

/// What `Recent` may hold.
const RECENT_BYTES: usize = 8 * 1024 * 1024;

impl Recent {
    fn push(&mut self, first_position: u64, events: Vec<RecordedEvent>) {
        self.bytes += events
            .iter()
            .map(|event| event.data.len() + 256)
            .sum::<usize>();
        self.batches.push_back((first_position, Arc::new(events)));
        while self.bytes > RECENT_BYTES
            && let Some((_, oldest)) = self.batches.pop_front()
        {
            self.bytes -= oldest
                .iter()
                .map(|event| event.data.len() + 256)
                .sum::<usize>();
        }
    }

    /// The events from `position` to the end of the batch that holds it, if one does.
    fn from(&self, position: u64) -> Option<Vec<RecordedEvent>> {
        let (first, events) =
            self.batches.iter().rev().find(|(first, events)| {
                *first <= position && position < first + events.len() as u64
            })?;
        Some(events[(position - first) as usize..].to_vec())
    }

    /// Where a subscription at `position` finds its next events: here, in the database up to
    /// (not including) this process's next batch, or nowhere until the batch being committed
    /// is here.
    fn source(&self, position: u64) -> Source {
        if let Some(events) = self.from(position) {
            return Source::Memory(events);
        }
        if self.committing.is_some_and(|first| first <= position) {
            return Source::Committing;
        }
        let next_own = self
            .batches
            .iter()
            .map(|(first, _)| *first)
            .chain(self.committing)
            .filter(|first| *first > position)
            .min();
        Source::Database {
            until: next_own.unwrap_or(u64::MAX),
        }
    }
}

/// Where a subscription reads next (`Recent::source`).
#[derive(Debug, PartialEq)]
enum Source {
    /// This process's own batch, from memory.
    Memory(Vec<RecordedEvent>),
    /// Other servers' events, from the database, below `until` (this process's next batch).
    Database { until: u64 },
    /// The position is in the batch this process is committing: nothing to read yet.
    Committing,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PostgresLog")
            .field("head_hint", &*self.head_hint.borrow())
            .finish_non_exhaustive()
    }
}

struct AppendRequest {
    stream: String,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    reply: oneshot::Sender<Result<AppendResult, LogError>>,
}

impl PostgresLog {
    /// Connects to the database `url` names (`postgres://user:password@host:port/db`), creates or
    /// migrates the schema, and starts the writer and the notification listener.
    pub async fn connect(url: &str, options: PostgresOptions) -> anyhow::Result<PostgresLog> {
        let (url, tls) = super::pg_tls::split(url)?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|error| anyhow::anyhow!("not a PostgreSQL URL: {error}"))?;
        config.ssl_mode(tls.ssl_mode());
        let connector = tls.connector()?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("ledger");
        }
        let build_pool = |size: usize| {
            let manager = Manager::from_config(
                config.clone(),
                connector.clone(),
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            Pool::builder(manager)
                .max_size(size)
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(options.timeout))
                .create_timeout(Some(options.timeout))
                .recycle_timeout(Some(options.timeout))
                .build()
                .map_err(|error| anyhow::anyhow!("building the connection pool: {error}"))
        };
        let pool = build_pool(options.pool_size)?;
        // The writer's own connections (a batch at a time, and one being replaced), made on its
        // thread so that their I/O runs there too.
        let write_pool = build_pool(2)?;
        {
            let mut client = pool.get().await.map_err(|error| {
                let error = pool_error(error).to_string();
                let hint = super::pg_tls::hint(&error);
                anyhow::anyhow!("connecting to PostgreSQL: {error}{hint}")
            })?;
            migrate(&mut client).await?;
        }
        let head = {
            let client = pool.get().await.map_err(|error| {
                anyhow::anyhow!("connecting to PostgreSQL: {}", pool_error(error))
            })?;
            read_head(&client).await?
        };
        let inner = Arc::new(Inner {
            pool,
            write_pool,
            options,
            head_hint: watch::channel(head).0,
            recent: std::sync::Mutex::default(),
            own_head: std::sync::atomic::AtomicU64::new(head),
        });
        let (requests, receiver) = mpsc::unbounded_channel();
        // The writer runs on a thread of its own: what it does while the head lock is held (take
        // the reads' answer, stamp the events, send the writes) then waits for a core, not for
        // the HTTP and projection tasks queued on the server's runtime. A thread that mostly
        // sleeps on I/O is woken promptly by the kernel's scheduler.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the PostgreSQL writer's runtime")?;
        let writer = inner.clone();
        std::thread::Builder::new()
            .name("ledger-pg-writer".into())
            .spawn(move || runtime.block_on(write_loop(writer, receiver)))
            .context("starting the PostgreSQL writer's thread")?;
        tokio::spawn(listen(config, connector, Arc::downgrade(&inner)));
        Ok(PostgresLog { inner, requests })
    }
}

/// Applies the migrations the database lacks, under an advisory lock so that servers starting
/// at once do it once.
async fn migrate(client: &mut deadpool_postgres::Client) -> anyhow::Result<()> {
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    // `CREATE TABLE IF NOT EXISTS` notices the table exists on every start: not news.
    transaction
        .batch_execute("SET LOCAL client_min_messages = warning")
        .await?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS ledger_migrations (
                 version    integer     PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;
    let current: i32 = transaction
        .query_one(
            "SELECT coalesce(max(version), 0) FROM ledger_migrations",
            &[],
        )
        .await?
        .get(0);
    let latest = MIGRATIONS.last().map_or(0, |(version, _)| *version);
    anyhow::ensure!(
        current <= latest,
        "the database holds the ledger's schema version {current}, newer than this build knows ({latest}): upgrade the ledger"
    );
    for (version, sql) in MIGRATIONS.iter().filter(|(version, _)| *version > current) {
        transaction
            .batch_execute(sql)
            .await
            .map_err(|error| anyhow::anyhow!("migrating to schema version {version}: {error}"))?;
        transaction
            .execute(
                "INSERT INTO ledger_migrations (version) VALUES ($1)",
                &[version],
            )
            .await?;
        tracing::info!(version, "PostgreSQL schema migrated");
    }
    transaction.commit().await?;
    Ok(())
}

async fn read_head(client: &tokio_postgres::Client) -> Result<u64, LogError> {
    let row = client
        .query_one("SELECT next_position FROM ledger_head", &[])
        .await
        .map_err(classify)?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// What a database error means to a caller: retry later (`Unavailable`: the connection, the
/// server's state, a timeout, a transaction that lost a race), or a store not as expected.
fn classify(error: tokio_postgres::Error) -> LogError {
    let Some(code) = error.code() else {
        // No SQLSTATE: the connection failed or closed (I/O), or a message did not parse.
        return LogError::Unavailable(describe(&error));
    };
    let text = code.code();
    let retryable = text.starts_with("08") // connection exception
        || text.starts_with("40") // serialization failure, deadlock
        || text.starts_with("53") // insufficient resources: too many connections, disk full
        || text.starts_with("57") // shutdown, cannot connect now, query canceled (timeout)
        || text == "55P03" // lock not available
        // A statement after a failed one in a pipelined transaction: the transaction was
        // aborted, so nothing of it is stored (the cause is the earlier statement's error).
        || text == "25P02"
        // A unique or foreign key violation: another writer got there first despite the head
        // lock (it cannot, but the database refusing is the point). Nothing was stored; a retry
        // reads the new state and answers `Conflict` or the stored result.
        || text == "23505"
        || text == "23503";
    if retryable {
        LogError::Unavailable(describe(&error))
    } else {
        LogError::Store(describe(&error))
    }
}

/// The error with what caused it: tokio-postgres's own text is only "db error" or "error
/// connecting to server", the server's message and the OS error are its source.
fn describe(error: &tokio_postgres::Error) -> String {
    match std::error::Error::source(error) {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    }
}

fn pool_error(error: deadpool_postgres::PoolError) -> LogError {
    match error {
        deadpool_postgres::PoolError::Backend(error) => classify(error),
        other => LogError::Unavailable(format!("no database connection: {other}")),
    }
}

/// Runs `operation` within the backend's timeout; running out is `Unavailable`.
async fn timed<T>(
    timeout: Duration,
    operation: impl std::future::Future<Output = Result<T, LogError>>,
) -> Result<T, LogError> {
    match tokio::time::timeout(timeout, operation).await {
        Ok(result) => result,
        Err(_) => Err(LogError::Unavailable(format!(
            "the database did not answer within {} ms",
            timeout.as_millis()
        ))),
    }
}

/// One writer per process: takes what queued while the previous batch was written.
async fn write_loop(inner: Arc<Inner>, mut requests: mpsc::UnboundedReceiver<AppendRequest>) {
    // Appends taken while a batch waited for the lock, too late to be read in it: the first of
    // the next batch.
    let mut carried: Vec<AppendRequest> = Vec::new();
    loop {
        let mut batch = std::mem::take(&mut carried);
        if batch.is_empty() {
            match requests.recv().await {
                Some(first) => batch.push(first),
                None => break,
            }
        }
        let mut fill = Fill::of(&batch);
        take_ready(&mut batch, &mut fill, &mut requests, &inner.options);
        inner.write_batch(batch, &mut requests, &mut carried).await;
    }
}

/// How much a batch holds, against `PostgresOptions`' bounds.
#[derive(Debug, Clone, Copy)]
struct Fill {
    events: usize,
    bytes: usize,
}

impl Fill {
    fn of(batch: &[AppendRequest]) -> Fill {
        Fill {
            events: batch.iter().map(|request| request.events.len()).sum(),
            bytes: batch.iter().map(request_bytes).sum(),
        }
    }

    fn add(&mut self, request: &AppendRequest) {
        self.events += request.events.len();
        self.bytes += request_bytes(request);
    }

    fn has_room(&self, options: &PostgresOptions) -> bool {
        self.events < options.max_batch_events && self.bytes < options.max_batch_bytes
    }
}

/// Adds the appends already queued in `more` to `batch` (holding `fill`) while it has room.
fn take_ready(
    batch: &mut Vec<AppendRequest>,
    fill: &mut Fill,
    more: &mut mpsc::UnboundedReceiver<AppendRequest>,
    options: &PostgresOptions,
) {
    while fill.has_room(options) {
        let Ok(next) = more.try_recv() else { break };
        fill.add(&next);
        batch.push(next);
    }
}

fn request_bytes(request: &AppendRequest) -> usize {
    request
        .events
        .iter()
        .map(|event| event.data.get().len() + 256)
        .sum()
}

/// The events of a batch as the columns of one `INSERT … SELECT FROM unnest(…)`.
#[derive(Default)]
struct Columns {
    position: Vec<i64>,
    prev_position: Vec<Option<i64>>,
    stream: Vec<String>,
    version: Vec<i64>,
    prev_version: Vec<Option<i64>>,
    id: Vec<Uuid>,
    event_type: Vec<String>,
    schema_version: Vec<i32>,
    recorded_at_micros: Vec<i64>,
    actor: Vec<String>,
    causation_id: Vec<Option<Uuid>>,
    correlation_id: Vec<Option<Uuid>>,
    data: Vec<String>,
    prev_hash: Vec<Vec<u8>>,
    hash: Vec<Vec<u8>>,
}

impl Columns {
    fn push(&mut self, event: RecordedEvent, recorded_at_micros: i64) {
        let position = event.position as i64;
        let version = event.version as i64;
        self.position.push(position);
        self.prev_position
            .push(position.checked_sub(1).filter(|p| *p >= 0));
        self.stream.push(event.stream);
        self.version.push(version);
        self.prev_version
            .push(version.checked_sub(1).filter(|v| *v >= 0));
        self.id.push(event.id);
        self.event_type.push(event.event_type);
        self.schema_version.push(event.schema_version as i32);
        self.recorded_at_micros.push(recorded_at_micros);
        self.actor.push(event.actor);
        self.causation_id.push(event.causation_id);
        self.correlation_id.push(event.correlation_id);
        self.data.push(event.data);
        self.prev_hash.push(event.prev_hash.to_vec());
        self.hash.push(event.hash.to_vec());
    }
}

const INSERT_EVENTS: &str = "INSERT INTO ledger_events (position, prev_position, stream, version, \
     prev_version, id, event_type, schema_version, recorded_at_micros, actor, causation_id, \
     correlation_id, data, prev_hash, hash) \
     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], \
     $6::uuid[], $7::text[], $8::integer[], $9::bigint[], $10::text[], $11::uuid[], \
     $12::uuid[], $13::text[], $14::bytea[], $15::bytea[])";

impl Inner {
    /// Writes a batch in one transaction and answers each request.
    async fn write_batch(
        &self,
        mut batch: Vec<AppendRequest>,
        more: &mut mpsc::UnboundedReceiver<AppendRequest>,
        carry: &mut Vec<AppendRequest>,
    ) {
        tracing::trace!(requests = batch.len(), "postgres group commit");
        let outcome = timed(self.options.timeout, self.write(&mut batch, more, carry)).await;
        match outcome {
            Ok((results, new_head, written)) => {
                {
                    // Before the head moves: a subscription that sees it finds these here.
                    let mut recent = self.recent.lock().expect("recent batches lock");
                    if let Some(first) = written.first() {
                        let first = first.position;
                        recent.push(first, written);
                    }
                    recent.committing = None;
                }
                if let Some(head) = new_head {
                    self.own_head
                        .fetch_max(head, std::sync::atomic::Ordering::AcqRel);
                    // Wakes subscriptions even when the commit's notification moved the hint
                    // first: they waited for this batch to be in memory.
                    self.head_hint
                        .send_modify(|known| *known = (*known).max(head));
                }
                for (request, result) in batch.into_iter().zip(results) {
                    let _ = request.reply.send(result);
                }
            }
            Err(error) => {
                self.recent.lock().expect("recent batches lock").committing = None;
                // Subscriptions that waited for the batch read the database again.
                self.head_hint.send_modify(|_| {});
                // Nothing of the batch is acknowledged. The commit may have happened if the
                // connection was lost during it: a retry with the same ids then answers the
                // stored result, never a second copy.
                let reason = error.to_string();
                for request in batch {
                    let _ = request.reply.send(Err(match &error {
                        LogError::Store(_) => LogError::Store(reason.clone()),
                        _ => LogError::Unavailable(reason.clone()),
                    }));
                }
            }
        }
    }

    /// The transaction of one batch: per-request results (in order), and the new head if
    /// anything was written.
    async fn write(
        &self,
        batch: &mut Vec<AppendRequest>,
        more: &mut mpsc::UnboundedReceiver<AppendRequest>,
        carry: &mut Vec<AppendRequest>,
    ) -> Result<
        (
            Vec<Result<AppendResult, LogError>>,
            Option<u64>,
            Vec<RecordedEvent>,
        ),
        LogError,
    > {
        let mut guard = OpenTransaction(Some(self.write_pool.get().await.map_err(pool_error)?));
        let transaction: &deadpool_postgres::ClientWrapper = guard.client();
        let streams: Vec<String> = batch
            .iter()
            .map(|request| request.stream.as_str())
            .collect::<HashSet<_>>()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let ids: Vec<Uuid> = batch
            .iter()
            .flat_map(|request| request.events.iter().map(|event| event.id))
            .collect();
        // Prepared once per connection, and sent together: the server runs them in order (the
        // lock first, so the read after it sees the last committed batch), the client waits for
        // one round trip instead of three.
        let (lock_head, select_known) = tokio::try_join!(
            transaction.prepare_cached(
                "SELECT next_position, last_recorded_micros FROM ledger_head FOR UPDATE"
            ),
            transaction.prepare_cached(SELECT_KNOWN),
        )
        .map_err(classify)?;
        let parameters: [&(dyn ToSql + Sync); 2] = [&streams, &ids];
        let (opened, late_rows) = {
            // `BEGIN` goes in the same round trip: the server runs the three in order.
            let opened = async {
                tokio::try_join!(
                    transaction.batch_execute("BEGIN"),
                    transaction.query_one(&lock_head, &[]),
                    transaction.query(&select_known, &parameters),
                )
            };
            tokio::pin!(opened);
            // While this transaction waits for the head lock (another server's transaction holds
            // it), more appends queue here: they join this batch rather than wait for the next
            // turn, so that servers taking turns commit batches as large as one server would.
            // Their streams' tips and ids are read in groups as they come, sent behind the lock
            // on the same connection: the server runs those reads as soon as it grants the lock,
            // with no round trip of their own. Those not read by then wait for the next batch.
            let mut fill = Fill::of(batch);
            let mut requested: HashSet<String> = streams.iter().cloned().collect();
            let mut late_reads = futures_util::stream::FuturesUnordered::new();
            let mut late_rows = Vec::new();
            let mut unread = batch.len();
            let read_late = |streams: Vec<String>, ids: Vec<Uuid>| {
                let select_known = &select_known;
                async move {
                    let parameters: [&(dyn ToSql + Sync); 2] = [&streams, &ids];
                    transaction.query(select_known, &parameters).await
                }
            };
            let opened = loop {
                tokio::select! {
                    biased;
                    opened = &mut opened => break opened,
                    Some(rows) = late_reads.next(), if !late_reads.is_empty() => late_rows.push(rows),
                    Some(next) = more.recv(), if fill.has_room(&self.options) => {
                        fill.add(&next);
                        batch.push(next);
                        take_ready(batch, &mut fill, more, &self.options);
                        if batch.len() - unread >= LATE_GROUP || !fill.has_room(&self.options) {
                            let late = &batch[unread..];
                            unread = batch.len();
                            let streams: Vec<String> = late
                                .iter()
                                .filter(|request| requested.insert(request.stream.clone()))
                                .map(|request| request.stream.clone())
                                .collect();
                            let ids: Vec<Uuid> = late
                                .iter()
                                .flat_map(|request| request.events.iter().map(|event| event.id))
                                .collect();
                            late_reads.push(read_late(streams, ids));
                        }
                    }
                }
            };
            if opened.is_ok() {
                while let Some(rows) = late_reads.next().await {
                    late_rows.push(rows);
                }
            }
            carry.extend(batch.drain(unread..));
            (opened, late_rows)
        };
        let ((), head, rows) = opened.map_err(classify)?;
        let mut next_position = head.get::<_, i64>(0) as u64;
        let batch_first = next_position;
        let last_recorded_micros: i64 = head.get(1);
        let mut tips = HashMap::default();
        let mut stored = HashMap::default();
        read_known(rows, &mut tips, &mut stored)?;
        for rows in late_rows {
            read_known(rows.map_err(classify)?, &mut tips, &mut stored)?;
        }
        let recorded_at_micros =
            stamp::recorded_at_micros(chrono::Utc::now(), last_recorded_micros);
        let mut columns = Columns::default();
        let mut written = Vec::new();
        let mut payload = Vec::new();
        let mut results = Vec::with_capacity(batch.len());
        for request in batch.iter_mut() {
            let count = request.events.len() as u64;
            let stream = request.stream.as_str();
            let result = (|| {
                let lookup = |id: &Uuid| {
                    Ok(match stored.get(id) {
                        None => Stored::No,
                        Some((in_stream, version, position)) if in_stream == stream => {
                            Stored::Here(*position, *version)
                        }
                        Some(_) => Stored::Elsewhere,
                    })
                };
                if let Some(result) = stamp::deduplicate(&request.events, lookup)? {
                    return Ok(result);
                }
                let tip = tips.get(stream).copied();
                stamp::check_expected(stream, request.expected, tip.map(|tip| tip.version))?;
                let first_position = next_position;
                let new_tip = stamp::stamp(
                    stream,
                    tip,
                    first_position,
                    recorded_at_micros,
                    std::mem::take(&mut request.events),
                    &mut payload,
                    |recorded, _| {
                        stored.insert(
                            recorded.id,
                            (recorded.stream.clone(), recorded.version, recorded.position),
                        );
                        written.push(recorded.clone());
                        columns.push(recorded, recorded_at_micros);
                    },
                );
                next_position += count;
                tips.insert(stream.to_owned(), new_tip);
                Ok(AppendResult {
                    first_position,
                    last_position: next_position - 1,
                    stream_version: new_tip.version,
                    deduplicated: false,
                })
            })();
            results.push(result);
        }
        if columns.position.is_empty() {
            // Only retries and refusals: nothing to write.
            transaction
                .batch_execute("ROLLBACK")
                .await
                .map_err(classify)?;
            guard.finished();
            return Ok((results, None, written));
        }
        self.recent.lock().expect("recent batches lock").committing = Some(batch_first);
        let new_head = next_position as i64;
        let notice = new_head.to_string();
        let (insert_events, move_head, notify) = tokio::try_join!(
            transaction.prepare_cached(INSERT_EVENTS),
            transaction.prepare_cached(
                "UPDATE ledger_head SET next_position = $1, last_recorded_micros = $2"
            ),
            // Delivered to listeners at commit, and only if it commits.
            transaction.prepare_cached("SELECT pg_notify($1, $2)"),
        )
        .map_err(classify)?;
        let event_parameters: [&(dyn ToSql + Sync); 15] = [
            &columns.position,
            &columns.prev_position,
            &columns.stream,
            &columns.version,
            &columns.prev_version,
            &columns.id,
            &columns.event_type,
            &columns.schema_version,
            &columns.recorded_at_micros,
            &columns.actor,
            &columns.causation_id,
            &columns.correlation_id,
            &columns.data,
            &columns.prev_hash,
            &columns.hash,
        ];
        let head_parameters: [&(dyn ToSql + Sync); 2] = [&new_head, &recorded_at_micros];
        let notify_parameters: [&(dyn ToSql + Sync); 2] = [&CHANNEL, &notice];
        // Sent together with the `COMMIT`, run in order, in one round trip while the head lock
        // is held. If a statement fails, the server aborts the transaction and the `COMMIT`
        // rolls it back. Every answer is awaited and the first error in the statements' order
        // is the one answered: the later statements fail too ("current transaction is
        // aborted", which `classify` takes for a store not as expected), and `try_join!` could
        // see one of those first (tokio's joins rotate which future they poll first), hiding a
        // unique violation that a retry would answer.
        let (inserted, moved, notified, committed) = tokio::join!(
            transaction.execute(&insert_events, &event_parameters),
            transaction.execute(&move_head, &head_parameters),
            transaction.execute(&notify, &notify_parameters),
            transaction.batch_execute("COMMIT"),
        );
        inserted
            .and(moved)
            .and(notified)
            .and(committed)
            .map_err(classify)?;
        guard.finished();
        Ok((results, Some(next_position), written))
    }

    async fn read_all(
        &self,
        from_position: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        let from = i64::try_from(from_position).unwrap_or(i64::MAX);
        let until = from.saturating_add(max.min(1 << 20) as i64);
        let rows = timed(self.options.timeout, async {
            let client = self.pool.get().await.map_err(pool_error)?;
            let statement = client
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM ledger_events \
                     WHERE position >= $1 AND position < $2 ORDER BY position"
                ))
                .await
                .map_err(classify)?;
            client
                .query(&statement, &[&from, &until])
                .await
                .map_err(classify)
        })
        .await?;
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            let event = decode_row(&row)?;
            // Positions are dense and become visible in order: anything else is not the
            // ledger's doing.
            if event.position != from_position + events.len() as u64 {
                return Err(LogError::Store(format!(
                    "position {} follows {} in ledger_events",
                    event.position,
                    from_position + events.len() as u64
                )));
            }
            events.push(event);
        }
        Ok(events)
    }
}

/// A pooled connection inside a transaction the batch opened with `BEGIN`. Unless the batch
/// ended it (`finished`), the connection is taken out of the pool when this is dropped (an
/// error, a timeout that dropped the batch's future): closing it rolls the transaction back,
/// where returning it to the pool would hand the next batch a transaction holding the head lock.
struct OpenTransaction(Option<deadpool_postgres::Object>);

impl OpenTransaction {
    fn client(&self) -> &deadpool_postgres::ClientWrapper {
        self.0
            .as_ref()
            .expect("the connection is held until the end")
    }

    /// The transaction was committed or rolled back: the connection may go back to the pool.
    fn finished(&mut self) {
        drop(self.0.take());
    }
}

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        if let Some(connection) = self.0.take() {
            drop(deadpool_postgres::Object::take(connection));
        }
    }
}

/// Each stream's last event (`$1`), then where each id of `$2` is stored already: one statement,
/// as statements cost the server more than their rows here. Tips are the rows with a hash, ids
/// those with an id. Both are one step in an index per stream or id (`LATERAL … LIMIT 1`), a plan
/// that a table scan never beats: a `DISTINCT ON … WHERE stream = ANY(…)` was planned as a scan
/// of the table (2,000 appends/s), and so was `WHERE id = ANY($2)` while the table was new and
/// small, a generic plan that then stayed until autovacuum analyzed the table (appends at 1,000 to
/// 2,000/s on a fresh database meanwhile).
const SELECT_KNOWN: &str = "SELECT s.stream, e.version, e.hash, NULL::bigint, NULL::uuid \
     FROM unnest($1::text[]) AS s (stream) \
     CROSS JOIN LATERAL (SELECT version, hash FROM ledger_events \
       WHERE stream = s.stream ORDER BY version DESC LIMIT 1) AS e \
     UNION ALL \
     SELECT e.stream, e.version, NULL::bytea, e.position, e.id \
     FROM unnest($2::uuid[]) AS i (id) \
     CROSS JOIN LATERAL (SELECT stream, version, position, id FROM ledger_events \
       WHERE id = i.id LIMIT 1) AS e";

/// Appends that queue while a batch waits for the head lock are read in groups of this many.
const LATE_GROUP: usize = 8;

/// Adds the rows of `SELECT_KNOWN` to `tips` and `stored` (where each id is stored already:
/// stream, version, position).
fn read_known(
    rows: Vec<tokio_postgres::Row>,
    tips: &mut HashMap<String, StreamTip>,
    stored: &mut HashMap<Uuid, (String, u64, u64)>,
) -> Result<(), LogError> {
    for row in rows {
        let stream: String = row.get(0);
        let version = row.get::<_, i64>(1) as u64;
        match row.get::<_, Option<Vec<u8>>>(2) {
            Some(hash) => {
                let hash = hash
                    .try_into()
                    .map_err(|_| LogError::Store("a stream hash is not 32 bytes".into()))?;
                tips.insert(stream, StreamTip { version, hash });
            }
            None => {
                let position = row.get::<_, i64>(3) as u64;
                stored.insert(row.get::<_, Uuid>(4), (stream, version, position));
            }
        }
    }
    Ok(())
}

/// A row of `EVENT_COLUMNS` as a recorded event, its hash checked.
fn decode_row(row: &tokio_postgres::Row) -> Result<RecordedEvent, LogError> {
    let hash_of = |index: usize| -> Result<[u8; 32], LogError> {
        let bytes: Vec<u8> = row.get(index);
        bytes
            .try_into()
            .map_err(|_| LogError::Store("a stored hash is not 32 bytes".into()))
    };
    let micros: i64 = row.get(6);
    let event = RecordedEvent {
        position: row.get::<_, i64>(0) as u64,
        stream: row.get(1),
        version: row.get::<_, i64>(2) as u64,
        id: row.get(3),
        event_type: row.get(4),
        schema_version: row.get::<_, i32>(5) as u32,
        recorded_at: chrono::DateTime::from_timestamp_micros(micros)
            .ok_or_else(|| LogError::Store(format!("recorded time {micros} out of range")))?,
        actor: row.get(7),
        causation_id: row.get(8),
        correlation_id: row.get(9),
        data: row.get(10),
        prev_hash: hash_of(11)?,
        hash: hash_of(12)?,
    };
    if event.computed_hash() != event.hash {
        return Err(LogError::Store(format!(
            "the event at position {} ({} version {}) does not match its hash: the table was changed outside the ledger",
            event.position, event.stream, event.version
        )));
    }
    Ok(event)
}

/// Follows `LISTEN ledger_events` on a connection of its own, moving the head hint on every
/// notification; reconnects after a loss (and moves the hint then, so that subscriptions look
/// for what they may have missed). Ends when the log is dropped.
async fn listen(config: tokio_postgres::Config, tls: MakeRustlsConnect, inner: Weak<Inner>) {
    let mut failures = 0u32;
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let hint = strong.head_hint.clone();
        drop(strong);
        match config.connect(tls.clone()).await {
            Ok((client, mut connection)) => {
                let (sender, mut notifications) = mpsc::unbounded_channel::<String>();
                let driver = tokio::spawn(async move {
                    let mut messages = futures_util::stream::poll_fn(move |context| {
                        connection.poll_message(context)
                    });
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(tokio_postgres::AsyncMessage::Notification(notification)) => {
                                if sender.send(notification.payload().to_owned()).is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                });
                if client
                    .batch_execute(&format!("LISTEN {CHANNEL}"))
                    .await
                    .is_ok()
                {
                    if failures > 0 {
                        tracing::info!("listening for PostgreSQL notifications again");
                    }
                    failures = 0;
                    // Whatever was committed while no one listened: subscriptions look again.
                    hint.send_modify(|_| {});
                    loop {
                        tokio::select! {
                            payload = notifications.recv() => match payload {
                                Some(payload) => {
                                    if let Ok(head) = payload.parse::<u64>() {
                                        hint.send_if_modified(|known| {
                                            let moved = head > *known;
                                            *known = (*known).max(head);
                                            moved
                                        });
                                    }
                                }
                                None => break,
                            },
                            // The log was dropped: stop.
                            () = tokio::time::sleep(Duration::from_secs(5)) => {
                                if inner.strong_count() == 0 {
                                    driver.abort();
                                    return;
                                }
                            }
                        }
                    }
                }
                driver.abort();
                drop(client);
            }
            Err(error) => {
                if failures == 0 {
                    tracing::warn!(%error, "lost the PostgreSQL notification connection; reconnecting (subscriptions poll meanwhile)");
                }
            }
        }
        failures = failures.saturating_add(1);
        tokio::time::sleep(super::follow::backoff(failures)).await;
    }
}

#[async_trait]
impl EventLog for PostgresLog {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, LogError> {
        stamp::check_append(stream, &events)?;
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(AppendRequest {
                stream: stream.to_owned(),
                expected,
                events,
                reply,
            })
            .map_err(|_| LogError::Closed)?;
        answer.await.map_err(|_| LogError::Closed)?
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        let from = i64::try_from(from_version).unwrap_or(i64::MAX);
        let limit = max.min(1 << 20) as i64;
        let rows = timed(self.inner.options.timeout, async {
            let client = self.inner.pool.get().await.map_err(pool_error)?;
            let statement = client
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM ledger_events \
                     WHERE stream = $1 AND version >= $2 ORDER BY version LIMIT $3"
                ))
                .await
                .map_err(classify)?;
            client
                .query(&statement, &[&stream, &from, &limit])
                .await
                .map_err(classify)
        })
        .await?;
        let events = rows.iter().map(decode_row).collect::<Result<Vec<_>, _>>()?;
        // Versions run on from `from_version`, each event linked to the one before it.
        if let Some(first) = events.first() {
            if first.version != from_version {
                return Err(LogError::Store(format!(
                    "{stream} starts at version {} where {from_version} was asked for",
                    first.version
                )));
            }
            stamp::check_links(
                Some(StreamTip {
                    version: first.version,
                    hash: first.hash,
                }),
                &events[1..],
            )
            .map_err(LogError::Store)?;
        }
        Ok(events)
    }

    async fn read_all(
        &self,
        from_position: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        self.inner.read_all(from_position, max).await
    }

    async fn head(&self) -> Result<u64, LogError> {
        timed(self.inner.options.timeout, async {
            let client = self.inner.pool.get().await.map_err(pool_error)?;
            read_head(&client).await
        })
        .await
    }

    async fn stream_version(&self, stream: &str) -> Result<Option<u64>, LogError> {
        timed(self.inner.options.timeout, async {
            let client = self.inner.pool.get().await.map_err(pool_error)?;
            let row = client
                .query_one(
                    "SELECT max(version) FROM ledger_events WHERE stream = $1",
                    &[&stream],
                )
                .await
                .map_err(classify)?;
            Ok(row.get::<_, Option<i64>>(0).map(|version| version as u64))
        })
        .await
    }

    fn subscribe(&self, from_position: u64) -> Box<dyn Subscription> {
        Box::new(super::follow::Follow::new(
            self.inner.clone(),
            self.inner.head_hint.subscribe(),
            Some(self.inner.options.poll),
            from_position,
        ))
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn head_hint(&self) -> Option<u64> {
        // This process's own appends only: waiting for other servers' latest batches would
        // mean reading them from the database first, for a write that does not need them (a
        // stale copy conflicts, and the write is made again on the store's state).
        Some(
            self.inner
                .own_head
                .load(std::sync::atomic::Ordering::Acquire),
        )
    }

    async fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, LogError> {
        let ttl_ms = ttl.as_millis() as f64;
        timed(self.inner.options.timeout, async {
            let client = self.inner.pool.get().await.map_err(pool_error)?;
            // The database's clock decides, so servers' clocks need not agree.
            let row = client
                .query_opt(
                    "INSERT INTO ledger_leases (name, holder, expires_at) \
                     VALUES ($1, $2, now() + $3 * interval '1 millisecond') \
                     ON CONFLICT (name) DO UPDATE \
                       SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
                       WHERE ledger_leases.holder = EXCLUDED.holder \
                          OR ledger_leases.expires_at < now() \
                     RETURNING holder",
                    &[&name, &holder, &ttl_ms],
                )
                .await
                .map_err(classify)?;
            Ok(row.is_some())
        })
        .await
    }

    async fn shared_secret(
        &self,
        name: &str,
        candidate: &[u8],
    ) -> Result<Option<Vec<u8>>, LogError> {
        timed(self.inner.options.timeout, async {
            let client = self.inner.pool.get().await.map_err(pool_error)?;
            client
                .execute(
                    "INSERT INTO ledger_secrets (name, value) VALUES ($1, $2) \
                     ON CONFLICT (name) DO NOTHING",
                    &[&name, &candidate],
                )
                .await
                .map_err(classify)?;
            let row = client
                .query_one("SELECT value FROM ledger_secrets WHERE name = $1", &[&name])
                .await
                .map_err(classify)?;
            Ok(Some(row.get::<_, Vec<u8>>(0)))
        })
        .await
    }
}

/// Subscriptions (`follow::Follow`) take this process's own batches from memory and the rest
/// from the database; they wake on the head hint (a commit here, or a notification) and poll.
#[async_trait]
impl super::follow::Pages for Inner {
    async fn page(&self, position: u64) -> Result<Vec<RecordedEvent>, LogError> {
        let source = self
            .recent
            .lock()
            .expect("recent batches lock")
            .source(position);
        match source {
            Source::Memory(events) => Ok(events),
            // The writer moves the head hint once the batch is in memory (or failed), which
            // wakes the subscription.
            Source::Committing => Ok(Vec::new()),
            Source::Database { until } => {
                let max = (until - position).min(super::follow::PAGE as u64) as usize;
                self.read_all(position, max).await
            }
        }
    }

    fn name(&self) -> &'static str {
        "PostgreSQL"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(first: u64, count: u64) -> Vec<RecordedEvent> {
        (first..first + count)
            .map(|position| RecordedEvent {
                position,
                stream: "item-x".into(),
                version: position,
                id: Uuid::nil(),
                event_type: "CommentAdded".into(),
                schema_version: 1,
                recorded_at: chrono::DateTime::UNIX_EPOCH,
                actor: "test".into(),
                causation_id: None,
                correlation_id: None,
                data: "{}".into(),
                prev_hash: projections::event::ZERO_HASH,
                hash: projections::event::ZERO_HASH,
            })
            .collect()
    }

    fn positions(source: Source) -> Vec<u64> {
        match source {
            Source::Memory(events) => events.iter().map(|event| event.position).collect(),
            other => panic!("expected memory, got {other:?}"),
        }
    }

    #[test]
    fn a_subscription_reads_only_other_servers_events_from_the_database() {
        // This process wrote 10..13 and 20..22, another server 0..10 and 13..20.
        let mut recent = Recent::default();
        recent.push(10, events(10, 3));
        recent.push(20, events(20, 2));
        assert_eq!(recent.source(0), Source::Database { until: 10 });
        assert_eq!(positions(recent.source(11)), vec![11, 12]);
        assert_eq!(recent.source(13), Source::Database { until: 20 });
        assert_eq!(positions(recent.source(20)), vec![20, 21]);
        assert_eq!(recent.source(22), Source::Database { until: u64::MAX });

        // A batch being committed from 22: its positions are waited for, not read back; what
        // lies before it still comes from the database.
        recent.committing = Some(22);
        assert_eq!(recent.source(22), Source::Committing);
        assert_eq!(recent.source(25), Source::Committing);
        assert_eq!(recent.source(13), Source::Database { until: 20 });
        recent.committing = Some(30);
        assert_eq!(recent.source(22), Source::Database { until: 30 });
    }
}
