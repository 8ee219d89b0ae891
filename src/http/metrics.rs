//! `GET /metrics` in the Prometheus text format: requests and their latency by route, events
//! stored, projection lag, items and queue depth by queue, handler panics; and the layer that
//! times and counts requests and answers a handler's panic with a 500.
//!
//! Written by hand rather than with an exporter crate: the text format is a few lines, the
//! figures are few, and the exporter crates bring a global registry or an HTTP server of their
//! own that this server does not need.
//!
//! The number of series is bounded whatever clients send: methods are labelled from a closed
//! set (the seven methods the API could use, else `other`), routes by their pattern (else
//! `unmatched`), and queues (named by agents) by the [`QUEUE_SERIES`] deepest, the rest summed.
//! Reading `/metrics` takes an admin's or auditor's token, or the metrics token, unless the
//! operator opened it ([`MetricsAccess`]; ADR 0005).

use super::AppState;
use super::auth::Caller;
use super::problem::ApiError;
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use projections::principal::Role;
use sha2::{Digest, Sha256};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;
use subtle::ConstantTimeEq;
use tower_layer::Layer;
use tower_service::Service;

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default)]
struct RouteFigures {
    count: u64,
    seconds_sum: f64,
    /// Observations at or under each bound of `BUCKETS` (not cumulative; summed on render).
    buckets: [u64; BUCKETS.len()],
}

/// Request figures, by (method label, route pattern, status). A std Mutex: held for one map update.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, String, u16), RouteFigures>>,
    /// Handlers that panicked (each answered 500).
    panics: AtomicU64,
}

/// The label of a request's method: one of a closed set, so that clients, who may send any token
/// as a method, cannot add series (20,000 random methods once made 20,000 series).
pub fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

impl Metrics {
    fn observe(&self, method: &'static str, route: &str, status: u16, seconds: f64) {
        let mut requests = self.requests.lock().expect("metrics lock");
        // A scan of the few series there are, so that a request allocates no key; a new series
        // is inserted once.
        let known = requests
            .iter_mut()
            .find(|((known_method, known_route, known_status), _)| {
                *known_status == status && known_route == route && *known_method == method
            });
        let figures = match known {
            Some((_, figures)) => figures,
            None => requests
                .entry((method, route.to_owned(), status))
                .or_default(),
        };
        figures.count += 1;
        figures.seconds_sum += seconds;
        if let Some(bucket) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            figures.buckets[bucket] += 1;
        }
    }
}

/// The layer that times every request and counts it under its route pattern (not its raw path,
/// so that item ids do not explode the number of series); runs the request in a `request` span
/// (method, path) and logs its status and latency at debug level. Put around each route
/// (`Router::layer`), where the matched route is known.
///
/// A handler that panics is answered here: a 500 problem (its detail opaque), counted in
/// `ledger_http_panics_total`, logged once with the panic's message, place and route, where the
/// panic would otherwise unwind into hyper and drop the connection without an answer. The
/// normal path pays for it with two thread-local writes per poll (`catch_unwind` itself costs
/// nothing until something unwinds).
///
/// A tower layer of its own rather than `axum::middleware::from_fn`, which clones the inner
/// service and boxes a future for every request (~1,300 instructions and two allocations per
/// request, callgrind). It replaced tower-http's `TraceLayer` before that, which did the same
/// logging with a layer of its own around every request and response body (~2,300).
#[derive(Debug, Clone)]
pub struct TrackLayer {
    state: AppState,
}

impl TrackLayer {
    pub fn new(state: AppState) -> TrackLayer {
        install_panic_hook();
        TrackLayer { state }
    }
}

impl<S> Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            state: self.state.clone(),
        }
    }
}

/// The service of [`TrackLayer`].
#[derive(Debug, Clone)]
pub struct Track<S> {
    inner: S,
    state: AppState,
}

