//! The WebSocket document's REST helpers about who is online:
//! `GET /api/v1/rooms/{id}/online`, `GET /api/v1/rooms/{id}/participants` and
//! `GET /api/v1/users/online`, in its `{"data":...,"status":"success"}` shape. Like
//! every `/api/v1` helper they take an API key (with `X-User-Id`) or a user token in
//! `X-API-Key`.
//!
//! Each list leaves out the users the caller blocks (any block: their presence is not
//! shown to the blocker, as on the sockets), read from message-store beside presence.

use std::collections::HashSet;

use actix_web::{HttpResponse, web};
use chat_domain::ApiError;
use chat_domain::ids::UserId;
use chat_domain::model::Actor;
use chat_domain::proto::blocks::ListBlocks;
use chat_domain::proto::presence::{GetOnline, GetTenantOnline};
use chat_domain::proto::store::{GetRoom, ListMembers};
use schemars::JsonSchema;
use serde::Serialize;

use super::api_messages::Enveloped;
use gateway_core::Core;
use gateway_core::caller::{ApiActing, ApiCaller};
use gateway_core::error::HttpResult;
use gateway_core::extract::{InRoom, Page, Rest};
use gateway_core::members::ShownRole;

/// Who is online.
#[derive(Serialize, JsonSchema)]
pub struct OnlineUsers {
    /// Users with a socket open, sorted.
    online_users: Vec<UserId>,
    /// How many there are.
    total_online: usize,
}

impl OnlineUsers {
    fn of(online_users: Vec<UserId>) -> Self {
        OnlineUsers { total_online: online_users.len(), online_users }
    }
}

/// The users whose presence `actor` does not see: the ones they block.
async fn blocked_by(state: &Core, actor: &Actor) -> Result<HashSet<UserId>, ApiError> {
    let list = state.bus.request(&ListBlocks { actor: actor.clone() }).await?;
    Ok(list.blocks.into_iter().map(|b| b.user_id).collect())
}

/// `online` without the users `actor` blocks, each asked of its service at once.
async fn online_for(
    state: &Core,
    actor: &Actor,
    online: impl Future<Output = Result<Vec<UserId>, ApiError>>,
) -> Result<Vec<UserId>, ApiError> {
    let (online, hidden) = tokio::try_join!(online, blocked_by(state, actor))?;
    Ok(visible(online, &hidden))
}

fn visible(mut online: Vec<UserId>, hidden: &HashSet<UserId>) -> Vec<UserId> {
    if !hidden.is_empty() {
        online.retain(|u| !hidden.contains(u));
    }
    online
}

/// Who is online in the room, as `actor` may see it.
async fn room_online(state: &Core, actor: &Actor, room_id: &chat_domain::ids::RoomId) -> Result<Vec<UserId>, ApiError> {
    let get = GetOnline { tenant_id: actor.tenant_id.clone(), room_id: room_id.clone() };
    online_for(state, actor, async { Ok(state.bus.request(&get).await?.online_users) }).await
}

pub async fn online(
    Rest((ApiActing(actor), InRoom(room_id))): Rest<(ApiActing, InRoom)>,
    state: web::Data<Core>,
) -> HttpResult {
    // Membership first: another tenant's room is not found, a stranger's is forbidden.
    state.bus.request(&GetRoom { actor: actor.clone(), room_id: room_id.clone() }).await?;
    let online = room_online(&state, &actor, &room_id).await?;
    Ok(HttpResponse::Ok().json(Enveloped::new(OnlineUsers::of(online))))
}

/// `GET /api/v1/users/online`: users with a socket open anywhere in the tenant (but
/// those the named user, if any, blocks).
pub async fn tenant_online(Rest(caller): Rest<ApiCaller>, state: web::Data<Core>) -> HttpResult {
    caller.check_named_user()?;
    let get = GetTenantOnline { tenant_id: caller.tenant.tenant_id.clone() };
    let online = async { Ok(state.bus.request(&get).await?.online_users) };
    // Checked above: an actor only when a token or `X-User-Id` names a (valid) user.
    let online = match caller.actor().ok() {
        // With the API key alone it is the tenant's own view: nobody to hide from.
        None => online.await?,
        Some(actor) => online_for(&state, &actor, online).await?,
    };
    Ok(HttpResponse::Ok().json(Enveloped::new(OnlineUsers::of(online))))
}

/// A page of a room's members, each with whether they are online.
#[derive(Serialize, JsonSchema)]
pub struct Participants {
    /// In join order.
    participants: Vec<Participant>,
    /// The room's members, all pages together.
    total_participants: i64,
    /// The room's members online now.
    total_online: usize,
}

/// A member of a room.
#[derive(Serialize, JsonSchema)]
pub struct Participant {
    user_id: UserId,
    /// `admin`, `moderator` or `member`; the room's owner is shown as `admin`, with
    /// `owner: true` (as in `GET /rooms/{room_id}/members`).
    role: ShownRole,
    /// Whether this member is the room's owner (its creator).
    owner: bool,
    #[schemars(extend("format" = "date-time"))]
    joined_at: String,
    /// Whether the member has a socket open in the room (never for a user the caller
    /// blocks).
    online: bool,
}

pub async fn participants(
    Rest((ApiActing(actor), InRoom(room_id), page)): Rest<(ApiActing, InRoom, Page)>,
    state: web::Data<Core>,
) -> HttpResult {
    let room = state.bus.request(&GetRoom { actor: actor.clone(), room_id: room_id.clone() }).await?;
    let (limit, offset) = (page.limit, page.offset);
    let members =
        state.bus.request(&ListMembers { actor: actor.clone(), room_id: room_id.clone(), limit, offset }).await?;
    let online = room_online(&state, &actor, &room_id).await?;
    let participants = members
        .into_iter()
        .map(|m| {
            let (role, owner) = ShownRole::of(m.role);
            Participant {
                online: online.contains(&m.user_id),
                joined_at: chat_domain::time::format(&m.joined_at),
                user_id: m.user_id,
                role,
                owner,
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(Enveloped::new(Participants {
        participants,
        total_participants: room.member_count,
        total_online: online.len(),
    })))
}
