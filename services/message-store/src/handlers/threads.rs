//! `get_thread` and `list_threads` (migration 0070), and [`summary_recount`], which
//! deletion and erasure of a reply use to bring its parent's summary down. Replies are
//! stored by the send statement (`send_batch.rs`), which moves the parent's summary up.

use chat_domain::ApiError;
use chat_domain::ids::MessageId;
use chat_domain::model::Message;
use chat_domain::proto::events::ThreadUpdated;
use chat_domain::proto::threads::{
    GetThread, ListThreads, MAX_THREAD_PAGE, MAX_THREADS, ThreadList, ThreadPage, ThreadUnread,
};
use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::{Store, access};
use crate::error::{StoreError, optional};
use crate::rows::{M_MESSAGE_COLUMNS, MESSAGE_COLUMNS, MessageRow, thread_summary};

pub async fn get_thread(store: Store, cmd: GetThread) -> Result<ThreadPage, ApiError> {
    let limit = i64::from(cmd.limit.clamp(1, MAX_THREAD_PAGE));
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    access(&mut conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?.member()?;
    let parent: Option<MessageRow> = optional(
        diesel::sql_query(format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE room_id = $1 AND id = $2"))
            .bind::<Text, _>(cmd.room_id.as_str())
            .bind::<Text, _>(cmd.message_id.as_str())
            .get_result(&mut conn)
            .await,
    )
    .map_err(StoreError::from)?;
    let parent = Message::try_from(parent.ok_or_else(|| ApiError::not_found("Message not found"))?)?;
    if parent.parent_id.is_some() {
        return Err(ApiError::validation("message_id", chat_domain::proto::threads::NESTED_THREAD));
    }
    // One more than the page, to say whether more follow.
    let mut rows: Vec<MessageRow> = diesel::sql_query(format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE parent_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
    ))
    .bind::<Text, _>(cmd.message_id.as_str())
    .bind::<BigInt, _>(cmd.after_seq.unwrap_or(0))
    .bind::<BigInt, _>(limit + 1)
    .load(&mut conn)
    .await
    .map_err(StoreError::from)?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let mut replies: Vec<Message> = rows.into_iter().map(Message::try_from).collect::<Result<_, _>>()?;
    // Reading a page reads the thread up to its newest reply (for `list_threads`).
    if let Some(last) = replies.last() {
        mark_read(&mut conn, &cmd.actor.tenant_id, &parent, &cmd.actor.user_id, last.seq).await?;
    }
    // The parent's and the replies' reactions and pins, as the reader sees them (issue
    // 23), in one pass: the parent goes first and comes back out.
    replies.insert(0, parent);
    super::reactions::decorate(&mut conn, &mut replies, Some(&cmd.actor.user_id)).await?;
    let parent = replies.remove(0);
    Ok(ThreadPage { parent, replies, has_more })
}

/// Moves a member's read cursor of a thread forward to `seq`.
async fn mark_read(
    conn: &mut AsyncPgConnection,
    tenant: &chat_domain::ids::TenantId,
    parent: &Message,
    user: &chat_domain::ids::UserId,
    seq: i64,
) -> Result<(), StoreError> {
    diesel::sql_query(
        "INSERT INTO thread_reads AS t (tenant_id, room_id, parent_id, user_id, read_seq) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (parent_id, user_id) DO UPDATE SET read_seq = GREATEST(t.read_seq, EXCLUDED.read_seq),
             updated_at = now()
         WHERE t.read_seq < EXCLUDED.read_seq",
    )
    .bind::<Text, _>(tenant.as_str())
    .bind::<Text, _>(parent.room_id.as_str())
    .bind::<Text, _>(parent.message_id.as_str())
    .bind::<Text, _>(user.as_str())
    .bind::<BigInt, _>(seq)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn list_threads(store: Store, cmd: ListThreads) -> Result<ThreadList, ApiError> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(embed)]
        message: MessageRow,
        #[diesel(sql_type = BigInt)]
        unread_count: i64,
    }
    let limit = i64::from(cmd.limit.clamp(1, MAX_THREADS));
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.reads.get().await.map_err(StoreError::from)?;
    // The actor's rooms, then in each the parents with replies they take part in.
    let rows: Vec<Row> = diesel::sql_query(format!(
        "SELECT {M_MESSAGE_COLUMNS},
                (SELECT count(*) FROM messages r
                 WHERE r.parent_id = m.id AND r.deleted_at IS NULL AND r.sender_id <> $2
                   AND r.seq > coalesce((SELECT tr.read_seq FROM thread_reads tr
                                         WHERE tr.parent_id = m.id AND tr.user_id = $2), 0)) AS unread_count
         FROM room_members rm JOIN messages m ON m.room_id = rm.room_id
         WHERE rm.tenant_id = $1 AND rm.user_id = $2 AND m.reply_count > 0 AND $2 = ANY (m.thread_participants)
         ORDER BY m.last_reply_at DESC, m.id LIMIT $3"
    ))
    .bind::<Text, _>(cmd.actor.tenant_id.as_str())
    .bind::<Text, _>(cmd.actor.user_id.as_str())
    .bind::<BigInt, _>(limit)
    .load(&mut conn)
    .await
    .map_err(StoreError::from)?;
    let mut parents = Vec::with_capacity(rows.len());
    let mut unread = Vec::with_capacity(rows.len());
    for r in rows {
        parents.push(Message::try_from(r.message)?);
        unread.push(r.unread_count);
    }
    // Their reactions and pins, as the reader sees them (issue 23).
    super::reactions::decorate(&mut conn, &mut parents, Some(&cmd.actor.user_id)).await?;
    let threads = parents
        .into_iter()
        .zip(unread)
        .map(|(parent, unread_count)| ThreadUnread { room_id: parent.room_id.clone(), parent, unread_count })
        .collect();
    Ok(ThreadList { threads })
}

