//! `ledger bench append` and `ledger bench read`: durable append throughput at several levels of
//! concurrency, and the speed of opening, reading and verifying a large log.
//!
//! Each figure is the median of several runs made in one invocation, so that ratios between
//! levels come from the same machine state. The logs are written to a scratch directory on the
//! disk the data directory is on (never /tmp, which may be a RAM disk where fsync costs nothing).

use crate::log::{EventLog, ExpectedVersion, FileLog, FileLogOptions, Store};
use anyhow::Context;
use projections::event::NewEvent;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// An event whose stored frame is about `bytes` long.
pub fn sample_event(bytes: usize, sequence: u64) -> NewEvent {
    // Header (80) and fixed payload fields (~150 with the names below) take the rest.
    let filler = "x".repeat(bytes.saturating_sub(80 + 150 + 120));
    NewEvent {
        id: Uuid::new_v4(),
        event_type: "OutputApproved".into(),
        schema_version: 1,
        data: serde_json::value::to_raw_value(&serde_json::json!({
            "reviewer": "reviewer-0042",
            "revision": 1,
            "output_hash": "9f2c1e5b7a04d3c8e6f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7",
            "sequence": sequence,
            "note": filler,
        }))
        .expect("a Value always serializes"),
        actor: "reviewer-0042".into(),
        causation_id: Some(Uuid::new_v4()),
        correlation_id: Some(Uuid::new_v4()),
    }
}

/// A scratch directory removed on drop, unless kept.
pub(crate) struct Scratch(PathBuf, bool);

impl Scratch {
    pub(crate) fn new(parent: &Path, label: &str) -> anyhow::Result<Scratch> {
        let path = parent.join(format!("bench-{label}-{}", Uuid::new_v4().simple()));
        // Owner-only, like every data directory the log creates (the log warns about others).
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(Scratch(path, false))
    }

