//! Delivered receipts for dialects without an ack frame (`ws-conversations.md`): the
//! gateway itself moves a member's delivered cursor once a message was pushed to one
//! of their sockets, so the sender sees `message.status: delivered`.
//!
//! Paid per batch, never per delivery: each such socket has a [`Slot`] holding the
//! highest `seq` pushed to it. Reporting a push is an atomic max (plus, the first time
//! since the last flush, putting the slot on the dirty list). One task per gateway
//! wakes when something is dirty, waits [`BATCH_WINDOW`] for more, and sends
//! everything dirty as one `mark_delivered` command (which message-store applies with
//! one set-based statement). An idle gateway does nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_bus::Bus;
use chat_domain::ids::{RoomId, TenantId, UserId};
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

/// One socket's deliveries: the highest `seq` of its room pushed to it.
#[derive(Debug)]
pub struct Slot {
    actor: Actor,
    room: RoomId,
    seq: AtomicI64,
    /// On the dirty list (reported since the last flush).
    dirty: AtomicBool,
    owner: Arc<Deliveries>,
}

impl Slot {
    /// Reports that messages up to `seq` were pushed to the socket.
    pub fn pushed(self: &Arc<Self>, seq: i64) {
        if self.seq.fetch_max(seq, Ordering::AcqRel) < seq && !self.dirty.swap(true, Ordering::AcqRel) {
            if let Ok(mut dirty) = self.owner.dirty.lock() {
                dirty.push(self.clone());
            }
            self.owner.wake.notify_one();
        }
    }
}

impl Deliveries {
    /// A slot for a socket of `actor` in `room`.
    pub fn slot(self: &Arc<Self>, actor: &Actor, room: &RoomId) -> Arc<Slot> {
        Arc::new(Slot {
            actor: actor.clone(),
            room: room.clone(),
            seq: AtomicI64::new(0),
            dirty: AtomicBool::new(false),
            owner: self.clone(),
        })
    }

    /// What is dirty now, one delivery per member and room (the highest `seq`).
    fn take(&self) -> Vec<Delivery> {
        let slots = match self.dirty.lock() {
            Ok(mut dirty) => {
                let n = dirty.len().min(MAX_BATCH);
                dirty.drain(..n).collect::<Vec<_>>()
            }
            Err(_) => Vec::new(),
        };
        let mut best: HashMap<(&TenantId, &UserId, &RoomId), i64> = HashMap::with_capacity(slots.len());
        for slot in &slots {
            // Cleared before reading: a push after this line re-lists the slot.
            slot.dirty.store(false, Ordering::Release);
            let seq = slot.seq.load(Ordering::Acquire);
            let e = best.entry((&slot.actor.tenant_id, &slot.actor.user_id, &slot.room)).or_insert(seq);
            *e = (*e).max(seq);
        }
        best.into_iter()
            .map(|((tenant, user, room), seq)| Delivery {
                tenant_id: tenant.clone(),
                room_id: room.clone(),
                user_id: user.clone(),
                seq,
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

    fn actor(user: &str) -> anyhow::Result<Actor> {
        Ok(Actor { tenant_id: TenantId::parse("t1")?, user_id: UserId::parse(user)? })
    }

    #[test]
    fn one_delivery_per_member_and_room_with_the_highest_seq() -> anyhow::Result<()> {
        let d = Arc::new(Deliveries::default());
        let room = RoomId::parse("r1")?;
        let (a1, a2, b) = (d.slot(&actor("a")?, &room), d.slot(&actor("a")?, &room), d.slot(&actor("b")?, &room));
        a1.pushed(3);
        a1.pushed(5);
        a2.pushed(4);
        b.pushed(2);
        b.pushed(1);
        let mut got: Vec<(String, i64)> = d.take().into_iter().map(|x| (x.user_id.to_string(), x.seq)).collect();
        got.sort();
        assert_eq!(got, vec![("a".to_owned(), 5), ("b".to_owned(), 2)]);
        assert!(d.take().is_empty(), "nothing new, nothing sent");
        a2.pushed(4);
        assert!(d.take().is_empty(), "a seq already reported is not reported again");
        a2.pushed(9);
        assert_eq!(d.take().into_iter().map(|x| x.seq).collect::<Vec<_>>(), vec![9]);
        Ok(())
    }
}
