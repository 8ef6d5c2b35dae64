//! Room moderation (see `chat_domain::proto::moderation` and the README's "Room
//! moderation"): `POST|GET /rooms/{room_id}/bans`, `DELETE /rooms/{room_id}/bans/{user_id}`,
//! the same for `mutes`, `GET|PATCH /rooms/{room_id}/settings` (slow mode),
//! `POST|GET /rooms/{room_id}/flags`, `POST /rooms/{room_id}/flags/{flag_id}/resolve`,
//! `GET /rooms/{room_id}/moderation-log`. Role changes are `PATCH
//! /rooms/{room_id}/members/{user_id}` (in `rooms`); the operator's tenant-wide queues
//! are in `admin`.

use actix_web::{HttpResponse, web};
use chat_domain::ApiError;
use chat_domain::ids::{MessageId, RoomId, UserId};
use chat_domain::model::Actor;
use chat_domain::proto::moderation::{
    Flag, FlagList, FlagMessage, GetRoomSettings, ListFlags, ListRestrictions, LogPage, MAX_REASON_CHARS,
    MAX_SLOW_MODE_SECS, ResolveFlag, Restrict, Restriction, RestrictionKind, RestrictionList, RoomModerationLog,
    RoomSettings, Unrestrict, UpdateRoomSettings,
};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use gateway_core::Core;
use gateway_core::body::{Query, field};
use gateway_core::caller::Acting;
use gateway_core::error::HttpResult;
use gateway_core::extract::{Body, Cx, InRoom, InUser, MaybeBody, Page, Part, QueryString, Rest, parts, user_id};
use gateway_core::routes::{Mount, op};

/// An optional `reason`-like text field: a string of at most [`MAX_REASON_CHARS`].
fn reason(name: &str, v: Option<Value>) -> Result<Option<String>, ApiError> {
    let r = field::optional_str(name, v)?;
    if r.as_ref().is_some_and(|r| r.chars().count() > MAX_REASON_CHARS) {
        return Err(ApiError::validation(name, format!("{name} must be at most {MAX_REASON_CHARS} characters")));
    }
    Ok(r)
}

/// The body of `POST /rooms/{room_id}/bans` and `POST /rooms/{room_id}/mutes`.
#[derive(Deserialize, JsonSchema)]
pub struct NewRestriction {
    #[schemars(with = "UserId", required)]
    user_id: Option<Value>,
    /// Why (at most 500 characters); shown in the list and the moderation log.
    #[schemars(with = "Option<String>", length(max = MAX_REASON_CHARS))]
    reason: Option<Value>,
    /// When it ends by itself (ISO 8601, in the future); absent: until lifted.
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    expires_at: Option<Value>,
}

/// A ban or mute being made.
pub struct RestrictRequest {
    actor: Actor,
    room_id: RoomId,
    body: NewRestriction,
}

impl Part for RestrictRequest {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        let (Acting(actor), InRoom(room_id), Body(body)) = parts(cx).await?;
        Ok(Self { actor, room_id, body })
    }
}

impl RestrictRequest {
    fn command(self, kind: RestrictionKind) -> Result<Restrict, ApiError> {
        let RestrictRequest { actor, room_id, body } = self;
        let user_id = user_id("user_id", &field::required_str("user_id", body.user_id)?)?;
        let reason = reason("reason", body.reason)?;
        let expires_at = field::optional_str("expires_at", body.expires_at)?
            .map(|s| {
                DateTime::parse_from_rfc3339(&s).map(|t| t.with_timezone(&Utc)).map_err(|_| {
                    ApiError::validation("expires_at", "expires_at must be an ISO 8601 time, e.g. 2026-12-31T23:00:00Z")
                })
            })
            .transpose()?;
        Ok(Restrict { actor, room_id, kind, user_id, reason, expires_at })
    }
}

pub async fn ban(Rest(req): Rest<RestrictRequest>, state: web::Data<Core>) -> HttpResult {
    let made = state.bus.request(&req.command(RestrictionKind::Ban)?).await?;
    Ok(HttpResponse::Created().json(made))
}

pub async fn mute(Rest(req): Rest<RestrictRequest>, state: web::Data<Core>) -> HttpResult {
    let made = state.bus.request(&req.command(RestrictionKind::Mute)?).await?;
    Ok(HttpResponse::Created().json(made))
}

async fn lift(state: &Core, actor: Actor, room_id: RoomId, user_id: UserId, kind: RestrictionKind) -> HttpResult {
    state.bus.request(&Unrestrict { actor, room_id, kind, user_id }).await?;
    Ok(HttpResponse::Ok().json(crate::success::SUCCESS))
}

