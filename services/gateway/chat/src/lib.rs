//! `rest-chat.md`: an Express-style REST API under `/api/chat` (Bearer user tokens,
//! `{success, data}` envelopes, camelCase JSON) over the same rooms, members and
//! messages as every other dialect, with its file routes and its real-time side,
//! Socket.IO at `/socket.io/`. Chats are rooms (`_id` is the room id), messages are the
//! rooms' messages; whatever is done here publishes the same bus events as the other
//! dialects, so `/ws`, `/conversations` and `/rooms` clients see it, and the other way
//! round.
//!
//! - `extract`: the caller (Bearer token, or `X-API-Key` + `X-User-Id`) and path
//!   segments, read in order, failing in this dialect's error shape (`error`, whose
//!   [`error::SHAPE`] documents it).
//! - `render`: a chat and a message as JSON (also for Socket.IO's events).
//! - `chats`, `participants`, `messages`: one file per resource; `files`: attachments
//!   (`/{id}/messages/file` uploads, `/{id}/files/{token}` serves a signed link).
//! - `search`: `GET /api/chat/search`, the canonical message search in this shape.
//! - `blocks`: `GET /api/chat/blocks`, `PUT|DELETE /api/chat/blocks/:userId`, the
//!   canonical blocks in this shape.
//! - `routes`: the `/api/chat` routes with their documentation.
//! - [`socketio`]: Engine.IO v4 / Socket.IO v5 at `/socket.io/`.
//!
//! The reference is `docs/rest-chat.md`; Socket.IO's is `docs/socketio.md`.

mod blocks;
mod chats;
pub mod error;
mod extract;
mod files;
mod messages;
mod participants;
mod reactions;
mod render;
mod routes;
mod search;
pub mod socketio;

use actix_web::web;
use gateway_core::Dialect;
use gateway_core::attachments::Attachments;
use gateway_core::routes::{Fallback, Mount};

pub use socketio::{SocketIo, SocketIoConfig};

/// `rest-chat.md` and its Socket.IO side: Socket.IO's sessions, codec and settings.
#[derive(Debug)]
pub struct Chat {
    socketio: web::Data<SocketIo>,
}

impl Chat {
    /// The dialect of a gateway whose attachment links are signed by `attachments`.
    pub fn new(attachments: Attachments, socketio: SocketIoConfig) -> Self {
        Self { socketio: web::Data::new(SocketIo::new(attachments, socketio)) }
    }
}

impl Dialect for Chat {
    fn name(&self) -> &'static str {
        "rest-chat"
    }

    fn mount(&self, m: &mut Mount) {
        m.config().app_data(self.socketio.clone());
        let chat_404: Fallback = || web::to(error::no_route);
        m.scope("/api/chat", error::SHAPE, "Chats", chat_404, routes::routes);
        socketio::routes(m);
    }
}
