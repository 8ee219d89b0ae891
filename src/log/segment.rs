//! The on-disk format of the embedded log: segment files, their header, and record frames.
//!
//! `docs/ledger-format.md` is the normative description; this file is one implementation of it.
//!
//! ```text
//! segment header (48 bytes): "LEDGSEG1" | u64 first position | [32] chain hash before it
//! record frame (80-byte header + payload):
//!   "LREC" | u32 payload length | u64 position | [32] event hash | [32] chain hash | payload
//! event hash = SHA-256(payload)
//! chain hash = SHA-256(previous chain hash | u64 position | event hash)
//! ```

use projections::event::{Hash, MAX_DATA_BYTES, PayloadFields, decode_payload, sha256};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub const SEGMENT_MAGIC: &[u8; 8] = b"LEDGSEG1";
pub const SEGMENT_HEADER_LEN: usize = 48;
pub const FRAME_MAGIC: &[u8; 4] = b"LREC";
pub const FRAME_HEADER_LEN: usize = 80;
/// The largest payload a frame may declare: the data limit plus room for the other fields.
pub const MAX_PAYLOAD_LEN: usize = MAX_DATA_BYTES + 4096;

/// The file name of the segment whose first record has `first_position`.
pub fn segment_file_name(first_position: u64) -> String {
    format!("segment-{first_position:020}.log")
}

/// The first position encoded in a segment's file name, if it is one.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("segment-")?.strip_suffix(".log")?;
    if digits.len() != 20 {
        return None;
    }
    digits.parse().ok()
}

/// The segment files of a data directory, sorted by first position.
pub fn list_segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(first) = entry.file_name().to_str().and_then(parse_segment_file_name) {
            segments.push((first, entry.path()));
        }
    }
    segments.sort();
    Ok(segments)
}

/// The 48-byte header that opens every segment.
pub fn encode_segment_header(first_position: u64, chain_before: &Hash) -> [u8; SEGMENT_HEADER_LEN] {
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    header[..8].copy_from_slice(SEGMENT_MAGIC);
    header[8..16].copy_from_slice(&first_position.to_be_bytes());
    header[16..48].copy_from_slice(chain_before);
    header
}

/// A segment header, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub first_position: u64,
    pub chain_before: Hash,
}

pub fn decode_segment_header(bytes: &[u8]) -> Result<SegmentHeader, String> {
    if bytes.len() < SEGMENT_HEADER_LEN {
        return Err(format!(
            "segment is {} bytes, shorter than its {SEGMENT_HEADER_LEN}-byte header",
            bytes.len()
        ));
    }
    if &bytes[..8] != SEGMENT_MAGIC {
        return Err("segment does not start with LEDGSEG1".into());
    }
    Ok(SegmentHeader {
        first_position: u64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes")),
        chain_before: bytes[16..48].try_into().expect("32 bytes"),
    })
}

/// The chain hash of the record at `position` whose event hash is `event_hash`.
pub fn chain_hash(previous_chain: &Hash, position: u64, event_hash: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(previous_chain);
    hasher.update(position.to_be_bytes());
    hasher.update(event_hash);
    hasher.finalize().into()
}

/// Appends one frame for an already-encoded payload whose SHA-256 is `event_hash` (computed
/// once, by `log::stamp`); returns the chain hash after it.
pub fn encode_frame(
    out: &mut Vec<u8>,
    position: u64,
    payload: &[u8],
    event_hash: &Hash,
    previous_chain: &Hash,
) -> Hash {
    debug_assert_eq!(&sha256(payload), event_hash);
    let chain = chain_hash(previous_chain, position, event_hash);
    out.extend_from_slice(FRAME_MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&position.to_be_bytes());
    out.extend_from_slice(event_hash);
    out.extend_from_slice(&chain);
    out.extend_from_slice(payload);
    chain
}

/// One frame as it lies in a buffer, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub position: u64,
    pub event_hash: Hash,
    pub chain_hash: Hash,
    pub payload: &'a [u8],
    /// Total bytes of the frame (header and payload).
    pub len: usize,
}

impl<'a> Frame<'a> {
    /// Parses the payload's fields (without checking the hash).
    pub fn fields(&self) -> Result<PayloadFields<'a>, String> {
        decode_payload(self.payload).map_err(|error| error.to_string())
    }

    /// True when the stored event hash is the SHA-256 of the payload.
    pub fn hash_matches(&self) -> bool {
        sha256(self.payload) == self.event_hash
    }
}

/// What lies at an offset of a segment's bytes.
#[derive(Debug)]
pub enum FrameAt<'a> {
    /// A complete frame (its hash not yet checked).
    Frame(Frame<'a>),
    /// The bytes end exactly here.
    End,
    /// The bytes end inside a frame, or the rest is all zero bytes: what a crash mid-write leaves.
    Incomplete,
    /// Something that is not a frame.
    Damaged(String),
}

