//! Every send of this gateway — from any socket of any dialect, or a REST request —
//! goes to message-store through one batcher, so the bus carries one request per batch
//! rather than one per message when sends arrive faster than answers.
//!
//! Nothing waits to fill a batch: a send goes out at once while fewer than
//! [`IN_FLIGHT`] requests are outstanding, alone if it is alone. Only when that many
//! are waiting for their answers do new sends queue, and the next request then takes
//! everything queued (up to [`MAX_BATCH`]). At low rates a send costs what a single
//! request does; at high rates the bus, message-store's request handling and the JSON
//! envelopes are paid per batch.

use std::sync::Arc;

use chat_bus::Bus;
use chat_domain::ApiError;
use chat_domain::proto::store::{MessageSent, SendMessage, SendMessages, SendOutcome};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Requests waiting for message-store's answer at once.
pub const IN_FLIGHT: usize = 4;
/// Most sends in one request.
pub const MAX_BATCH: usize = 256;
/// Sends waiting for a request; past this, senders wait (backpressure).
const QUEUE: usize = 8_192;

type Pending = (SendMessage, oneshot::Sender<Result<MessageSent, ApiError>>);

/// Hands sends to the batcher.
#[derive(Debug, Clone)]
pub struct Sends {
    tx: mpsc::Sender<Pending>,
}

impl Sends {
    /// Starts the batcher; it ends when every `Sends` is dropped.
    pub fn start(bus: Bus) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(bus, rx));
        Self { tx }
    }

    /// Stores one message (in whichever request it lands in).
    pub async fn send(&self, cmd: SendMessage) -> Result<MessageSent, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((cmd, reply)).await.map_err(|_| ApiError::unavailable("the gateway is shutting down"))?;
        answer.await.map_err(|_| ApiError::unavailable("message-store did not answer"))?
    }
}

async fn run(bus: Bus, mut rx: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        // A free slot first: while all are taken, sends gather in the queue.
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let (sends, replies): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        let bus = bus.clone();
        tokio::spawn(async move {
            answer(&bus, sends, replies).await;
            drop(slot);
        });
    }
}

/// One request; each send gets its own outcome (or the request's error).
async fn answer(bus: &Bus, sends: Vec<SendMessage>, replies: Vec<oneshot::Sender<Result<MessageSent, ApiError>>>) {
    if let [_] = sends.as_slice() {
        // Alone: the plain command, so a lone send costs what it always did.
        let Some(send) = sends.into_iter().next() else { return };
        let result = bus.request(&send).await;
        for reply in replies {
            let _ = reply.send(result.clone());
        }
        return;
    }
    let n = sends.len();
    match bus.request(&SendMessages { sends }).await {
        Ok(outcomes) if outcomes.len() == n => {
            for (outcome, reply) in outcomes.into_iter().zip(replies) {
                let _ = reply.send(match outcome {
                    SendOutcome::Sent(sent) => Ok(sent),
                    SendOutcome::Failed(e) => Err(e),
                });
            }
        }
        Ok(outcomes) => {
            tracing::error!(sent = n, answered = outcomes.len(), "message-store answered a batch of sends wrongly");
            for reply in replies {
                let _ = reply.send(Err(ApiError::internal()));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
