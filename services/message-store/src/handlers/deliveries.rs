//! `mark_delivered`: many members' delivered cursors moved at once — what one gateway
//! pushed to sockets of dialects that have no ack frame (`ws-conversations.md`),
//! batched there every 150 ms: for each socket, the range of the room's `seq`s pushed
//! to it since the last report. A batch costs one transaction of two set-based
//! statements, however many deliveries it carries: move every cursor and read the
//! pushed messages (one statement), write every event (one more).
//!
//! Cursor rows are locked in (room, member) order, so two batches never deadlock; a
//! send batch also moves its senders' cursors, in an order of its own, so a batch that
//! loses a deadlock to one is retried (PostgreSQL aborted it whole, so nothing of it
//! was applied).

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::Arc;

use chat_domain::ApiError;
use chat_domain::ids::{MessageId, RoomId, TenantId, UserId};
use chat_domain::proto::events::{CursorChange, RoomEvent, RoomEventBody, UserEvent};
use chat_domain::proto::store::{DeliveriesMarked, Delivery, MarkDelivered};
use diesel::sql_types::{Array, BigInt, Nullable, Text};
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::cursors::{SenderMessages, status_events};
use super::{Db, Store};
use crate::error::{StoreError, stored};
use crate::outbox;

/// Most deliveries one command may carry.
pub const MAX_DELIVERIES: usize = 10_000;

/// One (room, member, sender) of a batch: the member's delivered cursor if it moved
/// (`moved_to`), and the sender's messages pushed to the member (none when `sender_id`
/// is absent: nothing of anyone's, or only the member's own, was pushed).
#[derive(diesel::QueryableByName)]
struct Pushed {
    #[diesel(sql_type = Text)]
    tenant_id: String,
    #[diesel(sql_type = Text)]
    room_id: String,
    #[diesel(sql_type = Text)]
    member: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    moved_to: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    sender_id: Option<String>,
    #[diesel(sql_type = Array<Text>)]
    ids: Vec<String>,
    #[diesel(sql_type = Array<BigInt>)]
    seqs: Vec<i64>,
}

/// Moves the cursors (never back, at most to the room's newest message, members only)
/// and returns, per member and sender, what was pushed and whether the cursor moved.
const MARK: &str = "
WITH input AS (
    SELECT i.tenant, i.room, i.member, i.after_seq, i.seq
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
         AS i(tenant, room, member, after_seq, seq)
),
valid AS (
    SELECT i.room, i.member, i.after_seq, LEAST(i.seq, r.last_seq) AS seq
    FROM input i
    JOIN rooms r ON r.id = i.room AND r.tenant_id = i.tenant
    JOIN room_members m ON m.room_id = i.room AND m.user_id = i.member
),
moved AS (
    INSERT INTO room_cursors AS c (room_id, user_id, delivered_seq, read_seq, updated_at)
    SELECT v.room, v.member, max(v.seq), 0, now() FROM valid v WHERE v.seq > 0
    GROUP BY v.room, v.member ORDER BY v.room, v.member
    ON CONFLICT (room_id, user_id) DO UPDATE SET delivered_seq = EXCLUDED.delivered_seq, updated_at = now()
    WHERE c.delivered_seq < EXCLUDED.delivered_seq
    RETURNING c.room_id, c.user_id, c.delivered_seq
),
pushed AS (
    SELECT DISTINCT v.room, v.member, m.sender_id, m.id, m.seq
    FROM valid v
    JOIN messages m ON m.room_id = v.room AND m.seq > v.after_seq AND m.seq <= v.seq
        AND m.sender_id <> v.member AND m.deleted_at IS NULL
)
SELECT r.tenant_id, k.room AS room_id, k.member, mv.delivered_seq AS moved_to, p.sender_id,
       COALESCE(array_agg(p.id ORDER BY p.seq) FILTER (WHERE p.id IS NOT NULL), '{}') AS ids,
       COALESCE(array_agg(p.seq ORDER BY p.seq) FILTER (WHERE p.id IS NOT NULL), '{}') AS seqs
FROM (SELECT DISTINCT room, member FROM valid) k
JOIN rooms r ON r.id = k.room
LEFT JOIN moved mv ON mv.room_id = k.room AND mv.user_id = k.member
LEFT JOIN pushed p ON p.room = k.room AND p.member = k.member
GROUP BY r.tenant_id, k.room, k.member, mv.delivered_seq, p.sender_id";

pub async fn mark_delivered(store: Store, cmd: MarkDelivered) -> Result<DeliveriesMarked, ApiError> {
    if cmd.deliveries.len() > MAX_DELIVERIES {
        return Err(ApiError::validation("deliveries", format!("At most {MAX_DELIVERIES} deliveries per command")));
    }
    if cmd.deliveries.is_empty() {
        return Ok(DeliveriesMarked { moved: 0 });
    }
    // A gateway's batch may span tenants on several clusters: one transaction per cluster.
    let mut by_cluster: BTreeMap<String, (Arc<Db>, Vec<&Delivery>)> = BTreeMap::new();
    for d in &cmd.deliveries {
        let db = store.db(&d.tenant_id).await?;
        by_cluster.entry(db.name.clone()).or_insert_with(|| (db, Vec::new())).1.push(d);
    }
    let mut moved = 0;
    for (db, deliveries) in by_cluster.into_values() {
        moved += mark_on(&store, &db, &deliveries).await?;
    }
    Ok(DeliveriesMarked { moved })
}

