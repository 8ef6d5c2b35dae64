//! The JSON of `rest-chat.md`: a chat and a message as `/api/chat` answers them, and
//! as the Socket.IO dialect emits them (`new-message`, `message-edited`, ... carry
//! exactly [`message`]'s shape). camelCase fields, Mongo-style `_id`s (the room id of
//! a chat, the message id of a message), ISO 8601 times with microseconds.
//!
//! Attachments are stored as object-store keys; [`AttachmentLinks`] turns one into
//! the `url` a client fetches. Until signed links exist, [`FilePaths`] gives the key's
//! path under `/api/chat/files/`.

use chat_domain::model::{Attachment, Message};
use chat_domain::proto::chat::{Chat, ChatContext, Participant};
use chat_domain::time::format;
use serde_json::{Value, json};

use crate::AppState;

/// Turns a stored attachment into the `url` clients fetch it from.
pub(crate) trait AttachmentLinks {
    fn url(&self, message: &Message, attachment: &Attachment) -> String;
}

/// Links as plain paths: `/api/chat/files/<key>` (the key's characters outside
/// `A-Z a-z 0-9 - . _ ~ /` percent-encoded).
pub(crate) struct FilePaths;

impl AttachmentLinks for FilePaths {
    fn url(&self, _message: &Message, attachment: &Attachment) -> String {
        let mut url = String::from("/api/chat/files/");
        for b in attachment.key.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                url.push(char::from(b));
            } else {
                url.push_str(&format!("%{b:02X}"));
            }
        }
        url
    }
}

/// The links this gateway renders.
pub(crate) fn links(_state: &AppState) -> FilePaths {
    FilePaths
}

/// `{url, filename, mimeType, size}`.
pub(crate) fn attachment(message: &Message, a: &Attachment, links: &dyn AttachmentLinks) -> Value {
    json!({
        "url": links.url(message, a),
        "filename": a.filename,
        "mimeType": a.mime_type,
        "size": a.size,
    })
}

/// A message: `_id, chatId, sender, content, type, replyToMessageId, metadata,
/// attachments, createdAt, editedAt, deletedAt, seq`.
pub(crate) fn message(m: &Message, links: &dyn AttachmentLinks) -> Value {
    json!({
        "_id": m.message_id,
        "chatId": m.room_id,
        "sender": m.sender_id,
        "content": m.content,
        "type": m.kind.as_str(),
        "replyToMessageId": m.reply_to,
        "metadata": m.meta.clone().unwrap_or_else(|| json!({})),
        "attachments": m.attachments.iter().map(|a| attachment(m, a, links)).collect::<Vec<_>>(),
        "createdAt": format(&m.created_at),
        "editedAt": m.edited_at.as_ref().map(format),
        "deletedAt": m.deleted_at.as_ref().map(format),
        "seq": m.seq,
    })
}

/// A participant, populated from the directory: `_id, name, avatarUrl, roles` and
/// their place in the chat (`role`: `admin` or `member`, `joinedAt`).
pub(crate) fn participant(p: &Participant) -> Value {
    json!({
        "_id": p.user_id,
        "name": p.name,
        "avatarUrl": p.avatar_url,
        "roles": p.roles,
        "role": p.role.as_str(),
        "joinedAt": format(&p.joined_at),
    })
}

fn context(c: &ChatContext) -> Value {
    json!({"type": c.context_type, "id": c.id})
}

/// A chat as its viewer sees it: `_id, type, title, participants, createdBy,
/// createdAt, updatedAt, lastMessage, unreadCount, isArchived, metadata, context`; a
/// purchase-request chat also has `purchaseRequestId`, and `GET /api/chat/:id/info`
/// adds `unreadCounts` (every participant's).
pub(crate) fn chat(c: &Chat, links: &dyn AttachmentLinks) -> Value {
    let mut v = json!({
        "_id": c.room.room_id,
        "type": c.chat_type.as_str(),
        "title": c.room.name,
        "participants": c.participants.iter().map(participant).collect::<Vec<_>>(),
        "createdBy": c.room.created_by,
        "createdAt": format(&c.room.created_at),
        "updatedAt": format(&c.last_activity_at),
        "lastMessage": c.last_message.as_ref().map(|m| message(m, links)),
        "unreadCount": c.unread_count,
        "isArchived": c.archived,
        "metadata": c.metadata.clone().unwrap_or_else(|| json!({})),
        "context": c.context.as_ref().map(context),
    });
    if let Some(ctx) = c.context.as_ref().filter(|c| c.context_type == super::chats::PURCHASE_REQUEST) {
        v["purchaseRequestId"] = json!(ctx.id);
    }
    if let Some(unread) = &c.unread_by_user {
        v["unreadCounts"] = json!(unread);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_domain::ids::{MessageId, RoomId, UserId};
    use chat_domain::model::MessageKind;

    fn sample() -> anyhow::Result<Message> {
        Ok(Message {
            message_id: MessageId::parse("msg_1")?,
            room_id: RoomId::parse("room_1")?,
            sender_id: UserId::parse("alice")?,
            sender_name: None,
            seq: 3,
            content: "hi".into(),
            meta: None,
            client_msg_id: None,
            created_at: chat_domain::time::now(),
            edited_at: None,
            deleted_at: None,
            kind: MessageKind::System,
            reply_to: Some(MessageId::parse("msg_0")?),
            attachments: vec![Attachment {
                key: "t1/room_1/a b.png".into(),
                filename: "a b.png".into(),
                mime_type: "image/png".into(),
                size: 7,
            }],
        })
    }

    #[test]
    fn a_message_has_the_documented_fields() -> anyhow::Result<()> {
        let v = message(&sample()?, &FilePaths);
        let mut keys: Vec<&str> = v.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "_id",
                "attachments",
                "chatId",
                "content",
                "createdAt",
                "deletedAt",
                "editedAt",
                "metadata",
                "replyToMessageId",
                "sender",
                "seq",
                "type"
            ]
        );
        assert_eq!(v["type"], "system");
        assert_eq!(v["replyToMessageId"], "msg_0");
        assert_eq!(v["metadata"], json!({}));
        assert_eq!(
            v["attachments"],
            json!([{"url": "/api/chat/files/t1/room_1/a%20b.png", "filename": "a b.png", "mimeType": "image/png", "size": 7}])
        );
        Ok(())
    }
}
