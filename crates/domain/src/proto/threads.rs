//! Threads (`GET /rooms/{room_id}/messages/{message_id}/thread`, `GET /threads`): a
//! reply is sent like any message, with `parent_id` naming a top-level message of the
//! same room (`SendMessage::parent_id`); it is a room message (it takes the room's next
//! `seq`). The parent carries the thread's summary (`Message::thread`), kept by the
//! store in the transaction that stores or deletes a reply, and a `thread.updated`
//! room event says when it changed.
//!
//! Unread counts per thread: each participant (the parent's author and everyone who
//! replied) has a thread read cursor; reading a thread page moves it to the newest
//! reply of the page, and replies after it (not the participant's own, not deleted)
//! are the thread's `unread_count` in `list_threads`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Command, Service, ServiceCommand};
use crate::ids::{MessageId, RoomId};
use crate::model::{Actor, Message};

/// The send's `parent_id` is not a message of the room.
pub const PARENT_NOT_IN_ROOM: &str = "parent_id does not name a message of this room";
/// The send's `parent_id` names a deleted message.
pub const PARENT_DELETED: &str = "parent_id names a deleted message";
/// The send's `parent_id` names a thread reply.
pub const NESTED_THREAD: &str =
    "parent_id names a thread reply; threads do not nest: reply to the thread's top-level message";
/// A plain member mentioned `@channel`.
pub const CHANNEL_NOT_ADMIN: &str = "Only room admins may mention @channel";
/// A send mentioned someone who is not a member of the room.
pub const MENTION_NOT_MEMBER: &str = "mentions may only name members of the room";

/// Largest thread page.
pub const MAX_THREAD_PAGE: u32 = 100;
/// Most threads one `list_threads` answers.
pub const MAX_THREADS: u32 = 100;

/// A page of a thread: its replies after `after_seq` (room `seq`s; from the first when
/// absent), oldest first, at most `limit` (up to [`MAX_THREAD_PAGE`]). Moves the actor's
/// thread read cursor to the newest reply returned.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct GetThread {
    pub actor: Actor,
    pub room_id: RoomId,
    /// The thread's top-level message.
    pub message_id: MessageId,
    pub after_seq: Option<i64>,
    pub limit: u32,
}

/// The parent (with its current summary) and a page of its replies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ThreadPage {
    pub parent: Message,
    /// Replies in `seq` order, deleted ones included (as tombstones, like history).
    pub replies: Vec<Message>,
    /// More replies follow the last one of this page.
    pub has_more: bool,
}

impl Command for GetThread {
    const VERB: &'static str = "get_thread";
    type Reply = ThreadPage;
}
impl ServiceCommand for GetThread {
    const SERVICE: Service = Service::MessageStore;
}

/// The threads the actor takes part in (in rooms they are a member of), the most
/// recently replied to first, at most `limit` (up to [`MAX_THREADS`]).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ListThreads {
    pub actor: Actor,
    pub limit: u32,
}

/// One of the actor's threads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ThreadUnread {
    pub room_id: RoomId,
    /// The top-level message, with its `thread` summary.
    pub parent: Message,
    /// Replies after the actor's thread read cursor, not their own, not deleted.
    pub unread_count: i64,
}

/// The answer of [`ListThreads`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ThreadList {
    pub threads: Vec<ThreadUnread>,
}

impl Command for ListThreads {
    const VERB: &'static str = "list_threads";
    type Reply = ThreadList;
}
impl ServiceCommand for ListThreads {
    const SERVICE: Service = Service::MessageStore;
}
