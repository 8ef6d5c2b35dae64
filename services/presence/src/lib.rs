//! presence: who is online in which room (and on which socket), typing state with
//! expiry — all in Redis, so any number of replicas agree and nothing here is
//! durable.
//!
//! - Commands on `<prefix>.cmd.presence.*` (queue group `presence`): `connect`,
//!   `online`, `typing`, `health`.
//! - Signals on `<prefix>.presence.<tenant>.<room>.{disconnect,heartbeat}` from
//!   gateways (also in the `presence` queue group).
//! - A sweeper that removes expired sockets and typing, announcing `presence.left`
//!   and `typing` (stopped) on the room's event subject. A socket that is not renewed
//!   within [`Config::conn_ttl`] expires, so a gateway that dies without a goodbye has
//!   its users gone within that bound.
//!
//! `redis_state` holds the Redis layout and its scripts.

mod redis_state;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chat_bus::server::Router;
use chat_bus::{Bus, Subjects};
use chat_domain::ApiError;
use chat_domain::ids::{RoomId, TenantId, UserId};
use chat_domain::proto::events::{PresenceChange, RoomEvent, RoomEventBody, TypingChange};
use chat_domain::proto::health::{Health, ServiceHealth};
use chat_domain::proto::presence::{
    Connect, Connected, DisconnectSignal, GatewayLease, GetOnline, GetTenantOnline, Online, SetTyping,
};
use chat_domain::proto::{Done, Service};
use chat_telemetry::ops::ReadinessCheck;
use futures_util::{FutureExt as _, StreamExt as _};
use redis::aio::ConnectionManager;

/// presence's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub nats_url: String,
    pub bus_prefix: String,
    pub redis_url: String,
    /// Where `/healthz`, `/readyz` and `/metrics` listen (`OPS_ADDR`); `None` for none.
    pub ops_addr: Option<SocketAddr>,
    /// A socket not renewed by a heartbeat within this time expires (`PRESENCE_CONN_TTL_MS`).
    pub conn_ttl: Duration,
    /// How long a closed socket still counts as online, so a reload does not flap
    /// (`PRESENCE_GRACE_MS`).
    pub grace: Duration,
    /// How long a typing indicator lasts without renewal (`PRESENCE_TYPING_TTL_MS`).
    pub typing_ttl: Duration,
    /// How often expired state is swept.
    pub sweep_every: Duration,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
        let ms = |k: &str, d: u64| -> anyhow::Result<Duration> {
            Ok(Duration::from_millis(
                std::env::var(k).map_or(Ok(d), |v| v.parse().with_context(|| format!("{k} must be a number")))?,
            ))
        };
        Ok(Self {
            nats_url: env("NATS_URL", "nats://127.0.0.1:4222"),
            bus_prefix: env("CHAT_BUS_PREFIX", chat_bus::subjects::DEFAULT_PREFIX),
            redis_url: env("REDIS_URL", "redis://127.0.0.1:6379"),
            ops_addr: Some(env("OPS_ADDR", "127.0.0.1:9102").parse().context("OPS_ADDR must be host:port")?),
            conn_ttl: ms("PRESENCE_CONN_TTL_MS", 30_000)?,
            grace: ms("PRESENCE_GRACE_MS", 2_000)?,
            typing_ttl: ms("PRESENCE_TYPING_TTL_MS", 5_000)?,
            sweep_every: ms("PRESENCE_SWEEP_MS", 250)?,
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
        }
    }
}

#[derive(Clone)]
struct Ctx {
    state: redis_state::State,
    redis: ConnectionManager,
    bus: Bus,
    config: Arc<Config>,
    instance: Arc<str>,
    started: Instant,
}

impl Ctx {
    fn ms(d: Duration) -> i64 {
        i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
    }

