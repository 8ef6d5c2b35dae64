//! `erase_data`: deleting a tenant, or erasing one user's personal data (issue 25,
//! finding 8; what is kept is said on `chat_domain::proto::store::EraseData` and in the
//! README's "Deleting a tenant, erasing a user").
//!
//! Everything runs in one transaction on the tenant's cluster (and, for a tenant, one on
//! the directory after it), and every membership it removes is announced as
//! `member.removed` through the outbox, which closes the user's sockets in that room on
//! every gateway. The attachments' object-store keys are returned: the bytes are the
//! gateway's to delete.

use chat_domain::ApiError;
use chat_domain::ids::{ERASED_USER, RoomId, TenantId, UserId};
use chat_domain::model::Attachment;
use chat_domain::proto::events::{MemberRemoved, RoomEvent, RoomEventBody};
use chat_domain::proto::store::{DataErased, EraseData};
use diesel::sql_types::{Array, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::Store;
use crate::error::{StoreError, stored};
use crate::outbox;

#[derive(diesel::QueryableByName)]
struct Membership {
    #[diesel(sql_type = Text)]
    room_id: String,
    #[diesel(sql_type = Text)]
    user_id: String,
}

#[derive(diesel::QueryableByName)]
struct Files {
    #[diesel(sql_type = diesel::sql_types::Jsonb)]
    attachments: chat_pg::json::LenientJson,
}

pub async fn erase_data(store: Store, cmd: EraseData) -> Result<DataErased, ApiError> {
    let subjects = store.subjects().clone();
    let db = store.db(&cmd.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let (tenant, user) = (cmd.tenant_id.clone(), cmd.user_id.clone());
    let (erased, pending) = conn
        .transaction(async move |conn| -> Result<(DataErased, Vec<outbox::Pending>), StoreError> {
            let (erased, events) = match &user {
                None => erase_tenant(conn, &tenant).await?,
                Some(user) => erase_user(conn, &tenant, user).await?,
            };
            let pending = outbox::insert_many(conn, &subjects, &events, &[]).await?;
            Ok((erased, pending))
        })
        .await?;
    db.publisher.submit(pending);
    if cmd.user_id.is_none() {
        // The directory: the tenant, its keys and issuers (both cascade).
        let mut home = store.home().pool.get().await.map_err(StoreError::from)?;
        diesel::sql_query("DELETE FROM tenants WHERE id = $1")
            .bind::<Text, _>(cmd.tenant_id.as_str())
            .execute(&mut home)
            .await
            .map_err(StoreError::from)?;
        diesel::sql_query("DELETE FROM tenant_residency WHERE tenant_id = $1")
            .bind::<Text, _>(cmd.tenant_id.as_str())
            .execute(&mut home)
            .await
            .map_err(StoreError::from)?;
        store.tenant_changed(&cmd.tenant_id).await;
    }
    tracing::info!(
        tenant = %cmd.tenant_id, user = ?cmd.user_id.as_ref().map(UserId::as_str),
        rooms = erased.rooms, members = erased.members, messages = erased.messages, users = erased.users,
        "data erased"
    );
    Ok(erased)
}

/// `member.removed` for each membership, by the user themselves.
fn removals(tenant: &TenantId, memberships: Vec<Membership>) -> Vec<RoomEvent> {
    let now = chat_domain::time::now();
    memberships
        .into_iter()
        .filter_map(|m| Some((RoomId::parse(m.room_id).ok()?, UserId::parse(m.user_id).ok()?)))
        .map(|(room, user)| {
            RoomEvent::new(
                tenant,
                &room,
                now,
                RoomEventBody::MemberRemoved(MemberRemoved { user_id: user.clone(), removed_by: user }),
            )
        })
        .collect()
}

/// The object-store keys in stored `attachments` values.
fn keys(files: Vec<Files>) -> Vec<String> {
    files
        .into_iter()
        .filter_map(|f| serde_json::from_value::<Vec<Attachment>>(f.attachments.into_inner()).ok())
        .flatten()
        .map(|a| a.key)
        .collect()
}

async fn erase_tenant(
    conn: &mut AsyncPgConnection,
    tenant: &TenantId,
) -> Result<(DataErased, Vec<RoomEvent>), StoreError> {
    let t = tenant.as_str();
    // Its rooms, locked: nothing adds a message, member or cursor to them from here on.
    let rooms: Vec<RoomKey> = diesel::sql_query("SELECT id FROM rooms WHERE tenant_id = $1 ORDER BY id FOR UPDATE")
        .bind::<Text, _>(t)
        .load(conn)
        .await?;
    let ids: Vec<&str> = rooms.iter().map(|r| r.id.as_str()).collect();
    let memberships: Vec<Membership> =
        diesel::sql_query("DELETE FROM room_members WHERE room_id = ANY ($1) RETURNING room_id, user_id")
            .bind::<Array<Text>, _>(&ids)
            .load(conn)
            .await?;
    let files: Vec<Files> =
        diesel::sql_query("SELECT attachments FROM messages WHERE room_id = ANY ($1) AND attachments IS NOT NULL")
            .bind::<Array<Text>, _>(&ids)
            .load(conn)
            .await?;
    let mut erased =
        DataErased { members: memberships.len() as u64, attachment_keys: keys(files), ..Default::default() };
    diesel::sql_query("DELETE FROM room_cursors WHERE room_id = ANY ($1)")
        .bind::<Array<Text>, _>(&ids)
        .execute(conn)
        .await?;
    erased.messages = diesel::sql_query("DELETE FROM messages WHERE room_id = ANY ($1)")
        .bind::<Array<Text>, _>(&ids)
        .execute(conn)
        .await? as u64;
    erased.rooms =
        diesel::sql_query("DELETE FROM rooms WHERE tenant_id = $1").bind::<Text, _>(t).execute(conn).await? as u64;
    erased.users =
        diesel::sql_query("DELETE FROM users WHERE tenant_id = $1").bind::<Text, _>(t).execute(conn).await? as u64;
    // Room members carry the tenant too (a row whose room is gone cannot exist, but be sure).
    diesel::sql_query("DELETE FROM room_members WHERE tenant_id = $1").bind::<Text, _>(t).execute(conn).await?;
    diesel::sql_query("DELETE FROM user_blocks WHERE tenant_id = $1").bind::<Text, _>(t).execute(conn).await?;
    diesel::sql_query("DELETE FROM message_reactions WHERE tenant_id = $1").bind::<Text, _>(t).execute(conn).await?;
    diesel::sql_query("DELETE FROM message_pins WHERE tenant_id = $1").bind::<Text, _>(t).execute(conn).await?;
    diesel::sql_query("DELETE FROM thread_reads WHERE tenant_id = $1").bind::<Text, _>(t).execute(conn).await?;
    // Moderation (migration 0080); its rows also go with their rooms, but be sure.
    for table in ["room_bans", "room_mutes", "room_slow_sends", "message_flags", "moderation_log"] {
        diesel::sql_query(format!("DELETE FROM {table} WHERE tenant_id = $1")).bind::<Text, _>(t).execute(conn).await?;
    }
    diesel::sql_query("DELETE FROM tenant_residency WHERE tenant_id = $1").bind::<Text, _>(t).execute(conn).await?;
    Ok((erased, removals(tenant, memberships)))
}

#[derive(diesel::QueryableByName)]
struct RoomKey {
    #[diesel(sql_type = Text)]
    id: String,
}

async fn erase_user(
    conn: &mut AsyncPgConnection,
    tenant: &TenantId,
    user: &UserId,
) -> Result<(DataErased, Vec<RoomEvent>), StoreError> {
    let (t, u) = (tenant.as_str(), user.as_str());
    let rooms: Vec<RoomKey> = diesel::sql_query("SELECT id FROM rooms WHERE tenant_id = $1 ORDER BY id")
        .bind::<Text, _>(t)
        .load(conn)
        .await?;
    let ids: Vec<&str> = rooms.iter().map(|r| r.id.as_str()).collect();
    let memberships: Vec<Membership> =
        diesel::sql_query("DELETE FROM room_members WHERE tenant_id = $1 AND user_id = $2 RETURNING room_id, user_id")
            .bind::<Text, _>(t)
            .bind::<Text, _>(u)
            .load(conn)
            .await?;
    diesel::sql_query("DELETE FROM room_cursors WHERE room_id = ANY ($1) AND user_id = $2")
        .bind::<Array<Text>, _>(&ids)
        .bind::<Text, _>(u)
        .execute(conn)
        .await?;
    // What they could still find of rooms they left (search's departures), including the
    // rows the membership deletion above has just written.
    diesel::sql_query("DELETE FROM room_departures WHERE tenant_id = $1 AND user_id = $2")
        .bind::<Text, _>(t)
        .bind::<Text, _>(u)
        .execute(conn)
        .await?;
    // Their blocks, both ways.
    diesel::sql_query("DELETE FROM user_blocks WHERE tenant_id = $1 AND (blocker_id = $2 OR blocked_id = $2)")
        .bind::<Text, _>(t)
        .bind::<Text, _>(u)
        .execute(conn)
        .await?;
    // Their reactions; the reactions and pins of their messages (which become
    // tombstones below, as a deleted message has neither); who pinned is forgotten.
    diesel::sql_query("DELETE FROM message_reactions WHERE tenant_id = $1 AND user_id = $2")
        .bind::<Text, _>(t)
        .bind::<Text, _>(u)
        .execute(conn)
        .await?;
    for table in ["message_reactions", "message_pins"] {
        diesel::sql_query(format!(
            "DELETE FROM {table} x WHERE x.room_id = ANY ($1)
               AND x.message_id IN (SELECT m.id FROM messages m WHERE m.room_id = ANY ($1) AND m.sender_id = $2)"
        ))
        .bind::<Array<Text>, _>(&ids)
        .bind::<Text, _>(u)
        .execute(conn)
        .await?;
    }
    diesel::sql_query("UPDATE message_pins SET pinned_by = $3 WHERE tenant_id = $1 AND pinned_by = $2")
        .bind::<Text, _>(t)
        .bind::<Text, _>(u)
        .bind::<Text, _>(ERASED_USER)
        .execute(conn)
        .await?;
    // How far they read threads (migration 0070).
    diesel::sql_query("DELETE FROM thread_reads WHERE tenant_id = $1 AND user_id = $2")
        .bind::<Text, _>(t)
        .bind::<Text, _>(u)
        .execute(conn)
        .await?;
    // Moderation (migration 0080): bans, mutes and slow-mode rows about them go, and the
    // flags they filed or that were filed on their messages (whose text goes below). The
    // moderation log keeps its rows, as messages keep tombstones, but names them as the
    // erased user and drops the reasons of the rows about them.
    for sql in [
        "DELETE FROM room_bans WHERE tenant_id = $1 AND (user_id = $2 OR created_by = $2)",
        "DELETE FROM room_mutes WHERE tenant_id = $1 AND (user_id = $2 OR created_by = $2)",
        "DELETE FROM room_slow_sends WHERE tenant_id = $1 AND user_id = $2",
        "DELETE FROM message_flags WHERE tenant_id = $1 AND (flagged_by = $2 OR sender_id = $2 OR resolved_by = $2)",
        "UPDATE moderation_log SET reason = NULL WHERE tenant_id = $1 AND (actor_id = $2 OR target_user_id = $2)",
    ] {
        diesel::sql_query(sql).bind::<Text, _>(t).bind::<Text, _>(u).execute(conn).await?;
    }
    diesel::sql_query(
        "UPDATE moderation_log SET actor_id = CASE WHEN actor_id = $2 THEN $3 ELSE actor_id END,
                target_user_id = CASE WHEN target_user_id = $2 THEN $3 ELSE target_user_id END
         WHERE tenant_id = $1 AND (actor_id = $2 OR target_user_id = $2)",
    )
    .bind::<Text, _>(t)
    .bind::<Text, _>(u)
    .bind::<Text, _>(ERASED_USER)
    .execute(conn)
    .await?;
    let files: Vec<Files> = diesel::sql_query(
        "SELECT attachments FROM messages WHERE room_id = ANY ($1) AND sender_id = $2 AND attachments IS NOT NULL",
    )
    .bind::<Array<Text>, _>(&ids)
    .bind::<Text, _>(u)
    .load(conn)
    .await?;
    let mut erased =
        DataErased { members: memberships.len() as u64, attachment_keys: keys(files), ..Default::default() };
    // Their messages stay as tombstones: same id and seq, nothing of them left.
    erased.messages = diesel::sql_query(
        "UPDATE messages SET content = '', meta = NULL, attachments = NULL, mentions = NULL, sender_name = NULL,
                client_msg_id = NULL, sender_id = $3, deleted_at = COALESCE(deleted_at, now()),
                deleted_by = CASE WHEN deleted_by = $2 THEN $3 ELSE deleted_by END
         WHERE room_id = ANY ($1) AND sender_id = $2",
    )
    .bind::<Array<Text>, _>(&ids)
    .bind::<Text, _>(u)
    .bind::<Text, _>(ERASED_USER)
    .execute(conn)
    .await? as u64;
    diesel::sql_query("UPDATE messages SET deleted_by = $3 WHERE room_id = ANY ($1) AND deleted_by = $2")
        .bind::<Array<Text>, _>(&ids)
        .bind::<Text, _>(u)
        .bind::<Text, _>(ERASED_USER)
        .execute(conn)
        .await?;
    // Threads and mentions (migration 0070): their name goes from others' mentions and
    // from thread participants, and the threads they replied in are counted again
    // without their (now deleted) replies.
    diesel::sql_query(
        "UPDATE messages SET mentions = array_replace(mentions, $2, $3),
                thread_participants = array_replace(thread_participants, $2, $3)
         WHERE room_id = ANY ($1) AND ($2 = ANY (mentions) OR $2 = ANY (thread_participants))",
    )
    .bind::<Array<Text>, _>(&ids)
    .bind::<Text, _>(u)
    .bind::<Text, _>(ERASED_USER)
    .execute(conn)
    .await?;
    let parents: Vec<RoomKey> = diesel::sql_query(
        "SELECT DISTINCT parent_id AS id FROM messages
         WHERE room_id = ANY ($1) AND sender_id = $2 AND parent_id IS NOT NULL",
    )
    .bind::<Array<Text>, _>(&ids)
    .bind::<Text, _>(ERASED_USER)
    .load(conn)
    .await?;
    for p in parents {
        let parent = stored(chat_domain::ids::MessageId::parse(p.id))?;
        super::threads::summary_recount(conn, &parent).await?;
    }
    // Rooms they made, and direct chats whose key names them (a new one can be made).
    diesel::sql_query(
        "UPDATE rooms SET created_by = CASE WHEN created_by = $2 THEN $3 ELSE created_by END,
                unique_key = CASE WHEN $2 = ANY (string_to_array(unique_key, ':')) THEN NULL ELSE unique_key END
         WHERE tenant_id = $1 AND (created_by = $2 OR $2 = ANY (string_to_array(unique_key, ':')))",
    )
    .bind::<Text, _>(t)
    .bind::<Text, _>(u)
    .bind::<Text, _>(ERASED_USER)
    .execute(conn)
    .await?;
    erased.users = diesel::sql_query("DELETE FROM users WHERE tenant_id = $1 AND id = $2")
        .bind::<Text, _>(t)
        .bind::<Text, _>(u)
        .execute(conn)
        .await? as u64;
    Ok((erased, removals(tenant, memberships)))
}
