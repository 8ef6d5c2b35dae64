//! The handle on one bus prefix's presence keys ([`State`]), the timings every replica
//! must share ([`Timing`]), the clock, and how keys and members are spelled. Each kind
//! of change or question is an `impl State` of its own next to this one; they all
//! build their keys here, so the layout is spelled in one place (and in `lua.rs`).

use std::sync::Arc;

use chat_domain::ids::{RoomId, TenantId};
use chat_redis::Redis;
use chrono::Utc;

use crate::lua::Scripts;

/// Separates the parts of a member (cannot occur in any id).
pub(super) const SEP: char = '\u{1f}';

/// Most sockets one lease-expiry script closes; a gateway with more takes several
/// calls, so Redis is never blocked for long.
const LEASE_CHUNK: usize = 1_000;

/// Most expired sockets one sweep of a room removes; a room with more stays due and
/// is swept again on the next tick.
const SWEEP_CHUNK: usize = 2_000;

/// Rooms with more users than this are big unless configured otherwise
/// (`PRESENCE_BIG_ROOM`).
pub const DEFAULT_BIG_ROOM: u64 = 100;

/// The clock, in the unit of every stored time.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// The time settings every replica must agree on.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a closed socket still counts as online.
    pub grace_ms: i64,
    /// Lease given to a gateway that registers a socket before its first lease.
    pub default_lease_ms: i64,
    /// How long ended intervals are kept.
    pub history_ms: i64,
}

/// Handle on the presence keys of one bus prefix.
#[derive(Clone)]
pub struct State {
    pub(super) redis: Redis,
    /// `<p>:pr:`.
    pub(super) prefix: Arc<str>,
    pub(super) timing: Timing,
    pub(super) scripts: Arc<Scripts>,
    /// [`LEASE_CHUNK`] and [`SWEEP_CHUNK`] (smaller in tests).
    pub(super) chunks: (usize, usize),
    /// Replicas a socket's opening or closing must reach before it is acknowledged
    /// (`WAIT`), and how long to wait for them; none by default.
    replicas: Option<(u32, u64)>,
    /// A room with more users than this is big: a socket's `connect` no longer carries
    /// the room's whole list, and arrivals and departures are not announced one by one.
    pub(super) big_room: u64,
}

/// Socket changes acknowledged before as many replicas as asked had them (`WAIT` ran
/// out of time): a Sentinel failover at that moment may lose them.
static UNREPLICATED: std::sync::LazyLock<prometheus::IntCounter> = std::sync::LazyLock::new(|| {
    let c = prometheus::IntCounter::new(
        "chat_presence_unreplicated_writes_total",
        "Socket opens and closes acknowledged before the configured number of Redis replicas had them",
    );
    match c {
        Ok(c) => {
            let _ = prometheus::register(Box::new(c.clone()));
            c
        }
        Err(e) => panic!("metric definition is invalid: {e}"),
    }
});

impl State {
    pub fn new(redis: Redis, bus_prefix: &str, timing: Timing) -> Self {
        Self {
            redis,
            prefix: format!("{bus_prefix}:pr:").into(),
            timing,
            scripts: Arc::new(Scripts::new()),
            chunks: (LEASE_CHUNK, SWEEP_CHUNK),
            replicas: None,
            big_room: DEFAULT_BIG_ROOM,
        }
    }

    /// Rooms with more than `users` users count as big (see [`State::is_big`]).
    pub fn with_big_room(mut self, users: u64) -> Self {
        self.big_room = users;
        self
    }

    /// Whether a room of `users` users is big: its arrivals and departures are not
    /// announced one by one (each would reach every member: O(n²) for n arrivals), and
    /// a connect does not carry its list (read on demand with `online`).
    pub fn is_big(&self, users: u64) -> bool {
        users > self.big_room
    }

    /// Makes every socket opening and closing wait (Redis `WAIT`) until `replicas`
    /// replicas have it, for at most `timeout_ms`, before it is acknowledged. Redis
    /// replicates asynchronously: without this, a change the master acknowledged just
    /// before it died is missing on the replica Sentinel promotes (a user shown
    /// offline while connected, or online for as long as their gateway lives). With
    /// it, what was acknowledged is on the replica that Sentinel promotes (it picks
    /// the one with the most replicated data). `0` turns it off.
    pub fn with_replicas(mut self, replicas: u32, timeout_ms: u64) -> Self {
        self.replicas = (replicas > 0).then_some((replicas, timeout_ms));
        self
    }

    /// Waits for the replicas asked by [`State::with_replicas`] to have every write
    /// made so far on this connection. Running out of time is counted, not an error:
    /// presence keeps working, with a failover's window of loss, when a replica is down.
    pub(super) async fn replicated(&self, r: &mut Redis) -> redis::RedisResult<()> {
        let Some((replicas, timeout_ms)) = self.replicas else { return Ok(()) };
        let acked: u32 = redis::cmd("WAIT").arg(replicas).arg(timeout_ms).query_async(r).await?;
        if acked < replicas {
            UNREPLICATED.inc();
        }
        Ok(())
    }

    /// The lease of a gateway that has not renewed one yet (ms).
    pub fn default_lease_ms(&self) -> i64 {
        self.timing.default_lease_ms
    }

    /// Must match `key` in `lua.rs`.
    pub(super) fn key(&self, kind: &str, tenant: &TenantId, room: &RoomId) -> String {
        format!("{}{kind}:{tenant}:{room}", self.prefix)
    }

    pub(super) fn tenant_key(&self, tenant: &TenantId) -> String {
        format!("{}tenant:{tenant}", self.prefix)
    }

    pub(super) fn global(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}
