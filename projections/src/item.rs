//! The review domain of one review item: its commands, events, errors and state, and the pure `decide` and `evolve` functions over them.
//!
//! An item is an aggregate whose stream (`item-<id>`) holds [`ItemEvent`]s.
//! The shell folds the stream into an [`ItemState`] with [`fold`], asks [`decide`] what a [`Command`] causes,
//! appends the returned events (all or none), and nothing else: every rule lives here.
//! Neither function reads a clock or does I/O: the time and the authenticated actor arrive in a [`CommandContext`],
//! and every event carries the times it needs, so [`evolve`] is a plain function of the state and the event.
//!
//! `decide` checks a command in one fixed order, so that the same request always meets the same error:
//! 1. the item exists and is still open (`ItemNotFound`, `AlreadySubmitted`, `AlreadyDecided`, `AlreadyWithdrawn`);
//! 2. the actor may do this at all (`SelfReview`, `NotTheSubmitter`);
//! 3. the payload is well formed (`Invalid`);
//! 4. the item's present state allows it (claims, change requests, four-eyes, deadlines, the output shown).

use crate::json::JsonText;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use thin_vec::{ThinVec, thin_vec};
use uuid::Uuid;

/// The most distinct approvals an item may require; more is a configuration mistake, not a safety gain.
pub const MAXIMUM_REQUIRED_APPROVALS: u32 = 10;

/// The longest lease a claim may have: a forgotten claim must not hide an item for more than a day.
pub const MAXIMUM_CLAIM_LEASE: Duration = Duration::hours(24);

/// The longest queue, kind, model name or model version, in characters.
pub const MAXIMUM_NAME_LENGTH: usize = 200;

/// The longest free text (reason, instructions, note, comment), in characters.
pub const MAXIMUM_TEXT_LENGTH: usize = 10_000;

/// The longest callback URL, in characters.
pub const MAXIMUM_CALLBACK_URL_LENGTH: usize = 2_048;

/// The schema version of every item event type today; bump one type's version when its payload changes shape.
pub const ITEM_EVENT_SCHEMA_VERSION: u32 = 1;

/// The reason recorded on the escalation that an expiry with [`ExpiryAction::Escalate`] causes.
pub const EXPIRY_ESCALATION_REASON: &str = "the deadline passed without a decision";

/// The minimum review window of the built-in expiry policy (ADR 0007): long enough for a reviewer
/// on a staffed queue to see an item arrive, claim it and read it, so that a deadline cannot be
/// set to pass before anyone could have looked; short enough for chat-speed workflows.
pub const DEFAULT_MINIMUM_REVIEW_WINDOW: Duration = Duration::minutes(5);

/// The longest minimum review window a policy may set; more is a configuration mistake.
pub const MAXIMUM_MINIMUM_REVIEW_WINDOW: Duration = Duration::days(365);

// ---------------------------------------------------------------------------------------------
// Values shared by commands, events and state
// ---------------------------------------------------------------------------------------------

/// How much harm the output can do if it is wrong; set by the submitter, used to order and route review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    Low,
    #[default]
    Normal,
    High,
}

impl Risk {
    /// The name in JSON and in the analytics tables, e.g. "high".
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Normal => "normal",
            Risk::High => "high",
        }
    }
}

/// What happens to an item whose deadline passes without a decision: an [`ExpiryPolicy`]'s action,
/// chosen by the operator (before ADR 0007 the submitter chose it; stored events still say so).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ExpiryAction {
    /// The item ends rejected on expiry: nothing takes effect unreviewed.
    #[default]
    Reject,
    /// The item ends approved on expiry: the output takes effect unreviewed.
    Approve,
    /// The item moves to `queue` with its deadline cleared, to be reviewed there.
    Escalate { queue: String },
}

/// The operator's rule for items whose deadline passes without a decision, for a queue and/or a
/// kind (ADR 0007). The shell resolves it from its configuration and passes it in the command
/// (`Submit` for the review window, `Expire` for the action); the submitter has no say in it.
/// The domain applies its own hard rules on top: see [`decide`]'s handling of `Expire`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryPolicy {
    /// The policy's name, recorded in the `ItemExpired` it causes.
    pub name: String,
    /// What the operator wants done at expiry.
    pub action: ExpiryAction,
    /// The second, explicit opt-in that `Approve` needs to take effect at all.
    pub allow_auto_approval: bool,
    /// The shortest time allowed between an item's submission and its `due_at`.
    pub minimum_review_window: Duration,
}

impl ExpiryPolicy {
    /// The name of [`ExpiryPolicy::built_in`].
    pub const BUILT_IN_NAME: &'static str = "built-in-default";

    /// What applies where the operator configured nothing: reject, never approve, and a deadline
    /// at least [`DEFAULT_MINIMUM_REVIEW_WINDOW`] after submission.
    pub fn built_in() -> ExpiryPolicy {
        ExpiryPolicy {
            name: Self::BUILT_IN_NAME.to_owned(),
            action: ExpiryAction::Reject,
            allow_auto_approval: false,
            minimum_review_window: DEFAULT_MINIMUM_REVIEW_WINDOW,
        }
    }

    /// Whether the policy is coherent on its own: a valid name and escalation queue, a window
    /// within `0..=`[`MAXIMUM_MINIMUM_REVIEW_WINDOW`], and `Approve` only with the explicit
    /// opt-in (a policy that says approve but does not allow it is a contradiction the operator
    /// should hear about at start, not discover as rejections). The field names are those of the
    /// policy file.
    pub fn validate(&self) -> Result<(), DomainError> {
        validate_name("name", &self.name)?;
        if let ExpiryAction::Escalate { queue } = &self.action {
            validate_name("escalate_to", queue)?;
        }
        if self.action == ExpiryAction::Approve && !self.allow_auto_approval {
            return Err(DomainError::invalid(
                "allow_auto_approval",
                "must be true for the action approve: auto-approval on expiry is an explicit opt-in",
            ));
        }
        if self.minimum_review_window < Duration::zero()
            || self.minimum_review_window > MAXIMUM_MINIMUM_REVIEW_WINDOW
        {
            return Err(DomainError::invalid(
                "minimum_review_window_seconds",
                format!(
                    "must be from 0 to {} seconds",
                    MAXIMUM_MINIMUM_REVIEW_WINDOW.num_seconds()
                ),
            ));
        }
        Ok(())
    }
}

/// A duration as people read it in an error: "5 minutes", "1 hour", "90 seconds".
pub fn describe_duration(duration: Duration) -> String {
    let seconds = duration.num_seconds();
    let (count, unit) = match seconds {
        0 => (0, "second"),
        _ if seconds % 86_400 == 0 => (seconds / 86_400, "day"),
        _ if seconds % 3_600 == 0 => (seconds / 3_600, "hour"),
        _ if seconds % 60 == 0 => (seconds / 60, "minute"),
        _ => (seconds, "second"),
    };
    if count == 1 {
        format!("1 {unit}")
    } else {
        format!("{count} {unit}s")
    }
}

/// The model that produced an output, as the analytics group by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct ModelIdentity {
    pub name: Name,
    pub version: Name,
}

/// A short name (queue, kind, model, principal) as read models hold it: up to 24 bytes inline, no heap allocation.
pub type Name = compact_str::CompactString;

/// How an item was decided; the status it ends in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Enough reviewers approved the output as submitted or revised by the submitter.
    Approved,
    /// Enough reviewers approved content that a reviewer had edited.
    EditedAndApproved,
    /// A reviewer rejected the output.
    Rejected,
    /// The deadline passed and the configured default approved the output.
    ApprovedOnExpiry,
    /// The deadline passed and the configured default (or the safety rule for outputs with changes requested) rejected it.
    RejectedOnExpiry,
    /// A review policy approved it at submission, on a measurement of its slice's override rate
    /// (the `ItemAutoApproved` event before the decision names both).
    AutoApproved,
}

impl Outcome {
    /// The name in JSON and in the analytics tables, e.g. "edited_and_approved".
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Approved => "approved",
            Outcome::EditedAndApproved => "edited_and_approved",
            Outcome::Rejected => "rejected",
            Outcome::ApprovedOnExpiry => "approved_on_expiry",
            Outcome::RejectedOnExpiry => "rejected_on_expiry",
            Outcome::AutoApproved => "auto_approved",
        }
    }

    /// Whether the output takes effect.
    pub fn is_approval(self) -> bool {
        matches!(
            self,
            Outcome::Approved
                | Outcome::EditedAndApproved
                | Outcome::ApprovedOnExpiry
                | Outcome::AutoApproved
        )
    }

    /// Whether no human made this decision.
    pub fn is_on_expiry(self) -> bool {
        matches!(self, Outcome::ApprovedOnExpiry | Outcome::RejectedOnExpiry)
    }
}

/// Where an item stands in its lifecycle. A claim is not a status: it is a lease that lapses with time, see [`ItemState::live_claim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    /// No `ItemSubmitted` yet: the item does not exist.
    #[default]
    NotSubmitted,
    /// In its queue, waiting for (more) review.
    Pending,
    /// Sent back to the submitter, waiting for a new revision.
    ChangesRequested,
    Approved,
    EditedAndApproved,
    Rejected,
    ApprovedOnExpiry,
    RejectedOnExpiry,
    /// Approved at submission by a review policy.
    AutoApproved,
    /// The submitter withdrew it before a decision.
    Withdrawn,
}

