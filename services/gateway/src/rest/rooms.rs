//! Rooms and members: `POST /rooms`, `GET /rooms/{id}`, `GET|POST /rooms/{id}/members`,
//! `DELETE /rooms/{id}/members/{user_id}`.

use actix_web::{HttpRequest, HttpResponse, web};
use chat_domain::ApiError;
use chat_domain::model::{MAX_INITIAL_MEMBERS, MemberRole, RoomType};
use chat_domain::proto::store::{AddMember, CreateRoom, GetRoom, ListMembers, ListRooms, RemoveMember};

use super::{page, room_id, user_id};
use crate::AppState;
use crate::body::{Fields, Query};
use crate::caller::Caller;
use crate::error::HttpResult;

pub async fn create(req: HttpRequest, body: web::Payload, caller: Caller, state: web::Data<AppState>) -> HttpResult {
    let actor = caller.actor()?;
    let f = Fields::read(&req, body, state.max_body_bytes).await?;
    let room_type = match f.optional_str("type")? {
        Some(t) => RoomType::parse(t)?,
        None => {
            return Err(ApiError::validation("type", "Invalid room type. Must be one of: dm, group, channel").into());
        }
    };
    let raw = f.optional_str_array("members")?.unwrap_or_default();
    if raw.len() > MAX_INITIAL_MEMBERS {
        return Err(ApiError::validation("members", format!("At most {MAX_INITIAL_MEMBERS} members")).into());
    }
    let members = raw.into_iter().map(|m| user_id("members", m)).collect::<Result<Vec<_>, _>>()?;
    let name = f.optional_str("name")?.map(str::to_owned);
    let room = state.bus.request(&CreateRoom { actor, room_type, members, name }).await?;
    Ok(HttpResponse::Created().json(room))
}

/// `GET /rooms?limit=&offset=`: the caller's rooms, most recently active first, with
/// `unread_count` and `last_message`.
pub async fn list(req: HttpRequest, caller: Caller, state: web::Data<AppState>) -> HttpResult {
    let (limit, offset) = page(&Query::parse(&req)?)?;
    let cmd = ListRooms { actor: caller.actor()?, limit, offset };
    Ok(HttpResponse::Ok().json(state.bus.request(&cmd).await?))
}

pub async fn get(path: web::Path<String>, caller: Caller, state: web::Data<AppState>) -> HttpResult {
    let cmd = GetRoom { actor: caller.actor()?, room_id: room_id(&path)? };
    Ok(HttpResponse::Ok().json(state.bus.request(&cmd).await?))
}

pub async fn list_members(
    req: HttpRequest,
    path: web::Path<String>,
    caller: Caller,
    state: web::Data<AppState>,
) -> HttpResult {
    let (limit, offset) = page(&Query::parse(&req)?)?;
    let cmd = ListMembers { actor: caller.actor()?, room_id: room_id(&path)?, limit, offset };
    Ok(HttpResponse::Ok().json(state.bus.request(&cmd).await?))
}

pub async fn add_member(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Payload,
    caller: Caller,
    state: web::Data<AppState>,
) -> HttpResult {
    let actor = caller.actor()?;
    let room_id = room_id(&path)?;
    let f = Fields::read(&req, body, state.max_body_bytes).await?;
    let user_id = user_id("user_id", f.required_str("user_id")?)?;
    let role = f.optional_str("role")?.map(MemberRole::parse).transpose()?.unwrap_or(MemberRole::Member);
    let added = state.bus.request(&AddMember { actor, room_id, user_id, role }).await?;
    let mut res = if added.created { HttpResponse::Created() } else { HttpResponse::Ok() };
    Ok(res.json(added.member))
}

pub async fn remove_member(
    path: web::Path<(String, String)>,
    caller: Caller,
    state: web::Data<AppState>,
) -> HttpResult {
    let (room, user) = path.into_inner();
    let cmd = RemoveMember { actor: caller.actor()?, room_id: room_id(&room)?, user_id: user_id("user_id", &user)? };
    state.bus.request(&cmd).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"success": true})))
}
