//! `create_room` and `get_room`.

use chat_domain::ApiError;
use chat_domain::ids::{RoomId, UserId};
use chat_domain::model::Message;
use chat_domain::model::{MAX_INITIAL_MEMBERS, Room, RoomType, dm_unique_key, validate_name};
use chat_domain::proto::store::{CreateRoom, GetRoom, ListRooms, RoomSummary};
use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::{Store, access};
use crate::error::StoreError;
use crate::rows::{MESSAGE_COLUMNS, MessageRow, RoomRow};

/// `member_count` is kept on the row by triggers on `room_members` (migration 0095): a
/// room read costs the same at 5 members as at 5,000.
const ROOM_COLUMNS: &str = "id, room_type, name, unique_key, last_seq, created_by, created_at, member_count";

pub async fn create_room(store: Store, cmd: CreateRoom) -> Result<Room, ApiError> {
    let name = cmd.name.as_deref().map(|n| validate_name("name", n)).transpose()?;
    let creator = cmd.actor.user_id.clone();
    let others = initial_others(&creator, cmd.members, "members", "A room can be created with at most {} members")?;
    let unique_key = match cmd.room_type {
        RoomType::Dm => match others.as_slice() {
            [other] => Some(dm_unique_key(&creator, other)),
            _ => return Err(ApiError::validation("members", "A DM has exactly two members: you and one other user")),
        },
        RoomType::Group | RoomType::Channel => None,
    };

    let room_id = RoomId::generate();
    let tenant = cmd.actor.tenant_id.clone();
    let db = store.db(&tenant).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    // A DM is refused to a user the other member blocks (issue 24, blocks).
    if let (RoomType::Dm, [other]) = (cmd.room_type, others.as_slice()) {
        super::blocks::blocked_by(&mut conn, &tenant, &creator, other).await?;
    }
    let room = conn
        .transaction(async move |conn| -> Result<Room, StoreError> {
            // ON CONFLICT keeps the transaction usable, so the existing DM can be named.
            let inserted: Result<RoomRow, _> = diesel::sql_query(format!(
                "INSERT INTO rooms (id, tenant_id, room_type, name, unique_key, created_by)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (tenant_id, unique_key) WHERE unique_key IS NOT NULL DO NOTHING
                 RETURNING {ROOM_COLUMNS}"
            ))
            .bind::<Text, _>(room_id.as_str())
            .bind::<Text, _>(tenant.as_str())
            .bind::<Text, _>(cmd.room_type.as_str())
            .bind::<Nullable<Text>, _>(&name)
            .bind::<Nullable<Text>, _>(&unique_key)
            .bind::<Text, _>(creator.as_str())
            .get_result(conn)
            .await;
            let row = match inserted {
                Err(diesel::result::Error::NotFound) => {
                    let existing =
                        existing_dm(conn, tenant.as_str(), unique_key.as_deref().unwrap_or_default()).await?;
                    return Err(
                        ApiError::conflict(format!("A DM between these users already exists: {existing}")).into()
                    );
                }
                other => other?,
            };
            insert_members(conn, &room_id, &tenant, &creator, &others).await?;
            drop(row);
            // Read back with the members counted.
            let row: RoomRow = diesel::sql_query(format!("SELECT {ROOM_COLUMNS} FROM rooms WHERE id = $1"))
                .bind::<Text, _>(room_id.as_str())
                .get_result(conn)
                .await?;
            row.try_into()
        })
        .await?;
    Ok(room)
}

/// A new room's members besides `creator` (who always is one), duplicates dropped; at
/// most [`MAX_INITIAL_MEMBERS`] in all, else a validation error on `field` whose
/// message is `too_many` with the limit in place of `{}`.
pub(super) fn initial_others(
    creator: &UserId,
    members: Vec<UserId>,
    field: &str,
    too_many: &str,
) -> Result<Vec<UserId>, ApiError> {
    let mut others: Vec<UserId> = Vec::with_capacity(members.len());
    for m in members {
        if m != *creator && !others.contains(&m) {
            others.push(m);
        }
    }
    if others.len() + 1 > MAX_INITIAL_MEMBERS {
        return Err(ApiError::validation(field, too_many.replace("{}", &MAX_INITIAL_MEMBERS.to_string())));
    }
    Ok(others)
}

/// A new room's members: `creator` as its owner, `others` as members.
pub(super) async fn insert_members(
    conn: &mut diesel_async::AsyncPgConnection,
    room_id: &RoomId,
    tenant: &chat_domain::ids::TenantId,
    creator: &UserId,
    others: &[UserId],
) -> Result<(), diesel::result::Error> {
    diesel::sql_query(
        "INSERT INTO room_members (room_id, user_id, tenant_id, role)
         SELECT $1, u, $2, CASE WHEN u = $3 THEN 'owner' ELSE 'member' END
         FROM unnest($4::text[]) AS u",
    )
    .bind::<Text, _>(room_id.as_str())
    .bind::<Text, _>(tenant.as_str())
    .bind::<Text, _>(creator.as_str())
    .bind::<Array<Text>, _>(std::iter::once(creator).chain(others.iter()).map(|u| u.as_str()).collect::<Vec<_>>())
    .execute(conn)
    .await
    .map(drop)
}

