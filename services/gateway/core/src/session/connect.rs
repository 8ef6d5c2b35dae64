//! Opening a session, shared by every WebSocket endpoint: a connection is admitted by
//! its endpoint first; a refused one is upgraded and closed at once with the
//! dialect's close code (browsers cannot read an HTTP status on a failed upgrade); an
//! admitted one takes a place under the socket caps and its display name
//! (`guard`), joins its room ([`Membership`]), is watched for revocation, is upgraded
//! onto its queue (`transport`), and its [`Session`] runs on its own task.

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason};
use chat_domain::model::{Actor, Room};

use crate::admit::Admitted;
use crate::session::codec::{Close, Codec};
use crate::session::guard;
use crate::session::queue;
use crate::session::transport;
use crate::session::{Joined, Membership, Session};
use crate::state::Core;

/// A refused connection: the close code and why.
pub struct Refusal(pub u16, pub String);

/// Who connected to which room, and how.
pub struct Opening {
    pub admitted: Admitted,
    pub room: Room,
    pub user_name: Option<String>,
    /// Deliver every message after this `seq` first.
    pub resume_after: Option<i64>,
}

/// Answers a WebSocket request whose admission came out as `outcome`: a refused one
/// is closed at once with its code, an admitted one gets a session speaking `codec`.
pub async fn open(
    req: &HttpRequest,
    payload: web::Payload,
    state: web::Data<Core>,
    codec: &'static dyn Codec,
    outcome: Result<Opening, Refusal>,
) -> Result<HttpResponse, actix_web::Error> {
    let max_frame = state.ws.max_frame_bytes * 16;
    let open = match outcome {
        Ok(open) => open,
        Err(refusal) => return refuse(req, payload, refusal, max_frame),
    };
    let actor = Actor { tenant_id: open.admitted.tenant.tenant_id.clone(), user_id: open.admitted.user.clone() };
    let Some(slot) = state.guards.caps.acquire(&actor) else {
        let refusal = Refusal(codec.close_code(Close::TooMany), Close::TooMany.reason().to_owned());
        return refuse(req, payload, refusal, max_frame);
    };
    let user_name = guard::display_name(&state, &open.admitted, open.user_name).await;
    let joined = Membership::join(&state, &actor, &open.room, codec, user_name.as_deref()).await;
    let Joined { membership, outlet, receiver } = match joined {
        Ok(joined) => joined,
        Err(e) => {
            tracing::warn!(error = %e, "could not register a socket");
            return refuse(req, payload, Refusal(1011, "server error".to_owned()), max_frame);
        }
    };
    let delivered =
        codec.acks_delivery().then(|| state.deliveries.slot(&actor, &open.room.room_id, open.room.last_seq));
    let (response, inlet) = match transport::upgrade(req, payload, receiver, max_frame, delivered.clone()) {
        Ok(upgraded) => upgraded,
        Err(e) => {
            membership.abandon().await;
            return Err(e);
        }
    };
    let watched = state.guards.watches.watch(&open.admitted, membership.kick().clone());
    let session = Session {
        state: state.clone(),
        codec,
        actor,
        user_name,
        room: open.room,
        resume_after: open.resume_after,
        rate_limit: open.admitted.tenant.rate_limit_per_sec,
        delivered,
        _held: (slot, watched),
    };
    actix_web::rt::spawn(session.run(membership, outlet, inlet));
    Ok(response)
}

/// Upgrades and closes at once with the refusal's code.
fn refuse(
    req: &HttpRequest,
    payload: web::Payload,
    Refusal(code, why): Refusal,
    max_frame: usize,
) -> Result<HttpResponse, actix_web::Error> {
    let (_, outlet, receiver) = queue::bounded(1);
    outlet.close_now(Some(CloseReason { code: CloseCode::Other(code), description: Some(why) }));
    let (response, _) = transport::upgrade(req, payload, receiver, max_frame, None)?;
    Ok(response)
}
