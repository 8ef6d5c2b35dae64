//! A socket's bounded queue of outgoing frames.
//!
//! A `tokio::sync::mpsc` channel allocates a block of 32 slots when it is created and
//! keeps spare blocks around, a few KiB per socket even when the socket is idle. This
//! queue holds nothing while empty: its `VecDeque` grows with a burst and gives the
//! memory back once drained, so tens of thousands of idle sockets cost only the
//! queue's header.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytestring::ByteString;
use tokio::sync::Notify;

/// A frame ready to send, with the `seq` of the message it carries (for resume
/// de-duplication), if any. The text is shared by every socket that gets it.
#[derive(Debug, Clone)]
pub struct Out {
    pub seq: Option<i64>,
    pub text: ByteString,
}

/// Spare capacity kept after a drain; anything above is released.
const KEEP: usize = 8;

/// Why an offer was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds its bound: the socket is not keeping up.
    Full,
    /// The socket's session has ended.
    Closed,
}

struct Inner {
    items: VecDeque<Out>,
    closed: bool,
}

struct Shared {
    inner: Mutex<Inner>,
    ready: Notify,
    bound: usize,
}

/// The hub's end: offers frames without waiting.
#[derive(Clone)]
pub struct Sender(Arc<Shared>);

/// The session's end: takes frames in order.
pub struct Receiver(Arc<Shared>);

/// A queue holding at most `bound` frames.
pub fn bounded(bound: usize) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        inner: Mutex::new(Inner { items: VecDeque::new(), closed: false }),
        ready: Notify::new(),
        bound: bound.max(1),
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl Sender {
    /// Queues `out`, or says why not.
    pub fn offer(&self, out: Out) -> Result<(), Refused> {
        let Ok(mut inner) = self.0.inner.lock() else { return Err(Refused::Closed) };
        if inner.closed {
            return Err(Refused::Closed);
        }
        if inner.items.len() >= self.0.bound {
            return Err(Refused::Full);
        }
        inner.items.push_back(out);
        drop(inner);
        // Stores a permit when the session is not waiting yet, so no wake-up is lost.
        self.0.ready.notify_one();
        Ok(())
    }
}

impl Receiver {
    /// The next frame, waiting for one.
    #[cfg(test)]
    pub async fn recv(&mut self) -> Out {
        let mut one = Vec::with_capacity(1);
        self.recv_many(&mut one, 1).await;
        one.pop().unwrap_or(Out { seq: None, text: ByteString::new() })
    }

    /// Waits for at least one frame, then moves up to `max` into `out`, in order.
    pub async fn recv_many(&mut self, out: &mut Vec<Out>, max: usize) {
        loop {
            if let Ok(mut inner) = self.0.inner.lock()
                && !inner.items.is_empty()
            {
                let n = inner.items.len().min(max.max(1));
                out.extend(inner.items.drain(..n));
                if inner.items.is_empty() && inner.items.capacity() > KEEP {
                    inner.items = VecDeque::new();
                }
                return;
            }
            self.0.ready.notified().await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.0.inner.lock() {
            inner.closed = true;
            inner.items = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(n: i64) -> Out {
        Out { seq: Some(n), text: ByteString::from(format!("{n}")) }
    }

    #[tokio::test]
    async fn keeps_order_refuses_past_the_bound_and_after_close() {
        let (tx, mut rx) = bounded(3);
        for n in 1..=3 {
            assert_eq!(tx.offer(out(n)), Ok(()));
        }
        assert_eq!(tx.offer(out(4)), Err(Refused::Full));
        for n in 1..=3 {
            assert_eq!(rx.recv().await.seq, Some(n));
        }
        assert_eq!(tx.offer(out(5)), Ok(()), "room again once drained");
        assert_eq!(rx.recv().await.seq, Some(5));
        drop(rx);
        assert_eq!(tx.offer(out(6)), Err(Refused::Closed));
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken() {
        let (tx, mut rx) = bounded(8);
        let waiter = tokio::spawn(async move { rx.recv().await.seq });
        tokio::task::yield_now().await;
        assert_eq!(tx.offer(out(7)), Ok(()));
        assert_eq!(waiter.await.ok().flatten(), Some(7));
    }

    #[tokio::test]
    async fn recv_many_takes_what_is_there_in_order() {
        let (tx, mut rx) = bounded(16);
        for n in 0..5 {
            assert_eq!(tx.offer(out(n)), Ok(()));
        }
        let mut got = Vec::new();
        rx.recv_many(&mut got, 3).await;
        assert_eq!(got.iter().map(|o| o.seq).collect::<Vec<_>>(), vec![Some(0), Some(1), Some(2)]);
        rx.recv_many(&mut got, 10).await;
        assert_eq!(got.len(), 5);
        assert_eq!(got[4].seq, Some(4));
    }

    #[tokio::test]
    async fn memory_is_given_back_after_a_burst() {
        let (tx, mut rx) = bounded(1024);
        for n in 0..500 {
            assert_eq!(tx.offer(out(n)), Ok(()));
        }
        for _ in 0..500 {
            rx.recv().await;
        }
        let capacity = rx.0.inner.lock().map(|i| i.items.capacity()).unwrap_or(usize::MAX);
        assert!(capacity <= KEEP, "capacity {capacity} kept after draining");
    }
}
