//! Hostile and extreme input through the real server (issue 9, findings 9, 11 and 12): outputs
//! kept and hashed byte for byte as sent, numbers at and past every type's range answered 4xx
//! rather than a panic or 5xx, principal names the server reserves or that mislead, a revoked
//! name added again, and an `Idempotency-Key` reused with another body.

use crate::api::{App, reply_for_review, spawn_app};
use crate::support::ledger_binary;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use reqwest::StatusCode;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// An output whose numbers a `serde_json::Value` would change (or refuse), compact as stored.
const EXACT_OUTPUT: &str = r#"{"amount":123456789012345678901234567890,"tiny":1e-400,"huge":1e309,"one":1.0,"int":1,"neg_zero":-0,"long":0.1000000000000000055511151231257827021181583404541015625,"big_exp":1E+400,"escaped":"caf\u00e9 \ud83d\ude00","z":[1.50,-0.0,2e0]}"#;

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The JSON text of `key` in the object `text`, as it is there (not through a `Value`).
fn member(text: &str, key: &str) -> String {
    let members: BTreeMap<String, Box<RawValue>> =
        serde_json::from_str(text).unwrap_or_else(|error| panic!("{error}: {text}"));
    members
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in {text}"))
        .get()
        .to_owned()
}

/// Sends `body` as it is (a `Value` would respell its numbers); the status and the answer's text.
async fn send_text(
    app: &App,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = app
        .client
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(token);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|error| panic!("{path}: the connection failed: {error}"));
    crate::api::answer_text(response).await
}

/// A submission body with `output` (and `context`) spliced in as text.
fn submission_text(output: &str, context: &str) -> String {
    format!(
        r#"{{"queue":"support","kind":"customer-reply","model":{{"name":"gpt-x","version":"2026-10"}},"output":{output},"context":{context},"confidence":0.82}}"#
    )
}

async fn submit_text(app: &App, body: &str) -> (StatusCode, String) {
    send_text(app, "POST", "/v1/items", &app.agent, Some(body), &[]).await
}

