//! Waking many connections of another worker thread with one wake-up.
//!
//! A connection's task lives on the server worker thread that accepted it (a
//! single-threaded runtime each), and a room's fan-out runs on whichever thread its task
//! does. Waking a task of another worker from outside writes to that worker's event
//! descriptor, and the scheduler hands the CPU to the woken thread at once: it runs that
//! one task, finds nothing else scheduled, sleeps, and the fan-out gets the CPU back —
//! a switch there and back for every socket of the other worker, for every event.
//!
//! So each worker thread has a relay: a task on that worker that wakes, locally, the
//! connections handed to it. A fan-out queues every socket's frame first, then gives
//! each other worker's relay all of that worker's wakers and wakes the relay once
//! ([`wake_all`]); connections of its own thread, and those of a thread without a relay
//! (a multi-threaded runtime: tests, tools), are woken directly.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Waker;

use tokio::sync::Notify;

/// One worker thread's relay.
#[derive(Debug, Default)]
pub struct Relay {
    wakers: Mutex<Vec<Waker>>,
    notify: Notify,
    /// Whether its task still runs (a runtime that ended took it along).
    alive: AtomicBool,
}

/// Clears `alive` when the relay's task ends, however it ends.
struct Alive(Arc<Relay>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.alive.store(false, Ordering::SeqCst);
    }
}

thread_local! {
    static HERE: RefCell<Option<Arc<Relay>>> = const { RefCell::new(None) };
}

impl Relay {
    /// This thread's relay, started on first use; `None` outside a single-threaded
    /// runtime, where a woken task may run on any thread anyway.
    pub fn here() -> Option<Arc<Relay>> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
            return None;
        }
        HERE.with(|here| {
            let mut here = here.borrow_mut();
            if let Some(relay) = here.as_ref().filter(|r| r.alive.load(Ordering::SeqCst)) {
                return Some(relay.clone());
            }
            let relay = Arc::new(Relay { alive: AtomicBool::new(true), ..Relay::default() });
            let alive = Alive(relay.clone());
            handle.spawn(async move {
                let relay = alive.0.clone();
                let _alive = alive;
                loop {
                    relay.notify.notified().await;
                    let wakers = std::mem::take(&mut *relay.wakers.lock().unwrap_or_else(PoisonError::into_inner));
                    wakers.into_iter().for_each(Waker::wake);
                }
            });
            *here = Some(relay.clone());
            Some(relay)
        })
    }

    /// This thread's relay if it has one, without starting one.
    fn current() -> Option<Arc<Relay>> {
        HERE.with(|here| here.borrow().clone())
    }
}

/// A connection to wake: its task's waker and the relay of the thread it runs on.
pub struct Pending {
    pub(crate) waker: Waker,
    pub(crate) relay: Option<Arc<Relay>>,
}

impl Pending {
    /// Wakes it on its own (a single frame, no fan-out).
    pub fn wake(self) {
        self.waker.wake();
    }
}

/// Wakes every connection in `pending`: each other thread's through its relay, with one
/// wake-up per relay; this thread's, and any without a live relay, directly.
pub fn wake_all(pending: Vec<Pending>) {
    let here = Relay::current();
    let is_here = |relay: &Arc<Relay>| here.as_ref().is_some_and(|h| Arc::ptr_eq(h, relay));
    let mut relays: Vec<(Arc<Relay>, Vec<Waker>)> = Vec::new();
    for Pending { waker, relay } in pending {
        match relay {
            Some(relay) if relay.alive.load(Ordering::SeqCst) && !is_here(&relay) => {
                match relays.iter_mut().find(|(r, _)| Arc::ptr_eq(r, &relay)) {
                    Some((_, wakers)) => wakers.push(waker),
                    None => relays.push((relay, vec![waker])),
                }
            }
            _ => waker.wake(),
        }
    }
    for (relay, wakers) in relays {
        relay.wakers.lock().unwrap_or_else(PoisonError::into_inner).extend(wakers);
        relay.notify.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;
    use std::task::Poll;
    use std::time::Duration;

    use bytestring::ByteString;

    use super::*;
    use crate::session::queue::{self, Out};

    /// Connections on a worker thread of their own (a single-threaded runtime, as a
    /// server worker's), offered a frame each from this thread.
    #[test]
    fn another_workers_connections_are_handed_to_its_relay_and_all_woken() -> anyhow::Result<()> {
        const N: usize = 5;
        let mut senders = Vec::new();
        let mut ends = Vec::new();
        for _ in 0..N {
            let (tx, outlet, rx) = queue::bounded(8);
            outlet.open();
            senders.push(tx);
            ends.push((outlet, rx));
        }
        let (took_tx, took) = mpsc::channel::<(usize, usize)>();
        let (relay_tx, relay_rx) = mpsc::channel::<Option<Arc<Relay>>>();
        let gate = Arc::new(Barrier::new(2));
        let worker_gate = gate.clone();
        let worker = std::thread::spawn(move || -> anyhow::Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async move {
                let waiting = Arc::new(AtomicUsize::new(0));
                let mut tasks = Vec::new();
                for (i, (outlet, rx)) in ends.into_iter().enumerate() {
                    let (waiting, took_tx) = (waiting.clone(), took_tx.clone());
                    tasks.push(tokio::spawn(async move {
                        let _outlet = outlet;
                        let mut counted = false;
                        let taken = std::future::poll_fn(|cx| match rx.take(cx.waker()) {
                            Some(taken) => Poll::Ready(taken),
                            None => {
                                if !std::mem::replace(&mut counted, true) {
                                    waiting.fetch_add(1, Ordering::SeqCst);
                                }
                                Poll::Pending
                            }
                        })
                        .await;
                        let _ = took_tx.send((i, taken.live.len()));
                    }));
                }
                // Until every connection waits for frames (its first poll started the relay).
                while waiting.load(Ordering::SeqCst) < N {
                    tokio::task::yield_now().await;
                }
                let _ = relay_tx.send(Relay::here());
                // The worker is busy (here: blocked) while the other thread offers and wakes.
                worker_gate.wait();
                for task in tasks {
                    let _ = task.await;
                }
            });
            Ok(())
        });
        let relay = relay_rx.recv_timeout(Duration::from_secs(30))?.ok_or_else(|| anyhow::anyhow!("no relay"))?;

        let mut pending = Vec::new();
        for tx in &senders {
            let offered = tx.offer_unwoken(Out { seq: None, text: ByteString::from("frame") });
            pending.extend(offered.map_err(|e| anyhow::anyhow!("offer refused: {e:?}"))?);
        }
        assert_eq!(pending.len(), N, "every waiting connection is handed back to wake");
        assert!(pending.iter().all(|p| p.relay.as_ref().is_some_and(|r| Arc::ptr_eq(r, &relay))));
        wake_all(pending);
        let queued = relay.wakers.lock().unwrap_or_else(PoisonError::into_inner).len();
        assert_eq!(queued, N, "all of the worker's connections wait in its relay; none was woken from here");

        gate.wait();
        let mut took_all: Vec<(usize, usize)> =
            (0..N).map(|_| took.recv_timeout(Duration::from_secs(30))).collect::<Result<_, _>>()?;
        took_all.sort_unstable();
        assert_eq!(took_all, (0..N).map(|i| (i, 1)).collect::<Vec<_>>(), "each connection took its frame");
        worker.join().map_err(|_| anyhow::anyhow!("the worker panicked"))??;
        Ok(())
    }

    /// On a multi-threaded runtime there is no relay: a woken task may run anywhere.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_multi_threaded_runtime_has_no_relay() {
        assert!(Relay::here().is_none());
    }
}
