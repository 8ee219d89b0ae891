//! Principals: who may call the ledger, in which role, with which token; kept as events in the `principals` stream.
//!
//! A principal is a name, a [`Role`] and the SHA-256 of a bearer token. The token itself is never stored: the shell
//! hashes the token a request presents with [`token_hash`] and looks the hash up with [`Principals::by_token_hash`].
//! Adding and revoking are commands decided here like an item's (`decide`, then append, then `evolve`), so that the
//! record of who could do what, and since when, is part of the same tamper-evident log as the decisions themselves.
//!
//! Rules:
//! - a name is 1..=64 characters of `[a-z0-9._-]` starting with a letter or digit (so never `.`, `..` or `-`, which
//!   mean something else in paths and on command lines), and never one of [`RESERVED_ACTOR_NAMES`], which the server
//!   itself acts as; the character set leaves out control, bidirectional and zero-width characters by construction;
//! - only reviewers are granted queues, at least one, and a reviewer works only the queues granted;
//! - no two grants ever share a token hash, not even a revoked one, so a revoked token never becomes valid again;
//! - a revoked name is never added again: items, comments and callback secrets belong to a name, so a new principal
//!   under an old name would inherit them. A token is rotated, or a role changed, by adding a principal with a new
//!   name and revoking the old one. (Logs written before this rule may hold a name added again; they still fold.)
//! - an actor cannot revoke itself, so that the admin revoking others always remains.
//!
//! Only the shell checks that the caller is an admin: the role of the actor is not the domain's input.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::item::{CommandContext, ErrorKind, MAXIMUM_NAME_LENGTH};

/// The stream that holds every [`PrincipalEvent`].
pub const PRINCIPALS_STREAM: &str = "principals";

/// The schema version of every principal event type today.
pub const PRINCIPAL_EVENT_SCHEMA_VERSION: u32 = 1;

/// The longest principal name, in characters: names appear in every event a principal causes.
pub const MAXIMUM_PRINCIPAL_NAME_LENGTH: usize = 64;

/// Actor names the server itself records: `system` (the scheduler, the first admin's creator) and `cli` (the
/// `ledger principal` commands). No principal may have one, or its actions would read as the server's.
pub const RESERVED_ACTOR_NAMES: [&str; 2] = [CommandContext::SCHEDULER, "cli"];

/// Lowercase hex SHA-256 of a bearer token: what is stored and compared instead of the token.
///
/// Looking a hash up in an ordered map is not a constant-time comparison, and need not be: what leaks is how much of
/// the presented token's hash matches a stored one, and that says nothing useful about a token (preimage resistance).
/// Tokens must still be long and random, as a hash of a guessable token can be brute-forced offline.
pub fn token_hash(token: &str) -> String {
    // Into a fixed buffer: `hex::encode` builds its string one char at a time, and this runs for
    // every request.
    let mut text = [0u8; 64];
    hex::encode_to_slice(Sha256::digest(token.as_bytes()), &mut text)
        .expect("64 hex digits for 32 bytes");
    String::from_utf8(text.to_vec()).expect("hex digits are ASCII")
}

// ---------------------------------------------------------------------------------------------
// Roles and principals
// ---------------------------------------------------------------------------------------------

/// What a principal may do; the shell maps each API route to the roles it admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An AI system or workflow: submits outputs, revises and withdraws its own, waits for decisions.
    Agent,
    /// A human who reviews items in the queues granted.
    Reviewer,
    /// Reads items, the audit trail and proofs; changes nothing.
    Auditor,
    /// Manages principals. Reviews nothing, so that granting review rights is always explicit.
    Admin,
    /// Reads analytics (rates and measures over many items); reads no item and changes nothing.
    Analyst,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Agent,
        Role::Reviewer,
        Role::Auditor,
        Role::Admin,
        Role::Analyst,
    ];

    /// The name used in JSON and on the command line, e.g. "reviewer".
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Reviewer => "reviewer",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
            Role::Analyst => "analyst",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = UnknownRole;

    fn from_str(name: &str) -> Result<Role, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == name)
            .ok_or_else(|| UnknownRole {
                name: name.to_owned(),
            })
    }
}

/// A role name that is not one of agent, reviewer, auditor, admin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {name:?}: expected agent, reviewer, auditor or admin")]
pub struct UnknownRole {
    pub name: String,
}

