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
        let hash = token_hash(token);
        let models = state.projector.read();
        let principal = models
            .principals
            .shared_by_token_hash(&hash)
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("unknown or revoked token"))?;
        Ok(Caller(principal))
    }
}

impl Caller {
    pub fn name(&self) -> &str {
        &self.0.name
    }

    pub fn role(&self) -> Role {
        self.0.role
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
