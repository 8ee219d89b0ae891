//! `GET /healthz` and `GET /readyz`: whether the server can do its work, with the reason when it
//! cannot; and the same state as metrics.
//!
//! - `/healthz` answers 200 while the log takes appends, and 503 (problem+json, with the log's
//!   state and the reason) while it refuses them: paused until a retry works, or poisoned until
//!   a restart (`LogHealth`, `docs/adr/0006-log-health.md`).
//! - `/readyz` answers 200 when the server can serve both writes and reads: the log takes
//!   appends and the projector follows the log. The projector rebuilds the read models before
//!   the server listens, so a replay is over by the time anyone can ask; once its subscription
//!   failed the read models are stale, and `/readyz` answers 503 until a restart.

use super::AppState;
use super::problem::ApiError;
use crate::log::LogHealth;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::fmt::Write as _;

/// `GET /healthz`: the log's state, with counts of events stored and projected.
pub async fn health(State(state): State<AppState>) -> Response {
    let log = state.log.health();
    let events = match state.log.head().await {
        Ok(events) => events,
        Err(error) => return store_unreachable(&state, &error),
    };
    let projected = state.projector.applied();
    if let Some(reason) = log.reason() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            problem_of(&log),
            format!("the log refuses writes: {reason}"),
        )
        .with("log", log.name())
        .with("reason", reason)
        .with("events", events)
        .with("projected", projected)
        .into_response();
    }
    let streams = state.log.stream_count();
    axum::Json(serde_json::json!({
        "status": "ok",
        "backend": state.log.backend(),
        "log": log.name(),
        "events": events,
        "streams": streams,
        "projected": projected,
    }))
    .into_response()
}

/// `GET /readyz`: ready when the log takes appends and the projector follows the log.
pub async fn ready(State(state): State<AppState>) -> Response {
    let log = state.log.health();
    let following = state.projector.is_following();
    let projector = if following { "following" } else { "stopped" };
    let events = match state.log.head().await {
        Ok(events) => events,
        Err(error) => return store_unreachable(&state, &error),
    };
    let projected = state.projector.applied();
    let mut reasons = Vec::new();
    if let Some(reason) = log.reason() {
        reasons.push(format!("the log refuses writes: {reason}"));
    }
    if !following {
        reasons.push(
            "the read models stopped following the log; the server needs a restart".to_owned(),
        );
    }
    if !reasons.is_empty() {
        let problem = if log.is_writable() {
            "projections-stopped"
        } else {
            problem_of(&log)
        };
        let mut error = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            problem,
            format!("not ready: {}", reasons.join("; ")),
        )
        .with("log", log.name())
        .with("projector", projector)
        .with("events", events)
        .with("projected", projected);
        if let Some(reason) = log.reason() {
            error = error.with("reason", reason);
        }
        return error.into_response();
    }
    axum::Json(serde_json::json!({
        "status": "ready",
        "backend": state.log.backend(),
        "log": log.name(),
        "projector": projector,
        "events": events,
        "projected": projected,
    }))
    .into_response()
}

/// 503 while the store does not answer (a database restarting, a network cut): the log is not
/// broken, and the server recovers without a restart once the store answers again.
fn store_unreachable(state: &AppState, error: &crate::log::LogError) -> Response {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store-unavailable",
        format!("the store does not answer: {error}"),
    )
    .with("backend", state.log.backend())
    .with("projected", state.projector.applied())
    .with("retryable", true)
    .into_response()
}

/// The problem name of a log that refuses writes.
fn problem_of(log: &LogHealth) -> &'static str {
    match log {
        LogHealth::Poisoned { .. } => "log-poisoned",
        LogHealth::WritesPaused { .. } | LogHealth::Writable => "log-writes-paused",
    }
}

/// The server's health as metrics, in the Prometheus text format (called by `metrics::render`):
/// whether the log takes appends, its failed writes, and the event feeds cut off.
pub fn render_metrics(state: &AppState, out: &mut String) {
    let writable = u8::from(state.log.health().is_writable());
    let _ = writeln!(
        out,
        "# HELP ledger_log_writable 1 while the log takes appends, 0 while it refuses them (see /healthz for why)."
    );
    let _ = writeln!(out, "# TYPE ledger_log_writable gauge");
    let _ = writeln!(out, "ledger_log_writable {writable}");
    let _ = writeln!(
        out,
        "# HELP ledger_log_write_failures_total Writes of the log that failed (each paused or poisoned it)."
    );
    let _ = writeln!(out, "# TYPE ledger_log_write_failures_total counter");
    let _ = writeln!(
        out,
        "ledger_log_write_failures_total {}",
        state.log.write_failures()
    );
    super::feed::render_metrics(state, out);
}
