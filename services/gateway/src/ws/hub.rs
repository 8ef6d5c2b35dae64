//! The gateway's socket registry and fan-out.
//!
//! A room gets one NATS subscription (`<p>.evt.<tenant>.<room>.>`) while this gateway
//! has a socket in it — interest-based routing: NATS decides which gateways get what.
//! One task per room turns each event into a frame once and offers the same bytes to
//! every socket's bounded queue. A socket whose queue is full is kicked (closed with
//! a retryable code) and never slows the others.
//!
//! Messages are delivered in `seq` order without gaps: events can reach the bus out
//! of order (several message-store replicas publish concurrently), so the room task
//! holds early ones back briefly and fills a persisting gap from message-store.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chat_bus::Bus;
use chat_domain::ids::{GatewayId, RoomId, TenantId, UserId};
use chat_domain::model::{Actor, Message};
use chat_domain::proto::events::{RoomEvent, RoomEventBody, UserEvent, UserEventBody};
use chat_domain::proto::presence::{ConnRef, GatewayLease};
use chat_domain::proto::store::ListMessages;
use futures_util::StreamExt as _;
use serde_json::json;
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;

use super::frames::{self, Out};
use super::queue;

/// How long an out-of-order message waits for the ones before it before the gap is
/// filled from message-store.
const GAP_WAIT: Duration = Duration::from_millis(250);

/// Close code for a socket that could not keep up: retryable; resume by `seq`.
pub const CLOSE_SLOW: u16 = 1013;
/// Close code for a member removed from the room (ws-rooms: room access denied).
pub const CLOSE_NO_ACCESS: u16 = 4003;

/// Tells a socket's session to close, from outside its task.
#[derive(Debug, Default)]
pub struct Kick {
    notify: Notify,
    code: AtomicU16,
    kicked: AtomicBool,
}

impl Kick {
    /// Asks the session to close with `code` (the first reason wins).
    pub fn kick(&self, code: u16) {
        if !self.kicked.swap(true, Ordering::SeqCst) {
            self.code.store(code, Ordering::SeqCst);
            self.notify.notify_one();
        }
    }

    /// Resolves with the close code once kicked.
    pub async fn kicked(&self) -> u16 {
        self.notify.notified().await;
        self.code.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct Socket {
    user: UserId,
    conn_id: String,
    tx: queue::Sender,
    kick: Arc<Kick>,
}

/// What the room task shares with sessions.
#[derive(Default)]
struct RoomShared {
    sockets: RwLock<HashMap<u64, Socket>>,
    /// Display names of users with sockets here, for `sender_name`.
    names: RwLock<HashMap<UserId, String>>,
}

struct RoomEntry {
    shared: Arc<RoomShared>,
    task: JoinHandle<()>,
}

/// Sockets by user, then by socket id.
type UserSockets = HashMap<UserId, HashMap<u64, Socket>>;

/// A tenant's user events while this gateway has sockets of that tenant.
struct TenantEntry {
    users: Arc<RwLock<UserSockets>>,
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
    pub rx: queue::Receiver,
    pub kick: Arc<Kick>,
}

/// All sockets of this gateway, by room.
pub struct Hub {
    bus: Bus,
    pub gateway_id: GatewayId,
    queue: usize,
    next: AtomicU64,
    rooms: Mutex<HashMap<RoomKey, RoomEntry>>,
    /// Per-tenant subscriptions (`<p>.user.<tenant>.>`) while the tenant has sockets
    /// here, routing user events to that user's sockets. One per tenant rather than
    /// one per user: an idle socket should not cost a subscription (and its buffers).
    tenants: Mutex<HashMap<TenantId, TenantEntry>>,
    /// Sockets kicked because their queue was full.
    pub slow_kicks: AtomicU64,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("gateway_id", &self.gateway_id).finish()
    }
}

impl Hub {
    /// `queue` bounds each socket's outgoing frames.
    pub fn new(bus: Bus, gateway_id: GatewayId, queue: usize) -> Self {
        Self {
            bus,
            gateway_id,
            queue,
            next: AtomicU64::new(1),
            rooms: Mutex::default(),
            tenants: Mutex::default(),
            slow_kicks: AtomicU64::new(0),
        }
    }

