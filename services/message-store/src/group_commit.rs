//! Group commit: concurrent sends share transactions, so one WAL flush (with
//! `synchronous_commit` on) covers a whole batch instead of one message.
//!
//! Sends queue up for a few writer tasks; each room belongs to one writer (by a hash
//! of its id), so no two transactions of this process ever wait on one room's row,
//! and a room's sends are stored in arrival order. A writer takes whatever is queued
//! (up to [`MAX_BATCH`]), orders it by room, and stores the whole batch with one
//! statement (`SEND_BATCH`) — one round trip to PostgreSQL, one commit, whatever the
//! batch's size (the statement is prepared once per connection). A refused
//! send (not a member, no such room) comes back as its own error row and the others
//! commit. If the batch as a whole fails (an unexpected database error), each send is
//! retried alone, so one bad send never sinks the others. After the commit the batch's
//! events go to the publisher (`publish.rs`) and the replies go out.

use chat_domain::ApiError;
use chat_domain::proto::store::{MessageSent, SendMessage};
use chat_pg::PgPool;
use diesel_async::pooled_connection::PoolableConnection;
use tokio::sync::{mpsc, oneshot};

use crate::error::StoreError;
use crate::publish::{Created, Publisher};
use crate::send_batch::{Sent, Stored, send_batch};

/// Most sends in one transaction.
pub const MAX_BATCH: usize = 256;
/// Sends waiting for one writer; past this, callers wait (backpressure, not memory).
const QUEUE: usize = 4_096;

type Reply = oneshot::Sender<Result<MessageSent, ApiError>>;
/// A queued send: the command, when it arrived (the message's `created_at`), the reply,
/// and the span of the command that asked (the published event continues its trace).
type Queued = (SendMessage, chrono::DateTime<chrono::Utc>, Reply, tracing::Span);

/// Hands sends to the writers.
#[derive(Clone, Debug)]
pub struct Committer {
    /// One queue per writer; a room's sends always go to the same one.
    writers: Vec<mpsc::Sender<Queued>>,
}

impl Committer {
    /// Starts `writers` writer tasks; they end when every `Committer` is dropped.
    pub fn start(pool: PgPool, publisher: Publisher, writers: usize) -> (Self, Vec<tokio::task::JoinHandle<()>>) {
        let (senders, tasks) = (0..writers.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(QUEUE);
                (tx, tokio::spawn(writer(rx, pool.clone(), publisher.clone())))
            })
            .unzip();
        (Self { writers: senders }, tasks)
    }

    /// Stores one message (in whichever batch it lands in) and returns the result.
    pub async fn send(&self, cmd: SendMessage) -> Result<MessageSent, ApiError> {
        let (reply, answer) = oneshot::channel();
        let mut h = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(cmd.room_id.as_str(), &mut h);
        let writer = &self.writers[(std::hash::Hasher::finish(&h) % self.writers.len() as u64) as usize];
        writer
            .send((cmd, chat_domain::time::now(), reply, tracing::Span::current()))
            .await
            .map_err(|_| ApiError::unavailable("message-store is shutting down"))?;
        answer.await.map_err(|_| ApiError::internal())?
    }
}

async fn writer(mut rx: mpsc::Receiver<Queued>, pool: PgPool, publisher: Publisher) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // The writer keeps its connection: one PostgreSQL backend stores all of this
    // writer's batches (a pool would hand each batch to the next idle backend, and
    // at low rates every transaction would pay for a cold process).
    let mut conn: Option<Conn> = None;
    loop {
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        // Stable, so a room keeps arrival order.
        batch.sort_by(|a, b| a.0.room_id.cmp(&b.0.room_id));
        let mut cmds = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        let mut spans = Vec::with_capacity(batch.len());
        for (cmd, at, reply, span) in batch.drain(..) {
            cmds.push((cmd, at));
            replies.push(reply);
            spans.push(span);
        }
        let ticket = publisher.begin();
        match run_batch(&pool, &mut conn, &cmds).await {
            Ok(stored) => {
                let mut created: Vec<Created> = Vec::new();
                let answers: Vec<_> = stored
                    .results
                    .into_iter()
                    .zip(cmds.iter().zip(spans))
                    .map(|(result, ((cmd, _), span))| match result {
                        Ok(Sent::New(message)) => {
                            crate::metrics::MESSAGES.with_label_values(&[cmd.actor.tenant_id.as_str()]).inc();
                            created.push((cmd.actor.tenant_id.clone(), message.clone(), span));
                            Ok(MessageSent { message, duplicate: false })
                        }
                        Ok(Sent::Duplicate(message)) => Ok(MessageSent { message, duplicate: true }),
                        Err(e) => Err(ApiError::from(e)),
                    })
                    .collect();
                // The answers are handed over first and the events published right after,
                // in this same turn of the task (unless the client's queue is full): the
                // events reach the NATS client's queue before any reply does (a reply is
                // published by its command's handler, which runs later), and on a
                // one-thread runtime the client then writes events and replies together.
                // Published first, the events woke the client ahead of the handlers: one
                // write to NATS for the events, another for the replies, and two wake-ups
                // of nats-server and of the gateway. A crash in between is the crash
                // between commit and publish that the ticket already covers.
                for (answer, reply) in answers.into_iter().zip(replies) {
                    let _ = reply.send(answer);
                }
                publisher.publish(ticket, stored.tx, &created, &stored.threads).await;
            }
            Err(e) => {
                publisher.nothing(ticket, None);
                let e = ApiError::from(e);
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// A writer's own connection, taken from the pool for as long as it works.
type Conn = diesel_async::pooled_connection::bb8::PooledConnection<'static, diesel_async::AsyncPgConnection>;

/// One statement for the whole batch; if it fails as a whole, one per send (each its
/// own transaction; the highest transaction id is the batch's). A connection that
/// failed is given up, and the next batch takes a fresh one.
async fn run_batch(
    pool: &PgPool,
    conn: &mut Option<Conn>,
    cmds: &[(SendMessage, chrono::DateTime<chrono::Utc>)],
) -> Result<Stored, StoreError> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(pool.get_owned().await?),
    };
    match send_batch(c, cmds).await {
        Ok(stored) => Ok(stored),
        // A connection that broke (PostgreSQL restarted, the network dropped) fails
        // every send of the batch alike: retrying them one by one on it would answer
        // each with an error and keep the dead connection for the next batch.
        Err(StoreError::Db(e)) if cmds.len() > 1 && !PoolableConnection::is_broken(&mut **c) => {
            tracing::warn!(error = %e, sends = cmds.len(), "a batch of sends failed; storing them one by one");
            let mut results = Vec::with_capacity(cmds.len());
            let mut tx = 0;
            let mut threads = Vec::new();
            for one in cmds.chunks(1) {
                match send_batch(c, one).await {
                    Ok(mut stored) => {
                        tx = tx.max(stored.tx);
                        threads.append(&mut stored.threads);
                        results.push(
                            stored.results.pop().unwrap_or_else(|| Err(StoreError::Corrupt("no result".to_owned()))),
                        );
                    }
                    Err(e) => results.push(Err(e)),
                }
            }
            Ok(Stored { results, tx, threads })
        }
        Err(e) => {
            *conn = None;
            Err(e)
        }
    }
}
