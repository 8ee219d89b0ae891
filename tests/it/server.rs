//! The HTTP server on a real socket: `ledger serve` answers `/healthz` with the log's counts.

use crate::support::fill;
use ledger::log::FileLog;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A GET over a plain TCP connection; returns (status line, body).
async fn get(address: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.lines().next().unwrap_or_default().to_owned();
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

#[tokio::test]
async fn healthz_over_a_real_socket() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 3, 2).await;
    let log = Arc::new(FileLog::open(dir.path(), Default::default(), "test server").unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ledger::server::serve(
        listener,
        ledger::server::AppState { log },
        async move {
            let _ = stopped.await;
        },
    ));
    let (status, body) = get(address, "/healthz").await;
    assert!(status.contains("200"), "{status}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["events"], 6);
    assert_eq!(health["streams"], 3);
    let (status, _) = get(address, "/nothing-here").await;
    assert!(status.contains("404"), "{status}");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
