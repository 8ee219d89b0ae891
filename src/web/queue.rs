//! The queue page: the projected queue with its filters, in the API's order, with countdowns,
//! keyboard control, and live updates from a feed that carries only the reviewer's own queues.

use super::render::{countdown, time};
use super::{Nav, SignedIn, api_error_page, html_response, layout};
use crate::http::AppState;
use crate::http::feed::queue_entries;
use crate::http::problem::ApiError;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use projections::board::{QueueEntry, QueueQuery, QueueStatus};
use projections::principal::Role;
use serde::Deserialize;

/// The page's filters, as its form sends them (blank means any).
#[derive(Debug, Default, Deserialize, Clone)]
pub struct Filters {
    queue: Option<String>,
    kind: Option<String>,
    status: Option<String>,
    assignee: Option<String>,
    model: Option<String>,
    /// A message to show once (after a decision the page redirected back here).
    done: Option<String>,
}

fn blank_none(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
}

const STATUSES: [(&str, &str); 6] = [
    ("", "open (pending or claimed)"),
    ("pending", "pending"),
    ("claimed", "claimed"),
    ("changes_requested", "changes requested"),
    ("decided", "decided"),
    ("withdrawn", "withdrawn"),
];

/// The queue query the filters ask for, as this caller may ask it: a reviewer only its own
/// queues (its first one when it names none), as the API has it.
fn query_of(session: &super::session::Session, filters: &Filters) -> Result<QueueQuery, ApiError> {
    let queue = crate::http::items::queue_for(&session.caller, blank_none(&filters.queue), true)?;
    let status = match blank_none(&filters.status) {
        None => None,
        Some(text) => Some(
            serde_json::from_value::<QueueStatus>(serde_json::Value::String(text.clone()))
                .map_err(|_| ApiError::bad_request(format!("no status {text:?}")))?,
        ),
    };
    Ok(QueueQuery {
        queue,
        status,
        assignee: blank_none(&filters.assignee),
        kind: blank_none(&filters.kind),
        model: blank_none(&filters.model),
        limit: 200,
        cursor: None,
    })
}

/// The rows of the queue (also the fragment the live updates fetch).
fn rows_markup(entries: &[QueueEntry], now: chrono::DateTime<chrono::Utc>, me: &str) -> Markup {
    html! {
        @if entries.is_empty() {
            tr.empty { td colspan="9" { "Nothing here: the queue is empty for these filters." } }
        }
        @for entry in entries {
            tr data-id=(entry.id) data-status=(entry.status.as_str()) data-hash=(entry.output_hash) {
                td {
                    a.item-link href={ "/ui/items/" (entry.id) } {
                        (entry.kind) " " span.muted.id { (entry.id.to_string()[28..]) }
                    }
                }
                td { (entry.queue) }
                td { (entry.model.name) " " span.muted { (entry.model.version) } }
                td.num {
                    @match entry.confidence {
                        Some(confidence) => (format!("{:.0}%", confidence * 100.0)),
                        None => span.muted { "–" },
                    }
                }
                td { span class={ "risk risk-" (entry.risk.as_str()) } { (entry.risk.as_str()) } }
                td.num { (entry.priority) }
                td {
                    span.status { (entry.status.as_str().replace('_', " ")) }
                    @if let Some(holder) = &entry.claimed_by {
                        " by " @if holder.as_str() == me { strong { "you" } } @else { (holder) }
                    }
                    @if entry.required_approvals > 1 {
                        " " span.muted { (entry.approvals) "/" (entry.required_approvals) " approvals" }
                    }
                }
                td { (countdown(entry.due_at, now)) }
                td { (time(entry.submitted_at)) }
            }
        }
    }
}

