//! Tests of the review domain: given events, when a command, then events or an error; and seeded property tests over random command sequences.

use std::collections::HashSet;

use chrono::TimeZone;
use proptest::prelude::*;
use proptest::test_runner::{RngSeed, TestCaseError};
use serde_json::json;

use super::*;

// ---------------------------------------------------------------------------------------------
// The given/when/then harness
// ---------------------------------------------------------------------------------------------

struct Given {
    history: Vec<ItemEvent>,
}

struct When {
    state_before: ItemState,
    result: Result<Vec<ItemEvent>, DomainError>,
}

fn given(history: Vec<ItemEvent>) -> Given {
    Given { history }
}

impl Given {
    fn when(self, command: Command, actor: &str, now: DateTime<Utc>) -> When {
        let state_before = fold(&self.history);
        let result = decide(&state_before, &command, &CommandContext::new(actor, now));
        When {
            state_before,
            result,
        }
    }
}

impl When {
    /// Asserts the exact events and returns the state after them, for the tests that look further.
    #[track_caller]
    fn then(self, expected_events: Vec<ItemEvent>) -> ItemState {
        assert_eq!(self.result, Ok(expected_events.clone()));
        expected_events.iter().fold(self.state_before, evolve)
    }

    #[track_caller]
    fn then_error(self, expected_error: DomainError) {
        assert_eq!(self.result, Err(expected_error));
    }

