//! What every backend does the same way, written once: checking an append, deciding its expected
//! version, stamping its events (versions, `prev_hash` links within the stream, the recorded
//! time, the event hash by the canonical payload) and answering a retry of stored ids.
//!
//! A backend keeps only what its engine stores: where each stream's tip is, which ids are stored,
//! and the stamped events. Because the stamping lives here, the same events appended in the same
//! order get the same versions, links and hashes on every backend (the conformance suite checks
//! it), and `docs/ledger-format.md` describes one hashing rule, not one per engine.

use super::{AppendResult, ExpectedVersion, LogError};
use projections::event::{
    Hash, NewEvent, PayloadFields, RecordedEvent, ZERO_HASH, check_lengths, encode_payload, sha256,
};
use uuid::Uuid;

/// A stream's last event before an append: its version and its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamTip {
    pub version: u64,
    pub hash: Hash,
}

/// Checks what an append is made of, before any backend looks at its store: at least one event,
/// no id twice, names and data within the format's bounds.
pub fn check_append(stream: &str, events: &[NewEvent]) -> Result<(), LogError> {
    if events.is_empty() {
        return Err(LogError::InvalidAppend(
            "an append needs at least one event".into(),
        ));
    }
    let mut seen = std::collections::HashSet::with_capacity(events.len());
    if let Some(repeated) = events.iter().find(|event| !seen.insert(event.id)) {
        return Err(LogError::InvalidAppend(format!(
            "event id {} appears twice in one append",
            repeated.id
        )));
    }
    for event in events {
        check_lengths(
            stream,
            &event.event_type,
            &event.actor,
            event.data.get().len(),
        )
        .map_err(|error| LogError::InvalidAppend(error.to_string()))?;
    }
    Ok(())
}

/// `Conflict` unless the stream, whose last version is `current`, is where `expected` says.
pub fn check_expected(
    stream: &str,
    expected: ExpectedVersion,
    current: Option<u64>,
) -> Result<(), LogError> {
    let matches = match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => current.is_none(),
        ExpectedVersion::Exact(version) => current == Some(version),
    };
    if matches {
        Ok(())
    } else {
        Err(LogError::Conflict {
            stream: stream.to_owned(),
            expected,
            current,
        })
    }
}

/// The recorded time of the next batch: now, but never before the last recorded time, so that
/// recorded times never go backwards in the global order (a clock stepped back, or servers whose
/// clocks differ a little, cannot make a later event look older).
pub fn recorded_at_micros(now: chrono::DateTime<chrono::Utc>, last_recorded_micros: i64) -> i64 {
    now.timestamp_micros().max(last_recorded_micros)
}

/// Stamps `events` as the next events of `stream` after `tip`, at global positions from
/// `first_position` on, all recorded at `recorded_at_micros`.
///
/// `sink` gets each recorded event with its canonical payload bytes (whose SHA-256 is its
/// `hash`), for a backend that stores the bytes themselves; `payload` is a scratch buffer reused
/// across calls. Answers the stream's new tip.
pub fn stamp(
    stream: &str,
    tip: Option<StreamTip>,
    first_position: u64,
    recorded_at_micros: i64,
    events: Vec<NewEvent>,
    payload: &mut Vec<u8>,
    mut sink: impl FnMut(RecordedEvent, &[u8]),
) -> StreamTip {
    let (mut version, mut prev_hash) = match tip {
        Some(tip) => (tip.version + 1, tip.hash),
        None => (0, ZERO_HASH),
    };
    for (position, event) in (first_position..).zip(events) {
        payload.clear();
        let fields = PayloadFields {
            id: event.id,
            stream,
            version,
            event_type: &event.event_type,
            schema_version: event.schema_version,
            recorded_at_micros,
            actor: &event.actor,
            causation_id: event.causation_id,
            correlation_id: event.correlation_id,
            prev_hash,
            data: event.data.get(),
        };
        encode_payload(&fields, payload);
        let hash = sha256(payload);
        let recorded_at = fields.recorded_at();
        let NewEvent {
            id,
            event_type,
            schema_version,
            data,
            actor,
            causation_id,
            correlation_id,
        } = event;
        sink(
            RecordedEvent {
                position,
                stream: stream.to_owned(),
                version,
                id,
                event_type,
                schema_version,
                recorded_at,
                actor,
                causation_id,
                correlation_id,
                data: String::from(Box::<str>::from(data)),
                prev_hash,
                hash,
            },
            payload,
        );
        prev_hash = hash;
        version += 1;
    }
    StreamTip {
        version: version - 1,
        hash: prev_hash,
    }
}

