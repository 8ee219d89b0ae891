//! Callbacks over HTTPS: a real TLS receiver on 127.0.0.1 whose certificate a CA made at test time
//! issued. Delivered when the server was given that CA; failed (the error names the certificate)
//! and retried, never delivered, when it was not. And `ledger serve --callback-ca-file` as a user
//! runs it.

use crate::api::{App, Calls, receiver, spawn_app, submit_and_decide};
use crate::support::ledger_binary;
use ledger::tls::ExtraRootCertificates;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::Value;
use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate authority that exists for one test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate, as a client is told to trust it.
    pub pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        TestCa {
            pem: certificate.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// What the server is told to trust.
    fn roots(&self) -> ExtraRootCertificates {
        ExtraRootCertificates::from_pem(self.pem.as_bytes()).unwrap()
    }

    /// A server certificate for `names` (IP addresses or DNS names) and its key.
    fn issue(&self, names: &[&str]) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let (certificate, key) = self.issue_with_key(names);
        (certificate.der().clone(), key.into())
    }

    /// [`issue`](Self::issue) as PEM texts, for a server that reads files: (certificate, key).
    pub fn issue_pem(&self, names: &[&str]) -> (String, String) {
        let (certificate, key) = self.issue_with_key(names);
        (certificate.pem(), key.serialize_pem())
    }

    fn issue_with_key(&self, names: &[&str]) -> (rcgen::Certificate, KeyPair) {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "test server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        (certificate, key)
    }
}

/// TCP connections on 127.0.0.1 that have finished a TLS handshake, for `axum::serve`.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, address)) = self.tcp.accept().await else {
                continue;
            };
            // A client that refuses the certificate ends the handshake: wait for the next one.
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, address);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// [`receiver`] (answers 200 at once) over HTTPS with `certificate`; returns its URL.
async fn spawn_https_receiver(
    (certificate, key): (CertificateDer<'static>, PrivateKeyDer<'static>),
) -> (String, Calls) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certificate], key)
        .unwrap();
    let listener = TlsListener {
        tcp: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    };
    let address = listener.tcp.local_addr().unwrap();
    let (router, calls) = receiver(0);
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("https://{address}/hook"), calls)
}

