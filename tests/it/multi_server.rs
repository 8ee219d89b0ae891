//! Several servers, one store: two `ledger serve` processes (the real binary) on one real
//! PostgreSQL database, driven over HTTP, behave as one ledger: what one writes the other serves,
//! racing decisions have one winner, timers and callback deliveries run once, a server killed
//! with SIGKILL loses nothing acknowledged and its jobs are taken over, and a restart of
//! PostgreSQL itself is a 503 meanwhile and no restart of the servers afterwards.

use crate::api::{answer_text, reply_for_review};
use crate::postgres::TestPostgres;
use crate::support::ledger_binary;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a server may take to start, or a condition to become true.
const PATIENCE: Duration = Duration::from_secs(60);

/// One `ledger serve` process on a store.
struct Server {
    base: String,
    child: tokio::process::Child,
    client: reqwest::Client,
}

impl Server {
    async fn start(store: &str) -> Server {
        use tokio::io::AsyncBufReadExt;
        ledger::tls::install_crypto_provider();
        let mut child = tokio::process::Command::new(ledger_binary())
            .args([
                "--store",
                store,
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--lease-ttl",
                "2s",
                "--callback-allow",
                "127.0.0.0/8",
            ])
            .env("LEDGER_ADMIN_TOKEN", "admin-token")
            .env("LEDGER_LOG", "warn")
            .env_remove("LEDGER_DATA_DIR")
            .env_remove("LEDGER_CALLBACK_KEY")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
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
        // Keep reading its standard output, so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Server {
            base,
            child,
            client: reqwest::Client::new(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .timeout(Duration::from_secs(30));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let (status, text) = answer_text(request.send().await.unwrap()).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `POST /v1/items/{id}/{action}` with `body` (an empty object if `None`).
    async fn act(
        &self,
        id: &str,
        action: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let body = body.unwrap_or_else(|| json!({}));
        self.call(
            "POST",
            &format!("/v1/items/{id}/{action}"),
            token,
            Some(body),
        )
        .await
    }

    async fn add_principal(&self, body: Value) -> String {
        let (status, added) = self
            .call("POST", "/v1/principals", "admin-token", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{added}");
        added["token"].as_str().unwrap().to_owned()
    }

    async fn submit(&self, agent: &str, body: Value) -> String {
        let (status, item) = self.call("POST", "/v1/items", agent, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{item}");
        item["id"].as_str().unwrap().to_owned()
    }

    async fn kill(&mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

/// Waits until `check` holds, polling.
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A receiver of callbacks on 127.0.0.1: the `webhook-id` of every delivery it got.
async fn callback_receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let seen = seen.clone();
            async move {
                let id = headers
                    .get("webhook-id")
                    .map(|value| value.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                seen.lock().unwrap().push(id);
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}/hook"), received)
}

/// The agent's and two reviewers' tokens, added through `server`.
async fn principals(server: &Server) -> (String, String, String) {
    let agent = server
        .add_principal(json!({"name": "agent-1", "role": "agent"}))
        .await;
    let rita = server
        .add_principal(json!({"name": "rita", "role": "reviewer", "queues": ["support"]}))
        .await;
    let sam = server
        .add_principal(json!({"name": "sam", "role": "reviewer", "queues": ["support"]}))
        .await;
    (agent, rita, sam)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_on_one_postgres_are_one_ledger() {
    let store = TestPostgres::shared().create_database("one_ledger");
    let first = Server::start(&store).await;
    let second = Server::start(&store).await;
    // Principals added on one server work on the other at once.
    let (agent, rita, sam) = principals(&first).await;

    // Submitted on one, visible, claimable and decidable on the other; the agent's long-poll on
    // the first wakes when the second decides.
    let id = first.submit(&agent, reply_for_review()).await;
    let (status, item) = second
        .call("GET", &format!("/v1/items/{id}"), &rita, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{item}");
    let (status, queue) = second
        .call("GET", "/v1/queue?queue=support", &rita, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        queue["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["id"] == id.as_str())
    );
    let waiting = {
        let client = first.client.clone();
        let url = format!("{}/v1/items/{id}/decision?wait=30", first.base);
        let agent = agent.clone();
        tokio::spawn(async move {
            let response = client.get(url).bearer_auth(agent).send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        })
    };
    let (status, claimed) = second.act(&id, "claim", &rita, None).await;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    let (status, approved) = second.act(&id, "approve", &rita, None).await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    let (status, decision) = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the long-poll on the other server wakes")
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{decision}");
    assert_eq!(decision["decision"]["outcome"], "approved", "{decision}");

    // Claimed through one server, decided at once through the other: the second server may not
    // have applied the claim yet when the approval arrives. Its first attempt then decides on a
    // stale copy and is refused; the approval is made again on the store's state and succeeds,
    // every time, with nothing written twice.
    for _ in 0..20 {
        let id = first.submit(&agent, reply_for_review()).await;
        let (status, claimed) = first.act(&id, "claim", &rita, None).await;
        assert_eq!(status, StatusCode::OK, "{claimed}");
        let (status, approved) = second.act(&id, "approve", &rita, None).await;
        assert_eq!(status, StatusCode::OK, "{approved}");
        assert_eq!(approved["status"], "approved");
        // Four events, as on one server (submitted, claimed, approved, decided): none twice.
        assert_eq!(approved["event_count"], 4, "{approved}");
    }

    // A principal revoked on one server is refused by the other.
    let temp = first
        .add_principal(json!({"name": "temp", "role": "auditor"}))
        .await;
    let (status, _) = second.call("GET", "/v1/queue", &temp, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = first
        .call("DELETE", "/v1/principals/temp", "admin-token", None)
        .await;
    assert!(status.is_success());
    eventually("the revocation reaches the other server", || async {
        second.call("GET", "/v1/queue", &temp, None).await.0 == StatusCode::UNAUTHORIZED
    })
    .await;

    // 1,000 racing decisions on 100 items, split across both servers: exactly 100 decided, each
    // once.
    let mut ids = Vec::new();
    for n in 0..100 {
        let server = if n % 2 == 0 { &first } else { &second };
        ids.push(server.submit(&agent, reply_for_review()).await);
    }
    let servers = Arc::new([first, second]);
    let mut racers = Vec::new();
    for racer in 0..10usize {
        let servers = servers.clone();
        let ids = ids.clone();
        let token = if racer % 2 == 0 {
            rita.clone()
        } else {
            sam.clone()
        };
        racers.push(tokio::spawn(async move {
            let mut won = Vec::new();
            for (n, id) in ids.iter().enumerate() {
                let server = &servers[(n + racer) % 2];
                let action = if racer % 3 == 0 { "reject" } else { "approve" };
                let body = (action == "reject").then(|| json!({"reason": "racing"}));
                let (status, answer) = server.act(id, action, &token, body).await;
                match status {
                    StatusCode::OK => won.push(id.clone()),
                    StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY => {}
                    other => panic!("{other}: {answer}"),
                }
            }
            won
        }));
    }
    let mut winners = Vec::new();
    for racer in racers {
        winners.extend(racer.await.unwrap());
    }
    winners.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(winners, expected, "each item decided exactly once");
    for id in &ids {
        for server in servers.iter() {
            let (status, item) = server
                .call("GET", &format!("/v1/items/{id}"), &rita, None)
                .await;
            assert_eq!(status, StatusCode::OK);
            assert!(
                matches!(item["status"].as_str(), Some("approved" | "rejected")),
                "{item}"
            );
        }
    }

    // Both servers' read models converge to the log: a rebuild from the store equals what each
    // serves live.
    let rebuilt = std::process::Command::new(ledger_binary())
        .args(["--store", &store, "projections", "rebuild"])
        .env("LEDGER_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    let summary: Value = serde_json::from_slice(&rebuilt.stdout).unwrap();
    for server in servers.iter() {
        let (_, health) = server.call("GET", "/readyz", "", None).await;
        assert_eq!(
            health["projected"], summary["events_applied"],
            "{health} vs {summary}"
        );
        let (_, queue) = server
            .call("GET", "/v1/queue?queue=support", &rita, None)
            .await;
        assert_eq!(
            queue["items"].as_array().unwrap().len(),
            0,
            "nothing left open"
        );
    }
    let verified = std::process::Command::new(ledger_binary())
        .args(["--store", &store, "verify"])
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
}

/// Timers and deliveries run once with both servers up; after the server holding them is killed
/// with SIGKILL mid-load, nothing it acknowledged is lost and the other takes its jobs over.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_server_loses_nothing_and_its_jobs_are_taken_over() {
    let store = TestPostgres::shared().create_database("kill_nine");
    let mut first = Server::start(&store).await;
    let mut second = Server::start(&store).await;
    let (agent, rita, _) = principals(&first).await;
    let (hook, received) = callback_receiver().await;

    // With both up: 10 decided items with callbacks are delivered once each, not once per server.
    for _ in 0..10 {
        let mut body = reply_for_review();
        body["callback_url"] = json!(hook);
        let id = first.submit(&agent, body).await;
        let (status, answer) = second
            .act(&id, "reject", &rita, Some(json!({"reason": "no"})))
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    eventually("ten deliveries", || async {
        received.lock().unwrap().len() >= 10
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    {
        let got = received.lock().unwrap().clone();
        let unique: std::collections::HashSet<_> = got.iter().collect();
        assert_eq!(got.len(), 10, "one delivery each: {got:?}");
        assert_eq!(unique.len(), 10);
    }

    // Load on both; the server holding the jobs is killed in the middle of it.
    let holder = lease_holder_pid(&store, "scheduler").await;
    let (victim, survivor) = if holder == first.pid() {
        (&mut first, &second)
    } else {
        assert_eq!(
            holder,
            second.pid(),
            "one of the two holds the scheduler's lease"
        );
        (&mut second, &first)
    };
    let victim_base = victim.base.clone();
    let load = {
        let agent = agent.clone();
        let bases = [victim_base.clone(), survivor.base.clone()];
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut acknowledged = Vec::new();
            for n in 0..400 {
                let response = client
                    .post(format!("{}/v1/items", bases[n % 2]))
                    .bearer_auth(&agent)
                    .json(&reply_for_review())
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                if let Ok(response) = response
                    && response.status() == StatusCode::CREATED
                {
                    let item: Value = response.json().await.unwrap();
                    acknowledged.push(item["id"].as_str().unwrap().to_owned());
                }
            }
            acknowledged
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    victim.kill().await;
    let acknowledged = load.await.unwrap();
    assert!(
        acknowledged.len() >= 200,
        "the survivor kept taking writes: {}",
        acknowledged.len()
    );
    for id in &acknowledged {
        let (status, _) = survivor
            .call("GET", &format!("/v1/items/{id}"), &rita, None)
            .await;
        assert_eq!(status, StatusCode::OK, "acknowledged item {id} is stored");
    }

    // The survivor takes the timers over: a claim with a 1 s lease lapses and is expired.
    let id = survivor.submit(&agent, reply_for_review()).await;
    let (status, _) = survivor
        .act(&id, "claim", &rita, Some(json!({"lease_seconds": 1})))
        .await;
    assert_eq!(status, StatusCode::OK);
    eventually("the lapsed claim is expired by the survivor", || async {
        let (_, events) = survivor
            .call("GET", &format!("/v1/items/{id}/events"), &rita, None)
            .await;
        events["events"]
            .as_array()
            .is_some_and(|events| events.iter().any(|event| event["type"] == "ClaimExpired"))
    })
    .await;
    // And the deliveries: a decision made now is delivered once.
    let mut body = reply_for_review();
    body["callback_url"] = json!(hook);
    let id = survivor.submit(&agent, body).await;
    let (status, _) = survivor
        .act(&id, "reject", &rita, Some(json!({"reason": "late"})))
        .await;
    assert_eq!(status, StatusCode::OK);
    eventually("the survivor delivers", || async {
        received.lock().unwrap().len() >= 11
    })
    .await;
    assert_eq!(lease_holder_pid(&store, "callbacks").await, survivor.pid());
}

/// The pid part of the holder of lease `name` (`<pid>-<uuid>`), as the database has it.
async fn lease_holder_pid(store: &str, name: &str) -> u32 {
    let (client, connection) = tokio_postgres::connect(store, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut holder = None;
    for _ in 0..100 {
        if let Some(row) = client
            .query_opt(
                "SELECT holder FROM ledger_leases WHERE name = $1 AND expires_at > now()",
                &[&name],
            )
            .await
            .unwrap()
        {
            holder = Some(row.get::<_, String>(0));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let holder = holder.expect("someone holds the lease");
    holder.split('-').next().unwrap().parse().unwrap()
}

/// PostgreSQL restarts under two running servers: meanwhile they answer 503 problem+json with
/// Retry-After (never 500, nothing acknowledged), then both work again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_restart_is_503_meanwhile_and_the_servers_recover() {
    let postgres = TestPostgres::start();
    let store = postgres.create_database("restart");
    let first = Server::start(&store).await;
    let second = Server::start(&store).await;
    let (agent, rita, _) = principals(&first).await;
    let before = first.submit(&agent, reply_for_review()).await;

    postgres.stop();
    for server in [&first, &second] {
        let response = server
            .client
            .post(format!("{}/v1/items", server.base))
            .bearer_auth(&agent)
            .json(&reply_for_review())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().get("retry-after").is_some());
        let (_, text) = answer_text(response).await;
        let problem: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(problem["problem"], "store-unavailable", "{problem}");
        let (status, health) = server.call("GET", "/healthz", "", None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{health}");
    }

    postgres.start_again();
    for server in [&first, &second] {
        eventually("the server takes writes again", || async {
            let (status, _) = server.call("GET", "/healthz", "", None).await;
            status == StatusCode::OK
        })
        .await;
        let id = server.submit(&agent, reply_for_review()).await;
        let (status, _) = server
            .call("GET", &format!("/v1/items/{id}"), &rita, None)
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = server
            .call("GET", &format!("/v1/items/{before}"), &rita, None)
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    // Nothing refused during the outage was stored: two items after it, one before.
    let (_, queue) = first
        .call("GET", "/v1/queue?queue=support", &rita, None)
        .await;
    assert_eq!(queue["items"].as_array().unwrap().len(), 3, "{queue}");
}
