//! The message log for services that act for no user: `room_messages` (a gateway
//! filling a `seq` gap, notification reading what a member missed), `room_audiences`
//! (members of many rooms in one query) and `message_feed` (the log in commit order,
//! summarized per room and window, which the offline-notification pass follows).

use std::collections::BTreeMap;
use std::sync::Arc;

use chat_domain::ApiError;
use chat_domain::ids::{RoomId, TenantId, UserId};
use chat_domain::model::HOME_CLUSTER;
use chat_domain::model::Message;
use chat_domain::proto::store::{
    FeedMention, FeedPage, FeedWindow, MAX_ROOM_MESSAGES, MessageFeed, RoomAudience, RoomAudiences, RoomMessages,
};
use chat_pg::prepared;
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text};
use diesel_async::RunQueryDsl;

use super::{Db, Store};
use crate::error::{StoreError, optional, stored};
use crate::rows::{M_MESSAGE_COLUMNS, MessageRow};

/// Most messages one feed page summarizes.
const MAX_FEED_PAGE: u32 = 10_000;
/// Largest rooms-per-call of `room_audiences`.
const MAX_AUDIENCE_ROOMS: usize = 1_000;

pub async fn room_messages(store: Store, cmd: RoomMessages) -> Result<Vec<Message>, ApiError> {
    let limit = i64::from(cmd.limit.clamp(1, MAX_ROOM_MESSAGES));
    let db = store.db(&cmd.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let rows: Vec<MessageRow> = prepared(
        diesel::sql_query(
            "SELECT m.id, m.room_id, m.sender_id, m.sender_name, m.seq, m.content, m.meta, m.client_msg_id,
                    m.created_at, m.edited_at, m.deleted_at, m.kind, m.reply_to, m.attachments,
                m.parent_id, m.reply_count, m.last_reply_at, m.thread_participants, m.mentions
             FROM messages m JOIN rooms r ON r.id = m.room_id AND r.tenant_id = $2
             WHERE m.room_id = $1 AND m.seq > $3 AND m.seq <= $4
             ORDER BY m.seq LIMIT $5",
        )
        .bind::<Text, _>(cmd.room_id.as_str())
        .bind::<Text, _>(cmd.tenant_id.as_str())
        .bind::<BigInt, _>(cmd.after_seq)
        .bind::<BigInt, _>(cmd.until_seq.unwrap_or(i64::MAX))
        .bind::<BigInt, _>(limit),
    )
    .load(&mut conn)
    .await
    .map_err(StoreError::from)?;
    if rows.is_empty() {
        #[derive(QueryableByName)]
        struct One {
            #[diesel(sql_type = Integer)]
            #[allow(dead_code)]
            one: i32,
        }
        let exists: Option<One> = optional(
            prepared(
                diesel::sql_query("SELECT 1 AS one FROM rooms WHERE id = $1 AND tenant_id = $2")
                    .bind::<Text, _>(cmd.room_id.as_str())
                    .bind::<Text, _>(cmd.tenant_id.as_str()),
            )
            .get_result(&mut conn)
            .await,
        )
        .map_err(StoreError::from)?;
        if exists.is_none() {
            return Err(ApiError::not_found("Room not found"));
        }
    }
    // Read for no user: every `me` is false.
    let mut messages = rows.into_iter().map(Message::try_from).collect::<Result<Vec<_>, _>>()?;
    super::reactions::decorate(&mut conn, &mut messages, None).await?;
    Ok(messages)
}

/// The members of each asked room (arrays `$1`, `$2`: tenant, room), skipping rooms
/// that do not exist or belong to another tenant. One index probe per asked room: a
/// scalar subquery cannot turn into a scan of `rooms` or `room_members`, whatever the
/// statistics were when the plan was cached.
pub const ROOM_AUDIENCES: &str = "
SELECT q.tenant_id, q.room_id,
       COALESCE((SELECT array_agg(m.user_id ORDER BY m.user_id) FROM room_members m WHERE m.room_id = q.room_id),
                '{}') AS members
FROM (SELECT DISTINCT tenant_id, room_id FROM unnest($1::text[], $2::text[]) AS u (tenant_id, room_id)) q
WHERE (SELECT r.tenant_id FROM rooms r WHERE r.id = q.room_id) = q.tenant_id";

pub async fn room_audiences(store: Store, cmd: RoomAudiences) -> Result<Vec<RoomAudience>, ApiError> {
    if cmd.rooms.len() > MAX_AUDIENCE_ROOMS {
        return Err(ApiError::validation("rooms", format!("at most {MAX_AUDIENCE_ROOMS} rooms per call")));
    }
    if cmd.rooms.is_empty() {
        return Ok(Vec::new());
    }
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        tenant_id: String,
        #[diesel(sql_type = Text)]
        room_id: String,
        #[diesel(sql_type = Array<Text>)]
        members: Vec<String>,
    }
    // Rooms of tenants on several clusters: one query per cluster, with its tenant and
    // room arrays.
    type Asked<'a> = (Arc<Db>, Vec<&'a str>, Vec<&'a str>);
    let mut by_cluster: BTreeMap<String, Asked> = BTreeMap::new();
    for r in &cmd.rooms {
        let db = store.db(&r.tenant_id).await?;
        let entry = by_cluster.entry(db.name.clone()).or_insert_with(|| (db, Vec::new(), Vec::new()));
        entry.1.push(r.tenant_id.as_str());
        entry.2.push(r.room_id.as_str());
    }
    let mut rows: Vec<Row> = Vec::new();
    for (db, tenants, rooms) in by_cluster.into_values() {
        let mut conn = db.pool.get().await.map_err(StoreError::from)?;
        rows.extend(
            prepared(diesel::sql_query(ROOM_AUDIENCES).bind::<Array<Text>, _>(&tenants).bind::<Array<Text>, _>(&rooms))
                .load::<Row>(&mut conn)
                .await
                .map_err(StoreError::from)?,
        );
    }
    rows.into_iter()
        .map(|r| {
            Ok(RoomAudience {
                tenant_id: stored(TenantId::parse(r.tenant_id))?,
                room_id: stored(RoomId::parse(r.room_id))?,
                members: r.members.into_iter().map(|u| stored(UserId::parse(u))).collect::<Result<_, _>>()?,
            })
        })
        .collect::<Result<_, StoreError>>()
        .map_err(ApiError::from)
}