/// `GET /ui/queue`.
pub async fn page(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    Query(filters): Query<Filters>,
) -> Response {
    if session.caller.role() == Role::Agent || session.caller.role() == Role::Analyst {
        return agent_or_analyst_page(&session);
    }
    let query = match query_of(&session, &filters) {
        Ok(query) => query,
        Err(error) => return api_error_page(Some(&session), &error),
    };
    if let Err(error) = state.caught_up().await {
        return api_error_page(Some(&session), &ApiError::from(error));
    }
    let entries = queue_entries(&state, &query);
    let now = state.clock.now();
    let caller = &session.caller;
    let queues: Vec<String> = if caller.role() == Role::Reviewer {
        caller.0.queues.clone()
    } else {
        let models = state.projector.read();
        models.board.depth_by_queue().into_keys().collect()
    };
    let live_query = query.queue.clone().unwrap_or_default();
    let content = html! {
        @if let Some(done) = blank_none(&filters.done) {
            p.notice role="status" { (done) }
        }
        form.filters method="get" action="/ui/queue" aria-label="Filters" {
            div {
                label for="f-queue" { "Queue" }
                select #f-queue name="queue" {
                    @if caller.role() != Role::Reviewer {
                        option value="" selected[query.queue.is_none()] { "all queues" }
                    }
                    @for name in &queues {
                        option value=(name) selected[query.queue.as_deref() == Some(name.as_str())] { (name) }
                    }
                }
            }
            div {
                label for="f-kind" { "Kind" }
                input #f-kind name="kind" value=(query.kind.clone().unwrap_or_default());
            }
            div {
                label for="f-status" { "Status" }
                select #f-status name="status" {
                    @for (value, label) in STATUSES {
                        option value=(value) selected[blank_none(&filters.status).as_deref().unwrap_or("") == value] { (label) }
                    }
                }
            }
            div {
                label for="f-assignee" { "Assignee" }
                input #f-assignee name="assignee" value=(query.assignee.clone().unwrap_or_default());
            }
            div {
                label for="f-model" { "Model" }
                input #f-model name="model" value=(query.model.clone().unwrap_or_default());
            }
            button type="submit" { "Filter" }
        }
        p.hint { "Keys: " kbd { "j" } "/" kbd { "k" } " move, " kbd { "c" } " claim, " kbd { "a" } " approve, "
            kbd { "e" } " edit, " kbd { "r" } " reject, " kbd { "x" } " request changes, " kbd { "?" } " help." }
        p #live-status.visually-hidden role="status" aria-live="polite" {}
        div.table-wrap tabindex="0" role="region" aria-label="Table (scrolls sideways on small screens)" {
            table #queue data-live=(live_query) data-me=(caller.name()) data-may-decide=(caller.role() == Role::Reviewer) {
                caption.visually-hidden { "Items in the queue, most urgent first" }
                thead {
                    tr {
                        th scope="col" { "Item" }
                        th scope="col" { "Queue" }
                        th scope="col" { "Model" }
                        th scope="col" { "Confidence" }
                        th scope="col" { "Risk" }
                        th scope="col" { "Priority" }
                        th scope="col" { "Status" }
                        th scope="col" { "Due" }
                        th scope="col" { "Submitted" }
                    }
                }
                tbody #queue-rows { (rows_markup(&entries, now, caller.name())) }
            }
        }
        @if caller.role() == Role::Reviewer {
            // The forms the keys submit (their action is set to the selected item's).
            form #key-form method="post" hidden {
                input type="hidden" name="csrf" value=(session.csrf);
                input type="hidden" name="return" value="queue";
                input type="hidden" name="seen_output_hash";
            }
            dialog #reason-dialog aria-labelledby="reason-title" {
                form #reason-form method="post" {
                    h2 #reason-title { "Reject" }
                    input type="hidden" name="csrf" value=(session.csrf);
                    input type="hidden" name="return" value="queue";
                    input type="hidden" name="seen_output_hash";
                    label #reason-label for="reason-text" { "Reason" }
                    textarea #reason-text name="reason" rows="3" required {}
                    div.actions {
                        button type="submit" { "Send" }
                        button #reason-cancel type="button" { "Cancel" }
                    }
                }
            }
        }
    };
    html_response(
        StatusCode::OK,
        layout(Some(&session), "Queue", Nav::Queue, content),
    )
}

/// Agents and analysts have no queue: say where they go instead.
fn agent_or_analyst_page(session: &super::session::Session) -> Response {
    let content = html! {
        @if session.caller.role() == Role::Agent {
            p { "Agents submit items and read their decisions through the JSON API (" code { "/v1" } ", described at " a href="/openapi.json" { "/openapi.json" } "). An item of yours opens at " code { "/ui/items/<id>" } "." }
        } @else {
            p { "Analysts read the " a href="/ui/analytics" { "analytics" } "." }
        }
    };
    html_response(
        StatusCode::OK,
        layout(Some(session), "Nothing to review", Nav::Queue, content),
    )
}

/// `GET /ui/queue/rows`: the table's rows for the same filters (what live updates fetch).
pub async fn rows(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    Query(filters): Query<Filters>,
) -> Response {
    let query = match query_of(&session, &filters) {
        Ok(query) => query,
        Err(error) => return error.into_response(),
    };
    if let Err(error) = state.caught_up().await {
        return ApiError::from(error).into_response();
    }
    html_response(
        StatusCode::OK,
        rows_markup(
            &queue_entries(&state, &query),
            state.clock.now(),
            session.caller.name(),
        ),
    )
}

#[derive(Debug, Deserialize)]
pub struct LiveParams {
    queue: Option<String>,
}

/// `GET /ui/live?queue=…`: the queue's changes (`http::feed::queue_changes`, as `GET
/// /v1/queue/events` sends them) for the page's session.
pub async fn live(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    Query(params): Query<LiveParams>,
) -> Response {
    let filters = Filters {
        queue: params.queue,
        ..Filters::default()
    };
    let query = match query_of(&session, &filters) {
        Ok(query) => query,
        Err(error) => return error.into_response(),
    };
    crate::http::feed::queue_changes(state, session.caller.clone(), query).into_response()
}
