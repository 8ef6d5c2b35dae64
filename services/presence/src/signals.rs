//! Signals from gateways, which need no reply: a socket closed
//! (`<p>.presence.<tenant>.<room>.disconnect`) and a gateway renewing its lease
//! (`<p>.presence.gateway.<gw>.lease`). Taken in the `presence` queue group, so each
//! signal is applied by one replica. A lease from a gateway presence holds no lease for
//! means its Redis lost that gateway's sockets (or the gateway is new): presence asks it
//! to announce them again ([`resync`], `<p>.gateway.<gw>.resync`).

use std::future::Future;

use chat_domain::ids::GatewayId;
use chat_domain::proto::Service;
use chat_domain::proto::presence::{DisconnectSignal, GatewayLease, GatewayResync};
use futures_util::StreamExt as _;

use crate::Ctx;
use crate::redis_state::now_ms;

/// Longest lease a gateway may ask for: a gateway that dies holding a longer one would
/// keep its users online for that long.
const MAX_LEASE_MS: u64 = 3_600_000;

async fn apply(ctx: &Ctx, subject: &str, payload: &[u8]) -> Result<(), String> {
    if subject.ends_with(".disconnect") {
        let s = serde_json::from_slice::<DisconnectSignal>(payload)
            .map_err(|e| format!("malformed disconnect signal: {e}"))?;
        ctx.state
            .disconnect(&s.tenant_id, &s.room_id, &s.conn.user_id, &s.conn.conn_id, now_ms())
            .await
            .map_err(|e| e.to_string())?;
    } else if subject.ends_with(".lease") {
        let lease =
            serde_json::from_slice::<GatewayLease>(payload).map_err(|e| format!("malformed lease signal: {e}"))?;
        if lease.ttl_ms == 0 || lease.ttl_ms > MAX_LEASE_MS {
            return Err(format!("lease ttl_ms must be 1 to {MAX_LEASE_MS}, got {}", lease.ttl_ms));
        }
        let ttl = i64::try_from(lease.ttl_ms).unwrap_or(i64::MAX);
        let known = ctx.state.lease(&lease.gateway_id, ttl, now_ms()).await.map_err(|e| e.to_string())?;
        if !known {
            // Whatever this gateway's sockets were, presence no longer knows them.
            tracing::info!(gateway = %lease.gateway_id, "a lease from a gateway presence has no lease for: asking it to resync");
            resync(ctx, &lease.gateway_id).await;
        }
    }
    Ok(())
}

/// Asks one gateway to announce its sockets again (`GatewayResync`).
pub async fn resync(ctx: &Ctx, gateway: &GatewayId) {
    let signal = GatewayResync { gateway_id: gateway.clone() };
    let subject = ctx.bus.subjects().gateway_resync(gateway);
    match serde_json::to_vec(&signal) {
        Ok(payload) => {
            if let Err(e) = ctx.bus.publish(subject, payload.into()).await {
                tracing::warn!(gateway = %gateway, error = %e, "could not ask a gateway to resync");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not encode a resync signal"),
    }
}

/// Applies gateway signals until `shutdown`.
pub async fn follow(ctx: Ctx, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let subject = ctx.bus.subjects().all_presence();
    let mut sub = ctx.bus.client().queue_subscribe(subject, Service::Presence.name().to_owned()).await?;
    tokio::pin!(shutdown);
    loop {
        let msg = tokio::select! {
            _ = &mut shutdown => break,
            m = sub.next() => match m { Some(m) => m, None => break },
        };
        if let Err(e) = apply(&ctx, &msg.subject, &msg.payload).await {
            tracing::warn!(subject = %msg.subject, error = %e, "presence signal failed");
        }
    }
    Ok(())
}
