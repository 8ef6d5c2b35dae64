//! The canonical REST API (`rest-rooms.md`), mounted at `/` and again under `/v1/`,
//! with the `/api/v1` helpers of `ws-rooms.md`. One file per resource; every handler
//! takes one [`extract::Rest`] of the parts it reads, in order, and typed request
//! structs convert into bus commands with `TryFrom`.

mod admin;
mod api_messages;
mod cursors;
pub mod extract;
mod health;
mod live;
mod messages;
mod notify;
mod rooms;

use actix_web::web;
use chat_domain::ApiError;
use chat_domain::ids::{RoomId, TenantId, UserId};

/// Adds every route of the REST API to a scope.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health::health))
        .route("/rooms", web::post().to(rooms::create))
        .route("/rooms", web::get().to(rooms::list))
        .route("/rooms/{room_id}", web::get().to(rooms::get))
        .route("/rooms/{room_id}/members", web::get().to(rooms::list_members))
        .route("/rooms/{room_id}/members", web::post().to(rooms::add_member))
        .route("/rooms/{room_id}/members/{user_id}", web::delete().to(rooms::remove_member))
        .route("/rooms/{room_id}/messages", web::post().to(messages::send))
        .route("/rooms/{room_id}/messages", web::get().to(messages::list))
        .route("/rooms/{room_id}/messages/{message_id}", web::patch().to(messages::edit))
        .route("/rooms/{room_id}/messages/{message_id}", web::delete().to(messages::delete))
        .route("/rooms/{room_id}/read", web::post().to(cursors::read))
        .route("/acks", web::post().to(cursors::ack))
        .route("/tokens", web::post().to(crate::tokens::create))
        .route("/notify", web::post().to(notify::notify))
        .route("/subscriptions", web::post().to(notify::subscribe))
        .route("/subscriptions", web::get().to(notify::list_subscriptions))
        .route("/subscriptions/{topic}", web::delete().to(notify::unsubscribe))
        .route("/notifications", web::get().to(notify::inbox))
        .route("/admin/dead-letters", web::get().to(notify::dead_letters))
        .route("/admin/dead-letters/{id}/retry", web::post().to(notify::retry_dead_letter))
        .route("/api/v1/rooms/{room_id}/messages", web::post().to(api_messages::send))
        .route("/api/v1/rooms/{room_id}/messages/", web::post().to(api_messages::send))
        .route("/api/v1/rooms/{room_id}/messages", web::get().to(api_messages::list))
        .route("/api/v1/rooms/{room_id}/messages/", web::get().to(api_messages::list))
        .route("/api/v1/rooms/{room_id}/online", web::get().to(live::online))
        .route("/api/v1/users/online", web::get().to(live::tenant_online))
        .route("/api/v1/rooms/{room_id}/participants", web::get().to(live::participants))
        .route("/admin/tenants", web::post().to(admin::create_tenant))
        .route("/admin/tenants", web::get().to(admin::list_tenants))
        .route("/admin/tenants/{tenant_id}", web::get().to(admin::get_tenant))
        .route("/admin/tenants/{tenant_id}", web::patch().to(admin::update_tenant))
        .route("/admin/tenants/{tenant_id}/rotate-key", web::post().to(admin::rotate_key));
}

/// Parses a `{room_id}` path segment.
pub fn room_id(raw: &str) -> Result<RoomId, ApiError> {
    RoomId::parse(raw).map_err(|e| ApiError::validation("room_id", format!("Invalid room id: {e}")))
}

/// Parses a `{user_id}` path segment or body field.
pub fn user_id(field: &str, raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw).map_err(|e| ApiError::validation(field, format!("Invalid user id {raw:?}: {e}")))
}

/// Parses a `{tenant_id}` path segment or body field.
pub fn tenant_id(raw: &str) -> Result<TenantId, ApiError> {
    TenantId::parse(raw).map_err(|e| ApiError::validation("tenant_id", format!("Invalid tenant id: {e}")))
}

/// `limit` (default 50, max 100) and `offset` (default 0) for list endpoints.
pub fn page(q: &crate::body::Query) -> Result<(u32, u32), ApiError> {
    let limit = q.int("limit", 1, 100)?.unwrap_or(50) as u32;
    let offset = q.int("offset", 0, i64::from(u32::MAX))?.unwrap_or(0) as u32;
    Ok((limit, offset))
}
