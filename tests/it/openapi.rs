//! The OpenAPI document against the real server: a review session's every answer (successes and
//! problems) has a documented status, content type, headers and body schema, and the document
//! carries what a generated client needs (parameters, optional bodies, security, operation ids).
//!
//! A small JSON-schema checker covers the keywords the document uses for answers (`$ref`, `type`,
//! `enum`, `const`, `properties`, `required`, `additionalProperties: false`, `items`, `anyOf`,
//! `oneOf`); patterns and formats are left to the Schemathesis run (`scripts/fuzz-api.sh`),
//! which checks every answer against the full document.

use crate::api::{App, reply_for_review, spawn_app};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// One answer as the test saw it.
struct Seen {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

async fn send(
    app: &App,
    method: &str,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Seen {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = app.client.request(method, format!("{}{path}", app.base));
    if !token.is_empty() {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body.to_owned());
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Seen {
        status,
        headers,
        body,
    }
}

/// Whether `value` is valid under `schema` (for the keywords listed in the module doc); the
/// reason when not.
fn check(document: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.trim_start_matches("#/components/schemas/");
        let target = &document["components"]["schemas"][name];
        assert!(target.is_object(), "{reference} is not defined");
        return check(document, target, value, at);
    }
    if let Some(kinds) = schema.get("type") {
        let kinds: Vec<&str> = match kinds {
            Value::String(kind) => vec![kind.as_str()],
            Value::Array(kinds) => kinds.iter().filter_map(Value::as_str).collect(),
            _ => panic!("a type of {kinds}"),
        };
        let matches = |kind: &&str| match *kind {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            other => panic!("a type {other}"),
        };
        if !kinds.iter().any(matches) {
            return Err(format!("{at}: {value} is not of type {kinds:?}"));
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let Some(constant) = schema.get("const")
        && constant != value
    {
        return Err(format!("{at}: {value} is not {constant}"));
    }
    if let (Some(properties), Some(object)) = (
        schema.get("properties").and_then(Value::as_object),
        value.as_object(),
    ) {
        for required in schema["required"].as_array().into_iter().flatten() {
            let required = required.as_str().unwrap();
            if !object.contains_key(required) {
                return Err(format!("{at}: {required} is missing"));
            }
        }
        for (key, member) in object {
            match properties.get(key) {
                Some(property) => check(document, property, member, &format!("{at}.{key}"))?,
                None if schema["additionalProperties"] == json!(false) => {
                    return Err(format!("{at}: {key} is not documented"));
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (index, element) in array.iter().enumerate() {
            check(document, items, element, &format!("{at}[{index}]"))?;
        }
    }
    if let Some(branches) = schema.get("anyOf").and_then(Value::as_array)
        && !branches
            .iter()
            .any(|branch| check(document, branch, value, at).is_ok())
    {
        return Err(format!("{at}: {value} matches no branch of anyOf"));
    }
    if let Some(branches) = schema.get("oneOf").and_then(Value::as_array) {
        let matching = branches
            .iter()
            .filter(|branch| check(document, branch, value, at).is_ok())
            .count();
        if matching != 1 {
            return Err(format!(
                "{at}: {value} matches {matching} branches of oneOf"
            ));
        }
    }
    Ok(())
}

/// Asserts that `seen` is an answer the document gives for `method` on `pattern`: its status is
/// documented, its content type is the documented one, the documented headers are there, and the
/// body matches the documented schema.
fn assert_documented(document: &Value, method: &str, pattern: &str, seen: &Seen) {
    let operation = &document["paths"][pattern][method];
    assert!(
        operation.is_object(),
        "{method} {pattern} is not documented"
    );
    let response = &operation["responses"][seen.status.as_str()];
    assert!(
        response.is_object(),
        "{method} {pattern} answered {} ({}), which is not documented",
        seen.status,
        seen.body
    );
    let content_type = seen.headers["content-type"].to_str().unwrap();
    let essence = content_type.split(';').next().unwrap().trim();
    let media = &response["content"][essence];
    assert!(
        media.is_object(),
        "{method} {pattern} {}: content type {content_type} is not documented",
        seen.status
    );
    for (name, header) in response["headers"].as_object().into_iter().flatten() {
        if header["required"] == json!(true) {
            assert!(
                seen.headers.contains_key(name.as_str()),
                "{method} {pattern} {}: header {name} is missing",
                seen.status
            );
        }
    }
    if essence.ends_with("json")
        && let Err(reason) = check(document, &media["schema"], &seen.body, "body")
    {
        panic!("{method} {pattern} {}: {reason}", seen.status);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_of_a_review_session_is_documented_with_its_schema() {
    let app = spawn_app().await;
    let document = send(&app, "GET", "/openapi.json", "", &[], None).await;
    assert_eq!(document.status, StatusCode::OK);
    let document = document.body;
    let json_type: &[(&str, &str)] = &[("content-type", "application/json")];
    let none: &[(&str, &str)] = &[];
    let (agent, rita, auditor, admin) = (&app.agent, &app.rita, &app.auditor, &app.admin);

    // (method, pattern, path, token, headers, body, expected status)
    let submit = reply_for_review().to_string();
    let first = send(&app, "POST", "/v1/items", agent, json_type, Some(&submit)).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let id = first.body["id"].as_str().unwrap().to_owned();
    assert_documented(&document, "post", "/v1/items", &first);
    let item = |suffix: &str| format!("/v1/items/{id}{suffix}");
    let keyed: &[(&str, &str)] = &[
        ("content-type", "application/json"),
        ("idempotency-key", "order-17"),
    ];
    let item_bodies = [
        "{}",
        r#"{"queue":"support","kind":"k","model":{"name":"m","version":"1"},"output":[1],"confidence":null,"risk":"high","required_approvals":2,"due_at":"2099-01-01T00:00:00Z"}"#,
    ];
    type Step<'a> = (
        &'a str,
        &'a str,
        String,
        &'a str,
        &'a [(&'a str, &'a str)],
        Option<&'a str>,
        u16,
    );
    let steps: Vec<Step> = vec![
        ("get", "/healthz", "/healthz".into(), "", none, None, 200),
        ("get", "/v1/items/{id}", item(""), agent, none, None, 200),
        ("get", "/v1/items/{id}", item(""), "", none, None, 401),
        ("get", "/v1/items/{id}", item(""), &app.sam, none, None, 403),
        (
            "get",
            "/v1/items/{id}",
            "/v1/items/nope".into(),
            auditor,
            none,
            None,
            404,
        ),
        (
            "get",
            "/v1/items/{id}/events",
            item("/events"),
            auditor,
            none,
            None,
            200,
        ),
        (
            "get",
            "/v1/items/{id}/decision",
            item("/decision?wait=0s"),
            agent,
            none,
            None,
            202,
        ),
        (
            "get",
            "/v1/items/{id}/decision",
            item("/decision?wait=soon"),
            agent,
            none,
            None,
            400,
        ),
        (
            "get",
            "/v1/queue",
            "/v1/queue".into(),
            rita,
            none,
            None,
            200,
        ),
        (
            "get",
            "/v1/queue",
            "/v1/queue?status=decided&limit=1".into(),
            auditor,
            none,
            None,
            200,
        ),
        (
            "get",
            "/v1/queue",
            "/v1/queue?status=lost".into(),
            auditor,
            none,
            None,
            400,
        ),
        (
            "get",
            "/v1/queue",
            "/v1/queue".into(),
            agent,
            none,
            None,
            403,
        ),
        (
            "post",
            "/v1/items",
            "/v1/items".into(),
            agent,
            keyed,
            Some(item_bodies[1]),
            201,
        ),
        (
            "post",
            "/v1/items",
            "/v1/items".into(),
            agent,
            keyed,
            Some(item_bodies[1]),
            200,
        ),
        (
            "post",
            "/v1/items",
            "/v1/items".into(),
            agent,
            json_type,
            Some(item_bodies[0]),
            422,
        ),
        (
            "post",
            "/v1/items",
            "/v1/items".into(),
            agent,
            json_type,
            Some("{"),
            400,
        ),
        (
            "post",
            "/v1/items",
            "/v1/items".into(),
            agent,
            none,
            Some(&submit),
            415,
        ),
        (
            "post",
            "/v1/items",
            "/v1/items".into(),
            rita,
            json_type,
            Some(&submit),
            403,
        ),
        // The item actions take an empty body where every field is optional.
        (
            "post",
            "/v1/items/{id}/claim",
            item("/claim"),
            rita,
            none,
            None,
            200,
        ),
        (
            "post",
            "/v1/items/{id}/claim",
            item("/claim"),
            rita,
            none,
            Some(r#"{"lease_seconds":0}"#),
            422,
        ),
        (
            "post",
            "/v1/items/{id}/approve",
            item("/approve"),
            rita,
            &[("if-match", "\"0\"")],
            None,
            409,
        ),
        (
            "post",
            "/v1/items/{id}/comments",
            item("/comments"),
            rita,
            none,
            Some(r#"{"text":"ok"}"#),
            201,
        ),
        (
            "post",
            "/v1/items/{id}/edit",
            item("/edit"),
            rita,
            none,
            Some(r#"{"output":{"reply":"Better."},"note":"tone"}"#),
            200,
        ),
        (
            "post",
            "/v1/items/{id}/reject",
            item("/reject"),
            rita,
            none,
            Some(r#"{"reason":"late"}"#),
            409,
        ),
        (
            "get",
            "/v1/items/{id}/decision",
            item("/decision"),
            agent,
            none,
            None,
            200,
        ),
        ("get", "/v1/items/{id}", item(""), auditor, none, None, 200),
        (
            "post",
            "/v1/principals",
            "/v1/principals".into(),
            admin,
            json_type,
            Some(r#"{"name":"ann","role":"reviewer","queues":["support"]}"#),
            201,
        ),
        (
            "post",
            "/v1/principals",
            "/v1/principals".into(),
            admin,
            json_type,
            Some(r#"{"name":"ann","role":"agent"}"#),
            409,
        ),
        (
            "get",
            "/v1/principals",
            "/v1/principals".into(),
            auditor,
            none,
            None,
            200,
        ),
        (
            "delete",
            "/v1/principals/{name}",
            "/v1/principals/ann".into(),
            admin,
            none,
            None,
            200,
        ),
        (
            "get",
            "/v1/principals/{name}/callback-secret",
            "/v1/principals/agent-1/callback-secret".into(),
            agent,
            none,
            None,
            200,
        ),
        (
            "get",
            "/v1/principals/{name}/callback-secret",
            "/v1/principals/rita/callback-secret".into(),
            admin,
            none,
            None,
            404,
        ),
        (
            "get",
            "/v1/events",
            "/v1/events".into(),
            agent,
            none,
            None,
            403,
        ),
        (
            "get",
            "/v1/events",
            "/v1/events".into(),
            auditor,
            &[("last-event-id", "x")],
            None,
            400,
        ),
    ];
    for (method, pattern, path, token, headers, body, expected) in steps {
        let seen = send(&app, &method.to_uppercase(), &path, token, headers, body).await;
        assert_eq!(
            seen.status.as_u16(),
            expected,
            "{method} {path}: {}",
            seen.body
        );
        assert_documented(&document, method, pattern, &seen);
    }

    // The audit API, before and after a checkpoint.
    let none_yet = send(
        &app,
        "GET",
        "/v1/audit/checkpoints/latest",
        auditor,
        none,
        None,
    )
    .await;
    assert_eq!(none_yet.status, StatusCode::NOT_FOUND);
    assert_documented(&document, "get", "/v1/audit/checkpoints/latest", &none_yet);
    let key = ledger::audit::CheckpointKey::generate("openapi.test/log").unwrap();
    ledger::audit::checkpointer::checkpoint_now(app.log.as_ref(), &app.projector, &key)
        .await
        .unwrap()
        .expect("a checkpoint");
    let text: &[(&str, &str)] = &[("accept", "text/plain")];
    type AuditStep<'a> = (&'a str, String, &'a str, &'a [(&'a str, &'a str)], u16);
    let audit_steps: Vec<AuditStep> = vec![
        (
            "/v1/audit/checkpoints",
            "/v1/audit/checkpoints?limit=5".into(),
            agent,
            none,
            200,
        ),
        (
            "/v1/audit/checkpoints",
            "/v1/audit/checkpoints?limit=x".into(),
            agent,
            none,
            400,
        ),
        (
            "/v1/audit/checkpoints/latest",
            "/v1/audit/checkpoints/latest".into(),
            agent,
            none,
            200,
        ),
        (
            "/v1/audit/checkpoints/latest",
            "/v1/audit/checkpoints/latest".into(),
            agent,
            text,
            200,
        ),
        (
            "/v1/audit/proofs/inclusion",
            "/v1/audit/proofs/inclusion?position=1".into(),
            auditor,
            none,
            200,
        ),
        (
            "/v1/audit/proofs/inclusion",
            "/v1/audit/proofs/inclusion?position=1".into(),
            rita,
            none,
            403,
        ),
        (
            "/v1/audit/proofs/inclusion",
            "/v1/audit/proofs/inclusion?position=99999".into(),
            admin,
            none,
            422,
        ),
        (
            "/v1/audit/proofs/consistency",
            "/v1/audit/proofs/consistency?first=2".into(),
            agent,
            none,
            200,
        ),
        (
            "/v1/audit/proofs/consistency",
            "/v1/audit/proofs/consistency?first=0".into(),
            agent,
            none,
            422,
        ),
        ("/v1/items/{id}/record", item("/record"), agent, none, 200),
        (
            "/v1/analytics/override-rates",
            "/v1/analytics/override-rates?by=model,kind".into(),
            auditor,
            none,
            200,
        ),
        (
            "/v1/analytics/override-rates",
            "/v1/analytics/override-rates?by=colour".into(),
            auditor,
            none,
            422,
        ),
        (
            "/v1/analytics/override-rates",
            "/v1/analytics/override-rates".into(),
            rita,
            none,
            403,
        ),
        (
            "/v1/analytics/calibration",
            "/v1/analytics/calibration?by=kind&buckets=4".into(),
            auditor,
            none,
            200,
        ),
        ("/v1/items/{id}/record", item("/record"), rita, none, 403),
    ];
    for (pattern, path, token, headers, expected) in audit_steps {
        let seen = send(&app, "GET", &path, token, headers, None).await;
        assert_eq!(seen.status.as_u16(), expected, "GET {path}: {}", seen.body);
        assert_documented(&document, "get", pattern, &seen);
    }

    // A 405 is documented under the path's operations (for the methods it does not take).
    let seen = send(&app, "PUT", &item(""), auditor, none, None).await;
    assert_eq!(seen.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(seen.headers["allow"], "GET,HEAD");
    assert_documented(&document, "get", "/v1/items/{id}", &seen);

    // The feed: its first event, read off the stream, matches the documented event.
    let mut feed = app
        .client
        .get(format!("{}/v1/events?after=0", app.base))
        .bearer_auth(auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), StatusCode::OK);
    let content_type = feed.headers()["content-type"].to_str().unwrap().to_owned();
    let media =
        &document["paths"]["/v1/events"]["get"]["responses"]["200"]["content"][&content_type];
    assert!(media.is_object(), "{content_type} is not documented");
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = feed.chunk().await.unwrap().expect("the feed sends events");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let mut event = serde_json::Map::new();
    for line in text.split("\n\n").next().unwrap().lines() {
        let (field, value) = line.split_once(':').unwrap();
        event.insert(field.into(), value.trim_start().into());
    }
    check(
        &document,
        &media["schema"],
        &Value::Object(event.clone()),
        "event",
    )
    .unwrap();
    let data: Value = serde_json::from_str(event["data"].as_str().unwrap()).unwrap();
    check(
        &document,
        &json!({"$ref": "#/components/schemas/Event"}),
        &data,
        "event.data",
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_has_what_a_generated_client_needs() {
    let app = spawn_app().await;
    let document = send(&app, "GET", "/openapi.json", "", &[], None).await.body;
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"],
        json!({"type": "http", "scheme": "bearer", "description": document["components"]["securitySchemes"]["bearer"]["description"]})
    );
    let mut operation_ids = BTreeSet::new();
    for (path, methods) in document["paths"].as_object().unwrap() {
        for (method, operation) in methods.as_object().unwrap() {
            let name = format!("{method} {path}");
            let id = operation["operationId"].as_str().expect("an operationId");
            assert!(operation_ids.insert(id.to_owned()), "{id} twice");
            let responses = operation["responses"].as_object().unwrap();
            for status in ["405", "500"] {
                assert!(responses.contains_key(status), "{name} lacks {status}");
            }
            let security = &operation["security"];
            if ["/healthz", "/openapi.json"].contains(&path.as_str()) {
                assert_eq!(security, &json!([]), "{name}");
            } else if path.starts_with("/v1/") {
                assert_eq!(security, &json!([{"bearer": []}]), "{name}");
            }
            if security != &json!([]) {
                assert!(responses.contains_key("401"), "{name} lacks 401");
            }
            for (status, response) in responses {
                if status.starts_with('2') && !path.ends_with("/metrics") {
                    assert!(
                        response["content"].is_object(),
                        "{name} {status} has no body"
                    );
                }
            }
            // Every `{capture}` of the path is a required path parameter.
            for capture in path.split('/').filter(|segment| segment.starts_with('{')) {
                let capture = capture.trim_matches(|c| c == '{' || c == '}');
                assert!(
                    operation["parameters"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|parameter| parameter["name"] == capture && parameter["in"] == "path"),
                    "{name} does not document {capture}"
                );
            }
        }
    }
    let parameter = |path: &str, method: &str, name: &str| -> Value {
        document["paths"][path][method]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|parameter| parameter["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{method} {path} does not document {name}"))
    };
    assert_eq!(
        parameter("/v1/items", "post", "Idempotency-Key")["in"],
        "header"
    );
    assert_eq!(
        parameter("/v1/items/{id}/approve", "post", "If-Match")["in"],
        "header"
    );
    assert_eq!(
        parameter("/v1/events", "get", "Last-Event-ID")["in"],
        "header"
    );
    assert_eq!(
        parameter("/v1/events", "get", "after")["schema"]["type"],
        "integer"
    );
    assert_eq!(
        parameter("/v1/items/{id}/decision", "get", "wait")["in"],
        "query"
    );
    assert_eq!(
        parameter("/v1/queue", "get", "status")["schema"]["enum"],
        json!([
            "pending",
            "claimed",
            "changes_requested",
            "decided",
            "withdrawn"
        ])
    );
    for name in ["queue", "assignee", "kind", "limit", "cursor"] {
        assert_eq!(parameter("/v1/queue", "get", name)["in"], "query");
    }
    // Bodies are required only where the server needs one.
    let body_required = |path: &str| {
        document["paths"][path]["post"]["requestBody"]["required"]
            .as_bool()
            .unwrap()
    };
    for action in ["claim", "release", "approve", "withdraw"] {
        assert!(
            !body_required(&format!("/v1/items/{{id}}/{action}")),
            "{action}"
        );
    }
    for action in [
        "edit",
        "reject",
        "request-changes",
        "escalate",
        "comments",
        "revisions",
    ] {
        assert!(
            body_required(&format!("/v1/items/{{id}}/{action}")),
            "{action}"
        );
    }
    assert!(body_required("/v1/items"));
    let responses = |path: &str, method: &str| document["paths"][path][method]["responses"].clone();
    assert!(responses("/v1/items/{id}/decision", "get")["202"].is_object());
    assert!(responses("/v1/items", "post")["415"].is_object());
    assert!(responses("/v1/items", "post")["201"]["headers"]["Location"].is_object());
    assert!(responses("/v1/events", "get")["200"]["content"]["text/event-stream"].is_object());
}
