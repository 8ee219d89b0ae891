//! `GET /metrics` in the Prometheus text format: requests and their latency by route, events
//! stored, projection lag, items and queue depth by queue.
//!
//! Written by hand rather than with an exporter crate: the text format is a few lines, the
//! figures are few, and the exporter crates bring a global registry or an HTTP server of their
//! own that this server does not need.

use super::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Instant;
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

/// Request figures, by (method, route, status). A std Mutex: held for one map update.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), RouteFigures>>,
}

impl Metrics {
    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut requests = self.requests.lock().expect("metrics lock");
        // A scan of the few series there are, so that a request allocates no key; a new series
        // is inserted once.
        let known = requests
            .iter_mut()
            .find(|((known_method, known_route, known_status), _)| {
                *known_status == status && known_route == route && known_method == method
            });
        let figures = match known {
            Some((_, figures)) => figures,
            None => requests
                .entry((method.to_owned(), route.to_owned(), status))
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
        let method = request.method().clone();
        let route = request.extensions().get::<MatchedPath>().cloned();
        let span = tracing::info_span!("request", method = %method, path = %request.uri().path());
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
        method: Method,
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
        let this = self.project();
        let _entered = this.span.enter();
        let response = match this.inner.poll(context) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Ready(Ok(response)) => response,
        };
        let seconds = this.started.elapsed().as_secs_f64();
        let status = response.status().as_u16();
        tracing::debug!(status, latency_ms = seconds * 1e3, "answered");
        this.state.metrics.observe(
            this.method.as_str(),
            this.route.as_ref().map_or("unmatched", MatchedPath::as_str),
            status,
            seconds,
        );
        Poll::Ready(Ok(response))
    }
}

/// `GET /metrics`.
pub async fn render(State(state): State<AppState>) -> Response {
    let mut out = String::with_capacity(4096);
    let head = state.log.head();
    let (applied, items, depths) = {
        let models = state.projector.read();
        (
            models.applied,
            models.board.len(),
            models.board.depth_by_queue(),
        )
    };
    super::health::render_metrics(&state, &mut out);
    let _ = writeln!(out, "# HELP ledger_events_total Events stored in the log.");
    let _ = writeln!(out, "# TYPE ledger_events_total counter");
    let _ = writeln!(out, "ledger_events_total {head}");
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
    let _ = writeln!(
        out,
        "ledger_projection_lag_events {}",
        head.saturating_sub(applied)
    );
    let _ = writeln!(out, "# HELP ledger_items Review items, in any state.");
    let _ = writeln!(out, "# TYPE ledger_items gauge");
    let _ = writeln!(out, "ledger_items {items}");
    let _ = writeln!(
        out,
        "# HELP ledger_queue_depth Open items (pending or claimed) by queue."
    );
    let _ = writeln!(out, "# TYPE ledger_queue_depth gauge");
    for (queue, depth) in depths {
        let _ = writeln!(
            out,
            "ledger_queue_depth{{queue=\"{}\"}} {depth}",
            escape(&queue)
        );
    }
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
