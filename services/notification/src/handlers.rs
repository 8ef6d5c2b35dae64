//! notification's commands: `notify`, topic subscriptions, inboxes.

use std::collections::BTreeSet;

use chat_domain::ApiError;
use chat_domain::ids::{NotificationId, UserId};
use chat_domain::proto::Done;
use chat_domain::proto::events::{UserEvent, UserEventBody};
use chat_domain::proto::notify::{
    InboxItem, ListInbox, ListSubscriptions, MAX_NOTIFY_RECIPIENTS, MAX_NOTIFY_USER_IDS, MAX_PAYLOAD_BYTES,
    MAX_TOPIC_CHARS, Notified, Notify, Subscribe, TakeInbox, Unsubscribe,
};
use chat_domain::proto::presence::GetTenantOnline;
use chat_domain::proto::store::Audience;
use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::json;

use crate::State;

fn db(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "notification store failed");
    ApiError::internal()
}

fn pool(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "no database connection");
    ApiError::unavailable("The notification store is unavailable")
}

/// A topic: 1 to 200 printable characters.
pub fn validate_topic(topic: &str) -> Result<(), ApiError> {
    if topic.trim().is_empty() || topic.chars().count() > MAX_TOPIC_CHARS || topic.chars().any(char::is_control) {
        return Err(ApiError::validation(
            "topic",
            format!("topic must be 1 to {MAX_TOPIC_CHARS} printable characters"),
        ));
    }
    Ok(())
}

#[derive(diesel::QueryableByName)]
struct ItemRow {
    #[diesel(sql_type = Text)]
    item_id: String,
    #[diesel(sql_type = Text)]
    kind: String,
    /// Read leniently: an unreadable value is `null`, the item still listed.
    #[diesel(sql_type = Jsonb)]
    body: chat_pg::json::LenientJson,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    delivered_at: Option<DateTime<Utc>>,
}

impl From<ItemRow> for InboxItem {
    fn from(r: ItemRow) -> Self {
        InboxItem {
            id: r.item_id,
            kind: r.kind,
            body: r.body.into_inner(),
            created_at: r.created_at,
            delivered: r.delivered_at.is_some(),
        }
    }
}

