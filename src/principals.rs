//! Adding and revoking principals: the shell around the core's principal rules. Tokens are made
//! here (random), shown once, and stored only as their SHA-256 in `PrincipalAdded` events of the
//! `principals` stream.

use crate::log::{EventLog, ExpectedVersion, LogError};
use crate::projector::{PRINCIPALS_STREAM, Projector};
use projections::item::CommandContext;
use projections::principal::{
    PrincipalCommand, PrincipalError, PrincipalEvent, Principals, Role, decide, token_hash,
};
use uuid::Uuid;

/// Why a principal was not added or revoked. Nothing was written in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum PrincipalsError {
    #[error(transparent)]
    Rule(#[from] PrincipalError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Projector(#[from] crate::projector::ProjectorError),
    #[error("a principal event does not decode: {0}")]
    Decoding(String),
}

/// A new random token: 256 bits from the OS's generator, as text safe in a header.
pub fn new_token() -> String {
    format!("ldg_{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

/// The principals as the log holds them now, and the stream's version.
pub async fn load(log: &dyn EventLog) -> Result<(Principals, Option<u64>), PrincipalsError> {
    let stored = crate::log::read_whole_stream(log, PRINCIPALS_STREAM).await?;
    let mut principals = Principals::default();
    for recorded in &stored {
        let event = crate::projector::decode(recorded, PrincipalEvent::from_type_and_data)
            .map_err(PrincipalsError::Decoding)?;
        principals.apply(&event);
    }
    Ok((principals, (stored.len() as u64).checked_sub(1)))
}

/// Decides `command` on the principals as the log holds them and appends the result; returns
/// the position of the last event written.
async fn execute(
    log: &dyn EventLog,
    actor: &str,
    command: &PrincipalCommand,
) -> Result<u64, PrincipalsError> {
    let (principals, version) = load(log).await?;
    let context = CommandContext::new(actor, chrono::Utc::now());
    let events = decide(&principals, command, &context)?;
    let expected = match version {
        None => ExpectedVersion::NoStream,
        Some(version) => ExpectedVersion::Exact(version),
    };
    let new_events = crate::commands::to_new_events(&events, actor, None);
    let appended = log.append(PRINCIPALS_STREAM, expected, new_events).await?;
    Ok(appended.last_position)
}

/// Adds a principal and returns its token (shown once; only its hash is stored). With a
/// projector, returns once the projector knows the principal.
pub async fn add_principal(
    log: &dyn EventLog,
    projector: &Projector,
    actor: &str,
    name: &str,
    role: Role,
    queues: Vec<String>,
) -> Result<String, PrincipalsError> {
    let token = new_token();
    let position = add_with_token(log, actor, name, role, queues, &token).await?;
    projector.wait_for(position).await?;
    Ok(token)
}

/// Adds a principal with a given token; returns the position written.
pub async fn add_with_token(
    log: &dyn EventLog,
    actor: &str,
    name: &str,
    role: Role,
    queues: Vec<String>,
    token: &str,
) -> Result<u64, PrincipalsError> {
    let command = PrincipalCommand::AddPrincipal {
        name: name.to_owned(),
        role,
        queues,
        token_hash: token_hash(token),
    };
    execute(log, actor, &command).await
}

/// Revokes a principal; returns the position written. Whoever asks (an admin over HTTP, or the
/// CLI on the data directory), the last active admin is never revoked (`PrincipalError::LastAdmin`).
pub async fn revoke(log: &dyn EventLog, actor: &str, name: &str) -> Result<u64, PrincipalsError> {
    let command = PrincipalCommand::RevokePrincipal {
        name: name.to_owned(),
    };
    execute(log, actor, &command).await
}

/// On the first start of an empty ledger, creates the principal `admin` (role admin) with
/// `token` (from `LEDGER_ADMIN_TOKEN`) or a new random one, and returns the token; `None` when
/// principals exist already.
pub async fn bootstrap_admin(
    log: &dyn EventLog,
    projector: &Projector,
    token: Option<String>,
) -> Result<Option<String>, PrincipalsError> {
    let (principals, _) = load(log).await?;
    if !principals.is_empty() {
        return Ok(None);
    }
    let token = token.unwrap_or_else(new_token);
    let position =
        match add_with_token(log, "system", "admin", Role::Admin, Vec::new(), &token).await {
            Ok(position) => position,
            // Another server of the store created the first admin meanwhile.
            Err(PrincipalsError::Log(LogError::Conflict { .. })) => return Ok(None),
            Err(error) => return Err(error),
        };
    projector.wait_for(position).await?;
    Ok(Some(token))
}
