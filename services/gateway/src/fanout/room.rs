//! One room's fan-out task, alive while this gateway has a socket in the room: it
//! decodes each event of the room's subscription once, puts messages in `seq` order
//! (filling a lasting gap from message-store, as a service rather than as any user),
//! renders each event once per dialect and offers it to every socket.

use std::sync::Arc;

use chat_bus::Bus;
use chat_domain::ids::{RoomId, TenantId, UserId};
use chat_domain::model::Message;
use chat_domain::proto::events::{RoomEvent, RoomEventBody};
use chat_domain::proto::store::RoomMessages;
use futures_util::StreamExt as _;
use tokio::task::JoinHandle;

use super::order::Reorder;
use super::{RoomShared, offer};
use crate::session::codec::Close;

/// Most messages read per gap fill.
const GAP_FILL: u32 = 500;

/// A room's fan-out.
pub struct RoomTask {
    bus: Bus,
    shared: Arc<RoomShared>,
    sub: async_nats::Subscriber,
    tenant: TenantId,
    room: RoomId,
    order: Reorder,
}

impl RoomTask {
    /// Starts the task for a room whose newest message was `last_seq` when its first
    /// socket here joined.
    pub fn spawn(
        bus: Bus,
        shared: Arc<RoomShared>,
        sub: async_nats::Subscriber,
        tenant: TenantId,
        room: RoomId,
        last_seq: i64,
    ) -> JoinHandle<()> {
        let task = Self { bus, shared, sub, tenant, room, order: Reorder::after(last_seq) };
        tokio::spawn(task.run())
    }

    async fn run(mut self) {
        loop {
            let gap = self.order.gap_deadline();
            tokio::select! {
                msg = self.sub.next() => match msg {
                    Some(msg) => match serde_json::from_slice::<RoomEvent>(&msg.payload) {
                        Ok(event) => self.event(event),
                        Err(e) => tracing::warn!(error = %e, subject = %msg.subject, "undecodable room event"),
                    },
                    None => break,
                },
                () = sleep_until(gap) => self.fill_gap().await,
            }
            for m in self.order.ready() {
                self.deliver(&m);
            }
        }
    }

    /// Reads what a lasting gap is missing from message-store.
    async fn fill_gap(&mut self) {
        let cmd = RoomMessages {
            tenant_id: self.tenant.clone(),
            room_id: self.room.clone(),
            after_seq: self.order.delivered(),
            until_seq: None,
            limit: GAP_FILL,
        };
        let fetched = match self.bus.request(&cmd).await {
            Ok(messages) => messages,
            Err(e) => {
                tracing::warn!(error = %e, room = %self.room, "could not fill a seq gap");
                Vec::new()
            }
        };
        self.order.filled(fetched);
    }

    fn event(&mut self, event: RoomEvent) {
        let except: Option<&UserId> = match &event.body {
            RoomEventBody::MessageCreated(_) => None,
            RoomEventBody::PresenceJoined(p) | RoomEventBody::PresenceLeft(p) => Some(&p.user_id),
            RoomEventBody::Typing(t) => Some(&t.user_id),
            RoomEventBody::Delivered(c) | RoomEventBody::Read(c) => Some(&c.user_id),
            RoomEventBody::MessageUpdated(_) | RoomEventBody::MessageDeleted(_) | RoomEventBody::MemberAdded(_) => None,
            RoomEventBody::MemberRemoved(r) => {
                if let Ok(sockets) = self.shared.sockets.read() {
                    for s in sockets.values().filter(|s| s.user == r.user_id) {
                        s.kick.kick(Close::Removed);
                    }
                }
                Some(&r.user_id)
            }
        };
        if let RoomEventBody::MessageCreated(m) = event.body {
            self.order.insert(m);
            return;
        }
        let Ok(sockets) = self.shared.sockets.read() else { return };
        offer(sockets.values(), None, |s| except != Some(&s.user), |codec| codec.room_event(&event));
    }

    /// Offers a message, in order, to every socket of the room.
    fn deliver(&self, m: &Message) {
        let fallback = match m.sender_name {
            Some(_) => None,
            None => self.shared.names.read().ok().and_then(|n| n.get(&m.sender_id).cloned()),
        };
        let Ok(sockets) = self.shared.sockets.read() else { return };
        offer(sockets.values(), Some(m.seq), |_| true, |codec| Some(codec.message(m, fallback.as_deref())));
    }
}

/// Resolves at `deadline`, or never without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
