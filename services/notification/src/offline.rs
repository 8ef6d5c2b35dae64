//! Offline messages: a durable consumer of `message.created` on the events stream.
//! Once a message is older than the grace period (so a member who is just
//! reconnecting counts as online), every member of the room other than the sender
//! who has no socket in the room gets an inbox entry and, when the tenant has a
//! webhook, a signed webhook delivery.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{AckKind, consumer};
use chat_domain::proto::events::{RoomEvent, RoomEventBody};
use chat_domain::proto::presence::GetOnline;
use chat_domain::proto::store::Audience;
use diesel::sql_types::{Array, Jsonb, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use serde_json::json;

use crate::State;
use crate::deliveries::{self, NewDelivery};

/// The durable consumer every replica shares.
const CONSUMER: &str = "offline-messages";

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
    let mut messages = consumer.messages().await.context("consuming messages")?;
    tokio::pin!(shutdown);
    while let Some(msg) =
        chat_bus::events::next_or_stop(&mut messages, &mut shutdown, "offline-messages consumer").await
    {
        let ack = match handle(&state, &msg.payload, grace).await {
            Ok(None) => msg.ack().await,
            Ok(Some(wait)) => msg.ack_with(AckKind::Nak(Some(wait))).await,
            Err(e) => {
                tracing::warn!(error = %e, "offline handling failed; retrying");
                msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await
            }
        };
        if let Err(e) = ack {
            tracing::warn!(error = %e, "could not acknowledge a message event");
        }
    }
    Ok(())
}

/// `Ok(Some(wait))` while the message is younger than the grace period.
async fn handle(state: &State, payload: &[u8], grace: Duration) -> anyhow::Result<Option<Duration>> {
    let Ok(event) = serde_json::from_slice::<RoomEvent>(payload) else { return Ok(None) };
    let RoomEventBody::MessageCreated(message) = &event.body else { return Ok(None) };
    let age = (chat_domain::time::now() - event.occurred_at).to_std().unwrap_or_default();
    if age < grace {
        return Ok(Some(grace - age));
    }
    let members = state
        .bus
        .request(&Audience { tenant_id: event.tenant_id.clone(), room_id: Some(event.room_id.clone()) })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let online: BTreeSet<_> = state
        .bus
        .request(&GetOnline { tenant_id: event.tenant_id.clone(), room_id: event.room_id.clone() })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .online_users
        .into_iter()
        .collect();
    let offline: Vec<_> = members.into_iter().filter(|u| *u != message.sender_id && !online.contains(u)).collect();
    if offline.is_empty() {
        return Ok(None);
    }
    let body = json!({
        "room_id": event.room_id.as_str(),
        "topic": "message",
        "payload": {
            "title": format!("New message from {}", message.sender_name.as_deref().unwrap_or(message.sender_id.as_str())),
            "content": message.content,
            "action_url": format!("/rooms/{}", event.room_id),
            "message": message,
        },
    });
    let users: Vec<&str> = offline.iter().map(|u| u.as_str()).collect();
    let mut conn = state.pool.get().await.context("database")?;
    diesel::sql_query(
        "INSERT INTO notification.inbox (tenant_id, user_id, item_id, kind, body, created_at)
         SELECT $1, u, $2, 'message', $3, $4 FROM unnest($5::text[]) AS u ON CONFLICT DO NOTHING",
    )
    .bind::<Text, _>(event.tenant_id.as_str())
    .bind::<Text, _>(message.message_id.as_str())
    .bind::<Jsonb, _>(&body)
    .bind::<Timestamptz, _>(message.created_at)
    .bind::<Array<Text>, _>(&users)
    .execute(&mut conn)
    .await?;
    drop(conn);
    let items = offline
        .into_iter()
        .map(|u| NewDelivery {
            kind: "message",
            ref_id: message.message_id.to_string(),
            body: json!({"type": "message", "user_id": u, "room_id": event.room_id.as_str(), "message": message}),
            user: u,
            room: Some(event.room_id.to_string()),
            topic: None,
        })
        .collect();
    deliveries::enqueue(state, &event.tenant_id, items).await;
    Ok(None)
}
