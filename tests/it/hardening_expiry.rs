//! Issue 9, finding 4: an agent cannot skip review through expiry. What happens when a deadline
//! passes is the operator's policy (`--expiry-policy`), never the submitter's `on_expiry`; a
//! deadline must leave the policy's minimum review window; and whatever a policy says, a
//! high-risk or k-of-n item is never approved by the clock. Through the real server, the real
//! log and the scheduler on the manual clock of `spawn_app`.

use crate::api::{App, reply_for_review, spawn_app, spawn_app_with};
use crate::support::ledger_binary;
use chrono::Duration;
use ledger::expiry_policy::ExpiryPolicies;
use ledger::log::EventLog;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

/// The operator's policy for the queue `support` (where `reply_for_review` submits): approve on
/// expiry, explicitly allowed, with a 10-minute minimum review window.
const SUPPORT_AUTO_APPROVE: &str = r#"{"policies": [
    {"name": "support-auto-approve", "queue": "support", "action": "approve",
     "allow_auto_approval": true, "minimum_review_window_seconds": 600}
]}"#;

fn due_in(app: &App, duration: Duration) -> Value {
    json!((app.clock.now() + duration).to_rfc3339())
}

/// Runs one scheduler pass under `policies`, as `ledger serve` does in a loop.
async fn tick(app: &App, policies: &ExpiryPolicies) -> ledger::scheduler::Tick {
    let log: Arc<dyn EventLog> = app.log.clone();
    ledger::scheduler::tick(log.as_ref(), &app.projector, &app.clock, policies).await
}

/// The item's `ItemExpired` event data, as the audit trail shows it.
async fn expiry_event(app: &App, id: &str) -> Value {
    let (status, trail) = app
        .call("GET", &format!("/v1/items/{id}/events"), &app.auditor, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{trail}");
    let expired: Vec<&Value> = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["type"] == "ItemExpired")
        .collect();
    assert_eq!(expired.len(), 1, "{trail}");
    assert_eq!(expired[0]["actor"], "system");
    expired[0]["data"].clone()
}