async fn mark_on(store: &Store, db: &Db, deliveries: &[&Delivery]) -> Result<u32, ApiError> {
    let n = deliveries.len();
    let (mut tenants, mut rooms, mut members) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut afters, mut seqs) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for d in deliveries {
        tenants.push(d.tenant_id.as_str());
        rooms.push(d.room_id.as_str());
        members.push(d.user_id.as_str());
        afters.push(d.after_seq);
        seqs.push(d.seq);
    }
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let mut attempt = 0;
    let (moved, pending) = loop {
        attempt += 1;
        let batch = Batch { tenants: &tenants, rooms: &rooms, members: &members, afters: &afters, seqs: &seqs };
        match apply(&mut conn, store.subjects(), batch).await {
            Err(StoreError::Db(e)) if attempt < MAX_ATTEMPTS && is_deadlock(&e) => {
                tracing::debug!(attempt, "delivered receipts met a concurrent send in another order; retrying");
            }
            result => break result?,
        }
    };
    db.publisher.submit(pending);
    Ok(moved)
}

/// Tries of one batch that lost a deadlock to a concurrent transaction.
const MAX_ATTEMPTS: u32 = 3;

/// A deadlock (or serialization failure) PostgreSQL resolved by aborting this side.
fn is_deadlock(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match e {
        Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        Error::DatabaseError(_, info) => info.message().contains("deadlock detected"),
        _ => false,
    }
}

/// The deliveries of one command, as statement arrays.
struct Batch<'a> {
    tenants: &'a [&'a str],
    rooms: &'a [&'a str],
    members: &'a [&'a str],
    afters: &'a [i64],
    seqs: &'a [i64],
}

/// One transaction: move the cursors, write their events to the outbox.
async fn apply(
    conn: &mut diesel_async::AsyncPgConnection,
    subjects: &chat_bus::Subjects,
    b: Batch<'_>,
) -> Result<(u32, Vec<outbox::Pending>), StoreError> {
    conn.transaction(async move |conn| -> Result<(u32, Vec<outbox::Pending>), StoreError> {
        let rows: Vec<Pushed> = chat_pg::prepared(
            diesel::sql_query(MARK)
                .bind::<Array<Text>, _>(b.tenants)
                .bind::<Array<Text>, _>(b.rooms)
                .bind::<Array<Text>, _>(b.members)
                .bind::<Array<BigInt>, _>(b.afters)
                .bind::<Array<BigInt>, _>(b.seqs),
        )
        .load(conn)
        .await?;
        let (room_events, user_events, moved) = events(rows)?;
        let pending = outbox::insert_many(conn, subjects, &room_events, &user_events).await?;
        Ok((moved, pending))
    })
    .await
}

/// One member of a room in the batch: their cursor if it moved, and what was pushed
/// to them, by sender.
struct Reached {
    tenant: TenantId,
    room: RoomId,
    member: UserId,
    moved_to: Option<i64>,
    senders: Vec<SenderMessages>,
}

/// The room's `delivered` event per moved cursor, and `message.status` per sender of
/// pushed messages; and how many cursors moved.
fn events(rows: Vec<Pushed>) -> Result<(Vec<RoomEvent>, Vec<UserEvent>, u32), StoreError> {
    let now = chat_domain::time::now();
    // Rows of one member are adjacent only by chance; key them.
    let mut reached: BTreeMap<(String, String), Reached> = BTreeMap::new();
    for row in rows {
        let r = match reached.entry((row.room_id.clone(), row.member.clone())) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(Reached {
                tenant: stored(TenantId::parse(row.tenant_id))?,
                room: stored(RoomId::parse(row.room_id))?,
                member: stored(UserId::parse(row.member))?,
                moved_to: row.moved_to,
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
            r.senders.push(SenderMessages { sender_id: stored(UserId::parse(sender))?, messages });
        }
    }
    let mut moved = 0u32;
    let (mut room_events, mut user_events) = (Vec::new(), Vec::new());
    for r in reached.into_values() {
        if let Some(seq) = r.moved_to {
            moved += 1;
            let change = CursorChange { user_id: r.member.clone(), seq, message_ids: Vec::new() };
            room_events.push(RoomEvent::new(&r.tenant, &r.room, now, RoomEventBody::Delivered(change)));
        }
        user_events.extend(status_events(&r.tenant, &r.room, &r.member, r.senders, "delivered"));
    }
    Ok((room_events, user_events, moved))
}
