//! The WebSocket document's REST helpers about who is online:
//! `GET /api/v1/rooms/{id}/online`, `GET /api/v1/rooms/{id}/participants` and
//! `GET /api/v1/users/online`, in its `{"data":...,"status":"success"}` shape. Like
//! every `/api/v1` helper they take an API key (with `X-User-Id`) or a user token in
//! `X-API-Key`.

use actix_web::{HttpResponse, web};
use chat_domain::ids::UserId;
use chat_domain::model::MemberRole;
use chat_domain::proto::presence::{GetOnline, GetTenantOnline};
use chat_domain::proto::store::{GetRoom, ListMembers};
use schemars::JsonSchema;
use serde::Serialize;

use super::api_messages::Enveloped;
use gateway_core::Core;
use gateway_core::caller::{ApiActing, ApiCaller};
use gateway_core::error::HttpResult;
use gateway_core::extract::{InRoom, Page, Rest};

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

pub async fn online(
    Rest((ApiActing(actor), InRoom(room_id))): Rest<(ApiActing, InRoom)>,
    state: web::Data<Core>,
) -> HttpResult {
    // Membership first: another tenant's room is not found, a stranger's is forbidden.
    state.bus.request(&GetRoom { actor: actor.clone(), room_id: room_id.clone() }).await?;
    let online = state.bus.request(&GetOnline { tenant_id: actor.tenant_id, room_id }).await?;
    Ok(HttpResponse::Ok().json(Enveloped::new(OnlineUsers::of(online.online_users))))
}

/// `GET /api/v1/users/online`: users with a socket open anywhere in the tenant.
pub async fn tenant_online(Rest(caller): Rest<ApiCaller>, state: web::Data<Core>) -> HttpResult {
    caller.check_named_user()?;
    let online = state.bus.request(&GetTenantOnline { tenant_id: caller.tenant.tenant_id.clone() }).await?;
    Ok(HttpResponse::Ok().json(Enveloped::new(OnlineUsers::of(online.online_users))))
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
    role: MemberRole,
    #[schemars(extend("format" = "date-time"))]
    joined_at: String,
    /// Whether the member has a socket open in the room.
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
    let online = state.bus.request(&GetOnline { tenant_id: actor.tenant_id, room_id }).await?;
    let participants = members
        .into_iter()
        .map(|m| Participant {
            online: online.online_users.contains(&m.user_id),
            joined_at: chat_domain::time::format(&m.joined_at),
            user_id: m.user_id,
            role: m.role,
        })
        .collect();
    Ok(HttpResponse::Ok().json(Enveloped::new(Participants {
        participants,
        total_participants: room.member_count,
        total_online: online.online_users.len(),
    })))
}