impl From<Outcome> for ItemStatus {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Approved => ItemStatus::Approved,
            Outcome::EditedAndApproved => ItemStatus::EditedAndApproved,
            Outcome::Rejected => ItemStatus::Rejected,
            Outcome::ApprovedOnExpiry => ItemStatus::ApprovedOnExpiry,
            Outcome::AutoApproved => ItemStatus::AutoApproved,
            Outcome::RejectedOnExpiry => ItemStatus::RejectedOnExpiry,
        }
    }
}

/// The content hash that binds a decision to exactly the output that was shown: SHA-256 of the
/// output's JSON text, exactly as it is stored in its event and answered by the API.
///
/// That text is the client's own, every token byte for byte with the whitespace between tokens
/// dropped ([`JsonText::from_client`]); events written before outputs were kept as sent hold
/// serde_json's compact text with sorted keys, and their hashes were of that text, so one rule
/// covers every event (`docs/ledger-format.md`, `docs/adr/0008-byte-exact-outputs.md`).
pub fn output_hash(output: &JsonText) -> OutputHash {
    OutputHash(Sha256::digest(output.as_str().as_bytes()).into())
}

/// The fingerprint of a submission, which an `Idempotency-Key` retry must match: SHA-256 of the
/// submission as serde_json writes it (its fields in their order, the output and context as
/// their stored text). Two requests that ask for the same submission in different spellings
/// (field order, whitespace, an explicit default) have the same fingerprint.
pub fn submission_fingerprint(submission: &Submission) -> OutputHash {
    let bytes = serde_json::to_vec(submission)
        .expect("a submission always serializes: its maps have string keys");
    OutputHash(Sha256::digest(&bytes).into())
}

/// An [`output_hash`]: 32 bytes, written everywhere (events, JSON answers, messages) as 64 lowercase hex digits.
///
/// Held as bytes rather than as its hex text: read models keep several per item (the current content, each
/// revision, each edit, the decision), and as `String`s they cost ~90 bytes each on the heap, a large share of
/// a million-item board. An event whose hash is not 64 lowercase hex digits does not decode.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct OutputHash([u8; 32]);

impl OutputHash {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lowercase hex digits of the hash.
    pub fn to_hex(&self) -> [u8; 64] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 64];
        for (pair, byte) in text.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0xf)];
        }
        text
    }

    /// Parses 64 lowercase hex digits, the only spelling this type writes. By hand, one pass over
    /// the digits: the read models parse one or two of these per event they apply.
    pub fn parse(text: &str) -> Option<OutputHash> {
        // Each byte's digit value, or 0x10 for a byte that is no lowercase hex digit: the pairs
        // are combined without a branch, and any bad digit shows in the OR of all of them.
        const VALUE: [u8; 256] = {
            let mut table = [0x10u8; 256];
            let mut digit = 0;
            while digit < 10 {
                table[b'0' as usize + digit] = digit as u8;
                digit += 1;
            }
            let mut letter = 0;
            while letter < 6 {
                table[b'a' as usize + letter] = 10 + letter as u8;
                letter += 1;
            }
            table
        };
        let digits: &[u8; 64] = text.as_bytes().try_into().ok()?;
        let mut bytes = [0u8; 32];
        let mut bad = 0u8;
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            let (high, low) = (VALUE[usize::from(pair[0])], VALUE[usize::from(pair[1])]);
            bad |= high | low;
            *byte = high << 4 | low;
        }
        (bad & 0x10 == 0).then_some(OutputHash(bytes))
    }
}

impl std::fmt::Display for OutputHash {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(std::str::from_utf8(&self.to_hex()).expect("hex digits are ASCII"))
    }
}

impl std::fmt::Debug for OutputHash {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "\"{self}\"")
    }
}

impl PartialEq<str> for OutputHash {
    fn eq(&self, other: &str) -> bool {
        OutputHash::parse(other).is_some_and(|parsed| parsed == *self)
    }
}

impl PartialEq<&str> for OutputHash {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl PartialEq<OutputHash> for &str {
    fn eq(&self, other: &OutputHash) -> bool {
        *other == **self
    }
}

impl Serialize for OutputHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = self.to_hex();
        serializer.serialize_str(std::str::from_utf8(&text).expect("hex digits are ASCII"))
    }
}

impl<'de> Deserialize<'de> for OutputHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        OutputHash::parse(&text)
            .ok_or_else(|| serde::de::Error::custom("an output hash is 64 lowercase hex digits"))
    }
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

/// Who asks and when: the authenticated principal (never a field the client chooses) and the time the shell read from its clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandContext {
    /// The authenticated principal's name; [`CommandContext::SCHEDULER`] for the background scheduler.
    pub actor: String,
    pub now: DateTime<Utc>,
}

impl CommandContext {
    /// The actor name the scheduler uses for `Expire` and `ExpireClaim`.
    pub const SCHEDULER: &'static str = "system";

    pub fn new(actor: impl Into<String>, now: DateTime<Utc>) -> Self {
        CommandContext {
            actor: actor.into(),
            now,
        }
    }
}

/// An AI output submitted for review; the actor who submits it is its submitter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Submission {
    pub item_id: Uuid,
    pub queue: String,
    /// What sort of output this is, e.g. "customer-reply"; the analytics and the review policy group by it.
    pub kind: String,
    pub model: ModelIdentity,
    /// The output under review; any JSON except `null`, as the client sent it.
    pub output: JsonText,
    /// What the reviewer needs to judge the output (the conversation, the document, …); any JSON.
    pub context: JsonText,
    /// The model's stated confidence, within 0..=1.
    pub confidence: Option<f64>,
    pub risk: Risk,
    /// Higher is reviewed first.
    pub priority: i32,
    /// When the item expires if undecided; at least the policy's minimum review window after the submission time.
    pub due_at: Option<DateTime<Utc>>,
    /// How many distinct reviewers must approve the same content (four-eyes when 2); 1..=[`MAXIMUM_REQUIRED_APPROVALS`].
    pub required_approvals: u32,
    /// Where the shell posts the decision; `http://` or `https://`.
    pub callback_url: Option<String>,
    /// The operator's expiry policy for this queue and kind, as the shell resolved it: its
    /// minimum review window bounds `due_at`. Nothing of it is recorded: the policy in force at
    /// expiry decides what expiry does. Shared with the shell's configuration, not copied per item.
    /// Not part of the submission's fingerprint: the queue and kind, which are, resolve it.
    #[serde(skip)]
    pub expiry_policy: Arc<ExpiryPolicy>,
    /// The review policy's evidence, when the shell found the item's slice under sampling and did
    /// not draw this item for review: the item is then approved at once, unless it is high-risk
    /// (those are always reviewed). Not recorded as part of the submission, nor its fingerprint.
    #[serde(skip)]
    pub auto_approval: Option<Arc<AutoApproval>>,
}

/// Why a review policy may approve an item without review (see [`ItemAutoApproved`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AutoApproval {
    pub policy: String,
    pub measurement_id: Uuid,
    pub override_rate: f64,
    pub override_rate_high: f64,
    pub sample: u64,
    pub target: f64,
    pub sampling_rate: f64,
}

/// What an actor asks the item to do. `seen_output_hash`, where present, is the [`output_hash`] of the content the reviewer was shown;
/// a decision on content that changed since is refused rather than silently applied to the new content.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Submit(Submission),
    /// Take (or renew) a lease on the item so that no one else decides it meanwhile.
    Claim {
        lease: Duration,
    },
    /// Give up one's own live claim.
    Release,
    Approve {
        seen_output_hash: Option<String>,
    },
    /// Replace the content under review and approve the replacement; the edited output is stored in full.
    EditAndApprove {
        edited_output: JsonText,
        note: Option<String>,
        seen_output_hash: Option<String>,
    },
    Reject {
        reason: String,
        seen_output_hash: Option<String>,
    },
    /// Send the item back to its submitter with instructions.
    RequestChanges {
        instructions: String,
        seen_output_hash: Option<String>,
    },
    /// The submitter's answer to a change request: a new revision that returns to the queue.
    Revise {
        output: JsonText,
        note: Option<String>,
    },
    /// Move the item to another queue, dropping any claim.
    Escalate {
        to_queue: String,
        reason: String,
    },
    Comment {
        text: String,
    },
    /// The submitter takes the item back before a decision.
    Withdraw {
        reason: Option<String>,
    },
    /// The scheduler applies the operator's expiry policy for the item's queue and kind once its
    /// deadline has passed (the domain's hard rules may apply `Reject` instead).
    Expire {
        policy: Arc<ExpiryPolicy>,
    },
    /// The scheduler ends a claim whose lease has passed.
    ExpireClaim,
}

