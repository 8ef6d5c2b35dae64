//! The `ws-conversations.md` codec: client frames `{"action": ..., ...}` as commands,
//! and the document's flat server frames `{"type": ..., ...}`.
//!
//! What the document leaves open, decided here: a frame naming another conversation
//! than the socket's is refused (`message.failed` for a send, `error` otherwise); bad
//! frames get `{"type":"error","code","error","field"}`; `chat_message` and
//! `messages_fetched` messages also carry their `seq`; `message.status` also carries
//! the `conversation_id` (a user's statuses reach all their sockets); inbox items and
//! live notifications arrive as `notification` frames; reactions (issue 23) are the
//! actions `add_reaction` / `remove_reaction` `{message_id, emoji}`, answered with
//! `reaction.sent`, and the frames `reaction.added`, `reaction.removed`,
//! `message.pinned`, `message.unpinned` (named like `message.status`).

use bytestring::ByteString;
use chat_domain::ApiError;
use chat_domain::emoji::Emoji;
use chat_domain::ids::{MessageId, RoomId, UserId};
use chat_domain::model::{Message, MessageContent, ReactionSummary, ThreadSummary, validate_client_id};
use chat_domain::proto::events::{RoomEvent, RoomEventBody, UserEvent, UserEventBody};
use chat_domain::proto::store::MAX_READ_IDS;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use gateway_core::session::codec::{Close, Codec, Rejected};
use gateway_core::session::command::{Command, Older, React, Reply, Send};

/// The codec every `/conversations` socket uses.
pub static CODEC: ConversationsCodec = ConversationsCodec;

/// `ws-conversations.md`.
#[derive(Debug)]
pub struct ConversationsCodec;

/// `fetch_messages` without a `limit`.
pub const DEFAULT_FETCH: u32 = 20;
/// The largest `fetch_messages` page; larger limits are cut to it.
pub const MAX_FETCH: u32 = 100;

/// The client frames of the document, by `action`. Fields are read loosely here and
/// checked below, so a wrong type gets an error naming the field.
#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
enum ClientFrame {
    SendMessage(SendFrame),
    Typing(TypingFrame),
    Read(ReadFrame),
    FetchMessages(FetchFrame),
    HeartbeatAck(Empty),
    Heartbeat(Empty),
    AddReaction(ReactFrame),
    RemoveReaction(ReactFrame),
}

/// The actions this dialect understands, for the unknown-action error.
pub const ACTIONS: [&str; 8] = [
    "send_message",
    "typing",
    "read",
    "fetch_messages",
    "heartbeat_ack",
    "heartbeat",
    "add_reaction",
    "remove_reaction",
];

#[derive(Deserialize)]
struct ReactFrame {
    #[serde(default)]
    conversation_id: Option<Value>,
    #[serde(default)]
    message_id: Option<Value>,
    #[serde(default)]
    emoji: Option<Value>,
}

impl ReactFrame {
    /// `add_reaction` / `remove_reaction` `{message_id, emoji}` (issue 23).
    fn command(self, room: &RoomId, add: bool) -> Result<Command, ApiError> {
        same_room(self.conversation_id, room)?;
        let id = text("message_id", self.message_id)?
            .ok_or_else(|| ApiError::validation("message_id", "message_id is required"))?;
        let message_id = message_id("message_id", id)?;
        let emoji = match self.emoji {
            Some(Value::String(s)) => Emoji::parse(s)?,
            _ => return Err(ApiError::validation("emoji", "emoji is required (a string)")),
        };
        Ok(Command::React(React { message_id, emoji, add }))
    }
}

#[derive(Deserialize)]
struct Empty {}

#[derive(Deserialize)]
struct SendFrame {
    #[serde(default)]
    conversation_id: Option<Value>,
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    local_id: Option<Value>,
    /// A thread reply: the thread's top-level message.
    #[serde(default)]
    parent_id: Option<Value>,
    /// Members to mention (`@channel`: everyone, admins only).
    #[serde(default)]
    mentions: Option<Value>,
}

