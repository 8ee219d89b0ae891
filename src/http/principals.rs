//! The principal endpoints, for admins: add (the token is answered once), list, revoke.

use super::AppState;
use super::auth::Caller;
use super::problem::{ApiError, ApiJson, ApiPath};
use crate::principals::{PrincipalsError, add_with_token, new_token, revoke};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use projections::item::ErrorKind;
use projections::principal::Role;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddPrincipalRequest {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub queues: Vec<String>,
}

impl From<PrincipalsError> for ApiError {
    fn from(error: PrincipalsError) -> Self {
        match error {
            PrincipalsError::Rule(rule) => {
                let status = match rule.kind() {
                    ErrorKind::NotFound => StatusCode::NOT_FOUND,
                    ErrorKind::Conflict => StatusCode::CONFLICT,
                    ErrorKind::Forbidden => StatusCode::FORBIDDEN,
                    ErrorKind::Invalid | ErrorKind::RuleBroken => StatusCode::UNPROCESSABLE_ENTITY,
                };
                ApiError::new(status, "principal-rule", rule.to_string()).with("rule", rule.rule())
            }
            PrincipalsError::Log(error) => error.into(),
            PrincipalsError::Projector(error) => error.into(),
            error @ PrincipalsError::Decoding(_) => ApiError::internal(&error),
        }
    }
}

fn principal_json(principal: &projections::principal::Principal) -> serde_json::Value {
    serde_json::json!({
        "name": principal.name,
        "role": principal.role.as_str(),
        "queues": principal.queues,
        "added_at": principal.added_at,
        "revoked_at": principal.revoked_at,
        "active": principal.is_active(),
    })
}

/// `POST /v1/principals`: answers the new principal with its token, shown only this once.
pub async fn add(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<AddPrincipalRequest>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin], "manage principals")?;
    let token = new_token();
    let position = add_with_token(
        state.log.as_ref(),
        caller.name(),
        &request.name,
        request.role,
        request.queues,
        &token,
    )
    .await?;
    state.projector.wait_for(position).await?;
    let models = state.projector.read();
    let mut body = models
        .principals
        .get(&request.name)
        .map(principal_json)
        .unwrap_or_default();
    body["token"] = token.into();
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// `GET /v1/principals`: every principal, revoked ones included, never a token or its hash.
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin, Role::Auditor], "list principals")?;
    state.caught_up().await?;
    let models = state.projector.read();
    let principals: Vec<_> = models.principals.all().map(principal_json).collect();
    Ok(axum::Json(serde_json::json!({ "principals": principals })).into_response())
}

/// `DELETE /v1/principals/{name}`: revokes; the token stops working at once.
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin], "manage principals")?;
    let position = revoke(state.log.as_ref(), caller.name(), &name).await?;
    state.projector.wait_for(position).await?;
    let models = state.projector.read();
    let body = models
        .principals
        .get(&name)
        .map(principal_json)
        .unwrap_or_default();
    Ok(axum::Json(body).into_response())
}

/// `GET /v1/principals/{name}/callback-secret`: the secret an agent checks its callbacks'
/// `webhook-signature` with, spelled `whsec_<base64>` as Standard Webhooks libraries take it; for
/// admins (to hand to the agent's operators) and for the agent itself.
pub async fn callback_secret(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    if !(caller.role() == Role::Admin || (caller.role() == Role::Agent && caller.name() == name)) {
        return Err(ApiError::forbidden(
            "only an admin, or the agent itself, may read an agent's callback secret",
        ));
    }
    let is_agent = state
        .projector
        .read()
        .principals
        .get(&name)
        .is_some_and(|principal| principal.role == Role::Agent && principal.is_active());
    if !is_agent {
        return Err(ApiError::not_found(format!("no active agent named {name}")));
    }
    let key = state
        .callback_key
        .as_ref()
        .ok_or_else(|| ApiError::not_found("this server does not sign callbacks"))?;
    Ok(
        axum::Json(serde_json::json!({ "agent": name, "secret": key.secret_for(&name) }))
            .into_response(),
    )
}
