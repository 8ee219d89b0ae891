//! The `ledger` command: serve the ledger, verify a data directory, print its events, benchmark.

use anyhow::Context;
use clap::{Parser, Subcommand};
use ledger::log::{FileLog, FileLogOptions};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

// mimalloc rather than glibc's malloc: faster under the server's many small short-lived
// allocations, and it returns freed pages to the OS (the reason is measured in Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An event-sourced, audit-first approval ledger for human-in-the-loop AI.
#[derive(Debug, Parser)]
#[command(name = "ledger", version)]
struct Cli {
    /// The data directory holding the log's segment files.
    #[arg(
        long,
        global = true,
        env = "LEDGER_DATA_DIR",
        default_value = "./ledger-data"
    )]
    data_dir: PathBuf,
    /// Where the log lives instead of the data directory: `postgres://user@host:port/db`,
    /// `kurrentdb://host:2113?tls=false` (or `esdb://…`), or `memory:` (nothing kept). Several
    /// servers may share one PostgreSQL store. Prefer the environment variable for a URL with a
    /// password, which `ps` would show.
    #[arg(long, global = true, env = "LEDGER_STORE", hide_env_values = true)]
    store: Option<String>,
    /// The checkpoint key's file (a Go note signer key, `PRIVATE+KEY+…`, mode 0600), created
    /// there on first use if missing. Default: `checkpoint.key` in the data directory, or the key
    /// the store keeps for all its servers.
    #[arg(long, global = true, env = "LEDGER_CHECKPOINT_KEY_FILE")]
    checkpoint_key: Option<PathBuf>,
    /// The name of a checkpoint key created now: every checkpoint's origin line, e.g.
    /// `ledger.example.com/approvals`. Default: `approval-ledger/` and 16 random hex digits.
    #[arg(long, global = true, env = "LEDGER_CHECKPOINT_ORIGIN")]
    checkpoint_origin: Option<String>,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// The store the options name.
    fn store(&self) -> anyhow::Result<ledger::log::Store> {
        ledger::log::Store::parse(self.store.as_deref(), &self.data_dir)
            .map_err(|error| anyhow::anyhow!("--store: {error}"))
    }

    /// Where the checkpoint key comes from.
    fn key_options(&self) -> ledger::audit::cli::KeyOptions {
        ledger::audit::cli::KeyOptions {
            file: self.checkpoint_key.clone(),
            origin: self.checkpoint_origin.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the ledger's HTTP server on the data directory (or `--store`).
    Serve {
        /// Address to listen on.
        #[arg(long, env = "LEDGER_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        /// A PEM file of CA certificates to trust for `https://` callback URLs, in addition to
        /// the platform's roots (for receivers whose certificates a private CA issued).
        #[arg(long, env = "LEDGER_CALLBACK_CA_FILE")]
        callback_ca_file: Option<PathBuf>,
        /// Networks and host names callbacks may go to although they are not public
        /// (comma-separated: `10.0.0.0/8,hooks.internal`). Without it, callback URLs that are or
        /// resolve to loopback, private, link-local, unique-local or other special addresses
        /// are refused.
        #[arg(long, env = "LEDGER_CALLBACK_ALLOW", value_delimiter = ',')]
        callback_allow: Vec<String>,
        /// Callback attempts in flight at once, in all.
        #[arg(long, env = "LEDGER_CALLBACK_CONCURRENCY", default_value_t = 32,
              value_parser = clap::value_parser!(u16).range(1..))]
        callback_concurrency: u16,
        /// Callback attempts in flight at once to one receiver (host and port).
        #[arg(long, env = "LEDGER_CALLBACK_CONCURRENCY_PER_HOST", default_value_t = 4,
              value_parser = clap::value_parser!(u16).range(1..))]
        callback_concurrency_per_host: u16,
        /// A JSON file of expiry policies by queue and kind: what happens when an item's deadline
        /// passes, and the shortest deadline a submission may set (ADR 0007). Without it every
        /// item expires rejected, never approved, with a 5-minute minimum review window.
        #[arg(long, env = "LEDGER_EXPIRY_POLICY")]
        expiry_policy: Option<PathBuf>,
        /// A JSON file of review policies by kind (the feedback loop): a slice measured accurate
        /// enough is only sampled for review, the rest approved automatically with the evidence
        /// recorded. Without it every item is reviewed (slices are still measured).
        #[arg(long, env = "LEDGER_REVIEW_POLICY")]
        review_policy: Option<PathBuf>,
        /// How long this server's hold on the background jobs (timers, callback deliveries)
        /// lasts unrenewed: with several servers on one store, another takes them over within
        /// this after a server dies. Renewed every second.
        #[arg(long, env = "LEDGER_LEASE_TTL", default_value = "10s", value_parser = ledger::http::server::parse_duration)]
        lease_ttl: std::time::Duration,
        #[command(flatten)]
        network: NetworkOptions,
        #[command(flatten)]
        checkpoints: CheckpointOptions,
    },
    /// Recompute every hash and chain link, the Merkle tree, and every stored checkpoint (root,
    /// signature, consistency with the one before); exit 1 naming the first bad position or
    /// checkpoint.
    Verify {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// The verifier key to check checkpoints' signatures with (`<name>+<id>+<base64>`);
        /// default: the public half of the ledger's own key file, if there is one.
        #[arg(long)]
        key: Option<String>,
    },
    /// Data for other tools: the review dataset.
    Export {
        #[command(subcommand)]
        command: ExportCommand,
    },
    /// Override rates and other measures of how humans review the AI.
    Analytics {
        #[command(subcommand)]
        command: AnalyticsCommand,
    },
    /// Demo data: a realistic review history (needs the log for writing: on a data directory, no
    /// server may hold it).
    Demo {
        #[command(subcommand)]
        command: DemoCommand,
    },
    /// Checkpoints, proofs and compliance bundles (ADR 0013).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Add or revoke principals (works on the data directory while no server holds it).
    Principal {
        #[command(subcommand)]
        command: PrincipalCommand,
    },
    /// Rebuild the read models from the log and print what they hold.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Print events as JSON lines.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Measure the log's speed (writes scratch logs under the data directory's parent).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Append until killed, printing each acknowledged event id (the crash-safety test's child).
    #[command(hide = true)]
    AppendUntilKilled {
        #[arg(long, default_value_t = 16)]
        appenders: usize,
        #[arg(long, default_value_t = 64 * 1024)]
        segment_size: u64,
    },
}