/// Reads the frame at the start of `bytes`.
pub fn frame_at(bytes: &[u8]) -> FrameAt<'_> {
    if bytes.is_empty() {
        return FrameAt::End;
    }
    // The whole magic compared as one word (the common case), a prefix only at the very end.
    let magic_matches = match bytes.first_chunk::<4>() {
        Some(magic) => magic == FRAME_MAGIC,
        None => bytes[..] == FRAME_MAGIC[..bytes.len()],
    };
    if !magic_matches {
        // A run of zeros to the end is space the file system extended but whose data never
        // reached the disk; anything else is not a frame.
        return if bytes.iter().all(|&byte| byte == 0) {
            FrameAt::Incomplete
        } else {
            FrameAt::Damaged("bad frame magic".into())
        };
    }
    if bytes.len() < FRAME_HEADER_LEN {
        return FrameAt::Incomplete;
    }
    let payload_len = u32::from_be_bytes(bytes[4..8].try_into().expect("4 bytes")) as usize;
    if payload_len > MAX_PAYLOAD_LEN {
        return FrameAt::Damaged(format!("frame declares a payload of {payload_len} bytes"));
    }
    let len = FRAME_HEADER_LEN + payload_len;
    if bytes.len() < len {
        return FrameAt::Incomplete;
    }
    FrameAt::Frame(Frame {
        position: u64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes")),
        event_hash: bytes[16..48].try_into().expect("32 bytes"),
        chain_hash: bytes[48..80].try_into().expect("32 bytes"),
        payload: &bytes[FRAME_HEADER_LEN..len],
        len,
    })
}

/// Where the run of zero bytes that ends `bytes` begins (`bytes.len()` when the last byte is not
/// zero).
pub fn trailing_zeros_start(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .rposition(|&byte| byte != 0)
        .map_or(0, |last_non_zero| last_non_zero + 1)
}

/// What the bytes of the **last** segment are, from the first record that does not verify (or
/// is not a whole record) to the end of the file (`docs/ledger-format.md`, "Preallocated space"
/// and "The tail after a crash").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// All zeros from a record boundary: space the writer preallocated; the end of the log.
    Preallocated,
    /// What a crash mid-write leaves: never acknowledged, cut by the next writer.
    Torn,
    /// Anything else.
    Damage,
}

/// Classifies `rest`, the bytes from the failing record's start to the end of the last segment,
/// where that record should hold `expected_position`.
///
/// Torn is either a record cut short by the end of the file whose header, as far as it goes, is
/// the expected one; or a file that ends in a run of zero bytes beginning before the end of the
/// failing record, so that the record's own last byte is zero (space the file system extended, or
/// the writer preallocated, but whose data never reached the disk).
pub fn classify_tail(rest: &[u8], expected_position: u64) -> Tail {
    let zeros_from = trailing_zeros_start(rest);
    if zeros_from == 0 {
        return Tail::Preallocated;
    }
    let record_end = declared_record_len(rest);
    if zeros_from < rest.len() && zeros_from < record_end {
        return Tail::Torn;
    }
    if record_end <= rest.len() {
        return Tail::Damage;
    }
    // Cut short by the end of the file: the magic and, if present, the position must be right.
    let magic_len = rest.len().min(4);
    if rest[..magic_len] != FRAME_MAGIC[..magic_len] {
        return Tail::Damage;
    }
    if rest.len() >= 16 {
        let position = u64::from_be_bytes(rest[8..16].try_into().expect("8 bytes"));
        if position != expected_position {
            return Tail::Damage;
        }
    }
    Tail::Torn
}

/// Where the record at the start of `rest` would end, relative to `rest`, as far as its header
/// says (its header's length when the header itself is cut short).
pub fn declared_record_len(rest: &[u8]) -> usize {
    if rest.len() < 8 {
        return FRAME_HEADER_LEN;
    }
    FRAME_HEADER_LEN + u32::from_be_bytes(rest[4..8].try_into().expect("4 bytes")) as usize
}

/// Whether a last segment's header is what a crash while creating the segment leaves: shorter
/// than a header, or all zeros. Such a segment never held an acknowledged record.
pub fn is_torn_segment_header(segment: &[u8]) -> bool {
    let header = &segment[..segment.len().min(SEGMENT_HEADER_LEN)];
    segment.len() < SEGMENT_HEADER_LEN && SEGMENT_MAGIC.starts_with(&header[..header.len().min(8)])
        || segment.iter().all(|&byte| byte == 0)
}

/// How much `ChunkReader` reads at a time (more when one record is larger).
pub const CHUNK_BYTES: usize = 8 << 20;

