//! One file per group of commands; [`router`] wires them to their verbs.

mod blocks;
mod chat_messages;
mod chats;
mod cursors;
mod deliveries;
mod edits;
mod erasure;
mod health;
mod history;
mod log;
mod members;
mod messages;
mod moderation;
mod pins;
mod placement;
#[cfg(test)]
mod plans;
mod reactions;
mod rooms;
mod search;
mod sync;
mod tenants;
mod threads;
mod users;

pub use crate::store::{Db, Inner, Store};
pub use search::Limits as SearchLimits;
pub use tenants::insert_key;

use chat_bus::server::Router;
use chat_domain::ApiError;
use chat_domain::ids::{RoomId, TenantId, UserId};
use chat_domain::model::{MemberRole, RoomType};
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::error::{StoreError, stored};

/// Every command message-store answers.
pub fn router(store: Store) -> Router<Store> {
    Router::new(store)
        .route(health::health)
        .route(tenants::authenticate)
        .route(tenants::authenticate_admin)
        .route(tenants::get_token_secret)
        .route(tenants::resolve_issuer)
        .route(tenants::get_webhook)
        .route(tenants::create_tenant)
        .route(tenants::list_tenants)
        .route(tenants::get_tenant)
        .route(tenants::update_tenant)
        .route(tenants::rotate_key)
        .route(erasure::erase_data)
        .route(rooms::create_room)
        .route(rooms::get_room)
        .route(rooms::list_rooms)
        .route(members::list_members)
        .route(members::add_member)
        .route(members::remove_member)
        .route(members::audience)
        .route(messages::send_message)
        .route(messages::send_messages)
        .route(messages::list_messages)
        .route(log::room_messages)
        .route(log::room_audiences)
        .route(log::message_feed)
        .route(cursors::move_cursor)
        .route(cursors::read_messages)
        .route(deliveries::mark_delivered)
        .route(history::older_messages)
        .route(edits::edit_message)
        .route(edits::delete_message)
        .route(users::put_user)
        .route(users::get_user)
        .route(chats::create_chat)
        .route(chats::get_chat)
        .route(chats::list_chats)
        .route(chats::chat_stats)
        .route(chats::toggle_archive)
        .route(chat_messages::chat_messages)
        .route(cursors::read_all)
        .route(placement::list_clusters)
        .route(placement::create_tenant_on)
        .route(placement::move_tenant)
        .route(search::search_messages)
        .route(sync::sync)
        .route(blocks::block_user)
        .route(blocks::unblock_user)
        .route(blocks::list_blocks)
        .route(reactions::add_reaction)
        .route(reactions::remove_reaction)
        .route(reactions::list_reactors)
        .route(pins::pin_message)
        .route(pins::unpin_message)
        .route(pins::list_pins)
        .route(threads::get_thread)
        .route(threads::list_threads)
        .route(moderation::restrict)
        .route(moderation::unrestrict)
        .route(moderation::list_restrictions)
        .route(moderation::set_member_role)
        .route(moderation::get_room_settings)
        .route(moderation::update_room_settings)
        .route(moderation::check_speak)
        .route(moderation::flag_message)
        .route(moderation::list_flags)
        .route(moderation::resolve_flag)
        .route(moderation::tenant_flags)
        .route(moderation::room_moderation_log)
        .route(moderation::tenant_moderation_log)
}

/// A room seen by one user: its type, and the user's role if they are a member.
pub struct Access {
    pub room_type: RoomType,
    pub role: Option<MemberRole>,
}

impl Access {
    /// The user's role, or `FORBIDDEN` when they are not a member.
    pub fn member(&self) -> Result<MemberRole, ApiError> {
        self.role.ok_or_else(|| ApiError::forbidden("You are not a member of this room"))
    }
}

/// Looks a room up for a user. Another tenant's room is `NOT_FOUND`, like a missing one.
pub async fn access(
    conn: &mut AsyncPgConnection,
    tenant: &TenantId,
    room: &RoomId,
    user: &UserId,
) -> Result<Access, StoreError> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        room_type: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
        role: Option<String>,
    }
    let row: Option<Row> = diesel::sql_query(
        "SELECT r.room_type, m.role FROM rooms r
         LEFT JOIN room_members m ON m.room_id = r.id AND m.user_id = $3
         WHERE r.id = $1 AND r.tenant_id = $2",
    )
    .bind::<Text, _>(room.as_str())
    .bind::<Text, _>(tenant.as_str())
    .bind::<Text, _>(user.as_str())
    .get_result(conn)
    .await
    .map(Some)
    .or_else(|e| if e == diesel::result::Error::NotFound { Ok(None) } else { Err(e) })?;
    let row = row.ok_or_else(|| ApiError::not_found("Room not found"))?;
    Ok(Access {
        room_type: stored(RoomType::parse(&row.room_type))?,
        role: row.role.as_deref().map(MemberRole::parse).transpose().map_err(|e| StoreError::Corrupt(e.message))?,
    })
}
