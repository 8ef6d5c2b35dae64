//! `search_messages`: full-text search over the messages a user may read (migrations
//! 0030 and 0090: `messages.tsv`, `messages.search_keys` and its GIN index,
//! `room_departures`), and the tenant's search language (`tenant_residency.search_lang`)
//! with the re-index that follows a change of it.
//!
//! One statement, in phases, so that its cost follows what the caller can see and is
//! bounded however common the words are:
//! 1. For each of the caller's rooms (member now, or left: up to the room's last `seq`
//!    when they left, and not edited since — unless banned from it: a ban in force hides
//!    the room), its matches through the room-keyed index
//!    (`search_keys`: one small posting list per word and room), checked against the
//!    exact query (`tsv @@ query`: phrases), at most `busy_room_matches` + 1 of them
//!    ([`Limits`]).
//!    A room with no more is done: all its matches rank.
//! 2. A room with more is busy. Its newest M matches are taken by walking the room's
//!    primary key backwards (M: `candidate_budget` shared by the busy rooms, at least
//!    `busy_room_floor` each), reading at most `walk_per_match` × M messages; older
//!    matches there are reached with `before=`.
//! 3. A busy room whose walk found fewer than M (its matches are sparse among its
//!    newest messages) has all its matches taken through the index, as in 1.
//!
//! Every phase leaves out the messages of senders the caller blocked with
//! `hide_in_groups` (migration 0085; the list is read once, `hidden`), so a busy room's
//! count and walk are of what the caller can see.
//!
//! The candidates are ranked (`ts_rank_cd`) best first, then newest, and a highlighted
//! extract is made for each message of the page (`ts_headline`, only for the page's
//! rows). It reads the primary, so a message deleted or edited a moment ago is already
//! gone or re-worded. The statement runs with `enable_sort = off` (in its own
//! transaction): phase 2 must walk the index in order and stop, and with parameters the
//! planner cannot know that a room has thousands of rows and would sort them all. The
//! room sets are compared as arrays (`= ANY (ARRAY(...))`): as joins, the planner, who
//! expects one row from each CTE, nested-looped 2,500 candidates over them (27 ms).

use chat_domain::ApiError;
use chat_domain::ids::TenantId;
use chat_domain::model::Message;
use chat_domain::proto::search::{MATCH_END, MATCH_START, SearchHit, SearchMessages, SearchResults};
use chat_pg::prepared;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Float4, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::Store;
use crate::error::StoreError;
use crate::rows::MessageRow;

#[derive(QueryableByName)]
struct HitRow {
    #[diesel(embed)]
    message: MessageRow,
    #[diesel(sql_type = Float4)]
    score: f32,
    #[diesel(sql_type = Text)]
    snippet: String,
}

/// How much one search may read (see the module documentation); message-store's
/// `SEARCH_*` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A room with more matches than this is busy (`SEARCH_BUSY_ROOM_MATCHES`).
    pub busy_room_matches: i64,
    /// Matches taken newest first, shared by the busy rooms of one search
    /// (`SEARCH_CANDIDATE_BUDGET`).
    pub candidate_budget: i64,
    /// Matches taken newest first in each busy room, however many rooms are busy
    /// (`SEARCH_BUSY_ROOM_FLOOR`).
    pub busy_room_floor: i64,
    /// How many messages per match wanted the newest-first walk of a busy room reads
    /// before it gives up: its matches are then too sparse among its newest messages
    /// (`SEARCH_WALK_PER_MATCH`).
    pub walk_per_match: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { busy_room_matches: 50, candidate_budget: 2_500, busy_room_floor: 50, walk_per_match: 3 }
    }
}

