//! Messages of a chat: `GET|POST /api/chat/:id/messages`, `PATCH
//! /api/chat/:id/messages/read`, `PUT|DELETE /api/chat/:id/messages/:messageId`. They
//! are the room's messages: sent through the same group commit, published to every
//! dialect's sockets.

use actix_web::http::StatusCode;
use actix_web::web;
use chat_domain::ApiError;
use chat_domain::ids::MessageId;
use chat_domain::model::{MessageContent, MessageKind, validate_client_id};
use chat_domain::proto::chat::{ADMIN_ROLE, ChatMessages, GetUser, MAX_CHAT_PAGE, ReadAll, validate_metadata};
use chat_domain::proto::store::{DeleteMessage, EditMessage, SendMessage};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::chats::{MAX_PAGE, Pagination, first_page, page};
use super::error::{ChatResult, ok};
use super::extract::{ChatCaller, ChatRest, InChat, InChatMessage};
use super::render::{self, MessageJson};
use gateway_core::Core;
use gateway_core::body::{Query, field};
use gateway_core::extract::{Body, Cx, Part, QueryString, parts};

/// Default page of `GET /api/chat/:id/messages`.
const DEFAULT_LIMIT: i64 = 50;

/// The query of `GET /api/chat/:id/messages`, as the handler reads it
/// ([`MessageListQuery::read`]); its schema gives the operation's query parameters.
#[derive(JsonSchema)]
pub(crate) struct MessageListQuery {
    /// The page, from 1 (newest first).
    #[schemars(default = "first_page", range(min = 1, max = MAX_PAGE))]
    page: u32,
    /// Messages per page, 1 to 100.
    #[schemars(default = "default_limit", range(min = 1, max = MAX_CHAT_PAGE))]
    limit: u32,
    /// Only messages created before this time (ISO 8601, e.g. `2025-12-13T12:00:00Z`).
    #[schemars(with = "String", extend("format" = "date-time"), default, skip_serializing_if = "Option::is_none")]
    before: Option<DateTime<Utc>>,
}

fn default_limit() -> u32 {
    DEFAULT_LIMIT as u32
}

impl MessageListQuery {
    fn read(q: &Query) -> Result<Self, ApiError> {
        let (page, limit) = page(q, DEFAULT_LIMIT)?;
        let before = q
            .get_str("before")
            .map(|b| {
                DateTime::parse_from_rfc3339(b).map(|t| t.with_timezone(&Utc)).map_err(|_| {
                    ApiError::validation("before", "before must be an ISO 8601 time, e.g. 2025-12-13T12:00:00Z")
                })
            })
            .transpose()?;
        Ok(Self { page, limit, before })
    }
}

/// The answer of `GET /api/chat/:id/messages`.
#[derive(Serialize, JsonSchema)]
pub(crate) struct MessageList {
    /// Newest first.
    messages: Vec<MessageJson>,
    pagination: Pagination,
}

/// `GET /api/chat/:id/messages?page=&limit=&before=`: newest first; `before` (an ISO
/// 8601 time) keeps only messages created before it.
pub(crate) async fn list(
    ChatRest((caller, InChat(room_id), QueryString(q))): ChatRest<(ChatCaller, InChat, QueryString)>,
    state: web::Data<Core>,
) -> ChatResult {
    let MessageListQuery { page, limit, before } = MessageListQuery::read(&q)?;
    let found = state.bus.request(&ChatMessages { actor: caller.actor, room_id, before, page, limit }).await?;
    let links = state.links();
    let messages = found.messages.iter().map(|m| render::message(m, &links)).collect();
    Ok(ok(StatusCode::OK, MessageList { messages, pagination: Pagination::new(page, limit, found.total) }))
}

/// The answer of the routes that send, edit or delete a message: `{message}`.
#[derive(Serialize, JsonSchema)]
pub(crate) struct OneMessage {
    pub message: MessageJson,
}

