//! The item endpoints: submit, read, audit trail, act (claim, decide, comment, revise, …), wait
//! for a decision, and the queue.
//!
//! Raw request bodies (`*Request`, `deny_unknown_fields`) become domain `Command`s here; the
//! actor is always the authenticated caller. Every write answers only once the projector has
//! applied it, so the answer (and the caller's next read) shows the write.

use super::AppState;
use super::auth::Caller;
use super::problem::{ApiError, ApiJson, ApiPath, ApiQuery, BodyBytes, IfMatch};
use crate::commands::{decode_item_event, execute_on, item_stream};
use crate::log::read_whole_stream;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use projections::board::{QueueQuery, QueueStatus};
use projections::item::{
    Command, CommandContext, DomainError, ItemEvent, ItemState, ModelIdentity, Risk, Submission,
    submission_fingerprint,
};
use projections::json::JsonText;
use projections::principal::Role;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::value::RawValue;
use std::time::Duration;
use uuid::Uuid;

/// Namespace of item ids derived from an agent's `Idempotency-Key` (UUIDv5).
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x6c65_6467_6572_2d69_6465_6d70_6f74_656e);

/// The longest a client may long-poll for a decision.
const MAX_WAIT: Duration = Duration::from_secs(120);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    pub queue: String,
    pub kind: String,
    pub model: ModelIdentity,
    /// Kept as the client's text (see `client_json`), never parsed into a `Value`.
    pub output: Box<RawValue>,
    #[serde(default)]
    pub context: Option<Box<RawValue>>,
    pub confidence: Option<f64>,
    #[serde(default)]
    pub risk: Risk,
    #[serde(default)]
    pub priority: i32,
    pub due_at: Option<DateTime<Utc>>,
    #[serde(default = "one")]
    pub required_approvals: u32,
    pub callback_url: Option<String>,
    /// No longer accepted (ADR 0007): read only so that a submission carrying it, `null`
    /// included, is refused saying that expiry is the operator's policy, rather than with serde's
    /// "unknown field".
    #[serde(default, deserialize_with = "present")]
    pub on_expiry: Option<serde::de::IgnoredAny>,
}

fn one() -> u32 {
    1
}

/// `Some` for any value the field has, `null` too (`Option`'s own impl reads `null` as `None`).
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde::de::IgnoredAny>, D::Error> {
    serde::de::IgnoredAny::deserialize(deserializer).map(Some)
}

/// A client's JSON (an output or a context) as the domain takes it: its tokens byte for byte,
/// or a 422 naming the field when readers would disagree on what it says.
fn client_json(field: &'static str, raw: &RawValue) -> Result<JsonText, ApiError> {
    JsonText::from_client(raw).map_err(|error| {
        DomainError::Invalid {
            field,
            reason: error.to_string(),
        }
        .into()
    })
}

/// An item as the API shows it: its state and its version (also the `ETag`).
fn item_response(status: StatusCode, item: &ItemState) -> Response {
    let version = item.event_count.saturating_sub(1);
    // Room for a typical answer (1–2 KB) at once: grown from a small buffer, it was reallocated
    // and copied ~8 times per answer.
    let mut body = Vec::with_capacity(4096);
    // The item straight to bytes by its hand-written writer (serde_json's bytes; through serde it
    // was ~15% of the server's instructions per request), then its version as one more member:
    // the item's object ends in `}`.
    item.write_json(&mut body);
    debug_assert_eq!(body.last(), Some(&b'}'));
    body.pop();
    body.extend_from_slice(b",\"version\":");
    body.extend_from_slice(itoa::Buffer::new().format(version).as_bytes());
    body.push(b'}');
    let mut response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// The item as JSON text, by its writer (as `item_response` answers it, without the version).
fn item_json(item: &ItemState) -> Box<RawValue> {
    let mut text = Vec::with_capacity(4096);
    item.write_json(&mut text);
    let text = String::from_utf8(text).expect("the item writer writes UTF-8");
    RawValue::from_string(text).expect("the item writer writes JSON")
}

/// The item as of now, if the caller may see it. Auditors and admins see every item; an agent
/// sees its own (another agent's item is answered 404, so that agents learn nothing of each
/// other); a reviewer sees the items of its queues (another queue's item is 403: reviewers are
/// staff, and "not yours" is the useful answer).
pub async fn visible_item(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> Result<ItemState, ApiError> {
    visible_item_as_of(state, caller, id, CatchUp::Store).await
}

/// How far the read models must have caught up before a request reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CatchUp {
    /// Every write the store acknowledged before the request, through any server.
    Store,
    /// Every write this server knows of without asking the store (at least its own): for a
    /// write's first attempt, made again with `Store` if it is refused (see `act`).
    Known,
}

async fn visible_item_as_of(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    catch_up: CatchUp,
) -> Result<ItemState, ApiError> {
    match catch_up {
        CatchUp::Store => state.caught_up().await?,
        CatchUp::Known => state.caught_up_with_known().await?,
    }
    let models = state.projector.read();
    let not_found = || ApiError::not_found(format!("no item {id}"));
    let item = models.board.item(id).ok_or_else(not_found)?;
    match caller.role() {
        Role::Auditor | Role::Admin => {}
        Role::Agent if item.submitted_by == caller.name() => {}
        Role::Agent => return Err(not_found()),
        Role::Reviewer if caller.0.may_work_queue(&item.queue) => {}
        Role::Reviewer => {
            return Err(ApiError::forbidden(format!(
                "{} is not granted queue {}",
                caller.name(),
                item.queue
            )));
        }
        Role::Analyst => {
            return Err(ApiError::forbidden("analysts read analytics, not items"));
        }
    }
    Ok(item.clone())
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found(format!("no item {raw}")))
}

