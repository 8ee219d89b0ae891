//! A real PostgreSQL for the tests: `TestPostgres` makes a throwaway cluster with the machine's own
//! binaries (Debian's `postgresql` package, which `scripts/test-all.sh` installs), starts it on a
//! free loopback port, and stops and removes it when dropped; `TestPostgres::shared()` is one
//! cluster for the whole test process.
//!
//! No docker and no network: `initdb` and `pg_ctl` run from the bin directory found by
//! [`bin_dir`]. PostgreSQL refuses to run as root, so when the tests run as root (as CI does)
//! every server-side command runs as an unprivileged OS user, `$LEDGER_PG_USER` or else
//! `postgres`; otherwise as the current user. Clients (`createdb`, the tests' own connections)
//! connect over TCP to 127.0.0.1 as the database superuser `postgres`, trusted without a password.
//!
//! Many instances can run at once in one process: each has its own temporary directory (data
//! directory, Unix socket, log file) and its own port.

// Not every test that includes this module uses every helper.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

/// The database superuser `initdb` creates, whatever OS user runs the server.
const SUPERUSER: &str = "postgres";
/// The database that exists in every fresh cluster; `url()` points at it.
const DEFAULT_DATABASE: &str = "postgres";
/// How long `pg_ctl` may wait for a start or a stop, in seconds. Generous: the machine is shared
/// and a test run may start many clusters at once.
const PG_CTL_TIMEOUT_SECONDS: &str = "120";
/// The watchdog (see `spawn_watchdog`): `$1` is the directory to remove, the rest the command
/// that stops the server. It ignores the hangup and Ctrl-C that end the test run, then waits.
const WATCHDOG_SCRIPT: &str = r#"trap '' HUP INT
dir=$1; shift
read -r line
"$@" >/dev/null 2>&1
rm -rf -- "$dir""#;
/// Tries at a free port before giving up: another process may take the port between our probe
/// and the server's bind.
const PORT_ATTEMPTS: usize = 5;

/// One PostgreSQL cluster of the test run, running from [`TestPostgres::start`] until dropped.
#[derive(Debug)]
pub struct TestPostgres {
    bin: PathBuf,
    /// `Some(user)` when we are root and so must run `initdb`, `pg_ctl` and the server as `user`.
    run_as: Option<String>,
    /// Holds `data/` (the cluster), `postgres.log` and the server's Unix socket; removed on drop.
    dir: tempfile::TempDir,
    port: u16,
    /// The cleanup process of this cluster; see [`TestPostgres::spawn_watchdog`].
    watchdog: Mutex<Option<Watchdog>>,
}

#[derive(Debug)]
struct Watchdog {
    process: Child,
    /// Never written to: its only job is to be closed when this process ends.
    _lifeline: ChildStdin,
}

impl TestPostgres {
    /// Initialises a fresh cluster in a new temporary directory and starts it on a free port of
    /// 127.0.0.1. Panics, with the reason and the tail of the server's log, when it cannot.
    pub fn start() -> TestPostgres {
        let bin = bin_dir().to_path_buf();
        let run_as = server_user();
        let dir = tempfile::Builder::new()
            .prefix("ledger-pg-")
            .tempdir()
            .expect("create a temporary directory for a PostgreSQL cluster");
        let mut postgres = TestPostgres {
            bin,
            run_as,
            dir,
            port: 0,
            watchdog: Mutex::new(None),
        };
        // From here on a panic drops `postgres`, whose Drop stops whatever did start.
        if let Some(user) = &postgres.run_as {
            // The server's user must own the data directory, the log and the socket directory.
            let chowned = run(Command::new("chown")
                .arg("-R")
                .arg(format!("{user}:"))
                .arg(postgres.dir.path()));
            check(
                &chowned,
                "chown the cluster's directory to the server's user",
                "",
            );
        }
        postgres.spawn_watchdog();
        postgres.initdb();
        postgres.start_on_a_free_port();
        postgres
    }

