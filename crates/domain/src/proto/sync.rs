//! One-call sync (`GET /sync?since=&limit_per_room=`): what changed in every room of
//! the caller since a token, and the next token.
//!
//! The token is opaque to clients: message-store signs it (HMAC-SHA256 with the
//! tenant's token secret, rotated with its API key) over the tenant, the user, the
//! database cluster and a transaction boundary, so its size does not depend on the
//! number of rooms, and a token that was altered, is another user's or tenant's, was
//! issued before a key rotation or a tenant move, or is older than [`TOKEN_TTL_DAYS`]
//! is refused (`VALIDATION_ERROR` on `since`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Command, Service, ServiceCommand};
use crate::ids::{RoomId, UserId};
use crate::model::{Actor, Member, Message, Room};

/// Default and largest `limit_per_room`.
pub const DEFAULT_LIMIT_PER_ROOM: u32 = 20;
pub const MAX_LIMIT_PER_ROOM: u32 = 100;
/// Longest `since` token accepted (bytes); real ones are about 200.
pub const MAX_TOKEN_LEN: usize = 512;
/// How long a token stays usable.
pub const TOKEN_TTL_DAYS: i64 = 30;

/// What changed for the caller since `since` (everything, as a fresh start, when absent).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SyncChanges {
    pub actor: Actor,
    /// The `token` of the previous sync.
    pub since: Option<String>,
    /// Most new messages returned per room (1 to [`MAX_LIMIT_PER_ROOM`]).
    pub limit_per_room: u32,
}

/// A member's cursors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MemberCursor {
    pub user_id: UserId,
    pub delivered_seq: i64,
    pub read_seq: i64,
}

/// What changed in one room (rooms without changes are left out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RoomChanges {
    pub room: Room,
    /// The caller joined it since the token (or this is a fresh start).
    pub joined: bool,
    /// New messages, in `seq` order: the newest `limit_per_room` of them.
    pub messages: Vec<Message>,
    /// More new messages than returned: page the rest with history, `after_seq =
    /// from_seq` and `before_seq` = the first returned message's `seq`.
    pub has_more: bool,
    /// Every message after this `seq` is new since the token.
    pub from_seq: i64,
    /// Older messages edited or deleted since the token (as they are now), in `seq`
    /// order, at most `limit_per_room` (the newest changed).
    pub updated: Vec<Message>,
    /// More edited or deleted messages than returned.
    pub updated_has_more: bool,
    /// Members' delivered and read cursors that moved since the token (on a fresh
    /// start: the caller's own).
    pub cursors: Vec<MemberCursor>,
    /// Members who joined since the token (not on a fresh start).
    pub members_added: Vec<Member>,
    /// Users who left or were removed since the token.
    pub members_removed: Vec<UserId>,
}

/// The changes and the token to pass next time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SyncReply {
    pub token: String,
    pub rooms: Vec<RoomChanges>,
    /// Rooms the caller left (or was removed from) since the token.
    pub left: Vec<RoomId>,
}

impl Command for SyncChanges {
    const VERB: &'static str = "sync";
    type Reply = SyncReply;
}
impl ServiceCommand for SyncChanges {
    const SERVICE: Service = Service::MessageStore;
}
