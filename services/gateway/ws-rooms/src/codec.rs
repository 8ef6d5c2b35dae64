//! The `ws-rooms.md` codec: client frames `{"type","data"}` as commands, and server
//! frames in the document's envelope `{"type","data","timestamp","room_id"}`. Reactions
//! and pins (issue 23, this server's additions): client `add_reaction` /
//! `remove_reaction` answered by `reaction_sent`; server `reaction_added`,
//! `reaction_removed`, `message_pinned`, `message_unpinned`.

use bytestring::ByteString;
use chat_domain::ApiError;
use chat_domain::emoji::Emoji;
use chat_domain::ids::MessageId;
use chat_domain::ids::{RoomId, UserId};
use chat_domain::model::{Message, MessageContent, ReactionSummary, ThreadSummary, validate_client_id, validate_meta};
use chat_domain::proto::events::{RoomEvent, RoomEventBody, UserEvent, UserEventBody};
use chat_domain::proto::notify::InboxItem;
use chat_domain::proto::store::CursorKind;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use gateway_core::attachments::AttachmentLinks;
use gateway_core::attachments::{Attachments, SignedLinks};
use gateway_core::render::notification_data;
use gateway_core::session::codec::{Close, Codec, Rejected};
use gateway_core::session::command::{Command, History, React, Reply, Send};

/// `ws-rooms.md`. One per gateway: a file message's `attachments` carry links signed
/// with the gateway's key, as `/api/chat` renders them.
#[derive(Debug)]
pub struct WsRoomsCodec {
    attachments: Attachments,
}

impl WsRoomsCodec {
    /// The codec of this gateway's `/ws` sockets. The fan-out holds codecs as
    /// `&'static`, so it lives as long as the process (one per gateway built).
    pub fn leak(attachments: Attachments) -> &'static WsRoomsCodec {
        Box::leak(Box::new(WsRoomsCodec { attachments }))
    }

    fn links(&self) -> SignedLinks<'_> {
        SignedLinks::new(&self.attachments)
    }
}

/// A client frame's envelope; `data` is read per type below.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: Value,
    #[serde(default)]
    data: Value,
}

/// The client frames of the document (and this server's additions), by `type`.
#[derive(Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
enum ClientFrame {
    Ping(Empty),
    Typing(TypingData),
    GetOnlineUsers(Empty),
    SendMessage(SendData),
    FetchMessages(FetchData),
    Ack(SeqData),
    Delivered(SeqData),
    Read(SeqData),
    AddReaction(ReactData),
    RemoveReaction(ReactData),
}

#[derive(Deserialize)]
struct ReactData {
    #[serde(default)]
    message_id: Option<Value>,
    #[serde(default)]
    emoji: Option<Value>,
}

#[derive(Deserialize)]
struct Empty {}

#[derive(Deserialize)]
struct TypingData {
    #[serde(default)]
    is_typing: Option<Value>,
}

#[derive(Deserialize)]
struct SendData {
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    local_id: Option<Value>,
    #[serde(default)]
    meta: Option<Value>,
    /// A thread reply: the thread's top-level message.
    #[serde(default)]
    parent_id: Option<Value>,
    /// Members to mention (`@channel`: everyone, room admins only).
    #[serde(default)]
    mentions: Option<Value>,
}

#[derive(Deserialize)]
struct FetchData {
    #[serde(default)]
    after_seq: Option<Value>,
    #[serde(default)]
    before_seq: Option<Value>,
    #[serde(default)]
    limit: Option<Value>,
}

#[derive(Deserialize)]
struct SeqData {
    #[serde(default)]
    seq: Option<Value>,
}

/// The type names this dialect understands, for the unknown-type error.
pub const TYPES: [&str; 10] = [
    "ping",
    "typing",
    "get_online_users",
    "send_message",
    "fetch_messages",
    "ack",
    "delivered",
    "read",
    "add_reaction",
    "remove_reaction",
];

/// An optional integer field of at least `min` (`null` counts as absent).
fn int(field: &str, v: Option<Value>, min: i64) -> Result<Option<i64>, ApiError> {
    match v.filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(v) => match v.as_i64() {
            Some(n) if n >= min => Ok(Some(n)),
            _ => Err(ApiError::validation(field, format!("{field} must be an integer of at least {min}"))),
        },
    }
}

impl TryFrom<SendData> for Send {
    type Error = Rejected;

