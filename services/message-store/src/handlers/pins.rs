//! `pin_message`, `unpin_message`, `list_pins` (migration 0060: `message_pins`). Room
//! admins (role `owner` or `admin`) pin and unpin, and so does either member of a DM;
//! every member lists. A change locks the message's row, stamps `changed_tx` and writes
//! its room event (`message.pinned`, `message.unpinned`) in the same transaction.

use chat_domain::ApiError;
use chat_domain::ids::{MessageId, RoomId};
use chat_domain::model::{Actor, Message};
use chat_domain::proto::events::{PinEvent, RoomEvent, RoomEventBody};
use chat_domain::proto::reactions::{ListPins, MAX_PINS, PinChange, PinList, PinMessage, UnpinMessage};
use chat_pg::prepared;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::reactions::{decorate, for_everyone, lock_live, stamp};
use super::{Store, access};
use crate::error::{StoreError, optional};
use crate::outbox;
use crate::rows::{MESSAGE_COLUMNS, MessageRow};

/// `FORBIDDEN` unless the actor may pin in the room: a room admin (role `owner` or
/// `admin`), or a member of a DM. Another tenant's room is `NOT_FOUND`.
async fn may_pin(conn: &mut AsyncPgConnection, actor: &Actor, room: &RoomId) -> Result<(), StoreError> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Bool)]
        member: bool,
        #[diesel(sql_type = Bool)]
        allowed: bool,
    }
    let row: Option<Row> = optional(
        prepared(
            diesel::sql_query(
                "SELECT m.role IS NOT NULL AS member,
                        coalesce(m.role IN ('owner', 'admin') OR r.room_type = 'dm', false) AS allowed
                 FROM rooms r LEFT JOIN room_members m ON m.room_id = r.id AND m.user_id = $3
                 WHERE r.id = $1 AND r.tenant_id = $2",
            )
            .bind::<Text, _>(room.as_str())
            .bind::<Text, _>(actor.tenant_id.as_str())
            .bind::<Text, _>(actor.user_id.as_str()),
        )
        .get_result(conn)
        .await,
    )?;
    match row {
        None => Err(ApiError::not_found("Room not found").into()),
        Some(r) if !r.member => Err(ApiError::forbidden("You are not a member of this room").into()),
        Some(r) if !r.allowed => {
            Err(ApiError::forbidden("Only room admins can pin and unpin messages (in a DM, either member can)").into())
        }
        Some(_) => Ok(()),
    }
}

