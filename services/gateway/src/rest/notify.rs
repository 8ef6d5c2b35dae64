//! Notifications: `POST /notify`, topic subscriptions, the caller's inbox, and the
//! dead-letter admin endpoints. All answered by the notification service.

use actix_web::{HttpResponse, web};
use chat_domain::ApiError;
use chat_domain::ids::{RoomId, TenantId, UserId};
use chat_domain::proto::notify::{
    ListDeadLetters, ListInbox, ListSubscriptions, MAX_TOPIC_CHARS, Notify, RetryDeadLetter, Subscribe, Targets,
    Unsubscribe,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::extract::{Body, Cx, IdSegment, Page, Part, QueryString, Rest, Topic};
use super::{room_id, tenant_id, user_id};
use crate::AppState;
use crate::body::{Query, field};
use crate::caller::{Acting, Admin, Caller};
use crate::error::HttpResult;

/// The body of `POST /notify`.
#[derive(Deserialize, JsonSchema)]
pub struct NewNotification {
    /// What it is about, e.g. `order.shipped`.
    #[schemars(with = "String", required, length(min = 1, max = MAX_TOPIC_CHARS))]
    topic: Option<Value>,
    /// What the recipients get (a JSON object, at most 16 KiB serialized); `{}` when absent.
    #[schemars(with = "Option<serde_json::Map<String, Value>>")]
    payload: Option<Value>,
    /// Who gets it (all of the targets given, together); the whole tenant when absent.
    #[schemars(with = "Option<TargetsBody>")]
    targets: Option<Value>,
}

/// `targets` of `POST /notify`.
#[derive(Deserialize, Default, JsonSchema)]
#[schemars(rename = "NotifyTargets")]
struct TargetsBody {
    /// These users.
    #[schemars(with = "Option<Vec<UserId>>")]
    user_ids: Option<Value>,
    /// The members of this room.
    #[schemars(with = "Option<RoomId>")]
    room_id: Option<Value>,
    /// The users subscribed to the topic.
    #[schemars(with = "Option<bool>")]
    topic_subscribers: Option<Value>,
}

/// `POST /notify`: the whole tenant's, no user needed.
pub struct NotifyRequest {
    tenant_id: TenantId,
    body: NewNotification,
}

impl Part for NotifyRequest {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        let (caller, Body(body)) = <(Caller, Body<NewNotification>)>::read(cx).await?;
        Ok(Self { tenant_id: caller.tenant.tenant_id, body })
    }
}

impl TryFrom<TargetsBody> for Targets {
    type Error = ApiError;

    fn try_from(t: TargetsBody) -> Result<Self, ApiError> {
        let user_ids = match t.user_ids.filter(|v| !v.is_null()) {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|u| u.as_str().ok_or_else(|| ApiError::validation("targets.user_ids", "user ids are strings")))
                .map(|u| u.and_then(|u| user_id("targets.user_ids", u)))
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => {
                return Err(ApiError::validation("targets.user_ids", "targets.user_ids must be an array of user ids"));
            }
        };
        let room = match t.room_id.filter(|v| !v.is_null()) {
            None => None,
            Some(Value::String(r)) => Some(room_id(&r)?),
            Some(_) => return Err(ApiError::validation("targets.room_id", "targets.room_id must be a string")),
        };
        let topic_subscribers = match t.topic_subscribers.filter(|v| !v.is_null()) {
            None => false,
            Some(Value::Bool(b)) => b,
            Some(_) => {
                return Err(ApiError::validation(
                    "targets.topic_subscribers",
                    "targets.topic_subscribers must be a boolean",
                ));
            }
        };
        Ok(Targets { user_ids, room_id: room, topic_subscribers })
    }
}

impl TryFrom<NotifyRequest> for Notify {
    type Error = ApiError;

    fn try_from(NotifyRequest { tenant_id, body }: NotifyRequest) -> Result<Self, ApiError> {
        let topic = field::required_str("topic", body.topic)?;
        let payload = field::optional_object("payload", body.payload)?.unwrap_or_else(|| json!({}));
        let targets = match field::optional_object("targets", body.targets)? {
            None => Targets::default(),
            Some(t) => Targets::try_from(serde_json::from_value::<TargetsBody>(t).unwrap_or_default())?,
        };
        Ok(Notify { tenant_id, topic, payload, targets })
    }
}

