//! Messages of a chat: `GET|POST /api/chat/:id/messages`, `PATCH
//! /api/chat/:id/messages/read`, `PUT|DELETE /api/chat/:id/messages/:messageId`. They
//! are the room's messages: sent through the same group commit, published to every
//! dialect's sockets.

use actix_web::http::StatusCode;
use actix_web::web;
use chat_domain::ApiError;
use chat_domain::ids::MessageId;
use chat_domain::model::{MessageContent, MessageKind, validate_client_id};
use chat_domain::proto::chat::{ADMIN_ROLE, ChatMessages, GetUser, ReadAll, validate_metadata};
use chat_domain::proto::store::{DeleteMessage, EditMessage, SendMessage};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::chats::{page, pagination};
use super::error::{ChatResult, ok};
use super::extract::{ChatCaller, ChatRest, InChat, InChatMessage};
use super::render;
use crate::AppState;
use crate::body::field;
use crate::rest::extract::{Body, Cx, Part, QueryString, parts};

/// Default page of `GET /api/chat/:id/messages`.
const DEFAULT_LIMIT: i64 = 50;

/// `GET /api/chat/:id/messages?page=&limit=&before=`: newest first; `before` (an ISO
/// 8601 time) keeps only messages created before it.
pub(crate) async fn list(
    ChatRest((caller, InChat(room_id), QueryString(q))): ChatRest<(ChatCaller, InChat, QueryString)>,
    state: web::Data<AppState>,
) -> ChatResult {
    let (page, limit) = page(&q, DEFAULT_LIMIT)?;
    let before = q
        .get_str("before")
        .map(|b| {
            DateTime::parse_from_rfc3339(b).map(|t| t.with_timezone(&Utc)).map_err(|_| {
                ApiError::validation("before", "before must be an ISO 8601 time, e.g. 2025-12-13T12:00:00Z")
            })
        })
        .transpose()?;
    let found = state.bus.request(&ChatMessages { actor: caller.actor, room_id, before, page, limit }).await?;
    let links = render::links(&state);
    let messages: Vec<Value> = found.messages.iter().map(|m| render::message(m, &links)).collect();
    Ok(ok(StatusCode::OK, json!({"messages": messages, "pagination": pagination(page, limit, found.total)})))
}

/// The body of `POST /api/chat/:id/messages`.
#[derive(Deserialize)]
pub(crate) struct NewMessage {
    content: Option<Value>,
    #[serde(rename = "type")]
    kind: Option<Value>,
    #[serde(rename = "replyToMessageId")]
    reply_to: Option<Value>,
    metadata: Option<Value>,
    #[serde(rename = "clientMessageId")]
    client_message_id: Option<Value>,
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
        })
    }
}

pub(crate) async fn send(ChatRest(req): ChatRest<SendRequest>, state: web::Data<AppState>) -> ChatResult {
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
    let mut res = ok(status, json!({"message": render::message(&sent.message, &render::links(&state))}));
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
    state: web::Data<AppState>,
) -> ChatResult {
    let read = state.bus.request(&ReadAll { actor: caller.actor, room_id }).await?;
    Ok(ok(StatusCode::OK, json!({"modifiedCount": read.modified_count, "readSeq": read.read_seq})))
}

/// The body of `PUT /api/chat/:id/messages/:messageId`.
#[derive(Deserialize)]
pub(crate) struct EditBody {
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
    state: web::Data<AppState>,
) -> ChatResult {
    let content = MessageContent::parse(field::required_str("content", body.content)?)?;
    let cmd =
        EditMessage { actor: caller.actor, room_id, message_id, content, edit_reason: None, within_edit_window: true };
    let message = state.bus.request(&cmd).await?;
    Ok(ok(StatusCode::OK, json!({"message": render::message(&message, &render::links(&state))})))
}

/// `DELETE /api/chat/:id/messages/:messageId`: the author or an admin; the content
/// goes, `deletedAt` is set, the `seq` stays.
pub(crate) async fn delete(
    ChatRest((caller, InChat(room_id), InChatMessage(message_id))): ChatRest<(ChatCaller, InChat, InChatMessage)>,
    state: web::Data<AppState>,
) -> ChatResult {
    let message = state.bus.request(&DeleteMessage { actor: caller.actor, room_id, message_id }).await?;
    Ok(ok(StatusCode::OK, json!({"message": render::message(&message, &render::links(&state))})))
}
