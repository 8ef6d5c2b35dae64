//! Reactions and pins (issue 23; see `chat_domain::proto::reactions`):
//! `PUT|DELETE|GET /rooms/{room_id}/messages/{message_id}/reactions/{emoji}` and
//! `PUT|DELETE /rooms/{room_id}/pins/{message_id}`, `GET /rooms/{room_id}/pins`.

use actix_web::{HttpResponse, web};
use chat_domain::ApiError;
use chat_domain::emoji::{MAX_EMOJI_BYTES, MAX_EMOJI_PER_MESSAGE, MAX_REACTIONS_PER_USER};
use chat_domain::ids::{MessageId, RoomId};
use chat_domain::proto::reactions::{
    AddReaction, ListPins, ListReactors, MAX_PINS, MAX_REACTORS_PAGE, PinMessage, ReactionChange, Reactors,
    RemoveReaction, UnpinMessage,
};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::json;

use gateway_core::Core;
use gateway_core::caller::Acting;
use gateway_core::error::HttpResult;
use gateway_core::extract::{InEmoji, InMessage, InRoom, QueryString, Rest};
use gateway_core::routes::{Mount, op};

use crate::messages::{LinkedMessage, linked};

/// `PUT /rooms/{room_id}/messages/{message_id}/reactions/{emoji}`: `201` when added,
/// `200` when the caller already reacted so.
pub async fn add(
    Rest((Acting(actor), InRoom(room_id), InMessage(message_id), InEmoji(emoji))): Rest<(
        Acting,
        InRoom,
        InMessage,
        InEmoji,
    )>,
    state: web::Data<Core>,
) -> HttpResult {
    let change = state.bus.request(&AddReaction { actor, room_id, message_id, emoji }).await?;
    Ok(if change.changed { HttpResponse::Created() } else { HttpResponse::Ok() }.json(change))
}

/// `DELETE /rooms/{room_id}/messages/{message_id}/reactions/{emoji}`.
pub async fn remove(
    Rest((Acting(actor), InRoom(room_id), InMessage(message_id), InEmoji(emoji))): Rest<(
        Acting,
        InRoom,
        InMessage,
        InEmoji,
    )>,
    state: web::Data<Core>,
) -> HttpResult {
    let change = state.bus.request(&RemoveReaction { actor, room_id, message_id, emoji }).await?;
    Ok(HttpResponse::Ok().json(change))
}

/// The query of `GET .../reactions/{emoji}`.
#[derive(JsonSchema)]
pub struct ReactorsQuery {
    /// Most users returned (1 to 100, default 50).
    #[schemars(default = "gateway_core::extract::default_limit", range(min = 1, max = 100))]
    pub limit: u32,
    /// The `next_cursor` of the previous page.
    #[schemars(with = "Option<String>")]
    pub cursor: Option<chat_domain::ids::UserId>,
}

impl ReactorsQuery {
    fn read(q: &gateway_core::body::Query) -> Result<Self, ApiError> {
        let limit = q.int("limit", 1, i64::from(MAX_REACTORS_PAGE))?.map_or(50, |n| n as u32);
        let cursor = q
            .get_str("cursor")
            .map(|c| gateway_core::extract::user_id("cursor", c))
            .transpose()
            .map_err(|_| ApiError::validation("cursor", "cursor must be a next_cursor of a previous page"))?;
        Ok(Self { limit, cursor })
    }
}

