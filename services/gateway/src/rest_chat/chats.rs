//! Chats: `POST /api/chat` (direct, group), `POST /api/chat/purchase-request` and
//! `POST /api/chat/context` (context chats), `POST /api/chat/support`, `GET /api/chat`,
//! `GET /api/chat/stats`, `GET /api/chat/:id/info`, `PATCH /api/chat/:id/archive`.

use actix_web::http::StatusCode;
use actix_web::web;
use chat_domain::ApiError;
use chat_domain::ids::UserId;
use chat_domain::model::{Actor, MessageContent, MessageKind};
use chat_domain::proto::chat::{
    ChatContext, ChatType, CreateChat, GetChat, GetChatStats, ListChats, MAX_CHAT_PAGE, NewChatKind, ToggleArchive,
};
use chat_domain::proto::store::SendMessage;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ChatResult, ok};
use super::extract::{ChatCaller, ChatRest, InChat};
use super::render;
use crate::AppState;
use crate::body::{Query, field};
use crate::rest::extract::{Body, Cx, MaybeBody, Part, QueryString, parts};

/// The context type of `POST /api/chat/purchase-request` chats.
pub(crate) const PURCHASE_REQUEST: &str = "purchase_request";

/// Default and largest page of `GET /api/chat`.
const DEFAULT_LIMIT: i64 = 20;

fn participant_ids(v: Option<Value>) -> Result<Vec<UserId>, ApiError> {
    let raw = field::optional_str_array("participantIds", v)?
        .ok_or_else(|| ApiError::validation("participantIds", "participantIds is required"))?;
    raw.iter().map(|p| crate::rest::user_id("participantIds", p)).collect()
}

/// `{chat}` with 201 when the call created it, else 200.
fn created(state: &AppState, created: chat_domain::proto::chat::ChatCreated) -> actix_web::HttpResponse {
    let status = if created.created { StatusCode::CREATED } else { StatusCode::OK };
    ok(status, json!({"chat": render::chat(&created.chat, &render::links(state))}))
}

/// The body of `POST /api/chat`.
#[derive(Deserialize)]
pub(crate) struct NewChat {
    #[serde(rename = "participantIds")]
    participant_ids: Option<Value>,
    #[serde(rename = "type")]
    chat_type: Option<Value>,
    title: Option<Value>,
    metadata: Option<Value>,
}

/// `POST /api/chat`.
pub(crate) struct NewChatRequest {
    caller: ChatCaller,
    body: NewChat,
}

impl Part for NewChatRequest {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        let (caller, Body(body)) = parts(cx).await?;
        Ok(Self { caller, body })
    }
}

impl TryFrom<NewChatRequest> for CreateChat {
    type Error = ApiError;

    fn try_from(NewChatRequest { caller, body }: NewChatRequest) -> Result<Self, ApiError> {
        let kind = match field::optional_str("type", body.chat_type)?.as_deref() {
            None | Some("direct") => NewChatKind::Direct,
            Some("group") => NewChatKind::Group,
            Some(_) => return Err(ApiError::validation("type", "Invalid chat type. Must be one of: direct, group")),
        };
        let participants = participant_ids(body.participant_ids)?;
        // A direct chat has no title: it shows the other participant.
        let title = match kind {
            NewChatKind::Group => field::optional_str("title", body.title)?,
            _ => None,
        };
        let metadata = field::optional_object("metadata", body.metadata)?;
        Ok(CreateChat { actor: caller.actor, kind, participants, title, metadata })
    }
}

pub(crate) async fn create(ChatRest(req): ChatRest<NewChatRequest>, state: web::Data<AppState>) -> ChatResult {
    let done = state.bus.request(&CreateChat::try_from(req)?).await?;
    Ok(created(&state, done))
}

/// The body of `POST /api/chat/purchase-request`.
#[derive(Deserialize)]
pub(crate) struct NewPurchaseRequestChat {
    #[serde(rename = "purchaseRequestId")]
    purchase_request_id: Option<Value>,
    #[serde(rename = "sellerId")]
    seller_id: Option<Value>,
    title: Option<Value>,
    metadata: Option<Value>,
}

