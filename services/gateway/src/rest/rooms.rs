//! Rooms and members: `POST /rooms`, `GET /rooms/{id}`, `GET|POST /rooms/{id}/members`,
//! `DELETE /rooms/{id}/members/{user_id}`.

use actix_web::{HttpResponse, web};
use chat_domain::ApiError;
use chat_domain::ids::{RoomId, UserId};
use chat_domain::model::{Actor, MAX_INITIAL_MEMBERS, MAX_NAME_CHARS, MemberRole, RoomType};
use chat_domain::proto::store::{AddMember, CreateRoom, GetRoom, ListMembers, ListRooms, RemoveMember};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::extract::{Body, Cx, InRoom, InUser, Page, Part, Rest, parts};
use super::user_id;
use crate::AppState;
use crate::body::field;
use crate::caller::{Acting, UserCaller};
use crate::error::HttpResult;

/// The body of `POST /rooms`.
#[derive(Deserialize, JsonSchema)]
pub struct NewRoom {
    /// `dm` (exactly two members, one DM per pair), `group` or `channel`.
    #[serde(rename = "type")]
    #[schemars(with = "RoomType", required)]
    room_type: Option<Value>,
    /// The other members (the caller always is one, as the room's admin).
    #[schemars(with = "Option<Vec<UserId>>", length(max = MAX_INITIAL_MEMBERS))]
    members: Option<Value>,
    #[schemars(with = "Option<String>", length(max = MAX_NAME_CHARS))]
    name: Option<Value>,
}

/// `POST /rooms`: who creates what.
pub struct CreateRequest {
    actor: Actor,
    body: NewRoom,
}

impl Part for CreateRequest {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        let (Acting(actor), Body(body)) = parts(cx).await?;
        Ok(Self { actor, body })
    }
}

impl TryFrom<CreateRequest> for CreateRoom {
    type Error = ApiError;

    fn try_from(CreateRequest { actor, body }: CreateRequest) -> Result<Self, ApiError> {
        let room_type = match field::optional_str("type", body.room_type)? {
            Some(t) => RoomType::parse(&t)?,
            None => return Err(ApiError::validation("type", "Invalid room type. Must be one of: dm, group, channel")),
        };
        let raw = field::optional_str_array("members", body.members)?.unwrap_or_default();
        if raw.len() > MAX_INITIAL_MEMBERS {
            return Err(ApiError::validation("members", format!("At most {MAX_INITIAL_MEMBERS} members")));
        }
        let members = raw.iter().map(|m| user_id("members", m)).collect::<Result<Vec<_>, _>>()?;
        let name = field::optional_str("name", body.name)?;
        Ok(CreateRoom { actor, room_type, members, name })
    }
}

pub async fn create(Rest(req): Rest<CreateRequest>, state: web::Data<AppState>) -> HttpResult {
    let room = state.bus.request(&CreateRoom::try_from(req)?).await?;
    Ok(HttpResponse::Created().json(room))
}

/// `GET /rooms?limit=&offset=`: the caller's rooms, most recently active first, with
/// `unread_count` and `last_message`.
pub async fn list(
    Rest((_, page, Acting(actor))): Rest<(UserCaller, Page, Acting)>,
    state: web::Data<AppState>,
) -> HttpResult {
    let cmd = ListRooms { actor, limit: page.limit, offset: page.offset };
    Ok(HttpResponse::Ok().json(state.bus.request(&cmd).await?))
}

pub async fn get(
    Rest((Acting(actor), InRoom(room_id))): Rest<(Acting, InRoom)>,
    state: web::Data<AppState>,
) -> HttpResult {
    Ok(HttpResponse::Ok().json(state.bus.request(&GetRoom { actor, room_id }).await?))
}

pub async fn list_members(
    Rest((_, page, Acting(actor), InRoom(room_id))): Rest<(UserCaller, Page, Acting, InRoom)>,
    state: web::Data<AppState>,
) -> HttpResult {
    let cmd = ListMembers { actor, room_id, limit: page.limit, offset: page.offset };
    Ok(HttpResponse::Ok().json(state.bus.request(&cmd).await?))
}

/// The body of `POST /rooms/{room_id}/members`.
#[derive(Deserialize, JsonSchema)]
pub struct NewMember {
    #[schemars(with = "UserId", required)]
    user_id: Option<Value>,
    /// `member` when absent.
    #[schemars(with = "Option<MemberRole>")]
    role: Option<Value>,
}

/// `POST /rooms/{room_id}/members`.
pub struct AddMemberRequest {
    actor: Actor,
    room_id: RoomId,
    body: NewMember,
}

impl Part for AddMemberRequest {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        let (Acting(actor), InRoom(room_id), Body(body)) = parts(cx).await?;
        Ok(Self { actor, room_id, body })
    }
}

impl TryFrom<AddMemberRequest> for AddMember {
    type Error = ApiError;

    fn try_from(AddMemberRequest { actor, room_id, body }: AddMemberRequest) -> Result<Self, ApiError> {
        let user_id = user_id("user_id", &field::required_str("user_id", body.user_id)?)?;
        let role = field::optional_str("role", body.role)?.map(|r| MemberRole::parse(&r)).transpose()?;
        Ok(AddMember { actor, room_id, user_id, role: role.unwrap_or(MemberRole::Member) })
    }
}

pub async fn add_member(Rest(req): Rest<AddMemberRequest>, state: web::Data<AppState>) -> HttpResult {
    let added = state.bus.request(&AddMember::try_from(req)?).await?;
    let mut res = if added.created { HttpResponse::Created() } else { HttpResponse::Ok() };
    Ok(res.json(added.member))
}

pub async fn remove_member(
    Rest((Acting(actor), InRoom(room_id), InUser(user_id))): Rest<(Acting, InRoom, InUser)>,
    state: web::Data<AppState>,
) -> HttpResult {
    state.bus.request(&RemoveMember { actor, room_id, user_id }).await?;
    Ok(HttpResponse::Ok().json(super::SUCCESS))
}
