//! The gateway: the only door clients use. It authenticates tenants, applies
//! per-tenant rate limits (in Redis, so they hold across replicas), validates input,
//! and turns REST calls into commands on the bus. It never touches PostgreSQL and
//! keeps no state another replica needs.
//!
//! - [`Config`] / [`Gateway::build`] / [`Gateway::run`]: the application shape.
//! - `admit`: one admission (key or token -> tenant + user, rate limit) for every
//!   endpoint. `caller`: the REST extractors built on it.
//! - `rest/`: the canonical REST API (`rest-rooms.md`), at `/` and `/v1/`.
//! - `rest_chat/`: the `rest-chat.md` dialect at `/api/chat` (Bearer tokens, chats).
//! - `attachments/`: its file messages: the object store (local disk or S3), uploads
//!   typed by their bytes, signed expiring links.
//! - `session/`: the protocol-neutral WebSocket session core; each dialect is a codec.
//! - `fanout/`: the socket registry, per-room ordering and fan-out, user events.
//! - `ws_rooms/`: the `ws-rooms.md` dialect at `/ws/{room_id}`.
//! - `conversations/`: the `ws-conversations.md` dialect at `/conversations/{id}/`.
//! - `socketio/`: `rest-chat.md`'s Socket.IO (Engine.IO v4 polling and WebSocket) at
//!   `/socket.io/`.
//! - `auth`: key resolution with a short cache. `ratelimit`: the tenant limiter.
//! - `body`: reading bodies and queries with the documented errors; `http_errors`: the
//!   errors actix-http answers by itself, given the documented body.
//! - `sends`: every send of the gateway, batched into requests to message-store.
//! - `tokens`: short-lived user tokens (`POST /tokens`); `jwt`: the tenants' own
//!   JWT issuers, accepted as user tokens too. `metrics`: Prometheus.
//! - `static_files`: pages served from `GATEWAY_STATIC_DIR` at `/static/{file}`.
//! - `webapp`: the web chat app at `/` and the admin console at `/admin`, built in;
//!   `POST /dev/token` when `GATEWAY_DEV_LOGIN=1`.
//! - [`routes`]: every route, mounted with its OpenAPI operation ([`openapi`]), which
//!   makes `/openapi.json` and the rendered `/docs`.

mod admit;
pub mod attachments;
mod auth;
mod body;
mod caller;
pub mod conversations;
#[cfg(test)]
mod dialects_doc;
mod error;
pub mod fanout;
mod http_errors;
mod jwt;
mod metrics;
pub mod openapi;
mod ratelimit;
mod rest;
pub(crate) mod rest_chat;
pub mod routes;
mod sends;
pub mod session;
pub mod socketio;
mod static_files;
mod tokens;
mod webapp;
pub mod ws_rooms;

pub use session::WsConfig;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_http::HttpServiceBuilder;
use actix_http::error::DispatchError;
use actix_service::{IntoServiceFactory as _, ServiceFactoryExt as _, fn_service, map_config};
use actix_web::dev::AppConfig;
use actix_web::dev::Service as _;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{App, HttpMessage, web};
use anyhow::Context as _;
use chat_bus::{Bus, Subjects};
use chat_telemetry::ops::ReadinessCheck;
use tracing::Instrument as _;

pub use ratelimit::Decision;

