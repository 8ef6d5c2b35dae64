//! Blocks for `rest-chat.md` clients: `GET /api/chat/blocks`, `PUT|DELETE
//! /api/chat/blocks/:userId` — the canonical blocks (`PUT|DELETE /blocks/{user_id}`,
//! the same rules) in this dialect's `{success, data}` camelCase shape.

use actix_web::http::StatusCode;
use actix_web::web;
use chat_domain::ApiError;
use chat_domain::ids::UserId;
use chat_domain::proto::blocks::{Block, BlockUser, ListBlocks, UnblockUser};
use schemars::JsonSchema;
use serde::Serialize;

use super::error::{ChatResult, ok};
use super::extract::{ChatCaller, ChatRest};
use gateway_core::Core;
use gateway_core::extract::{Cx, Part};

/// The `:userId` segment.
pub(crate) struct InBlocked(pub UserId);

impl Part for InBlocked {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        let raw = cx.segment("userId")?;
        gateway_core::extract::user_id("userId", &raw).map(InBlocked)
    }
}

/// One block of the caller's.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChatBlock {
    /// The blocked user.
    user_id: UserId,
    /// When the block was first made.
    #[schemars(with = "String", extend("format" = "date-time"))]
    blocked_at: String,
    /// Their messages are hidden from the caller in group chats (set through
    /// `PUT /blocks/{user_id}`; a block made here keeps the block's choice).
    hide_in_groups: bool,
}

impl From<Block> for ChatBlock {
    fn from(b: Block) -> Self {
        ChatBlock {
            user_id: b.user_id,
            blocked_at: chat_domain::time::format(&b.created_at),
            hide_in_groups: b.hide_in_groups,
        }
    }
}

/// The answer of `GET /api/chat/blocks`.
#[derive(Serialize, JsonSchema)]
pub(crate) struct ChatBlocks {
    /// Newest first.
    blocks: Vec<ChatBlock>,
}

/// The answer of `DELETE /api/chat/blocks/:userId`.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChatUnblocked {
    user_id: UserId,
    /// There was a block to lift.
    removed: bool,
}

/// `GET /api/chat/blocks`.
pub(crate) async fn list(ChatRest((caller,)): ChatRest<(ChatCaller,)>, state: web::Data<Core>) -> ChatResult {
    let got = state.bus.request(&ListBlocks { actor: caller.actor }).await?;
    Ok(ok(StatusCode::OK, ChatBlocks { blocks: got.blocks.into_iter().map(ChatBlock::from).collect() }))
}

/// `PUT /api/chat/blocks/:userId`.
pub(crate) async fn block(
    ChatRest((caller, InBlocked(user_id))): ChatRest<(ChatCaller, InBlocked)>,
    state: web::Data<Core>,
) -> ChatResult {
    let block = state.bus.request(&BlockUser { actor: caller.actor, user_id, hide_in_groups: None }).await?;
    Ok(ok(StatusCode::OK, ChatBlock::from(block)))
}

/// `DELETE /api/chat/blocks/:userId`.
pub(crate) async fn unblock(
    ChatRest((caller, InBlocked(user_id))): ChatRest<(ChatCaller, InBlocked)>,
    state: web::Data<Core>,
) -> ChatResult {
    let lifted = state.bus.request(&UnblockUser { actor: caller.actor, user_id: user_id.clone() }).await?;
    Ok(ok(StatusCode::OK, ChatUnblocked { user_id, removed: lifted.removed }))
}
