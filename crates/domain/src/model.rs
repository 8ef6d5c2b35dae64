//! Validated values and the records that cross the bus.
//!
//! Wire input is parsed into these types once, at the edge (gateway adapters, bus
//! deserialization); code past the edge never re-checks them.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::ids::{MessageId, RoomId, TenantId, UserId};
use crate::settings::TenantSettings;

/// Longest message body, in characters.
pub const MAX_CONTENT_CHARS: usize = 16_000;
/// Largest `meta` object, serialized, in bytes.
pub const MAX_META_BYTES: usize = 8 * 1024;
/// Longest client-chosen idempotency id (`client_msg_id`, `local_id`, `Idempotency-Key`).
pub const MAX_CLIENT_ID_LEN: usize = 128;
/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;
/// Longest room or tenant name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Most members a room can be created with in one call.
pub const MAX_INITIAL_MEMBERS: usize = 1_000;
/// Default per-tenant request rate.
pub const DEFAULT_RATE_LIMIT_PER_SEC: u32 = 100;

/// The kind of a room. A DM has exactly two members, and there is at most one DM
/// per pair of users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoomType {
    Dm,
    Group,
    Channel,
}

impl RoomType {
    pub fn as_str(self) -> &'static str {
        match self {
            RoomType::Dm => "dm",
            RoomType::Group => "group",
            RoomType::Channel => "channel",
        }
    }

    /// Parses the `type` field of a create-room request.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "dm" => Ok(RoomType::Dm),
            "group" => Ok(RoomType::Group),
            "channel" => Ok(RoomType::Channel),
            _ => Err(ApiError::validation("type", "Invalid room type. Must be one of: dm, group, channel")),
        }
    }
}

/// A member's role in a room, highest first (the README's "Room moderation" has the
/// permission table). The creator of a group or channel is its `owner`; `admin`s manage
/// membership and settings; `moderator`s ban, mute, delete others' messages and review
/// flags; `member`s talk. A role acts only on members ranked below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    Owner,
    Admin,
    Moderator,
    Member,
}

impl MemberRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Owner => "owner",
            MemberRole::Admin => "admin",
            MemberRole::Moderator => "moderator",
            MemberRole::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "owner" => Ok(MemberRole::Owner),
            "admin" => Ok(MemberRole::Admin),
            "moderator" => Ok(MemberRole::Moderator),
            "member" => Ok(MemberRole::Member),
            _ => Err(ApiError::validation("role", "Invalid role. Must be one of: owner, admin, moderator, member")),
        }
    }

    /// 3 for the owner down to 0 for a member: a role acts on lower ranks only.
    pub fn rank(self) -> u8 {
        match self {
            MemberRole::Owner => 3,
            MemberRole::Admin => 2,
            MemberRole::Moderator => 1,
            MemberRole::Member => 0,
        }
    }

    /// Owner or admin: manages members, roles and room settings, reads the moderation log.
    pub fn is_admin(self) -> bool {
        self.rank() >= MemberRole::Admin.rank()
    }

    /// Moderator or above: bans, mutes, deletes others' messages, reviews flags, and
    /// is exempt from slow mode.
    pub fn is_moderator(self) -> bool {
        self.rank() >= MemberRole::Moderator.rank()
    }
}

/// The text of a message: not blank, at most [`MAX_CONTENT_CHARS`] characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MessageContent(String);

impl JsonSchema for MessageContent {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MessageContent".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "minLength": 1, "maxLength": MAX_CONTENT_CHARS})
    }
}