/// The search statement (see the module documentation). Parameters: $1 tenant, $2
/// user, $3 tsquery text, $4 room, $5 sender, $6 before, $7 after, $8 limit, $9
/// offset, $10 `ts_headline` options, $11 to $14 the [`Limits`] in their order.
const SEARCH: &str = "
WITH cfg AS (
    SELECT COALESCE((SELECT tr.search_lang FROM tenant_residency tr WHERE tr.tenant_id = $1), 'simple'::regconfig) AS cfg
), q AS (
    SELECT cfg.cfg, to_tsquery(cfg.cfg, $3) AS q FROM cfg
), vis AS MATERIALIZED (
    SELECT m.room_id, NULL::bigint AS upto, NULL::timestamptz AS left_at
    FROM room_members m WHERE m.tenant_id = $1 AND m.user_id = $2
    UNION ALL
    SELECT d.room_id, d.last_seq, d.left_at FROM room_departures d
    WHERE d.tenant_id = $1 AND d.user_id = $2
      AND NOT EXISTS (SELECT 1 FROM room_members m WHERE m.room_id = d.room_id AND m.user_id = $2)
      -- A ban in force hides the whole room (migration 0080).
      AND NOT EXISTS (SELECT 1 FROM room_bans b WHERE b.room_id = d.room_id AND b.user_id = $2
                        AND (b.expires_at IS NULL OR b.expires_at > now()))
), hidden AS MATERIALIZED (
    -- Senders the caller hides with a block (migration 0085), read once.
    SELECT ARRAY(SELECT b.blocked_id FROM user_blocks b
                 WHERE b.tenant_id = $1 AND b.blocker_id = $2 AND b.hide_in_groups) AS ids
), rv AS MATERIALIZED (
    SELECT v.room_id, v.upto, v.left_at, chat_search_keys_query(v.room_id, q.q) AS kq
    FROM vis v, q WHERE $4::text IS NULL OR v.room_id = $4
), a AS MATERIALIZED (
    SELECT v.room_id, v.upto, v.left_at, f.id, f.created_at, f.tsv
    FROM q, hidden, rv v, LATERAL (
        SELECT msg.id, msg.created_at, msg.tsv FROM messages msg
        WHERE msg.search_keys @@ v.kq AND msg.room_id || '' = v.room_id AND msg.tsv @@ q.q
          AND msg.deleted_at IS NULL
          AND (v.upto IS NULL OR (msg.seq <= v.upto AND (msg.edited_at IS NULL OR msg.edited_at <= v.left_at)))
          AND ($5::text IS NULL OR msg.sender_id = $5)
          AND msg.sender_id <> ALL (hidden.ids)
          AND ($6::timestamptz IS NULL OR msg.created_at < $6)
          AND ($7::timestamptz IS NULL OR msg.created_at > $7)
        LIMIT $11 + 1) f
), busy AS MATERIALIZED (
    SELECT a.room_id, a.upto, a.left_at FROM a GROUP BY a.room_id, a.upto, a.left_at HAVING count(*) > $11
), budget AS MATERIALIZED (
    SELECT GREATEST($13, $12 / GREATEST(count(*), 1)) AS matches FROM busy
), walk AS MATERIALIZED (
    SELECT v.room_id, n.id, n.created_at, n.tsv
    FROM q, hidden, budget, busy v, LATERAL (
        SELECT w.id, w.created_at, w.tsv FROM (
            SELECT msg.id, msg.created_at, msg.tsv, msg.edited_at, msg.sender_id FROM messages msg
            WHERE msg.room_id = v.room_id AND msg.deleted_at IS NULL
              AND (v.upto IS NULL OR msg.seq <= v.upto)
              AND ($5::text IS NULL OR msg.sender_id = $5)
              AND ($6::timestamptz IS NULL OR msg.created_at < $6)
              AND ($7::timestamptz IS NULL OR msg.created_at > $7)
            ORDER BY msg.room_id DESC, msg.seq DESC LIMIT budget.matches * $14) w
        WHERE w.tsv @@ q.q AND (v.upto IS NULL OR w.edited_at IS NULL OR w.edited_at <= v.left_at)
          AND w.sender_id <> ALL (hidden.ids)
        LIMIT budget.matches) n
), full_walks AS MATERIALIZED (
    SELECT walk.room_id FROM walk, budget GROUP BY walk.room_id, budget.matches HAVING count(*) >= budget.matches
), sparse AS MATERIALIZED (
    SELECT rv.room_id, rv.upto, rv.left_at, rv.kq FROM rv
    WHERE rv.room_id = ANY (ARRAY(SELECT busy.room_id FROM busy)) AND rv.room_id <> ALL (ARRAY(SELECT full_walks.room_id FROM full_walks))
), cand AS (
    SELECT a.id, a.created_at, a.tsv FROM a WHERE a.room_id <> ALL (ARRAY(SELECT busy.room_id FROM busy))
    UNION ALL
    SELECT walk.id, walk.created_at, walk.tsv FROM walk WHERE walk.room_id = ANY (ARRAY(SELECT full_walks.room_id FROM full_walks))
    UNION ALL
    SELECT f.id, f.created_at, f.tsv
    FROM q, hidden, sparse v, LATERAL (
        SELECT msg.id, msg.created_at, msg.tsv FROM messages msg
        WHERE msg.search_keys @@ v.kq AND msg.room_id || '' = v.room_id AND msg.tsv @@ q.q
          AND msg.deleted_at IS NULL
          AND (v.upto IS NULL OR (msg.seq <= v.upto AND (msg.edited_at IS NULL OR msg.edited_at <= v.left_at)))
          AND ($5::text IS NULL OR msg.sender_id = $5)
          AND msg.sender_id <> ALL (hidden.ids)
          AND ($6::timestamptz IS NULL OR msg.created_at < $6)
          AND ($7::timestamptz IS NULL OR msg.created_at > $7)) f
), hits AS (
    SELECT c.id AS hit_id, ts_rank_cd(c.tsv, q.q) AS score, c.created_at AS hit_at
    FROM q, cand c
    ORDER BY score DESC, c.created_at DESC, c.id
    LIMIT $8 OFFSET $9
)
SELECT m.id, m.room_id, m.sender_id, m.sender_name, m.seq, m.content, m.meta, m.client_msg_id, m.created_at,
       m.edited_at, m.deleted_at, m.kind, m.reply_to, m.attachments,
       m.parent_id, m.reply_count, m.last_reply_at, m.thread_participants, m.mentions,
       h.score, ts_headline(q.cfg, m.content, q.q, $10) AS snippet
