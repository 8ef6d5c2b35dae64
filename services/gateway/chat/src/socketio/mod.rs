//! `rest-chat.md`'s real-time side: Socket.IO v5 over Engine.IO v4 (what the stock
//! `socket.io-client` v4 speaks) at `/socket.io/`, on the gateway's own port, as one
//! more dialect of the session core.
//!
//! Written here rather than taken from `socketioxide`: that crate is a tower/hyper
//! service, and the gateway's HTTP server is actix-http (every connection's socket
//! wrapped by `http_errors`), so it could only run on a second port or behind a proxy;
//! and its sockets, rooms and buffers are its own, where every socket of the gateway
//! must be one of the fan-out's (bounded queue, slow-consumer cut-off, rate limits,
//! presence, events rendered once per dialect).
//!
//! - `packet`: the Engine.IO and Socket.IO packet formats (parsing never panics).
//! - `engine`: one Engine.IO session's outgoing packets, whichever transport reads them.
//! - `http`: the handshake, long-polling, the WebSocket and the upgrade.
//! - `socket`: the session's task — namespace `/`, auth, events, acks, joined chats.
//! - `codec`: room events as Socket.IO events (`render`: their REST-shaped payloads).
//! - `state`: this gateway's sessions, the codec and the settings.
//!
//! [`SocketIo`] is the state the routes take (sessions, codec, [`SocketIoConfig`]),
//! registered by the dialect when it mounts.

pub mod codec;
mod engine;
mod http;
pub mod packet;
mod render;
mod socket;
mod state;

use gateway_core::routes::{Mount, op};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

pub use self::state::{SocketIo, SocketIoConfig};

/// Engine.IO's own error answer (what socket.io clients read), not the gateway's error
/// shape: `http::engine_error`.
#[derive(JsonSchema)]
#[schemars(rename = "EngineIoError")]
#[allow(dead_code)] // only its schema is used
struct EngineIoError {
    /// 0 unknown transport, 1 unknown session id, 3 bad request (or too many sessions,
    /// with a `503`), 5 unsupported protocol version.
    #[schemars(range(min = 0, max = 5))]
    code: u8,
    message: String,
}

/// A query parameter that takes one of a few exact strings.
macro_rules! one_of {
    ($name:ident, $schema:literal, $($value:literal),+) => {
        struct $name;
        impl JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                $schema.into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({"type": "string", "enum": [$($value),+]})
            }
        }
    };
}
one_of!(EngineIoVersion, "EngineIoVersion", "4");
one_of!(AnyTransport, "EngineIoTransport", "polling", "websocket");
one_of!(Polling, "EngineIoPolling", "polling");

/// `GET`/`POST /socket.io/` (with and without the trailing slash).
pub(crate) fn routes(m: &mut Mount) {
    let describe = "Engine.IO v4 / Socket.IO v5 (socket.io v4 clients): `EIO=4`, `transport=polling|websocket`, \
                    `sid` after the handshake. Events are in docs/socketio.md.";
    m.tagged("Real time").at(&["/socket.io/", "/socket.io"], |r| {
        r.get(
            http::get,
            op("Socket.IO: open a session, poll, or upgrade to WebSocket")
                .describe(describe)
                .auth(gateway_core::openapi::Auth::Public)
                .required_param::<EngineIoVersion>("EIO", "query", "Engine.IO protocol version: `4` (else code 5).")
                .required_param::<AnyTransport>("transport", "query", "`polling` or `websocket` (else code 0).")
                .param::<String>("sid", "query", "The session id, after the handshake (unknown: code 1).")
                .raw()
                .reply_raw(200, "Engine.IO packets (long-polling).", Some("text/plain"))
                .reply_raw(101, "Switched to WebSocket (`transport=websocket`).", None)
                .reply::<EngineIoError>(400, "Refused by Engine.IO, in its own error shape.")
                .reply::<EngineIoError>(503, "A handshake while the gateway holds `SOCKETIO_MAX_SESSIONS`."),
        )
        .post(
            http::post,
            op("Socket.IO: send packets of a long-polling session")
                .describe(describe)
                .required_param::<EngineIoVersion>("EIO", "query", "Engine.IO protocol version: `4` (else code 5).")
                .required_param::<Polling>("transport", "query", "`polling` (else code 0 or 3).")
                .required_param::<String>("sid", "query", "The session id (unknown: code 1).")
                .body::<String>("text/plain")
                .raw()
                .reply_raw(200, "`ok`.", Some("text/html"))
                .reply::<EngineIoError>(400, "Refused by Engine.IO, in its own error shape.")
                .reply::<EngineIoError>(413, "A body larger than `maxPayload`.")
                .reply::<EngineIoError>(408, "A body that did not arrive within `GATEWAY_BODY_TIMEOUT_SECS`."),
        )
    });
}
