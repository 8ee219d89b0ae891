//! The audit API: signed checkpoints, inclusion and consistency proofs from the Merkle tree the
//! projector keeps, and items' decision records. Hashes are lowercase hex everywhere in JSON; the
//! signed note carries its root in base64, as the C2SP format says.

use super::AppState;
use super::auth::Caller;
use super::problem::{ApiError, ApiPath, ApiQuery};
use crate::audit::record::{CheckpointView, ItemRecord};
use crate::commands::item_stream;
use crate::log::read_whole_stream;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use projections::principal::Role;
use serde::Deserialize;
use uuid::Uuid;

/// The most checkpoints one page lists.
const MAX_PAGE: usize = 1000;

fn out_of_range(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "out-of-range", detail)
}

fn no_checkpoint() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no-checkpoint",
        "no checkpoint has been signed yet (the server signs one within its checkpoint interval once events exist)",
    )
}

/// The key that verifies this ledger's checkpoints (empty when the server has none).
pub(crate) fn verifier_key(state: &AppState) -> String {
    state
        .checkpoint_verifier
        .as_ref()
        .map(|verifier| verifier.key().to_owned())
        .unwrap_or_default()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointsParams {
    /// Only checkpoints of a tree larger than this.
    after: Option<u64>,
    limit: Option<usize>,
}

/// `GET /v1/audit/checkpoints`: stored checkpoints, oldest first, a page at a time.
pub async fn checkpoints(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(params): ApiQuery<CheckpointsParams>,
) -> Result<Response, ApiError> {
    state.caught_up().await?;
    let limit = params.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let models = state.projector.read();
    let all = models.audit.checkpoints();
    let start = match params.after {
        Some(after) => all.partition_point(|stored| stored.checkpoint.tree_size <= after),
        None => 0,
    };
    let page: Vec<CheckpointView> = all[start..]
        .iter()
        .take(limit)
        .map(CheckpointView::from)
        .collect();
    let next_after = (start + page.len() < all.len())
        .then(|| page.last().map(|last| last.tree_size))
        .flatten();
    Ok(axum::Json(serde_json::json!({
        "checkpoints": page,
        "next_after": next_after,
        "verifier_key": verifier_key(&state),
    }))
    .into_response())
}

/// Whether the client asked for the signed note as text (`Accept: text/plain`) rather than JSON.
fn wants_text(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|kind| {
            let kind = kind.split(';').next().unwrap_or("").trim();
            kind.eq_ignore_ascii_case("text/plain")
        })
}

/// `GET /v1/audit/checkpoints/latest`: the latest checkpoint, as its signed note
/// (`Accept: text/plain`) or as JSON with its fields.
pub async fn latest_checkpoint(
    State(state): State<AppState>,
    _caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.caught_up().await?;
    let latest = {
        let models = state.projector.read();
        models
            .audit
            .latest()
            .map(CheckpointView::from)
            .ok_or_else(no_checkpoint)?
    };
    if wants_text(&headers) {
        return Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            latest.note,
        )
            .into_response());
    }
    let mut body = serde_json::to_value(&latest).map_err(|error| ApiError::internal(&error))?;
    body["verifier_key"] = verifier_key(&state).into();
    Ok(axum::Json(body).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionParams {
    position: u64,
    /// Default: the latest checkpoint's tree size.
    tree_size: Option<u64>,
}

/// The tree size a proof is asked under: the one given, else the latest checkpoint's.
fn size_or_latest(state: &AppState, given: Option<u64>) -> Result<u64, ApiError> {
    match given {
        Some(size) => Ok(size),
        None => state
            .projector
            .read()
            .audit
            .latest()
            .map(|latest| latest.checkpoint.tree_size)
            .ok_or_else(no_checkpoint),
    }
}

/// Catches up far enough to hold a tree of `size` leaves: what this server knows first (no
/// round trip), the store's head only when that is not enough.
async fn caught_up_to_size(state: &AppState, size: u64) -> Result<(), ApiError> {
    state.caught_up_with_known().await?;
    if state.projector.read().audit.tree.size() < size {
        state.caught_up().await?;
    }
    Ok(())
}

/// `GET /v1/audit/proofs/inclusion?position=P&tree_size=N`: the audit path of the event at
/// position P to the root of the tree of the first N events.
pub async fn inclusion_proof(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<InclusionParams>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Auditor, Role::Admin], "read proofs by position")?;
    let tree_size = size_or_latest(&state, params.tree_size)?;
    caught_up_to_size(&state, tree_size).await?;
    let models = state.projector.read();
    let tree = &models.audit.tree;
    let proof = tree
        .inclusion_proof(params.position, tree_size)
        .map_err(|error| out_of_range(error.to_string()))?;
    let root = tree
        .root_at(tree_size)
        .map_err(|error| out_of_range(error.to_string()))?;
    let leaf = tree.leaf(params.position).expect("a proven leaf exists");
    let checkpoint = models
        .audit
        .checkpoint_of_size(tree_size)
        .map(|stored| stored.checkpoint.note.clone());
    drop(models);
    Ok(axum::Json(serde_json::json!({
        "position": params.position,
        "tree_size": tree_size,
        "leaf_hash": hex::encode(leaf),
        "root_hash": hex::encode(root),
        "inclusion_proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
        "checkpoint": checkpoint,
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyParams {
    first: u64,
    /// Default: the latest checkpoint's tree size.
    second: Option<u64>,
}

/// `GET /v1/audit/proofs/consistency?first=M&second=N`: the proof that the tree of the first N
/// events extends the tree of the first M.
pub async fn consistency_proof(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(params): ApiQuery<ConsistencyParams>,
) -> Result<Response, ApiError> {
    let second = size_or_latest(&state, params.second)?;
    caught_up_to_size(&state, second).await?;
    let models = state.projector.read();
    let tree = &models.audit.tree;
    let proof = tree
        .consistency_proof(params.first, second)
        .map_err(|error| out_of_range(error.to_string()))?;
    let first_root = tree
        .root_at(params.first)
        .map_err(|error| out_of_range(error.to_string()))?;
    let second_root = tree
        .root_at(second)
        .map_err(|error| out_of_range(error.to_string()))?;
    drop(models);
    Ok(axum::Json(serde_json::json!({
        "first": params.first,
        "second": second,
        "first_root_hash": hex::encode(first_root),
        "second_root_hash": hex::encode(second_root),
        "consistency_proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// `GET /v1/items/{id}/record`: the item's decision record: every event with its canonical
/// bytes, the decision, the edit as a diff, and inclusion proofs under the latest checkpoint.
pub async fn item_record(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found(format!("no item {id}"));
    let item_id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    state.caught_up().await?;
    let submitted_by = state
        .projector
        .read()
        .board
        .item(item_id)
        .map(|item| item.submitted_by.to_string())
        .ok_or_else(not_found)?;
    match caller.role() {
        Role::Auditor | Role::Admin => {}
        Role::Agent if submitted_by == caller.name() => {}
        Role::Agent => return Err(not_found()),
        Role::Reviewer | Role::Analyst => {
            return Err(ApiError::forbidden(
                "decision records are for auditors, admins and the item's own agent",
            ));
        }
    }
    let events = read_whole_stream(state.log.as_ref(), &item_stream(item_id)).await?;
    // Events newer than the latest checkpoint get no proof (`inclusion_proof: null`).
    let record = {
        let models = state.projector.read();
        ItemRecord::new(item_id, &events, &models.audit, &verifier_key(&state))
    };
    Ok(axum::Json(record).into_response())
}
