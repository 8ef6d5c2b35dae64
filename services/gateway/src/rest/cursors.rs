//! Receipts: `POST /acks` `{room_id, seq}` moves the caller's delivered cursor,
//! `POST /rooms/{id}/read` `{seq}` the read cursor. Cursors only move forward; the
//! room sees `delivered` / `read` events.

use actix_web::{HttpResponse, web};
use chat_domain::ApiError;
use chat_domain::ids::RoomId;
use chat_domain::model::Actor;
use chat_domain::proto::store::{CursorKind, MoveCursor};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::extract::{Body, Cx, InRoom, Part, Rest, parts};
use super::room_id;
use crate::AppState;
use crate::body::field;
use crate::caller::Acting;
use crate::error::HttpResult;

fn seq(v: Option<Value>) -> Result<i64, ApiError> {
    match field::optional_i64("seq", v)? {
        Some(s) if s >= 0 => Ok(s),
        Some(_) => Err(ApiError::validation("seq", "seq must be 0 or more")),
        None => Err(ApiError::validation("seq", "seq is required")),
    }
}

/// The caller's cursors in the room after a move.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "CursorsMoved")]
pub struct Moved {
    /// Always `true`.
    #[schemars(extend("const" = true))]
    success: bool,
    /// Messages up to this `seq` reached the caller's device.
    delivered_seq: i64,
    /// The caller has seen messages up to this `seq`.
    read_seq: i64,
}

async fn move_cursor(state: &AppState, cmd: MoveCursor) -> HttpResult {
    let c = state.bus.request(&cmd).await?;
    Ok(HttpResponse::Ok().json(Moved { success: true, delivered_seq: c.delivered_seq, read_seq: c.read_seq }))
}

/// The body of `POST /acks`.
#[derive(Deserialize, JsonSchema)]
pub struct Ack {
    #[schemars(with = "RoomId", required)]
    room_id: Option<Value>,
    /// Messages up to this `seq` were delivered (a `seq` past the newest counts as the
    /// newest; cursors never move back).
    #[schemars(with = "u64", required)]
    seq: Option<Value>,
}

/// `POST /acks`.
pub struct AckRequest {
    actor: Actor,
    body: Ack,
}

impl Part for AckRequest {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        let (Acting(actor), Body(body)) = parts(cx).await?;
        Ok(Self { actor, body })
    }
}

impl TryFrom<AckRequest> for MoveCursor {
    type Error = ApiError;

    fn try_from(AckRequest { actor, body }: AckRequest) -> Result<Self, ApiError> {
        let room_id = room_id(&field::required_str("room_id", body.room_id)?)?;
        Ok(MoveCursor { actor, room_id, kind: CursorKind::Delivered, seq: seq(body.seq)? })
    }
}

pub async fn ack(Rest(req): Rest<AckRequest>, state: web::Data<AppState>) -> HttpResult {
    move_cursor(&state, MoveCursor::try_from(req)?).await
}

/// The body of `POST /rooms/{room_id}/read`.
#[derive(Deserialize, JsonSchema)]
pub struct Read {
    /// The caller has seen messages up to this `seq` (which implies delivered; a `seq`
    /// past the newest counts as the newest; cursors never move back).
    #[schemars(with = "u64", required)]
    seq: Option<Value>,
}

/// `POST /rooms/{room_id}/read`.
pub struct ReadRequest {
    actor: Actor,
    room_id: RoomId,
    body: Read,
}

impl Part for ReadRequest {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        let (Acting(actor), InRoom(room_id), Body(body)) = parts(cx).await?;
        Ok(Self { actor, room_id, body })
    }
}

impl TryFrom<ReadRequest> for MoveCursor {
    type Error = ApiError;

    fn try_from(ReadRequest { actor, room_id, body }: ReadRequest) -> Result<Self, ApiError> {
        Ok(MoveCursor { actor, room_id, kind: CursorKind::Read, seq: seq(body.seq)? })
    }
}

pub async fn read(Rest(req): Rest<ReadRequest>, state: web::Data<AppState>) -> HttpResult {
    move_cursor(&state, MoveCursor::try_from(req)?).await
}
