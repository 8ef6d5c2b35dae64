//! Messages: `POST /rooms/{id}/messages` (idempotent with `Idempotency-Key` or
//! `client_msg_id`), `GET /rooms/{id}/messages?after_seq=&before_seq=&limit=`, and
//! `PATCH` / `DELETE /rooms/{id}/messages/{message_id}`.

use actix_web::{HttpResponse, web};
use chat_domain::ApiError;
use chat_domain::ids::{MessageId, RoomId};
use chat_domain::model::{Actor, Attachment, Message, MessageContent, MessageKind, validate_meta};
use chat_domain::proto::store::{DeleteMessage, EditMessage, ListMessages, SendMessage};
use chat_domain::proto::threads::{GetThread, ListThreads};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use gateway_core::Core;
use gateway_core::attachments::AttachmentLinks;
use gateway_core::body::field;
use gateway_core::caller::Acting;
use gateway_core::error::HttpResult;
use gateway_core::extract::{Body, Cx, InMessage, InRoom, Part, QueryString, Rest, parts};
use gateway_core::messages::{
    History, ThreadQuery, client_msg_id, display_name, history, idempotency_key, thread_query,
};
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
    /// Reply in the thread of this top-level message of the room (`400` on `parent_id`
    /// when it is not one of the room's messages, is deleted, or is itself a reply).
    #[schemars(with = "Option<chat_domain::ids::MessageId>")]
    parent_id: Option<Value>,
    /// Members of the room to mention (at most 50, no repeats; a non-member is refused
    /// with `400` on `mentions`). `"@channel"` mentions everyone: room admins only (`403`).
    #[schemars(with = "Option<Vec<chat_domain::ids::UserId>>")]
    mentions: Option<Value>,
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
        let parent_id = gateway_core::messages::parent_id("parent_id", body.parent_id)?;
        let mentions = gateway_core::messages::mentions("mentions", body.mentions)?;
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
            parent_id,
            mentions,
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
    let History { after_seq, before_seq, limit, threads } = history(&q)?;
    let cmd = ListMessages { actor, room_id, after_seq, before_seq, limit, without_replies: !threads };
    let messages: Vec<Box<RawValue>> = state.bus.request_as(&cmd).await?;
    let page = page_body(&state.links(), &messages)?;
    Ok(HttpResponse::Ok().insert_header(actix_web::http::header::ContentType::json()).body(page))
}

/// A history page's body from message-store's messages as they came over the bus. A
/// message without files is written as it came: its text is what decoding it and
/// encoding it again as a [`LinkedMessage`] gives, byte for byte (serde_json both ways,
/// floats round-tripping; tested below), and decoding fifty messages was a third of the
/// gateway's CPU per page. A message with files is decoded, for the signed link of each.
fn page_body(links: &dyn AttachmentLinks, messages: &[Box<RawValue>]) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::with_capacity(2 + messages.iter().map(|m| m.get().len() + 1).sum::<usize>());
    body.push(b'[');
    for (i, raw) in messages.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        // The key can only appear unescaped as a key: at the top, where files are, or
        // inside `meta`, which then costs this message the decode and nothing else.
        if raw.get().contains("\"attachments\":") {
            let message: Message = serde_json::from_str(raw.get()).map_err(|e| {
                tracing::error!(error = %e, "a message of a history page does not decode");
                ApiError::internal()
            })?;
            serde_json::to_writer(&mut body, &linked(links, message)).map_err(|_| ApiError::internal())?;
        } else {
            body.extend_from_slice(raw.get().as_bytes());
        }
    }
    body.push(b']');
    Ok(body)
}

/// `GET /rooms/{id}/messages/{message_id}/thread?after_seq=&limit=`: the parent (with its
/// summary) and a page of its replies; moves the caller's thread read cursor.
pub async fn thread(
    Rest((Acting(actor), InRoom(room_id), InMessage(message_id), QueryString(q))): Rest<(
        Acting,
        InRoom,
        InMessage,
        QueryString,
    )>,
    state: web::Data<Core>,
) -> HttpResult {
    let ThreadQuery { after_seq, limit } = thread_query(&q)?;
    let page = state.bus.request(&GetThread { actor, room_id, message_id, after_seq, limit }).await?;
    let links = state.links();
    Ok(HttpResponse::Ok().json(ThreadReply {
        parent: linked(&links, page.parent),
        replies: page.replies.into_iter().map(|m| linked(&links, m)).collect(),
        has_more: page.has_more,
    }))
}

