//! Closing windows: everything due is closed in batches, each batch paying a fixed
//! number of requests whatever its size — the members of all its rooms in one
//! `room_audiences`, their presence history in one `online_history` — plus one
//! `room_messages` per window where someone may have missed something (a room whose
//! members were all there throughout is never read). A batch is written in one
//! transaction: inbox entries and webhook deliveries under keys that make doing it
//! twice write nothing twice, and the deletion of its windows.
//!
//! When presence cannot answer, the batch waits and is tried again: whether someone
//! was online is never guessed. When a window starts before the history presence keeps
//! (`complete: false`: presence began recording within it), presence is asked again
//! for exactly the time of the window's messages; if that is not covered either (the
//! pass is later than presence's memory), nobody is notified of the window, and it is
//! counted as `unknown`.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context as _, bail};
use chat_domain::ErrorCode;
use chat_domain::ids::{DeliveryId, RoomId, TenantId, UserId};
use chat_domain::model::Message;
use chat_domain::proto::presence::{HistorySpan, Interval, OnlineHistory, RoomHistory};
use chat_domain::proto::store::{GetWebhook, MAX_ROOM_MESSAGES, RoomAudiences, RoomMessages, RoomRef};
use chat_pg::prepared;
use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, RunQueryDsl};
use futures_util::StreamExt as _;
use serde_json::Value;

use super::entry::{self, Missed};
use super::missed::{present, present_throughout};
use super::settings::Settings;
use crate::State;
use crate::metrics::OFFLINE_WINDOWS;

/// Most windows closed together.
const BATCH: i64 = 256;
/// Most rows one insert statement writes (a batch may hold several statements' worth:
/// a window of a large room has an entry per member who missed something).
const ROWS_PER_STATEMENT: usize = 2_000;
/// `room_messages` requests in flight at once.
const READS_AT_ONCE: usize = 8;

#[derive(QueryableByName)]
struct WindowRow {
    #[diesel(sql_type = Text)]
    tenant_id: String,
    #[diesel(sql_type = Text)]
    room_id: String,
    #[diesel(sql_type = Timestamptz)]
    window_start: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    window_end: DateTime<Utc>,
    #[diesel(sql_type = BigInt)]
    first_seq: i64,
    #[diesel(sql_type = BigInt)]
    last_seq: i64,
    #[diesel(sql_type = Nullable<Text>)]
    sole_sender: Option<String>,
}

/// An open window of one room.
struct Window {
    room: RoomRef,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    first_seq: i64,
    last_seq: i64,
    /// The one user who sent all of the window's messages, when one did.
    sole_sender: Option<UserId>,
}

impl TryFrom<WindowRow> for Window {
    type Error = anyhow::Error;

    fn try_from(r: WindowRow) -> anyhow::Result<Self> {
        Ok(Self {
            room: RoomRef {
                tenant_id: TenantId::parse(r.tenant_id).context("stored tenant id")?,
                room_id: RoomId::parse(r.room_id).context("stored room id")?,
            },
            start: r.window_start,
            end: r.window_end,
            first_seq: r.first_seq,
            last_seq: r.last_seq,
            sole_sender: r.sole_sender.map(UserId::parse).transpose().context("stored sender id")?,
        })
    }
}

/// What closing a window takes.
enum Plan {
    /// The room no longer exists.
    Gone,
    /// Presence no longer has the history of the window's messages' time.
    Unknown,
    /// Every member was there throughout.
    Seen,
    /// These members (with their intervals) may have missed something: read the messages.
    Read(Vec<(UserId, Vec<Interval>)>),
    /// Presence's history begins within the window: ask again for exactly the time of
    /// its messages, once they are read.
    Recheck,
}

/// The earliest end of this deployment's open windows.
pub async fn earliest_end(state: &State, settings: &Settings) -> anyhow::Result<Option<DateTime<Utc>>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Nullable<Timestamptz>)]
        end: Option<DateTime<Utc>>,
    }
    let mut conn = state.pool.get().await.context("database")?;
    let row: Row = prepared(
        diesel::sql_query("SELECT min(window_end) AS end FROM notification.offline_windows WHERE follower = $1")
            .bind::<Text, _>(&settings.follower),
    )
    .get_result(&mut conn)
    .await
    .context("reading the open offline windows")?;
    Ok(row.end)
}

