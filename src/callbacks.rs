//! Workflow continuation: POSTs each answer (decided, changes requested, withdrawn) to the item's
//! callback URL, signed, retried with exponential backoff, every attempt recorded as an event.
//!
//! What is owed comes from the `Deliveries` read model, which is rebuilt from the log, so a
//! restart resumes exactly the deliveries not yet delivered or abandoned. A crash between a POST
//! and the event recording it repeats that POST on restart, with the same `webhook-id`:
//! receivers deduplicate on it (at-least-once delivery, never a silent loss).
//!
//! Deliveries run concurrently, each in its own task, at most [`DeliveryLimits::per_destination`]
//! at a time to one host and port and [`DeliveryLimits::total`] in all, so that a receiver that
//! never answers holds up only its own deliveries. A delivery in flight is not started again
//! until its attempt is an event the read model has applied.
//!
//! Signatures follow the Standard Webhooks specification: `webhook-id` (the delivery id, the
//! same on every retry), `webhook-timestamp` (Unix seconds of this attempt) and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, under the
//! submitting agent's secret: 32 bytes, HMAC-SHA256(server key, "callback-secret:" + agent name),
//! handed out as `whsec_<base64>`. The server key is `LEDGER_CALLBACK_KEY` (hex) or
//! `DATA_DIR/callback.key`, made on first start. See `docs/adr/0009-callback-safety.md`.
//!
//! Where callbacks may go is [`crate::callback_policy`]'s business: its resolver is the client's,
//! and an IP-literal host is checked before each attempt. URLs may be `http://` or `https://`;
//! over HTTPS the receiver's certificate is verified against the platform's roots plus any extra
//! CA certificates the operator gave (see [`crate::tls`]).

use crate::callback_policy::CallbackPolicy;
use crate::clock::Clock;
use crate::log::{EventLog, ExpectedVersion};
use crate::projector::Projector;
use crate::tls::ExtraRootCertificates;
use anyhow::Context;
use base64::Engine;
use hmac::{Hmac, Mac};
use projections::delivery::{
    CallbackAbandoned, CallbackAttempted, DeliveryEvent, MAXIMUM_ATTEMPTS, PendingDelivery,
    backoff, delivery_stream,
};
use sha2::Sha256;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// The server's key from which every agent's callback secret is derived.
#[derive(Clone)]
pub struct CallbackKey([u8; 32]);

impl std::fmt::Debug for CallbackKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("CallbackKey(…)")
    }
}

impl CallbackKey {
    pub fn from_bytes(bytes: [u8; 32]) -> CallbackKey {
        CallbackKey(bytes)
    }

    /// 32 fresh random bytes.
    pub fn random() -> CallbackKey {
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(Uuid::new_v4().as_bytes());
        CallbackKey(key)
    }

    /// The key's bytes (to store it where a backend shares it among servers).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A key from stored bytes, which must be 32.
    pub fn from_slice(bytes: &[u8]) -> anyhow::Result<CallbackKey> {
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("a stored callback key must be 32 bytes"))?;
        Ok(CallbackKey(key))
    }

    /// The key `LEDGER_CALLBACK_KEY` holds (64 hex digits); an error if it is not set.
    pub fn from_env(from_env: Option<String>) -> anyhow::Result<CallbackKey> {
        let text = from_env.context("LEDGER_CALLBACK_KEY is not set")?;
        let bytes = hex::decode(text.trim()).context("LEDGER_CALLBACK_KEY must be hex")?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("LEDGER_CALLBACK_KEY must be 32 bytes (64 hex digits)"))?;
        Ok(CallbackKey(key))
    }

    /// `LEDGER_CALLBACK_KEY` (64 hex digits) if set, else `DATA_DIR/callback.key`, created with
    /// fresh random bytes (readable by the owner only) on first use.
    pub fn load_or_create(
        data_dir: &Path,
        from_env: Option<String>,
    ) -> anyhow::Result<CallbackKey> {
        if from_env.is_some() {
            return CallbackKey::from_env(from_env);
        }
        let path = data_dir.join("callback.key");
        if let Ok(text) = std::fs::read_to_string(&path) {
            let bytes =
                hex::decode(text.trim()).with_context(|| format!("reading {}", path.display()))?;
            let key: [u8; 32] = bytes
                .try_into()
                .map_err(|_| anyhow::anyhow!("{} must hold 64 hex digits", path.display()))?;
            return Ok(CallbackKey(key));
        }
        let key = CallbackKey::random().0;
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        file.write_all(hex::encode(key).as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(CallbackKey(key))
    }

    /// The key bytes `agent`'s callbacks are signed with: HMAC-SHA256(server key,
    /// "callback-secret:" + agent), so that no secret is stored and each agent has its own.
    pub fn secret_key_for(&self, agent: &str) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        mac.update(b"callback-secret:");
        mac.update(agent.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The secret `agent` verifies its callbacks with, spelled as Standard Webhooks secrets are:
    /// `whsec_` and the base64 of the key bytes (what the `standardwebhooks` libraries take).
    pub fn secret_for(&self, agent: &str) -> String {
        format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(self.secret_key_for(agent))
        )
    }
}

