//! `ledger bench proofs`: what proofs cost. In the process: building the Merkle tree of N
//! events, and inclusion and consistency proofs from it for random positions and sizes. Over
//! HTTP: a file log of N events written first, a real `ledger serve` on it (which rebuilds the
//! tree on start and signs a checkpoint), and keep-alive clients asking for inclusion proofs of
//! random positions.

use crate::bench::Scratch;
use crate::bench_http::Client;
use anyhow::Context;
use projections::event::sha256;
use projections::merkle::MerkleTree;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A small, fast pseudo-random sequence (xorshift64*): positions to ask for, the same each run.
struct Positions(u64);

impl Positions {
    fn next_below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The in-process part: the tree of `events` leaves, then timed proofs.
fn in_process(events: u64, runs: usize) {
    let started = Instant::now();
    let mut tree = MerkleTree::new();
    for index in 0..events {
        tree.push_event(&sha256(&index.to_be_bytes()));
    }
    let build = started.elapsed();
    let mut positions = Positions(0x9e37_79b9_7f4a_7c15);
    const BATCH: usize = 10_000;
    let mut inclusion = Vec::new();
    let mut consistency = Vec::new();
    for _ in 0..runs.max(1) * 5 {
        let started = Instant::now();
        for _ in 0..BATCH {
            let position = positions.next_below(events);
            std::hint::black_box(tree.inclusion_proof(position, events).expect("a proof"));
        }
        inclusion.push(started.elapsed().as_secs_f64() * 1e6 / BATCH as f64);
        let started = Instant::now();
        for _ in 0..BATCH {
            let first = positions.next_below(events) + 1;
            std::hint::black_box(tree.consistency_proof(first, events).expect("a proof"));
        }
        consistency.push(started.elapsed().as_secs_f64() * 1e6 / BATCH as f64);
    }
    println!("## In the process: a tree of {events} events\n");
    println!("| measure | median |");
    println!("|---|---:|");
    println!(
        "| build the tree (leaf hash + subtree hashes per event) | {:.0} events/s ({:.1} s) |",
        events as f64 / build.as_secs_f64(),
        build.as_secs_f64()
    );
    println!(
        "| its stored hashes | {:.0} MB ({:.1} bytes per event) |",
        tlog_tiles::stored_hash_count(events) as f64 * 32.0 / 1e6,
        tlog_tiles::stored_hash_count(events) as f64 * 32.0 / events as f64
    );
    println!(
        "| an inclusion proof of a random position (batches of {BATCH}) | {:.2} µs |",
        median(inclusion)
    );
    println!(
        "| a consistency proof from a random size | {:.2} µs |\n",
        median(consistency)
    );
}

/// `ledger bench proofs`.
pub async fn run_proofs(
    parent: &Path,
    events: u64,
    clients: usize,
    seconds: u64,
    runs: usize,
    keep: bool,
) -> anyhow::Result<()> {
    anyhow::ensure!(events > 0, "--events must be positive");
    in_process(events, runs);

    let mut scratch = Scratch::new(parent, "proofs")?;
    scratch.keep(keep);
    let started = Instant::now();
    let stored = crate::bench::fill(scratch.path(), events, 200).await?;
    eprintln!(
        "wrote {stored} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let ledger = std::env::current_exe().context("finding the ledger executable")?;
    let started = Instant::now();
    let mut server = tokio::process::Command::new(&ledger)
        .args(["--data-dir", &scratch.path().display().to_string()])
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--checkpoint-interval", "1s"])
        .env("LEDGER_ADMIN_TOKEN", "bench-admin")
        .env("LEDGER_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting `ledger serve`")?;
    let address = crate::bench_http::listening_address(&mut server).await?;
    eprintln!(
        "the server rebuilt its read models and tree in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Wait for the checkpoint of the whole log (the server signs one within a second).
    let mut probe = Client::connect(address).await?;
    let tree_size = loop {
        let (status, body) = probe
            .get("/v1/audit/checkpoints/latest", "Bearer bench-admin")
            .await?;
        if status == 200 {
            let latest: serde_json::Value = serde_json::from_slice(&body)?;
            let size = latest["tree_size"].as_u64().unwrap_or(0);
            if size >= stored {
                break size;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for number in 0..clients {
        tasks.spawn(async move {
            let mut client = Client::connect(address).await?;
            let mut positions = Positions(0x2545_f491 + number as u64 * 7919);
            let mut path = String::with_capacity(96);
            let mut done = 0u64;
            while Instant::now() < deadline {
                path.clear();
                use std::fmt::Write;
                write!(
                    path,
                    "/v1/audit/proofs/inclusion?position={}&tree_size={tree_size}",
                    positions.next_below(tree_size)
                )?;
                let (status, _) = client.get(&path, "Bearer bench-admin").await?;
                anyhow::ensure!(status == 200, "a proof answered {status}");
                done += 1;
            }
            anyhow::Ok(done)
        });
    }
    let started = Instant::now();
    let mut proofs = 0;
    while let Some(done) = tasks.join_next().await {
        proofs += done.context("client task")??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = server.kill().await;
    println!("## Over HTTP: `ledger serve` on a file log of {stored} events\n");
    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| inclusion proofs of random positions under the checkpoint of tree size {tree_size}, {clients} keep-alive clients, {seconds} s | {:.0} proofs/s |",
        proofs as f64 / elapsed
    );
    Ok(())
}
