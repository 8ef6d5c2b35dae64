//! The dead-letter admin commands: list a tenant's dead letters, replay one.

use chat_domain::ApiError;
use chat_domain::ids::DeliveryId;
use chat_domain::proto::Done;
use chat_domain::proto::notify::{DeadLetters, FailedMessage, FailedNotification, ListDeadLetters, RetryDeadLetter};
use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;

use crate::State;

#[derive(diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    ref_id: String,
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = Nullable<Text>)]
    room_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    topic: Option<String>,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_attempt_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
}

fn db(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "dead-letter store failed");
    ApiError::internal()
}

pub async fn list(state: State, cmd: ListDeadLetters) -> Result<DeadLetters, ApiError> {
    let mut conn = state.pool.get().await.map_err(db)?;
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT id, kind, COALESCE(CASE WHEN kind = 'message' THEN body->'message_ids'->>0
                              WHEN kind = 'mention' THEN body->>'message_id' END, ref_id) AS ref_id,
                user_id, room_id, topic, attempts, last_attempt_at, last_error
         FROM notification.deliveries WHERE tenant_id = $1 AND status = 'dead'
         ORDER BY last_attempt_at DESC NULLS LAST, id DESC LIMIT $2",
    )
    .bind::<Text, _>(cmd.tenant_id.as_str())
    .bind::<BigInt, _>(i64::from(cmd.limit.clamp(1, 1000)))
    .load(&mut conn)
    .await
    .map_err(db)?;
    let mut out = DeadLetters { failed_messages: Vec::new(), failed_notifications: Vec::new() };
    for r in rows {
        let attempts = u32::try_from(r.attempts).unwrap_or(0);
        // A mention's webhook is about one message, like an offline window's.
        if r.kind == "message" || r.kind == "mention" {
            out.failed_messages.push(FailedMessage {
                id: r.id,
                message_id: r.ref_id,
                user_id: r.user_id,
                room_id: r.room_id,
                attempts,
                last_attempt_at: r.last_attempt_at,
                error: r.last_error,
            });
        } else {
            out.failed_notifications.push(FailedNotification {
                id: r.id,
                notification_id: r.ref_id,
                topic: r.topic,
                user_id: r.user_id,
                attempts,
                last_attempt_at: r.last_attempt_at,
                error: r.last_error,
            });
        }
    }
    Ok(out)
}

pub async fn retry(state: State, cmd: RetryDeadLetter) -> Result<Done, ApiError> {
    let id = DeliveryId::parse(cmd.id.as_str()).map_err(|_| ApiError::not_found("Dead letter not found"))?;
    let mut conn = state.pool.get().await.map_err(db)?;
    let n = diesel::sql_query(
        "UPDATE notification.deliveries SET status = 'pending', attempts = 0, last_error = NULL
         WHERE id = $1 AND status = 'dead'",
    )
    .bind::<Text, _>(id.as_str())
    .execute(&mut conn)
    .await
    .map_err(db)?;
    if n == 0 {
        return Err(ApiError::not_found("Dead letter not found"));
    }
    crate::metrics::REPLAYS.inc();
    crate::deliveries::queue(&state, &id).await;
    Ok(Done {})
}