    /// One cluster for the whole test process, started by the first caller. Tests that share it
    /// should each work in their own database (`create_database`) and must not stop it.
    ///
    /// A `static` is never dropped, so Drop cannot clean this one up; Rust has no safe `atexit`.
    /// Its watchdog does instead: a small `sh` that waits for this test process to end (the end
    /// of a pipe only this process holds), then stops the cluster (immediate mode) and removes
    /// its directory.
    pub fn shared() -> &'static TestPostgres {
        static SHARED: OnceLock<TestPostgres> = OnceLock::new();
        SHARED.get_or_init(TestPostgres::start)
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`, for tokio-postgres or `ledger serve --store`.
    pub fn url(&self) -> String {
        self.database_url(DEFAULT_DATABASE)
    }

    /// The port the cluster listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a new, empty database `name` (ASCII letters, digits, `_`, `-`; at most 63 bytes)
    /// and returns its URL. Panics if it exists already or the server refuses.
    pub fn create_database(&self, name: &str) -> String {
        assert!(
            !name.is_empty()
                && name.len() <= 63
                && name
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'),
            "database name {name:?}: use 1 to 63 ASCII letters, digits, '_' or '-' \
             (so that it needs no quoting in SQL nor escaping in a URL)"
        );
        let created = run(Command::new(self.bin.join("createdb"))
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--username", SUPERUSER, "--no-password"])
            .args(["--maintenance-db", DEFAULT_DATABASE])
            .arg(name)
            .env("PGCONNECT_TIMEOUT", "30")
            .stdin(Stdio::null()));
        check(
            &created,
            &format!("create database {name}"),
            &self.log_tail(),
        );
        self.database_url(name)
    }

    /// Stops the server the clean way (`pg_ctl stop -m fast`: disconnects clients, checkpoints)
    /// and waits until it is down. The cluster stays; `start_again` starts it again.
    pub fn stop(&self) {
        let stopped = self.pg_ctl(&["--mode", "fast", "stop"]);
        check(&stopped, "stop PostgreSQL", &self.log_tail());
    }

    /// Starts the stopped cluster again, on the same port, so `url()` works as before.
    pub fn start_again(&self) {
        let started = self.pg_ctl_start();
        check(&started, "start PostgreSQL again", &self.log_tail());
    }

    /// Makes the cluster take TLS connections only: `certificate` and `key` (PEM) become the
    /// server's, and `pg_hba.conf` accepts TCP connections over TLS and rejects plain ones (the
    /// Unix socket stays open, as a managed service's console would). Restarts the server.
    pub fn require_tls(&self, certificate: &str, key: &str) {
        let data = self.data_dir();
        for (name, contents) in [
            ("ledger-test.crt", certificate),
            ("ledger-test.key", key),
            (
                "pg_hba.conf",
                "local all all trust\n\
                 hostssl all all 127.0.0.1/32 trust\n\
                 hostnossl all all 127.0.0.1/32 reject\n",
            ),
        ] {
            let path = data.join(name);
            std::fs::write(&path, contents)
                .unwrap_or_else(|error| panic!("write {path:?}: {error}"));
            // PostgreSQL refuses a key file that others may read.
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap_or_else(|error| panic!("chmod {path:?}: {error}"));
            if let Some(user) = &self.run_as {
                let chowned = run(Command::new("chown").arg(format!("{user}:")).arg(&path));
                check(&chowned, "chown a TLS file to the server's user", "");
            }
        }
        let settings = "\n# tests/it/postgres.rs: TLS\n\
             ssl = on\n\
             ssl_cert_file = 'ledger-test.crt'\n\
             ssl_key_file = 'ledger-test.key'\n";
        let conf = data.join("postgresql.conf");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut file| file.write_all(settings.as_bytes()))
            .unwrap_or_else(|error| panic!("write the TLS settings into {conf:?}: {error}"));
        self.stop();
        self.start_again();
    }

    /// The cluster's directory (holds `data/` and `postgres.log`), for tests that look inside.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn database_url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// A command that runs `program` of the bin directory as the server's user.
    fn server_command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut command = match &self.run_as {
            None => Command::new(program),
            Some(user) => {
                let mut command = Command::new(runuser());
                command.args(["-u", user, "--"]).arg(program);
                command
            }
        };
        // The server's user may not be allowed into the test's working directory.
        command.current_dir(self.dir.path()).stdin(Stdio::null());
        command
    }

    fn initdb(&self) {
        let initialised = run(self
            .server_command("initdb")
            .arg("--pgdata")
            .arg(self.data_dir())
            .args(["--username", SUPERUSER, "--auth", "trust"])
            .args(["--encoding", "UTF8", "--locale", "C"])
            // Skips only initdb's own fsync of the new files (a second of a cold start); the
            // server runs with fsync on, and the page cache survives a killed server anyway.
            .args(["--no-sync", "--no-instructions"]));
        check(&initialised, "initialise a PostgreSQL cluster (initdb)", "");
    }

    /// Writes `port` and the test settings into postgresql.conf (the last setting of a name
    /// wins, so a retry on another port just appends), so that a plain `pg_ctl start`, ours in
    /// `start_again` or a human's, starts the cluster as the tests expect.
    fn configure(&self, port: u16) {
        let socket_dir = self.dir.path().display().to_string().replace('\'', "''");
        let settings = format!(
            "\n# tests/it/postgres.rs\n\
             listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = '{socket_dir}'\n\
             max_connections = 200\n\
             shared_buffers = 128MB\n\
             fsync = on\n"
        );
        let conf = self.data_dir().join("postgresql.conf");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut file| file.write_all(settings.as_bytes()))
            .unwrap_or_else(|error| panic!("write the test settings into {conf:?}: {error}"));
    }

    fn start_on_a_free_port(&mut self) {
        for attempt in 1..=PORT_ATTEMPTS {
            self.port = free_port();
            self.configure(self.port);
            let log_before = std::fs::metadata(self.log_file()).map_or(0, |log| log.len());
            let started = self.pg_ctl_start();
            if started.status.success() {
                return;
            }
            let log = self.log_tail();
            // Only this attempt's lines count: the log file keeps those of earlier attempts.
            let this_attempt = std::fs::read(self.log_file()).unwrap_or_default();
            let this_attempt = String::from_utf8_lossy(
                this_attempt.get(log_before as usize..).unwrap_or_default(),
            );
            let port_taken = this_attempt.contains("could not bind");
            if !(port_taken && attempt < PORT_ATTEMPTS) {
                check(&started, "start PostgreSQL", &log);
            }
        }
    }

    fn pg_ctl_start(&self) -> Output {
        let mut command = self.server_command("pg_ctl");
        command
            .arg("--pgdata")
            .arg(self.data_dir())
            .arg("--log")
            .arg(self.log_file())
            .args(["--wait", "--timeout", PG_CTL_TIMEOUT_SECONDS, "start"]);
        run(&mut command)
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        run(self
            .server_command("pg_ctl")
            .arg("--pgdata")
            .arg(self.data_dir())
            .args(["--wait", "--timeout", PG_CTL_TIMEOUT_SECONDS])
            .args(args))
    }

    /// Starts the process that cleans up after this cluster if this test process dies without
    /// running Drop: killed (SIGKILL, a panic with `panic = "abort"`, Ctrl-C), or exiting with a
    /// cluster in a `static` ([`TestPostgres::shared`]). It is `sh` blocked reading a pipe whose
    /// write end only this process holds (Rust opens it close-on-exec, so no other child
    /// inherits it): when this process ends, the kernel closes it, `read` returns, and the
    /// watchdog stops the server (immediate mode) and removes the directory. Its own process
    /// group keeps a Ctrl-C aimed at the test run from killing it first. Drop kills it, and
    /// cleans up itself.
    fn spawn_watchdog(&self) {
        let mut stop = self.server_command("pg_ctl");
        stop.arg("--pgdata")
            .arg(self.data_dir())
            .args(["--mode", "immediate", "stop"]);
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("ledger-pg-watchdog")
            .arg(self.dir.path())
            .arg(stop.get_program())
            .args(stop.get_args())
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut process = command.spawn().expect("start the PostgreSQL watchdog (sh)");
        let lifeline = process.stdin.take().expect("the watchdog's stdin is piped");
        *self
            .watchdog
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Watchdog {
            process,
            _lifeline: lifeline,
        });
    }

    /// The last lines of the server's log, for panic messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!("--- tail of {}:\n{tail}", self.log_file().display())
    }
}

impl Drop for TestPostgres {
    /// Stops the server at once (`pg_ctl stop -m immediate`: nothing of a throwaway cluster is
    /// worth a checkpoint) and waits until it is down; the `TempDir` then removes the directory.
    /// Errors are ignored: the server may be stopped already, and Drop must not panic.
    fn drop(&mut self) {
        let watchdog = self
            .watchdog
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(mut watchdog) = watchdog.take() {
            let _ = watchdog.process.kill();
            let _ = watchdog.process.wait();
        }
        if self.data_dir().join("postmaster.pid").exists() {
            let _ = self.pg_ctl(&["--mode", "immediate", "stop"]);
        }
    }
}

/// The directory of `initdb`, `pg_ctl`, `postgres` and `createdb`, found once per process:
/// `$LEDGER_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin` (Debian's layout), else
/// `pg_config --bindir`, else the `PATH`.
pub fn bin_dir() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let has_initdb = |dir: &Path| dir.join("initdb").is_file();
        if let Some(dir) = std::env::var_os("LEDGER_PG_BIN").filter(|dir| !dir.is_empty()) {
            let dir = PathBuf::from(dir);
            assert!(
                has_initdb(&dir),
                "LEDGER_PG_BIN={} holds no initdb",
                dir.display()
            );
            return dir;
        }
        newest_debian_bin_dir()
            .into_iter()
            .chain(pg_config_bin_dir())
            .chain(
                std::env::var_os("PATH")
                    .into_iter()
                    .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>()),
            )
            .find(|dir| has_initdb(dir))
            .unwrap_or_else(|| {
                panic!(
                    "PostgreSQL's server binaries (initdb, pg_ctl, postgres) are not installed: \
                     scripts/test-all.sh installs them (Debian's `postgresql` package), or \
                     `scripts/postgres.sh install`; or point LEDGER_PG_BIN at their directory"
                )
            })
    })
}

/// `/usr/lib/postgresql/VERSION/bin` of the highest VERSION (compared as numbers: 9.6 < 15).
fn newest_debian_bin_dir() -> Option<PathBuf> {
    let versions = std::fs::read_dir("/usr/lib/postgresql").ok()?;
    versions
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version: Vec<u32> = name
                .split('.')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
}

fn pg_config_bin_dir() -> Option<PathBuf> {
    let output = Command::new("pg_config").arg("--bindir").output().ok()?;
    let dir = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !dir.trim().is_empty()).then(|| PathBuf::from(dir.trim()))
}

/// The OS user to run the server as when we are root (`None` when we are not): PostgreSQL
/// refuses to run as root.
fn server_user() -> Option<String> {
    static USER: OnceLock<Option<String>> = OnceLock::new();
    USER.get_or_init(|| {
        if !running_as_root() {
            return None;
        }
        let user = std::env::var("LEDGER_PG_USER").unwrap_or_else(|_| "postgres".to_owned());
        let exists = Command::new("id")
            .arg("-u")
            .arg(&user)
            .output()
            .is_ok_and(|output| output.status.success());
        assert!(
            exists,
            "PostgreSQL refuses to run as root, and the OS user {user:?} to run it as does not \
             exist: Debian's `postgresql` package creates `postgres` (scripts/test-all.sh \
             installs it), or set LEDGER_PG_USER to another unprivileged user"
        );
        Some(user)
    })
    .clone()
}

/// `runuser` (util-linux) by its full path: root's PATH may lack the sbin directories.
fn runuser() -> &'static Path {
    ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
        .into_iter()
        .map(Path::new)
        .find(|path| path.is_file())
        .unwrap_or(Path::new("runuser"))
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user: no libc (the project forbids unsafe).
    match std::fs::metadata("/proc/self") {
        Ok(metadata) => metadata.uid() == 0,
        Err(_) => Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0"),
    }
}

/// A port of 127.0.0.1 that was free a moment ago (the server may still lose it to another
/// process; `start_on_a_free_port` retries then).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0 to find a free port")
        .port()
}

/// Runs `command` to its end, its output captured; panics, naming it, if it cannot be started.
fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|error| panic!("could not run {command:?}: {error}"))
}

/// Panics with what was being done, the command's output and `context` (the server's log tail)
/// unless the command succeeded.
fn check(output: &Output, what: &str, context: &str) {
    assert!(
        output.status.success(),
        "could not {what} ({}):\n{}{}\n{context}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}
