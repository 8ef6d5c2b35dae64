//! Notifications: `POST /notify`, topic subscriptions, the caller's inbox, and the
//! dead-letter admin endpoints. All answered by the notification service.

use actix_web::{HttpRequest, HttpResponse, web};
use chat_domain::ApiError;
use chat_domain::proto::notify::{
    ListDeadLetters, ListInbox, ListSubscriptions, Notify, RetryDeadLetter, Subscribe, Targets, Unsubscribe,
};
use serde_json::json;

use super::{page, room_id, tenant_id, user_id};
use crate::AppState;
use crate::body::{Fields, Query};
use crate::caller::{Admin, Caller};
use crate::error::HttpResult;

/// `POST /notify` `{"topic","payload","targets":{"user_ids","room_id","topic_subscribers"}}`
/// → `202 {"notification_id","created_at","recipients"}`. No targets: the whole tenant.
pub async fn notify(req: HttpRequest, body: web::Payload, caller: Caller, state: web::Data<AppState>) -> HttpResult {
    let f = Fields::read(&req, body, state.max_body_bytes).await?;
    let topic = f.required_str("topic")?.to_owned();
    let payload = f.optional_object("payload")?.unwrap_or_else(|| json!({}));
    let targets = match f.optional_object("targets")? {
        None => Targets::default(),
        Some(t) => {
            let users = match t.get("user_ids").filter(|v| !v.is_null()) {
                None => Vec::new(),
                Some(v) => v
                    .as_array()
                    .ok_or_else(|| {
                        ApiError::validation("targets.user_ids", "targets.user_ids must be an array of user ids")
                    })?
                    .iter()
                    .map(|u| u.as_str().ok_or_else(|| ApiError::validation("targets.user_ids", "user ids are strings")))
                    .map(|u| u.and_then(|u| user_id("targets.user_ids", u)))
                    .collect::<Result<Vec<_>, _>>()?,
            };
            let room = match t.get("room_id").filter(|v| !v.is_null()) {
                None => None,
                Some(v) => Some(room_id(
                    v.as_str()
                        .ok_or_else(|| ApiError::validation("targets.room_id", "targets.room_id must be a string"))?,
                )?),
            };
            let subscribers = match t.get("topic_subscribers").filter(|v| !v.is_null()) {
                None => false,
                Some(v) => v.as_bool().ok_or_else(|| {
                    ApiError::validation("targets.topic_subscribers", "targets.topic_subscribers must be a boolean")
                })?,
            };
            Targets { user_ids: users, room_id: room, topic_subscribers: subscribers }
        }
    };
    let cmd = Notify { tenant_id: caller.tenant.tenant_id.clone(), topic, payload, targets };
    let n = state.bus.request(&cmd).await?;
    Ok(HttpResponse::Accepted().json(n))
}

pub async fn subscribe(req: HttpRequest, body: web::Payload, caller: Caller, state: web::Data<AppState>) -> HttpResult {
    let actor = caller.actor()?;
    let f = Fields::read(&req, body, state.max_body_bytes).await?;
    let topic = f.required_str("topic")?.to_owned();
    state.bus.request(&Subscribe { tenant_id: actor.tenant_id, user_id: actor.user_id, topic: topic.clone() }).await?;
    Ok(HttpResponse::Created().json(json!({"topic": topic, "subscribed": true})))
}

pub async fn list_subscriptions(caller: Caller, state: web::Data<AppState>) -> HttpResult {
    let actor = caller.actor()?;
    let topics = state.bus.request(&ListSubscriptions { tenant_id: actor.tenant_id, user_id: actor.user_id }).await?;
    Ok(HttpResponse::Ok().json(json!({"topics": topics})))
}

pub async fn unsubscribe(path: web::Path<String>, caller: Caller, state: web::Data<AppState>) -> HttpResult {
    let actor = caller.actor()?;
    let cmd = Unsubscribe { tenant_id: actor.tenant_id, user_id: actor.user_id, topic: path.into_inner() };
    state.bus.request(&cmd).await?;
    Ok(HttpResponse::Ok().json(json!({"success": true})))
}

/// `GET /notifications?limit=&offset=`: the caller's inbox, newest first.
pub async fn inbox(req: HttpRequest, caller: Caller, state: web::Data<AppState>) -> HttpResult {
    let actor = caller.actor()?;
    let (limit, offset) = page(&Query::parse(&req)?)?;
    let items =
        state.bus.request(&ListInbox { tenant_id: actor.tenant_id, user_id: actor.user_id, limit, offset }).await?;
    Ok(HttpResponse::Ok().json(items))
}

/// `GET /admin/dead-letters?tenant_id=&limit=` (limit default 50, max 1000).
pub async fn dead_letters(req: HttpRequest, _: Admin, state: web::Data<AppState>) -> HttpResult {
    let q = Query::parse(&req)?;
    let tenant =
        tenant_id(q.get_str("tenant_id").ok_or_else(|| ApiError::validation("tenant_id", "tenant_id is required"))?)?;
    let limit = q.int("limit", 1, 1000)?.unwrap_or(50) as u32;
    Ok(HttpResponse::Ok().json(state.bus.request(&ListDeadLetters { tenant_id: tenant, limit }).await?))
}

/// `POST /admin/dead-letters/{id}/retry`: replay one dead letter.
pub async fn retry_dead_letter(path: web::Path<String>, _: Admin, state: web::Data<AppState>) -> HttpResult {
    state.bus.request(&RetryDeadLetter { id: path.into_inner() }).await?;
    Ok(HttpResponse::Accepted().json(json!({"success": true})))
}
