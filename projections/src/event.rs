//! Events as the ledger stores them: the envelope, its canonical byte form and its SHA-256 hash.
//!
//! The canonical form is a documented binary layout (`docs/ledger-format.md`), not a JSON
//! canonicalization: the event's `data` is kept as the exact UTF-8 JSON bytes that were hashed,
//! so a third party recomputes a hash by hashing stored bytes, never by re-serializing JSON
//! (which is where canonicalization schemes disagree: number formatting, escapes, key order).

use chrono::{DateTime, TimeZone, Utc};
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The hash that stands before the first event of a stream, and before the first record of a log.
pub const ZERO_HASH: Hash = [0; 32];

/// The first byte of every canonical payload; bumped if the layout ever changes.
pub const PAYLOAD_FORMAT: u8 = 1;

/// Upper bounds that keep a payload's length fields honest (and a hostile payload small).
pub const MAX_NAME_BYTES: usize = 1024;
pub const MAX_DATA_BYTES: usize = 16 * 1024 * 1024;

/// An event as a command produces it, before the log has given it a place.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    /// The event's data as JSON text, stored as it is (valid JSON by construction: a `RawValue`
    /// is made by serializing, `serde_json::value::to_raw_value`, or by a checked parse). Text
    /// rather than a `serde_json::Value` tree: a command serializes its event once, straight to
    /// the text the log stores.
    pub data: Box<serde_json::value::RawValue>,
    /// The authenticated principal on whose behalf the event is appended.
    pub actor: String,
    pub causation_id: Option<Uuid>,
    pub correlation_id: Option<Uuid>,
}

impl PartialEq for NewEvent {
    fn eq(&self, other: &NewEvent) -> bool {
        self.id == other.id
            && self.event_type == other.event_type
            && self.schema_version == other.schema_version
            && self.data.get() == other.data.get()
            && self.actor == other.actor
            && self.causation_id == other.causation_id
            && self.correlation_id == other.correlation_id
    }
}

/// An event as the log holds it: the envelope, its place in its stream and in the whole log, and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// Position in the whole log (0, 1, 2, … without gaps).
    pub position: u64,
    pub stream: String,
    /// Version within the stream (0, 1, 2, … without gaps).
    pub version: u64,
    pub id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub recorded_at: DateTime<Utc>,
    pub actor: String,
    pub causation_id: Option<Uuid>,
    pub correlation_id: Option<Uuid>,
    /// The event's data as the exact UTF-8 JSON text that was hashed.
    pub data: String,
    /// The hash of the previous event in the same stream (`ZERO_HASH` for version 0).
    pub prev_hash: Hash,
    /// SHA-256 of the canonical payload (`encode_payload`).
    pub hash: Hash,
}

impl RecordedEvent {
    /// The event's data parsed as JSON.
    pub fn data_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(&self.data)
    }

    /// The canonical payload bytes whose SHA-256 is `hash`.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut payload = Vec::with_capacity(128 + self.data.len());
        encode_payload(&self.payload_fields(), &mut payload);
        payload
    }

    /// Recomputes the hash from the fields; `hash` is trustworthy only if this matches it.
    pub fn computed_hash(&self) -> Hash {
        sha256(&self.canonical_bytes())
    }

    fn payload_fields(&self) -> PayloadFields<'_> {
        PayloadFields {
            id: self.id,
            stream: &self.stream,
            version: self.version,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            recorded_at_micros: self.recorded_at.timestamp_micros(),
            actor: &self.actor,
            causation_id: self.causation_id,
            correlation_id: self.correlation_id,
            prev_hash: self.prev_hash,
            data: &self.data,
        }
    }
}

