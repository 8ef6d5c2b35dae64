//! A socket's place in one room, the same for every dialect: registered with the hub
//! (so the fan-out offers it the room's events, and the user's), announced to
//! presence, and at the end unregistered and announced gone. A WebSocket session
//! (`connect`) holds one; a Socket.IO session holds one per chat it joined. Connecting
//! is written once, here.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::web;
use chat_domain::ApiError;
use chat_domain::ids::{RoomId, UserId};
use chat_domain::model::{Actor, Room};

use crate::fanout::Kick;
use crate::session::codec::Codec;
use crate::session::queue::{Outlet, Receiver};
use crate::state::Core;

/// A registered socket of one user in one room.
pub struct Membership {
    core: web::Data<Core>,
    actor: Actor,
    room: RoomId,
    /// The hub's id of the socket.
    id: u64,
    /// The socket's id in presence (`<gateway>-<id>`).
    conn_id: String,
    kick: Arc<Kick>,
    /// Whether presence knows the socket (shared with the hub, which announces again
    /// what presence does not know).
    announced: Arc<AtomicBool>,
    /// The user's blocks (whose presence is not shown to them).
    blocks: Arc<crate::fanout::blocks::BlockSet>,
}

/// Who is online in a room, as a socket is told when it connects.
pub struct Online {
    /// Sorted; in a big room only the socket's own user.
    pub users: Vec<UserId>,
    /// In a big room, how many users are online (`users` is then not the whole list).
    pub total: Option<u64>,
}

/// A membership just made, with the two ends of its socket's queue.
pub struct Joined {
    pub membership: Membership,
    /// The session's end: its own frames, and [`Outlet::open`] once it has greeted.
    pub outlet: Outlet,
    /// The connection's end: whatever writes to the client reads it.
    pub receiver: Receiver,
}

impl Membership {
    /// Registers a socket of `actor` in `room` speaking `codec` (its live frames held
    /// back until the outlet opens). `user_name` names the user's messages stored
    /// without a name.
    pub async fn join(
        core: &web::Data<Core>,
        actor: &Actor,
        room: &Room,
        codec: &'static dyn Codec,
        user_name: Option<&str>,
    ) -> anyhow::Result<Joined> {
        let joined = core.hub.join(actor, &room.room_id, codec, user_name, room.last_seq).await?;
        let crate::fanout::Joined { id, conn_id, outlet, receiver, kick, announced, blocks } = joined;
        let membership = Membership {
            core: core.clone(),
            actor: actor.clone(),
            room: room.room_id.clone(),
            id,
            conn_id,
            kick,
            announced,
            blocks,
        };
        Ok(Joined { membership, outlet, receiver })
    }

    /// Tells presence the socket is here (it counts as online from now); who is online
    /// in the room (but the users the actor blocks) — in a big room only the actor,
    /// with the room's count.
    /// When presence cannot be reached, the hub announces the socket again on its next
    /// lease tick.
    pub async fn announce(&self, user_name: Option<String>) -> Result<Online, ApiError> {
        let (tenant, user) = (&self.actor.tenant_id, &self.actor.user_id);
        let connected = self.core.hub.announce(tenant, &self.room, user, user_name, &self.conn_id).await?;
        self.announced.store(true, Ordering::SeqCst);
        Ok(Online {
            users: self.blocks.visible(connected.online_users),
            total: connected.big_room.then_some(connected.total_online),
        })
    }

    /// The users of `online` the actor may see online (all but those they block).
    pub fn visible(&self, online: Vec<UserId>) -> Vec<UserId> {
        self.blocks.visible(online)
    }

    /// Resolves when the fan-out closes the socket (too slow, or removed from the room).
    pub fn kick(&self) -> &Arc<Kick> {
        &self.kick
    }

    /// Unregisters a socket that never was announced (its connection failed first).
    pub async fn abandon(self) {
        self.core.hub.leave(&self.actor.tenant_id, &self.room, &self.actor.user_id, self.id).await;
    }

    /// Unregisters the socket and tells presence it left.
    pub async fn leave(self) {
        let (hub, tenant, user) = (&self.core.hub, &self.actor.tenant_id, &self.actor.user_id);
        hub.leave(tenant, &self.room, user, self.id).await;
        hub.announce_gone(tenant, &self.room, user, self.conn_id).await;
    }
}
