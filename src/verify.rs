//! `ledger verify`: walks a data directory, recomputes every hash and chain link, and names the
//! first bad position.
//!
//! It reads the segment files directly (not through `FileLog`), takes no lock and changes
//! nothing, so it runs beside a live server and on a log too damaged to open. A reader thread
//! reads the segments in chunks of whole records (so memory stays at a few chunks, whatever the
//! segment size); for each chunk one thread checks what needs order (positions, stream versions
//! and links, unique ids) while the other cores recompute the SHA-256 hashes, which is where the
//! time goes.

use crate::log::segment::{
    CHUNK_BYTES, Chunk, ChunkReader, FRAME_HEADER_LEN, FrameAt, SEGMENT_HEADER_LEN, Tail,
    chain_hash, classify_tail, decode_segment_header, frame_at, is_torn_segment_header,
    list_segments, read_from,
};
use anyhow::Context;
use foldhash::{HashMap, HashSet};
use projections::audit::CHECKPOINTS_STREAM;
use projections::event::{Hash, ZERO_HASH, decode_payload, sha256};
use projections::merkle::{LevelTree, Tree, leaf_hash, node_hash};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use uuid::Uuid;

/// Where the first problem is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Damage {
    pub segment: String,
    pub offset: u64,
    /// The global position the record at that place should have.
    pub position: u64,
    /// The stream and version, when the record was readable enough to tell.
    pub stream: Option<String>,
    pub version: Option<u64>,
    pub reason: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "position {} (segment {}, offset {}",
            self.position, self.segment, self.offset
        )?;
        if let (Some(stream), Some(version)) = (&self.stream, self.version) {
            write!(formatter, ", stream {stream}, version {version}")?;
        }
        write!(formatter, "): {}", self.reason)
    }
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// Records that verified (all of them when `damage` is `None`).
    pub events: u64,
    pub streams: u64,
    pub segments: u64,
    pub bytes: u64,
    /// The chain hash of the last verified record: a compact fingerprint of the whole log.
    pub head_chain_hash: String,
    /// An incomplete record at the very end (a write in progress, or one a crash interrupted;
    /// never acknowledged, and cut by the next writer to open the log). Not damage.
    pub incomplete_tail: Option<String>,
    pub damage: Option<Damage>,
    /// The Merkle tree and the stored checkpoints (left unchecked when events are damaged).
    #[serde(flatten)]
    pub tree: TreeFindings,
}

/// What the Merkle tree recomputed from a log shows: its root, and the stored checkpoints
/// checked against it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TreeFindings {
    /// The Merkle root of the verified events (RFC 6962; leaf i is event i), recomputed.
    pub merkle_root: String,
    /// Stored checkpoints that held: signature (when a key was given), fields, root against the
    /// recomputed tree, consistency with the one before.
    pub checkpoints: u64,
    /// The first stored checkpoint that does not hold.
    pub checkpoint_damage: Option<crate::audit::trusted::CheckpointDamage>,
    /// The verifier key the checkpoints' signatures were checked with; `None`: not checked.
    pub checkpoint_key: Option<String>,
}

impl TreeFindings {
    /// Nothing checked yet (what a damaged log reports).
    fn unchecked(verifier: Option<&crate::audit::Verifier>) -> TreeFindings {
        TreeFindings {
            merkle_root: String::new(),
            checkpoints: 0,
            checkpoint_damage: None,
            checkpoint_key: verifier.map(|verifier| verifier.key().to_owned()),
        }
    }

    /// The tree of `leaves` (built on every core), and each stored checkpoint (`(position,
    /// type, data)` of the checkpoints stream's events) checked against it.
    fn of(
        leaves: Vec<Hash>,
        stored_checkpoints: &[(u64, String, String)],
        verifier: Option<&crate::audit::Verifier>,
    ) -> TreeFindings {
        let mut findings = TreeFindings::unchecked(verifier);
        let tree = tree_of_leaves(leaves);
        findings.merkle_root = hex::encode(tree.root_at(tree.size()).expect("the tree's own size"));
        match crate::audit::trusted::check_checkpoints(&tree, stored_checkpoints, verifier) {
            Ok(count) => findings.checkpoints = count as u64,
            Err(damage) => findings.checkpoint_damage = Some(damage),
        }
        findings
    }
}

