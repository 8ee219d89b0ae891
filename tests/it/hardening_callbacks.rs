//! Callbacks under attack and under load (issue 9, findings 6–8): callback URLs that point inside
//! (loopback, private, link-local, metadata, … in every spelling) are refused at submit and again
//! when an attempt connects, unless the operator's allow-list names them; no redirect is
//! followed; a receiver that never answers delays only its own callbacks; and deliveries are
//! signed as Standard Webhooks, checked here by the published Python library.

use crate::api::{
    App, Calls, loopback_callbacks, receiver, reply_for_review, spawn_app,
    spawn_app_with_callback_policy, submit_and_decide,
};
use crate::support::{ledger_binary, python_venv};
use ledger::callback_policy::CallbackPolicy;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Waits (checking every 20 ms, at most 60 s) until `condition` holds; panics saying `what`.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`receiver`] (fails the first `failures` calls with 503) on 127.0.0.1; its URL.
async fn spawn_receiver(failures: usize) -> (String, Calls) {
    let (router, calls) = receiver(failures);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{address}/hook"), calls)
}

/// A receiver on 127.0.0.1 that reads each request's head and then holds the connection without
/// answering, until released (then it closes them all).
struct SilentReceiver {
    url: String,
    /// How many requests arrived.
    arrived: tokio::sync::watch::Receiver<usize>,
    release: tokio::sync::watch::Sender<bool>,
}

async fn spawn_silent_receiver() -> SilentReceiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (count, arrived) = tokio::sync::watch::channel(0usize);
    let (release, released) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let count = count.clone();
            let mut released = released.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 4096];
                while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => head.extend_from_slice(&buffer[..read]),
                    }
                }
                count.send_modify(|count| *count += 1);
                let _ = released.wait_for(|released| *released).await;
                drop(stream);
            });
        }
    });
    SilentReceiver {
        url,
        arrived,
        release,
    }
}

/// The data of every `CallbackAttempted` event of an item, with its position in the log.
async fn attempts(app: &App, id: &str) -> Vec<(u64, Value)> {
    app.log
        .read_stream(&format!("callback-{id}"), 0, 100)
        .await
        .unwrap()
        .iter()
        .filter(|event| event.event_type == "CallbackAttempted")
        .map(|event| (event.position, event.data_json().unwrap()))
        .collect()
}

