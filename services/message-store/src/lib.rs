//! message-store: tenants and keys, rooms, members, messages with per-room `seq`,
//! idempotent sends, and the event outbox. It answers commands on
//! `<prefix>.cmd.message-store.*` in the `message-store` queue group, so any number
//! of replicas share the load.
//!
//! - [`Config`]: settings, from the environment or built by tests.
//! - [`MessageStore::build`]: connect, migrate, bootstrap keys, bind the ops port.
//! - [`MessageStore::run`]: answer commands until shutdown.
//! - `handlers/`: one file per group of commands.
//! - `group_commit`: concurrent sends batched into shared transactions, each stored by
//!   `send_batch`'s one statement (below both the committer and the handlers).
//! - `publish`: `message.created` published after commit from the batch itself, with a
//!   watermark and a lease per process, and the relay that republishes from the
//!   message log when a process died between commit and publish.
//! - `outbox`: the other events (edits, deletes, cursors, members), written with
//!   their change and published after commit. `bootstrap`: admin key, dev tenant.
//! - `metrics`: messages stored per tenant, the outbox's and the publishers' lag.
//! - `error`: `StoreError` and its reply envelope; `rows`: stored rows and their
//!   domain types.

pub mod bootstrap;
pub mod error;
pub mod group_commit;
mod handlers;
pub mod metrics;
pub mod outbox;
pub mod publish;
mod rows;
mod send_batch;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chat_bus::{Bus, Subjects};
use chat_domain::proto::Service;
use chat_pg as db;
use chat_telemetry::ops::ReadinessCheck;
use futures_util::FutureExt as _;

pub use bootstrap::Bootstrap;

/// message-store's schema, embedded and applied on start.
pub const MIGRATIONS: db::Migrations = db::Migrations {
    table: "schema_migrations",
    lock: 0x6368_6174_0001,
    steps: &[
        ("0001_init", include_str!("../migrations/0001_init.sql")),
        ("0002_token_secret", include_str!("../migrations/0002_token_secret.sql")),
        ("0003_sender_name", include_str!("../migrations/0003_sender_name.sql")),
        ("0004_cursors", include_str!("../migrations/0004_cursors.sql")),
        ("0005_edits", include_str!("../migrations/0005_edits.sql")),
        ("0006_send_function", include_str!("../migrations/0006_send_function.sql")),
        ("0007_send_batch", include_str!("../migrations/0007_send_batch.sql")),
        ("0008_message_log", include_str!("../migrations/0008_message_log.sql")),
        ("0009_send_statement", include_str!("../migrations/0009_send_statement.sql")),
        ("0010_chat_dialect", include_str!("../migrations/0010_chat_dialect.sql")),
        ("0011_jwt_issuers", include_str!("../migrations/0011_jwt_issuers.sql")),
    ],
};

/// message-store's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub nats_url: String,
    /// First subject token (`CHAT_BUS_PREFIX`, default `chat`).
    pub bus_prefix: String,
    pub database_url: String,
    /// Most PostgreSQL connections (`DB_POOL_SIZE`).
    pub db_pool_size: u32,
    /// Longest wait for a connection (`DB_TIMEOUT_MS`).
    pub db_timeout: Duration,
    /// Where `/healthz`, `/readyz` and `/metrics` listen (`OPS_ADDR`); `None` for none.
    pub ops_addr: Option<SocketAddr>,
    pub bootstrap: Bootstrap,
    /// Outbox rows older than this are republished by the relay.
    pub outbox_relay_after: Duration,
    pub outbox_relay_every: Duration,
    /// This replica's name in health replies; host and pid when `None`.
    pub instance: Option<String>,
    /// Group-commit writers: transactions of batched sends in flight at once
    /// (`SEND_WRITERS`).
    pub send_writers: usize,
    /// How often the publisher writes its watermark and renews its lease.
    pub publish_lease_every: Duration,
    /// How long a publisher's lease lasts unrenewed (after that, a relay republishes
    /// what it may not have published).
    pub publish_lease_ttl: Duration,
    /// For tests: commit sends but never publish their events (see
    /// [`publish::PublisherConfig::crash_before_publish`]).
    pub crash_before_publish: bool,
    /// What time it is for rules that compare it with stored times (the edit window);
    /// tests set one they can move instead of sleeping.
    pub clock: Clock,
}

/// A source of the current time, shared by every handler.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> chrono::DateTime<chrono::Utc> + Send + Sync>);

impl Clock {
    /// The system clock (microseconds, as everything stored).
    pub fn system() -> Self {
        Self(Arc::new(chat_domain::time::now))
    }

    /// A clock that asks `now`.
    pub fn from_fn(now: impl Fn() -> chrono::DateTime<chrono::Utc> + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", chat_domain::time::format(&self.now()))
    }
}

