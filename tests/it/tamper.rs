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
    assert_eq!(verdict.code, 1, "{case}: verify must exit 1; it said {}", verdict.stdout);
    assert!(
        verdict.stdout.contains(&format!("DAMAGED at position {position} (segment {segment_name}")),
        "{case}: expected position {position} in {segment_name}; verify said: {}",
        verdict.stdout
    );
}

#[tokio::test]
async fn verify_passes_an_intact_log() {
    let dir = pristine().await;
    let verdict = run_verify(dir.path());
    assert_eq!(verdict.code, 0, "{}", verdict.stdout);
    assert!(verdict.stdout.starts_with("ok: 120 events in 4 streams"), "{}", verdict.stdout);
}

#[tokio::test]
async fn verify_catches_each_alteration() {
    let original = pristine().await;
    let (first, path, records) = segment(original.path(), 1);
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let bytes = std::fs::read(&path).unwrap();
    let target = records[2].clone();

    // One byte flipped inside a record's data.
    let dir = copy_dir(original.path());
    let mut altered = bytes.clone();
    altered[target.end - 3] ^= 0x01;
    std::fs::write(dir.path().join(&name), &altered).unwrap();
    assert_caught(dir.path(), first + 2, &name, "flipped byte");

    // One record deleted.
    let dir = copy_dir(original.path());
    let mut altered = bytes[..target.start].to_vec();
    altered.extend_from_slice(&bytes[target.end..]);
    std::fs::write(dir.path().join(&name), &altered).unwrap();
    assert_caught(dir.path(), first + 2, &name, "deleted record");

    // Two records swapped.
    let dir = copy_dir(original.path());
    let next = records[3].clone();
    let mut altered = bytes[..target.start].to_vec();
    altered.extend_from_slice(&bytes[next.clone()]);
    altered.extend_from_slice(&bytes[target.clone()]);
    altered.extend_from_slice(&bytes[next.end..]);
    std::fs::write(dir.path().join(&name), &altered).unwrap();
    assert_caught(dir.path(), first + 2, &name, "swapped records");

    // Truncated in the middle of a (closed) segment.
    let dir = copy_dir(original.path());
    std::fs::write(dir.path().join(&name), &bytes[..target.start + 40]).unwrap();
    assert_caught(dir.path(), first + 2, &name, "truncated segment");

    // The data changed and the event hash recomputed to match: the chain hash gives it away.
    let dir = copy_dir(original.path());
    let mut altered = bytes.clone();
    altered[target.end - 3] ^= 0x01;
    let payload = &altered[target.start + 80..target.end];
    let rehashed = projections::event::sha256(payload);
    altered[target.start + 16..target.start + 48].copy_from_slice(&rehashed);
    std::fs::write(dir.path().join(&name), &altered).unwrap();
    assert_caught(dir.path(), first + 2, &name, "recomputed event hash");

    // A whole segment removed.
    let dir = copy_dir(original.path());
    std::fs::remove_file(dir.path().join(&name)).unwrap();
    let (_, next_path, _) = segment(original.path(), 2);
    let next_name = next_path.file_name().unwrap().to_string_lossy().into_owned();
    assert_caught(dir.path(), first, &next_name, "removed segment");

    // The very last record altered: damage, not mistaken for a torn tail.
    let dir = copy_dir(original.path());
    let last_number = list_segments(dir.path()).unwrap().len() - 1;
    let (last_first, last_path, last_records) = segment(dir.path(), last_number);
    let last_name = last_path.file_name().unwrap().to_string_lossy().into_owned();
    let mut last_bytes = std::fs::read(&last_path).unwrap();
    let last_record = last_records.last().unwrap().clone();
    last_bytes[last_record.start + 100] ^= 0x20;
    std::fs::write(&last_path, &last_bytes).unwrap();
    assert_caught(
        dir.path(),
        last_first + last_records.len() as u64 - 1,
        &last_name,
        "altered last record",
    );
}
