//! Helpers shared by the integration tests: scratch data directories, sample events, the binary.

use ledger::log::{EventLog, ExpectedVersion, FileLog, FileLogOptions};
use projections::event::NewEvent;
use std::path::Path;
use uuid::Uuid;

/// The `ledger` binary Cargo built for this test run.
pub fn ledger_binary() -> &'static str {
    env!("CARGO_BIN_EXE_ledger")
}

pub fn event(kind: &str, data: serde_json::Value) -> NewEvent {
    NewEvent {
        id: Uuid::new_v4(),
        event_type: kind.into(),
        schema_version: 1,
        data: serde_json::value::to_raw_value(&data).expect("a Value always serializes"),
        actor: "tester".into(),
        causation_id: None,
        correlation_id: Some(Uuid::new_v4()),
    }
}

/// Options with tiny segments, so that tests cross segment boundaries.
pub fn small_segments() -> FileLogOptions {
    FileLogOptions {
        segment_size: 8 * 1024,
        ..FileLogOptions::default()
    }
}

pub fn open(dir: &Path) -> FileLog {
    FileLog::open(dir, small_segments(), "test").expect("open log")
}

/// Fills a log with `streams` streams of `per_stream` events each, interleaved, in small segments.
pub async fn fill(dir: &Path, streams: usize, per_stream: usize) {
    let log = open(dir);
    for version in 0..per_stream {
        for stream in 0..streams {
            let expected = match version {
                0 => ExpectedVersion::NoStream,
                _ => ExpectedVersion::Exact(version as u64 - 1),
            };
            log.append(
                &format!("item-{stream}"),
                expected,
                vec![event(
                    "CommentAdded",
                    serde_json::json!({"text": format!("comment {version} on {stream}"), "n": version}),
                )],
            )
            .await
            .expect("append");
        }
    }
}

/// Reads every event of a log.
pub async fn read_everything(log: &FileLog) -> Vec<projections::event::RecordedEvent> {
    let mut events = Vec::new();
    loop {
        let batch = log.read_all(events.len() as u64, 1000).await.expect("read");
        if batch.is_empty() {
            return events;
        }
        events.extend(batch);
    }
}
