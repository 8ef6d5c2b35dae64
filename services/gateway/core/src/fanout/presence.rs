//! What the gateway tells presence about its sockets. Each socket is announced
//! (`connect`, answered with who is online) and announced gone (a `disconnect`
//! signal); the gateway renews one lease for all of them. Presence keeps this in Redis,
//! which can lose it (a restart without persistence, a failover to a replica that had
//! not received the last writes), and an announcement can fail (presence unreachable
//! when the socket opened). The gateway holds the truth, so it announces again:
//!
//! - on every lease tick, each socket whose announcement has not been answered;
//! - when presence asks (`<p>.gateway.<gw>.resync`, sent when presence receives a
//!   lease it holds no lease for, or after its Redis came back), every socket.
//!
//! Announcing again is batched: up to `MAX_CONNECT_MANY` sockets per `connect_many`
//! request (one Redis call in presence), so a gateway with big rooms pays per batch,
//! not a request per socket.
//!
//! A socket that closes while it is being announced again is announced gone once
//! more after the answer, so presence never keeps a socket that is not there.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chat_domain::ApiError;
use chat_domain::ids::{RoomId, TenantId, UserId};
use chat_domain::proto::presence::{
    ConnRef, Connect, ConnectMany, Connected, DisconnectSignal, GatewayLease, MAX_CONNECT_MANY, SocketOpen,
};
use futures_util::StreamExt as _;

use crate::fanout::{Hub, RoomKey};

/// Batches of announcements in flight at once when announcing again.
const REANNOUNCE_CONCURRENCY: usize = 4;

/// One socket to announce again.
struct Pending {
    key: RoomKey,
    id: u64,
    user: UserId,
    user_name: Option<String>,
    announced: Arc<std::sync::atomic::AtomicBool>,
}

impl Hub {
    /// The socket `id` of `user`'s in `room` (`conn_id` in presence).
    fn conn_id(&self, id: u64) -> String {
        format!("{}-{id}", self.gateway_id)
    }

    /// Tells presence that socket `conn_id` of `user` is in `room`; who is online there
    /// (in a big room, only a count: see [`Connected`]).
    pub async fn announce(
        &self,
        tenant: &TenantId,
        room: &RoomId,
        user: &UserId,
        user_name: Option<String>,
        conn_id: &str,
    ) -> Result<Connected, ApiError> {
        let connect = Connect {
            tenant_id: tenant.clone(),
            room_id: room.clone(),
            user_id: user.clone(),
            user_name,
            gateway_id: self.gateway_id.clone(),
            conn_id: conn_id.to_owned(),
        };
        self.bus.request(&connect).await
    }

    /// Tells presence that socket `conn_id` of `user` left `room`, without waiting.
    pub async fn announce_gone(&self, tenant: &TenantId, room: &RoomId, user: &UserId, conn_id: String) {
        let signal = DisconnectSignal {
            tenant_id: tenant.clone(),
            room_id: room.clone(),
            conn: ConnRef { user_id: user.clone(), conn_id },
        };
        let subject = self.bus.subjects().presence(tenant, room, chat_bus::subjects::PresenceSignal::Disconnect);
        if let Ok(payload) = serde_json::to_vec(&signal) {
            let _ = self.bus.publish(subject, payload.into()).await;
        }
    }

    /// Announces again the sockets presence may not know: every socket when `all`
    /// (presence asked), else those whose announcement was never answered.
    pub async fn reannounce(&self, all: bool) {
        let pending: Vec<Pending> = {
            let rooms = self.rooms.lock().await;
            let mut out = Vec::new();
            for (key, entry) in rooms.iter() {
                let Ok(sockets) = entry.shared.sockets.read() else { continue };
                let names = entry.shared.names.read().ok();
                for (id, socket) in sockets.iter() {
                    if all {
                        socket.announced.store(false, Ordering::SeqCst);
                    } else if socket.announced.load(Ordering::SeqCst) {
                        continue;
                    }
                    out.push(Pending {
                        key: key.clone(),
                        id: *id,
                        user: socket.user.clone(),
                        user_name: names.as_ref().and_then(|n| n.get(&socket.user).cloned()),
                        announced: socket.announced.clone(),
                    });
                }
            }
            out
        };
        if pending.is_empty() {
            return;
        }
        tracing::info!(sockets = pending.len(), all, "announcing sockets to presence again");
        let batches: Vec<Vec<Pending>> = {
            let mut batches = Vec::new();
            let mut rest = pending.into_iter().peekable();
            while rest.peek().is_some() {
                batches.push(rest.by_ref().take(MAX_CONNECT_MANY).collect());
            }
            batches
        };
        futures_util::stream::iter(batches)
            .for_each_concurrent(REANNOUNCE_CONCURRENCY, |batch| async move {
                let cmd = ConnectMany {
                    gateway_id: self.gateway_id.clone(),
                    sockets: batch
                        .iter()
                        .map(|p| SocketOpen {
                            tenant_id: p.key.tenant.clone(),
                            room_id: p.key.room.clone(),
                            user_id: p.user.clone(),
                            user_name: p.user_name.clone(),
                            conn_id: self.conn_id(p.id),
                        })
                        .collect(),
                };
                match self.bus.request(&cmd).await {
                    Ok(_) => {
                        for p in batch {
                            p.announced.store(true, Ordering::SeqCst);
                            // Closed meanwhile: its own `disconnect` may have reached
                            // presence before this `connect`; say it again, after.
                            if !self.has_socket(&p.key, p.id).await {
                                self.announce_gone(&p.key.tenant, &p.key.room, &p.user, self.conn_id(p.id)).await;
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "presence unavailable; the sockets are announced again later"),
                }
            })
            .await;
    }

    /// Whether socket `id` is still registered in `key`'s room.
    async fn has_socket(&self, key: &RoomKey, id: u64) -> bool {
        let rooms = self.rooms.lock().await;
        rooms.get(key).is_some_and(|r| r.shared.sockets.read().is_ok_and(|s| s.contains_key(&id)))
    }

    /// Renews this gateway's presence lease every `every` (its sockets live as long
    /// as it: one signal per gateway, however many sockets) and announces again what
    /// presence may not know (see the module documentation), until the task is dropped.
    pub async fn leases(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let subject = self.bus.subjects().gateway_lease(&self.gateway_id);
        let ttl_ms = u64::try_from((every * 3).as_millis()).unwrap_or(u64::MAX);
        let mut resyncs = match self.bus.client().subscribe(self.bus.subjects().gateway_resync(&self.gateway_id)).await
        {
            Ok(sub) => Some(sub),
            Err(e) => {
                tracing::warn!(error = %e, "not following presence's resync requests");
                None
            }
        };
        loop {
            let all = tokio::select! {
                _ = tick.tick() => false,
                Some(_) = async {
                    match resyncs.as_mut() {
                        Some(sub) => sub.next().await,
                        None => std::future::pending().await,
                    }
                } => true,
            };
            if !all {
                let lease = GatewayLease { gateway_id: self.gateway_id.clone(), ttl_ms };
                if let Ok(payload) = serde_json::to_vec(&lease)
                    && let Err(e) = self.bus.publish(subject.clone(), payload.into()).await
                {
                    tracing::warn!(error = %e, "presence lease renewal failed");
                }
            }
            self.reannounce(all).await;
        }
    }
}
