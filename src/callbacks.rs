//! Workflow continuation: POSTs each answer (decided, changes requested, withdrawn) to the item's
//! callback URL, signed, retried with exponential backoff, every attempt recorded as an event.
//!
//! What is owed comes from the `Deliveries` read model, which is rebuilt from the log, so a
//! restart resumes exactly the deliveries not yet delivered or abandoned. A crash between a POST
//! and the event recording it repeats that POST on restart, with the same `X-Ledger-Delivery` id:
//! receivers deduplicate on it (at-least-once delivery, never a silent loss).
//!
//! Signatures: `X-Ledger-Signature: sha256=<hex HMAC-SHA256 of the body>` with the submitting
//! agent's callback secret, HMAC-SHA256(server key, "callback-secret:" + agent name). The server
//! key is `LEDGER_CALLBACK_KEY` (hex) or `DATA_DIR/callback.key`, made on first start.
//!
//! URLs may be `http://` or `https://`; over HTTPS the receiver's certificate is verified against
//! the platform's roots plus any extra CA certificates the operator gave (see [`crate::tls`]).

use crate::clock::Clock;
use crate::log::{EventLog, ExpectedVersion};
use crate::projector::Projector;
use crate::tls::ExtraRootCertificates;
use anyhow::Context;
use hmac::{Hmac, Mac};
use projections::delivery::{
    CallbackAbandoned, CallbackAttempted, DeliveryEvent, MAXIMUM_ATTEMPTS, PendingDelivery,
    backoff, delivery_stream,
};
use sha2::Sha256;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
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

    /// `LEDGER_CALLBACK_KEY` (64 hex digits) if set, else `DATA_DIR/callback.key`, created with
    /// fresh random bytes (readable by the owner only) on first use.
    pub fn load_or_create(
        data_dir: &Path,
        from_env: Option<String>,
    ) -> anyhow::Result<CallbackKey> {
        if let Some(text) = from_env {
            let bytes = hex::decode(text.trim()).context("LEDGER_CALLBACK_KEY must be hex")?;
            let key: [u8; 32] = bytes.try_into().map_err(|_| {
                anyhow::anyhow!("LEDGER_CALLBACK_KEY must be 32 bytes (64 hex digits)")
            })?;
            return Ok(CallbackKey(key));
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
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(Uuid::new_v4().as_bytes());
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

    /// The secret `agent` verifies its callbacks with (hex).
    pub fn secret_for(&self, agent: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        mac.update(b"callback-secret:");
        mac.update(agent.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// `sha256=<hex>`: the HMAC-SHA256 of `body` under `secret` (the hex text, as the agent has it).
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The client callbacks are POSTed with: no redirects followed, a 10 s limit per attempt.
fn callback_client(extra_roots: &ExtraRootCertificates) -> reqwest::Client {
    crate::tls::client_with_roots(
        || {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
        },
        extra_roots,
    )
}

/// Delivers what is owed.
#[derive(Clone)]
pub struct Dispatcher {
    pub log: Arc<dyn EventLog>,
    pub projector: Projector,
    pub clock: Clock,
    pub key: CallbackKey,
    client: reqwest::Client,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Dispatcher")
            .field("head", &self.log.head())
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    pub fn new(
        log: Arc<dyn EventLog>,
        projector: Projector,
        clock: Clock,
        key: CallbackKey,
    ) -> Self {
        Dispatcher::trusting(log, projector, clock, key, &ExtraRootCertificates::none())
    }

    /// A dispatcher trusting `roots` for `https://` callback URLs in addition to the platform's
    /// roots (`ledger serve --callback-ca-file`). Its client is built once, here: on a host
    /// without platform roots that build logs a warning, which should appear once.
    pub fn trusting(
        log: Arc<dyn EventLog>,
        projector: Projector,
        clock: Clock,
        key: CallbackKey,
        roots: &ExtraRootCertificates,
    ) -> Self {
        Dispatcher {
            log,
            projector,
            clock,
            key,
            client: callback_client(roots),
        }
    }

    /// The same dispatcher, trusting `roots` as well (builds a new client).
    pub fn with_extra_root_certificates(mut self, roots: &ExtraRootCertificates) -> Self {
        self.client = callback_client(roots);
        self
    }

    /// One pass: attempts every delivery due now; returns how many attempts were made.
    pub async fn tick(&self) -> usize {
        // Deliver for everything committed so far, not for read models a moment behind the log.
        if self
            .projector
            .caught_up_with(self.log.as_ref())
            .await
            .is_err()
        {
            return 0;
        }
        let due = self.projector.read().deliveries.due(self.clock.now());
        let mut attempts = 0;
        for pending in due {
            match self.attempt(&pending).await {
                Ok(()) => attempts += 1,
                Err(error) => tracing::error!(
                    delivery = %pending.delivery_id,
                    item = %pending.item_id,
                    error = %format!("{error:#}"),
                    "could not record a callback attempt"
                ),
            }
        }
        attempts
    }

    async fn attempt(&self, pending: &PendingDelivery) -> anyhow::Result<()> {
        let attempt = pending.attempts + 1;
        let (body, agent) = self.body(pending, attempt).await?;
        let secret = self.key.secret_for(&agent);
        let (status, error) = match self
            .client
            .post(&pending.url)
            .header("content-type", "application/json")
            .header("x-ledger-signature", signature(&secret, &body))
            .header("x-ledger-delivery", pending.delivery_id.to_string())
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
            // not say whether DNS, the connection or the receiver's certificate failed.
            Err(error) => (None, Some(format!("{:#}", anyhow::Error::from(error)))),
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

    /// Runs `tick` until the process stops, at the next attempt due and at least every `poll`.
    pub async fn run(self, poll: Duration) {
        loop {
            self.tick().await;
            let until_next = self
                .projector
                .read()
                .deliveries
                .next_attempt_at()
                .and_then(|next| (next - self.clock.now()).to_std().ok())
                .unwrap_or(poll);
            tokio::time::sleep(until_next.min(poll).max(Duration::from_millis(20))).await;
        }
    }
}