impl<S> Service<Request> for Track<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TrackFuture<S::Future>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        let method = method_label(request.method());
        let route = request.extensions().get::<MatchedPath>().cloned();
        let span = tracing::info_span!("request", method = %request.method(), path = %request.uri().path());
        let inner = span.in_scope(|| self.inner.call(request));
        TrackFuture {
            inner,
            span,
            started,
            method,
            route,
            state: self.state.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Track`]: polls the route inside the request span, then records.
    pub struct TrackFuture<F> {
        #[pin]
        inner: F,
        span: tracing::Span,
        started: Instant,
        method: &'static str,
        route: Option<MatchedPath>,
        state: AppState,
    }
}

impl<F, E> Future for TrackFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        let route = this.route.as_ref().map_or("unmatched", MatchedPath::as_str);
        let polled = IN_REQUEST.with(|in_request| {
            in_request.set(true);
            let polled =
                std::panic::catch_unwind(AssertUnwindSafe(|| this.inner.as_mut().poll(context)));
            in_request.set(false);
            polled
        });
        let response = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(Err(error))) => return Poll::Ready(Err(error)),
            Ok(Poll::Ready(Ok(response))) => response,
            Err(panic) => {
                this.state.metrics.panics.fetch_add(1, Ordering::Relaxed);
                let location = PANIC_LOCATION.with(RefCell::take);
                tracing::error!(
                    route,
                    panic = panic_message(panic.as_ref()),
                    location = location.as_deref().unwrap_or("unknown"),
                    "a request handler panicked; answered 500"
                );
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal-error",
                    "the server failed to handle this request; it was logged",
                )
                .into_response()
            }
        };
        let seconds = this.started.elapsed().as_secs_f64();
        let status = response.status().as_u16();
        tracing::debug!(status, latency_ms = seconds * 1e3, "answered");
        this.state
            .metrics
            .observe(this.method, route, status, seconds);
        Poll::Ready(Ok(response))
    }
}

thread_local! {
    /// Set while a request's handler is polled, so that the panic hook leaves the logging of its
    /// panics to [`TrackFuture`] (one line, with the route) instead of printing them as well.
    static IN_REQUEST: Cell<bool> = const { Cell::new(false) };
    /// Where a request's handler panicked, from the panic hook to [`TrackFuture`]'s log line.
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once per process) a panic hook that keeps quiet about panics in request handlers,
/// which [`TrackFuture`] logs with their route, and hands every other panic to the hook that was
/// installed before (the standard one prints it).
pub fn install_panic_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_REQUEST.with(Cell::get) {
                let location = info.location().map(ToString::to_string);
                PANIC_LOCATION.with(|slot| *slot.borrow_mut() = location);
            } else {
                previous(info);
            }
        }));
    });
}

/// A panic's message: the text given to `panic!`, when it was text.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    if let Some(text) = panic.downcast_ref::<&'static str>() {
        text
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text
    } else {
        "(a panic without a message)"
    }
}

/// Who may read `/metrics`: by default admins and auditors (their bearer tokens), plus whoever
/// holds the metrics token if one is set (what Prometheus sends as its `bearer_token`); or anyone,
/// when the operator opened it (`serve --metrics-public`).
#[derive(Clone, Default)]
pub struct MetricsAccess {
    public: bool,
    /// The SHA-256 of the metrics token: compared in constant time with the presented token's.
    token_sha256: Option<[u8; 32]>,
}

impl MetricsAccess {
    /// Admins and auditors only (the default).
    pub fn principals_only() -> MetricsAccess {
        MetricsAccess::default()
    }

    /// Anyone, without a token.
    pub fn public() -> MetricsAccess {
        MetricsAccess {
            public: true,
            token_sha256: None,
        }
    }

    /// Also whoever sends `token` as its bearer token.
    pub fn with_token(self, token: &str) -> MetricsAccess {
        MetricsAccess {
            token_sha256: Some(Sha256::digest(token.as_bytes()).into()),
            ..self
        }
    }

    pub fn is_public(&self) -> bool {
        self.public
    }

    fn admits_token(&self, token: &str) -> bool {
        self.token_sha256.is_some_and(|expected| {
            let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            bool::from(presented.ct_eq(&expected))
        })
    }
}

impl std::fmt::Debug for MetricsAccess {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("MetricsAccess")
            .field("public", &self.public)
            .field("token", &self.token_sha256.is_some())
            .finish()
    }
}

/// Refuses a request for `/metrics` that [`MetricsAccess`] does not admit: 401 without a token or
/// with one nobody holds, 403 for a principal other than an admin or auditor.
async fn check_access(state: &AppState, request: Request) -> Result<(), ApiError> {
    let access = &state.metrics_access;
    if access.public {
        return Ok(());
    }
    let (mut parts, _body) = request.into_parts();
    let Some(authorization) = parts.headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "send Authorization: Bearer <token>, with an admin's or an auditor's token or the metrics token",
        ));
    };
    let presented = authorization
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    if presented.is_some_and(|token| access.admits_token(token)) {
        return Ok(());
    }
    let caller = Caller::from_request_parts(&mut parts, state).await?;
    caller.require(&[Role::Admin, Role::Auditor], "read the metrics")
}

/// The most queues with a series of their own in `ledger_queue_depth`: the deepest (ties by
/// name). Queues are named by agents, so their number is not the operator's to bound; the rest
/// are summed under `queue="other"`, together with a queue that is itself named `other`.
pub const QUEUE_SERIES: usize = 100;

/// The queue depths as series: at most [`QUEUE_SERIES`] named queues, by name, and the sum of
/// the rest (`None` when there is no rest and no queue named `other`).
fn queue_series(depths: BTreeMap<String, usize>) -> (Vec<(String, usize)>, Option<usize>) {
    let mut other = None;
    let mut named: Vec<(String, usize)> = Vec::with_capacity(depths.len());
    for (queue, depth) in depths {
        if queue == "other" {
            other = Some(depth);
        } else {
            named.push((queue, depth));
        }
    }
    if named.len() > QUEUE_SERIES {
        // Deepest first; the sort is stable, so equal depths stay in name order.
        named.sort_by(|(_, left), (_, right)| right.cmp(left));
        let rest: usize = named.drain(QUEUE_SERIES..).map(|(_, depth)| depth).sum();
        other = Some(other.unwrap_or(0) + rest);
        named.sort_by(|(left, _), (right, _)| left.cmp(right));
    }
    (named, other)
}

/// `GET /metrics`.
pub async fn render(State(state): State<AppState>, request: Request) -> Response {
    if let Err(refused) = check_access(&state, request).await {
        return refused.into_response();
    }
    let mut out = String::with_capacity(4096);
    // Left out while the store does not answer (`/healthz` says so).
    let head = state.log.head().await.ok();
    let (applied, items, depths, audit) = {
        let models = state.projector.read();
        (
            models.applied,
            models.board.len(),
            models.board.depth_by_queue(),
            (
                models.audit.checkpoints().len(),
                models
                    .audit
                    .latest()
                    .map_or(0, |latest| latest.checkpoint.tree_size),
                models.audit.uncovered(),
            ),
        )
    };
    super::health::render_metrics(&state, &mut out);
    let _ = writeln!(out, "# HELP ledger_events_total Events stored in the log.");
    let _ = writeln!(out, "# TYPE ledger_events_total counter");
    if let Some(head) = head {
        let _ = writeln!(out, "ledger_events_total {head}");
    }
    let _ = writeln!(
        out,
        "# HELP ledger_projection_applied_total Events applied to the read models."
    );
    let _ = writeln!(out, "# TYPE ledger_projection_applied_total counter");
    let _ = writeln!(out, "ledger_projection_applied_total {applied}");
    let _ = writeln!(
        out,
        "# HELP ledger_projection_lag_events Events stored but not yet applied to the read models."
    );
    let _ = writeln!(out, "# TYPE ledger_projection_lag_events gauge");
    if let Some(head) = head {
        let _ = writeln!(
            out,
            "ledger_projection_lag_events {}",
            head.saturating_sub(applied)
        );
    }
    let (checkpoints, checkpoint_size, uncovered) = audit;
    for (name, kind, help, value) in [
        (
            "ledger_checkpoints_total",
            "counter",
            "Signed checkpoints stored in the log.",
            checkpoints as u64,
        ),
        (
            "ledger_checkpoint_tree_size",
            "gauge",
            "The tree size (events covered) of the latest checkpoint.",
            checkpoint_size,
        ),
        (
            "ledger_checkpoint_uncovered_events",
            "gauge",
            "Events applied that the latest checkpoint does not cover yet (0 when only checkpoints are newer).",
            uncovered,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    }
    let _ = writeln!(out, "# HELP ledger_items Review items, in any state.");
    let _ = writeln!(out, "# TYPE ledger_items gauge");
    let _ = writeln!(out, "ledger_items {items}");
    let _ = writeln!(
        out,
        "# HELP ledger_queue_depth Open items (pending or claimed) by queue."
    );
    let _ = writeln!(out, "# TYPE ledger_queue_depth gauge");
    let (named, other) = queue_series(depths);
    for (queue, depth) in named {
        let _ = writeln!(
            out,
            "ledger_queue_depth{{queue=\"{}\"}} {depth}",
            escape(&queue)
        );
    }
    if let Some(depth) = other {
        let _ = writeln!(out, "ledger_queue_depth{{queue=\"other\"}} {depth}");
    }
    let _ = writeln!(
        out,
        "# HELP ledger_http_panics_total Request handlers that panicked (each answered 500)."
    );
    let _ = writeln!(out, "# TYPE ledger_http_panics_total counter");
    let _ = writeln!(
        out,
        "ledger_http_panics_total {}",
        state.metrics.panics.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP ledger_http_requests_total HTTP requests answered."
    );
    let _ = writeln!(out, "# TYPE ledger_http_requests_total counter");
    let requests = state.metrics.requests.lock().expect("metrics lock");
    for ((method, route, status), figures) in requests.iter() {
        let _ = writeln!(
            out,
            "ledger_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {}",
            escape(route),
            figures.count
        );
    }
    let _ = writeln!(
        out,
        "# HELP ledger_http_request_duration_seconds Time to answer HTTP requests."
    );
    let _ = writeln!(out, "# TYPE ledger_http_request_duration_seconds histogram");
    for ((method, route, status), figures) in requests.iter() {
        let labels = format!(
            "method=\"{method}\",route=\"{}\",status=\"{status}\"",
            escape(route)
        );
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(figures.buckets) {
            cumulative += count;
            let _ = writeln!(
                out,
                "ledger_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "ledger_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
            figures.count
        );
        let _ = writeln!(
            out,
            "ledger_http_request_duration_seconds_sum{{{labels}}} {}",
            figures.seconds_sum
        );
        let _ = writeln!(
            out,
            "ledger_http_request_duration_seconds_count{{{labels}}} {}",
            figures.count
        );
    }
    drop(requests);
    let mut response = out.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// A label value with `\`, `"` and newlines escaped, as the text format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
