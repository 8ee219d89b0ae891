//! The web page's sessions and form checks over a real socket, without a browser: the cookie's
//! attributes, sign-out and revocation ending a session, forged cookies, CSRF tokens and foreign
//! origins refused with nothing written, safe redirects after sign-in, and the security headers.
//! (The pages themselves are driven in Chromium by `browser.rs`.)

use crate::api::{App, spawn_app};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::json;

/// A form's body, `application/x-www-form-urlencoded`.
fn encoded<K: AsRef<str>, V: AsRef<str>>(fields: &[(K, V)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
        .finish()
}

trait FormBody {
    fn form_body<K: AsRef<str>, V: AsRef<str>>(self, fields: &[(K, V)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_body<K: AsRef<str>, V: AsRef<str>>(self, fields: &[(K, V)]) -> Self {
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(encoded(fields))
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in with `token` (extra headers `headers`); the answer's status, `Location` and
/// `Set-Cookie`.
async fn sign_in(
    app: &App,
    token: &str,
    next: Option<&str>,
    headers: HeaderMap,
) -> (StatusCode, String, String) {
    let mut form = vec![("token", token)];
    if let Some(next) = next {
        form.push(("next", next));
    }
    let response = client()
        .post(format!("{}/ui/sign-in", app.base))
        .headers(headers)
        .form_body(&form)
        .send()
        .await
        .unwrap();
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|value: &reqwest::header::HeaderValue| value.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    (response.status(), header(LOCATION), header(SET_COOKIE))
}

/// The `name=value` part of a `Set-Cookie`.
fn cookie_of(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

async fn get_page(app: &App, path: &str, cookie: &str) -> reqwest::Response {
    client()
        .get(format!("{}{path}", app.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

/// The CSRF token in a page's forms.
fn csrf_in(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    page[at..at + 32].to_owned()
}

async fn submit_item(app: &App) -> String {
    submit(
        app,
        json!({
            "queue": "support", "kind": "customer-reply",
            "model": {"name": "gpt-x", "version": "1"}, "output": "Hello"
        }),
    )
    .await
}

/// Submits `submission` as the agent; its item's id.
async fn submit(app: &App, submission: serde_json::Value) -> String {
    let response = app
        .client
        .post(format!("{}/v1/items", app.base))
        .bearer_auth(&app.agent)
        .json(&submission)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn item(app: &App, id: &str) -> serde_json::Value {
    app.client
        .get(format!("{}/v1/items/{id}", app.base))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn sign_in_gives_an_http_only_strict_cookie_secure_behind_https_and_pages_carry_the_csp() {
    let app = spawn_app().await;
    let (status, location, set_cookie) = sign_in(&app, &app.rita, None, HeaderMap::new()).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, "/ui/queue");
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    assert!(
        !set_cookie.contains(&app.rita),
        "the token is not in the cookie"
    );
    let mut https = HeaderMap::new();
    https.insert("x-forwarded-proto", "https".parse().unwrap());
    let (_, _, secure) = sign_in(&app, &app.rita, None, https).await;
    assert!(secure.contains("; Secure"), "{secure}");

    let page = get_page(&app, "/ui/queue", &cookie_of(&set_cookie)).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(
        page.headers()["content-security-policy"],
        ledger::web::CONTENT_SECURITY_POLICY
    );
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("Signed in as <strong>rita</strong>")
    );

    // A wrong token: 401 and no cookie.
    let (status, _, set_cookie) = sign_in(&app, "ldg_wrong", None, HeaderMap::new()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(set_cookie.is_empty());
}

#[tokio::test]
async fn after_sign_in_only_a_path_of_the_page_is_returned_to() {
    let app = spawn_app().await;
    for (next, expected) in [
        ("/ui/audit", "/ui/audit"),
        ("//evil.example/ui/", "/ui/queue"),
        ("https://evil.example/", "/ui/queue"),
        ("/ui/\r\nSet-Cookie: x=1", "/ui/queue"),
    ] {
        let (_, location, _) = sign_in(&app, &app.rita, Some(next), HeaderMap::new()).await;
        assert_eq!(location, expected, "next={next:?}");
    }
    // An anonymous page visit goes to sign-in, remembering where it was going.
    let response = get_page(&app, "/ui/audit?x=1", "").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()[LOCATION],
        "/ui/sign-in?next=%2Fui%2Faudit%3Fx%3D1"
    );
}

#[tokio::test]
async fn sign_out_and_revocation_end_a_session_and_forged_cookies_open_none() {
    let app = spawn_app().await;
    let (_, _, set_cookie) = sign_in(&app, &app.rita, None, HeaderMap::new()).await;
    let cookie = cookie_of(&set_cookie);
    let page = get_page(&app, "/ui/queue", &cookie)
        .await
        .text()
        .await
        .unwrap();
    let response = client()
        .post(format!("{}/ui/sign-out", app.base))
        .header("cookie", &cookie)
        .form_body(&[("csrf", csrf_in(&page))])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(
        response.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        get_page(&app, "/ui/queue", &cookie).await.status(),
        StatusCode::SEE_OTHER
    );

    // Revoked through the API: the session ends with the token.
    let (_, _, set_cookie) = sign_in(&app, &app.sam, None, HeaderMap::new()).await;
    let cookie = cookie_of(&set_cookie);
    assert_eq!(
        get_page(&app, "/ui/queue", &cookie).await.status(),
        StatusCode::OK
    );
    let revoked = app
        .client
        .delete(format!("{}/v1/principals/sam", app.base))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success());
    assert_eq!(
        get_page(&app, "/ui/queue", &cookie).await.status(),
        StatusCode::SEE_OTHER
    );

    // A cookie naming another principal with rita's signature opens nothing.
    let (_, _, set_cookie) = sign_in(&app, &app.rita, None, HeaderMap::new()).await;
    let cookie = cookie_of(&set_cookie);
    let forged = cookie.replacen("cml0YQ", "YXVkcmV5", 1); // base64url "rita" -> "audrey"
    assert_ne!(forged, cookie);
    assert_eq!(
        get_page(&app, "/ui/audit", &forged).await.status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn forms_without_the_token_from_another_origin_or_without_a_session_write_nothing() {
    let app = spawn_app().await;
    let id = submit_item(&app).await;
    let (_, _, set_cookie) = sign_in(&app, &app.rita, None, HeaderMap::new()).await;
    let cookie = cookie_of(&set_cookie);
    let page = get_page(&app, &format!("/ui/items/{id}"), &cookie)
        .await
        .text()
        .await
        .unwrap();
    let csrf = csrf_in(&page);
    let claim = |form: Vec<(&'static str, String)>,
                 origin: Option<&'static str>,
                 cookie: Option<String>| {
        let mut request = client()
            .post(format!("{}/ui/items/{id}/claim", app.base))
            .form_body(&form);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.text().await.unwrap())
        }
    };
    let (status, text) = claim(vec![], None, Some(cookie.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert!(text.contains("security token"), "{text}");
    let (status, text) = claim(
        vec![("csrf", csrf.clone())],
        Some("http://evil.example"),
        Some(cookie.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert!(text.contains("another site"), "{text}");
    let (status, _) = claim(
        vec![("csrf", csrf.clone())],
        Some("null"),
        Some(cookie.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A bearer token does not stand in for the session.
    let (status, _) = claim(vec![("csrf", csrf.clone())], None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        item(&app, &id).await["claim"].is_null(),
        "nothing was written"
    );

    // Signing in from another site is refused too (login CSRF).
    let mut foreign = HeaderMap::new();
    foreign.insert("origin", "http://evil.example".parse().unwrap());
    let (status, _, set_cookie) = sign_in(&app, &app.rita, None, foreign).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(set_cookie.is_empty());

    // The same form with its token, from the page's own origin, claims through the API's rules.
    let origin = app.base.clone();
    let response = client()
        .post(format!("{}/ui/items/{id}/claim", app.base))
        .header("cookie", &cookie)
        .header("origin", origin)
        .form_body(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(item(&app, &id).await["claim"]["reviewer"], "rita");
}

#[tokio::test]
async fn an_item_needing_two_approvals_shows_who_approved_so_far() {
    let app = spawn_app().await;
    let id = submit(
        &app,
        json!({
            "queue": "support", "kind": "contract-clause",
            "model": {"name": "gpt-x", "version": "1"}, "output": {"clause": "<b>Net 30</b>"},
            "required_approvals": 2
        }),
    )
    .await;
    let approved = app
        .client
        .post(format!("{}/v1/items/{id}/approve", app.base))
        .bearer_auth(&app.rita)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), StatusCode::OK);
    let (_, _, set_cookie) = sign_in(&app, &app.admin, None, HeaderMap::new()).await;
    let page = get_page(&app, &format!("/ui/items/{id}"), &cookie_of(&set_cookie))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("<dd id=\"approvals\">1 of 2: rita</dd>"),
        "{page}"
    );
    // The JSON output as a tree, its markup as text.
    assert!(page.contains("&lt;b&gt;Net 30&lt;/b&gt;"), "{page}");
    assert!(!page.contains("<b>Net 30</b>"), "{page}");
    // An admin sees the item, but no decide controls (admins do not review).
    assert!(!page.contains("id=\"approve-button\""), "{page}");
}

#[tokio::test]
async fn a_reviewer_follows_its_own_queue_live_and_no_other() {
    let app = spawn_app().await;
    let open = |token: &str, queue: &str| {
        app.client
            .get(format!("{}/v1/queue/events?queue={queue}", app.base))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(
        open(&app.rita, "legal").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        open(&app.agent, "support").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let mut feed = open(&app.rita, "support").await.unwrap();
    assert_eq!(feed.status(), StatusCode::OK);
    assert_eq!(feed.headers()["content-type"], "text/event-stream");
    let id = submit_item(&app).await;
    let mut seen = String::new();
    tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while !seen.contains("event: queue") {
            let chunk = feed.chunk().await.unwrap().expect("the feed stays open");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("the new item is announced within 20 s");
    assert!(seen.contains(r#""open":1"#), "{seen}");
    // The feed says how many are open and where the log is, never which items: the id of the
    // item is not in it.
    assert!(!seen.contains(&id), "{seen}");
}
