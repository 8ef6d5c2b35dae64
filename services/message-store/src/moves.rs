//! Moving a tenant to another PostgreSQL cluster (`move_tenant`, `chatctl tenant move`),
//! losing nothing: every room, member, cursor, user and message arrives with the same
//! ids and `seq`s, and no write can land on the old cluster afterwards.
//!
//! 1. The directory (home cluster) flags the tenant `moving_to`; a `tenant.changed`
//!    event drops every replica's cached placement, and the move then waits twice
//!    [`PLACEMENT_TTL`], so every replica refuses the tenant's commands
//!    (`SERVICE_UNAVAILABLE`, which gateways' callers retry) before anything is copied.
//! 2. On the old cluster, one transaction: lock the tenant's `tenant_residency` row
//!    (new rooms and users for it now wait), lock its rooms (sends, new members and new
//!    cursors wait), take its rows away with `DELETE … RETURNING` — the latest committed
//!    version of each, whatever was still being written — room by room, a page of
//!    messages at a time, and last delete the residency row itself: whatever waited
//!    then fails its reference instead of writing where nobody will look.
//! 3. On the new cluster, one transaction open alongside: remove what an earlier,
//!    failed attempt left there, then insert everything as it was read. Messages get
//!    the new cluster's transaction id as their `tx`, so the new cluster's message log
//!    (which the offline-notification pass follows) includes them; notifications are
//!    keyed so that summarizing them again writes nothing twice.
//! 4. Commit the new cluster, then the old one, then record the new placement.
//!
//! A failure before the old cluster commits leaves the tenant where it was (the flag is
//! cleared; the copy on the new cluster is removed by the next attempt). If the old
//! cluster's commit has an unknown outcome, the residency row tells which way it went
//! and the move is finished or undone accordingly; if even that cannot be read, the
//! tenant stays flagged (unavailable) until the operator runs the move again, which
//! then finishes it.

use std::time::Instant;

use chat_domain::ApiError;
use chat_domain::ids::TenantId;
use chat_domain::proto::store::TenantMoved;
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, TransactionManager};

use crate::clusters::PLACEMENT_TTL;
use crate::error::StoreError;
use crate::store::{Db, Store, reside};

/// Messages taken from the old cluster per statement.
const MESSAGE_PAGE: i64 = 5_000;

type Tm = <AsyncPgConnection as AsyncConnection>::TransactionManager;

#[derive(QueryableByName)]
struct JsonRow {
    #[diesel(sql_type = Text)]
    row: String,
}

#[derive(QueryableByName)]
struct RoomKey {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = BigInt)]
    last_seq: i64,
}

