//! [`TestStack`] / [`StackBuilder`]: any set of the services running in this
//! process on port 0, isolated by a fresh bus prefix, with stop and restart handles.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::env::{Endpoints, ensure_database, unique};
use crate::http::Response;
use crate::tenant::TestTenant;
use crate::wait::{bounded, eventually};

/// How the ids of a stack's tenants begin: the stack's bus prefix. The stacks of
/// concurrent tests share one database and so one message log; each stack's offline
/// pass follows only the tenants with its prefix.
pub fn tenant_prefix(bus_prefix: &str) -> String {
    format!("{bus_prefix}_")
}

/// The dev-login tenant of the stack with bus prefix `bus_prefix` (with the stack's
/// tenant prefix, so its offline pass follows it).
fn dev_tenant_id(bus_prefix: &str) -> anyhow::Result<chat_domain::ids::TenantId> {
    Ok(chat_domain::ids::TenantId::parse(format!("{}dev", tenant_prefix(bus_prefix)))?)
}

/// Resolves when `rx` says stop (or its sender is gone).
async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Test settings of message-store number `i` of a stack.
fn message_store_config(
    ends: &Endpoints,
    prefix: &str,
    admin_key: &str,
    i: usize,
) -> anyhow::Result<message_store::Config> {
    let db = ends.database.as_str();
    Ok(message_store::Config {
        nats_url: ends.nats.clone(),
        bus_prefix: prefix.to_owned(),
        database_url: db.to_owned(),
        db_pool_size: 8,
        db_timeout: Duration::from_secs(10),
        ops_addr: Some("127.0.0.1:0".parse()?),
        bootstrap: message_store::Bootstrap {
            admin_api_key: Some(admin_key.to_owned()),
            dev_tenant: false,
            dev_api_key: None,
        },
        outbox_relay_after: Duration::from_secs(2),
        outbox_relay_every: Duration::from_millis(500),
        instance: Some(format!("message-store-{i}")),
        send_writers: 4,
        publish_lease_every: Duration::from_millis(500),
        publish_lease_ttl: Duration::from_secs(3),
        crash_before_publish: false,
        clock: message_store::Clock::system(),
        search: message_store::SearchLimits::default(),
    })
}

/// Which services a [`TestStack`] runs.
#[derive(Debug, Clone)]
pub struct StackBuilder {
    gateways: usize,
    message_stores: usize,
    presence: bool,
    notification: bool,
    gateway_config: Option<fn(&mut gateway::Config)>,
    presence_config: Option<fn(&mut presence::Config)>,
    message_store_config: Option<fn(&mut message_store::Config)>,
    static_dir: Option<std::path::PathBuf>,
    /// Whether the gateways serve `POST /dev/token` (for [`TestStack::dev_tenant`]).
    dev_login: bool,
    notification_config: Option<fn(&mut notification::Config)>,
    attachments: Option<gateway::attachments::AttachmentsConfig>,
    /// Where the services find NATS, PostgreSQL and Redis.
    endpoints: Endpoints,
}

impl Default for StackBuilder {
    fn default() -> Self {
        Self {
            gateways: 1,
            message_stores: 1,
            presence: true,
            notification: true,
            gateway_config: None,
            presence_config: None,
            message_store_config: None,
            static_dir: None,
            dev_login: false,
            notification_config: None,
            attachments: None,
            endpoints: Endpoints::local(),
        }
    }
}

impl StackBuilder {
    pub fn gateways(mut self, n: usize) -> Self {
        self.gateways = n;
        self
    }

    pub fn message_stores(mut self, n: usize) -> Self {
        self.message_stores = n;
        self
    }

    pub fn without_notification(mut self) -> Self {
        self.notification = false;
        self
    }

    pub fn without_presence(mut self) -> Self {
        self.presence = false;
        self
    }

    /// Adjusts every gateway's configuration before it starts.
    pub fn gateway_config(mut self, f: fn(&mut gateway::Config)) -> Self {
        self.gateway_config = Some(f);
        self
    }

    /// Adjusts the presence service's configuration before it starts.
    pub fn presence_config(mut self, f: fn(&mut presence::Config)) -> Self {
        self.presence_config = Some(f);
        self
    }

