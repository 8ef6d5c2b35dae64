//! The event outbox (DESIGN promise 3) for the changes that are not messages — edits,
//! deletes, cursor moves, members (messages are published from the message log
//! itself, `publish.rs`): an event is inserted in the same transaction as the change
//! it describes; after commit the [`Publisher`] sends it on core NATS, flushes (the
//! server has it) and deletes the row. Rows the publisher never confirmed (a crash, a
//! NATS outage, a full queue) are picked up by [`relay`], which republishes them;
//! receivers tolerate the duplicate (a cursor or an edit applied twice is the same).

use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use chat_bus::Subjects;
use chat_domain::proto::events::{RoomEvent, UserEvent};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tokio::sync::mpsc;

use crate::error::StoreError;
use chat_pg::PgPool;

/// Events waiting for the publisher. When full, new events are left to the relay
/// rather than blocking the request that produced them.
pub const PUBLISH_QUEUE: usize = 16_384;
/// Most events published (and confirmed) in one round.
const BATCH: usize = 256;
/// Most rows one relay round takes.
const RELAY_BATCH: usize = 500;

/// An event committed to the outbox and not yet confirmed by JetStream.
#[derive(Debug, Clone)]
pub struct Pending {
    pub outbox_id: i64,
    pub event_id: String,
    pub subject: String,
    pub payload: Bytes,
}

/// Inserts a room event into the outbox inside the caller's transaction.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    subjects: &Subjects,
    event: &RoomEvent,
) -> Result<Pending, StoreError> {
    let subject = subjects.room_event(&event.tenant_id, &event.room_id, event.body.kind());
    let payload = serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    insert_raw(conn, subjects, subject, event.event_id.as_str(), payload).await
}

/// Inserts an event addressed to one user into the outbox inside the caller's transaction.
pub async fn insert_user(
    conn: &mut AsyncPgConnection,
    subjects: &Subjects,
    event: &UserEvent,
) -> Result<Pending, StoreError> {
    let subject = subjects.user_event(&event.tenant_id, &event.user_id, event.body.kind());
    let payload = serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    insert_raw(conn, subjects, subject, event.event_id.as_str(), payload).await
}

/// Inserts many events into the outbox with one statement inside the caller's
/// transaction (a batch of cursor moves writes all its events at once).
pub async fn insert_many(
    conn: &mut AsyncPgConnection,
    subjects: &Subjects,
    room_events: &[RoomEvent],
    user_events: &[UserEvent],
) -> Result<Vec<Pending>, StoreError> {
    let n = room_events.len() + user_events.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let encode = |e: serde_json::Result<String>| e.map_err(|e| StoreError::Corrupt(e.to_string()));
    let mut ids = Vec::with_capacity(n);
    let mut subjects_ = Vec::with_capacity(n);
    let mut payloads = Vec::with_capacity(n);
    for e in room_events {
        ids.push(e.event_id.as_str().to_owned());
        subjects_.push(subjects.room_event(&e.tenant_id, &e.room_id, e.body.kind()));
        payloads.push(encode(serde_json::to_string(e))?);
    }
    for e in user_events {
        ids.push(e.event_id.as_str().to_owned());
        subjects_.push(subjects.user_event(&e.tenant_id, &e.user_id, e.body.kind()));
        payloads.push(encode(serde_json::to_string(e))?);
    }
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let rows: Vec<Id> = chat_pg::prepared(
        diesel::sql_query(
            "INSERT INTO outbox (bus_prefix, event_id, subject, payload)
             SELECT $1, e.event_id, e.subject, e.payload
             FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS e(event_id, subject, payload, ord)
             ORDER BY e.ord
             RETURNING id",
        )
        .bind::<Text, _>(subjects.prefix())
        .bind::<Array<Text>, _>(&ids)
        .bind::<Array<Text>, _>(&subjects_)
        .bind::<Array<Text>, _>(&payloads),
    )
    .load(conn)
    .await?;
    if rows.len() != n {
        return Err(StoreError::Corrupt(format!("outbox insert returned {} ids for {n} events", rows.len())));
    }
    // Ids come from one sequence in insertion order; the statement inserts in `ord`
    // order, and only the set of ids matters to the publisher (it deletes by id).
    let mut out_ids: Vec<i64> = rows.into_iter().map(|r| r.id).collect();
    out_ids.sort_unstable();
    Ok(out_ids
        .into_iter()
        .zip(ids)
        .zip(subjects_)
        .zip(payloads)
        .map(|(((outbox_id, event_id), subject), payload)| Pending {
            outbox_id,
            event_id,
            subject,
            payload: Bytes::from(payload),
        })
        .collect())
}

async fn insert_raw(
    conn: &mut AsyncPgConnection,
    subjects: &Subjects,
    subject: String,
    event_id: &str,
    payload: String,
) -> Result<Pending, StoreError> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let row: Id = diesel::sql_query(
        "INSERT INTO outbox (bus_prefix, event_id, subject, payload) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind::<Text, _>(subjects.prefix())
    .bind::<Text, _>(event_id)
    .bind::<Text, _>(&subject)
    .bind::<Text, _>(&payload)
    .get_result(conn)
    .await?;
    Ok(Pending { outbox_id: row.id, event_id: event_id.to_owned(), subject, payload: Bytes::from(payload) })
}