#[derive(Deserialize)]
struct TypingFrame {
    #[serde(default)]
    conversation_id: Option<Value>,
    #[serde(default)]
    is_typing: Option<Value>,
}

#[derive(Deserialize)]
struct ReadFrame {
    #[serde(default)]
    conversation_id: Option<Value>,
    #[serde(default)]
    message_ids: Option<Value>,
}

#[derive(Deserialize)]
struct FetchFrame {
    #[serde(default)]
    conversation_id: Option<Value>,
    #[serde(default)]
    before_id: Option<Value>,
    #[serde(default)]
    limit: Option<Value>,
}

/// A string (or an integer, written as one) field; `null` counts as absent.
fn text(field: &str, v: Option<Value>) -> Result<Option<String>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        Some(_) => Err(ApiError::validation(field, format!("{field} must be a string"))),
    }
}

/// A frame may name its conversation; it must be the socket's.
fn same_room(v: Option<Value>, room: &RoomId) -> Result<(), ApiError> {
    match text("conversation_id", v)? {
        Some(named) if named != room.as_str() => Err(ApiError::validation(
            "conversation_id",
            format!("conversation_id {named:?} is not this connection's conversation ({room})"),
        )),
        _ => Ok(()),
    }
}

fn message_id(field: &str, raw: String) -> Result<MessageId, ApiError> {
    MessageId::parse(raw.as_str())
        .map_err(|e| ApiError::validation(field, format!("{raw:?} is not a valid message id: {e}")))
}

impl SendFrame {
    fn command(self, room: &RoomId) -> Result<Command, Rejected> {
        // A string, as REST's `client_msg_id`: a number would be an id the client
        // cannot match against the `local_id` it gets back.
        let local_id = match self.local_id {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                let error = ApiError::validation("local_id", "local_id must be a string");
                return Err(Rejected::Send { error, local_id: None });
            }
        };
        let reject = |error: ApiError| Rejected::Send { error, local_id: local_id.clone() };
        same_room(self.conversation_id, room).map_err(reject)?;
        if let Some(l) = &local_id {
            validate_client_id("local_id", l).map_err(reject)?;
        }
        let content = match self.content {
            None | Some(Value::Null) => return Err(reject(ApiError::validation("content", "content is required"))),
            Some(Value::String(s)) => MessageContent::parse(s).map_err(reject)?,
            Some(_) => return Err(reject(ApiError::validation("content", "content must be a string"))),
        };
        let parent_id = gateway_core::messages::parent_id("parent_id", self.parent_id).map_err(reject)?;
        let mentions = gateway_core::messages::mentions("mentions", self.mentions).map_err(reject)?;
        Ok(Command::Send(Send { content, local_id, meta: None, parent_id, mentions }))
    }
}

impl TypingFrame {
    fn command(self, room: &RoomId) -> Result<Command, ApiError> {
        same_room(self.conversation_id, room)?;
        match self.is_typing {
            None | Some(Value::Null) => Ok(Command::Typing(true)),
            Some(Value::Bool(b)) => Ok(Command::Typing(b)),
            Some(_) => Err(ApiError::validation("is_typing", "is_typing must be a boolean")),
        }
    }
}

