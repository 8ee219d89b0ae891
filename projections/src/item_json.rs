//! An item's state and its events' payloads as JSON, written by hand: byte for byte what their
//! `Serialize` derives write through serde_json, in a fraction of the instructions.
//!
//! Why by hand: every answer about an item (each claim, decision, read and long-poll) carries
//! the whole state, 1–2 KB with ~40 keys, and writing it through serde_json was ~15% of the
//! server's instructions per request, most of it per key and per string rather than per byte.
//! Here each key is one constant copy, and only text a person or an agent chose goes through
//! serde_json's string escaping; ids, hashes, timestamps and enum names are known to need none.
//! A generic faster serde serializer was tried first and came out no faster than serde_json.
//!
//! The derive stays the definition: every struct is destructured in full below, so a new field
//! fails to compile here until it is written, and a property test over random item histories
//! holds this output to serde_json's for every state they reach (`item_tests.rs`).

use crate::item::{
    Approval, ChangeRequest, ChangesRequested, Claim, ClaimExpired, ClaimReleased, Comment,
    CommentAdded, Decision, Edit, Escalation, Expiry, ExpiryAction, ItemClaimed, ItemDecided,
    ItemEscalated, ItemExpired, ItemState, ItemStatus, ItemSubmitted, ItemWithdrawn, ModelIdentity,
    Outcome, OutputApproved, OutputEdited, OutputHash, OutputRejected, OutputRevised, Rejection,
    Revision, Risk, Withdrawal,
};
use crate::json::JsonText;
use chrono::{DateTime, Utc};

impl ItemState {
    /// Appends the state as compact JSON to `out`: what `serde_json::to_writer(out, self)` writes.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let ItemState {
            status,
            id,
            queue,
            kind,
            model,
            submitted_by,
            submitted_at,
            output,
            output_hash,
            revision,
            output_edited_by,
            revisions,
            edits,
            context,
            confidence,
            risk,
            priority,
            due_at,
            required_approvals,
            on_expiry,
            callback_url,
            claim,
            approvals,
            change_requests,
            escalations,
            comments,
            rejection,
            withdrawal,
            expiry,
            decision,
            event_count,
            last_event_at,
        } = self;
        let mut json = Json(out);
        json.key(b"{\"status\":");
        json.raw_str(status_name(*status));
        json.key(b",\"id\":");
        json.raw_str(
            id.hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer()),
        );
        json.key(b",\"queue\":");
        json.str(queue);
        json.key(b",\"kind\":");
        json.str(kind);
        json.key(b",\"model\":");
        json.model(model);
        json.key(b",\"submitted_by\":");
        json.str(submitted_by);
        json.key(b",\"submitted_at\":");
        json.time(submitted_at);
        json.key(b",\"output\":");
        json.text(output);
        json.key(b",\"output_hash\":");
        json.hash(output_hash);
        json.key(b",\"revision\":");
        json.integer(*revision);
        json.key(b",\"output_edited_by\":");
        json.option(output_edited_by.as_ref(), |json, name| json.str(name));
        json.key(b",\"revisions\":");
        json.list(revisions, Json::revision);
        json.key(b",\"edits\":");
        json.list(edits, Json::edit);
        json.key(b",\"context\":");
        json.text(context);
        json.key(b",\"confidence\":");
        json.option(confidence.as_ref(), |json, confidence| {
            json.serde(confidence)
        });
        json.key(b",\"risk\":");
        json.raw_str(risk_name(*risk));
        json.key(b",\"priority\":");
        json.integer(*priority);
        json.key(b",\"due_at\":");
        json.option(due_at.as_ref(), Json::time);
        json.key(b",\"required_approvals\":");
        json.integer(*required_approvals);
        json.key(b",\"on_expiry\":");
        json.expiry_action(on_expiry);
        json.key(b",\"callback_url\":");
        json.option(callback_url.as_deref(), Json::str);
        json.key(b",\"claim\":");
        json.option(claim.as_deref(), Json::claim);
        json.key(b",\"approvals\":");
        json.list(approvals, Json::approval);
        json.key(b",\"change_requests\":");
        json.list(change_requests, Json::change_request);
        json.key(b",\"escalations\":");
        json.list(escalations, Json::escalation);
        json.key(b",\"comments\":");
        json.list(comments, Json::comment);
        json.key(b",\"rejection\":");
        json.option(rejection.as_deref(), Json::rejection);
        json.key(b",\"withdrawal\":");
        json.option(withdrawal.as_deref(), Json::withdrawal);
        json.key(b",\"expiry\":");
        json.option(expiry.as_deref(), Json::expiry);
        json.key(b",\"decision\":");
        json.option(decision.as_deref(), Json::decision);
        json.key(b",\"event_count\":");
        json.integer(*event_count);
        json.key(b",\"last_event_at\":");
        json.option(last_event_at.as_ref(), Json::time);
        json.key(b"}");
    }
}