impl MessageContent {
    pub fn parse(s: impl Into<String>) -> Result<Self, ApiError> {
        let s = s.into();
        if s.trim().is_empty() {
            return Err(ApiError::validation("content", "content must not be empty"));
        }
        if s.contains('\0') {
            return Err(ApiError::validation("content", "content must not contain NUL (U+0000) characters"));
        }
        if s.chars().count() > MAX_CONTENT_CHARS {
            return Err(ApiError::validation(
                "content",
                format!("content must be at most {MAX_CONTENT_CHARS} characters"),
            ));
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MessageContent {
    type Error = ApiError;
    fn try_from(s: String) -> Result<Self, ApiError> {
        Self::parse(s)
    }
}

impl From<MessageContent> for String {
    fn from(c: MessageContent) -> String {
        c.0
    }
}

/// Free-form message metadata: a JSON object of at most [`MAX_META_BYTES`], nested at
/// most [`crate::json::MAX_DEPTH`] levels.
pub fn validate_meta(meta: &serde_json::Value) -> Result<(), ApiError> {
    if !meta.is_object() {
        return Err(ApiError::validation("meta", "meta must be a JSON object"));
    }
    let text = meta.to_string();
    if text.len() > MAX_META_BYTES {
        return Err(ApiError::validation("meta", format!("meta must be at most {MAX_META_BYTES} bytes")));
    }
    // PostgreSQL's jsonb cannot hold U+0000.
    if has_nul(meta) {
        return Err(ApiError::validation("meta", "meta must not contain NUL (U+0000) characters"));
    }
    // Whatever is stored must stay readable inside every envelope around it.
    crate::json::check_stored("meta", meta)
}

/// Whether any string or key in `v` contains U+0000.
pub fn has_nul(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(has_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// A display name as shown and stored: control characters (U+0000, which PostgreSQL's
/// text cannot hold, among them) dropped, trimmed, at most [`MAX_DISPLAY_NAME_CHARS`]
/// characters; `None` when nothing is left.
pub fn display_name(raw: &str) -> Option<String> {
    let name: String = raw.chars().filter(|c| !c.is_control()).collect();
    let name: String = name.trim().chars().take(MAX_DISPLAY_NAME_CHARS).collect();
    (!name.is_empty()).then_some(name)
}

/// A client-chosen idempotency id (`client_msg_id`, `local_id`, `Idempotency-Key`).
pub fn validate_client_id(field: &str, id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > MAX_CLIENT_ID_LEN || id.chars().any(char::is_control) {
        return Err(ApiError::validation(
            field,
            format!("{field} must be 1 to {MAX_CLIENT_ID_LEN} printable characters"),
        ));
    }
    Ok(())
}

/// A room or tenant name: trimmed, not empty, at most [`MAX_NAME_CHARS`] characters.
pub fn validate_name(field: &str, name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.contains('\0') {
        return Err(ApiError::validation(
            field,
            format!("{field} must be 1 to {MAX_NAME_CHARS} characters, without NUL (U+0000)"),
        ));
    }
    Ok(name.to_owned())
}

/// A per-tenant rate limit in requests per second.
pub fn validate_rate_limit(limit: i64) -> Result<u32, ApiError> {
    if !(1..=1_000_000).contains(&limit) {
        return Err(ApiError::validation("rate_limit_per_sec", "rate_limit_per_sec must be between 1 and 1000000"));
    }
    Ok(limit as u32)
}

/// The unique key of a DM between two users: `dm:<a>:<b>` with the ids sorted.
pub fn dm_unique_key(a: &UserId, b: &UserId) -> String {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    format!("dm:{lo}:{hi}")
}

/// How failed webhook deliveries are retried: up to `max_attempts` tries in all,
/// waiting `backoff_ms * 2^(attempt-1)` (with jitter) between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 5, backoff_ms: 1_000 }
    }
}

impl RetryPolicy {
    /// Checks the bounds: 1-20 attempts, 10 ms to 1 h base backoff.
    pub fn validate(self) -> Result<Self, ApiError> {
        if !(1..=20).contains(&self.max_attempts) {
            return Err(ApiError::validation("retry.max_attempts", "retry.max_attempts must be between 1 and 20"));
        }
        if !(10..=3_600_000).contains(&self.backoff_ms) {
            return Err(ApiError::validation("retry.backoff_ms", "retry.backoff_ms must be between 10 and 3600000"));
        }
        Ok(self)
    }
}

/// A webhook URL: `http://` or `https://`, at most 2,048 characters.
pub fn validate_webhook_url(url: &str) -> Result<(), ApiError> {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() <= 2048
        && !url.contains(char::is_whitespace)
        && !url.contains(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation("webhook_url", "webhook_url must be an http(s) URL of at most 2048 characters"))
    }
}

/// A webhook signing secret: 16 to 256 characters, none of them control characters
/// (PostgreSQL cannot hold U+0000).
pub fn validate_webhook_secret(secret: &str) -> Result<(), ApiError> {
    if (16..=256).contains(&secret.len()) && !secret.contains(char::is_control) {
        Ok(())
    } else {
        Err(ApiError::validation("webhook_secret", "webhook_secret must be 16 to 256 printable characters"))
    }
}

/// A tenant as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Tenant {
    pub tenant_id: TenantId,
    pub name: String,
    pub rate_limit_per_sec: u32,
    /// Display prefixes of the tenant's active API keys (never the keys).
    pub api_key_prefixes: Vec<String>,
    /// Where offline notifications are POSTed, if anywhere.
    pub webhook_url: Option<String>,
    /// Whether a signing secret is set (the secret itself is never shown).
    pub webhook_secret_set: bool,
    pub retry: RetryPolicy,
    /// The tenant's settings, HS256 secrets redacted (`secret_set`).
    #[serde(default)]
    pub settings: TenantSettings,
    /// The PostgreSQL cluster that holds the tenant's rooms and messages (`main`, the
    /// cluster of message-store's `DATABASE_URL`, unless it was placed or moved elsewhere).
    #[serde(default = "home_cluster")]
    pub cluster: String,
    #[serde(with = "crate::time::micros")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub created_at: DateTime<Utc>,
}

/// The name of message-store's home PostgreSQL cluster (its `DATABASE_URL`): tenants,
/// keys and settings live there, and so do the rooms of every tenant not placed elsewhere.
pub const HOME_CLUSTER: &str = "main";

fn home_cluster() -> String {
    HOME_CLUSTER.to_owned()
}

/// Whether `name` can name a PostgreSQL cluster: 1 to 32 lowercase letters, digits,
/// `-` or `_`, starting with a letter (it appears in environment variable names).
pub fn validate_cluster_name(field: &str, name: &str) -> Result<(), ApiError> {
    let ok = (1..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation(
            field,
            format!("{name:?} is not a cluster name (1-32 of a-z, 0-9, '-', '_', starting with a letter)"),
        ))
    }
}

