//! Rows as read from SQL, and their conversion into the domain records.

use chat_domain::ids::{MessageId, RoomId, TenantId, UserId};
use chat_domain::model::{Attachment, Member, MemberRole, Message, MessageKind, Room, RoomType, Tenant, ThreadSummary};
use chat_domain::settings::TenantSettings;
use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Integer, Jsonb, Nullable, Text, Timestamptz};

use crate::error::{StoreError, stored};

#[derive(QueryableByName, Debug)]
pub struct TenantRow {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = Integer)]
    pub rate_limit_per_sec: i32,
    #[diesel(sql_type = Array<Text>)]
    pub key_prefixes: Vec<String>,
    #[diesel(sql_type = Jsonb)]
    pub settings: serde_json::Value,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    pub cluster: String,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = StoreError;
    fn try_from(r: TenantRow) -> Result<Tenant, StoreError> {
        Ok(Tenant {
            tenant_id: stored(TenantId::parse(r.id))?,
            name: r.name,
            rate_limit_per_sec: r.rate_limit_per_sec.max(1) as u32,
            api_key_prefixes: r.key_prefixes,
            webhook_url: r.settings.get("webhook_url").and_then(|v| v.as_str()).map(str::to_owned),
            webhook_secret_set: r.settings.get("webhook_secret").is_some_and(|v| v.is_string()),
            retry: r.settings.get("retry").and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default(),
            settings: TenantSettings::from_stored(&r.settings).redacted(),
            cluster: r.cluster,
            created_at: r.created_at,
        })
    }
}

/// The columns of `tenants` plus the active key prefixes, for `sql_query`.
pub const TENANT_COLUMNS: &str = "t.id, t.name, t.rate_limit_per_sec, t.created_at, t.settings, t.cluster,
    COALESCE((SELECT array_agg(k.display_prefix ORDER BY k.created_at) FROM api_keys k
              WHERE k.tenant_id = t.id AND k.revoked_at IS NULL), '{}') AS key_prefixes";

#[derive(QueryableByName, Debug)]
pub struct RoomRow {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub room_type: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub unique_key: Option<String>,
    #[diesel(sql_type = BigInt)]
    pub last_seq: i64,
    #[diesel(sql_type = BigInt)]
    pub member_count: i64,
    #[diesel(sql_type = Text)]
    pub created_by: String,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
}

impl TryFrom<RoomRow> for Room {
    type Error = StoreError;
    fn try_from(r: RoomRow) -> Result<Room, StoreError> {
        Ok(Room {
            room_id: stored(RoomId::parse(r.id))?,
            room_type: stored(RoomType::parse(&r.room_type))?,
            unique_key: r.unique_key,
            name: r.name,
            last_seq: r.last_seq,
            member_count: r.member_count,
            created_by: stored(UserId::parse(r.created_by))?,
            created_at: r.created_at,
        })
    }
}

#[derive(QueryableByName, Debug)]
pub struct MemberRow {
    #[diesel(sql_type = Text)]
    pub user_id: String,
    #[diesel(sql_type = Text)]
    pub role: String,
    #[diesel(sql_type = Timestamptz)]
    pub joined_at: DateTime<Utc>,
}

impl TryFrom<MemberRow> for Member {
    type Error = StoreError;
    fn try_from(r: MemberRow) -> Result<Member, StoreError> {
        Ok(Member {
            user_id: stored(UserId::parse(r.user_id))?,
            role: stored(MemberRole::parse(&r.role))?,
            joined_at: r.joined_at,
        })
    }
}

#[derive(QueryableByName, Debug)]
pub struct MessageRow {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub room_id: String,
    #[diesel(sql_type = Text)]
    pub sender_id: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub sender_name: Option<String>,
    #[diesel(sql_type = BigInt)]
    pub seq: i64,
    #[diesel(sql_type = Text)]
    pub content: String,
    /// Read leniently: an unreadable value is `null`, the message still listed.
    #[diesel(sql_type = Nullable<Jsonb>)]
    pub meta: Option<chat_pg::json::LenientJson>,
    #[diesel(sql_type = Nullable<Text>)]
    pub client_msg_id: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub edited_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub deleted_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub reply_to: Option<String>,
    /// Read leniently, like `meta`.
    #[diesel(sql_type = Nullable<Jsonb>)]
    pub attachments: Option<chat_pg::json::LenientJson>,
    // Threads and mentions (migration 0070).
    #[diesel(sql_type = Nullable<Text>)]
    pub parent_id: Option<String>,
    #[diesel(sql_type = Integer)]
    pub reply_count: i32,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub last_reply_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Array<Text>>)]
    pub thread_participants: Option<Vec<String>>,
    #[diesel(sql_type = Nullable<Array<Text>>)]
    pub mentions: Option<Vec<String>>,
}

