//! The item page: the AI's output rendered readably, its context, model, revisions, comments
//! and approvals so far; and the reviewer's actions as POSTed forms (claim, approve, edit with a
//! diff before it is sent, reject, request changes, escalate, comment). A refusal because
//! someone else was first, or the claim lapsed, shows what happened on the item's page.

use super::render::{countdown, diff, editable, json_tree, output, time};
use super::session::Session;
use super::{Nav, Posted, SignedIn, api_error_page, html_response, layout, url_encode};
use crate::http::AppState;
use crate::http::items::{act_on, visible_item};
use crate::http::problem::ApiError;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use projections::item::ItemState;
use projections::principal::Role;
use std::collections::HashMap;
use uuid::Uuid;

/// A notice above the item: what the last action did, or why it was refused.
enum Banner<'a> {
    None,
    Refused(&'a ApiError),
}

fn status_text(item: &ItemState, now: chrono::DateTime<chrono::Utc>) -> String {
    match projections::board::QueueStatus::of(item, now) {
        Some(status) => status.as_str().replace('_', " "),
        None => "not submitted".into(),
    }
}

/// What a person needs to know about the item's state when an action was refused.
fn what_happened(item: &ItemState, now: chrono::DateTime<chrono::Utc>, me: &str) -> Option<String> {
    if let Some(decision) = &item.decision {
        return Some(format!(
            "This item was already decided: {} by {} at {}.",
            decision.outcome.as_str().replace('_', " "),
            if decision.decided_by.is_empty() {
                "the ledger's policy".to_owned()
            } else {
                decision.decided_by.join(", ")
            },
            decision.decided_at.format("%Y-%m-%d %H:%M:%S UTC")
        ));
    }
    if let Some(withdrawal) = &item.withdrawal {
        return Some(format!(
            "The submitter withdrew this item at {}.",
            withdrawal.at.format("%Y-%m-%d %H:%M:%S UTC")
        ));
    }
    if let Some(claim) = item.live_claim(now)
        && claim.reviewer != me
    {
        return Some(format!(
            "{} holds the claim on this item until {}.",
            claim.reviewer,
            claim.expires_at.format("%H:%M:%S UTC")
        ));
    }
    None
}

