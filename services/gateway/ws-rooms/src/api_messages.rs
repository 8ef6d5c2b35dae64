//! The WebSocket document's message helpers, as its own demo page calls them:
//! `POST /api/v1/rooms/{id}/messages` (with or without the trailing slash)
//! `{sender_id, sender_name, content, message_type, meta?, client_msg_id?}` and
//! `GET /api/v1/rooms/{id}/messages?after_seq=&before_seq=&limit=`, answered in the
//! document's `{"data":...,"status":"success"}` envelope with messages in the shape of
//! its `message` frame.
//!
//! `X-API-Key` holds the API key — then the sender is the body's `sender_id` (or
//! `X-User-Id`) — or a user token, which names the sender: a `sender_id` naming
//! anyone else is `403`. A browser app puts a token there, never the key.

use actix_web::{HttpResponse, web};
use chat_domain::ApiError;
use chat_domain::ids::{RoomId, UserId};
use chat_domain::model::{MessageContent, validate_meta};
use chat_domain::proto::store::{ListMessages, SendMessage};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::codec::MessageData;
use gateway_core::Core;
use gateway_core::body::field;
use gateway_core::caller::{ApiActing, ApiCaller};
use gateway_core::error::HttpResult;
use gateway_core::extract::{Body, Cx, InRoom, Part, QueryString, Rest, parts};
use gateway_core::messages::{History, client_msg_id, display_name, history, idempotency_key};

/// Longest `message_type`.
const MAX_MESSAGE_TYPE_CHARS: usize = 50;

/// The document's `{"data": ..., "status": "success"}` answer.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "Enveloped{T}")]
pub struct Enveloped<T> {
    data: T,
    /// Always `success`.
    #[schemars(extend("const" = "success"))]
    status: &'static str,
}

impl<T> Enveloped<T> {
    pub fn new(data: T) -> Self {
        Enveloped { data, status: "success" }
    }
}

/// A page of history.
#[derive(Serialize, JsonSchema)]
pub struct Messages<'a> {
    /// In `seq` order.
    messages: Vec<MessageData<'a>>,
}

/// The body of `POST /api/v1/rooms/{room_id}/messages`.
#[derive(Deserialize, JsonSchema)]
pub struct ApiMessage {
    /// The sender, with an API key (else `X-User-Id`); with a user token it may only
    /// name the token's user.
    #[schemars(with = "Option<UserId>", example = &"user_123")]
    sender_id: Option<Value>,
    /// The name to show with the message (trimmed; at most 100 characters kept).
    #[schemars(with = "Option<String>")]
    sender_name: Option<Value>,
    /// The text (not only whitespace).
    #[schemars(with = "MessageContent", required)]
    content: Option<Value>,
    /// `text` by default; any other type (at most 50 characters) is kept as `meta.type`.
    #[schemars(with = "Option<String>", length(max = MAX_MESSAGE_TYPE_CHARS))]
    message_type: Option<Value>,
    /// Anything the client wants kept with the message (a JSON object, at most 8 KiB
    /// serialized).
    #[schemars(with = "Option<serde_json::Map<String, Value>>")]
    meta: Option<Value>,
    /// The client's id of this send (1 to 128 bytes, no control characters): a resend
    /// with the same id returns the first message. The `Idempotency-Key` header wins.
    #[schemars(with = "Option<String>")]
    client_msg_id: Option<Value>,
}

/// `POST /api/v1/rooms/{room_id}/messages`.
pub struct ApiSendRequest {
    caller: ApiCaller,
    room_id: RoomId,
    body: ApiMessage,
    idempotency_key: Option<Result<String, ApiError>>,
}

impl Part for ApiSendRequest {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        let (caller, InRoom(room_id), Body(body)) = parts(cx).await?;
        Ok(Self { caller, room_id, body, idempotency_key: idempotency_key(cx) })
    }
}

impl TryFrom<ApiSendRequest> for SendMessage {
    type Error = ApiError;

    fn try_from(ApiSendRequest { caller, room_id, body, idempotency_key }: ApiSendRequest) -> Result<Self, ApiError> {
        let sender = field::optional_str("sender_id", body.sender_id)?;
        let user = caller.user(sender.as_deref().map(|s| ("sender_id", s)), || {
            ApiError::validation("sender_id", "sender_id (or X-User-Id) is required with an API key")
        })?;
        let content = MessageContent::parse(field::required_str("content", body.content)?)?;
        let mut meta = field::optional_object("meta", body.meta)?;
        // The document's message_type is kept in meta.type ("text" is the default).
        if let Some(kind) = field::optional_str("message_type", body.message_type)?
            && kind != "text"
        {
            if kind.chars().count() > MAX_MESSAGE_TYPE_CHARS {
                return Err(ApiError::validation(
                    "message_type",
                    format!("message_type must be at most {MAX_MESSAGE_TYPE_CHARS} characters"),
                ));
            }
            let meta = meta.get_or_insert_with(|| json!({}));
            if meta.get("type").is_none() {
                meta["type"] = json!(kind);
            }
        }
        if let Some(meta) = &meta {
            validate_meta(meta)?;
        }
        let client_msg_id = client_msg_id(idempotency_key, "client_msg_id", body.client_msg_id)?;
        let sender_name = display_name(field::optional_str("sender_name", body.sender_name)?);
        let actor = chat_domain::model::Actor { tenant_id: caller.tenant.tenant_id.clone(), user_id: user };
        Ok(SendMessage {
            actor,
            room_id,
            content,
            sender_name,
            meta,
            client_msg_id,
            kind: chat_domain::model::MessageKind::Text,
            reply_to: None,
            attachments: Vec::new(),
            parent_id: None,
            mentions: Vec::new(),
        })
    }
}

/// `POST /api/v1/rooms/{room_id}/messages` → `201 {"data": message, "status": "success"}`
/// (`200` with `Idempotent-Replayed: true` for a resend).
pub async fn send(Rest(req): Rest<ApiSendRequest>, state: web::Data<Core>) -> HttpResult {
    let sent = state.sends.send(SendMessage::try_from(req)?).await?;
    let links = state.links();
    let body = Enveloped::new(MessageData::of(&sent.message, None, &links));
    if sent.duplicate {
        Ok(HttpResponse::Ok().insert_header(("Idempotent-Replayed", "true")).json(body))
    } else {
        Ok(HttpResponse::Created().json(body))
    }
}

/// `GET /api/v1/rooms/{room_id}/messages` → `{"data": {"messages": [...]}, "status": "success"}`,
/// in `seq` order with the history rules of `GET /rooms/{id}/messages`.
pub async fn list(
    Rest((ApiActing(actor), InRoom(room_id), QueryString(q))): Rest<(ApiActing, InRoom, QueryString)>,
    state: web::Data<Core>,
) -> HttpResult {
    let History { after_seq, before_seq, limit, threads } = history(&q)?;
    let cmd = ListMessages { actor, room_id, after_seq, before_seq, limit, without_replies: !threads };
    let messages = state.bus.request(&cmd).await?;
    let links = state.links();
    let messages = messages.iter().map(|m| MessageData::of(m, None, &links)).collect();
    Ok(HttpResponse::Ok().json(Enveloped::new(Messages { messages })))
}
