//! presence: who is online in which room (and on which socket and gateway), when
//! they were online (for offline notifications decided after the fact), and typing
//! state with expiry — all in Redis, so any number of replicas agree. Nothing here is
//! durable beyond the history it keeps for `PRESENCE_HISTORY_SECS`.
//!
//! - `handlers`: commands on `<prefix>.cmd.presence.*` (queue group `presence`):
//!   `connect`, `connect_many`, `online`, `tenant_online`, `typing`, `online_history`,
//!   `erase`, `health`. A big room (more than `PRESENCE_BIG_ROOM` users) has its
//!   arrivals and departures counted, not announced one by one, and a `connect` to it
//!   answered without the whole list, so n sockets joining it cost O(n) in all.
//! - `signals`: `disconnect` from gateways, and each gateway's lease renewal. Liveness
//!   is a lease per gateway, not a heartbeat per socket: a socket lives as long as its
//!   gateway's lease, and a gateway that stops renewing (it died without a goodbye)
//!   has its sockets closed at the moment the lease ran out.
//! - `sweeper`: asks Redis what is due (leases that ran out, rooms where a closing
//!   socket's grace or a typing indicator ended) and announces `presence.left` and
//!   `typing` (stopped) on the room's event subject. Its idle cost does not grow with
//!   rooms or sockets.
//! - `redis_state` holds the Redis layout and the handle on it, one file per kind of
//!   change or question (sockets, leases, typing, sweep, history); `lua` holds the
//!   scripts that change it.

mod handlers;
mod lua;
mod redis_state;
mod signals;
mod sweeper;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chat_bus::server::Router;
use chat_bus::{Bus, Subjects};
use chat_domain::ids::{RoomId, TenantId};
use chat_domain::proto::Service;
use chat_domain::proto::events::{RoomEvent, RoomEventBody};
use chat_redis::Redis;
use chat_telemetry::ops::ReadinessCheck;
use futures_util::FutureExt as _;

/// presence's settings. Every replica must run with the same timings.
#[derive(Debug, Clone)]
pub struct Config {
    pub nats_url: String,
    pub bus_prefix: String,
    pub redis_url: String,
    /// Where `/healthz`, `/readyz` and `/metrics` listen (`OPS_ADDR`); `None` for none.
    pub ops_addr: Option<SocketAddr>,
    /// The lease a gateway gets when it registers a socket before its first lease
    /// signal (`PRESENCE_CONN_TTL_MS`). Gateways then renew with leases of their own.
    pub conn_ttl: Duration,
    /// How long a closed socket still counts as online, so a reload does not flap
    /// (`PRESENCE_GRACE_MS`).
    pub grace: Duration,
    /// How long a typing indicator lasts without renewal (`PRESENCE_TYPING_TTL_MS`).
    pub typing_ttl: Duration,
    /// How often the sweeper asks what is due (`PRESENCE_SWEEP_MS`).
    pub sweep_every: Duration,
    /// How long the intervals when users were online are kept for `online_history`
    /// (`PRESENCE_HISTORY_SECS`).
    pub history: Duration,
    /// Redis replicas a socket's opening or closing must reach before presence
    /// acknowledges it (`PRESENCE_REDIS_REPLICAS`, default 0: none). Set it to 1 with
    /// Redis under Sentinel, so a failover keeps what presence acknowledged.
    pub redis_replicas: u32,
    /// Longest wait for those replicas (`PRESENCE_REDIS_WAIT_MS`, default 100); after
    /// it the change is acknowledged anyway and counted in
    /// `chat_presence_unreplicated_writes_total`.
    pub redis_wait: Duration,
    /// A room with more users online than this is big (`PRESENCE_BIG_ROOM`, default
    /// 100): its arrivals and departures are no longer announced one by one (each
    /// would reach every member: O(n²) frames for n arrivals), and a socket's `connect`
    /// is answered with a count instead of the whole list (read on demand with `online`).
    pub big_room: u64,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
        let number = |k: &str, d: u64| -> anyhow::Result<u64> {
            std::env::var(k).map_or(Ok(d), |v| v.parse().with_context(|| format!("{k} must be a number")))
        };
        let ms = |k: &str, d: u64| number(k, d).map(Duration::from_millis);
        Ok(Self {
            nats_url: env("NATS_URL", "nats://127.0.0.1:4222"),
            bus_prefix: env("CHAT_BUS_PREFIX", chat_bus::subjects::DEFAULT_PREFIX),
            redis_url: env("REDIS_URL", "redis://127.0.0.1:6379"),
            ops_addr: Some(env("OPS_ADDR", "127.0.0.1:9102").parse().context("OPS_ADDR must be host:port")?),
            conn_ttl: ms("PRESENCE_CONN_TTL_MS", 30_000)?,
            grace: ms("PRESENCE_GRACE_MS", 2_000)?,
            typing_ttl: ms("PRESENCE_TYPING_TTL_MS", 5_000)?,
            sweep_every: ms("PRESENCE_SWEEP_MS", 250)?,
            history: Duration::from_secs(number("PRESENCE_HISTORY_SECS", 86_400)?),
            redis_replicas: u32::try_from(number("PRESENCE_REDIS_REPLICAS", 0)?)
                .context("PRESENCE_REDIS_REPLICAS must be a small number")?,
            redis_wait: ms("PRESENCE_REDIS_WAIT_MS", 100)?,
            big_room: number("PRESENCE_BIG_ROOM", redis_state::DEFAULT_BIG_ROOM)?,
        })
    }

    /// Short timings for tests (nothing asserts on them; they only make waits short).
    pub fn for_tests(nats_url: String, bus_prefix: String, redis_url: String) -> Self {
        Self {
            nats_url,
            bus_prefix,
            redis_url,
            ops_addr: None,
            conn_ttl: Duration::from_secs(3),
            grace: Duration::from_millis(300),
            typing_ttl: Duration::from_secs(1),
            sweep_every: Duration::from_millis(100),
            history: Duration::from_secs(3_600),
            redis_replicas: 0,
            redis_wait: Duration::from_millis(100),
            big_room: redis_state::DEFAULT_BIG_ROOM,
        }
    }

    fn timing(&self) -> redis_state::Timing {
        redis_state::Timing {
            grace_ms: Ctx::ms(self.grace),
            default_lease_ms: Ctx::ms(self.conn_ttl),
            history_ms: Ctx::ms(self.history),
        }
    }
}

