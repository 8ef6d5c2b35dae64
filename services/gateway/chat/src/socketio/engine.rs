//! One Engine.IO session (`sid`): what the server has to say to the client, whichever
//! transport carries it, and the client's packets on their way to the session's task.
//!
//! Outgoing packets come from two places, as on every other socket of the gateway:
//! - the session's **own** lane (the open packet, pings, connect answers, acks), bounded
//!   by [`OWN_BOUND`]: a client that reads nothing for that long is cut off;
//! - one **room queue** per joined chat (`fanout`'s bounded live lane: a full one kicks
//!   the session as too slow, and nobody else waits).
//!
//! A reader — a long-polling `GET`, or the WebSocket's response body after the upgrade —
//! takes everything there is in one go ([`Engine::poll_take`]), own lane first. Only one
//! reader at a time: a second concurrent `GET` is a protocol error, as in socket.io.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytestring::ByteString;
use chat_domain::ids::RoomId;
use tokio::sync::mpsc;

use crate::socketio::packet::EnginePacket;
use gateway_core::session::queue;

/// Packets the session may have waiting in its own lane; more means the client
/// stopped reading (the session is closed).
pub const OWN_BOUND: usize = 256;
/// Client packets waiting for the session's task; a transport waits for room (the
/// client's sends slow down, nothing is dropped).
pub const INCOMING_BOUND: usize = 64;

/// Which transport carries the session's packets to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Polling,
    WebSocket,
}

/// Who asks for packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    Polling,
    WebSocket,
}

/// What the client sent, or that its transport went away.
#[derive(Debug)]
pub enum Incoming {
    Packet(EnginePacket),
    /// The transport carrying the session closed (or broke the protocol).
    Closed(String),
}

/// What a reader takes in one go.
#[derive(Debug, Default)]
pub struct Taken {
    pub packets: Vec<ByteString>,
    /// The session is over: after these packets, the close packet.
    pub close: bool,
}

/// Why a polling request cannot read.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Another `GET` of this session is waiting.
    Overlap,
    /// The session moved to WebSocket.
    Upgraded,
}

struct Inner {
    own: VecDeque<ByteString>,
    rooms: Vec<(RoomId, queue::Receiver)>,
    transport: Transport,
    /// A polling `GET` is waiting.
    polling: bool,
    /// A WebSocket probe was answered and the client has not switched yet: polling
    /// reads end at once (with a noop when there is nothing else), so the client can
    /// pause polling and send `5` — it waits for its current read to end first.
    upgrading: bool,
    /// A WebSocket probe is to be answered with `3probe`.
    probe: bool,
    closed: bool,
    poll_waker: Option<Waker>,
    ws_waker: Option<Waker>,
}

/// One Engine.IO session.
pub struct Engine {
    pub sid: String,
    inner: Mutex<Inner>,
    incoming: mpsc::Sender<Incoming>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("sid", &self.sid).finish()
    }
}

fn wake_all(mut inner: MutexGuard<'_, Inner>) {
    let wakers = [inner.poll_waker.take(), inner.ws_waker.take()];
    drop(inner);
    for w in wakers.into_iter().flatten() {
        w.wake();
    }
}

impl Engine {
    /// A session on `transport`; the receiver is its task's.
    pub fn new(sid: String, transport: Transport) -> (Arc<Self>, mpsc::Receiver<Incoming>) {
        let (tx, rx) = mpsc::channel(INCOMING_BOUND);
        let inner = Inner {
            own: VecDeque::new(),
            rooms: Vec::new(),
            transport,
            polling: false,
            upgrading: false,
            probe: false,
            closed: false,
            poll_waker: None,
            ws_waker: None,
        };
        (Arc::new(Self { sid, inner: Mutex::new(inner), incoming: tx }), rx)
    }

