//! Putting a room's messages back in `seq` order.
//!
//! Events can reach the bus out of order (several message-store writers and replicas
//! publish concurrently), and a publish can be lost with a crashed process until a
//! relay republishes it. [`Reorder`] holds messages that arrive early, hands out the
//! ones next in line, and says when a gap has lasted long enough to be filled from
//! message-store.

use std::collections::BTreeMap;
use std::time::Duration;

use chat_domain::model::Message;
use tokio::time::Instant;

/// How long an out-of-order message waits for the ones before it before the gap is
/// filled from message-store.
pub const GAP_WAIT: Duration = Duration::from_millis(250);

/// A room's messages in `seq` order.
#[derive(Debug)]
pub struct Reorder {
    /// The next `seq` to hand out.
    next: i64,
    /// Messages that arrived before their turn.
    early: BTreeMap<i64, Message>,
    /// When the current gap should be filled from message-store.
    gap_deadline: Option<Instant>,
}

impl Reorder {
    /// Starts after `last_seq` (the room's newest message when the first socket joined).
    pub fn after(last_seq: i64) -> Self {
        Self { next: last_seq + 1, early: BTreeMap::new(), gap_deadline: None }
    }

    /// The last `seq` handed out.
    pub fn delivered(&self) -> i64 {
        self.next - 1
    }

    /// Takes a message in; anything already handed out is dropped (a republished
    /// duplicate, or one the gap fill already fetched).
    pub fn insert(&mut self, m: Message) {
        if m.seq >= self.next {
            self.early.entry(m.seq).or_insert(m);
        }
    }

    /// The messages next in line, in order; afterwards, starts or clears the gap timer.
    pub fn ready(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        while let Some(m) = self.early.remove(&self.next) {
            out.push(m);
            self.next += 1;
        }
        if self.early.is_empty() {
            self.gap_deadline = None;
        } else if self.gap_deadline.is_none() {
            self.gap_deadline = Some(Instant::now() + GAP_WAIT);
        }
        out
    }

    /// When to fill the current gap, if there is one.
    pub fn gap_deadline(&self) -> Option<Instant> {
        self.gap_deadline
    }

    /// After a gap fill that could not be made (message-store did not answer): keeps
    /// waiting for the missing `seq`s and tries again after `retry_in`. Nothing is
    /// skipped on a failure; only an answer can say that a `seq` is not coming.
    pub fn fill_failed(&mut self, retry_in: Duration) {
        self.gap_deadline = Some(Instant::now() + retry_in);
    }

    /// After a gap fill: takes what was fetched, and when the missing `seq`s are still
    /// not there (they are not coming), moves past them to the first message held.
    pub fn filled(&mut self, fetched: Vec<Message>) {
        for m in fetched {
            self.insert(m);
        }
        if !self.early.contains_key(&self.next)
            && let Some((&first, _)) = self.early.iter().next()
        {
            tracing::warn!(from = self.next, to = first - 1, "skipping seqs that could not be fetched");
            self.next = first;
        }
        self.gap_deadline = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_domain::ids::{MessageId, RoomId, UserId};

    fn m(seq: i64) -> anyhow::Result<Message> {
        Ok(Message {
            message_id: MessageId::generate(),
            room_id: RoomId::parse("r1")?,
            sender_id: UserId::parse("u1")?,
            sender_name: None,
            seq,
            content: format!("{seq}"),
            meta: None,
            client_msg_id: None,
            created_at: chat_domain::time::now(),
            edited_at: None,
            deleted_at: None,
            kind: chat_domain::model::MessageKind::Text,
            reply_to: None,
            attachments: Vec::new(),
            parent_id: None,
            thread: None,
            mentions: Vec::new(),
            reactions: Vec::new(),
            pinned_at: None,
            pinned_by: None,
        })
    }

    fn seqs(v: &[Message]) -> Vec<i64> {
        v.iter().map(|m| m.seq).collect()
    }

    #[tokio::test]
    async fn hands_out_in_order_and_waits_for_gaps() -> anyhow::Result<()> {
        let mut r = Reorder::after(10);
        r.insert(m(12)?);
        assert!(r.ready().is_empty());
        assert!(r.gap_deadline().is_some(), "a gap starts the timer");
        r.insert(m(11)?);
        assert_eq!(seqs(&r.ready()), vec![11, 12]);
        assert!(r.gap_deadline().is_none(), "no gap, no timer");
        r.insert(m(12)?);
        r.insert(m(5)?);
        assert!(r.ready().is_empty(), "what was handed out is not handed out again");
        assert_eq!(r.delivered(), 12);
        Ok(())
    }

    #[tokio::test]
    async fn a_fill_closes_the_gap_or_moves_past_it() -> anyhow::Result<()> {
        let mut r = Reorder::after(0);
        r.insert(m(3)?);
        r.ready();
        r.filled(vec![m(1)?, m(2)?]);
        assert_eq!(seqs(&r.ready()), vec![1, 2, 3]);
        r.insert(m(6)?);
        r.ready();
        r.filled(Vec::new());
        assert_eq!(seqs(&r.ready()), vec![6], "4 and 5 are not coming");
        Ok(())
    }

    #[tokio::test]
    async fn a_failed_fill_skips_nothing_and_tries_again() -> anyhow::Result<()> {
        let mut r = Reorder::after(0);
        r.insert(m(3)?);
        assert!(r.ready().is_empty());
        let before = Instant::now();
        r.fill_failed(Duration::from_millis(500));
        assert!(r.ready().is_empty(), "1 and 2 are still awaited");
        assert_eq!(r.delivered(), 0);
        assert!(r.gap_deadline().is_some_and(|d| d >= before + Duration::from_millis(500)));
        r.filled(vec![m(1)?, m(2)?]);
        assert_eq!(seqs(&r.ready()), vec![1, 2, 3]);
        Ok(())
    }
}