/// `POST /api/chat/purchase-request`: the caller (the buyer) and the seller, bound to
/// the purchase request (context type `purchase_request`).
pub(crate) async fn purchase_request(
    ChatRest((caller, Body(body))): ChatRest<(ChatCaller, Body<NewPurchaseRequestChat>)>,
    state: web::Data<AppState>,
) -> ChatResult {
    let id = field::required_str("purchaseRequestId", body.purchase_request_id)?;
    let context = ChatContext::parse("context", PURCHASE_REQUEST, &id)
        .map_err(|e| ApiError::validation("purchaseRequestId", e.message))?;
    let seller = crate::rest::user_id("sellerId", &field::required_str("sellerId", body.seller_id)?)?;
    let cmd = CreateChat {
        actor: caller.actor,
        kind: NewChatKind::Context(context),
        participants: vec![seller],
        title: field::optional_str("title", body.title)?,
        metadata: field::optional_object("metadata", body.metadata)?,
    };
    let done = state.bus.request(&cmd).await?;
    Ok(created(&state, done))
}

/// The body of `POST /api/chat/context`.
#[derive(Deserialize)]
pub(crate) struct NewContextChat {
    #[serde(rename = "contextType")]
    context_type: Option<Value>,
    #[serde(rename = "contextId")]
    context_id: Option<Value>,
    #[serde(rename = "participantIds")]
    participant_ids: Option<Value>,
    title: Option<Value>,
    metadata: Option<Value>,
}

/// `POST /api/chat/context`: the generic form of the purchase-request chat — one chat
/// per `(contextType, contextId)` of the tenant.
pub(crate) async fn context(
    ChatRest((caller, Body(body))): ChatRest<(ChatCaller, Body<NewContextChat>)>,
    state: web::Data<AppState>,
) -> ChatResult {
    let context_type = field::required_str("contextType", body.context_type)?;
    let context_id = field::required_str("contextId", body.context_id)?;
    let context = ChatContext::parse("context", &context_type, &context_id).map_err(|e| {
        let field = if e.field.as_deref() == Some("context.type") { "contextType" } else { "contextId" };
        ApiError::validation(field, e.message)
    })?;
    let participants = match body.participant_ids {
        Some(v) if !v.is_null() => participant_ids(Some(v))?,
        _ => Vec::new(),
    };
    let cmd = CreateChat {
        actor: caller.actor,
        kind: NewChatKind::Context(context),
        participants,
        title: field::optional_str("title", body.title)?,
        metadata: field::optional_object("metadata", body.metadata)?,
    };
    let done = state.bus.request(&cmd).await?;
    Ok(created(&state, done))
}

/// The body of `POST /api/chat/support`.
#[derive(Deserialize)]
pub(crate) struct NewSupportChat {
    subject: Option<Value>,
    #[serde(rename = "initialMessage")]
    initial_message: Option<Value>,
}

/// `POST /api/chat/support`: a new chat of the caller and the support pool; the
/// subject is its title, the initial message its first message (sent as any message
/// is, so every dialect's sockets see it).
pub(crate) async fn support(
    ChatRest((caller, MaybeBody(body))): ChatRest<(ChatCaller, MaybeBody<NewSupportChat>)>,
    state: web::Data<AppState>,
) -> ChatResult {
    let (subject, initial) = match body {
        Some(b) => {
            (field::optional_str("subject", b.subject)?, field::optional_str("initialMessage", b.initial_message)?)
        }
        None => (None, None),
    };
    let initial = initial
        .map(|m| MessageContent::parse(m).map_err(|e| ApiError::validation("initialMessage", e.message)))
        .transpose()?;
    let cmd = CreateChat {
        actor: caller.actor.clone(),
        kind: NewChatKind::Support,
        participants: Vec::new(),
        title: Some(subject.unwrap_or_else(|| "Support".to_owned())),
        metadata: None,
    };
    let mut done = state.bus.request(&cmd).await?;
    if let Some(content) = initial {
        let sent = state.sends.send(first_message(caller.actor, &done.chat.room.room_id, content)).await?;
        done.chat.last_activity_at = sent.message.created_at;
        done.chat.last_message = Some(sent.message);
    }
    Ok(created(&state, done))
}