#[derive(Clone)]
struct Ctx {
    state: redis_state::State,
    redis: Redis,
    bus: Bus,
    config: Arc<Config>,
    instance: Arc<str>,
    started: Instant,
}

impl Ctx {
    fn ms(d: Duration) -> i64 {
        i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
    }

    /// Publishes a room event (core NATS).
    async fn announce(&self, tenant: &TenantId, room: &RoomId, body: RoomEventBody) {
        let event = RoomEvent::new(tenant, room, chat_domain::time::now(), body);
        let subject = self.bus.subjects().room_event(tenant, room, event.body.kind());
        match serde_json::to_vec(&event) {
            Ok(payload) => {
                if let Err(e) = self.bus.publish(subject, payload.into()).await {
                    tracing::warn!(error = %e, "could not announce a presence event");
                }
            }
            Err(e) => tracing::error!(error = %e, "could not serialize a presence event"),
        }
    }
}

/// A built presence service.
pub struct Presence {
    bus: Bus,
    redis: Redis,
    ops: Option<TcpListener>,
    config: Arc<Config>,
}

impl Presence {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let subjects = Subjects::new(&config.bus_prefix)?;
        let client = chat_bus::connect(&config.nats_url, "presence").await?;
        let redis = chat_redis::connect(&config.redis_url, "presence").await?;
        let ops = chat_telemetry::ops::bind(config.ops_addr)?;
        Ok(Self { bus: Bus::new(client, subjects), redis, ops, config: Arc::new(config) })
    }

    pub fn ops_port(&self) -> Option<u16> {
        chat_telemetry::ops::port(&self.ops)
    }

    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let shutdown = shutdown.boxed().shared();
        let state = redis_state::State::new(self.redis.clone(), &self.config.bus_prefix, self.config.timing())
            .with_replicas(
                self.config.redis_replicas,
                u64::try_from(self.config.redis_wait.as_millis()).unwrap_or(u64::MAX),
            )
            .with_big_room(self.config.big_room);
        state.start_history(redis_state::now_ms()).await.context("marking the start of presence history")?;
        let ctx = Ctx {
            state,
            redis: self.redis.clone(),
            bus: self.bus.clone(),
            config: self.config.clone(),
            instance: chat_telemetry::instance_id().into(),
            started: Instant::now(),
        };
        let ops = self.ops.map(|listener| {
            let (redis, client) = (self.redis.clone(), self.bus.client().clone());
            let check: ReadinessCheck = Arc::new(move || {
                let (redis, client) = (redis.clone(), client.clone());
                Box::pin(async move {
                    client.connection_state() == async_nats::connection::State::Connected && handlers::ping(redis).await
                })
            });
            tokio::spawn(chat_telemetry::ops::serve(listener, check, shutdown.clone()))
        });
        let signals = tokio::spawn(signals::follow(ctx.clone(), shutdown.clone()));
        let sweep = tokio::spawn(sweeper::run(ctx.clone(), shutdown.clone()));
        let served = Router::new(ctx)
            .route(handlers::health)
            .route(handlers::connect)
            .route(handlers::connect_many)
            .route(handlers::online)
            .route(handlers::tenant_online)
            .route(handlers::typing)
            .route(handlers::online_history)
            .route(handlers::erase)
            .serve(self.bus.clone(), Service::Presence, shutdown)
            .await;
        let _ = signals.await;
        let _ = sweep.await;
        if let Some(ops) = ops {
            let _ = ops.await;
        }
        served
    }
}
