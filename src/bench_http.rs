//! `ledger bench http`: decisions per second over HTTP on loopback, with a large queue.
//!
//! Fills a scratch ledger with pending items (straight through `commands::execute`, not HTTP, so
//! that filling is fast), starts the real server on 127.0.0.1:0 in this process, and runs
//! concurrent reviewer clients that each claim and approve items (two requests, two durable
//! appends per decision). Reports decisions per second, the latency of one decision (claim +
//! approve) at p50 and p99, and the process's resident memory. Client and server share this
//! machine's cores, as any load generator on the same machine would.

use crate::clock::Clock;
use crate::commands::execute;
use crate::http::AppState;
use crate::log::{EventLog, FileLog, FileLogOptions};
use crate::projector::Projector;
use anyhow::Context;
use projections::item::{Command, CommandContext, ExpiryAction, ModelIdentity, Risk, Submission};
use projections::principal::Role;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The resident memory of this process, from /proc (Linux).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kilobytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes * 1024)
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
        output: serde_json::json!({"reply": format!("Draft reply number {number}: your refund is on its way.")}),
        context: serde_json::json!({"ticket": number}),
        confidence: Some(0.8),
        risk: Risk::Normal,
        priority: (number % 5) as i32,
        due_at: None,
        required_approvals: 1,
        on_expiry: ExpiryAction::Reject,
        callback_url: None,
    }
}

/// Runs the benchmark; prints a Markdown table.
pub async fn run_http(
    dir: &Path,
    pending: usize,
    client_levels: &[usize],
    seconds: u64,
) -> anyhow::Result<()> {
    // Before the clients below are built: see `crate::tls`.
    crate::tls::install_crypto_provider();
    let scratch = crate::bench::Scratch::new(dir, "http")?;
    run_in(scratch.path(), pending, client_levels, seconds).await
}

async fn run_in(
    scratch: &Path,
    pending: usize,
    client_levels: &[usize],
    seconds: u64,
) -> anyhow::Result<()> {
    let file_log = Arc::new(FileLog::open(
        scratch,
        FileLogOptions::default(),
        "bench http",
    )?);
    let log: Arc<dyn EventLog> = file_log.clone();
    let projector = Projector::start(log.clone()).await?;
    crate::principals::bootstrap_admin(log.as_ref(), &projector, Some("bench-admin".into()))
        .await?;
    let most_clients = client_levels.iter().copied().max().unwrap_or(1);
    let mut tokens = Vec::new();
    for number in 0..most_clients {
        tokens.push(
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

    // Fill the queue: `pending` items, submitted by 256 concurrent tasks.
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
    projector.wait_for(log.head() - 1).await?;
    let fill_seconds = started.elapsed().as_secs_f64();

    // A restart's rebuild of the read models at this size.
    let started = Instant::now();
    let rebuilt = crate::projector::rebuild(log.as_ref()).await?;
    let rebuild_seconds = started.elapsed().as_secs_f64();
    drop(rebuilt);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let state = AppState::new(
        log.clone(),
        projector.clone(),
        Some(file_log.clone()),
        Clock::System,
    );
    tokio::spawn(crate::http::serve(listener, state, std::future::pending()));
    println!(
        "{pending} pending items filled in {fill_seconds:.1} s; read models rebuilt from the log in {rebuild_seconds:.1} s; RSS {:.0} MB\n",
        resident_bytes().unwrap_or(0) as f64 / 1e6
    );
    println!("| clients | decisions/s | p50 decision | p99 decision | RSS after |");
    println!("|---:|---:|---:|---:|---:|");
    let cursor = Arc::new(AtomicUsize::new(0));
    for &clients in client_levels {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for token in &tokens[..clients.min(tokens.len())] {
            let (ids, cursor, token) = (ids.clone(), cursor.clone(), token.clone());
            let base = format!("http://{address}");
            tasks.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let Some(id) = ids.get(cursor.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    let began = Instant::now();
                    for action in ["claim", "approve"] {
                        let response = client
                            .post(format!("{base}/v1/items/{id}/{action}"))
                            .bearer_auth(&token)
                            .send()
                            .await?;
                        anyhow::ensure!(
                            response.status().is_success(),
                            "{action} answered {}",
                            response.status()
                        );
                    }
                    latencies.push(began.elapsed());
                }
                anyhow::Ok(latencies)
            }));
        }
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await.context("client task")??);
        }
        let elapsed = started.elapsed().as_secs_f64();
        latencies.sort();
        let percentile = |quantile: f64| {
            latencies
                .get(((latencies.len() as f64 - 1.0) * quantile).round() as usize)
                .map(|latency| latency.as_secs_f64() * 1e3)
                .unwrap_or(0.0)
        };
        println!(
            "| {clients} | {:.0} | {:.2} ms | {:.2} ms | {:.0} MB |",
            latencies.len() as f64 / elapsed,
            percentile(0.5),
            percentile(0.99),
            resident_bytes().unwrap_or(0) as f64 / 1e6
        );
    }
    Ok(())
}
