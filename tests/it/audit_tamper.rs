//! Tamper classes against signed checkpoints, on a real data directory (through the real
//! binary) and on a real PostgreSQL: a byte edited in an event, an event deleted, two events
//! swapped (each rewritten into a log whose hashes and links all hold, as an operator with write
//! access would make it), a fork of the same size as an old checkpoint re-signed with the
//! server's own key (caught only by `ledger audit verify --trusted-checkpoint`), and checkpoints
//! with forged signatures. Each is detected and named.

use crate::postgres::TestPostgres;
use crate::support::read_all_of;
use ledger::audit::CheckpointKey;
use ledger::audit::checkpointer::checkpoint_now;
use ledger::log::{EventLog, ExpectedVersion, FileLog, FileLogOptions};
use projections::event::{NewEvent, RecordedEvent};
use std::path::Path;
use std::sync::Arc;

const ORIGIN: &str = "tamper.test/log";

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    // A runtime of its own, dropped at the end, so that the log and the projector's task are
    // gone (and the data directory unlocked) before the binary runs on it.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

fn note_event(round: usize, n: usize) -> NewEvent {
    NewEvent {
        id: uuid::Uuid::new_v4(),
        event_type: "NoteTaken".into(),
        schema_version: 1,
        data: serde_json::value::to_raw_value(
            &serde_json::json!({"text": format!("note {n} of round {round}")}),
        )
        .unwrap(),
        actor: "tester".into(),
        causation_id: None,
        correlation_id: None,
    }
}

/// Three rounds of 20 events in four streams, each round followed by a signed checkpoint; the
/// three checkpoints' notes.
async fn populate(log: Arc<dyn EventLog>, key: &CheckpointKey) -> Vec<String> {
    let projector = ledger::projector::Projector::start(log.clone())
        .await
        .unwrap();
    let mut notes = Vec::new();
    for round in 0..3 {
        for n in 0..20 {
            log.append(
                &format!("notes-{}", n % 4),
                ExpectedVersion::Any,
                vec![note_event(round, n)],
            )
            .await
            .unwrap();
        }
        let (_, checkpoint) = checkpoint_now(log.as_ref(), &projector, key)
            .await
            .unwrap()
            .expect("a checkpoint is due");
        notes.push(checkpoint.note);
    }
    notes
}

/// A data directory made by [`populate`] with the key in its `checkpoint.key`.
fn ledger_with_checkpoints() -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let key = CheckpointKey::load_or_create(&dir.path().join("checkpoint.key"), ORIGIN).unwrap();
    let notes = block_on(async {
        let log: Arc<dyn EventLog> =
            Arc::new(FileLog::open(dir.path(), FileLogOptions::default(), "tamper test").unwrap());
        populate(log, &key).await
    });
    (dir, notes)
}

/// The tree size a note states.
fn size_of(note: &str) -> u64 {
    note.lines().nth(1).unwrap().parse().unwrap()
}

/// A new data directory holding `transform` of `from`'s events, written as an operator with
/// write access would forge it: each event keeps every field it had (its recorded time too)
/// but its position, stream version and previous-event link, which are made to fit, and every
/// event hash and chain hash is computed afresh, so that every hash, link, version and
/// position in it holds. The key file is copied along.
pub(crate) fn rewrite(
    from: &Path,
    transform: impl FnOnce(Vec<RecordedEvent>) -> Vec<RecordedEvent>,
) -> tempfile::TempDir {
    use ledger::log::segment::{encode_frame, encode_segment_header, segment_file_name};
    let to = tempfile::tempdir().unwrap();
    std::fs::copy(
        from.join("checkpoint.key"),
        to.path().join("checkpoint.key"),
    )
    .unwrap();
    let events = block_on(async { read_all_of(&FileLog::open_read_only(from).unwrap()).await });
    let mut bytes = encode_segment_header(0, &[0; 32]).to_vec();
    let mut chain = [0; 32];
    let mut tips: std::collections::HashMap<String, (u64, [u8; 32])> = Default::default();
    for (position, mut event) in transform(events).into_iter().enumerate() {
        let (version, prev_hash) = tips
            .get(&event.stream)
            .map_or((0, [0; 32]), |&(version, hash)| (version + 1, hash));
        event.position = position as u64;
        event.version = version;
        event.prev_hash = prev_hash;
        let payload = event.canonical_bytes();
        let hash = projections::event::sha256(&payload);
        chain = encode_frame(&mut bytes, position as u64, &payload, &hash, &chain);
        tips.insert(event.stream.clone(), (version, hash));
    }
    std::fs::write(to.path().join(segment_file_name(0)), bytes).unwrap();
    to
}