/// One message of the room, as `actor` sees it.
async fn load(
    conn: &mut AsyncPgConnection,
    actor: &Actor,
    room: &RoomId,
    id: &MessageId,
) -> Result<Message, StoreError> {
    let row: Option<MessageRow> = optional(
        diesel::sql_query(format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE room_id = $1 AND id = $2"))
            .bind::<Text, _>(room.as_str())
            .bind::<Text, _>(id.as_str())
            .get_result(conn)
            .await,
    )?;
    let mut message = [Message::try_from(row.ok_or_else(|| ApiError::not_found("Message not found"))?)?];
    decorate(conn, &mut message, Some(&actor.user_id)).await?;
    let [message] = message;
    Ok(message)
}

pub async fn pin_message(store: Store, cmd: PinMessage) -> Result<PinChange, ApiError> {
    let subjects = store.subjects().clone();
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let (change, pending) = conn
        .transaction(async move |conn| -> Result<(PinChange, Option<outbox::Pending>), StoreError> {
            may_pin(conn, &cmd.actor, &cmd.room_id).await?;
            let seq = lock_live(conn, &cmd.room_id, &cmd.message_id, "pinned").await?;
            #[derive(QueryableByName)]
            struct State {
                #[diesel(sql_type = BigInt)]
                pins: i64,
                #[diesel(sql_type = Bool)]
                already: bool,
            }
            let state: State = prepared(
                diesel::sql_query(
                    "SELECT (SELECT count(*) FROM message_pins WHERE room_id = $1) AS pins,
                            EXISTS (SELECT 1 FROM message_pins WHERE message_id = $2) AS already",
                )
                .bind::<Text, _>(cmd.room_id.as_str())
                .bind::<Text, _>(cmd.message_id.as_str()),
            )
            .get_result(conn)
            .await?;
            if !state.already {
                if state.pins >= MAX_PINS {
                    return Err(ApiError::validation(
                        "message_id",
                        format!("A room has at most {MAX_PINS} pinned messages; unpin one first"),
                    )
                    .into());
                }
                prepared(
                    diesel::sql_query(
                        "INSERT INTO message_pins (message_id, tenant_id, room_id, pinned_by) VALUES ($1, $2, $3, $4)",
                    )
                    .bind::<Text, _>(cmd.message_id.as_str())
                    .bind::<Text, _>(cmd.actor.tenant_id.as_str())
                    .bind::<Text, _>(cmd.room_id.as_str())
                    .bind::<Text, _>(cmd.actor.user_id.as_str()),
                )
                .execute(conn)
                .await?;
                stamp(conn, &cmd.room_id, &cmd.message_id).await?;
            }
            let message = load(conn, &cmd.actor, &cmd.room_id, &cmd.message_id).await?;
            let pending = match (state.already, message.pinned_at) {
                (false, Some(at)) => {
                    let body = RoomEventBody::MessagePinned(PinEvent {
                        message_id: cmd.message_id.clone(),
                        seq,
                        by: cmd.actor.user_id.clone(),
                        at,
                        message: Some(Box::new(for_everyone(&message))),
                    });
                    let event = RoomEvent::new(&cmd.actor.tenant_id, &cmd.room_id, at, body);
                    Some(outbox::insert(conn, &subjects, &event).await?)
                }
                _ => None,
            };
            Ok((PinChange { changed: !state.already, message }, pending))
        })
        .await?;
    db.publisher.submit(pending.into_iter().collect());
    Ok(change)
}

pub async fn unpin_message(store: Store, cmd: UnpinMessage) -> Result<PinChange, ApiError> {
    let subjects = store.subjects().clone();
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let (change, pending) = conn
        .transaction(async move |conn| -> Result<(PinChange, Option<outbox::Pending>), StoreError> {
            may_pin(conn, &cmd.actor, &cmd.room_id).await?;
            // A deleted message is not pinned any more: unpinning it changes nothing.
            let seq = match lock_live(conn, &cmd.room_id, &cmd.message_id, "pinned").await {
                Ok(seq) => Some(seq),
                Err(StoreError::Api(e)) if e.code == chat_domain::ErrorCode::Conflict => None,
                Err(e) => return Err(e),
            };
            let removed = match seq {
                None => 0,
                Some(_) => {
                    prepared(
                        diesel::sql_query("DELETE FROM message_pins WHERE message_id = $1 AND room_id = $2")
                            .bind::<Text, _>(cmd.message_id.as_str())
                            .bind::<Text, _>(cmd.room_id.as_str()),
                    )
                    .execute(conn)
                    .await?
                }
            };
            let pending = match seq {
                Some(seq) if removed > 0 => {
                    stamp(conn, &cmd.room_id, &cmd.message_id).await?;
                    let now = chat_domain::time::now();
                    let body = RoomEventBody::MessageUnpinned(PinEvent {
                        message_id: cmd.message_id.clone(),
                        seq,
                        by: cmd.actor.user_id.clone(),
                        at: now,
                        message: None,
                    });
                    Some(
                        outbox::insert(conn, &subjects, &RoomEvent::new(&cmd.actor.tenant_id, &cmd.room_id, now, body))
                            .await?,
                    )
                }
                _ => None,
            };
            let message = load(conn, &cmd.actor, &cmd.room_id, &cmd.message_id).await?;
            Ok((PinChange { changed: removed > 0, message }, pending))
        })
        .await?;
    db.publisher.submit(pending.into_iter().collect());
    Ok(change)
}

pub async fn list_pins(store: Store, cmd: ListPins) -> Result<PinList, ApiError> {
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.reads.get().await.map_err(StoreError::from)?;
    access(&mut conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?.member()?;
    let rows: Vec<MessageRow> = prepared(
        diesel::sql_query(format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages
             WHERE id IN (SELECT message_id FROM message_pins WHERE room_id = $1 ORDER BY pinned_at DESC LIMIT $2)
               AND room_id = $1"
        ))
        .bind::<Text, _>(cmd.room_id.as_str())
        .bind::<BigInt, _>(MAX_PINS),
    )
    .load(&mut conn)
    .await
    .map_err(StoreError::from)?;
    let mut pins = rows.into_iter().map(Message::try_from).collect::<Result<Vec<_>, _>>()?;
    decorate(&mut conn, &mut pins, Some(&cmd.actor.user_id)).await?;
    // Most recently pinned first (a pin removed between the two reads is left out).
    pins.retain(|m| m.pinned_at.is_some());
    pins.sort_by(|a, b| b.pinned_at.cmp(&a.pinned_at).then_with(|| b.seq.cmp(&a.seq)));
    Ok(PinList { pins })
}
