//! The embedded backend: append-only segment files under a data directory, written by one writer
//! thread with group commit, read by anyone through an in-memory index.
//!
//! Concurrency: appends go over a channel to one writer thread (a plain OS thread, not a tokio
//! task, because `write` and `fdatasync` block). The writer drains every request that queued while
//! the previous fsync ran, encodes them all into one buffer, writes it with one `write` and makes
//! it durable with one `fdatasync`, and only then updates the index and answers each caller. A
//! caller is therefore acknowledged only after the fsync that covers its events.
//!
//! The index (`Index`) is behind a std `RwLock`: it is never held across an `.await`, and readers
//! hold it only to copy out file offsets; the file reads themselves happen outside the lock.

use super::segment::{
    CHUNK_BYTES, Chunk, ChunkReader, FRAME_HEADER_LEN, FrameAt, SEGMENT_HEADER_LEN, Tail,
    chain_hash, classify_tail, decode_segment_header, encode_frame, encode_segment_header,
    frame_at, is_torn_segment_header, list_segments, read_from, segment_file_name,
};
use super::stamp::{self, Stored, StreamTip};
use super::{
    AppendResult, DirectoryLock, EventLog, ExpectedVersion, LogError, LogHealth, Subscription,
};
use async_trait::async_trait;
use foldhash::{HashMap, HashSet};
use projections::event::{Hash, NewEvent, PayloadFields, RecordedEvent, ZERO_HASH};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

/// How far ahead of the last record the writer extends a segment file with zeros.
const PREALLOCATE_BYTES: u64 = 4 * 1024 * 1024;

/// What a subscription reads ahead at most, in events and in bytes (of data in memory, of
/// records from a file): at least one event, however large. Bounded in bytes too, because a
/// subscriber holds what it read ahead until it takes it: 1,024 events of 1.9 MB each held a
/// whole segment per slow event feed.
const SUBSCRIPTION_READ_EVENTS: usize = 1024;
const SUBSCRIPTION_READ_BYTES: usize = 1024 * 1024;

/// Tunables of the embedded log.
#[derive(Debug, Clone)]
pub struct FileLogOptions {
    /// A segment is closed and a new one started once it reaches this many bytes.
    pub segment_size: u64,
    /// The writer stops draining queued requests into one batch past this many bytes.
    pub max_batch_bytes: usize,
    /// The most recently committed events kept in memory for subscriptions (the data bytes they
    /// may hold in all; see `Recent`).
    pub recent_bytes: usize,
}

impl Default for FileLogOptions {
    fn default() -> Self {
        FileLogOptions {
            segment_size: 256 * 1024 * 1024,
            max_batch_bytes: 8 * 1024 * 1024,
            recent_bytes: 8 * 1024 * 1024,
        }
    }
}

/// The embedded event log. Cheap to share behind an `Arc`; dropping the last handle stops the
/// writer and releases the directory lock.
#[derive(Debug)]
pub struct FileLog {
    shared: Arc<Shared>,
    requests: Option<mpsc::Sender<AppendRequest>>,
    head_receiver: watch::Receiver<u64>,
    writer: Option<std::thread::JoinHandle<()>>,
}

/// What readers and the writer share.
#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    index: RwLock<Index>,
    /// `index.head`, readable without the index lock: every read of the read models asks for the
    /// head first (`Projector::caught_up_with`), and must not wait while the writer holds the
    /// index to add a batch. Stored by the writer after the index holds the batch.
    head: AtomicU64,
    recent: Mutex<Recent>,
    /// What the writer last reported about its writes (`EventLog::health`). A std Mutex: set by
    /// the writer on a change of state, read by health checks.
    health: Mutex<LogHealth>,
    /// Batches whose write failed (`EventLog::write_failures`).
    write_failures: AtomicU64,
}

/// The last events committed by this process's writer, as the writer built them, for
/// subscriptions that follow the live end of the log: they take new events from here instead of
/// reading back, hash-checking and decoding what was just written (that read-back was ~6% of the
/// server's CPU under HTTP load). Bounded by the bytes of its events' data; a subscription that
/// falls behind what is kept here reads the file, as any catch-up does. A std Mutex: held to push
/// one batch or to clone out a few events.
#[derive(Debug, Default)]
struct Recent {
    /// The position of `events[0]`; the positions run on without a gap.
    first_position: u64,
    events: VecDeque<RecordedEvent>,
    /// The data bytes of `events` (plus a fixed allowance per event for the rest).
    bytes: usize,
}

/// What an event in `Recent` counts for besides its data.
const RECENT_EVENT_ALLOWANCE: usize = 256;

/// What an event in `Recent` counts for: its data and the allowance.
fn held_bytes(event: &RecordedEvent) -> usize {
    event.data.len() + RECENT_EVENT_ALLOWANCE
}

impl Recent {
    /// Up to `max` events from `position`, and about `max_bytes` of their data (at least one
    /// event), if this holds `position`.
    fn from(&self, position: u64, max: usize, max_bytes: usize) -> Option<Vec<RecordedEvent>> {
        let start = position.checked_sub(self.first_position)? as usize;
        if start >= self.events.len() {
            return None;
        }
        let mut bytes = 0usize;
        Some(
            self.events
                .range(start..)
                .take(max)
                .take_while(|event| {
                    let first = bytes == 0;
                    bytes += event.data.len();
                    first || bytes <= max_bytes
                })
                .cloned()
                .collect(),
        )
    }

    /// Adds the events of a committed batch (in position order, right after what is held) and
    /// forgets the oldest past `limit` bytes.
    fn push(&mut self, events: impl IntoIterator<Item = RecordedEvent>, limit: usize) {
        for event in events {
            if self.events.is_empty() {
                self.first_position = event.position;
            }
            debug_assert_eq!(
                event.position,
                self.first_position + self.events.len() as u64
            );
            self.bytes += held_bytes(&event);
            self.events.push_back(event);
        }
        while self.bytes > limit
            && let Some(oldest) = self.events.pop_front()
        {
            self.bytes -= held_bytes(&oldest);
            self.first_position += 1;
        }
    }
}