    /// Registers a socket of `actor` in `room`, subscribing to the room if this is
    /// its first socket here. `last_seq` is the room's `seq` as the caller saw it.
    pub async fn join(
        self: &Arc<Self>,
        actor: &Actor,
        room: &RoomId,
        user_name: Option<&str>,
        last_seq: i64,
    ) -> anyhow::Result<Joined> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn_id = format!("{}-{id}", self.gateway_id);
        let (tx, rx) = queue::bounded(self.queue);
        let kick = Arc::new(Kick::default());
        let key = RoomKey { tenant: actor.tenant_id.clone(), room: room.clone() };
        let mut rooms = self.rooms.lock().await;
        if !rooms.contains_key(&key) {
            let subject = self.bus.subjects().room_events(&actor.tenant_id, room);
            let sub = self.bus.client().subscribe(subject).await?;
            let shared = Arc::new(RoomShared::default());
            let task =
                tokio::spawn(room_task(self.clone(), shared.clone(), sub, actor.clone(), room.clone(), last_seq));
            rooms.insert(key.clone(), RoomEntry { shared, task });
        }
        let socket = Socket { user: actor.user_id.clone(), conn_id: conn_id.clone(), tx, kick: kick.clone() };
        if let Some(entry) = rooms.get(&key) {
            if let Some(n) = user_name
                && let Ok(mut names) = entry.shared.names.write()
            {
                names.insert(actor.user_id.clone(), n.to_owned());
            }
            if let Ok(mut sockets) = entry.shared.sockets.write() {
                sockets.insert(id, socket.clone());
            }
        }
        drop(rooms);
        let mut tenants = self.tenants.lock().await;
        if !tenants.contains_key(&actor.tenant_id) {
            let subject = self.bus.subjects().tenant_user_events(&actor.tenant_id);
            let sub = self.bus.client().subscribe(subject.clone()).await?;
            let users = Arc::new(RwLock::new(HashMap::new()));
            // Subjects are `<p>.user.<tenant>.<user>.<kind>`: the user follows this.
            let before_user = subject.trim_end_matches('>').to_owned();
            let task = tokio::spawn(user_task(self.clone(), users.clone(), sub, before_user));
            tenants.insert(actor.tenant_id.clone(), TenantEntry { users, task });
        }
        if let Some(entry) = tenants.get(&actor.tenant_id)
            && let Ok(mut users) = entry.users.write()
        {
            users.entry(actor.user_id.clone()).or_default().insert(id, socket);
        }
        Ok(Joined { id, conn_id, rx, kick })
    }

    /// Removes a socket; the room's (and user's) subscription ends with its last socket.
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

    /// Kicks every socket with `code` (graceful shutdown does its own frames first).
    pub async fn rooms_with_sockets(&self) -> Vec<(TenantId, RoomId, Vec<ConnRef>)> {
        let rooms = self.rooms.lock().await;
        rooms
            .iter()
            .map(|(k, r)| {
                let conns = r
                    .shared
                    .sockets
                    .read()
                    .map(|s| {
                        s.values().map(|s| ConnRef { user_id: s.user.clone(), conn_id: s.conn_id.clone() }).collect()
                    })
                    .unwrap_or_default();
                (k.tenant.clone(), k.room.clone(), conns)
            })
            .collect()
    }

    /// Renews this gateway's presence lease every `every` (its sockets live as long
    /// as it), until the task is dropped.
    pub async fn leases(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let subject = self.bus.subjects().gateway_lease(&self.gateway_id);
        let ttl_ms = u64::try_from((every * 3).as_millis()).unwrap_or(u64::MAX);
        loop {
            tick.tick().await;
            let lease = GatewayLease { gateway_id: self.gateway_id.clone(), ttl_ms };
            if let Ok(payload) = serde_json::to_vec(&lease)
                && let Err(e) = self.bus.publish(subject.clone(), payload.into()).await
            {
                tracing::warn!(error = %e, "presence lease renewal failed");
            }
        }
    }

