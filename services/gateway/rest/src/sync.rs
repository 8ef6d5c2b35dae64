//! Sync: `GET /sync?since=&limit_per_room=`, what changed in every room of the caller
//! since the previous sync's `token`, in one call (see `chat_domain::proto::sync`).

use actix_web::{HttpResponse, web};
use chat_domain::proto::sync::{DEFAULT_LIMIT_PER_ROOM, MAX_LIMIT_PER_ROOM, SyncChanges, SyncReply};
use schemars::JsonSchema;
use serde::Serialize;

use gateway_core::Core;
use gateway_core::caller::Acting;
use gateway_core::error::HttpResult;
use gateway_core::extract::{QueryString, Rest};
use gateway_core::routes::{Mount, op};

use crate::messages::{LinkedMessage, linked};

/// The query of `GET /sync` (its schema documents the parameters).
#[allow(dead_code)] // read in `sync`; the struct documents the parameters
#[derive(JsonSchema)]
pub struct SyncParams {
    /// The `token` of the previous sync; absent for a fresh start.
    pub since: Option<String>,
    /// Most new messages per room, 1 to 100.
    #[schemars(default = "default_limit", range(min = 1, max = 100))]
    pub limit_per_room: u32,
}

fn default_limit() -> u32 {
    DEFAULT_LIMIT_PER_ROOM
}

/// What changed in one room.
#[derive(Serialize, JsonSchema)]
pub struct RoomSync {
    /// The room as `GET /rooms/{room_id}` shows it.
    room: chat_domain::model::Room,
    /// The caller joined it since the token (always `true` on a fresh start).
    joined: bool,
    /// New messages, in `seq` order: the newest `limit_per_room` of them, each exactly
    /// as history shows it.
    messages: Vec<LinkedMessage>,
    /// More new messages than returned: page the rest with `GET
    /// /rooms/{room_id}/messages?after_seq=<from_seq>&before_seq=<first returned seq>`.
    has_more: bool,
    /// Messages after this `seq` are new since the token (of those the caller sees: the
    /// messages of users they hide with `hide_in_groups` are left out, as in history).
    from_seq: i64,
    /// Older messages edited or deleted since the token, as they are now (deleted: empty
    /// content, `deleted_at` set), in `seq` order, at most `limit_per_room`.
    updated: Vec<LinkedMessage>,
    /// More edited or deleted messages than returned (re-read the room's history).
    updated_has_more: bool,
    /// Delivered and read cursors that moved since the token (fresh start: the caller's).
    cursors: Vec<chat_domain::proto::sync::MemberCursor>,
    /// Members who joined since the token (as `GET /rooms/{room_id}/members` shows them).
    members_added: Vec<gateway_core::members::RoomMember>,
    /// Users who left or were removed since the token.
    members_removed: Vec<chat_domain::ids::UserId>,
}

/// The answer of `GET /sync`.
#[derive(Serialize, JsonSchema)]
pub struct SyncPage {
    /// Pass as `since` next time (opaque, at most a few hundred bytes).
    token: String,
    /// The rooms with changes (all the caller's rooms on a fresh start), by room id.
    rooms: Vec<RoomSync>,
    /// Rooms the caller left or was removed from since the token.
    left: Vec<chat_domain::ids::RoomId>,
}

/// `GET /sync`.
pub async fn sync(
    Rest((Acting(actor), QueryString(q))): Rest<(Acting, QueryString)>,
    state: web::Data<Core>,
) -> HttpResult {
    let since = q.get_str("since").map(str::to_owned);
    let limit_per_room =
        q.int("limit_per_room", 1, i64::from(MAX_LIMIT_PER_ROOM))?.map_or(DEFAULT_LIMIT_PER_ROOM, |n| n as u32);
    let SyncReply { token, rooms, left } = state.bus.request(&SyncChanges { actor, since, limit_per_room }).await?;
    let links = state.links();
    let rooms = rooms
        .into_iter()
        .map(|r| RoomSync {
            room: r.room,
            joined: r.joined,
            messages: r.messages.into_iter().map(|m| linked(&links, m)).collect(),
            has_more: r.has_more,
            from_seq: r.from_seq,
            updated: r.updated.into_iter().map(|m| linked(&links, m)).collect(),
            updated_has_more: r.updated_has_more,
            cursors: r.cursors,
            members_added: r.members_added.into_iter().map(Into::into).collect(),
            members_removed: r.members_removed,
        })
        .collect();
    Ok(HttpResponse::Ok().json(SyncPage { token, rooms, left }))
}

/// The route of sync, with its documentation.
pub(crate) fn routes(m: &mut Mount) {
    m.tagged("Sync").at(&["/sync"], |r| {
        r.get(
            sync,
            op("What changed since the last sync")
                .describe(
                    "One call after a reconnect instead of one per room: for every room of the caller with changes \
                     since `since` (the previous answer's `token`), its new messages (the newest `limit_per_room`, \
                     with `has_more` and `from_seq` to page the rest from history), edited and deleted messages, \
                     moved read and delivered cursors, members who joined and left, and the rooms the caller joined \
                     (`joined`) and left (`left`). Without `since`: a fresh start (every room of the caller with its \
                     newest messages). Each change is returned by exactly one sync of a chain of tokens. The token \
                     is opaque, signed and bounded in size; one that was altered, belongs to another user or tenant, \
                     was issued before the tenant's API key was rotated or its data moved, or is older than 30 days \
                     is `400 VALIDATION_ERROR` on `since` (sync again without it). As in history, messages of \
                     users the caller blocks with `hide_in_groups` are left out of `messages` and `updated`, and \
                     `has_more` and `from_seq` count only what the caller sees.",
                )
                .user()
                .query::<SyncParams>()
                .reply::<SyncPage>(200, "The changes and the next token.")
                .errors(&[400, 401, 503]),
        )
    });
}
