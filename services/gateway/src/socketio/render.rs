//! Payloads of the Socket.IO events, in the shape of `rest-chat.md`'s REST responses:
//! camelCase, a message as `GET /api/chat/:id/messages` returns it (`_id`, `chatId`,
//! `sender`, `content`, `type`, `replyToMessageId`, `metadata`, `attachments`,
//! `createdAt`, `editedAt`, `deletedAt`, `seq`).

use chat_domain::ids::RoomId;
use chat_domain::model::{Member, Message};
use chat_domain::proto::events::{CursorChange, MemberRemoved, MessageDeleted, MessageUpdated};
use chat_domain::time::format;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// A stored message (`new-message`).
pub fn message(m: &Message) -> Value {
    json!({
        "_id": m.message_id.as_str(),
        "chatId": m.room_id.as_str(),
        "sender": m.sender_id.as_str(),
        "content": m.content,
        "type": m.kind.as_str(),
        "replyToMessageId": m.reply_to.as_ref().map(|id| id.as_str()),
        "metadata": m.meta.clone().unwrap_or_else(|| json!({})),
        "attachments": [],
        "createdAt": format(&m.created_at),
        "editedAt": m.edited_at.as_ref().map(format),
        "deletedAt": m.deleted_at.as_ref().map(format),
        "seq": m.seq,
    })
}

/// An edited message (`message-edited`): what changed, under the message's fields.
pub fn edited(room: &RoomId, u: &MessageUpdated) -> Value {
    json!({
        "_id": u.message_id.as_str(),
        "chatId": room.as_str(),
        "content": u.content,
        "editedAt": format(&u.edited_at),
        "seq": u.seq,
    })
}

/// A deleted message (`message-deleted`): the content is gone, `deletedAt` is set.
pub fn deleted(room: &RoomId, d: &MessageDeleted) -> Value {
    json!({
        "_id": d.message_id.as_str(),
        "chatId": room.as_str(),
        "content": "",
        "deletedAt": format(&d.deleted_at),
        "deletedBy": d.deleted_by.as_str(),
        "seq": d.seq,
    })
}

/// A member's read cursor moved (`messages-read`).
pub fn read(room: &RoomId, c: &CursorChange, at: DateTime<Utc>) -> Value {
    json!({
        "chatId": room.as_str(),
        "userId": c.user_id.as_str(),
        "seq": c.seq,
        "messageIds": c.message_ids.iter().map(|id| id.as_str()).collect::<Vec<_>>(),
        "readAt": format(&at),
    })
}

/// A participant joined (`participants-added`).
pub fn participants_added(room: &RoomId, m: &Member) -> Value {
    json!({
        "chatId": room.as_str(),
        "participants": [m.user_id.as_str()],
    })
}

/// A participant left or was removed (`participant-removed`).
pub fn participant_removed(room: &RoomId, r: &MemberRemoved) -> Value {
    json!({
        "chatId": room.as_str(),
        "participantId": r.user_id.as_str(),
        "removedBy": r.removed_by.as_str(),
    })
}