/// The Standard Webhooks signature of one attempt: `v1,` and the base64 of the HMAC-SHA256,
/// under `key`, of `"{webhook_id}.{timestamp}.{body}"`. The id and the timestamp are signed with
/// the body, so that a captured delivery cannot be replayed later (receivers refuse stale
/// timestamps) or passed off as another delivery.
pub fn webhook_signature(key: &[u8], webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(webhook_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// How many attempts may be in flight: to one destination (host and port), and in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryLimits {
    pub per_destination: usize,
    pub total: usize,
}

impl Default for DeliveryLimits {
    /// 4 to one receiver (a slow one holds at most 4 of the dispatcher's slots), 32 in all.
    fn default() -> Self {
        DeliveryLimits {
            per_destination: 4,
            total: 32,
        }
    }
}

/// How the dispatcher delivers: whom it trusts over HTTPS, where it may connect, how many at once.
#[derive(Debug, Clone, Default)]
pub struct DeliverySettings {
    pub extra_roots: ExtraRootCertificates,
    pub policy: CallbackPolicy,
    pub limits: DeliveryLimits,
}

/// The longest one attempt may take, from connecting to the receiver's answer.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The client callbacks are POSTed with: no redirects followed (a 3xx is a failed attempt), no
/// proxy (a proxy would resolve the host itself, past the policy's resolver), the policy's DNS
/// resolver, a 10 s limit per attempt.
fn callback_client(settings: &DeliverySettings) -> reqwest::Client {
    crate::tls::client_with_roots(
        || {
            reqwest::Client::builder()
                .timeout(ATTEMPT_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .dns_resolver(settings.policy.resolver())
        },
        &settings.extra_roots,
    )
}

/// The deliveries being attempted now, and how many go to each destination.
#[derive(Debug, Default)]
struct InFlight {
    deliveries: HashSet<Uuid>,
    by_destination: HashMap<String, usize>,
}

/// A delivery's place among those in flight; given back when dropped (the attempt is recorded,
/// failed to be, or its task ended some other way), which wakes the dispatcher's loop.
struct Slot {
    in_flight: Arc<Mutex<InFlight>>,
    finished: Arc<Notify>,
    delivery_id: Uuid,
    destination: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        in_flight.deliveries.remove(&self.delivery_id);
        if let Some(count) = in_flight.by_destination.get_mut(&self.destination) {
            *count -= 1;
            if *count == 0 {
                in_flight.by_destination.remove(&self.destination);
            }
        }
        drop(in_flight);
        self.finished.notify_one();
    }
}

/// The destination a per-destination limit counts by: the URL's host and port.
fn destination_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => format!(
            "{}:{}",
            parsed.host_str().unwrap_or_default(),
            parsed.port_or_known_default().unwrap_or_default()
        ),
        Err(_) => url.to_owned(),
    }
}

