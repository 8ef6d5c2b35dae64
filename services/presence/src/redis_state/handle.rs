//! The handle on one bus prefix's presence keys ([`State`]), the timings every replica
//! must share ([`Timing`]), the clock, and how keys and members are spelled. Each kind
//! of change or question is an `impl State` of its own next to this one; they all
//! build their keys here, so the layout is spelled in one place (and in `lua.rs`).

use std::sync::Arc;

use chat_domain::ids::{RoomId, TenantId};
use chrono::Utc;
use redis::aio::ConnectionManager;

use crate::lua::Scripts;

/// Separates the parts of a member (cannot occur in any id).
pub(super) const SEP: char = '\u{1f}';

/// Most sockets one lease-expiry script closes; a gateway with more takes several
/// calls, so Redis is never blocked for long.
const LEASE_CHUNK: usize = 1_000;

/// Most expired sockets one sweep of a room removes; a room with more stays due and
/// is swept again on the next tick.
const SWEEP_CHUNK: usize = 2_000;

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
    pub(super) redis: ConnectionManager,
    /// `<p>:pr:`.
    pub(super) prefix: Arc<str>,
    pub(super) timing: Timing,
    pub(super) scripts: Arc<Scripts>,
    /// [`LEASE_CHUNK`] and [`SWEEP_CHUNK`] (smaller in tests).
    pub(super) chunks: (usize, usize),
}

impl State {
    pub fn new(redis: ConnectionManager, bus_prefix: &str, timing: Timing) -> Self {
        Self {
            redis,
            prefix: format!("{bus_prefix}:pr:").into(),
            timing,
            scripts: Arc::new(Scripts::new()),
            chunks: (LEASE_CHUNK, SWEEP_CHUNK),
        }
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