/// Hands committed events to the background publisher.
#[derive(Clone, Debug)]
pub struct Publisher {
    tx: mpsc::Sender<Pending>,
}

impl Publisher {
    /// Queues events for publishing. Never blocks: a full queue leaves them to the relay.
    pub fn submit(&self, events: Vec<Pending>) {
        for e in events {
            if self.tx.try_send(e).is_err() {
                tracing::warn!("publish queue full; the outbox relay will publish the event");
            }
        }
    }
}

/// Starts the publisher task; it ends when every [`Publisher`] is dropped.
///
/// It keeps a database connection of its own (outside the pool), so clearing
/// published rows never waits behind the requests that are filling the outbox.
pub fn publisher(database_url: String, client: async_nats::Client) -> (Publisher, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Pending>(PUBLISH_QUEUE);
    let task = tokio::spawn(async move {
        let mut conn: Option<AsyncPgConnection> = None;
        let mut batch = Vec::with_capacity(BATCH);
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            let confirmed = publish_all(&client, &batch).await;
            if let Err(e) = delete(&database_url, &mut conn, &confirmed).await {
                conn = None;
                tracing::warn!(error = %e, "could not clear published outbox rows; the relay will retry");
            }
            batch.clear();
        }
    });
    (Publisher { tx }, task)
}

/// Publishes a batch in order on core NATS and flushes; returns the outbox ids the
/// server has (all of them, or none when the flush failed).
async fn publish_all(client: &async_nats::Client, batch: &[Pending]) -> Vec<i64> {
    let mut sent = Vec::with_capacity(batch.len());
    for p in batch {
        match client.publish(p.subject.clone(), p.payload.clone()).await {
            Ok(()) => sent.push(p.outbox_id),
            Err(e) => tracing::warn!(error = %e, subject = %p.subject, "publish failed; the relay will retry"),
        }
    }
    if let Err(e) = client.flush().await {
        tracing::warn!(error = %e, "the server did not confirm events; the relay will retry");
        return Vec::new();
    }
    sent
}

async fn delete(url: &str, conn: &mut Option<AsyncPgConnection>, ids: &[i64]) -> anyhow::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    if conn.is_none() {
        let mut c = AsyncPgConnection::establish(url).await.context("outbox publisher connection")?;
        // Clearing a published row need not wait for its own WAL flush: if the
        // deletion is lost in a crash, the relay publishes the row again: receivers
        // may see that event twice, with the same event_id (at least once). Sends keep
        // synchronous commits.
        diesel::sql_query("SET synchronous_commit = off")
            .execute(&mut c)
            .await
            .context("outbox publisher connection")?;
        *conn = Some(c);
    }
    let Some(c) = conn.as_mut() else { return Ok(()) };
    diesel::sql_query("DELETE FROM outbox WHERE id = ANY($1)")
        .bind::<Array<BigInt>, _>(ids)
        .execute(c)
        .await
        .context("deleting published outbox rows")?;
    Ok(())
}

/// Republishes this prefix's outbox rows older than `after`, every `every`, until
/// `shutdown`. Replicas share the work with `FOR UPDATE SKIP LOCKED`.
pub async fn relay(
    pool: PgPool,
    client: async_nats::Client,
    prefix: String,
    after: Duration,
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
                // Drain in full batches while there is a backlog.
                loop {
                    match relay_once(&pool, &client, &prefix, after).await {
                        Ok(0) => break,
                        Ok(n) => {
                            crate::metrics::REPUBLISHED.with_label_values(&["outbox"]).inc_by(n as u64);
                            tracing::info!(events = n, "outbox relay republished events");
                            if n < RELAY_BATCH {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "outbox relay round failed");
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// One relay round; returns how many events were confirmed.
pub async fn relay_once(
    pool: &PgPool,
    client: &async_nats::Client,
    prefix: &str,
    after: Duration,
) -> anyhow::Result<usize> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        id: i64,
        #[diesel(sql_type = Text)]
        event_id: String,
        #[diesel(sql_type = Text)]
        subject: String,
        #[diesel(sql_type = Text)]
        payload: String,
    }
    let mut conn = pool.get().await.context("outbox connection")?;
    let after_ms = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
    let client = client.clone();
    let prefix = prefix.to_owned();
    let confirmed = conn
        .transaction(async move |conn| -> Result<usize, StoreError> {
            let rows: Vec<Row> = diesel::sql_query(format!(
                "SELECT id, event_id, subject, payload FROM outbox
                 WHERE bus_prefix = $1 AND created_at < now() - make_interval(secs => $2::double precision / 1000)
                 ORDER BY id LIMIT {RELAY_BATCH} FOR UPDATE SKIP LOCKED"
            ))
            .bind::<Text, _>(&prefix)
            .bind::<BigInt, _>(after_ms)
            .load(conn)
            .await?;
            if rows.is_empty() {
                return Ok(0);
            }
            let batch: Vec<Pending> = rows
                .into_iter()
                .map(|r| Pending {
                    outbox_id: r.id,
                    event_id: r.event_id,
                    subject: r.subject,
                    payload: Bytes::from(r.payload),
                })
                .collect();
            let ids = publish_all(&client, &batch).await;
            diesel::sql_query("DELETE FROM outbox WHERE id = ANY($1)")
                .bind::<Array<BigInt>, _>(&ids)
                .execute(conn)
                .await?;
            Ok(ids.len())
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(confirmed)
}
