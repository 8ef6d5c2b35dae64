//! Frames that several socket dialects render alike.

use chat_domain::proto::notify::InboxItem;
use serde_json::{Value, json};

/// The fields of a `notification` frame: the document's `id`, `title`, `content`,
/// `action_url`, `priority`, `icon` (read from the payload when it has them), plus the
/// `topic`, the whole `payload`, and `kind` (`notification` or `message`). `ws-rooms.md`
/// and `ws-conversations.md` both send it.
pub fn notification_data(item: &InboxItem) -> Value {
    let b = &item.body;
    let payload = b.get("payload").cloned().unwrap_or_else(|| json!({}));
    let field = |k: &str| payload.get(k).cloned().unwrap_or(Value::Null);
    let topic = b.get("topic").cloned().unwrap_or(Value::Null);
    json!({
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
    })
}
