//! Rooms and members: `POST /rooms`, `GET /rooms/{id}`, `GET|POST /rooms/{id}/members`,
//! `DELETE|PATCH /rooms/{id}/members/{user_id}`.

use actix_web::{HttpResponse, web};
use chat_domain::ApiError;
use chat_domain::ids::{RoomId, UserId};
use chat_domain::model::{Actor, MAX_INITIAL_MEMBERS, MAX_NAME_CHARS, MemberRole, RoomType};
use chat_domain::proto::store::{AddMember, CreateRoom, GetRoom, ListMembers, ListRooms, RemoveMember};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use chat_domain::model::Room;
use chat_domain::proto::Command;
use gateway_core::Core;
use gateway_core::body::field;
use gateway_core::caller::{Acting, UserCaller};
use gateway_core::error::HttpResult;
use gateway_core::extract::user_id;
use gateway_core::extract::{Body, Cx, InRoom, InUser, Page, Part, Rest, parts};
use gateway_core::members::RoomMember;
use gateway_core::routes::{Mount, op};
use serde_json::json;

/// The body of `POST /rooms`.
#[derive(Deserialize, JsonSchema)]
pub struct NewRoom {
    /// `dm` (exactly two members, one DM per pair), `group` or `channel`.
    #[serde(rename = "type")]
    #[schemars(with = "RoomType", required)]
    room_type: Option<Value>,
    /// The other members (the caller always is one, as the room's owner).
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

pub async fn create(Rest(req): Rest<CreateRequest>, state: web::Data<Core>) -> HttpResult {
    let room = state.bus.request(&CreateRoom::try_from(req)?).await?;
    Ok(HttpResponse::Created().json(room))
}

/// `GET /rooms?limit=&offset=`: the caller's rooms, most recently active first, with
/// `unread_count` and `last_message`.
pub async fn list(
    Rest((_, page, Acting(actor))): Rest<(UserCaller, Page, Acting)>,
    state: web::Data<Core>,
) -> HttpResult {
    let cmd = ListRooms { actor, limit: page.limit, offset: page.offset };
    Ok(HttpResponse::Ok().json(state.bus.request(&cmd).await?))
}

pub async fn get(Rest((Acting(actor), InRoom(room_id))): Rest<(Acting, InRoom)>, state: web::Data<Core>) -> HttpResult {
    Ok(HttpResponse::Ok().json(state.bus.request(&GetRoom { actor, room_id }).await?))
}

pub async fn list_members(
    Rest((_, page, Acting(actor), InRoom(room_id))): Rest<(UserCaller, Page, Acting, InRoom)>,
    state: web::Data<Core>,
) -> HttpResult {
    let cmd = ListMembers { actor, room_id, limit: page.limit, offset: page.offset };
    let members: Vec<RoomMember> = state.bus.request(&cmd).await?.into_iter().map(RoomMember::from).collect();
    Ok(HttpResponse::Ok().json(members))
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

pub async fn add_member(Rest(req): Rest<AddMemberRequest>, state: web::Data<Core>) -> HttpResult {
    let added = state.bus.request(&AddMember::try_from(req)?).await?;
    let mut res = if added.created { HttpResponse::Created() } else { HttpResponse::Ok() };
    Ok(res.json(RoomMember::from(added.member)))
}

pub async fn remove_member(
    Rest((Acting(actor), InRoom(room_id), InUser(user_id))): Rest<(Acting, InRoom, InUser)>,
    state: web::Data<Core>,
) -> HttpResult {
    state.bus.request(&RemoveMember { actor, room_id, user_id }).await?;
    Ok(HttpResponse::Ok().json(crate::success::SUCCESS))
}

/// The body of `PATCH /rooms/{room_id}/members/{user_id}`.
#[derive(Deserialize, JsonSchema)]
pub struct RoleChange {
    /// `admin`, `moderator` or `member` (`owner` cannot be given).
    #[schemars(with = "MemberRole", required)]
    role: Option<Value>,
}

/// `PATCH /rooms/{room_id}/members/{user_id}`: a member's role (recorded in the
/// moderation log).
pub async fn set_role(
    Rest((Acting(actor), InRoom(room_id), InUser(user_id), Body(body))): Rest<(
        Acting,
        InRoom,
        InUser,
        Body<RoleChange>,
    )>,
    state: web::Data<Core>,
) -> HttpResult {
    let role = MemberRole::parse(&field::required_str("role", body.role)?)?;
    let cmd = chat_domain::proto::moderation::SetMemberRole { actor, room_id, user_id, role };
    Ok(HttpResponse::Ok().json(RoomMember::from(state.bus.request(&cmd).await?)))
}

/// The routes of rooms and members, each with its documentation.
pub(crate) fn routes(m: &mut Mount) {
    let room = "The room's id (`room_...`).";
    m.tagged("Rooms")
.at(&["/rooms"], |r| {
            r.post(
                create,
                op("Create a room")
                    .describe("A DM, group or channel; the caller becomes its owner. There is at most one DM per pair of users: creating it again is `409`, naming the existing room.")
                    .user()
                    .json_example::<NewRoom>(json!({"type": "group", "members": ["user2", "user3"], "name": "Team Chat"}))
                    .reply_example::<<CreateRoom as Command>::Reply>(
                        201,
                        "The room.",
                        json!({
                            "room_id": "room_0193c5f1d2a07b4c8e3f9a1b2c3d4e5f",
                            "type": "group",
                            "unique_key": null,
                            "name": "Team Chat",
                            "last_seq": 0,
                            "member_count": 3,
                            "created_by": "user1",
                            "created_at": "2025-12-13T12:00:00.000000Z",
                        }),
                    )
                    .errors(&[400, 401, 403, 409, 413, 503]),
            )
            .get(
                list,
                op("List the caller's rooms")
                    .describe("Most recently active first, each with `unread_count` and `last_message`.")
                    .user()
                    .query::<gateway_core::extract::Page>()
                    .reply::<<ListRooms as Command>::Reply>(200, "A page of the caller's rooms.")
                    .errors(&[400, 401, 403, 503]),
            )
        })
        .at(&["/rooms/{room_id}"], |r| {
            r.get(
                get,
                op("Get a room")
                    .user()
                    .path_id::<chat_domain::ids::RoomId>("room_id", room)
                    .reply::<Room>(200, "The room.")
                    .errors(&[400, 401, 403, 404, 503]),
            )
        })
        .at(&["/rooms/{room_id}/members"], |r| {
            r.get(
                list_members,
                op("List a room's members")
                    .user()
                    .path_id::<chat_domain::ids::RoomId>("room_id", room)
                    .query::<gateway_core::extract::Page>()
                    .reply::<Vec<RoomMember>>(200, "A page of the members, in join order (the owner: `role` `admin`, `owner: true`).")
                    .errors(&[400, 401, 403, 404, 503]),
            )
            .post(
                add_member,
                op("Add a member")
                    .describe("Admins and the owner, with a role below their own (`member` when absent); the members of a DM cannot change. A user banned from the room is refused (`403 BANNED`). Adding a member again changes nothing and answers `200`.")
                    .user()
                    .path_id::<chat_domain::ids::RoomId>("room_id", room)
                    .json_example::<NewMember>(json!({"user_id": "user4", "role": "member"}))
                    .reply::<RoomMember>(201, "The member, added.")
                    .reply::<RoomMember>(200, "The user already was a member.")
                    .errors(&[400, 401, 403, 404, 413, 503]),
            )
        })
        .at(&["/rooms/{room_id}/members/{user_id}"], |r| {
            r.delete(
                remove_member,
                op("Remove a member")
                    .describe("Admins and the owner remove members ranked below them (recorded in the moderation log); a member removes themself. Not in DMs.")
                    .user()
                    .path_id::<chat_domain::ids::RoomId>("room_id", room)
                    .path_id::<chat_domain::ids::UserId>("user_id", "The member to remove.")
                    .reply::<crate::success::Success>(200, "Removed.")
                    .errors(&[400, 401, 403, 404, 503]),
            )
            .patch(
                set_role,
                op("Change a member's role")
                    .describe(
                        "Admins and the owner, on members ranked below them; `owner` cannot be given, and an admin                          gives `moderator` or `member` only (the owner also `admin`). Recorded in the moderation                          log. Not in DMs.",
                    )
                    .user()
                    .path_id::<chat_domain::ids::RoomId>("room_id", room)
                    .path_id::<chat_domain::ids::UserId>("user_id", "The member.")
                    .json_example::<RoleChange>(json!({"role": "moderator"}))
                    .reply::<RoomMember>(200, "The member with their role now.")
                    .errors(&[400, 401, 403, 404, 413, 503]),
            )
        });
}
