//! The catch-up-then-live subscription of the backends that follow their store by reading pages
//! from a position (in-memory, PostgreSQL, KurrentDB): read from the position until a page comes
//! back empty, then wait for the head to move (this process's appends, or a notification) or for
//! the poll interval; a store that does not answer is retried with a backoff, at the same
//! position, so that nothing is skipped and nothing delivered twice. (The file log has its own,
//! which also bounds what it reads ahead in bytes and tells when its writer is gone.)

use super::{LogError, Subscription};
use async_trait::async_trait;
use projections::event::RecordedEvent;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Events a subscription asks for at a time.
pub(crate) const PAGE: usize = 1024;

/// Where a subscription reads its pages.
#[async_trait]
pub(crate) trait Pages: Send + Sync + 'static {
    /// Up to `PAGE` events from `position` on (empty when there are none yet).
    async fn page(&self, position: u64) -> Result<Vec<RecordedEvent>, LogError>;

    /// The store's name, for the warning logged when it stops answering.
    fn name(&self) -> &'static str;
}

/// A subscription over `Pages`.
pub(crate) struct Follow<P> {
    pages: Arc<P>,
    /// Moves when new events may be readable.
    wake: watch::Receiver<u64>,
    /// How long to wait without a wake-up before reading again (`None`: wake-ups never miss).
    poll: Option<Duration>,
    next_position: u64,
    buffer: VecDeque<RecordedEvent>,
    failures: u32,
}

impl<P: Pages> Follow<P> {
    pub(crate) fn new(
        pages: Arc<P>,
        wake: watch::Receiver<u64>,
        poll: Option<Duration>,
        from_position: u64,
    ) -> Follow<P> {
        Follow {
            pages,
            wake,
            poll,
            next_position: from_position,
            buffer: VecDeque::new(),
            failures: 0,
        }
    }
}

/// 100 ms, doubling with each failure in a row, at most 2 s.
pub(crate) fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << failures.min(5)).min(2000))
}

#[async_trait]
impl<P: Pages> Subscription for Follow<P> {
    fn drain_ready(&mut self, max: usize) -> Vec<RecordedEvent> {
        let count = max.min(self.buffer.len());
        self.buffer.drain(..count).collect()
    }

    async fn next(&mut self) -> Result<RecordedEvent, LogError> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Ok(event);
            }
            // Marked seen before reading: an append after this line moves it again, so the
            // wait below cannot miss it.
            self.wake.borrow_and_update();
            match self.pages.page(self.next_position).await {
                Ok(events) if !events.is_empty() => {
                    if self.failures > 0 {
                        tracing::info!(
                            store = self.pages.name(),
                            position = self.next_position,
                            "the subscription reads again"
                        );
                    }
                    self.failures = 0;
                    self.next_position += events.len() as u64;
                    self.buffer.extend(events);
                }
                Ok(_) => {
                    self.failures = 0;
                    match self.poll {
                        Some(poll) => {
                            tokio::select! {
                                changed = self.wake.changed() => {
                                    if changed.is_err() {
                                        tokio::time::sleep(poll).await;
                                    }
                                }
                                () = tokio::time::sleep(poll) => {}
                            }
                        }
                        None => {
                            if self.wake.changed().await.is_err() {
                                return Err(LogError::Closed);
                            }
                        }
                    }
                }
                Err(LogError::Unavailable(reason)) => {
                    if self.failures == 0 {
                        tracing::warn!(store = self.pages.name(), %reason, position = self.next_position, "the subscription cannot read; retrying");
                    }
                    self.failures = self.failures.saturating_add(1);
                    tokio::time::sleep(backoff(self.failures)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }
}
