//! What a client asks of its session, and what the session answers, independent of
//! any dialect. Codecs build commands from client frames (validating at the boundary:
//! past this point values are domain types) and render replies.

use chat_domain::ApiError;
use chat_domain::emoji::Emoji;
use chat_domain::ids::{MessageId, UserId};
use chat_domain::model::{Message, MessageContent};
use chat_domain::proto::notify::InboxItem;
use chat_domain::proto::reactions::ReactionChange;
use chat_domain::proto::store::{CursorKind, Cursors, MessageSent};

/// A client's request to its session.
#[derive(Debug, Clone)]
pub enum Command {
    /// Answered with [`Reply::Pong`].
    Ping,
    /// Keeps the connection alive; no answer.
    KeepAlive,
    /// Started or stopped typing (relayed to the others; expires on its own).
    Typing(bool),
    /// Who is online in the room: [`Reply::Online`].
    OnlineUsers,
    /// Store a message: [`Reply::Sent`] or [`Reply::SendFailed`].
    Send(Send),
    /// A page of history: [`Reply::History`].
    History(History),
    /// Move the caller's delivered or read cursor: [`Reply::Cursor`].
    Cursor { kind: CursorKind, seq: i64 },
    /// A read receipt naming messages: the read cursor moves to the newest of them
    /// ([`Reply::Cursor`]).
    ReadMessages(Vec<MessageId>),
    /// A page of history backwards from a message id: [`Reply::Older`].
    Older(Older),
    /// Add or take back a reaction: [`Reply::Reacted`].
    React(React),
}

/// A reaction to add or take back (issue 23).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct React {
    pub message_id: MessageId,
    pub emoji: Emoji,
    /// `true` adds the reaction, `false` takes it back.
    pub add: bool,
}

/// Which page of history, paging backwards by message id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Older {
    /// The page ends just before this message; the newest messages when absent.
    pub before_id: Option<MessageId>,
    pub limit: u32,
}

/// A message to store.
#[derive(Debug, Clone)]
pub struct Send {
    pub content: MessageContent,
    /// The client's id for it; a resend with the same id returns the first message.
    pub local_id: Option<String>,
    pub meta: Option<serde_json::Value>,
    /// A thread reply: the thread's top-level message.
    pub parent_id: Option<chat_domain::ids::MessageId>,
    /// The room members it mentions (`@channel`: everyone).
    pub mentions: Vec<chat_domain::ids::UserId>,
}

/// Which page of history (the rules of the REST history endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History {
    pub after_seq: Option<i64>,
    pub before_seq: Option<i64>,
    pub limit: u32,
}

/// What the session sends one socket (besides the room's and the user's events).
// `Sent` is the common reply; boxing it would allocate per send for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Reply {
    Pong,
    /// Who is online (on connect, and when asked).
    Online {
        user_id: UserId,
        online: Vec<UserId>,
        total_participants: i64,
        /// Set when `online` is not the whole list: a big room's greeting lists only the
        /// user, with the room's count here (the whole list is read on demand).
        total_online: Option<u64>,
    },
    /// The stored message (or the earlier one, for a resend).
    Sent {
        sent: MessageSent,
        sender_name: Option<String>,
    },
    /// A send that failed, with the client's id for it.
    SendFailed {
        error: ApiError,
        local_id: Option<String>,
    },
    /// A history page.
    History(Vec<Message>),
    /// A history page paged backwards, newest first.
    Older(Vec<Message>),
    /// The caller's cursors after a move.
    Cursor(Cursors),
    /// A reaction added or taken back (the room's `reaction.added` / `reaction.removed`
    /// event follows when it changed anything).
    Reacted(ReactionChange),
    /// Something the client got wrong (a bad frame, a failed request).
    Error(ApiError),
    /// Something from the user's inbox that arrived while they were away.
    Notification(InboxItem),
    /// The gateway is going away: reconnect after `delay_ms`.
    Reconnect {
        delay_ms: u64,
    },
}
