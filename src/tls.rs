//! TLS for outgoing HTTPS (callbacks): the `ring` crypto provider, and the roots a callback
//! receiver's certificate is checked against — the platform's, plus an operator's extra CA
//! certificates (`ledger serve --callback-ca-file`).
//!
//! The crypto provider is `ring`, not reqwest's default aws-lc-rs, for a smaller and more portable
//! build (measured in `Cargo.toml`'s comment and `docs/adr/0004-callback-tls.md`). reqwest is
//! therefore built with `rustls-no-provider`, which makes every `reqwest::Client` of the process
//! ask rustls for the process's default provider: [`install_crypto_provider`] installs it, and
//! must run before any client is built (the dispatcher and `main` call it).
//!
//! Certificate verification is never turned off: the extra certificates are added to the
//! platform's roots (rustls-platform-verifier, as reqwest does by default), never replace the
//! verifier.

use anyhow::Context;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::Path;

/// Makes `ring` the process's rustls crypto provider, unless one is installed already (then that
/// one stays: an embedding program's choice wins). Idempotent and cheap; call it before building
/// a `reqwest::Client`.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: a provider is installed either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// CA certificates trusted for callback receivers in addition to the platform's roots, each
/// checked to be usable as a trust anchor when read.
#[derive(Clone, Debug, Default)]
pub struct ExtraRootCertificates {
    certificates: Vec<CertificateDer<'static>>,
}

impl ExtraRootCertificates {
    /// No extra roots: the platform's alone.
    pub fn none() -> ExtraRootCertificates {
        ExtraRootCertificates::default()
    }

    /// Every `CERTIFICATE` block of a PEM text (other blocks, such as keys, are skipped); an
    /// error if there is none or one is not a usable CA certificate.
    pub fn from_pem(pem: &[u8]) -> anyhow::Result<ExtraRootCertificates> {
        let certificates = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| anyhow::anyhow!("not valid PEM: {error}"))?;
        anyhow::ensure!(
            !certificates.is_empty(),
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in it"
        );
        for (index, certificate) in certificates.iter().enumerate() {
            rustls::RootCertStore::empty()
                .add(certificate.clone())
                .with_context(|| {
                    format!("certificate {} is not a usable CA certificate", index + 1)
                })?;
        }
        Ok(ExtraRootCertificates { certificates })
    }

    /// [`from_pem`](Self::from_pem) on a file's contents; every error names the file.
    pub fn read_pem_file(path: &Path) -> anyhow::Result<ExtraRootCertificates> {
        let pem = std::fs::read(path)
            .with_context(|| format!("reading the callback CA file {}", path.display()))?;
        ExtraRootCertificates::from_pem(&pem)
            .with_context(|| format!("the callback CA file {} is unusable", path.display()))
    }

    pub fn len(&self) -> usize {
        self.certificates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.certificates.is_empty()
    }

    fn to_reqwest(&self) -> Vec<reqwest::Certificate> {
        self.certificates
            .iter()
            .map(|certificate| {
                reqwest::Certificate::from_der(certificate).expect("DER checked when read")
            })
            .collect()
    }
}

/// A client builder whose TLS trusts the platform's roots plus `extra`.
///
/// If the platform has no roots at all (a minimal container without a CA bundle), the platform
/// verifier refuses to be built; rather than failing plain `http://` callbacks too, the client
/// then trusts `extra` alone, and says so in the log.
pub fn client_with_roots(
    builder: impl Fn() -> reqwest::ClientBuilder,
    extra: &ExtraRootCertificates,
) -> reqwest::Client {
    install_crypto_provider();
    match builder().tls_certs_merge(extra.to_reqwest()).build() {
        Ok(client) => client,
        Err(error) => {
            tracing::warn!(
                error = %format!("{:#}", anyhow::Error::from(error)),
                extra_roots = extra.len(),
                "no trust roots from the platform: https callbacks trust only the callback CA file"
            );
            builder()
                .tls_certs_only(extra.to_reqwest())
                .build()
                .expect("an HTTP client with the given roots alone")
        }
    }
}
