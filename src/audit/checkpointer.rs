//! The checkpointer: signs a checkpoint of the Merkle tree every N events or T seconds (whichever
//! comes first, and only when events other than checkpoints are not yet covered), appends it to
//! the `audit-checkpoints` stream, and publishes it to the operator's URLs.
//!
//! Exactly one checkpoint per tree size is stored, whatever the number of servers: the job runs
//! on the server holding the `checkpoints` lease; each checkpoint's event id is derived from its
//! origin and tree size (a repeat is deduplicated by the log), and it is appended only if the
//! stream is still at the version the tree was read with (so sizes only grow).

use super::CheckpointKey;
use crate::lease::Lease;
use crate::log::{EventLog, ExpectedVersion, LogError};
use crate::projector::Projector;
use projections::audit::{CHECKPOINT_SIGNED, CHECKPOINTS_STREAM, CheckpointSigned};
use projections::event::NewEvent;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// When checkpoints are signed, and where they are published.
#[derive(Debug, Clone)]
pub struct CheckpointSettings {
    /// Sign once this many events are not covered by the latest checkpoint.
    pub every_events: u64,
    /// Sign at least this often while events are not covered.
    pub interval: Duration,
    /// URLs each new checkpoint is POSTed to (copies out of the operator's reach).
    pub publish: Vec<url::Url>,
}

impl Default for CheckpointSettings {
    fn default() -> Self {
        CheckpointSettings {
            every_events: 10_000,
            interval: Duration::from_secs(10),
            publish: Vec::new(),
        }
    }
}

/// The namespace of checkpoint event ids (UUID v5 of origin and tree size).
const CHECKPOINT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c65_6467_6572_2d63_6865_636b_706f_696e);

/// The event id of the checkpoint of `tree_size` under `origin`: the same on every server.
pub fn checkpoint_event_id(origin: &str, tree_size: u64) -> Uuid {
    Uuid::new_v5(
        &CHECKPOINT_ID_NAMESPACE,
        format!("{origin}\n{tree_size}").as_bytes(),
    )
}

/// What the next checkpoint would sign: the tree as the read models hold it, the stream version
/// its append expects, and how many events it would newly cover.
struct Unsigned {
    tree_size: u64,
    root: [u8; 32],
    version: Option<u64>,
    uncovered: u64,
}

fn unsigned(projector: &Projector) -> Unsigned {
    let models = projector.read();
    let audit = &models.audit;
    Unsigned {
        tree_size: audit.tree.size(),
        root: audit.root(),
        version: audit.stream_version(),
        uncovered: audit.uncovered(),
    }
}

/// Signs and appends a checkpoint of the tree as the read models hold it now, if events are not
/// yet covered; returns it, or `None` when another server's checkpoint came first.
pub async fn checkpoint_now(
    log: &dyn EventLog,
    projector: &Projector,
    key: &CheckpointKey,
) -> anyhow::Result<Option<(Uuid, CheckpointSigned)>> {
    projector.caught_up_with(log).await?;
    let next = unsigned(projector);
    if next.uncovered == 0 {
        return Ok(None);
    }
    append(log, key, "system", next.tree_size, &next.root, next.version).await
}

/// Signs the checkpoint of the tree of `tree_size` events with root `root` and appends it as
/// `actor`, if the checkpoints stream is still at `version`; `None` when it moved on (another
/// server's checkpoint came first) or this checkpoint is stored already.
pub async fn append(
    log: &dyn EventLog,
    key: &CheckpointKey,
    actor: &str,
    tree_size: u64,
    root: &[u8; 32],
    version: Option<u64>,
) -> anyhow::Result<Option<(Uuid, CheckpointSigned)>> {
    let checkpoint = key.sign(tree_size, root)?;
    let id = checkpoint_event_id(key.name(), tree_size);
    let event = NewEvent {
        id,
        event_type: CHECKPOINT_SIGNED.to_owned(),
        schema_version: 1,
        data: serde_json::value::to_raw_value(&checkpoint)?,
        actor: actor.to_owned(),
        causation_id: None,
        correlation_id: None,
    };
    let expected = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
    match log.append(CHECKPOINTS_STREAM, expected, vec![event]).await {
        Ok(appended) if !appended.deduplicated => {
            tracing::info!(
                tree_size,
                root = %checkpoint.root_hash,
                position = appended.first_position,
                "signed a checkpoint"
            );
            Ok(Some((id, checkpoint)))
        }
        Ok(_) | Err(LogError::Conflict { .. }) | Err(LogError::DuplicateEventId { .. }) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Runs the checkpointer until the process ends: looks every `poll` (at most), on the server
/// that holds `lease`.
pub async fn run(
    log: Arc<dyn EventLog>,
    projector: Projector,
    key: Arc<CheckpointKey>,
    settings: CheckpointSettings,
    poll: Duration,
    lease: Lease,
) {
    let client = publisher_client();
    let mut last = Instant::now();
    let tick = poll.min(settings.interval).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(tick).await;
        if !projector.is_following() {
            return;
        }
        let next = unsigned(&projector);
        let due = next.uncovered >= settings.every_events.max(1)
            || (next.uncovered > 0 && last.elapsed() >= settings.interval);
        if !due || !lease.hold(log.as_ref()).await {
            continue;
        }
        match append(
            log.as_ref(),
            &key,
            "system",
            next.tree_size,
            &next.root,
            next.version,
        )
        .await
        {
            Ok(Some((id, checkpoint))) => {
                last = Instant::now();
                for url in &settings.publish {
                    tokio::spawn(publish(
                        client.clone(),
                        key.clone(),
                        url.clone(),
                        id,
                        checkpoint.note.clone(),
                    ));
                }
            }
            Ok(None) => last = Instant::now(),
            Err(error) => tracing::warn!(%error, "could not store a checkpoint; will retry"),
        }
    }
}

fn publisher_client() -> reqwest::Client {
    crate::tls::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client with rustls")
}

/// POSTs a checkpoint's signed note to `url`: the note as `text/plain`, with Standard Webhooks
/// headers signed by the checkpoint key itself (`webhook-signature: v1a,…`, Ed25519), so a
/// receiver needs only the verifier key. Retried a few times, then logged.
pub async fn publish(
    client: reqwest::Client,
    key: Arc<CheckpointKey>,
    url: url::Url,
    id: Uuid,
    note: String,
) -> bool {
    let webhook_id = id.to_string();
    for attempt in 0..5u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500) * 2u32.pow(attempt)).await;
        }
        let timestamp = chrono::Utc::now().timestamp();
        let signature = super::publication_signature(&key, &webhook_id, timestamp, note.as_bytes());
        let sent = client
            .post(url.clone())
            .header("content-type", "text/plain; charset=utf-8")
            .header("webhook-id", &webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(note.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => return true,
            Ok(response) => {
                tracing::warn!(url = %url, status = %response.status(), attempt, "a checkpoint publication was refused")
            }
            Err(error) => {
                tracing::warn!(url = %url, %error, attempt, "a checkpoint publication failed")
            }
        }
    }
    tracing::error!(url = %url, checkpoint = %id, "gave up publishing a checkpoint");
    false
}
