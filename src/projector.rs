//! Keeps the read models live: rebuilt from the log on start, then following every append
//! through a subscription, with the position applied so far.
//!
//! The read models are pure folds from the core (`ReviewBoard`, `Principals`); this file only
//! feeds them events in log order. They sit behind a std `RwLock`: no `.await` happens while it is
//! held, and every hold is a map lookup or an index walk.

use crate::commands::item_of_stream;
use crate::log::{EventLog, LogError};
use projections::audit::Audit;
use projections::board::ReviewBoard;
use projections::delivery::{Deliveries, DeliveryEvent};
use projections::event::RecordedEvent;
use projections::item::ItemEvent;
pub use projections::principal::PRINCIPALS_STREAM;
use projections::principal::{PrincipalEvent, Principals};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use tokio::sync::watch;
use uuid::Uuid;

/// Every read model, as of one position of the log.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ReadModels {
    pub board: ReviewBoard,
    pub principals: Principals,
    pub deliveries: Deliveries,
    /// The Merkle tree over every event, and the signed checkpoints.
    pub audit: Audit,
    /// The latest accuracy measurement of each slice (the review policies read it).
    pub accuracy: projections::analytics::accuracy::Accuracy,
    /// The number of log events applied (the next position to apply).
    pub applied: u64,
}

impl ReadModels {
    /// Applies one event of the log, in order. Events of streams no read model follows are
    /// skipped; an event that does not decode is logged and skipped (the log stays the truth,
    /// and one bad event must not stop every view).
    pub fn apply(&mut self, event: &RecordedEvent) {
        if event.position < self.applied {
            return;
        }
        self.applied = event.position + 1;
        self.audit.apply(event);
        let applied = if let Some(item_id) = item_of_stream(&event.stream) {
            ItemEvent::from_type_and_json(&event.event_type, &event.data)
                .map_err(|error| error.to_string())
                .map(|item_event| {
                    self.board.apply(event.position, item_id, &item_event);
                    if let Some(item) = self.board.item(item_id) {
                        self.deliveries
                            .on_item_event(event.position, item, &item_event);
                    }
                })
        } else if event.stream.starts_with("callback-") {
            decode(event, DeliveryEvent::from_type_and_data)
                .map(|delivery_event| self.deliveries.apply(&delivery_event))
        } else if event.stream == projections::analytics::accuracy::ACCURACY_STREAM {
            self.accuracy
                .apply(event)
                .map_err(|error| error.to_string())
        } else if event.stream == PRINCIPALS_STREAM {
            decode(event, PrincipalEvent::from_type_and_data)
                .map(|principal_event| self.principals.apply(&principal_event))
        } else {
            Ok(())
        };
        if let Err(error) = applied {
            tracing::error!(
                position = event.position,
                stream = %event.stream,
                %error,
                "an event does not decode; the read models skip it"
            );
        }
    }
}

/// A stored event as a domain event, by the domain's own (type, data) decoder.
pub(crate) fn decode<E, Error: std::fmt::Display>(
    event: &RecordedEvent,
    from_type_and_data: impl Fn(&str, &serde_json::Value) -> Result<E, Error>,
) -> Result<E, String> {
    let data = event.data_json().map_err(|error| error.to_string())?;
    from_type_and_data(&event.event_type, &data).map_err(|error| error.to_string())
}

/// Per-item change notifications for long-polling clients: only the waiters of an item wake
/// when it changes, so many thousands of waiting clients cost a map entry each, not a wake-up
/// per event. A std Mutex: held for a map operation only, never across an `.await`.
type ItemWaiters = Arc<Mutex<HashMap<Uuid, watch::Sender<u64>>>>;

/// Read models rebuilt from scratch by replaying the whole log (`ledger projections rebuild`):
/// by the invariant of the design, equal to the live ones at the same position.
pub async fn rebuild(log: &dyn EventLog) -> Result<ReadModels, LogError> {
    let mut models = ReadModels::default();
    models.board.begin_replay();
    let head = log.head().await?;
    while models.applied < head {
        let events = log.read_all(models.applied, 8192).await?;
        if events.is_empty() {
            break;
        }
        for event in &events {
            models.apply(event);
        }
    }
    models.board.finish_replay();
    Ok(models)
}

/// The read models could not be brought up to date for a read.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    /// The projector stopped following the log (its subscription failed); the read models are
    /// stale from then on, and the server needs a restart.
    #[error("the read models stopped following the log; the server needs a restart")]
    Stopped,
    /// The read models did not reach the position asked for within `CATCH_UP_TIMEOUT` (the
    /// store stopped answering the projector's subscription, which retries on its own).
    #[error("the read models did not catch up with the store in time")]
    Behind,
    /// The store's head could not be read.
    #[error(transparent)]
    Log(#[from] LogError),
}

/// How long a read waits for the read models to catch up before it answers 503: the projector
/// follows within milliseconds while the store answers, so this is reached only while it does
/// not (a database restarting), and a client is better told to retry than kept waiting.
pub const CATCH_UP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The live read models and how far they have got.
#[derive(Debug, Clone)]
pub struct Projector {
    models: Arc<RwLock<ReadModels>>,
    applied: watch::Receiver<u64>,
    waiters: ItemWaiters,
    /// The position of the last principals event applied: moves when a principal is added or
    /// revoked, so that open feeds and long-polls learn at once that their caller was revoked.
    principals: watch::Receiver<u64>,
}

