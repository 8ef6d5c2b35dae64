//! The protocol-neutral session core: everything one WebSocket connection has, whatever
//! dialect it speaks — identity, room, bounded outgoing queue, resume, presence,
//! typing, receipts, keep-alive, slow-consumer and removal kicks, graceful shutdown.
//!
//! A dialect is a [`codec::Codec`]: it turns client frames into [`command::Command`]s
//! and renders [`command::Reply`]s and events; the session does the rest, the same way
//! for every dialect. One `select!` loop per connection shows every input: the
//! client's frames, the keep-alive timer, a kick, and gateway shutdown. The room's
//! frames do not pass through the session: the fan-out queues them and the
//! connection's response body writes them (`transport`).
//!
//! - `codec`: the dialect trait. `command`: commands and replies.
//! - `queue`: the socket's outgoing frames (the fan-out's lane and the session's own).
//! - `transport`: the handshake, the response body that writes the queue, the
//!   client's frames.
//! - `upgraded`: the connection itself once its handshake left actix-http's HTTP/1
//!   dispatcher (no buffers kept while idle).
//! - `connect`: refusing or starting a connection, for every WebSocket endpoint.
//! - `membership`: a socket's place in one room — registered with the fan-out,
//!   announced to presence, and both undone at the end — for every socket of every
//!   dialect (a Socket.IO session holds one per chat it joined).

pub mod codec;
pub mod command;
pub mod connect;
pub mod guard;
mod membership;
pub mod queue;
pub mod relay;
pub mod transport;
pub mod upgraded;

pub use membership::{Joined, Membership, Online};

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web;
use actix_ws::{CloseCode, CloseReason, Message as WsMessage};
use bytes::Bytes;
use bytestring::ByteString;
use chat_domain::ids::RoomId;
use chat_domain::model::{Actor, Room};
use chat_domain::proto::moderation::CheckSpeak;
use chat_domain::proto::notify::TakeInbox;
use chat_domain::proto::presence::{GetOnline, SetTyping};
use chat_domain::proto::reactions::{AddReaction, RemoveReaction};
use chat_domain::proto::store::{ListMessages, MoveCursor, OlderMessages, ReadMessages, SendMessage};
use chat_domain::{ApiError, ErrorCode};

use self::codec::{Codec, Rejected};
use self::command::{Command, History, Older, Reply};
use self::queue::{Outlet, Own};
use self::transport::Inlet;
use crate::fanout::Kick;
use crate::state::Core;

/// Consecutive bad frames (malformed, unknown), or oversized ones, tolerated before
/// closing; a valid frame starts the count again.
const MAX_BAD_FRAMES: u32 = 5;
/// Longest the session waits for room in its own lane before the socket counts as
/// stuck (its client stopped reading).
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages per page of a resume replay.
const REPLAY_PAGE: u32 = 100;
/// Most threads whose summary a resume sends (one request each); a client resuming
/// after more than this many threads changed reads the rest with their messages.
const MAX_REPLAYED_THREADS: usize = 20;

fn close(code: u16, description: &str) -> Option<CloseReason> {
    Some(CloseReason { code: CloseCode::Other(code), description: Some(description.to_owned()) })
}

/// Why the loop ended, and how to close.
enum End {
    Close(Option<CloseReason>),
    Gone,
}

/// What woke the session's loop.
enum Input {
    Frame(Option<Result<WsMessage, transport::Broken>>),
    Tick,
    Shutdown,
}

/// What the loop counts across inputs.
struct Count {
    last_heard: Instant,
    /// Consecutive invalid frames, and oversized ones.
    bad_frames: u32,
    oversized: u32,
}

