//! The event log's contract (the conformance suite, [`conformance`]: every backend must pass it),
//! run here on the file log and the in-memory log (on PostgreSQL in `postgres_log.rs`); then what
//! is particular to the embedded file backend: reopening, the directory lock, segments, and the
//! torn tail.

use crate::support::{self, event, open};
use ledger::log::{EventLog, ExpectedVersion, FileLog, LogError};
use projections::event::ZERO_HASH;
use std::collections::HashSet;
use std::sync::Arc;

// ---- the conformance suite ----

async fn check_append_and_read(log: &dyn EventLog) {
    let head = log.head().await.unwrap();
    let first = log
        .append(
            "item-a",
            ExpectedVersion::NoStream,
            vec![
                event(
                    "ItemSubmitted",
                    serde_json::json!({"queue": "q", "confidence": 0.87}),
                ),
                event("ItemClaimed", serde_json::json!({"reviewer": "bob"})),
            ],
        )
        .await
        .expect("first append");
    assert_eq!(first.first_position, head);
    assert_eq!(first.last_position, head + 1);
    assert_eq!(first.stream_version, 1);
    assert!(!first.deduplicated);
    let other = log
        .append(
            "item-b",
            ExpectedVersion::Any,
            vec![event("ItemSubmitted", serde_json::json!({"queue": "r"}))],
        )
        .await
        .expect("append to another stream");
    assert_eq!(other.first_position, head + 2);
    assert_eq!(other.stream_version, 0);
    log.append(
        "item-a",
        ExpectedVersion::Exact(1),
        vec![event(
            "OutputApproved",
            serde_json::json!({"reviewer": "bob"}),
        )],
    )
    .await
    .expect("append at the expected version");

    let stream = log
        .read_stream("item-a", 0, 100)
        .await
        .expect("read stream");
    assert_eq!(stream.len(), 3);
    let versions: Vec<u64> = stream.iter().map(|event| event.version).collect();
    assert_eq!(versions, vec![0, 1, 2]);
    assert_eq!(stream[0].prev_hash, ZERO_HASH);
    assert_eq!(stream[1].prev_hash, stream[0].hash);
    assert_eq!(stream[2].prev_hash, stream[1].hash);
    assert_eq!(stream[2].position, head + 3);
    for recorded in &stream {
        assert_eq!(
            recorded.hash,
            recorded.computed_hash(),
            "stored hash is the payload's"
        );
        assert_eq!(recorded.actor, "tester");
        assert_eq!(recorded.schema_version, 1);
        assert!(recorded.correlation_id.is_some());
    }
    assert_eq!(
        stream[0].data_json().unwrap(),
        serde_json::json!({"queue": "q", "confidence": 0.87})
    );
    assert_eq!(stream[1].event_type, "ItemClaimed");
    assert!(stream[0].recorded_at <= stream[2].recorded_at);

    let from_version_one = log.read_stream("item-a", 1, 1).await.expect("read");
    assert_eq!(from_version_one.len(), 1);
    assert_eq!(from_version_one[0].version, 1);

    let all = log.read_all(head, 100).await.expect("read all");
    let positions: Vec<u64> = all.iter().map(|event| event.position).collect();
    assert_eq!(positions, (head..head + 4).collect::<Vec<_>>());
    assert_eq!(all[2].stream, "item-b");
    assert!(
        log.read_stream("no-such-stream", 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(log.read_all(head + 4, 10).await.unwrap().is_empty());
    assert_eq!(log.stream_version("item-a").await.unwrap(), Some(2));
    assert_eq!(log.stream_version("nothing").await.unwrap(), None);
}

async fn check_expected_versions(log: &dyn EventLog) {
    let one = || vec![event("CommentAdded", serde_json::json!({"text": "x"}))];
    log.append("item-c", ExpectedVersion::NoStream, one())
        .await
        .unwrap();
    let head = log.head().await.unwrap();
    match log.append("item-c", ExpectedVersion::NoStream, one()).await {
        Err(LogError::Conflict { current, .. }) => assert_eq!(current, Some(0)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    match log.append("item-c", ExpectedVersion::Exact(5), one()).await {
        Err(LogError::Conflict {
            current, expected, ..
        }) => {
            assert_eq!(current, Some(0));
            assert_eq!(expected, ExpectedVersion::Exact(5));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    match log
        .append("item-none", ExpectedVersion::Exact(0), one())
        .await
    {
        Err(LogError::Conflict { current, .. }) => assert_eq!(current, None),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(log.head().await.unwrap(), head, "a conflict writes nothing");
    let any = log
        .append("item-c", ExpectedVersion::Any, one())
        .await
        .unwrap();
    assert_eq!(any.stream_version, 1);
}

async fn check_idempotence(log: &dyn EventLog, capabilities: Capabilities) {
    let events = vec![
        event("ItemSubmitted", serde_json::json!({"n": 1})),
        event("ItemClaimed", serde_json::json!({"n": 2})),
    ];
    let first = log
        .append("item-d", ExpectedVersion::NoStream, events.clone())
        .await
        .unwrap();
    let head = log.head().await.unwrap();
    // A retry with the same ids answers the first result even though NoStream no longer holds.
    let again = log
        .append("item-d", ExpectedVersion::NoStream, events.clone())
        .await
        .unwrap();
    assert!(again.deduplicated);
    assert_eq!(again.first_position, first.first_position);
    assert_eq!(again.last_position, first.last_position);
    assert_eq!(again.stream_version, first.stream_version);
    assert_eq!(log.head().await.unwrap(), head, "a retry stores nothing");

    // A late retry, after more events on the stream (and elsewhere), still answers the first
    // result; the same ids in another order are not that append.
    for n in 0..5 {
        for stream in ["item-d", "item-d2"] {
            let more = vec![event("CommentAdded", serde_json::json!({ "n": n }))];
            log.append(stream, ExpectedVersion::Any, more)
                .await
                .unwrap();
        }
    }
    let head = log.head().await.unwrap();
    let late = log
        .append("item-d", ExpectedVersion::Exact(0), events.clone())
        .await
        .unwrap();
    assert!(late.deduplicated);
    assert_eq!(
        (late.first_position, late.last_position, late.stream_version),
        (
            first.first_position,
            first.last_position,
            first.stream_version
        )
    );
    let reversed = vec![events[1].clone(), events[0].clone()];
    assert!(matches!(
        log.append("item-d", ExpectedVersion::Any, reversed).await,
        Err(LogError::DuplicateEventId { id }) if id == events[1].id
    ));
    assert_eq!(log.head().await.unwrap(), head, "a retry stores nothing");

    // Part of the ids stored, part new: refused, nothing stored.
    let mixed = vec![
        events[0].clone(),
        event("CommentAdded", serde_json::json!({})),
    ];
    assert!(matches!(
        log.append("item-d", ExpectedVersion::Any, mixed).await,
        Err(LogError::DuplicateEventId { id }) if id == events[0].id
    ));
    // The same ids on another stream: refused where the backend sees every id at once.
    if capabilities.global_ids {
        assert!(matches!(
            log.append("item-e", ExpectedVersion::Any, events.clone())
                .await,
            Err(LogError::DuplicateEventId { .. })
        ));
    }
    // One id twice in one call: refused.
    let repeated = event("CommentAdded", serde_json::json!({}));
    assert!(matches!(
        log.append(
            "item-e",
            ExpectedVersion::Any,
            vec![repeated.clone(), repeated]
        )
        .await,
        Err(LogError::InvalidAppend(_))
    ));
    assert_eq!(log.head().await.unwrap(), head);
}

async fn check_atomicity(log: &dyn EventLog) {
    let head = log.head().await.unwrap();
    let mut bad = event("CommentAdded", serde_json::json!({}));
    bad.actor = String::new();
    let result = log
        .append(
            "item-f",
            ExpectedVersion::Any,
            vec![event("CommentAdded", serde_json::json!({})), bad],
        )
        .await;
    assert!(
        matches!(result, Err(LogError::InvalidAppend(_))),
        "{result:?}"
    );
    assert!(matches!(
        log.append("item-f", ExpectedVersion::Any, vec![]).await,
        Err(LogError::InvalidAppend(_))
    ));
    assert_eq!(
        log.head().await.unwrap(),
        head,
        "no event of a refused call is stored"
    );
    assert_eq!(log.stream_version("item-f").await.unwrap(), None);
}

/// Many tasks race for each version of one stream: exactly one wins each, the rest conflict.
async fn check_racing_appenders(log: Arc<dyn EventLog>) {
    let contenders = 24;
    let rounds = 25u64;
    for round in 0..rounds {
        let barrier = Arc::new(tokio::sync::Barrier::new(contenders));
        let mut tasks = Vec::new();
        for _ in 0..contenders {
            let log = log.clone();
            let barrier = barrier.clone();
            tasks.push(tokio::spawn(async move {
                let expected = match round {
                    0 => ExpectedVersion::NoStream,
                    _ => ExpectedVersion::Exact(round - 1),
                };
                barrier.wait().await;
                log.append(
                    "item-race",
                    expected,
                    vec![event("CommentAdded", serde_json::json!({"round": round}))],
                )
                .await
            }));
        }
        let mut winners = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(result) => {
                    assert_eq!(result.stream_version, round);
                    winners += 1;
                }
                Err(LogError::Conflict { current, .. }) => assert_eq!(current, Some(round)),
                Err(other) => panic!("unexpected error {other}"),
            }
        }
        assert_eq!(winners, 1, "round {round}: exactly one appender wins");
    }
    let stream = log.read_stream("item-race", 0, 1000).await.unwrap();
    assert_eq!(stream.len() as u64, rounds);

    // Free-running: read the version, append expecting it; count wins and conflicts.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let (mut wins, mut conflicts) = (Vec::new(), 0);
            for _ in 0..40 {
                let expected =
                    ExpectedVersion::Exact(log.stream_version("item-race").await.unwrap().unwrap());
                match log
                    .append(
                        "item-race",
                        expected,
                        vec![event("CommentAdded", serde_json::json!({}))],
                    )
                    .await
                {
                    Ok(result) => wins.push(result.stream_version),
                    Err(LogError::Conflict { .. }) => conflicts += 1,
                    Err(other) => panic!("unexpected error {other}"),
                }
            }
            (wins, conflicts)
        }));
    }
    let mut all_wins = Vec::new();
    let mut all_conflicts = 0;
    for task in tasks {
        let (wins, conflicts) = task.await.unwrap();
        all_wins.extend(wins);
        all_conflicts += conflicts;
    }
    assert_eq!(all_wins.len() + all_conflicts, 16 * 40);
    let unique: HashSet<u64> = all_wins.iter().copied().collect();
    assert_eq!(unique.len(), all_wins.len(), "no version was won twice");
    let stream = log.read_stream("item-race", 0, 10_000).await.unwrap();
    assert_eq!(stream.len() as u64, rounds + all_wins.len() as u64);
}

/// A subscription from the past catches up and then follows live appends made concurrently,
/// with no gap and no duplicate at the switch-over.
async fn check_subscription(log: Arc<dyn EventLog>) {
    for n in 0..300 {
        log.append(
            &format!("item-sub-{}", n % 7),
            ExpectedVersion::Any,
            vec![event("CommentAdded", serde_json::json!({"n": n}))],
        )
        .await
        .unwrap();
    }
    let start = log.head().await.unwrap() - 250;
    let mut subscription = log.subscribe(start);
    let writers = 8;
    let per_writer = 150;
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..per_writer {
                let batch = 1 + n % 3;
                let events = (0..batch)
                    .map(|_| event("CommentAdded", serde_json::json!({"writer": writer})))
                    .collect();
                log.append(&format!("item-live-{writer}"), ExpectedVersion::Any, events)
                    .await
                    .unwrap();
                if n % 10 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    let live_events: u64 = (0..per_writer).map(|n| 1 + n % 3).sum::<u64>() * writers;
    let end = start + 250 + live_events;
    let mut seen = Vec::new();
    while (seen.len() as u64) < end - start {
        let event = tokio::time::timeout(std::time::Duration::from_secs(30), subscription.next())
            .await
            .expect("the subscription keeps up")
            .expect("next event");
        seen.push(event);
    }
    for task in tasks {
        task.await.unwrap();
    }
    let positions: Vec<u64> = seen.iter().map(|event| event.position).collect();
    assert_eq!(
        positions,
        (start..end).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
    // read_all may stop at a segment's end: read on until everything since `start` is in.
    let mut stored = Vec::new();
    while (stored.len() as u64) < end - start {
        let batch = log
            .read_all(start + stored.len() as u64, 10_000)
            .await
            .unwrap();
        assert!(!batch.is_empty(), "read_all stopped before the head");
        stored.extend(batch);
    }
    assert_eq!(stored.len(), seen.len());
    assert!(
        stored == seen,
        "the subscription delivers exactly what is stored"
    );
    // Nothing more arrives until something is appended.
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(50), subscription.next())
            .await
            .is_err()
    );
}

/// What a backend can promise beyond the common contract.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    /// An id stored in one stream is refused in another (all but KurrentDB, which deduplicates
    /// per stream).
    pub global_ids: bool,
}

