//! `mark_delivered`: many members' delivered cursors moved at once — what one gateway
//! pushed to sockets of dialects that have no ack frame (`ws-conversations.md`),
//! batched there every few hundred milliseconds. A batch costs one transaction of
//! three set-based statements, however many deliveries it carries: lock the rooms
//! (key share, in id order — the order send batches lock them in, so the two never
//! deadlock), move every cursor and read what each move passed, write every event.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use chat_domain::ApiError;
use chat_domain::ids::{MessageId, RoomId, TenantId, UserId};
use chat_domain::proto::events::{CursorChange, RoomEvent, RoomEventBody, UserEvent};
use chat_domain::proto::store::{DeliveriesMarked, MarkDelivered};
use diesel::sql_types::{Array, BigInt, Nullable, Text};
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::Store;
use super::cursors::{SenderMessages, status_events};
use crate::error::{StoreError, stored};
use crate::outbox;

/// Most deliveries one command may carry.
pub const MAX_DELIVERIES: usize = 10_000;

/// One (room, member, sender) of the moved cursors: the sender's messages the member's
/// cursor passed (`ids` is empty for a cursor that passed none of anyone's).
#[derive(diesel::QueryableByName)]
struct Moved {
    #[diesel(sql_type = Text)]
    tenant_id: String,
    #[diesel(sql_type = Text)]
    room_id: String,
    #[diesel(sql_type = Text)]
    member: String,
    #[diesel(sql_type = BigInt)]
    to_seq: i64,
    #[diesel(sql_type = Nullable<Text>)]
    sender_id: Option<String>,
    #[diesel(sql_type = Array<Text>)]
    ids: Vec<String>,
    #[diesel(sql_type = Array<BigInt>)]
    seqs: Vec<i64>,
}

/// Moves the cursors (never back, at most to the room's newest message, members only)
/// and returns, per moved cursor and sender, what it passed.
const MOVE: &str = "
WITH input AS (
    SELECT i.tenant, i.room, i.member, max(i.seq) AS seq
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS i(tenant, room, member, seq)
    GROUP BY i.tenant, i.room, i.member
),
valid AS (
    SELECT i.room, i.member, LEAST(i.seq, r.last_seq) AS seq
    FROM input i
    JOIN rooms r ON r.id = i.room AND r.tenant_id = i.tenant
    JOIN room_members m ON m.room_id = i.room AND m.user_id = i.member
),
old AS (
    SELECT c.room_id, c.user_id, c.delivered_seq
    FROM room_cursors c JOIN valid v ON c.room_id = v.room AND c.user_id = v.member
),
moved AS (
    INSERT INTO room_cursors AS c (room_id, user_id, delivered_seq, read_seq, updated_at)
    SELECT v.room, v.member, v.seq, 0, now() FROM valid v WHERE v.seq > 0 ORDER BY v.room, v.member
    ON CONFLICT (room_id, user_id) DO UPDATE SET delivered_seq = EXCLUDED.delivered_seq, updated_at = now()
    WHERE c.delivered_seq < EXCLUDED.delivered_seq
    RETURNING c.room_id, c.user_id, c.delivered_seq
)
SELECT r.tenant_id, mv.room_id, mv.user_id AS member, mv.delivered_seq AS to_seq, m.sender_id,
       COALESCE(array_agg(m.id ORDER BY m.seq) FILTER (WHERE m.id IS NOT NULL), '{}') AS ids,
       COALESCE(array_agg(m.seq ORDER BY m.seq) FILTER (WHERE m.id IS NOT NULL), '{}') AS seqs
FROM moved mv
JOIN rooms r ON r.id = mv.room_id
LEFT JOIN old o ON o.room_id = mv.room_id AND o.user_id = mv.user_id
LEFT JOIN messages m ON m.room_id = mv.room_id AND m.seq > COALESCE(o.delivered_seq, 0)
    AND m.seq <= mv.delivered_seq AND m.sender_id <> mv.user_id AND m.deleted_at IS NULL