impl Command {
    /// A stable name for logs and traces.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Submit(_) => "Submit",
            Command::Claim { .. } => "Claim",
            Command::Release => "Release",
            Command::Approve { .. } => "Approve",
            Command::EditAndApprove { .. } => "EditAndApprove",
            Command::Reject { .. } => "Reject",
            Command::RequestChanges { .. } => "RequestChanges",
            Command::Revise { .. } => "Revise",
            Command::Escalate { .. } => "Escalate",
            Command::Comment { .. } => "Comment",
            Command::Withdraw { .. } => "Withdraw",
            Command::Expire { .. } => "Expire",
            Command::ExpireClaim => "ExpireClaim",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// How the HTTP layer should answer a [`DomainError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The item does not exist (404).
    NotFound,
    /// The item's state has moved on, or someone else holds it (409).
    Conflict,
    /// This actor may not do this to this item (403).
    Forbidden,
    /// A payload value is malformed or out of range (422, or 400).
    Invalid,
    /// Well-formed, but a review rule does not allow it now (422).
    RuleBroken,
}

/// Why `decide` refused a command. Each variant names the state that refused it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DomainError {
    /// The item has not been submitted.
    #[error("the item does not exist")]
    ItemNotFound,
    /// An item with this id was submitted already.
    #[error("the item was submitted already")]
    AlreadySubmitted,
    /// The item has been decided; it is never decided again.
    #[error("the item was decided already ({outcome:?})")]
    AlreadyDecided { outcome: Outcome },
    /// The submitter withdrew the item.
    #[error("the item was withdrawn")]
    AlreadyWithdrawn,
    /// The submitter tried to claim or decide its own item.
    #[error("the submitter may not review its own item")]
    SelfReview,
    /// Another reviewer holds a live claim on the item.
    #[error("the item is claimed by {holder} until {expires_at}")]
    ClaimedBySomeoneElse {
        holder: String,
        expires_at: DateTime<Utc>,
    },
    /// Only the holder may release a claim.
    #[error("the item is claimed by {holder}, not by you")]
    NotClaimedByYou { holder: String },
    /// There is no claim to release or expire.
    #[error("the item has no claim")]
    NoClaim,
    /// The claim's lease has not passed yet.
    #[error("the claim is live until {expires_at}")]
    ClaimStillLive { expires_at: DateTime<Utc> },
    /// This reviewer approved the current content already; four-eyes needs someone else.
    #[error("you approved this content already; another reviewer must approve it")]
    AlreadyApprovedByYou,
    /// The content changed since the reviewer was shown it.
    #[error("the output changed since it was shown: shown {expected}, now {current}")]
    OutputChanged { expected: String, current: String },
    /// Only the submitter may revise or withdraw the item.
    #[error("only the submitter may do this")]
    NotTheSubmitter,
    /// A revision answers a change request, and none is open.
    #[error("no changes were requested")]
    NoChangesRequested,
    /// The item waits for the submitter's revision; it cannot be claimed or decided meanwhile.
    #[error("changes were requested; the item waits for the submitter's revision")]
    ChangesRequestedPending,
    /// The item has no deadline, so it never expires.
    #[error("the item has no deadline")]
    NoDeadline,
    /// The item's deadline has not passed yet.
    #[error("the item is not due until {due_at}")]
    NotDue { due_at: DateTime<Utc> },
    /// The deadline leaves less time for review than the operator's expiry policy requires.
    #[error(
        "due_at: must be at least {minimum} after the submission, the minimum review window of expiry policy {policy:?} (the earliest allowed now is {earliest_due_at})",
        minimum = describe_duration(*.minimum_review_window),
        earliest_due_at = .earliest_due_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    )]
    DeadlineInsideReviewWindow {
        policy: String,
        minimum_review_window: Duration,
        earliest_due_at: DateTime<Utc>,
    },
    /// A payload value is malformed or out of range.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl DomainError {
    /// A stable kebab-case rule name, for the `type` of an HTTP problem details body and for logs.
    pub fn rule(&self) -> &'static str {
        match self {
            DomainError::ItemNotFound => "item-not-found",
            DomainError::AlreadySubmitted => "already-submitted",
            DomainError::AlreadyDecided { .. } => "already-decided",
            DomainError::AlreadyWithdrawn => "already-withdrawn",
            DomainError::SelfReview => "self-review",
            DomainError::ClaimedBySomeoneElse { .. } => "claimed-by-someone-else",
            DomainError::NotClaimedByYou { .. } => "not-claimed-by-you",
            DomainError::NoClaim => "no-claim",
            DomainError::ClaimStillLive { .. } => "claim-still-live",
            DomainError::AlreadyApprovedByYou => "already-approved-by-you",
            DomainError::OutputChanged { .. } => "output-changed",
            DomainError::NotTheSubmitter => "not-the-submitter",
            DomainError::NoChangesRequested => "no-changes-requested",
            DomainError::ChangesRequestedPending => "changes-requested-pending",
            DomainError::NoDeadline => "no-deadline",
            DomainError::NotDue { .. } => "not-due",
            DomainError::DeadlineInsideReviewWindow { .. } => "deadline-inside-review-window",
            DomainError::Invalid { .. } => "invalid",
        }
    }

    /// The class of refusal, which the HTTP layer maps to a status code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DomainError::ItemNotFound => ErrorKind::NotFound,
            DomainError::AlreadySubmitted
            | DomainError::AlreadyDecided { .. }
            | DomainError::AlreadyWithdrawn
            | DomainError::ClaimedBySomeoneElse { .. }
            | DomainError::AlreadyApprovedByYou
            | DomainError::OutputChanged { .. } => ErrorKind::Conflict,
            DomainError::SelfReview
            | DomainError::NotClaimedByYou { .. }
            | DomainError::NotTheSubmitter => ErrorKind::Forbidden,
            DomainError::Invalid { .. } | DomainError::DeadlineInsideReviewWindow { .. } => {
                ErrorKind::Invalid
            }
            DomainError::NoClaim
            | DomainError::ClaimStillLive { .. }
            | DomainError::NoChangesRequested
            | DomainError::ChangesRequestedPending
            | DomainError::NoDeadline
            | DomainError::NotDue { .. } => ErrorKind::RuleBroken,
        }
    }

    fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        DomainError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

/// An AI output entered review: every submission field, who submitted it and when, as revision 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemSubmitted {
    pub item_id: Uuid,
    pub queue: String,
    pub kind: String,
    pub model: ModelIdentity,
    pub revision: u32,
    pub output: JsonText,
    pub output_hash: OutputHash,
    pub context: JsonText,
    pub confidence: Option<f64>,
    pub risk: Risk,
    pub priority: i32,
    #[serde(default, with = "crate::time::rfc3339_option")]
    pub due_at: Option<DateTime<Utc>>,
    pub required_approvals: u32,
    /// What the submitter asked for at expiry, in events written before ADR 0007; `None` (JSON
    /// `null`) since. Kept so that every stored event decodes; never applied: the operator's
    /// policy in force at expiry decides.
    #[serde(default)]
    pub on_expiry: Option<ExpiryAction>,
    pub callback_url: Option<String>,
    pub submitted_by: String,
    #[serde(with = "crate::time::rfc3339")]
    pub submitted_at: DateTime<Utc>,
    /// The [`submission_fingerprint`] of the request, which a retry with the same
    /// `Idempotency-Key` must match; absent from events written before it was recorded.
    #[serde(default)]
    pub request_fingerprint: Option<OutputHash>,
}

/// A reviewer took (or renewed) a lease on the item until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemClaimed {
    pub reviewer: String,
    #[serde(with = "crate::time::rfc3339")]
    pub claimed_at: DateTime<Utc>,
    #[serde(with = "crate::time::rfc3339")]
    pub expires_at: DateTime<Utc>,
}

/// A reviewer's claim ended: released by hand, or released because that reviewer's approval left the item for the next reviewer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimReleased {
    pub reviewer: String,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

/// The scheduler ended a claim whose lease had passed at `expired_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimExpired {
    pub reviewer: String,
    #[serde(with = "crate::time::rfc3339")]
    pub expired_at: DateTime<Utc>,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

/// A reviewer approved the content with hash `output_hash`; `approvals` of `required_approvals` distinct approvals of it exist now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputApproved {
    pub reviewer: String,
    pub revision: u32,
    pub output_hash: OutputHash,
    pub approvals: u32,
    pub required_approvals: u32,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

/// A reviewer replaced the content under review with `edited_output` (stored in full) and approved it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputEdited {
    pub reviewer: String,
    pub revision: u32,
    pub edited_output: JsonText,
    pub output_hash: OutputHash,
    pub previous_output_hash: OutputHash,
    pub note: Option<String>,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

/// A reviewer rejected the content with hash `output_hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRejected {
    pub reviewer: String,
    pub reason: String,
    pub revision: u32,
    pub output_hash: OutputHash,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

/// A reviewer sent the content with hash `output_hash` back to the submitter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangesRequested {
    pub reviewer: String,
    pub instructions: String,
    pub revision: u32,
    pub output_hash: OutputHash,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

/// The submitter answered a change request with a new revision, which is back in the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputRevised {
    pub revised_by: String,
    pub revision: u32,
    pub output: JsonText,
    pub output_hash: OutputHash,
    pub previous_output_hash: OutputHash,
    pub note: Option<String>,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

