//! Chats: `POST /api/chat` (direct, group), `POST /api/chat/purchase-request` and
//! `POST /api/chat/context` (context chats), `POST /api/chat/support`, `GET /api/chat`,
//! `GET /api/chat/stats`, `GET /api/chat/:id/info`, `PATCH /api/chat/:id/archive`.

use actix_web::http::StatusCode;
use actix_web::web;
use chat_domain::ApiError;
use chat_domain::ids::UserId;
use chat_domain::model::{Actor, MessageContent};
use chat_domain::proto::chat::{
    ChatContext, ChatType, CreateChat, GetChat, GetChatStats, ListChats, MAX_CHAT_PAGE, NewChatKind, ToggleArchive,
};
use chat_domain::proto::store::SendMessage;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{ChatResult, ok};
use super::extract::{ChatCaller, ChatRest, InChat};
use crate::render::{self, ChatJson, PURCHASE_REQUEST};
use gateway_core::Core;
use gateway_core::body::{Query, field};
use gateway_core::extract::{Body, Cx, MaybeBody, Part, QueryString, parts};

/// Default and largest page of `GET /api/chat`.
const DEFAULT_LIMIT: i64 = 20;

fn participant_ids(v: Option<Value>) -> Result<Vec<UserId>, ApiError> {
    let raw = field::optional_str_array("participantIds", v)?
        .ok_or_else(|| ApiError::validation("participantIds", "participantIds is required"))?;
    raw.iter().map(|p| gateway_core::extract::user_id("participantIds", p)).collect()
}

/// The answer of the routes that create or show one chat: `{chat}`.
#[derive(Serialize, JsonSchema)]
pub(crate) struct OneChat {
    pub chat: ChatJson,
}

/// `{chat}` with 201 when the call created it, else 200.
fn created(state: &Core, created: chat_domain::proto::chat::ChatCreated) -> actix_web::HttpResponse {
    let status = if created.created { StatusCode::CREATED } else { StatusCode::OK };
    ok(status, OneChat { chat: render::chat(&created.chat, &state.links()) })
}

/// The body of `POST /api/chat`.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct NewChat {
    /// The other participants (the caller is added, as the chat's admin): exactly one
    /// for a direct chat, at least one for a group. Each must be a user of the tenant.
    #[serde(rename = "participantIds")]
    #[schemars(with = "Vec<UserId>", required, length(min = 1), example = &["bob"])]
    participant_ids: Option<Value>,
    /// `direct` (the default: the pair's existing direct chat is returned if there is
    /// one) or `group`.
    #[serde(rename = "type")]
    #[schemars(with = "Option<String>", extend("enum" = ["direct", "group", null]))]
    chat_type: Option<Value>,
    /// The group's title (ignored for a direct chat).
    #[schemars(with = "Option<String>")]
    title: Option<Value>,
    /// Anything of your app, a JSON object up to 8 KiB.
    #[schemars(with = "Option<serde_json::Map<String, Value>>")]
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

pub(crate) async fn create(ChatRest(req): ChatRest<NewChatRequest>, state: web::Data<Core>) -> ChatResult {
    let done = state.bus.request(&CreateChat::try_from(req)?).await?;
    Ok(created(&state, done))
}

/// The body of `POST /api/chat/purchase-request`.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct NewPurchaseRequestChat {
    /// The purchase request: 1 to 128 printable characters.
    #[serde(rename = "purchaseRequestId")]
    #[schemars(with = "String", required, length(min = 1, max = 128), example = &"pr-1")]
    purchase_request_id: Option<Value>,
    /// The seller, a user of the tenant (the caller is the buyer).
    #[serde(rename = "sellerId")]
    #[schemars(with = "UserId", required, example = &"seller-7")]
    seller_id: Option<Value>,
    /// The title, when the chat is created.
    #[schemars(with = "Option<String>")]
    title: Option<Value>,
    /// Anything of your app, a JSON object up to 8 KiB.
    #[schemars(with = "Option<serde_json::Map<String, Value>>")]
    metadata: Option<Value>,
}

