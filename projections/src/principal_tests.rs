//! Tests of principals: given events, when a command, then events or an error; the fold, token lookup and the event codec.

use chrono::{Duration, TimeZone};
use serde_json::json;

use super::*;

// ---------------------------------------------------------------------------------------------
// The given/when/then harness
// ---------------------------------------------------------------------------------------------

struct Given {
    history: Vec<PrincipalEvent>,
}

struct When {
    result: Result<Vec<PrincipalEvent>, PrincipalError>,
}

fn given(history: Vec<PrincipalEvent>) -> Given {
    Given { history }
}

impl Given {
    fn when(self, command: PrincipalCommand, actor: &str, now: DateTime<Utc>) -> When {
        let state = fold(&self.history);
        When {
            result: decide(&state, &command, &CommandContext::new(actor, now)),
        }
    }
}

impl When {
    #[track_caller]
    fn then(self, expected_events: Vec<PrincipalEvent>) {
        assert_eq!(self.result, Ok(expected_events));
    }

    #[track_caller]
    fn then_error(self, expected_error: PrincipalError) {
        assert_eq!(self.result, Err(expected_error));
    }

    /// Asserts an `Invalid` error on `expected_field`, whatever the wording of its reason.
    #[track_caller]
    fn then_invalid(self, expected_field: &str) {
        match self.result {
            Err(PrincipalError::Invalid { field, .. }) if field == expected_field => {}
            other => panic!("expected Invalid on {expected_field}, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

const ROOT: &str = "root";
const ALICE: &str = "alice";
const AGENT: &str = "agent-refunds";
const QUEUE: &str = "support-replies";

/// Minutes after a fixed instant: tests never read a clock.
fn minute(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 9, 0, 0).unwrap() + Duration::minutes(minutes)
}

fn root_token_hash() -> String {
    token_hash("root-token-0f8e1c")
}

fn alice_token_hash() -> String {
    token_hash("alice-token-7d2a9b")
}

fn alice_new_token_hash() -> String {
    token_hash("alice-token-rotated-31c5")
}

fn agent_token_hash() -> String {
    token_hash("agent-token-c44e02")
}

fn root_added() -> PrincipalEvent {
    PrincipalEvent::PrincipalAdded(PrincipalAdded {
        name: ROOT.to_owned(),
        role: Role::Admin,
        queues: vec![],
        token_hash: root_token_hash(),
        added_by: CommandContext::SCHEDULER.to_owned(),
        added_at: minute(0),
    })
}

fn alice_added() -> PrincipalEvent {
    PrincipalEvent::PrincipalAdded(PrincipalAdded {
        name: ALICE.to_owned(),
        role: Role::Reviewer,
        queues: vec![QUEUE.to_owned()],
        token_hash: alice_token_hash(),
        added_by: ROOT.to_owned(),
        added_at: minute(1),
    })
}

fn alice_revoked() -> PrincipalEvent {
    PrincipalEvent::PrincipalRevoked(PrincipalRevoked {
        name: ALICE.to_owned(),
        revoked_by: ROOT.to_owned(),
        revoked_at: minute(2),
    })
}

fn add_alice() -> PrincipalCommand {
    PrincipalCommand::AddPrincipal {
        name: ALICE.to_owned(),
        role: Role::Reviewer,
        queues: vec![QUEUE.to_owned()],
        token_hash: alice_token_hash(),
    }
}

fn add_alice_with(
    change: impl FnOnce(&mut String, &mut Role, &mut Vec<String>, &mut String),
) -> PrincipalCommand {
    let PrincipalCommand::AddPrincipal {
        mut name,
        mut role,
        mut queues,
        mut token_hash,
    } = add_alice()
    else {
        unreachable!("add_alice adds");
    };
    change(&mut name, &mut role, &mut queues, &mut token_hash);
    PrincipalCommand::AddPrincipal {
        name,
        role,
        queues,
        token_hash,
    }
}

fn revoke(name: &str) -> PrincipalCommand {
    PrincipalCommand::RevokePrincipal {
        name: name.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Adding
// ---------------------------------------------------------------------------------------------

#[test]
fn an_admin_adds_a_reviewer_with_queues() {
    given(vec![root_added()])
        .when(add_alice(), ROOT, minute(1))
        .then(vec![alice_added()]);
}

#[test]
fn the_first_admin_is_added_to_an_empty_state() {
    let add_root = PrincipalCommand::AddPrincipal {
        name: ROOT.to_owned(),
        role: Role::Admin,
        queues: vec![],
        token_hash: root_token_hash(),
    };

    given(vec![])
        .when(add_root, CommandContext::SCHEDULER, minute(0))
        .then(vec![root_added()]);
}

#[test]
fn agents_auditors_and_admins_are_added_without_queues() {
    for role in [Role::Agent, Role::Auditor, Role::Admin] {
        let command = add_alice_with(|_, granted_role, queues, _| {
            *granted_role = role;
            queues.clear();
        });

        let result = given(vec![root_added()])
            .when(command, ROOT, minute(1))
            .result;

        let added = result.expect("added").remove(0);
        assert!(
            matches!(added, PrincipalEvent::PrincipalAdded(PrincipalAdded { role: added_role, .. }) if added_role == role)
        );
    }
}

#[test]
fn an_active_name_cannot_be_added_again() {
    let same_name_new_token =
        add_alice_with(|_, _, _, token_hash| *token_hash = alice_new_token_hash());

    given(vec![root_added(), alice_added()])
        .when(same_name_new_token, ROOT, minute(3))
        .then_error(PrincipalError::PrincipalExists {
            name: ALICE.to_owned(),
        });
}

#[test]
fn a_revoked_name_is_never_added_again_whatever_the_token_or_role() {
    // A new principal under the name would inherit the old one's items and callback secret.
    let same_name_new_token =
        add_alice_with(|_, _, _, token_hash| *token_hash = alice_new_token_hash());
    let same_name_as_an_agent = add_alice_with(|_, role, queues, token_hash| {
        *role = Role::Agent;
        queues.clear();
        *token_hash = alice_new_token_hash();
    });

    for command in [same_name_new_token, same_name_as_an_agent, add_alice()] {
        given(vec![root_added(), alice_added(), alice_revoked()])
            .when(command, ROOT, minute(3))
            .then_error(PrincipalError::NameWasRevoked {
                name: ALICE.to_owned(),
                revoked_at: minute(2),
            });
    }
}

#[test]
fn a_revoked_token_is_never_granted_again() {
    let another_name_with_alices_old_token =
        add_alice_with(|name, _, _, _| *name = "alice-2".to_owned());

    given(vec![root_added(), alice_added(), alice_revoked()])
        .when(another_name_with_alices_old_token, ROOT, minute(3))
        .then_error(PrincipalError::DuplicateToken);
}

#[test]
fn a_revoked_principal_is_succeeded_under_a_new_name() {
    let successor = add_alice_with(|name, _, _, token_hash| {
        *name = "alice-2".to_owned();
        *token_hash = alice_new_token_hash();
    });

    given(vec![root_added(), alice_added(), alice_revoked()])
        .when(successor, ROOT, minute(3))
        .then(vec![PrincipalEvent::PrincipalAdded(PrincipalAdded {
            name: "alice-2".to_owned(),
            role: Role::Reviewer,
            queues: vec![QUEUE.to_owned()],
            token_hash: alice_new_token_hash(),
            added_by: ROOT.to_owned(),
            added_at: minute(3),
        })]);
}

#[test]
fn two_principals_cannot_share_a_token() {
    let agent_with_alices_token = PrincipalCommand::AddPrincipal {
        name: AGENT.to_owned(),
        role: Role::Agent,
        queues: vec![],
        token_hash: alice_token_hash(),
    };

    given(vec![root_added(), alice_added()])
        .when(agent_with_alices_token, ROOT, minute(3))
        .then_error(PrincipalError::DuplicateToken);
}

#[test]
fn a_name_must_be_short_lowercase_and_start_with_a_letter_or_digit() {
    let too_long = "a".repeat(MAXIMUM_PRINCIPAL_NAME_LENGTH + 1);
    let longest = "a".repeat(MAXIMUM_PRINCIPAL_NAME_LENGTH);
    for bad_name in [
        "",
        "Alice",
        "alice smith",
        "alice@example.com",
        "ålice",
        too_long.as_str(),
        // Path segments and what reads as a command-line option.
        ".",
        "..",
        "-",
        "...",
        "-rf",
        ".hidden",
        "_bot",
        // Control, bidirectional and zero-width characters.
        "alice\n",
        "ali\u{7}ce",
        "alice\u{202e}",
        "\u{2066}alice\u{2069}",
        "ali\u{200e}ce",
        "ali\u{200f}ce",
        "ali\u{200b}ce",
        "ali\u{200d}ce",
        "\u{feff}alice",
    ] {
        given(vec![root_added()])
            .when(
                add_alice_with(|name, _, _, _| *name = bad_name.to_owned()),
                ROOT,
                minute(1),
            )
            .then_invalid("name");
    }
    for good_name in [
        "a",
        "alice.smith",
        "bot_7",
        "team-eu-2",
        "7th-reviewer",
        "a.",
        "z-",
        longest.as_str(),
    ] {
        let result = given(vec![root_added()])
            .when(
                add_alice_with(|name, _, _, _| *name = good_name.to_owned()),
                ROOT,
                minute(1),
            )
            .result;
        assert!(result.is_ok(), "{good_name:?} was refused: {result:?}");
    }
}

#[test]
fn a_token_hash_must_be_lowercase_sha256_hex() {
    let uppercase = alice_token_hash().to_uppercase();
    let short = alice_token_hash()[..63].to_owned();
    let long = format!("{}0", alice_token_hash());
    let not_hex = format!("{}g", &alice_token_hash()[..63]);
    for bad_hash in [
        "",
        "the-token-itself",
        uppercase.as_str(),
        short.as_str(),
        long.as_str(),
        not_hex.as_str(),
    ] {
        given(vec![root_added()])
            .when(
                add_alice_with(|_, _, _, token_hash| *token_hash = bad_hash.to_owned()),
                ROOT,
                minute(1),
            )
            .then_invalid("token_hash");
    }
}

#[test]
fn only_reviewers_are_granted_queues_and_each_queue_name_is_real() {
    let agent_with_queue = add_alice_with(|_, role, _, _| *role = Role::Agent);
    let admin_with_queue = add_alice_with(|_, role, _, _| *role = Role::Admin);
    let reviewer_without_queue = add_alice_with(|_, _, queues, _| queues.clear());
    let too_long_queue = "q".repeat(crate::item::MAXIMUM_NAME_LENGTH + 1);
    let bad_queue_lists = [
        vec![String::new()],
        vec!["   ".to_owned()],
        vec![" support".to_owned()],
        vec!["support\n".to_owned()],
        vec!["sup\u{7}port".to_owned()],
        vec![too_long_queue],
        vec![QUEUE.to_owned(), "contracts".to_owned(), QUEUE.to_owned()],
    ];

    for command in [agent_with_queue, admin_with_queue, reviewer_without_queue] {
        given(vec![root_added()])
            .when(command, ROOT, minute(1))
            .then_invalid("queues");
    }
    for bad_queues in bad_queue_lists {
        given(vec![root_added()])
            .when(
                add_alice_with(|_, _, queues, _| *queues = bad_queues),
                ROOT,
                minute(1),
            )
            .then_invalid("queues");
    }
}

#[test]
fn an_actor_must_have_a_name() {
    given(vec![root_added()])
        .when(add_alice(), "", minute(1))
        .then_invalid("actor");
    given(vec![root_added(), alice_added()])
        .when(revoke(ALICE), " ", minute(2))
        .then_invalid("actor");
}

#[test]
fn the_names_the_server_acts_as_are_reserved() {
    for reserved in ["system", "cli"] {
        given(vec![root_added()])
            .when(
                add_alice_with(|name, _, _, _| *name = reserved.to_owned()),
                ROOT,
                minute(1),
            )
            .then_error(PrincipalError::ReservedName {
                name: reserved.to_owned(),
            });
    }
    assert_eq!(RESERVED_ACTOR_NAMES, [CommandContext::SCHEDULER, "cli"]);
}

#[test]
fn existence_is_checked_before_the_payload() {
    let active_name_bad_hash = add_alice_with(|_, _, _, token_hash| *token_hash = "bad".to_owned());

    given(vec![root_added(), alice_added()])
        .when(active_name_bad_hash, ROOT, minute(3))
        .then_error(PrincipalError::PrincipalExists {
            name: ALICE.to_owned(),
        });
}

// ---------------------------------------------------------------------------------------------
// Revoking
// ---------------------------------------------------------------------------------------------

#[test]
fn an_admin_revokes_a_principal() {
    given(vec![root_added(), alice_added()])
        .when(revoke(ALICE), ROOT, minute(2))
        .then(vec![alice_revoked()]);
}

#[test]
fn an_unknown_principal_cannot_be_revoked() {
    given(vec![root_added()])
        .when(revoke("mallory"), ROOT, minute(2))
        .then_error(PrincipalError::PrincipalNotFound {
            name: "mallory".to_owned(),
        });
}

#[test]
fn a_principal_is_revoked_once() {
    given(vec![root_added(), alice_added(), alice_revoked()])
        .when(revoke(ALICE), ROOT, minute(3))
        .then_error(PrincipalError::AlreadyRevoked {
            name: ALICE.to_owned(),
            revoked_at: minute(2),
        });
}

#[test]
fn an_admin_cannot_revoke_itself() {
    given(vec![root_added()])
        .when(revoke(ROOT), ROOT, minute(2))
        .then_error(PrincipalError::CannotRevokeYourself);
}

#[test]
fn the_last_active_admin_is_not_revoked_by_anyone() {
    given(vec![root_added()])
        .when(revoke(ROOT), "ops", minute(2))
        .then_error(PrincipalError::LastAdmin {
            name: ROOT.to_owned(),
        });
    // With another active admin, it may be.
    let second_admin = PrincipalEvent::PrincipalAdded(PrincipalAdded {
        name: "second".to_owned(),
        role: Role::Admin,
        queues: vec![],
        token_hash: alice_new_token_hash(),
        added_by: ROOT.to_owned(),
        added_at: minute(1),
    });
    given(vec![root_added(), second_admin])
        .when(revoke(ROOT), "ops", minute(2))
        .then(vec![PrincipalEvent::PrincipalRevoked(PrincipalRevoked {
            name: ROOT.to_owned(),
            revoked_by: "ops".to_owned(),
            revoked_at: minute(2),
        })]);
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

#[test]
fn every_error_has_a_rule_and_a_kind() {
    let cases = [
        (
            PrincipalError::PrincipalExists {
                name: ALICE.to_owned(),
            },
            "principal-exists",
            ErrorKind::Conflict,
        ),
        (
            PrincipalError::PrincipalNotFound {
                name: ALICE.to_owned(),
            },
            "principal-not-found",
            ErrorKind::NotFound,
        ),
        (
            PrincipalError::AlreadyRevoked {
                name: ALICE.to_owned(),
                revoked_at: minute(2),
            },
            "already-revoked",
            ErrorKind::Conflict,
        ),
        (
            PrincipalError::NameWasRevoked {
                name: ALICE.to_owned(),
                revoked_at: minute(2),
            },
            "name-was-revoked",
            ErrorKind::RuleBroken,
        ),
        (
            PrincipalError::ReservedName {
                name: "cli".to_owned(),
            },
            "reserved-name",
            ErrorKind::Invalid,
        ),
        (
            PrincipalError::invalid("name", "bad"),
            "invalid",
            ErrorKind::Invalid,
        ),
        (
            PrincipalError::CannotRevokeYourself,
            "cannot-revoke-yourself",
            ErrorKind::RuleBroken,
        ),
        (
            PrincipalError::DuplicateToken,
            "duplicate-token",
            ErrorKind::Conflict,
        ),
    ];
    for (error, rule, kind) in cases {
        assert_eq!(error.rule(), rule);
        assert_eq!(error.kind(), kind, "{error}");
        assert!(!error.to_string().is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// The fold and token lookup
// ---------------------------------------------------------------------------------------------

#[test]
fn the_fold_keeps_every_principal_and_looks_up_only_active_tokens() {
    let agent_added = PrincipalEvent::PrincipalAdded(PrincipalAdded {
        name: AGENT.to_owned(),
        role: Role::Agent,
        queues: vec![],
        token_hash: agent_token_hash(),
        added_by: ROOT.to_owned(),
        added_at: minute(1),
    });

    let principals = fold(&[root_added(), alice_added(), agent_added, alice_revoked()]);

    assert_eq!(principals.len(), 3);
    assert!(!principals.is_empty());
    assert!(principals.has_active_admin());
    let active_names: Vec<&str> = principals
        .active()
        .map(|principal| principal.name.as_str())
        .collect();
    assert_eq!(active_names, vec![AGENT, ROOT]);
    let all_names: Vec<&str> = principals
        .all()
        .map(|principal| principal.name.as_str())
        .collect();
    assert_eq!(all_names, vec![AGENT, ALICE, ROOT]);
    assert_eq!(
        principals
            .by_token_hash(&agent_token_hash())
            .map(|p| p.name.as_str()),
        Some(AGENT)
    );
    assert_eq!(
        principals.by_token_hash(&alice_token_hash()),
        None,
        "a revoked token opens nothing"
    );
    assert_eq!(principals.by_token_hash(&token_hash("never-issued")), None);
    assert_eq!(
        principals.get(ALICE),
        Some(&Principal {
            name: ALICE.to_owned(),
            role: Role::Reviewer,
            queues: vec![QUEUE.to_owned()],
            token_hash: alice_token_hash(),
            added_by: ROOT.to_owned(),
            added_at: minute(1),
            revoked_by: Some(ROOT.to_owned()),
            revoked_at: Some(minute(2)),
        })
    );
    assert!(!principals.get(ALICE).unwrap().is_active());
    assert!(fold(&[]).is_empty());
    assert!(!fold(&[]).has_active_admin());
}

/// Logs written before revoked names were refused may add a name again: they still fold, and only
/// the latest grant's token opens.
#[test]
fn after_a_name_was_added_again_in_an_old_log_only_the_new_token_opens() {
    let readded = PrincipalEvent::PrincipalAdded(PrincipalAdded {
        token_hash: alice_new_token_hash(),
        added_at: minute(3),
        ..match alice_added() {
            PrincipalEvent::PrincipalAdded(added) => added,
            PrincipalEvent::PrincipalRevoked(_) => unreachable!("alice_added adds"),
        }
    });

    let principals = fold(&[root_added(), alice_added(), alice_revoked(), readded]);

    assert_eq!(principals.by_token_hash(&alice_token_hash()), None);
    let alice = principals
        .by_token_hash(&alice_new_token_hash())
        .expect("the new token opens");
    assert!(alice.is_active());
    assert_eq!(alice.added_at, minute(3));
    assert_eq!(alice.revoked_at, None);
}

#[test]
fn evolving_event_by_event_equals_the_fold() {
    let history = [root_added(), alice_added(), alice_revoked()];
    let mut state = Principals::default();
    for event in &history {
        state = evolve(state, event);
    }
    assert_eq!(state, fold(&history));
}

#[test]
fn a_revocation_of_an_unknown_name_folds_to_nothing() {
    let stray_revocation = PrincipalEvent::PrincipalRevoked(PrincipalRevoked {
        name: "ghost".to_owned(),
        revoked_by: ROOT.to_owned(),
        revoked_at: minute(1),
    });

    assert_eq!(
        fold(&[root_added(), stray_revocation]),
        fold(&[root_added()])
    );
}

#[test]
fn only_active_reviewers_work_their_granted_queues() {
    let principals = fold(&[root_added(), alice_added()]);
    let alice = principals.get(ALICE).unwrap();
    let root = principals.get(ROOT).unwrap();
    let revoked = fold(&[root_added(), alice_added(), alice_revoked()]);

    assert!(alice.may_work_queue(QUEUE));
    assert!(!alice.may_work_queue("contracts"));
    assert!(!root.may_work_queue(QUEUE), "admins review nothing");
    assert!(!revoked.get(ALICE).unwrap().may_work_queue(QUEUE));
    for role in [Role::Agent, Role::Auditor, Role::Admin] {
        let with_role = Principal {
            role,
            ..alice.clone()
        };
        assert!(!with_role.may_work_queue(QUEUE), "{role:?} reviewed");
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens, roles and the event codec
// ---------------------------------------------------------------------------------------------

#[test]
fn a_token_hash_is_lowercase_hex_sha256() {
    assert_eq!(
        token_hash("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert!(validate_token_hash(&token_hash("any token at all")).is_ok());
}

#[test]
fn roles_have_lowercase_names_both_ways() {
    for role in Role::ALL {
        assert_eq!(serde_json::to_value(role).unwrap(), json!(role.as_str()));
        assert_eq!(role.as_str().parse::<Role>(), Ok(role));
    }
    assert_eq!(Role::Reviewer.as_str(), "reviewer");
    assert_eq!(
        "Admin".parse::<Role>(),
        Err(UnknownRole {
            name: "Admin".to_owned()
        })
    );
}

#[test]
fn every_event_round_trips_through_type_and_data() {
    let events = [root_added(), alice_added(), alice_revoked()];
    for event in events {
        assert_eq!(event.schema_version(), PRINCIPAL_EVENT_SCHEMA_VERSION);
        assert!(PrincipalEvent::EVENT_TYPES.contains(&event.event_type()));
        let read_back = PrincipalEvent::from_type_and_data(event.event_type(), &event.to_data());
        assert_eq!(read_back.ok(), Some(event.clone()));
        let through_text: PrincipalEvent =
            serde_json::from_str(&serde_json::to_string(&event).unwrap()).unwrap();
        assert_eq!(through_text, event);
    }
    assert_eq!(alice_revoked().occurred_at(), minute(2));
    assert_eq!(alice_added().occurred_at(), minute(1));
}

#[test]
fn the_stored_form_is_type_and_data() {
    assert_eq!(
        serde_json::to_value(alice_revoked()).unwrap(),
        json!({
            "type": "PrincipalRevoked",
            "data": {"name": "alice", "revoked_by": "root", "revoked_at": "2025-03-01T09:02:00Z"}
        })
    );
    assert_eq!(alice_added().to_data()["role"], json!("reviewer"));
}

#[test]
fn unknown_types_and_malformed_data_are_decoding_errors() {
    let unknown = PrincipalEvent::from_type_and_data("PrincipalPromoted", &json!({}));
    let malformed = PrincipalEvent::from_type_and_data("PrincipalAdded", &json!({"name": "alice"}));
    let bad_role = PrincipalEvent::from_type_and_data(
        "PrincipalAdded",
        &json!({
            "name": "alice", "role": "superuser", "queues": [], "token_hash": alice_token_hash(),
            "added_by": "root", "added_at": "2025-03-01T09:01:00Z"
        }),
    );

    assert!(matches!(
        unknown,
        Err(PrincipalEventDecodingError::UnknownEventType { event_type }) if event_type == "PrincipalPromoted"
    ));
    assert!(matches!(
        malformed,
        Err(PrincipalEventDecodingError::MalformedData {
            event_type: "PrincipalAdded",
            ..
        })
    ));
    assert!(matches!(
        bad_role,
        Err(PrincipalEventDecodingError::MalformedData {
            event_type: "PrincipalAdded",
            ..
        })
    ));
}

#[test]
fn a_listed_principal_does_not_show_its_token_hash() {
    let principals = fold(&[root_added(), alice_added()]);
    let listed = serde_json::to_value(principals.get(ALICE).unwrap()).unwrap();

    assert_eq!(listed.get("token_hash"), None);
    assert_eq!(listed["queues"], json!([QUEUE]));
    assert_eq!(listed["role"], json!("reviewer"));
}
