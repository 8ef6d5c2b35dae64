//! Writing a closed batch, in one transaction: the inbox entries and webhook
//! deliveries (under keys that make doing it twice write nothing twice), and the
//! deletion of the batch's windows. Large batches are written a bounded number of
//! rows per statement.

use std::collections::BTreeSet;

use anyhow::Context as _;
use chat_domain::ids::{DeliveryId, TenantId, UserId};
use chat_domain::proto::store::RoomRef;
use chat_pg::prepared;
use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Jsonb, Text, Timestamptz};
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::Value;

use crate::State;
use crate::offline::close::window::Window;
use crate::offline::settings::Settings;

/// Most rows one insert statement writes (a batch may hold several statements' worth:
/// a window of a large room has an entry per member who missed something).
const ROWS_PER_STATEMENT: usize = 2_000;

/// One new inbox entry, and its webhook when the tenant has one.
pub(super) struct NewEntry<'a> {
    pub(super) room: &'a RoomRef,
    pub(super) user: UserId,
    pub(super) key: String,
    pub(super) at: DateTime<Utc>,
    pub(super) inbox: Value,
    pub(super) webhook: Value,
}

/// Writes a batch's entries and deliveries and deletes its windows, in one
/// transaction; returns the deliveries to queue.
pub(super) async fn write(
    state: &State,
    settings: &Settings,
    windows: &[Window],
    entries: &[NewEntry<'_>],
    hooked: &BTreeSet<TenantId>,
) -> anyhow::Result<Vec<DeliveryId>> {
    let tenants: Vec<&str> = entries.iter().map(|e| e.room.tenant_id.as_str()).collect();
    let users: Vec<&str> = entries.iter().map(|e| e.user.as_str()).collect();
    let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    let bodies: Vec<&Value> = entries.iter().map(|e| &e.inbox).collect();
    let times: Vec<DateTime<Utc>> = entries.iter().map(|e| e.at).collect();
    let hooks: Vec<&NewEntry> = entries.iter().filter(|e| hooked.contains(&e.room.tenant_id)).collect();
    let hook_ids: Vec<String> = hooks.iter().map(|_| DeliveryId::generate().to_string()).collect();
    let hook_tenants: Vec<&str> = hooks.iter().map(|e| e.room.tenant_id.as_str()).collect();
    let hook_keys: Vec<&str> = hooks.iter().map(|e| e.key.as_str()).collect();
    let hook_users: Vec<&str> = hooks.iter().map(|e| e.user.as_str()).collect();
    let hook_rooms: Vec<&str> = hooks.iter().map(|e| e.room.room_id.as_str()).collect();
    let hook_bodies: Vec<&Value> = hooks.iter().map(|e| &e.webhook).collect();
    let w_tenants: Vec<&str> = windows.iter().map(|w| w.room.tenant_id.as_str()).collect();
    let w_rooms: Vec<&str> = windows.iter().map(|w| w.room.room_id.as_str()).collect();
    let w_starts: Vec<DateTime<Utc>> = windows.iter().map(|w| w.start).collect();
    let w_firsts: Vec<i64> = windows.iter().map(|w| w.first_seq).collect();
    let w_lasts: Vec<i64> = windows.iter().map(|w| w.last_seq).collect();

    #[derive(QueryableByName)]
    struct Recorded {
        #[diesel(sql_type = Text)]
        id: String,
    }
    let mut conn = state.pool.get().await.context("database")?;
    let recorded: Vec<Recorded> = conn
        .transaction(async |conn| -> anyhow::Result<Vec<Recorded>> {
            for r in chunks(users.len()) {
                prepared(
                    diesel::sql_query(
                        "INSERT INTO notification.inbox (tenant_id, user_id, item_id, kind, body, created_at)
                         SELECT t, u, k, 'message', b, c
                         FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::timestamptz[])
                             AS x (t, u, k, b, c)
                         ON CONFLICT DO NOTHING",
                    )
                    .bind::<Array<Text>, _>(&tenants[r.clone()])
                    .bind::<Array<Text>, _>(&users[r.clone()])
                    .bind::<Array<Text>, _>(&keys[r.clone()])
                    .bind::<Array<Jsonb>, _>(&bodies[r.clone()])
                    .bind::<Array<Timestamptz>, _>(&times[r]),
                )
                .execute(conn)
                .await
                .context("writing offline inbox entries")?;
            }
            let mut recorded = Vec::new();
            for r in chunks(hook_ids.len()) {
                let some: Vec<Recorded> = prepared(
                    diesel::sql_query(
                        "INSERT INTO notification.deliveries (id, tenant_id, kind, ref_id, user_id, room_id, body, queued)
                         SELECT i, t, 'message', k, u, r, b, false
                         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[])
                             AS x (i, t, k, u, r, b)
                         ON CONFLICT DO NOTHING
                         RETURNING id",
                    )
                    .bind::<Array<Text>, _>(&hook_ids[r.clone()])
                    .bind::<Array<Text>, _>(&hook_tenants[r.clone()])
                    .bind::<Array<Text>, _>(&hook_keys[r.clone()])
                    .bind::<Array<Text>, _>(&hook_users[r.clone()])
                    .bind::<Array<Text>, _>(&hook_rooms[r.clone()])
                    .bind::<Array<Jsonb>, _>(&hook_bodies[r]),
                )
                .load(conn)
                .await
                .context("recording offline webhook deliveries")?;
                recorded.extend(some);
            }
            prepared(diesel::sql_query(
                "DELETE FROM notification.offline_windows w
                 USING unnest($2::text[], $3::text[], $4::timestamptz[], $5::bigint[], $6::bigint[]) AS d (t, r, s, f, l)
                 WHERE w.follower = $1 AND w.tenant_id = d.t AND w.room_id = d.r AND w.window_start = d.s
                   AND w.first_seq = d.f AND w.last_seq = d.l",
            )
            .bind::<Text, _>(&settings.follower)
            .bind::<Array<Text>, _>(&w_tenants)
            .bind::<Array<Text>, _>(&w_rooms)
            .bind::<Array<Timestamptz>, _>(&w_starts)
            .bind::<Array<BigInt>, _>(&w_firsts)
            .bind::<Array<BigInt>, _>(&w_lasts))
            .execute(conn)
            .await
            .context("deleting closed offline windows")?;
            Ok(recorded)
        })
        .await?;
    recorded.into_iter().map(|r| DeliveryId::parse(r.id).context("recorded delivery id")).collect()
}

/// `0..n` in ranges of at most [`ROWS_PER_STATEMENT`].
fn chunks(n: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    (0..n).step_by(ROWS_PER_STATEMENT).map(move |start| start..n.min(start + ROWS_PER_STATEMENT))
}