async fn existing_dm(
    conn: &mut diesel_async::AsyncPgConnection,
    tenant: &str,
    key: &str,
) -> Result<String, StoreError> {
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = Text)]
        id: String,
    }
    let id: Id = diesel::sql_query("SELECT id FROM rooms WHERE tenant_id = $1 AND unique_key = $2")
        .bind::<Text, _>(tenant)
        .bind::<Text, _>(key)
        .get_result(conn)
        .await?;
    Ok(id.id)
}

pub async fn get_room(store: Store, cmd: GetRoom) -> Result<Room, ApiError> {
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.reads.get().await.map_err(StoreError::from)?;
    access(&mut conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?.member()?;
    let row: RoomRow = diesel::sql_query(format!("SELECT {ROOM_COLUMNS} FROM rooms WHERE id = $1"))
        .bind::<Text, _>(cmd.room_id.as_str())
        .get_result(&mut conn)
        .await
        .map_err(StoreError::from)?;
    Ok(Room::try_from(row)?)
}

/// `list_rooms`: the actor's rooms with unread counts from cursors and the newest
/// message, most recently active first.
pub async fn list_rooms(store: Store, cmd: ListRooms) -> Result<Vec<RoomSummary>, ApiError> {
    use diesel::QueryableByName;
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(embed)]
        room: RoomRow,
        #[diesel(sql_type = BigInt)]
        unread_count: i64,
        #[diesel(sql_type = BigInt)]
        unread_mentions: i64,
        #[diesel(sql_type = Timestamptz)]
        last_activity_at: DateTime<Utc>,
        #[diesel(sql_type = Nullable<Text>)]
        m_id: Option<String>,
    }
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.reads.get().await.map_err(StoreError::from)?;
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT r.id, r.room_type, r.name, r.unique_key, r.last_seq, r.created_by, r.created_at,
                r.member_count,
                GREATEST(r.last_seq - COALESCE(c.read_seq, 0), 0) AS unread_count,
                -- Mentions (issue 23): unread messages mentioning the member or @channel.
                (SELECT count(*) FROM messages u
                 WHERE u.room_id = r.id AND u.mentions IS NOT NULL AND u.seq > COALESCE(c.read_seq, 0)
                   AND u.deleted_at IS NULL AND u.sender_id <> rm.user_id
                   AND (rm.user_id = ANY (u.mentions) OR '@channel' = ANY (u.mentions))) AS unread_mentions,
                COALESCE(m.created_at, r.created_at) AS last_activity_at,
                m.id AS m_id
         FROM room_members rm
         JOIN rooms r ON r.id = rm.room_id
         LEFT JOIN room_cursors c ON c.room_id = r.id AND c.user_id = rm.user_id
         LEFT JOIN messages m ON m.room_id = r.id AND m.seq = r.last_seq
         WHERE rm.tenant_id = $1 AND rm.user_id = $2
         ORDER BY last_activity_at DESC, r.id
         LIMIT $3 OFFSET $4",
    )
    .bind::<Text, _>(cmd.actor.tenant_id.as_str())
    .bind::<Text, _>(cmd.actor.user_id.as_str())
    .bind::<BigInt, _>(i64::from(cmd.limit))
    .bind::<BigInt, _>(i64::from(cmd.offset))
    .load(&mut conn)
    .await
    .map_err(StoreError::from)?;
    // The newest messages of the page, in one query.
    let ids: Vec<&str> = rows.iter().filter_map(|r| r.m_id.as_deref()).collect();
    let messages: Vec<MessageRow> = if ids.is_empty() {
        Vec::new()
    } else {
        diesel::sql_query(format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ANY($1)"))
            .bind::<Array<Text>, _>(&ids)
            .load(&mut conn)
            .await
            .map_err(StoreError::from)?
    };
    let mut messages = messages.into_iter().map(Message::try_from).collect::<Result<Vec<_>, _>>()?;
    super::reactions::decorate(&mut conn, &mut messages, Some(&cmd.actor.user_id)).await?;
    let mut by_id: std::collections::HashMap<String, Message> = std::collections::HashMap::new();
    for m in messages {
        by_id.insert(m.message_id.to_string(), m);
    }
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let last_message = r.m_id.as_deref().and_then(|id| by_id.remove(id));
        out.push(RoomSummary {
            room: Room::try_from(r.room)?,
            unread_count: r.unread_count,
            unread_mentions: r.unread_mentions,
            last_message,
            last_activity_at: r.last_activity_at,
        });
    }
    Ok(out)
}