/// One principal as the latest `PrincipalAdded` for its name made it, and revoked if a `PrincipalRevoked` followed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// The queues a reviewer may work; empty for every other role.
    pub queues: Vec<String>,
    /// Not serialized: a listing of principals has no use for it, and a hash of a weak token could be brute-forced.
    #[serde(skip_serializing)]
    pub token_hash: String,
    pub added_by: String,
    #[serde(with = "crate::time::rfc3339")]
    pub added_at: DateTime<Utc>,
    pub revoked_by: Option<String>,
    #[serde(default, with = "crate::time::rfc3339_option")]
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Principal {
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }

    /// Whether this principal may claim and decide items in `queue`: an active reviewer granted it. No other role
    /// reviews, admins included, so that every review right is a visible grant in the log.
    pub fn may_work_queue(&self, queue: &str) -> bool {
        self.is_active()
            && self.role == Role::Reviewer
            && self.queues.iter().any(|granted| granted == queue)
    }
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

/// What an admin asks of the principals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalCommand {
    /// Grant `name` the `role`, authenticated by the token whose [`token_hash`] is given.
    AddPrincipal {
        name: String,
        role: Role,
        queues: Vec<String>,
        token_hash: String,
    },
    /// End `name`'s access; its token stops working at once.
    RevokePrincipal { name: String },
}

impl PrincipalCommand {
    /// A stable name for logs and traces.
    pub fn name(&self) -> &'static str {
        match self {
            PrincipalCommand::AddPrincipal { .. } => "AddPrincipal",
            PrincipalCommand::RevokePrincipal { .. } => "RevokePrincipal",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why `decide` refused a principal command. Each variant names the state that refused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrincipalError {
    /// An active principal has this name already.
    #[error("the principal {name} exists already")]
    PrincipalExists { name: String },
    /// No principal has ever had this name.
    #[error("there is no principal {name}")]
    PrincipalNotFound { name: String },
    /// The principal was revoked already.
    #[error("the principal {name} was revoked at {revoked_at}")]
    AlreadyRevoked {
        name: String,
        revoked_at: DateTime<Utc>,
    },
    /// The name belonged to a principal that was revoked; a name is never given to a second principal.
    #[error(
        "the name {name} belonged to a principal revoked at {revoked_at}; a revoked name is never added again, because \
         the new principal would inherit the old one's items and callback secret: choose another name"
    )]
    NameWasRevoked {
        name: String,
        revoked_at: DateTime<Utc>,
    },
    /// The name is one the server itself acts as.
    #[error("the name {name} is reserved: the server records its own actions as {name}")]
    ReservedName { name: String },
    /// A payload value is malformed or breaks a naming or granting rule.
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// An actor may not revoke itself: the admin who revokes must remain.
    #[error("you cannot revoke yourself")]
    CannotRevokeYourself,
    /// Revoking the only active admin would leave no one able to manage principals (whoever
    /// asks: an admin over HTTP, or the CLI on the data directory).
    #[error("{name} is the only active admin; add another admin before revoking it")]
    LastAdmin { name: String },
    /// Another grant, active or revoked, has this token hash; tokens are never shared or reused.
    #[error("this token is in use or was revoked; issue a new one")]
    DuplicateToken,
}

impl PrincipalError {
    /// A stable kebab-case rule name, for the `type` of an HTTP problem details body and for logs.
    pub fn rule(&self) -> &'static str {
        match self {
            PrincipalError::PrincipalExists { .. } => "principal-exists",
            PrincipalError::PrincipalNotFound { .. } => "principal-not-found",
            PrincipalError::AlreadyRevoked { .. } => "already-revoked",
            PrincipalError::NameWasRevoked { .. } => "name-was-revoked",
            PrincipalError::ReservedName { .. } => "reserved-name",
            PrincipalError::Invalid { .. } => "invalid",
            PrincipalError::CannotRevokeYourself => "cannot-revoke-yourself",
            PrincipalError::LastAdmin { .. } => "last-admin",
            PrincipalError::DuplicateToken => "duplicate-token",
        }
    }

    /// The class of refusal, which the HTTP layer maps to a status code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PrincipalError::PrincipalNotFound { .. } => ErrorKind::NotFound,
            PrincipalError::PrincipalExists { .. }
            | PrincipalError::AlreadyRevoked { .. }
            | PrincipalError::DuplicateToken => ErrorKind::Conflict,
            PrincipalError::Invalid { .. } | PrincipalError::ReservedName { .. } => {
                ErrorKind::Invalid
            }
            PrincipalError::CannotRevokeYourself
            | PrincipalError::LastAdmin { .. }
            | PrincipalError::NameWasRevoked { .. } => ErrorKind::RuleBroken,
        }
    }

    fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        PrincipalError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

