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

use chat_domain::ApiError;
use chat_domain::ids::{RoomId, TenantId, UserId};

use crate::routes::{Mount, op};

/// Adds every route of the REST API to a mount (`/` and `/v1`), each with its
/// documentation. One resource per path (every method of a path matched by one
/// pattern), the busiest first: routes are tried in order, and each dynamic pattern
/// costs a regex match.
pub fn routes(m: &mut Mount) {
    m.tagged("Rooms")
        .at(&["/rooms/{room_id}/messages"], |r| {
            r.post(messages::send, op("Send a message").user().errors(&[400, 401, 403, 404, 413, 503]))
                .get(messages::list, op("List a room's messages").user().errors(&[400, 401, 403, 404, 503]))
        })
        .at(&["/rooms/{room_id}/messages/{message_id}"], |r| {
            r.patch(messages::edit, op("Edit a message").user().errors(&[400, 401, 403, 404, 503]))
                .delete(messages::delete, op("Delete a message").user().errors(&[400, 401, 403, 404, 503]))
        })
        .at(&["/rooms/{room_id}/read"], |r| {
            r.post(cursors::read, op("Mark a room read up to a message").user().errors(&[400, 401, 403, 404, 503]))
        })
        .at(&["/acks"], |r| r.post(cursors::ack, op("Acknowledge delivery").user().errors(&[400, 401, 404, 503])))
        .at(&["/rooms"], |r| {
            r.post(rooms::create, op("Create a room").user().errors(&[400, 401, 404, 503]))
                .get(rooms::list, op("List the caller's rooms").user().errors(&[400, 401, 503]))
        })
        .at(&["/rooms/{room_id}"], |r| r.get(rooms::get, op("Get a room").user().errors(&[400, 401, 403, 404, 503])))
        .at(&["/rooms/{room_id}/members"], |r| {
            r.get(rooms::list_members, op("List a room's members").user().errors(&[400, 401, 403, 404, 503]))
                .post(rooms::add_member, op("Add a member").user().errors(&[400, 401, 403, 404, 409, 503]))
        })
        .at(&["/rooms/{room_id}/members/{user_id}"], |r| {
            r.delete(rooms::remove_member, op("Remove a member").user().errors(&[400, 401, 403, 404, 503]))
        })
        .tagged("Users and tokens")
        .at(&["/users/{user_id}"], |r| {
            r.put(users::put, op("Create or update a user in the directory").tenant().errors(&[400, 401, 503]))
                .get(users::get, op("Get a user from the directory").tenant().errors(&[400, 401, 404, 503]))
        })
        .tagged("ws-rooms helpers")
        .at(&["/api/v1/rooms/{room_id}/messages", "/api/v1/rooms/{room_id}/messages/"], |r| {
            r.post(api_messages::send, op("Send a message (ws-rooms.md)").user().errors(&[400, 401, 403, 404, 503]))
                .get(api_messages::list, op("Message history (ws-rooms.md)").user().errors(&[400, 401, 403, 404, 503]))
        })
        .at(&["/api/v1/rooms/{room_id}/online"], |r| {
            r.get(live::online, op("Who is online in a room").user().errors(&[400, 401, 403, 404, 503]))
        })
        .at(&["/api/v1/users/online"], |r| {
            r.get(live::tenant_online, op("Who is online in the tenant").user().errors(&[401, 503]))
        })
        .at(&["/api/v1/rooms/{room_id}/participants"], |r| {
            r.get(live::participants, op("A room's participants").user().errors(&[400, 401, 403, 404, 503]))
        })
        .tagged("Operations")
        .at(&["/health"], |r| r.get(health::health, op("Health of the gateway and the services behind it")))
        .tagged("Users and tokens")
        .at(&["/tokens"], |r| r.post(crate::tokens::create, op("Mint a user token").tenant().errors(&[400, 401, 503])))
        .tagged("Notifications")
        .at(&["/notify"], |r| r.post(notify::notify, op("Send a notification").user().errors(&[400, 401, 503])))
        .at(&["/subscriptions"], |r| {
            r.post(notify::subscribe, op("Subscribe to a topic").user().errors(&[400, 401, 503]))
                .get(notify::list_subscriptions, op("List the caller's subscriptions").user().errors(&[401, 503]))
        })
        .at(&["/subscriptions/{topic}"], |r| {
            r.delete(notify::unsubscribe, op("Unsubscribe from a topic").user().errors(&[400, 401, 503]))
        })
        .at(&["/notifications"], |r| r.get(notify::inbox, op("The caller's inbox").user().errors(&[400, 401, 503])))
        .at(&["/admin/dead-letters"], |r| {
            r.get(notify::dead_letters, op("List webhook dead letters").operator().errors(&[400, 401, 503]))
        })
        .at(&["/admin/dead-letters/{id}/retry"], |r| {
            r.post(notify::retry_dead_letter, op("Replay a dead letter").operator().errors(&[400, 401, 404, 503]))
        })
        .tagged("Admin")
        .at(&["/admin/tenants"], |r| {
            r.post(admin::create_tenant, op("Create a tenant").operator().errors(&[400, 401, 409, 503]))
                .get(admin::list_tenants, op("List tenants").operator().errors(&[400, 401, 503]))
        })
        .at(&["/admin/tenants/{tenant_id}"], |r| {
            r.get(admin::get_tenant, op("Get a tenant").operator().errors(&[400, 401, 404, 503]))
                .patch(admin::update_tenant, op("Update a tenant").operator().errors(&[400, 401, 404, 503]))
        })
        .at(&["/admin/tenants/{tenant_id}/rotate-key"], |r| {
            r.post(admin::rotate_key, op("Rotate a tenant's API key").operator().errors(&[400, 401, 404, 503]))
        })
        .tagged("Settings")
        .at(&["/settings"], |r| {
            r.get(settings::get, op("The tenant's settings").tenant().errors(&[401, 503]))
                .put(settings::put, op("Replace the tenant's settings").tenant().errors(&[400, 401, 409, 503]))
                .patch(
                    settings::update,
                    op("Change some of the tenant's settings").tenant().errors(&[400, 401, 409, 503]),
                )
        });
}

/// The page size of list endpoints when `limit` is not given.
fn default_limit() -> u32 {
    50
}

/// `{"success": true}`: the answer of an action that has nothing else to say.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct Success {
    /// Always `true`.
    #[schemars(extend("const" = true))]
    success: bool,
}

/// The one [`Success`].
pub const SUCCESS: Success = Success { success: true };

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
    let limit = q.int("limit", 1, 100)?.map_or(default_limit(), |n| n as u32);
    let offset = q.int("offset", 0, i64::from(u32::MAX))?.unwrap_or(0) as u32;
    Ok((limit, offset))
}