/// The body of `POST /api/chat/:id/messages`.
#[derive(Deserialize, JsonSchema)]
#[schemars(rename = "NewChatMessage")]
pub(crate) struct NewMessage {
    /// The text: 1 to 16,000 characters, not blank.
    #[schemars(with = "MessageContent", required)]
    content: Option<Value>,
    /// `text` (the default), or `system`: only with the API key or for a user with the
    /// directory role `admin` (`403` otherwise).
    #[serde(rename = "type")]
    #[schemars(with = "Option<MessageKind>")]
    kind: Option<Value>,
    /// A message of the same chat this one answers.
    #[serde(rename = "replyToMessageId")]
    #[schemars(with = "Option<MessageId>")]
    reply_to: Option<Value>,
    /// Anything of your app, a JSON object up to 8 KiB.
    #[schemars(with = "Option<serde_json::Map<String, Value>>")]
    metadata: Option<Value>,
    /// The client's id of this send, for retries (the `Idempotency-Key` header wins):
    /// a resend returns the first message with `200`.
    #[serde(rename = "clientMessageId")]
    #[schemars(with = "Option<String>")]
    client_message_id: Option<Value>,
    /// Reply in the thread of this top-level message of the chat (`400` on `parentId`
    /// when it is not one of the chat's messages, is deleted, or is itself a reply).
    #[serde(rename = "parentId")]
    #[schemars(with = "Option<MessageId>")]
    parent_id: Option<Value>,
    /// Participants to mention (at most 50; a non-participant is refused, `400`);
    /// `"@channel"` mentions everyone, chat admins only (`403`).
    #[schemars(with = "Option<Vec<chat_domain::ids::UserId>>")]
    mentions: Option<Value>,
}

/// `POST /api/chat/:id/messages`.
pub(crate) struct SendRequest {
    caller: ChatCaller,
    room_id: chat_domain::ids::RoomId,
    body: NewMessage,
    idempotency_key: Option<String>,
}

impl Part for SendRequest {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        let (caller, InChat(room_id), Body(body)) = parts(cx).await?;
        let idempotency_key = cx.header("Idempotency-Key").map(str::to_owned);
        Ok(Self { caller, room_id, body, idempotency_key })
    }
}

impl TryFrom<SendRequest> for SendMessage {
    type Error = ApiError;

    fn try_from(SendRequest { caller, room_id, body, idempotency_key }: SendRequest) -> Result<Self, ApiError> {
        let content = MessageContent::parse(field::required_str("content", body.content)?)?;
        let kind = field::optional_str("type", body.kind)?.map(|k| MessageKind::parse(&k)).transpose()?;
        let reply_to = field::optional_str("replyToMessageId", body.reply_to)?
            .map(|id| {
                MessageId::parse(id.as_str())
                    .map_err(|e| ApiError::validation("replyToMessageId", format!("Invalid message id: {e}")))
            })
            .transpose()?;
        let meta = field::optional_object("metadata", body.metadata)?;
        if let Some(meta) = &meta {
            validate_metadata("metadata", meta)?;
        }
        let client_msg_id = match idempotency_key {
            Some(key) => Some(key),
            None => field::optional_str("clientMessageId", body.client_message_id)?,
        };
        if let Some(id) = &client_msg_id {
            validate_client_id("clientMessageId", id)?;
        }
        let parent_id = gateway_core::messages::parent_id("parentId", body.parent_id)?;
        let mentions = gateway_core::messages::mentions("mentions", body.mentions)?;
        Ok(SendMessage {
            actor: caller.actor,
            room_id,
            content,
            sender_name: None,
            meta,
            client_msg_id,
            kind: kind.unwrap_or_default(),
            reply_to,
            attachments: Vec::new(),
            parent_id,
            mentions,
        })
    }
}

pub(crate) async fn send(ChatRest(req): ChatRest<SendRequest>, state: web::Data<Core>) -> ChatResult {
    let with_api_key = req.caller.with_api_key;
    let cmd = SendMessage::try_from(req)?;
    if cmd.kind == MessageKind::System && !with_api_key {
        let user = GetUser { tenant_id: cmd.actor.tenant_id.clone(), user_id: cmd.actor.user_id.clone() };
        let admin = match state.bus.request(&user).await {
            Ok(user) => user.has_role(ADMIN_ROLE),
            Err(e) if e.code == chat_domain::ErrorCode::NotFound => false,
            Err(e) => return Err(e.into()),
        };
        if !admin {
            return Err(ApiError::forbidden("Only admins and the tenant's server can send system messages").into());
        }
    }
    let sent = state.sends.send(cmd).await?;
    let status = if sent.duplicate { StatusCode::OK } else { StatusCode::CREATED };
    let mut res = ok(status, OneMessage { message: render::message(&sent.message, &state.links()) });
    if sent.duplicate {
        res.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("idempotent-replayed"),
            actix_web::http::header::HeaderValue::from_static("true"),
        );
    }
    Ok(res)
}