fn status_name(status: ItemStatus) -> &'static str {
    match status {
        ItemStatus::NotSubmitted => "not_submitted",
        ItemStatus::Pending => "pending",
        ItemStatus::ChangesRequested => "changes_requested",
        ItemStatus::Approved => "approved",
        ItemStatus::EditedAndApproved => "edited_and_approved",
        ItemStatus::Rejected => "rejected",
        ItemStatus::ApprovedOnExpiry => "approved_on_expiry",
        ItemStatus::RejectedOnExpiry => "rejected_on_expiry",
        ItemStatus::Withdrawn => "withdrawn",
    }
}

fn risk_name(risk: Risk) -> &'static str {
    match risk {
        Risk::Low => "low",
        Risk::Normal => "normal",
        Risk::High => "high",
    }
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Approved => "approved",
        Outcome::EditedAndApproved => "edited_and_approved",
        Outcome::Rejected => "rejected",
        Outcome::ApprovedOnExpiry => "approved_on_expiry",
        Outcome::RejectedOnExpiry => "rejected_on_expiry",
    }
}

/// The output being written.
struct Json<'a>(&'a mut Vec<u8>);

impl Json<'_> {
    /// Punctuation and keys, as they are.
    fn key(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    /// A string known to need no escaping (ids, hex, timestamps, enum names).
    fn raw_str(&mut self, text: &str) {
        debug_assert!(
            !text
                .bytes()
                .any(|byte| byte < 0x20 || byte == b'"' || byte == b'\\')
        );
        self.0.reserve(text.len() + 2);
        self.0.push(b'"');
        self.0.extend_from_slice(text.as_bytes());
        self.0.push(b'"');
    }

    /// Any other value as serde_json writes it: strings that may need escaping, floats.
    fn uuid(&mut self, id: &uuid::Uuid) {
        self.raw_str(
            id.hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer()),
        );
    }

    fn serde<T: serde::Serialize + ?Sized>(&mut self, value: &T) {
        serde_json::to_writer(&mut *self.0, value)
            .expect("strings and floats always serialize into a Vec");
    }

    fn str(&mut self, text: &str) {
        self.serde(text);
    }

    fn integer<I: itoa::Integer>(&mut self, value: I) {
        self.0
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    fn text(&mut self, text: &JsonText) {
        self.0.extend_from_slice(text.as_str().as_bytes());
    }

    fn hash(&mut self, hash: &OutputHash) {
        let text = hash.to_hex();
        self.0.reserve(66);
        self.0.push(b'"');
        self.0.extend_from_slice(&text);
        self.0.push(b'"');
    }

    fn time(&mut self, at: &DateTime<Utc>) {
        match crate::time::write_to_buffer(at) {
            Some((buffer, length)) => {
                self.0.reserve(length + 2);
                self.0.push(b'"');
                self.0.extend_from_slice(&buffer[..length]);
                self.0.push(b'"');
            }
            // Years outside 0–9999 and leap seconds: as the derive writes them, through chrono.
            None => self.serde(&Timestamp(at)),
        }
    }

    fn option<T: ?Sized>(&mut self, value: Option<&T>, write: impl FnOnce(&mut Self, &T)) {
        match value {
            Some(value) => write(self, value),
            None => self.key(b"null"),
        }
    }

    fn list<T>(&mut self, values: &[T], mut write: impl FnMut(&mut Self, &T)) {
        self.key(b"[");
        for (index, value) in values.iter().enumerate() {
            if index > 0 {
                self.key(b",");
            }
            write(self, value);
        }
        self.key(b"]");
    }

    fn model(&mut self, model: &ModelIdentity) {
        let ModelIdentity { name, version } = model;
        self.key(b"{\"name\":");
        self.str(name);
        self.key(b",\"version\":");
        self.str(version);
        self.key(b"}");
    }

    fn expiry_action(&mut self, action: &ExpiryAction) {
        match action {
            ExpiryAction::Reject => self.key(b"{\"action\":\"reject\"}"),
            ExpiryAction::Approve => self.key(b"{\"action\":\"approve\"}"),
            ExpiryAction::Escalate { queue } => {
                self.key(b"{\"action\":\"escalate\",\"queue\":");
                self.str(queue);
                self.key(b"}");
            }
        }
    }

    fn revision(&mut self, revision: &Revision) {
        let Revision {
            revision,
            output,
            output_hash,
            note,
            at,
        } = revision;
        self.key(b"{\"revision\":");
        self.integer(*revision);
        self.key(b",\"output\":");
        self.text(output);
        self.key(b",\"output_hash\":");
        self.hash(output_hash);
        self.key(b",\"note\":");
        self.option(note.as_deref(), Json::str);
        self.key(b",\"at\":");
        self.time(at);
        self.key(b"}");
    }

    fn edit(&mut self, edit: &Edit) {
        let Edit {
            reviewer,
            revision,
            output,
            output_hash,
            previous_output_hash,
            note,
            at,
        } = edit;
        self.key(b"{\"reviewer\":");
        self.str(reviewer);
        self.key(b",\"revision\":");
        self.integer(*revision);
        self.key(b",\"output\":");
        self.text(output);
        self.key(b",\"output_hash\":");
        self.hash(output_hash);
        self.key(b",\"previous_output_hash\":");
        self.hash(previous_output_hash);
        self.key(b",\"note\":");
        self.option(note.as_deref(), Json::str);
        self.key(b",\"at\":");
        self.time(at);
        self.key(b"}");
    }

    fn claim(&mut self, claim: &Claim) {
        let Claim {
            reviewer,
            claimed_at,
            expires_at,
        } = claim;
        self.key(b"{\"reviewer\":");
        self.str(reviewer);
        self.key(b",\"claimed_at\":");
        self.time(claimed_at);
        self.key(b",\"expires_at\":");
        self.time(expires_at);
        self.key(b"}");
    }

    fn approval(&mut self, approval: &Approval) {
        let Approval { reviewer, at } = approval;
        self.key(b"{\"reviewer\":");
        self.str(reviewer);
        self.key(b",\"at\":");
        self.time(at);
        self.key(b"}");
    }

    fn change_request(&mut self, request: &ChangeRequest) {
        let ChangeRequest {
            reviewer,
            instructions,
            revision,
            output_hash,
            at,
        } = request;
        self.key(b"{\"reviewer\":");
        self.str(reviewer);
        self.key(b",\"instructions\":");
        self.str(instructions);
        self.key(b",\"revision\":");
        self.integer(*revision);
        self.key(b",\"output_hash\":");
        self.hash(output_hash);
        self.key(b",\"at\":");
        self.time(at);
        self.key(b"}");
    }

    fn escalation(&mut self, escalation: &Escalation) {
        let Escalation {
            by,
            from_queue,
            to_queue,
            reason,
            at,
        } = escalation;
        self.key(b"{\"by\":");
        self.str(by);
        self.key(b",\"from_queue\":");
        self.str(from_queue);
        self.key(b",\"to_queue\":");
        self.str(to_queue);
        self.key(b",\"reason\":");
        self.str(reason);
        self.key(b",\"at\":");
        self.time(at);
        self.key(b"}");
    }

    fn comment(&mut self, comment: &Comment) {
        let Comment { author, text, at } = comment;
        self.key(b"{\"author\":");
        self.str(author);
        self.key(b",\"text\":");
        self.str(text);
        self.key(b",\"at\":");
        self.time(at);
        self.key(b"}");
    }

    fn rejection(&mut self, rejection: &Rejection) {
        let Rejection {
            reviewer,
            reason,
            at,
        } = rejection;
        self.key(b"{\"reviewer\":");
        self.str(reviewer);
        self.key(b",\"reason\":");
        self.str(reason);
        self.key(b",\"at\":");
        self.time(at);
        self.key(b"}");
    }

    fn withdrawal(&mut self, withdrawal: &Withdrawal) {
        let Withdrawal { by, reason, at } = withdrawal;
        self.key(b"{\"by\":");
        self.str(by);
        self.key(b",\"reason\":");
        self.option(reason.as_deref(), Json::str);
        self.key(b",\"at\":");
        self.time(at);
        self.key(b"}");
    }

    fn expiry(&mut self, expiry: &Expiry) {
        let Expiry {
            due_at,
            configured_action,
            applied_action,
            at,
        } = expiry;
        self.key(b"{\"due_at\":");
        self.time(due_at);
        self.key(b",\"configured_action\":");
        self.expiry_action(configured_action);
        self.key(b",\"applied_action\":");
        self.expiry_action(applied_action);
        self.key(b",\"at\":");
        self.time(at);
        self.key(b"}");
    }

    fn decision(&mut self, decision: &Decision) {
        let Decision {
            outcome,
            decided_by,
            revision,
            output_hash,
            final_output,
            decided_at,
        } = decision;
        self.key(b"{\"outcome\":");
        self.raw_str(outcome_name(*outcome));
        self.key(b",\"decided_by\":");
        self.list(decided_by, |json, name| json.str(name));
        self.key(b",\"revision\":");
        self.integer(*revision);
        self.key(b",\"output_hash\":");
        self.hash(output_hash);
        self.key(b",\"final_output\":");
        self.option(final_output.as_ref(), Json::text);
        self.key(b",\"decided_at\":");
        self.time(decided_at);
        self.key(b"}");
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

/// An item event's payload as compact JSON, written by hand like the state above: what the
/// payload's `Serialize` derive writes through serde_json. Every command's write serializes one
/// to three of these.
pub(crate) trait WriteJson {
    fn write_json(&self, out: &mut Vec<u8>);
}

impl WriteJson for ItemSubmitted {
    fn write_json(&self, out: &mut Vec<u8>) {
        let ItemSubmitted {
            item_id,
            queue,
            kind,
            model,
            revision,
            output,
            output_hash,
            context,
            confidence,
            risk,
            priority,
            due_at,
            required_approvals,
            on_expiry,
            callback_url,
            submitted_by,
            submitted_at,
        } = self;
        let mut json = Json(out);
        json.key(b"{\"item_id\":");
        json.uuid(item_id);
        json.key(b",\"queue\":");
        json.str(queue);
        json.key(b",\"kind\":");
        json.str(kind);
        json.key(b",\"model\":");
        json.model(model);
        json.key(b",\"revision\":");
        json.integer(*revision);
        json.key(b",\"output\":");
        json.serde(output);
        json.key(b",\"output_hash\":");
        json.hash(output_hash);
        json.key(b",\"context\":");
        json.serde(context);
        json.key(b",\"confidence\":");
        json.option(confidence.as_ref(), |json, confidence| {
            json.serde(confidence)
        });
        json.key(b",\"risk\":");
        json.raw_str(risk_name(*risk));
        json.key(b",\"priority\":");
        json.integer(*priority);
        json.key(b",\"due_at\":");
        json.option(due_at.as_ref(), Json::time);
        json.key(b",\"required_approvals\":");
        json.integer(*required_approvals);
        json.key(b",\"on_expiry\":");
        json.expiry_action(on_expiry);
        json.key(b",\"callback_url\":");
        json.option(callback_url.as_deref(), Json::str);
        json.key(b",\"submitted_by\":");
        json.str(submitted_by);
        json.key(b",\"submitted_at\":");
        json.time(submitted_at);
        json.key(b"}");
    }
}

impl WriteJson for ItemClaimed {
    fn write_json(&self, out: &mut Vec<u8>) {
        let ItemClaimed {
            reviewer,
            claimed_at,
            expires_at,
        } = self;
        let mut json = Json(out);
        json.key(b"{\"reviewer\":");
        json.str(reviewer);
        json.key(b",\"claimed_at\":");
        json.time(claimed_at);
        json.key(b",\"expires_at\":");
        json.time(expires_at);
        json.key(b"}");
    }
}

impl WriteJson for ClaimReleased {
    fn write_json(&self, out: &mut Vec<u8>) {
        let ClaimReleased { reviewer, at } = self;
        let mut json = Json(out);
        json.key(b"{\"reviewer\":");
        json.str(reviewer);
        json.key(b",\"at\":");
        json.time(at);
        json.key(b"}");
    }
}

impl WriteJson for ClaimExpired {
    fn write_json(&self, out: &mut Vec<u8>) {
        let ClaimExpired {
            reviewer,
            expired_at,
            at,
        } = self;
        let mut json = Json(out);
        json.key(b"{\"reviewer\":");
        json.str(reviewer);
        json.key(b",\"expired_at\":");
        json.time(expired_at);
        json.key(b",\"at\":");
        json.time(at);
        json.key(b"}");
    }
}

impl WriteJson for OutputApproved {
    fn write_json(&self, out: &mut Vec<u8>) {
        let OutputApproved {
            reviewer,
            revision,
            output_hash,
            approvals,
            required_approvals,
            at,
        } = self;
        let mut json = Json(out);
        json.key(b"{\"reviewer\":");
        json.str(reviewer);
        json.key(b",\"revision\":");
        json.integer(*revision);
        json.key(b",\"output_hash\":");
        json.hash(output_hash);
        json.key(b",\"approvals\":");
        json.integer(*approvals);
        json.key(b",\"required_approvals\":");
        json.integer(*required_approvals);
        json.key(b",\"at\":");
        json.time(at);
        json.key(b"}");
    }
}

impl WriteJson for OutputEdited {
    fn write_json(&self, out: &mut Vec<u8>) {
        let OutputEdited {
            reviewer,
            revision,
            edited_output,
            output_hash,
            previous_output_hash,
            note,
            at,
        } = self;
        let mut json = Json(out);
        json.key(b"{\"reviewer\":");
        json.str(reviewer);
        json.key(b",\"revision\":");
        json.integer(*revision);
        json.key(b",\"edited_output\":");
        json.serde(edited_output);
        json.key(b",\"output_hash\":");
        json.hash(output_hash);
        json.key(b",\"previous_output_hash\":");
        json.hash(previous_output_hash);
        json.key(b",\"note\":");
        json.option(note.as_deref(), Json::str);
        json.key(b",\"at\":");
        json.time(at);
        json.key(b"}");
    }
}

impl WriteJson for OutputRejected {
    fn write_json(&self, out: &mut Vec<u8>) {
        let OutputRejected {
            reviewer,
            reason,
            revision,
            output_hash,
            at,
        } = self;
        let mut json = Json(out);
        json.key(b"{\"reviewer\":");
        json.str(reviewer);
        json.key(b",\"reason\":");
        json.str(reason);
        json.key(b",\"revision\":");
        json.integer(*revision);
        json.key(b",\"output_hash\":");
        json.hash(output_hash);
        json.key(b",\"at\":");
        json.time(at);
        json.key(b"}");
    }
}

impl WriteJson for ChangesRequested {
    fn write_json(&self, out: &mut Vec<u8>) {
        let ChangesRequested {
            reviewer,
            instructions,
            revision,
            output_hash,
            at,
        } = self;
        let mut json = Json(out);
        json.key(b"{\"reviewer\":");
        json.str(reviewer);
        json.key(b",\"instructions\":");
        json.str(instructions);
        json.key(b",\"revision\":");
        json.integer(*revision);
        json.key(b",\"output_hash\":");
        json.hash(output_hash);
        json.key(b",\"at\":");
        json.time(at);
        json.key(b"}");
    }
}

impl WriteJson for OutputRevised {
    fn write_json(&self, out: &mut Vec<u8>) {
        let OutputRevised {
            revised_by,
            revision,
            output,
            output_hash,
            previous_output_hash,
            note,
            at,
        } = self;
        let mut json = Json(out);
        json.key(b"{\"revised_by\":");
        json.str(revised_by);
        json.key(b",\"revision\":");
        json.integer(*revision);
        json.key(b",\"output\":");
        json.serde(output);
        json.key(b",\"output_hash\":");
        json.hash(output_hash);
        json.key(b",\"previous_output_hash\":");
        json.hash(previous_output_hash);
        json.key(b",\"note\":");
        json.option(note.as_deref(), Json::str);
        json.key(b",\"at\":");
        json.time(at);
        json.key(b"}");
    }
}

impl WriteJson for ItemEscalated {
    fn write_json(&self, out: &mut Vec<u8>) {
        let ItemEscalated {
            by,
            from_queue,
            to_queue,
            reason,
            at,
        } = self;
        let mut json = Json(out);
        json.key(b"{\"by\":");
        json.str(by);
        json.key(b",\"from_queue\":");
        json.str(from_queue);
        json.key(b",\"to_queue\":");
        json.str(to_queue);
        json.key(b",\"reason\":");
        json.str(reason);
        json.key(b",\"at\":");
        json.time(at);
        json.key(b"}");
    }
}

impl WriteJson for CommentAdded {
    fn write_json(&self, out: &mut Vec<u8>) {
        let CommentAdded { author, text, at } = self;
        let mut json = Json(out);
        json.key(b"{\"author\":");
        json.str(author);
        json.key(b",\"text\":");
        json.str(text);
        json.key(b",\"at\":");
        json.time(at);
        json.key(b"}");
    }
}

impl WriteJson for ItemWithdrawn {
    fn write_json(&self, out: &mut Vec<u8>) {
        let ItemWithdrawn { by, reason, at } = self;
        let mut json = Json(out);
        json.key(b"{\"by\":");
        json.str(by);
        json.key(b",\"reason\":");
        json.option(reason.as_deref(), Json::str);
        json.key(b",\"at\":");
        json.time(at);
        json.key(b"}");
    }
}

impl WriteJson for ItemExpired {
    fn write_json(&self, out: &mut Vec<u8>) {
        let ItemExpired {
            due_at,
            configured_action,
            applied_action,
            at,
        } = self;
        let mut json = Json(out);
        json.key(b"{\"due_at\":");
        json.time(due_at);
        json.key(b",\"configured_action\":");
        json.expiry_action(configured_action);
        json.key(b",\"applied_action\":");
        json.expiry_action(applied_action);
        json.key(b",\"at\":");
        json.time(at);
        json.key(b"}");
    }
}

impl WriteJson for ItemDecided {
    fn write_json(&self, out: &mut Vec<u8>) {
        let ItemDecided {
            outcome,
            decided_by,
            revision,
            output_hash,
            final_output,
            decided_at,
        } = self;
        let mut json = Json(out);
        json.key(b"{\"outcome\":");
        json.raw_str(outcome_name(*outcome));
        json.key(b",\"decided_by\":");
        json.list(decided_by, |json, name| json.str(name));
        json.key(b",\"revision\":");
        json.integer(*revision);
        json.key(b",\"output_hash\":");
        json.hash(output_hash);
        json.key(b",\"final_output\":");
        json.option(final_output.as_ref(), |json, output| json.serde(output));
        json.key(b",\"decided_at\":");
        json.time(decided_at);
        json.key(b"}");
    }
}
