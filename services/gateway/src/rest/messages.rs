//! Messages: `POST /rooms/{id}/messages` (idempotent with `Idempotency-Key` or
//! `client_msg_id`), `GET /rooms/{id}/messages?after_seq=&before_seq=&limit=`, and
//! `PATCH` / `DELETE /rooms/{id}/messages/{message_id}`.

use actix_web::{HttpResponse, web};
use chat_domain::ApiError;
use chat_domain::ids::{MessageId, RoomId};
use chat_domain::model::{Actor, Attachment, Message, MessageContent, MessageKind, validate_client_id, validate_meta};
use chat_domain::proto::store::{DeleteMessage, EditMessage, ListMessages, SendMessage};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::extract::{Body, Cx, InMessage, InRoom, Part, QueryString, Rest, parts};
use crate::AppState;
use crate::body::{Query, field};
use crate::caller::Acting;
use crate::error::HttpResult;
use crate::rest_chat::render::AttachmentLinks;

/// The header a client retries a send with.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// The client's id for a send: the `Idempotency-Key` header (which wins), else the
/// body's field `field`.
pub fn client_msg_id(
    header: Option<Result<String, ApiError>>,
    field: &str,
    body: Option<Value>,
) -> Result<Option<String>, ApiError> {
    match header {
        Some(h) => {
            let h = h?;
            validate_client_id(IDEMPOTENCY_KEY, &h)?;
            Ok(Some(h))
        }
        None => match field::optional_str(field, body)? {
            Some(id) => {
                validate_client_id(field, &id)?;
                Ok(Some(id))
            }
            None => Ok(None),
        },
    }
}

/// The `Idempotency-Key` header, if sent (it must be printable ASCII).
pub fn idempotency_key(cx: &Cx) -> Option<Result<String, ApiError>> {
    cx.req.headers().get(IDEMPOTENCY_KEY).map(|v| {
        v.to_str()
            .map(str::to_owned)
            .map_err(|_| ApiError::validation(IDEMPOTENCY_KEY, "Idempotency-Key must be printable ASCII"))
    })
}

/// A display name as stored (see [`chat_domain::model::display_name`]).
pub fn display_name(name: Option<String>) -> Option<String> {
    name.as_deref().and_then(chat_domain::model::display_name)
}

/// The body of `POST /rooms/{room_id}/messages`.
#[derive(Deserialize, JsonSchema)]
pub struct NewMessage {
    /// The text (not only whitespace).
    #[schemars(with = "MessageContent", required, example = &"Hello, world!")]
    content: Option<Value>,
    /// Anything the client wants kept with the message (a JSON object, at most 8 KiB
    /// serialized, nested at most 32 levels).
    #[schemars(with = "Option<serde_json::Map<String, Value>>")]
    meta: Option<Value>,
    /// The client's id of this send (1 to 128 bytes, no control characters): a resend
    /// with the same id returns the first message. The `Idempotency-Key` header wins.
    #[schemars(with = "Option<String>")]
    client_msg_id: Option<Value>,
    /// The name to show with the message (trimmed; at most 100 characters kept).
    #[schemars(with = "Option<String>")]
    sender_name: Option<Value>,
}

/// `POST /rooms/{room_id}/messages`.
pub struct SendRequest {
    actor: Actor,
    room_id: RoomId,
    body: NewMessage,
    idempotency_key: Option<Result<String, ApiError>>,
}

impl Part for SendRequest {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        let (Acting(actor), InRoom(room_id), Body(body)) = parts(cx).await?;
        Ok(Self { actor, room_id, body, idempotency_key: idempotency_key(cx) })
    }
}

impl TryFrom<SendRequest> for SendMessage {
    type Error = ApiError;

    fn try_from(SendRequest { actor, room_id, body, idempotency_key }: SendRequest) -> Result<Self, ApiError> {
        let content = MessageContent::parse(field::required_str("content", body.content)?)?;
        let meta = field::optional_object("meta", body.meta)?;
        if let Some(meta) = &meta {
            validate_meta(meta)?;
        }
        let client_msg_id = client_msg_id(idempotency_key, "client_msg_id", body.client_msg_id)?;
        let sender_name = display_name(field::optional_str("sender_name", body.sender_name)?);
        Ok(SendMessage {
            actor,
            room_id,
            content,
            sender_name,
            meta,
            client_msg_id,
            kind: MessageKind::Text,
            reply_to: None,
            attachments: Vec::new(),
        })
    }
}

pub async fn send(Rest(req): Rest<SendRequest>, state: web::Data<AppState>) -> HttpResult {
    let sent = state.sends.send(SendMessage::try_from(req)?).await?;
    let message = linked(&crate::rest_chat::render::links(&state), sent.message);
    if sent.duplicate {
        Ok(HttpResponse::Ok().insert_header(("Idempotent-Replayed", "true")).json(message))
    } else {
        Ok(HttpResponse::Created().json(message))
    }
}