    fn try_from(d: SendData) -> Result<Self, Rejected> {
        let local_id = match d.local_id.filter(|v| !v.is_null()) {
            None => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => return Err(ApiError::validation("local_id", "local_id must be a string").into()),
        };
        let reject = |error: ApiError| Rejected::Send { error, local_id: local_id.clone() };
        let content = match d.content.filter(|v| !v.is_null()) {
            None => return Err(reject(ApiError::validation("content", "content is required"))),
            Some(Value::String(s)) => MessageContent::parse(s).map_err(reject)?,
            Some(_) => return Err(reject(ApiError::validation("content", "content must be a string"))),
        };
        let meta = d.meta.filter(|m| !m.is_null());
        if let Some(m) = &meta {
            validate_meta(m).map_err(reject)?;
        }
        if let Some(l) = &local_id {
            validate_client_id("local_id", l).map_err(reject)?;
        }
        let parent_id = gateway_core::messages::parent_id("parent_id", d.parent_id).map_err(reject)?;
        let mentions = gateway_core::messages::mentions("mentions", d.mentions).map_err(reject)?;
        Ok(Send { content, local_id, meta, parent_id, mentions })
    }
}

impl TryFrom<FetchData> for History {
    type Error = ApiError;

    fn try_from(d: FetchData) -> Result<Self, ApiError> {
        let limit = int("limit", d.limit, 1)?.unwrap_or(50);
        if limit > 100 {
            return Err(ApiError::validation("limit", "limit must be at most 100"));
        }
        Ok(History {
            after_seq: int("after_seq", d.after_seq, 0)?,
            before_seq: int("before_seq", d.before_seq, 1)?,
            limit: u32::try_from(limit).unwrap_or(50),
        })
    }
}

/// `add_reaction` / `remove_reaction` `{message_id, emoji}` (issue 23).
fn react(d: ReactData, add: bool) -> Result<Command, Rejected> {
    let message_id = match d.message_id {
        Some(Value::String(s)) => MessageId::parse(s.as_str())
            .map_err(|e| ApiError::validation("message_id", format!("message_id is not a valid message id: {e}")))?,
        _ => return Err(ApiError::validation("message_id", "message_id is required (a string)").into()),
    };
    let emoji = match d.emoji {
        Some(Value::String(s)) => Emoji::parse(s)?,
        _ => return Err(ApiError::validation("emoji", "emoji is required (a string)").into()),
    };
    Ok(Command::React(React { message_id, emoji, add }))
}

fn cursor(kind: CursorKind, d: SeqData) -> Result<Command, Rejected> {
    let seq =
        int("seq", d.seq, 0)?.ok_or_else(|| ApiError::validation("seq", "seq must be an integer of at least 0"))?;
    Ok(Command::Cursor { kind, seq })
}

fn now() -> String {
    chat_domain::time::format(&chat_domain::time::now())
}

/// The document's envelope, serialized once.
#[derive(Serialize)]
struct Frame<'a, D: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: D,
    timestamp: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    room_id: Option<&'a str>,
}

fn frame<D: Serialize>(kind: &str, data: D, room: Option<&RoomId>) -> ByteString {
    let timestamp = now();
    let f = Frame { kind, data, timestamp: &timestamp, room_id: room.map(RoomId::as_str) };
    match serde_json::to_string(&f) {
        Ok(s) => ByteString::from(s),
        Err(e) => {
            tracing::error!(error = %e, kind, "could not serialize a frame");
            ByteString::from_static(
                r#"{"type":"error","data":{"code":"INTERNAL_ERROR","message":"unrenderable frame"}}"#,
            )
        }
    }
}

/// `meta`, or `{}` when the message has none.
struct Meta<'a>(Option<&'a Value>);

impl Serialize for Meta<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(v) => v.serialize(s),
            None => Map::new().serialize(s),
        }
    }
}