/// Events serialize for people and scripts as JSON with hex hashes and the data inline.
impl Serialize for RecordedEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let data: &serde_json::value::RawValue =
            serde_json::from_str(&self.data).map_err(serde::ser::Error::custom)?;
        let mut out = serializer.serialize_struct("RecordedEvent", 13)?;
        out.serialize_field("position", &self.position)?;
        out.serialize_field("stream", &self.stream)?;
        out.serialize_field("version", &self.version)?;
        out.serialize_field("id", &self.id)?;
        out.serialize_field("type", &self.event_type)?;
        out.serialize_field("schema_version", &self.schema_version)?;
        out.serialize_field(
            "recorded_at",
            &self
                .recorded_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        )?;
        out.serialize_field("actor", &self.actor)?;
        out.serialize_field("causation_id", &self.causation_id)?;
        out.serialize_field("correlation_id", &self.correlation_id)?;
        out.serialize_field("data", data)?;
        out.serialize_field("prev_hash", &hex::encode(self.prev_hash))?;
        out.serialize_field("hash", &hex::encode(self.hash))?;
        out.end()
    }
}

/// The fields the canonical payload is made of, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct PayloadFields<'a> {
    pub id: Uuid,
    pub stream: &'a str,
    pub version: u64,
    pub event_type: &'a str,
    pub schema_version: u32,
    pub recorded_at_micros: i64,
    pub actor: &'a str,
    pub causation_id: Option<Uuid>,
    pub correlation_id: Option<Uuid>,
    pub prev_hash: Hash,
    pub data: &'a str,
}

