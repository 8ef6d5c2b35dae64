//! The core's settings: what it is built with ([`CoreConfig`]) and what every socket
//! dialect shares ([`WsConfig`]).

use std::time::Duration;

use crate::attachments::AttachmentsConfig;

/// What the core needs to be built, besides its connections.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// First subject token (`CHAT_BUS_PREFIX`); also prefixes Redis keys.
    pub bus_prefix: String,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How long a resolved API key (or token secret, or issuer) is trusted before it is
    /// checked again.
    pub auth_cache_ttl: Duration,
    /// WebSocket settings, shared by every socket dialect.
    pub ws: WsConfig,
    /// Where attachments are stored and how their links are signed.
    pub attachments: AttachmentsConfig,
}

/// WebSocket settings, shared by every socket dialect (a dialect's own settings are
/// its crate's).
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Largest client frame handled (`WS_MAX_FRAME_BYTES`); larger ones get an error frame.
    pub max_frame_bytes: usize,
    /// Outgoing frames a socket may have queued before it is closed as too slow (`WS_QUEUE`).
    pub queue: usize,
    /// How often the server pings (`WS_PING_SECS`).
    pub ping_interval: Duration,
    /// A socket silent for this long is closed (`WS_IDLE_SECS`).
    pub idle_timeout: Duration,
    /// How often the gateway renews its presence lease (its sockets live by it).
    pub heartbeat_every: Duration,
    /// Reconnect delays sent at shutdown are spread over this window.
    pub reconnect_spread_ms: u64,
    /// How long each room holds arrivals and departures before sending them, so that a
    /// user's arrival and departure within it cancel and a burst is sent as one run
    /// (`WS_PRESENCE_WINDOW_MS`, default 250; 0 sends each at once).
    pub presence_window: Duration,
    /// Sockets one user may have open on this gateway (`WS_MAX_SOCKETS_PER_USER`;
    /// a Socket.IO session counts once).
    pub max_sockets_per_user: usize,
    /// Sockets one tenant may have open on this gateway (`WS_MAX_SOCKETS_PER_TENANT`).
    pub max_sockets_per_tenant: usize,
    /// Client actions (frames, Socket.IO events) one user may make per second on this
    /// gateway's sockets (`WS_USER_ACTIONS_PER_SEC`; 0: no per-user limit).
    pub user_actions_per_sec: u32,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 * 1024,
            queue: 1024,
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            heartbeat_every: Duration::from_secs(10),
            reconnect_spread_ms: 5_000,
            presence_window: Duration::from_millis(250),
            max_sockets_per_user: 64,
            max_sockets_per_tenant: 100_000,
            user_actions_per_sec: 50,
        }
    }
}
