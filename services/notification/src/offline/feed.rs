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
use chat_domain::ids::{RoomId, TenantId, UserId};
use chat_domain::proto::store::{ListClusters, MessageFeed};
use chat_pg::{PgPool, prepared};
use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Text, Timestamptz};
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::settings::Settings;
use crate::State;

/// A page's part of one window: its seq range, and its one sender if it had one.
struct Span {
    first_seq: i64,
    last_seq: i64,
    sole_sender: Option<UserId>,
}

impl Span {
    fn merge(&mut self, other: &Span) {
        self.first_seq = self.first_seq.min(other.first_seq);
        self.last_seq = self.last_seq.max(other.last_seq);
        if self.sole_sender != other.sole_sender {
            self.sole_sender = None;
        }
    }
}

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

/// The clusters whose logs the pass follows (message-store's `list_clusters`), each
/// with the name of its cursor row: the follower's own name for the home cluster (as
/// before there were several), `<follower>@<cluster>` for the others.
pub async fn logs(bus: &Bus, follower: &str) -> anyhow::Result<Vec<(Option<String>, String)>> {
    let clusters = bus.request(&ListClusters {}).await.context("asking message-store for its clusters")?;
    Ok(clusters
        .into_iter()
        .map(|c| {
            if c.home { (None, follower.to_owned()) } else { (Some(c.name.clone()), format!("{follower}@{}", c.name)) }
        })
        .collect())
}

/// Fixes where the pass starts on each cluster's log it has never followed: the
/// present (the log before it is not notified about). Called when the service is
/// built, so that messages sent once it has started are never skipped; the pass calls
/// it too when the first attempt could not reach message-store, and for a cluster
/// added later.
pub async fn start_point(bus: &Bus, pool: &PgPool, follower: &str, window: Duration) -> anyhow::Result<()> {
    for (cluster, cursor) in logs(bus, follower).await? {
        start_at_present(bus, pool, cluster, &cursor, window).await?;
    }
    Ok(())
}