impl<'a> PayloadFields<'a> {
    /// The recorded time as a UTC timestamp.
    pub fn recorded_at(&self) -> DateTime<Utc> {
        Utc.timestamp_micros(self.recorded_at_micros)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// An owned event with its place in the log.
    pub fn to_recorded(&self, position: u64, hash: Hash) -> RecordedEvent {
        RecordedEvent {
            position,
            stream: self.stream.to_owned(),
            version: self.version,
            id: self.id,
            event_type: self.event_type.to_owned(),
            schema_version: self.schema_version,
            recorded_at: self.recorded_at(),
            actor: self.actor.to_owned(),
            causation_id: self.causation_id,
            correlation_id: self.correlation_id,
            data: self.data.to_owned(),
            prev_hash: self.prev_hash,
            hash,
        }
    }
}

/// SHA-256 of some bytes.
pub fn sha256(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

/// Appends the canonical payload of an event to `out`. Layout (all integers big-endian):
///
/// ```text
/// u8   format (1)
/// [16] event id
/// u16  stream length, then the stream name (UTF-8)
/// u64  version in the stream
/// u16  type length, then the event type (UTF-8)
/// u32  schema version
/// i64  recorded time, microseconds since 1970-01-01T00:00:00Z
/// u16  actor length, then the actor (UTF-8)
/// [16] causation id (16 zero bytes: none)
/// [16] correlation id (16 zero bytes: none)
/// [32] hash of the previous event in the stream (zeros for version 0)
/// u32  data length, then the data (UTF-8 JSON)
/// ```
///
/// Callers check lengths first (`check_lengths`); this function assumes they fit.
pub fn encode_payload(fields: &PayloadFields<'_>, out: &mut Vec<u8>) {
    out.push(PAYLOAD_FORMAT);
    out.extend_from_slice(fields.id.as_bytes());
    push_short_string(out, fields.stream);
    out.extend_from_slice(&fields.version.to_be_bytes());
    push_short_string(out, fields.event_type);
    out.extend_from_slice(&fields.schema_version.to_be_bytes());
    out.extend_from_slice(&fields.recorded_at_micros.to_be_bytes());
    push_short_string(out, fields.actor);
    out.extend_from_slice(fields.causation_id.unwrap_or(Uuid::nil()).as_bytes());
    out.extend_from_slice(fields.correlation_id.unwrap_or(Uuid::nil()).as_bytes());
    out.extend_from_slice(&fields.prev_hash);
    out.extend_from_slice(&(fields.data.len() as u32).to_be_bytes());
    out.extend_from_slice(fields.data.as_bytes());
}

fn push_short_string(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u16).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// Why a payload's fields cannot be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// A name (stream, type, actor) is empty or longer than `MAX_NAME_BYTES`.
    #[error("{field} must be 1 to {MAX_NAME_BYTES} bytes long")]
    BadName { field: &'static str },
    /// The data is larger than `MAX_DATA_BYTES`.
    #[error("event data is {0} bytes, more than the {MAX_DATA_BYTES} allowed")]
    DataTooLarge(usize),
    /// The payload ends before its fields do.
    #[error("payload is truncated")]
    Truncated,
    /// The payload has bytes after its last field.
    #[error("payload has {0} trailing bytes")]
    TrailingBytes(usize),
    /// The payload's format byte is not one this code knows.
    #[error("unknown payload format {0}")]
    UnknownFormat(u8),
    /// A text field is not valid UTF-8.
    #[error("{field} is not valid UTF-8")]
    NotUtf8 { field: &'static str },
}

/// Checks that an event's names and data fit the payload's length fields.
pub fn check_lengths(
    stream: &str,
    event_type: &str,
    actor: &str,
    data_len: usize,
) -> Result<(), PayloadError> {
    for (field, value) in [("stream", stream), ("type", event_type), ("actor", actor)] {
        if value.is_empty() || value.len() > MAX_NAME_BYTES {
            return Err(PayloadError::BadName { field });
        }
    }
    if data_len > MAX_DATA_BYTES {
        return Err(PayloadError::DataTooLarge(data_len));
    }
    Ok(())
}

/// The stream name's bytes of a canonical payload, read without parsing the rest (for dealing
/// records to workers by stream); `None` if the payload is too short or of another format.
pub fn stream_of_payload(payload: &[u8]) -> Option<&[u8]> {
    if *payload.first()? != PAYLOAD_FORMAT {
        return None;
    }
    let len = u16_at(payload, 17)?;
    payload.get(19..19 + len)
}

/// The event type's bytes of a canonical payload, read without parsing the rest (to pass over
/// events a reader has no use for); `None` if the payload is too short or of another format.
pub fn type_of_payload(payload: &[u8]) -> Option<&[u8]> {
    let at = type_at(payload)?;
    let len = u16_at(payload, at)?;
    payload.get(at + 2..at + 2 + len)
}

/// The event data's bytes of a canonical payload (not checked as UTF-8), found without parsing
/// the other fields; `None` if the payload is too short, of another format, or does not end with
/// the data.
pub fn data_of_payload(payload: &[u8]) -> Option<&[u8]> {
    let type_at = type_at(payload)?;
    let actor_at = type_at + 2 + u16_at(payload, type_at)? + 4 + 8;
    let data_len_at = actor_at + 2 + u16_at(payload, actor_at)? + 16 + 16 + 32;
    let data_len = u32::from_be_bytes(payload.get(data_len_at..data_len_at + 4)?.try_into().ok()?);
    let data = payload.get(data_len_at + 4..)?;
    (data.len() == data_len as usize).then_some(data)
}

/// Where the event type's length is in a canonical payload: after the format, id, stream and
/// version.
fn type_at(payload: &[u8]) -> Option<usize> {
    Some(19 + stream_of_payload(payload)?.len() + 8)
}

/// The big-endian `u16` (a field's length) at `at`.
fn u16_at(payload: &[u8], at: usize) -> Option<usize> {
    Some(usize::from(u16::from_be_bytes(
        payload.get(at..at + 2)?.try_into().ok()?,
    )))
}

/// Parses a canonical payload, borrowing its text fields.
pub fn decode_payload(payload: &[u8]) -> Result<PayloadFields<'_>, PayloadError> {
    let mut reader = Reader { rest: payload };
    let format = reader.take::<1>()?[0];
    if format != PAYLOAD_FORMAT {
        return Err(PayloadError::UnknownFormat(format));
    }
    let id = Uuid::from_bytes(reader.take::<16>()?);
    let stream = reader.short_string("stream")?;
    let version = u64::from_be_bytes(reader.take::<8>()?);
    let event_type = reader.short_string("type")?;
    let schema_version = u32::from_be_bytes(reader.take::<4>()?);
    let recorded_at_micros = i64::from_be_bytes(reader.take::<8>()?);
    let actor = reader.short_string("actor")?;
    let causation_id = non_nil(Uuid::from_bytes(reader.take::<16>()?));
    let correlation_id = non_nil(Uuid::from_bytes(reader.take::<16>()?));
    let prev_hash = reader.take::<32>()?;
    let data_len = u32::from_be_bytes(reader.take::<4>()?) as usize;
    let data = reader.string(data_len, "data")?;
    if !reader.rest.is_empty() {
        return Err(PayloadError::TrailingBytes(reader.rest.len()));
    }
    Ok(PayloadFields {
        id,
        stream,
        version,
        event_type,
        schema_version,
        recorded_at_micros,
        actor,
        causation_id,
        correlation_id,
        prev_hash,
        data,
    })
}

fn non_nil(id: Uuid) -> Option<Uuid> {
    (!id.is_nil()).then_some(id)
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], PayloadError> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(PayloadError::Truncated)?;
        self.rest = rest;
        Ok(*head)
    }

