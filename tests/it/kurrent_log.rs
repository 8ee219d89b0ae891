//! The KurrentDB backend. No KurrentDB server can be installed on the machines this project is
//! built on, so the conformance suite against one is an ignored test, run only when
//! `LEDGER_TEST_KURRENTDB_URL` names a server (`scripts/test-all.sh` runs it then, and otherwise
//! prints that it did not run; `cargo test` reports it as ignored, never as passed). What needs
//! no server runs always: the store URLs the backend accepts, and a store that does not answer
//! being `Unavailable`, not a crash or a hang.

use crate::log::{Capabilities, conformance};
use ledger::log::{KurrentLog, Store};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs a KurrentDB server: set LEDGER_TEST_KURRENTDB_URL and run with --ignored (README: KurrentDB)"]
async fn kurrentdb_log_conforms() {
    let url = std::env::var("LEDGER_TEST_KURRENTDB_URL").expect(
        "LEDGER_TEST_KURRENTDB_URL must name a KurrentDB server, e.g. esdb://localhost:2113?tls=false",
    );
    // Fresh streams each run, on a server that keeps the streams of earlier runs.
    let prefix = format!("ledgertest{}-", uuid::Uuid::new_v4().simple());
    let log = KurrentLog::connect_with_prefix(&url, &prefix)
        .await
        .expect("connect to KurrentDB");
    // KurrentDB deduplicates ids per stream only (ADR 0010).
    conformance(Arc::new(log), Capabilities { global_ids: false }).await;
}

#[test]
fn kurrentdb_store_urls_are_recognized() {
    let dir = std::path::Path::new("/unused");
    for url in [
        "kurrentdb://admin:changeit@localhost:2113?tls=false",
        "esdb://localhost:2113?tls=false",
        "esdb+discover://cluster.example:2113",
    ] {
        assert_eq!(
            Store::parse(Some(url), dir),
            Ok(Store::Kurrent(url.to_owned()))
        );
    }
    assert_eq!(
        Store::parse(Some("kurrentdb://admin:changeit@localhost:2113"), dir)
            .unwrap()
            .describe(),
        "kurrentdb://admin:***@localhost:2113"
    );
    assert!(Store::parse(Some("http://localhost:2113"), dir).is_err());
}

/// A KurrentDB that is not there: connecting fails with a message rather than hanging, and so
/// does `ledger serve --store` (a server that cannot read its log must not start).
#[tokio::test]
async fn a_kurrentdb_that_does_not_answer_is_an_error_not_a_hang() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("esdb://127.0.0.1:{closed}?tls=false");
    let started = std::time::Instant::now();
    let error = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        KurrentLog::connect(&url),
    )
    .await
    .expect("an answer, not a hang")
    .expect_err("nothing listens there");
    assert!(
        error.to_string().contains("$all"),
        "{error} (after {:?})",
        started.elapsed()
    );
}
