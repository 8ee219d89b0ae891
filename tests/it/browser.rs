//! The web page in a real browser: Debian's Chromium, driven by playwright-core
//! (`tests/browser/e2e.mjs`), against the real `ledger serve` binary on a random port. This
//! module starts the server, makes the principals and items the scenarios need through the JSON
//! API, runs the browser scenarios, then rewrites a copy of the log as a forger with write access
//! would (every hash and link recomputed) and shows that the auditor's pages say so.
//! `scripts/browser-env.sh` (run from here, as the test command does) installs Chromium and the
//! two npm packages if they are missing.

use crate::support::serve_binary;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

const ADMIN_TOKEN: &str = "admin-token-for-the-browser-tests";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Installs what the browser tests need (once per process), loudly failing if it cannot.
fn browser_env() {
    static READY: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    READY.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/browser-env.sh");
        let output = std::process::Command::new("bash")
            .arg(&script)
            .output()
            .unwrap_or_else(|error| panic!("running {}: {error}", script.display()));
        assert!(
            output.status.success(),
            "scripts/browser-env.sh could not install the browser toolchain (Debian's chromium, Node.js packages playwright-core and axe-core); the browser tests cannot run:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    });
}

struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Value {
        let (status, answer) = self
            .call(reqwest::Method::POST, path, token, Some(body))
            .await;
        assert!(status.is_success(), "POST {path}: {status} {answer}");
        answer
    }

    async fn get(&self, path: &str, token: &str) -> Value {
        let (status, answer) = self.call(reqwest::Method::GET, path, token, None).await;
        assert!(status.is_success(), "GET {path}: {status} {answer}");
        answer
    }
}

fn submission(kind: &str, priority: i32, output: Value) -> Value {
    json!({
        "queue": "support",
        "kind": kind,
        "model": {"name": "gpt-x", "version": "2026-11"},
        "output": output,
        "context": {"ticket": 4711, "customer": "Ms Jones"},
        "confidence": 0.82,
        "priority": priority,
        "due_at": (chrono::Utc::now() + chrono::Duration::hours(6)).to_rfc3339(),
    })
}

