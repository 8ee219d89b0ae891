//! Audit a third party can check (ADR 0013): the checkpoint key, signed checkpoints in the C2SP
//! formats, the job that signs and publishes them, items' decision records with their proofs,
//! and compliance bundles.
//!
//! A checkpoint is a C2SP `tlog-checkpoint` body (origin line, tree size, base64 Merkle root)
//! inside a C2SP `signed-note` with one Ed25519 signature line, byte for byte as Go's
//! `golang.org/x/mod/sumdb/note` writes it (through Cloudflare's port, `signed_note`), so that
//! tools in other languages verify it. The key is a Go note signer key
//! (`PRIVATE+KEY+<name>+<key id>+<base64>`); its verifier key (`<name>+<key id>+<base64>`) is what
//! auditors keep, and `ledger audit public-key` prints.
//!
//! # Layout
//! - [`checkpointer`]: the background job that signs a checkpoint every N events or T seconds,
//!   appends it to the `audit-checkpoints` stream, and publishes it to configured URLs.
//! - [`record`]: an item's decision record: its events, the decision, the edit as a diff, and
//!   inclusion proofs under the latest checkpoint.
//! - [`cli`]: the `ledger audit` commands.
//! - [`bundle`]: compliance bundles (`ledger audit export`) and their offline verification.
//! - [`trusted`]: checking a log against checkpoints an auditor saved (`--trusted-checkpoint`).

pub mod bundle;
pub mod checkpointer;
pub mod cli;
pub mod record;
pub mod trusted;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use projections::audit::CheckpointSigned;
use projections::event::Hash;
use signed_note::{Note, NoteError, StandardSigner, StandardVerifier, VerifierList};
use std::path::Path;
use tlog_tiles::Checkpoint;

/// The name of the checkpoint key's file in a data directory.
pub const KEY_FILE: &str = "checkpoint.key";

/// The name under which a store keeps the checkpoint key for all its servers.
const SHARED_KEY_NAME: &str = "checkpoint-key";

/// The key that signs checkpoints, with its name (the checkpoints' origin).
#[derive(Clone)]
pub struct CheckpointKey {
    signer: StandardSigner,
    verifier: Verifier,
    /// The Go note signer key text: the secret.
    secret: String,
}

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("CheckpointKey")
            .field("verifier_key", &self.verifier.key)
            .finish_non_exhaustive()
    }
}

impl CheckpointKey {
    /// A new key named `name` (a log name such as `ledger.example.com/approvals`: no spaces, no
    /// `+`), from 32 bytes of the operating system's randomness.
    pub fn generate(name: &str) -> anyhow::Result<CheckpointKey> {
        anyhow::ensure!(
            signed_note::is_key_name_valid(name),
            "a checkpoint key's name must be non-empty, without spaces or '+': {name:?}"
        );
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|error| anyhow::anyhow!("randomness: {error}"))?;
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let public = [&[1u8][..], signing.verifying_key().as_bytes()].concat();
        let secret = format!(
            "PRIVATE+KEY+{name}+{:08x}+{}",
            signed_note::key_id(name, &public),
            BASE64.encode([&[1u8][..], &seed].concat())
        );
        CheckpointKey::parse(&secret)
    }

    /// The key of a Go note signer key text (`PRIVATE+KEY+…`).
    pub fn parse(secret: &str) -> anyhow::Result<CheckpointKey> {
        let secret = secret.trim();
        let signer = StandardSigner::new(secret)
            .map_err(|error| anyhow::anyhow!("not a note signer key (PRIVATE+KEY+…): {error}"))?;
        // The verifier key, from the public half the signer's key id was checked against.
        // Laid out as the signer parsed it: `PRIVATE+KEY+<name>+<id>+<base64>` (base64 may hold
        // '+', names may not).
        let rest = secret
            .strip_prefix("PRIVATE+KEY+")
            .context("a note signer key")?;
        let (name, rest) = rest.split_once('+').context("a note signer key")?;
        let (_id, key) = rest.split_once('+').context("a note signer key")?;
        let bytes = BASE64.decode(key).context("a note signer key")?;
        let seed: [u8; 32] = bytes
            .get(1..)
            .and_then(|seed| seed.try_into().ok())
            .context("an Ed25519 note signer key")?;
        let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
        let verifier = Verifier::parse(&signed_note::new_ed25519_verifier_key(name, &public))?;
        Ok(CheckpointKey {
            signer,
            verifier,
            secret: secret.to_owned(),
        })
    }

    /// The key of the file `path`, or a new key named `name` written there (mode 0600) if there
    /// is no such file.
    pub fn load_or_create(path: &Path, name: &str) -> anyhow::Result<CheckpointKey> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                CheckpointKey::parse(&text).with_context(|| format!("reading {}", path.display()))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key = CheckpointKey::generate(name)?;
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .with_context(|| format!("creating {}", path.display()))?;
                file.write_all(format!("{}\n", key.secret).as_bytes())
                    .and_then(|()| file.sync_all())
                    .with_context(|| format!("writing {}", path.display()))?;
                tracing::info!(path = %path.display(), verifier_key = %key.verifier.key, "created the checkpoint key");
                Ok(key)
            }
            Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The key's name: every checkpoint's origin.
    pub fn name(&self) -> &str {
        &self.verifier.name
    }

    /// What verifies this key's signatures.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Signs the checkpoint of the tree of `tree_size` leaves with root `root`.
    pub fn sign(&self, tree_size: u64, root: &Hash) -> anyhow::Result<CheckpointSigned> {
        let body = Checkpoint::new(self.name(), tree_size, tlog_tiles::Hash(*root), "")
            .map_err(|error| anyhow::anyhow!("{error}"))?
            .to_bytes();
        let mut note = Note::new(&body, &[]).map_err(|error| anyhow::anyhow!("{error}"))?;
        note.add_sigs(&[&self.signer])
            .map_err(|error| anyhow::anyhow!("signing a checkpoint: {error}"))?;
        let note = String::from_utf8(note.to_bytes()).expect("a note is UTF-8");
        Ok(CheckpointSigned {
            origin: self.name().to_owned(),
            tree_size,
            root_hash: hex::encode(root),
            note,
        })
    }

    /// A random default name for a new key: `approval-ledger/` and 16 hex digits, unique to the
    /// ledger that creates it.
    pub fn default_name() -> String {
        format!(
            "approval-ledger/{}",
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        )
    }
}

