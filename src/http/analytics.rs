//! The analytics API: override rates and every other measure by slice, from item rows of the
//! projector's review board (the same functions as `ledger analytics report`).

use super::AppState;
use super::auth::Caller;
use super::problem::{ApiError, ApiQuery};
use crate::analytics::{Metric, OverrideQuery, rows_of_board};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use projections::principal::Role;
use serde::Deserialize;

/// The parameters every analytics operation takes, and those only some use (refused elsewhere).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsParams {
    by: Option<String>,
    since: Option<String>,
    until: Option<String>,
    /// Calibration: equal-width confidence buckets (default 10, at most 100).
    buckets: Option<usize>,
    /// Drift: the latest window in days (default 7).
    window_days: Option<u32>,
    /// Drift: decided items each side needs for a slice to be tested (default 20).
    min_sample: Option<u64>,
}

fn invalid(detail: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-query", detail)
}

/// `metric` over the board, once the caller may ask it and the read models hold every write
/// acknowledged before the request.
async fn answer(
    state: &AppState,
    caller: &Caller,
    metric: Metric,
    params: AnalyticsParams,
) -> Result<Response, ApiError> {
    caller.require(
        &[Role::Analyst, Role::Auditor, Role::Admin],
        "read analytics",
    )?;
    let name = metric.name();
    let refuse = |parameter: &str| invalid(format!("{parameter} is not a parameter of {name}"));
    if params.buckets.is_some() && metric != Metric::Calibration {
        return Err(refuse("buckets"));
    }
    if metric != Metric::Drift {
        if params.window_days.is_some() {
            return Err(refuse("window_days"));
        }
        if params.min_sample.is_some() {
            return Err(refuse("min_sample"));
        }
    }
    let mut query = OverrideQuery::parse(
        params.by.as_deref(),
        params.since.as_deref(),
        params.until.as_deref(),
    )
    .and_then(|query| query.with_drift(params.window_days, params.min_sample))
    .map_err(invalid)?;
    query.buckets = params.buckets.unwrap_or(10);
    state.caught_up().await?;
    let (rows, applied) = {
        let models = state.projector.read();
        (
            rows_of_board(&models.board, metric == Metric::EditMagnitude),
            models.applied,
        )
    };
    let answer = query.answer(metric, &rows, applied).map_err(invalid)?;
    Ok(axum::Json(answer).into_response())
}

macro_rules! metric_handlers {
    ($($handler:ident => $metric:expr, $doc:literal;)+) => {
        $(
            #[doc = $doc]
            pub async fn $handler(
                State(state): State<AppState>,
                caller: Caller,
                ApiQuery(params): ApiQuery<AnalyticsParams>,
            ) -> Result<Response, ApiError> {
                answer(&state, &caller, $metric, params).await
            }
        )+
    };
}

metric_handlers! {
    override_rates => Metric::OverrideRates, "`GET /v1/analytics/override-rates?by=model,kind&since=&until=`.";
    edit_magnitude => Metric::EditMagnitude, "`GET /v1/analytics/edit-magnitude`: how much humans changed what they edited.";
    review_times => Metric::ReviewTimes, "`GET /v1/analytics/review-times`: time to first claim and to decision, p50/p90/p99.";
    rejection_reasons => Metric::RejectionReasons, "`GET /v1/analytics/rejection-reasons`: reasons by frequency, with intervals.";
    agreement => Metric::Agreement, "`GET /v1/analytics/agreement`: Fleiss' kappa between reviewers of the same items.";
    drift => Metric::Drift, "`GET /v1/analytics/drift?window_days=7`: slices whose latest override rate differs from their baseline.";
    calibration => Metric::Calibration, "`GET /v1/analytics/calibration?buckets=10`: override rate by stated confidence, and the expected calibration error.";
}

/// Every slice's latest accuracy measurement, and whether its policy samples it now.
pub(crate) fn accuracy_answer(state: &AppState) -> serde_json::Value {
    let models = state.projector.read();
    let slices: Vec<serde_json::Value> = models
        .accuracy
        .all()
        .map(|(id, measured)| {
            let policy = state.review_policies.policy(&measured.kind);
            let mut object = serde_json::to_value(measured).unwrap_or_default();
            object["measurement_id"] = id.to_string().into();
            object["policy"] = serde_json::to_value(policy).unwrap_or_default();
            object["sampling"] = policy
                .is_some_and(|policy| {
                    crate::review_policy::ReviewPolicies::sampling(policy, measured)
                })
                .into();
            object
        })
        .collect();
    serde_json::json!({"slices": slices, "as_of_position": models.applied})
}

/// `GET /v1/analytics/accuracy`: the latest measurement of each (model, version, kind), its
/// review policy and whether new items of the slice are only sampled for review.
pub async fn accuracy(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(
        &[Role::Analyst, Role::Auditor, Role::Admin],
        "read analytics",
    )?;
    state.caught_up().await?;
    Ok(axum::Json(accuracy_answer(&state)).into_response())
}

/// `POST /v1/analytics/accuracy` (admin): measures every slice now, as the periodic job does,
/// appending an `AccuracyMeasured` event for each slice whose counts changed; answers the
/// measurements appended and the state after them.
pub async fn measure_accuracy(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin], "measure accuracy")?;
    state.caught_up().await?;
    let appended = crate::review_policy::publish_from(
        state.log.as_ref(),
        &state.projector,
        &state.review_policies,
        state.clock.now(),
        caller.name(),
    )
    .await
    .map_err(|error| {
        tracing::error!(%error, "measuring accuracy");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "measurement-failed",
            "the measurements could not be stored",
        )
    })?;
    state.caught_up().await?;
    let mut answer = accuracy_answer(&state);
    answer["appended"] = serde_json::to_value(&appended).unwrap_or_default();
    Ok(axum::Json(answer).into_response())
}
