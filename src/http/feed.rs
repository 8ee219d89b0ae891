//! `GET /v1/events`: the log as Server-Sent Events, for integrations: every event after a
//! position, then each new one as it is acknowledged; resumable with `Last-Event-ID`.
//!
//! Each feed is a producer task and the response body. The producer follows the log and puts
//! encoded events in the feed's queue; the body hands them to hyper as the client takes them.
//! The queue holds at most `FeedSettings::buffer_bytes` of encoded events (a semaphore of bytes),
//! so a client that reads slowly paces its producer and costs that much memory at most, however
//! far behind it is. A feed whose queue stays full while the log grows by that many bytes more
//! (its client is not reading) is cut off with a final `lagged` event naming the last position
//! it was sent; it resumes from the log with `Last-Event-ID`. A feed whose principal is revoked
//! ends with a final `revoked` event, and sends nothing appended after the revocation.

use super::AppState;
use super::auth::Caller;
use super::problem::{ApiError, ApiQuery};
use crate::log::Subscription;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use projections::board::QueueQuery;
use projections::event::RecordedEvent;
use projections::principal::Role;
use serde::Deserialize;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::Instrument;

/// The default bound of a feed's queue, in bytes of encoded events.
pub const DEFAULT_FEED_BUFFER_BYTES: u32 = 4 * 1024 * 1024;

/// The feeds' bound and what became of them, shared by every feed of a server.
#[derive(Debug)]
pub struct FeedSettings {
    /// A feed's queue holds at most this many bytes of encoded events (one event larger than
    /// this is sent alone).
    pub buffer_bytes: u32,
    /// Feeds cut off because their client fell behind.
    pub lagged: AtomicU64,
    /// Feeds ended because their principal was revoked.
    pub revoked: AtomicU64,
}

impl Default for FeedSettings {
    fn default() -> Self {
        FeedSettings::with_buffer_bytes(DEFAULT_FEED_BUFFER_BYTES)
    }
}

