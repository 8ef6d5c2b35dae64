//! message-store: tenants and keys, rooms, members, messages with per-room `seq`,
//! idempotent sends, and the event outbox. It answers commands on
//! `<prefix>.cmd.message-store.*` in the `message-store` queue group, so any number
//! of replicas share the load.
//!
//! - [`Config`]: settings, from the environment or built by tests.
//! - [`clusters`]: the PostgreSQL clusters tenants live on ([`Clusters`]: a standby for
//!   reads, more clusters, where new tenants go) and the directory of where each is;
//!   `moves`: moving a tenant between clusters.
//! - [`MessageStore::build`]: connect, migrate, bootstrap keys, bind the ops port.
//! - [`MessageStore::run`]: answer commands until shutdown.
//! - `store`: the [`Store`](store::Store) every handler works with (the clusters, the
//!   directory, the bus) and a tenant's residency row. `handlers/`: one file per group
//!   of commands.
//! - `group_commit`: concurrent sends batched into shared transactions, each stored by
//!   `send_batch`'s one statement (below both the committer and the handlers).
//! - `publish`: `message.created` published after commit from the batch itself, with a
//!   watermark and a lease per process, and the relay that republishes from the
//!   message log when a process died between commit and publish.
//! - `outbox`: the other events (edits, deletes, cursors, members, reactions, pins), written with
//!   their change and published after commit. `bootstrap`: admin key, dev tenant.
//! - `metrics`: messages stored per tenant, the outbox's and the publishers' lag.
//! - `error`: `StoreError` and its reply envelope; `rows`: stored rows and their
//!   domain types.

pub mod bootstrap;
pub mod clusters;
pub mod error;
pub mod group_commit;
mod handlers;
pub mod metrics;
mod moves;
pub mod outbox;
pub mod publish;
mod rows;
mod send_batch;
mod store;

use std::collections::BTreeMap;
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
pub use clusters::{ClusterSettings, Clusters, Placement};
pub use handlers::SearchLimits;

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
        ("0012_placement", include_str!("../migrations/0012_placement.sql")),
        ("0030_search", include_str!("../migrations/0030_search.sql")),
        ("0031_sync", include_str!("../migrations/0031_sync.sql")),
        ("0050_blocks", include_str!("../migrations/0050_blocks.sql")),
        ("0060_reactions", include_str!("../migrations/0060_reactions.sql")),
        ("0070_threads", include_str!("../migrations/0070_threads.sql")),
        ("0080_moderation", include_str!("../migrations/0080_moderation.sql")),
        ("0085_block_hide_in_groups", include_str!("../migrations/0085_block_hide_in_groups.sql")),
        ("0090_search_keys", include_str!("../migrations/0090_search_keys.sql")),
        ("0095_member_count", include_str!("../migrations/0095_member_count.sql")),
        ("0100_send_search_vector", include_str!("../migrations/0100_send_search_vector.sql")),
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
    /// How much one search may read (`SEARCH_*`).
    pub search: handlers::SearchLimits,
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
            search: {
                let d = handlers::SearchLimits::default();
                let n = |k: &str, d: i64| -> anyhow::Result<i64> {
                    let v = num(k, u64::try_from(d).unwrap_or(1))?;
                    i64::try_from(v).ok().filter(|v| *v >= 1).with_context(|| format!("{k} must be at least 1"))
                };
                handlers::SearchLimits {
                    busy_room_matches: n("SEARCH_BUSY_ROOM_MATCHES", d.busy_room_matches)?,
                    candidate_budget: n("SEARCH_CANDIDATE_BUDGET", d.candidate_budget)?,
                    busy_room_floor: n("SEARCH_BUSY_ROOM_FLOOR", d.busy_room_floor)?,
                    walk_per_match: n("SEARCH_WALK_PER_MATCH", d.walk_per_match)?,
                }
            },
        })
    }
}

/// A built message-store, ready to [`run`](MessageStore::run).
pub struct MessageStore {
    config: Config,
    placement: Placement,
    bus: Bus,
    /// Every cluster's connections, the home one first.
    pools: Vec<clusters::Pools>,
    ops: Option<TcpListener>,
}

