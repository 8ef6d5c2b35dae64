//! Per-member delivered and read cursors that only move forward: `move_cursor` (to a
//! `seq`) and `read_messages` (to the newest of some named messages, the read receipt
//! of `ws-conversations.md`). A move that advances a cursor emits a `delivered` or
//! `read` room event and `message.status` to the senders of the messages it passed,
//! through the outbox.

use std::collections::BTreeMap;

use chat_domain::ApiError;
use chat_domain::ids::{EventId, MessageId, RoomId, TenantId, UserId};
use chat_domain::model::Actor;
use chat_domain::proto::chat::{AllRead, ReadAll};
use chat_domain::proto::events::{CursorChange, MessageStatus, RoomEvent, RoomEventBody, UserEvent, UserEventBody};
use chat_domain::proto::store::{CursorKind, Cursors, MAX_READ_IDS, MoveCursor, ReadMessages};
use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::{Store, access};
use crate::error::{StoreError, optional, stored};
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
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let (cursors, pending) = conn
        .transaction(async move |conn| -> Result<(Cursors, Vec<outbox::Pending>), StoreError> {
            access(conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?.member()?;
            let to = Move { actor: &cmd.actor, room_id: &cmd.room_id, kind: cmd.kind, seq: cmd.seq, named: None };
            advance(conn, &subjects, to).await
        })
        .await?;
    db.publisher.submit(pending);
    Ok(cursors)
}

