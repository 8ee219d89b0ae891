//! The read models are a pure function of the log: after a long random workload through the
//! live server path, a rebuild from scratch equals what the projector kept live.

use crate::support::open;
use chrono::{Duration, TimeZone, Utc};
use ledger::clock::Clock;
use ledger::commands::execute;
use ledger::log::EventLog;
use ledger::projector::{Projector, rebuild};
use projections::item::{
    Command, CommandContext, ExpiryAction, ExpiryPolicy, ModelIdentity, Risk, Submission,
};
use std::sync::Arc;
use uuid::Uuid;

/// SplitMix64: random but reproducible.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % bound
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_projection_equals_the_live_one_after_a_long_random_workload() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(open(dir.path()));
    let projector = Projector::start(log.clone()).await.unwrap();
    let clock = Clock::manual(Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap());
    let mut random = Random(20261124);
    let agents = ["agent-a", "agent-b"];
    let reviewers = ["rita", "sam", "tom", "agent-a"];
    let queues = ["support", "legal", "sales"];
    let mut items: Vec<Uuid> = Vec::new();
    let (mut accepted, mut refused) = (0, 0);
    for step in 0..3000u64 {
        clock.advance(Duration::seconds(random.below(90) as i64));
        let now = clock.now();
        let (item, actor, command) = if items.is_empty() || random.below(6) == 0 {
            let item = Uuid::from_u128(step as u128 + 1);
            items.push(item);
            let submission = Submission {
                auto_approval: None,
                item_id: item,
                queue: queues[random.below(3) as usize].into(),
                kind: ["reply", "score", "clause"][random.below(3) as usize].into(),
                model: ModelIdentity {
                    name: "model".into(),
                    version: format!("v{}", random.below(3)).into(),
                },
                output: serde_json::json!({"text": format!("draft {step}"), "score": random.below(100) as f64 / 100.0}).into(),
                context: serde_json::json!({"step": step}).into(),
                confidence: Some(random.below(101) as f64 / 100.0),
                risk: [Risk::Low, Risk::Normal, Risk::High][random.below(3) as usize],
                priority: random.below(5) as i32,
                due_at: (random.below(2) == 0)
                    .then(|| now + Duration::minutes(5 + random.below(120) as i64)),
                required_approvals: 1 + random.below(2) as u32,
                callback_url: None,
                expiry_policy: ExpiryPolicy::built_in().into(),
            };
            (
                item,
                agents[random.below(2) as usize],
                Command::Submit(submission),
            )
        } else {
            let item = items[random.below(items.len() as u64) as usize];
            let actor = reviewers[random.below(4) as usize];
            let command = match random.below(12) {
                0 | 1 => Command::Claim {
                    lease: Duration::minutes(1 + random.below(20) as i64),
                },
                2 => Command::Release,
                3 | 4 => Command::Approve {
                    seen_output_hash: None,
                },
                5 => Command::EditAndApprove {
                    edited_output: serde_json::json!({"text": format!("edited at {step}")}).into(),
                    note: None,
                    seen_output_hash: None,
                },
                6 => Command::Reject {
                    reason: "wrong tone".into(),
                    seen_output_hash: None,
                },
                7 => Command::RequestChanges {
                    instructions: "shorter".into(),
                    seen_output_hash: None,
                },
                8 => Command::Escalate {
                    to_queue: "legal".into(),
                    reason: "contract".into(),
                },
                9 => Command::Comment {
                    text: format!("note {step}"),
                },
                // The operator's policy at expiry: each action, approval allowed or not.
                10 => Command::Expire {
                    policy: ExpiryPolicy {
                        name: "random".into(),
                        action: match random.below(3) {
                            0 => ExpiryAction::Reject,
                            1 => ExpiryAction::Approve,
                            _ => ExpiryAction::Escalate {
                                queue: "escalations".into(),
                            },
                        },
                        allow_auto_approval: random.below(2) == 0,
                        minimum_review_window: Duration::minutes(5),
                    }
                    .into(),
                },
                _ => Command::ExpireClaim,
            };
            let actor = match command {
                Command::Expire { .. } | Command::ExpireClaim => CommandContext::SCHEDULER,
                _ => actor,
            };
            (item, actor, command)
        };
        // Submitters answer change requests now and then.
        let command = if random.below(10) == 0 {
            Command::Revise {
                output: serde_json::json!({"text": format!("revised {step}")}).into(),
                note: None,
            }
        } else {
            command
        };
        let context = CommandContext::new(actor, now);
        match execute(log.as_ref(), item, &command, &context, None).await {
            Ok(_) => accepted += 1,
            Err(_) => refused += 1,
        }
    }
    assert!(
        accepted > 1000 && refused > 100,
        "a workload that exercises both: {accepted} accepted, {refused} refused"
    );
    projector
        .wait_for(log.head().await.unwrap() - 1)
        .await
        .unwrap();
    let live = projector.snapshot();
    let rebuilt = rebuild(log.as_ref()).await.unwrap();
    assert_eq!(rebuilt.applied, log.head().await.unwrap());
    assert!(
        rebuilt == live,
        "the rebuilt read models differ from the live ones"
    );
    // And a second rebuild is the same again (replay is deterministic).
    assert!(rebuild(log.as_ref()).await.unwrap() == rebuilt);
    assert!(live.board.len() > 300);
}

#[tokio::test]
async fn waiting_on_a_projector_that_stopped_following_fails_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(open(dir.path()));
    let projector = Projector::start(log.clone()).await.unwrap();
    // The log goes away (its writer stops): the projector's subscription ends.
    drop(log);
    let waited = tokio::time::timeout(std::time::Duration::from_secs(10), projector.wait_for(5))
        .await
        .expect("wait_for returns rather than hanging");
    assert!(waited.is_err());
}
