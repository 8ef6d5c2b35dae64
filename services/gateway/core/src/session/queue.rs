//! A socket's outgoing frames, read straight by the connection's response body.
//!
//! Two lanes feed one socket:
//! - the **live** lane: room and user events offered by the fan-out. It is bounded; an
//!   offer never waits, and a full lane means the socket is not keeping up (the
//!   fan-out then kicks it).
//! - the **own** lane: what the session itself sends (the greeting, a resume replay,
//!   answers, pings, the close frame). The session waits for room in it, so a client
//!   that stops reading slows only its own session down.
//!
//! The response body ([`Body`], in `transport`) takes whatever both lanes hold each
//! time the connection can write, own lane first, and writes it in one go: a frame is
//! handed from the fan-out to the socket with one wake-up (the connection's), not two.
//! Live frames are held back until the session has sent its greeting and any replay
//! ([`Outlet::open`]); after that, a live message whose `seq` was already sent is
//! dropped, so a resumed socket gets every message once.
//!
//! Both lanes hold nothing while empty (`VecDeque` grows with a burst and gives the
//! memory back after), so tens of thousands of idle sockets cost only the header.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::Duration;

use actix_ws::CloseReason;
use bytes::Bytes;
use bytestring::ByteString;
use tokio::sync::Notify;

use crate::session::relay::{Pending, Relay};

/// Spare capacity kept after a drain; anything above is released.
const KEEP: usize = 8;
/// Frames the session may have waiting in its own lane before it waits itself.
const OWN_BOUND: usize = 256;

/// A frame of the live lane, with the `seq` of the message it carries (for resume
/// de-duplication), if any. The text is shared by every socket that gets it.
#[derive(Debug, Clone)]
pub struct Out {
    pub seq: Option<i64>,
    pub text: ByteString,
}

/// A frame of the session's own lane.
#[derive(Debug, Clone)]
pub enum Own {
    Text(ByteString),
    /// A message replayed on resume: counts as sent for de-duplication.
    Replayed {
        seq: i64,
        text: ByteString,
    },
    Ping(Bytes),
    Pong(Bytes),
    /// The last frame: the body ends after it.
    Close(Option<CloseReason>),
}

/// Why an offer was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The live lane holds its bound: the socket is not keeping up.
    Full,
    /// The connection has ended, or is closing.
    Closed,
}

/// What the body takes in one go.
#[derive(Debug, Default)]
pub struct Taken {
    pub own: Vec<Own>,
    pub live: Vec<Out>,
}

struct Inner {
    live: VecDeque<Out>,
    own: VecDeque<Own>,
    /// Live frames flow once the session opened the lane (after greeting and replay).
    open: bool,
    /// The highest `seq` sent on this socket: live messages at or below it are dropped.
    sent_seq: Option<i64>,
    /// A close frame was queued: nothing is taken in after it.
    closing: bool,
    /// The body is gone (the connection ended).
    gone: bool,
    /// The body's task, to wake when there is something to write.
    waker: Option<Waker>,
    /// The relay of the thread that task runs on (see `relay`).
    relay: Option<Arc<Relay>>,
}

struct Shared {
    inner: Mutex<Inner>,
    /// The session waits on this for room in its own lane.
    room: Notify,
    bound: usize,
}

impl Shared {
    fn lock(&self) -> Option<MutexGuard<'_, Inner>> {
        self.inner.lock().ok()
    }
}

/// The fan-out's end: offers live frames without waiting.
#[derive(Clone)]
pub struct Sender(Arc<Shared>);

/// The session's end: its own frames, opening the live lane, closing.
pub struct Outlet(Arc<Shared>);

/// The response body's end (see `transport`).
pub struct Receiver(Arc<Shared>);

/// A socket's queue whose live lane holds at most `bound` frames.
pub fn bounded(bound: usize) -> (Sender, Outlet, Receiver) {
    let shared = Arc::new(Shared {
        inner: Mutex::new(Inner {
            live: VecDeque::new(),
            own: VecDeque::new(),
            open: false,
            sent_seq: None,
            closing: false,
            gone: false,
            waker: None,
            relay: None,
        }),
        room: Notify::new(),
        bound: bound.max(1),
    });
    (Sender(shared.clone()), Outlet(shared.clone()), Receiver(shared))
}