#[derive(Debug)]
struct Index {
    segments: Vec<Segment>,
    streams: StreamIndex,
    /// Every stored event id, for idempotent appends. Ids only, not their positions: a retry
    /// (rare) finds its events by reading its stream back, and at a million events the
    /// positions would add 16 MB, 34 MB when the table has just doubled (`BENCHMARKS.md`).
    ids: HashSet<Uuid>,
    /// The position the next event gets.
    head: u64,
    /// The chain hash of the last record (`ZERO_HASH` for an empty log).
    last_chain: Hash,
    last_recorded_micros: i64,
}

#[derive(Debug)]
struct Segment {
    first_position: u64,
    name: String,
    file: Arc<File>,
    /// Byte offset of each record in the file, by position - first_position.
    offsets: Vec<u32>,
    /// Bytes of the file that hold acknowledged records (the header included).
    committed_len: u64,
}

/// The bytes of one record: `start..end` of a segment file.
struct Location {
    position: u64,
    file: Arc<File>,
    segment: String,
    start: u64,
    end: u64,
}

impl Location {
    fn read(&self) -> Result<RecordedEvent, LogError> {
        let mut bytes = vec![0u8; (self.end - self.start) as usize];
        self.file
            .read_exact_at(&mut bytes, self.start)
            .map_err(|error| LogError::io(format!("reading {}", self.segment), error))?;
        Ok(decode_verified(&bytes, self.position, &self.segment, self.start)?.0)
    }
}

/// Every stream's entry by name: the names in a hash map to a slot, the entries in a vector.
///
/// Not one `HashMap<String, StreamEntry>`: a hash table holds up to twice its entries' room
/// (it doubles), so big entries in it cost double; at a million streams the table alone took
/// 170 MB. Here the table holds a 16-byte name and a 4-byte slot.
#[derive(Debug, Default)]
struct StreamIndex {
    slots: HashMap<Box<str>, u32>,
    entries: Vec<StreamEntry>,
}

impl StreamIndex {
    fn get(&self, stream: &str) -> Option<&StreamEntry> {
        let &slot = self.slots.get(stream)?;
        Some(&self.entries[slot as usize])
    }

    /// The stream's entry, made empty if the stream is new.
    fn entry(&mut self, stream: &str) -> &mut StreamEntry {
        // Look up before inserting: allocating the name for every event would dominate opening.
        let slot = match self.slots.get(stream) {
            Some(&slot) => slot,
            None => {
                let slot = u32::try_from(self.entries.len()).expect("fewer than 2^32 streams");
                self.slots.insert(stream.into(), slot);
                self.entries.push(StreamEntry::default());
                slot
            }
        };
        &mut self.entries[slot as usize]
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[derive(Debug, Default)]
struct StreamEntry {
    /// The global position of each version of the stream.
    positions: Vec<u64>,
    last_hash: Hash,
}

struct AppendRequest {
    stream: String,
    expected: ExpectedVersion,
    /// Each with its data as JSON text already (serialized by the caller, on its own thread).
    events: Vec<NewEvent>,
    reply: oneshot::Sender<Result<AppendResult, LogError>>,
}

impl Index {
    fn segment_for(&self, position: u64) -> Option<&Segment> {
        let after = self
            .segments
            .partition_point(|segment| segment.first_position <= position);
        let segment = self.segments.get(after.checked_sub(1)?)?;
        (position < segment.first_position + segment.offsets.len() as u64).then_some(segment)
    }

    /// Where the record at `position` lies.
    fn location(&self, position: u64) -> Option<Location> {
        let segment = self.segment_for(position)?;
        let slot = (position - segment.first_position) as usize;
        let end = segment
            .offsets
            .get(slot + 1)
            .map(|offset| *offset as u64)
            .unwrap_or(segment.committed_len);
        Some(Location {
            position,
            file: segment.file.clone(),
            segment: segment.name.clone(),
            start: segment.offsets[slot] as u64,
            end,
        })
    }

    fn stream_version(&self, stream: &str) -> Option<u64> {
        self.streams
            .get(stream)
            .and_then(|entry| entry.positions.len().checked_sub(1))
            .map(|version| version as u64)
    }
}

/// How a data directory is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenMode {
    /// Locks the directory, cuts a torn tail, starts the writer.
    Write,
    /// Takes no lock and changes nothing; a torn tail is left alone and not read.
    ReadOnly,
}

impl FileLog {
    /// Opens (or creates) the log in `dir` for writing. Takes the directory lock for this process.
    pub fn open(dir: &Path, options: FileLogOptions, purpose: &str) -> anyhow::Result<FileLog> {
        Self::open_with_mode(dir, options, purpose, OpenMode::Write)
    }

    /// Opens an existing log for reading only, alongside a writer that may hold it.
    pub fn open_read_only(dir: &Path) -> anyhow::Result<FileLog> {
        Self::open_with_mode(dir, FileLogOptions::default(), "read", OpenMode::ReadOnly)
    }