pub async fn unban(
    Rest((Acting(actor), InRoom(room_id), InUser(user_id))): Rest<(Acting, InRoom, InUser)>,
    state: web::Data<Core>,
) -> HttpResult {
    lift(&state, actor, room_id, user_id, RestrictionKind::Ban).await
}

pub async fn unmute(
    Rest((Acting(actor), InRoom(room_id), InUser(user_id))): Rest<(Acting, InRoom, InUser)>,
    state: web::Data<Core>,
) -> HttpResult {
    lift(&state, actor, room_id, user_id, RestrictionKind::Mute).await
}

pub async fn list_bans(
    Rest((Acting(actor), InRoom(room_id))): Rest<(Acting, InRoom)>,
    state: web::Data<Core>,
) -> HttpResult {
    let list = state.bus.request(&ListRestrictions { actor, room_id, kind: RestrictionKind::Ban }).await?;
    Ok(HttpResponse::Ok().json(list))
}

pub async fn list_mutes(
    Rest((Acting(actor), InRoom(room_id))): Rest<(Acting, InRoom)>,
    state: web::Data<Core>,
) -> HttpResult {
    let list = state.bus.request(&ListRestrictions { actor, room_id, kind: RestrictionKind::Mute }).await?;
    Ok(HttpResponse::Ok().json(list))
}

/// The body of `PATCH /rooms/{room_id}/settings`: absent fields stay as they are.
#[derive(Deserialize, JsonSchema)]
pub struct SettingsPatch {
    /// Seconds a member (below moderator) waits between two sends; 0 turns slow mode off.
    #[schemars(with = "Option<u32>", range(min = 0, max = MAX_SLOW_MODE_SECS))]
    slow_mode_secs: Option<Value>,
}

pub async fn get_settings(
    Rest((Acting(actor), InRoom(room_id))): Rest<(Acting, InRoom)>,
    state: web::Data<Core>,
) -> HttpResult {
    Ok(HttpResponse::Ok().json(state.bus.request(&GetRoomSettings { actor, room_id }).await?))
}

pub async fn update_settings(
    Rest((Acting(actor), InRoom(room_id), Body(body))): Rest<(Acting, InRoom, Body<SettingsPatch>)>,
    state: web::Data<Core>,
) -> HttpResult {
    let bad = || {
        ApiError::validation(
            "slow_mode_secs",
            format!("slow_mode_secs must be an integer from 0 to {MAX_SLOW_MODE_SECS}"),
        )
    };
    let slow_mode_secs = field::optional_i64("slow_mode_secs", body.slow_mode_secs)
        .map_err(|_| bad())?
        .map(|s| u32::try_from(s).ok().filter(|s| *s <= MAX_SLOW_MODE_SECS).ok_or_else(bad))
        .transpose()?;
    let settings = state.bus.request(&UpdateRoomSettings { actor, room_id, slow_mode_secs }).await?;
    Ok(HttpResponse::Ok().json(settings))
}

/// The body of `POST /rooms/{room_id}/flags`.
#[derive(Deserialize, JsonSchema)]
pub struct NewFlag {
    /// A message of the room.
    #[schemars(with = "MessageId", required)]
    message_id: Option<Value>,
    /// Why it is flagged (1 to 500 characters).
    #[schemars(with = "String", required, length(min = 1, max = MAX_REASON_CHARS))]
    reason: Option<Value>,
}

pub async fn flag(
    Rest((Acting(actor), InRoom(room_id), Body(body))): Rest<(Acting, InRoom, Body<NewFlag>)>,
    state: web::Data<Core>,
) -> HttpResult {
    let raw = field::required_str("message_id", body.message_id)?;
    let message_id = MessageId::parse(raw.as_str())
        .map_err(|e| ApiError::validation("message_id", format!("Invalid message id: {e}")))?;
    let reason = reason("reason", body.reason)?
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| ApiError::validation("reason", "reason is required"))?;
    let flag = state.bus.request(&FlagMessage { actor, room_id, message_id, reason }).await?;
    Ok(HttpResponse::Created().json(flag))
}

/// `status` of the flag lists: `open` (the default) or `all`.
pub fn open_only(q: &Query) -> Result<bool, ApiError> {
    match q.get_str("status") {
        None | Some("open") => Ok(true),
        Some("all") => Ok(false),
        Some(_) => Err(ApiError::validation("status", "status must be one of: open, all")),
    }
}