/// A message as this API answers it: as stored, and each file of a file message (sent
/// through `/api/chat`) with the signed, expiring `url` it is read from.
#[derive(Serialize, JsonSchema)]
pub struct LinkedMessage {
    #[serde(flatten)]
    message: Message,
    /// The message's files (absent when it has none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    attachments: Vec<LinkedFile>,
}

/// A file of a message, with the link it is read from.
#[derive(Serialize, JsonSchema)]
pub struct LinkedFile {
    #[serde(flatten)]
    file: Attachment,
    /// A signed link to the file's bytes, valid for a limited time.
    url: String,
}

fn linked(links: &dyn AttachmentLinks, mut message: Message) -> LinkedMessage {
    let files = std::mem::take(&mut message.attachments);
    let attachments = files.into_iter().map(|file| LinkedFile { url: links.url(&message, &file), file }).collect();
    LinkedMessage { message, attachments }
}

/// A page of history: after `after_seq` (from the start when absent), or the newest
/// messages before `before_seq` when only that is given; in `seq` order either way.
#[derive(JsonSchema)]
pub struct History {
    /// Messages with a `seq` greater than this.
    #[schemars(range(min = 0))]
    pub after_seq: Option<i64>,
    /// Messages with a `seq` less than this (the newest of them, when `after_seq` is absent).
    #[schemars(range(min = 1))]
    pub before_seq: Option<i64>,
    /// Most messages returned.
    #[schemars(default = "super::default_limit", range(min = 1, max = 100))]
    pub limit: u32,
}

/// Reads a [`History`] from the query, with the history rules.
pub fn history(q: &Query) -> Result<History, ApiError> {
    Ok(History {
        after_seq: q.int("after_seq", 0, i64::MAX)?,
        before_seq: q.int("before_seq", 1, i64::MAX)?,
        limit: q.int("limit", 1, 100)?.map_or(super::default_limit(), |n| n as u32),
    })
}

pub async fn list(
    Rest((Acting(actor), InRoom(room_id), QueryString(q))): Rest<(Acting, InRoom, QueryString)>,
    state: web::Data<AppState>,
) -> HttpResult {
    let History { after_seq, before_seq, limit } = history(&q)?;
    let cmd = ListMessages { actor, room_id, after_seq, before_seq, limit };
    let messages = state.bus.request(&cmd).await?;
    let links = crate::rest_chat::render::links(&state);
    let page: Vec<LinkedMessage> = messages.into_iter().map(|m| linked(&links, m)).collect();
    Ok(HttpResponse::Ok().json(page))
}

/// The body of `PATCH /rooms/{room_id}/messages/{message_id}`.
#[derive(Deserialize, JsonSchema)]
pub struct Edit {
    /// The new text (not only whitespace).
    #[schemars(with = "MessageContent", required, example = &"Hello, everyone!")]
    content: Option<Value>,
    /// Why it was edited, shown to the others with the edit.
    #[schemars(with = "Option<String>")]
    edit_reason: Option<Value>,
}

/// `PATCH /rooms/{room_id}/messages/{message_id}`.
pub struct EditRequest {
    actor: Actor,
    room_id: RoomId,
    message_id: MessageId,
    body: Edit,
}

impl Part for EditRequest {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        let (Acting(actor), InRoom(room_id), InMessage(message_id), Body(body)) = parts(cx).await?;
        Ok(Self { actor, room_id, message_id, body })
    }
}

impl TryFrom<EditRequest> for EditMessage {
    type Error = ApiError;

    fn try_from(EditRequest { actor, room_id, message_id, body }: EditRequest) -> Result<Self, ApiError> {
        let content = MessageContent::parse(field::required_str("content", body.content)?)?;
        let edit_reason = field::optional_str("edit_reason", body.edit_reason)?;
        Ok(EditMessage { actor, room_id, message_id, content, edit_reason, within_edit_window: false })
    }
}

/// `PATCH /rooms/{id}/messages/{message_id}` `{"content","edit_reason"?}`: the sender edits.
pub async fn edit(Rest(req): Rest<EditRequest>, state: web::Data<AppState>) -> HttpResult {
    let edited = state.bus.request(&EditMessage::try_from(req)?).await?;
    Ok(HttpResponse::Ok().json(linked(&crate::rest_chat::render::links(&state), edited)))
}

/// `DELETE /rooms/{id}/messages/{message_id}`: the sender or a room admin deletes
/// (softly: the `seq` stays, the content goes).
pub async fn delete(
    Rest((Acting(actor), InRoom(room_id), InMessage(message_id))): Rest<(Acting, InRoom, InMessage)>,
    state: web::Data<AppState>,
) -> HttpResult {
    let deleted = state.bus.request(&DeleteMessage { actor, room_id, message_id }).await?;
    state.attachments.remove(&deleted.removed_attachments).await;
    Ok(HttpResponse::Ok().json(linked(&crate::rest_chat::render::links(&state), deleted.message)))
}