    fn open_with_mode(
        dir: &Path,
        options: FileLogOptions,
        purpose: &str,
        mode: OpenMode,
    ) -> anyhow::Result<FileLog> {
        use anyhow::Context;
        let lock = match mode {
            OpenMode::Write => {
                create_data_directory(dir)?;
                Some(DirectoryLock::acquire(dir, purpose)?)
            }
            OpenMode::ReadOnly => {
                anyhow::ensure!(dir.is_dir(), "no data directory at {}", dir.display());
                None
            }
        };
        let started = std::time::Instant::now();
        let mut index = load_index(dir, mode)?;
        if index.segments.is_empty() && mode == OpenMode::Write {
            let segment = create_segment(dir, 0, &ZERO_HASH)?;
            index.segments.push(segment);
        }
        tracing::info!(
            dir = %dir.display(),
            events = index.head,
            streams = index.streams.len(),
            segments = index.segments.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "opened event log"
        );
        let (head_sender, head_receiver) = watch::channel(index.head);
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            head: AtomicU64::new(index.head),
            index: RwLock::new(index),
            recent: Mutex::new(Recent::default()),
            health: Mutex::new(LogHealth::Writable),
            write_failures: AtomicU64::new(0),
        });
        let (requests, writer) = match lock {
            Some(lock) => {
                let (sender, receiver) = mpsc::channel();
                let writer = Writer::start(shared.clone(), options, lock, head_sender)?;
                let handle = std::thread::Builder::new()
                    .name("ledger-log-writer".into())
                    .spawn(move || writer.run(receiver))
                    .context("starting the log writer thread")?;
                (Some(sender), Some(handle))
            }
            None => {
                drop(head_sender);
                (None, None)
            }
        };
        Ok(FileLog {
            shared,
            requests,
            head_receiver,
            writer,
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The position the next appended event will get, read from memory (`EventLog::head`
    /// without the `await`).
    pub fn head_now(&self) -> u64 {
        self.shared.head.load(Ordering::Acquire)
    }

    /// The version of the stream's last event, read from the index.
    pub fn stream_version_now(&self, stream: &str) -> Option<u64> {
        self.shared
            .index
            .read()
            .expect("index lock")
            .stream_version(stream)
    }
}

impl Drop for FileLog {
    fn drop(&mut self) {
        // Closing the channel ends the writer once it has answered everything queued.
        self.requests.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

#[async_trait]
impl EventLog for FileLog {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, LogError> {
        let requests = self
            .requests
            .as_ref()
            .ok_or_else(|| LogError::InvalidAppend("the log is open read-only".into()))?;
        // Checks of the request alone happen here, on the caller's thread, not the writer's.
        stamp::check_append(stream, &events)?;
        let (reply, answer) = oneshot::channel();
        requests
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
        self.shared.read_stream(stream, from_version, max)
    }

    async fn read_all(
        &self,
        from_position: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        self.shared.read_all(from_position, max)
    }

    async fn head(&self) -> Result<u64, LogError> {
        Ok(self.head_now())
    }

    async fn stream_version(&self, stream: &str) -> Result<Option<u64>, LogError> {
        Ok(self.stream_version_now(stream))
    }

    fn backend(&self) -> &'static str {
        "file"
    }

    fn stream_count(&self) -> Option<usize> {
        Some(self.shared.index.read().expect("index lock").streams.len())
    }

    fn health(&self) -> LogHealth {
        self.shared.health.lock().expect("log health lock").clone()
    }

    fn write_failures(&self) -> u64 {
        self.shared.write_failures.load(Ordering::Relaxed)
    }

    fn subscribe(&self, from_position: u64) -> Box<dyn Subscription> {
        Box::new(FileSubscription {
            shared: self.shared.clone(),
            next_position: from_position,
            buffer: VecDeque::new(),
            head: self.head_receiver.clone(),
        })
    }
}

struct FileSubscription {
    shared: Arc<Shared>,
    next_position: u64,
    buffer: VecDeque<RecordedEvent>,
    head: watch::Receiver<u64>,
}

#[async_trait]
impl Subscription for FileSubscription {
    fn drain_ready(&mut self, max: usize) -> Vec<RecordedEvent> {
        let count = max.min(self.buffer.len());
        self.buffer.drain(..count).collect()
    }

    async fn next(&mut self) -> Result<RecordedEvent, LogError> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Ok(event);
            }
            // Mark the current head as seen before reading up to it: an append acknowledged after
            // this line changes the watch again, so `changed()` below cannot miss it.
            let head = *self.head.borrow_and_update();
            if self.next_position < head {
                let recent = self.shared.recent.lock().expect("recent events lock").from(
                    self.next_position,
                    SUBSCRIPTION_READ_EVENTS,
                    SUBSCRIPTION_READ_BYTES,
                );
                let events = match recent {
                    Some(events) => events,
                    None => self.shared.read_all_within(
                        self.next_position,
                        SUBSCRIPTION_READ_EVENTS,
                        SUBSCRIPTION_READ_BYTES,
                    )?,
                };
                self.next_position += events.len() as u64;
                self.buffer.extend(events);
                continue;
            }
            if self.head.changed().await.is_err() {
                // The writer is gone; whatever it acknowledged is readable, then the feed ends.
                let head = self.shared.index.read().expect("index lock").head;
                if self.next_position < head {
                    continue;
                }
                return Err(LogError::Closed);
            }
        }
    }
}

impl Shared {
    fn read_all(&self, from_position: u64, max: usize) -> Result<Vec<RecordedEvent>, LogError> {
        self.read_all_within(from_position, max, usize::MAX)
    }

    /// Up to `max` events from `from_position`, within one segment and about `max_bytes` of
    /// records (at least one).
    fn read_all_within(
        &self,
        from_position: u64,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        // Copy out the byte range to read, within one segment, under the lock; read outside it.
        let (file, name, first_offset, end_offset, count) = {
            let index = self.index.read().expect("index lock");
            let Some(segment) = index.segment_for(from_position) else {
                return Ok(Vec::new());
            };
            let start = (from_position - segment.first_position) as usize;
            let last = (start + max.max(1)).min(segment.offsets.len());
            // Records that start within `max_bytes` of the first: the first always does.
            let first = segment.offsets[start] as usize;
            let end = start
                + 1
                + segment.offsets[start + 1..last]
                    .partition_point(|&offset| (offset as usize - first) < max_bytes);
            let end_offset = match segment.offsets.get(end) {
                Some(offset) => *offset as u64,
                None => segment.committed_len,
            };
            (
                segment.file.clone(),
                segment.name.clone(),
                segment.offsets[start] as u64,
                end_offset,
                end - start,
            )
        };
        let mut bytes = vec![0u8; (end_offset - first_offset) as usize];
        file.read_exact_at(&mut bytes, first_offset)
            .map_err(|error| LogError::io(format!("reading {name}"), error))?;
        let mut events = Vec::with_capacity(count);
        let mut cursor = 0usize;
        for expected_position in from_position..from_position + count as u64 {
            let offset = first_offset + cursor as u64;
            let event = decode_verified(&bytes[cursor..], expected_position, &name, offset)?;
            cursor += event.1;
            events.push(event.0);
        }
        Ok(events)
    }

    fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        let locations: Vec<Location> = {
            let index = self.index.read().expect("index lock");
            let Some(entry) = index.streams.get(stream) else {
                return Ok(Vec::new());
            };
            entry
                .positions
                .iter()
                .skip(from_version as usize)
                .take(max)
                .filter_map(|&position| index.location(position))
                .collect()
        };
        locations.iter().map(Location::read).collect()
    }
}

/// Decodes the frame at the start of `bytes`, checking its position and hash.
fn decode_verified(
    bytes: &[u8],
    expected_position: u64,
    segment: &str,
    offset: u64,
) -> Result<(RecordedEvent, usize), LogError> {
    let corrupt = |reason: String| LogError::Corrupt {
        segment: segment.to_owned(),
        offset,
        reason,
    };
    let frame = match frame_at(bytes) {
        FrameAt::Frame(frame) => frame,
        FrameAt::End | FrameAt::Incomplete => return Err(corrupt("record is cut short".into())),
        FrameAt::Damaged(reason) => return Err(corrupt(reason)),
    };
    if frame.position != expected_position {
        return Err(corrupt(format!(
            "record says position {}, expected {expected_position}",
            frame.position
        )));
    }
    if !frame.hash_matches() {
        return Err(corrupt(format!(
            "hash of position {expected_position} does not match its payload"
        )));
    }
    let fields = frame.fields().map_err(corrupt)?;
    Ok((
        fields.to_recorded(frame.position, frame.event_hash),
        frame.len,
    ))
}

/// Reads the one event at `position`, with the index already in hand.
fn read_at_position(index: &Index, position: u64) -> Result<RecordedEvent, LogError> {
    index
        .location(position)
        .ok_or_else(|| LogError::Corrupt {
            segment: String::new(),
            offset: 0,
            reason: format!("indexed position {position} is in no segment"),
        })?
        .read()
}

/// Creates the data directory (and its parents) readable by the owner only, as the segments,
/// the lock and the callback key in it are. A directory that exists is left as it is, with a
/// warning if others may read it: its modes are the operator's.
fn create_data_directory(dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))?;
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("reading data directory {}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{:o}", mode & 0o777),
            "the data directory may be read by other users; chmod 700 it"
        );
    }
    Ok(())
}

/// Creates the segment starting at `first_position`: its file (owner-only), its header, durable,
/// and durable in the directory. On failure nothing of it is left behind (the file is removed
/// again, as far as that works), so that creating it can be retried: a failure here paused the
/// log, it did not poison it (`LogHealth::WritesPaused`).
fn create_segment(
    dir: &Path,
    first_position: u64,
    chain_before: &Hash,
) -> Result<Segment, LogError> {
    let name = segment_file_name(first_position);
    let path = dir.join(&name);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|error| LogError::io(format!("creating {}", path.display()), error))?;
    let written = file
        .write_all(&encode_segment_header(first_position, chain_before))
        .and_then(|()| file.sync_all())
        .map_err(|error| LogError::io(format!("writing header of {name}"), error))
        // The new file's directory entry must be durable too, or a crash could lose the whole file.
        .and_then(|()| {
            File::open(dir)
                .and_then(|directory| directory.sync_all())
                .map_err(|error| {
                    LogError::io(format!("syncing directory {}", dir.display()), error)
                })
        });
    if let Err(error) = written {
        // A segment file holding a header or less is no part of the log yet: nothing was
        // acknowledged in it. Left behind, it would stop the next attempt (`create_new`).
        if let Err(remove_error) = std::fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), %remove_error, "could not remove a segment file whose creation failed");
        }
        return Err(error);
    }
    Ok(Segment {
        first_position,
        name,
        file: Arc::new(file),
        offsets: Vec::new(),
        committed_len: SEGMENT_HEADER_LEN as u64,
    })
}