/// The item moved from one queue to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemEscalated {
    pub by: String,
    pub from_queue: String,
    pub to_queue: String,
    pub reason: String,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

/// Someone commented; a comment never changes the review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentAdded {
    pub author: String,
    pub text: String,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

/// The submitter withdrew the item; this ends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemWithdrawn {
    pub by: String,
    pub reason: Option<String>,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

/// The deadline `due_at` passed without a decision and `applied_action` was applied.
/// `configured_action` is the action of the expiry policy named `policy`; `applied_action` differs
/// from it when a hard rule of the domain overruled it (an approval the item may not receive, an
/// escalation to the queue the item is in): that ends rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemExpired {
    #[serde(with = "crate::time::rfc3339")]
    pub due_at: DateTime<Utc>,
    /// The operator's expiry policy applied; `None` in events written before ADR 0007, whose
    /// `configured_action` was the submitter's choice.
    #[serde(default)]
    pub policy: Option<String>,
    pub configured_action: ExpiryAction,
    pub applied_action: ExpiryAction,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

/// A review policy approved the item at submission without human review: its slice (model,
/// version, kind) was measured accurate enough (`AccuracyMeasured` event `measurement_id`: the
/// upper bound of the override rate's 95% interval below the policy's target, on enough decided
/// items), the item was not drawn for the sample still reviewed, and it is not high-risk.
/// Followed by `ItemDecided` with the outcome `auto_approved`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemAutoApproved {
    pub policy: String,
    pub measurement_id: Uuid,
    /// The measured override rate and the upper bound of its 95% interval.
    pub override_rate: f64,
    pub override_rate_high: f64,
    /// The human-decided items it was measured on.
    pub sample: u64,
    /// The policy's target override rate.
    pub target: f64,
    /// The share of the slice's items still reviewed.
    pub sampling_rate: f64,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

/// The item was decided, once and for all. Emitted together with the event that completed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemDecided {
    pub outcome: Outcome,
    /// The reviewers whose approvals (in order) or whose rejection decided it; empty on expiry.
    pub decided_by: Vec<String>,
    pub revision: u32,
    /// The hash of the content decided on.
    pub output_hash: OutputHash,
    /// The output that takes effect (the edited one if edited); `None` when the outcome is a rejection.
    /// The same JSON text as the output decided on (as submitted, revised or edited), byte for byte.
    pub final_output: Option<JsonText>,
    #[serde(with = "crate::time::rfc3339")]
    pub decided_at: DateTime<Utc>,
}

// One list of event types generates the enum and its (type, data) codec, so that a new event
// cannot be added to one and forgotten in the other.
macro_rules! item_events {
    ($($variant:ident),+ $(,)?) => {
        /// A fact about one review item, as stored in its stream. Serialized whole as `{"type": …, "data": …}`;
        /// the shell stores [`ItemEvent::event_type`] and [`ItemEvent::to_data`] separately.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type", content = "data")]
        pub enum ItemEvent {
            $($variant($variant),)+
        }

        impl ItemEvent {
            /// Every item event type name.
            pub const EVENT_TYPES: &'static [&'static str] = &[$(stringify!($variant)),+];

            /// The stored type name, e.g. "ItemSubmitted".
            pub fn event_type(&self) -> &'static str {
                match self {
                    $(ItemEvent::$variant(_) => stringify!($variant),)+
                }
            }

            /// The payload without the type as a `Value` tree, for tests and tools: the shell
            /// stores [`ItemEvent::to_json`]. A tree holds numbers as `i64`, `u64` or `f64`, so an
            /// output's other numbers are not kept as they are, and one beyond `f64` (`1e400`)
            /// does not convert at all: this panics on it.
            pub fn to_data(&self) -> Value {
                match self {
                    $(ItemEvent::$variant(payload) => serde_json::to_value(payload)
                        .expect("an item event payload converts to a Value unless an output holds a number beyond f64"),)+
                }
            }

            /// The payload without the type as JSON text, written straight from the payload by its
            /// hand-written writer (`item_json.rs`, serde_json's bytes): what the shell stores.
            pub fn to_json(&self) -> Box<serde_json::value::RawValue> {
                match self {
                    $(ItemEvent::$variant(payload) => {
                        let mut json = Vec::with_capacity(256);
                        crate::item_json::WriteJson::write_json(
                            payload,
                            &mut crate::item_json::Json(&mut json),
                        );
                        crate::json::trusted_raw_value(
                            std::str::from_utf8(&json).expect("the JSON writers write UTF-8"),
                        )
                    })+
                }
            }

            /// [`ItemEvent::from_type_and_data`] straight from the stored JSON text, with no `Value` tree in between
            /// (what the shell decodes every stored item event with: the read models apply one per write).
            pub fn from_type_and_json(event_type: &str, json: &str) -> Result<ItemEvent, EventDecodingError> {
                Self::from_type_and_reader(event_type, serde_json::de::StrRead::new(json))
            }

            /// [`ItemEvent::from_type_and_json`] from bytes not yet checked as UTF-8: serde_json checks each
            /// string it reads, and only skims what it passes over (a reader that wants a few fields of large
            /// events, as analytics does, saves checking the rest).
            pub fn from_type_and_slice(event_type: &str, json: &[u8]) -> Result<ItemEvent, EventDecodingError> {
                Self::from_type_and_reader(event_type, serde_json::de::SliceRead::new(json))
            }

            fn from_type_and_reader<'de, R: serde_json::de::Read<'de>>(event_type: &str, json: R) -> Result<ItemEvent, EventDecodingError> {
                let mut deserializer = serde_json::Deserializer::new(json);
                let event = Self::from_type_and_deserializer(event_type, &mut deserializer)?;
                // Only whitespace may follow the value, as with `serde_json::from_str`.
                deserializer.end().map_err(|source| EventDecodingError::MalformedData {
                    event_type: event.event_type(),
                    source: std::sync::Arc::new(source),
                })?;
                Ok(event)
            }

            /// Reads back an event stored as [`ItemEvent::event_type`] and [`ItemEvent::to_data`]; the round trip is exact.
            /// (Through JSON text it is exact only when serde_json parses floats with its `float_roundtrip` feature.)
            pub fn from_type_and_data(event_type: &str, data: &Value) -> Result<ItemEvent, EventDecodingError> {
                Self::from_type_and_deserializer(event_type, data)
            }

            /// The payload of `event_type`, from any serde_json deserializer (a `Value` or JSON text).
            fn from_type_and_deserializer<'de, D>(event_type: &str, data: D) -> Result<ItemEvent, EventDecodingError>
            where
                D: serde::Deserializer<'de, Error = serde_json::Error>,
            {
                match event_type {
                    $(stringify!($variant) => $variant::deserialize(data)
                        .map(ItemEvent::$variant)
                        .map_err(|source| EventDecodingError::MalformedData {
                            event_type: stringify!($variant),
                            source: std::sync::Arc::new(source),
                        }),)+
                    unknown => Err(EventDecodingError::UnknownEventType {
                        event_type: unknown.to_owned(),
                    }),
                }
            }
        }
    };
}

item_events!(
    ItemSubmitted,
    ItemClaimed,
    ClaimReleased,
    ClaimExpired,
    OutputApproved,
    OutputEdited,
    OutputRejected,
    ChangesRequested,
    OutputRevised,
    ItemEscalated,
    CommentAdded,
    ItemWithdrawn,
    ItemExpired,
    ItemAutoApproved,
    ItemDecided,
);

impl ItemEvent {
    /// The schema version of this event's payload.
    pub fn schema_version(&self) -> u32 {
        ITEM_EVENT_SCHEMA_VERSION
    }

    /// When the fact happened (the command's `now`).
    pub fn occurred_at(&self) -> DateTime<Utc> {
        match self {
            ItemEvent::ItemSubmitted(event) => event.submitted_at,
            ItemEvent::ItemClaimed(event) => event.claimed_at,
            ItemEvent::ClaimReleased(event) => event.at,
            ItemEvent::ClaimExpired(event) => event.at,
            ItemEvent::OutputApproved(event) => event.at,
            ItemEvent::OutputEdited(event) => event.at,
            ItemEvent::OutputRejected(event) => event.at,
            ItemEvent::ChangesRequested(event) => event.at,
            ItemEvent::OutputRevised(event) => event.at,
            ItemEvent::ItemEscalated(event) => event.at,
            ItemEvent::CommentAdded(event) => event.at,
            ItemEvent::ItemWithdrawn(event) => event.at,
            ItemEvent::ItemExpired(event) => event.at,
            ItemEvent::ItemAutoApproved(event) => event.at,
            ItemEvent::ItemDecided(event) => event.decided_at,
        }
    }

    /// Whether this event ends the item (a decision or a withdrawal); after it only comments follow.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            ItemEvent::ItemDecided(_) | ItemEvent::ItemWithdrawn(_)
        )
    }
}

