//! Workflow continuation as a read model: which decisions are owed to a callback URL, and the
//! attempts made to deliver them.
//!
//! A delivery is owed when an item with a callback URL reaches an answer for its submitter
//! (decided, changes requested, withdrawn). Every attempt, and the end of a delivery (delivered,
//! or abandoned after the last retry), is an event of the stream `callback-<item id>`, so that a
//! restart knows exactly what is still owed and how often it was tried.

use crate::item::{ItemEvent, ItemState};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The stream of an item's delivery events.
pub fn delivery_stream(item_id: Uuid) -> String {
    format!("callback-{item_id}")
}

/// Attempts before a delivery is abandoned.
pub const MAXIMUM_ATTEMPTS: u32 = 8;

/// The wait after the `attempt`-th failed attempt: 1 s, 2 s, 4 s, … up to 5 minutes.
pub fn backoff(attempt: u32) -> Duration {
    let seconds = 1i64 << attempt.saturating_sub(1).min(9);
    Duration::seconds(seconds.min(300))
}

/// Namespace of delivery ids (UUIDv5 of the item id and the answer's position), so that the same
/// answer always has the same delivery id, across attempts and restarts.
const DELIVERY_NAMESPACE: Uuid = Uuid::from_u128(0x6465_6c69_7665_7279_2d6c_6564_6765_7221);

pub fn delivery_id(item_id: Uuid, answer_position: u64) -> Uuid {
    let mut name = item_id.as_bytes().to_vec();
    name.extend_from_slice(&answer_position.to_be_bytes());
    Uuid::new_v5(&DELIVERY_NAMESPACE, &name)
}

/// Facts about deliveries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum DeliveryEvent {
    /// One POST to the callback URL, and what came of it.
    CallbackAttempted(CallbackAttempted),
    /// The last retry failed; the delivery is given up.
    CallbackAbandoned(CallbackAbandoned),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackAttempted {
    pub delivery_id: Uuid,
    pub item_id: Uuid,
    pub answer_position: u64,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub url: String,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    pub delivered: bool,
    /// When the next attempt is due, if there is one.
    #[serde(default, with = "crate::time::rfc3339_option")]
    pub next_attempt_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackAbandoned {
    pub delivery_id: Uuid,
    pub item_id: Uuid,
    pub attempts: u32,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

impl DeliveryEvent {
    pub const EVENT_TYPES: [&'static str; 2] = ["CallbackAttempted", "CallbackAbandoned"];

    pub fn event_type(&self) -> &'static str {
        match self {
            DeliveryEvent::CallbackAttempted(_) => "CallbackAttempted",
            DeliveryEvent::CallbackAbandoned(_) => "CallbackAbandoned",
        }
    }

    pub fn schema_version(&self) -> u32 {
        1
    }

    /// The payload without the type.
    pub fn to_data(&self) -> serde_json::Value {
        match self {
            DeliveryEvent::CallbackAttempted(data) => serde_json::to_value(data),
            DeliveryEvent::CallbackAbandoned(data) => serde_json::to_value(data),
        }
        .expect("delivery events serialize")
    }

    pub fn from_type_and_data(
        event_type: &str,
        data: &serde_json::Value,
    ) -> Result<DeliveryEvent, String> {
        match event_type {
            "CallbackAttempted" => serde_json::from_value(data.clone())
                .map(DeliveryEvent::CallbackAttempted)
                .map_err(|error| error.to_string()),
            "CallbackAbandoned" => serde_json::from_value(data.clone())
                .map(DeliveryEvent::CallbackAbandoned)
                .map_err(|error| error.to_string()),
            other => Err(format!("unknown delivery event type {other:?}")),
        }
    }
}

/// A delivery still owed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PendingDelivery {
    pub delivery_id: Uuid,
    pub item_id: Uuid,
    /// The position of the event that answered the submitter.
    pub answer_position: u64,
    pub url: String,
    pub attempts: u32,
    #[serde(with = "crate::time::rfc3339")]
    pub next_attempt_at: DateTime<Utc>,
}

/// Every delivery still owed, and how many were delivered or abandoned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Deliveries {
    pending: BTreeMap<Uuid, PendingDelivery>,
    pub delivered: u64,
    pub abandoned: u64,
}

impl Deliveries {
    /// Notes a delivery owed when `event` (at `position`) answers the submitter of `item` (the
    /// item's state after the event) and the item has a callback URL.
    pub fn on_item_event(&mut self, position: u64, item: &ItemState, event: &ItemEvent) {
        let answers = matches!(
            event,
            ItemEvent::ItemDecided(_)
                | ItemEvent::ChangesRequested(_)
                | ItemEvent::ItemWithdrawn(_)
        );
        let (true, Some(url)) = (answers, &item.callback_url) else {
            return;
        };
        let delivery_id = delivery_id(item.id, position);
        self.pending.insert(
            delivery_id,
            PendingDelivery {
                delivery_id,
                item_id: item.id,
                answer_position: position,
                url: url.to_string(),
                attempts: 0,
                next_attempt_at: event.occurred_at(),
            },
        );
    }