/// Tells one waiter when its item changed; leaves the registry with its last holder.
#[derive(Debug)]
pub struct ItemChanges {
    item_id: Uuid,
    receiver: watch::Receiver<u64>,
    waiters: ItemWaiters,
}

impl ItemChanges {
    /// Waits until the item changes (after this value was made or last waited on).
    pub async fn changed(&mut self) {
        // The sender stays in the registry while a receiver exists, so this only ends on a change.
        let _ = self.receiver.changed().await;
    }
}

impl Drop for ItemChanges {
    fn drop(&mut self) {
        let mut waiters = self.waiters.lock().expect("waiters lock");
        if let Some(sender) = waiters.get(&self.item_id)
            && sender.receiver_count() <= 1
        {
            waiters.remove(&self.item_id);
        }
    }
}

impl Projector {
    /// Rebuilds the read models from the whole log, then keeps following it in the background.
    pub async fn start(log: Arc<dyn EventLog>) -> Result<Projector, LogError> {
        let started = std::time::Instant::now();
        // Catch up in big steps before taking requests, then follow from there.
        let rebuilt = rebuild(log.as_ref()).await?;
        let position = rebuilt.applied;
        let models = Arc::new(RwLock::new(rebuilt));
        let mut subscription = log.subscribe(position);
        tracing::info!(
            events = position,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "read models rebuilt from the log"
        );
        let (applied_sender, applied) = watch::channel(position);
        let (principals_sender, principals) = watch::channel(position);
        let follower_models = models.clone();
        let waiters: ItemWaiters = Arc::default();
        let follower_waiters = waiters.clone();
        tokio::spawn(async move {
            loop {
                match subscription.next().await {
                    Ok(event) => {
                        // A burst is applied under one write lock and announced once.
                        let mut events = vec![event];
                        events.extend(subscription.drain_ready(1023));
                        let applied = {
                            let mut guard = follower_models.write().expect("read models lock");
                            for event in &events {
                                guard.apply(event);
                            }
                            guard.applied
                        };
                        applied_sender.send_replace(applied);
                        if let Some(event) = events
                            .iter()
                            .rev()
                            .find(|event| event.stream == PRINCIPALS_STREAM)
                        {
                            principals_sender.send_replace(event.position);
                        }
                        let waiters = follower_waiters.lock().expect("waiters lock");
                        for event in &events {
                            if let Some(item_id) = item_of_stream(&event.stream)
                                && let Some(sender) = waiters.get(&item_id)
                            {
                                sender.send_replace(event.position);
                            }
                        }
                    }
                    Err(LogError::Closed) => break,
                    Err(error) => {
                        tracing::error!(%error, "the projector stopped following the log");
                        break;
                    }
                }
            }
        });
        Ok(Projector {
            models,
            applied,
            waiters,
            principals,
        })
    }

    /// A copy of the read models as they are now.
    pub fn snapshot(&self) -> ReadModels {
        self.read().clone()
    }

    /// The read models now.
    pub fn read(&self) -> RwLockReadGuard<'_, ReadModels> {
        self.models.read().expect("read models lock")
    }

    /// A receiver of the number of events applied: changes with every burst the projector
    /// applies (the web page's live queue watches it); reports an error once the projector stopped.
    pub fn applied_changes(&self) -> watch::Receiver<u64> {
        self.applied.clone()
    }

    /// The number of events applied so far.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Whether the projector still follows the log: false once its subscription failed (the read
    /// models are stale from then on; see `ProjectorError`).
    pub fn is_following(&self) -> bool {
        // The sender lives as long as the follower task.
        self.applied.has_changed().is_ok()
    }

    /// A watch that changes whenever a principals event (an addition, a revocation) has been
    /// applied; it reports an error once the projector stopped.
    pub fn principals_changes(&self) -> watch::Receiver<u64> {
        self.principals.clone()
    }

    /// A handle that wakes when the item changes; make it before checking the item's state, so
    /// that a change in between is not missed.
    pub fn item_changes(&self, item_id: Uuid) -> ItemChanges {
        let mut waiters = self.waiters.lock().expect("waiters lock");
        let receiver = waiters
            .entry(item_id)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        ItemChanges {
            item_id,
            receiver,
            waiters: self.waiters.clone(),
        }
    }

    /// Waits until every event `log` had committed when this was called is applied: what is read
    /// from the read models afterwards includes every write acknowledged before the call.
    pub async fn caught_up_with(&self, log: &dyn EventLog) -> Result<(), ProjectorError> {
        self.caught_up_to(log.head().await?).await
    }

    /// Waits until every event before position `head` is applied.
    pub async fn caught_up_to(&self, head: u64) -> Result<(), ProjectorError> {
        match head.checked_sub(1) {
            Some(last_position) => self.wait_for(last_position).await,
            None => Ok(()),
        }
    }

    /// Waits until the event at `position` is applied, so that a writer reads its own write.
    /// Fails if the projector stopped following the log (it never will apply it then), rather
    /// than letting the caller answer from stale read models.
    pub async fn wait_for(&self, position: u64) -> Result<(), ProjectorError> {
        // Nearly always caught up already: answered without a timer.
        if *self.applied.borrow() > position {
            return Ok(());
        }
        let mut applied = self.applied.clone();
        // The sender lives as long as the follower task: an error means it is gone.
        match tokio::time::timeout(
            CATCH_UP_TIMEOUT,
            applied.wait_for(|applied| *applied > position),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ProjectorError::Stopped),
            Err(_) => Err(ProjectorError::Behind),
        }
    }
}
