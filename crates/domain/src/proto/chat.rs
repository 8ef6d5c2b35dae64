//! Commands of the `rest-chat.md` dialect (`/api/chat`), answered by message-store on
//! the same rooms, members and messages as every other dialect: a tenant's user
//! directory, chats (rooms seen as direct, group, support or context chats) with their
//! participants, unread counts and per-user archive flag, history pages by time, and
//! marking a whole chat read.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Command, Service, ServiceCommand};
use crate::error::ApiError;
use crate::ids::{RoomId, TenantId, UserId};
use crate::model::{Actor, MemberRole, Message, Room, RoomType};

macro_rules! store_command {
    ($cmd:ty, $verb:literal, $reply:ty) => {
        impl Command for $cmd {
            const VERB: &'static str = $verb;
            type Reply = $reply;
        }
        impl ServiceCommand for $cmd {
            const SERVICE: Service = Service::MessageStore;
        }
    };
}

/// Most roles a directory user may have.
pub const MAX_ROLES: usize = 20;
/// Longest role name.
pub const MAX_ROLE_CHARS: usize = 64;
/// Longest avatar URL.
pub const MAX_AVATAR_URL: usize = 2048;
/// Largest directory `metadata` or chat `metadata`, serialized.
pub const MAX_METADATA_BYTES: usize = 8 * 1024;
/// Directory roles that put a user in the tenant's support pool.
pub const SUPPORT_ROLES: [&str; 2] = ["support", "admin"];
/// The directory role that may post system messages and delete anyone's message.
pub const ADMIN_ROLE: &str = "admin";
/// The context type of a support chat.
pub const SUPPORT_CONTEXT: &str = "support";
/// Largest page of chats or chat messages.
pub const MAX_CHAT_PAGE: u32 = 100;

/// A free-form JSON object of at most [`MAX_METADATA_BYTES`], nested at most
/// [`crate::json::MAX_DEPTH`] levels, without NUL (which jsonb cannot hold).
pub fn validate_metadata(field: &str, value: &serde_json::Value) -> Result<(), ApiError> {
    if !value.is_object() {
        return Err(ApiError::validation(field, format!("{field} must be a JSON object")));
    }
    if value.to_string().len() > MAX_METADATA_BYTES {
        return Err(ApiError::validation(field, format!("{field} must be at most {MAX_METADATA_BYTES} bytes")));
    }
    if crate::model::has_nul(value) {
        return Err(ApiError::validation(field, format!("{field} must not contain NUL (U+0000) characters")));
    }
    crate::json::check_stored(field, value)
}

/// Directory roles: at most [`MAX_ROLES`], each 1 to [`MAX_ROLE_CHARS`] of `a-z`,
/// `0-9`, `_`, `-`; returned sorted without repeats.
pub fn validate_roles(roles: &[String]) -> Result<Vec<String>, ApiError> {
    if roles.len() > MAX_ROLES {
        return Err(ApiError::validation("roles", format!("at most {MAX_ROLES} roles")));
    }
    let ok = |r: &String| {
        (1..=MAX_ROLE_CHARS).contains(&r.len())
            && r.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    };
    if let Some(bad) = roles.iter().find(|r| !ok(r)) {
        return Err(ApiError::validation(
            "roles",
            format!("Invalid role {bad:?}: 1 to {MAX_ROLE_CHARS} of a-z, 0-9, '_', '-'"),
        ));
    }
    let mut roles = roles.to_vec();
    roles.sort();
    roles.dedup();
    Ok(roles)
}

/// An avatar URL: an `http://` or `https://` URL of 1 to [`MAX_AVATAR_URL`]
/// characters without whitespace or control characters.
pub fn validate_avatar_url(url: &str) -> Result<(), ApiError> {
    if url.is_empty()
        || url.len() > MAX_AVATAR_URL
        || url.contains(char::is_whitespace)
        || url.contains(char::is_control)
    {
        return Err(ApiError::validation(
            "avatar_url",
            format!("avatar_url must be 1 to {MAX_AVATAR_URL} characters without spaces"),
        ));
    }
    // Only web addresses: a `javascript:` or `data:` URL shown as an image source or a
    // link is a script or a payload in someone else's client.
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) || url.len() <= "http://".len() {
        return Err(ApiError::validation("avatar_url", "avatar_url must be an http:// or https:// URL"));
    }
    Ok(())
}

