//! `add_reaction`, `remove_reaction`, `list_reactors` (migration 0060), and
//! [`decorate`]: the reactions and pin of messages as one reader sees them, which every
//! read path (history, search, sync, pins, edits, thread pages) applies to what it returns.
//!
//! A change locks the message's row first (`FOR UPDATE`), so the changes of one message
//! happen one after another: the count each one reports, and the limits it checks, are
//! exact however many members react at once. It stamps `messages.changed_tx` (the
//! message comes back in `GET /sync`'s updated messages) and writes its room event in
//! the outbox, in the same transaction; a repeat that changes nothing writes neither.

use std::collections::HashMap;

use chat_domain::ApiError;
use chat_domain::emoji::{Emoji, MAX_EMOJI_PER_MESSAGE, MAX_REACTIONS_PER_USER, REACTION_SAMPLE};
use chat_domain::ids::{MessageId, RoomId, UserId};
use chat_domain::model::{Actor, Message, ReactionSummary};
use chat_domain::proto::events::{ReactionEvent, RoomEvent, RoomEventBody};
use chat_domain::proto::reactions::{
    AddReaction, ListReactors, MAX_REACTORS_PAGE, ReactionChange, Reactor, Reactors, RemoveReaction,
};
use chat_pg::prepared;
use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::{Store, access};
use crate::error::{StoreError, optional, stored};
use crate::outbox;

#[derive(QueryableByName)]
struct SummaryRow {
    #[diesel(sql_type = Text)]
    message_id: String,
    #[diesel(sql_type = Text)]
    emoji: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = Array<Text>)]
    sample: Vec<String>,
    #[diesel(sql_type = Bool)]
    me: bool,
}

#[derive(QueryableByName)]
struct PinRow {
    #[diesel(sql_type = Text)]
    message_id: String,
    #[diesel(sql_type = Text)]
    pinned_by: String,
    #[diesel(sql_type = Timestamptz)]
    pinned_at: DateTime<Utc>,
}

/// Per message and emoji (emoji in the order they were first used): the count, the
/// first users, and whether `$2` is one of them.
fn summary_sql() -> String {
    format!(
        "SELECT r.message_id, r.emoji, count(*) AS n,
                (array_agg(r.user_id ORDER BY r.created_at, r.user_id))[1:{REACTION_SAMPLE}] AS sample,
                coalesce(bool_or(r.user_id = $2), false) AS me
         FROM message_reactions r WHERE r.message_id = ANY ($1)
         GROUP BY r.message_id, r.emoji
         ORDER BY r.message_id, min(r.created_at), r.emoji"
    )
}

/// Fills in `reactions`, `pinned_at` and `pinned_by` of `messages` as `viewer` sees
/// them (`me`: whether the viewer reacted; `false` for everyone without a viewer). Two
/// index lookups for the whole page. A stored value that does not parse is left out
/// with a logged error: one bad row never breaks a page.
pub(crate) async fn decorate(
    conn: &mut AsyncPgConnection,
    messages: &mut [Message],
    viewer: Option<&UserId>,
) -> Result<(), StoreError> {
    if messages.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = messages.iter().map(|m| m.message_id.as_str()).collect();
    let rows: Vec<SummaryRow> = prepared(
        diesel::sql_query(summary_sql())
            .bind::<Array<Text>, _>(&ids)
            .bind::<Text, _>(viewer.map_or("", UserId::as_str)),
    )
    .load(conn)
    .await?;
    let pins: Vec<PinRow> = prepared(
        diesel::sql_query("SELECT message_id, pinned_by, pinned_at FROM message_pins WHERE message_id = ANY ($1)")
            .bind::<Array<Text>, _>(&ids),
    )
    .load(conn)
    .await?;
    let mut by_message: HashMap<String, Vec<ReactionSummary>> = HashMap::new();
    for r in rows {
        let Ok(emoji) = Emoji::parse(r.emoji) else {
            tracing::error!(message_id = %r.message_id, "a stored reaction emoji cannot be read; left out");
            continue;
        };
        let user_ids = r.sample.into_iter().filter_map(|u| UserId::parse(u).ok()).collect();
        by_message.entry(r.message_id).or_default().push(ReactionSummary { emoji, count: r.n, user_ids, me: r.me });
    }
    let pins: HashMap<String, PinRow> = pins.into_iter().map(|p| (p.message_id.clone(), p)).collect();
    for m in messages.iter_mut() {
        m.reactions = by_message.remove(m.message_id.as_str()).unwrap_or_default();
        match pins.get(m.message_id.as_str()) {
            Some(p) => {
                m.pinned_at = Some(p.pinned_at);
                m.pinned_by = UserId::parse(p.pinned_by.as_str()).ok();
            }
            None => {
                m.pinned_at = None;
                m.pinned_by = None;
            }
        }
    }
    Ok(())
}