    /// Keeps the directory when dropped (its path is printed then).
    pub(crate) fn keep(&mut self, keep: bool) {
        self.1 = keep;
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.1 {
            eprintln!("kept the benchmark's log in {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One measured level of `bench append`.
#[derive(Debug, Clone)]
pub struct AppendFigures {
    pub appenders: usize,
    pub events: u64,
    pub events_per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
}

/// Appends `events` single-event appends spread over `appenders` tasks, each on its own stream
/// with an exact expected version, and measures throughput and per-append latency: on a fresh
/// file log in a scratch directory under `dir`, or on `store` (whose streams get a fresh prefix
/// each run, so that a store can be measured several times).
pub async fn measure_append(
    dir: &Path,
    store: Option<&Arc<dyn EventLog>>,
    appenders: usize,
    events: u64,
    event_bytes: usize,
    follower: Follower,
) -> anyhow::Result<AppendFigures> {
    let scratch;
    let log: Arc<dyn EventLog> = match store {
        Some(log) => log.clone(),
        None => {
            scratch = Scratch::new(dir, "append")?;
            Arc::new(FileLog::open(
                &scratch.0,
                FileLogOptions::default(),
                "bench",
            )?)
        }
    };
    let run = Uuid::new_v4().simple().to_string();
    let per_appender = events.div_ceil(appenders as u64);
    // Build the events first so that only appending is timed.
    let prepared: Vec<Vec<NewEvent>> = (0..appenders)
        .map(|appender| {
            (0..per_appender)
                .map(|sequence| {
                    sample_event(event_bytes, appender as u64 * per_appender + sequence)
                })
                .collect()
        })
        .collect();
    // With the tree: a subscriber folds every event into the audit read model, as a server's
    // projector does, while the appenders run; the run ends once it has caught up too.
    let head_before = log.head().await?;
    let tree = (follower != Follower::None).then(|| {
        let mut subscription = log.subscribe(0);
        tokio::spawn(async move {
            let mut audit = projections::audit::Audit::default();
            let mut applied = 0u64;
            let mut apply = |event: &projections::event::RecordedEvent| {
                if follower == Follower::Tree {
                    audit.apply(event);
                }
            };
            loop {
                let event = subscription.next().await?;
                apply(&event);
                applied += 1;
                for event in subscription.drain_ready(1023) {
                    apply(&event);
                    applied += 1;
                }
                if applied >= head_before + total_events_of(appenders, per_appender) {
                    return anyhow::Ok(applied);
                }
            }
        })
    });
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(appenders);
    for (appender, events) in prepared.into_iter().enumerate() {
        let log = log.clone();
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            let stream = format!("item-{run}-{appender}");
            let mut latencies = Vec::with_capacity(events.len());
            for (version, event) in events.into_iter().enumerate() {
                let expected = match version {
                    0 => ExpectedVersion::NoStream,
                    _ => ExpectedVersion::Exact(version as u64 - 1),
                };
                let began = Instant::now();
                log.append(&stream, expected, vec![event]).await?;
                latencies.push(began.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.context("appender task")??);
    }
    if let Some(tree) = tree {
        tree.await.context("tree task")??;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let total = latencies.len() as u64;
    Ok(AppendFigures {
        appenders,
        events: total,
        events_per_second: total as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
    })
}

/// What follows the log while a run appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follower {
    /// Nothing.
    None,
    /// A subscription that reads every event and does nothing with it.
    Subscriber,
    /// A subscription folding every event into the Merkle tree (the audit read model).
    Tree,
}

fn total_events_of(appenders: usize, per_appender: u64) -> u64 {
    appenders as u64 * per_appender
}

fn percentile(sorted: &[Duration], quantile: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * quantile).round() as usize;
    sorted[index]
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// `ledger bench append`: prints a Markdown table, one row a level of concurrency. With a
/// `store` other than the file log, each level is measured on the embedded file log and on the
/// store in the same run, side by side.
#[allow(clippy::too_many_arguments)]
pub async fn run_append(
    dir: &Path,
    store: &Store,
    levels: &[usize],
    events_per_appender: u64,
    min_events: u64,
    event_bytes: usize,
    runs: usize,
    with_tree: bool,
) -> anyhow::Result<()> {
    if with_tree {
        return run_append_with_tree(
            dir,
            levels,
            events_per_appender,
            min_events,
            event_bytes,
            runs,
        )
        .await;
    }
    let other: Option<Arc<dyn EventLog>> = match store {
        Store::File(_) => None,
        other => Some(crate::log::open(other, "bench").await?),
    };
    println!(
        "durable appends, {event_bytes}-byte events, one event an append, median of {runs} runs\n"
    );
    match &other {
        None => {
            println!(
                "| appenders | events a run | events/s (median) | p50 latency | p99 latency |"
            );
            println!("|---:|---:|---:|---:|---:|");
        }
        Some(log) => {
            let name = log.backend();
            println!(
                "| appenders | events a run | file log events/s | {name} events/s | {name} / file | {name} p50 | {name} p99 |"
            );
            println!("|---:|---:|---:|---:|---:|---:|---:|");
        }
    }
    for &appenders in levels {
        let events = (appenders as u64 * events_per_appender).max(min_events);
        let middle_of = async |store: Option<&Arc<dyn EventLog>>| -> anyhow::Result<AppendFigures> {
            let mut figures = Vec::new();
            for _ in 0..runs {
                figures.push(
                    measure_append(dir, store, appenders, events, event_bytes, Follower::None)
                        .await?,
                );
            }
            figures.sort_by(|a, b| a.events_per_second.total_cmp(&b.events_per_second));
            Ok(figures.swap_remove(figures.len() / 2))
        };
        let file = middle_of(None).await?;
        match &other {
            None => println!(
                "| {} | {} | {:.0} | {:.0} µs | {:.0} µs |",
                appenders,
                file.events,
                file.events_per_second,
                file.p50.as_secs_f64() * 1e6,
                file.p99.as_secs_f64() * 1e6
            ),
            Some(log) => {
                let measured = middle_of(Some(log)).await?;
                println!(
                    "| {} | {} | {:.0} | {:.0} | {:.2} | {:.0} µs | {:.0} µs |",
                    appenders,
                    file.events,
                    file.events_per_second,
                    measured.events_per_second,
                    measured.events_per_second / file.events_per_second,
                    measured.p50.as_secs_f64() * 1e6,
                    measured.p99.as_secs_f64() * 1e6
                );
            }
        }
    }
    Ok(())
}

/// `ledger bench append --tree`: each level on the file log with nothing following it, with a
/// subscriber that reads every event (as a server's projector does), and with that subscriber
/// also maintaining the Merkle tree; runs interleaved, medians side by side. The tree's own cost
/// is the last two compared.
async fn run_append_with_tree(
    dir: &Path,
    levels: &[usize],
    events_per_appender: u64,
    min_events: u64,
    event_bytes: usize,
    runs: usize,
) -> anyhow::Result<()> {
    println!(
        "durable appends on the file log, {event_bytes}-byte events, one event an append, median of {runs} interleaved runs; each run ends when the follower has caught up too\n"
    );
    println!(
        "| appenders | events a run | alone, events/s | with a subscriber | with a subscriber maintaining the tree | tree / subscriber | p99 with the tree |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &appenders in levels {
        let events = (appenders as u64 * events_per_appender).max(min_events);
        let mut figures: [Vec<AppendFigures>; 3] = Default::default();
        for _ in 0..runs {
            for (index, follower) in [Follower::None, Follower::Subscriber, Follower::Tree]
                .into_iter()
                .enumerate()
            {
                figures[index].push(
                    measure_append(dir, None, appenders, events, event_bytes, follower).await?,
                );
            }
        }
        let [alone, subscriber, tree] = figures.map(|mut figures| {
            figures.sort_by(|a, b| a.events_per_second.total_cmp(&b.events_per_second));
            figures.swap_remove(figures.len() / 2)
        });
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.3} | {:.0} µs |",
            appenders,
            tree.events,
            alone.events_per_second,
            subscriber.events_per_second,
            tree.events_per_second,
            tree.events_per_second / subscriber.events_per_second,
            tree.p99.as_secs_f64() * 1e6
        );
    }
    Ok(())
}

/// Writes a file log of about `events` events of `event_bytes` into `dir` (256 writers, eight
/// events an append, each append a stream of its own); the number of events stored.
pub(crate) async fn fill(dir: &Path, events: u64, event_bytes: usize) -> anyhow::Result<u64> {
    let log = Arc::new(FileLog::open(dir, FileLogOptions::default(), "bench")?);
    let writers = 256u64;
    let per_writer = events.div_ceil(writers * 8);
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for sequence in 0..per_writer {
                let batch: Vec<NewEvent> = (0..8)
                    .map(|offset| sample_event(event_bytes, sequence * 8 + offset))
                    .collect();
                log.append(
                    &format!("item-{writer}-{sequence}"),
                    ExpectedVersion::NoStream,
                    batch,
                )
                .await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await.context("writer task")??;
    }
    Ok(log.head().await?)
}

/// `ledger bench read`: writes a log of `events` events, then measures opening it, reading it
/// through the log's API (decode and hash check per event, one thread), and `verify` (every hash
/// and link, on every core).
pub async fn run_read(
    dir: &Path,
    events: u64,
    event_bytes: usize,
    runs: usize,
    keep: bool,
) -> anyhow::Result<()> {
    let mut scratch = Scratch::new(dir, "read")?;
    scratch.keep(keep);
    fill(&scratch.0, events, event_bytes).await?;
    let bytes: u64 = crate::log::segment::list_segments(&scratch.0)?
        .iter()
        .map(|(_, path)| std::fs::metadata(path).map(|meta| meta.len()).unwrap_or(0))
        .sum();
    let mut open_seconds = Vec::new();
    let mut read_rates = Vec::new();
    let mut verify_rates = Vec::new();
    let mut stored = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let log = FileLog::open(&scratch.0, FileLogOptions::default(), "bench")?;
        open_seconds.push(started.elapsed().as_secs_f64());
        stored = log.head_now();
        let started = Instant::now();
        let mut position = 0;
        while position < stored {
            position += log.read_all(position, 8192).await?.len() as u64;
        }
        read_rates.push(stored as f64 / started.elapsed().as_secs_f64());
        drop(log);
        let started = Instant::now();
        let report = crate::verify::verify(&scratch.0, &|_| {})?;
        anyhow::ensure!(
            report.damage.is_none(),
            "the benchmark's own log did not verify"
        );
        verify_rates.push(report.events as f64 / started.elapsed().as_secs_f64());
    }
    println!(
        "a log of {stored} events ({:.0} MB, {event_bytes}-byte events), median of {runs} runs\n",
        bytes as f64 / 1e6
    );
    println!("| measure | median |");
    println!("|---|---:|");
    println!(
        "| open (rebuild the index) | {:.0} ms |",
        median(open_seconds) * 1e3
    );
    println!(
        "| read_all through the API (decode + SHA-256 per event, one thread) | {:.0} events/s |",
        median(read_rates)
    );
    println!(
        "| verify (every event hash, chain hash, stream link and id, and the Merkle tree, all cores) | {:.0} events/s |",
        median(verify_rates)
    );
    Ok(())
}

/// Appends forever from `appenders` tasks, each to streams of its own, and prints
/// `ack <event id> <position>` on stdout after each acknowledged append (flushed at once), so that
/// a parent process that kills this one knows exactly what was acknowledged.
pub async fn append_until_killed(log: Arc<FileLog>, appenders: usize) -> anyhow::Result<()> {
    let stdout = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let mut tasks = Vec::new();
    for _ in 0..appenders {
        let log = log.clone();
        let stdout = stdout.clone();
        tasks.push(tokio::spawn(async move {
            let stream = format!("item-{}", Uuid::new_v4());
            for sequence in 0u64.. {
                let batch_size = 1 + (sequence % 3) as usize;
                let events: Vec<NewEvent> = (0..batch_size)
                    .map(|offset| sample_event(200 + 40 * offset, sequence))
                    .collect();
                let ids: Vec<Uuid> = events.iter().map(|event| event.id).collect();
                let expected = match log.stream_version_now(&stream) {
                    None => ExpectedVersion::NoStream,
                    Some(version) => ExpectedVersion::Exact(version),
                };
                let result = log.append(&stream, expected, events).await?;
                let mut out = stdout.lock().expect("stdout lock");
                for (offset, id) in ids.iter().enumerate() {
                    writeln!(out, "ack {id} {}", result.first_position + offset as u64)?;
                }
                out.flush()?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await.context("appender task")??;
    }
    Ok(())
}
