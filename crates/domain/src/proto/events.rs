//! Events on the bus. Room events go to `<prefix>.evt.<tenant>.<room>.<kind>` on core
//! NATS, published after their transaction commits (PostgreSQL holds the durable copy);
//! system events (`<prefix>.sys.*`) are core NATS broadcasts too.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{EventId, MessageId, RoomId, TenantId, UserId};
use crate::model::{Member, Message, ThreadSummary};

/// An event about one room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RoomEvent {
    /// Unique per event; a republished event keeps it, so receivers can spot repeats.
    pub event_id: EventId,
    pub tenant_id: TenantId,
    pub room_id: RoomId,
    #[serde(with = "crate::time::micros")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub occurred_at: DateTime<Utc>,
    #[serde(flatten)]
    pub body: RoomEventBody,
}

impl RoomEvent {
    /// A new event with a fresh id.
    pub fn new(tenant_id: &TenantId, room_id: &RoomId, occurred_at: DateTime<Utc>, body: RoomEventBody) -> Self {
        Self {
            event_id: EventId::generate(),
            tenant_id: tenant_id.clone(),
            room_id: room_id.clone(),
            occurred_at,
            body,
        }
    }
}

/// What happened, as `{"kind": ..., "data": ...}`.
// `message.created` is by far the most common event and carries the whole message;
// boxing it would allocate once more per message for the rarer, smaller events.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", content = "data")]
pub enum RoomEventBody {
    #[serde(rename = "message.created")]
    MessageCreated(Message),
    #[serde(rename = "member.added")]
    MemberAdded(Member),
    #[serde(rename = "member.removed")]
    MemberRemoved(MemberRemoved),
    /// A user's first socket in the room opened (not announced in a big room: more
    /// users than presence's `PRESENCE_BIG_ROOM`).
    #[serde(rename = "presence.joined")]
    PresenceJoined(PresenceChange),
    /// A user's last socket in the room closed (after the grace period) or expired
    /// (not announced in a big room).
    #[serde(rename = "presence.left")]
    PresenceLeft(PresenceChange),
    /// A user started or stopped typing (or their typing expired).
    #[serde(rename = "typing")]
    Typing(TypingChange),
    /// A message's content was edited.
    #[serde(rename = "message.updated")]
    MessageUpdated(MessageUpdated),
    /// A message was deleted.
    #[serde(rename = "message.deleted")]
    MessageDeleted(MessageDeleted),
    /// A member's delivered cursor moved forward.
    #[serde(rename = "delivered")]
    Delivered(CursorChange),
    /// A member's read cursor moved forward.
    #[serde(rename = "read")]
    Read(CursorChange),
    /// A member reacted to a message (issue 23).
    #[serde(rename = "reaction.added")]
    ReactionAdded(ReactionEvent),
    /// A member took a reaction back.
    #[serde(rename = "reaction.removed")]
    ReactionRemoved(ReactionEvent),
    /// A message was pinned.
    #[serde(rename = "message.pinned")]
    MessagePinned(PinEvent),
    /// A message was unpinned (also when a pinned message is deleted).
    #[serde(rename = "message.unpinned")]
    MessageUnpinned(PinEvent),
    /// A thread's summary changed (a reply was sent or deleted).
    #[serde(rename = "thread.updated")]
    ThreadUpdated(ThreadUpdated),
    /// A moderation action in the room (room moderation): a ban, unban, mute, unmute,
    /// role change or settings change. A ban also removes the member (`member.removed`).
    #[serde(rename = "moderation")]
    Moderation(ModerationChange),
}

impl RoomEventBody {
    /// The last subject token(s) of this event.
    pub fn kind(&self) -> &'static str {
        match self {
            RoomEventBody::MessageCreated(_) => "message.created",
            RoomEventBody::MemberAdded(_) => "member.added",
            RoomEventBody::MemberRemoved(_) => "member.removed",
            RoomEventBody::PresenceJoined(_) => "presence.joined",
            RoomEventBody::PresenceLeft(_) => "presence.left",
            RoomEventBody::Typing(_) => "typing",
            RoomEventBody::MessageUpdated(_) => "message.updated",
            RoomEventBody::MessageDeleted(_) => "message.deleted",
            RoomEventBody::Delivered(_) => "delivered",
            RoomEventBody::Read(_) => "read",
            RoomEventBody::ReactionAdded(_) => "reaction.added",
            RoomEventBody::ReactionRemoved(_) => "reaction.removed",
            RoomEventBody::MessagePinned(_) => "message.pinned",
            RoomEventBody::MessageUnpinned(_) => "message.unpinned",
            RoomEventBody::ThreadUpdated(_) => "thread.updated",
            RoomEventBody::Moderation(_) => "moderation",
        }
    }

    /// Every kind, for the AsyncAPI document check.
    pub const KINDS: [&'static str; 16] = [
        "message.created",
        "message.updated",
        "message.deleted",
        "member.added",
        "member.removed",
        "presence.joined",
        "presence.left",
        "typing",
        "delivered",
        "read",
        "reaction.added",
        "reaction.removed",
        "message.pinned",
        "message.unpinned",
        "thread.updated",
        "moderation",
    ];
}

