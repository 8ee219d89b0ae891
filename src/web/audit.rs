//! The auditors' pages: an item's decision record (every event with who, when and its hash,
//! marked verified when its inclusion proof leads to the root of the latest checkpoint whose
//! signature verifies), the compliance bundle to download, the checkpoints with their signed
//! notes, and the whole log verified on request.

use super::render::{diff, editable, time};
use super::session::Session;
use super::{Nav, Posted, SignedIn, error_page, html_response, layout};
use crate::audit::Verifier;
use crate::commands::item_stream;
use crate::http::AppState;
use crate::http::problem::ApiError;
use crate::log::read_whole_stream;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;
use projections::audit::StoredCheckpoint;
use projections::event::RecordedEvent;
use projections::merkle::{leaf_hash, verify_inclusion};
use projections::principal::Role;
use uuid::Uuid;

/// How one event of a record fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// Its hash is of its canonical bytes and its proof leads to the signed root.
    Verified,
    /// Newer than the latest checkpoint: nothing signed covers it yet.
    Pending,
    /// It does not verify, and why.
    Failed(String),
}

/// The latest checkpoint's signed tree size and root (`None`: no checkpoint yet), or why its
/// signature does not verify.
pub type SignedRoot = Result<Option<(u64, [u8; 32])>, String>;

/// The latest checkpoint's signed tree size and root, once its signature verified with the
/// server's key; or why not.
fn signed_root(latest: Option<&StoredCheckpoint>, verifier: Option<&Verifier>) -> SignedRoot {
    let Some(latest) = latest else {
        return Ok(None);
    };
    let verifier = verifier.ok_or("this server has no checkpoint key to verify with")?;
    let opened = verifier.open_stored(&latest.checkpoint)?;
    Ok(Some((opened.tree_size, opened.root)))
}

/// A record's events checked against the latest checkpoint, all as of one look at the read
/// models (a checkpoint signed meanwhile changes none of it).
#[derive(Debug)]
pub struct Checked {
    /// The checkpoint the marks are against.
    pub latest: Option<StoredCheckpoint>,
    pub signed: SignedRoot,
    /// Each event's mark: its hash recomputed from its canonical bytes, and its inclusion proof
    /// (in the tree the projector rebuilt from the log) checked against the signed root.
    pub marks: Vec<Mark>,
}

pub fn check(state: &AppState, events: &[RecordedEvent]) -> Checked {
    let models = state.projector.read();
    let latest = models.audit.latest();
    let signed = signed_root(latest, state.checkpoint_verifier.as_ref());
    let marks = events
        .iter()
        .map(|event| {
            let hash = projections::event::sha256(&event.canonical_bytes());
            if hash != event.hash {
                return Mark::Failed("its stored hash is not the hash of its content".into());
            }
            let (size, root) = match &signed {
                Ok(Some(signed)) => *signed,
                Ok(None) => return Mark::Pending,
                Err(reason) => {
                    return Mark::Failed(format!("the checkpoint does not verify: {reason}"));
                }
            };
            if event.position >= size {
                return Mark::Pending;
            }
            let proof = match models.audit.tree.inclusion_proof(event.position, size) {
                Ok(proof) => proof,
                Err(error) => return Mark::Failed(error.to_string()),
            };
            match verify_inclusion(&leaf_hash(&hash), event.position, size, &proof, &root) {
                Ok(()) => Mark::Verified,
                Err(_) => Mark::Failed(
                    "its inclusion proof does not lead to the signed root: the log was altered after the checkpoint was signed".into(),
                ),
            }
        })
        .collect();
    Checked {
        latest: latest.cloned(),
        signed,
        marks,
    }
}

fn may_audit(session: &Session, submitted_by: &str) -> Result<(), ApiError> {
    match session.caller.role() {
        Role::Auditor | Role::Admin => Ok(()),
        Role::Agent if submitted_by == session.caller.name() => Ok(()),
        _ => Err(ApiError::forbidden(
            "decision records are for auditors, admins and the item's own agent",
        )),
    }
}

async fn item_events(
    state: &AppState,
    session: &Session,
    raw_id: &str,
) -> Result<(Uuid, Vec<RecordedEvent>), Response> {
    let not_found = || {
        error_page(
            Some(session),
            StatusCode::NOT_FOUND,
            &format!("No item {raw_id}."),
        )
    };
    let id = Uuid::parse_str(raw_id).map_err(|_| not_found())?;
    if let Err(error) = state.caught_up().await {
        return Err(super::api_error_page(Some(session), &ApiError::from(error)));
    }
    let submitted_by = state
        .projector
        .read()
        .board
        .item(id)
        .map(|item| item.submitted_by.to_string())
        .ok_or_else(not_found)?;
    may_audit(session, &submitted_by)
        .map_err(|error| super::api_error_page(Some(session), &error))?;
    let events = read_whole_stream(state.log.as_ref(), &item_stream(id))
        .await
        .map_err(|error| super::api_error_page(Some(session), &ApiError::from(error)))?;
    Ok((id, events))
}

