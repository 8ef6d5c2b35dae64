//! The WebSocket API of `ws-rooms.md` at `GET /ws/{room_id}?token=&user_id=&user_name=&last_seq=`.
//!
//! - `hub`: per-room interest subscriptions, ordering by `seq`, fan-out to bounded queues.
//! - `session`: one connection's loop (client frames, room frames, keep-alive, kicks, shutdown).
//! - `frames`: the server frames.
//!
//! The connection is authorized before anything else; a refused one is upgraded and
//! closed at once with the document's code (browsers cannot read an HTTP status on a
//! failed upgrade): 4001 bad token, 4002 room not found, 4003 not a member, 4004 rate
//! limited.

pub mod frames;
pub mod hub;
mod queue;
mod session;

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason};
use chat_domain::ErrorCode;
use chat_domain::ids::{RoomId, UserId};
use chat_domain::model::{Actor, Room};
use chat_domain::proto::store::{GetRoom, TenantAuth};

use crate::AppState;
use crate::body::Query;

/// WebSocket settings.
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Largest client frame handled (`WS_MAX_FRAME_BYTES`); larger ones get an error frame.
    pub max_frame_bytes: usize,
    /// Outgoing frames a socket may have queued before it is closed as too slow (`WS_QUEUE`).
    pub queue: usize,
    /// How often the server pings (`WS_PING_SECS`).
    pub ping_interval: Duration,
    /// A socket silent for this long is closed (`WS_IDLE_SECS`).
    pub idle_timeout: Duration,
    /// How often open sockets are renewed in presence.
    pub heartbeat_every: Duration,
    /// Reconnect delays sent at shutdown are spread over this window.
    pub reconnect_spread_ms: u64,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 * 1024,
            queue: 1024,
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            heartbeat_every: Duration::from_secs(10),
            reconnect_spread_ms: 5_000,
        }
    }
}

/// A refused connection: the close code and why.
struct Refused(u16, String);

fn refuse_api(e: chat_domain::ApiError, not_found: u16) -> Refused {
    match e.code {
        ErrorCode::AuthenticationError => Refused(4001, e.message),
        ErrorCode::NotFound => Refused(not_found, e.message),
        ErrorCode::Forbidden => Refused(4003, e.message),
        ErrorCode::RateLimitExceeded => Refused(4004, e.message),
        _ => Refused(1011, e.message),
    }
}

struct Authorized {
    actor: Actor,
    tenant: TenantAuth,
    room: Room,
    user_name: Option<String>,
    last_seq: Option<i64>,
}

async fn authorize(req: &HttpRequest, state: &AppState, room: &str) -> Result<Authorized, Refused> {
    let q = Query::parse(req).map_err(|e| Refused(4001, e.message))?;
    let token = q.get_str("token").ok_or_else(|| Refused(4001, "token is required".to_owned()))?;
    let (tenant, user) = match crate::tokens::verify(state, token).await {
        Some(verified) => verified.map_err(|e| refuse_api(e, 4001))?,
        None => {
            let tenant = state.auth.tenant(&state.bus, token).await.map_err(|e| refuse_api(e, 4001))?;
            let user =
                q.get_str("user_id").ok_or_else(|| Refused(4001, "user_id is required with an API key".to_owned()))?;
            let user = UserId::parse(user).map_err(|e| Refused(4001, format!("Invalid user_id: {e}")))?;
            (tenant, user)
        }
    };
    let decision = state.limiter.check(&tenant.tenant_id, tenant.rate_limit_per_sec).await;
    if !decision.allowed {
        return Err(Refused(4004, "Rate limit exceeded".to_owned()));
    }
    let room_id = RoomId::parse(room).map_err(|_| Refused(4002, "Room not found".to_owned()))?;
    let last_seq = q.int("last_seq", 0, i64::MAX).map_err(|e| Refused(1008, e.message))?;
    let user_name = q.get_str("user_name").map(|n| n.chars().take(100).collect());
    let actor = Actor { tenant_id: tenant.tenant_id.clone(), user_id: user };
    let room = state.bus.request(&GetRoom { actor: actor.clone(), room_id }).await.map_err(|e| refuse_api(e, 4002))?;
    Ok(Authorized { actor, tenant, room, user_name, last_seq })
}

/// `GET /ws/{room_id}`.
pub async fn connect(
    req: HttpRequest,
    body: web::Payload,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let outcome = authorize(&req, &state, &path).await;
    let (res, ws, stream) = actix_ws::handle(&req, body)?;
    let refuse = |ws: actix_ws::Session, code: u16, why: String| {
        actix_web::rt::spawn(async move {
            let reason = CloseReason { code: CloseCode::Other(code), description: Some(why) };
            let _ = ws.close(Some(reason)).await;
        });
    };
    match outcome {
        Err(Refused(code, why)) => refuse(ws, code, why),
        Ok(a) => match state.hub.join(&a.actor, &a.room.room_id, a.user_name.as_deref(), a.room.last_seq).await {
            Err(e) => {
                tracing::warn!(error = %e, "could not register a socket");
                refuse(ws, 1011, "server error".to_owned());
            }
            Ok(joined) => {
                let session = session::Session {
                    state: state.clone(),
                    actor: a.actor,
                    user_name: a.user_name,
                    room: a.room,
                    last_seq: a.last_seq,
                    rate_limit: a.tenant.rate_limit_per_sec,
                };
                actix_web::rt::spawn(session.run(ws, stream, joined));
            }
        },
    }
    Ok(res)
}
