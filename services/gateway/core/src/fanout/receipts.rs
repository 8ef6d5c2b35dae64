//! Delivered receipts for dialects without an ack frame (`ws-conversations.md`): the
//! gateway itself reports what it pushed to a member's sockets, so message-store moves
//! the member's delivered cursor and the senders see `message.status: delivered`.
//!
//! Paid per batch, never per delivery: each such socket has a [`Slot`] holding the
//! highest `seq` pushed to it. Reporting a push is an atomic max (plus, the first time
//! since the last flush, putting the slot on the dirty list). One task per gateway
//! wakes when something is dirty, waits [`BATCH_WINDOW`] for more, and sends, for every
//! dirty socket, the range pushed since its last report, as one `mark_delivered`
//! command (which message-store applies with one set-based statement). An idle
//! gateway does nothing. A read receipt flushes its socket's slot first, so a sender
//! hears `delivered` before `read`.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_bus::Bus;
use chat_domain::ApiError;
use chat_domain::ids::RoomId;
use chat_domain::model::Actor;
use chat_domain::proto::store::{Delivery, MarkDelivered};
use tokio::sync::Notify;

/// How long the batcher gathers deliveries after the first one before sending them.
pub const BATCH_WINDOW: Duration = Duration::from_millis(150);

/// Most deliveries per command (message-store's limit); more wait for the next one.
const MAX_BATCH: usize = 5_000;

/// The gateway's delivered receipts, waiting to be sent.
#[derive(Debug, Default)]
pub struct Deliveries {
    dirty: Mutex<Vec<Arc<Slot>>>,
    wake: Notify,
}

/// One socket's deliveries in its room.
#[derive(Debug)]
pub struct Slot {
    actor: Actor,
    room: RoomId,
    /// The highest `seq` pushed to the socket.
    pushed: AtomicI64,
    /// The highest `seq` reported to message-store.
    reported: AtomicI64,
    /// On the dirty list (pushed to since the last flush).
    dirty: AtomicBool,
    owner: Arc<Deliveries>,
}

impl Slot {
    /// Reports that messages up to `seq` were pushed to the socket.
    pub fn pushed(self: &Arc<Self>, seq: i64) {
        if self.pushed.fetch_max(seq, Ordering::AcqRel) < seq && !self.dirty.swap(true, Ordering::AcqRel) {
            if let Ok(mut dirty) = self.owner.dirty.lock() {
                dirty.push(self.clone());
            }
            self.owner.wake.notify_one();
        }
    }

    /// What was pushed since the last report, now reported; `None` when nothing was.
    fn take(&self) -> Option<Delivery> {
        let seq = self.pushed.load(Ordering::Acquire);
        let after_seq = self.reported.fetch_max(seq, Ordering::AcqRel);
        (seq > after_seq).then(|| Delivery {
            tenant_id: self.actor.tenant_id.clone(),
            room_id: self.room.clone(),
            user_id: self.actor.user_id.clone(),
            after_seq,
            seq,
        })
    }

    /// Sends what this socket was pushed and has not reported yet, now.
    pub async fn flush(&self, bus: &Bus) -> Result<(), ApiError> {
        match self.take() {
            Some(delivery) => bus.request(&MarkDelivered { deliveries: vec![delivery] }).await.map(|_| ()),
            None => Ok(()),
        }
    }
}

impl Deliveries {
    /// A slot for a socket of `actor` in `room`, whose newest message was `last_seq`
    /// when the socket connected (messages up to it were not pushed by this socket).
    pub fn slot(self: &Arc<Self>, actor: &Actor, room: &RoomId, last_seq: i64) -> Arc<Slot> {
        Arc::new(Slot {
            actor: actor.clone(),
            room: room.clone(),
            pushed: AtomicI64::new(last_seq),
            reported: AtomicI64::new(last_seq),
            dirty: AtomicBool::new(false),
            owner: self.clone(),
        })
    }

    /// What the dirty sockets were pushed since their last report.
    fn take(&self) -> Vec<Delivery> {
        let slots = match self.dirty.lock() {
            Ok(mut dirty) => {
                let n = dirty.len().min(MAX_BATCH);
                dirty.drain(..n).collect::<Vec<_>>()
            }
            Err(_) => Vec::new(),
        };
        slots
            .iter()
            .filter_map(|slot| {
                // Cleared before reading: a push after this line re-lists the slot.
                slot.dirty.store(false, Ordering::Release);
                slot.take()
            })
            .collect()
    }

    fn more_waiting(&self) -> bool {
        self.dirty.lock().is_ok_and(|d| !d.is_empty())
    }

    /// Sends the receipts in batches, until the task is dropped.
    pub async fn run(self: Arc<Self>, bus: Bus) {
        loop {
            if !self.more_waiting() {
                self.wake.notified().await;
            }
            tokio::time::sleep(BATCH_WINDOW).await;
            let deliveries = self.take();
            if deliveries.is_empty() {
                continue;
            }
            let n = deliveries.len();
            if let Err(e) = bus.request(&MarkDelivered { deliveries }).await {
                tracing::warn!(error = %e, deliveries = n, "could not record delivered receipts");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_domain::ids::{TenantId, UserId};

    fn actor(user: &str) -> anyhow::Result<Actor> {
        Ok(Actor { tenant_id: TenantId::parse("t1")?, user_id: UserId::parse(user)? })
    }

    fn ranges(d: &Deliveries) -> Vec<(String, i64, i64)> {
        let mut got: Vec<_> = d.take().into_iter().map(|x| (x.user_id.to_string(), x.after_seq, x.seq)).collect();
        got.sort();
        got
    }

    #[test]
    fn each_socket_reports_the_range_pushed_since_its_last_report() -> anyhow::Result<()> {
        let d = Arc::new(Deliveries::default());
        let room = RoomId::parse("r1")?;
        let (a1, a2, b) =
            (d.slot(&actor("a")?, &room, 2), d.slot(&actor("a")?, &room, 4), d.slot(&actor("b")?, &room, 0));
        a1.pushed(3);
        a1.pushed(5);
        a2.pushed(5);
        b.pushed(2);
        b.pushed(1);
        assert_eq!(ranges(&d), vec![("a".into(), 2, 5), ("a".into(), 4, 5), ("b".into(), 0, 2)]);
        assert!(ranges(&d).is_empty(), "nothing new, nothing sent");
        a2.pushed(5);
        assert!(ranges(&d).is_empty(), "a seq already reported is not reported again");
        a2.pushed(9);
        assert_eq!(ranges(&d), vec![("a".into(), 5, 9)]);
        Ok(())
    }

    #[test]
    fn a_flushed_slot_is_not_reported_twice() -> anyhow::Result<()> {
        let d = Arc::new(Deliveries::default());
        let slot = d.slot(&actor("a")?, &RoomId::parse("r1")?, 0);
        slot.pushed(3);
        assert_eq!(slot.take().map(|x| (x.after_seq, x.seq)), Some((0, 3)));
        assert!(ranges(&d).is_empty(), "the batcher finds it already reported");
        Ok(())
    }
}