/// `read_all`: the read cursor to the newest message; `modified_count` is how many
/// messages that moved it past.
pub async fn read_all(store: Store, cmd: ReadAll) -> Result<AllRead, ApiError> {
    let subjects = store.subjects().clone();
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let (read, pending) = conn
        .transaction(async move |conn| -> Result<(AllRead, Vec<outbox::Pending>), StoreError> {
            super::chats::participant(conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?;
            #[derive(diesel::QueryableByName)]
            struct Before {
                #[diesel(sql_type = BigInt)]
                read_seq: i64,
            }
            let before: Option<Before> = optional(
                diesel::sql_query("SELECT read_seq FROM room_cursors WHERE room_id = $1 AND user_id = $2 FOR UPDATE")
                    .bind::<Text, _>(cmd.room_id.as_str())
                    .bind::<Text, _>(cmd.actor.user_id.as_str())
                    .get_result(conn)
                    .await,
            )?;
            let before = before.map_or(0, |b| b.read_seq);
            // Past the newest counts as the newest.
            let to =
                Move { actor: &cmd.actor, room_id: &cmd.room_id, kind: CursorKind::Read, seq: i64::MAX, named: None };
            let (cursors, pending) = advance(conn, &subjects, to).await?;
            let read = AllRead { modified_count: (cursors.read_seq - before).max(0), read_seq: cursors.read_seq };
            Ok((read, pending))
        })
        .await?;
    db.publisher.submit(pending);
    Ok(read)
}

pub async fn read_messages(store: Store, cmd: ReadMessages) -> Result<Cursors, ApiError> {
    if cmd.message_ids.is_empty() || cmd.message_ids.len() > MAX_READ_IDS {
        return Err(ApiError::validation("message_ids", format!("message_ids must name 1 to {MAX_READ_IDS} messages")));
    }
    let subjects = store.subjects().clone();
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let (cursors, pending) = conn
        .transaction(async move |conn| -> Result<(Cursors, Vec<outbox::Pending>), StoreError> {
            access(conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?.member()?;
            #[derive(diesel::QueryableByName)]
            struct Found {
                #[diesel(sql_type = Text)]
                id: String,
                #[diesel(sql_type = BigInt)]
                seq: i64,
                #[diesel(sql_type = Text)]
                sender_id: String,
                #[diesel(sql_type = diesel::sql_types::Bool)]
                deleted: bool,
            }
            let ids: Vec<&str> = cmd.message_ids.iter().map(MessageId::as_str).collect();
            let found: Vec<Found> = chat_pg::prepared(
                diesel::sql_query(
                    "SELECT id, seq, sender_id, deleted_at IS NOT NULL AS deleted FROM messages
                     WHERE room_id = $1 AND id = ANY($2) ORDER BY seq",
                )
                .bind::<Text, _>(cmd.room_id.as_str())
                .bind::<Array<Text>, _>(&ids),
            )
            .load(conn)
            .await?;
            let Some(seq) = found.last().map(|n| n.seq) else {
                return Err(ApiError::not_found("None of message_ids is a message of this room").into());
            };
            // Receipts for one's own (or deleted) messages tell nobody anything.
            let mut named = Vec::new();
            for f in found.into_iter().filter(|f| !f.deleted && f.sender_id != cmd.actor.user_id.as_str()) {
                named.push((stored(UserId::parse(f.sender_id))?, f.seq, stored(MessageId::parse(f.id))?));
            }
            let to = Move { actor: &cmd.actor, room_id: &cmd.room_id, kind: CursorKind::Read, seq, named: Some(named) };
            advance(conn, &subjects, to).await
        })
        .await?;
    db.publisher.submit(pending);
    Ok(cursors)
}

/// Where a member's cursor is to go.
struct Move<'a> {
    actor: &'a Actor,
    room_id: &'a RoomId,
    kind: CursorKind,
    seq: i64,
    /// The other senders' messages a read receipt named (sender, `seq`, id), oldest
    /// first: the `read` event carries them and their senders hear of them, whether
    /// or not the cursor moves.
    named: Option<Vec<(UserId, i64, MessageId)>>,
}

/// Moves the actor's cursor forward to `to.seq` (capped at the newest message) inside
/// the caller's transaction, and writes the events of the move to the outbox.
async fn advance(
    conn: &mut AsyncPgConnection,
    subjects: &chat_bus::Subjects,
    to: Move<'_>,
) -> Result<(Cursors, Vec<outbox::Pending>), StoreError> {
    #[derive(diesel::QueryableByName)]
    struct Last {
        #[diesel(sql_type = BigInt)]
        last_seq: i64,
    }
    let last: Last = diesel::sql_query("SELECT last_seq FROM rooms WHERE id = $1")
        .bind::<Text, _>(to.room_id.as_str())
        .get_result(conn)
        .await?;
    let seq = to.seq.min(last.last_seq);
    let before: Option<Row> = optional(
        diesel::sql_query(
            "SELECT delivered_seq, read_seq FROM room_cursors WHERE room_id = $1 AND user_id = $2 FOR UPDATE",
        )
        .bind::<Text, _>(to.room_id.as_str())
        .bind::<Text, _>(to.actor.user_id.as_str())
        .get_result(conn)
        .await,
    )?;
    let (old_delivered, old_read) = before.map_or((0, 0), |r| (r.delivered_seq, r.read_seq));
    let (delivered, read) = match to.kind {
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
    .bind::<Text, _>(to.room_id.as_str())
    .bind::<Text, _>(to.actor.user_id.as_str())
    .bind::<BigInt, _>(delivered)
    .bind::<BigInt, _>(read)
    .execute(conn)
    .await?;
    let (mut room_events, mut user_events) = (Vec::new(), Vec::new());
    let emit = |body: RoomEventBody| RoomEvent::new(&to.actor.tenant_id, to.room_id, chat_domain::time::now(), body);
    let member = &to.actor.user_id;
    if delivered > old_delivered {
        let passed = passed(conn, to.room_id, member, old_delivered, delivered).await?;
        let change = CursorChange { user_id: member.clone(), seq: delivered, message_ids: Vec::new() };
        room_events.push(emit(RoomEventBody::Delivered(change)));
        user_events.extend(status_events(&to.actor.tenant_id, to.room_id, member, passed, "delivered"));
    }
    let passed = if read > old_read { passed(conn, to.room_id, member, old_read, read).await? } else { Vec::new() };
    let (message_ids, read_senders) = match to.named {
        None => (newest(&passed, MAX_STATUS_IDS), passed),
        Some(named) => {
            let ids = named.iter().map(|(_, _, id)| id.clone()).collect();
            let named = named
                .into_iter()
                .map(|(sender, seq, id)| SenderMessages { sender_id: sender, messages: vec![(seq, id)] });
            (ids, merge(passed.into_iter().chain(named)))
        }
    };
    if read > old_read || !message_ids.is_empty() {
        let change = CursorChange { user_id: member.clone(), seq: read, message_ids };
        room_events.push(emit(RoomEventBody::Read(change)));
        user_events.extend(status_events(&to.actor.tenant_id, to.room_id, member, read_senders, "read"));
    }
    let pending = outbox::insert_many(conn, subjects, &room_events, &user_events).await?;
    let moved = delivered > old_delivered || read > old_read;
    Ok((Cursors { delivered_seq: delivered, read_seq: read, moved }, pending))
}

/// Most message ids named in one `message.status` event.
pub const MAX_STATUS_IDS: usize = 500;

/// One sender's messages a cursor passed.
pub struct SenderMessages {
    pub sender_id: UserId,
    /// Oldest first, with their `seq`.
    pub messages: Vec<(i64, MessageId)>,
}

/// The newest `n` ids over every sender, oldest first.
fn newest(senders: &[SenderMessages], n: usize) -> Vec<MessageId> {
    let mut all: Vec<&(i64, MessageId)> = senders.iter().flat_map(|s| &s.messages).collect();
    all.sort_unstable_by_key(|(seq, _)| *seq);
    let skip = all.len().saturating_sub(n);
    all.into_iter().skip(skip).map(|(_, id)| id.clone()).collect()
}

/// One entry per sender, each message once, oldest first.
pub fn merge(groups: impl Iterator<Item = SenderMessages>) -> Vec<SenderMessages> {
    let mut by_sender: BTreeMap<UserId, BTreeMap<i64, MessageId>> = BTreeMap::new();
    for g in groups {
        by_sender.entry(g.sender_id).or_default().extend(g.messages);
    }
    by_sender
        .into_iter()
        .map(|(sender_id, messages)| SenderMessages { sender_id, messages: messages.into_iter().collect() })
        .collect()
}

/// The messages in `(from, to]` of senders other than `member` (not deleted).
async fn passed(
    conn: &mut AsyncPgConnection,
    room: &RoomId,
    member: &UserId,
    from: i64,
    to: i64,
) -> Result<Vec<SenderMessages>, StoreError> {
    #[derive(diesel::QueryableByName)]
    struct Sender {
        #[diesel(sql_type = Text)]
        sender_id: String,
        #[diesel(sql_type = Array<Text>)]
        ids: Vec<String>,
        #[diesel(sql_type = Array<BigInt>)]
        seqs: Vec<i64>,
    }
    let senders: Vec<Sender> = chat_pg::prepared(
        diesel::sql_query(
            "SELECT sender_id, array_agg(id ORDER BY seq) AS ids, array_agg(seq ORDER BY seq) AS seqs FROM messages
             WHERE room_id = $1 AND seq > $2 AND seq <= $3 AND sender_id <> $4 AND deleted_at IS NULL
             GROUP BY sender_id",
        )
        .bind::<Text, _>(room.as_str())
        .bind::<BigInt, _>(from)
        .bind::<BigInt, _>(to)
        .bind::<Text, _>(member.as_str()),
    )
    .load(conn)
    .await?;
    senders
        .into_iter()
        .map(|s| {
            let messages = s
                .seqs
                .into_iter()
                .zip(s.ids)
                .map(|(seq, id)| stored(MessageId::parse(id)).map(|id| (seq, id)))
                .collect::<Result<_, _>>()?;
            Ok(SenderMessages { sender_id: stored(UserId::parse(s.sender_id))?, messages })
        })
        .collect()
}

/// `message.status` events telling each sender that `member` now has their messages
/// with `status` (`delivered` or `read`).
pub fn status_events(
    tenant: &TenantId,
    room: &RoomId,
    member: &UserId,
    senders: Vec<SenderMessages>,
    status: &str,
) -> Vec<UserEvent> {
    let now = chat_domain::time::now();
    senders
        .into_iter()
        .filter_map(|s| {
            let up_to_seq = s.messages.last()?.0;
            let skip = s.messages.len().saturating_sub(MAX_STATUS_IDS);
            let message_ids = s.messages.into_iter().skip(skip).map(|(_, id)| id).collect();
            Some(UserEvent {
                event_id: EventId::generate(),
                tenant_id: tenant.clone(),
                user_id: s.sender_id,
                occurred_at: now,
                body: UserEventBody::MessageStatus(MessageStatus {
                    room_id: room.clone(),
                    message_ids,
                    up_to_seq,
                    status: status.to_owned(),
                    by: member.clone(),
                }),
            })
        })
        .collect()
}