/// The `data` of a `message` frame (also the message of the document's REST helpers).
#[derive(Serialize, JsonSchema)]
pub struct MessageData<'a> {
    /// The message id (the same as `message_id`).
    id: &'a str,
    message_id: &'a str,
    /// Position in the room, from 1, without gaps.
    seq: i64,
    sender_id: &'a str,
    /// The name sent with the message, else the sender's id.
    sender_name: &'a str,
    content: &'a str,
    /// The sender's `message_type` (kept in `meta.type`), `text` by default; `system`
    /// for a system notice.
    message_type: &'a str,
    /// The sender's `meta` (`{}` when none was sent).
    #[schemars(with = "Map<String, Value>")]
    meta: Meta<'a>,
    /// The sender's `client_msg_id`, when one was given.
    local_id: Option<&'a str>,
    #[schemars(extend("format" = "date-time"))]
    created_at: String,
    #[schemars(extend("format" = "date-time"))]
    edited_at: Option<String>,
    /// When the message was deleted (its content is then empty).
    #[schemars(extend("format" = "date-time"))]
    deleted_at: Option<String>,
    /// In a `message_sent` frame only: whether the send was a resend.
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate: Option<bool>,
    /// In a `message_sent` frame only: `sent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
    /// A file message's files (absent for messages without files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    attachments: Vec<FileLink<'a>>,
    /// A thread reply's top-level message (absent for other messages).
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_id: Option<&'a str>,
    /// A top-level message's thread, once it has replies.
    #[serde(skip_serializing_if = "Option::is_none")]
    thread: Option<&'a ThreadSummary>,
    /// Mentioned members (`@channel`: everyone); absent when none.
    #[serde(default, skip_serializing_if = "<[_]>::is_empty")]
    mentions: &'a [UserId],
    /// Reactions per emoji (`[]` when none; `me`: whether you reacted).
    #[schemars(with = "Vec<ReactionSummary>")]
    reactions: &'a [ReactionSummary],
    /// When the message was pinned (absent when it is not).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pinned_at: Option<String>,
    /// Who pinned it (absent when it is not pinned).
    #[serde(skip_serializing_if = "Option::is_none")]
    pinned_by: Option<&'a str>,
}

/// A file of a message, with the link it is read from.
#[derive(Serialize, JsonSchema)]
pub struct FileLink<'a> {
    /// A signed link to the file's bytes, valid for a limited time.
    url: String,
    filename: &'a str,
    mime_type: &'a str,
    /// Size in bytes.
    size: u64,
}

impl<'a> MessageData<'a> {
    pub(crate) fn of(m: &'a Message, fallback_name: Option<&'a str>, links: &dyn AttachmentLinks) -> Self {
        // A system notice (of `/api/chat`) shows as one; otherwise the sender's meta.type.
        let message_type = match m.kind {
            chat_domain::model::MessageKind::System => "system",
            chat_domain::model::MessageKind::Text => {
                m.meta.as_ref().and_then(|meta| meta.get("type")).and_then(Value::as_str).unwrap_or("text")
            }
        };
        Self {
            id: m.message_id.as_str(),
            message_id: m.message_id.as_str(),
            seq: m.seq,
            sender_id: m.sender_id.as_str(),
            sender_name: m.sender_name.as_deref().or(fallback_name).unwrap_or(m.sender_id.as_str()),
            content: &m.content,
            message_type,
            meta: Meta(m.meta.as_ref()),
            local_id: m.client_msg_id.as_deref(),
            created_at: chat_domain::time::format(&m.created_at),
            edited_at: m.edited_at.as_ref().map(chat_domain::time::format),
            deleted_at: m.deleted_at.as_ref().map(chat_domain::time::format),
            duplicate: None,
            status: None,
            attachments: m
                .attachments
                .iter()
                .map(|a| FileLink {
                    url: links.url(m, a),
                    filename: &a.filename,
                    mime_type: &a.mime_type,
                    size: a.size,
                })
                .collect(),
            parent_id: m.parent_id.as_ref().map(|p| p.as_str()),
            thread: m.thread.as_ref(),
            mentions: &m.mentions,
            reactions: &m.reactions,
            pinned_at: m.pinned_at.as_ref().map(chat_domain::time::format),
            pinned_by: m.pinned_by.as_ref().map(|u| u.as_str()),
        }
    }
}

/// A `notification` frame from an inbox item: the document's `id`, `title`, `content`,
/// `action_url`, `priority`, `icon` (read from the payload when it has them), plus the
/// `topic`, the whole `payload`, and `kind` (`notification` or `message`).
fn notification(item: &InboxItem) -> ByteString {
    let b = &item.body;
    let room = b.get("room_id").and_then(Value::as_str).and_then(|r| RoomId::parse(r).ok());
    frame("notification", notification_data(item), room.as_ref())
}