/// What the reader thread hands over, in file order.
enum Piece {
    /// A segment begins: up to its first 48 bytes, and its length.
    Segment {
        number: usize,
        named_first: u64,
        path: PathBuf,
        header: Vec<u8>,
        len: u64,
    },
    /// Whole records, back to back, starting at `offset` of the segment; `starts` are their
    /// offsets within `bytes`.
    Records {
        bytes: Vec<u8>,
        offset: u64,
        starts: Vec<usize>,
    },
    /// Bytes from `offset` to the end of the segment that are not a whole record.
    Rest {
        bytes: Vec<u8>,
        offset: u64,
    },
    Failed(anyhow::Error),
}

/// Verifies every segment of `dir`; `progress` is told how many bytes were checked. Checkpoints'
/// roots and consistency are checked, not their signatures (see [`verify_with_key`]).
pub fn verify(dir: &Path, progress: &dyn Fn(u64)) -> anyhow::Result<Report> {
    verify_with_key(dir, progress, None)
}

/// [`verify`], with the checkpoints' signatures checked with `verifier`.
pub fn verify_with_key(
    dir: &Path,
    progress: &dyn Fn(u64),
    verifier: Option<&crate::audit::Verifier>,
) -> anyhow::Result<Report> {
    let segments =
        list_segments(dir).with_context(|| format!("listing segments in {}", dir.display()))?;
    let total_bytes: u64 = segments
        .iter()
        .map(|(_, path)| std::fs::metadata(path).map(|meta| meta.len()).unwrap_or(0))
        .sum();
    let mut check = Check {
        report: Report {
            events: 0,
            streams: 0,
            segments: segments.len() as u64,
            bytes: total_bytes,
            head_chain_hash: hex::encode(ZERO_HASH),
            incomplete_tail: None,
            damage: None,
            tree: TreeFindings::unchecked(verifier),
        },
        leaves: Vec::with_capacity((total_bytes / 600) as usize),
        stored_checkpoints: Vec::new(),
        // Sized for ~8 events a stream, so that a large log rarely rehashes the map.
        streams: HashMap::with_capacity_and_hasher(
            (total_bytes / 640 / 8) as usize,
            Default::default(),
        ),
        // Sized for records of a typical size (~640 bytes), so that a large log rarely rehashes;
        // sizing for the smallest record would clear far more memory than is used.
        ids: HashSet::with_capacity_and_hasher((total_bytes / 640) as usize, Default::default()),
        next_position: 0,
        chain: ZERO_HASH,
        segment_count: segments.len(),
        segment: None,
    };
    let (sender, receiver) = mpsc::sync_channel(2);
    let (recycle, recycled) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || read_segments(segments, sender, recycled));
    for piece in receiver {
        let done = match piece {
            Piece::Segment {
                number,
                named_first,
                path,
                header,
                len,
            } => check.segment_start(number, named_first, path, &header, len)?,
            Piece::Records {
                bytes,
                offset,
                starts,
            } => {
                let done = check.records(&bytes, offset, &starts)?;
                progress(bytes.len() as u64);
                let _ = recycle.send(bytes);
                done
            }
            Piece::Rest { bytes, offset } => {
                check.rest(&bytes, offset);
                true
            }
            Piece::Failed(error) => return Err(error),
        };
        if done {
            break;
        }
    }
    Ok(check.finish(verifier))
}

/// The segment being checked.
struct SegmentInContext {
    name: String,
    path: PathBuf,
    is_last: bool,
}

/// The state of a verification in progress.
struct Check {
    report: Report,
    /// The Merkle leaf hashes of the records read so far, computed by the hash workers (those of
    /// a chunk that turns out damaged included: verification ends there, and the tree is built
    /// only when nothing is damaged). The tree's levels are built from them at the end, on every
    /// core.
    leaves: Vec<Hash>,
    /// `(position, type, data)` of each event of the checkpoints stream, in order.
    stored_checkpoints: Vec<(u64, String, String)>,
    streams: HashMap<String, (u64, Hash)>,
    ids: HashSet<Uuid>,
    next_position: u64,
    /// The chain hash of the last verified record.
    chain: Hash,
    segment_count: usize,
    segment: Option<SegmentInContext>,
}

impl Check {
    fn damage(&mut self, offset: u64, position: u64, reason: String) {
        let segment = self.segment.as_ref().map(|segment| segment.name.clone());
        self.report.damage = Some(Damage {
            segment: segment.unwrap_or_default(),
            offset,
            position,
            stream: None,
            version: None,
            reason,
        });
    }

