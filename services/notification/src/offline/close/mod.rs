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
//!
//! - [`window`]: reading back the windows due, and the earliest end of the others.
//! - [`plan`]: from presence history, what closing each window takes.
//! - [`read`]: the messages of the windows where someone may have missed something.
//! - [`write`]: the batch's entries, deliveries and window deletions, in one transaction.
//!
//! This module runs a batch through them; none of them imports it.

mod plan;
mod read;
mod window;
mod write;

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context as _, bail};
use chat_domain::ids::{TenantId, UserId};
use chat_domain::model::Message;
use chat_domain::proto::store::{GetWebhook, RoomAudiences, RoomRef};
use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;

use super::entry::{self, Missed};
use super::missed::present;
use super::settings::Settings;
use crate::State;
use crate::metrics::OFFLINE_WINDOWS;
use plan::{Plan, absent_at_times, nobody_missed, online_history, recheck};
use read::{READS_AT_ONCE, read_window};
use window::Window;
pub use window::earliest_end;
use write::{NewEntry, write};

/// Closes every window that ended at or before `until`; returns the earliest end of
/// the windows still open.
pub async fn close_due(
    state: &State,
    settings: &Settings,
    until: DateTime<Utc>,
) -> anyhow::Result<Option<DateTime<Utc>>> {
    loop {
        let windows = window::due(state, settings, until).await?;
        let full = windows.len() as i64 >= window::BATCH;
        if !windows.is_empty() {
            close_batch(state, settings, &windows).await?;
        }
        if !full {
            break;
        }
    }
    earliest_end(state, settings).await
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
                // A mention was notified on its own, at once (`mentions`).
                .filter(|m| {
                    m.sender_id != *user
                        && !present(intervals, m.created_at, grace)
                        && !super::mentions::mentions(m, user)
                })
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
