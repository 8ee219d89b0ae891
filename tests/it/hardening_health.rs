//! Hardening (issue 9): honest health after a write failure (`/healthz`, `/readyz`, metrics),
//! revocation reaching open feeds and long-polls, event feeds bounded in bytes, owner-only files
//! in the data directory, and `Last-Event-ID` at the end of the number range.

use crate::api::{App, reply_for_review, spawn_app, spawn_app_on_log};
use crate::support::{event, ledger_binary};
use ledger::http::AppState;
use ledger::log::{EventLog, ExpectedVersion, FileLogOptions, LogError, LogHealth};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A guard against a test hanging forever on today's code; never an assertion about speed.
const PATIENCE: Duration = Duration::from_secs(60);

/// GETs `path` without a token: its status, content type and JSON body.
async fn probe(app: &App, path: &str) -> (StatusCode, String, Value) {
    let response = app
        .client
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (status, content_type, response.json().await.unwrap())
}

/// The server's own health metrics, rendered as `/metrics` renders them.
fn health_metrics(state: &AppState) -> String {
    let mut out = String::new();
    ledger::http::health::render_metrics(state, &mut out);
    out
}

fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_that_cannot_be_created_pauses_writes_until_it_can_without_a_restart() {
    let mut captured = None;
    let app = spawn_app_on_log(
        FileLogOptions {
            segment_size: 64 * 1024,
            ..FileLogOptions::default()
        },
        |state| {
            captured = Some(state.clone());
            state
        },
    )
    .await;
    let state = captured.unwrap();
    // One event larger than a segment fills the open one: the next append starts a new segment.
    app.log
        .append(
            "bulk",
            ExpectedVersion::Any,
            vec![event("Filler", json!({"text": "x".repeat(80 * 1024)}))],
        )
        .await
        .unwrap();
    let next_segment = app.data_dir().join(ledger::log::segment::segment_file_name(
        app.log.head().await.unwrap(),
    ));
    // A directory where the next segment file goes: creating it fails, even for root.
    std::fs::create_dir(&next_segment).unwrap();
    let head = app.log.head().await.unwrap();

    let refused = app
        .log
        .append(
            "bulk",
            ExpectedVersion::Any,
            vec![event("Filler", json!({}))],
        )
        .await;
    let Err(LogError::WritesPaused(reason)) = refused else {
        panic!("expected a retryable refusal, got {refused:?}");
    };
    assert!(reason.contains("could not start a new segment"), "{reason}");
    assert!(
        matches!(app.log.health(), LogHealth::WritesPaused { .. }),
        "{:?}",
        app.log.health()
    );
    let (status, problem) = app
        .call("POST", "/v1/items", &app.agent, Some(reply_for_review()))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert_eq!(problem["problem"], "log-writes-paused");
    assert_eq!(problem["retryable"], true);
    let response = app
        .client
        .post(format!("{}/v1/items", app.base))
        .bearer_auth(&app.agent)
        .json(&reply_for_review())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.headers()["retry-after"],
        "1",
        "a paused log says when to retry"
    );
    assert_eq!(app.log.head().await.unwrap(), head, "nothing was written");

    for path in ["/healthz", "/readyz"] {
        let (status, content_type, body) = probe(&app, path).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {body}");
        assert_eq!(content_type, "application/problem+json", "{path}");
        assert_eq!(body["log"], "writes_paused", "{path}: {body}");
        let reason = body["reason"].as_str().unwrap();
        assert!(
            reason.contains("could not start a new segment") && reason.contains("File exists"),
            "{path}: {reason}"
        );
    }
    let metrics = health_metrics(&state);
    assert!(metrics.contains("\nledger_log_writable 0\n"), "{metrics}");
    assert!(
        metrics.contains("\nledger_log_write_failures_total 3\n"),
        "{metrics}"
    );

    // The obstacle goes: the next append creates the segment and is stored, no restart needed.
    std::fs::remove_dir(&next_segment).unwrap();
    let item = app.submit(reply_for_review()).await;
    assert_eq!(item["status"], "pending");
    assert!(next_segment.is_file(), "the new segment was created");
    assert_eq!(mode_of(&next_segment), 0o600, "segments are owner-only");
    assert_eq!(app.log.health(), LogHealth::Writable);
    for path in ["/healthz", "/readyz"] {
        let (status, _, body) = probe(&app, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(body["log"], "writable", "{path}: {body}");
    }
    let metrics = health_metrics(&state);
    assert!(metrics.contains("\nledger_log_writable 1\n"), "{metrics}");
    assert!(
        metrics.contains("\nledger_log_write_failures_total 3\n"),
        "{metrics}"
    );
}

