//! Tamper detection: each kind of alteration of a log on disk is caught by `ledger verify` (the
//! real binary), which exits 1 and names the first bad position.

use crate::support::{fill, ledger_binary};
use ledger::log::segment::{FrameAt, SEGMENT_HEADER_LEN, frame_at, list_segments};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A log of 120 events over several small segments, copied fresh for each case.
async fn pristine() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 4, 30).await;
    assert!(list_segments(dir.path()).unwrap().len() >= 3);
    dir
}

fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for (_, path) in list_segments(from).unwrap() {
        std::fs::copy(&path, to.path().join(path.file_name().unwrap())).unwrap();
    }
    to
}

/// (first position, path, byte ranges of its records) of the `number`-th segment.
fn segment(dir: &Path, number: usize) -> (u64, PathBuf, Vec<std::ops::Range<usize>>) {
    let (first, path) = list_segments(dir).unwrap().swap_remove(number);
    let bytes = std::fs::read(&path).unwrap();
    let mut ranges = Vec::new();
    let mut offset = SEGMENT_HEADER_LEN;
    while let FrameAt::Frame(frame) = frame_at(&bytes[offset..]) {
        ranges.push(offset..offset + frame.len);
        offset += frame.len;
    }
    (first, path, ranges)
}

struct Verdict {
    code: i32,
    stdout: String,
}

fn run_verify(dir: &Path) -> Verdict {
    let output = Command::new(ledger_binary())
        .arg("verify")
        .arg("--data-dir")
        .arg(dir)
        .env("LEDGER_LOG", "warn")
        .output()
        .expect("running ledger verify");
    Verdict {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
    }
}

fn assert_caught(dir: &Path, position: u64, segment_name: &str, case: &str) {
    let verdict = run_verify(dir);
    assert_eq!(
        verdict.code, 1,
        "{case}: verify must exit 1; it said {}",
        verdict.stdout
    );
    assert!(
        verdict.stdout.contains(&format!(
            "DAMAGED at position {position} (segment {segment_name}"
        )),
        "{case}: expected position {position} in {segment_name}; verify said: {}",
        verdict.stdout
    );
}

#[tokio::test]
async fn verify_passes_an_intact_log() {
    let dir = pristine().await;
    let verdict = run_verify(dir.path());
    assert_eq!(verdict.code, 0, "{}", verdict.stdout);
    assert!(
        verdict.stdout.starts_with("ok: 120 events in 4 streams"),
        "{}",
        verdict.stdout
    );
}

/// One altered copy of a log, and where the first damage must be reported.
pub struct Tampered {
    pub case: &'static str,
    pub dir: tempfile::TempDir,
    pub position: u64,
    pub segment: String,
}

/// Copies of a pristine log, each altered in one way.
pub async fn tampered_copies() -> Vec<Tampered> {
    let original = pristine().await;
    let (first, path, records) = segment(original.path(), 1);
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let bytes = std::fs::read(&path).unwrap();
    let target = records[2].clone();
    let mut cases = Vec::new();
    let mut altered_copy =
        |case: &'static str, altered: Option<Vec<u8>>, position: u64, segment: &str| {
            let dir = copy_dir(original.path());
            match altered {
                Some(altered) => std::fs::write(dir.path().join(&name), altered).unwrap(),
                None => std::fs::remove_file(dir.path().join(&name)).unwrap(),
            }
            cases.push(Tampered {
                case,
                dir,
                position,
                segment: segment.to_owned(),
            });
        };

    let mut flipped = bytes.clone();
    flipped[target.end - 3] ^= 0x01;
    altered_copy("flipped byte", Some(flipped.clone()), first + 2, &name);

    let mut deleted = bytes[..target.start].to_vec();
    deleted.extend_from_slice(&bytes[target.end..]);
    altered_copy("deleted record", Some(deleted), first + 2, &name);

    let next = records[3].clone();
    let mut swapped = bytes[..target.start].to_vec();
    swapped.extend_from_slice(&bytes[next.clone()]);
    swapped.extend_from_slice(&bytes[target.clone()]);
    swapped.extend_from_slice(&bytes[next.end..]);
    altered_copy("swapped records", Some(swapped), first + 2, &name);

    altered_copy(
        "truncated segment",
        Some(bytes[..target.start + 40].to_vec()),
        first + 2,
        &name,
    );

    // The data changed and the event hash recomputed to match: the chain hash gives it away.
    let mut rehashed = flipped;
    let new_hash = projections::event::sha256(&rehashed[target.start + 80..target.end]);
    rehashed[target.start + 16..target.start + 48].copy_from_slice(&new_hash);
    altered_copy("recomputed event hash", Some(rehashed), first + 2, &name);

    let (_, next_path, _) = segment(original.path(), 2);
    let next_name = next_path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    altered_copy("removed segment", None, first, &next_name);

    // The very last record altered: damage, not mistaken for a torn tail; also with the zeros
    // the writer preallocates after it.
    let last_number = list_segments(original.path()).unwrap().len() - 1;
    let (last_first, last_path, last_records) = segment(original.path(), last_number);
    let last_name = last_path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut last_bytes = std::fs::read(&last_path).unwrap();
    last_bytes[last_records.last().unwrap().start + 100] ^= 0x20;
    for (case, zeros) in [
        ("altered last record", 0),
        ("altered last record before preallocated zeros", 4096),
    ] {
        let dir = copy_dir(original.path());
        let mut altered = last_bytes.clone();
        altered.resize(altered.len() + zeros, 0);
        std::fs::write(dir.path().join(&last_name), &altered).unwrap();
        cases.push(Tampered {
            case,
            dir,
            position: last_first + last_records.len() as u64 - 1,
            segment: last_name.clone(),
        });
    }
    cases
}

