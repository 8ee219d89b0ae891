//! The HTTP server (`ledger serve`): for now the health endpoint over the opened log; the review
//! API comes next (see issue 3).

use crate::log::{EventLog, FileLog};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;
use tokio::net::TcpListener;

/// What request handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub log: Arc<FileLog>,
}

/// The routes of the server.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .with_state(state)
}

async fn health(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "events": state.log.head(),
        "streams": state.log.stream_count(),
    }))
}

/// Serves until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