impl Capabilities {
    pub fn all() -> Capabilities {
        Capabilities { global_ids: true }
    }
}

/// The conformance suite: everything the contract promises, on a fresh `log`.
pub async fn conformance(log: Arc<dyn EventLog>, capabilities: Capabilities) {
    check_append_and_read(log.as_ref()).await;
    check_expected_versions(log.as_ref()).await;
    check_idempotence(log.as_ref(), capabilities).await;
    check_atomicity(log.as_ref()).await;
    check_racing_appenders(log.clone()).await;
    check_subscription(log.clone()).await;
    check_stamping(log.as_ref()).await;
}

/// Positions run 0, 1, 2, … without a gap in every read of the whole log; each stream's events
/// link and hash as `log::stamp` computes them, so that a stored event is byte for byte what the
/// file log would have stored for the same event at the same place and time.
async fn check_stamping(log: &dyn EventLog) {
    use ledger::log::stamp::{StreamTip, check_links, stamp};
    let everything = support::read_all_of(log).await;
    assert!(!everything.is_empty());
    let positions: Vec<u64> = everything.iter().map(|event| event.position).collect();
    let expected: Vec<u64> = (0..everything.len() as u64).collect();
    assert_eq!(positions, expected, "positions are ordinals without a gap");
    assert_eq!(log.head().await.unwrap(), everything.len() as u64);
    let mut tips: std::collections::HashMap<String, StreamTip> = Default::default();
    for stored in &everything {
        let tip = tips.get(&stored.stream).copied();
        check_links(tip, std::slice::from_ref(stored)).unwrap();
        let again = projections::event::NewEvent {
            id: stored.id,
            event_type: stored.event_type.clone(),
            schema_version: stored.schema_version,
            data: serde_json::value::RawValue::from_string(stored.data.clone()).unwrap(),
            actor: stored.actor.clone(),
            causation_id: stored.causation_id,
            correlation_id: stored.correlation_id,
        };
        let mut restamped = Vec::new();
        let new_tip = stamp(
            &stored.stream,
            tip,
            stored.position,
            stored.recorded_at.timestamp_micros(),
            vec![again],
            &mut Vec::new(),
            |event, _| restamped.push(event),
        );
        assert_eq!(
            &restamped[0], stored,
            "stored as the common stamping makes it"
        );
        tips.insert(stored.stream.clone(), new_tip);
    }
    for (stream, tip) in &tips {
        assert_eq!(log.stream_version(stream).await.unwrap(), Some(tip.version));
    }
    // Recorded times never go backwards in the global order.
    assert!(
        everything
            .windows(2)
            .all(|pair| pair[0].recorded_at <= pair[1].recorded_at)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_log_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(open(dir.path()));
    conformance(log, Capabilities::all()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_log_conforms() {
    conformance(Arc::new(ledger::log::MemoryLog::new()), Capabilities::all()).await;
}

// ---- the embedded backend in particular ----

/// Subscriptions take the live end of the log from the writer's memory (`Recent`) and anything
/// older from the file. With a window of a few events, the subscription of the conformance check
/// starts in the file, reaches the window, and falls back to the file whenever the eight writers
/// push past it: it still sees every event once, in order, equal to what is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscription_crossing_between_file_and_memory_misses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let options = ledger::log::FileLogOptions {
        recent_bytes: 4 * 1024,
        ..support::small_segments()
    };
    let log: Arc<dyn EventLog> = Arc::new(FileLog::open(dir.path(), options, "test").unwrap());
    check_subscription(log).await;
}

#[tokio::test]
async fn reopened_log_continues_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    support::fill(dir.path(), 5, 40).await;
    let segments = ledger::log::segment::list_segments(dir.path()).unwrap();
    assert!(
        segments.len() > 3,
        "small segments roll: {}",
        segments.len()
    );
    let log = open(dir.path());
    assert_eq!(log.head().await.unwrap(), 200);
    assert_eq!(log.stream_version("item-3").await.unwrap(), Some(39));
    let before = support::read_everything(&log).await;
    assert_eq!(before.len(), 200);
    let next = log
        .append(
            "item-3",
            ExpectedVersion::Exact(39),
            vec![event("CommentAdded", serde_json::json!({}))],
        )
        .await
        .unwrap();
    assert_eq!(next.first_position, 200);
    let stream = log.read_stream("item-3", 39, 10).await.unwrap();
    assert_eq!(
        stream[1].prev_hash, stream[0].hash,
        "the stream's chain continues"
    );
    drop(log);
    let report = ledger::verify::verify(dir.path(), &|_| {}).unwrap();
    assert_eq!(report.damage, None);
    assert_eq!(report.events, 201);
    assert_eq!(report.streams, 5);
}

