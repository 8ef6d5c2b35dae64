//! What a member who missed messages gets, once per room and window: an inbox entry
//! (kind `message`, rendered by the gateway as a `notification` frame from its
//! `payload.title`, `payload.content` and `payload.action_url`) and a webhook body.
//! Both carry how many messages were missed and their ids.
//!
//! Inbox entry body:
//! `{"room_id","topic":"message","window_start","window_end","payload":{"title",
//! "content","action_url","count","message_ids","first_seq","last_seq"}}`.
//! Webhook body: `{"type":"message","user_id","room_id","count","message_ids",
//! "first_seq","last_seq","window_start","window_end","latest"}` (`latest`: the newest
//! missed message, whole), to which the delivery worker adds `delivery_id`,
//! `tenant_id` and `attempt`.

use chat_domain::ids::{RoomId, UserId};
use chat_domain::model::Message;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// Most ids listed in one entry; `count` says how many there were, and the rest follow
/// in the room's history after the last one listed (a busy window in a large room
/// must not write kilobytes of ids per member).
pub const MAX_LISTED: usize = 100;

/// The entry's id in the inbox and its delivery's reference: the same room, window and
/// first `seq` always give the same key, so closing a window again (after a crash, or
/// by a second pass) writes nothing twice.
pub fn key(room: &RoomId, window_start: DateTime<Utc>, first_seq: i64) -> String {
    format!("{room}:{}:{first_seq}", window_start.timestamp_millis())
}

/// What one member missed in one window: `missed` is in `seq` order and not empty.
pub struct Missed<'a> {
    pub room: &'a RoomId,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub missed: &'a [&'a Message],
}

impl Missed<'_> {
    fn ids(&self) -> Vec<&str> {
        self.missed.iter().take(MAX_LISTED).map(|m| m.message_id.as_str()).collect()
    }

    fn seqs(&self) -> (i64, i64) {
        let first = self.missed.first().map_or(0, |m| m.seq);
        (first, self.missed.last().map_or(first, |m| m.seq))
    }

    /// The newest missed message.
    pub fn latest(&self) -> Option<&Message> {
        self.missed.last().copied()
    }

    /// The inbox entry's body.
    pub fn inbox_body(&self) -> Value {
        let count = self.missed.len();
        let title = match self.latest() {
            Some(m) if count == 1 => {
                format!("New message from {}", m.sender_name.as_deref().unwrap_or(m.sender_id.as_str()))
            }
            _ => format!("{count} new messages"),
        };
        let (first_seq, last_seq) = self.seqs();
        json!({
            "room_id": self.room.as_str(),
            "topic": "message",
            "window_start": chat_domain::time::format(&self.window_start),
            "window_end": chat_domain::time::format(&self.window_end),
            "payload": {
                "title": title,
                "content": self.latest().map(|m| m.content.as_str()),
                "action_url": format!("/rooms/{}", self.room),
                "count": count,
                "message_ids": self.ids(),
                "first_seq": first_seq,
                "last_seq": last_seq,
            },
        })
    }

    /// The webhook delivery's body for `user`.
    pub fn webhook_body(&self, user: &UserId) -> Value {
        let (first_seq, last_seq) = self.seqs();
        json!({
            "type": "message",
            "user_id": user.as_str(),
            "room_id": self.room.as_str(),
            "count": self.missed.len(),
            "message_ids": self.ids(),
            "first_seq": first_seq,
            "last_seq": last_seq,
            "window_start": chat_domain::time::format(&self.window_start),
            "window_end": chat_domain::time::format(&self.window_end),
            "latest": self.latest(),
        })
    }
}
