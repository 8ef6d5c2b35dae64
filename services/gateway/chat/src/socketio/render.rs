//! Payloads of the Socket.IO events, in the shape of `rest-chat.md`'s REST responses.
//! A message — in `new-message`, `message-edited` and `message-deleted` — is exactly
//! what `/api/chat` answers (`crate::render::message`: `_id`, `chatId`, `sender`,
//! `content`, `type`, `replyToMessageId`, `metadata`, `attachments`, `createdAt`,
//! `editedAt`, `deletedAt`, `seq`). The other events are camelCase likewise.

use chat_domain::ids::RoomId;
use chat_domain::model::{Member, Message};
use chat_domain::proto::events::{
    CursorChange, MemberRemoved, MessageDeleted, MessageUpdated, ModerationChange, PinEvent, ReactionEvent,
};
use chat_domain::time::format;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use gateway_core::attachments::AttachmentLinks;

use crate::render as rest;

/// A stored message (`new-message`), as `GET /api/chat/:id/messages` returns it, its
/// attachments' links signed by `links`.
pub(crate) fn message(m: &Message, links: &dyn AttachmentLinks) -> Value {
    json!(rest::message(m, links))
}

/// An edited message (`message-edited`): the whole message. An event published before
/// events carried the message gives what changed, under the same field names.
pub(crate) fn edited(room: &RoomId, u: &MessageUpdated, links: &dyn AttachmentLinks) -> Value {
    match &u.message {
        Some(m) => message(m, links),
        None => json!({
            "_id": u.message_id.as_str(),
            "chatId": room.as_str(),
            "content": u.content,
            "editedAt": format(&u.edited_at),
            "seq": u.seq,
        }),
    }
}

/// A deleted message (`message-deleted`): the whole message (content gone, `deletedAt`
/// set), or what changed for an event published before events carried the message.
pub(crate) fn deleted(room: &RoomId, d: &MessageDeleted, links: &dyn AttachmentLinks) -> Value {
    match &d.message {
        Some(m) => message(m, links),
        None => json!({
            "_id": d.message_id.as_str(),
            "chatId": room.as_str(),
            "content": "",
            "deletedAt": format(&d.deleted_at),
            "seq": d.seq,
        }),
    }
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

/// A moderation action in the chat (`chat-moderation`): a ban, unban, mute, unmute,
/// role or slow-mode change; absent fields are omitted.
pub fn moderation(room: &RoomId, m: &ModerationChange, at: DateTime<Utc>) -> Value {
    let mut v = json!({"chatId": room.as_str(), "action": m.action, "actorId": m.actor_id.as_str(), "at": format(&at)});
    let put = |v: &mut Value, k: &str, x: Value| {
        if !x.is_null() {
            v[k] = x;
        }
    };
    put(&mut v, "userId", json!(m.user_id));
    put(&mut v, "reason", json!(m.reason));
    put(&mut v, "expiresAt", json!(m.expires_at.as_ref().map(format)));
    put(&mut v, "role", json!(m.role));
    put(&mut v, "slowModeSecs", json!(m.slow_mode_secs));
    v
}

/// A participant left or was removed (`participant-removed`).
pub fn participant_removed(room: &RoomId, r: &MemberRemoved) -> Value {
    json!({
        "chatId": room.as_str(),
        "participantId": r.user_id.as_str(),
        "removedBy": r.removed_by.as_str(),
    })
}

/// A reaction added or taken back (`reaction-added`, `reaction-removed`), with the
/// emoji's count after it.
pub fn reaction(room: &RoomId, r: &ReactionEvent) -> Value {
    json!({
        "chatId": room.as_str(),
        "messageId": r.message_id.as_str(),
        "seq": r.seq,
        "emoji": r.emoji.as_str(),
        "userId": r.user_id.as_str(),
        "count": r.count,
    })
}

/// A message pinned (`message-pinned`): who and when, and the whole message.
pub(crate) fn pinned(room: &RoomId, p: &PinEvent, links: &dyn AttachmentLinks) -> Value {
    json!({
        "chatId": room.as_str(),
        "messageId": p.message_id.as_str(),
        "seq": p.seq,
        "pinnedBy": p.by.as_str(),
        "pinnedAt": format(&p.at),
        "message": p.message.as_deref().map(|m| message(m, links)),
    })
}

/// A message unpinned (`message-unpinned`), also when a pinned message is deleted.
pub fn unpinned(room: &RoomId, p: &PinEvent) -> Value {
    json!({
        "chatId": room.as_str(),
        "messageId": p.message_id.as_str(),
        "seq": p.seq,
        "unpinnedBy": p.by.as_str(),
        "unpinnedAt": format(&p.at),
    })
}
