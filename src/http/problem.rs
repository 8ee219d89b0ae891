//! Errors as HTTP answers: `application/problem+json` (RFC 9457) with the right status, and a
//! JSON body extractor whose rejections have the same shape.
//!
//! Every error a handler can return becomes an `ApiError`; 5xx only for faults of the server
//! itself, whose cause is logged and hidden behind an opaque detail.

use crate::commands::CommandError;
use crate::log::LogError;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use projections::item::{DomainError, ErrorKind};
use serde::de::DeserializeOwned;

/// A problem to report to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// A short, stable, kebab-case name of the problem (the `type` is derived from it).
    pub problem: &'static str,
    pub title: String,
    pub detail: String,
    /// Extra members of the problem document (e.g. the current version on a conflict).
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// Extra members written as the JSON text they hold, after `extra`: an item, whose outputs
    /// a `Value` would not keep byte for byte.
    pub raw_extra: Vec<(&'static str, Box<serde_json::value::RawValue>)>,
}

impl ApiError {
    pub fn new(status: StatusCode, problem: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            problem,
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            detail: detail.into(),
            extra: serde_json::Map::new(),
            raw_extra: Vec::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// A member written as the JSON text `raw` holds.
    pub fn with_raw(mut self, key: &'static str, raw: Box<serde_json::value::RawValue>) -> Self {
        self.raw_extra.push((key, raw));
        self
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed-request", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    /// A method the path does not take; the router adds `Allow` with those it takes.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "this path does not take this method; Allow lists the methods it takes",
        )
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// A fault of the server: logged with its cause, answered without it.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "request failed on a server fault");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal-error",
            "the server failed to handle this request; it was logged",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::Map::new();
        body.insert(
            "type".into(),
            format!("https://ledger.example/problems/{}", self.problem).into(),
        );
        body.insert("title".into(), self.title.into());
        body.insert("status".into(), self.status.as_u16().into());
        body.insert("detail".into(), self.detail.into());
        body.insert("problem".into(), self.problem.into());
        // A refusal the same request may get past later (the log paused its writes): say when
        // to try again, as RFC 9110 §10.2.3 has it, so that clients and proxies back off.
        let retry_soon = self.extra.get("retryable") == Some(&serde_json::Value::Bool(true));
        body.extend(self.extra);
        let body = ProblemBody {
            members: body,
            raw_members: self.raw_extra,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if retry_soon {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// A problem document: its members, then those held as JSON text.
struct ProblemBody {
    members: serde_json::Map<String, serde_json::Value>,
    raw_members: Vec<(&'static str, Box<serde_json::value::RawValue>)>,
}

impl serde::Serialize for ProblemBody {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map =
            serializer.serialize_map(Some(self.members.len() + self.raw_members.len()))?;
        for (key, value) in &self.members {
            map.serialize_entry(key, value)?;
        }
        for (key, raw) in &self.raw_members {
            map.serialize_entry(key, raw)?;
        }
        map.end()
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        let status = match error.kind() {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::Invalid | ErrorKind::RuleBroken => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, "domain-rule", error.to_string()).with("rule", error.rule())
    }
}

/// A `callback_url` the callback policy refuses: 422, naming the rule (`loopback`, `private`, …).
impl From<crate::callback_policy::CallbackRefused> for ApiError {
    fn from(refusal: crate::callback_policy::CallbackRefused) -> Self {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "callback-url-refused",
            refusal.detail,
        )
        .with("rule", refusal.rule)
        .with("field", "callback_url")
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::Domain(error) => error.into(),
            CommandError::Conflict { current } => ApiError::new(
                StatusCode::CONFLICT,
                "version-conflict",
                "the item changed while this request was handled; read it again",
            )
            .with("current_version", current),
            CommandError::Log(error) => error.into(),
            error @ CommandError::Decoding { .. } => ApiError::internal(&error),
        }
    }
}

impl From<LogError> for ApiError {
    fn from(error: LogError) -> Self {
        match error {
            LogError::Conflict { current, .. } => ApiError::new(
                StatusCode::CONFLICT,
                "version-conflict",
                "the stream changed while this request was handled",
            )
            .with("current_version", current),
            LogError::InvalidAppend(reason) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-event", reason)
            }
            LogError::DuplicateEventId { id } => ApiError::new(
                StatusCode::CONFLICT,
                "duplicate-event",
                format!("event id {id} is stored already"),
            ),
            // The log's state is what `/healthz` reports; the OS error stays there and in the
            // server's log, the client learns whether retrying can help.
            LogError::WritesPaused(reason) => {
                tracing::warn!(%reason, "an append was refused while the log's writes are paused");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "log-writes-paused",
                    "the log refuses writes for now and nothing was written; retry later (GET /healthz says why)",
                )
                .with("retryable", true)
            }
            LogError::Poisoned(reason) => {
                tracing::error!(%reason, "an append was refused: the log is poisoned");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "log-poisoned",
                    "the log stopped accepting writes after an I/O failure and nothing was written; the server needs a restart (GET /healthz says why)",
                )
                .with("retryable", false)
            }
            // Never a 500: the store (a database restarting, a network cut) is expected back,
            // nothing was acknowledged, and the same request with the same ids is safe to retry.
            LogError::Unavailable(reason) => {
                tracing::warn!(%reason, "the store is unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store-unavailable",
                    "the store does not answer for now; nothing was acknowledged, retry later (GET /healthz says why)",
                )
                .with("retryable", true)
            }
            other => ApiError::internal(&other),
        }
    }
}