/// A failed write of records still poisons: the real server under a file-size limit (standing in
/// for a full disk) refuses appends with 503 `log-poisoned`, and `/healthz` says so and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_poisons_the_log_and_health_says_so() {
    use tokio::io::AsyncBufReadExt;
    ledger::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    // `ulimit -f` is in KiB: 6 MiB lets the first 4 MiB preallocation through and fails the next.
    // SIGXFSZ is ignored so that the write fails with EFBIG instead of killing the process.
    let script = format!(
        "trap '' XFSZ; ulimit -f 6144; exec '{}' --data-dir '{}' serve --listen 127.0.0.1:0",
        ledger_binary(),
        dir.path().display()
    );
    let mut child = tokio::process::Command::new("bash")
        .args(["-c", &script])
        .env("LEDGER_ADMIN_TOKEN", "admin-token")
        .env("LEDGER_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let base = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(address) = line.strip_prefix("listening on ") {
                return address.to_owned();
            }
        }
        panic!("the server exited before listening");
    })
    .await
    .expect("the server starts");
    let client = reqwest::Client::new();
    let added: Value = client
        .post(format!("{base}/v1/principals"))
        .bearer_auth("admin-token")
        .json(&json!({"name": "bulk-agent", "role": "agent"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let agent = added["token"].as_str().unwrap().to_owned();
    let mut submission = reply_for_review();
    submission["output"] = json!({"reply": "y".repeat(1024 * 1024)});
    let mut refusal = None;
    for _ in 0..16 {
        let response = client
            .post(format!("{base}/v1/items"))
            .bearer_auth(&agent)
            .json(&submission)
            .send()
            .await
            .unwrap();
        if response.status() != StatusCode::CREATED {
            assert!(
                response.headers().get("retry-after").is_none(),
                "a poisoned log will not take the write later: no Retry-After"
            );
            refusal = Some((response.status(), response.json::<Value>().await.unwrap()));
            break;
        }
    }
    let (status, problem) = refusal.expect("the file-size limit stops a write");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert_eq!(problem["problem"], "log-poisoned");
    assert_eq!(problem["retryable"], false);
    let response = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let health: Value = response.json().await.unwrap();
    assert_eq!(health["log"], "poisoned", "{health}");
    assert!(
        health["reason"]
            .as_str()
            .unwrap()
            .contains("writing the log failed"),
        "{health}"
    );
    // Poisoned stays poisoned: a smaller write is refused too.
    let response = client
        .post(format!("{base}/v1/items"))
        .bearer_auth(&agent)
        .json(&reply_for_review())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    child.kill().await.unwrap();
}

/// One server-sent event: its id, its event name, its data.
#[derive(Debug, Default)]
struct Sse {
    id: Option<u64>,
    event: String,
    data: String,
}

/// Reads server-sent events from a response until it ends, or `until` says enough.
async fn read_feed(
    response: &mut reqwest::Response,
    mut until: impl FnMut(&[Sse]) -> bool,
) -> (Vec<Sse>, bool) {
    let mut pending = Vec::new();
    let mut events = Vec::new();
    loop {
        if until(&events) {
            return (events, false);
        }
        let chunk = tokio::time::timeout(PATIENCE, response.chunk())
            .await
            .expect("the feed goes on or ends")
            .unwrap();
        let Some(chunk) = chunk else {
            return (events, true);
        };
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.windows(2).position(|pair| pair == b"\n\n") {
            let block: Vec<u8> = pending.drain(..end + 2).collect();
            let mut sse = Sse::default();
            for line in String::from_utf8(block).unwrap().lines() {
                if let Some(id) = line.strip_prefix("id:") {
                    sse.id = Some(id.trim().parse().unwrap());
                } else if let Some(name) = line.strip_prefix("event:") {
                    sse.event = name.trim().to_owned();
                } else if let Some(data) = line.strip_prefix("data:") {
                    sse.data.push_str(data.trim_start());
                }
            }
            // Keep-alive comments carry no event.
            if sse.id.is_some() || !sse.event.is_empty() {
                events.push(sse);
            }
        }
    }
}

async fn open_feed(app: &App, token: &str, last_event_id: Option<u64>) -> reqwest::Response {
    let mut request = app
        .client
        .get(format!("{}/v1/events", app.base))
        .bearer_auth(token);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id.to_string());
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_an_auditor_ends_its_open_feed_with_a_final_message() {
    let app = spawn_app().await;
    app.submit(reply_for_review()).await;
    let head = app.log.head().await.unwrap();
    let mut feed = open_feed(&app, &app.auditor, None).await;
    let (events, ended) = read_feed(&mut feed, |events| events.len() as u64 == head).await;
    assert!(!ended);
    assert_eq!(events.last().unwrap().id, Some(head - 1));

    let (status, _) = app
        .call("DELETE", "/v1/principals/audrey", &app.admin, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let revoked_at = app.log.head().await.unwrap() - 1;
    // Appends after the revocation must not reach the revoked auditor.
    app.submit(reply_for_review()).await;
    let (events, ended) = read_feed(&mut feed, |_| false).await;
    assert!(ended, "the feed closes after its final message");
    let last = events.last().expect("a final message");
    assert_eq!(last.event, "revoked", "{events:?}");
    let data: Value = serde_json::from_str(&last.data).unwrap();
    assert!(
        data["reason"].as_str().unwrap().contains("audrey"),
        "{data}"
    );
    assert!(
        events
            .iter()
            .filter_map(|event| event.id)
            .all(|id| id < revoked_at),
        "nothing from the revocation on is sent: {:?}",
        events.iter().map(|event| event.id).collect::<Vec<_>>()
    );
    assert_eq!(app.log.head().await.unwrap(), revoked_at + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_an_agent_ends_its_long_poll_with_401() {
    let app = spawn_app().await;
    let token = app
        .add_principal(json!({"name": "poller", "role": "agent"}))
        .await;
    let (status, item) = app
        .call("POST", "/v1/items", &token, Some(reply_for_review()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{item}");
    let id = item["id"].as_str().unwrap().to_owned();
    let poll = {
        let request = app
            .client
            .get(format!("{}/v1/items/{id}/decision?wait=120s", app.base))
            .bearer_auth(&token);
        tokio::spawn(async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let content_type = response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_owned();
            (
                status,
                content_type,
                response.json::<Value>().await.unwrap(),
            )
        })
    };
    // Let the poll reach its wait (an ordering, not a measurement: the problem name below tells
    // a wait that ended from a request refused at the door).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, _) = app
        .call("DELETE", "/v1/principals/poller", &app.admin, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, content_type, problem) = tokio::time::timeout(PATIENCE, poll)
        .await
        .expect("the long-poll ends with the revocation")
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(problem["problem"], "revoked", "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("poller"),
        "{problem}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_that_stops_reading_is_cut_off_and_resumes_from_the_log() {
    let bound = 64 * 1024;
    let mut captured = None;
    let app = spawn_app_on_log(FileLogOptions::default(), |state| {
        let state = state.with_feed_buffer_bytes(bound);
        captured = Some(state.clone());
        state
    })
    .await;
    let state = captured.unwrap();
    let start = app.log.head().await.unwrap();
    let mut feed = open_feed(&app, &app.auditor, Some(start - 1)).await;
    // The client reads nothing while big events are appended: the socket's buffers fill, then
    // the feed's queue, then the log grows past the bound and the server cuts the feed off.
    let big = "z".repeat(512 * 1024);
    let mut appended = 0;
    while state.feed.lagged.load(Ordering::Relaxed) == 0 {
        assert!(
            appended < 400,
            "no cut-off after {appended} events of 512 KiB"
        );
        app.log
            .append(
                "bulk",
                ExpectedVersion::Any,
                vec![event("Filler", json!({"text": big}))],
            )
            .await
            .unwrap();
        appended += 1;
        tokio::task::yield_now().await;
    }
    let head = app.log.head().await.unwrap();
    let (events, ended) = read_feed(&mut feed, |_| false).await;
    assert!(ended, "a feed cut off is closed");
    let last = events.last().unwrap();
    assert_eq!(last.event, "lagged", "the final message says why");
    assert_eq!(last.id, None);
    let data: Value = serde_json::from_str(&last.data).unwrap();
    let ids: Vec<u64> = events.iter().filter_map(|event| event.id).collect();
    assert!(!ids.is_empty());
    assert_eq!(ids, (start..start + ids.len() as u64).collect::<Vec<_>>());
    let last_sent = *ids.last().unwrap();
    assert_eq!(data["last_event_id"], last_sent, "{data}");
    assert!(last_sent + 1 < head, "the feed was cut off behind the head");
    assert!(
        data["reason"].as_str().unwrap().contains("Last-Event-ID"),
        "{data}"
    );

    // Resuming after the last position received continues exactly there, up to the head.
    let mut resumed = open_feed(&app, &app.auditor, Some(last_sent)).await;
    let wanted = head - (last_sent + 1);
    let (events, ended) = read_feed(&mut resumed, |events| events.len() as u64 == wanted).await;
    assert!(!ended);
    let ids: Vec<u64> = events.iter().filter_map(|event| event.id).collect();
    assert_eq!(ids, (last_sent + 1..head).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_last_event_id_past_every_position_is_a_bad_request() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/v1/events", app.base))
        .bearer_auth(&app.auditor)
        .header("last-event-id", u64::MAX.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let (status, problem) = app
        .call(
            "GET",
            &format!("/v1/events?after={}", u64::MAX),
            &app.auditor,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("18446744073709551615")
    );
}

#[tokio::test]
async fn the_data_directory_and_its_files_are_owner_only() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("ledger-data");
    {
        let log = ledger::log::FileLog::open(
            &dir,
            FileLogOptions {
                segment_size: 4 * 1024,
                ..FileLogOptions::default()
            },
            "modes test",
        )
        .unwrap();
        for _ in 0..4 {
            log.append(
                "bulk",
                ExpectedVersion::Any,
                vec![event("Filler", json!({"text": "x".repeat(5000)}))],
            )
            .await
            .unwrap();
        }
        ledger::callbacks::CallbackKey::load_or_create(&dir, None).unwrap();
    }
    assert_eq!(mode_of(&dir), 0o700, "the data directory");
    let segments = ledger::log::segment::list_segments(&dir).unwrap();
    assert!(segments.len() > 2, "segments were rolled");
    for (_, segment) in segments {
        assert_eq!(mode_of(&segment), 0o600, "{}", segment.display());
    }
    assert_eq!(mode_of(&dir.join("LOCK")), 0o600, "the lock file");
    assert_eq!(
        mode_of(&dir.join("callback.key")),
        0o600,
        "the callback key"
    );
}
