//! `search_messages`: full-text search over the messages a user may read (migration
//! 0030: `messages.tsv`, the `messages_search` GIN index, `room_departures`), and the
//! tenant's search language (`tenant_residency.search_lang`) with the re-index that
//! follows a change of it.
//!
//! One statement: the caller's rooms (member now, or left: up to the room's last `seq`
//! when they left, and not edited since — unless banned from it: a ban in force hides
//! the room), the matches in those rooms through the
//! index, ranked (`ts_rank_cd`) best first, then newest, and a highlighted extract of
//! each message of the page (`ts_headline`, only for the page's rows). It reads the
//! primary, so a message deleted or edited a moment ago is already gone or re-worded.

use chat_domain::ApiError;
use chat_domain::ids::TenantId;
use chat_domain::model::Message;
use chat_domain::proto::search::{MATCH_END, MATCH_START, SearchHit, SearchMessages, SearchResults};
use chat_pg::prepared;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Float4, Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;

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

/// The search statement (see the module documentation). Parameters: $1 tenant, $2
/// user, $3 tsquery text, $4 room, $5 sender, $6 before, $7 after, $8 limit, $9
/// offset, $10 `ts_headline` options.
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
), hits AS (
    SELECT msg.id AS hit_id, ts_rank_cd(msg.tsv, q.q) AS score, msg.created_at AS hit_at
    FROM q, messages msg JOIN vis v ON v.room_id = msg.room_id
    WHERE msg.room_id = ANY (ARRAY(SELECT vis.room_id FROM vis WHERE $4::text IS NULL OR vis.room_id = $4))
      AND msg.tsv IS NOT NULL AND msg.tsv @@ q.q AND msg.deleted_at IS NULL
      AND (v.upto IS NULL OR (msg.seq <= v.upto AND (msg.edited_at IS NULL OR msg.edited_at <= v.left_at)))
      AND ($5::text IS NULL OR msg.sender_id = $5)
      -- Senders the caller hides with a block (migration 0085), read once.
      AND msg.sender_id <> ALL (ARRAY(SELECT b.blocked_id FROM user_blocks b
                                      WHERE b.tenant_id = $1 AND b.blocker_id = $2 AND b.hide_in_groups))
      AND ($6::timestamptz IS NULL OR msg.created_at < $6)
      AND ($7::timestamptz IS NULL OR msg.created_at > $7)
    ORDER BY score DESC, msg.created_at DESC, msg.id
    LIMIT $8 OFFSET $9
)
SELECT m.id, m.room_id, m.sender_id, m.sender_name, m.seq, m.content, m.meta, m.client_msg_id, m.created_at,
       m.edited_at, m.deleted_at, m.kind, m.reply_to, m.attachments,
       h.score, ts_headline(q.cfg, m.content, q.q, $10) AS snippet
FROM hits h JOIN messages m ON m.id = h.hit_id CROSS JOIN q
ORDER BY h.score DESC, h.hit_at DESC, m.id";

pub async fn search_messages(store: Store, cmd: SearchMessages) -> Result<SearchResults, ApiError> {
    let limit = cmd.limit.clamp(1, chat_domain::proto::search::MAX_SEARCH_LIMIT);
    let offset = cmd.offset.min(chat_domain::proto::search::MAX_SEARCH_OFFSET);
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let options = format!(
        "StartSel=\"{MATCH_START}\", StopSel=\"{MATCH_END}\", MaxWords=30, MinWords=12, MaxFragments=2, \
         FragmentDelimiter=\" … \""
    );
    let mut rows: Vec<HitRow> = prepared(
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
            .bind::<Text, _>(options),
    )
    .load(&mut conn)
    .await
    .map_err(StoreError::from)?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let hits = rows
        .into_iter()
        .map(|r| Ok(SearchHit { message: Message::try_from(r.message)?, snippet: r.snippet, score: r.score }))
        .collect::<Result<Vec<_>, StoreError>>()?;
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