impl MessageStore {
    /// Connects to NATS and PostgreSQL (the home cluster alone, its primary serving
    /// every read), applies migrations, bootstraps keys, and binds the ops port.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_on(config, Clusters::default()).await
    }

    /// As [`MessageStore::build`], on the PostgreSQL clusters `clusters` names besides
    /// the home one (`config.database_url`): every one is migrated; keys are
    /// bootstrapped on the home one.
    pub async fn build_on(config: Config, clusters: Clusters) -> anyhow::Result<Self> {
        let subjects = Subjects::new(&config.bus_prefix)?;
        let (size, timeout) = (config.db_pool_size, config.db_timeout);
        let home = clusters::Pools::open(
            chat_domain::model::HOME_CLUSTER,
            &config.database_url,
            clusters.read_url.as_deref(),
            size,
            timeout,
        )
        .await?;
        bootstrap::run(&config.database_url, &config.bootstrap).await?;
        let mut pools = vec![home];
        for c in &clusters.more {
            pools.push(clusters::Pools::open(&c.name, &c.url, c.read_url.as_deref(), size, timeout).await?);
        }
        let client = chat_bus::connect(&config.nats_url, "message-store").await?;
        chat_bus::events::remove_legacy_events_stream(&client, &subjects).await;
        let ops = chat_telemetry::ops::bind(config.ops_addr)?;
        metrics::init();
        Ok(Self { bus: Bus::new(client, subjects), pools, ops, placement: clusters.placement, config })
    }

    /// The ops port actually bound (useful with port 0).
    pub fn ops_port(&self) -> Option<u16> {
        chat_telemetry::ops::port(&self.ops)
    }

    /// Answers commands until `shutdown` completes, then drains and stops.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let shutdown = shutdown.boxed().shared();
        let client = self.bus.client().clone();
        let instance = self.config.instance.clone().unwrap_or_else(chat_telemetry::instance_id);
        let mut dbs = BTreeMap::new();
        let (mut writers, mut drains, mut background) = (Vec::new(), Vec::new(), Vec::new());
        for p in &self.pools {
            let (publisher, publisher_task) = outbox::publisher(p.url.clone(), client.clone());
            background.push(tokio::spawn(outbox::relay(
                p.pool.clone(),
                client.clone(),
                self.config.bus_prefix.clone(),
                self.config.outbox_relay_after,
                self.config.outbox_relay_every,
                shutdown.clone(),
            )));
            let (messages, messages_task) = publish::start(
                p.pool.clone(),
                client.clone(),
                self.bus.subjects().clone(),
                publish::PublisherConfig {
                    id: format!("{instance}-{}", chat_domain::ids::EventId::generate()),
                    lease_every: self.config.publish_lease_every,
                    lease_ttl: self.config.publish_lease_ttl,
                    crash_before_publish: self.config.crash_before_publish,
                },
            )
            .await
            .with_context(|| format!("cluster {}", p.name))?;
            background.push(tokio::spawn(publish::relay(
                p.pool.clone(),
                client.clone(),
                self.bus.subjects().clone(),
                self.config.outbox_relay_every,
                shutdown.clone(),
            )));
            let (committer, w) = group_commit::Committer::start(p.pool.clone(), messages, self.config.send_writers);
            writers.extend(w);
            drains.push(messages_task);
            drains.push(publisher_task);
            let db = handlers::Db {
                name: p.name.clone(),
                pool: p.pool.clone(),
                reads: p.reads.clone(),
                publisher,
                committer,
            };
            dbs.insert(p.name.clone(), Arc::new(db));
        }
        let all_pools: Vec<db::PgPool> = self.pools.iter().map(|p| p.pool.clone()).collect();
        background.push(tokio::spawn(metrics::watch_lag(
            all_pools.clone(),
            self.config.bus_prefix.clone(),
            self.config.outbox_relay_every,
            shutdown.clone(),
        )));
        let ops = self.ops.map(|listener| {
            let (pools, client) = (all_pools.clone(), self.bus.client().clone());
            let check: ReadinessCheck = Arc::new(move || {
                let (pools, client) = (pools.clone(), client.clone());
                Box::pin(async move {
                    if client.connection_state() != async_nats::connection::State::Connected {
                        return false;
                    }
                    for pool in &pools {
                        if pool.get().await.is_err() {
                            return false;
                        }
                    }
                    true
                })
            });
            tokio::spawn(chat_telemetry::ops::serve(listener, check, shutdown.clone()))
        });
        let home_name = chat_domain::model::HOME_CLUSTER;
        let home = dbs.get(home_name).cloned().context("the home cluster is missing")?;
        let store = handlers::Store(Arc::new(handlers::Inner {
            directory: clusters::Directory::new(home.pool.clone(), dbs.len() == 1),
            home,
            dbs,
            placement: self.placement.clone(),
            bus: self.bus.clone(),
            instance,
            started: Instant::now(),
            clock: self.config.clock.clone(),
            search: self.config.search,
        }));
        background.push(tokio::spawn(forget_changed_tenants(store.clone(), shutdown.clone())));
        let served = handlers::router(store).serve(self.bus.clone(), Service::MessageStore, shutdown.clone()).await;
        // The router (and with it every Committer and Publisher) is gone: the writers
        // finish their batches, then the publishers drain and end.
        for w in writers {
            let _ = tokio::time::timeout(Duration::from_secs(10), w).await;
        }
        for d in drains {
            let _ = tokio::time::timeout(Duration::from_secs(5), d).await;
        }
        for b in background {
            let _ = b.await;
        }
        if let Some(ops) = ops {
            let _ = ops.await;
        }
        let _ = self.bus.client().flush().await;
        served
    }
}

/// Drops a tenant's cached placement when a `tenant.changed` event says it changed
/// (a move, on another replica). The cache also expires on its own.
async fn forget_changed_tenants(store: handlers::Store, shutdown: impl std::future::Future<Output = ()>) {
    use futures_util::StreamExt as _;
    let subject = store.subjects().tenant_changed();
    let mut sub = match store.0.bus.client().subscribe(subject).await {
        Ok(sub) => sub,
        Err(e) => {
            tracing::warn!(error = %e, "could not follow tenant changes; placements expire on their own");
            return;
        }
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            m = sub.next() => match m {
                Some(m) => {
                    if let Ok(c) = serde_json::from_slice::<chat_domain::proto::events::TenantChanged>(&m.payload) {
                        store.0.directory.forget(&c.tenant_id);
                    }
                }
                None => return,
            },
        }
    }
}
