//! An item's state and its events' payloads as JSON, written by hand: byte for byte what their
//! `Serialize` derives write through serde_json, in a fraction of the instructions.
//!
//! Why by hand: every answer about an item (each claim, decision, read and long-poll) carries
//! the whole state, 1–2 KB with ~40 keys, and every write serializes one to three events; through
//! serde_json that was ~15% of the server's instructions per request, most of it per key and per
//! string rather than per byte. Here each key is one constant copy, and only text a person or an
//! agent chose goes through serde_json's string escaping; ids, hashes, timestamps and enum names
//! are known to need none. A generic faster serde serializer was tried first and came out no
//! faster than serde_json (BENCHMARKS.md).
//!
//! The derives stay the definition. `write_fields!` takes each key from the field's name and
//! destructures the struct in full, so a new field fails to compile here until it is written;
//! property tests over random item histories, and tests of every event and a full state with
//! text that needs escaping, hold this output to serde_json's (`item_tests.rs`), including the
//! order of the fields.

use crate::item::{
    Approval, ChangeRequest, ChangesRequested, Claim, ClaimExpired, ClaimReleased, Comment,
    CommentAdded, Decision, Edit, Escalation, Expiry, ExpiryAction, ItemAutoApproved, ItemClaimed,
    ItemDecided, ItemEscalated, ItemExpired, ItemState, ItemStatus, ItemSubmitted, ItemWithdrawn,
    ModelIdentity, Outcome, OutputApproved, OutputEdited, OutputHash, OutputRejected,
    OutputRevised, Rejection, Revision, Risk, Withdrawal,
};
use crate::json::JsonText;
use chrono::{DateTime, Utc};

impl ItemState {
    /// Appends the state as compact JSON to `out`: what `serde_json::to_writer(out, self)` writes.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        WriteJson::write_json(self, &mut Json(out));
    }
}

