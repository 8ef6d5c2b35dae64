//! A room member as the REST APIs show them (`rest-rooms.md`'s member list, and the
//! `/api/v1` participants of `ws-rooms.md`).
//!
//! `rest-rooms.md` shows a room's creator with `"role": "admin"` and knows no other
//! roles above `member`. The creator is the room's `owner` (issue 24: they rank above
//! admins), but a client written against the document must still read them as an
//! admin: so `role` shows the owner as `admin`, and `owner: true` says who ranks above
//! the admins. Roles are stored and enforced as they are; only the representation maps.

use chat_domain::ids::UserId;
use chat_domain::model::{Member, MemberRole};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;

/// A role as the REST APIs show it: the owner is shown as `admin` (see `owner`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ShownRole {
    Admin,
    Moderator,
    Member,
}

impl ShownRole {
    /// The role shown for `role`, and whether it is the owner's.
    pub fn of(role: MemberRole) -> (Self, bool) {
        match role {
            MemberRole::Owner => (ShownRole::Admin, true),
            MemberRole::Admin => (ShownRole::Admin, false),
            MemberRole::Moderator => (ShownRole::Moderator, false),
            MemberRole::Member => (ShownRole::Member, false),
        }
    }
}

/// A member of a room.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RoomMember {
    pub user_id: UserId,
    /// `admin`, `moderator` or `member`. The room's owner (its creator) is shown as
    /// `admin`, as `rest-rooms.md` shows a room's creator, with `owner: true`.
    pub role: ShownRole,
    /// Whether this member is the room's owner, who ranks above its admins (see the
    /// permission table in the README).
    pub owner: bool,
    #[serde(with = "chat_domain::time::micros")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub joined_at: DateTime<Utc>,
}

impl From<Member> for RoomMember {
    fn from(m: Member) -> Self {
        let (role, owner) = ShownRole::of(m.role);
        RoomMember { user_id: m.user_id, role, owner, joined_at: m.joined_at }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_reads_as_an_admin_marked_owner() -> anyhow::Result<()> {
        let at = chat_domain::time::now();
        let shown = |role| -> anyhow::Result<serde_json::Value> {
            Ok(serde_json::to_value(RoomMember::from(Member { user_id: UserId::parse("u1")?, role, joined_at: at }))?)
        };
        let owner = shown(MemberRole::Owner)?;
        assert_eq!((owner["role"].as_str(), owner["owner"].as_bool()), (Some("admin"), Some(true)));
        for (role, name) in
            [(MemberRole::Admin, "admin"), (MemberRole::Moderator, "moderator"), (MemberRole::Member, "member")]
        {
            let m = shown(role)?;
            assert_eq!((m["role"].as_str(), m["owner"].as_bool()), (Some(name), Some(false)));
        }
        assert_eq!(owner["joined_at"], serde_json::to_value(chat_domain::time::format(&at))?);
        Ok(())
    }
}