    /// Checks a segment's header; true when verification is over.
    fn segment_start(
        &mut self,
        number: usize,
        named_first: u64,
        path: PathBuf,
        header: &[u8],
        len: u64,
    ) -> anyhow::Result<bool> {
        let is_last = number + 1 == self.segment_count;
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.segment = Some(SegmentInContext {
            name: name.clone(),
            path: path.clone(),
            is_last,
        });
        if is_last && named_first == self.next_position {
            // Only a header that is short or all zeros can be torn; read the whole file to tell.
            let maybe_torn = (header.len() as u64) < SEGMENT_HEADER_LEN as u64
                || header.iter().all(|&byte| byte == 0);
            if maybe_torn {
                let whole =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                if is_torn_segment_header(&whole) {
                    self.report.incomplete_tail = Some(format!(
                        "{name} has no complete header ({len} bytes): a crash while creating it"
                    ));
                    return Ok(true);
                }
            }
        }
        let decoded = match decode_segment_header(header) {
            Ok(decoded) => decoded,
            Err(reason) => {
                self.damage(0, self.next_position, reason);
                return Ok(true);
            }
        };
        if decoded.first_position != self.next_position || named_first != self.next_position {
            let reason = format!(
                "segment starts at position {} (named {named_first}); records up to {} are missing or repeated",
                decoded.first_position, self.next_position
            );
            self.damage(8, self.next_position, reason);
            return Ok(true);
        }
        if decoded.chain_before != self.chain {
            self.damage(
                16,
                self.next_position,
                "segment header's chain hash does not continue the previous segment".into(),
            );
            return Ok(true);
        }
        Ok(false)
    }

    /// Checks a chunk of whole records; true when verification is over.
    fn records(&mut self, bytes: &[u8], offset: u64, starts: &[usize]) -> anyhow::Result<bool> {
        let first_position = self.next_position;
        let chain_before = self.chain;
        let first_leaf = self.leaves.len();
        self.leaves.resize(first_leaf + starts.len(), ZERO_HASH);
        let (structure, duplicates, hashes) = {
            let streams = &mut self.streams;
            let ids = &mut self.ids;
            let stored_checkpoints = &mut self.stored_checkpoints;
            let leaves = &mut self.leaves[first_leaf..];
            std::thread::scope(|scope| {
                // The hash workers also compute this chunk's Merkle leaf hashes.
                let hashes = scope.spawn(|| first_bad_hash(bytes, starts, &chain_before, leaves));
                let duplicates = scope.spawn(|| first_duplicate_id(bytes, starts, ids));
                let structure =
                    check_structure(bytes, starts, first_position, streams, stored_checkpoints);
                (
                    structure,
                    duplicates.join().expect("id checker"),
                    hashes.join().expect("hash workers"),
                )
            })
        };
        // The earliest problem wins.
        let first_bad = [structure, duplicates, hashes]
            .into_iter()
            .flatten()
            .min_by_key(|(index, _)| *index);
        let Some((index, reason)) = first_bad else {
            self.report.events += starts.len() as u64;
            self.next_position += starts.len() as u64;
            if let Some(&last) = starts.last() {
                self.chain = chain_of(bytes, last);
            }
            return Ok(false);
        };
        let record_offset = offset + starts[index] as u64;
        let position = first_position + index as u64;
        self.report.events += index as u64;
        if index > 0 {
            self.chain = chain_of(bytes, starts[index - 1]);
        }
        let segment = self.segment.as_ref().expect("a segment is open");
        if segment.is_last {
            // Rare: a failing record in the last segment may be a torn tail; that depends on the
            // bytes from it to the end of the file.
            let rest = read_from(&segment.path, record_offset)
                .with_context(|| format!("reading {}", segment.path.display()))?;
            if classify_tail(&rest, position) == Tail::Torn {
                self.report.incomplete_tail = Some(format!(
                    "{} bytes at offset {record_offset} of {}",
                    rest.len(),
                    segment.name
                ));
                return Ok(true);
            }
        }
        let fields = match frame_at(&bytes[starts[index]..]) {
            FrameAt::Frame(frame) => decode_payload(frame.payload)
                .ok()
                .map(|fields| (fields.stream.to_owned(), fields.version)),
            _ => None,
        };
        self.damage(record_offset, position, reason);
        if let Some(damage) = &mut self.report.damage {
            damage.stream = fields.as_ref().map(|(stream, _)| stream.clone());
            damage.version = fields.map(|(_, version)| version);
        }
        Ok(true)
    }