    /// Asserts an `Invalid` error on `expected_field`, whatever the wording of its reason.
    #[track_caller]
    fn then_invalid(self, expected_field: &str) {
        match self.result {
            Err(DomainError::Invalid { field, .. }) if field == expected_field => {}
            other => panic!("expected Invalid on {expected_field}, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

const SUBMITTER: &str = "agent-refunds";
const ALICE: &str = "alice";
const BOB: &str = "bob";
const CAROL: &str = "carol";
const SCHEDULER: &str = CommandContext::SCHEDULER;
const QUEUE: &str = "support-replies";
const SENIOR_QUEUE: &str = "senior-support";

/// Minutes after a fixed instant: tests never read a clock.
fn minute(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 9, 0, 0).unwrap() + Duration::minutes(minutes)
}

fn item_id() -> Uuid {
    Uuid::from_u128(0x0195_4a3c_7f00_7000_8000_0000_0000_4711)
}

fn original_output() -> JsonText {
    json!({"to": "customer@example.com", "body": "Your refund of 40 EUR is on its way.", "tags": ["refund"]}).into()
}

fn edited_output() -> JsonText {
    json!({"to": "customer@example.com", "body": "Your refund of 45 EUR is on its way, with our apologies.", "tags": ["refund", "apology"]}).into()
}

fn revised_output() -> JsonText {
    json!({"to": "customer@example.com", "body": "Your refund of 45 EUR (40 EUR plus 5 EUR shipping) is on its way.", "tags": ["refund"]}).into()
}

fn original_hash() -> OutputHash {
    output_hash(&original_output())
}

fn edited_hash() -> OutputHash {
    output_hash(&edited_output())
}

fn revised_hash() -> OutputHash {
    output_hash(&revised_output())
}

fn stale_hash() -> OutputHash {
    output_hash(&json!("an output shown long ago").into())
}

/// Due at minute 120, one approval, under the built-in expiry policy.
fn submission() -> Submission {
    Submission {
        auto_approval: None,
        item_id: item_id(),
        queue: QUEUE.to_owned(),
        kind: "customer-reply".to_owned(),
        model: ModelIdentity {
            name: "reply-drafter".into(),
            version: "2025-02-14".into(),
        },
        output: original_output(),
        context: json!({"ticket": 4711, "thread": ["Where is my refund?"]}).into(),
        confidence: Some(0.82),
        risk: Risk::Normal,
        priority: 5,
        due_at: Some(minute(120)),
        required_approvals: 1,
        callback_url: Some("https://workflow.example/callbacks/4711".to_owned()),
        expiry_policy: Arc::new(ExpiryPolicy::built_in()),
    }
}

fn submission_with(change: impl FnOnce(&mut Submission)) -> Submission {
    let mut changed = submission();
    change(&mut changed);
    changed
}

fn submitted_from(submission: &Submission) -> ItemEvent {
    ItemEvent::ItemSubmitted(ItemSubmitted {
        item_id: submission.item_id,
        queue: submission.queue.clone(),
        kind: submission.kind.clone(),
        model: submission.model.clone(),
        revision: 1,
        output: submission.output.clone(),
        output_hash: output_hash(&submission.output),
        context: submission.context.clone(),
        confidence: submission.confidence,
        risk: submission.risk,
        priority: submission.priority,
        due_at: submission.due_at,
        required_approvals: submission.required_approvals,
        on_expiry: None,
        callback_url: submission.callback_url.clone(),
        submitted_by: SUBMITTER.to_owned(),
        submitted_at: minute(0),
        request_fingerprint: Some(submission_fingerprint(submission)),
    })
}

fn submitted() -> ItemEvent {
    submitted_from(&submission())
}

fn submitted_requiring(required_approvals: u32) -> ItemEvent {
    submitted_from(&submission_with(|submission| {
        submission.required_approvals = required_approvals;
    }))
}

fn submitted_with_risk(risk: Risk) -> ItemEvent {
    submitted_from(&submission_with(|submission| submission.risk = risk))
}

/// An operator's policy named after its action, with the opt-in to auto-approval as given.
fn policy(action: ExpiryAction, allow_auto_approval: bool) -> ExpiryPolicy {
    let name = match &action {
        ExpiryAction::Reject => "reject-on-expiry",
        ExpiryAction::Approve if allow_auto_approval => "approve-on-expiry",
        ExpiryAction::Approve => "approve-without-opt-in",
        ExpiryAction::Escalate { .. } => "escalate-on-expiry",
    };
    ExpiryPolicy {
        name: name.to_owned(),
        action,
        allow_auto_approval,
        minimum_review_window: Duration::minutes(10),
    }
}

/// The policy that allows auto-approval: the one the hard rules must hold against.
fn approving_policy() -> ExpiryPolicy {
    policy(ExpiryAction::Approve, true)
}

fn to_supervisors() -> ExpiryAction {
    ExpiryAction::Escalate {
        queue: "supervisors".to_owned(),
    }
}

fn expire_under(policy: &ExpiryPolicy) -> Command {
    Command::Expire {
        policy: Arc::new(policy.clone()),
    }
}

fn expire_by_default() -> Command {
    expire_under(&ExpiryPolicy::built_in())
}

fn submitted_without_deadline() -> ItemEvent {
    submitted_from(&submission_with(|submission| submission.due_at = None))
}

fn claimed(reviewer: &str, at_minute: i64, until_minute: i64) -> ItemEvent {
    ItemEvent::ItemClaimed(ItemClaimed {
        reviewer: reviewer.to_owned(),
        claimed_at: minute(at_minute),
        expires_at: minute(until_minute),
    })
}

fn released(reviewer: &str, at_minute: i64) -> ItemEvent {
    ItemEvent::ClaimReleased(ClaimReleased {
        reviewer: reviewer.to_owned(),
        at: minute(at_minute),
    })
}

fn claim_expired(reviewer: &str, expired_minute: i64, at_minute: i64) -> ItemEvent {
    ItemEvent::ClaimExpired(ClaimExpired {
        reviewer: reviewer.to_owned(),
        expired_at: minute(expired_minute),
        at: minute(at_minute),
    })
}

/// An approval of `output_hash` in `revision`, the `approvals`-th of `required`.
fn approved_content(
    reviewer: &str,
    at_minute: i64,
    revision: u32,
    output_hash: OutputHash,
    approvals: u32,
    required: u32,
) -> ItemEvent {
    ItemEvent::OutputApproved(OutputApproved {
        reviewer: reviewer.to_owned(),
        revision,
        output_hash,
        approvals,
        required_approvals: required,
        at: minute(at_minute),
    })
}

/// An approval of the original output.
fn approved(reviewer: &str, at_minute: i64, approvals: u32, required: u32) -> ItemEvent {
    approved_content(reviewer, at_minute, 1, original_hash(), approvals, required)
}

/// `reviewer` replaces the original output with [`edited_output`].
fn edited(reviewer: &str, at_minute: i64, note: Option<&str>) -> ItemEvent {
    ItemEvent::OutputEdited(OutputEdited {
        reviewer: reviewer.to_owned(),
        revision: 1,
        edited_output: edited_output(),
        output_hash: edited_hash(),
        previous_output_hash: original_hash(),
        note: note.map(str::to_owned),
        at: minute(at_minute),
    })
}

fn rejected(reviewer: &str, reason: &str, at_minute: i64) -> ItemEvent {
    ItemEvent::OutputRejected(OutputRejected {
        reviewer: reviewer.to_owned(),
        reason: reason.to_owned(),
        revision: 1,
        output_hash: original_hash(),
        at: minute(at_minute),
    })
}

fn changes_requested(reviewer: &str, instructions: &str, at_minute: i64) -> ItemEvent {
    ItemEvent::ChangesRequested(ChangesRequested {
        reviewer: reviewer.to_owned(),
        instructions: instructions.to_owned(),
        revision: 1,
        output_hash: original_hash(),
        at: minute(at_minute),
    })
}

fn revised(at_minute: i64, note: Option<&str>) -> ItemEvent {
    ItemEvent::OutputRevised(OutputRevised {
        revised_by: SUBMITTER.to_owned(),
        revision: 2,
        output: revised_output(),
        output_hash: revised_hash(),
        previous_output_hash: original_hash(),
        note: note.map(str::to_owned),
        at: minute(at_minute),
    })
}

fn escalated(
    by: &str,
    from_queue: &str,
    to_queue: &str,
    reason: &str,
    at_minute: i64,
) -> ItemEvent {
    ItemEvent::ItemEscalated(ItemEscalated {
        by: by.to_owned(),
        from_queue: from_queue.to_owned(),
        to_queue: to_queue.to_owned(),
        reason: reason.to_owned(),
        at: minute(at_minute),
    })
}

fn comment_added(author: &str, text: &str, at_minute: i64) -> ItemEvent {
    ItemEvent::CommentAdded(CommentAdded {
        author: author.to_owned(),
        text: text.to_owned(),
        at: minute(at_minute),
    })
}

fn withdrawn(reason: Option<&str>, at_minute: i64) -> ItemEvent {
    ItemEvent::ItemWithdrawn(ItemWithdrawn {
        by: SUBMITTER.to_owned(),
        reason: reason.map(str::to_owned),
        at: minute(at_minute),
    })
}

/// An expiry of the deadline at minute 120 under `policy`, which applied `applied_action`.
fn expired(policy: &ExpiryPolicy, applied_action: ExpiryAction, at_minute: i64) -> ItemEvent {
    ItemEvent::ItemExpired(ItemExpired {
        due_at: minute(120),
        policy: Some(policy.name.clone()),
        configured_action: policy.action.clone(),
        applied_action,
        at: minute(at_minute),
    })
}

fn decided(
    outcome: Outcome,
    decided_by: &[&str],
    at_minute: i64,
    revision: u32,
    output_hash: OutputHash,
    final_output: Option<JsonText>,
) -> ItemEvent {
    ItemEvent::ItemDecided(ItemDecided {
        outcome,
        decided_by: decided_by.iter().map(|name| (*name).to_owned()).collect(),
        revision,
        output_hash,
        final_output,
        decided_at: minute(at_minute),
    })
}

fn approve() -> Command {
    Command::Approve {
        seen_output_hash: None,
    }
}

fn approve_having_seen(seen_output_hash: OutputHash) -> Command {
    Command::Approve {
        seen_output_hash: Some(seen_output_hash.to_string()),
    }
}

fn edit_and_approve(edited_output: impl Into<JsonText>) -> Command {
    Command::EditAndApprove {
        edited_output: edited_output.into(),
        note: None,
        seen_output_hash: None,
    }
}

fn reject(reason: &str) -> Command {
    Command::Reject {
        reason: reason.to_owned(),
        seen_output_hash: None,
    }
}

fn request_changes(instructions: &str) -> Command {
    Command::RequestChanges {
        instructions: instructions.to_owned(),
        seen_output_hash: None,
    }
}

fn escalate(to_queue: &str, reason: &str) -> Command {
    Command::Escalate {
        to_queue: to_queue.to_owned(),
        reason: reason.to_owned(),
    }
}

fn claim_for_minutes(minutes: i64) -> Command {
    Command::Claim {
        lease: Duration::minutes(minutes),
    }
}

fn revise(output: impl Into<JsonText>) -> Command {
    Command::Revise {
        output: output.into(),
        note: None,
    }
}

fn comment(text: &str) -> Command {
    Command::Comment {
        text: text.to_owned(),
    }
}

/// Every command a reviewer decides with.
fn decision_commands() -> Vec<Command> {
    vec![
        approve(),
        edit_and_approve(edited_output()),
        reject("the amount is wrong"),
        request_changes("state the refunded amount"),
        escalate(SENIOR_QUEUE, "refunds above 40 EUR need a supervisor"),
    ]
}

/// Every command except `Submit` and `Comment`, which have their own rules on a missing or decided item.
fn review_commands() -> Vec<Command> {
    let mut commands = decision_commands();
    commands.extend([
        claim_for_minutes(30),
        Command::Release,
        revise(revised_output()),
        Command::Withdraw { reason: None },
        expire_by_default(),
        Command::ExpireClaim,
    ]);
    commands
}

// ---------------------------------------------------------------------------------------------
// Submit
// ---------------------------------------------------------------------------------------------

#[test]
fn submit_records_every_field_as_revision_one() {
    let state = given(vec![])
        .when(Command::Submit(submission()), SUBMITTER, minute(0))
        .then(vec![submitted()]);
    assert_eq!(state.status, ItemStatus::Pending);
    assert_eq!(state.id, item_id());
    assert_eq!(state.submitted_by, SUBMITTER);
    assert_eq!(state.output, original_output());
    assert_eq!(state.output_hash, original_hash());
    assert_eq!(state.revision, 1);
    assert_eq!(state.revisions.len(), 1);
    assert_eq!(state.required_approvals, 1);
    assert_eq!(state.event_count, 1);
    assert!(!state.is_decided());
}

#[test]
fn submit_of_an_existing_item_is_refused() {
    given(vec![submitted()])
        .when(Command::Submit(submission()), SUBMITTER, minute(1))
        .then_error(DomainError::AlreadySubmitted);
}

#[test]
fn submit_refuses_an_empty_queue() {
    given(vec![])
        .when(
            Command::Submit(submission_with(|submission| {
                submission.queue = "  ".to_owned()
            })),
            SUBMITTER,
            minute(0),
        )
        .then_invalid("queue");
}

#[test]
fn submit_refuses_an_empty_kind_and_model() {
    given(vec![])
        .when(
            Command::Submit(submission_with(|submission| {
                submission.kind = String::new()
            })),
            SUBMITTER,
            minute(0),
        )
        .then_invalid("kind");
    given(vec![])
        .when(
            Command::Submit(submission_with(|submission| {
                submission.model.version = Name::default();
            })),
            SUBMITTER,
            minute(0),
        )
        .then_invalid("model.version");
}

#[test]
fn submit_refuses_a_confidence_outside_zero_to_one() {
    for confidence in [-0.01, 1.01, f64::NAN, f64::INFINITY] {
        given(vec![])
            .when(
                Command::Submit(submission_with(|submission| {
                    submission.confidence = Some(confidence);
                })),
                SUBMITTER,
                minute(0),
            )
            .then_invalid("confidence");
    }
    for confidence in [0.0, 1.0] {
        let accepted = submission_with(|submission| submission.confidence = Some(confidence));
        given(vec![])
            .when(Command::Submit(accepted.clone()), SUBMITTER, minute(0))
            .then(vec![submitted_from(&accepted)]);
    }
}

#[test]
fn submit_refuses_zero_or_too_many_required_approvals() {
    for required_approvals in [0, MAXIMUM_REQUIRED_APPROVALS + 1] {
        given(vec![])
            .when(
                Command::Submit(submission_with(|submission| {
                    submission.required_approvals = required_approvals;
                })),
                SUBMITTER,
                minute(0),
            )
            .then_invalid("required_approvals");
    }
}

#[test]
fn submit_refuses_a_deadline_not_after_now() {
    for due_minute in [0, -5] {
        given(vec![])
            .when(
                Command::Submit(submission_with(|submission| {
                    submission.due_at = Some(minute(due_minute));
                })),
                SUBMITTER,
                minute(0),
            )
            .then_invalid("due_at");
    }
}

#[test]
fn submit_refuses_a_null_output() {
    given(vec![])
        .when(
            Command::Submit(submission_with(|submission| {
                submission.output = Value::Null.into()
            })),
            SUBMITTER,
            minute(0),
        )
        .then_invalid("output");
}

#[test]
fn submit_refuses_a_nil_item_id() {
    given(vec![])
        .when(
            Command::Submit(submission_with(|submission| {
                submission.item_id = Uuid::nil()
            })),
            SUBMITTER,
            minute(0),
        )
        .then_invalid("item_id");
}

#[test]
fn submit_refuses_a_deadline_inside_the_policys_minimum_review_window() {
    // The built-in policy's window is 5 minutes: a deadline 2 seconds out is refused, naming it.
    let too_soon = minute(0) + Duration::seconds(2);
    given(vec![])
        .when(
            Command::Submit(submission_with(|submission| {
                submission.due_at = Some(too_soon);
            })),
            SUBMITTER,
            minute(0),
        )
        .then_error(DomainError::DeadlineInsideReviewWindow {
            policy: ExpiryPolicy::BUILT_IN_NAME.to_owned(),
            minimum_review_window: DEFAULT_MINIMUM_REVIEW_WINDOW,
            earliest_due_at: minute(5),
        });
    let refusal = DomainError::DeadlineInsideReviewWindow {
        policy: ExpiryPolicy::BUILT_IN_NAME.to_owned(),
        minimum_review_window: DEFAULT_MINIMUM_REVIEW_WINDOW,
        earliest_due_at: minute(5),
    };
    assert_eq!(refusal.kind(), ErrorKind::Invalid);
    assert_eq!(refusal.rule(), "deadline-inside-review-window");
    assert!(
        refusal.to_string().contains("at least 5 minutes")
            && refusal.to_string().contains("\"built-in-default\"")
            && refusal.to_string().contains("2025-03-01T09:05:00Z"),
        "{refusal}"
    );

    // An operator's window applies in its place, and a deadline exactly at its end is accepted.
    let ten_minute_window = approving_policy();
    given(vec![])
        .when(
            Command::Submit(submission_with(|submission| {
                submission.due_at = Some(minute(9));
                submission.expiry_policy = Arc::new(ten_minute_window.clone());
            })),
            SUBMITTER,
            minute(0),
        )
        .then_error(DomainError::DeadlineInsideReviewWindow {
            policy: "approve-on-expiry".to_owned(),
            minimum_review_window: Duration::minutes(10),
            earliest_due_at: minute(10),
        });
    let at_the_window = submission_with(|submission| {
        submission.due_at = Some(minute(10));
        submission.expiry_policy = Arc::new(ten_minute_window);
    });
    given(vec![])
        .when(Command::Submit(at_the_window.clone()), SUBMITTER, minute(0))
        .then(vec![submitted_from(&at_the_window)]);

    // No deadline at all is no deadline to bound.
    let without_deadline = submission_with(|submission| submission.due_at = None);
    given(vec![])
        .when(
            Command::Submit(without_deadline.clone()),
            SUBMITTER,
            minute(0),
        )
        .then(vec![submitted_from(&without_deadline)]);
}

#[test]
fn submit_records_no_expiry_action_of_the_submitters() {
    let state = given(vec![])
        .when(Command::Submit(submission()), SUBMITTER, minute(0))
        .then(vec![submitted()]);
    let ItemEvent::ItemSubmitted(recorded) = submitted() else {
        unreachable!()
    };
    assert_eq!(recorded.on_expiry, None);
    assert_eq!(submitted().to_data()["on_expiry"], Value::Null);
    assert_eq!(state.due_at, Some(minute(120)));
}

#[test]
fn submit_refuses_a_callback_url_that_is_not_http() {
    given(vec![])
        .when(
            Command::Submit(submission_with(|submission| {
                submission.callback_url = Some("file:///etc/passwd".to_owned());
            })),
            SUBMITTER,
            minute(0),
        )
        .then_invalid("callback_url");
}

#[test]
fn a_blank_actor_is_refused() {
    given(vec![])
        .when(Command::Submit(submission()), "", minute(0))
        .then_invalid("actor");
}

// ---------------------------------------------------------------------------------------------
// Item not found
// ---------------------------------------------------------------------------------------------

#[test]
fn every_command_but_submit_on_a_missing_item_is_refused_item_not_found() {
    let mut commands = review_commands();
    commands.push(comment("anyone there?"));
    for command in commands {
        given(vec![])
            .when(command, ALICE, minute(1))
            .then_error(DomainError::ItemNotFound);
    }
}

// ---------------------------------------------------------------------------------------------
// Claims
// ---------------------------------------------------------------------------------------------

#[test]
fn claim_takes_a_lease_that_lapses() {
    let state = given(vec![submitted()])
        .when(claim_for_minutes(30), ALICE, minute(1))
        .then(vec![claimed(ALICE, 1, 31)]);
    assert_eq!(
        state
            .live_claim(minute(30))
            .map(|claim| claim.reviewer.as_str()),
        Some(ALICE)
    );
    assert_eq!(state.live_claim(minute(31)), None);
}

#[test]
fn claim_by_the_submitter_is_self_review() {
    given(vec![submitted()])
        .when(claim_for_minutes(30), SUBMITTER, minute(1))
        .then_error(DomainError::SelfReview);
}

#[test]
fn claim_of_an_item_claimed_by_someone_else_is_refused() {
    given(vec![submitted(), claimed(ALICE, 1, 31)])
        .when(claim_for_minutes(30), BOB, minute(10))
        .then_error(DomainError::ClaimedBySomeoneElse {
            holder: ALICE.to_owned(),
            expires_at: minute(31),
        });
}

#[test]
fn claim_again_by_the_holder_renews_the_lease() {
    given(vec![submitted(), claimed(ALICE, 1, 31)])
        .when(claim_for_minutes(30), ALICE, minute(20))
        .then(vec![claimed(ALICE, 20, 50)]);
}

#[test]
fn a_lapsed_claim_is_no_claim_so_someone_else_may_claim() {
    given(vec![submitted(), claimed(ALICE, 1, 31)])
        .when(claim_for_minutes(30), BOB, minute(31))
        .then(vec![claimed(BOB, 31, 61)]);
}

#[test]
fn claim_lease_must_be_positive_and_at_most_a_day() {
    for lease in [
        Duration::zero(),
        Duration::minutes(-5),
        MAXIMUM_CLAIM_LEASE + Duration::seconds(1),
    ] {
        given(vec![submitted()])
            .when(Command::Claim { lease }, ALICE, minute(1))
            .then_invalid("lease");
    }
    given(vec![submitted()])
        .when(
            Command::Claim {
                lease: MAXIMUM_CLAIM_LEASE,
            },
            ALICE,
            minute(0),
        )
        .then(vec![claimed(ALICE, 0, 24 * 60)]);
}

#[test]
fn expire_claim_after_the_lease_then_someone_else_claims() {
    given(vec![submitted(), claimed(ALICE, 1, 31)])
        .when(Command::ExpireClaim, SCHEDULER, minute(40))
        .then(vec![claim_expired(ALICE, 31, 40)]);
    let state = given(vec![
        submitted(),
        claimed(ALICE, 1, 31),
        claim_expired(ALICE, 31, 40),
    ])
    .when(claim_for_minutes(30), BOB, minute(41))
    .then(vec![claimed(BOB, 41, 71)]);
    assert_eq!(state.claim.map(|claim| claim.reviewer), Some(BOB.into()));
}

#[test]
fn expire_claim_before_the_lease_passed_is_refused() {
    given(vec![submitted(), claimed(ALICE, 1, 31)])
        .when(Command::ExpireClaim, SCHEDULER, minute(30))
        .then_error(DomainError::ClaimStillLive {
            expires_at: minute(31),
        });
}

#[test]
fn expire_claim_without_a_claim_is_refused() {
    given(vec![submitted()])
        .when(Command::ExpireClaim, SCHEDULER, minute(30))
        .then_error(DomainError::NoClaim);
    given(vec![submitted(), claimed(ALICE, 1, 31), released(ALICE, 5)])
        .when(Command::ExpireClaim, SCHEDULER, minute(40))
        .then_error(DomainError::NoClaim);
}

#[test]
fn release_by_the_holder_frees_the_item() {
    let state = given(vec![submitted(), claimed(ALICE, 1, 31)])
        .when(Command::Release, ALICE, minute(5))
        .then(vec![released(ALICE, 5)]);
    assert_eq!(state.claim, None);
}

#[test]
fn release_by_anyone_but_the_holder_is_refused() {
    given(vec![submitted(), claimed(ALICE, 1, 31)])
        .when(Command::Release, BOB, minute(5))
        .then_error(DomainError::NotClaimedByYou {
            holder: ALICE.to_owned(),
        });
}

#[test]
fn release_without_a_live_claim_is_refused() {
    given(vec![submitted()])
        .when(Command::Release, ALICE, minute(5))
        .then_error(DomainError::NoClaim);
    given(vec![submitted(), claimed(ALICE, 1, 31)])
        .when(Command::Release, ALICE, minute(31))
        .then_error(DomainError::NoClaim);
}

#[test]
fn only_the_claim_holder_decides_while_the_claim_is_live() {
    for command in decision_commands() {
        given(vec![submitted(), claimed(ALICE, 1, 31)])
            .when(command, BOB, minute(10))
            .then_error(DomainError::ClaimedBySomeoneElse {
                holder: ALICE.to_owned(),
                expires_at: minute(31),
            });
    }
}

#[test]
fn anyone_eligible_decides_once_the_claim_lapsed() {
    given(vec![submitted(), claimed(ALICE, 1, 31)])
        .when(approve(), BOB, minute(31))
        .then(vec![
            approved(BOB, 31, 1, 1),
            decided(
                Outcome::Approved,
                &[BOB],
                31,
                1,
                original_hash(),
                Some(original_output()),
            ),
        ]);
}

// ---------------------------------------------------------------------------------------------
// Self review, decided items
// ---------------------------------------------------------------------------------------------

#[test]
fn the_submitter_never_claims_or_decides_its_own_item() {
    let mut commands = decision_commands();
    commands.push(claim_for_minutes(30));
    for command in commands {
        given(vec![submitted()])
            .when(command, SUBMITTER, minute(1))
            .then_error(DomainError::SelfReview);
    }
}

#[test]
fn every_review_command_after_a_decision_is_refused_already_decided() {
    let history = vec![
        submitted(),
        approved(ALICE, 5, 1, 1),
        decided(
            Outcome::Approved,
            &[ALICE],
            5,
            1,
            original_hash(),
            Some(original_output()),
        ),
    ];
    for command in review_commands() {
        let actor = match command {
            Command::Revise { .. } | Command::Withdraw { .. } => SUBMITTER,
            Command::Expire { .. } | Command::ExpireClaim => SCHEDULER,
            _ => BOB,
        };
        given(history.clone())
            .when(command, actor, minute(200))
            .then_error(DomainError::AlreadyDecided {
                outcome: Outcome::Approved,
            });
    }
}

#[test]
fn a_rejected_item_is_not_approved_afterwards() {
    given(vec![
        submitted(),
        rejected(ALICE, "wrong amount", 5),
        decided(Outcome::Rejected, &[ALICE], 5, 1, original_hash(), None),
    ])
    .when(approve(), BOB, minute(6))
    .then_error(DomainError::AlreadyDecided {
        outcome: Outcome::Rejected,
    });
}

// ---------------------------------------------------------------------------------------------
// Approve, edit, reject
// ---------------------------------------------------------------------------------------------

#[test]
fn approve_without_a_claim_decides_the_item() {
    let state = given(vec![submitted()])
        .when(approve(), ALICE, minute(5))
        .then(vec![
            approved(ALICE, 5, 1, 1),
            decided(
                Outcome::Approved,
                &[ALICE],
                5,
                1,
                original_hash(),
                Some(original_output()),
            ),
        ]);
    assert_eq!(state.status, ItemStatus::Approved);
    assert!(state.is_decided());
    assert!(state.is_closed());
    assert_eq!(
        state.decision.and_then(|decision| decision.final_output),
        Some(original_output())
    );
}

#[test]
fn approve_by_the_claim_holder_decides_and_ends_the_claim() {
    let state = given(vec![submitted(), claimed(ALICE, 1, 31)])
        .when(approve_having_seen(original_hash()), ALICE, minute(5))
        .then(vec![
            approved(ALICE, 5, 1, 1),
            decided(
                Outcome::Approved,
                &[ALICE],
                5,
                1,
                original_hash(),
                Some(original_output()),
            ),
        ]);
    assert_eq!(state.claim, None);
}

#[test]
fn approve_of_content_other_than_the_one_shown_is_refused() {
    given(vec![submitted()])
        .when(approve_having_seen(stale_hash()), ALICE, minute(5))
        .then_error(DomainError::OutputChanged {
            expected: stale_hash().to_string(),
            current: original_hash().to_string(),
        });
}

#[test]
fn a_decision_on_content_edited_since_it_was_shown_is_refused() {
    given(vec![submitted_requiring(2), edited(ALICE, 5, None)])
        .when(approve_having_seen(original_hash()), BOB, minute(6))
        .then_error(DomainError::OutputChanged {
            expected: original_hash().to_string(),
            current: edited_hash().to_string(),
        });
    given(vec![submitted_requiring(2), edited(ALICE, 5, None)])
        .when(
            Command::Reject {
                reason: "wrong amount".to_owned(),
                seen_output_hash: Some(original_hash().to_string()),
            },
            BOB,
            minute(6),
        )
        .then_error(DomainError::OutputChanged {
            expected: original_hash().to_string(),
            current: edited_hash().to_string(),
        });
}

#[test]
fn a_seen_output_hash_that_is_not_a_sha256_is_invalid() {
    given(vec![submitted()])
        .when(
            Command::Approve {
                seen_output_hash: Some("ABC".to_owned()),
            },
            ALICE,
            minute(5),
        )
        .then_invalid("seen_output_hash");
}

#[test]
fn edit_and_approve_stores_the_full_edited_output() {
    let state = given(vec![submitted(), claimed(ALICE, 1, 31)])
        .when(
            Command::EditAndApprove {
                edited_output: edited_output(),
                note: Some("the refund includes shipping".to_owned()),
                seen_output_hash: Some(original_hash().to_string()),
            },
            ALICE,
            minute(5),
        )
        .then(vec![
            edited(ALICE, 5, Some("the refund includes shipping")),
            decided(
                Outcome::EditedAndApproved,
                &[ALICE],
                5,
                1,
                edited_hash(),
                Some(edited_output()),
            ),
        ]);
    assert_eq!(state.status, ItemStatus::EditedAndApproved);
    assert_eq!(state.output, edited_output());
    assert_eq!(state.output_edited_by.as_deref(), Some(ALICE));
    assert_eq!(state.edits.len(), 1);
    assert_eq!(state.edits[0].output, edited_output());
    // What the AI said stays beside what the human made of it.
    assert_eq!(state.revisions[0].output, original_output());
}

#[test]
fn edit_that_changes_nothing_is_refused() {
    given(vec![submitted()])
        .when(edit_and_approve(original_output()), ALICE, minute(5))
        .then_invalid("edited_output");
}

#[test]
fn edit_to_null_or_with_a_blank_note_is_refused() {
    given(vec![submitted()])
        .when(edit_and_approve(Value::Null), ALICE, minute(5))
        .then_invalid("edited_output");
    given(vec![submitted()])
        .when(
            Command::EditAndApprove {
                edited_output: edited_output(),
                note: Some(" ".to_owned()),
                seen_output_hash: None,
            },
            ALICE,
            minute(5),
        )
        .then_invalid("note");
}

#[test]
fn reject_with_a_reason_ends_the_item_rejected() {
    let state = given(vec![submitted(), claimed(ALICE, 1, 31)])
        .when(reject("the refund was 45 EUR"), ALICE, minute(5))
        .then(vec![
            rejected(ALICE, "the refund was 45 EUR", 5),
            decided(Outcome::Rejected, &[ALICE], 5, 1, original_hash(), None),
        ]);
    assert_eq!(state.status, ItemStatus::Rejected);
    assert_eq!(
        state.rejection.map(|rejection| rejection.reason),
        Some("the refund was 45 EUR".to_owned())
    );
    assert_eq!(state.claim, None);
}

#[test]
fn reject_without_a_reason_is_refused() {
    for reason in ["", "   \n"] {
        given(vec![submitted()])
            .when(reject(reason), ALICE, minute(5))
            .then_invalid("reason");
    }
}

// ---------------------------------------------------------------------------------------------
// Four-eyes
// ---------------------------------------------------------------------------------------------

#[test]
fn four_eyes_first_approval_counts_one_of_two_and_releases_the_claim() {
    let state = given(vec![submitted_requiring(2), claimed(ALICE, 1, 31)])
        .when(approve(), ALICE, minute(5))
        .then(vec![approved(ALICE, 5, 1, 2), released(ALICE, 5)]);
    assert_eq!(state.status, ItemStatus::Pending);
    assert_eq!(state.approvals_missing(), 1);
    assert_eq!(state.claim, None);
}

#[test]
fn four_eyes_the_same_reviewer_cannot_approve_twice() {
    given(vec![submitted_requiring(2), approved(ALICE, 5, 1, 2)])
        .when(approve(), ALICE, minute(6))
        .then_error(DomainError::AlreadyApprovedByYou);
}

#[test]
fn four_eyes_a_reviewer_who_approved_cannot_claim_the_same_content() {
    given(vec![submitted_requiring(2), approved(ALICE, 5, 1, 2)])
        .when(claim_for_minutes(30), ALICE, minute(6))
        .then_error(DomainError::AlreadyApprovedByYou);
}

#[test]
fn four_eyes_two_distinct_approvals_complete_the_item() {
    let state = given(vec![
        submitted_requiring(2),
        claimed(ALICE, 1, 31),
        approved(ALICE, 5, 1, 2),
        released(ALICE, 5),
        claimed(BOB, 6, 36),
    ])
    .when(approve(), BOB, minute(7))
    .then(vec![
        approved(BOB, 7, 2, 2),
        decided(
            Outcome::Approved,
            &[ALICE, BOB],
            7,
            1,
            original_hash(),
            Some(original_output()),
        ),
    ]);
    assert_eq!(state.status, ItemStatus::Approved);
}

#[test]
fn four_eyes_one_rejection_after_an_approval_ends_the_item_rejected() {
    given(vec![submitted_requiring(2), approved(ALICE, 5, 1, 2)])
        .when(reject("the amount is wrong"), BOB, minute(7))
        .then(vec![
            rejected(BOB, "the amount is wrong", 7),
            decided(Outcome::Rejected, &[BOB], 7, 1, original_hash(), None),
        ]);
}

#[test]
fn four_eyes_an_edit_voids_the_approvals_of_the_earlier_content() {
    let state = given(vec![submitted_requiring(2), approved(ALICE, 5, 1, 2)])
        .when(edit_and_approve(edited_output()), BOB, minute(7))
        .then(vec![edited(BOB, 7, None)]);
    let approvers: Vec<&str> = state
        .approvals
        .iter()
        .map(|approval| approval.reviewer.as_str())
        .collect();
    assert_eq!(approvers, vec![BOB]);
    assert_eq!(state.status, ItemStatus::Pending);

    // Alice approved the original, not the edit: her approval of the edit is a new one and completes it.
    given(vec![
        submitted_requiring(2),
        approved(ALICE, 5, 1, 2),
        edited(BOB, 7, None),
    ])
    .when(approve_having_seen(edited_hash()), ALICE, minute(8))
    .then(vec![
        approved_content(ALICE, 8, 1, edited_hash(), 2, 2),
        decided(
            Outcome::EditedAndApproved,
            &[BOB, ALICE],
            8,
            1,
            edited_hash(),
            Some(edited_output()),
        ),
    ]);
}

#[test]
fn four_eyes_the_editor_cannot_approve_its_own_edit() {
    given(vec![submitted_requiring(2), edited(BOB, 7, None)])
        .when(approve(), BOB, minute(8))
        .then_error(DomainError::AlreadyApprovedByYou);
}

#[test]
fn four_eyes_an_edit_that_does_not_complete_releases_the_editor_claim() {
    given(vec![submitted_requiring(2), claimed(BOB, 1, 31)])
        .when(edit_and_approve(edited_output()), BOB, minute(7))
        .then(vec![edited(BOB, 7, None), released(BOB, 7)]);
}

// ---------------------------------------------------------------------------------------------
// Changes requested and revisions
// ---------------------------------------------------------------------------------------------

#[test]
fn request_changes_sends_the_item_back_to_the_submitter() {
    let state = given(vec![submitted(), claimed(ALICE, 1, 31)])
        .when(
            request_changes("state the refunded amount"),
            ALICE,
            minute(5),
        )
        .then(vec![changes_requested(
            ALICE,
            "state the refunded amount",
            5,
        )]);
    assert_eq!(state.status, ItemStatus::ChangesRequested);
    assert_eq!(state.claim, None);
    assert_eq!(
        state
            .open_change_request()
            .map(|request| request.instructions.as_str()),
        Some("state the refunded amount")
    );
}

#[test]
fn request_changes_without_instructions_is_refused() {
    given(vec![submitted()])
        .when(request_changes(""), ALICE, minute(5))
        .then_invalid("instructions");
}

#[test]
fn nothing_is_claimed_or_decided_while_changes_are_requested() {
    let mut commands = decision_commands();
    commands.push(claim_for_minutes(30));
    for command in commands {
        given(vec![
            submitted(),
            changes_requested(ALICE, "state the amount", 5),
        ])
        .when(command, BOB, minute(6))
        .then_error(DomainError::ChangesRequestedPending);
    }
}

#[test]
fn revise_returns_the_item_to_the_queue_as_revision_two() {
    let state = given(vec![
        submitted(),
        changes_requested(ALICE, "state the amount", 5),
    ])
    .when(
        Command::Revise {
            output: revised_output(),
            note: Some("amount stated".to_owned()),
        },
        SUBMITTER,
        minute(10),
    )
    .then(vec![revised(10, Some("amount stated"))]);
    assert_eq!(state.status, ItemStatus::Pending);
    assert_eq!(state.revision, 2);
    assert_eq!(state.output, revised_output());
    let revision_numbers: Vec<u32> = state
        .revisions
        .iter()
        .map(|revision| revision.revision)
        .collect();
    assert_eq!(revision_numbers, vec![1, 2]);
    assert_eq!(state.revisions[0].output, original_output());
    assert_eq!(state.open_change_request(), None);
    assert_eq!(state.change_requests.len(), 1);
}

#[test]
fn revision_two_is_approved_and_decided_as_revision_two() {
    given(vec![
        submitted(),
        changes_requested(ALICE, "state the amount", 5),
        revised(10, None),
    ])
    .when(approve_having_seen(revised_hash()), ALICE, minute(12))
    .then(vec![
        approved_content(ALICE, 12, 2, revised_hash(), 1, 1),
        decided(
            Outcome::Approved,
            &[ALICE],
            12,
            2,
            revised_hash(),
            Some(revised_output()),
        ),
    ]);
}

#[test]
fn approvals_of_an_earlier_revision_do_not_count() {
    let state = given(vec![
        submitted_requiring(2),
        approved(ALICE, 5, 1, 2),
        changes_requested(BOB, "state the amount", 6),
        revised(10, None),
    ])
    .when(approve(), ALICE, minute(12))
    .then(vec![approved_content(ALICE, 12, 2, revised_hash(), 1, 2)]);
    assert_eq!(state.approvals_missing(), 1);
    assert!(!state.is_decided());
}

#[test]
fn revise_by_anyone_but_the_submitter_is_refused() {
    given(vec![
        submitted(),
        changes_requested(ALICE, "state the amount", 5),
    ])
    .when(revise(revised_output()), ALICE, minute(10))
    .then_error(DomainError::NotTheSubmitter);
}

#[test]
fn revise_without_a_change_request_is_refused() {
    given(vec![submitted()])
        .when(revise(revised_output()), SUBMITTER, minute(10))
        .then_error(DomainError::NoChangesRequested);
    given(vec![
        submitted(),
        changes_requested(ALICE, "state the amount", 5),
        revised(10, None),
    ])
    .when(revise(original_output()), SUBMITTER, minute(11))
    .then_error(DomainError::NoChangesRequested);
}

#[test]
fn revise_to_null_is_refused() {
    given(vec![
        submitted(),
        changes_requested(ALICE, "state the amount", 5),
    ])
    .when(revise(Value::Null), SUBMITTER, minute(10))
    .then_invalid("output");
}

// ---------------------------------------------------------------------------------------------
// Escalation
// ---------------------------------------------------------------------------------------------

#[test]
fn escalate_moves_the_item_and_releases_the_claim() {
    let state = given(vec![submitted(), claimed(ALICE, 1, 31)])
        .when(
            escalate(SENIOR_QUEUE, "above my refund limit"),
            ALICE,
            minute(5),
        )
        .then(vec![escalated(
            ALICE,
            QUEUE,
            SENIOR_QUEUE,
            "above my refund limit",
            5,
        )]);
    assert_eq!(state.queue, SENIOR_QUEUE);
    assert_eq!(state.claim, None);
    assert_eq!(state.escalations.len(), 1);
    assert_eq!(state.status, ItemStatus::Pending);
}

#[test]
fn an_escalated_item_is_decided_in_its_new_queue() {
    given(vec![
        submitted(),
        claimed(ALICE, 1, 31),
        escalated(ALICE, QUEUE, SENIOR_QUEUE, "above my refund limit", 5),
        claimed(CAROL, 6, 36),
    ])
    .when(reject("we do not refund this"), CAROL, minute(7))
    .then(vec![
        ItemEvent::OutputRejected(OutputRejected {
            reviewer: CAROL.to_owned(),
            reason: "we do not refund this".to_owned(),
            revision: 1,
            output_hash: original_hash(),
            at: minute(7),
        }),
        decided(Outcome::Rejected, &[CAROL], 7, 1, original_hash(), None),
    ]);
}

#[test]
fn escalate_to_the_same_queue_or_without_a_reason_is_refused() {
    given(vec![submitted()])
        .when(escalate(QUEUE, "no idea"), ALICE, minute(5))
        .then_invalid("to_queue");
    given(vec![submitted()])
        .when(escalate(SENIOR_QUEUE, ""), ALICE, minute(5))
        .then_invalid("reason");
}

// ---------------------------------------------------------------------------------------------
// Comments
// ---------------------------------------------------------------------------------------------

#[test]
fn anyone_comments_on_a_pending_item_even_the_submitter() {
    let state = given(vec![submitted()])
        .when(comment("the customer called twice"), SUBMITTER, minute(3))
        .then(vec![comment_added(
            SUBMITTER,
            "the customer called twice",
            3,
        )]);
    assert_eq!(state.comments.len(), 1);
}

#[test]
fn a_comment_after_the_decision_is_allowed_and_changes_nothing_decided() {
    let history = vec![
        submitted(),
        approved(ALICE, 5, 1, 1),
        decided(
            Outcome::Approved,
            &[ALICE],
            5,
            1,
            original_hash(),
            Some(original_output()),
        ),
    ];
    let decision_before = fold(&history).decision;
    let state = given(history)
        .when(comment("sent to the customer"), BOB, minute(300))
        .then(vec![comment_added(BOB, "sent to the customer", 300)]);
    assert_eq!(state.decision, decision_before);
    assert_eq!(state.status, ItemStatus::Approved);
}

#[test]
fn a_comment_on_a_withdrawn_item_is_allowed() {
    given(vec![submitted(), withdrawn(None, 3)])
        .when(comment("why?"), ALICE, minute(4))
        .then(vec![comment_added(ALICE, "why?", 4)]);
}

#[test]
fn an_empty_comment_is_refused() {
    given(vec![submitted()])
        .when(comment(" "), ALICE, minute(3))
        .then_invalid("text");
}

// ---------------------------------------------------------------------------------------------
// Withdrawal
// ---------------------------------------------------------------------------------------------

#[test]
fn withdraw_by_the_submitter_ends_the_item() {
    let state = given(vec![submitted(), claimed(ALICE, 1, 31)])
        .when(
            Command::Withdraw {
                reason: Some("the customer cancelled".to_owned()),
            },
            SUBMITTER,
            minute(3),
        )
        .then(vec![withdrawn(Some("the customer cancelled"), 3)]);
    assert_eq!(state.status, ItemStatus::Withdrawn);
    assert!(state.is_closed());
    assert!(!state.is_decided());
    assert_eq!(state.claim, None);
}

#[test]
fn withdraw_while_changes_are_requested_is_allowed() {
    given(vec![
        submitted(),
        changes_requested(ALICE, "state the amount", 5),
    ])
    .when(Command::Withdraw { reason: None }, SUBMITTER, minute(6))
    .then(vec![withdrawn(None, 6)]);
}

#[test]
fn withdraw_by_anyone_but_the_submitter_is_refused() {
    given(vec![submitted()])
        .when(Command::Withdraw { reason: None }, ALICE, minute(3))
        .then_error(DomainError::NotTheSubmitter);
}

#[test]
fn withdraw_with_a_blank_reason_is_refused() {
    given(vec![submitted()])
        .when(
            Command::Withdraw {
                reason: Some(String::new()),
            },
            SUBMITTER,
            minute(3),
        )
        .then_invalid("reason");
}

#[test]
fn nothing_but_comments_follows_a_withdrawal() {
    for command in review_commands() {
        let actor = match command {
            Command::Revise { .. } | Command::Withdraw { .. } => SUBMITTER,
            _ => BOB,
        };
        given(vec![submitted(), withdrawn(None, 3)])
            .when(command, actor, minute(200))
            .then_error(DomainError::AlreadyWithdrawn);
    }
}

// ---------------------------------------------------------------------------------------------
// Expiry
// ---------------------------------------------------------------------------------------------

#[test]
fn expire_under_the_built_in_policy_ends_rejected_on_expiry_and_names_it() {
    let state = given(vec![submitted(), claimed(ALICE, 100, 130)])
        .when(expire_by_default(), SCHEDULER, minute(120))
        .then(vec![
            expired(&ExpiryPolicy::built_in(), ExpiryAction::Reject, 120),
            decided(
                Outcome::RejectedOnExpiry,
                &[],
                120,
                1,
                original_hash(),
                None,
            ),
        ]);
    assert_eq!(state.status, ItemStatus::RejectedOnExpiry);
    assert_eq!(state.claim, None);
    let expiry = state.expiry.as_deref().unwrap();
    assert_eq!(expiry.policy.as_deref(), Some(ExpiryPolicy::BUILT_IN_NAME));
    assert_eq!(expiry.configured_action, ExpiryAction::Reject);
}

#[test]
fn expire_under_a_policy_allowing_auto_approval_ends_approved_on_expiry() {
    let state = given(vec![submitted()])
        .when(expire_under(&approving_policy()), SCHEDULER, minute(125))
        .then(vec![
            expired(&approving_policy(), ExpiryAction::Approve, 125),
            decided(
                Outcome::ApprovedOnExpiry,
                &[],
                125,
                1,
                original_hash(),
                Some(original_output()),
            ),
        ]);
    assert_eq!(state.status, ItemStatus::ApprovedOnExpiry);
    assert_eq!(
        state.expiry.as_deref().unwrap().policy.as_deref(),
        Some("approve-on-expiry")
    );
}

#[test]
fn expire_under_an_approve_policy_without_the_opt_in_rejects() {
    let without_opt_in = policy(ExpiryAction::Approve, false);
    given(vec![submitted()])
        .when(expire_under(&without_opt_in), SCHEDULER, minute(120))
        .then(vec![
            expired(&without_opt_in, ExpiryAction::Reject, 120),
            decided(
                Outcome::RejectedOnExpiry,
                &[],
                120,
                1,
                original_hash(),
                None,
            ),
        ]);
}

#[test]
fn expire_never_auto_approves_a_high_risk_item_whatever_the_policy() {
    let state = given(vec![submitted_with_risk(Risk::High)])
        .when(expire_under(&approving_policy()), SCHEDULER, minute(120))
        .then(vec![
            expired(&approving_policy(), ExpiryAction::Reject, 120),
            decided(
                Outcome::RejectedOnExpiry,
                &[],
                120,
                1,
                original_hash(),
                None,
            ),
        ]);
    // Both actions are on the record: what the operator configured, and what the domain applied.
    let expiry = state.expiry.as_deref().unwrap();
    assert_eq!(expiry.configured_action, ExpiryAction::Approve);
    assert_eq!(expiry.applied_action, ExpiryAction::Reject);
    // Low risk is no exception to the other rules, and no obstacle either.
    given(vec![submitted_with_risk(Risk::Low)])
        .when(expire_under(&approving_policy()), SCHEDULER, minute(120))
        .then(vec![
            expired(&approving_policy(), ExpiryAction::Approve, 120),
            decided(
                Outcome::ApprovedOnExpiry,
                &[],
                120,
                1,
                original_hash(),
                Some(original_output()),
            ),
        ]);
}

#[test]
fn expire_never_auto_approves_a_k_of_n_item_whatever_the_policy() {
    let rejected_on_expiry = || {
        vec![
            expired(&approving_policy(), ExpiryAction::Reject, 120),
            decided(
                Outcome::RejectedOnExpiry,
                &[],
                120,
                1,
                original_hash(),
                None,
            ),
        ]
    };
    // Four-eyes with no approval yet, and with one of the two: the missing pair of eyes is not
    // supplied by the clock.
    given(vec![submitted_requiring(2)])
        .when(expire_under(&approving_policy()), SCHEDULER, minute(120))
        .then(rejected_on_expiry());
    given(vec![submitted_requiring(2), approved(ALICE, 30, 1, 2)])
        .when(expire_under(&approving_policy()), SCHEDULER, minute(120))
        .then(rejected_on_expiry());
    given(vec![submitted_requiring(MAXIMUM_REQUIRED_APPROVALS)])
        .when(expire_under(&approving_policy()), SCHEDULER, minute(120))
        .then(rejected_on_expiry());
}

#[test]
fn expire_never_approves_content_a_reviewer_asked_to_change() {
    let rejected_on_expiry = |revision| {
        vec![
            expired(&approving_policy(), ExpiryAction::Reject, 120),
            decided(
                Outcome::RejectedOnExpiry,
                &[],
                120,
                revision,
                if revision == 1 {
                    original_hash()
                } else {
                    revised_hash()
                },
                None,
            ),
        ]
    };
    // Waiting for the submitter's revision…
    given(vec![
        submitted(),
        changes_requested(ALICE, "state the amount", 5),
    ])
    .when(expire_under(&approving_policy()), SCHEDULER, minute(120))
    .then(rejected_on_expiry(1));
    // …and revised, but the revision was never reviewed: a reviewer's objection is not answered
    // by the clock either.
    given(vec![
        submitted(),
        changes_requested(ALICE, "state the amount", 5),
        revised(10, None),
    ])
    .when(expire_under(&approving_policy()), SCHEDULER, minute(120))
    .then(rejected_on_expiry(2));
}

#[test]
fn expire_under_an_escalate_policy_moves_the_item_and_clears_its_deadline() {
    let escalating = policy(to_supervisors(), false);
    let state = given(vec![submitted(), claimed(ALICE, 100, 130)])
        .when(expire_under(&escalating), SCHEDULER, minute(120))
        .then(vec![
            expired(&escalating, to_supervisors(), 120),
            escalated(
                SCHEDULER,
                QUEUE,
                "supervisors",
                EXPIRY_ESCALATION_REASON,
                120,
            ),
        ]);
    assert_eq!(state.queue, "supervisors");
    assert_eq!(state.due_at, None);
    assert_eq!(state.claim, None);
    assert_eq!(state.status, ItemStatus::Pending);

    let history_after_escalation = vec![
        submitted(),
        expired(&escalating, to_supervisors(), 120),
        escalated(
            SCHEDULER,
            QUEUE,
            "supervisors",
            EXPIRY_ESCALATION_REASON,
            120,
        ),
    ];
    given(history_after_escalation.clone())
        .when(expire_under(&escalating), SCHEDULER, minute(500))
        .then_error(DomainError::NoDeadline);
    given(history_after_escalation)
        .when(approve(), CAROL, minute(500))
        .then(vec![
            approved(CAROL, 500, 1, 1),
            decided(
                Outcome::Approved,
                &[CAROL],
                500,
                1,
                original_hash(),
                Some(original_output()),
            ),
        ]);
}

#[test]
fn expire_escalates_high_risk_and_k_of_n_items_too_the_hard_rules_guard_approval_only() {
    let escalating = policy(to_supervisors(), false);
    let escalation = || {
        vec![
            expired(&escalating, to_supervisors(), 120),
            escalated(
                SCHEDULER,
                QUEUE,
                "supervisors",
                EXPIRY_ESCALATION_REASON,
                120,
            ),
        ]
    };
    given(vec![submitted_with_risk(Risk::High)])
        .when(expire_under(&escalating), SCHEDULER, minute(120))
        .then(escalation());
    given(vec![submitted_requiring(2)])
        .when(expire_under(&escalating), SCHEDULER, minute(120))
        .then(escalation());
}

#[test]
fn expire_under_a_policy_escalating_to_the_items_own_queue_rejects() {
    // A kind's policy may name the queue an item of that kind already waits in: escalating it
    // there would change nothing but clear its deadline, so the domain rejects instead.
    let to_own_queue = policy(
        ExpiryAction::Escalate {
            queue: QUEUE.to_owned(),
        },
        false,
    );
    given(vec![submitted()])
        .when(expire_under(&to_own_queue), SCHEDULER, minute(120))
        .then(vec![
            expired(&to_own_queue, ExpiryAction::Reject, 120),
            decided(
                Outcome::RejectedOnExpiry,
                &[],
                120,
                1,
                original_hash(),
                None,
            ),
        ]);
}

#[test]
fn expire_before_the_deadline_is_refused() {
    given(vec![submitted()])
        .when(expire_by_default(), SCHEDULER, minute(119))
        .then_error(DomainError::NotDue {
            due_at: minute(120),
        });
}

#[test]
fn expire_of_an_item_without_a_deadline_is_refused() {
    given(vec![submitted_without_deadline()])
        .when(expire_by_default(), SCHEDULER, minute(10_000))
        .then_error(DomainError::NoDeadline);
}

/// The `ItemSubmitted` and `ItemExpired` of an item as the ledger stored them before ADR 0007:
/// the submitter's `on_expiry`, and no `policy`. Written out as stored, not through today's types.
fn stored_before_expiry_policies(on_expiry: &str) -> (String, String) {
    let submitted = format!(
        r#"{{"item_id":"01954a3c-7f00-7000-8000-000000004711","queue":"support-replies","kind":"customer-reply","model":{{"name":"reply-drafter","version":"2025-02-14"}},"revision":1,"output":{{"body":"Your refund of 40 EUR is on its way.","tags":["refund"],"to":"customer@example.com"}},"output_hash":"{}","context":{{"ticket":4711}},"confidence":0.82,"risk":"high","priority":5,"due_at":"2025-03-01T11:00:00Z","required_approvals":2,"on_expiry":{on_expiry},"callback_url":null,"submitted_by":"agent-refunds","submitted_at":"2025-03-01T09:00:00Z"}}"#,
        original_hash()
    );
    let expired = format!(
        r#"{{"due_at":"2025-03-01T11:00:00Z","configured_action":{on_expiry},"applied_action":{on_expiry},"at":"2025-03-01T11:00:02Z"}}"#
    );
    (submitted, expired)
}

#[test]
fn events_stored_with_the_submitters_on_expiry_still_decode_and_fold_as_before() {
    let (submitted_json, expired_json) = stored_before_expiry_policies(r#"{"action":"approve"}"#);
    let submitted = ItemEvent::from_type_and_json("ItemSubmitted", &submitted_json).unwrap();
    let ItemEvent::ItemSubmitted(payload) = &submitted else {
        unreachable!()
    };
    assert_eq!(payload.on_expiry, Some(ExpiryAction::Approve));
    let expired = ItemEvent::from_type_and_json("ItemExpired", &expired_json).unwrap();
    let ItemEvent::ItemExpired(payload) = &expired else {
        unreachable!()
    };
    assert_eq!(payload.policy, None);
    // The item decided on expiry then stays decided as it was: the log is history, not policy.
    let decided_then = ItemEvent::ItemDecided(ItemDecided {
        outcome: Outcome::ApprovedOnExpiry,
        decided_by: Vec::new(),
        revision: 1,
        output_hash: original_hash(),
        final_output: Some(original_output()),
        decided_at: minute(120) + Duration::seconds(2),
    });
    let history = vec![submitted.clone(), expired.clone(), decided_then];
    let state = fold(&history);
    assert_eq!(state.status, ItemStatus::ApprovedOnExpiry);
    let expiry = state.expiry.as_deref().unwrap();
    assert_eq!(expiry.policy, None);
    assert_eq!(expiry.configured_action, ExpiryAction::Approve);
    assert_eq!(expiry.applied_action, ExpiryAction::Approve);
    // The old submission writes back to the bytes stored (the field kept its place and its
    // shape), plus the fields added since as `null` (ADR 0008's `request_fingerprint`); every
    // payload's hand-written JSON is serde_json's; a replay folds the same.
    assert_eq!(
        submitted.to_json().get(),
        format!(
            "{},\"request_fingerprint\":null}}",
            submitted_json.strip_suffix('}').unwrap()
        )
    );
    for event in &history {
        let written = format!(
            r#"{{"type":"{}","data":{}}}"#,
            event.event_type(),
            event.to_json().get()
        );
        assert_eq!(written, serde_json::to_string(event).unwrap());
    }
    assert_eq!(fold(&history), state);
    // Every stored spelling of the old field decodes.
    for on_expiry in [
        r#"{"action":"reject"}"#,
        r#"{"action":"escalate","queue":"supervisors"}"#,
    ] {
        let (submitted_json, expired_json) = stored_before_expiry_policies(on_expiry);
        assert!(ItemEvent::from_type_and_json("ItemSubmitted", &submitted_json).is_ok());
        assert!(ItemEvent::from_type_and_json("ItemExpired", &expired_json).is_ok());
    }
}

#[test]
fn an_item_stored_with_on_expiry_approve_expires_under_the_policy_in_force() {
    // Submitted before ADR 0007 asking for approval on expiry, and still open: the submitter's
    // choice is not honoured. The built-in policy rejects it; so would any policy, since it is
    // high-risk and four-eyes.
    let (submitted_json, _) = stored_before_expiry_policies(r#"{"action":"approve"}"#);
    let submitted = ItemEvent::from_type_and_json("ItemSubmitted", &submitted_json).unwrap();
    for expiry_policy in [ExpiryPolicy::built_in(), approving_policy()] {
        given(vec![submitted.clone()])
            .when(expire_under(&expiry_policy), SCHEDULER, minute(120))
            .then(vec![
                expired(&expiry_policy, ExpiryAction::Reject, 120),
                decided(
                    Outcome::RejectedOnExpiry,
                    &[],
                    120,
                    1,
                    original_hash(),
                    None,
                ),
            ]);
    }
}

#[test]
fn an_expiry_policy_is_checked_on_its_own() {
    assert_eq!(ExpiryPolicy::built_in().validate(), Ok(()));
    assert_eq!(approving_policy().validate(), Ok(()));
    assert_eq!(policy(to_supervisors(), false).validate(), Ok(()));
    let field_of = |policy: ExpiryPolicy| match policy.validate() {
        Err(DomainError::Invalid { field, .. }) => field,
        other => panic!("expected Invalid, got {other:?}"),
    };
    assert_eq!(
        field_of(policy(ExpiryAction::Approve, false)),
        "allow_auto_approval"
    );
    assert_eq!(
        field_of(policy(
            ExpiryAction::Escalate {
                queue: " supervisors".to_owned()
            },
            false
        )),
        "escalate_to"
    );
    assert_eq!(
        field_of(ExpiryPolicy {
            name: String::new(),
            ..ExpiryPolicy::built_in()
        }),
        "name"
    );
    for window in [
        Duration::seconds(-1),
        MAXIMUM_MINIMUM_REVIEW_WINDOW + Duration::seconds(1),
    ] {
        assert_eq!(
            field_of(ExpiryPolicy {
                minimum_review_window: window,
                ..ExpiryPolicy::built_in()
            }),
            "minimum_review_window_seconds"
        );
    }
    assert_eq!(describe_duration(Duration::minutes(5)), "5 minutes");
    assert_eq!(describe_duration(Duration::hours(1)), "1 hour");
    assert_eq!(describe_duration(Duration::seconds(90)), "90 seconds");
    assert_eq!(describe_duration(Duration::days(2)), "2 days");
    assert_eq!(describe_duration(Duration::zero()), "0 seconds");
}

// ---------------------------------------------------------------------------------------------
// Errors, hashes and the event codec
// ---------------------------------------------------------------------------------------------

#[test]
fn every_error_has_a_distinct_rule_and_its_kind() {
    let cases = [
        (
            DomainError::ItemNotFound,
            "item-not-found",
            ErrorKind::NotFound,
        ),
        (
            DomainError::AlreadySubmitted,
            "already-submitted",
            ErrorKind::Conflict,
        ),
        (
            DomainError::AlreadyDecided {
                outcome: Outcome::Approved,
            },
            "already-decided",
            ErrorKind::Conflict,
        ),
        (
            DomainError::AlreadyWithdrawn,
            "already-withdrawn",
            ErrorKind::Conflict,
        ),
        (DomainError::SelfReview, "self-review", ErrorKind::Forbidden),
        (
            DomainError::ClaimedBySomeoneElse {
                holder: ALICE.to_owned(),
                expires_at: minute(1),
            },
            "claimed-by-someone-else",
            ErrorKind::Conflict,
        ),
        (
            DomainError::NotClaimedByYou {
                holder: ALICE.to_owned(),
            },
            "not-claimed-by-you",
            ErrorKind::Forbidden,
        ),
        (DomainError::NoClaim, "no-claim", ErrorKind::RuleBroken),
        (
            DomainError::ClaimStillLive {
                expires_at: minute(1),
            },
            "claim-still-live",
            ErrorKind::RuleBroken,
        ),
        (
            DomainError::AlreadyApprovedByYou,
            "already-approved-by-you",
            ErrorKind::Conflict,
        ),
        (
            DomainError::OutputChanged {
                expected: stale_hash().to_string(),
                current: original_hash().to_string(),
            },
            "output-changed",
            ErrorKind::Conflict,
        ),
        (
            DomainError::NotTheSubmitter,
            "not-the-submitter",
            ErrorKind::Forbidden,
        ),
        (
            DomainError::NoChangesRequested,
            "no-changes-requested",
            ErrorKind::RuleBroken,
        ),
        (
            DomainError::ChangesRequestedPending,
            "changes-requested-pending",
            ErrorKind::RuleBroken,
        ),
        (
            DomainError::NoDeadline,
            "no-deadline",
            ErrorKind::RuleBroken,
        ),
        (
            DomainError::NotDue { due_at: minute(1) },
            "not-due",
            ErrorKind::RuleBroken,
        ),
        (
            DomainError::Invalid {
                field: "queue",
                reason: "must not be empty".to_owned(),
            },
            "invalid",
            ErrorKind::Invalid,
        ),
    ];
    let mut rules = HashSet::new();
    for (error, expected_rule, expected_kind) in cases {
        assert_eq!(error.rule(), expected_rule, "{error:?}");
        assert_eq!(error.kind(), expected_kind, "{error:?}");
        assert!(!error.to_string().is_empty());
        assert!(
            rules.insert(error.rule()),
            "duplicate rule {}",
            error.rule()
        );
    }
}

#[test]
fn output_hash_is_the_sha256_of_the_output_text_as_stored() {
    let sha256_hex = |bytes: &[u8]| {
        Sha256::digest(bytes)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>()
    };
    assert_eq!(
        output_hash(&json!({}).into()),
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
    // Events written before outputs were kept as sent hold serde_json's compact text with sorted
    // keys, and hashed that text: the rule gives those hashes still.
    let from_a_tree = JsonText::from(
        serde_json::from_str::<Value>(r#"{"b": 1, "a": [true, null, {"d": 2, "c": "x"}]}"#)
            .unwrap(),
    );
    assert_eq!(
        from_a_tree.as_str(),
        r#"{"a":[true,null,{"c":"x","d":2}],"b":1}"#
    );
    assert_eq!(
        output_hash(&from_a_tree).to_string(),
        sha256_hex(br#"{"a":[true,null,{"c":"x","d":2}],"b":1}"#)
    );
    // A client's text keeps its key order and number spellings, and its hash is of that text.
    let raw: Box<serde_json::value::RawValue> =
        serde_json::from_str(r#"{ "b": 1.0, "a": 123456789012345678901234567890 }"#).unwrap();
    let sent = JsonText::from_client(&raw).unwrap();
    assert_eq!(
        output_hash(&sent).to_string(),
        sha256_hex(br#"{"b":1.0,"a":123456789012345678901234567890}"#)
    );
    assert_ne!(
        output_hash(&original_output()),
        output_hash(&edited_output())
    );
}

/// One event of every type, for the codec tests.
fn one_event_of_every_type() -> Vec<ItemEvent> {
    vec![
        submitted(),
        claimed(ALICE, 1, 31),
        released(ALICE, 2),
        claim_expired(ALICE, 31, 40),
        approved(ALICE, 5, 1, 2),
        edited(BOB, 6, Some("fixed the amount")),
        rejected(ALICE, "wrong", 7),
        changes_requested(ALICE, "state the amount", 8),
        revised(9, None),
        escalated(ALICE, QUEUE, SENIOR_QUEUE, "above my limit", 10),
        comment_added(CAROL, "looked at it", 11),
        withdrawn(Some("cancelled"), 12),
        expired(&policy(to_supervisors(), false), to_supervisors(), 13),
        ItemEvent::ItemAutoApproved(ItemAutoApproved {
            policy: "customer-replies".into(),
            measurement_id: Uuid::from_u128(7),
            override_rate: 0.0125,
            override_rate_high: 0.041,
            sample: 400,
            target: 0.05,
            sampling_rate: 0.1,
            at: minute(14),
        }),
        decided(
            Outcome::EditedAndApproved,
            &[BOB, ALICE],
            14,
            1,
            edited_hash(),
            Some(edited_output()),
        ),
    ]
}

#[test]
fn every_event_type_round_trips_through_type_and_data() {
    let events = one_event_of_every_type();
    let type_names: Vec<&str> = events.iter().map(ItemEvent::event_type).collect();
    assert_eq!(type_names, ItemEvent::EVENT_TYPES);
    for event in events {
        assert_eq!(event.schema_version(), 1);
        let whole = serde_json::to_value(&event).unwrap();
        assert_eq!(whole["type"], json!(event.event_type()));
        assert_eq!(whole["data"], event.to_data());
        let read_back =
            ItemEvent::from_type_and_data(event.event_type(), &event.to_data()).unwrap();
        assert_eq!(read_back, event);
        let text = serde_json::to_string(&event.to_data()).unwrap();
        let read_from_text = ItemEvent::from_type_and_json(event.event_type(), &text).unwrap();
        assert_eq!(read_from_text, event);
    }
}

#[test]
fn an_output_hash_is_written_and_read_as_64_lowercase_hex_digits_only() {
    let hash = original_hash();
    let text = hash.to_string();
    assert_eq!(text.len(), 64);
    assert_eq!(serde_json::to_value(&hash).unwrap(), json!(text));
    assert_eq!(
        serde_json::from_value::<OutputHash>(json!(text)).unwrap(),
        hash
    );
    assert_eq!(hash, text.as_str());
    assert_ne!(hash, stale_hash().to_string().as_str());
    for malformed in [
        text.to_uppercase(),
        text[..63].to_owned(),
        format!("{text}0"),
        "g".repeat(64),
        "é".repeat(32),
        format!("{}:", &text[..63]),
        format!("/{}", &text[1..]),
    ] {
        assert_eq!(OutputHash::parse(&malformed), None, "{malformed}");
        assert!(serde_json::from_value::<OutputHash>(json!(malformed)).is_err());
        assert_ne!(hash, malformed.as_str());
    }
    // Every byte value, at an even and an odd position, round trips through the hex spelling.
    for value in 0..=255u8 {
        let mut bytes = [0u8; 32];
        bytes[value as usize % 32] = value;
        bytes[31 - value as usize % 32] = value.wrapping_mul(7);
        let parsed = OutputHash::parse(&hex::encode(bytes)).unwrap();
        assert_eq!(parsed.as_bytes(), &bytes);
        assert_eq!(parsed.to_hex(), hex::encode(bytes).as_bytes());
    }
    // A stored event whose hash is malformed does not decode (the read model never guesses one).
    let mut data = approved(ALICE, 5, 1, 1).to_data();
    data["output_hash"] = json!("not a hash");
    assert!(matches!(
        ItemEvent::from_type_and_data("OutputApproved", &data),
        Err(EventDecodingError::MalformedData { .. })
    ));
}

#[test]
fn an_unknown_event_type_or_malformed_data_is_a_decoding_error() {
    assert!(matches!(
        ItemEvent::from_type_and_data("ItemTeleported", &json!({})),
        Err(EventDecodingError::UnknownEventType { event_type }) if event_type == "ItemTeleported"
    ));
    assert!(matches!(
        ItemEvent::from_type_and_data("ItemClaimed", &json!({"reviewer": 7})),
        Err(EventDecodingError::MalformedData {
            event_type: "ItemClaimed",
            ..
        })
    ));
    assert!(matches!(
        ItemEvent::from_type_and_json("ItemTeleported", "{}"),
        Err(EventDecodingError::UnknownEventType { event_type }) if event_type == "ItemTeleported"
    ));
    for malformed in [r#"{"reviewer": 7}"#, "{", "null"] {
        assert!(matches!(
            ItemEvent::from_type_and_json("ItemClaimed", malformed),
            Err(EventDecodingError::MalformedData {
                event_type: "ItemClaimed",
                ..
            })
        ));
    }
}

#[test]
fn the_wire_names_of_enums_are_snake_case() {
    let data = submitted().to_data();
    assert_eq!(data["risk"], json!("normal"));
    assert_eq!(data["on_expiry"], Value::Null);
    assert_eq!(
        serde_json::to_value(ExpiryAction::Escalate {
            queue: "supervisors".to_owned()
        })
        .unwrap(),
        json!({"action": "escalate", "queue": "supervisors"})
    );
    assert_eq!(
        serde_json::to_value(Outcome::EditedAndApproved).unwrap(),
        json!("edited_and_approved")
    );
}

// ---------------------------------------------------------------------------------------------
// Property tests: random command sequences through the decide/evolve loop
// ---------------------------------------------------------------------------------------------

/// The actors of the random runs: the submitter among them, so that self-review is attempted often.
const ACTORS: [&str; 4] = [SUBMITTER, ALICE, BOB, SCHEDULER];
const QUEUES: [&str; 3] = [QUEUE, SENIOR_QUEUE, "supervisors"];

fn candidate_outputs() -> [JsonText; 3] {
    [original_output(), edited_output(), revised_output()]
}

/// Which hash a decision claims to have seen; resolved against the state when the step runs.
#[derive(Debug, Clone, Copy)]
enum SeenHash {
    NotSent,
    Current,
    Stale,
}

impl SeenHash {
    fn resolve(self, state: &ItemState) -> Option<String> {
        match self {
            SeenHash::NotSent => None,
            SeenHash::Current => Some(state.output_hash.to_string()),
            SeenHash::Stale => Some(stale_hash().to_string()),
        }
    }
}

/// A command chosen without knowing the state; [`CommandChoice::to_command`] fills in what depends on it.
#[derive(Debug, Clone)]
enum CommandChoice {
    Submit {
        confidence: Option<f64>,
        priority: i32,
        required_approvals: u32,
        due_in_minutes: Option<i64>,
        risk: Risk,
    },
    Claim {
        lease_minutes: i64,
    },
    Release,
    Approve {
        seen: SeenHash,
    },
    EditAndApprove {
        output_choice: usize,
        seen: SeenHash,
    },
    Reject {
        reason: &'static str,
        seen: SeenHash,
    },
    RequestChanges {
        seen: SeenHash,
    },
    Revise {
        output_choice: usize,
    },
    Escalate {
        queue_choice: usize,
    },
    Comment,
    Withdraw,
    Expire {
        policy_choice: usize,
    },
    ExpireClaim,
}

impl CommandChoice {
    fn to_command(&self, state: &ItemState, now: DateTime<Utc>) -> Command {
        match self {
            CommandChoice::Submit {
                confidence,
                priority,
                required_approvals,
                due_in_minutes,
                risk,
            } => Command::Submit(Submission {
                risk: *risk,
                confidence: *confidence,
                priority: *priority,
                required_approvals: *required_approvals,
                due_at: due_in_minutes.map(|minutes| now + Duration::minutes(minutes)),
                ..submission()
            }),
            CommandChoice::Claim { lease_minutes } => claim_for_minutes(*lease_minutes),
            CommandChoice::Release => Command::Release,
            CommandChoice::Approve { seen } => Command::Approve {
                seen_output_hash: seen.resolve(state),
            },
            CommandChoice::EditAndApprove {
                output_choice,
                seen,
            } => Command::EditAndApprove {
                edited_output: candidate_outputs()[*output_choice].clone(),
                note: None,
                seen_output_hash: seen.resolve(state),
            },
            CommandChoice::Reject { reason, seen } => Command::Reject {
                reason: (*reason).to_owned(),
                seen_output_hash: seen.resolve(state),
            },
            CommandChoice::RequestChanges { seen } => Command::RequestChanges {
                instructions: "state the amount".to_owned(),
                seen_output_hash: seen.resolve(state),
            },
            CommandChoice::Revise { output_choice } => {
                revise(candidate_outputs()[*output_choice].clone())
            }
            CommandChoice::Escalate { queue_choice } => {
                escalate(QUEUES[*queue_choice], "needs another look")
            }
            CommandChoice::Comment => comment("a remark"),
            CommandChoice::Withdraw => Command::Withdraw { reason: None },
            CommandChoice::Expire { policy_choice } => expire_under(&match policy_choice {
                0 => ExpiryPolicy::built_in(),
                1 => approving_policy(),
                2 => policy(ExpiryAction::Approve, false),
                _ => policy(to_supervisors(), false),
            }),
            CommandChoice::ExpireClaim => Command::ExpireClaim,
        }
    }
}

fn seen_hash_strategy() -> impl Strategy<Value = SeenHash> {
    prop_oneof![
        3 => Just(SeenHash::NotSent),
        3 => Just(SeenHash::Current),
        1 => Just(SeenHash::Stale),
    ]
}

fn submit_choice_strategy() -> impl Strategy<Value = CommandChoice> {
    (
        prop::option::of(0.0..=1.0f64),
        any::<i32>(),
        1u32..=3,
        prop::option::of(1i64..=300),
        prop_oneof![Just(Risk::Low), Just(Risk::Normal), Just(Risk::High)],
    )
        .prop_map(
            |(confidence, priority, required_approvals, due_in_minutes, risk)| {
                CommandChoice::Submit {
                    confidence,
                    priority,
                    required_approvals,
                    due_in_minutes,
                    risk,
                }
            },
        )
}

fn command_choice_strategy() -> impl Strategy<Value = CommandChoice> {
    prop_oneof![
        1 => submit_choice_strategy(),
        4 => prop_oneof![1i64..=60, Just(0i64), Just(24 * 60 + 1)]
            .prop_map(|lease_minutes| CommandChoice::Claim { lease_minutes }),
        2 => Just(CommandChoice::Release),
        5 => seen_hash_strategy().prop_map(|seen| CommandChoice::Approve { seen }),
        3 => (0usize..3, seen_hash_strategy())
            .prop_map(|(output_choice, seen)| CommandChoice::EditAndApprove { output_choice, seen }),
        2 => (prop_oneof![Just("wrong amount"), Just("")], seen_hash_strategy())
            .prop_map(|(reason, seen)| CommandChoice::Reject { reason, seen }),
        2 => seen_hash_strategy().prop_map(|seen| CommandChoice::RequestChanges { seen }),
        3 => (0usize..3).prop_map(|output_choice| CommandChoice::Revise { output_choice }),
        1 => (0usize..3).prop_map(|queue_choice| CommandChoice::Escalate { queue_choice }),
        2 => Just(CommandChoice::Comment),
        1 => Just(CommandChoice::Withdraw),
        2 => (0usize..4).prop_map(|policy_choice| CommandChoice::Expire { policy_choice }),
        2 => Just(CommandChoice::ExpireClaim),
    ]
}

/// One step of a random run: a command, who sends it, and how many minutes pass before it.
#[derive(Debug, Clone)]
struct Step {
    choice: CommandChoice,
    actor: &'static str,
    minutes_later: i64,
}

fn step_strategy() -> impl Strategy<Value = Step> {
    (command_choice_strategy(), 0usize..ACTORS.len(), 0i64..=45).prop_map(
        |(choice, actor_index, minutes_later)| Step {
            choice,
            actor: ACTORS[actor_index],
            minutes_later,
        },
    )
}

/// A run opens with the submitter's submission most of the time, so that most steps meet an existing item.
fn run_strategy() -> impl Strategy<Value = Vec<Step>> {
    (
        prop::option::weighted(0.9, submit_choice_strategy()),
        prop::collection::vec(step_strategy(), 0..40),
    )
        .prop_map(|(opening_submission, steps)| {
            opening_submission
                .map(|choice| Step {
                    choice,
                    actor: SUBMITTER,
                    minutes_later: 0,
                })
                .into_iter()
                .chain(steps)
                .collect()
        })
}

/// What a run looked like right after one step.
struct StepOutcome<'run> {
    state: &'run ItemState,
    history: &'run [ItemEvent],
    new_events: &'run [ItemEvent],
}

/// Runs `steps` through decide and evolve, calling `check` after every step.
fn run(
    steps: &[Step],
    mut check: impl FnMut(StepOutcome<'_>) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    let mut state = ItemState::default();
    let mut history: Vec<ItemEvent> = Vec::new();
    let mut now = minute(0);
    for step in steps {
        now += Duration::minutes(step.minutes_later);
        let command = step.choice.to_command(&state, now);
        let new_events = match decide(&state, &command, &CommandContext::new(step.actor, now)) {
            Ok(events) => {
                prop_assert!(!events.is_empty(), "{command:?} succeeded without an event");
                events
            }
            Err(_refused) => Vec::new(),
        };
        for event in &new_events {
            state = evolve(state, event);
        }
        let first_new = history.len();
        history.extend(new_events);
        check(StepOutcome {
            state: &state,
            history: &history,
            new_events: &history[first_new..],
        })?;
    }
    Ok(())
}

/// Fixed seed and case count: the same sequences on every machine and every run, and nothing written to disk.
fn property_config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        rng_seed: RngSeed::Fixed(0x1ed6_e5ed),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(property_config())]

    #[test]
    fn the_evolved_state_equals_the_fold_of_the_history(steps in run_strategy()) {
        run(&steps, |outcome| {
            prop_assert_eq!(outcome.state, &fold(outcome.history));
            prop_assert_eq!(outcome.state.event_count, outcome.history.len() as u64);
            Ok(())
        })?;
    }

    #[test]
    fn folding_is_deterministic(steps in run_strategy()) {
        run(&steps, |outcome| {
            prop_assert_eq!(fold(outcome.history), fold(outcome.history));
            Ok(())
        })?;
    }

    #[test]
    fn no_sequence_of_commands_decides_an_item_twice(steps in run_strategy()) {
        run(&steps, |outcome| {
            let terminal_positions: Vec<usize> = outcome
                .history
                .iter()
                .enumerate()
                .filter(|(_, event)| event.is_terminal())
                .map(|(position, _)| position)
                .collect();
            prop_assert!(terminal_positions.len() <= 1, "ended twice: {:?}", outcome.history);
            if let Some(&terminal_position) = terminal_positions.first() {
                for later in &outcome.history[terminal_position + 1..] {
                    prop_assert!(
                        matches!(later, ItemEvent::CommentAdded(_)),
                        "{later:?} after the item ended"
                    );
                }
                prop_assert!(outcome.state.is_closed());
            }
            Ok(())
        })?;
    }

    #[test]
    fn the_submitter_never_reviews_and_approvals_come_from_distinct_reviewers(steps in run_strategy()) {
        run(&steps, |outcome| {
            for event in outcome.new_events {
                let reviewer = match event {
                    ItemEvent::ItemClaimed(claimed) => Some(&claimed.reviewer),
                    ItemEvent::OutputApproved(approved) => Some(&approved.reviewer),
                    ItemEvent::OutputEdited(edited) => Some(&edited.reviewer),
                    ItemEvent::OutputRejected(rejected) => Some(&rejected.reviewer),
                    ItemEvent::ChangesRequested(requested) => Some(&requested.reviewer),
                    _ => None,
                };
                // Whoever submitted (the opening step, or a later Submit when the run opens without one).
                let submitter = outcome.state.submitted_by.as_str();
                prop_assert_ne!(reviewer.map(String::as_str), Some(submitter));
                if let ItemEvent::ItemDecided(decision) = event {
                    let distinct: HashSet<&String> = decision.decided_by.iter().collect();
                    prop_assert_eq!(distinct.len(), decision.decided_by.len());
                    prop_assert!(!decision.decided_by.iter().any(|name| name == submitter));
                    prop_assert_eq!(&decision.output_hash, &outcome.state.output_hash);
                    if matches!(decision.outcome, Outcome::Approved | Outcome::EditedAndApproved) {
                        prop_assert_eq!(
                            decision.decided_by.len() as u32,
                            outcome.state.required_approvals
                        );
                    }
                }
            }
            Ok(())
        })?;
    }

    #[test]
    fn nothing_high_risk_k_of_n_or_sent_back_for_changes_is_ever_approved_on_expiry(steps in run_strategy()) {
        run(&steps, |outcome| {
            for event in outcome.new_events {
                if let ItemEvent::ItemDecided(decision) = event
                    && decision.outcome == Outcome::ApprovedOnExpiry
                {
                    let state = outcome.state;
                    prop_assert_ne!(state.risk, Risk::High);
                    prop_assert_eq!(state.required_approvals, 1);
                    prop_assert!(state.change_requests.is_empty());
                    let expiry = state.expiry.as_deref().unwrap();
                    prop_assert_eq!(expiry.policy.as_deref(), Some("approve-on-expiry"));
                }
            }
            Ok(())
        })?;
    }

    #[test]
    fn the_hand_written_json_of_every_state_and_event_is_serde_jsons(steps in run_strategy()) {
        run(&steps, |outcome| {
            let mut written = Vec::new();
            outcome.state.write_json(&mut written);
            prop_assert_eq!(String::from_utf8(written).unwrap(), serde_json::to_string(outcome.state).unwrap());
            for event in outcome.new_events {
                // The adjacently tagged event is `{"type":…,"data":payload}`, its payload as serde_json writes it.
                let written = format!(r#"{{"type":"{}","data":{}}}"#, event.event_type(), event.to_json().get());
                prop_assert_eq!(written, serde_json::to_string(event).unwrap());
            }
            Ok(())
        })?;
    }

    #[test]
    fn every_event_round_trips_through_type_and_data(steps in run_strategy()) {
        run(&steps, |outcome| {
            for event in outcome.new_events {
                prop_assert_eq!(event.schema_version(), ITEM_EVENT_SCHEMA_VERSION);
                let read_back = ItemEvent::from_type_and_data(event.event_type(), &event.to_data());
                // Exact through a `Value`. Through JSON text it is exact only with serde_json's
                // `float_roundtrip` feature: without it, parsing may move an f64 (a confidence, a
                // number in an output) by one unit in the last place. That is the log's concern.
                prop_assert_eq!(read_back.ok(), Some(event.clone()));
                // And through the stored JSON text, as the shell decodes (serde_json's `float_roundtrip` is on).
                let text = serde_json::to_string(&event.to_data()).unwrap();
                prop_assert_eq!(ItemEvent::from_type_and_json(event.event_type(), &text).ok(), Some(event.clone()));
            }
            Ok(())
        })?;
    }
}

/// Every optional part filled, text that needs escaping everywhere a person or agent writes text,
/// and timestamps only chrono writes (a year past 9999, a leap second): the hand-written JSON is
/// still serde_json's.
#[test]
fn the_hand_written_json_of_a_full_state_is_serde_jsons() {
    let tricky = "quote \" backslash \\ newline \n tab \t bell \u{7} ü 😀 </script>";
    let at = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap();
    let far = Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap();
    let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
        .unwrap()
        .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
        .unwrap()
        .and_utc();
    let hash = output_hash(&json!({"a": 1}).into());
    let text = JsonText::from_value(&json!({"text": tricky, "n": [1.5, -2, null, true]}));
    let state = ItemState {
        status: ItemStatus::EditedAndApproved,
        id: Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
        queue: tricky.into(),
        kind: "kind\u{1f}".into(),
        model: ModelIdentity {
            name: tricky.into(),
            version: "v\"2".into(),
        },
        submitted_by: "agent \\ x".into(),
        submitted_at: far,
        output: text.clone(),
        output_hash: hash.clone(),
        revision: u32::MAX,
        output_edited_by: Some(tricky.into()),
        revisions: vec![Revision {
            revision: 1,
            output: text.clone(),
            output_hash: hash.clone(),
            note: Some(tricky.into()),
            at: leap,
        }],
        edits: thin_vec![Edit {
            reviewer: tricky.into(),
            revision: 2,
            output: text.clone(),
            output_hash: hash.clone(),
            previous_output_hash: hash.clone(),
            note: None,
            at,
        }],
        context: JsonText::from_value(&json!(null)),
        confidence: Some(0.1 + 0.2),
        risk: Risk::High,
        priority: i32::MIN,
        due_at: Some(at),
        required_approvals: 3,
        callback_url: Some("https://example.test/cb?a=\"b\"".into()),
        claim: Some(Box::new(Claim {
            reviewer: tricky.into(),
            claimed_at: at,
            expires_at: far,
        })),
        first_claimed_at: Some(at),
        approvals: thin_vec![Approval {
            reviewer: "r1".into(),
            at,
        }],
        change_requests: thin_vec![ChangeRequest {
            reviewer: "r2".into(),
            instructions: tricky.into(),
            revision: 1,
            output_hash: hash.clone(),
            at,
        }],
        escalations: thin_vec![Escalation {
            by: "r3".into(),
            from_queue: "a".into(),
            to_queue: tricky.into(),
            reason: tricky.into(),
            at,
        }],
        comments: thin_vec![Comment {
            author: tricky.into(),
            text: tricky.into(),
            at,
        }],
        rejection: Some(Box::new(Rejection {
            reviewer: "r4".into(),
            reason: tricky.into(),
            at,
        })),
        withdrawal: Some(Box::new(Withdrawal {
            by: "agent".into(),
            reason: Some(tricky.into()),
            at,
        })),
        expiry: Some(Box::new(Expiry {
            due_at: at,
            policy: Some(tricky.into()),
            configured_action: ExpiryAction::Approve,
            applied_action: ExpiryAction::Reject,
            at,
        })),
        decision: Some(Box::new(Decision {
            outcome: Outcome::EditedAndApproved,
            decided_by: vec!["r1".into(), tricky.into()],
            revision: 2,
            output_hash: hash.clone(),
            final_output: Some(text),
            decided_at: at,
        })),
        event_count: u64::MAX,
        last_event_at: Some(leap),
    };
    let mut written = Vec::new();
    state.write_json(&mut written);
    assert_eq!(
        String::from_utf8(written).unwrap(),
        serde_json::to_string(&state).unwrap()
    );
    // And the default (nothing submitted), every list empty and every option null.
    let mut written = Vec::new();
    ItemState::default().write_json(&mut written);
    assert_eq!(
        String::from_utf8(written).unwrap(),
        serde_json::to_string(&ItemState::default()).unwrap()
    );
    // Each status, risk and outcome by its serde name.
    for status in [
        ItemStatus::NotSubmitted,
        ItemStatus::Pending,
        ItemStatus::ChangesRequested,
        ItemStatus::Approved,
        ItemStatus::EditedAndApproved,
        ItemStatus::Rejected,
        ItemStatus::ApprovedOnExpiry,
        ItemStatus::RejectedOnExpiry,
        ItemStatus::Withdrawn,
    ] {
        for risk in [Risk::Low, Risk::Normal, Risk::High] {
            let state = ItemState {
                status,
                risk,
                ..ItemState::default()
            };
            let mut written = Vec::new();
            state.write_json(&mut written);
            assert_eq!(written, serde_json::to_vec(&state).unwrap());
        }
    }
    for outcome in [
        Outcome::Approved,
        Outcome::EditedAndApproved,
        Outcome::Rejected,
        Outcome::ApprovedOnExpiry,
        Outcome::RejectedOnExpiry,
    ] {
        let state = ItemState {
            decision: Some(Box::new(Decision {
                outcome,
                decided_by: Vec::new(),
                revision: 0,
                output_hash: hash.clone(),
                final_output: None,
                decided_at: at,
            })),
            ..ItemState::default()
        };
        let mut written = Vec::new();
        state.write_json(&mut written);
        assert_eq!(written, serde_json::to_vec(&state).unwrap());
    }
}

/// Every event type with text that needs escaping and optional parts filled: the hand-written
/// payload JSON is serde_json's.
#[test]
fn the_hand_written_json_of_every_event_with_escapes_is_serde_jsons() {
    let tricky = "quote \" backslash \\ newline \n tab \t bell \u{7} ü 😀".to_owned();
    let at = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap();
    let far = Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap();
    let output = json!({"text": tricky, "n": [1.5, -2, null, true], "nested": {"b": 1, "a": 2}});
    let output = JsonText::from(output);
    let hash = output_hash(&output);
    let events = [
        ItemEvent::ItemSubmitted(ItemSubmitted {
            item_id: Uuid::from_u128(7),
            queue: tricky.clone(),
            kind: tricky.clone(),
            model: ModelIdentity {
                name: tricky.as_str().into(),
                version: "v\"1".into(),
            },
            revision: 1,
            output: output.clone(),
            output_hash: hash.clone(),
            context: json!([tricky]).into(),
            confidence: Some(0.1 + 0.2),
            risk: Risk::Low,
            priority: -5,
            due_at: Some(far),
            required_approvals: 2,
            on_expiry: Some(ExpiryAction::Escalate {
                queue: tricky.clone(),
            }),
            callback_url: Some(tricky.clone()),
            submitted_by: tricky.clone(),
            submitted_at: at,
            request_fingerprint: Some(hash.clone()),
        }),
        ItemEvent::ItemClaimed(ItemClaimed {
            reviewer: tricky.clone(),
            claimed_at: at,
            expires_at: far,
        }),
        ItemEvent::ClaimReleased(ClaimReleased {
            reviewer: tricky.clone(),
            at,
        }),
        ItemEvent::ClaimExpired(ClaimExpired {
            reviewer: tricky.clone(),
            expired_at: at,
            at,
        }),
        ItemEvent::OutputApproved(OutputApproved {
            reviewer: tricky.clone(),
            revision: 3,
            output_hash: hash.clone(),
            approvals: 1,
            required_approvals: 2,
            at,
        }),
        ItemEvent::OutputEdited(OutputEdited {
            reviewer: tricky.clone(),
            revision: 3,
            edited_output: output.clone(),
            output_hash: hash.clone(),
            previous_output_hash: hash.clone(),
            note: Some(tricky.clone()),
            at,
        }),
        ItemEvent::OutputRejected(OutputRejected {
            reviewer: tricky.clone(),
            reason: tricky.clone(),
            revision: 3,
            output_hash: hash.clone(),
            at,
        }),
        ItemEvent::ChangesRequested(ChangesRequested {
            reviewer: tricky.clone(),
            instructions: tricky.clone(),
            revision: 3,
            output_hash: hash.clone(),
            at,
        }),
        ItemEvent::OutputRevised(OutputRevised {
            revised_by: tricky.clone(),
            revision: 4,
            output: output.clone(),
            output_hash: hash.clone(),
            previous_output_hash: hash.clone(),
            note: None,
            at,
        }),
        ItemEvent::ItemEscalated(ItemEscalated {
            by: tricky.clone(),
            from_queue: tricky.clone(),
            to_queue: tricky.clone(),
            reason: tricky.clone(),
            at,
        }),
        ItemEvent::CommentAdded(CommentAdded {
            author: tricky.clone(),
            text: tricky.clone(),
            at,
        }),
        ItemEvent::ItemWithdrawn(ItemWithdrawn {
            by: tricky.clone(),
            reason: Some(tricky.clone()),
            at,
        }),
        ItemEvent::ItemExpired(ItemExpired {
            due_at: at,
            policy: Some(tricky.clone()),
            configured_action: ExpiryAction::Escalate {
                queue: tricky.clone(),
            },
            applied_action: ExpiryAction::Approve,
            at: far,
        }),
        ItemEvent::ItemAutoApproved(ItemAutoApproved {
            policy: tricky.clone(),
            measurement_id: Uuid::from_u128(u128::MAX),
            override_rate: 0.1 + 0.2,
            override_rate_high: 1e-300,
            sample: u64::MAX,
            target: 0.05,
            sampling_rate: 1.0,
            at,
        }),
        ItemEvent::ItemDecided(ItemDecided {
            outcome: Outcome::EditedAndApproved,
            decided_by: vec![tricky.clone(), "r2".into()],
            revision: 4,
            output_hash: hash.clone(),
            final_output: Some(output.clone()),
            decided_at: at,
        }),
    ];
    assert_eq!(
        events.len(),
        ItemEvent::EVENT_TYPES.len(),
        "one of each type"
    );
    for event in &events {
        let written = format!(
            r#"{{"type":"{}","data":{}}}"#,
            event.event_type(),
            event.to_json().get()
        );
        assert_eq!(written, serde_json::to_string(event).unwrap());
    }
}

// ---------------------------------------------------------------------------------------------
// Outputs kept as sent, and the submission fingerprint
// ---------------------------------------------------------------------------------------------

/// A client's output text as the HTTP edge makes it.
fn sent(text: &str) -> JsonText {
    let raw: Box<serde_json::value::RawValue> = serde_json::from_str(text).unwrap();
    JsonText::from_client(&raw).unwrap()
}

#[test]
fn an_output_is_stored_decided_and_hashed_as_the_text_sent() {
    let output = sent(
        r#"{"amount": 123456789012345678901234567890, "tiny": 1e-400, "one": 1.0, "zero": -0, "pi": 3.14159265358979323846264338327950288}"#,
    );
    let exact = r#"{"amount":123456789012345678901234567890,"tiny":1e-400,"one":1.0,"zero":-0,"pi":3.14159265358979323846264338327950288}"#;
    let edit = sent(r#"{"amount": 1E+400}"#);
    let events = given(vec![])
        .when(
            Command::Submit(submission_with(|submission| {
                submission.output = output.clone();
                submission.context = sent(r#"[0.10, 1e999]"#);
            })),
            SUBMITTER,
            minute(0),
        )
        .result
        .unwrap();
    let ItemEvent::ItemSubmitted(submitted_event) = &events[0] else {
        panic!("a submission: {events:?}")
    };
    assert_eq!(submitted_event.output.as_str(), exact);
    assert_eq!(submitted_event.context.as_str(), "[0.10,1e999]");
    assert_eq!(
        submitted_event.output_hash,
        OutputHash(Sha256::digest(exact.as_bytes()).into())
    );
    // Through the stored text and back, and folded: the same bytes everywhere.
    let stored = events[0].to_json();
    assert!(stored.get().contains(exact), "{}", stored.get());
    let decoded = ItemEvent::from_type_and_json("ItemSubmitted", stored.get()).unwrap();
    assert_eq!(decoded, events[0]);
    let history = vec![decoded, claimed(ALICE, 1, 31)];
    let decided = given(history)
        .when(edit_and_approve(edit.clone()), ALICE, minute(2))
        .result
        .unwrap();
    let state = fold(&[&events[..], &decided[..]].concat());
    assert_eq!(state.revisions[0].output.as_str(), exact);
    assert_eq!(state.output.as_str(), r#"{"amount":1E+400}"#);
    let decision = state.decision.expect("decided by the edit");
    assert_eq!(
        decision
            .final_output
            .map(|output| output.as_str().to_owned()),
        Some(r#"{"amount":1E+400}"#.to_owned())
    );
    assert_eq!(decision.output_hash, output_hash(&edit));
}

#[test]
fn an_item_submitted_before_outputs_were_kept_as_sent_decodes_and_folds_as_it_did() {
    // The stored form of an ItemSubmitted written before this change: no request fingerprint,
    // the output as serde_json's compact text with sorted keys, hashed as that text.
    let stored = r#"{"item_id":"0195a3c7-0000-7000-8000-000000000001","queue":"support","kind":"reply","model":{"name":"m","version":"1"},"revision":1,"output":{"a":1.2345678901234568e+29,"b":"x"},"output_hash":"3c8c6bf4bd0ed6b4a3e8ba7e83b4fe8bbd9c63e2b69d9a1fb6e7c2d1f7a3ea9c","context":{},"confidence":null,"risk":"normal","priority":0,"due_at":null,"required_approvals":1,"on_expiry":{"action":"reject"},"callback_url":null,"submitted_by":"agent","submitted_at":"2026-11-24T09:00:00Z"}"#;
    let event = ItemEvent::from_type_and_json("ItemSubmitted", stored).unwrap();
    let ItemEvent::ItemSubmitted(submitted_event) = &event else {
        panic!("{event:?}")
    };
    assert_eq!(submitted_event.request_fingerprint, None);
    assert_eq!(
        submitted_event.output.as_str(),
        r#"{"a":1.2345678901234568e+29,"b":"x"}"#
    );
    let state = fold(std::slice::from_ref(&event));
    // What the old fold held: the stored output read into a tree and written again.
    let old_fold_output: Value =
        serde_json::from_str(r#"{"a":1.2345678901234568e+29,"b":"x"}"#).unwrap();
    assert_eq!(state.output, JsonText::from_value(&old_fold_output));
    assert_eq!(state.context.as_str(), "{}");
}

#[test]
fn a_submission_records_its_fingerprint_which_ignores_spelling_but_not_content() {
    let events = given(vec![])
        .when(Command::Submit(submission()), SUBMITTER, minute(0))
        .result
        .unwrap();
    let ItemEvent::ItemSubmitted(submitted_event) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(
        submitted_event.request_fingerprint,
        Some(submission_fingerprint(&submission()))
    );
    let respaced = submission_with(|submission| {
        submission.output = sent(&format!(" {} ", submission.output.as_str()));
    });
    assert_eq!(
        submission_fingerprint(&respaced),
        submission_fingerprint(&submission())
    );
    for different in [
        submission_with(|submission| submission.output = sent(r#"{"body": "other"}"#)),
        submission_with(|submission| submission.context = sent("{}")),
        submission_with(|submission| submission.priority += 1),
        submission_with(|submission| submission.confidence = Some(0.83)),
        submission_with(|submission| submission.queue = "elsewhere".into()),
        submission_with(|submission| submission.callback_url = None),
    ] {
        assert_ne!(
            submission_fingerprint(&different),
            submission_fingerprint(&submission()),
            "{different:?}"
        );
    }
}

#[test]
fn a_lease_must_be_more_than_zero_and_at_most_a_day() {
    for lease in [
        Duration::zero(),
        Duration::seconds(-1),
        Duration::MIN,
        MAXIMUM_CLAIM_LEASE + Duration::seconds(1),
        Duration::MAX,
    ] {
        given(vec![submitted()])
            .when(Command::Claim { lease }, ALICE, minute(1))
            .then_invalid("lease");
    }
    for lease in [Duration::seconds(1), MAXIMUM_CLAIM_LEASE] {
        let result = given(vec![submitted()])
            .when(Command::Claim { lease }, ALICE, minute(1))
            .result;
        assert!(result.is_ok(), "{lease}: {result:?}");
    }
}

fn auto_approval() -> Arc<AutoApproval> {
    Arc::new(AutoApproval {
        policy: "customer-reply".into(),
        measurement_id: Uuid::from_u128(42),
        override_rate: 0.01,
        override_rate_high: 0.03,
        sample: 500,
        target: 0.05,
        sampling_rate: 0.2,
    })
}

#[test]
fn a_submission_with_a_review_policys_evidence_is_approved_at_once_naming_it() {
    let submission = submission_with(|s| s.auto_approval = Some(auto_approval()));
    let state = given(vec![])
        .when(Command::Submit(submission.clone()), SUBMITTER, minute(0))
        .then(vec![
            submitted_from(&submission),
            ItemEvent::ItemAutoApproved(ItemAutoApproved {
                policy: "customer-reply".into(),
                measurement_id: Uuid::from_u128(42),
                override_rate: 0.01,
                override_rate_high: 0.03,
                sample: 500,
                target: 0.05,
                sampling_rate: 0.2,
                at: minute(0),
            }),
            ItemEvent::ItemDecided(ItemDecided {
                outcome: Outcome::AutoApproved,
                decided_by: vec![],
                revision: 1,
                output_hash: original_hash(),
                final_output: Some(original_output()),
                decided_at: minute(0),
            }),
        ]);
    assert_eq!(state.status, ItemStatus::AutoApproved);
    assert!(state.is_closed());
}

#[test]
fn a_high_risk_item_is_never_approved_automatically() {
    let submission = submission_with(|s| {
        s.auto_approval = Some(auto_approval());
        s.risk = Risk::High;
    });
    let state = given(vec![])
        .when(Command::Submit(submission.clone()), SUBMITTER, minute(0))
        .then(vec![submitted_from(&submission)]);
    assert_eq!(state.status, ItemStatus::Pending);
}
