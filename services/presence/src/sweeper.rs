//! The sweeper: every `sweep_every` it asks Redis only what is due now — leases that
//! ran out (`leases`) and rooms where a closing socket's grace or a typing indicator
//! ended (`due`) — so a tick with nothing due costs two O(log n) Redis calls (the
//! lease script finding no lease that ran out, and one `ZRANGEBYSCORE`), however many
//! rooms and sockets there are.
//!
//! A lease that ran out closes its gateway's sockets at the moment it ran out; the
//! rooms they were in become due at that moment plus the grace, when the users
//! whose last socket it was are announced as left. Replicas may sweep at once: each
//! change is one script, and only the replica whose script made it announces it.
//!
//! While Redis cannot be reached (a Sentinel failover, a restart) no gateway's
//! renewal can land, so once it answers again every lease is first extended by a
//! whole default lease (`extend_leases`) before any is expired: a gateway that kept
//! renewing throughout keeps its sockets, and one that died meanwhile is expired one
//! lease later than it would have been.

use std::future::Future;

use chat_domain::ids::GatewayId;
use chat_domain::proto::events::{PresenceChange, RoomEventBody, TypingChange};

use crate::Ctx;
use crate::redis_state::now_ms;

/// Most rooms swept per tick; the rest wait for the next (they stay due).
const ROOMS_PER_TICK: usize = 500;

/// Most lease-expiry chunks per tick (each closes up to `LEASE_CHUNK` sockets).
const LEASE_CHUNKS_PER_TICK: usize = 50;

/// Expires what ran out; false when Redis did not answer.
async fn expire_leases(ctx: &Ctx, now: i64) -> bool {
    for _ in 0..LEASE_CHUNKS_PER_TICK {
        match ctx.state.expire_lease(now).await {
            Ok(Some((gateway, closed))) => {
                tracing::info!(gateway, closed, "a gateway's lease ran out; its sockets are closed");
            }
            Ok(None) => return true,
            Err(e) => {
                tracing::warn!(error = %e, "presence could not expire a lease");
                return false;
            }
        }
    }
    true
}

/// Sweeps the rooms that are due; false when Redis did not answer.
async fn sweep_rooms(ctx: &Ctx, now: i64) -> bool {
    let rooms = match ctx.state.due_rooms(now, ROOMS_PER_TICK).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "presence sweep could not list due rooms");
            return false;
        }
    };
    for (tenant, room) in rooms {
        match ctx.state.sweep(&tenant, &room, now).await {
            Ok(swept) => {
                for (user_id, user_name) in swept.stopped_typing {
                    let change = TypingChange { user_id, user_name, is_typing: false };
                    ctx.announce(&tenant, &room, RoomEventBody::Typing(change)).await;
                }
                // A big room's departures are not announced one by one (see `connect`).
                let left = if ctx.state.is_big(swept.users) { Vec::new() } else { swept.left };
                for (user_id, user_name) in left {
                    let change = PresenceChange { user_id, user_name };
                    ctx.announce(&tenant, &room, RoomEventBody::PresenceLeft(change)).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "presence sweep failed"),
        }
    }
    true
}

/// Sweeps what is due every `sweep_every`, until `shutdown`.
pub async fn run(ctx: Ctx, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(ctx.config.sweep_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Whether Redis failed to answer the last sweep.
    let mut away = false;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        if away {
            // Redis answered nothing last time: renewals may not have landed.
            let until = now_ms().saturating_add(ctx.state.default_lease_ms());
            match ctx.state.extend_leases(until).await {
                Ok(n) => tracing::warn!(leases = n, "Redis is back: every lease extended before any is expired"),
                Err(_) => continue,
            }
            // What the outage lost (a failover to a replica that had not received the
            // last sockets, say), the gateways still hold: each announces its sockets
            // again.
            if let Ok(gateways) = ctx.state.leased_gateways().await {
                for gw in gateways.iter().filter_map(|g| GatewayId::parse(g.as_str()).ok()) {
                    crate::signals::resync(&ctx, &gw).await;
                }
            }
        }
        // Leases first: the sockets they close make their rooms due.
        away = !expire_leases(&ctx, now_ms()).await;
        if !away {
            away = !sweep_rooms(&ctx, now_ms()).await;
        }
    }
}
