//! Messages: `POST /rooms/{id}/messages` (idempotent with `Idempotency-Key` or
//! `client_msg_id`), `GET /rooms/{id}/messages?after_seq=&before_seq=&limit=`, and
//! `PATCH` / `DELETE /rooms/{id}/messages/{message_id}`.

use actix_web::{HttpResponse, web};
use chat_domain::ApiError;
use chat_domain::ids::{MessageId, RoomId};
use chat_domain::model::{Actor, Attachment, Message, MessageContent, MessageKind, validate_meta};
use chat_domain::proto::store::{DeleteMessage, EditMessage, ListMessages, SendMessage};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use gateway_core::Core;
use gateway_core::attachments::AttachmentLinks;
use gateway_core::body::field;
use gateway_core::caller::Acting;
use gateway_core::error::HttpResult;
use gateway_core::extract::{Body, Cx, InMessage, InRoom, Part, QueryString, Rest, parts};
use gateway_core::messages::{History, client_msg_id, display_name, history, idempotency_key};
use gateway_core::routes::{Mount, op};
use serde_json::json;

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

pub async fn send(Rest(req): Rest<SendRequest>, state: web::Data<Core>) -> HttpResult {
    let sent = state.sends.send(SendMessage::try_from(req)?).await?;
    let message = linked(&state.links(), sent.message);
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

pub(crate) fn linked(links: &dyn AttachmentLinks, mut message: Message) -> LinkedMessage {
    let files = std::mem::take(&mut message.attachments);
    let attachments = files.into_iter().map(|file| LinkedFile { url: links.url(&message, &file), file }).collect();
    LinkedMessage { message, attachments }
}

pub async fn list(
    Rest((Acting(actor), InRoom(room_id), QueryString(q))): Rest<(Acting, InRoom, QueryString)>,
    state: web::Data<Core>,
) -> HttpResult {
    let History { after_seq, before_seq, limit } = history(&q)?;
    let cmd = ListMessages { actor, room_id, after_seq, before_seq, limit };
    let messages = state.bus.request(&cmd).await?;
    let links = state.links();
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
pub async fn edit(Rest(req): Rest<EditRequest>, state: web::Data<Core>) -> HttpResult {
    let edited = state.bus.request(&EditMessage::try_from(req)?).await?;
    Ok(HttpResponse::Ok().json(linked(&state.links(), edited)))
}

/// `DELETE /rooms/{id}/messages/{message_id}`: the sender or a room admin deletes
/// (softly: the `seq` stays, the content goes).
pub async fn delete(
    Rest((Acting(actor), InRoom(room_id), InMessage(message_id))): Rest<(Acting, InRoom, InMessage)>,
    state: web::Data<Core>,
) -> HttpResult {
    let deleted = state.bus.request(&DeleteMessage { actor, room_id, message_id }).await?;
    state.attachments.remove(&deleted.removed_attachments).await;
    Ok(HttpResponse::Ok().json(linked(&state.links(), deleted.message)))
}

/// The routes of messages, each with its documentation.
pub(crate) fn routes(m: &mut Mount) {
    let room = "The room's id (`room_...`).";
    let replayed = "`true` when the send was a resend (same `Idempotency-Key` or `client_msg_id`).";
    let idempotency = "The client's id of this send (wins over `client_msg_id`): a resend returns the first message.";
    let message = json!({
        "message_id": "msg_0193c5f2a7e87d3a9b1f4e2c8d6a0b11",
        "room_id": "room_0193c5f1d2a07b4c8e3f9a1b2c3d4e5f",
        "sender_id": "user1",
        "sender_name": "Alice",
        "seq": 43,
        "content": "Hello, world!",
        "meta": {"type": "text", "mentions": ["user2"]},
        "client_msg_id": null,
        "created_at": "2025-12-13T12:10:00.000000Z",
        "edited_at": null,
        "deleted_at": null,
    });
    m.tagged("Rooms")
        .at(&["/rooms/{room_id}/messages"], |r| {
            r.post(
                send,
                op("Send a message")
                    .describe("Stores the message with the room's next `seq` and delivers it to the members' sockets. A resend with the same `Idempotency-Key` (or `client_msg_id`) by the same sender returns the first message with `200` and `Idempotent-Replayed: true`.")
                    .user()
                    .path_id::<chat_domain::ids::RoomId>("room_id", room)
                    .param::<gateway_core::messages::IdempotencyKey>("Idempotency-Key", "header", idempotency)
                    .json_example::<NewMessage>(json!({
                        "content": "Hello, world!",
                        "meta": {"type": "text", "mentions": ["user2"]},
                    }))
                    .reply_example::<LinkedMessage>(201, "The message, stored.", message.clone())
                    .reply::<LinkedMessage>(200, "A resend: the message the first send stored.")
                    .reply_header("Idempotent-Replayed", replayed)
                    .errors(&[400, 401, 403, 404, 413, 503]),
            )
            .get(
                list,
                op("List a room's messages")
                    .describe("In `seq` order: after `after_seq` (from the start when absent), or the newest ones before `before_seq` when only that is given. Deleted messages keep their `seq` with empty content and `deleted_at` set.")
                    .user()
                    .path_id::<chat_domain::ids::RoomId>("room_id", room)
                    .query::<History>()
                    .reply_example::<Vec<LinkedMessage>>(200, "The page, in `seq` order.", json!([message.clone()]))
                    .errors(&[400, 401, 403, 404, 503]),
            )
        })
        .at(&["/rooms/{room_id}/messages/{message_id}"], |r| {
            r.patch(
                edit,
                op("Edit a message")
                    .describe("Only its sender may; a deleted message cannot be edited (`409`).")
                    .user()
                    .path_id::<chat_domain::ids::RoomId>("room_id", room)
                    .path_id::<chat_domain::ids::MessageId>("message_id", "The message's id (`msg_...`).")
                    .json::<Edit>()
                    .reply::<LinkedMessage>(200, "The message, edited (`edited_at` set).")
                    .errors(&[400, 401, 403, 404, 409, 413, 503]),
            )
            .delete(
                delete,
                op("Delete a message")
                    .describe("Its sender or a room admin may. Soft: the `seq` stays, the content goes.")
                    .user()
                    .path_id::<chat_domain::ids::RoomId>("room_id", room)
                    .path_id::<chat_domain::ids::MessageId>("message_id", "The message's id (`msg_...`).")
                    .reply::<LinkedMessage>(200, "The message, deleted (`deleted_at` set, content empty).")
                    .errors(&[400, 401, 403, 404, 503]),
            )
        });
}
