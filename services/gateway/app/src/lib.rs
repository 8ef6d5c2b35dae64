//! The gateway: the only door clients use. This crate is the app: it reads the
//! configuration, builds the protocol-neutral core (`gateway-core`), and assembles the
//! dialects — the one place that names them all ([`dialects`]) — into one HTTP server.
//!
//! - [`Config`] / [`Gateway::build`] / [`Gateway::run`]: the application shape.
//! - [`dialects`]: the client documents served, each a crate depending on the core
//!   only: `gateway-rest` (`rest-rooms.md`), `gateway-ws-rooms` (`ws-rooms.md`),
//!   `gateway-conversations` (`ws-conversations.md`), `gateway-chat` (`rest-chat.md`
//!   with its files and Socket.IO), `gateway-webapp` (the pages at `/` and `/admin`).
//! - [`routes`]: every route, mounted with its OpenAPI operation: each dialect's, then
//!   the probes, `/static`, `/openapi.json` and `/docs`, then `/v1`.
//! - `static_files`: pages served from `GATEWAY_STATIC_DIR` at `/static/{file}`.
//!
//! Adding a dialect: a crate under `services/gateway/` that depends on `gateway-core`,
//! exports a type implementing [`gateway_core::Dialect`] (its routes, their state, its
//! error shape), and one line in [`dialects`] (README, "Adding a dialect").

mod body_deadline;
mod metrics_route;
mod request_labels;
pub mod routes;
mod static_files;

#[cfg(test)]
mod dialects_doc;
#[cfg(test)]
mod examples;

pub use gateway_chat::SocketIoConfig;
pub use gateway_core::{Decision, WsConfig, attachments};

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_http::HttpServiceBuilder;
use actix_http::error::DispatchError;
use actix_service::{
    IntoServiceFactory as _, ServiceFactory as _, ServiceFactoryExt as _, fn_factory, fn_service, map_config,
};
use actix_web::dev::AppConfig;
use actix_web::dev::Service as _;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{App, HttpMessage, web};
use anyhow::Context as _;
use chat_bus::{Bus, Subjects};
use chat_telemetry::ops::ReadinessCheck;
use gateway_core::{Core, CoreConfig, Dialect};
use tracing::Instrument as _;

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
    /// Socket.IO's settings (`SOCKETIO_*`).
    pub socketio: SocketIoConfig,
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
    /// How long a request's body may take to arrive, from its head on
    /// (`GATEWAY_BODY_TIMEOUT_SECS`, default 60): past it, `408 REQUEST_TIMEOUT`.
    pub body_timeout: Duration,
    /// Where `/healthz`, `/readyz` and `/metrics` are served without a key, for
    /// Prometheus (`GATEWAY_OPS_ADDR`; unset: nowhere). On the main port `/metrics`
    /// takes the operator key.
    pub ops_addr: Option<SocketAddr>,
}

/// The defaults `from_env` starts from, without reading the environment: localhost
/// services, local attachments under `./attachments`, no optional routes.
impl Default for Config {
    fn default() -> Self {
        Self {
            nats_url: "nats://127.0.0.1:4222".to_owned(),
            bus_prefix: chat_bus::subjects::DEFAULT_PREFIX.to_owned(),
            redis_url: "redis://127.0.0.1:6379".to_owned(),
            addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_body_bytes: 64 * 1024,
            auth_cache_ttl: Duration::from_secs(10),
            ws: WsConfig::default(),
            socketio: SocketIoConfig::default(),
            bus_timeout: Duration::from_millis(5000),
            static_dir: None,
            dev_login: None,
            attachments: attachments::AttachmentsConfig::local("attachments"),
            body_timeout: Duration::from_secs(60),
            ops_addr: None,
        }
    }
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
                max_sockets_per_user: num("WS_MAX_SOCKETS_PER_USER", 64)?,
                max_sockets_per_tenant: num("WS_MAX_SOCKETS_PER_TENANT", 100_000)?,
                user_actions_per_sec: u32::try_from(num("WS_USER_ACTIONS_PER_SEC", 50)?)
                    .context("WS_USER_ACTIONS_PER_SEC is too large")?,
                presence_window: Duration::from_millis(num("WS_PRESENCE_WINDOW_MS", 250)? as u64),
                ..WsConfig::default()
            },
            socketio: SocketIoConfig {
                ping_interval: Duration::from_millis(num("SOCKETIO_PING_INTERVAL_MS", 25_000)? as u64),
                ping_timeout: Duration::from_millis(num("SOCKETIO_PING_TIMEOUT_MS", 20_000)? as u64),
                max_sessions: num("SOCKETIO_MAX_SESSIONS", 100_000)?,
                max_anonymous: num("SOCKETIO_MAX_ANONYMOUS", 10_000)?,
                anon_per_address: num("SOCKETIO_ANON_PER_ADDRESS", 32)?,
                anon_timeout: Duration::from_millis(num("SOCKETIO_ANON_TIMEOUT_MS", 10_000)? as u64),
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
            body_timeout: Duration::from_secs(num("GATEWAY_BODY_TIMEOUT_SECS", 60)?.max(1) as u64),
            ops_addr: match env("GATEWAY_OPS_ADDR", "").as_str() {
                "" => None,
                a => Some(a.parse().context("GATEWAY_OPS_ADDR must be host:port")?),
            },
        })
    }
}

