//! Receipts: `POST /acks` `{room_id, seq}` moves the caller's delivered cursor,
//! `POST /rooms/{id}/read` `{seq}` the read cursor. Cursors only move forward; the
//! room sees `delivered` / `read` events.

use actix_web::{HttpRequest, HttpResponse, web};
use chat_domain::ApiError;
use chat_domain::proto::store::{CursorKind, MoveCursor};
use serde_json::json;

use super::room_id;
use crate::AppState;
use crate::body::Fields;
use crate::caller::Caller;
use crate::error::HttpResult;

fn seq(f: &Fields) -> Result<i64, ApiError> {
    match f.optional_i64("seq")? {
        Some(s) if s >= 0 => Ok(s),
        Some(_) => Err(ApiError::validation("seq", "seq must be 0 or more")),
        None => Err(ApiError::validation("seq", "seq is required")),
    }
}

async fn move_cursor(state: &AppState, cmd: MoveCursor) -> HttpResult {
    let c = state.bus.request(&cmd).await?;
    Ok(HttpResponse::Ok().json(json!({"success": true, "delivered_seq": c.delivered_seq, "read_seq": c.read_seq})))
}

pub async fn ack(req: HttpRequest, body: web::Payload, caller: Caller, state: web::Data<AppState>) -> HttpResult {
    let actor = caller.actor()?;
    let f = Fields::read(&req, body, state.max_body_bytes).await?;
    let room_id = room_id(f.required_str("room_id")?)?;
    let seq = seq(&f)?;
    move_cursor(&state, MoveCursor { actor, room_id, kind: CursorKind::Delivered, seq }).await
}

pub async fn read(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Payload,
    caller: Caller,
    state: web::Data<AppState>,
) -> HttpResult {
    let actor = caller.actor()?;
    let room_id = room_id(&path)?;
    let f = Fields::read(&req, body, state.max_body_bytes).await?;
    let seq = seq(&f)?;
    move_cursor(&state, MoveCursor { actor, room_id, kind: CursorKind::Read, seq }).await
}