/// Closes every window that ended at or before `until`; returns the earliest end of
/// the windows still open.
pub async fn close_due(
    state: &State,
    settings: &Settings,
    until: DateTime<Utc>,
) -> anyhow::Result<Option<DateTime<Utc>>> {
    loop {
        let rows: Vec<WindowRow> = {
            let mut conn = state.pool.get().await.context("database")?;
            prepared(
                diesel::sql_query(
                    "SELECT tenant_id, room_id, window_start, window_end, first_seq, last_seq, sole_sender
                 FROM notification.offline_windows WHERE follower = $1 AND window_end <= $2
                 ORDER BY window_end, tenant_id, room_id LIMIT $3",
                )
                .bind::<Text, _>(&settings.follower)
                .bind::<Timestamptz, _>(until)
                .bind::<BigInt, _>(BATCH),
            )
            .load(&mut conn)
            .await
            .context("reading the offline windows due")?
        };
        let full = rows.len() as i64 >= BATCH;
        if !rows.is_empty() {
            let windows = rows.into_iter().map(Window::try_from).collect::<anyhow::Result<Vec<_>>>()?;
            close_batch(state, settings, &windows).await?;
        }
        if !full {
            break;
        }
    }
    earliest_end(state, settings).await
}

/// One new inbox entry, and its webhook when the tenant has one.
struct NewEntry<'a> {
    room: &'a RoomRef,
    user: UserId,
    key: String,
    at: DateTime<Utc>,
    inbox: Value,
    webhook: Value,
}

async fn close_batch(state: &State, settings: &Settings, windows: &[Window]) -> anyhow::Result<()> {
    let grace = settings.grace_delta();
    // Each room once, with the span of all its windows and their grace periods.
    let mut spans: BTreeMap<&RoomRef, (DateTime<Utc>, DateTime<Utc>)> = BTreeMap::new();
    for w in windows {
        let span = spans.entry(&w.room).or_insert((w.start, w.end + grace));
        *span = (span.0.min(w.start), span.1.max(w.end + grace));
    }
    let rooms = RoomAudiences { rooms: spans.keys().map(|r| (*r).clone()).collect() };
    let (audiences, history) = tokio::join!(state.bus.request(&rooms), online_history(state, &spans));
    let audiences: BTreeMap<RoomRef, Vec<UserId>> = audiences
        .context("asking message-store for the rooms' members")?
        .into_iter()
        .map(|a| (RoomRef { tenant_id: a.tenant_id, room_id: a.room_id }, a.members))
        .collect();
    let history = history?;

    let mut plans: Vec<Plan> = windows
        .iter()
        .map(|w| match (audiences.get(&w.room), history.get(&w.room)) {
            (None, _) => Ok(Plan::Gone),
            (Some(_), None) => bail!("presence left room {} out of its answer", w.room.room_id),
            (Some(_), Some(h)) if !h.complete => Ok(Plan::Recheck),
            (Some(members), Some(h)) => {
                let maybe = absent_at_times(members, h, w.start, w.end, grace);
                Ok(if nobody_missed(&maybe, w.sole_sender.as_ref()) { Plan::Seen } else { Plan::Read(maybe) })
            }
        })
        .collect::<anyhow::Result<_>>()?;

    // The messages of the windows where someone may have missed something.
    let reads: Vec<_> = windows
        .iter()
        .zip(&plans)
        .enumerate()
        .filter(|(_, (_, p))| matches!(p, Plan::Read(_) | Plan::Recheck))
        .map(|(i, (w, _))| async move { (i, read_window(state, w).await) })
        .collect();
    let read: Vec<(usize, anyhow::Result<Option<Vec<Message>>>)> =
        futures_util::stream::iter(reads).buffer_unordered(READS_AT_ONCE).collect().await;
    let mut messages: BTreeMap<usize, Vec<&Message>> = BTreeMap::new();
    let mut kept: Vec<(usize, Vec<Message>)> = Vec::with_capacity(read.len());
    for (i, result) in read {
        match result? {
            Some(all) => kept.push((i, all)),
            // Deleted since the audience was read.
            None => plans[i] = Plan::Gone,
        }
    }
    for (i, all) in &kept {
        let w = &windows[*i];
        // Messages of the window's `seq` range that belong to a neighbouring window (by
        // `created_at`) are that window's to report; deleted ones are not reported.
        let own: Vec<&Message> =
            all.iter().filter(|m| m.created_at >= w.start && m.created_at < w.end && m.deleted_at.is_none()).collect();
        messages.insert(*i, own);
    }
    recheck(state, windows, &mut plans, &messages, &audiences, grace).await?;

    let mut entries: Vec<NewEntry> = Vec::new();
    let mut notified = 0u64;
    for (i, w) in windows.iter().enumerate() {
        let (Plan::Read(maybe), Some(own)) = (&plans[i], messages.get(&i)) else { continue };
        let before = entries.len();
        for (user, intervals) in maybe {
            let missed: Vec<&Message> = own
                .iter()
                .copied()
                .filter(|m| m.sender_id != *user && !present(intervals, m.created_at, grace))
                .collect();
            let Some(latest) = missed.last() else { continue };
            let m = Missed { room: &w.room.room_id, window_start: w.start, window_end: w.end, missed: &missed };
            entries.push(NewEntry {
                room: &w.room,
                user: user.clone(),
                key: entry::key(&w.room.room_id, w.start, w.first_seq),
                at: latest.created_at,
                inbox: m.inbox_body(),
                webhook: m.webhook_body(user),
            });
        }
        if entries.len() > before {
            notified += 1;
        }
    }

    // Webhooks go to tenants that have one.
    let tenants: BTreeSet<&TenantId> = entries.iter().map(|e| &e.room.tenant_id).collect();
    let asked = futures_util::future::join_all(tenants.into_iter().map(|t| async move {
        let hook = state.bus.request(&GetWebhook { tenant_id: t.clone() }).await;
        (t, hook)
    }))
    .await;
    let mut hooked = BTreeSet::new();
    for (tenant, hook) in asked {
        if hook.context("reading a tenant's webhook")?.url.is_some() {
            hooked.insert(tenant.clone());
        }
    }

    let queued = write(state, settings, windows, &entries, &hooked).await?;
    crate::deliveries::queue_recorded(state, &queued).await;

    let gone = plans.iter().filter(|p| matches!(p, Plan::Gone)).count() as u64;
    let unknown = plans.iter().filter(|p| matches!(p, Plan::Unknown)).count() as u64;
    OFFLINE_WINDOWS.with_label_values(&["notified"]).inc_by(notified);
    OFFLINE_WINDOWS.with_label_values(&["gone"]).inc_by(gone);
    OFFLINE_WINDOWS.with_label_values(&["unknown"]).inc_by(unknown);
    OFFLINE_WINDOWS
        .with_label_values(&["seen"])
        .inc_by((windows.len() as u64).saturating_sub(notified + gone + unknown));
    tracing::debug!(windows = windows.len(), entries = entries.len(), "closed offline windows");
    Ok(())
}