/// Runs a command on the item as the projector has it (`None`: not submitted yet) and answers
/// with the item once the projector shows the result.
async fn run(
    state: &AppState,
    caller: &Caller,
    item_id: Uuid,
    item: Option<ItemState>,
    command: Command,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let context = CommandContext::new(caller.name(), state.clock.now());
    let (item, version) = match item {
        Some(item) => {
            let version = item.event_count.checked_sub(1);
            (item, version)
        }
        None => (ItemState::default(), None),
    };
    let executed = execute_on(
        state.log.as_ref(),
        item_id,
        item,
        version,
        &command,
        &context,
        None,
    )
    .await?;
    // The item as this write left it, folded here: the same state the projector will hold once
    // it applies these events. Answering now, rather than after the projector, is read-your-writes
    // still, because every read first waits for the projector to apply what the log had committed
    // when the read arrived (`AppState::caught_up`).
    Ok(item_response(status, &executed.state))
}

/// `POST /v1/items`: an agent submits an AI output for review.
pub async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(request): ApiJson<SubmitRequest>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Agent], "submit items")?;
    if request.on_expiry.is_some() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "expiry-is-policy",
            "on_expiry is not accepted: what happens when an item's deadline passes is the operator's expiry policy for its queue and kind, not the submitter's choice; a submission may set due_at, at least the policy's minimum review window ahead",
        )
        .with("field", "on_expiry"));
    }
    if let Some(callback_url) = &request.callback_url {
        state.callback_policy.check_url(callback_url).await?;
    }
    let idempotency_key = headers
        .get("idempotency-key")
        .map(|value| {
            value
                .to_str()
                .map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII"))
        })
        .transpose()?;
    let item_id = match idempotency_key {
        Some(key) => Uuid::new_v5(
            &IDEMPOTENCY_NAMESPACE,
            format!("{}\n{key}", caller.name()).as_bytes(),
        ),
        None => Uuid::now_v7(),
    };
    let expiry_policy = state
        .expiry_policies
        .resolve(&request.queue, &request.kind)
        .clone();
    let mut submission = Submission {
        item_id,
        queue: request.queue,
        kind: request.kind,
        model: request.model,
        output: client_json("output", &request.output)?,
        context: match &request.context {
            Some(context) => client_json("context", context)?,
            None => JsonText::from_value(&Value::Object(Default::default())),
        },
        confidence: request.confidence,
        risk: request.risk,
        priority: request.priority,
        due_at: request.due_at,
        required_approvals: request.required_approvals,
        callback_url: request.callback_url,
        expiry_policy,
        auto_approval: None,
    };
    // A retry with the same key (the item id derives from it): the first result, not a second
    // item. Without a key the id is new, so the board cannot hold it.
    state.caught_up().await?;
    if idempotency_key.is_some() && state.projector.read().board.item(item_id).is_some() {
        return retried_submission(&state, &caller, item_id, &submission).await;
    }
    // The feedback loop: a slice measured accurate enough is only sampled for review. Kinds
    // without a policy (every kind, unless configured) take no read lock for it.
    if state.review_policies.policy(&submission.kind).is_some() {
        let route = state
            .review_policies
            .route(&state.projector.read().accuracy, &submission);
        if let crate::review_policy::Route::AutoApprove(evidence) = route {
            submission.auto_approval = Some(evidence);
        }
    }
    let mut response = run(
        &state,
        &caller,
        item_id,
        None,
        Command::Submit(submission),
        StatusCode::CREATED,
    )
    .await?;
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/items/{item_id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// The answer to a submission whose `Idempotency-Key` made an item already: that item if the
/// retry asks for the same submission (its fingerprint, recorded in `ItemSubmitted`, matches),
/// 422 `idempotency-key-reused` if it asks for another, as Stripe answers. Items submitted before
/// fingerprints were recorded have none to compare, and answer the item.
async fn retried_submission(
    state: &AppState,
    caller: &Caller,
    item_id: Uuid,
    submission: &Submission,
) -> Result<Response, ApiError> {
    let item = visible_item(state, caller, item_id).await?;
    let first = state
        .log
        .read_stream(&item_stream(item_id), 0, 1)
        .await?
        .first()
        .map(decode_item_event)
        .transpose()?;
    if let Some(ItemEvent::ItemSubmitted(submitted)) = first
        && let Some(fingerprint) = submitted.request_fingerprint
        && fingerprint != submission_fingerprint(submission)
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            format!(
                "this Idempotency-Key was first used for a different submission (item {item_id}); \
                 a retry must repeat that request's body, and a new submission needs a new key"
            ),
        )
        .with("item", item_id.to_string()));
    }
    Ok(item_response(StatusCode::OK, &item))
}

