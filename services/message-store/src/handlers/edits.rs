//! `edit_message` (the sender only; with `within_edit_window`, only within the tenant's
//! edit window) and `delete_message` (the sender, a room moderator or above — logged
//! in the moderation log — or a directory `admin`;
//! soft: the row and its `seq` stay, the content goes). Each emits a room event.

use chat_domain::ApiError;
use chat_domain::model::Message;
use chat_domain::proto::events::{MessageDeleted, MessageUpdated, PinEvent, RoomEvent, RoomEventBody};
use chat_domain::proto::store::{DeleteMessage, DeletedMessage, EditMessage};
use diesel::sql_types::{Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::users::has_role;
use super::{Store, access};
use crate::error::{StoreError, optional};
use crate::outbox;
use crate::rows::{MESSAGE_COLUMNS, MessageRow};
use chat_domain::proto::chat::ADMIN_ROLE;

/// Longest edit reason, in characters.
const MAX_REASON_CHARS: usize = 200;

/// The edit window when the tenant sets none: 15 minutes.
pub const DEFAULT_EDIT_WINDOW_SECS: i64 = 900;

/// The tenant's edit window in seconds: the setting `edit_window_secs` (a whole number
/// of seconds, 0 or more), else [`DEFAULT_EDIT_WINDOW_SECS`]. Settings are in the
/// directory, on the home cluster (the tenant's rooms may be on another).
async fn edit_window_secs(store: &Store, tenant: &str) -> Result<i64, StoreError> {
    let mut conn = store.home().pool.get().await?;
    let conn = &mut *conn;
    #[derive(diesel::QueryableByName)]
    struct Window {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Jsonb>)]
        value: Option<serde_json::Value>,
    }
    let row: Option<Window> = optional(
        diesel::sql_query("SELECT settings -> 'edit_window_secs' AS value FROM tenants WHERE id = $1")
            .bind::<Text, _>(tenant)
            .get_result(conn)
            .await,
    )?;
    Ok(row.and_then(|w| w.value).and_then(|v| v.as_i64()).filter(|s| *s >= 0).unwrap_or(DEFAULT_EDIT_WINDOW_SECS))
}