pub async fn message_feed(store: Store, cmd: MessageFeed) -> Result<FeedPage, ApiError> {
    if cmd.window_ms == 0 {
        return Err(ApiError::validation("window_ms", "window_ms must be at least 1"));
    }
    let window_ms = i64::try_from(cmd.window_ms).unwrap_or(i64::MAX);
    let limit = i64::from(cmd.limit.clamp(1, MAX_FEED_PAGE));
    let cluster = cmd.cluster.as_deref().unwrap_or(HOME_CLUSTER);
    let db = store.0.dbs.get(cluster).ok_or_else(|| {
        let mut e = ApiError::not_found(format!("no database cluster named {cluster:?}"));
        e.field = Some("cluster".to_owned());
        e
    })?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    // Where this page may end: every transaction below `xmin` has ended, so nothing
    // can be added below it later. `upper` is the transaction of the message after
    // the first `limit`: the page ends with it (whole transactions), or at `xmin`.
    #[derive(QueryableByName)]
    struct Bounds {
        #[diesel(sql_type = BigInt)]
        xmin: i64,
        #[diesel(sql_type = Nullable<BigInt>)]
        upper: Option<i64>,
    }
    let Some(after) = cmd.after else {
        let b: Bounds = prepared(diesel::sql_query(
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin, NULL::bigint AS upper",
        ))
        .get_result(&mut conn)
        .await
        .map_err(StoreError::from)?;
        return Ok(FeedPage { next: b.xmin - 1, windows: Vec::new(), more: false, mentions: Vec::new() });
    };
    let b: Bounds = prepared(
        diesel::sql_query(
            "WITH s AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin)
             SELECT s.xmin,
                    (SELECT m.tx FROM messages m WHERE m.tx > $1 AND m.tx < s.xmin ORDER BY m.tx OFFSET $2 LIMIT 1)
                        AS upper
             FROM s",
        )
        .bind::<BigInt, _>(after)
        .bind::<BigInt, _>(limit),
    )
    .get_result(&mut conn)
    .await
    .map_err(StoreError::from)?;
    let (until, more) = match b.upper {
        Some(upper) => (upper, true),
        None => (b.xmin - 1, false),
    };
    if until <= after {
        return Ok(FeedPage { next: after, windows: Vec::new(), more: false, mentions: Vec::new() });
    }
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        tenant_id: String,
        #[diesel(sql_type = Text)]
        room_id: String,
        #[diesel(sql_type = BigInt)]
        window_ms: i64,
        #[diesel(sql_type = BigInt)]
        first_seq: i64,
        #[diesel(sql_type = BigInt)]
        last_seq: i64,
        #[diesel(sql_type = Integer)]
        messages: i32,
        #[diesel(sql_type = Nullable<Text>)]
        sole_sender: Option<String>,
    }
    let rows: Vec<Row> = prepared(
        diesel::sql_query(
            "SELECT r.tenant_id, m.room_id,
                    (floor(extract(epoch FROM m.created_at) * 1000 / $3)::bigint * $3) AS window_ms,
                    min(m.seq) AS first_seq, max(m.seq) AS last_seq, count(*)::int AS messages,
                    CASE WHEN min(m.sender_id) = max(m.sender_id) THEN min(m.sender_id) END AS sole_sender
             FROM messages m JOIN rooms r ON r.id = m.room_id
             WHERE m.tx > $1 AND m.tx <= $2
             GROUP BY r.tenant_id, m.room_id, 3
             ORDER BY 3, r.tenant_id, m.room_id",
        )
        .bind::<BigInt, _>(after)
        .bind::<BigInt, _>(until)
        .bind::<BigInt, _>(window_ms),
    )
    .load(&mut conn)
    .await
    .map_err(StoreError::from)?;
    let windows = rows
        .into_iter()
        .map(|r| {
            Ok(FeedWindow {
                tenant_id: stored(TenantId::parse(r.tenant_id))?,
                room_id: stored(RoomId::parse(r.room_id))?,
                window_start: stored(
                    chrono::DateTime::from_timestamp_millis(r.window_ms).ok_or("window start out of range"),
                )?,
                first_seq: r.first_seq,
                last_seq: r.last_seq,
                messages: u32::try_from(r.messages).unwrap_or(0),
                sole_sender: r.sole_sender.map(|u| stored(UserId::parse(u))).transpose()?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    // Mentions (migration 0070): the page's mentioning messages, whole.
    #[derive(QueryableByName)]
    struct Mentioning {
        #[diesel(sql_type = Text)]
        tenant_id: String,
        #[diesel(embed)]
        message: MessageRow,
    }
    let mentioning: Vec<Mentioning> = prepared(
        diesel::sql_query(format!(
            "SELECT r.tenant_id, {M_MESSAGE_COLUMNS}
             FROM messages m JOIN rooms r ON r.id = m.room_id
             WHERE m.tx > $1 AND m.tx <= $2 AND m.mentions IS NOT NULL AND m.deleted_at IS NULL
             ORDER BY m.tx, m.room_id, m.seq"
        ))
        .bind::<BigInt, _>(after)
        .bind::<BigInt, _>(until),
    )
    .load(&mut conn)
    .await
    .map_err(StoreError::from)?;
    let mentions = mentioning
        .into_iter()
        .map(|r| Ok(FeedMention { tenant_id: stored(TenantId::parse(r.tenant_id))?, message: r.message.try_into()? }))
        .collect::<Result<_, StoreError>>()?;
    Ok(FeedPage { next: until, windows, more, mentions })
}