/// `POST /notify` `{"topic","payload","targets":{"user_ids","room_id","topic_subscribers"}}`
/// → `202 {"notification_id","created_at","recipients"}`. No targets: the whole tenant.
pub async fn notify(Rest(req): Rest<NotifyRequest>, state: web::Data<AppState>) -> HttpResult {
    let n = state.bus.request(&Notify::try_from(req)?).await?;
    Ok(HttpResponse::Accepted().json(n))
}

/// The body of `POST /subscriptions`.
#[derive(Deserialize, JsonSchema)]
pub struct NewSubscription {
    /// The topic to get notifications of (`targets.topic_subscribers` of `POST /notify`).
    #[schemars(with = "String", required, length(min = 1, max = MAX_TOPIC_CHARS), example = &"order.shipped")]
    topic: Option<Value>,
}

/// The answer of `POST /subscriptions`.
#[derive(Serialize, JsonSchema)]
pub struct Subscribed {
    topic: String,
    /// Always `true` (subscribing twice is no error).
    #[schemars(extend("const" = true))]
    subscribed: bool,
}

pub async fn subscribe(
    Rest((Acting(actor), Body(body))): Rest<(Acting, Body<NewSubscription>)>,
    state: web::Data<AppState>,
) -> HttpResult {
    let topic = field::required_str("topic", body.topic)?;
    state.bus.request(&Subscribe { tenant_id: actor.tenant_id, user_id: actor.user_id, topic: topic.clone() }).await?;
    Ok(HttpResponse::Created().json(Subscribed { topic, subscribed: true }))
}

/// The caller's topics.
#[derive(Serialize, JsonSchema)]
pub struct Topics {
    /// Sorted.
    topics: Vec<String>,
}

pub async fn list_subscriptions(Rest(Acting(actor)): Rest<Acting>, state: web::Data<AppState>) -> HttpResult {
    let topics = state.bus.request(&ListSubscriptions { tenant_id: actor.tenant_id, user_id: actor.user_id }).await?;
    Ok(HttpResponse::Ok().json(Topics { topics }))
}

pub async fn unsubscribe(
    Rest((Acting(actor), Topic(topic))): Rest<(Acting, Topic)>,
    state: web::Data<AppState>,
) -> HttpResult {
    state.bus.request(&Unsubscribe { tenant_id: actor.tenant_id, user_id: actor.user_id, topic }).await?;
    Ok(HttpResponse::Ok().json(super::SUCCESS))
}

/// `GET /notifications?limit=&offset=`: the caller's inbox, newest first.
pub async fn inbox(Rest((Acting(actor), page)): Rest<(Acting, Page)>, state: web::Data<AppState>) -> HttpResult {
    let cmd = ListInbox { tenant_id: actor.tenant_id, user_id: actor.user_id, limit: page.limit, offset: page.offset };
    Ok(HttpResponse::Ok().json(state.bus.request(&cmd).await?))
}

/// The query of `GET /admin/dead-letters`.
#[derive(JsonSchema)]
pub struct DeadLetterQuery {
    /// Whose dead letters.
    pub tenant_id: TenantId,
    /// Most dead letters of each kind returned.
    #[schemars(default = "super::default_limit", range(min = 1, max = 1000))]
    pub limit: u32,
}

impl TryFrom<&Query> for DeadLetterQuery {
    type Error = ApiError;

    fn try_from(q: &Query) -> Result<Self, ApiError> {
        let raw = q.get_str("tenant_id").ok_or_else(|| ApiError::validation("tenant_id", "tenant_id is required"))?;
        Ok(DeadLetterQuery {
            tenant_id: tenant_id(raw)?,
            limit: q.int("limit", 1, 1000)?.map_or(super::default_limit(), |n| n as u32),
        })
    }
}

/// `GET /admin/dead-letters?tenant_id=&limit=` (limit default 50, max 1000).
pub async fn dead_letters(
    Rest((Admin, QueryString(q))): Rest<(Admin, QueryString)>,
    state: web::Data<AppState>,
) -> HttpResult {
    let DeadLetterQuery { tenant_id, limit } = DeadLetterQuery::try_from(&q)?;
    Ok(HttpResponse::Ok().json(state.bus.request(&ListDeadLetters { tenant_id, limit }).await?))
}

/// `POST /admin/dead-letters/{id}/retry`: replay one dead letter.
pub async fn retry_dead_letter(
    Rest((Admin, IdSegment(id))): Rest<(Admin, IdSegment)>,
    state: web::Data<AppState>,
) -> HttpResult {
    state.bus.request(&RetryDeadLetter { id }).await?;
    Ok(HttpResponse::Accepted().json(super::SUCCESS))
}