    /// Serves the files of `dir` at `/static/{file}` on every gateway.
    /// Gateways with `POST /dev/token` on, for the tenant [`TestStack::dev_tenant`] creates.
    pub fn dev_login(mut self) -> Self {
        self.dev_login = true;
        self
    }

    pub fn static_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.static_dir = Some(dir.into());
        self
    }

    /// Where every gateway keeps attachments (default: a fresh directory of the stack's
    /// own under the system's temporary directory).
    pub fn attachments(mut self, config: gateway::attachments::AttachmentsConfig) -> Self {
        self.attachments = Some(config);
        self
    }

    /// Adjusts every message-store's configuration before it starts.
    pub fn message_store_config(mut self, f: fn(&mut message_store::Config)) -> Self {
        self.message_store_config = Some(f);
        self
    }

    /// Runs the services on these engines instead of the machine's own (a NATS
    /// cluster, a replicated PostgreSQL, Redis with Sentinel: see [`crate::cluster`]).
    pub fn on(mut self, endpoints: Endpoints) -> Self {
        self.endpoints = endpoints;
        self
    }

    /// Adjusts the notification service's configuration before it starts.
    pub fn notification_config(mut self, f: fn(&mut notification::Config)) -> Self {
        self.notification_config = Some(f);
        self
    }

    /// Starts the services and waits until each answers.
    pub async fn start(self) -> anyhow::Result<TestStack> {
        chat_telemetry::init_for_tests();
        let prefix = unique("t");
        let ends = self.endpoints.clone();
        let db = ends.database.clone();
        ensure_database(&db).await?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks: Vec<JoinHandle<anyhow::Result<()>>> = Vec::new();
        let admin_key = chat_domain::keys::generate(chat_domain::keys::ADMIN_KEY_PREFIX);
        let mut ops_ports = Vec::new();
        let mut notification = None;

        for i in 0..self.message_stores {
            let mut cfg = message_store_config(&ends, &prefix, &admin_key, i)?;
            if let Some(f) = self.message_store_config {
                f(&mut cfg);
            }
            let app = message_store::MessageStore::build_on(cfg, ends.clusters.clone())
                .await
                .context("starting message-store")?;
            ops_ports.extend(app.ops_port().map(|p| ("message-store", p)));
            tasks.push(tokio::spawn(app.run(stopped(stop_rx.clone()))));
        }
        if self.presence {
            let mut cfg = presence::Config::for_tests(ends.nats.clone(), prefix.clone(), ends.redis.clone());
            cfg.ops_addr = Some("127.0.0.1:0".parse()?);
            cfg.redis_replicas = ends.presence_redis_replicas;
            if let Some(f) = self.presence_config {
                f(&mut cfg);
            }
            let app = presence::Presence::build(cfg).await.context("starting presence")?;
            ops_ports.extend(app.ops_port().map(|p| ("presence", p)));
            tasks.push(tokio::spawn(app.run(stopped(stop_rx.clone()))));
        }
        if self.notification {
            let mut cfg = notification::Config {
                nats_url: ends.nats.clone(),
                bus_prefix: prefix.clone(),
                database_url: db.clone(),
                db_pool_size: 4,
                db_timeout: Duration::from_secs(10),
                ops_addr: Some("127.0.0.1:0".parse()?),
                offline_grace: Duration::from_millis(400),
                offline_window: Duration::from_millis(1_000),
                // Every stack shares the database, and so the message log: each follows
                // only its own tenants (see `TestStack::tenant_with`).
                offline_tenant_prefix: Some(tenant_prefix(&prefix)),
                // The tests' webhook receivers listen on 127.0.0.1.
                webhook_allow_private: true,
            };
            if let Some(f) = self.notification_config {
                f(&mut cfg);
            }
            let app = notification::Notification::build(cfg.clone())
                .await
                .context("starting notification")?
                .stream_replicas(ends.stream_replicas);
            ops_ports.extend(app.ops_port().map(|p| ("notification", p)));
            let (own_tx, own_rx) = watch::channel(false);
            let (all, own) = (stopped(stop_rx.clone()), stopped(own_rx));
            let task = tokio::spawn(app.run(async move {
                tokio::select! {
                    _ = all => {},
                    _ = own => {},
                }
            }));
            notification = Some(Restartable { config: cfg, stop: own_tx, task });
        }
        let attachments_dir = std::env::temp_dir().join(format!("chat-attachments-{prefix}"));
        let attachments_tmp = self.attachments.is_none().then(|| attachments_dir.clone());
        let attachments =
            self.attachments.clone().unwrap_or_else(|| gateway::attachments::AttachmentsConfig::local(attachments_dir));
        let mut gateway_ports = Vec::new();
        let mut gateway_stops = Vec::new();
        let mut gateways = Vec::new();
        for _ in 0..self.gateways {
            let mut cfg = gateway::Config {
                nats_url: ends.nats.clone(),
                bus_prefix: prefix.clone(),
                redis_url: ends.gateway_redis.clone(),
                addr: "127.0.0.1:0".parse()?,
                workers: 2,
                max_body_bytes: 64 * 1024,
                auth_cache_ttl: Duration::from_secs(10),
                // Generous: a loaded CI machine must not turn into 503s.
                bus_timeout: Duration::from_secs(30),
                ws: gateway::WsConfig {
                    heartbeat_every: Duration::from_secs(1),
                    reconnect_spread_ms: 100,
                    ..gateway::WsConfig::default()
                },
                socketio: gateway::SocketIoConfig::default(),
                static_dir: self.static_dir.clone(),
                dev_login: self.dev_login.then(|| dev_tenant_id(&prefix)).transpose()?,
                attachments: attachments.clone(),
                // The rest as a deployment has it (a test changes it with `gateway_config`).
                ..gateway::Config::default()
            };
            if let Some(f) = self.gateway_config {
                f(&mut cfg);
            }
            let app = gateway::Gateway::build(cfg.clone()).await.context("starting gateway")?;
            gateway_ports.push(app.port());
            // Each gateway also stops on its own switch, to test one going away.
            let (own_tx, own_rx) = watch::channel(false);
            gateway_stops.push(own_tx);
            gateways.push((cfg, tasks.len()));
            tasks.push(spawn_gateway(app, stop_rx.clone(), own_rx));
        }
        let nats = chat_bus::connect(&ends.nats, "test").await?;
        let stack = TestStack {
            endpoints: ends,
            bus: chat_bus::Bus::new(nats, chat_bus::Subjects::new(&prefix)?),
            prefix,
            gateway_ports,
            gateway_stops,
            gateways,
            notification,
            notification_stopped: None,
            stop_rx,
            ops_ports,
            admin_key,
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?,
            stop: stop_tx,
            tasks,
            attachments,
            attachments_tmp,
        };
        stack.wait_ready(self.message_stores > 0).await?;
        Ok(stack)
    }
}

