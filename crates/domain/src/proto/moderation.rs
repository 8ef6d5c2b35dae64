//! Room moderation (issue 24, stages 4–5): roles, bans, mutes, slow mode, flags and
//! the moderation log. message-store checks every permission (the README's "Room
//! moderation" has the table) and writes a log row in the same transaction as each
//! action; the send statement refuses a muted member (`MUTED`) and a send inside slow
//! mode's wait (`RATE_LIMIT_EXCEEDED` with `retry_after`), so every dialect refuses alike.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Command, Done, Service, ServiceCommand};
use crate::ids::{MessageId, RoomId, TenantId, UserId};
use crate::model::{Actor, Member, MemberRole};

/// The message of a `BANNED` refusal to add a banned user back.
pub const BANNED_MESSAGE: &str = "This user is banned from this room";
/// The message of a muted member's refused send or typing (`MUTED`).
pub const MUTED_MESSAGE: &str = "You are muted in this room";

/// Longest `reason` of a ban, mute, flag or resolution, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// Longest slow mode: one day.
pub const MAX_SLOW_MODE_SECS: u32 = 86_400;
/// Most rows one list of bans, mutes, flags or log entries answers.
pub const MAX_LIST: u32 = 100;

/// A flag's id, `flag_` and 32 hex digits: the schema of the `{flag_id}` path segment
/// (flags carry it as a plain string).
pub struct FlagId;

impl JsonSchema for FlagId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FlagId".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "pattern": "^flag_[0-9a-f]{32}$"})
    }
}

/// What a restriction does: a ban removes the member and keeps them out; a mute lets
/// them read but not send or type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RestrictionKind {
    Ban,
    Mute,
}

impl RestrictionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RestrictionKind::Ban => "ban",
            RestrictionKind::Mute => "mute",
        }
    }
}

/// Ban or mute `user_id` in a room (moderators and above, on lower ranks only). Again
/// while in force: the reason and expiry are replaced.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Restrict {
    pub actor: Actor,
    pub room_id: RoomId,
    pub kind: RestrictionKind,
    pub user_id: UserId,
    pub reason: Option<String>,
    /// In the future; `None` is until lifted.
    #[serde(default, with = "crate::time::micros_opt")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub expires_at: Option<DateTime<Utc>>,
}

/// Lift a ban or mute (none, or expired: `removed: false`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Unrestrict {
    pub actor: Actor,
    pub room_id: RoomId,
    pub kind: RestrictionKind,
    pub user_id: UserId,
}

/// The bans or mutes in force in a room, newest first (moderators and above).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ListRestrictions {
    pub actor: Actor,
    pub room_id: RoomId,
    pub kind: RestrictionKind,
}

/// A ban or mute in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Restriction {
    pub room_id: RoomId,
    pub user_id: UserId,
    pub reason: Option<String>,
    #[serde(with = "crate::time::micros_opt")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub expires_at: Option<DateTime<Utc>>,
    pub created_by: UserId,
    #[serde(with = "crate::time::micros")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub created_at: DateTime<Utc>,
}

/// The answer of [`Unrestrict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Lifted {
    /// There was a ban or mute in force to lift.
    pub removed: bool,
}

/// The answer of [`ListRestrictions`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RestrictionList {
    pub items: Vec<Restriction>,
}

/// Change a member's role (admins and above; never to or from `owner`; an admin
/// changes moderators and members only, and gives at most `moderator`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SetMemberRole {
    pub actor: Actor,
    pub room_id: RoomId,
    pub user_id: UserId,
    pub role: MemberRole,
}

/// A room's moderation settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RoomSettings {
    /// A member (below moderator) sends at most once per this many seconds; 0 is off.
    pub slow_mode_secs: u32,
}

/// Read a room's settings (members).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct GetRoomSettings {
    pub actor: Actor,
    pub room_id: RoomId,
}

/// Change a room's settings (admins and above); absent fields stay.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct UpdateRoomSettings {
    pub actor: Actor,
    pub room_id: RoomId,
    pub slow_mode_secs: Option<u32>,
}

/// `FORBIDDEN`/`MUTED` unless the actor may speak (send or type) in the room now.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CheckSpeak {
    pub actor: Actor,
    pub room_id: RoomId,
}

/// Flag a message of the room (any member, once per message: again answers the first).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct FlagMessage {
    pub actor: Actor,
    pub room_id: RoomId,
    pub message_id: MessageId,
    pub reason: String,
}

/// A flag on a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Flag {
    /// `flag_` and 32 hex digits.
    pub flag_id: String,
    pub room_id: RoomId,
    pub message_id: MessageId,
    /// The flagged message's sender.
    pub sender_id: UserId,
    pub flagged_by: UserId,
    pub reason: String,
    #[serde(with = "crate::time::micros")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time::micros_opt")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<UserId>,
    pub resolution: Option<String>,
}

/// A room's flags, newest first (moderators and above).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ListFlags {
    pub actor: Actor,
    pub room_id: RoomId,
    /// Only the unresolved ones.
    pub open_only: bool,
    pub limit: u32,
    pub offset: u32,
}

/// Resolve a flag (moderators and above; again: the first resolution stands).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ResolveFlag {
    pub actor: Actor,
    pub room_id: RoomId,
    pub flag_id: String,
    pub resolution: Option<String>,
}

/// A tenant's flags across rooms, newest first (the operator API's review queue).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TenantFlags {
    pub tenant_id: TenantId,
    pub open_only: bool,
    pub limit: u32,
    pub offset: u32,
}

/// A page of flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FlagList {
    pub flags: Vec<Flag>,
}

/// A room's moderation log, newest first (admins and above).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RoomModerationLog {
    pub actor: Actor,
    pub room_id: RoomId,
    pub limit: u32,
    pub offset: u32,
}

/// A tenant's moderation log across rooms, newest first (the operator API).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TenantModerationLog {
    pub tenant_id: TenantId,
    pub limit: u32,
    pub offset: u32,
}

/// One moderation action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LogEntry {
    pub entry_id: String,
    pub room_id: RoomId,
    /// Who acted.
    pub actor_id: UserId,
    /// `ban`, `unban`, `mute`, `unmute`, `role`, `settings`, `delete_message`,
    /// `remove_member`, `flag`, `resolve_flag`.
    pub action: String,
    pub target_user_id: Option<UserId>,
    pub message_id: Option<MessageId>,
    pub reason: Option<String>,
    /// The action's particulars: a ban's `expires_at`, a role change's `from` and `to`,
    /// the settings changed, a flag's id.
    pub detail: Option<serde_json::Value>,
    #[serde(with = "crate::time::micros")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub created_at: DateTime<Utc>,
}

/// A page of the moderation log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LogPage {
    pub entries: Vec<LogEntry>,
}

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

store_command!(Restrict, "restrict", Restriction);
store_command!(Unrestrict, "unrestrict", Lifted);
store_command!(ListRestrictions, "list_restrictions", RestrictionList);
store_command!(SetMemberRole, "set_member_role", Member);
store_command!(GetRoomSettings, "get_room_settings", RoomSettings);
store_command!(UpdateRoomSettings, "update_room_settings", RoomSettings);
store_command!(CheckSpeak, "check_speak", Done);
store_command!(FlagMessage, "flag_message", Flag);
store_command!(ListFlags, "list_flags", FlagList);
store_command!(ResolveFlag, "resolve_flag", Flag);
store_command!(TenantFlags, "tenant_flags", FlagList);
store_command!(RoomModerationLog, "room_moderation_log", LogPage);
store_command!(TenantModerationLog, "tenant_moderation_log", LogPage);