/// Why a stored (type, data) pair is not an item event.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EventDecodingError {
    /// The type name is not one of [`ItemEvent::EVENT_TYPES`].
    #[error("unknown item event type {event_type:?}")]
    UnknownEventType { event_type: String },
    /// The data does not match the payload of its type.
    #[error("malformed data for item event type {event_type}")]
    MalformedData {
        event_type: &'static str,
        // An Arc so that the error stays Clone, as serde_json::Error is not.
        #[source]
        source: std::sync::Arc<serde_json::Error>,
    },
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

/// A reviewer's lease on an item. It stops being a claim at `expires_at`, whether or not `ClaimExpired` was recorded yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub reviewer: Name,
    #[serde(with = "crate::time::rfc3339")]
    pub claimed_at: DateTime<Utc>,
    #[serde(with = "crate::time::rfc3339")]
    pub expires_at: DateTime<Utc>,
}

impl Claim {
    pub fn is_live_at(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at
    }
}

/// One version of the output from the submitter: revision 1 is the submission, each answer to a change request adds one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    pub revision: u32,
    pub output: JsonText,
    pub output_hash: OutputHash,
    pub note: Option<String>,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

/// One reviewer edit of the content under review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edit {
    pub reviewer: String,
    pub revision: u32,
    pub output: JsonText,
    pub output_hash: OutputHash,
    pub previous_output_hash: OutputHash,
    pub note: Option<String>,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

/// One approval of the current content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub reviewer: Name,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRequest {
    pub reviewer: String,
    pub instructions: String,
    pub revision: u32,
    pub output_hash: OutputHash,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    pub by: String,
    pub from_queue: String,
    pub to_queue: String,
    pub reason: String,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comment {
    pub author: String,
    pub text: String,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub reviewer: String,
    pub reason: String,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withdrawal {
    pub by: String,
    pub reason: Option<String>,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expiry {
    #[serde(with = "crate::time::rfc3339")]
    pub due_at: DateTime<Utc>,
    /// The expiry policy applied (`None` for expiries recorded before ADR 0007).
    pub policy: Option<String>,
    pub configured_action: ExpiryAction,
    pub applied_action: ExpiryAction,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub outcome: Outcome,
    pub decided_by: Vec<String>,
    pub revision: u32,
    pub output_hash: OutputHash,
    pub final_output: Option<JsonText>,
    #[serde(with = "crate::time::rfc3339")]
    pub decided_at: DateTime<Utc>,
}

/// The read model of one item, folded from its stream. `ItemState::default()` is the item before it was submitted;
/// until then the other fields hold their defaults and mean nothing.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ItemState {
    pub status: ItemStatus,
    pub id: Uuid,
    pub queue: Name,
    pub kind: Name,
    pub model: ModelIdentity,
    pub submitted_by: Name,
    #[serde(with = "crate::time::rfc3339")]
    pub submitted_at: DateTime<Utc>,
    /// The content under review now: the latest revision, or a reviewer's edit of it.
    pub output: JsonText,
    pub output_hash: OutputHash,
    /// The submitter's latest revision number.
    pub revision: u32,
    /// Who edited the current content, if a reviewer did.
    pub output_edited_by: Option<Name>,
    /// Every revision from the submitter, oldest first.
    pub revisions: Vec<Revision>,
    /// Every reviewer edit, oldest first.
    pub edits: ThinVec<Edit>,
    pub context: JsonText,
    pub confidence: Option<f64>,
    pub risk: Risk,
    pub priority: i32,
    /// The deadline; cleared when an expiry escalated the item, so that it is reviewed there rather than expired again.
    #[serde(default, with = "crate::time::rfc3339_option")]
    pub due_at: Option<DateTime<Utc>>,
    pub required_approvals: u32,
    pub callback_url: Option<Box<str>>,
    /// The last claim taken and not yet released or expired; it may have lapsed, see [`ItemState::live_claim`].
    pub claim: Option<Box<Claim>>,
    /// When the item was first claimed (for the time to first claim).
    #[serde(default, with = "crate::time::rfc3339_option")]
    pub first_claimed_at: Option<DateTime<Utc>>,
    /// The distinct approvals of the current content, in order; approvals of earlier content are not here.
    pub approvals: ThinVec<Approval>,
    pub change_requests: ThinVec<ChangeRequest>,
    pub escalations: ThinVec<Escalation>,
    pub comments: ThinVec<Comment>,
    pub rejection: Option<Box<Rejection>>,
    pub withdrawal: Option<Box<Withdrawal>>,
    pub expiry: Option<Box<Expiry>>,
    pub decision: Option<Box<Decision>>,
    /// How many events were folded; the stream version of the last one is this minus one.
    pub event_count: u64,
    #[serde(default, with = "crate::time::rfc3339_option")]
    pub last_event_at: Option<DateTime<Utc>>,
}

impl ItemState {
    pub fn is_submitted(&self) -> bool {
        self.status != ItemStatus::NotSubmitted
    }

    /// Whether the item has an outcome (approved, edited and approved, rejected, or either on expiry).
    pub fn is_decided(&self) -> bool {
        self.decision.is_some()
    }

    pub fn is_withdrawn(&self) -> bool {
        self.status == ItemStatus::Withdrawn
    }

    /// Whether the item ended (decided or withdrawn): no review command applies any more, only comments.
    pub fn is_closed(&self) -> bool {
        self.is_decided() || self.is_withdrawn()
    }

    /// The claim, if its lease has not passed at `now`.
    pub fn live_claim(&self, now: DateTime<Utc>) -> Option<&Claim> {
        self.claim.as_deref().filter(|claim| claim.is_live_at(now))
    }

    /// Whether `reviewer` approved the current content.
    pub fn has_approved(&self, reviewer: &str) -> bool {
        self.approvals
            .iter()
            .any(|approval| approval.reviewer == reviewer)
    }

    /// How many more distinct approvals the current content needs.
    pub fn approvals_missing(&self) -> u32 {
        let approvals = u32::try_from(self.approvals.len()).unwrap_or(u32::MAX);
        self.required_approvals.saturating_sub(approvals)
    }

    /// The change request the submitter has yet to answer.
    pub fn open_change_request(&self) -> Option<&ChangeRequest> {
        if self.status == ItemStatus::ChangesRequested {
            self.change_requests.last()
        } else {
            None
        }
    }

    /// Applies one event. Total: it never fails, whatever the event, so that any stored history folds.
    pub fn apply(&mut self, event: &ItemEvent) {
        match event {
            ItemEvent::ItemSubmitted(submitted) => {
                self.status = ItemStatus::Pending;
                self.id = submitted.item_id;
                self.queue = submitted.queue.as_str().into();
                self.kind = submitted.kind.as_str().into();
                self.model = submitted.model.clone();
                self.submitted_by = submitted.submitted_by.as_str().into();
                self.submitted_at = submitted.submitted_at;
                self.output = submitted.output.clone();
                self.output_hash = submitted.output_hash.clone();
                self.revision = submitted.revision;
                self.output_edited_by = None;
                self.revisions = vec![Revision {
                    revision: submitted.revision,
                    output: self.output.clone(),
                    output_hash: submitted.output_hash.clone(),
                    note: None,
                    at: submitted.submitted_at,
                }];
                self.context = submitted.context.clone();
                self.confidence = submitted.confidence;
                self.risk = submitted.risk;
                self.priority = submitted.priority;
                self.due_at = submitted.due_at;
                self.required_approvals = submitted.required_approvals;
                self.callback_url = submitted.callback_url.as_deref().map(Box::from);
            }
            ItemEvent::ItemClaimed(claimed) => {
                self.first_claimed_at.get_or_insert(claimed.claimed_at);
                self.claim = Some(Box::new(Claim {
                    reviewer: claimed.reviewer.as_str().into(),
                    claimed_at: claimed.claimed_at,
                    expires_at: claimed.expires_at,
                }));
            }
            ItemEvent::ClaimReleased(released) => self.drop_claim_of(&released.reviewer),
            ItemEvent::ClaimExpired(expired) => self.drop_claim_of(&expired.reviewer),
            ItemEvent::OutputApproved(approved) => {
                self.approvals.push(Approval {
                    reviewer: approved.reviewer.as_str().into(),
                    at: approved.at,
                });
            }
            ItemEvent::OutputEdited(edited) => {
                self.output = edited.edited_output.clone();
                self.output_hash = edited.output_hash.clone();
                self.output_edited_by = Some(edited.reviewer.as_str().into());
                self.edits.push(Edit {
                    reviewer: edited.reviewer.clone(),
                    revision: edited.revision,
                    output: self.output.clone(),
                    output_hash: edited.output_hash.clone(),
                    previous_output_hash: edited.previous_output_hash.clone(),
                    note: edited.note.clone(),
                    at: edited.at,
                });
                // Approvals are bound to content: the edit is the editor's approval of the new content, and only that.
                self.approvals = thin_vec![Approval {
                    reviewer: edited.reviewer.as_str().into(),
                    at: edited.at,
                }];
            }
            ItemEvent::OutputRejected(rejected) => {
                self.rejection = Some(Box::new(Rejection {
                    reviewer: rejected.reviewer.clone(),
                    reason: rejected.reason.clone(),
                    at: rejected.at,
                }));
            }
            ItemEvent::ChangesRequested(requested) => {
                self.status = ItemStatus::ChangesRequested;
                self.claim = None;
                self.change_requests.push(ChangeRequest {
                    reviewer: requested.reviewer.clone(),
                    instructions: requested.instructions.clone(),
                    revision: requested.revision,
                    output_hash: requested.output_hash.clone(),
                    at: requested.at,
                });
            }
            ItemEvent::OutputRevised(revised) => {
                self.status = ItemStatus::Pending;
                self.claim = None;
                self.output = revised.output.clone();
                self.output_hash = revised.output_hash.clone();
                self.revision = revised.revision;
                self.output_edited_by = None;
                self.approvals.clear();
                self.revisions.push(Revision {
                    revision: revised.revision,
                    output: self.output.clone(),
                    output_hash: revised.output_hash.clone(),
                    note: revised.note.clone(),
                    at: revised.at,
                });
            }
            ItemEvent::ItemEscalated(escalated) => {
                self.queue = escalated.to_queue.as_str().into();
                self.claim = None;
                self.escalations.push(Escalation {
                    by: escalated.by.clone(),
                    from_queue: escalated.from_queue.clone(),
                    to_queue: escalated.to_queue.clone(),
                    reason: escalated.reason.clone(),
                    at: escalated.at,
                });
            }
            ItemEvent::CommentAdded(commented) => {
                self.comments.push(Comment {
                    author: commented.author.clone(),
                    text: commented.text.clone(),
                    at: commented.at,
                });
            }
            ItemEvent::ItemWithdrawn(withdrawn) => {
                self.status = ItemStatus::Withdrawn;
                self.claim = None;
                self.withdrawal = Some(Box::new(Withdrawal {
                    by: withdrawn.by.clone(),
                    reason: withdrawn.reason.clone(),
                    at: withdrawn.at,
                }));
            }
            ItemEvent::ItemExpired(expired) => {
                self.expiry = Some(Box::new(Expiry {
                    due_at: expired.due_at,
                    policy: expired.policy.clone(),
                    configured_action: expired.configured_action.clone(),
                    applied_action: expired.applied_action.clone(),
                    at: expired.at,
                }));
                if matches!(expired.applied_action, ExpiryAction::Escalate { .. }) {
                    // Reviewed in the escalation queue from now on, not expired a second time.
                    self.due_at = None;
                    self.claim = None;
                }
            }
            // The evidence stays in the item's history; the decision that follows closes it.
            ItemEvent::ItemAutoApproved(_) => {}
            ItemEvent::ItemDecided(decided) => {
                self.status = ItemStatus::from(decided.outcome);
                self.claim = None;
                self.decision = Some(Box::new(Decision {
                    outcome: decided.outcome,
                    decided_by: decided.decided_by.clone(),
                    revision: decided.revision,
                    output_hash: decided.output_hash.clone(),
                    // Shared with the current output when it is that content, as it is when reviewers decide.
                    final_output: decided.final_output.as_ref().map(|output| {
                        if *output == self.output {
                            self.output.clone()
                        } else {
                            output.clone()
                        }
                    }),
                    decided_at: decided.decided_at,
                }));
            }
        }
        self.event_count += 1;
        self.last_event_at = Some(event.occurred_at());
    }

    fn drop_claim_of(&mut self, reviewer: &str) {
        if self
            .claim
            .as_ref()
            .is_some_and(|claim| claim.reviewer == reviewer)
        {
            self.claim = None;
        }
    }
}

/// Applies one event to a state and returns the new state.
pub fn evolve(mut state: ItemState, event: &ItemEvent) -> ItemState {
    state.apply(event);
    state
}

/// Folds a whole stream from the state before submission.
pub fn fold<'events>(events: impl IntoIterator<Item = &'events ItemEvent>) -> ItemState {
    events.into_iter().fold(ItemState::default(), evolve)
}

