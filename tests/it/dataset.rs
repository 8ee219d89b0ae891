//! The review dataset (`ledger export dataset`) round-trips: every decided item once, edits as
//! preference pairs carrying both outputs, rejections with their reasons.

use ledger::log::{EventLog, FileLog, FileLogOptions};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dataset_has_every_decided_item_once_with_both_outputs_of_each_edit() {
    let dir = tempfile::tempdir().unwrap();
    let decided: BTreeSet<String> = {
        let log: Arc<dyn EventLog> =
            Arc::new(FileLog::open(dir.path(), FileLogOptions::default(), "dataset test").unwrap());
        let until = chrono::DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        ledger::demo::seed(log.clone(), 600, 9, 6, until)
            .await
            .unwrap();
        crate::support::read_all_of(log.as_ref())
            .await
            .into_iter()
            .filter(|event| event.event_type == "ItemDecided")
            .map(|event| event.stream.trim_start_matches("item-").to_owned())
            .collect()
    };
    let out = dir.path().join("dataset.jsonl");
    crate::support::ledger_stdout([
        std::ffi::OsStr::new("--data-dir"),
        dir.path().as_os_str(),
        std::ffi::OsStr::new("export"),
        std::ffi::OsStr::new("dataset"),
        out.as_os_str(),
    ]);
    let text = std::fs::read_to_string(&out).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let ids: BTreeSet<String> = records
        .iter()
        .map(|record| record["item_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), records.len(), "each item once");
    assert_eq!(ids, decided, "every decided item, and only those");
    let (mut edits, mut rejections) = (0, 0);
    for record in &records {
        match record["decision"].as_str().unwrap() {
            "edited_and_approved" => {
                edits += 1;
                let preference = &record["preference"];
                assert_eq!(preference["chosen"], record["final_output"]);
                assert_eq!(preference["rejected"], record["ai_output"]);
                assert_eq!(preference["prompt"], record["context"]);
                assert_ne!(record["ai_output"], record["final_output"]);
            }
            "rejected" => {
                rejections += 1;
                assert!(record["reason"].is_string());
                assert!(record["final_output"].is_null());
                assert!(record["preference"].is_null());
            }
            "approved" => {
                assert_eq!(record["ai_output"], record["final_output"]);
                assert!(record["preference"].is_null());
            }
            _ => {}
        }
        assert!(
            !record["reviewers"].as_array().unwrap().is_empty()
                || record["decision"].as_str().unwrap().ends_with("expiry")
        );
    }
    assert!(
        edits > 0 && rejections > 0,
        "{edits} edits, {rejections} rejections"
    );
}
