//! One Engine.IO session's task: the Socket.IO namespace `/` on top of it, and the
//! chats it joined, each a socket of the session core's fan-out.
//!
//! One `select!` loop shows every input: the client's packets (from whichever transport
//! carries them), the ping timer and the pong deadline, kicks from the fan-out (a full
//! queue: the session is closed and the client reconnects; removal from a chat: that
//! chat is left), and gateway shutdown (the session is closed so that the client
//! reconnects, to another replica or to this one restarted).
//!
//! `join-chat-room` checks membership with message-store (`GetRoom`, as every dialect's
//! connect does), counts against the tenant's rate limit, and joins the chat through
//! the session core (`gateway_core::session::Membership`: registered with the fan-out,
//! announced to presence), as every socket of every dialect does; typing goes through
//! the session core's [`gateway_core::session::typing`], so every dialect sees it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use chat_domain::ids::RoomId;
use chat_domain::model::Actor;
use chat_domain::proto::store::GetRoom;
use chat_domain::{ApiError, ErrorCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::socketio::codec::chat_arg;
use crate::socketio::engine::{Engine, Incoming};
use crate::socketio::packet::{self, EnginePacket, SocketKind, SocketPacket};
use crate::socketio::state::SocketIo;
use gateway_core::Core;
use gateway_core::admit::Refused;
use gateway_core::fanout::Kick;
use gateway_core::session::codec::Close;
use gateway_core::session::codec::Codec as _;
use gateway_core::session::guard;
use gateway_core::session::queue::Outlet;
use gateway_core::session::{Joined, Membership as RoomMembership};

/// A session that has not connected the namespace by then is closed (socket.io's
/// `connectTimeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(45);

/// What the handshake request said about the caller (`io(url, {query: {...}})`).
#[derive(Debug, Clone, Default)]
pub struct Handshake {
    pub token: Option<String>,
    /// With an API key as the token: the user the caller acts as.
    pub user_id: Option<String>,
    pub user_name: Option<String>,
}

/// The namespace `/`, once connected.
struct Connected {
    actor: Actor,
    user_name: Option<String>,
    rate_limit: u32,
    /// `chat_gateway_connections{dialect="socketio",tenant}`, counted while connected.
    gauge: prometheus::IntGauge,
    /// The session's place under the socket caps, and its revocation watch (whose kick
    /// the `watcher` hands to the session's loop).
    _held: (guard::Slot, guard::Watched),
    watcher: JoinHandle<()>,
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.gauge.dec();
        self.watcher.abort();
    }
}

/// A joined chat: the socket's membership of the room.
struct Membership {
    room: RoomMembership,
    /// The session's end of the chat's queue (kept so the queue stays open).
    _outlet: Outlet,
    /// Waits for the fan-out's kick of this membership.
    watcher: JoinHandle<()>,
}

/// An Engine.IO session's task.
pub struct SocketTask {
    pub state: web::Data<Core>,
    pub io: web::Data<SocketIo>,
    pub engine: Arc<Engine>,
    pub incoming: mpsc::Receiver<Incoming>,
    pub handshake: Handshake,
    /// The client's address (the handshake's TCP peer): failed authentications count
    /// against it (`gateway_core::auth_failures`), as on every other path.
    pub addr: std::net::IpAddr,
}

/// The session's running state.
struct Live {
    connected: Option<Connected>,
    rooms: HashMap<RoomId, Membership>,
    kicks: mpsc::UnboundedSender<(RoomId, Close)>,
    /// Kicks of the whole session: its credential was revoked, or its token expired.
    ends: mpsc::UnboundedSender<Close>,
}