// ---------------------------------------------------------------------------------------------
// Decide
// ---------------------------------------------------------------------------------------------

/// What `command`, asked by `context.actor` at `context.now`, causes to an item in `state`: the events to append, or why not.
pub fn decide(
    state: &ItemState,
    command: &Command,
    context: &CommandContext,
) -> Result<Vec<ItemEvent>, DomainError> {
    validate_name("actor", &context.actor)?;
    match command {
        Command::Submit(submission) => submit(state, submission, context),
        Command::Claim { lease } => claim(state, *lease, context),
        Command::Release => release(state, context),
        Command::Approve { seen_output_hash } => {
            approve(state, seen_output_hash.as_deref(), context)
        }
        Command::EditAndApprove {
            edited_output,
            note,
            seen_output_hash,
        } => edit_and_approve(
            state,
            edited_output,
            note.as_deref(),
            seen_output_hash.as_deref(),
            context,
        ),
        Command::Reject {
            reason,
            seen_output_hash,
        } => reject(state, reason, seen_output_hash.as_deref(), context),
        Command::RequestChanges {
            instructions,
            seen_output_hash,
        } => request_changes(state, instructions, seen_output_hash.as_deref(), context),
        Command::Revise { output, note } => revise(state, output, note.as_deref(), context),
        Command::Escalate { to_queue, reason } => escalate(state, to_queue, reason, context),
        Command::Comment { text } => comment(state, text, context),
        Command::Withdraw { reason } => withdraw(state, reason.as_deref(), context),
        Command::Expire { policy } => expire(state, policy, context),
        Command::ExpireClaim => expire_claim(state, context),
    }
}

fn submit(
    state: &ItemState,
    submission: &Submission,
    context: &CommandContext,
) -> Result<Vec<ItemEvent>, DomainError> {
    if state.is_submitted() {
        return Err(DomainError::AlreadySubmitted);
    }
    validate_submission(submission, context.now)?;
    let submitted = ItemEvent::ItemSubmitted(ItemSubmitted {
        item_id: submission.item_id,
        queue: submission.queue.clone(),
        kind: submission.kind.clone(),
        model: submission.model.clone(),
        revision: 1,
        output: submission.output.clone(),
        output_hash: output_hash(&submission.output),
        context: submission.context.clone(),
        confidence: submission.confidence,
        risk: submission.risk,
        priority: submission.priority,
        due_at: submission.due_at,
        required_approvals: submission.required_approvals,
        // The submitter no longer chooses this (ADR 0007): the policy in force at expiry decides.
        on_expiry: None,
        callback_url: submission.callback_url.clone(),
        submitted_by: context.actor.clone(),
        submitted_at: context.now,
        request_fingerprint: Some(submission_fingerprint(submission)),
    });
    let Some(evidence) = submission
        .auto_approval
        .as_deref()
        .filter(|_| submission.risk != Risk::High)
    else {
        return Ok(vec![submitted]);
    };
    Ok(vec![
        submitted,
        ItemEvent::ItemAutoApproved(ItemAutoApproved {
            policy: evidence.policy.clone(),
            measurement_id: evidence.measurement_id,
            override_rate: evidence.override_rate,
            override_rate_high: evidence.override_rate_high,
            sample: evidence.sample,
            target: evidence.target,
            sampling_rate: evidence.sampling_rate,
            at: context.now,
        }),
        ItemEvent::ItemDecided(ItemDecided {
            outcome: Outcome::AutoApproved,
            decided_by: Vec::new(),
            revision: 1,
            output_hash: output_hash(&submission.output),
            final_output: Some(submission.output.clone()),
            decided_at: context.now,
        }),
    ])
}

fn claim(
    state: &ItemState,
    lease: Duration,
    context: &CommandContext,
) -> Result<Vec<ItemEvent>, DomainError> {
    require_open(state)?;
    require_not_submitter(state, &context.actor)?;
    if lease <= Duration::zero() || lease > MAXIMUM_CLAIM_LEASE {
        return Err(DomainError::invalid(
            "lease",
            format!(
                "must be more than zero and at most {} hours",
                MAXIMUM_CLAIM_LEASE.num_hours()
            ),
        ));
    }
    let expires_at = context
        .now
        .checked_add_signed(lease)
        .ok_or_else(|| DomainError::invalid("lease", "ends past the representable time"))?;
    require_not_waiting_for_submitter(state)?;
    require_no_live_claim_by_someone_else(state, context)?;
    // Claiming content one approved already would only block the second pair of eyes.
    if state.has_approved(&context.actor) {
        return Err(DomainError::AlreadyApprovedByYou);
    }
    Ok(vec![ItemEvent::ItemClaimed(ItemClaimed {
        reviewer: context.actor.clone(),
        claimed_at: context.now,
        expires_at,
    })])
}

fn release(state: &ItemState, context: &CommandContext) -> Result<Vec<ItemEvent>, DomainError> {
    require_open(state)?;
    let live_claim = state.live_claim(context.now).ok_or(DomainError::NoClaim)?;
    if live_claim.reviewer != context.actor {
        return Err(DomainError::NotClaimedByYou {
            holder: live_claim.reviewer.to_string(),
        });
    }
    Ok(vec![ItemEvent::ClaimReleased(ClaimReleased {
        reviewer: context.actor.clone(),
        at: context.now,
    })])
}