GROUP BY r.tenant_id, mv.room_id, mv.user_id, mv.delivered_seq, m.sender_id";

pub async fn mark_delivered(store: Store, cmd: MarkDelivered) -> Result<DeliveriesMarked, ApiError> {
    if cmd.deliveries.len() > MAX_DELIVERIES {
        return Err(ApiError::validation("deliveries", format!("At most {MAX_DELIVERIES} deliveries per command")));
    }
    if cmd.deliveries.is_empty() {
        return Ok(DeliveriesMarked { moved: 0 });
    }
    let (mut tenants, mut rooms, mut members, mut seqs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for d in &cmd.deliveries {
        tenants.push(d.tenant_id.as_str());
        rooms.push(d.room_id.as_str());
        members.push(d.user_id.as_str());
        seqs.push(d.seq);
    }
    let subjects = store.subjects().clone();
    let mut conn = store.0.pool.get().await.map_err(StoreError::from)?;
    let (moved, pending) = conn
        .transaction(async move |conn| -> Result<(u32, Vec<outbox::Pending>), StoreError> {
            chat_pg::prepared(
                diesel::sql_query("SELECT 1 FROM rooms WHERE id = ANY($1) ORDER BY id FOR KEY SHARE")
                    .bind::<Array<Text>, _>(&rooms),
            )
            .execute(conn)
            .await?;
            let rows: Vec<Moved> = chat_pg::prepared(
                diesel::sql_query(MOVE)
                    .bind::<Array<Text>, _>(&tenants)
                    .bind::<Array<Text>, _>(&rooms)
                    .bind::<Array<Text>, _>(&members)
                    .bind::<Array<BigInt>, _>(&seqs),
            )
            .load(conn)
            .await?;
            let (room_events, user_events, moved) = events(rows)?;
            let pending = outbox::insert_many(conn, &subjects, &room_events, &user_events).await?;
            Ok((moved, pending))
        })
        .await?;
    store.0.publisher.submit(pending);
    Ok(DeliveriesMarked { moved })
}

/// One moved cursor and what it passed, by sender.
struct Cursor {
    tenant: TenantId,
    room: RoomId,
    member: UserId,
    seq: i64,
    senders: Vec<SenderMessages>,
}

/// The room's `delivered` event per moved cursor, and `message.status` per sender;
/// and how many cursors moved.
fn events(rows: Vec<Moved>) -> Result<(Vec<RoomEvent>, Vec<UserEvent>, u32), StoreError> {
    let now = chat_domain::time::now();
    // Rows of one cursor are adjacent only by chance; key them.
    let mut cursors: BTreeMap<(String, String), Cursor> = BTreeMap::new();
    for row in rows {
        let cursor = match cursors.entry((row.room_id.clone(), row.member.clone())) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(Cursor {
                tenant: stored(TenantId::parse(row.tenant_id))?,
                room: stored(RoomId::parse(row.room_id))?,
                member: stored(UserId::parse(row.member))?,
                seq: row.to_seq,
                senders: Vec::new(),
            }),
        };
        if let Some(sender) = row.sender_id {
            let messages = row
                .seqs
                .into_iter()
                .zip(row.ids)
                .map(|(seq, id)| stored(MessageId::parse(id)).map(|id| (seq, id)))
                .collect::<Result<_, _>>()?;
            cursor.senders.push(SenderMessages { sender_id: stored(UserId::parse(sender))?, messages });
        }
    }
    let moved = u32::try_from(cursors.len()).unwrap_or(u32::MAX);
    let (mut room_events, mut user_events) = (Vec::with_capacity(cursors.len()), Vec::new());
    for c in cursors.into_values() {
        let change = CursorChange { user_id: c.member.clone(), seq: c.seq, message_ids: Vec::new() };
        room_events.push(RoomEvent::new(&c.tenant, &c.room, now, RoomEventBody::Delivered(change)));
        user_events.extend(status_events(&c.tenant, &c.room, &c.member, c.senders, "delivered")?);
    }
    Ok((room_events, user_events, moved))
}
