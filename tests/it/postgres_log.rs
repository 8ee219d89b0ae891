//! The PostgreSQL backend on a real PostgreSQL (started by `postgres::TestPostgres` from the
//! machine's binaries): the conformance suite, two logs (two servers) on one database, a writer
//! whose transaction commits late, the database's own constraints, its plans on a new database,
//! leases, and a restart of PostgreSQL under a running log.

use crate::log::{Capabilities, conformance};
use crate::postgres::TestPostgres;
use crate::support::{event, read_all_of};
use ledger::log::{EventLog, ExpectedVersion, LogError, PostgresLog, PostgresOptions};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// A log on a fresh database of the shared cluster.
async fn fresh_log(name: &str) -> (Arc<dyn EventLog>, String) {
    let url = TestPostgres::shared().create_database(name);
    let log = PostgresLog::connect(&url, PostgresOptions::default())
        .await
        .expect("connect to the test database");
    (Arc::new(log), url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_log_conforms() {
    let (log, _) = fresh_log("conformance").await;
    conformance(log, Capabilities::all()).await;
}

/// Two logs on one database are two servers: appends from both, racing for the same stream
/// versions, interleave into one order that a subscription on either follows without a gap or
/// a duplicate; each version is won once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_on_one_database_share_one_order() {
    let (first, url) = fresh_log("two_servers").await;
    let second: Arc<dyn EventLog> = Arc::new(
        PostgresLog::connect(&url, PostgresOptions::default())
            .await
            .unwrap(),
    );
    let mut subscription = second.subscribe(0);
    let mut tasks = Vec::new();
    for (index, log) in [first.clone(), second.clone()]
        .into_iter()
        .cycle()
        .take(8)
        .enumerate()
    {
        tasks.push(tokio::spawn(async move {
            let mut wins = 0u32;
            for n in 0..40 {
                // Everyone races for the next version of one stream, and appends to its own.
                let version = log.stream_version("item-contended").await.unwrap();
                let expected = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                match log
                    .append(
                        "item-contended",
                        expected,
                        vec![event(
                            "CommentAdded",
                            serde_json::json!({"task": index, "n": n}),
                        )],
                    )
                    .await
                {
                    Ok(_) => wins += 1,
                    Err(LogError::Conflict { .. }) => {}
                    Err(error) => panic!("{error}"),
                }
                log.append(
                    &format!("item-own-{index}"),
                    ExpectedVersion::Any,
                    vec![event("CommentAdded", serde_json::json!({"n": n}))],
                )
                .await
                .unwrap();
            }
            wins
        }));
    }
    let mut wins = 0;
    for task in tasks {
        wins += task.await.unwrap();
    }
    let stored = read_all_of(first.as_ref()).await;
    assert_eq!(stored.len() as u32, 8 * 40 + wins);
    let contended = first
        .read_stream("item-contended", 0, 10_000)
        .await
        .unwrap();
    assert_eq!(contended.len() as u32, wins, "each version won once");
    let mut seen = Vec::new();
    while seen.len() < stored.len() {
        let next = tokio::time::timeout(Duration::from_secs(10), subscription.next())
            .await
            .expect("the subscription follows both servers' appends")
            .unwrap();
        seen.push(next);
    }
    assert!(
        seen == stored,
        "the subscription sees exactly what is stored, in order"
    );
}

/// A writer whose transaction stays open (here: one holding the head lock, as a slow batch
/// does) holds back every later append instead of letting them commit around it: a subscriber
/// never sees a later position before an earlier one, and nothing is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_committing_late_holds_back_later_ones_and_nothing_is_skipped() {
    let (log, url) = fresh_log("late_commit").await;
    log.append(
        "item-before",
        ExpectedVersion::Any,
        vec![event("CommentAdded", serde_json::json!({}))],
    )
    .await
    .unwrap();
    let mut subscription = log.subscribe(0);
    assert_eq!(subscription.next().await.unwrap().position, 0);

    let (mut slow, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let slow_writer = slow.transaction().await.unwrap();
    slow_writer
        .query_one("SELECT next_position FROM ledger_head FOR UPDATE", &[])
        .await
        .unwrap();
    let appends: Vec<_> = (0..20)
        .map(|n| {
            let log = log.clone();
            tokio::spawn(async move {
                log.append(
                    &format!("item-late-{}", n % 3),
                    ExpectedVersion::Any,
                    vec![event("CommentAdded", serde_json::json!({"n": n}))],
                )
                .await
            })
        })
        .collect();
    // While the slow transaction is open nothing after it can commit, so nothing is delivered.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), subscription.next())
            .await
            .is_err(),
        "no event may be seen while an earlier transaction is open"
    );
    assert!(appends.iter().all(|append| !append.is_finished()));
    slow_writer.commit().await.unwrap();
    for append in appends {
        append.await.unwrap().unwrap();
    }
    for position in 1..=20 {
        let next = tokio::time::timeout(Duration::from_secs(10), subscription.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(next.position, position, "in order, without a gap");
    }
}

/// The database itself refuses what would break the contract, whoever writes: a second event at
/// a stream version, a reused id, a gap in the positions or in a stream's versions, and any
/// change or removal of a stored event.
#[tokio::test]
async fn the_database_enforces_versions_ids_and_dense_positions() {
    let (log, url) = fresh_log("constraints").await;
    log.append(
        "item-x",
        ExpectedVersion::NoStream,
        vec![event("ItemSubmitted", serde_json::json!({}))],
    )
    .await
    .unwrap();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let stored = log.read_all(0, 1).await.unwrap().remove(0);
    let insert = |position: i64, version: i64, id: uuid::Uuid| {
        let client = &client;
        let hash = stored.hash.to_vec();
        async move {
            client
                .execute(
                    "INSERT INTO ledger_events (position, prev_position, stream, version, \
                     prev_version, id, event_type, schema_version, recorded_at_micros, actor, \
                     data, prev_hash, hash) VALUES ($1, $2, 'item-x', $3, $4, $5, 'X', 1, 0, \
                     'intruder', '{}', $6, $6)",
                    &[
                        &position,
                        &position.checked_sub(1).filter(|p| *p >= 0),
                        &version,
                        &version.checked_sub(1).filter(|v| *v >= 0),
                        &id,
                        &hash,
                    ],
                )
                .await
        }
    };
    let code = |result: Result<u64, tokio_postgres::Error>| {
        result
            .expect_err("the database refuses it")
            .code()
            .unwrap()
            .code()
            .to_owned()
    };
    // Version 0 again, at the next position.
    assert_eq!(code(insert(1, 0, uuid::Uuid::new_v4()).await), "23505");
    // The stored id again.
    assert_eq!(code(insert(1, 1, stored.id).await), "23505");
    // A gap in the positions (position 5 after 0).
    assert_eq!(code(insert(5, 1, uuid::Uuid::new_v4()).await), "23503");
    // A gap in the stream's versions (version 3 after 0).
    assert_eq!(code(insert(1, 3, uuid::Uuid::new_v4()).await), "23503");
    // Append-only: stored events are never changed or removed.
    for statement in [
        "UPDATE ledger_events SET actor = 'intruder'",
        "DELETE FROM ledger_events",
        "TRUNCATE ledger_events CASCADE",
    ] {
        assert_eq!(
            code(client.execute(statement, &[]).await),
            "42501",
            "{statement}"
        );
    }
    assert_eq!(log.head().await.unwrap(), 1, "nothing was stored");
    assert_eq!(
        log.read_all(0, 10).await.unwrap(),
        vec![stored],
        "nothing was changed"
    );
}

/// A job's lease is held by one server at a time; another takes it once it lapses.
#[tokio::test]
async fn a_lease_has_one_holder_until_it_lapses() {
    let (log, _) = fresh_log("leases").await;
    let ttl = Duration::from_millis(600);
    assert!(log.lease("scheduler", "server-a", ttl).await.unwrap());
    assert!(!log.lease("scheduler", "server-b", ttl).await.unwrap());
    assert!(
        log.lease("scheduler", "server-a", ttl).await.unwrap(),
        "renewed"
    );
    assert!(
        log.lease("callbacks", "server-b", ttl).await.unwrap(),
        "leases are per job"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        log.lease("scheduler", "server-b", ttl).await.unwrap(),
        "taken over"
    );
    assert!(!log.lease("scheduler", "server-a", ttl).await.unwrap());
    // The shared secret: the first stored wins, for every server.
    let first = log.shared_secret("key", b"first").await.unwrap();
    let second = log.shared_secret("key", b"second").await.unwrap();
    assert_eq!(first.as_deref(), Some(&b"first"[..]));
    assert_eq!(second, first);
}

/// PostgreSQL restarts under a running log: meanwhile calls fail `Unavailable` (nothing
/// acknowledged), afterwards the same log works again without being reopened, and a subscription
/// resumes where it was, without a gap or a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_of_postgres_is_unavailable_then_recovered() {
    let server = TestPostgres::start();
    let url = server.create_database("restart");
    let options = PostgresOptions {
        timeout: Duration::from_secs(3),
        ..PostgresOptions::default()
    };
    let log: Arc<dyn EventLog> = Arc::new(PostgresLog::connect(&url, options).await.unwrap());
    let mut subscription = log.subscribe(0);
    let append = |n: u32| {
        let log = log.clone();
        async move {
            log.append(
                "item-r",
                ExpectedVersion::Any,
                vec![event("CommentAdded", serde_json::json!({"n": n}))],
            )
            .await
        }
    };
    for n in 0..5 {
        append(n).await.unwrap();
    }
    for position in 0..5 {
        assert_eq!(subscription.next().await.unwrap().position, position);
    }
    server.stop();
    let refused = append(99).await;
    assert!(
        matches!(refused, Err(LogError::Unavailable(_))),
        "{refused:?}"
    );
    assert!(matches!(log.head().await, Err(LogError::Unavailable(_))));
    server.start_again();
    let mut recovered = None;
    for _ in 0..50 {
        match append(5).await {
            Ok(result) => {
                recovered = Some(result);
                break;
            }
            Err(LogError::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(error) => panic!("{error}"),
        }
    }
    let recovered = recovered.expect("the log works again after the restart");
    assert_eq!(
        recovered.first_position, 5,
        "the refused append stored nothing"
    );
    for n in 6..10 {
        append(n).await.unwrap();
    }
    let mut positions = Vec::new();
    while positions.len() < 5 {
        let next = tokio::time::timeout(Duration::from_secs(15), subscription.next())
            .await
            .expect("the subscription resumes")
            .unwrap();
        positions.push(next.position);
    }
    assert_eq!(positions, vec![5, 6, 7, 8, 9]);
    let ids: HashSet<_> = read_all_of(log.as_ref())
        .await
        .into_iter()
        .map(|event| event.id)
        .collect();
    assert_eq!(ids.len(), 10);
}

/// Appends `rounds` events on each of 8 concurrent appenders (late joiners included), then one
/// retry of a stored id ten times (the ids' lookup answers those), then reads ranges of positions
/// and streams from 4 tasks.
async fn append_rounds(log: &Arc<dyn EventLog>, label: &str, rounds: usize) -> i64 {
    let mut tasks = Vec::new();
    for appender in 0..8 {
        let (log, label) = (log.clone(), label.to_owned());
        tasks.push(tokio::spawn(async move {
            for n in 0..rounds {
                log.append(
                    &format!("item-{label}-{appender}-{}", n % 5),
                    ExpectedVersion::Any,
                    vec![event("CommentAdded", serde_json::json!({ "n": n }))],
                )
                .await
                .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let again = event("CommentAdded", serde_json::json!({ "again": label }));
    for _ in 0..10 {
        log.append(
            &format!("item-{label}-again"),
            ExpectedVersion::Any,
            vec![again.clone()],
        )
        .await
        .unwrap();
    }
    // The readers' statements too, from several tasks so that they run on several of the
    // pool's connections, each past the five runs after which PostgreSQL may keep a generic plan:
    // a range of positions (subscriptions, `read_all`) and a stream's events (`read_stream`).
    let mut readers = Vec::new();
    for reader in 0..4u64 {
        let (log, label) = (log.clone(), label.to_owned());
        readers.push(tokio::spawn(async move {
            for n in 0..20u64 {
                let events = log.read_all(reader * 20 + n, 10).await.unwrap();
                assert!(!events.is_empty());
                let stream = format!("item-{label}-{reader}-{}", n % 5);
                assert!(!log.read_stream(&stream, 0, 100).await.unwrap().is_empty());
            }
        }));
    }
    for reader in readers {
        reader.await.unwrap();
    }
    8 * rounds as i64 + 1
}

/// PostgreSQL's counts for `ledger_events` (inserts, sequential scans, index scans) once they
/// include `inserted` inserts: backends report them when idle (within about ten seconds) or when
/// they close.
async fn table_counts(client: &tokio_postgres::Client, inserted: i64) -> (i64, i64, i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let row = client
            .query_one(
                "SELECT n_tup_ins, seq_scan, coalesce(idx_scan, 0) FROM pg_stat_user_tables \
                 WHERE relname = 'ledger_events'",
                &[],
            )
            .await
            .unwrap();
        let counts: (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        if counts.0 >= inserted {
            return counts;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "PostgreSQL's statistics counted {} inserts of {inserted} after 40 s",
            counts.0
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// On a new database, the log's statements are prepared and planned while the table is small,
/// and PostgreSQL keeps a generic plan once it has run a statement five times (PL/pgSQL keeps the
/// trigger's per session). Once they have settled, appending and reading never scan the events
/// table: every lookup (the streams' tips, the stored ids, the density trigger's previous rows,
/// a range of positions, a stream's events) stays an index step, so that none scans the table
/// once it is large (two did: ADR 0011). Counted by PostgreSQL's own statistics for the table,
/// between two rounds of appends and reads on the same connections. (The first round's scans of a table of a few pages are the planner's right
/// choice then, and not counted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appending_to_a_new_database_never_scans_the_events_table() {
    let (log, url) = fresh_log("never_scans").await;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let first = append_rounds(&log, "first", 40).await;
    let (_, scans_before, _) = table_counts(&client, first).await;
    let second = append_rounds(&log, "second", 40).await;
    // Closing the log's connections makes their backends report the rest.
    drop(log);
    let (inserted, scans_after, by_index) = table_counts(&client, first + second).await;
    assert_eq!(inserted, first + second, "every insert counted");
    assert!(by_index > 0, "the appends looked rows up by index");
    assert_eq!(
        scans_after - scans_before,
        0,
        "appending and reading scanned ledger_events {} times once the plans had settled: a writer's or a reader's statement, or the density trigger, was planned as a scan of the table",
        scans_after - scans_before
    );
}

/// A PostgreSQL that takes TCP connections over TLS only (plain ones rejected by `pg_hba.conf`),
/// with a certificate for 127.0.0.1 from a CA made for the test: the store URL's `sslmode` and
/// `sslrootcert` connect or refuse as libpq's do, and a refusal names its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_takes_only_tls_connections_is_reached_as_sslmode_says() {
    let ca = crate::tls::TestCa::new("ledger test CA");
    let stranger = crate::tls::TestCa::new("another CA");
    let (certificate, key) = ca.issue_pem(&["127.0.0.1"]);
    let files = tempfile::tempdir().unwrap();
    let trusted = files.path().join("ca.pem");
    let untrusted = files.path().join("other-ca.pem");
    std::fs::write(&trusted, &ca.pem).unwrap();
    std::fs::write(&untrusted, &stranger.pem).unwrap();
    let server = TestPostgres::start();
    server.require_tls(&certificate, &key);
    let url = server.create_database("tls");
    // The certificate names 127.0.0.1, not localhost.
    let by_name = url.replace("127.0.0.1", "localhost");
    let (trusted, untrusted) = (trusted.display(), untrusted.display());
    let options = || PostgresOptions {
        timeout: Duration::from_secs(5),
        ..PostgresOptions::default()
    };

    let accepted = [
        url.clone(),
        format!("{url}?sslmode=prefer"),
        format!("{url}?sslmode=require"),
        format!("{url}?sslmode=verify-ca&sslrootcert={trusted}"),
        format!("{url}?sslmode=verify-full&sslrootcert={trusted}"),
        format!("{url}?sslmode=require&sslrootcert={trusted}"),
        // verify-ca checks the chain, not the name.
        format!("{by_name}?sslmode=verify-ca&sslrootcert={trusted}"),
    ];
    for (number, store) in accepted.iter().enumerate() {
        let log = PostgresLog::connect(store, options())
            .await
            .unwrap_or_else(|error| panic!("{store}: {error:#}"));
        let appended = log
            .append(
                "item-tls",
                ExpectedVersion::Any,
                vec![event("CommentAdded", serde_json::json!({"n": number}))],
            )
            .await
            .unwrap_or_else(|error| panic!("{store}: {error}"));
        assert_eq!(appended.first_position, number as u64, "{store}");
    }

    let refused = [
        // The server rejects a connection without TLS.
        (format!("{url}?sslmode=disable"), "pg_hba.conf"),
        // A certificate from a CA not trusted.
        (
            format!("{url}?sslmode=verify-full&sslrootcert={untrusted}"),
            "UnknownIssuer",
        ),
        (
            format!("{url}?sslmode=verify-ca&sslrootcert={untrusted}"),
            "UnknownIssuer",
        ),
        // A trusted certificate for another name.
        (
            format!("{by_name}?sslmode=verify-full&sslrootcert={trusted}"),
            "not valid for name \"localhost\"",
        ),
    ];
    for (store, reason) in refused {
        let error = PostgresLog::connect(&store, options())
            .await
            .err()
            .unwrap_or_else(|| panic!("{store} connected"));
        let error = format!("{error:#}");
        assert!(error.contains(reason), "{store}: {error}");
    }
    let log = PostgresLog::connect(&accepted[0], options()).await.unwrap();
    assert_eq!(
        read_all_of(&log).await.len(),
        accepted.len(),
        "only the accepted connections wrote"
    );
}