/// A reaction added or removed, with the emoji's count after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReactionEvent {
    pub message_id: MessageId,
    /// The message's `seq`.
    pub seq: i64,
    pub emoji: crate::emoji::Emoji,
    /// Who reacted (or took the reaction back).
    pub user_id: UserId,
    /// How many users react with `emoji` after the change.
    pub count: i64,
}

/// A message pinned or unpinned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PinEvent {
    pub message_id: MessageId,
    /// The message's `seq`.
    pub seq: i64,
    /// Who pinned or unpinned it (the deleter, when a deletion unpinned it).
    pub by: UserId,
    #[serde(with = "crate::time::micros")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub at: DateTime<Utc>,
    /// The whole message after the change (`message.pinned` only), for dialects whose
    /// event carries the message; its reactions' `me` is `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Box<Message>>,
}

/// A thread's new summary, on its top-level message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ThreadUpdated {
    /// The thread's top-level message.
    pub message_id: MessageId,
    /// Its `seq`.
    pub seq: i64,
    /// The summary now; absent when its last reply was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<ThreadSummary>,
}

/// What a moderator did in a room (see [`RoomEventBody::Moderation`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModerationChange {
    /// `ban`, `unban`, `mute`, `unmute`, `role` or `settings`.
    pub action: String,
    /// Who did it.
    pub actor_id: UserId,
    /// Whom it is about (absent for `settings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When a ban or mute ends by itself (absent: until lifted).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::time::micros_opt")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub expires_at: Option<DateTime<Utc>>,
    /// The member's role now, for `role`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<crate::model::MemberRole>,
    /// The room's slow mode now, for `settings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_mode_secs: Option<u32>,
}

/// A member left or was removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MemberRemoved {
    pub user_id: UserId,
    pub removed_by: UserId,
}

/// A user came online or went offline in a room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PresenceChange {
    pub user_id: UserId,
    pub user_name: Option<String>,
}

/// A user's typing state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TypingChange {
    pub user_id: UserId,
    pub user_name: Option<String>,
    pub is_typing: bool,
}

/// The new content of an edited message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MessageUpdated {
    pub message_id: MessageId,
    pub seq: i64,
    pub content: String,
    pub edit_reason: Option<String>,
    #[serde(with = "crate::time::micros")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub edited_at: DateTime<Utc>,
    /// The whole message after the edit, for dialects whose event carries the message
    /// (`rest-chat.md`'s `message-edited`). Absent in events published before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Box<Message>>,
}

/// A deleted message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MessageDeleted {
    pub message_id: MessageId,
    pub seq: i64,
    pub deleted_by: UserId,
    #[serde(with = "crate::time::micros")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub deleted_at: DateTime<Utc>,
    /// The whole message after the deletion (content gone, `deleted_at` set), for
    /// dialects whose event carries the message (`rest-chat.md`'s `message-deleted`).
    /// Absent in events published before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Box<Message>>,
}

/// A member's cursor is now at `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CursorChange {
    pub user_id: UserId,
    pub seq: i64,
    /// Which messages the move covers, for dialects that name messages rather than a
    /// `seq` (`ws-conversations.md`'s `read {user_id, message_ids}`): the ids a read
    /// receipt named, or else the other senders' messages the cursor passed (newest
    /// 500). Empty for delivered cursors and for older events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub message_ids: Vec<MessageId>,
}

/// An event addressed to one user (on any room), on `<p>.user.<tenant>.<user>.<kind>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UserEvent {
    pub event_id: EventId,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    #[serde(with = "crate::time::micros")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub occurred_at: DateTime<Utc>,
    #[serde(flatten)]
    pub body: UserEventBody,
}

/// What happened, as `{"kind": ..., "data": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", content = "data")]
pub enum UserEventBody {
    /// Some of the user's messages were delivered to, or read by, another member.
    #[serde(rename = "message.status")]
    MessageStatus(MessageStatus),
    /// A notification for the user (delivered live to their sockets).
    #[serde(rename = "notification")]
    Notification(crate::proto::notify::InboxItem),
    /// The user made, changed or lifted a block (their sessions on every gateway
    /// update what they hide; the dialects render no frame for it).
    #[serde(rename = "block.changed")]
    BlockChanged(crate::proto::blocks::BlockChanged),
}

impl UserEventBody {
    pub fn kind(&self) -> &'static str {
        match self {
            UserEventBody::MessageStatus(_) => "message.status",
            UserEventBody::Notification(_) => "notification",
            UserEventBody::BlockChanged(_) => "block.changed",
        }
    }

    /// Every kind, for the AsyncAPI document check.
    pub const KINDS: [&'static str; 3] = ["message.status", "notification", "block.changed"];
}

/// The status of a sender's messages as seen by one other member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MessageStatus {
    pub room_id: RoomId,
    /// The sender's messages that changed status (oldest first; at most 500).
    pub message_ids: Vec<MessageId>,
    /// Every message of the sender up to this `seq` has at least this status.
    pub up_to_seq: i64,
    /// `delivered` or `read`.
    pub status: String,
    /// The member whose cursor moved.
    pub by: UserId,
}

/// A tenant's keys or settings changed: gateways drop what they cached about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TenantChanged {
    pub tenant_id: TenantId,
}
