//! The transports at `/socket.io/`: the handshake, HTTP long-polling (`GET` reads,
//! `POST` writes) and WebSocket (from the start, or as the upgrade of a polling
//! session after the `2probe`/`3probe`/`5` exchange).
//!
//! Requests Engine.IO refuses get its own answer, which socket.io clients read:
//! `400 {"code": n, "message": ...}` (0 unknown transport, 1 unknown session id,
//! 3 bad request, 5 unsupported protocol version).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_codec::Encoder as _;
use actix_http::ws::{Codec as WsCodec, Message as WsMessage};
use actix_web::body::{BodyStream, MessageBody as _};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt as _, Stream};
use serde_json::json;
use tokio::sync::oneshot;

use crate::socketio::engine::{Engine, Incoming, Reader, Refused, Transport};
use crate::socketio::packet::{EnginePacket, SEPARATOR, split_payload};
use crate::socketio::socket::{Handshake, SocketTask};
use crate::socketio::state::SocketIo;
use gateway_core::Core;
use gateway_core::body::Query;
use gateway_core::session::transport::Inlet;

/// Engine.IO's error answer.
fn engine_error(status: StatusCode, code: u8, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({"code": code, "message": message}))
}

fn bad_request() -> HttpResponse {
    engine_error(StatusCode::BAD_REQUEST, 3, "Bad request")
}

/// What a request to `/socket.io/` asks for.
struct Target {
    websocket: bool,
    sid: Option<String>,
    handshake: Handshake,
}

/// A request Engine.IO refuses: its code and message (a `400`).
struct Refusal(u8, &'static str);

fn target(req: &HttpRequest) -> Result<Target, Refusal> {
    let q = Query::parse(req).map_err(|_| Refusal(3, "Bad request"))?;
    if q.get_str("EIO") != Some("4") {
        return Err(Refusal(5, "Unsupported protocol version"));
    }
    let websocket = match q.get_str("transport") {
        Some("polling") => false,
        Some("websocket") => true,
        _ => return Err(Refusal(0, "Transport unknown")),
    };
    let owned = |name: &str| q.get_str(name).map(str::to_owned);
    let handshake = Handshake { token: owned("token"), user_id: owned("user_id"), user_name: owned("user_name") };
    Ok(Target { websocket, sid: owned("sid"), handshake })
}

/// The answer to a handshake from an address holding `SOCKETIO_ANON_PER_ADDRESS`
/// anonymous sessions.
fn busy() -> HttpResponse {
    engine_error(
        StatusCode::SERVICE_UNAVAILABLE,
        3,
        "Too many unauthenticated sessions from your address; try again later",
    )
}

/// The client's address (the TCP peer's: a forwarded-for header is anyone's to write).
fn peer(req: &HttpRequest) -> std::net::IpAddr {
    req.peer_addr().map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |a| a.ip())
}

/// Starts a session: its open packet first, then its task. `None` when the client's
/// address holds as many anonymous sessions as it may.
fn open(
    state: &web::Data<Core>,
    io: &web::Data<SocketIo>,
    transport: Transport,
    handshake: Handshake,
    addr: std::net::IpAddr,
) -> Option<Arc<Engine>> {
    let cfg = &io.config;
    let (engine, incoming) = io.sessions.create(transport, addr, cfg).ok()?;
    let upgrades: &[&str] = if transport == Transport::Polling { &["websocket"] } else { &[] };
    let open = json!({
        "sid": engine.sid,
        "upgrades": upgrades,
        "pingInterval": cfg.ping_interval.as_millis() as u64,
        "pingTimeout": cfg.ping_timeout.as_millis() as u64,
        "maxPayload": state.ws.max_frame_bytes,
    });
    engine.push(format!("0{open}"));
    let task = SocketTask { state: state.clone(), io: io.clone(), engine: engine.clone(), incoming, handshake, addr };
    actix_web::rt::spawn(task.run());
    Some(engine)
}

/// `GET /socket.io/`: the handshake, a polling read, or a WebSocket.
pub async fn get(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<Core>,
    io: web::Data<SocketIo>,
) -> HttpResponse {
    let t = match target(&req) {
        Ok(t) => t,
        Err(Refusal(code, message)) => return engine_error(StatusCode::BAD_REQUEST, code, message),
    };
    let engine = match &t.sid {
        None => None,
        Some(sid) => match io.sessions.get(sid) {
            Some(engine) => Some(engine),
            None => return engine_error(StatusCode::BAD_REQUEST, 1, "Session ID unknown"),
        },
    };
    if t.websocket {
        return websocket(&req, payload, &state, &io, engine, t.handshake);
    }
    let engine = match engine {
        Some(engine) => engine,
        None => match open(&state, &io, Transport::Polling, t.handshake, peer(&req)) {
            Some(engine) => engine,
            None => return busy(),
        },
    };
    let guard = match engine.begin_poll() {
        Ok(guard) => guard,
        Err(Refused::Overlap) => {
            // Two reads at once: socket.io closes the session.
            let _ = engine.deliver(Incoming::Closed("overlapping polling requests".to_owned())).await;
            return bad_request();
        }
        Err(Refused::Upgraded) => return bad_request(),
    };
    let taken = std::future::poll_fn(|cx| engine.poll_take(Reader::Polling, cx)).await;
    drop(guard);
    let mut body = BytesMut::new();
    for (i, p) in taken.packets.iter().enumerate() {
        if i > 0 {
            body.extend_from_slice(&[SEPARATOR]);
        }
        body.extend_from_slice(p.as_bytes());
    }
    if taken.close {
        if !body.is_empty() {
            body.extend_from_slice(&[SEPARATOR]);
        }
        body.extend_from_slice(b"1");
    }
    HttpResponse::Ok().content_type("text/plain; charset=UTF-8").body(body.freeze())
}