/// Rebuilds the in-memory index from the segment files.
///
/// Every segment is scanned frame by frame (structure, positions, stream versions and links);
/// the SHA-256 of each payload is recomputed for the last segment only, which is where a crash
/// can leave damage. Older segments were verified when they were written and are verified again
/// by every read and by `ledger verify`; skipping their hashes here keeps opening fast.
fn load_index(dir: &Path, mode: OpenMode) -> anyhow::Result<Index> {
    use anyhow::Context;
    let mut index = Index {
        segments: Vec::new(),
        streams: StreamIndex::default(),
        ids: HashSet::default(),
        head: 0,
        last_chain: ZERO_HASH,
        last_recorded_micros: i64::MIN,
    };
    let segment_paths =
        list_segments(dir).with_context(|| format!("listing segments in {}", dir.display()))?;
    let segment_count = segment_paths.len();
    // One buffer for every chunk of every segment: its pages are faulted in once.
    let mut chunk_buffer = Vec::with_capacity(CHUNK_BYTES);
    let mut chunk_starts = Vec::new();
    for (number, (first_position, path)) in segment_paths.into_iter().enumerate() {
        let is_last = number + 1 == segment_count;
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let corrupt = |offset: u64, reason: String| LogError::Corrupt {
            segment: name.clone(),
            offset,
            reason,
        };
        let (mut reader, header) =
            ChunkReader::open(&path).with_context(|| format!("reading {}", path.display()))?;
        if is_last && first_position == index.head {
            // Only a short or all-zero header can be torn; read the whole file to tell.
            let maybe_torn =
                header.len() < SEGMENT_HEADER_LEN || header.iter().all(|&byte| byte == 0);
            if maybe_torn
                && is_torn_segment_header(
                    &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
                )
            {
                remove_torn_segment(&path, mode)?;
                break;
            }
        }
        let header = decode_segment_header(&header).map_err(|reason| corrupt(0, reason))?;
        if header.first_position != first_position || first_position != index.head {
            return Err(corrupt(
                8,
                format!(
                    "segment starts at position {} (named {first_position}), expected {}",
                    header.first_position, index.head
                ),
            )
            .into());
        }
        if header.chain_before != index.last_chain {
            return Err(corrupt(
                16,
                "chain hash does not continue the previous segment".into(),
            )
            .into());
        }
        let mut offsets = Vec::new();
        let mut end_of_records = SEGMENT_HEADER_LEN as u64;
        // A failing record in the last segment may be a torn tail; that depends on the bytes from
        // it to the end of the file (`Rest` chunks hold them already; for a whole record that
        // fails, they are read again, which happens at most once).
        // The tail of the last segment, from a failing record's offset to the end of the file:
        // a `Rest` chunk holds it already; for a whole record that fails it is read again, which
        // happens at most once.
        let tail_at = |offset: u64, rest: Option<&[u8]>, position: u64| -> anyhow::Result<Tail> {
            if !is_last {
                return Ok(Tail::Damage);
            }
            Ok(match rest {
                Some(rest) => classify_tail(rest, position),
                None => classify_tail(
                    &read_from(&path, offset)
                        .with_context(|| format!("reading {}", path.display()))?,
                    position,
                ),
            })
        };
        'chunks: while let Some(chunk) = reader
            .next_chunk(&mut chunk_buffer, &mut chunk_starts)
            .with_context(|| format!("reading {}", path.display()))?
        {
            let chunk_offset = match chunk {
                Chunk::Records { offset } => offset,
                Chunk::Rest { offset } => {
                    match tail_at(offset, Some(&chunk_buffer), index.head)? {
                        // Space the writer preallocated: the end of the log, kept for reuse.
                        Tail::Preallocated => break 'chunks,
                        Tail::Torn => {
                            cut_torn_tail(&path, offset, reader.len(), mode)?;
                            break 'chunks;
                        }
                        Tail::Damage => {}
                    }
                    let reason = match frame_at(&chunk_buffer) {
                        FrameAt::Damaged(reason) => reason,
                        _ => "record is cut short".to_owned(),
                    };
                    return Err(corrupt(offset, reason).into());
                }
            };
            for &start in &chunk_starts {
                let offset = chunk_offset + start as u64;
                let FrameAt::Frame(frame) = frame_at(&chunk_buffer[start..]) else {
                    unreachable!("chunks hold whole records");
                };
                // Hashes are recomputed in the last segment only (see above).
                let hash_ok = !is_last || frame.hash_matches();
                let frame_verifies =
                    frame.position == index.head && hash_ok && frame.fields().is_ok();
                if !frame_verifies && tail_at(offset, None, index.head)? == Tail::Torn {
                    cut_torn_tail(&path, offset, reader.len(), mode)?;
                    break 'chunks;
                }
                if frame.position != index.head {
                    return Err(corrupt(
                        offset,
                        format!(
                            "record says position {}, expected {}",
                            frame.position, index.head
                        ),
                    )
                    .into());
                }
                if is_last {
                    if !hash_ok {
                        return Err(corrupt(
                            offset,
                            format!(
                                "hash of position {} does not match its payload",
                                frame.position
                            ),
                        )
                        .into());
                    }
                    if chain_hash(&index.last_chain, frame.position, &frame.event_hash)
                        != frame.chain_hash
                    {
                        return Err(corrupt(offset, "chain hash does not link".into()).into());
                    }
                }
                let fields = frame.fields().map_err(|reason| corrupt(offset, reason))?;
                index_event(&mut index, &fields, frame.event_hash)
                    .map_err(|reason| corrupt(offset, reason))?;
                index.last_chain = frame.chain_hash;
                index.last_recorded_micros =
                    index.last_recorded_micros.max(fields.recorded_at_micros);
                offsets.push(offset as u32);
                end_of_records = offset + frame.len as u64;
            }
        }
        let file = match mode {
            // Not O_APPEND: the writer writes at the committed length, inside preallocated space.
            OpenMode::Write => OpenOptions::new().read(true).write(true).open(&path),
            OpenMode::ReadOnly => File::open(&path),
        }
        .with_context(|| format!("opening {}", path.display()))?;
        index.segments.push(Segment {
            first_position,
            name,
            file: Arc::new(file),
            offsets,
            committed_len: end_of_records,
        });
    }
    Ok(index)
}

/// Adds one stored event to the index, checking its stream version and link.
fn index_event(index: &mut Index, fields: &PayloadFields<'_>, hash: Hash) -> Result<(), String> {
    let position = index.head;
    let entry = index.streams.entry(fields.stream);
    if fields.version != entry.positions.len() as u64 {
        return Err(format!(
            "stream {} version {} follows version {:?}",
            fields.stream,
            fields.version,
            entry.positions.len().checked_sub(1)
        ));
    }
    if fields.prev_hash != entry.last_hash {
        return Err(format!(
            "stream {} version {} does not link to the previous event's hash",
            fields.stream, fields.version
        ));
    }
    if !index.ids.insert(fields.id) {
        return Err(format!("event id {} is stored twice", fields.id));
    }
    entry.positions.push(position);
    entry.last_hash = hash;
    index.head += 1;
    Ok(())
}

fn remove_torn_segment(path: &Path, mode: OpenMode) -> anyhow::Result<()> {
    use anyhow::Context;
    tracing::warn!(
        segment = %path.display(),
        "the last segment has no complete header (a crash while creating it); it held no record"
    );
    if mode == OpenMode::Write {
        std::fs::remove_file(path)
            .with_context(|| format!("removing torn segment {}", path.display()))?;
    }
    Ok(())
}

fn cut_torn_tail(path: &Path, offset: u64, file_len: u64, mode: OpenMode) -> anyhow::Result<()> {
    use anyhow::Context;
    match mode {
        OpenMode::Write => {
            tracing::warn!(
                segment = %path.display(),
                offset,
                bytes = file_len - offset,
                "cutting a torn record at the tail of the log (a write a crash interrupted; it was never acknowledged)"
            );
            let file = OpenOptions::new()
                .write(true)
                .open(path)
                .with_context(|| format!("opening {} to cut its torn tail", path.display()))?;
            file.set_len(offset)
                .and_then(|()| file.sync_all())
                .with_context(|| format!("cutting the torn tail of {}", path.display()))?;
        }
        OpenMode::ReadOnly => {
            tracing::warn!(
                segment = %path.display(),
                offset,
                "incomplete record at the tail of the log (a write in progress, or a crash's; the next writer cuts it)"
            );
        }
    }
    Ok(())
}