impl Codec for WsRoomsCodec {
    fn name(&self) -> &'static str {
        "ws-rooms"
    }

    fn decode(&self, text: &str, _room: &RoomId) -> Result<Command, Rejected> {
        let env: Envelope =
            serde_json::from_str(text).map_err(|e| ApiError::validation("frame", format!("Malformed JSON: {e}")))?;
        let kind = match &env.kind {
            Value::String(k) => k.clone(),
            _ => return Err(ApiError::validation("type", "Frame needs a string \"type\"").into()),
        };
        if !TYPES.contains(&kind.as_str()) {
            return Err(ApiError::validation("type", format!("Unknown frame type {kind:?}")).into());
        }
        let data = match env.data {
            Value::Null => Value::Object(Map::new()),
            d @ Value::Object(_) => d,
            _ => return Err(ApiError::validation("data", "\"data\" must be an object").into()),
        };
        let frame: ClientFrame = serde_json::from_value(json!({"type": kind, "data": data}))
            .map_err(|e| ApiError::validation("data", format!("Invalid {kind} frame: {e}")))?;
        match frame {
            ClientFrame::Ping(_) => Ok(Command::Ping),
            ClientFrame::Typing(d) => {
                Ok(Command::Typing(d.is_typing.as_ref().and_then(Value::as_bool).unwrap_or(true)))
            }
            ClientFrame::GetOnlineUsers(_) => Ok(Command::OnlineUsers),
            ClientFrame::SendMessage(d) => Ok(Command::Send(Send::try_from(d)?)),
            ClientFrame::FetchMessages(d) => Ok(Command::History(History::try_from(d)?)),
            ClientFrame::Ack(d) | ClientFrame::Delivered(d) => cursor(CursorKind::Delivered, d),
            ClientFrame::Read(d) => cursor(CursorKind::Read, d),
            ClientFrame::AddReaction(d) => react(d, true),
            ClientFrame::RemoveReaction(d) => react(d, false),
        }
    }

    fn reply(&self, room: &RoomId, reply: &Reply) -> Option<ByteString> {
        let room = Some(room);
        Some(match reply {
            Reply::Pong => frame("pong", json!({}), room),
            Reply::Online { user_id, online, total_participants, total_online } => {
                let mut data = json!({
                    "status": "connected",
                    "user_id": user_id,
                    "room_id": room.map(RoomId::as_str),
                    "online_users": online,
                    "total_participants": total_participants,
                });
                // A big room: `online_users` is the user alone; the count, and a flag
                // saying the list is partial (`get_online_users` reads the whole one).
                if let Some(total) = total_online {
                    data["total_online"] = json!(total);
                    data["online_users_complete"] = json!(false);
                }
                frame("connection_status", data, room)
            }
            Reply::Sent { sent, sender_name } => {
                let mut data = MessageData::of(&sent.message, sender_name.as_deref(), &self.links());
                data.duplicate = Some(sent.duplicate);
                data.status = Some("sent");
                frame("message_sent", data, room)
            }
            Reply::SendFailed { error, local_id } => {
                let mut data = json!({"code": error.code.as_str(), "message": error.message});
                if let Some(l) = local_id {
                    data["local_id"] = json!(l);
                }
                frame("error", data, room)
            }
            Reply::Error(error) => frame("error", json!({"code": error.code.as_str(), "message": error.message}), room),
            Reply::History(messages) | Reply::Older(messages) => {
                let items: Vec<MessageData<'_>> = {
                    let links = self.links();
                    messages.iter().map(|m| MessageData::of(m, None, &links)).collect()
                };
                frame("messages", json!({"messages": items}), room)
            }
            Reply::Cursor(c) => {
                frame("cursor", json!({"delivered_seq": c.delivered_seq, "read_seq": c.read_seq}), room)
            }
            Reply::Reacted(c) => frame(
                "reaction_sent",
                json!({
                    "message_id": c.message_id,
                    "emoji": c.emoji,
                    "changed": c.changed,
                    "count": c.count,
                    "reactions": c.reactions,
                }),
                room,
            ),
            Reply::Notification(item) => notification(item),
            Reply::Reconnect { delay_ms } => {
                frame("reconnect", json!({"reason": "server shutting down", "delay_ms": delay_ms}), room)
            }
        })
    }

    fn message(&self, message: &Message, fallback_name: Option<&str>) -> ByteString {
        frame("message", MessageData::of(message, fallback_name, &self.links()), Some(&message.room_id))
    }

    fn room_event(&self, event: &RoomEvent) -> Option<ByteString> {
        let room = Some(&event.room_id);
        let at = || chat_domain::time::format(&event.occurred_at);
        Some(match &event.body {
            RoomEventBody::MessageCreated(m) => self.message(m, None),
            RoomEventBody::PresenceJoined(p) => frame(
                "user_joined",
                json!({
                    "user_id": p.user_id,
                    "user_name": p.user_name.as_deref().unwrap_or(p.user_id.as_str()),
                    "joined_at": at(),
                    "meta": {},
                }),
                room,
            ),
            RoomEventBody::PresenceLeft(p) => frame(
                "user_left",
                json!({
                    "user_id": p.user_id,
                    "user_name": p.user_name.as_deref().unwrap_or(p.user_id.as_str()),
                    "left_at": at(),
                }),
                room,
            ),
            RoomEventBody::Typing(t) => frame(
                "typing",
                json!({
                    "user_id": t.user_id,
                    "user_name": t.user_name.as_deref().unwrap_or(t.user_id.as_str()),
                    "is_typing": t.is_typing,
                }),
                room,
            ),
            RoomEventBody::Delivered(c) | RoomEventBody::Read(c) => {
                frame(event.body.kind(), json!({"user_id": c.user_id, "seq": c.seq, "at": at()}), room)
            }
            RoomEventBody::MessageUpdated(u) => frame(
                "message_updated",
                json!({
                    "id": u.message_id,
                    "seq": u.seq,
                    "content": u.content,
                    "edited_at": chat_domain::time::format(&u.edited_at),
                    "edit_reason": u.edit_reason,
                }),
                room,
            ),
            RoomEventBody::MessageDeleted(d) => frame(
                "message_deleted",
                json!({
                    "id": d.message_id,
                    "seq": d.seq,
                    "deleted_by": d.deleted_by,
                    "deleted_at": chat_domain::time::format(&d.deleted_at),
                }),
                room,
            ),
            RoomEventBody::ReactionAdded(r) | RoomEventBody::ReactionRemoved(r) => frame(
                if matches!(event.body, RoomEventBody::ReactionAdded(_)) {
                    "reaction_added"
                } else {
                    "reaction_removed"
                },
                json!({
                    "message_id": r.message_id,
                    "seq": r.seq,
                    "emoji": r.emoji,
                    "user_id": r.user_id,
                    "count": r.count,
                }),
                room,
            ),
            RoomEventBody::MessagePinned(p) => frame(
                "message_pinned",
                json!({
                    "id": p.message_id,
                    "seq": p.seq,
                    "pinned_by": p.by,
                    "pinned_at": chat_domain::time::format(&p.at),
                }),
                room,
            ),
            RoomEventBody::MessageUnpinned(p) => frame(
                "message_unpinned",
                json!({
                    "id": p.message_id,
                    "seq": p.seq,
                    "unpinned_by": p.by,
                    "unpinned_at": chat_domain::time::format(&p.at),
                }),
                room,
            ),
            RoomEventBody::ThreadUpdated(t) => {
                frame("thread_updated", json!({"message_id": t.message_id, "seq": t.seq, "thread": t.thread}), room)
            }
            // Room moderation: a ban, unban, mute, unmute, role or slow-mode change.
            RoomEventBody::Moderation(m) => frame(
                "moderation",
                json!({
                    "action": m.action,
                    "actor_id": m.actor_id,
                    "user_id": m.user_id,
                    "reason": m.reason,
                    "expires_at": m.expires_at.as_ref().map(chat_domain::time::format),
                    "role": m.role,
                    "slow_mode_secs": m.slow_mode_secs,
                    "at": at(),
                }),
                room,
            ),
            RoomEventBody::MemberAdded(_) | RoomEventBody::MemberRemoved(_) => return None,
        })
    }

    fn user_event(&self, event: &UserEvent) -> Vec<ByteString> {
        match &event.body {
            UserEventBody::MessageStatus(s) => vec![frame(
                "message_status",
                json!({
                    "room_id": s.room_id,
                    "message_ids": s.message_ids,
                    "up_to_seq": s.up_to_seq,
                    "status": s.status,
                    "user_id": s.by,
                    "timestamp": chat_domain::time::format(&event.occurred_at),
                }),
                Some(&s.room_id),
            )],
            UserEventBody::Notification(item) => vec![notification(item)],
            // The hub applies it to the user's block set; no frame.
            UserEventBody::BlockChanged(_) => Vec::new(),
        }
    }

    fn close_code(&self, why: Close) -> u16 {
        match why {
            // Retryable: resume by seq.
            Close::Slow => 1013,
            // The document's "room access denied".
            Close::Removed => 4003,
            // The document's "unauthorized (invalid API key)": the key was rotated, or
            // the token expired or was revoked.
            Close::Revoked | Close::Expired => 4001,
            // The document's "rate limit exceeded".
            Close::TooMany => 4004,
        }
    }
}