#[tokio::test]
async fn a_second_writer_is_refused_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    let error = FileLog::open(dir.path(), support::small_segments(), "second")
        .expect_err("a second writer must be refused");
    let message = format!("{error:#}");
    assert!(message.contains("in use by another process"), "{message}");
    assert!(
        message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );
    assert!(message.contains("(test)"), "names what holds it: {message}");
    // Readers are welcome beside the writer.
    FileLog::open_read_only(dir.path()).expect("read-only open beside a writer");
    drop(first);
    FileLog::open(dir.path(), support::small_segments(), "second").expect("free again");
}

fn last_segment(dir: &std::path::Path) -> std::path::PathBuf {
    ledger::log::segment::list_segments(dir)
        .unwrap()
        .pop()
        .unwrap()
        .1
}

fn append_bytes(path: &std::path::Path, bytes: &[u8]) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

#[tokio::test]
async fn a_torn_tail_is_cut_on_open() {
    let dir = tempfile::tempdir().unwrap();
    support::fill(dir.path(), 3, 10).await;
    let segment = last_segment(dir.path());
    let intact_len = std::fs::metadata(&segment).unwrap().len();

    // A record cut short: a header that promises more payload than there is.
    let mut torn = b"LREC".to_vec();
    torn.extend_from_slice(&500u32.to_be_bytes());
    torn.extend_from_slice(&30u64.to_be_bytes());
    torn.extend_from_slice(&[0xab; 60]);
    append_bytes(&segment, &torn);
    let log = open(dir.path());
    assert_eq!(log.head().await.unwrap(), 30);
    assert_eq!(
        std::fs::metadata(&segment).unwrap().len(),
        intact_len,
        "the tail was cut"
    );
    let appended = log
        .append(
            "item-0",
            ExpectedVersion::Exact(9),
            vec![event("CommentAdded", serde_json::json!({}))],
        )
        .await
        .unwrap();
    assert_eq!(appended.first_position, 30);
    drop(log);

    // Zeros after the last record (what the writer preallocates, or what a file system extends a
    // file with) are the end of the log: kept, reused, and trimmed when the writer stops.
    let segment = last_segment(dir.path());
    let intact_len = std::fs::metadata(&segment).unwrap().len();
    append_bytes(&segment, &[0u8; 4096]);
    let report = ledger::verify::verify(dir.path(), &|_| {}).unwrap();
    assert_eq!(
        (report.damage, report.incomplete_tail, report.events),
        (None, None, 31)
    );
    let log = open(dir.path());
    assert_eq!(log.head().await.unwrap(), 31);
    let appended = log
        .append(
            "item-1",
            ExpectedVersion::Exact(9),
            vec![event("CommentAdded", serde_json::json!({}))],
        )
        .await
        .unwrap();
    assert_eq!(appended.first_position, 31);
    assert_eq!(log.read_stream("item-1", 10, 1).await.unwrap().len(), 1);
    drop(log);
    let report = ledger::verify::verify(dir.path(), &|_| {}).unwrap();
    assert_eq!((report.damage, report.events), (None, 32));
    let bytes = std::fs::read(&segment).unwrap();
    assert!(
        bytes.len() as u64 > intact_len,
        "the new record follows the old ones"
    );
    assert_eq!(
        ledger::log::segment::trailing_zeros_start(&bytes),
        bytes.len(),
        "the preallocated zeros were trimmed when the writer stopped"
    );
}

