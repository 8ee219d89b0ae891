//! `GET /v1/events`: the log as Server-Sent Events, for integrations: every event after a
//! position, then each new one as it is acknowledged; resumable with `Last-Event-ID`.

use super::AppState;
use super::auth::Caller;
use super::problem::{ApiError, ApiQuery};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use projections::principal::Role;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    /// Send the events after this position (all of them when absent).
    after: Option<u64>,
}

/// Each SSE event: `id` is the position (so `Last-Event-ID` resumes after it), `event` the type,
/// `data` the event as JSON (with its hashes).
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<FeedQuery>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Auditor, Role::Admin], "read the whole log")?;
    let last_event_id = headers
        .get("last-event-id")
        .map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be a log position"))
        })
        .transpose()?;
    let from = match last_event_id.or(query.after) {
        Some(after) => after + 1,
        None => 0,
    };
    let subscription = state.log.subscribe(from);
    let stream = futures_util::stream::unfold(subscription, |mut subscription| async move {
        match subscription.next().await {
            Ok(event) => {
                let sse = Event::default()
                    .id(event.position.to_string())
                    .event(event.event_type.clone())
                    .json_data(&event)
                    .map_err(|error| {
                        tracing::error!(%error, "could not encode an event for the feed");
                        error
                    });
                Some((sse, subscription))
            }
            Err(_) => None,
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