/// The message as it goes into a bus event, which no one user reads: `me` is `false`.
pub(crate) fn for_everyone(m: &Message) -> Message {
    let mut m = m.clone();
    for r in &mut m.reactions {
        r.me = false;
    }
    m
}

/// Locks a message of `room` for a change; its `seq`. `NOT_FOUND` when the room has no
/// such message, `CONFLICT` when it was deleted (`what`: "reacted to", "pinned").
pub(crate) async fn lock_live(
    conn: &mut AsyncPgConnection,
    room: &RoomId,
    message: &MessageId,
    what: &str,
) -> Result<i64, StoreError> {
    #[derive(QueryableByName)]
    struct Target {
        #[diesel(sql_type = BigInt)]
        seq: i64,
        #[diesel(sql_type = Bool)]
        deleted: bool,
    }
    let target: Option<Target> = optional(
        prepared(
            diesel::sql_query(
                "SELECT seq, deleted_at IS NOT NULL AS deleted FROM messages WHERE room_id = $1 AND id = $2 FOR UPDATE",
            )
            .bind::<Text, _>(room.as_str())
            .bind::<Text, _>(message.as_str()),
        )
        .get_result(conn)
        .await,
    )?;
    match target {
        None => Err(ApiError::not_found("Message not found").into()),
        Some(t) if t.deleted => Err(ApiError::conflict(format!("A deleted message cannot be {what}")).into()),
        Some(t) => Ok(t.seq),
    }
}

/// Marks the message changed by this transaction (for `GET /sync`).
pub(crate) async fn stamp(conn: &mut AsyncPgConnection, room: &RoomId, message: &MessageId) -> Result<(), StoreError> {
    prepared(
        diesel::sql_query(
            "UPDATE messages SET changed_tx = pg_current_xact_id()::text::bigint WHERE room_id = $1 AND id = $2",
        )
        .bind::<Text, _>(room.as_str())
        .bind::<Text, _>(message.as_str()),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The reactions of one message as `viewer` sees them.
async fn summaries(
    conn: &mut AsyncPgConnection,
    message: &MessageId,
    viewer: &UserId,
) -> Result<Vec<ReactionSummary>, StoreError> {
    let rows: Vec<SummaryRow> = prepared(
        diesel::sql_query(summary_sql())
            .bind::<Array<Text>, _>(vec![message.as_str()])
            .bind::<Text, _>(viewer.as_str()),
    )
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let emoji = Emoji::parse(r.emoji).ok()?;
            let user_ids = r.sample.into_iter().filter_map(|u| UserId::parse(u).ok()).collect();
            Some(ReactionSummary { emoji, count: r.n, user_ids, me: r.me })
        })
        .collect())
}

pub async fn add_reaction(store: Store, cmd: AddReaction) -> Result<ReactionChange, ApiError> {
    change(store, cmd.actor, cmd.room_id, cmd.message_id, cmd.emoji, true).await
}

pub async fn remove_reaction(store: Store, cmd: RemoveReaction) -> Result<ReactionChange, ApiError> {
    change(store, cmd.actor, cmd.room_id, cmd.message_id, cmd.emoji, false).await
}

