//! Offline messages: a durable consumer of `message.created` on the events stream.
//! Once a message is older than the grace period (so a member who is just
//! reconnecting counts as online), every member of the room other than the sender
//! who has no socket in the room gets an inbox entry and, when the tenant has a
//! webhook, a signed webhook delivery.
//!
//! Messages are read as they come and held until their grace period is over (the
//! stream is in publish order, so the oldest is always first), rather than handed
//! back to the server to be redelivered later. Whatever is due is handled together,
//! per room: one audience query, one presence query and one inbox insert for all of a
//! room's messages in the batch, rather than one of each per message.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, AckKind, consumer};
use chat_domain::ids::{RoomId, TenantId};
use chat_domain::model::Message;
use chat_domain::proto::events::{RoomEvent, RoomEventBody};
use chat_domain::proto::presence::GetOnline;
use chat_domain::proto::store::Audience;
use diesel::sql_types::{Array, Jsonb, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::State;
use crate::deliveries::{self, NewDelivery};

/// The durable consumer every replica shares.
const CONSUMER: &str = "offline-messages";
/// Most messages handled together.
const BATCH: usize = 1024;
/// Most messages held while their grace periods run (the consumer's
/// `max_ack_pending` bounds it on the server's side too).
const MAX_PENDING: usize = 10_000;
/// Rooms of one batch handled at once.
const ROOMS_AT_ONCE: usize = 8;

/// Follows new messages until `shutdown`.
pub async fn follow(
    state: State,
    grace: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let stream = state.js.get_stream(state.bus.subjects().events_stream()).await.context("events stream")?;
    let consumer = stream
        .get_or_create_consumer(
            CONSUMER,
            consumer::pull::Config {
                durable_name: Some(CONSUMER.to_owned()),
                filter_subject: state.bus.subjects().room_events_of_kind("message.created"),
                deliver_policy: consumer::DeliverPolicy::New,
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_ack_pending: 10_000,
                ..Default::default()
            },
        )
        .await
        .context("offline-messages consumer")?;
    let mut incoming = consumer.messages().await.context("consuming messages")?;
    // Messages taken from the server and not handled yet, in stream (publish) order,
    // each with the moment its grace period ends.
    let mut pending: VecDeque<(jetstream::Message, Option<RoomEvent>, tokio::time::Instant)> = VecDeque::new();
    tokio::pin!(shutdown);
    loop {
        let head_due = pending.front().map(|p| p.2);
        tokio::select! {
            _ = shutdown.as_mut() => break,
            next = incoming.next(), if pending.len() < MAX_PENDING => match next {
                Some(Ok(msg)) => {
                    let event = serde_json::from_slice::<RoomEvent>(&msg.payload).ok();
                    let age = event
                        .as_ref()
                        .and_then(|e| (chat_domain::time::now() - e.occurred_at).to_std().ok())
                        .unwrap_or_default();
                    let due = tokio::time::Instant::now() + grace.saturating_sub(age);
                    pending.push_back((msg, event, due));
                    continue;
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "offline-messages consumer error");
                    continue;
                }
                None => break,
            },
            _ = sleep_until_due(head_due) => {}
        }
        // Everything whose grace period is over, up to a batch.
        let now = tokio::time::Instant::now();
        let mut batch = Vec::new();
        while batch.len() < BATCH && pending.front().is_some_and(|p| p.2 <= now) {
            batch.extend(pending.pop_front());
        }
        if batch.is_empty() {
            continue;
        }
        let events: Vec<Option<RoomEvent>> = batch.iter_mut().map(|p| p.1.take()).collect();
        let failed = handle_batch(&state, &events).await;
        for (i, (msg, _, _)) in batch.iter().enumerate() {
            let kind = if failed.contains(&i) { AckKind::Nak(Some(Duration::from_secs(1))) } else { AckKind::Ack };
            ack(msg, kind).await;
        }
    }
    // Hand back what was taken and not handled, so another replica gets it at once.
    for (msg, _, _) in &pending {
        ack(msg, AckKind::Nak(None)).await;
    }
    Ok(())
}