/// `PATCH /api/chat/:id/messages/read`: everything read; `modifiedCount` messages
/// became read.
pub(crate) async fn read(
    ChatRest((caller, InChat(room_id))): ChatRest<(ChatCaller, InChat)>,
    state: web::Data<Core>,
) -> ChatResult {
    let read = state.bus.request(&ReadAll { actor: caller.actor, room_id }).await?;
    Ok(ok(StatusCode::OK, MarkedRead { modified_count: read.modified_count, read_seq: read.read_seq }))
}

/// The answer of `PATCH /api/chat/:id/messages/read`.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MarkedRead {
    /// How many messages became read (0 when there was nothing new).
    modified_count: i64,
    /// The `seq` of the caller's read cursor now.
    read_seq: i64,
}

/// The body of `PUT /api/chat/:id/messages/:messageId`.
#[derive(Deserialize, JsonSchema)]
#[schemars(rename = "MessageEdit")]
pub(crate) struct EditBody {
    /// The new text: 1 to 16,000 characters, not blank.
    #[schemars(with = "MessageContent", required)]
    content: Option<Value>,
}

/// `PUT /api/chat/:id/messages/:messageId`: the author, within the tenant's edit window.
pub(crate) async fn edit(
    ChatRest((caller, InChat(room_id), InChatMessage(message_id), Body(body))): ChatRest<(
        ChatCaller,
        InChat,
        InChatMessage,
        Body<EditBody>,
    )>,
    state: web::Data<Core>,
) -> ChatResult {
    let content = MessageContent::parse(field::required_str("content", body.content)?)?;
    let cmd =
        EditMessage { actor: caller.actor, room_id, message_id, content, edit_reason: None, within_edit_window: true };
    let message = state.bus.request(&cmd).await?;
    Ok(ok(StatusCode::OK, OneMessage { message: render::message(&message, &state.links()) }))
}

/// `DELETE /api/chat/:id/messages/:messageId`: the author or an admin; the content
/// goes, `deletedAt` is set, the `seq` stays.
pub(crate) async fn delete(
    ChatRest((caller, InChat(room_id), InChatMessage(message_id))): ChatRest<(ChatCaller, InChat, InChatMessage)>,
    state: web::Data<Core>,
) -> ChatResult {
    let deleted = state.bus.request(&DeleteMessage { actor: caller.actor, room_id, message_id }).await?;
    state.attachments.remove(&deleted.removed_attachments).await;
    Ok(ok(StatusCode::OK, OneMessage { message: render::message(&deleted.message, &state.links()) }))
}

/// The query of `GET /api/chat/:id/messages/:messageId/thread`.
#[derive(JsonSchema)]
pub(crate) struct ThreadQuery {
    /// Replies with a `seq` greater than this (from the first when absent).
    #[serde(rename = "afterSeq")]
    #[schemars(range(min = 0))]
    after_seq: Option<i64>,
    /// Replies per page, 1 to 100.
    #[schemars(default = "default_limit", range(min = 1, max = 100))]
    limit: u32,
}

impl ThreadQuery {
    fn read(q: &Query) -> Result<Self, ApiError> {
        Ok(Self {
            after_seq: q.int("afterSeq", 0, i64::MAX)?,
            limit: q.int("limit", 1, 100)?.map_or(DEFAULT_LIMIT as u32, |n| n as u32),
        })
    }
}

/// The answer of `GET /api/chat/:id/messages/:messageId/thread`.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ThreadPageJson {
    /// The top-level message, with its `thread` summary.
    parent: MessageJson,
    /// Replies, oldest first.
    replies: Vec<MessageJson>,
    /// More replies follow: ask again with `afterSeq` = the last one's `seq`.
    has_more: bool,
}

/// `GET /api/chat/:id/messages/:messageId/thread?afterSeq=&limit=`: the parent and a page
/// of its replies (marks the thread read up to the newest reply returned).
pub(crate) async fn thread(
    ChatRest((caller, InChat(room_id), InChatMessage(message_id), QueryString(q))): ChatRest<(
        ChatCaller,
        InChat,
        InChatMessage,
        QueryString,
    )>,
    state: web::Data<Core>,
) -> ChatResult {
    let ThreadQuery { after_seq, limit } = ThreadQuery::read(&q)?;
    let cmd = chat_domain::proto::threads::GetThread { actor: caller.actor, room_id, message_id, after_seq, limit };
    let page = state.bus.request(&cmd).await?;
    let links = state.links();
    Ok(ok(
        StatusCode::OK,
        ThreadPageJson {
            parent: render::message(&page.parent, &links),
            replies: page.replies.iter().map(|m| render::message(m, &links)).collect(),
            has_more: page.has_more,
        },
    ))
}