/// Delivers what is owed.
#[derive(Clone)]
pub struct Dispatcher {
    pub log: Arc<dyn EventLog>,
    pub projector: Projector,
    pub clock: Clock,
    pub key: CallbackKey,
    settings: DeliverySettings,
    client: reqwest::Client,
    /// Shared by the dispatcher's clones: one set of deliveries in flight.
    in_flight: Arc<Mutex<InFlight>>,
    /// Woken when an attempt ends, so that the loop starts what waited for its slot.
    finished: Arc<Notify>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Dispatcher")
            .field("backend", &self.log.backend())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher with the default settings: the platform's roots, public destinations only.
    pub fn new(
        log: Arc<dyn EventLog>,
        projector: Projector,
        clock: Clock,
        key: CallbackKey,
    ) -> Self {
        Dispatcher::with_settings(log, projector, clock, key, DeliverySettings::default())
    }

    /// A dispatcher trusting `roots` for `https://` callback URLs in addition to the platform's
    /// roots (`ledger serve --callback-ca-file`), with the default policy and limits.
    pub fn trusting(
        log: Arc<dyn EventLog>,
        projector: Projector,
        clock: Clock,
        key: CallbackKey,
        roots: &ExtraRootCertificates,
    ) -> Self {
        let settings = DeliverySettings {
            extra_roots: roots.clone(),
            ..DeliverySettings::default()
        };
        Dispatcher::with_settings(log, projector, clock, key, settings)
    }

    /// A dispatcher with `settings`. Its client is built once, here: on a host without platform
    /// roots that build logs a warning, which should appear once.
    pub fn with_settings(
        log: Arc<dyn EventLog>,
        projector: Projector,
        clock: Clock,
        key: CallbackKey,
        settings: DeliverySettings,
    ) -> Self {
        Dispatcher {
            log,
            projector,
            clock,
            key,
            client: callback_client(&settings),
            settings,
            in_flight: Arc::default(),
            finished: Arc::default(),
        }
    }

    /// The same dispatcher, trusting `roots` as well (builds a new client).
    pub fn with_extra_root_certificates(mut self, roots: &ExtraRootCertificates) -> Self {
        self.settings.extra_roots = roots.clone();
        self.client = callback_client(&self.settings);
        self
    }

    /// The same dispatcher, with `policy` deciding where callbacks may go (builds a new client).
    pub fn with_callback_policy(mut self, policy: CallbackPolicy) -> Self {
        self.settings.policy = policy;
        self.client = callback_client(&self.settings);
        self
    }

    /// The same dispatcher, with other limits on the attempts in flight.
    pub fn with_limits(mut self, limits: DeliveryLimits) -> Self {
        self.settings.limits = limits;
        self
    }

    /// One pass: starts every delivery due now (within the limits) and waits for those attempts;
    /// returns how many attempts were made and recorded.
    pub async fn tick(&self) -> usize {
        let mut recorded = 0;
        for attempt in self.start_due().await {
            match attempt.await {
                Ok(true) => recorded += 1,
                Ok(false) => {}
                // The slot was given back as the task unwound; the delivery is due again.
                Err(error) => tracing::error!(%error, "a callback attempt's task failed"),
            }
        }
        recorded
    }

