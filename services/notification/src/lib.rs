//! notification: `/notify`, topic subscriptions, offline delivery (inbox and signed
//! webhooks), retries with backoff and dead letters — in a PostgreSQL schema of its
//! own (`notification`), with JetStream for durable work. It answers commands on
//! `<prefix>.cmd.notification.*` in the `notification` queue group.
//!
//! - `handlers`: `notify`, subscriptions, inboxes.
//! - `offline`: the pass that follows message-store's log and notifies members who
//!   missed messages, coalesced per room and window.
//! - `deliveries`: webhook deliveries, their work queue and retries.
//! - `dead_letters`: the admin commands over deliveries that ran out of attempts.
//! - `erasure`: deleting what is kept of a tenant or of one user.
//! - `metrics`: webhook outcomes, dead letters and the offline pass's lag.
//! - `webhook_guard`: where webhooks may go (no private addresses, no redirects).

mod dead_letters;
pub mod deliveries;
mod erasure;
mod handlers;
pub mod metrics;
mod offline;
pub mod webhook_guard;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chat_bus::server::Router;
use chat_bus::{Bus, Subjects};
use chat_domain::ApiError;
use chat_domain::proto::Service;
use chat_domain::proto::health::{Health, ServiceHealth};
use chat_pg::PgPool;
use chat_telemetry::ops::ReadinessCheck;
use diesel_async::RunQueryDsl;
use futures_util::FutureExt as _;

/// notification's schema, embedded and applied on start.
pub const MIGRATIONS: chat_pg::Migrations = chat_pg::Migrations {
    table: "notification_schema_migrations",
    lock: 0x6368_6174_0003,
    steps: &[
        ("0001_init", include_str!("../migrations/0001_init.sql")),
        ("0002_notifications", include_str!("../migrations/0002_notifications.sql")),
        ("0003_offline_windows", include_str!("../migrations/0003_offline_windows.sql")),
        ("0004_sole_sender", include_str!("../migrations/0004_sole_sender.sql")),
        ("0010_mentions", include_str!("../migrations/0010_mentions.sql")),
    ],
};

/// notification's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub nats_url: String,
    pub bus_prefix: String,
    pub database_url: String,
    pub db_pool_size: u32,
    pub db_timeout: Duration,
    /// Where `/healthz`, `/readyz` and `/metrics` listen (`OPS_ADDR`); `None` for none.
    pub ops_addr: Option<SocketAddr>,
    /// How long after a message a member may still open a socket in the room and
    /// count as having seen it (`OFFLINE_GRACE_MS`): someone reloading a page or
    /// switching networks is not notified.
    pub offline_grace: Duration,
    /// Offline notifications are coalesced per member, room and window of this length
    /// (`OFFLINE_WINDOW_MS`): fixed buckets of the messages' `created_at`. Longer
    /// windows mean fewer entries and webhooks, and a later one.
    pub offline_window: Duration,
    /// Follow only tenants whose id starts with this (`OFFLINE_TENANT_PREFIX`; empty:
    /// every tenant). For deployments that share one database but not one bus, such
    /// as the test suite's stacks: each must leave the others' tenants alone.
    pub offline_tenant_prefix: Option<String>,
    /// Whether webhooks may reach loopback, private and link-local addresses
    /// (`WEBHOOK_ALLOW_PRIVATE`, default `false`): for receivers on the same host or
    /// network, as in development and tests. See `webhook_guard`.
    pub webhook_allow_private: bool,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
        Ok(Self {
            nats_url: env("NATS_URL", "nats://127.0.0.1:4222"),
            bus_prefix: env("CHAT_BUS_PREFIX", chat_bus::subjects::DEFAULT_PREFIX),
            database_url: env("DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/chat"),
            db_pool_size: env("DB_POOL_SIZE", "8").parse().context("DB_POOL_SIZE must be a number")?,
            db_timeout: Duration::from_millis(
                env("DB_TIMEOUT_MS", "5000").parse().context("DB_TIMEOUT_MS must be a number")?,
            ),
            ops_addr: Some(env("OPS_ADDR", "127.0.0.1:9103").parse().context("OPS_ADDR must be host:port")?),
            offline_grace: Duration::from_millis(
                env("OFFLINE_GRACE_MS", "3000").parse().context("OFFLINE_GRACE_MS must be a number")?,
            ),
            offline_window: Duration::from_millis(
                env("OFFLINE_WINDOW_MS", "15000")
                    .parse::<u64>()
                    .ok()
                    .filter(|ms| *ms > 0)
                    .context("OFFLINE_WINDOW_MS must be a positive number")?,
            ),
            offline_tenant_prefix: Some(env("OFFLINE_TENANT_PREFIX", "")).filter(|p| !p.is_empty()),
            webhook_allow_private: match env("WEBHOOK_ALLOW_PRIVATE", "false").as_str() {
                "true" | "1" => true,
                "false" | "0" | "" => false,
                _ => anyhow::bail!("WEBHOOK_ALLOW_PRIVATE must be true or false"),
            },
        })
    }
}

/// What every handler and the delivery worker share. Cheap to clone.
#[derive(Clone)]
pub struct State {
    pool: PgPool,
    bus: Bus,
    js: async_nats::jetstream::Context,
    instance: Arc<str>,
    started: Instant,
    /// `Config::webhook_allow_private`.
    webhook_allow_private: bool,
}