FROM hits h JOIN messages m ON m.id = h.hit_id CROSS JOIN q
ORDER BY h.score DESC, h.hit_at DESC, m.id";

pub async fn search_messages(store: Store, cmd: SearchMessages) -> Result<SearchResults, ApiError> {
    let limit = cmd.limit.clamp(1, chat_domain::proto::search::MAX_SEARCH_LIMIT);
    let offset = cmd.offset.min(chat_domain::proto::search::MAX_SEARCH_OFFSET);
    let limits = store.0.search;
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let options = format!(
        "StartSel=\"{MATCH_START}\", StopSel=\"{MATCH_END}\", MaxWords=30, MinWords=12, MaxFragments=2, \
         FragmentDelimiter=\" … \""
    );
    // The reader whose reactions `decorate` marks `me` (the transaction takes `cmd`).
    let viewer = cmd.actor.user_id.clone();
    let mut rows: Vec<HitRow> = conn
        .transaction(async move |conn| -> Result<Vec<HitRow>, StoreError> {
            // Planner settings for this statement only (see the module documentation);
            // the cached generic plan is made the first time it runs on a connection,
            // so it is always made with them.
            diesel::sql_query("SET LOCAL enable_sort = off").execute(conn).await?;
            Ok(prepared(
                diesel::sql_query(SEARCH)
                    .bind::<Text, _>(cmd.actor.tenant_id.as_str())
                    .bind::<Text, _>(cmd.actor.user_id.as_str())
                    .bind::<Text, _>(cmd.query.as_tsquery())
                    .bind::<Nullable<Text>, _>(cmd.room_id.as_ref().map(|r| r.as_str()))
                    .bind::<Nullable<Text>, _>(cmd.sender_id.as_ref().map(|u| u.as_str()))
                    .bind::<Nullable<Timestamptz>, _>(cmd.before)
                    .bind::<Nullable<Timestamptz>, _>(cmd.after)
                    .bind::<BigInt, _>(i64::from(limit) + 1)
                    .bind::<BigInt, _>(i64::from(offset))
                    .bind::<Text, _>(options)
                    .bind::<BigInt, _>(limits.busy_room_matches)
                    .bind::<BigInt, _>(limits.candidate_budget)
                    .bind::<BigInt, _>(limits.busy_room_floor)
                    .bind::<BigInt, _>(limits.walk_per_match),
            )
            .load(conn)
            .await?)
        })
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let hits = rows
        .into_iter()
        .map(|r| Ok(SearchHit { message: Message::try_from(r.message)?, snippet: r.snippet, score: r.score }))
        .collect::<Result<Vec<_>, StoreError>>()?;
    let mut messages: Vec<Message> = hits.iter().map(|h: &SearchHit| h.message.clone()).collect();
    super::reactions::decorate(&mut conn, &mut messages, Some(&viewer)).await?;
    let hits = hits.into_iter().zip(messages).map(|(h, message)| SearchHit { message, ..h }).collect();
    Ok(SearchResults { hits, more })
}

