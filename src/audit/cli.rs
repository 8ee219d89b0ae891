//! The `ledger audit` commands: the verifier key, a checkpoint on demand, checking the log
//! against trusted checkpoints, and compliance bundles (export and offline verification).

use super::{CheckpointKey, Verifier, bundle, trusted};
use crate::log::{EventLog, Store, read_whole_stream};
use anyhow::Context;
use std::path::{Path, PathBuf};

/// Where the checkpoint key is read from, as the CLI's options say.
#[derive(Debug, Clone, Default)]
pub struct KeyOptions {
    /// `--checkpoint-key FILE`.
    pub file: Option<PathBuf>,
    /// `--checkpoint-origin NAME`, for a key created now.
    pub origin: Option<String>,
}

/// The server's checkpoint key as `serve` would use it (created if there is none yet).
pub async fn key(
    log: &dyn EventLog,
    store: &Store,
    options: &KeyOptions,
) -> anyhow::Result<CheckpointKey> {
    super::checkpoint_key(
        log,
        store.data_dir(),
        options.file.as_deref(),
        options.origin.as_deref(),
    )
    .await
}

/// The verifier a check uses: `--key` if given; else the public half of the ledger's key file
/// (`--checkpoint-key`, or `checkpoint.key` of the data directory) if there is one; else none.
pub fn verifier(
    given: Option<&str>,
    store: &Store,
    options: &KeyOptions,
) -> anyhow::Result<Option<Verifier>> {
    if let Some(key) = given {
        return Verifier::parse(key).map(Some);
    }
    let file = options
        .file
        .clone()
        .or_else(|| store.data_dir().map(|dir| dir.join(super::KEY_FILE)));
    match file {
        Some(path) if path.exists() => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            Ok(Some(CheckpointKey::parse(&text)?.verifier().clone()))
        }
        _ => Ok(None),
    }
}

/// `ledger audit checkpoint`: signs and appends a checkpoint of the whole log now.
pub async fn checkpoint_now(store: &Store, options: &KeyOptions) -> anyhow::Result<()> {
    let log = crate::log::open(store, "ledger audit checkpoint").await?;
    let key = key(log.as_ref(), store, options).await?;
    let audit = trusted::audit_of_log(log.as_ref()).await?;
    if audit.uncovered() == 0 {
        match audit.latest() {
            Some(latest) => println!(
                "the latest checkpoint (tree size {}) already covers every event",
                latest.checkpoint.tree_size
            ),
            None => println!("the log is empty: nothing to checkpoint"),
        }
        return Ok(());
    }
    let Some((_, checkpoint)) = super::checkpointer::append(
        log.as_ref(),
        &key,
        "cli",
        audit.tree.size(),
        &audit.root(),
        audit.stream_version(),
    )
    .await
    .context("appending the checkpoint")?
    else {
        anyhow::bail!("another checkpoint was stored meanwhile: run the command again");
    };
    print!("{}", checkpoint.note);
    Ok(())
}

/// `ledger audit verify --trusted-checkpoint FILE…`: true when the log extends every one.
pub async fn verify_trusted(
    store: &Store,
    options: &KeyOptions,
    given_key: Option<&str>,
    files: &[PathBuf],
    json: bool,
) -> anyhow::Result<bool> {
    let verifier = verifier(given_key, store, options)?.context(
        "no verifier key: give the one you trust with --key (`ledger audit public-key` printed it)",
    )?;
    let mut trusted_notes = Vec::new();
    for path in files {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        trusted_notes.push((path.display().to_string(), text));
    }
    let log = crate::log::open_read_only(store).await?;
    let audit = trusted::audit_of_log(log.as_ref()).await?;
    let checks = trusted::check_trusted(&audit, &verifier, &trusted_notes);
    let first_bad = checks.iter().find(|check| check.problem.is_some());
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "tree_size": audit.tree.size(),
                "root_hash": hex::encode(audit.root()),
                "verifier_key": verifier.key(),
                "checks": checks,
            }))?
        );
    } else {
        for check in &checks {
            match &check.problem {
                None => println!(
                    "ok: {} (tree size {}): the log extends it",
                    check.source,
                    check.tree_size.unwrap_or_default()
                ),
                Some(problem) => println!("NOT EXTENDED: {}: {problem}", check.source),
            }
        }
        match first_bad {
            None => println!(
                "ok: the log ({} events, root {}) extends all {} trusted checkpoints",
                audit.tree.size(),
                hex::encode(audit.root()),
                checks.len()
            ),
            Some(bad) => println!(
                "the first checkpoint the log does not extend: {}",
                bad.source
            ),
        }
    }
    Ok(first_bad.is_none())
}

/// What `ledger audit export` covers.
#[derive(Debug, Clone)]
pub enum ExportScope {
    Item(uuid::Uuid),
    /// Events recorded in `[from, to)`.
    Range {
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    },
}

/// `ledger audit export`: writes a bundle to `out` (standard output if `None`).
pub async fn export(
    store: &Store,
    options: &KeyOptions,
    scope: ExportScope,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let log = crate::log::open_read_only(store).await?;
    let verifier_key = match verifier(None, store, options)? {
        Some(verifier) => verifier.key().to_owned(),
        None => key(log.as_ref(), store, options)
            .await?
            .verifier()
            .key()
            .to_owned(),
    };
    let audit = trusted::audit_of_log(log.as_ref()).await?;
    let bundle = match scope {
        ExportScope::Item(item_id) => {
            let events =
                read_whole_stream(log.as_ref(), &crate::commands::item_stream(item_id)).await?;
            anyhow::ensure!(!events.is_empty(), "no item {item_id}");
            bundle::of_item(&events, &audit, &verifier_key)?
        }
        ExportScope::Range { from, to } => {
            anyhow::ensure!(from < to, "--from must be before --to");
            let mut events = Vec::new();
            let mut position = 0;
            loop {
                let page = log.read_all(position, 8192).await?;
                let Some(last) = page.last() else { break };
                position = last.position + 1;
                // Checkpoints are how the bundle is proven, not what it audits (and the latest
                // one cannot be covered by itself): left out; the bundle carries its checkpoint.
                events.extend(page.into_iter().filter(|event| {
                    event.recorded_at >= from
                        && event.recorded_at < to
                        && event.stream != projections::audit::CHECKPOINTS_STREAM
                }));
            }
            let format = |time: chrono::DateTime<chrono::Utc>| {
                time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            };
            bundle::of_range(&events, &format(from), &format(to), &audit, &verifier_key)?
        }
    };
    let text = serde_json::to_string_pretty(&bundle)? + "\n";
    match out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "wrote {} ({} events under the checkpoint of tree size {})",
                path.display(),
                bundle.events.len(),
                bundle.checkpoint.tree_size
            );
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// `ledger audit verify-bundle FILE`: true when the bundle verifies.
pub fn verify_bundle(path: &Path, key: Option<&str>) -> anyhow::Result<bool> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    match bundle::verify(&text, key) {
        Ok(report) => {
            println!(
                "ok: {} events, each in the checkpoint of tree size {} of {} (every proof step, hash and field checked; the summary matches them)",
                report.events, report.tree_size, report.origin
            );
            if !report.key_given {
                println!(
                    "WARNING: checked with the key the bundle carries ({}); compare it with the key the ledger's operator published, or pass --key",
                    report.verifier_key
                );
            }
            Ok(true)
        }
        Err(problem) => {
            println!("NOT VERIFIED: {problem}");
            Ok(false)
        }
    }
}
