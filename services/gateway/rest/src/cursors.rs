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

use gateway_core::Core;
use gateway_core::body::field;
use gateway_core::caller::Acting;
use gateway_core::error::HttpResult;
use gateway_core::extract::room_id;
use gateway_core::extract::{Body, Cx, InRoom, Part, Rest, parts};
use gateway_core::routes::{Mount, op};
use serde_json::json;

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

async fn move_cursor(state: &Core, cmd: MoveCursor) -> HttpResult {
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

pub async fn ack(Rest(req): Rest<AckRequest>, state: web::Data<Core>) -> HttpResult {
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

pub async fn read(Rest(req): Rest<ReadRequest>, state: web::Data<Core>) -> HttpResult {
    move_cursor(&state, MoveCursor::try_from(req)?).await
}

/// The routes of read and delivered cursors, each with its documentation.
pub(crate) fn routes(m: &mut Mount) {
    let room = "The room's id (`room_...`).";
    m.tagged("Rooms")
.at(&["/rooms/{room_id}/read"], |r| {
            r.post(
                read,
                op("Mark a room read up to a message")
                    .describe("Moves the caller's read cursor (and delivered cursor) forward to `seq`; the room sees a `read` event.")
                    .user()
                    .path_id::<chat_domain::ids::RoomId>("room_id", room)
                    .json_example::<Read>(json!({"seq": 43}))
                    .reply::<Moved>(200, "The caller's cursors now.")
                    .errors(&[400, 401, 403, 404, 413, 503]),
            )
        })
        .at(&["/acks"], |r| {
            r.post(
                ack,
                op("Acknowledge delivery")
                    .describe("Marks messages as delivered up to `seq`: moves the caller's delivered cursor forward; the room sees a `delivered` event.")
                    .user()
                    .json_example::<Ack>(json!({"room_id": "room_0193c5f1d2a07b4c8e3f9a1b2c3d4e5f", "seq": 43}))
                    .reply::<Moved>(200, "The caller's cursors now.")
                    .errors(&[400, 401, 403, 404, 413, 503]),
            )
        });
}
