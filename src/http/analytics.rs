//! The analytics API: override rates by slice with 95% Wilson intervals, from the projector's
//! review board (the same function as `ledger analytics report`).

use super::AppState;
use super::auth::Caller;
use super::problem::{ApiError, ApiQuery};
use crate::analytics::OverrideQuery;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use projections::principal::Role;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideParams {
    by: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

/// `GET /v1/analytics/override-rates?by=model,kind&since=&until=`.
pub async fn override_rates(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<OverrideParams>,
) -> Result<Response, ApiError> {
    caller.require(
        &[Role::Analyst, Role::Auditor, Role::Admin],
        "read analytics",
    )?;
    let query = OverrideQuery::parse(
        params.by.as_deref(),
        params.since.as_deref(),
        params.until.as_deref(),
    )
    .map_err(|detail| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-query", detail))?;
    state.caught_up().await?;
    let (rows, applied) = {
        let models = state.projector.read();
        (query.rows(&models.board), models.applied)
    };
    Ok(axum::Json(query.answer(&rows, applied)).into_response())
}
