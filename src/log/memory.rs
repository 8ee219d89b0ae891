//! The in-memory backend: the whole contract, nothing durable. For tests of everything above the
//! log (the HTTP layer through `router.oneshot`, commands, projections) that need no disk, and for
//! trying the ledger out (`ledger serve --store memory:`). It passes the same conformance suite
//! as the durable backends; what it stores is gone when the process ends.

use super::stamp::{self, Stored, StreamTip};
use super::{AppendResult, EventLog, ExpectedVersion, LogError, Subscription};
use async_trait::async_trait;
use foldhash::HashMap;
use projections::event::{NewEvent, RecordedEvent};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use uuid::Uuid;

/// The in-memory event log. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct MemoryLog {
    state: Arc<Mutex<State>>,
    head: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    events: Vec<RecordedEvent>,
    /// Each stream's positions, by version, and its tip.
    streams: HashMap<String, (Vec<u64>, StreamTip)>,
    /// Every stored id: (position, stream version).
    ids: HashMap<Uuid, u64>,
    last_recorded_micros: i64,
}

impl Default for MemoryLog {
    fn default() -> Self {
        MemoryLog::new()
    }
}

impl MemoryLog {
    /// An empty log.
    pub fn new() -> MemoryLog {
        MemoryLog {
            state: Arc::new(Mutex::new(State {
                last_recorded_micros: i64::MIN,
                ..State::default()
            })),
            head: watch::channel(0).0,
        }
    }
}

impl State {
    fn stored(&self, id: &Uuid, stream: &str) -> Stored {
        match self.ids.get(id) {
            None => Stored::No,
            Some(&position) => {
                let event = &self.events[position as usize];
                if event.stream == stream {
                    Stored::Here(position, event.version)
                } else {
                    Stored::Elsewhere
                }
            }
        }
    }
}

#[async_trait]
impl EventLog for MemoryLog {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, LogError> {
        stamp::check_append(stream, &events)?;
        let mut state = self.state.lock().expect("memory log lock");
        if let Some(result) = stamp::deduplicate(&events, |id| Ok(state.stored(id, stream)))? {
            return Ok(result);
        }
        let tip = state.streams.get(stream).map(|(_, tip)| *tip);
        stamp::check_expected(stream, expected, tip.map(|tip| tip.version))?;
        let first_position = state.events.len() as u64;
        let recorded_at = stamp::recorded_at_micros(chrono::Utc::now(), state.last_recorded_micros);
        let mut stamped = Vec::with_capacity(events.len());
        let new_tip = stamp::stamp(
            stream,
            tip,
            first_position,
            recorded_at,
            events,
            &mut Vec::new(),
            |recorded, _| stamped.push(recorded),
        );
        let state = &mut *state;
        state.last_recorded_micros = recorded_at;
        let (positions, stream_tip) = state
            .streams
            .entry(stream.to_owned())
            .or_insert_with(|| (Vec::new(), new_tip));
        for event in &stamped {
            positions.push(event.position);
            state.ids.insert(event.id, event.position);
        }
        *stream_tip = new_tip;
        state.events.extend(stamped);
        let head = state.events.len() as u64;
        self.head.send_replace(head);
        Ok(AppendResult {
            first_position,
            last_position: head - 1,
            stream_version: new_tip.version,
            deduplicated: false,
        })
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        let state = self.state.lock().expect("memory log lock");
        Ok(match state.streams.get(stream) {
            None => Vec::new(),
            Some((positions, _)) => positions
                .iter()
                .skip(from_version.min(usize::MAX as u64) as usize)
                .take(max)
                .map(|&position| state.events[position as usize].clone())
                .collect(),
        })
    }

    async fn read_all(
        &self,
        from_position: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        let state = self.state.lock().expect("memory log lock");
        Ok(read_from(&state, from_position, max))
    }

    async fn head(&self) -> Result<u64, LogError> {
        Ok(*self.head.borrow())
    }

    async fn stream_version(&self, stream: &str) -> Result<Option<u64>, LogError> {
        let state = self.state.lock().expect("memory log lock");
        Ok(state.streams.get(stream).map(|(_, tip)| tip.version))
    }

    fn subscribe(&self, from_position: u64) -> Box<dyn Subscription> {
        Box::new(super::follow::Follow::new(
            self.state.clone(),
            self.head.subscribe(),
            None,
            from_position,
        ))
    }

    fn backend(&self) -> &'static str {
        "memory"
    }

    fn stream_count(&self) -> Option<usize> {
        Some(self.state.lock().expect("memory log lock").streams.len())
    }

    async fn shared_secret(
        &self,
        _name: &str,
        candidate: &[u8],
    ) -> Result<Option<Vec<u8>>, LogError> {
        // One server, one process: the candidate is as shared as a secret can be here.
        Ok(Some(candidate.to_vec()))
    }
}

fn read_from(state: &State, from_position: u64, max: usize) -> Vec<RecordedEvent> {
    let start = from_position.min(state.events.len() as u64) as usize;
    state.events[start..].iter().take(max).cloned().collect()
}

#[async_trait]
impl super::follow::Pages for Mutex<State> {
    async fn page(&self, position: u64) -> Result<Vec<RecordedEvent>, LogError> {
        Ok(read_from(
            &self.lock().expect("memory log lock"),
            position,
            super::follow::PAGE,
        ))
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}
