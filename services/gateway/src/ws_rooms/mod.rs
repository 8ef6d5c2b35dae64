//! The WebSocket dialect of `ws-rooms.md` at
//! `GET /ws/{room_id}?token=&user_id=&user_name=&last_seq=`.
//!
//! The connection is admitted before anything else; a refused one is upgraded and
//! closed at once with the document's code: 4001 bad token, 4002 room not found, 4003
//! not a member, 4004 rate limited. Everything after that is the session core's
//! (`session/`), with this dialect's [`codec`].

pub mod codec;

use actix_web::{HttpRequest, HttpResponse, web};
use chat_domain::ErrorCode;
use chat_domain::ids::RoomId;
use chat_domain::model::Actor;
use chat_domain::proto::store::GetRoom;

use crate::AppState;
use crate::admit::Refused;
use crate::body::Query;
use crate::session::connect::{Opening, Refusal, open};

async fn authorize(req: &HttpRequest, state: &AppState, room: &str) -> Result<Opening, Refusal> {
    let q = Query::parse(req).map_err(|e| Refusal(4001, e.message))?;
    let admitted = crate::admit::admit(state, q.get_str("token"), q.get_str("user_id")).await.map_err(|r| match r {
        Refused::Unauthenticated(e) | Refused::BadUser(e) => Refusal(4001, e.message),
        Refused::RateLimited => Refusal(4004, "Rate limit exceeded".to_owned()),
        Refused::Unavailable(e) => Refusal(1011, e.message),
    })?;
    let room_id = RoomId::parse(room).map_err(|_| Refusal(4002, "Room not found".to_owned()))?;
    let last_seq = q.int("last_seq", 0, i64::MAX).map_err(|e| Refusal(1008, e.message))?;
    let user_name = q.get_str("user_name").and_then(chat_domain::model::display_name);
    let actor = Actor { tenant_id: admitted.tenant.tenant_id.clone(), user_id: admitted.user.clone() };
    let room = state.bus.request(&GetRoom { actor, room_id }).await.map_err(|e| match e.code {
        ErrorCode::NotFound => Refusal(4002, e.message),
        ErrorCode::Forbidden => Refusal(4003, e.message),
        _ => Refusal(1011, e.message),
    })?;
    Ok(Opening { admitted, room, user_name, resume_after: last_seq })
}

/// `GET /ws/{room_id}`.
pub async fn connect(
    req: HttpRequest,
    body: web::Payload,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let outcome = authorize(&req, &state, &path).await;
    let codec = state.ws_rooms_codec;
    open(&req, body, state, codec, outcome).await
}
