//! Leases on background jobs: with several servers on one store, timers and callback deliveries
//! run on the one server that holds their lease, and another takes over when it lapses (the
//! holder died, or lost the store). The store keeps the lease (`EventLog::lease`); a backend that
//! one server owns alone answers that its server always holds it.

use crate::log::EventLog;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// One job's lease as one server sees it.
#[derive(Debug)]
pub struct Lease {
    name: &'static str,
    holder: String,
    ttl: Duration,
    /// Whether the last look found it held, to log each change once.
    held: AtomicBool,
}

impl Lease {
    /// The lease `name` as `holder` takes it, lasting `ttl` from each renewal.
    pub fn new(name: &'static str, holder: &str, ttl: Duration) -> Lease {
        Lease {
            name,
            holder: holder.to_owned(),
            ttl,
            held: AtomicBool::new(false),
        }
    }

    /// Takes or renews the lease; true while this server holds it. A store that does not answer
    /// counts as not held: the job waits rather than acting on what it cannot record.
    pub async fn hold(&self, log: &dyn EventLog) -> bool {
        let held = match log.lease(self.name, &self.holder, self.ttl).await {
            Ok(held) => held,
            Err(error) => {
                tracing::warn!(lease = self.name, %error, "could not renew the lease");
                false
            }
        };
        if self.held.swap(held, Ordering::Relaxed) != held {
            if held {
                tracing::info!(lease = self.name, holder = %self.holder, "this server runs the job now");
            } else {
                tracing::info!(lease = self.name, holder = %self.holder, "another server runs the job now");
            }
        }
        held
    }
}