/// A room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Room {
    pub room_id: RoomId,
    #[serde(rename = "type")]
    pub room_type: RoomType,
    /// `dm:<a>:<b>` for DMs, absent otherwise.
    pub unique_key: Option<String>,
    pub name: Option<String>,
    /// The `seq` of the newest message (0 when empty).
    pub last_seq: i64,
    /// How many members the room has.
    pub member_count: i64,
    pub created_by: UserId,
    #[serde(with = "crate::time::micros")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub created_at: DateTime<Utc>,
}

/// A room member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Member {
    pub user_id: UserId,
    pub role: MemberRole,
    #[serde(with = "crate::time::micros")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub joined_at: DateTime<Utc>,
}

/// What a message is: a user's text, or a system notice (posted by the tenant's
/// server with its API key, or by a user with the directory role `admin`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    #[default]
    Text,
    System,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Text => "text",
            MessageKind::System => "system",
        }
    }

    /// Parses a message `type` as clients send it.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "text" => Ok(MessageKind::Text),
            "system" => Ok(MessageKind::System),
            _ => Err(ApiError::validation("type", "Invalid message type. Must be one of: text, system")),
        }
    }

    /// Whether this is the default kind (left out of serialized messages).
    pub fn is_text(&self) -> bool {
        *self == MessageKind::Text
    }
}

/// A file attached to a message. Only the object-store key is kept; the gateway
/// renders a signed URL from it when it shows the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Attachment {
    /// Where the bytes are in the object store.
    pub key: String,
    /// The uploader's file name (shown, and used in `Content-Disposition`).
    pub filename: String,
    /// The type sniffed from the bytes.
    pub mime_type: String,
    /// Size in bytes.
    pub size: u64,
}

/// Most attachments one message may carry.
pub const MAX_ATTACHMENTS: usize = 10;

