//! `ledger verify`: walks a data directory, recomputes every hash and chain link, and names the
//! first bad position.
//!
//! It reads the segment files directly (not through `FileLog`), takes no lock and changes
//! nothing, so it runs beside a live server and on a log too damaged to open. Per segment it makes
//! one sequential pass for structure (positions, stream versions, stream links, unique ids), then
//! recomputes the SHA-256 hashes (event hash and chain hash) on every core, since hashing is where
//! the time goes.

use crate::log::segment::{
    FrameAt, SEGMENT_HEADER_LEN, chain_hash, decode_segment_header, frame_at, list_segments,
};
use anyhow::Context;
use projections::event::{Hash, ZERO_HASH, decode_payload, sha256};
use std::collections::{HashMap, HashSet};
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

/// A record whose structure passed, waiting for its hashes to be checked.
struct Pending<'a> {
    offset: u64,
    position: u64,
    stream: &'a str,
    version: u64,
    payload: &'a [u8],
    event_hash: Hash,
    chain_before: Hash,
    chain: Hash,
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
    let mut streams: HashMap<String, (u64, Hash)> = HashMap::new();
    let mut ids: HashSet<Uuid> = HashSet::new();
    let mut next_position = 0u64;
    let mut chain = ZERO_HASH;
    let segment_count = segments.len();
    for (number, (named_first, path)) in segments.into_iter().enumerate() {
        let is_last = number + 1 == segment_count;
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        report.bytes += bytes.len() as u64;
        let damage_at = |offset: u64, position: u64, reason: String| Damage {
            segment: name.clone(),
            offset,
            position,
            stream: None,
            version: None,
            reason,
        };
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

        // Pass 1: structure, in order.
        let mut pending = Vec::new();
        let mut structural_damage = None;
        let mut offset = SEGMENT_HEADER_LEN;
        loop {
            let frame = match frame_at(&bytes[offset..]) {
                FrameAt::Frame(frame) => frame,
                FrameAt::End => break,
                FrameAt::Incomplete if is_last => {
                    report.incomplete_tail = Some(format!(
                        "{} bytes at offset {offset} of {name}",
                        bytes.len() - offset
                    ));
                    break;
                }
                FrameAt::Incomplete => {
                    structural_damage = Some(damage_at(
                        offset as u64,
                        next_position,
                        "record is cut short before the end of a closed segment".into(),
                    ));
                    break;
                }
                FrameAt::Damaged(reason) => {
                    structural_damage = Some(damage_at(offset as u64, next_position, reason));
                    break;
                }
            };
            let mut damage = |reason: String, stream: Option<&str>, version: Option<u64>| {
                let mut damage = damage_at(offset as u64, next_position, reason);
                damage.stream = stream.map(str::to_owned);
                damage.version = version;
                structural_damage = Some(damage);
            };
            if frame.position != next_position {
                damage(
                    format!(
                        "record says position {}, expected {next_position}",
                        frame.position
                    ),
                    None,
                    None,
                );
                break;
            }
            let fields = match decode_payload(frame.payload) {
                Ok(fields) => fields,
                Err(error) => {
                    damage(format!("payload does not decode: {error}"), None, None);
                    break;
                }
            };
            let (expected_version, last_hash) = streams
                .get(fields.stream)
                .map(|&(version, hash)| (version + 1, hash))
                .unwrap_or((0, ZERO_HASH));
            if fields.version != expected_version {
                damage(
                    format!(
                        "stream version {} where {expected_version} was expected",
                        fields.version
                    ),
                    Some(fields.stream),
                    Some(fields.version),
                );
                break;
            }
            if fields.prev_hash != last_hash {
                damage(
                    "previous-hash link does not match the stream's previous event".into(),
                    Some(fields.stream),
                    Some(fields.version),
                );
                break;
            }
            if !ids.insert(fields.id) {
                damage(
                    format!("event id {} is stored twice", fields.id),
                    Some(fields.stream),
                    Some(fields.version),
                );
                break;
            }
            // The stream link is checked against the stored event hash here; pass 2 proves the
            // stored hash is the payload's.
            streams.insert(fields.stream.to_owned(), (fields.version, frame.event_hash));
            pending.push(Pending {
                offset: offset as u64,
                position: frame.position,
                stream: fields.stream,
                version: fields.version,
                payload: frame.payload,
                event_hash: frame.event_hash,
                chain_before: chain,
                chain: frame.chain_hash,
            });
            chain = frame.chain_hash;
            next_position += 1;
            offset += frame.len;
            progress(frame.len as u64);
        }

        // Pass 2: hashes, on every core; the first failure by position wins.
        if let Some(bad) = first_bad_hash(&pending) {
            let record = &pending[bad.0];
            report.events += bad.0 as u64;
            report.damage = Some(Damage {
                segment: name.clone(),
                offset: record.offset,
                position: record.position,
                stream: Some(record.stream.to_owned()),
                version: Some(record.version),
                reason: bad.1,
            });
            return Ok(finish(report, &streams, record.chain_before));
        }
        report.events += pending.len() as u64;
        if let Some(damage) = structural_damage {
            report.damage = Some(damage);
            return Ok(finish(report, &streams, chain));
        }
    }
    Ok(finish(report, &streams, chain))
}

fn finish(mut report: Report, streams: &HashMap<String, (u64, Hash)>, chain: Hash) -> Report {
    report.streams = streams.len() as u64;
    report.head_chain_hash = hex::encode(chain);
    report
}

/// The index and reason of the first record whose event hash or chain hash is wrong.
fn first_bad_hash(pending: &[Pending<'_>]) -> Option<(usize, String)> {
    let check = |record: &Pending<'_>| -> Option<String> {
        if sha256(record.payload) != record.event_hash {
            return Some("event hash does not match its payload (the record was altered)".into());
        }
        if chain_hash(&record.chain_before, record.position, &record.event_hash) != record.chain {
            return Some("chain hash does not link to the previous record".into());
        }
        None
    };
    let threads = std::thread::available_parallelism()
        .map(|count| count.get())
        .unwrap_or(1)
        .min(8);
    let chunk = pending.len().div_ceil(threads).max(1024);
    std::thread::scope(|scope| {
        let workers: Vec<_> = pending
            .chunks(chunk)
            .enumerate()
            .map(|(number, records)| {
                scope.spawn(move || {
                    records.iter().enumerate().find_map(|(index, record)| {
                        check(record).map(|reason| (number * chunk + index, reason))
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