/// Resolves at `due`, or never when nothing is pending.
async fn sleep_until_due(due: Option<tokio::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

async fn ack(msg: &jetstream::Message, kind: AckKind) {
    if let Err(e) = msg.ack_with(kind).await {
        tracing::warn!(error = %e, "could not acknowledge a message event");
    }
}

/// Handles a batch room by room; returns the indexes of messages to retry.
async fn handle_batch(state: &State, events: &[Option<RoomEvent>]) -> BTreeSet<usize> {
    let mut rooms: BTreeMap<(TenantId, RoomId), Vec<(usize, Message)>> = BTreeMap::new();
    for (i, event) in events.iter().enumerate() {
        if let Some(event @ RoomEvent { body: RoomEventBody::MessageCreated(message), .. }) = event {
            rooms.entry((event.tenant_id.clone(), event.room_id.clone())).or_default().push((i, message.clone()));
        }
    }
    let jobs: Vec<_> =
        rooms.into_iter().map(|((tenant, room), messages)| room_job(state, tenant, room, messages)).collect();
    let failed: Vec<Vec<usize>> = futures_util::stream::iter(jobs).buffer_unordered(ROOMS_AT_ONCE).collect().await;
    failed.into_iter().flatten().collect()
}

/// One room's part of a batch; the indexes of its messages when it failed.
async fn room_job(state: &State, tenant: TenantId, room: RoomId, messages: Vec<(usize, Message)>) -> Vec<usize> {
    match handle_room(state, &tenant, &room, &messages).await {
        Ok(()) => Vec::new(),
        Err(e) => {
            tracing::warn!(error = %e, room = %room, "offline handling failed; retrying");
            messages.iter().map(|(i, _)| *i).collect()
        }
    }
}

/// Inbox entries and webhook deliveries for the offline members of one room, for
/// `messages` (all from this room).
async fn handle_room(
    state: &State,
    tenant: &TenantId,
    room: &RoomId,
    messages: &[(usize, Message)],
) -> anyhow::Result<()> {
    let audience = Audience { tenant_id: tenant.clone(), room_id: Some(room.clone()) };
    let online = GetOnline { tenant_id: tenant.clone(), room_id: room.clone() };
    let (members, online) = tokio::join!(state.bus.request(&audience), state.bus.request(&online));
    let members = members.map_err(|e| anyhow::anyhow!("{e}"))?;
    let online: BTreeSet<_> = online.map_err(|e| anyhow::anyhow!("{e}"))?.online_users.into_iter().collect();
    let offline: Vec<_> = members.into_iter().filter(|u| !online.contains(u)).collect();
    if offline.is_empty() {
        return Ok(());
    }
    // One row per (message, offline member other than its sender).
    let (mut users, mut items, mut bodies, mut times) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut deliveries = Vec::new();
    for (_, message) in messages {
        let body = inbox_body(room, message);
        for user in offline.iter().filter(|u| **u != message.sender_id) {
            users.push(user.as_str());
            items.push(message.message_id.as_str());
            bodies.push(body.clone());
            times.push(message.created_at);
            deliveries.push(NewDelivery {
                kind: "message",
                ref_id: message.message_id.to_string(),
                body: json!({"type": "message", "user_id": user, "room_id": room.as_str(), "message": message}),
                user: user.clone(),
                room: Some(room.to_string()),
                topic: None,
            });
        }
    }
    if users.is_empty() {
        return Ok(());
    }
    let mut conn = state.pool.get().await.context("database")?;
    diesel::sql_query(
        "INSERT INTO notification.inbox (tenant_id, user_id, item_id, kind, body, created_at)
         SELECT $1, u, i, 'message', b, t FROM unnest($2::text[], $3::text[], $4::jsonb[], $5::timestamptz[])
             AS x (u, i, b, t)
         ON CONFLICT DO NOTHING",
    )
    .bind::<Text, _>(tenant.as_str())
    .bind::<Array<Text>, _>(&users)
    .bind::<Array<Text>, _>(&items)
    .bind::<Array<Jsonb>, _>(&bodies)
    .bind::<Array<Timestamptz>, _>(&times)
    .execute(&mut conn)
    .await?;
    drop(conn);
    deliveries::enqueue(state, tenant, deliveries).await;
    Ok(())
}

/// The inbox entry of a message.
fn inbox_body(room: &RoomId, message: &Message) -> Value {
    json!({
        "room_id": room.as_str(),
        "topic": "message",
        "payload": {
            "title": format!("New message from {}", message.sender_name.as_deref().unwrap_or(message.sender_id.as_str())),
            "content": message.content,
            "action_url": format!("/rooms/{}", room),
            "message": message,
        },
    })
}
