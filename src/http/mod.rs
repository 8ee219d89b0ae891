//! The HTTP API (axum), under `/v1`: the only module that knows HTTP shapes. Requests become
//! typed domain commands here and go through `commands::execute`; reads come from the projector's
//! read models.
//!
//! # Layout
//! - [`problem`]: problem+json errors and the JSON extractor.
//! - [`analytics`]: override rates and the other measures of the decisions, by slice.
//! - [`audit`]: signed checkpoints, inclusion and consistency proofs, decision records.
//! - [`auth`]: bearer tokens to principals, and role checks.
//! - [`items`]: submit, read, decide, wait for a decision; the queue.
//! - [`principals`]: admins add, list and revoke principals.
//! - [`feed`]: the log as Server-Sent Events, and a queue's changes.
//! - [`health`]: `/healthz` and `/readyz`, the log's and the projector's state.
//! - [`metrics`]: `/metrics` in the Prometheus text format.
//! - [`openapi`]: `/openapi.json`, the OpenAPI 3.1 document.
//! - [`server`]: connections: the accept loop, its cap and timeouts.

pub mod analytics;
pub mod audit;
pub mod auth;
pub mod feed;
pub mod health;
pub mod items;
pub mod metrics;
pub mod openapi;
pub mod principals;
pub mod problem;
pub mod server;

use crate::log::EventLog;
use crate::projector::Projector;
use axum::Router;
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
    pub clock: crate::clock::Clock,
    pub metrics: metrics::Metrics,
    /// The key agents' callback secrets derive from (`None`: callbacks are not signed here).
    pub callback_key: Option<crate::callbacks::CallbackKey>,
    /// Where submitted callback URLs may point (public addresses unless allowed).
    pub callback_policy: crate::callback_policy::CallbackPolicy,
    /// The operator's expiry policies: a submission's `due_at` must leave its policy's minimum
    /// review window (the scheduler holds the same policies for the action at expiry).
    pub expiry_policies: Arc<crate::expiry_policy::ExpiryPolicies>,
    /// The event feeds' bound in bytes, and how many were cut off.
    pub feed: feed::FeedSettings,
    /// Who may read `/metrics` (admins and auditors unless set otherwise).
    pub metrics_access: metrics::MetricsAccess,
    /// The key that verifies this ledger's checkpoints (named in records and checkpoint pages).
    pub checkpoint_verifier: Option<crate::audit::Verifier>,
    /// The review policies: which new items are approved without review (the feedback loop).
    pub review_policies: Arc<crate::review_policy::ReviewPolicies>,
    /// The web page's sessions: the key their cookies are signed with (derived from the
    /// callback key, so that every server of a store accepts them).
    pub sessions: crate::web::session::Sessions,
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
        clock: crate::clock::Clock,
    ) -> AppState {
        AppState(Arc::new(Shared {
            log,
            projector,
            clock,
            metrics: metrics::Metrics::default(),
            callback_key: None,
            callback_policy: crate::callback_policy::CallbackPolicy::public_only(),
            expiry_policies: Arc::default(),
            feed: feed::FeedSettings::default(),
            metrics_access: metrics::MetricsAccess::principals_only(),
            checkpoint_verifier: None,
            review_policies: Arc::default(),
            sessions: crate::web::session::Sessions::default(),
        }))
    }

    /// Waits until the read models hold every event the log had committed when this was called.
    ///
    /// Every read of the read models starts here; writes answer from their own fold of what they
    /// wrote, without waiting for the projector. A client therefore reads its own writes (and
    /// everyone's writes answered before its request arrived), while a write costs no wait for the
    /// projector. When the projector is caught up, as it nearly always is, this is one comparison.
    pub async fn caught_up(&self) -> Result<(), crate::projector::ProjectorError> {
        self.projector.caught_up_with(self.log.as_ref()).await
    }

    /// Waits until the read models hold every event this server knows of without asking the
    /// store (`EventLog::head_hint`: at least its own acknowledged appends); `caught_up` on a log
    /// without a hint.
    pub async fn caught_up_with_known(&self) -> Result<(), crate::projector::ProjectorError> {
        match self.log.head_hint() {
            Some(head) => self.projector.caught_up_to(head).await,
            None => self.caught_up().await,
        }
    }

    /// Sets the callback key; only while building the state, before any clone of it exists.
    pub fn with_callback_key(mut self, key: crate::callbacks::CallbackKey) -> AppState {
        Arc::get_mut(&mut self.0)
            .expect("the callback key is set before the state is shared")
            .callback_key = Some(key);
        self
    }

    /// Signs web sessions with a key derived from `callback_key`, as every server of the store
    /// does; only while building the state.
    pub fn with_session_key(mut self, callback_key: &crate::callbacks::CallbackKey) -> AppState {
        Arc::get_mut(&mut self.0)
            .expect("the session key is set before the state is shared")
            .sessions = crate::web::session::Sessions::from_callback_key(callback_key.as_bytes());
        self
    }

    /// Sets where callback URLs may point; only while building the state, before any clone of it
    /// exists.
    pub fn with_callback_policy(
        mut self,
        policy: crate::callback_policy::CallbackPolicy,
    ) -> AppState {
        Arc::get_mut(&mut self.0)
            .expect("the callback policy is set before the state is shared")
            .callback_policy = policy;
        self
    }

    /// Sets the review policies (none otherwise); only while building the state.
    pub fn with_review_policies(
        mut self,
        policies: Arc<crate::review_policy::ReviewPolicies>,
    ) -> AppState {
        Arc::get_mut(&mut self.0)
            .expect("the review policies are set before the state is shared")
            .review_policies = policies;
        self
    }

    /// Sets the expiry policies (the built-in default otherwise); only while building the state.
    pub fn with_expiry_policy(
        mut self,
        policies: Arc<crate::expiry_policy::ExpiryPolicies>,
    ) -> AppState {
        Arc::get_mut(&mut self.0)
            .expect("the expiry policies are set before the state is shared")
            .expiry_policies = policies;
        self
    }

    /// Sets how many bytes of encoded events an event feed may have queued for its client
    /// (`feed::DEFAULT_FEED_BUFFER_BYTES` by default); only while building the state.
    pub fn with_feed_buffer_bytes(mut self, bytes: u32) -> AppState {
        Arc::get_mut(&mut self.0)
            .expect("the feed bound is set before the state is shared")
            .feed = feed::FeedSettings::with_buffer_bytes(bytes);
        self
    }

    /// Sets the key that verifies this ledger's checkpoints; only while building the state.
    pub fn with_checkpoint_verifier(mut self, verifier: crate::audit::Verifier) -> AppState {
        Arc::get_mut(&mut self.0)
            .expect("the checkpoint verifier is set before the state is shared")
            .checkpoint_verifier = Some(verifier);
        self
    }

    /// Sets who may read `/metrics`; only while building the state, before any clone of it exists.
    pub fn with_metrics_access(mut self, access: metrics::MetricsAccess) -> AppState {
        Arc::get_mut(&mut self.0)
            .expect("the metrics access is set before the state is shared")
            .metrics_access = access;
        self
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AppState")
            .field("backend", &self.log.backend())
            .field("projected", &self.projector.applied())
            .finish_non_exhaustive()
    }
}