/// Messages re-indexed per statement after a language change.
const REINDEX_PAGE: i64 = 5_000;

/// Makes `language` the search language of `tenant`'s messages where they live, and,
/// when it changed, re-indexes them in the background (in pages, so no statement holds
/// many rows; until it finishes, older messages match by their former language's words).
pub async fn set_language(store: &Store, tenant: &TenantId, language: &str) -> Result<(), ApiError> {
    let db = store.db(tenant).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let changed = diesel::sql_query(
        "UPDATE tenant_residency SET search_lang = $2::regconfig
         WHERE tenant_id = $1 AND search_lang <> $2::regconfig",
    )
    .bind::<Text, _>(tenant.as_str())
    .bind::<Text, _>(language)
    .execute(&mut conn)
    .await
    .map_err(StoreError::from)?;
    drop(conn);
    if changed > 0 {
        let (tenant, language) = (tenant.clone(), language.to_owned());
        tokio::spawn(async move {
            if let Err(e) = reindex(&db, &tenant, &language).await {
                tracing::error!(%tenant, error = %e, "re-indexing messages for a new search language failed");
            }
        });
    }
    Ok(())
}

async fn reindex(db: &crate::store::Db, tenant: &TenantId, language: &str) -> Result<(), StoreError> {
    #[derive(diesel::QueryableByName)]
    struct Room {
        #[diesel(sql_type = Text)]
        id: String,
        #[diesel(sql_type = BigInt)]
        last_seq: i64,
    }
    let mut conn = db.pool.get().await?;
    let rooms: Vec<Room> = diesel::sql_query("SELECT id, last_seq FROM rooms WHERE tenant_id = $1 ORDER BY id")
        .bind::<Text, _>(tenant.as_str())
        .load(&mut conn)
        .await?;
    for room in rooms {
        let mut after = 0;
        while after < room.last_seq {
            diesel::sql_query(
                "UPDATE messages SET tsv = to_tsvector(
                     (SELECT search_lang FROM tenant_residency WHERE tenant_id = $4), content)
                 WHERE room_id = $1 AND seq > $2 AND seq <= $3 AND tsv IS NOT NULL",
            )
            .bind::<Text, _>(&room.id)
            .bind::<BigInt, _>(after)
            .bind::<BigInt, _>(after.saturating_add(REINDEX_PAGE))
            .bind::<Text, _>(tenant.as_str())
            .execute(&mut conn)
            .await?;
            after = after.saturating_add(REINDEX_PAGE);
        }
    }
    tracing::info!(%tenant, language, "messages re-indexed for the tenant's search language");
    Ok(())
}
