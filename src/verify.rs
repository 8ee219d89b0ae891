//! `ledger verify`: walks a data directory, recomputes every hash and chain link, and names the
//! first bad position.
//!
//! It reads the segment files directly (not through `FileLog`), takes no lock and changes
//! nothing, so it runs beside a live server and on a log too damaged to open. Per segment it makes
//! one sequential pass for structure (positions, stream versions, stream links, unique ids), then
//! recomputes the SHA-256 hashes (event hash and chain hash) on every core, since hashing is where
//! the time goes.

use crate::log::segment::{
    FrameAt, SEGMENT_HEADER_LEN, chain_hash, declared_record_len, decode_segment_header, frame_at,
    is_torn_segment_header, is_torn_tail, list_segments,
};
use anyhow::Context;
use foldhash::{HashMap, HashSet};
use projections::event::{Hash, ZERO_HASH, decode_payload, sha256};
use std::path::Path;
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
}

/// Verifies every segment of `dir`; `progress` is told how many bytes were read.
pub fn verify(dir: &Path, progress: &dyn Fn(u64)) -> anyhow::Result<Report> {
    let segments =
        list_segments(dir).with_context(|| format!("listing segments in {}", dir.display()))?;
    let mut report = Report {
        events: 0,
        streams: 0,
        segments: segments.len() as u64,
        bytes: 0,
        head_chain_hash: hex::encode(ZERO_HASH),
        incomplete_tail: None,
        damage: None,
    };
    let mut streams: HashMap<String, (u64, Hash)> = HashMap::default();
    // Sized up front for records of a typical size (~640 bytes), so that a large log rarely
    // rehashes; sizing for the smallest possible record would clear far more memory than is used.
    let total_bytes: u64 = segments
        .iter()
        .map(|(_, path)| std::fs::metadata(path).map(|meta| meta.len()).unwrap_or(0))
        .sum();
    let mut ids: HashSet<Uuid> =
        HashSet::with_capacity_and_hasher((total_bytes / 640) as usize, Default::default());
    let mut next_position = 0u64;
    let mut chain = ZERO_HASH;
    let segment_count = segments.len();
    // A reader thread reads the next segment while this one is checked.
    // Buffers go back to it once checked, so that their pages are faulted in only once.
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    let (recycle, recycled) = std::sync::mpsc::channel::<Vec<u8>>();
    let paths = segments.clone();
    std::thread::spawn(move || {
        for (first, path) in paths {
            let mut buffer = recycled.try_recv().unwrap_or_default();
            buffer.clear();
            let bytes = std::fs::File::open(&path)
                .and_then(|mut file| std::io::Read::read_to_end(&mut file, &mut buffer))
                .map(|_| buffer);
            if sender.send((first, path, bytes)).is_err() {
                break;
            }
        }
    });
    for (number, (named_first, path, bytes)) in receiver.iter().enumerate() {
        let is_last = number + 1 == segment_count;
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = bytes.with_context(|| format!("reading {}", path.display()))?;
        report.bytes += bytes.len() as u64;
        let damage_at = |offset: u64, position: u64, reason: String| Damage {
            segment: name.clone(),
            offset,
            position,
            stream: None,
            version: None,
            reason,
        };
        if is_last && named_first == next_position && is_torn_segment_header(&bytes) {
            report.incomplete_tail = Some(format!(
                "{name} has no complete header ({} bytes): a crash while creating it",
                bytes.len()
            ));
            break;
        }
        let header = match decode_segment_header(&bytes) {
            Ok(header) => header,
            Err(reason) => {
                report.damage = Some(damage_at(0, next_position, reason));
                return Ok(finish(report, &streams, chain));
            }
        };
        if header.first_position != next_position || named_first != next_position {
            report.damage = Some(damage_at(
                8,
                next_position,
                format!(
                    "segment starts at position {} (named {named_first}); records up to {next_position} are missing or repeated",
                    header.first_position
                ),
            ));
            return Ok(finish(report, &streams, chain));
        }
        if header.chain_before != chain {
            report.damage = Some(damage_at(
                16,
                next_position,
                "segment header's chain hash does not continue the previous segment".into(),
            ));
            return Ok(finish(report, &streams, chain));
        }

        // Find the record boundaries (cheap: only lengths are read), then check structure in
        // order on this thread while other threads recompute the hashes.
        let mut offsets = Vec::new();
        let mut boundary_damage = None;
        let mut offset = SEGMENT_HEADER_LEN;
        loop {
            match frame_at(&bytes[offset..]) {
                FrameAt::Frame(frame) => {
                    offsets.push(offset);
                    offset += frame.len;
                }
                FrameAt::End => break,
                FrameAt::Incomplete | FrameAt::Damaged(_)
                    if is_last
                        && is_torn_tail(
                            &bytes,
                            offset,
                            offset + declared_record_len(&bytes[offset..]),
                            next_position + offsets.len() as u64,
                        ) =>
                {
                    report.incomplete_tail = Some(format!(
                        "{} bytes at offset {offset} of {name}",
                        bytes.len() - offset
                    ));
                    break;
                }
                FrameAt::Incomplete => {
                    boundary_damage = Some((
                        offset,
                        "record is cut short before the end of a closed segment".to_owned(),
                    ));
                    break;
                }
                FrameAt::Damaged(reason) => {
                    boundary_damage = Some((offset, reason));
                    break;
                }
            }
        }
        progress(offset as u64);
        let first_position = next_position;
        let (structure, hashes) = std::thread::scope(|scope| {
            let hashes = scope.spawn(|| first_bad_hash(&bytes, &offsets, &header.chain_before));
            let structure =
                check_structure(&bytes, &offsets, first_position, &mut streams, &mut ids);
            (structure, hashes.join().expect("hash workers"))
        });
        // The earliest problem wins: a bad hash, a structural fault, or the end of the records.
        let mut first_bad: Option<(usize, String)> = structure;
        if let Some((index, reason)) = hashes
            && first_bad
                .as_ref()
                .is_none_or(|(structural, _)| index <= *structural)
        {
            first_bad = Some((index, reason));
        }
        if let Some((index, _)) = first_bad
            && is_last
        {
            let frame_offset = offsets[index];
            let frame_end = frame_offset + declared_record_len(&bytes[frame_offset..]);
            let position = first_position + index as u64;
            if is_torn_tail(&bytes, frame_offset, frame_end, position) {
                report.incomplete_tail = Some(format!(
                    "{} bytes at offset {frame_offset} of {name}",
                    bytes.len() - frame_offset
                ));
                report.events += index as u64;
                let chain_before = match index {
                    0 => header.chain_before,
                    _ => chain_of(&bytes, offsets[index - 1]),
                };
                return Ok(finish(report, &streams, chain_before));
            }
        }
        if let Some((index, reason)) = first_bad {
            let frame_offset = offsets[index];
            let fields = match frame_at(&bytes[frame_offset..]) {
                FrameAt::Frame(frame) => decode_payload(frame.payload)
                    .ok()
                    .map(|fields| (fields.stream.to_owned(), fields.version)),
                _ => None,
            };
            report.events += index as u64;
            report.damage = Some(Damage {
                segment: name.clone(),
                offset: frame_offset as u64,
                position: first_position + index as u64,
                stream: fields.as_ref().map(|(stream, _)| stream.clone()),
                version: fields.map(|(_, version)| version),
                reason,
            });
            let chain_before = match index {
                0 => header.chain_before,
                _ => chain_of(&bytes, offsets[index - 1]),
            };
            return Ok(finish(report, &streams, chain_before));
        }
        report.events += offsets.len() as u64;
        next_position += offsets.len() as u64;
        if let Some(&last) = offsets.last() {
            chain = chain_of(&bytes, last);
        }
        if let Some((offset, reason)) = boundary_damage {
            report.damage = Some(damage_at(offset as u64, next_position, reason));
            return Ok(finish(report, &streams, chain));
        }
        let _ = recycle.send(bytes);
    }
    Ok(finish(report, &streams, chain))
}

