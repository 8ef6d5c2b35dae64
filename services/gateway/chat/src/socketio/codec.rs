//! The Socket.IO dialect's side of the fan-out: room events rendered once per event as
//! the Engine.IO message of a Socket.IO event on namespace `/`
//! (`42["new-message",{...}]`), the same bytes for every socket in `chat-<id>` whether
//! a long-polling response or a WebSocket frame carries them. Payloads are shaped as
//! `rest-chat.md`'s REST responses (`crate::render`).
//!
//! A Socket.IO connection is not one room's socket: it joins and leaves chats with
//! events and acks, so its client packets are read by `socket`, not by [`Codec::decode`].
//! The room-scoped ones (`typing-start`, `typing-stop`) still decode here, so that the
//! codec states the whole dialect.

use bytestring::ByteString;
use chat_domain::ApiError;
use chat_domain::ids::RoomId;
use chat_domain::model::Message;
use chat_domain::proto::events::{RoomEvent, RoomEventBody, UserEvent};
use serde_json::{Value, json};

use crate::socketio::packet::{self, EnginePacket, SocketKind, SocketPacket};
use crate::socketio::render;
use gateway_core::attachments::AttachmentLinks;
use gateway_core::attachments::{Attachments, SignedLinks};
use gateway_core::session::codec::{Close, Codec, Rejected};
use gateway_core::session::command::{Command, Reply};

/// Socket.IO v5 over Engine.IO v4 (`rest-chat.md`'s real-time side). One per gateway:
/// it signs the attachment links of the messages it renders with the gateway's link
/// key, as `/api/chat` does.
#[derive(Debug)]
pub struct SocketIoCodec {
    attachments: Attachments,
}

impl SocketIoCodec {
    /// The codec of this gateway's Socket.IO memberships. The fan-out holds codecs as
    /// `&'static`, so it lives as long as the process (one per gateway built).
    pub fn leak(attachments: Attachments) -> &'static SocketIoCodec {
        Box::leak(Box::new(SocketIoCodec { attachments }))
    }

    fn links(&self) -> SignedLinks<'_> {
        SignedLinks::new(&self.attachments)
    }
}

fn frame(name: &str, payload: &Value) -> ByteString {
    ByteString::from(packet::event(name, payload))
}

/// The server → client event a room event becomes, with its payload; `None` for events
/// `rest-chat.md` does not name (presence, delivered cursors).
pub(crate) fn event_of(event: &RoomEvent, links: &dyn AttachmentLinks) -> Option<(&'static str, Value)> {
    let chat_id = event.room_id.as_str();
    Some(match &event.body {
        RoomEventBody::MessageCreated(m) => ("new-message", render::message(m, links)),
        RoomEventBody::MessageUpdated(u) => ("message-edited", render::edited(&event.room_id, u, links)),
        RoomEventBody::MessageDeleted(d) => ("message-deleted", render::deleted(&event.room_id, d, links)),
        RoomEventBody::Read(c) => ("messages-read", render::read(&event.room_id, c, event.occurred_at)),
        RoomEventBody::MemberAdded(m) => ("participants-added", render::participants_added(&event.room_id, m)),
        RoomEventBody::MemberRemoved(r) => ("participant-removed", render::participant_removed(&event.room_id, r)),
        RoomEventBody::Typing(t) => {
            ("user-typing", json!({"chatId": chat_id, "userId": t.user_id.as_str(), "isTyping": t.is_typing}))
        }
        RoomEventBody::ReactionAdded(r) => ("reaction-added", render::reaction(&event.room_id, r)),
        RoomEventBody::ReactionRemoved(r) => ("reaction-removed", render::reaction(&event.room_id, r)),
        RoomEventBody::MessagePinned(p) => ("message-pinned", render::pinned(&event.room_id, p, links)),
        RoomEventBody::MessageUnpinned(p) => ("message-unpinned", render::unpinned(&event.room_id, p)),
        RoomEventBody::ThreadUpdated(t) => (
            "thread-updated",
            json!({
                "chatId": chat_id,
                "messageId": t.message_id.as_str(),
                "seq": t.seq,
                "thread": t.thread.as_ref().map(crate::render::thread),
            }),
        ),
        RoomEventBody::Moderation(m) => ("chat-moderation", render::moderation(&event.room_id, m, event.occurred_at)),
        RoomEventBody::PresenceJoined(_) | RoomEventBody::PresenceLeft(_) | RoomEventBody::Delivered(_) => {
            return None;
        }
    })
}