pub async fn notify(state: State, cmd: Notify) -> Result<Notified, ApiError> {
    validate_topic(&cmd.topic)?;
    if !cmd.payload.is_object() {
        return Err(ApiError::validation("payload", "payload must be a JSON object"));
    }
    if cmd.payload.to_string().len() > MAX_PAYLOAD_BYTES {
        return Err(ApiError::validation("payload", format!("payload must be at most {MAX_PAYLOAD_BYTES} bytes")));
    }
    if chat_domain::model::has_nul(&cmd.payload) {
        return Err(ApiError::validation("payload", "payload must not contain NUL (U+0000) characters"));
    }
    chat_domain::json::check_stored("payload", &cmd.payload)?;
    if cmd.targets.user_ids.len() > MAX_NOTIFY_USER_IDS {
        return Err(ApiError::validation(
            "targets.user_ids",
            format!("targets.user_ids must name at most {MAX_NOTIFY_USER_IDS} users"),
        ));
    }
    // Who gets it.
    let mut recipients: BTreeSet<UserId> = cmd.targets.user_ids.iter().cloned().collect();
    if let Some(room) = &cmd.targets.room_id {
        let members =
            state.bus.request(&Audience { tenant_id: cmd.tenant_id.clone(), room_id: Some(room.clone()) }).await?;
        recipients.extend(members);
    }
    let mut conn = state.pool.get().await.map_err(pool)?;
    if cmd.targets.topic_subscribers {
        #[derive(diesel::QueryableByName)]
        struct Sub {
            #[diesel(sql_type = Text)]
            user_id: String,
        }
        let subs: Vec<Sub> =
            diesel::sql_query("SELECT user_id FROM notification.subscriptions WHERE tenant_id = $1 AND topic = $2")
                .bind::<Text, _>(cmd.tenant_id.as_str())
                .bind::<Text, _>(&cmd.topic)
                .load(&mut conn)
                .await
                .map_err(db)?;
        recipients.extend(subs.into_iter().filter_map(|s| UserId::parse(s.user_id).ok()));
    }
    if cmd.targets.is_empty() {
        recipients.extend(state.bus.request(&Audience { tenant_id: cmd.tenant_id.clone(), room_id: None }).await?);
    }
    if recipients.len() > MAX_NOTIFY_RECIPIENTS {
        return Err(ApiError::validation(
            "targets",
            format!(
                "This notification would reach {} users; at most {MAX_NOTIFY_RECIPIENTS} per call (narrow the targets)",
                recipients.len()
            ),
        ));
    }
    // Who is online now gets it live; everyone finds it in their inbox.
    let online: BTreeSet<UserId> = match state.bus.request(&GetTenantOnline { tenant_id: cmd.tenant_id.clone() }).await
    {
        Ok(o) => o.online_users.into_iter().collect(),
        Err(e) => {
            tracing::warn!(error = %e, "presence unavailable; treating every recipient as offline");
            BTreeSet::new()
        }
    };
    let id = NotificationId::generate();
    let created_at = chat_domain::time::now();
    let body = json!({
        "notification_id": id.as_str(),
        "topic": cmd.topic,
        "payload": cmd.payload,
        "created_at": chat_domain::time::format(&created_at),
    });
    let users: Vec<&str> = recipients.iter().map(UserId::as_str).collect();
    let live: Vec<&str> = recipients.iter().filter(|u| online.contains(*u)).map(UserId::as_str).collect();
    let (tenant, topic, payload, body_db) = (cmd.tenant_id.as_str(), cmd.topic.as_str(), &cmd.payload, &body);
    let id_str = id.as_str();
    conn.transaction(async move |conn| -> Result<(), diesel::result::Error> {
        diesel::sql_query(
            "INSERT INTO notification.notifications (id, tenant_id, topic, payload, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind::<Text, _>(id_str)
        .bind::<Text, _>(tenant)
        .bind::<Text, _>(topic)
        .bind::<Jsonb, _>(payload)
        .bind::<Timestamptz, _>(created_at)
        .execute(conn)
        .await?;
        diesel::sql_query(
            "INSERT INTO notification.inbox (tenant_id, user_id, item_id, kind, body, created_at, delivered_at)
             SELECT $1, u, $2, 'notification', $3, $4, CASE WHEN u = ANY($5) THEN $4 END FROM unnest($6::text[]) AS u
             ON CONFLICT DO NOTHING",
        )
        .bind::<Text, _>(tenant)
        .bind::<Text, _>(id_str)
        .bind::<Jsonb, _>(body_db)
        .bind::<Timestamptz, _>(created_at)
        .bind::<Array<Text>, _>(&live)
        .bind::<Array<Text>, _>(&users)
        .execute(conn)
        .await?;
        Ok(())
    })
    .await
    .map_err(db)?;
    // Live delivery to online recipients, on every gateway they are connected to.
    let item =
        InboxItem { id: id.to_string(), kind: "notification".into(), body: body.clone(), created_at, delivered: true };
    for user in recipients.iter().filter(|u| online.contains(*u)) {
        let event = UserEvent {
            event_id: chat_domain::ids::EventId::generate(),
            tenant_id: cmd.tenant_id.clone(),
            user_id: user.clone(),
            occurred_at: created_at,
            body: UserEventBody::Notification(item.clone()),
        };
        let subject = state.bus.subjects().user_event(&cmd.tenant_id, user, event.body.kind());
        if let Ok(payload) = serde_json::to_vec(&event)
            && let Err(e) = state.bus.publish(subject, payload.into()).await
        {
            tracing::warn!(error = %e, "live notification failed; it stays in the inbox");
        }
    }
    let offline: Vec<UserId> = recipients.iter().filter(|u| !online.contains(*u)).cloned().collect();
    crate::deliveries::enqueue_notification(&state, &cmd.tenant_id, &id, &cmd.topic, &body, &offline).await;
    Ok(Notified { notification_id: id.to_string(), created_at, recipients: recipients.len() as u64 })
}

pub async fn subscribe(state: State, cmd: Subscribe) -> Result<Done, ApiError> {
    validate_topic(&cmd.topic)?;
    let mut conn = state.pool.get().await.map_err(pool)?;
    diesel::sql_query(
        "INSERT INTO notification.subscriptions (tenant_id, user_id, topic) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind::<Text, _>(cmd.tenant_id.as_str())
    .bind::<Text, _>(cmd.user_id.as_str())
    .bind::<Text, _>(&cmd.topic)
    .execute(&mut conn)
    .await
    .map_err(db)?;
    Ok(Done {})
}

pub async fn unsubscribe(state: State, cmd: Unsubscribe) -> Result<Done, ApiError> {
    validate_topic(&cmd.topic)?;
    let mut conn = state.pool.get().await.map_err(pool)?;
    let n = diesel::sql_query(
        "DELETE FROM notification.subscriptions WHERE tenant_id = $1 AND user_id = $2 AND topic = $3",
    )
    .bind::<Text, _>(cmd.tenant_id.as_str())
    .bind::<Text, _>(cmd.user_id.as_str())
    .bind::<Text, _>(&cmd.topic)
    .execute(&mut conn)
    .await
    .map_err(db)?;
    if n == 0 {
        return Err(ApiError::not_found("Not subscribed to that topic"));
    }
    Ok(Done {})
}

pub async fn list_subscriptions(state: State, cmd: ListSubscriptions) -> Result<Vec<String>, ApiError> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        topic: String,
    }
    let mut conn = state.pool.get().await.map_err(pool)?;
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT topic FROM notification.subscriptions WHERE tenant_id = $1 AND user_id = $2 ORDER BY topic",
    )
    .bind::<Text, _>(cmd.tenant_id.as_str())
    .bind::<Text, _>(cmd.user_id.as_str())
    .load(&mut conn)
    .await
    .map_err(db)?;
    Ok(rows.into_iter().map(|r| r.topic).collect())
}

