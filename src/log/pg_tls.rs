//! TLS to PostgreSQL, asked for in the store's URL as libpq asks for it: `sslmode` (`disable`,
//! `prefer`, `require`, `verify-ca`, `verify-full`) and `sslrootcert` (a PEM file of CA
//! certificates, or `system` for the platform's roots).
//!
//! The modes mean what they mean to libpq (and to `psql`, and to the managed services' guides):
//! - `disable`: no TLS;
//! - `prefer` (the default, as libpq's): TLS if the server offers it, else plain; the server's
//!   certificate is not checked;
//! - `require`: TLS or no connection; the certificate is not checked, unless `sslrootcert` is
//!   given, in which case it is checked as `verify-ca` checks it;
//! - `verify-ca`: TLS, and the certificate must chain to a trusted root;
//! - `verify-full`: as `verify-ca`, and it must also name the host connected to.
//!
//! Trusted roots are `sslrootcert`'s certificates, or the platform's when it is absent or
//! `system`. A managed PostgreSQL (RDS, Azure, Cloud SQL) publishes its CA bundle for
//! `sslrootcert`. tokio-postgres itself knows only the first three modes and neither parameter:
//! they are taken out of the URL here, and the verifier below does the rest. The connector is
//! rustls (tokio-postgres-rustls) with the `ring` provider, the TLS stack the ledger already
//! builds for callbacks (ADR 0004); it also gives SCRAM its channel binding.
//!
//! One difference from libpq's OpenSSL: a self-signed server certificate given as its own
//! `sslrootcert` must not be a CA certificate (webpki refuses a CA certificate presented as a
//! server's, `CaUsedAsEndEntity`); `openssl req -x509` makes one unless given
//! `-addext basicConstraints=critical,CA:FALSE`. The start says so when it happens.

use anyhow::Context as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's TLS modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// The TLS a store URL asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreTls {
    pub mode: Mode,
    /// `sslrootcert`: `None` for the platform's roots.
    pub root_cert: Option<PathBuf>,
}

/// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL (tokio-postgres refuses the
/// latter and all but three values of the former): the URL without them, and what they ask.
/// Only the query is touched: the rest (several hosts, a Unix socket's directory) stays as
/// written, for tokio-postgres to read.
pub fn split(url: &str) -> anyhow::Result<(String, StoreTls)> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, query),
        None => (url, ""),
    };
    let mut mode = Mode::Prefer;
    let mut root_cert = None;
    let mut kept = Vec::new();
    for raw in query.split('&').filter(|pair| !pair.is_empty()) {
        let Some((key, value)) = url::form_urlencoded::parse(raw.as_bytes()).next() else {
            continue;
        };
        match key.as_ref() {
            "sslmode" => {
                mode = match value.as_ref() {
                    "disable" => Mode::Disable,
                    // libpq's `allow` tries plain first; plain or TLS, the certificate is never
                    // checked: `prefer` is the same connection where the server offers TLS.
                    "allow" | "prefer" => Mode::Prefer,
                    "require" => Mode::Require,
                    "verify-ca" => Mode::VerifyCa,
                    "verify-full" => Mode::VerifyFull,
                    other => anyhow::bail!(
                        "sslmode={other}: use disable, prefer, require, verify-ca or verify-full"
                    ),
                }
            }
            "sslrootcert" if value == "system" => root_cert = None,
            "sslrootcert" => root_cert = Some(PathBuf::from(value.as_ref())),
            _ => kept.push(raw),
        }
    }
    // A root certificate makes `require` check the chain, as libpq does.
    if mode == Mode::Require && root_cert.is_some() {
        mode = Mode::VerifyCa;
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, StoreTls { mode, root_cert }))
}

impl StoreTls {
    /// What tokio-postgres is told: whether to ask for TLS, and whether to go on without it.
    pub fn ssl_mode(&self) -> SslMode {
        match self.mode {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        }
    }