/// The gateway's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub nats_url: String,
    /// First subject token (`CHAT_BUS_PREFIX`, default `chat`); also prefixes Redis keys.
    pub bus_prefix: String,
    pub redis_url: String,
    /// Where the HTTP/WebSocket server listens (`GATEWAY_ADDR`, default `127.0.0.1:8000`).
    pub addr: SocketAddr,
    /// HTTP worker threads (`GATEWAY_WORKERS`, default: one per core).
    pub workers: usize,
    /// Largest accepted request body (`GATEWAY_MAX_BODY_BYTES`, default 64 KiB).
    pub max_body_bytes: usize,
    /// How long a resolved API key is trusted before it is checked again.
    pub auth_cache_ttl: Duration,
    /// WebSocket settings.
    pub ws: WsConfig,
    /// How long a request waits for a service behind the gateway before it is a
    /// `503` (`GATEWAY_BUS_TIMEOUT_MS`).
    pub bus_timeout: Duration,
    /// A directory whose files are served at `/static/{file}` (`GATEWAY_STATIC_DIR`;
    /// unset: none), e.g. the `ws-rooms.md` demo page in `docs/demo/`.
    pub static_dir: Option<std::path::PathBuf>,
    /// The tenant `POST /dev/token` signs users of in without a key
    /// (`GATEWAY_DEV_LOGIN=1`, tenant `GATEWAY_DEV_TENANT`, default `dev`); `None`, the
    /// default: no such route.
    pub dev_login: Option<chat_domain::ids::TenantId>,
    /// Where attachments are stored and how their links are signed.
    pub attachments: attachments::AttachmentsConfig,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
        let num = |k: &str, d: usize| -> anyhow::Result<usize> {
            std::env::var(k).map_or(Ok(d), |v| v.parse().with_context(|| format!("{k} must be a number")))
        };
        Ok(Self {
            nats_url: env("NATS_URL", "nats://127.0.0.1:4222"),
            bus_prefix: env("CHAT_BUS_PREFIX", chat_bus::subjects::DEFAULT_PREFIX),
            redis_url: env("REDIS_URL", "redis://127.0.0.1:6379"),
            addr: env("GATEWAY_ADDR", "127.0.0.1:8000").parse().context("GATEWAY_ADDR must be host:port")?,
            workers: num("GATEWAY_WORKERS", std::thread::available_parallelism().map_or(2, |n| n.get()))?,
            max_body_bytes: num("GATEWAY_MAX_BODY_BYTES", 64 * 1024)?,
            auth_cache_ttl: Duration::from_secs(num("GATEWAY_AUTH_CACHE_SECS", 10)? as u64),
            ws: WsConfig {
                max_frame_bytes: num("WS_MAX_FRAME_BYTES", 64 * 1024)?,
                queue: num("WS_QUEUE", 1024)?,
                ping_interval: Duration::from_secs(num("WS_PING_SECS", 20)? as u64),
                idle_timeout: Duration::from_secs(num("WS_IDLE_SECS", 60)? as u64),
                socketio_ping_interval: Duration::from_millis(num("SOCKETIO_PING_INTERVAL_MS", 25_000)? as u64),
                socketio_ping_timeout: Duration::from_millis(num("SOCKETIO_PING_TIMEOUT_MS", 20_000)? as u64),
                socketio_max_sessions: num("SOCKETIO_MAX_SESSIONS", 100_000)?,
                ..WsConfig::default()
            },
            bus_timeout: Duration::from_millis(num("GATEWAY_BUS_TIMEOUT_MS", 5000)? as u64),
            static_dir: std::env::var_os("GATEWAY_STATIC_DIR").filter(|d| !d.is_empty()).map(Into::into),
            dev_login: match env("GATEWAY_DEV_LOGIN", "").as_str() {
                "" | "0" | "false" => None,
                "1" | "true" => Some(
                    chat_domain::ids::TenantId::parse(env("GATEWAY_DEV_TENANT", "dev"))
                        .context("GATEWAY_DEV_TENANT must be a tenant id")?,
                ),
                other => anyhow::bail!("GATEWAY_DEV_LOGIN must be 1 or 0, not {other:?}"),
            },
            attachments: attachments::AttachmentsConfig::from_env()?,
        })
    }
}

