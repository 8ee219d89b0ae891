//! `LogHealth`: whether a log takes appends, and if not, whether it will again without a restart.

/// The state of a log's writes, as health checks and metrics report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogHealth {
    /// Appends are taken.
    Writable,
    /// Appends are refused for now with `LogError::WritesPaused`, and every append retries what
    /// failed (creating the next segment file); the log recovers by itself once that works.
    /// Nothing unknown is on disk: the failure came before any record was written.
    WritesPaused { reason: String },
    /// Appends are refused with `LogError::Poisoned` until the log is reopened (a restart): a
    /// write or fsync of records failed, and after a failed fsync the kernel may have dropped the
    /// dirty pages it failed to write, so nothing written through this descriptor can be trusted.
    Poisoned { reason: String },
}

impl LogHealth {
    /// A stable snake_case name of the state, for JSON answers and logs.
    pub fn name(&self) -> &'static str {
        match self {
            LogHealth::Writable => "writable",
            LogHealth::WritesPaused { .. } => "writes_paused",
            LogHealth::Poisoned { .. } => "poisoned",
        }
    }

    /// Why appends are refused; `None` while they are taken.
    pub fn reason(&self) -> Option<&str> {
        match self {
            LogHealth::Writable => None,
            LogHealth::WritesPaused { reason } | LogHealth::Poisoned { reason } => Some(reason),
        }
    }

    pub fn is_writable(&self) -> bool {
        matches!(self, LogHealth::Writable)
    }
}
