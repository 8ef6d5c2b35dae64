//! The JSON of `rest-chat.md`: a chat and a message as `/api/chat` answers them, and
//! as the Socket.IO dialect emits them (`new-message`, `message-edited`, ... carry
//! exactly [`message`]'s shape). camelCase fields, Mongo-style `_id`s (the room id of
//! a chat, the message id of a message), ISO 8601 times with microseconds.
//!
//! Attachments are stored as object-store keys; [`AttachmentLinks`] turns one into
//! the `url` a client fetches: a signed, expiring link
//! (`gateway_core::attachments::links`).

use std::collections::BTreeMap;

use chat_domain::ids::{MessageId, RoomId, UserId};
use chat_domain::model::{Attachment, MemberRole, Message, MessageKind, ReactionSummary};
use chat_domain::proto::chat::{Chat, ChatContext, ChatType, Participant};
use chat_domain::time::format;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Value, json};

use gateway_core::attachments::AttachmentLinks;
use gateway_core::openapi::Nullable;

/// Links as plain paths: `/api/chat/files/<key>` (the key's characters outside
/// `A-Z a-z 0-9 - . _ ~ /` percent-encoded); for tests of the JSON's shape.
#[cfg(test)]
pub(crate) struct FilePaths;

#[cfg(test)]
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

/// The context type of `POST /api/chat/purchase-request` chats.
pub(crate) const PURCHASE_REQUEST: &str = "purchase_request";

/// An attachment's `url` as the document's examples show it.
pub(crate) const EXAMPLE_FILE_URL: &str = "/api/chat/room_0193a5c2e4b87d10a9f3c2b1e0d4f6a7/files/eyJyIjoicm9vbV8wMTkzYTVjMmU0Yjg3ZDEwYTlmM2MyYjFlMGQ0ZjZhNyIsImsiOiJ0ZW5fYWNtZS9yb29tXzAxOTNhNWMyZTRiODdkMTBhOWYzYzJiMWUwZDRmNmE3LzVmMWM5ZTJhYjQ3ZDRjMGU4YTNiNmQyZjFlOWM3YTUwIiwiZiI6InJlY2VpcHQucGRmIiwibSI6ImFwcGxpY2F0aW9uL3BkZiIsImUiOjE3OTY0MTA5MzF9.9XAqs2-UUU0SGZLlvMLHMbSaY5UgUW0FaVppaOeHeHY";

/// An attachment as clients see it.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "ChatAttachment")]
pub(crate) struct AttachmentJson {
    /// A signed link to the file (`GET /api/chat/{id}/files/{token}`, after
    /// `GATEWAY_PUBLIC_URL` when that is set), valid for `GATEWAY_LINK_TTL_SECS` from
    /// when the message was rendered.
    #[schemars(example = EXAMPLE_FILE_URL)]
    pub url: String,
    /// The uploader's file name.
    #[schemars(example = &"receipt.pdf")]
    pub filename: String,
    /// The type sniffed from the file's bytes at upload.
    #[schemars(example = &"application/pdf")]
    pub mime_type: String,
    /// Size in bytes.
    pub size: u64,
}

/// `{url, filename, mimeType, size}`.
pub(crate) fn attachment(message: &Message, a: &Attachment, links: &dyn AttachmentLinks) -> AttachmentJson {
    AttachmentJson {
        url: links.url(message, a),
        filename: a.filename.clone(),
        mime_type: a.mime_type.clone(),
        size: a.size,
    }
}

/// A message of a chat (also the payload of the Socket.IO `new-message`,
/// `message-edited` and `message-deleted` events).
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "ChatMessage")]
pub(crate) struct MessageJson {
    /// The message id.
    #[serde(rename = "_id")]
    pub id: MessageId,
    /// The chat (room) it is in.
    pub chat_id: RoomId,
    /// Who sent it.
    pub sender: UserId,
    /// The text; `""` once deleted.
    pub content: String,
    /// A user's text, or a system notice.
    #[serde(rename = "type")]
    pub kind: MessageKind,
    /// The message of the same chat this one answers.
    #[schemars(with = "Nullable<MessageId>")]
    pub reply_to_message_id: Option<MessageId>,
    /// The sender's `metadata` (`{}` when none).
    #[schemars(with = "serde_json::Map<String, Value>")]
    pub metadata: Value,
    /// Files sent with the message.
    pub attachments: Vec<AttachmentJson>,
    /// ISO 8601, UTC, with microseconds.
    #[schemars(extend("format" = "date-time"))]
    pub created_at: String,
    /// When the content was last edited.
    #[schemars(with = "Nullable<String>", extend("format" = "date-time"))]
    pub edited_at: Option<String>,
    /// When it was deleted.
    #[schemars(with = "Nullable<String>", extend("format" = "date-time"))]
    pub deleted_at: Option<String>,
    /// Its place in the chat, from 1, without gaps (a deleted message keeps it).
    pub seq: i64,
    /// A thread reply's top-level message (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<MessageId>,
    /// A top-level message's thread, once it has replies (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread: Option<ThreadJson>,
    /// Mentioned participants (`@channel`: everyone); absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<UserId>,
    /// Reactions per emoji, in the order the emoji were first used (`[]` when none).
    pub reactions: Vec<ReactionJson>,
    /// When it was pinned (absent when it is not pinned).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub pinned_at: Option<String>,
    /// Who pinned it (absent when it is not pinned).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned_by: Option<UserId>,
}