    /// Starts, each in its own task, every delivery due now that is not in flight already, as
    /// far as the limits allow; does not wait for them. Each task answers whether its attempt
    /// was recorded. A delivery held back by a limit stays due, for the next pass.
    pub async fn start_due(&self) -> Vec<JoinHandle<bool>> {
        // Deliver for everything committed so far, not for read models a moment behind the log.
        if self
            .projector
            .caught_up_with(self.log.as_ref())
            .await
            .is_err()
        {
            return Vec::new();
        }
        let now = self.clock.now();
        let limits = self.settings.limits;
        let mut starting = Vec::new();
        {
            // The read model is read under the in-flight lock: a slot is given back only after
            // its attempt's event is applied, so every delivery read here as not in flight has
            // its latest attempt in the read model, and is never started twice for one attempt.
            let mut in_flight = self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let due = self.projector.read().deliveries.due(now);
            for pending in due {
                if in_flight.deliveries.len() >= limits.total {
                    break;
                }
                if in_flight.deliveries.contains(&pending.delivery_id) {
                    continue;
                }
                let destination = destination_of(&pending.url);
                let to_destination = in_flight
                    .by_destination
                    .entry(destination.clone())
                    .or_default();
                if *to_destination >= limits.per_destination {
                    continue;
                }
                *to_destination += 1;
                in_flight.deliveries.insert(pending.delivery_id);
                let slot = Slot {
                    in_flight: self.in_flight.clone(),
                    finished: self.finished.clone(),
                    delivery_id: pending.delivery_id,
                    destination,
                };
                starting.push((pending, slot));
            }
        }
        starting
            .into_iter()
            .map(|(pending, slot)| {
                let dispatcher = self.clone();
                tokio::spawn(async move {
                    let recorded = match dispatcher.attempt(&pending).await {
                        Ok(()) => true,
                        Err(error) => {
                            tracing::error!(
                                delivery = %pending.delivery_id,
                                item = %pending.item_id,
                                error = %format!("{error:#}"),
                                "could not record a callback attempt"
                            );
                            false
                        }
                    };
                    // Given back only now, with the attempt applied to the read model.
                    drop(slot);
                    recorded
                })
            })
            .collect()
    }

    async fn attempt(&self, pending: &PendingDelivery) -> anyhow::Result<()> {
        let attempt = pending.attempts + 1;
        let (status, error) = match self.settings.policy.check_url_as_written(&pending.url) {
            // Refused as written (an IP-literal host; host names are checked by the resolver
            // when the client connects): no request at all.
            Err(refusal) => (
                None,
                Some(format!("refused by the callback policy: {refusal}")),
            ),
            Ok(_) => self.post(pending, attempt).await?,
        };
        let delivered = error.is_none();
        let now = self.clock.now();
        let last = !delivered && attempt >= MAXIMUM_ATTEMPTS;
        let mut events = vec![DeliveryEvent::CallbackAttempted(CallbackAttempted {
            delivery_id: pending.delivery_id,
            item_id: pending.item_id,
            answer_position: pending.answer_position,
            attempt,
            url: pending.url.clone(),
            at: now,
            status,
            error: error.clone(),
            delivered,
            next_attempt_at: (!delivered && !last).then(|| now + backoff(attempt)),
        })];
        if last {
            events.push(DeliveryEvent::CallbackAbandoned(CallbackAbandoned {
                delivery_id: pending.delivery_id,
                item_id: pending.item_id,
                attempts: attempt,
                at: now,
            }));
        }
        tracing::info!(delivery = %pending.delivery_id, item = %pending.item_id, attempt, delivered, ?error, "callback attempted");
        let new_events =
            crate::commands::to_new_events(&events, "system", Some(pending.delivery_id));
        let appended = self
            .log
            .append(
                &delivery_stream(pending.item_id),
                ExpectedVersion::Any,
                new_events,
            )
            .await?;
        self.projector.wait_for(appended.last_position).await?;
        Ok(())
    }