/// Services running in this process for one test.
pub struct TestStack {
    /// The bus prefix that isolates this stack.
    pub prefix: String,
    pub gateway_ports: Vec<u16>,
    gateway_stops: Vec<watch::Sender<bool>>,
    /// Each gateway's settings and the index of its task in `tasks` (to restart it).
    gateways: Vec<(gateway::Config, usize)>,
    notification: Option<Restartable<notification::Config>>,
    /// The settings of a notification service stopped by `stop_notification`.
    notification_stopped: Option<notification::Config>,
    stop_rx: watch::Receiver<bool>,
    /// `(service, port)` of each non-gateway service's `/healthz`, `/readyz`, `/metrics`.
    pub ops_ports: Vec<(&'static str, u16)>,
    /// The operator key message-store was started with.
    pub admin_key: String,
    /// A bus client under this stack's prefix.
    pub bus: chat_bus::Bus,
    pub http: reqwest::Client,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
    /// Where the gateways keep attachments, and the key their links are signed with.
    pub attachments: gateway::attachments::AttachmentsConfig,
    /// The stack's own attachments directory, removed by `stop`.
    attachments_tmp: Option<std::path::PathBuf>,
    /// The engines the services run on.
    endpoints: Endpoints,
}

impl TestStack {
    /// One of everything.
    pub async fn start() -> anyhow::Result<Self> {
        StackBuilder::default().start().await
    }

    pub fn builder() -> StackBuilder {
        StackBuilder::default()
    }

