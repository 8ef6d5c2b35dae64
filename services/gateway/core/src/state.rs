//! [`Core`]: the state every handler and socket of every dialect shares. It is built
//! from the lower modules' handles (the bus, the caches, the limiter, the socket
//! registry, the send batcher, the attachment store); the modules that serve requests
//! (`admit`, `extract`, `session`, `tokens`) take it, the ones it is made of never do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_bus::Bus;
use chat_domain::ids::{GatewayId, TenantId};

use crate::attachments::{self, SignedLinks};
use crate::config::{CoreConfig, WsConfig};
use crate::{auth, fanout, jwt, metrics, ratelimit, secrets, sends};

/// Shared by every request handler and socket of every dialect (as `web::Data<Core>`).
/// A dialect's own state is its own type, registered when it mounts.
#[derive(Debug)]
pub struct Core {
    pub bus: Bus,
    pub auth: Arc<auth::AuthCache>,
    pub limiter: ratelimit::RateLimiter,
    pub started: Instant,
    pub max_body_bytes: usize,
    pub auth_ttl: Duration,
    /// Token-signing secrets by tenant.
    pub secrets: secrets::SecretCache,
    /// Tenants' own JWT issuers: issuer → tenant, and their keys compiled.
    pub issuers: jwt::Issuers,
    /// This gateway's sockets and room subscriptions.
    pub hub: Arc<fanout::Hub>,
    /// Delivered receipts the gateway records itself (dialects without an ack frame).
    pub deliveries: Arc<fanout::receipts::Deliveries>,
    /// Every send of this gateway, batched into requests to message-store.
    pub sends: sends::Sends,
    pub ws: WsConfig,
    /// Becomes `true` when the gateway is shutting down.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// The attachments' store and link signer.
    pub attachments: attachments::Attachments,
    /// Revocation, caps and per-user action limits of open sockets.
    pub guards: crate::session::guard::Guards,
}

impl Core {
    /// The core of a gateway named `gateway_id`, over its bus and Redis connections;
    /// `shutdown` turns `true` when the gateway stops.
    pub fn new(
        config: &CoreConfig,
        bus: Bus,
        redis: chat_redis::Redis,
        gateway_id: GatewayId,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        metrics::init();
        let attachments =
            attachments::Attachments::open(&config.attachments).context("opening the attachment store")?;
        Ok(Self {
            hub: Arc::new(fanout::Hub::new(bus.clone(), gateway_id, config.ws.queue, config.ws.presence_window)),
            deliveries: Arc::default(),
            sends: sends::Sends::new(bus.clone()),
            bus,
            auth: Arc::new(auth::AuthCache::new(config.auth_cache_ttl)),
            limiter: ratelimit::RateLimiter::new(redis, &config.bus_prefix),
            started: Instant::now(),
            max_body_bytes: config.max_body_bytes,
            auth_ttl: config.auth_cache_ttl,
            secrets: secrets::SecretCache::new(config.auth_cache_ttl),
            issuers: jwt::Issuers::default(),
            guards: crate::session::guard::Guards::new(
                config.ws.max_sockets_per_user,
                config.ws.max_sockets_per_tenant,
                config.ws.user_actions_per_sec,
            ),
            ws: config.ws.clone(),
            shutdown,
            attachments,
        })
    }

    /// The links this gateway renders: signed now, valid for `GATEWAY_LINK_TTL_SECS`.
    pub fn links(&self) -> SignedLinks<'_> {
        SignedLinks::new(&self.attachments)
    }

    /// Forgets everything cached about `tenant` (its keys, token secret, settings and
    /// JWT issuers): after a change made here, or announced by message-store.
    pub fn forget_tenant(&self, tenant: &TenantId) {
        self.auth.forget(tenant);
        self.secrets.forget(tenant);
        self.issuers.forget(tenant);
    }
}
