//! Reactions and pins of a chat (issue 23), in `rest-chat.md`'s camelCase
//! `{success, data}` style: `PUT|DELETE|GET /api/chat/:id/messages/:messageId/reactions/:emoji`,
//! `PUT|DELETE /api/chat/:id/pins/:messageId`, `GET /api/chat/:id/pins`. The same
//! commands as the canonical API's; Socket.IO members of `chat-<id>` get
//! `reaction-added`, `reaction-removed`, `message-pinned`, `message-unpinned`.

use actix_web::http::StatusCode;
use actix_web::web;
use chat_domain::ApiError;
use chat_domain::proto::reactions::{
    AddReaction, ListPins, ListReactors, MAX_REACTORS_PAGE, PinMessage, ReactionChange, RemoveReaction, UnpinMessage,
};
use chat_domain::time::format;
use schemars::JsonSchema;
use serde::Serialize;

use super::error::{ChatResult, ok};
use super::extract::{ChatCaller, ChatRest, InChat, InChatMessage};
use super::messages::OneMessage;
use super::render::{self, MessageJson, ReactionJson};
use gateway_core::Core;
use gateway_core::extract::{InEmoji, QueryString};

/// The answer of adding or taking back a reaction.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "ChatReactionChange")]
pub(crate) struct ReactionChanged {
    message_id: String,
    emoji: String,
    /// Whether this call changed anything.
    changed: bool,
    /// How many users react with `emoji` now.
    count: i64,
    /// The message's reactions now.
    reactions: Vec<ReactionJson>,
}

impl From<ReactionChange> for ReactionChanged {
    fn from(c: ReactionChange) -> Self {
        Self {
            message_id: c.message_id.as_str().to_owned(),
            emoji: c.emoji.as_str().to_owned(),
            changed: c.changed,
            count: c.count,
            reactions: render::reactions(&c.reactions),
        }
    }
}

/// `PUT /api/chat/:id/messages/:messageId/reactions/:emoji`: `201` when added, `200`
/// when the caller had already reacted so.
pub(crate) async fn add(
    ChatRest((caller, InChat(room_id), InChatMessage(message_id), InEmoji(emoji))): ChatRest<(
        ChatCaller,
        InChat,
        InChatMessage,
        InEmoji,
    )>,
    state: web::Data<Core>,
) -> ChatResult {
    let change = state.bus.request(&AddReaction { actor: caller.actor, room_id, message_id, emoji }).await?;
    let status = if change.changed { StatusCode::CREATED } else { StatusCode::OK };
    Ok(ok(status, ReactionChanged::from(change)))
}

/// `DELETE /api/chat/:id/messages/:messageId/reactions/:emoji`.
pub(crate) async fn remove(
    ChatRest((caller, InChat(room_id), InChatMessage(message_id), InEmoji(emoji))): ChatRest<(
        ChatCaller,
        InChat,
        InChatMessage,
        InEmoji,
    )>,
    state: web::Data<Core>,
) -> ChatResult {
    let change = state.bus.request(&RemoveReaction { actor: caller.actor, room_id, message_id, emoji }).await?;
    Ok(ok(StatusCode::OK, ReactionChanged::from(change)))
}

/// The query of `GET .../reactions/:emoji`.
#[derive(JsonSchema)]
#[schemars(rename = "ChatReactorsQuery")]
pub(crate) struct ReactorsQuery {
    /// Users per page, 1 to 100 (default 50).
    #[schemars(default = "gateway_core::extract::default_limit", range(min = 1, max = 100))]
    pub limit: u32,
    /// The `nextCursor` of the previous page.
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
            .map_err(|_| ApiError::validation("cursor", "cursor must be a nextCursor of a previous page"))?;
        Ok(Self { limit, cursor })
    }
}

/// One user's reaction.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "ChatReactor")]
pub(crate) struct ReactorJson {
    user_id: String,
    #[schemars(extend("format" = "date-time"))]
    reacted_at: String,
}

/// The answer of `GET .../reactions/:emoji`.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "ChatReactors")]
pub(crate) struct ReactorsJson {
    emoji: String,
    /// How many users react with it in all.
    count: i64,
    /// In user id order.
    users: Vec<ReactorJson>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    next_cursor: Option<String>,
}

/// `GET /api/chat/:id/messages/:messageId/reactions/:emoji?limit=&cursor=`.
pub(crate) async fn reactors(
    ChatRest((caller, InChat(room_id), InChatMessage(message_id), (InEmoji(emoji), QueryString(q)))): ChatRest<(
        ChatCaller,
        InChat,
        InChatMessage,
        (InEmoji, QueryString),
    )>,
    state: web::Data<Core>,
) -> ChatResult {
    let ReactorsQuery { limit, cursor } = ReactorsQuery::read(&q)?;
    let page =
        state.bus.request(&ListReactors { actor: caller.actor, room_id, message_id, emoji, limit, cursor }).await?;
    Ok(ok(
        StatusCode::OK,
        ReactorsJson {
            emoji: page.emoji.as_str().to_owned(),
            count: page.count,
            users: page
                .users
                .iter()
                .map(|u| ReactorJson { user_id: u.user_id.as_str().to_owned(), reacted_at: format(&u.reacted_at) })
                .collect(),
            next_cursor: page.next_cursor.map(|c| c.as_str().to_owned()),
        },
    ))
}

/// `PUT /api/chat/:id/pins/:messageId`: `{message}`, pinned.
pub(crate) async fn pin(
    ChatRest((caller, InChat(room_id), InChatMessage(message_id))): ChatRest<(ChatCaller, InChat, InChatMessage)>,
    state: web::Data<Core>,
) -> ChatResult {
    let change = state.bus.request(&PinMessage { actor: caller.actor, room_id, message_id }).await?;
    Ok(ok(StatusCode::OK, OneMessage { message: render::message(&change.message, &state.links()) }))
}

/// `DELETE /api/chat/:id/pins/:messageId`: `{message}`, not pinned.
pub(crate) async fn unpin(
    ChatRest((caller, InChat(room_id), InChatMessage(message_id))): ChatRest<(ChatCaller, InChat, InChatMessage)>,
    state: web::Data<Core>,
) -> ChatResult {
    let change = state.bus.request(&UnpinMessage { actor: caller.actor, room_id, message_id }).await?;
    Ok(ok(StatusCode::OK, OneMessage { message: render::message(&change.message, &state.links()) }))
}

/// The answer of `GET /api/chat/:id/pins`.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "ChatPins")]
pub(crate) struct PinsJson {
    /// Most recently pinned first.
    pins: Vec<MessageJson>,
}

/// `GET /api/chat/:id/pins`.
pub(crate) async fn pins(
    ChatRest((caller, InChat(room_id))): ChatRest<(ChatCaller, InChat)>,
    state: web::Data<Core>,
) -> ChatResult {
    let list = state.bus.request(&ListPins { actor: caller.actor, room_id }).await?;
    let links = state.links();
    Ok(ok(StatusCode::OK, PinsJson { pins: list.pins.iter().map(|m| render::message(m, &links)).collect() }))
}
