//! `send_message` and `list_messages`.
//!
//! Sending takes the room's next `seq` by bumping `rooms.last_seq` in the statement
//! that inserts the message (`chat_send_batch`, one set-based call for a whole batch
//! of sends, migration 0008). The function locks the batch's rooms first, so the
//! idempotency check that follows sees every committed resend: two concurrent sends
//! with one `client_msg_id` store one message. Sends are batched by the group
//! committer (`group_commit.rs`); events are published after commit by
//! `publish.rs`, from the batch's result, with no outbox row per message.

use chat_domain::ApiError;
use chat_domain::ids::MessageId;
use chat_domain::model::{Message, validate_client_id, validate_meta};
use chat_domain::proto::store::{ListMessages, MessageSent, SendMessage};
use chat_pg::prepared;
use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Integer, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::{Store, access};
use crate::error::StoreError;
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

/// What one send of a batch did.
#[derive(Debug)]
pub enum Sent {
    /// Stored now: its `message.created` event is to be published.
    New(Message),
    /// A resend: the message stored earlier.
    Duplicate(Message),
}

/// A committed batch: each send's result, in input order, and the id of the
/// transaction that stored them.
#[derive(Debug)]
pub struct Stored {
    pub results: Vec<Result<Sent, StoreError>>,
    pub tx: i64,
}

/// The sender name as stored: at most the display-name length, without NUL
/// (which PostgreSQL text cannot hold).
fn stored_sender_name(cmd: &SendMessage) -> Option<String> {
    cmd.sender_name
        .as_deref()
        .map(|n| n.chars().filter(|c| *c != '\0').take(chat_domain::model::MAX_DISPLAY_NAME_CHARS).collect())
}

/// Stores a batch of messages with one `chat_send_batch` call, as one statement in its
/// own transaction: when this returns, the batch is committed (the rows are read to
/// the end, which is after the commit). Results are in the order of `cmds`.
pub async fn send_batch(
    conn: &mut AsyncPgConnection,
    cmds: &[(SendMessage, DateTime<Utc>)],
) -> Result<Stored, StoreError> {
    use diesel::QueryableByName;
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Integer)]
        ord: i32,
        #[diesel(sql_type = Text)]
        outcome: String,
        #[diesel(sql_type = BigInt)]
        tx: i64,
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
    let mut rows: Vec<Row> = prepared(
        diesel::sql_query("SELECT * FROM chat_send_batch($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .bind::<Array<Text>, _>(&tenants)
            .bind::<Array<Text>, _>(&rooms)
            .bind::<Array<Text>, _>(&senders)
            .bind::<Array<Nullable<Text>>, _>(&names)
            .bind::<Array<Text>, _>(&ids)
            .bind::<Array<Text>, _>(&contents)
            .bind::<Array<Nullable<Jsonb>>, _>(&metas)
            .bind::<Array<Nullable<Text>>, _>(&client_ids)
            .bind::<Array<Timestamptz>, _>(&times),
    )
    .load(conn)
    .await?;
    rows.sort_unstable_by_key(|r| r.ord);
    if rows.len() != cmds.len() || rows.iter().enumerate().any(|(i, r)| usize::try_from(r.ord) != Ok(i + 1)) {
        return Err(StoreError::Corrupt(format!("chat_send_batch answered {} rows for {}", rows.len(), cmds.len())));
    }
    let tx = rows.iter().next().map_or(0, |r| r.tx);
    let results = rows
        .into_iter()
        .map(|row| match row.outcome.as_str() {
            "not_found" => Err(StoreError::Api(ApiError::not_found("Room not found"))),
            "forbidden" => Err(StoreError::Api(ApiError::forbidden("You are not a member of this room"))),
            "duplicate" => Message::try_from(row.message).map(Sent::Duplicate),
            _ => Message::try_from(row.message).map(Sent::New),
        })
        .collect();
    Ok(Stored { results, tx })
}

pub async fn list_messages(store: Store, cmd: ListMessages) -> Result<Vec<Message>, ApiError> {
    let limit = i64::from(cmd.limit.clamp(1, MAX_PAGE));
    let mut conn = store.0.pool.get().await.map_err(StoreError::from)?;
    access(&mut conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?.member()?;
    let rows: Vec<MessageRow> = match (cmd.after_seq, cmd.before_seq) {
        // Only an upper bound: the newest page below it, returned oldest first.
        (None, Some(before)) => {
            let mut rows: Vec<MessageRow> = prepared(
                diesel::sql_query(format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE room_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"
                ))
                .bind::<Text, _>(cmd.room_id.as_str())
                .bind::<BigInt, _>(before)
                .bind::<BigInt, _>(limit),
            )
            .load(&mut conn)
            .await
            .map_err(StoreError::from)?;
            rows.reverse();
            rows
        }
        (after, Some(before)) => prepared(
            diesel::sql_query(format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE room_id = $1 AND seq > $2 AND seq < $3
                 ORDER BY seq ASC LIMIT $4"
            ))
            .bind::<Text, _>(cmd.room_id.as_str())
            .bind::<BigInt, _>(after.unwrap_or(0))
            .bind::<BigInt, _>(before)
            .bind::<BigInt, _>(limit),
        )
        .load(&mut conn)
        .await
        .map_err(StoreError::from)?,
        // The common case; no upper bound, so the planner walks the primary key and stops.
        (after, None) => prepared(
            diesel::sql_query(format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE room_id = $1 AND seq > $2 ORDER BY seq ASC LIMIT $3"
            ))
            .bind::<Text, _>(cmd.room_id.as_str())
            .bind::<BigInt, _>(after.unwrap_or(0))
            .bind::<BigInt, _>(limit),
        )
        .load(&mut conn)
        .await
        .map_err(StoreError::from)?,
    };
    Ok(rows.into_iter().map(Message::try_from).collect::<Result<_, _>>()?)
}
