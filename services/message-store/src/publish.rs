//! Publishing `message.created` after commit, straight from the committed batch: the
//! messages table is the ordered log, so there is no outbox row written and deleted
//! per message (DESIGN promise 3).
//!
//! What makes that safe is a watermark per running message-store, kept in the
//! `publishers` table with a lease:
//!
//! - Every stored message carries the id of the transaction that stored it (`tx`,
//!   assigned in increasing order). Before a writer runs a batch it takes a
//!   [`Ticket`]; the batch's transaction id will be above every id this process has
//!   seen so far, so "the highest seen + 1" is a floor for it.
//! - The watermark is the lowest floor of the tickets still open (batch running, or
//!   committed and not yet handed to NATS). Every batch of this process below it has
//!   reached the bus.
//! - The writer that committed a batch publishes its events itself, then closes the
//!   ticket. Every [`LEASE_EVERY`] the publisher flushes NATS (the server has everything sent
//!   so far) and then writes the watermark and renews its lease: one small write per
//!   interval, not per message or batch.
//! - [`relay`] (in every replica) looks for leases that ran out — a process that died,
//!   possibly between a commit and its publish — and republishes every message stored
//!   from that watermark on (up to the newest transaction id handed out), then drops
//!   the row. Messages of other publishers in that range go out twice, which is
//!   harmless: gateways drop a `seq` they have delivered, and notification reads the
//!   log itself.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use chat_bus::Subjects;
use chat_domain::ids::TenantId;
use chat_domain::model::Message;
use chat_domain::proto::events::{RoomEvent, RoomEventBody};
use chat_pg::{PgPool, prepared};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, RunQueryDsl};
use tokio::sync::mpsc;

use crate::error::{StoreError, optional, stored};
use crate::rows::MessageRow;
use crate::send_batch::ThreadChange;

/// How often the watermark is written and the lease renewed.
pub const LEASE_EVERY: Duration = Duration::from_secs(2);
/// How long a lease lasts without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// Messages read per page when republishing.
const RELAY_PAGE: i64 = 500;

/// A stored message to publish: its tenant, the message, and the span of the command
/// that sent it (whose trace the event continues).
pub type Created = (TenantId, Message, tracing::Span);

/// A batch in flight, between "about to run" and "its events are on the bus".
#[derive(Debug)]
#[must_use = "a ticket holds the watermark back until it is done"]
pub struct Ticket(u64);

/// The watermark: see the module documentation.
#[derive(Debug, Default)]
struct Marks {
    next: u64,
    /// Open tickets and their floors.
    open: BTreeMap<u64, i64>,
    /// Highest transaction id seen in a batch result (or the start point).
    seen: i64,
}

impl Marks {
    fn value(&self) -> i64 {
        self.open.values().copied().min().unwrap_or(self.seen + 1)
    }
}

/// Publishes committed batches (from the writer's own task: no hop to another task
/// between a commit and its events) and keeps the watermark.
#[derive(Clone, Debug)]
pub struct Publisher {
    client: async_nats::Client,
    marks: Arc<Mutex<Marks>>,
    subjects: Subjects,
    /// See [`PublisherConfig::crash_before_publish`].
    crash_before_publish: bool,
    /// Dropped with the last `Publisher`: tells the lease task to finish.
    _alive: mpsc::Sender<()>,
}

impl Publisher {
    /// Opens a ticket for a batch about to run.
    pub fn begin(&self) -> Ticket {
        let Ok(mut m) = self.marks.lock() else { return Ticket(u64::MAX) };
        m.next += 1;
        let (id, floor) = (m.next, m.seen + 1);
        m.open.insert(id, floor);
        Ticket(id)
    }

    /// Closes a ticket whose batch stored nothing to publish (it failed, or held only
    /// resends and refusals).
    pub fn nothing(&self, ticket: Ticket, tx: Option<i64>) {
        self.close(ticket, tx);
    }

    fn close(&self, ticket: Ticket, tx: Option<i64>) {
        if let Ok(mut m) = self.marks.lock() {
            m.open.remove(&ticket.0);
            if let Some(tx) = tx {
                m.seen = m.seen.max(tx);
            }
        }
    }