/// The dialects a gateway with `config` serves, in the order their routes are tried
/// (the REST APIs' busiest routes first). Codecs that render attachment links sign
/// them with `attachments`' key. The only place that names every dialect.
pub fn dialects(config: &Config, attachments: &attachments::Attachments) -> Vec<Box<dyn Dialect>> {
    vec![
        Box::new(gateway_chat::Chat::new(attachments.clone(), config.socketio.clone())),
        Box::new(gateway_rest::RestRooms),
        Box::new(gateway_ws_rooms::WsRooms::new(attachments.clone())),
        Box::new(gateway_conversations::Conversations),
        Box::new(gateway_webapp::WebApp { dev_login: config.dev_login.clone() }),
    ]
}

/// A built gateway, listening but not yet serving.
pub struct Gateway {
    config: Config,
    listener: TcpListener,
    /// `GATEWAY_OPS_ADDR`'s listener.
    ops: Option<TcpListener>,
    state: web::Data<Core>,
    /// Built once; every HTTP worker mounts them.
    dialects: Arc<[Box<dyn Dialect>]>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Gateway {
    /// Binds the listener, connects to NATS and Redis, and builds the core and the
    /// dialects.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let subjects = Subjects::new(&config.bus_prefix)?;
        let listener = TcpListener::bind(config.addr).with_context(|| format!("binding {}", config.addr))?;
        let ops = chat_telemetry::ops::bind(config.ops_addr)?;
        let client = chat_bus::connect(&config.nats_url, "gateway").await?;
        let redis = chat_redis::connect(&config.redis_url, "gateway").await?;
        let bus = Bus::new(client, subjects).with_timeout(config.bus_timeout);
        let gateway_id = chat_domain::ids::GatewayId::parse(format!("gw_{}", uuid_like()))?;
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let core = CoreConfig {
            bus_prefix: config.bus_prefix.clone(),
            max_body_bytes: config.max_body_bytes,
            auth_cache_ttl: config.auth_cache_ttl,
            ws: config.ws.clone(),
            attachments: config.attachments.clone(),
        };
        let core = Core::new(&core, bus, redis, gateway_id, shutdown)?;
        let dialects = dialects(&config, &core.attachments).into();
        Ok(Self { config, listener, ops, state: web::Data::new(core), dialects, stop })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or_default()
    }

