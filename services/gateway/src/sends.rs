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

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

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

    /// Stores one message (alone, or in whichever request it lands in).
    pub async fn send(&self, cmd: SendMessage) -> Result<MessageSent, ApiError> {
        match self.0.slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let result = self.0.bus.request(&cmd).await;
                self.drain(slot);
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
            loop {
                answer(&this.0.bus, batch).await;
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