/// `added_by` granted `name` the `role` (and, for a reviewer, the `queues`), authenticated by the token hashing to `token_hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalAdded {
    pub name: String,
    pub role: Role,
    pub queues: Vec<String>,
    pub token_hash: String,
    pub added_by: String,
    #[serde(with = "crate::time::rfc3339")]
    pub added_at: DateTime<Utc>,
}

/// `revoked_by` ended `name`'s access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalRevoked {
    pub name: String,
    pub revoked_by: String,
    #[serde(with = "crate::time::rfc3339")]
    pub revoked_at: DateTime<Utc>,
}

// One list of event types generates the enum and its (type, data) codec, as for item events.
macro_rules! principal_events {
    ($($variant:ident),+ $(,)?) => {
        /// A fact about a principal, as stored in the `principals` stream. Serialized whole as `{"type": …, "data": …}`;
        /// the shell stores [`PrincipalEvent::event_type`] and [`PrincipalEvent::to_data`] separately.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(tag = "type", content = "data")]
        pub enum PrincipalEvent {
            $($variant($variant),)+
        }

        impl PrincipalEvent {
            /// Every principal event type name.
            pub const EVENT_TYPES: &'static [&'static str] = &[$(stringify!($variant)),+];

            /// The stored type name, e.g. "PrincipalAdded".
            pub fn event_type(&self) -> &'static str {
                match self {
                    $(PrincipalEvent::$variant(_) => stringify!($variant),)+
                }
            }

            /// The payload without the type, as stored in the log.
            pub fn to_data(&self) -> Value {
                match self {
                    $(PrincipalEvent::$variant(payload) => serde_json::to_value(payload)
                        .expect("a principal event payload always serializes: it has no maps"),)+
                }
            }

            /// Reads back an event stored as [`PrincipalEvent::event_type`] and [`PrincipalEvent::to_data`]; the round trip is exact.
            pub fn from_type_and_data(
                event_type: &str,
                data: &Value,
            ) -> Result<PrincipalEvent, PrincipalEventDecodingError> {
                match event_type {
                    $(stringify!($variant) => $variant::deserialize(data)
                        .map(PrincipalEvent::$variant)
                        .map_err(|source| PrincipalEventDecodingError::MalformedData {
                            event_type: stringify!($variant),
                            source: std::sync::Arc::new(source),
                        }),)+
                    unknown => Err(PrincipalEventDecodingError::UnknownEventType {
                        event_type: unknown.to_owned(),
                    }),
                }
            }
        }
    };
}

principal_events!(PrincipalAdded, PrincipalRevoked);

impl PrincipalEvent {
    /// The schema version of this event's payload.
    pub fn schema_version(&self) -> u32 {
        PRINCIPAL_EVENT_SCHEMA_VERSION
    }

    /// When the fact happened (the command's `now`).
    pub fn occurred_at(&self) -> DateTime<Utc> {
        match self {
            PrincipalEvent::PrincipalAdded(added) => added.added_at,
            PrincipalEvent::PrincipalRevoked(revoked) => revoked.revoked_at,
        }
    }
}

/// Why a stored (type, data) pair is not a principal event.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PrincipalEventDecodingError {
    /// The type name is not one of [`PrincipalEvent::EVENT_TYPES`].
    #[error("unknown principal event type {event_type:?}")]
    UnknownEventType { event_type: String },
    /// The data does not match the payload of its type.
    #[error("malformed data for principal event type {event_type}")]
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

/// Every principal ever added, folded from the `principals` stream, with an index from token hash to name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Principals {
    /// Shared, so that a request holds its caller's principal without copying it.
    by_name: BTreeMap<String, Arc<Principal>>,
    /// Every token hash ever granted, to the name it was granted to; kept after revocation, so that a revoked
    /// token is recognised as used. Ordered, not hashed: the pure core carries no random hash seed.
    name_by_token_hash: BTreeMap<String, String>,
}

