//! Notifications: `POST /notify`, topic subscriptions, the caller's inbox, and the
//! dead-letter admin endpoints. All answered by the notification service.

use actix_web::{HttpResponse, web};
use chat_domain::ApiError;
use chat_domain::ids::{RoomId, TenantId, UserId};
use chat_domain::proto::notify::{
    ListDeadLetters, ListInbox, ListSubscriptions, MAX_NOTIFY_USER_IDS, MAX_TOPIC_CHARS, Notify, RetryDeadLetter,
    Subscribe, Targets, Unsubscribe,
};
use chat_domain::proto::store::TenantAuth;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use chat_domain::proto::Command;
use gateway_core::Core;
use gateway_core::body::{Query, field};
use gateway_core::caller::{Acting, Admin, Caller};
use gateway_core::error::HttpResult;
use gateway_core::extract::{Body, Cx, IdSegment, Page, Part, QueryString, Rest, Topic};
use gateway_core::extract::{room_id, tenant_id, user_id};
use gateway_core::routes::{Mount, op};

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
    /// These users: at most 1,000, each counted against the tenant's rate limit.
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
    tenant: TenantAuth,
    body: NewNotification,
}

impl Part for NotifyRequest {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        let (caller, Body(body)) = <(Caller, Body<NewNotification>)>::read(cx).await?;
        Ok(Self { tenant: caller.tenant, body })
    }
}

impl TryFrom<TargetsBody> for Targets {
    type Error = ApiError;

