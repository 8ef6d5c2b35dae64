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

use crate::openapi::Auth;
use crate::routes::{Mount, op};

/// Adds every route of the REST API to a mount (`/` and `/v1`), each with its
/// documentation. One resource per path (every method of a path matched by one
/// pattern), the busiest first: routes are tried in order, and each dynamic pattern
/// costs a regex match.
pub fn routes(m: &mut Mount) {
    use chat_domain::model::{Member, Room};
    use chat_domain::proto::Command;
    use chat_domain::proto::notify::{ListDeadLetters, ListInbox, Notify};
    use chat_domain::proto::store::{CreateRoom, ListRooms, RotateKey};
    use chat_domain::settings::{TenantSettings, TenantSettingsPatch};
    use serde_json::json;

    use crate::ws_rooms::codec::MessageData;

    let room = "The room's id (`room_...`).";
    let replayed = "`true` when the send was a resend (same `Idempotency-Key` or `client_msg_id`).";
    let idempotency = "The client's id of this send (wins over `client_msg_id`): a resend returns the first message.";
    let message = json!({
        "message_id": "msg_0193c5f2a7e87d3a9b1f4e2c8d6a0b11",
        "room_id": "room_0193c5f1d2a07b4c8e3f9a1b2c3d4e5f",
        "sender_id": "user1",
        "sender_name": "Alice",
        "seq": 43,
        "content": "Hello, world!",
        "meta": {"type": "text", "mentions": ["user2"]},
        "client_msg_id": null,
        "created_at": "2025-12-13T12:10:00.000000Z",
        "edited_at": null,
        "deleted_at": null,
    });
    m.tagged("Rooms")
        .at(&["/rooms/{room_id}/messages"], |r| {
            r.post(
                messages::send,
                op("Send a message")
                    .describe("Stores the message with the room's next `seq` and delivers it to the members' sockets. A resend with the same `Idempotency-Key` (or `client_msg_id`) by the same sender returns the first message with `200` and `Idempotent-Replayed: true`.")
                    .user()
                    .path_id::<chat_domain::ids::RoomId>("room_id", room)
                    .param::<String>("Idempotency-Key", "header", idempotency)
                    .json_example::<messages::NewMessage>(json!({
                        "content": "Hello, world!",
                        "meta": {"type": "text", "mentions": ["user2"]},
                    }))
                    .reply_example::<messages::LinkedMessage>(201, "The message, stored.", message.clone())
                    .reply::<messages::LinkedMessage>(200, "A resend: the message the first send stored.")
                    .reply_header("Idempotent-Replayed", replayed)
                    .errors(&[400, 401, 403, 404, 413, 503]),
            )
            .get(
                messages::list,
                op("List a room's messages")
                    .describe("In `seq` order: after `after_seq` (from the start when absent), or the newest ones before `before_seq` when only that is given. Deleted messages keep their `seq` with empty content and `deleted_at` set.")
                    .user()
                    .path_id::<chat_domain::ids::RoomId>("room_id", room)
                    .query::<messages::History>()
                    .reply_example::<Vec<messages::LinkedMessage>>(200, "The page, in `seq` order.", json!([message.clone()]))
                    .errors(&[400, 401, 403, 404, 503]),
            )
        })
        .at(&["/rooms/{room_id}/messages/{message_id}"], |r| {
            r.patch(
                messages::edit,
                op("Edit a message")
                    .describe("Only its sender may; a deleted message cannot be edited (`409`).")
                    .user()
                    .path_id::<chat_domain::ids::RoomId>("room_id", room)
                    .path_id::<chat_domain::ids::MessageId>("message_id", "The message's id (`msg_...`).")
                    .json::<messages::Edit>()
                    .reply::<messages::LinkedMessage>(200, "The message, edited (`edited_at` set).")
                    .errors(&[400, 401, 403, 404, 409, 413, 503]),
            )
            .delete(
                messages::delete,
                op("Delete a message")
                    .describe("Its sender or a room admin may. Soft: the `seq` stays, the content goes.")
                    .user()
                    .path_id::<chat_domain::ids::RoomId>("room_id", room)
                    .path_id::<chat_domain::ids::MessageId>("message_id", "The message's id (`msg_...`).")
                    .reply::<messages::LinkedMessage>(200, "The message, deleted (`deleted_at` set, content empty).")
                    .errors(&[400, 401, 403, 404, 503]),
            )
        })
        .at(&["/rooms/{room_id}/read"], |r| {
            r.post(
                cursors::read,
                op("Mark a room read up to a message")
                    .describe("Moves the caller's read cursor (and delivered cursor) forward to `seq`; the room sees a `read` event.")
                    .user()
                    .path_id::<chat_domain::ids::RoomId>("room_id", room)
                    .json_example::<cursors::Read>(json!({"seq": 43}))
                    .reply::<cursors::Moved>(200, "The caller's cursors now.")
                    .errors(&[400, 401, 403, 404, 413, 503]),
            )
        })
        .at(&["/acks"], |r| {
            r.post(
                cursors::ack,
                op("Acknowledge delivery")
                    .describe("Marks messages as delivered up to `seq`: moves the caller's delivered cursor forward; the room sees a `delivered` event.")
                    .user()
                    .json_example::<cursors::Ack>(json!({"room_id": "room_0193c5f1d2a07b4c8e3f9a1b2c3d4e5f", "seq": 43}))
                    .reply::<cursors::Moved>(200, "The caller's cursors now.")
                    .errors(&[400, 401, 403, 404, 413, 503]),
            )
        })
        .at(&["/rooms"], |r| {
            r.post(
                rooms::create,
                op("Create a room")
                    .describe("A DM, group or channel; the caller becomes its admin. There is at most one DM per pair of users: creating it again is `409`, naming the existing room.")
                    .user()
                    .json_example::<rooms::NewRoom>(json!({"type": "group", "members": ["user2", "user3"], "name": "Team Chat"}))
                    .reply_example::<<CreateRoom as Command>::Reply>(
                        201,
                        "The room.",
                        json!({
                            "room_id": "room_0193c5f1d2a07b4c8e3f9a1b2c3d4e5f",
                            "type": "group",
                            "unique_key": null,
                            "name": "Team Chat",
                            "last_seq": 0,
                            "member_count": 3,
                            "created_by": "user1",
                            "created_at": "2025-12-13T12:00:00.000000Z",
                        }),
                    )
                    .errors(&[400, 401, 403, 409, 413, 503]),
            )
            .get(
                rooms::list,
                op("List the caller's rooms")
                    .describe("Most recently active first, each with `unread_count` and `last_message`.")
                    .user()
                    .query::<extract::Page>()
                    .reply::<<ListRooms as Command>::Reply>(200, "A page of the caller's rooms.")
                    .errors(&[400, 401, 403, 503]),
            )
        })
        .at(&["/rooms/{room_id}"], |r| {
            r.get(
                rooms::get,
                op("Get a room")
                    .user()
                    .path_id::<chat_domain::ids::RoomId>("room_id", room)
                    .reply::<Room>(200, "The room.")
                    .errors(&[400, 401, 403, 404, 503]),
            )
        })
        .at(&["/rooms/{room_id}/members"], |r| {
            r.get(
                rooms::list_members,
                op("List a room's members")
                    .user()
                    .path_id::<chat_domain::ids::RoomId>("room_id", room)
                    .query::<extract::Page>()
                    .reply::<Vec<Member>>(200, "A page of the members, in join order.")
                    .errors(&[400, 401, 403, 404, 503]),
            )
            .post(
                rooms::add_member,
                op("Add a member")
                    .describe("Room admins only; the members of a DM cannot change. Adding a member again changes nothing and answers `200`.")
                    .user()
                    .path_id::<chat_domain::ids::RoomId>("room_id", room)
                    .json_example::<rooms::NewMember>(json!({"user_id": "user4", "role": "member"}))
                    .reply::<Member>(201, "The member, added.")
                    .reply::<Member>(200, "The user already was a member.")
                    .errors(&[400, 401, 403, 404, 413, 503]),
            )
        })
        .at(&["/rooms/{room_id}/members/{user_id}"], |r| {
            r.delete(
                rooms::remove_member,
                op("Remove a member")
                    .describe("A room admin removes anyone; a member removes themself. Not in DMs.")
                    .user()
                    .path_id::<chat_domain::ids::RoomId>("room_id", room)
                    .path_id::<chat_domain::ids::UserId>("user_id", "The member to remove.")
                    .reply::<Success>(200, "Removed.")
                    .errors(&[400, 401, 403, 404, 503]),
            )
        })
        .tagged("Users and tokens")
        .at(&["/users/{user_id}"], |r| {
            r.put(
                users::put,
                op("Create or update a user in the directory")
                    .describe("Replaces the user's entry. Names, avatars and roles show in chats (`/api/chat` participants); roles `support` and `admin` make the support pool.")
                    .tenant()
                    .path_id::<chat_domain::ids::UserId>("user_id", "The user.")
                    .json_example::<users::UserBody>(json!({"name": "Alice", "roles": ["support"], "metadata": {"team": "billing"}}))
                    .reply::<chat_domain::proto::chat::DirectoryUser>(201, "The entry, created.")
                    .reply::<chat_domain::proto::chat::DirectoryUser>(200, "The entry, replaced.")
                    .errors(&[400, 401, 413, 503]),
            )
            .get(
                users::get,
                op("Get a user from the directory")
                    .describe("A user of the tenant: in the directory, or a member of any room (then `registered` is `false`).")
                    .tenant()
                    .path_id::<chat_domain::ids::UserId>("user_id", "The user.")
                    .reply::<chat_domain::proto::chat::DirectoryUser>(200, "The user.")
                    .errors(&[400, 401, 404, 503]),
            )
        })
        .tagged("ws-rooms helpers")
        .at(&["/api/v1/rooms/{room_id}/messages", "/api/v1/rooms/{room_id}/messages/"], |r| {
            r.post(
                api_messages::send,
                op("Send a message (ws-rooms.md)")
                    .describe("As the document's demo page sends one. With the API key the sender is `sender_id` (else `X-User-Id`); with a user token it is the token's user.")
                    .auth(Auth::KeyOrTokenAnyUser)
                    .path_id::<chat_domain::ids::RoomId>("room_id", room)
                    .param::<String>("Idempotency-Key", "header", idempotency)
                    .json_example::<api_messages::ApiMessage>(json!({
                        "sender_id": "user_123",
                        "sender_name": "Alice",
                        "content": "Hello, world!",
                        "message_type": "text",
                    }))
                    .reply::<api_messages::Enveloped<MessageData>>(201, "The message, stored.")
                    .reply::<api_messages::Enveloped<MessageData>>(200, "A resend: the message the first send stored.")
                    .reply_header("Idempotent-Replayed", replayed)
                    .errors(&[400, 401, 403, 404, 413, 503]),
            )
            .get(
                api_messages::list,
                op("Message history (ws-rooms.md)")
                    .describe("The history rules of `GET /rooms/{room_id}/messages`, messages in the shape of the `message` frame.")
                    .auth(Auth::KeyOrToken)
                    .path_id::<chat_domain::ids::RoomId>("room_id", room)
                    .query::<messages::History>()
                    .reply::<api_messages::Enveloped<api_messages::Messages>>(200, "The page, in `seq` order.")
                    .errors(&[400, 401, 403, 404, 503]),
            )
        })
        .at(&["/api/v1/rooms/{room_id}/online"], |r| {
            r.get(
                live::online,
                op("Who is online in a room")
                    .auth(Auth::KeyOrToken)
                    .path_id::<chat_domain::ids::RoomId>("room_id", room)
                    .reply_example::<api_messages::Enveloped<live::OnlineUsers>>(
                        200,
                        "The members with a socket open in the room.",
                        json!({"data": {"online_users": ["user_123", "user_456"], "total_online": 2}, "status": "success"}),
                    )
                    .errors(&[400, 401, 403, 404, 503]),
            )
        })
        .at(&["/api/v1/users/online"], |r| {
            r.get(
                live::tenant_online,
                op("Who is online in the tenant")
                    .auth(Auth::KeyOrTokenAnyUser)
                    .reply::<api_messages::Enveloped<live::OnlineUsers>>(200, "The users with a socket open anywhere in the tenant.")
                    .errors(&[400, 401, 403, 503]),
            )
        })
        .at(&["/api/v1/rooms/{room_id}/participants"], |r| {
            r.get(
                live::participants,
                op("A room's participants")
                    .describe("A page of the room's members, each with whether they are online.")
                    .auth(Auth::KeyOrToken)
                    .path_id::<chat_domain::ids::RoomId>("room_id", room)
                    .query::<extract::Page>()
                    .reply::<api_messages::Enveloped<live::Participants>>(200, "A page of the members, in join order.")
                    .errors(&[400, 401, 403, 404, 503]),
            )
        })
        .tagged("Operations")
        .at(&["/health"], |r| {
            r.get(
                health::health,
                op("Health of the gateway and the services behind it")
                    .describe("Each service is asked over the bus and given 2 seconds to answer.")
                    .reply_example::<health::HealthReport>(
                        200,
                        "Every service answered `ok`.",
                        json!({
                            "status": "ok",
                            "uptime": "2h30m45s",
                            "db_writable": true,
                            "services": {
                                "message-store": {"status": "ok", "instance": "store-1:4242", "uptime": "2h30m40s", "checks": {"db_writable": true}},
                                "notification": {"status": "ok", "instance": "notify-1:4243", "uptime": "2h30m41s", "checks": {}},
                                "presence": {"status": "ok", "instance": "presence-1:4244", "uptime": "2h30m42s", "checks": {"redis": true}},
                            },
                        }),
                    )
                    .reply::<health::HealthReport>(503, "A service is down or degraded (`status` is `degraded`)."),
            )
        })
        .tagged("Users and tokens")
        .at(&["/tokens"], |r| {
            r.post(
                crate::tokens::create,
                op("Mint a user token")
                    .describe("A short-lived HS256 JWT for a browser or mobile app, which then calls the user routes with `Authorization: Bearer` (or `?token=` on a WebSocket) and never holds the API key. The body may be empty: the user is then `X-User-Id`.")
                    .tenant()
                    .json_example::<crate::tokens::NewToken>(json!({"user_id": "user_123", "ttl_secs": 3600}))
                    .optional_body()
                    .reply_example::<crate::tokens::Token>(
                        201,
                        "The token.",
                        json!({
                            "token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyXzEyMyIsInRpZCI6InRlbl9hY21lIiwiaWF0IjoxNzY1NjI3MjAwLCJleHAiOjE3NjU2MzA4MDB9.c2lnbmF0dXJl",
                            "user_id": "user_123",
                            "expires_at": "2025-12-13T13:00:00.000000Z",
                            "expires_in": 3600,
                        }),
                    )
                    .errors(&[400, 401, 413, 503]),
            )
        })
        .tagged("Notifications")
        .at(&["/notify"], |r| {
            r.post(
                notify::notify,
                op("Send a notification")
                    .describe("To users, a room's members and/or a topic's subscribers (no targets: the whole tenant). Online recipients get it live, everyone finds it in their inbox, and offline ones are told through the tenant's webhook.")
                    .tenant()
                    .json_example::<notify::NewNotification>(json!({
                        "topic": "order.shipped",
                        "payload": {"order_id": "12345", "tracking_number": "1Z999AA1234567890"},
                        "targets": {"user_ids": ["user1", "user2"], "room_id": "room_0193c5f1d2a07b4c8e3f9a1b2c3d4e5f", "topic_subscribers": true},
                    }))
                    .reply_example::<<Notify as Command>::Reply>(
                        202,
                        "Accepted for delivery.",
                        json!({"notification_id": "notif_0193c5f3b1c27a4e9d8f7a6b5c4d3e2f", "created_at": "2025-12-13T12:15:00.000000Z", "recipients": 3}),
                    )
                    .errors(&[400, 401, 404, 413, 503]),
            )
        })
        .at(&["/subscriptions"], |r| {
            r.post(
                notify::subscribe,
                op("Subscribe to a topic")
                    .describe("Subscribing again is no error.")
                    .user()
                    .json::<notify::NewSubscription>()
                    .reply::<notify::Subscribed>(201, "Subscribed.")
                    .errors(&[400, 401, 403, 413, 503]),
            )
            .get(
                notify::list_subscriptions,
                op("List the caller's subscriptions")
                    .user()
                    .reply::<notify::Topics>(200, "The caller's topics.")
                    .errors(&[400, 401, 403, 503]),
            )
        })
        .at(&["/subscriptions/{topic}"], |r| {
            r.delete(
                notify::unsubscribe,
                op("Unsubscribe from a topic")
                    .user()
                    .path_param("topic", "The topic.")
                    .reply::<Success>(200, "Unsubscribed.")
                    .errors(&[400, 401, 403, 404, 503]),
            )
        })
        .at(&["/notifications"], |r| {
            r.get(
                notify::inbox,
                op("The caller's inbox")
                    .describe("Notifications, and messages that arrived while the caller was away; newest first.")
                    .user()
                    .query::<extract::Page>()
                    .reply::<<ListInbox as Command>::Reply>(200, "A page of the inbox.")
                    .errors(&[400, 401, 403, 503]),
            )
        })
        .at(&["/admin/dead-letters"], |r| {
            r.get(
                notify::dead_letters,
                op("List webhook dead letters")
                    .describe("A tenant's webhook deliveries that ran out of attempts, newest first.")
                    .operator()
                    .query::<notify::DeadLetterQuery>()
                    .reply::<<ListDeadLetters as Command>::Reply>(200, "The dead letters, by what failed.")
                    .errors(&[400, 401, 403, 503]),
            )
        })
        .at(&["/admin/dead-letters/{id}/retry"], |r| {
            r.post(
                notify::retry_dead_letter,
                op("Replay a dead letter")
                    .describe("Its delivery starts over with a fresh attempt budget.")
                    .operator()
                    .path_param("id", "The dead letter's `id` (from the list).")
                    .reply::<Success>(202, "Delivery starts again.")
                    .errors(&[401, 403, 404, 503]),
            )
        })
        .tagged("Admin")
        .at(&["/admin/tenants"], |r| {
            r.post(
                admin::create_tenant,
                op("Create a tenant")
                    .describe("With its first API key, shown this once.")
                    .operator()
                    .json_example::<admin::NewTenant>(json!({"name": "Acme", "tenant_id": "acme", "rate_limit_per_sec": 100}))
                    .reply_example::<admin::NewTenantKey>(
                        201,
                        "The tenant and its API key.",
                        json!({
                            "tenant_id": "acme",
                            "name": "Acme",
                            "rate_limit_per_sec": 100,
                            "api_key_prefixes": ["sk_3f9a1b2"],
                            "webhook_url": null,
                            "webhook_secret_set": false,
                            "retry": {"max_attempts": 5, "backoff_ms": 1000},
                            "settings": {
                                "jwt": {"issuers": []},
                                "edit_window_secs": 900,
                                "upload_max_bytes": 10485760,
                                "upload_allowed_types": ["image/png", "image/jpeg"],
                            },
                            "created_at": "2025-12-13T12:00:00.000000Z",
                            "api_key": "sk_3f9a1b2c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8",
                        }),
                    )
                    .errors(&[400, 401, 403, 409, 413, 503]),
            )
            .get(
                admin::list_tenants,
                op("List tenants")
                    .describe("Oldest first.")
                    .operator()
                    .query::<extract::Page>()
                    .reply::<Vec<chat_domain::model::Tenant>>(200, "A page of tenants.")
                    .errors(&[400, 401, 403, 503]),
            )
        })
        .at(&["/admin/tenants/{tenant_id}"], |r| {
            r.get(
                admin::get_tenant,
                op("Get a tenant")
                    .operator()
                    .path_id::<chat_domain::ids::TenantId>("tenant_id", "The tenant.")
                    .reply::<chat_domain::model::Tenant>(200, "The tenant (secrets redacted).")
                    .errors(&[400, 401, 403, 404, 503]),
            )
            .patch(
                admin::update_tenant,
                op("Update a tenant")
                    .describe("The fields given replace the stored ones; unknown fields are `400`. A JWT issuer another tenant registered is `409`.")
                    .operator()
                    .path_id::<chat_domain::ids::TenantId>("tenant_id", "The tenant.")
                    .json::<admin::Settings>()
                    .reply::<chat_domain::model::Tenant>(200, "The tenant, updated.")
                    .errors(&[400, 401, 403, 404, 409, 413, 503]),
            )
        })
        .at(&["/admin/tenants/{tenant_id}/rotate-key"], |r| {
            r.post(
                admin::rotate_key,
                op("Rotate a tenant's API key")
                    .describe("Issues a new key (shown this once) and revokes the previous ones; their user tokens stop working too.")
                    .operator()
                    .path_id::<chat_domain::ids::TenantId>("tenant_id", "The tenant.")
                    .reply::<<RotateKey as Command>::Reply>(200, "The new key.")
                    .errors(&[400, 401, 403, 404, 503]),
            )
        })
        .tagged("Settings")
        .at(&["/settings"], |r| {
            r.get(
                settings::get,
                op("The tenant's settings")
                    .describe("HS256 secrets are never shown: `secret_set: true` stands for one.")
                    .tenant()
                    .reply::<TenantSettings>(200, "The settings in force.")
                    .errors(&[401, 503]),
            )
            .put(
                settings::put,
                op("Replace the tenant's settings")
                    .describe("Keys left out go back to their defaults; unknown keys are `400`. An issuer written back without `secret` keeps the stored one; one another tenant registered is `409`.")
                    .tenant()
                    .json::<TenantSettingsPatch>()
                    .reply::<TenantSettings>(200, "The settings in force.")
                    .errors(&[400, 401, 409, 413, 503]),
            )
            .patch(
                settings::update,
                op("Change some of the tenant's settings")
                    .describe("The keys given replace the stored ones (`null` resets one to its default); the rest stay. Unknown keys are `400`; an issuer another tenant registered is `409`.")
                    .tenant()
                    .json::<TenantSettingsPatch>()
                    .reply::<TenantSettings>(200, "The settings in force.")
                    .errors(&[400, 401, 409, 413, 503]),
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