    fn offer(&self, shared: &RoomShared, out: &Out, only: impl Fn(&Socket) -> bool) {
        let Ok(sockets) = shared.sockets.read() else { return };
        self.offer_to(sockets.values().filter(|s| only(s)), out);
    }

    fn offer_to_user(&self, users: &RwLock<UserSockets>, user: &UserId, out: &Out) {
        let Ok(users) = users.read() else { return };
        if let Some(sockets) = users.get(user) {
            self.offer_to(sockets.values(), out);
        }
    }

    fn offer_to<'a>(&self, sockets: impl Iterator<Item = &'a Socket>, out: &Out) {
        for socket in sockets {
            match socket.tx.offer(out.clone()) {
                Ok(()) | Err(queue::Refused::Closed) => {}
                Err(queue::Refused::Full) => {
                    self.slow_kicks.fetch_add(1, Ordering::Relaxed);
                    crate::metrics::SLOW_KICKS.inc();
                    socket.kick.kick(CLOSE_SLOW);
                }
            }
        }
    }
}

/// One room's fan-out: reorder messages by `seq`, render every event once, offer it
/// to every socket.
async fn room_task(
    hub: Arc<Hub>,
    shared: Arc<RoomShared>,
    mut sub: async_nats::Subscriber,
    actor: Actor,
    room: RoomId,
    last_seq: i64,
) {
    let mut next = last_seq + 1;
    let mut early: BTreeMap<i64, Message> = BTreeMap::new();
    let mut gap_deadline: Option<tokio::time::Instant> = None;
    let name_of = |user: &UserId| shared.names.read().ok().and_then(|n| n.get(user).cloned());
    loop {
        let event = tokio::select! {
            msg = sub.next() => match msg {
                Some(msg) => match serde_json::from_slice::<RoomEvent>(&msg.payload) {
                    Ok(e) => Some(e),
                    Err(e) => {
                        tracing::warn!(error = %e, subject = %msg.subject, "undecodable room event");
                        None
                    }
                },
                None => break,
            },
            _ = async {
                match gap_deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending::<()>().await,
                }
            } => {
                // A gap persisted: read what is missing from the store.
                let fetched = hub
                    .bus
                    .request(&ListMessages { actor: actor.clone(), room_id: room.clone(), after_seq: Some(next - 1), before_seq: None, limit: 100 })
                    .await;
                match fetched {
                    Ok(messages) => {
                        for m in messages {
                            early.entry(m.seq).or_insert(m);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "could not fill a seq gap"),
                }
                // Whatever is still missing is not coming: skip to what we have.
                if !early.contains_key(&next) && let Some((&first, _)) = early.iter().next() {
                    next = first;
                }
                gap_deadline = None;
                None
            }
        };
        if let Some(event) = event {
            let kind = event.body.kind();
            match event.body {
                RoomEventBody::MessageCreated(m) => {
                    if m.seq >= next {
                        early.insert(m.seq, m);
                    }
                }
                RoomEventBody::PresenceJoined(p) => {
                    let data = json!({
                        "user_id": p.user_id.as_str(),
                        "user_name": p.user_name.clone().unwrap_or_else(|| p.user_id.to_string()),
                        "joined_at": chat_domain::time::format(&event.occurred_at),
                        "meta": {},
                    });
                    let out = Out { seq: None, text: frames::envelope("user_joined", data, Some(&room)) };
                    hub.offer(&shared, &out, |s| s.user != p.user_id);
                }
                RoomEventBody::PresenceLeft(p) => {
                    let data = json!({
                        "user_id": p.user_id.as_str(),
                        "user_name": p.user_name.clone().unwrap_or_else(|| p.user_id.to_string()),
                        "left_at": chat_domain::time::format(&event.occurred_at),
                    });
                    let out = Out { seq: None, text: frames::envelope("user_left", data, Some(&room)) };
                    hub.offer(&shared, &out, |s| s.user != p.user_id);
                }
                RoomEventBody::Typing(t) => {
                    let data = json!({
                        "user_id": t.user_id.as_str(),
                        "user_name": t.user_name.clone().unwrap_or_else(|| t.user_id.to_string()),
                        "is_typing": t.is_typing,
                    });
                    let out = Out { seq: None, text: frames::envelope("typing", data, Some(&room)) };
                    hub.offer(&shared, &out, |s| s.user != t.user_id);
                }
                RoomEventBody::Delivered(c) | RoomEventBody::Read(c) => {
                    let data = json!({
                        "user_id": c.user_id.as_str(),
                        "seq": c.seq,
                        "at": chat_domain::time::format(&event.occurred_at),
                    });
                    let out = Out { seq: None, text: frames::envelope(kind, data, Some(&room)) };
                    hub.offer(&shared, &out, |s| s.user != c.user_id);
                }
                RoomEventBody::MessageUpdated(u) => {
                    let data = json!({
                        "id": u.message_id.as_str(),
                        "seq": u.seq,
                        "content": u.content,
                        "edited_at": chat_domain::time::format(&u.edited_at),
                        "edit_reason": u.edit_reason,
                    });
                    let out = Out { seq: None, text: frames::envelope("message_updated", data, Some(&room)) };
                    hub.offer(&shared, &out, |_| true);
                }
                RoomEventBody::MessageDeleted(d) => {
                    let data = json!({
                        "id": d.message_id.as_str(),
                        "seq": d.seq,
                        "deleted_by": d.deleted_by.as_str(),
                        "deleted_at": chat_domain::time::format(&d.deleted_at),
                    });
                    let out = Out { seq: None, text: frames::envelope("message_deleted", data, Some(&room)) };
                    hub.offer(&shared, &out, |_| true);
                }
                RoomEventBody::MemberAdded(_) => {}
                RoomEventBody::MemberRemoved(r) => {
                    if let Ok(sockets) = shared.sockets.read() {
                        for s in sockets.values().filter(|s| s.user == r.user_id) {
                            s.kick.kick(CLOSE_NO_ACCESS);
                        }
                    }
                }
            }
        }
        // Deliver everything that is next in line.
        while let Some(m) = early.remove(&next) {
            let out = frames::message(&m, name_of(&m.sender_id).as_deref());
            hub.offer(&shared, &out, |_| true);
            next += 1;
        }
        if early.is_empty() {
            gap_deadline = None;
        } else if gap_deadline.is_none() {
            gap_deadline = Some(tokio::time::Instant::now() + GAP_WAIT);
        }
    }
}

