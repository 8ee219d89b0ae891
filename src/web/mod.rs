//! The web page, served by `ledger serve` under `/ui`: sign-in, the reviewers' queue and item
//! pages, the auditors' records and checkpoints, the analysts' dashboard and the admins'
//! principals. Pages are rendered here as HTML (maud escapes every value it writes), with one
//! small committed script for the keyboard, countdowns and live updates, and one stylesheet; no
//! build step and nothing fetched at run time.
//!
//! Every decision a page makes goes through the same functions as the JSON API
//! (`http::items::act_on`, the principals' and the audit's), with the session's principal as the
//! caller, so the same authorization rules hold for both. Forms are POSTed with a CSRF token
//! bound to the session; every page carries a strict Content-Security-Policy.
//!
//! # Layout
//! - [`session`]: cookies, CSRF tokens, sign-out.
//! - [`render`]: safe rendering of outputs (text, Markdown, JSON trees), times, SVG charts.
//! - [`queue`], [`item`], [`audit`], [`analytics`], [`admin`]: the pages.

pub mod admin;
pub mod analytics;
pub mod audit;
pub mod item;
pub mod queue;
pub mod render;
pub mod session;

use crate::http::AppState;
use crate::http::problem::ApiError;
use axum::Router;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};
use projections::principal::Role;
use serde::Deserialize;
use session::Session;
use std::collections::HashMap;

/// The policy every page is sent with: scripts and styles only from this server's own files (no
/// inline script can run, whatever an AI output holds), no plugins, no framing, forms only back
/// here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// The web page's routes (merged into the server's router).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(home))
        .route("/ui/", get(home))
        .route("/ui/sign-in", get(sign_in_page).post(sign_in))
        .route("/ui/sign-out", post(sign_out))
        .route("/ui/assets/app.js", get(script))
        .route("/ui/assets/app.css", get(stylesheet))
        .route("/ui/queue", get(queue::page))
        .route("/ui/queue/rows", get(queue::rows))
        .route("/ui/live", get(queue::live))
        .route("/ui/items/{id}", get(item::page))
        .route("/ui/items/{id}/record", get(audit::record))
        .route("/ui/items/{id}/bundle", get(audit::bundle))
        .route("/ui/items/{id}/{action}", post(item::act))
        .route("/ui/audit", get(audit::checkpoints))
        .route("/ui/audit/verify", post(audit::verify))
        .route("/ui/analytics", get(analytics::page))
        .route("/ui/admin", get(admin::page))
        .route("/ui/admin/principals", post(admin::add))
        .route("/ui/admin/principals/{name}/revoke", post(admin::revoke))
        .layer(axum::middleware::map_response(security_headers))
}

/// The headers of every answer under `/ui`.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn script() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

async fn stylesheet() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// A page's answer: HTML with `status`.
pub fn html_response(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// Which part of the navigation a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Queue,
    Audit,
    Analytics,
    Admin,
    None,
}

/// The pages a role may open, as the navigation offers them.
fn nav_links(role: Role) -> Vec<(Nav, &'static str, &'static str)> {
    let mut links = Vec::new();
    if matches!(role, Role::Reviewer | Role::Auditor | Role::Admin) {
        links.push((Nav::Queue, "/ui/queue", "Queue"));
    }
    if matches!(role, Role::Auditor | Role::Admin) {
        links.push((Nav::Audit, "/ui/audit", "Checkpoints"));
    }
    if matches!(role, Role::Analyst | Role::Auditor | Role::Admin) {
        links.push((Nav::Analytics, "/ui/analytics", "Analytics"));
    }
    if role == Role::Admin {
        links.push((Nav::Admin, "/ui/admin", "Principals"));
    }
    links
}