    pub fn apply(&mut self, event: &DeliveryEvent) {
        match event {
            DeliveryEvent::CallbackAttempted(attempted) => {
                if attempted.delivered {
                    if self.pending.remove(&attempted.delivery_id).is_some() {
                        self.delivered += 1;
                    }
                } else if let Some(pending) = self.pending.get_mut(&attempted.delivery_id) {
                    pending.attempts = pending.attempts.max(attempted.attempt);
                    if let Some(next) = attempted.next_attempt_at {
                        pending.next_attempt_at = next;
                    }
                }
            }
            DeliveryEvent::CallbackAbandoned(abandoned) => {
                if self.pending.remove(&abandoned.delivery_id).is_some() {
                    self.abandoned += 1;
                }
            }
        }
    }

    /// Deliveries whose next attempt is due at `now`, oldest first.
    pub fn due(&self, now: DateTime<Utc>) -> Vec<PendingDelivery> {
        let mut due: Vec<PendingDelivery> = self
            .pending
            .values()
            .filter(|pending| pending.next_attempt_at <= now)
            .cloned()
            .collect();
        due.sort_by_key(|pending| (pending.next_attempt_at, pending.answer_position));
        due
    }

    pub fn pending(&self) -> impl Iterator<Item = &PendingDelivery> {
        self.pending.values()
    }

    /// The earliest next attempt, so that the dispatcher can sleep until then.
    pub fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        self.pending
            .values()
            .map(|pending| pending.next_attempt_at)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::seconds(1));
        assert_eq!(backoff(2), Duration::seconds(2));
        assert_eq!(backoff(4), Duration::seconds(8));
        assert_eq!(backoff(30), Duration::seconds(300));
    }

    #[test]
    fn a_delivery_id_is_the_same_for_the_same_answer_only() {
        let item = Uuid::from_u128(7);
        assert_eq!(delivery_id(item, 3), delivery_id(item, 3));
        assert_ne!(delivery_id(item, 3), delivery_id(item, 4));
        assert_ne!(delivery_id(item, 3), delivery_id(Uuid::from_u128(8), 3));
    }

    #[test]
    fn attempts_move_the_next_attempt_and_delivery_ends_it() {
        let mut deliveries = Deliveries::default();
        let at = DateTime::<Utc>::from_timestamp(1_764_000_000, 0).unwrap();
        let id = delivery_id(Uuid::from_u128(1), 5);
        deliveries.pending.insert(
            id,
            PendingDelivery {
                delivery_id: id,
                item_id: Uuid::from_u128(1),
                answer_position: 5,
                url: "http://127.0.0.1:9/hook".into(),
                attempts: 0,
                next_attempt_at: at,
            },
        );
        assert_eq!(deliveries.due(at).len(), 1);
        let attempt = |number: u32, delivered: bool| {
            DeliveryEvent::CallbackAttempted(CallbackAttempted {
                delivery_id: id,
                item_id: Uuid::from_u128(1),
                answer_position: 5,
                attempt: number,
                url: "http://127.0.0.1:9/hook".into(),
                at,
                status: Some(if delivered { 200 } else { 503 }),
                error: None,
                delivered,
                next_attempt_at: (!delivered).then(|| at + backoff(number)),
            })
        };
        deliveries.apply(&attempt(1, false));
        assert!(deliveries.due(at).is_empty());
        assert_eq!(
            deliveries.next_attempt_at(),
            Some(at + Duration::seconds(1))
        );
        deliveries.apply(&attempt(2, true));
        assert_eq!(deliveries.pending().count(), 0);
        assert_eq!(deliveries.delivered, 1);
        // A repeated outcome changes nothing.
        deliveries.apply(&attempt(2, true));
        assert_eq!(deliveries.delivered, 1);
    }

    #[test]
    fn events_round_trip_through_type_and_data() {
        let event = DeliveryEvent::CallbackAbandoned(CallbackAbandoned {
            delivery_id: Uuid::from_u128(9),
            item_id: Uuid::from_u128(1),
            attempts: 8,
            at: DateTime::<Utc>::from_timestamp(1_764_000_000, 0).unwrap(),
        });
        let back = DeliveryEvent::from_type_and_data(event.event_type(), &event.to_data()).unwrap();
        assert_eq!(back, event);
        assert!(DeliveryEvent::from_type_and_data("Nope", &event.to_data()).is_err());
    }
}
