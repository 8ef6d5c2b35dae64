//! The commands presence answers: `connect`, `online`, `tenant_online`, `typing`,
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
    Connect, Connected, ErasePresence, GetOnline, GetTenantOnline, Online, OnlineHistory, PresenceErased, RoomHistory,
    SetTyping,
};
use chat_redis::Redis;

use crate::Ctx;
use crate::redis_state::now_ms;

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

pub async fn connect(ctx: Ctx, cmd: Connect) -> Result<Connected, ApiError> {
    check_conn_id(&cmd.conn_id)?;
    let name = cmd.user_name.as_deref().map(|n| n.chars().take(100).collect::<String>());
    let registered = ctx
        .state
        .connect(&cmd.tenant_id, &cmd.room_id, &cmd.user_id, name.as_deref(), &cmd.gateway_id, &cmd.conn_id, now_ms())
        .await
        .map_err(redis_error)?;
    if registered.previous_ended {
        // Their grace ran out just before this socket: they left, then came back.
        let change = PresenceChange { user_id: cmd.user_id.clone(), user_name: name.clone() };
        ctx.announce(&cmd.tenant_id, &cmd.room_id, RoomEventBody::PresenceLeft(change)).await;
    }
    if registered.first {
        let change = PresenceChange { user_id: cmd.user_id.clone(), user_name: name };
        ctx.announce(&cmd.tenant_id, &cmd.room_id, RoomEventBody::PresenceJoined(change)).await;
    }
    Ok(Connected { online_users: parse_users(registered.online), first_connection: registered.first })
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
