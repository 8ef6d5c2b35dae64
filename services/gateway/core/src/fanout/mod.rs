//! The gateway's sockets and the events that reach them.
//!
//! - [`Hub`]: the registry — sockets by room and by user, with the dialect each speaks
//!   — and the subscriptions that exist because of them: one per room
//!   (`<p>.evt.<tenant>.<room>.>`) and one per tenant for user events, each only while
//!   this gateway has a socket there (interest-based routing: NATS decides which
//!   gateways get what). Also the gateway's presence lease.
//! - `room`: one task per room: decode each event once, put messages in `seq` order
//!   (`order`), render once per dialect, offer to every socket.
//! - `users`: one task per tenant routing user events to that user's sockets.
//! - `presence`: what the gateway tells presence of its sockets — each one announced
//!   and announced gone, the gateway's lease, and announcing again what presence does
//!   not know (a failed announcement, or presence asking after its Redis lost sockets).
//! - `blocks`: each user's blocks, which the room tasks apply per socket (a blocked
//!   user's typing and presence, and with `hide_in_groups` their messages, never reach
//!   the blocker).
//! - `receipts`: delivered receipts the gateway records itself, batched per gateway.
//! - `sockets`: a registered socket, a room's sockets, and offering an event to many
//!   sockets rendered once per codec (what the registry and the tasks share).
//!
//! Offering never waits: a socket whose bounded queue is full is kicked (closed with a
//! retryable code; it resumes by `seq`) and never slows the others.

pub mod blocks;
mod order;
mod presence;
pub mod receipts;
mod room;
mod sockets;
mod users;

pub use sockets::Kick;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use chat_bus::Bus;
use chat_domain::ids::{GatewayId, RoomId, TenantId, UserId};
use chat_domain::model::Actor;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::fanout::blocks::BlockSet;
use crate::fanout::sockets::{RoomShared, Socket, UserBlocks, UserSockets};
use crate::session::codec::Codec;
use crate::session::queue;

struct RoomEntry {
    shared: Arc<RoomShared>,
    task: JoinHandle<()>,
}

/// A tenant's user events while this gateway has sockets of that tenant.
struct TenantEntry {
    users: Arc<RwLock<UserSockets>>,
    /// The block set of each user in `users` (the user task applies their changes).
    blocks: Arc<RwLock<UserBlocks>>,
    task: JoinHandle<()>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct RoomKey {
    tenant: TenantId,
    room: RoomId,
}

/// A socket's registration: its id, its queue, and its kick switch.
pub struct Joined {
    pub id: u64,
    pub conn_id: String,
    /// The session's end of the socket's queue.
    pub outlet: queue::Outlet,
    /// The connection's end (its response body reads it).
    pub receiver: queue::Receiver,
    pub kick: Arc<Kick>,
    /// Whether presence knows the socket (set by [`Hub::announce`]).
    pub announced: Arc<AtomicBool>,
    /// The user's blocks (whose presence the greeting leaves out).
    pub blocks: Arc<BlockSet>,
}

/// All sockets of this gateway.
pub struct Hub {
    bus: Bus,
    /// Names this gateway's presence lease and prefixes its sockets' ids.
    pub gateway_id: GatewayId,
    /// Bound of each socket's queue.
    queue: usize,
    /// How long each room holds arrivals and departures to coalesce them.
    presence_window: std::time::Duration,
    /// The next socket's id (ids only grow: a room task tells by it which sockets
    /// were there when a presence change arrived).
    next: Arc<AtomicU64>,
    rooms: Mutex<HashMap<RoomKey, RoomEntry>>,
    /// Per-tenant subscriptions (`<p>.user.<tenant>.>`) while the tenant has sockets
    /// here. One per tenant rather than one per user: an idle socket should not cost a
    /// subscription (and its buffers).
    tenants: Mutex<HashMap<TenantId, TenantEntry>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("gateway_id", &self.gateway_id).finish()
    }
}

impl Hub {
    /// `queue` bounds each socket's outgoing frames; each room holds arrivals and
    /// departures for `presence_window` to coalesce them (zero: sent at once).
    pub fn new(bus: Bus, gateway_id: GatewayId, queue: usize, presence_window: std::time::Duration) -> Self {
        Self {
            bus,
            gateway_id,
            queue,
            presence_window,
            next: Arc::new(AtomicU64::new(1)),
            rooms: Mutex::default(),
            tenants: Mutex::default(),
        }
    }