/// `POST /socket.io/?sid=`: the client's packets over polling.
pub async fn post(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<Core>,
    io: web::Data<SocketIo>,
) -> HttpResponse {
    let t = match target(&req) {
        Ok(t) => t,
        Err(Refusal(code, message)) => return engine_error(StatusCode::BAD_REQUEST, code, message),
    };
    let Some(engine) = t.sid.as_deref().and_then(|sid| io.sessions.get(sid)) else {
        return engine_error(StatusCode::BAD_REQUEST, 1, "Session ID unknown");
    };
    if t.websocket || engine.transport() != Some(Transport::Polling) {
        return bad_request();
    }
    let body = match gateway_core::body::read(&req, payload, state.ws.max_frame_bytes).await {
        Ok(body) => body,
        Err(e) => {
            let timed_out = e.code == chat_domain::ErrorCode::RequestTimeout;
            let _ = engine.deliver(Incoming::Closed(e.message)).await;
            // A body that did not arrive in time (the app's body deadline) is no larger
            // than allowed.
            if timed_out {
                return engine_error(StatusCode::REQUEST_TIMEOUT, 3, "Request body timed out");
            }
            return engine_error(StatusCode::PAYLOAD_TOO_LARGE, 3, "Payload too large");
        }
    };
    for record in split_payload(&body) {
        match EnginePacket::parse_record(record) {
            Ok(p) => {
                if !engine.deliver(Incoming::Packet(p)).await {
                    return bad_request();
                }
            }
            Err(e) => {
                let _ = engine.deliver(Incoming::Closed(e.0)).await;
                return bad_request();
            }
        }
    }
    HttpResponse::Ok().content_type("text/html").body("ok")
}

/// A WebSocket for a new session (`engine` is `None`) or the upgrade of a polling one.
fn websocket(
    req: &HttpRequest,
    payload: web::Payload,
    state: &web::Data<Core>,
    io: &web::Data<SocketIo>,
    engine: Option<Arc<Engine>>,
    handshake: Handshake,
) -> HttpResponse {
    let mut response = match actix_http::ws::handshake(req.head()) {
        Ok(r) => r,
        Err(_) => return bad_request(),
    };
    let upgrading = engine.is_some();
    if engine.as_ref().is_some_and(|e| e.transport() != Some(Transport::Polling)) {
        return bad_request();
    }
    let engine = match engine {
        Some(engine) => engine,
        None => match open(state, io, Transport::WebSocket, handshake, peer(req)) {
            Some(engine) => engine,
            None => return busy(),
        },
    };
    let (ended_tx, ended) = oneshot::channel();
    let body = WsBody { engine: engine.clone(), ended, buf: BytesMut::new(), codec: WsCodec::new(), done: false };
    let inlet = Inlet::new(payload, state.ws.max_frame_bytes);
    actix_web::rt::spawn(read(engine, inlet, !upgrading, ended_tx));
    match response.message_body(BodyStream::new(body).boxed()) {
        Ok(res) => res.into(),
        Err(_) => bad_request(),
    }
}

/// Reads a WebSocket's frames into the session. A probing socket answers `2probe` and
/// takes over on `5`; an active one's end ends the session.
async fn read(engine: Arc<Engine>, mut inlet: Inlet, mut active: bool, ended: oneshot::Sender<()>) {
    let why = loop {
        let packet = match inlet.recv().await {
            None => break "closed".to_owned(),
            Some(Err(broken)) => break broken.to_string(),
            Some(Ok(WsMessage::Text(text))) => match EnginePacket::parse_text(&text) {
                Ok(p) => p,
                Err(e) => break e.0,
            },
            Some(Ok(WsMessage::Binary(bytes))) => EnginePacket::Binary(bytes),
            Some(Ok(WsMessage::Close(_))) => break "closed by the client".to_owned(),
            Some(Ok(_)) => continue,
        };
        if !active {
            match packet {
                EnginePacket::Ping(data) if data == "probe" => engine.probe(),
                EnginePacket::Upgrade => {
                    engine.upgrade();
                    active = true;
                }
                _ => break "unexpected packet during the upgrade".to_owned(),
            }
            continue;
        }
        if !engine.deliver(Incoming::Packet(packet)).await {
            break "session over".to_owned();
        }
    };
    if active {
        let _ = engine.deliver(Incoming::Closed(why)).await;
    } else {
        engine.probe_failed();
    }
    let _ = ended.send(());
}

/// A WebSocket's response body: the session's packets, one text frame each.
struct WsBody {
    engine: Arc<Engine>,
    /// The reading side ended (the client went away, or broke the protocol).
    ended: oneshot::Receiver<()>,
    buf: BytesMut,
    codec: WsCodec,
    done: bool,
}

impl WsBody {
    fn encode(&mut self, msg: WsMessage) {
        if let Err(e) = self.codec.encode(msg, &mut self.buf) {
            tracing::warn!(error = %e, "could not encode a websocket frame");
        }
    }
}

impl Stream for WsBody {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let close = match this.engine.poll_take(Reader::WebSocket, cx) {
            Poll::Ready(taken) => {
                for p in taken.packets {
                    this.encode(WsMessage::Text(p));
                }
                taken.close
            }
            Poll::Pending => this.ended.poll_unpin(cx).is_ready(),
        };
        if close {
            this.encode(WsMessage::Close(None));
            this.done = true;
        }
        if this.buf.is_empty() {
            return Poll::Pending;
        }
        Poll::Ready(Some(Ok(std::mem::take(&mut this.buf).freeze())))
    }
}
