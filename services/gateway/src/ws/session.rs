//! One WebSocket connection: a `select!` loop over everything that can happen to it —
//! a frame from the client, a frame from the room, the keep-alive timer, a kick
//! (slow consumer, removed from the room) and gateway shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web;
use actix_ws::{CloseCode, CloseReason, Message as WsMessage};
use bytestring::ByteString;
use chat_domain::ApiError;
use chat_domain::ids::RoomId;
use chat_domain::model::{Actor, MessageContent, Room, validate_client_id, validate_meta};
use chat_domain::proto::notify::TakeInbox;
use chat_domain::proto::presence::{ConnRef, Connect, DisconnectSignal, GetOnline, SetTyping};
use chat_domain::proto::store::{CursorKind, ListMessages, MoveCursor, SendMessage};
use serde_json::{Value, json};

use super::frames;
use super::hub::Joined;
use crate::AppState;

/// Consecutive bad frames (malformed, unknown, oversized) tolerated before closing.
const MAX_BAD_FRAMES: u32 = 5;
/// Longest a single send to the client may take before the socket counts as stuck.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything a session knows about its socket.
pub struct Session {
    pub state: web::Data<AppState>,
    pub actor: Actor,
    pub user_name: Option<String>,
    pub room: Room,
    /// Resume point: deliver every message after this `seq` first.
    pub last_seq: Option<i64>,
    /// The tenant's requests per second, for frames that count against it.
    pub rate_limit: u32,
}

fn close(code: u16, description: &str) -> Option<CloseReason> {
    Some(CloseReason { code: CloseCode::Other(code), description: Some(description.to_owned()) })
}

/// Why the loop ended, and how to close.
enum End {
    Close(Option<CloseReason>),
    Gone,
}

impl Session {
    fn room_id(&self) -> &RoomId {
        &self.room.room_id
    }