/// The page around `content`: the header (who is signed in, the navigation, sign-out), a skip
/// link, the keyboard help, and the main region.
pub fn layout(session: Option<&Session>, title: &str, nav: Nav, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                link rel="icon" href="data:,";
                title { (title) " · Approval ledger" }
                link rel="stylesheet" href="/ui/assets/app.css";
                script src="/ui/assets/app.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui/" { "Approval ledger" }
                    @if let Some(session) = session {
                        nav aria-label="Main" {
                            ul {
                                @for (which, href, label) in nav_links(session.caller.role()) {
                                    li {
                                        @if which == nav {
                                            a href=(href) aria-current="page" { (label) }
                                        } @else {
                                            a href=(href) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                        div.who {
                            span #who { "Signed in as " strong { (session.caller.name()) } " (" span.role { (session.caller.role().as_str()) } ")" }
                            form method="post" action="/ui/sign-out" {
                                input type="hidden" name="csrf" value=(session.csrf);
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (content)
                }
                dialog #help aria-labelledby="help-title" {
                    h2 #help-title { "Keyboard" }
                    dl.keys {
                        dt { kbd { "j" } " / " kbd { "k" } } dd { "next / previous item" }
                        dt { kbd { "Enter" } } dd { "open the item" }
                        dt { kbd { "c" } } dd { "claim" }
                        dt { kbd { "a" } } dd { "approve" }
                        dt { kbd { "e" } } dd { "edit (then Ctrl+Enter to see the diff)" }
                        dt { kbd { "r" } } dd { "reject, with a reason" }
                        dt { kbd { "x" } } dd { "request changes" }
                        dt { kbd { "?" } } dd { "this help" }
                        dt { kbd { "Esc" } } dd { "close a dialog" }
                    }
                    form method="dialog" { button type="submit" { "Close" } }
                }
            }
        }
    }
}

/// A page that says what went wrong, with the status it deserves.
pub fn error_page(session: Option<&Session>, status: StatusCode, detail: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    html_response(
        status,
        layout(
            session,
            title,
            Nav::None,
            html! {
                p.problem role="alert" { (detail) }
                p { a href="/ui/" { "Back to your start page" } }
            },
        ),
    )
}

/// An API refusal as a page.
pub fn api_error_page(session: Option<&Session>, error: &ApiError) -> Response {
    error_page(session, error.status, &error.detail)
}

/// A signed-in page request: the session, or a redirect to sign-in (which comes back here).
#[derive(Debug, Clone)]
pub struct SignedIn(pub Session);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        if let Some(session) = state.sessions.of_request(state, &parts.headers).await {
            return Ok(SignedIn(session));
        }
        if parts.method != axum::http::Method::GET {
            return Err(error_page(
                None,
                StatusCode::UNAUTHORIZED,
                "Your session has ended: sign in again.",
            ));
        }
        let back = parts
            .uri
            .path_and_query()
            .map_or("/ui/", |path| path.as_str());
        let target = format!("/ui/sign-in?next={}", url_encode(back));
        Err(Redirect::to(&target).into_response())
    }
}

/// A signed-in form POST whose CSRF token and origin were checked: its session and fields. A
/// request that fails either check is answered 403 before any handler runs, nothing done.
#[derive(Debug)]
pub struct Posted {
    pub session: Session,
    pub form: HashMap<String, String>,
}

impl axum::extract::FromRequest<AppState> for Posted {
    type Rejection = Response;

    async fn from_request(
        request: axum::extract::Request,
        state: &AppState,
    ) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let SignedIn(session) = SignedIn::from_request_parts(&mut parts, state).await?;
        let headers = parts.headers.clone();
        let request = axum::extract::Request::from_parts(parts, body);
        let axum::Form(form) = axum::Form::<HashMap<String, String>>::from_request(request, state)
            .await
            .map_err(|rejection| {
                error_page(Some(&session), rejection.status(), &rejection.body_text())
            })?;
        match refuse_form(&session, &headers, &form) {
            Some(refused) => Err(refused),
            None => Ok(Posted { session, form }),
        }
    }
}

