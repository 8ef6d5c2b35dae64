//! Blocks (`PUT|DELETE /blocks/{user_id}`, `GET /blocks`): a user blocks another user
//! of their tenant. The blocked user cannot open a DM with the blocker nor send into
//! their existing DM (`FORBIDDEN`); message-store enforces it in its one send
//! statement, so every send path (REST, `/api/chat`, Socket.IO, `/ws`) refuses alike.
//! In other rooms a block hides the blocked user's typing and presence from the blocker
//! and, with `hide_in_groups`, their messages live and in history (see the README's
//! "Blocks").

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Command, Service, ServiceCommand};
use crate::ids::UserId;
use crate::model::Actor;

/// The message of the `FORBIDDEN` a blocked user's DM send or DM creation gets.
pub const BLOCKED_MESSAGE: &str = "You are blocked by this user";

/// The actor blocks `user_id` (again: the first block and its `created_at` are kept;
/// a given `hide_in_groups` replaces the block's).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct BlockUser {
    pub actor: Actor,
    pub user_id: UserId,
    /// Hide the blocked user's messages from the actor in every room, live and in
    /// history. Absent: a new block does not, an existing one keeps its choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hide_in_groups: Option<bool>,
}

/// The actor lifts their block of `user_id` (none: nothing changes).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct UnblockUser {
    pub actor: Actor,
    pub user_id: UserId,
}

/// The users the actor blocks.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ListBlocks {
    pub actor: Actor,
}

/// One block of the actor's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Block {
    /// The blocked user.
    pub user_id: UserId,
    /// When the block was first made.
    pub created_at: DateTime<Utc>,
    /// The blocked user's messages are hidden from the blocker, live and in history.
    #[serde(default)]
    pub hide_in_groups: bool,
}

/// A user event to the blocker's own sockets (`block.changed`): a block was made,
/// changed or lifted. Gateways update the blocker's cached block set with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BlockChanged {
    /// The (un)blocked user.
    pub blocked_id: UserId,
    /// Whether a block is now in force.
    pub blocked: bool,
    /// Whether their messages are hidden (false when not blocked).
    pub hide_in_groups: bool,
}

/// The answer of [`UnblockUser`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Unblocked {
    /// There was a block to lift.
    pub removed: bool,
}

/// The answer of [`ListBlocks`], newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BlockList {
    pub blocks: Vec<Block>,
}

impl Command for BlockUser {
    const VERB: &'static str = "block_user";
    type Reply = Block;
}
impl ServiceCommand for BlockUser {
    const SERVICE: Service = Service::MessageStore;
}
impl Command for UnblockUser {
    const VERB: &'static str = "unblock_user";
    type Reply = Unblocked;
}
impl ServiceCommand for UnblockUser {
    const SERVICE: Service = Service::MessageStore;
}
impl Command for ListBlocks {
    const VERB: &'static str = "list_blocks";
    type Reply = BlockList;
}
impl ServiceCommand for ListBlocks {
    const SERVICE: Service = Service::MessageStore;
}