/// The writer thread's state.
struct Writer {
    shared: Arc<Shared>,
    options: FileLogOptions,
    /// Held for the writer's life: the directory is ours until the writer stops.
    _lock: DirectoryLock,
    head_sender: watch::Sender<u64>,
    /// The open segment, appended to by this thread only.
    current: Arc<File>,
    /// Bytes of the open segment that hold acknowledged records.
    current_len: u64,
    /// Bytes of the open segment file, zeros past `current_len` (see `preallocate_through`).
    allocated_len: u64,
    /// Why appends are refused until the log is reopened (a write or fsync of records failed).
    poisoned: Option<String>,
    /// Why appends are refused for now (the next segment could not be created); every batch
    /// retries, and the first that succeeds clears this.
    paused: Option<String>,
    buffer: Vec<u8>,
    payload: Vec<u8>,
}

/// A request whose events are in the batch buffer: its caller and the answer it gets once durable.
type Staged = (
    oneshot::Sender<Result<AppendResult, LogError>>,
    AppendResult,
);

/// An event encoded into the batch buffer, to be indexed once durable.
struct StagedEvent {
    /// The event as a reader of the file would decode it.
    recorded: RecordedEvent,
    offset_in_batch: usize,
}

impl Writer {
    fn start(
        shared: Arc<Shared>,
        options: FileLogOptions,
        lock: DirectoryLock,
        head_sender: watch::Sender<u64>,
    ) -> anyhow::Result<Writer> {
        let (current, current_len) = {
            let index = shared.index.read().expect("index lock");
            let segment = index.segments.last().expect("a writable log has a segment");
            (segment.file.clone(), segment.committed_len)
        };
        // Zeros a previous run preallocated may follow the last record; they are reused.
        let allocated_len = current
            .metadata()
            .map(|meta| meta.len())
            .unwrap_or(current_len)
            .max(current_len);
        Ok(Writer {
            shared,
            options,
            _lock: lock,
            head_sender,
            current,
            current_len,
            allocated_len,
            poisoned: None,
            paused: None,
            buffer: Vec::with_capacity(1 << 20),
            payload: Vec::with_capacity(4096),
        })
    }

    fn run(mut self, requests: mpsc::Receiver<AppendRequest>) {
        while let Some(first) = next_request(&requests) {
            let mut batch = vec![first];
            let mut batch_bytes = estimate_bytes(&batch[0]);
            while batch_bytes < self.options.max_batch_bytes {
                match requests.try_recv() {
                    Ok(request) => {
                        batch_bytes += estimate_bytes(&request);
                        batch.push(request);
                    }
                    Err(_) => break,
                }
            }
            self.write_batch(batch);
        }
        if self.poisoned.is_none()
            && let Err(error) = self.trim()
        {
            tracing::warn!(%error, "could not trim the preallocated space at shutdown");
        }
    }

    fn write_batch(&mut self, batch: Vec<AppendRequest>) {
        let _span = tracing::debug_span!("group_commit", requests = batch.len()).entered();
        if let Some(reason) = &self.poisoned {
            for request in batch {
                let _ = request.reply.send(Err(LogError::Poisoned(reason.clone())));
            }
            return;
        }
        if let Err(failure) = self.roll_if_full() {
            let (refusal, reason): (fn(String) -> LogError, String) = match failure {
                RollFailure::Poisoning(reason) => {
                    self.poison(reason.clone());
                    (LogError::Poisoned, reason)
                }
                RollFailure::Transient(reason) => {
                    self.pause(reason.clone());
                    (LogError::WritesPaused, reason)
                }
            };
            for request in batch {
                let _ = request.reply.send(Err(refusal(reason.clone())));
            }
            return;
        }
        if let Some(reason) = self.paused.take() {
            // Only a failed roll pauses, and the segment stays full until a roll succeeds: this
            // batch got here because the retry worked.
            tracing::warn!(%reason, "the log takes writes again: the new segment was created after all");
            self.publish_health(LogHealth::Writable);
        }
        self.buffer.clear();
        let mut staged: Vec<Staged> = Vec::with_capacity(batch.len());
        let mut staged_events = Vec::new();
        let (batch_chain, batch_recorded_micros) = {
            let index = self.shared.index.read().expect("index lock");
            let mut batch_state = BatchState {
                index: &index,
                streams: HashMap::default(),
                ids: HashMap::default(),
                next_position: index.head,
                chain: index.last_chain,
                recorded_at_micros: stamp::recorded_at_micros(
                    chrono::Utc::now(),
                    index.last_recorded_micros,
                ),
            };
            for mut request in batch {
                match batch_state.stage(
                    &mut request,
                    &mut self.buffer,
                    &mut self.payload,
                    &mut staged_events,
                ) {
                    Ok(result) => staged.push((request.reply, result)),
                    Err(error) => {
                        let _ = request.reply.send(Err(error));
                    }
                }
            }
            (batch_state.chain, batch_state.recorded_at_micros)
        };
        if !self.buffer.is_empty()
            && let Err(reason) = self.write_and_sync()
        {
            for (reply, _) in staged {
                let _ = reply.send(Err(LogError::Poisoned(reason.clone())));
            }
            return;
        }
        let batch_start = self.current_len;
        self.current_len += self.buffer.len() as u64;
        let new_head = {
            let mut index = self.shared.index.write().expect("index lock");
            let index = &mut *index;
            for event in &staged_events {
                let position = index.head;
                let segment = index.segments.last_mut().expect("a segment");
                segment
                    .offsets
                    .push((batch_start + event.offset_in_batch as u64) as u32);
                let entry = index.streams.entry(&event.recorded.stream);
                entry.positions.push(position);
                entry.last_hash = event.recorded.hash;
                index.ids.insert(event.recorded.id);
                index.head += 1;
            }
            if let Some(segment) = index.segments.last_mut() {
                segment.committed_len = self.current_len;
            }
            if !self.buffer.is_empty() {
                index.last_chain = batch_chain;
                index.last_recorded_micros = batch_recorded_micros;
            }
            index.head
        };
        self.shared.head.store(new_head, Ordering::Release);
        // Before the new head is announced: a subscription that sees it finds these here.
        self.shared.recent.lock().expect("recent events lock").push(
            staged_events.into_iter().map(|event| event.recorded),
            self.options.recent_bytes,
        );
        self.head_sender.send_replace(new_head);
        for (reply, result) in staged {
            let _ = reply.send(Ok(result));
        }
    }

