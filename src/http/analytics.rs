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

/// The query of an analytics request, once the caller may ask it and the read models hold every
/// write acknowledged before it.
async fn analytics_query(
    state: &AppState,
    caller: &Caller,
    by: &Option<String>,
    since: &Option<String>,
    until: &Option<String>,
) -> Result<OverrideQuery, ApiError> {
    caller.require(
        &[Role::Analyst, Role::Auditor, Role::Admin],
        "read analytics",
    )?;
    let query = OverrideQuery::parse(by.as_deref(), since.as_deref(), until.as_deref()).map_err(
        |detail| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-query", detail),
    )?;
    state.caught_up().await?;
    Ok(query)
}

/// `GET /v1/analytics/override-rates?by=model,kind&since=&until=`.
pub async fn override_rates(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<OverrideParams>,
) -> Result<Response, ApiError> {
    let query = analytics_query(&state, &caller, &params.by, &params.since, &params.until).await?;
    let (rows, applied) = {
        let models = state.projector.read();
        (query.rows(&models.board), models.applied)
    };
    Ok(axum::Json(query.answer(&rows, applied)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationParams {
    by: Option<String>,
    since: Option<String>,
    until: Option<String>,
    /// Equal-width confidence buckets (default 10, at most 100).
    buckets: Option<usize>,
}

/// `GET /v1/analytics/calibration?by=&buckets=&since=&until=`: override rate by the AI's stated
/// confidence, and the expected calibration error, per slice.
pub async fn calibration(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<CalibrationParams>,
) -> Result<Response, ApiError> {
    let query = analytics_query(&state, &caller, &params.by, &params.since, &params.until).await?;
    let models = state.projector.read();
    let answer = query.calibration(&models.board, params.buckets.unwrap_or(10), models.applied);
    drop(models);
    Ok(axum::Json(answer).into_response())
}