    /// Publishes a room event (core NATS; the events stream keeps it too).
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

fn redis_error(e: redis::RedisError) -> ApiError {
    tracing::warn!(error = %e, "redis failed");
    ApiError::unavailable("Presence store unavailable")
}

fn parse_users(users: Vec<String>) -> Vec<UserId> {
    users.into_iter().filter_map(|u| UserId::parse(u).ok()).collect()
}

async fn connect(ctx: Ctx, cmd: Connect) -> Result<Connected, ApiError> {
    let name = cmd.user_name.as_deref().map(|n| n.chars().take(100).collect::<String>());
    let (first, online) = ctx
        .state
        .connect(
            &cmd.tenant_id,
            &cmd.room_id,
            &cmd.user_id,
            name.as_deref(),
            &cmd.conn_id,
            Ctx::ms(ctx.config.conn_ttl),
        )
        .await
        .map_err(redis_error)?;
    if first {
        let change = PresenceChange { user_id: cmd.user_id.clone(), user_name: name };
        ctx.announce(&cmd.tenant_id, &cmd.room_id, RoomEventBody::PresenceJoined(change)).await;
    }
    Ok(Connected { online_users: parse_users(online), first_connection: first })
}

async fn online(ctx: Ctx, cmd: GetOnline) -> Result<Online, ApiError> {
    let users = ctx.state.online(&cmd.tenant_id, &cmd.room_id).await.map_err(redis_error)?;
    Ok(Online { online_users: parse_users(users) })
}

async fn tenant_online(ctx: Ctx, cmd: GetTenantOnline) -> Result<Online, ApiError> {
    let users = ctx.state.tenant_online(&cmd.tenant_id).await.map_err(redis_error)?;
    Ok(Online { online_users: parse_users(users) })
}

async fn typing(ctx: Ctx, cmd: SetTyping) -> Result<Done, ApiError> {
    let changed = ctx
        .state
        .typing(
            &cmd.tenant_id,
            &cmd.room_id,
            &cmd.user_id,
            cmd.user_name.as_deref(),
            cmd.is_typing,
            Ctx::ms(ctx.config.typing_ttl),
        )
        .await
        .map_err(redis_error)?;
    if changed {
        let change = TypingChange { user_id: cmd.user_id, user_name: cmd.user_name, is_typing: cmd.is_typing };
        ctx.announce(&cmd.tenant_id, &cmd.room_id, RoomEventBody::Typing(change)).await;
    }
    Ok(Done {})
}

async fn ping(mut redis: ConnectionManager) -> bool {
    let pong = tokio::time::timeout(Duration::from_secs(2), redis::cmd("PING").query_async::<String>(&mut redis)).await;
    matches!(pong, Ok(Ok(ref p)) if p == "PONG")
}

async fn health(ctx: Ctx, _: Health) -> Result<ServiceHealth, ApiError> {
    let checks = BTreeMap::from([("redis".to_owned(), ping(ctx.redis.clone()).await)]);
    Ok(ServiceHealth::new("presence", &ctx.instance, ctx.started.elapsed().as_secs(), checks))
}

/// Applies gateway signals until `shutdown`.
async fn follow_signals(ctx: Ctx, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let subject = ctx.bus.subjects().all_presence();
    let mut sub = ctx.bus.client().queue_subscribe(subject.clone(), Service::Presence.name().to_owned()).await?;
    tokio::pin!(shutdown);
    loop {
        let msg = tokio::select! {
            _ = &mut shutdown => break,
            m = sub.next() => match m { Some(m) => m, None => break },
        };
        let result = if msg.subject.ends_with(".disconnect") {
            match serde_json::from_slice::<DisconnectSignal>(&msg.payload) {
                Ok(s) => ctx
                    .state
                    .disconnect(&s.tenant_id, &s.room_id, &s.conn.user_id, &s.conn.conn_id, Ctx::ms(ctx.config.grace))
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(format!("malformed disconnect signal: {e}")),
            }
        } else if msg.subject.ends_with(".lease") {
            match serde_json::from_slice::<GatewayLease>(&msg.payload) {
                Ok(_) => Ok(()),
                Err(e) => Err(format!("malformed lease signal: {e}")),
            }
        } else {
            Ok(())
        };
        if let Err(e) = result {
            tracing::warn!(subject = %msg.subject, error = %e, "presence signal failed");
        }
    }
    Ok(())
}

/// Sweeps expired sockets and typing every `sweep_every`, until `shutdown`.
async fn sweeper(ctx: Ctx, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(ctx.config.sweep_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        let rooms = match ctx.state.rooms().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "presence sweep could not list rooms");
                continue;
            }
        };
        for (tenant, room) in rooms {
            match ctx.state.sweep(&tenant, &room).await {
                Ok(swept) => {
                    for (user_id, user_name) in swept.stopped_typing {
                        let change = TypingChange { user_id, user_name, is_typing: false };
                        ctx.announce(&tenant, &room, RoomEventBody::Typing(change)).await;
                    }
                    for (user_id, user_name) in swept.left {
                        ctx.announce(
                            &tenant,
                            &room,
                            RoomEventBody::PresenceLeft(PresenceChange { user_id, user_name }),
                        )
                        .await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "presence sweep failed"),
            }
        }
    }
}

/// A built presence service.
pub struct Presence {
    bus: Bus,
    redis: ConnectionManager,
    ops: Option<TcpListener>,
    config: Arc<Config>,
}

impl Presence {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let subjects = Subjects::new(&config.bus_prefix)?;
        let client = chat_bus::connect(&config.nats_url, "presence").await?;
        let redis = redis::Client::open(config.redis_url.as_str()).context("REDIS_URL")?;
        let redis = ConnectionManager::new(redis)
            .await
            .with_context(|| format!("connecting to Redis at {}", config.redis_url))?;
        let ops = chat_telemetry::ops::bind(config.ops_addr)?;
        Ok(Self { bus: Bus::new(client, subjects), redis, ops, config: Arc::new(config) })
    }

    pub fn ops_port(&self) -> Option<u16> {
        chat_telemetry::ops::port(&self.ops)
    }

    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let shutdown = shutdown.boxed().shared();
        let ctx = Ctx {
            state: redis_state::State::new(self.redis.clone(), &self.config.bus_prefix),
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
                    client.connection_state() == async_nats::connection::State::Connected && ping(redis).await
                })
            });
            tokio::spawn(chat_telemetry::ops::serve(listener, check, shutdown.clone()))
        });
        let signals = tokio::spawn(follow_signals(ctx.clone(), shutdown.clone()));
        let sweep = tokio::spawn(sweeper(ctx.clone(), shutdown.clone()));
        let served = Router::new(ctx)
            .route(health)
            .route(connect)
            .route(online)
            .route(tenant_online)
            .route(typing)
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