fn approve(
    state: &ItemState,
    seen_output_hash: Option<&str>,
    context: &CommandContext,
) -> Result<Vec<ItemEvent>, DomainError> {
    require_open(state)?;
    require_not_submitter(state, &context.actor)?;
    validate_seen_output_hash(seen_output_hash)?;
    require_reviewable_now(state, seen_output_hash, context)?;
    if state.has_approved(&context.actor) {
        return Err(DomainError::AlreadyApprovedByYou);
    }
    let approvals_after = u32::try_from(state.approvals.len() + 1).unwrap_or(u32::MAX);
    let mut events = vec![ItemEvent::OutputApproved(OutputApproved {
        reviewer: context.actor.clone(),
        revision: state.revision,
        output_hash: state.output_hash.clone(),
        approvals: approvals_after,
        required_approvals: state.required_approvals,
        at: context.now,
    })];
    if approvals_after >= state.required_approvals {
        let outcome = if state.output_edited_by.is_some() {
            Outcome::EditedAndApproved
        } else {
            Outcome::Approved
        };
        let decided_by = state
            .approvals
            .iter()
            .map(|approval| approval.reviewer.to_string())
            .chain(std::iter::once(context.actor.clone()))
            .collect();
        events.push(ItemEvent::ItemDecided(ItemDecided {
            outcome,
            decided_by,
            revision: state.revision,
            output_hash: state.output_hash.clone(),
            final_output: Some(state.output.clone()),
            decided_at: context.now,
        }));
    } else {
        events.extend(release_after_partial_approval(state, context));
    }
    Ok(events)
}

fn edit_and_approve(
    state: &ItemState,
    edited_output: &JsonText,
    note: Option<&str>,
    seen_output_hash: Option<&str>,
    context: &CommandContext,
) -> Result<Vec<ItemEvent>, DomainError> {
    require_open(state)?;
    require_not_submitter(state, &context.actor)?;
    validate_output("edited_output", edited_output)?;
    validate_optional_text("note", note)?;
    validate_seen_output_hash(seen_output_hash)?;
    let edited_output_hash = output_hash(edited_output);
    if edited_output_hash == state.output_hash {
        // An "edit" that changes nothing would count as an override in the analytics; it is an approval.
        return Err(DomainError::invalid(
            "edited_output",
            "is identical to the current output; approve it instead",
        ));
    }
    require_reviewable_now(state, seen_output_hash, context)?;
    let mut events = vec![ItemEvent::OutputEdited(OutputEdited {
        reviewer: context.actor.clone(),
        revision: state.revision,
        edited_output: edited_output.clone(),
        output_hash: edited_output_hash.clone(),
        previous_output_hash: state.output_hash.clone(),
        note: note.map(str::to_owned),
        at: context.now,
    })];
    // The edit is the editor's approval of the new content and the only approval of it so far.
    if state.required_approvals <= 1 {
        events.push(ItemEvent::ItemDecided(ItemDecided {
            outcome: Outcome::EditedAndApproved,
            decided_by: vec![context.actor.clone()],
            revision: state.revision,
            output_hash: edited_output_hash,
            final_output: Some(edited_output.clone()),
            decided_at: context.now,
        }));
    } else {
        events.extend(release_after_partial_approval(state, context));
    }
    Ok(events)
}

fn reject(
    state: &ItemState,
    reason: &str,
    seen_output_hash: Option<&str>,
    context: &CommandContext,
) -> Result<Vec<ItemEvent>, DomainError> {
    require_open(state)?;
    require_not_submitter(state, &context.actor)?;
    validate_text("reason", reason)?;
    validate_seen_output_hash(seen_output_hash)?;
    require_reviewable_now(state, seen_output_hash, context)?;
    // One rejection ends the item, whatever approvals it had: four-eyes guards approval, not refusal.
    Ok(vec![
        ItemEvent::OutputRejected(OutputRejected {
            reviewer: context.actor.clone(),
            reason: reason.to_owned(),
            revision: state.revision,
            output_hash: state.output_hash.clone(),
            at: context.now,
        }),
        ItemEvent::ItemDecided(ItemDecided {
            outcome: Outcome::Rejected,
            decided_by: vec![context.actor.clone()],
            revision: state.revision,
            output_hash: state.output_hash.clone(),
            final_output: None,
            decided_at: context.now,
        }),
    ])
}

fn request_changes(
    state: &ItemState,
    instructions: &str,
    seen_output_hash: Option<&str>,
    context: &CommandContext,
) -> Result<Vec<ItemEvent>, DomainError> {
    require_open(state)?;
    require_not_submitter(state, &context.actor)?;
    validate_text("instructions", instructions)?;
    validate_seen_output_hash(seen_output_hash)?;
    require_reviewable_now(state, seen_output_hash, context)?;
    Ok(vec![ItemEvent::ChangesRequested(ChangesRequested {
        reviewer: context.actor.clone(),
        instructions: instructions.to_owned(),
        revision: state.revision,
        output_hash: state.output_hash.clone(),
        at: context.now,
    })])
}

fn revise(
    state: &ItemState,
    output: &JsonText,
    note: Option<&str>,
    context: &CommandContext,
) -> Result<Vec<ItemEvent>, DomainError> {
    require_open(state)?;
    require_submitter(state, &context.actor)?;
    validate_output("output", output)?;
    validate_optional_text("note", note)?;
    if state.status != ItemStatus::ChangesRequested {
        return Err(DomainError::NoChangesRequested);
    }
    Ok(vec![ItemEvent::OutputRevised(OutputRevised {
        revised_by: context.actor.clone(),
        revision: state.revision + 1,
        output: output.clone(),
        output_hash: output_hash(output),
        previous_output_hash: state.output_hash.clone(),
        note: note.map(str::to_owned),
        at: context.now,
    })])
}

fn escalate(
    state: &ItemState,
    to_queue: &str,
    reason: &str,
    context: &CommandContext,
) -> Result<Vec<ItemEvent>, DomainError> {
    require_open(state)?;
    require_not_submitter(state, &context.actor)?;
    validate_name("to_queue", to_queue)?;
    validate_text("reason", reason)?;
    if to_queue == state.queue {
        return Err(DomainError::invalid(
            "to_queue",
            "is the item's queue already",
        ));
    }
    require_reviewable_now(state, None, context)?;
    Ok(vec![ItemEvent::ItemEscalated(ItemEscalated {
        by: context.actor.clone(),
        from_queue: state.queue.to_string(),
        to_queue: to_queue.to_owned(),
        reason: reason.to_owned(),
        at: context.now,
    })])
}

fn comment(
    state: &ItemState,
    text: &str,
    context: &CommandContext,
) -> Result<Vec<ItemEvent>, DomainError> {
    // Comments are allowed at every stage, after a decision too: they never change it.
    if !state.is_submitted() {
        return Err(DomainError::ItemNotFound);
    }
    validate_text("text", text)?;
    Ok(vec![ItemEvent::CommentAdded(CommentAdded {
        author: context.actor.clone(),
        text: text.to_owned(),
        at: context.now,
    })])
}

fn withdraw(
    state: &ItemState,
    reason: Option<&str>,
    context: &CommandContext,
) -> Result<Vec<ItemEvent>, DomainError> {
    require_open(state)?;
    require_submitter(state, &context.actor)?;
    validate_optional_text("reason", reason)?;
    Ok(vec![ItemEvent::ItemWithdrawn(ItemWithdrawn {
        by: context.actor.clone(),
        reason: reason.map(str::to_owned),
        at: context.now,
    })])
}

/// The operator's `policy` decides what expiry does, within the domain's hard rules: whatever
/// the policy says, an item is never approved on expiry when it is high-risk, needs more than one
/// approval (k-of-n), or had changes requested (the answer to them was never reviewed), nor
/// unless the policy explicitly allows auto-approval; and it is not escalated to the queue it is
/// in. Each of those applies `Reject` instead, and `ItemExpired` records both actions.
fn expire(
    state: &ItemState,
    policy: &ExpiryPolicy,
    context: &CommandContext,
) -> Result<Vec<ItemEvent>, DomainError> {
    require_open(state)?;
    let due_at = state.due_at.ok_or(DomainError::NoDeadline)?;
    if context.now < due_at {
        return Err(DomainError::NotDue { due_at });
    }
    let configured_action = policy.action.clone();
    let applied_action = if may_apply_on_expiry(state, policy) {
        configured_action.clone()
    } else {
        ExpiryAction::Reject
    };
    let mut events = vec![ItemEvent::ItemExpired(ItemExpired {
        due_at,
        policy: Some(policy.name.clone()),
        configured_action,
        applied_action: applied_action.clone(),
        at: context.now,
    })];
    match applied_action {
        ExpiryAction::Reject => events.push(ItemEvent::ItemDecided(ItemDecided {
            outcome: Outcome::RejectedOnExpiry,
            decided_by: Vec::new(),
            revision: state.revision,
            output_hash: state.output_hash.clone(),
            final_output: None,
            decided_at: context.now,
        })),
        ExpiryAction::Approve => events.push(ItemEvent::ItemDecided(ItemDecided {
            outcome: Outcome::ApprovedOnExpiry,
            decided_by: Vec::new(),
            revision: state.revision,
            output_hash: state.output_hash.clone(),
            final_output: Some(state.output.clone()),
            decided_at: context.now,
        })),
        ExpiryAction::Escalate { queue } => {
            events.push(ItemEvent::ItemEscalated(ItemEscalated {
                by: context.actor.clone(),
                from_queue: state.queue.to_string(),
                to_queue: queue,
                reason: EXPIRY_ESCALATION_REASON.to_owned(),
                at: context.now,
            }));
        }
    }
    Ok(events)
}

