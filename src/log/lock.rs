//! The lock that lets one process at a time write a data directory.
//!
//! An advisory `flock` on `DATA_DIR/LOCK`, held for the life of the process (the kernel drops it
//! when the process dies, even by SIGKILL, so a crash never leaves a stale lock). The file's
//! contents name the holder so that a refused second writer can say who holds it.

use anyhow::Context;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// An exclusive hold on a data directory; released on drop.
#[derive(Debug)]
pub struct DirectoryLock {
    file: File,
    path: PathBuf,
}

impl DirectoryLock {
    /// Takes the directory's lock for this process, or says who holds it.
    pub fn acquire(data_dir: &Path, purpose: &str) -> anyhow::Result<Self> {
        let path = data_dir.join("LOCK");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            // Owner-only, like everything in the data directory (`docs/ledger-format.md`).
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                anyhow::bail!(
                    "data directory {} is in use by another process ({}); stop it first, or point this command at a server instead",
                    data_dir.display(),
                    if holder.is_empty() {
                        "holder unknown"
                    } else {
                        holder
                    }
                );
            }
            Err(TryLockError::Error(error)) => {
                return Err(error).with_context(|| format!("locking {}", path.display()));
            }
        }
        let holder = format!(
            "pid {} ({}) since {}\n",
            std::process::id(),
            purpose,
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        file.set_len(0).context("clearing lock file")?;
        file.seek(SeekFrom::Start(0))
            .context("rewinding lock file")?;
        file.write_all(holder.as_bytes())
            .context("writing lock file")?;
        Ok(DirectoryLock { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DirectoryLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}
