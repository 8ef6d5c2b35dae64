//! `send_message`, `send_messages` and `list_messages`.
//!
//! A send is checked here and handed to the group committer (`group_commit.rs`),
//! which stores it in a shared transaction with `send_batch.rs`'s one statement;
//! events are published after commit by `publish.rs`, from the batch's result, with
//! no outbox row per message.

use chat_domain::ApiError;
use chat_domain::ids::RoomId;
use chat_domain::model::{Actor, Message, validate_attachments, validate_client_id, validate_mentions, validate_meta};
use chat_domain::proto::store::{ListMessages, MessageSent, SendMessage, SendMessages, SendOutcome};
use chat_pg::prepared;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::blocks::hidden_senders;
use super::reactions::{Decorations, decorate, decorations, pin_join};
use super::{Store, access};
use crate::error::StoreError;
use crate::rows::{M_MESSAGE_COLUMNS, MESSAGE_COLUMNS, MessageRow};

/// Largest history page.
pub const MAX_PAGE: u32 = 100;

/// Most sends in one `send_messages` request.
pub const MAX_SENDS: usize = 1_000;

fn validate(cmd: &SendMessage) -> Result<(), ApiError> {
    if cmd.sender_name.as_deref().is_some_and(|n| n.contains('\0')) {
        return Err(ApiError::validation("sender_name", "sender_name must not contain NUL (U+0000) characters"));
    }
    if let Some(meta) = &cmd.meta {
        validate_meta(meta)?;
    }
    if let Some(id) = &cmd.client_msg_id {
        validate_client_id("client_msg_id", id)?;
    }
    validate_mentions(&cmd.mentions)?;
    validate_attachments(&cmd.attachments)
}

pub async fn send_message(store: Store, cmd: SendMessage) -> Result<MessageSent, ApiError> {
    validate(&cmd)?;
    commit(&store, cmd).await
}

/// Stores one send through the group committer. A duplicate (an idempotent resend) gets
/// the stored message as it is now, reactions and pin included, as its sender reads it:
/// the committer's statement reads only the message row, and a resend can come long after
/// others reacted.
async fn commit(store: &Store, cmd: SendMessage) -> Result<MessageSent, ApiError> {
    let db = store.db(&cmd.actor.tenant_id).await?;
    let sender = cmd.actor.user_id.clone();
    let mut sent = db.committer.send(cmd).await?;
    if sent.duplicate {
        let mut conn = db.pool.get().await.map_err(StoreError::from)?;
        decorate(&mut conn, std::slice::from_mut(&mut sent.message), Some(&sender)).await?;
    }
    Ok(sent)
}

/// `send_messages`: every send goes to the group committer at once (they land in
/// whatever batches their rooms' writers are forming) and the answers come back in
/// order.
pub async fn send_messages(store: Store, cmd: SendMessages) -> Result<Vec<SendOutcome>, ApiError> {
    if cmd.sends.len() > MAX_SENDS {
        return Err(ApiError::validation("sends", format!("at most {MAX_SENDS} sends per request")));
    }
    let pending: Vec<_> = cmd
        .sends
        .into_iter()
        .map(|send| {
            let store = store.clone();
            async move {
                validate(&send)?;
                commit(&store, send).await
            }
        })
        .collect();
    Ok(futures_util::future::join_all(pending)
        .await
        .into_iter()
        .map(|r| match r {
            Ok(sent) => SendOutcome::Sent(sent),
            Err(e) => SendOutcome::Failed(e),
        })
        .collect())
}

/// `list_messages`: one statement per page in the common case — the page, each
/// message's reactions and pin as the reader sees them, and the reader's membership
/// (the page is empty unless they are a member of the room in their tenant). Only an
/// empty page asks again, to tell an empty page from a room the reader cannot read.
pub async fn list_messages(store: Store, cmd: ListMessages) -> Result<Vec<Message>, ApiError> {
    let limit = i64::from(cmd.limit.clamp(1, MAX_PAGE));
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.reads.get().await.map_err(StoreError::from)?;
    let shape = match (cmd.after_seq, cmd.before_seq) {
        (None, Some(_)) => PageShape::Before,
        (_, Some(_)) => PageShape::Between,
        (_, None) => PageShape::After,
    };
    let range = (cmd.after_seq.unwrap_or(0), cmd.before_seq.unwrap_or(i64::MAX));
    read_page(&mut conn, &cmd.actor, &cmd.room_id, shape, range, limit, cmd.without_replies).await
}

