//! Reactions and pins (issue 23): `add_reaction`, `remove_reaction`, `list_reactors`,
//! `pin_message`, `unpin_message`, `list_pins`, answered by message-store (migration
//! 0060). Each change that happens publishes a room event (`reaction.added`,
//! `reaction.removed`, `message.pinned`, `message.unpinned`, see
//! [`crate::proto::events`]); a repeat that changes nothing publishes none.
//!
//! Rules: members only (another tenant's room is `NOT_FOUND`); a deleted message can
//! be neither reacted to nor pinned (`CONFLICT`), and deleting a message drops its
//! reactions and its pin. Pins are made and removed by room admins (role `owner` or
//! `admin`), or by either member of a DM. The limits are in [`crate::emoji`] and
//! [`MAX_PINS`].

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Command, Service, ServiceCommand};
use crate::emoji::Emoji;
use crate::ids::{MessageId, RoomId, UserId};
use crate::model::{Actor, Message, ReactionSummary};

/// Most pinned messages in one room.
pub const MAX_PINS: i64 = 100;
/// Largest page of [`ListReactors`].
pub const MAX_REACTORS_PAGE: u32 = 100;

/// The actor reacts to a message with `emoji` (again: nothing changes).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AddReaction {
    pub actor: Actor,
    pub room_id: RoomId,
    pub message_id: MessageId,
    pub emoji: Emoji,
}

/// The actor takes back their `emoji` reaction (none: nothing changes).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RemoveReaction {
    pub actor: Actor,
    pub room_id: RoomId,
    pub message_id: MessageId,
    pub emoji: Emoji,
}

/// The answer of [`AddReaction`] and [`RemoveReaction`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReactionChange {
    pub room_id: RoomId,
    pub message_id: MessageId,
    pub emoji: Emoji,
    /// Whether this call changed anything (`false`: the reaction was already there, or
    /// already gone).
    pub changed: bool,
    /// How many users now react with `emoji`.
    pub count: i64,
    /// The message's reactions now, as the actor sees them.
    pub reactions: Vec<ReactionSummary>,
}

/// Who reacted to a message with `emoji`, by user id, a page at a time.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ListReactors {
    pub actor: Actor,
    pub room_id: RoomId,
    pub message_id: MessageId,
    pub emoji: Emoji,
    /// 1 to [`MAX_REACTORS_PAGE`].
    pub limit: u32,
    /// The `next_cursor` of the previous page: users after it.
    #[serde(default)]
    pub cursor: Option<UserId>,
}

/// One user's reaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Reactor {
    pub user_id: UserId,
    #[serde(with = "crate::time::micros")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub reacted_at: DateTime<Utc>,
}

/// The answer of [`ListReactors`], in user id order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Reactors {
    pub emoji: Emoji,
    /// How many users react with `emoji` in all.
    pub count: i64,
    pub users: Vec<Reactor>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<UserId>,
}

/// Pins a message in its room (again: nothing changes, the first pin is kept).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PinMessage {
    pub actor: Actor,
    pub room_id: RoomId,
    pub message_id: MessageId,
}

/// Unpins a message (not pinned: nothing changes).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct UnpinMessage {
    pub actor: Actor,
    pub room_id: RoomId,
    pub message_id: MessageId,
}

/// The answer of [`PinMessage`] and [`UnpinMessage`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PinChange {
    /// Whether this call changed anything.
    pub changed: bool,
    /// The message now (`pinned_at`, `pinned_by` set while pinned).
    pub message: Message,
}

/// A room's pinned messages.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ListPins {
    pub actor: Actor,
    pub room_id: RoomId,
}

/// The answer of [`ListPins`]: the pinned messages, most recently pinned first (at
/// most [`MAX_PINS`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PinList {
    pub pins: Vec<Message>,
}

macro_rules! store_command {
    ($t:ty, $verb:literal, $reply:ty) => {
        impl Command for $t {
            const VERB: &'static str = $verb;
            type Reply = $reply;
        }
        impl ServiceCommand for $t {
            const SERVICE: Service = Service::MessageStore;
        }
    };
}

store_command!(AddReaction, "add_reaction", ReactionChange);
store_command!(RemoveReaction, "remove_reaction", ReactionChange);
store_command!(ListReactors, "list_reactors", Reactors);
store_command!(PinMessage, "pin_message", PinChange);
store_command!(UnpinMessage, "unpin_message", PinChange);
store_command!(ListPins, "list_pins", PinList);
