//! Rooms as the `rest-chat.md` dialect sees them: `create_chat` (direct, group,
//! support and context chats), `get_chat`, `list_chats`, `chat_stats` and
//! `toggle_archive`.
//!
//! A chat is a room: a direct chat is a DM (one per pair, through the DM unique key), a
//! support chat a group room with context type `support`, a context chat a group room
//! with a context type and id (one per context and tenant, through the `rooms_context`
//! unique index, so concurrent creates end with one room). Archiving writes the time
//! on the member's row; the chat is archived while no message is newer, so a new
//! message brings it back without any write on the send path.

use std::collections::{BTreeMap, HashMap};

use chat_domain::ApiError;
use chat_domain::ids::{RoomId, TenantId, UserId};
use chat_domain::model::{MAX_INITIAL_MEMBERS, Message, Room, RoomType, dm_unique_key, validate_name};
use chat_domain::proto::chat::{
    Chat, ChatContext, ChatCreated, ChatPage, ChatStats, ChatType, CreateChat, GetChat, GetChatStats, ListChats,
    MAX_CHAT_PAGE, NewChatKind, Participant, SUPPORT_CONTEXT, ToggleArchive, validate_metadata,
};
use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bool, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::users::{support_pool, unknown_users};
use super::{Store, access};
use crate::error::{StoreError, optional, stored};
use crate::rows::{MESSAGE_COLUMNS, MemberRow, MessageRow, RoomRow};

/// What a chat row adds to a room row.
#[derive(QueryableByName)]
struct ChatRow {
    #[diesel(embed)]
    room: RoomRow,
    #[diesel(sql_type = Nullable<Text>)]
    context_type: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    context_id: Option<String>,
    /// Read leniently: an unreadable value is `null`, the chat still listed.
    #[diesel(sql_type = Nullable<Jsonb>)]
    metadata: Option<chat_pg::json::LenientJson>,
    #[diesel(sql_type = BigInt)]
    unread_count: i64,
    #[diesel(sql_type = BigInt)]
    unread_mentions: i64,
    #[diesel(sql_type = Timestamptz)]
    last_activity_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Text>)]
    m_id: Option<String>,
    #[diesel(sql_type = Bool)]
    archived: bool,
}

/// The viewer's chats with everything a chat shows, filtered by `$3` (one room id),
/// `$4` (archived or not) and `$5` (chat type), most recently active first; `$6`/`$7`
/// limit and offset. The room list of one user is read through `room_members_user`.
const CHATS: &str = "
WITH mine AS (
    SELECT r.id, r.room_type, r.name, r.unique_key, r.last_seq, r.created_by, r.created_at,
           r.member_count,
           r.context_type, r.context_id, r.metadata,
           GREATEST(r.last_seq - COALESCE(c.read_seq, 0), 0) AS unread_count,
           -- Mentions (migration 0070): unread messages mentioning the viewer or @channel.
           (SELECT count(*) FROM messages u
            WHERE u.room_id = r.id AND u.mentions IS NOT NULL AND u.seq > COALESCE(c.read_seq, 0)
              AND u.deleted_at IS NULL AND u.sender_id <> rm.user_id
              AND (rm.user_id = ANY (u.mentions) OR '@channel' = ANY (u.mentions))) AS unread_mentions,
           COALESCE(m.created_at, r.created_at) AS last_activity_at,
           m.id AS m_id,
           (rm.archived_at IS NOT NULL AND rm.archived_at >= COALESCE(m.created_at, r.created_at)) AS archived,
           CASE WHEN r.room_type = 'dm' THEN 'direct' WHEN r.context_type = 'support' THEN 'support'
                ELSE 'group' END AS chat_type
    FROM room_members rm
    JOIN rooms r ON r.id = rm.room_id
    LEFT JOIN room_cursors c ON c.room_id = r.id AND c.user_id = rm.user_id
    LEFT JOIN messages m ON m.room_id = r.id AND m.seq = r.last_seq
    WHERE rm.tenant_id = $1 AND rm.user_id = $2 AND ($3::text IS NULL OR rm.room_id = $3)
)
SELECT id, room_type, name, unique_key, last_seq, created_by, created_at, member_count, context_type, context_id,
       metadata, unread_count, unread_mentions, last_activity_at, m_id, archived
FROM mine
WHERE ($4::bool IS NULL OR archived = $4) AND ($5::text IS NULL OR chat_type = $5)
ORDER BY last_activity_at DESC, id
LIMIT $6 OFFSET $7";

