//! Server frames of `ws-rooms.md`: `{"type","data","timestamp","room_id"}`. Each is
//! serialized once and shared (as a `ByteString`) by every socket that receives it.

use bytestring::ByteString;
use chat_domain::ids::RoomId;
use chat_domain::model::Message;
use serde_json::{Value, json};

/// A frame ready to send, with the `seq` of the message it carries (for resume
/// de-duplication), if any.
#[derive(Debug, Clone)]
pub struct Out {
    pub seq: Option<i64>,
    pub text: ByteString,
}

fn now() -> String {
    chat_domain::time::format(&chat_domain::time::now())
}

/// Serializes an envelope.
pub fn envelope(kind: &str, data: Value, room: Option<&RoomId>) -> ByteString {
    let mut v = json!({"type": kind, "data": data, "timestamp": now()});
    if let Some(r) = room {
        v["room_id"] = json!(r.as_str());
    }
    ByteString::from(v.to_string())
}

/// The `data` of a `message` frame.
pub fn message_data(m: &Message, sender_name: Option<&str>) -> Value {
    let message_type = m.meta.as_ref().and_then(|meta| meta.get("type")).and_then(Value::as_str).unwrap_or("text");
    json!({
        "id": m.message_id.as_str(),
        "message_id": m.message_id.as_str(),
        "seq": m.seq,
        "sender_id": m.sender_id.as_str(),
        "sender_name": m.sender_name.as_deref().or(sender_name).unwrap_or(m.sender_id.as_str()),
        "content": m.content,
        "message_type": message_type,
        "meta": m.meta.clone().unwrap_or_else(|| json!({})),
        "local_id": m.client_msg_id,
        "created_at": chat_domain::time::format(&m.created_at),
        "edited_at": m.edited_at.as_ref().map(chat_domain::time::format),
        "deleted_at": m.deleted_at.as_ref().map(chat_domain::time::format),
    })
}

/// A `message` frame.
pub fn message(m: &Message, sender_name: Option<&str>) -> Out {
    Out { seq: Some(m.seq), text: envelope("message", message_data(m, sender_name), Some(&m.room_id)) }
}

/// An `error` frame: `{"code","message","local_id"?}`.
pub fn error(room: &RoomId, code: &str, message: &str, local_id: Option<&str>) -> ByteString {
    let mut data = json!({"code": code, "message": message});
    if let Some(l) = local_id {
        data["local_id"] = json!(l);
    }
    envelope("error", data, Some(room))
}

/// A `notification` frame from an inbox item: ws-rooms' `id`, `title`, `content`,
/// `action_url`, `priority`, `icon` (read from the payload when it has them), plus the
/// `topic`, the whole `payload`, and `kind` (`notification` or `message`).
pub fn notification(item: &chat_domain::proto::notify::InboxItem) -> ByteString {
    let b = &item.body;
    let payload = b.get("payload").cloned().unwrap_or_else(|| json!({}));
    let field = |k: &str| payload.get(k).cloned().unwrap_or(Value::Null);
    let topic = b.get("topic").cloned().unwrap_or(Value::Null);
    let data = json!({
        "id": item.id,
        "kind": item.kind,
        "title": payload.get("title").cloned().unwrap_or_else(|| topic.clone()),
        "content": field("content"),
        "action_url": field("action_url"),
        "priority": payload.get("priority").cloned().unwrap_or_else(|| json!("normal")),
        "icon": field("icon"),
        "topic": topic,
        "payload": payload,
        "created_at": chat_domain::time::format(&item.created_at),
    });
    let room = b.get("room_id").and_then(Value::as_str).and_then(|r| RoomId::parse(r).ok());
    envelope("notification", data, room.as_ref())
}
