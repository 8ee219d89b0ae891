//! `ledger bench http`: decisions per second over HTTP on loopback with a large queue, and the
//! server's resident memory at that size.
//!
//! Three processes, as in production: a child `ledger bench http-fill` writes the scratch ledger
//! (principals, then `pending` items straight through `commands::execute`, not HTTP, so that
//! filling is fast) and exits; a child `ledger serve` opens it, rebuilding its read models from
//! the log; this process is the load generator. Each client holds one keep-alive HTTP/1.1
//! connection (written and parsed by hand, all clients on one thread) and claims then approves items: two
//! requests, two durable appends per decision. Reported: decisions per second, the latency of
//! one decision (claim + approve) at p50 and p99, the server process's RSS, and the CPU time the
//! server and the load generator spent per request (both read from /proc).
//! Client and server share this machine's cores, as any load generator on the same machine does.

use crate::commands::execute;
use crate::log::Store;
use crate::projector::Projector;
use anyhow::Context;
use projections::item::{Command, CommandContext, ExpiryPolicy, ModelIdentity, Risk, Submission};
use projections::principal::Role;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use uuid::Uuid;

/// The file, in the scratch data directory, listing the filled items' ids (16 bytes each).
const ITEM_IDS_FILE: &str = "bench-item-ids";

/// What the fill step reports to the load generator on its standard output.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct FillReport {
    reviewer_tokens: Vec<String>,
    seconds: f64,
}

/// The resident memory of process `pid` (`self` for this one) from /proc (Linux): (now, peak).
pub fn resident_bytes(pid: &str) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|line| line.starts_with(name))?;
        let kilobytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kilobytes * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU time process `pid` (`self` for this one) has used, user and system, all threads, in
/// seconds, from `/proc/<pid>/stat` (Linux; in USER_HZ ticks, 100 per second on Linux's ABI).
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: count fields after its closing one.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index)?.parse::<u64>().ok();
    Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
}

fn submission(item_id: Uuid, number: usize) -> Submission {
    Submission {
        item_id,
        queue: "bench".into(),
        kind: "customer-reply".into(),
        model: ModelIdentity {
            name: "gpt-x".into(),
            version: "2026-10".into(),
        },
        output: serde_json::json!({"reply": format!("Draft reply number {number}: your refund is on its way.")}).into(),
        context: serde_json::json!({"ticket": number}).into(),
        confidence: Some(0.8),
        risk: Risk::Normal,
        priority: (number % 5) as i32,
        due_at: None,
        required_approvals: 1,
        callback_url: None,
        expiry_policy: ExpiryPolicy::built_in().into(),
        auto_approval: None,
    }
}