    /// Judges the bytes at the end of a segment that are not a whole record.
    fn rest(&mut self, bytes: &[u8], offset: u64) {
        let segment = self.segment.as_ref().expect("a segment is open");
        let position = self.next_position;
        match segment.is_last.then(|| classify_tail(bytes, position)) {
            // Space the writer preallocated after the last record: the end of the log.
            Some(Tail::Preallocated) => return,
            Some(Tail::Torn) => {
                self.report.incomplete_tail = Some(format!(
                    "{} bytes at offset {offset} of {}",
                    bytes.len(),
                    segment.name
                ));
                return;
            }
            Some(Tail::Damage) | None => {}
        }
        let reason = match frame_at(bytes) {
            FrameAt::Damaged(reason) => reason,
            _ if segment.is_last => "record is cut short and is not a torn write".to_owned(),
            _ => "record is cut short before the end of a closed segment".to_owned(),
        };
        self.damage(offset, position, reason);
    }

    fn finish(mut self, verifier: Option<&crate::audit::Verifier>) -> Report {
        let mut report = finish(self.report, &self.streams, self.chain);
        if report.damage.is_none() {
            // A torn tail ends the log inside a chunk whose records all gave a leaf.
            self.leaves.truncate(report.events as usize);
            report.tree = TreeFindings::of(
                std::mem::take(&mut self.leaves),
                &self.stored_checkpoints,
                verifier,
            );
        }
        report
    }
}

/// The reader thread: hands over each segment's header, then its records in chunks of whole
/// records, then whatever is left at its end that is not a whole record.
fn read_segments(
    segments: Vec<(u64, PathBuf)>,
    sender: mpsc::SyncSender<Piece>,
    recycled: mpsc::Receiver<Vec<u8>>,
) {
    for (number, (named_first, path)) in segments.into_iter().enumerate() {
        let result = read_segment(number, named_first, &path, &sender, &recycled)
            .with_context(|| format!("reading {}", path.display()));
        match result {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => {
                let _ = sender.send(Piece::Failed(error));
                return;
            }
        }
    }
}

/// Reads one segment; false when the checker is gone or the segment ended in a `Rest`.
fn read_segment(
    number: usize,
    named_first: u64,
    path: &Path,
    sender: &mpsc::SyncSender<Piece>,
    recycled: &mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<bool> {
    let (mut reader, header) = ChunkReader::open(path)?;
    let header_complete = header.len() == SEGMENT_HEADER_LEN;
    let piece = Piece::Segment {
        number,
        named_first,
        path: path.to_owned(),
        header,
        len: reader.len(),
    };
    if sender.send(piece).is_err() || !header_complete {
        return Ok(false);
    }
    loop {
        let mut buffer = recycled
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK_BYTES));
        let mut starts = Vec::new();
        let piece = match reader.next_chunk(&mut buffer, &mut starts)? {
            None => return Ok(true),
            Some(Chunk::Records { offset }) => Piece::Records {
                bytes: buffer,
                offset,
                starts,
            },
            Some(Chunk::Rest { offset }) => {
                let _ = sender.send(Piece::Rest {
                    bytes: buffer,
                    offset,
                });
                return Ok(false);
            }
        };
        if sender.send(piece).is_err() {
            return Ok(false);
        }
    }
}

fn finish(mut report: Report, streams: &HashMap<String, (u64, Hash)>, chain: Hash) -> Report {
    report.streams = streams.len() as u64;
    report.head_chain_hash = hex::encode(chain);
    report
}

/// The Merkle tree of `leaves`, level by level, each level's hashes computed on every core.
fn tree_of_leaves(leaves: Vec<Hash>) -> LevelTree {
    let threads = std::thread::available_parallelism()
        .map(|count| count.get())
        .unwrap_or(1)
        .clamp(1, 8);
    let mut levels = vec![leaves];
    while levels.last().expect("a level").len() > 1 {
        let below = levels.last().expect("a level");
        let mut above = vec![ZERO_HASH; below.len() / 2];
        // Pairs per thread, even so that each thread's pairs start at an even index below.
        let per_thread = above.len().div_ceil(threads).max(4096);
        std::thread::scope(|scope| {
            for (number, out) in above.chunks_mut(per_thread).enumerate() {
                let pairs = &below[number * per_thread * 2..];
                scope.spawn(move || {
                    for (index, hash) in out.iter_mut().enumerate() {
                        *hash = node_hash(&pairs[2 * index], &pairs[2 * index + 1]);
                    }
                });
            }
        });
        levels.push(above);
    }
    LevelTree::from_levels(levels).expect("each level holds the pairs of the one below")
}