/// The answer of `GET /rooms/{room_id}/messages/{message_id}/thread`.
#[derive(Serialize, JsonSchema)]
pub struct ThreadReply {
    /// The thread's top-level message, with its `thread` summary.
    parent: LinkedMessage,
    /// Replies in `seq` order (deleted ones as tombstones, like history).
    replies: Vec<LinkedMessage>,
    /// More replies follow: ask again with `after_seq` = the last one's `seq`.
    has_more: bool,
}

/// `GET /threads?limit=`: the threads the caller takes part in, with unread counts.
pub async fn threads(
    Rest((Acting(actor), QueryString(q))): Rest<(Acting, QueryString)>,
    state: web::Data<Core>,
) -> HttpResult {
    let Limit { limit } = Limit::read(&q)?;
    let list = state.bus.request(&ListThreads { actor, limit }).await?;
    let links = state.links();
    let threads: Vec<ThreadEntry> = list
        .threads
        .into_iter()
        .map(|t| ThreadEntry { room_id: t.room_id, parent: linked(&links, t.parent), unread_count: t.unread_count })
        .collect();
    Ok(HttpResponse::Ok().json(ThreadsReply { threads }))
}

/// `GET /threads`' query.
#[derive(JsonSchema)]
pub struct Limit {
    /// Most threads returned.
    #[schemars(default = "gateway_core::extract::default_limit", range(min = 1, max = 100))]
    pub limit: u32,
}

impl Limit {
    fn read(q: &gateway_core::body::Query) -> Result<Self, ApiError> {
        Ok(Self { limit: q.int("limit", 1, 100)?.map_or(gateway_core::extract::default_limit(), |n| n as u32) })
    }
}

/// One thread of `GET /threads`.
#[derive(Serialize, JsonSchema)]
pub struct ThreadEntry {
    room_id: RoomId,
    /// The top-level message, with its `thread` summary.
    parent: LinkedMessage,
    /// Replies after the caller last read the thread (a thread page), not their own,
    /// not deleted.
    unread_count: i64,
}