/// What `ChunkReader::next_chunk` put in the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// Whole records, back to back, the first at `offset` of the segment.
    Records { offset: u64 },
    /// The bytes from `offset` to the end of the file, which do not begin with a whole record:
    /// a torn tail or damage, for the caller to judge. Always the last chunk.
    Rest { offset: u64 },
}

/// Reads a segment's records in chunks of whole records into buffers the caller owns (and can
/// reuse, so that opening or verifying a large log neither holds a whole segment in memory nor
/// faults in fresh pages for each one).
#[derive(Debug)]
pub struct ChunkReader {
    file: std::fs::File,
    len: u64,
    /// Offset in the file of the next byte not yet handed out.
    offset: u64,
    carry: Vec<u8>,
    finished: bool,
    /// How much one chunk holds at least (more when one record is larger).
    chunk_bytes: usize,
}

impl ChunkReader {
    /// Chunks of `bytes` rather than [`CHUNK_BYTES`]: a reader that walks each chunk more than
    /// once wants chunks that stay in the core's cache.
    pub fn with_chunk_bytes(mut self, bytes: usize) -> ChunkReader {
        self.chunk_bytes = bytes.max(FRAME_HEADER_LEN);
        self
    }

    /// Opens a segment; returns the reader and up to the first 48 bytes (the header).
    pub fn open(path: &Path) -> std::io::Result<(ChunkReader, Vec<u8>)> {
        use std::io::Read;
        let mut file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        let mut header = Vec::with_capacity(SEGMENT_HEADER_LEN);
        (&mut file)
            .take(SEGMENT_HEADER_LEN as u64)
            .read_to_end(&mut header)?;
        let reader = ChunkReader {
            file,
            len,
            offset: header.len() as u64,
            carry: Vec::new(),
            finished: header.len() < SEGMENT_HEADER_LEN,
            chunk_bytes: CHUNK_BYTES,
        };
        Ok((reader, header))
    }

    /// The file's length when it was opened.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Fills `buffer` with the next chunk and `starts` with its records' offsets in `buffer`;
    /// `None` once the segment is done.
    pub fn next_chunk(
        &mut self,
        buffer: &mut Vec<u8>,
        starts: &mut Vec<usize>,
    ) -> std::io::Result<Option<Chunk>> {
        use std::io::Read;
        buffer.clear();
        starts.clear();
        let mut wanted = self.chunk_bytes;
        loop {
            if self.finished {
                return Ok(None);
            }
            buffer.append(&mut self.carry);
            let missing = wanted.saturating_sub(buffer.len()) as u64;
            let read = (&mut self.file).take(missing).read_to_end(buffer)?;
            // The end is the length seen at open, or wherever reading stops (a file cut while
            // being read must not make this loop forever).
            let at_end =
                self.offset + buffer.len() as u64 >= self.len || (missing > 0 && read == 0);
            let mut consumed = 0;
            let stop = loop {
                match frame_at(&buffer[consumed..]) {
                    FrameAt::Frame(frame) => {
                        starts.push(consumed);
                        consumed += frame.len;
                    }
                    other => break other,
                }
            };
            let chunk_offset = self.offset;
            match stop {
                FrameAt::End => {
                    self.offset += consumed as u64;
                    self.finished = at_end;
                    if consumed > 0 {
                        return Ok(Some(Chunk::Records {
                            offset: chunk_offset,
                        }));
                    }
                    if self.finished {
                        return Ok(None);
                    }
                }
                FrameAt::Incomplete if !at_end => {
                    // A record runs past what was read: hand out the whole ones, keep the rest.
                    self.carry = buffer.split_off(consumed);
                    self.offset += consumed as u64;
                    if consumed > 0 {
                        return Ok(Some(Chunk::Records {
                            offset: chunk_offset,
                        }));
                    }
                    wanted = declared_record_len(&self.carry).max(self.chunk_bytes);
                }
                FrameAt::Incomplete | FrameAt::Damaged(_) | FrameAt::Frame(_) => {
                    if consumed > 0 {
                        // Whole records first; the rest comes as the next chunk.
                        self.carry = buffer.split_off(consumed);
                        self.offset += consumed as u64;
                        self.file.read_to_end(&mut self.carry)?;
                        self.len = self.len.max(self.offset + self.carry.len() as u64);
                        return Ok(Some(Chunk::Records {
                            offset: chunk_offset,
                        }));
                    }
                    self.file.read_to_end(buffer)?;
                    self.finished = true;
                    return Ok(Some(Chunk::Rest {
                        offset: chunk_offset,
                    }));
                }
            }
        }
    }
}

/// The bytes of a file from `offset` to its end.
pub fn read_from(path: &Path, offset: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut rest = Vec::new();
    file.read_to_end(&mut rest)?;
    Ok(rest)
}
