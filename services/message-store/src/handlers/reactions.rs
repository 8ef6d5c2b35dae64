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

/// A message's reactions and pin, read in the same statement as the message (or its
/// id): the select-list items of [`decorations`].
#[derive(QueryableByName, Debug)]
pub(crate) struct Decorations {
    /// `[[emoji, count, [first users], me], ...]`, emoji in the order they were first
    /// used; null without reactions.
    #[diesel(sql_type = Nullable<Text>)]
    reactions: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pinned_by: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pinned_at: Option<DateTime<Utc>>,
}

/// Select-list items giving [`Decorations`] for the message whose id is the SQL
/// expression `id`, as the user in placeholder `viewer` sees it (`me`), in a statement
/// that joins [`pin_join`] of the same `id`. Per emoji: the
/// count, the first [`REACTION_SAMPLE`] users, whether the viewer is one of them; one
/// index range of `message_reactions`' primary key per message.
pub(crate) fn decorations(id: &str, viewer: &str) -> String {
    format!(
        "(SELECT json_agg(json_build_array(s.emoji, s.n, s.sample, s.me) ORDER BY s.first_at, s.emoji)::text
            FROM (SELECT r.emoji, count(*) AS n,
                         (array_agg(r.user_id ORDER BY r.created_at, r.user_id))[1:{REACTION_SAMPLE}] AS sample,
                         coalesce(bool_or(r.user_id = {viewer}), false) AS me,
                         min(r.created_at) AS first_at
                    FROM message_reactions r WHERE r.message_id = {id} GROUP BY r.emoji) s) AS reactions,
         pin.pinned_by, pin.pinned_at"
    )
}

/// The join giving [`decorations`] the pin of message `id`: a lateral probe of
/// `message_pins`' primary key per message, whatever the statistics (a plain left join,
/// or a lateral one the planner may flatten into it, planned on empty tables hashed a
/// scan of every pin; the `LIMIT` keeps it a probe).
pub(crate) fn pin_join(id: &str) -> String {
    format!(
        "LEFT JOIN LATERAL (SELECT p.pinned_by, p.pinned_at FROM message_pins p WHERE p.message_id = {id} LIMIT 1) pin ON true"
    )
}

impl Decorations {
    /// Sets `m`'s reactions and pin from these. A stored value that does not parse is
    /// left out with a logged error: one bad row never breaks a page.
    pub(crate) fn apply(self, m: &mut Message) {
        m.reactions = self.reactions(&m.message_id);
        (m.pinned_at, m.pinned_by) = match (self.pinned_at, self.pinned_by) {
            (Some(at), Some(by)) => (Some(at), UserId::parse(by).ok()),
            _ => (None, None),
        };
    }

    /// The reactions of message `id`.
    fn reactions(&self, id: &MessageId) -> Vec<ReactionSummary> {
        match self.reactions.as_deref().map(serde_json::from_str::<Vec<(String, i64, Vec<String>, bool)>>) {
            None => Vec::new(),
            Some(Ok(list)) => list
                .into_iter()
                .filter_map(|(emoji, count, sample, me)| match Emoji::parse(emoji) {
                    Ok(emoji) => {
                        let user_ids = sample.into_iter().filter_map(|u| UserId::parse(u).ok()).collect();
                        Some(ReactionSummary { emoji, count, user_ids, me })
                    }
                    Err(_) => {
                        tracing::error!(message_id = %id, "a stored reaction emoji cannot be read; left out");
                        None
                    }
                })
                .collect(),
            Some(Err(e)) => {
                tracing::error!(message_id = %id, error = %e, "stored reactions cannot be read; left out");
                Vec::new()
            }
        }
    }
}

#[derive(QueryableByName)]
struct Decorated {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(embed)]
    decorations: Decorations,
}

/// The statement reading the [`Decorations`] of messages: $1 their ids, $2 the viewer.
pub(crate) fn decorate_sql() -> String {
    format!("SELECT d.id, {} FROM unnest($1::text[]) AS d(id) {}", decorations("d.id", "$2"), pin_join("d.id"))
}

/// The [`Decorations`] of the messages `ids` as `viewer` sees them ("": no one).
async fn decorations_of(
    conn: &mut AsyncPgConnection,
    ids: &[&str],
    viewer: &str,
) -> Result<Vec<Decorated>, StoreError> {
    Ok(prepared(diesel::sql_query(decorate_sql()).bind::<Array<Text>, _>(ids).bind::<Text, _>(viewer))
        .load(conn)
        .await?)
}

/// Fills in `reactions`, `pinned_at` and `pinned_by` of `messages` as `viewer` sees
/// them (`me`: whether the viewer reacted; `false` for everyone without a viewer). One
/// statement for the whole page (history pages read them with the messages themselves:
/// [`decorations`]).
pub(crate) async fn decorate(
    conn: &mut AsyncPgConnection,
    messages: &mut [Message],
    viewer: Option<&UserId>,
) -> Result<(), StoreError> {
    if messages.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = messages.iter().map(|m| m.message_id.as_str()).collect();
    let rows = decorations_of(conn, &ids, viewer.map_or("", UserId::as_str)).await?;
    let mut by_message: HashMap<String, Decorations> = rows.into_iter().map(|r| (r.id, r.decorations)).collect();
    for m in messages.iter_mut() {
        match by_message.remove(m.message_id.as_str()) {
            Some(d) => d.apply(m),
            None => {
                m.reactions = Vec::new();
                (m.pinned_at, m.pinned_by) = (None, None);
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
    let rows = decorations_of(conn, &[message.as_str()], viewer.as_str()).await?;
    Ok(rows.into_iter().next().map(|r| r.decorations.reactions(message)).unwrap_or_default())
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