/// `GET /v1/items/{id}`.
pub async fn get_item(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let item = visible_item(&state, &caller, parse_id(&id)?).await?;
    Ok(item_response(StatusCode::OK, &item))
}

/// `GET /v1/items/{id}/events`: the item's audit trail, every event with its position, hash and
/// previous hash.
pub async fn item_events(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    visible_item(&state, &caller, id).await?;
    let events = read_whole_stream(state.log.as_ref(), &item_stream(id)).await?;
    // Serialized as it is, not through a `Value` (as `json!` would): each event's data is its
    // stored text, outputs and their numbers byte for byte.
    #[derive(serde::Serialize)]
    struct AuditTrail {
        item: Uuid,
        events: Vec<projections::event::RecordedEvent>,
    }
    Ok(axum::Json(AuditTrail { item: id, events }).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimRequest {
    #[serde(default = "default_lease_seconds")]
    lease_seconds: i64,
}

fn default_lease_seconds() -> i64 {
    15 * 60
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmptyRequest {}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveRequest {
    seen_output_hash: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EditRequest {
    output: Box<RawValue>,
    note: Option<String>,
    seen_output_hash: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RejectRequest {
    reason: String,
    seen_output_hash: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestChangesRequest {
    instructions: String,
    seen_output_hash: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EscalateRequest {
    to_queue: String,
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommentRequest {
    text: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviseRequest {
    output: Box<RawValue>,
    note: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WithdrawRequest {
    reason: Option<String>,
}

/// A body as `T`; an empty body is `{}`.
fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(text).map_err(|error| {
        if error.is_data() {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-body",
                error.to_string(),
            )
        } else {
            ApiError::bad_request(format!("the body is not valid JSON: {error}"))
        }
    })
}

/// Optional text sent blank means absent.
fn non_blank(text: Option<String>) -> Option<String> {
    text.filter(|text| !text.trim().is_empty())
}

/// `POST /v1/items/{id}/{action}`.
pub async fn act(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, action)): ApiPath<(String, String)>,
    IfMatch(if_match_header): IfMatch,
    BodyBytes(bytes): BodyBytes,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    act_on(
        &state,
        &caller,
        id,
        &action,
        if_match_header.as_ref(),
        &bytes,
    )
    .await
}

/// `action` on item `id` with the JSON body `bytes`, by `caller`: what `POST
/// /v1/items/{id}/{action}` does, for the web page's forms too (the same rules for both).
pub async fn act_on(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    action: &str,
    if_match_header: Option<&HeaderValue>,
    bytes: &[u8],
) -> Result<Response, ApiError> {
    // On a store shared by several servers, learning the store's head is a round trip to it. A
    // write can skip it: it decides on the item as this server knows it and appends expecting
    // that version, so a stale copy cannot overwrite anything (the append conflicts). Only if
    // that first attempt is refused is it made again on the item as the store has it, so that
    // the answer is the one a fully caught-up server would give. Nothing is written by a refused
    // attempt. On a log whose head is known without asking (the file log), one attempt.
    if state.log.head_hint().is_some() {
        match act_as_of(
            state,
            caller,
            id,
            action,
            if_match_header,
            bytes,
            CatchUp::Known,
        )
        .await
        {
            Err(refused)
                if matches!(
                    refused.status,
                    StatusCode::NOT_FOUND
                        | StatusCode::FORBIDDEN
                        | StatusCode::CONFLICT
                        | StatusCode::UNPROCESSABLE_ENTITY
                ) => {}
            answer => return answer,
        }
    }
    act_as_of(
        state,
        caller,
        id,
        action,
        if_match_header,
        bytes,
        CatchUp::Store,
    )
    .await
}

/// One attempt of `act`, on the item as caught up by `catch_up`.
async fn act_as_of(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    action: &str,
    if_match_header: Option<&HeaderValue>,
    bytes: &[u8],
    catch_up: CatchUp,
) -> Result<Response, ApiError> {
    let item = visible_item_as_of(state, caller, id, catch_up).await?;
    let reviewing = || -> Result<(), ApiError> {
        caller.require(&[Role::Reviewer], format_args!("{action} items"))?;
        if caller.0.may_work_queue(&item.queue) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "{} is not granted queue {}",
                caller.name(),
                item.queue
            )))
        }
    };
    let command = match action {
        "claim" => {
            reviewing()?;
            let request: ClaimRequest = body(bytes)?;
            // Beyond ±i64::MAX milliseconds a `TimeDelta` does not exist (`seconds` panics); such
            // a lease is as far out of the domain's range (1 s to 24 h) as the nearest one that does.
            let lease = chrono::Duration::try_seconds(request.lease_seconds).unwrap_or(
                if request.lease_seconds < 0 {
                    chrono::Duration::MIN
                } else {
                    chrono::Duration::MAX
                },
            );
            Command::Claim { lease }
        }
        "release" => {
            reviewing()?;
            let _: EmptyRequest = body(bytes)?;
            Command::Release
        }
        "approve" => {
            reviewing()?;
            let request: ApproveRequest = body(bytes)?;
            Command::Approve {
                seen_output_hash: request.seen_output_hash,
            }
        }
        "edit" => {
            reviewing()?;
            let request: EditRequest = body(bytes)?;
            Command::EditAndApprove {
                edited_output: client_json("output", &request.output)?,
                note: non_blank(request.note),
                seen_output_hash: request.seen_output_hash,
            }
        }
        "reject" => {
            reviewing()?;
            let request: RejectRequest = body(bytes)?;
            Command::Reject {
                reason: request.reason,
                seen_output_hash: request.seen_output_hash,
            }
        }
        "request-changes" => {
            reviewing()?;
            let request: RequestChangesRequest = body(bytes)?;
            Command::RequestChanges {
                instructions: request.instructions,
                seen_output_hash: request.seen_output_hash,
            }
        }
        "escalate" => {
            reviewing()?;
            let request: EscalateRequest = body(bytes)?;
            Command::Escalate {
                to_queue: request.to_queue,
                reason: request.reason,
            }
        }
        "comments" => {
            caller.require(&[Role::Reviewer, Role::Agent, Role::Admin], "comment")?;
            let request: CommentRequest = body(bytes)?;
            Command::Comment { text: request.text }
        }
        "revisions" => {
            caller.require(&[Role::Agent], "revise items")?;
            let request: ReviseRequest = body(bytes)?;
            Command::Revise {
                output: client_json("output", &request.output)?,
                note: non_blank(request.note),
            }
        }
        "withdraw" => {
            caller.require(&[Role::Agent], "withdraw items")?;
            let request: WithdrawRequest = body(bytes)?;
            Command::Withdraw {
                reason: non_blank(request.reason),
            }
        }
        _ => {
            return Err(ApiError::not_found(format!(
                "no action {action:?} on items"
            )));
        }
    };
    if let Some(expected) = if_match(if_match_header)? {
        let current = item.event_count.saturating_sub(1);
        if expected != current {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "stale-version",
                format!("the item is at version {current}, not {expected}: read it again"),
            )
            .with("current_version", current)
            .with_raw("item", item_json(&item)));
        }
    }
    let status = if action == "comments" || action == "revisions" {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    run(state, caller, id, Some(item), command, status).await
}

/// The version in an `If-Match` header (`"3"`, `3` or `W/"3"`), if any.
fn if_match(header: Option<&HeaderValue>) -> Result<Option<u64>, ApiError> {
    let Some(value) = header else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_request("If-Match must be ASCII"))?;
    let trimmed = text.trim().trim_start_matches("W/").trim_matches('"');
    trimmed.parse().map(Some).map_err(|_| {
        ApiError::bad_request(format!("If-Match must hold an item version, not {text:?}"))
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    wait: Option<String>,
}

/// Parses `30s`, `500ms`, `2m` or a bare number of seconds.
fn parse_wait(text: &str) -> Result<Duration, ApiError> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(split) => text.split_at(split),
        None => (text, "s"),
    };
    let amount: u64 = number.parse().map_err(|_| {
        ApiError::bad_request(format!("wait must be like 30s or 500ms, not {text:?}"))
    })?;
    let duration = match unit {
        "ms" => Duration::from_millis(amount),
        "s" => Duration::from_secs(amount),
        // Saturating: the wait is capped below anyway, and `amount * 60` overflows past u64::MAX / 60.
        "m" => Duration::from_secs(amount.saturating_mul(60)),
        _ => {
            return Err(ApiError::bad_request(format!(
                "wait must be like 30s or 500ms, not {text:?}"
            )));
        }
    };
    Ok(duration.min(MAX_WAIT))
}