#[tokio::test]
async fn damage_before_the_tail_is_an_error_naming_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    support::fill(dir.path(), 3, 30).await;
    let segments = ledger::log::segment::list_segments(dir.path()).unwrap();
    let (_, first_segment) = &segments[0];
    let mut bytes = std::fs::read(first_segment).unwrap();
    // Inside the second record's header: its position field.
    let second_record = 48 + 80 + u32::from_be_bytes(bytes[52..56].try_into().unwrap()) as usize;
    bytes[second_record + 12] ^= 0x01;
    std::fs::write(first_segment, &bytes).unwrap();
    let error = FileLog::open(dir.path(), support::small_segments(), "test").expect_err("refused");
    let message = format!("{error:#}");
    assert!(
        message.contains("segment-00000000000000000000.log"),
        "{message}"
    );
    assert!(
        message.contains(&format!("offset {second_record}")),
        "{message}"
    );
}

#[tokio::test]
async fn read_only_open_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    support::fill(dir.path(), 2, 5).await;
    let segment = last_segment(dir.path());
    append_bytes(&segment, b"LREC\0\0");
    let len = std::fs::metadata(&segment).unwrap().len();
    let log = FileLog::open_read_only(dir.path()).unwrap();
    assert_eq!(log.head().await.unwrap(), 10);
    assert!(matches!(
        log.append(
            "item-0",
            ExpectedVersion::Any,
            vec![event("CommentAdded", serde_json::json!({}))]
        )
        .await,
        Err(LogError::InvalidAppend(_))
    ));
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), len);
}