/// Moves `tenant` to cluster `to` (see the module documentation).
pub async fn move_tenant(store: &Store, tenant: &TenantId, to: &str) -> Result<TenantMoved, ApiError> {
    let target = store.0.dbs.get(to).cloned().ok_or_else(|| {
        let mut e = ApiError::not_found(format!("no database cluster named {to:?}"));
        e.field = Some("to".to_owned());
        e
    })?;
    let (from, moving_to) = placement(store, tenant).await?;
    if let Some(other) = moving_to.as_deref().filter(|m| *m != to) {
        return Err(ApiError::conflict(format!(
            "tenant {tenant} has an unfinished move to cluster {other}: run that move again first"
        )));
    }
    if from == to {
        return Err(ApiError::conflict(format!("tenant {tenant} is already on cluster {to}")));
    }
    let source = store.0.dbs.get(&from).cloned().ok_or_else(|| {
        ApiError::unavailable(format!("tenant {tenant} is on cluster {from}, which this message-store does not know"))
    })?;
    flag(store, tenant, &from, Some(to)).await?;
    let flagged = Instant::now();
    tracing::info!(%tenant, from = %from, to, "moving a tenant: its commands are refused until it is done");
    tokio::time::sleep(PLACEMENT_TTL * 2).await;
    let copied = copy(&source, &target, tenant).await;
    let counts = match copied {
        Ok(counts) => counts,
        Err(Failure::Before(e)) => {
            // Nothing changed on the old cluster: the tenant stays there.
            let _ = flag(store, tenant, &from, None).await;
            return Err(e.into());
        }
        Err(Failure::OldCommit(e)) => match resident(&source, tenant).await {
            Ok(true) => {
                let _ = flag(store, tenant, &from, None).await;
                return Err(e.into());
            }
            Ok(false) => Counts::default(),
            Err(_) => {
                tracing::error!(%tenant, error = %e, "the old cluster's commit has an unknown outcome; the tenant stays flagged");
                return Err(ApiError::unavailable(format!(
                    "moving tenant {tenant}: cluster {from} did not confirm the end of the copy; run the move again"
                )));
            }
        },
    };
    finish(store, tenant, to).await?;
    let moved = TenantMoved {
        tenant_id: tenant.clone(),
        from,
        to: to.to_owned(),
        rooms: counts.rooms,
        members: counts.members,
        messages: counts.messages,
        cursors: counts.cursors,
        users: counts.users,
        unavailable_ms: u64::try_from(flagged.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    tracing::info!(?moved, "tenant moved");
    Ok(moved)
}

/// The tenant's cluster and unfinished move, from the directory (not its cache).
async fn placement(store: &Store, tenant: &TenantId) -> Result<(String, Option<String>), ApiError> {
    let placed = store.0.directory.lookup(tenant).await?.ok_or_else(|| ApiError::not_found("Tenant not found"))?;
    Ok((placed.cluster, placed.moving_to))
}

/// Sets (or clears) the moving flag and tells every replica.
async fn flag(store: &Store, tenant: &TenantId, from: &str, to: Option<&str>) -> Result<(), ApiError> {
    let mut conn = store.home().pool.get().await.map_err(StoreError::from)?;
    let n = diesel::sql_query("UPDATE tenants SET moving_to = $3 WHERE id = $1 AND cluster = $2")
        .bind::<Text, _>(tenant.as_str())
        .bind::<Text, _>(from)
        .bind::<Nullable<Text>, _>(to)
        .execute(&mut conn)
        .await
        .map_err(StoreError::from)?;
    if n == 0 {
        return Err(ApiError::conflict(format!("tenant {tenant} changed cluster during the move")));
    }
    drop(conn);
    store.tenant_changed(tenant).await;
    Ok(())
}

/// Records the new placement and tells every replica.
async fn finish(store: &Store, tenant: &TenantId, to: &str) -> Result<(), ApiError> {
    let mut conn = store.home().pool.get().await.map_err(StoreError::from)?;
    diesel::sql_query("UPDATE tenants SET cluster = $2, moving_to = NULL, updated_at = now() WHERE id = $1")
        .bind::<Text, _>(tenant.as_str())
        .bind::<Text, _>(to)
        .execute(&mut conn)
        .await
        .map_err(StoreError::from)?;
    drop(conn);
    store.tenant_changed(tenant).await;
    Ok(())
}

/// Whether `db` holds the tenant's rows.
async fn resident(db: &Db, tenant: &TenantId) -> Result<bool, StoreError> {
    #[derive(QueryableByName)]
    struct Found {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        found: bool,
    }
    let mut conn = db.pool.get().await?;
    let f: Found = diesel::sql_query("SELECT EXISTS (SELECT 1 FROM tenant_residency WHERE tenant_id = $1) AS found")
        .bind::<Text, _>(tenant.as_str())
        .get_result(&mut conn)
        .await?;
    Ok(f.found)
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    rooms: u64,
    members: u64,
    messages: u64,
    cursors: u64,
    users: u64,
}

/// Where a copy failed: before the old cluster's commit (nothing changed there), or at
/// that commit (outcome unknown).
enum Failure {
    Before(StoreError),
    OldCommit(StoreError),
}

/// Steps 2 to 4 of the module documentation, on one connection to each cluster.
async fn copy(source: &Db, target: &Db, tenant: &TenantId) -> Result<Counts, Failure> {
    let mut s = source.pool.get().await.map_err(|e| Failure::Before(e.into()))?;
    let mut d = target.pool.get().await.map_err(|e| Failure::Before(e.into()))?;
    Tm::begin_transaction(&mut *s).await.map_err(|e| Failure::Before(e.into()))?;
    if let Err(e) = Tm::begin_transaction(&mut *d).await {
        let _ = Tm::rollback_transaction(&mut *s).await;
        return Err(Failure::Before(e.into()));
    }
    match copy_rows(&mut s, &mut d, tenant).await {
        Ok(Some(counts)) => {
            if let Err(e) = Tm::commit_transaction(&mut *d).await {
                let _ = Tm::rollback_transaction(&mut *s).await;
                return Err(Failure::Before(e.into()));
            }
            Tm::commit_transaction(&mut *s).await.map_err(|e| Failure::OldCommit(e.into()))?;
            Ok(counts)
        }
        // The old cluster does not hold the tenant: an earlier attempt copied it and
        // committed there, and only the directory was not updated.
        Ok(None) => {
            let _ = Tm::rollback_transaction(&mut *d).await;
            let _ = Tm::rollback_transaction(&mut *s).await;
            match resident(target, tenant).await {
                Ok(true) => Ok(Counts::default()),
                Ok(false) => Err(Failure::Before(StoreError::Corrupt(format!(
                    "tenant {tenant} is on neither cluster {} nor {}",
                    source.name, target.name
                )))),
                Err(e) => Err(Failure::Before(e)),
            }
        }
        Err(e) => {
            let _ = Tm::rollback_transaction(&mut *d).await;
            let _ = Tm::rollback_transaction(&mut *s).await;
            Err(Failure::Before(e))
        }
    }
}

/// Inside the two open transactions: takes the tenant's rows from `s` and inserts them
/// into `d`. `None` when `s` does not hold the tenant.
async fn copy_rows(
    s: &mut AsyncPgConnection,
    d: &mut AsyncPgConnection,
    tenant: &TenantId,
) -> Result<Option<Counts>, StoreError> {
    let t = tenant.as_str();
    // The residency row, locked: new rooms and users of the tenant (whose reference to it
    // takes a share lock) wait until this commits, then fail, the row being gone.
    let held: Vec<JsonRow> =
        diesel::sql_query("SELECT tenant_id AS row FROM tenant_residency WHERE tenant_id = $1 FOR UPDATE")
            .bind::<Text, _>(t)
            .load(s)
            .await?;
    if held.is_empty() {
        return Ok(None);
    }
    // What an earlier attempt may have left on the new cluster.
    for sql in [
        "DELETE FROM messages WHERE room_id IN (SELECT id FROM rooms WHERE tenant_id = $1)",
        "DELETE FROM room_cursors WHERE room_id IN (SELECT id FROM rooms WHERE tenant_id = $1)",
        "DELETE FROM room_members WHERE room_id IN (SELECT id FROM rooms WHERE tenant_id = $1)",
        "DELETE FROM room_departures WHERE tenant_id = $1",
        "DELETE FROM user_blocks WHERE tenant_id = $1",
        "DELETE FROM message_reactions WHERE tenant_id = $1",
        "DELETE FROM message_pins WHERE tenant_id = $1",
        "DELETE FROM thread_reads WHERE tenant_id = $1",
        "DELETE FROM room_bans WHERE tenant_id = $1",
        "DELETE FROM room_mutes WHERE tenant_id = $1",
        "DELETE FROM room_slow_sends WHERE tenant_id = $1",
        "DELETE FROM message_flags WHERE tenant_id = $1",
        "DELETE FROM moderation_log WHERE tenant_id = $1",
        "DELETE FROM rooms WHERE tenant_id = $1",
        "DELETE FROM users WHERE tenant_id = $1",
        "DELETE FROM tenant_residency WHERE tenant_id = $1",
    ] {
        diesel::sql_query(sql).bind::<Text, _>(t).execute(d).await?;
    }
    reside(d, tenant).await?;
    // The search language goes along (before the messages, whose words it splits).
    let lang: Vec<JsonRow> =
        diesel::sql_query("SELECT search_lang::text AS row FROM tenant_residency WHERE tenant_id = $1")
            .bind::<Text, _>(t)
            .load(s)
            .await?;
    if let Some(lang) = lang.into_iter().next() {
        diesel::sql_query("UPDATE tenant_residency SET search_lang = $2::regconfig WHERE tenant_id = $1")
            .bind::<Text, _>(t)
            .bind::<Text, _>(&lang.row)
            .execute(d)
            .await?;
    }
    let mut counts = Counts::default();

    // Rooms, locked: nothing adds a message, member or cursor to them from here on.
    let rooms: Vec<RoomKey> =
        diesel::sql_query("SELECT id, last_seq FROM rooms WHERE tenant_id = $1 ORDER BY id FOR UPDATE")
            .bind::<Text, _>(t)
            .load(s)
            .await?;
    let room_rows: Vec<JsonRow> =
        diesel::sql_query("SELECT to_jsonb(r.*)::text AS row FROM rooms r WHERE r.tenant_id = $1 ORDER BY r.id")
            .bind::<Text, _>(t)
            .load(s)
            .await?;
    counts.rooms = insert(d, "rooms", &room_rows).await?;
    let users: Vec<JsonRow> =
        diesel::sql_query("DELETE FROM users u WHERE u.tenant_id = $1 RETURNING to_jsonb(u.*)::text AS row")
            .bind::<Text, _>(t)
            .load(s)
            .await?;
    counts.users = insert(d, "users", &users).await?;
    // Who blocks whom (the send statement and DM creation read them on the new cluster).
    let blocks: Vec<JsonRow> =
        diesel::sql_query("DELETE FROM user_blocks b WHERE b.tenant_id = $1 RETURNING to_jsonb(b.*)::text AS row")
            .bind::<Text, _>(t)
            .load(s)
            .await?;
    insert(d, "user_blocks", &blocks).await?;
    // Reactions and pins (issue 23; the rooms are locked, so none is added meanwhile).
    let reactions: Vec<JsonRow> = diesel::sql_query(
        "DELETE FROM message_reactions x WHERE x.tenant_id = $1 RETURNING to_jsonb(x.*)::text AS row",
    )
    .bind::<Text, _>(t)
    .load(s)
    .await?;
    insert(d, "message_reactions", &reactions).await?;
    let pins: Vec<JsonRow> =
        diesel::sql_query("DELETE FROM message_pins x WHERE x.tenant_id = $1 RETURNING to_jsonb(x.*)::text AS row")
            .bind::<Text, _>(t)
            .load(s)
            .await?;
    insert(d, "message_pins", &pins).await?;
    // Thread read cursors (migration 0070).
    let reads: Vec<JsonRow> =
        diesel::sql_query("DELETE FROM thread_reads x WHERE x.tenant_id = $1 RETURNING to_jsonb(x.*)::text AS row")
            .bind::<Text, _>(t)
            .load(s)
            .await?;
    insert(d, "thread_reads", &reads).await?;
    let ids: Vec<&str> = rooms.iter().map(|r| r.id.as_str()).collect();
    // Who left which room (before the members go: each member deleted below becomes a
    // departure on the old cluster, dropped with its rooms).
    let departures: Vec<JsonRow> = diesel::sql_query(
        "DELETE FROM room_departures x WHERE x.room_id = ANY ($1) RETURNING to_jsonb(x.*)::text AS row",
    )
    .bind::<Array<Text>, _>(&ids)
    .load(s)
    .await?;
    insert(d, "room_departures", &departures).await?;
    let members: Vec<JsonRow> =
        diesel::sql_query("DELETE FROM room_members m WHERE m.room_id = ANY ($1) RETURNING to_jsonb(m.*)::text AS row")
            .bind::<Array<Text>, _>(&ids)
            .load(s)
            .await?;
    counts.members = insert(d, "room_members", &members).await?;
    // The rooms arrived with their member counts and the inserts above counted the
    // members again (migration 0095's trigger): set each from the members it has.
    diesel::sql_query(
        "UPDATE rooms r SET member_count = (SELECT count(*) FROM room_members m WHERE m.room_id = r.id)
         WHERE r.id = ANY ($1)",
    )
    .bind::<Array<Text>, _>(&ids)
    .execute(d)
    .await?;
    // Moderation (migration 0080): bans, mutes, slow-mode rows, flags and the log, after
    // the rooms they reference.
    for table in ["room_bans", "room_mutes", "room_slow_sends", "message_flags", "moderation_log"] {
        let rows: Vec<JsonRow> = diesel::sql_query(format!(
            "DELETE FROM {table} x WHERE x.tenant_id = $1 RETURNING to_jsonb(x.*)::text AS row"
        ))
        .bind::<Text, _>(t)
        .load(s)
        .await?;
        insert(d, table, &rows).await?;
    }
    let cursors: Vec<JsonRow> =
        diesel::sql_query("DELETE FROM room_cursors c WHERE c.room_id = ANY ($1) RETURNING to_jsonb(c.*)::text AS row")
            .bind::<Array<Text>, _>(&ids)
            .load(s)
            .await?;
    counts.cursors = insert(d, "room_cursors", &cursors).await?;
    for room in &rooms {
        let mut after = 0;
        while after < room.last_seq {
            let page: Vec<JsonRow> = diesel::sql_query(
                "DELETE FROM messages m WHERE m.room_id = $1 AND m.seq > $2 AND m.seq <= $3
                 RETURNING to_jsonb(m.*)::text AS row",
            )
            .bind::<Text, _>(&room.id)
            .bind::<BigInt, _>(after)
            .bind::<BigInt, _>(after.saturating_add(MESSAGE_PAGE))
            .load(s)
            .await?;
            counts.messages += insert_messages(d, &page).await?;
            after = after.saturating_add(MESSAGE_PAGE);
        }
        // Anything past last_seq would be a bug elsewhere; take it too rather than lose it.
        let rest: Vec<JsonRow> = diesel::sql_query(
            "DELETE FROM messages m WHERE m.room_id = $1 AND m.seq > $2 RETURNING to_jsonb(m.*)::text AS row",
        )
        .bind::<Text, _>(&room.id)
        .bind::<BigInt, _>(room.last_seq)
        .load(s)
        .await?;
        counts.messages += insert_messages(d, &rest).await?;
    }
    let n = diesel::sql_query("DELETE FROM rooms WHERE tenant_id = $1").bind::<Text, _>(t).execute(s).await?;
    if n as u64 != counts.rooms {
        return Err(StoreError::Corrupt(format!("moving tenant {tenant}: {n} rooms deleted, {} copied", counts.rooms)));
    }
    diesel::sql_query("DELETE FROM tenant_residency WHERE tenant_id = $1").bind::<Text, _>(t).execute(s).await?;
    Ok(Some(counts))
}

/// Inserts rows (as `to_jsonb` gave them) into the same table on the other cluster:
/// both run the same migrations, so the columns match.
async fn insert(d: &mut AsyncPgConnection, table: &'static str, rows: &[JsonRow]) -> Result<u64, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let array = format!("[{}]", rows.iter().map(|r| r.row.as_str()).collect::<Vec<_>>().join(","));
    let n = diesel::sql_query(format!(
        "INSERT INTO {table} SELECT * FROM jsonb_populate_recordset(NULL::{table}, $1::jsonb)"
    ))
    .bind::<Text, _>(array)
    .execute(d)
    .await?;
    Ok(n as u64)
}

/// Inserts messages with this transaction's id as their `tx` (see the module documentation),
/// and without their search vector and keys, which the insert trigger computes again on
/// the new cluster, in the tenant's search language there, as for any row written
/// without them (migration 0100).
async fn insert_messages(d: &mut AsyncPgConnection, rows: &[JsonRow]) -> Result<u64, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let array = format!("[{}]", rows.iter().map(|r| r.row.as_str()).collect::<Vec<_>>().join(","));
    let n = diesel::sql_query(
        "INSERT INTO messages
         SELECT (jsonb_populate_record(NULL::messages, r || jsonb_build_object('tx', pg_current_xact_id()::text::bigint, 'tsv', NULL, 'search_keys', NULL))).*
         FROM jsonb_array_elements($1::jsonb) AS r",
    )
    .bind::<Text, _>(array)
    .execute(d)
    .await?;
    Ok(n as u64)
}
