//! `send_message` and `list_messages`.
//!
//! Sending takes the room's next `seq` by incrementing `rooms.last_seq` in the same
//! transaction that inserts the message and its outbox event (`chat_send_message`, a
//! PL/pgSQL function, plus the outbox insert). The row lock that the increment takes
//! also serializes idempotent resends: the duplicate check runs after it, so two
//! concurrent sends with one `client_msg_id` store one message. Sends are batched
//! into shared transactions by the group committer (`group_commit.rs`).

use chat_bus::Subjects;
use chat_domain::ApiError;
use chat_domain::ids::MessageId;
use chat_domain::model::{Message, validate_client_id, validate_meta};
use chat_domain::proto::events::{RoomEvent, RoomEventBody};
use chat_domain::proto::store::{ListMessages, MessageSent, SendMessage};
use diesel::sql_types::{BigInt, Jsonb, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::{Store, access};
use crate::error::StoreError;
use crate::outbox;
use crate::rows::{MESSAGE_COLUMNS, MessageRow};

/// Largest history page.
pub const MAX_PAGE: u32 = 100;

pub async fn send_message(store: Store, cmd: SendMessage) -> Result<MessageSent, ApiError> {
    if let Some(meta) = &cmd.meta {
        validate_meta(meta)?;
    }
    if let Some(id) = &cmd.client_msg_id {
        validate_client_id("client_msg_id", id)?;
    }
    store.0.committer.send(cmd).await
}

/// What one send did, inside a (group) transaction.
pub enum Sent {
    New(Message, outbox::Pending),
    Duplicate(Message),
}

/// Stores one message and its outbox event on `conn`, inside the caller's transaction.
pub async fn send_one(
    conn: &mut AsyncPgConnection,
    subjects: &Subjects,
    cmd: &SendMessage,
) -> Result<Sent, StoreError> {
    use diesel::QueryableByName;
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        outcome: String,
        #[diesel(embed)]
        message: MessageRow,
    }
    let sender_name = cmd
        .sender_name
        .as_deref()
        .map(|n| n.chars().take(chat_domain::model::MAX_DISPLAY_NAME_CHARS).collect::<String>());
    let row: Row = diesel::sql_query("SELECT * FROM chat_send_message($1, $2, $3, $4, $5, $6, $7, $8, $9)")
        .bind::<Text, _>(cmd.actor.tenant_id.as_str())
        .bind::<Text, _>(cmd.room_id.as_str())
        .bind::<Text, _>(cmd.actor.user_id.as_str())
        .bind::<Nullable<Text>, _>(&sender_name)
        .bind::<Text, _>(MessageId::generate().as_str())
        .bind::<Text, _>(cmd.content.as_str())
        .bind::<Nullable<Jsonb>, _>(&cmd.meta)
        .bind::<Nullable<Text>, _>(&cmd.client_msg_id)
        .bind::<diesel::sql_types::Timestamptz, _>(chat_domain::time::now())
        .get_result(conn)
        .await
        .map_err(|e| match e {
            diesel::result::Error::DatabaseError(_, ref info) if info.message().contains("chat:not_found") => {
                StoreError::Api(ApiError::not_found("Room not found"))
            }
            diesel::result::Error::DatabaseError(_, ref info) if info.message().contains("chat:forbidden") => {
                StoreError::Api(ApiError::forbidden("You are not a member of this room"))
            }
            other => StoreError::Db(other),
        })?;
    let message = Message::try_from(row.message)?;
    if row.outcome == "duplicate" {
        return Ok(Sent::Duplicate(message));
    }
    let event = RoomEvent::new(
        &cmd.actor.tenant_id,
        &cmd.room_id,
        message.created_at,
        RoomEventBody::MessageCreated(message.clone()),
    );
    let pending = outbox::insert(conn, subjects, &event).await?;
    Ok(Sent::New(message, pending))
}

pub async fn list_messages(store: Store, cmd: ListMessages) -> Result<Vec<Message>, ApiError> {
    let limit = i64::from(cmd.limit.clamp(1, MAX_PAGE));
    let mut conn = store.0.pool.get().await.map_err(StoreError::from)?;
    access(&mut conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?.member()?;
    let rows: Vec<MessageRow> = match (cmd.after_seq, cmd.before_seq) {
        // Only an upper bound: the newest page below it, returned oldest first.
        (None, Some(before)) => {
            let mut rows: Vec<MessageRow> = diesel::sql_query(format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE room_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"
            ))
            .bind::<Text, _>(cmd.room_id.as_str())
            .bind::<BigInt, _>(before)
            .bind::<BigInt, _>(limit)
            .load(&mut conn)
            .await
            .map_err(StoreError::from)?;
            rows.reverse();
            rows
        }
        (after, Some(before)) => diesel::sql_query(format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE room_id = $1 AND seq > $2 AND seq < $3
             ORDER BY seq ASC LIMIT $4"
        ))
        .bind::<Text, _>(cmd.room_id.as_str())
        .bind::<BigInt, _>(after.unwrap_or(0))
        .bind::<BigInt, _>(before)
        .bind::<BigInt, _>(limit)
        .load(&mut conn)
        .await
        .map_err(StoreError::from)?,
        // The common case; no upper bound, so the planner walks the primary key and stops.
        (after, None) => diesel::sql_query(format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE room_id = $1 AND seq > $2 ORDER BY seq ASC LIMIT $3"
        ))
        .bind::<Text, _>(cmd.room_id.as_str())
        .bind::<BigInt, _>(after.unwrap_or(0))
        .bind::<BigInt, _>(limit)
        .load(&mut conn)
        .await
        .map_err(StoreError::from)?,
    };
    Ok(rows.into_iter().map(Message::try_from).collect::<Result<_, _>>()?)
}