/// One tenant's user events (on any room), each forwarded to its user's sockets here;
/// events for users with no socket here are dropped before they are decoded.
async fn user_task(
    hub: Arc<Hub>,
    users: Arc<RwLock<UserSockets>>,
    mut sub: async_nats::Subscriber,
    before_user: String,
) {
    while let Some(msg) = sub.next().await {
        let Some(user) = msg.subject.strip_prefix(before_user.as_str()).and_then(|rest| rest.split('.').next()) else {
            continue;
        };
        let here = users.read().is_ok_and(|u| u.contains_key(user));
        if !here {
            continue;
        }
        let event = match serde_json::from_slice::<UserEvent>(&msg.payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, subject = %msg.subject, "undecodable user event");
                continue;
            }
        };
        match event.body {
            UserEventBody::MessageStatus(s) => {
                let data = json!({
                    "room_id": s.room_id.as_str(),
                    "message_ids": s.message_ids,
                    "up_to_seq": s.up_to_seq,
                    "status": s.status,
                    "user_id": s.by.as_str(),
                    "timestamp": chat_domain::time::format(&event.occurred_at),
                });
                let out = Out { seq: None, text: frames::envelope("message_status", data, Some(&s.room_id)) };
                hub.offer_to_user(&users, &event.user_id, &out);
            }
            UserEventBody::Notification(item) => {
                let out = Out { seq: None, text: frames::notification(&item) };
                hub.offer_to_user(&users, &event.user_id, &out);
            }
        }
    }
}