#[tokio::test]
async fn verify_catches_each_alteration() {
    let cases = tampered_copies().await;
    assert_eq!(cases.len(), 8);
    for tampered in &cases {
        assert_caught(
            tampered.dir.path(),
            tampered.position,
            &tampered.segment,
            tampered.case,
        );
        // Never silently skipped: the writer refuses to open the log (structure, and every hash
        // of the last segment, are checked on open), or reading the damaged record fails (older
        // segments' hashes are checked on every read).
        match ledger::log::FileLog::open(tampered.dir.path(), Default::default(), "test") {
            Err(_) => {}
            Ok(log) => {
                use ledger::log::EventLog;
                let mut position = 0;
                let outcome = loop {
                    match log.read_all(position, 1000).await {
                        Ok(events) if events.is_empty() => break None,
                        Ok(events) => position += events.len() as u64,
                        Err(error) => break Some(error),
                    }
                };
                assert!(
                    matches!(outcome, Some(ledger::log::LogError::Corrupt { .. })),
                    "{}: opened, and reading everything gave {outcome:?}",
                    tampered.case
                );
                assert!(position <= tampered.position, "{}", tampered.case);
            }
        }
    }
}

/// A log built record by record with the format's own functions, so that it can hold what the
/// writer never writes: here, one event id twice (in two streams, every hash and link valid).
#[test]
fn verify_catches_a_repeated_event_id() {
    use ledger::log::segment::{encode_frame, encode_segment_header, segment_file_name};
    use projections::event::{PayloadFields, ZERO_HASH, encode_payload};
    let dir = tempfile::tempdir().unwrap();
    let repeated = uuid::Uuid::new_v4();
    let mut segment = encode_segment_header(0, &ZERO_HASH).to_vec();
    let mut chain = ZERO_HASH;
    for (position, (id, stream)) in [
        (uuid::Uuid::new_v4(), "item-a"),
        (repeated, "item-b"),
        (repeated, "item-c"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut payload = Vec::new();
        encode_payload(
            &PayloadFields {
                id,
                stream,
                version: 0,
                event_type: "CommentAdded",
                schema_version: 1,
                recorded_at_micros: 1_764_000_000_000_000,
                actor: "forger",
                causation_id: None,
                correlation_id: None,
                prev_hash: ZERO_HASH,
                data: "{}",
            },
            &mut payload,
        );
        chain = encode_frame(
            &mut segment,
            position as u64,
            &payload,
            &projections::event::sha256(&payload),
            &chain,
        );
    }
    std::fs::write(dir.path().join(segment_file_name(0)), &segment).unwrap();
    let report = ledger::verify::verify(dir.path(), &|_| {}).unwrap();
    let damage = report.damage.expect("a repeated id is damage");
    assert_eq!(damage.position, 2);
    assert!(damage.reason.contains("stored twice"), "{}", damage.reason);
    assert_eq!(damage.stream.as_deref(), Some("item-c"));
}