/// A page of history (`shape`, between `seq`s `after` and `before`, exclusive) as
/// `reader` reads it, oldest first, in one statement ([`history_page`]); only an empty
/// page asks again, to answer a reader who may not read the room with the error.
pub(super) async fn read_page(
    conn: &mut AsyncPgConnection,
    reader: &Actor,
    room: &RoomId,
    shape: PageShape,
    (after, before): (i64, i64),
    limit: i64,
    without_replies: bool,
) -> Result<Vec<Message>, ApiError> {
    let rows: Vec<PageRow> = prepared(
        diesel::sql_query(history_page(shape))
            .bind::<Text, _>(room.as_str())
            .bind::<BigInt, _>(after)
            .bind::<BigInt, _>(before)
            .bind::<BigInt, _>(limit)
            .bind::<Text, _>(reader.tenant_id.as_str())
            .bind::<Text, _>(reader.user_id.as_str())
            .bind::<Bool, _>(without_replies),
    )
    .load(conn)
    .await
    .map_err(StoreError::from)?;
    if rows.is_empty() {
        access(conn, &reader.tenant_id, room, &reader.user_id).await?.member()?;
        return Ok(Vec::new());
    }
    rows.into_iter()
        .map(|r| {
            let mut m = Message::try_from(r.message)?;
            r.decorations.apply(&mut m);
            Ok(m)
        })
        .collect::<Result<Vec<_>, StoreError>>()
        .map_err(ApiError::from)
}

/// The bounds a history page has (each its own prepared statement).
#[derive(Debug, Clone, Copy)]
pub(crate) enum PageShape {
    /// Only an upper bound: the newest page below it (one backward index scan).
    Before,
    /// Both bounds.
    Between,
    /// The common case; no upper bound, so the planner walks the primary key and stops.
    After,
}

#[cfg(test)]
impl PageShape {
    pub(crate) const ALL: [PageShape; 3] = [PageShape::Before, PageShape::Between, PageShape::After];
}

/// The statement reading a history page of `shape` with its reactions and pins, oldest
/// first. Parameters: $1 room, $2 after, $3 before, $4 limit, $5 tenant, $6 reader,
/// $7 without replies. A reader who is not a member of the room in their tenant reads
/// no rows (the membership check is a one-time `InitPlan`).
pub(crate) fn history_page(shape: PageShape) -> String {
    let (range, order) = match shape {
        PageShape::Before => ("seq < $3 AND $2 = $2", "DESC"),
        PageShape::Between => ("seq > $2 AND seq < $3", "ASC"),
        PageShape::After => ("seq > $2 AND $3 = $3", "ASC"),
    };
    format!(
        "SELECT {M_MESSAGE_COLUMNS}, {decorations}
           FROM (SELECT {MESSAGE_COLUMNS} FROM messages
                  WHERE room_id = $1 AND {range} AND (NOT $7 OR parent_id IS NULL) AND {hidden}
                    AND EXISTS (SELECT 1 FROM room_members rm JOIN rooms r ON r.id = rm.room_id
                                 WHERE rm.room_id = $1 AND rm.user_id = $6 AND r.tenant_id = $5)
                  ORDER BY seq {order} LIMIT $4) m
           {pin}
          ORDER BY m.seq ASC",
        decorations = decorations("m.id", "$6"),
        pin = pin_join("m.id"),
        hidden = hidden_senders("$5", "$6"),
    )
}

/// A message of a history page with its reactions and pin.
#[derive(QueryableByName)]
struct PageRow {
    #[diesel(embed)]
    message: MessageRow,
    #[diesel(embed)]
    decorations: Decorations,
}