/// One emoji's reactions on a message.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "ChatReaction")]
pub(crate) struct ReactionJson {
    /// A Unicode emoji sequence or `:custom_name:`.
    pub emoji: String,
    /// How many users reacted with it.
    pub count: i64,
    /// The first users who reacted with it (at most 3, earliest first).
    pub user_ids: Vec<UserId>,
    /// Whether you reacted with it.
    pub me: bool,
}

/// `{emoji, count, userIds, me}` per emoji.
pub(crate) fn reactions(r: &[ReactionSummary]) -> Vec<ReactionJson> {
    r.iter()
        .map(|r| ReactionJson {
            emoji: r.emoji.as_str().to_owned(),
            count: r.count,
            user_ids: r.user_ids.clone(),
            me: r.me,
        })
        .collect()
}

/// A thread's summary: `replyCount, lastReplyAt, participants`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "ChatThread")]
pub(crate) struct ThreadJson {
    /// Replies that are not deleted.
    pub reply_count: i64,
    /// When the newest reply was sent.
    #[schemars(extend("format" = "date-time"))]
    pub last_reply_at: String,
    /// The top-level message's author, then everyone who replied.
    pub participants: Vec<UserId>,
}

/// A thread summary in this dialect's spelling.
pub(crate) fn thread(t: &chat_domain::model::ThreadSummary) -> ThreadJson {
    ThreadJson {
        reply_count: t.reply_count,
        last_reply_at: format(&t.last_reply_at),
        participants: t.participants.clone(),
    }
}

/// A message: `_id, chatId, sender, content, type, replyToMessageId, metadata,
/// attachments, createdAt, editedAt, deletedAt, seq`, `parentId`, `thread`, `mentions`
/// when it has them, `reactions` always, and `pinnedAt`, `pinnedBy` when pinned.
pub(crate) fn message(m: &Message, links: &dyn AttachmentLinks) -> MessageJson {
    MessageJson {
        id: m.message_id.clone(),
        chat_id: m.room_id.clone(),
        sender: m.sender_id.clone(),
        content: m.content.clone(),
        kind: m.kind,
        reply_to_message_id: m.reply_to.clone(),
        metadata: m.meta.clone().unwrap_or_else(|| json!({})),
        attachments: m.attachments.iter().map(|a| attachment(m, a, links)).collect(),
        created_at: format(&m.created_at),
        edited_at: m.edited_at.as_ref().map(format),
        deleted_at: m.deleted_at.as_ref().map(format),
        seq: m.seq,
        parent_id: m.parent_id.clone(),
        thread: m.thread.as_ref().map(thread),
        mentions: m.mentions.clone(),
        reactions: reactions(&m.reactions),
        pinned_at: m.pinned_at.as_ref().map(format),
        pinned_by: m.pinned_by.clone(),
    }
}

/// A participant of a chat, populated from the users directory (`name`, `avatarUrl`
/// are `null` and `roles` `[]` for a user without an entry).
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "ChatParticipant")]
pub(crate) struct ParticipantJson {
    /// The user id.
    #[serde(rename = "_id")]
    pub id: UserId,
    #[schemars(with = "Nullable<String>")]
    pub name: Option<String>,
    #[schemars(with = "Nullable<String>")]
    pub avatar_url: Option<String>,
    /// Directory roles (`support` and `admin` make the support pool).
    pub roles: Vec<String>,
    /// Their role in the chat (`owner` for its creator; `admin`, `moderator`, `member`).
    pub role: MemberRole,
    /// When they joined the chat.
    #[schemars(extend("format" = "date-time"))]
    pub joined_at: String,
}

