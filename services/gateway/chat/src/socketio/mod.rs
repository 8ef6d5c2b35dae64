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

pub use self::state::{SocketIo, SocketIoConfig};

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
                .param::<String>("EIO", "query", "Engine.IO protocol version: `4`.")
                .param::<String>("transport", "query", "`polling` or `websocket`.")
                .param::<String>("sid", "query", "The session id, after the handshake.")
                .raw()
                .reply_raw(200, "Engine.IO packets (long-polling).", Some("text/plain"))
                .reply_raw(101, "Switched to WebSocket (`transport=websocket`).", None)
                .errors(&[400]),
        )
        .post(
            http::post,
            op("Socket.IO: send packets of a long-polling session")
                .describe(describe)
                .param::<String>("EIO", "query", "Engine.IO protocol version: `4`.")
                .param::<String>("transport", "query", "`polling`.")
                .required_param::<String>("sid", "query", "The session id.")
                .body::<String>("text/plain")
                .raw()
                .reply_raw(200, "`ok`.", Some("text/html"))
                .errors(&[400]),
        )
    });
}