    /// The connector for every connection to the store; reads `sslrootcert` now, so that a
    /// missing or unusable file stops the start with its name.
    pub fn connector(&self) -> anyhow::Result<MakeRustlsConnect> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match self.mode {
            Mode::Disable | Mode::Prefer | Mode::Require => Arc::new(Lenient {
                chain: None,
                provider: provider.clone(),
            }),
            Mode::VerifyCa => Arc::new(Lenient {
                chain: Some(self.chain_verifier(&provider)?),
                provider: provider.clone(),
            }),
            Mode::VerifyFull => self.chain_verifier(&provider)?,
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS for PostgreSQL: the protocol versions")?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }

    /// The verifier of `verify-full`: the chain to `sslrootcert`'s roots (or the platform's),
    /// and the host's name.
    fn chain_verifier(
        &self,
        provider: &Arc<CryptoProvider>,
    ) -> anyhow::Result<Arc<dyn ServerCertVerifier>> {
        let Some(path) = &self.root_cert else {
            return Ok(Arc::new(
                rustls_platform_verifier::Verifier::new(provider.clone())
                    .context("TLS for PostgreSQL: the platform's trusted roots")?,
            ));
        };
        let pem = std::fs::read(path)
            .with_context(|| format!("reading sslrootcert {}", path.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(&pem) {
            let certificate = certificate
                .map_err(|error| anyhow::anyhow!("sslrootcert {}: {error}", path.display()))?;
            roots.add(certificate).with_context(|| {
                format!(
                    "sslrootcert {}: not a usable CA certificate",
                    path.display()
                )
            })?;
        }
        anyhow::ensure!(
            !roots.is_empty(),
            "sslrootcert {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
            path.display()
        );
        Ok(rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .context("TLS for PostgreSQL: the verifier")?)
    }
}

/// What libpq checks less of than `verify-full`. With a `chain` verifier (`verify-ca`):
/// everything it checks but the host's name. Without (`prefer`, `require`): the connection is
/// encrypted and the handshake's signatures are checked against the certificate presented, but
/// whose certificate it is, is not; it keeps a passive listener out, not an active impostor.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<dyn ServerCertVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            // Reported only once the chain is found valid: the name is all that failed.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A hint for a connection error that the TLS stack words in its own terms.
pub fn hint(error: &str) -> &'static str {
    if error.contains("CaUsedAsEndEntity") {
        " (the server's certificate is a CA certificate: one trusted as its own root must not \
         be; `openssl req -x509` makes one unless given `-addext basicConstraints=critical,CA:FALSE`)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_loses_the_tls_parameters_and_keeps_the_others() {
        let (url, tls) = split(
            "postgres://u:p@db.example:5432/ledger?sslmode=verify-full&application_name=x&sslrootcert=/etc/ca.pem",
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://u:p@db.example:5432/ledger?application_name=x"
        );
        assert_eq!(
            tls,
            StoreTls {
                mode: Mode::VerifyFull,
                root_cert: Some("/etc/ca.pem".into())
            }
        );
        let (url, tls) = split("postgres://u@h/db").unwrap();
        assert_eq!(url, "postgres://u@h/db");
        assert_eq!(tls.mode, Mode::Prefer, "libpq's default");
        assert_eq!(
            split("postgres://u@h/db?sslmode=disable").unwrap().0,
            "postgres://u@h/db"
        );
        // What only tokio-postgres reads is left as written: several hosts, a socket directory,
        // an encoded value.
        let several = "postgres://u@h1:5432,h2:5433/db?target_session_attrs=read-write";
        assert_eq!(split(several).unwrap().0, several);
        let socket = "postgres://u@%2Fvar%2Frun%2Fpostgresql/db?sslmode=disable";
        assert_eq!(
            split(socket).unwrap().0,
            "postgres://u@%2Fvar%2Frun%2Fpostgresql/db"
        );
        let (_, tls) = split("postgres://h/db?sslrootcert=%2Fetc%2Fmy%20ca.pem").unwrap();
        assert_eq!(tls.root_cert, Some("/etc/my ca.pem".into()));
    }

    #[test]
    fn require_with_a_root_certificate_checks_the_chain_as_libpq_does() {
        let (_, tls) = split("postgres://h/db?sslmode=require&sslrootcert=ca.pem").unwrap();
        assert_eq!(tls.mode, Mode::VerifyCa);
        let (_, tls) = split("postgres://h/db?sslmode=verify-full&sslrootcert=system").unwrap();
        assert_eq!(tls.root_cert, None, "`system`: the platform's roots");
        assert_eq!(tls.ssl_mode(), SslMode::Require);
    }

    #[test]
    fn an_unknown_mode_and_an_unreadable_root_file_are_refused_by_name() {
        let error = split("postgres://h/db?sslmode=on").unwrap_err().to_string();
        assert!(error.contains("sslmode=on"), "{error}");
        let (_, tls) =
            split("postgres://h/db?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem").unwrap();
        let error = format!("{:#}", tls.connector().err().expect("refused"));
        assert!(error.contains("/nonexistent/ca.pem"), "{error}");
    }
}
