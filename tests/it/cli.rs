//! The CLI as a user runs it: `ledger log tail`, `ledger log show`, `ledger verify --json`, and a
//! second writer refused while another process holds the data directory.

use crate::support::{fill, ledger_binary, open};
use std::process::Command;

fn ledger(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(ledger_binary())
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env("LEDGER_LOG", "warn")
        .output()
        .expect("running ledger")
}

#[tokio::test]
async fn log_tail_and_show_print_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 3, 4).await;

    let output = ledger(dir.path(), &["log", "tail", "-n", "5"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 5);
    let positions: Vec<u64> = lines
        .iter()
        .map(|line| line["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, vec![7, 8, 9, 10, 11]);
    for key in [
        "stream",
        "version",
        "id",
        "type",
        "recorded_at",
        "actor",
        "data",
        "prev_hash",
        "hash",
    ] {
        assert!(lines[0].get(key).is_some(), "missing {key}: {}", lines[0]);
    }
    assert_eq!(lines[0]["hash"].as_str().unwrap().len(), 64);

    let output = ledger(dir.path(), &["log", "show", "--stream", "item-1"]);
    assert!(output.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert!(lines.iter().all(|line| line["stream"] == "item-1"));
    assert_eq!(lines[1]["prev_hash"], lines[0]["hash"]);
    assert_eq!(lines[3]["data"]["n"], 3);

    let output = ledger(dir.path(), &["log", "show", "--stream", "item-9"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no stream named \"item-9\""));
}

#[tokio::test]
async fn verify_json_reports_counts_and_head() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 2, 3).await;
    let output = ledger(dir.path(), &["verify", "--json"]);
    assert_eq!(output.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["events"], 6);
    assert_eq!(report["streams"], 2);
    assert_eq!(report["damage"], serde_json::Value::Null);
    assert_eq!(report["head_chain_hash"].as_str().unwrap().len(), 64);

    let missing = ledger(&dir.path().join("nope"), &["verify"]);
    assert_eq!(
        missing.status.code(),
        Some(2),
        "a missing directory is an error, not 'ok'"
    );
}

#[tokio::test]
async fn serve_is_refused_while_another_process_writes() {
    let dir = tempfile::tempdir().unwrap();
    let holder = open(dir.path());
    let output = ledger(dir.path(), &["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is in use by another process"), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", std::process::id())),
        "{stderr}"
    );
    drop(holder);
}

#[tokio::test]
async fn principals_from_the_cli_and_a_rebuild_of_the_projections() {
    let dir = tempfile::tempdir().unwrap();
    let output = ledger(
        dir.path(),
        &[
            "principal",
            "add",
            "--name",
            "rita",
            "--role",
            "reviewer",
            "--queues",
            "support,legal",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("ldg_") && token.len() > 40, "{token}");

    let refused = ledger(
        dir.path(),
        &["principal", "add", "--name", "rita", "--role", "agent"],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("rita"));
    let bad_role = ledger(
        dir.path(),
        &["principal", "add", "--name", "x", "--role", "overlord"],
    );
    assert!(String::from_utf8_lossy(&bad_role.stderr).contains("unknown role"));

    let rebuilt = ledger(dir.path(), &["projections", "rebuild"]);
    assert!(rebuilt.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&rebuilt.stdout).unwrap();
    assert_eq!(summary["principals"], 1);
    assert_eq!(summary["events_applied"], 1);

    let revoked = ledger(dir.path(), &["principal", "revoke", "rita"]);
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );

    // The only admin cannot be revoked, not even from the CLI.
    let admin = ledger(
        dir.path(),
        &["principal", "add", "--name", "boss", "--role", "admin"],
    );
    assert!(admin.status.success());
    let last = ledger(dir.path(), &["principal", "revoke", "boss"]);
    assert_eq!(last.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&last.stderr).contains("only active admin"));

    // While a server (any writer) holds the directory, the CLI says so and writes nothing.
    let holder = open(dir.path());
    let busy = ledger(
        dir.path(),
        &["principal", "add", "--name", "tom", "--role", "agent"],
    );
    assert_eq!(busy.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&busy.stderr).contains("in use by another process"));
    drop(holder);
}

#[test]
fn bench_http_fills_a_ledger_serves_it_in_a_child_process_and_reports_decisions() {
    // A tiny run of the real benchmark: fill (child process), serve (child process), decide over
    // loopback. It checks the machinery and the report, not the speed.
    let dir = tempfile::tempdir().unwrap();
    let output = ledger(
        &dir.path().join("ledger-data"),
        &[
            "bench",
            "http",
            "--pending",
            "20000",
            "--clients",
            "2,4",
            "--seconds",
            "1",
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.starts_with("20000 pending items filled in"),
        "{stdout}"
    );
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|line| line.starts_with("| ") && !line.starts_with("| clients"))
        .map(|line| line.split('|').map(str::trim).collect())
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    for (row, clients) in rows.iter().zip(["2", "4"]) {
        assert_eq!(row[1], clients);
        let decisions_per_second: f64 = row[2].parse().unwrap();
        assert!(decisions_per_second > 0.0, "{stdout}");
        assert!(row[5].ends_with(" MB") && row[5] != "0 MB", "{stdout}");
        for cpu in [row[7], row[8]] {
            let micros: f64 = cpu.strip_suffix(" µs").unwrap_or("").parse().unwrap_or(0.0);
            assert!(
                micros > 0.0,
                "a CPU time per request, not {cpu:?}: {stdout}"
            );
        }
    }
    // The scratch ledger is removed afterwards.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // A run that would drain the queue says so instead of reporting figures for a smaller queue.
    let drained = ledger(
        &dir.path().join("ledger-data"),
        &[
            "bench",
            "http",
            "--pending",
            "20",
            "--clients",
            "2",
            "--seconds",
            "1",
        ],
    );
    assert!(!drained.status.success());
    assert!(
        String::from_utf8_lossy(&drained.stderr).contains("ran out of pending items"),
        "{}",
        String::from_utf8_lossy(&drained.stderr)
    );
}