/// A participant, populated from the directory: `_id, name, avatarUrl, roles` and
/// their place in the chat (`role`: `owner`, `admin`, `moderator` or `member`, `joinedAt`).
pub(crate) fn participant(p: &Participant) -> ParticipantJson {
    ParticipantJson {
        id: p.user_id.clone(),
        name: p.name.clone(),
        avatar_url: p.avatar_url.clone(),
        roles: p.roles.clone(),
        role: p.role,
        joined_at: format(&p.joined_at),
    }
}

/// A chat as its viewer sees it.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "Chat")]
pub(crate) struct ChatJson {
    /// The chat id: the room id of the other dialects.
    #[serde(rename = "_id")]
    pub id: RoomId,
    /// `direct` (a DM), `support`, or `group` (group rooms, channels, context chats).
    #[serde(rename = "type")]
    pub chat_type: ChatType,
    /// The title (`null` for direct chats).
    #[schemars(with = "Nullable<String>")]
    pub title: Option<String>,
    pub participants: Vec<ParticipantJson>,
    /// Who created it.
    pub created_by: UserId,
    #[schemars(extend("format" = "date-time"))]
    pub created_at: String,
    /// The newest message's time, else the creation time; lists are ordered by it.
    #[schemars(extend("format" = "date-time"))]
    pub updated_at: String,
    #[schemars(with = "Nullable<MessageJson>")]
    pub last_message: Option<MessageJson>,
    /// Messages after the viewer's read cursor (sending counts as reading).
    pub unread_count: i64,
    /// Of those, the ones that mention the viewer (or `@channel`).
    pub unread_mentions: i64,
    /// The viewer archived the chat and no message came since.
    pub is_archived: bool,
    /// The chat's `metadata` (`{}` when none).
    #[schemars(with = "serde_json::Map<String, Value>")]
    pub metadata: Value,
    /// What a context chat is bound to (`null` for other chats).
    #[schemars(with = "Nullable<ChatContext>")]
    pub context: Option<ChatContext>,
    /// The purchase request of a purchase-request chat (context type
    /// `purchase_request`); absent for other chats.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String", default)]
    pub purchase_request_id: Option<String>,
    /// Every participant's unread count, by user id (`GET /api/chat/{id}/info` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "BTreeMap<UserId, i64>", default)]
    pub unread_counts: Option<BTreeMap<UserId, i64>>,
}