/// `POST /api/chat/purchase-request`: the caller (the buyer) and the seller, bound to
/// the purchase request (context type `purchase_request`).
pub(crate) async fn purchase_request(
    ChatRest((caller, Body(body))): ChatRest<(ChatCaller, Body<NewPurchaseRequestChat>)>,
    state: web::Data<Core>,
) -> ChatResult {
    let id = field::required_str("purchaseRequestId", body.purchase_request_id)?;
    let context = ChatContext::parse("context", PURCHASE_REQUEST, &id)
        .map_err(|e| ApiError::validation("purchaseRequestId", e.message))?;
    let seller = gateway_core::extract::user_id("sellerId", &field::required_str("sellerId", body.seller_id)?)?;
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
#[derive(Deserialize, JsonSchema)]
pub(crate) struct NewContextChat {
    /// What the chat is about: 1 to 64 of `a-z 0-9 _ -`, not `support`.
    #[serde(rename = "contextType")]
    #[schemars(with = "String", required, regex(pattern = "^[a-z0-9_-]{1,64}$"), example = &"order")]
    context_type: Option<Value>,
    /// Which one: 1 to 128 printable characters.
    #[serde(rename = "contextId")]
    #[schemars(with = "String", required, length(min = 1, max = 128), example = &"o-9")]
    context_id: Option<Value>,
    /// The other participants, users of the tenant (the caller is added).
    #[serde(rename = "participantIds")]
    #[schemars(with = "Option<Vec<UserId>>")]
    participant_ids: Option<Value>,
    /// The title, when the chat is created.
    #[schemars(with = "Option<String>")]
    title: Option<Value>,
    /// Anything of your app, a JSON object up to 8 KiB.
    #[schemars(with = "Option<serde_json::Map<String, Value>>")]
    metadata: Option<Value>,
}

/// `POST /api/chat/context`: the generic form of the purchase-request chat — one chat
/// per `(contextType, contextId)` of the tenant.
pub(crate) async fn context(
    ChatRest((caller, Body(body))): ChatRest<(ChatCaller, Body<NewContextChat>)>,
    state: web::Data<Core>,
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

/// The body of `POST /api/chat/support` (which may also be empty).
#[derive(Deserialize, JsonSchema)]
pub(crate) struct NewSupportChat {
    /// The chat's title (default `Support`).
    #[schemars(with = "Option<String>", example = &"Refund for order 9")]
    subject: Option<Value>,
    /// Sent as the caller's first message.
    #[serde(rename = "initialMessage")]
    #[schemars(with = "Option<MessageContent>")]
    initial_message: Option<Value>,
}

/// `POST /api/chat/support`: a new chat of the caller and the support pool; the
/// subject is its title, the initial message its first message (sent as any message
/// is, so every dialect's sockets see it).
pub(crate) async fn support(
    ChatRest((caller, MaybeBody(body))): ChatRest<(ChatCaller, MaybeBody<NewSupportChat>)>,
    state: web::Data<Core>,
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
    SendMessage::text(actor, room_id.clone(), content)
}

/// Largest `page` of the dialect's lists.
pub(crate) const MAX_PAGE: i64 = 1_000_000;

/// `page` (from 1) and `limit` (1 to 100, `default`) of the dialect's lists.
pub(crate) fn page(q: &Query, default: i64) -> Result<(u32, u32), ApiError> {
    let page = q.int("page", 1, MAX_PAGE)?.unwrap_or(1) as u32;
    let limit = q.int("limit", 1, i64::from(MAX_CHAT_PAGE))?.unwrap_or(default) as u32;
    Ok((page, limit))
}

/// The first page, for the documents' `default`.
pub(crate) fn first_page() -> u32 {
    1
}

/// Where a list's page is: `{page, limit, total, pages}`.
#[derive(Serialize, JsonSchema)]
pub(crate) struct Pagination {
    /// This page, from 1.
    page: u32,
    /// Items per page.
    limit: u32,
    /// Items over all pages.
    total: i64,
    /// How many pages there are.
    pages: i64,
}

impl Pagination {
    pub(crate) fn new(page: u32, limit: u32, total: i64) -> Self {
        let pages = (total + i64::from(limit) - 1) / i64::from(limit);
        Self { page, limit, total, pages }
    }
}

/// The query of `GET /api/chat`, as the handler reads it ([`ChatListQuery::read`]);
/// its schema gives the operation's query parameters.
#[derive(JsonSchema)]
pub(crate) struct ChatListQuery {
    /// The page, from 1.
    #[schemars(default = "first_page", range(min = 1, max = MAX_PAGE))]
    page: u32,
    /// Chats per page, 1 to 100.
    #[schemars(default = "default_limit", range(min = 1, max = MAX_CHAT_PAGE))]
    limit: u32,
    /// Only chats of this type.
    #[schemars(rename = "type", with = "ChatType", default, skip_serializing_if = "Option::is_none")]
    chat_type: Option<ChatType>,
    /// `false`: archived chats are left out; `true`: only archived chats.
    #[schemars(default)]
    archived: bool,
}

fn default_limit() -> u32 {
    DEFAULT_LIMIT as u32
}

impl ChatListQuery {
    fn read(q: &Query) -> Result<Self, ApiError> {
        let (page, limit) = page(q, DEFAULT_LIMIT)?;
        let chat_type = q.get_str("type").map(ChatType::parse).transpose()?;
        let archived = match q.get_str("archived") {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(ApiError::validation("archived", "archived must be true or false")),
        };
        Ok(Self { page, limit, chat_type, archived })
    }
}

/// The answer of `GET /api/chat`.
#[derive(Serialize, JsonSchema)]
pub(crate) struct ChatList {
    /// The latest message first.
    chats: Vec<ChatJson>,
    pagination: Pagination,
}

/// `GET /api/chat?page=&limit=&type=&archived=`: the caller's chats, the latest
/// message first, with unread counts. Archived chats are listed only with
/// `archived=true`.
pub(crate) async fn list(
    ChatRest((caller, QueryString(q))): ChatRest<(ChatCaller, QueryString)>,
    state: web::Data<Core>,
) -> ChatResult {
    let ChatListQuery { page, limit, chat_type, archived } = ChatListQuery::read(&q)?;
    let found = state.bus.request(&ListChats { actor: caller.actor, chat_type, archived, page, limit }).await?;
    let links = state.links();
    let chats = found.chats.iter().map(|c| render::chat(c, &links)).collect();
    Ok(ok(StatusCode::OK, ChatList { chats, pagination: Pagination::new(page, limit, found.total) }))
}

/// The answer of `GET /api/chat/stats`: counts over the caller's chats.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChatCounts {
    total_chats: i64,
    /// Messages in those chats (deleted ones too: they keep their place).
    total_messages: i64,
    /// Unread messages over all of them.
    total_unread: i64,
    /// Chats with at least one unread message.
    unread_chats: i64,
    archived_chats: i64,
    by_type: ChatsByType,
}

/// Chats by type.
#[derive(Serialize, JsonSchema)]
pub(crate) struct ChatsByType {
    direct: i64,
    group: i64,
    support: i64,
}

/// `GET /api/chat/stats`.
pub(crate) async fn stats(ChatRest(caller): ChatRest<ChatCaller>, state: web::Data<Core>) -> ChatResult {
    let s = state.bus.request(&GetChatStats { actor: caller.actor }).await?;
    Ok(ok(
        StatusCode::OK,
        ChatCounts {
            total_chats: s.total_chats,
            total_messages: s.total_messages,
            total_unread: s.total_unread,
            unread_chats: s.unread_chats,
            archived_chats: s.archived_chats,
            by_type: ChatsByType { direct: s.direct_chats, group: s.group_chats, support: s.support_chats },
        },
    ))
}

/// `GET /api/chat/:id/info`: the chat with every participant's unread count.
pub(crate) async fn info(
    ChatRest((caller, InChat(room_id))): ChatRest<(ChatCaller, InChat)>,
    state: web::Data<Core>,
) -> ChatResult {
    let chat = state.bus.request(&GetChat { actor: caller.actor, room_id }).await?;
    Ok(ok(StatusCode::OK, OneChat { chat: render::chat(&chat, &state.links()) }))
}

/// The answer of `PATCH /api/chat/:id/archive`.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Archived {
    /// The caller's flag now.
    is_archived: bool,
    chat: ChatJson,
}

/// `PATCH /api/chat/:id/archive`: flips the caller's archive flag.
pub(crate) async fn archive(
    ChatRest((caller, InChat(room_id))): ChatRest<(ChatCaller, InChat)>,
    state: web::Data<Core>,
) -> ChatResult {
    let chat = state.bus.request(&ToggleArchive { actor: caller.actor, room_id }).await?;
    Ok(ok(StatusCode::OK, Archived { is_archived: chat.archived, chat: render::chat(&chat, &state.links()) }))
}