/// A user of a tenant's directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DirectoryUser {
    pub user_id: UserId,
    pub name: Option<String>,
    pub avatar_url: Option<String>,
    /// E.g. `support`, `admin` (both put the user in the support pool).
    pub roles: Vec<String>,
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub metadata: serde_json::Value,
    /// Whether the directory has a row for the user (a user who only took part in a
    /// room has none: no name, no roles).
    pub registered: bool,
    /// When the directory row was written first and last (absent without a row).
    #[serde(default, with = "crate::time::micros_opt")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, with = "crate::time::micros_opt")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub updated_at: Option<DateTime<Utc>>,
}

impl DirectoryUser {
    /// Whether the user has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// Creates or replaces a directory user (the tenant's server, with its API key).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PutUser {
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub name: Option<String>,
    pub avatar_url: Option<String>,
    pub roles: Vec<String>,
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub metadata: serde_json::Value,
}

/// The user as stored, and whether this call created the row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UserPut {
    pub user: DirectoryUser,
    pub created: bool,
}
store_command!(PutUser, "put_user", UserPut);

/// A user of the tenant: in the directory, or a member of any of its rooms;
/// `NOT_FOUND` otherwise.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct GetUser {
    pub tenant_id: TenantId,
    pub user_id: UserId,
}
store_command!(GetUser, "get_user", DirectoryUser);

/// How a chat shows to the dialect: a DM is `direct`, a support chat `support`, every
/// other room (groups, channels, context chats) `group`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChatType {
    Direct,
    Group,
    Support,
}

impl ChatType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatType::Direct => "direct",
            ChatType::Group => "group",
            ChatType::Support => "support",
        }
    }

    /// Parses the `type` of a chat list filter.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "direct" => Ok(ChatType::Direct),
            "group" => Ok(ChatType::Group),
            "support" => Ok(ChatType::Support),
            _ => Err(ApiError::validation("type", "Invalid chat type. Must be one of: direct, group, support")),
        }
    }

    /// The type of a room with this room type and context type.
    pub fn of(room_type: RoomType, context_type: Option<&str>) -> Self {
        match (room_type, context_type) {
            (RoomType::Dm, _) => ChatType::Direct,
            (_, Some(SUPPORT_CONTEXT)) => ChatType::Support,
            _ => ChatType::Group,
        }
    }
}

/// What a context chat is bound to: a purchase request, an order, a ticket, ...
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChatContext {
    /// 1 to 64 of `a-z`, `0-9`, `_`, `-` (`purchase_request`, `order`, ...).
    #[serde(rename = "type")]
    pub context_type: String,
    /// 1 to 128 printable characters.
    pub id: String,
}

impl ChatContext {
    /// Checks the type and id (`field` names the request field at fault).
    pub fn parse(field: &str, context_type: &str, id: &str) -> Result<Self, ApiError> {
        let type_ok = (1..=64).contains(&context_type.len())
            && context_type.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            && context_type != SUPPORT_CONTEXT;
        if !type_ok {
            return Err(ApiError::validation(
                format!("{field}.type"),
                "context type must be 1 to 64 of a-z, 0-9, '_', '-' (and not \"support\")",
            ));
        }
        if id.trim().is_empty() || id.chars().count() > 128 || id.chars().any(char::is_control) {
            return Err(ApiError::validation(
                format!("{field}.id"),
                "context id must be 1 to 128 printable characters",
            ));
        }
        Ok(Self { context_type: context_type.to_owned(), id: id.to_owned() })
    }
}

/// What kind of chat to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NewChatKind {
    /// The caller and exactly one other participant; the existing DM of the pair is
    /// returned instead of a second one.
    Direct,
    /// The caller and at least one other participant.
    Group,
    /// The caller and the tenant's support pool (directory users with role `support`
    /// or `admin`); a new chat every time.
    Support,
    /// One chat per context and tenant: the first create makes it, later ones (also
    /// concurrent ones) get the same chat.
    Context(ChatContext),
}

/// Creates a chat. Every participant must be a user of the tenant (in the directory,
/// or a member of any of its rooms): `NOT_FOUND` "participant not found" otherwise.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CreateChat {
    pub actor: Actor,
    pub kind: NewChatKind,
    /// The other participants (the actor is added; naming the actor is harmless).
    pub participants: Vec<UserId>,
    pub title: Option<String>,
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub metadata: Option<serde_json::Value>,
}

/// The chat, and whether this call created it (`false`: an existing DM or context
/// chat was returned).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatCreated {
    pub chat: Chat,
    pub created: bool,
}
store_command!(CreateChat, "create_chat", ChatCreated);