/// A chat as its viewer sees it: `_id, type, title, participants, createdBy,
/// createdAt, updatedAt, lastMessage, unreadCount, isArchived, metadata, context`; a
/// purchase-request chat also has `purchaseRequestId`, and `GET /api/chat/:id/info`
/// adds `unreadCounts` (every participant's).
pub(crate) fn chat(c: &Chat, links: &dyn AttachmentLinks) -> ChatJson {
    ChatJson {
        id: c.room.room_id.clone(),
        chat_type: c.chat_type,
        title: c.room.name.clone(),
        participants: c.participants.iter().map(participant).collect(),
        created_by: c.room.created_by.clone(),
        created_at: format(&c.room.created_at),
        updated_at: format(&c.last_activity_at),
        last_message: c.last_message.as_ref().map(|m| message(m, links)),
        unread_count: c.unread_count,
        unread_mentions: c.unread_mentions,
        is_archived: c.archived,
        metadata: c.metadata.clone().unwrap_or_else(|| json!({})),
        context: c.context.clone(),
        purchase_request_id: c.context.as_ref().filter(|c| c.context_type == PURCHASE_REQUEST).map(|c| c.id.clone()),
        unread_counts: c.unread_by_user.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_domain::model::{Room, RoomType};
    use chrono::{DateTime, Utc};

    fn at(t: &str) -> anyhow::Result<DateTime<Utc>> {
        Ok(DateTime::parse_from_rfc3339(t)?.with_timezone(&Utc))
    }

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
            created_at: at("2026-12-04T18:00:00.123456Z")?,
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
            parent_id: None,
            thread: None,
            mentions: Vec::new(),
            reactions: Vec::new(),
            pinned_at: None,
            pinned_by: None,
        })
    }

    fn sample_chat(context: Option<ChatContext>, unread: Option<BTreeMap<UserId, i64>>) -> anyhow::Result<Chat> {
        Ok(Chat {
            room: Room {
                room_id: RoomId::parse("room_1")?,
                room_type: RoomType::Group,
                unique_key: None,
                name: Some("Trip".into()),
                last_seq: 3,
                member_count: 1,
                created_by: UserId::parse("alice")?,
                created_at: at("2026-12-04T17:00:00Z")?,
            },
            chat_type: ChatType::Group,
            context,
            metadata: Some(json!({"order": 9})),
            participants: vec![Participant {
                user_id: UserId::parse("bob")?,
                role: MemberRole::Member,
                joined_at: at("2026-12-04T17:30:00Z")?,
                name: Some("Bob".into()),
                avatar_url: None,
                roles: vec!["support".into()],
            }],
            last_message: Some(sample()?),
            unread_count: 2,
            unread_mentions: 1,
            archived: true,
            last_activity_at: at("2026-12-04T18:00:00.123456Z")?,
            unread_by_user: unread,
        })
    }

    /// Every key of `value` is a property of `T`'s schema, and every required property
    /// is there: what the document says is what is sent.
    fn matches_schema<T: JsonSchema>(value: &Value) {
        let schema = schemars::SchemaGenerator::default().into_root_schema_for::<T>().to_value();
        let properties = schema["properties"].as_object().cloned().unwrap_or_default();
        let object = value.as_object().cloned().unwrap_or_default();
        for key in object.keys() {
            assert!(properties.contains_key(key), "{key} is sent but not in the schema of {}", T::schema_name());
        }
        for key in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            assert!(object.contains_key(key), "{key} is required by the schema of {} but not sent", T::schema_name());
        }
    }

    #[test]
    fn a_message_has_the_documented_fields() -> anyhow::Result<()> {
        let v = serde_json::to_value(message(&sample()?, &FilePaths))?;
        assert_eq!(
            v,
            json!({
                "_id": "msg_1",
                "chatId": "room_1",
                "sender": "alice",
                "content": "hi",
                "type": "system",
                "replyToMessageId": "msg_0",
                "metadata": {},
                "attachments": [{"url": "/api/chat/files/t1/room_1/a%20b.png", "filename": "a b.png", "mimeType": "image/png", "size": 7}],
                "createdAt": "2026-12-04T18:00:00.123456Z",
                "editedAt": null,
                "deletedAt": null,
                "seq": 3,
                "reactions": [],
            })
        );
        matches_schema::<MessageJson>(&v);
        Ok(())
    }

    #[test]
    fn a_chat_has_the_documented_fields() -> anyhow::Result<()> {
        let context = ChatContext::parse("context", PURCHASE_REQUEST, "pr-1")?;
        let unread = BTreeMap::from([(UserId::parse("bob")?, 2)]);
        let v = serde_json::to_value(chat(&sample_chat(Some(context), Some(unread))?, &FilePaths))?;
        let last = serde_json::to_value(message(&sample()?, &FilePaths))?;
        assert_eq!(
            v,
            json!({
                "_id": "room_1",
                "type": "group",
                "title": "Trip",
                "participants": [{"_id": "bob", "name": "Bob", "avatarUrl": null, "roles": ["support"],
                                  "role": "member", "joinedAt": "2026-12-04T17:30:00.000000Z"}],
                "createdBy": "alice",
                "createdAt": "2026-12-04T17:00:00.000000Z",
                "updatedAt": "2026-12-04T18:00:00.123456Z",
                "lastMessage": last,
                "unreadCount": 2,
                "unreadMentions": 1,
                "isArchived": true,
                "metadata": {"order": 9},
                "context": {"type": "purchase_request", "id": "pr-1"},
                "purchaseRequestId": "pr-1",
                "unreadCounts": {"bob": 2},
            })
        );
        matches_schema::<ChatJson>(&v);
        matches_schema::<ParticipantJson>(&v["participants"][0]);

        // Without a purchase request nor everyone's counts, those two keys are absent.
        let context = ChatContext::parse("context", "order", "o-9")?;
        let mut plain = sample_chat(Some(context), None)?;
        plain.metadata = None;
        plain.last_message = None;
        let v = serde_json::to_value(chat(&plain, &FilePaths))?;
        assert_eq!(v["context"], json!({"type": "order", "id": "o-9"}));
        assert_eq!(v["metadata"], json!({}));
        assert_eq!(v["lastMessage"], Value::Null);
        assert!(v.get("purchaseRequestId").is_none() && v.get("unreadCounts").is_none());
        matches_schema::<ChatJson>(&v);
        Ok(())
    }
}