/// Runs one phase of `tests/browser/e2e.mjs` with `config`; panics with its output on failure.
async fn run_scenarios(phase: &str, config: &Value) {
    let output = tokio::process::Command::new("node")
        .arg("e2e.mjs")
        .current_dir(browser_dir())
        .env("LEDGER_E2E", config.to_string())
        .env("LEDGER_E2E_PHASE", phase)
        .output()
        .await
        .expect("running node (the test command installs Node.js's packages; node itself must be on PATH)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    println!("{text}");
    assert!(
        output.status.success(),
        "the browser scenarios of phase {phase} failed:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviewers_auditors_analysts_and_admins_work_the_web_page_in_chromium() {
    browser_env();
    ledger::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve_binary(&data, &["--checkpoint-interval", "200ms"], ADMIN_TOKEN).await;
    let api = Api {
        client: reqwest::Client::new(),
        base: server.base.clone(),
    };
    let mut tokens = serde_json::Map::new();
    tokens.insert("admin".into(), ADMIN_TOKEN.into());
    for body in [
        json!({"name": "drafter", "role": "agent"}),
        json!({"name": "rita", "role": "reviewer", "queues": ["support"]}),
        json!({"name": "omar", "role": "reviewer", "queues": ["support"]}),
        json!({"name": "olga", "role": "auditor"}),
        json!({"name": "anna", "role": "analyst"}),
    ] {
        let added = api.post("/v1/principals", ADMIN_TOKEN, body.clone()).await;
        tokens.insert(
            body["name"].as_str().unwrap().into(),
            added["token"].clone(),
        );
    }
    let agent = tokens["drafter"].as_str().unwrap().to_owned();
    let rita = tokens["rita"].as_str().unwrap().to_owned();
    let submit = |kind: &'static str, priority: i32, output: Value| {
        let api = &api;
        let agent = agent.clone();
        async move {
            let item = api
                .post("/v1/items", &agent, submission(kind, priority, output))
                .await;
            item["id"].as_str().unwrap().to_owned()
        }
    };
    // Decided through the API before the browser comes: the auditor's record (and, in the
    // rewritten copy, the tampered one).
    let audited = submit(
        "customer-reply",
        1,
        json!("Dear Ms Jones, your refund will be sent within 30 days."),
    )
    .await;
    api.post(&format!("/v1/items/{audited}/claim"), &rita, json!({}))
        .await;
    api.post(
        &format!("/v1/items/{audited}/edit"),
        &rita,
        json!({"output": "Dear Ms Jones, your refund was sent today.", "note": "we refund at once"}),
    )
    .await;
    // Priority orders the queue: the keyboard scenario's item first.
    let keyboard = submit(
        "customer-reply",
        9,
        json!("Dear Mr Smith,\n\nthank you for your patience. **Your order ships tomorrow.**"),
    )
    .await;
    let conflict = submit(
        "customer-reply",
        8,
        json!("Your parcel was delayed by the carrier."),
    )
    .await;
    let live = submit(
        "tool-call",
        7,
        json!({"tool": "issue_refund", "arguments": {"order": 10297, "amount": 54}}),
    )
    .await;
    let hostile = submit(
        "customer-reply",
        6,
        json!("Hello <script>window.__xss = 1</script> and <img src=x onerror=\"window.__xss = 2\"> and [a link](javascript:window.__xss=3)"),
    )
    .await;
    let refused = submit(
        "lead-score",
        5,
        json!({"score": 0.91, "reason": "<b>bold</b> claim"}),
    )
    .await;
    api.post(
        &format!("/v1/items/{hostile}/comments"),
        &agent,
        json!({"text": "<script>window.__xss = 4</script> a comment"}),
    )
    .await;
    // Every event so far under a signed checkpoint (the server signs within 200 ms).
    let head = api
        .get(&format!("/v1/items/{audited}/record"), ADMIN_TOKEN)
        .await;
    let wanted = head["events"].as_array().unwrap().len();
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let record = api
                .get(&format!("/v1/items/{audited}/record"), ADMIN_TOKEN)
                .await;
            if record["proven"].as_u64() == Some(wanted as u64) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("a checkpoint covers the audited item within 30 s");

    let config = json!({
        "base": server.base,
        "tokens": tokens,
        "items": {
            "audited": audited,
            "keyboard": keyboard,
            "conflict": conflict,
            "live": live,
            "hostile": hostile,
            "refused": refused,
        },
    });
    run_scenarios("main", &config).await;

    // The browser's refusals wrote nothing: the refused item is still pending, unclaimed.
    let item = api.get(&format!("/v1/items/{refused}"), ADMIN_TOKEN).await;
    assert_eq!(item["status"], "pending", "{item}");
    assert!(item["claim"].is_null(), "{item}");
    // The keyboard's edit reached the log as the reviewer typed it.
    let item = api.get(&format!("/v1/items/{keyboard}"), ADMIN_TOKEN).await;
    assert_eq!(item["decision"]["outcome"], "edited_and_approved", "{item}");

    // A checkpoint covers everything the browser wrote (it is the log's last event), then the
    // server stops.
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let latest = api.get("/v1/audit/checkpoints/latest", ADMIN_TOKEN).await;
            let health = api.get("/healthz", ADMIN_TOKEN).await;
            if latest["tree_size"].as_u64().map(|size| size + 1) == health["events"].as_u64() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("a checkpoint covers the browser's writes within 30 s");
    server.stop().await;

    // A copy of the log in which the audited item's edit says something else, rewritten with
    // every hash, link and chain hash recomputed: only the signed checkpoints can tell.
    let from = data.clone();
    let tampered = tokio::task::spawn_blocking(move || {
        crate::audit_tamper::rewrite(&from, |mut events| {
            let edited = events
                .iter_mut()
                .find(|event| {
                    event.event_type == "OutputEdited"
                        && event.data.contains("refund was sent today")
                })
                .expect("the audited item's edit is in the log");
            edited.data = edited
                .data
                .replace("refund was sent today", "refund was refused");
            events
        })
    })
    .await
    .unwrap();
    // No new checkpoint while the auditor looks: the rewritten log is not signed again.
    let server = serve_binary(
        tampered.path(),
        &["--checkpoint-interval", "1440m"],
        ADMIN_TOKEN,
    )
    .await;
    let mut config = config;
    config["base"] = server.base.clone().into();
    run_scenarios("tampered", &config).await;
    server.stop().await;
}