/// The data of every `CallbackAttempted` event of the item's `callback-<item>` stream.
async fn attempts(app: &App, id: &str) -> Vec<Value> {
    app.log
        .read_stream(&format!("callback-{id}"), 0, 100)
        .await
        .unwrap()
        .iter()
        .filter(|event| event.event_type == "CallbackAttempted")
        .map(|event| event.data_json().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_is_posted_over_https_to_a_receiver_whose_ca_the_server_trusts() {
    let app = spawn_app().await;
    let ca = TestCa::new("ledger test CA");
    let (url, calls) = spawn_https_receiver(ca.issue(&["127.0.0.1", "localhost"])).await;
    let dispatcher = app
        .dispatcher
        .clone()
        .with_extra_root_certificates(&ca.roots());
    let id = submit_and_decide(&app, &url).await;

    assert_eq!(dispatcher.tick().await, 1);
    assert_eq!(
        dispatcher.tick().await,
        0,
        "delivered: nothing more is owed"
    );

    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    let (headers, body) = &calls[0];
    assert_eq!(
        headers["webhook-signature"].to_str().unwrap(),
        ledger::callbacks::webhook_signature(
            &app.callback_key.secret_key_for("agent-1"),
            headers["webhook-id"].to_str().unwrap(),
            app.clock.now().timestamp(),
            body
        ),
        "the signature checks with the agent's secret"
    );
    let delivered: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(delivered["item"]["id"], id.as_str());
    assert_eq!(delivered["answer"]["type"], "ItemDecided");
    let attempts = attempts(&app, &id).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["delivered"], true);
    assert_eq!(attempts[0]["status"], 200);
    assert_eq!(attempts[0]["url"], url.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_receiver_whose_certificate_is_not_trusted_fails_each_attempt_and_is_retried() {
    let app = spawn_app().await;
    let stranger = TestCa::new("a CA the ledger was not given");
    let (url, calls) = spawn_https_receiver(stranger.issue(&["127.0.0.1"])).await;
    let id = submit_and_decide(&app, &url).await;

    // The platform's roots alone; then after the backoff, again.
    assert_eq!(app.dispatcher.tick().await, 1);
    assert_eq!(
        app.dispatcher.tick().await,
        0,
        "the retry waits for its backoff"
    );
    app.clock.advance(chrono::Duration::seconds(1));
    assert_eq!(app.dispatcher.tick().await, 1, "retried after 1 s");
    // An extra CA that did not issue the receiver's certificate does not make it trusted.
    let trusting_another_ca = app
        .dispatcher
        .clone()
        .with_extra_root_certificates(&TestCa::new("another CA").roots());
    app.clock.advance(chrono::Duration::seconds(2));
    assert_eq!(trusting_another_ca.tick().await, 1);

    assert!(
        calls.lock().unwrap().is_empty(),
        "no request got past the handshake"
    );
    let attempts = attempts(&app, &id).await;
    assert_eq!(attempts.len(), 3);
    for attempt in &attempts {
        assert_eq!(attempt["delivered"], false);
        assert_eq!(attempt["status"], Value::Null, "no HTTP answer");
        let error = attempt["error"].as_str().unwrap();
        assert!(
            error.contains("certificate") && error.contains("UnknownIssuer"),
            "the recorded error names the certificate: {error}"
        );
        assert!(
            attempt["next_attempt_at"].is_string(),
            "retried, not abandoned"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_a_trusted_ca_for_another_name_is_refused() {
    let app = spawn_app().await;
    let ca = TestCa::new("ledger test CA");
    let (url, calls) = spawn_https_receiver(ca.issue(&["webhooks.example.com"])).await;
    let dispatcher = app
        .dispatcher
        .clone()
        .with_extra_root_certificates(&ca.roots());
    let id = submit_and_decide(&app, &url).await;

    assert_eq!(dispatcher.tick().await, 1);
    assert!(calls.lock().unwrap().is_empty());
    let attempts = attempts(&app, &id).await;
    assert_eq!(attempts[0]["delivered"], false);
    let error = attempts[0]["error"].as_str().unwrap();
    assert!(
        error.contains("certificate not valid for name \"127.0.0.1\""),
        "the recorded error says the certificate is for another name: {error}"
    );
}

#[test]
fn serve_refuses_to_start_with_an_unreadable_or_unusable_callback_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |ca_file: &std::path::Path, through_env: bool| {
        let mut command = std::process::Command::new(ledger_binary());
        command
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("LEDGER_LOG", "warn");
        if through_env {
            command.env("LEDGER_CALLBACK_CA_FILE", ca_file);
        } else {
            command.arg("--callback-ca-file").arg(ca_file);
        }
        let output = command.output().expect("running ledger serve");
        assert_eq!(output.status.code(), Some(2));
        String::from_utf8(output.stderr).unwrap()
    };

    let missing = dir.path().join("missing-ca.pem");
    let stderr = serve(&missing, false);
    assert!(
        stderr.contains(&format!(
            "reading the callback CA file {}",
            missing.display()
        )),
        "{stderr}"
    );

    let not_pem = dir.path().join("not-pem.pem");
    std::fs::write(&not_pem, "this is not a certificate\n").unwrap();
    for through_env in [false, true] {
        let stderr = serve(&not_pem, through_env);
        assert!(stderr.contains(&not_pem.display().to_string()), "{stderr}");
        assert!(stderr.contains("no PEM certificate"), "{stderr}");
    }

    // Well-formed PEM around bytes that are no certificate.
    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let stderr = serve(&broken, false);
    assert!(stderr.contains(&broken.display().to_string()), "{stderr}");
    assert!(
        stderr.contains("certificate 1 is not a usable CA certificate"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "the file is read before the data directory is touched"
    );
}

#[test]
fn serve_on_a_host_without_platform_roots_still_starts_and_serves() {
    use std::io::{BufRead, Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(ledger_binary())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        // The platform verifier reads these instead of the system's CA store: no roots at all.
        .env("SSL_CERT_FILE", dir.path().join("no-bundle.pem"))
        .env("SSL_CERT_DIR", dir.path().join("no-certificates"))
        .env("LEDGER_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting ledger serve");
    let (lines_sender, lines) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines_sender.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (mut address, mut warned, mut seen) = (None, false, Vec::new());
    while address.is_none() || !warned {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(line) = lines.recv_timeout(left) else {
            let _ = child.kill();
            panic!("ledger serve did not start and warn:\n{}", seen.join("\n"));
        };
        if line.contains("ledger serving") {
            address = line
                .split_whitespace()
                .find_map(|field| field.strip_prefix("address="))
                .map(str::to_owned);
        }
        warned |= line.contains("no trust roots from the platform");
        seen.push(line);
    }

    // The dispatcher was built after that warning, and only then does the server answer.
    let mut stream = std::net::TcpStream::connect(address.unwrap()).unwrap();
    stream
        .write_all(b"GET /openapi.json HTTP/1.1\r\nhost: ledger\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let read = stream.read_to_string(&mut answer);
    child.kill().unwrap();
    child.wait().unwrap();
    read.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The process is gone, so its log ends here: the warning was given once (the dispatcher's
    // client is built once, with the extra roots, not once without and again with them).
    seen.extend(lines.iter());
    let warnings = seen
        .iter()
        .filter(|line| line.contains("no trust roots from the platform"))
        .count();
    assert_eq!(warnings, 1, "warned {warnings} times:\n{}", seen.join("\n"));
}