/// `GET /ui/items/{id}/record`.
pub async fn record(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    Path(raw_id): Path<String>,
) -> Response {
    let (id, events) = match item_events(&state, &session, &raw_id).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let Checked {
        latest,
        signed,
        marks,
    } = check(&state, &events);
    let summary = crate::audit::record::DecisionSummary::of(&events);
    let verified = marks.iter().filter(|mark| **mark == Mark::Verified).count();
    let failed = marks
        .iter()
        .filter(|mark| matches!(mark, Mark::Failed(_)))
        .count();
    let content = html! {
        @if failed > 0 {
            p.verdict.bad #verdict role="alert" { "NOT VERIFIED: " (failed) " of " (events.len()) " events do not match what was signed. This record was altered." }
        } @else if verified == events.len() {
            p.verdict.good #verdict role="status" { "Verified: all " (events.len()) " events are in the log exactly as the latest signed checkpoint covers them." }
        } @else {
            p.verdict #verdict role="status" { (verified) " of " (events.len()) " events verified; the others are newer than the latest checkpoint (the next one will cover them)." }
        }
        dl.facts {
            dt { "Item" } dd { a href={ "/ui/items/" (id) } { (id) } }
            @if let Some(outcome) = &summary.outcome {
                dt { "Decision" } dd { (outcome.replace('_', " ")) " by " (summary.decided_by.join(", ")) @if let Some(at) = &summary.decided_at { ", " (at) } }
            }
            dt { "Checkpoint" } dd {
                @match (&latest, &signed) {
                    (None, _) => "none signed yet",
                    (Some(latest), Ok(_)) => { "tree size " (latest.checkpoint.tree_size) ", signed by " (latest.checkpoint.origin) " (signature verified)" },
                    (Some(latest), Err(reason)) => { "tree size " (latest.checkpoint.tree_size) ": " strong { "signature does not verify: " (reason) } },
                }
            }
        }
        @if summary.edited {
            @if let (Some(ai), Some(final_output)) = (&summary.ai_output, &summary.final_output) {
                h2 { "The human's edit" }
                (diff(&editable(&ai.to_string()).0, &editable(&final_output.to_string()).0))
            }
        }
        h2 { "Events" }
        div.table-wrap tabindex="0" role="region" aria-label="Table (scrolls sideways on small screens)" {
            table #record {
                caption.visually-hidden { "Every event of the item, oldest first, with its verification" }
                thead { tr {
                    th scope="col" { "Position" } th scope="col" { "Event" } th scope="col" { "Who" }
                    th scope="col" { "When" } th scope="col" { "Event hash" } th scope="col" { "Verified" }
                } }
                tbody {
                    @for (event, mark) in events.iter().zip(&marks) {
                        tr data-mark=(match mark { Mark::Verified => "verified", Mark::Pending => "pending", Mark::Failed(_) => "failed" }) {
                            td.num { (event.position) }
                            td { (event.event_type) }
                            td { (event.actor) }
                            td { (time(event.recorded_at)) }
                            td { code.hash title=(hex::encode(event.hash)) { (hex::encode(&event.hash[..8])) "…" } }
                            td {
                                @match mark {
                                    Mark::Verified => span.mark.ok { span aria-hidden="true" { "✓ " } "verified" },
                                    Mark::Pending => span.mark.pending { "not yet checkpointed" },
                                    Mark::Failed(reason) => span.mark.bad { span aria-hidden="true" { "✗ " } "FAILED: " (reason) },
                                }
                            }
                        }
                    }
                }
            }
        }
        p { a #bundle-link href={ "/ui/items/" (id) "/bundle" } download { "Download the compliance bundle" } " (check it offline with " code { "ledger audit verify-bundle FILE --key KEY" } " or " code { "tools/verify_bundle.py" } ")." }
        @if let Some(verifier) = &state.checkpoint_verifier {
            p { "Verifier key: " code.key { (verifier.key()) } }
        }
    };
    html_response(
        StatusCode::OK,
        layout(Some(&session), "Decision record", Nav::Audit, content),
    )
}

/// `GET /ui/items/{id}/bundle`: the item's compliance bundle, as `ledger audit export --item`
/// writes it.
pub async fn bundle(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    Path(raw_id): Path<String>,
) -> Response {
    let (id, events) = match item_events(&state, &session, &raw_id).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let key = crate::http::audit::verifier_key(&state);
    let made = {
        let models = state.projector.read();
        crate::audit::bundle::of_item(&events, &models.audit, &key)
    };
    match made {
        Ok(bundle) => (
            [
                (header::CONTENT_TYPE, "application/json".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"item-{id}.bundle.json\""),
                ),
            ],
            serde_json::to_string_pretty(&bundle).expect("a bundle serializes"),
        )
            .into_response(),
        // Events newer than the latest checkpoint: a bundle must prove every event it holds.
        Err(reason) => error_page(Some(&session), StatusCode::CONFLICT, &reason.to_string()),
    }
}

