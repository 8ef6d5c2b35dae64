//! Every send of this gateway — from any socket of any dialect, or a REST request —
//! goes to message-store through one batcher, so the bus carries one request per batch
//! rather than one per message when sends arrive faster than answers.
//!
//! Nothing waits to fill a batch. While fewer than [`IN_FLIGHT`] requests are
//! outstanding, a send goes out at once, from the caller's own task (no hop to another
//! task at low rates). When that many are outstanding, new sends queue; whichever
//! request finishes first takes everything queued (up to [`MAX_BATCH`]) as one
//! `send_messages` request, in a task of its own, and keeps doing so while sends keep
//! queueing. At low rates a send costs what a single request does; at high rates the
//! bus, message-store's request handling and the JSON envelopes are paid per batch.
//!
//! A request still unanswered after [`SLOW`] gives its slot back and finishes without
//! it: a stalled message-store replica (paused, or stuck on its database) must not
//! hold every slot until the bus timeout while the other replicas could answer.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_bus::Bus;
use chat_domain::ApiError;
use chat_domain::proto::store::{MessageSent, SendMessage, SendMessages, SendOutcome};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// Requests waiting for message-store's answer at once.
pub const IN_FLIGHT: usize = 4;
/// Most sends in one request.
pub const MAX_BATCH: usize = 256;
/// Sends queued for a request; past this, senders are told to slow down.
const QUEUE: usize = 8_192;
/// How long a request holds its slot before it lets other sends go past it.
pub const SLOW: Duration = Duration::from_millis(500);

type Answer = oneshot::Sender<Result<MessageSent, ApiError>>;

/// The batcher (cheap to clone).
#[derive(Debug, Clone)]
pub struct Sends(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    bus: Bus,
    slots: Arc<Semaphore>,
    queue: Mutex<VecDeque<(SendMessage, Answer)>>,
}

impl Sends {
    pub fn new(bus: Bus) -> Self {
        Self(Arc::new(Inner { bus, slots: Arc::new(Semaphore::new(IN_FLIGHT)), queue: Mutex::default() }))
    }

    /// Stores one message (alone, or in whichever request it lands in), records how
    /// long that took (`chat_gateway_send_seconds`) and counts it for its tenant
    /// (`chat_gateway_tenant_messages_total`; a resend is not counted).
    pub async fn send(&self, cmd: SendMessage) -> Result<MessageSent, ApiError> {
        let started = std::time::Instant::now();
        let tenant = cmd.actor.tenant_id.clone();
        let result = self.store(cmd).await;
        let outcome = match &result {
            Ok(sent) if sent.duplicate => "duplicate",
            Ok(_) => "stored",
            Err(e) if e.code == chat_domain::ErrorCode::ServiceUnavailable => "unavailable",
            Err(_) => "refused",
        };
        crate::metrics::SEND_SECONDS.with_label_values(&[outcome]).observe(started.elapsed().as_secs_f64());
        if outcome == "stored" {
            crate::metrics::TENANT_MESSAGES.with_label_values(&[tenant.as_str()]).inc();
        }
        result
    }

    async fn store(&self, cmd: SendMessage) -> Result<MessageSent, ApiError> {
        match self.0.slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let (result, slot) = self.holding(slot, self.0.bus.request(&cmd)).await;
                if let Some(slot) = slot {
                    self.drain(slot);
                }
                result
            }
            Err(_) => {
                let (answer, answered) = oneshot::channel();
                {
                    let mut queue = self.0.queue.lock().map_err(|_| ApiError::internal())?;
                    if queue.len() >= QUEUE {
                        return Err(ApiError::unavailable("too many sends waiting; try again"));
                    }
                    queue.push_back((cmd, answer));
                }
                // A request may have finished between the failed try and the push.
                if let Ok(slot) = self.0.slots.clone().try_acquire_owned() {
                    self.drain(slot);
                }
                answered.await.map_err(|_| ApiError::unavailable("message-store did not answer"))?
            }
        }
    }

    /// With a free slot: sends what is queued, batch after batch, in a task of its own,
    /// until the queue is empty; then frees the slot.
    fn drain(&self, slot: OwnedSemaphorePermit) {
        let Some(first) = self.take() else { return };
        let this = self.clone();
        tokio::spawn(async move {
            let mut batch = first;
            let mut slot = slot;
            loop {
                let ((), kept) = this.holding(slot, answer(&this.0.bus, batch)).await;
                // A slow request gave its slot away; the sends queued since are
                // someone else's to take.
                let Some(kept) = kept else { return };
                slot = kept;
                match this.take() {
                    Some(next) => batch = next,
                    None => break,
                }
            }
            drop(slot);
            // A send may have queued after the last take and before the slot was free.
            if let Ok(slot) = this.0.slots.clone().try_acquire_owned() {
                this.drain(slot);
            }
        });
    }

    /// Runs `request` holding `slot`, and hands the slot back with the result; if the
    /// request takes longer than [`SLOW`], frees the slot at that point (queued sends
    /// may use it) and finishes without it.
    async fn holding<T>(
        &self,
        slot: OwnedSemaphorePermit,
        request: impl Future<Output = T>,
    ) -> (T, Option<OwnedSemaphorePermit>) {
        let mut request = std::pin::pin!(request);
        tokio::select! {
            out = &mut request => (out, Some(slot)),
            () = tokio::time::sleep(SLOW) => {
                drop(slot);
                if let Ok(free) = self.0.slots.clone().try_acquire_owned() {
                    self.drain(free);
                }
                (request.await, None)
            }
        }
    }

    /// Up to a batch of queued sends, if any.
    fn take(&self) -> Option<Vec<(SendMessage, Answer)>> {
        let mut queue = self.0.queue.lock().ok()?;
        if queue.is_empty() {
            return None;
        }
        let n = queue.len().min(MAX_BATCH);
        Some(queue.drain(..n).collect())
    }
}