/// A participant of a chat, with what the directory knows of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Participant {
    pub user_id: UserId,
    pub role: MemberRole,
    #[serde(with = "crate::time::micros")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub joined_at: DateTime<Utc>,
    pub name: Option<String>,
    pub avatar_url: Option<String>,
    pub roles: Vec<String>,
}

/// A room as a chat, seen by one user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Chat {
    pub room: Room,
    pub chat_type: ChatType,
    pub context: Option<ChatContext>,
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub metadata: Option<serde_json::Value>,
    pub participants: Vec<Participant>,
    pub last_message: Option<Message>,
    /// Messages after the viewer's read cursor.
    pub unread_count: i64,
    /// Of those, the ones (not deleted, not the viewer's) that mention the viewer or
    /// `@channel`.
    #[serde(default)]
    pub unread_mentions: i64,
    /// Whether the viewer archived it and no message came since.
    pub archived: bool,
    /// The newest message's time, else the room's creation.
    #[serde(with = "crate::time::micros")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub last_activity_at: DateTime<Utc>,
    /// Unread messages of every participant (only in [`GetChat`]'s answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread_by_user: Option<BTreeMap<UserId, i64>>,
}

/// A chat the actor takes part in: `NOT_FOUND` when there is no such room in the
/// tenant, `FORBIDDEN` when the actor is not a participant.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct GetChat {
    pub actor: Actor,
    pub room_id: RoomId,
}
store_command!(GetChat, "get_chat", Chat);

/// A page of the actor's chats, the most recently active first.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ListChats {
    pub actor: Actor,
    pub chat_type: Option<ChatType>,
    /// `false`: the chats not archived (the default list); `true`: only archived ones.
    pub archived: bool,
    /// From 1.
    pub page: u32,
    /// 1 to [`MAX_CHAT_PAGE`].
    pub limit: u32,
}

/// One page, and how many chats match in all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatPage {
    pub chats: Vec<Chat>,
    pub total: i64,
}
store_command!(ListChats, "list_chats", ChatPage);

/// Counts over the actor's chats.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct GetChatStats {
    pub actor: Actor,
}

/// The counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatStats {
    pub total_chats: i64,
    /// Messages stored in those chats (deleted ones keep their `seq` and count).
    pub total_messages: i64,
    /// Unread messages over all of them.
    pub total_unread: i64,
    /// Chats with at least one unread message.
    pub unread_chats: i64,
    pub archived_chats: i64,
    /// Chats by type.
    pub direct_chats: i64,
    pub group_chats: i64,
    pub support_chats: i64,
}
store_command!(GetChatStats, "chat_stats", ChatStats);

/// Flips the actor's archive flag of a chat (archived chats come back by themselves
/// on the next message).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ToggleArchive {
    pub actor: Actor,
    pub room_id: RoomId,
}
store_command!(ToggleArchive, "toggle_archive", Chat);

/// A page of a chat's history, **newest first**: messages created before `before`
/// (all when absent), skipping `(page - 1) * limit` of them.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ChatMessages {
    pub actor: Actor,
    pub room_id: RoomId,
    #[serde(default, with = "crate::time::micros_opt")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub before: Option<DateTime<Utc>>,
    pub page: u32,
    pub limit: u32,
}

/// A page of messages and how many match in all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatMessagePage {
    pub messages: Vec<Message>,
    pub total: i64,
}
store_command!(ChatMessages, "chat_messages", ChatMessagePage);

/// Marks everything in a chat read for the actor: the read cursor moves to the newest
/// message (emitting the room's `read` event, as any read does).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ReadAll {
    pub actor: Actor,
    pub room_id: RoomId,
}

/// How many messages became read, and the cursor now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AllRead {
    pub modified_count: i64,
    pub read_seq: i64,
}
store_command!(ReadAll, "read_all", AllRead);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_types_follow_room_and_context() {
        assert_eq!(ChatType::of(RoomType::Dm, None), ChatType::Direct);
        assert_eq!(ChatType::of(RoomType::Group, Some("support")), ChatType::Support);
        assert_eq!(ChatType::of(RoomType::Group, Some("purchase_request")), ChatType::Group);
        assert_eq!(ChatType::of(RoomType::Channel, None), ChatType::Group);
    }

    #[test]
    fn contexts_are_checked() {
        assert!(ChatContext::parse("context", "purchase_request", "pr-1").is_ok());
        assert!(ChatContext::parse("context", "Bad Type", "x").is_err());
        assert!(ChatContext::parse("context", "support", "x").is_err());
        assert!(ChatContext::parse("context", "order", " ").is_err());
        assert!(ChatContext::parse("context", "order", &"x".repeat(129)).is_err());
    }
}
