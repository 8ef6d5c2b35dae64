//! The commands presence answers: `connect`, `connect_many`, `online`, `tenant_online`, `typing`,
//! `online_history` and `health`. Each validates what the wire types cannot, asks
//! `redis_state`, and announces what changed on the room's event subject.

use std::collections::BTreeMap;
use std::time::Duration;

use chat_domain::ApiError;
use chat_domain::ids::UserId;
use chat_domain::proto::Done;
use chat_domain::proto::events::{PresenceChange, RoomEventBody, TypingChange};
use chat_domain::proto::health::{Health, ServiceHealth};
use chat_domain::proto::presence::{
    Connect, ConnectMany, Connected, ConnectedMany, ErasePresence, GetOnline, GetTenantOnline, MAX_CONNECT_MANY,
    Online, OnlineHistory, PresenceErased, RoomHistory, SetTyping,
};
use chat_redis::Redis;

use crate::Ctx;
use crate::redis_state::{Announced, now_ms};

/// Most spans one `online_history` request may ask about (it is answered in one
/// Redis round trip, and the reply must fit in a bus message).
pub const MAX_SPANS: usize = 2_000;

/// Longest accepted connection id (the gateway's id and a counter are far shorter).
const MAX_CONN_ID: usize = 200;

fn redis_error(e: redis::RedisError) -> ApiError {
    tracing::warn!(error = %e, "redis failed");
    ApiError::unavailable("Presence store unavailable")
}

fn parse_users(users: Vec<String>) -> Vec<UserId> {
    users.into_iter().filter_map(|u| UserId::parse(u).ok()).collect()
}

/// A connection id is free text from the gateway; it ends up inside Redis members.
fn check_conn_id(conn_id: &str) -> Result<(), ApiError> {
    if conn_id.is_empty() || conn_id.len() > MAX_CONN_ID || conn_id.chars().any(char::is_control) {
        return Err(ApiError::validation(
            "conn_id",
            format!("conn_id must be 1 to {MAX_CONN_ID} characters without control characters"),
        ));
    }
    Ok(())
}

/// A display name as presence keeps it (at most 100 characters).
fn short_name(name: Option<&str>) -> Option<String> {
    name.map(|n| n.chars().take(100).collect::<String>())
}

pub async fn connect(ctx: Ctx, cmd: Connect) -> Result<Connected, ApiError> {
    check_conn_id(&cmd.conn_id)?;
    let name = short_name(cmd.user_name.as_deref());
    let registered = ctx
        .state
        .connect(&cmd.tenant_id, &cmd.room_id, &cmd.user_id, name.as_deref(), &cmd.gateway_id, &cmd.conn_id, now_ms())
        .await
        .map_err(redis_error)?;
    let big = ctx.state.is_big(registered.users);
    // A big room's arrivals and departures are not announced one by one: each would
    // reach every member (O(n²) frames for n arrivals). Its members read the list.
    if !big {
        if registered.previous_ended {
            // Their grace ran out just before this socket: they left, then came back.
            let change = PresenceChange { user_id: cmd.user_id.clone(), user_name: name.clone() };
            ctx.announce(&cmd.tenant_id, &cmd.room_id, RoomEventBody::PresenceLeft(change)).await;
        }
        if registered.first {
            let change = PresenceChange { user_id: cmd.user_id.clone(), user_name: name };
            ctx.announce(&cmd.tenant_id, &cmd.room_id, RoomEventBody::PresenceJoined(change)).await;
        }
    }
    let online_users = if big { vec![cmd.user_id.clone()] } else { parse_users(registered.online) };
    Ok(Connected { online_users, first_connection: registered.first, total_online: registered.users, big_room: big })
}

