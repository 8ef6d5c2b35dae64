//! `move_cursor`: per-member delivered and read cursors that only move forward.
//! A move that advances a cursor emits a `delivered` or `read` room event through
//! the outbox.

use chat_domain::ApiError;
use chat_domain::ids::{EventId, MessageId, UserId};
use chat_domain::proto::events::{CursorChange, MessageStatus, RoomEvent, RoomEventBody, UserEvent, UserEventBody};
use chat_domain::proto::store::{CursorKind, Cursors, MoveCursor};
use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::{Store, access, optional};
use crate::error::{StoreError, stored};
use crate::outbox;

#[derive(diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    delivered_seq: i64,
    #[diesel(sql_type = BigInt)]
    read_seq: i64,
}

pub async fn move_cursor(store: Store, cmd: MoveCursor) -> Result<Cursors, ApiError> {
    if cmd.seq < 0 {
        return Err(ApiError::validation("seq", "seq must be 0 or more"));
    }
    let subjects = store.subjects().clone();
    let mut conn = store.0.pool.get().await.map_err(StoreError::from)?;
    let (cursors, pending) = conn
        .transaction(async move |conn| -> Result<(Cursors, Vec<outbox::Pending>), StoreError> {
            access(conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?.member()?;
            #[derive(diesel::QueryableByName)]
            struct Last {
                #[diesel(sql_type = BigInt)]
                last_seq: i64,
            }
            let last: Last = diesel::sql_query("SELECT last_seq FROM rooms WHERE id = $1")
                .bind::<Text, _>(cmd.room_id.as_str())
                .get_result(conn)
                .await?;
            let seq = cmd.seq.min(last.last_seq);
            let before: Option<Row> = optional(
                diesel::sql_query(
                    "SELECT delivered_seq, read_seq FROM room_cursors WHERE room_id = $1 AND user_id = $2 FOR UPDATE",
                )
                .bind::<Text, _>(cmd.room_id.as_str())
                .bind::<Text, _>(cmd.actor.user_id.as_str())
                .get_result(conn)
                .await,
            )?;
            let (old_delivered, old_read) = before.map_or((0, 0), |r| (r.delivered_seq, r.read_seq));
            let (delivered, read) = match cmd.kind {
                CursorKind::Delivered => (old_delivered.max(seq), old_read),
                // Reading implies delivery.
                CursorKind::Read => (old_delivered.max(seq), old_read.max(seq)),
            };
            diesel::sql_query(
                "INSERT INTO room_cursors (room_id, user_id, delivered_seq, read_seq, updated_at)
                 VALUES ($1, $2, $3, $4, now())
                 ON CONFLICT (room_id, user_id) DO UPDATE
                 SET delivered_seq = EXCLUDED.delivered_seq, read_seq = EXCLUDED.read_seq, updated_at = now()",
            )
            .bind::<Text, _>(cmd.room_id.as_str())
            .bind::<Text, _>(cmd.actor.user_id.as_str())
            .bind::<BigInt, _>(delivered)
            .bind::<BigInt, _>(read)
            .execute(conn)
            .await?;
            let mut pending = Vec::new();
            let emit = |body: RoomEventBody| {
                RoomEvent::new(&cmd.actor.tenant_id, &cmd.room_id, chat_domain::time::now(), body)
            };
            if delivered > old_delivered {
                let change = CursorChange { user_id: cmd.actor.user_id.clone(), seq: delivered };
                pending.push(outbox::insert(conn, &subjects, &emit(RoomEventBody::Delivered(change))).await?);
                pending.extend(status_events(conn, &subjects, &cmd, old_delivered, delivered, "delivered").await?);
            }
            if read > old_read {
                let change = CursorChange { user_id: cmd.actor.user_id.clone(), seq: read };
                pending.push(outbox::insert(conn, &subjects, &emit(RoomEventBody::Read(change))).await?);
                pending.extend(status_events(conn, &subjects, &cmd, old_read, read, "read").await?);
            }
            let moved = !pending.is_empty();
            Ok((Cursors { delivered_seq: delivered, read_seq: read, moved }, pending))
        })
        .await?;
    store.0.publisher.submit(pending);
    Ok(cursors)
}

/// Most message ids named in one `message.status` event.
const MAX_STATUS_IDS: usize = 500;

/// `message.status` events for the senders of messages in `(from, to]` other than the
/// actor: their messages now have `status` for this member.
async fn status_events(
    conn: &mut AsyncPgConnection,
    subjects: &chat_bus::Subjects,
    cmd: &MoveCursor,
    from: i64,
    to: i64,
    status: &str,
) -> Result<Vec<outbox::Pending>, StoreError> {
    #[derive(diesel::QueryableByName)]
    struct Sender {
        #[diesel(sql_type = Text)]
        sender_id: String,
        #[diesel(sql_type = Array<Text>)]
        ids: Vec<String>,
        #[diesel(sql_type = BigInt)]
        up_to: i64,
    }
    let senders: Vec<Sender> = diesel::sql_query(
        "SELECT sender_id, array_agg(id ORDER BY seq) AS ids, max(seq) AS up_to FROM messages
         WHERE room_id = $1 AND seq > $2 AND seq <= $3 AND sender_id <> $4 AND deleted_at IS NULL
         GROUP BY sender_id",
    )
    .bind::<Text, _>(cmd.room_id.as_str())
    .bind::<BigInt, _>(from)
    .bind::<BigInt, _>(to)
    .bind::<Text, _>(cmd.actor.user_id.as_str())
    .load(conn)
    .await?;
    let mut pending = Vec::with_capacity(senders.len());
    for s in senders {
        let skip = s.ids.len().saturating_sub(MAX_STATUS_IDS);
        let message_ids =
            s.ids.into_iter().skip(skip).map(|id| stored(MessageId::parse(id))).collect::<Result<_, _>>()?;
        let event = UserEvent {
            event_id: EventId::generate(),
            tenant_id: cmd.actor.tenant_id.clone(),
            user_id: stored(UserId::parse(s.sender_id))?,
            occurred_at: chat_domain::time::now(),
            body: UserEventBody::MessageStatus(MessageStatus {
                room_id: cmd.room_id.clone(),
                message_ids,
                up_to_seq: s.up_to,
                status: status.to_owned(),
                by: cmd.actor.user_id.clone(),
            }),
        };
        pending.push(outbox::insert_user(conn, subjects, &event).await?);
    }
    Ok(pending)
}