/// Shared by every request handler.
#[derive(Debug)]
pub struct AppState {
    pub bus: Bus,
    pub auth: Arc<auth::AuthCache>,
    pub limiter: ratelimit::RateLimiter,
    pub started: Instant,
    pub max_body_bytes: usize,
    pub auth_ttl: Duration,
    /// Token-signing secrets by tenant.
    pub secrets: tokens::SecretCache,
    /// Tenants' own JWT issuers: issuer → tenant, and their keys compiled.
    pub issuers: jwt::Issuers,
    /// This gateway's sockets and room subscriptions.
    pub hub: Arc<fanout::Hub>,
    /// Delivered receipts the gateway records itself (dialects without an ack frame).
    pub deliveries: Arc<fanout::receipts::Deliveries>,
    /// Every send of this gateway, batched into requests to message-store.
    pub sends: sends::Sends,
    /// This gateway's Socket.IO sessions.
    pub socketio: socketio::Sessions,
    pub ws: WsConfig,
    /// Becomes `true` when the gateway is shutting down.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// The attachments' store and link signer.
    pub attachments: attachments::Attachments,
    /// The `/ws` and Socket.IO codecs, which sign attachment links with this gateway's key.
    pub ws_rooms_codec: &'static ws_rooms::codec::WsRooms,
    pub socketio_codec: &'static socketio::codec::SocketIo,
}

impl AppState {
    /// Forgets everything cached about `tenant` (its keys, token secret, settings and
    /// JWT issuers): after a change made here, or announced by message-store.
    pub fn forget_tenant(&self, tenant: &chat_domain::ids::TenantId) {
        self.auth.forget(tenant);
        self.secrets.forget(tenant);
        self.issuers.forget(tenant);
    }
}