    /// Publishes the `message.created` events of a committed batch (`tx`), in order,
    /// and closes its ticket once the NATS client has them all. Each event carries the
    /// trace context of the command that sent its message (`traceparent` header), so
    /// the gateways' fan-out continues that send's trace.
    ///
    /// Then the batch's `thread.updated` events (threads replied in). Those are not
    /// republished by the relay: the summary is durable on the parent, which every read
    /// path, sync and resume show, so a lost one leaves no reader behind for long.
    pub async fn publish(&self, ticket: Ticket, tx: i64, created: &[Created], threads: &[ThreadChange]) {
        if let Ok(mut m) = self.marks.lock() {
            m.seen = m.seen.max(tx);
        }
        if self.crash_before_publish {
            // Never published, the ticket never closed: the watermark stays below it.
            return;
        }
        for (tenant, message, span) in created {
            if let Some((subject, payload)) = encode(&self.subjects, tenant, message) {
                let mut headers = async_nats::HeaderMap::new();
                chat_bus::trace::inject_from(span, &mut headers);
                publish_until_sent(&self.client, subject, Some(headers), payload).await;
            }
        }
        self.threads_changed(threads).await;
        self.close(ticket, None);
    }

    /// Publishes `thread.updated` events (after the commit that changed them).
    pub async fn threads_changed(&self, threads: &[ThreadChange]) {
        for t in threads {
            let event = RoomEvent::new(&t.tenant, &t.room, t.at, RoomEventBody::ThreadUpdated(t.update.clone()));
            let subject = self.subjects.room_event(&t.tenant, &t.room, event.body.kind());
            match serde_json::to_vec(&event) {
                Ok(payload) => publish_until_sent(&self.client, subject, None, Bytes::from(payload)).await,
                Err(e) => tracing::error!(error = %e, "could not serialize a thread event"),
            }
        }
    }
}

/// A `message.created` event, serialized, with its subject.
fn encode(subjects: &Subjects, tenant: &TenantId, message: &Message) -> Option<(String, Bytes)> {
    let event =
        RoomEvent::new(tenant, &message.room_id, message.created_at, RoomEventBody::MessageCreated(message.clone()));
    let subject = subjects.room_event(tenant, &message.room_id, event.body.kind());
    match serde_json::to_vec(&event) {
        Ok(payload) => Some((subject, Bytes::from(payload))),
        Err(e) => {
            tracing::error!(error = %e, "could not serialize a message event");
            None
        }
    }
}

/// Settings of the publisher.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// This process's row in `publishers`.
    pub id: String,
    pub lease_every: Duration,
    pub lease_ttl: Duration,
    /// For tests: commit batches but never publish them and never renew the lease —
    /// a process that dies between commit and publish, as its peers see it.
    pub crash_before_publish: bool,
}

/// Registers this publisher (watermark at the newest transaction id handed out, since
/// nothing of ours is older) and starts its task. The task ends when every
/// [`Publisher`] is dropped; it then flushes, and removes its row when everything it
/// was given is on the bus.
pub async fn start(
    pool: PgPool,
    client: async_nats::Client,
    subjects: Subjects,
    config: PublisherConfig,
) -> anyhow::Result<(Publisher, tokio::task::JoinHandle<()>)> {
    #[derive(QueryableByName)]
    struct Start {
        #[diesel(sql_type = BigInt)]
        start: i64,
    }
    let mut conn = pool.get().await.context("publisher registration")?;
    let start: Start = diesel::sql_query(
        "INSERT INTO publishers (id, bus_prefix, confirmed_tx, lease_until)
         VALUES ($1, $2, pg_snapshot_xmax(pg_current_snapshot())::text::bigint,
                 now() + make_interval(secs => $3::double precision / 1000))
         ON CONFLICT (id) DO UPDATE SET confirmed_tx = EXCLUDED.confirmed_tx, lease_until = EXCLUDED.lease_until
         RETURNING confirmed_tx AS start",
    )
    .bind::<Text, _>(&config.id)
    .bind::<Text, _>(subjects.prefix())
    .bind::<BigInt, _>(millis(config.lease_ttl))
    .get_result(&mut conn)
    .await
    .context("registering the publisher")?;
    drop(conn);
    let marks = Arc::new(Mutex::new(Marks { seen: start.start - 1, ..Marks::default() }));
    let (alive, gone) = mpsc::channel(1);
    let publisher = Publisher {
        client: client.clone(),
        marks: marks.clone(),
        subjects: subjects.clone(),
        crash_before_publish: config.crash_before_publish,
        _alive: alive,
    };
    let task = tokio::spawn(run(pool, client, subjects, config, marks, gone));
    Ok((publisher, task))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The lease: renewed with the watermark every `lease_every`, until every
/// [`Publisher`] is gone; then, if everything handed to the client reached the server,
/// the row is removed (nobody needs to republish for us).
async fn run(
    pool: PgPool,
    client: async_nats::Client,
    subjects: Subjects,
    config: PublisherConfig,
    marks: Arc<Mutex<Marks>>,
    mut gone: mpsc::Receiver<()>,
) {
    let mut lease = tokio::time::interval(config.lease_every);
    lease.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = gone.recv() => break,
            _ = lease.tick() => {
                if !config.crash_before_publish {
                    renew(&pool, &client, &subjects, &config, &marks).await;
                }
            }
        }
    }
    if config.crash_before_publish {
        return;
    }
    let open = marks.lock().map(|m| m.open.len()).unwrap_or(1);
    if open == 0 && client.flush().await.is_ok() {
        if let Err(e) = unregister(&pool, &config.id).await {
            tracing::warn!(error = %e, "could not remove the publisher row; its lease will run out");
        }
    } else {
        renew(&pool, &client, &subjects, &config, &marks).await;
    }
}