    fn short_string(&mut self, field: &'static str) -> Result<&'a str, PayloadError> {
        let len = u16::from_be_bytes(self.take::<2>()?) as usize;
        self.string(len, field)
    }

    fn string(&mut self, len: usize, field: &'static str) -> Result<&'a str, PayloadError> {
        if self.rest.len() < len {
            return Err(PayloadError::Truncated);
        }
        let (bytes, rest) = self.rest.split_at(len);
        self.rest = rest;
        std::str::from_utf8(bytes).map_err(|_| PayloadError::NotUtf8 { field })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RecordedEvent {
        RecordedEvent {
            position: 7,
            stream: "item-1".into(),
            version: 2,
            id: Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            event_type: "OutputApproved".into(),
            schema_version: 1,
            recorded_at: Utc.timestamp_micros(1_764_000_000_123_456).unwrap(),
            actor: "alice".into(),
            causation_id: None,
            correlation_id: Some(Uuid::from_u128(42)),
            data: r#"{"reviewer":"alice","score":0.25}"#.into(),
            prev_hash: [7; 32],
            hash: ZERO_HASH,
        }
    }

    #[test]
    fn payload_round_trips() {
        let event = sample();
        let bytes = event.canonical_bytes();
        let fields = decode_payload(&bytes).unwrap();
        let back = fields.to_recorded(7, ZERO_HASH);
        assert_eq!(back, event);
        // The fields a reader can pick out without parsing the rest.
        assert_eq!(stream_of_payload(&bytes), Some(event.stream.as_bytes()));
        assert_eq!(type_of_payload(&bytes), Some(event.event_type.as_bytes()));
        assert_eq!(data_of_payload(&bytes), Some(event.data.as_bytes()));
        assert_eq!(data_of_payload(&bytes[..bytes.len() - 1]), None);
        let mut longer = bytes.clone();
        longer.push(b'}');
        assert_eq!(data_of_payload(&longer), None);
    }

    #[test]
    fn hash_is_over_exact_bytes() {
        let event = sample();
        let mut changed = event.clone();
        changed.data = r#"{"reviewer":"alice","score":0.250}"#.into();
        assert_ne!(event.computed_hash(), changed.computed_hash());
    }

    #[test]
    fn truncated_and_trailing_payloads_are_refused() {
        let bytes = sample().canonical_bytes();
        assert_eq!(
            decode_payload(&bytes[..bytes.len() - 1]).err(),
            Some(PayloadError::Truncated)
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            decode_payload(&longer).err(),
            Some(PayloadError::TrailingBytes(1))
        );
    }

    #[test]
    fn known_vector() {
        // Pinned so that a change to the layout cannot pass unnoticed: the same vector is in
        // docs/ledger-format.md for third-party implementations (computed there independently).
        let event = sample();
        assert_eq!(event.canonical_bytes().len(), 169);
        assert_eq!(
            hex::encode(event.computed_hash()),
            "86293bdc9f8e3965519cf0427ef62c580d5c38b01a4cc41c3c84e594c333cbf6"
        );
    }
}