    fn try_from(t: TargetsBody) -> Result<Self, ApiError> {
        let user_ids = match t.user_ids.filter(|v| !v.is_null()) {
            None => Vec::new(),
            Some(Value::Array(items)) if items.len() > MAX_NOTIFY_USER_IDS => {
                return Err(ApiError::validation(
                    "targets.user_ids",
                    format!("targets.user_ids must name at most {MAX_NOTIFY_USER_IDS} users"),
                ));
            }
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

    fn try_from(NotifyRequest { tenant, body }: NotifyRequest) -> Result<Self, ApiError> {
        let tenant_id = tenant.tenant_id;
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
///
/// Every recipient counts against the tenant's rate limit, not only the request: the
/// users named in `targets.user_ids` before anything is stored (`429` when they do not
/// fit in what is left of the second), the ones found from a room, a topic or the
/// whole tenant once the notification is stored (so the calls after it wait).
pub async fn notify(Rest(req): Rest<NotifyRequest>, state: web::Data<Core>) -> HttpResult {
    let tenant = req.tenant.clone();
    let cmd = Notify::try_from(req)?;
    // Admission counted the request as one recipient.
    let named = cmd.targets.user_ids.len();
    if let Some(refused) = charge(&state, &tenant, named.saturating_sub(1)).await {
        return Err(gateway_core::admit::rate_limited(&refused).into());
    }
    let n = state.bus.request(&cmd).await?;
    let found = usize::try_from(n.recipients).unwrap_or(usize::MAX).saturating_sub(named.max(1));
    let _ = charge(&state, &tenant, found).await;
    Ok(HttpResponse::Accepted().json(n))
}

/// Counts `n` more requests of `tenant`; the first refusal, if the limit ran out.
async fn charge(state: &Core, tenant: &TenantAuth, n: usize) -> Option<gateway_core::ratelimit::Decision> {
    for _ in 0..n {
        let decision = gateway_core::admit::count(state, tenant).await;
        if !decision.allowed {
            return Some(decision);
        }
    }
    None
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
    state: web::Data<Core>,
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

pub async fn list_subscriptions(Rest(Acting(actor)): Rest<Acting>, state: web::Data<Core>) -> HttpResult {
    let topics = state.bus.request(&ListSubscriptions { tenant_id: actor.tenant_id, user_id: actor.user_id }).await?;
    Ok(HttpResponse::Ok().json(Topics { topics }))
}

pub async fn unsubscribe(
    Rest((Acting(actor), Topic(topic))): Rest<(Acting, Topic)>,
    state: web::Data<Core>,
) -> HttpResult {
    state.bus.request(&Unsubscribe { tenant_id: actor.tenant_id, user_id: actor.user_id, topic }).await?;
    Ok(HttpResponse::Ok().json(crate::success::SUCCESS))
}

/// `GET /notifications?limit=&offset=`: the caller's inbox, newest first.
pub async fn inbox(Rest((Acting(actor), page)): Rest<(Acting, Page)>, state: web::Data<Core>) -> HttpResult {
    let cmd = ListInbox { tenant_id: actor.tenant_id, user_id: actor.user_id, limit: page.limit, offset: page.offset };
    Ok(HttpResponse::Ok().json(state.bus.request(&cmd).await?))
}

/// The query of `GET /admin/dead-letters`.
#[derive(JsonSchema)]
pub struct DeadLetterQuery {
    /// Whose dead letters.
    pub tenant_id: TenantId,
    /// Most dead letters of each kind returned.
    #[schemars(default = "gateway_core::extract::default_limit", range(min = 1, max = 1000))]
    pub limit: u32,
}

impl TryFrom<&Query> for DeadLetterQuery {
    type Error = ApiError;

    fn try_from(q: &Query) -> Result<Self, ApiError> {
        let raw = q.get_str("tenant_id").ok_or_else(|| ApiError::validation("tenant_id", "tenant_id is required"))?;
        Ok(DeadLetterQuery {
            tenant_id: tenant_id(raw)?,
            limit: q.int("limit", 1, 1000)?.map_or(gateway_core::extract::default_limit(), |n| n as u32),
        })
    }
}

/// `GET /admin/dead-letters?tenant_id=&limit=` (limit default 50, max 1000).
pub async fn dead_letters(
    Rest((Admin, QueryString(q))): Rest<(Admin, QueryString)>,
    state: web::Data<Core>,
) -> HttpResult {
    let DeadLetterQuery { tenant_id, limit } = DeadLetterQuery::try_from(&q)?;
    Ok(HttpResponse::Ok().json(state.bus.request(&ListDeadLetters { tenant_id, limit }).await?))
}

/// `POST /admin/dead-letters/{id}/retry`: replay one dead letter.
pub async fn retry_dead_letter(
    Rest((Admin, IdSegment(id))): Rest<(Admin, IdSegment)>,
    state: web::Data<Core>,
) -> HttpResult {
    state.bus.request(&RetryDeadLetter { id }).await?;
    Ok(HttpResponse::Accepted().json(crate::success::SUCCESS))
}

/// The routes of notifications, topics, the inbox and dead letters, each with its documentation.
pub(crate) fn routes(m: &mut Mount) {
    m.tagged("Notifications")
.at(&["/notify"], |r| {
            r.post(
                notify,
                op("Send a notification")
                    .describe("To users, a room's members and/or a topic's subscribers (no targets: the whole tenant). Online recipients get it live, everyone finds it in their inbox, and offline ones are told through the tenant's webhook.")
                    .tenant()
                    .json_example::<NewNotification>(json!({
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
                subscribe,
                op("Subscribe to a topic")
                    .describe("Subscribing again is no error.")
                    .user()
                    .json::<NewSubscription>()
                    .reply::<Subscribed>(201, "Subscribed.")
                    .errors(&[400, 401, 403, 413, 503]),
            )
            .get(
                list_subscriptions,
                op("List the caller's subscriptions")
                    .user()
                    .reply::<Topics>(200, "The caller's topics.")
                    .errors(&[400, 401, 403, 503]),
            )
        })
        .at(&["/subscriptions/{topic}"], |r| {
            r.delete(
                unsubscribe,
                op("Unsubscribe from a topic")
                    .user()
                    .path_param("topic", "The topic.")
                    .reply::<crate::success::Success>(200, "Unsubscribed.")
                    .errors(&[400, 401, 403, 404, 503]),
            )
        })
        .at(&["/notifications"], |r| {
            r.get(
                inbox,
                op("The caller's inbox")
                    .describe("Notifications, and messages that arrived while the caller was away; newest first.")
                    .user()
                    .query::<gateway_core::extract::Page>()
                    .reply::<<ListInbox as Command>::Reply>(200, "A page of the inbox.")
                    .errors(&[400, 401, 403, 503]),
            )
        })
        .at(&["/admin/dead-letters"], |r| {
            r.get(
                dead_letters,
                op("List webhook dead letters")
                    .describe("A tenant's webhook deliveries that ran out of attempts, newest first.")
                    .operator()
                    .query::<DeadLetterQuery>()
                    .reply::<<ListDeadLetters as Command>::Reply>(200, "The dead letters, by what failed.")
                    .errors(&[400, 401, 403, 503]),
            )
        })
        .at(&["/admin/dead-letters/{id}/retry"], |r| {
            r.post(
                retry_dead_letter,
                op("Replay a dead letter")
                    .describe("Its delivery starts over with a fresh attempt budget.")
                    .operator()
                    .path_param("id", "The dead letter's `id` (from the list).")
                    .reply::<crate::success::Success>(202, "Delivery starts again.")
                    .errors(&[401, 403, 404, 503]),
            )
        });
}