fn wake(mut inner: MutexGuard<'_, Inner>) {
    let waker = inner.waker.take();
    drop(inner);
    if let Some(w) = waker {
        w.wake();
    }
}

impl Sender {
    /// Queues a live frame and wakes the connection, or says why not.
    pub fn offer(&self, out: Out) -> Result<(), Refused> {
        if let Some(pending) = self.offer_unwoken(out)? {
            pending.wake();
        }
        Ok(())
    }

    /// Queues a live frame like [`Self::offer`], but hands back the connection to wake
    /// (when it waits for frames) instead of waking it: an event for many sockets is
    /// queued on all of them before any is woken (`fanout::sockets::offer`,
    /// [`wake_all`](crate::session::relay::wake_all)).
    pub fn offer_unwoken(&self, out: Out) -> Result<Option<Pending>, Refused> {
        let Some(mut inner) = self.0.lock() else { return Err(Refused::Closed) };
        if inner.gone || inner.closing {
            return Err(Refused::Closed);
        }
        if inner.live.len() >= self.0.bound {
            return Err(Refused::Full);
        }
        inner.live.push_back(out);
        if !inner.open {
            return Ok(None);
        }
        Ok(inner.waker.take().map(|waker| Pending { waker, relay: inner.relay.clone() }))
    }
}

impl Outlet {
    /// Queues one of the session's own frames, waiting (at most `patience`) while its
    /// lane is full. `false` when the connection is gone or the client stopped reading.
    pub async fn send(&self, frame: Own, patience: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            // Registered before looking, so a drain in between is not missed.
            let room = self.0.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let Some(mut inner) = self.0.lock() else { return false };
                if inner.gone || inner.closing {
                    return false;
                }
                if inner.own.len() < OWN_BOUND {
                    inner.closing = matches!(frame, Own::Close(_));
                    inner.own.push_back(frame);
                    wake(inner);
                    return true;
                }
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return false;
            }
        }
    }

    /// Queues the close frame without waiting (a refused connection's only frame).
    pub fn close_now(&self, reason: Option<CloseReason>) {
        if let Some(mut inner) = self.0.lock()
            && !inner.closing
        {
            inner.closing = true;
            inner.own.push_back(Own::Close(reason));
            wake(inner);
        }
    }

    /// Lets live frames flow: the greeting and the replay (if any) are queued.
    pub fn open(&self) {
        if let Some(mut inner) = self.0.lock() {
            inner.open = true;
            wake(inner);
        }
    }

    /// Whether the connection is still there.
    pub fn is_gone(&self) -> bool {
        self.0.lock().is_none_or(|i| i.gone)
    }
}

impl Drop for Outlet {
    /// A session that ends without a close frame still ends the body.
    fn drop(&mut self) {
        if let Some(mut inner) = self.0.lock()
            && !inner.closing
        {
            inner.closing = true;
            inner.own.push_back(Own::Close(None));
            wake(inner);
        }
    }
}

impl Receiver {
    /// Takes everything there is to write (own lane first), or registers `waker` and
    /// returns `None` when there is nothing. Live messages already sent are dropped.
    pub fn take(&self, waker: &Waker) -> Option<Taken> {
        let mut inner = self.0.lock()?;
        let mut taken = Taken::default();
        if !inner.own.is_empty() {
            taken.own = inner.own.drain(..).collect();
            for f in &taken.own {
                if let Own::Replayed { seq, .. } = f {
                    inner.sent_seq = Some(inner.sent_seq.map_or(*seq, |s| s.max(*seq)));
                }
            }
            self.0.room.notify_waiters();
        }
        let closed_now = matches!(taken.own.last(), Some(Own::Close(_)));
        if inner.open && !closed_now && !inner.live.is_empty() {
            let mut sent = inner.sent_seq;
            taken.live = inner
                .live
                .drain(..)
                .filter(|o| match (o.seq, sent) {
                    (Some(seq), Some(done)) if seq <= done => false,
                    (Some(seq), _) => {
                        sent = Some(seq);
                        true
                    }
                    (None, _) => true,
                })
                .collect();
            inner.sent_seq = sent;
        }
        if inner.live.is_empty() && inner.live.capacity() > KEEP {
            inner.live = VecDeque::new();
        }
        // The session's own frames are rare (a greeting, pings, answers): keep nothing.
        if inner.own.capacity() > 0 {
            inner.own = VecDeque::new();
        }
        if taken.own.is_empty() && taken.live.is_empty() {
            if inner.relay.is_none() {
                inner.relay = Relay::here();
            }
            inner.waker = Some(waker.clone());
            return None;
        }
        Some(taken)
    }
}