impl SocketTask {
    /// Runs the session to its end, then leaves every chat and forgets the session.
    pub async fn run(mut self) {
        let (kicks_tx, mut kicks) = mpsc::unbounded_channel();
        let (ends_tx, mut ends) = mpsc::unbounded_channel();
        let mut live = Live { connected: None, rooms: HashMap::new(), kicks: kicks_tx, ends: ends_tx };
        let interval = self.io.config.ping_interval;
        let timeout = self.io.config.ping_timeout;
        // An anonymous session lives briefly (`SOCKETIO_ANON_TIMEOUT_MS`): it holds a
        // place in the anonymous table until it connects the namespace.
        let connect_by = Instant::now() + self.io.config.anon_timeout.min(CONNECT_TIMEOUT);
        let mut next_ping = Some(Instant::now() + interval);
        let mut pong_by: Option<Instant> = None;
        let mut shutdown = self.state.shutdown.clone();
        crate::socketio::state::SESSIONS.inc();
        let why = loop {
            let wake_at = [next_ping, pong_by, live.connected.is_none().then_some(connect_by)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(connect_by);
            tokio::select! {
                incoming = self.incoming.recv() => match incoming {
                    None => break "transport gone",
                    Some(Incoming::Closed(why)) => {
                        tracing::debug!(sid = %self.engine.sid, %why, "socket.io transport closed");
                        break "transport closed";
                    }
                    Some(Incoming::Packet(p)) => match p {
                        EnginePacket::Close => break "client closed",
                        EnginePacket::Pong(_) => {
                            pong_by = None;
                            next_ping = Some(Instant::now() + interval);
                        }
                        EnginePacket::Ping(data) => {
                            if !self.engine.push(format!("3{data}")) {
                                break "client not reading";
                            }
                        }
                        EnginePacket::Message(text) => {
                            if let Err(why) = self.message(&mut live, &text).await {
                                tracing::debug!(sid = %self.engine.sid, %why, "socket.io protocol error");
                                break "protocol error";
                            }
                        }
                        EnginePacket::Binary(_) => break "binary attachments are not supported",
                        EnginePacket::Upgrade | EnginePacket::Noop => {}
                    },
                },
                () = tokio::time::sleep_until(wake_at) => {
                    let now = Instant::now();
                    if pong_by.is_some_and(|d| now >= d) {
                        break "ping timeout";
                    }
                    if live.connected.is_none() && now >= connect_by {
                        break "no connect in time";
                    }
                    if next_ping.is_some_and(|d| now >= d) {
                        if !self.engine.push("2") {
                            break "client not reading";
                        }
                        next_ping = None;
                        pong_by = Some(now + timeout);
                    }
                }
                Some((room, why)) = kicks.recv() => match why {
                    // Memberships are kicked only as too slow or removed; revocation
                    // kicks the whole session (`ends`).
                    Close::Slow | Close::Revoked | Close::Expired | Close::TooMany => break "slow consumer",
                    Close::Removed => {
                        // The fan-out tells the others; the removed participant hears
                        // it here, then the chat is left.
                        if let Some(me) = &live.connected {
                            let event = json!({"chatId": room.as_str(), "participantId": me.actor.user_id.as_str()});
                            if !self.engine.push(packet::event("participant-removed", &event)) {
                                break "client not reading";
                            }
                        }
                        self.leave(&mut live, &room).await;
                    }
                },
                Some(why) = ends.recv() => {
                    // Revocation reaches the session: the client hears why as a
                    // `connect_error` (socket.io-client then gives the socket up rather
                    // than reconnecting with the same credential), then it closes.
                    let _ = self.engine.push(packet::connect_error("/", why.reason()));
                    break if why == Close::Expired { "token expired" } else { "credential revoked" };
                }
                _ = shutdown.wait_for(|stop| *stop) => break "server shutting down",
            }
        };
        tracing::debug!(sid = %self.engine.sid, why, "socket.io session ends");
        let rooms: Vec<RoomId> = live.rooms.keys().cloned().collect();
        for room in rooms {
            self.leave(&mut live, &room).await;
        }
        self.engine.close();
        self.io.sessions.remove(&self.engine.sid);
        crate::socketio::state::SESSIONS.dec();
    }

    /// One Socket.IO packet; `Err` ends the session (malformed, or unsupported).
    async fn message(&self, live: &mut Live, text: &str) -> Result<(), String> {
        let p = SocketPacket::parse(text).map_err(|e| e.0)?;
        if p.namespace != "/" {
            if p.kind == SocketKind::Connect {
                self.push(packet::connect_error(&p.namespace, "Invalid namespace"))?;
            }
            return Ok(());
        }
        match p.kind {
            SocketKind::Connect => self.connect(live, p.data).await,
            SocketKind::Disconnect => {
                let rooms: Vec<RoomId> = live.rooms.keys().cloned().collect();
                for room in rooms {
                    self.leave(live, &room).await;
                }
                live.connected = None;
                Ok(())
            }
            SocketKind::Event => self.event(live, p.ack_id, p.data).await,
            // The server asks for no acks; a client's connect error is not for it.
            SocketKind::Ack | SocketKind::ConnectError => Ok(()),
            SocketKind::BinaryEvent | SocketKind::BinaryAck => Err("binary events are not supported".to_owned()),
        }
    }

    fn push(&self, packet: String) -> Result<(), String> {
        if self.engine.push(packet) { Ok(()) } else { Err("the client is not reading".to_owned()) }
    }

    /// `40{auth}`: admits the caller with `auth.token` (or the handshake's `token`).
    async fn connect(&self, live: &mut Live, auth: Option<Value>) -> Result<(), String> {
        let auth_str = |name: &str| auth.as_ref().and_then(|a| a.get(name)).and_then(Value::as_str).map(str::to_owned);
        let token = auth_str("token").or_else(|| self.handshake.token.clone());
        let user = auth_str("userId").or_else(|| self.handshake.user_id.clone());
        let name = auth_str("userName").or_else(|| self.handshake.user_name.clone());
        match gateway_core::admit::admit_from(&self.state, Some(self.addr), token.as_deref(), user.as_deref()).await {
            Ok(admitted) => {
                let actor = Actor { tenant_id: admitted.tenant.tenant_id.clone(), user_id: admitted.user.clone() };
                let Some(slot) = self.state.guards.caps.acquire(&actor) else {
                    return self.push(packet::connect_error("/", Close::TooMany.reason()));
                };
                // Authenticated: out of the anonymous table, into the sessions' (both
                // bounded apart: `state::Sessions`).
                if !self.io.sessions.authenticate(&self.engine.sid, self.io.config.max_sessions) {
                    return self.push(packet::connect_error("/", "Too many sessions; try again later"));
                }
                let requested = name.as_deref().and_then(chat_domain::model::display_name);
                let user_name = guard::display_name(&self.state, &admitted, requested).await;
                let kick = Arc::new(Kick::default());
                let watched = self.state.guards.watches.watch(&admitted, kick.clone());
                let ends = live.ends.clone();
                let watcher = tokio::spawn(async move {
                    let _ = ends.send(kick.kicked().await);
                });
                let gauge = gateway_core::metrics::CONNECTIONS
                    .with_label_values(&[self.io.codec.name(), actor.tenant_id.as_str()]);
                gauge.inc();
                live.connected = Some(Connected {
                    actor,
                    user_name,
                    rate_limit: admitted.tenant.rate_limit_per_sec,
                    gauge,
                    _held: (slot, watched),
                    watcher,
                });
                self.push(packet::connected(&self.engine.sid))
            }
            Err(refused) => {
                let message = match refused {
                    Refused::Unauthenticated(e) | Refused::BadUser(e) | Refused::Unavailable(e) => e.message,
                    Refused::RateLimited => "Rate limit exceeded".to_owned(),
                };
                self.push(packet::connect_error("/", &message))
            }
        }
    }

    /// `42[name, ...args]`, answered with an ack when the client asked for one.
    async fn event(&self, live: &mut Live, ack_id: Option<u64>, data: Option<Value>) -> Result<(), String> {
        let Some(Value::Array(items)) = data else { return Err("an event that is not an array".to_owned()) };
        let Some((Value::String(name), args)) = items.split_first() else {
            return Err("an event without a name".to_owned());
        };
        let Some(me) = &live.connected else {
            // Not connected to `/` (refused, or disconnected): socket.io ignores it too.
            return Ok(());
        };
        // Every event counts against the user's and the tenant's budgets; a refused one
        // is answered `RATE_LIMIT_EXCEEDED` when it asks for an ack, else dropped.
        let refused = if !self.state.guards.actions.allow(&me.actor) {
            Some(guard::too_many_actions())
        } else {
            let decision = self.state.limiter.check(&me.actor.tenant_id, me.rate_limit).await;
            (!decision.allowed).then(|| gateway_core::admit::rate_limited(&decision))
        };
        let outcome = match (refused, name.as_str()) {
            (Some(e), _) => Err(e),
            (None, name) => self.dispatch(live, name, args).await,
        };
        match ack_id {
            Some(id) => {
                let answer = match outcome {
                    Ok(()) => json!({"ok": true}),
                    Err(e) => json!({"ok": false, "error": e.message, "code": e.code.as_str()}),
                };
                self.push(packet::ack(id, &answer))
            }
            None => Ok(()),
        }
    }

    /// Carries out one event of a connected session.
    async fn dispatch(&self, live: &mut Live, name: &str, args: &[Value]) -> Result<(), ApiError> {
        match name {
            "join-chat-room" => self.join(live, args).await,
            "leave-chat-room" => match chat_arg(args) {
                Ok(room) => {
                    self.leave(live, &room).await;
                    Ok(())
                }
                Err(e) => Err(e),
            },
            "typing-start" | "typing-stop" => self.typing(live, args, name == "typing-start").await,
            _ => Err(ApiError::validation("event", format!("Unknown event {name:?}"))),
        }
    }

    /// `join-chat-room`: participants only; the chat's events flow from now on.
    async fn join(&self, live: &mut Live, args: &[Value]) -> Result<(), ApiError> {
        let room_id = chat_arg(args)?;
        let Some(me) = &live.connected else { return Err(ApiError::authentication("Not connected")) };
        if live.rooms.contains_key(&room_id) {
            return Ok(());
        }
        let room =
            self.state.bus.request(&GetRoom { actor: me.actor.clone(), room_id }).await.map_err(|e| match e.code {
                ErrorCode::NotFound => ApiError::not_found("Chat not found"),
                ErrorCode::Forbidden => ApiError::forbidden("You are not a participant of this chat"),
                _ => e,
            })?;
        let joined = RoomMembership::join(&self.state, &me.actor, &room, self.io.codec, me.user_name.as_deref())
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "could not register a socket.io membership");
                ApiError::unavailable("Could not join the chat; try again")
            })?;
        let Joined { membership, outlet, receiver } = joined;
        outlet.open();
        self.engine.add_room(room.room_id.clone(), receiver);
        if let Err(e) = membership.announce(me.user_name.clone()).await {
            tracing::warn!(error = %e, "presence unavailable at join");
        }
        let (kicks, chat, kick) = (live.kicks.clone(), room.room_id.clone(), membership.kick().clone());
        let watcher = tokio::spawn(async move {
            let why = kick.kicked().await;
            let _ = kicks.send((chat, why));
        });
        live.rooms.insert(room.room_id, Membership { room: membership, _outlet: outlet, watcher });
        Ok(())
    }

    /// Leaves a chat (nothing when not joined).
    async fn leave(&self, live: &mut Live, room: &RoomId) {
        let (Some(m), Some(_)) = (live.rooms.remove(room), &live.connected) else { return };
        m.watcher.abort();
        self.engine.remove_room(room);
        m.room.leave().await;
    }

    /// `typing-start` / `typing-stop` in a joined chat.
    async fn typing(&self, live: &Live, args: &[Value], is_typing: bool) -> Result<(), ApiError> {
        let room = chat_arg(args)?;
        let Some(me) = &live.connected else { return Err(ApiError::authentication("Not connected")) };
        if !live.rooms.contains_key(&room) {
            return Err(ApiError::forbidden("Join the chat first"));
        }
        gateway_core::session::typing(&self.state, &me.actor, &room, me.user_name.clone(), is_typing).await
    }
}