impl Principals {
    /// Applies one event. Total: it never fails, whatever the event, so that any stored history folds.
    pub fn apply(&mut self, event: &PrincipalEvent) {
        match event {
            PrincipalEvent::PrincipalAdded(added) => {
                self.name_by_token_hash
                    .insert(added.token_hash.clone(), added.name.clone());
                self.by_name.insert(
                    added.name.clone(),
                    Arc::new(Principal {
                        name: added.name.clone(),
                        role: added.role,
                        queues: added.queues.clone(),
                        token_hash: added.token_hash.clone(),
                        added_by: added.added_by.clone(),
                        added_at: added.added_at,
                        revoked_by: None,
                        revoked_at: None,
                    }),
                );
            }
            PrincipalEvent::PrincipalRevoked(revoked) => {
                if let Some(principal) = self.by_name.get_mut(&revoked.name) {
                    let principal = Arc::make_mut(principal);
                    principal.revoked_by = Some(revoked.revoked_by.clone());
                    principal.revoked_at = Some(revoked.revoked_at);
                }
            }
        }
    }

    /// The principal with this name, active or revoked.
    pub fn get(&self, name: &str) -> Option<&Principal> {
        self.by_name.get(name).map(Arc::as_ref)
    }

    /// The active principal whose token hashes to `hash`; `None` for an unknown or revoked token.
    pub fn by_token_hash(&self, hash: &str) -> Option<&Principal> {
        self.shared_by_token_hash(hash).map(Arc::as_ref)
    }

    /// [`Principals::by_token_hash`], shared: what a request keeps of its caller.
    pub fn shared_by_token_hash(&self, hash: &str) -> Option<&Arc<Principal>> {
        let name = self.name_by_token_hash.get(hash)?;
        // The name may have been added again since with another token: only its current grant counts.
        self.by_name
            .get(name)
            .filter(|principal| principal.is_active() && principal.token_hash == hash)
    }

    /// The active principals, by name.
    pub fn active(&self) -> impl Iterator<Item = &Principal> {
        self.all().filter(|principal| principal.is_active())
    }

    /// Every principal ever added, active or revoked, by name.
    pub fn all(&self) -> impl Iterator<Item = &Principal> {
        self.by_name.values().map(Arc::as_ref)
    }

    /// Whether an active admin exists (the shell bootstraps the first admin when none does).
    pub fn has_active_admin(&self) -> bool {
        self.active().any(|principal| principal.role == Role::Admin)
    }

    /// Whether no principal was ever added.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// How many principals were ever added, active or revoked.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }
}

/// Applies one event to a state and returns the new state.
pub fn evolve(mut state: Principals, event: &PrincipalEvent) -> Principals {
    state.apply(event);
    state
}

/// Folds the `principals` stream from the empty state.
pub fn fold<'events>(events: impl IntoIterator<Item = &'events PrincipalEvent>) -> Principals {
    events.into_iter().fold(Principals::default(), evolve)
}

// ---------------------------------------------------------------------------------------------
// Decide
// ---------------------------------------------------------------------------------------------

/// What `command`, asked by `context.actor` at `context.now`, causes: the events to append, or why not.
///
/// Checks run in one fixed order, as for items: whether the principal exists as the command needs; who asks;
/// the payload; then the rest of the state (token reuse).
pub fn decide(
    state: &Principals,
    command: &PrincipalCommand,
    context: &CommandContext,
) -> Result<Vec<PrincipalEvent>, PrincipalError> {
    if context.actor.trim().is_empty() {
        return Err(PrincipalError::invalid("actor", "must not be empty"));
    }
    match command {
        PrincipalCommand::AddPrincipal {
            name,
            role,
            queues,
            token_hash,
        } => add_principal(state, name, *role, queues, token_hash, context),
        PrincipalCommand::RevokePrincipal { name } => revoke_principal(state, name, context),
    }
}

fn add_principal(
    state: &Principals,
    name: &str,
    role: Role,
    queues: &[String],
    token_hash: &str,
    context: &CommandContext,
) -> Result<Vec<PrincipalEvent>, PrincipalError> {
    if let Some(existing) = state.get(name) {
        return Err(match existing.revoked_at {
            None => PrincipalError::PrincipalExists {
                name: name.to_owned(),
            },
            Some(revoked_at) => PrincipalError::NameWasRevoked {
                name: name.to_owned(),
                revoked_at,
            },
        });
    }
    validate_principal_name(name)?;
    validate_queues(role, queues)?;
    validate_token_hash(token_hash)?;
    if state.name_by_token_hash.contains_key(token_hash) {
        return Err(PrincipalError::DuplicateToken);
    }
    Ok(vec![PrincipalEvent::PrincipalAdded(PrincipalAdded {
        name: name.to_owned(),
        role,
        queues: queues.to_vec(),
        token_hash: token_hash.to_owned(),
        added_by: context.actor.clone(),
        added_at: context.now,
    })])
}

