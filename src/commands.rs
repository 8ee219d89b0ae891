//! Command handling: load an item's stream, fold it, `decide`, and append the resulting events
//! with the stream's version as the expected version.
//!
//! This is the one place where the pure domain meets the log. A concurrent change between the
//! read and the append is a `Conflict`, never a silent overwrite: the caller decides whether to
//! re-read and retry (a scheduler may; a reviewer who decided on what they saw should see the new
//! state first).

use crate::log::{EventLog, ExpectedVersion, LogError, read_whole_stream};
use projections::event::{NewEvent, RecordedEvent};
use projections::item::{
    Command, CommandContext, DomainError, EventDecodingError, ItemEvent, ItemState, decide, fold,
};
use serde_json::value::RawValue;
use uuid::Uuid;

/// What the shell needs of a domain event to store it: its type, schema version and data.
pub trait DomainEvent {
    fn event_type(&self) -> &'static str;
    fn schema_version(&self) -> u32;
    /// The data as the JSON text to store.
    fn to_json(&self) -> Box<RawValue>;
}

impl DomainEvent for ItemEvent {
    fn event_type(&self) -> &'static str {
        ItemEvent::event_type(self)
    }
    fn schema_version(&self) -> u32 {
        ItemEvent::schema_version(self)
    }
    fn to_json(&self) -> Box<RawValue> {
        // Straight to text: item events are every request's write.
        ItemEvent::to_json(self)
    }
}

/// Principal and delivery events (rare) are stored through their `Value` form.
macro_rules! domain_event_through_value {
    ($($event:ty),+) => {$(
        impl DomainEvent for $event {
            fn event_type(&self) -> &'static str {
                <$event>::event_type(self)
            }
            fn schema_version(&self) -> u32 {
                <$event>::schema_version(self)
            }
            fn to_json(&self) -> Box<RawValue> {
                serde_json::value::to_raw_value(&<$event>::to_data(self))
                    .expect("a Value always serializes")
            }
        }
    )+};
}

domain_event_through_value!(
    projections::principal::PrincipalEvent,
    projections::delivery::DeliveryEvent
);

/// The events one call appends, with fresh time-ordered ids: the first is caused by the command,
/// the rest of the call by the first.
pub fn to_new_events<E: DomainEvent>(
    events: &[E],
    actor: &str,
    correlation_id: Option<Uuid>,
) -> Vec<NewEvent> {
    let first_id = Uuid::now_v7();
    events
        .iter()
        .enumerate()
        .map(|(index, event)| NewEvent {
            id: if index == 0 { first_id } else { Uuid::now_v7() },
            event_type: event.event_type().to_owned(),
            schema_version: event.schema_version(),
            data: event.to_json(),
            actor: actor.to_owned(),
            causation_id: (index > 0).then_some(first_id),
            correlation_id,
        })
        .collect()
}

/// The stream that holds one item's events.
pub fn item_stream(item_id: Uuid) -> String {
    format!("item-{item_id}")
}

/// The item whose events `stream` holds, if it is an item's stream.
pub fn item_of_stream(stream: &str) -> Option<Uuid> {
    stream
        .strip_prefix("item-")
        .and_then(|id| Uuid::parse_str(id).ok())
}

/// Why a command was not carried out. Nothing was written in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The domain refused the command.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The item changed between reading it and appending; `current` is its version now.
    #[error("the item changed while the command was decided (now at version {current:?})")]
    Conflict { current: Option<u64> },
    /// The log failed.
    #[error(transparent)]
    Log(LogError),
    /// A stored event of the item's stream is not an item event.
    #[error("stream {stream} holds an event that is not an item event: {source}")]
    Decoding {
        stream: String,
        #[source]
        source: EventDecodingError,
    },
}

/// What a carried-out command wrote.
#[derive(Debug, Clone)]
pub struct Executed {
    pub events: Vec<ItemEvent>,
    pub first_position: u64,
    pub last_position: u64,
    /// The item's stream version after the append.
    pub version: u64,
    /// The item's state after the events.
    pub state: ItemState,
}

/// An item's state, folded from its stream, and the stream's version (`None`: no such item).
pub async fn load_item(
    log: &dyn EventLog,
    item_id: Uuid,
) -> Result<(ItemState, Option<u64>), CommandError> {
    let events = read_whole_stream(log, &item_stream(item_id))
        .await
        .map_err(CommandError::Log)?
        .iter()
        .map(decode_item_event)
        .collect::<Result<Vec<_>, _>>()?;
    let version = events.len().checked_sub(1).map(|version| version as u64);
    Ok((fold(&events), version))
}

/// An item event from a stored event.
pub fn decode_item_event(recorded: &RecordedEvent) -> Result<ItemEvent, CommandError> {
    ItemEvent::from_type_and_json(&recorded.event_type, &recorded.data).map_err(|source| {
        CommandError::Decoding {
            stream: recorded.stream.clone(),
            source,
        }
    })
}

/// Decides `command` on the item's current state and appends the events it produces.
pub async fn execute(
    log: &dyn EventLog,
    item_id: Uuid,
    command: &Command,
    context: &CommandContext,
    correlation_id: Option<Uuid>,
) -> Result<Executed, CommandError> {
    let (state, version) = load_item(log, item_id).await?;
    execute_on(
        log,
        item_id,
        state,
        version,
        command,
        context,
        correlation_id,
    )
    .await
}

/// Like `execute`, on a state the caller already has (the projector's copy of the item) instead
/// of reading the stream again. Safe with a stale copy: the append expects `version`, so an item
/// that moved on is a `Conflict`, never an overwrite.
#[tracing::instrument(
    level = "debug",
    name = "execute",
    skip_all,
    fields(item = %item_id, command = command.name())
)]
pub async fn execute_on(
    log: &dyn EventLog,
    item_id: Uuid,
    state: ItemState,
    version: Option<u64>,
    command: &Command,
    context: &CommandContext,
    correlation_id: Option<Uuid>,
) -> Result<Executed, CommandError> {
    let events = decide(&state, command, context)?;
    let expected = match version {
        None => ExpectedVersion::NoStream,
        Some(version) => ExpectedVersion::Exact(version),
    };
    let new_events = to_new_events(&events, &context.actor, correlation_id);
    let appended = log
        .append(&item_stream(item_id), expected, new_events)
        .await
        .map_err(|error| match error {
            LogError::Conflict { current, .. } => CommandError::Conflict { current },
            other => CommandError::Log(other),
        })?;
    let state = events.iter().fold(state, |state, event| {
        projections::item::evolve(state, event)
    });
    Ok(Executed {
        events,
        first_position: appended.first_position,
        last_position: appended.last_position,
        version: appended.stream_version,
        state,
    })
}