/// Sends the close frame, then gives the client a moment to answer it, so it reads
/// our code instead of a reset connection.
async fn close_with(outlet: &Outlet, inlet: &mut Inlet, reason: Option<CloseReason>) {
    if outlet.send(Own::Close(reason), Duration::from_secs(1)).await {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(Ok(m)) = inlet.recv().await {
                if matches!(m, WsMessage::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// One admitted connection to one room.
pub struct Session {
    pub state: web::Data<Core>,
    pub codec: &'static dyn Codec,
    pub actor: Actor,
    /// Shown to others with the user's messages and typing.
    pub user_name: Option<String>,
    pub room: Room,
    /// Resume point: deliver every message after this `seq` first.
    pub resume_after: Option<i64>,
    /// The tenant's requests per second, for frames that count against it.
    pub rate_limit: u32,
    /// What this socket was pushed (the response body records it), for dialects whose
    /// delivered receipts the gateway records itself (see [`Codec::acks_delivery`]).
    pub delivered: Option<Arc<crate::fanout::receipts::Slot>>,
    /// Its place under the socket caps and its revocation watch, both given back when
    /// the session ends.
    _held: (guard::Slot, guard::Watched),
}

impl Session {
    /// Runs the connection to its end, then leaves the room.
    pub async fn run(self, membership: Membership, outlet: Outlet, mut inlet: Inlet) {
        let kick = membership.kick().clone();
        let connections =
            crate::metrics::CONNECTIONS.with_label_values(&[self.codec.name(), self.actor.tenant_id.as_str()]);
        crate::metrics::SOCKETS.inc();
        connections.inc();
        let end = self.serve(&outlet, &mut inlet, &kick, &membership).await;
        crate::metrics::SOCKETS.dec();
        connections.dec();
        // Boxed, as everything the socket does besides waiting: a future awaited inline
        // would be part of every idle socket's task for its whole life.
        Box::pin(membership.leave()).await;
        if let End::Close(reason) = end {
            Box::pin(close_with(&outlet, &mut inlet, reason)).await;
        }
    }

    /// Queues a frame of the session's own; `false` when the socket is gone or stuck.
    async fn send(&self, outlet: &Outlet, text: ByteString) -> bool {
        outlet.send(Own::Text(text), SEND_TIMEOUT).await
    }

    /// Renders and queues a reply; `false` when the socket is gone.
    async fn answer(&self, outlet: &Outlet, reply: &Reply) -> bool {
        match self.codec.reply(&self.room.room_id, reply) {
            Some(frame) => self.send(outlet, frame).await,
            None => true,
        }
    }

    async fn serve(&self, outlet: &Outlet, inlet: &mut Inlet, kick: &Arc<Kick>, membership: &Membership) -> End {
        let cfg = &self.state.ws;
        // Boxed: the greeting's futures would otherwise live in every socket's task for
        // the socket's whole life.
        if !Box::pin(self.greet(outlet, membership)).await {
            return End::Gone;
        }
        // Greeted (and replayed): the room's frames may flow.
        outlet.open();
        let mut ping = tokio::time::interval(cfg.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut count = Count { last_heard: Instant::now(), bad_frames: 0, oversized: 0 };
        let mut shutdown = self.state.shutdown.clone();
        loop {
            // Only what is awaited while idle lives here; each input is handled in a boxed
            // future that exists while it runs (`step`).
            let input = tokio::select! {
                frame = inlet.recv() => Input::Frame(frame),
                _ = ping.tick() => Input::Tick,
                why = kick.kicked() => {
                    return End::Close(close(self.codec.close_code(why), why.reason()));
                }
                _ = shutdown.wait_for(|stop| *stop) => Input::Shutdown,
            };
            if let Some(end) = Box::pin(self.step(input, outlet, &mut count, membership)).await {
                return end;
            }
        }
    }

    /// Handles one input of the loop; `Some` when the connection ends.
    async fn step(&self, input: Input, outlet: &Outlet, count: &mut Count, membership: &Membership) -> Option<End> {
        let cfg = &self.state.ws;
        match input {
            Input::Frame(frame) => {
                count.last_heard = Instant::now();
                self.frame(frame, outlet, count, membership).await
            }
            Input::Tick => {
                if count.last_heard.elapsed() > cfg.idle_timeout {
                    return Some(End::Close(close(1001, "idle timeout")));
                }
                if !outlet.send(Own::Ping(Bytes::new()), SEND_TIMEOUT).await {
                    return Some(End::Gone);
                }
                if let Some(beat) = self.codec.heartbeat()
                    && !self.send(outlet, beat).await
                {
                    return Some(End::Gone);
                }
                None
            }
            Input::Shutdown => {
                let _ = self.answer(outlet, &Reply::Reconnect { delay_ms: self.reconnect_delay_ms() }).await;
                Some(End::Close(Some(CloseReason {
                    code: CloseCode::Away,
                    description: Some("server shutting down".to_owned()),
                })))
            }
        }
    }

    /// Handles one of the client's frames; `Some` when the connection ends.
    async fn frame(
        &self,
        frame: Option<Result<WsMessage, transport::Broken>>,
        outlet: &Outlet,
        count: &mut Count,
        membership: &Membership,
    ) -> Option<End> {
        let cfg = &self.state.ws;
        match frame {
            None => Some(End::Gone),
            Some(Err(broken)) => {
                tracing::debug!(error = %broken, "websocket protocol error");
                Some(match broken.close() {
                    Some((code, why)) => End::Close(close(code, why)),
                    None => End::Gone,
                })
            }
            Some(Ok(WsMessage::Text(text))) => {
                if text.len() > cfg.max_frame_bytes {
                    count.oversized += 1;
                    if count.oversized >= MAX_BAD_FRAMES {
                        return Some(End::Close(close(1009, "repeated oversized frames")));
                    }
                    let e = ApiError::new(
                        ErrorCode::PayloadTooLarge,
                        format!("Frame larger than {} bytes", cfg.max_frame_bytes),
                    );
                    return (!self.answer(outlet, &Reply::Error(e)).await).then_some(End::Gone);
                }
                // Nothing nested past what every reply can wrap and still read back
                // reaches a codec.
                let decoded = if chat_domain::json::nests_deeper_than(text.as_bytes(), chat_domain::json::MAX_DEPTH) {
                    Err(Rejected::Frame(chat_domain::json::too_deep("frame")))
                } else if let Some(n) = chat_domain::json::unfaithful_number(text.as_bytes()) {
                    // Nor a number that would not read back as written.
                    Err(Rejected::Frame(chat_domain::json::unfaithful("frame", &n)))
                } else {
                    self.codec.decode(&text, &self.room.room_id)
                };
                let reply = match decoded {
                    Ok(command) => {
                        // A valid frame ends a run of bad or oversized ones.
                        count.bad_frames = 0;
                        count.oversized = 0;
                        Box::pin(self.handle(command, membership)).await
                    }
                    Err(rejected) => {
                        count.bad_frames += 1;
                        if count.bad_frames >= MAX_BAD_FRAMES {
                            return Some(End::Close(close(1008, "repeated invalid frames")));
                        }
                        Some(match rejected {
                            Rejected::Send { error, local_id } => Reply::SendFailed { error, local_id },
                            Rejected::Frame(error) => Reply::Error(error),
                        })
                    }
                };
                match reply {
                    Some(reply) if !self.answer(outlet, &reply).await => Some(End::Gone),
                    _ => None,
                }
            }
            Some(Ok(WsMessage::Binary(_))) => {
                count.bad_frames += 1;
                if count.bad_frames >= MAX_BAD_FRAMES {
                    return Some(End::Close(close(1003, "binary frames are not supported")));
                }
                let e = ApiError::validation("frame", "Binary frames are not supported; send JSON text");
                (!self.answer(outlet, &Reply::Error(e)).await).then_some(End::Gone)
            }
            Some(Ok(WsMessage::Ping(bytes))) => {
                (!outlet.send(Own::Pong(bytes), SEND_TIMEOUT).await).then_some(End::Gone)
            }
            Some(Ok(WsMessage::Close(_))) => Some(End::Close(None)),
            Some(Ok(_)) => None,
        }
    }

    /// Registers with presence, greets with who is online, sends what arrived while
    /// the user was away and replays from the resume point. `false` when the socket is
    /// gone.
    async fn greet(&self, outlet: &Outlet, membership: &Membership) -> bool {
        let online = membership.announce(self.user_name.clone()).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "presence unavailable at connect");
            Online { users: vec![self.actor.user_id.clone()], total: None }
        });
        if !self.answer(outlet, &self.online(online.users, online.total)).await {
            return false;
        }
        // What arrived for this user while they were away.
        let take = TakeInbox { tenant_id: self.actor.tenant_id.clone(), user_id: self.actor.user_id.clone() };
        match self.state.bus.request(&take).await {
            Ok(items) => {
                for item in items {
                    if !self.answer(outlet, &Reply::Notification(item)).await {
                        return false;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "inbox unavailable at connect"),
        }
        // Resume: everything after the resume point, then the live stream without repeats.
        match self.resume_after {
            Some(after) => self.replay(outlet, after).await,
            None => true,
        }
    }

    /// `total` when `online` is not the whole list (a big room's greeting).
    fn online(&self, online: Vec<chat_domain::UserId>, total: Option<u64>) -> Reply {
        Reply::Online {
            user_id: self.actor.user_id.clone(),
            online,
            total_participants: self.room.member_count,
            total_online: total,
        }
    }

    /// A reconnect delay spread over the configured window, so sockets do not all
    /// come back at once.
    fn reconnect_delay_ms(&self) -> u64 {
        let spread = self.state.ws.reconnect_spread_ms.max(1);
        let h = self.actor.user_id.as_str().bytes().fold(17u64, |a, b| a.wrapping_mul(31).wrapping_add(u64::from(b)));
        500 + h % spread
    }

    /// Sends every message after `after` (each counts as sent, so the live lane skips
    /// it); `false` when the socket is gone.
    async fn replay(&self, outlet: &Outlet, after: i64) -> bool {
        // Threads replied in while the socket was away (their top-level message may be
        // one it had already seen): their summaries follow the replay (`thread.updated`).
        let mut threads: Vec<chat_domain::ids::MessageId> = Vec::new();
        let replayed = self.replay_messages(outlet, after, &mut threads).await;
        replayed && self.replay_threads(outlet, threads).await
    }

    /// The current summary of each thread in `parents`, as `thread.updated` frames.
    async fn replay_threads(&self, outlet: &Outlet, parents: Vec<chat_domain::ids::MessageId>) -> bool {
        for parent in parents {
            // A page after the newest possible `seq`: the parent alone, and no read marked.
            let ask = chat_domain::proto::threads::GetThread {
                actor: self.actor.clone(),
                room_id: self.room.room_id.clone(),
                message_id: parent,
                after_seq: Some(i64::MAX),
                limit: 1,
            };
            let Ok(page) = self.state.bus.request(&ask).await else { continue };
            let update = chat_domain::proto::events::ThreadUpdated {
                message_id: page.parent.message_id.clone(),
                seq: page.parent.seq,
                thread: page.parent.thread.clone(),
            };
            let event = chat_domain::proto::events::RoomEvent::new(
                &self.actor.tenant_id,
                &self.room.room_id,
                chat_domain::time::now(),
                chat_domain::proto::events::RoomEventBody::ThreadUpdated(update),
            );
            if let Some(frame) = self.codec.room_event(&event)
                && !self.send(outlet, frame).await
            {
                return false;
            }
        }
        true
    }

    async fn replay_messages(
        &self,
        outlet: &Outlet,
        mut after: i64,
        threads: &mut Vec<chat_domain::ids::MessageId>,
    ) -> bool {
        loop {
            let page = ListMessages {
                actor: self.actor.clone(),
                room_id: self.room.room_id.clone(),
                after_seq: Some(after),
                before_seq: None,
                limit: REPLAY_PAGE,
                without_replies: false,
            };
            let messages = match self.state.bus.request(&page).await {
                Ok(m) => m,
                Err(e) => return self.answer(outlet, &Reply::Error(e)).await,
            };
            let full = messages.len() == REPLAY_PAGE as usize;
            for m in messages {
                after = m.seq;
                if let Some(parent) = &m.parent_id
                    && threads.len() < MAX_REPLAYED_THREADS
                    && !threads.contains(parent)
                {
                    threads.push(parent.clone());
                }
                let frame = Own::Replayed { seq: m.seq, text: self.codec.message(&m, None) };
                if !outlet.send(frame, SEND_TIMEOUT).await {
                    return false;
                }
            }
            if !full {
                return true;
            }
        }
    }

    /// A command refused by the user's or the tenant's budget: `Some` with the reply
    /// (nothing for a refused keep-alive), `None` when it may go ahead. Sends count
    /// against the tenant where they are stored ([`Self::send_message`]), keep-alives
    /// only against the user.
    async fn refuse(&self, command: &Command) -> Option<Option<Reply>> {
        let error = if !self.state.guards.actions.allow(&self.actor) {
            guard::too_many_actions()
        } else if matches!(command, Command::KeepAlive | Command::Send(_)) {
            return None;
        } else {
            let decision = self.state.limiter.check(&self.actor.tenant_id, self.rate_limit).await;
            if decision.allowed {
                return None;
            }
            crate::admit::rate_limited(&decision)
        };
        Some(match command {
            Command::KeepAlive => None,
            Command::Send(send) => Some(Reply::SendFailed { error, local_id: send.local_id.clone() }),
            _ => Some(Reply::Error(error)),
        })
    }

    /// Carries out one command; the reply to send, if any.
    async fn handle(&self, command: Command, membership: &Membership) -> Option<Reply> {
        if let Some(refused) = self.refuse(&command).await {
            return refused;
        }
        let result = match command {
            Command::Ping => Ok(Some(Reply::Pong)),
            Command::KeepAlive => Ok(None),
            Command::Typing(is_typing) => self.typing(is_typing).await.map(|()| None),
            Command::OnlineUsers => self
                .state
                .bus
                .request(&GetOnline { tenant_id: self.actor.tenant_id.clone(), room_id: self.room.room_id.clone() })
                .await
                // As the greeting: the users the actor blocks are not shown online.
                .map(|o| Some(self.online(membership.visible(o.online_users), None))),
            Command::Send(send) => return Some(self.send_message(send).await),
            Command::History(History { after_seq, before_seq, limit }) => {
                let cmd = ListMessages {
                    actor: self.actor.clone(),
                    room_id: self.room.room_id.clone(),
                    after_seq,
                    before_seq,
                    limit,
                    without_replies: false,
                };
                self.state.bus.request(&cmd).await.map(|page| Some(Reply::History(page)))
            }
            Command::Cursor { kind, seq } => {
                let cmd = MoveCursor { actor: self.actor.clone(), room_id: self.room.room_id.clone(), kind, seq };
                self.state.bus.request(&cmd).await.map(|c| Some(Reply::Cursor(c)))
            }
            Command::ReadMessages(message_ids) => {
                // What this socket was shown is delivered before it is read.
                if let Some(slot) = &self.delivered
                    && let Err(e) = slot.flush(&self.state.bus).await
                {
                    tracing::warn!(error = %e, "could not record delivered receipts before a read");
                }
                let cmd = ReadMessages { actor: self.actor.clone(), room_id: self.room.room_id.clone(), message_ids };
                self.state.bus.request(&cmd).await.map(|c| Some(Reply::Cursor(c)))
            }
            Command::Older(Older { before_id, limit }) => {
                let cmd =
                    OlderMessages { actor: self.actor.clone(), room_id: self.room.room_id.clone(), before_id, limit };
                self.state.bus.request(&cmd).await.map(|page| Some(Reply::Older(page)))
            }
            Command::React(command::React { message_id, emoji, add }) => {
                let (actor, room_id) = (self.actor.clone(), self.room.room_id.clone());
                let change = if add {
                    self.state.bus.request(&AddReaction { actor, room_id, message_id, emoji }).await
                } else {
                    self.state.bus.request(&RemoveReaction { actor, room_id, message_id, emoji }).await
                };
                change.map(|c| Some(Reply::Reacted(c)))
            }
        };
        result.unwrap_or_else(|e| Some(Reply::Error(e)))
    }

    async fn typing(&self, is_typing: bool) -> Result<(), ApiError> {
        typing(&self.state, &self.actor, &self.room.room_id, self.user_name.clone(), is_typing).await
    }

    /// Stores a message (counted against the tenant's rate limit).
    async fn send_message(&self, send: command::Send) -> Reply {
        let decision = self.state.limiter.check(&self.actor.tenant_id, self.rate_limit).await;
        if !decision.allowed {
            return Reply::SendFailed { error: crate::admit::rate_limited(&decision), local_id: send.local_id };
        }
        let cmd = SendMessage {
            actor: self.actor.clone(),
            room_id: self.room.room_id.clone(),
            content: send.content,
            sender_name: self.user_name.clone(),
            meta: send.meta,
            client_msg_id: send.local_id.clone(),
            kind: chat_domain::model::MessageKind::Text,
            reply_to: None,
            attachments: Vec::new(),
            parent_id: send.parent_id,
            mentions: send.mentions,
        };
        // A socket's send starts its message's trace, as a REST request's span does.
        let span = tracing::info_span!("ws_send", dialect = self.codec.name(), room = %self.room.room_id);
        match tracing::Instrument::instrument(self.state.sends.send(cmd), span).await {
            Ok(sent) => Reply::Sent { sent, sender_name: self.user_name.clone() },
            Err(error) => Reply::SendFailed { error, local_id: send.local_id },
        }
    }
}

/// Tells presence that `actor` started or stopped typing in `room`, without waiting
/// for presence (typing is best effort and frequent). Every dialect's typing goes
/// through here. Starting to type is refused to a muted member (`MUTED`, asked of
/// message-store, which holds the mutes); stopping always passes.
pub async fn typing(
    state: &Core,
    actor: &Actor,
    room: &RoomId,
    user_name: Option<String>,
    is_typing: bool,
) -> Result<(), ApiError> {
    if is_typing {
        state.bus.request(&CheckSpeak { actor: actor.clone(), room_id: room.clone() }).await?;
    }
    let cmd = SetTyping {
        tenant_id: actor.tenant_id.clone(),
        room_id: room.clone(),
        user_id: actor.user_id.clone(),
        user_name,
        is_typing,
    };
    let bus = state.bus.clone();
    tokio::spawn(async move {
        if let Err(e) = bus.request(&cmd).await {
            tracing::warn!(error = %e, "typing signal failed");
        }
    });
    Ok(())
}