/// The query of the flag lists (besides `limit` and `offset`).
#[allow(dead_code)] // documents the parameter; read by `open_only`
#[derive(JsonSchema)]
pub struct FlagQuery {
    /// `open` (unresolved only, the default) or `all`.
    status: Option<String>,
}

pub async fn list_flags(
    Rest((Acting(actor), InRoom(room_id), page, QueryString(q))): Rest<(Acting, InRoom, Page, QueryString)>,
    state: web::Data<Core>,
) -> HttpResult {
    let cmd = ListFlags { actor, room_id, open_only: open_only(&q)?, limit: page.limit, offset: page.offset };
    Ok(HttpResponse::Ok().json(state.bus.request(&cmd).await?))
}

/// The `{flag_id}` segment: `flag_` and 32 hex digits.
pub struct InFlag(pub String);

impl Part for InFlag {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        let raw = cx.segment("flag_id")?;
        let ok = raw
            .strip_prefix("flag_")
            .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        if !ok {
            return Err(ApiError::validation("flag_id", "Invalid flag id: expected flag_ and 32 hex digits"));
        }
        Ok(InFlag(raw))
    }
}

/// The body of `POST /rooms/{room_id}/flags/{flag_id}/resolve` (may be empty).
#[derive(Deserialize, JsonSchema)]
pub struct Resolution {
    /// What was done about it (at most 500 characters).
    #[schemars(with = "Option<String>", length(max = MAX_REASON_CHARS))]
    resolution: Option<Value>,
}

pub async fn resolve(
    Rest((Acting(actor), InRoom(room_id), InFlag(flag_id), MaybeBody(body))): Rest<(
        Acting,
        InRoom,
        InFlag,
        MaybeBody<Resolution>,
    )>,
    state: web::Data<Core>,
) -> HttpResult {
    let resolution = reason("resolution", body.and_then(|b| b.resolution))?;
    let flag = state.bus.request(&ResolveFlag { actor, room_id, flag_id, resolution }).await?;
    Ok(HttpResponse::Ok().json(flag))
}

pub async fn moderation_log(
    Rest((Acting(actor), InRoom(room_id), page)): Rest<(Acting, InRoom, Page)>,
    state: web::Data<Core>,
) -> HttpResult {
    let cmd = RoomModerationLog { actor, room_id, limit: page.limit, offset: page.offset };
    Ok(HttpResponse::Ok().json(state.bus.request(&cmd).await?))
}