/// A built notification service.
pub struct Notification {
    bus: Bus,
    pool: PgPool,
    ops: Option<TcpListener>,
    config: Config,
    /// Copies JetStream keeps of its streams (see [`Notification::stream_replicas`]).
    replicas: usize,
}

/// Most copies of a stream JetStream can keep (NATS clusters have up to 5 per stream).
pub const MAX_STREAM_REPLICAS: usize = 5;

/// `NATS_STREAM_REPLICAS` (default 1): how many copies JetStream keeps of the
/// notification streams. 3 on a three-node NATS cluster (R3): a node can go without
/// losing a queued delivery or a dead letter.
pub fn stream_replicas_from_env() -> anyhow::Result<usize> {
    match std::env::var("NATS_STREAM_REPLICAS") {
        Err(_) => Ok(1),
        Ok(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_STREAM_REPLICAS).contains(n))
            .with_context(|| format!("NATS_STREAM_REPLICAS must be 1 to {MAX_STREAM_REPLICAS}, got {v:?}")),
    }
}

impl Notification {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let subjects = Subjects::new(&config.bus_prefix)?;
        chat_pg::migrate(&config.database_url, &MIGRATIONS).await?;
        let pool = chat_pg::pool(&config.database_url, config.db_pool_size, config.db_timeout).await?;
        let client = chat_bus::connect(&config.nats_url, "notification").await?;
        let ops = chat_telemetry::ops::bind(config.ops_addr)?;
        metrics::init();
        let bus = Bus::new(client, subjects);
        // Fix where the offline pass starts before this service counts as started, so a
        // message sent after that is never skipped (a no-op once a cursor exists).
        if let Err(e) = offline::start_point(&bus, &pool, &config.bus_prefix, config.offline_window).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "offline pass start point not fixed yet; it will be once message-store answers"
            );
        }
        Ok(Self { bus, pool, ops, config, replicas: 1 })
    }

    /// Keeps `n` copies of the work queue and the dead letters (JetStream's
    /// `num_replicas`; 1 by default). A stream created with fewer is updated: JetStream
    /// adds the copies on other nodes itself. The NATS cluster must have `n` nodes.
    pub fn stream_replicas(mut self, n: usize) -> Self {
        self.replicas = n.clamp(1, MAX_STREAM_REPLICAS);
        self
    }

    pub fn ops_port(&self) -> Option<u16> {
        chat_telemetry::ops::port(&self.ops)
    }

    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let shutdown = shutdown.boxed().shared();
        let js = async_nats::jetstream::new(self.bus.client().clone());
        deliveries::ensure_streams(&js, self.bus.subjects(), self.replicas).await?;
        let state = State {
            pool: self.pool.clone(),
            bus: self.bus.clone(),
            js,
            instance: chat_telemetry::instance_id().into(),
            started: Instant::now(),
            webhook_allow_private: self.config.webhook_allow_private,
        };
        let worker = tokio::spawn(deliveries::worker(state.clone(), shutdown.clone()));
        let settings = offline::Settings {
            follower: self.config.bus_prefix.clone(),
            database_url: self.config.database_url.clone(),
            window: self.config.offline_window,
            grace: self.config.offline_grace,
            tenant_prefix: self.config.offline_tenant_prefix.clone(),
        };
        let offline = tokio::spawn(offline::follow(state.clone(), settings, shutdown.clone()));
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
        let served = Router::new(state)
            .route(health)
            .route(handlers::notify)
            .route(handlers::subscribe)
            .route(handlers::unsubscribe)
            .route(handlers::list_subscriptions)
            .route(handlers::list_inbox)
            .route(handlers::take_inbox)
            .route(dead_letters::list)
            .route(dead_letters::retry)
            .route(erasure::erase)
            .serve(self.bus.clone(), Service::Notification, shutdown)
            .await;
        match offline.await {
            Ok(Err(e)) => tracing::error!(error = %e, "offline-message follower failed"),
            Err(e) => tracing::error!(error = %e, "offline-message follower panicked"),
            Ok(Ok(())) => {}
        }
        match worker.await {
            Ok(Err(e)) => tracing::error!(error = %e, "delivery worker failed"),
            Err(e) => tracing::error!(error = %e, "delivery worker panicked"),
            Ok(Ok(())) => {}
        }
        if let Some(ops) = ops {
            let _ = ops.await;
        }
        served
    }
}

async fn health(state: State, _: Health) -> Result<ServiceHealth, ApiError> {
    let write = async {
        let mut conn = state.pool.get().await.ok()?;
        diesel::sql_query(
            "INSERT INTO notification.health_probe (id, touched_at) VALUES (1, now())
             ON CONFLICT (id) DO UPDATE SET touched_at = excluded.touched_at",
        )
        .execute(&mut conn)
        .await
        .ok()
    };
    let db_writable = matches!(tokio::time::timeout(Duration::from_secs(2), write).await, Ok(Some(_)));
    let checks = BTreeMap::from([("db_writable".to_owned(), db_writable)]);
    Ok(ServiceHealth::new("notification", &state.instance, state.started.elapsed().as_secs(), checks))
}
