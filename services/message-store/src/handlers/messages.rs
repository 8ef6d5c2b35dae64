//! `send_message` and `list_messages`.
//!
//! Sending takes the room's next `seq` by incrementing `rooms.last_seq` in the same
//! transaction that inserts the message and its outbox event (`chat_send_messages`, a
//! PL/pgSQL function taking a whole batch, plus one outbox insert). The row lock that the increment takes
//! also serializes idempotent resends: the duplicate check runs after it, so two
//! concurrent sends with one `client_msg_id` store one message. Sends are batched
//! into shared transactions by the group committer (`group_commit.rs`).

use chat_bus::Subjects;
use chat_domain::ApiError;
use chat_domain::ids::MessageId;
use chat_domain::model::{Message, validate_client_id, validate_meta};
use chat_domain::proto::events::{RoomEvent, RoomEventBody};
use chat_domain::proto::store::{ListMessages, MessageSent, SendMessage};
use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Integer, Jsonb, Nullable, Text, Timestamptz};
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

/// The sender name as stored: at most the display-name length, without NUL
/// (which PostgreSQL text cannot hold).
fn stored_sender_name(cmd: &SendMessage) -> Option<String> {
    cmd.sender_name
        .as_deref()
        .map(|n| n.chars().filter(|c| *c != '\0').take(chat_domain::model::MAX_DISPLAY_NAME_CHARS).collect())
}

/// Stores a batch of messages and their outbox events on `conn`, inside the caller's
/// transaction: one `chat_send_messages` call and one outbox insert. Results are in
/// the order of `cmds`.
pub async fn send_batch(
    conn: &mut AsyncPgConnection,
    subjects: &Subjects,
    cmds: &[(SendMessage, DateTime<Utc>)],
) -> Result<Vec<Result<Sent, StoreError>>, StoreError> {
    use diesel::QueryableByName;
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Integer)]
        ord: i32,
        #[diesel(sql_type = Text)]
        outcome: String,
        #[diesel(embed)]
        message: MessageRow,
    }
    let mut tenants = Vec::with_capacity(cmds.len());
    let mut rooms = Vec::with_capacity(cmds.len());
    let mut senders = Vec::with_capacity(cmds.len());
    let mut names = Vec::with_capacity(cmds.len());
    let mut ids = Vec::with_capacity(cmds.len());
    let mut contents = Vec::with_capacity(cmds.len());
    let mut metas = Vec::with_capacity(cmds.len());
    let mut client_ids = Vec::with_capacity(cmds.len());
    let mut times = Vec::with_capacity(cmds.len());
    for (cmd, at) in cmds {
        tenants.push(cmd.actor.tenant_id.as_str());
        rooms.push(cmd.room_id.as_str());
        senders.push(cmd.actor.user_id.as_str());
        names.push(stored_sender_name(cmd));
        ids.push(MessageId::generate().to_string());
        contents.push(cmd.content.as_str());
        metas.push(cmd.meta.as_ref());
        client_ids.push(cmd.client_msg_id.as_deref());
        times.push(*at);
    }
    let rows: Vec<Row> =
        diesel::sql_query("SELECT * FROM chat_send_messages($1, $2, $3, $4, $5, $6, $7, $8, $9) ORDER BY ord")
            .bind::<Array<Text>, _>(&tenants)
            .bind::<Array<Text>, _>(&rooms)
            .bind::<Array<Text>, _>(&senders)
            .bind::<Array<Nullable<Text>>, _>(&names)
            .bind::<Array<Text>, _>(&ids)
            .bind::<Array<Text>, _>(&contents)
            .bind::<Array<Nullable<Jsonb>>, _>(&metas)
            .bind::<Array<Nullable<Text>>, _>(&client_ids)
            .bind::<Array<Timestamptz>, _>(&times)
            .load(conn)
            .await?;
    if rows.len() != cmds.len() || rows.iter().enumerate().any(|(i, r)| usize::try_from(r.ord) != Ok(i + 1)) {
        return Err(StoreError::Corrupt(format!("chat_send_messages answered {} rows for {}", rows.len(), cmds.len())));
    }
    // Created messages get their events, inserted in one statement; then every row
    // becomes its send's result, in order.
    let mut outcomes = Vec::with_capacity(rows.len());
    let mut events = Vec::new();
    for (row, (cmd, _)) in rows.into_iter().zip(cmds) {
        outcomes.push(match row.outcome.as_str() {
            "not_found" => Err(StoreError::Api(ApiError::not_found("Room not found"))),
            "forbidden" => Err(StoreError::Api(ApiError::forbidden("You are not a member of this room"))),
            "duplicate" => Message::try_from(row.message).map(|m| (m, false)),
            _ => Message::try_from(row.message).map(|m| {
                events.push(created_event(cmd, &m));
                (m, true)
            }),
        });
    }
    let mut pending = outbox::insert_many(conn, subjects, events.iter()).await?.into_iter();
    Ok(outcomes
        .into_iter()
        .map(|outcome| match outcome? {
            (message, false) => Ok(Sent::Duplicate(message)),
            (message, true) => pending
                .next()
                .map(|p| Sent::New(message, p))
                .ok_or_else(|| StoreError::Corrupt("an outbox event is missing".to_owned())),
        })
        .collect())
}

fn created_event(cmd: &SendMessage, message: &Message) -> RoomEvent {
    RoomEvent::new(
        &cmd.actor.tenant_id,
        &cmd.room_id,
        message.created_at,
        RoomEventBody::MessageCreated(message.clone()),
    )
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
