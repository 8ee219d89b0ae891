//! The HTTP API on a real socket: the real server on 127.0.0.1:0 over a real log on disk, driven
//! with a real HTTP client.

use chrono::{TimeZone, Utc};
use ledger::clock::Clock;
use ledger::expiry_policy::ExpiryPolicies;
use ledger::http::AppState;
use ledger::log::{EventLog, FileLog};
use ledger::projector::Projector;
use projections::principal::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

/// A running ledger: its address, its log, its clock, and a token per principal.
pub struct App {
    pub base: String,
    /// The router `call` sends requests through directly, when set (servers over the in-memory
    /// log); otherwise `call` uses the socket at `base`.
    pub oneshot: Option<axum::Router>,
    pub log: Arc<dyn EventLog>,
    pub projector: Projector,
    pub dispatcher: ledger::callbacks::Dispatcher,
    pub callback_key: ledger::callbacks::CallbackKey,
    /// Where the server and `dispatcher` let callbacks go ([`loopback_callbacks`] by default).
    pub callback_policy: ledger::callback_policy::CallbackPolicy,
    pub clock: Clock,
    pub client: reqwest::Client,
    pub admin: String,
    pub agent: String,
    pub rita: String,
    pub sam: String,
    pub auditor: String,
    _dir: Option<tempfile::TempDir>,
}

/// The test suite's receivers listen on 127.0.0.1, which callbacks may reach only when the
/// operator allows it (`serve --callback-allow 127.0.0.0/8`).
pub fn loopback_callbacks() -> ledger::callback_policy::CallbackPolicy {
    ledger::callback_policy::CallbackPolicy::allowing(["127.0.0.0/8"]).unwrap()
}

/// The test suite's server over the in-memory log; [`App::call`] goes through `router.oneshot`
/// (no socket), while `base` still serves the same router on 127.0.0.1 for tests that need a
/// connection (long-polls, feeds, raw requests).
pub async fn spawn_app() -> App {
    spawn_app_with(|state| state).await
}

/// [`spawn_app`] whose server and dispatcher let callbacks go where `callback_policy` says.
pub async fn spawn_app_with_callback_policy(
    callback_policy: ledger::callback_policy::CallbackPolicy,
) -> App {
    spawn_app_configured(callback_policy, Default::default(), |state| state).await
}

/// [`spawn_app`] with the server's state changed by `configure` before it serves (a `with_*`
/// builder of `AppState`: expiry policies, …).
pub async fn spawn_app_with(configure: impl FnOnce(AppState) -> AppState) -> App {
    let log: Arc<dyn EventLog> = Arc::new(ledger::log::MemoryLog::new());
    spawn_app_over(log, loopback_callbacks(), configure, None).await
}

/// [`spawn_app`] over a log with `options`, its state changed by `configure` before it serves.
pub async fn spawn_app_on_log(
    options: ledger::log::FileLogOptions,
    configure: impl FnOnce(AppState) -> AppState,
) -> App {
    spawn_app_configured(loopback_callbacks(), options, configure).await
}

async fn spawn_app_configured(
    callback_policy: ledger::callback_policy::CallbackPolicy,
    options: ledger::log::FileLogOptions,
    configure: impl FnOnce(AppState) -> AppState,
) -> App {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(FileLog::open(dir.path(), options, "api test").unwrap());
    spawn_app_over(log, callback_policy, configure, Some(dir)).await
}

/// The test suite's server over `log`, built as `ledger serve` builds it (`ledger::app::build`),
/// with a manual clock and no background jobs (tests tick the scheduler and the dispatcher by
/// hand), serving on 127.0.0.1:0.
pub async fn spawn_app_over(
    log: Arc<dyn EventLog>,
    callback_policy: ledger::callback_policy::CallbackPolicy,
    configure: impl FnOnce(AppState) -> AppState,
    dir: Option<tempfile::TempDir>,
) -> App {
    // reqwest's clients need a crypto provider installed first (see `ledger::tls`).
    ledger::tls::install_crypto_provider();
    let clock = Clock::manual(Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap());
    let callback_key = ledger::callbacks::CallbackKey::from_bytes([7; 32]);
    let mut config = ledger::app::ServerConfig::new(clock.clone(), callback_key.clone());
    config.delivery.policy = callback_policy.clone();
    config.admin_token = Some("admin-token".into());
    config.background = None;
    let built = ledger::app::build(config, log.clone()).await.unwrap();
    let admin = built
        .created_admin_token
        .clone()
        .expect("a fresh ledger creates its admin");
    let projector = built.projector.clone();
    let add = |name: &'static str, role: Role, queues: &[&str]| {
        let log = log.clone();
        let projector = projector.clone();
        let queues: Vec<String> = queues.iter().map(|queue| queue.to_string()).collect();
        async move {
            ledger::principals::add_principal(log.as_ref(), &projector, "admin", name, role, queues)
                .await
                .unwrap()
        }
    };
    let agent = add("agent-1", Role::Agent, &[]).await;
    let rita = add("rita", Role::Reviewer, &["support"]).await;
    let sam = add("sam", Role::Reviewer, &["legal"]).await;
    let auditor = add("audrey", Role::Auditor, &[]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let state = configure(built.state);
    let router = ledger::http::router(state);
    tokio::spawn(ledger::http::server::serve_router(
        listener,
        router.clone(),
        ledger::http::server::ConnectionLimits::default(),
        std::future::pending(),
    ));
    App {
        base: format!("http://{address}"),
        // On the in-memory log, `call` needs no socket.
        oneshot: dir.is_none().then_some(router),
        log,
        projector,
        dispatcher: built.dispatcher,
        callback_key,
        callback_policy,
        clock,
        client: reqwest::Client::new(),
        admin,
        agent,
        rita,
        sam,
        auditor,
        _dir: dir,
    }
}

