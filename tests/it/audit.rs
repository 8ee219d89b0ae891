//! Audit a third party can check, over HTTP: signed checkpoints in the C2SP formats, inclusion
//! and consistency proofs from the server checked with the RFC 6962 verifier, bad parameters
//! refused with 4xx problems, decision records, and one checkpoint per tree size with several
//! servers on one store.

use crate::api::{App, reply_for_review, spawn_app_with};
use ledger::audit::CheckpointKey;
use ledger::audit::checkpointer::checkpoint_now;
use ledger::log::{EventLog, ExpectedVersion};
use projections::event::Hash;
use projections::merkle::{verify_consistency, verify_inclusion};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

fn key() -> CheckpointKey {
    CheckpointKey::generate("ledger.test/approvals").unwrap()
}

/// A server over the in-memory log whose records name `key`'s verifier key.
async fn app_with_key(key: &CheckpointKey) -> App {
    let verifier = key.verifier().clone();
    spawn_app_with(move |state| state.with_checkpoint_verifier(verifier)).await
}

fn hash_of(value: &Value) -> Hash {
    hex::decode(value.as_str().expect("a hex hash"))
        .unwrap()
        .try_into()
        .unwrap()
}

fn hashes_of(value: &Value) -> Vec<Hash> {
    value.as_array().unwrap().iter().map(hash_of).collect()
}

/// Appends `count` filler events (one stream each) and waits for the projector.
async fn append_events(app: &App, count: u64) {
    for sequence in 0..count {
        app.log
            .append(
                &format!("filler-{}", uuid::Uuid::new_v4()),
                ExpectedVersion::NoStream,
                vec![ledger::bench::sample_event(300, sequence)],
            )
            .await
            .unwrap();
    }
    app.projector
        .caught_up_with(app.log.as_ref())
        .await
        .unwrap();
}