/// `text` percent-encoded for a query value.
pub fn url_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The refusal of a form whose CSRF token is not the session's, or that comes from another
/// origin; `None` when it may go ahead.
fn refuse_form(
    session: &Session,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Option<Response> {
    let token = form
        .get("csrf")
        .map(String::as_str)
        .or_else(|| headers.get("x-csrf-token").and_then(|v| v.to_str().ok()))
        .unwrap_or("");
    if !session.csrf_matches(token) {
        return Some(error_page(
            Some(session),
            StatusCode::FORBIDDEN,
            "This form is missing its security token (or it is from an older session): nothing was done. Reload the page and try again.",
        ));
    }
    if !same_origin(headers) {
        return Some(error_page(
            Some(session),
            StatusCode::FORBIDDEN,
            "This form was sent from another site: nothing was done.",
        ));
    }
    None
}

/// Whether a POST came from this site's own pages, by its `Origin` (browsers send it with every
/// POST; with the `same-origin` referrer policy, the page's own origin): one from elsewhere, or
/// `null` (a sandboxed or privacy-stripped context), is refused even with a valid token. A request
/// without `Origin` is not from a browser, and the CSRF token alone decides.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin
        .to_str()
        .ok()
        .and_then(|origin| {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
        })
        .is_some_and(|origin_host| !host.is_empty() && origin_host == host)
}

/// Where a role starts.
fn home_of(role: Role) -> &'static str {
    match role {
        Role::Reviewer => "/ui/queue",
        Role::Auditor => "/ui/audit",
        Role::Analyst => "/ui/analytics",
        Role::Admin => "/ui/admin",
        Role::Agent => "/ui/queue",
    }
}

async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match state.sessions.of_request(&state, &headers).await {
        Some(session) => Redirect::to(home_of(session.caller.role())).into_response(),
        None => Redirect::to("/ui/sign-in").into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct NextParam {
    next: Option<String>,
}

/// Only a path of this page may be gone back to after sign-in (never another site).
fn safe_next(next: Option<&str>) -> Option<&str> {
    next.filter(|next| {
        next.starts_with("/ui/") && !next.starts_with("//") && !next.contains(['\\', '\r', '\n'])
    })
}

fn sign_in_form(next: Option<&str>, problem: Option<&str>) -> Markup {
    html! {
        @if let Some(problem) = problem {
            p.problem role="alert" { (problem) }
        }
        form.stack method="post" action="/ui/sign-in" {
            @if let Some(next) = next {
                input type="hidden" name="next" value=(next);
            }
            label for="token" { "Your token" }
            input #token type="password" name="token" autocomplete="current-password" required autofocus;
            p.hint #token-hint { "The token an admin gave you (the first admin's is printed when the server first starts). It is exchanged for a session cookie and not kept in the page." }
            button type="submit" { "Sign in" }
        }
    }
}

async fn sign_in_page(Query(params): Query<NextParam>) -> Response {
    let next = safe_next(params.next.as_deref());
    html_response(
        StatusCode::OK,
        layout(None, "Sign in", Nav::None, sign_in_form(next, None)),
    )
}

async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    let next = safe_next(form.get("next").map(String::as_str));
    // Another site must not sign this browser in under a token of its own (login CSRF).
    if !same_origin(&headers) {
        return error_page(
            None,
            StatusCode::FORBIDDEN,
            "This sign-in was sent from another site: nothing was done.",
        );
    }
    let token = form.get("token").map(|t| t.trim()).unwrap_or("");
    let known = match token {
        "" => None,
        token => match crate::http::auth::Caller::of_token(&state, token).await {
            Ok(known) => known,
            Err(error) => return api_error_page(None, &error),
        },
    };
    let Some(crate::http::auth::Caller(principal)) = known else {
        return html_response(
            StatusCode::UNAUTHORIZED,
            layout(
                None,
                "Sign in",
                Nav::None,
                sign_in_form(next, Some("That token is unknown or was revoked.")),
            ),
        );
    };
    let value = state
        .sessions
        .open(&principal.name, &principal.token_hash, chrono::Utc::now());
    let target = next.unwrap_or(home_of(principal.role));
    tracing::info!(principal = %principal.name, "signed in to the web page");
    let mut response = Redirect::to(target).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&session::set_cookie(
            Some(&value),
            session::over_https(&headers),
        ))
        .expect("a cookie of base64 and digits is a valid header"),
    );
    response
}

async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    Posted { session, .. }: Posted,
) -> Response {
    state.sessions.sign_out(&session);
    let mut response = Redirect::to("/ui/sign-in").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&session::set_cookie(None, session::over_https(&headers)))
            .expect("a valid header"),
    );
    response
}
