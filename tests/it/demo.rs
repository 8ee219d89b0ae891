//! `ledger demo seed`: a history through the real domain and a real file log, the same for a
//! seed, with every kind of event a review produces.

use crate::support::read_all_of;
use ledger::log::{EventLog, FileLog, FileLogOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Seeds a fresh data directory; every item's events as (type, data) in order, by stream.
async fn seeded(seed: u64, items: usize) -> (BTreeMap<String, Vec<(String, String)>>, u64) {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> =
        Arc::new(FileLog::open(dir.path(), FileLogOptions::default(), "demo test").unwrap());
    let until = chrono::DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let report = ledger::demo::seed(log.clone(), items, seed, 6, until)
        .await
        .unwrap();
    assert_eq!(report.items, items);
    assert_eq!(
        report.tokens.len(),
        10,
        "three agents, six reviewers, an auditor"
    );
    let mut streams: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for event in read_all_of(log.as_ref()).await {
        if event.stream.starts_with("item-") {
            streams
                .entry(event.stream)
                .or_default()
                .push((event.event_type, event.data));
        }
    }
    (streams, report.events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_writes_the_same_varied_history_through_the_domain() {
    let (first, events) = seeded(11, 400).await;
    let (again, events_again) = seeded(11, 400).await;
    assert_eq!(first.len(), 400);
    assert_eq!(events, events_again);
    assert!(first == again, "the same seed writes the same history");
    let (other, _) = seeded(12, 400).await;
    assert!(first != other, "another seed writes another history");

    let types: BTreeSet<&str> = first
        .values()
        .flatten()
        .map(|(event_type, _)| event_type.as_str())
        .collect();
    for expected in [
        "ItemSubmitted",
        "ItemClaimed",
        "OutputApproved",
        "OutputEdited",
        "OutputRejected",
        "ChangesRequested",
        "OutputRevised",
        "ItemEscalated",
        "CommentAdded",
        "ItemExpired",
        "ItemDecided",
    ] {
        assert!(types.contains(expected), "no {expected} in {types:?}");
    }
    // The last 5% are still open; the rest reached an end.
    let open = first
        .values()
        .filter(|events| {
            !events
                .iter()
                .any(|(event_type, _)| event_type == "ItemDecided" || event_type == "ItemWithdrawn")
        })
        .count();
    assert!((20..=30).contains(&open), "{open} items open");
    // Four-eyes items got two approvals from two reviewers.
    let four_eyes = first.values().filter(|events| {
        events.iter().any(|(event_type, data)| {
            event_type == "ItemSubmitted" && data.contains("\"required_approvals\":2")
        })
    });
    let mut checked = 0;
    for events in four_eyes {
        let approvers: BTreeSet<String> = events
            .iter()
            .filter(|(event_type, _)| {
                event_type == "OutputApproved" || event_type == "OutputEdited"
            })
            .map(|(_, data)| {
                serde_json::from_str::<serde_json::Value>(data).unwrap()["reviewer"].to_string()
            })
            .collect();
        if events
            .iter()
            .any(|(event_type, data)| event_type == "ItemDecided" && !data.contains("rejected"))
        {
            assert_eq!(approvers.len(), 2, "{events:?}");
            checked += 1;
        }
    }
    assert!(checked > 0, "some four-eyes items were approved");
}
