//! The WebSocket document's REST helpers: `GET /api/v1/rooms/{id}/online` and
//! `GET /api/v1/rooms/{id}/participants`, in its `{"data":...,"status":"success"}` shape.

use actix_web::{HttpRequest, HttpResponse, web};
use chat_domain::proto::presence::{GetOnline, GetTenantOnline};
use chat_domain::proto::store::{GetRoom, ListMembers};
use serde_json::json;

use super::{page, room_id};
use crate::AppState;
use crate::body::Query;
use crate::caller::Caller;
use crate::error::HttpResult;

pub async fn online(path: web::Path<String>, caller: Caller, state: web::Data<AppState>) -> HttpResult {
    let actor = caller.actor()?;
    let room_id = room_id(&path)?;
    // Membership first: another tenant's room is not found, a stranger's is forbidden.
    state.bus.request(&GetRoom { actor: actor.clone(), room_id: room_id.clone() }).await?;
    let online = state.bus.request(&GetOnline { tenant_id: actor.tenant_id, room_id }).await?;
    Ok(HttpResponse::Ok().json(json!({
        "data": {"online_users": online.online_users, "total_online": online.online_users.len()},
        "status": "success",
    })))
}

/// `GET /api/v1/users/online`: users with a socket open anywhere in the tenant.
pub async fn tenant_online(caller: Caller, state: web::Data<AppState>) -> HttpResult {
    let online = state.bus.request(&GetTenantOnline { tenant_id: caller.tenant.tenant_id.clone() }).await?;
    Ok(HttpResponse::Ok().json(json!({
        "data": {"online_users": online.online_users, "total_online": online.online_users.len()},
        "status": "success",
    })))
}

pub async fn participants(
    req: HttpRequest,
    path: web::Path<String>,
    caller: Caller,
    state: web::Data<AppState>,
) -> HttpResult {
    let actor = caller.actor()?;
    let room_id = room_id(&path)?;
    let (limit, offset) = page(&Query::parse(&req)?)?;
    let room = state.bus.request(&GetRoom { actor: actor.clone(), room_id: room_id.clone() }).await?;
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
