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
mod settings;
mod users;

use actix_web::web;
use chat_domain::ApiError;
use chat_domain::ids::{RoomId, TenantId, UserId};

/// Adds every route of the REST API to a scope.
/// A resource whose other methods answer like an unknown path (the JSON `404`).
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(crate::error::no_route))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    // One resource per path (every method of a path matched by one pattern), the busiest
    // first: routes are tried in order, and each dynamic pattern costs a regex match.
    cfg.service(
        resource("/rooms/{room_id}/messages")
            .route(web::post().to(messages::send))
            .route(web::get().to(messages::list)),
    )
    .service(
        resource("/rooms/{room_id}/messages/{message_id}")
            .route(web::patch().to(messages::edit))
            .route(web::delete().to(messages::delete)),
    )
    .service(resource("/rooms/{room_id}/read").route(web::post().to(cursors::read)))
    .service(resource("/acks").route(web::post().to(cursors::ack)))
    .service(resource("/rooms").route(web::post().to(rooms::create)).route(web::get().to(rooms::list)))
    .service(resource("/rooms/{room_id}").route(web::get().to(rooms::get)))
    .service(
        resource("/rooms/{room_id}/members")
            .route(web::get().to(rooms::list_members))
            .route(web::post().to(rooms::add_member)),
    )
    .service(resource("/rooms/{room_id}/members/{user_id}").route(web::delete().to(rooms::remove_member)))
    .service(resource("/users/{user_id}").route(web::put().to(users::put)).route(web::get().to(users::get)))
    .service(
        web::resource(["/api/v1/rooms/{room_id}/messages", "/api/v1/rooms/{room_id}/messages/"])
            .default_service(web::to(crate::error::no_route))
            .route(web::post().to(api_messages::send))
            .route(web::get().to(api_messages::list)),
    )
    .service(resource("/api/v1/rooms/{room_id}/online").route(web::get().to(live::online)))
    .service(resource("/api/v1/users/online").route(web::get().to(live::tenant_online)))
    .service(resource("/api/v1/rooms/{room_id}/participants").route(web::get().to(live::participants)))
    .service(resource("/health").route(web::get().to(health::health)))
    .service(resource("/tokens").route(web::post().to(crate::tokens::create)))
    .service(resource("/notify").route(web::post().to(notify::notify)))
    .service(
        resource("/subscriptions")
            .route(web::post().to(notify::subscribe))
            .route(web::get().to(notify::list_subscriptions)),
    )
    .service(resource("/subscriptions/{topic}").route(web::delete().to(notify::unsubscribe)))
    .service(resource("/notifications").route(web::get().to(notify::inbox)))
    .service(resource("/admin/dead-letters").route(web::get().to(notify::dead_letters)))
    .service(resource("/admin/dead-letters/{id}/retry").route(web::post().to(notify::retry_dead_letter)))
    .service(
        resource("/admin/tenants")
            .route(web::post().to(admin::create_tenant))
            .route(web::get().to(admin::list_tenants)),
    )
    .service(
        resource("/admin/tenants/{tenant_id}")
            .route(web::get().to(admin::get_tenant))
            .route(web::patch().to(admin::update_tenant)),
    )
    .service(resource("/admin/tenants/{tenant_id}/rotate-key").route(web::post().to(admin::rotate_key)))
    .service(
        resource("/settings")
            .route(web::get().to(settings::get))
            .route(web::put().to(settings::put))
            .route(web::patch().to(settings::update)),
    );
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
