//! `ws-rooms.md`: the WebSocket dialect at
//! `GET /ws/{room_id}?token=&user_id=&user_name=&last_seq=`, and the document's REST
//! helpers under `/api/v1` (also under `/v1/api/v1`), which its demo page
//! (`docs/demo/`) calls.
//!
//! The connection is admitted before anything else; a refused one is upgraded and
//! closed at once with the document's code: 4001 bad token, 4002 room not found, 4003
//! not a member, 4004 rate limited. Everything after that is the session core's
//! (`gateway_core::session`), with this dialect's [`codec`].
//!
//! - `codec`: frames as commands, replies and events as frames.
//! - `api_messages`: `POST`/`GET /api/v1/rooms/{id}/messages`.
//! - `live`: who is online, and a room's participants.

mod api_messages;
pub mod codec;
mod live;

use actix_web::{HttpRequest, HttpResponse, web};
use chat_domain::ErrorCode;
use chat_domain::ids::RoomId;
use chat_domain::model::Actor;
use chat_domain::proto::store::GetRoom;

use gateway_core::admit::Refused;
use gateway_core::attachments::Attachments;
use gateway_core::body::Query;
use gateway_core::openapi::Auth;
use gateway_core::routes::{Mount, op};
use gateway_core::session::connect::{Opening, Refusal, open};
use gateway_core::{Core, Dialect};
use serde_json::json;

use self::codec::WsRoomsCodec;

/// `ws-rooms.md`: its codec, which signs attachment links with this gateway's key.
#[derive(Debug)]
pub struct WsRooms {
    codec: &'static WsRoomsCodec,
}

impl WsRooms {
    /// The dialect of a gateway whose attachment links are signed by `attachments`.
    pub fn new(attachments: Attachments) -> Self {
        Self { codec: WsRoomsCodec::leak(attachments) }
    }
}

/// The codec, as the connect handler takes it.
#[derive(Debug, Clone, Copy)]
struct CodecOf(&'static WsRoomsCodec);

impl Dialect for WsRooms {
    fn name(&self) -> &'static str {
        "ws-rooms"
    }

    fn mount(&self, m: &mut Mount) {
        m.config().app_data(web::Data::new(CodecOf(self.codec)));
        api_routes(m);
        m.tagged("Real time").at(&["/ws/{room_id}"], |r| {
            r.get(
                connect,
                op("WebSocket of ws-rooms.md (one room)")
                    .describe("Frames: docs/asyncapi-ws.json. Refusals are close codes (4001 bad or revoked credentials, 4002 no such room, 4003 not a member, 4004 rate limited or too many sockets).")
                    .auth(Auth::Socket)
                    .path_id::<chat_domain::ids::RoomId>("room_id", "The room to join.")
                    .param::<String>("user_id", "query", "The user, when `token` is the tenant's API key.")
                    .param::<u64>("last_seq", "query", "Resume after this sequence number.")
                    .raw()
                    .reply_raw(101, "Switched to the WebSocket protocol.", None)
                    .errors(&[400]),
            )
        });
    }

    fn mount_v1(&self, m: &mut Mount) {
        api_routes(m);
    }
}