    fn lock(&self) -> Option<MutexGuard<'_, Inner>> {
        self.inner.lock().ok()
    }

    /// Hands a client packet to the session's task, waiting while it is busy; `false`
    /// when the session is over.
    pub async fn deliver(&self, incoming: Incoming) -> bool {
        self.incoming.send(incoming).await.is_ok()
    }

    /// Queues one of the session's own packets; `false` when the session is closed or
    /// the client has not read [`OWN_BOUND`] of them.
    pub fn push(&self, packet: impl Into<ByteString>) -> bool {
        let Some(mut inner) = self.lock() else { return false };
        if inner.closed || inner.own.len() >= OWN_BOUND {
            return false;
        }
        inner.own.push_back(packet.into());
        wake_all(inner);
        true
    }

    /// Adds a joined chat's queue (its live frames flow to whichever transport reads).
    pub fn add_room(&self, room: RoomId, receiver: queue::Receiver) {
        if let Some(mut inner) = self.lock() {
            inner.rooms.retain(|(r, _)| *r != room);
            inner.rooms.push((room, receiver));
            wake_all(inner);
        }
    }

    /// Drops a chat's queue (the fan-out's offers to it are refused from now on).
    pub fn remove_room(&self, room: &RoomId) {
        if let Some(mut inner) = self.lock() {
            inner.rooms.retain(|(r, _)| r != room);
        }
    }

    /// Ends the session from outside its task: the task is told (it leaves its chats
    /// and forgets the session) and readers get the close packet.
    pub fn end(&self, why: &str) {
        let _ = self.incoming.try_send(Incoming::Closed(why.to_owned()));
        self.close();
    }

    /// Ends the session: readers get what is queued, then the close packet.
    pub fn close(&self) {
        if let Some(mut inner) = self.lock() {
            inner.closed = true;
            wake_all(inner);
        }
    }

    pub fn transport(&self) -> Option<Transport> {
        self.lock().map(|i| i.transport)
    }

    /// A WebSocket probe arrived: answer it on the WebSocket, and end polling reads at
    /// once until the client switches, so it can pause polling.
    pub fn probe(&self) {
        if let Some(mut inner) = self.lock() {
            inner.probe = true;
            inner.upgrading = true;
            wake_all(inner);
        }
    }

    /// The probing WebSocket went away before the switch: polling goes on as before.
    pub fn probe_failed(&self) {
        if let Some(mut inner) = self.lock() {
            inner.upgrading = false;
        }
    }

    /// The client switched to the WebSocket: it carries everything from now on.
    pub fn upgrade(&self) {
        if let Some(mut inner) = self.lock() {
            inner.transport = Transport::WebSocket;
            inner.upgrading = false;
            wake_all(inner);
        }
    }

    /// Starts a polling read (one at a time), ended by dropping the guard.
    pub fn begin_poll(self: &Arc<Self>) -> Result<PollGuard, Refused> {
        let Some(mut inner) = self.lock() else { return Err(Refused::Upgraded) };
        if inner.transport == Transport::WebSocket {
            return Err(Refused::Upgraded);
        }
        if inner.polling {
            return Err(Refused::Overlap);
        }
        inner.polling = true;
        Ok(PollGuard(self.clone()))
    }

    /// Everything there is for `reader`, or `Pending` (woken when there is more).
    pub fn poll_take(&self, reader: Reader, cx: &mut Context<'_>) -> Poll<Taken> {
        let Some(mut inner) = self.lock() else { return Poll::Ready(Taken { packets: Vec::new(), close: true }) };
        match reader {
            Reader::Polling => {
                if inner.transport == Transport::WebSocket {
                    return Poll::Ready(Taken { packets: vec![ByteString::from_static("6")], close: false });
                }
            }
            Reader::WebSocket => {
                if inner.probe {
                    inner.probe = false;
                    return Poll::Ready(Taken { packets: vec![ByteString::from_static("3probe")], close: false });
                }
                if inner.transport != Transport::WebSocket {
                    // A probing socket of a session that ended closes too.
                    if inner.closed {
                        return Poll::Ready(Taken { packets: Vec::new(), close: true });
                    }
                    inner.ws_waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
        }
        let mut taken = Taken { packets: inner.own.drain(..).collect(), close: inner.closed };
        if inner.own.capacity() > 0 {
            inner.own = VecDeque::new();
        }
        if !taken.close {
            for (_, room) in &inner.rooms {
                if let Some(t) = room.take(cx.waker()) {
                    taken.packets.extend(t.live.into_iter().map(|o| o.text));
                }
            }
        }
        if taken.packets.is_empty() && !taken.close {
            if reader == Reader::Polling && inner.upgrading {
                return Poll::Ready(Taken { packets: vec![ByteString::from_static("6")], close: false });
            }
            match reader {
                Reader::Polling => inner.poll_waker = Some(cx.waker().clone()),
                Reader::WebSocket => inner.ws_waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        Poll::Ready(taken)
    }
}

/// A polling read in progress; dropping it (the response went out, or the client
/// went away) allows the next.
pub struct PollGuard(Arc<Engine>);

impl Drop for PollGuard {
    fn drop(&mut self) {
        if let Some(mut inner) = self.0.lock() {
            inner.polling = false;
            inner.poll_waker = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(engine: &Engine, reader: Reader) -> Option<Taken> {
        match engine.poll_take(reader, &mut Context::from_waker(Waker::noop())) {
            Poll::Ready(t) => Some(t),
            Poll::Pending => None,
        }
    }

    #[test]
    fn own_packets_then_close() {
        let (engine, _rx) = Engine::new("s".to_owned(), Transport::Polling);
        assert!(take(&engine, Reader::Polling).is_none(), "nothing to say yet");
        assert!(engine.push("2"));
        assert!(engine.push("40"));
        let t = take(&engine, Reader::Polling).map(|t| t.packets);
        assert_eq!(t, Some(vec![ByteString::from("2"), ByteString::from("40")]));
        engine.close();
        assert!(!engine.push("2"), "nothing after the close");
        assert!(take(&engine, Reader::Polling).is_some_and(|t| t.close));
    }

    #[test]
    fn the_own_lane_is_bounded() {
        let (engine, _rx) = Engine::new("s".to_owned(), Transport::WebSocket);
        for _ in 0..OWN_BOUND {
            assert!(engine.push("2"));
        }
        assert!(!engine.push("2"), "a client that reads nothing is cut off");
    }

    #[test]
    fn upgrade_flushes_the_polling_request_and_moves_the_stream() -> Result<(), String> {
        let (engine, _rx) = Engine::new("s".to_owned(), Transport::Polling);
        let guard = engine.begin_poll().map_err(|e| format!("{e:?}"))?;
        assert_eq!(engine.begin_poll().err(), Some(Refused::Overlap));
        engine.probe();
        assert_eq!(take(&engine, Reader::WebSocket).map(|t| t.packets), Some(vec![ByteString::from("3probe")]));
        assert_eq!(take(&engine, Reader::Polling).map(|t| t.packets), Some(vec![ByteString::from("6")]));
        drop(guard);
        // A read that starts after the probe ends at once too.
        let guard = engine.begin_poll().map_err(|e| format!("{e:?}"))?;
        assert_eq!(take(&engine, Reader::Polling).map(|t| t.packets), Some(vec![ByteString::from("6")]));
        drop(guard);
        assert!(engine.push("42[\"x\",1]"));
        assert!(take(&engine, Reader::WebSocket).is_none(), "not upgraded yet");
        engine.upgrade();
        assert_eq!(engine.begin_poll().err(), Some(Refused::Upgraded));
        assert_eq!(take(&engine, Reader::WebSocket).map(|t| t.packets.len()), Some(1));
        Ok(())
    }

    #[test]
    fn a_failed_probe_lets_polling_wait_again() {
        let (engine, _rx) = Engine::new("s".to_owned(), Transport::Polling);
        engine.probe();
        assert!(take(&engine, Reader::Polling).is_some(), "a noop while upgrading");
        engine.probe_failed();
        assert!(take(&engine, Reader::Polling).is_none(), "a read waits again");
    }

    #[test]
    fn a_probe_of_an_ended_session_closes() {
        let (engine, _rx) = Engine::new("s".to_owned(), Transport::Polling);
        assert!(take(&engine, Reader::WebSocket).is_none(), "a probe waits for the upgrade");
        engine.close();
        assert!(take(&engine, Reader::WebSocket).is_some_and(|t| t.close));
    }
}