    /// Writes the batch and makes it durable; on failure leaves the file as it was if it can and
    /// poisons the log (see `LogError::Poisoned`).
    fn write_and_sync(&mut self) -> Result<(), String> {
        let end = self.current_len + self.buffer.len() as u64;
        let result = self.preallocate_through(end).and_then(|()| {
            self.current.write_all_at(&self.buffer, self.current_len)?;
            self.current.sync_data()
        });
        if let Err(error) = result {
            let reason = format!("writing the log failed: {error}");
            // Cut what may have reached the file, so that a reopen does not find unacknowledged
            // records that are complete and valid.
            let _ = self.current.set_len(self.current_len);
            let _ = self.current.sync_all();
            self.allocated_len = self.current_len;
            self.poison(reason.clone());
            return Err(reason);
        }
        Ok(())
    }

    /// Refuses every later append until the log is reopened (see `LogHealth::Poisoned`).
    fn poison(&mut self, reason: String) {
        self.shared.write_failures.fetch_add(1, Ordering::Relaxed);
        tracing::error!(%reason, "the log refuses every further append until it is reopened (restart the server): a write or fsync of records failed");
        self.paused = None;
        self.poisoned = Some(reason.clone());
        self.publish_health(LogHealth::Poisoned { reason });
    }

    /// Refuses appends until a retry of what failed succeeds (see `LogHealth::WritesPaused`);
    /// logged once per reason, not once per refused batch.
    fn pause(&mut self, reason: String) {
        self.shared.write_failures.fetch_add(1, Ordering::Relaxed);
        if self.paused.as_deref() != Some(reason.as_str()) {
            tracing::error!(%reason, "the log refuses appends until it can start a new segment; every append retries");
        }
        self.paused = Some(reason.clone());
        self.publish_health(LogHealth::WritesPaused { reason });
    }

    fn publish_health(&self, health: LogHealth) {
        *self.shared.health.lock().expect("log health lock") = health;
    }

    /// Makes sure the segment file has zero-filled space through `end`, extending it by
    /// `PREALLOCATE_BYTES` of written zeros at a time. Writing records into space the file already
    /// has means `fdatasync` need not commit a new file size to the journal on every batch (one
    /// device write per batch instead of two); the extension itself is made durable by the same
    /// `fdatasync` as the batch that needed it. Zeros past the last record are, by the format, the
    /// end of the log (`docs/ledger-format.md`).
    fn preallocate_through(&mut self, end: u64) -> std::io::Result<()> {
        if end <= self.allocated_len {
            return Ok(());
        }
        // Written from one static block of zeros: allocating 4 MiB of fresh zeroed pages for each
        // extension showed up in the writer thread's profile (page faults) under HTTP load.
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        let new_len = end.max(self.allocated_len) + PREALLOCATE_BYTES;
        let mut offset = self.allocated_len;
        while offset < new_len {
            let chunk = (new_len - offset).min(ZEROS.len() as u64) as usize;
            self.current.write_all_at(&ZEROS[..chunk], offset)?;
            offset += chunk as u64;
        }
        self.allocated_len = new_len;
        Ok(())
    }

    /// Cuts the preallocated space after the last record (at a segment's close, or shutdown), so
    /// that closed segments end with their last record.
    fn trim(&mut self) -> std::io::Result<()> {
        if self.allocated_len > self.current_len {
            self.current.set_len(self.current_len)?;
            self.current.sync_all()?;
            self.allocated_len = self.current_len;
        }
        Ok(())
    }

    /// Starts a new segment once the open one is full. Closing the full one (trimming its
    /// preallocated zeros and syncing it) is a write of the file that holds records: its failure
    /// poisons. Creating the next one touches no record: its failure (no file descriptor left,
    /// no room for a directory entry) only pauses, and the next batch tries again.
    fn roll_if_full(&mut self) -> Result<(), RollFailure> {
        if self.current_len < self.options.segment_size {
            return Ok(());
        }
        let (head, chain) = {
            let index = self.shared.index.read().expect("index lock");
            (index.head, index.last_chain)
        };
        self.trim().map_err(|error| {
            RollFailure::Poisoning(format!("closing a full segment failed: {error}"))
        })?;
        let segment = create_segment(&self.shared.dir, head, &chain).map_err(|error| {
            RollFailure::Transient(format!("could not start a new segment: {error}"))
        })?;
        self.current = segment.file.clone();
        self.current_len = segment.committed_len;
        self.allocated_len = self.current_len;
        tracing::info!(segment = %segment.name, first_position = head, "started a new segment");
        self.shared
            .index
            .write()
            .expect("index lock")
            .segments
            .push(segment);
        Ok(())
    }
}

/// Why the writer could not start a new segment.
enum RollFailure {
    /// Closing the full segment failed: the log is poisoned.
    Poisoning(String),
    /// Creating the next segment failed; nothing was written, and the next batch retries.
    Transient(String),
}

/// The next request: polled for a few microseconds before sleeping on the channel. A caller that
/// was just acknowledged usually sends its next append within that time, and catching it awake
/// saves a sleep and a wake-up of this thread (tens of microseconds on a small VM) per append.
fn next_request(requests: &mpsc::Receiver<AppendRequest>) -> Option<AppendRequest> {
    let spin_until = std::time::Instant::now() + std::time::Duration::from_micros(40);
    loop {
        match requests.try_recv() {
            Ok(request) => return Some(request),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) if std::time::Instant::now() < spin_until => {
                std::hint::spin_loop();
            }
            Err(mpsc::TryRecvError::Empty) => return requests.recv().ok(),
        }
    }
}