impl Config {
    /// Reads the environment; every setting has a localhost default.
    pub fn from_env() -> anyhow::Result<Self> {
        let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
        let num = |k: &str, d: u64| -> anyhow::Result<u64> {
            std::env::var(k).map_or(Ok(d), |v| v.parse().with_context(|| format!("{k} must be a number")))
        };
        Ok(Self {
            nats_url: env("NATS_URL", "nats://127.0.0.1:4222"),
            bus_prefix: env("CHAT_BUS_PREFIX", chat_bus::subjects::DEFAULT_PREFIX),
            database_url: env("DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/chat"),
            db_pool_size: u32::try_from(num("DB_POOL_SIZE", 16)?).context("DB_POOL_SIZE")?,
            db_timeout: Duration::from_millis(num("DB_TIMEOUT_MS", 5000)?),
            ops_addr: Some(env("OPS_ADDR", "127.0.0.1:9101").parse().context("OPS_ADDR must be host:port")?),
            bootstrap: Bootstrap {
                admin_api_key: std::env::var("CHAT_ADMIN_API_KEY").ok().filter(|k| !k.is_empty()),
                dev_tenant: env("CHAT_DEV_TENANT", "true") != "false",
                dev_api_key: std::env::var("CHAT_DEV_API_KEY").ok().filter(|k| !k.is_empty()),
            },
            outbox_relay_after: Duration::from_secs(5),
            // Each round is a query even when nothing is stranded: an idle cost.
            outbox_relay_every: Duration::from_secs(2),
            instance: None,
            // One writer per two cores: on a small box one writer makes the largest
            // batches (measured: 8.7 sends per transaction at 3,000 messages/s against
            // 3.5 with two), and a transaction's fixed cost dominates.
            send_writers: usize::try_from(num(
                "SEND_WRITERS",
                std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)) as u64,
            )?)
            .context("SEND_WRITERS")?,
            publish_lease_every: publish::LEASE_EVERY,
            publish_lease_ttl: publish::LEASE_TTL,
            crash_before_publish: false,
            clock: Clock::system(),
        })
    }
}

/// A built message-store, ready to [`run`](MessageStore::run).
pub struct MessageStore {
    config: Config,
    bus: Bus,
    pool: db::PgPool,
    ops: Option<TcpListener>,
}

impl MessageStore {
    /// Connects to NATS and PostgreSQL, applies migrations, bootstraps keys, and binds
    /// the ops port.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let subjects = Subjects::new(&config.bus_prefix)?;
        db::migrate(&config.database_url, &MIGRATIONS).await?;
        bootstrap::run(&config.database_url, &config.bootstrap).await?;
        let pool = db::pool(&config.database_url, config.db_pool_size, config.db_timeout).await?;
        let client = chat_bus::connect(&config.nats_url, "message-store").await?;
        chat_bus::events::remove_legacy_events_stream(&client, &subjects).await;
        let ops = chat_telemetry::ops::bind(config.ops_addr)?;
        metrics::init();
        Ok(Self { bus: Bus::new(client, subjects), pool, ops, config })
    }

    /// The ops port actually bound (useful with port 0).
    pub fn ops_port(&self) -> Option<u16> {
        chat_telemetry::ops::port(&self.ops)
    }

    /// Answers commands until `shutdown` completes, then drains and stops.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let shutdown = shutdown.boxed().shared();
        let client = self.bus.client().clone();
        let (publisher, publisher_task) = outbox::publisher(self.config.database_url.clone(), client.clone());
        let relay = tokio::spawn(outbox::relay(
            self.pool.clone(),
            client.clone(),
            self.config.bus_prefix.clone(),
            self.config.outbox_relay_after,
            self.config.outbox_relay_every,
            shutdown.clone(),
        ));
        let instance = self.config.instance.clone().unwrap_or_else(chat_telemetry::instance_id);
        let (messages, messages_task) = publish::start(
            self.pool.clone(),
            client.clone(),
            self.bus.subjects().clone(),
            publish::PublisherConfig {
                id: format!("{instance}-{}", chat_domain::ids::EventId::generate()),
                lease_every: self.config.publish_lease_every,
                lease_ttl: self.config.publish_lease_ttl,
                crash_before_publish: self.config.crash_before_publish,
            },
        )
        .await?;
        let takeover = tokio::spawn(publish::relay(
            self.pool.clone(),
            client.clone(),
            self.bus.subjects().clone(),
            self.config.outbox_relay_every,
            shutdown.clone(),
        ));
        let lag = tokio::spawn(metrics::watch_lag(
            self.pool.clone(),
            self.config.bus_prefix.clone(),
            self.config.outbox_relay_every,
            shutdown.clone(),
        ));
        let ops = self.ops.map(|listener| {
            let (pool, client) = (self.pool.clone(), self.bus.client().clone());
            let check: ReadinessCheck = Arc::new(move || {
                let (pool, client) = (pool.clone(), client.clone());
                Box::pin(async move {
                    client.connection_state() == async_nats::connection::State::Connected && pool.get().await.is_ok()
                })
            });
            tokio::spawn(chat_telemetry::ops::serve(listener, check, shutdown.clone()))
        });
        let (committer, writers) =
            group_commit::Committer::start(self.pool.clone(), messages, self.config.send_writers);
        let store = handlers::Store(Arc::new(handlers::Inner {
            pool: self.pool.clone(),
            bus: self.bus.clone(),
            publisher,
            committer,
            instance,
            started: Instant::now(),
            clock: self.config.clock.clone(),
        }));
        let served = handlers::router(store).serve(self.bus.clone(), Service::MessageStore, shutdown.clone()).await;
        // The router (and with it every Committer and Publisher) is gone: the writers
        // finish their batches, then the publishers drain and end.
        for w in writers {
            let _ = tokio::time::timeout(Duration::from_secs(10), w).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), messages_task).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), publisher_task).await;
        let _ = relay.await;
        let _ = takeover.await;
        let _ = lag.await;
        if let Some(ops) = ops {
            let _ = ops.await;
        }
        let _ = self.bus.client().flush().await;
        served
    }
}