/// `ledger bench http-fill` (the fill step's child process): writes `reviewers` reviewers and
/// `pending` items into the empty `store`, the item ids into [`ITEM_IDS_FILE`] in `dir`, and a
/// [`FillReport`] as JSON on standard output.
pub async fn fill(
    store: &Store,
    dir: &Path,
    pending: usize,
    reviewers: usize,
) -> anyhow::Result<()> {
    let log = crate::log::open(store, "bench http-fill").await?;
    anyhow::ensure!(
        log.head().await? == 0,
        "bench http needs an empty store ({} holds events): give it a fresh database",
        store.describe()
    );
    let projector = Projector::start(log.clone()).await?;
    crate::principals::bootstrap_admin(log.as_ref(), &projector, Some("bench-admin".into()))
        .await?;
    let mut reviewer_tokens = Vec::new();
    for number in 0..reviewers {
        reviewer_tokens.push(
            crate::principals::add_principal(
                log.as_ref(),
                &projector,
                "admin",
                &format!("reviewer-{number}"),
                Role::Reviewer,
                vec!["bench".into()],
            )
            .await?,
        );
    }
    crate::principals::add_principal(
        log.as_ref(),
        &projector,
        "admin",
        "agent",
        Role::Agent,
        vec![],
    )
    .await?;

    // `pending` items, submitted by 256 concurrent tasks.
    let started = Instant::now();
    let ids: Arc<Vec<Uuid>> = Arc::new((0..pending).map(|_| Uuid::now_v7()).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let mut fillers = Vec::new();
    for _ in 0..256 {
        let (log, ids, next) = (log.clone(), ids.clone(), next.clone());
        fillers.push(tokio::spawn(async move {
            loop {
                let number = next.fetch_add(1, Ordering::Relaxed);
                let Some(&id) = ids.get(number) else { break };
                let context = CommandContext::new("agent", chrono::Utc::now());
                execute(
                    log.as_ref(),
                    id,
                    &Command::Submit(submission(id, number)),
                    &context,
                    None,
                )
                .await?;
            }
            anyhow::Ok(())
        }));
    }
    for filler in fillers {
        filler.await.context("filler task")??;
    }
    let ids_bytes: Vec<u8> = ids.iter().flat_map(|id| *id.as_bytes()).collect();
    std::fs::write(dir.join(ITEM_IDS_FILE), ids_bytes).context("writing the item ids")?;
    let report = FillReport {
        reviewer_tokens,
        seconds: started.elapsed().as_secs_f64(),
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Runs the benchmark on `servers` servers over `store` (a file log in a scratch directory under
/// `parent` when it is the file store: one server only then); prints a Markdown table. Clients
/// are spread over the servers evenly.
pub async fn run_http(
    parent: &Path,
    store: &Store,
    servers: usize,
    pending: usize,
    client_levels: &[usize],
    seconds: u64,
    keep: bool,
) -> anyhow::Result<()> {
    let mut scratch = crate::bench::Scratch::new(parent, "http")?;
    scratch.keep(keep);
    let store_args: Vec<String> = match store {
        Store::File(_) => {
            anyhow::ensure!(servers == 1, "the file log has one server: --servers 1");
            vec!["--data-dir".into(), scratch.path().display().to_string()]
        }
        Store::Postgres(url) | Store::Kurrent(url) => vec![
            "--data-dir".into(),
            scratch.path().display().to_string(),
            "--store".into(),
            url.clone(),
        ],
        Store::Memory => anyhow::bail!("the in-memory log cannot be shared with a server process"),
    };
    let ledger = std::env::current_exe().context("finding the ledger executable")?;
    let most_clients = client_levels.iter().copied().max().unwrap_or(1);

    let filled = tokio::process::Command::new(&ledger)
        .args(&store_args)
        .args(["bench", "http-fill", "--pending", &pending.to_string()])
        .args(["--reviewers", &most_clients.to_string()])
        .env("LEDGER_LOG", "warn")
        .stderr(Stdio::inherit())
        .output()
        .await
        .context("running `ledger bench http-fill`")?;
    anyhow::ensure!(filled.status.success(), "the fill step failed");
    let report: FillReport =
        serde_json::from_slice(&filled.stdout).context("reading the fill step's report")?;
    let ids: Arc<Vec<Uuid>> = Arc::new(
        std::fs::read(scratch.path().join(ITEM_IDS_FILE))
            .context("reading the item ids")?
            .chunks_exact(16)
            .map(|bytes| Uuid::from_slice(bytes).expect("16 bytes"))
            .collect(),
    );

    let started = Instant::now();
    let mut children = Vec::new();
    let mut addresses = Vec::new();
    for _ in 0..servers {
        let mut server = tokio::process::Command::new(&ledger)
            .args(&store_args)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("LEDGER_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting `ledger serve`")?;
        let address = listening_address(&mut server).await?;
        children.push(server);
        addresses.push(address);
    }
    let server_pid = children[0].id().context("the server's pid")?.to_string();
    let ready_seconds = started.elapsed().as_secs_f64();
    let megabytes = |bytes: u64| bytes as f64 / 1e6;
    let (rss, _) = resident_bytes(&server_pid).context("reading the server's RSS")?;
    println!(
        "{pending} pending items filled in {:.1} s on {}; {servers} server(s) rebuilt their read models and listened after {ready_seconds:.1} s, RSS {:.0} MB (the first)\n",
        report.seconds,
        store.describe(),
        megabytes(rss)
    );
    println!(
        "| clients | decisions/s | p50 decision | p99 decision | server RSS after | server peak RSS | server CPU per request | load generator CPU per request |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let cursor = Arc::new(AtomicUsize::new(0));
    for &clients in client_levels {
        let tokens = report.reviewer_tokens[..clients.min(report.reviewer_tokens.len())].to_vec();
        let (ids_for_level, cursor_for_level) = (ids.clone(), cursor.clone());
        let addresses = addresses.clone();
        // The clients run on one thread of their own (a current-thread runtime): no work stealing
        // and no wake-ups across threads on the load generator's side, so that it leaves as much
        // of the two cores to the server as it can.
        let started = Instant::now();
        let cpu_before = (cpu_seconds(&server_pid), cpu_seconds("self"));
        let mut latencies = tokio::task::spawn_blocking(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the load generator's runtime")?
                .block_on(generate_load(
                    addresses,
                    tokens,
                    ids_for_level,
                    cursor_for_level,
                    Duration::from_secs(seconds),
                ))
        })
        .await
        .context("the load generator")??;
        let elapsed = started.elapsed().as_secs_f64();
        let cpu_after = (cpu_seconds(&server_pid), cpu_seconds("self"));
        anyhow::ensure!(
            cursor.load(Ordering::Relaxed) < ids.len(),
            "the queue ran out of pending items at {clients} clients, so the figures would not be at {pending} pending; raise --pending or lower --seconds"
        );
        latencies.sort();
        let percentile = |quantile: f64| {
            latencies
                .get(((latencies.len() as f64 - 1.0) * quantile).round() as usize)
                .map(|latency| latency.as_secs_f64() * 1e3)
                .unwrap_or(0.0)
        };
        let (rss, peak) = resident_bytes(&server_pid).context("reading the server's RSS")?;
        // CPU per request is steadier than requests per second on a shared machine: it moves
        // with how much work a request is, less with how much of the cores this process got.
        let requests = 2.0 * latencies.len().max(1) as f64;
        let per_request = |before: Option<f64>, after: Option<f64>| match (before, after) {
            (Some(before), Some(after)) => format!("{:.1} µs", (after - before) * 1e6 / requests),
            _ => "n/a".to_owned(),
        };
        println!(
            "| {clients} | {:.0} | {:.2} ms | {:.2} ms | {:.0} MB | {:.0} MB | {} | {} |",
            latencies.len() as f64 / elapsed,
            percentile(0.5),
            percentile(0.99),
            megabytes(rss),
            megabytes(peak),
            per_request(cpu_before.0, cpu_after.0),
            per_request(cpu_before.1, cpu_after.1)
        );
    }
    for mut server in children {
        server.kill().await.context("stopping a server")?;
    }
    Ok(())
}

/// Runs one client per token until `duration` has passed, each claiming then approving the next
/// item of `ids` on one of `addresses` (client i on server i modulo their number); the latency of
/// every decision (claim + approve).
async fn generate_load(
    addresses: Vec<SocketAddr>,
    tokens: Vec<String>,
    ids: Arc<Vec<Uuid>>,
    cursor: Arc<AtomicUsize>,
    duration: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let deadline = Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for (number, token) in tokens.into_iter().enumerate() {
        let address = addresses[number % addresses.len()];
        let (ids, cursor) = (ids.clone(), cursor.clone());
        let authorization = format!("Bearer {token}");
        tasks.spawn(async move {
            let mut client = Client::connect(address).await?;
            let mut latencies = Vec::new();
            let mut path = String::with_capacity(64);
            while Instant::now() < deadline {
                let Some(id) = ids.get(cursor.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                let began = Instant::now();
                for action in ["claim", "approve"] {
                    path.clear();
                    use std::fmt::Write;
                    write!(path, "/v1/items/{id}/{action}")?;
                    let status = client.post(&path, &authorization).await?;
                    anyhow::ensure!((200..300).contains(&status), "{action} answered {status}");
                }
                latencies.push(began.elapsed());
            }
            anyhow::Ok(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(client) = tasks.join_next().await {
        latencies.extend(client.context("client task")??);
    }
    Ok(latencies)
}

/// The address a `ledger serve` child prints once it listens; its standard output is drained
/// from then on, so that it never blocks on a full pipe.
pub(crate) async fn listening_address(
    server: &mut tokio::process::Child,
) -> anyhow::Result<SocketAddr> {
    let mut lines = BufReader::new(server.stdout.take().context("the server's stdout")?).lines();
    let address = loop {
        let line = lines
            .next_line()
            .await?
            .context("the server exited before listening")?;
        if let Some(url) = line.strip_prefix("listening on http://") {
            break url.parse().context("the server's address")?;
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(address)
}

/// One keep-alive HTTP/1.1 connection, written and parsed by hand (`httparse` for the status
/// line and headers): the least a client can do per request, so that the load generator takes as
/// little of the shared cores as it can. Its first version used hyper's client connection, which
/// runs a second task per connection and cost ~13 µs of CPU per request against the server's ~42.
pub(crate) struct Client {
    stream: tokio::net::TcpStream,
    request: Vec<u8>,
    buffer: Vec<u8>,
}

impl Client {
    pub(crate) async fn connect(address: SocketAddr) -> anyhow::Result<Client> {
        let stream = tokio::net::TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            request: Vec::with_capacity(512),
            buffer: Vec::with_capacity(8192),
        })
    }

    /// POSTs an empty body; returns the status once the whole answer is read.
    async fn post(&mut self, path: &str, authorization: &str) -> anyhow::Result<u16> {
        self.send("POST", path, authorization)
            .await
            .map(|(status, _)| status)
    }

    /// GETs `path`; the status and the body.
    pub(crate) async fn get(
        &mut self,
        path: &str,
        authorization: &str,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        self.send("GET", path, authorization).await
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        authorization: &str,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        use std::io::Write;
        use tokio::io::AsyncWriteExt;
        self.request.clear();
        write!(
            self.request,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {authorization}\r\nContent-Length: 0\r\n\r\n"
        )?;
        self.stream.write_all(&self.request).await?;
        self.buffer.clear();
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head_len) = response.parse(&self.buffer)? {
                let status = response.code.context("an answer without a status")?;
                let length = response
                    .headers
                    .iter()
                    .find(|header| header.name.eq_ignore_ascii_case("content-length"))
                    .context("an answer without Content-Length")?;
                let length: usize = std::str::from_utf8(length.value)?.trim().parse()?;
                let end = head_len + length;
                while self.buffer.len() < end {
                    self.read_more().await?;
                }
                anyhow::ensure!(self.buffer.len() == end, "bytes after the answer");
                return Ok((status, self.buffer[head_len..].to_vec()));
            }
            self.read_more().await?;
        }
    }

    async fn read_more(&mut self) -> anyhow::Result<()> {
        use tokio::io::AsyncReadExt;
        if self.buffer.capacity() - self.buffer.len() < 4096 {
            self.buffer.reserve(8192);
        }
        let read = self.stream.read_buf(&mut self.buffer).await?;
        anyhow::ensure!(read > 0, "the server closed the connection");
        Ok(())
    }
}