    /// One signed POST; the receiver's status, and why the attempt failed if it did.
    async fn post(
        &self,
        pending: &PendingDelivery,
        attempt: u32,
    ) -> anyhow::Result<(Option<u16>, Option<String>)> {
        let (body, agent) = self.body(pending, attempt).await?;
        let webhook_id = pending.delivery_id.to_string();
        let timestamp = self.clock.now().timestamp();
        let signature = webhook_signature(
            &self.key.secret_key_for(&agent),
            &webhook_id,
            timestamp,
            &body,
        );
        let outcome = match self
            .client
            .post(&pending.url)
            .header("content-type", "application/json")
            .header("webhook-id", &webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .header("x-ledger-delivery", &webhook_id)
            .header("x-ledger-attempt", attempt.to_string())
            .body(body)
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status();
                let error =
                    (!status.is_success()).then(|| format!("the receiver answered {status}"));
                (Some(status.as_u16()), error)
            }
            // With its causes: reqwest's own message ("error sending request for url …") does
            // not say whether DNS, the callback policy, the connection or the receiver's
            // certificate failed.
            Err(error) => (None, Some(format!("{:#}", anyhow::Error::from(error)))),
        };
        Ok(outcome)
    }

    /// The JSON body of a delivery, and the agent whose secret signs it.
    async fn body(
        &self,
        pending: &PendingDelivery,
        attempt: u32,
    ) -> anyhow::Result<(Vec<u8>, String)> {
        let answer = self
            .log
            .read_all(pending.answer_position, 1)
            .await?
            .pop()
            .context("the answer's event is not in the log")?;
        let item = self
            .projector
            .read()
            .board
            .item(pending.item_id)
            .cloned()
            .context("the item of a delivery is not on the board")?;
        // Written as it is, not through a `Value` (as `json!` would): the answer's data and the
        // final output are their stored text, numbers byte for byte. Keys in the order `json!`
        // wrote them (sorted).
        #[derive(serde::Serialize)]
        struct Body<'a> {
            answer: Answer<'a>,
            attempt: u32,
            decision: &'a Option<Box<projections::item::Decision>>,
            delivery_id: uuid::Uuid,
            item: ItemSummary<'a>,
        }
        #[derive(serde::Serialize)]
        struct Answer<'a> {
            actor: &'a str,
            data: &'a serde_json::value::RawValue,
            hash: String,
            position: u64,
            recorded_at: chrono::DateTime<chrono::Utc>,
            r#type: &'a str,
        }
        #[derive(serde::Serialize)]
        struct ItemSummary<'a> {
            id: uuid::Uuid,
            kind: &'a str,
            model: &'a projections::item::ModelIdentity,
            queue: &'a str,
            status: projections::item::ItemStatus,
            submitted_by: &'a str,
        }
        let body = Body {
            answer: Answer {
                actor: &answer.actor,
                data: serde_json::from_str(&answer.data)?,
                hash: hex::encode(answer.hash),
                position: answer.position,
                recorded_at: answer.recorded_at,
                r#type: &answer.event_type,
            },
            attempt,
            decision: &item.decision,
            delivery_id: pending.delivery_id,
            item: ItemSummary {
                id: item.id,
                kind: &item.kind,
                model: &item.model,
                queue: &item.queue,
                status: item.status,
                submitted_by: &item.submitted_by,
            },
        };
        Ok((serde_json::to_vec(&body)?, item.submitted_by.to_string()))
    }

    /// Runs until the process stops: starts what is due, then sleeps until the next attempt is
    /// due, an attempt ends (its slot may let a held-back delivery start), or `poll` passes
    /// (new answers become due without waking this loop).
    ///
    /// Deliveries start only while this server holds `lease`: with several servers on one store,
    /// one of them delivers (another takes over within the lease's time if it dies).
    pub async fn run(self, poll: Duration, lease: crate::lease::Lease) {
        loop {
            if !lease.hold(self.log.as_ref()).await {
                tokio::time::sleep(poll).await;
                continue;
            }
            // Not awaited: the attempts run on while this loop goes on.
            drop(self.start_due().await);
            let until_next = self
                .next_attempt_at()
                .and_then(|next| (next - self.clock.now()).to_std().ok())
                .unwrap_or(poll);
            tokio::select! {
                () = tokio::time::sleep(until_next.min(poll).max(Duration::from_millis(20))) => {}
                () = self.finished.notified() => {}
            }
        }
    }

    /// The earliest next attempt of a delivery not in flight and not due yet. Deliveries due now
    /// but not started were held back by a limit: an ending attempt wakes the loop for them.
    fn next_attempt_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let now = self.clock.now();
        let in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.projector
            .read()
            .deliveries
            .pending()
            .filter(|pending| {
                pending.next_attempt_at > now
                    && !in_flight.deliveries.contains(&pending.delivery_id)
            })
            .map(|pending| pending.next_attempt_at)
            .min()
    }
}
