//! Following the message log: `message_feed` pages, summarized per room and window,
//! folded into `offline_windows` together with the cursor move.
//!
//! The cursor row is written only when a page added something, or at most every
//! [`IDLE_SAVE`] otherwise: the feed's position moves with every transaction in the
//! database (including this one), so saving it on every empty poll would itself be a
//! write per poll forever. Replaying pages that added nothing costs nothing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chat_bus::Bus;
use chat_domain::ids::{RoomId, TenantId};
use chat_domain::proto::store::MessageFeed;
use chat_pg::{PgPool, prepared};
use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Text, Timestamptz};
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::Settings;
use crate::State;

/// Most messages one page summarizes.
const PAGE: u32 = 5_000;
/// Longest a cursor move that added no window waits to be saved.
const IDLE_SAVE: Duration = Duration::from_secs(10);

#[derive(QueryableByName)]
struct CursorRow {
    #[diesel(sql_type = BigInt)]
    after_tx: i64,
}

async fn read_cursor(pool: &PgPool, follower: &str) -> anyhow::Result<Option<i64>> {
    let mut conn = pool.get().await.context("database")?;
    let rows: Vec<CursorRow> = prepared(
        diesel::sql_query("SELECT after_tx FROM notification.offline_cursor WHERE follower = $1")
            .bind::<Text, _>(follower),
    )
    .load(&mut conn)
    .await
    .context("reading the offline cursor")?;
    Ok(rows.into_iter().next().map(|r| r.after_tx))
}

/// Fixes where the pass starts when this deployment has never run it: the present (the
/// log before it is not notified about). Called when the service is built, so that
/// messages sent once it has started are never skipped; the pass calls it too when the
/// first attempt could not reach message-store.
pub async fn start_point(bus: &Bus, pool: &PgPool, follower: &str, window: Duration) -> anyhow::Result<()> {
    if read_cursor(pool, follower).await?.is_some() {
        return Ok(());
    }
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
    let present = bus
        .request(&MessageFeed { after: None, limit: 1, window_ms })
        .await
        .context("asking message-store where the log ends")?;
    let mut conn = pool.get().await.context("database")?;
    diesel::sql_query(
        "INSERT INTO notification.offline_cursor (follower, after_tx) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind::<Text, _>(follower)
    .bind::<BigInt, _>(present.next)
    .execute(&mut conn)
    .await
    .context("saving the offline cursor")?;
    tracing::info!(follower, after_tx = present.next, "offline pass starts at the present");
    Ok(())
}

/// The pass's position in the log.
pub struct Follower {
    /// Where the next page starts.
    after: i64,
    /// What the cursor row says.
    saved: i64,
    saved_at: Instant,
}

/// What one page did.
pub struct Page {
    /// More of the log is waiting: read again at once.
    pub more: bool,
    /// The earliest end of the windows this page touched.
    pub earliest_end: Option<DateTime<Utc>>,
}

impl Follower {
    /// The saved position (fixing it at the present on the very first start).
    pub async fn load(state: &State, settings: &Settings) -> anyhow::Result<Self> {
        start_point(&state.bus, &state.pool, &settings.follower, settings.window).await?;
        let after = read_cursor(&state.pool, &settings.follower).await?.context("the offline cursor vanished")?;
        Ok(Self { after, saved: after, saved_at: Instant::now() })
    }

    /// Reads one page and folds it into the open windows.
    pub async fn step(&mut self, state: &State, settings: &Settings) -> anyhow::Result<Page> {
        let window_ms = u64::try_from(settings.window.as_millis()).unwrap_or(u64::MAX).max(1);
        let page = state
            .bus
            .request(&MessageFeed { after: Some(self.after), limit: PAGE, window_ms })
            .await
            .context("reading the message feed")?;
        let window = chrono::TimeDelta::from_std(settings.window).context("window length")?;
        // One row per room and window (a page has each once; merged all the same, as a
        // statement may not update a row twice).
        let mut windows: BTreeMap<(TenantId, RoomId, DateTime<Utc>), (i64, i64)> = BTreeMap::new();
        for w in page.windows.into_iter().filter(|w| settings.follows(&w.tenant_id)) {
            let seqs = windows.entry((w.tenant_id, w.room_id, w.window_start)).or_insert((w.first_seq, w.last_seq));
            *seqs = (seqs.0.min(w.first_seq), seqs.1.max(w.last_seq));
        }
        let earliest_end = windows.keys().map(|k| k.2 + window).min();
        let save = !windows.is_empty() || (page.next != self.saved && self.saved_at.elapsed() >= IDLE_SAVE);
        if save {
            self.save(state, settings, page.next, &windows, window).await?;
        }
        self.after = page.next;
        Ok(Page { more: page.more, earliest_end })
    }

    /// Moves the cursor from `saved` to `next` and adds `windows`, in one transaction.
    async fn save(
        &mut self,
        state: &State,
        settings: &Settings,
        next: i64,
        windows: &BTreeMap<(TenantId, RoomId, DateTime<Utc>), (i64, i64)>,
        window: chrono::TimeDelta,
    ) -> anyhow::Result<()> {
        let tenants: Vec<&str> = windows.keys().map(|k| k.0.as_str()).collect();
        let rooms: Vec<&str> = windows.keys().map(|k| k.1.as_str()).collect();
        let starts: Vec<DateTime<Utc>> = windows.keys().map(|k| k.2).collect();
        let ends: Vec<DateTime<Utc>> = starts.iter().map(|s| *s + window).collect();
        let firsts: Vec<i64> = windows.values().map(|v| v.0).collect();
        let lasts: Vec<i64> = windows.values().map(|v| v.1).collect();
        let (follower, saved) = (settings.follower.as_str(), self.saved);
        let mut conn = state.pool.get().await.context("database")?;
        conn.transaction(async |conn| -> anyhow::Result<()> {
            let moved = prepared(
                diesel::sql_query(
                    "UPDATE notification.offline_cursor SET after_tx = $3, updated_at = now()
                 WHERE follower = $1 AND after_tx = $2",
                )
                .bind::<Text, _>(follower)
                .bind::<BigInt, _>(saved)
                .bind::<BigInt, _>(next),
            )
            .execute(conn)
            .await
            .context("moving the offline cursor")?;
            if moved != 1 {
                bail!("the offline cursor was moved by someone else (two passes at once?)");
            }
            if tenants.is_empty() {
                return Ok(());
            }
            prepared(
                diesel::sql_query(
                    "INSERT INTO notification.offline_windows AS w
                     (follower, tenant_id, room_id, window_start, window_end, first_seq, last_seq)
                 SELECT $1, t, r, s, e, f, l
                 FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::bigint[], $7::bigint[])
                     AS x (t, r, s, e, f, l)
                 ON CONFLICT (follower, tenant_id, room_id, window_start) DO UPDATE SET
                     first_seq = LEAST(w.first_seq, EXCLUDED.first_seq),
                     last_seq = GREATEST(w.last_seq, EXCLUDED.last_seq)",
                )
                .bind::<Text, _>(follower)
                .bind::<Array<Text>, _>(&tenants)
                .bind::<Array<Text>, _>(&rooms)
                .bind::<Array<Timestamptz>, _>(&starts)
                .bind::<Array<Timestamptz>, _>(&ends)
                .bind::<Array<BigInt>, _>(&firsts)
                .bind::<Array<BigInt>, _>(&lasts),
            )
            .execute(conn)
            .await
            .context("adding to the offline windows")?;
            Ok(())
        })
        .await?;
        self.saved = next;
        self.saved_at = Instant::now();
        Ok(())
    }
}
