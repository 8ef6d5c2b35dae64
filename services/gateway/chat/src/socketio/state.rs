//! What the Socket.IO routes share ([`SocketIo`], registered by the dialect when it
//! mounts): this gateway's Engine.IO sessions by `sid`, the codec of their chat
//! memberships, and the settings ([`SocketIoConfig`]).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
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
    /// Most authenticated sessions (the namespace connected) this gateway holds at
    /// once (`SOCKETIO_MAX_SESSIONS`); a connect past it gets `connect_error`.
    pub max_sessions: usize,
    /// Most anonymous sessions (handshaken, namespace not connected yet) at once
    /// (`SOCKETIO_MAX_ANONYMOUS`); past it the oldest anonymous one is closed to make
    /// room, so a flood of handshakes can never keep anyone from connecting.
    pub max_anonymous: usize,
    /// Most anonymous sessions from one client address (`SOCKETIO_ANON_PER_ADDRESS`);
    /// a handshake past it is answered `503`.
    pub anon_per_address: usize,
    /// How long a session may stay anonymous before it is closed
    /// (`SOCKETIO_ANON_TIMEOUT_MS`).
    pub anon_timeout: Duration,
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_sessions: 100_000,
            max_anonymous: 10_000,
            anon_per_address: 32,
            anon_timeout: Duration::from_secs(10),
        }
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
///
/// A session is made at the handshake, before anyone is authenticated, so the table
/// keeps anonymous sessions apart from authenticated ones: anonymous ones are bounded
/// per client address and in all (the oldest is closed to make room for a new one),
/// and live briefly; only a session whose namespace connect was admitted takes one of
/// the `SOCKETIO_MAX_SESSIONS` places. Handshakes alone can then never lock anyone out.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    by_sid: HashMap<String, Entry>,
    /// Anonymous sessions per client address.
    anon_by_addr: HashMap<IpAddr, usize>,
    /// Anonymous sessions' ids, oldest first (may hold ids no longer anonymous).
    anon_order: VecDeque<String>,
    anonymous: usize,
    authenticated: usize,
}

#[derive(Debug)]
struct Entry {
    engine: Arc<Engine>,
    /// The client's address while the session is anonymous.
    anon: Option<IpAddr>,
}

/// Why a handshake was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Busy {
    /// The address has `SOCKETIO_ANON_PER_ADDRESS` anonymous sessions already.
    Address,
}

impl Table {
    /// Takes an anonymous session out of the anonymous counts.
    fn unanonymize(&mut self, addr: IpAddr) {
        self.anonymous = self.anonymous.saturating_sub(1);
        if let Some(n) = self.anon_by_addr.get_mut(&addr) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.anon_by_addr.remove(&addr);
            }
        }
    }

    /// Closes the oldest anonymous session; `false` when there is none.
    fn evict_oldest(&mut self) -> bool {
        while let Some(sid) = self.anon_order.pop_front() {
            let anon = self.by_sid.get(&sid).and_then(|e| e.anon);
            if let Some(addr) = anon
                && let Some(entry) = self.by_sid.remove(&sid)
            {
                self.unanonymize(addr);
                entry.engine.end("closed to make room for a newer anonymous session");
                return true;
            }
        }
        false
    }
}

impl Sessions {
    /// A new anonymous session of a client at `addr`.
    pub(crate) fn create(
        &self,
        transport: Transport,
        addr: IpAddr,
        cfg: &SocketIoConfig,
    ) -> Result<(Arc<Engine>, mpsc::Receiver<Incoming>), Busy> {
        let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if t.anon_by_addr.get(&addr).copied().unwrap_or(0) >= cfg.anon_per_address {
            return Err(Busy::Address);
        }
        while t.anonymous >= cfg.max_anonymous.max(1) && t.evict_oldest() {}
        if t.anon_order.len() > 2 * t.anonymous + 64 {
            let Table { anon_order, by_sid, .. } = &mut *t;
            anon_order.retain(|sid| by_sid.get(sid).is_some_and(|e| e.anon.is_some()));
        }
        let (engine, incoming) = Engine::new(new_sid(), transport);
        t.by_sid.insert(engine.sid.clone(), Entry { engine: engine.clone(), anon: Some(addr) });
        t.anon_order.push_back(engine.sid.clone());
        t.anonymous += 1;
        *t.anon_by_addr.entry(addr).or_default() += 1;
        Ok((engine, incoming))
    }

    /// The session's namespace connect was admitted: it leaves the anonymous table for
    /// one of the `max` authenticated places. `false` when they are all taken (or the
    /// session is gone).
    pub(crate) fn authenticate(&self, sid: &str, max: usize) -> bool {
        let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let authenticated = t.authenticated;
        let Some(entry) = t.by_sid.get_mut(sid) else { return false };
        let Some(addr) = entry.anon else { return true };
        if authenticated >= max {
            return false;
        }
        entry.anon = None;
        t.unanonymize(addr);
        t.authenticated += 1;
        true
    }

    pub(crate) fn get(&self, sid: &str) -> Option<Arc<Engine>> {
        self.table.lock().ok().and_then(|t| t.by_sid.get(sid).map(|e| e.engine.clone()))
    }

    pub(crate) fn remove(&self, sid: &str) {
        let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        match t.by_sid.remove(sid) {
            Some(Entry { anon: Some(addr), .. }) => t.unanonymize(addr),
            Some(Entry { anon: None, .. }) => t.authenticated = t.authenticated.saturating_sub(1),
            None => {}
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

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    fn addr(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
    }

    #[test]
    fn anonymous_sessions_are_bounded_apart_from_authenticated_ones() -> Result<(), String> {
        let cfg = SocketIoConfig { max_sessions: 1, max_anonymous: 3, anon_per_address: 2, ..Default::default() };
        let sessions = Sessions::default();
        let open = |n| sessions.create(Transport::Polling, addr(n), &cfg).map(|(e, _)| e.sid.clone());
        let first = open(1).map_err(|e| format!("{e:?}"))?;
        open(1).map_err(|e| format!("{e:?}"))?;
        assert_eq!(open(1).err(), Some(Busy::Address), "a third from one address");
        open(2).map_err(|e| format!("{e:?}"))?;
        // The anonymous table is full: the oldest makes room.
        open(3).map_err(|e| format!("{e:?}"))?;
        assert!(sessions.get(&first).is_none(), "the oldest anonymous session was closed");
        let newest = open(4).map_err(|e| format!("{e:?}"))?;
        assert!(sessions.authenticate(&newest, cfg.max_sessions), "an admitted connect leaves the anonymous table");
        let other = open(4).map_err(|e| format!("{e:?}"))?;
        assert!(!sessions.authenticate(&other, cfg.max_sessions), "past SOCKETIO_MAX_SESSIONS");
        sessions.remove(&newest);
        assert!(sessions.authenticate(&other, cfg.max_sessions), "a place given back");
        Ok(())
    }
}
