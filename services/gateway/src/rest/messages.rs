//! Messages: `POST /rooms/{id}/messages` (idempotent with `Idempotency-Key` or
//! `client_msg_id`) and `GET /rooms/{id}/messages?after_seq=&before_seq=&limit=`.

use actix_web::{HttpRequest, HttpResponse, web};
use chat_domain::ApiError;
use chat_domain::ids::MessageId;
use chat_domain::model::{MessageContent, validate_client_id};
use chat_domain::proto::store::{DeleteMessage, EditMessage, ListMessages, SendMessage};

use super::room_id;
use crate::AppState;
use crate::body::{Fields, Query};
use crate::caller::Caller;
use crate::error::HttpResult;

/// The header a client retries a send with.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

pub async fn send(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Payload,
    caller: Caller,
    state: web::Data<AppState>,
) -> HttpResult {
    let actor = caller.actor()?;
    let room_id = room_id(&path)?;
    let f = Fields::read(&req, body, state.max_body_bytes).await?;
    let content = MessageContent::parse(f.required_str("content")?)?;
    let meta = f.optional_object("meta")?;
    if let Some(meta) = &meta {
        chat_domain::model::validate_meta(meta)?;
    }
    let header = req.headers().get(IDEMPOTENCY_KEY).map(|v| {
        v.to_str()
            .map(str::to_owned)
            .map_err(|_| chat_domain::ApiError::validation(IDEMPOTENCY_KEY, "Idempotency-Key must be printable ASCII"))
    });
    let client_msg_id = match header {
        Some(h) => {
            let h = h?;
            validate_client_id(IDEMPOTENCY_KEY, &h)?;
            Some(h)
        }
        None => match f.optional_str("client_msg_id")? {
            Some(id) => {
                validate_client_id("client_msg_id", id)?;
                Some(id.to_owned())
            }
            None => None,
        },
    };
    let sender_name =
        f.optional_str("sender_name")?.map(|n| n.chars().take(chat_domain::model::MAX_DISPLAY_NAME_CHARS).collect());
    let sent = state.sends.send(SendMessage { actor, room_id, content, sender_name, meta, client_msg_id }).await?;
    if sent.duplicate {
        Ok(HttpResponse::Ok().insert_header(("Idempotent-Replayed", "true")).json(sent.message))
    } else {
        Ok(HttpResponse::Created().json(sent.message))
    }
}

pub async fn list(req: HttpRequest, path: web::Path<String>, caller: Caller, state: web::Data<AppState>) -> HttpResult {
    let actor = caller.actor()?;
    let room_id = room_id(&path)?;
    let q = Query::parse(&req)?;
    let after_seq = q.int("after_seq", 0, i64::MAX)?;
    let before_seq = q.int("before_seq", 1, i64::MAX)?;
    let limit = q.int("limit", 1, 100)?.unwrap_or(50) as u32;
    let cmd = ListMessages { actor, room_id, after_seq, before_seq, limit };
    Ok(HttpResponse::Ok().json(state.bus.request(&cmd).await?))
}

fn message_id(raw: &str) -> Result<MessageId, ApiError> {
    MessageId::parse(raw).map_err(|e| ApiError::validation("message_id", format!("Invalid message id: {e}")))
}

/// `PATCH /rooms/{id}/messages/{message_id}` `{"content","edit_reason"?}`: the sender edits.
pub async fn edit(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Payload,
    caller: Caller,
    state: web::Data<AppState>,
) -> HttpResult {
    let actor = caller.actor()?;
    let (room, message) = path.into_inner();
    let (room_id, message_id) = (room_id(&room)?, message_id(&message)?);
    let f = Fields::read(&req, body, state.max_body_bytes).await?;
    let content = MessageContent::parse(f.required_str("content")?)?;
    let edit_reason = f.optional_str("edit_reason")?.map(str::to_owned);
    let cmd = EditMessage { actor, room_id, message_id, content, edit_reason };
    Ok(HttpResponse::Ok().json(state.bus.request(&cmd).await?))
}

/// `DELETE /rooms/{id}/messages/{message_id}`: the sender or a room admin deletes
/// (softly: the `seq` stays, the content goes).
pub async fn delete(path: web::Path<(String, String)>, caller: Caller, state: web::Data<AppState>) -> HttpResult {
    let actor = caller.actor()?;
    let (room, message) = path.into_inner();
    let cmd = DeleteMessage { actor, room_id: room_id(&room)?, message_id: message_id(&message)? };
    Ok(HttpResponse::Ok().json(state.bus.request(&cmd).await?))
}