impl ReadFrame {
    fn command(self, room: &RoomId) -> Result<Command, ApiError> {
        same_room(self.conversation_id, room)?;
        let bad = || ApiError::validation("message_ids", "message_ids must be an array of message ids");
        let raw = match self.message_ids {
            Some(Value::Array(items)) => items,
            _ => return Err(bad()),
        };
        if raw.is_empty() || raw.len() > MAX_READ_IDS {
            return Err(ApiError::validation(
                "message_ids",
                format!("message_ids must name 1 to {MAX_READ_IDS} messages"),
            ));
        }
        let mut ids = Vec::with_capacity(raw.len());
        for item in raw {
            let id = text("message_ids", Some(item))?.ok_or_else(bad)?;
            let id = message_id("message_ids", id)?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(Command::ReadMessages(ids))
    }
}

impl FetchFrame {
    fn command(self, room: &RoomId) -> Result<Command, ApiError> {
        same_room(self.conversation_id, room)?;
        let before_id = text("before_id", self.before_id)?.map(|id| message_id("before_id", id)).transpose()?;
        let limit = match self.limit {
            None | Some(Value::Null) => DEFAULT_FETCH,
            Some(v) => match v.as_i64() {
                Some(n) if n >= 1 => u32::try_from(n).unwrap_or(MAX_FETCH).min(MAX_FETCH),
                _ => return Err(ApiError::validation("limit", "limit must be an integer of at least 1")),
            },
        };
        Ok(Command::Older(Older { before_id, limit }))
    }
}

fn to_text<T: Serialize>(frame: &T) -> ByteString {
    match serde_json::to_string(frame) {
        Ok(s) => ByteString::from(s),
        Err(e) => {
            tracing::error!(error = %e, "could not serialize a frame");
            ByteString::from_static(r#"{"type":"error","code":"INTERNAL_ERROR","error":"unrenderable frame"}"#)
        }
    }
}

fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    chat_domain::time::format(t)
}

/// The `message` of a `chat_message` frame.
#[derive(Serialize)]
struct ChatMessage<'a> {
    id: &'a str,
    local_id: Option<&'a str>,
    sender_id: &'a str,
    content: &'a str,
    timestamp: String,
    status: &'static str,
    seq: i64,
    /// A thread reply's top-level message.
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_id: Option<&'a str>,
    /// A top-level message's thread, once it has replies.
    #[serde(skip_serializing_if = "Option::is_none")]
    thread: Option<&'a ThreadSummary>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    mentions: &'a [UserId],
    /// Reactions per emoji (`[]` when none).
    reactions: &'a [ReactionSummary],
    #[serde(skip_serializing_if = "Option::is_none")]
    pinned_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pinned_by: Option<&'a str>,
}

#[derive(Serialize)]
struct ChatMessageFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: ChatMessage<'a>,
}

/// A message of a `messages_fetched` frame.
#[derive(Serialize)]
struct Fetched<'a> {
    id: &'a str,
    sender_id: &'a str,
    content: &'a str,
    sent_at: String,
    is_edited: bool,
    is_deleted: bool,
    seq: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread: Option<&'a ThreadSummary>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    mentions: &'a [UserId],
    /// Reactions per emoji (`[]` when none; `me`: whether you reacted).
    reactions: &'a [ReactionSummary],
    #[serde(skip_serializing_if = "Option::is_none")]
    pinned_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pinned_by: Option<&'a str>,
}

impl<'a> From<&'a Message> for Fetched<'a> {
    fn from(m: &'a Message) -> Self {
        Self {
            id: m.message_id.as_str(),
            sender_id: m.sender_id.as_str(),
            content: &m.content,
            sent_at: time(&m.created_at),
            is_edited: m.edited_at.is_some(),
            is_deleted: m.deleted_at.is_some(),
            seq: m.seq,
            parent_id: m.parent_id.as_ref().map(MessageId::as_str),
            thread: m.thread.as_ref(),
            mentions: &m.mentions,
            reactions: &m.reactions,
            pinned_at: m.pinned_at.as_ref().map(time),
            pinned_by: m.pinned_by.as_ref().map(|u| u.as_str()),
        }
    }
}

fn error_frame(kind: &str, error: &ApiError, local_id: Option<&str>) -> ByteString {
    let mut frame = json!({"type": kind, "code": error.code.as_str(), "error": error.message});
    if kind == "message.failed" {
        frame["local_id"] = json!(local_id);
    }
    if let Some(field) = &error.field {
        frame["field"] = json!(field);
    }
    to_text(&frame)
}