/// Whether the submitter has an answer: a decision, a change request, a withdrawal.
fn has_answer(item: &ItemState) -> bool {
    item.is_closed() || item.status == projections::item::ItemStatus::ChangesRequested
}

/// `GET /v1/items/{id}/decision?wait=30s`: answers as soon as the item is decided (or changes
/// are requested, or it is withdrawn), or 202 with its current state when the wait ends. Only
/// reads: no GET ever changes state.
pub async fn wait_for_decision(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<WaitQuery>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let wait = query
        .wait
        .as_deref()
        .map(parse_wait)
        .transpose()?
        .unwrap_or(Duration::ZERO);
    let deadline = tokio::time::Instant::now() + wait;
    let mut changes = state.projector.item_changes(id);
    // Polled only while waiting; each first poll checks the caller again, so a revocation between
    // a look at the item and the wait is not missed.
    let revoked = caller.revoked(&state);
    tokio::pin!(revoked);
    loop {
        let item = visible_item(&state, &caller, id).await?;
        // The read models are caught up here: a caller revoked by now learns nothing more.
        if !caller.still_authenticates(&state) {
            return Err(caller.revoked_problem());
        }
        if has_answer(&item) {
            return Ok(item_response(StatusCode::OK, &item));
        }
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let timed_out = remaining.is_zero()
            || tokio::select! {
                () = &mut revoked => return Err(caller.revoked_problem()),
                changed = tokio::time::timeout(remaining, changes.changed()) => changed.is_err(),
            };
        if timed_out {
            let item = visible_item(&state, &caller, id).await?;
            let status = if has_answer(&item) {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            return Ok(item_response(status, &item));
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueParams {
    queue: Option<String>,
    status: Option<QueueStatus>,
    assignee: Option<String>,
    kind: Option<String>,
    model: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// The queue `caller` may read when it asks for `queue`: any (or all) for auditors and admins;
/// for a reviewer, only one it is granted, and when it names none, its only one (or, with
/// `first_by_default`, its first; the web page's default).
pub fn queue_for(
    caller: &Caller,
    queue: Option<String>,
    first_by_default: bool,
) -> Result<Option<String>, ApiError> {
    caller.require(
        &[Role::Reviewer, Role::Auditor, Role::Admin],
        "read the queue",
    )?;
    if caller.role() != Role::Reviewer {
        return Ok(queue);
    }
    match queue {
        Some(name) if !caller.0.may_work_queue(&name) => Err(ApiError::forbidden(format!(
            "{} is not granted queue {name}",
            caller.name()
        ))),
        Some(name) => Ok(Some(name)),
        None => match caller.0.queues.as_slice() {
            [only] => Ok(Some(only.clone())),
            [first, ..] if first_by_default => Ok(Some(first.clone())),
            _ => Err(ApiError::bad_request(
                "name a queue (queue=…): this reviewer works several",
            )),
        },
    }
}

/// `GET /v1/queue`: the projected queue, by priority, then due time, then submission.
pub async fn queue(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<QueueParams>,
) -> Result<Response, ApiError> {
    let queue = queue_for(&caller, params.queue, false)?;
    let query = QueueQuery {
        queue,
        status: params.status,
        assignee: params.assignee,
        kind: params.kind,
        model: params.model,
        limit: params.limit.unwrap_or(50),
        cursor: params.cursor,
    };
    state.caught_up().await?;
    let page = state
        .projector
        .read()
        .board
        .queue(&query, state.clock.now())
        .map_err(|error| ApiError::bad_request(error.to_string()).with("parameter", "cursor"))?;
    Ok(axum::Json(page).into_response())
}
