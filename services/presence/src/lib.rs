//! presence: who is online in which room on which gateway, typing state with expiry,
//! last-seen — all in Redis, so any number of replicas agree and nothing here is
//! durable. It answers commands on `<prefix>.cmd.presence.*` in the `presence` queue
//! group. This version answers `health` (with a Redis round trip); the real-time
//! issue adds the presence commands and the gateway signals.

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
use chat_telemetry::ops::ReadinessCheck;
use futures_util::FutureExt as _;
use redis::aio::ConnectionManager;

/// presence's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub nats_url: String,
    pub bus_prefix: String,
    pub redis_url: String,
    /// Where `/healthz`, `/readyz` and `/metrics` listen (`OPS_ADDR`); `None` for none.
    pub ops_addr: Option<SocketAddr>,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
        Ok(Self {
            nats_url: env("NATS_URL", "nats://127.0.0.1:4222"),
            bus_prefix: env("CHAT_BUS_PREFIX", chat_bus::subjects::DEFAULT_PREFIX),
            redis_url: env("REDIS_URL", "redis://127.0.0.1:6379"),
            ops_addr: Some(env("OPS_ADDR", "127.0.0.1:9102").parse().context("OPS_ADDR must be host:port")?),
        })
    }
}

#[derive(Clone)]
struct State {
    redis: ConnectionManager,
    instance: Arc<str>,
    started: Instant,
}

/// A built presence service.
pub struct Presence {
    bus: Bus,
    redis: ConnectionManager,
    ops: Option<TcpListener>,
}

impl Presence {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let subjects = Subjects::new(&config.bus_prefix)?;
        let client = chat_bus::connect(&config.nats_url, "presence").await?;
        let redis = redis::Client::open(config.redis_url.as_str()).context("REDIS_URL")?;
        let redis = ConnectionManager::new(redis)
            .await
            .with_context(|| format!("connecting to Redis at {}", config.redis_url))?;
        let ops = config
            .ops_addr
            .map(|a| TcpListener::bind(a).with_context(|| format!("binding the ops port {a}")))
            .transpose()?;
        Ok(Self { bus: Bus::new(client, subjects), redis, ops })
    }

    pub fn ops_port(&self) -> Option<u16> {
        self.ops.as_ref().and_then(|l| l.local_addr().ok()).map(|a| a.port())
    }

    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let shutdown = shutdown.boxed().shared();
        let state = State {
            redis: self.redis.clone(),
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
        let served = Router::new(state).route(health).serve(self.bus.clone(), Service::Presence, shutdown).await;
        if let Some(ops) = ops {
            let _ = ops.await;
        }
        served
    }
}

async fn ping(mut redis: ConnectionManager) -> bool {
    let pong = tokio::time::timeout(Duration::from_secs(2), redis::cmd("PING").query_async::<String>(&mut redis)).await;
    matches!(pong, Ok(Ok(ref p)) if p == "PONG")
}

async fn health(state: State, _: Health) -> Result<ServiceHealth, ApiError> {
    let checks = BTreeMap::from([("redis".to_owned(), ping(state.redis.clone()).await)]);
    Ok(ServiceHealth::new("presence", &state.instance, state.started.elapsed().as_secs(), checks))
}