fn first_message(actor: Actor, room_id: &chat_domain::ids::RoomId, content: MessageContent) -> SendMessage {
    SendMessage {
        actor,
        room_id: room_id.clone(),
        content,
        sender_name: None,
        meta: None,
        client_msg_id: None,
        kind: MessageKind::Text,
        reply_to: None,
        attachments: Vec::new(),
    }
}

/// `page` (from 1) and `limit` (1 to 100, `default`) of the dialect's lists.
pub(crate) fn page(q: &Query, default: i64) -> Result<(u32, u32), ApiError> {
    let page = q.int("page", 1, 1_000_000)?.unwrap_or(1) as u32;
    let limit = q.int("limit", 1, i64::from(MAX_CHAT_PAGE))?.unwrap_or(default) as u32;
    Ok((page, limit))
}

/// `{page, limit, total, pages}`.
pub(crate) fn pagination(page: u32, limit: u32, total: i64) -> Value {
    let pages = (total + i64::from(limit) - 1) / i64::from(limit);
    json!({"page": page, "limit": limit, "total": total, "pages": pages})
}

/// `GET /api/chat?page=&limit=&type=&archived=`: the caller's chats, the latest
/// message first, with unread counts. Archived chats are listed only with
/// `archived=true`.
pub(crate) async fn list(
    ChatRest((caller, QueryString(q))): ChatRest<(ChatCaller, QueryString)>,
    state: web::Data<AppState>,
) -> ChatResult {
    let (page, limit) = page(&q, DEFAULT_LIMIT)?;
    let chat_type = q.get_str("type").map(ChatType::parse).transpose()?;
    let archived = match q.get_str("archived") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::validation("archived", "archived must be true or false").into()),
    };
    let found = state.bus.request(&ListChats { actor: caller.actor, chat_type, archived, page, limit }).await?;
    let links = render::links(&state);
    let chats: Vec<Value> = found.chats.iter().map(|c| render::chat(c, &links)).collect();
    Ok(ok(StatusCode::OK, json!({"chats": chats, "pagination": pagination(page, limit, found.total)})))
}

/// `GET /api/chat/stats`.
pub(crate) async fn stats(ChatRest(caller): ChatRest<ChatCaller>, state: web::Data<AppState>) -> ChatResult {
    let s = state.bus.request(&GetChatStats { actor: caller.actor }).await?;
    Ok(ok(
        StatusCode::OK,
        json!({
            "totalChats": s.total_chats,
            "totalMessages": s.total_messages,
            "totalUnread": s.total_unread,
            "unreadChats": s.unread_chats,
            "archivedChats": s.archived_chats,
            "byType": {"direct": s.direct_chats, "group": s.group_chats, "support": s.support_chats},
        }),
    ))
}

/// `GET /api/chat/:id/info`: the chat with every participant's unread count.
pub(crate) async fn info(
    ChatRest((caller, InChat(room_id))): ChatRest<(ChatCaller, InChat)>,
    state: web::Data<AppState>,
) -> ChatResult {
    let chat = state.bus.request(&GetChat { actor: caller.actor, room_id }).await?;
    Ok(ok(StatusCode::OK, json!({"chat": render::chat(&chat, &render::links(&state))})))
}

/// `PATCH /api/chat/:id/archive`: flips the caller's archive flag.
pub(crate) async fn archive(
    ChatRest((caller, InChat(room_id))): ChatRest<(ChatCaller, InChat)>,
    state: web::Data<AppState>,
) -> ChatResult {
    let chat = state.bus.request(&ToggleArchive { actor: caller.actor, room_id }).await?;
    Ok(ok(StatusCode::OK, json!({"isArchived": chat.archived, "chat": render::chat(&chat, &render::links(&state))})))
}