/// Counts a thread's summary again from its live replies (after one was deleted or
/// erased), marks the parent changed for sync, and returns its `thread.updated`.
pub async fn summary_recount(
    conn: &mut AsyncPgConnection,
    parent: &MessageId,
) -> Result<Option<ThreadUpdated>, StoreError> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        seq: i64,
        #[diesel(sql_type = Integer)]
        reply_count: i32,
        #[diesel(sql_type = Nullable<Timestamptz>)]
        last_reply_at: Option<DateTime<Utc>>,
        #[diesel(sql_type = Nullable<Array<Text>>)]
        thread_participants: Option<Vec<String>>,
    }
    let row: Option<Row> = optional(
        diesel::sql_query(
            "UPDATE messages p SET reply_count = s.n, last_reply_at = s.last_at,
                 thread_participants = CASE WHEN s.n > 0 THEN ARRAY[p.sender_id] || ARRAY(
                     SELECT r.sender_id FROM messages r
                     WHERE r.parent_id = p.id AND r.deleted_at IS NULL AND r.sender_id <> p.sender_id
                     GROUP BY r.sender_id ORDER BY min(r.seq)) END,
                 changed_tx = pg_current_xact_id()::text::bigint
             FROM (SELECT count(*)::int AS n, max(r.created_at) AS last_at FROM messages r
                   WHERE r.parent_id = $1 AND r.deleted_at IS NULL) s
             WHERE p.id = $1
             RETURNING p.seq, p.reply_count, p.last_reply_at, p.thread_participants",
        )
        .bind::<Text, _>(parent.as_str())
        .get_result(conn)
        .await,
    )?;
    row.map(|r| {
        Ok(ThreadUpdated {
            message_id: parent.clone(),
            seq: r.seq,
            thread: thread_summary(r.reply_count, r.last_reply_at, r.thread_participants)?,
        })
    })
    .transpose()
}
