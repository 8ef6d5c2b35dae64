//! Offline messages: members who had no socket open in a room when a message arrived
//! (nor within a grace period after it) get one inbox entry and one webhook per room
//! and window, saying how many messages they missed and which.
//!
//! - [`feed`]: the pass follows message-store's log in commit order (`message_feed`),
//!   from a cursor kept in this service's schema. Each page adds, per room and window,
//!   the window's first and last `seq` to `offline_windows`, in the same transaction
//!   that moves the cursor: a crash replays from the cursor and loses or counts nothing
//!   twice, and a page costs one write per room, never one per member or message.
//! - [`close`]: once a window's end plus the grace period has passed (and the feed has
//!   been read up to then), it is closed together with every other window due: members
//!   of all the rooms in one request, presence history of all of them in another, and
//!   the messages only of rooms where someone may have missed something. Who missed a
//!   message is decided from when they had a socket open ([`missed`]), never from who
//!   is online when the pass runs, so a pass running minutes late gives the answer it
//!   would have given on time.
//! - [`entry`]: what an inbox entry and a webhook body say.
//! - [`mentions`]: members mentioned while offline are notified of each mention at
//!   once, from the feed page that carries it, and it is left out of their windows.
//! - [`lock`]: one replica follows at a time (an advisory lock); the others stand by.
//! - [`settings`]: what the pass is told ([`Settings`]), below every part that reads it.

mod close;
mod entry;
mod feed;
mod lock;
mod mentions;
mod missed;
mod settings;

use std::pin::Pin;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::State;
pub use feed::start_point;
pub use settings::Settings;

/// How often the pass asks message-store again which clusters' logs there are.
const CLUSTERS_EVERY: Duration = Duration::from_secs(60);

/// How often the feed is read when it has nothing more. Each read is a bus request and
/// two queries even when nothing happened, so it is paid by an idle box; a second is
/// small next to the window and grace a notification waits for anyway.
const POLL: Duration = Duration::from_secs(1);
/// How long to wait after a failure (presence or message-store unavailable, database
/// trouble) before trying again. Nothing is skipped: the same step runs again.
const RETRY: Duration = Duration::from_secs(1);
/// How often a standby tries to take over.
const LOCK_RETRY: Duration = Duration::from_secs(1);
/// How often the leader checks that its lock connection still answers.
const LOCK_CHECK: Duration = Duration::from_secs(5);
/// How often deliveries whose job never reached the work queue are queued again.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Follows the message log until `shutdown`, while this replica holds the lock;
/// stands by otherwise.
pub async fn follow(
    state: State,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    let mut lock = lock::Lock::new(&settings.database_url, &settings.follower);
    loop {
        let held = match lock.try_take().await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "could not ask for the offline-pass lock");
                false
            }
        };
        if held {
            tracing::info!(follower = %settings.follower, "this replica now runs the offline pass");
            let stopped = lead(&state, &settings, &mut lock, shutdown.as_mut()).await;
            // Standing by (or stopping): another replica's gauge says how far the pass is.
            crate::metrics::OFFLINE_CAUGHT_UP.set(0.0);
            lock.release().await;
            if stopped {
                return Ok(());
            }
            continue;
        }
        tokio::select! {
            _ = shutdown.as_mut() => return Ok(()),
            _ = tokio::time::sleep(LOCK_RETRY) => {}
        }
    }
}

/// Runs the pass while the lock holds. True when stopped by `shutdown`, false when the
/// lock was lost (its connection stopped answering).
async fn lead(
    state: &State,
    settings: &Settings,
    lock: &mut lock::Lock,
    mut shutdown: Pin<&mut impl std::future::Future<Output = ()>>,
) -> bool {
    // One position per cluster's log, re-listed every CLUSTERS_EVERY (a cluster added
    // to message-store is followed from then on).
    let mut followers: Option<(Vec<feed::Follower>, Instant)> = None;
    // Every transaction that ended before this moment has been read from every log.
    let mut caught_up: Option<DateTime<Utc>> = None;
    // The earliest end of an open window; `None` until read from the database.
    let mut next_end: Option<Option<DateTime<Utc>>> = None;
    let mut checked = Instant::now();
    let mut swept: Option<Instant> = None;
    let mut delay = Duration::ZERO;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.as_mut() => return true,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = POLL;
        if checked.elapsed() >= LOCK_CHECK {
            if !lock.still_held().await {
                tracing::warn!("lost the offline-pass lock; standing by");
                return false;
            }
            checked = Instant::now();
        }
        if swept.is_none_or(|s| s.elapsed() >= SWEEP_EVERY) {
            crate::deliveries::requeue_unqueued(state, settings.tenant_prefix.as_deref()).await;
            swept = Some(Instant::now());
        }

        // Read the logs.
        if followers.as_ref().is_some_and(|(_, at)| at.elapsed() >= CLUSTERS_EVERY) {
            followers = None;
        }
        let fs = match &mut followers {
            Some((fs, _)) => fs,
            None => match feed::Follower::load_all(state, settings).await {
                Ok(fs) => &mut followers.insert((fs, Instant::now())).0,
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "could not read the offline-pass cursors");
                    delay = RETRY;
                    continue;
                }
            },
        };
        let asked = chat_domain::time::now();
        let mut more = false;
        let mut failed = None;
        for f in fs.iter_mut() {
            match f.step(state, settings).await {
                Ok(page) => {
                    if let (Some(end), Some(known)) = (page.earliest_end, next_end.as_mut()) {
                        *known = Some(known.map_or(end, |k| k.min(end)));
                    }
                    more |= page.more;
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            tracing::warn!(error = format!("{e:#}"), "could not follow the message log; retrying");
            // Start again from what the database says.
            followers = None;
            delay = RETRY;
            continue;
        }
        if more {
            delay = Duration::ZERO;
        } else {
            caught_up = Some(asked);
            crate::metrics::OFFLINE_CAUGHT_UP.set(asked.timestamp_micros() as f64 / 1e6);
        }

        // Close what is due: windows that ended a grace period before the moment up
        // to which the log has been read.
        let Some(caught_up) = caught_up else { continue };
        let until = caught_up - settings.grace_delta();
        let known = match next_end {
            Some(known) => known,
            None => match close::earliest_end(state, settings).await {
                Ok(known) => *next_end.insert(known),
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "could not read the open offline windows");
                    delay = RETRY;
                    continue;
                }
            },
        };
        if known.is_some_and(|end| end <= until) {
            match close::close_due(state, settings, until).await {
                Ok(rest) => next_end = Some(rest),
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "could not close offline windows; retrying");
                    next_end = None;
                    delay = RETRY;
                }
            }
        }
    }
}