/// How many of the viewer's chats match `$3`/`$4` (archived, chat type).
const COUNT_CHATS: &str = "
SELECT count(*) AS n
FROM room_members rm
JOIN rooms r ON r.id = rm.room_id
LEFT JOIN messages m ON m.room_id = r.id AND m.seq = r.last_seq
WHERE rm.tenant_id = $1 AND rm.user_id = $2
  AND ($3::bool IS NULL
       OR (rm.archived_at IS NOT NULL AND rm.archived_at >= COALESCE(m.created_at, r.created_at)) = $3)
  AND ($4::text IS NULL
       OR CASE WHEN r.room_type = 'dm' THEN 'direct' WHEN r.context_type = 'support' THEN 'support'
               ELSE 'group' END = $4)";

/// Which of the viewer's chats to load.
enum Which<'a> {
    One(&'a RoomId),
    Page { archived: bool, chat_type: Option<ChatType>, limit: i64, offset: i64 },
}

/// Loads the viewer's chats with their participants (from the directory) and newest
/// messages, in three queries whatever the page size. `with_unread_by_user` adds every
/// participant's unread count.
async fn load_chats(
    conn: &mut AsyncPgConnection,
    tenant: &TenantId,
    viewer: &UserId,
    which: Which<'_>,
    with_unread_by_user: bool,
) -> Result<Vec<Chat>, StoreError> {
    let (room, archived, chat_type, limit, offset) = match which {
        Which::One(room) => (Some(room.as_str()), None, None, 1, 0),
        Which::Page { archived, chat_type, limit, offset } => {
            (None, Some(archived), chat_type.map(ChatType::as_str), limit, offset)
        }
    };
    let rows: Vec<ChatRow> = diesel::sql_query(CHATS)
        .bind::<Text, _>(tenant.as_str())
        .bind::<Text, _>(viewer.as_str())
        .bind::<Nullable<Text>, _>(room)
        .bind::<Nullable<Bool>, _>(archived)
        .bind::<Nullable<Text>, _>(chat_type)
        .bind::<BigInt, _>(limit)
        .bind::<BigInt, _>(offset)
        .load(conn)
        .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let room_ids: Vec<&str> = rows.iter().map(|r| r.room.id.as_str()).collect();

    #[derive(QueryableByName)]
    struct ParticipantRow {
        #[diesel(sql_type = Text)]
        room_id: String,
        #[diesel(embed)]
        member: MemberRow,
        #[diesel(sql_type = Nullable<Text>)]
        name: Option<String>,
        #[diesel(sql_type = Nullable<Text>)]
        avatar_url: Option<String>,
        #[diesel(sql_type = Array<Text>)]
        roles: Vec<String>,
        #[diesel(sql_type = BigInt)]
        unread: i64,
    }
    let participants: Vec<ParticipantRow> = diesel::sql_query(
        "SELECT m.room_id, m.user_id, m.role, m.joined_at, u.name, u.avatar_url, COALESCE(u.roles, '{}') AS roles,
                GREATEST(r.last_seq - COALESCE(c.read_seq, 0), 0) AS unread
         FROM room_members m
         JOIN rooms r ON r.id = m.room_id
         LEFT JOIN users u ON u.tenant_id = m.tenant_id AND u.id = m.user_id
         LEFT JOIN room_cursors c ON c.room_id = m.room_id AND c.user_id = m.user_id
         WHERE m.room_id = ANY ($1)
         ORDER BY m.room_id, m.joined_at, m.user_id",
    )
    .bind::<Array<Text>, _>(&room_ids)
    .load(conn)
    .await?;
    let mut by_room: HashMap<String, Vec<(Participant, i64)>> = HashMap::new();
    for p in participants {
        let member = chat_domain::model::Member::try_from(p.member)?;
        by_room.entry(p.room_id).or_default().push((
            Participant {
                user_id: member.user_id,
                role: member.role,
                joined_at: member.joined_at,
                name: p.name,
                avatar_url: p.avatar_url,
                roles: p.roles,
            },
            p.unread,
        ));
    }

    let ids: Vec<&str> = rows.iter().filter_map(|r| r.m_id.as_deref()).collect();
    let messages: Vec<MessageRow> = if ids.is_empty() {
        Vec::new()
    } else {
        diesel::sql_query(format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ANY($1)"))
            .bind::<Array<Text>, _>(&ids)
            .load(conn)
            .await?
    };
    let mut messages = messages.into_iter().map(Message::try_from).collect::<Result<Vec<_>, _>>()?;
    super::reactions::decorate(conn, &mut messages, Some(viewer)).await?;
    let mut last: HashMap<String, Message> = HashMap::new();
    for m in messages {
        last.insert(m.message_id.to_string(), m);
    }

    let mut chats = Vec::with_capacity(rows.len());
    for r in rows {
        let people = by_room.remove(&r.room.id).unwrap_or_default();
        let unread_by_user = with_unread_by_user
            .then(|| people.iter().map(|(p, unread)| (p.user_id.clone(), *unread)).collect::<BTreeMap<_, _>>());
        let room = Room::try_from(r.room)?;
        let chat_type = ChatType::of(room.room_type, r.context_type.as_deref());
        // A support chat has a context type and no id: it is no context chat.
        let context = match (r.context_type, r.context_id) {
            (Some(context_type), Some(id)) => Some(ChatContext { context_type, id }),
            _ => None,
        };
        chats.push(Chat {
            last_message: r.m_id.as_deref().and_then(|id| last.remove(id)),
            chat_type,
            context,
            metadata: r.metadata.map(|m| m.into_inner()).filter(|m| !m.is_null()),
            participants: people.into_iter().map(|(p, _)| p).collect(),
            unread_count: r.unread_count,
            unread_mentions: r.unread_mentions,
            archived: r.archived,
            last_activity_at: r.last_activity_at,
            unread_by_user,
            room,
        });
    }
    Ok(chats)
}

/// Loads one chat of the viewer (who must be a participant: checked by the caller).
async fn one_chat(
    conn: &mut AsyncPgConnection,
    tenant: &TenantId,
    viewer: &UserId,
    room: &RoomId,
    with_unread_by_user: bool,
) -> Result<Chat, StoreError> {
    load_chats(conn, tenant, viewer, Which::One(room), with_unread_by_user)
        .await?
        .pop()
        .ok_or_else(|| StoreError::Api(ApiError::forbidden("You are not a participant of this chat")))
}

pub async fn create_chat(store: Store, cmd: CreateChat) -> Result<ChatCreated, ApiError> {
    let title = cmd.title.as_deref().map(|t| validate_name("title", t)).transpose()?;
    if let Some(meta) = &cmd.metadata {
        validate_metadata("metadata", meta)?;
    }
    let creator = cmd.actor.user_id.clone();
    let tenant = cmd.actor.tenant_id.clone();
    let mut others = super::rooms::initial_others(
        &creator,
        cmd.participants,
        "participantIds",
        "A chat can be created with at most {} participants",
    )?;
    let db = store.db(&tenant).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    // Who takes part besides the creator, and what makes the room unique.
    let (room_type, unique_key, context) = match &cmd.kind {
        NewChatKind::Direct => match others.as_slice() {
            [other] => (RoomType::Dm, Some(dm_unique_key(&creator, other)), None),
            [] => return Err(ApiError::validation("participantIds", "A chat needs 2 or more participants")),
            _ => {
                return Err(ApiError::validation(
                    "participantIds",
                    "A direct chat is between you and exactly one other participant",
                ));
            }
        },
        NewChatKind::Group => {
            if others.is_empty() {
                return Err(ApiError::validation("participantIds", "A chat needs 2 or more participants"));
            }
            (RoomType::Group, None, None)
        }
        NewChatKind::Support => {
            others = support_pool(&mut conn, &tenant, &creator, (MAX_INITIAL_MEMBERS - 1) as i64).await?;
            (RoomType::Group, None, Some((SUPPORT_CONTEXT.to_owned(), None)))
        }
        NewChatKind::Context(c) => (RoomType::Group, None, Some((c.context_type.clone(), Some(c.id.clone())))),
    };
    if !matches!(cmd.kind, NewChatKind::Support)
        && let Some(unknown) = unknown_users(&mut conn, &tenant, &others).await?.into_iter().next()
    {
        return Err(ApiError::not_found(format!("participant not found: {unknown}")));
    }

    // A direct chat is refused to a user its other participant blocks (issue 24, blocks).
    if let (RoomType::Dm, [other]) = (room_type, others.as_slice()) {
        super::blocks::blocked_by(&mut conn, &tenant, &creator, other).await?;
    }

    let room_id = RoomId::generate();
    let metadata = cmd.metadata.clone();
    let (tx_tenant, tx_creator) = (tenant.clone(), creator.clone());
    let outcome = conn
        .transaction(async move |conn| -> Result<(RoomId, bool), StoreError> {
            #[derive(QueryableByName)]
            struct Id {
                #[diesel(sql_type = Text)]
                id: String,
            }
            let (context_type, context_id) = context.clone().unzip();
            let context_id = context_id.flatten();
            // The conflict target is the constraint that makes this kind unique; ON
            // CONFLICT waits for a concurrent insert of the same key and then does
            // nothing, so the loser reads the winner's room.
            let conflict = if unique_key.is_some() {
                "ON CONFLICT (tenant_id, unique_key) WHERE unique_key IS NOT NULL DO NOTHING"
            } else if context_id.is_some() {
                "ON CONFLICT (tenant_id, context_type, context_id) WHERE context_id IS NOT NULL DO NOTHING"
            } else {
                ""
            };
            let inserted: Option<Id> = optional(
                diesel::sql_query(format!(
                    "INSERT INTO rooms (id, tenant_id, room_type, name, unique_key, created_by, context_type,
                                        context_id, metadata)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) {conflict} RETURNING id"
                ))
                .bind::<Text, _>(room_id.as_str())
                .bind::<Text, _>(tx_tenant.as_str())
                .bind::<Text, _>(room_type.as_str())
                .bind::<Nullable<Text>, _>(&title)
                .bind::<Nullable<Text>, _>(&unique_key)
                .bind::<Text, _>(tx_creator.as_str())
                .bind::<Nullable<Text>, _>(&context_type)
                .bind::<Nullable<Text>, _>(&context_id)
                .bind::<Nullable<Jsonb>, _>(&metadata)
                .get_result(conn)
                .await,
            )?;
            if inserted.is_none() {
                let existing: Id = diesel::sql_query(
                    "SELECT id FROM rooms WHERE tenant_id = $1
                       AND (($2::text IS NOT NULL AND unique_key = $2)
                            OR ($3::text IS NOT NULL AND context_type = $3 AND context_id = $4))",
                )
                .bind::<Text, _>(tx_tenant.as_str())
                .bind::<Nullable<Text>, _>(&unique_key)
                .bind::<Nullable<Text>, _>(&context_type)
                .bind::<Nullable<Text>, _>(&context_id)
                .get_result(conn)
                .await?;
                return Ok((stored(RoomId::parse(existing.id))?, false));
            }
            super::rooms::insert_members(conn, &room_id, &tx_tenant, &tx_creator, &others).await?;
            Ok((room_id, true))
        })
        .await?;
    let (room_id, created) = outcome;
    // An existing chat is the caller's only if they take part in it.
    access(&mut conn, &tenant, &room_id, &creator)
        .await?
        .role
        .ok_or_else(|| ApiError::forbidden("This chat exists and you are not a participant of it"))?;
    let chat = one_chat(&mut conn, &tenant, &creator, &room_id, false).await?;
    Ok(ChatCreated { chat, created })
}