/// The answer of `GET /threads`.
#[derive(Serialize, JsonSchema)]
pub struct ThreadsReply {
    threads: Vec<ThreadEntry>,
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
                    .describe("Stores the message with the room's next `seq` and delivers it to the members' sockets. A resend with the same `Idempotency-Key` (or `client_msg_id`) by the same sender returns the first message with `200` and `Idempotent-Replayed: true`. With `parent_id` it is a reply in that top-level message's thread (still a room message with the room's next `seq`); a parent that is not one of the room's messages, is deleted or is itself a reply is refused (`400`, field `parent_id`). `mentions` names room members (a non-member: `400`, field `mentions`); `\"@channel\"` mentions everyone and is for room admins only (`403`).")
                    .user()
                    .path_id::<chat_domain::ids::RoomId>("room_id", room)
                    .param::<gateway_core::messages::IdempotencyKey>("Idempotency-Key", "header", idempotency)
                    .json_example::<NewMessage>(json!({
                        "content": "Hello, world!",
                        "meta": {"type": "text"},
                        "mentions": ["user2"],
                    }))
                    .reply_example::<LinkedMessage>(201, "The message, stored.", message.clone())
                    .reply::<LinkedMessage>(200, "A resend: the message the first send stored.")
                    .reply_header("Idempotent-Replayed", replayed)
                    .errors(&[400, 401, 403, 404, 413, 503]),
            )
            .get(
                list,
                op("List a room's messages")
                    .describe("In `seq` order: after `after_seq` (from the start when absent), or the newest ones before `before_seq` when only that is given. Deleted messages keep their `seq` with empty content and `deleted_at` set. Thread replies are included (with `parent_id`) unless `threads=false`; a top-level message with replies carries `thread: {reply_count, last_reply_at, participants}`.")
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
        })
        .at(&["/rooms/{room_id}/messages/{message_id}/thread"], |r| {
            r.get(
                thread,
                op("Read a thread")
                    .describe("The top-level message (with its `thread` summary) and its replies after `after_seq` (room `seq`s), oldest first. Reading a page marks the thread read up to its newest reply (`GET /threads`' `unread_count`). A message that is itself a reply has no thread (`400`).")
                    .user()
                    .path_id::<chat_domain::ids::RoomId>("room_id", room)
                    .path_id::<chat_domain::ids::MessageId>("message_id", "The thread's top-level message (`msg_...`).")
                    .query::<ThreadQuery>()
                    .reply::<ThreadReply>(200, "The parent and a page of its replies.")
                    .errors(&[400, 401, 403, 404, 503]),
            )
        })
        .at(&["/threads"], |r| {
            r.get(
                threads,
                op("List my threads")
                    .describe("The threads the caller takes part in (they wrote the top-level message or replied), most recently replied to first, each with `unread_count`: replies by others since the caller last read a page of the thread.")
                    .user()
                    .query::<Limit>()
                    .reply::<ThreadsReply>(200, "The caller's threads.")
                    .errors(&[400, 401, 503]),
            )
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_domain::model::Attachment;

    /// Links that name the message and the file, as signed ones would.
    struct Links;

    impl AttachmentLinks for Links {
        fn url(&self, message: &Message, file: &Attachment) -> String {
            format!("https://files.example/{}/{}?sig=x", message.message_id, file.key)
        }
    }

    /// The page as it was made before the raw path: every message decoded, linked and
    /// encoded again.
    fn decoded_page(store_bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
        let messages: Vec<Message> = serde_json::from_slice(store_bytes)?;
        let page: Vec<LinkedMessage> = messages.into_iter().map(|m| linked(&Links, m)).collect();
        Ok(serde_json::to_vec(&page)?)
    }

    #[test]
    fn a_page_passed_on_as_it_came_is_the_page_decoded_and_encoded_again() -> anyhow::Result<()> {
        let (room, at) = ("room_01a2526aa7ab773c894ceffa560dc50a", "2026-12-07T21:00:00.123456Z");
        let id = |n: u32| format!("msg_01a2526aa7b773e3b28a4006569f{n:04x}");
        let base = |n: u32, content: &str| {
            serde_json::json!({
                "message_id": id(n), "room_id": room, "sender_id": "alice", "sender_name": null, "seq": n,
                "content": content, "meta": null, "client_msg_id": null, "created_at": at,
                "edited_at": null, "deleted_at": null, "reactions": [],
            })
        };
        let mut messages =
            vec![base(1, "plain"), base(2, "quotes \" backslash \\ tab \t nul-free \u{1f} emoji 🎉 é </script>")];
        let mut m = base(3, "edited, with meta");
        m["edited_at"] = serde_json::json!(at);
        m["sender_name"] = serde_json::json!("Ålice \"A\"");
        m["client_msg_id"] = serde_json::json!("c-1");
        m["meta"] =
            serde_json::json!({"z": 1, "a": [0.1, 1e300, -0.0, 12345678901234567890u64, -5], "m": {"k": "ü\n"}});
        messages.push(m);
        let mut m = base(4, "");
        m["deleted_at"] = serde_json::json!(at);
        messages.push(m);
        let mut m = base(5, "a thread, replied to, mentioning, reacted to, pinned");
        m["kind"] = serde_json::json!("system");
        m["reply_to"] = serde_json::json!(id(1));
        m["thread"] = serde_json::json!({"reply_count": 2, "last_reply_at": at, "participants": ["alice", "bob"]});
        m["mentions"] = serde_json::json!(["bob", "@channel"]);
        m["reactions"] = serde_json::json!([{"emoji": "👍", "count": 2, "user_ids": ["alice", "bob"], "me": true}]);
        m["pinned_at"] = serde_json::json!(at);
        m["pinned_by"] = serde_json::json!("bob");
        messages.push(m);
        let mut m = base(6, "a reply");
        m["parent_id"] = serde_json::json!(id(5));
        messages.push(m);
        let mut m = base(7, "with files");
        m["attachments"] = serde_json::json!([
            {"key": "t/a/1", "filename": "a \"b\".png", "mime_type": "image/png", "size": 10},
            {"key": "t/a/2", "filename": "c.pdf", "mime_type": "application/pdf", "size": 20},
        ]);
        messages.push(m);
        let mut m = base(8, "meta naming attachments");
        m["meta"] = serde_json::json!({"attachments": ["not files"]});
        messages.push(m);

        // What message-store sends: its own encoding of the messages it read.
        let stored: Vec<Message> = serde_json::from_value(serde_json::Value::Array(messages))?;
        let store_bytes = serde_json::to_vec(&stored)?;
        let raw: Vec<Box<RawValue>> = serde_json::from_slice(&store_bytes)?;
        let passed_on = page_body(&Links, &raw).map_err(|e| anyhow::anyhow!("{}", e.message))?;
        let expected = decoded_page(&store_bytes)?;
        assert_eq!(String::from_utf8(passed_on)?, String::from_utf8(expected)?);
        Ok(())
    }

    #[test]
    fn an_empty_page_is_an_empty_array() -> anyhow::Result<()> {
        assert_eq!(page_body(&Links, &[]).map_err(|e| anyhow::anyhow!("{}", e.message))?, b"[]");
        Ok(())
    }
}
