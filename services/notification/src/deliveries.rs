//! Webhook deliveries with retries and dead letters.
//!
//! Each delivery is a row in `notification.deliveries` (its id is sent to the
//! receiver as `X-Chat-Delivery`, the same on every retry) and a job on a JetStream
//! work queue. The worker POSTs the JSON body signed with HMAC-SHA256 over the raw
//! bytes (`X-Chat-Signature: sha256=<hex>`). A failure (non-2xx, timeout, refused)
//! is retried with exponential backoff and jitter by a delayed nak — never a tight
//! loop — until the tenant's `max_attempts`; then the delivery becomes a dead letter,
//! published on `<p>.dlq.<tenant>.<kind>` and listed by the admin API. Jobs live in
//! JetStream, so a restart of this service loses nothing: pending jobs come back.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, AckKind, consumer, stream};
use chat_domain::ApiError;
use chat_domain::ids::{DeliveryId, NotificationId, TenantId, UserId};
use chat_domain::model::RetryPolicy;
use chat_domain::proto::store::{GetWebhook, Webhook};
use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, Integer, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::Semaphore;

use crate::State;

/// Webhook requests in flight at once per instance.
const CONCURRENCY: usize = 32;
/// Longest a receiver may take to answer.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// The durable consumer every replica shares.
const CONSUMER: &str = "deliveries";

#[derive(Debug, Serialize, Deserialize)]
struct Job {
    delivery_id: String,
}

/// How long start-up keeps trying to create the streams. On a NATS cluster that is
/// itself starting, JetStream answers only once its nodes have elected a leader and a
/// replicated stream's peers are placed; until then requests time out.
const STREAMS_DEADLINE: Duration = Duration::from_secs(120);

