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

/// The Python of the test suite's virtual environment, `$LEDGER_VENV` or else
/// `~/.cache/ledger-venv`, made by `scripts/python-env.sh` (the test command's own step) with the
/// pinned packages of `tests/python/requirements.txt` (from PyPI the first time; a no-op once they
/// are there). Once per test process; a lock file beside the environment keeps concurrent test
/// runs from installing into it at the same time.
pub fn python_venv() -> std::path::PathBuf {
    python_venvs()
}

/// The notebooks' virtual environment (`$LEDGER_NOTEBOOK_VENV` or else
/// `~/.cache/ledger-notebook-venv`, with `notebooks/requirements.txt`), made with the tests' own.
#[cfg(feature = "parquet")]
pub fn notebook_python() -> std::path::PathBuf {
    python_venvs();
    notebook_venv_dir().join("bin/python")
}

fn notebook_venv_dir() -> std::path::PathBuf {
    std::env::var_os("LEDGER_NOTEBOOK_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME or LEDGER_NOTEBOOK_VENV is set");
            Path::new(&home).join(".cache/ledger-notebook-venv")
        })
}

/// Both environments, made once per test process; the tests' Python.
fn python_venvs() -> std::path::PathBuf {
    static PYTHON: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let venv = std::env::var_os("LEDGER_VENV")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| {
                    let home = std::env::var_os("HOME").expect("HOME or LEDGER_VENV is set");
                    Path::new(&home).join(".cache/ledger-venv")
                });
            if let Some(parent) = venv.parent() {
                std::fs::create_dir_all(parent).expect("creating the virtual environment's parent");
            }
            let lock = std::fs::File::create(venv.with_extension("lock"))
                .expect("creating the virtual environment's lock file");
            lock.lock().expect("locking the virtual environment");
            // The same script as the test command's, so that both install the same pins.
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/python-env.sh");
            let output = std::process::Command::new("bash")
                .arg(&script)
                .env("LEDGER_VENV", &venv)
                .env("LEDGER_NOTEBOOK_VENV", notebook_venv_dir())
                .output()
                .unwrap_or_else(|error| panic!("running {}: {error}", script.display()));
            assert!(
                output.status.success(),
                "scripts/python-env.sh failed:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            venv.join("bin/python")
        })
        .clone()
        .clone()
}

/// Every event of `log`, in position order.
pub async fn read_all_of(log: &dyn EventLog) -> Vec<projections::event::RecordedEvent> {
    let mut events = Vec::new();
    loop {
        let batch = log.read_all(events.len() as u64, 1000).await.unwrap();
        if batch.is_empty() {
            return events;
        }
        events.extend(batch);
    }
}

/// Runs the `ledger` binary with `args` (its log at warn level only); its exit code, and its
/// standard output followed by its standard error.
pub fn run_ledger<S: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = S>) -> (i32, String) {
    let output = ledger_command(args);
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

/// Runs the `ledger` binary with `args`, which must succeed; its standard output.
pub fn ledger_stdout<S: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = S>) -> Vec<u8> {
    let output = ledger_command(args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn ledger_command<S: AsRef<std::ffi::OsStr>>(
    args: impl IntoIterator<Item = S>,
) -> std::process::Output {
    std::process::Command::new(ledger_binary())
        .args(args)
        .env("LEDGER_LOG", "warn")
        .output()
        .expect("running the ledger binary")
}

/// `ledger serve` (the real binary) on a random loopback port over the data directory `data`,
/// with the first admin's token `admin_token` and the extra arguments `extra`; killed when
/// dropped.
pub struct ServedBinary {
    pub child: tokio::process::Child,
    /// `http://127.0.0.1:PORT`, as the server printed it.
    pub base: String,
}

pub async fn serve_binary(data: &Path, extra: &[&str], admin_token: &str) -> ServedBinary {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(ledger_binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(extra)
        .env("LEDGER_ADMIN_TOKEN", admin_token)
        .env("LEDGER_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines.next_line().await.unwrap().expect("the server starts");
        if let Some(address) = line.strip_prefix("listening on ") {
            break address.to_owned();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    ServedBinary { child, base }
}

impl ServedBinary {
    /// Kills the server and waits for it to be gone (its data directory unlocked).
    pub async fn stop(mut self) {
        self.child.kill().await.unwrap();
        self.child.wait().await.unwrap();
    }
}
