//! Group commit: concurrent sends share transactions, so one WAL flush (with
//! `synchronous_commit` on) covers a whole batch instead of one message.
//!
//! Sends queue up for a few writer tasks. A writer takes whatever is queued (up to
//! [`MAX_BATCH`]), orders it by room so every writer locks rooms in the same order
//! (no deadlocks between batches), and stores the whole batch with one call of
//! `chat_send_messages` plus one multi-row outbox insert, in one transaction: four
//! round trips to PostgreSQL per batch, whatever its size. A refused send (not a
//! member, no such room) comes back as its own error row and the others commit. If
//! the batch as a whole fails (an unexpected database error), each send is retried
//! alone in its own transaction, so one bad send never sinks the others. Replies go
//! out after the commit; events are handed to the outbox publisher then.

use std::sync::Arc;

use chat_bus::Subjects;
use chat_domain::ApiError;
use chat_domain::proto::store::{MessageSent, SendMessage};
use chat_pg::PgPool;
use diesel_async::AsyncConnection;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::error::StoreError;
use crate::handlers::{Sent, send_batch};
use crate::outbox::Publisher;

/// Most sends in one transaction.
pub const MAX_BATCH: usize = 128;
/// Sends waiting for a writer; past this, callers wait (backpressure, not memory).
const QUEUE: usize = 8_192;

type Reply = oneshot::Sender<Result<MessageSent, ApiError>>;
/// A queued send: the command, when it arrived (the message's `created_at`), the reply.
type Queued = (SendMessage, chrono::DateTime<chrono::Utc>, Reply);

/// Hands sends to the writers.
#[derive(Clone, Debug)]
pub struct Committer {
    tx: mpsc::Sender<Queued>,
}

impl Committer {
    /// Starts `writers` writer tasks; they end when every `Committer` is dropped.
    pub fn start(
        pool: PgPool,
        subjects: Subjects,
        publisher: Publisher,
        writers: usize,
    ) -> (Self, Vec<tokio::task::JoinHandle<()>>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let tasks = (0..writers.max(1))
            .map(|_| tokio::spawn(writer(rx.clone(), pool.clone(), subjects.clone(), publisher.clone())))
            .collect();
        (Self { tx }, tasks)
    }

    /// Stores one message (in whichever batch it lands in) and returns the result.
    pub async fn send(&self, cmd: SendMessage) -> Result<MessageSent, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((cmd, chat_domain::time::now(), reply))
            .await
            .map_err(|_| ApiError::unavailable("message-store is shutting down"))?;
        answer.await.map_err(|_| ApiError::internal())?
    }
}

async fn writer(rx: Arc<Mutex<mpsc::Receiver<Queued>>>, pool: PgPool, subjects: Subjects, publisher: Publisher) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        {
            let mut rx = rx.lock().await;
            if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
                return;
            }
        }
        // One lock order for every writer; stable, so a room keeps arrival order.
        batch.sort_by(|a, b| a.0.room_id.cmp(&b.0.room_id));
        let mut cmds = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for (cmd, at, reply) in batch.drain(..) {
            cmds.push((cmd, at));
            replies.push(reply);
        }
        let results = run_batch(&pool, &subjects, cmds).await;
        let mut pending = Vec::new();
        match results {
            Ok(results) => {
                for (result, reply) in results.into_iter().zip(replies) {
                    let answer = match result {
                        Ok(Sent::New(message, event)) => {
                            pending.push(event);
                            Ok(MessageSent { message, duplicate: false })
                        }
                        Ok(Sent::Duplicate(message)) => Ok(MessageSent { message, duplicate: true }),
                        Err(e) => Err(ApiError::from(e)),
                    };
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                let e = ApiError::from(e);
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
        publisher.submit(pending);
    }
}

/// One transaction for the whole batch; if it fails as a whole, one per send.
async fn run_batch(
    pool: &PgPool,
    subjects: &Subjects,
    cmds: Vec<(SendMessage, chrono::DateTime<chrono::Utc>)>,
) -> Result<Vec<Result<Sent, StoreError>>, StoreError> {
    let mut conn = pool.get().await?;
    let batch = {
        let (subjects, cmds) = (subjects.clone(), &cmds);
        conn.transaction(async move |c| send_batch(c, &subjects, cmds).await).await
    };
    match batch {
        Ok(results) => Ok(results),
        Err(StoreError::Db(e)) if cmds.len() > 1 => {
            tracing::warn!(error = %e, sends = cmds.len(), "a batch of sends failed; storing them one by one");
            let mut results = Vec::with_capacity(cmds.len());
            for one in cmds.chunks(1) {
                let subjects = subjects.clone();
                let result = conn.transaction(async move |c| send_batch(c, &subjects, one).await).await;
                // A batch of one: its own error, or the send's result.
                results.push(
                    result
                        .and_then(|mut r| r.pop().unwrap_or_else(|| Err(StoreError::Corrupt("no result".to_owned())))),
                );
            }
            Ok(results)
        }
        Err(e) => Err(e),
    }
}