fn revoke_principal(
    state: &Principals,
    name: &str,
    context: &CommandContext,
) -> Result<Vec<PrincipalEvent>, PrincipalError> {
    let principal = state
        .get(name)
        .ok_or_else(|| PrincipalError::PrincipalNotFound {
            name: name.to_owned(),
        })?;
    if let Some(revoked_at) = principal.revoked_at {
        return Err(PrincipalError::AlreadyRevoked {
            name: name.to_owned(),
            revoked_at,
        });
    }
    // The shell admits only active admins here, so the one asking always remains: an admin is always reachable.
    if context.actor == name {
        return Err(PrincipalError::CannotRevokeYourself);
    }
    // Nor may anyone else (the CLI on the data directory) revoke the last active admin.
    let active_admins = state
        .active()
        .filter(|other| other.role == Role::Admin)
        .count();
    if principal.role == Role::Admin && active_admins == 1 {
        return Err(PrincipalError::LastAdmin {
            name: name.to_owned(),
        });
    }
    Ok(vec![PrincipalEvent::PrincipalRevoked(PrincipalRevoked {
        name: name.to_owned(),
        revoked_by: context.actor.clone(),
        revoked_at: context.now,
    })])
}

/// Names are what every event records as the actor: short, lowercase, unambiguous in logs and URLs.
fn validate_principal_name(name: &str) -> Result<(), PrincipalError> {
    if name.is_empty() {
        return Err(PrincipalError::invalid("name", "must not be empty"));
    }
    if name.chars().count() > MAXIMUM_PRINCIPAL_NAME_LENGTH {
        return Err(PrincipalError::invalid(
            "name",
            format!("must be at most {MAXIMUM_PRINCIPAL_NAME_LENGTH} characters"),
        ));
    }
    let allowed = |character: char| {
        character.is_ascii_lowercase() || character.is_ascii_digit() || "._-".contains(character)
    };
    if !name.chars().all(allowed) {
        return Err(PrincipalError::invalid(
            "name",
            "may hold only a-z, 0-9, '.', '_' and '-'",
        ));
    }
    // `.` and `..` are path segments (`DELETE /v1/principals/..`), `-x` reads as an option on a command line.
    if !name.starts_with(|first: char| first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(PrincipalError::invalid(
            "name",
            "must start with a letter (a-z) or a digit",
        ));
    }
    if RESERVED_ACTOR_NAMES.contains(&name) {
        return Err(PrincipalError::ReservedName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

fn validate_queues(role: Role, queues: &[String]) -> Result<(), PrincipalError> {
    if role != Role::Reviewer {
        if !queues.is_empty() {
            return Err(PrincipalError::invalid(
                "queues",
                "only reviewers are granted queues",
            ));
        }
        return Ok(());
    }
    if queues.is_empty() {
        return Err(PrincipalError::invalid(
            "queues",
            "a reviewer must be granted at least one queue",
        ));
    }
    for (index, queue) in queues.iter().enumerate() {
        // The same rules as an item's queue name, so that every name granted can be a real queue.
        if queue.trim().is_empty() {
            return Err(PrincipalError::invalid("queues", "a queue name is empty"));
        }
        if queue.trim() != queue {
            return Err(PrincipalError::invalid(
                "queues",
                "a queue name starts or ends with whitespace",
            ));
        }
        if queue.chars().count() > MAXIMUM_NAME_LENGTH {
            return Err(PrincipalError::invalid(
                "queues",
                format!("a queue name is longer than {MAXIMUM_NAME_LENGTH} characters"),
            ));
        }
        if queue.chars().any(char::is_control) {
            return Err(PrincipalError::invalid(
                "queues",
                "a queue name contains control characters",
            ));
        }
        if queues[..index].contains(queue) {
            return Err(PrincipalError::invalid(
                "queues",
                format!("{queue:?} is granted twice"),
            ));
        }
    }
    Ok(())
}

fn validate_token_hash(token_hash: &str) -> Result<(), PrincipalError> {
    let is_sha256_hex = token_hash.len() == 64
        && token_hash
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
    if !is_sha256_hex {
        return Err(PrincipalError::invalid(
            "token_hash",
            "must be 64 lowercase hexadecimal digits (SHA-256 of the token)",
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "principal_tests.rs"]
mod tests;