/// Submits an item with `callback_url`; the status and the answer.
async fn submit_with_callback(app: &App, callback_url: &str) -> (StatusCode, Value) {
    let mut body = reply_for_review();
    body["callback_url"] = json!(callback_url);
    app.call("POST", "/v1/items", &app.agent, Some(body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_urls_to_non_public_addresses_are_refused_at_submit_in_every_spelling() {
    let app = spawn_app_with_callback_policy(CallbackPolicy::public_only()).await;
    let head = app.log.head().await.unwrap();
    for (url, rule) in [
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://127.1/hook", "loopback"),
        ("http://2130706433/hook", "loopback"),
        ("http://0177.0.0.1/hook", "loopback"),
        ("http://0x7f.0.0.1/hook", "loopback"),
        ("http://0x7f000001/hook", "loopback"),
        ("http://017700000001/hook", "loopback"),
        ("https://[::1]:8443/hook", "loopback"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://[::ffff:7f00:1]/hook", "loopback"),
        ("http://[0:0:0:0:0:ffff:127.0.0.1]/hook", "loopback"),
        ("http://[::127.0.0.1]/hook", "loopback"),
        ("http://[64:ff9b::127.0.0.1]/hook", "loopback"),
        ("http://[2002:7f00:1::]/hook", "loopback"),
        ("http://localhost:8080/hook", "loopback"),
        ("http://LocalHost./hook", "loopback"),
        ("http://0.0.0.0:8080/hook", "unspecified"),
        ("http://0/hook", "unspecified"),
        ("http://[::]/hook", "unspecified"),
        ("http://10.1.2.3/hook", "private"),
        ("http://172.16.0.1/hook", "private"),
        ("http://172.31.255.255/hook", "private"),
        ("http://192.168.1.1/hook", "private"),
        ("http://3232235777/hook", "private"),
        ("http://[::ffff:192.168.1.1]/hook", "private"),
        ("http://100.64.0.1/hook", "shared-address-space"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://0xa9fea9fe/latest/meta-data/", "link-local"),
        (
            "http://[::ffff:169.254.169.254]/latest/meta-data/",
            "link-local",
        ),
        (
            "http://[64:ff9b::169.254.169.254]/latest/meta-data/",
            "link-local",
        ),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://[fc00::1]/hook", "unique-local"),
        ("http://[fd12:3456:789a::1]/hook", "unique-local"),
        ("http://224.0.0.1/hook", "multicast"),
        ("http://[ff02::1]/hook", "multicast"),
        ("http://255.255.255.255/hook", "broadcast"),
        ("http://192.0.2.1/hook", "documentation"),
        ("http://198.51.100.7/hook", "documentation"),
        ("http://203.0.113.9/hook", "documentation"),
        ("http://[2001:db8::1]/hook", "documentation"),
        ("http://198.18.0.1/hook", "benchmarking"),
        ("http://240.0.0.1/hook", "reserved"),
        ("http://hooks:secret@93.184.215.14/hook", "userinfo"),
        ("http://trusted.example.com@127.0.0.1/hook", "userinfo"),
        ("ftp://93.184.215.14/hook", "scheme"),
        ("http://[::1/hook", "malformed"),
    ] {
        let (status, problem) = submit_with_callback(&app, url).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {problem}");
        assert_eq!(
            problem["problem"], "callback-url-refused",
            "{url}: {problem}"
        );
        assert_eq!(problem["rule"], rule, "{url}: {problem}");
        assert_eq!(problem["field"], "callback_url", "{url}: {problem}");
    }
    assert_eq!(
        app.log.head().await.unwrap(),
        head,
        "a refused submission writes nothing"
    );
    let (_, problem) = submit_with_callback(&app, "http://0177.0.0.1/hook").await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("127.0.0.1 is loopback (127.0.0.0/8)")
            && detail.contains("--callback-allow"),
        "the detail names the address as parsed, the range and the way out: {detail}"
    );

    // Public addresses, also in their IPv6 forms, are accepted (and never called here: nothing
    // is decided, and no dispatcher runs).
    for url in [
        "http://93.184.215.14/hook",
        "https://[::ffff:5db8:d70e]/hook",
        "https://[2606:4700:4700::1111]:8443/hook",
    ] {
        let (status, item) = submit_with_callback(&app, url).await;
        assert_eq!(status, StatusCode::CREATED, "{url}: {item}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_allow_list_lets_named_networks_and_hosts_through() {
    let policy = CallbackPolicy::allowing(["10.0.0.0/8", "hooks.internal"]).unwrap();
    let app = spawn_app_with_callback_policy(policy).await;
    for url in [
        "http://10.1.2.3:8080/hook",
        "http://0xa010203/hook",
        "http://[::ffff:10.1.2.3]/hook",
        "https://hooks.internal/hook",
        "https://HOOKS.internal.:8443/hook",
    ] {
        let (status, item) = submit_with_callback(&app, url).await;
        assert_eq!(status, StatusCode::CREATED, "{url}: {item}");
    }
    for (url, rule) in [
        ("http://192.168.1.1/hook", "private"),
        ("http://11.0.0.0.1/hook", "malformed"),
        ("http://localhost/hook", "loopback"),
        ("http://user@hooks.internal/hook", "userinfo"),
    ] {
        let (status, problem) = submit_with_callback(&app, url).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {problem}");
        assert_eq!(problem["rule"], rule, "{url}: {problem}");
    }

    // A host name that resolves to loopback passes once it is allowed by name.
    let app =
        spawn_app_with_callback_policy(CallbackPolicy::allowing(["localhost"]).unwrap()).await;
    let (status, item) = submit_with_callback(&app, "http://localhost:9/hook").await;
    assert_eq!(status, StatusCode::CREATED, "{item}");
    let (status, _) = submit_with_callback(&app, "http://127.0.0.1:9/hook").await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the name, not its address"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_to_a_refused_destination_posts_nothing_and_records_why() {
    // The server took these URLs (its allow-list had 127.0.0.0/8); the dispatcher, as after a
    // restart with the allow-list removed, or a name that now resolves elsewhere, has none.
    let app = spawn_app().await;
    let (url, calls) = spawn_receiver(0).await;
    let port = url::Url::parse(&url).unwrap().port().unwrap();
    let by_address = submit_and_decide(&app, &url).await;
    let by_name = submit_and_decide(&app, &format!("http://localhost:{port}/hook")).await;
    let public_only = ledger::callbacks::Dispatcher::new(
        app.log.clone(),
        app.projector.clone(),
        app.clock.clone(),
        app.callback_key.clone(),
    );

    assert_eq!(public_only.tick().await, 2, "both attempts are recorded");
    assert!(
        calls.lock().unwrap().is_empty(),
        "no request reached the receiver"
    );
    let (_, attempt) = &attempts(&app, &by_address).await[0];
    let error = attempt["error"].as_str().unwrap();
    assert_eq!(attempt["delivered"], false);
    assert!(
        error.contains("refused by the callback policy") && error.contains("127.0.0.1 is loopback"),
        "{error}"
    );
    assert!(
        attempt["next_attempt_at"].is_string(),
        "retried, in case the policy changes"
    );
    // A name goes through the client's resolver, which drops the refused addresses.
    let (_, attempt) = &attempts(&app, &by_name).await[0];
    let error = attempt["error"].as_str().unwrap();
    assert_eq!(attempt["status"], Value::Null);
    assert!(
        error.contains("callback host localhost resolves only to refused addresses")
            && error.contains("loopback"),
        "{error}"
    );

    // With the allow-list, the retries are delivered.
    app.clock.advance(chrono::Duration::seconds(1));
    assert_eq!(app.dispatcher.tick().await, 2);
    assert_eq!(calls.lock().unwrap().len(), 2);
    for id in [&by_address, &by_name] {
        let attempts = attempts(&app, id).await;
        assert_eq!(attempts.len(), 2);
        assert_eq!(attempts[1].1["delivered"], true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_not_followed() {
    let app = spawn_app().await;
    let (elsewhere, elsewhere_calls) = spawn_receiver(0).await;
    let redirected: Calls = Default::default();
    let recorded = redirected.clone();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                recorded.lock().unwrap().push((headers, body.to_vec()));
                let elsewhere = elsewhere.clone();
                async move {
                    (
                        axum::http::StatusCode::TEMPORARY_REDIRECT,
                        [(axum::http::header::LOCATION, elsewhere)],
                    )
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let id = submit_and_decide(&app, &url).await;

    assert_eq!(app.dispatcher.tick().await, 1);
    assert_eq!(redirected.lock().unwrap().len(), 1);
    assert!(
        elsewhere_calls.lock().unwrap().is_empty(),
        "the redirect was not followed"
    );
    let (_, attempt) = &attempts(&app, &id).await[0];
    assert_eq!(attempt["status"], 307);
    assert_eq!(attempt["delivered"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_delays_only_its_own_callbacks() {
    let app = spawn_app().await;
    let silent = spawn_silent_receiver().await;
    let (fast_url, fast_calls) = spawn_receiver(0).await;
    // The silent receiver's deliveries are older, so they are due first.
    let mut slow_items = Vec::new();
    for _ in 0..3 {
        slow_items.push(submit_and_decide(&app, &silent.url).await);
    }
    let fast_item = submit_and_decide(&app, &fast_url).await;

    let running = tokio::spawn(app.dispatcher.clone().run(
        Duration::from_millis(50),
        ledger::lease::Lease::new("callbacks", "test", Duration::from_secs(10)),
    ));
    eventually("the fast receiver's callback arrives", || {
        fast_calls.lock().unwrap().len() == 1
    })
    .await;
    let mut arrived = silent.arrived.clone();
    tokio::time::timeout(
        Duration::from_secs(60),
        arrived.wait_for(|count| *count == 3),
    )
    .await
    .expect("all three slow deliveries are in flight at once")
    .unwrap();
    eventually("the fast delivery is recorded", || {
        app.projector.read().deliveries.delivered == 1
    })
    .await;
    for id in &slow_items {
        assert!(
            attempts(&app, id).await.is_empty(),
            "the slow deliveries are still hanging when the fast one is recorded"
        );
    }

    // Once the silent receiver lets go, its attempts fail and are recorded after the fast one.
    silent.release.send(true).unwrap();
    let mut slow_positions = Vec::new();
    for id in &slow_items {
        let mut recorded = Vec::new();
        for _ in 0..3000 {
            recorded = attempts(&app, id).await;
            if !recorded.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (position, attempt) = recorded.first().expect("the slow attempt is recorded");
        assert_eq!(attempt["delivered"], false);
        slow_positions.push(*position);
    }
    running.abort();
    let fast = attempts(&app, &fast_item).await;
    assert_eq!(fast.len(), 1);
    assert_eq!(fast[0].1["delivered"], true);
    assert!(
        slow_positions.iter().all(|position| *position > fast[0].0),
        "the fast delivery ({}) is in the log before every slow attempt ({slow_positions:?})",
        fast[0].0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_destination_gets_at_most_its_limit_and_no_delivery_is_started_twice() {
    let app = spawn_app().await;
    let silent = spawn_silent_receiver().await;
    let (fast_url, _fast_calls) = spawn_receiver(0).await;
    let mut slow_items = Vec::new();
    for _ in 0..5 {
        slow_items.push(submit_and_decide(&app, &silent.url).await);
    }
    submit_and_decide(&app, &fast_url).await;
    let dispatcher = app
        .dispatcher
        .clone()
        .with_limits(ledger::callbacks::DeliveryLimits {
            per_destination: 4,
            total: 32,
        });

    let first = dispatcher.start_due().await;
    assert_eq!(
        first.len(),
        5,
        "four to the silent receiver, one to the fast one"
    );
    let mut arrived = silent.arrived.clone();
    tokio::time::timeout(
        Duration::from_secs(60),
        arrived.wait_for(|count| *count == 4),
    )
    .await
    .expect("four requests reach the silent receiver")
    .unwrap();
    eventually("the fast delivery is recorded", || {
        app.projector.read().deliveries.delivered == 1
    })
    .await;
    // The four in flight are not started again, by this dispatcher or its original (they share
    // what is in flight), and the fifth waits for a slot of its destination.
    assert!(dispatcher.start_due().await.is_empty());
    assert!(app.dispatcher.start_due().await.is_empty());
    assert_eq!(*silent.arrived.borrow(), 4);

    silent.release.send(true).unwrap();
    for attempt in first {
        assert!(attempt.await.unwrap(), "every attempt is recorded");
    }
    // The four failed ones wait for their backoff; the fifth now has a slot.
    let second = dispatcher.start_due().await;
    assert_eq!(second.len(), 1);
    for attempt in second {
        assert!(attempt.await.unwrap());
    }
    for id in &slow_items {
        assert_eq!(
            attempts(&app, id).await.len(),
            1,
            "one attempt each, none twice"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_verify_with_the_standard_webhooks_library_and_replays_do_not() {
    let app = spawn_app().await;
    // The dispatcher signs with its clock's time; the library compares with the real one.
    let ten_minutes = chrono::Duration::minutes(10);
    app.clock
        .advance(chrono::Utc::now() - app.clock.now() - ten_minutes);
    let (url, calls) = spawn_receiver(1).await;
    submit_and_decide(&app, &url).await;
    assert_eq!(app.dispatcher.tick().await, 1, "answered 503: retried");
    app.clock.advance(ten_minutes);
    assert_eq!(app.dispatcher.tick().await, 1, "delivered");
    let (status, secret) = app
        .call(
            "GET",
            "/v1/principals/agent-1/callback-secret",
            &app.agent,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    let capture = |index: usize| {
        let (headers, body) = &calls[index];
        let headers: serde_json::Map<String, Value> = headers
            .iter()
            .map(|(name, value)| (name.to_string(), json!(value.to_str().unwrap())))
            .collect();
        (headers, String::from_utf8(body.clone()).unwrap())
    };
    let (old_headers, old_body) = capture(0);
    let (headers, body) = capture(1);
    let mut fresh_timestamp_on_old_signature = old_headers.clone();
    fresh_timestamp_on_old_signature["webhook-timestamp"] = headers["webhook-timestamp"].clone();
    let deliveries = json!([
        {"name": "as delivered", "headers": headers, "body": body},
        {"name": "body changed", "headers": headers,
         "body": body.replace("\"outcome\":\"rejected\"", "\"outcome\":\"approved\"")},
        {"name": "captured ten minutes ago", "headers": old_headers, "body": old_body},
        {"name": "old signature, fresh timestamp", "headers": fresh_timestamp_on_old_signature,
         "body": old_body},
    ]);
    assert!(body.contains("\"outcome\":\"rejected\""), "{body}");

    let mut child = std::process::Command::new(python_venv())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/verify_webhook.py"
        ))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(
        child.stdin.take().unwrap(),
        &json!({"secret": secret["secret"], "deliveries": deliveries}),
    )
    .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let outcomes: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(outcomes["as delivered"], "verified", "{outcomes}");
    assert_eq!(
        outcomes["body changed"], "rejected: No matching signature found",
        "{outcomes}"
    );
    assert_eq!(
        outcomes["captured ten minutes ago"], "rejected: Message timestamp too old",
        "{outcomes}"
    );
    assert_eq!(
        outcomes["old signature, fresh timestamp"], "rejected: No matching signature found",
        "{outcomes}"
    );
}

#[test]
fn serve_refuses_to_start_with_an_unusable_callback_allow_list() {
    let dir = tempfile::tempdir().unwrap();
    for (arguments, environment, complaint) in [
        (
            vec!["--callback-allow", "127.0.0.0/8,10.1.2.3/8"],
            None,
            "the network is 10.0.0.0/8",
        ),
        (
            vec![],
            Some("hooks.internal, not a host"),
            "\"not a host\" is neither a network",
        ),
    ] {
        let mut command = std::process::Command::new(ledger_binary());
        command
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(&arguments)
            .env("LEDGER_LOG", "warn");
        if let Some(value) = environment {
            command.env("LEDGER_CALLBACK_ALLOW", value);
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("--callback-allow") && stderr.contains(complaint),
            "{stderr}"
        );
    }
    assert!(
        !dir.path().join("data").exists(),
        "the allow-list is checked before the data directory is touched"
    );
    // The test suite's own allow-list parses.
    assert_eq!(loopback_callbacks().allow_list(), vec!["127.0.0.0/8"]);
}