/// `GET /rooms/{room_id}/messages/{message_id}/reactions/{emoji}?limit=&cursor=`.
pub async fn reactors(
    Rest((Acting(actor), InRoom(room_id), InMessage(message_id), (InEmoji(emoji), QueryString(q)))): Rest<(
        Acting,
        InRoom,
        InMessage,
        (InEmoji, QueryString),
    )>,
    state: web::Data<Core>,
) -> HttpResult {
    let ReactorsQuery { limit, cursor } = ReactorsQuery::read(&q)?;
    let page: Reactors = state.bus.request(&ListReactors { actor, room_id, message_id, emoji, limit, cursor }).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// `PUT /rooms/{room_id}/pins/{message_id}`: the message, pinned.
pub async fn pin(
    Rest((Acting(actor), InRoom(room_id), InMessage(message_id))): Rest<(Acting, InRoom, InMessage)>,
    state: web::Data<Core>,
) -> HttpResult {
    let change = state.bus.request(&PinMessage { actor, room_id, message_id }).await?;
    Ok(HttpResponse::Ok().json(linked(&state.links(), change.message)))
}

/// `DELETE /rooms/{room_id}/pins/{message_id}`: the message, not pinned.
pub async fn unpin(
    Rest((Acting(actor), InRoom(room_id), InMessage(message_id))): Rest<(Acting, InRoom, InMessage)>,
    state: web::Data<Core>,
) -> HttpResult {
    let change = state.bus.request(&UnpinMessage { actor, room_id, message_id }).await?;
    Ok(HttpResponse::Ok().json(linked(&state.links(), change.message)))
}

/// The answer of `GET /rooms/{room_id}/pins`.
#[derive(Serialize, JsonSchema)]
pub struct Pins {
    /// Most recently pinned first.
    pins: Vec<LinkedMessage>,
}

/// `GET /rooms/{room_id}/pins`.
pub async fn pins(
    Rest((Acting(actor), InRoom(room_id))): Rest<(Acting, InRoom)>,
    state: web::Data<Core>,
) -> HttpResult {
    let list = state.bus.request(&ListPins { actor, room_id }).await?;
    let links = state.links();
    Ok(HttpResponse::Ok().json(Pins { pins: list.pins.into_iter().map(|m| linked(&links, m)).collect() }))
}

/// What a reaction may be and how many there may be, for the documentation.
pub fn reaction_rules() -> String {
    format!(
        "`{{emoji}}` is a Unicode emoji sequence, percent-encoded (`%F0%9F%91%8D` for 👍; skin tones, ZWJ \
         sequences, flags and keycaps included; at most {MAX_EMOJI_BYTES} bytes and 16 code points), or a custom \
         name `:name:` of 1-32 of `a-z 0-9 _ + -` (`:party_parrot:`); anything else is `400 VALIDATION_ERROR` \
         with `field: \"emoji\"`. A message carries at most {MAX_EMOJI_PER_MESSAGE} different emoji and a user \
         puts at most {MAX_REACTIONS_PER_USER} on one message (`400`, `field: \"emoji\"`). Members only (`403`); \
         a message not in the room is `404`; a deleted message is `409 CONFLICT` (its reactions went with it)."
    )
}

/// The routes of reactions and pins, with their documentation.
pub(crate) fn routes(m: &mut Mount) {
    let room = "The room's id (`room_...`).";
    let message = "The message's id (`msg_...`).";
    let emoji = "The emoji, percent-encoded: a Unicode emoji sequence or `:custom_name:`.";
    let rules = reaction_rules();
    let change = json!({
        "room_id": "room_0193c5f1d2a07b4c8e3f9a1b2c3d4e5f",
        "message_id": "msg_0193c5f2a7e87d3a9b1f4e2c8d6a0b11",
        "emoji": "👍",
        "changed": true,
        "count": 2,
        "reactions": [{"emoji": "👍", "count": 2, "user_ids": ["user2", "user1"], "me": true}],
    });
    let pin_rule = "Room admins (role `owner` or `admin`) may, and either member of a DM (`403` for anyone else). \
                    A deleted message cannot be pinned (`409`); deleting a pinned message unpins it. At most \
                    100 pinned messages per room (`400`). Members' sockets get `message.pinned` / \
                    `message.unpinned`.";
    m.tagged("Reactions")
        .at(&["/rooms/{room_id}/messages/{message_id}/reactions/{emoji}"], |r| {
            r.put(
                add,
                op("React to a message")
                    .describe(&format!(
                        "Adds the caller's reaction: `201` when added, `200` when the caller had already reacted \
                         with this emoji (nothing changes). Members' sockets get `reaction.added` with the new \
                         count. {rules}"
                    ))
                    .user()
                    .path_id::<RoomId>("room_id", room)
                    .path_id::<MessageId>("message_id", message)
                    .path_id::<chat_domain::emoji::Emoji>("emoji", emoji)
                    .reply_example::<ReactionChange>(201, "Added; the message's reactions now.", change.clone())
                    .reply::<ReactionChange>(200, "Already there (`changed: false`).")
                    .errors(&[400, 401, 403, 404, 409, 503]),
            )
            .delete(
                remove,
                op("Take a reaction back")
                    .describe(&format!(
                        "Idempotent: `changed: false` when the caller had not reacted so. Members' sockets get \
                         `reaction.removed` with the new count. {rules}"
                    ))
                    .user()
                    .path_id::<RoomId>("room_id", room)
                    .path_id::<MessageId>("message_id", message)
                    .path_id::<chat_domain::emoji::Emoji>("emoji", emoji)
                    .reply::<ReactionChange>(200, "The message's reactions now.")
                    .errors(&[400, 401, 403, 404, 409, 503]),
            )
            .get(
                reactors,
                op("List who reacted with an emoji")
                    .describe(
                        "In user id order, `limit` at a time; pass `next_cursor` as `cursor` for the next page \
                         (absent on the last). Members only.",
                    )
                    .user()
                    .path_id::<RoomId>("room_id", room)
                    .path_id::<MessageId>("message_id", message)
                    .path_id::<chat_domain::emoji::Emoji>("emoji", emoji)
                    .query::<ReactorsQuery>()
                    .reply::<Reactors>(200, "A page of the users who reacted.")
                    .errors(&[400, 401, 403, 404, 503]),
            )
        })
        .at(&["/rooms/{room_id}/pins"], |r| {
            r.get(
                pins,
                op("List a room's pinned messages")
                    .describe(&format!("Most recently pinned first, at most {MAX_PINS}. Members only."))
                    .user()
                    .path_id::<RoomId>("room_id", room)
                    .reply::<Pins>(200, "The pinned messages (`pinned_at`, `pinned_by` set).")
                    .errors(&[400, 401, 403, 404, 503]),
            )
        })
        .at(&["/rooms/{room_id}/pins/{message_id}"], |r| {
            r.put(
                pin,
                op("Pin a message")
                    .describe(&format!("Idempotent (`200` both times; a second pin keeps the first). {pin_rule}"))
                    .user()
                    .path_id::<RoomId>("room_id", room)
                    .path_id::<MessageId>("message_id", message)
                    .reply::<LinkedMessage>(200, "The message, pinned (`pinned_at`, `pinned_by`).")
                    .errors(&[400, 401, 403, 404, 409, 503]),
            )
            .delete(
                unpin,
                op("Unpin a message")
                    .describe(&format!("Idempotent: unpinning a message that is not pinned is `200`. {pin_rule}"))
                    .user()
                    .path_id::<RoomId>("room_id", room)
                    .path_id::<MessageId>("message_id", message)
                    .reply::<LinkedMessage>(200, "The message, not pinned.")
                    .errors(&[400, 401, 403, 404, 503]),
            )
        });
}