    /// Registers a socket of `actor` in `room` speaking `codec`, subscribing to the
    /// room if this is its first socket here. `last_seq` is the room's `seq` as the
    /// caller saw it (where the room's ordering starts).
    pub async fn join(
        self: &Arc<Self>,
        actor: &Actor,
        room: &RoomId,
        codec: &'static dyn Codec,
        user_name: Option<&str>,
        last_seq: i64,
    ) -> anyhow::Result<Joined> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn_id = format!("{}-{id}", self.gateway_id);
        let (tx, outlet, receiver) = queue::bounded(self.queue);
        let kick = Arc::new(Kick::default());
        let announced = Arc::new(AtomicBool::new(false));
        // The user's block set first: registered with the user (so their block changes
        // reach it from now on), then read, before any room event can reach the socket.
        let blocks = {
            let mut tenants = self.tenants.lock().await;
            if !tenants.contains_key(&actor.tenant_id) {
                let subject = self.bus.subjects().tenant_user_events(&actor.tenant_id);
                let sub = self.bus.client().subscribe(subject).await?;
                let users = Arc::new(RwLock::new(HashMap::new()));
                let blocks = Arc::new(RwLock::new(HashMap::new()));
                let task = tokio::spawn(users::run(self.bus.subjects().clone(), users.clone(), blocks.clone(), sub));
                tenants.insert(actor.tenant_id.clone(), TenantEntry { users, blocks, task });
            }
            let entry = tenants.get(&actor.tenant_id).ok_or_else(|| anyhow::anyhow!("tenant entry vanished"))?;
            let blocks = match entry.blocks.write() {
                Ok(mut b) => b.entry(actor.user_id.clone()).or_default().clone(),
                Err(_) => anyhow::bail!("poisoned block sets"),
            };
            let socket = Socket {
                user: actor.user_id.clone(),
                codec,
                tx: tx.clone(),
                kick: kick.clone(),
                announced: announced.clone(),
                blocks: blocks.clone(),
            };
            if let Ok(mut users) = entry.users.write() {
                users.entry(actor.user_id.clone()).or_default().insert(id, socket);
            }
            blocks
        };
        if let Err(e) = blocks.load(&self.bus, actor).await {
            self.leave(&actor.tenant_id, room, &actor.user_id, id).await;
            return Err(e);
        }
        let socket = Socket {
            user: actor.user_id.clone(),
            codec,
            tx,
            kick: kick.clone(),
            announced: announced.clone(),
            blocks: blocks.clone(),
        };
        let key = RoomKey { tenant: actor.tenant_id.clone(), room: room.clone() };
        {
            let mut rooms = self.rooms.lock().await;
            if !rooms.contains_key(&key) {
                let subject = self.bus.subjects().room_events(&actor.tenant_id, room);
                let sub = match self.bus.client().subscribe(subject).await {
                    Ok(sub) => sub,
                    Err(e) => {
                        // Registered with the user already: undo that.
                        drop(rooms);
                        self.leave(&actor.tenant_id, room, &actor.user_id, id).await;
                        return Err(e.into());
                    }
                };
                let shared = Arc::new(RoomShared::default());
                let task = room::RoomTask::spawn(
                    self.bus.clone(),
                    shared.clone(),
                    sub,
                    actor.tenant_id.clone(),
                    room.clone(),
                    last_seq,
                    self.presence_window,
                    self.next.clone(),
                );
                rooms.insert(key.clone(), RoomEntry { shared, task });
            }
            if let Some(entry) = rooms.get(&key) {
                if let Some(n) = user_name
                    && let Ok(mut names) = entry.shared.names.write()
                {
                    names.insert(actor.user_id.clone(), n.to_owned());
                }
                if let Ok(mut sockets) = entry.shared.sockets.write() {
                    sockets.insert(id, socket);
                }
            }
        }
        Ok(Joined { id, conn_id, outlet, receiver, kick, announced, blocks })
    }

    /// Removes a socket; the room's (and tenant's) subscription ends with its last socket.
    pub async fn leave(&self, tenant: &TenantId, room: &RoomId, user: &UserId, id: u64) {
        {
            let mut tenants = self.tenants.lock().await;
            let empty = match tenants.get(tenant) {
                Some(entry) => match entry.users.write() {
                    Ok(mut users) => {
                        if let Some(sockets) = users.get_mut(user) {
                            sockets.remove(&id);
                            if sockets.is_empty() {
                                users.remove(user);
                                if let Ok(mut blocks) = entry.blocks.write() {
                                    blocks.remove(user);
                                }
                            }
                        }
                        users.is_empty()
                    }
                    Err(_) => true,
                },
                None => false,
            };
            if empty && let Some(entry) = tenants.remove(tenant) {
                entry.task.abort();
            }
        }
        let key = RoomKey { tenant: tenant.clone(), room: room.clone() };
        let mut rooms = self.rooms.lock().await;
        let empty = match rooms.get(&key) {
            Some(entry) => match entry.shared.sockets.write() {
                Ok(mut s) => {
                    s.remove(&id);
                    s.is_empty()
                }
                Err(_) => true,
            },
            None => false,
        };
        if empty && let Some(entry) = rooms.remove(&key) {
            entry.task.abort();
        }
    }

    /// Sockets open on this gateway.
    pub async fn socket_count(&self) -> usize {
        let rooms = self.rooms.lock().await;
        rooms.values().map(|r| r.shared.sockets.read().map(|s| s.len()).unwrap_or(0)).sum()
    }
}