    /// The port of `GATEWAY_OPS_ADDR`'s listener, when there is one.
    pub fn ops_port(&self) -> Option<u16> {
        chat_telemetry::ops::port(&self.ops)
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests and stops.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let state = self.state.clone();
        let follower = {
            let state = state.clone();
            tokio::spawn(async move {
                let changed = |t: &chat_domain::ids::TenantId| {
                    state.forget_tenant(t);
                    // Revocation reaches open sockets: theirs are checked again.
                    gateway_core::session::guard::recheck(state.clone(), t.clone());
                };
                if let Err(e) = state.auth.follow_changes(&state.bus, changed).await {
                    tracing::warn!(error = %e, "not following tenant changes; cached keys expire on their own");
                }
            })
        };
        // ... and a change whose announcement was missed reaches them within a period.
        let sweeper = tokio::spawn(gateway_core::session::guard::sweep(state.clone(), state.auth_ttl));
        let check: ReadinessCheck = {
            let client = state.bus.client().clone();
            Arc::new(move || {
                let client = client.clone();
                Box::pin(async move { client.connection_state() == async_nats::connection::State::Connected })
            })
        };
        let (ops_stop, ops_stopped) = tokio::sync::oneshot::channel::<()>();
        let ops = self.ops.map(|listener| {
            tokio::spawn(chat_telemetry::ops::serve(listener, check.clone(), async move {
                let _ = ops_stopped.await;
            }))
        });
        let routes = routes::Routes {
            dialects: self.dialects.clone(),
            statics: self.config.static_dir.clone().map(|d| web::Data::new(static_files::StaticDir(d))),
            check,
        };
        let docs = web::Data::new(gateway_core::openapi::DocsPage {
            json: serde_json::to_vec(&routes::document(&routes))?.into(),
        });
        // Request metrics are labelled with the mounted patterns only (finding 6).
        let labels = request_labels::RouteLabels::new(routes::table(&routes).into_iter().map(|(_, p)| p));
        let body_timeout = self.config.body_timeout;
        let app = move || {
            let routes = routes.clone();
            let labels = labels.clone();
            App::new()
                .app_data(state.clone())
                .app_data(docs.clone())
                // A path segment that cannot be decoded (`%FF`) is the documented `400`.
                .app_data(web::PathConfig::default().error_handler(|e, _| {
                    gateway_core::error::HttpError(chat_domain::ApiError::validation(
                        "path",
                        format!("Invalid path: {e}"),
                    ))
                    .into()
                }))
                // Inside the metrics' wrapper: a body cut off is counted as its 408.
                .wrap_fn(move |mut req, srv| {
                    body_deadline::limit(&mut req, body_timeout);
                    srv.call(req)
                })
                .wrap_fn(move |req, srv| {
                    let method = request_labels::method(req.method());
                    let route = labels.route(req.match_pattern());
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
                        gateway_core::metrics::REQUESTS.with_label_values(&[method, &route, &status]).inc();
                        gateway_core::metrics::LATENCY
                            .with_label_values(&[method, &route])
                            .observe(started.elapsed().as_secs_f64());
                        if res.status().is_server_error() {
                            tracing::warn!(status = %status, "request failed");
                        }
                        Ok(res)
                    }
                    .instrument(span)
                })
                .configure(|cfg| routes::all(cfg, &mut gateway_core::openapi::Api::new(), &routes))
                .default_service(web::to(gateway_core::error::no_route))
        };
        // actix-web's `HttpServer`, assembled by hand so that each connection's socket
        // is wrapped: the errors actix-http answers itself get the documented body too
        // (`gateway_core::http_errors`).
        // The WebSocket connections handed over by the dispatchers, still open.
        let upgraded = gateway_core::session::upgraded::Open::default();
        let connection = {
            let upgraded = upgraded.clone();
            move || {
                let factory = || {
                    map_config(app().into_factory().map_err(|e: actix_web::Error| e.error_response()), |_| {
                        AppConfig::default()
                    })
                };
                // A WebSocket handshake leaves actix-http's dispatcher (and its two 8 KiB
                // buffers, kept for the connection's life): the same application answers it
                // and the connection goes on with buffers only while bytes move
                // (`gateway_core::session::upgraded`).
                let upgrades = factory();
                let open = upgraded.clone();
                let upgrade = fn_factory(move || {
                    let service = upgrades.new_service(());
                    let open = open.clone();
                    async move {
                        let app = std::rc::Rc::new(service.await?);
                        Ok::<_, ()>(fn_service(move |(req, framed)| {
                            gateway_core::session::upgraded::hand_over(open.clone(), app.clone(), req, framed)
                        }))
                    }
                });
                let app = factory();
                fn_service(|io: actix_web::rt::net::TcpStream| async move {
                    // Small frames go out at once: with Nagle's algorithm a second frame
                    // written before the client acknowledged the first waited for its
                    // delayed ACK (~40 ms per round trip in the WebSocket persist benchmark).
                    let _ = io.set_nodelay(true);
                    let peer = io.peer_addr().ok();
                    Ok::<_, DispatchError>((gateway_core::http_errors::JsonErrors::new(io), peer))
                })
                .and_then(
                    HttpServiceBuilder::default()
                        // As `HttpServer` has it: a second to finish a response to a client
                        // that is going away.
                        .client_disconnect_timeout(Duration::from_secs(1))
                        .upgrade(upgrade)
                        .h1(app),
                )
            }
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
            // Sockets first, then their connections (each writes its close frame).
            while (hub.socket_count().await > 0 || upgraded.count() > 0) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            handle.stop(true).await;
        });
        let result = server.await.context("HTTP server");
        let _ = ops_stop.send(());
        if let Some(ops) = ops {
            let _ = ops.await;
        }
        follower.abort();
        sweeper.abort();
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