fn notification(item: &chat_domain::proto::notify::InboxItem) -> ByteString {
    let mut frame = gateway_core::render::notification_data(item);
    frame["type"] = json!("notification");
    to_text(&frame)
}

impl Codec for ConversationsCodec {
    fn name(&self) -> &'static str {
        "conversations"
    }

    fn decode(&self, text: &str, room: &RoomId) -> Result<Command, Rejected> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| ApiError::validation("frame", format!("Malformed JSON: {e}")))?;
        let action = match value.get("action") {
            Some(Value::String(a)) => a.clone(),
            _ if !value.is_object() => {
                return Err(ApiError::validation("frame", "A frame is a JSON object with an \"action\"").into());
            }
            _ => return Err(ApiError::validation("action", "Frame needs a string \"action\"").into()),
        };
        if !ACTIONS.contains(&action.as_str()) {
            return Err(ApiError::validation(
                "action",
                format!("Unknown action {action:?}; known: {}", ACTIONS.join(", ")),
            )
            .into());
        }
        let frame: ClientFrame = serde_json::from_value(value)
            .map_err(|e| ApiError::validation("frame", format!("Invalid {action} frame: {e}")))?;
        Ok(match frame {
            ClientFrame::SendMessage(f) => f.command(room)?,
            ClientFrame::Typing(f) => f.command(room)?,
            ClientFrame::Read(f) => f.command(room)?,
            ClientFrame::FetchMessages(f) => f.command(room)?,
            ClientFrame::HeartbeatAck(_) | ClientFrame::Heartbeat(_) => Command::KeepAlive,
            ClientFrame::AddReaction(f) => f.command(room, true)?,
            ClientFrame::RemoveReaction(f) => f.command(room, false)?,
        })
    }

    fn reply(&self, room: &RoomId, reply: &Reply) -> Option<ByteString> {
        match reply {
            // A new message reaches the sender's socket with everyone's (`chat_message`
            // from the room); only a resend, which the room does not see again, is
            // answered here.
            Reply::Sent { sent, .. } => sent.duplicate.then(|| self.message(&sent.message, None)),
            Reply::SendFailed { error, local_id } => Some(error_frame("message.failed", error, local_id.as_deref())),
            Reply::Error(error) => Some(error_frame("error", error, None)),
            Reply::Older(messages) => {
                let messages: Vec<Fetched<'_>> = messages.iter().map(Fetched::from).collect();
                Some(to_text(&json!({
                    "type": "messages_fetched",
                    "conversation_id": room,
                    "messages": messages,
                })))
            }
            Reply::Notification(item) => Some(notification(item)),
            Reply::Reacted(c) => Some(to_text(&json!({
                "type": "reaction.sent",
                "conversation_id": room,
                "message_id": c.message_id,
                "emoji": c.emoji,
                "changed": c.changed,
                "count": c.count,
            }))),
            // The document has no frame for these: who is online arrives as
            // `user_status`, read receipts are not answered, and a shutdown closes
            // with 1001.
            Reply::Pong | Reply::Online { .. } | Reply::History(_) | Reply::Cursor(_) | Reply::Reconnect { .. } => None,
        }
    }

    fn message(&self, m: &Message, _fallback_name: Option<&str>) -> ByteString {
        to_text(&ChatMessageFrame {
            kind: "chat_message",
            message: ChatMessage {
                id: m.message_id.as_str(),
                local_id: m.client_msg_id.as_deref(),
                sender_id: m.sender_id.as_str(),
                content: &m.content,
                timestamp: time(&m.created_at),
                status: "sent",
                seq: m.seq,
                parent_id: m.parent_id.as_ref().map(MessageId::as_str),
                thread: m.thread.as_ref(),
                mentions: &m.mentions,
                reactions: &m.reactions,
                pinned_at: m.pinned_at.as_ref().map(time),
                pinned_by: m.pinned_by.as_ref().map(|u| u.as_str()),
            },
        })
    }

    fn room_event(&self, event: &RoomEvent) -> Option<ByteString> {
        let at = || time(&event.occurred_at);
        Some(match &event.body {
            RoomEventBody::MessageCreated(m) => self.message(m, None),
            RoomEventBody::PresenceJoined(p) => {
                to_text(&json!({"type": "user_status", "user_id": p.user_id, "status": "online", "timestamp": at()}))
            }
            RoomEventBody::PresenceLeft(p) => {
                to_text(&json!({"type": "user_status", "user_id": p.user_id, "status": "offline", "timestamp": at()}))
            }
            RoomEventBody::Typing(t) => to_text(&json!({
                "type": "typing",
                "user_id": t.user_id,
                "username": t.user_name.as_deref().unwrap_or(t.user_id.as_str()),
                "is_typing": t.is_typing,
            })),
            RoomEventBody::Read(c) => {
                to_text(&json!({"type": "read", "user_id": c.user_id, "message_ids": c.message_ids}))
            }
            RoomEventBody::ReactionAdded(r) | RoomEventBody::ReactionRemoved(r) => to_text(&json!({
                "type": event.body.kind(),
                "conversation_id": event.room_id,
                "message_id": r.message_id,
                "emoji": r.emoji,
                "user_id": r.user_id,
                "count": r.count,
                "timestamp": at(),
            })),
            RoomEventBody::MessagePinned(p) | RoomEventBody::MessageUnpinned(p) => to_text(&json!({
                "type": event.body.kind(),
                "conversation_id": event.room_id,
                "message_id": p.message_id,
                "user_id": p.by,
                "timestamp": time(&p.at),
            })),
            RoomEventBody::ThreadUpdated(t) => to_text(&json!({
                "type": "thread.updated",
                "conversation_id": event.room_id,
                "message_id": t.message_id,
                "seq": t.seq,
                "thread": t.thread,
            })),
            // Delivery reaches senders as `message.status`; edits, deletes and
            // membership have no frame in this document.
            RoomEventBody::Delivered(_)
            | RoomEventBody::MessageUpdated(_)
            | RoomEventBody::MessageDeleted(_)
            | RoomEventBody::MemberAdded(_)
            | RoomEventBody::MemberRemoved(_)
            | RoomEventBody::Moderation(_) => return None,
        })
    }

    fn user_event(&self, event: &UserEvent) -> Vec<ByteString> {
        match &event.body {
            UserEventBody::MessageStatus(s) => {
                let timestamp = time(&event.occurred_at);
                s.message_ids
                    .iter()
                    .map(|id| {
                        to_text(&json!({
                            "type": "message.status",
                            "message_id": id,
                            "status": s.status,
                            "timestamp": timestamp,
                            "conversation_id": s.room_id,
                        }))
                    })
                    .collect()
            }
            UserEventBody::Notification(item) => vec![notification(item)],
            // The hub applies it to the user's block set; no frame.
            UserEventBody::BlockChanged(_) => Vec::new(),
        }
    }

    fn heartbeat(&self) -> Option<ByteString> {
        Some(ByteString::from_static(r#"{"type":"heartbeat"}"#))
    }

    fn acks_delivery(&self) -> bool {
        true
    }

    fn close_code(&self, why: Close) -> u16 {
        match why {
            // Retryable ("try again later").
            Close::Slow => 1013,
            // The document's "access denied".
            Close::Removed => 4004,
            // As a missing, invalid or expired token at connect.
            Close::Revoked | Close::Expired => crate::UNAUTHORIZED,
            // Retryable ("try again later"), as a rate-limited connect.
            Close::TooMany => 1013,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> anyhow::Result<RoomId> {
        Ok(RoomId::parse("room_1")?)
    }

    fn decode(text: &str) -> anyhow::Result<Result<Command, Rejected>> {
        Ok(CODEC.decode(text, &room()?))
    }

    fn field(r: Result<Command, Rejected>) -> Option<String> {
        match r {
            Err(Rejected::Frame(e)) | Err(Rejected::Send { error: e, .. }) => e.field,
            Ok(_) => None,
        }
    }

    #[test]
    fn sends_name_their_conversation_and_keep_the_local_id() -> anyhow::Result<()> {
        let ok = decode(r#"{"action":"send_message","conversation_id":"room_1","content":"hi","local_id":"t1"}"#)?;
        assert!(matches!(ok, Ok(Command::Send(Send { local_id: Some(ref l), .. })) if l == "t1"));
        let other = decode(r#"{"action":"send_message","conversation_id":"room_2","content":"hi","local_id":"t2"}"#)?;
        assert!(
            matches!(other, Err(Rejected::Send { local_id: Some(ref l), ref error }) if l == "t2" && error.field.as_deref() == Some("conversation_id")),
            "another conversation is refused as a failed send"
        );
        let blank = decode(r#"{"action":"send_message","content":"  ","local_id":"t3"}"#)?;
        assert!(matches!(blank, Err(Rejected::Send { local_id: Some(_), .. })));
        // A number is not a local id (REST refuses a non-string client_msg_id alike).
        for id in ["7", "1.5", "{}", "[\"a\"]", "true"] {
            let frame = format!(r#"{{"action":"send_message","content":"hi","local_id":{id}}}"#);
            let refused = decode(&frame)?;
            assert!(
                matches!(refused, Err(Rejected::Send { local_id: None, ref error }) if error.field.as_deref() == Some("local_id")),
                "local_id {id} is refused: {refused:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn bad_frames_name_what_is_wrong() -> anyhow::Result<()> {
        assert_eq!(field(decode("{")?), Some("frame".into()));
        assert_eq!(field(decode("[1]")?), Some("frame".into()));
        assert_eq!(field(decode(r#"{"type":"typing"}"#)?), Some("action".into()));
        assert_eq!(field(decode(r#"{"action":"dance"}"#)?), Some("action".into()));
        assert_eq!(field(decode(r#"{"action":"typing","is_typing":"yes"}"#)?), Some("is_typing".into()));
        assert_eq!(field(decode(r#"{"action":"read","message_ids":[]}"#)?), Some("message_ids".into()));
        assert_eq!(field(decode(r#"{"action":"read","message_ids":["a.b"]}"#)?), Some("message_ids".into()));
        assert_eq!(field(decode(r#"{"action":"fetch_messages","limit":0}"#)?), Some("limit".into()));
        assert_eq!(
            field(decode(r#"{"action":"fetch_messages","conversation_id":"x"}"#)?),
            Some("conversation_id".into())
        );
        Ok(())
    }

    #[test]
    fn fetch_limits_default_and_cap() -> anyhow::Result<()> {
        let limit = |text: &str| -> anyhow::Result<Option<u32>> {
            Ok(match decode(text)? {
                Ok(Command::Older(o)) => Some(o.limit),
                _ => None,
            })
        };
        assert_eq!(limit(r#"{"action":"fetch_messages"}"#)?, Some(DEFAULT_FETCH));
        assert_eq!(limit(r#"{"action":"fetch_messages","limit":500}"#)?, Some(MAX_FETCH));
        assert_eq!(limit(r#"{"action":"fetch_messages","limit":7,"before_id":"msg_1"}"#)?, Some(7));
        Ok(())
    }

    #[test]
    fn heartbeats_keep_alive() -> anyhow::Result<()> {
        assert!(matches!(decode(r#"{"action":"heartbeat_ack"}"#)?, Ok(Command::KeepAlive)));
        assert!(matches!(decode(r#"{"action":"heartbeat"}"#)?, Ok(Command::KeepAlive)));
        Ok(())
    }
}
