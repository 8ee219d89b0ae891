//! The analysts' dashboard: override rate by model and kind with 95% intervals, its weekly
//! trend, calibration by stated confidence, and the review policies' state (which slices are
//! only sampled, on what measurement), drawn server-side as SVG from the same functions as
//! `ledger analytics report` and `/v1/analytics/*`.

use super::render::{Bar, bar_chart, line_chart};
use super::{Nav, SignedIn, api_error_page, html_response, layout};
use crate::analytics::{OverrideQuery, rows_of_board};
use crate::http::AppState;
use crate::http::problem::ApiError;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use projections::principal::Role;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Window {
    since: Option<String>,
    until: Option<String>,
}

fn pct(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

/// `GET /ui/analytics?since=&until=`.
pub async fn page(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    Query(window): Query<Window>,
) -> Response {
    if let Err(error) = session.caller.require(
        &[Role::Analyst, Role::Auditor, Role::Admin],
        "read analytics",
    ) {
        return api_error_page(Some(&session), &error);
    }
    let invalid =
        |detail: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-query", detail);
    let by_slice = match OverrideQuery::parse(
        Some("model,kind"),
        window.since.as_deref(),
        window.until.as_deref(),
    ) {
        Ok(query) => query,
        Err(detail) => return api_error_page(Some(&session), &invalid(detail)),
    };
    let by_week = OverrideQuery {
        by: projections::analytics::Dimension::parse_list("week").expect("a dimension"),
        ..by_slice.clone()
    };
    if let Err(error) = state.caught_up().await {
        return api_error_page(Some(&session), &ApiError::from(error));
    }
    let (rows, applied) = {
        let models = state.projector.read();
        (rows_of_board(&models.board, false), models.applied)
    };
    let slices = by_slice.override_rows(&rows);
    let weeks = by_week.override_rows(&rows);
    let calibration =
        projections::analytics::calibration(rows.iter(), 10, by_slice.since, by_slice.until);
    let accuracy = crate::http::analytics::accuracy_answer(&state);
    let slice_bars: Vec<Bar> = slices
        .iter()
        .map(|row| Bar::of(row, row.keys.join(" · ")))
        .collect();
    let week_points: Vec<Bar> = weeks
        .iter()
        .map(|row| Bar::of(row, row.keys.join("")))
        .collect();
    let buckets: Vec<Bar> = calibration
        .buckets
        .iter()
        .filter(|bucket| bucket.decided > 0)
        .map(|bucket| Bar {
            label: format!(
                "confidence {:.0}–{:.0}%",
                bucket.confidence_low * 100.0,
                bucket.confidence_high * 100.0
            ),
            value: bucket.override_rate,
            low: bucket.override_rate_low,
            high: bucket.override_rate_high,
            sample: bucket.decided,
        })
        .collect();
    let policy_slices = accuracy["slices"].as_array().cloned().unwrap_or_default();
    let content = html! {
        form.filters method="get" action="/ui/analytics" aria-label="Time window" {
            div { label for="since" { "Since" } input #since type="date" name="since" value=(window.since.clone().unwrap_or_default()); }
            div { label for="until" { "Until" } input #until type="date" name="until" value=(window.until.clone().unwrap_or_default()); }
            button type="submit" { "Show" }
        }
        p.muted { "As of log position " (applied) ". Override rate = (edited + rejected) / decided by humans; bars show it with its 95% Wilson interval." }
        section aria-labelledby="slices-title" {
            h2 #slices-title { "Override rate by model and kind" }
            @if slice_bars.is_empty() {
                p { "No decisions yet." }
            } @else {
                figure.chart-wrap tabindex="0" aria-label="Override rate by model and kind (scrolls sideways on small screens)" { (bar_chart("Override rate by model and kind", &slice_bars)) }
                (table(&["Model · kind"], &slice_bars))
            }
        }
        section aria-labelledby="trend-title" {
            h2 #trend-title { "Weekly trend" }
            @if week_points.is_empty() { p { "No decisions yet." } } @else {
                figure.chart-wrap tabindex="0" aria-label="Override rate by week (scrolls sideways on small screens)" { (line_chart("Override rate by week", &week_points)) }
                (table(&["Week"], &week_points))
            }
        }
        section aria-labelledby="calibration-title" {
            h2 #calibration-title { "Calibration" }
            p { "Override rate by the AI's stated confidence: a well calibrated model is overridden about as often as it is unsure. Expected calibration error: " strong #ece { (format!("{:.3}", calibration.expected_calibration_error)) } " over " (calibration.decided) " decisions." }
            @if !buckets.is_empty() {
                figure.chart-wrap tabindex="0" aria-label="Override rate by stated confidence (scrolls sideways on small screens)" { (bar_chart("Override rate by stated confidence", &buckets)) }
            }
        }
        section aria-labelledby="policy-title" {
            h2 #policy-title { "Review policies" }
            @if policy_slices.is_empty() {
                p { "No accuracy measured yet (the server measures periodically; " code { "ledger analytics publish" } " measures now)." }
            } @else {
                div.table-wrap tabindex="0" role="region" aria-label="Table (scrolls sideways on small screens)" {
                    table #policies {
                        caption.visually-hidden { "Measured accuracy per slice, and whether its items are only sampled for review" }
                        thead { tr { th scope="col" { "Model" } th scope="col" { "Kind" } th scope="col" { "Override rate (95%)" } th scope="col" { "Decided" } th scope="col" { "Target" } th scope="col" { "Review" } } }
                        tbody {
                            @for slice in &policy_slices {
                                tr {
                                    td { (slice["model"].as_str().unwrap_or("")) " " span.muted { (slice["model_version"].as_str().unwrap_or("")) } }
                                    td { (slice["kind"].as_str().unwrap_or("")) }
                                    td { (pct(slice["override_rate"].as_f64().unwrap_or(0.0))) " [" (pct(slice["override_rate_low"].as_f64().unwrap_or(0.0))) ", " (pct(slice["override_rate_high"].as_f64().unwrap_or(0.0))) "]" }
                                    td.num { (slice["decided"].as_u64().unwrap_or(0)) }
                                    td { @match slice["policy"]["target_override_rate"].as_f64() { Some(target) => (pct(target)), None => span.muted { "no policy" } } }
                                    td {
                                        @if slice["sampling"].as_bool() == Some(true) {
                                            strong { "sampled at " (pct(slice["policy"]["sampling_rate"].as_f64().unwrap_or(0.0))) } " (measurement " code { (slice["measurement_id"].as_str().unwrap_or("")) } ")"
                                        } @else { "every item" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    html_response(
        StatusCode::OK,
        layout(Some(&session), "Analytics", Nav::Analytics, content),
    )
}

/// The chart's numbers as a table (for screen readers, and to copy).
fn table(keys: &[&str], bars: &[Bar]) -> maud::Markup {
    html! {
        details {
            summary { "The numbers" }
            div.table-wrap tabindex="0" role="region" aria-label="Table (scrolls sideways on small screens)" {
                table.data {
                    thead { tr {
                        @for key in keys { th scope="col" { (key) } }
                        th scope="col" { "Decided" } th scope="col" { "Override rate" } th scope="col" { "95% interval" }
                    } }
                    tbody {
                        @for bar in bars {
                            tr { td { (bar.label) } td.num { (bar.sample) } td.num { (pct(bar.value)) } td { (pct(bar.low)) " – " (pct(bar.high)) } }
                        }
                    }
                }
            }
        }
    }
}
