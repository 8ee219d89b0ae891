//! The admins' page: the principals, adding one (its token shown once, on the answer to the
//! form, never again) and revoking one.

use super::render::time;
use super::session::Session;
use super::{Nav, Posted, SignedIn, api_error_page, html_response, layout, url_encode};
use crate::http::AppState;
use crate::http::problem::ApiError;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use projections::principal::Role;
use serde::Deserialize;

const ROLES: [Role; 5] = [
    Role::Reviewer,
    Role::Agent,
    Role::Auditor,
    Role::Analyst,
    Role::Admin,
];

fn require_admin(session: &Session) -> Result<(), ApiError> {
    session.caller.require(&[Role::Admin], "manage principals")
}

fn principals_markup(state: &AppState, session: &Session, before: Markup) -> Markup {
    let models = state.projector.read();
    html! {
        (before)
        section aria-labelledby="add-title" {
            h2 #add-title { "Add a principal" }
            form.stack #add-form method="post" action="/ui/admin/principals" {
                input type="hidden" name="csrf" value=(session.csrf);
                label for="p-name" { "Name" }
                input #p-name name="name" required autocomplete="off";
                label for="p-role" { "Role" }
                select #p-role name="role" {
                    @for role in ROLES { option value=(role.as_str()) { (role.as_str()) } }
                }
                label for="p-queues" { "Queues (reviewers: comma-separated)" }
                input #p-queues name="queues" autocomplete="off";
                button #add-button type="submit" { "Add" }
            }
        }
        section aria-labelledby="list-title" {
            h2 #list-title { "Principals" }
            div.table-wrap tabindex="0" role="region" aria-label="Table (scrolls sideways on small screens)" {
                table #principals {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Role" } th scope="col" { "Queues" } th scope="col" { "Added" } th scope="col" { "State" } } }
                    tbody {
                        @for principal in models.principals.all() {
                            tr data-name=(principal.name) {
                                td { (principal.name) }
                                td { (principal.role.as_str()) }
                                td { (principal.queues.join(", ")) }
                                td { (time(principal.added_at)) " by " (principal.added_by) }
                                td {
                                    @if principal.is_active() {
                                        form method="post" action={ "/ui/admin/principals/" (url_encode(&principal.name)) "/revoke" } {
                                            input type="hidden" name="csrf" value=(session.csrf);
                                            button.danger type="submit" aria-label={ "Revoke " (principal.name) } { "Revoke" }
                                        }
                                    } @else {
                                        "revoked" @if let Some(by) = &principal.revoked_by { " by " (by) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Notice {
    done: Option<String>,
}

/// `GET /ui/admin`.
pub async fn page(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    Query(notice): Query<Notice>,
) -> Response {
    if let Err(error) = require_admin(&session) {
        return api_error_page(Some(&session), &error);
    }
    if let Err(error) = state.caught_up().await {
        return api_error_page(Some(&session), &ApiError::from(error));
    }
    let before = html! {
        @if let Some(done) = &notice.done { p.notice role="status" { (done) } }
    };
    let content = principals_markup(&state, &session, before);
    html_response(
        StatusCode::OK,
        layout(Some(&session), "Principals", Nav::Admin, content),
    )
}

fn failure(
    state: &AppState,
    session: &Session,
    error: crate::principals::PrincipalsError,
) -> Response {
    let error = match error {
        crate::principals::PrincipalsError::Rule(rule) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "principal-rule",
            rule.to_string(),
        ),
        crate::principals::PrincipalsError::Log(error) => ApiError::from(error),
        crate::principals::PrincipalsError::Projector(error) => ApiError::from(error),
        other => ApiError::internal(&other),
    };
    if error.status.is_server_error() {
        return api_error_page(Some(session), &error);
    }
    let before = html! { p.problem role="alert" { (error.detail) } };
    html_response(
        error.status,
        layout(
            Some(session),
            "Principals",
            Nav::Admin,
            principals_markup(state, session, before),
        ),
    )
}

/// `POST /ui/admin/principals`: adds one and shows its token, this once.
pub async fn add(State(state): State<AppState>, Posted { session, form }: Posted) -> Response {
    if let Err(error) = require_admin(&session) {
        return api_error_page(Some(&session), &error);
    }
    let name = form.get("name").map(|name| name.trim()).unwrap_or("");
    let role = form.get("role").map(String::as_str).unwrap_or("");
    let Some(role) = ROLES
        .into_iter()
        .find(|candidate| candidate.as_str() == role)
    else {
        return api_error_page(
            Some(&session),
            &ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-body",
                format!("no role {role:?}"),
            ),
        );
    };
    let queues: Vec<String> = form
        .get("queues")
        .map(String::as_str)
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|queue| !queue.is_empty())
        .map(str::to_owned)
        .collect();
    match crate::principals::add_principal(
        state.log.as_ref(),
        &state.projector,
        session.caller.name(),
        name,
        role,
        queues,
    )
    .await
    {
        Ok(token) => {
            let before = html! {
                div.notice #new-token-notice role="status" {
                    p { "Added " strong { (name) } " (" (role.as_str()) "). Its token is shown only now: give it to them through a safe channel." }
                    label for="new-token" { "Token of " (name) }
                    input #new-token readonly value=(token) size="72";
                }
            };
            html_response(
                StatusCode::CREATED,
                layout(
                    Some(&session),
                    "Principals",
                    Nav::Admin,
                    principals_markup(&state, &session, before),
                ),
            )
        }
        Err(error) => failure(&state, &session, error),
    }
}

/// `POST /ui/admin/principals/{name}/revoke`.
pub async fn revoke(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Posted { session, .. }: Posted,
) -> Response {
    if let Err(error) = require_admin(&session) {
        return api_error_page(Some(&session), &error);
    }
    match crate::principals::revoke(state.log.as_ref(), session.caller.name(), &name).await {
        Ok(position) => {
            if let Err(error) = state.projector.wait_for(position).await {
                return api_error_page(Some(&session), &ApiError::from(error));
            }
            let done = url_encode(&format!("Revoked {name}."));
            Redirect::to(&format!("/ui/admin?done={done}")).into_response()
        }
        Err(error) => failure(&state, &session, error),
    }
}