#[derive(Debug, Subcommand)]
enum ExportCommand {
    /// One JSON line per decided item (JSON Lines): context, the AI's output, the human's final
    /// output, the decision, the reason and the reviewers' notes; an edit also as a preference
    /// pair (the human's version chosen over the AI's), for evaluating or fine-tuning models.
    Dataset {
        /// The file to write.
        out: PathBuf,
        /// JSON Lines, or Parquet (a build with `--features parquet`).
        #[arg(long, value_enum, default_value = "jsonl")]
        format: DatasetFormat,
        /// Only items decided at or after this time (RFC 3339, or a date).
        #[arg(long)]
        since: Option<String>,
        /// Only items decided before this time.
        #[arg(long)]
        until: Option<String>,
    },
    /// The analytics tables as Parquet files in OUT_DIR: items.parquet, events.parquet and
    /// verdicts.parquet (docs/analytics-tables.md), from one streaming pass over the log. Needs a
    /// build with `--features parquet` (polars is not linked into the server).
    Parquet {
        /// The directory to write to (created if missing).
        out_dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AnalyticsCommand {
    /// Measures every (model, version, kind)'s override rate over the last `--window-days` and
    /// appends an `AccuracyMeasured` event for each slice whose counts changed: what a running
    /// server's job does (`POST /v1/analytics/accuracy` asks it now), for a data directory no
    /// server runs on.
    Publish {
        #[arg(long, default_value_t = 30)]
        window_days: u32,
    },
    /// A measure of the decisions by slice, from one streaming pass over the log: by default the
    /// override rates ((edited + rejected) / decided) with 95% Wilson intervals. The same numbers
    /// as `GET /v1/analytics/<metric>`.
    Report {
        /// What to measure.
        #[arg(long, value_enum, default_value = "override-rates")]
        metric: ledger::analytics::Metric,
        /// Comma-separated dimensions: model, model_version, kind, queue, reviewer, day, week.
        #[arg(long, default_value = "model,kind")]
        by: String,
        /// Only items decided at or after this time (RFC 3339, or a date).
        #[arg(long)]
        since: Option<String>,
        /// Only items decided before this time.
        #[arg(long)]
        until: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormat,
        /// Calibration: equal-width confidence buckets.
        #[arg(long, default_value_t = 10)]
        buckets: usize,
        /// Drift: the latest window's length in days.
        #[arg(long)]
        window_days: Option<u32>,
        /// Drift: decided items each side needs for a slice to be tested.
        #[arg(long)]
        min_sample: Option<u64>,
    },
    /// Override rate by the AI's stated confidence bucket, and the expected calibration error,
    /// per slice (JSON): the same numbers as `GET /v1/analytics/calibration`.
    Calibration {
        /// Comma-separated dimensions (none: the whole ledger).
        #[arg(long, default_value = "")]
        by: String,
        /// Equal-width confidence buckets.
        #[arg(long, default_value_t = 10)]
        buckets: usize,
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Subcommand)]
enum DemoCommand {
    /// Write N simulated items through the real domain: several models with different true
    /// override rates, reviewers of different speed and strictness, edits, rejections, change
    /// requests, escalations, expiries and four-eyes approvals over weeks; the last 5% stay open.
    /// Prints a JSON report: the tokens of the demo principals it created and each slice's true
    /// override rate.
    Seed {
        #[arg(long, default_value_t = 1000)]
        items: usize,
        /// The same seed writes the same history.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Weeks of history, ending now (or at `--until`).
        #[arg(long, default_value_t = 6)]
        weeks: i64,
        /// When the history ends (RFC 3339); with it, a seed writes exactly the same history.
        #[arg(long)]
        until: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Print the verifier key of the ledger's checkpoints (`<name>+<key id>+<base64>`, the C2SP
    /// signed-note format) for auditors to keep; creates the key if there is none yet.
    PublicKey,
    /// Sign a checkpoint of the whole log now and append it (needs the log for writing: on a
    /// data directory, no server may hold it).
    Checkpoint,
    /// Prove that the log extends checkpoints saved earlier (consistency proofs checked step by
    /// step); exit 1 naming the first it does not extend.
    Verify {
        /// A signed note saved earlier (e.g. from `GET /v1/audit/checkpoints/latest` with
        /// `Accept: text/plain`); repeat, or give several.
        #[arg(long = "trusted-checkpoint", required = true, num_args = 1..)]
        trusted_checkpoint: Vec<PathBuf>,
        /// The verifier key you trust; default: the public half of the ledger's own key file.
        #[arg(long)]
        key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Write a compliance bundle: events in their canonical bytes, their inclusion proofs, the
    /// checkpoint, its verifier key and a readable summary.
    Export {
        /// One item's events.
        #[arg(long, conflicts_with_all = ["from", "to"], required_unless_present = "from")]
        item: Option<uuid::Uuid>,
        /// Events recorded at or after this time (RFC 3339), with `--to`.
        #[arg(long, requires = "to")]
        from: Option<String>,
        /// Events recorded before this time (RFC 3339).
        #[arg(long, requires = "from")]
        to: Option<String>,
        /// The file to write (standard output if absent).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify a compliance bundle offline; exit 1 naming what does not verify.
    VerifyBundle {
        bundle: PathBuf,
        /// The verifier key you trust; default: the one the bundle carries (with a warning).
        #[arg(long)]
        key: Option<String>,
    },
}

/// When `serve` signs checkpoints and where it publishes them.
#[derive(Debug, clap::Args)]
struct CheckpointOptions {
    /// Sign a checkpoint once this many events are not covered by the latest one.
    #[arg(long, env = "LEDGER_CHECKPOINT_EVERY", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    checkpoint_every: u64,
    /// Sign one at least this often while events are not covered: `10s`, `500ms`, `1m`.
    #[arg(long, env = "LEDGER_CHECKPOINT_INTERVAL", default_value = "10s", value_parser = ledger::http::server::parse_duration)]
    checkpoint_interval: std::time::Duration,
    /// URLs each new checkpoint is POSTed to (its signed note, with a Standard Webhooks `v1a`
    /// Ed25519 signature by the checkpoint key), so that copies live out of the operator's
    /// reach; comma-separated or repeated.
    #[arg(long, env = "LEDGER_CHECKPOINT_PUBLISH", value_delimiter = ',')]
    checkpoint_publish: Vec<url::Url>,
}

/// `serve`'s connection limits and who may read `/metrics` (defaults argued in ADR 0005).
#[derive(Debug, clap::Args)]
struct NetworkOptions {
    /// Time a client has for a request's line and headers, from its first byte (or the
    /// connection's accept): `10s`, `500ms`, `2m`.
    #[arg(long, env = "LEDGER_HEADER_TIMEOUT", default_value = "10s", value_parser = ledger::http::server::parse_duration)]
    header_timeout: std::time::Duration,
    /// Time a kept-alive connection may wait for its next request.
    #[arg(long, env = "LEDGER_IDLE_TIMEOUT", default_value = "75s", value_parser = ledger::http::server::parse_duration)]
    idle_timeout: std::time::Duration,
    /// Time a client has to send a request's body, from when the server first waits for it.
    #[arg(long, env = "LEDGER_BODY_TIMEOUT", default_value = "30s", value_parser = ledger::http::server::parse_duration)]
    body_timeout: std::time::Duration,
    /// Connections served at once; more wait in the listen backlog. Lowered to fit the open-file
    /// limit if need be.
    #[arg(long, env = "LEDGER_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// A token that may read /metrics (as `Authorization: Bearer`), besides admins' and
    /// auditors' tokens; prefer the environment variable, which `ps` does not show.
    #[arg(long, env = "LEDGER_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// Serve /metrics to anyone, without a token.
    #[arg(long, env = "LEDGER_METRICS_PUBLIC")]
    metrics_public: bool,
}

#[derive(Debug, Subcommand)]
enum PrincipalCommand {
    /// Add a principal; prints its token once (only its hash is stored).
    Add {
        #[arg(long)]
        name: String,
        /// agent, reviewer, auditor, admin or analyst.
        #[arg(long)]
        role: String,
        /// Queues a reviewer may work, comma-separated.
        #[arg(long, value_delimiter = ',')]
        queues: Vec<String>,
    },
    /// Revoke a principal: its token stops working.
    Revoke { name: String },
}

#[derive(Debug, Subcommand)]
enum ProjectionsCommand {
    /// Replay the whole log into fresh read models (read-only; works beside a server).
    Rebuild,
}

#[derive(Debug, Subcommand)]
enum LogCommand {
    /// The last N events of the whole log.
    Tail {
        #[arg(short = 'n', long, default_value_t = 20)]
        count: u64,
    },
    /// Every event of one stream.
    Show {
        #[arg(long)]
        stream: String,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Durable appends per second at several levels of concurrency; with `--store`, on the
    /// embedded file log and on the store side by side (the store must be a scratch database:
    /// the events stay in it).
    Append {
        /// Comma-separated numbers of concurrent appenders.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
        appenders: Vec<usize>,
        /// Appends each appender makes in a run.
        #[arg(long, default_value_t = 400)]
        per_appender: u64,
        /// At least this many events in a run, whatever the level.
        #[arg(long, default_value_t = 5000)]
        min_events: u64,
        /// Approximate size of one stored event.
        #[arg(long, default_value_t = 600)]
        event_bytes: usize,
        /// Runs per level; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Measure the file log without and with the Merkle tree maintained beside the appends.
        #[arg(long)]
        tree: bool,
    },
    /// Decisions per second over HTTP (claim + approve) with a large queue of pending items;
    /// with `--store`, on that store, which must be empty (a fresh database).
    Http {
        /// Servers sharing the store (clients are spread over them); 1 on the file log.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
        servers: u16,
        /// Pending items in the queue before the clients start.
        #[arg(long, default_value_t = 1_000_000)]
        pending: usize,
        /// Comma-separated numbers of concurrent clients.
        #[arg(long, value_delimiter = ',', default_value = "64,256")]
        clients: Vec<usize>,
        /// Seconds each level runs.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Keep the ledger afterwards (its path is printed) instead of removing it.
        #[arg(long)]
        keep: bool,
    },
    /// Write the items and reviewers of `bench http` into the data directory (its child process).
    #[command(hide = true)]
    HttpFill {
        #[arg(long)]
        pending: usize,
        #[arg(long)]
        reviewers: usize,
    },
    /// Merkle proofs: building the tree and proofs in the process, then inclusion proofs over
    /// HTTP from a real server on a file log of this many events.
    Proofs {
        #[arg(long, default_value_t = 10_000_000)]
        events: u64,
        /// Concurrent keep-alive clients asking for proofs.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Seconds the clients run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Keep the log afterwards (its path is printed) instead of removing it.
        #[arg(long)]
        keep: bool,
    },
    /// Open, read and verify a log of this many events.
    Read {
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        #[arg(long, default_value_t = 600)]
        event_bytes: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Keep the log afterwards (its path is printed) instead of removing it.
        #[arg(long)]
        keep: bool,
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LEDGER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the runtime: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let store = cli.store()?;
    let key_options = cli.key_options();
    match cli.command {
        Command::Serve {
            listen,
            callback_ca_file,
            callback_allow,
            callback_concurrency,
            callback_concurrency_per_host,
            expiry_policy,
            review_policy,
            lease_ttl,
            network,
            checkpoints,
        } => {
            anyhow::ensure!(
                lease_ttl >= std::time::Duration::from_secs(2),
                "--lease-ttl must be at least 2s (the lease is renewed every second)"
            );
            let callback_limits = ledger::callbacks::DeliveryLimits {
                per_destination: usize::from(callback_concurrency_per_host),
                total: usize::from(callback_concurrency),
            };
            serve(
                &store,
                lease_ttl,
                &listen,
                callback_ca_file.as_deref(),
                &callback_allow,
                callback_limits,
                (expiry_policy.as_deref(), review_policy.as_deref()),
                network,
                &key_options,
                checkpoints,
            )
            .await?;
        }
        Command::Verify { json, key } => {
            let verifier = ledger::audit::cli::verifier(key.as_deref(), &store, &key_options)?;
            return match store.data_dir() {
                Some(dir) => verify(dir.to_owned(), json, verifier.as_ref()),
                None => verify_store(&store, json, verifier.as_ref()).await,
            };
        }
        Command::Export {
            command:
                ExportCommand::Dataset {
                    out,
                    format,
                    since,
                    until,
                },
        } => {
            let (window, models) =
                analytics_models(&store, None, since.as_deref(), until.as_deref()).await?;
            if let DatasetFormat::Parquet = format {
                let records: Vec<ledger::dataset::DatasetRecord<'_>> = models
                    .board
                    .items()
                    .filter_map(|item| ledger::dataset::record(item, window.since, window.until))
                    .collect();
                let written = export_dataset_parquet(&records, &out)?;
                eprintln!("wrote {written} decided items to {}", out.display());
                return Ok(std::process::ExitCode::SUCCESS);
            }
            let file = std::fs::File::create(&out)
                .with_context(|| format!("creating {}", out.display()))?;
            let mut writer = std::io::BufWriter::new(file);
            let mut written = 0u64;
            for item in models.board.items() {
                if let Some(record) = ledger::dataset::record(item, window.since, window.until) {
                    serde_json::to_writer(&mut writer, &record)?;
                    std::io::Write::write_all(&mut writer, b"\n")?;
                    written += 1;
                }
            }
            std::io::Write::flush(&mut writer)
                .with_context(|| format!("writing {}", out.display()))?;
            eprintln!("wrote {written} decided items to {}", out.display());
        }
        Command::Analytics {
            command:
                AnalyticsCommand::Report {
                    metric,
                    by,
                    since,
                    until,
                    format,
                    buckets,
                    window_days,
                    min_sample,
                },
        } => {
            let mut query = ledger::analytics::OverrideQuery::parse(
                Some(&by),
                since.as_deref(),
                until.as_deref(),
            )
            .and_then(|query| query.with_drift(window_days, min_sample))
            .map_err(|error| anyhow::anyhow!(error))?;
            query.buckets = buckets;
            let answer = if metric == ledger::analytics::Metric::OverrideRates {
                // Counted as the log is read, without keeping every item's row.
                let (rows, position) =
                    ledger::analytics::override_rates_of_store(&store, &query).await?;
                query.answer_override_rates(&rows, position)
            } else {
                let (rows, position) = analytics_rows(&store, metric).await?;
                query
                    .answer(metric, &rows, position)
                    .map_err(|error| anyhow::anyhow!(error))?
            };
            match format {
                ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&answer)?),
                ReportFormat::Csv => print!("{}", query.render(metric, &answer, true)),
                ReportFormat::Table => print!("{}", query.render(metric, &answer, false)),
            }
        }
        Command::Export {
            command: ExportCommand::Parquet { out_dir },
        } => export_parquet(&store, &out_dir).await?,
        Command::Analytics {
            command: AnalyticsCommand::Publish { window_days },
        } => {
            anyhow::ensure!(
                (1..=3660).contains(&window_days),
                "--window-days must be between 1 and 3660"
            );
            let log = ledger::log::open(&store, "ledger analytics publish").await?;
            let models = ledger::projector::rebuild(log.as_ref()).await?;
            let appended = ledger::review_policy::publish(
                log.as_ref(),
                &ledger::analytics::rows_of_board(&models.board, false),
                &models.accuracy,
                chrono::Duration::days(i64::from(window_days)),
                chrono::Utc::now(),
                "cli",
            )
            .await?;
            println!("{}", serde_json::to_string_pretty(&appended)?);
            eprintln!("appended {} AccuracyMeasured events", appended.len());
        }
        Command::Analytics {
            command:
                AnalyticsCommand::Calibration {
                    by,
                    buckets,
                    since,
                    until,
                },
        } => {
            let mut query = ledger::analytics::OverrideQuery::parse(
                Some(&by),
                since.as_deref(),
                until.as_deref(),
            )
            .map_err(|error| anyhow::anyhow!(error))?;
            query.buckets = buckets;
            let metric = ledger::analytics::Metric::Calibration;
            let (rows, position) = analytics_rows(&store, metric).await?;
            let answer = query
                .answer(metric, &rows, position)
                .map_err(|error| anyhow::anyhow!(error))?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
        Command::Demo {
            command:
                DemoCommand::Seed {
                    items,
                    seed,
                    weeks,
                    until,
                },
        } => {
            anyhow::ensure!(weeks >= 1, "--weeks must be at least 1");
            let until = match until {
                Some(text) => chrono::DateTime::parse_from_rfc3339(&text)
                    .with_context(|| format!("--until {text:?} is not an RFC 3339 time"))?
                    .with_timezone(&chrono::Utc),
                None => chrono::Utc::now(),
            };
            let log = ledger::log::open(&store, "ledger demo seed").await?;
            let started = std::time::Instant::now();
            let report = ledger::demo::seed(log, items, seed, weeks, until).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            eprintln!(
                "wrote {} items ({} events) in {:.1} s",
                report.items,
                report.events,
                started.elapsed().as_secs_f64()
            );
        }
        Command::Audit { command } => {
            let ok = match command {
                AuditCommand::PublicKey => {
                    let log = ledger::log::open_read_only(&store).await?;
                    let key = ledger::audit::cli::key(log.as_ref(), &store, &key_options).await?;
                    println!("{}", key.verifier().key());
                    true
                }
                AuditCommand::Checkpoint => {
                    ledger::audit::cli::checkpoint_now(&store, &key_options).await?;
                    true
                }
                AuditCommand::Verify {
                    trusted_checkpoint,
                    key,
                    json,
                } => {
                    ledger::audit::cli::verify_trusted(
                        &store,
                        &key_options,
                        key.as_deref(),
                        &trusted_checkpoint,
                        json,
                    )
                    .await?
                }
                AuditCommand::Export {
                    item,
                    from,
                    to,
                    out,
                } => {
                    let scope = match (item, from, to) {
                        (Some(item), _, _) => ledger::audit::cli::ExportScope::Item(item),
                        (None, Some(from), Some(to)) => {
                            let parse = |text: &str, flag: &str| {
                                chrono::DateTime::parse_from_rfc3339(text)
                                    .map(|time| time.with_timezone(&chrono::Utc))
                                    .with_context(|| {
                                        format!("{flag} {text:?} is not an RFC 3339 time")
                                    })
                            };
                            ledger::audit::cli::ExportScope::Range {
                                from: parse(&from, "--from")?,
                                to: parse(&to, "--to")?,
                            }
                        }
                        _ => anyhow::bail!("give --item ID, or --from T1 --to T2"),
                    };
                    ledger::audit::cli::export(&store, &key_options, scope, out.as_deref()).await?;
                    true
                }
                AuditCommand::VerifyBundle { bundle, key } => {
                    ledger::audit::cli::verify_bundle(&bundle, key.as_deref())?
                }
            };
            return Ok(if ok {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::from(1)
            });
        }
        Command::Principal { command } => {
            let log = ledger::log::open(&store, "ledger principal").await?;
            let log = log.as_ref();
            match command {
                PrincipalCommand::Add { name, role, queues } => {
                    let role: projections::principal::Role = serde_json::from_value(
                        serde_json::Value::String(role.clone()),
                    )
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "unknown role {role:?}: use agent, reviewer, auditor, admin or analyst"
                        )
                    })?;
                    let token = ledger::principals::new_token();
                    ledger::principals::add_with_token(log, "cli", &name, role, queues, &token)
                        .await?;
                    println!("{token}");
                    eprintln!("added principal {name}; the token above is shown only now");
                }
                PrincipalCommand::Revoke { name } => {
                    ledger::principals::revoke(log, "cli", &name).await?;
                    eprintln!("revoked principal {name}");
                }
            }
        }
        Command::Projections {
            command: ProjectionsCommand::Rebuild,
        } => {
            let log = ledger::log::open_read_only(&store).await?;
            let started = std::time::Instant::now();
            let models = ledger::projector::rebuild(log.as_ref()).await?;
            let summary = serde_json::json!({
                "events_applied": models.applied,
                "items": models.board.len(),
                "open_items_by_queue": models.board.depth_by_queue(),
                "principals": models.principals.len(),
                "elapsed_ms": started.elapsed().as_millis() as u64,
            });
            println!("{}", serde_json::to_string_pretty(&summary)?);
        }
        Command::Log { command } => {
            let log = ledger::log::open_read_only(&store).await?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            match command {
                LogCommand::Tail { count } => {
                    ledger::inspect::tail(log.as_ref(), count, &mut out).await?
                }
                LogCommand::Show { stream } => {
                    ledger::inspect::show(log.as_ref(), &stream, &mut out).await?
                }
            }
            std::io::Write::flush(&mut out).context("writing output")?;
        }
        Command::AppendUntilKilled {
            appenders,
            segment_size,
        } => {
            let options = FileLogOptions {
                segment_size,
                ..FileLogOptions::default()
            };
            let log = Arc::new(FileLog::open(
                &cli.data_dir,
                options,
                "append-until-killed",
            )?);
            ledger::bench::append_until_killed(log, appenders).await?;
        }
        Command::Bench { command } => {
            let parent = cli
                .data_dir
                .parent()
                .filter(|parent| !parent.as_os_str().is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."));
            match command {
                BenchCommand::Append {
                    appenders,
                    per_appender,
                    min_events,
                    event_bytes,
                    runs,
                    tree,
                } => {
                    ledger::bench::run_append(
                        &parent,
                        &store,
                        &appenders,
                        per_appender,
                        min_events,
                        event_bytes,
                        runs.max(1),
                        tree,
                    )
                    .await?
                }
                BenchCommand::Http {
                    servers,
                    pending,
                    clients,
                    seconds,
                    keep,
                } => {
                    ledger::bench_http::run_http(
                        &parent,
                        &store,
                        usize::from(servers),
                        pending,
                        &clients,
                        seconds,
                        keep,
                    )
                    .await?
                }
                BenchCommand::HttpFill { pending, reviewers } => {
                    ledger::bench_http::fill(&store, &cli.data_dir, pending, reviewers).await?
                }
                BenchCommand::Proofs {
                    events,
                    clients,
                    seconds,
                    runs,
                    keep,
                } => {
                    ledger::bench_proofs::run_proofs(&parent, events, clients, seconds, runs, keep)
                        .await?
                }
                BenchCommand::Read {
                    events,
                    event_bytes,
                    runs,
                    keep,
                } => {
                    ledger::bench::run_read(&parent, events, event_bytes, runs.max(1), keep).await?
                }
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    store: &ledger::log::Store,
    lease_ttl: std::time::Duration,
    listen: &str,
    callback_ca_file: Option<&std::path::Path>,
    callback_allow: &[String],
    callback_limits: ledger::callbacks::DeliveryLimits,
    (expiry_policy, review_policy): (Option<&std::path::Path>, Option<&std::path::Path>),
    network: NetworkOptions,
    key_options: &ledger::audit::cli::KeyOptions,
    checkpoints: CheckpointOptions,
) -> anyhow::Result<()> {
    let (connection_limits, metrics_access) = network_settings(network)?;
    // Read before anything else, so that a wrong path fails the start, not the first callback.
    let callback_roots = match callback_ca_file {
        Some(path) => ledger::tls::ExtraRootCertificates::read_pem_file(path)?,
        None => ledger::tls::ExtraRootCertificates::none(),
    };
    let callback_policy = ledger::callback_policy::CallbackPolicy::allowing(callback_allow)
        .map_err(|error| anyhow::anyhow!("--callback-allow: {error}"))?;
    // Likewise: a mistake in the policies stops the start rather than weakening review later.
    let expiry_policies = Arc::new(match expiry_policy {
        Some(path) => ledger::expiry_policy::ExpiryPolicies::read_file(path)?,
        None => ledger::expiry_policy::ExpiryPolicies::default(),
    });
    let review_policies = Arc::new(match review_policy {
        Some(path) => ledger::review_policy::ReviewPolicies::read_file(path)?,
        None => ledger::review_policy::ReviewPolicies::default(),
    });
    let default_policy = expiry_policies.default_policy();
    tracing::info!(
        configured = expiry_policies.configured(),
        default = %default_policy.name,
        default_action = ?default_policy.action,
        "expiry policies"
    );
    let log = ledger::log::open(store, "ledger serve")
        .await
        .with_context(|| format!("opening the store ({})", store.describe()))?;
    let callback_key = ledger::app::callback_key(
        log.as_ref(),
        store.data_dir(),
        std::env::var("LEDGER_CALLBACK_KEY").ok(),
    )
    .await?;
    tracing::info!(
        allowed = ?callback_policy.allow_list(),
        per_host = callback_limits.per_destination,
        in_all = callback_limits.total,
        "callbacks go to public addresses and the allow-list"
    );
    let mut config = ledger::app::ServerConfig::new(ledger::clock::Clock::System, callback_key);
    config.delivery = ledger::callbacks::DeliverySettings {
        extra_roots: callback_roots,
        policy: callback_policy,
        limits: callback_limits,
    };
    config.expiry_policies = expiry_policies;
    config.review_policies = review_policies;
    config.metrics_access = metrics_access;
    config.admin_token = std::env::var("LEDGER_ADMIN_TOKEN").ok();
    config.background = Some(ledger::app::Background {
        lease_ttl,
        ..ledger::app::Background::default()
    });
    let checkpoint_key = ledger::audit::cli::key(log.as_ref(), store, key_options).await?;
    tracing::info!(
        verifier_key = %checkpoint_key.verifier().key(),
        every_events = checkpoints.checkpoint_every,
        interval = ?checkpoints.checkpoint_interval,
        publish = ?checkpoints.checkpoint_publish.iter().map(url::Url::as_str).collect::<Vec<_>>(),
        "signing checkpoints"
    );
    config.checkpoint_key = Some(Arc::new(checkpoint_key));
    config.checkpoints = ledger::audit::checkpointer::CheckpointSettings {
        every_events: checkpoints.checkpoint_every,
        interval: checkpoints.checkpoint_interval,
        publish: checkpoints.checkpoint_publish,
    };
    let built = ledger::app::build(config, log.clone()).await?;
    if let Some(token) = &built.created_admin_token {
        // Printed once, on the first start of an empty ledger: only its hash is stored.
        println!("created principal \"admin\" (role admin); its token, shown only now:\n{token}");
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let address = listener.local_addr().context("reading the bound address")?;
    // On standard output, so that a script (or `ledger bench http`) that asked for port 0 learns
    // the port. A reader that stops reading once it has the port closes the pipe: a line written
    // after that is lost, not a reason to stop serving (`println!` panics on a closed pipe; it
    // did, when a test stopped reading at the first line).
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{address}");
        let _ = writeln!(
            out,
            "the web page: http://{address}/ui/ (sign in with a principal's token)"
        );
        let _ = out.flush();
    }
    tracing::info!(
        %address,
        store = %store.describe(),
        events = built.projector.applied(),
        "ledger serving"
    );
    let router = ledger::http::router(built.state);
    ledger::http::server::serve_router(listener, router, connection_limits, async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    })
    .await
}

/// `ledger verify` on a store other than the file log: every event read through the log
/// contract, its hash recomputed and its link to the one before it in its stream checked, and the
/// positions checked to run 0, 1, 2, … without a gap.
async fn verify_store(
    store: &ledger::log::Store,
    json: bool,
    verifier: Option<&ledger::audit::Verifier>,
) -> anyhow::Result<std::process::ExitCode> {
    let log = ledger::log::open_read_only(store).await?;
    let report = ledger::verify::verify_log_with_key(log.as_ref(), verifier).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        match &report.damage {
            None => println!(
                "ok: {} events in {} streams ({}); every hash and link checked; Merkle root {}",
                report.events,
                report.streams,
                store.describe(),
                report.tree.merkle_root
            ),
            Some(damage) => println!(
                "DAMAGED at {damage}\n{} events before it verified",
                report.events
            ),
        }
        print_checkpoints(report.damage.is_none(), &report.tree);
    }
    Ok(verdict(report.damage.is_some(), &report.tree))
}

/// The connection limits, fitted to the open-file limit (raised to its hard limit first), and
/// who may read `/metrics`; each logged.
fn network_settings(
    network: NetworkOptions,
) -> anyhow::Result<(
    ledger::http::server::ConnectionLimits,
    ledger::http::metrics::MetricsAccess,
)> {
    use ledger::http::metrics::MetricsAccess;
    let asked = ledger::http::server::ConnectionLimits {
        header_timeout: network.header_timeout,
        idle_timeout: network.idle_timeout,
        body_timeout: network.body_timeout,
        max_connections: network.max_connections as usize,
    };
    let limits = match ledger::http::server::raise_open_file_limit() {
        Ok(files) => {
            tracing::info!(
                soft_before = files.soft_before,
                soft = files.soft,
                hard = files.hard,
                "open file limit"
            );
            let fitted = asked.fitted_to(files.soft);
            if fitted.max_connections < asked.max_connections {
                tracing::warn!(
                    asked = asked.max_connections,
                    max_connections = fitted.max_connections,
                    open_file_limit = files.soft,
                    "connection cap lowered to fit the open file limit"
                );
            }
            fitted
        }
        Err(error) => {
            tracing::warn!(%error, "could not read or raise the open file limit");
            asked
        }
    };
    tracing::info!(
        header_timeout_ms = limits.header_timeout.as_millis() as u64,
        idle_timeout_ms = limits.idle_timeout.as_millis() as u64,
        body_timeout_ms = limits.body_timeout.as_millis() as u64,
        max_connections = limits.max_connections,
        "connection limits"
    );
    let mut access = if network.metrics_public {
        MetricsAccess::public()
    } else {
        MetricsAccess::principals_only()
    };
    if let Some(token) = network.metrics_token {
        anyhow::ensure!(
            !token.trim().is_empty(),
            "the metrics token (--metrics-token, LEDGER_METRICS_TOKEN) must not be empty"
        );
        access = access.with_token(token.trim());
    }
    tracing::info!(
        public = access.is_public(),
        "/metrics {}",
        if access.is_public() {
            "is open to anyone (--metrics-public)"
        } else {
            "needs an admin's or auditor's token, or the metrics token"
        }
    );
    Ok((limits, access))
}

/// What `verify` says of the stored checkpoints.
fn print_checkpoints(events_ok: bool, tree: &ledger::verify::TreeFindings) {
    if !events_ok {
        return;
    }
    match &tree.checkpoint_damage {
        Some(damage) => println!("CHECKPOINT DAMAGED: {damage}"),
        None => println!(
            "ok: {} checkpoints: each one's root is the recomputed tree's at its size, and each extends the one before",
            tree.checkpoints
        ),
    }
    match &tree.checkpoint_key {
        Some(key) => println!("checkpoint signatures checked with {key}"),
        None => println!(
            "WARNING: checkpoint signatures NOT checked (no key: pass --key, the verifier key you trust)"
        ),
    }
}

/// An analytics query (`by` and a window, parsed as the API parses them) and the read models
/// rebuilt from the log to answer it.
async fn analytics_models(
    store: &ledger::log::Store,
    by: Option<&str>,
    since: Option<&str>,
    until: Option<&str>,
) -> anyhow::Result<(
    ledger::analytics::OverrideQuery,
    ledger::projector::ReadModels,
)> {
    let query = ledger::analytics::OverrideQuery::parse(by, since, until)
        .map_err(|error| anyhow::anyhow!(error))?;
    let log = ledger::log::open_read_only(store).await?;
    Ok((query, ledger::projector::rebuild(log.as_ref()).await?))
}

/// Every item's analytics row as `metric` needs it, from one streaming pass over the log
/// (read-only: a server may be running on it), and the position read up to.
async fn analytics_rows(
    store: &ledger::log::Store,
    metric: ledger::analytics::Metric,
) -> anyhow::Result<(Vec<projections::analytics::ItemRow>, u64)> {
    let wanted = ledger::analytics::RowsWanted::for_metric(metric);
    ledger::analytics::rows_of_store(store, |_| {}, wanted, |_| {}).await
}

/// What a build without the `parquet` feature answers a Parquet export.
#[cfg(not(feature = "parquet"))]
const NO_PARQUET: &str = "this ledger was built without Parquet (polars is kept out of the server's build): \
     rebuild with `cargo build --release --features parquet`";

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DatasetFormat {
    Jsonl,
    Parquet,
}

/// The review dataset as one Parquet file (`ledger export dataset --format parquet`).
#[cfg(feature = "parquet")]
fn export_dataset_parquet(
    records: &[ledger::dataset::DatasetRecord<'_>],
    out: &std::path::Path,
) -> anyhow::Result<usize> {
    let text = |json: &projections::json::JsonText| json.as_str().to_owned();
    let rows: Vec<ledger_tables::DatasetRow> = records
        .iter()
        .map(|record| ledger_tables::DatasetRow {
            item_id: record.item_id.to_string(),
            queue: record.queue.to_owned(),
            kind: record.kind.to_owned(),
            model: record.model.to_owned(),
            model_version: record.model_version.to_owned(),
            confidence: record.confidence,
            submitted_at: record.submitted_at,
            decided_at: record.decided_at,
            decision: record.decision.as_str().to_owned(),
            reviewers: record.reviewers.to_vec(),
            context: text(record.context),
            ai_output: text(record.ai_output),
            final_output: record.final_output.map(text),
            reason: record.reason.map(str::to_owned),
            notes: record.notes.iter().map(|note| (*note).to_owned()).collect(),
            revisions: record.revisions as u32,
            chosen: record.preference.as_ref().map(|pair| text(pair.chosen)),
            rejected: record.preference.as_ref().map(|pair| text(pair.rejected)),
        })
        .collect();
    let mut frame = ledger_tables::dataset_frame(&rows)?;
    ledger_tables::write_parquet(out, &mut frame)?;
    Ok(rows.len())
}

#[cfg(not(feature = "parquet"))]
fn export_dataset_parquet(
    _: &[ledger::dataset::DatasetRecord<'_>],
    _: &std::path::Path,
) -> anyhow::Result<usize> {
    anyhow::bail!(NO_PARQUET)
}

/// `ledger export parquet`: the three tables, the events written a row group at a time as the
/// log is read, with a progress bar on a terminal.
#[cfg(feature = "parquet")]
async fn export_parquet(
    store: &ledger::log::Store,
    out_dir: &std::path::Path,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    // Shown on a terminal only (indicatif hides it otherwise): the file log's head is not known
    // before its segments are read, so a count rather than a bar.
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {human_pos} events read ({per_sec})")
            .expect("a valid template"),
    );
    let started = std::time::Instant::now();
    let mut events = ledger_tables::EventsWriter::create(&out_dir.join("events.parquet"))?;
    let mut items = ledger_tables::TableWriter::items(&out_dir.join("items.parquet"))?;
    let mut verdicts = ledger_tables::TableWriter::verdicts(&out_dir.join("verdicts.parquet"))?;
    // The three tables are encoded and compressed on a thread of their own, a batch at a time,
    // while the log is still being read: events as they are read, items as they close (no
    // table is ever whole in memory).
    enum Rows {
        Events(Vec<projections::analytics::rows::EventRow>),
        Items(Vec<projections::analytics::ItemRow>),
    }
    let (batches, inbox) = std::sync::mpsc::sync_channel::<Rows>(2);
    // Written batches of events come back emptied, to be filled again (fresh ones cost page
    // faults).
    let (emptied, recycled) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || -> anyhow::Result<(u64, u64, u64)> {
        for batch in inbox {
            match batch {
                Rows::Events(mut batch) => {
                    events.write(&batch)?;
                    batch.clear();
                    let _ = emptied.send(batch);
                }
                Rows::Items(batch) => {
                    items.write(&batch)?;
                    verdicts.write(&batch)?;
                }
            }
        }
        Ok((events.finish()?, items.finish()?, verdicts.finish()?))
    });
    let mut batch = Vec::with_capacity(ledger_tables::EVENTS_PER_BATCH);
    let mut closed = Vec::with_capacity(ledger_tables::ITEMS_PER_BATCH);
    let mut writer_gone = false;
    let batches_for_items = batches.clone();
    let mut on_rows = |rows: Vec<projections::analytics::ItemRow>| {
        closed.extend(rows);
        if closed.len() >= ledger_tables::ITEMS_PER_BATCH {
            let full = std::mem::replace(
                &mut closed,
                Vec::with_capacity(ledger_tables::ITEMS_PER_BATCH),
            );
            let _ = batches_for_items.send(Rows::Items(full));
        }
    };
    let scanned = ledger::analytics::stream_rows_of_store(
        store,
        |row| {
            batch.push(row);
            if batch.len() >= ledger_tables::EVENTS_PER_BATCH && !writer_gone {
                let next = recycled
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(ledger_tables::EVENTS_PER_BATCH));
                let full = std::mem::replace(&mut batch, next);
                writer_gone = batches.send(Rows::Events(full)).is_err();
            }
        },
        &mut on_rows,
        ledger::analytics::RowsWanted::ALL,
        |position| bar.set_position(position),
    )
    .await;
    let _ = batches.send(Rows::Events(batch));
    let _ = batches.send(Rows::Items(closed));
    drop(batches);
    drop(batches_for_items);
    let (written, items, verdicts) = writer.join().expect("the table writer does not panic")?;
    scanned?;
    bar.finish_and_clear();
    eprintln!(
        "wrote {items} items, {written} events and {verdicts} verdicts to {} in {:.1} s",
        out_dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(not(feature = "parquet"))]
async fn export_parquet(_: &ledger::log::Store, _: &std::path::Path) -> anyhow::Result<()> {
    anyhow::bail!(NO_PARQUET)
}

/// `verify`'s exit code: 1 when an event or a checkpoint is damaged.
fn verdict(events_damaged: bool, tree: &ledger::verify::TreeFindings) -> std::process::ExitCode {
    if events_damaged || tree.checkpoint_damage.is_some() {
        std::process::ExitCode::from(1)
    } else {
        std::process::ExitCode::SUCCESS
    }
}

fn verify(
    data_dir: PathBuf,
    json: bool,
    verifier: Option<&ledger::audit::Verifier>,
) -> anyhow::Result<std::process::ExitCode> {
    let total: u64 = ledger::log::segment::list_segments(&data_dir)
        .with_context(|| format!("reading data directory {}", data_dir.display()))?
        .iter()
        .map(|(_, path)| std::fs::metadata(path).map(|meta| meta.len()).unwrap_or(0))
        .sum();
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("verifying {bar:40} {bytes}/{total_bytes} ({eta})")
            .expect("a valid template"),
    );
    let report = ledger::verify::verify_with_key(&data_dir, &|bytes| bar.inc(bytes), verifier)?;
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        match &report.damage {
            None => println!(
                "ok: {} events in {} streams, {} segments; head chain hash {}; Merkle root {}",
                report.events,
                report.streams,
                report.segments,
                report.head_chain_hash,
                report.tree.merkle_root
            ),
            Some(damage) => println!(
                "DAMAGED at {damage}\n{} events before it verified",
                report.events
            ),
        }
        if let Some(tail) = &report.incomplete_tail {
            println!(
                "note: incomplete record at the tail ({tail}): a write in progress or interrupted by a crash; never acknowledged"
            );
        }
        print_checkpoints(report.damage.is_none(), &report.tree);
    }
    Ok(verdict(report.damage.is_some(), &report.tree))
}