/// Core NATS publishes only fail when the client is closing or its buffer is full;
/// wait and retry (a reconnecting client buffers). Ends only once the client took it.
async fn publish_until_sent(
    client: &async_nats::Client,
    subject: String,
    headers: Option<async_nats::HeaderMap>,
    payload: Bytes,
) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let sent = match &headers {
            Some(h) => client.publish_with_headers(subject.clone(), h.clone(), payload.clone()).await,
            None => client.publish(subject.clone(), payload.clone()).await,
        };
        match sent {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, %subject, "publishing a message event failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Flushes NATS, then writes the watermark and renews the lease.
async fn renew(
    pool: &PgPool,
    client: &async_nats::Client,
    subjects: &Subjects,
    config: &PublisherConfig,
    marks: &Mutex<Marks>,
) {
    // The watermark is read before the flush: whatever it covers was handed to the
    // client before, so the flush covers it.
    let Ok(watermark) = marks.lock().map(|m| m.value()) else { return };
    let flushed = client.flush().await.is_ok();
    let result = async {
        let mut conn = pool.get().await?;
        prepared(
            diesel::sql_query(
                "INSERT INTO publishers (id, bus_prefix, confirmed_tx, lease_until)
                 VALUES ($1, $2, $3, now() + make_interval(secs => $4::double precision / 1000))
                 ON CONFLICT (id) DO UPDATE SET
                     confirmed_tx = CASE WHEN $5 THEN EXCLUDED.confirmed_tx ELSE publishers.confirmed_tx END,
                     lease_until = EXCLUDED.lease_until",
            )
            .bind::<Text, _>(&config.id)
            .bind::<Text, _>(subjects.prefix())
            .bind::<BigInt, _>(watermark)
            .bind::<BigInt, _>(millis(config.lease_ttl))
            .bind::<diesel::sql_types::Bool, _>(flushed),
        )
        .execute(&mut conn)
        .await?;
        Ok::<_, StoreError>(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not renew the publisher lease");
    }
}

async fn unregister(pool: &PgPool, id: &str) -> Result<(), StoreError> {
    let mut conn = pool.get().await?;
    diesel::sql_query("DELETE FROM publishers WHERE id = $1").bind::<Text, _>(id).execute(&mut conn).await?;
    Ok(())
}

/// Every `every` until `shutdown`: republishes for publishers of this prefix whose
/// lease ran out. Replicas share the work (`FOR UPDATE SKIP LOCKED`).
pub async fn relay(
    pool: PgPool,
    client: async_nats::Client,
    subjects: Subjects,
    every: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {
                loop {
                    match take_over(&pool, &client, &subjects).await {
                        Ok(None) => break,
                        Ok(Some((id, n))) => {
                            crate::metrics::REPUBLISHED.with_label_values(&["log"]).inc_by(n as u64);
                            tracing::info!(publisher = %id, messages = n, "republished after a publisher's lease ran out");
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "publisher relay round failed");
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// Takes over one expired publisher: republishes its range and deletes its row, in
/// one transaction (if this fails half way, the row comes back and it is tried
/// again). `None` when no lease has run out.
pub async fn take_over(
    pool: &PgPool,
    client: &async_nats::Client,
    subjects: &Subjects,
) -> anyhow::Result<Option<(String, usize)>> {
    #[derive(QueryableByName)]
    struct Dead {
        #[diesel(sql_type = Text)]
        id: String,
        #[diesel(sql_type = BigInt)]
        confirmed_tx: i64,
    }
    #[derive(QueryableByName)]
    struct Upto {
        #[diesel(sql_type = BigInt)]
        upto: i64,
    }
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        tenant_id: String,
        #[diesel(sql_type = BigInt)]
        tx: i64,
        #[diesel(embed)]
        message: MessageRow,
    }
    let mut conn = pool.get().await.context("relay connection")?;
    // Cheap check first: a relay round usually finds nothing.
    let expired: Option<Dead> = optional(
        prepared(
            diesel::sql_query(
                "SELECT id, confirmed_tx FROM publishers WHERE bus_prefix = $1 AND lease_until < now() LIMIT 1",
            )
            .bind::<Text, _>(subjects.prefix()),
        )
        .get_result(&mut conn)
        .await,
    )?;
    if expired.is_none() {
        return Ok(None);
    }
    let (client, subjects) = (client.clone(), subjects.clone());
    let taken = conn
        .transaction(async move |conn| -> Result<Option<(String, usize)>, StoreError> {
            let dead: Option<Dead> = optional(
                diesel::sql_query(
                    "DELETE FROM publishers WHERE id = (
                         SELECT id FROM publishers WHERE bus_prefix = $1 AND lease_until < now()
                         ORDER BY confirmed_tx LIMIT 1 FOR UPDATE SKIP LOCKED)
                     RETURNING id, confirmed_tx",
                )
                .bind::<Text, _>(subjects.prefix())
                .get_result(conn)
                .await,
            )?;
            let Some(dead) = dead else { return Ok(None) };
            // Every transaction id the dead process was given is below this.
            let upto: Upto = diesel::sql_query("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS upto")
                .get_result(conn)
                .await?;
            // Keyset paging in (tx, room, seq) order, from the first row at the watermark.
            let mut after = (dead.confirmed_tx, String::new(), -1i64);
            let mut sent = 0usize;
            loop {
                let rows: Vec<Row> = prepared(
                    diesel::sql_query(
                        "SELECT r.tenant_id, m.tx, m.id, m.room_id, m.sender_id, m.sender_name, m.seq, m.content,
                                m.meta, m.client_msg_id, m.created_at, m.edited_at, m.deleted_at, m.kind,
                                m.reply_to, m.attachments,
                m.parent_id, m.reply_count, m.last_reply_at, m.thread_participants, m.mentions
                         FROM messages m JOIN rooms r ON r.id = m.room_id
                         WHERE m.tx >= $1 AND m.tx < $2 AND (m.tx, m.room_id, m.seq) > ($1, $3, $4)
                         ORDER BY m.tx, m.room_id, m.seq LIMIT $5",
                    )
                    .bind::<BigInt, _>(after.0)
                    .bind::<BigInt, _>(upto.upto)
                    .bind::<Text, _>(&after.1)
                    .bind::<BigInt, _>(after.2)
                    .bind::<BigInt, _>(RELAY_PAGE),
                )
                .load(conn)
                .await?;
                let full = rows.len() as i64 == RELAY_PAGE;
                for row in rows {
                    after = (row.tx, row.message.room_id.clone(), row.message.seq);
                    let tenant = stored(TenantId::parse(row.tenant_id))?;
                    let message = Message::try_from(row.message)?;
                    if let Some((subject, payload)) = encode(&subjects, &tenant, &message) {
                        publish_until_sent(&client, subject, None, payload).await;
                        sent += 1;
                    }
                }
                if !full {
                    break;
                }
            }
            client.flush().await.map_err(|e| StoreError::Api(chat_domain::ApiError::unavailable(e.to_string())))?;
            Ok(Some((dead.id, sent)))
        })
        .await?;
    Ok(taken)
}
