//! What the Socket.IO routes share ([`SocketIo`], registered by the dialect when it
//! mounts): this gateway's Engine.IO sessions by `sid`, the codec of their chat
//! memberships, and the settings ([`SocketIoConfig`]).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use gateway_core::attachments::Attachments;
use tokio::sync::mpsc;

use crate::socketio::codec::SocketIoCodec;
use crate::socketio::engine::{Engine, Incoming, Transport};

/// Socket.IO's settings.
#[derive(Debug, Clone)]
pub struct SocketIoConfig {
    /// How often a session is pinged (`SOCKETIO_PING_INTERVAL_MS`; the handshake's
    /// `pingInterval`).
    pub ping_interval: Duration,
    /// How long a client has to answer a ping (`SOCKETIO_PING_TIMEOUT_MS`;
    /// `pingTimeout`).
    pub ping_timeout: Duration,
    /// Most sessions this gateway holds at once (`SOCKETIO_MAX_SESSIONS`); past it a
    /// handshake is answered `503` (sessions are made before anyone is authenticated,
    /// so their number is bounded here).
    pub max_sessions: usize,
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        Self { ping_interval: Duration::from_secs(25), ping_timeout: Duration::from_secs(20), max_sessions: 100_000 }
    }
}

/// Open Socket.IO sessions of this process (`chat_gateway_socketio_sessions`).
pub(crate) static SESSIONS: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    gateway_core::metrics::register(prometheus::IntGauge::new(
        "chat_gateway_socketio_sessions",
        "Open Socket.IO (Engine.IO) sessions",
    ))
});

/// What the Socket.IO routes share: this gateway's sessions, the codec of their chat
/// memberships, and the settings.
#[derive(Debug)]
pub struct SocketIo {
    pub(crate) sessions: Sessions,
    pub(crate) codec: &'static SocketIoCodec,
    pub(crate) config: SocketIoConfig,
}

impl SocketIo {
    /// The codec signs attachment links with `attachments`' key, as `/api/chat` does.
    pub fn new(attachments: Attachments, config: SocketIoConfig) -> Self {
        LazyLock::force(&SESSIONS);
        Self { sessions: Sessions::default(), codec: SocketIoCodec::leak(attachments), config }
    }
}

/// This gateway's Engine.IO sessions, by `sid`. A session lives on the gateway that
/// made it: every polling request of a session must reach that gateway (see
/// `docs/deploy.md`: sticky sessions); elsewhere it is `Session ID unknown` and the
/// client starts a new session.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    by_sid: Mutex<HashMap<String, Arc<Engine>>>,
}

impl Sessions {
    /// A new session, unless `max` are open already.
    pub(crate) fn create(&self, transport: Transport, max: usize) -> Option<(Arc<Engine>, mpsc::Receiver<Incoming>)> {
        let mut map = self.by_sid.lock().ok()?;
        if map.len() >= max {
            return None;
        }
        let (engine, incoming) = Engine::new(new_sid(), transport);
        map.insert(engine.sid.clone(), engine.clone());
        Some((engine, incoming))
    }

    pub(crate) fn get(&self, sid: &str) -> Option<Arc<Engine>> {
        self.by_sid.lock().ok().and_then(|m| m.get(sid).cloned())
    }

    pub(crate) fn remove(&self, sid: &str) {
        if let Ok(mut map) = self.by_sid.lock() {
            map.remove(sid);
        }
    }
}

/// 20 random URL-safe characters.
fn new_sid() -> String {
    use base64::Engine as _;
    let mut b = [0u8; 15];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}