async fn status_of(app: &App, id: &str) -> Value {
    let (status, item) = app
        .call("GET", &format!("/v1/items/{id}"), &app.agent, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{item}");
    item["status"].clone()
}

fn id_of(item: &Value) -> String {
    item["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attack_from_the_issue_is_refused_and_writes_nothing() {
    let app = spawn_app().await;
    let head_before = app.log.head().await.unwrap();

    // High-risk, four-eyes, due in 2 seconds, asking to be approved on expiry.
    let mut attack = reply_for_review();
    attack["risk"] = json!("high");
    attack["required_approvals"] = json!(2);
    attack["due_at"] = due_in(&app, Duration::seconds(2));
    attack["on_expiry"] = json!({"action": "approve"});
    let (status, problem) = app
        .call("POST", "/v1/items", &app.agent, Some(attack.clone()))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["problem"], "expiry-is-policy");
    assert_eq!(problem["field"], "on_expiry");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("operator's expiry policy") && detail.contains("not the submitter's"),
        "{detail}"
    );

    // Any spelling of the field, `null` and `reject` too: the submitter has no say at all.
    for on_expiry in [json!(null), json!({"action": "reject"})] {
        let mut body = reply_for_review();
        body["on_expiry"] = on_expiry;
        let (status, problem) = app.call("POST", "/v1/items", &app.agent, Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert_eq!(problem["problem"], "expiry-is-policy");
    }

    // Without the field, the 2-second deadline is inside the built-in 5-minute review window.
    attack.as_object_mut().unwrap().remove("on_expiry");
    let (status, problem) = app
        .call("POST", "/v1/items", &app.agent, Some(attack))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["rule"], "deadline-inside-review-window");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("at least 5 minutes") && detail.contains("\"built-in-default\""),
        "{detail}"
    );

    assert_eq!(
        app.log.head().await.unwrap(),
        head_before,
        "a refused submission wrote"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_policy_file_an_expired_high_risk_four_eyes_item_ends_rejected() {
    let app = spawn_app().await;
    let policies = ExpiryPolicies::default();
    let mut body = reply_for_review();
    body["risk"] = json!("high");
    body["required_approvals"] = json!(2);
    body["due_at"] = due_in(&app, Duration::minutes(5));
    let id = id_of(&app.submit(body).await);

    app.clock.advance(Duration::minutes(5));
    let report = tick(&app, &policies).await;
    assert_eq!(report.items_expired.len(), 1, "{report:?}");
    assert_eq!(status_of(&app, &id).await, "rejected_on_expiry");
    let expired = expiry_event(&app, &id).await;
    assert_eq!(expired["policy"], "built-in-default");
    assert_eq!(expired["configured_action"], json!({"action": "reject"}));
    assert_eq!(expired["applied_action"], json!({"action": "reject"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_allowing_approval_approves_a_single_approval_item_but_never_a_k_of_n_one() {
    let policies = Arc::new(ExpiryPolicies::from_json(SUPPORT_AUTO_APPROVE).unwrap());
    let app = spawn_app_with({
        let policies = policies.clone();
        move |state| state.with_expiry_policy(policies)
    })
    .await;

    let mut single = reply_for_review();
    single["due_at"] = due_in(&app, Duration::minutes(15));
    let single = id_of(&app.submit(single).await);
    let mut four_eyes = reply_for_review();
    four_eyes["required_approvals"] = json!(2);
    four_eyes["due_at"] = due_in(&app, Duration::minutes(15));
    let four_eyes = id_of(&app.submit(four_eyes).await);
    let mut high_risk = reply_for_review();
    high_risk["risk"] = json!("high");
    high_risk["due_at"] = due_in(&app, Duration::minutes(15));
    let high_risk = id_of(&app.submit(high_risk).await);
    // One of the two approvals is in before the deadline: still not enough eyes.
    let (status, answer) = app
        .call(
            "POST",
            &format!("/v1/items/{four_eyes}/approve"),
            &app.rita,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    // Nothing is due before the deadline.
    app.clock.advance(Duration::minutes(14));
    assert!(tick(&app, &policies).await.items_expired.is_empty());

    app.clock.advance(Duration::minutes(2));
    let report = tick(&app, &policies).await;
    assert_eq!(report.items_expired.len(), 3, "{report:?}");

    // Normal risk, one approval, and the operator allowed it: approved on expiry, naming the policy.
    assert_eq!(status_of(&app, &single).await, "approved_on_expiry");
    let expired = expiry_event(&app, &single).await;
    assert_eq!(expired["policy"], "support-auto-approve");
    assert_eq!(expired["configured_action"], json!({"action": "approve"}));
    assert_eq!(expired["applied_action"], json!({"action": "approve"}));
    let (_, item) = app
        .call("GET", &format!("/v1/items/{single}"), &app.auditor, None)
        .await;
    assert_eq!(item["expiry"]["policy"], "support-auto-approve", "{item}");
    assert_eq!(item.get("on_expiry"), None, "{item}");

    // k-of-n and high-risk under the same policy: rejected, with both actions on the record.
    for id in [&four_eyes, &high_risk] {
        assert_eq!(status_of(&app, id).await, "rejected_on_expiry");
        let expired = expiry_event(&app, id).await;
        assert_eq!(expired["policy"], "support-auto-approve");
        assert_eq!(expired["configured_action"], json!({"action": "approve"}));
        assert_eq!(expired["applied_action"], json!({"action": "reject"}));
    }

    // Exactly once: another pass finds nothing to do.
    assert!(tick(&app, &policies).await.items_expired.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_at_inside_the_policys_minimum_review_window_is_422_and_writes_nothing() {
    let policies = Arc::new(ExpiryPolicies::from_json(SUPPORT_AUTO_APPROVE).unwrap());
    let app = spawn_app_with(move |state| state.with_expiry_policy(policies)).await;
    let head_before = app.log.head().await.unwrap();

    let mut too_soon = reply_for_review();
    too_soon["due_at"] = due_in(&app, Duration::minutes(9));
    let (status, problem) = app
        .call("POST", "/v1/items", &app.agent, Some(too_soon))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["rule"], "deadline-inside-review-window");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("at least 10 minutes") && detail.contains("\"support-auto-approve\""),
        "{detail}"
    );
    assert_eq!(
        app.log.head().await.unwrap(),
        head_before,
        "a refused submission wrote"
    );

    // Another queue falls to the built-in default's 5 minutes; the policy's own window is met at
    // exactly 10 minutes.
    let mut other_queue = reply_for_review();
    other_queue["queue"] = json!("legal");
    other_queue["due_at"] = due_in(&app, Duration::minutes(6));
    app.submit(other_queue).await;
    let mut at_the_window = reply_for_review();
    at_the_window["due_at"] = due_in(&app, Duration::minutes(10));
    app.submit(at_the_window).await;
}

#[tokio::test]
async fn a_bad_policy_file_stops_the_start_naming_the_file_and_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let policy_file = dir.path().join("expiry-policy.json");
    std::fs::write(
        &policy_file,
        r#"{"policies": [
            {"name": "strict", "action": "reject"},
            {"name": "support-auto", "queue": "support", "action": "approve"}
        ]}"#,
    )
    .unwrap();
    let output = std::process::Command::new(ledger_binary())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["serve", "--listen", "127.0.0.1:0", "--expiry-policy"])
        .arg(&policy_file)
        .env("LEDGER_LOG", "warn")
        .output()
        .expect("running ledger");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("expiry policy file {}", policy_file.display()))
            && stderr.contains(r#"entry 2 ("support-auto"): allow_auto_approval: must be true"#),
        "{stderr}"
    );
    // Refused before anything was opened: no data directory was created.
    assert!(!dir.path().join("data").exists());
}