/// Where a server's checkpoint key comes from: `key_file` if given (created there if missing);
/// else `checkpoint.key` in the data directory of a file log; else the key the store shares among
/// its servers (created by the first). `name` names a key this creates.
pub async fn checkpoint_key(
    log: &dyn crate::log::EventLog,
    data_dir: Option<&Path>,
    key_file: Option<&Path>,
    name: Option<&str>,
) -> anyhow::Result<CheckpointKey> {
    let name = name
        .map(str::to_owned)
        .unwrap_or_else(CheckpointKey::default_name);
    if let Some(path) = key_file {
        return CheckpointKey::load_or_create(path, &name);
    }
    if let Some(dir) = data_dir {
        return CheckpointKey::load_or_create(&dir.join(KEY_FILE), &name);
    }
    let candidate = CheckpointKey::generate(&name)?;
    match log
        .shared_secret(SHARED_KEY_NAME, candidate.secret.as_bytes())
        .await
        .context("reading the store's checkpoint key")?
    {
        Some(bytes) => CheckpointKey::parse(
            std::str::from_utf8(&bytes).context("the store's checkpoint key is not text")?,
        ),
        None => anyhow::bail!(
            "the {} store keeps no secrets: give the checkpoint key with --checkpoint-key FILE, the same on every server",
            log.backend()
        ),
    }
}

/// A verifier key (`<name>+<key id>+<base64 of 0x01 and the Ed25519 public key>`), and what it
/// verifies.
#[derive(Clone)]
pub struct Verifier {
    inner: StandardVerifier,
    name: String,
    key: String,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.key)
    }
}

/// What a checkpoint says, once its signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedCheckpoint {
    pub origin: String,
    pub tree_size: u64,
    pub root: Hash,
}

impl Verifier {
    /// Parses a verifier key.
    pub fn parse(key: &str) -> anyhow::Result<Verifier> {
        let key = key.trim();
        let inner = StandardVerifier::new(key)
            .map_err(|error| anyhow::anyhow!("not a note verifier key ({error}): {key:?}"))?;
        let name = key.split('+').next().unwrap_or_default().to_owned();
        Ok(Verifier {
            inner,
            name,
            key: key.to_owned(),
        })
    }

    /// The verifier key's text.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The key's name (the origin its checkpoints carry).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Verifies the signed note `note` with this key and reads the checkpoint in it: the note
    /// must carry a valid signature by this key (other signatures, by keys unknown here, are
    /// allowed, as the format says), its text must be a checkpoint, and its origin this key's name.
    pub fn open(&self, note: &str) -> Result<OpenedCheckpoint, String> {
        let parsed = Note::from_bytes(note.as_bytes())
            .map_err(|error| format!("not a signed note: {error}"))?;
        let verifiers = VerifierList::new(vec![Box::new(self.inner.clone())]);
        parsed.verify(&verifiers).map_err(|error| match error {
            NoteError::UnverifiedNote => {
                format!("the note carries no signature by the key {}", self.key)
            }
            NoteError::InvalidSignature { .. } => format!(
                "the signature by {} does not verify (a forged or altered checkpoint)",
                self.name
            ),
            other => format!("the note does not verify: {other}"),
        })?;
        let checkpoint = Checkpoint::from_bytes(parsed.text())
            .map_err(|error| format!("the note's text is not a checkpoint: {error}"))?;
        if checkpoint.origin() != self.name {
            return Err(format!(
                "the checkpoint's origin {:?} is not the key's name {:?}",
                checkpoint.origin(),
                self.name
            ));
        }
        Ok(OpenedCheckpoint {
            origin: checkpoint.origin().to_owned(),
            tree_size: checkpoint.size(),
            root: checkpoint.hash().0,
        })
    }

    /// Opens a stored checkpoint and checks that its stored fields say what its note says.
    pub fn open_stored(&self, stored: &CheckpointSigned) -> Result<OpenedCheckpoint, String> {
        let opened = self.open(&stored.note)?;
        if stored.origin != opened.origin
            || stored.tree_size != opened.tree_size
            || stored.root_hash != hex::encode(opened.root)
        {
            return Err("the stored fields do not match the signed note".into());
        }
        Ok(opened)
    }
}

/// The Standard Webhooks asymmetric signature (`v1a,`: Ed25519 over `"{id}.{timestamp}.{body}"`)
/// of a checkpoint publication, by the checkpoint key.
pub fn publication_signature(
    key: &CheckpointKey,
    webhook_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    use signed_note::Signer;
    let mut message = format!("{webhook_id}.{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    let signature = key
        .signer
        .sign(&message)
        .expect("Ed25519 signing does not fail");
    format!("v1a,{}", BASE64.encode(signature))
}