pub async fn get_chat(store: Store, cmd: GetChat) -> Result<Chat, ApiError> {
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.reads.get().await.map_err(StoreError::from)?;
    participant(&mut conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?;
    Ok(one_chat(&mut conn, &cmd.actor.tenant_id, &cmd.actor.user_id, &cmd.room_id, true).await?)
}

/// `NOT_FOUND` for no such room in the tenant, `FORBIDDEN` for a non-participant.
pub(super) async fn participant(
    conn: &mut AsyncPgConnection,
    tenant: &TenantId,
    room: &RoomId,
    user: &UserId,
) -> Result<(), StoreError> {
    let found = access(conn, tenant, room, user).await.map_err(|e| match e {
        StoreError::Api(e) if e.code == chat_domain::ErrorCode::NotFound => {
            StoreError::Api(ApiError::not_found("Chat not found"))
        }
        other => other,
    })?;
    found.role.ok_or_else(|| StoreError::Api(ApiError::forbidden("You are not a participant of this chat")))?;
    Ok(())
}

pub async fn list_chats(store: Store, cmd: ListChats) -> Result<ChatPage, ApiError> {
    let limit = i64::from(cmd.limit.clamp(1, MAX_CHAT_PAGE));
    let offset = i64::from(cmd.page.max(1) - 1) * limit;
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.reads.get().await.map_err(StoreError::from)?;
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let total: Count = diesel::sql_query(COUNT_CHATS)
        .bind::<Text, _>(cmd.actor.tenant_id.as_str())
        .bind::<Text, _>(cmd.actor.user_id.as_str())
        .bind::<Nullable<Bool>, _>(Some(cmd.archived))
        .bind::<Nullable<Text>, _>(cmd.chat_type.map(ChatType::as_str))
        .get_result(&mut conn)
        .await
        .map_err(StoreError::from)?;
    let which = Which::Page { archived: cmd.archived, chat_type: cmd.chat_type, limit, offset };
    let chats = load_chats(&mut conn, &cmd.actor.tenant_id, &cmd.actor.user_id, which, false).await?;
    Ok(ChatPage { chats, total: total.n })
}

pub async fn chat_stats(store: Store, cmd: GetChatStats) -> Result<ChatStats, ApiError> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        total_chats: i64,
        #[diesel(sql_type = BigInt)]
        total_messages: i64,
        #[diesel(sql_type = BigInt)]
        total_unread: i64,
        #[diesel(sql_type = BigInt)]
        unread_chats: i64,
        #[diesel(sql_type = BigInt)]
        archived_chats: i64,
        #[diesel(sql_type = BigInt)]
        direct_chats: i64,
        #[diesel(sql_type = BigInt)]
        support_chats: i64,
    }
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.reads.get().await.map_err(StoreError::from)?;
    let r: Row = diesel::sql_query(
        "SELECT count(*) AS total_chats,
                COALESCE(sum(r.last_seq), 0)::bigint AS total_messages,
                COALESCE(sum(GREATEST(r.last_seq - COALESCE(c.read_seq, 0), 0)), 0)::bigint AS total_unread,
                count(*) FILTER (WHERE r.last_seq > COALESCE(c.read_seq, 0)) AS unread_chats,
                count(*) FILTER (WHERE rm.archived_at IS NOT NULL
                                   AND rm.archived_at >= COALESCE(m.created_at, r.created_at)) AS archived_chats,
                count(*) FILTER (WHERE r.room_type = 'dm') AS direct_chats,
                count(*) FILTER (WHERE r.room_type <> 'dm' AND r.context_type = 'support') AS support_chats
         FROM room_members rm
         JOIN rooms r ON r.id = rm.room_id
         LEFT JOIN room_cursors c ON c.room_id = r.id AND c.user_id = rm.user_id
         LEFT JOIN messages m ON m.room_id = r.id AND m.seq = r.last_seq
         WHERE rm.tenant_id = $1 AND rm.user_id = $2",
    )
    .bind::<Text, _>(cmd.actor.tenant_id.as_str())
    .bind::<Text, _>(cmd.actor.user_id.as_str())
    .get_result(&mut conn)
    .await
    .map_err(StoreError::from)?;
    Ok(ChatStats {
        total_chats: r.total_chats,
        total_messages: r.total_messages,
        total_unread: r.total_unread,
        unread_chats: r.unread_chats,
        archived_chats: r.archived_chats,
        direct_chats: r.direct_chats,
        group_chats: r.total_chats - r.direct_chats - r.support_chats,
        support_chats: r.support_chats,
    })
}

pub async fn toggle_archive(store: Store, cmd: ToggleArchive) -> Result<Chat, ApiError> {
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    participant(&mut conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?;
    // Archived now (no message since it was archived) → unarchive; else archive as of
    // now (messages carry the system time they were stored at).
    diesel::sql_query(
        "UPDATE room_members rm SET archived_at =
             CASE WHEN rm.archived_at IS NOT NULL AND rm.archived_at >= COALESCE(
                      (SELECT m.created_at FROM rooms r JOIN messages m ON m.room_id = r.id AND m.seq = r.last_seq
                       WHERE r.id = rm.room_id),
                      (SELECT r.created_at FROM rooms r WHERE r.id = rm.room_id))
                  THEN NULL ELSE $3 END
         WHERE rm.room_id = $1 AND rm.user_id = $2",
    )
    .bind::<Text, _>(cmd.room_id.as_str())
    .bind::<Text, _>(cmd.actor.user_id.as_str())
    .bind::<Timestamptz, _>(chat_domain::time::now())
    .execute(&mut conn)
    .await
    .map_err(StoreError::from)?;
    Ok(one_chat(&mut conn, &cmd.actor.tenant_id, &cmd.actor.user_id, &cmd.room_id, false).await?)
}