fn finish(mut report: Report, streams: &HashMap<String, (u64, Hash)>, chain: Hash) -> Report {
    report.streams = streams.len() as u64;
    report.head_chain_hash = hex::encode(chain);
    report
}

/// The chain hash stored in the frame at `offset`.
fn chain_of(bytes: &[u8], offset: usize) -> Hash {
    bytes[offset + 48..offset + 80]
        .try_into()
        .expect("32 bytes")
}

/// Checks, in order, what needs order: positions, stream versions and links, unique ids.
/// Returns the index (in `offsets`) and reason of the first fault.
fn check_structure(
    bytes: &[u8],
    offsets: &[usize],
    first_position: u64,
    streams: &mut HashMap<String, (u64, Hash)>,
    ids: &mut HashSet<Uuid>,
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
        match entry {
            Some(entry) => *entry = (fields.version, frame.event_hash),
            None => {
                streams.insert(fields.stream.to_owned(), (fields.version, frame.event_hash));
            }
        }
        if !ids.insert(fields.id) {
            return Some((index, format!("event id {} is stored twice", fields.id)));
        }
    }
    None
}

/// The index (in `offsets`) and reason of the first record whose event hash or chain hash is
/// wrong, computed on every core.
fn first_bad_hash(bytes: &[u8], offsets: &[usize], chain_before: &Hash) -> Option<(usize, String)> {
    let check = |index: usize| -> Option<String> {
        let FrameAt::Frame(frame) = frame_at(&bytes[offsets[index]..]) else {
            unreachable!("offsets hold whole frames");
        };
        if sha256(frame.payload) != frame.event_hash {
            return Some("event hash does not match its payload (the record was altered)".into());
        }
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
        let workers: Vec<_> = (0..offsets.len())
            .step_by(chunk)
            .map(|start| {
                let end = (start + chunk).min(offsets.len());
                scope.spawn(move || {
                    (start..end).find_map(|index| check(index).map(|reason| (index, reason)))
                })
            })
            .collect();
        workers
            .into_iter()
            .filter_map(|worker| worker.join().expect("hash worker"))
            .min_by_key(|(index, _)| *index)
    })
}