async fn start_at_present(
    bus: &Bus,
    pool: &PgPool,
    cluster: Option<String>,
    cursor: &str,
    window: Duration,
) -> anyhow::Result<()> {
    if read_cursor(pool, cursor).await?.is_some() {
        return Ok(());
    }
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
    let present = bus
        .request(&MessageFeed { cluster: cluster.clone(), after: None, limit: 1, window_ms })
        .await
        .context("asking message-store where the log ends")?;
    let mut conn = pool.get().await.context("database")?;
    diesel::sql_query(
        "INSERT INTO notification.offline_cursor (follower, after_tx) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind::<Text, _>(cursor)
    .bind::<BigInt, _>(present.next)
    .execute(&mut conn)
    .await
    .context("saving the offline cursor")?;
    tracing::info!(
        cursor,
        cluster = cluster.as_deref().unwrap_or("main"),
        after_tx = present.next,
        "offline pass starts at the present"
    );
    Ok(())
}

/// The pass's position in one cluster's log.
pub struct Follower {
    /// The cluster (`None`: the home cluster).
    cluster: Option<String>,
    /// The name of its cursor row.
    cursor: String,
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
    /// The saved positions in every cluster's log (fixing a cluster's at the present the
    /// first time it is followed).
    pub async fn load_all(state: &State, settings: &Settings) -> anyhow::Result<Vec<Self>> {
        let mut out = Vec::new();
        for (cluster, cursor) in logs(&state.bus, &settings.follower).await? {
            start_at_present(&state.bus, &state.pool, cluster.clone(), &cursor, settings.window).await?;
            let after = read_cursor(&state.pool, &cursor).await?.context("the offline cursor vanished")?;
            out.push(Self { cluster, cursor, after, saved: after, saved_at: Instant::now() });
        }
        Ok(out)
    }

    /// Reads one page and folds it into the open windows.
    pub async fn step(&mut self, state: &State, settings: &Settings) -> anyhow::Result<Page> {
        let window_ms = u64::try_from(settings.window.as_millis()).unwrap_or(u64::MAX).max(1);
        let page = state
            .bus
            .request(&MessageFeed { cluster: self.cluster.clone(), after: Some(self.after), limit: PAGE, window_ms })
            .await
            .context("reading the message feed")?;
        // Mentions first (keyed: a page read again writes nothing twice), so a page's
        // cursor never moves past a mention not yet notified; only the tenants this
        // follower follows, like the windows below (another follower asks its own
        // presence about its own tenants).
        let mentions: Vec<_> = page.mentions.iter().filter(|m| settings.follows(&m.tenant_id)).cloned().collect();
        super::mentions::notify(state, &mentions).await?;
        let window = chrono::TimeDelta::from_std(settings.window).context("window length")?;
        // One row per room and window (a page has each once; merged all the same, as a
        // statement may not update a row twice).
        let mut windows: BTreeMap<(TenantId, RoomId, DateTime<Utc>), Span> = BTreeMap::new();
        for w in page.windows.into_iter().filter(|w| settings.follows(&w.tenant_id)) {
            let span = Span { first_seq: w.first_seq, last_seq: w.last_seq, sole_sender: w.sole_sender };
            windows.entry((w.tenant_id, w.room_id, w.window_start)).and_modify(|s| s.merge(&span)).or_insert(span);
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
        windows: &BTreeMap<(TenantId, RoomId, DateTime<Utc>), Span>,
        window: chrono::TimeDelta,
    ) -> anyhow::Result<()> {
        let tenants: Vec<&str> = windows.keys().map(|k| k.0.as_str()).collect();
        let rooms: Vec<&str> = windows.keys().map(|k| k.1.as_str()).collect();
        let starts: Vec<DateTime<Utc>> = windows.keys().map(|k| k.2).collect();
        let ends: Vec<DateTime<Utc>> = starts.iter().map(|s| *s + window).collect();
        let firsts: Vec<i64> = windows.values().map(|v| v.first_seq).collect();
        let lasts: Vec<i64> = windows.values().map(|v| v.last_seq).collect();
        let senders: Vec<Option<&str>> = windows.values().map(|v| v.sole_sender.as_ref().map(UserId::as_str)).collect();
        let (follower, cursor, saved) = (settings.follower.as_str(), self.cursor.as_str(), self.saved);
        let mut conn = state.pool.get().await.context("database")?;
        conn.transaction(async |conn| -> anyhow::Result<()> {
            let moved = prepared(
                diesel::sql_query(
                    "UPDATE notification.offline_cursor SET after_tx = $3, updated_at = now()
                 WHERE follower = $1 AND after_tx = $2",
                )
                .bind::<Text, _>(cursor)
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
                     (follower, tenant_id, room_id, window_start, window_end, first_seq, last_seq, sole_sender)
                 SELECT $1, t, r, s, e, f, l, o
                 FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::bigint[], $7::bigint[],
                             $8::text[])
                     AS x (t, r, s, e, f, l, o)
                 ON CONFLICT (follower, tenant_id, room_id, window_start) DO UPDATE SET
                     first_seq = LEAST(w.first_seq, EXCLUDED.first_seq),
                     last_seq = GREATEST(w.last_seq, EXCLUDED.last_seq),
                     sole_sender = CASE WHEN w.sole_sender = EXCLUDED.sole_sender THEN w.sole_sender END",
                )
                .bind::<Text, _>(follower)
                .bind::<Array<Text>, _>(&tenants)
                .bind::<Array<Text>, _>(&rooms)
                .bind::<Array<Timestamptz>, _>(&starts)
                .bind::<Array<Timestamptz>, _>(&ends)
                .bind::<Array<BigInt>, _>(&firsts)
                .bind::<Array<BigInt>, _>(&lasts)
                .bind::<Array<diesel::sql_types::Nullable<Text>>, _>(&senders),
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