async fn submitted_id(app: &App, output: &str) -> String {
    let (status, text) = submit_text(app, &submission_text(output, "{}")).await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    serde_json::from_str::<Value>(&text).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The `data` of each event of the item's audit trail, as text.
async fn trail_data(app: &App, id: &str) -> Vec<(String, String)> {
    let (status, text) = send_text(
        app,
        "GET",
        &format!("/v1/items/{id}/events"),
        &app.auditor,
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let trail: BTreeMap<String, Box<RawValue>> = serde_json::from_str(&text).unwrap();
    let events: Vec<Box<RawValue>> = serde_json::from_str(trail["events"].get()).unwrap();
    events
        .iter()
        .map(|event| (member(event.get(), "type"), member(event.get(), "data")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_is_stored_answered_audited_decided_and_hashed_byte_for_byte() {
    let app = spawn_app().await;
    // Whitespace between tokens is not part of the output; every token is.
    let spaced = EXACT_OUTPUT
        .replace("\":", "\" :\n  ")
        .replace(",\"", " ,\t\"");
    assert_ne!(spaced, EXACT_OUTPUT);
    let context = r#"{"numbers":[9007199254740993,1e-999],"a":1,"b":2}"#;
    let (status, text) = submit_text(&app, &submission_text(&spaced, context)).await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let hash = sha256_hex(EXACT_OUTPUT);
    assert_eq!(member(&text, "output"), EXACT_OUTPUT);
    assert_eq!(member(&text, "output_hash"), format!("\"{hash}\""));
    assert_eq!(member(&text, "context"), context);
    // (Not read into a `Value`: serde_json refuses `1e309`, a number JSON allows.)
    let id = member(&text, "id").trim_matches('"').to_owned();

    let (status, text) = send_text(
        &app,
        "GET",
        &format!("/v1/items/{id}"),
        &app.rita,
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(member(&text, "output"), EXACT_OUTPUT);
    assert_eq!(member(&text, "context"), context);
    let revisions: Vec<Box<RawValue>> = serde_json::from_str(&member(&text, "revisions")).unwrap();
    assert_eq!(member(revisions[0].get(), "output"), EXACT_OUTPUT);

    // A stale If-Match answers the item too, outputs as they are.
    let (status, text) = send_text(
        &app,
        "POST",
        &format!("/v1/items/{id}/claim"),
        &app.rita,
        None,
        &[("if-match", "\"7\"")],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{text}");
    assert_eq!(member(&member(&text, "item"), "output"), EXACT_OUTPUT);

    // Approved having seen exactly that hash: the decision carries the same text.
    let (status, text) = send_text(
        &app,
        "POST",
        &format!("/v1/items/{id}/approve"),
        &app.rita,
        Some(&format!(r#"{{"seen_output_hash":"{hash}"}}"#)),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let (status, text) = send_text(
        &app,
        "GET",
        &format!("/v1/items/{id}/decision"),
        &app.agent,
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let decision = member(&text, "decision");
    assert_eq!(member(&decision, "final_output"), EXACT_OUTPUT);
    assert_eq!(member(&decision, "output_hash"), format!("\"{hash}\""));

    let trail = trail_data(&app, &id).await;
    assert_eq!(trail[0].0, "\"ItemSubmitted\"");
    assert_eq!(member(&trail[0].1, "output"), EXACT_OUTPUT);
    assert_eq!(member(&trail[0].1, "output_hash"), format!("\"{hash}\""));
    assert_eq!(member(&trail[0].1, "context"), context);
    let decided = trail
        .iter()
        .find(|(event_type, _)| event_type == "\"ItemDecided\"")
        .expect("a decision in the trail");
    assert_eq!(member(&decided.1, "final_output"), EXACT_OUTPUT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_output_and_a_revision_are_kept_byte_for_byte() {
    let app = spawn_app().await;
    let edited = r#"{"reply":"Dear Ms Jones","refund":42.10,"ref":100000000000000000000001}"#;
    let id = submitted_id(&app, r#"{"reply":"draft","refund":42.1}"#).await;
    let (status, text) = send_text(
        &app,
        "POST",
        &format!("/v1/items/{id}/edit"),
        &app.rita,
        Some(&format!(r#"{{"output": {edited}, "note": "amount"}}"#)),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(member(&text, "output"), edited);
    assert_eq!(
        member(&text, "output_hash"),
        format!("\"{}\"", sha256_hex(edited))
    );
    assert_eq!(
        member(&member(&text, "decision"), "final_output"),
        edited,
        "the approved output is the edited text"
    );
    let trail = trail_data(&app, &id).await;
    let edit = trail
        .iter()
        .find(|(event_type, _)| event_type == "\"OutputEdited\"")
        .unwrap();
    assert_eq!(member(&edit.1, "edited_output"), edited);

    // 42.1 and 42.10 are different texts, so a revision from one to the other is a new output.
    let revised = r#"{"reply":"draft","refund":42.10}"#;
    let id = submitted_id(&app, r#"{"reply":"draft","refund":42.1}"#).await;
    let (status, text) = send_text(
        &app,
        "POST",
        &format!("/v1/items/{id}/request-changes"),
        &app.rita,
        Some(r#"{"instructions":"two decimals"}"#),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let (status, text) = send_text(
        &app,
        "POST",
        &format!("/v1/items/{id}/revisions"),
        &app.agent,
        Some(&format!(r#"{{"output": {revised}}}"#)),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    assert_eq!(member(&text, "output"), revised);
    assert_eq!(
        member(&text, "output_hash"),
        format!("\"{}\"", sha256_hex(revised))
    );
    let trail = trail_data(&app, &id).await;
    let revision = trail
        .iter()
        .find(|(event_type, _)| event_type == "\"OutputRevised\"")
        .unwrap();
    assert_eq!(member(&revision.1, "output"), revised);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_or_empty_outputs_are_refused_and_write_nothing() {
    let app = spawn_app().await;
    let id = submitted_id(&app, r#"{"reply":"draft"}"#).await;
    let head = app.log.head().await.unwrap();
    let deep = format!("{}1{}", "[".repeat(101), "]".repeat(101));
    let cases = [
        (r#"{"amount":10,"amount":10000}"#, "appears twice"),
        (r#"{"a":1,"\u0061":2}"#, "appears twice"),
        (r#"{"text":"\ud800"}"#, "lone surrogate"),
        (r#"["\udc00\ud800"]"#, "lone surrogate"),
        (deep.as_str(), "nest deeper"),
        ("null", "must not be null"),
    ];
    for (output, why) in cases {
        for (path, token, body) in [
            (
                "/v1/items".to_owned(),
                &app.agent,
                submission_text(output, "{}"),
            ),
            (
                "/v1/items".to_owned(),
                &app.agent,
                submission_text("{}", output),
            ),
            (
                format!("/v1/items/{id}/edit"),
                &app.rita,
                format!(r#"{{"output":{output}}}"#),
            ),
        ] {
            if path == "/v1/items" && body.contains(r#""context":null"#) {
                continue; // a null context is an absent one
            }
            let (status, text) = send_text(&app, "POST", &path, token, Some(&body), &[]).await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{path} {output}: {text}"
            );
            let problem: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(problem["rule"], "invalid", "{text}");
            assert!(
                problem["detail"].as_str().unwrap().contains(why),
                "{output}: {text}"
            );
        }
    }
    assert_eq!(
        app.log.head().await.unwrap(),
        head,
        "a refused request writes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_out_of_range_is_422_at_every_extreme_and_never_a_dropped_connection() {
    let app = spawn_app().await;
    let id = submitted_id(&app, r#"{"reply":"draft"}"#).await;
    let head = app.log.head().await.unwrap();
    let claim = format!("/v1/items/{id}/claim");
    for lease in [
        "9223372036854775807",
        "-9223372036854775808",
        "9223372036854776",
        "-9223372036854776",
        "18446744073709551615",
        "99999999999999999999999999",
        "1.5",
        "0",
        "-1",
        "86401",
        "\"600\"",
        "null",
    ] {
        let (status, text) = send_text(
            &app,
            "POST",
            &claim,
            &app.rita,
            Some(&format!(r#"{{"lease_seconds":{lease}}}"#)),
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{lease}: {text}");
    }
    // A number beyond f64 is valid JSON that serde_json does not read: 400, also no panic.
    let (status, text) = send_text(
        &app,
        "POST",
        &claim,
        &app.rita,
        Some(r#"{"lease_seconds":1e309}"#),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("number out of range"), "{text}");
    assert_eq!(
        app.log.head().await.unwrap(),
        head,
        "a refused claim writes nothing"
    );
    for lease in ["1", "86400"] {
        let (status, text) = send_text(
            &app,
            "POST",
            &claim,
            &app.rita,
            Some(&format!(r#"{{"lease_seconds":{lease}}}"#)),
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{lease}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_of_any_size_is_answered_and_queue_paging_takes_any_number() {
    let app = spawn_app().await;
    let id = submitted_id(&app, r#"{"reply":"draft"}"#).await;
    let (status, _) = send_text(
        &app,
        "POST",
        &format!("/v1/items/{id}/reject"),
        &app.rita,
        Some(r#"{"reason":"no"}"#),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // Decided, so a wait of any length answers at once.
    for wait in [
        "18446744073709551615m",
        "307445734561825861m",
        "18446744073709551615s",
        "18446744073709551615ms",
        "18446744073709551615",
    ] {
        let (status, text) = send_text(
            &app,
            "GET",
            &format!("/v1/items/{id}/decision?wait={wait}"),
            &app.agent,
            None,
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{wait}: {text}");
    }
    for wait in ["18446744073709551616m", "-1s", "1e3s", "5h", "m", ""] {
        let (status, text) = send_text(
            &app,
            "GET",
            &format!("/v1/items/{id}/decision?wait={wait}"),
            &app.agent,
            None,
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{wait}: {text}");
    }
    for query in [
        "limit=18446744073709551615",
        "limit=0",
        "limit=9223372036854775807",
        "limit=-1",
        "limit=1e3",
        "limit=18446744073709551616",
        "cursor=v1.2147483648.x.1.00000000-0000-0000-0000-000000000000",
        "cursor=v1.-2147483648.9223372036854775807_4294967295.18446744073709551615.00000000-0000-0000-0000-000000000000",
        "cursor=v1.0.-9223372036854775808_0.0.00000000-0000-0000-0000-000000000000",
    ] {
        let (status, text) = send_text(
            &app,
            "GET",
            &format!("/v1/queue?{query}"),
            &app.rita,
            None,
            &[],
        )
        .await;
        assert!(
            status.is_success() || status.is_client_error(),
            "{query}: {status} {text}"
        );
    }
}

/// A JSON number (as text) at or beyond the range of some field's type.
fn extreme_number() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "18446744073709551615",
            "18446744073709551616",
            "-18446744073709551616",
            "2147483647",
            "-2147483648",
            "2147483648",
            "4294967295",
            "4294967296",
            "123456789012345678901234567890",
            "1e309",
            "-1e309",
            "1e-400",
            "1E+400",
            "-0",
            "-0.0",
            "0",
            "1",
            "-1",
            "0.5",
            "1.0000000000000002",
            "10",
            "11",
            "86400",
            "86401",
            "5e-324",
            "1.7976931348623157e308",
        ])
        .prop_map(str::to_owned),
        any::<i64>().prop_map(|number| number.to_string()),
        any::<u64>().prop_map(|number| number.to_string()),
        any::<f64>()
            .prop_filter("finite", |number| number.is_finite())
            .prop_map(|number| format!("{number:e}")),
    ]
}

/// A `due_at` at or beyond what a timestamp can hold, or not a timestamp at all.
fn extreme_due_at() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "\"+262143-12-31T23:59:59Z\"",
            "\"-262143-01-01T00:00:00Z\"",
            "\"+262144-01-01T00:00:00Z\"",
            "\"9999-12-31T23:59:59.999999999Z\"",
            "\"+10000-01-01T00:00:00Z\"",
            "\"0000-01-01T00:00:00Z\"",
            "\"2026-11-24T09:00:00Z\"",
            "\"2026-11-24T09:00:01Z\"",
            "\"2026-12-24T09:00:00+14:00\"",
            "\"2026-12-24T09:00:60Z\"",
            "null",
        ])
        .prop_map(str::to_owned),
        extreme_number(),
    ]
}

/// One request with extreme numbers somewhere in its body or query.
#[derive(Debug, Clone)]
enum Probe {
    Submit {
        confidence: String,
        priority: String,
        required_approvals: String,
        due_at: String,
        output_number: String,
    },
    Claim(String),
    Edit(String),
    Wait(String),
    Queue {
        limit: String,
    },
}

fn probe() -> impl Strategy<Value = Probe> {
    prop_oneof![
        (
            extreme_number(),
            extreme_number(),
            extreme_number(),
            extreme_due_at(),
            extreme_number(),
        )
            .prop_map(
                |(confidence, priority, required_approvals, due_at, output_number)| {
                    Probe::Submit {
                        confidence,
                        priority,
                        required_approvals,
                        due_at,
                        output_number,
                    }
                }
            ),
        extreme_number().prop_map(Probe::Claim),
        extreme_number().prop_map(Probe::Edit),
        (
            extreme_number(),
            prop::sample::select(vec!["", "s", "ms", "m"])
        )
            .prop_map(|(number, unit)| Probe::Wait(format!(
                "{}{unit}",
                number.trim_start_matches('-')
            ))),
        extreme_number().prop_map(|limit| Probe::Queue { limit }),
    ]
}

/// Every body with extreme numbers, posted through the real server: a 2xx or a 4xx every time,
/// never a 5xx or a dropped connection (a panic in a handler drops it).
#[test]
fn extreme_numbers_in_every_field_get_a_2xx_or_a_4xx_never_a_5xx_or_a_dropped_connection() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = runtime.block_on(spawn_app());
    let (pending, edited, decided) = runtime.block_on(async {
        let pending = submitted_id(&app, r#"{"reply":"pending"}"#).await;
        let edited = submitted_id(&app, r#"{"reply":"to edit"}"#).await;
        let decided = submitted_id(&app, r#"{"reply":"decided"}"#).await;
        let (status, _) = send_text(
            &app,
            "POST",
            &format!("/v1/items/{decided}/reject"),
            &app.rita,
            Some(r#"{"reason":"no"}"#),
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        (pending, edited, decided)
    });
    let answered = std::sync::Mutex::new((0u32, 0u32));
    let mut runner = TestRunner::new(Config {
        cases: 192,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x9_1111),
        ..Config::default()
    });
    runner
        .run(&probe(), |probe| {
            let (method, path, token, body) = match &probe {
                Probe::Submit {
                    confidence,
                    priority,
                    required_approvals,
                    due_at,
                    output_number,
                } => (
                    "POST",
                    "/v1/items".to_owned(),
                    &app.agent,
                    Some(format!(
                        r#"{{"queue":"support","kind":"k","model":{{"name":"m","version":"1"}},"output":{{"n":{output_number}}},"context":[{output_number}],"confidence":{confidence},"priority":{priority},"required_approvals":{required_approvals},"due_at":{due_at}}}"#
                    )),
                ),
                Probe::Claim(lease) => (
                    "POST",
                    format!("/v1/items/{pending}/claim"),
                    &app.rita,
                    Some(format!(r#"{{"lease_seconds":{lease}}}"#)),
                ),
                Probe::Edit(number) => (
                    "POST",
                    format!("/v1/items/{edited}/edit"),
                    &app.rita,
                    Some(format!(r#"{{"output":{{"n":{number}}}}}"#)),
                ),
                Probe::Wait(wait) => (
                    "GET",
                    format!("/v1/items/{decided}/decision?wait={wait}"),
                    &app.agent,
                    None,
                ),
                Probe::Queue { limit } => (
                    "GET",
                    format!("/v1/queue?limit={limit}"),
                    &app.rita,
                    None,
                ),
            };
            let (status, text) = runtime.block_on(send_text(
                &app,
                method,
                &path,
                token,
                body.as_deref(),
                &[],
            ));
            prop_assert!(
                status.is_success() || status.is_client_error(),
                "{probe:?}: {status} {text}"
            );
            let mut answered = answered.lock().unwrap();
            if status.is_success() {
                answered.0 += 1;
            } else {
                answered.1 += 1;
            }
            Ok(())
        })
        .unwrap();
    // The probes reach both sides of the ranges: some are taken, some refused.
    let (taken, refused) = *answered.lock().unwrap();
    assert!(
        taken > 10 && refused > 10,
        "{taken} taken, {refused} refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misleading_or_reserved_principal_names_are_refused_over_http() {
    let app = spawn_app().await;
    let head = app.log.head().await.unwrap();
    for (name, rule) in [
        (".", "invalid"),
        ("..", "invalid"),
        ("-", "invalid"),
        ("-rf", "invalid"),
        ("cli", "reserved-name"),
        ("system", "reserved-name"),
        ("ali\u{202e}ce", "invalid"),
        ("\u{2066}bob", "invalid"),
        ("ali\u{200b}ce", "invalid"),
        ("\u{feff}alice", "invalid"),
        ("ali\u{200e}ce", "invalid"),
        ("alice\u{7}", "invalid"),
    ] {
        let (status, problem) = app
            .call(
                "POST",
                "/v1/principals",
                &app.admin,
                Some(json!({"name": name, "role": "agent"})),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{name:?}: {problem}"
        );
        assert_eq!(problem["rule"], rule, "{name:?}: {problem}");
    }
    assert_eq!(app.log.head().await.unwrap(), head, "nothing written");
}

#[test]
fn the_cli_refuses_reserved_names_too() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["cli", "system", ".."] {
        let output = std::process::Command::new(ledger_binary())
            .arg("--data-dir")
            .arg(dir.path())
            .args(["principal", "add", "--name", name, "--role", "agent"])
            .env("LEDGER_LOG", "warn")
            .output()
            .unwrap();
        assert!(!output.status.success(), "{name} was added");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("name"), "{name}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_name_cannot_be_added_again_to_inherit_its_items() {
    let app = spawn_app().await;
    let old_token = app
        .add_principal(json!({"name": "drafter", "role": "agent"}))
        .await;
    let (status, item) = app
        .call("POST", "/v1/items", &old_token, Some(reply_for_review()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{item}");
    let (status, _) = app
        .call("DELETE", "/v1/principals/drafter", &app.admin, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let head = app.log.head().await.unwrap();

    for role in ["agent", "auditor"] {
        let (status, problem) = app
            .call(
                "POST",
                "/v1/principals",
                &app.admin,
                Some(json!({"name": "drafter", "role": role})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert_eq!(problem["rule"], "name-was-revoked", "{problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains("another name"),
            "{problem}"
        );
    }
    assert_eq!(app.log.head().await.unwrap(), head, "nothing written");
    let id = item["id"].as_str().unwrap();
    assert_eq!(
        app.call("GET", &format!("/v1/items/{id}"), &old_token, None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    // A successor takes a new name, and with it none of the old items.
    let (status, added) = app
        .call(
            "POST",
            "/v1/principals",
            &app.admin,
            Some(json!({"name": "drafter-2", "role": "agent"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    let new_token = added["token"].as_str().unwrap();
    assert_eq!(
        app.call("GET", &format!("/v1/items/{id}"), new_token, None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_answers_the_same_body_and_refuses_another() {
    let app = spawn_app().await;
    let key = [("idempotency-key", "order-4711")];
    let first_body = submission_text(
        r#"{"reply":"Your refund is on its way.","amount":40.00}"#,
        "{}",
    );
    let (status, first) = send_text(
        &app,
        "POST",
        "/v1/items",
        &app.agent,
        Some(&first_body),
        &key,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let first_id = member(&first, "id");
    let head = app.log.head().await.unwrap();

    // The same request, spelled differently (field order, whitespace): the first item.
    let respelled = r#"{ "confidence" : 0.820, "output" : { "reply" : "Your refund is on its way.", "amount" : 40.00 },
        "model": {"version": "2026-10", "name": "gpt-x"}, "kind": "customer-reply", "queue": "support", "context": { } }"#;
    let (status, again) =
        send_text(&app, "POST", "/v1/items", &app.agent, Some(respelled), &key).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(member(&again, "id"), first_id);

    // Another body under the same key: refused, not answered with the first item.
    for other in [
        submission_text(
            r#"{"reply":"Your refund is on its way.","amount":4000.00}"#,
            "{}",
        ),
        submission_text(
            r#"{"reply":"Your refund is on its way.","amount":40.0}"#,
            "{}",
        ),
        submission_text(
            r#"{"reply":"Your refund is on its way.","amount":40.00}"#,
            r#"{"x":1}"#,
        ),
        first_body.replace("0.82", "0.83"),
        first_body.replace(r#""queue":"support""#, r#""queue":"legal""#),
    ] {
        let (status, problem) =
            send_text(&app, "POST", "/v1/items", &app.agent, Some(&other), &key).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{other}: {problem}"
        );
        let problem: Value = serde_json::from_str(&problem).unwrap();
        assert_eq!(problem["problem"], "idempotency-key-reused", "{problem}");
        assert_eq!(problem["item"].to_string(), first_id);
    }
    assert_eq!(app.log.head().await.unwrap(), head, "nothing written");

    // Another key is another item.
    let (status, text) = send_text(
        &app,
        "POST",
        "/v1/items",
        &app.agent,
        Some(&first_body),
        &[("idempotency-key", "order-4712")],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    assert_ne!(member(&text, "id"), first_id);
}