/// Adds (`add`) or removes the actor's `emoji` reaction.
async fn change(
    store: Store,
    actor: Actor,
    room: RoomId,
    message: MessageId,
    emoji: Emoji,
    add: bool,
) -> Result<ReactionChange, ApiError> {
    let subjects = store.subjects().clone();
    let db = store.db(&actor.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let (change, pending) = conn
        .transaction(async move |conn| -> Result<(ReactionChange, Option<outbox::Pending>), StoreError> {
            access(conn, &actor.tenant_id, &room, &actor.user_id).await?.member()?;
            let seq = lock_live(conn, &room, &message, "reacted to").await?;
            #[derive(QueryableByName)]
            struct State {
                #[diesel(sql_type = BigInt)]
                emojis: i64,
                #[diesel(sql_type = BigInt)]
                mine: i64,
                #[diesel(sql_type = BigInt)]
                n: i64,
                #[diesel(sql_type = Bool)]
                already: bool,
            }
            let state: State = prepared(
                diesel::sql_query(
                    "SELECT (SELECT count(DISTINCT emoji) FROM message_reactions WHERE message_id = $1) AS emojis,
                            (SELECT count(*) FROM message_reactions WHERE message_id = $1 AND user_id = $2) AS mine,
                            (SELECT count(*) FROM message_reactions WHERE message_id = $1 AND emoji = $3) AS n,
                            EXISTS (SELECT 1 FROM message_reactions
                                    WHERE message_id = $1 AND emoji = $3 AND user_id = $2) AS already",
                )
                .bind::<Text, _>(message.as_str())
                .bind::<Text, _>(actor.user_id.as_str())
                .bind::<Text, _>(emoji.as_str()),
            )
            .get_result(conn)
            .await?;
            let (changed, count) = match (add, state.already) {
                (true, false) => {
                    if state.n == 0 && state.emojis >= MAX_EMOJI_PER_MESSAGE {
                        return Err(ApiError::validation(
                            "emoji",
                            format!("A message carries at most {MAX_EMOJI_PER_MESSAGE} different emoji"),
                        )
                        .into());
                    }
                    if state.mine >= MAX_REACTIONS_PER_USER {
                        return Err(ApiError::validation(
                            "emoji",
                            format!("You can react to a message with at most {MAX_REACTIONS_PER_USER} emoji"),
                        )
                        .into());
                    }
                    prepared(
                        diesel::sql_query(
                            "INSERT INTO message_reactions (tenant_id, room_id, message_id, emoji, user_id)
                             VALUES ($1, $2, $3, $4, $5)",
                        )
                        .bind::<Text, _>(actor.tenant_id.as_str())
                        .bind::<Text, _>(room.as_str())
                        .bind::<Text, _>(message.as_str())
                        .bind::<Text, _>(emoji.as_str())
                        .bind::<Text, _>(actor.user_id.as_str()),
                    )
                    .execute(conn)
                    .await?;
                    (true, state.n + 1)
                }
                (false, true) => {
                    prepared(
                        diesel::sql_query(
                            "DELETE FROM message_reactions WHERE message_id = $1 AND emoji = $2 AND user_id = $3",
                        )
                        .bind::<Text, _>(message.as_str())
                        .bind::<Text, _>(emoji.as_str())
                        .bind::<Text, _>(actor.user_id.as_str()),
                    )
                    .execute(conn)
                    .await?;
                    (true, state.n - 1)
                }
                _ => (false, state.n),
            };
            let pending = if changed {
                stamp(conn, &room, &message).await?;
                let body = ReactionEvent {
                    message_id: message.clone(),
                    seq,
                    emoji: emoji.clone(),
                    user_id: actor.user_id.clone(),
                    count,
                };
                let body = if add { RoomEventBody::ReactionAdded(body) } else { RoomEventBody::ReactionRemoved(body) };
                let event = RoomEvent::new(&actor.tenant_id, &room, chat_domain::time::now(), body);
                Some(outbox::insert(conn, &subjects, &event).await?)
            } else {
                None
            };
            let reactions = summaries(conn, &message, &actor.user_id).await?;
            Ok((ReactionChange { room_id: room, message_id: message, emoji, changed, count, reactions }, pending))
        })
        .await?;
    db.publisher.submit(pending.into_iter().collect());
    Ok(change)
}

pub async fn list_reactors(store: Store, cmd: ListReactors) -> Result<Reactors, ApiError> {
    let limit = i64::from(cmd.limit.clamp(1, MAX_REACTORS_PAGE));
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.reads.get().await.map_err(StoreError::from)?;
    access(&mut conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?.member()?;
    #[derive(QueryableByName)]
    struct Exists {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    // The message must be one of the room's; its count comes with the check.
    let found: Option<Exists> = optional(
        prepared(
            diesel::sql_query(
                "SELECT (SELECT count(*) FROM message_reactions r WHERE r.message_id = m.id AND r.emoji = $3) AS n
                 FROM messages m WHERE m.room_id = $1 AND m.id = $2",
            )
            .bind::<Text, _>(cmd.room_id.as_str())
            .bind::<Text, _>(cmd.message_id.as_str())
            .bind::<Text, _>(cmd.emoji.as_str()),
        )
        .get_result(&mut conn)
        .await,
    )
    .map_err(StoreError::from)?;
    let count = found.ok_or_else(|| ApiError::not_found("Message not found"))?.n;
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        user_id: String,
        #[diesel(sql_type = Timestamptz)]
        created_at: DateTime<Utc>,
    }
    let rows: Vec<Row> = prepared(
        diesel::sql_query(
            "SELECT user_id, created_at FROM message_reactions
             WHERE message_id = $1 AND emoji = $2 AND ($3::text IS NULL OR user_id > $3)
             ORDER BY user_id LIMIT $4",
        )
        .bind::<Text, _>(cmd.message_id.as_str())
        .bind::<Text, _>(cmd.emoji.as_str())
        .bind::<Nullable<Text>, _>(cmd.cursor.as_ref().map(UserId::as_str))
        .bind::<BigInt, _>(limit + 1),
    )
    .load(&mut conn)
    .await
    .map_err(StoreError::from)?;
    let more = rows.len() as i64 > limit;
    let users: Vec<Reactor> = rows
        .into_iter()
        .take(limit as usize)
        .map(|r| Ok(Reactor { user_id: stored(UserId::parse(r.user_id))?, reacted_at: r.created_at }))
        .collect::<Result<_, StoreError>>()?;
    let next_cursor = if more { users.last().map(|u| u.user_id.clone()) } else { None };
    Ok(Reactors { emoji: cmd.emoji, count, users, next_cursor })
}