fn render(
    state: &AppState,
    session: &Session,
    item: &ItemState,
    banner: Banner<'_>,
    status: StatusCode,
) -> Response {
    let now = state.clock.now();
    let caller = &session.caller;
    let me = caller.name();
    let open = !item.is_closed() && item.status != projections::item::ItemStatus::ChangesRequested;
    let may_review = caller.role() == Role::Reviewer && caller.0.may_work_queue(&item.queue);
    let live_claim = item.live_claim(now);
    let mine = live_claim.is_some_and(|claim| claim.reviewer == me);
    let claimed_by_other = live_claim.is_some_and(|claim| claim.reviewer != me);
    let may_comment = matches!(caller.role(), Role::Reviewer | Role::Agent | Role::Admin)
        && (caller.role() != Role::Reviewer || may_review);
    let (edit_text, is_json) = editable(item.output.as_str());
    let hash = item.output_hash.to_string();
    let base = format!("/ui/items/{}", item.id);
    let content = html! {
        @match banner {
            Banner::None => {},
            Banner::Refused(error) => {
                div.conflict role="alert" #outcome {
                    h2 { @if error.status == StatusCode::CONFLICT { "Someone else was first" } @else { "Not done" } }
                    p { (error.detail) }
                    @if let Some(happened) = what_happened(item, now, me) {
                        p.happened { (happened) }
                    }
                    p { "Nothing was written. The item below is as the ledger has it now." }
                }
            },
        }
        dl.facts {
            dt { "Status" } dd #item-status { (status_text(item, now)) }
            dt { "Queue" } dd { (item.queue) }
            dt { "Kind" } dd { (item.kind) }
            dt { "Model" } dd { (item.model.name) " " span.muted { "version " (item.model.version) } }
            dt { "Confidence" } dd { @match item.confidence { Some(c) => (format!("{:.0}%", c * 100.0)), None => "not stated" } }
            dt { "Risk" } dd { span class={ "risk risk-" (item.risk.as_str()) } { (item.risk.as_str()) } }
            dt { "Priority" } dd { (item.priority) }
            dt { "Due" } dd { (countdown(item.due_at, now)) }
            dt { "Submitted" } dd { "by " (item.submitted_by) ", " (time(item.submitted_at)) }
            @if let Some(claim) = live_claim {
                dt { "Claimed" } dd { "by " @if claim.reviewer == me { strong { "you" } } @else { (claim.reviewer) } " until " (time(claim.expires_at)) }
            }
            dt { "Approvals" } dd #approvals {
                (item.approvals.len()) " of " (item.required_approvals)
                @if !item.approvals.is_empty() {
                    ": "
                    @for (index, approval) in item.approvals.iter().enumerate() {
                        @if index > 0 { ", " }
                        (approval.reviewer)
                    }
                }
            }
            @if let Some(decision) = &item.decision {
                dt { "Decision" } dd #decision { (decision.outcome.as_str().replace('_', " ")) " by " (decision.decided_by.join(", ")) ", " (time(decision.decided_at)) }
            }
            @if let Some(rejection) = &item.rejection {
                dt { "Reason" } dd { (rejection.reason) }
            }
        }
        @if matches!(caller.role(), Role::Auditor | Role::Admin) || (caller.role() == Role::Agent && item.submitted_by == me) {
            p { a href={ (base) "/record" } { "Decision record and proofs" } }
        }
        section aria-labelledby="output-title" {
            h2 #output-title { "AI output" @if item.revision > 0 { " (revision " (item.revision) ")" } }
            div #output.output { (output(item.output.as_str())) }
        }
        @if let Some(decision) = &item.decision {
            @if let Some(final_output) = &decision.final_output {
                @if final_output.as_str() != item.output.as_str() {
                    section aria-labelledby="final-title" {
                        h2 #final-title { "Output that took effect" }
                        div.output { (output(final_output.as_str())) }
                        h3 { "Changes" }
                        (diff(&editable(item.output.as_str()).0, &editable(final_output.as_str()).0))
                    }
                }
            }
        }
        section aria-labelledby="context-title" {
            h2 #context-title { "Context" }
            @match serde_json::from_str::<serde_json::Value>(item.context.as_str()) {
                Ok(value) => (json_tree(&value)),
                Err(_) => pre { (item.context.as_str()) },
            }
        }
        @if may_review && open {
            section.actions-panel aria-labelledby="actions-title" {
                h2 #actions-title { "Decide" }
                @if claimed_by_other {
                    p.notice { "Another reviewer holds the claim: you may decide only after it is released or lapses." }
                }
                div.action-row {
                    @if !mine {
                        (action_form(&base, "claim", session, "Claim", "claim-button", html! {}))
                    } @else {
                        (action_form(&base, "release", session, "Release the claim", "release-button", html! {}))
                    }
                    (action_form(&base, "approve", session, "Approve", "approve-button", html! {
                        input type="hidden" name="seen_output_hash" value=(hash);
                    }))
                }
                form.stack #edit-form method="post" action={ (base) "/edit-preview" } {
                    input type="hidden" name="csrf" value=(session.csrf);
                    input type="hidden" name="seen_output_hash" value=(hash);
                    input type="hidden" name="format" value=(if is_json { "json" } else { "text" });
                    label for="edit-output" { "Edit the output" @if is_json { " (JSON)" } }
                    textarea #edit-output name="output" rows="10" spellcheck="true" aria-describedby="edit-hint" { (edit_text) }
                    p.hint #edit-hint { "Ctrl+Enter shows the changes before anything is sent." }
                    label for="edit-note" { "Note (optional)" }
                    input #edit-note name="note";
                    button #preview-button type="submit" { "Show the changes" }
                }
                form.stack #reject-form method="post" action={ (base) "/reject" } {
                    input type="hidden" name="csrf" value=(session.csrf);
                    input type="hidden" name="seen_output_hash" value=(hash);
                    label for="reject-reason" { "Reason for rejecting" }
                    textarea #reject-reason name="reason" rows="2" required {}
                    button #reject-button type="submit" { "Reject" }
                }
                form.stack #changes-form method="post" action={ (base) "/request-changes" } {
                    input type="hidden" name="csrf" value=(session.csrf);
                    input type="hidden" name="seen_output_hash" value=(hash);
                    label for="changes-instructions" { "Changes to ask the submitter for" }
                    textarea #changes-instructions name="instructions" rows="2" required {}
                    button #changes-button type="submit" { "Request changes" }
                }
                form.stack #escalate-form method="post" action={ (base) "/escalate" } {
                    input type="hidden" name="csrf" value=(session.csrf);
                    label for="escalate-queue" { "Escalate to queue" }
                    input #escalate-queue name="to_queue" required;
                    label for="escalate-reason" { "Why" }
                    input #escalate-reason name="reason" required;
                    button #escalate-button type="submit" { "Escalate" }
                }
            }
        }
        (history(item))
        @if may_comment && !item.is_closed() {
            form.stack #comment-form method="post" action={ (base) "/comments" } {
                input type="hidden" name="csrf" value=(session.csrf);
                label for="comment-text" { "Comment" }
                textarea #comment-text name="text" rows="2" required {}
                button type="submit" { "Add the comment" }
            }
        }
    };
    let title = format!("{} · {}", item.kind, &item.id.to_string()[28..]);
    html_response(status, layout(Some(session), &title, Nav::Queue, content))
}