impl Drop for Receiver {
    /// The connection ended: offers are refused from now on, and a waiting session
    /// stops waiting.
    fn drop(&mut self) {
        if let Some(mut inner) = self.0.lock() {
            inner.gone = true;
            inner.live = VecDeque::new();
            inner.own = VecDeque::new();
        }
        self.0.room.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use super::*;

    fn out(n: i64) -> Out {
        Out { seq: Some(n), text: ByteString::from(format!("{n}")) }
    }

    fn seqs(t: &Taken) -> Vec<Option<i64>> {
        t.live.iter().map(|o| o.seq).collect()
    }

    #[tokio::test]
    async fn live_frames_wait_for_the_greeting_and_skip_what_was_replayed() {
        let (tx, outlet, rx) = bounded(8);
        for n in 1..=4 {
            assert_eq!(tx.offer(out(n)), Ok(()));
        }
        assert!(rx.take(Waker::noop()).is_none(), "held until the session opens the lane");
        let patience = Duration::from_secs(1);
        assert!(outlet.send(Own::Text(ByteString::from("hello")), patience).await);
        assert!(outlet.send(Own::Replayed { seq: 2, text: ByteString::from("2") }, patience).await);
        outlet.open();
        let taken = rx.take(Waker::noop()).unwrap_or_default();
        assert_eq!(taken.own.len(), 2, "own frames first");
        assert_eq!(seqs(&taken), vec![Some(3), Some(4)], "1 and 2 were replayed");
        assert_eq!(tx.offer(out(4)), Ok(()));
        assert_eq!(tx.offer(Out { seq: None, text: ByteString::from("typing") }), Ok(()));
        assert_eq!(seqs(&rx.take(Waker::noop()).unwrap_or_default()), vec![None], "4 went out already");
    }

    #[tokio::test]
    async fn a_full_live_lane_refuses_and_a_closed_one_too() {
        let (tx, outlet, rx) = bounded(2);
        assert_eq!(tx.offer(out(1)), Ok(()));
        assert_eq!(tx.offer(out(2)), Ok(()));
        assert_eq!(tx.offer(out(3)), Err(Refused::Full));
        outlet.open();
        assert_eq!(rx.take(Waker::noop()).map(|t| t.live.len()), Some(2));
        assert_eq!(tx.offer(out(3)), Ok(()), "room again once taken");
        assert!(outlet.send(Own::Close(None), Duration::from_secs(1)).await);
        assert_eq!(tx.offer(out(4)), Err(Refused::Closed), "nothing after the close frame");
        let taken = rx.take(Waker::noop()).unwrap_or_default();
        assert!(matches!(taken.own.last(), Some(Own::Close(_))));
        assert!(taken.live.is_empty(), "no live frame after a close");
        drop(rx);
        assert!(outlet.is_gone());
        assert!(!outlet.send(Own::Text(ByteString::from("x")), Duration::from_secs(1)).await);
    }

    #[tokio::test]
    async fn a_session_waits_for_room_in_its_own_lane() {
        let (_tx, outlet, rx) = bounded(2);
        for _ in 0..OWN_BOUND {
            assert!(outlet.send(Own::Text(ByteString::from("x")), Duration::from_millis(10)).await);
        }
        assert!(
            !outlet.send(Own::Text(ByteString::from("y")), Duration::from_millis(10)).await,
            "a client that does not read stops the session"
        );
        assert!(rx.take(Waker::noop()).is_some());
        assert!(outlet.send(Own::Text(ByteString::from("z")), Duration::from_millis(10)).await, "room again");
    }

    #[tokio::test]
    async fn memory_is_given_back_after_a_burst() {
        let (tx, outlet, rx) = bounded(1024);
        outlet.open();
        for n in 0..500 {
            assert_eq!(tx.offer(out(n)), Ok(()));
        }
        assert_eq!(rx.take(Waker::noop()).map(|t| t.live.len()), Some(500));
        let capacity = rx.0.lock().map(|i| i.live.capacity()).unwrap_or(usize::MAX);
        assert!(capacity <= KEEP, "capacity {capacity} kept after draining");
    }
}
