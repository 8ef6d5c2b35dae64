//! `move_cursor`: per-member delivered and read cursors that only move forward.
//! A move that advances a cursor emits a `delivered` or `read` room event through
//! the outbox.

use chat_domain::ApiError;
use chat_domain::proto::events::{CursorChange, RoomEvent, RoomEventBody};
use chat_domain::proto::store::{CursorKind, Cursors, MoveCursor};
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::{Store, access, optional};
use crate::error::StoreError;
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
            }
            if read > old_read {
                let change = CursorChange { user_id: cmd.actor.user_id.clone(), seq: read };
                pending.push(outbox::insert(conn, &subjects, &emit(RoomEventBody::Read(change))).await?);
            }
            let moved = !pending.is_empty();
            Ok((Cursors { delivered_seq: delivered, read_seq: read, moved }, pending))
        })
        .await?;
    store.0.publisher.submit(pending);
    Ok(cursors)
}