fn action_form(
    base: &str,
    action: &str,
    session: &Session,
    label: &str,
    id: &str,
    extra: Markup,
) -> Markup {
    html! {
        form method="post" action={ (base) "/" (action) } {
            input type="hidden" name="csrf" value=(session.csrf);
            (extra)
            button id=(id) type="submit" { (label) }
        }
    }
}

/// Revisions, change requests, escalations, edits and comments, as they happened.
fn history(item: &ItemState) -> Markup {
    html! {
        section aria-labelledby="history-title" {
            h2 #history-title { "History" }
            ul.history {
                li { (time(item.submitted_at)) ": submitted by " (item.submitted_by) }
                @for revision in &item.revisions {
                    li { (time(revision.at)) ": revision " (revision.revision)
                        @if let Some(note) = &revision.note { ": " q { (note) } } }
                }
                @for request in &item.change_requests {
                    li { (time(request.at)) ": " (request.reviewer) " requested changes: " q { (request.instructions) } }
                }
                @for escalation in &item.escalations {
                    li { (time(escalation.at)) ": " (escalation.by) " escalated from " (escalation.from_queue) " to " (escalation.to_queue) ": " q { (escalation.reason) } }
                }
                @for edit in &item.edits {
                    li { (time(edit.at)) ": " (edit.reviewer) " edited the output"
                        @if let Some(note) = &edit.note { ": " q { (note) } } }
                }
                @for approval in &item.approvals {
                    li { (time(approval.at)) ": " (approval.reviewer) " approved" }
                }
            }
            @if !item.comments.is_empty() {
                h3 { "Comments" }
                ul.comments {
                    @for comment in &item.comments {
                        li { strong { (comment.author) } " · " (time(comment.at)) p.comment-text { (comment.text) } }
                    }
                }
            }
        }
    }
}

fn no_item(session: &Session, raw: &str) -> Response {
    super::error_page(
        Some(session),
        StatusCode::NOT_FOUND,
        &format!("No item {raw}."),
    )
}

/// `GET /ui/items/{id}`.
pub async fn page(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    Path(raw_id): Path<String>,
) -> Response {
    let Ok(id) = Uuid::parse_str(&raw_id) else {
        return no_item(&session, &raw_id);
    };
    match visible_item(&state, &session.caller, id).await {
        Ok(item) => render(&state, &session, &item, Banner::None, StatusCode::OK),
        Err(error) => api_error_page(Some(&session), &error),
    }
}

/// The JSON output a form's text stands for: the text itself as a JSON string, or the text
/// parsed as JSON.
fn output_of(form: &HashMap<String, String>) -> Result<Box<serde_json::value::RawValue>, ApiError> {
    let text = form.get("output").map(String::as_str).unwrap_or("");
    // Browsers send textarea lines ending in CR LF; the output keeps the AI's line ends.
    let text = text.replace("\r\n", "\n");
    let value = if form.get("format").map(String::as_str) == Some("json") {
        serde_json::from_str::<serde_json::Value>(&text).map_err(|error| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-body",
                format!("the edited output is not valid JSON: {error}"),
            )
        })?
    } else {
        serde_json::Value::String(text)
    };
    Ok(serde_json::value::to_raw_value(&value).expect("a value serializes"))
}

/// The API's JSON body for a form's action.
fn body_of(action: &str, form: &HashMap<String, String>) -> Result<serde_json::Value, ApiError> {
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    let seen = form.get("seen_output_hash").cloned();
    Ok(match action {
        "claim" | "release" => serde_json::json!({}),
        "approve" => serde_json::json!({ "seen_output_hash": seen }),
        "edit" => serde_json::json!({
            "output": output_of(form)?,
            "note": form.get("note").filter(|note| !note.trim().is_empty()),
            "seen_output_hash": seen,
        }),
        "reject" => serde_json::json!({ "reason": field("reason"), "seen_output_hash": seen }),
        "request-changes" => {
            serde_json::json!({ "instructions": field("instructions"), "seen_output_hash": seen })
        }
        "escalate" => {
            serde_json::json!({ "to_queue": field("to_queue"), "reason": field("reason") })
        }
        "comments" => serde_json::json!({ "text": field("text") }),
        _ => {
            return Err(ApiError::not_found(format!(
                "no action {action:?} on items"
            )));
        }
    })
}