/// A gateway's sockets announced again in one request (and one Redis call).
pub async fn connect_many(ctx: Ctx, cmd: ConnectMany) -> Result<ConnectedMany, ApiError> {
    if cmd.sockets.len() > MAX_CONNECT_MANY {
        return Err(ApiError::validation("sockets", format!("at most {MAX_CONNECT_MANY} sockets per request")));
    }
    for (i, s) in cmd.sockets.iter().enumerate() {
        check_conn_id(&s.conn_id).map_err(|e| ApiError::validation(format!("sockets[{i}].conn_id"), e.message))?;
    }
    let names: Vec<Option<String>> = cmd.sockets.iter().map(|s| short_name(s.user_name.as_deref())).collect();
    let announced: Vec<Announced<'_>> = cmd
        .sockets
        .iter()
        .zip(&names)
        .map(|(s, name)| Announced {
            tenant: &s.tenant_id,
            room: &s.room_id,
            user: &s.user_id,
            name: name.as_deref(),
            conn: &s.conn_id,
        })
        .collect();
    let found = ctx.state.connect_many(&cmd.gateway_id, &announced, now_ms()).await.map_err(redis_error)?;
    let mut came_online = 0;
    for ((s, name), registered) in cmd.sockets.iter().zip(names).zip(&found) {
        if registered.first {
            came_online += 1;
        }
        if ctx.state.is_big(registered.users) {
            continue;
        }
        if registered.previous_ended {
            let change = PresenceChange { user_id: s.user_id.clone(), user_name: name.clone() };
            ctx.announce(&s.tenant_id, &s.room_id, RoomEventBody::PresenceLeft(change)).await;
        }
        if registered.first {
            let change = PresenceChange { user_id: s.user_id.clone(), user_name: name };
            ctx.announce(&s.tenant_id, &s.room_id, RoomEventBody::PresenceJoined(change)).await;
        }
    }
    Ok(ConnectedMany { registered: found.len() as u64, came_online })
}

pub async fn online(ctx: Ctx, cmd: GetOnline) -> Result<Online, ApiError> {
    let users = ctx.state.online(&cmd.tenant_id, &cmd.room_id, now_ms()).await.map_err(redis_error)?;
    Ok(Online { online_users: parse_users(users) })
}

pub async fn tenant_online(ctx: Ctx, cmd: GetTenantOnline) -> Result<Online, ApiError> {
    let users = ctx.state.tenant_online(&cmd.tenant_id, now_ms()).await.map_err(redis_error)?;
    Ok(Online { online_users: parse_users(users) })
}

pub async fn typing(ctx: Ctx, cmd: SetTyping) -> Result<Done, ApiError> {
    let changed = ctx
        .state
        .typing(
            &cmd.tenant_id,
            &cmd.room_id,
            &cmd.user_id,
            cmd.user_name.as_deref(),
            cmd.is_typing,
            Ctx::ms(ctx.config.typing_ttl),
            now_ms(),
        )
        .await
        .map_err(redis_error)?;
    if changed {
        let change = TypingChange { user_id: cmd.user_id, user_name: cmd.user_name, is_typing: cmd.is_typing };
        ctx.announce(&cmd.tenant_id, &cmd.room_id, RoomEventBody::Typing(change)).await;
    }
    Ok(Done {})
}

pub async fn online_history(ctx: Ctx, cmd: OnlineHistory) -> Result<Vec<RoomHistory>, ApiError> {
    if cmd.spans.len() > MAX_SPANS {
        return Err(ApiError::validation("spans", format!("at most {MAX_SPANS} spans per request")));
    }
    if let Some(i) = cmd.spans.iter().position(|s| s.from > s.to) {
        return Err(ApiError::validation(format!("spans[{i}]"), "a span's from must not be after its to"));
    }
    if cmd.spans.is_empty() {
        return Ok(Vec::new());
    }
    ctx.state.history(&cmd.spans, now_ms()).await.map_err(redis_error)
}

/// `erase`: a tenant's or one user's presence removed from Redis (issue 25, finding 8).
pub async fn erase(ctx: Ctx, cmd: ErasePresence) -> Result<PresenceErased, ApiError> {
    let removed = ctx.state.erase(&cmd.tenant_id, cmd.user_id.as_ref()).await.map_err(redis_error)?;
    Ok(PresenceErased { removed })
}

pub async fn ping(mut redis: Redis) -> bool {
    let pong = tokio::time::timeout(Duration::from_secs(2), redis::cmd("PING").query_async::<String>(&mut redis)).await;
    matches!(pong, Ok(Ok(ref p)) if p == "PONG")
}

pub async fn health(ctx: Ctx, _: Health) -> Result<ServiceHealth, ApiError> {
    let checks = BTreeMap::from([("redis".to_owned(), ping(ctx.redis.clone()).await)]);
    Ok(ServiceHealth::new("presence", &ctx.instance, ctx.started.elapsed().as_secs(), checks))
}
