//! One server, wired once: from a configuration and an `Arc<dyn EventLog>` to the HTTP state,
//! the projector, the callback dispatcher and the background jobs. `ledger serve` and the tests
//! both build through [`build`], so the wiring the tests exercise is the wiring that ships, and
//! nothing here names a concrete backend.

use crate::audit::CheckpointKey;
use crate::audit::checkpointer::CheckpointSettings;
use crate::callbacks::{CallbackKey, DeliverySettings, Dispatcher};
use crate::clock::Clock;
use crate::expiry_policy::ExpiryPolicies;
use crate::http::AppState;
use crate::http::metrics::MetricsAccess;
use crate::lease::Lease;
use crate::log::EventLog;
use crate::projector::Projector;
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;

/// What a server is built from, besides its log.
#[derive(Debug)]
pub struct ServerConfig {
    /// The time commands get.
    pub clock: Clock,
    /// The key agents' callback secrets derive from; every server of one store needs the same.
    pub callback_key: CallbackKey,
    /// Where callbacks may go, their extra trusted roots and their concurrency limits.
    pub delivery: DeliverySettings,
    /// The operator's expiry policies.
    pub expiry_policies: Arc<ExpiryPolicies>,
    /// Who may read `/metrics`.
    pub metrics_access: MetricsAccess,
    /// The admin's token on the first start of an empty ledger (a random one if `None`).
    pub admin_token: Option<String>,
    /// The background jobs (timers and callback deliveries), or `None` for a server whose
    /// owner runs them by hand (tests with a manual clock).
    pub background: Option<Background>,
    /// The key that signs checkpoints (`None`: this server signs none, and says so).
    pub checkpoint_key: Option<Arc<CheckpointKey>>,
    /// When checkpoints are signed and where they are published (with the background jobs).
    pub checkpoints: CheckpointSettings,
    /// The review policies, and how often slices' accuracy is measured (with the background jobs).
    pub review_policies: Arc<crate::review_policy::ReviewPolicies>,
}

impl ServerConfig {
    /// A configuration with the defaults of `ledger serve`, its clock and callback key given.
    pub fn new(clock: Clock, callback_key: CallbackKey) -> ServerConfig {
        ServerConfig {
            clock,
            callback_key,
            delivery: DeliverySettings::default(),
            expiry_policies: Arc::default(),
            metrics_access: MetricsAccess::principals_only(),
            admin_token: None,
            background: Some(Background::default()),
            checkpoint_key: None,
            checkpoints: CheckpointSettings::default(),
            review_policies: Arc::default(),
        }
    }
}

/// How the background jobs run.
#[derive(Debug, Clone)]
pub struct Background {
    /// The longest a job sleeps between two looks at its work.
    pub poll: Duration,
    /// How long a server's hold on a job lasts without renewal: after a server dies, another
    /// takes its jobs over within this (plus `poll`). Renewed every `poll`, so it must be longer.
    pub lease_ttl: Duration,
    /// This server's name as a lease holder (unique per process).
    pub holder: String,
}

impl Default for Background {
    fn default() -> Self {
        Background {
            poll: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(10),
            holder: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
        }
    }
}

/// A built server: its HTTP state (not yet shared, so `AppState::with_*` still applies), its
/// projector and dispatcher, and the admin token if this start created the admin.
#[derive(Debug)]
pub struct Built {
    pub state: AppState,
    pub projector: Projector,
    pub dispatcher: Dispatcher,
    /// The first admin's token, when this start found an empty ledger and created it (shown
    /// once: only its hash is stored).
    pub created_admin_token: Option<String>,
}

/// Builds a server over `log`: rebuilds the read models, creates the first admin on an empty
/// ledger, and starts the background jobs if the configuration asks for them.
pub async fn build(config: ServerConfig, log: Arc<dyn EventLog>) -> anyhow::Result<Built> {
    let projector = Projector::start(log.clone())
        .await
        .context("rebuilding the read models from the log")?;
    let created_admin_token =
        crate::principals::bootstrap_admin(log.as_ref(), &projector, config.admin_token)
            .await
            .context("creating the first admin")?;
    let policy = config.delivery.policy.clone();
    let dispatcher = Dispatcher::with_settings(
        log.clone(),
        projector.clone(),
        config.clock.clone(),
        config.callback_key.clone(),
        config.delivery,
    );
    if let Some(background) = config.background {
        tokio::spawn(crate::scheduler::run(
            log.clone(),
            projector.clone(),
            config.clock.clone(),
            background.poll,
            config.expiry_policies.clone(),
            Lease::new("scheduler", &background.holder, background.lease_ttl),
        ));
        tokio::spawn(dispatcher.clone().run(
            background.poll,
            Lease::new("callbacks", &background.holder, background.lease_ttl),
        ));
        tokio::spawn(crate::review_policy::run(
            log.clone(),
            projector.clone(),
            config.clock.clone(),
            config.review_policies.clone(),
            Lease::new("accuracy", &background.holder, background.lease_ttl),
        ));
        if let Some(key) = &config.checkpoint_key {
            tokio::spawn(crate::audit::checkpointer::run(
                log.clone(),
                projector.clone(),
                key.clone(),
                config.checkpoints.clone(),
                background.poll,
                Lease::new("checkpoints", &background.holder, background.lease_ttl),
            ));
        }
    }
    let mut state = AppState::new(log, projector.clone(), config.clock)
        .with_session_key(&config.callback_key)
        .with_callback_key(config.callback_key)
        .with_callback_policy(policy)
        .with_expiry_policy(config.expiry_policies)
        .with_review_policies(config.review_policies)
        .with_metrics_access(config.metrics_access);
    if let Some(key) = &config.checkpoint_key {
        state = state.with_checkpoint_verifier(key.verifier().clone());
    }
    Ok(Built {
        state,
        projector,
        dispatcher,
        created_admin_token,
    })
}

/// The callback key of a server on `log`: `from_env` (`LEDGER_CALLBACK_KEY`) if given; else the
/// key file of the data directory for a backend kept there (`data_dir`); else the secret the
/// store shares among its servers (created by the first). A store that keeps no secrets and no
/// key given is an error: servers of one store must sign with one key.
pub async fn callback_key(
    log: &dyn EventLog,
    data_dir: Option<&std::path::Path>,
    from_env: Option<String>,
) -> anyhow::Result<CallbackKey> {
    if from_env.is_some() {
        return CallbackKey::from_env(from_env);
    }
    if let Some(dir) = data_dir {
        return CallbackKey::load_or_create(dir, None);
    }
    let candidate = CallbackKey::random();
    match log
        .shared_secret("callback-key", candidate.as_bytes())
        .await
        .context("reading the store's callback key")?
    {
        Some(bytes) => CallbackKey::from_slice(&bytes),
        None => anyhow::bail!(
            "the {} store keeps no secrets: set LEDGER_CALLBACK_KEY (64 hex digits), the same on every server",
            log.backend()
        ),
    }
}