/// The columns of `messages` in [`MessageRow`]'s shape.
pub const MESSAGE_COLUMNS: &str = "id, room_id, sender_id, sender_name, seq, content, meta, client_msg_id, created_at, \
     edited_at, deleted_at, kind, reply_to, attachments, parent_id, reply_count, last_reply_at, thread_participants, \
     mentions";

/// [`MESSAGE_COLUMNS`] of a table aliased `m`.
pub const M_MESSAGE_COLUMNS: &str = "m.id, m.room_id, m.sender_id, m.sender_name, m.seq, m.content, m.meta, \
     m.client_msg_id, m.created_at, m.edited_at, m.deleted_at, m.kind, m.reply_to, m.attachments, m.parent_id, \
     m.reply_count, m.last_reply_at, m.thread_participants, m.mentions";

/// A thread summary as stored on its parent: none without replies.
pub fn thread_summary(
    reply_count: i32,
    last_reply_at: Option<DateTime<Utc>>,
    participants: Option<Vec<String>>,
) -> Result<Option<ThreadSummary>, StoreError> {
    let Some(last_reply_at) = last_reply_at.filter(|_| reply_count > 0) else { return Ok(None) };
    Ok(Some(ThreadSummary {
        reply_count: i64::from(reply_count),
        last_reply_at,
        participants: user_ids(participants)?,
    }))
}

/// Stored user ids (NULL for none).
pub fn user_ids(ids: Option<Vec<String>>) -> Result<Vec<UserId>, StoreError> {
    ids.unwrap_or_default().into_iter().map(|u| stored(UserId::parse(u))).collect()
}

/// A stored message kind.
pub fn message_kind(kind: &str) -> Result<MessageKind, StoreError> {
    stored(MessageKind::parse(kind))
}

/// Stored attachments (NULL when there are none). Attachments that cannot be read are
/// left out with a logged error: one bad row never fails the page or list it is in.
pub fn attachments(json: Option<serde_json::Value>) -> Result<Vec<Attachment>, StoreError> {
    match json {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(v) => Ok(serde_json::from_value(v).unwrap_or_else(|e| {
            tracing::error!(error = %e, "stored attachments cannot be read; the message is shown without them");
            Vec::new()
        })),
    }
}

/// Attachments as stored: NULL for none.
pub fn attachments_json(attachments: &[Attachment]) -> Option<serde_json::Value> {
    if attachments.is_empty() { None } else { serde_json::to_value(attachments).ok() }
}

impl TryFrom<MessageRow> for Message {
    type Error = StoreError;
    fn try_from(r: MessageRow) -> Result<Message, StoreError> {
        Ok(Message {
            message_id: stored(MessageId::parse(r.id))?,
            room_id: stored(RoomId::parse(r.room_id))?,
            sender_id: stored(UserId::parse(r.sender_id))?,
            sender_name: r.sender_name,
            seq: r.seq,
            content: r.content,
            meta: r.meta.map(|m| m.into_inner()).filter(|m| !m.is_null()),
            client_msg_id: r.client_msg_id,
            created_at: r.created_at,
            edited_at: r.edited_at,
            deleted_at: r.deleted_at,
            kind: message_kind(&r.kind)?,
            reply_to: stored(r.reply_to.map(MessageId::parse).transpose())?,
            attachments: attachments(r.attachments.map(|a| a.into_inner()))?,
            parent_id: stored(r.parent_id.map(MessageId::parse).transpose())?,
            thread: thread_summary(r.reply_count, r.last_reply_at, r.thread_participants)?,
            mentions: user_ids(r.mentions)?,
            reactions: Vec::new(),
            pinned_at: None,
            pinned_by: None,
        })
    }
}
