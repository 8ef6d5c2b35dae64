//! Deciding, from presence history, what closing each window takes: who may have
//! missed something (so its messages must be read), or that nobody did, or that the
//! room is gone, or that presence no longer knows. Presence is asked once per batch
//! ([`online_history`]), and once more only for windows that begin before the history
//! it keeps ([`recheck`]). Whether someone was online is never guessed.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use chat_domain::ids::UserId;
use chat_domain::model::Message;
use chat_domain::proto::presence::{HistorySpan, Interval, OnlineHistory, RoomHistory};
use chat_domain::proto::store::RoomRef;
use chrono::{DateTime, Utc};

use crate::State;
use crate::offline::close::window::Window;
use crate::offline::missed::present_throughout;

/// What closing a window takes.
pub(super) enum Plan {
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

/// Whether a window needs no look at its messages: nobody may have missed anything,
/// or the only member who may have is the one who sent every message of it.
pub(super) fn nobody_missed(maybe: &[(UserId, Vec<Interval>)], sole_sender: Option<&UserId>) -> bool {
    match maybe {
        [] => true,
        [(only, _)] => sole_sender == Some(only),
        _ => false,
    }
}

/// Presence history of each room over its span, in one request. An error when presence
/// cannot answer: the caller tries again later rather than guess.
pub(super) async fn online_history(
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
pub(super) fn absent_at_times(
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
pub(super) async fn recheck(
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
