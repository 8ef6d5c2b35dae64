//! What a dialect is: a codec between one WebSocket protocol and the session core.
//!
//! A client frame becomes a [`Command`]; a [`Reply`] to one socket, a room event and a
//! user event become frames. Room and user events are rendered once per event per
//! dialect (the fan-out keeps the bytes and offers the same ones to every socket of
//! that dialect), so a codec must not put anything socket-specific into them.

use bytestring::ByteString;
use chat_domain::ApiError;
use chat_domain::ids::RoomId;
use chat_domain::model::Message;
use chat_domain::proto::events::{RoomEvent, UserEvent};

use crate::session::command::{Command, Reply};

/// A client frame the codec refused: answered with an error, never a send.
#[derive(Debug, Clone)]
pub enum Rejected {
    /// A bad frame (malformed, unknown type, bad field): an error frame.
    Frame(ApiError),
    /// A message the client tried to send and that cannot be sent: the send's failure
    /// frame, with the client's id for the message when it had one.
    Send { error: ApiError, local_id: Option<String> },
}

impl From<ApiError> for Rejected {
    fn from(error: ApiError) -> Self {
        Self::Frame(error)
    }
}

/// Why the server closes a socket, for the dialect to pick its close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// The socket's queue filled: it could not keep up (retryable; resume by seq).
    Slow,
    /// The member was removed from the room while connected.
    Removed,
    /// The credential the socket was opened with no longer admits it: the tenant's API
    /// key was rotated or revoked, the token's secret or issuer changed
    /// (`session::revocation`).
    Revoked,
    /// The user token the socket was opened with reached its `exp`.
    Expired,
    /// The user or the tenant has as many sockets open on this gateway as it may
    /// (`WS_MAX_SOCKETS_PER_USER`, `WS_MAX_SOCKETS_PER_TENANT`): a refusal at connect.
    TooMany,
}

impl Close {
    /// Every reason, in the order [`Close::index`] numbers them.
    pub const ALL: [Close; 5] = [Close::Slow, Close::Removed, Close::Revoked, Close::Expired, Close::TooMany];

    /// A small number for the reason (its place in [`Close::ALL`]).
    pub fn index(self) -> u8 {
        match self {
            Close::Slow => 0,
            Close::Removed => 1,
            Close::Revoked => 2,
            Close::Expired => 3,
            Close::TooMany => 4,
        }
    }

    /// The close frame's reason text (the same on every dialect).
    pub fn reason(self) -> &'static str {
        match self {
            Close::Slow => "slow consumer: reconnect and resume from your last seq",
            Close::Removed => "removed from the room",
            Close::Revoked => "credential revoked: the API key was rotated or the token is no longer valid",
            Close::Expired => "token expired",
            Close::TooMany => "too many open sockets",
        }
    }
}

/// One WebSocket dialect. The set is open: a dialect crate implements this and hands
/// its codec (`&'static`, one per gateway) to the session core when a socket joins; the
/// fan-out keeps one rendering per codec per event, whatever codecs exist.
pub trait Codec: Send + Sync + std::fmt::Debug {
    /// The dialect's name in metrics (`chat_gateway_connections{dialect}`) and traces.
    fn name(&self) -> &'static str;

    /// A client text frame of a socket in `room` as a command. Dialects whose frames
    /// name their room refuse a frame naming another one (never a send elsewhere).
    fn decode(&self, text: &str, room: &RoomId) -> Result<Command, Rejected>;

    /// A reply to one socket, or nothing when this dialect has no frame for it.
    fn reply(&self, room: &RoomId, reply: &Reply) -> Option<ByteString>;

    /// A stored message, as this dialect shows it (live and in a resume replay).
    /// `fallback_name` names the sender when the message carries no name.
    fn message(&self, message: &Message, fallback_name: Option<&str>) -> ByteString;

    /// A room event other than a new message, shared by every socket of the dialect.
    fn room_event(&self, event: &RoomEvent) -> Option<ByteString>;

    /// An event addressed to one user, as frames to each of their sockets.
    fn user_event(&self, event: &UserEvent) -> Vec<ByteString>;

    /// A frame the server sends on its own every ping interval, for dialects that
    /// have an application-level heartbeat.
    fn heartbeat(&self) -> Option<ByteString> {
        None
    }

    /// Whether the gateway acknowledges delivery itself for sockets of this dialect:
    /// dialects without an ack frame whose senders still expect `delivered`. The
    /// session then reports each message it pushes, and the receipts batcher moves the
    /// member's delivered cursor.
    fn acks_delivery(&self) -> bool {
        false
    }

    /// The close code this dialect's document gives for `why`.
    fn close_code(&self, why: Close) -> u16;
}