/// The REST helpers under `/api/v1`, each with its documentation.
fn api_routes(m: &mut Mount) {
    use self::codec::MessageData;

    let room = "The room's id (`room_...`).";
    let replayed = "`true` when the send was a resend (same `Idempotency-Key` or `client_msg_id`).";
    let idempotency = "The client's id of this send (wins over `client_msg_id`): a resend returns the first message.";
    m.tagged("ws-rooms helpers")
.at(&["/api/v1/rooms/{room_id}/messages", "/api/v1/rooms/{room_id}/messages/"], |r| {
            r.post(
                api_messages::send,
                op("Send a message (ws-rooms.md)")
                    .describe("As the document's demo page sends one. With the API key the sender is `sender_id` (else `X-User-Id`); with a user token it is the token's user.")
                    .auth(Auth::KeyOrTokenAnyUser)
                    .path_id::<chat_domain::ids::RoomId>("room_id", room)
                    .param::<gateway_core::messages::IdempotencyKey>("Idempotency-Key", "header", idempotency)
                    .json_example::<api_messages::ApiMessage>(json!({
                        "sender_id": "user_123",
                        "sender_name": "Alice",
                        "content": "Hello, world!",
                        "message_type": "text",
                    }))
                    .reply::<api_messages::Enveloped<MessageData>>(201, "The message, stored.")
                    .reply::<api_messages::Enveloped<MessageData>>(200, "A resend: the message the first send stored.")
                    .reply_header("Idempotent-Replayed", replayed)
                    .errors(&[400, 401, 403, 404, 413, 503]),
            )
            .get(
                api_messages::list,
                op("Message history (ws-rooms.md)")
                    .describe("The history rules of `GET /rooms/{room_id}/messages`, messages in the shape of the `message` frame.")
                    .auth(Auth::KeyOrToken)
                    .path_id::<chat_domain::ids::RoomId>("room_id", room)
                    .query::<gateway_core::messages::History>()
                    .reply::<api_messages::Enveloped<api_messages::Messages>>(200, "The page, in `seq` order.")
                    .errors(&[400, 401, 403, 404, 503]),
            )
        })
        .at(&["/api/v1/rooms/{room_id}/online"], |r| {
            r.get(
                live::online,
                op("Who is online in a room")
                    .describe("Leaves out the users the caller blocks.")
                    .auth(Auth::KeyOrToken)
                    .path_id::<chat_domain::ids::RoomId>("room_id", room)
                    .reply_example::<api_messages::Enveloped<live::OnlineUsers>>(
                        200,
                        "The members with a socket open in the room.",
                        json!({"data": {"online_users": ["user_123", "user_456"], "total_online": 2}, "status": "success"}),
                    )
                    .errors(&[400, 401, 403, 404, 503]),
            )
        })
        .at(&["/api/v1/users/online"], |r| {
            r.get(
                live::tenant_online,
                op("Who is online in the tenant")
                    .describe("With a user named (a user token or `X-User-Id`), leaves out the users they block.")
                    .auth(Auth::KeyOrTokenAnyUser)
                    .reply::<api_messages::Enveloped<live::OnlineUsers>>(200, "The users with a socket open anywhere in the tenant.")
                    .errors(&[400, 401, 403, 503]),
            )
        })
        .at(&["/api/v1/rooms/{room_id}/participants"], |r| {
            r.get(
                live::participants,
                op("A room's participants")
                    .describe("A page of the room's members, each with whether they are online (never, for a user the caller blocks).")
                    .auth(Auth::KeyOrToken)
                    .path_id::<chat_domain::ids::RoomId>("room_id", room)
                    .query::<gateway_core::extract::Page>()
                    .reply::<api_messages::Enveloped<live::Participants>>(200, "A page of the members, in join order.")
                    .errors(&[400, 401, 403, 404, 503]),
            )
        });
}

async fn authorize(req: &HttpRequest, state: &Core, room: &str) -> Result<Opening, Refusal> {
    let q = Query::parse(req).map_err(|e| Refusal(4001, e.message))?;
    let admitted = gateway_core::admit::admit_from(
        state,
        gateway_core::admit::peer(req),
        q.get_str("token"),
        q.get_str("user_id"),
    )
    .await
    .map_err(|r| match r {
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
async fn connect(
    req: HttpRequest,
    body: web::Payload,
    path: web::Path<String>,
    state: web::Data<Core>,
    codec: web::Data<CodecOf>,
) -> Result<HttpResponse, actix_web::Error> {
    let outcome = authorize(&req, &state, &path).await;
    open(&req, body, state, codec.0, outcome).await
}