/// Makes sure the work queue and the dead-letter stream exist, with `replicas` copies,
/// asking again (for up to [`STREAMS_DEADLINE`]) while JetStream is not ready.
pub async fn ensure_streams(
    js: &jetstream::Context,
    subjects: &chat_bus::Subjects,
    replicas: usize,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + STREAMS_DEADLINE;
    let mut pause = Duration::from_millis(200);
    loop {
        match create_streams(js, subjects, replicas).await {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = format!("{e:#}"), "JetStream not ready for the notification streams; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

async fn create_streams(js: &jetstream::Context, subjects: &chat_bus::Subjects, replicas: usize) -> anyhow::Result<()> {
    js.create_or_update_stream(stream::Config {
        name: subjects.deliveries_stream(),
        subjects: vec![subjects.delivery_jobs()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .context("creating the deliveries stream")?;
    js.create_or_update_stream(stream::Config {
        name: subjects.dead_letter_stream(),
        subjects: vec![subjects.all_dead_letters()],
        storage: stream::StorageType::File,
        max_age: Duration::from_secs(30 * 24 * 3600),
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .context("creating the dead-letter stream")?;
    Ok(())
}

async fn webhook(state: &State, tenant: &TenantId) -> Result<Webhook, ApiError> {
    state.bus.request(&GetWebhook { tenant_id: tenant.clone() }).await
}

/// Records webhook deliveries for offline recipients of a notification and queues them.
pub async fn enqueue_notification(
    state: &State,
    tenant: &TenantId,
    id: &NotificationId,
    topic: &str,
    body: &Value,
    users: &[UserId],
) {
    let items: Vec<NewDelivery> = users
        .iter()
        .map(|u| NewDelivery {
            kind: "notification",
            ref_id: id.to_string(),
            user: u.clone(),
            room: None,
            topic: Some(topic.to_owned()),
            body: json!({"type": "notification", "user_id": u, "notification": body}),
        })
        .collect();
    enqueue(state, tenant, items).await;
}

/// One delivery to record.
pub struct NewDelivery {
    pub kind: &'static str,
    pub ref_id: String,
    pub user: UserId,
    pub room: Option<String>,
    pub topic: Option<String>,
    pub body: Value,
}

/// Records deliveries (once per kind, reference and user) and queues a job for each,
/// when the tenant has a webhook.
pub async fn enqueue(state: &State, tenant: &TenantId, items: Vec<NewDelivery>) {
    if items.is_empty() {
        return;
    }
    match webhook(state, tenant).await {
        Ok(w) if w.url.is_some() => {}
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the tenant's webhook; offline items stay in inboxes only");
            return;
        }
    }
    let Ok(mut conn) = state.pool.get().await else {
        tracing::error!("no database connection for webhook deliveries");
        return;
    };
    for item in items {
        let id = DeliveryId::generate();
        let inserted = diesel::sql_query(
            "INSERT INTO notification.deliveries (id, tenant_id, kind, ref_id, user_id, room_id, topic, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind::<Text, _>(id.as_str())
        .bind::<Text, _>(tenant.as_str())
        .bind::<Text, _>(item.kind)
        .bind::<Text, _>(&item.ref_id)
        .bind::<Text, _>(item.user.as_str())
        .bind::<Nullable<Text>, _>(&item.room)
        .bind::<Nullable<Text>, _>(&item.topic)
        .bind::<Jsonb, _>(&item.body)
        .execute(&mut conn)
        .await;
        match inserted {
            Ok(1) => queue(state, &id).await,
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "could not record a webhook delivery"),
        }
    }
}

/// Puts a delivery's job on the work queue.
pub async fn queue(state: &State, id: &DeliveryId) {
    let payload = serde_json::to_vec(&Job { delivery_id: id.to_string() }).unwrap_or_default();
    match state.js.publish(state.bus.subjects().delivery_jobs(), payload.into()).await {
        Ok(ack) => {
            if let Err(e) = ack.await {
                tracing::error!(error = %e, delivery = %id, "the work queue did not take a delivery job");
            }
        }
        Err(e) => tracing::error!(error = %e, delivery = %id, "could not queue a delivery job"),
    }
}

/// Queues the jobs of deliveries recorded with `queued = false` (the offline pass
/// records them in the transaction that closes their window, and queues them once it
/// has committed), then marks the ones the work queue confirmed. Each job carries its
/// delivery id as `Nats-Msg-Id`, so queuing one again — after a crash between commit
/// and confirmation — within the stream's duplicate window makes no second job.
pub async fn queue_recorded(state: &State, ids: &[DeliveryId]) {
    if ids.is_empty() {
        return;
    }
    let subject = state.bus.subjects().delivery_jobs();
    let mut acks = Vec::with_capacity(ids.len());
    for id in ids {
        let payload = serde_json::to_vec(&Job { delivery_id: id.to_string() }).unwrap_or_default();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(chat_bus::events::MSG_ID, id.as_str());
        match state.js.publish_with_headers(subject.clone(), headers, payload.into()).await {
            Ok(ack) => acks.push((id, ack)),
            Err(e) => tracing::warn!(error = %e, delivery = %id, "could not queue a delivery job; it is retried"),
        }
    }
    let mut confirmed = Vec::with_capacity(acks.len());
    for (id, ack) in acks {
        match ack.await {
            Ok(_) => confirmed.push(id.as_str()),
            Err(e) => tracing::warn!(error = %e, delivery = %id, "the work queue did not take a job; it is retried"),
        }
    }
    if confirmed.is_empty() {
        return;
    }
    let marked = async {
        let mut conn = state.pool.get().await.context("database")?;
        chat_pg::prepared(
            diesel::sql_query("UPDATE notification.deliveries SET queued = true WHERE id = ANY($1)")
                .bind::<Array<Text>, _>(&confirmed),
        )
        .execute(&mut conn)
        .await
        .context("marking deliveries queued")
    };
    if let Err(e) = marked.await {
        tracing::warn!(error = format!("{e:#}"), "could not mark deliveries queued; they are queued again later");
    }
}

/// Queues again the deliveries whose job was never confirmed (see [`queue_recorded`]),
/// of the tenants whose id starts with `tenant_prefix` (all when `None`): the offline
/// pass's own, when deployments share a database.
pub async fn requeue_unqueued(state: &State, tenant_prefix: Option<&str>) {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        id: String,
    }
    let rows = async {
        let mut conn = state.pool.get().await.context("database")?;
        chat_pg::prepared(
            diesel::sql_query(
                "SELECT id FROM notification.deliveries
             WHERE NOT queued AND status = 'pending' AND ($1::text IS NULL OR starts_with(tenant_id, $1))
             ORDER BY created_at LIMIT 1000",
            )
            .bind::<Nullable<Text>, _>(tenant_prefix),
        )
        .load::<Row>(&mut conn)
        .await
        .context("reading unqueued deliveries")
    };
    match rows.await {
        Ok(rows) => {
            let ids: Vec<DeliveryId> = rows.into_iter().filter_map(|r| DeliveryId::parse(r.id).ok()).collect();
            if !ids.is_empty() {
                tracing::info!(deliveries = ids.len(), "queuing deliveries whose job was never confirmed");
            }
            queue_recorded(state, &ids).await;
        }
        Err(e) => tracing::warn!(error = format!("{e:#}"), "could not look for unqueued deliveries"),
    }
}

/// The delay before retry number `attempt` (1-based): `backoff * 2^(attempt-1)`, plus
/// up to 20% jitter, capped at an hour.
pub fn backoff(policy: RetryPolicy, attempt: u32) -> Duration {
    let base = policy.backoff_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(20));
    let jitter = rand::random_range(0..=base / 5 + 1);
    Duration::from_millis(base.saturating_add(jitter).min(3_600_000))
}

/// The signature header value for `body`.
pub fn signature(secret: &str, body: &[u8]) -> Option<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(body);
    Some(format!("sha256={}", hex::encode(mac.finalize().into_bytes())))
}

/// Takes jobs from the work queue and delivers them until `shutdown`.
pub async fn worker(state: State, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let stream = state.js.get_stream(state.bus.subjects().deliveries_stream()).await.context("deliveries stream")?;
    let consumer = stream
        .get_or_create_consumer(
            CONSUMER,
            consumer::pull::Config {
                durable_name: Some(CONSUMER.to_owned()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: HTTP_TIMEOUT * 3,
                ..Default::default()
            },
        )
        .await
        .context("deliveries consumer")?;
    let mut messages = consumer.messages().await.context("consuming deliveries")?;
    let http = crate::webhook_guard::client(HTTP_TIMEOUT, state.webhook_allow_private).context("http client")?;
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    tokio::pin!(shutdown);
    while let Some(msg) = chat_bus::events::next_or_stop(&mut messages, &mut shutdown, "delivery queue").await {
        let Ok(permit) = permits.clone().acquire_owned().await else { break };
        let (state, http) = (state.clone(), http.clone());
        tokio::spawn(async move {
            deliver(&state, &http, msg).await;
            drop(permit);
        });
    }
    // Let deliveries in flight finish (bounded); unfinished ones are redelivered.
    let _ = tokio::time::timeout(HTTP_TIMEOUT, permits.acquire_many(CONCURRENCY as u32)).await;
    Ok(())
}

#[derive(diesel::QueryableByName)]
struct Delivery {
    #[diesel(sql_type = Text)]
    tenant_id: String,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Jsonb)]
    body: Value,
    #[diesel(sql_type = Integer)]
    attempts: i32,
}

async fn deliver(state: &State, http: &reqwest::Client, msg: jetstream::Message) {
    let outcome = attempt(state, http, &msg).await;
    let ack = match outcome {
        Ok(None) => msg.ack().await,
        Ok(Some(delay)) => msg.ack_with(AckKind::Nak(Some(delay))).await,
        Err(e) => {
            // Our own trouble (database, bus): try again soon, without counting it.
            tracing::warn!(error = %e, "delivery attempt could not run");
            msg.ack_with(AckKind::Nak(Some(Duration::from_secs(2)))).await
        }
    };
    if let Err(e) = ack {
        tracing::warn!(error = %e, "could not acknowledge a delivery job; it will come back");
    }
}

/// One attempt. `Ok(None)`: done with the job (delivered, dead, or unknown);
/// `Ok(Some(delay))`: retry after `delay`.
async fn attempt(state: &State, http: &reqwest::Client, msg: &jetstream::Message) -> anyhow::Result<Option<Duration>> {
    let Ok(job) = serde_json::from_slice::<Job>(&msg.payload) else {
        tracing::warn!("malformed delivery job dropped");
        return Ok(None);
    };
    let mut conn = state.pool.get().await.context("database")?;
    let row: Option<Delivery> =
        diesel::sql_query("SELECT tenant_id, kind, status, body, attempts FROM notification.deliveries WHERE id = $1")
            .bind::<Text, _>(&job.delivery_id)
            .get_result(&mut conn)
            .await
            .map(Some)
            .or_else(|e| if e == diesel::result::Error::NotFound { Ok(None) } else { Err(e) })?;
    let Some(d) = row.filter(|d| d.status == "pending") else { return Ok(None) };
    let tenant = TenantId::parse(d.tenant_id.as_str()).context("stored tenant id")?;
    let hook = webhook(state, &tenant).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let attempt_no = u32::try_from(d.attempts).unwrap_or(0) + 1;
    let mut body = d.body.clone();
    body["delivery_id"] = json!(job.delivery_id);
    body["tenant_id"] = json!(tenant.as_str());
    body["attempt"] = json!(attempt_no);
    let raw = serde_json::to_vec(&body).context("delivery body")?;
    // What is recorded of a failure is ours to say (a fixed phrase and the status),
    // never what the receiver or a resolver said: dead letters are shown to the tenant.
    let result = match &hook.url {
        None => Err("the tenant has no webhook_url".to_owned()),
        Some(url) if !crate::webhook_guard::url_allowed(url, state.webhook_allow_private) => {
            Err(crate::webhook_guard::REFUSED.to_owned())
        }
        Some(url) => {
            let mut req = http
                .post(url)
                .header("Content-Type", "application/json")
                .header("X-Chat-Delivery", &job.delivery_id)
                .header("X-Chat-Event", &d.kind)
                .header("X-Chat-Attempt", attempt_no.to_string())
                .body(raw.clone());
            if let Some(sig) = hook.secret.as_deref().and_then(|s| signature(s, &raw)) {
                req = req.header("X-Chat-Signature", sig);
            }
            match req.send().await {
                Ok(res) if res.status().is_success() => Ok(()),
                Ok(res) if res.status().is_redirection() => {
                    Err(format!("HTTP {} (redirects are not followed)", res.status().as_u16()))
                }
                Ok(res) => Err(format!("HTTP {}", res.status().as_u16())),
                Err(e) if e.is_timeout() => Err("timeout".to_owned()),
                Err(e) if refused_destination(&e) => Err(crate::webhook_guard::REFUSED.to_owned()),
                Err(e) if e.is_connect() => Err("connection failed".to_owned()),
                Err(e) => {
                    tracing::info!(error = %e, delivery = %job.delivery_id, "webhook request failed");
                    Err("request failed".to_owned())
                }
            }
        }
    };
    let now = chat_domain::time::now();
    match result {
        Ok(()) => {
            diesel::sql_query(
                "UPDATE notification.deliveries SET status = 'delivered', attempts = $2, last_attempt_at = $3, last_error = NULL
                 WHERE id = $1",
            )
            .bind::<Text, _>(&job.delivery_id)
            .bind::<Integer, _>(attempt_no as i32)
            .bind::<Timestamptz, _>(now)
            .execute(&mut conn)
            .await?;
            crate::metrics::WEBHOOK_ATTEMPTS.with_label_values(&["delivered"]).inc();
            Ok(None)
        }
        Err(error) => {
            let dead = attempt_no >= hook.retry.max_attempts;
            diesel::sql_query(
                "UPDATE notification.deliveries SET attempts = $2, last_attempt_at = $3, last_error = $4,
                   status = CASE WHEN $5 THEN 'dead' ELSE status END
                 WHERE id = $1",
            )
            .bind::<Text, _>(&job.delivery_id)
            .bind::<Integer, _>(attempt_no as i32)
            .bind::<Timestamptz, _>(now)
            .bind::<Text, _>(&error)
            .bind::<diesel::sql_types::Bool, _>(dead)
            .execute(&mut conn)
            .await?;
            crate::metrics::WEBHOOK_ATTEMPTS.with_label_values(&[if dead { "dead" } else { "retry" }]).inc();
            if dead {
                crate::metrics::DEAD_LETTERS.with_label_values(&[d.kind.as_str()]).inc();
                tracing::warn!(delivery = %job.delivery_id, attempts = attempt_no, %error, "delivery is a dead letter");
                dead_letter(state, &tenant, &d.kind, &job.delivery_id, attempt_no, &error, now).await;
                Ok(None)
            } else {
                Ok(Some(backoff(hook.retry, attempt_no)))
            }
        }
    }
}

/// Whether a request failed because [`crate::webhook_guard::PublicOnly`] refused every
/// address of the destination.
fn refused_destination(e: &reqwest::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = source {
        if err.to_string().contains(crate::webhook_guard::REFUSED) {
            return true;
        }
        source = err.source();
    }
    false
}

async fn dead_letter(
    state: &State,
    tenant: &TenantId,
    kind: &str,
    id: &str,
    attempts: u32,
    error: &str,
    at: DateTime<Utc>,
) {
    let subject = state.bus.subjects().dead_letter(tenant, kind);
    let payload = json!({
        "delivery_id": id, "tenant_id": tenant.as_str(), "kind": kind,
        "attempts": attempts, "error": error, "last_attempt_at": chat_domain::time::format(&at),
    });
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(chat_bus::events::MSG_ID, id);
    match state.js.publish_with_headers(subject, headers, payload.to_string().into()).await {
        Ok(ack) => {
            let _ = ack.await;
        }
        Err(e) => tracing::warn!(error = %e, "could not publish a dead letter; it is still listed by the admin API"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        let p = RetryPolicy { max_attempts: 5, backoff_ms: 100 };
        for (attempt, base) in [(1, 100u64), (2, 200), (3, 400), (4, 800)] {
            let d = backoff(p, attempt).as_millis() as u64;
            assert!(d >= base && d <= base + base / 5 + 1, "attempt {attempt}: {d} ms");
        }
        assert!(backoff(RetryPolicy { max_attempts: 20, backoff_ms: 3_600_000 }, 20) <= Duration::from_secs(3600));
    }

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        let sig = signature("Jefe", b"what do ya want for nothing?");
        assert_eq!(sig.as_deref(), Some("sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));
    }
}