fn done_message(action: &str) -> &'static str {
    match action {
        "claim" => "Claimed.",
        "release" => "Claim released.",
        "approve" => "Approved.",
        "edit" => "Edited and approved.",
        "reject" => "Rejected.",
        "request-changes" => "Changes requested.",
        "escalate" => "Escalated.",
        _ => "Done.",
    }
}

/// `POST /ui/items/{id}/{action}`: one of the API's actions from a form, or `edit-preview`, the
/// page that shows an edit's changes before it is sent.
pub async fn act(
    State(state): State<AppState>,
    Path((raw_id, action)): Path<(String, String)>,
    Posted { session, form }: Posted,
) -> Response {
    let Ok(id) = Uuid::parse_str(&raw_id) else {
        return no_item(&session, &raw_id);
    };
    if action == "edit-preview" {
        return preview(&state, &session, id, &form).await;
    }
    let body = match body_of(&action, &form) {
        Ok(body) => body,
        Err(error) => return refused(&state, &session, id, &error).await,
    };
    let bytes = serde_json::to_vec(&body).expect("a value serializes");
    match act_on(&state, &session.caller, id, &action, None, &bytes).await {
        Ok(_) => {
            let message = url_encode(done_message(&action));
            let back_to_queue = form.get("return").map(String::as_str) == Some("queue")
                || !matches!(action.as_str(), "claim" | "release" | "comments");
            let target = if back_to_queue {
                format!("/ui/queue?done={message}")
            } else {
                format!("/ui/items/{id}")
            };
            Redirect::to(&target).into_response()
        }
        Err(error) => refused(&state, &session, id, &error).await,
    }
}

/// A refused action: the item's page with what happened, or an error page if the item cannot
/// be shown to this caller (a 403 stays a 403).
async fn refused(state: &AppState, session: &Session, id: Uuid, error: &ApiError) -> Response {
    if error.status.is_server_error() || error.status == StatusCode::FORBIDDEN {
        return api_error_page(Some(session), error);
    }
    match visible_item(state, &session.caller, id).await {
        Ok(item) => render(state, session, &item, Banner::Refused(error), error.status),
        Err(_) => api_error_page(Some(session), error),
    }
}

/// The changes an edit makes, with a form that sends it (or goes back to change it).
async fn preview(
    state: &AppState,
    session: &Session,
    id: Uuid,
    form: &HashMap<String, String>,
) -> Response {
    let item = match visible_item(state, &session.caller, id).await {
        Ok(item) => item,
        Err(error) => return api_error_page(Some(session), &error),
    };
    let output = match session
        .caller
        .require(&[Role::Reviewer], "edit items")
        .and_then(|()| output_of(form))
    {
        Ok(output) => output,
        Err(error) => return refused(state, session, id, &error).await,
    };
    let text = form
        .get("output")
        .map(|text| text.replace("\r\n", "\n"))
        .unwrap_or_default();
    // Both sides as the editor shows an output: text as itself, JSON pretty-printed.
    let (before, _) = editable(item.output.as_str());
    let (after, _) = editable(output.get());
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    let base = format!("/ui/items/{id}");
    let content = html! {
        p { "Check the changes to the AI's output before you send them. Nothing has been written yet." }
        @if before == after {
            p.notice role="status" { "The text is unchanged: send it as an approval instead." }
        }
        (diff(&before, &after))
        form.stack #confirm-form method="post" action={ (base) "/edit" } {
            input type="hidden" name="csrf" value=(session.csrf);
            input type="hidden" name="output" value=(text);
            input type="hidden" name="format" value=(field("format"));
            input type="hidden" name="note" value=(field("note"));
            input type="hidden" name="seen_output_hash" value=(field("seen_output_hash"));
            button #confirm-edit type="submit" autofocus { "Approve with these changes" }
        }
        p { a href=(base) { "Back to the item (the edit is not kept)" } }
    };
    html_response(
        StatusCode::OK,
        layout(Some(session), "Review your edit", Nav::Queue, content),
    )
}
