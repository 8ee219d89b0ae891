//! The HTTP API (axum), under `/v1`: the only module that knows HTTP shapes. Requests become
//! typed domain commands here and go through `commands::execute`; reads come from the projector's
//! read models.
//!
//! # Layout
//! - [`problem`]: problem+json errors and the JSON extractor.
//! - [`auth`]: bearer tokens to principals, and role checks.
//! - [`items`]: submit, read, decide, wait for a decision; the queue.
//! - [`principals`]: admins add, list and revoke principals.
//! - [`feed`]: the log as Server-Sent Events.
//! - [`metrics`]: `/metrics` in the Prometheus text format.
//! - [`openapi`]: `/openapi.json`, the OpenAPI 3.1 document.

pub mod auth;
pub mod feed;
pub mod items;
pub mod metrics;
pub mod openapi;
pub mod principals;
pub mod problem;

use crate::log::{EventLog, FileLog};
use crate::projector::Projector;
use axum::Router;
use axum::extract::State;
use axum::routing::{MethodRouter, delete, get, post};
use std::sync::Arc;
use tokio::net::TcpListener;

/// The largest request body accepted (AI outputs with their context can be large, but not huge):
/// axum's default limit, which its body extractors apply without a layer. A `DefaultBodyLimit`
/// layer set to the same value wrapped every route in one more boxed service, cloned for every
/// request; the API test of oversized bodies sends just over this size and expects 413.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// What request handlers share: one `Arc`, so that the clones axum makes of it (for the
/// middleware, the handler and the extractors of every request) are one reference count each, not
/// one per field, on counters both cores touch.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

/// The parts of [`AppState`].
pub struct Shared {
    pub log: Arc<dyn EventLog>,
    pub projector: Projector,
    /// The file log itself, for counts the trait does not expose.
    pub file_log: Option<Arc<FileLog>>,
    pub clock: crate::clock::Clock,
    pub metrics: metrics::Metrics,
    /// The key agents' callback secrets derive from (`None`: callbacks are not signed here).
    pub callback_key: Option<crate::callbacks::CallbackKey>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// The state of a server over `log`, with its projector and clock.
    pub fn new(
        log: Arc<dyn EventLog>,
        projector: Projector,
        file_log: Option<Arc<FileLog>>,
        clock: crate::clock::Clock,
    ) -> AppState {
        AppState(Arc::new(Shared {
            log,
            projector,
            file_log,
            clock,
            metrics: metrics::Metrics::default(),
            callback_key: None,
        }))
    }

    /// Waits until the read models hold every event the log had committed when this was called.
    ///
    /// Every read of the read models starts here; writes answer from their own fold of what they
    /// wrote, without waiting for the projector. A client therefore reads its own writes (and
    /// everyone's writes answered before its request arrived), while a write costs no wait for the
    /// projector. When the projector is caught up, as it nearly always is, this is one comparison.
    pub async fn caught_up(&self) -> Result<(), crate::projector::ProjectorStopped> {
        self.projector.caught_up_with(self.log.as_ref()).await
    }

    /// Sets the callback key; only while building the state, before any clone of it exists.
    pub fn with_callback_key(mut self, key: crate::callbacks::CallbackKey) -> AppState {
        Arc::get_mut(&mut self.0)
            .expect("the callback key is set before the state is shared")
            .callback_key = Some(key);
        self
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AppState")
            .field("head", &self.log.head())
            .field("projected", &self.projector.applied())
            .finish_non_exhaustive()
    }
}

/// Every route: its path pattern and its handlers. The router is built from this list, and
/// `tests/it/api.rs` checks it against the OpenAPI operations (`openapi::operations`).
pub fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/healthz", get(health)),
        ("/metrics", get(metrics::render)),
        ("/openapi.json", get(openapi::serve_document)),
        ("/v1/items", post(items::submit)),
        ("/v1/items/{id}", get(items::get_item)),
        ("/v1/items/{id}/events", get(items::item_events)),
        ("/v1/items/{id}/decision", get(items::wait_for_decision)),
        // claim, release, approve, edit, reject, request-changes, escalate, comments,
        // revisions, withdraw: one handler, documented as one operation each.
        ("/v1/items/{id}/{action}", post(items::act)),
        ("/v1/queue", get(items::queue)),
        ("/v1/events", get(feed::events)),
        (
            "/v1/principals",
            post(principals::add).get(principals::list),
        ),
        ("/v1/principals/{name}", delete(principals::remove)),
        (
            "/v1/principals/{name}/callback-secret",
            get(principals::callback_secret),
        ),
    ]
}

/// The routes of the server.
pub fn router(state: AppState) -> Router {
    routes()
        .into_iter()
        .fold(Router::new(), |router, (path, handlers)| {
            router.route(path, handlers)
        })
        .fallback(|| async { problem::ApiError::not_found("no such route") })
        // A problem+json 405 like every other refusal, rather than axum's empty one; axum still
        // adds the `Allow` header.
        .method_not_allowed_fallback(|| async { problem::ApiError::method_not_allowed() })
        .layer(metrics::TrackLayer::new(state.clone()))
        .with_state(state)
}

async fn health(State(state): State<AppState>) -> axum::Json<serde_json::Value> {
    let streams = state.file_log.as_ref().map(|log| log.stream_count());
    axum::Json(serde_json::json!({
        "status": "ok",
        "events": state.log.head(),
        "streams": streams,
        "projected": state.projector.applied(),
    }))
}

/// Serves until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use axum::serve::ListenerExt;
    // Answers are small and written whole: send them at once rather than wait on Nagle's algorithm.
    let listener = listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
