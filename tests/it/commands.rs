//! The review domain through the real log: commands decided on folded state and appended with
//! the expected version; what is read back folds to the same state; races decide once.

use crate::support::open;
use chrono::{Duration, Utc};
use ledger::commands::{CommandError, execute, item_stream, load_item};
use ledger::log::EventLog;
use projections::item::{
    Command, CommandContext, DomainError, ExpiryPolicy, ItemEvent, ItemStatus, ModelIdentity, Risk,
    Submission,
};
use std::sync::Arc;
use uuid::Uuid;

fn submission(item_id: Uuid, required_approvals: u32) -> Submission {
    Submission {
        auto_approval: None,
        item_id,
        queue: "support".into(),
        kind: "customer-reply".into(),
        model: ModelIdentity {
            name: "gpt-x".into(),
            version: "2026-10".into(),
        },
        output: serde_json::json!({"reply": "Dear customer, your refund is on its way.", "score": 0.30000000000000004}).into(),
        context: serde_json::json!({"ticket": 4711, "thread": ["Where is my refund?"]}).into(),
        confidence: Some(0.1 + 0.2),
        risk: Risk::Normal,
        priority: 5,
        due_at: Some(Utc::now() + Duration::hours(4)),
        required_approvals,
        callback_url: None,
        expiry_policy: ExpiryPolicy::built_in().into(),
    }
}

fn as_(actor: &str) -> CommandContext {
    CommandContext::new(actor, Utc::now())
}

#[tokio::test]
async fn an_item_is_submitted_claimed_edited_and_approved_through_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let item = Uuid::new_v4();
    let correlation = Some(Uuid::new_v4());
    let submitted = execute(
        &log,
        item,
        &Command::Submit(submission(item, 1)),
        &as_("agent-7"),
        correlation,
    )
    .await
    .unwrap();
    assert_eq!(submitted.version, 0);
    execute(
        &log,
        item,
        &Command::Claim {
            lease: Duration::minutes(10),
        },
        &as_("rita"),
        correlation,
    )
    .await
    .unwrap();
    let edited =
        serde_json::json!({"reply": "Dear Ms Jones, your refund of 42.10 € was sent today."});
    let decided = execute(
        &log,
        item,
        &Command::EditAndApprove {
            edited_output: edited.clone().into(),
            note: Some("name and amount".into()),
            seen_output_hash: Some(submitted.state.output_hash.to_string()),
        },
        &as_("rita"),
        correlation,
    )
    .await
    .unwrap();
    assert_eq!(decided.state.status, ItemStatus::EditedAndApproved);
    let decision = decided
        .events
        .iter()
        .find_map(|event| match event {
            ItemEvent::ItemDecided(decision) => Some(decision.clone()),
            _ => None,
        })
        .expect("the edit completes the item");
    assert_eq!(
        decision.final_output.and_then(|output| output.to_value()),
        Some(edited)
    );
    assert_eq!(decision.decided_by, vec!["rita".to_owned()]);

    // The log alone gives the same state, after a reopen.
    drop(log);
    let log = open(dir.path());
    let (state, version) = load_item(&log, item).await.unwrap();
    assert_eq!(state, decided.state);
    assert_eq!(version, Some(decided.version));
    let stored = log.read_stream(&item_stream(item), 0, 100).await.unwrap();
    assert_eq!(stored[0].actor, "agent-7");
    assert!(stored[1..].iter().all(|event| event.actor == "rita"));
    assert!(
        stored
            .iter()
            .all(|event| event.correlation_id == correlation)
    );
    // Events after the first of one call name it as their cause.
    let last_call: Vec<_> = stored
        .iter()
        .filter(|event| event.position >= decided.first_position)
        .collect();
    assert!(last_call.len() >= 2);
    assert!(
        last_call[1..]
            .iter()
            .all(|event| event.causation_id == Some(last_call[0].id))
    );

    // A decided item is not decided again, and the refusal writes nothing.
    let head = log.head().await.unwrap();
    let again = execute(
        &log,
        item,
        &Command::Reject {
            reason: "late".into(),
            seen_output_hash: None,
        },
        &as_("sam"),
        None,
    )
    .await;
    assert!(
        matches!(
            again,
            Err(CommandError::Domain(DomainError::AlreadyDecided { .. }))
        ),
        "{again:?}"
    );
    assert_eq!(log.head().await.unwrap(), head);
}

#[tokio::test]
async fn the_submitter_cannot_review_its_own_output_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let item = Uuid::new_v4();
    execute(
        &log,
        item,
        &Command::Submit(submission(item, 1)),
        &as_("dual-role"),
        None,
    )
    .await
    .unwrap();
    let head = log.head().await.unwrap();
    let result = execute(
        &log,
        item,
        &Command::Approve {
            seen_output_hash: None,
        },
        &as_("dual-role"),
        None,
    )
    .await;
    assert!(
        matches!(result, Err(CommandError::Domain(DomainError::SelfReview))),
        "{result:?}"
    );
    assert_eq!(log.head().await.unwrap(), head);
    let missing = execute(&log, Uuid::new_v4(), &Command::Release, &as_("rita"), None).await;
    assert!(
        matches!(
            missing,
            Err(CommandError::Domain(DomainError::ItemNotFound))
        ),
        "{missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_reviewers_decide_an_item_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(open(dir.path()));
    for round in 0..10 {
        let item = Uuid::new_v4();
        execute(
            log.as_ref(),
            item,
            &Command::Submit(submission(item, 1)),
            &as_("agent"),
            None,
        )
        .await
        .unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(20));
        let mut reviewers = Vec::new();
        for reviewer in 0..20 {
            let log = log.clone();
            let barrier = barrier.clone();
            reviewers.push(tokio::spawn(async move {
                barrier.wait().await;
                let command = if reviewer % 2 == 0 {
                    Command::Approve {
                        seen_output_hash: None,
                    }
                } else {
                    Command::Reject {
                        reason: format!("reviewer {reviewer} says no"),
                        seen_output_hash: None,
                    }
                };
                execute(
                    log.as_ref(),
                    item,
                    &command,
                    &as_(&format!("reviewer-{reviewer}")),
                    None,
                )
                .await
            }));
        }
        let mut winners = 0;
        for reviewer in reviewers {
            match reviewer.await.unwrap() {
                Ok(_) => winners += 1,
                Err(CommandError::Conflict { .. })
                | Err(CommandError::Domain(DomainError::AlreadyDecided { .. })) => {}
                Err(other) => panic!("round {round}: unexpected {other:?}"),
            }
        }
        assert_eq!(winners, 1, "round {round}");
        let stored = log.read_stream(&item_stream(item), 0, 100).await.unwrap();
        let decisions = stored
            .iter()
            .filter(|event| event.event_type == "ItemDecided")
            .count();
        assert_eq!(decisions, 1, "round {round}: one decision in the log");
    }
}

#[tokio::test]
async fn floats_and_unicode_survive_the_log_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let item = Uuid::new_v4();
    let executed = execute(
        &log,
        item,
        &Command::Submit(submission(item, 2)),
        &as_("agent"),
        None,
    )
    .await
    .unwrap();
    let stored = log.read_stream(&item_stream(item), 0, 10).await.unwrap();
    let decoded = ledger::commands::decode_item_event(&stored[0]).unwrap();
    assert_eq!(
        decoded, executed.events[0],
        "the stored text decodes to the very same event"
    );
}