/// The chain hash stored in the frame at `offset`.
fn chain_of(bytes: &[u8], offset: usize) -> Hash {
    bytes[offset + 48..offset + 80]
        .try_into()
        .expect("32 bytes")
}

/// The index (in `offsets`) of the first record whose event id was seen before. Runs on a thread
/// of its own: inserting a million random ids into a set is mostly cache misses, and it needs
/// nothing from the other checks (the id sits at a fixed place in the payload).
fn first_duplicate_id(
    bytes: &[u8],
    offsets: &[usize],
    ids: &mut HashSet<Uuid>,
) -> Option<(usize, String)> {
    for (index, &offset) in offsets.iter().enumerate() {
        let id_at = offset + FRAME_HEADER_LEN + 1;
        // A payload too short to hold an id is the structure check's to report.
        let Some(id_bytes) = bytes.get(id_at..id_at + 16) else {
            continue;
        };
        let id = Uuid::from_bytes(id_bytes.try_into().expect("16 bytes"));
        if !ids.insert(id) {
            return Some((index, format!("event id {id} is stored twice")));
        }
    }
    None
}

/// Checks, in order, what needs order: positions, stream versions and links.
/// Returns the index (in `offsets`) and reason of the first fault.
fn check_structure(
    bytes: &[u8],
    offsets: &[usize],
    first_position: u64,
    streams: &mut HashMap<String, (u64, Hash)>,
    stored_checkpoints: &mut Vec<(u64, String, String)>,
) -> Option<(usize, String)> {
    for (index, &offset) in offsets.iter().enumerate() {
        let FrameAt::Frame(frame) = frame_at(&bytes[offset..]) else {
            unreachable!("offsets hold whole frames");
        };
        let expected_position = first_position + index as u64;
        if frame.position != expected_position {
            return Some((
                index,
                format!(
                    "record says position {}, expected {expected_position}",
                    frame.position
                ),
            ));
        }
        let fields = match decode_payload(frame.payload) {
            Ok(fields) => fields,
            Err(error) => return Some((index, format!("payload does not decode: {error}"))),
        };
        // One lookup per event; the name is copied only for a new stream. The link is checked
        // against the stored event hash; the hash workers prove the stored hash is the payload's.
        let entry = streams.get_mut(fields.stream);
        let (expected_version, last_hash) = entry
            .as_ref()
            .map(|&&mut (version, hash)| (version + 1, hash))
            .unwrap_or((0, ZERO_HASH));
        if fields.version != expected_version {
            return Some((
                index,
                format!(
                    "stream version {} where {expected_version} was expected",
                    fields.version
                ),
            ));
        }
        if fields.prev_hash != last_hash {
            return Some((
                index,
                "previous-hash link does not match the stream's previous event".into(),
            ));
        }
        if fields.stream == CHECKPOINTS_STREAM {
            stored_checkpoints.push((
                expected_position,
                fields.event_type.to_owned(),
                fields.data.to_owned(),
            ));
        }
        match entry {
            Some(entry) => *entry = (fields.version, frame.event_hash),
            None => {
                streams.insert(fields.stream.to_owned(), (fields.version, frame.event_hash));
            }
        }
    }
    None
}

/// The index (in `offsets`) and reason of the first record whose event hash or chain hash is
/// wrong, computed on every core.
/// Also writes each record's Merkle leaf hash into `leaves` (one per offset).
fn first_bad_hash(
    bytes: &[u8],
    offsets: &[usize],
    chain_before: &Hash,
    leaves: &mut [Hash],
) -> Option<(usize, String)> {
    let check = |index: usize, leaf: &mut Hash| -> Option<String> {
        let FrameAt::Frame(frame) = frame_at(&bytes[offsets[index]..]) else {
            unreachable!("offsets hold whole frames");
        };
        if sha256(frame.payload) != frame.event_hash {
            return Some("event hash does not match its payload (the record was altered)".into());
        }
        *leaf = leaf_hash(&frame.event_hash);
        let previous = match index {
            0 => *chain_before,
            _ => chain_of(bytes, offsets[index - 1]),
        };
        if chain_hash(&previous, frame.position, &frame.event_hash) != frame.chain_hash {
            return Some("chain hash does not link to the previous record".into());
        }
        None
    };
    let threads = std::thread::available_parallelism()
        .map(|count| count.get())
        .unwrap_or(1)
        .clamp(1, 8);
    let chunk = offsets.len().div_ceil(threads).max(1024);
    std::thread::scope(|scope| {
        let workers: Vec<_> = leaves
            .chunks_mut(chunk)
            .enumerate()
            .map(|(number, leaves)| {
                let start = number * chunk;
                scope.spawn(move || {
                    leaves.iter_mut().enumerate().find_map(|(offset, leaf)| {
                        check(start + offset, leaf).map(|reason| (start + offset, reason))
                    })
                })
            })
            .collect();
        workers
            .into_iter()
            .filter_map(|worker| worker.join().expect("hash worker"))
            .min_by_key(|(index, _)| *index)
    })
}