#[tokio::test]
async fn a_torn_record_followed_by_zeros_and_a_torn_segment_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    support::fill(dir.path(), 2, 5).await;
    let segment = last_segment(dir.path());
    let intact_len = std::fs::metadata(&segment).unwrap().len();
    // A complete-looking header for position 10, part of its payload, then zeros well past it:
    // the block holding the rest of the batch never reached the disk.
    let mut torn = b"LREC".to_vec();
    torn.extend_from_slice(&300u32.to_be_bytes());
    torn.extend_from_slice(&10u64.to_be_bytes());
    torn.extend_from_slice(&[0x42; 150]);
    torn.extend_from_slice(&[0u8; 4000]);
    append_bytes(&segment, &torn);
    let report = ledger::verify::verify(dir.path(), &|_| {}).unwrap();
    assert_eq!(report.damage, None, "a torn tail is not damage");
    assert!(report.incomplete_tail.is_some());
    assert_eq!(report.events, 10);
    let log = open(dir.path());
    assert_eq!(log.head().await.unwrap(), 10);
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), intact_len);
    drop(log);

    // A crash right after creating the next segment's file, before its header was written whole.
    let next = dir.path().join(ledger::log::segment::segment_file_name(10));
    std::fs::write(&next, b"LEDGSEG1\0\0\0").unwrap();
    let report = ledger::verify::verify(dir.path(), &|_| {}).unwrap();
    assert_eq!(report.damage, None);
    assert!(
        report
            .incomplete_tail
            .unwrap()
            .contains("no complete header")
    );
    let log = open(dir.path());
    assert!(!next.exists(), "the torn segment was removed");
    log.append(
        "item-0",
        ExpectedVersion::Exact(4),
        vec![event("CommentAdded", serde_json::json!({}))],
    )
    .await
    .unwrap();
    drop(log);
    assert_eq!(
        ledger::verify::verify(dir.path(), &|_| {}).unwrap().events,
        11
    );
}

#[tokio::test]
async fn a_cut_short_record_with_the_wrong_position_is_damage_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    support::fill(dir.path(), 2, 5).await;
    let mut torn = b"LREC".to_vec();
    torn.extend_from_slice(&300u32.to_be_bytes());
    torn.extend_from_slice(&99u64.to_be_bytes());
    torn.extend_from_slice(&[0x42; 40]);
    append_bytes(&last_segment(dir.path()), &torn);
    let report = ledger::verify::verify(dir.path(), &|_| {}).unwrap();
    assert_eq!(report.damage.map(|damage| damage.position), Some(10));
    assert!(FileLog::open(dir.path(), support::small_segments(), "test").is_err());
}