impl From<crate::projector::ProjectorError> for ApiError {
    fn from(error: crate::projector::ProjectorError) -> Self {
        use crate::projector::ProjectorError;
        match error {
            ProjectorError::Stopped => {
                tracing::error!(%error, "the read models stopped following the log");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "projections-stopped",
                    "the server's views stopped following the log; it needs a restart (any write of this request was stored)",
                )
            }
            ProjectorError::Behind => {
                tracing::warn!(%error, "the read models did not catch up in time");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "projections-behind",
                    "the server's views did not catch up with the store in time (any write of this request was stored); retry later",
                )
                .with("retryable", true)
            }
            ProjectorError::Log(error) => error.into(),
        }
    }
}

/// `axum::Json`, but a body that is not the expected JSON is a problem+json 4xx.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// `axum::extract::Path`, but a capture that does not decode (not UTF-8 once percent-decoded,
/// or not of the type asked for) is a problem+json 400 rather than axum's plain text.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(ApiError::bad_request(rejection.body_text())),
        }
    }
}

/// A request body as bytes, where an action's body is optional: an empty body (the usual claim
/// or approve) is taken as it is, without going through axum's body collection; a body too large
/// or cut short is a problem+json 4xx like the JSON extractor's.
#[derive(Debug, Clone, Default)]
pub struct BodyBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for BodyBytes {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::body::HttpBody;
        if request.body().size_hint().exact() == Some(0) {
            return Ok(BodyBytes(Bytes::new()));
        }
        Bytes::from_request(request, state)
            .await
            .map(BodyBytes)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    body_too_large()
                } else if body_timed_out(&rejection) {
                    body_timeout()
                } else {
                    ApiError::bad_request(rejection.body_text())
                }
            })
    }
}

/// The request's `If-Match` header, if it has one: taken alone, where axum's `HeaderMap`
/// extractor copies every header of the request.
#[derive(Debug, Clone, Default)]
pub struct IfMatch(pub Option<HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(IfMatch(parts.headers.get(header::IF_MATCH).cloned()))
    }
}

fn body_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
        "the request body is larger than the server accepts",
    )
}

/// Whether a body rejection came from the body timeout (`server::DeadlineBody`).
fn body_timed_out(rejection: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(rejection);
    while let Some(error) = cause {
        if error.is::<super::server::BodyTimedOut>() {
            return true;
        }
        cause = error.source();
    }
    false
}

fn body_timeout() -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "body-timeout",
        "the request body did not arrive within the server's body timeout",
    )
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    if body_timed_out(&rejection) {
        return body_timeout();
    }
    let status = rejection.status();
    let detail = rejection.body_text();
    match rejection {
        // Well-formed JSON of the wrong shape: wrong types, unknown or missing fields.
        JsonRejection::JsonDataError(_) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-body", detail)
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "the body must be JSON, with Content-Type: application/json",
        ),
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => body_too_large(),
        _ => ApiError::bad_request(detail),
    }
}

impl<T: serde::Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Query`, but a query string of the wrong shape is a problem+json 400.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| ApiQuery(value))
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
    }
}