async fn load(conn: &mut AsyncPgConnection, room: &str, id: &str) -> Result<Message, StoreError> {
    let row: Option<MessageRow> = optional(
        diesel::sql_query(format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE room_id = $1 AND id = $2 FOR UPDATE"))
            .bind::<Text, _>(room)
            .bind::<Text, _>(id)
            .get_result(conn)
            .await,
    )?;
    row.ok_or_else(|| StoreError::Api(ApiError::not_found("Message not found")))?.try_into()
}

pub async fn edit_message(store: Store, cmd: EditMessage) -> Result<Message, ApiError> {
    // PostgreSQL cannot hold U+0000 (the reason travels in a jsonb outbox row).
    if cmd.edit_reason.as_deref().is_some_and(|r| r.contains('\0')) {
        return Err(ApiError::validation("edit_reason", "edit_reason must not contain NUL (U+0000) characters"));
    }
    let reason = cmd.edit_reason.as_deref().map(|r| r.chars().take(MAX_REASON_CHARS).collect::<String>());
    let subjects = store.subjects().clone();
    let clock = store.0.clock.clone();
    let window = match cmd.within_edit_window {
        true => Some(edit_window_secs(&store, cmd.actor.tenant_id.as_str()).await?),
        false => None,
    };
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let (message, pending) = conn
        .transaction(async move |conn| -> Result<(Message, outbox::Pending), StoreError> {
            access(conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?.member()?;
            let old = load(conn, cmd.room_id.as_str(), cmd.message_id.as_str()).await?;
            if old.sender_id != cmd.actor.user_id {
                return Err(ApiError::forbidden("Only the sender can edit a message").into());
            }
            if old.deleted_at.is_some() {
                return Err(ApiError::conflict("A deleted message cannot be edited").into());
            }
            if let Some(window) = window
                && (clock.now() - old.created_at).num_seconds() >= window
            {
                return Err(ApiError::forbidden(format!(
                    "Messages can be edited for {window} seconds after they are sent"
                ))
                .into());
            }
            let now = chat_domain::time::now();
            let row: MessageRow = diesel::sql_query(format!(
                "UPDATE messages SET content = $3, edited_at = $4 WHERE room_id = $1 AND id = $2 RETURNING {MESSAGE_COLUMNS}"
            ))
            .bind::<Text, _>(cmd.room_id.as_str())
            .bind::<Text, _>(cmd.message_id.as_str())
            .bind::<Text, _>(cmd.content.as_str())
            .bind::<Timestamptz, _>(now)
            .get_result(conn)
            .await?;
            // Its reactions and pin, as the editor sees them (issue 23).
            let mut message = [Message::try_from(row)?];
            super::reactions::decorate(conn, &mut message, Some(&cmd.actor.user_id)).await?;
            let [message] = message;
            let event = RoomEvent::new(&cmd.actor.tenant_id, &cmd.room_id, now, RoomEventBody::MessageUpdated(MessageUpdated {
                    message_id: message.message_id.clone(),
                    seq: message.seq,
                    content: message.content.clone(),
                    edit_reason: reason,
                    edited_at: now,
                    message: Some(Box::new(super::reactions::for_everyone(&message))),
                }));
            let pending = outbox::insert(conn, &subjects, &event).await?;
            Ok((message, pending))
        })
        .await?;
    db.publisher.submit(vec![pending]);
    Ok(message)
}

pub async fn delete_message(store: Store, cmd: DeleteMessage) -> Result<DeletedMessage, ApiError> {
    let subjects = store.subjects().clone();
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let (deleted, pending) = conn
        .transaction(async move |conn| -> Result<(DeletedMessage, Vec<outbox::Pending>), StoreError> {
            let role = access(conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?.member()?;
            let old = load(conn, cmd.room_id.as_str(), cmd.message_id.as_str()).await?;
            let by_other = old.sender_id != cmd.actor.user_id;
            if by_other
                && !role.is_moderator()
                && !has_role(conn, &cmd.actor.tenant_id, &cmd.actor.user_id, ADMIN_ROLE).await?
            {
                return Err(ApiError::forbidden(
                    "Only the sender, a room moderator, admin or owner, or a tenant admin can delete a message",
                )
                .into());
            }
            if old.deleted_at.is_some() {
                // Deleting twice is not an error, and not a second event.
                return Ok((DeletedMessage { message: old, removed_attachments: Vec::new() }, Vec::new()));
            }
            let now = chat_domain::time::now();
            let row: MessageRow = diesel::sql_query(format!(
                "UPDATE messages SET content = '', meta = NULL, attachments = NULL, mentions = NULL, deleted_at = $3,
                        deleted_by = $4
                 WHERE room_id = $1 AND id = $2 RETURNING {MESSAGE_COLUMNS}"
            ))
            .bind::<Text, _>(cmd.room_id.as_str())
            .bind::<Text, _>(cmd.message_id.as_str())
            .bind::<Timestamptz, _>(now)
            .bind::<Text, _>(cmd.actor.user_id.as_str())
            .get_result(conn)
            .await?;
            let message = Message::try_from(row)?;
            // A deleted message's reactions and pin go with it (issue 23); a pin that
            // goes is also a `message.unpinned`.
            let unpinned = drop_reactions_and_pin(conn, cmd.room_id.as_str(), cmd.message_id.as_str()).await?;
            let unpin = unpinned.then(|| {
                RoomEvent::new(
                    &cmd.actor.tenant_id,
                    &cmd.room_id,
                    now,
                    RoomEventBody::MessageUnpinned(PinEvent {
                        message_id: message.message_id.clone(),
                        seq: message.seq,
                        by: cmd.actor.user_id.clone(),
                        at: now,
                        message: None,
                    }),
                )
            });
            if by_other {
                super::moderation::log(
                    conn,
                    super::moderation::Action {
                        tenant: &cmd.actor.tenant_id,
                        room: &cmd.room_id,
                        actor: &cmd.actor.user_id,
                        action: "delete_message",
                        target: Some(&old.sender_id),
                        message: Some(&message.message_id),
                        reason: None,
                        detail: None,
                    },
                )
                .await?;
            }
            let event = RoomEvent::new(
                &cmd.actor.tenant_id,
                &cmd.room_id,
                now,
                RoomEventBody::MessageDeleted(MessageDeleted {
                    message_id: message.message_id.clone(),
                    seq: message.seq,
                    deleted_by: cmd.actor.user_id.clone(),
                    deleted_at: now,
                    message: Some(Box::new(message.clone())),
                }),
            );
            let mut pending = vec![outbox::insert(conn, &subjects, &event).await?];
            if let Some(unpin) = unpin {
                pending.push(outbox::insert(conn, &subjects, &unpin).await?);
            }
            // A deleted thread reply lowers its parent's summary.
            if let Some(parent) = &message.parent_id
                && let Some(update) = super::threads::summary_recount(conn, parent).await?
            {
                let event =
                    RoomEvent::new(&cmd.actor.tenant_id, &cmd.room_id, now, RoomEventBody::ThreadUpdated(update));
                pending.push(outbox::insert(conn, &subjects, &event).await?);
            }
            Ok((DeletedMessage { message, removed_attachments: old.attachments }, pending))
        })
        .await?;
    db.publisher.submit(pending);
    Ok(deleted)
}

/// Deletes a message's reactions and pin (when the message is deleted); whether it
/// was pinned.
async fn drop_reactions_and_pin(conn: &mut AsyncPgConnection, room: &str, id: &str) -> Result<bool, StoreError> {
    diesel::sql_query("DELETE FROM message_reactions WHERE message_id = $1 AND room_id = $2")
        .bind::<Text, _>(id)
        .bind::<Text, _>(room)
        .execute(conn)
        .await?;
    let unpinned = diesel::sql_query("DELETE FROM message_pins WHERE message_id = $1 AND room_id = $2")
        .bind::<Text, _>(id)
        .bind::<Text, _>(room)
        .execute(conn)
        .await?;
    Ok(unpinned > 0)
}
