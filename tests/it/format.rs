//! The file format as a third party sees it: `tests/python/read_ledger.py`, written from
//! `docs/ledger-format.md` alone with Python's standard library, must read what the Rust code
//! writes, recompute the same hashes, and find the same damage as `ledger verify`.

use crate::support::{event, fill, open, read_everything};
use ledger::log::{EventLog, ExpectedVersion};
use std::path::Path;
use std::process::Command;

fn reader_script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/read_ledger.py")
}

/// Runs the independent reader; python3 must be installed (scripts/test-all.sh installs it).
fn python_reader(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let output = Command::new("python3")
        .arg(reader_script())
        .args(args)
        .output()
        .expect("python3 is needed for the independent format check: install it (apt-get install python3)");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn the_reader_passes_the_documents_worked_example() {
    let (code, stdout) = python_reader(&["--self-test".as_ref()]);
    assert_eq!(code, 0, "{stdout}");
}

#[tokio::test]
async fn the_independent_reader_agrees_with_the_ledger_on_an_intact_log() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 5, 12).await;
    {
        // Multi-event appends, unicode, numbers and nested data, causation ids.
        let log = open(dir.path());
        let mut first = event(
            "OutputEdited",
            serde_json::json!({"edited_output": {"text": "Grüße — naïve café ✓", "score": 0.1, "big": 12345678901234567u64, "list": [1, -2.5e-7, null, true]}}),
        );
        first.causation_id = Some(uuid::Uuid::new_v4());
        let second = event(
            "ItemDecided",
            serde_json::json!({"outcome": "edited_and_approved"}),
        );
        log.append(
            "item-unicode",
            ExpectedVersion::NoStream,
            vec![first, second],
        )
        .await
        .unwrap();
    }
    let rust_report = ledger::verify::verify(dir.path(), &|_| {}).unwrap();
    assert_eq!(rust_report.damage, None);

    let (code, stdout) = python_reader(&[dir.path().as_os_str()]);
    assert_eq!(code, 0, "{stdout}");
    let python_report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(python_report["ok"], true);
    assert_eq!(python_report["events"], rust_report.events);
    assert_eq!(python_report["streams"], rust_report.streams);
    assert_eq!(python_report["segments"], rust_report.segments);
    assert_eq!(
        python_report["head_chain_hash"],
        rust_report.head_chain_hash
    );

    let (code, stdout) = python_reader(&["--dump".as_ref(), dir.path().as_os_str()]);
    assert_eq!(code, 0);
    let dumped: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let log = ledger::log::FileLog::open_read_only(dir.path()).unwrap();
    let stored = read_everything(&log).await;
    assert_eq!(dumped.len(), stored.len());
    for (python, rust) in dumped.iter().zip(&stored) {
        assert_eq!(python["position"], rust.position);
        assert_eq!(python["stream"], rust.stream);
        assert_eq!(python["version"], rust.version);
        assert_eq!(python["id"], rust.id.to_string());
        assert_eq!(python["type"], rust.event_type);
        assert_eq!(python["schema_version"], rust.schema_version);
        assert_eq!(
            python["recorded_at_micros"],
            rust.recorded_at.timestamp_micros()
        );
        assert_eq!(python["actor"], rust.actor);
        assert_eq!(
            python["causation_id"],
            serde_json::json!(rust.causation_id.map(|id| id.to_string()))
        );
        assert_eq!(
            python["correlation_id"],
            serde_json::json!(rust.correlation_id.map(|id| id.to_string()))
        );
        assert_eq!(python["hash"], hex::encode(rust.hash));
        assert_eq!(python["prev_hash"], hex::encode(rust.prev_hash));
        assert_eq!(python["data"], rust.data_json().unwrap());
    }
}

#[tokio::test]
async fn the_independent_reader_finds_the_same_damage() {
    for tampered in crate::tamper::tampered_copies().await {
        let (code, stdout) = python_reader(&[tampered.dir.path().as_os_str()]);
        assert_eq!(
            code, 1,
            "{}: the reader must report damage: {stdout}",
            tampered.case
        );
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(
            report["damage"]["position"], tampered.position,
            "{}: {stdout}",
            tampered.case
        );
        assert_eq!(
            report["damage"]["segment"], tampered.segment,
            "{}",
            tampered.case
        );
    }
}