/// Checks what a send carries besides its text: at most [`MAX_ATTACHMENTS`]
/// attachments, each with a non-empty key, name and type without NUL (PostgreSQL's
/// jsonb cannot hold U+0000).
pub fn validate_attachments(attachments: &[Attachment]) -> Result<(), ApiError> {
    if attachments.len() > MAX_ATTACHMENTS {
        return Err(ApiError::validation(
            "attachments",
            format!("a message carries at most {MAX_ATTACHMENTS} attachments"),
        ));
    }
    for a in attachments {
        let fields = [&a.key, &a.filename, &a.mime_type];
        if fields.iter().any(|f| f.is_empty() || f.len() > 1024 || f.contains('\0')) {
            return Err(ApiError::validation(
                "attachments",
                "an attachment's key, filename and mime_type are 1 to 1024 bytes without NUL",
            ));
        }
    }
    Ok(())
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Message {
    pub message_id: MessageId,
    pub room_id: RoomId,
    pub sender_id: UserId,
    /// The sender's display name when the message was sent, if one was given.
    pub sender_name: Option<String>,
    /// Position in the room, from 1, without gaps.
    pub seq: i64,
    pub content: String,
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub meta: Option<serde_json::Value>,
    /// The sender's idempotency id, when one was given.
    pub client_msg_id: Option<String>,
    #[serde(with = "crate::time::micros")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub created_at: DateTime<Utc>,
    /// When the content was last edited.
    #[serde(default, with = "crate::time::micros_opt")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub edited_at: Option<DateTime<Utc>>,
    /// When the message was deleted (its content is then empty).
    #[serde(default, with = "crate::time::micros_opt")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub deleted_at: Option<DateTime<Utc>>,
    /// A user's text or a system notice.
    #[serde(default, skip_serializing_if = "MessageKind::is_text")]
    pub kind: MessageKind,
    /// The message this one answers (always one of the same room).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MessageId>,
    /// Files attached to the message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// The top-level message whose thread this reply is in (same room). Thread replies
    /// are room messages: they take the room's next `seq` like any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<MessageId>,
    /// On a top-level message with at least one (not deleted) reply: its thread's summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<ThreadSummary>,
    /// The room members the message mentions; [`MENTION_CHANNEL`] mentions everyone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<UserId>,
    /// Reactions, one entry per emoji in the order the emoji were first used; always
    /// present (`[]` when none, and in a live `message.created`).
    #[serde(default)]
    pub reactions: Vec<ReactionSummary>,
    /// When the message was pinned in its room (absent when it is not pinned).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::time::micros_opt")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub pinned_at: Option<DateTime<Utc>>,
    /// Who pinned it (absent when it is not pinned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_by: Option<UserId>,
}

/// One emoji's reactions on a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReactionSummary {
    pub emoji: crate::emoji::Emoji,
    /// How many users reacted with it.
    pub count: i64,
    /// The first users who reacted with it (at most
    /// [`crate::emoji::REACTION_SAMPLE`], earliest first); the whole list is
    /// `GET /rooms/{room_id}/messages/{message_id}/reactions/{emoji}`.
    pub user_ids: Vec<UserId>,
    /// Whether the user reading the message reacted with it (`false` in bus events,
    /// which no one user reads).
    pub me: bool,
}

/// A thread as its parent message shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ThreadSummary {
    /// Replies that are not deleted.
    pub reply_count: i64,
    /// When the newest of them was sent.
    #[serde(with = "crate::time::micros")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub last_reply_at: DateTime<Utc>,
    /// The parent's author, then everyone who replied, in order of their first reply.
    pub participants: Vec<UserId>,
}

/// The mention of every member of a room (room admins only).
pub const MENTION_CHANNEL: &str = "@channel";
/// Most entries in one message's `mentions`.
pub const MAX_MENTIONS: usize = 50;

/// Checks a send's `mentions`: at most [`MAX_MENTIONS`], no repeats. Whether each is a
/// member (and whether the sender may mention [`MENTION_CHANNEL`]) is the store's check.
pub fn validate_mentions(mentions: &[UserId]) -> Result<(), ApiError> {
    if mentions.len() > MAX_MENTIONS {
        return Err(ApiError::validation("mentions", format!("a message mentions at most {MAX_MENTIONS} users")));
    }
    let mut seen = std::collections::HashSet::new();
    if !mentions.iter().all(|m| seen.insert(m.as_str())) {
        return Err(ApiError::validation("mentions", "mentions must not repeat a user"));
    }
    Ok(())
}

/// The tenant a request acts for, and the user it acts as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Actor {
    pub tenant_id: TenantId,
    pub user_id: UserId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dm_key_is_sorted() -> Result<(), crate::ids::IdError> {
        let (a, b) = (UserId::parse("zed")?, UserId::parse("amy")?);
        assert_eq!(dm_unique_key(&a, &b), "dm:amy:zed");
        assert_eq!(dm_unique_key(&b, &a), "dm:amy:zed");
        Ok(())
    }

    #[test]
    fn content_rules() {
        assert!(MessageContent::parse("  ").is_err());
        assert!(MessageContent::parse("x".repeat(MAX_CONTENT_CHARS + 1)).is_err());
        assert!(MessageContent::parse("hello").is_ok());
    }

    #[test]
    fn meta_must_be_a_small_object() {
        assert!(validate_meta(&serde_json::json!([1])).is_err());
        assert!(validate_meta(&serde_json::json!({"k": "x".repeat(MAX_META_BYTES)})).is_err());
        assert!(validate_meta(&serde_json::json!({"type": "text"})).is_ok());
    }

    #[test]
    fn room_type_error_names_the_field() {
        let e = RoomType::parse("party").err();
        assert_eq!(e.and_then(|e| e.field), Some("type".to_owned()));
    }
}
