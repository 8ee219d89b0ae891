//! Crash safety: a child process appends under concurrency and is killed with SIGKILL at random
//! moments; every append it reported as acknowledged must survive, the chain must verify, and a
//! torn tail must be cut.

use crate::support::{ledger_binary, open, read_everything};
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CYCLES: usize = 24;

/// The position the record after the last whole one of a segment would have, and where it would
/// start. `None` when the segment has no complete header (the kill came while creating it).
fn next_record_in(segment: &[u8]) -> Option<(u64, u64)> {
    use ledger::log::segment::{FrameAt, SEGMENT_HEADER_LEN, decode_segment_header, frame_at};
    let mut next = decode_segment_header(segment).ok()?.first_position;
    let mut offset = SEGMENT_HEADER_LEN;
    // Whole records whose hash holds: the kill may itself have torn the last batch (a write cut
    // between pages), and a torn record is where the writer would write again.
    while let FrameAt::Frame(frame) = frame_at(&segment[offset..])
        && frame.hash_matches()
    {
        next = frame.position + 1;
        offset += frame.len;
    }
    Some((next, offset as u64))
}

/// A seeded generator (SplitMix64), so the kill moments are random but reproducible.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let seed = std::env::var("LEDGER_CRASH_SEED")
        .ok()
        .and_then(|seed| seed.parse::<u64>().ok())
        .unwrap_or(7);
    println!("crash test seed {seed} (set LEDGER_CRASH_SEED to change it)");
    let mut rng = SplitMix64(seed);
    let mut acknowledged: HashSet<String> = HashSet::new();
    let mut torn_tails_cut = 0;
    for cycle in 0..CYCLES {
        let mut child = Command::new(ledger_binary())
            .args(["--data-dir"])
            .arg(dir.path())
            .args([
                "append-until-killed",
                "--appenders",
                "16",
                "--segment-size",
                "65536",
            ])
            .env("LEDGER_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the child");
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            // Only whole lines count: a line cut by the kill was never fully reported.
            let mut acks = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("ack ")
                    && let Some((id, _position)) = rest.split_once(' ')
                {
                    acks.push(id.to_owned());
                }
            }
            acks
        });
        // Let it run between 30 and 250 ms (after startup), then kill it without warning.
        let started = Instant::now();
        std::thread::sleep(Duration::from_millis(30 + rng.next_u64() % 220));
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        let acks = reader.join().unwrap();
        let ran_for = started.elapsed();
        acknowledged.extend(acks.iter().cloned());

        // Half of the cycles also simulate a write the crash tore: a partial record at the tail.
        let segment = ledger::log::segment::list_segments(dir.path())
            .unwrap()
            .pop()
            .unwrap()
            .1;
        let mut expect_cut_to = None;
        let next_record = next_record_in(&std::fs::read(&segment).unwrap());
        if cycle % 2 == 1
            && let Some((next_position, end_of_records)) = next_record
        {
            // What a torn write leaves: a prefix of the next record, cut at a random byte, where
            // the writer would have written it (after the last record, over preallocated zeros).
            let mut record = b"LREC".to_vec();
            record.extend_from_slice(&400u32.to_be_bytes());
            record.extend_from_slice(&next_position.to_be_bytes());
            record.extend(std::iter::repeat_n(0x5a, 472));
            let cut = 1 + (rng.next_u64() % 470) as usize;
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&segment)
                .unwrap();
            file.write_all_at(&record[..cut], end_of_records).unwrap();
            expect_cut_to = Some(end_of_records);
        }

        // Reopen in this process: every acknowledged id is there, and the chain verifies.
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let stored: HashSet<String> = runtime.block_on(async {
            let log = open(dir.path());
            if let Some(length) = expect_cut_to {
                assert_eq!(
                    std::fs::metadata(&segment).unwrap().len(),
                    length,
                    "cycle {cycle}: the torn tail was cut"
                );
                torn_tails_cut += 1;
            }
            read_everything(&log)
                .await
                .into_iter()
                .map(|event| event.id.to_string())
                .collect()
        });
        let missing: Vec<&String> = acknowledged.difference(&stored).collect();
        assert!(
            missing.is_empty(),
            "cycle {cycle}: {} acknowledged events lost after SIGKILL (e.g. {:?})",
            missing.len(),
            missing.first()
        );
        let report = ledger::verify::verify(dir.path(), &|_| {}).unwrap();
        assert_eq!(report.damage, None, "cycle {cycle}: the log verifies");
        assert_eq!(
            report.incomplete_tail, None,
            "cycle {cycle}: reopening cut the tail"
        );
        println!(
            "cycle {cycle}: ran {ran_for:?}, {} acknowledged this cycle, {} stored in all",
            acks.len(),
            stored.len()
        );
    }
    assert!(
        acknowledged.len() > 1000,
        "the child acknowledged too little to prove anything: {}",
        acknowledged.len()
    );
    assert!(
        torn_tails_cut >= CYCLES / 2 - 2,
        "only {torn_tails_cut} torn tails were simulated"
    );
    let segments = ledger::log::segment::list_segments(dir.path()).unwrap();
    assert!(segments.len() > 2, "the run crossed segment boundaries");
}

/// A write that fails (here: the file-size limit, standing in for a full disk) acknowledges
/// nothing it did not make durable and loses nothing it did: the writer cuts what it wrote,
/// refuses every later append, and the log reopens intact.
#[test]
fn a_failing_write_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    // `ulimit -f` is in KiB: 8 MiB lets the first 4 MiB preallocation through and fails a later
    // one. SIGXFSZ is ignored so that the write fails with EFBIG instead of killing the process.
    let script = format!(
        "trap '' XFSZ; ulimit -f 8192; exec '{}' --data-dir '{}' append-until-killed --appenders 8 --segment-size 67108864",
        ledger_binary(),
        dir.path().display()
    );
    let output = Command::new("bash")
        .args(["-c", &script])
        .env("LEDGER_LOG", "error")
        .output()
        .expect("running the child under a file-size limit");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "the child stops with an error: {stderr}"
    );
    assert!(
        stderr.contains("stopped accepting writes"),
        "the appends after the failure are refused: {stderr}"
    );
    let acknowledged: HashSet<String> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("ack "))
        .filter_map(|rest| rest.split_once(' ').map(|(id, _)| id.to_owned()))
        .collect();
    assert!(
        acknowledged.len() > 1000,
        "too few appends before the limit: {}",
        acknowledged.len()
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stored: HashSet<String> = runtime.block_on(async {
        let log = open(dir.path());
        read_everything(&log)
            .await
            .into_iter()
            .map(|event| event.id.to_string())
            .collect()
    });
    let missing = acknowledged.difference(&stored).count();
    assert_eq!(missing, 0, "acknowledged events lost after a failed write");
    let report = ledger::verify::verify(dir.path(), &|_| {}).unwrap();
    assert_eq!(report.damage, None);
    println!(
        "{} acknowledged before the write failed, {} stored",
        acknowledged.len(),
        stored.len()
    );
}