/// A value that writes itself as JSON, as its `Serialize` derive would through serde_json.
pub(crate) trait WriteJson {
    fn write_json(&self, json: &mut Json<'_>);
}

impl<T: WriteJson + ?Sized> WriteJson for Box<T> {
    fn write_json(&self, json: &mut Json<'_>) {
        (**self).write_json(json);
    }
}

/// `impl WriteJson` for a struct: an object of its fields in the order listed (the struct's own,
/// which the derive follows), each under its name and written by the `Json` method named after it.
macro_rules! write_fields {
    ($type:ident { $first:ident: $first_write:ident $(, $field:ident: $write:ident)* $(,)? }) => {
        impl WriteJson for $type {
            fn write_json(&self, json: &mut Json<'_>) {
                let $type { $first, $($field),* } = self;
                json.punctuation(concat!("{\"", stringify!($first), "\":").as_bytes());
                json.$first_write($first);
                $(
                    json.punctuation(concat!(",\"", stringify!($field), "\":").as_bytes());
                    json.$write($field);
                )*
                json.punctuation(b"}");
            }
        }
    };
}

write_fields!(ItemState {
    status: status,
    id: uuid,
    queue: str,
    kind: str,
    model: object,
    submitted_by: str,
    submitted_at: time,
    output: text,
    output_hash: hash,
    revision: integer,
    output_edited_by: optional_str,
    revisions: objects,
    edits: objects,
    context: text,
    confidence: optional_serde,
    risk: risk,
    priority: integer,
    due_at: optional_time,
    required_approvals: integer,
    callback_url: optional_str,
    claim: optional_object,
    first_claimed_at: optional_time,
    approvals: objects,
    change_requests: objects,
    escalations: objects,
    comments: objects,
    rejection: optional_object,
    withdrawal: optional_object,
    expiry: optional_object,
    decision: optional_object,
    event_count: integer,
    last_event_at: optional_time,
});
write_fields!(ModelIdentity {
    name: str,
    version: str
});
write_fields!(Revision {
    revision: integer,
    output: text,
    output_hash: hash,
    note: optional_str,
    at: time,
});
write_fields!(Edit {
    reviewer: str,
    revision: integer,
    output: text,
    output_hash: hash,
    previous_output_hash: hash,
    note: optional_str,
    at: time,
});
write_fields!(Claim {
    reviewer: str,
    claimed_at: time,
    expires_at: time,
});
write_fields!(Approval {
    reviewer: str,
    at: time
});
write_fields!(ChangeRequest {
    reviewer: str,
    instructions: str,
    revision: integer,
    output_hash: hash,
    at: time,
});
write_fields!(Escalation {
    by: str,
    from_queue: str,
    to_queue: str,
    reason: str,
    at: time,
});
write_fields!(Comment {
    author: str,
    text: str,
    at: time
});
write_fields!(Rejection {
    reviewer: str,
    reason: str,
    at: time
});
write_fields!(Withdrawal {
    by: str,
    reason: optional_str,
    at: time
});
write_fields!(Expiry {
    due_at: time,
    policy: optional_str,
    configured_action: object,
    applied_action: object,
    at: time,
});
write_fields!(Decision {
    outcome: outcome,
    decided_by: strs,
    revision: integer,
    output_hash: hash,
    final_output: optional_text,
    decided_at: time,
});

// The events' payloads (`ItemEvent::to_json`).
write_fields!(ItemSubmitted {
    item_id: uuid,
    queue: str,
    kind: str,
    model: object,
    revision: integer,
    output: text,
    output_hash: hash,
    context: text,
    confidence: optional_serde,
    risk: risk,
    priority: integer,
    due_at: optional_time,
    required_approvals: integer,
    on_expiry: optional_object,
    callback_url: optional_str,
    submitted_by: str,
    submitted_at: time,
    request_fingerprint: optional_hash,
});
write_fields!(ItemClaimed {
    reviewer: str,
    claimed_at: time,
    expires_at: time,
});
write_fields!(ClaimReleased {
    reviewer: str,
    at: time
});
write_fields!(ClaimExpired {
    reviewer: str,
    expired_at: time,
    at: time,
});
write_fields!(OutputApproved {
    reviewer: str,
    revision: integer,
    output_hash: hash,
    approvals: integer,
    required_approvals: integer,
    at: time,
});
write_fields!(OutputEdited {
    reviewer: str,
    revision: integer,
    edited_output: text,
    output_hash: hash,
    previous_output_hash: hash,
    note: optional_str,
    at: time,
});
write_fields!(OutputRejected {
    reviewer: str,
    reason: str,
    revision: integer,
    output_hash: hash,
    at: time,
});
write_fields!(ChangesRequested {
    reviewer: str,
    instructions: str,
    revision: integer,
    output_hash: hash,
    at: time,
});
write_fields!(OutputRevised {
    revised_by: str,
    revision: integer,
    output: text,
    output_hash: hash,
    previous_output_hash: hash,
    note: optional_str,
    at: time,
});
write_fields!(ItemEscalated {
    by: str,
    from_queue: str,
    to_queue: str,
    reason: str,
    at: time,
});
write_fields!(CommentAdded {
    author: str,
    text: str,
    at: time
});
write_fields!(ItemWithdrawn {
    by: str,
    reason: optional_str,
    at: time
});
write_fields!(ItemExpired {
    due_at: time,
    policy: optional_str,
    configured_action: object,
    applied_action: object,
    at: time,
});
write_fields!(ItemAutoApproved {
    policy: str,
    measurement_id: uuid,
    override_rate: serde,
    override_rate_high: serde,
    sample: integer,
    target: serde,
    sampling_rate: serde,
    at: time,
});
write_fields!(ItemDecided {
    outcome: outcome,
    decided_by: strs,
    revision: integer,
    output_hash: hash,
    final_output: optional_text,
    decided_at: time,
});

/// Internally tagged (`#[serde(tag = "action")]`).
impl WriteJson for ExpiryAction {
    fn write_json(&self, json: &mut Json<'_>) {
        match self {
            ExpiryAction::Reject => json.punctuation(b"{\"action\":\"reject\"}"),
            ExpiryAction::Approve => json.punctuation(b"{\"action\":\"approve\"}"),
            ExpiryAction::Escalate { queue } => {
                json.punctuation(b"{\"action\":\"escalate\",\"queue\":");
                json.str(queue);
                json.punctuation(b"}");
            }
        }
    }
}

/// The output being written, and how each kind of field is written into it.
pub(crate) struct Json<'a>(pub(crate) &'a mut Vec<u8>);

