//! The feedback loop end to end through the HTTP API: measured accuracy puts an accurate slice
//! under sampling (the rest approved automatically, each naming its evidence), high-risk items
//! are always reviewed, and a slice that degrades returns to full review at once.

use crate::api::{reply_for_review, spawn_app_with};
use ledger::review_policy::ReviewPolicies;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

async fn decide(app: &crate::api::App, id: &str, action: &str) {
    let body = match action {
        "reject" => json!({"reason": "not what the customer asked"}),
        _ => json!({}),
    };
    let (status, answer) = app
        .call(
            "POST",
            &format!("/v1/items/{id}/{action}"),
            &app.rita,
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{action} {id}: {answer}");
}

async fn measure(app: &crate::api::App) -> Value {
    let (status, answer) = app
        .call("POST", "/v1/analytics/accuracy", &app.admin, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

/// Submits `n` items of risk `risk`; their ids and statuses.
async fn submit(app: &crate::api::App, n: usize, risk: &str) -> Vec<(String, String)> {
    let mut items = Vec::new();
    for _ in 0..n {
        let mut body = reply_for_review();
        body["risk"] = json!(risk);
        let item = app.submit(body).await;
        items.push((
            item["id"].as_str().unwrap().to_owned(),
            item["status"].as_str().unwrap().to_owned(),
        ));
    }
    items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accurate_slice_is_sampled_and_a_degraded_one_returns_to_full_review() {
    let policies = ReviewPolicies::parse(
        r#"{"window_days": 30, "measure_every_seconds": 3600, "policies": [
            {"kind": "customer-reply", "target_override_rate": 0.2, "minimum_sample": 30,
             "sampling_rate": 0.3}]}"#,
    )
    .unwrap();
    let app = spawn_app_with(|state| state.with_review_policies(Arc::new(policies))).await;

    // Without a measurement every item is reviewed.
    let reviewed = submit(&app, 40, "normal").await;
    assert!(reviewed.iter().all(|(_, status)| status == "pending"));
    for (id, _) in &reviewed {
        decide(&app, id, "approve").await;
    }
    let measured = measure(&app).await;
    let slice = &measured["slices"][0];
    assert_eq!(
        measured["appended"].as_array().unwrap().len(),
        1,
        "{measured}"
    );
    assert_eq!(slice["decided"], 40);
    assert_eq!(slice["overridden"], 0);
    assert_eq!(slice["sampling"], true, "{measured}");
    let measurement_id = slice["measurement_id"].as_str().unwrap().to_owned();
    // Measuring again with nothing new appends nothing.
    assert!(
        measure(&app).await["appended"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Under sampling: about 30% still reviewed, the rest approved at once; high risk always reviewed.
    let normal = submit(&app, 100, "normal").await;
    let high = submit(&app, 10, "high").await;
    assert!(high.iter().all(|(_, status)| status == "pending"));
    let auto: Vec<&String> = normal
        .iter()
        .filter(|(_, status)| status == "auto_approved")
        .map(|(id, _)| id)
        .collect();
    let sampled: Vec<&String> = normal
        .iter()
        .filter(|(_, status)| status == "pending")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(auto.len() + sampled.len(), 100);
    println!(
        "under sampling: {} auto-approved, {} sampled for review",
        auto.len(),
        sampled.len()
    );
    assert!(
        (50..=90).contains(&auto.len()),
        "{} auto-approved",
        auto.len()
    );
    // Every automatic approval is an event naming its policy and the measurement it relied on,
    // and the agent learns it like any decision.
    for id in &auto {
        let (status, events) = app
            .call("GET", &format!("/v1/items/{id}/events"), &app.agent, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{events}");
        let events = events["events"].as_array().unwrap();
        let types: Vec<&str> = events
            .iter()
            .map(|event| event["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            ["ItemSubmitted", "ItemAutoApproved", "ItemDecided"],
            "{events:?}"
        );
        let evidence = &events[1]["data"];
        assert_eq!(evidence["policy"], "customer-reply");
        assert_eq!(evidence["measurement_id"], measurement_id.as_str());
        assert_eq!(evidence["sample"], 40);
        assert_eq!(events[2]["data"]["outcome"], "auto_approved");
        let (status, decision) = app
            .call("GET", &format!("/v1/items/{id}/decision"), &app.agent, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{decision}");
        assert_eq!(
            decision["decision"]["outcome"], "auto_approved",
            "{decision}"
        );
        assert_eq!(decision["status"], "auto_approved");
    }

    // The sampled items turn out wrong: the slice degrades.
    for id in sampled.iter().copied().chain(high.iter().map(|(id, _)| id)) {
        decide(&app, id, "reject").await;
    }
    let measured = measure(&app).await;
    let slice = &measured["slices"][0];
    let rejected = (sampled.len() + high.len()) as u64;
    // Only human decisions count: the automatic approvals are not in the sample.
    assert_eq!(slice["decided"], 40 + rejected, "{measured}");
    assert_eq!(slice["overridden"], rejected);
    assert_eq!(slice["sampling"], false, "{measured}");
    // Back to full review at once.
    let after = submit(&app, 30, "normal").await;
    assert!(
        after.iter().all(|(_, status)| status == "pending"),
        "{after:?}"
    );

    // The analytics count the automatic approvals apart.
    let (_, rates) = app
        .call(
            "GET",
            "/v1/analytics/override-rates?by=kind",
            &app.auditor,
            None,
        )
        .await;
    assert_eq!(
        rates["rows"][0]["auto_approved"],
        auto.len() as u64,
        "{rates}"
    );
    assert_eq!(rates["rows"][0]["decided"], 40 + rejected);
    // Only admins measure; analysts read.
    let (status, _) = app
        .call("POST", "/v1/analytics/accuracy", &app.auditor, None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, read) = app
        .call("GET", "/v1/analytics/accuracy", &app.auditor, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["slices"][0]["sampling"], false);
}

/// The server's own job measures on its schedule, under its lease, without being asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_measurement_job_appends_accuracy_on_its_own() {
    let policies =
        Arc::new(ReviewPolicies::parse(r#"{"measure_every_seconds": 1, "policies": []}"#).unwrap());
    let app = spawn_app_with(|state| state.with_review_policies(policies.clone())).await;
    for (id, _) in submit(&app, 5, "normal").await {
        decide(&app, &id, "reject").await;
    }
    tokio::spawn(ledger::review_policy::run(
        app.log.clone(),
        app.projector.clone(),
        app.clock.clone(),
        policies,
        ledger::lease::Lease::new(
            "accuracy",
            "test-server",
            std::time::Duration::from_secs(10),
        ),
    ));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let measured = loop {
        let (_, answer) = app
            .call("GET", "/v1/analytics/accuracy", &app.auditor, None)
            .await;
        if !answer["slices"].as_array().unwrap().is_empty() {
            break answer;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no measurement within 20 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let slice = &measured["slices"][0];
    assert_eq!(slice["decided"], 5, "{measured}");
    assert_eq!(slice["overridden"], 5);
    // No policy for the kind: measured, but never sampled.
    assert_eq!(slice["sampling"], false);
    assert!(slice["policy"].is_null());
}
