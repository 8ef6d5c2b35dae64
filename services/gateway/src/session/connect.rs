//! Opening a session, shared by every WebSocket endpoint: a connection is admitted by
//! its endpoint first; a refused one is upgraded and closed at once with the
//! dialect's close code (browsers cannot read an HTTP status on a failed upgrade); an
//! admitted one is registered with the hub and its [`Session`] runs on its own task.

use actix_web::web;
use actix_ws::{CloseCode, CloseReason};
use chat_domain::model::{Actor, Room};

use super::Session;
use super::codec::Codec;
use crate::AppState;
use crate::admit::Admitted;

/// A refused connection: the close code and why.
pub struct Refusal(pub u16, pub String);

/// Closes a freshly upgraded socket with `code`.
pub fn refuse(ws: actix_ws::Session, Refusal(code, why): Refusal) {
    actix_web::rt::spawn(async move {
        let reason = CloseReason { code: CloseCode::Other(code), description: Some(why) };
        let _ = ws.close(Some(reason)).await;
    });
}

/// Who connected to which room, and how.
pub struct Opening {
    pub admitted: Admitted,
    pub room: Room,
    pub user_name: Option<String>,
    /// Deliver every message after this `seq` first.
    pub resume_after: Option<i64>,
}

/// Registers an admitted socket speaking `codec` and runs its session.
pub async fn start(
    state: web::Data<AppState>,
    codec: &'static dyn Codec,
    ws: actix_ws::Session,
    stream: actix_ws::MessageStream,
    open: Opening,
) {
    let actor = Actor { tenant_id: open.admitted.tenant.tenant_id.clone(), user_id: open.admitted.user.clone() };
    let joined = state.hub.join(&actor, &open.room.room_id, codec, open.user_name.as_deref(), open.room.last_seq).await;
    match joined {
        Err(e) => {
            tracing::warn!(error = %e, "could not register a socket");
            refuse(ws, Refusal(1011, "server error".to_owned()));
        }
        Ok(joined) => {
            let delivered =
                codec.acks_delivery().then(|| state.deliveries.slot(&actor, &open.room.room_id, open.room.last_seq));
            let session = Session {
                state: state.clone(),
                codec,
                actor,
                user_name: open.user_name,
                room: open.room,
                resume_after: open.resume_after,
                rate_limit: open.admitted.tenant.rate_limit_per_sec,
                delivered,
            };
            actix_web::rt::spawn(session.run(ws, stream, joined));
        }
    }
}
