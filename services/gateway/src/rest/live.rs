//! The WebSocket document's REST helpers about who is online:
//! `GET /api/v1/rooms/{id}/online`, `GET /api/v1/rooms/{id}/participants` and
//! `GET /api/v1/users/online`, in its `{"data":...,"status":"success"}` shape. Like
//! every `/api/v1` helper they take an API key (with `X-User-Id`) or a user token in
//! `X-API-Key`.

use actix_web::{HttpResponse, web};
use chat_domain::proto::presence::{GetOnline, GetTenantOnline};
use chat_domain::proto::store::{GetRoom, ListMembers};
use serde_json::json;

use super::extract::{InRoom, Page, Rest};
use crate::AppState;
use crate::caller::{ApiActing, ApiCaller};
use crate::error::HttpResult;

pub async fn online(
    Rest((ApiActing(actor), InRoom(room_id))): Rest<(ApiActing, InRoom)>,
    state: web::Data<AppState>,
) -> HttpResult {
    // Membership first: another tenant's room is not found, a stranger's is forbidden.
    state.bus.request(&GetRoom { actor: actor.clone(), room_id: room_id.clone() }).await?;
    let online = state.bus.request(&GetOnline { tenant_id: actor.tenant_id, room_id }).await?;
    Ok(HttpResponse::Ok().json(json!({
        "data": {"online_users": online.online_users, "total_online": online.online_users.len()},
        "status": "success",
    })))
}

/// `GET /api/v1/users/online`: users with a socket open anywhere in the tenant.
pub async fn tenant_online(Rest(caller): Rest<ApiCaller>, state: web::Data<AppState>) -> HttpResult {
    caller.check_named_user()?;
    let online = state.bus.request(&GetTenantOnline { tenant_id: caller.tenant.tenant_id.clone() }).await?;
    Ok(HttpResponse::Ok().json(json!({
        "data": {"online_users": online.online_users, "total_online": online.online_users.len()},
        "status": "success",
    })))
}

pub async fn participants(
    Rest((ApiActing(actor), InRoom(room_id), page)): Rest<(ApiActing, InRoom, Page)>,
    state: web::Data<AppState>,
) -> HttpResult {
    let room = state.bus.request(&GetRoom { actor: actor.clone(), room_id: room_id.clone() }).await?;
    let (limit, offset) = (page.limit, page.offset);
    let members =
        state.bus.request(&ListMembers { actor: actor.clone(), room_id: room_id.clone(), limit, offset }).await?;
    let online = state.bus.request(&GetOnline { tenant_id: actor.tenant_id, room_id }).await?;
    let participants: Vec<_> = members
        .iter()
        .map(|m| {
            json!({
                "user_id": m.user_id,
                "role": m.role,
                "joined_at": chat_domain::time::format(&m.joined_at),
                "online": online.online_users.contains(&m.user_id),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "data": {"participants": participants, "total_participants": room.member_count, "total_online": online.online_users.len()},
        "status": "success",
    })))
}
