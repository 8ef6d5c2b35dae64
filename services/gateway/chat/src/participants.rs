//! `POST /api/chat/:id/participants` and `DELETE /api/chat/:id/participants/:participantId`:
//! group chats only; the chat's creator or its admins (a member may also remove
//! themself). They are the room's membership changes, so every dialect's sockets get
//! `member.added` / `member.removed`.

use actix_web::http::StatusCode;
use actix_web::web;
use chat_domain::ApiError;
use chat_domain::ids::{RoomId, UserId};
use chat_domain::model::{Actor, MemberRole};
use chat_domain::proto::chat::{ChatType, GetChat, GetUser};
use chat_domain::proto::store::{AddMember, RemoveMember};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{ChatResult, ok};
use super::extract::{ChatCaller, ChatRest, InChat, InParticipant};
use super::render::{self, ChatJson};
use gateway_core::Core;
use gateway_core::body::field;
use gateway_core::extract::Body;
use gateway_core::openapi::Nullable;

/// The body of `POST /api/chat/:id/participants`: `userId`, or several as `userIds`.
/// At least one of the two is required; each must be a user of the tenant.
#[derive(Deserialize, JsonSchema)]
#[schemars(extend("anyOf" = [
    {"required": ["userId"], "properties": {"userId": {"type": "string"}}},
    {"required": ["userIds"], "properties": {"userIds": {"type": "array", "minItems": 1}}},
]))]
pub(crate) struct NewParticipants {
    /// One user to add.
    #[serde(rename = "userId")]
    #[schemars(with = "Option<UserId>", example = &"carol")]
    user_id: Option<Value>,
    /// Several users to add.
    #[serde(rename = "userIds")]
    #[schemars(with = "Option<Vec<UserId>>")]
    user_ids: Option<Value>,
}

/// The answer of `POST /api/chat/:id/participants`.
#[derive(Serialize, JsonSchema)]
pub(crate) struct ParticipantsAdded {
    /// Who became a participant (`[]`: they all were already).
    added: Vec<UserId>,
    chat: ChatJson,
}

/// The answer of `DELETE /api/chat/:id/participants/:participantId`.
#[derive(Serialize, JsonSchema)]
pub(crate) struct ParticipantRemoved {
    /// Who was removed.
    removed: UserId,
    /// The chat now; `null` when the caller removed themself (they no longer see it).
    #[schemars(with = "Nullable<ChatJson>")]
    chat: Option<ChatJson>,
}

/// Refuses changes to chats other than groups (`GetChat` also answers 404 / 403).
async fn group_chat(state: &Core, actor: &Actor, room_id: &RoomId) -> Result<(), ApiError> {
    let chat = state.bus.request(&GetChat { actor: actor.clone(), room_id: room_id.clone() }).await?;
    if chat.chat_type != ChatType::Group {
        return Err(ApiError::validation(
            "id",
            format!("Participants can be changed in group chats only (this one is {})", chat.chat_type.as_str()),
        ));
    }
    Ok(())
}

pub(crate) async fn add(
    ChatRest((caller, InChat(room_id), Body(body))): ChatRest<(ChatCaller, InChat, Body<NewParticipants>)>,
    state: web::Data<Core>,
) -> ChatResult {
    let mut ids = field::optional_str_array("userIds", body.user_ids)?.unwrap_or_default();
    ids.extend(field::optional_str("userId", body.user_id)?);
    if ids.is_empty() {
        return Err(ApiError::validation("userId", "userId is required").into());
    }
    let users = ids.iter().map(|u| gateway_core::extract::user_id("userId", u)).collect::<Result<Vec<UserId>, _>>()?;
    group_chat(&state, &caller.actor, &room_id).await?;
    for user in &users {
        let known = GetUser { tenant_id: caller.actor.tenant_id.clone(), user_id: user.clone() };
        state.bus.request(&known).await.map_err(|e| {
            if e.code == chat_domain::ErrorCode::NotFound {
                ApiError::not_found(format!("participant not found: {user}"))
            } else {
                e
            }
        })?;
    }
    let mut added = Vec::new();
    for user in users {
        let cmd = AddMember {
            actor: caller.actor.clone(),
            room_id: room_id.clone(),
            user_id: user.clone(),
            role: MemberRole::Member,
        };
        if state.bus.request(&cmd).await?.created {
            added.push(user);
        }
    }
    let chat = state.bus.request(&GetChat { actor: caller.actor, room_id }).await?;
    let status = if added.is_empty() { StatusCode::OK } else { StatusCode::CREATED };
    Ok(ok(status, ParticipantsAdded { added, chat: render::chat(&chat, &state.links()) }))
}

pub(crate) async fn remove(
    ChatRest((caller, InChat(room_id), InParticipant(user_id))): ChatRest<(ChatCaller, InChat, InParticipant)>,
    state: web::Data<Core>,
) -> ChatResult {
    group_chat(&state, &caller.actor, &room_id).await?;
    let cmd = RemoveMember { actor: caller.actor.clone(), room_id: room_id.clone(), user_id: user_id.clone() };
    state.bus.request(&cmd).await?;
    // Someone who removed themself no longer sees the chat.
    let chat = if user_id == caller.actor.user_id {
        None
    } else {
        let chat = state.bus.request(&GetChat { actor: caller.actor, room_id }).await?;
        Some(render::chat(&chat, &state.links()))
    };
    Ok(ok(StatusCode::OK, ParticipantRemoved { removed: user_id, chat }))
}