/// Every route: its path pattern and its handlers. The router is built from this list, and
/// `tests/it/api.rs` checks it against the OpenAPI operations (`openapi::operations`).
pub fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/healthz", get(health::health)),
        ("/readyz", get(health::ready)),
        ("/metrics", get(metrics::render)),
        ("/openapi.json", get(openapi::serve_document)),
        ("/v1/items", post(items::submit)),
        ("/v1/items/{id}", get(items::get_item)),
        ("/v1/items/{id}/events", get(items::item_events)),
        ("/v1/items/{id}/decision", get(items::wait_for_decision)),
        ("/v1/items/{id}/record", get(audit::item_record)),
        // claim, release, approve, edit, reject, request-changes, escalate, comments,
        // revisions, withdraw: one handler, documented as one operation each.
        ("/v1/items/{id}/{action}", post(items::act)),
        ("/v1/queue", get(items::queue)),
        ("/v1/queue/events", get(feed::queue_events)),
        ("/v1/events", get(feed::events)),
        (
            "/v1/analytics/override-rates",
            get(analytics::override_rates),
        ),
        ("/v1/analytics/calibration", get(analytics::calibration)),
        (
            "/v1/analytics/edit-magnitude",
            get(analytics::edit_magnitude),
        ),
        ("/v1/analytics/review-times", get(analytics::review_times)),
        (
            "/v1/analytics/rejection-reasons",
            get(analytics::rejection_reasons),
        ),
        ("/v1/analytics/agreement", get(analytics::agreement)),
        ("/v1/analytics/drift", get(analytics::drift)),
        (
            "/v1/analytics/accuracy",
            get(analytics::accuracy).post(analytics::measure_accuracy),
        ),
        ("/v1/audit/checkpoints", get(audit::checkpoints)),
        (
            "/v1/audit/checkpoints/latest",
            get(audit::latest_checkpoint),
        ),
        ("/v1/audit/proofs/inclusion", get(audit::inclusion_proof)),
        (
            "/v1/audit/proofs/consistency",
            get(audit::consistency_proof),
        ),
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
    router_with_routes(state, routes())
}

/// A router of `routes` (the server's are [`routes`]) with the server's fallback and request
/// layer: for tests that need a route the API does not have (one that panics, say).
pub fn router_with_routes(
    state: AppState,
    routes: Vec<(&'static str, MethodRouter<AppState>)>,
) -> Router {
    routes
        .into_iter()
        .fold(Router::new(), |router, (path, handlers)| {
            router.route(path, handlers)
        })
        .merge(crate::web::router())
        .fallback(|| async { problem::ApiError::not_found("no such route") })
        // A problem+json 405 like every other refusal, rather than axum's empty one; axum still
        // adds the `Allow` header.
        .method_not_allowed_fallback(|| async { problem::ApiError::method_not_allowed() })
        .layer(metrics::TrackLayer::new(state.clone()))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then drains in-flight requests; with the default
/// [`server::ConnectionLimits`] (`server::serve_router` takes others).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    server::serve_router(
        listener,
        router(state),
        server::ConnectionLimits::default(),
        shutdown,
    )
    .await
}