/// Whether a window needs no look at its messages: nobody may have missed anything,
/// or the only member who may have is the one who sent every message of it.
fn nobody_missed(maybe: &[(UserId, Vec<Interval>)], sole_sender: Option<&UserId>) -> bool {
    match maybe {
        [] => true,
        [(only, _)] => sole_sender == Some(only),
        _ => false,
    }
}

/// Presence history of each room over its span, in one request. An error when presence
/// cannot answer: the caller tries again later rather than guess.
async fn online_history(
    state: &State,
    spans: &BTreeMap<&RoomRef, (DateTime<Utc>, DateTime<Utc>)>,
) -> anyhow::Result<BTreeMap<RoomRef, RoomHistory>> {
    if spans.is_empty() {
        return Ok(BTreeMap::new());
    }
    let ask = OnlineHistory {
        spans: spans
            .iter()
            .map(|(r, (from, to))| HistorySpan {
                tenant_id: r.tenant_id.clone(),
                room_id: r.room_id.clone(),
                from: *from,
                to: *to,
            })
            .collect(),
    };
    Ok(state
        .bus
        .request(&ask)
        .await
        .context("asking presence when members were online")?
        .into_iter()
        .map(|h| (RoomRef { tenant_id: h.tenant_id.clone(), room_id: h.room_id.clone() }, h))
        .collect())
}

/// The members who were not there for every moment of `[from, to)` (see
/// [`present_throughout`]), with their intervals: only they may have missed something.
fn absent_at_times(
    members: &[UserId],
    history: &RoomHistory,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    grace: chrono::TimeDelta,
) -> Vec<(UserId, Vec<Interval>)> {
    let online: BTreeMap<&UserId, &[Interval]> =
        history.users.iter().map(|u| (&u.user_id, u.intervals.as_slice())).collect();
    members
        .iter()
        .map(|u| (u, online.get(u).copied().unwrap_or_default()))
        .filter(|(_, iv)| !present_throughout(iv, from, to, grace))
        .map(|(u, iv)| (u.clone(), iv.to_vec()))
        .collect()
}