impl App {
    /// The file log's data directory (the test suite's servers run on the file log unless
    /// built with `spawn_app_over`).
    pub fn data_dir(&self) -> &std::path::Path {
        self._dir
            .as_ref()
            .expect("this test's server runs on a file log")
            .path()
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        if let Some(router) = &self.oneshot {
            return call_router(router, method, path, token, body).await;
        }
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let (status, text) = answer_text(response).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Adds a principal as the admin (`body` as `POST /v1/principals` takes it); its token.
    pub async fn add_principal(&self, body: Value) -> String {
        let (status, added) = self
            .call("POST", "/v1/principals", &self.admin, Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{added}");
        added["token"].as_str().unwrap().to_owned()
    }

    pub async fn submit(&self, body: Value) -> Value {
        let (status, item) = self
            .call("POST", "/v1/items", &self.agent, Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{item}");
        item
    }
}

/// One request through `router.oneshot`, answered as [`App::call`] answers.
async fn call_router(
    router: &axum::Router,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    use tower::ServiceExt;
    let mut request = axum::http::Request::builder().method(method).uri(path);
    if !token.is_empty() {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = match body {
        Some(body) => request
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string())),
        None => request.body(axum::body::Body::empty()),
    }
    .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    if status.is_client_error() || status.is_server_error() {
        assert_eq!(content_type, "application/problem+json", "{status}: {text}");
    }
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// An answer's status and text, having checked that every 4xx and 5xx is problem+json.
pub async fn answer_text(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    if status.is_client_error() || status.is_server_error() {
        assert_eq!(content_type, "application/problem+json", "{status}: {text}");
    }
    (status, text)
}

/// Submits an item with `callback_url` and rejects it, so that a delivery is owed; its id.
pub async fn submit_and_decide(app: &App, callback_url: &str) -> String {
    let mut body = reply_for_review();
    body["callback_url"] = json!(callback_url);
    let item = app.submit(body).await;
    let id = item["id"].as_str().unwrap().to_owned();
    let (status, _) = app
        .call(
            "POST",
            &format!("/v1/items/{id}/reject"),
            &app.rita,
            Some(json!({"reason": "wrong customer"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    id
}

pub fn reply_for_review() -> Value {
    json!({
        "queue": "support",
        "kind": "customer-reply",
        "model": {"name": "gpt-x", "version": "2026-10"},
        "output": {"reply": "Your refund is on its way."},
        "context": {"ticket": 4711},
        "confidence": 0.82,
        "priority": 3,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_claim_edit_approve_and_the_agent_learns_the_decision() {
    let app = spawn_app().await;
    let item = app.submit(reply_for_review()).await;
    let id = item["id"].as_str().unwrap().to_owned();
    assert_eq!(item["version"], 0);
    assert_eq!(item["status"], "pending");

    // The agent long-polls while the reviewer works.
    let poll = {
        let client = app.client.clone();
        let url = format!("{}/v1/items/{id}/decision?wait=20s", app.base);
        let token = app.agent.clone();
        tokio::spawn(async move {
            let response = client.get(url).bearer_auth(token).send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        })
    };

    let (status, queue) = app.call("GET", "/v1/queue", &app.rita, None).await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    assert_eq!(queue["items"][0]["id"], id.as_str());

    let (status, claimed) = app
        .call(
            "POST",
            &format!("/v1/items/{id}/claim"),
            &app.rita,
            Some(json!({"lease_seconds": 600})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    let edited = json!({"reply": "Dear Ms Jones, your refund of 42.10 EUR was sent today."});
    let (status, decided) = app
        .call(
            "POST",
            &format!("/v1/items/{id}/edit"),
            &app.rita,
            Some(json!({"output": edited, "note": "name and amount", "seen_output_hash": item["output_hash"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    assert_eq!(decided["status"], "edited_and_approved");

    let (status, answer) = poll.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["decision"]["final_output"], edited);

    // The audit trail: every event, hash-linked.
    let (status, trail) = app
        .call("GET", &format!("/v1/items/{id}/events"), &app.auditor, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let events = trail["events"].as_array().unwrap();
    let types: Vec<&str> = events
        .iter()
        .map(|event| event["type"].as_str().unwrap())
        .collect();
    assert_eq!(types[0], "ItemSubmitted");
    assert!(
        types.contains(&"ItemClaimed")
            && types.contains(&"OutputEdited")
            && types.contains(&"ItemDecided"),
        "{types:?}"
    );
    for pair in events.windows(2) {
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"]);
    }
    assert_eq!(events[0]["actor"], "agent-1");
    assert_eq!(events[1]["actor"], "rita");

    // Decided: out of the open queue; deciding again is a conflict.
    let (_, queue) = app.call("GET", "/v1/queue", &app.rita, None).await;
    assert_eq!(queue["items"].as_array().unwrap().len(), 0);
    let (status, problem) = app
        .call(
            "POST",
            &format!("/v1/items/{id}/reject"),
            &app.rita,
            Some(json!({"reason": "late"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(problem["rule"], "already-decided");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_right_after_a_write_sees_it() {
    // Writes answer from their own fold without waiting for the projector; reads wait until the
    // read models hold everything committed. So each read below, sent the moment the write before
    // it was answered, must see that write: the item, the queue, the next command, the decision.
    let app = spawn_app().await;
    for round in 0..60 {
        let item = app.submit(reply_for_review()).await;
        let id = item["id"].as_str().unwrap().to_owned();
        let (status, got) = app
            .call("GET", &format!("/v1/items/{id}"), &app.agent, None)
            .await;
        assert_eq!(
            (status, &got["version"]),
            (StatusCode::OK, &json!(0)),
            "round {round}: {got}"
        );

        let (status, claimed) = app
            .call("POST", &format!("/v1/items/{id}/claim"), &app.rita, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{claimed}");
        assert_eq!(claimed["version"], 1);
        let (_, got) = app
            .call("GET", &format!("/v1/items/{id}"), &app.rita, None)
            .await;
        assert_eq!(got["claim"]["reviewer"], "rita", "round {round}: {got}");
        assert_eq!(got["version"], 1);
        let (_, mine) = app
            .call(
                "GET",
                "/v1/queue?status=claimed&assignee=rita",
                &app.rita,
                None,
            )
            .await;
        assert!(
            mine["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|entry| entry["id"] == id.as_str()),
            "round {round}: {mine}"
        );

        // The next command decides on the claimed item, not on a stale copy (which would be 409).
        let (status, approved) = app
            .call("POST", &format!("/v1/items/{id}/approve"), &app.rita, None)
            .await;
        assert_eq!(status, StatusCode::OK, "round {round}: {approved}");
        let (status, decision) = app
            .call("GET", &format!("/v1/items/{id}/decision"), &app.agent, None)
            .await;
        assert_eq!(status, StatusCode::OK, "round {round}: {decision}");
        assert_eq!(decision["status"], "approved");
        assert_eq!(
            decision, approved,
            "the write's answer is what the read models hold"
        );
    }

    // The mechanism itself, where a client round trip cannot hide a lagging projector: right
    // after an append is acknowledged, `caught_up` returns only once the read models hold it.
    let log: Arc<dyn EventLog> = app.log.clone();
    let state = AppState::new(log.clone(), app.projector.clone(), app.clock.clone());
    let item = app.submit(reply_for_review()).await;
    let id: uuid::Uuid = item["id"].as_str().unwrap().parse().unwrap();
    for round in 0..200u64 {
        let context = projections::item::CommandContext::new("rita", app.clock.now());
        let command = projections::item::Command::Comment {
            text: format!("note {round}"),
        };
        ledger::commands::execute(log.as_ref(), id, &command, &context, None)
            .await
            .unwrap();
        state.caught_up().await.unwrap();
        assert!(
            app.projector.applied() >= log.head().await.unwrap(),
            "round {round}"
        );
        assert_eq!(app.projector.read().board.item_version(id), Some(round + 1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix() {
    let app = spawn_app().await;
    let item = app.submit(reply_for_review()).await;
    let id = item["id"].as_str().unwrap().to_owned();
    let item_path = format!("/v1/items/{id}");
    let approve = format!("/v1/items/{id}/approve");

    // No token, a bad token.
    assert_eq!(
        app.call("GET", &item_path, "", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.call("GET", &item_path, "not-a-token", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Only agents submit.
    for token in [&app.rita, &app.auditor, &app.admin] {
        assert_eq!(
            app.call("POST", "/v1/items", token, Some(reply_for_review()))
                .await
                .0,
            StatusCode::FORBIDDEN
        );
    }
    // Agents do not review, auditors change nothing, reviewers stay in their queues.
    assert_eq!(
        app.call("POST", &approve, &app.agent, None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.call("POST", &approve, &app.auditor, None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.call("POST", &approve, &app.admin, None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.call("POST", &approve, &app.sam, None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.call("GET", &item_path, &app.sam, None).await.0,
        StatusCode::FORBIDDEN
    );
    // The queue: reviewers (their queues), auditors and admins; not agents.
    assert_eq!(
        app.call("GET", "/v1/queue", &app.agent, None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.call("GET", "/v1/queue?queue=support", &app.sam, None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.call("GET", "/v1/queue", &app.auditor, None).await.0,
        StatusCode::OK
    );
    // Reads: the submitting agent, auditors, admins, the queue's reviewers.
    for token in [&app.agent, &app.auditor, &app.admin, &app.rita] {
        assert_eq!(
            app.call("GET", &item_path, token, None).await.0,
            StatusCode::OK
        );
    }
    // Only the submitter revises or withdraws; nothing was written by any refusal.
    let head = app.log.head().await.unwrap();
    assert_eq!(
        app.call("POST", &format!("/v1/items/{id}/withdraw"), &app.rita, None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(app.log.head().await.unwrap(), head);
    let (status, withdrawn) = app
        .call(
            "POST",
            &format!("/v1/items/{id}/withdraw"),
            &app.agent,
            Some(json!({"reason": "superseded"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{withdrawn}");
    assert_eq!(withdrawn["status"], "withdrawn");
}

/// The status and content type of a POST with a body over the limit. The server answers 413 from
/// the Content-Length and may close the connection before the client has written the whole body;
/// the client then sees a reset instead of the answer, so transport errors are retried: what
/// matters is the answer, when one arrives. A client of its own, so that the closed connection
/// does not go back to the shared pool.
async fn post_too_large(app: &App, path: &str, body: &Value) -> (StatusCode, Option<String>) {
    for _ in 0..5 {
        let sent = reqwest::Client::new()
            .post(format!("{}{path}", app.base))
            .bearer_auth(&app.agent)
            .json(body)
            .send()
            .await;
        if let Ok(response) = sent {
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            return (response.status(), content_type);
        }
    }
    panic!("no answer to POST {path} in five tries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_problem_and_writes_nothing() {
    let app = spawn_app().await;
    let item = app.submit(reply_for_review()).await;
    let id = item["id"].as_str().unwrap().to_owned();
    let head = app.log.head().await.unwrap();
    let raw = |body: &'static str| {
        app.client
            .post(format!("{}/v1/items", app.base))
            .bearer_auth(&app.agent)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let malformed = raw("{\"queue\": ").await.unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        malformed.headers()["content-type"],
        "application/problem+json"
    );
    let mut wrong_type = reply_for_review();
    wrong_type["priority"] = json!("high");
    assert_eq!(
        app.call("POST", "/v1/items", &app.agent, Some(wrong_type))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let mut unknown = reply_for_review();
    unknown["submitted_by"] = json!("someone-else");
    assert_eq!(
        app.call("POST", "/v1/items", &app.agent, Some(unknown))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let mut out_of_range = reply_for_review();
    out_of_range["confidence"] = json!(1.5);
    let (status, problem) = app
        .call("POST", "/v1/items", &app.agent, Some(out_of_range))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["rule"], "invalid");
    // Just over the limit, as a submission and as an action's optional body: 413 as problem+json.
    let mut huge = reply_for_review();
    huge["output"] = json!({"reply": "x".repeat(ledger::http::MAX_BODY_BYTES)});
    let huge_comment = json!({"text": "x".repeat(ledger::http::MAX_BODY_BYTES)});
    for (path, body) in [
        ("/v1/items".to_owned(), &huge),
        (format!("/v1/items/{id}/comments"), &huge_comment),
    ] {
        assert_eq!(
            post_too_large(&app, &path, body).await,
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                Some("application/problem+json".to_owned())
            ),
            "{path}"
        );
    }
    assert_eq!(
        app.call("GET", "/v1/items/not-a-uuid", &app.agent, None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // A capture that is not UTF-8 once percent-decoded: a problem, not the framework's text.
    for (method, path, token) in [
        ("POST", "/v1/items/%FF/claim".to_owned(), &app.rita),
        ("POST", format!("/v1/items/{id}/%FF"), &app.rita),
        ("GET", "/v1/items/%FF".to_owned(), &app.agent),
        ("GET", "/v1/items/%FF/events".to_owned(), &app.agent),
        ("GET", "/v1/items/%FF/decision".to_owned(), &app.agent),
    ] {
        assert_eq!(
            app.call(method, &path, token, None).await.0,
            StatusCode::BAD_REQUEST,
            "{method} {path}"
        );
    }
    assert_eq!(
        app.call("GET", "/v1/queue?cursor=garbage", &app.rita, None)
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.call("GET", "/v1/queue?limit=ten", &app.rita, None)
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.call(
            "POST",
            &format!("/v1/items/{id}/reject"),
            &app.rita,
            Some(json!({"reason": ""}))
        )
        .await
        .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.call("POST", &format!("/v1/items/{id}/explode"), &app.rita, None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let stale = app
        .client
        .post(format!("{}/v1/items/{id}/claim", app.base))
        .bearer_auth(&app.rita)
        .header("if-match", "\"7\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::CONFLICT);
    assert_eq!(
        app.log.head().await.unwrap(),
        head,
        "no refused request wrote anything"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_makes_a_retry_return_the_first_item() {
    let app = spawn_app().await;
    let send = || {
        app.client
            .post(format!("{}/v1/items", app.base))
            .bearer_auth(&app.agent)
            .header("idempotency-key", "ticket-4711-draft-1")
            .json(&reply_for_review())
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let head = app.log.head().await.unwrap();
    let again = send().await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(
        app.log.head().await.unwrap(),
        head,
        "the retry stored nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decision_long_poll_answers_202_when_the_wait_ends() {
    let app = spawn_app().await;
    let item = app.submit(reply_for_review()).await;
    let id = item["id"].as_str().unwrap();
    let (status, state) = app
        .call(
            "GET",
            &format!("/v1/items/{id}/decision?wait=200ms"),
            &app.agent,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(state["status"], "pending");
    // Changes requested is an answer too: the agent can redraft at once.
    let (status, _) = app
        .call(
            "POST",
            &format!("/v1/items/{id}/request-changes"),
            &app.rita,
            Some(json!({"instructions": "Use the customer's name."})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, state) = app
        .call(
            "GET",
            &format!("/v1/items/{id}/decision?wait=5s"),
            &app.agent,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(state["status"], "changes_requested");
    let _ = &app.clock;
}

#[tokio::test]
async fn healthz_and_unknown_routes() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let health: Value = response.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["events"], app.log.head().await.unwrap());
    assert_eq!(health["projected"], app.log.head().await.unwrap());
    let (status, problem) = app.call("GET", "/nothing-here", &app.admin, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["status"], 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_lapse_and_deadlines_pass_exactly_once_on_an_injected_clock() {
    let app = spawn_app().await;
    let start = app.clock.now();
    let mut body = reply_for_review();
    body["due_at"] = json!((start + chrono::Duration::hours(1)).to_rfc3339());
    let item = app.submit(body).await;
    let id = item["id"].as_str().unwrap().to_owned();
    let item_id = uuid::Uuid::parse_str(&id).unwrap();
    let (status, _) = app
        .call(
            "POST",
            &format!("/v1/items/{id}/claim"),
            &app.rita,
            Some(json!({"lease_seconds": 60})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let log: Arc<dyn EventLog> = app.log.clone();

    // Nothing is due yet.
    let policies = ExpiryPolicies::default();
    let tick = ledger::scheduler::tick(log.as_ref(), &app.projector, &app.clock, &policies).await;
    assert_eq!(tick, ledger::scheduler::Tick::default());

    // The lease lapses: one ClaimExpired, however many timers race for it.
    app.clock.advance(chrono::Duration::minutes(2));
    let racing = futures_join(log.clone(), app.projector.clone(), app.clock.clone()).await;
    let expired: usize = racing.iter().map(|tick| tick.claims_expired.len()).sum();
    assert_eq!(expired, 1, "{racing:?}");
    let (_, claimed) = app
        .call("GET", &format!("/v1/items/{id}"), &app.rita, None)
        .await;
    assert_eq!(claimed["claim"], Value::Null, "{claimed}");

    // The deadline passes: one ItemExpired with the policy's action (the built-in reject), once.
    app.clock.advance(chrono::Duration::hours(2));
    let racing = futures_join(log.clone(), app.projector.clone(), app.clock.clone()).await;
    let expired: Vec<_> = racing
        .iter()
        .flat_map(|tick| tick.items_expired.clone())
        .collect();
    assert_eq!(expired, vec![item_id], "{racing:?}");
    let (_, ended) = app
        .call("GET", &format!("/v1/items/{id}"), &app.agent, None)
        .await;
    assert_eq!(ended["status"], "rejected_on_expiry");
    let (_, queue) = app.call("GET", "/v1/queue", &app.rita, None).await;
    assert_eq!(queue["items"].as_array().unwrap().len(), 0);

    // After a restart (a fresh projector rebuilt from the same log), nothing fires again.
    let rebuilt = Projector::start(log.clone()).await.unwrap();
    let after_restart =
        ledger::scheduler::tick(log.as_ref(), &rebuilt, &app.clock, &policies).await;
    assert_eq!(after_restart, ledger::scheduler::Tick::default());
    let trail = log
        .read_stream(&format!("item-{id}"), 0, 100)
        .await
        .unwrap();
    let count = |kind: &str| {
        trail
            .iter()
            .filter(|event| event.event_type == kind)
            .count()
    };
    assert_eq!((count("ClaimExpired"), count("ItemExpired")), (1, 1));
    assert!(
        trail
            .iter()
            .filter(|event| event.event_type == "ItemExpired")
            .all(|event| event.actor == "system")
    );
}

/// Four scheduler passes at once.
async fn futures_join(
    log: Arc<dyn EventLog>,
    projector: Projector,
    clock: Clock,
) -> Vec<ledger::scheduler::Tick> {
    let mut passes = Vec::new();
    for _ in 0..4 {
        let (log, projector, clock) = (log.clone(), projector.clone(), clock.clone());
        passes.push(tokio::spawn(async move {
            ledger::scheduler::tick(log.as_ref(), &projector, &clock, &ExpiryPolicies::default())
                .await
        }));
    }
    let mut ticks = Vec::new();
    for pass in passes {
        ticks.push(pass.await.unwrap());
    }
    ticks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_reviewers_over_http_decide_each_item_exactly_once() {
    let app = spawn_app().await;
    let log: Arc<dyn EventLog> = app.log.clone();
    let mut reviewers = Vec::new();
    for number in 0..50 {
        let name = format!("reviewer-{number:02}");
        let token = ledger::principals::add_principal(
            log.as_ref(),
            &app.projector,
            "admin",
            &name,
            Role::Reviewer,
            vec!["support".into()],
        )
        .await
        .unwrap();
        reviewers.push(token);
    }

    // 50 reviewers approve one item at once: one wins, 49 get 409.
    let item = app.submit(reply_for_review()).await;
    let id = item["id"].as_str().unwrap().to_owned();
    let mut attempts = Vec::new();
    for token in &reviewers {
        let request = app
            .client
            .post(format!("{}/v1/items/{id}/approve", app.base))
            .bearer_auth(token)
            .send();
        attempts.push(tokio::spawn(request));
    }
    let mut statuses = Vec::new();
    for attempt in attempts {
        statuses.push(attempt.await.unwrap().unwrap().status());
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|status| **status == StatusCode::OK)
            .count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|status| **status == StatusCode::CONFLICT)
            .count(),
        49,
        "{statuses:?}"
    );

    // 1,000 racing decisions on 100 items: exactly 100 decisions.
    let mut ids = Vec::new();
    for _ in 0..100 {
        ids.push(
            app.submit(reply_for_review()).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let mut attempts = Vec::new();
    for round in 0..10 {
        for (number, id) in ids.iter().enumerate() {
            let token = reviewers[(number + round * 7) % reviewers.len()].clone();
            let (action, body) = if round % 3 == 0 {
                ("reject", json!({"reason": "not good enough"}))
            } else {
                ("approve", json!({}))
            };
            let request = app
                .client
                .post(format!("{}/v1/items/{id}/{action}", app.base))
                .bearer_auth(token)
                .json(&body)
                .send();
            attempts.push(tokio::spawn(request));
        }
    }
    let mut succeeded = 0;
    for attempt in attempts {
        let status = attempt.await.unwrap().unwrap().status();
        match status {
            StatusCode::OK => succeeded += 1,
            StatusCode::CONFLICT => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(succeeded, 100);
    let mut decisions = 0;
    for id in &ids {
        let trail = log
            .read_stream(&format!("item-{id}"), 0, 100)
            .await
            .unwrap();
        let decided = trail
            .iter()
            .filter(|event| event.event_type == "ItemDecided")
            .count();
        assert_eq!(decided, 1, "item {id}");
        decisions += decided;
    }
    assert_eq!(decisions, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_manage_principals_and_a_revoked_token_stops_working() {
    let app = spawn_app().await;
    let token = app
        .add_principal(json!({"name": "nina", "role": "reviewer", "queues": ["support"]}))
        .await;
    assert_eq!(
        app.call("GET", "/v1/queue", &token, None).await.0,
        StatusCode::OK
    );

    let (status, listed) = app.call("GET", "/v1/principals", &app.admin, None).await;
    assert_eq!(status, StatusCode::OK);
    let text = listed.to_string();
    assert!(
        text.contains("nina") && !text.contains(&token),
        "tokens are never listed"
    );
    assert!(!text.contains("token_hash"), "nor their hashes");

    assert_eq!(
        app.call(
            "POST",
            "/v1/principals",
            &app.rita,
            Some(json!({"name": "x", "role": "admin"}))
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.call(
            "POST",
            "/v1/principals",
            &app.admin,
            Some(json!({"name": "nina", "role": "agent"}))
        )
        .await
        .0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        app.call(
            "POST",
            "/v1/principals",
            &app.admin,
            Some(json!({"name": "Bad Name!", "role": "agent"}))
        )
        .await
        .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.call(
            "POST",
            "/v1/principals",
            &app.admin,
            Some(json!({"name": "y", "role": "overlord"}))
        )
        .await
        .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.call("DELETE", "/v1/principals/admin", &app.admin, None)
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    let (status, revoked) = app
        .call("DELETE", "/v1/principals/nina", &app.admin, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(
        app.call("GET", "/v1/queue", &token, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.call("DELETE", "/v1/principals/nina", &app.admin, None)
            .await
            .0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        app.call("DELETE", "/v1/principals/nobody", &app.admin, None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_feed_streams_the_log_and_resumes_after_the_last_id() {
    let app = spawn_app().await;
    let first = app.submit(reply_for_review()).await;
    let head = app.log.head().await.unwrap();
    let read_events = |after: Option<u64>, last_event_id: Option<u64>, wanted: usize| {
        let client = app.client.clone();
        let mut url = format!("{}/v1/events", app.base);
        if let Some(after) = after {
            url = format!("{url}?after={after}");
        }
        let token = app.auditor.clone();
        async move {
            let mut request = client.get(url).bearer_auth(token);
            if let Some(id) = last_event_id {
                request = request.header("last-event-id", id.to_string());
            }
            let mut response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert!(
                response.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/event-stream")
            );
            let mut text = String::new();
            let mut ids = Vec::new();
            while ids.len() < wanted {
                let chunk =
                    tokio::time::timeout(std::time::Duration::from_secs(10), response.chunk())
                        .await
                        .expect("the feed keeps flowing")
                        .unwrap()
                        .expect("the feed stays open");
                text.push_str(&String::from_utf8_lossy(&chunk));
                ids = text
                    .lines()
                    .filter_map(|line| {
                        line.strip_prefix("id: ")
                            .or_else(|| line.strip_prefix("id:"))
                    })
                    .map(|id| id.trim().parse::<u64>().unwrap())
                    .collect();
            }
            (ids, text)
        }
    };
    let (ids, text) = read_events(None, None, head as usize).await;
    assert_eq!(ids, (0..head).collect::<Vec<_>>());
    assert!(text.contains("event: ItemSubmitted"), "{text}");
    assert!(text.contains(first["id"].as_str().unwrap()));

    // Live: an append made while the client listens arrives.
    let listening = tokio::spawn(read_events(Some(head - 1), None, 1));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    app.submit(reply_for_review()).await;
    let (ids, _) = listening.await.unwrap();
    assert_eq!(ids, vec![head]);

    // Resuming with Last-Event-ID starts right after it.
    let (ids, _) = read_events(None, Some(head - 2), 2).await;
    assert_eq!(ids, vec![head - 1, head]);
    assert_eq!(
        app.call("GET", "/v1/events", &app.rita, None).await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_in_the_prometheus_text_format() {
    let app = spawn_app().await;
    app.submit(reply_for_review()).await;
    app.call("GET", "/v1/queue", &app.rita, None).await;
    app.call("GET", "/v1/queue", "", None).await;
    let response = app
        .client
        .get(format!("{}/metrics", app.base))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|line| {
                line.strip_prefix(series)
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
    };
    assert_eq!(
        value("ledger_events_total"),
        app.log.head().await.unwrap() as f64
    );
    assert_eq!(value("ledger_projection_lag_events"), 0.0);
    assert_eq!(value("ledger_queue_depth{queue=\"support\"}"), 1.0);
    assert_eq!(
        value("ledger_http_requests_total{method=\"POST\",route=\"/v1/items\",status=\"201\"}"),
        1.0
    );
    assert_eq!(
        value("ledger_http_requests_total{method=\"GET\",route=\"/v1/queue\",status=\"401\"}"),
        1.0
    );
    assert_eq!(
        value(
            "ledger_http_request_duration_seconds_count{method=\"GET\",route=\"/v1/queue\",status=\"200\"}"
        ),
        1.0
    );
    assert!(text.contains("ledger_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/queue\",status=\"200\",le=\"+Inf\"} 1"));
}

/// Every call a webhook received: its headers and body.
pub type Calls = Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, Vec<u8>)>>>;

/// A workflow engine's webhook at `/hook`: fails the first `failures` calls with 503, then
/// answers 200; records every call's headers and body.
pub fn receiver(failures: usize) -> (axum::Router, Calls) {
    let calls: Calls = Arc::default();
    let recorded = calls.clone();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let recorded = recorded.clone();
                async move {
                    let mut calls = recorded.lock().unwrap();
                    calls.push((headers, body.to_vec()));
                    if calls.len() <= failures {
                        axum::http::StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        axum::http::StatusCode::OK
                    }
                }
            },
        ),
    );
    (router, calls)
}

/// [`receiver`] over plain HTTP on 127.0.0.1; returns its URL.
pub async fn spawn_receiver(failures: usize) -> (String, Calls) {
    let (router, calls) = receiver(failures);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{address}/hook"), calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decision_is_posted_to_the_callback_signed_and_retried_until_delivered() {
    let app = spawn_app().await;
    let (url, calls) = spawn_receiver(2).await;
    let mut body = reply_for_review();
    body["callback_url"] = json!(url);
    let item = app.submit(body).await;
    let id = item["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.dispatcher.tick().await,
        0,
        "nothing is owed before a decision"
    );

    let edited = json!({"reply": "Dear Ms Jones, your refund was sent today."});
    let (status, _) = app
        .call(
            "POST",
            &format!("/v1/items/{id}/edit"),
            &app.rita,
            Some(json!({"output": edited})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // First attempt: 503. Nothing more until the backoff has passed.
    assert_eq!(app.dispatcher.tick().await, 1);
    assert_eq!(app.dispatcher.tick().await, 0);
    app.clock.advance(chrono::Duration::seconds(1));
    assert_eq!(app.dispatcher.tick().await, 1, "second attempt after 1 s");
    app.clock.advance(chrono::Duration::seconds(1));
    assert_eq!(app.dispatcher.tick().await, 0, "the third waits 2 s");
    app.clock.advance(chrono::Duration::seconds(1));
    assert_eq!(app.dispatcher.tick().await, 1);
    assert_eq!(
        app.dispatcher.tick().await,
        0,
        "delivered: nothing more is owed"
    );

    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 3);
    let secret = app.callback_key.secret_for("agent-1");
    let key = app.callback_key.secret_key_for("agent-1");
    let delivery = calls[0].0["webhook-id"].clone();
    // Attempts at 0 s, 1 s and 3 s (the clock moved 3 s in all).
    let first_attempt_at = app.clock.now().timestamp() - 3;
    for (attempt, (headers, body)) in calls.iter().enumerate() {
        assert_eq!(
            headers["webhook-id"], delivery,
            "one delivery id for every attempt"
        );
        assert_eq!(headers["x-ledger-delivery"], delivery);
        assert_eq!(
            headers["x-ledger-attempt"],
            (attempt + 1).to_string().as_str()
        );
        // Each attempt is signed at its own time.
        let timestamp = first_attempt_at + [0, 1, 3][attempt];
        assert_eq!(headers["webhook-timestamp"], timestamp.to_string().as_str());
        assert_eq!(
            headers["webhook-signature"].to_str().unwrap(),
            ledger::callbacks::webhook_signature(&key, delivery.to_str().unwrap(), timestamp, body),
            "the signature checks with the agent's secret"
        );
        assert!(headers.get("x-ledger-signature").is_none());
    }
    let delivered: Value = serde_json::from_slice(&calls[2].1).unwrap();
    assert_eq!(delivered["item"]["id"], id.as_str());
    assert_eq!(delivered["answer"]["type"], "ItemDecided");
    assert_eq!(delivered["decision"]["final_output"], edited);
    assert_eq!(delivered["answer"]["hash"].as_str().unwrap().len(), 64);

    // The agent can fetch its secret; a reviewer cannot.
    let (status, fetched) = app
        .call(
            "GET",
            "/v1/principals/agent-1/callback-secret",
            &app.agent,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched["secret"], secret.as_str());
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(
        app.call(
            "GET",
            "/v1/principals/agent-1/callback-secret",
            &app.rita,
            None
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );

    // Every attempt is an event; after a restart nothing is owed and nothing is sent again.
    let log: Arc<dyn EventLog> = app.log.clone();
    let trail = log
        .read_stream(&format!("callback-{id}"), 0, 100)
        .await
        .unwrap();
    let attempts: Vec<Value> = trail
        .iter()
        .map(|event| event.data_json().unwrap())
        .collect();
    assert_eq!(attempts.len(), 3);
    let outcomes: Vec<bool> = attempts
        .iter()
        .map(|attempt| attempt["delivered"].as_bool().unwrap())
        .collect();
    assert_eq!(outcomes, vec![false, false, true]);
    assert_eq!(attempts[0]["status"], 503);
    let restarted = Projector::start(log.clone()).await.unwrap();
    let after_restart = ledger::callbacks::Dispatcher::new(
        log.clone(),
        restarted,
        app.clock.clone(),
        app.callback_key.clone(),
    )
    .with_callback_policy(app.callback_policy.clone());
    app.clock.advance(chrono::Duration::hours(1));
    assert_eq!(after_restart.tick().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_callback_is_abandoned_after_the_last_retry_and_a_restart_resumes_retries() {
    let app = spawn_app().await;
    // A port nothing listens on.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let id = submit_and_decide(&app, &url).await;
    assert_eq!(app.dispatcher.tick().await, 1);

    // A restart in the middle of the retries picks up where the log says.
    let log: Arc<dyn EventLog> = app.log.clone();
    let restarted = ledger::callbacks::Dispatcher::new(
        log.clone(),
        Projector::start(log.clone()).await.unwrap(),
        app.clock.clone(),
        app.callback_key.clone(),
    )
    .with_callback_policy(app.callback_policy.clone());
    let mut made = 1;
    for _ in 0..20 {
        app.clock.advance(chrono::Duration::minutes(5));
        made += restarted.tick().await;
    }
    assert_eq!(made, projections::delivery::MAXIMUM_ATTEMPTS as usize);
    let trail = log
        .read_stream(&format!("callback-{id}"), 0, 100)
        .await
        .unwrap();
    assert_eq!(trail.last().unwrap().event_type, "CallbackAbandoned");
    let attempted = trail
        .iter()
        .filter(|event| event.event_type == "CallbackAttempted")
        .count();
    assert_eq!(attempted, made);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_routes() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let document: Value = response.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().unwrap();

    // Every documented operation is answered by a route: never 404 (no route) or 405 (no such
    // method on it). Unknown items and missing bodies are fine: 401/400/422 come from handlers.
    let item = app.submit(reply_for_review()).await;
    let id = item["id"].as_str().unwrap();
    let mut operations = 0;
    for (path, methods) in paths {
        for method in methods.as_object().unwrap().keys() {
            let concrete = path.replace("{id}", id).replace("{name}", "agent-1");
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let status = app
                .client
                .request(method.clone(), format!("{}{concrete}", app.base))
                .send()
                .await
                .unwrap()
                .status();
            assert!(
                status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is documented but answered {status}"
            );
            operations += 1;
        }
    }
    assert!(operations >= 20, "{operations}");

    // Every route pattern is documented (the generic action route by its actions).
    for (pattern, _) in ledger::http::routes() {
        let documented = if pattern == "/v1/items/{id}/{action}" {
            [
                "claim",
                "release",
                "approve",
                "edit",
                "reject",
                "request-changes",
                "escalate",
                "comments",
                "revisions",
                "withdraw",
            ]
            .iter()
            .all(|action| paths.contains_key(&format!("/v1/items/{{id}}/{action}")))
        } else {
            paths.contains_key(pattern)
        };
        assert!(documented, "route {pattern} is not in the OpenAPI document");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_long_polls_are_each_answered_when_their_item_is_decided() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(
            app.submit(reply_for_review()).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // 300 waiting clients, 15 on each item.
    let mut waiters = Vec::new();
    for round in 0..15 {
        for id in &ids {
            let client = app.client.clone();
            let url = format!("{}/v1/items/{id}/decision?wait=60s", app.base);
            let token = app.agent.clone();
            let id = id.clone();
            waiters.push(tokio::spawn(async move {
                let response = client.get(url).bearer_auth(token).send().await.unwrap();
                let status = response.status();
                let body: Value = response.json().await.unwrap();
                (round, id, status, body)
            }));
        }
    }
    // Let them all start waiting, then decide the items one by one.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for (number, id) in ids.iter().enumerate() {
        let action = if number % 2 == 0 { "approve" } else { "reject" };
        let (status, _) = app
            .call(
                "POST",
                &format!("/v1/items/{id}/{action}"),
                &app.rita,
                Some(json!({"reason": "no"})).filter(|_| action == "reject"),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let mut answered = 0;
    for waiter in waiters {
        let (_, id, status, body) =
            tokio::time::timeout(std::time::Duration::from_secs(30), waiter)
                .await
                .expect("every waiter is answered long before its wait ends")
                .unwrap();
        assert_eq!(status, StatusCode::OK, "{id}: {body}");
        assert!(
            body["status"] == "approved" || body["status"] == "rejected",
            "{body}"
        );
        answered += 1;
    }
    assert_eq!(answered, 300);
}

/// Every role against every documented operation: allowed callers never get 401/403, the others
/// get 403, and a request without a token gets 401 (but for the public endpoints).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_against_every_operation() {
    let app = spawn_app().await;
    let item = app.submit(reply_for_review()).await;
    let id = item["id"].as_str().unwrap().to_owned();
    let roles = [
        ("agent", app.agent.clone()),
        ("reviewer", app.rita.clone()),
        ("other-reviewer", app.sam.clone()),
        ("auditor", app.auditor.clone()),
        ("admin", app.admin.clone()),
    ];
    // (method, path, body, who may) — who may: the role names above, or "anyone".
    let operations: Vec<(&str, String, Option<Value>, Vec<&str>)> = vec![
        ("GET", "/healthz".into(), None, vec!["anyone"]),
        ("GET", "/metrics".into(), None, vec!["auditor", "admin"]),
        ("GET", "/openapi.json".into(), None, vec!["anyone"]),
        (
            "POST",
            "/v1/items".into(),
            Some(reply_for_review()),
            vec!["agent"],
        ),
        (
            "GET",
            format!("/v1/items/{id}"),
            None,
            vec!["agent", "reviewer", "auditor", "admin"],
        ),
        (
            "GET",
            format!("/v1/items/{id}/events"),
            None,
            vec!["agent", "reviewer", "auditor", "admin"],
        ),
        (
            "GET",
            format!("/v1/items/{id}/decision"),
            None,
            vec!["agent", "reviewer", "auditor", "admin"],
        ),
        (
            "POST",
            format!("/v1/items/{id}/claim"),
            None,
            vec!["reviewer"],
        ),
        (
            "POST",
            format!("/v1/items/{id}/release"),
            None,
            vec!["reviewer"],
        ),
        (
            "POST",
            format!("/v1/items/{id}/comments"),
            Some(json!({"text": "looks fine"})),
            vec!["agent", "reviewer", "admin"],
        ),
        (
            "POST",
            format!("/v1/items/{id}/request-changes"),
            Some(json!({"instructions": "shorter"})),
            vec!["reviewer"],
        ),
        (
            "POST",
            format!("/v1/items/{id}/revisions"),
            Some(json!({"output": {"reply": "v2"}})),
            vec!["agent"],
        ),
        (
            "POST",
            format!("/v1/items/{id}/edit"),
            Some(json!({"output": {"reply": "edited"}})),
            vec!["reviewer"],
        ),
        (
            "POST",
            format!("/v1/items/{id}/approve"),
            None,
            vec!["reviewer"],
        ),
        (
            "POST",
            format!("/v1/items/{id}/reject"),
            Some(json!({"reason": "no"})),
            vec!["reviewer"],
        ),
        (
            "POST",
            format!("/v1/items/{id}/escalate"),
            Some(json!({"to_queue": "legal", "reason": "contract"})),
            vec!["reviewer"],
        ),
        (
            "POST",
            format!("/v1/items/{id}/withdraw"),
            None,
            vec!["agent"],
        ),
        (
            "GET",
            "/v1/queue".into(),
            None,
            vec!["reviewer", "other-reviewer", "auditor", "admin"],
        ),
        ("GET", "/v1/events".into(), None, vec!["auditor", "admin"]),
        (
            "GET",
            "/v1/principals".into(),
            None,
            vec!["auditor", "admin"],
        ),
        (
            "POST",
            "/v1/principals".into(),
            Some(json!({"name": "new-agent", "role": "agent"})),
            vec!["admin"],
        ),
        (
            "DELETE",
            "/v1/principals/nobody".into(),
            None,
            vec!["admin"],
        ),
        (
            "GET",
            "/v1/principals/agent-1/callback-secret".into(),
            None,
            vec!["agent", "admin"],
        ),
    ];
    // Escalation comes after the rejection: the item stays in "support" (a decided item is not
    // escalated), so the grants the table assumes hold throughout.
    // The status only: the event feed's body never ends.
    let status_of = |method: &str, path: &str, token: &str, body: Option<Value>| {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = app.client.request(method, format!("{}{path}", app.base));
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move { request.send().await.unwrap().status() }
    };
    let mut checked = 0;
    for (method, path, body, allowed) in &operations {
        let public = allowed.contains(&"anyone");
        let status = status_of(method, path, "", body.clone()).await;

        if public {
            assert!(
                status.is_success(),
                "{method} {path} without a token: {status}"
            );
        } else {
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} without a token"
            );
        }
        for (role, token) in &roles {
            let status = status_of(method, path, token, body.clone()).await;
            let may = public || allowed.contains(role);
            if may {
                assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{role} may {method} {path}, but got {status}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{role} may not {method} {path}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, operations.len() * roles.len());
}