pub async fn list_inbox(state: State, cmd: ListInbox) -> Result<Vec<InboxItem>, ApiError> {
    let mut conn = state.pool.get().await.map_err(pool)?;
    let rows: Vec<ItemRow> = diesel::sql_query(
        "SELECT item_id, kind, body, created_at, delivered_at FROM notification.inbox
         WHERE tenant_id = $1 AND user_id = $2 ORDER BY created_at DESC, item_id DESC LIMIT $3 OFFSET $4",
    )
    .bind::<Text, _>(cmd.tenant_id.as_str())
    .bind::<Text, _>(cmd.user_id.as_str())
    .bind::<BigInt, _>(i64::from(cmd.limit.clamp(1, 100)))
    .bind::<BigInt, _>(i64::from(cmd.offset))
    .load(&mut conn)
    .await
    .map_err(db)?;
    Ok(rows.into_iter().map(InboxItem::from).collect())
}

pub async fn take_inbox(state: State, cmd: TakeInbox) -> Result<Vec<InboxItem>, ApiError> {
    let mut conn = state.pool.get().await.map_err(pool)?;
    let mut rows: Vec<ItemRow> = diesel::sql_query(
        "UPDATE notification.inbox SET delivered_at = now()
         WHERE tenant_id = $1 AND user_id = $2 AND delivered_at IS NULL
         RETURNING item_id, kind, body, created_at, delivered_at",
    )
    .bind::<Text, _>(cmd.tenant_id.as_str())
    .bind::<Text, _>(cmd.user_id.as_str())
    .load(&mut conn)
    .await
    .map_err(db)?;
    rows.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.item_id.cmp(&b.item_id)));
    Ok(rows.into_iter().map(InboxItem::from).collect())
}
