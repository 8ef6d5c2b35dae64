//! The WebSocket dialect of `ws-conversations.md` at
//! `GET /conversations/{id}/?token=` (also without the trailing slash). A
//! conversation is a room; `id` is its room id.
//!
//! `token` is a user token, or the tenant's API key with `&user_id=` (and optionally
//! `&user_name=`, shown with typing). The connection is admitted first; a refused one
//! is upgraded and closed at once with this document's codes: **4003** for a missing,
//! invalid or expired token (or an API key without a valid `user_id`), **4004** for a
//! conversation that does not exist, is another tenant's, or that the user is not a
//! participant of; 1013 when the tenant is over its rate limit, 1011 when a service
//! behind the gateway does not answer. Everything after that is the session core's,
//! with this dialect's [`codec`].

pub mod codec;

use actix_web::{HttpRequest, HttpResponse, web};
use chat_domain::ErrorCode;
use chat_domain::ids::RoomId;
use chat_domain::model::Actor;
use chat_domain::proto::store::GetRoom;

use gateway_core::admit::Refused;
use gateway_core::body::Query;
use gateway_core::openapi::Auth;
use gateway_core::routes::{Mount, op};
use gateway_core::session::connect::{Opening, Refusal, open};
use gateway_core::{Core, Dialect};

/// `ws-conversations.md`: its codec keeps nothing per gateway.
#[derive(Debug, Default)]
pub struct Conversations;

impl Dialect for Conversations {
    fn name(&self) -> &'static str {
        "conversations"
    }

    fn mount(&self, m: &mut Mount) {
        m.tagged("Real time").at(&["/conversations/{id}", "/conversations/{id}/"], |r| {
            r.get(
                connect,
                op("WebSocket of ws-conversations.md (one conversation)")
                    .describe("Frames: docs/asyncapi-ws.json.")
                    .auth(Auth::Socket)
                    .path_id::<chat_domain::ids::RoomId>("id", "The conversation (a room's id).")
                    .param::<String>("user_id", "query", "The user, when `token` is the tenant's API key.")
                    .raw()
                    .reply_raw(101, "Switched to the WebSocket protocol.", None)
                    .errors(&[400]),
            )
        });
    }
}

/// Unauthorized: a missing, invalid or expired token.
pub const UNAUTHORIZED: u16 = 4003;
/// Access denied: no such conversation for this user.
pub const ACCESS_DENIED: u16 = 4004;

async fn authorize(req: &HttpRequest, state: &Core, id: &str) -> Result<Opening, Refusal> {
    let q = Query::parse(req).map_err(|e| Refusal(UNAUTHORIZED, e.message))?;
    let admitted = gateway_core::admit::admit_from(
        state,
        gateway_core::admit::peer(req),
        q.get_str("token"),
        q.get_str("user_id"),
    )
    .await
    .map_err(|r| match r {
        Refused::Unauthenticated(e) | Refused::BadUser(e) => Refusal(UNAUTHORIZED, e.message),
        Refused::RateLimited => Refusal(1013, "Rate limit exceeded; try again later".to_owned()),
        Refused::Unavailable(e) => Refusal(1011, e.message),
    })?;
    let denied = || Refusal(ACCESS_DENIED, "Conversation not found".to_owned());
    let room_id = RoomId::parse(id).map_err(|_| denied())?;
    let user_name = q.get_str("user_name").and_then(chat_domain::model::display_name);
    let actor = Actor { tenant_id: admitted.tenant.tenant_id.clone(), user_id: admitted.user.clone() };
    let room = state.bus.request(&GetRoom { actor, room_id }).await.map_err(|e| match e.code {
        ErrorCode::NotFound => denied(),
        ErrorCode::Forbidden => Refusal(ACCESS_DENIED, "You are not a participant of this conversation".to_owned()),
        _ => Refusal(1011, e.message),
    })?;
    Ok(Opening { admitted, room, user_name, resume_after: None })
}

/// `GET /conversations/{id}/`.
async fn connect(
    req: HttpRequest,
    body: web::Payload,
    path: web::Path<String>,
    state: web::Data<Core>,
) -> Result<HttpResponse, actix_web::Error> {
    let outcome = authorize(&req, &state, &path).await;
    open(&req, body, state, &codec::CODEC, outcome).await
}