async fn sign(app: &App, key: &CheckpointKey) -> Value {
    let (_, checkpoint) = checkpoint_now(app.log.as_ref(), &app.projector, key)
        .await
        .unwrap()
        .expect("a checkpoint was due");
    app.projector
        .caught_up_with(app.log.as_ref())
        .await
        .unwrap();
    serde_json::to_value(checkpoint).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_c2sp_signed_notes_served_as_text_and_as_json() {
    let key = key();
    let app = app_with_key(&key).await;
    let (status, problem) = app
        .call("GET", "/v1/audit/checkpoints/latest", &app.auditor, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    assert_eq!(problem["problem"], "no-checkpoint");

    append_events(&app, 5).await;
    let signed = sign(&app, &key).await;
    let size = signed["tree_size"].as_u64().unwrap();
    assert_eq!(size, 5 + 5, "five principals' events and five fillers");
    let note = signed["note"].as_str().unwrap();
    // The C2SP layout, byte for byte: origin, size, base64 root, a blank line, one signature
    // line: an em dash, the key name, base64 of the 4-byte key id and the 64-byte signature.
    let lines: Vec<&str> = note.split('\n').collect();
    assert_eq!(lines.len(), 6, "{note:?}");
    assert_eq!(lines[0], "ledger.test/approvals");
    assert_eq!(lines[1], size.to_string());
    use base64::Engine;
    let root = base64::engine::general_purpose::STANDARD
        .decode(lines[2])
        .unwrap();
    assert_eq!(hex::encode(&root), signed["root_hash"].as_str().unwrap());
    assert_eq!(lines[3], "");
    let signature = lines[4]
        .strip_prefix("\u{2014} ledger.test/approvals ")
        .expect("a signature line");
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .unwrap();
    assert_eq!(signature.len(), 4 + 64);
    assert_eq!(lines[5], "", "the note ends with a newline");
    // The key id is the C2SP one: the first four bytes of SHA-256(name, '\n', 0x01, key).
    let verifier_key = key.verifier().key().to_owned();
    let public = base64::engine::general_purpose::STANDARD
        .decode(verifier_key.splitn(3, '+').nth(2).unwrap())
        .unwrap();
    let id = projections::event::sha256(&[b"ledger.test/approvals\n".as_slice(), &public].concat());
    assert_eq!(signature[..4], id[..4]);
    assert_eq!(
        verifier_key.split('+').nth(1).unwrap(),
        hex::encode(&id[..4])
    );

    // As text (the note itself) and as JSON (its fields and the verifier key).
    let response = app
        .client
        .get(format!("{}/v1/audit/checkpoints/latest", app.base))
        .bearer_auth(&app.auditor)
        .header("accept", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(response.text().await.unwrap(), note);
    // Any principal may read checkpoints, an agent too.
    let (status, latest) = app
        .call("GET", "/v1/audit/checkpoints/latest", &app.agent, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(latest["note"], note);
    assert_eq!(latest["tree_size"], size);
    assert_eq!(latest["verifier_key"], verifier_key);
    let opened = key.verifier().open(note).unwrap();
    assert_eq!(opened.tree_size, size);

    // Nothing new: no second checkpoint of the same tree.
    assert!(
        checkpoint_now(app.log.as_ref(), &app.projector, &key)
            .await
            .unwrap()
            .is_none()
    );

    // Pages, oldest first.
    for round in 0..3 {
        append_events(&app, 2 + round).await;
        sign(&app, &key).await;
    }
    let (status, page) = app
        .call("GET", "/v1/audit/checkpoints?limit=2", &app.auditor, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let sizes = |page: &Value| -> Vec<u64> {
        page["checkpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|checkpoint| checkpoint["tree_size"].as_u64().unwrap())
            .collect()
    };
    let first = sizes(&page);
    assert_eq!(first.len(), 2);
    assert_eq!(first[0], size);
    let after = page["next_after"].as_u64().unwrap();
    let (_, rest) = app
        .call(
            "GET",
            &format!("/v1/audit/checkpoints?after={after}&limit=10"),
            &app.auditor,
            None,
        )
        .await;
    let rest = sizes(&rest);
    assert_eq!(rest.len(), 2);
    assert!(first.iter().chain(&rest).is_sorted_by(|a, b| a < b));
    assert_eq!(page["verifier_key"], verifier_key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_proofs_verify_for_every_size_up_to_300() {
    let key = key();
    let app = app_with_key(&key).await;
    append_events(&app, 295).await;
    let signed = sign(&app, &key).await;
    let size = signed["tree_size"].as_u64().unwrap();
    assert_eq!(size, 300);
    // The leaves, independently of the server's tree: SHA-256(0x00 || event hash) of each event.
    let events = crate::support::read_all_of(app.log.as_ref()).await;
    let leaves: Vec<Hash> = events
        .iter()
        .map(|event| projections::merkle::leaf_hash(&event.hash))
        .collect();
    let roots: Vec<Hash> = (0..=size as usize)
        .map(|n| {
            let mut tree = projections::merkle::MerkleTree::new();
            leaves[..n].iter().for_each(|leaf| tree.push_leaf(*leaf));
            tree.root()
        })
        .collect();
    assert_eq!(hex::encode(roots[300]), signed["root_hash"]);

    for n in 1..=size {
        // Every position of every tree size is too many requests for a test; every size, with
        // its first, last and a middle position, and every first size of a consistency proof
        // for a quarter of the second sizes (all of them for the smallest).
        let positions = [0, n / 2, n - 1];
        for position in positions {
            let (status, proof) = app
                .call(
                    "GET",
                    &format!("/v1/audit/proofs/inclusion?position={position}&tree_size={n}"),
                    &app.auditor,
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{proof}");
            assert_eq!(hash_of(&proof["root_hash"]), roots[n as usize]);
            assert_eq!(hash_of(&proof["leaf_hash"]), leaves[position as usize]);
            let path = hashes_of(&proof["inclusion_proof"]);
            verify_inclusion(
                &leaves[position as usize],
                position,
                n,
                &path,
                &roots[n as usize],
            )
            .unwrap();
            if n > 1 {
                let wrong = (position + 1) % n;
                assert!(
                    verify_inclusion(
                        &leaves[position as usize],
                        wrong,
                        n,
                        &path,
                        &roots[n as usize]
                    )
                    .is_err()
                );
            }
        }
        if n <= 40 || n % 4 == 0 {
            for m in 1..=n {
                let (status, proof) = app
                    .call(
                        "GET",
                        &format!("/v1/audit/proofs/consistency?first={m}&second={n}"),
                        &app.agent,
                        None,
                    )
                    .await;
                assert_eq!(status, StatusCode::OK, "{proof}");
                let path = hashes_of(&proof["consistency_proof"]);
                let (first, second) = (&roots[m as usize], &roots[n as usize]);
                assert_eq!(hash_of(&proof["first_root_hash"]), *first);
                assert_eq!(hash_of(&proof["second_root_hash"]), *second);
                verify_consistency(m, n, first, second, &path).unwrap();
                if let Some(hash) = path.first() {
                    let mut bad = path.clone();
                    bad[0][7] ^= 1;
                    assert!(verify_consistency(m, n, first, second, &bad).is_err());
                    assert!(verify_consistency(m, n, first, second, &path[1..]).is_err());
                    let longer = [path.as_slice(), &[*hash]].concat();
                    assert!(verify_consistency(m, n, first, second, &longer).is_err());
                }
            }
        }
    }
    // The defaults: the latest checkpoint's size.
    let (_, proof) = app
        .call(
            "GET",
            "/v1/audit/proofs/inclusion?position=7",
            &app.auditor,
            None,
        )
        .await;
    assert_eq!(proof["tree_size"], size);
    assert_eq!(proof["checkpoint"], signed["note"]);
    let (_, proof) = app
        .call(
            "GET",
            "/v1/audit/proofs/consistency?first=10",
            &app.auditor,
            None,
        )
        .await;
    assert_eq!(proof["second"], size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_proof_parameters_are_4xx_problems_never_500() {
    let key = key();
    let app = app_with_key(&key).await;
    let (status, problem) = app
        .call(
            "GET",
            "/v1/audit/proofs/inclusion?position=0",
            &app.auditor,
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "no checkpoint yet: {problem}"
    );
    append_events(&app, 10).await;
    sign(&app, &key).await;
    let size = 15u64;
    let max = u64::MAX;
    for (path, expected) in [
        (format!("inclusion?position={size}&tree_size={size}"), 422),
        (format!("inclusion?position=0&tree_size={}", size + 2), 422),
        (format!("inclusion?position={max}&tree_size={max}"), 422),
        ("inclusion?position=0&tree_size=0".to_owned(), 422),
        ("inclusion?position=-1".to_owned(), 400),
        ("inclusion?position=abc".to_owned(), 400),
        ("inclusion".to_owned(), 400),
        ("inclusion?position=1&tree_size=3&extra=1".to_owned(), 400),
        ("consistency?first=0&second=5".to_owned(), 422),
        ("consistency?first=6&second=5".to_owned(), 422),
        (format!("consistency?first=1&second={}", size + 2), 422),
        (format!("consistency?first={max}&second={max}"), 422),
        ("consistency?second=5".to_owned(), 400),
        ("consistency?first=1.5".to_owned(), 400),
    ] {
        let (status, problem) = app
            .call(
                "GET",
                &format!("/v1/audit/proofs/{path}"),
                &app.auditor,
                None,
            )
            .await;
        assert_eq!(status.as_u16(), expected, "{path}: {problem}");
    }
    // Proofs by position are for auditors and admins; consistency proofs for any principal.
    let (status, _) = app
        .call(
            "GET",
            "/v1/audit/proofs/inclusion?position=1",
            &app.rita,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .call(
            "GET",
            "/v1/audit/proofs/inclusion?position=1",
            &app.admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .call("GET", "/v1/audit/proofs/consistency?first=1", "", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app.call("GET", "/v1/audit/checkpoints", "", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_items_record_has_its_events_decision_diff_and_proofs_under_the_latest_checkpoint() {
    let key = key();
    let app = app_with_key(&key).await;
    let item = app.submit(reply_for_review()).await;
    let id = item["id"].as_str().unwrap().to_owned();
    for (action, body) in [
        ("claim", json!({})),
        (
            "edit",
            json!({"output": {"reply": "Dear Ms Jones, your refund was sent today."}}),
        ),
    ] {
        let (status, answer) = app
            .call(
                "POST",
                &format!("/v1/items/{id}/{action}"),
                &app.rita,
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let signed = sign(&app, &key).await;
    let root = hash_of(&signed["root_hash"]);
    let size = signed["tree_size"].as_u64().unwrap();
    // A comment after the checkpoint: in the record, without a proof yet.
    let (status, _) = app
        .call(
            "POST",
            &format!("/v1/items/{id}/comments"),
            &app.rita,
            Some(json!({"text": "sent by post too"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, record) = app
        .call("GET", &format!("/v1/items/{id}/record"), &app.agent, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{record}");
    let summary = &record["summary"]["decision"];
    assert_eq!(record["summary"]["scope"], "item");
    assert_eq!(summary["outcome"], "edited_and_approved");
    assert_eq!(summary["decided_by"], json!(["rita"]));
    assert_eq!(
        summary["ai_output"],
        json!({"reply": "Your refund is on its way."})
    );
    assert_eq!(
        summary["final_output"],
        json!({"reply": "Dear Ms Jones, your refund was sent today."})
    );
    assert_eq!(summary["edited"], true);
    let diff = summary["edit_diff"].as_str().unwrap();
    assert!(
        diff.contains("-  \"reply\": \"Your refund is on its way.\"")
            && diff.contains("+  \"reply\": \"Dear Ms Jones, your refund was sent today.\""),
        "{diff}"
    );
    assert_eq!(record["checkpoint"]["note"], signed["note"]);
    assert_eq!(record["verifier_key"], key.verifier().key());
    let events = record["events"].as_array().unwrap();
    let stored = ledger::log::read_whole_stream(app.log.as_ref(), &format!("item-{id}"))
        .await
        .unwrap();
    assert_eq!(events.len(), stored.len());
    assert_eq!(record["proven"], stored.len() - 1);
    use base64::Engine;
    for (event, stored) in events.iter().zip(&stored) {
        let canonical = base64::engine::general_purpose::STANDARD
            .decode(event["canonical"].as_str().unwrap())
            .unwrap();
        assert_eq!(canonical, stored.canonical_bytes());
        let hash = projections::event::sha256(&canonical);
        assert_eq!(hash, hash_of(&event["event_hash"]));
        let leaf = projections::merkle::leaf_hash(&hash);
        assert_eq!(leaf, hash_of(&event["leaf_hash"]));
        let position = event["position"].as_u64().unwrap();
        if position < size {
            let path = hashes_of(&event["inclusion_proof"]);
            verify_inclusion(&leaf, position, size, &path, &root).unwrap();
        } else {
            assert_eq!(event["type"], "CommentAdded");
            assert!(event["inclusion_proof"].is_null());
        }
    }

    // Who may read it: auditors and admins, and the item's own agent.
    let (status, _) = app
        .call("GET", &format!("/v1/items/{id}/record"), &app.auditor, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .call("GET", &format!("/v1/items/{id}/record"), &app.rita, None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let other_agent = app
        .add_principal(json!({"name": "other-agent", "role": "agent"}))
        .await;
    let (status, _) = app
        .call("GET", &format!("/v1/items/{id}/record"), &other_agent, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .call(
            "GET",
            &format!("/v1/items/{}/record", uuid::Uuid::new_v4()),
            &app.auditor,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Two servers (`first` and `second`: two logs on one store, or one log twice) race to sign,
/// again and again, while events arrive through the first: every checkpoint stored has its own
/// tree size, larger than the one before, and every one verifies.
async fn two_servers_race_to_sign(first: Arc<dyn EventLog>, second: Arc<dyn EventLog>) {
    let key = Arc::new(key());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut signers = Vec::new();
    for log in [first.clone(), second] {
        let projector = ledger::projector::Projector::start(log.clone())
            .await
            .unwrap();
        let (key, done) = (key.clone(), done.clone());
        signers.push(tokio::spawn(async move {
            let mut signed = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if checkpoint_now(log.as_ref(), &projector, &key)
                    .await
                    .unwrap()
                    .is_some()
                {
                    signed += 1;
                }
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            signed
        }));
    }
    for sequence in 0..200 {
        first
            .append(
                &format!("filler-{sequence}"),
                ExpectedVersion::NoStream,
                vec![ledger::bench::sample_event(200, sequence)],
            )
            .await
            .unwrap();
        if sequence % 10 == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut signed = Vec::new();
    for signer in signers {
        signed.push(signer.await.unwrap());
    }
    let stored =
        ledger::log::read_whole_stream(first.as_ref(), projections::audit::CHECKPOINTS_STREAM)
            .await
            .unwrap();
    assert_eq!(
        stored.len(),
        signed.iter().sum::<usize>(),
        "every acknowledged checkpoint is stored once"
    );
    assert!(stored.len() >= 2, "checkpoints were signed: {signed:?}");
    let sizes: Vec<u64> = stored
        .iter()
        .map(|event| {
            serde_json::from_str::<Value>(&event.data).unwrap()["tree_size"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(sizes.is_sorted_by(|a, b| a < b), "{sizes:?}");
    let report = ledger::verify::verify_log_with_key(first.as_ref(), Some(key.verifier()))
        .await
        .unwrap();
    assert_eq!(report.damage, None);
    assert_eq!(report.tree.checkpoint_damage, None);
    assert_eq!(report.tree.checkpoints, stored.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_store_store_one_checkpoint_per_tree_size_and_sizes_only_grow() {
    let log: Arc<dyn EventLog> = Arc::new(ledger::log::MemoryLog::new());
    two_servers_race_to_sign(log.clone(), log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgresql_store_one_checkpoint_per_tree_size() {
    let url = crate::postgres::TestPostgres::shared().create_database("audit_two_servers");
    let connect = || async {
        Arc::new(
            ledger::log::PostgresLog::connect(&url, ledger::log::PostgresOptions::default())
                .await
                .unwrap(),
        ) as Arc<dyn EventLog>
    };
    let (first, second) = (connect().await, connect().await);
    two_servers_race_to_sign(first, second).await;
}

#[test]
fn notes_verify_as_other_implementations_sign_them() {
    // The example of the C2SP signed-note ecosystem (Go's sumdb `note` package's format; the
    // same key and note other implementations publish): verified by the same code our
    // checkpoints go through.
    let verifier = signed_note::StandardVerifier::new(
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
    )
    .unwrap();
    let note = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
    let parsed = signed_note::Note::from_bytes(note.as_bytes()).unwrap();
    let verifiers = signed_note::VerifierList::new(vec![Box::new(verifier.clone())]);
    parsed.verify(&verifiers).unwrap();
    let altered = note.replace("example message", "exemplary message");
    let parsed = signed_note::Note::from_bytes(altered.as_bytes()).unwrap();
    assert!(parsed.verify(&verifiers).is_err());
    // Our key file is a Go note signer key, and its verifier key the matching one.
    let key = CheckpointKey::generate("example.org/log").unwrap();
    let signed = key.sign(3, &[9; 32]).unwrap();
    let parsed = signed_note::Note::from_bytes(signed.note.as_bytes()).unwrap();
    let ours = signed_note::StandardVerifier::new(key.verifier().key()).unwrap();
    parsed
        .verify(&signed_note::VerifierList::new(vec![Box::new(ours)]))
        .unwrap();
    assert!(key.verifier().open(&signed.note).is_ok());
    let other = CheckpointKey::generate("example.org/log").unwrap();
    assert!(other.verifier().open(&signed.note).is_err());
}

/// Runs `tools/verify_bundle.py` (the stand-alone verifier: Python's hashlib and the
/// `cryptography` package, none of the ledger's code) on `file`; its exit code and output.
fn standalone_verify(file: &std::path::Path, key: Option<&str>) -> (i32, String) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/verify_bundle.py");
    let mut command = std::process::Command::new(crate::support::python_venv());
    command.arg(&script).arg(file);
    if let Some(key) = key {
        command.args(["--key", key]);
    }
    let output = command.output().expect("running tools/verify_bundle.py");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_verifies_a_served_record_and_an_exported_bundle_without_the_ledgers_code() {
    ledger::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.display().to_string();
    // The ledger as the README runs it, signing a checkpoint at least every 200 ms.
    let served =
        crate::support::serve_binary(&data, &["--checkpoint-interval", "200ms"], "admin-token")
            .await;
    let base = served.base.clone();
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, token: &str, body: Option<Value>| {
        let mut request = client
            .request(method, format!("{base}{path}"))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.text().await.unwrap())
        }
    };
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;
    let mut tokens = Vec::new();
    for body in [
        json!({"name": "drafter", "role": "agent"}),
        json!({"name": "rita", "role": "reviewer", "queues": ["support"]}),
        json!({"name": "olga", "role": "auditor"}),
    ] {
        let (status, text) = call(post.clone(), "/v1/principals", "admin-token", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{text}");
        let added: Value = serde_json::from_str(&text).unwrap();
        tokens.push(added["token"].as_str().unwrap().to_owned());
    }
    let (agent, rita, auditor) = (&tokens[0], &tokens[1], &tokens[2]);
    let (status, text) = call(post.clone(), "/v1/items", agent, Some(reply_for_review())).await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let id = serde_json::from_str::<Value>(&text).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (action, body) in [
        ("claim", json!({})),
        (
            "edit",
            json!({"output": {"reply": "Dear Ms Jones, your refund was sent today."}}),
        ),
    ] {
        let (status, text) = call(
            post.clone(),
            &format!("/v1/items/{id}/{action}"),
            rita,
            Some(body),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{text}");
    }
    // The record, once a checkpoint covers all its events (the server signs within 200 ms).
    let record = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let (status, text) =
                call(get.clone(), &format!("/v1/items/{id}/record"), agent, None).await;
            assert_eq!(status, StatusCode::OK, "{text}");
            let record: Value = serde_json::from_str(&text).unwrap();
            if record["proven"] == record["events"].as_array().unwrap().len() {
                break text;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("a checkpoint covers the item's events");
    let (status, note) = call(get.clone(), "/v1/audit/checkpoints/latest", auditor, None).await;
    assert_eq!(status, StatusCode::OK);
    let latest: Value = serde_json::from_str(&note).unwrap();
    let key = latest["verifier_key"].as_str().unwrap().to_owned();
    // The key the auditor was given out of band is the one the operator prints.
    let (code, printed) =
        crate::support::run_ledger(["audit", "public-key", "--data-dir", &data_arg]);
    assert_eq!(code, 0, "{printed}");
    assert_eq!(printed.trim(), key);

    // The record verifies with the stand-alone script and with the CLI.
    let record_file = dir.path().join("record.json");
    std::fs::write(&record_file, &record).unwrap();
    let (code, out) = standalone_verify(&record_file, Some(&key));
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: 4 events"), "{out}");
    let record_arg = record_file.display().to_string();
    let (code, out) =
        crate::support::run_ledger(["audit", "verify-bundle", &record_arg, "--key", &key]);
    assert_eq!(code, 0, "{out}");
    // The saved checkpoint: the log still extends it.
    let saved = dir.path().join("saved.note");
    std::fs::write(&saved, latest["note"].as_str().unwrap()).unwrap();
    let saved_arg = saved.display().to_string();
    let (code, out) = crate::support::run_ledger([
        "audit",
        "verify",
        "--data-dir",
        &data_arg,
        "--trusted-checkpoint",
        &saved_arg,
    ]);
    assert_eq!(code, 0, "{out}");

    // A bundle exported beside the running server verifies with both, and fails with both once
    // one byte of one event in it is changed.
    let bundle_file = dir.path().join("bundle.json");
    let bundle_arg = bundle_file.display().to_string();
    let (code, out) = crate::support::run_ledger([
        "audit",
        "export",
        "--data-dir",
        &data_arg,
        "--item",
        &id,
        "--out",
        &bundle_arg,
    ]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = standalone_verify(&bundle_file, Some(&key));
    assert_eq!(code, 0, "{out}");
    let (code, out) = standalone_verify(&bundle_file, None);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("WARNING: checked with the key the bundle carries"),
        "{out}"
    );
    let (code, out) =
        crate::support::run_ledger(["audit", "verify-bundle", &bundle_arg, "--key", &key]);
    assert_eq!(code, 0, "{out}");
    let text = std::fs::read_to_string(&bundle_file).unwrap();
    let bundle: Value = serde_json::from_str(&text).unwrap();
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    let canonical = bundle["events"][1]["canonical"].as_str().unwrap();
    let mut bytes = engine.decode(canonical).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x01;
    let altered = dir.path().join("altered.json");
    std::fs::write(&altered, text.replace(canonical, &engine.encode(bytes))).unwrap();
    let (code, out) = standalone_verify(&altered, Some(&key));
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("NOT VERIFIED: event 1"), "{out}");
    let (code, out) = crate::support::run_ledger([
        "audit",
        "verify-bundle",
        &altered.display().to_string(),
        "--key",
        &key,
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("NOT VERIFIED: event 1"), "{out}");
    // A range bundle: every event recorded in the window, with the decisions among them.
    let range_file = dir.path().join("range.json");
    let range_arg = range_file.display().to_string();
    let (code, out) = crate::support::run_ledger([
        "audit",
        "export",
        "--data-dir",
        &data_arg,
        "--from",
        "2000-01-01T00:00:00Z",
        "--to",
        "2100-01-01T00:00:00Z",
        "--out",
        &range_arg,
    ]);
    assert_eq!(code, 0, "{out}");
    let range: Value =
        serde_json::from_str(&std::fs::read_to_string(&range_file).unwrap()).unwrap();
    assert_eq!(range["summary"]["scope"], "range");
    assert_eq!(range["summary"]["decisions"].as_array().unwrap().len(), 1);
    let (code, out) = standalone_verify(&range_file, Some(&key));
    assert_eq!(code, 0, "{out}");
    let (code, out) =
        crate::support::run_ledger(["audit", "verify-bundle", &range_arg, "--key", &key]);
    assert_eq!(code, 0, "{out}");
    // And the shown data, changed to say something the bytes do not.
    let shown = text.replacen("Dear Ms Jones", "Dear Mr Jones", 1);
    assert_ne!(shown, text);
    std::fs::write(&altered, shown).unwrap();
    assert_eq!(standalone_verify(&altered, Some(&key)).0, 1);
    assert_eq!(
        crate::support::run_ledger([
            "audit",
            "verify-bundle",
            &altered.display().to_string(),
            "--key",
            &key
        ])
        .0,
        1
    );
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_new_checkpoint_is_published_signed_by_the_checkpoint_key() {
    // A server with its background jobs: it signs within 100 ms of new events and POSTs each
    // checkpoint to a receiver, which refuses the first attempt.
    ledger::tls::install_crypto_provider();
    let (url, calls) = crate::api::spawn_receiver(1).await;
    let key = Arc::new(key());
    let log: Arc<dyn EventLog> = Arc::new(ledger::log::MemoryLog::new());
    let mut config = ledger::app::ServerConfig::new(
        ledger::clock::Clock::System,
        ledger::callbacks::CallbackKey::from_bytes([3; 32]),
    );
    config.admin_token = Some("admin-token".into());
    config.background = Some(ledger::app::Background {
        poll: std::time::Duration::from_millis(50),
        ..ledger::app::Background::default()
    });
    config.checkpoint_key = Some(key.clone());
    config.checkpoints = ledger::audit::checkpointer::CheckpointSettings {
        every_events: 1_000,
        interval: std::time::Duration::from_millis(100),
        publish: vec![url.parse().unwrap()],
    };
    let built = ledger::app::build(config, log.clone()).await.unwrap();
    let _keep = built.state;
    let published = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            let seen = calls.lock().unwrap().clone();
            // The first attempt was refused; the second is the one to check.
            if seen.len() >= 2 {
                assert_eq!(seen[0].1, seen[1].1, "the retry sends the same checkpoint");
                assert_eq!(seen[0].0["webhook-id"], seen[1].0["webhook-id"]);
                return seen[1].clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the checkpoint is published, again after a refusal");
    let (headers, body) = published;
    let note = String::from_utf8(body).unwrap();
    // The body is the stored checkpoint's signed note.
    let stored =
        ledger::log::read_whole_stream(log.as_ref(), projections::audit::CHECKPOINTS_STREAM)
            .await
            .unwrap();
    let checkpoint: projections::audit::CheckpointSigned =
        serde_json::from_str(&stored[0].data).unwrap();
    assert_eq!(note, checkpoint.note);
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(headers["webhook-id"], stored[0].id.to_string().as_str());
    key.verifier().open(&note).unwrap();
    // Standard Webhooks' asymmetric signature: Ed25519 over "{id}.{timestamp}.{body}", by the
    // key whose verifier key the auditors hold.
    let signature = headers["webhook-signature"].to_str().unwrap();
    let signature = signature.strip_prefix("v1a,").expect("a v1a signature");
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    let signature =
        ed25519_dalek::Signature::from_slice(&engine.decode(signature).unwrap()).unwrap();
    let public = engine
        .decode(key.verifier().key().splitn(3, '+').nth(2).unwrap())
        .unwrap();
    let public = ed25519_dalek::VerifyingKey::from_bytes(public[1..].try_into().unwrap()).unwrap();
    let message = format!(
        "{}.{}.{note}",
        headers["webhook-id"].to_str().unwrap(),
        headers["webhook-timestamp"].to_str().unwrap()
    );
    use ed25519_dalek::Verifier;
    public.verify(message.as_bytes(), &signature).unwrap();
    assert!(
        public
            .verify(
                message.replace("approvals", "approval").as_bytes(),
                &signature
            )
            .is_err()
    );
}
