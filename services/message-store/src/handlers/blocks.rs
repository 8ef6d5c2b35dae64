//! `block_user`, `unblock_user`, `list_blocks` (migration 0050: `user_blocks`). The
//! block itself is enforced where DMs are made (`rooms::create_room`,
//! `chats::create_chat`, through [`blocked_by`]) and in the send statement
//! (`send_batch.rs`); `hide_in_groups` in history reads ([`hidden_senders`]). Every
//! change is a `block.changed` user event (through the outbox) to the blocker's
//! sessions, whose gateways hide the blocked user's typing, presence and (with
//! `hide_in_groups`) messages from them.

use chat_domain::ApiError;
use chat_domain::ids::EventId;
use chat_domain::ids::{TenantId, UserId};
use chat_domain::proto::blocks::{
    BLOCKED_MESSAGE, Block, BlockChanged, BlockList, BlockUser, ListBlocks, UnblockUser, Unblocked,
};
use chat_domain::proto::events::{UserEvent, UserEventBody};
use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Bool, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};

use super::Store;
use crate::error::{StoreError, stored};
use crate::outbox;

/// A condition on a `messages` row leaving out the senders the reader (`$T` tenant,
/// `$U` user, the placeholders given) hides: their blocks with `hide_in_groups`. The
/// set is read once per statement (an `InitPlan` on the primary key's prefix); with no
/// such block it is an empty array and the condition is true.
pub(super) fn hidden_senders(tenant: &str, user: &str) -> String {
    format!(
        "sender_id <> ALL(ARRAY(SELECT blocked_id FROM user_blocks
                                WHERE tenant_id = {tenant} AND blocker_id = {user} AND hide_in_groups))"
    )
}

/// Most blocks one user can hold (`GET /blocks` returns them all).
pub const MAX_BLOCKS: i64 = 1_000;

#[derive(QueryableByName)]
struct BlockRow {
    #[diesel(sql_type = Text)]
    blocked_id: String,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Bool)]
    hide_in_groups: bool,
}

impl TryFrom<BlockRow> for Block {
    type Error = StoreError;
    fn try_from(row: BlockRow) -> Result<Self, StoreError> {
        Ok(Block {
            user_id: stored(UserId::parse(row.blocked_id))?,
            created_at: row.created_at,
            hide_in_groups: row.hide_in_groups,
        })
    }
}

/// The `block.changed` event to the blocker's sessions.
fn changed(cmd_actor: &chat_domain::model::Actor, blocked_id: &UserId, blocked: bool, hide: bool) -> UserEvent {
    UserEvent {
        event_id: EventId::generate(),
        tenant_id: cmd_actor.tenant_id.clone(),
        user_id: cmd_actor.user_id.clone(),
        occurred_at: chat_domain::time::now(),
        body: UserEventBody::BlockChanged(BlockChanged {
            blocked_id: blocked_id.clone(),
            blocked,
            hide_in_groups: blocked && hide,
        }),
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
    let subjects = store.subjects().clone();
    let (row, pending) = conn
        .transaction(async move |conn| -> Result<(BlockRow, outbox::Pending), StoreError> {
            let row: BlockRow = diesel::sql_query(
                "INSERT INTO user_blocks (tenant_id, blocker_id, blocked_id, hide_in_groups)
                 VALUES ($1, $2, $3, coalesce($4, false))
                 ON CONFLICT (tenant_id, blocker_id, blocked_id)
                 DO UPDATE SET hide_in_groups = coalesce($4, user_blocks.hide_in_groups)
                 RETURNING blocked_id, created_at, hide_in_groups",
            )
            .bind::<Text, _>(cmd.actor.tenant_id.as_str())
            .bind::<Text, _>(cmd.actor.user_id.as_str())
            .bind::<Text, _>(cmd.user_id.as_str())
            .bind::<Nullable<Bool>, _>(cmd.hide_in_groups)
            .get_result(conn)
            .await?;
            let event = changed(&cmd.actor, &cmd.user_id, true, row.hide_in_groups);
            let pending = outbox::insert_user(conn, &subjects, &event).await?;
            Ok((row, pending))
        })
        .await?;
    db.publisher.submit(vec![pending]);
    Ok(Block::try_from(row)?)
}

pub async fn unblock_user(store: Store, cmd: UnblockUser) -> Result<Unblocked, ApiError> {
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let subjects = store.subjects().clone();
    let (n, pending) = conn
        .transaction(async move |conn| -> Result<(usize, Option<outbox::Pending>), StoreError> {
            let n = diesel::sql_query(
                "DELETE FROM user_blocks WHERE tenant_id = $1 AND blocker_id = $2 AND blocked_id = $3",
            )
            .bind::<Text, _>(cmd.actor.tenant_id.as_str())
            .bind::<Text, _>(cmd.actor.user_id.as_str())
            .bind::<Text, _>(cmd.user_id.as_str())
            .execute(conn)
            .await?;
            let pending = match n {
                0 => None,
                _ => {
                    Some(outbox::insert_user(conn, &subjects, &changed(&cmd.actor, &cmd.user_id, false, false)).await?)
                }
            };
            Ok((n, pending))
        })
        .await?;
    db.publisher.submit(pending.into_iter().collect());
    Ok(Unblocked { removed: n > 0 })
}

pub async fn list_blocks(store: Store, cmd: ListBlocks) -> Result<BlockList, ApiError> {
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let rows: Vec<BlockRow> = diesel::sql_query(
        "SELECT blocked_id, created_at, hide_in_groups FROM user_blocks WHERE tenant_id = $1 AND blocker_id = $2
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
