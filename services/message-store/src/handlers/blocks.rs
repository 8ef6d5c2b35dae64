//! `block_user`, `unblock_user`, `list_blocks` (migration 0050: `user_blocks`). The
//! block itself is enforced where DMs are made (`rooms::create_room`,
//! `chats::create_chat`, through [`blocked_by`]) and in the send statement
//! (`send_batch.rs`).

use chat_domain::ApiError;
use chat_domain::ids::{TenantId, UserId};
use chat_domain::proto::blocks::{BLOCKED_MESSAGE, Block, BlockList, BlockUser, ListBlocks, UnblockUser, Unblocked};
use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::Store;
use crate::error::{StoreError, stored};

/// Most blocks one user can hold (`GET /blocks` returns them all).
pub const MAX_BLOCKS: i64 = 1_000;

#[derive(QueryableByName)]
struct BlockRow {
    #[diesel(sql_type = Text)]
    blocked_id: String,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

impl TryFrom<BlockRow> for Block {
    type Error = StoreError;
    fn try_from(row: BlockRow) -> Result<Self, StoreError> {
        Ok(Block { user_id: stored(UserId::parse(row.blocked_id))?, created_at: row.created_at })
    }
}

pub async fn block_user(store: Store, cmd: BlockUser) -> Result<Block, ApiError> {
    if cmd.user_id == cmd.actor.user_id {
        return Err(ApiError::validation("user_id", "You cannot block yourself"));
    }
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let (t, u) = (cmd.actor.tenant_id.as_str(), cmd.actor.user_id.as_str());
    // Kept under the limit by counting first; a race past it by a few rows is harmless.
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let Count { n } = diesel::sql_query(
        "SELECT count(*) AS n FROM user_blocks WHERE tenant_id = $1 AND blocker_id = $2 AND blocked_id <> $3",
    )
    .bind::<Text, _>(t)
    .bind::<Text, _>(u)
    .bind::<Text, _>(cmd.user_id.as_str())
    .get_result(&mut conn)
    .await
    .map_err(StoreError::from)?;
    if n >= MAX_BLOCKS {
        return Err(ApiError::validation("user_id", format!("You can block at most {MAX_BLOCKS} users")));
    }
    let row: BlockRow = diesel::sql_query(
        "WITH ins AS (
             INSERT INTO user_blocks (tenant_id, blocker_id, blocked_id) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING RETURNING blocked_id, created_at
         )
         SELECT blocked_id, created_at FROM ins
         UNION ALL
         SELECT blocked_id, created_at FROM user_blocks
         WHERE tenant_id = $1 AND blocker_id = $2 AND blocked_id = $3
         LIMIT 1",
    )
    .bind::<Text, _>(t)
    .bind::<Text, _>(u)
    .bind::<Text, _>(cmd.user_id.as_str())
    .get_result(&mut conn)
    .await
    .map_err(StoreError::from)?;
    Ok(Block::try_from(row)?)
}

pub async fn unblock_user(store: Store, cmd: UnblockUser) -> Result<Unblocked, ApiError> {
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let n = diesel::sql_query("DELETE FROM user_blocks WHERE tenant_id = $1 AND blocker_id = $2 AND blocked_id = $3")
        .bind::<Text, _>(cmd.actor.tenant_id.as_str())
        .bind::<Text, _>(cmd.actor.user_id.as_str())
        .bind::<Text, _>(cmd.user_id.as_str())
        .execute(&mut conn)
        .await
        .map_err(StoreError::from)?;
    Ok(Unblocked { removed: n > 0 })
}

pub async fn list_blocks(store: Store, cmd: ListBlocks) -> Result<BlockList, ApiError> {
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let rows: Vec<BlockRow> = diesel::sql_query(
        "SELECT blocked_id, created_at FROM user_blocks WHERE tenant_id = $1 AND blocker_id = $2
         ORDER BY created_at DESC, blocked_id LIMIT $3",
    )
    .bind::<Text, _>(cmd.actor.tenant_id.as_str())
    .bind::<Text, _>(cmd.actor.user_id.as_str())
    .bind::<diesel::sql_types::BigInt, _>(MAX_BLOCKS)
    .load(&mut conn)
    .await
    .map_err(StoreError::from)?;
    Ok(BlockList { blocks: rows.into_iter().map(Block::try_from).collect::<Result<_, _>>()? })
}

/// `FORBIDDEN` when `other` blocks `user` (a DM between them cannot be made).
pub(super) async fn blocked_by(
    conn: &mut AsyncPgConnection,
    tenant: &TenantId,
    user: &UserId,
    other: &UserId,
) -> Result<(), StoreError> {
    #[derive(QueryableByName)]
    struct Hit {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        #[allow(dead_code)]
        one: i32,
    }
    let hit: Vec<Hit> = diesel::sql_query(
        "SELECT 1 AS one FROM user_blocks WHERE tenant_id = $1 AND blocker_id = $2 AND blocked_id = $3",
    )
    .bind::<Text, _>(tenant.as_str())
    .bind::<Text, _>(other.as_str())
    .bind::<Text, _>(user.as_str())
    .load(conn)
    .await?;
    if hit.is_empty() { Ok(()) } else { Err(ApiError::forbidden(BLOCKED_MESSAGE).into()) }
}