impl FeedSettings {
    pub fn with_buffer_bytes(buffer_bytes: u32) -> FeedSettings {
        FeedSettings {
            buffer_bytes: buffer_bytes.max(1),
            lagged: AtomicU64::new(0),
            revoked: AtomicU64::new(0),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    /// Send the events after this position (all of them when absent).
    after: Option<u64>,
}

/// What the producer hands the response body.
enum Frame {
    /// An event, with the room it takes in the queue (freed once the body hands it on).
    Event(Event, OwnedSemaphorePermit),
    /// The feed's last message; the body ends after it.
    Last(Event),
}

/// Each SSE event: `id` is the position (so `Last-Event-ID` resumes after it), `event` the type,
/// `data` the event as JSON (with its hashes). A feed cut off ends with `event: lagged` or
/// `event: revoked`, whose data says why and names `last_event_id`, the last position sent.
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
        // No event can be at u64::MAX, so none was sent there to resume after.
        Some(after) => after.checked_add(1).ok_or_else(|| {
            ApiError::bad_request(format!(
                "no log position follows {after}: Last-Event-ID and after= name a position the feed sent"
            ))
        })?,
        None => 0,
    };
    let (frames, receiver) = mpsc::unbounded_channel();
    let span = tracing::info_span!("feed", principal = %caller.name(), from);
    tokio::spawn(produce(state, caller, from, frames).instrument(span));
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        match receiver.recv().await? {
            // The room is freed as the event goes to hyper, whose own buffer is bounded.
            Frame::Event(event, _room) => {
                Some((Ok::<_, std::convert::Infallible>(event), receiver))
            }
            Frame::Last(event) => {
                receiver.close();
                Some((Ok(event), receiver))
            }
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Why a feed ends before its client leaves.
enum Ending {
    Lagged,
    Revoked,
}

/// Follows the log from `from` into `frames`, until the client leaves or the feed is cut off.
async fn produce(state: AppState, caller: Caller, from: u64, frames: mpsc::UnboundedSender<Frame>) {
    let settings = &state.feed;
    let room = Arc::new(Semaphore::new(settings.buffer_bytes as usize));
    let mut subscription = state.log.subscribe(from);
    let mut last_sent: Option<u64> = from.checked_sub(1);
    // Every position below this was checked to come before any revocation of the caller.
    let mut authorized_before = 0u64;
    let revoked = caller.revoked(&state);
    tokio::pin!(revoked);
    let ending = loop {
        let event = tokio::select! {
            next = subscription.next() => match next {
                Ok(event) => event,
                Err(error) => {
                    tracing::debug!(%error, "the feed's subscription ended");
                    return;
                }
            },
            () = &mut revoked => break Ending::Revoked,
            () = frames.closed() => return,
        };
        // Nothing appended after a revocation of the caller is sent: the read models are brought
        // up to this event before asking whether the caller's token still works.
        if event.position >= authorized_before {
            if state.projector.wait_for(event.position).await.is_err() {
                tracing::error!("the feed ends: the read models stopped following the log");
                return;
            }
            authorized_before = state.projector.applied();
            if !caller.still_authenticates(&state) {
                break Ending::Revoked;
            }
        }
        let Some((frame, size)) = encode(&event) else {
            return;
        };
        let permits = size.min(settings.buffer_bytes as usize) as u32;
        let permit = match room.clone().try_acquire_many_owned(permits) {
            Ok(permit) => permit,
            Err(_) => match wait_for_room(&state, &room, permits, &frames, &mut revoked).await {
                Waited::Room(permit) => permit,
                Waited::Ended(ending) => break ending,
                Waited::ClientLeft => return,
            },
        };
        if frames.send(Frame::Event(frame, permit)).is_err() {
            return;
        }
        last_sent = Some(event.position);
    };
    let (name, reason, counter) = match ending {
        Ending::Lagged => (
            "lagged",
            format!(
                "this client fell behind the log by more than {} bytes; reconnect with Last-Event-ID to resume after last_event_id",
                settings.buffer_bytes
            ),
            &settings.lagged,
        ),
        Ending::Revoked => (
            "revoked",
            format!("the principal {} was revoked", caller.name()),
            &settings.revoked,
        ),
    };
    counter.fetch_add(1, Ordering::Relaxed);
    tracing::info!(ending = name, last_sent, "the feed was cut off");
    let data = serde_json::json!({"reason": reason, "last_event_id": last_sent});
    let _ = frames.send(Frame::Last(
        Event::default().event(name).data(data.to_string()),
    ));
}

enum Waited {
    Room(OwnedSemaphorePermit),
    Ended(Ending),
    ClientLeft,
}

/// Waits for the queue to have `permits` bytes free. Meanwhile it counts the bytes the log grows
/// by (events appended from now on, encoded as the feed would send them): a client that takes
/// nothing while the log grows by the queue's bound is not reading, and is cut off.
async fn wait_for_room(
    state: &AppState,
    room: &Arc<Semaphore>,
    permits: u32,
    frames: &mpsc::UnboundedSender<Frame>,
    revoked: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Waited {
    let bound = state.feed.buffer_bytes as usize;
    // From what the read models hold: about the head, without asking the store.
    let mut appended: Box<dyn Subscription> = state.log.subscribe(state.projector.applied());
    let mut grown = 0usize;
    loop {
        tokio::select! {
            permit = room.clone().acquire_many_owned(permits) => {
                return Waited::Room(permit.expect("the feed's semaphore is never closed"));
            }
            next = appended.next() => match next {
                Ok(event) => {
                    grown += encode(&event).map_or(0, |(_, size)| size);
                    if grown >= bound {
                        return Waited::Ended(Ending::Lagged);
                    }
                }
                // The log is closing: wait for room or the client, as the feed itself will end.
                Err(_) => appended = Box::new(Idle),
            },
            () = revoked.as_mut() => return Waited::Ended(Ending::Revoked),
            () = frames.closed() => return Waited::ClientLeft,
        }
    }
}

/// A subscription that never yields: stands in for one that ended.
struct Idle;

#[async_trait::async_trait]
impl Subscription for Idle {
    async fn next(&mut self) -> Result<RecordedEvent, crate::log::LogError> {
        std::future::pending().await
    }
}

/// The event as the feed sends it, and its size in bytes on the wire (near enough: the SSE
/// field names and line ends are counted, not escaping).
fn encode(event: &RecordedEvent) -> Option<(Event, usize)> {
    let json = match serde_json::to_string(event) {
        Ok(json) => json,
        Err(error) => {
            tracing::error!(%error, position = event.position, "could not encode an event for the feed");
            return None;
        }
    };
    let mut id = String::with_capacity(20);
    let _ = write!(id, "{}", event.position);
    let size = json.len() + id.len() + event.event_type.len() + "id: \nevent: \ndata: \n\n".len();
    Some((
        Event::default().id(id).event(&event.event_type).data(json),
        size,
    ))
}

/// The feeds' figures in the Prometheus text format (called by `metrics::render`).
pub fn render_metrics(state: &AppState, out: &mut String) {
    let _ = writeln!(
        out,
        "# HELP ledger_feed_cut_off_total Event feeds the server ended: lagged (the client fell behind), revoked (its principal was)."
    );
    let _ = writeln!(out, "# TYPE ledger_feed_cut_off_total counter");
    for (reason, counter) in [
        ("lagged", &state.feed.lagged),
        ("revoked", &state.feed.revoked),
    ] {
        let _ = writeln!(
            out,
            "ledger_feed_cut_off_total{{reason=\"{reason}\"}} {}",
            counter.load(Ordering::Relaxed)
        );
    }
}

/// `GET /v1/queue/events?queue=…`: the queue's changes as Server-Sent Events, for the principals
/// who may read the queue (a reviewer, only a queue it is granted).
pub async fn queue_events(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<QueueFeedQuery>,
) -> Result<Response, ApiError> {
    let queue = super::items::queue_for(&caller, params.queue, false)?;
    let query = QueueQuery {
        queue,
        limit: 200,
        ..QueueQuery::default()
    };
    Ok(queue_changes(state, caller, query).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueFeedQuery {
    queue: Option<String>,
}

/// One `queue` event whenever the open items `query` lists change (arrive, are claimed,
/// decided, escalated away…), carrying only the count of open items and the log position: a
/// reviewer learns nothing of queues it is not granted. Looks at most four times a second,
/// however fast the log grows; ends when the caller's principal is revoked.
pub fn queue_changes(
    state: AppState,
    caller: Caller,
    query: QueueQuery,
) -> Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>> {
    Sse::new(changes_of(state, caller, query)).keep_alive(KeepAlive::default())
}

/// The first page of the queue `query` asks for, as of now (the web page's table, and what the
/// feed compares). A query without a cursor cannot be refused, so this never fails.
pub fn queue_entries(state: &AppState, query: &QueueQuery) -> Vec<projections::board::QueueEntry> {
    debug_assert!(query.cursor.is_none(), "a first page");
    state
        .projector
        .read()
        .board
        .queue(query, state.clock.now())
        .map(|page| page.items)
        .unwrap_or_default()
}

/// What a client of the live feed is told: the open items' ids, statuses and versions.
fn signature(state: &AppState, query: &QueueQuery) -> Vec<(uuid::Uuid, u64, &'static str)> {
    queue_entries(state, query)
        .into_iter()
        .map(|entry| (entry.id, entry.version, entry.status.as_str()))
        .collect()
}

fn changes_of(
    state: AppState,
    caller: Caller,
    query: QueueQuery,
) -> impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>> {
    let changes = state.projector.applied_changes();
    let last = signature(&state, &query);
    futures_util::stream::unfold(
        (state, caller, query, changes, last),
        |(state, caller, query, mut changes, mut last)| async move {
            loop {
                // At most four looks a second, however fast the log grows.
                tokio::time::sleep(Duration::from_millis(250)).await;
                if !caller.still_authenticates(&state) {
                    return None;
                }
                if changes.changed().await.is_err() {
                    return None;
                }
                let now = signature(&state, &query);
                if now != last {
                    let data = serde_json::json!({
                        "open": now.len(),
                        "position": state.projector.applied(),
                    });
                    last = now;
                    let event = Event::default().event("queue").data(data.to_string());
                    return Some((Ok(event), (state, caller, query, changes, last)));
                }
            }
        },
    )
}
