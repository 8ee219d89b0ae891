//! Time inside the server: claim leases that lapse and deadlines that pass become `ClaimExpired`
//! and `ItemExpired` events, appended by the scheduler as the principal `system`.
//!
//! Exactly once, even across restarts and with several timers racing: the scheduler decides
//! through the same domain rules and expected versions as any command, so a second attempt finds
//! the claim gone or the item decided (a domain refusal) or the stream moved (a conflict), and
//! writes nothing. `tick` is one pass at the clock's "now"; tests call it after moving a manual
//! clock, the server calls it in a loop.
//!
//! What an expiry does is the operator's policy for the item's queue and kind as it is when the
//! deadline passes (ADR 0007), resolved here and passed in the command: the core stays pure, and
//! an item submitted before policies existed, with the submitter's own `on_expiry`, gets the
//! policy in force too.

use crate::clock::Clock;
use crate::commands::{CommandError, execute};
use crate::expiry_policy::ExpiryPolicies;
use crate::log::EventLog;
use crate::projector::Projector;
use projections::item::{Command, CommandContext};
use std::time::Duration;
use uuid::Uuid;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tick {
    pub claims_expired: Vec<Uuid>,
    pub items_expired: Vec<Uuid>,
    /// Attempts another timer or a concurrent command had already made moot.
    pub already_handled: usize,
}

/// One pass: expires every lapsed claim and every item past its deadline, as of `clock.now()`,
/// each item under the policy `policies` give its queue and kind.
pub async fn tick(
    log: &dyn EventLog,
    projector: &Projector,
    clock: &Clock,
    policies: &ExpiryPolicies,
) -> Tick {
    // Act on everything committed so far, not on read models a moment behind the log.
    if projector.caught_up_with(log).await.is_err() {
        return Tick::default();
    }
    let now = clock.now();
    let (lapsed, due) = {
        let models = projector.read();
        let lapsed: Vec<(Uuid, Command)> = models
            .board
            .lapsed_claims(now)
            .into_iter()
            .map(|item_id| (item_id, Command::ExpireClaim))
            .collect();
        // The queue and kind as the board has them now: an item escalated by a reviewer gets the
        // policy of the queue it waits in. Should the item move meanwhile, the expected version
        // makes this command a conflict, and the next pass resolves again.
        let due: Vec<(Uuid, Command)> = models
            .board
            .due_items(now)
            .into_iter()
            .filter_map(|item_id| {
                let item = models.board.item(item_id)?;
                let policy = policies.resolve(&item.queue, &item.kind).clone();
                Some((item_id, Command::Expire { policy }))
            })
            .collect();
        (lapsed, due)
    };
    let mut report = Tick::default();
    let context = CommandContext::new(CommandContext::SCHEDULER, now);
    report.claims_expired = expire_each(
        log,
        projector,
        &lapsed,
        &context,
        &mut report.already_handled,
    )
    .await;
    report.items_expired =
        expire_each(log, projector, &due, &context, &mut report.already_handled).await;
    report
}

/// Runs each item's command; returns the items it was carried out on.
async fn expire_each(
    log: &dyn EventLog,
    projector: &Projector,
    items: &[(Uuid, Command)],
    context: &CommandContext,
    already_handled: &mut usize,
) -> Vec<Uuid> {
    let mut done = Vec::new();
    for (item_id, command) in items {
        let item_id = *item_id;
        match execute(log, item_id, command, context, None).await {
            Ok(executed) => {
                if let Err(error) = projector.wait_for(executed.last_position).await {
                    tracing::error!(%error, "the scheduler cannot see its own writes");
                }
                done.push(item_id);
            }
            // Another timer, or a reviewer, got there first: nothing to do.
            Err(CommandError::Domain(_) | CommandError::Conflict { .. }) => *already_handled += 1,
            Err(error) => {
                tracing::error!(item = %item_id, %error, command = command.name(), "the scheduler could not expire an item")
            }
        }
    }
    done
}

/// Runs `tick` until the process stops, while this server holds `lease`: at the next deadline
/// the board knows of, and at least every `poll` (deadlines set by appends made meanwhile are
/// picked up then).
pub async fn run(
    log: std::sync::Arc<dyn EventLog>,
    projector: Projector,
    clock: Clock,
    poll: Duration,
    policies: std::sync::Arc<ExpiryPolicies>,
    lease: crate::lease::Lease,
) {
    loop {
        // With several servers on one store, the one holding the lease expires items.
        if !lease.hold(log.as_ref()).await {
            tokio::time::sleep(poll).await;
            continue;
        }
        let report = tick(log.as_ref(), &projector, &clock, &policies).await;
        if !report.claims_expired.is_empty() || !report.items_expired.is_empty() {
            tracing::info!(
                claims = report.claims_expired.len(),
                items = report.items_expired.len(),
                "scheduler expired"
            );
        }
        let until_next = projector
            .read()
            .board
            .next_deadline()
            .and_then(|deadline| (deadline - clock.now()).to_std().ok())
            .unwrap_or(poll);
        tokio::time::sleep(until_next.min(poll).max(Duration::from_millis(10))).await;
    }
}