    /// `http://127.0.0.1:<port>` of gateway `i`.
    pub fn base_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.gateway_ports[i])
    }

    /// `ws://127.0.0.1:<port>` of gateway `i`.
    pub fn ws_url(&self, i: usize) -> String {
        format!("ws://127.0.0.1:{}", self.gateway_ports[i])
    }

    /// Stops gateway `i` alone, as a SIGTERM would.
    pub async fn stop_gateway(&mut self, i: usize) -> anyhow::Result<()> {
        let stop = self.gateway_stops.get(i).cloned().ok_or_else(|| anyhow!("no gateway {i}"))?;
        let _ = stop.send(true);
        Ok(())
    }

    /// Stops gateway `i` as a SIGTERM would, waits until it has stopped, and starts it
    /// again with the same settings on the same port (a rolling restart).
    pub async fn restart_gateway(&mut self, i: usize) -> anyhow::Result<()> {
        self.stop_gateway(i).await?;
        let (mut cfg, task) = self.gateways.get(i).cloned().ok_or_else(|| anyhow!("no gateway {i}"))?;
        let old = std::mem::replace(&mut self.tasks[task], tokio::spawn(async { Ok(()) }));
        bounded("gateway to stop", old).await???;
        cfg.addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.gateway_ports[i]));
        let app = gateway::Gateway::build(cfg).await.context("starting the gateway again")?;
        let (own_tx, own_rx) = watch::channel(false);
        self.gateway_stops[i] = own_tx;
        self.tasks[task] = spawn_gateway(app, self.stop_rx.clone(), own_rx);
        let url = format!("{}/healthz", self.base_url(i));
        eventually("gateway /healthz", || async { Ok(self.http.get(&url).send().await?.status().is_success()) }).await
    }

    /// Kills message-store `i` (the `i`-th started) as a crash would: it stops answering
    /// at once, finishes nothing and says goodbye to nobody.
    pub fn kill_message_store(&mut self, i: usize) -> anyhow::Result<()> {
        self.tasks.get(i).ok_or_else(|| anyhow!("no message-store {i}"))?.abort();
        Ok(())
    }

    /// Starts one more message-store replica (e.g. one that takes over after another
    /// died); `configure` adjusts its settings. It stops with the stack.
    pub async fn add_message_store(&mut self, configure: fn(&mut message_store::Config)) -> anyhow::Result<()> {
        let mut cfg = message_store_config(&self.endpoints, &self.prefix, &self.admin_key, self.tasks.len())?;
        configure(&mut cfg);
        let app = message_store::MessageStore::build_on(cfg, self.endpoints.clusters.clone())
            .await
            .context("starting another message-store")?;
        self.tasks.push(tokio::spawn(app.run(stopped(self.stop_rx.clone()))));
        Ok(())
    }

    /// Stops the notification service and starts a new instance with the same
    /// settings (its durable consumers and queued jobs carry over).
    pub async fn restart_notification(&mut self) -> anyhow::Result<()> {
        self.stop_notification().await?;
        self.start_notification().await
    }

    /// Stops the notification service, as a SIGTERM would, until
    /// [`TestStack::start_notification`]: what it persisted (its place in the message
    /// log, open windows, queued jobs) waits for the next instance.
    pub async fn stop_notification(&mut self) -> anyhow::Result<()> {
        let old = self.notification.take().ok_or_else(|| anyhow!("this stack runs no notification service"))?;
        let _ = old.stop.send(true);
        bounded("notification to stop", old.task).await???;
        self.notification_stopped = Some(old.config);
        Ok(())
    }

    /// Starts a new notification service with the settings of the one
    /// [`TestStack::stop_notification`] stopped.
    pub async fn start_notification(&mut self) -> anyhow::Result<()> {
        let config = self.notification_stopped.take().ok_or_else(|| anyhow!("no stopped notification service"))?;
        let app = notification::Notification::build(config.clone()).await.context("starting notification again")?;
        // Its ops endpoints are on a new port (the settings say port 0).
        self.ops_ports.retain(|(service, _)| *service != "notification");
        self.ops_ports.extend(app.ops_port().map(|p| ("notification", p)));
        let (own_tx, own_rx) = watch::channel(false);
        let (all, own) = (stopped(self.stop_rx.clone()), stopped(own_rx));
        let task = tokio::spawn(app.run(async move {
            tokio::select! {
                _ = all => {},
                _ = own => {},
            }
        }));
        self.notification = Some(Restartable { config, stop: own_tx, task });
        Ok(())
    }

    /// `base_url(0) + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url(0))
    }

    async fn wait_ready(&self, store: bool) -> anyhow::Result<()> {
        for i in 0..self.gateway_ports.len() {
            let url = format!("{}/healthz", self.base_url(i));
            eventually("gateway /healthz", || async { Ok(self.http.get(&url).send().await?.status().is_success()) })
                .await?;
        }
        if store {
            eventually("message-store health", || async {
                Ok(self
                    .bus
                    .request_to(chat_domain::proto::Service::MessageStore, &chat_domain::proto::health::Health {})
                    .await
                    .is_ok())
            })
            .await?;
        }
        Ok(())
    }

    /// Calls the admin API on gateway 0.
    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Response> {
        let mut req = self.http.request(method, self.url(path)).header("X-API-Key", &self.admin_key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        Response::from(req.send().await?).await
    }

    /// The tenant whose users `POST /dev/token` signs in on a stack built with
    /// [`StackBuilder::dev_login`] (created here, as `make run`'s message-store creates `dev`).
    pub async fn dev_tenant(&self) -> anyhow::Result<TestTenant> {
        let id = dev_tenant_id(&self.prefix)?;
        self.tenant_with(json!({"name": "dev", "tenant_id": id.as_str(), "rate_limit_per_sec": 100_000})).await
    }

    /// A fresh tenant, through the admin API.
    pub async fn tenant(&self) -> anyhow::Result<TestTenant> {
        self.tenant_with(json!({"name": unique("tenant-")})).await
    }

    /// A fresh tenant created with the given `POST /admin/tenants` body. Without a
    /// `tenant_id` in it, the id starts with this stack's tenant prefix, so that this
    /// stack's notification service (and no other stack's) follows its messages.
    pub async fn tenant_with(&self, mut body: Value) -> anyhow::Result<TestTenant> {
        if let Some(fields) = body.as_object_mut()
            && !fields.contains_key("tenant_id")
        {
            fields.insert("tenant_id".to_owned(), json!(unique(&tenant_prefix(&self.prefix))));
        }
        let res = self.admin(reqwest::Method::POST, "/admin/tenants", Some(body)).await?;
        let res = res.expect(StatusCode::CREATED)?;
        Ok(TestTenant {
            id: res.str("tenant_id")?.to_owned(),
            api_key: res.str("api_key")?.to_owned(),
            http: self.http.clone(),
            base_urls: (0..self.gateway_ports.len()).map(|i| self.base_url(i)).collect(),
        })
    }

    /// Stops every service and removes what this stack left on the shared servers.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let tasks = self.tasks.into_iter().chain(self.notification.map(|n| n.task));
        for t in tasks {
            match tokio::time::timeout(Duration::from_secs(30), t).await {
                Ok(Ok(Ok(()))) => {}
                // Killed on purpose (`kill_message_store`).
                Ok(Err(e)) if e.is_cancelled() => {}
                Ok(Ok(Err(e))) => bail!("a service stopped with an error: {e:#}"),
                Ok(Err(e)) => bail!("a service task failed: {e}"),
                Err(_) => bail!("a service did not stop within 30 s"),
            }
        }
        if let Some(dir) = &self.attachments_tmp {
            let _ = std::fs::remove_dir_all(dir);
        }
        let js = async_nats::jetstream::new(self.bus.client().clone());
        for stream in [self.bus.subjects().deliveries_stream(), self.bus.subjects().dead_letter_stream()] {
            let _ = js.delete_stream(stream).await;
        }
        Ok(())
    }
}

/// Runs a gateway until the stack stops or its own switch is thrown.
fn spawn_gateway(
    app: gateway::Gateway,
    all: watch::Receiver<bool>,
    own: watch::Receiver<bool>,
) -> JoinHandle<anyhow::Result<()>> {
    let (all, own) = (stopped(all), stopped(own));
    tokio::spawn(app.run(async move {
        tokio::select! {
            _ = all => {},
            _ = own => {},
        }
    }))
}

/// A service that can be stopped and started again on its own.
struct Restartable<C> {
    config: C,
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}