/// Windows whose span starts before presence's history: asks again for the time of
/// their messages alone (from the first to the last plus the grace). Complete now, the
/// window is decided as any other; still incomplete (presence forgot it), nobody is
/// notified of it — an unknown is not turned into a guess.
async fn recheck(
    state: &State,
    windows: &[Window],
    plans: &mut [Plan],
    messages: &BTreeMap<usize, Vec<&Message>>,
    audiences: &BTreeMap<RoomRef, Vec<UserId>>,
    grace: chrono::TimeDelta,
) -> anyhow::Result<()> {
    let mut spans: BTreeMap<&RoomRef, (DateTime<Utc>, DateTime<Utc>)> = BTreeMap::new();
    for (i, w) in windows.iter().enumerate() {
        if !matches!(plans[i], Plan::Recheck) {
            continue;
        }
        let own = messages.get(&i).map(Vec::as_slice).unwrap_or_default();
        let (Some(first), Some(last)) = (own.first(), own.last()) else {
            // Nothing left to report in it.
            plans[i] = Plan::Seen;
            continue;
        };
        let (from, to) = (first.created_at, last.created_at + grace);
        let span = spans.entry(&w.room).or_insert((from, to));
        *span = (span.0.min(from), span.1.max(to));
    }
    if spans.is_empty() {
        return Ok(());
    }
    let history = online_history(state, &spans).await?;
    for (i, w) in windows.iter().enumerate() {
        if !matches!(plans[i], Plan::Recheck) {
            continue;
        }
        plans[i] = match (audiences.get(&w.room), history.get(&w.room)) {
            (Some(members), Some(h)) if h.complete => {
                let own = messages.get(&i).map(Vec::as_slice).unwrap_or_default();
                let from = own.first().map_or(w.start, |m| m.created_at);
                let to = own.last().map_or(w.end, |m| m.created_at + chrono::TimeDelta::microseconds(1));
                Plan::Read(absent_at_times(members, h, from, to, grace))
            }
            (_, None) => bail!("presence left room {} out of its answer", w.room.room_id),
            _ => {
                tracing::warn!(
                    room = %w.room.room_id, window_start = %w.start,
                    "presence no longer has the history of this window's messages; nobody is notified of them"
                );
                Plan::Unknown
            }
        };
    }
    Ok(())
}

/// A window's messages (of every window that shares its `seq` range), or `None` when
/// the room no longer exists.
async fn read_window(state: &State, w: &Window) -> anyhow::Result<Option<Vec<Message>>> {
    let mut out = Vec::new();
    let mut after = w.first_seq - 1;
    loop {
        let ask = RoomMessages {
            tenant_id: w.room.tenant_id.clone(),
            room_id: w.room.room_id.clone(),
            after_seq: after,
            until_seq: Some(w.last_seq),
            limit: MAX_ROOM_MESSAGES,
        };
        let page = match state.bus.request(&ask).await {
            Ok(page) => page,
            Err(e) if e.code == ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(e).context("reading a window's messages"),
        };
        let full = page.len() >= MAX_ROOM_MESSAGES as usize;
        let Some(last) = page.last().map(|m| m.seq) else { break };
        out.extend(page);
        if !full || last >= w.last_seq {
            break;
        }
        after = last;
    }
    Ok(Some(out))
}

/// Writes a batch's entries and deliveries and deletes its windows, in one
/// transaction; returns the deliveries to queue.
async fn write(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_skipped_only_when_its_one_possible_reader_wrote_it_all() -> anyhow::Result<()> {
        let (alice, bob) = (UserId::parse("alice")?, UserId::parse("bob")?);
        assert!(nobody_missed(&[], None));
        assert!(nobody_missed(&[(alice.clone(), Vec::new())], Some(&alice)));
        assert!(!nobody_missed(&[(alice.clone(), Vec::new())], Some(&bob)), "bob wrote, alice may have missed it");
        assert!(!nobody_missed(&[(alice.clone(), Vec::new())], None), "several senders");
        assert!(!nobody_missed(&[(alice.clone(), Vec::new()), (bob, Vec::new())], Some(&alice)));
        Ok(())
    }
}
