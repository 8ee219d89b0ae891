//! The time the shell gives to commands: the system clock, or one that tests move by hand.

use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};

/// Where "now" comes from.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    #[default]
    System,
    /// A clock that stands still until `advance` moves it (a std Mutex: held for a copy only).
    Manual(Arc<Mutex<DateTime<Utc>>>),
}

impl Clock {
    pub fn manual(start: DateTime<Utc>) -> Clock {
        Clock::Manual(Arc::new(Mutex::new(start)))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Manual(now) => *now.lock().expect("clock lock"),
        }
    }

    /// Moves a manual clock forward; the system clock cannot be moved.
    pub fn advance(&self, by: chrono::Duration) {
        if let Clock::Manual(now) = self {
            let mut now = now.lock().expect("clock lock");
            *now += by;
        }
    }
}