/// A built gateway, listening but not yet serving.
pub struct Gateway {
    config: Config,
    listener: TcpListener,
    state: web::Data<AppState>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Gateway {
    /// Binds the listener and connects to NATS and Redis.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        metrics::init();
        let subjects = Subjects::new(&config.bus_prefix)?;
        let listener = TcpListener::bind(config.addr).with_context(|| format!("binding {}", config.addr))?;
        let client = chat_bus::connect(&config.nats_url, "gateway").await?;
        let redis = redis::Client::open(config.redis_url.as_str()).context("REDIS_URL")?;
        let redis = redis::aio::ConnectionManager::new(redis)
            .await
            .with_context(|| format!("connecting to Redis at {}", config.redis_url))?;
        let bus = Bus::new(client, subjects).with_timeout(config.bus_timeout);
        let gateway_id = chat_domain::ids::GatewayId::parse(format!("gw_{}", uuid_like()))?;
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let attachments =
            attachments::Attachments::open(&config.attachments).context("opening the attachment store")?;
        let state = web::Data::new(AppState {
            hub: Arc::new(fanout::Hub::new(bus.clone(), gateway_id, config.ws.queue)),
            deliveries: Arc::default(),
            sends: sends::Sends::new(bus.clone()),
            socketio: socketio::Sessions::default(),
            bus,
            auth: Arc::new(auth::AuthCache::new(config.auth_cache_ttl)),
            limiter: ratelimit::RateLimiter::new(redis, &config.bus_prefix),
            started: Instant::now(),
            max_body_bytes: config.max_body_bytes,
            auth_ttl: config.auth_cache_ttl,
            secrets: tokens::SecretCache::default(),
            issuers: jwt::Issuers::default(),
            ws: config.ws.clone(),
            shutdown,
            ws_rooms_codec: ws_rooms::codec::WsRooms::leak(attachments.clone()),
            socketio_codec: socketio::codec::SocketIo::leak(attachments.clone()),
            attachments,
        });
        Ok(Self { config, listener, state, stop })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or_default()
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests and stops.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let state = self.state.clone();
        let follower = {
            let state = state.clone();
            tokio::spawn(async move {
                if let Err(e) = state.auth.follow_changes(&state.bus, |t| state.forget_tenant(t)).await {
                    tracing::warn!(error = %e, "not following tenant changes; cached keys expire on their own");
                }
            })
        };
        let check: ReadinessCheck = {
            let client = state.bus.client().clone();
            Arc::new(move || {
                let client = client.clone();
                Box::pin(async move { client.connection_state() == async_nats::connection::State::Connected })
            })
        };
        let options = routes::Options {
            statics: self.config.static_dir.clone().map(|d| web::Data::new(static_files::StaticDir(d))),
            dev_login: self.config.dev_login.clone(),
            check,
        };
        let docs = web::Data::new(openapi::DocsPage { json: serde_json::to_vec(&routes::document(&options))?.into() });
        let app = move || {
            let options = options.clone();
            App::new()
                .app_data(state.clone())
                .app_data(docs.clone())
                // A path segment that cannot be decoded (`%FF`) is the documented `400`.
                .app_data(web::PathConfig::default().error_handler(|e, _| {
                    error::HttpError(chat_domain::ApiError::validation("path", format!("Invalid path: {e}"))).into()
                }))
                .wrap_fn(|req, srv| {
                    let method = req.method().to_string();
                    let route = req.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
                    let span = tracing::info_span!("http", %method, %route);
                    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
                    chat_bus::trace::continue_from_w3c(
                        header("traceparent").as_deref(),
                        header("tracestate").as_deref(),
                        &span,
                    );
                    let started = Instant::now();
                    let fut = srv.call(req);
                    async move {
                        let mut res = fut.await?;
                        let decision = res.request().extensions().get::<Decision>().copied();
                        if let Some(d) = decision {
                            let h = res.headers_mut();
                            let mut set = |name: &'static str, value: String| {
                                if let Ok(v) = HeaderValue::from_str(&value) {
                                    h.insert(HeaderName::from_static(name), v);
                                }
                            };
                            set("x-ratelimit-limit", d.limit.to_string());
                            set("x-ratelimit-remaining", d.remaining.to_string());
                            set("x-ratelimit-reset", d.reset.to_string());
                            if !d.allowed {
                                set("retry-after", d.retry_after.to_string());
                            }
                        }
                        let status = res.status().as_u16().to_string();
                        metrics::REQUESTS.with_label_values(&[&method, &route, &status]).inc();
                        metrics::LATENCY.with_label_values(&[&method, &route]).observe(started.elapsed().as_secs_f64());
                        if res.status().is_server_error() {
                            tracing::warn!(status = %status, "request failed");
                        }
                        Ok(res)
                    }
                    .instrument(span)
                })
                .configure(|cfg| routes::all(cfg, &mut openapi::Api::new(), &options))
                .default_service(web::to(error::no_route))
        };
        // actix-web's `HttpServer`, assembled by hand so that each connection's socket
        // is wrapped: the errors actix-http answers itself get the documented body too
        // (`http_errors`).
        let connection = move || {
            let app = map_config(app().into_factory().map_err(|e: actix_web::Error| e.error_response()), |_| {
                AppConfig::default()
            });
            fn_service(|io: actix_web::rt::net::TcpStream| async move {
                // Small frames go out at once: with Nagle's algorithm a second frame
                // written before the client acknowledged the first waited for its
                // delayed ACK (~40 ms per round trip in the WebSocket persist benchmark).
                let _ = io.set_nodelay(true);
                let peer = io.peer_addr().ok();
                Ok::<_, DispatchError>((http_errors::JsonErrors::new(io), peer))
            })
            .and_then(
                HttpServiceBuilder::default()
                    // As `HttpServer` has it: a second to finish a response to a client
                    // that is going away.
                    .client_disconnect_timeout(Duration::from_secs(1))
                    .h1(app),
            )
        };
        let server = actix_server::Server::build()
            .workers(self.config.workers)
            .disable_signals()
            .shutdown_timeout(10)
            .listen("gateway", self.listener, connection)
            .context("starting the HTTP server")?
            .run();
        let handle = server.handle();
        let leases = tokio::spawn(self.state.hub.clone().leases(self.config.ws.heartbeat_every));
        let receipts = tokio::spawn(self.state.deliveries.clone().run(self.state.bus.clone()));
        let (stop, hub) = (self.stop, self.state.hub.clone());
        tokio::spawn(async move {
            shutdown.await;
            // Tell every socket to reconnect elsewhere, give them a moment to close,
            // then stop serving (in-flight requests finish).
            let _ = stop.send(true);
            let deadline = Instant::now() + Duration::from_secs(5);
            while hub.socket_count().await > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            handle.stop(true).await;
        });
        let result = server.await.context("HTTP server");
        follower.abort();
        leases.abort();
        receipts.abort();
        result
    }
}

/// A short random id for this gateway instance (names its sockets in presence).
fn uuid_like() -> String {
    let mut b = [0u8; 6];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
    hex::encode(b)
}
