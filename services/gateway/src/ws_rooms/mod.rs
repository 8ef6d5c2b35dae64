//! The WebSocket dialect of `ws-rooms.md` at
//! `GET /ws/{room_id}?token=&user_id=&user_name=&last_seq=`.
//!
//! The connection is admitted before anything else; a refused one is upgraded and
//! closed at once with the document's code (browsers cannot read an HTTP status on a
//! failed upgrade): 4001 bad token, 4002 room not found, 4003 not a member, 4004 rate
//! limited. Everything after that is the session core's (`session/`), with this
//! dialect's [`codec`].

pub mod codec;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason};
use chat_domain::ErrorCode;
use chat_domain::ids::RoomId;
use chat_domain::model::{Actor, Room};
use chat_domain::proto::store::GetRoom;

use crate::AppState;
use crate::admit::{Admitted, Refused};
use crate::body::Query;
use crate::session::Session;

/// A refused connection: the close code and why.
pub struct Refusal(pub u16, pub String);

/// Closes a freshly upgraded socket with `code`.
pub fn refuse(ws: actix_ws::Session, Refusal(code, why): Refusal) {
    actix_web::rt::spawn(async move {
        let reason = CloseReason { code: CloseCode::Other(code), description: Some(why) };
        let _ = ws.close(Some(reason)).await;
    });
}

struct Authorized {
    admitted: Admitted,
    room: Room,
    user_name: Option<String>,
    last_seq: Option<i64>,
}

async fn authorize(req: &HttpRequest, state: &AppState, room: &str) -> Result<Authorized, Refusal> {
    let q = Query::parse(req).map_err(|e| Refusal(4001, e.message))?;
    let admitted = crate::admit::admit(state, q.get_str("token"), q.get_str("user_id")).await.map_err(|r| match r {
        Refused::Unauthenticated(e) | Refused::BadUser(e) => Refusal(4001, e.message),
        Refused::RateLimited => Refusal(4004, "Rate limit exceeded".to_owned()),
        Refused::Unavailable(e) => Refusal(1011, e.message),
    })?;
    let room_id = RoomId::parse(room).map_err(|_| Refusal(4002, "Room not found".to_owned()))?;
    let last_seq = q.int("last_seq", 0, i64::MAX).map_err(|e| Refusal(1008, e.message))?;
    let user_name =
        q.get_str("user_name").map(|n| n.chars().take(chat_domain::model::MAX_DISPLAY_NAME_CHARS).collect());
    let actor = Actor { tenant_id: admitted.tenant.tenant_id.clone(), user_id: admitted.user.clone() };
    let room = state.bus.request(&GetRoom { actor, room_id }).await.map_err(|e| match e.code {
        ErrorCode::NotFound => Refusal(4002, e.message),
        ErrorCode::Forbidden => Refusal(4003, e.message),
        _ => Refusal(1011, e.message),
    })?;
    Ok(Authorized { admitted, room, user_name, last_seq })
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
    match outcome {
        Err(refusal) => refuse(ws, refusal),
        Ok(a) => {
            let actor = Actor { tenant_id: a.admitted.tenant.tenant_id.clone(), user_id: a.admitted.user.clone() };
            let joined =
                state.hub.join(&actor, &a.room.room_id, &codec::CODEC, a.user_name.as_deref(), a.room.last_seq).await;
            match joined {
                Err(e) => {
                    tracing::warn!(error = %e, "could not register a socket");
                    refuse(ws, Refusal(1011, "server error".to_owned()));
                }
                Ok(joined) => {
                    let session = Session {
                        state: state.clone(),
                        codec: &codec::CODEC,
                        actor,
                        user_name: a.user_name,
                        room: a.room,
                        resume_after: a.last_seq,
                        rate_limit: a.admitted.tenant.rate_limit_per_sec,
                    };
                    actix_web::rt::spawn(session.run(ws, stream, joined));
                }
            }
        }
    }
    Ok(res)
}
