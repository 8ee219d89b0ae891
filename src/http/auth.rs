//! Authentication and authorization: `Authorization: Bearer <token>` to a principal, and the
//! checks of what its role allows.
//!
//! Tokens are never stored: principals carry the SHA-256 of theirs, and a request's token is
//! hashed and looked up. The actor of every event is the principal found here, never a field of
//! the request body.

use super::AppState;
use super::problem::ApiError;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use projections::principal::{Principal, Role, token_hash};
use std::sync::Arc;

/// The authenticated principal of a request (shared with the read models, not copied).
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<Principal>);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("send Authorization: Bearer <token>"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be Bearer <token>")
            })?;
        Caller::of_token(state, token)
            .await?
            .ok_or_else(|| ApiError::unauthorized("unknown or revoked token"))
    }
}

impl Caller {
    /// The principal `token` authenticates, if any. Unknown here, it may have been added a
    /// moment ago through another server of the same store: only a miss pays for catching up (a
    /// look at the store's head); while the store cannot be asked, the answer is 503, not a
    /// refusal the client would take as final.
    pub async fn of_token(state: &AppState, token: &str) -> Result<Option<Caller>, ApiError> {
        let hash = token_hash(token);
        let known = |state: &AppState| {
            state
                .projector
                .read()
                .principals
                .shared_by_token_hash(&hash)
                .cloned()
        };
        if let Some(principal) = known(state) {
            return Ok(Some(Caller(principal)));
        }
        state.caught_up().await?;
        Ok(known(state).map(Caller))
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    pub fn role(&self) -> Role {
        self.0.role
    }

    /// Whether the token this request authenticated with still authenticates, by the read models
    /// as they are now: false once its principal was revoked (or its name given another token).
    pub fn still_authenticates(&self, state: &AppState) -> bool {
        state
            .projector
            .read()
            .principals
            .shared_by_token_hash(&self.0.token_hash)
            .is_some()
    }

    /// Resolves once the caller's token stops authenticating (its principal was revoked), so that
    /// open connections end with the revocation instead of outliving it. Never resolves while the
    /// token works, nor after the projector stopped (nothing is learned any more then).
    pub async fn revoked(&self, state: &AppState) {
        let mut changes = state.projector.principals_changes();
        loop {
            // Marked seen before the check: a revocation applied after it wakes `changed`.
            changes.borrow_and_update();
            if !self.still_authenticates(state) {
                return;
            }
            if changes.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// The problem a request of a revoked caller ends with.
    pub fn revoked_problem(&self) -> ApiError {
        ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "revoked",
            format!(
                "the principal {} was revoked while this request waited",
                self.name()
            ),
        )
    }

    /// Refuses unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role], doing: impl std::fmt::Display) -> Result<(), ApiError> {
        if roles.contains(&self.0.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "a principal with role {} may not {doing}",
                self.0.role.as_str()
            ))
            .with("role", self.0.role.as_str()))
        }
    }
}