fn ledger(args: &[&str], dir: &Path) -> (i32, String) {
    let dir = dir.as_os_str();
    crate::support::run_ledger(
        args.iter()
            .map(std::ffi::OsStr::new)
            .chain([std::ffi::OsStr::new("--data-dir"), dir]),
    )
}

fn assert_checkpoint_caught(dir: &Path, tree_size: u64, reason: &str, case: &str) {
    let (code, out) = ledger(&["verify"], dir);
    assert_eq!(code, 1, "{case}: verify must exit 1: {out}");
    assert!(
        out.contains("CHECKPOINT DAMAGED: checkpoint at position")
            && out.contains(&format!("(tree size {tree_size}): {reason}")),
        "{case}: expected the checkpoint of tree size {tree_size} named ({reason}): {out}"
    );
}

#[test]
fn an_intact_ledger_verifies_with_its_checkpoints_and_extends_them() {
    let (dir, notes) = ledger_with_checkpoints();
    let (code, out) = ledger(&["verify"], dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok: 3 checkpoints"), "{out}");
    assert!(
        out.contains("checkpoint signatures checked with tamper.test/log+"),
        "{out}"
    );
    let trusted = tempfile::tempdir().unwrap();
    let mut args = vec!["audit".to_owned(), "verify".to_owned()];
    for (index, note) in notes.iter().enumerate() {
        let path = trusted.path().join(format!("c{index}.note"));
        std::fs::write(&path, note).unwrap();
        args.extend([
            "--trusted-checkpoint".to_owned(),
            path.display().to_string(),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out) = ledger(&args, dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("extends all 3 trusted checkpoints"), "{out}");
}

#[test]
fn a_byte_edited_in_an_event_is_named_by_its_position() {
    let (dir, _) = ledger_with_checkpoints();
    let (_, path) = ledger::log::segment::list_segments(dir.path())
        .unwrap()
        .remove(0);
    let mut bytes = std::fs::read(&path).unwrap();
    // The text of note 5 of round 1 (position 20 + 1 + 5: round 0's notes, its checkpoint, then
    // notes 0 to 4 of round 1) becomes "note 6".
    let at = bytes
        .windows(b"note 5 of round 1".len())
        .position(|window| window == b"note 5 of round 1")
        .unwrap();
    bytes[at + 5] = b'6';
    std::fs::write(&path, bytes).unwrap();
    let (code, out) = ledger(&["verify"], dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DAMAGED at position 26 "), "{out}");
}

#[test]
fn an_event_deleted_and_the_log_rewritten_is_caught_by_the_first_checkpoint_after_it() {
    let (dir, notes) = ledger_with_checkpoints();
    // Note 4 of round 1 goes; everything after it is appended again with valid hashes and links.
    let rewritten = rewrite(dir.path(), |mut events| {
        events.remove(25);
        events
    });
    // (The checkpoint, one position earlier now, is caught covering an event after itself.)
    assert_checkpoint_caught(rewritten.path(), size_of(&notes[1]), "", "deleted event");
}

#[test]
fn two_events_swapped_and_the_log_rewritten_are_caught() {
    let (dir, notes) = ledger_with_checkpoints();
    // Two events of different streams (so that versions stay in order) swap places.
    let rewritten = rewrite(dir.path(), |mut events| {
        assert_ne!(events[45].stream, events[46].stream);
        events.swap(45, 46);
        events
    });
    assert_checkpoint_caught(
        rewritten.path(),
        size_of(&notes[2]),
        "its root",
        "swapped events",
    );
}

#[test]
fn a_checkpoint_with_a_forged_signature_is_named() {
    let (dir, notes) = ledger_with_checkpoints();
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    // One byte of the last checkpoint's signature changed.
    let forged = rewrite(dir.path(), |mut events| {
        let last = events
            .iter_mut()
            .rev()
            .find(|event| event.stream == "audit-checkpoints")
            .unwrap();
        let mut data: serde_json::Value = serde_json::from_str(&last.data).unwrap();
        let note = data["note"].as_str().unwrap().to_owned();
        let (text, line) = note.trim_end().rsplit_once('\n').unwrap();
        let (prefix, signature) = line.rsplit_once(' ').unwrap();
        let mut bytes = engine.decode(signature).unwrap();
        bytes[20] ^= 1;
        data["note"] = format!("{text}\n{prefix} {}\n", engine.encode(bytes)).into();
        last.data = data.to_string();
        events
    });
    assert_checkpoint_caught(
        forged.path(),
        size_of(&notes[2]),
        "the signature by tamper.test/log does not verify",
        "forged signature",
    );

    // Re-signed with another key of the same name: no signature by the ledger's key.
    let impostor = CheckpointKey::generate(ORIGIN).unwrap();
    let resigned = rewrite(dir.path(), |mut events| {
        let last = events
            .iter_mut()
            .rev()
            .find(|event| event.stream == "audit-checkpoints")
            .unwrap();
        let data: projections::audit::CheckpointSigned = serde_json::from_str(&last.data).unwrap();
        let root: [u8; 32] = hex::decode(&data.root_hash).unwrap().try_into().unwrap();
        let signed = impostor.sign(data.tree_size, &root).unwrap();
        last.data = serde_json::to_string(&signed).unwrap();
        events
    });
    assert_checkpoint_caught(
        resigned.path(),
        size_of(&notes[2]),
        "the note carries no signature by the key",
        "another key",
    );
}

#[test]
fn a_fork_resigned_with_the_servers_own_key_is_caught_by_a_trusted_checkpoint() {
    let (dir, notes) = ledger_with_checkpoints();
    let (first, second) = (size_of(&notes[0]), size_of(&notes[1]));
    // The operator cuts the log after the first checkpoint and regrows it with other events to
    // exactly the size of the second checkpoint, then signs it with the ledger's own key.
    let fork = rewrite(dir.path(), |events| events[..first as usize + 3].to_vec());
    block_on(async {
        let log = FileLog::open(fork.path(), FileLogOptions::default(), "fork").unwrap();
        let mut n = 0;
        while log.head().await.unwrap() < second {
            log.append("notes-forged", ExpectedVersion::Any, vec![note_event(9, n)])
                .await
                .unwrap();
            n += 1;
        }
    });
    let (code, out) = ledger(&["audit", "checkpoint"], fork.path());
    assert_eq!(code, 0, "{out}");
    assert_eq!(size_of(&out), second, "{out}");
    // On its own, the fork verifies: every hash, link and checkpoint holds.
    let (code, out) = ledger(&["verify"], fork.path());
    assert_eq!(code, 0, "the fork is self-consistent: {out}");
    // Against what an auditor saved, it does not: named, and the one before still holds.
    let saved = tempfile::tempdir().unwrap();
    let c0 = saved.path().join("c0.note");
    let c1 = saved.path().join("c1.note");
    std::fs::write(&c0, &notes[0]).unwrap();
    std::fs::write(&c1, &notes[1]).unwrap();
    let (c0, c1) = (c0.display().to_string(), c1.display().to_string());
    let (code, out) = ledger(
        &[
            "audit",
            "verify",
            "--trusted-checkpoint",
            &c0,
            "--trusted-checkpoint",
            &c1,
        ],
        fork.path(),
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("ok: {c0} (tree size {first})")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "NOT EXTENDED: {c1}: the log does not extend this checkpoint"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "the first checkpoint the log does not extend: {c1}"
        )),
        "{out}"
    );

    // Truncated without regrowing: fewer events than the checkpoint covers.
    let cut = rewrite(dir.path(), |events| events[..first as usize + 3].to_vec());
    let (code, out) = ledger(
        &["audit", "verify", "--trusted-checkpoint", &c1],
        cut.path(),
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("events were removed"), "{out}");
    // A checkpoint that is not this key's is refused as evidence.
    let other = saved.path().join("other.note");
    let impostor = CheckpointKey::generate(ORIGIN).unwrap();
    std::fs::write(&other, impostor.sign(3, &[1; 32]).unwrap().note).unwrap();
    let (code, out) = ledger(
        &[
            "audit",
            "verify",
            "--trusted-checkpoint",
            &other.display().to_string(),
        ],
        dir.path(),
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("carries no signature by the key"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_rows_in_postgresql_are_caught() {
    let url = TestPostgres::shared().create_database("audit_tamper");
    let log: Arc<dyn EventLog> = Arc::new(
        ledger::log::PostgresLog::connect(&url, ledger::log::PostgresOptions::default())
            .await
            .unwrap(),
    );
    let key = CheckpointKey::generate(ORIGIN).unwrap();
    let notes = populate(log.clone(), &key).await;
    let verify = || {
        let log = log.clone();
        let verifier = key.verifier().clone();
        async move {
            ledger::verify::verify_log_with_key(log.as_ref(), Some(&verifier))
                .await
                .unwrap()
        }
    };
    let report = verify().await;
    assert_eq!(report.damage, None);
    assert_eq!(report.tree.checkpoint_damage, None);
    assert_eq!(report.tree.checkpoints, 3);

    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    // The table refuses changes; its owner (a superuser here) can switch that off.
    client
        .batch_execute("ALTER TABLE ledger_events DISABLE TRIGGER USER")
        .await
        .unwrap();

    // The last checkpoint's signature forged, its row's hash recomputed so that every hash and
    // link still holds: the signature check names it.
    let events = read_all_of(log.as_ref()).await;
    let mut last = events
        .iter()
        .rev()
        .find(|event| event.stream == "audit-checkpoints")
        .unwrap()
        .clone();
    let original = (last.data.clone(), last.hash);
    last.data = last
        .data
        .replacen("\u{2014} tamper.test/log ", "\u{2014} tamper.test/log A", 1);
    let forged_hash = last.computed_hash();
    client
        .execute(
            "UPDATE ledger_events SET data = $1, hash = $2 WHERE position = $3",
            &[&last.data, &forged_hash.to_vec(), &(last.position as i64)],
        )
        .await
        .unwrap();
    let report = verify().await;
    assert_eq!(report.damage, None, "every hash and link holds");
    let damage = report
        .tree
        .checkpoint_damage
        .expect("the forged checkpoint is named");
    assert_eq!(damage.position, last.position);
    assert_eq!(damage.tree_size, Some(size_of(&notes[2])));
    client
        .execute(
            "UPDATE ledger_events SET data = $1, hash = $2 WHERE position = $3",
            &[&original.0, &original.1.to_vec(), &(last.position as i64)],
        )
        .await
        .unwrap();
    assert_eq!(verify().await.tree.checkpoint_damage, None);

    // An event's data edited: its hash no longer matches, at its position.
    client
        .execute(
            "UPDATE ledger_events SET data = replace(data, 'note 5', 'note 6') WHERE position = 26",
            &[],
        )
        .await
        .unwrap();
    let report = verify().await;
    let damage = report.damage.expect("the edited row is named");
    assert_eq!(damage.position, 26);
    client
        .execute(
            "UPDATE ledger_events SET data = replace(data, 'note 6', 'note 5') WHERE position = 26",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(verify().await.damage, None);

    // An event deleted: the gap is named.
    client
        .execute("DELETE FROM ledger_events WHERE position = 40", &[])
        .await
        .unwrap();
    let report = verify().await;
    assert_eq!(report.damage.expect("the gap is named").position, 40);
}