/// What a verification through the log contract found (`ledger verify` on a store other than the
/// file log).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoreReport {
    /// Events that verified (all of them when `damage` is `None`).
    pub events: u64,
    pub streams: u64,
    pub damage: Option<StoreDamage>,
    /// As in [`Report`].
    #[serde(flatten)]
    pub tree: TreeFindings,
}

/// The first event that does not verify.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoreDamage {
    pub position: u64,
    pub stream: String,
    pub version: u64,
    pub reason: String,
}

impl std::fmt::Display for StoreDamage {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "position {} (stream {}, version {}): {}",
            self.position, self.stream, self.version, self.reason
        )
    }
}

/// Reads the whole log through the contract and checks what every backend promises: positions
/// 0, 1, 2, … without a gap, each event's hash recomputed from its fields, each event linked to
/// the one before it in its stream, stream versions without a gap, no id stored twice. (The
/// file log's global chain hash is a property of its format, checked by [`verify`].)
pub async fn verify_log(log: &dyn crate::log::EventLog) -> anyhow::Result<StoreReport> {
    verify_log_with_key(log, None).await
}

/// [`verify_log`], with the checkpoints' signatures checked with `verifier`.
pub async fn verify_log_with_key(
    log: &dyn crate::log::EventLog,
    verifier: Option<&crate::audit::Verifier>,
) -> anyhow::Result<StoreReport> {
    use crate::log::stamp::{StreamTip, check_links};
    let mut leaves = Vec::new();
    let mut stored_checkpoints = Vec::new();
    let mut report = StoreReport {
        events: 0,
        streams: 0,
        damage: None,
        tree: TreeFindings::unchecked(verifier),
    };
    let mut tips: HashMap<String, StreamTip> = HashMap::default();
    let mut ids: HashSet<Uuid> = HashSet::default();
    let mut position = 0u64;
    let mut page = 4096;
    loop {
        let events = match log.read_all(position, page).await {
            Ok(events) => events,
            // A backend that checks what it reads (PostgreSQL: each row against its hash and
            // link) refuses a page holding a changed row: read one event at a time to name it.
            Err(crate::log::LogError::Store(reason)) if page == 1 => {
                report.events = position;
                report.streams = tips.len() as u64;
                report.damage = Some(StoreDamage {
                    position,
                    stream: String::new(),
                    version: 0,
                    reason,
                });
                return Ok(report);
            }
            Err(crate::log::LogError::Store(_)) => {
                page = 1;
                continue;
            }
            Err(error) => return Err(error).context("reading the log"),
        };
        if events.is_empty() {
            break;
        }
        for event in events {
            let damage = |reason: String| StoreDamage {
                position,
                stream: event.stream.clone(),
                version: event.version,
                reason,
            };
            let found = if event.position != position {
                Some(format!("holds position {}", event.position))
            } else if !ids.insert(event.id) {
                Some(format!("event id {} is stored twice", event.id))
            } else {
                check_links(
                    tips.get(&event.stream).copied(),
                    std::slice::from_ref(&event),
                )
                .err()
            };
            if let Some(reason) = found {
                report.events = position;
                report.streams = tips.len() as u64;
                report.damage = Some(damage(reason));
                return Ok(report);
            }
            leaves.push(leaf_hash(&event.hash));
            if event.stream == CHECKPOINTS_STREAM {
                stored_checkpoints.push((position, event.event_type.clone(), event.data.clone()));
            }
            tips.insert(
                event.stream.clone(),
                StreamTip {
                    version: event.version,
                    hash: event.hash,
                },
            );
            position += 1;
        }
    }
    report.events = position;
    report.streams = tips.len() as u64;
    let head = log.head().await.context("reading the log's head")?;
    if position < head {
        report.damage = Some(StoreDamage {
            position,
            stream: String::new(),
            version: 0,
            reason: format!(
                "no event is stored at this position, but the log's head is {head}: events are missing"
            ),
        });
        return Ok(report);
    }
    report.tree = TreeFindings::of(leaves, &stored_checkpoints, verifier);
    Ok(report)
}