/// The routes of room moderation, with their documentation.
pub(crate) fn routes(m: &mut Mount) {
    let room = "The room's id (`room_...`).";
    let rank = "A role acts only on members ranked below it (owner > admin > moderator > member); see the \
                README's permission table.";
    m.tagged("Moderation")
        .at(&["/rooms/{room_id}/bans"], |r| {
            r.post(
                ban,
                op("Ban a user from a room")
                    .describe(&format!(
                        "Moderators and above. Removes the member (their sockets in the room close on every API: \
                         `member.removed`, the removal close code) and refuses adding them back (`403 BANNED`) \
                         until the ban is lifted or expires; while banned, search finds nothing of the room. \
                         Banning again replaces the reason and expiry. Not in DMs. {rank}"
                    ))
                    .user()
                    .path_id::<RoomId>("room_id", room)
                    .json_example::<NewRestriction>(
                        json!({"user_id": "user9", "reason": "spam", "expires_at": "2026-12-31T00:00:00Z"}),
                    )
                    .reply::<Restriction>(201, "The ban.")
                    .errors(&[400, 401, 403, 404, 413, 503]),
            )
            .get(
                list_bans,
                op("List a room's bans")
                    .describe("Moderators and above. The bans in force, newest first (at most 1,000).")
                    .user()
                    .path_id::<RoomId>("room_id", room)
                    .reply::<RestrictionList>(200, "The bans in force.")
                    .errors(&[400, 401, 403, 404, 503]),
            )
        })
        .at(&["/rooms/{room_id}/bans/{user_id}"], |r| {
            r.delete(
                unban,
                op("Lift a ban")
                    .describe("Moderators and above. Idempotent: no ban in force also answers `200`.")
                    .user()
                    .path_id::<RoomId>("room_id", room)
                    .path_id::<UserId>("user_id", "The banned user.")
                    .reply::<crate::success::Success>(200, "Not banned (any more).")
                    .errors(&[400, 401, 403, 404, 503]),
            )
        })
        .at(&["/rooms/{room_id}/mutes"], |r| {
            r.post(
                mute,
                op("Mute a member")
                    .describe(&format!(
                        "Moderators and above. The member still reads, but their sends (REST `403 MUTED`, the \
                         socket dialects' error forms) and typing are refused until the mute is lifted or \
                         expires. Muting again replaces the reason and expiry. Not in DMs. {rank}"
                    ))
                    .user()
                    .path_id::<RoomId>("room_id", room)
                    .json_example::<NewRestriction>(json!({"user_id": "user9", "reason": "flooding"}))
                    .reply::<Restriction>(201, "The mute.")
                    .errors(&[400, 401, 403, 404, 413, 503]),
            )
            .get(
                list_mutes,
                op("List a room's mutes")
                    .describe("Moderators and above. The mutes in force, newest first (at most 1,000).")
                    .user()
                    .path_id::<RoomId>("room_id", room)
                    .reply::<RestrictionList>(200, "The mutes in force.")
                    .errors(&[400, 401, 403, 404, 503]),
            )
        })
        .at(&["/rooms/{room_id}/mutes/{user_id}"], |r| {
            r.delete(
                unmute,
                op("Lift a mute")
                    .describe("Moderators and above. Idempotent: no mute in force also answers `200`.")
                    .user()
                    .path_id::<RoomId>("room_id", room)
                    .path_id::<UserId>("user_id", "The muted member.")
                    .reply::<crate::success::Success>(200, "Not muted (any more).")
                    .errors(&[400, 401, 403, 404, 503]),
            )
        })
        .at(&["/rooms/{room_id}/settings"], |r| {
            r.get(
                get_settings,
                op("Get a room's settings")
                    .describe("Members.")
                    .user()
                    .path_id::<RoomId>("room_id", room)
                    .reply::<RoomSettings>(200, "The settings.")
                    .errors(&[400, 401, 403, 404, 503]),
            )
            .patch(
                update_settings,
                op("Change a room's settings")
                    .describe(
                        "Admins and the owner. `slow_mode_secs`: a member below moderator sends at most once per \
                         this many seconds; a send before the wait is over is `429 RATE_LIMIT_EXCEEDED` with \
                         `Retry-After` (and `retry_after` in the error), on every API and across gateways. 0 is off.",
                    )
                    .user()
                    .path_id::<RoomId>("room_id", room)
                    .json_example::<SettingsPatch>(json!({"slow_mode_secs": 30}))
                    .reply::<RoomSettings>(200, "The settings now.")
                    .errors(&[400, 401, 403, 404, 413, 503]),
            )
        })
        .at(&["/rooms/{room_id}/flags"], |r| {
            r.post(
                flag,
                op("Flag a message")
                    .describe(
                        "Any member flags a live message of the room for the moderators, once: flagging it again \
                         answers the first flag (`201` as well).",
                    )
                    .user()
                    .path_id::<RoomId>("room_id", room)
                    .json_example::<NewFlag>(
                        json!({"message_id": "msg_0193c5f1d2a07b4c8e3f9a1b2c3d4e5f", "reason": "abusive"}),
                    )
                    .reply::<Flag>(201, "The flag.")
                    .errors(&[400, 401, 403, 404, 413, 503]),
            )
            .get(
                list_flags,
                op("List a room's flags")
                    .describe("Moderators and above; newest first.")
                    .user()
                    .path_id::<RoomId>("room_id", room)
                    .query::<FlagQuery>()
                    .query::<Page>()
                    .reply::<FlagList>(200, "A page of flags.")
                    .errors(&[400, 401, 403, 404, 503]),
            )
        })
        .at(&["/rooms/{room_id}/flags/{flag_id}/resolve"], |r| {
            r.post(
                resolve,
                op("Resolve a flag")
                    .describe("Moderators and above. Resolving again keeps the first resolution.")
                    .user()
                    .path_id::<RoomId>("room_id", room)
                    .path_id::<chat_domain::proto::moderation::FlagId>("flag_id", "The flag's id.")
                    .json_example::<Resolution>(json!({"resolution": "message deleted, user muted"}))
                    .optional_body()
                    .reply::<Flag>(200, "The flag, resolved.")
                    .errors(&[400, 401, 403, 404, 413, 503]),
            )
        })
        .at(&["/rooms/{room_id}/moderation-log"], |r| {
            r.get(
                moderation_log,
                op("Read a room's moderation log")
                    .describe(
                        "Admins and the owner. Every ban, unban, mute, unmute, role change, settings change, \
                         removal of a member by another, deletion of another's message, flag and resolution: \
                         who, what, to whom, when and why; newest first.",
                    )
                    .user()
                    .path_id::<RoomId>("room_id", room)
                    .query::<Page>()
                    .reply::<LogPage>(200, "A page of the log.")
                    .errors(&[400, 401, 403, 404, 503]),
            )
        });
}