/// Checks a stream's events as a reader gets them: each event's hash is the hash of its fields,
/// and each links to the one before it in the stream. `before` is the tip the first of `events`
/// follows (`None` for version 0). Every backend's readers can call it; the file log checks the
/// same when it opens and when it reads a record.
pub fn check_links(before: Option<StreamTip>, events: &[RecordedEvent]) -> Result<(), String> {
    let mut expected_prev = before.map_or(ZERO_HASH, |tip| tip.hash);
    let first_version = before.map_or(0, |tip| tip.version + 1);
    for (expected_version, event) in (first_version..).zip(events) {
        if event.version != expected_version {
            return Err(format!(
                "{} holds version {} where {} was expected",
                event.stream, event.version, expected_version
            ));
        }
        if event.computed_hash() != event.hash {
            return Err(format!(
                "the event at {} version {} does not match its hash",
                event.stream, event.version
            ));
        }
        if event.prev_hash != expected_prev {
            return Err(format!(
                "the event at {} version {} does not link to the one before it",
                event.stream, event.version
            ));
        }
        expected_prev = event.hash;
    }
    Ok(())
}

/// Whether an id of an append is stored already, as a backend finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    No,
    /// In the append's own stream: (position, version).
    Here(u64, u64),
    /// In another stream.
    Elsewhere,
}

/// The idempotency rule, for an append of `events` (in order): `Ok(None)` when no id is stored
/// (append them); the first call's result again when every id is stored, in this stream, one
/// after the other (a retry: store nothing); `DuplicateEventId` otherwise (some ids stored, or
/// stored elsewhere: a retry must resend exactly what it sent).
///
/// `lookup` tells where an id is stored. The usual case, no id stored, asks it once per id and
/// allocates nothing: this runs on every append.
pub fn deduplicate(
    events: &[NewEvent],
    mut lookup: impl FnMut(&Uuid) -> Result<Stored, LogError>,
) -> Result<Option<AppendResult>, LogError> {
    let mut first_stored = None;
    for event in events {
        if lookup(&event.id)? != Stored::No {
            first_stored = Some(event.id);
            break;
        }
    }
    let Some(first_stored) = first_stored else {
        return Ok(None);
    };
    // Only a retry (or a reused id) gets here.
    let stored = events
        .iter()
        .map(|event| lookup(&event.id))
        .collect::<Result<Vec<_>, _>>()?;
    if stored.contains(&Stored::No) {
        return Err(LogError::DuplicateEventId { id: first_stored });
    }
    let here: Option<Vec<(u64, u64)>> = stored
        .iter()
        .map(|found| match found {
            Stored::Here(position, version) => Some((*position, *version)),
            Stored::No | Stored::Elsewhere => None,
        })
        .collect();
    let Some(here) = here.filter(|here| here.windows(2).all(|pair| pair[1].1 == pair[0].1 + 1))
    else {
        return Err(LogError::DuplicateEventId { id: events[0].id });
    };
    let (first_position, _) = here[0];
    let (last_position, last_version) = here[here.len() - 1];
    Ok(Some(AppendResult {
        first_position,
        last_position,
        stream_version: last_version,
        deduplicated: true,
    }))
}