impl Json<'_> {
    /// Punctuation and keys, as they are.
    fn punctuation(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    /// A string known to need no escaping (ids, hex, timestamps, enum names).
    fn plain_str(&mut self, text: &[u8]) {
        debug_assert!(
            !text
                .iter()
                .any(|&byte| byte < 0x20 || byte == b'"' || byte == b'\\')
        );
        self.0.reserve(text.len() + 2);
        self.0.push(b'"');
        self.0.extend_from_slice(text);
        self.0.push(b'"');
    }

    /// Any other value as serde_json writes it: text that may need escaping, floats.
    fn serde<T: serde::Serialize + ?Sized>(&mut self, value: &T) {
        serde_json::to_writer(&mut *self.0, value)
            .expect("strings, numbers and JSON values always serialize into a Vec");
    }

    fn str<S: AsRef<str> + ?Sized>(&mut self, text: &S) {
        self.serde(text.as_ref());
    }

    fn strs(&mut self, texts: &[String]) {
        self.list(texts, |json, text| json.str(text));
    }

    fn integer<I: itoa::Integer + Copy>(&mut self, value: &I) {
        self.0
            .extend_from_slice(itoa::Buffer::new().format(*value).as_bytes());
    }

    fn uuid(&mut self, id: &uuid::Uuid) {
        let mut buffer = uuid::Uuid::encode_buffer();
        self.plain_str(id.hyphenated().encode_lower(&mut buffer).as_bytes());
    }

    fn text(&mut self, text: &JsonText) {
        self.0.extend_from_slice(text.as_str().as_bytes());
    }

    fn hash(&mut self, hash: &OutputHash) {
        self.plain_str(&hash.to_hex());
    }

    fn time(&mut self, at: &DateTime<Utc>) {
        let mut buffer = [0u8; crate::time::LONGEST];
        match crate::time::write(at, &mut buffer) {
            Some(length) => self.plain_str(&buffer[..length]),
            // Years outside 0–9999 and leap seconds: as the derive writes them, through chrono.
            None => self.serde(&Timestamp(at)),
        }
    }

    fn status(&mut self, status: &ItemStatus) {
        self.plain_str(match status {
            ItemStatus::NotSubmitted => b"not_submitted",
            ItemStatus::Pending => b"pending",
            ItemStatus::ChangesRequested => b"changes_requested",
            ItemStatus::Approved => b"approved",
            ItemStatus::EditedAndApproved => b"edited_and_approved",
            ItemStatus::Rejected => b"rejected",
            ItemStatus::ApprovedOnExpiry => b"approved_on_expiry",
            ItemStatus::RejectedOnExpiry => b"rejected_on_expiry",
            ItemStatus::AutoApproved => b"auto_approved",
            ItemStatus::Withdrawn => b"withdrawn",
        });
    }

    fn risk(&mut self, risk: &Risk) {
        self.plain_str(risk.as_str().as_bytes());
    }

    fn outcome(&mut self, outcome: &Outcome) {
        self.plain_str(outcome.as_str().as_bytes());
    }

    fn object<T: WriteJson + ?Sized>(&mut self, value: &T) {
        value.write_json(self);
    }

    fn objects<T: WriteJson>(&mut self, values: &[T]) {
        self.list(values, |json, value| value.write_json(json));
    }

    fn list<T>(&mut self, values: &[T], mut write: impl FnMut(&mut Self, &T)) {
        self.punctuation(b"[");
        for (index, value) in values.iter().enumerate() {
            if index > 0 {
                self.punctuation(b",");
            }
            write(self, value);
        }
        self.punctuation(b"]");
    }

    fn optional<T>(&mut self, value: &Option<T>, write: impl FnOnce(&mut Self, &T)) {
        match value {
            Some(value) => write(self, value),
            None => self.punctuation(b"null"),
        }
    }

    fn optional_str<S: AsRef<str>>(&mut self, text: &Option<S>) {
        self.optional(text, |json, text| json.str(text));
    }

    fn optional_time(&mut self, at: &Option<DateTime<Utc>>) {
        self.optional(at, Json::time);
    }

    fn optional_text(&mut self, text: &Option<JsonText>) {
        self.optional(text, Json::text);
    }

    fn optional_hash(&mut self, hash: &Option<OutputHash>) {
        self.optional(hash, Json::hash);
    }

    fn optional_serde<T: serde::Serialize>(&mut self, value: &Option<T>) {
        self.optional(value, |json, value| json.serde(value));
    }

    fn optional_object<T: WriteJson>(&mut self, value: &Option<T>) {
        self.optional(value, |json, value| value.write_json(json));
    }
}

/// A timestamp as the derive writes one (`crate::time::rfc3339`), for the rare ones the fast
/// path leaves to chrono.
struct Timestamp<'a>(&'a DateTime<Utc>);

impl serde::Serialize for Timestamp<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        crate::time::rfc3339::serialize(self.0, serializer)
    }
}