/// Whether `policy`'s action may take effect on this item; see [`expire`] for the rules.
fn may_apply_on_expiry(state: &ItemState, policy: &ExpiryPolicy) -> bool {
    match &policy.action {
        ExpiryAction::Reject => true,
        ExpiryAction::Approve => {
            policy.allow_auto_approval
                && state.risk != Risk::High
                && state.required_approvals <= 1
                && state.change_requests.is_empty()
        }
        ExpiryAction::Escalate { queue } => {
            *queue != state.queue && validate_name("escalate_to", queue).is_ok()
        }
    }
}

fn expire_claim(
    state: &ItemState,
    context: &CommandContext,
) -> Result<Vec<ItemEvent>, DomainError> {
    require_open(state)?;
    let claim = state.claim.as_ref().ok_or(DomainError::NoClaim)?;
    if claim.is_live_at(context.now) {
        return Err(DomainError::ClaimStillLive {
            expires_at: claim.expires_at,
        });
    }
    Ok(vec![ItemEvent::ClaimExpired(ClaimExpired {
        reviewer: claim.reviewer.to_string(),
        expired_at: claim.expires_at,
        at: context.now,
    })])
}

/// After an approval that does not complete the item, the approver's claim goes, so the next reviewer can claim it.
fn release_after_partial_approval(
    state: &ItemState,
    context: &CommandContext,
) -> Option<ItemEvent> {
    let approver_holds_claim = state
        .claim
        .as_ref()
        .is_some_and(|claim| claim.reviewer == context.actor);
    approver_holds_claim.then(|| {
        ItemEvent::ClaimReleased(ClaimReleased {
            reviewer: context.actor.clone(),
            at: context.now,
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Preconditions
// ---------------------------------------------------------------------------------------------

fn require_open(state: &ItemState) -> Result<(), DomainError> {
    if !state.is_submitted() {
        return Err(DomainError::ItemNotFound);
    }
    if let Some(decision) = &state.decision {
        return Err(DomainError::AlreadyDecided {
            outcome: decision.outcome,
        });
    }
    if state.is_withdrawn() {
        return Err(DomainError::AlreadyWithdrawn);
    }
    Ok(())
}

fn require_not_submitter(state: &ItemState, actor: &str) -> Result<(), DomainError> {
    if state.submitted_by == actor {
        return Err(DomainError::SelfReview);
    }
    Ok(())
}

fn require_submitter(state: &ItemState, actor: &str) -> Result<(), DomainError> {
    if state.submitted_by != actor {
        return Err(DomainError::NotTheSubmitter);
    }
    Ok(())
}

fn require_not_waiting_for_submitter(state: &ItemState) -> Result<(), DomainError> {
    if state.status == ItemStatus::ChangesRequested {
        return Err(DomainError::ChangesRequestedPending);
    }
    Ok(())
}

fn require_no_live_claim_by_someone_else(
    state: &ItemState,
    context: &CommandContext,
) -> Result<(), DomainError> {
    match state.live_claim(context.now) {
        Some(live_claim) if live_claim.reviewer != context.actor => {
            Err(DomainError::ClaimedBySomeoneElse {
                holder: live_claim.reviewer.to_string(),
                expires_at: live_claim.expires_at,
            })
        }
        _ => Ok(()),
    }
}

/// The state checks every reviewer decision shares: not waiting for the submitter, not held by someone else,
/// and still showing the content the reviewer saw.
fn require_reviewable_now(
    state: &ItemState,
    seen_output_hash: Option<&str>,
    context: &CommandContext,
) -> Result<(), DomainError> {
    require_not_waiting_for_submitter(state)?;
    require_no_live_claim_by_someone_else(state, context)?;
    if let Some(seen_output_hash) = seen_output_hash
        && seen_output_hash != state.output_hash
    {
        return Err(DomainError::OutputChanged {
            expected: seen_output_hash.to_owned(),
            current: state.output_hash.to_string(),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Payload validation
// ---------------------------------------------------------------------------------------------

fn validate_submission(submission: &Submission, now: DateTime<Utc>) -> Result<(), DomainError> {
    if submission.item_id.is_nil() {
        return Err(DomainError::invalid("item_id", "must not be the nil UUID"));
    }
    validate_name("queue", &submission.queue)?;
    validate_name("kind", &submission.kind)?;
    validate_name("model.name", &submission.model.name)?;
    validate_name("model.version", &submission.model.version)?;
    validate_output("output", &submission.output)?;
    if let Some(confidence) = submission.confidence
        && !(0.0..=1.0).contains(&confidence)
    {
        return Err(DomainError::invalid(
            "confidence",
            "must be a number from 0 to 1",
        ));
    }
    if let Some(due_at) = submission.due_at {
        if due_at <= now {
            return Err(DomainError::invalid(
                "due_at",
                "must be after the submission time",
            ));
        }
        let minimum_review_window = submission.expiry_policy.minimum_review_window;
        let earliest_due_at = now
            .checked_add_signed(minimum_review_window)
            .ok_or_else(|| DomainError::invalid("due_at", "is past the representable time"))?;
        if due_at < earliest_due_at {
            return Err(DomainError::DeadlineInsideReviewWindow {
                policy: submission.expiry_policy.name.clone(),
                minimum_review_window,
                earliest_due_at,
            });
        }
    }
    if !(1..=MAXIMUM_REQUIRED_APPROVALS).contains(&submission.required_approvals) {
        return Err(DomainError::invalid(
            "required_approvals",
            format!("must be from 1 to {MAXIMUM_REQUIRED_APPROVALS}"),
        ));
    }
    if let Some(callback_url) = &submission.callback_url {
        validate_callback_url(callback_url)?;
    }
    Ok(())
}

/// Names (queues, kinds, models, actors) are identifiers people read and group by: non-blank, trimmed, printable, bounded.
/// Public so that the shell holds the names in its configuration (expiry policies) to the same rules.
pub fn validate_name(field: &'static str, name: &str) -> Result<(), DomainError> {
    if name.trim().is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    if name.trim() != name {
        return Err(DomainError::invalid(
            field,
            "must not start or end with whitespace",
        ));
    }
    if name.chars().count() > MAXIMUM_NAME_LENGTH {
        return Err(DomainError::invalid(
            field,
            format!("must be at most {MAXIMUM_NAME_LENGTH} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

fn validate_text(field: &'static str, text: &str) -> Result<(), DomainError> {
    if text.trim().is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    if text.chars().count() > MAXIMUM_TEXT_LENGTH {
        return Err(DomainError::invalid(
            field,
            format!("must be at most {MAXIMUM_TEXT_LENGTH} characters"),
        ));
    }
    Ok(())
}

/// Optional text is either absent or real text: a blank note is refused rather than silently dropped.
fn validate_optional_text(field: &'static str, text: Option<&str>) -> Result<(), DomainError> {
    match text {
        Some(text) => validate_text(field, text),
        None => Ok(()),
    }
}

/// Any JSON but `null`: an absent output has nothing to review, and refusing it keeps `Option<Value>` payloads unambiguous.
fn validate_output(field: &'static str, output: &JsonText) -> Result<(), DomainError> {
    if output.is_null() {
        return Err(DomainError::invalid(field, "must not be null"));
    }
    Ok(())
}

fn validate_seen_output_hash(seen_output_hash: Option<&str>) -> Result<(), DomainError> {
    if let Some(seen_output_hash) = seen_output_hash {
        let is_sha256_hex = seen_output_hash.len() == 64
            && seen_output_hash
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
        if !is_sha256_hex {
            return Err(DomainError::invalid(
                "seen_output_hash",
                "must be 64 lowercase hexadecimal digits",
            ));
        }
    }
    Ok(())
}

fn validate_callback_url(callback_url: &str) -> Result<(), DomainError> {
    let has_http_scheme =
        callback_url.starts_with("https://") || callback_url.starts_with("http://");
    if !has_http_scheme {
        return Err(DomainError::invalid(
            "callback_url",
            "must start with http:// or https://",
        ));
    }
    if callback_url.chars().count() > MAXIMUM_CALLBACK_URL_LENGTH {
        return Err(DomainError::invalid(
            "callback_url",
            format!("must be at most {MAXIMUM_CALLBACK_URL_LENGTH} characters"),
        ));
    }
    if callback_url
        .chars()
        .any(|character| character.is_whitespace() || character.is_control())
    {
        return Err(DomainError::invalid(
            "callback_url",
            "must not contain whitespace or control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "item_tests.rs"]
mod tests;