fn estimate_bytes(request: &AppendRequest) -> usize {
    request
        .events
        .iter()
        .map(|event| FRAME_HEADER_LEN + 160 + event.data.get().len())
        .sum()
}

/// The state of streams and ids as the batch being built leaves them.
struct BatchState<'a> {
    index: &'a Index,
    /// Streams this batch appends to, and their tips after it.
    streams: HashMap<String, StreamTip>,
    /// Ids this batch stores: position, stream, version.
    ids: HashMap<Uuid, (u64, String, u64)>,
    next_position: u64,
    chain: Hash,
    recorded_at_micros: i64,
}

impl BatchState<'_> {
    fn current(&self, stream: &str) -> Option<StreamTip> {
        self.streams.get(stream).copied().or_else(|| {
            let entry = self.index.streams.get(stream)?;
            let version = entry.positions.len().checked_sub(1)? as u64;
            Some(StreamTip {
                version,
                hash: entry.last_hash,
            })
        })
    }

    /// Where an already-stored id lives, as seen from an append to `stream`.
    fn stored_id(&self, id: &Uuid, stream: &str) -> Result<Stored, LogError> {
        if let Some((position, batch_stream, version)) = self.ids.get(id) {
            return Ok(if batch_stream == stream {
                Stored::Here(*position, *version)
            } else {
                Stored::Elsewhere
            });
        }
        if !self.index.ids.contains(id) {
            return Ok(Stored::No);
        }
        // Only a retry (or a reused id) gets here. A retry's events are in its own stream, most
        // likely at its end: read the stream back until the id turns up. An id not found there
        // is another stream's.
        if let Some(entry) = self.index.streams.get(stream) {
            for (version, &position) in entry.positions.iter().enumerate().rev() {
                if read_at_position(self.index, position)?.id == *id {
                    return Ok(Stored::Here(position, version as u64));
                }
            }
        }
        Ok(Stored::Elsewhere)
    }

    /// Stages the request's events after what the batch holds, taking them out of the request:
    /// their strings move into the recorded events rather than being copied.
    fn stage(
        &mut self,
        request: &mut AppendRequest,
        buffer: &mut Vec<u8>,
        payload: &mut Vec<u8>,
        staged_events: &mut Vec<StagedEvent>,
    ) -> Result<AppendResult, LogError> {
        if let Some(result) =
            stamp::deduplicate(&request.events, |id| self.stored_id(id, &request.stream))?
        {
            return Ok(result);
        }
        let current = self.current(&request.stream);
        stamp::check_expected(
            &request.stream,
            request.expected,
            current.map(|tip| tip.version),
        )?;
        let first_position = self.next_position;
        let count = request.events.len() as u64;
        let chain = &mut self.chain;
        let batch_ids = &mut self.ids;
        let tip = stamp::stamp(
            &request.stream,
            current,
            first_position,
            self.recorded_at_micros,
            std::mem::take(&mut request.events),
            payload,
            |recorded, payload| {
                let offset_in_batch = buffer.len();
                *chain = encode_frame(buffer, recorded.position, payload, &recorded.hash, chain);
                batch_ids.insert(
                    recorded.id,
                    (recorded.position, recorded.stream.clone(), recorded.version),
                );
                staged_events.push(StagedEvent {
                    recorded,
                    offset_in_batch,
                });
            },
        );
        self.next_position += count;
        self.streams.insert(request.stream.clone(), tip);
        Ok(AppendResult {
            first_position,
            last_position: self.next_position - 1,
            stream_version: tip.version,
            deduplicated: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(position: u64, data_bytes: usize) -> RecordedEvent {
        RecordedEvent {
            position,
            stream: format!("item-{position}"),
            version: 0,
            id: Uuid::from_u128(u128::from(position)),
            event_type: "CommentAdded".into(),
            schema_version: 1,
            recorded_at: chrono::DateTime::UNIX_EPOCH,
            actor: "tester".into(),
            causation_id: None,
            correlation_id: None,
            data: format!("\"{}\"", "x".repeat(data_bytes.saturating_sub(2))),
            prev_hash: ZERO_HASH,
            hash: ZERO_HASH,
        }
    }

    #[test]
    fn recent_events_stay_within_their_bytes_and_answer_only_what_they_hold() {
        let limit = 10 * (100 + RECENT_EVENT_ALLOWANCE);
        let mut recent = Recent::default();
        assert!(recent.from(0, 10, usize::MAX).is_none(), "nothing held yet");
        for first in (0..100).step_by(5) {
            recent.push(
                (first..first + 5).map(|position| recorded(position, 100)),
                limit,
            );
            assert!(recent.bytes <= limit);
            let held = recent.events.len() as u64;
            assert_eq!(
                recent.first_position + held,
                first + 5,
                "ends at the last pushed"
            );
            assert_eq!(
                recent.bytes,
                recent
                    .events
                    .iter()
                    .map(|event| event.data.len() + RECENT_EVENT_ALLOWANCE)
                    .sum::<usize>()
            );
        }
        // The last ten are held, in order; older positions and the head itself are not.
        assert_eq!(recent.first_position, 90);
        let from_93: Vec<u64> = recent
            .from(93, 4, usize::MAX)
            .unwrap()
            .iter()
            .map(|event| event.position)
            .collect();
        assert_eq!(from_93, vec![93, 94, 95, 96]);
        // Bounded by bytes of data too, but never below one event.
        assert_eq!(recent.from(90, 10, 250).unwrap().len(), 2);
        assert_eq!(recent.from(90, 10, 1).unwrap().len(), 1);
        assert!(
            recent.from(89, 4, usize::MAX).is_none(),
            "forgotten: read the file"
        );
        assert!(
            recent.from(100, 4, usize::MAX).is_none(),
            "not committed yet"
        );
        // One event larger than the whole window is pushed and forgotten at once.
        recent.push([recorded(100, 5 * limit)], limit);
        assert!(recent.events.is_empty() && recent.bytes == 0);
        assert!(recent.from(100, 1, usize::MAX).is_none());
        recent.push([recorded(101, 100)], limit);
        assert_eq!(recent.from(101, 1, usize::MAX).unwrap()[0].position, 101);
    }
}