/// The chat an event's argument names: `"room_…"` or `{"chatId": "room_…"}`.
pub fn chat_arg(args: &[Value]) -> Result<RoomId, ApiError> {
    let id = match args.first() {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(Value::Object(o)) => o.get("chatId").and_then(Value::as_str),
        _ => None,
    };
    let id = id.ok_or_else(|| ApiError::validation("chatId", "chatId is required"))?;
    RoomId::parse(id).map_err(|_| ApiError::not_found("Chat not found"))
}

impl Codec for SocketIoCodec {
    fn name(&self) -> &'static str {
        "socketio"
    }

    /// A WebSocket text frame `42["typing-start","room_…"]` (or `typing-stop`) for `room`.
    fn decode(&self, text: &str, room: &RoomId) -> Result<Command, Rejected> {
        let bad = |why: String| Rejected::Frame(ApiError::validation("packet", why));
        let EnginePacket::Message(inner) = EnginePacket::parse_text(text).map_err(|e| bad(e.0))? else {
            return Err(bad("not an Engine.IO message".to_owned()));
        };
        let p = SocketPacket::parse(&inner).map_err(|e| bad(e.0))?;
        let Some(Value::Array(items)) = p.data.filter(|_| p.kind == SocketKind::Event) else {
            return Err(bad("not a Socket.IO event".to_owned()));
        };
        let (name, args) = items.split_first().ok_or_else(|| bad("an event without a name".to_owned()))?;
        let typing = match name.as_str() {
            Some("typing-start") => true,
            Some("typing-stop") => false,
            _ => return Err(bad("not a typing event".to_owned())),
        };
        if chat_arg(args)? != *room {
            return Err(Rejected::Frame(ApiError::forbidden("Join the chat first")));
        }
        Ok(Command::Typing(typing))
    }

    /// Socket.IO answers with acks (`socket`); the session core's replies have no frame.
    fn reply(&self, _room: &RoomId, _reply: &Reply) -> Option<ByteString> {
        None
    }

    fn message(&self, message: &Message, _fallback_name: Option<&str>) -> ByteString {
        frame("new-message", &render::message(message, &self.links()))
    }

    fn room_event(&self, event: &RoomEvent) -> Option<ByteString> {
        event_of(event, &self.links()).map(|(name, payload)| frame(name, &payload))
    }

    /// `rest-chat.md` has no per-user events on its socket.
    fn user_event(&self, _event: &UserEvent) -> Vec<ByteString> {
        Vec::new()
    }

    /// Socket.IO has no close codes: the session ends with an Engine.IO close.
    fn close_code(&self, _why: Close) -> u16 {
        1000
    }
}

#[cfg(test)]
mod tests {
    use chat_domain::ids::{TenantId, UserId};
    use chat_domain::proto::events::TypingChange;

    use super::*;
    use gateway_core::attachments::AttachmentsConfig;

    #[test]
    fn typing_becomes_user_typing() -> anyhow::Result<()> {
        let codec = SocketIoCodec::leak(Attachments::open(&AttachmentsConfig::local(std::env::temp_dir()))?);
        let room = RoomId::parse("room_abc")?;
        let event = RoomEvent::new(
            &TenantId::parse("t1")?,
            &room,
            chrono::Utc::now(),
            RoomEventBody::Typing(TypingChange { user_id: UserId::parse("bob")?, user_name: None, is_typing: true }),
        );
        let text = codec.room_event(&event).map(|b| b.to_string());
        assert_eq!(text.as_deref(), Some(r#"42["user-typing",{"chatId":"room_abc","isTyping":true,"userId":"bob"}]"#));
        assert!(matches!(codec.decode(r#"42["typing-start","room_abc"]"#, &room), Ok(Command::Typing(true))));
        assert!(matches!(
            codec.decode(r#"42["typing-stop",{"chatId":"room_abc"}]"#, &room),
            Ok(Command::Typing(false))
        ));
        assert!(codec.decode(r#"42["typing-stop","room_other"]"#, &room).is_err());
        assert!(codec.decode("42[", &room).is_err());
        Ok(())
    }
}