fn may_read_checkpoints(session: &Session) -> Result<(), ApiError> {
    session
        .caller
        .require(&[Role::Auditor, Role::Admin], "open the checkpoints page")
}

/// `GET /ui/audit`: the checkpoints, newest first, with their signed notes.
pub async fn checkpoints(State(state): State<AppState>, SignedIn(session): SignedIn) -> Response {
    if let Err(error) = may_read_checkpoints(&session) {
        return super::api_error_page(Some(&session), &error);
    }
    if let Err(error) = state.caught_up().await {
        return super::api_error_page(Some(&session), &ApiError::from(error));
    }
    let content = checkpoints_markup(&state, &session, None);
    html_response(
        StatusCode::OK,
        layout(Some(&session), "Checkpoints", Nav::Audit, content),
    )
}

fn checkpoints_markup(
    state: &AppState,
    session: &Session,
    result: Option<maud::Markup>,
) -> maud::Markup {
    let models = state.projector.read();
    let all = models.audit.checkpoints();
    html! {
        @if let Some(result) = result { (result) }
        p { "The log has " (models.audit.tree.size()) " events; " (all.len()) " checkpoints were signed." }
        @match &state.checkpoint_verifier {
            Some(verifier) => p { "Verifier key (compare it with the one the operator published): " code.key { (verifier.key()) } },
            None => p.notice { "This server has no checkpoint key: signatures cannot be checked here." },
        }
        form method="post" action="/ui/audit/verify" {
            input type="hidden" name="csrf" value=(session.csrf);
            button #verify-button type="submit" { "Verify the whole log now" }
        }
        div.table-wrap tabindex="0" role="region" aria-label="Table (scrolls sideways on small screens)" {
            table #checkpoints {
                caption.visually-hidden { "Signed checkpoints, newest first" }
                thead { tr { th scope="col" { "Tree size" } th scope="col" { "Signed at" } th scope="col" { "Root hash" } th scope="col" { "Signature" } th scope="col" { "Signed note" } } }
                tbody {
                    @for stored in all.iter().rev().take(200) {
                        tr {
                            td.num { (stored.checkpoint.tree_size) }
                            td { (time(stored.recorded_at)) }
                            td { code.hash title=(stored.checkpoint.root_hash) { (stored.checkpoint.root_hash.get(..16).unwrap_or("")) "…" } }
                            td {
                                @match state.checkpoint_verifier.as_ref().map(|verifier| verifier.open_stored(&stored.checkpoint)) {
                                    Some(Ok(_)) => span.mark.ok { "✓ valid" },
                                    Some(Err(reason)) => span.mark.bad { "✗ " (reason) },
                                    None => span.muted { "not checked" },
                                }
                            }
                            td { details { summary { "note" } pre.note { (stored.checkpoint.note) } } }
                        }
                    }
                }
            }
        }
    }
}

/// `POST /ui/audit/verify`: every event's hash and link, the Merkle tree recomputed, and every
/// stored checkpoint (signature, root, consistency) checked against it, through the log
/// contract (`ledger verify --store` does the same).
pub async fn verify(State(state): State<AppState>, Posted { session, .. }: Posted) -> Response {
    if let Err(error) = may_read_checkpoints(&session) {
        return super::api_error_page(Some(&session), &error);
    }
    let report =
        crate::verify::verify_log_with_key(state.log.as_ref(), state.checkpoint_verifier.as_ref())
            .await;
    let result = match report {
        Err(error) => {
            return super::api_error_page(
                Some(&session),
                &ApiError::internal(&format!("{error:#}")),
            );
        }
        Ok(report) => {
            let intact = report.damage.is_none() && report.tree.checkpoint_damage.is_none();
            html! {
                div #verify-result class=(if intact { "verdict good" } else { "verdict bad" }) role=(if intact { "status" } else { "alert" }) {
                    @if intact {
                        p { "Verified: " (report.events) " events, every hash and link holds, and all " (report.tree.checkpoints) " checkpoints match the log." }
                    } @else {
                        p { strong { "VERIFICATION FAILED." } }
                        @if let Some(damage) = &report.damage { p { "Damaged event at " (damage.to_string()) } }
                        @if let Some(damage) = &report.tree.checkpoint_damage { p { "Checkpoint damaged: " (damage.to_string()) } }
                    }
                    p.muted { "Merkle root of the log: " code.hash { (report.tree.merkle_root) } }
                }
            }
        }
    };
    let content = checkpoints_markup(&state, &session, Some(result));
    html_response(
        StatusCode::OK,
        layout(Some(&session), "Checkpoints", Nav::Audit, content),
    )
}