    /// Runs the connection to its end, then unregisters it.
    pub async fn run(self, mut ws: actix_ws::Session, stream: actix_ws::MessageStream, joined: Joined) {
        let Joined { id, conn_id, mut rx, kick } = joined;
        let hub = self.state.hub.clone();
        crate::metrics::SOCKETS.inc();
        let mut stream = stream.max_frame_size(self.state.ws.max_frame_bytes * 16);
        let end = self.serve(&mut ws, &mut stream, &mut rx, &kick, &conn_id).await;
        crate::metrics::SOCKETS.dec();
        hub.leave(&self.actor.tenant_id, self.room_id(), &self.actor.user_id, id).await;
        let signal = DisconnectSignal {
            tenant_id: self.actor.tenant_id.clone(),
            room_id: self.room_id().clone(),
            conn: ConnRef { user_id: self.actor.user_id.clone(), conn_id },
        };
        let subject = self.state.bus.subjects().presence(
            &self.actor.tenant_id,
            self.room_id(),
            chat_bus::subjects::PresenceSignal::Disconnect,
        );
        if let Ok(payload) = serde_json::to_vec(&signal) {
            let _ = self.state.bus.publish(subject, payload.into()).await;
        }
        if let End::Close(reason) = end {
            let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(reason)).await;
            // Give the client a moment to answer the close, so it reads our code
            // instead of a reset connection.
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while let Some(Ok(m)) = stream.recv().await {
                    if matches!(m, WsMessage::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        }
    }

    async fn send(&self, ws: &mut actix_ws::Session, text: ByteString) -> bool {
        matches!(tokio::time::timeout(SEND_TIMEOUT, ws.text(text)).await, Ok(Ok(())))
    }

    async fn serve(
        &self,
        ws: &mut actix_ws::Session,
        stream: &mut actix_ws::MessageStream,
        rx: &mut super::queue::Receiver,
        kick: &Arc<super::hub::Kick>,
        conn_id: &str,
    ) -> End {
        let cfg = &self.state.ws;
        // Boxed: the greeting's futures would otherwise live in every socket's task for
        // the socket's whole life.
        let Some(mut last_sent) = Box::pin(self.greet(ws, conn_id)).await else { return End::Gone };
        let mut ping = tokio::time::interval(cfg.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let mut bad_frames = 0u32;
        let mut oversized = 0u32;
        let mut shutdown = self.state.shutdown.clone();
        loop {
            tokio::select! {
                out = rx.recv() => {
                    if let (Some(seq), Some(done)) = (out.seq, last_sent)
                        && seq <= done
                    {
                        continue;
                    }
                    if out.seq.is_some() {
                        last_sent = out.seq;
                    }
                    if !self.send(ws, out.text).await {
                        crate::metrics::SLOW_KICKS.inc();
                        return End::Gone;
                    }
                }
                frame = stream.recv() => {
                    last_heard = Instant::now();
                    match frame {
                        None => return End::Gone,
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "websocket protocol error");
                            return End::Close(close(1009, "frame too large or malformed"));
                        }
                        Some(Ok(WsMessage::Text(text))) => {
                            if text.len() > cfg.max_frame_bytes {
                                oversized += 1;
                                let msg = format!("Frame larger than {} bytes", cfg.max_frame_bytes);
                                if oversized >= MAX_BAD_FRAMES {
                                    return End::Close(close(1009, "repeated oversized frames"));
                                }
                                if !self.send(ws, frames::error(self.room_id(), "PAYLOAD_TOO_LARGE", &msg, None)).await {
                                    return End::Gone;
                                }
                                continue;
                            }
                            match Box::pin(self.handle(ws, &text)).await {
                                Ok(true) => bad_frames = 0,
                                Ok(false) => return End::Gone,
                                Err(e) => {
                                    bad_frames += 1;
                                    if bad_frames >= MAX_BAD_FRAMES {
                                        return End::Close(close(1008, "repeated invalid frames"));
                                    }
                                    if !self.send(ws, frames::error(self.room_id(), e.code.as_str(), &e.message, None)).await {
                                        return End::Gone;
                                    }
                                }
                            }
                        }
                        Some(Ok(WsMessage::Binary(_))) => {
                            bad_frames += 1;
                            if bad_frames >= MAX_BAD_FRAMES {
                                return End::Close(close(1003, "binary frames are not supported"));
                            }
                            let e = frames::error(self.room_id(), "VALIDATION_ERROR", "Binary frames are not supported; send JSON text", None);
                            if !self.send(ws, e).await {
                                return End::Gone;
                            }
                        }
                        Some(Ok(WsMessage::Ping(bytes))) => {
                            let _ = ws.pong(&bytes).await;
                        }
                        Some(Ok(WsMessage::Close(_))) => return End::Close(None),
                        Some(Ok(_)) => {}
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > cfg.idle_timeout {
                        return End::Close(close(1001, "idle timeout"));
                    }
                    if tokio::time::timeout(SEND_TIMEOUT, ws.ping(b"")).await.map_or(true, |r| r.is_err()) {
                        return End::Gone;
                    }
                }
                code = kick.kicked() => {
                    let why = if code == super::hub::CLOSE_SLOW { "slow consumer: reconnect and resume from your last seq" } else { "removed from the room" };
                    return End::Close(close(code, why));
                }
                _ = shutdown.wait_for(|stop| *stop) => {
                    let delay = self.reconnect_delay_ms();
                    let frame = frames::envelope("reconnect", json!({"reason": "server shutting down", "delay_ms": delay}), Some(self.room_id()));
                    let _ = self.send(ws, frame).await;
                    return End::Close(Some(CloseReason { code: CloseCode::Away, description: Some("server shutting down".to_owned()) }));
                }
            }
        }
    }

    /// Registers with presence, greets with who is online, sends what arrived while
    /// the user was away and replays from `last_seq`. `None` when the socket is gone;
    /// otherwise the last `seq` sent.
    async fn greet(&self, ws: &mut actix_ws::Session, conn_id: &str) -> Option<Option<i64>> {
        let online = self
            .state
            .bus
            .request(&Connect {
                tenant_id: self.actor.tenant_id.clone(),
                room_id: self.room_id().clone(),
                user_id: self.actor.user_id.clone(),
                user_name: self.user_name.clone(),
                gateway_id: self.state.hub.gateway_id.clone(),
                conn_id: conn_id.to_owned(),
            })
            .await
            .map(|c| c.online_users)
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "presence unavailable at connect");
                vec![self.actor.user_id.clone()]
            });
        if !self.send(ws, self.status_frame(&online)).await {
            return None;
        }
        // What arrived for this user while they were away.
        let take = TakeInbox { tenant_id: self.actor.tenant_id.clone(), user_id: self.actor.user_id.clone() };
        match self.state.bus.request(&take).await {
            Ok(items) => {
                for item in items {
                    if !self.send(ws, frames::notification(&item)).await {
                        return None;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "inbox unavailable at connect"),
        }
        // Resume: everything after last_seq, then the live stream without repeats.
        let mut last_sent = None;
        if let Some(after) = self.last_seq {
            match self.replay(ws, after).await {
                Some(n) => last_sent = Some(n),
                None => return None,
            }
        }
        Some(last_sent)
    }

    /// A reconnect delay spread over the configured window, so sockets do not all
    /// come back at once.
    fn reconnect_delay_ms(&self) -> u64 {
        let spread = self.state.ws.reconnect_spread_ms.max(1);
        let h = self.actor.user_id.as_str().bytes().fold(17u64, |a, b| a.wrapping_mul(31).wrapping_add(u64::from(b)));
        500 + h % spread
    }

    fn status_frame(&self, online: &[chat_domain::UserId]) -> ByteString {
        let data = json!({
            "status": "connected",
            "user_id": self.actor.user_id.as_str(),
            "room_id": self.room_id().as_str(),
            "online_users": online,
            "total_participants": self.room.member_count,
        });
        frames::envelope("connection_status", data, Some(self.room_id()))
    }

    /// Sends every message after `after`; returns the last `seq` sent (or `after`).
    async fn replay(&self, ws: &mut actix_ws::Session, mut after: i64) -> Option<i64> {
        loop {
            let page = ListMessages {
                actor: self.actor.clone(),
                room_id: self.room_id().clone(),
                after_seq: Some(after),
                before_seq: None,
                limit: 100,
            };
            let messages = match self.state.bus.request(&page).await {
                Ok(m) => m,
                Err(e) => {
                    let _ = self.send(ws, frames::error(self.room_id(), e.code.as_str(), &e.message, None)).await;
                    return Some(after);
                }
            };
            let full = messages.len() == 100;
            for m in messages {
                after = m.seq;
                if !self.send(ws, frames::message(&m, None).text).await {
                    return None;
                }
            }
            if !full {
                return Some(after);
            }
        }
    }

    /// Handles one client frame. `Ok(false)` when the socket is gone.
    async fn handle(&self, ws: &mut actix_ws::Session, text: &str) -> Result<bool, ApiError> {
        let frame: Value =
            serde_json::from_str(text).map_err(|e| ApiError::validation("frame", format!("Malformed JSON: {e}")))?;
        let kind = frame
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::validation("type", "Frame needs a string \"type\""))?;
        let empty = json!({});
        let data = frame.get("data").filter(|d| !d.is_null()).unwrap_or(&empty);
        if !data.is_object() {
            return Err(ApiError::validation("data", "\"data\" must be an object"));
        }
        let reply = match kind {
            "ping" => Some(frames::envelope("pong", json!({}), Some(self.room_id()))),
            "typing" => {
                let is_typing = data.get("is_typing").and_then(Value::as_bool).unwrap_or(true);
                let cmd = SetTyping {
                    tenant_id: self.actor.tenant_id.clone(),
                    room_id: self.room_id().clone(),
                    user_id: self.actor.user_id.clone(),
                    user_name: self.user_name.clone(),
                    is_typing,
                };
                let bus = self.state.bus.clone();
                tokio::spawn(async move {
                    if let Err(e) = bus.request(&cmd).await {
                        tracing::warn!(error = %e, "typing signal failed");
                    }
                });
                None
            }
            "get_online_users" => {
                let online = self
                    .state
                    .bus
                    .request(&GetOnline { tenant_id: self.actor.tenant_id.clone(), room_id: self.room_id().clone() })
                    .await?;
                Some(self.status_frame(&online.online_users))
            }
            "send_message" => Some(self.send_message(data).await),
            "read" | "ack" | "delivered" => {
                let seq = data
                    .get("seq")
                    .and_then(Value::as_i64)
                    .filter(|s| *s >= 0)
                    .ok_or_else(|| ApiError::validation("seq", "seq must be an integer of at least 0"))?;
                let kind = if kind == "read" { CursorKind::Read } else { CursorKind::Delivered };
                let cmd = MoveCursor { actor: self.actor.clone(), room_id: self.room_id().clone(), kind, seq };
                let cursors = self.state.bus.request(&cmd).await?;
                let data = json!({"delivered_seq": cursors.delivered_seq, "read_seq": cursors.read_seq});
                Some(frames::envelope("cursor", data, Some(self.room_id())))
            }
            "fetch_messages" => Some(self.fetch_messages(data).await?),
            other => return Err(ApiError::validation("type", format!("Unknown frame type {other:?}"))),
        };
        match reply {
            Some(r) => Ok(self.send(ws, r).await),
            None => Ok(true),
        }
    }

    /// `send_message`: stores the message; answers `message_sent` with the stored
    /// message and its `seq`, or an `error` frame carrying the `local_id`.
    async fn send_message(&self, data: &Value) -> ByteString {
        let local_id = data.get("local_id").and_then(Value::as_str).map(str::to_owned);
        let result = async {
            let content = data
                .get("content")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::validation("content", "content is required"))?;
            let content = MessageContent::parse(content)?;
            let meta = data.get("meta").filter(|m| !m.is_null()).cloned();
            if let Some(m) = &meta {
                validate_meta(m)?;
            }
            if let Some(l) = &local_id {
                validate_client_id("local_id", l)?;
            }
            let decision = self.state.limiter.check(&self.actor.tenant_id, self.rate_limit).await;
            if !decision.allowed {
                return Err(ApiError::new(
                    chat_domain::ErrorCode::RateLimitExceeded,
                    "Rate limit exceeded. Try again in 1 seconds",
                ));
            }
            let cmd = SendMessage {
                actor: self.actor.clone(),
                room_id: self.room_id().clone(),
                content,
                sender_name: self.user_name.clone(),
                meta,
                client_msg_id: local_id.clone(),
            };
            self.state.bus.request(&cmd).await
        }
        .await;
        match result {
            Ok(sent) => {
                let mut data = frames::message_data(&sent.message, self.user_name.as_deref());
                data["duplicate"] = json!(sent.duplicate);
                data["status"] = json!("sent");
                frames::envelope("message_sent", data, Some(self.room_id()))
            }
            Err(e) => frames::error(self.room_id(), e.code.as_str(), &e.message, local_id.as_deref()),
        }
    }

    /// `fetch_messages`: a history page (`after_seq` / `before_seq`, `limit` ≤ 100).
    async fn fetch_messages(&self, data: &Value) -> Result<ByteString, ApiError> {
        let int = |field: &str, min: i64| -> Result<Option<i64>, ApiError> {
            match data.get(field).filter(|v| !v.is_null()) {
                None => Ok(None),
                Some(v) => match v.as_i64() {
                    Some(n) if n >= min => Ok(Some(n)),
                    _ => Err(ApiError::validation(field, format!("{field} must be an integer of at least {min}"))),
                },
            }
        };
        let limit = int("limit", 1)?.unwrap_or(50);
        if limit > 100 {
            return Err(ApiError::validation("limit", "limit must be at most 100"));
        }
        let cmd = ListMessages {
            actor: self.actor.clone(),
            room_id: self.room_id().clone(),
            after_seq: int("after_seq", 0)?,
            before_seq: int("before_seq", 1)?,
            limit: limit as u32,
        };
        let messages = self.state.bus.request(&cmd).await?;
        let items: Vec<Value> = messages.iter().map(|m| frames::message_data(m, None)).collect();
        Ok(frames::envelope("messages", json!({"messages": items}), Some(self.room_id())))
    }
}
