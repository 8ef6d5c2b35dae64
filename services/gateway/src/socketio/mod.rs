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

pub mod codec;
mod engine;
mod http;
pub mod packet;
mod render;
mod socket;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::web;
use tokio::sync::mpsc;

use self::engine::{Engine, Incoming, Transport};

/// This gateway's Engine.IO sessions, by `sid`. A session lives on the gateway that
/// made it: every polling request of a session must reach that gateway (see
/// `docs/deploy.md`: sticky sessions); elsewhere it is `Session ID unknown` and the
/// client starts a new session.
#[derive(Debug, Default)]
pub struct Sessions {
    by_sid: Mutex<HashMap<String, Arc<Engine>>>,
}

impl Sessions {
    /// A new session, unless `max` are open already.
    fn create(&self, transport: Transport, max: usize) -> Option<(Arc<Engine>, mpsc::Receiver<Incoming>)> {
        let mut map = self.by_sid.lock().ok()?;
        if map.len() >= max {
            return None;
        }
        let (engine, incoming) = Engine::new(new_sid(), transport);
        map.insert(engine.sid.clone(), engine.clone());
        Some((engine, incoming))
    }

    fn get(&self, sid: &str) -> Option<Arc<Engine>> {
        self.by_sid.lock().ok().and_then(|m| m.get(sid).cloned())
    }

    fn remove(&self, sid: &str) {
        if let Ok(mut map) = self.by_sid.lock() {
            map.remove(sid);
        }
    }
}

/// 20 random URL-safe characters.
fn new_sid() -> String {
    use base64::Engine as _;
    let mut b = [0u8; 15];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// `GET`/`POST /socket.io/` (with and without the trailing slash).
pub fn routes(cfg: &mut web::ServiceConfig) {
    for path in ["/socket.io/", "/socket.io"] {
        cfg.route(path, web::get().to(http::get)).route(path, web::post().to(http::post));
    }
}