/// One request for a batch; each send gets its own outcome (or the request's error).
async fn answer(bus: &Bus, batch: Vec<(SendMessage, Answer)>) {
    let (sends, answers): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
    let n = sends.len();
    let outcomes = match <[SendMessage; 1]>::try_from(sends) {
        // Alone: the plain command.
        Ok([send]) => vec![bus.request(&send).await],
        Err(sends) => match bus.request(&SendMessages { sends }).await {
            Ok(outcomes) if outcomes.len() == n => outcomes
                .into_iter()
                .map(|o| match o {
                    SendOutcome::Sent(sent) => Ok(sent),
                    SendOutcome::Failed(e) => Err(e),
                })
                .collect(),
            Ok(outcomes) => {
                tracing::error!(sent = n, answered = outcomes.len(), "message-store answered a batch of sends wrongly");
                vec![Err(ApiError::internal()); n]
            }
            Err(e) => vec![Err(e); n],
        },
    };
    for (outcome, answer) in outcomes.into_iter().zip(answers) {
        let _ = answer.send(outcome);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chat_bus::{Subjects, envelope};
    use chat_domain::ids::{MessageId, RoomId, TenantId, UserId};
    use chat_domain::model::{Actor, Message, MessageContent, MessageKind};
    use chat_domain::proto::Service;
    use futures_util::StreamExt as _;

    use super::*;

    fn send(n: usize) -> anyhow::Result<SendMessage> {
        Ok(SendMessage::text(
            Actor { tenant_id: TenantId::parse("t1")?, user_id: UserId::parse("u1")? },
            RoomId::parse("r1")?,
            MessageContent::parse(format!("m{n}"))?,
        ))
    }

    fn sent(cmd: &SendMessage) -> MessageSent {
        MessageSent {
            message: Message {
                message_id: MessageId::generate(),
                room_id: cmd.room_id.clone(),
                sender_id: cmd.actor.user_id.clone(),
                sender_name: None,
                seq: 1,
                content: cmd.content.as_str().to_owned(),
                meta: None,
                client_msg_id: None,
                created_at: chat_domain::time::now(),
                edited_at: None,
                deleted_at: None,
                kind: MessageKind::Text,
                reply_to: None,
                attachments: Vec::new(),
                parent_id: None,
                thread: None,
                mentions: Vec::new(),
                reactions: Vec::new(),
                pinned_at: None,
                pinned_by: None,
            },
            duplicate: false,
        }
    }

    /// A message-store replica that never answers the first `IN_FLIGHT` requests (as
    /// if paused) must not hold up a send that comes after them: the slots of slow
    /// requests are given back and the next send goes out and is answered.
    #[tokio::test]
    async fn stalled_requests_give_their_slots_back() -> anyhow::Result<()> {
        let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
        let client = chat_bus::client::connect(&url, "sends-test").await?;
        let id = MessageId::generate();
        let prefix = format!("sends-{}", &id.as_str()[id.as_str().len() - 20..]);
        let subjects = Subjects::new(&prefix)?;
        // Far longer than the test's own wait below: a stalled request never ends in it.
        let bus = Bus::new(client.clone(), subjects.clone()).with_timeout(Duration::from_secs(60));
        let mut requests = client.subscribe(subjects.commands_of(Service::MessageStore)).await?;
        client.flush().await?;
        let sends = Sends::new(bus);

        let mut stalled = Vec::new();
        for n in 0..IN_FLIGHT {
            let sends = sends.clone();
            let cmd = send(n)?;
            stalled.push(tokio::spawn(async move { sends.send(cmd).await }));
        }
        let mut held = Vec::new();
        while held.len() < IN_FLIGHT {
            let request = tokio::time::timeout(Duration::from_secs(30), requests.next()).await?;
            held.push(request.ok_or_else(|| anyhow::anyhow!("subscription ended"))?);
        }
        // Answer everything from now on; the held ones stay unanswered.
        let answering = tokio::spawn({
            let client = client.clone();
            async move {
                while let Some(request) = requests.next().await {
                    let Some(reply) = request.reply else { continue };
                    let cmd: SendMessage = match serde_json::from_slice(&request.payload) {
                        Ok(cmd) => cmd,
                        Err(_) => continue,
                    };
                    let _ = client.publish(reply, envelope::ok(&sent(&cmd))).await;
                }
            }
        });

        let next = tokio::time::timeout(Duration::from_secs(30), sends.send(send(99)?)).await;
        let next = next.map_err(|_| anyhow::anyhow!("a send waited behind stalled requests"))??;
        assert_eq!(next.message.content, "m99");
        assert!(stalled.iter().all(|s| !s.is_finished()), "the stalled requests are still waiting");

        for request in held {
            if let Some(reply) = request.reply {
                let cmd: SendMessage = serde_json::from_slice(&request.payload)?;
                client.publish(reply, envelope::ok(&sent(&cmd))).await?;
            }
        }
        for s in stalled {
            s.await??;
        }
        answering.abort();
        Ok(())
    }
}
